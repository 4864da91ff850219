"""/metrics for Prometheus and Grafana (docs/metrics.md): after real
deliveries (bulk, transactional, bounced, through an egress source, to a
sink that holds every reply 30 ms), promtool accepts every line; the
histograms are cumulative and put the sink's delay where it belongs;
contrib/prometheus/prometheus.yml passes promtool and a real Prometheus
scrapes volleyd's TCP listener with it (bearer token from a file); every
volley_* name the Grafana dashboard queries is in the output.

promtool and prometheus come from Debian's prometheus package
(scripts/install-deps.sh); without them those tests are skipped, saying so."""

import json
import os
import re
import shutil
import subprocess
import time
import unittest
import urllib.parse
import urllib.request

from . import util
from .daemon import Volleyd, simple_job
from .sinkctl import Sink

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
CONTRIB = os.path.join(util.REPO, "contrib")
NEED_PROMTOOL = "promtool missing (Debian's prometheus package: scripts/install-deps.sh)"
LATENCY = 0.030   # the sink's hold on every reply


def conf(sink, extra=""):
    return ('egress = ( { name = "ip1"; address = "127.0.0.2"; ehlo = "mta1.example.test"; },\n'
            '           { name = "ip2"; address = "127.0.0.3"; ehlo = "mta2.example.test"; } );\n'
            'domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
            'defaults = { retry = [ "1s" ]; };\n%s' % (sink.route(), extra))


