#!/usr/bin/python3
"""The cost of per-source accounting: volley-bench's newsletter scenario
with 4 egress sources in one pool (egress_sources = 4: 127.0.0.41-44, every
site one per source, each with its share of the sessions) against the same
scenario without egress, alternated round by round in one sitting; prints
each run's msg/s and volleyd's CPU per 1,000 messages, each round's ratio
(4 sources / none), their median and spread, and the issue's bound (at
least 0.95: per-source accounting costs at most 5 %) as met or MISSED
(docs/bench.md, "Egress cost").

    /usr/bin/python3 bench/egress-cost.py [--rounds 4] [--recipients N]
        [--scenario newsletter] [--sources 4] [--build DIR]

Each run is a fresh volley-bench run (its own volleyd, sink and spool);
rounds alternate which goes first, so a machine that slows down or speeds
up during the sitting weighs on both sides alike.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
TARGET = 0.95


def scenario_files(a, tmp):
    """The scenario as it is, and a copy with egress_sources set."""
    base = os.path.join(SRC, "bench", "scenarios", a.scenario + ".conf")
    if not os.path.exists(base):
        sys.exit("egress-cost: no scenario %s" % base)
    with open(base) as f:
        lines = [x for x in f if not x.lstrip().startswith("egress_sources")]
    plain = os.path.join(tmp, a.scenario + ".conf")
    egress = os.path.join(tmp, "%s-egress%d.conf" % (a.scenario, a.sources))
    with open(plain, "w") as f:
        f.writelines(lines)
        f.write("egress_sources = 0;\n")
    with open(egress, "w") as f:
        f.writelines(lines)
        f.write("egress_sources = %d;\n" % a.sources)
    return plain, egress


def bench(a, scen, out):
    cmd = [os.path.join(a.build, "volley-bench"), scen, "--no-plot", "--out", out]
    if a.recipients:
        cmd += ["--recipients", str(a.recipients)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=1800)
    try:
        with open(out + ".json") as f:
            r = json.load(f)["results"][0]
    except (OSError, ValueError, KeyError, IndexError):
        sys.exit("egress-cost: volley-bench failed:\n" + p.stdout.decode())
    if not r["ok"]:
        sys.exit("egress-cost: volley-bench: not every recipient accounted for: " + r["note"])
    return r


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--recipients", type=int, default=0, help="default: the scenario's")
    ap.add_argument("--scenario", default="newsletter")
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    a = ap.parse_args()
    if not 1 <= a.rounds <= 20 or not 1 <= a.sources <= 16:
        sys.exit("egress-cost: --rounds 1..20, --sources 1..16")
    tmp = tempfile.mkdtemp(prefix="volley-egresscost-")
    plain_scen, egress_scen = scenario_files(a, tmp)
    print("egress cost: %s%s, %d egress sources in one pool against none, %d rounds "
          "(alternated)" % (a.scenario, " at %d recipients" % a.recipients if a.recipients
                            else "", a.sources, a.rounds))
    print("%-6s %-10s %10s %9s %9s %8s" % ("round", "run", "delivered", "msg/s", "cpu-s/1k",
                                           "load"))
    ratios, cpu_ratios = [], []
    for i in range(a.rounds):
        order = ["none", "egress"] if i % 2 == 0 else ["egress", "none"]
        got = {}
        for kind in order:
            load = loadavg()
            scen = plain_scen if kind == "none" else egress_scen
            r = bench(a, scen, os.path.join(tmp, "%s-%d" % (kind, i)))
            got[kind] = r
            print("%-6d %-10s %10d %9.0f %9.3f %8.2f" % (
                i + 1, kind if kind == "none" else "%d sources" % a.sources, r["delivered"],
                r["messages_per_s"], r["cpu_s_per_1000"], load))
            sys.stdout.flush()
        ratios.append(got["egress"]["messages_per_s"] / got["none"]["messages_per_s"])
        cpu_ratios.append(got["egress"]["cpu_s_per_1000"] / got["none"]["cpu_s_per_1000"])
        print("%-6d ratio      %s sources / none: throughput %.3f, volleyd CPU per message %.3f"
              % (i + 1, a.sources, ratios[-1], cpu_ratios[-1]))
    med = statistics.median(ratios)
    print("\nthroughput %d sources / none, per round: %s" % (
        a.sources, " ".join("%.3f" % x for x in ratios)))
    print("median %.3f, spread %.3f-%.3f; volleyd CPU per message %d sources / none: median "
          "%.3f (%.3f-%.3f)" % (med, min(ratios), max(ratios), a.sources,
                                statistics.median(cpu_ratios), min(cpu_ratios),
                                max(cpu_ratios)))
    verdict = "met" if med >= TARGET else "MISSED"
    print("target: per-source accounting (%d sources / none) throughput at least %.2f: %s "
          "(median %.3f%s)" % (a.sources, TARGET, verdict, med,
                               ", short by a factor of %.2f" % (TARGET / med)
                               if med < TARGET else ""))
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
