"""volleyd sending through a smarthost given by name, over implicit TLS
(RFC 8314) on port 465, with AUTH: the route's name resolved through a
real DNS world (DNSSEC-signed zones served by NSD, validated by unbound:
dnssec.py), volley-sink --implicit-tls --auth on 127.x.y.z:465 as the
relay. A wrong password defers; DANE works against the relay's name
(TLSA at _465._tcp.NAME); a name that does not resolve defers (never
bounces) naming the route; policy none with implicit TLS is a
configuration error. A second class, on a plain unbound whose data can
change, follows the name to a new address once its TTL is over, and
shows that the port (465) is what turns implicit TLS on.

A third class puts a real MTA there: a private Postfix in smtps wrapper
mode with SASL (postfixctl.py), relaying on to a sink.

`verify` against the relay's name needs a CA file volleyd can be given
(per-domain ca_file, not in this branch): not tested here."""

import os
import random
import socket
import subprocess
import time
import unittest

from . import dnsctl, dnssec, postfixctl, util
from .daemon import VOLLEYD, VolleydTest, simple_job
from .sinkctl import Sink
from .test_delivery_dane import make_certs

RELAY = "relay.smart.test"
BAD = "bad.smart.test"          # TLSA records its certificate does not match
OTHER = "other.smart.test"      # not a name its certificate carries


def loopback_465():
    """A random 127.x.y.z whose port 465 is free (other tests, and other
    people's, may use 465 on other loopback addresses)."""
    for _ in range(50):
        host = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                                 random.randint(2, 254))
        s = socket.socket()
        try:
            s.bind((host, 465))
            return host
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no loopback address with port 465 free")


def rcpts(domain, n):
    return [{"email": "u%d@%s" % (i, domain), "substitutions": {"name": "x"}}
            for i in range(n)]


def rule(domain, route, tls, extra=""):
    return ('{ match = "%s"; route = "%s"; tls = "%s"; %s }'
            % (domain, route, tls, extra))


AUTH = 'auth = { user = "u"; password = "p"; };'


