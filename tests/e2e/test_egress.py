"""Egress sources and pools end to end: two loopback source addresses
(127.0.0.2 and 127.0.0.3 bind without setup) with their own EHLO names, a
pool that weighs them 3:1, a sink that records each message's peer address
and EHLO name, and a sink that throttles one source only ([CLIENT] reply
rules) while the other keeps delivering. Every wait is bounded."""

import collections
import os
import subprocess
import time

from .daemon import VOLLEY, VOLLEYD, VolleydTest, simple_job
from .sinkctl import Sink
from . import dnsctl, util

EGRESS = ('egress = ( { name = "ip1"; address = "127.0.0.2"; ehlo = "mta1.example.test"; },\n'
          '           { name = "ip2"; address = "127.0.0.3"; ehlo = "mta2.example.test"; } );\n')
EHLO = {"127.0.0.2": "mta1.example.test", "127.0.0.3": "mta2.example.test"}


def conf(sink, rule_extra="", top=EGRESS):
    return (top + 'domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; %s } );\n'
            'defaults = { retry = [ "1s" ]; };\n' % (sink.route(), rule_extra))


def peer_ip(env):
    return env["peer"].rsplit(":", 1)[0]


class Base(VolleydTest):
    def sink(self, *args):
        s = Sink("--tls", *args).start()
        self.addCleanup(s.stop)
        return s

    def queues(self, d):
        return d.request("GET", "/v1/queues").json()["queues"]


class Pools(Base):
    def test_weights_split_traffic_and_each_source_has_its_ehlo(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s, 'pool = "news";') +
                              'pools = ( { name = "news"; sources = [ "ip1", "ip2" ]; '
                              'weights = [ 3, 1 ]; } );\n')
        jid = d.submit(simple_job(400, domain="d.test")).json()["id"]
        j = self.wait_done(d, jid, timeout=60)
        self.assertEqual(j["counts"]["delivered"], 400, j)
        msgs = s.new_messages(400, wait=10)
        self.assertEqual(len(msgs), 400)
        by_peer = collections.Counter(peer_ip(m.env) for m in msgs)
        self.assertEqual(set(by_peer), {"127.0.0.2", "127.0.0.3"}, by_peer)
        self.assertTrue(280 <= by_peer["127.0.0.2"] <= 320, by_peer)
        self.assertTrue(80 <= by_peer["127.0.0.3"] <= 120, by_peer)
        for m in msgs:     # each connection's EHLO is its source's name
            self.assertEqual(m.env["helo"], EHLO[peer_ip(m.env)], m.env)
        ev = [e for e in d.request("GET", "/v1/events?job=" + jid).lines()
              if e["type"] == "Delivery"]
        self.assertEqual(len(ev), 400)
        # each recipient left from the source its event names
        peer_of = {m.env["rcpt"][0]: peer_ip(m.env) for m in msgs}
        self.assertEqual({e["recipient"]: e["source_address"] for e in ev}, peer_of)
        # site x source: two rows for the one route
        rows = [q for q in self.queues(d) if q["site"] == s.route()]
        self.assertEqual(sorted((q["source"], q["source_address"]) for q in rows),
                         [("ip1", "127.0.0.2"), ("ip2", "127.0.0.3")])
        self.assertEqual(sorted(q["totals"]["delivered"] for q in rows),
                         sorted(by_peer.values()))
        out = subprocess.run([VOLLEY, "--socket", d.sock, "queues"], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out)
        self.assertIn("SOURCE", out.stdout)
        self.assertIn("ip1", out.stdout)
        self.assertIn("ip2", out.stdout)
        m = d.request("GET", "/metrics").body.decode()
        self.assertIn('volley_source_delivered_total{source="ip1"} %d' % by_peer["127.0.0.2"], m)
        self.assertIn('volley_source_delivered_total{source="ip2"} %d' % by_peer["127.0.0.3"], m)

    def test_default_pool_is_every_source_and_job_pool_wins(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s) +
                              'pools = ( { name = "only2"; sources = [ "ip2" ]; } );\n')
        # no pool anywhere: the implicit default, every source, equal weights
        jid = d.submit(simple_job(40, domain="d.test")).json()["id"]
        self.assertEqual(self.wait_done(d, jid)["counts"]["delivered"], 40)
        by_peer = collections.Counter(peer_ip(m.env) for m in s.new_messages(40, wait=10))
        self.assertEqual(set(by_peer), {"127.0.0.2", "127.0.0.3"}, by_peer)
        # 20 each, unless a transient failure's retry was placed again
        self.assertLessEqual(abs(by_peer["127.0.0.2"] - by_peer["127.0.0.3"]), 4, by_peer)
        # the job's pool
        jid = d.submit(simple_job(10, domain="d.test", pool="only2")).json()["id"]
        self.assertEqual(self.wait_done(d, jid)["counts"]["delivered"], 10)
        by_peer = collections.Counter(peer_ip(m.env) for m in s.new_messages(10, wait=10))
        self.assertEqual(by_peer, {"127.0.0.3": 10})

    def test_job_pool_wins_over_the_rule(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s, 'pool = "p1";') +
                              'pools = ( { name = "p1"; sources = [ "ip1" ]; },\n'
                              '          { name = "p2"; sources = [ "ip2" ]; } );\n')
        jid = d.submit(simple_job(6, domain="d.test")).json()["id"]
        self.wait_done(d, jid)
        self.assertEqual({peer_ip(m.env) for m in s.new_messages(6, wait=10)}, {"127.0.0.2"})
        jid = d.submit(simple_job(6, domain="d.test", pool="p2")).json()["id"]
        self.wait_done(d, jid)
        self.assertEqual({peer_ip(m.env) for m in s.new_messages(6, wait=10)}, {"127.0.0.3"})

    def test_unknown_pool_in_a_job_is_refused(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s))
        self.assertError(d.submit(simple_job(2, domain="d.test", pool="nope")),
                         400, "invalid_field", "pool")
        self.assertError(d.submit(simple_job(2, domain="d.test", pool=3)), 400, None, "pool")

    def test_without_egress_no_source(self):
        s = self.sink()
        d = self.start_daemon(config=conf(s, top=""))
        jid = d.submit(simple_job(3, domain="d.test")).json()["id"]
        self.wait_done(d, jid)
        ev = [e for e in d.request("GET", "/v1/events?job=" + jid).lines()
              if e["type"] == "Delivery"]
        self.assertEqual([e["source_address"] for e in ev], [None] * 3)
        rows = [q for q in self.queues(d) if q["site"] == s.route()]
        self.assertEqual([(q["source"], q["source_address"]) for q in rows], [(None, None)])
        self.assertEqual({m.env["peer"].split(":")[0] for m in s.new_messages(3, wait=10)},
                         {"127.0.0.1"})


