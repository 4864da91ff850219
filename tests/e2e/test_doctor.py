"""`volley doctor` against a zone world served by a real DNS server (Debian's
unbound on a loopback port, tests/e2e/dnsctl.py): a good sender domain
(an SPF include chain covering the egress addresses 127.0.0.10-11, DKIM
records of keys made by `volley dkim keygen`, DMARC p=reject, PTR and A of
the egress addresses, MX, MTA-STS) and broken ones, each with the
pass/warn/fail it must get and the exit code; DNS that does not answer
is exit 3."""

import json
import os
import re
import subprocess

from . import dnsctl, util
from .daemon import VOLLEY
from .pki import TestCA
from .test_mta_sts import PolicyServer, policy

import unittest

EGRESS = [("127.0.0.10", "mta1.good.test"), ("127.0.0.11", "mta2.good.test")]
GOOD_SPF = "v=spf1 include:_spf.good.test -all"
POLICY_IP = "127.0.0.147"   # the MTA-STS policy server, on 443


def sts(d, ident="1"):
    return [txt("_mta-sts." + d, "v=STSv1; id=%s" % ident),
            "mta-sts.%s. 300 IN A %s" % (d, POLICY_IP)]


def keygen(d, domain, alg="ed25519", selector="sel1", bits=2048):
    p = subprocess.run([VOLLEY, "dkim", "keygen", "--domain", domain, "--selector", selector,
                        "--algorithm", alg, "--bits", str(bits), "--out", d],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    line = [l for l in p.stdout.splitlines() if " IN TXT " in l][0]
    txt = "".join(re.findall(r'"([^"]*)"', line))
    return os.path.join(d, "%s.%s.pem" % (domain, selector)), txt


def txt(name, value):
    """A TXT local-data line, the value in strings of at most 255 octets."""
    parts = " ".join('"%s"' % value[i:i + 255] for i in range(0, len(value), 255))
    return "%s. 300 IN TXT %s" % (name, parts)


def domain_zone(d, dkim, spf=GOOD_SPF, dmarc="v=DMARC1; p=reject; rua=mailto:dmarc@good.test",
                mx=True, extra=()):
    z = [txt(d, spf)] if spf else []
    if dkim is not None:
        z.append(txt("sel1._domainkey." + d, dkim))
    if dmarc:
        z.append(txt("_dmarc." + d, dmarc))
    if mx:
        z += ["%s. 300 IN MX 10 mx.%s." % (d, d), "mx.%s. 300 IN A 127.0.0.20" % d]
    return z + list(extra)


class Doctor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-doctor-")
        ca = TestCA(cls.dir, "Volley Doctor Test CA")
        cls.ca = ca.ca_pem
        chain, key, _ = ca.issue("policy", ["mta-sts.%s" % d for d in
                                            ("good.test", "spfmiss.test", "pnone.test")])
        cls.web = PolicyServer(POLICY_IP, chain, key).start()
        cls.web.pages.update({
            "mta-sts.good.test": (200, "text/plain", policy("enforce", "mx.good.test")),
            "mta-sts.spfmiss.test": (200, "text/plain", policy("enforce", "*.elsewhere.test")),
            "mta-sts.pnone.test": (200, "text/plain", policy("testing", "mx.pnone.test")),
        })
        keys, recs = {}, {}
        names = ["good.test", "spfmiss.test", "spfmany.test", "spfloop.test", "dkimbad.test",
                 "revoked.test", "nodmarc.test", "pnone.test", "nomx.test", "spfmech.test", "lax.test", "twokeys.test"]
        for d in names:
            keys[d], recs[d] = keygen(cls.dir, d, "rsa" if d in ("good.test", "lax.test")
                                      else "ed25519", bits=1024 if d == "lax.test" else 2048)
        _, other = keygen(util.tempdir("volley-doctor-other-"), "dkimbad.test")
        zones = {
            "good.test": domain_zone("good.test", recs["good.test"], extra=[
                txt("_spf.good.test", "v=spf1 include:_net.good.test ~all"),
                txt("_net.good.test", "v=spf1 ip4:127.0.0.8/29 ip6:2001:db8::10/128 -all"),
                *sts("good.test", "20240101"),
                "mta1.good.test. 300 IN A 127.0.0.10", "mta2.good.test. 300 IN A 127.0.0.11",
                "mta3.good.test. 300 IN A 127.0.0.99", "mta4.good.test. 300 IN A 127.0.0.14",
                "mta6.good.test. 300 IN AAAA 2001:db8::10"]),
            "spfmiss.test": domain_zone("spfmiss.test", recs["spfmiss.test"],
                                        spf="v=spf1 ip4:192.0.2.0/24 -all",
                                        extra=sts("spfmiss.test")),
            "spfmany.test": domain_zone("spfmany.test", recs["spfmany.test"],
                                        spf="v=spf1 " + " ".join(
                                            "include:i%d.spfmany.test" % i for i in range(11))
                                        + " include:_spf.good.test -all",
                                        extra=[txt("i%d.spfmany.test" % i, "v=spf1 -all")
                                               for i in range(11)]),
            "spfloop.test": domain_zone("spfloop.test", recs["spfloop.test"],
                                        spf="v=spf1 redirect=a.spfloop.test", extra=[
                                            txt("a.spfloop.test", "v=spf1 redirect=b.spfloop.test"),
                                            txt("b.spfloop.test", "v=spf1 redirect=a.spfloop.test")]),
            "dkimbad.test": domain_zone("dkimbad.test", other),
            "revoked.test": domain_zone("revoked.test", "v=DKIM1; k=ed25519; p="),
            "nodmarc.test": domain_zone("nodmarc.test", recs["nodmarc.test"], dmarc=None,
                                        extra=[txt("_mta-sts.nodmarc.test", "v=STSv1; id=9")]),
            "pnone.test": domain_zone("pnone.test", recs["pnone.test"],
                                      dmarc="v=DMARC1; p=none; rua=mailto:d@pnone.test",
                                      extra=sts("pnone.test")),
            "nomx.test": domain_zone("nomx.test", recs["nomx.test"], mx=False),
            "spfmech.test": domain_zone("spfmech.test", recs["spfmech.test"],
                                        spf="v=spf1 mx:good.test a:mta1.good.test "
                                            "ptr:good.test -all"),
            "twokeys.test": domain_zone("twokeys.test", other, extra=[
                txt("sel1._domainkey.twokeys.test", recs["twokeys.test"])]),
            "lax.test": domain_zone("lax.test", recs["lax.test"], spf="v=spf1 +all"),
            "0.0.127.in-addr.arpa": [
                "10.0.0.127.in-addr.arpa. 300 IN PTR mta1.good.test.",
                "11.0.0.127.in-addr.arpa. 300 IN PTR mta2.good.test.",
                "13.0.0.127.in-addr.arpa. 300 IN PTR mta3.good.test.",
                "14.0.0.127.in-addr.arpa. 300 IN PTR mta4.good.test."],
            "8.b.d.0.1.0.0.2.ip6.arpa": ["0.1." + "0." * 22 + "8.b.d.0.1.0.0.2.ip6.arpa. 300 IN "
                                         "PTR mta6.good.test."],
        }
        cls.ub = dnsctl.Unbound(zones).start()
        cls.keys = keys
        cls.conf = cls.config("main", EGRESS)

    @classmethod
    def tearDownClass(cls):
        cls.ub.stop()
        cls.web.stop()
        util.remove_dir(cls.dir)

    @classmethod
    def config(cls, name, egress, servers=None, keys=None, private=True):
        path = os.path.join(cls.dir, name + ".conf")
        eg = ", ".join('{ address = "%s"; ehlo = "%s"; }' % e for e in egress)
        dk = ", ".join('{ domain = "%s"; selector = "sel1"; key = "%s"; }' % (d, k)
                       for d, k in (keys or cls.keys).items())
        with open(path, "w") as f:
            f.write('data_dir = "%s/data";\ndefaults = { ca_file = "%s"; };\n'
                    'dns = { servers = [ "%s" ]; timeout_ms = 300; allow_private = %s; };\n'
                    'egress = ( %s );\ndkim = ( %s );\n'
                    % (cls.dir, cls.ca, servers or cls.ub.server, "true" if private else "false", eg, dk))
        return path

    def doctor(self, *args, conf=None):
        p = subprocess.run([VOLLEY, "doctor", "--config", conf or self.conf, "--json", *args],
                           capture_output=True, text=True, timeout=120)
        try:
            out = json.loads(p.stdout)
        except ValueError:
            raise AssertionError("no JSON: rc %d %s %s" % (p.returncode, p.stdout, p.stderr))
        self.assertEqual(out["exit"], p.returncode)
        return p.returncode, out

    def rows(self, out, check):
        return [r for r in out["checks"] if r["check"] == check]

    def verdicts(self, out, check):
        return [r["result"] for r in self.rows(out, check)]

    def test_good_domain_passes(self):
        rc, out = self.doctor("good.test")
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        self.assertEqual(out["fail"], 0)
        spf = self.rows(out, "spf")
        self.assertEqual([r["result"] for r in spf], ["pass", "pass"])
        self.assertIn("127.0.0.10", spf[0]["subject"])
        self.assertIn("ip4:127.0.0.8/29", spf[0]["detail"])
        self.assertIn("2 of 10", spf[0]["detail"])
        self.assertEqual(self.verdicts(out, "dkim"), ["pass"])
        self.assertIn("rsa-sha256", self.rows(out, "dkim")[0]["detail"])
        self.assertEqual(self.verdicts(out, "dmarc"), ["pass"])
        self.assertEqual(self.verdicts(out, "dmarc-rua"), ["pass"])
        self.assertEqual(self.verdicts(out, "align-dkim"), ["pass"])
        self.assertEqual(self.verdicts(out, "align-spf"), ["pass"])
        self.assertEqual(self.verdicts(out, "ptr"), ["pass", "pass"])
        self.assertEqual(self.verdicts(out, "mx"), ["pass"])
        self.assertIn("mx.good.test", self.rows(out, "mx")[0]["detail"])
        self.assertEqual(self.verdicts(out, "mta-sts"), ["pass"])
        self.assertIn("mode enforce", self.rows(out, "mta-sts")[0]["detail"])
        self.assertIn("fetched", self.rows(out, "mta-sts")[0]["detail"])
        self.assertEqual(self.web.hits.get("mta-sts.good.test", 0) > 0, True)
        self.assertEqual(self.verdicts(out, "tlsa"), ["warn"])
        self.assertEqual(self.verdicts(out, "unsubscribe"), ["warn"])

    def test_table_on_stdout(self):
        p = subprocess.run([VOLLEY, "doctor", "good.test", "--config", self.conf],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stdout.splitlines()
        self.assertTrue(re.match(r"CHECK\s+SUBJECT\s+RESULT\s+DETAIL/FIX", lines[0]), lines[0])
        self.assertTrue(any(re.match(r"dkim\s+sel1\._domainkey\.good\.test\s+pass", l)
                            for l in lines), p.stdout)
        self.assertRegex(lines[-1], r"^\d+ pass, \d+ warn, 0 fail$")

    def test_every_configured_domain_by_default(self):
        rc, out = self.doctor()
        self.assertEqual(rc, 1)
        self.assertEqual(len(out["domains"]), 12)
        subjects = {r["subject"] for r in self.rows(out, "dkim")}
        self.assertIn("sel1._domainkey.good.test", subjects)
        self.assertIn("sel1._domainkey.revoked.test", subjects)

    def test_spf_without_the_address_fails(self):
        rc, out = self.doctor("spfmiss.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "spf"), ["fail", "fail"])
        r = self.rows(out, "spf")[0]
        self.assertIn("fail", r["detail"])
        self.assertIn("ip4:127.0.0.10", r["fix"])
        self.assertEqual(self.verdicts(out, "dkim"), ["pass"])

    def test_mta_sts_policies(self):
        # enforce with an MX outside its mx list: fail
        _, out = self.doctor("spfmiss.test")
        self.assertEqual(self.verdicts(out, "mta-sts"), ["fail"])
        self.assertIn("mx.spfmiss.test", self.rows(out, "mta-sts")[0]["detail"])
        # testing: warn
        rc, out = self.doctor("pnone.test")
        self.assertEqual(self.verdicts(out, "mta-sts"), ["warn"])
        self.assertIn("mode testing", self.rows(out, "mta-sts")[0]["detail"])
        # a record, but no policy host
        _, out = self.doctor("nodmarc.test")
        self.assertEqual(self.verdicts(out, "mta-sts"), ["warn"])
        self.assertIn("no address", self.rows(out, "mta-sts")[0]["detail"])
        # the policy server's certificate is not trusted without the CA
        conf = self.config("noca", EGRESS)
        with open(conf) as f:
            text = f.read().replace('defaults = { ca_file = "%s"; };\n' % self.ca, "")
        with open(conf, "w") as f:
            f.write(text)
        rc, out = self.doctor("good.test", conf=conf)
        self.assertEqual(rc, 0)
        self.assertEqual(self.verdicts(out, "mta-sts"), ["warn"])
        self.assertIn("policy not usable", self.rows(out, "mta-sts")[0]["detail"])

    def test_spf_over_ten_lookups_fails(self):
        rc, out = self.doctor("spfmany.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "spf"), ["fail", "fail"])
        self.assertIn("permerror", self.rows(out, "spf")[0]["detail"])
        self.assertIn("more than 10", self.rows(out, "spf")[0]["detail"])

    def test_spf_a_mx_and_ptr_mechanisms(self):
        # 127.0.0.10 is mta1.good.test's A record; 127.0.0.11 only matches
        # through its PTR name mta2.good.test, which resolves back to it
        rc, out = self.doctor("spfmech.test")
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        spf = self.rows(out, "spf")
        self.assertEqual([r["result"] for r in spf], ["pass", "pass"])
        self.assertIn("a:mta1.good.test", spf[0]["detail"])
        self.assertIn("ptr:good.test", spf[1]["detail"])
        self.assertIn("3 of 10", spf[1]["detail"])

    def test_plus_all_and_a_1024_bit_key_warn(self):
        rc, out = self.doctor("lax.test")
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        self.assertEqual(self.verdicts(out, "spf"), ["warn", "warn"])
        self.assertIn("+all", self.rows(out, "spf")[0]["detail"])
        self.assertEqual(self.verdicts(out, "dkim"), ["warn"])
        self.assertIn("1024 bits", self.rows(out, "dkim")[0]["detail"])

    def test_spf_redirect_loop_fails(self):
        rc, out = self.doctor("spfloop.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "spf"), ["fail", "fail"])
        self.assertIn("permerror", self.rows(out, "spf")[0]["detail"])

    def test_return_path_domain_checked_apart(self):
        rc, out = self.doctor("spfmiss.test", "--return-path", "good.test")
        self.assertEqual(rc, 1)
        spf = self.rows(out, "spf")
        self.assertEqual([r["result"] for r in spf], ["pass", "pass", "fail", "fail"])
        self.assertIn("return path", spf[0]["subject"])
        self.assertIn("From", spf[2]["subject"])
        self.assertEqual(out["return_path"], "good.test")
        # the return path good.test is not aligned with spfmiss.test; DKIM is
        self.assertEqual(self.verdicts(out, "align-spf"), ["warn"])
        self.assertEqual(self.verdicts(out, "mx"), ["pass"])
        self.assertIn("good.test", self.rows(out, "mx")[0]["subject"])

    def test_dkim_key_mismatch_fails(self):
        rc, out = self.doctor("dkimbad.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "dkim"), ["fail"])
        self.assertIn("does not match", self.rows(out, "dkim")[0]["detail"])
        self.assertEqual(self.verdicts(out, "align-dkim"), ["fail"])

    def test_the_matching_record_among_several_is_judged(self):
        # two records at sel1._domainkey.twokeys.test: another key's, then this one's
        rc, out = self.doctor("twokeys.test")
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        self.assertEqual(self.verdicts(out, "dkim"), ["pass"])

    def test_a_subdomain_signed_with_its_parents_key(self):
        # volleyd signs From news.good.test with good.test's key (the nearest
        # parent with keys): d=good.test, aligned relaxed; DMARC from good.test
        rc, out = self.doctor("news.good.test", "--return-path", "good.test")
        dkim = self.rows(out, "dkim")
        self.assertEqual([(r["subject"], r["result"]) for r in dkim],
                         [("sel1._domainkey.good.test", "pass")])
        self.assertEqual(self.verdicts(out, "align-dkim"), ["pass"])
        self.assertIn("parent", self.rows(out, "align-dkim")[0]["detail"])
        self.assertEqual(self.verdicts(out, "align-spf"), ["pass"])
        self.assertEqual(self.verdicts(out, "dmarc"), ["pass"])
        self.assertEqual(self.rows(out, "dmarc")[0]["subject"], "_dmarc.good.test")
        # news.good.test publishes no SPF record of its own
        self.assertEqual(self.verdicts(out, "spf"), ["pass", "pass", "fail", "fail"])
        self.assertEqual(rc, 1)

    def test_revoked_key_fails(self):
        rc, out = self.doctor("revoked.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "dkim"), ["fail"])
        self.assertIn("revoked", self.rows(out, "dkim")[0]["detail"])

    def test_no_dkim_key_configured_fails(self):
        rc, out = self.doctor("nokey.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "dkim"), ["fail"])
        self.assertIn("volley dkim keygen --domain nokey.test", self.rows(out, "dkim")[0]["fix"])

    def test_no_dmarc_fails(self):
        rc, out = self.doctor("nodmarc.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "dmarc"), ["fail"])
        self.assertEqual(self.verdicts(out, "spf"), ["pass", "pass"])

    def test_dmarc_p_none_warns_only(self):
        rc, out = self.doctor("pnone.test")
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        self.assertEqual(self.verdicts(out, "dmarc"), ["warn"])
        self.assertIn("p=none", self.rows(out, "dmarc")[0]["detail"])

    def test_no_mx_fails(self):
        rc, out = self.doctor("nomx.test")
        self.assertEqual(rc, 1)
        self.assertEqual(self.verdicts(out, "mx"), ["fail"])

    def test_ptr_missing_unconfirmed_and_other_name(self):
        conf = self.config("ptr", [("127.0.0.12", "mta1.good.test"),
                                   ("127.0.0.13", "mta3.good.test"),
                                   ("127.0.0.14", "mail.good.test")])
        rc, out = self.doctor("good.test", conf=conf)
        self.assertEqual(rc, 1)
        ptr = {r["subject"]: r for r in self.rows(out, "ptr")}
        self.assertEqual(ptr["127.0.0.12"]["result"], "fail")
        self.assertIn("no PTR", ptr["127.0.0.12"]["detail"])
        self.assertEqual(ptr["127.0.0.13"]["result"], "fail")
        self.assertIn("not forward-confirmed", ptr["127.0.0.13"]["detail"])
        self.assertEqual(ptr["127.0.0.14"]["result"], "warn")
        self.assertIn("mail.good.test", ptr["127.0.0.14"]["detail"])
        # 127.0.0.12-14 are inside 127.0.0.8/29: SPF still passes
        self.assertEqual(self.verdicts(out, "spf"), ["pass"] * 3)

    def test_mx_on_loopback_warns_outside_a_test_world(self):
        # without dns.allow_private, an MX only on 127.0.0.20 takes no bounces from outside
        rc, out = self.doctor("good.test", conf=self.config("public", EGRESS, private=False))
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        self.assertEqual(self.verdicts(out, "mx"), ["warn"])
        self.assertIn("loopback", self.rows(out, "mx")[0]["detail"])

    def test_ipv6_egress(self):
        # 2001:db8::10's PTR under ip6.arpa (32 nibbles), its AAAA back, ip6: in SPF
        rc, out = self.doctor("good.test", conf=self.config("v6", [("2001:db8::10",
                                                                    "mta6.good.test")]))
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        self.assertEqual(self.verdicts(out, "spf"), ["pass"])
        self.assertIn("ip6:2001:db8::10/128", self.rows(out, "spf")[0]["detail"])
        ptr = self.rows(out, "ptr")
        self.assertEqual([(r["subject"], r["result"]) for r in ptr], [("2001:db8::10", "pass")])

    def test_no_egress_warns(self):
        conf = self.config("noegress", [])
        with open(conf) as f:
            text = f.read().replace("egress = (  );\n", "")
        with open(conf, "w") as f:
            f.write(text)
        rc, out = self.doctor("good.test", conf=conf)
        self.assertEqual(rc, 0, json.dumps(out, indent=1))
        self.assertEqual(self.verdicts(out, "spf"), ["warn"])
        self.assertIn("cannot be known", self.rows(out, "spf")[0]["detail"])
        self.assertEqual(self.verdicts(out, "ptr"), ["warn"])

    def test_dns_unreachable_is_exit_3(self):
        with dnsctl.Blackhole() as bh:
            conf = self.config("dead", EGRESS, servers=bh.server)
            rc, out = self.doctor("good.test", conf=conf)
        self.assertEqual(rc, 3)
        self.assertTrue(out["dns_unreachable"])
        self.assertIn("DNS does not answer", out["error"])

    def test_usage_errors_are_exit_2(self):
        for args in (["--bogus"], ["a.test", "b.test"], ["--config"]):
            p = subprocess.run([VOLLEY, "doctor", *args], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(p.returncode, 2, args)
        p = subprocess.run([VOLLEY, "doctor", "--config", os.path.join(self.dir, "none.conf")],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([VOLLEY, "doctor", "--help"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("volley doctor", p.stdout)
