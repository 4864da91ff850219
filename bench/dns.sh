#!/bin/sh
# dns/ benchmark: volley-resolve against Debian's unbound on a loopback port
# serving DOMAINS local MX records (d<i>.bench.test -> mx<i % HOSTS>.bench.test,
# each host with an A record, the zone's SOA caching the AAAA absence).
#   phase 1: MX of DOMAINS distinct domains (INFLIGHT at a time): queries/s;
#   phase 2: LOOKUPS lookups over the same domains: queries sent must be 0,
#            so at most one query per record per TTL in all, counted by the
#            resolver and by unbound itself (unbound-control stats).
# Settings: DOMAINS (10000), HOSTS (100), LOOKUPS (100000), INFLIGHT (500), RUNS (3).
set -eu
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
[ -x "$B/volley-resolve" ] || make --no-print-directory "$B/volley-resolve" >/dev/null
export DOMAINS=${DOMAINS:-10000} HOSTS=${HOSTS:-100} LOOKUPS=${LOOKUPS:-100000}
export INFLIGHT=${INFLIGHT:-500} RUNS=${RUNS:-3} VOLLEY_BUILD="$B"
exec python3 - <<'EOF'
import json, os, statistics, subprocess, sys
from tests.e2e import dnsctl

n, hosts, lookups = int(os.environ["DOMAINS"]), int(os.environ["HOSTS"]), int(os.environ["LOOKUPS"])
inflight, runs = os.environ["INFLIGHT"], int(os.environ["RUNS"])
data = ["d%d.bench.test. 3600 IN MX 10 mx%d.bench.test." % (i, i % hosts) for i in range(n)]
data += ["mx%d.bench.test. 3600 IN A 127.0.%d.%d" % (h, 1 + h // 250, 1 + h % 250)
         for h in range(hosts)]
records = n + 2 * hosts          # MX per domain, A and AAAA per host
print("== dns: %d domains over %d MX hosts, then %d lookups; unbound %s, %s in flight"
      % (n, hosts, lookups, subprocess.run(["unbound", "-V"], capture_output=True,
                                          text=True).stdout.split()[1], inflight))
print("%-4s %9s %11s %11s %10s %12s %9s %9s" % ("run", "queries", "queries/s", "domains/s",
      "lookups", "lookups/s", "p2 sent", "unbound"))
rows = []
for run in range(1, runs + 1):
    with dnsctl.Unbound({"bench.test": data}, extra="  so-rcvbuf: 4m\n  so-sndbuf: 4m") as ub:
        before = ub.queries()
        out = subprocess.run([dnsctl.RESOLVE, "--server", ub.server, "--allow-private",
                              "--bench", str(n), "--lookups", str(lookups),
                              "--inflight", inflight, "--deadline-ms", "300000"],
                             capture_output=True, text=True, timeout=330)
        if out.returncode:
            sys.exit("volley-resolve failed: %s" % out.stderr)
        seen = ub.queries() - before
    b = json.loads(out.stdout.splitlines()[0])["bench"]
    if b["failed"] or b["queries"] > records or b["phase2_queries"] or seen > records:
        sys.exit("FAILED: %s (unbound saw %d, records %d)" % (b, seen, records))
    rows.append(b)
    print("%-4d %9d %11.0f %11.0f %10d %12.0f %9d %9d" % (run, b["queries"],
          b["queries_per_s"], b["domains_per_s"], b["lookups"], b["lookups_per_s"],
          b["phase2_queries"], seen))
med = lambda k: statistics.median(r[k] for r in rows)
print("median: %.0f queries/s, %.0f domains/s resolved cold; %.0f lookups/s from the cache"
      % (med("queries_per_s"), med("domains_per_s"), med("lookups_per_s")))
print("queries per run: %d for %d records (%d MX, %d A, %d AAAA); in phase 2: 0"
      % (rows[0]["queries"], records, n, hosts, hosts))
EOF
