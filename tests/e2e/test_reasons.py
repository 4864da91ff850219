"""Reasons everywhere: every failure without an SMTP reply (a malformed or
over-long greeting, a timeout after DATA, a refused connection, a TLS
failure, an MX on a private address, a job's expiry) gives an event with a
non-empty `reason` and the right class, the recipients' rows say the same,
`last_response` in /v1/queues has no code when none came, and `volley
events` / `volley bounces` show class and reason."""

import socket
import subprocess
import threading

from . import dnsctl, util
from .daemon import VOLLEY, VolleydTest
from .sinkctl import Sink


class Talker:
    """A TCP server on 127.0.0.1 that answers every connection with one
    fixed text, then closes it: a peer that does not speak SMTP. Stopped by
    close() (its thread ends when the listening socket does)."""

    def __init__(self, greeting):
        self.greeting = greeting
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.sendall(self.greeting)
                c.settimeout(0.5)
                c.recv(4096)          # what the client says, if anything
            except OSError:
                pass
            c.close()

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def route_conf(route, tls="none", extra=""):
    return ('domains = ( { match = "*.test"; route = "%s"; tls = "%s"; } );\n'
            'defaults = { retry = [ "1s" ]; };\n%s' % (route, tls, extra))


class Reasons(VolleydTest):
    def cli(self, d, *args):
        r = subprocess.run([VOLLEY, "--socket", d.sock, *args], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r)
        return r.stdout

    def failures(self, d, jid, kind="TransientFailure"):
        return self.wait_for(kind, lambda: self.events(d, jid, kind))

    def assert_reason(self, d, jid, cls, words, kind="TransientFailure"):
        """The job's first `kind` event: no response, a reason holding
        words, class cls; its recipient row and volley events agree."""
        e = self.failures(d, jid, kind)[0]
        self.assertIsNone(e["response"], e)
        self.assertIn(words, e["reason"] or "", e)
        self.assertEqual(e["bounce_class"], cls, e)
        rows = d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()
        row = [r for r in rows if r["email"] == e["recipient"]][0]
        self.assertIsNone(row["response"], row)
        self.assertIn(words, row["reason"] or "", row)
        out = [l for l in self.cli(d, "events", "--job", jid).splitlines() if kind in l]
        self.assertTrue(out and cls in out[0] and words in out[0], out)
        return e

    def talker(self, greeting):
        t = Talker(greeting)
        self.addCleanup(t.close)
        return t

    def test_a_malformed_greeting_is_a_transient_protocol_failure(self):
        t = self.talker(b"hello, this is no SMTP server\r\n")
        d = self.start_daemon(config=route_conf("127.0.0.1:%d" % t.port))
        jid = self.submit_to(d, "a.test", n=1)
        self.assert_reason(d, jid, "protocol", "malformed")
        q = d.request("GET", "/v1/queues").json()["queues"]
        last = [x["last_response"]["text"] for x in q if x["last_response"]]
        self.assertTrue(last and last[0].startswith("greeting: malformed"), q)

    def test_an_over_long_reply_is_a_transient_protocol_failure(self):
        t = self.talker(b"220 " + b"x" * 5000 + b"\r\n")
        d = self.start_daemon(config=route_conf("127.0.0.1:%d" % t.port))
        jid = self.submit_to(d, "a.test", n=1)
        self.assert_reason(d, jid, "protocol", "over-long")

    def test_a_timeout_after_data_names_the_stage(self):
        s = Sink("--reply", "dot=stall").start()
        self.addCleanup(s.stop)
        d = self.start_daemon(config=route_conf(s.route(), extra='timeouts = { data_term = "1s"; };\n'))
        jid = self.submit_to(d, "a.test", n=1)
        e = self.assert_reason(d, jid, "timeout", "timeout after")
        self.assertIn("dot", e["reason"], e)

    def test_a_refused_connection(self):
        port = util.free_port()
        d = self.start_daemon(config=route_conf("127.0.0.1:%d" % port))
        jid = self.submit_to(d, "a.test", n=1)
        e = self.assert_reason(d, jid, "routing", "connect")
        self.assertIn("refused", e["reason"].lower(), e)

    def test_a_tls_failure(self):
        s = Sink("--tls").start()             # a self-signed certificate
        self.addCleanup(s.stop)
        d = self.start_daemon(config=route_conf(s.route(), tls="verify"))
        jid = self.submit_to(d, "a.test", n=1)
        self.assert_reason(d, jid, "tls", "TLS")

    def test_the_jobs_expiry_keeps_the_last_class(self):
        # one message an hour: the first recipient fails once and waits for
        # the rate limit with the second, never tried, until the job expires
        t = self.talker(b"hello, this is no SMTP server\r\n")
        d = self.start_daemon(config=(
            'domains = ( { match = "*.test"; route = "127.0.0.1:%d"; tls = "none"; } );\n'
            'defaults = { retry = [ "1s" ]; max_age = "4s"; };\n' % t.port))
        jid = self.submit_to(d, "a.test", n=2, rate_limit="1/h")
        self.wait_done(d, jid, timeout=20)
        ev = {e["recipient"]: e for e in self.events(d, jid, "Expiration")}
        self.assertEqual(set(ev), {"u0@a.test", "u1@a.test"}, ev)
        tried, untried = ev["u0@a.test"], ev["u1@a.test"]
        self.assertEqual(tried["bounce_class"], "protocol", tried)
        self.assertIn("expired", tried["reason"], tried)
        self.assertIn("after 1 attempt; the last failed (protocol)", tried["reason"], tried)
        self.assertIsNone(untried["bounce_class"], untried)
        self.assertIn("before any attempt", untried["reason"], untried)
        out = self.cli(d, "events", "--job", jid)
        self.assertIn("Expiration", out)
        self.assertIn("before any attempt", out)


ZONES = {
    "priv.test": ["priv.test. 300 IN MX 10 mx.priv.test.", "mx.priv.test. 300 IN A 10.9.8.7"],
}


class DnsReasons(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.ub = dnsctl.Unbound(ZONES).start()

    @classmethod
    def tearDownClass(cls):
        cls.ub.stop()

    def test_an_mx_on_a_private_address_is_refused_with_a_reason(self):
        d = self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; allow_private = false; timeout_ms = 500; };\n'
            'defaults = { retry = [ "1s" ]; };\n' % self.ub.server))
        jid = self.submit_to(d, "priv.test", n=1)
        ev = self.wait_for("a failure", lambda: [
            e for e in d.request("GET", "/v1/events?job=" + jid).lines()
            if e["type"] in ("Bounce", "TransientFailure")])
        e = ev[0]
        self.assertIsNone(e["response"], e)
        self.assertEqual(e["bounce_class"], "dns", e)
        self.assertIn("private", e["reason"] or "", e)
        if e["type"] == "Bounce":
            out = subprocess.run([VOLLEY, "--socket", d.sock, "bounces", jid],
                                 capture_output=True, text=True, timeout=30).stdout
            lines = out.splitlines()
            self.assertEqual(lines[0], "email,code,enhanced,bounce_class,text,reason")
            self.assertIn("private", lines[1], out)
            self.assertTrue(lines[1].startswith("u0@priv.test,,,dns,,"), out)
