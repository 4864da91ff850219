"""volleyd delivering under DANE (RFC 7672) through a real DNSSEC world:
zones signed with ldns, served by NSD, validated by unbound (dnssec.py).
The receiving sink presents a certificate issued by a test CA; TLSA records
pin it (3 1 1), or its CA (2 0 1), or something else (a mismatch: nothing
may be sent). Unsigned zones' TLSA records are not used; a TLSA RRset
that fails validation makes the host unusable; dane-only refuses to send
without DANE."""

import os
import subprocess

from . import dnssec, util
from .daemon import VolleydTest, simple_job
from .pki import TestCA
from .sinkctl import Sink
from .test_mta_sts import PolicyServer, policy

NAMES = ["mx.good.test", "mx.ta.test", "mx.bad.test", "mx.none.test", "mx.plain.test",
         "mx.weird.test", "mx1.walk.test", "mx2.walk.test"]


def make_certs(folder, names=NAMES):
    """A test CA and, issued by it, the sink's certificate for names; the
    chain file holds the key, the certificate and the CA's."""
    def run(*argv):
        subprocess.run(argv, cwd=folder, check=True, capture_output=True, timeout=30)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Volley DANE Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "mx.key", "-out", "mx.csr", "-subj", "/CN=" + names[0])
    with open(os.path.join(folder, "ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n"
                % ",".join("DNS:" + n for n in names))
    run("openssl", "x509", "-req", "-in", "mx.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "mx.pem", "-days", "2", "-extfile", "ext.cnf")
    chain = os.path.join(folder, "chain.pem")
    with open(chain, "w") as out:
        for part in ("mx.pem", "ca.pem"):
            with open(os.path.join(folder, part)) as f:
                out.write(f.read())
    return chain, os.path.join(folder, "mx.key"), os.path.join(folder, "mx.pem"), \
        os.path.join(folder, "ca.pem")


def zone(name, host, port, tlsa=None):
    lines = ["%s. 300 IN MX 10 mx.%s." % (name, name), "mx.%s. 300 IN A %s" % (name, host)]
    if tlsa:
        lines.append("_%d._tcp.mx.%s. 300 IN TLSA %s" % (port, name, tlsa))
    return lines


class DaneDelivery(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-dane-")
        chain, key, leaf, ca = make_certs(cls.dir)
        cls.leaf = leaf
        cls.sink = Sink("--tls", "--cert", chain, "--key", key, hosts=("127.0.0.2",)).start()
        p = cls.sink.port
        ee = dnssec.tlsa_3_1_1(leaf)
        wrong = "3 1 1 " + "ab" * 32
        zones = {
            "good.test": zone("good.test", "127.0.0.2", p, ee),
            "ta.test": zone("ta.test", "127.0.0.2", p, dnssec.tlsa_2_0_1(ca)),
            "bad.test": zone("bad.test", "127.0.0.2", p, wrong),
            "none.test": zone("none.test", "127.0.0.2", p),
            "plain.test": zone("plain.test", "127.0.0.2", p, wrong),
            # the host is signed, its TLSA RRset lives in a zone of its own
            # whose signatures do not verify: the TLSA lookup fails
            "weird.test": zone("weird.test", "127.0.0.2", p),
            # two MX hosts on one sink: the preferred one fails DANE
            "walk.test": ["walk.test. 300 IN MX 10 mx1.walk.test.",
                          "walk.test. 300 IN MX 20 mx2.walk.test.",
                          "mx1.walk.test. 300 IN A 127.0.0.2",
                          "mx2.walk.test. 300 IN A 127.0.0.2",
                          "_%d._tcp.mx1.walk.test. 300 IN TLSA %s" % (p, wrong),
                          "_%d._tcp.mx2.walk.test. 300 IN TLSA %s" % (p, ee)],
            "_tcp.mx.weird.test": ["_%d._tcp.mx.weird.test. 300 IN TLSA %s" % (p, ee)],
            # MX hosts that are CNAMEs (RFC 7672 2.2.2): the target's TLSA
            # records first (a mismatch there wins over a match at the MX
            # name), the MX name's when the target has none
            "alias.test": ["alias.test. 300 IN MX 10 mx.alias.test.",
                           "mx.alias.test. 300 IN CNAME host.alias.test.",
                           "host.alias.test. 300 IN A 127.0.0.2",
                           "_%d._tcp.host.alias.test. 300 IN TLSA %s" % (p, ee),
                           "_%d._tcp.mx.alias.test. 300 IN TLSA %s" % (p, wrong)],
            "alias2.test": ["alias2.test. 300 IN MX 10 mx.alias2.test.",
                            "mx.alias2.test. 300 IN CNAME host.alias2.test.",
                            "host.alias2.test. 300 IN A 127.0.0.2",
                            "_%d._tcp.mx.alias2.test. 300 IN TLSA %s" % (p, ee)],
            # DANE and an enforced MTA-STS policy whose mx list leaves the
            # host out: DANE takes precedence (RFC 8461 2)
            "both.test": zone("both.test", "127.0.0.2", p, ee) + [
                'both.test. 300 IN TXT "v=spf1 -all"',
                '_mta-sts.both.test. 300 IN TXT "v=STSv1; id=b1;"',
                "mta-sts.both.test. 300 IN A 127.0.0.42"],
            "alias3.test": ["alias3.test. 300 IN MX 10 mx.alias3.test.",
                            "mx.alias3.test. 300 IN CNAME host.alias3.test.",
                            "host.alias3.test. 300 IN A 127.0.0.2",
                            "_%d._tcp.host.alias3.test. 300 IN TLSA %s" % (p, wrong),
                            "_%d._tcp.mx.alias3.test. 300 IN TLSA %s" % (p, ee)],
        }
        web_ca = TestCA(util.tempdir("volley-dane-web-"), "Volley DANE Web CA")
        cls.web_dir, cls.web_ca = web_ca.folder, web_ca.ca_pem
        wchain, wkey, _ = web_ca.issue("web", ["mta-sts.both.test"])
        cls.web = PolicyServer("127.0.0.42", wchain, wkey).start()
        cls.web.pages["mta-sts.both.test"] = (200, "text/plain",
                                              policy("enforce", "nothing.invalid"))
        cls.world = dnssec.DnssecWorld(zones, bogus=["_tcp.mx.weird.test"],
                                       unsigned=["plain.test"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.web.stop()
        util.remove_dir(cls.web_dir)
        cls.world.stop()
        cls.sink.stop()
        util.remove_dir(cls.dir)

    def daemon(self, rules=""):
        return self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; allow_private = true; timeout_ms = 2000; };\n'
            'defaults = { port = %d; retry = [ "1s" ]; ca_file = "%s"; };\n%s'
            % (self.world.resolver, self.sink.port, self.web_ca, rules)))

    def delivered_with(self, domain, dane):
        d = self.daemon()
        jid = self.submit_to(d, domain)
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        self.assertEqual(len(self.sink.new_messages(2, wait=5)), 2)
        for e in self.events(d, jid, "Delivery"):
            self.assertEqual(e["tls"]["dane"], dane, e)
            self.assertEqual(e["tls"]["policy"], "dane", e)
            self.assertEqual(e["mx"], "mx." + domain)

    def test_tls_check_shows_validated_tlsa_records(self):
        d = self.daemon()
        j = d.request("GET", "/v1/tls-check?domain=good.test").json()
        self.assertTrue(j["mx"]["dnssec"], j)
        h = j["hosts"][0]
        self.assertEqual(h["name"], "mx.good.test")
        self.assertTrue(h["tlsa"]["dnssec"], j)
        self.assertEqual(h["tlsa"]["usable"], 1, j)
        self.assertEqual(h["tlsa"]["records"], [dnssec.tlsa_3_1_1(self.leaf)], j)
        self.assertIn("DANE", h["volley_would"], j)
        h = d.request("GET", "/v1/tls-check?domain=plain.test").json()["hosts"][0]
        self.assertEqual(h["tlsa"]["status"], "not looked up", h)   # unsigned zone
        h = d.request("GET", "/v1/tls-check?domain=weird.test").json()["hosts"][0]
        self.assertIn("lookup failed", h["volley_would"], h)

    def test_dane_ee_match_is_delivered_authenticated(self):
        self.delivered_with("good.test", True)

    def test_dane_ta_on_the_issuing_ca_is_delivered_authenticated(self):
        self.delivered_with("ta.test", True)

    def test_no_tlsa_records_means_tls_without_authentication(self):
        self.delivered_with("none.test", False)

    def test_tlsa_in_an_unsigned_zone_is_not_used(self):
        # the records there would not match: unused, they cannot block
        self.delivered_with("plain.test", False)

    def test_a_mismatch_defers_and_nothing_is_sent(self):
        self.sink.new_messages(0)
        d = self.daemon()
        jid = self.submit_to(d, "bad.test")
        rows = self.deferred(d, jid, 2)
        text = rows[0]["reason"]
        self.assertIn("DANE", text)
        self.assertIn("mx.bad.test", text)
        self.assertIn("3 1 1 abababab", text)
        self.assertEqual(rows[0]["bounce_class"], "tls", rows[0])
        ev = self.events(d, jid, "TransientFailure")
        self.assertTrue(ev and all(e["response"] is None and "DANE" in e["reason"]
                                   for e in ev), ev)
        self.assertEqual(self.sink.new_messages(0, wait=1), [], "the sink got nothing")
        j = d.request("GET", "/v1/jobs/" + jid).json()
        self.assertEqual(j["counts"]["delivered"], 0, j)

    def test_a_tlsa_lookup_that_fails_validation_defers(self):
        self.sink.new_messages(0)
        d = self.daemon()
        jid = self.submit_to(d, "weird.test")
        rows = self.deferred(d, jid, 2)
        self.assertIn("TLSA lookup failed", rows[0]["reason"])
        self.assertEqual(self.sink.new_messages(0, wait=1), [])

    def test_dane_only_without_tlsa_defers(self):
        self.sink.new_messages(0)
        d = self.daemon('domains = ( { match = "none.test"; tls = "dane-only"; } );\n')
        jid = self.submit_to(d, "none.test")
        rows = self.deferred(d, jid, 2)
        self.assertIn("dane-only", rows[0]["reason"])
        self.assertEqual(self.sink.new_messages(0, wait=1), [])

    def test_dane_only_with_a_match_delivers(self):
        d = self.daemon('domains = ( { match = "good.test"; tls = "dane-only"; } );\n')
        jid = self.submit_to(d, "good.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        self.sink.new_messages(2, wait=5)
        self.assertTrue(all(e["tls"]["dane"] for e in self.events(d, jid, "Delivery")))

    def test_two_names_on_one_address_keep_their_own_records(self):
        # mx.good.test and mx.bad.test are the same address and port: one
        # host's TLSA records must never vouch for (or block) the other's
        self.sink.new_messages(0)
        d = self.daemon()
        jid = self.submit_to(d, "good.test")
        jid2 = self.submit_to(d, "bad.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        self.assertTrue(all(e["tls"]["dane"] for e in self.events(d, jid, "Delivery")))
        rows = self.deferred(d, jid2, 2)
        self.assertIn("mx.bad.test", rows[0]["reason"])
        got = {m.env["rcpt"][0].split("@")[1] for m in self.sink.new_messages(2, wait=5)}
        self.assertEqual(got, {"good.test"})

    def test_dane_takes_precedence_over_an_enforced_mta_sts_policy(self):
        self.sink.new_messages(0)
        d = self.daemon()
        jid = self.submit_to(d, "both.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        for e in self.events(d, jid, "Delivery"):
            self.assertTrue(e["tls"]["dane"], e)
            self.assertEqual(e["tls"]["mta_sts"], "enforce", e)   # it was fetched
        self.assertEqual(self.web.hits.get("mta-sts.both.test"), 1)
        self.assertEqual(len(self.sink.new_messages(2, wait=5)), 2)

    def test_a_cname_mx_uses_the_targets_tlsa_records_first(self):
        self.sink.new_messages(0)
        d = self.daemon()
        for domain in ("alias.test", "alias2.test"):
            jid = self.submit_to(d, domain)
            j = self.wait_done(d, jid)
            self.assertEqual(j["counts"]["delivered"], 2, (domain, j))
            self.assertTrue(all(e["tls"]["dane"] for e in self.events(d, jid, "Delivery")))
        self.assertEqual(len(self.sink.new_messages(4, wait=5)), 4)
        jid = self.submit_to(d, "alias3.test")         # a mismatch at the target
        rows = self.deferred(d, jid, 2)
        self.assertIn("_tcp.host.alias3.test", rows[0]["reason"], rows[0])
        self.assertEqual(self.sink.new_messages(0, wait=1), [])

    def test_a_host_failing_dane_passes_the_message_to_the_next_mx(self):
        self.sink.new_messages(0)
        d = self.daemon()
        jid = self.submit_to(d, "walk.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        ev = self.events(d, jid, "Delivery")
        self.assertEqual({e["mx"] for e in ev}, {"mx2.walk.test"})
        self.assertTrue(all(e["tls"]["dane"] and e["attempt"] == 1 for e in ev), ev)
        self.assertEqual(len(self.sink.new_messages(2, wait=5)), 2)
