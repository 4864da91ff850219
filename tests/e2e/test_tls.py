"""STARTTLS: smtplib, openssl s_client, the CVE-2011-0411 injection, --cert."""

import os
import re
import ssl
import subprocess

from .sinkctl import EXTENSIONS, SinkTest, smtplib_wire, tls_client_context

HOSTNAME = "mx.tls.test"


def s_client(port, stdin="EHLO client.test\nQUIT\n", timeout=15):
    """openssl s_client -starttls smtp, bounded; returns (rc, stdout)."""
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % port, "-crlf", "-ign_eof", "-nocommands"],
                       input=stdin, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


class StarttlsTest(SinkTest):
    SINK_ARGS = ("--tls", "--hostname", HOSTNAME)

    def test_starttls_advertised_only_before_tls(self):
        c = self.connect()
        self.assertEqual(set(c.ehlo()), EXTENSIONS | {"STARTTLS"})
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.starttls()
        r = c.cmd("EHLO client.test")
        self.assertReply(r, 250, enh=False)
        self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
        self.assertEqual({l.split(" ", 1)[0].upper() for l in r.lines[1:]}, EXTENSIONS)

    def test_smtplib_starttls_then_send(self):
        s = self.smtp()
        s.ehlo()
        self.assertEqual(s.starttls(context=tls_client_context())[0], 220)
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        msg = b"Subject: tls\r\n\r\nsecret\r\n"
        self.assertEqual(s.sendmail("a@example.test", ["b@example.test"], msg), {})
        m = self.one_message()
        self.assertEqual(m.data, smtplib_wire(msg))
        self.assertEqual(m.env["tls"]["version"], s.sock.version())
        self.assertEqual(m.env["tls"]["cipher"], s.sock.cipher()[0])

    def test_large_message_over_tls(self):
        s = self.smtp()
        s.starttls(context=tls_client_context())
        msg = b"Subject: big tls\r\n\r\n" + b"".join(
            b"%06d .. line of a long message\r\n" % i for i in range(40000))
        self.assertEqual(s.sendmail("a@example.test", ["b@example.test"], msg), {})
        self.assertEqual(self.one_message().data, msg)

    def test_openssl_s_client_certificate_cn(self):
        rc, out = s_client(self.sink.port)
        self.assertEqual(rc, 0, out)
        cn = re.search(r"^subject=.*?CN ?= ?([^,/\n]+)", out, re.M)
        self.assertIsNotNone(cn, out)
        self.assertEqual(cn.group(1).strip(), HOSTNAME)
        self.assertRegex(out, r"\n250[- ]%s" % re.escape(HOSTNAME))
        self.assertNotRegex(out, r"\n250[- ]STARTTLS")  # our EHLO is inside TLS
        self.assertRegex(out, r"\n221 2\.\d+\.\d+")

    def test_starttls_injection_discarded(self):
        c = self.connect()
        c.ehlo()
        c.send("STARTTLS\r\nRSET\r\n")
        self.assertReply(c.reply(), 220)
        self.assertTrue(c.quiet(0.3), "cleartext after STARTTLS's 220: %r" % c.buf)
        c.starttls()
        # the session starts over: MAIL before EHLO is out of order, and no
        # reply to the injected RSET may come first
        self.assertReply(c.cmd("MAIL FROM:<a@example.test>"), 503, "5.5.1")
        c.begin(sender="a@example.test")
        self.assertReply(c.data(b"Subject: after\r\n\r\nx\r\n"), 250)
        self.assertTrue(c.quiet(0.2), c.buf)
        self.assertIsNotNone(self.one_message().env["tls"])

    def test_broken_handshake_closes_only_that_client(self):
        c = self.connect()
        c.ehlo()
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.send(b"EHLO not a ClientHello\r\n" * 50)
        self.assertClosed(c)
        c = self.connect()
        c.begin()
        self.assertReply(c.data(b"Subject: next\r\n\r\nx\r\n"), 250)
        self.assertIsNone(self.one_message().env["tls"])


class CertFileTest(SinkTest):
    def test_cert_and_key_files_used(self):
        d = self.tempdir()
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                        "-subj", "/CN=custom.cert.test", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=20)
        sink = self.start_sink("--tls", "--cert", cert, "--key", key)
        c = self.connect(sink)
        c.ehlo()
        self.assertReply(c.cmd("STARTTLS"), 220)
        c.starttls()
        with open(cert) as f:
            self.assertEqual(c.sock.getpeercert(binary_form=True),
                             ssl.PEM_cert_to_DER_cert(f.read()))
        c.begin()
        self.assertReply(c.data(b"Subject: cert\r\n\r\nx\r\n"), 250)
        self.assertEqual(self.one_message(sink).env["tls"]["version"], c.sock.version())
        self.assertEqual(sink.final_stats()["tls_sessions"], 1)
