"""Counters on stdout, exit status, usage errors."""

import signal
import smtplib
import socket

from . import util
from .sinkctl import DEFAULT_HOST, STATS_KEYS, SinkTest, run_once


class StatsTest(SinkTest):
    def test_periodic_lines(self):
        sink = self.start_sink("--stats-every", "100ms")
        self.connect(sink)                   # greeted: accepted and open

        def wait_lines(n, seconds=3.0):
            util.wait_until(lambda: len(sink.stats_lines()) >= n, seconds, 0.05)
            return sink.stats_lines()

        lines = wait_lines(len(wait_lines(0, 0)) + 3)
        self.assertGreaterEqual(len(lines), 3, sink.stdout())
        for line in lines:
            self.assertLessEqual(STATS_KEYS, set(line), line)
        times = [line["time"] for line in lines]
        self.assertEqual(times, sorted(times))
        self.assertGreater(times[-1], 1.6e9)
        self.assertEqual((lines[-1]["conns_open"], lines[-1]["conns_total"]), (1, 1))

    def test_final_line_matches_traffic(self):
        sink = self.start_sink()
        s = self.smtp(sink)
        sizes = []
        for n in (1, 2, 3):
            msg = b"Subject: count\r\n\r\n" + b"x" * (100 * n) + b"\r\n"
            self.assertEqual(s.sendmail("a@example.test",
                                        ["r%d@example.test" % i for i in range(n)], msg), {})
            sizes.append(len(msg))
        with self.assertRaises(smtplib.SMTPDataError):      # 554 5.6.0, not counted
            s.sendmail("a@example.test", ["r@example.test"], b"S: x\r\n\r\n" + b"y" * 1200)
        self.assertEqual(s.docmd("XYZZY")[0], 500)
        self.assertEqual(s.docmd("QUIT")[0], 221)
        self.assertEqual(s.sock.recv(1), b"")               # closed by the sink
        self.assertEqual(sorted(len(m.data) for m in sink.new_messages(3)), sizes)
        stats = sink.final_stats()
        self.assertEqual(sink.returncode, 0)
        self.assertLessEqual(STATS_KEYS, set(stats), stats)
        want = {"messages": 3, "recipients": 6, "bytes": sum(sizes), "conns_open": 0,
                "conns_total": 1, "conns_refused": 0, "tls_sessions": 0,
                "replies_4xx": 0, "replies_5xx": 2, "drops": 0, "timeouts": 0,
                "errors": 1}
        self.assertEqual({k: stats[k] for k in want}, want)

    def test_sigint_exits_zero_with_final_line(self):
        sink = self.start_sink()
        sink.proc.send_signal(signal.SIGINT)
        self.assertEqual(sink.proc.wait(5), 0)
        self.assertLessEqual(STATS_KEYS, set(sink.final_stats()))


class UsageTest(SinkTest):
    def test_usage_errors_exit_2_naming_the_option(self):
        listen = ["--listen", "%s:%d" % (DEFAULT_HOST, util.free_port(DEFAULT_HOST))]
        for args, option in (
                (["--bogus"], "--bogus"),
                (["--listen"], "--listen"),
                (["--reply", "nonsense"], "--reply"),
                (["--reply", "nostage=250 2.0.0 ok"], "--reply"),
                (["--reply", "rcpt=hello"], "--reply"),
                (["--timeout", "5x"], "--timeout"),
                (["--latency", "abc"], "--latency"),
                (["--stats-every", "ms"], "--stats-every"),
                (["--tempfail", "bogus:5%"], "--tempfail"),
                (["--disconnect", "abc%"], "--disconnect"),
                (["--max-conns", "many"], "--max-conns")):
            with self.subTest(args=args):
                rc, _, err = run_once(*(listen + args))
                self.assertEqual(rc, 2, err)
                self.assertIn(option, err)

    def test_accepted_option_forms(self):
        sink = self.start_sink("--timeout", "1m", "--latency", "0", "--stats-every", "1h",
                               "--tempfail", "rcpt:0.5%", "--permfail", "0",
                               "--disconnect", "dot:0%", "--seed", "1", "--max-size",
                               "1000000", "--quiet", "--hostname", "other.test")
        c = self.connect(sink, greet=False)
        self.assertReply(c.reply(), 220, text="other.test")
        self.assertEqual(sink.stop(), 0)
        self.assertEqual(sink.stderr(), "")

    def test_address_in_use_exits_1(self):
        with socket.socket() as s:
            s.bind((DEFAULT_HOST, 0))
            s.listen()
            rc, _, err = run_once("--listen", "%s:%d" % s.getsockname())
        self.assertEqual(rc, 1, err)