class SmarthostByName(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-smarthost-")
        chain, key, leaf, cls.ca = make_certs(cls.dir, names=[RELAY, BAD])
        cls.addr = loopback_465()
        cls.sink = Sink("--implicit-tls", "--cert", chain, "--key", key, "--auth", "u:p",
                        hosts=(cls.addr,), port=465).start()
        zones = {"smart.test": [
            "%s. 300 IN A %s" % (RELAY, cls.addr),
            "_465._tcp.%s. 300 IN TLSA %s" % (RELAY, dnssec.tlsa_3_1_1(leaf)),
            "%s. 300 IN A %s" % (BAD, cls.addr),
            "_465._tcp.%s. 300 IN TLSA 3 1 1 %s" % (BAD, "ab" * 32),
            "%s. 300 IN A %s" % (OTHER, cls.addr),
        ]}
        try:
            cls.world = dnssec.DnssecWorld(zones).start()
        except Exception:
            cls.sink.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.world.stop()
        cls.sink.stop()
        util.remove_dir(cls.dir)

    def daemon(self, rules):
        # no allow_private: a relay the operator named may be private
        return self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; timeout_ms = 2000; };\n'
            'defaults = { retry = [ "1s" ]; };\ndomains = ( %s );\n'
            % (self.world.resolver, rules)))

    def test_implicit_tls_on_465_to_a_smarthost_by_name_with_auth(self):
        self.sink.new_messages(0)
        d = self.daemon(rule("a.test", RELAY + ":465", "encrypt", AUTH))
        jid = self.submit_to(d, "a.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        got = self.sink.new_messages(2, wait=5)
        self.assertEqual({m.env["rcpt"][0] for m in got}, {"u0@a.test", "u1@a.test"})
        for m in got:   # AUTH inside TLS, TLS from the start
            self.assertEqual(m.env["auth"], "u", m.env)
            self.assertTrue(m.env["tls"] and m.env["tls"]["version"].startswith("TLS"), m.env)
        ev = self.events(d, jid, "Delivery")
        self.assertEqual(len(ev), 2, ev)
        for e in ev:
            self.assertEqual(e["mx"], RELAY, e)
            self.assertEqual(e["peer_address"], "%s:465" % self.addr, e)
            self.assertTrue(e["tls"]["version"], e)
            self.assertEqual((e["tls"]["policy"], e["tls"]["dane"]), ("encrypt", False), e)
        q = [x for x in d.request("GET", "/v1/queues").json()["queues"]
             if x["site"] == RELAY + ":465"]
        self.assertEqual(len(q), 1, q)
        self.assertEqual(q[0]["hosts"], [{"name": RELAY, "address": "%s:465" % self.addr}])
        self.assertTrue(q[0]["key"].endswith("|implicit"), q[0])
        self.assertIs(q[0]["route"], True, q[0])

    def test_a_wrong_password_defers_and_nothing_is_sent(self):
        self.sink.new_messages(0)
        d = self.daemon(rule("a.test", RELAY + ":465", "encrypt",
                             'auth = { user = "u"; password = "wrong"; };'))
        jid = self.submit_to(d, "a.test")
        rows = self.deferred(d, jid, 2)
        for r in rows:
            self.assertEqual((r["response"]["code"], r["response"]["enhanced"]),
                             (535, "5.7.8"), r)
        self.assertEqual(self.sink.new_messages(0, wait=1), [])

    def test_dane_against_the_relays_name(self):
        self.sink.new_messages(0)
        d = self.daemon(rule("a.test", RELAY + ":465", "dane", AUTH) + ",\n" +
                        rule("b.test", BAD + ":465", "dane", AUTH))
        jid = self.submit_to(d, "a.test")
        jid_bad = self.submit_to(d, "b.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        ev = self.events(d, jid, "Delivery")
        self.assertTrue(ev and all(e["tls"]["dane"] and e["mx"] == RELAY for e in ev), ev)
        rows = self.deferred(d, jid_bad, 2)
        text = rows[0]["reason"]
        self.assertIn("DANE", text)
        self.assertIn(BAD, text)
        got = {m.env["rcpt"][0].split("@")[1] for m in self.sink.new_messages(2, wait=5)}
        self.assertEqual(got, {"a.test"}, "the mismatching name got nothing")

    def test_verify_against_the_relays_name_with_its_ca_file(self):
        self.sink.new_messages(0)
        ca = 'ca_file = "%s"; %s' % (self.ca, AUTH)
        d = self.daemon(rule("a.test", RELAY + ":465", "verify", ca) + ",\n" +
                        rule("b.test", OTHER + ":465", "verify", ca) + ",\n" +
                        rule("c.test", RELAY + ":465", "verify", AUTH))
        jid = self.submit_to(d, "a.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        ev = self.events(d, jid, "Delivery")
        self.assertTrue(ev and all(e["tls"]["verified"] for e in ev), ev)
        for dom, why in (("b.test", "hostname mismatch"),       # another name
                         ("c.test", "self-signed certificate in certificate chain")):  # system store
            rows = self.deferred(d, self.submit_to(d, dom), 2)
            text = rows[0]["reason"]
            self.assertIn("TLS policy verify", text, (dom, text))
            self.assertIn(why, text, (dom, text))
        got = {m.env["rcpt"][0].split("@")[1] for m in self.sink.new_messages(2, wait=5)}
        self.assertEqual(got, {"a.test"})

    def test_a_route_name_that_does_not_resolve_defers_naming_it(self):
        d = self.daemon(rule("a.test", "nothere.smart.test:465", "encrypt", AUTH))
        jid = self.submit_to(d, "a.test")
        rows = self.deferred(d, jid, 2)
        for r in rows:
            self.assertEqual(r["state"], "deferred", r)   # NXDOMAIN: not a bounce
            self.assertIn("route nothere.smart.test:465", r["reason"], r)
            self.assertEqual(r["bounce_class"], "dns", r)
        j = d.request("GET", "/v1/jobs/" + jid).json()
        self.assertEqual(j["counts"]["bounced"], 0, j)


class CheckConfig(VolleydTest):
    def check(self, text):
        folder = util.tempdir("volley-smarthost-conf-", cleanup=self.addCleanup)
        path = os.path.join(folder, "volley.conf")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([VOLLEYD, "--check-config", "--config", path],
                              capture_output=True, text=True, timeout=20)

    def test_named_routes_and_implicit_tls_are_accepted(self):
        p = self.check('domains = ( %s,\n %s );\n'
                       % (rule("a.test", RELAY + ":465", "encrypt", AUTH),
                          rule("b.test", "relay.smart.test:587", "verify",
                               "implicit_tls = true;")))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('route = "relay.smart.test:465";', p.stdout)
        self.assertIn("implicit_tls = true;", p.stdout)

    def test_implicit_tls_with_policy_none_is_refused(self):
        p = self.check('domains = ( %s );\n' % rule("a.test", RELAY + ":465", "none"))
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("domains[0]: implicit TLS", p.stderr)
        self.assertIn('tls = "none"', p.stderr)
        p = self.check('domains = ( { match = "a.test"; route = "bad name:25"; } );\n')
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("domains[0].route", p.stderr)


class SmarthostMoves(VolleydTest):
    """The relay's name on a plain unbound whose data the test changes."""

    @classmethod
    def setUpClass(cls):
        cls.a1, cls.a2 = loopback_465(), loopback_465()
        cls.s1 = Sink("--implicit-tls", "--auth", "u:p", hosts=(cls.a1,), port=465).start()
        cls.s2 = Sink("--implicit-tls", "--auth", "u:p", hosts=(cls.a2,), port=465).start()
        cls.ub = dnsctl.Unbound({"moving.test": ["relay.moving.test. 1 IN A %s" % cls.a1]})
        try:
            cls.ub.start()
        except Exception:
            cls.s1.stop()
            cls.s2.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        for x in (cls.ub, cls.s2, cls.s1):
            x.stop()

    def daemon(self, extra=""):
        return self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; timeout_ms = 1000; min_ttl = 1; };\n'
            'defaults = { retry = [ "1s" ]; };\ntimeouts = { greeting = "1s"; };\n'
            'domains = ( %s );\n'
            % (self.ub.server, rule("m.test", "relay.moving.test:465", "encrypt",
                                    AUTH + extra))))

    def test_the_route_name_is_resolved_again_after_its_ttl(self):
        d = self.daemon()
        self.wait_done(d, self.submit_to(d, "m.test"))
        self.assertEqual(len(self.s1.new_messages(2, wait=5)), 2)
        ctl = [dnsctl.UNBOUND_CONTROL, "-c", self.ub.conf]
        subprocess.run(ctl + ["local_data_remove", "relay.moving.test."], check=True,
                       capture_output=True, timeout=10)
        subprocess.run(ctl + ["local_data", "relay.moving.test. 1 IN A %s" % self.a2],
                       check=True, capture_output=True, timeout=10)
        time.sleep(2.5)                               # the 1 s TTL passes
        j = self.wait_done(d, self.submit_to(d, "m.test"))
        self.assertEqual(j["counts"]["delivered"], 2, j)
        self.assertEqual(len(self.s2.new_messages(2, wait=5)), 2, "the new address is used")
        q = [x for x in d.request("GET", "/v1/queues").json()["queues"]
             if x["site"] == "relay.moving.test:465"]
        self.assertEqual([h["address"] for h in q[0]["hosts"]], ["%s:465" % self.a2], q)
        # put the first address back for the other tests
        subprocess.run(ctl + ["local_data_remove", "relay.moving.test."], check=True,
                       capture_output=True, timeout=10)
        subprocess.run(ctl + ["local_data", "relay.moving.test. 1 IN A %s" % self.a1],
                       check=True, capture_output=True, timeout=10)

    def test_port_465_is_what_turns_implicit_tls_on(self):
        # implicit_tls = false: volleyd waits for a banner the relay never
        # sends in clear text (it waits for a ClientHello): the greeting
        # times out, nothing is sent
        time.sleep(1.5)                               # any earlier answer expires
        d = self.daemon(" implicit_tls = false;")
        jid = self.submit_to(d, "m.test")
        rows = self.deferred(d, jid, 2)
        self.assertIn("greeting", rows[0]["reason"], rows[0])


