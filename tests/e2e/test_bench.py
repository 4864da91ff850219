"""volley-bench end to end: scenarios shrunk to a few thousand recipients,
run through volleyd and volley-sink for real; the JSON result must account
for every recipient, agree with the sink, and carry sane figures. Bad
scenarios are refused with the setting named."""

import json
import os
import re
import subprocess
import unittest

from . import util
from .util import BUILD, REPO

BENCH = util.build_path("volley-bench")


def bench(*args, timeout=300):
    return subprocess.run([BENCH, "--bin", BUILD, "--src", REPO, "--no-plot", *args],
                          capture_output=True, text=True, timeout=timeout)


def procs_in(prefix):
    """Processes working in, started with, or holding a file under a
    volley-bench run folder (volleyd's --config, a sink's log, Postfix's
    queue, node's output)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            paths = [os.readlink("/proc/%s/cwd" % pid)]
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                paths += f.read().decode(errors="replace").split("\0")
            for fd in os.listdir("/proc/%s/fd" % pid):
                paths.append(os.readlink("/proc/%s/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if any(p.startswith(prefix) for p in paths):
            found.append(int(pid))
    return found


class BenchTest(unittest.TestCase):
    def setUp(self):
        self.tmp = util.tempdir("volley-bench-test.", cleanup=self.addCleanup)
        self.out = os.path.join(self.tmp, "r")

    def run_scenario(self, *args):
        p = bench(*args, "--out", self.out)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(self.out + ".json") as f:
            return json.load(f), p.stdout

    def check_volley(self, res, n):
        v = res["results"][0]
        self.assertEqual(v["peer"], "volley")
        self.assertTrue(v["ran"] and v["ok"], v["note"])
        self.assertEqual(v["messages"], n)
        self.assertEqual(v["delivered"] + v["bounced"] + v["other"], n)
        self.assertEqual(v["sink_messages"], v["delivered"])
        self.assertGreater(v["messages_per_s"], 0)
        self.assertGreater(v["cpu_s"], 0)
        self.assertGreater(v["peak_pss_kb"], 1000)
        self.assertGreater(v["peak_conns"], 0)
        self.assertGreaterEqual(v["p99_ms"], v["p50_ms"])
        self.assertGreater(v["p50_ms"], 0)
        series = v["sink_messages_over_time"]
        self.assertTrue(series, "no samples of the sink's count")
        self.assertEqual(series[-1][1], v["delivered"])
        return v

    def test_small(self):
        res, out = self.run_scenario("small", "--recipients", "2000")
        self.assertEqual(res["scenario"], "small")
        self.assertEqual(res["settings"]["recipients"], 2000)
        v = self.check_volley(res, 2000)
        self.assertEqual(v["delivered"], 2000)
        self.assertGreater(v["intake_s"], 0)
        self.assertLess(v["intake_s"], v["seconds"])
        self.assertIn("was durable (202)", out)
        self.assertIn("msg/s", out)
        self.assertRegex(out, r"volley\s+2000\s+2000\s")

    def test_faults_every_recipient_final(self):
        res, out = self.run_scenario("faults", "--recipients", "3000")
        v = self.check_volley(res, 3000)
        # 1 % of RCPTs fail for good: some bounce, the 4xx and resets retry.
        self.assertGreater(v["bounced"], 0)
        self.assertGreater(v["delivered"], 2800)
        self.assertIn("bounced", out)

    def test_transactional_latency(self):
        res, _ = self.run_scenario("transactional", "--recipients", "100")
        v = self.check_volley(res, 100)
        self.assertEqual(v["delivered"], 100)
        self.assertLess(v["p50_ms"], 5000)

    def test_dkim_rsa(self):
        """The dkim scenario with an RSA key: volleyd runs with dkim_required,
        so every delivered message was signed (it refuses to send unsigned)."""
        path = os.path.join(self.tmp, "rsa.conf")
        with open(os.path.join(REPO, "bench", "scenarios", "dkim.conf")) as f:
            conf = f.read().replace('dkim = "ed25519";', 'dkim = "rsa";')
        self.assertIn('dkim = "rsa";', conf)
        with open(path, "w") as f:
            f.write(conf)
        res, _ = self.run_scenario(path, "--recipients", "300")
        self.check_volley(res, 300)
        self.assertEqual(res["settings"]["dkim"], "rsa")

    def test_plot(self):
        p = subprocess.run([BENCH, "--bin", BUILD, "--src", REPO, "small", "--recipients",
                            "500", "--out", self.out], capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(self.out + ".png", "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_compare_peers(self):
        """Postfix (installed from Debian's packages, a private instance) and
        Nodemailer (installed from npm on first use) send the same workload;
        every message is counted on both sides and the ratios are printed."""
        res, out = self.run_scenario("small", "--recipients", "300", "--compare", "postfix",
                                     "--compare", "nodemailer", "--compare", "blast")
        self.check_volley(res, 300)
        peers = {r["peer"]: r for r in res["results"][1:]}
        self.assertEqual(sorted(peers), ["blast", "nodemailer", "postfix"])
        for name, r in peers.items():
            self.assertTrue(r["ran"] and r["ok"], "%s: %s" % (name, r["note"]))
            self.assertEqual(r["delivered"], 300, name)
            self.assertEqual(r["sink_messages"], 300, name)
            self.assertGreater(r["cpu_s"], 0, name)
            self.assertGreater(r["peak_pss_kb"], 0, name)
            self.assertRegex(out, r"volley / %s: throughput [0-9.]+x" % name)
        self.assertGreater(peers["postfix"]["p99_ms"], 0)
        self.assertGreater(peers["nodemailer"]["p50_ms"], 0)
        # Nothing is left running in a run's folder (Postfix's processes
        # work in its queue directory there).
        self.assertEqual(procs_in("/tmp/volley-bench."), [])

    def test_dane(self):
        """The dane scenario: MX through a signed world and a validating
        unbound, TLSA 3 1 1 on every MX. Every delivery of the DANE run is
        DANE-authenticated (tls.dane in its events) and none of the no-dane
        run's (policy encrypt), so the ratio compares what it says; the
        world's NSD and unbound are gone afterwards."""
        p = bench("dane", "--recipients", "500", "--out", self.out)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout
        with open(self.out + ".json") as f:
            res = json.load(f)
        self.assertTrue(res["settings"]["dane"])
        v = self.check_volley(res, 500)
        self.assertEqual(v["delivered"], 500)
        self.assertEqual(v["dane_deliveries"], 500, v["note"])
        nd = res["results"][1]
        self.assertEqual(nd["peer"], "no-dane")
        self.assertTrue(nd["ran"] and nd["ok"], nd["note"])
        self.assertEqual((nd["delivered"], nd["dane_deliveries"]), (500, 0))
        self.assertIn("500 of 500 deliveries authenticated by DANE", out)
        self.assertRegex(out, r"volley / no-dane: throughput [0-9.]+x")
        self.assertRegex(out, r"target: volley / no-dane throughput at least 0.90: "
                              r"(met|MISSED)")
        # NSD and unbound worked in the run's folder: nothing is left there.
        run_dir = re.search(r"run in (/tmp/volley-bench\.\S+)", p.stderr).group(1)
        self.assertEqual(procs_in(run_dir + "/"), [])

    def test_targets(self):
        """A scenario's targets are checked against the run's ratios: met
        and missed both said, with the factor; a miss is not a failure."""
        path = os.path.join(self.tmp, "t.conf")
        with open(path, "w") as f:
            f.write("recipients = 500;\ndomains = 10;\ntls = false;\n"
                    "target_blast = 1000.0;\ntarget_nodemailer = 0.001;\n")
        _, out = self.run_scenario(path, "--compare", "blast")
        self.assertRegex(out, r"target: volley / blast throughput at least 1000.00: MISSED "
                              r"\([0-9.]+, short by a factor of [0-9.]+\)")
        self.assertNotIn("nodemailer", out.split("target:", 1)[1])

    def test_bad_scenarios(self):
        path = os.path.join(self.tmp, "typo.conf")
        with open(path, "w") as f:
            f.write("recipients = 10;\nrecipents = 5;\n")
        p = bench(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("recipents: unknown setting", p.stderr)
        with open(path, "w") as f:
            f.write('recipients = 10;\ntempfail = "70%";\n')
        p = bench(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("tempfail", p.stderr)
        with open(path, "w") as f:
            f.write('recipients = 10;\ntarget_postfix = "lots";\n')
        p = bench(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("target_postfix: a positive ratio", p.stderr)
        p = bench("no-such-scenario")
        self.assertEqual(p.returncode, 2)
        self.assertIn("no scenario no-such-scenario", p.stderr)
        with open(path, "w") as f:
            f.write("recipients = 10;\ntls = false;\ndane = true;\n")
        p = bench(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("dane: needs tls = true", p.stderr)
        p = bench("small", "--compare", "sendmail")
        self.assertEqual(p.returncode, 2)
        self.assertIn("postfix, nodemailer or blast", p.stderr)


if __name__ == "__main__":
    unittest.main()
