"""REQUIRETLS (RFC 8689) end to end: a job with "require_tls": true is sent
with MAIL FROM ... REQUIRETLS, and only over TLS authenticated by DANE to a
host that offers REQUIRETLS; anywhere else nothing is sent, the recipient
is deferred (stage requiretls, class tls) and, when its job expires, expires
with class tls. The DNSSEC world is test_delivery_dane.py's: zones signed
with ldns, served by NSD, validated by unbound (dnssec.py).

Two sinks on one port: 127.0.0.2 with --requiretls, 127.0.0.3 without."""

import json
import os
import subprocess

from . import dnssec, util
from .daemon import VOLLEY, VolleydTest, simple_job
from .sinkctl import Sink
from .test_delivery_dane import make_certs, zone

RTLS, PLAIN = "127.0.0.2", "127.0.0.3"   # the sink with --requiretls, without


class RequireTls(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-requiretls-")
        chain, key, leaf, _ = make_certs(cls.dir)
        tls = ("--tls", "--cert", chain, "--key", key)
        cls.rtls = Sink(*tls, "--requiretls", hosts=(RTLS,)).start()
        p = cls.rtls.port
        cls.plain = Sink(*tls, hosts=(PLAIN,), port=p).start()
        ee = dnssec.tlsa_3_1_1(leaf)
        zones = {
            "rtls.test": zone("rtls.test", RTLS, p, ee),        # DANE, REQUIRETLS
            "plain.test": zone("plain.test", PLAIN, p, ee),     # DANE, no REQUIRETLS
            "notlsa.test": zone("notlsa.test", RTLS, p),        # REQUIRETLS, no DANE
            # the preferred MX does not offer REQUIRETLS, the next one does
            "walk.test": ["walk.test. 300 IN MX 10 mx1.walk.test.",
                          "walk.test. 300 IN MX 20 mx2.walk.test.",
                          "mx1.walk.test. 300 IN A " + PLAIN,
                          "mx2.walk.test. 300 IN A " + RTLS,
                          "_%d._tcp.mx1.walk.test. 300 IN TLSA %s" % (p, ee),
                          "_%d._tcp.mx2.walk.test. 300 IN TLSA %s" % (p, ee)],
        }
        cls.world = dnssec.DnssecWorld(zones).start()

    @classmethod
    def tearDownClass(cls):
        cls.world.stop()
        cls.rtls.stop()
        cls.plain.stop()
        util.remove_dir(cls.dir)

    def setUp(self):
        self.rtls.new_messages(0)
        self.plain.new_messages(0)

    def daemon(self, defaults=""):
        return self.start_daemon(config=(
            'dns = { servers = [ "%s" ]; allow_private = true; timeout_ms = 2000; };\n'
            'defaults = { port = %d; retry = [ "1s" ]; %s };\n'
            % (self.world.resolver, self.rtls.port, defaults)))

    def submit(self, d, domain, n=2, require_tls=True):
        return self.submit_to(d, domain, n, require_tls=require_tls)

    def rows(self, d, jid):
        return list(d.request("GET", "/v1/jobs/%s/recipients" % jid).lines())

    def assert_deferred(self, d, jid, why, n=2):
        rows = self.deferred(d, jid, n)
        for r in rows:
            self.assertEqual(r["bounce_class"], "tls", r)
            self.assertTrue(r["reason"].startswith("requiretls: REQUIRETLS: "), r)
            self.assertIn(why, r["reason"], r)
        ev = self.events(d, jid, "TransientFailure")
        self.assertTrue(ev and all(e["response"] is None and e["bounce_class"] == "tls"
                                   and why in e["reason"] for e in ev), ev)

    def test_delivered_with_requiretls_over_dane(self):
        d = self.daemon()
        jid = self.submit(d, "rtls.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        self.assertIs(j["require_tls"], True, j)
        msgs = self.rtls.new_messages(2, wait=5)
        self.assertEqual(len(msgs), 2)
        self.assertTrue(all(m.env["requiretls"] is True for m in msgs), msgs)
        ev = self.events(d, jid, "Delivery")
        self.assertTrue(ev and all(e["tls"]["dane"] for e in ev), ev)

    def test_host_without_requiretls_defers_and_gets_nothing(self):
        d = self.daemon()
        jid = self.submit(d, "plain.test")
        self.assert_deferred(d, jid, "mx.plain.test does not advertise REQUIRETLS")
        self.assertEqual(self.plain.new_messages(0, wait=1), [], "the sink got nothing")
        j = d.request("GET", "/v1/jobs/" + jid).json()
        self.assertEqual(j["counts"]["delivered"], 0, j)

    def test_unauthenticated_tls_defers(self):
        # no TLSA records: TLS under policy dane, but nobody vouches for it
        d = self.daemon()
        jid = self.submit(d, "notlsa.test")
        self.assert_deferred(d, jid, "the connection to mx.notlsa.test is not "
                             "authenticated (DANE or a verified certificate is required)")
        self.assertEqual(self.rtls.new_messages(0, wait=1), [])

    def test_messages_without_it_share_the_host(self):
        # the same host and pool: plain mail goes, REQUIRETLS mail waits
        d = self.daemon()
        jid = self.submit(d, "plain.test", require_tls=True)
        jid2 = self.submit(d, "plain.test", require_tls=False)
        j2 = self.wait_done(d, jid2)
        self.assertEqual(j2["counts"]["delivered"], 2, j2)
        self.assertIs(j2["require_tls"], False, j2)
        self.deferred(d, jid, 2)
        msgs = self.plain.new_messages(2, wait=5)
        self.assertEqual(len(msgs), 2)
        self.assertTrue(all(m.env["requiretls"] is False for m in msgs), msgs)
        self.assertEqual(self.plain.new_messages(0, wait=1), [])

    def test_the_next_mx_that_offers_it_gets_the_message(self):
        d = self.daemon()
        jid = self.submit(d, "walk.test")
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2, j)
        ev = self.events(d, jid, "Delivery")
        self.assertEqual({e["mx"] for e in ev}, {"mx2.walk.test"})
        self.assertTrue(all(e["attempt"] == 1 for e in ev), ev)
        self.assertEqual(len(self.rtls.new_messages(2, wait=5)), 2)
        self.assertEqual(self.plain.new_messages(0, wait=1), [])

    def test_expires_with_class_tls_never_downgraded(self):
        d = self.daemon('max_age = "3s";')
        jid = self.submit(d, "plain.test")
        j = self.wait_done(d, jid, timeout=20)
        self.assertEqual(j["counts"]["expired"], 2, j)
        self.assertEqual(j["counts"]["delivered"], 0, j)
        for r in self.rows(d, jid):
            self.assertEqual((r["state"], r["bounce_class"]), ("expired", "tls"), r)
            self.assertIn("does not advertise REQUIRETLS", r["reason"], r)
        self.assertTrue(self.events(d, jid, "Expiration"))
        self.assertEqual(self.plain.new_messages(0, wait=1), [], "never sent")


class RequireTlsJob(VolleydTest):
    """The job field: its type checked, kept across a restart, shown."""

    def test_wrong_type_is_a_400_naming_the_field(self):
        d = self.start_daemon()
        for bad in ("yes", 1, None, {"x": 1}):
            with self.subTest(bad=bad):
                e = self.assertError(d.submit(simple_job(1, require_tls=bad)), 400,
                                     "wrong_type", "require_tls")
                self.assertIn("require_tls must be a boolean", e["message"])
        self.assertEqual(d.jobs_on_disk(), [])

    def test_kept_in_the_spool_and_shown(self):
        # a closed port: the job waits, deferred
        conf = 'defaults = { route = "127.0.0.1:%d"; };\n' % util.free_port()
        d = self.start_daemon(config=conf)
        on = d.submit(simple_job(1, require_tls=True)).json()["id"]
        off = d.submit(simple_job(1)).json()["id"]
        d.stop()
        d.start()
        self.assertIs(d.request("GET", "/v1/jobs/" + on).json()["require_tls"], True)
        self.assertIs(d.request("GET", "/v1/jobs/" + off).json()["require_tls"], False)
        listed = {j["id"]: j["require_tls"] for j in d.request("GET", "/v1/jobs").json()["jobs"]}
        self.assertEqual(listed, {on: True, off: False})
        with open(os.path.join(d.data_dir, "jobs", on, "job.json")) as f:
            self.assertIs(json.load(f)["job"]["require_tls"], True)
        for jid, want in ((on, "yes"), (off, "no")):
            r = subprocess.run([VOLLEY, "--socket", d.sock, "status", jid], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r)
            kv = dict(l.split(None, 1) for l in r.stdout.splitlines())
            self.assertEqual(kv["require_tls"], want, r.stdout)

    def test_transactional_jobs_take_it_too(self):
        conf = 'defaults = { route = "127.0.0.1:%d"; };\n' % util.free_port()
        d = self.start_daemon(config=conf)
        r = d.submit(simple_job(1, require_tls=True, priority="transactional"))
        self.assertEqual(r.status, 202, r)
        j = d.request("GET", "/v1/jobs/" + r.json()["id"]).json()
        self.assertEqual((j["priority"], j["require_tls"]), ("transactional", True))
