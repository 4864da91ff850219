"""Feedback mailboxes over IMAP (imap/, docs/feedback.md): volleyd polls a
private Dovecot (dovecotctl) over TLS, stores each report (an RFC 3464
DSN, an RFC 5965 ARF report) exactly once in data_dir/feedback/new/ with
its trace field, acts on it in the mailbox (flag, delete, move), leaves or
moves what is no report; survives kill -9 in a batch, a UIDVALIDITY
change, wrong credentials and CAs; refuses cleartext; stops within a
second even while a server hangs. Messages go in with Debian's Python's
imaplib (APPEND over TLS)."""

import os
import re
import signal
import socket
import threading
import time
import unittest

from . import dovecotctl, fbsamples, pki, util
from .daemon import VolleydTest, simple_job
from .sinkctl import Sink

USER, PASSWORD = "fbl", "s3cret-pw-9"


def dsn(rcpt, n):
    """An RFC 3464 delivery status notification for rcpt."""
    b = "dsn-boundary-%d" % n
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        "To: bounces+job.%d@news.example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Mon, 07 Dec 2026 05:00:00 +0000\r\n"
        "Message-ID: <dsn-%d@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"%s\"\r\n\r\n"
        "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "Your message could not be delivered.\r\n\r\n"
        "--%s\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "Arrival-Date: Mon, 07 Dec 2026 04:59:00 +0000\r\n\r\n"
        "Final-Recipient: rfc822; %s\r\nOriginal-Recipient: rfc822; %s\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Remote-MTA: dns; mx.example.net\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <%s>: Recipient address rejected\r\n\r\n"
        "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: news@example.com\r\nTo: %s\r\nSubject: News\r\n"
        "Message-ID: <job-%d@news.example.com>\r\n\r\n"
        "--%s--\r\n" % (n, n, b, b, b, rcpt, rcpt, rcpt, b, rcpt, n, b))


def arf(rcpt, n):
    """An RFC 5965 feedback report (a complaint) about a message to rcpt."""
    b = "arf-boundary-%d" % n
    return (
        "From: feedback@fbl.example.org\r\n"
        "To: fbl@news.example.com\r\n"
        "Subject: Abuse report %d\r\n"
        "Date: Mon, 07 Dec 2026 05:00:00 +0000\r\n"
        "Message-ID: <arf-%d@fbl.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report;\r\n"
        "\tboundary=\"%s\"\r\n\r\n"
        "--%s\r\nContent-Type: text/plain\r\n\r\n"
        "This is an email abuse report for a message received from you.\r\n\r\n"
        "--%s\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        "Original-Mail-From: <bounces+job.%d@news.example.com>\r\n"
        "Original-Rcpt-To: <%s>\r\n"
        "Arrival-Date: Mon, 07 Dec 2026 04:00:00 +0000\r\n"
        "Source-IP: 192.0.2.1\r\n\r\n"
        "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: news@example.com\r\nTo: %s\r\nSubject: News\r\n"
        "Message-ID: <job-%d@news.example.com>\r\n\r\n"
        "--%s--\r\n" % (n, n, b, b, b, n, rcpt, b, rcpt, n, b))


def garbage(n):
    return ("From: friend@example.org\r\nTo: fbl@news.example.com\r\n"
            "Subject: lunch? %d\r\nMessage-ID: <g-%d@example.org>\r\n\r\n"
            "Shall we have lunch on Tuesday?\r\n" % (n, n))


