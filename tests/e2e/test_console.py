"""The web console served by volleyd (docs/console.md), over plain HTTP:
its assets with their types and security headers on the Unix socket and
on the TCP listener (no token for the pages, 401 for data without it),
the per-second history, recipients paged server-side, the actions
switch."""

import http.client
import time

from . import util
from .daemon import VolleydTest, simple_job
from .sinkctl import Sink

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
TYPES = {"/console/": "text/html", "/console/index.html": "text/html",
         "/console/app.js": "text/javascript", "/console/app.css": "text/css"}


def tcp(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class Assets(VolleydTest):
    def check_asset(self, status, headers, body, path):
        self.assertEqual(status, 200, path)
        self.assertTrue(headers["content-type"].startswith(TYPES[path]), headers)
        self.assertEqual(headers["content-security-policy"], CSP)
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        self.assertEqual(headers["referrer-policy"], "no-referrer")
        self.assertIn("cache-control", headers)
        self.assertTrue(body)

    def test_socket(self):
        d = self.start_daemon()
        for path in TYPES:
            r = d.request("GET", path)
            self.check_asset(r.status, {k.lower(): v for k, v in r.headers.items()}, r.body, path)
        page = d.request("GET", "/console/").body.decode()
        # no inline script or style: the CSP would refuse them
        self.assertIn('<script src="app.js"', page)
        self.assertNotIn("<style", page)
        self.assertNotIn(" style=", page)
        self.assertNotRegex(page, r"<script>|<script [^>]*>[^<]")
        self.assertNotRegex(page, r"\son[a-z]+=")
        r = d.request("GET", "/")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.headers["Location"], "/console/")
        self.assertEqual(d.request("GET", "/console/nope.js").status, 404)
        self.assertEqual(d.request("GET", "/console/..%2fvolley.conf").status, 404)
        self.assertEqual(d.request("POST", "/console/app.js", b"").status, 405)
        h = d.request("HEAD", "/console/app.js")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")

    def test_tcp_token(self):
        port = util.free_port()
        self.start_daemon(config='api = { listen = "127.0.0.1:%d"; token = "s3cret"; };\n' % port)
        for path in TYPES:
            self.check_asset(*tcp(port, "GET", path), path)
        st, h, body = tcp(port, "GET", "/console/config.json")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-security-policy"], CSP)
        # every data call needs the token
        for path in ("/v1/stats", "/v1/stats/history", "/v1/jobs", "/v1/health",
                     "/v1/queues", "/v1/events?follow=1&from=end"):
            self.assertEqual(tcp(port, "GET", path)[0], 401, path)
        self.assertEqual(tcp(port, "GET", "/v1/stats/history?seconds=5",
                             {"Authorization": "Bearer s3cret"})[0], 200)
        # the console's paths do not open anything else without the token
        self.assertEqual(tcp(port, "POST", "/console/app.js")[0], 401)
        self.assertEqual(tcp(port, "GET", "/consolex")[0], 401)

    def test_config_switch(self):
        d = self.start_daemon()
        self.assertEqual(d.request("GET", "/console/config.json").json()["actions"], False)
        d.stop()
        d2 = self.start_daemon(config="console = { actions = true; };\n")
        self.assertEqual(d2.request("GET", "/console/config.json").json()["actions"], True)

    def test_reload_needs_restart(self):
        import os
        import signal
        d = self.start_daemon()
        with open(os.path.join(d.data_dir, "volley.conf"), "a") as f:
            f.write("console = { actions = true; };\n")
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(util.wait_until(lambda: "configuration reloaded" in d.output(), 10),
                        d.output())
        self.assertIn("console.actions changed: needs a restart", d.output())
        self.assertEqual(d.request("GET", "/console/config.json").json()["actions"], False)

    def test_disabled(self):
        port = util.free_port()
        d = self.start_daemon(config='console = { enabled = false; };\n'
                              'api = { listen = "127.0.0.1:%d"; token = "t0k"; };\n' % port)
        self.assertEqual(d.request("GET", "/console/").status, 404)
        self.assertEqual(tcp(port, "GET", "/console/")[0], 401)

    def test_bad_config(self):
        from .daemon import Volleyd
        d = Volleyd(config="console = { actions = 1; };\n")
        self.addCleanup(d.cleanup)
        with self.assertRaises(RuntimeError) as cm:
            d.start()
        self.assertIn("console.actions", str(cm.exception))


