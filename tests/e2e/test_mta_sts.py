"""volleyd under MTA-STS (RFC 8461): _mta-sts TXT records from a real
unbound, policies fetched over HTTPS from a policy server on 127.0.0.40:443
whose certificate a test CA issued, receivers (volley-sink) with
certificates from the same CA for the right name or another one.

enforce: only hosts in the policy's mx list, and only with a certificate
that verifies for the MX name, get mail; testing: mail goes anyway; a
policy that cannot be fetched is no policy; a kept policy survives a
restart of the daemon while its server is down."""

import http.server
import ssl
import threading
import time

from . import dnsctl, util
from .daemon import VolleydTest, simple_job
from .pki import TestCA
from .sinkctl import Sink
from .test_cli import volley

Z = "sts.test"
POLICY_IP, UNTRUSTED_IP = "127.0.0.40", "127.0.0.41"
GOOD_IP, BAD_IP = "127.0.0.21", "127.0.0.22"


def policy(mode, *mx, max_age=86400):
    return "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (
        mode, "".join("mx: %s\r\n" % m for m in mx), max_age)


class PolicyServer:
    """HTTPS on ip:443 serving {host: (status, content type, body)}; counts
    the requests per host."""

    def __init__(self, ip, chain, key):
        self.pages, self.hits = {}, {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                outer.hits[host] = outer.hits.get(host, 0) + 1
                status, ctype, body = outer.pages.get(host, (404, "text/plain", "no"))
                if self.path != "/.well-known/mta-sts.txt":
                    status, body = 404, "no"
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((ip, 443), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def domain_lines(name, mx_ips, txt_id=None, policy_ip=POLICY_IP):
    """MX hosts mx1.., mx2.. of name.sts.test at mx_ips (in preference order)."""
    d = "%s.%s" % (name, Z)
    lines = []
    for i, ip in enumerate(mx_ips, 1):
        lines += ["%s. MX %d mx%d.%s." % (d, 10 * i, i, d), "mx%d.%s. A %s" % (i, d, ip)]
    if txt_id:
        lines += ['_mta-sts.%s. TXT "v=STSv1; id=%s;"' % (d, txt_id),
                  "mta-sts.%s. A %s" % (d, policy_ip)]
    return lines


class MtaStsDelivery(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.dir = util.tempdir("volley-sts-")
        ca = TestCA(cls.dir, "Volley MTA-STS Test CA")
        cls.ca = ca.ca_pem
        good = ["mx1.%s.%s" % (n, Z) for n in ("good", "testing2", "cached", "fetchfail",
                                                 "verify")]
        good += ["mx1.listed.%s" % Z, "mx2.listed.%s" % Z]
        gchain, gkey, _ = ca.issue("good", good)
        bchain, bkey, _ = ca.issue("bad", ["other.invalid"])
        names = ["mta-sts.%s.%s" % (n, Z) for n in
                 ("good", "bad", "testing", "testing2", "listed", "cached", "bodyless")]
        pchain, pkey, _ = ca.issue("policy", names)
        other = TestCA(util.tempdir("volley-sts-other-"), "Someone Else's CA")
        cls.other_dir = other.folder
        uchain, ukey, _ = other.issue("untrusted", ["mta-sts.fetchfail.%s" % Z])
        cls.good = Sink("--tls", "--cert", gchain, "--key", gkey, hosts=(GOOD_IP,)).start()
        cls.bad = Sink("--tls", "--cert", bchain, "--key", bkey, hosts=(BAD_IP,)).start()
        cls.web = PolicyServer(POLICY_IP, pchain, pkey).start()
        cls.untrusted = PolicyServer(UNTRUSTED_IP, uchain, ukey).start()
        zone = (domain_lines("good", [GOOD_IP], "g1") +
                domain_lines("bad", [BAD_IP], "b1") +
                domain_lines("testing", [BAD_IP], "t1") +
                domain_lines("testing2", [GOOD_IP], "t2") +
                domain_lines("listed", [GOOD_IP, GOOD_IP], "l1") +
                domain_lines("cached", [GOOD_IP], "c1") +
                domain_lines("bodyless", [BAD_IP], "x1") +
                domain_lines("fetchfail", [BAD_IP], "f1", policy_ip=UNTRUSTED_IP) +
                domain_lines("nopolicy", [BAD_IP]) +
                domain_lines("verify", [GOOD_IP]) + domain_lines("verifybad", [BAD_IP]))
        cls.ub = dnsctl.Unbound({Z: zone}).start()
        cls.web.pages.update({
            "mta-sts.good.%s" % Z: (200, "text/plain", policy("enforce", "mx1.good." + Z)),
            "mta-sts.bad.%s" % Z: (200, "text/plain", policy("enforce", "*.bad." + Z)),
            "mta-sts.testing.%s" % Z: (200, "text/plain", policy("testing", "*.testing." + Z)),
            "mta-sts.testing2.%s" % Z: (200, "text/plain", policy("testing", "elsewhere.net")),
            "mta-sts.listed.%s" % Z: (200, "text/plain", policy("enforce", "mx2.listed." + Z)),
            "mta-sts.cached.%s" % Z: (200, "text/plain; charset=utf-8",
                                      policy("enforce", "*.cached." + Z)),
            "mta-sts.bodyless.%s" % Z: (200, "text/html", policy("enforce", "nothing.net")),
        })
        cls.untrusted.pages["mta-sts.fetchfail.%s" % Z] = (
            200, "text/plain", policy("enforce", "nothing.net"))

    @classmethod
    def tearDownClass(cls):
        cls.ub.stop()
        cls.web.stop()
        cls.untrusted.stop()
        cls.good.stop()
        cls.bad.stop()
        util.remove_dir(cls.dir)
        util.remove_dir(cls.other_dir)

    def daemon(self, data_dir=None, extra=""):
        rules = "".join('{ match = "*%s.%s"; port = %d; },\n' % (n, Z, s.port) for n, s in (
            ("good", self.good), ("testing2", self.good), ("listed", self.good),
            ("cached", self.good), ("bad", self.bad), ("testing", self.bad),
            ("bodyless", self.bad), ("fetchfail", self.bad), ("nopolicy", self.bad)))
        rules += "".join('{ match = "%s.%s"; port = %d; tls = "verify"; },\n' % (n, Z, s.port)
                         for n, s in (("verify", self.good), ("verifybad", self.bad)))
        config = ('dns = { servers = [ "%s" ]; allow_private = true; timeout_ms = 2000; };\n'
                  'defaults = { ca_file = "%s"; retry = [ "1s" ]; };\n'
                  'domains = ( %s );\n%s' % (self.ub.server, self.ca, rules.rstrip(",\n"), extra))
        return self.start_daemon(config=config, data_dir=data_dir)

    def submit(self, d, name, n=2):
        return self.submit_to(d, "%s.%s" % (name, Z), n)

    def delivered(self, d, name, sink, n=2):
        jid = self.submit(d, name, n)
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], n, j)
        self.assertEqual(len(sink.new_messages(n, wait=5)), n)
        return self.events(d, jid, "Delivery")

    def deferred_at(self, d, name, sink):
        jid = self.submit(d, name)
        ev = self.wait_for("a deferral", lambda: self.events(d, jid, "TransientFailure"),
                           timeout=20)
        self.assertEqual(sink.new_messages(0, wait=1), [])
        return ev

    def test_enforce_with_a_verified_certificate_delivers(self):
        d = self.daemon()
        for e in self.delivered(d, "good", self.good, n=5):
            self.assertEqual(e["tls"]["mta_sts"], "enforce", e)
            self.assertTrue(e["tls"]["verified"], e)
            self.assertFalse(e["tls"]["dane"], e)
            self.assertEqual(e["tls"]["policy"], "dane", e)
        self.assertEqual(self.web.hits.get("mta-sts.good." + Z), 1)   # one fetch for all
        sites = d.request("GET", "/v1/queues").json()["queues"]
        site = [s for s in sites if s["site"].startswith("mx:mx1.good.")][0]
        self.assertEqual(site["tls"]["mta_sts"]["mode"], "enforce", site)
        self.assertEqual(site["tls"]["mta_sts"]["mx"], ["mx1.good." + Z], site)
        out = volley("--socket", d.sock, "queues").stdout
        self.assertIn("dane+mta-sts:enforce", out)

    def test_enforce_with_a_certificate_for_another_name_sends_nothing(self):
        d = self.daemon()
        e = self.deferred_at(d, "bad", self.bad)[0]
        self.assertEqual(e["mx"], "mx1.bad." + Z, e)
        self.assertIn("MTA-STS enforce", e["reason"], e)
        self.assertIn("does not verify", e["reason"], e)

    def test_enforce_uses_only_the_hosts_in_the_mx_list(self):
        d = self.daemon()
        for e in self.delivered(d, "listed", self.good):
            self.assertEqual(e["mx"], "mx2.listed." + Z, e)        # mx1 is not listed
            self.assertEqual(e["tls"]["mta_sts"], "enforce", e)

    def test_testing_never_blocks(self):
        d = self.daemon()
        for e in self.delivered(d, "testing", self.bad):        # certificate: wrong name
            self.assertEqual(e["tls"]["mta_sts"], "testing", e)
            self.assertFalse(e["tls"]["verified"], e)
        for e in self.delivered(d, "testing2", self.good):      # host not in the list
            self.assertEqual(e["tls"]["mta_sts"], "testing", e)

    def test_tls_reports_name_the_sts_policy_and_its_failures(self):
        d = self.daemon(extra='tls_rpt = { organization = "Volley Test"; '
                        'contact = "tlsrpt@volley.test"; };\n')
        self.delivered(d, "testing", self.bad)         # testing: sent, failure reported
        self.delivered(d, "good", self.good)
        r = d.request("GET", "/v1/tls-report?domain=testing." + Z).json()
        pol = r["policies"][0]
        self.assertEqual(pol["policy"]["policy-type"], "sts", r)
        self.assertIn("mode: testing", pol["policy"]["policy-string"], r)
        self.assertEqual(pol["policy"]["mx-host"], ["*.testing." + Z], r)
        self.assertEqual(pol["summary"]["total-failure-session-count"], 2, r)
        self.assertEqual(pol["failure-details"][0]["result-type"],
                         "certificate-host-mismatch", r)
        r = d.request("GET", "/v1/tls-report?domain=good." + Z).json()
        pol = r["policies"][0]
        self.assertEqual(pol["policy"]["policy-type"], "sts", r)
        self.assertEqual(pol["summary"]["total-successful-session-count"], 2, r)
        self.assertEqual(pol["summary"]["total-failure-session-count"], 0, r)

    def test_a_policy_that_cannot_be_fetched_is_no_policy(self):
        d = self.daemon()
        for name in ("fetchfail", "bodyless", "nopolicy"):     # untrusted, not text/plain, none
            for e in self.delivered(d, name, self.bad):
                self.assertIsNone(e["tls"]["mta_sts"], e)
                self.assertFalse(e["tls"]["verified"], e)
        self.assertEqual(self.untrusted.hits.get("mta-sts.fetchfail." + Z, 0), 0)  # no HTTP

    def test_tls_check_shows_the_policy_and_what_volley_would_do(self):
        d = self.daemon()
        j = d.request("GET", "/v1/tls-check?domain=Listed." + Z).json()
        self.assertEqual(j["policy"], "dane")
        self.assertEqual(j["mta_sts"]["applies"], "enforce", j)
        self.assertEqual(j["mta_sts"]["txt"]["id"], "l1", j)
        self.assertEqual(j["mta_sts"]["kept"], None, j)       # nothing delivered yet
        self.assertIn("mx: mx2.listed." + Z, j["mta_sts"]["fetched_now"]["policy"], j)
        hosts = {h["name"]: h for h in j["hosts"]}
        self.assertFalse(hosts["mx1.listed." + Z]["mta_sts_listed"], j)
        self.assertIn("not used", hosts["mx1.listed." + Z]["volley_would"], j)
        self.assertTrue(hosts["mx2.listed." + Z]["mta_sts_listed"], j)
        self.assertIn("MTA-STS enforce", hosts["mx2.listed." + Z]["volley_would"], j)
        self.assertEqual(hosts["mx2.listed." + Z]["tlsa"]["status"], "not looked up", j)
        out = volley("--socket", d.sock, "tls-check", "listed." + Z).stdout
        self.assertIn("applies: enforce", out)
        self.assertIn("volley would: not used: not in the MTA-STS policy's mx list", out)
        self.assertEqual(d.request("GET", "/v1/tls-check?domain=a/b").status, 400)
        self.assertEqual(d.request("GET", "/v1/tls-check").status, 400)

    def test_policy_verify_checks_the_mx_name_against_the_domains_ca_file(self):
        d = self.daemon()
        for e in self.delivered(d, "verify", self.good):
            self.assertTrue(e["tls"]["verified"], e)
            self.assertEqual(e["tls"]["policy"], "verify", e)
            self.assertIsNone(e["tls"]["mta_sts"], e)
        e = self.deferred_at(d, "verifybad", self.bad)[0]
        self.assertIn("TLS policy verify", e["reason"], e)
        self.assertIn("mx1.verifybad." + Z, e["reason"], e)

    def test_a_kept_policy_survives_a_restart_with_its_server_gone(self):
        d = self.daemon()
        for e in self.delivered(d, "cached", self.good):
            self.assertEqual(e["tls"]["mta_sts"], "enforce", e)
        data_dir = d.data_dir
        d.stop()
        host = "mta-sts.cached." + Z
        saved = self.web.pages.pop(host)
        try:
            d2 = self.daemon(data_dir=data_dir)
            for e in self.delivered(d2, "cached", self.good):
                self.assertEqual(e["tls"]["mta_sts"], "enforce", e)
            time.sleep(1)           # a fetch would run in the background
            self.assertEqual(self.web.hits[host], 1)    # the same id: no fetch again
        finally:
            self.web.pages[host] = saved