class ImapFixtures:
    """The private Dovecot and volleyd's mailbox configuration."""

    @classmethod
    def setUpClass(cls):
        cls.pkidir = util.tempdir("volley-imap-pki-")
        cls.ca = pki.TestCA(cls.pkidir)
        cls.chain, cls.key, _ = cls.ca.issue("imap", ["localhost"])
        cls.other_ca = pki.TestCA(util.tempdir("volley-imap-pki2-"), cn="Another CA")

    def start_dovecot(self, **kw):
        dv = dovecotctl.Dovecot(self.chain, self.key, self.ca.ca_pem, user=USER,
                                password=PASSWORD, **kw)
        self.addCleanup(dv.stop)
        return dv.start()

    def mailbox(self, dv, name="fbl", starttls=False, folder="INBOX", **kw):
        port = dv.imap_port if starttls else dv.imaps_port
        m = {"name": name, "url": "%s://localhost:%d/%s" % ("imap" if starttls else "imaps",
                                                             port, folder),
             "user": USER, "password": PASSWORD, "ca_file": self.ca.ca_pem, "poll": "1s"}
        m.update(kw)
        return m

    @staticmethod
    def config(*mailboxes, extra=""):
        items = []
        for m in mailboxes:
            items.append("{ " + " ".join('%s = "%s";' % (k, v) for k, v in m.items()) + " }")
        return "feedback = { %s mailboxes = ( %s ); };\n" % (extra, ", ".join(items))

    @staticmethod
    def stored(d):
        """{name: content} of the inbox's imap-* files (new/ and cur/)."""
        out = {}
        for sub in ("new", "cur"):
            p = os.path.join(d.data_dir, "feedback", sub)
            for f in os.listdir(p) if os.path.isdir(p) else []:
                if f.startswith("imap-"):
                    with open(os.path.join(p, f), "rb") as fh:
                        out[f] = fh.read().decode(errors="replace")
        return out

    def wait_stored(self, d, n, timeout=30):
        return self.wait_for("%d stored reports" % n,
                             lambda: (lambda s: s if len(s) >= n else None)(self.stored(d)),
                             timeout)

    @staticmethod
    def by_uid(rows):
        return {r["uid"]: r for r in rows}

    def metric(self, d, name, mailbox="fbl"):
        text = d.request("GET", "/metrics").body.decode()
        m = re.search(r'^%s\{mailbox="%s"\} (\S+)$' % (re.escape(name), mailbox), text, re.M)
        return float(m.group(1)) if m else None

    # ---- the tests ----


