"""A webhook receiver for tests and the webhook benchmark (stdlib only).

Receiver(secret, script=[...]) serves HTTP/1.1 on 127.0.0.1 (a free port
unless given) in a thread of the test process. Each POST is checked as
docs/webhooks.md tells a receiver to: the X-Volley-Signature HMAC-SHA256
over "<X-Volley-Timestamp>.<body as sent>", the timestamp within
MAX_SKEW seconds; a gzip body (Content-Encoding: gzip) is inflated; the
body must be a JSON array. A bad request is answered 401/400 and counted
in `rejected`, never recorded. `script` lists what the first requests get:
an HTTP status (500, ...), "close" (the connection closed without an
answer) or "sleep:SECONDS" (answered 200 after a delay); later ones get
200. Good batches are recorded in `batches` (their events as parsed).

Run as a program (`/usr/bin/python3 -m tests.e2e.hookrecv --port N
--secret S [--count-only]`), it serves until killed and prints a JSON line
of its counts every half second (the benchmark's fast receiver: --count-only
checks the signature and counts the array's elements without keeping
them).
"""

import calendar
import gzip
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_SKEW = 300


def verify(secret, headers, body, now=None):
    """None when the request is genuine, else what is wrong."""
    ts = headers.get("X-Volley-Timestamp", "")
    sig = headers.get("X-Volley-Signature", "")
    if not ts.isdigit():
        return "no timestamp"
    if abs((now or time.time()) - int(ts)) > MAX_SKEW:
        return "timestamp too old"
    want = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return "bad signature"
    return None


def event_time(raw):
    """The time of the last event of a batch (epoch seconds)."""
    i = raw.rfind(b'"time":"')
    if i < 0:
        return time.time()
    t = raw[i + 8:i + 32].decode()
    st = time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(st) + int(t[20:23]) / 1000.0


class Receiver:
    def __init__(self, secret, script=(), port=0, keep=True):
        self.secret = secret
        self.script = list(script)
        self.port = port
        self.keep = keep
        self.lock = threading.Lock()
        self.batches = []          # [(webhook name, headers dict, [events])]
        self.requests = 0
        self.rejected = []
        self.truncated = 0           # bodies cut short by the sender's end
        self.events = 0
        self.gzipped = 0
        self.first_arrival = self.last_arrival = 0.0
        self.last_lag = self.max_lag = 0.0
        self.server = None
        self.thread = None

    def start(self):
        rx = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                if len(body) < n:   # the sender went away mid-body (a stop)
                    with rx.lock:
                        rx.truncated += 1
                    self.close_connection = True
                    return
                with rx.lock:
                    rx.requests += 1
                    action = rx.script.pop(0) if rx.script else 200
                if action == "close":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if isinstance(action, str) and action.startswith("sleep:"):
                    time.sleep(float(action[6:]))
                    action = 200
                if action != 200:
                    return self.answer(action)
                bad = verify(rx.secret, self.headers, body)
                if bad:
                    with rx.lock:
                        rx.rejected.append(bad)
                    return self.answer(401)
                zipped = self.headers.get("Content-Encoding") == "gzip"
                try:
                    raw = gzip.decompress(body) if zipped else body
                    if rx.keep:
                        events = json.loads(raw)
                        assert isinstance(events, list)
                        count = len(events)
                    else:   # the benchmark's receiver: count, do not parse
                        assert raw[:1] == b"[" and raw[-1:] == b"]"
                        count = raw.count(b'{"type":')
                    lag = time.time() - event_time(raw)
                except Exception as e:   # noqa: BLE001 (anything wrong is a rejection)
                    with rx.lock:
                        rx.rejected.append("body: %s" % e)
                    return self.answer(400)
                with rx.lock:
                    now = time.time()
                    rx.first_arrival = rx.first_arrival or now
                    rx.last_arrival = now
                    rx.last_lag = lag
                    rx.max_lag = max(rx.max_lag, lag)
                    rx.events += count
                    rx.gzipped += zipped
                    if rx.keep:
                        rx.batches.append((self.headers.get("X-Volley-Webhook"),
                                           dict(self.headers), events))
                self.answer(200)

            def answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def events_of(self, name):
        with self.lock:
            return [e for n, _, evs in self.batches if n == name for e in evs]

    def batches_of(self, name):
        with self.lock:
            return [(h, evs) for n, h, evs in self.batches if n == name]


def main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--count-only", action="store_true")
    a = ap.parse_args(argv)
    r = Receiver(a.secret, port=a.port, keep=not a.count_only).start()
    while True:
        time.sleep(0.5)
        with r.lock:
            print(json.dumps({"time": time.time(), "requests": r.requests, "events": r.events,
                              "rejected": len(r.rejected), "truncated": r.truncated, "first_arrival": r.first_arrival,
                              "last_arrival": r.last_arrival, "last_lag": r.last_lag,
                              "max_lag": r.max_lag}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
