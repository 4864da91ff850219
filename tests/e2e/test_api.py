"""volleyd's HTTP API end to end: every endpoint, every kind of bad input
(status, error code, field, and nothing stored), durability across kill -9,
idempotency, the TCP listener's token, disk full."""

import json
import os
import shutil
import socket
import subprocess
import time
import unittest

from . import util
from .daemon import VOLLEYD, Volleyd, VolleydTest, simple_job


def ndjson(job, recipients):
    yield (json.dumps(job) + "\n").encode()
    batch = []
    for r in recipients:
        batch.append(json.dumps(r))
        if len(batch) == 1000:
            yield ("\n".join(batch) + "\n").encode()
            batch = []
    if batch:
        yield ("\n".join(batch) + "\n").encode()


NDJSON = {"Content-Type": "application/x-ndjson"}


class Submit(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.d = Volleyd().start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_health(self):
        r = self.d.request("GET", "/v1/health")
        self.assertEqual(r.status, 200)
        h = r.json()
        self.assertEqual(h["status"], "ok")
        self.assertTrue(h["accepting"])
        self.assertIn("version", h)

    def test_json_job_is_stored_and_counted(self):
        r = self.d.submit(simple_job(5))
        self.assertEqual(r.status, 202, r)
        a = r.json()
        self.assertEqual(a["recipients"], 5)
        self.assertEqual(a["success_count"], 5)
        self.assertEqual(a["fail_count"], 0)
        self.assertEqual(r.headers["Location"], "/v1/jobs/" + a["id"])
        self.assertIn(a["id"], self.d.jobs_on_disk())
        j = self.d.request("GET", "/v1/jobs/" + a["id"]).json()
        self.assertEqual(j["recipients"], 5)
        # no route is configured: they wait (queued, or deferred for want of one)
        self.assertEqual(sum(j["counts"].values()), 5)
        self.assertEqual(j["counts"]["queued"] + j["counts"]["deferred"] + j["counts"]["in_flight"], 5)
        self.assertEqual(j["state"], "active")
        self.assertFalse(j["done"])
        self.assertEqual(set(j["counts"]), {"queued", "in_flight", "delivered", "deferred",
                                             "bounced", "expired", "cancelled", "suppressed"})

    def test_ndjson_streamed(self):
        job = simple_job(0)
        del job["recipients"]
        rcpts = [{"email": "n%d@example.org" % i, "substitutions": {"name": "N%d" % i}}
                 for i in range(20000)]
        r = self.d.submit(ndjson(job, rcpts), headers=NDJSON)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["recipients"], 20000)
        lines = self.d.request("GET", "/v1/jobs/%s/recipients" % r.json()["id"]).lines()
        self.assertEqual([l["email"] for l in lines], [x["email"] for x in rcpts])
        self.assertEqual([l["index"] for l in lines], list(range(20000)))

    def test_an_error_quoting_a_cut_utf8_sequence_is_still_json(self):
        # jansson's "near '...'" cuts the client's bytes mid-sequence
        job = simple_job(0)
        del job["recipients"]
        bad = b'{"email": "a@b.example", "substitutions": {"name": "\\u0\xd0\xa39"}}\n'
        r = self.d.submit(iter([(json.dumps(job) + "\n").encode(), bad]), headers=NDJSON)
        self.assertEqual(r.status, 400, r)
        e = r.json()["error"]
        self.assertEqual(e["code"], "malformed_json", e)
        self.assertIn("line 2", e["message"], e)
        self.assertEqual(e["invalid_count"], 1, e)

    def test_ndjson_escapes_numbers_and_last_line_without_newline(self):
        job = simple_job(0)
        del job["recipients"]
        body = (json.dumps(job) + "\n\n" +
                '{"email": "a\\u00e9@example.org", "substitutions": {"name": 12.5}}\n'
                '  {"substitutions": {"name": true}, "email": "b@example.org"}')
        r = self.d.submit(body, headers=NDJSON)
        self.assertEqual(r.status, 202, r)
        lines = self.d.request("GET", "/v1/jobs/%s/recipients" % r.json()["id"]).lines()
        self.assertEqual([l["email"] for l in lines], ["a\u00e9@example.org", "b@example.org"])

    def test_inject_api(self):
        r = self.d.request("POST", "/api/inject/v1", simple_job(2))
        self.assertEqual(r.status, 202, r)
        a = r.json()
        for k in ("success_count", "fail_count", "failed_recipients", "errors", "id"):
            self.assertIn(k, a)

    def test_duplicates_reported_and_kept_once(self):
        job = simple_job(0)
        job["recipients"] = [
            {"email": "Ann@Example.NET", "substitutions": {"name": "a"}},
            {"email": "Ann@example.net", "substitutions": {"name": "b"}},
            {"email": "ann@example.net", "substitutions": {"name": "c"}},
        ]
        r = self.d.submit(job)
        self.assertEqual(r.status, 202, r)
        a = r.json()
        # the domain compares case-insensitively, the local part does not
        self.assertEqual(a["recipients"], 2)
        self.assertEqual(a["fail_count"], 1)
        self.assertEqual(a["failed_recipients"], ["Ann@example.net"])
        self.assertIn("recipients[1].email", a["errors"][0])
        self.assertIn("recipients[0]", a["errors"][0])

    def test_smtputf8_addresses_accepted(self):
        job = simple_job(0)
        job["recipients"] = [{"email": "用户@例子.测试", "substitutions": {"name": "x"}}]
        r = self.d.submit(job)
        self.assertEqual(r.status, 202, r)

    def test_list_recipients_filter(self):
        a = self.d.submit(simple_job(3)).json()
        q = self.d.request("GET", "/v1/jobs/%s/recipients" % a["id"]).lines()
        self.assertEqual(len(q), 3)
        self.assertIn(q[0]["state"], ("queued", "deferred"))
        b = self.d.request("GET", "/v1/jobs/%s/recipients?state=bounced" % a["id"])
        self.assertEqual((b.status, b.lines()), (200, []))
        self.assertError(self.d.request("GET", "/v1/jobs/%s/recipients?state=lost" % a["id"]),
                         400, "invalid_field", "state")

    def test_jobs_list_newest_first(self):
        ids = [self.d.submit(simple_job(1)).json()["id"] for _ in range(3)]
        jobs = self.d.request("GET", "/v1/jobs?limit=2").json()["jobs"]
        self.assertEqual([j["id"] for j in jobs], ids[::-1][:2])

    def test_pause_resume_cancel(self):
        jid = self.d.submit(simple_job(4)).json()["id"]
        base = "/v1/jobs/" + jid
        self.assertEqual(self.d.request("POST", base + "/pause").json()["state"], "paused")
        self.assertEqual(self.d.request("POST", base + "/pause").json()["state"], "paused")
        self.assertEqual(self.d.request("POST", base + "/resume").json()["state"], "active")
        c = self.d.request("POST", base + "/cancel").json()
        self.assertEqual(c["state"], "cancelled")
        self.assertEqual(c["counts"]["cancelled"], 4)
        self.assertEqual(c["counts"]["queued"], 0)
        self.assertTrue(c["done"])
        self.assertIsNotNone(c["finished"])
        self.assertError(self.d.request("POST", base + "/resume"), 409, "conflict")
        self.assertError(self.d.request("POST", base + "/cancel"), 409, "conflict")
        lines = self.d.request("GET", base + "/recipients?state=cancelled").lines()
        self.assertEqual(len(lines), 4)

    def test_not_found_and_methods(self):
        self.assertError(self.d.request("GET", "/v1/jobs/0123456789ab-01234567"), 404, "not_found")
        self.assertError(self.d.request("GET", "/v1/jobs/../../etc"), 404, "not_found")
        self.assertError(self.d.request("POST", "/v1/jobs/0123456789ab-01234567/pause"),
                         404, "not_found")
        self.assertError(self.d.request("GET", "/v2/nothing"), 404, "not_found")
        self.assertError(self.d.request("DELETE", "/v1/jobs"), 405, "method_not_allowed")
        self.assertError(self.d.request("GET", "/api/inject/v1"), 405, "method_not_allowed")
        jid = self.d.submit(simple_job(1)).json()["id"]
        self.assertError(self.d.request("GET", "/v1/jobs/%s/pause" % jid), 405)

    def test_operations_endpoints(self):
        self.d.submit(simple_job(2))
        q = self.d.request("GET", "/v1/queues")
        self.assertEqual(q.status, 200)
        self.assertIsInstance(q.json()["queues"], list)
        s = self.d.request("GET", "/v1/stats").json()
        self.assertGreaterEqual(s["intake"]["jobs"], 1)
        r = s["scheduler"]["recipients"]
        self.assertGreaterEqual(r["queued"] + r["deferred"] + r["in_flight"], 2)
        m = self.d.request("GET", "/metrics")
        self.assertEqual(m.status, 200)
        self.assertTrue(m.headers["Content-Type"].startswith("text/plain"))
        text = m.body.decode()
        self.assertIn("# TYPE volley_intake_jobs_total counter", text)
        self.assertRegex(text, r'volley_recipients\{state="deferred"\} \d+')
        e = self.d.request("GET", "/v1/events")
        self.assertEqual(e.status, 200)
        self.assertEqual(e.headers["Content-Type"], "application/x-ndjson")


