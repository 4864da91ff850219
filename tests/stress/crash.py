#!/usr/bin/env python3
"""Crash test: a job of 200,000 recipients survives kill -9.

Submits one job of RECIPIENTS (default 200,000) to volleyd, routed to a
volley-sink that keeps a maildir (in /dev/shm), kills volleyd with SIGKILL
at random moments KILLS times (default 3), restarting it each time, and at
the end checks that every recipient reached the sink: none missing. It
reports the duplicates (recipients the sink got more than once) and fails
if they exceed what the contract allows: per crash, the messages in flight
plus those delivered within the last commit windows.
Bounded: every wait has a deadline; processes are stopped by PID.
Prints 'crash: N passed, N failed'.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
B = os.environ.get("VOLLEY_BUILD", "build")
SINK = os.path.join(ROOT, B, "volley-sink")
VOLLEYD = os.environ.get("VOLLEYD") or os.path.join(ROOT, B, "volleyd")
# under ASan everything is slower: a smaller job keeps the run bounded
N = int(os.environ.get("CRASH_RECIPIENTS", "50000" if "asan" in B else "200000"))
KILLS = int(os.environ.get("CRASH_KILLS", "3"))
CONNS = 20
COMMIT_MS = 50
DEADLINE = 240.0
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from daemon import UnixHTTPConnection  # noqa: E402

procs = []


def start(argv, log):
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def request(sock, method, path, body=None, headers=None):
    c = UnixHTTPConnection(sock, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {},
                  encode_chunked=body is not None and not isinstance(body, bytes))
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_sock(sock, p, deadline):
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError("volleyd exited %s" % p.returncode)
        try:
            if request(sock, "GET", "/v1/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("volleyd did not come up")


def job_body():
    job = {"envelope_sender": "bounces@news.example.com",
           "content": {"from": {"email": "news@example.com"}, "subject": "Crash {{ n }}",
                       "text_body": "Recipient {{ n }}.\n"}}
    yield (json.dumps(job) + "\n").encode()
    for start_i in range(0, N, 5000):
        yield "".join('{"email":"c%d@crash.test","substitutions":{"n":"%d"}}\n' % (i, i)
                      for i in range(start_i, min(N, start_i + 5000))).encode()


def delivered_counts(maildir):
    counts = {}
    env = os.path.join(maildir, "env")
    for name in os.listdir(env):
        try:
            with open(os.path.join(env, name)) as f:
                for r in json.load(f)["rcpt"]:
                    counts[r] = counts.get(r, 0) + 1
        except (OSError, ValueError):
            pass
    return counts


def job_state(sock, jid):
    st, body = request(sock, "GET", "/v1/jobs/" + jid)
    return json.loads(body) if st == 200 else None


def run(tmp):
    deadline = time.monotonic() + DEADLINE
    shm = tempfile.mkdtemp(prefix="volley-crash-", dir="/dev/shm")
    try:
        return run_in(tmp, shm, deadline)
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def run_in(tmp, shm, deadline):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(tmp, "log"), "ab")
    start([SINK, "--listen", "127.0.0.1:%d" % port, "--maildir", os.path.join(shm, "md"),
           "--quiet"], log)
    data = os.path.join(tmp, "data")
    conf = os.path.join(tmp, "volley.conf")
    with open(conf, "w") as f:
        f.write('domains = ( { match = "*.test"; route = "127.0.0.1:%d"; tls = "may"; '
                'max_connections = %d; } );\nspool = { journal_commit_ms = %d; };\n'
                % (port, CONNS, COMMIT_MS))
    argv = [VOLLEYD, "--foreground", "--data-dir", data, "--config", conf]
    sock = os.path.join(data, "volley.sock")
    d = start(argv, log)
    wait_sock(sock, d, deadline)
    st, body = request(sock, "POST", "/v1/jobs", job_body(),
                       {"Content-Type": "application/x-ndjson"})
    if st != 202:
        raise RuntimeError("submit: %d %s" % (st, body[:300]))
    jid = json.loads(body)["id"]
    rnd = random.Random(os.environ.get("CRASH_SEED", str(time.time())))
    rates = []
    for k in range(KILLS):
        # a random moment while deliveries run
        target = rnd.randint(N * (k + 1) // (KILLS + 2), N * (k + 2) // (KILLS + 2))
        t0, d0 = time.monotonic(), job_state(sock, jid)["counts"]["delivered"]
        while job_state(sock, jid)["counts"]["delivered"] < target:
            if time.monotonic() > deadline:
                raise RuntimeError("timed out before kill %d" % (k + 1))
            time.sleep(0.01)
        j = job_state(sock, jid)["counts"]["delivered"]
        if k == 0:     # later phases start with a jump: the journal replayed
            rates.append((j - d0) / max(time.monotonic() - t0, 0.001))
        d.send_signal(signal.SIGKILL)
        d.wait(10)
        print("kill %d at %d delivered" % (k + 1, j))
        d = start(argv, log)
        wait_sock(sock, d, deadline)
    while not job_state(sock, jid)["done"]:
        if time.monotonic() > deadline:
            raise RuntimeError("job not done in time: %s" % job_state(sock, jid))
        time.sleep(0.1)
    final = job_state(sock, jid)
    d.send_signal(signal.SIGTERM)
    d.wait(30)
    counts = delivered_counts(os.path.join(shm, "md"))
    missing = N - len([r for r in counts if r.startswith("c")])
    dups = sum(c - 1 for c in counts.values())
    rate = max(rates) if rates else 0
    # in flight (2 per connection) plus two commit windows of deliveries
    bound = KILLS * int(CONNS * 2 + rate * 2 * COMMIT_MS / 1000 + 1)
    print("recipients %d, delivered %d (job says %d), missing %d, duplicates %d "
          "(bound %d over %d kills at up to %.0f msg/s)"
          % (N, len(counts), final["counts"]["delivered"], missing, dups, bound, KILLS, rate))
    ok = missing == 0 and final["counts"]["delivered"] == N and dups <= bound
    return ok


def main():
    tmp = tempfile.mkdtemp(prefix="volley-crash-")
    try:
        ok = run(tmp)
    except Exception as e:  # report, never hang
        print("crash test error: %s" % e)
        try:
            print(open(os.path.join(tmp, "log"), errors="replace").read()[-3000:])
        except OSError:
            pass
        ok = False
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print("crash: %d passed, %d failed" % (int(ok), int(not ok)))
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
