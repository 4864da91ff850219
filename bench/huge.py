#!/usr/bin/env python3
"""Ten million recipients (issue "huge", run by hand; not in make bench):
a personalised NDJSON job of N recipients (about 120 octets a line,
1.2 GB at 10,000,000) POSTed to volleyd's socket with curl, and

  - intake: seconds to the 202 (the job durable), and volleyd's private
    memory (RssAnon, sampled every 0.1 s) at its peak during intake;
  - listing: GET /v1/jobs/{id}/recipients?state=bounced and ?state=queued
    (streamed; the queued one is every row): seconds and peak memory;
  - restart: kill -9, then seconds until volleyd answers with the job
    listed, and its memory then.

The job carries rate_limit "1/h" so that delivery does not run under the
measurement (the recipients stay queued). With --deliver, another run
delivers the whole job to volley-sink over STARTTLS instead and reports
the rate and volleyd's peak private memory during delivery (bounded: 30
minutes).

    python3 bench/huge.py [N] [--deliver]     # from the repository's top

The NDJSON file is kept in $TMPDIR/volley-huge-N.ndjson for the next run."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.e2e.daemon import Volleyd                      # noqa: E402
from tests.e2e.sinkctl import Sink                        # noqa: E402

JOB = {"envelope_sender": "bounces@news.example.com", "rate_limit": "1/h",
       "content": {"from": {"email": "news@example.com", "name": "Example News"},
                   "subject": "Hello {{ name }}",
                   "text_body": "Hi {{ name }}, your code is {{ code }}."}}


def ndjson(n):
    path = os.path.join(tempfile.gettempdir(), "volley-huge-%d.ndjson" % n)
    if os.path.exists(path):
        return path
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(JOB) + "\n")
        for i in range(n):
            f.write('{"email": "subscriber%08d@d%03d.example.net", "name": "Subscriber %d", '
                    '"substitutions": {"code": "C%010d"}}\n' % (i, i % 1000, i, i * 7))
    os.rename(path + ".tmp", path)
    return path


class Peak:
    """The highest RssAnon of pid while running, in MB."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def now(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, self.now())
            time.sleep(0.1)

    def done(self):
        self.stop = True
        self.t.join()
        return self.peak


def curl(sock, *args):
    return subprocess.run(["curl", "-sS", "--unix-socket", sock, *args], capture_output=True,
                          timeout=3600)


def deliver(n, path):
    """The whole job to volley-sink: rate and peak private memory."""
    sink = Sink("--tls", maildir=False).start()
    d = Volleyd(config='domains = ( { match = "*"; route = "%s"; tls = "encrypt"; } );\n'
                       'spool = { min_free = "1GB"; };\n' % sink.route()).start()
    try:
        job = dict(JOB)
        del job["rate_limit"]
        with open(path + ".deliver", "w") as f, open(path) as src:
            f.write(json.dumps(job) + "\n")
            next(src)
            for line in src:
                f.write(line)
        p = Peak(d.proc.pid)
        t0 = time.time()
        out = curl(d.sock, "-X", "POST", "-H", "Content-Type: application/x-ndjson",
                   "-T", path + ".deliver", "http://volley/v1/jobs")
        os.unlink(path + ".deliver")
        jid = json.loads(out.stdout)["id"]
        t1 = time.time()
        while True:
            j = d.request("GET", "/v1/jobs/" + jid).json()
            if j["done"] or time.time() - t1 > 1800:
                break
            time.sleep(1)
        dt = time.time() - t1
        print("delivery: %d of %d delivered in %.0f s after the 202 (%.0f msg/s); volleyd "
              "RssAnon peak %.0f MB from the upload to the end" %
              (j["counts"]["delivered"], n, dt, j["counts"]["delivered"] / dt, p.done()))
        del t0
    finally:
        d.cleanup()
        sink.stop()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 10_000_000
    path = ndjson(n)
    if "--deliver" in sys.argv:
        return deliver(n, path)
    size = os.path.getsize(path)
    d = Volleyd(config='domains = ( { match = "*"; route = "127.0.0.1:9"; tls = "none"; } );\n'
                       'spool = { min_free = "1GB"; };\n').start()
    try:
        mem0 = Peak(d.proc.pid).now()
        p = Peak(d.proc.pid)
        t0 = time.time()
        out = curl(d.sock, "-X", "POST", "-H", "Content-Type: application/x-ndjson",
                   "-T", path, "http://volley/v1/jobs")
        intake = time.time() - t0
        peak_intake = p.done()
        try:
            ans = json.loads(out.stdout)
        except ValueError:
            sys.exit("intake failed after %.1f s: %s %s" % (intake, out.stdout[:300],
                                                             out.stderr[:300]))
        jid = ans["id"]
        print("intake: %d recipients, %.0f MB of NDJSON: 202 after %.1f s (%.0f MB/s); "
              "volleyd RssAnon %.0f MB before, %.0f MB at peak" %
              (n, size / 1e6, intake, size / 1e6 / intake, mem0, peak_intake))
        for state in ("bounced", "queued"):
            p = Peak(d.proc.pid)
            t0 = time.time()
            out = curl(d.sock, "http://volley/v1/jobs/%s/recipients?state=%s" % (jid, state))
            dt = time.time() - t0
            rows = out.stdout.count(b"\n")
            print("recipients?state=%s: %d rows in %.1f s; volleyd RssAnon peak %.0f MB" %
                  (state, rows, dt, p.done()))
        d.kill9()
        t0 = time.time()
        d.start(wait=False)
        while True:
            try:
                j = d.request("GET", "/v1/jobs/" + jid, timeout=5).json()
                if j.get("recipients") == n:
                    break
            except (OSError, ValueError):
                pass
            if time.time() - t0 > 600:
                sys.exit("volleyd did not come back in 10 minutes")
            time.sleep(0.05)
        print("restart after kill -9: job %s listed after %.2f s; volleyd RssAnon %.0f MB" %
              (jid, time.time() - t0, Peak(d.proc.pid).now()))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
