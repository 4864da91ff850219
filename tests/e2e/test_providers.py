"""Provider rules end to end: an MX rollup (two domains whose MX hosts a
provider's `mx` globs match share one site and its limits, a third domain
keeps its own), and reply rules mapped to actions against volley-sink's
scripted replies from two loopback egress sources: suspend-source (the
blocked source's recipients leave from the other one, nothing bounces),
suspend-pool, bounce (a 4xx made final) and defer (a "rate-limited" reply
without the back-off). Every wait is bounded."""

import collections
import os
import subprocess
import time

from .daemon import VOLLEY, VOLLEYD, VolleydTest, simple_job
from .sinkctl import Sink
from . import dnsctl

EGRESS = ('egress = ( { name = "ip1"; address = "127.0.0.2"; ehlo = "mta1.example.test"; },\n'
          '           { name = "ip2"; address = "127.0.0.3"; ehlo = "mta2.example.test"; } );\n')


def peer_ip(env):
    return env["peer"].rsplit(":", 1)[0]


class Rollup(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.ub = dnsctl.Unbound({
            "mail.test": ["mail.test. 60 IN MX 10 mx1.bigmail.test.",
                          "mx1.bigmail.test. 60 IN A 127.0.0.4"],
            "hosted.test": ["hosted.test. 60 IN MX 10 mx2.bigmail.test.",
                            "mx2.bigmail.test. 60 IN A 127.0.0.4"],
            "other.test": ["other.test. 60 IN MX 10 mx.other.test.",
                           "mx.other.test. 60 IN A 127.0.0.4"]}).start()
        cls.sink = Sink("--tls", hosts=("127.0.0.4",)).start()

    @classmethod
    def tearDownClass(cls):
        cls.sink.stop()
        cls.ub.stop()

    def test_domains_of_a_provider_share_one_site(self):
        d = self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; allow_private = true; timeout_ms = 500; };\n'
            'defaults = { port = %d; tls = "encrypt"; retry = [ "1s" ]; };\n'
            'providers = ( { name = "bigmail"; mx = [ "*.bigmail.test" ]; max_connections = 3;\n'
            '                max_messages_per_connection = 7; } );\n'
            % (self.ub.server, self.sink.port)))
        jobs = [d.submit(simple_job(n, domain=dom)).json()["id"]
                for n, dom in ((30, "mail.test"), (20, "hosted.test"), (10, "other.test"))]
        for jid in jobs:
            self.assertEqual(self.wait_done(d, jid)["counts"]["bounced"], 0)
        self.assertEqual(len(self.sink.new_messages(60, wait=10)), 60)
        rows = d.request("GET", "/v1/queues").json()["queues"]
        big = [q for q in rows if q["provider"] == "bigmail"]
        self.assertEqual(len(big), 1, rows)
        self.assertEqual(big[0]["site"], "provider:bigmail")
        self.assertEqual(big[0]["max_connections"], 3)
        self.assertEqual(big[0]["totals"]["delivered"], 50, "both domains, one site")
        other = [q for q in rows if q["site"].startswith("mx:mx.other.test")]
        self.assertEqual(len(other), 1, rows)
        self.assertIsNone(other[0]["provider"])
        self.assertEqual(other[0]["totals"]["delivered"], 10)
        self.assertEqual(other[0]["max_connections"], 50)


