"""volleyd holds under abuse (issue 15).

ApiUnderAbuse: the API stays responsive with hundreds of idle and slowloris
connections on the Unix socket and unauthenticated idle ones on TCP, with
/v1/events followers and a big upload under way; the header timeout closes
a head that trickles in; the per-address limit; keep-alive.
ApiErrors: every HTTP-layer error is exactly one JSON answer (one status
line, the documented shape), 405 has Allow, NUL in a field names the field.

Real clients: Python sockets for the hostile ones, http.client and curl for
the good ones. Every count and wait is bounded."""

import http.client
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import unittest

from . import util
from .daemon import Volleyd, VolleydTest, simple_job

LATENCY_MAX = 1.0       # seconds, for a health check or an authenticated request
TOKEN = "t0ken-for-tests"


def unix_sock(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def tcp_sock(port, source="127.0.0.1", timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_all(s, timeout=5.0):
    """Everything until the server closes (bounded by timeout)."""
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not b:
            break
        out += b
    return out


def responses(raw):
    """The answers in raw bytes, framed by Content-Length (or chunked):
    [(status, {header: value}, body)], and what is left over."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, raw = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size, _, rest = rest.partition(b"\r\n")
                n = int(size, 16)
                body += rest[:n]
                rest = rest[n + 2:]
                if n == 0:
                    break
            raw = rest
        else:
            body, raw = rest, b""
        out.append((status, headers, body))
    return out, raw


class Trickler(threading.Thread):
    """Slowloris: each socket gets one more octet of a never-ending head
    every `every` seconds."""

    def __init__(self, socks, every=0.5):
        super().__init__(daemon=True)
        self.socks, self.every = list(socks), every
        self.halt = threading.Event()

    def run(self):
        while not self.halt.wait(self.every):
            for s in self.socks:
                try:
                    s.send(b"x")
                except OSError:
                    pass

    def stop(self):
        self.halt.set()
        self.join(5)


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


class ApiUnderAbuse(VolleydTest):
    def timed(self, fn):
        t = time.monotonic()
        r = fn()
        return r, time.monotonic() - t

    def unix_get(self, d, path):
        r, dt = self.timed(lambda: d.request("GET", path, timeout=5))
        self.assertEqual(r.status, 200, r)
        return dt

    def tcp_get(self, port, path, token=TOKEN):
        def get():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                c.request("GET", path, headers={"Authorization": "Bearer " + token})
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()
        (status, body), dt = self.timed(get)
        self.assertEqual(status, 200, body)
        return dt

    def hostile_unix(self, d, idle=200, slow=200):
        """idle connections that send nothing, slowloris ones that trickle
        a head; the trickler (stop it)."""
        socks = [unix_sock(d.sock) for _ in range(idle)]
        slows = [unix_sock(d.sock) for _ in range(slow)]
        self.addCleanup(close_all, socks + slows)
        for s in slows:
            s.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        t = Trickler(slows)
        t.start()
        self.addCleanup(t.stop)
        return t

    def test_idle_and_slowloris_on_the_unix_socket(self):
        d = self.start_daemon()
        self.hostile_unix(d)
        time.sleep(0.5)
        worst = max(max(self.unix_get(d, "/v1/health"), self.unix_get(d, "/v1/jobs"))
                    for _ in range(20))
        self.assertLess(worst, LATENCY_MAX)
        st = d.request("GET", "/v1/stats").json()["api"]
        self.assertGreaterEqual(st["connections"], 400, st)

    def test_unauthenticated_idle_on_tcp(self):
        port = util.free_port()
        d = self.start_daemon(config='api = { listen = "127.0.0.1:%d"; token = "%s"; };\n'
                              % (port, TOKEN))
        idle = [tcp_sock(port) for _ in range(100)]
        self.addCleanup(close_all, idle)
        self.hostile_unix(d, idle=100, slow=100)
        time.sleep(0.5)
        worst = 0
        for _ in range(20):
            worst = max(worst, self.tcp_get(port, "/v1/health"), self.tcp_get(port, "/v1/jobs"),
                        self.unix_get(d, "/v1/health"))
        self.assertLess(worst, LATENCY_MAX)

    def test_header_timeout_closes_a_trickling_head(self):
        d = self.start_daemon(config='api = { header_timeout = "1s"; };\n')
        slow, idle = unix_sock(d.sock), unix_sock(d.sock)
        self.addCleanup(close_all, [slow, idle])
        slow.send(b"GET /v1/health HTTP/1.1\r\n")
        t = Trickler([slow], every=0.1)   # active all along: only a total limit ends it
        t.start()
        self.addCleanup(t.stop)
        start = time.monotonic()
        raw = read_all(slow, timeout=5)
        took = time.monotonic() - start
        t.stop()
        self.assertLess(took, 3.0)
        rs, rest = responses(raw)
        self.assertEqual([r[0] for r in rs], [408], raw)
        self.assertEqual(json.loads(rs[0][2])["error"]["code"], "request_timeout")
        # a connection that sent nothing is just closed
        self.assertEqual(read_all(idle, timeout=3), b"")
        self.assertEqual(d.request("GET", "/v1/health").status, 200)

    def test_connections_per_address(self):
        port = util.free_port()
        d = self.start_daemon(config='api = { listen = "127.0.0.1:%d"; token = "%s"; '
                              'max_connections_per_ip = 4; };\n' % (port, TOKEN))
        held = [tcp_sock(port, "127.0.0.2") for _ in range(4)]
        self.addCleanup(close_all, held)
        extra = tcp_sock(port, "127.0.0.2")
        self.addCleanup(extra.close)
        rs, _ = responses(read_all(extra, timeout=3))
        self.assertEqual([r[0] for r in rs], [429])
        self.assertEqual(json.loads(rs[0][2])["error"]["code"], "too_many_connections")
        # another address is served
        self.assertLess(self.tcp_get(port, "/v1/health"), LATENCY_MAX)
        close_all(held)
        self.assertTrue(util.wait_until(lambda: self.probe_ok(port), 5, 0.1))
        self.assertEqual(d.request("GET", "/v1/health").status, 200)

    def probe_ok(self, port):
        s = tcp_sock(port, "127.0.0.2")
        try:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      b"Connection: close\r\n\r\n" % TOKEN.encode())
            rs, _ = responses(read_all(s, timeout=3))
            return [r[0] for r in rs] == [200]
        finally:
            s.close()

    @unittest.skipUnless(shutil.which("curl"), "no curl")
    def test_keep_alive(self):
        d = self.start_daemon()
        p = subprocess.run(["curl", "-sv", "--max-time", "10", "--unix-socket", d.sock,
                            "http://localhost/v1/health", "http://localhost/v1/jobs"],
                           capture_output=True, timeout=20)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("Re-using existing connection", err)
        self.assertEqual(err.count("< HTTP/1.1 200"), 2, err)
        self.assertNotIn("Connection: close", err)
        # two requests on one socket, two answers, and it stays open
        s = unix_sock(d.sock)
        self.addCleanup(s.close)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        first, _ = responses(read_until_answers(s, 1))
        s.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n")
        second, _ = responses(read_until_answers(s, 1))
        self.assertEqual([r[0] for r in first + second], [200, 200])
        # and a submission (a body, answered by a worker) keeps it too
        body = json.dumps(simple_job(2)).encode()
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")    # pipelined
        third, _ = responses(read_until_answers(s, 2))
        self.assertEqual([r[0] for r in third], [202, 200])

    def test_followers_do_not_lock_the_api(self):
        d = self.start_daemon()
        followers = []
        for _ in range(24):        # more than the pool's threads and the workers
            s = unix_sock(d.sock)
            s.sendall(b"GET /v1/events?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            followers.append(s)
        self.addCleanup(close_all, followers)
        time.sleep(0.3)
        self.assertLess(max(self.unix_get(d, "/v1/health") for _ in range(10)), LATENCY_MAX)
        jid = d.submit(simple_job(1)).json()["id"]
        for s in followers:        # each one gets the job's first event
            got = read_until(s, jid.encode(), 15)
            self.assertIn(jid.encode(), got)

    def test_upload_while_checking_health(self):
        d = self.start_daemon()
        job = simple_job(0)
        del job["recipients"]
        lines = [json.dumps(job)] + [json.dumps({"email": "u%d@example.org" % i,
                                                 "substitutions": {"name": "x"}})
                                     for i in range(100000)]
        body = ("\n".join(lines) + "\n").encode()
        result = {}

        def upload():
            result["r"] = d.request("POST", "/v1/jobs", body,
                                    headers={"Content-Type": "application/x-ndjson"}, timeout=60)
        t = threading.Thread(target=upload)
        t.start()
        worst = 0
        while t.is_alive():
            worst = max(worst, self.unix_get(d, "/v1/health"))
            time.sleep(0.02)
        t.join()
        self.assertEqual(result["r"].status, 202, result["r"])
        self.assertEqual(result["r"].json()["recipients"], 100000)
        self.assertLess(worst, LATENCY_MAX)


def read_until(s, needle, timeout):
    out = b""
    end = time.monotonic() + timeout
    while needle not in out and time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        out += b
    return out


def read_until_answers(s, n, timeout=10):
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rs, rest = responses(out)
        if len(rs) >= n and not rest:
            break
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        out += b
    return out


H = b"Host: x\r\n"


class ApiErrors(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.port = util.free_port()
        cls.d = Volleyd(config='api = { listen = "127.0.0.1:%d"; token = "%s"; };\n'
                        % (cls.port, TOKEN)).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def exchange(self, data, tcp=False):
        """Send data; everything until the server closes: one answer."""
        s = tcp_sock(self.port) if tcp else unix_sock(self.d.sock)
        try:
            t = time.monotonic()
            s.sendall(data)
            raw = read_all(s, timeout=5)
            return raw, time.monotonic() - t
        finally:
            s.close()

    def one_error(self, data, status, code, tcp=False):
        raw, took = self.exchange(data, tcp)
        self.assertLess(took, 3.0, "no prompt answer to %r" % data[:60])
        self.assertEqual(len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", raw)), 1, raw)
        rs, rest = responses(raw)
        self.assertEqual(len(rs), 1, raw)
        self.assertEqual(rest, b"", raw)
        st, headers, body = rs[0]
        self.assertEqual(st, status, raw)
        self.assertEqual(headers.get("content-type"), "application/json", raw)
        e = json.loads(body)["error"]
        self.assertEqual(set(e), {"code", "message", "field"}, e)
        self.assertEqual(e["code"], code, raw)
        self.assertTrue(e["message"])
        return headers, e

    def test_protocol_errors_are_one_json_answer(self):
        cases = [
            (b"GET /v1/health HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n",
             431, "headers_too_large"),
            (b"GET /v1/health HTTP/1.1\r\n" + H + b"".join(b"X-%d: y\r\n" % i for i in range(150))
             + b"\r\n", 431, "headers_too_large"),
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, "uri_too_long"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400,
             "malformed_request"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400,
             "malformed_request"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Content-Length: 12345678901234567890123\r\n\r\n",
             413, "too_large"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n"
             b"hello!", 400, "malformed_request"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n", 400, "malformed_request"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
             501, "not_implemented"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400,
             "malformed_request"),
            (b"POST /v1/jobs HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
             "malformed_request"),
            (b"GET /v1/health HTTP/2.0\r\n" + H + b"\r\n", 505, "unsupported_version"),
            (b"GET /v1/health HTTP/1.1 x\r\n" + H + b"\r\n", 400, "malformed_request"),
            (b"GET /v1/health\r\n\r\n", 400, "malformed_request"),
            (b"GET http://x/v1/health HTTP/1.1\r\n" + H + b"\r\n", 400, "malformed_request"),
            (b"\x00\x01\x02garbage\r\n\r\n", 400, "malformed_request"),
            (b"GET /v1/health HTTP/1.1\r\n\r\n", 400, "malformed_request"),       # no Host
            (b"GET /v1/health HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400,
             "malformed_request"),                                                # folding
            (b"GET /v1/health HTTP/1.1\r\n" + H + b"X : a\r\n\r\n", 400, "malformed_request"),
            (b"GET /v1/health HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400,
             "malformed_request"),
            (b"GET /v1/health HTTP/1.1\r\n" + H + b"Expect: magic\r\n\r\n", 417,
             "expectation_failed"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"
             b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "malformed_request"),
        ]
        for data, status, code in cases:
            with self.subTest(request=data[:50]):
                self.one_error(data, status, code)
        self.assertEqual(self.d.request("GET", "/v1/health").status, 200)

    def test_unauthenticated_on_tcp_before_the_body(self):
        # refused from the head: the body is never read (nor waited for)
        headers, e = self.one_error(b"POST /v1/jobs HTTP/1.1\r\n" + H +
                                    b"Content-Type: application/json\r\n"
                                    b"Content-Length: 100000000\r\n\r\n", 401, "unauthorized",
                                    tcp=True)
        self.assertEqual(headers.get("www-authenticate"), "Bearer")
        self.one_error(b"GET /v1/health HTTP/1.1\r\n" + H + b"Authorization: Bearer nope\r\n\r\n",
                       401, "unauthorized", tcp=True)

    def test_method_not_allowed_has_allow(self):
        for method, path, allow in [("DELETE", "/v1/health", "GET, HEAD"),
                                    ("PUT", "/v1/jobs", "GET, HEAD, POST"),
                                    ("GET", "/api/inject/v1", "POST"),
                                    ("POST", "/v1/suppression/a@b.example",
                                     "GET, HEAD, PUT, DELETE"),
                                    ("GET", "/v1/jobs/0194c1d2e3f4-5a6b7c8d/pause", "POST")]:
            with self.subTest(method=method, path=path):
                headers, e = self.one_error(b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                            b"\r\n" % (method.encode(), path.encode()), 405,
                                            "method_not_allowed")
                self.assertEqual(headers.get("allow"), allow)
        self.one_error(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404,
                       "not_found")

    def test_errors_keep_the_connection_when_http_allows(self):
        # an API error (404, 405, 400 from the handler) is an answer like
        # any other: the connection stays open for the next request
        s = unix_sock(self.d.sock)
        self.addCleanup(s.close)
        s.sendall(b"DELETE /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        rs, rest = responses(read_until_answers(s, 3))
        self.assertEqual([r[0] for r in rs], [405, 404, 200])
        self.assertEqual(rest, b"")

    def test_empty_body(self):
        for ct in ("application/json", "application/x-ndjson"):
            with self.subTest(content_type=ct):
                r = self.d.request("POST", "/v1/jobs", b"", headers={"Content-Type": ct})
                e = self.assertError(r, 400, "malformed_json")
                self.assertTrue(e["message"].startswith("empty body: a JSON object"), e)
                self.assertNotIn("column", e["message"])

    def test_nul_names_the_field(self):
        job = simple_job(1)
        job["content"]["subject"] = "a\x00b"
        e = self.assertError(self.d.submit(job), 400, "invalid_field", "content.subject")
        self.assertIn("NUL", e["message"])
        job = simple_job(2)
        job["recipients"][1]["substitutions"]["name"] = "x\x00"
        self.assertError(self.d.submit(job), 400, "invalid_field",
                         "recipients[1].substitutions.name")
        # NDJSON: the recipient line is named as in a JSON job
        head = simple_job(0)
        del head["recipients"]
        subs = {"name": "x"}
        body = "\n".join([json.dumps(head), json.dumps({"email": "a@b.example", "substitutions": subs}),
                          json.dumps({"email": "c@d.example", "name": "\x00",
                                      "substitutions": subs})]) + "\n"
        e = self.assertError(self.d.submit(body, headers={"Content-Type": "application/x-ndjson"}),
                             400, "invalid_field", "recipients[1].name")
        self.assertIn("line 3", e["message"])


if __name__ == "__main__":
    unittest.main()
