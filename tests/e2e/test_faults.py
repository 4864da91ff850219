"""Fault injection: --reply rules, dice, connection limits, timeouts, latency."""

import time

from .sinkctl import SinkTest

MSG = b"Subject: fault\r\n\r\nbody\r\n"
STEPS = [("connect", b""), ("ehlo", b"EHLO client.test\r\n"),
         ("mail", b"MAIL FROM:<a@example.test>\r\n"),
         ("rcpt", b"RCPT TO:<b@example.test>\r\n"), ("data", b"DATA\r\n"),
         ("dot", MSG + b".\r\n")]


class ReplyRuleTest(SinkTest):
    SINK_ARGS = (
        "--tls",
        "--reply", "rcpt:*@bad.test=550 5.1.1 no such user",
        "--reply", "rcpt:a*@first.test=550 5.1.1 first rule",
        "--reply", "rcpt:ab*@first.test=551 5.1.6 second rule",
        "--reply", "rcpt:user?@q.test=550 5.1.2 one char",
        "--reply", "rcpt:*@multi.test=550 5.1.1 line one\\nline two\\nline three",
        "--reply", "rcpt:*@drop.test=drop",
        "--reply", "mail:spam@*=550 5.7.1 spammer",
        "--reply", "mail:*@close.test=421 4.7.0 try later",
        "--reply", "helo:bad.client=550 5.7.1 go away",
        "--reply", "data:*@nodata.test=554 5.7.1 no data",
        "--reply", "data:*@bad.test=554 5.7.1 only accepted recipients count",
        "--reply", "dot:*@late.test=451 4.3.0 later",
        "--reply", "noop=250 2.0.0 scripted noop",
        "--reply", "rset=250 2.0.0 scripted rset",
        "--reply", "vrfy=252 2.5.0 scripted vrfy",
        "--reply", "starttls=454 4.7.0 no tls now",
        "--reply", "quit=221 2.0.0 scripted bye",
    )

    def test_rcpt_patterns_and_first_match(self):
        c = self.connect()
        c.begin(rcpts=())
        for rcpt, code, enh, text in (
                ("x@bad.test", 550, "5.1.1", "no such user"),
                ("X@BAD.Test", 550, "5.1.1", "no such user"),
                ("abc@first.test", 550, "5.1.1", "first rule"),
                ("user1@q.test", 550, "5.1.2", "one char"),
                ("user12@q.test", 250, None, None),
                ("b@first.test", 250, None, None),
                ("x@good.test", 250, None, None)):
            with self.subTest(rcpt=rcpt):
                self.assertReply(c.cmd("RCPT TO:<%s>" % rcpt), code, enh, text)
        self.assertReply(c.data(MSG), 250)
        self.assertEqual(self.one_message().env["rcpt"],
                         ["user12@q.test", "b@first.test", "x@good.test"])

    def test_multi_line_reply(self):
        c = self.connect()
        c.begin(rcpts=())
        r = c.cmd("RCPT TO:<u@multi.test>")
        self.assertEqual(r.code, 550, r)
        self.assertEqual(len(r.lines), 3, r)
        self.assertEqual(r.lines[0], "5.1.1 line one")
        self.assertTrue(r.lines[1].endswith("line two"), r)
        self.assertTrue(r.lines[2].endswith("line three"), r)

    def test_drop_resets_connection(self):
        c = self.connect()
        c.begin(rcpts=())
        c.send("RCPT TO:<u@drop.test>\r\n")
        self.assertClosed(c, "rst")
        self.assertTrue(self.sink.alive())

    def test_drop_after_the_replies_before_it(self):
        # pipelined: a transaction stored, then a RCPT that drops: the
        # first transaction's replies come, then the reset
        c = self.connect()
        c.ehlo()
        c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        self.assertEqual([r.code for r in c.replies(3)], [250, 250, 354])
        c.send(MSG + b".\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<u@drop.test>\r\n")
        self.assertReply(c.reply(), 250)        # the message's
        self.assertReply(c.reply(), 250)        # the second MAIL's
        self.assertClosed(c, "rst")
        self.assertEqual(len(self.sink.new_messages(1)), 1)

    def test_mail_and_helo_rules(self):
        c = self.connect()
        self.assertReply(c.cmd("EHLO bad.client"), 550, "5.7.1", "go away")
        self.assertReply(c.cmd("HELO BAD.CLIENT"), 550, "5.7.1", "go away")
        c.ehlo("good.client")
        self.assertReply(c.cmd("MAIL FROM:<spam@example.test>"), 550, "5.7.1", "spammer")
        self.assertReply(c.cmd("RCPT TO:<b@example.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<ham@example.test>"), 250)

    def test_mail_421_closes(self):
        c = self.connect()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<x@close.test>"), 421, "4.7.0", "try later")
        self.assertClosed(c)

    def test_data_and_dot_rules_match_accepted_recipients(self):
        c = self.connect()
        c.begin(rcpts=("ok@example.test", "u@nodata.test"))
        self.assertReply(c.cmd("DATA"), 554, "5.7.1", "no data")
        self.assertReply(c.cmd("RSET"), 250)
        c.begin(rcpts=("u@late.test", "ok@example.test"), ehlo=False)
        self.assertReply(c.data(MSG), 451, "4.3.0", "later")
        self.assertNoMessage()
        c.begin(rcpts=("ok@example.test",), ehlo=False)
        # refused, so the data:*@bad.test rule must not match
        self.assertReply(c.cmd("RCPT TO:<u@bad.test>"), 550)
        self.assertReply(c.data(MSG), 250)
        self.assertEqual(self.one_message().env["rcpt"], ["ok@example.test"])

    def test_other_stage_rules(self):
        c = self.connect()
        c.ehlo()
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "scripted noop")
        self.assertReply(c.cmd("RSET"), 250, "2.0.0", "scripted rset")
        self.assertReply(c.cmd("VRFY someone"), 252, "2.5.0", "scripted vrfy")
        self.assertReply(c.cmd("STARTTLS"), 454, "4.7.0", "no tls now")
        c.begin(ehlo=False)                  # still in cleartext and working
        self.assertReply(c.data(MSG), 250)
        self.assertIsNone(self.one_message().env["tls"])
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0", "scripted bye")


