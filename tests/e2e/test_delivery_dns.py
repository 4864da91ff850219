"""volleyd delivering through MX records served by a real DNS server
(Debian's unbound on a loopback port): MX preference, walking the MX list
past a host that refuses, implicit MX, null MX and NXDOMAIN bounces, a
resolver that never answers (deferral), domains sharing one MX host set
(one site), and one query for many recipients of a new domain."""

import subprocess
import time

from . import dnsctl, util
from .daemon import VolleydTest, simple_job
from .sinkctl import Sink

ZONES = {
    "mx.test": ["mx.test. 300 IN MX 10 mx1.mx.test.", "mx.test. 300 IN MX 20 mx2.mx.test.",
                "mx1.mx.test. 300 IN A 127.0.0.2", "mx2.mx.test. 300 IN A 127.0.0.3"],
    "walk.test": ["walk.test. 300 IN MX 10 dead.walk.test.",
                  "walk.test. 300 IN MX 20 mx2.mx.test.",
                  "dead.walk.test. 300 IN A 127.0.0.7"],
    "implicit.test": ["implicit.test. 300 IN A 127.0.0.2"],
    "nullmx.test": ["nullmx.test. 300 IN MX 0 ."],
    "nx.test": [],
    "shared1.test": ["shared1.test. 300 IN MX 10 mx1.mx.test."],
    "shared2.test": ["shared2.test. 300 IN MX 10 mx1.mx.test."],
    "shared3.test": ["shared3.test. 300 IN MX 10 mx1.mx.test."],
    "fresh.test": ["fresh.test. 300 IN MX 10 mx1.mx.test."],
    "cname.test": ["cname.test. 300 IN MX 10 alias.cname.test.",
                   "alias.cname.test. 300 IN CNAME mx1.mx.test."],
    "short.test": ["short.test. 1 IN MX 10 mx1.mx.test."],
    "move.test": ["move.test. 1 IN MX 10 mv.move.test.", "mv.move.test. 1 IN A 127.0.0.2"],
}


def rcpts(domain, n):
    return [{"email": "u%d@%s" % (i, domain), "substitutions": {"name": "x"}} for i in range(n)]


