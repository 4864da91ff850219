"""One-click unsubscribe (RFC 8058) built into volley: volleyd with
`unsubscribe` configured delivers bulk mail to volley-sink whose stored
messages carry List-Unsubscribe <base_url/TOKEN> and List-Unsubscribe-Post
(DKIM-signed); a POST of List-Unsubscribe=One-Click to the listener with
one recipient's path suppresses that address (reason unsubscribe, the job
id) and writes an Unsubscribe event; forged tokens, GETs, other methods and
bad bodies change nothing; a later job skips the address; a transactional
job gets no built-in header."""

import base64
import email
import email.policy
import http.client
import json
import os
import hashlib
import hmac
import re
import signal
import ssl
import subprocess
import unittest

from . import util
from .daemon import VOLLEY, VolleydTest, simple_job
from .pki import TestCA
from .sinkctl import Sink
from .test_dkim import DEBIAN_PY, DKIMPY, keygen

SECRET = "s3cr3t-0123456789abcdef0123456789abcdef"
BASE = "https://news.example.com/unsubscribe"


def headers_of(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def unfold(v):
    return re.sub(r"\r?\n[ \t]+", " ", v)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(tok):
    return base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))


class Listener:
    """HTTP/1.1 to the unsubscribe listener on loopback."""

    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def one_click(self, path, body=b"List-Unsubscribe=One-Click"):
        return self.request("POST", path, body,
                            {"Content-Type": "application/x-www-form-urlencoded"})


