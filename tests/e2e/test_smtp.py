"""smtplib against a default sink: delivery, maildir content, envelopes."""

import smtplib

from .sinkctl import EXTENSIONS, SinkTest, as_reply, smtplib_wire

SENDER, RCPT = "alice@example.test", "bob@example.test"


class SmtplibTest(SinkTest):
    SINK_ARGS = ()

    def send(self, msg, rcpts=(RCPT,), sender=SENDER, smtp=None, **kw):
        """sendmail, assert every recipient accepted, return the stored message."""
        s = smtp or self.smtp()
        self.assertEqual(s.sendmail(sender, list(rcpts), msg, **kw), {})
        m = self.one_message()
        self.assertEqual(m.data, smtplib_wire(msg))
        return m

    def test_plain_send_and_envelope(self):
        msg = "Subject: plain\nFrom: <alice@example.test>\n\nhello\nworld\n"
        s = self.smtp()
        m = self.send(msg, smtp=s)
        self.assertEqual(m.env["id"], m.id)
        self.assertEqual(m.env["mail_from"], SENDER)
        self.assertEqual(m.env["rcpt"], [RCPT])
        self.assertEqual(m.env["helo"], "client.test")
        self.assertIsNone(m.env["body"])
        self.assertIs(m.env["smtputf8"], False)
        self.assertIs(m.env["chunking"], False)
        self.assertIsNone(m.env["tls"])
        self.assertEqual(m.env["size"], len(m.data))
        self.assertEqual(m.env["peer"], "%s:%d" % s.sock.getsockname())
        self.assertEqual(m.env["local"], "127.0.0.1:%d" % self.sink.port)
        self.assertEqual(self.sink.tmp_files(), [])

    def test_dot_unstuffing_is_exact(self):
        msg = (b".leading dot\r\n..two dots\r\n.\r\n...\r\nmid . dot\r\n"
               b"\r\n.\r\n. space\r\nlast line without CRLF .")
        self.send(msg)

    def test_8bitmime(self):
        msg = b"Subject: 8bit\r\n\r\n" + bytes(range(0x80, 0x100)) + b"\r\ncaf\xc3\xa9\r\n"
        m = self.send(msg, mail_options=["BODY=8BITMIME"])
        self.assertEqual(m.env["body"], "8BITMIME")

    def test_body_7bit_recorded(self):
        m = self.send(b"Subject: 7bit\r\n\r\nascii\r\n", mail_options=["BODY=7BIT"])
        self.assertEqual(m.env["body"], "7BIT")

    def test_smtputf8_addresses(self):
        sender, rcpt = "j\u00f6rg@ex\u00e4mple.test", "\u7528\u6237@\u4f8b\u5b50.test"
        msg = "Subject: \u00fcnicode\r\n\r\n\u4f60\u597d\r\n".encode()
        m = self.send(msg, [rcpt], sender, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        self.assertEqual(m.env["mail_from"], sender)
        self.assertEqual(m.env["rcpt"], [rcpt])
        self.assertIs(m.env["smtputf8"], True)

    def test_line_of_998_octets_accepted(self):
        self.send(b"Subject: long\r\n\r\n" + b"x" * 998 + b"\r\nend\r\n")

    def test_line_over_998_octets_rejected(self):
        s = self.smtp()
        for n in (999, 5000):
            with self.subTest(octets=n):
                with self.assertRaises(smtplib.SMTPDataError) as cm:
                    s.sendmail(SENDER, [RCPT], b"S: x\r\n\r\n" + b"y" * n + b"\r\n")
                self.assertReply(as_reply((cm.exception.smtp_code,
                                           cm.exception.smtp_error)), 554, "5.6.0")
                self.assertReply(as_reply(s.noop()), 250)
        self.assertNoMessage()

    def test_multiple_recipients(self):
        rcpts = ["r1@example.test", "r2@other.test", "r3@example.test"]
        m = self.send(b"Subject: many\r\n\r\nx\r\n", rcpts)
        self.assertEqual(m.env["rcpt"], rcpts)

    def test_several_messages_one_connection(self):
        s = self.smtp()
        sent = {}
        for i in range(3):
            msg = ("Subject: n%d\r\n\r\nbody %d\r\n" % (i, i)).encode()
            rcpt = "r%d@example.test" % i
            self.assertEqual(s.sendmail("s%d@example.test" % i, [rcpt], msg), {})
            sent[msg] = ("s%d@example.test" % i, [rcpt])
        got = {m.data: (m.env["mail_from"], m.env["rcpt"])
               for m in self.sink.new_messages(3)}
        self.assertEqual(got, sent)

    def test_rset_noop_vrfy_help_quit(self):
        s = self.smtp()
        s.ehlo()
        self.assertReply(as_reply(s.mail(SENDER)), 250)
        self.assertReply(as_reply(s.rcpt(RCPT)), 250)
        self.assertReply(as_reply(s.rset()), 250, "2.0.0")
        self.assertReply(as_reply(s.docmd("DATA")), 503, "5.5.1")
        self.assertReply(as_reply(s.noop()), 250, "2.0.0")
        vrfy = as_reply(s.verify(RCPT))
        self.assertIn(vrfy.code, (250, 251, 252), vrfy)
        self.assertReply(vrfy, vrfy.code)
        help_ = as_reply(s.docmd("HELP"))
        self.assertIn(help_.code, (211, 214), help_)
        self.assertReply(help_, help_.code)
        self.assertReply(as_reply(s.docmd("QUIT")), 221, "2.0.0")
        self.assertEqual(s.sock.recv(1), b"")
        self.assertNoMessage()

    def test_greeting_and_ehlo_extensions(self):
        c = self.connect(greet=False)
        greeting = self.assertReply(c.reply(), 220)
        self.assertTrue(greeting.lines[0].startswith("sink.volley.test"), greeting)
        r = c.cmd("EHLO client.test")
        self.assertReply(r, 250, enh=False)
        self.assertTrue(r.lines[0].startswith("sink.volley.test"), r)
        ext = {l.split(" ", 1)[0].upper(): l.partition(" ")[2] for l in r.lines[1:]}
        self.assertEqual(set(ext), EXTENSIONS)
        self.assertEqual(ext["SIZE"], "52428800")

    def test_helo_has_no_extensions(self):
        c = self.connect()
        r = c.cmd("HELO client.test")
        self.assertEqual(r.code, 250, r)
        self.assertEqual(len(r.lines), 1, r)
        c.begin(ehlo=False)
        self.assertReply(c.data(b"Subject: helo\r\n\r\nx\r\n"), 250)
        self.assertEqual(self.one_message().env["helo"], "client.test")
