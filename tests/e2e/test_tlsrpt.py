"""TLS-RPT (RFC 8460) end to end: volleyd delivers to two MX hosts found
through a real unbound on loopback, one offering STARTTLS (a success), one
not (starttls-not-supported under the default policy, a failure); `volley
tls-report DOMAIN` prints each domain's report, which must pass RFC 8460's
schema (tests/tools/tlsrpt_validate.py, Debian's jsonschema) and count the
sessions; a restart keeps them; sending them now posts the gzip'd report
to an https rua (Python's https server with a test certificate) and mails
it to a mailto rua (a message at a sink, with RFC 8460 5.3's headers and a
gzip'd attachment), whose own delivery is not counted."""

import email
import email.policy
import gzip
import http.server
import json
import os
import ssl
import subprocess
import threading
import time

from . import dnsctl, util
from .daemon import VOLLEY, Volleyd, VolleydTest, simple_job
from .sinkctl import Sink, make_cert

VALIDATE = os.path.join(util.REPO, "tests", "tools", "tlsrpt_validate.py")
HOSTNAME = "mta.volley.test"


class Receiver(http.server.BaseHTTPRequestHandler):
    posts = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Receiver.posts.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def schema_problems(report):
    """What RFC 8460's schema says of report ("" when it passes)."""
    p = subprocess.run(["/usr/bin/python3", VALIDATE, "-"], input=json.dumps(report).encode(),
                       capture_output=True, timeout=30)
    return "" if p.returncode == 0 else (p.stdout + p.stderr).decode()