class Replies(VolleydTest):
    def sink(self, *args):
        s = Sink("--tls", *args).start()
        self.addCleanup(s.stop)
        return s

    def daemon(self, sink, replies, extra=""):
        return self.start_daemon(config=EGRESS + (
            'domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
            'defaults = { retry = [ "1s" ]; };\n'
            'providers = ( { name = "bigmail"; domains = [ "big.test" ];\n'
            '                replies = ( %s ); } );\n%s' % (sink.route(), replies, extra)))

    def rows(self, d, sink):
        return {q["source"]: q for q in d.request("GET", "/v1/queues").json()["queues"]
                if q["provider"] == "bigmail"}

    def test_suspend_source_sends_through_the_other(self):
        s = self.sink("--reply", "[127.0.0.3]rcpt:*=550 5.7.1 [BM01] your address is blocked")
        d = self.daemon(s, '{ code = "550"; text = "\\\\[BM0[0-9]\\\\]"; '
                           'action = "suspend-source"; duration = "1h"; }')
        jid = d.submit(simple_job(40, domain="big.test")).json()["id"]
        j = self.wait_done(d, jid, timeout=60)
        self.assertEqual(j["counts"]["delivered"], 40, j)
        self.assertEqual(j["counts"]["bounced"], 0, "a 550 a provider rule retries")
        self.assertEqual({peer_ip(m.env) for m in s.new_messages(40, wait=10)}, {"127.0.0.2"})
        r = self.rows(d, s)
        self.assertEqual(r["ip1"]["totals"]["delivered"], 40)
        bo = r["ip2"]["backoff"]
        self.assertTrue(bo["suspended"], r)
        self.assertIn("provider bigmail says suspend-source", bo["reason"])
        self.assertIn("[BM01]", bo["reason"])
        self.assertIsNone(r["ip1"]["backoff"])
        ev = d.request("GET", "/v1/events?job=" + jid).lines()
        tf = [e for e in ev if e["type"] == "TransientFailure"]
        self.assertTrue(tf)
        self.assertEqual({e["source_address"] for e in tf}, {"127.0.0.3"})
        self.assertEqual({e["response"]["code"] for e in tf}, {550})

    def test_suspend_pool_stops_every_source(self):
        s = self.sink("--reply", "rcpt:*=421 4.7.0 [BM02] all of you, later")
        d = self.daemon(s, '{ code = "421"; text = "BM02"; action = "suspend-pool"; '
                           'duration = "1h"; }')
        jid = d.submit(simple_job(10, domain="big.test")).json()["id"]

        def both():
            r = self.rows(d, s)
            return r if len(r) == 2 and all((q["backoff"] or {}).get("suspended")
                                            for q in r.values()) else None
        r = self.wait_for("both sources suspended", both)
        for q in r.values():
            self.assertIn("suspend-pool", q["backoff"]["reason"])
        j = d.request("GET", "/v1/jobs/" + jid).json()
        self.assertEqual(j["counts"]["delivered"], 0)
        self.assertEqual(j["counts"]["bounced"], 0)
        self.assertEqual(j["state"], "active")

    def test_bounce_makes_a_4xx_final(self):
        s = self.sink("--reply", "rcpt:*=451 4.7.9 no such luck here (BM03)")
        d = self.daemon(s, '{ code = "45*"; text = "BM03"; action = "bounce"; }')
        jid = d.submit(simple_job(6, domain="big.test")).json()["id"]
        j = self.wait_done(d, jid, timeout=30)
        self.assertEqual(j["counts"]["bounced"], 6, j)
        ev = [e for e in d.request("GET", "/v1/events?job=" + jid).lines()
              if e["type"] == "Bounce"]
        self.assertEqual([e["response"]["code"] for e in ev], [451] * 6)
        # another domain at the same sink, not the provider's: 451 is a deferral
        jid = d.submit(simple_job(2, domain="small.test")).json()["id"]
        self.wait_for("a deferral", lambda: [
            e for e in d.request("GET", "/v1/events?job=" + jid).lines()
            if e["type"] == "TransientFailure"])
        self.assertEqual(d.request("GET", "/v1/jobs/" + jid).json()["counts"]["bounced"], 0)

    def test_defer_overrides_the_rate_limited_back_off(self):
        # the bounce rules class this rate-limited (a back-off); the
        # provider's rule says it is one recipient's matter
        s = self.sink("--reply", "rcpt:user0@big.test=421 4.7.28 unusual rate of unsolicited mail")
        d = self.daemon(s, '{ code = "421"; enhanced = "4.7.28"; action = "defer"; }')
        jid = d.submit(simple_job(20, domain="big.test")).json()["id"]
        self.wait_for("a deferral", lambda: [
            e for e in d.request("GET", "/v1/events?job=" + jid).lines()
            if e["type"] == "TransientFailure"])
        self.wait_for("19 delivered", lambda: d.request("GET", "/v1/jobs/" + jid).json()
                      ["counts"]["delivered"] == 19)
        r = self.rows(d, s)
        self.assertTrue(all(q["backoff"] is None for q in r.values()), r)
        got = collections.Counter(m.env["rcpt"][0] for m in s.new_messages(19, wait=5))
        self.assertNotIn("user0@big.test", got)