class Throttle(Base):
    def test_one_source_backs_off_the_other_delivers(self):
        s = self.sink("--reply", "[127.0.0.3]rcpt:*=421 4.7.28 Our system has detected an "
                      "unusual rate of unsolicited mail originating from your IP address")
        d = self.start_daemon(config=conf(s))
        jid = d.submit(simple_job(40, domain="d.test")).json()["id"]

        def rows():
            r = {q["source"]: q for q in self.queues(d) if q["site"] == s.route()}
            return r if r.get("ip2", {}).get("backoff") else None
        r = self.wait_for("ip2's back-off", rows)
        self.assertIn("4.7.28", r["ip2"]["backoff"]["reason"])
        self.assertTrue(r["ip2"]["backoff"]["suspended"])
        # what ip2 could not send goes out through ip1 at its retry
        j = self.wait_done(d, jid, timeout=30)
        self.assertEqual(j["counts"]["delivered"], 40, j)
        msgs = s.new_messages(40, wait=10)
        self.assertEqual({peer_ip(m.env) for m in msgs}, {"127.0.0.2"})
        r = {q["source"]: q for q in self.queues(d) if q["site"] == s.route()}
        self.assertIsNone(r["ip1"]["backoff"])
        self.assertEqual(r["ip1"]["totals"]["delivered"], 40)
        self.assertEqual(r["ip2"]["totals"]["delivered"], 0)
        self.assertTrue(r["ip2"]["backoff"]["suspended"])
        ev = d.request("GET", "/v1/events?job=" + jid).lines()
        tf = [e for e in ev if e["type"] == "TransientFailure"]
        self.assertTrue(tf)
        self.assertEqual({e["source_address"] for e in tf}, {"127.0.0.3"})
        self.assertEqual({e["source_address"] for e in ev if e["type"] == "Delivery"},
                         {"127.0.0.2"})


