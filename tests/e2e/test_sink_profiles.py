"""volley-sink --profile gmail|yahoo|microsoft: throttling per client IP,
driven with Python's smtplib from two loopback source addresses (127.0.0.2
and 127.0.0.3 stand for two sending IPs), then volleyd delivering a job to
a gmail-profile sink with a low rate. Every wait is bounded."""

import smtplib
import time

from . import util
from .daemon import VolleydTest, simple_job
from .sinkctl import Sink, SinkTest

IP_A, IP_B = "127.0.0.2", "127.0.0.3"
MSG = "From: <a@sender.test>\r\nTo: <b@rcpt.test>\r\nSubject: profile\r\n\r\nhello\r\n"

GMAIL_CONNS = "4.7.0 Try again later, closing connection."
GMAIL_RATE = ("4.7.28 [%s] Our system has detected an unusual rate of unsolicited mail "
              "originating from your IP address.")
YAHOO_TSS04 = ("4.7.0 [TSS04] Messages from %s temporarily deferred due to unexpected "
               "volume or user complaints - 4.16.55.1; see "
               "https://postmaster.yahooinc.com/error-codes")
MS_650 = "4.7.650 The mail server [%s] has been temporarily rate limited due to IP reputation."
MS_500 = "4.7.500 Server busy. Please try again later from [%s]."
GMAIL_RCPTS = "4.5.3 Your message has too many recipients."

# no reputation age unless a test wants one
NO_AGE = ("--profile-new-defer", "0", "--profile-ramp", "0")


def text(msg):
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg


class Profiles(SinkTest):
    def profile_sink(self, *args):
        return self.start_sink("--stats-every", "100ms", *args)

    def smtp_from(self, sink, source, ehlo=True):
        """smtplib from source (the client socket bound to it), greeted."""
        s = smtplib.SMTP(sink.host, sink.port, local_hostname="client.test",
                         timeout=5, source_address=(source, 0))
        self.addCleanup(self._close, s)
        if ehlo:
            code, msg = s.ehlo()
            self.assertEqual(code, 250, text(msg))
        return s

    @staticmethod
    def _close(s):
        try:
            s.close()
        except OSError:
            pass

    def assertText(self, code_msg, code, expect):
        got_code, msg = code_msg
        self.assertEqual(got_code, code, text(msg))
        self.assertIn(expect, text(msg))

    def send_one(self, s, rcpt="b@rcpt.test"):
        """MAIL, RCPT, DATA with smtplib, each checked; the final reply."""
        self.assertEqual(s.mail("a@sender.test")[0], 250)
        self.assertEqual(s.rcpt(rcpt)[0], 250)
        return s.data(MSG)

    def ip_stats(self, sink, ip):
        """ip's entry in a stats line printed after now (waits for one)."""
        now = time.time()

        def entry():
            lines = [l for l in sink.stats_lines() if l["time"] > now + 0.05]
            return lines and lines[-1].get("ips", {}).get(ip)
        got = util.wait_until(entry, 3.0)
        self.assertTrue(got, "no stats for %s: %r" % (ip, sink.stdout()[-2000:]))
        return got

    # -- connection limit per IP -------------------------------------------
    def test_gmail_connection_limit_per_ip(self):
        sink = self.profile_sink("--profile", "gmail", "--profile-conns", "2", *NO_AGE)
        a1, a2 = self.smtp_from(sink, IP_A), self.smtp_from(sink, IP_A)
        # the third from the same IP: Gmail answers its EHLO and closes
        a3 = self.smtp_from(sink, IP_A, ehlo=False)
        self.assertText(a3.ehlo(), 421, GMAIL_CONNS)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            a3.noop()
        # the other IP has a count of its own: accepted, and it sends
        b = self.smtp_from(sink, IP_B)
        self.assertEqual(self.send_one(b)[0], 250)
        # one of the first IP's connections ends: room for another
        a1.quit()
        a4 = util.wait_until(lambda: self.try_ehlo(sink, IP_A), 3.0)
        self.assertTrue(a4, "no room after a connection of %s closed" % IP_A)
        self.assertEqual(self.send_one(a4)[0], 250)
        a2.quit()
        st = self.ip_stats(sink, IP_A)
        self.assertEqual(st["by_reason"]["conns"], 1, st)
        self.assertEqual(st["accepted"], 1, st)
        self.assertEqual(self.ip_stats(sink, IP_B)["throttled"], 0)

    def try_ehlo(self, sink, ip):
        s = self.smtp_from(sink, ip, ehlo=False)
        code, _ = s.ehlo()
        return s if code == 250 else None

    def test_yahoo_connection_limit_at_connect(self):
        sink = self.profile_sink("--profile", "yahoo", "--profile-conns", "1", *NO_AGE)
        self.smtp_from(sink, IP_A)
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            self.smtp_from(sink, IP_A, ehlo=False)
        self.assertText((cm.exception.smtp_code, cm.exception.smtp_error), 421,
                        YAHOO_TSS04 % IP_A)
        b = self.smtp_from(sink, IP_B)
        self.assertEqual(self.send_one(b)[0], 250)

    def test_microsoft_connection_limit_at_connect(self):
        sink = self.profile_sink("--profile", "microsoft", "--profile-conns", "1", *NO_AGE)
        self.smtp_from(sink, IP_B)
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            self.smtp_from(sink, IP_B, ehlo=False)
        self.assertText((cm.exception.smtp_code, cm.exception.smtp_error), 451,
                        MS_650 % IP_B)
        self.smtp_from(sink, IP_A)

    # -- message rate per IP -----------------------------------------------
    def test_gmail_rate_limit_after_data(self):
        sink = self.profile_sink("--profile", "gmail", "--profile-rate", "3/s", *NO_AGE)
        a, b = self.smtp_from(sink, IP_A), self.smtp_from(sink, IP_B)
        for _ in range(3):      # the bucket holds one second's worth
            self.assertEqual(self.send_one(a)[0], 250)
        # the fourth: MAIL, RCPT and DATA pass, the end of data gets 4.7.28
        self.assertText(self.send_one(a), 421, GMAIL_RATE % IP_A)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            a.noop()
        # the other IP's bucket is its own
        for _ in range(3):
            self.assertEqual(self.send_one(b)[0], 250)
        # a third of a second later one token is back for the first IP
        time.sleep(0.4)
        a2 = self.smtp_from(sink, IP_A)
        self.assertEqual(self.send_one(a2)[0], 250)
        self.assertText(self.send_one(a2), 421, GMAIL_RATE % IP_A)
        st = self.ip_stats(sink, IP_A)
        self.assertEqual((st["accepted"], st["by_reason"]["rate"]), (4, 2), st)
        st = self.ip_stats(sink, IP_B)
        self.assertEqual((st["accepted"], st["throttled"]), (3, 0), st)
        self.assertEqual(len(sink.new_messages(7, wait=3)), 7)

    def test_gmail_rate_limit_moved_to_rcpt(self):
        sink = self.profile_sink("--profile", "gmail", "--profile-rate", "1/s",
                                 "--profile-rate-stage", "rcpt", *NO_AGE)
        a = self.smtp_from(sink, IP_A)
        # one token a message: its other recipients do not spend more
        self.assertEqual(a.sendmail("a@sender.test", ["r1@rcpt.test", "r2@rcpt.test"], MSG),
                         {})
        self.assertEqual(a.mail("a@sender.test")[0], 250)
        self.assertText(a.rcpt("r3@rcpt.test"), 421, GMAIL_RATE % IP_A)

    def test_microsoft_rate_limit_at_mail(self):
        sink = self.profile_sink("--profile", "microsoft", "--profile-rate", "2/s",
                                 "--profile-burst", "2", *NO_AGE)
        a = self.smtp_from(sink, IP_A)
        for _ in range(2):
            self.assertEqual(self.send_one(a)[0], 250)
        self.assertText(a.mail("a@sender.test"), 451, MS_500 % IP_A)
        # a 451 keeps the connection: the same MAIL passes once a token is back
        time.sleep(0.6)
        self.assertEqual(a.rset()[0], 250)
        self.assertEqual(self.send_one(a)[0], 250)

    def test_yahoo_rate_limit_at_mail(self):
        sink = self.profile_sink("--profile", "yahoo", "--profile-rate", "60/min",
                                 "--profile-burst", "1", *NO_AGE)
        a = self.smtp_from(sink, IP_A)
        self.assertEqual(self.send_one(a)[0], 250)
        self.assertText(a.mail("a@sender.test"), 421, YAHOO_TSS04 % IP_A)
        b = self.smtp_from(sink, IP_B)
        self.assertEqual(self.send_one(b)[0], 250)

    def test_yahoo_messages_per_connection(self):
        sink = self.profile_sink("--profile", "yahoo", "--profile-msgs-per-conn", "2",
                                 "--profile-rate", "0", *NO_AGE)
        a = self.smtp_from(sink, IP_A)
        for _ in range(2):
            self.assertEqual(self.send_one(a)[0], 250)
        self.assertText(a.mail("a@sender.test"), 421,
                        "Max message per connection reached, closing transmission channel")
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            a.noop()
        a2 = self.smtp_from(sink, IP_A)     # a new connection starts over
        self.assertEqual(self.send_one(a2)[0], 250)
        self.assertEqual(self.ip_stats(sink, IP_A)["by_reason"]["per_conn"], 1)

    # -- reputation age ----------------------------------------------------
    def test_new_ip_deferred_then_accepted(self):
        # Microsoft's 60 s deferral of a new IP, scaled down 60 times
        sink = self.profile_sink("--profile", "microsoft", "--profile-time-scale", "60")
        a = self.smtp_from(sink, IP_A)
        t0 = time.monotonic()
        self.assertText(a.mail("a@sender.test"), 451, MS_650 % IP_A)
        # deferred until a second has passed since the IP was first seen
        def accepted():
            code, _ = a.mail("a@sender.test")
            if code == 250:
                return True
            a.rset()
            time.sleep(0.05)
            return False
        self.assertTrue(util.wait_until(accepted, 5.0))
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)
        self.assertEqual(a.rcpt("b@rcpt.test")[0], 250)
        self.assertEqual(a.data(MSG)[0], 250)
        # the other IP is new on its own clock
        b = self.smtp_from(sink, IP_B)
        self.assertText(b.mail("a@sender.test"), 451, MS_650 % IP_B)
        st = self.ip_stats(sink, IP_A)
        self.assertGreaterEqual(st["by_reason"]["new_ip"], 1, st)
        self.assertEqual(st["accepted"], 1, st)

    def test_yahoo_new_ip_deferred_at_connect(self):
        sink = self.profile_sink("--profile", "yahoo", "--profile-new-defer", "1s",
                                 "--profile-ramp", "0")
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            self.smtp_from(sink, IP_A, ehlo=False)
        self.assertText((cm.exception.smtp_code, cm.exception.smtp_error), 421,
                        YAHOO_TSS04 % IP_A)
        time.sleep(1.1)
        a = self.smtp_from(sink, IP_A)
        self.assertEqual(self.send_one(a)[0], 250)

    # -- the table: shared by the workers, bounded --------------------------
    def test_limit_holds_across_worker_threads(self):
        # SO_REUSEPORT spreads the connections over both workers' rings
        sink = self.profile_sink("--threads", "2", "--profile", "yahoo",
                                 "--profile-conns", "3", *NO_AGE)
        for _ in range(3):
            self.smtp_from(sink, IP_A)
        for _ in range(4):
            with self.assertRaises(smtplib.SMTPConnectError):
                self.smtp_from(sink, IP_A, ehlo=False)
        self.assertEqual(self.ip_stats(sink, IP_A)["conns"], 3)

    def test_table_forgets_the_least_recently_seen_ip(self):
        sink = self.profile_sink("--profile", "gmail", "--profile-max-ips", "1", *NO_AGE)
        a = self.smtp_from(sink, IP_A)
        self.assertEqual(self.send_one(a)[0], 250)
        # while the first IP has a connection open, a second IP has no room
        b = self.smtp_from(sink, IP_B, ehlo=False)
        self.assertText(b.ehlo(), 421, GMAIL_CONNS)
        a.quit()
        b = util.wait_until(lambda: self.try_ehlo(sink, IP_B), 3.0)
        self.assertTrue(b, "the idle IP was not forgotten")
        self.assertEqual(self.send_one(b)[0], 250)
        last = util.wait_until(lambda: [l for l in sink.stats_lines()
                                        if IP_B in l["ips"] and l["ips"][IP_B]["accepted"]],
                               3.0)
        self.assertTrue(last, sink.stdout()[-2000:])
        self.assertEqual(list(last[-1]["ips"]), [IP_B])
        self.assertEqual(last[-1]["ips_forgotten"], 1)
        # the refused EHLO, and any retry before the first IP's close was seen
        self.assertGreaterEqual(last[-1]["ips_full"], 1)

    # -- recipients per message --------------------------------------------
    def test_gmail_too_many_recipients(self):
        sink = self.profile_sink("--profile", "gmail", *NO_AGE)
        a = self.smtp_from(sink, IP_A)
        rcpts = ["r%d@rcpt.test" % i for i in range(101)]
        refused = a.sendmail("a@sender.test", rcpts, MSG)
        self.assertEqual(list(refused), ["r100@rcpt.test"])
        self.assertText(refused["r100@rcpt.test"], 452, GMAIL_RCPTS)
        m = self.one_message(sink)
        self.assertEqual(m.env["rcpt"], rcpts[:100])