@unittest.skipUnless(postfixctl.available(), "needs root and Debian's Postfix")
class PostfixSmarthost(VolleydTest):
    """A real MTA as the smarthost: Postfix's smtpd in wrapper mode (implicit
    TLS) on 127.x.y.z:465, AUTH required, relaying on to a sink."""

    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-smarthost-pf-")
        chain, key, _, _ = make_certs(cls.dir, names=[RELAY])
        cls.addr = loopback_465()
        cls.sink = Sink().start()
        cls.ub = cls.relay = None
        try:
            cls.relay = postfixctl.Relay(cls.addr, 465, chain, key, cls.sink.host,
                                         cls.sink.port).start()
            cls.ub = dnsctl.Unbound({"smart.test": ["%s. 300 IN A %s" % (RELAY, cls.addr)]})
            cls.ub.start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for x in (cls.ub, cls.relay, cls.sink):
            if x:
                x.stop()
        util.remove_dir(cls.dir)

    def daemon(self, auth):
        return self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; timeout_ms = 1000; };\n'
            'defaults = { retry = [ "1s" ]; };\ndomains = ( %s );\n'
            % (self.ub.server, rule("a.test", RELAY + ":465", "encrypt", auth))))

    def test_implicit_tls_and_auth_to_postfix_by_name(self):
        self.sink.new_messages(0)
        d = self.daemon(AUTH)
        jid = self.submit_to(d, "a.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        ev = self.events(d, jid, "Delivery")
        self.assertTrue(all(e["tls"]["version"] and e["mx"] == RELAY and
                            e["peer_address"] == "%s:465" % self.addr for e in ev), ev)
        # Postfix relayed them on: its Received field says TLS, its log AUTH
        got = self.sink.new_messages(2, wait=20)
        self.assertEqual({m.env["rcpt"][0] for m in got}, {"u0@a.test", "u1@a.test"})
        for m in got:
            self.assertRegex(m.data.decode(errors="replace"),
                             r"Received: from [^\r]*\r\n\t\(using TLSv1\.[23] ", m.data[:600])
        log = self.relay.log_text()
        self.assertIn("sasl_method=PLAIN, sasl_username=u", log)
        self.assertIn(("PLAIN", "u", True), self.relay.auth.requests)

    def test_a_wrong_password_is_refused_by_postfix(self):
        self.sink.new_messages(0)
        d = self.daemon('auth = { user = "u"; password = "wrong"; };')
        jid = self.submit_to(d, "a.test")
        rows = self.deferred(d, jid, 2)
        for r in rows:
            self.assertEqual((r["response"]["code"], r["response"]["enhanced"]),
                             (535, "5.7.8"), r)
        self.assertIn(("PLAIN", "u", False), self.relay.auth.requests)
        self.assertEqual(self.sink.new_messages(0, wait=1), [])