class WarmUp(VolleydTest):
    """ip1 is new (a warm-up table), ip2 is not; both in the default pool."""

    def sink(self):
        s = Sink("--tls").start()
        self.addCleanup(s.stop)
        return s

    def conf(self, sink, warm, pool=""):
        return ('egress = ( { name = "ip1"; address = "127.0.0.2"; ehlo = "mta1.example.test";\n'
                '             %s },\n'
                '           { name = "ip2"; address = "127.0.0.3"; ehlo = "mta2.example.test"; } );\n'
                '%s'
                'domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
                'defaults = { retry = [ "1s" ]; };\n'
                'providers = ( { name = "bigmail"; domains = [ "big.test" ]; } );\n'
                % (warm, pool, sink.route()))

    def row(self, d, src, provider="bigmail"):
        for q in d.request("GET", "/v1/queues").json()["queues"]:
            if q["source"] == src and q["provider"] == provider:
                return q
        return None

    def test_over_the_cap_spills_to_the_other_source_and_persists(self):
        s = self.sink()
        d = self.start_daemon(config=self.conf(s, 'warmup = ( [ 1, 5 ], [ 2, 10 ], [ 3, 0 ] );'))
        jid = d.submit(simple_job(40, domain="big.test")).json()["id"]
        j = self.wait_done(d, jid, timeout=60)
        self.assertEqual(j["counts"]["delivered"], 40, j)
        by_peer = collections.Counter(peer_ip(m.env) for m in s.new_messages(40, wait=10))
        self.assertEqual(by_peer, {"127.0.0.2": 5, "127.0.0.3": 35})
        w = self.row(d, "ip1")["warmup"]
        self.assertEqual((w["schedule"], w["day"], w["cap"], w["sent"], w["provider"]),
                         ("custom", 1, 5, 5, "bigmail"))
        self.assertIsNotNone(w["capped_until"])
        self.assertIsNone(self.row(d, "ip2")["warmup"])
        # another provider's domain has its own count for the day ("*": no provider)
        jid = d.submit(simple_job(10, domain="small.test")).json()["id"]
        self.wait_done(d, jid, timeout=30)
        self.assertEqual(self.row(d, "ip1", None)["warmup"]["sent"], 5)
        by_peer = collections.Counter(peer_ip(m.env) for m in s.new_messages(10, wait=10))
        self.assertEqual(by_peer, {"127.0.0.2": 5, "127.0.0.3": 5})
        st = d.request("GET", "/v1/stats").json()
        self.assertEqual(st["scheduler"]["delivery"]["sources"]["ip1"]["warmup"]["sent"], {"*": 5, "bigmail": 5})
        m = d.request("GET", "/metrics").body.decode()
        self.assertIn('volley_warmup_sent{source="ip1",provider="bigmail"} 5', m)
        self.assertIn('volley_warmup_cap{source="ip1"} 5', m)
        # the count outlives a restart (today's), as does day 1
        d.stop()
        self.assertTrue(os.path.exists(os.path.join(d.data_dir, "warmup.json")))
        d.start()
        jid = d.submit(simple_job(10, domain="big.test")).json()["id"]
        self.wait_done(d, jid, timeout=30)
        self.assertEqual({peer_ip(m.env) for m in s.new_messages(10, wait=10)}, {"127.0.0.3"})

    def test_overflow_wait_holds_the_source_share(self):
        s = self.sink()
        d = self.start_daemon(config=self.conf(
            s, 'warmup = ( [ 1, 4 ] );',
            'pools = ( { name = "default"; sources = [ "ip1", "ip2" ]; overflow = "wait"; } );\n'))
        jid = d.submit(simple_job(20, domain="big.test")).json()["id"]
        self.wait_for("ip2's ten", lambda: (self.row(d, "ip2") or {}).get(
            "totals", {}).get("delivered") == 10)
        # capped when its fourth goes to the engine; delivered a moment later
        r = self.wait_for("ip1 capped, its four delivered", lambda: (
            lambda q: q if q.get("warmup") and q["warmup"]["capped_until"] and
            q["totals"]["delivered"] == 4 else None)(self.row(d, "ip1") or {}))
        self.assertEqual(r["queued"], 6, "its share waits for tomorrow")
        self.assertEqual(d.request("GET", "/v1/jobs/" + jid).json()["counts"]["delivered"], 14)
        out = subprocess.run([VOLLEY, "--socket", d.sock, "queues"], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out)
        self.assertIn("WARMUP", out.stdout)
        self.assertIn("d1 4/4 capped", out.stdout)

    def test_warmup_start_sets_the_day_and_standard_schedule(self):
        s = self.sink()
        yday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
        d = self.start_daemon(config=self.conf(
            s, 'warmup = ( [ 1, 2 ], [ 2, 3 ] ); warmup_start = "%s";' % yday))
        jid = d.submit(simple_job(12, domain="big.test")).json()["id"]
        self.wait_done(d, jid, timeout=30)
        w = self.row(d, "ip1")["warmup"]
        self.assertEqual((w["day"], w["cap"], w["sent"]), (2, 3, 3))
        out = subprocess.run([VOLLEYD, "--check-config", "--config",
                              os.path.join(d.data_dir, "volley.conf")],
                             capture_output=True, text=True, timeout=10)
        self.assertIn('warmup = ( [ 1, 2 ], [ 2, 3 ] ); warmup_start = "%s";' % yday, out.stdout)

    def test_bad_warmup_is_refused(self):
        s = self.sink()
        for warm, want in (('warmup = "gentle";', 'egress[0].warmup: expected "standard"'),
                           ('warmup = ( [ 2, 5 ] );', "the first step is day 1"),
                           ('warmup = ( [ 1, 5 ], [ 1, 6 ] );', "increasing day"),
                           ('warmup = "standard"; warmup_start = "yesterday";',
                            "warmup_start: expected a date")):
            out = subprocess.run([VOLLEYD, "--check-config", "--config", "/dev/stdin"],
                                 input=self.conf(s, warm), capture_output=True, text=True,
                                 timeout=10)
            self.assertNotEqual(out.returncode, 0, warm)
            self.assertIn(want, out.stderr, warm)
