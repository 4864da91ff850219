"""DNSSEC through dns/ (volley-resolve) against a validating unbound: the
test world of DANE (RFC 7672). Zones under test. are signed with ldns at
start and served by NSD (harness dnssec.py); unbound validates them from
one trust anchor, the DS of test.'s key:

    secure.test    signed, chain of trust from the anchor: AD
    plain.test     delegated without DS (insecure): no AD
    bogus.test     signed, then its records altered: SERVFAIL
    expired.test   signatures expired a week ago: SERVFAIL

Controls: the same NSD behind an unbound without the anchor (nothing is
authenticated) and behind one with a wrong anchor (everything bogus)."""

import hashlib
import subprocess
import unittest

from . import dnssec, sinkctl, util
from .dnsctl import resolve

T = "test"
SEC, PLAIN, BOGUS, EXPIRED = ("%s.%s" % (z, T) for z in ("secure", "plain", "bogus", "expired"))
TLSA_TA = "2 0 1 " + "5a" * 32
TLSA_465 = "3 0 2 " + "c3" * 64


def records(tlsa_ee):
    """Each zone's records: an MX host with its TLSA RRset, and (in the
    secure zone) the mixed cases DANE must tell apart."""
    def zone(z, ip):
        return [
            "{z}. 300 IN MX 10 mx.{z}.".format(z=z),
            "mx.{z}. 300 IN A {ip}".format(z=z, ip=ip),
            "_25._tcp.mx.{z}. 300 IN TLSA {t}".format(z=z, t=tlsa_ee),
            "_25._tcp.mx.{z}. 300 IN TLSA {t}".format(z=z, t=TLSA_TA),
            "_465._tcp.mx.{z}. 300 IN TLSA {t}".format(z=z, t=TLSA_465),
            "notlsa.{z}. 300 IN A {ip}".format(z=z, ip=ip),
        ]
    zones = {SEC: zone(SEC, "127.0.0.2"), PLAIN: zone(PLAIN, "127.0.0.3"),
             BOGUS: zone(BOGUS, "127.0.0.4"), EXPIRED: zone(EXPIRED, "127.0.0.5")}
    zones[SEC] += [
        # MX signed, its host in the insecure zone (RFC 7672 2.2.1).
        "mixed.{s}. 300 IN MX 10 mx.{p}.".format(s=SEC, p=PLAIN),
        # MX host names an alias: signed to signed, and signed to insecure.
        "alias.{s}. 300 IN MX 10 cn.{s}.".format(s=SEC),
        "cn.{s}. 300 IN CNAME mx.{s}.".format(s=SEC),
        "alias2.{s}. 300 IN MX 10 cn2.{s}.".format(s=SEC),
        "cn2.{s}. 300 IN CNAME mx.{p}.".format(s=SEC, p=PLAIN),
    ]
    return zones


def tlsa_set(result):
    return sorted("%d %d %d %s" % (r["usage"], r["selector"], r["mtype"], r["data"])
                  for r in result["records"])


class DnssecTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-dnssec-test-", cleanup=cls.addClassCleanup)
        cls.cert, _ = sinkctl.make_cert(cls.dir, "mx", "mx." + SEC, "DNS:mx." + SEC)
        cls.tlsa_ee = dnssec.tlsa_3_1_1(cls.cert)
        cls.world = dnssec.DnssecWorld(records(cls.tlsa_ee), bogus=[BOGUS],
                                       expired=[EXPIRED], unsigned=[PLAIN])
        cls.world.start()
        cls.addClassCleanup(cls.world.stop)

    def ask(self, script, server=None, args=()):
        lines, _ = resolve(server or self.world.resolver, *args, script=script, timeout=20)
        return {(x["type"], x["name"]): x for x in lines if "type" in x}

    def tlsa(self, host, port=25, **kw):
        name = "_%d._tcp.%s" % (port, host)
        return self.ask("tlsa %s %d\n" % (host, port), **kw)[("tlsa", name)]

    def mx(self, domain, **kw):
        return self.ask("mx %s\n" % domain, **kw)[("mx", domain)]

    def why(self, r):
        """The answer and unbound's log, for a failing assertion."""
        return "%s\nunbound: %s" % (r, self.world.unbound.log_text()[-3000:])

    # ---- TLSA ----

    def test_tlsa_secure_authenticated(self):
        r = self.tlsa("mx." + SEC)
        self.assertEqual(r["status"], "ok", self.why(r))
        self.assertTrue(r["ad"], self.why(r))
        self.assertEqual(tlsa_set(r), sorted([self.tlsa_ee, TLSA_TA]))
        self.assertTrue(250 <= r["ttl"] <= 300, r)   # counted down in unbound's cache
        r = self.tlsa("mx." + SEC, 465)
        self.assertEqual((r["status"], r["ad"], tlsa_set(r)), ("ok", True, [TLSA_465]))

    def test_tlsa_insecure_not_authenticated(self):
        r = self.tlsa("mx." + PLAIN)
        self.assertEqual(r["status"], "ok", self.why(r))
        self.assertFalse(r["ad"], self.why(r))
        self.assertEqual(tlsa_set(r), sorted([self.tlsa_ee, TLSA_TA]))

    def test_tlsa_bogus_is_servfail(self):
        for zone in (BOGUS, EXPIRED):
            with self.subTest(zone=zone):
                r = self.tlsa("mx." + zone)
                self.assertEqual(r["status"], "servfail", self.why(r))
                self.assertFalse(r["permanent"])
                self.assertFalse(r["ad"])
                self.assertEqual(r["records"], [])
        log = self.world.unbound.log_text()
        self.assertIn("validation failure <_25._tcp.mx.%s. TLSA IN>" % BOGUS, log)
        self.assertIn("signature expired", log)

    def test_no_tlsa_denial_authenticated(self):
        # "No TLSA here" is itself signed (NSEC) in a secure zone, not in an
        # insecure one; DANE needs to know which.
        script = "".join("tlsa notlsa.%s\ntlsa nohost.%s\n" % (z, z) for z in (SEC, PLAIN))
        got = self.ask(script)
        for z, ad in ((SEC, True), (PLAIN, False)):
            r = got[("tlsa", "_25._tcp.notlsa." + z)]
            self.assertEqual((r["status"], r["ad"], r["records"]), ("nxdomain", ad, []),
                             self.why(r))
            r = got[("tlsa", "_25._tcp.nohost." + z)]
            self.assertEqual((r["status"], r["ad"]), ("nxdomain", ad), self.why(r))

    # ---- MX and addresses ----

    def test_mx_secure_authenticated(self):
        r = self.mx(SEC)
        self.assertEqual(r["status"], "ok", self.why(r))
        self.assertTrue(r["ad"] and r["mx_ad"], self.why(r))
        self.assertEqual([(h["name"], h["ad"], [a["ip"] for a in h["addrs"]])
                          for h in r["hosts"]], [("mx." + SEC, True, ["127.0.0.2"])])

    def test_mx_insecure_and_bogus(self):
        r = self.mx(PLAIN)
        self.assertEqual((r["status"], r["ad"], r["mx_ad"]), ("ok", False, False), self.why(r))
        self.assertEqual([h["ad"] for h in r["hosts"]], [False])
        for zone in (BOGUS, EXPIRED):
            r = self.mx(zone)
            self.assertEqual((r["status"], r["hosts"]), ("servfail", []), self.why(r))

    def test_secure_mx_with_insecure_host(self):
        # RFC 7672 2.2.1: the MX is signed, its host's address is not.
        r = self.mx("mixed." + SEC)
        self.assertEqual(r["status"], "ok", self.why(r))
        self.assertTrue(r["mx_ad"])
        self.assertFalse(r["ad"])
        self.assertEqual([(h["name"], h["ad"]) for h in r["hosts"]], [("mx." + PLAIN, False)])

    def test_cname_host_authenticated_only_if_all_of_it_is(self):
        # RFC 7672 2.2.2: a CNAME'd host's TLSA base is the alias' target,
        # when every step of the chain is secure.
        r = self.mx("alias." + SEC)
        self.assertEqual(r["status"], "ok", self.why(r))
        h = r["hosts"][0]
        self.assertEqual((h["name"], h["canon"], h["ad"], r["ad"]),
                         ("cn." + SEC, "mx." + SEC, True, True))
        r = self.mx("alias2." + SEC)
        h = r["hosts"][0]
        self.assertEqual((h["name"], h["canon"], h["ad"], r["ad"], r["mx_ad"]),
                         ("cn2." + SEC, "mx." + PLAIN, False, False, True), self.why(r))

    def test_ad_without_do(self):
        # RFC 6840 5.7: the AD bit asked in the query is enough; DO off only
        # leaves the RRSIGs out of the answer.
        r = self.tlsa("mx." + SEC, args=("--no-dnssec",))
        self.assertEqual((r["status"], r["ad"]), ("ok", True), self.why(r))
        self.assertEqual(tlsa_set(r), sorted([self.tlsa_ee, TLSA_TA]))

    # ---- controls: AD comes from the trust anchor ----

    def test_without_trust_anchor_nothing_authenticated(self):
        u = self.world.add_resolver(anchor=None)
        self.addCleanup(u.stop)
        r = self.tlsa("mx." + SEC, server=u.server)
        self.assertEqual((r["status"], r["ad"]), ("ok", False), r)
        self.assertEqual(tlsa_set(r), sorted([self.tlsa_ee, TLSA_TA]))
        r = self.mx(SEC, server=u.server)
        self.assertEqual((r["status"], r["ad"], r["mx_ad"]), ("ok", False, False), r)
        # Unvalidated, the altered records pass as data.
        r = self.tlsa("mx." + BOGUS, server=u.server)
        self.assertEqual((r["status"], r["ad"]), ("ok", False), r)

    def test_wrong_trust_anchor_everything_bogus(self):
        u = self.world.add_resolver(anchor="wrong")
        self.addCleanup(u.stop)
        for host in ("mx." + SEC, "mx." + PLAIN):
            r = self.tlsa(host, server=u.server)
            self.assertEqual((r["status"], r["records"]), ("servfail", []), r)

    # ---- the TLSA helpers ----

    def test_tlsa_helpers_match_openssl(self):
        def sh(cmd, data=None):
            return subprocess.run(cmd, input=data, capture_output=True, check=True,
                                  timeout=20).stdout
        pubkey = sh(["openssl", "x509", "-in", self.cert, "-noout", "-pubkey"])
        spki = sh(["openssl", "pkey", "-pubin", "-outform", "DER"], pubkey)
        cert = sh(["openssl", "x509", "-in", self.cert, "-outform", "DER"])
        self.assertEqual(self.tlsa_ee, "3 1 1 " + hashlib.sha256(spki).hexdigest())
        self.assertEqual(dnssec.tlsa_2_0_1(self.cert), "2 0 1 " + hashlib.sha256(cert).hexdigest())
        self.assertEqual(dnssec.tlsa_2_1_1(self.cert), "2 1 1 " + hashlib.sha256(spki).hexdigest())
        self.assertEqual(dnssec.tlsa(self.cert, 3, 0, 0), "3 0 0 " + cert.hex())
        self.assertEqual(dnssec.tlsa(self.cert, 3, 1, 2),
                         "3 1 2 " + hashlib.sha512(spki).hexdigest())


if __name__ == "__main__":
    unittest.main()
