#!/usr/bin/env python3
"""The API server under load and abuse: prints

  health p50/p99/max latency (ms) with 200 idle + 200 slowloris connections
  open on the Unix socket (a new connection per probe, as a monitor makes);
  GET /v1/health requests per second, 8 clients, each on one kept-alive
  connection (a client whose server closes reconnects: that is the cost).

    bench/api.py [--build DIR] [--probes N] [--seconds S] [--clients N]

--build picks the volleyd (default build/; e.g. build/before for the old
one). Runs by hand, not part of make test; stdlib only; every process it
starts is stopped by PID.
"""
import argparse
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQ = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"


def start(build, data):
    conf = os.path.join(data, "volley.conf")
    with open(conf, "w") as f:
        f.write('dns = { servers = [ "127.0.0.1:9" ]; };\n')
    log = open(os.path.join(data, "volleyd.log"), "wb")
    p = subprocess.Popen([os.path.join(build, "volleyd"), "--foreground", "--data-dir", data,
                          "--config", conf], stdout=log, stderr=subprocess.STDOUT)
    sock = os.path.join(data, "volley.sock")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if health(sock, 1.0)[0]:
                return p, sock
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("volleyd did not start: see %s/volleyd.log" % data)


def read_answer(s, buf=b""):
    """One answer (Content-Length framed); (answer, rest, closes)."""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise ConnectionError("closed")
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(rest) < n:
        b = s.recv(65536)
        if not b:
            raise ConnectionError("closed")
        rest += b
    return head, rest[n:], b"connection: close" in head.lower()


def health(sock, timeout):
    """(ok, seconds) of one GET /v1/health on a new connection."""
    t = time.monotonic()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(REQ)
        head, _, _ = read_answer(s)
        return head.startswith(b"HTTP/1.1 200"), time.monotonic() - t
    except OSError:
        return False, time.monotonic() - t
    finally:
        s.close()


def latency(sock, probes):
    idle = []
    slow = []
    for i in range(400):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(sock)
            if i % 2:
                s.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                slow.append(s)
            else:
                idle.append(s)
        except OSError:
            pass
    halt = threading.Event()

    def trickle():
        while not halt.wait(0.5):
            for s in slow:
                try:
                    s.send(b"x")
                except OSError:
                    pass
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(0.5)
    times, failed = [], 0
    for _ in range(probes):
        ok, dt = health(sock, 5.0)
        times.append(dt)
        failed += not ok
        time.sleep(0.01)
    halt.set()
    t.join()
    for s in idle + slow:
        s.close()
    times.sort()
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
    return pct(0.5), pct(0.99), times[-1] * 1000, failed, len(idle) + len(slow)


def client(sock, seconds, q):
    n = reconnects = 0
    end = time.monotonic() + seconds
    s = None
    buf = b""
    while time.monotonic() < end:
        try:
            if s is None:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(5)
                s.connect(sock)
                buf = b""
            s.sendall(REQ)
            head, buf, closes = read_answer(s, buf)
            n += 1
            if closes:
                s.close()
                s = None
                reconnects += 1
        except OSError:
            if s:
                s.close()
            s = None
    if s:
        s.close()
    q.put((n, reconnects))


def rate(sock, clients, seconds):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=client, args=(sock, seconds, q)) for _ in range(clients)]
    for p in ps:
        p.start()
    res = [q.get(timeout=seconds + 30) for _ in ps]
    for p in ps:
        p.join(10)
    return sum(r[0] for r in res) / seconds, sum(r[1] for r in res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="volley-apibench-")
    p, sock = start(os.path.abspath(a.build), data)
    try:
        p50, p99, mx, failed, held = latency(sock, a.probes)
        print("health under %d hostile connections (200 idle + 200 slowloris asked; %d held):"
              " p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d of %d failed"
              % (400, held, p50, p99, mx, failed, a.probes))
        time.sleep(1)
        rps, rec = rate(sock, a.clients, a.seconds)
        print("GET /v1/health, %d clients with keep-alive, %.0f s: %.0f requests/s "
              "(%d reconnections: answers with Connection: close)" % (a.clients, a.seconds, rps,
                                                                       rec))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
