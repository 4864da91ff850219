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

    python3 -m tests.stress.many_conns     (from the repository root)
    python3 tests/stress/many_conns.py     (the same, from anywhere)
"""
import os
import resource
import selectors
import socket
import sys
import time

if __name__ == "__main__" and not __package__:
    # Started as a file: run as the module of the tests package (see tests/e2e/run.py).
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execve(sys.executable, [sys.executable, "-P", "-m", "tests.stress.many_conns",
                               *sys.argv[1:]],
              dict(os.environ, PYTHONPATH=os.pathsep.join(
                  filter(None, [_root, os.environ.get("PYTHONPATH")]))))

from ..e2e import util  # noqa: E402
from ..e2e.sinkctl import Sink  # noqa: E402

N = int(os.environ.get("STRESS_CONNS", "20000"))
HOST = "127.0.0.9"
BURST = 1000
DEADLINE = 90.0


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
    sink = Sink("--quiet", hosts=(HOST,), maildir=False).start()
    port = sink.port
    passed = failed = 0
    socks = []
    try:
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
        rc = sink.stop(wait=10)
        out = sink.stdout().strip()
        sink.cleanup()
    ok = rc == 0
    print(f"stress: sink exited {rc}; final counters {out}")
    passed, failed = passed + ok, failed + (not ok)
    print(f"stress: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(util.run_main(main))
