"""TLS to Redis (docs/cluster.md), end to end: redis-server of the test's
own with TLS only (--port 0, --tls-port on a free loopback port, stopped
by PID), certificates from a throwaway CA (pki.TestCA, the openssl
command line), volleyd nodes and one volley-sink. Checks: nodes reach
shared mode over TLS and a shared rate holds; a node whose CAs do not
vouch for Redis's certificate, or that expects another name, stays in
local mode and its log says why; Redis requiring client certificates
takes a node that has one and refuses one that has none; bad TLS files
are refused at start naming the key. Every wait is bounded."""

import os
import time
import unittest

from .daemon import Volleyd, VolleydTest, simple_job
from .sinkctl import Sink
from . import pki, util
from .test_cluster import REDIS, Redis, metric, node_conf, start_node


def tls_conf(ca, cert=None, key=None, name=None):
    s = 'tls_ca_file = "%s";' % ca
    if cert:
        s += ' tls_cert = "%s"; tls_key = "%s";' % (cert, key)
    if name:
        s += ' tls_server_name = "%s";' % name
    return s


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class ClusterTLS(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-clutls-", cleanup=cls.addClassCleanup)
        for sub in ("ca", "other"):
            os.makedirs(os.path.join(cls.dir, sub))
        cls.ca = pki.TestCA(os.path.join(cls.dir, "ca"))
        cls.chain, cls.key, _ = cls.ca.issue("redis", ["redis.test", "127.0.0.1"])
        cls.cchain, cls.ckey, _ = cls.ca.issue("client", ["node.test"])
        cls.other = pki.TestCA(os.path.join(cls.dir, "other"), cn="Other CA")
        cls.ochain, cls.okey, _ = cls.other.issue("redis", ["redis.test", "127.0.0.1"])

    def redis(self, auth_clients="no", port=None, untrusted=False):
        chain, key = (self.ochain, self.okey) if untrusted else (self.chain, self.key)
        r = Redis(port, tls=["--tls-cert-file", chain, "--tls-key-file", key,
                             "--tls-ca-cert-file", self.ca.ca_pem,
                             "--tls-auth-clients", auth_clients]).start()
        self.addCleanup(r.cleanup)
        return r

    def node(self, sink, redis, i, extra, rate="100/s"):
        return start_node(self, node_conf(sink, redis, i, rate, extra=extra)).start()

    def shared(self, d, n=1):
        self.wait_for("shared mode over TLS", lambda: metric(d, "volley_cluster_shared") == 1
                      and metric(d, "volley_cluster_nodes") == n, timeout=15)

    def stays_local(self, d, reason, secs=3):
        """In local mode for secs, and the log names reason (bounded)."""
        end = time.time() + secs
        while time.time() < end:
            self.assertEqual(metric(d, "volley_cluster_shared"), 0, d.output())
            time.sleep(0.3)
        self.wait_for("the log names it", lambda: reason in d.output(), timeout=5)

    def test_shared_over_tls_and_the_rate_holds(self):
        """Two nodes over TLS (one by the URL's IP address, one by
        tls_server_name), 100/s for the site, 250 recipients each: shared
        mode with N = 2 and 100/s at the sink, not 200."""
        r = self.redis()
        sink = Sink().start()
        self.addCleanup(sink.cleanup)
        ds = [self.node(sink, r, 0, tls_conf(self.ca.ca_pem)),
              self.node(sink, r, 1, tls_conf(self.ca.ca_pem, name="redis.test"))]
        for d in ds:
            self.shared(d, 2)
        for d in ds:
            self.assertEqual(d.submit(simple_job(250, domain="d.test")).status, 202)
        msgs = sink.new_messages(500, wait=30)
        self.assertEqual(len(msgs), 500)
        times = sorted(os.stat(os.path.join(sink.maildir, "new", m.id)).st_mtime_ns / 1e9
                       for m in msgs)
        peers = {m.env["peer"].rsplit(":", 1)[0] for m in msgs}
        self.assertEqual(len(peers), 2, peers)
        # The shared bucket grants at most 125 at once (a second's burst and
        # a quarter ahead), then 100/s: the 500 take 3.75 s at least (less
        # what the first arrival lagged its lease); per node (no sharing)
        # they would take 1.5 s. After the first second, steady at the
        # limit (200/s without sharing; some slack for a loaded machine's
        # late arrivals catching up).
        span = times[-1] - times[0]
        steady = [t for t in times if t >= times[0] + 1]
        rate = (len(steady) - 1) / (steady[-1] - steady[0])
        print("over TLS: %.1f/s, 500 in %.2f s" % (rate, span), end=" ")
        self.assertGreater(span, 3.4)
        self.assertLessEqual(rate, 100 * 1.15)
        self.assertGreater(rate, 80)
        for d in ds:
            self.assertGreaterEqual(metric(d, "volley_cluster_leases_total"), 2)

    def test_untrusted_or_misnamed_redis_stays_local(self):
        """A node whose CA is not Redis's, and one that expects another
        name: local mode, the verification failure in the log; a node with
        the right CA beside them reaches shared mode."""
        r = self.redis()
        sink = Sink().start()
        self.addCleanup(sink.cleanup)
        good = self.node(sink, r, 0, tls_conf(self.ca.ca_pem))
        other = self.node(sink, r, 1, tls_conf(self.other.ca_pem))
        named = self.node(sink, r, 2, tls_conf(self.ca.ca_pem, name="wrong.test"))
        self.shared(good)
        self.stays_local(other, "TLS: certificate verify failed: self-signed certificate in "
                         "certificate chain")
        self.stays_local(named, "certificate verify failed: hostname mismatch", secs=0)
        self.assertIn("(name wrong.test)", named.output())
        self.assertEqual(metric(good, "volley_cluster_nodes"), 1, "the others never joined")

    def test_redis_back_with_an_untrusted_certificate(self):
        """Shared over TLS; Redis restarted on the same port with a
        certificate of another CA: local mode (a ClusterMode event), the
        verification failure in the log, retried with back-off; Redis
        back with its own certificate: shared again."""
        r = self.redis()
        sink = Sink().start()
        self.addCleanup(sink.cleanup)
        d = self.node(sink, r, 0, tls_conf(self.ca.ca_pem))
        self.shared(d)
        port = r.port
        r.stop()
        r = self.redis(port=port, untrusted=True)
        self.wait_for("local mode", lambda: metric(d, "volley_cluster_shared") == 0, timeout=5)
        self.stays_local(d, "TLS: certificate verify failed: self-signed certificate in "
                         "certificate chain (name 127.0.0.1)", secs=2)
        r.stop()
        r = self.redis(port=port)
        self.shared(d)
        def modes():
            return [e["reason"] for e in d.request("GET", "/v1/events").lines()
                    if e["type"] == "ClusterMode"]
        self.wait_for("ClusterMode events both ways", lambda: len(modes()) >= 3, timeout=10)
        ev = modes()
        self.assertTrue(any(x.startswith("local mode") for x in ev), ev)
        self.assertTrue(ev[-1].startswith("shared mode"), ev)
        self.assertGreaterEqual(metric(d, "volley_cluster_mode_changes_total"), 3)

    def test_client_certificate_required(self):
        """Redis with --tls-auth-clients yes: a node with tls_cert and
        tls_key joins; a node without is refused (local mode, the alert in
        its log)."""
        r = self.redis(auth_clients="yes")
        sink = Sink().start()
        self.addCleanup(sink.cleanup)
        with_cert = self.node(sink, r, 0, tls_conf(self.ca.ca_pem, self.cchain, self.ckey))
        without = self.node(sink, r, 1, tls_conf(self.ca.ca_pem))
        self.shared(with_cert)
        self.stays_local(without, "certificate required")

    def test_bad_tls_files_refused_at_start(self):
        """Files that are no certificate or key stop volleyd at start,
        naming the key and OpenSSL's reason."""
        junk = os.path.join(self.dir, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        base = 'cluster = { redis = "rediss://127.0.0.1:1/0"; node = "a"; %s };'
        for extra, what in ((tls_conf(junk), "cluster.tls_ca_file: " + junk),
                            (tls_conf(self.ca.ca_pem, junk, self.ckey), "cluster.tls_cert: "),
                            (tls_conf(self.ca.ca_pem, self.cchain, self.key),
                             "cluster.tls_key: ")):
            d = Volleyd(config=base % extra)
            self.addCleanup(d.cleanup)
            d.start(wait=False)
            rc = d.proc.wait(timeout=10)
            self.assertNotEqual(rc, 0, extra)
            self.assertIn(what, d.output(), extra)

