"""Raw-socket protocol tests: errors, limits, pipelining, BDAT, framing."""

from .sinkctl import EXTENSIONS, SinkTest, dot_stuff

MSG = b"Subject: raw\r\n\r\nraw body\r\n"
# about 3 MB; every 100th line starts with a dot
BIG = b"".join((b"." if i % 100 == 0 else b"") + b"%08d " % i + b"0123456789" * 9 + b"\r\n"
               for i in range(30000))


class ProtocolErrorTest(SinkTest):
    SINK_ARGS = ()

    def test_commands_out_of_order(self):
        c = self.connect()
        self.check_replies(c, [
            ("MAIL FROM:<a@example.test>", 503, "5.5.1"),
            ("EHLO client.test", 250, False),
            ("RCPT TO:<b@example.test>", 503, "5.5.1"),
            ("DATA", 503, "5.5.1"),
            ("MAIL FROM:<a@example.test>", 250, None),
            ("MAIL FROM:<a@example.test>", 503, "5.5.1"),
            ("DATA", 554, "5.5.1")])  # MAIL but no recipient: RFC 5321 3.3
        # a refused BDAT's chunk is still read: "QUIT\r\n" here is data
        c.send("BDAT 6 LAST\r\nQUIT\r\n")
        self.assertReply(c.reply(), 503, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNoMessage()

    def test_unknown_command_and_binary_garbage(self):
        c = self.connect()
        self.check_replies(c, [(line, 500, "5.5.2") for line in (
            b"XYZZY", b"\x00\x01\x02\xff\xfe\x00garbage\x00", b"\x00",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")])
        c.begin()
        self.assertReply(c.data(MSG), 250)
        self.assertEqual(self.one_message().data, MSG)

    def test_command_line_length_limit(self):
        c = self.connect()
        c.ehlo()
        # 1000 octets with CRLF: accepted; 1001 and far more: 500 5.5.2
        self.assertReply(c.cmd("NOOP " + "a" * 993), 250)
        for n in (994, 5000, 70000):
            with self.subTest(octets=n + 7):
                self.assertReply(c.cmd("NOOP " + "b" * n), 500, "5.5.2")
                self.assertReply(c.cmd("NOOP"), 250)
        c.begin(ehlo=False)
        self.assertReply(c.data(MSG), 250)
        self.assertEqual(self.one_message().data, MSG)

    def test_bare_lf_ends_a_command_line(self):
        c = self.connect()
        c.send(b"EHLO client.test\nNOOP\n")
        self.assertReply(c.reply(), 250, enh=False)
        self.assertReply(c.reply(), 250)

    def test_bad_arguments(self):
        c = self.connect()
        c.ehlo()
        bad, unknown = (501, "5.5.4"), (555, "5.5.4")
        sender, rcpt = (501, "5.1.7"), (501, "5.1.3")
        self.check_replies(c, [
            ("MAIL FROM:<a@example.test", *sender), ("MAIL FROM<a@example.test>", *bad),
            ("MAIL TO:<a@example.test>", *bad), ("MAIL FROM:", *sender), ("MAIL", *bad),
            ("MAIL FROM:<a@example.test> SIZE=abc", *bad),
            ("MAIL FROM:<a@example.test> BODY=9BIT", *bad),
            ("MAIL FROM:<a@example.test> FOO=bar", *unknown),
            ("MAIL FROM:<a@example.test> XYZZY", *unknown),
            ("MAIL FROM:<>", 250, None),
            ("RCPT TO:<>", *rcpt),
            ("RCPT TO:<b@example.test> NOTIFY=NEVER", *unknown),
            ("RCPT TO:<b@example.test>", 250, None)])
        self.assertReply(c.data(MSG), 250)
        m = self.one_message()
        self.assertEqual((m.env["mail_from"], m.env["rcpt"]), ("", ["b@example.test"]))

    def test_error_limit_closes(self):
        c = self.connect()
        for i in range(20):
            self.assertReply(c.cmd("BOGUS%d" % i), 500, "5.5.2")
        # the 421 comes right after the 20th error or as the next reply
        if c.quiet(0.3):
            c.send("BOGUS20\r\n")
        self.assertReply(c.reply(), 421, "4.7.0")
        self.assertClosed(c)

    def test_pipelined_transaction_answered_in_order(self):
        c = self.connect()
        self.assertIn("PIPELINING", c.ehlo())
        c.send("MAIL FROM:<p@example.test>\r\nRCPT TO:<r1@example.test>\r\n"
               "RCPT TO:<>\r\nRCPT TO:<r2@example.test>\r\nDATA\r\n")
        codes = [r.code for r in c.replies(5)]
        self.assertEqual(codes, [250, 250, 501, 250, 354])
        c.send(MSG + b".\r\nMAIL FROM:<q@example.test>\r\nRCPT TO:<r3@example.test>\r\n"
               b"DATA\r\n")
        self.assertEqual([r.code for r in c.replies(4)], [250, 250, 250, 354])
        c.send(MSG + b".\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual([r.code for r in c.replies(3)], [250, 250, 221])
        got = sorted((m.env["mail_from"], m.env["rcpt"], m.data)
                     for m in self.sink.new_messages(2))
        self.assertEqual(got, [("p@example.test", ["r1@example.test", "r2@example.test"], MSG),
                               ("q@example.test", ["r3@example.test"], MSG)])

    def test_data_end_marker_is_crlf_dot_crlf_only(self):
        c = self.connect()
        c.begin()
        body = b"Subject: lf\r\n\r\nbare\n.\nlf\r\ncr\r.\rcr\r\nend\r\n"
        self.assertReply(c.cmd("DATA"), 354)
        c.send(body + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertEqual(self.one_message().data, body)

    def test_client_reset_mid_data_leaves_sink_serving(self):
        c = self.connect()
        c.begin()
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: cut\r\n\r\npartial")
        c.reset()
        c2 = self.connect()
        c2.begin()
        self.assertReply(c2.data(MSG), 250)
        self.assertEqual([m.data for m in self.sink.new_messages(1)], [MSG])
        self.assertEqual(self.sink.tmp_files(), [])
        self.assertTrue(self.sink.alive())


class BdatTest(SinkTest):
    SINK_ARGS = ()

    def test_pipelined_chunks(self):
        c = self.connect()
        self.assertIn("CHUNKING", c.ehlo())
        chunks = [b"Subject: bdat\r\n\r\nfirst ", b"x\r\n.\r\ny\r\n", b"QUIT\r\n",
                  b".\r\n", b"BDAT 3\r\n", b"\x00\xff\r"]
        wire = b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
        wire += b"".join(b"BDAT %d\r\n" % len(ch) + ch for ch in chunks)
        c.send(wire + b"BDAT 0 LAST\r\n")
        replies = c.replies(2 + len(chunks) + 1)
        for r in replies[:2]:
            self.assertReply(r, 250)
        for r in replies[2:]:
            self.assertReply(r, 250, "2.0.0")
        self.assertReply(c.cmd("NOOP"), 250)
        m = self.one_message()
        self.assertEqual(m.data, b"".join(chunks))
        self.assertIs(m.env["chunking"], True)

    def test_single_last_chunk_then_data_transaction(self):
        c = self.connect()
        c.begin()
        c.send(b"BDAT %d LAST\r\n" % len(MSG) + MSG)
        self.assertReply(c.reply(), 250)
        c.begin(ehlo=False)
        self.assertReply(c.data(MSG), 250)
        got = sorted((m.env["chunking"], m.data) for m in self.sink.new_messages(2))
        self.assertEqual(got, [(False, MSG), (True, MSG)])

    def test_unparsable_size_closes(self):
        for arg in ("xyz", "", "-5", "12abc LAST"):
            with self.subTest(arg=arg):
                c = self.connect()
                c.begin()
                self.assertReply(c.cmd("BDAT " + arg), 501, "5.5.4")
                self.assertClosed(c)
        self.assertNoMessage()


class FramingTest(SinkTest):
    SINK_ARGS = ()

    def test_one_octet_per_segment(self):
        c = self.connect()
        for line in (b"EHLO client.test", b"MAIL FROM:<a@example.test>",
                     b"RCPT TO:<b@example.test>", b"DATA"):
            c.send_slowly(line + b"\r\n")
            self.assertLess(c.reply().code, 400)
        body = b"Subject: frag\r\n\r\n.stuffed\r\n.\r\nx\r\n"
        c.send_slowly(dot_stuff(body))
        self.assertReply(c.reply(), 250)
        self.assertEqual(self.one_message().data, body)
        c.begin(ehlo=False)
        c.send_slowly(b"BDAT 5\r\nhelloBDAT 3 LAST\r\n\r\n.")
        self.assertReply(c.reply(), 250)
        self.assertReply(c.reply(), 250)
        self.assertEqual(self.one_message().data, b"hello\r\n.")

    def test_large_messages(self):
        c = self.connect()
        c.begin()
        self.assertReply(c.data(BIG), 250)
        c.begin(ehlo=False)
        c.send(b"BDAT %d LAST\r\n" % len(BIG) + BIG)
        self.assertReply(c.reply(), 250)
        msgs = self.sink.new_messages(2)
        self.assertEqual([m.data == BIG for m in msgs], [True, True])


class LimitsTest(SinkTest):
    SINK_ARGS = ("--max-size", "1000", "--max-rcpts", "3")

    def test_size_advertised(self):
        c = self.connect()
        ext = c.ehlo()
        self.assertEqual(set(ext), EXTENSIONS)
        self.assertEqual(ext["SIZE"], "1000")

    def test_size_parameter_over_limit(self):
        c = self.connect()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<a@example.test> SIZE=1001"), 552, "5.3.4")
        self.assertReply(c.cmd("MAIL FROM:<a@example.test> SIZE=1000"), 250)

    def test_body_over_limit_after_dot(self):
        c = self.connect()
        c.begin()
        big = b"Subject: big\r\n\r\n" + b"z" * 70 + b"\r\n"
        self.assertReply(c.data(big * 20), 552, "5.3.4")
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNoMessage()
        c.begin(ehlo=False)
        self.assertReply(c.data(big), 250)
        self.assertEqual(self.one_message().data, big)

    def test_size_boundary(self):
        exact = b"x" * 498 + b"\r\n" + b"y" * 498 + b"\r\n"      # 1000 octets
        c = self.connect()
        c.ehlo()
        for data, code, enh in ((exact, 250, None), (b"x" + exact, 552, "5.3.4")):
            c.begin(ehlo=False)
            self.assertReply(c.data(data), code, enh)
        c.begin(ehlo=False)
        c.send(b"BDAT 1000 LAST\r\n" + exact)
        self.assertReply(c.reply(), 250)
        self.assertEqual([m.data for m in self.sink.new_messages(2)], [exact] * 2)

    def test_bdat_over_limit(self):
        c = self.connect()
        c.begin()
        c.send(b"BDAT 600\r\n" + b"a" * 600 + b"BDAT 600 LAST\r\n" + b"b" * 600)
        replies = c.replies(2)
        self.assertIn((552, "5.3.4"), [(r.code, r.enh) for r in replies])
        self.assertEqual(replies[-1].code // 100, 5, replies)
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertNoMessage()

    def test_max_rcpts(self):
        c = self.connect()
        c.begin(["r%d@example.test" % i for i in range(3)])
        self.assertReply(c.cmd("RCPT TO:<r3@example.test>"), 452, "4.5.3")
        self.assertReply(c.data(b"S: x\r\n\r\ny\r\n"), 250)
        self.assertEqual(self.one_message().env["rcpt"],
                         ["r%d@example.test" % i for i in range(3)])