class Unsubscribe(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.keys = util.tempdir("volley-unsub-keys-", cleanup=cls.addClassCleanup)
        cls.ed, name, txt, _ = keygen(cls.keys, "s1", "ed25519")
        cls.records = {name + ".": txt}

    def setUp(self):
        self.sink = Sink("--tls").start()
        self.addCleanup(self.sink.stop)
        self.port = util.free_port()
        conf = ('domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
                'dkim = ( { domain = "example.com"; selector = "s1"; key = "%s"; } );\n'
                'unsubscribe = { listen = [ "127.0.0.1:%d" ]; base_url = "%s";\n'
                '  secret = "%s"; max_connections = 32; timeout = "5s"; };\n'
                % (self.sink.route(), self.ed, self.port, BASE, SECRET))
        self.d = self.start_daemon(config=conf)
        self.http = Listener(self.port)
        util.wait_port("127.0.0.1", self.port, 10)

    def deliver(self, job, n):
        r = self.d.submit(job)
        self.assertEqual(r.status, 202, r)
        jid = r.json()["id"]
        j = self.wait_done(self.d, jid)
        self.assertEqual(j["counts"]["delivered"], n, j)
        return jid, self.sink.new_messages(n, wait=10)

    def suppressed(self):
        r = self.d.request("GET", "/v1/suppression")
        self.assertEqual(r.status, 200, r)
        return {s["email"]: s for s in r.json()["suppressed"]}

    def test_one_click_end_to_end(self):
        job = simple_job(3, domain="d.test", unsubscribe={"mailto": "unsub@example.com"})
        job["content"]["text_body"] = "Hi {{ name }}.\nLeave: {{ unsubscribe_url }}\n"
        jid, msgs = self.deliver(job, 3)
        paths = {}
        for m in msgs:
            h = headers_of(m.data)
            lu = unfold(h["List-Unsubscribe"])
            got = re.fullmatch(r"<mailto:unsub@example\.com>, <%s/([A-Za-z0-9_-]+)>"
                               % re.escape(BASE), lu)
            self.assertTrue(got, lu)
            self.assertEqual(h["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
            tok = got.group(1)
            # the token carries the job, the index and the address
            raw = unb64url(tok)
            self.assertEqual(raw[0], 1)
            self.assertEqual(raw[2:2 + raw[1]].decode(), jid)
            addr = raw[2 + raw[1] + 1:-16].decode()
            self.assertIn(addr.encode(), m.data)
            paths[addr] = "/unsubscribe/" + tok
            # the body's {{ unsubscribe_url }} is the same URL
            body = h.get_payload(decode=True).decode()
            self.assertIn("%s/%s" % (BASE, tok), body)
            # DKIM signs both fields
            sig = unfold(h["DKIM-Signature"]).replace(" ", "")
            hs = re.search(r"h=([^;]+)", sig).group(1).lower().split(":")
            self.assertIn("list-unsubscribe", hs)
            self.assertIn("list-unsubscribe-post", hs)
        self.assertEqual(sorted(paths), ["user0@d.test", "user1@d.test", "user2@d.test"])
        if os.path.exists(DEBIAN_PY):
            files = [os.path.join(self.sink.maildir, "new", m.id) for m in msgs]
            p = subprocess.run([DEBIAN_PY, "-c", DKIMPY], capture_output=True, text=True,
                               input=json.dumps({"records": self.records, "files": files}),
                               timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(json.loads(p.stdout), [[True]] * 3)

        ann = paths["user0@d.test"]
        # GET: a page with a form that POSTs; nothing suppressed
        st, hd, body = self.http.request("GET", ann)
        self.assertEqual(st, 200, body)
        self.assertIn("text/html", hd["Content-Type"])
        self.assertRegex(body.decode(), r'<form method="post"')
        self.assertIn(b'name="List-Unsubscribe" value="One-Click"', body)
        # forged: each of a few characters changed; another address's token
        tok = ann.rsplit("/", 1)[1]
        for i in (0, 5, len(tok) // 2, len(tok) - 3, len(tok) - 1):
            bad = tok[:i] + ("A" if tok[i] != "A" else "B") + tok[i + 1:]
            st, _, body = self.http.one_click("/unsubscribe/" + bad)
            self.assertIn(st, (400, 403), (i, body))
            self.assertEqual(body, b"This link is not valid.\n")
        raw = unb64url(tok)
        other = raw.replace(b"user0@d.test", b"user9@d.test")
        self.assertNotEqual(other, raw)
        st, _, _ = self.http.one_click("/unsubscribe/" + b64url(other))
        self.assertEqual(st, 403)
        st, _, _ = self.http.one_click("/unsubscribe/" + tok + "xx")
        self.assertIn(st, (400, 403))
        # another secret's token, made by Python to the documented format
        head = raw[:-16]
        forged = head + hmac.new(b"another-secret-0123456789abcdef01", head,
                                 hashlib.sha256).digest()[:16]
        st, _, _ = self.http.one_click("/unsubscribe/" + b64url(forged))
        self.assertEqual(st, 403)
        # ...and with volley's secret, the same bytes verify (the format is as documented)
        good = head + hmac.new(SECRET.encode(), head, hashlib.sha256).digest()[:16]
        self.assertEqual(b64url(good), tok)
        # methods, paths, bodies
        self.assertEqual(self.http.request("HEAD", ann)[0], 405)
        st, hd, _ = self.http.request("PUT", ann, b"List-Unsubscribe=One-Click")
        self.assertEqual(st, 405)
        self.assertEqual(hd.get("Allow"), "GET, POST")
        self.assertEqual(self.http.one_click("/elsewhere/" + tok)[0], 404)
        self.assertEqual(self.http.one_click(ann, b"List-Unsubscribe=Yes")[0], 400)
        self.assertEqual(self.http.one_click(ann, b"x" * 5000)[0], 413)
        with self.assertRaises((http.client.HTTPException, OSError)):
            self.http.one_click(ann, b"List-Unsubscribe=One-Click&" + b"x" * 200000)
        self.assertEqual(self.suppressed(), {})

        # the real thing, then again
        st, hd, body = self.http.one_click(ann)
        self.assertEqual(st, 200, body)
        self.assertIn(b"unsubscribed", body)
        s = self.suppressed()
        self.assertEqual(list(s), ["user0@d.test"])
        self.assertEqual(s["user0@d.test"]["reason"], "unsubscribe")
        self.assertEqual(s["user0@d.test"]["job"], jid)
        st, _, _ = self.http.one_click(ann)
        self.assertEqual(st, 200)
        # the confirmation form's own POST (multipart, as RFC 8058 prefers)
        b = b"--B0\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n" \
            b"One-Click\r\n--B0--\r\n"
        st, _, _ = self.http.request("POST", paths["user2@d.test"], b,
                                     {"Content-Type": "multipart/form-data; boundary=B0"})
        self.assertEqual(st, 200)
        self.assertEqual(sorted(self.suppressed()), ["user0@d.test", "user2@d.test"])
        cli = subprocess.run([VOLLEY, "--socket", self.d.sock, "suppression", "list"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        line = [l for l in cli.stdout.splitlines() if "user0@d.test" in l][0]
        self.assertIn("unsubscribe", line)
        self.assertIn(jid, line)
        ev = self.wait_for("Unsubscribe events", lambda: (
            lambda e: e if len(e) == 2 else None)(self.events(self.d, jid, "Unsubscribe")))
        self.assertEqual(sorted(e["recipient"] for e in ev), ["user0@d.test", "user2@d.test"])
        self.assertEqual({e["domain"] for e in ev}, {"d.test"})
        self.assertEqual({e["job"] for e in ev}, {jid})

        # a later job skips the address
        job2 = simple_job(2, domain="d.test")
        r = self.d.submit(job2)
        jid2 = r.json()["id"]
        j = self.wait_done(self.d, jid2)
        self.assertEqual(j["counts"]["suppressed"], 1, j)
        self.assertEqual(j["counts"]["delivered"], 1, j)

        metrics = self.d.request("GET", "/metrics").body.decode()
        self.assertIn('volley_unsubscribe_requests_total{result="unsubscribed"} 2', metrics)
        self.assertIn('volley_unsubscribe_requests_total{result="repeat"} 1', metrics)
        self.assertIn('volley_unsubscribe_requests_total{result="page"} 1', metrics)

    def test_reload_keeps_the_running_unsubscribe_settings(self):
        path = os.path.join(self.d.data_dir, "volley.conf")
        with open(path) as f:
            conf = f.read()
        with open(path, "w") as f:
            f.write(conf.replace(BASE, "https://other.example.com/u")
                    .replace(SECRET, "another-secret-0123456789abcdef0123456789"))
        self.d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(util.wait_until(
            lambda: "configuration reloaded" in self.d.output(), 10), self.d.output())
        self.assertIn("unsubscribe.base_url changed: needs a restart", self.d.output())
        # new mail: the running base_url and secret, which the listener takes
        jid, msgs = self.deliver(simple_job(1, domain="r.test"), 1)
        lu = unfold(headers_of(msgs[0].data)["List-Unsubscribe"])
        self.assertTrue(lu.startswith("<%s/" % BASE), lu)
        tok = lu[len(BASE) + 2:-1]
        self.assertEqual(tok, token(SECRET.encode(), jid, 0, "user0@r.test"))
        self.assertEqual(self.http.one_click("/unsubscribe/" + tok)[0], 200)

    def test_transactional_and_opt_out_get_no_builtin_header(self):
        job = simple_job(1, domain="t.test", priority="transactional")
        _, msgs = self.deliver(job, 1)
        self.assertIsNone(headers_of(msgs[0].data)["List-Unsubscribe"])
        job = simple_job(1, domain="t.test", unsubscribe={"builtin": False})
        _, msgs = self.deliver(job, 1)
        self.assertIsNone(headers_of(msgs[0].data)["List-Unsubscribe"])
        job = simple_job(1, domain="t.test",
                         unsubscribe={"url": "https://example.com/u/{{ email }}"})
        _, msgs = self.deliver(job, 1)
        self.assertEqual(unfold(headers_of(msgs[0].data)["List-Unsubscribe"]),
                         "<https://example.com/u/user0%40t.test>")


def token(secret, job, index, addr):
    """A token made by the documented format (docs/message.md)."""
    leb = b""
    while True:
        b, index = index & 0x7F, index >> 7
        leb += bytes([b | (0x80 if index else 0)])
        if not index:
            break
    raw = bytes([1, len(job)]) + job.encode() + leb + addr.encode()
    return b64url(raw + hmac.new(secret, raw, hashlib.sha256).digest()[:16])


class HttpsAndRotation(VolleydTest):
    """cert and key: the listener speaks HTTPS itself; previous_secret:
    tokens of the old secret still work, others do not."""

    def test_https_listener_and_previous_secret(self):
        folder = util.tempdir("volley-unsub-pki-", cleanup=self.addCleanup)
        ca = TestCA(folder)
        chain, key, _ = ca.issue("unsub", ["localhost"])
        port = util.free_port()
        old = b"old-secret-0123456789abcdef0123456789"
        d = self.start_daemon(config=(
            'defaults = { route = "127.0.0.1:%d"; };\n'
            'unsubscribe = { listen = [ "127.0.0.1:%d" ]; base_url = "%s";\n'
            '  secret = "%s"; previous_secret = "%s"; cert = "%s"; key = "%s"; };\n'
            % (util.free_port(), port, BASE, SECRET, old.decode(), chain, key)))
        util.wait_port("127.0.0.1", port, 10)
        ctx = ssl.create_default_context(cafile=ca.ca_pem)

        def post(tok):
            c = http.client.HTTPSConnection("localhost", port, timeout=10, context=ctx)
            try:
                c.request("POST", "/unsubscribe/" + tok, b"List-Unsubscribe=One-Click",
                          {"Content-Type": "application/x-www-form-urlencoded"})
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()

        self.assertEqual(post(token(SECRET.encode(), "J1", 1, "new@example.net"))[0], 200)
        self.assertEqual(post(token(old, "J1", 2, "old@example.net"))[0], 200)
        self.assertEqual(post(token(b"x" * 40, "J1", 3, "bad@example.net"))[0], 403)
        got = {s["email"] for s in d.request("GET", "/v1/suppression").json()["suppressed"]}
        self.assertEqual(got, {"new@example.net", "old@example.net"})
        # plain HTTP to the TLS port gets no answer
        with self.assertRaises((http.client.HTTPException, OSError)):
            Listener(port).request("GET", "/unsubscribe/AAAA")


class NotConfigured(VolleydTest):
    def test_unsubscribe_url_needs_base_url(self):
        d = self.start_daemon(config='defaults = { route = "127.0.0.1:%d"; };\n'
                              % util.free_port())
        job = simple_job(1)
        job["content"]["text_body"] = "Leave: {{ unsubscribe_url }}\n"
        e = self.assertError(d.submit(job), 400, "missing_substitution")
        self.assertIn("unsubscribe.base_url", e["message"])
        job = simple_job(1, unsubscribe={"builtin": True})
        self.assertError(d.submit(job), 400, "invalid_field", "unsubscribe.builtin")
        # no headers of volley's own without the configuration
        job = simple_job(1)
        self.assertEqual(d.submit(job).status, 202)


if __name__ == "__main__":
    unittest.main()