class MxSites(VolleydTest):
    """An MX destination: every source's site follows the hosts' new
    addresses (one answer refreshes them all)."""

    @classmethod
    def setUpClass(cls):
        cls.ub = dnsctl.Unbound({"move.test": ["move.test. 1 IN MX 10 mv.move.test.",
                                               "mv.move.test. 1 IN A 127.0.0.4"]}).start()
        cls.s1 = Sink("--tls", hosts=("127.0.0.4",)).start()
        cls.s2 = Sink("--tls", hosts=("127.0.0.5",), port=cls.s1.port).start()

    @classmethod
    def tearDownClass(cls):
        for x in (cls.s2, cls.s1, cls.ub):
            x.stop()

    def test_every_source_follows_the_hosts(self):
        d = self.start_daemon(config=EGRESS + (
            'dns = { servers = [ "%s" ]; allow_private = true; timeout_ms = 500; min_ttl = 1; };\n'
            'defaults = { port = %d; tls = "encrypt"; retry = [ "1s" ]; };\n'
            % (self.ub.server, self.s1.port)))
        self.wait_done(d, d.submit(simple_job(20, domain="move.test")).json()["id"])
        by_peer = collections.Counter(peer_ip(m.env) for m in self.s1.new_messages(20, wait=5))
        self.assertEqual(set(by_peer), {"127.0.0.2", "127.0.0.3"}, by_peer)
        self.assertEqual(sum(by_peer.values()), 20)
        ctl = [dnsctl.UNBOUND_CONTROL, "-c", self.ub.conf]
        subprocess.run(ctl + ["local_data_remove", "mv.move.test."], check=True,
                       capture_output=True, timeout=10)
        subprocess.run(ctl + ["local_data", "mv.move.test. 1 IN A 127.0.0.5"], check=True,
                       capture_output=True, timeout=10)
        time.sleep(2.5)                               # the old answer's TTL passes
        self.wait_done(d, d.submit(simple_job(20, domain="move.test")).json()["id"])
        by_peer = collections.Counter(peer_ip(m.env) for m in self.s2.new_messages(20, wait=5))
        self.assertEqual(set(by_peer), {"127.0.0.2", "127.0.0.3"}, by_peer)
        self.assertEqual(sum(by_peer.values()), 20)
        self.assertEqual(self.s1.new_messages(0, wait=0.2), [])
        rows = [q for q in d.request("GET", "/v1/queues").json()["queues"]
                if q["source"] and q["hosts"] and q["hosts"][0]["name"] == "mv.move.test"]
        self.assertEqual(sorted(q["source"] for q in rows), ["ip1", "ip2"])
        self.assertEqual({q["hosts"][0]["address"].split(":")[0] for q in rows}, {"127.0.0.5"})


class Config(VolleydTest):
    def check(self, text):
        path = os.path.join(util.tempdir("volley-conf-", cleanup=self.addCleanup), "volley.conf")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([VOLLEYD, "--check-config", "--config", path],
                              capture_output=True, text=True, timeout=10)

    def refused(self, text, *words):
        p = self.check(text)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        for w in words:
            self.assertIn(w, p.stderr)

    def test_errors_name_the_key(self):
        self.refused(EGRESS + 'pools = ( { name = "n"; sources = [ "ip1", "ip3" ]; } );',
                     "pools[0].sources[1]", "names no egress source")
        self.refused(EGRESS + 'pools = ( { name = "n"; sources = [ "ip1", "ip2" ]; '
                     'weights = [ 1 ]; } );', "pools[0].weights")
        self.refused(EGRESS + 'pools = ( { name = "n"; sources = [ "ip1" ]; weights = [ 0 ]; } );',
                     "pools[0].weights")
        self.refused(EGRESS + 'pools = ( { sources = [ "ip1" ]; } );', "pools[0].name")
        self.refused(EGRESS + 'pools = ( { name = "n"; sources = [ "ip1" ]; },'
                     ' { name = "n"; sources = [ "ip2" ]; } );', "pools[1]", "twice")
        self.refused('egress = ( { address = "127.0.0.2"; ehlo = "a.test"; },'
                     ' { address = "127.0.0.2"; ehlo = "b.test"; } );', "egress[1].name", "twice")
        self.refused('egress = ( { address = "mta.example.com"; ehlo = "a.test"; } );',
                     "egress[0].address", "IP address")
        self.refused('egress = ( { address = "127.0.0.2"; } );', "egress[0].ehlo", "missing")
        self.refused(EGRESS + 'domains = ( { match = "*.test"; pool = "nope"; } );',
                     "domains[0].pool", "names no pool")
        self.refused(EGRESS + 'defaults = { pool = "nope"; };', "defaults.pool")

    def test_prints_sources_and_pools(self):
        p = self.check(EGRESS.replace('name = "ip2"; ', '') +
                       'pools = ( { name = "news"; sources = [ "ip1", "127.0.0.3" ]; '
                       'weights = [ 3, 1 ]; } );\n'
                       'domains = ( { match = "*.test"; pool = "news"; } );\n')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('name = "127.0.0.3"; address = "127.0.0.3"', p.stdout)
        self.assertIn('{ name = "news"; sources = [ "ip1", "127.0.0.3" ]; weights = [ 3, 1 ]; }',
                      p.stdout)
        self.assertIn('{ name = "default"; sources = [ "ip1", "127.0.0.3" ]; weights = [ 1, 1 ]; }',
                      p.stdout)
        self.assertIn('pool = "news";', p.stdout)