@unittest.skipUnless(dovecotctl.available(), "needs dovecot-imapd and /usr/bin/python3")
class FeedbackImap(ImapFixtures, VolleydTest):
    def test_reports_stored_flagged_and_garbage_left(self):
        dv = self.start_dovecot()
        u1 = dv.append(dsn("gone@example.net", 1))
        u2 = dv.append(garbage(2))
        u3 = dv.append(arf("complainer@example.net", 3))
        validity = dv.client([["uidvalidity", "INBOX"]])[0]
        d = self.start_daemon(config=self.config(self.mailbox(dv)))
        s = self.wait_stored(d, 2)
        want = {"imap-fbl-%d-%d" % (validity, u) for u in (u1, u3)}
        self.assertEqual(set(s), want)
        name = "imap-fbl-%d-%d" % (validity, u1)
        self.assertTrue(s[name].startswith(
            "X-Volley-Source: imap; mailbox=fbl; uidvalidity=%d; uid=%d\r\n" % (validity, u1)),
            s[name][:200])
        self.assertIn("Final-Recipient: rfc822; gone@example.net", s[name])
        self.assertIn("Original-Rcpt-To: <complainer@example.net>",
                      s["imap-fbl-%d-%d" % (validity, u3)])
        # flags: after the state advanced (the state file says so)
        state = os.path.join(d.data_dir, "feedback", "imap", "fbl.state")
        self.wait_for("the state at uid %d" % u3, lambda: os.path.exists(state) and
                      "last_uid %d\n" % u3 in open(state).read())
        rows = self.by_uid(dv.messages())
        for u in (u1, u3):
            self.assertIn("\\Seen", rows[u]["flags"])
            self.assertIn("$VolleyProcessed", rows[u]["flags"])
        self.assertNotIn("\\Seen", rows[u2]["flags"], "the garbage was read with \\Seen")
        self.assertNotIn("$VolleyProcessed", rows[u2]["flags"])
        with open(state) as f:
            self.assertEqual(f.read(), "volley-imap-state 1\nuidvalidity %d\nlast_uid %d\n"
                             % (validity, u3))
        self.assertEqual(self.metric(d, "volley_feedback_imap_reports_total"), 2)
        self.assertEqual(self.metric(d, "volley_feedback_imap_other_total"), 1)
        self.assertEqual(self.metric(d, "volley_feedback_imap_fetched_total"), 3)
        self.assertGreater(self.metric(d, "volley_feedback_imap_last_success_timestamp_seconds"),
                           time.time() - 60)
        # a new report later: only it is fetched
        u4 = dv.append(arf("late@example.net", 4))
        s = self.wait_stored(d, 3)
        self.assertIn("imap-fbl-%d-%d" % (validity, u4), s)
        self.wait_for("4 fetched", lambda: self.metric(
            d, "volley_feedback_imap_fetched_total") == 4)
        self.assertEqual(self.metric(d, "volley_feedback_imap_errors_total"), 0)
        self.assertEqual(d.stop(), 0, d.output())   # a clean exit (sanitizers too)

    def test_delete_and_other_moved(self):
        dv = self.start_dovecot()
        dv.append(dsn("a@example.net", 1))
        ug = dv.append(garbage(2))
        dv.append(arf("b@example.net", 3))
        d = self.start_daemon(config=self.config(self.mailbox(
            dv, processed="delete", other="move:Not Reports")))
        self.wait_stored(d, 2)
        self.wait_for("an empty INBOX", lambda: dv.messages() == [])
        moved = dv.messages("Not Reports")
        self.assertEqual(len(moved), 1, moved)
        self.assertNotIn("\\Seen", moved[0]["flags"])
        body = dv.client([["body", "Not Reports", moved[0]["uid"]]])[0]
        self.assertIn("Subject: lunch? 2", body)
        self.assertTrue(ug)

    def test_move_without_move_and_uidplus(self):
        """A server that offers neither MOVE nor UIDPLUS: COPY, \\Deleted and
        EXPUNGE (which also takes what else is marked deleted)."""
        dv = self.start_dovecot(capability="IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE "
                                "NAMESPACE CHILDREN")
        dv.append(dsn("a@example.net", 1))
        ug = dv.append(garbage(2))
        dv.append(arf("b@example.net", 3))
        d = self.start_daemon(config='log = { level = "debug"; };\n' + self.config(
            self.mailbox(dv, processed="move:Done")))
        self.wait_stored(d, 2)
        self.wait_for("the reports in Done", lambda: len(dv.messages("Done") or []) == 2)
        self.wait_for("only the garbage left", lambda: [r["uid"] for r in dv.messages()]
                      == [ug])
        self.assertNotIn("\\Seen", dv.messages()[0]["flags"])
        self.assertIn("imap: fbl: logged in (MOVE no, UIDPLUS no)", d.output())
        self.assertEqual(d.stop(), 0, d.output())

    def test_move_processed_over_starttls(self):
        dv = self.start_dovecot()
        u1 = dv.append(dsn("a@example.net", 1))
        ug = dv.append(garbage(2))
        u3 = dv.append(arf("b@example.net", 3))
        d = self.start_daemon(config=self.config(self.mailbox(
            dv, starttls=True, processed="move:Processed")))
        s = self.wait_stored(d, 2)
        self.assertEqual(len(s), 2)
        self.wait_for("the reports in Processed",
                      lambda: len(dv.messages("Processed") or []) == 2)
        rows = dv.messages()
        self.assertEqual([r["uid"] for r in rows], [ug])
        self.assertNotIn("\\Seen", rows[0]["flags"])
        # volleyd's logins came to the STARTTLS port, over TLS (Dovecot says so)
        on_imap = [x for x in dv.logins() if x[1] == dv.imap_port]
        self.assertTrue(on_imap, dv.log_text()[-2000:])
        self.assertTrue(all(x[2] and x[0] == USER for x in on_imap), on_imap)
        self.assertTrue(u1 and u3)

    def test_kill9_in_a_batch_each_report_once(self):
        dv = self.start_dovecot()
        n = 40
        uids = dv.client([["append", "INBOX", arf("r%d@example.net" % i, i), ""]
                          for i in range(n)])
        validity = dv.client([["uidvalidity", "INBOX"]])[0]
        d = self.start_daemon(config=self.config(self.mailbox(dv)))
        self.wait_for("a first report", lambda: len(self.stored(d)) >= 1, timeout=30)
        d.kill9()
        first = len(self.stored(d))
        d.start()
        s = self.wait_stored(d, n, timeout=60)
        self.assertEqual(set(s), {"imap-fbl-%d-%d" % (validity, u) for u in uids})
        # each report's content is its own (recipient i in file of uid i)
        for i, u in enumerate(uids):
            self.assertIn("Original-Rcpt-To: <r%d@example.net>" % i,
                          s["imap-fbl-%d-%d" % (validity, u)])
        self.wait_for("every message flagged", lambda: all(
            "$VolleyProcessed" in r["flags"] for r in dv.messages()))
        tmp = os.listdir(os.path.join(d.data_dir, "feedback", "tmp"))
        self.assertEqual(tmp, [], "a half-written file stayed")
        print("kill -9 after %d of %d stored" % (first, n))

    def test_stored_before_crash_is_not_stored_again(self):
        """The crash window between the store and the state: the report is
        there (the processor even moved it to cur/), the state is behind."""
        dv = self.start_dovecot()
        u1 = dv.append(dsn("a@example.net", 1))
        u2 = dv.append(arf("b@example.net", 2))
        validity = dv.client([["uidvalidity", "INBOX"]])[0]
        data = util.tempdir("volleyd-imap-", cleanup=self.addCleanup)
        cur = os.path.join(data, "feedback", "cur")
        os.makedirs(cur)
        name = "imap-fbl-%d-%d" % (validity, u1)
        with open(os.path.join(cur, name), "wb") as f:
            f.write(b"the processor's copy\r\n")
        d = self.start_daemon(data_dir=data, config=self.config(self.mailbox(dv)))
        self.wait_stored(d, 2)
        self.wait_for("both flagged", lambda: all(
            "$VolleyProcessed" in r["flags"] for r in dv.messages()))
        self.assertFalse(os.path.exists(os.path.join(data, "feedback", "new", name)),
                         "stored a second time")
        with open(os.path.join(cur, name), "rb") as f:
            self.assertEqual(f.read(), b"the processor's copy\r\n")
        other = "imap-fbl-%d-%d" % (validity, u2)       # in new/, or cur/ once processed
        self.assertTrue(any(os.path.exists(os.path.join(data, "feedback", sub, other))
                            for sub in ("new", "cur")))

    def test_uidvalidity_change(self):
        dv = self.start_dovecot()
        dv.client([["create", "FBL"]])
        u1 = dv.append(dsn("a@example.net", 1), folder="FBL")
        v1 = dv.client([["uidvalidity", "FBL"]])[0]
        data = util.tempdir("volleyd-imap-", cleanup=self.addCleanup)
        conf = self.config(self.mailbox(dv, folder="FBL"))
        d = self.start_daemon(data_dir=data, config=conf)
        self.wait_stored(d, 1)
        self.wait_for("flagged", lambda: "$VolleyProcessed" in dv.messages("FBL")[0]["flags"])
        self.assertEqual(d.stop(), 0)
        time.sleep(1.1)          # Dovecot's UIDVALIDITY is a time
        dv.client([["delete", "FBL"], ["create", "FBL"]])
        u2 = dv.append(arf("b@example.net", 2), folder="FBL")
        v2 = dv.client([["uidvalidity", "FBL"]])[0]
        self.assertNotEqual(v1, v2)
        self.assertEqual(u1, u2, "the new folder starts its UIDs again")
        d.start()
        s = self.wait_stored(d, 2)
        self.assertEqual(set(s), {"imap-fbl-%d-%d" % (v1, u1), "imap-fbl-%d-%d" % (v2, u2)})
        self.wait_for("the change logged", lambda: "UIDVALIDITY changed from %d to %d"
                      % (v1, v2) in d.output())

    def test_wrong_password_and_wrong_ca(self):
        dv = self.start_dovecot()
        dv.append(dsn("a@example.net", 1))
        bad_pw = self.mailbox(dv, name="badpw", password="not-the-password")
        bad_ca = self.mailbox(dv, name="badca", ca_file=self.other_ca.ca_pem)
        # the certificate names localhost, not 127.0.0.1
        bad_host = dict(self.mailbox(dv, name="badhost"),
                        url="imaps://127.0.0.1:%d/INBOX" % dv.imaps_port)
        d = self.start_daemon(config=self.config(bad_pw, bad_ca, bad_host))
        self.wait_for("the errors logged", lambda: "imap: badpw:" in d.output() and
                      "imap: badca:" in d.output() and "imap: badhost:" in d.output(),
                      timeout=20)
        time.sleep(4)            # several polls (1s, then backing off)
        out = d.output()
        self.assertEqual(self.stored(d), {})
        self.assertEqual(d.request("GET", "/v1/health").status, 200)
        self.assertNotIn("not-the-password", out)
        self.assertEqual(out.count("imap: badpw:"), 1, "logged more than once: " + out)
        self.assertEqual(out.count("imap: badca:"), 1, out)
        self.assertRegex(out, r"imap: badpw: .*(Login denied|denied)")
        self.assertRegex(out, r"imap: badca: .*(certificate|SSL)")
        self.assertRegex(out, r"imap: badhost: .*(subject name|host name|certificate)")
        # Dovecot delays a failed login (2 s): the retries come slower
        self.wait_for("a second failed poll", lambda: self.metric(
            d, "volley_feedback_imap_errors_total", "badpw") >= 2, timeout=30)
        self.assertEqual(d.output().count("imap: badpw:"), 1, "logged more than once")
        self.assertGreaterEqual(self.metric(d, "volley_feedback_imap_errors_total", "badca"), 1)
        self.assertEqual(self.metric(d, "volley_feedback_imap_reports_total", "badca"), 0)
        rows = dv.messages()
        self.assertNotIn("\\Seen", rows[0]["flags"])
        self.assertEqual(d.stop(), 0, d.output())   # a clean exit (sanitizers too)

    def test_cleartext_refused(self):
        # a scheme without TLS: a configuration error naming the key
        data = util.tempdir("volleyd-imap-", cleanup=self.addCleanup)
        conf = os.path.join(data, "volley.conf")
        for url in ("http://localhost/INBOX", "pop3://localhost/INBOX", "imap+plain://h/x"):
            with open(conf, "w") as f:
                f.write('data_dir = "%s";\n' % data + self.config(
                    {"url": url, "user": "u", "password": "p"}))
            p = util.start([util.build_path("volleyd", "VOLLEYD"), "--check-config",
                            "--config", conf], stdout=-1, stderr=-1)
            out, err = p.communicate(timeout=20)
            self.assertNotEqual(p.returncode, 0, url)
            self.assertIn(b"feedback.mailboxes[0].url", out + err)
            self.assertIn(b"TLS is required", out + err)
        # imap:// to a server that offers no STARTTLS: no login, an error
        srv = FakeImap(starttls=False)
        self.addCleanup(srv.stop)
        d = self.start_daemon(config=self.config({
            "name": "plain", "url": "imap://127.0.0.1:%d/INBOX" % srv.port, "user": USER,
            "password": PASSWORD, "poll": "1s"}))
        self.wait_for("the error logged", lambda: "imap: plain:" in d.output())
        self.assertTrue(srv.connections >= 1)
        self.assertFalse(any(PASSWORD.encode() in line or b"LOGIN" in line.upper()
                             or b"AUTHENTICATE" in line.upper() for line in srv.received),
                         srv.received)
        self.assertRegex(d.output(), r"imap: plain: .*(SSL|TLS)")
        self.assertEqual(d.stop(), 0, d.output())   # a clean exit (sanitizers too)

    def test_stop_while_a_server_hangs(self):
        srv = FakeImap(hang=True)
        self.addCleanup(srv.stop)
        d = self.start_daemon(config=self.config({
            "name": "hang", "url": "imaps://127.0.0.1:%d/INBOX" % srv.port, "user": USER,
            "password": PASSWORD, "poll": "1s"}))
        self.wait_for("a connection", lambda: srv.connections >= 1)
        time.sleep(0.5)
        t0 = time.monotonic()
        self.assertEqual(d.stop(wait=10), 0)
        self.assertLess(time.monotonic() - t0, 3.0, "the stop waited for the hung poll")

    def test_reload_says_a_restart_is_needed(self):
        dv = self.start_dovecot()
        d = self.start_daemon(config=self.config(self.mailbox(dv)))
        path = os.path.join(d.data_dir, "volley.conf")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('poll = "1s"', 'poll = "7s"'))
        d.proc.send_signal(signal.SIGHUP)
        self.wait_for("the reload's note", lambda: "reload: feedback.mailboxes changed: "
                      "needs a restart" in d.output())
        self.assertNotIn(PASSWORD, d.output())
        self.assertEqual(d.request("GET", "/v1/health").status, 200)

    def test_too_large_is_not_a_report(self):
        dv = self.start_dovecot()
        big = arf("big@example.net", 1).replace(
            "This is an email abuse report", "x" * 3000 + "\r\nThis is an email abuse report")
        ub = dv.append(big)
        us = dv.append(dsn("small@example.net", 2))
        d = self.start_daemon(config=self.config(self.mailbox(dv),
                                                 extra='max_message_size = "2KB";'))
        s = self.wait_stored(d, 1)
        self.wait_for("both looked at", lambda: self.metric(
            d, "volley_feedback_imap_fetched_total") == 2)
        self.assertEqual(len(self.stored(d)), 1, s)
        self.assertTrue(list(s)[0].endswith("-%d" % us))
        self.assertIn("uid %d: " % ub, d.output())
        self.assertIn("over feedback.max_message_size", d.output())
        rows = self.by_uid(dv.messages())
        self.assertNotIn("\\Seen", rows[ub]["flags"])
        self.assertEqual(d.stop(), 0, d.output())   # a clean exit (sanitizers too)