class VolleydAgainstGmail(VolleydTest):
    """volleyd's adaptive back-off against a gmail-profile sink: the
    profile's 421 4.7.28 replies are transient, volleyd slows the site down
    and retries, and every recipient is delivered, none bounced."""

    N = 300

    def test_every_recipient_delivered_without_bounces(self):
        sink = Sink("--tls", "--profile", "gmail", "--profile-rate", "25/s",
                    "--profile-time-scale", "600", "--stats-every", "500ms")
        self.addCleanup(sink.finish)
        sink.start()
        conf = ('egress = ( { address = "%s"; ehlo = "mta1.volley.test"; } );\n'
                'domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; '
                'max_connections = 8; } );\n'
                'defaults = { retry = [ "1s" ]; max_age = "10m"; };\n'
                % (IP_A, sink.route()))
        d = self.start_daemon(config=conf)
        t0 = time.monotonic()
        jid = d.submit(simple_job(self.N, domain="gmail.test")).json()["id"]
        j = self.wait_done(d, jid, timeout=180)
        took = time.monotonic() - t0
        c = j["counts"]
        self.assertEqual((c["delivered"], c["bounced"], c.get("expired", 0)),
                         (self.N, 0, 0), j)
        msgs = sink.new_messages(self.N, wait=10)
        self.assertEqual(sorted(m.env["rcpt"][0] for m in msgs),
                         sorted("user%d@gmail.test" % i for i in range(self.N)))
        self.assertEqual({m.env["peer"].rsplit(":", 1)[0] for m in msgs}, {IP_A})
        stats = sink.final_stats()
        ip = stats["ips"][IP_A]
        self.assertEqual(ip["accepted"], self.N, ip)
        # the profile pushed back, and volleyd took it as a slow-down
        self.assertGreater(ip["by_reason"]["rate"], 0, ip)
        ev = d.request("GET", "/v1/events?job=" + jid).lines()
        types = [e["type"] for e in ev]
        self.assertEqual(types.count("Delivery"), self.N)
        self.assertNotIn("Bounce", types)
        # the profile's 4.7.28 came back as a rate-limited transient failure
        slow = [e for e in ev if e["type"] == "TransientFailure" and e["response"]
                and e["response"]["enhanced"] == "4.7.28"]
        self.assertTrue(slow, [e for e in ev if e["type"] == "TransientFailure"][:3])
        self.assertEqual({e["bounce_class"] for e in slow}, {"rate-limited"})
        self.assertIn("unusual rate of unsolicited mail", slow[0]["response"]["text"])
        print("\n  %d recipients in %.1f s; sink: %s" % (self.N, took, ip))
