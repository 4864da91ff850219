"""dns/: MX, A/AAAA and TLSA resolution through volley-resolve against a real
DNS server (Debian's unbound with local zones on a loopback port), a
scripted server (AD bit, SERVFAIL, REFUSED, lame, TCP fallback) and a
server that never answers. Every case checks status, hosts, order, TTLs and
the resolver's counters (and unbound's own for coalescing)."""

import time
import unittest

from . import dnsctl
from .dnsctl import resolve

TLSA1 = "3 1 1 " + "".join("%02x" % i for i in range(32))
TLSA2 = "2 0 1 " + "ab" * 32
Z = "volley.test"


def zone():
    d = [
        "multi.{z}. MX 10 mx1.{z}.", "multi.{z}. MX 10 mx2.{z}.", "multi.{z}. MX 10 mx3.{z}.",
        "multi.{z}. MX 20 mx4.{z}.", "multi.{z}. MX 30 mx5.{z}.",
        "mx1.{z}. A 127.0.0.11", "mx2.{z}. A 127.0.0.12", "mx3.{z}. A 127.0.0.13",
        "mx4.{z}. A 127.0.0.14", "mx5.{z}. A 127.0.0.15", "mx5.{z}. AAAA ::1",
        "implicit.{z}. A 127.0.0.20", "implicit.{z}. AAAA ::1",
        "nullmx.{z}. MX 0 .",
        "cname.{z}. MX 10 alias.{z}.", "alias.{z}. CNAME mx1.{z}.",
        "short.{z}. 2 IN MX 10 mxshort.{z}.", "mxshort.{z}. 2 IN A 127.0.0.30",
        "literal.{z}. MX 10 192.0.2.1.",
        "mixedlit.{z}. MX 5 192.0.2.1.", "mixedlit.{z}. MX 10 mx1.{z}.",
        "ghost.{z}. MX 10 nohost.{z}.",
        "noaddr.{z}. TXT nomail",
        "priv.{z}. MX 10 mxpriv.{z}.", "mxpriv.{z}. A 10.0.0.5",
        "zero.{z}. MX 10 mxzero.{z}.", "mxzero.{z}. A 0.0.0.0",
        "dual.{z}. MX 10 mxdual.{z}.", "mxdual.{z}. A 127.0.0.50", "mxdual.{z}. AAAA ::1",
        "servfail.{z}. MX 10 mx1.{z}.",
        "new.{z}. MX 10 mx1.{z}.",
        "neg.{z}. MX 10 mx1.{z}.",
        "_25._tcp.mx1.{z}. TLSA " + TLSA1, "_25._tcp.mx1.{z}. TLSA " + TLSA2,
        "_465._tcp.mx1.{z}. TLSA " + TLSA1,
        '_mta-sts.{z}. TXT "v=STSv1; " "id=20261207;"', "_mta-sts.{z}. TXT other",
        "mxonly.{z}. MX 10 mx1.{z}.", "mxonly.{z}. A 127.0.0.60",
        "mxa.shared.{z}. A 127.0.0.40", "mxb.shared.{z}. A 127.0.0.41",
    ]
    for i in range(20):
        first, second = ("mxa", "mxb") if i % 2 else ("mxb", "mxa")
        d.append("shared%d.{z}. MX 10 %s.shared.{z}." % (i, first))
        d.append("shared%d.{z}. MX 20 %s.shared.{z}." % (i, second))
    for i in range(300):
        d.append("d%d.many.{z}. MX 10 mx%d.{z}." % (i, 1 + i % 5))
    return [line.format(z=Z) for line in d]


def ips(host):
    return [a["ip"] for a in host["addrs"]]


def by_name(lines):
    return {x["name"]: x for x in lines if "name" in x}


def stats(lines):
    return [x["stats"] for x in lines if "stats" in x]


class DnsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ub = dnsctl.Unbound({Z: zone()}).start()

    @classmethod
    def tearDownClass(cls):
        cls.ub.stop()

    def mx(self, *names, args=(), **kw):
        lines, _ = resolve(self.ub.server, *args, *names, **kw)
        return by_name(lines)

    def one(self, name, *args, **kw):
        return self.mx(name, args=args, **kw)[name]

    # ---- RFC 5321 5.1 ----

    def test_preference_order_and_shuffle(self):
        lines, _ = resolve(self.ub.server, "--repeat", "40", "multi." + Z)
        self.assertEqual(len(lines), 40)
        firsts = set()
        for r in lines:
            self.assertEqual(r["status"], "ok")
            names = [h["name"] for h in r["hosts"]]
            self.assertEqual([h["pref"] for h in r["hosts"]], [10, 10, 10, 20, 30])
            self.assertEqual(set(names[:3]), {"mx1." + Z, "mx2." + Z, "mx3." + Z})
            self.assertEqual(names[3:], ["mx4." + Z, "mx5." + Z])
            self.assertEqual(ips(r["hosts"][4]), ["127.0.0.15", "::1"])
            firsts.add(names[0])
        self.assertGreater(len(firsts), 1, "equal preferences are shuffled")
        host = lines[0]["hosts"][0]
        self.assertEqual(host["addrs"][0]["flags"], ["loopback"])
        self.assertEqual(lines[0]["site"], ",".join("mx%d.%s" % (i, Z) for i in range(1, 6)))

    def test_implicit_mx(self):
        r = self.one("implicit." + Z)
        self.assertEqual(r["status"], "ok")
        self.assertTrue(r["implicit"])
        self.assertEqual([h["name"] for h in r["hosts"]], ["implicit." + Z])
        self.assertEqual(ips(r["hosts"][0]), ["127.0.0.20", "::1"])
        self.assertEqual(r["site"], "implicit." + Z)

    def test_null_mx_permanent(self):
        r = self.one("nullmx." + Z)
        self.assertEqual(r["status"], "null-mx")
        self.assertTrue(r["permanent"])
        self.assertEqual(r["hosts"], [])
        self.assertIn("RFC 7505", r["why"])

    def test_nxdomain_permanent_with_soa_ttl(self):
        r = self.one("nope." + Z)
        self.assertEqual(r["status"], "nxdomain")
        self.assertTrue(r["permanent"])
        self.assertEqual(r["ttl"], 300)            # SOA minimum
        r = self.one("nope." + Z, "--neg-ttl-max", "60")
        self.assertEqual(r["ttl"], 60)

    def test_cname_target_followed(self):
        r = self.one("cname." + Z)
        self.assertEqual(r["status"], "ok")
        h = r["hosts"][0]
        self.assertEqual((h["name"], h["canon"]), ("alias." + Z, "mx1." + Z))
        self.assertEqual(ips(h), ["127.0.0.11"])

    def test_ip_literal_targets_refused(self):
        r = self.one("literal." + Z)
        self.assertEqual(r["status"], "bad-mx")
        self.assertTrue(r["permanent"])
        self.assertIn("IP literal", r["why"])
        r = self.one("mixedlit." + Z)
        self.assertEqual(r["status"], "ok")
        self.assertEqual([h["name"] for h in r["hosts"]], ["mx1." + Z])

    def test_no_address(self):
        r = self.one("ghost." + Z)
        self.assertEqual(r["status"], "no-address")
        self.assertTrue(r["permanent"])
        r = self.one("noaddr." + Z)
        self.assertEqual(r["status"], "no-address")
        self.assertTrue(r["implicit"])

    def test_private_and_loopback_need_allow_private(self):
        r = self.one("priv." + Z, private=False)
        self.assertEqual(r["status"], "bad-mx")
        self.assertTrue(r["permanent"])
        r = self.one("multi." + Z, private=False)
        self.assertEqual(r["status"], "bad-mx")
        r = self.one("priv." + Z)
        self.assertEqual(r["status"], "ok")
        self.assertEqual(r["hosts"][0]["addrs"][0]["flags"], ["private"])
        for private in (True, False):          # 0.0.0.0: never
            r = self.one("zero." + Z, private=private)
            self.assertEqual(r["status"], "bad-mx")

    def test_address_family_order(self):
        self.assertEqual(ips(self.one("dual." + Z)["hosts"][0]), ["127.0.0.50", "::1"])
        r = self.one("dual." + Z, "--prefer-ipv6")
        self.assertEqual(ips(r["hosts"][0]), ["::1", "127.0.0.50"])
        r = self.one("dual." + Z, "--family", "4")
        self.assertEqual(ips(r["hosts"][0]), ["127.0.0.50"])
        r = self.one("dual." + Z, "--family", "6")
        self.assertEqual(ips(r["hosts"][0]), ["::1"])

    def test_shared_mx_set_is_one_site(self):
        names = ["shared%d.%s" % (i, Z) for i in range(20)]
        res = self.mx(*names)
        sites = {res[n]["site"] for n in names}
        self.assertEqual(sites, {"mxa.shared.%s,mxb.shared.%s" % (Z, Z)})
        for i, n in enumerate(names):
            first = "mxa" if i % 2 else "mxb"
            self.assertEqual(res[n]["hosts"][0]["name"], "%s.shared.%s" % (first, Z))

    def test_bad_names(self):
        res = self.mx("[192.0.2.1]", "a..b.test", "192.0.2.1")
        for r in res.values():
            self.assertEqual(r["status"], "bad-name")
            self.assertTrue(r["permanent"])

    # ---- TLSA ----

    def test_tlsa_records(self):
        lines, _ = resolve(self.ub.server, "--tlsa", "mx1." + Z, "mx2." + Z)
        res = by_name(lines)
        t = res["_25._tcp.mx1." + Z]
        self.assertEqual(t["status"], "ok")
        self.assertFalse(t["ad"])               # unbound here does not validate
        got = sorted("%d %d %d %s" % (r["usage"], r["selector"], r["mtype"], r["data"])
                     for r in t["records"])
        self.assertEqual(got, sorted([TLSA1, TLSA2]))
        self.assertIn(res["_25._tcp.mx2." + Z]["status"], ("nxdomain", "nodata"))
        lines, _ = resolve(self.ub.server, "--tlsa", "--port", "465", "mx1." + Z)
        self.assertEqual(lines[0]["name"], "_465._tcp.mx1." + Z)
        self.assertEqual(len(lines[0]["records"]), 1)

    def test_txt_records_joined(self):
        lines, _ = resolve(self.ub.server, script="txt _mta-sts.%s\ntxt mx1.%s\nwait\n" % (Z, Z))
        res = by_name(lines)
        t = res["_mta-sts." + Z]
        self.assertEqual(t["status"], "ok")
        self.assertEqual(sorted(t["records"]), ["other", "v=STSv1; id=20261207;"])
        self.assertIn(res["mx1." + Z]["status"], ("nodata", "nxdomain"))

    def test_ptr_names_of_v4_and_v6_addresses(self):
        ub = dnsctl.Unbound({
            "0.0.127.in-addr.arpa": ["9.0.0.127.in-addr.arpa. 300 IN PTR Mta9.Example.Test.",
                                     "9.0.0.127.in-addr.arpa. 300 IN PTR other.example.test."],
            # 2001:db8::9 (unbound answers ::1 itself: localhost)
            "8.b.d.0.1.0.0.2.ip6.arpa": ["9." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR "
                                         "six.example.test."],
        }).start()
        try:
            lines, _ = resolve(ub.server, script="ptr 127.0.0.9\nptr 2001:db8::9\nptr 127.0.0.8\nwait\n")
        finally:
            ub.stop()
        res = by_name(lines)
        v4 = res["9.0.0.127.in-addr.arpa"]
        self.assertEqual(v4["status"], "ok")
        self.assertEqual(sorted(v4["names"]), ["mta9.example.test", "other.example.test"])
        v6 = res["9." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa"]
        self.assertEqual(v6["names"], ["six.example.test"])
        self.assertIn(res["8.0.0.127.in-addr.arpa"]["status"], ("nxdomain", "nodata"))

    def test_host_lookup_ignores_mx_and_keeps_private_addresses(self):
        lines, _ = resolve(self.ub.server, script="host mxonly.%s\nhost mxpriv.%s\n"
                           "host ghost2.%s\nwait\n" % (Z, Z, Z))
        res = by_name(lines)
        h = res["mxonly." + Z]
        self.assertEqual(h["status"], "ok")
        self.assertEqual([ips(x) for x in h["hosts"]], [["127.0.0.60"]])   # not mx1's
        self.assertEqual(ips(res["mxpriv." + Z]["hosts"][0]), ["10.0.0.5"])
        self.assertIn(res["ghost2." + Z]["status"], ("nxdomain", "no-address"))

    # ---- the cache ----

    def test_thousand_lookups_one_query(self):
        before = self.ub.queries()
        lines, _ = resolve(self.ub.server, script="mx new.%s 1000\nwait\nstats\n" % Z)
        results = [x for x in lines if x.get("type") == "mx"]
        self.assertEqual(len(results), 1000)
        self.assertTrue(all(r["status"] == "ok" for r in results))
        st = stats(lines)[0]
        self.assertEqual(st["queries"], 3)      # MX, then A and AAAA of mx1
        self.assertEqual(st["coalesced"], 999 * 3)
        self.assertEqual(self.ub.queries() - before, 3)

    def test_queries_beyond_max_inflight_wait_their_turn(self):
        names = "".join("mx d%d.many.%s\n" % (i, Z) for i in range(60))
        lines, _ = resolve(self.ub.server, "--max-inflight", "4",
                           script=names + "wait\nstats\n")
        res = [x for x in lines if x.get("type") == "mx"]
        self.assertEqual(len(res), 60)
        self.assertTrue(all(x["status"] == "ok" for x in res), res)
        st = stats(lines)[-1]
        self.assertLessEqual(st["inflight_peak"], 4, st)
        self.assertGreaterEqual(st["inflight_peak"], 2, st)
        self.assertEqual((st["in_flight"], st["waiting"]), (0, 0), st)

    def test_cache_hit_then_ttl_expiry(self):
        script = ("mx short.{z}\nwait\nstats\nmx short.{z}\nwait\nstats\n"
                  "sleep 2600\nmx short.{z}\nwait\nstats\n").format(z=Z)
        lines, _ = resolve(self.ub.server, "--min-ttl", "1", script=script)
        res = [x for x in lines if x.get("type") == "mx"]
        self.assertEqual([r["status"] for r in res], ["ok"] * 3)
        self.assertEqual(res[0]["ttl"], 2)
        self.assertLessEqual(res[1]["ttl"], 2)
        s1, s2, s3 = stats(lines)
        self.assertEqual(s1["queries"], 3)
        self.assertEqual(s2["queries"], 3)
        self.assertEqual(s2["cache_hits"], 3)
        # MX and A expired (TTL 2); the AAAA's absence lives 300 s (SOA)
        self.assertEqual(s3["queries"], 5)
        self.assertEqual(s3["expired"], 2)

    def test_min_ttl_clamp(self):
        r = self.one("short." + Z, "--min-ttl", "60")
        self.assertEqual(r["ttl"], 60)
        r = self.one("multi." + Z, "--max-ttl", "100")
        self.assertEqual(r["ttl"], 100)

    def test_negative_answers_cached(self):
        lines, _ = resolve(self.ub.server, script="mx nope2.%s\nwait\nmx nope2.%s\nwait\n"
                           "stats\n" % (Z, Z))
        st = stats(lines)[0]
        self.assertEqual(st["queries"], 1)
        self.assertEqual(st["cache_hits"], 1)

    def test_many_domains_window(self):
        lines, _ = resolve(self.ub.server, "--bench", "300", "--bench-suffix", ".many." + Z,
                           "--lookups", "3000", "--inflight", "64")
        b = lines[0]["bench"]
        self.assertEqual(b["ok"], 3300)
        self.assertEqual(b["failed"], 0)
        self.assertEqual(b["queries"], 300 + 5 * 2)  # one per name and type
        self.assertEqual(b["phase2_queries"], 0)

    # ---- failures ----

    def test_timeout_is_transient_and_bounded(self):
        with dnsctl.Blackhole() as bh:
            t0 = time.monotonic()
            lines, _ = resolve(bh.server, "--timeout-ms", "200", "--tries", "2", "--stats",
                               "--repeat", "2", "x.example", "y.example")
            took = time.monotonic() - t0
        res = [x for x in lines if x.get("type") == "mx"]
        self.assertEqual(len(res), 4)
        for r in res:
            self.assertEqual(r["status"], "timeout")
            self.assertFalse(r["permanent"])
        self.assertLess(took, 10)
        st = stats(lines)[0]
        self.assertEqual(st["queries"], 2)
        self.assertEqual(st["timeouts"], 2)
        self.assertEqual(bh.received, 2 * 2)     # two tries each

    def test_servfail_refused_lame_transient(self):
        with dnsctl.FakeDNS() as f:
            res = by_name(resolve(f.server, "servfail.fake.test", "refused.fake.test",
                                  "lame.fake.test")[0])
        self.assertEqual(res["servfail.fake.test"]["status"], "servfail")
        self.assertEqual(res["refused.fake.test"]["status"], "servfail")
        self.assertEqual(res["lame.fake.test"]["status"], "lame")
        for r in res.values():
            self.assertFalse(r["permanent"])

    def test_next_server_after_servfail_or_silence(self):
        with dnsctl.FakeDNS() as f, dnsctl.Blackhole() as bh:
            r = by_name(resolve([f.server, self.ub.server], "servfail." + Z)[0])
            self.assertEqual(r["servfail." + Z]["status"], "ok")
            r = by_name(resolve([bh.server, self.ub.server], "--timeout-ms", "200",
                                "multi." + Z)[0])
            self.assertEqual(r["multi." + Z]["status"], "ok")

    def test_truncated_answer_retried_over_tcp(self):
        with dnsctl.FakeDNS() as f:
            r = by_name(resolve(f.server, "big.fake.test")[0])["big.fake.test"]
            transports = {q[4] for q in f.queries if q[0] == "big.fake.test"}
        self.assertEqual(r["status"], "ok")
        self.assertEqual(len(r["hosts"]), 16)   # DNS_MAX_HOSTS of 40
        prefs = [h["pref"] for h in r["hosts"]]
        self.assertEqual(prefs, sorted(prefs))
        self.assertEqual(transports, {"udp", "tcp"})

    def test_ad_bit_asked_and_read(self):
        with dnsctl.FakeDNS() as f:
            r = by_name(resolve(f.server, "secure.fake.test")[0])["secure.fake.test"]
            t = resolve(f.server, "--tlsa", "mx.secure.fake.test")[0][0]
            resolve(f.server, "--no-dnssec", "other.fake.test")
            flags = {(q[0], q[1]): q[2:4] for q in f.queries}
        self.assertEqual(r["status"], "ok")
        self.assertTrue(r["ad"] and r["mx_ad"] and r["hosts"][0]["ad"])
        self.assertEqual(t["status"], "ok")
        self.assertTrue(t["ad"])
        self.assertEqual((t["records"][0]["usage"], t["records"][0]["selector"],
                          t["records"][0]["mtype"]), (3, 1, 1))
        self.assertEqual(flags[("secure.fake.test", dnsctl.T_MX)], (True, True))
        self.assertEqual(flags[("other.fake.test", dnsctl.T_MX)], (True, False))
        # an answer without AD makes the whole result unauthenticated
        with dnsctl.FakeDNS() as f:
            r = by_name(resolve(f.server, "plain.fake.test")[0])["plain.fake.test"]
        self.assertFalse(r["ad"])

    def test_shutdown_answers_pending(self):
        with dnsctl.Blackhole() as bh:
            script = "mx a.example\nmx b.example 3\ntlsa mx.example\nshutdown\nmx c.example\n"
            lines, _ = resolve(bh.server, "--timeout-ms", "5000", script=script, timeout=30)
        res = [x for x in lines if x.get("type") in ("mx", "tlsa")]
        self.assertEqual(len(res), 6)
        for r in res:
            self.assertEqual(r["status"], "shutdown")
            self.assertFalse(r["permanent"])
        done = [x for x in lines if "shutdown" in x][0]
        self.assertEqual(done["outstanding"], 0)


if __name__ == "__main__":
    unittest.main()