class BadInput(VolleydTest):
    """Each case: the status, the error code and field, and nothing stored."""

    @classmethod
    def setUpClass(cls):
        cls.d = Volleyd(config='max_message_size = "20KB";\napi = { max_body = "200KB"; };\n')
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def setUp(self):
        self.before = self.d.jobs_on_disk()

    def rejected(self, r, status, code, field=None):
        e = self.assertError(r, status, code, field)
        self.assertEqual(self.d.jobs_on_disk(), self.before, "something was stored")
        self.assertEqual(self.d.tmp_on_disk(), [], "an intake was left in tmp/")
        return e

    def test_malformed_json(self):
        h = {"Content-Type": "application/json"}
        self.rejected(self.d.submit('{"envelope_sender": "a@b.c", "content": ', headers=h), 400,
                      "malformed_json")
        self.rejected(self.d.submit('{"envelope_sender": "a@b.c", "envelope_sender": "d@e.f"}',
                                    headers=h), 400, "malformed_json")
        self.rejected(self.d.submit("", headers=h), 400, "malformed_json")
        job = simple_job(1)
        job["recipients"][0]["email"] = "a@b.example\x00"
        # valid JSON (\u0000), refused by the field's check, which names it
        e = self.rejected(self.d.submit(job), 400, "invalid_field", "recipients[0].email")
        self.assertIn("NUL", e["message"])

    def test_unknown_and_wrong_fields(self):
        self.rejected(self.d.submit(simple_job(1, colour="red")), 400, "unknown_field", "colour")
        self.rejected(self.d.submit(simple_job(1, envelope_sender=5)), 400, "wrong_type",
                      "envelope_sender")
        self.rejected(self.d.submit(simple_job(1, verp="yes")), 400, "wrong_type", "verp")
        self.rejected(self.d.submit(simple_job(1, priority="urgent")), 400, "invalid_field",
                      "priority")
        self.rejected(self.d.submit(simple_job(1, expires_in="2x")), 400, "invalid_field",
                      "expires_in")
        self.rejected(self.d.submit(simple_job(1, rate_limit="fast")), 400, "invalid_field",
                      "rate_limit")
        self.rejected(self.d.submit(simple_job(1, substitutions={"a": [1]})), 400,
                      "wrong_type", "substitutions.a")
        self.rejected(self.d.submit([1, 2]), 400, "wrong_type")
        # the spool's mark of a verbatim job (SMTP submission only): a client
        # cannot point a job at a file, with or without content
        for raw in (True, False, "message"):
            e = self.rejected(self.d.submit(simple_job(1, raw_message=raw)), 400,
                              "invalid_field", "raw_message")
            self.assertIn("SMTP submission", e["message"])
        job = simple_job(1, raw_message=True)
        del job["content"]
        self.rejected(self.d.submit(job), 400, "invalid_field", "raw_message")
        job = simple_job(2)
        job["recipients"][1]["colour"] = "red"
        self.rejected(self.d.submit(job), 400, "unknown_field", "recipients[1].colour")
        job = simple_job(2)
        job["recipients"][1]["substitutions"] = {"name": None}
        self.rejected(self.d.submit(job), 400, "wrong_type", "recipients[1].substitutions.name")

    def test_missing_fields(self):
        job = simple_job(1)
        del job["envelope_sender"]
        self.rejected(self.d.submit(job), 400, "missing_field", "envelope_sender")
        job = simple_job(1)
        del job["recipients"]
        self.rejected(self.d.submit(job), 400, "missing_field", "recipients")
        self.rejected(self.d.submit(simple_job(0)), 400, "no_recipients", "recipients")
        job = simple_job(2)
        del job["recipients"][1]["email"]
        self.rejected(self.d.submit(job), 400, "missing_field", "recipients[1].email")

    def test_invalid_addresses(self):
        for bad in ["no-at-sign", "a@", "@b.example", "a b@c.example", "a@b..example",
                    "a@-b.example", "x" * 65 + "@b.example",
                    "a@" + ".".join(["b" * 60] * 5) + ".example", "a\r\nRCPT TO:<x>@b.example",
                    "<a@b.example>"]:
            job = simple_job(3)
            job["recipients"][2]["email"] = bad
            with self.subTest(bad=bad):
                self.rejected(self.d.submit(job), 400, "invalid_address", "recipients[2].email")
        self.rejected(self.d.submit(simple_job(1, envelope_sender="bounces")), 400,
                      "invalid_address", "envelope_sender")

    def test_header_injection(self):
        job = simple_job(2)
        job["recipients"][1]["name"] = "Eve\r\nBcc: victim@example.com"
        self.rejected(self.d.submit(job), 400, "invalid_field", "recipients[1].name")
        job = simple_job(2)
        job["recipients"][1]["substitutions"]["name"] = "x\r\nBcc: victim@example.com"
        e = self.rejected(self.d.submit(job), 400, "invalid_field")
        self.assertTrue(e["field"].startswith("recipients[1]"), e)
        self.rejected(self.d.submit(simple_job(1, campaign="a\nb")), 400, "invalid_field",
                      "campaign")

    def test_missing_variable(self):
        job = simple_job(2)
        job["content"]["subject"] = "Hello {{ first }}"
        job["recipients"][0]["substitutions"]["first"] = "Ann"
        e = self.rejected(self.d.submit(job), 400, "missing_substitution")
        self.assertEqual(e["field"], "recipients[1].substitutions.first", e)
        self.assertIn("first", e["message"])
        # name is predefined (KumoMTA's): the recipient's name, or empty
        job = simple_job(2)
        del job["recipients"][1]["substitutions"]["name"]
        self.assertEqual(self.d.submit(job).status, 202)

    def test_too_large(self):
        job = simple_job(1)
        job["content"]["text_body"] = "x" * 30000
        self.rejected(self.d.submit(job), 413, "too_large")
        job = simple_job(1)
        job["substitutions"]["pad"] = "y" * 300000
        self.rejected(self.d.submit(job), 413, "too_large")

    def test_media_type(self):
        self.rejected(self.d.submit(json.dumps(simple_job(1)), headers={"Content-Type": "text/plain"}),
                      415, "unsupported_media_type")
        self.rejected(self.d.submit(json.dumps(simple_job(1))), 415, "unsupported_media_type")

    def test_ndjson_errors_name_the_line(self):
        job = simple_job(0)
        del job["recipients"]
        rcpts = [{"email": "ok%d@example.org" % i, "substitutions": {"name": "x"}}
                 for i in range(5000)]
        rcpts[4321]["email"] = "broken"
        e = self.rejected(self.d.submit(ndjson(job, rcpts), headers=NDJSON), 400,
                          "invalid_address", "recipients[4321].email")
        self.assertIn("line 4323", e["message"])
        body = json.dumps(job) + "\n" + '{"email": "a@b.example", "substitutions": {"name": "x"}}\n{"email": \n'
        self.rejected(self.d.submit(body, headers=NDJSON), 400, "malformed_json")
        job2 = simple_job(1)
        self.rejected(self.d.submit(json.dumps(job2) + "\n", headers=NDJSON), 400,
                      "invalid_field", "recipients")
        self.rejected(self.d.submit(json.dumps(job) + "\n", headers=NDJSON), 400, "no_recipients")

    def test_truncated_upload(self):
        body = json.dumps(simple_job(50)).encode()
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.d.sock)
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:len(body) // 2])
        s.close()
        self.wait_clean()

    def test_disconnect_mid_ndjson(self):
        job = simple_job(0)
        del job["recipients"]
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.d.sock)
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for chunk in ndjson(job, [{"email": "u%d@example.org" % i, "substitutions": {"name": "x"}}
                                  for i in range(30000)]):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        time.sleep(0.2)
        s.close()
        self.wait_clean()

    def wait_clean(self):
        util.wait_until(lambda: not self.d.tmp_on_disk(), 10, 0.05)
        self.assertEqual(self.d.tmp_on_disk(), [])
        self.assertEqual(self.d.jobs_on_disk(), self.before)
        self.assertEqual(self.d.request("GET", "/v1/health").status, 200)


