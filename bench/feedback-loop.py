#!/usr/bin/env python3
"""The feedback loop in volleyd, end to end: a job of N recipients (VERP)
delivered to volley-sink, then N DSNs (one per recipient, RFC 3464 as
Postfix writes them) dropped into data_dir/feedback/new/ at once; prints
how fast volleyd's processor parses, matches and applies them (each a late
bounce: a record in the job's feedback file, an OOB event, the address
suppressed) until every file is in cur/.

    python3 bench/feedback-loop.py [N]      # from the repository's top

Uses build/volleyd and build/volley-sink (tests/e2e's fixtures)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.e2e.daemon import Volleyd, simple_job          # noqa: E402
from tests.e2e.sinkctl import Sink                        # noqa: E402
from tests.e2e.test_feedback_loop import conf, dsn        # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    sink = Sink("--tls").start()
    d = Volleyd(config=conf(sink)).start()
    try:
        jid = d.submit(simple_job(n, domain="d.test", verp=True)).json()["id"]
        deadline = time.time() + 600
        while not d.request("GET", "/v1/jobs/" + jid).json()["done"]:
            if time.time() > deadline:
                sys.exit("the job did not finish in 10 minutes")
            time.sleep(0.1)
        base = os.path.join(d.data_dir, "feedback")
        os.makedirs(os.path.join(base, "tmp"), exist_ok=True)
        names = ["r%07d" % i for i in range(n)]
        for i, name in enumerate(names):
            with open(os.path.join(base, "tmp", name), "wb") as f:
                f.write(dsn(jid, i, "user%d@d.test" % i))
        t0 = time.time()
        for name in names:
            os.rename(os.path.join(base, "tmp", name), os.path.join(base, "new", name))
        while len(os.listdir(os.path.join(base, "cur"))) < n:
            if time.time() - t0 > 600:
                sys.exit("not every report processed in 10 minutes")
            time.sleep(0.05)
        dt = time.time() - t0
        j = d.request("GET", "/v1/jobs/" + jid).json()
        print("late bounces applied: %d in %.2f s: %.0f reports/s; job bounced %d, "
              "async_bounces %d" % (n, dt, n / dt, j["counts"]["bounced"],
                                    j["feedback"]["async_bounces"]))
    finally:
        d.cleanup()
        sink.stop()


if __name__ == "__main__":
    main()