def samples(text):
    """{(name, frozenset(labels)): value} of the text format's samples."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        assert (m.group(1), labels) not in out, "a series twice: " + line
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def buckets(s, name, **labels):
    """[(le, cumulative count)] of one histogram series, in output order."""
    want = set(labels.items())
    rows = [(dict(k[1])["le"], v) for k, v in s.items()
            if k[0] == name + "_bucket" and want <= set(k[1])]
    return sorted(rows, key=lambda r: float(r[0]))


class Scraped(unittest.TestCase):
    """One volleyd, its deliveries done, scraped once for the class."""

    @classmethod
    def setUpClass(cls):
        cls.sink = Sink("--tls", "--latency", "%dms" % (LATENCY * 1000),
                        "--reply", "rcpt:*@bad.test=550 5.1.1 no such user").start()
        cls.addClassCleanup(cls.sink.stop)
        cls.port = util.free_port()
        # the webhook's and the unsubscribe listener's families too (the
        # webhook's receiver is a closed port: it retries, and counts)
        parts = ('api = { listen = "127.0.0.1:%d"; token = "prom-s3cret"; };\n'
                 'webhooks = ( { name = "h1"; url = "http://127.0.0.1:%d/h"; secret = '
                 '"s3cr3t-0123456789abcdef0123456789abcdef"; } );\n'
                 'unsubscribe = { listen = [ "127.0.0.1:%d" ]; base_url = '
                 '"https://news.example.com/unsubscribe"; secret = '
                 '"s3cr3t-0123456789abcdef0123456789abcdef"; };\n'
                 % (cls.port, util.free_port(), util.free_port()))
        cls.d = Volleyd(config=conf(cls.sink, parts))
        cls.addClassCleanup(cls.d.cleanup)
        cls.d.start()
        jobs = [cls.d.submit(simple_job(6, domain="d.test")).json()["id"],
                cls.d.submit(simple_job(3, domain="t.test", priority="transactional")).json()["id"],
                cls.d.submit(simple_job(2, domain="bad.test")).json()["id"]]
        for jid in jobs:
            ok = util.wait_until(lambda: cls.d.request("GET", "/v1/jobs/" + jid).json()["done"], 30)
            assert ok, "job %s not done in 30 s" % jid
        cls.text = cls.d.request("GET", "/metrics").body.decode()
        cls.s = samples(cls.text)


class Promtool(Scraped):
    @unittest.skipUnless(PROMTOOL, NEED_PROMTOOL)
    def test_promtool_accepts_every_metric(self):
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=self.text.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, b""), self.text[:2000])

    @unittest.skipUnless(PROMTOOL, NEED_PROMTOOL)
    def test_promtool_would_complain(self):
        """The check above can fail: promtool flags a counter without _total."""
        bad = self.text + "# HELP volley_x Bad.\n# TYPE volley_x counter\nvolley_x 1\n"
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=bad.encode(),
                           capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"volley_x", p.stdout + p.stderr)

    def test_histograms_are_cumulative_and_consistent(self):
        series = [(k[0][:-len("_count")], dict(k[1])) for k in self.s
                  if k[0].endswith("_count") and k[0].startswith("volley_")]
        self.assertEqual(sorted({n for n, _ in series}),
                         ["volley_delivery_latency_seconds", "volley_site_response_seconds"])
        for name, labels in series:
            rows = buckets(self.s, name, **labels)
            self.assertEqual(rows[-1][0], "+Inf", (name, rows))
            counts = [c for _, c in rows]
            self.assertEqual(counts, sorted(counts), (name, rows))
            self.assertEqual(counts[-1], self.s[(name + "_count", frozenset(labels.items()))])

    def test_latency_of_the_delivered(self):
        bulk = dict(buckets(self.s, "volley_delivery_latency_seconds", kind="bulk"))
        trans = dict(buckets(self.s, "volley_delivery_latency_seconds", kind="transactional"))
        self.assertEqual(bulk["+Inf"], 6)     # the bounced two are not here
        self.assertEqual(trans["+Inf"], 3)
        # a session takes several held replies: nothing under 25 ms
        self.assertEqual(bulk["0.025"], 0)
        self.assertEqual(trans["0.025"], 0)
        self.assertEqual(bulk["30"], 6)
        total = self.s[("volley_delivery_latency_seconds_sum", frozenset({("kind", "bulk")}))]
        self.assertGreater(total, 6 * 4 * LATENCY)
        self.assertLess(total, 6 * 30)

    def test_site_response_time_to_the_dot(self):
        site = self.sink.route()
        rows = dict(buckets(self.s, "volley_site_response_seconds", site=site, stage="dot"))
        # the sink holds the reply 30 ms: between 25 ms and 1 s (a loaded machine)
        self.assertEqual(rows["0.025"], 0, rows)
        self.assertGreaterEqual(rows["1"], 2, rows)
        self.assertEqual(rows["1"], rows["+Inf"], rows)
        key = ("volley_site_response_seconds_sum", frozenset({("site", site), ("stage", "dot")}))
        self.assertGreaterEqual(self.s[key], rows["+Inf"] * LATENCY)

    def test_the_configured_parts_are_scraped_too(self):
        names = {k[0] for k in self.s}
        self.assertIn("volley_webhook_requests_total", names)
        self.assertIn("volley_unsubscribe_requests_total", names)

    def test_site_gauges_per_source(self):
        srcs = {dict(k[1]).get("source") for k in self.s if k[0] == "volley_site_queued"}
        self.assertEqual(srcs, {"ip1", "ip2"})

    def test_tls_counts(self):
        tls = {dict(k[1])["tls"]: v for k, v in self.s.items()
               if k[0] == "volley_tls_messages_total"}
        self.assertEqual(set(tls), {"dane", "mta-sts", "verified", "encrypted", "none", "failed"})
        # the sink's certificate is self-signed and the policy encrypt
        self.assertGreaterEqual(tls["encrypted"], 3)
        self.assertEqual(tls["dane"] + tls["verified"] + tls["none"] + tls["failed"], 0)


class ScrapeConfig(Scraped):
    def config_for(self, dirname, interval=None):
        """contrib's prometheus.yml with the token file and target of this test."""
        token = os.path.join(dirname, "volley.token")
        with open(token, "w") as f:
            f.write("prom-s3cret\n")
        with open(os.path.join(CONTRIB, "prometheus", "prometheus.yml")) as f:
            text = f.read()
        self.assertIn("credentials_file: /etc/prometheus/volley.token", text)
        text = text.replace("/etc/prometheus/volley.token", token)
        text = text.replace('"127.0.0.1:8025"', '"127.0.0.1:%d"' % self.port)
        if interval:
            text = text.replace("scrape_interval: 15s", "scrape_interval: %s" % interval)
        path = os.path.join(dirname, "prometheus.yml")
        with open(path, "w") as f:
            f.write(text)
        return path

    @unittest.skipUnless(PROMTOOL, NEED_PROMTOOL)
    def test_promtool_checks_the_example(self):
        path = self.config_for(util.tempdir(cleanup=self.addCleanup))
        p = subprocess.run([PROMTOOL, "check", "config", path], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(b"SUCCESS", p.stdout + p.stderr)

    @unittest.skipUnless(PROMETHEUS, "prometheus missing (Debian's prometheus package)")
    def test_prometheus_scrapes_volleyd_with_the_token(self):
        tmp = util.tempdir(cleanup=self.addCleanup)
        web = util.free_port()
        p = util.start([PROMETHEUS, "--config.file", self.config_for(tmp, "1s"),
                        "--storage.tsdb.path", os.path.join(tmp, "data"),
                        "--web.listen-address", "127.0.0.1:%d" % web],
                       stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "wb"))
        self.addCleanup(util.stop, p)
        self.assertTrue(util.wait_port("127.0.0.1", web, 30, proc=p), "prometheus did not start")

        def query(expr):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (web, urllib.parse.quote(expr))
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.load(r)["data"]["result"]
            except OSError:
                return None

        up = util.wait_until(lambda: query('up{job="volley"} == 1'), 30, 0.5, proc=p)
        self.assertTrue(up, "no successful scrape in 30 s")
        self.assertEqual(up[0]["metric"]["node"], "mx1")
        q = util.wait_until(lambda: query('histogram_quantile(0.5, sum by (le) '
                                          '(volley_site_response_seconds_bucket))'), 10, 0.5)
        self.assertTrue(q)
        self.assertGreater(float(q[0]["value"][1]), 0.025)
        # volleyd counted the scrapes as authorised requests: none refused
        self.assertEqual(self.d.request("GET", "/v1/stats").json()["api"]["unauthorized"], 0)


class Dashboard(Scraped):
    def test_every_query_uses_metrics_volleyd_serves(self):
        with open(os.path.join(CONTRIB, "grafana", "volley.json")) as f:
            dash = json.load(f)
        names = {k[0] for k in self.s}
        var = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
        self.assertEqual([v["query"] for v in var], ["prometheus"])
        exprs, panels = [], [p for p in dash["panels"] if p["type"] != "row"]
        for p in panels:
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            exprs += [t["expr"] for t in p["targets"]]
        self.assertGreaterEqual(len(panels), 20)
        used = set()
        for e in exprs:
            used |= set(re.findall(r"\bvolley_[a-z0-9_]+", e))
        self.assertEqual(sorted(used - names), [])
        # what the issue asks the dashboard to show
        for want in ("volley_jobs", "volley_recipients", "volley_outcomes_total",
                     "volley_site_queued", "volley_site_backoff", "volley_tls_messages_total",
                     "volley_delivery_latency_seconds_bucket",
                     "volley_site_response_seconds_bucket"):
            self.assertIn(want, used)
        self.assertIn("heatmap", {p["type"] for p in panels})


if __name__ == "__main__":
    unittest.main()