class GreetingRuleTest(SinkTest):
    def test_554_greeting_then_503_except_quit(self):
        sink = self.start_sink("--reply", "greeting=554 no")
        c = self.connect(sink, greet=False)
        r = c.reply()
        self.assertEqual((r.code, r.lines), (554, ["no"]))
        for line in ("EHLO client.test", "HELO client.test", "MAIL FROM:<a@example.test>",
                     "RCPT TO:<b@example.test>", "DATA", "NOOP", "RSET"):
            with self.subTest(line=line):
                self.assertReply(c.cmd(line), 503)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertClosed(c)

    def test_421_greeting_closes(self):
        for rule in ("greeting=421 4.3.2 bye", "connect=421 4.3.2 bye"):
            with self.subTest(rule=rule):
                c = self.connect(self.start_sink("--reply", rule), greet=False)
                self.assertReply(c.reply(), 421, "4.3.2", "bye")
                self.assertClosed(c)

    def test_stall_until_timeout(self):
        sink = self.start_sink("--timeout", "1s", "--reply", "dot:*@slow.test=stall")
        c = self.connect(sink)
        c.begin(rcpts=("u@slow.test",))
        self.assertReply(c.cmd("DATA"), 354)
        t0 = time.monotonic()
        c.send(MSG + b".\r\n")
        self.assertTrue(c.quiet(0.3))
        c.send("NOOP\r\n")                   # ignored as well
        self.assertReply(c.reply(timeout=5), 421, "4.4.2")
        self.assertGreaterEqual(time.monotonic() - t0, 0.95)
        self.assertClosed(c)
        self.assertNoMessage(sink)

    def test_raw_reply(self):
        sink = self.start_sink("--reply", "noop=raw:123 broken\\r\\nno crlf")
        c = self.connect(sink)
        for _ in range(2):
            c.send("NOOP\r\n")
            self.assertEqual(c.read_exact(len(b"123 broken\r\nno crlf")),
                             b"123 broken\r\nno crlf")
            self.assertTrue(c.quiet(0.2), c.buf)


