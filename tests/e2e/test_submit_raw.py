"""Verbatim jobs, SMTP submission's kind, end to end: build/volley-logput puts
messages into a data directory's submission log (sub_log_put, as the SMTP
listener does), the log makes them spool jobs, and volleyd delivers them to
volley-sink. Every recipient gets exactly the submitted octets after
volley's DKIM-Signature fields -- 8-bit octets that are not UTF-8, "{{",
lines of dots (over DATA, dot-stuffed, and over BDAT) -- with 8BITMIME or
SMTPUTF8 as the octets need; python3-dkim verifies the signatures; a job
with "dkim": false goes unsigned; the API shows the jobs as any other."""

import json
import os
import subprocess
import unittest

from . import util
from .daemon import VolleydTest
from .sinkctl import Sink
from .test_dkim import DEBIAN_PY, DKIMPY, keygen

SUBMIT = util.build_path("volley-logput", "VOLLEY_LOGPUT")

LATIN1 = (b"From: Shop <orders@example.com>\r\nTo: customer@example.net\r\n"
          b"Subject: Your order {{ 42 }}\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
          b"Message-ID: <order42@example.com>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=iso-8859-1\r\n"
          b"Content-Transfer-Encoding: 8bit\r\n\r\n"
          b"Gr\xfc\xdfe, {{ name }}!\r\n.\r\n..\r\n.leading dot\r\n"
          b"trailing  \t\r\n\r\n\r\n")
UTF8_HEADER = (b"From: =?utf-8?q?Caf=C3=A9?= <caf\xc3\xa9@example.com>\r\n"
               b"To: ann@example.net\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n"
               b"Date: Mon, 07 Dec 2026 10:00:01 +0000\r\n"
               b"Message-ID: <u1@example.com>\r\n\r\nplain ASCII body\r\n")
ASCII = (b"From: orders@example.com\r\nTo: x@example.net\r\nSubject: plain\r\n"
         b"Date: Mon, 07 Dec 2026 10:00:02 +0000\r\nMessage-ID: <a1@example.com>\r\n\r\n"
         b"ascii only\r\n.\r\n")


@unittest.skipUnless(os.path.exists(DEBIAN_PY), "needs Debian's python3 with python3-dkim")
class VerbatimDelivery(VolleydTest):
    @classmethod
    def setUpClass(cls):
        cls.keys = util.tempdir("volley-raw-keys-", cleanup=cls.addClassCleanup)
        cls.ed, ed_name, ed_txt, _ = keygen(cls.keys, "s1", "ed25519")
        cls.rsa, rsa_name, rsa_txt, _ = keygen(cls.keys, "s2", "rsa")
        cls.records = {ed_name + ".": ed_txt, rsa_name + ".": rsa_txt}

    def config(self, sink):
        return ('domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
                'dkim = ( { domain = "example.com"; selector = "s1"; key = "%s"; },\n'
                '         { domain = "example.com"; selector = "s2"; key = "%s"; } );\n'
                % (sink.route(), self.ed, self.rsa))

    def put(self, data_dir, messages, *opts, to=("ann@d.test", "bob@d.test")):
        """Messages into data_dir's submission log: their job ids."""
        files = []
        for i, m in enumerate(messages):
            p = os.path.join(data_dir, "m%d.eml" % i)
            with open(p, "wb") as f:
                f.write(m)
            files.append(p)
        args = [SUBMIT, "--data-dir", data_dir, "--from", "bounces@example.com"]
        for t in to:
            args += ["--to", t]
        p = subprocess.run(args + list(opts) + files, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = [json.loads(l) for l in p.stdout.splitlines()]
        self.assertEqual([l["rc"] for l in lines], [0] * len(messages), p.stdout)
        self.assertEqual(os.listdir(os.path.join(data_dir, "submit")), [],
                         "every segment gone once its jobs were made")
        return [l["id"] for l in lines]

    def verify(self, paths):
        req = json.dumps({"records": self.records, "files": paths})
        p = subprocess.run([DEBIAN_PY, "-c", DKIMPY], input=req, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def deliver(self, sink_args, messages, *opts):
        s = Sink("--tls", *sink_args).start()
        self.addCleanup(s.stop)
        data = util.tempdir("volley-raw-", cleanup=self.addCleanup)
        ids = self.put(data, messages, *opts)
        d = self.start_daemon(data_dir=data, config=self.config(s))
        for jid in ids:
            j = self.wait_done(d, jid)
            self.assertEqual(j["counts"]["delivered"], 2, j)
        got = s.new_messages(2 * len(messages), wait=10)
        self.assertEqual(len(got), 2 * len(messages))
        return d, ids, s, got

    def split(self, data, original):
        """The DKIM-Signature fields volley put in front of original."""
        self.assertTrue(data.endswith(original), data[-300:])
        return data[:len(data) - len(original)]

    def test_octets_kept_signed_over_data(self):
        d, ids, s, got = self.deliver(["--disable", "CHUNKING"], [LATIN1, UTF8_HEADER, ASCII],
                                      "--transactional", "--campaign", "orders",
                                      "--user", "shop", "--client", "127.0.0.1")
        by_msgid = {}
        for m in got:
            for orig in (LATIN1, UTF8_HEADER, ASCII):
                if orig.split(b"Message-ID: ")[1].split(b"\r\n")[0] in m.data:
                    by_msgid.setdefault(orig, []).append(m)
        self.assertEqual(sorted(len(v) for v in by_msgid.values()), [2, 2, 2])
        paths = []
        for orig, ms in by_msgid.items():
            for m in ms:
                sigs = self.split(m.data, orig)
                self.assertEqual(sigs.count(b"DKIM-Signature:"), 2, sigs)
                self.assertIn(b"d=example.com", sigs)
                self.assertEqual(m.env["mail_from"], "bounces@example.com")
                self.assertEqual(m.env["body"], None if orig is ASCII else "8BITMIME", orig[:60])
                self.assertEqual(m.env["smtputf8"], orig is UTF8_HEADER)
                self.assertFalse(m.env["chunking"])
                paths.append(os.path.join(s.maildir, "new", m.id))
        self.assertEqual(sorted(m.env["rcpt"][0] for m in got),
                         ["ann@d.test"] * 3 + ["bob@d.test"] * 3)
        self.assertEqual(self.verify(paths), [[True, True]] * len(paths))
        j = d.request("GET", "/v1/jobs/" + ids[0]).json()
        self.assertEqual((j["priority"], j["campaign"], j["recipients"], j["state"]),
                         ("transactional", "orders", 2, "done"))
        with open(os.path.join(d.data_dir, "jobs", ids[0], "job.json")) as f:
            meta = json.load(f)
        self.assertTrue(meta["job"]["raw_message"])
        self.assertNotIn("content", meta["job"])
        self.assertEqual(meta["submission"]["user"], "shop")

    def test_unsigned_when_dkim_is_off_over_bdat(self):
        _, _, _, got = self.deliver([], [LATIN1], "--no-dkim")
        for m in got:
            self.assertEqual(m.data, LATIN1, "not one octet added or changed")
            self.assertTrue(m.env["chunking"])
            self.assertEqual(m.env["body"], "8BITMIME")


if __name__ == "__main__":
    unittest.main()