class DnsDelivery(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.ub = dnsctl.Unbound(ZONES).start()
        cls.s1 = Sink("--tls", hosts=("127.0.0.2",)).start()
        # the second MX host listens on the same port (MX records carry no port)
        cls.s2 = Sink("--tls", hosts=("127.0.0.3",), port=cls.s1.port).start()

    @classmethod
    def tearDownClass(cls):
        for x in (cls.s2, cls.s1, cls.ub):
            x.stop()

    def daemon(self, servers=None):
        return self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; allow_private = true; timeout_ms = 500; min_ttl = 1; };\n'
            'defaults = { port = %d; tls = "encrypt"; retry = [ "1s" ]; };\n'
            % (servers or self.ub.server, self.s1.port)))

    def rows(self, d, jid):
        return {r["email"]: r for r in d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()}

    def test_mx_preference_and_walking_past_a_refusing_host(self):
        d = self.daemon()
        job = simple_job(0)
        job["recipients"] = rcpts("mx.test", 3) + rcpts("walk.test", 3)
        jid = d.submit(job).json()["id"]
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 6, j)
        at1 = {m.env["rcpt"][0] for m in self.s1.new_messages(3, wait=5)}
        at2 = {m.env["rcpt"][0] for m in self.s2.new_messages(3, wait=5)}
        self.assertEqual(at1, {"u%d@mx.test" % i for i in range(3)})   # preference 10
        self.assertEqual(at2, {"u%d@walk.test" % i for i in range(3)})  # 127.0.0.7 refused
        ev = [e for e in d.request("GET", "/v1/events?job=" + jid).lines() if e["type"] == "Delivery"]
        mx = {e["domain"]: e["mx"] for e in ev}
        self.assertEqual(mx, {"mx.test": "mx1.mx.test", "walk.test": "mx2.mx.test"})
        self.assertTrue(all(e["attempt"] == 1 for e in ev), "walking the MX list is one attempt")

    def test_implicit_mx(self):
        d = self.daemon()
        job = simple_job(0)
        job["recipients"] = rcpts("implicit.test", 2)
        j = self.wait_done(d, d.submit(job).json()["id"])
        self.assertEqual(j["counts"]["delivered"], 2)
        self.assertEqual({m.env["rcpt"][0] for m in self.s1.new_messages(2, wait=5)},
                         {"u0@implicit.test", "u1@implicit.test"})

    def test_null_mx_and_nxdomain_bounce_with_the_dns_class(self):
        d = self.daemon()
        job = simple_job(0)
        job["recipients"] = rcpts("nullmx.test", 2) + rcpts("nothere.nx.test", 2)
        jid = d.submit(job).json()["id"]
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["bounced"], 4, j)
        rows = self.rows(d, jid)
        for e, r in rows.items():
            self.assertEqual(r["bounce_class"], "dns", r)
        self.assertIn("null MX", rows["u0@nullmx.test"]["reason"])
        self.assertIn("NXDOMAIN", rows["u0@nothere.nx.test"]["reason"])

    def test_silent_resolver_defers(self):
        with dnsctl.Blackhole() as bh:
            d = self.daemon(servers=bh.server)
            job = simple_job(0)
            job["recipients"] = rcpts("mx.test", 2)
            jid = d.submit(job).json()["id"]
            rows = {}

            def deferred():
                rows.clear()
                rows.update(self.rows(d, jid))
                return all(r["state"] == "deferred" for r in rows.values())

            util.wait_until(deferred, 20, 0.1)
            for r in rows.values():
                self.assertEqual((r["state"], r["bounce_class"]), ("deferred", "dns"), r)

    def test_domains_sharing_an_mx_set_share_one_site(self):
        d = self.daemon()
        job = simple_job(0)
        job["recipients"] = rcpts("shared1.test", 2) + rcpts("shared2.test", 2) + rcpts("shared3.test", 2)
        self.wait_done(d, d.submit(job).json()["id"])
        sites = [q for q in d.request("GET", "/v1/queues").json()["queues"]
                 if q["site"].startswith("mx:")]
        self.assertEqual([q["site"] for q in sites], ["mx:mx1.mx.test"])
        self.assertEqual(sites[0]["totals"]["delivered"], 6)
        self.s1.new_messages(6, wait=5)

    def test_many_recipients_of_a_new_domain_cost_one_lookup(self):
        d = self.daemon()
        before = self.ub.queries()
        job = simple_job(0)
        job["recipients"] = rcpts("fresh.test", 300)
        j = self.wait_done(d, d.submit(job).json()["id"])
        self.assertEqual(j["counts"]["delivered"], 300)
        # MX, then A and AAAA of its one host: not 300 of anything
        self.assertLessEqual(self.ub.queries() - before, 4)
        st = d.request("GET", "/v1/stats").json()["scheduler"]["delivery"]["dns"]
        self.assertGreaterEqual(st["queries"], 1)
        self.assertIn("volley_dns_queries_total", d.request("GET", "/metrics").body.decode())
        self.s1.new_messages(300, wait=10)

    def test_cnamed_mx_target_is_followed(self):
        d = self.daemon()
        job = simple_job(0)
        job["recipients"] = rcpts("cname.test", 2)
        j = self.wait_done(d, d.submit(job).json()["id"])
        self.assertEqual(j["counts"]["delivered"], 2, j)
        got = {m.env["rcpt"][0] for m in self.s1.new_messages(2, wait=5)}
        self.assertTrue({"u0@cname.test", "u1@cname.test"} <= got, got)

    def test_an_answer_is_kept_for_its_ttl_only(self):
        d = self.daemon()
        job = simple_job(0)
        job["recipients"] = rcpts("short.test", 2)
        self.wait_done(d, d.submit(job).json()["id"])
        q1 = self.ub.queries()
        self.wait_done(d, d.submit(job).json()["id"])      # within the TTL: no query
        q2 = self.ub.queries()
        time.sleep(2.5)                               # the 1 s TTL passes
        self.wait_done(d, d.submit(job).json()["id"])
        q3 = self.ub.queries()
        self.assertEqual(q2, q1)
        self.assertGreater(q3, q2)
        self.s1.new_messages(6, wait=5)

    def test_a_site_follows_its_hosts_to_new_addresses(self):
        d = self.daemon()
        job = simple_job(0)
        job["recipients"] = rcpts("move.test", 2)
        self.wait_done(d, d.submit(job).json()["id"])
        self.assertTrue({"u0@move.test", "u1@move.test"} <=
                        {m.env["rcpt"][0] for m in self.s1.new_messages(2, wait=5)})
        ctl = [dnsctl.UNBOUND_CONTROL, "-c", self.ub.conf]
        subprocess.run(ctl + ["local_data_remove", "mv.move.test."], check=True,
                       capture_output=True, timeout=10)
        subprocess.run(ctl + ["local_data", "mv.move.test. 1 IN A 127.0.0.3"], check=True,
                       capture_output=True, timeout=10)
        time.sleep(2.5)                               # the old answer's TTL passes
        self.wait_done(d, d.submit(job).json()["id"])
        self.assertTrue({"u0@move.test", "u1@move.test"} <=
                        {m.env["rcpt"][0] for m in self.s2.new_messages(2, wait=5)})
