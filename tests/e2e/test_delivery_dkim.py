"""volleyd signs what it delivers: keys from `volley dkim keygen` in the
configuration, dual signing (Ed25519 and RSA), the body hash reused across a
job whose body does not vary (or varies only by job-level values), every delivered message verified by
python3-dkim; dkim_required refuses what could not be signed;
--check-config names a key it cannot load."""

import json
import os
import subprocess
import unittest

from . import util
from .daemon import VOLLEYD, VolleydTest, simple_job
from .sinkctl import Sink
from .test_dkim import DEBIAN_PY, DKIMPY, keygen


@unittest.skipUnless(os.path.exists(DEBIAN_PY), "needs Debian's python3 with python3-dkim")
class SignedDelivery(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.keys = util.tempdir("volley-dkim-keys-", cleanup=cls.addClassCleanup)
        cls.ed, ed_name, ed_txt, _ = keygen(cls.keys, "s1", "ed25519")
        cls.rsa, rsa_name, rsa_txt, _ = keygen(cls.keys, "s2", "rsa")
        cls.records = {ed_name + ".": ed_txt, rsa_name + ".": rsa_txt}

    def config(self, sink, extra=""):
        return ('domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
                'dkim = ( { domain = "example.com"; selector = "s1"; key = "%s"; },\n'
                '         { domain = "example.com"; selector = "s2"; key = "%s"; } );\n%s'
                % (sink.route(), self.ed, self.rsa, extra))

    def verify(self, paths):
        req = json.dumps({"records": self.records, "files": paths})
        p = subprocess.run([DEBIAN_PY, "-c", DKIMPY], input=req, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def deliver(self, job, n, extra=""):
        s = Sink("--tls").start()
        self.addCleanup(s.stop)
        d = self.start_daemon(config=self.config(s, extra))
        jid = d.submit(job).json()["id"]
        j = self.wait_done(d, jid)
        self.assertEqual(j["counts"]["delivered"], n, j)
        msgs = s.new_messages(n, wait=10)
        return [os.path.join(s.maildir, "new", m.id) for m in msgs]

    def test_every_message_carries_two_valid_signatures(self):
        paths = self.deliver(simple_job(6, domain="d.test"), 6)
        self.assertEqual(self.verify(paths), [[True, True]] * 6)
        with open(paths[0], "rb") as f:
            head = f.read().split(b"\r\n\r\n")[0]
        self.assertIn(b"a=ed25519-sha256", head)
        self.assertIn(b"a=rsa-sha256", head)
        self.assertIn(b"d=example.com", head)

    def test_a_static_body_is_hashed_once_and_still_verifies(self):
        job = simple_job(5, domain="d.test")
        job["content"]["text_body"] = "The same body for everyone.\n\n\n"
        paths = self.deliver(job, 5)
        self.assertEqual(self.verify(paths), [[True, True]] * 5)

    def test_a_common_body_under_personal_headers(self):
        """Headers per recipient, a body of 100 KB with the job's own values
        only: one body hash serves those recipients; one recipient's own
        value gives it a body (and a hash) of its own. Sent as several TLS
        records straight from the job's memory; every signature verifies."""
        job = simple_job(4, domain="d.test")
        job["content"]["text_body"] = ("The {{ campaign }} issue for everyone.\n"
                                       + "A line of the long body, the same for all.\n" * 2400)
        job["recipients"][3]["substitutions"]["campaign"] = "winter"
        paths = self.deliver(job, 4)
        self.assertEqual(self.verify(paths), [[True, True]] * 4)
        bodies = {}
        for p in paths:
            with open(p, "rb") as f:
                head, body = f.read().split(b"\r\n\r\n", 1)
            self.assertGreater(len(body), 100000)
            bodies[b"winter" in body] = bodies.get(b"winter" in body, 0) + 1
        self.assertEqual(bodies, {False: 3, True: 1})

    def test_simple_canonicalisation_and_expiry_from_the_config(self):
        paths = self.deliver(simple_job(3, domain="d.test"), 3,
                             'dkim_canonicalization = "simple/simple";\ndkim_expire = "1d";\n')
        self.assertEqual(self.verify(paths), [[True, True]] * 3)
        with open(paths[0], "rb") as f:
            head = f.read().split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        self.assertIn(b"c=simple/simple", head)
        self.assertRegex(head, rb"x=\d+")

    def test_a_changed_message_fails(self):
        paths = self.deliver(simple_job(1, domain="d.test"), 1)
        with open(paths[0], "rb") as f:
            data = f.read()
        with open(paths[0], "wb") as f:
            f.write(data.replace(b"Subject: Hello", b"Subject: Jello"))
        self.assertEqual(self.verify(paths), [[False, False]])

    def test_dkim_required_refuses_what_cannot_be_signed(self):
        s = Sink("--tls").start()
        self.addCleanup(s.stop)
        d = self.start_daemon(config=self.config(s, "dkim_required = true;\n"))
        job = simple_job(1, domain="d.test")
        job["content"]["from"] = {"email": "news@elsewhere.example"}
        self.assertError(d.submit(job), 400, "invalid_field", "content.from")
        self.assertError(d.submit(simple_job(1, domain="d.test", dkim=False)), 400,
                         "invalid_field", "dkim")
        self.assertEqual(d.submit(simple_job(1, domain="d.test")).status, 202)

    def test_check_config_names_a_key_it_cannot_load(self):
        path = os.path.join(util.tempdir("volley-conf-", cleanup=self.addCleanup), "volley.conf")
        with open(path, "w") as f:
            f.write('dkim = ( { domain = "example.com"; selector = "s9"; '
                    'key = "/nonexistent/s9.pem"; } );\n')
        p = subprocess.run([VOLLEYD, "--check-config", "--config", path],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent/s9.pem", p.stderr)
        self.assertIn("dkim[0]", p.stderr)
