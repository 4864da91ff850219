"""swaks deliveries, in cleartext and with STARTTLS."""

import os
import shutil
import subprocess
import unittest

from .sinkctl import SinkTest

DATA = b"Subject: swaks\r\nFrom: <s@example.test>\r\n\r\nhello from swaks\r\n.dot line\r\n"


def swaks_tls_supported():
    if not shutil.which("swaks"):
        return False
    p = subprocess.run(["swaks", "--support"], capture_output=True, text=True,
                       timeout=20)
    return "=== TLS supported" in p.stdout + p.stderr


@unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
class SwaksTest(SinkTest):
    SINK_ARGS = ("--tls",)

    def swaks(self, *extra):
        path = os.path.join(self.tempdir(), "data.eml")
        with open(path, "wb") as f:
            f.write(DATA[:-2])          # swaks adds the final CRLF
        p = subprocess.run(["swaks", "--server", self.sink.host, "--port",
                            str(self.sink.port), "--from", "s@example.test",
                            "--to", "r1@example.test,r2@example.test",
                            "--helo", "swaks.test", "--data", "@" + path,
                            "--timeout", "10", *extra],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        m = self.one_message()
        self.assertEqual(m.data, DATA)
        self.assertEqual(m.env["mail_from"], "s@example.test")
        self.assertEqual(m.env["rcpt"], ["r1@example.test", "r2@example.test"])
        self.assertEqual(m.env["helo"], "swaks.test")
        return m

    def test_plain_delivery(self):
        self.assertIsNone(self.swaks().env["tls"])

    def test_tls_delivery(self):
        if not swaks_tls_supported():
            self.skipTest("swaks lacks TLS support (Debian package libnet-ssleay-perl)")
        self.assertTrue(self.swaks("--tls").env["tls"]["version"].startswith("TLS"))
