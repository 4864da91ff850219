#!/usr/bin/env python3
"""Crash test: a job of 200,000 recipients survives kill -9.

Submits one job of RECIPIENTS (default 200,000) to volleyd, routed to a
volley-sink that keeps a maildir (in /dev/shm), kills volleyd with SIGKILL
at random moments KILLS times (default 3), restarting it each time, and at
the end checks that every recipient reached the sink: none missing. It
reports the duplicates (recipients the sink got more than once) and fails
if they exceed what the contract allows: per crash, the messages in flight
plus those delivered within the last commit windows.
CRASH_SHARED=1: the job's content is the same for every recipient (its own
To, a job-level value), so it goes in shared transactions of up to
RCPTS_PER_MSG recipients (max_recipients_per_message): a message in flight
is that many recipients; it prints 'crash-shared: ...'.
Bounded: every wait has a deadline; processes are stopped by PID.
Prints 'crash: N passed, N failed'.

    python3 -m tests.stress.crash      (from the repository root)
    python3 tests/stress/crash.py      (the same, from anywhere)
"""
import json
import os
import random
import signal
import sys
import time

if __name__ == "__main__" and not __package__:
    # Started as a file: run as the module of the tests package (see tests/e2e/run.py).
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execve(sys.executable, [sys.executable, "-P", "-m", "tests.stress.crash", *sys.argv[1:]],
              dict(os.environ, PYTHONPATH=os.pathsep.join(
                  filter(None, [_root, os.environ.get("PYTHONPATH")]))))

from ..e2e import util  # noqa: E402
from ..e2e.daemon import Volleyd  # noqa: E402
from ..e2e.sinkctl import Sink  # noqa: E402

# under ASan everything is slower: a smaller job keeps the run bounded
ASAN = "asan" in os.environ.get("VOLLEY_BUILD", "build")
N = int(os.environ.get("CRASH_RECIPIENTS", "50000" if ASAN else "200000"))
KILLS = int(os.environ.get("CRASH_KILLS", "3"))
CONNS = 20
COMMIT_MS = 50
SHARED = os.environ.get("CRASH_SHARED") == "1"
NAME = "crash-shared" if SHARED else "crash"
RCPTS_PER_MSG = 50 if SHARED else 1
DEADLINE = 240.0
REQUEST_WAIT = 60.0


def job_body():
    job = {"envelope_sender": "bounces@news.example.com",
           "content": {"from": {"email": "news@example.com"}, "subject": "Crash {{ n }}",
                       "text_body": "Recipient {{ n }}.\n"}}
    if SHARED:     # the same message for all: shared transactions
        job["content"]["headers"] = {"To": "crash@news.example.com"}
        job["substitutions"] = {"n": "all"}
    yield (json.dumps(job) + "\n").encode()
    for start_i in range(0, N, 5000):
        if SHARED:
            yield "".join('{"email":"c%d@crash.test"}\n' % i
                          for i in range(start_i, min(N, start_i + 5000))).encode()
            continue
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


def job_state(d, jid):
    r = d.request("GET", "/v1/jobs/" + jid, timeout=REQUEST_WAIT)
    return r.json() if r.status == 200 else None


def done_state(d, jid):
    j = job_state(d, jid)
    return j if j["done"] else None


def left(deadline):
    return max(deadline - time.monotonic(), 0)


def start(d, deadline):
    """Start volleyd and wait for it, within what is left of the run."""
    d.start(wait=False)
    d.wait_ready(left(deadline))


def config(sink):
    return ('domains = ( { match = "*.test"; route = "%s"; tls = "may"; '
            'max_connections = %d; max_recipients_per_message = %d; } );\n'
            'spool = { journal_commit_ms = %d; };\n'
            % (sink.route(), CONNS, RCPTS_PER_MSG, COMMIT_MS))


def run(sink, d, deadline):
    start(d, deadline)
    r = d.request("POST", "/v1/jobs", job_body(), {"Content-Type": "application/x-ndjson"},
                  timeout=REQUEST_WAIT)
    if r.status != 202:
        raise RuntimeError("submit: %d %s" % (r.status, r.body[:300]))
    jid = r.json()["id"]
    rnd = random.Random(os.environ.get("CRASH_SEED", str(time.time())))
    rates = []
    for k in range(KILLS):
        # a random moment while deliveries run
        target = rnd.randint(N * (k + 1) // (KILLS + 2), N * (k + 2) // (KILLS + 2))
        t0, d0 = time.monotonic(), job_state(d, jid)["counts"]["delivered"]
        if not util.wait_until(lambda: job_state(d, jid)["counts"]["delivered"] >= target,
                               left(deadline), 0.01):
            raise RuntimeError("timed out before kill %d" % (k + 1))
        j = job_state(d, jid)["counts"]["delivered"]
        if k == 0:     # later phases start with a jump: the journal replayed
            rates.append((j - d0) / max(time.monotonic() - t0, 0.001))
        d.kill9()
        print("kill %d at %d delivered" % (k + 1, j))
        start(d, deadline)
    final = util.wait_until(lambda: done_state(d, jid), left(deadline), 0.1)
    if not final:
        raise RuntimeError("job not done in time: %s" % job_state(d, jid))
    if d.stop(wait=30) == -signal.SIGKILL:
        raise RuntimeError("volleyd did not stop within 30 s of SIGTERM")
    counts = delivered_counts(sink.maildir)
    missing = N - len([r for r in counts if r.startswith("c")])
    dups = sum(c - 1 for c in counts.values())
    rate = max(rates) if rates else 0
    # in flight (2 messages per connection, of RCPTS_PER_MSG recipients)
    # plus two commit windows of deliveries
    bound = KILLS * int(CONNS * 2 * RCPTS_PER_MSG + rate * 2 * COMMIT_MS / 1000 + 1)
    print("recipients %d, delivered %d (job says %d), missing %d, duplicates %d "
          "(bound %d over %d kills at up to %.0f msg/s)"
          % (N, len(counts), final["counts"]["delivered"], missing, dups, bound, KILLS, rate))
    ok = missing == 0 and final["counts"]["delivered"] == N and dups <= bound
    return ok


def main():
    deadline = time.monotonic() + DEADLINE
    sink, d = Sink("--quiet", parent="/dev/shm"), None   # its maildir in memory
    try:
        sink.start()
        d = Volleyd(config=config(sink))
        ok = run(sink, d, deadline)
    except Exception as e:  # report, never hang
        print("crash test error: %s" % e)
        for log in ((d.output() if d else ""), sink.stderr()):
            print(log[-3000:])
        ok = False
    finally:
        if d:
            d.cleanup()
        sink.cleanup()
    print("%s: %d passed, %d failed" % (NAME, int(ok), int(not ok)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(util.run_main(main))
