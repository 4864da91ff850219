"""The feedback loop end to end: reports stored in the inbox
(data_dir/feedback/new/, where the return-path receiver and the IMAP
fetcher put them) are parsed, matched to a job and a recipient, and
applied: late bounces (OOB), complaints (Feedback, suppression reason
complaint), complaint-rate pauses of a job and of a sending domain, the
reports log (/v1/feedback, `volley feedback`), exactly once across a
restart. Every wait is bounded."""

import json
import os
import subprocess
import time

from . import fbsamples
from .daemon import VOLLEY, VolleydTest, simple_job
from .sinkctl import Sink


def conf(sink, extra="", feedback=""):
    return ('domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; %s } );\n'
            'defaults = { retry = [ "1s" ]; };\n'
            'feedback = { %s };\n' % (sink.route(), extra, feedback))


def dsn(jid, idx, rcpt, status="5.1.1", action="failed",
        diag="550 5.1.1 <%s>: Recipient address rejected: User unknown", verp=True):
    """An RFC 3464 DSN as Postfix writes one."""
    to = "bounces+%s.%d@news.example.com" % (jid, idx) if verp else "bounces@news.example.com"
    return ("Return-Path: <>\r\n"
            "Delivered-To: %s\r\n"
            "From: MAILER-DAEMON@mx.d.test (Mail Delivery System)\r\n"
            "To: %s\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n"
            "\r\n"
            "--B1\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
            "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.d.test\r\n\r\n"
            "Final-Recipient: rfc822; %s\r\n"
            "Action: %s\r\n"
            "Status: %s\r\n"
            "Remote-MTA: dns; store.d.test\r\n"
            "Diagnostic-Code: smtp; %s\r\n"
            "\r\n"
            "--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            "From: Example News <news@example.com>\r\n"
            "To: %s\r\n"
            "Subject: Hello\r\n"
            "Message-ID: <%s.%d@volley.test>\r\n"
            "\r\n--B1--\r\n" % (to, to, rcpt, action, status, diag % rcpt if "%s" in diag else diag,
                                rcpt, jid, idx)).encode()


def arf(jid, idx, rcpt, ftype="abuse", with_msgid=True, with_rcpt=True):
    """An RFC 5965 feedback report as a mailbox provider sends one."""
    rcpt_line = "Original-Rcpt-To: %s\r\n" % rcpt if with_rcpt else ""
    msgid = "Message-ID: <%s.%d@volley.test>\r\n" % (jid, idx) if with_msgid else ""
    return ("From: feedbackloop@fbl.mail.test\r\n"
            "To: fbl@news.example.com\r\n"
            "Subject: FW: Hello\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=feedback-report; boundary=\"F1\"\r\n"
            "\r\n"
            "--F1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
            "--F1\r\nContent-Type: message/feedback-report\r\n\r\n"
            "Feedback-Type: %s\r\n"
            "User-Agent: ExampleFBL/1.0\r\n"
            "Version: 1\r\n"
            "Original-Mail-From: <bounces@news.example.com>\r\n"
            "%s"
            "Source-IP: 192.0.2.10\r\n"
            "Reported-Domain: example.com\r\n"
            "\r\n"
            "--F1\r\nContent-Type: message/rfc822\r\n\r\n"
            "From: Example News <news@example.com>\r\n"
            "To: %s\r\n"
            "Subject: Hello\r\n"
            "%s"
            "\r\nHi.\r\n"
            "--F1--\r\n" % (ftype, rcpt_line, rcpt, msgid)).encode()