class TlsRpt(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-tlsrpt-")
        cls.cert, key = make_cert(cls.dir, "reports", "reports.test", "DNS:reports.test")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cls.cert, key)
        cls.https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        cls.https.socket = ctx.wrap_socket(cls.https.socket, server_side=True)
        cls.https_port = cls.https.server_address[1]
        cls.https_thread = threading.Thread(target=cls.https.serve_forever, daemon=True)
        cls.https_thread.start()
        cls.tls = Sink("--tls", hosts=("127.0.0.2",)).start()
        cls.plain = Sink(hosts=("127.0.0.3",), port=cls.tls.port).start()
        zones = {
            "ok.test": ["ok.test. 300 IN MX 10 mx.ok.test.", "mx.ok.test. 300 IN A 127.0.0.2",
                        '_smtp._tls.ok.test. 300 IN TXT "v=TLSRPTv1; rua=https://reports.test:%d/tlsrpt"'
                        % cls.https_port,
                        '_smtp._tls.ok.test. 300 IN TXT "some other record"'],
            "bad.test": ["bad.test. 300 IN MX 10 mx.bad.test.", "mx.bad.test. 300 IN A 127.0.0.3",
                         '_smtp._tls.bad.test. 300 IN TXT "v=TLSRPTv1;" "rua=mailto:tlsrpt@rua.test"'],
            "rua.test": ["rua.test. 300 IN MX 10 mx.ok.test."],
            "fail.test": ['_smtp._tls.fail.test. 300 IN TXT "v=TLSRPTv1; rua=https://reports.test:1/x"'],
            "reports.test": ["reports.test. 300 IN A 127.0.0.1"],
        }
        cls.ub = dnsctl.Unbound(zones).start()

    @classmethod
    def tearDownClass(cls):
        cls.https.shutdown()
        cls.https.server_close()
        for x in (cls.ub, cls.plain, cls.tls):
            x.stop()

    def config(self, tls_rpt=True):
        c = ('hostname = "%s";\n'
             'dns = { servers = [ "%s" ]; allow_private = true; timeout_ms = 500; };\n'
             'defaults = { port = %d; retry = [ "1h" ]; };\n'
             % (HOSTNAME, self.ub.server, self.tls.port))
        if tls_rpt:
            c += ('tls_rpt = { organization = "Volley Test"; contact = "tlsrpt@volley.test";'
                  ' ca_file = "%s"; };\n' % self.cert)
        return c

    def cli(self, d, *args, rc=0):
        p = subprocess.run([VOLLEY, "--data-dir", d.data_dir, "tls-report", *args],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, rc, p)
        return json.loads(p.stdout) if p.returncode == 0 else p.stderr.decode()

    def deliver_one_each(self, d):
        """One recipient at ok.test (delivered over TLS), one at bad.test
        (deferred: no STARTTLS); returns once both outcomes are in."""
        job = simple_job(0)
        job["recipients"] = [{"email": "a@ok.test", "substitutions": {"name": "A"}},
                             {"email": "b@bad.test", "substitutions": {"name": "B"}}]
        jid = d.submit(job).json()["id"]

        def settled():
            rows = {r["email"]: r["state"] for r in
                    d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()}
            return rows == {"a@ok.test": "delivered", "b@bad.test": "deferred"} and rows
        self.wait_for("a delivery and a deferral", settled)
        self.tls.new_messages(1, wait=5)
        return jid

    def check_reports(self, d):
        ok, bad = self.cli(d, "ok.test"), self.cli(d, "bad.test")
        for rep in (ok, bad):
            self.assertEqual(schema_problems(rep), "", rep)
            self.assertEqual(rep["organization-name"], "Volley Test")
            self.assertEqual(rep["contact-info"], "tlsrpt@volley.test")
            self.assertEqual(len(rep["policies"]), 1, rep)
        pol = ok["policies"][0]
        self.assertEqual(pol["policy"], {"policy-type": "no-policy-found", "policy-domain": "ok.test"})
        self.assertEqual(pol["summary"], {"total-successful-session-count": 1,
                                          "total-failure-session-count": 0})
        pol = bad["policies"][0]
        self.assertEqual(pol["summary"], {"total-successful-session-count": 0,
                                          "total-failure-session-count": 1})
        fd = pol["failure-details"]
        self.assertEqual(len(fd), 1, fd)
        self.assertEqual(fd[0]["result-type"], "starttls-not-supported")
        self.assertEqual(fd[0]["receiving-mx-hostname"], "mx.bad.test")
        self.assertEqual(fd[0]["receiving-ip"], "127.0.0.3")
        self.assertEqual(fd[0]["failed-session-count"], 1)
        self.assertIn("STARTTLS", fd[0]["failure-reason-code"])
        return ok, bad

    def test_a_day_with_one_success_and_one_failure(self):
        d = self.start_daemon(config=self.config())
        jid = self.deliver_one_each(d)
        ok, bad = self.check_reports(d)
        today = ok["date-range"]["start-datetime"][:10]
        self.assertEqual(ok["report-id"], "%s.ok.test@%s" % (today, HOSTNAME))
        self.assertEqual(self.cli(d, "ok.test", "--date", today), ok, "--date today is the default")

        # nothing recorded, a bad date or domain: the API says which
        self.assertError(d.request("GET", "/v1/tls-report?domain=none.test"), 404, "not_found")
        self.assertError(d.request("GET", "/v1/tls-report?domain=ok.test&date=2026-02-30"),
                         400, "invalid_field", "date")
        self.assertError(d.request("GET", "/v1/tls-report?domain=a/b"), 400, "invalid_field",
                         "domain")
        self.assertError(d.request("GET", "/v1/tls-report"), 400, "missing_field", "domain")
        self.assertError(d.request("POST", "/v1/tls-report"), 405)
        self.assertIn("nothing was recorded", self.cli(d, "no-such.test", rc=1))

        # a restart (SIGTERM writes the day) keeps the day; the deferred
        # recipient is cancelled first, or the restart would try it again
        self.assertEqual(d.request("POST", "/v1/jobs/%s/cancel" % jid).status, 200)
        self.assertEqual(d.stop(), 0)
        path = os.path.join(d.data_dir, "tls-rpt", today, "bad.test.json")
        self.assertTrue(os.path.exists(path), os.listdir(os.path.join(d.data_dir, "tls-rpt")))
        d.start()
        self.assertEqual(self.check_reports(d), (ok, bad))

        # sent now: https rua gets the gzip'd report
        Receiver.posts.clear()
        res = self.cli(d, "ok.test", "--send")
        self.assertTrue(res["sent"], res)
        self.assertEqual(len(Receiver.posts), 1, res)
        path_, headers, body = Receiver.posts[0]
        self.assertEqual(path_, "/tlsrpt")
        self.assertEqual(headers["Content-Type"], "application/tlsrpt+gzip")
        self.assertEqual(json.loads(gzip.decompress(body)), ok)
        self.assertTrue(os.path.exists(os.path.join(d.data_dir, "tls-rpt", today, "ok.test.sent")))

        # mailto rua: a message through volley's own delivery path
        res = self.cli(d, "bad.test", "--send")
        self.assertTrue(res["sent"], res)
        msgs = self.tls.new_messages(1, wait=15)
        self.assertEqual(len(msgs), 1, res)
        self.assertEqual(msgs[0].env["rcpt"], ["tlsrpt@rua.test"])
        m = email.message_from_bytes(msgs[0].data, policy=email.policy.default)
        self.assertEqual(m["TLS-Report-Domain"], "bad.test")
        self.assertEqual(m["TLS-Report-Submitter"], HOSTNAME)
        self.assertEqual(m["Subject"], "Report Domain: bad.test Submitter: %s Report-ID: <%s>"
                         % (HOSTNAME, bad["report-id"]))
        self.assertEqual(m.get_content_type(), "multipart/report")
        self.assertEqual(m.get_param("report-type"), "tlsrpt")
        att = [p for p in m.iter_attachments() if p.get_content_type() == "application/tlsrpt+gzip"]
        self.assertEqual(len(att), 1, [p.get_content_type() for p in m.walk()])
        day0 = int(subprocess.run(["date", "-u", "-d", today, "+%s"], capture_output=True,
                                  check=True).stdout)
        self.assertEqual(att[0].get_filename(), "%s!bad.test!%d!%d.json.gz"
                         % (HOSTNAME, day0, day0 + 86399))
        self.assertEqual(json.loads(gzip.decompress(att[0].get_content())), bad)

        # the report's own delivery was not counted (no report about reports)
        self.assertError(d.request("GET", "/v1/tls-report?domain=rua.test"), 404, "not_found")
        self.assertEqual(self.cli(d, "ok.test")["policies"], ok["policies"])

    def test_off_unless_configured(self):
        d = self.start_daemon(config=self.config(tls_rpt=False))
        self.deliver_one_each(d)
        self.assertError(d.request("GET", "/v1/tls-report?domain=ok.test"), 404, "not_found")
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, "tls-rpt")))

    def test_a_finished_day_is_sent_once(self):
        """A day before today found at start is sent by the daemon itself:
        ok.test's report reaches its https rua and is marked sent; fail.test's
        receiver refuses, so the day stays; a restart sends ok.test's
        report no second time."""
        d = Volleyd(config=self.config())
        self.addCleanup(d.cleanup)
        yday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
        folder = os.path.join(d.data_dir, "tls-rpt", yday)
        os.makedirs(folder)
        for dom in ("ok.test", "fail.test"):
            with open(os.path.join(folder, dom + ".json"), "w") as f:
                json.dump({"policy-domain": dom, "date": yday, "policies": [
                    {"policy": {"policy-type": "no-policy-found", "policy-domain": dom},
                     "summary": {"total-successful-session-count": 7,
                                 "total-failure-session-count": 0},
                     "failure-details": []}]}, f)
        Receiver.posts.clear()
        d.start()
        self.wait_for("ok.test marked sent",
                      lambda: os.path.exists(os.path.join(folder, "ok.test.sent")))
        self.assertEqual(len(Receiver.posts), 1)
        rep = json.loads(gzip.decompress(Receiver.posts[0][2]))
        self.assertEqual(schema_problems(rep), "", rep)
        self.assertEqual(rep["date-range"]["start-datetime"], yday + "T00:00:00Z")
        self.assertEqual(rep["policies"][0]["summary"]["total-successful-session-count"], 7)
        self.assertFalse(os.path.exists(os.path.join(folder, "fail.test.sent")))
        self.assertTrue(os.path.exists(os.path.join(folder, "fail.test.json")))
        self.assertEqual(d.stop(), 0)
        d.start()
        # the log is kept across starts: the second try is the second line
        self.wait_for("fail.test tried again",
                      lambda: d.output().count("fail.test: will try again") >= 2)
        self.assertEqual(len(Receiver.posts), 1, "ok.test's report was sent again")
