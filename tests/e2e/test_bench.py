"""volley-bench end to end: scenarios shrunk to a few thousand recipients,
run through volleyd and volley-sink for real; the JSON result must account
for every recipient, agree with the sink, and carry sane figures. Bad
scenarios are refused with the setting named."""

import json
import os
import re
import subprocess
import unittest

from . import sinkctl, util
from .util import BUILD, REPO

BENCH = util.build_path("volley-bench")
SUBMIT = util.build_path("volley-submit")


def bench(*args, timeout=300):
    return subprocess.run([BENCH, "--bin", BUILD, "--src", REPO, "--no-plot", *args],
                          capture_output=True, text=True, timeout=timeout)


def run_dir_of(p):
    """The run folder volley-bench named on stderr."""
    m = re.search(r"run in (/tmp/volley-bench\.\S+)", p.stderr)
    assert m, p.stderr
    return m.group(1)


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
        self.run_dir = run_dir_of(p)
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
        """The dkim-100k scenario (RSA key, 100 KB, one body under personal
        headers): volleyd runs with dkim_required, so every delivered
        message was signed (it refuses to send unsigned); openssl speed ran
        before and after, and the ratio and its target are printed."""
        path = os.path.join(self.tmp, "rsa.conf")
        with open(os.path.join(REPO, "bench", "scenarios", "dkim-100k.conf")) as f:
            conf = f.read().replace("openssl_seconds = 5;", "openssl_seconds = 1;")
        self.assertIn("openssl_seconds = 1;", conf)
        with open(path, "w") as f:
            f.write(conf)
        res, out = self.run_scenario(path, "--recipients", "300")
        v = self.check_volley(res, 300)
        self.assertEqual(res["settings"]["dkim"], "rsa")
        self.assertFalse(res["settings"]["personalised_body"])
        o = v["openssl_speed"]
        self.assertEqual((o["alg"], o["seconds"]), ("rsa2048", 1))
        self.assertGreater(o["sign_per_s_before"], 100)
        self.assertGreater(o["sign_per_s_after"], 100)
        self.assertAlmostEqual(o["volley_over_openssl"],
                               v["messages_per_s"] / o["sign_per_s"], places=3)
        self.assertRegex(out, r"openssl speed -seconds 1 rsa2048, one core: \d+ sign/s before")
        self.assertRegex(out, r"target: volley msg/s / openssl speed rsa2048 sign/s \(one core\) "
                              r"at least 1\.00: (met|MISSED)")

    def test_plot(self):
        p = subprocess.run([BENCH, "--bin", BUILD, "--src", REPO, "small", "--recipients",
                            "500", "--out", self.out], capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(self.out + ".png", "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_compare_haraka(self):
        """Haraka (installed from npm on first use) as an outbound relay, fed
        by the injector: every message reaches the sink, over STARTTLS."""
        res, out = self.run_scenario("small", "--recipients", "300", "--compare", "haraka")
        self.check_volley(res, 300)
        r = res["results"][1]
        self.assertEqual(r["peer"], "haraka")
        self.assertTrue(r["ran"] and r["ok"], r["note"])
        self.assertEqual(r["delivered"], 300)
        self.assertEqual(r["sink_messages"], 300)
        self.assertGreater(r["cpu_s"], 0)
        self.assertIn("Haraka 3.3.4", r["note"])
        self.assertRegex(out, r"volley / haraka: throughput [0-9.]+x")
        # where it does not apply, volley-bench says so before it starts
        p = bench("faults", "--compare", "haraka")
        self.assertEqual(p.returncode, 2)
        self.assertIn("Haraka is compared where every message is delivered", p.stderr)

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
        # small is a STARTTLS scenario: the blaster does STARTTLS too
        self.assertIn("STARTTLS (sessions resumed)", peers["blast"]["note"])
        self.assertGreater(peers["nodemailer"]["p50_ms"], 0)
        # Nothing is left running in the run's folder (Postfix's processes
        # work in its queue directory there). Its own folder: other
        # volley-bench runs may be going on on the machine.
        self.assertEqual(procs_in(self.run_dir + "/"), [])

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
        self.assertEqual(procs_in(run_dir_of(p) + "/"), [])

    def test_mixed(self):
        """The mixed scenario, shrunk: a 1,000-recipient bulk job with
        transactional jobs at 200 a second beside it through the API, then
        the bulk alone, then the stream alone. Every message is accounted
        for at the sink, each transactional one matched to its submission
        by the sink's accept log; the latency lines and both targets are
        printed."""
        # the scenario as shipped but smaller: the stream's list (20,000
        # names take longer to write than the run) and 20 sessions (200
        # TLS handshakes would be most of it)
        path = os.path.join(self.tmp, "mixed.conf")
        with open(os.path.join(REPO, "bench", "scenarios", "mixed.conf")) as f:
            conf = f.read().replace("mixed_max = 20000;", "mixed_max = 2000;").replace(
                "sessions = 200;", "sessions = 20;")
        self.assertIn("mixed_max = 2000;", conf)
        self.assertIn("sessions = 20;", conf)
        with open(path, "w") as f:
            f.write(conf)
        res, out = self.run_scenario(path, "--recipients", "1000")
        self.assertTrue(res["settings"]["mixed"])
        self.assertEqual(res["settings"]["submit_rate"], 200)
        v, alone, txonly = res["results"][:3]
        self.assertEqual((v["peer"], alone["peer"], txonly["peer"]),
                         ("volley", "volley-alone", "volley-txonly"))
        for r in (v, alone, txonly):
            self.assertTrue(r["ran"] and r["ok"], r["note"])
            self.assertEqual(r["sink_messages"], r["delivered"])
            self.assertEqual(r["delivered"], r["messages"])
        m = v["mixed"]
        self.assertFalse(m["alone"])
        self.assertEqual(m["bulk"], 1000)
        self.assertGreater(m["tx_submitted"], 0)
        self.assertEqual(m["tx_failed"], 0)
        self.assertEqual(m["tx_delivered"], m["tx_submitted"])
        self.assertEqual(v["messages"], 1000 + m["tx_submitted"])
        self.assertGreater(m["tx_p50_ms"], 0)
        self.assertGreaterEqual(m["tx_p99_ms"], m["tx_p50_ms"])
        self.assertGreaterEqual(m["tx_p999_ms"], m["tx_p99_ms"])
        self.assertGreaterEqual(m["tx_max_ms"], m["tx_p999_ms"])
        self.assertGreater(m["bulk_messages_per_s"], 0)
        self.assertTrue(alone["mixed"]["alone"])
        self.assertEqual(alone["mixed"]["tx_submitted"], 0)
        self.assertEqual(alone["delivered"], 1000)
        # the stream alone, as long as the mixed bulk took: the reference
        t = txonly["mixed"]
        self.assertEqual(t["bulk"], 0)
        self.assertGreater(t["tx_submitted"], 0)
        self.assertEqual(t["tx_delivered"], t["tx_submitted"])
        self.assertEqual(txonly["delivered"], t["tx_submitted"])
        self.assertRegex(out, r"\nvolley\s+1000\s+[0-9.]+\s+[0-9]+\s+[0-9]+\s+[0-9.]+\s+%d\s"
                         % m["tx_submitted"])
        self.assertRegex(out, r"target: volley transactional submit-to-250 p99 under 5.0 ms: "
                              r"(met|MISSED) \([0-9.]+ ms")
        self.assertRegex(out, r"target: volley bulk throughput mixed / alone at least 0.90: "
                              r"(met|MISSED) \([0-9.]+")

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

    def test_session_memory_and_tls_blast_at_latency(self):
        """base_sessions: volley again at fewer sessions (base-sess), and
        the memory per open session from the two peak PSS, with its target;
        the blaster sets up its STARTTLS connections all at once against a
        sink that holds every reply."""
        path = os.path.join(self.tmp, "s.conf")
        with open(path, "w") as f:
            f.write('recipients = 600;\ndomains = 20;\nlatency = "20ms";\nsessions = 300;\n'
                    'sink_addresses = 2;\nsink_threads = 2;\nbase_sessions = 20;\n'
                    'target_session_kb = 1000.0;\n')
        res, out = self.run_scenario(path, "--compare", "blast")
        peers = {r["peer"]: r for r in res["results"]}
        self.assertEqual(sorted(peers), ["base-sess", "blast", "volley"])
        self.assertTrue(all(r["ok"] for r in res["results"]), out)
        self.assertLessEqual(peers["base-sess"]["peak_conns"], 20)
        self.assertGreater(peers["volley"]["peak_conns"], 20)
        self.assertEqual(peers["blast"]["delivered"], 600)
        self.assertIn("STARTTLS", peers["blast"]["note"])
        self.assertIn("memory_per_session_kb", res)
        self.assertEqual(res["settings"]["base_sessions"], 20)
        self.assertRegex(out, r"volley: memory per open session: \([0-9.]+ MB peak PSS at "
                              r"[0-9]+ sessions - [0-9.]+ MB at [0-9]+\) / [0-9]+ = -?[0-9.]+ KB")
        self.assertRegex(out, r"target: memory per open session beyond the message in flight "
                              r"at most 1000.00 KB: met")
        # --base-sessions must be fewer than the sessions
        p = bench(path, "--base-sessions", "300")
        self.assertEqual(p.returncode, 2)
        self.assertIn("base_sessions: fewer than", p.stderr)

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
        with open(path, "w") as f:
            f.write("recipients = 10;\ntarget_openssl = 1.0;\nopenssl_seconds = 1;\n")
        p = bench(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("target_openssl: needs dkim", p.stderr)
        with open(path, "w") as f:
            f.write("recipients = 10;\ntarget_session_kb = 8.0;\n")
        p = bench(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("target_session_kb: needs base_sessions", p.stderr)
        p = bench("small", "--compare", "sendmail")
        self.assertEqual(p.returncode, 2)
        self.assertIn("postfix, nodemailer, haraka or blast", p.stderr)
        with open(path, "w") as f:
            f.write("recipients = 10;\ncluster_nodes = 3;\n")
        p = bench(path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("cluster_nodes: 2 to 8, with egress_sources", p.stderr)
        p = bench("small", "--rounds", "2")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--rounds: 1 to 4, for a cluster scenario", p.stderr)

    @unittest.skipUnless(os.access("/usr/bin/redis-server", os.X_OK),
                         "redis-server is not installed")
    def test_cluster(self):
        """The cluster scenario shrunk: one node, then three nodes sharing
        a redis-server of the run's own, then the three without Redis;
        every recipient delivered in each, split evenly, the Redis figures
        and the ratio printed, nothing left running."""
        res, out = self.run_scenario("cluster", "--recipients", "3000")
        self.check_volley(res, 3000)
        self.assertEqual(res["settings"]["cluster_nodes"], 3)
        rows = {r["peer"]: r for r in res["results"]}
        self.assertEqual(sorted(rows), ["cluster", "no-redis", "volley"])
        for name in ("cluster", "no-redis"):
            r = rows[name]
            self.assertTrue(r["ran"] and r["ok"], r["note"])
            self.assertEqual(r["delivered"], 3000)
            self.assertEqual(r["sink_messages"], 3000)
            self.assertEqual([n["delivered"] for n in r["cluster"]["per_node"]], [1000] * 3)
            self.assertGreater(r["messages_per_s"], 0)
            # 200 connections for the cluster: 66 a node, with or without Redis
            self.assertLessEqual(r["peak_conns"], 198)
        c = rows["cluster"]["cluster"]
        self.assertTrue(c["redis"])
        self.assertFalse(rows["no-redis"]["cluster"]["redis"])
        self.assertGreaterEqual(c["leases"], 3)    # every node took the shared rate
        self.assertGreater(c["roundtrips"], c["leases"])
        self.assertGreater(c["redis_client_commands"], 0)
        self.assertGreater(c["redis_commands_processed"], c["redis_client_commands"])
        self.assertRegex(out, r"cluster / volley: throughput \d+\.\d\dx")
        self.assertRegex(out, r"cluster: Redis commands a delivered message 0\.\d{5}")
        self.assertRegex(out, r"redis-server \d+\.\d\d CPU-s")
        self.assertIn("target: cluster / one node throughput at least 0.90", out)
        self.assertIn("target: Redis commands a delivered message under 0.01", out)
        self.assertEqual(procs_in(self.run_dir + "/"), [])

    def providers_file(self, name, timeout):
        """A copy of a providers scenario here, its volleyd_conf absolute,
        with this timeout."""
        src = os.path.join(REPO, "bench", "scenarios")
        with open(os.path.join(src, name + ".conf")) as f:
            text = f.read()
        text = re.sub(r'volleyd_conf = "([^"]+)";',
                      lambda m: 'volleyd_conf = "%s";' % os.path.join(src, m.group(1)), text)
        text = re.sub(r'(?m)^timeout = .*$', 'timeout = "%s";' % timeout, text)
        path = os.path.join(self.tmp, name + ".conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_providers_known(self):
        """Three profile sinks, two egress sources, volleyd told the
        profiles' limits: every recipient delivered, none bounced, each
        sink's count per source IP agrees with volley's events; after the
        first back-off volley climbs back without passing the allowed rate.
        1,800 recipients: enough that nine tenths of each destination's are
        in after its profile allows the full rate (the ramp is 15-30 s)."""
        path = self.providers_file("providers-known", "2m")
        res, out = self.run_scenario(path, "--recipients", "1800")
        self.assertIn("all counted: yes", out)
        self.assertEqual(res["delivered"], 1800)
        self.assertEqual(res["bounced"], 0)
        want = {"gmail": (800, 20), "yahoo": (400, 10), "microsoft": (600, 15)}
        for p in res["profiles"]:
            n, rate = want[p["profile"]]
            self.assertEqual(p["recipients"], n)
            self.assertEqual(p["delivered"], n)
            self.assertEqual(p["sink_accepted"], n)
            self.assertEqual(p["bounced"], 0)
            self.assertEqual(p["rate_per_ip"], rate)
            self.assertEqual(sorted(ip["ip"] for ip in p["ips"]), ["127.0.0.41", "127.0.0.42"])
            for ip in p["ips"]:
                self.assertEqual(ip["accepted"], p["sources"][ip["ip"]]["delivered"])
            # The new IPs are deferred at first: a back-off episode per source.
            self.assertGreaterEqual(p["backoff_episodes"], 2)
            self.assertGreater(p["deferred_rate_limited"], 0)
            self.assertAlmostEqual(p["allowed_per_s"], 2 * rate, delta=0.5)
            self.assertGreater(p["ratio"], 0, p["profile"])
            self.assertLessEqual(p["ratio"], 1.1, p["profile"])
            caps = [c for _, c, _ in p["queues_t_cap_suspended"] if c > 0]
            self.assertGreater(max(caps), min(caps), "no climb: %s" % p["profile"])
            self.assertTrue(p["series_t_accepted_allowed_per_ip"])
            self.assertTrue(p["queues_t_cap_suspended"])

    def test_providers_timeout(self):
        """volleyd's shipped limits and no rate: the scenario's timeout ends
        the run (exit 1, not all counted), with what was delivered, the
        rate-limited deferrals and the suspensions reported."""
        path = self.providers_file("providers", "12s")
        p = bench(path, "--recipients", "450", "--out", self.out, timeout=120)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("all counted: NO", p.stdout)
        self.assertIn("timed out after 12s", p.stdout)
        with open(self.out + ".json") as f:
            res = json.load(f)
        self.assertTrue(res["timed_out"])
        self.assertLess(res["delivered"], 450)
        for prof in res["profiles"]:
            self.assertEqual(prof["delivered"], prof["sink_accepted"])
            self.assertGreater(prof["backoff_episodes"], 0)
            self.assertGreater(prof["suspended_part"], 0.5)
        # The sinks and volleyd were stopped; the kept folder goes with the test.
        run_dir = re.search(r"run folder kept: (/tmp/volley-bench\.\S+)", p.stdout).group(1)
        self.addCleanup(subprocess.run, ["rm", "-rf", run_dir])
        self.assertEqual(procs_in(run_dir + "/"), [])

    def test_bad_providers_scenarios(self):
        path = os.path.join(self.tmp, "prov.conf")
        for text, want in [
                ('profiles = [ "hotmail" ];\nvolleyd_conf = "/dev/null";\n',
                 "profiles: each one of"),
                ('profiles = [ "gmail", "gmail" ];\nvolleyd_conf = "/dev/null";\n',
                 "profiles: names a profile twice"),
                ('profiles = [ "gmail" ];\n', "profiles: needs volleyd_conf"),
                ('profiles = [ "gmail" ];\nvolleyd_conf = "nope.conf";\n',
                 "volleyd_conf: no such readable file")]:
            with open(path, "w") as f:
                f.write(text)
            p = bench(path)
            self.assertEqual(p.returncode, 2, text)
            self.assertIn(want, p.stderr)
        with open(path, "w") as f:
            f.write('profiles = [ "gmail" ];\nvolleyd_conf = "/dev/null";\n')
        p = bench(path, "--compare", "postfix")
        self.assertEqual(p.returncode, 2)
        self.assertIn("runs volley alone", p.stderr)


def submit(sink, *args, timeout=60):
    """volley-submit against a sink, --json: (exit status, its result)."""
    p = subprocess.run([SUBMIT, "--connect", sink.route(), "--json", "--max-time", "30",
                        *args], capture_output=True, text=True, timeout=timeout,
                       preexec_fn=util.die_with_parent)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError("volley-submit printed no result: %s %s" % (p.stdout, p.stderr))
    return p.returncode, json.loads(lines[-1])


class SubmitTest(unittest.TestCase):
    """volley-submit, the submission scenario's load tool, against volley-sink
    with --auth (AUTH PLAIN/LOGIN inside TLS only): every message counted
    on both sides and byte-checked in the maildir, a wrong password refused,
    and the submission scenario's clear failure while volleyd has no
    submission listener."""

    def sink(self, *args):
        s = sinkctl.Sink("--auth", "bench:s3cret", *args).start()
        self.addCleanup(s.finish)
        return s

    def check_messages(self, s, n, rcpts=1):
        msgs = s.new_messages(n, wait=5)
        self.assertEqual(len(msgs), n)
        ids = set()
        for m in msgs:
            text = m.data.decode()
            ident = re.search(r"^Message-ID: <([^>]+)>", text, re.M).group(1)
            ids.add(ident)
            self.assertRegex(text, r"^Date: \w{3}, \d\d \w{3} \d{4} ")
            self.assertIn("From: <sender@submit.test>", text)
            self.assertIn("\r\n.line 000003", text)       # unstuffed by the sink
            self.assertEqual(len(m.env["rcpt"]), rcpts)
            self.assertEqual((m.env["auth"], m.env["mail_from"]), ("bench", "sender@submit.test"))
            self.assertTrue(m.env["tls"])
        self.assertEqual(len(ids), n, "Message-IDs are not unique")

    def test_starttls_pipelined(self):
        s = self.sink("--tls")
        rc, r = submit(s, "--user", "bench", "--pass", "s3cret", "--messages", "30",
                       "--clients", "4", "--per-conn", "5", "--rcpts", "2")
        self.assertEqual(rc, 0, r)
        self.assertEqual((r["sent"], r["accepted"], r["errors"], r["lost"]), (30, 30, 0, 0))
        self.assertEqual(r["refused"], {"4xx": 0, "5xx": 0})
        # 30 messages, 5 a connection: 6 connections, each after the first
        # of its client resuming that client's TLS session
        self.assertEqual((r["connections"], r["tls_handshakes"]), (6, 6))
        self.assertGreaterEqual(r["tls_resumed"], 2)
        self.assertGreater(r["msgs_per_s"], 0)
        self.assertGreaterEqual(r["p99_ms"], r["p50_ms"])
        self.assertGreater(r["p50_ms"], 0)
        self.assertEqual(s.final_stats()["messages"], 30)
        self.check_messages(s, 30, rcpts=2)

    def test_implicit_tls_login_unpipelined(self):
        s = self.sink("--implicit-tls", "--disable", "pipelining")
        rc, r = submit(s, "--tls", "implicit", "--auth", "login", "--user", "bench",
                       "--pass", "s3cret", "--messages", "7", "--clients", "2",
                       "--per-conn", "1", "--size", "1000")
        self.assertEqual(rc, 0, r)
        self.assertEqual((r["accepted"], r["connections"]), (7, 7))
        msgs = s.new_messages(7, wait=5)
        self.assertEqual(len(msgs), 7)
        for m in msgs:     # --size: the message as the sink stores it, unstuffed
            self.assertEqual(len(m.data), 1000)

    def test_wrong_password_refused(self):
        s = self.sink("--tls")
        rc, r = submit(s, "--user", "bench", "--pass", "wrong", "--messages", "10",
                       "--clients", "3")
        self.assertEqual(rc, 1)
        self.assertEqual((r["sent"], r["accepted"]), (0, 0))
        self.assertGreaterEqual(r["auth_refused"], 1)
        self.assertIn("535", r["first_error"])
        self.assertEqual(s.final_stats()["messages"], 0)

    def test_refused_recipients_counted(self):
        s = self.sink("--tls", "--reply", "rcpt:*0@*=550 5.1.1 no such user")
        rc, r = submit(s, "--user", "bench", "--pass", "s3cret", "--messages", "20",
                       "--clients", "2")
        self.assertEqual(rc, 1)
        # recipients u..0 (ids 0 and 10) are refused: their messages too
        self.assertEqual((r["accepted"], r["refused"]["5xx"], r["rcpt_refused"]), (18, 2, 2))

    def test_no_server_is_bounded(self):
        port = util.free_port()
        p = subprocess.run([SUBMIT, "--connect", "127.0.0.1:%d" % port, "--messages", "5",
                            "--max-errors", "3", "--json"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1)
        r = json.loads(p.stdout)
        self.assertEqual(r["accepted"], 0)
        self.assertIn("connect", r["first_error"])

    def test_scenario_without_listener(self):
        """volleyd refuses the submission block until the listener exists:
        the run fails and says why (the Postfix half is in test_bench's
        test_submission_postfix)."""
        tmp = util.tempdir("volley-bench-test.", cleanup=self.addCleanup)
        p = bench("submission", "--recipients", "20", "--out", os.path.join(tmp, "r"))
        if p.returncode == 0:    # the listener has landed: the run must count
            with open(os.path.join(tmp, "r.json")) as f:
                v = json.load(f)["results"][0]
            self.assertEqual((v["accepted"], v["delivered"]), (20, 20))
            return
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("volley", p.stdout)
        self.assertRegex(p.stdout, r"volleyd (refused the configuration with a submission "
                                   r"listener|runs but does not listen for submission)")


@unittest.skipUnless(os.geteuid() == 0, "Postfix's master needs root")
class SubmissionPostfixTest(unittest.TestCase):
    def test_submission_postfix(self):
        """Postfix as the MSA: STARTTLS, SASL from a real private Dovecot
        (passwd-file, yescrypt), the durable queue, relayed to the sink;
        volley-submit's accepted count and the sink's agree."""
        tmp = util.tempdir("volley-bench-test.", cleanup=self.addCleanup)
        out = os.path.join(tmp, "r")
        p = bench("submission", "--recipients", "200", "--per-conn", "50", "--compare",
                  "postfix", "--out", out)
        with open(out + ".json") as f:
            res = json.load(f)
        self.assertTrue(res["settings"]["submission"])
        self.assertEqual(res["settings"]["password_hash"], "yescrypt")
        pf = res["results"][1]
        self.assertEqual(pf["peer"], "postfix")
        self.assertTrue(pf["ran"] and pf["ok"], pf["note"])
        self.assertEqual((pf["accepted"], pf["delivered"], pf["sink_messages"]), (200, 200, 200))
        self.assertGreater(pf["accepted_per_s"], 0)
        self.assertGreater(pf["cpu_s"], 0)
        self.assertRegex(p.stdout, r"postfix\s+200\s+0\s+\d+\s+[0-9.]+\s+\d+")
        self.assertEqual(procs_in(run_dir_of(p) + "/"), [])


if __name__ == "__main__":
    unittest.main()