class Durability(VolleydTest):
    def test_kill9_right_after_202(self):
        d = self.start_daemon()
        job = simple_job(0)
        del job["recipients"]
        rcpts = [{"email": "k%d@example.org" % i, "name": "K %d" % i,
                  "substitutions": {"name": "K%d" % i}} for i in range(50000)]
        r = d.submit(ndjson(job, rcpts), headers=NDJSON)
        self.assertEqual(r.status, 202, r)
        d.kill9()
        d.start()
        j = d.request("GET", "/v1/jobs/" + r.json()["id"]).json()
        self.assertEqual(j["recipients"], 50000)
        self.assertEqual(sum(j["counts"].values()), 50000)
        lines = d.request("GET", "/v1/jobs/%s/recipients" % r.json()["id"]).lines()
        self.assertEqual([l["email"] for l in lines], [x["email"] for x in rcpts])

    def test_kill9_small_jobs_restored_from_the_intake_log(self):
        """Small jobs are durable through the intake log (one shared
        fdatasync), their own files not synced: killed before a checkpoint
        and with those files lost (as a power cut would lose them: one job's
        table and job.json gone, another's whole directory), the restart
        restores them from the log, byte for byte, and removes it."""
        # no checkpoint during the test: the log holds every job's record
        d = self.start_daemon(config='spool = { intake_checkpoint = "1h"; };\n')
        ids = [d.submit(simple_job(3, "kill%d.example.org" % i)).json()["id"]
               for i in range(12)]
        jobs = os.path.join(d.data_dir, "jobs")
        before = {}
        for jid in ids[:2]:
            for name in ("job.json", "rcpt"):
                with open(os.path.join(jobs, jid, name), "rb") as f:
                    before[jid, name] = f.read()
        d.kill9()
        seg = os.path.join(d.data_dir, "ilog")

        def logged():   # octets of records, past each segment's 8-octet head
            return sum(os.path.getsize(os.path.join(seg, n)) - 8 for n in os.listdir(seg))
        self.assertGreater(logged(), 0, "the jobs' records are in the log")
        os.unlink(os.path.join(jobs, ids[0], "job.json"))
        os.unlink(os.path.join(jobs, ids[0], "rcpt"))
        shutil.rmtree(os.path.join(jobs, ids[1]))
        d.start()
        # replayed and removed: the restarted daemon's own segment is empty
        self.assertEqual(logged(), 0)
        for jid in ids[:2]:
            for name in ("job.json", "rcpt"):
                with open(os.path.join(jobs, jid, name), "rb") as f:
                    self.assertEqual(f.read(), before[jid, name], (jid, name))
        for i, jid in enumerate(ids):
            j = d.request("GET", "/v1/jobs/" + jid).json()
            self.assertEqual(j["recipients"], 3, j)
            lines = d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()
            self.assertEqual([l["email"] for l in lines],
                             ["user%d@kill%d.example.org" % (k, i) for k in range(3)])

    def test_state_survives_restart(self):
        d = self.start_daemon()
        a = d.submit(simple_job(2)).json()["id"]
        b = d.submit(simple_job(2)).json()["id"]
        d.request("POST", "/v1/jobs/%s/pause" % a)
        d.request("POST", "/v1/jobs/%s/cancel" % b)
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(d.request("GET", "/v1/jobs/" + a).json()["state"], "paused")
        self.assertEqual(d.request("GET", "/v1/jobs/" + b).json()["state"], "cancelled")

    def test_idempotency_key(self):
        d = self.start_daemon()
        h = {"Idempotency-Key": "order-4711"}
        r1 = d.submit(simple_job(3), headers=h)
        r2 = d.submit(simple_job(3), headers=h)
        self.assertEqual(r1.status, 202)
        self.assertEqual(r2.status, 202)
        self.assertEqual(r1.json()["id"], r2.json()["id"])
        self.assertEqual(r2.headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(len(d.jobs_on_disk()), 1)
        d.kill9()
        d.start()
        r3 = d.submit(simple_job(3), headers=h)
        self.assertEqual(r3.json()["id"], r1.json()["id"])
        self.assertEqual(len(d.jobs_on_disk()), 1)
        # a rejected submission does not take the key
        bad = d.submit(simple_job(0), headers={"Idempotency-Key": "k2"})
        self.assertEqual(bad.status, 400)
        ok = d.submit(simple_job(1), headers={"Idempotency-Key": "k2"})
        self.assertEqual(ok.status, 202)
        self.assertError(d.submit(simple_job(1), headers={"Idempotency-Key": "bad key"}),
                         400, "invalid_field", "Idempotency-Key")

    def test_sigterm_exits_zero_and_removes_socket(self):
        d = self.start_daemon()
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(d.sock))

    def test_one_daemon_per_data_dir(self):
        d = self.start_daemon()
        p = subprocess.run([VOLLEYD, "--foreground", "--data-dir", d.data_dir],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("another volleyd", p.stderr)
        self.assertEqual(d.request("GET", "/v1/health").status, 200)


class Space(VolleydTest):
    def test_min_free_refuses_with_retry_after(self):
        d = self.start_daemon(config='spool = { min_free = "1000TB"; };\n')
        r = d.submit(simple_job(1))
        self.assertError(r, 503, "disk_full")
        self.assertIn("Retry-After", r.headers)
        self.assertFalse(d.request("GET", "/v1/health").json()["accepting"])
        self.assertEqual(d.jobs_on_disk(), [])

    def test_spool_max_bytes(self):
        d = self.start_daemon(config='spool = { max_bytes = "1KB"; };\n')
        self.assertEqual(d.submit(simple_job(200)).status, 202)
        self.assertError(d.submit(simple_job(1)), 503, "spool_full")
        self.assertEqual(len(d.jobs_on_disk()), 1)

    @unittest.skipUnless(os.geteuid() == 0, "mounting a small tmpfs needs root")
    def test_disk_full_mid_intake(self):
        mnt = util.tempdir("volley-full-")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt]).returncode:
            os.rmdir(mnt)
            self.skipTest("cannot mount tmpfs here")
        self.addCleanup(lambda: (subprocess.run(["umount", "-l", mnt]), os.rmdir(mnt)))
        d = Volleyd(data_dir=os.path.join(mnt, "data"), config='spool = { min_free = 0; };\n')
        os.mkdir(d.data_dir)
        self.addCleanup(d.stop)
        d.start()
        job = simple_job(0)
        del job["recipients"]
        rcpts = [{"email": "full%d@example.org" % i, "substitutions": {"name": "x" * 40}}
                 for i in range(60000)]
        r = d.submit(ndjson(job, rcpts), headers=NDJSON)
        self.assertError(r, 503, "disk_full")
        self.assertEqual(d.jobs_on_disk(), [])
        self.assertEqual(d.tmp_on_disk(), [])
        # space came back (the failed intake was removed): small jobs go in
        self.assertEqual(d.submit(simple_job(3)).status, 202)