class FakeImap:
    """A loopback TCP server that greets as IMAP and offers no STARTTLS
    (or says nothing at all: hang); records what clients send."""

    def __init__(self, starttls=False, hang=False):
        self.hang = hang
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = []
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            self.conns.append(c)
            if not self.hang:
                threading.Thread(target=self._talk, args=(c,), daemon=True).start()

    def _talk(self, c):
        c.settimeout(10)
        try:
            c.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n")
            buf = b""
            while not self.stopping:
                chunk = c.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    self.received.append(line)
                    tag = line.split(b" ", 1)[0]
                    if b"CAPABILITY" in line.upper():
                        c.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag +
                                  b" OK done\r\n")
                    else:
                        c.sendall(tag + b" BAD not here\r\n")
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(dovecotctl.available(), "needs dovecot-imapd and /usr/bin/python3")
class FeedbackImapEffects(ImapFixtures, VolleydTest):
    def test_reports_in_the_mailbox_reach_the_job(self):
        """The whole loop over IMAP: a job delivered to volley-sink, a late
        bounce and a complaint about two of its recipients put in the
        mailbox; volleyd fetches them, and the job shows one recipient
        bounced late and one complaint on the suppression list."""
        sink = Sink("--tls").start()
        self.addCleanup(sink.stop)
        dv = self.start_dovecot()
        route = ('domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
                 % sink.route())
        d = self.start_daemon(config=route + self.config(self.mailbox(dv)))
        jid = d.submit(simple_job(3, domain="d.test", verp=True)).json()["id"]
        self.wait_for("the job done", lambda: d.request("GET", "/v1/jobs/" + jid).json()["done"])
        to = fbsamples.verp("bounces", "news.example.com", jid, 1)
        dv.append(fbsamples.dsn("user1@d.test", to, fbsamples.msgid(jid, 1, "volley.test"))
                  .decode())
        dv.append(fbsamples.arf("user2@d.test", "fbl@news.example.com",
                                fbsamples.msgid(jid, 2, "volley.test")).decode())
        dv.append(garbage(9))

        def applied():
            j = d.request("GET", "/v1/jobs/" + jid).json()
            return j if j["feedback"]["async_bounces"] == 1 and \
                j["feedback"]["complaints"] == 1 else None
        j = self.wait_for("both reports applied", applied, timeout=30)
        self.assertEqual((j["counts"]["delivered"], j["counts"]["bounced"]), (2, 1), j)
        sup = {x["email"]: x for x in d.request("GET", "/v1/suppression").json()["suppressed"]}
        self.assertEqual(sup["user2@d.test"]["reason"], "complaint")
        sources = {r["source"] for r in d.request("GET", "/v1/feedback").json()["reports"]}
        self.assertEqual(sources, {"imap"})
