"""Harness for tests that run volleyd (stdlib only).

Volleyd     starts build/volleyd in the foreground on a temporary data dir
            (or a given one), waits for its socket, and always stops it by
            PID. request() speaks HTTP/1.1 over the Unix socket.
VolleydTest unittest base class: start_daemon() with automatic cleanup.

Every wait is bounded; every process started is stopped by PID.
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from sinkctl import REPO, _die_with_parent

BUILD = os.environ.get("VOLLEY_BUILD") or "build"
VOLLEYD = os.path.abspath(os.environ.get("VOLLEYD") or os.path.join(REPO, BUILD, "volleyd"))
VOLLEY = os.path.abspath(os.environ.get("VOLLEY_CLI") or os.path.join(REPO, BUILD, "volley"))

START_WAIT = 10.0
STOP_WAIT = 10.0
_live = set()


def _kill_live():
    for d in list(_live):
        d.stop()


atexit.register(_kill_live)


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
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="volleyd-")
        self.config = config
        self.args = list(args)
        self.env = env
        self.proc = None
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
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, preexec_fn=_die_with_parent)
        _live.add(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("volleyd exited %d: %s" % (self.proc.returncode, self.output()))
            try:
                if self.request("GET", "/v1/health", timeout=1.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("volleyd did not answer within %.0fs: %s" % (START_WAIT, self.output()))

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

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_WAIT)
        _live.discard(self)

    def stop(self, sig=signal.SIGTERM):
        """Stop by PID; returns the exit code (SIGKILL after STOP_WAIT)."""
        rc = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_WAIT)
        elif self.proc:
            rc = self.proc.returncode
        _live.discard(self)
        return rc

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            j = d.request("GET", "/v1/jobs/" + jid).json()
            if j["done"]:
                return j
            time.sleep(0.05)
        self.fail("job %s not done in %ds: %s" % (jid, timeout, j))

    def wait_for(self, what, fn, timeout=20):
        """fn()'s first true value within timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = fn()
            if v:
                return v
            time.sleep(0.05)
        self.fail("waited %ds for %s" % (timeout, what))

    def assertError(self, r, status, code=None, field=None):
        self.assertEqual(r.status, status, r)
        e = r.json()["error"]
        if code:
            self.assertEqual(e["code"], code, r)
        if field:
            self.assertEqual(e.get("field"), field, r)
        self.assertTrue(e["message"], r)
        return e
