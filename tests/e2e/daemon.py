"""Harness for tests that run volleyd (stdlib only).

Volleyd     starts build/volleyd in the foreground on a temporary data dir
            (or a given one), waits for its socket, and always stops it by
            PID. request() speaks HTTP/1.1 over the Unix socket.
VolleydTest unittest base class: start_daemon() with automatic cleanup.

Every wait is bounded; every process started is stopped by PID.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import unittest

from . import util

VOLLEYD = util.build_path("volleyd", "VOLLEYD")
VOLLEY = util.build_path("volley", "VOLLEY_CLI")

START_WAIT = 10.0
STOP_WAIT = 10.0


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def lines(self):
        return [json.loads(l) for l in self.body.decode().splitlines() if l.strip()]

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class Volleyd:
    """volleyd on data_dir (a fresh temp dir unless given)."""

    def __init__(self, data_dir=None, config=None, args=(), env=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or util.tempdir("volleyd-")
        self.config = config
        self.args = list(args)
        self.env = env
        self.proc = None
        self.log = None
        self.sock = os.path.join(self.data_dir, "volley.sock")
        self.log_path = os.path.join(self.data_dir, "volleyd.log")

    def start(self, wait=True):
        cmd = [VOLLEYD, "--foreground", "--data-dir", self.data_dir]
        config = self.config or ""
        if "dns" not in config:
            # No test may reach a real resolver: lookups go to a closed
            # loopback port and fail at once, so recipients without a
            # route wait (deferred) instead of depending on the machine.
            config = 'dns = { servers = [ "127.0.0.1:9" ]; };\n' + config
        path = os.path.join(self.data_dir, "volley.conf")
        with open(path, "w") as f:
            f.write(config)
        cmd += ["--config", path]
        cmd += self.args
        env = dict(os.environ)
        env.update(self.env or {})
        self._close_log()
        self.log = open(self.log_path, "ab")
        self.proc = util.start(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def _healthy(self):
        try:
            return self.request("GET", "/v1/health", timeout=1.0).status == 200
        except OSError:
            return False

    def wait_ready(self, timeout=START_WAIT):
        """Until /v1/health answers 200 (bounded); RuntimeError if volleyd
        exits or stays silent."""
        if util.wait_until(self._healthy, timeout, proc=self.proc):
            return
        if self.proc.poll() is not None:
            raise RuntimeError("volleyd exited %d: %s" % (self.proc.returncode, self.output()))
        raise RuntimeError("volleyd did not answer within %.0fs: %s" % (timeout, self.output()))

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=30.0):
        """One request; body may be bytes, str, a dict (sent as JSON) or an
        iterable of bytes chunks (sent chunked)."""
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            c.request(method, path, body=body, headers=h, encode_chunked=chunked)
            r = c.getresponse()
            return Response(r.status, dict(r.getheaders()), r.read())
        finally:
            c.close()

    def submit(self, job, **kw):
        return self.request("POST", "/v1/jobs", job, **kw)

    def jobs_on_disk(self):
        d = os.path.join(self.data_dir, "jobs")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def tmp_on_disk(self):
        d = os.path.join(self.data_dir, "tmp")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def _close_log(self):
        if self.log:
            self.log.close()
            self.log = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def stop(self, sig=signal.SIGTERM, wait=STOP_WAIT):
        """Stop by PID; returns the exit code (SIGKILL after wait seconds)."""
        rc = util.stop(self.proc, sig, wait) if self.proc else None
        self._close_log()
        return rc

    def cleanup(self):
        self.stop()
        if self.own_dir:
            util.remove_dir(self.data_dir)


def simple_job(n=3, domain="example.net", **extra):
    job = {
        "envelope_sender": "bounces@news.example.com",
        "content": {
            "from": {"email": "news@example.com", "name": "Example News"},
            "subject": "Hello {{ name }}",
            "text_body": "Hi {{ name }}, the {{ campaign }} issue is out.",
        },
        "recipients": [{"email": "user%d@%s" % (i, domain),
                        "substitutions": {"name": "User %d" % i}} for i in range(n)],
        "substitutions": {"campaign": "fall"},
    }
    job.update(extra)
    return job


class VolleydTest(unittest.TestCase):
    """Base class: start_daemon() registers cleanup."""

    def start_daemon(self, **kw):
        d = Volleyd(**kw)
        self.addCleanup(d.cleanup)
        return d.start()

    def wait_done(self, d, jid, timeout=30):
        """The job's JSON once it is done (bounded)."""
        last = []

        def done():
            last[:] = [d.request("GET", "/v1/jobs/" + jid).json()]
            return last[0] if last[0]["done"] else None

        j = util.wait_until(done, timeout, 0.05)
        if not j:
            self.fail("job %s not done in %ds: %s" % (jid, timeout, last[-1]))
        return j

    def submit_to(self, d, domain, n=2, **extra):
        """A job of n recipients u0@domain...; its id."""
        job = simple_job(0, **extra)
        job["recipients"] = [{"email": "u%d@%s" % (i, domain),
                              "substitutions": {"name": "x"}} for i in range(n)]
        r = d.submit(job)
        self.assertEqual(r.status, 202, r)
        return r.json()["id"]

    def events(self, d, jid, kind):
        return [e for e in d.request("GET", "/v1/events?job=" + jid).lines()
                if e["type"] == kind]

    def deferred(self, d, jid, n):
        """The recipients' rows once n of them are deferred."""
        def some():
            rows = [r for r in d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()
                    if r["state"] == "deferred"]
            return rows if len(rows) >= n else None
        return self.wait_for("%d deferrals" % n, some, timeout=20)

    def wait_for(self, what, fn, timeout=20):
        """fn()'s first true value within timeout seconds."""
        v = util.wait_until(fn, timeout, 0.05)
        if not v:
            self.fail("waited %ds for %s" % (timeout, what))
        return v

    def assertError(self, r, status, code=None, field=None):
        self.assertEqual(r.status, status, r)
        e = r.json()["error"]
        if code:
            self.assertEqual(e["code"], code, r)
        if field:
            self.assertEqual(e.get("field"), field, r)
        self.assertTrue(e["message"], r)
        return e