class Data(VolleydTest):
    def setUp(self):
        self.sink = Sink("--reply", "rcpt:bad*=550 5.1.1 no such user").start()
        self.addCleanup(self.sink.cleanup)
        self.d = self.start_daemon(config='domains = ( { match = "*.test"; route = "%s"; tls = "none"; } );\n'
                                   % self.sink.route())

    def job(self, n):
        job = simple_job(0)
        job["recipients"] = [{"email": ("bad%d@d.test" if i % 3 == 0 else "ok%d@d.test") % i,
                              "substitutions": {"name": "x"}} for i in range(n)]
        r = self.d.submit(job)
        self.assertEqual(r.status, 202, r)
        return r.json()["id"]

    def test_history(self):
        jid = self.job(30)
        self.wait_done(self.d, jid)
        h = self.wait_for("history", lambda: (lambda x: x if sum(x["delivered"]) >= 20 else None)(
            self.d.request("GET", "/v1/stats/history?seconds=120").json()))
        self.assertEqual(h["seconds"], 120)
        self.assertEqual(len(h["delivered"]), 120)
        self.assertEqual(sum(h["delivered"]), 20)
        self.assertEqual(sum(h["bounced"]), 10)
        self.assertEqual(sum(h["deferred"]), 0)
        self.assertLessEqual(abs(h["end"] - time.time()), 5)
        full = self.d.request("GET", "/v1/stats/history").json()
        self.assertEqual(len(full["bounced"]), 3600)
        self.assertEqual(sum(full["bounced"]), 10)
        for bad in ("0", "3601", "x", "-1"):
            self.assertError(self.d.request("GET", "/v1/stats/history?seconds=" + bad),
                             400, "invalid_field", "seconds")

    def test_recipients_paged(self):
        jid = self.job(30)
        self.wait_done(self.d, jid)
        base = "/v1/jobs/%s/recipients" % jid
        every = self.d.request("GET", base).lines()
        self.assertEqual([r["index"] for r in every], list(range(30)))
        p1 = self.d.request("GET", base + "?limit=7").lines()
        self.assertEqual([r["index"] for r in p1], list(range(7)))
        p2 = self.d.request("GET", base + "?limit=7&after=6").lines()
        self.assertEqual([r["index"] for r in p2], list(range(7, 14)))
        bounced = self.d.request("GET", base + "?state=bounced&limit=4").lines()
        self.assertEqual([r["index"] for r in bounced], [0, 3, 6, 9])
        self.assertTrue(all(r["bounce_class"] == "invalid-recipient" for r in bounced))
        more = self.d.request("GET", base + "?state=bounced&limit=4&after=9").lines()
        self.assertEqual([r["index"] for r in more], [12, 15, 18, 21])
        last = self.d.request("GET", base + "?state=bounced&limit=4&after=27").lines()
        self.assertEqual(last, [])
        self.assertEqual(self.d.request("GET", base + "?limit=5&after=1000").lines(), [])
        for q, field in (("?limit=0", "limit"), ("?limit=10001", "limit"), ("?after=3", "after"),
                         ("?limit=2&after=x", "after")):
            self.assertError(self.d.request("GET", base + q), 400, "invalid_field", field)

    def test_classes(self):
        jid = self.job(30)
        self.wait_done(self.d, jid)
        c = self.d.request("GET", "/v1/jobs/%s/classes" % jid).json()
        self.assertEqual(c, {"bounced": {"invalid-recipient": 10}, "deferred": {}, "expired": {}})
        self.assertError(self.d.request("GET", "/v1/jobs/0194c1d2e3f4-5a6b7c8d/classes"), 404)

    def test_events_from_end(self):
        import json
        import socket
        from .daemon import UnixHTTPConnection
        old = self.job(3)
        self.wait_done(self.d, old)
        # from=end: nothing of the past (a keep-alive would take 15 s: the
        # short timeout ends the read with nothing received)
        c = UnixHTTPConnection(self.d.sock, timeout=1.5)
        c.request("GET", "/v1/events?follow=1&from=end&job=" + old)
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        with self.assertRaises(socket.timeout):
            r.read1(65536)
        c.close()
        # ... and what is committed from then on
        c = UnixHTTPConnection(self.d.sock, timeout=20)
        c.request("GET", "/v1/events?follow=1&from=end")
        r = c.getresponse()
        new = self.job(2)
        seen, buf, deadline = [], b"", time.time() + 20
        while len(seen) < 2 and time.time() < deadline:
            buf += r.read1(65536)
            *lines, buf = buf.split(b"\n")
            seen += [json.loads(l) for l in lines if l.strip()]
        c.close()
        self.assertEqual({e["job"] for e in seen}, {new})
        # bad0 is suppressed since the first job bounced it
        self.assertEqual(sorted(e["type"] for e in seen), ["AdminBounce", "Delivery"])
        self.assertError(self.d.request("GET", "/v1/events?from=end"), 400, "invalid_field", "from")
        self.assertError(self.d.request("GET", "/v1/events?follow=1&from=start"), 400,
                         "invalid_field", "from")

if __name__ == "__main__":
    import unittest
    unittest.main()


class Connections(VolleydTest):
    def test_queues_count_open_connections(self):
        """/v1/queues' `connections` (the queues page's column): the site's
        connections open or opening, on every worker: 4 of 4 while a sink
        holding each reply 50 ms keeps them busy, none once they have
        closed idle. Without the count the page shows only the maximum."""
        sink = Sink("--latency", "50ms").start()
        self.addCleanup(sink.cleanup)
        d = self.start_daemon(config=(
            'workers = 2;\ntimeouts = { idle = "1s"; };\n'
            'domains = ( { match = "*.test"; route = "%s"; tls = "none"; '
            'max_connections = 4; } );\n' % sink.route()))
        d.submit(simple_job(400, domain="c.test"))

        def row():
            qs = d.request("GET", "/v1/queues").json()["queues"]
            return qs[0] if qs else {}
        seen = self.wait_for("4 connections counted", lambda: (
            lambda q: q if q.get("connections") == 4 else None)(row()), timeout=20)
        self.assertEqual(seen["max_connections"], 4)
        self.wait_for("closed when idle", lambda: row().get("connections") == 0
                      and row().get("queued") == 0, timeout=30)
