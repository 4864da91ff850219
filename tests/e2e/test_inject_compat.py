"""Bulk lists with invalid recipients (all-or-nothing naming every bad
line, or on_invalid "skip" keeping the valid ones), and KumoMTA's own
documented /api/inject/v1 request examples replayed verbatim
(tests/e2e/kumo_examples.py): accepted, predefined substitutions
rendered, KumoMTA-only fields accepted with a warning."""

import email
import email.policy
import json
import os
import subprocess

from . import kumo_examples as kumo
from . import util
from .daemon import VOLLEY, VolleydTest, simple_job
from .sinkctl import Sink

NDJSON = {"Content-Type": "application/x-ndjson"}
BAD = {3: "no-at-sign", 6: "two@@example.net", 9: "x@-bad-.example"}   # list positions


def ndjson_list(n=10):
    """The job line, then n recipients, BAD ones at their positions."""
    job = simple_job(0)
    del job["recipients"]
    lines = [json.dumps(job)]
    for i in range(n):
        lines.append(json.dumps({"email": BAD.get(i, "u%d@example.net" % i),
                                 "substitutions": {"name": "x"}}))
    return lines


class BulkLists(VolleydTest):
    def setUp(self):
        self.d = self.start_daemon()

    def assert_named(self, listed):
        """Every BAD recipient, by index, NDJSON line (job line is 1) and address."""
        got = {(x["index"], x["line"], x["email"], x["code"]) for x in listed}
        want = {(i, i + 2, e, "invalid_address") for i, e in BAD.items()}
        self.assertEqual(got, want, listed)
        for x in listed:
            self.assertEqual(x["field"], "recipients[%d].email" % x["index"], x)
            self.assertTrue(x["message"].startswith("line %d: recipients[%d].email: "
                                                    % (x["line"], x["index"])), x)

    def test_all_or_nothing_names_every_bad_line(self):
        r = self.d.submit("\n".join(ndjson_list()) + "\n", headers=NDJSON)
        e = self.assertError(r, 400, "invalid_address", "recipients[3].email")
        self.assertEqual(e["invalid_count"], 3, e)
        self.assertIn("line 5: recipients[3].email", e["message"])
        self.assertIn("2 more invalid recipients", e["message"])
        self.assert_named(e["invalid_recipients"])
        self.assertEqual(self.d.jobs_on_disk(), [], "nothing stored")
        self.assertEqual(self.d.tmp_on_disk(), [], "nothing left behind")

    def test_a_json_body_names_indexes(self):
        job = simple_job(5)
        job["recipients"][1]["email"] = "bad"
        job["recipients"][4]["name"] = "a\nb"
        e = self.assertError(self.d.submit(job), 400, "invalid_address", "recipients[1].email")
        got = [(x["index"], x["line"], x["code"], x["field"]) for x in e["invalid_recipients"]]
        self.assertEqual(got, [(1, None, "invalid_address", "recipients[1].email"),
                               (4, None, "invalid_field", "recipients[4].name")])

    def test_skip_stores_the_valid_ones_and_reports_the_rest(self):
        lines = ndjson_list()
        job = json.loads(lines[0])
        job["on_invalid"] = "skip"
        lines[0] = json.dumps(job)
        lines.insert(4, "{not json")          # line 5: the list's 4th line
        r = self.d.submit("\n".join(lines) + "\n", headers=NDJSON)
        self.assertEqual(r.status, 202, r)
        a = r.json()
        self.assertEqual((a["recipients"], a["fail_count"], a["invalid_count"]), (7, 4, 4), a)
        bad = {x["line"]: x for x in a["invalid_recipients"]}
        self.assertEqual(bad[5]["code"], "malformed_json", bad)
        self.assertIsNone(bad[5]["email"], bad)
        self.assertEqual(sorted(bad), [5, 6, 9, 12], bad)
        self.assertEqual(len(a["errors"]), 4, a)
        self.assertIn("two@@example.net", a["failed_recipients"])
        rows = self.d.request("GET", "/v1/jobs/%s/recipients" % a["id"]).lines()
        self.assertEqual(sorted(x["email"] for x in rows),
                         sorted("u%d@example.net" % i for i in range(10) if i not in BAD))
        # durably: the same after a restart
        self.d.stop()
        self.d.start()
        rows = self.d.request("GET", "/v1/jobs/%s/recipients" % a["id"]).lines()
        self.assertEqual(len(rows), 7)

    def test_skip_with_nothing_valid_is_refused(self):
        job = simple_job(2, on_invalid="skip")
        for r in job["recipients"]:
            r["email"] = "bad"
        e = self.assertError(self.d.submit(job), 400, "invalid_address")
        self.assertEqual(e["invalid_count"], 2)
        self.assertEqual(self.d.jobs_on_disk(), [])

    def test_on_invalid_values(self):
        self.assertError(self.d.submit(simple_job(1, on_invalid="maybe")), 400,
                         "invalid_field", "on_invalid")
        self.assertEqual(self.d.submit(simple_job(1, on_invalid="refuse")).status, 202)

    def test_cli_upload_of_a_csv_list(self):
        tmp = util.tempdir("volley-inject-")
        self.addCleanup(util.remove_dir, tmp)
        job = simple_job(0)
        del job["recipients"]
        jpath, lpath = os.path.join(tmp, "job.json"), os.path.join(tmp, "list.csv")
        with open(jpath, "w") as f:
            json.dump(job, f)
        with open(lpath, "w") as f:
            f.write("email,name\n")
            for i in range(10):
                f.write("%s,N%d\n" % (BAD.get(i, "u%d@example.net" % i), i))
        r = subprocess.run([VOLLEY, "--socket", self.d.sock, "submit", jpath,
                            "--recipients", lpath], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("recipients[3].email", r.stderr)
        self.assertIn("2 more invalid recipients", r.stderr)
        self.assertEqual(self.d.jobs_on_disk(), [])


class KumoExamples(VolleydTest):
    def setUp(self):
        self.sink = Sink().start()
        self.addCleanup(self.sink.stop)
        self.d = self.start_daemon(config=(
            'domains = ( { match = "*"; route = "%s"; tls = "none"; } );\n' % self.sink.route()))

    def inject(self, text):
        return self.d.request("POST", "/api/inject/v1", text.encode(),
                              headers={"Content-Type": "application/json"})

    def delivered(self, a, n=1):
        j = self.wait_done(self.d, a["id"])
        self.assertEqual(j["counts"]["delivered"], n, j)
        return [email.message_from_bytes(m.data, policy=email.policy.default)
                for m in self.sink.new_messages(n, wait=10)]

    def test_the_user_guides_curl_example(self):
        r = self.inject(kumo.USERGUIDE_CURL)
        self.assertIn(r.status, (200, 202), r)
        a = r.json()
        self.assertEqual((a["success_count"], a["fail_count"], a["failed_recipients"],
                          a["errors"]), (1, 0, [], []), a)
        self.assertNotIn("warnings", a)
        self.assertEqual(self.delivered(a)[0]["Subject"], "hello")

    def test_the_basic_example_as_published_is_not_json(self):
        # KumoMTA's own JSON parser refuses the trailing comma too
        self.assertError(self.inject(kumo.BASIC), 400, "malformed_json")

    def test_templating_with_predefined_name_and_email(self):
        r = self.inject(kumo.TEMPLATING)
        self.assertIn(r.status, (200, 202), r)
        m = self.delivered(r.json())[0]
        self.assertIn(b'To: "John Smith" <recipient@example.com>\r\n', m.as_bytes(policy=email.policy.SMTP))
        self.assertEqual(m.get_content().strip(), "Hello John Smith!")

    def test_every_kumomta_field(self):
        r = self.inject(kumo.FULL_REQUEST)
        self.assertIn(r.status, (200, 202), r)
        a = r.json()
        self.assertEqual(a["success_count"], 1, a)
        w = " | ".join(a["warnings"])
        for field in ("trace_headers", "recipients[].metadata"):
            self.assertIn(field, w)
        for quiet in ("deferred_generation", "deferred_spool", "template_dialect"):
            self.assertNotIn(quiet, w)     # false, false, Jinja: what volley does
        self.delivered(a)

    def test_kumomta_only_values_warn(self):
        job = json.loads(kumo.USERGUIDE_CURL)
        job.update(deferred_generation=True, deferred_spool=True, template_dialect="Static")
        a = self.inject(json.dumps(job)).json()
        w = " | ".join(a["warnings"])
        for field in ("deferred_generation", "deferred_spool", "template_dialect"):
            self.assertIn(field, w)

    def test_the_content_builder_example_and_to_header(self):
        content = json.loads(kumo.CONTENT_BUILDER)
        content["headers"]["To"] = "{{ to_header }}"
        req = {"envelope_sender": "bounce@sender-example.com", "content": content,
               "recipients": [{"email": "ann@example.net", "name": "Ann Example"}]}
        r = self.inject(json.dumps(req))
        self.assertIn(r.status, (200, 202), r)
        a = r.json()
        self.assertIn("content.amp_html_body", " | ".join(a["warnings"]))
        m = self.delivered(a)[0]
        self.assertEqual(m["To"], "Ann Example <ann@example.net>")
        self.assertEqual(m["X-Tenant"], "MyTenant")
        self.assertEqual(m["Subject"], "string")
        types = [p.get_content_type() for p in m.walk()]
        self.assertIn("image/gif", types)
        self.assertNotIn("text/x-amp-html", types)

    def test_unknown_fields_are_still_refused(self):
        job = json.loads(kumo.USERGUIDE_CURL)
        job["colour"] = "red"
        self.assertError(self.inject(json.dumps(job)), 400, "unknown_field", "colour")
