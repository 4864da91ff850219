"""volleyd end to end: jobs through the API to volley-sink, outcomes in the
journal, counters, events, retries, expiry, bounces and suppression,
back-off, shaping, transactional pre-emption, pause/resume/cancel and
recovery after kill -9. Every wait is bounded."""

import email
import email.policy
import os
import subprocess
import time
import unittest

from . import util
from .daemon import VOLLEY, Volleyd, VolleydTest, simple_job
from .sinkctl import Sink


def conf(sink, extra="", tls="encrypt", domain="*.test", defaults=""):
    return ('domains = ( { match = "%s"; route = "%s"; tls = "%s"; %s } );\n'
            'defaults = { retry = [ "1s" ]; %s };\n' % (domain, sink.route(), tls, extra, defaults))


def job_for(n, domain="d.test", **extra):
    job = simple_job(n, domain=domain)
    job.update(extra)
    return job


class Base(VolleydTest):
    def sink(self, *args, **kw):
        s = Sink("--tls", *args, **kw).start()
        self.addCleanup(s.stop)
        return s

    def events(self, d, jid):
        return d.request("GET", "/v1/events?job=" + jid).lines()


class Delivery(Base):
    def test_delivers_every_recipient_over_tls(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s))
        jid = d.submit(job_for(300)).json()["id"]
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 300)
        self.assertEqual(j["state"], "done")
        msgs = s.new_messages(300, wait=10)
        self.assertEqual(sorted(m.env["rcpt"][0] for m in msgs),
                         sorted("user%d@d.test" % i for i in range(300)))
        one = [m for m in msgs if m.env["rcpt"][0] == "user7@d.test"][0]
        parsed = email.message_from_bytes(one.data, policy=email.policy.default)
        self.assertEqual(parsed["Subject"], "Hello User 7")
        self.assertEqual(parsed.get_content().strip(), "Hi User 7, the fall issue is out.")
        self.assertEqual(one.env["mail_from"], "bounces@news.example.com")
        self.assertTrue(one.env["tls"], one.env)
        ev = self.events(d, jid)
        self.assertEqual(len(ev), 300)
        self.assertEqual({e["type"] for e in ev}, {"Delivery"})
        self.assertTrue(all(e["tls"] and e["tls"]["version"].startswith("TLS") for e in ev))
        self.assertEqual(ev[0]["response"]["code"], 250)
        rc = d.request("GET", "/v1/jobs/%s/recipients?state=delivered" % jid).lines()
        self.assertEqual(len(rc), 300)
        self.assertEqual(rc[0]["response"]["code"], 250)

    def test_verp_envelope_sender(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s))
        jid = d.submit(job_for(3, verp=True)).json()["id"]
        self.wait_done(d, jid)
        froms = sorted(m.env["mail_from"] for m in s.new_messages(3, wait=10))
        self.assertEqual(froms, ["bounces+%s.%d@news.example.com" % (jid, i) for i in range(3)])

    def test_bounce_classified_and_suppressed(self):
        s = self.sink("--reply", "rcpt:user1@*=550 5.1.1 The email account that you tried to reach does not exist")
        d = self.start_daemon(config=conf(s))
        jid = d.submit(job_for(3)).json()["id"]
        j = self.wait_done(d, jid)
        self.assertEqual((j["counts"]["delivered"], j["counts"]["bounced"]), (2, 1))
        b = d.request("GET", "/v1/jobs/%s/recipients?state=bounced" % jid).lines()
        self.assertEqual(b[0]["email"], "user1@d.test")
        self.assertEqual(b[0]["bounce_class"], "invalid-recipient")
        self.assertEqual(b[0]["response"]["enhanced"], "5.1.1")
        ev = [e for e in self.events(d, jid) if e["type"] == "Bounce"]
        self.assertEqual(ev[0]["bounce_class"], "invalid-recipient")
        # the hard bounce put the address on the suppression list
        self.wait_for("suppression", lambda: d.request("GET", "/v1/suppression/user1@d.test").status == 200)
        jid2 = d.submit(job_for(3)).json()["id"]
        j2 = self.wait_done(d, jid2)
        self.assertEqual(j2["counts"]["suppressed"], 1)
        self.assertEqual(j2["counts"]["delivered"], 2)
        lst = d.request("GET", "/v1/suppression").json()
        self.assertEqual([x["email"] for x in lst["suppressed"]], ["user1@d.test"])
        self.assertEqual(d.request("DELETE", "/v1/suppression/user1@d.test").status, 200)
        self.assertEqual(d.request("GET", "/v1/suppression/user1@d.test").status, 404)

    def test_transient_failures_are_retried(self):
        s = self.sink("--tempfail", "rcpt:40%", "--seed", "7")
        d = self.start_daemon(config=conf(s))
        jid = d.submit(job_for(60)).json()["id"]
        j = self.wait_done(d, jid, timeout=60)
        self.assertEqual(j["counts"]["delivered"], 60)
        types = [e["type"] for e in self.events(d, jid)]
        self.assertEqual(types.count("Delivery"), 60)
        self.assertGreater(types.count("TransientFailure"), 5)
        att = [r["attempts"] for r in d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()]
        self.assertGreater(max(att), 1)

    def test_expiry(self):
        s = self.sink("--reply", "rcpt:*@slow.test=451 4.3.0 try again later")
        d = self.start_daemon(config=conf(s, defaults='max_age = "3s";'))
        jid = d.submit(job_for(5, domain="slow.test")).json()["id"]
        j = self.wait_done(d, jid, timeout=20)
        self.assertEqual(j["counts"]["expired"], 5)
        types = {e["type"] for e in self.events(d, jid)}
        self.assertIn("Expiration", types)
        self.assertIn("TransientFailure", types)

    def test_rate_limit_reply_backs_the_site_off(self):
        s = self.sink("--reply", "rcpt:*=421 4.7.28 Our system has detected an unusual rate of unsolicited mail")
        d = self.start_daemon(config=conf(s))
        d.submit(job_for(20))
        q = self.wait_for("back-off", lambda: [x for x in d.request("GET", "/v1/queues").json()["queues"]
                                                if x["backoff"]])
        bo = q[0]["backoff"]
        self.assertIn("4.7.28", bo["reason"])
        self.assertIn("rate cut to", bo["reason"])
        self.assertTrue(bo["suspended"])
        self.assertGreater(q[0]["deferred"] + q[0]["queued"], 0)
        # the operator's view: volley queues says why, in words
        out = subprocess.run([VOLLEY, "--socket", d.sock, "queues"], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out)
        self.assertIn("BACKOFF", out.stdout)
        self.assertIn("4.7.28", out.stdout)
        self.assertIn("suspended until", out.stdout)

    def test_domain_rate(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s, extra='rate = "20/s";'))
        t0 = time.monotonic()
        jid = d.submit(job_for(60)).json()["id"]
        self.wait_done(d, jid)
        # a burst of 20 then 20 a second: 60 take at least 2 s
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)

    def test_job_rate_limit(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s))
        t0 = time.monotonic()
        jid = d.submit(job_for(30, rate_limit="10/s")).json()["id"]
        self.wait_done(d, jid)
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)

    def test_transactional_preempts_bulk(self):
        s = self.sink("--latency", "20ms")
        d = self.start_daemon(config=conf(s, extra="max_connections = 2;"))
        bulk = d.submit(job_for(3000)).json()["id"]
        self.wait_for("bulk under way", lambda: d.request("GET", "/v1/jobs/" + bulk).json()["counts"]["delivered"] > 20)
        t0 = time.monotonic()
        tx = d.submit(job_for(1, domain="d.test", priority="transactional",
                              recipients=[{"email": "reset@d.test", "substitutions": {"name": "R"}}])).json()["id"]
        self.wait_done(d, tx, timeout=10)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertFalse(d.request("GET", "/v1/jobs/" + bulk).json()["done"])
        d.request("POST", "/v1/jobs/%s/cancel" % bulk)

    def test_pause_resume_cancel_while_delivering(self):
        s = self.sink("--latency", "20ms")
        d = self.start_daemon(config=conf(s, extra="max_connections = 2;"))
        jid = d.submit(job_for(400)).json()["id"]
        self.wait_for("started", lambda: d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"] > 5)
        p = d.request("POST", "/v1/jobs/%s/pause" % jid).json()
        self.assertEqual(p["state"], "paused")
        time.sleep(0.3)
        a = d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"]
        time.sleep(0.5)
        self.assertEqual(d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"], a)
        d.request("POST", "/v1/jobs/%s/resume" % jid)
        self.wait_for("moving again", lambda: d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"] > a)
        c = d.request("POST", "/v1/jobs/%s/cancel" % jid).json()
        self.assertEqual(c["state"], "cancelled")
        j = self.wait_done(d, jid)
        n = j["counts"]
        self.assertEqual(n["delivered"] + n["cancelled"], 400)
        self.assertGreater(n["cancelled"], 0)
        self.assertIn("AdminBounce", {e["type"] for e in self.events(d, jid)})

    def test_kill9_mid_delivery_then_restart_delivers_all(self):
        s = self.sink("--latency", "5ms")
        d = self.start_daemon(config=conf(s, extra="max_connections = 4;"))
        jid = d.submit(job_for(1500)).json()["id"]
        self.wait_for("some delivered", lambda: d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"] > 100)
        d.kill9()
        d.start()
        j = self.wait_done(d, jid, timeout=60)
        self.assertEqual(j["counts"]["delivered"], 1500)
        got = {m.env["rcpt"][0] for m in s.new_messages(1500, wait=10)}
        self.assertEqual(got, {"user%d@d.test" % i for i in range(1500)})

    def test_sigterm_drains_and_restart_completes(self):
        s = self.sink("--latency", "20ms")
        d = self.start_daemon(config=conf(s, extra="max_connections = 2;"))
        jid = d.submit(job_for(300)).json()["id"]
        self.wait_for("started", lambda: d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"] > 5)
        self.assertEqual(d.stop(), 0)
        d.start()
        j = self.wait_done(d, jid, timeout=60)
        self.assertEqual(j["counts"]["delivered"], 300)
        got = [m.env["rcpt"][0] for m in s.new_messages(300, wait=10)]
        self.assertEqual(set(got), {"user%d@d.test" % i for i in range(300)})
        # a clean drain journals what it delivered: no duplicates
        self.assertEqual(len(got), 300)
        # and a finished job keeps its finishing time across a restart
        finished = j["finished"]
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertTrue(os.path.exists(os.path.join(d.data_dir, "jobs", jid, "done.json")))
        after = d.request("GET", "/v1/jobs/" + jid).json()
        self.assertEqual(after["counts"], j["counts"])
        self.assertEqual(len(d.request("GET", "/v1/jobs/%s/recipients?state=delivered" % jid).lines()), 300)
        again = after["finished"]
        iso = lambda t: time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ"))
        self.assertLessEqual(abs(iso(again) - iso(finished)), 1, (finished, again))

    def test_metrics_and_stats_after_delivery(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s))
        jid = d.submit(job_for(10)).json()["id"]
        self.wait_done(d, jid)
        st = d.request("GET", "/v1/stats").json()
        self.assertEqual(st["scheduler"]["delivery"]["delivered"], 10)
        self.assertEqual(st["scheduler"]["delivery"]["journal"]["commits"] > 0, True)
        m = d.request("GET", "/metrics").body.decode()
        self.assertRegex(m, r'volley_recipients\{state="delivered"\} 10')
        self.assertRegex(m, r'volley_outcomes_total\{outcome="delivered"\} 10')
        self.assertRegex(m, r'volley_site_queued\{site="%s"\} 0' % s.route().replace(".", r"\."))
        self.assertIn("# TYPE volley_journal_commit_max_seconds gauge", m)


class MixedOutcomes(Base):
    """One job over five routes (five sinks on five loopback addresses),
    each answering its own way, with short retries, timeouts and max_age."""

    def test_every_recipient_reaches_its_outcome(self):
        ok = self.sink(hosts=("127.0.0.2",))
        flaky = self.sink("--tempfail", "rcpt:30%", "--seed", "11", hosts=("127.0.0.3",))
        bad = self.sink("--reply", "rcpt:*=550 5.1.1 <x>: Recipient address rejected: "
                        "User unknown in virtual mailbox table", hosts=("127.0.0.4",))
        busy = self.sink("--reply", "rcpt:*=421 4.7.0 [TSS04] Messages from 192.0.2.1 "
                         "temporarily deferred due to unexpected volume or user complaints",
                         hosts=("127.0.0.5",))
        mute = self.sink("--reply", "rcpt:*=stall", hosts=("127.0.0.6",))
        routes = "".join('{ match = "%s"; route = "%s"; tls = "encrypt"; },\n' % (d, s.route())
                         for d, s in (("ok.test", ok), ("retry.test", flaky), ("bad.test", bad),
                                      ("busy.test", busy), ("mute.test", mute)))
        d = self.start_daemon(config="domains = ( %s );\n"
                              'defaults = { retry = [ "1s" ]; max_age = "15s"; };\n'
                              'timeouts = { rcpt = "1s"; };\n' % routes.rstrip(",\n"))
        job = simple_job(0)
        job["recipients"] = [{"email": "u%d@%s" % (i, dom), "substitutions": {"name": "x"}}
                             for dom in ("ok.test", "retry.test", "bad.test", "busy.test",
                                         "mute.test") for i in range(8)]
        jid = d.submit(job).json()["id"]
        q = self.wait_for("busy site backs off", lambda: [
            x for x in d.request("GET", "/v1/queues").json()["queues"]
            if x["backoff"] and x["site"] == busy.route()])
        self.assertIn("TSS04", q[0]["backoff"]["reason"])
        j = self.wait_done(d, jid, timeout=60)
        c = j["counts"]
        self.assertEqual(c["delivered"], 16, c)     # ok.test and retry.test
        self.assertEqual(c["bounced"], 8, c)        # bad.test
        self.assertEqual(c["expired"], 16, c)       # busy.test and mute.test
        rows = {r["email"]: r for r in d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()}
        self.assertEqual(rows["u0@bad.test"]["bounce_class"], "invalid-recipient")
        self.assertEqual(rows["u0@bad.test"]["state"], "bounced")
        self.assertEqual(rows["u0@busy.test"]["bounce_class"], "rate-limited")
        self.assertEqual(rows["u0@mute.test"]["bounce_class"], "timeout")
        self.assertGreater(max(r["attempts"] for e, r in rows.items() if "retry" in e), 1)
        ev = self.events(d, jid)
        mute_fail = [e for e in ev if e["type"] == "TransientFailure" and e["domain"] == "mute.test"]
        self.assertTrue(mute_fail and mute_fail[0]["bounce_class"] == "timeout", mute_fail[:1])
        self.assertEqual(len(ok.new_messages(8, wait=5)), 8)
        self.assertEqual(len(flaky.new_messages(8, wait=5)), 8)
        self.wait_for("suppressed", lambda: d.request("GET", "/v1/suppression").json()["count"] == 8)


class Rates(Base):
    def test_site_rate_within_ten_percent_at_the_sink(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s, extra='rate = "20/s";'))
        jid = d.submit(job_for(110)).json()["id"]
        self.wait_done(d, jid)
        times = sorted(os.stat(os.path.join(s.maildir, "new", m.id)).st_mtime_ns
                       for m in s.new_messages(110, wait=5))
        # after the first second's burst of 20, the steady pace
        steady = times[30:]
        rate = (len(steady) - 1) / ((steady[-1] - steady[0]) / 1e9)
        self.assertLess(abs(rate - 20) / 20, 0.10, "measured %.2f/s at the sink" % rate)


class DiskFull(Base):
    @unittest.skipUnless(os.geteuid() == 0, "mounting a small tmpfs needs root")
    def test_deliveries_pause_while_the_disk_is_full_and_resume(self):
        mnt = util.tempdir("volley-full-")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mnt]).returncode:
            os.rmdir(mnt)
            self.skipTest("cannot mount tmpfs here")
        self.addCleanup(lambda: (subprocess.run(["umount", "-l", mnt]), os.rmdir(mnt)))
        s = self.sink("--latency", "10ms")
        d = Volleyd(data_dir=os.path.join(mnt, "data"),
                    config=conf(s, extra="max_connections = 2;") + 'spool = { min_free = 0; };\n')
        os.mkdir(d.data_dir)
        self.addCleanup(d.stop)
        d.start()
        jid = d.submit(job_for(2000)).json()["id"]
        self.wait_for("under way", lambda: d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"] > 50)
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        # the journal cannot be written: deliveries pause, intake refuses
        self.wait_for("blocked", lambda: not d.request("GET", "/v1/health").json()["accepting"])
        r = d.submit(job_for(1))
        self.assertEqual(r.status, 503, r)
        a = d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"]
        time.sleep(1.0)
        self.assertEqual(d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"], a)
        self.assertLess(a, 2000)
        os.unlink(filler)
        j = self.wait_done(d, jid, timeout=90)
        self.assertEqual(j["counts"]["delivered"], 2000)
        got = {m.env["rcpt"][0] for m in s.new_messages(2000, wait=10)}
        self.assertEqual(got, {"user%d@d.test" % i for i in range(2000)})


class Retention(Base):
    def test_finished_jobs_leave_after_their_retention(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s) + 'spool = { retain = "1s"; };\n')
        h = {"Idempotency-Key": "retained-1"}
        jid = d.submit(job_for(5), headers=h).json()["id"]
        self.wait_done(d, jid)
        self.assertIn(jid, d.jobs_on_disk())
        self.wait_for("retired", lambda: d.request("GET", "/v1/jobs/" + jid).status == 404)
        self.assertEqual(d.jobs_on_disk(), [])
        # its idempotency key went with it: the same key is a new job now
        again = d.submit(job_for(5), headers=h).json()["id"]
        self.assertNotEqual(again, jid)
        s.new_messages(10, wait=10)


class Shutdown(Base):
    def test_sigterm_while_clients_poll_exits_zero(self):
        import threading
        s = self.sink("--latency", "20ms")
        d = self.start_daemon(config=conf(s, extra="max_connections = 2;"))
        jid = d.submit(job_for(500)).json()["id"]
        self.wait_for("started", lambda: d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"] > 5)
        stop = threading.Event()

        def poll():
            paths = ["/metrics", "/v1/stats", "/v1/queues", "/v1/health", "/v1/jobs/" + jid]
            i = 0
            while not stop.is_set():
                try:
                    d.request("GET", paths[i % len(paths)], timeout=2)
                except Exception:
                    pass
                i += 1
        threads = [threading.Thread(target=poll) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            self.assertEqual(d.stop(), 0)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