class FeedbackLoop(VolleydTest):
    def setUp(self):
        self.sink = Sink("--tls").start()
        self.addCleanup(self.sink.stop)
        self.seq = 0

    def drop(self, d, data, name=None):
        """Store a report in the inbox as the receiver does: tmp/, then new/."""
        self.seq += 1
        name = name or "%d.test%d.volley" % (int(time.time()), self.seq)
        base = os.path.join(d.data_dir, "feedback")
        os.makedirs(os.path.join(base, "tmp"), exist_ok=True)
        os.makedirs(os.path.join(base, "new"), exist_ok=True)
        tmp = os.path.join(base, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(base, "new", name))
        return name

    def processed(self, d, name):
        cur = os.path.join(d.data_dir, "feedback", "cur", name)
        self.wait_for("%s processed" % name, lambda: os.path.exists(cur), timeout=10)

    def job(self, d, jid):
        return d.request("GET", "/v1/jobs/" + jid).json()

    def suppression(self, d):
        return {s["email"]: s for s in d.request("GET", "/v1/suppression").json()["suppressed"]}

    def reports(self, d, q=""):
        return d.request("GET", "/v1/feedback" + q).json()["reports"]

    def test_late_bounce_moves_delivered_to_bounced_once(self):
        d = self.start_daemon(config=conf(self.sink))
        jid = d.submit(simple_job(3, domain="d.test", verp=True)).json()["id"]
        self.assertEqual(self.wait_done(d, jid)["counts"]["delivered"], 3)
        name = self.drop(d, dsn(jid, 1, "user1@d.test"))
        self.processed(d, name)
        j = self.job(d, jid)
        self.assertEqual((j["counts"]["delivered"], j["counts"]["bounced"]), (2, 1), j)
        self.assertEqual(j["feedback"]["async_bounces"], 1)
        rows = d.request("GET", "/v1/jobs/%s/recipients?state=bounced" % jid).lines()
        self.assertEqual([r["email"] for r in rows], ["user1@d.test"])
        self.assertEqual(rows[0]["response"]["code"], 550)
        self.assertEqual(rows[0]["response"]["enhanced"], "5.1.1")
        self.assertEqual(rows[0]["bounce_class"], "invalid-recipient")
        oob = self.events(d, jid, "OOB")
        self.assertEqual(len(oob), 1)
        self.assertEqual(oob[0]["recipient"], "user1@d.test")
        self.assertEqual(oob[0]["mx"], "store.d.test")
        self.assertIn("user1@d.test", self.suppression(d))
        rep = self.reports(d)[0]
        self.assertEqual((rep["kind"], rep["effect"], rep["matched_by"], rep["index"]),
                         ("dsn", "bounced", "verp", 1))
        # the same report again (a second copy): nothing changes
        again = self.drop(d, dsn(jid, 1, "user1@d.test"))
        self.processed(d, again)
        self.assertEqual(self.reports(d)[0]["effect"], "duplicate")
        j = self.job(d, jid)
        self.assertEqual((j["counts"]["delivered"], j["counts"]["bounced"]), (2, 1))
        self.assertEqual(len(self.events(d, jid, "OOB")), 1)
        # and after kill -9, from the job's feedback file
        d.kill9()
        d.start()
        j = self.job(d, jid)
        self.assertEqual((j["counts"]["delivered"], j["counts"]["bounced"],
                          j["feedback"]["async_bounces"]), (2, 1, 1), j)

    def test_delay_dsn_is_an_event_only(self):
        d = self.start_daemon(config=conf(self.sink))
        jid = d.submit(simple_job(2, domain="d.test", verp=True)).json()["id"]
        self.wait_done(d, jid)
        name = self.drop(d, dsn(jid, 0, "user0@d.test", status="4.4.1", action="delayed",
                                diag="451 4.4.1 connection timed out"))
        self.processed(d, name)
        j = self.job(d, jid)
        self.assertEqual(j["counts"]["delivered"], 2)
        self.assertEqual(j["feedback"]["async_bounces"], 0)
        self.assertEqual(len(self.events(d, jid, "OOB")), 1)
        self.assertEqual(self.reports(d)[0]["effect"], "recorded")
        self.assertNotIn("user0@d.test", self.suppression(d))

    def test_complaint_by_message_id_suppresses(self):
        d = self.start_daemon(config=conf(self.sink))
        jid = d.submit(simple_job(3, domain="d.test")).json()["id"]   # no VERP
        self.wait_done(d, jid)
        name = self.drop(d, arf(jid, 2, "user2@d.test"))
        self.processed(d, name)
        j = self.job(d, jid)
        self.assertEqual(j["feedback"]["complaints"], 1)
        self.assertEqual(j["counts"]["delivered"], 3)     # a complaint is not a bounce
        sup = self.suppression(d)["user2@d.test"]
        self.assertEqual((sup["reason"], sup["job"]), ("complaint", jid))
        fb = self.events(d, jid, "Feedback")
        self.assertEqual(len(fb), 1)
        self.assertIn("abuse", fb[0]["reason"])
        rep = self.reports(d)[0]
        self.assertEqual((rep["kind"], rep["effect"], rep["matched_by"]),
                         ("arf", "complaint", "message-id"))
        # a report that is not a complaint is recorded, nothing more
        name = self.drop(d, arf(jid, 0, "user0@d.test", ftype="not-spam"))
        self.processed(d, name)
        self.assertEqual(self.reports(d)[0]["effect"], "recorded")
        self.assertNotIn("user0@d.test", self.suppression(d))
        self.assertEqual(self.job(d, jid)["feedback"]["complaints"], 1)

    def test_unmatched_complaint_still_suppresses_and_garbage_is_left(self):
        d = self.start_daemon(config=conf(self.sink))
        name = self.drop(d, arf("0123456789ab-01234567", 0, "who@else.test", with_msgid=False))
        self.processed(d, name)
        rep = self.reports(d)[0]
        self.assertEqual((rep["effect"], rep["index"]), ("suppressed", None))
        self.assertEqual(self.suppression(d)["who@else.test"]["reason"], "complaint")
        junk = self.drop(d, b"From: someone@x.test\r\nSubject: hello\r\n\r\nnot a report\r\n")
        self.processed(d, junk)
        rep = self.reports(d)[0]
        self.assertEqual((rep["kind"], rep["effect"]), ("not-report", "none"))
        unmatched = self.reports(d, "?unmatched=1")
        self.assertEqual({r["file"] for r in unmatched} >= {name, junk}, True)
        # the CLI shows the same
        out = subprocess.run([VOLLEY, "--socket", d.sock, "feedback", "--json"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["reports"][0]["file"], junk)

    def test_complaint_rate_pauses_job_and_domain(self):
        fbconf = 'complaint_rate = "10%"; complaint_min_delivered = 5;'
        d = self.start_daemon(config=conf(self.sink, extra='rate = "5/s";', feedback=fbconf))
        jid = d.submit(simple_job(200, domain="d.test", verp=True)).json()["id"]
        self.wait_for("5 delivered",
                      lambda: self.job(d, jid)["counts"]["delivered"] >= 5, timeout=20)
        names = [self.drop(d, arf(jid, i, "user%d@d.test" % i)) for i in range(5)]
        for n in names:                    # 5 of fewer than 50 (5/s): over 10 %
            self.processed(d, n)
        j = self.wait_for("the job paused", lambda: (lambda j: j if j["state"] == "paused"
                                                     else None)(self.job(d, jid)), timeout=10)
        self.assertIn("complaint rate", j["paused_reason"])
        self.assertTrue(self.events(d, jid, "JobPaused"))
        out = subprocess.run([VOLLEY, "--socket", d.sock, "status", jid],
                             capture_output=True, text=True, timeout=30)
        self.assertIn("complaint rate", out.stdout)
        doms = d.request("GET", "/v1/feedback/domains").json()["domains"]
        dom = [x for x in doms if x["domain"] == "example.com"][0]
        self.assertTrue(dom["blocked"], doms)
        # a new bulk job from the blocked domain waits; a transactional one goes
        bulkjob = simple_job(2, domain="d.test")
        for i, r in enumerate(bulkjob["recipients"]):
            r["email"] = "later%d@d.test" % i
        bulk = d.submit(bulkjob).json()["id"]
        b = self.job(d, bulk)
        self.assertEqual(b["state"], "paused")
        self.assertIn("sending domain example.com", b["paused_reason"])
        txjob = simple_job(1, domain="d.test", priority="transactional")
        txjob["recipients"][0]["email"] = "fresh@d.test"     # user0 complained
        tx = d.submit(txjob).json()["id"]
        self.assertEqual(self.wait_done(d, tx)["counts"]["delivered"], 1)
        # the block survives a restart; resuming the domain resumes its job
        d.kill9()
        d.start()
        self.assertEqual(self.job(d, bulk)["state"], "paused")
        r = d.request("POST", "/v1/feedback/domains/example.com/resume")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.wait_done(d, bulk)["counts"]["delivered"], 2)
        self.assertEqual(self.job(d, jid)["state"], "paused")   # paused for its own rate
        r = d.request("POST", "/v1/feedback/domains/example.com/resume")
        self.assertEqual(r.status, 409, r)

    def test_non_standard_bounces_by_message_id(self):
        """qmail's QSBMF, an Exchange NDR and a plain bounce, addressed to
        the plain return path: matched by the returned Message-ID."""
        d = self.start_daemon(config=conf(self.sink) + 'hostname = "volley.test";\n')
        jid = d.submit(simple_job(4, domain="d.test")).json()["id"]
        self.wait_done(d, jid)
        to = "bounces@news.example.com"
        shapes = [fbsamples.qsbmf, fbsamples.exchange_ndr, fbsamples.plain_bounce,
                  fbsamples.garbage]
        names = [self.drop(d, b(("user%d@d.test" % i), to, fbsamples.msgid(jid, i, "volley.test")))
                 for i, b in enumerate(shapes)]
        for n in names:
            self.processed(d, n)
        rep = {r["file"]: r for r in self.reports(d, "?limit=10")}
        for n in names[:3]:
            self.assertEqual((rep[n]["kind"], rep[n]["effect"], rep[n]["matched_by"]),
                             ("heuristic", "bounced", "message-id"), rep[n])
        self.assertEqual(rep[names[3]]["kind"], "not-report")
        j = self.job(d, jid)
        self.assertEqual((j["counts"]["bounced"], j["counts"]["delivered"],
                          j["feedback"]["async_bounces"]), (3, 1, 3), j)
