#!/usr/bin/env python3
"""volley-sink holds 20,000 connections at once.

Opens N connections (default 20,000, or as many as the per-process
descriptor limit allows both sides when it cannot be raised: a machine with
a hard limit of 20,000 and no CAP_SYS_RESOURCE gets 19,900) to a sink on
loopback in bursts, waits
for every greeting, keeps them all open, then checks the sink still serves a
new client, sends QUIT on every connection and expects 221 on each. Bounded:
every phase has a deadline; the sink is stopped by PID at the end.
Prints 'stress: N passed, N failed'.
"""
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SINK = os.environ.get("VOLLEY_SINK",
                      os.path.join(ROOT, os.environ.get("VOLLEY_BUILD", "build"), "volley-sink"))
N = int(os.environ.get("STRESS_CONNS", "20000"))
HOST = "127.0.0.9"
BURST = 1000
DEADLINE = 90.0


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile(n):
    """Room for n sockets here; the sink, our child, inherits the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 100
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        n = min(n, hard - 100)
        print(f"stress: descriptor hard limit {hard} cannot be raised: {n} connections")
    return n


def read_all(sel, socks, want, deadline):
    """Read from every socket until each has a line starting with want."""
    buf = {s: b"" for s in socks}
    pending = set(socks)
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            buf[s] += data
            if not data or buf[s].startswith(want) and buf[s].endswith(b"\r\n"):
                sel.unregister(s)
                pending.discard(s)
    for s in pending:
        sel.unregister(s)
    return sum(1 for s in socks if buf[s].startswith(want))


def main():
    n = raise_nofile(N)
    port = free_port()
    sink = subprocess.Popen([SINK, "--listen", f"{HOST}:{port}", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    passed = failed = 0
    socks = []
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sel = selectors.DefaultSelector()
        deadline = time.monotonic() + DEADLINE
        greeted = 0
        for start in range(0, n, BURST):
            burst = []
            for _ in range(min(BURST, n - start)):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex((HOST, port))
                burst.append(s)
            greeted += read_all(sel, burst, b"220 ", deadline)
            socks += burst
        print(f"stress: {greeted}/{n} connections greeted, all open at once")
        ok = greeted == n
        passed, failed = passed + ok, failed + (not ok)

        with socket.create_connection((HOST, port), timeout=5) as s:
            ok = s.recv(100).startswith(b"220 ")
        print(f"stress: a new client is served with {n} open: {ok}")
        passed, failed = passed + ok, failed + (not ok)

        for s in socks:
            try:
                s.send(b"QUIT\r\n")
            except OSError:
                pass
        byes = read_all(sel, socks, b"221 ", time.monotonic() + 60)
        ok = byes == n
        print(f"stress: {byes}/{n} QUITs answered 221")
        passed, failed = passed + ok, failed + (not ok)
    finally:
        for s in socks:
            s.close()
        sink.send_signal(signal.SIGTERM)
        try:
            out, _ = sink.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            sink.kill()
            out, _ = sink.communicate()
    ok = sink.returncode == 0
    print(f"stress: sink exited {sink.returncode}; final counters {out.decode().strip()}")
    passed, failed = passed + ok, failed + (not ok)
    print(f"stress: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