class Listeners(VolleydTest):
    def test_tcp_needs_token(self):
        port = util.free_port()
        d = self.start_daemon(config='api = { listen = "127.0.0.1:%d"; token = "s3cret"; };\n' % port)
        import http.client
        def get(h):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/v1/health", headers=h)
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.status, body
        self.assertEqual(get({})[0], 401)
        self.assertEqual(get({"Authorization": "Bearer wrong"})[0], 401)
        self.assertEqual(get({"Authorization": "Bearer s3cret"})[0], 200)
        # the Unix socket needs no token
        self.assertEqual(d.request("GET", "/v1/health").status, 200)

    def test_listen_without_token_refused(self):
        d = Volleyd(config='api = { listen = "127.0.0.1:%d"; };\n' % util.free_port())
        self.addCleanup(d.cleanup)
        with self.assertRaises(RuntimeError) as cm:
            d.start()
        self.assertIn("api.token", str(cm.exception))

    def test_socket_mode(self):
        d = self.start_daemon()
        self.assertEqual(os.stat(d.sock).st_mode & 0o777, 0o660)


class Config(unittest.TestCase):
    def run_check(self, text):
        path = os.path.join(util.tempdir("volley-conf-", cleanup=self.addCleanup), "volley.conf")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([VOLLEYD, "--check-config", "--config", path],
                              capture_output=True, text=True, timeout=10)

    def test_check_config_prints_effective(self):
        p = self.run_check('hostname = "mta1.example.com";\n'
                           'domains = ( { match = "*.test"; route = "127.0.0.1:2525"; tls = "encrypt"; } );\n')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('hostname = "mta1.example.com";', p.stdout)
        self.assertIn('route = "127.0.0.1:2525";', p.stdout)
        self.assertIn('tls = "dane";', p.stdout)     # the default policy
        self.assertIn("dns.servers is unset", p.stdout)  # DANE's trust, said

    def test_check_config_says_when_dane_trusts_a_distant_resolver(self):
        p = self.run_check('dns = { servers = [ "127.0.0.1:53", "192.0.2.53:53" ]; };\n')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('dns.servers[1] = "192.0.2.53:53" is not on loopback', p.stdout)
        self.assertNotIn("dns.servers[0]", p.stdout)

    def test_bad_config_names_line_and_key(self):
        p = self.run_check('hostname = "x";\n\ndefaults = { max_conections = 5; };\n')
        self.assertEqual(p.returncode, 1)
        self.assertIn(":3: defaults.max_conections: unknown key", p.stderr)
        p = self.run_check('defaults = { tls = "sometimes"; };\n')
        self.assertEqual(p.returncode, 1)
        self.assertIn("defaults.tls", p.stderr)
        p = self.run_check('defaults = { rate = "lots"; };\n')
        self.assertIn("defaults.rate", p.stderr)
        p = self.run_check('max_message_size = "big";\n')
        self.assertIn("max_message_size", p.stderr)
        p = self.run_check('hostname = "x"\n defaults = {')
        self.assertEqual(p.returncode, 1)

    def test_usage(self):
        p = subprocess.run([VOLLEYD, "--bogus"], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2)