class DiceTest(SinkTest):
    def drive(self, sink, stage):
        """Run a session up to STAGE; the reply there, or 'rst'/'fin'."""
        try:
            c = self.connect(sink, greet=False)
        except ConnectionResetError:       # the RST came before connect() returned
            return "rst"
        for name, wire in STEPS:
            c.send(wire)
            if name == stage:
                try:
                    return c.reply()
                except ConnectionResetError:
                    return "rst"
                except ConnectionError:
                    return "fin"
            self.assertIn(c.reply().code, (220, 250, 354), name)
        raise AssertionError("no stage " + stage)

    def test_full_rate_at_default_and_explicit_stages(self):
        for flag, value, stage, want in (
                ("--tempfail", "100", "rcpt", 4), ("--permfail", "100%", "rcpt", 5),
                ("--disconnect", "100%", "dot", "rst"),
                ("--tempfail", "mail:100%", "mail", 4),
                ("--tempfail", "connect:100%", "connect", 4),
                ("--permfail", "ehlo:100", "ehlo", 5),
                ("--permfail", "data:100%", "data", 5),
                ("--tempfail", "dot:100%", "dot", 4),
                ("--disconnect", "rcpt:100%", "rcpt", "rst"),
                ("--disconnect", "connect:100%", "connect", "rst")):
            with self.subTest(flag=flag, value=value):
                sink = self.start_sink(flag, value)
                got = self.drive(sink, stage)
                if want == "rst":
                    self.assertEqual(got, "rst")
                else:
                    self.assertClass(got, want)
                self.assertNoMessage(sink)
                stats = sink.final_stats()
                self.assertEqual(stats["messages"], 0)
                self.assertEqual(stats["drops"], int(want == "rst"))

    def rcpt_dice(self, seed, n=200):
        sink = self.start_sink("--tempfail", "rcpt:25%", "--seed", seed)
        c = self.connect(sink)
        c.begin(rcpts=())
        c.send("".join("RCPT TO:<r%d@example.test>\r\n" % i for i in range(n)))
        codes = [r.code for r in c.replies(n)]
        self.assertLessEqual(set(codes), {250} | set(range(400, 500)), codes)
        failed = [i for i, code in enumerate(codes) if code >= 400]
        self.assertEqual(sink.final_stats()["replies_4xx"], len(failed))
        return failed

    def test_partial_rate_reproducible_with_seed(self):
        first = self.rcpt_dice(42)
        self.assertTrue(20 <= len(first) <= 85, len(first))
        self.assertEqual(self.rcpt_dice(42), first)
        self.assertTrue(20 <= len(self.rcpt_dice(7)) <= 85)


class ConnectionLimitTest(SinkTest):
    def test_max_conns(self):
        sink = self.start_sink("--max-conns", "3")
        held = [self.connect(sink) for _ in range(3)]
        extra = self.connect(sink, greet=False)
        self.assertReply(extra.reply(), 421, "4.7.0")
        self.assertClosed(extra)
        self.assertReply(held[0].cmd("QUIT"), 221)
        self.assertClosed(held[0])
        for _ in range(40):                 # the sink may see the close late
            r = self.connect(sink, greet=False).reply()
            if r.code == 220:
                break
            time.sleep(0.05)
        self.assertEqual(r.code, 220, r)
        self.assertGreaterEqual(sink.final_stats()["conns_refused"], 1)

    def test_idle_and_data_timeouts(self):
        sink = self.start_sink("--timeout", "1")
        idle = self.connect(sink)
        slow = self.connect(sink)
        slow.begin()
        self.assertReply(slow.cmd("DATA"), 354)
        t0 = time.monotonic()
        slow.send(b"Subject: never ends\r\n\r\npartial")
        for c in (idle, slow):
            self.assertReply(c.reply(timeout=5), 421, "4.4.2")
            self.assertClosed(c)
        self.assertGreaterEqual(time.monotonic() - t0, 0.95)
        self.assertNoMessage(sink)
        self.assertEqual(sink.final_stats()["timeouts"], 2)

    def test_latency_lower_bound(self):
        sink = self.start_sink("--latency", "250ms")
        t0 = time.monotonic()
        c = self.connect(sink, greet=False)
        self.assertReply(c.reply(), 220)
        self.assertGreaterEqual(time.monotonic() - t0, 0.245)
        for wire, n in ((b"EHLO client.test\r\n", 1), (b"NOOP\r\nNOOP\r\nNOOP\r\n", 3)):
            t0 = time.monotonic()
            c.send(wire)
            c.replies(n)
            self.assertGreaterEqual(time.monotonic() - t0, 0.245, wire)

    def test_several_listen_addresses(self):
        sink = self.start_sink(hosts=("127.0.0.2", "127.0.0.3"))
        for host in sink.hosts:
            with self.subTest(host=host):
                s = self.smtp(sink, host)
                self.assertEqual(s.sendmail("a@example.test", ["b@example.test"],
                                            b"Subject: mx\r\n\r\n" + host.encode() + b"\r\n"), {})
                m = self.one_message(sink)
                self.assertEqual(m.env["local"], "%s:%d" % (host, sink.port))
                self.assertEqual(m.env["peer"], "%s:%d" % s.sock.getsockname())
