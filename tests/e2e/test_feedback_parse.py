"""`volley feedback parse FILE...` end to end (cli/cli_fbparse.c): the
report builders of fbsamples.py written to files and read back through
the CLI, which runs the feedback parser and the match hints; the kind,
the recipient, its action and status, and the match (job, index, by
"verp" or "message-id") must be what the builder was asked for. Then the
CLI's own behaviour: the table, several files, exit 1 for an unreadable,
too large or broken file (the others still printed), exit 2 for usage.
Needs no daemon.
"""

import json
import os
import subprocess
import unittest

from . import fbsamples as F
from . import util
from .daemon import VOLLEY

JOB = "0194c1d2e3f4-5a6b7c8d"
OTHER = "0a0b0c0d0e0f-12345678"
RCPT = "ann.smith@dest.test"
VDOM = "bounces.example.com"
HOST = "msa.test"
MAX_SIZE = 10 * 1024 * 1024


def run(*args, timeout=30):
    p = subprocess.run([VOLLEY, "feedback", "parse", *args], capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class FeedbackParse(unittest.TestCase):
    def setUp(self):
        self.dir = util.tempdir("volley-fbparse-")
        self.addCleanup(util.remove_dir, self.dir)
        self.n = 0

    def file(self, data, name=None):
        self.n += 1
        path = os.path.join(self.dir, name or "m%d" % self.n)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def parse(self, *datas):
        """The JSON objects for the messages, one a file; exit 0."""
        paths = [self.file(d) for d in datas]
        rc, out, err = run("--json", *paths)
        self.assertEqual(rc, 0, err)
        objs = [json.loads(l) for l in out.splitlines()]
        self.assertEqual([o["file"] for o in objs], paths)
        return objs

    def assertMatch(self, o, job, index, by):
        self.assertEqual(o["match"], {"job": job, "index": index, "by": by}, o)

    def assertBounce(self, o, kind, action="failed", status="5.1.1"):
        self.assertEqual((o["kind"], o["error"]), (kind, None), o)
        self.assertEqual(len(o["recipients"]), 1, o)
        r = o["recipients"][0]
        self.assertEqual(r["final_rcpt"], RCPT, o)
        self.assertEqual((r["action"], r["status"]), (action, status), o)
        self.assertTrue(r["diagnostic"], o)

    # ---- every builder, matched by VERP and by Message-ID ----

    def test_bounces_match_by_verp(self):
        for name in ("dsn", "qsbmf", "exchange_ndr", "plain_bounce"):
            with self.subTest(name):
                fn, kind = F.BUILDERS[name]
                to = F.verp("bounces", VDOM, JOB, 17)
                # the Message-ID names another job: VERP comes first
                o, = self.parse(fn(RCPT, to, F.msgid(OTHER, 3, HOST)))
                self.assertBounce(o, kind, "failed" if kind == "dsn" else None)
                self.assertEqual(o["envelope_to"], to)
                self.assertEqual(o["orig_msgid"], F.msgid(OTHER, 3, HOST))
                self.assertMatch(o, JOB, 17, "verp")

    def test_bounces_match_by_message_id_without_verp(self):
        for name in ("dsn", "qsbmf", "exchange_ndr", "plain_bounce"):
            with self.subTest(name):
                fn, kind = F.BUILDERS[name]
                o, = self.parse(fn(RCPT, "bounces@" + VDOM, F.msgid(JOB, 123456, HOST)))
                self.assertBounce(o, kind, "failed" if kind == "dsn" else None)
                self.assertMatch(o, JOB, 123456, "message-id")

    def test_delayed_dsn(self):
        to = F.verp("bounces", VDOM, JOB, 0)
        o, = self.parse(F.dsn(RCPT, to, F.msgid(JOB, 0, HOST), delayed=True))
        self.assertBounce(o, "dsn", "delayed", "4.4.1")
        self.assertEqual(o["orig_msgid"], F.msgid(JOB, 0, HOST))   # text/rfc822-headers
        self.assertMatch(o, JOB, 0, "verp")

    def test_arf_matches_by_original_mail_from_then_message_id(self):
        mid = F.msgid(JOB, 9, HOST)
        by_verp, by_mid, no_rcpt = self.parse(
            F.arf(RCPT, "fbl@" + VDOM, mid, mail_from=F.verp("bounces", VDOM, JOB, 9)),
            F.arf(RCPT, "fbl@" + VDOM, mid, mail_from="bounces@" + VDOM,
                  feedback_type="fraud"),
            F.arf(RCPT, "fbl@" + VDOM, mid, mail_from="bounces@" + VDOM, rcpt_to=False))
        for o in (by_verp, by_mid, no_rcpt):
            self.assertEqual((o["kind"], o["error"]), ("arf", None), o)
            self.assertEqual(o["envelope_to"], "fbl@" + VDOM, o)
            self.assertEqual(o["source_ip"], "198.51.100.7", o)
            self.assertEqual(o["reported_domain"], "example.com", o)
            self.assertEqual(o["orig_msgid"], mid, o)
            self.assertEqual(o["orig_to"], RCPT, o)
            self.assertEqual(o["recipients"], [], o)
        self.assertEqual(by_verp["feedback_type"], "abuse")
        self.assertEqual(by_verp["orig_mail_from"], F.verp("bounces", VDOM, JOB, 9))
        self.assertEqual(by_verp["orig_rcpt_to"], [RCPT])
        self.assertMatch(by_verp, JOB, 9, "verp")
        self.assertEqual(by_mid["feedback_type"], "fraud")
        self.assertMatch(by_mid, JOB, 9, "message-id")
        self.assertEqual(no_rcpt["orig_rcpt_to"], [])
        self.assertMatch(no_rcpt, JOB, 9, "message-id")

    def test_submission_message_id_has_no_index(self):
        o, = self.parse(F.dsn(RCPT, "bounces@" + VDOM, "<%s@%s>" % (JOB, HOST)))
        self.assertMatch(o, JOB, None, "message-id")

    def test_garbage_and_a_stranger_s_bounce_match_nothing(self):
        g, s = self.parse(F.garbage(RCPT, F.verp("bounces", VDOM, JOB, 2), F.msgid(JOB, 2, HOST)),
                          F.dsn(RCPT, "bounces@" + VDOM, "<abc.1@elsewhere.test>"))
        self.assertEqual((g["kind"], g["recipients"]), ("not-report", []), g)
        self.assertMatch(g, None, None, "none")   # not a report: no match even with VERP
        self.assertEqual(s["kind"], "dsn", s)
        self.assertMatch(s, None, None, "none")

    # ---- the CLI ----

    def test_octets_that_are_not_utf8_print_as_question_marks(self):
        data = F.qsbmf(RCPT, F.verp("b", VDOM, JOB, 6), F.msgid(JOB, 6, HOST))
        data = data.replace(b"Subject: failure notice",
                            b"Subject: failure notice \xff\xfe Zur\xc3\xbcck \xc0\xaf \xed\xa0\x80 "
                            b"\xf0\x9f\x93\xac \xe2\x82", 1)
        o, = self.parse(data)
        self.assertEqual(o["subject"], "failure notice ?? Zur\u00fcck ?? ??? \U0001f4ec ??")
        self.assertMatch(o, JOB, 6, "verp")

    def test_table_one_row_a_recipient(self):
        a = self.file(F.dsn(RCPT, F.verp("bounces", VDOM, JOB, 5), F.msgid(JOB, 5, HOST)), "a")
        b = self.file(F.garbage(RCPT, "x@" + VDOM, "<x@y>"), "b")
        rc, out, err = run(a, b)
        self.assertEqual((rc, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["FILE", "KIND", "RECIPIENT", "ACTION", "STATUS",
                                            "JOB", "INDEX", "BY"])
        self.assertEqual(lines[1].split(), [a, "dsn", RCPT, "failed", "5.1.1", JOB, "5", "verp"])
        self.assertEqual(lines[2].split(), [b, "not-report", "-", "-", "-", "-", "-", "none"])
        self.assertEqual(len(lines), 3)

    def test_bad_files_exit_1_and_the_rest_is_printed(self):
        good = self.file(F.dsn(RCPT, F.verp("bounces", VDOM, JOB, 1), F.msgid(JOB, 1, HOST)))
        big = self.file(b"Subject: x\r\n\r\n" + b"x" * MAX_SIZE)
        broken = self.file(b"Content-Type: multipart/report; report-type=delivery-status\r\n"
                           b"\r\nno boundary\r\n")
        missing = os.path.join(self.dir, "missing")
        rc, out, err = run("--json", missing, good, big, broken, self.dir)
        self.assertEqual(rc, 1, err)
        objs = [json.loads(l) for l in out.splitlines()]
        self.assertEqual([o["file"] for o in objs], [missing, good, big, broken, self.dir])
        self.assertEqual(objs[1]["kind"], "dsn")
        for o in objs[:1] + objs[2:]:
            self.assertIsNone(o["kind"], o)
            self.assertTrue(o["error"], o)
            self.assertIn(o["file"] + ": " + o["error"], err)
        self.assertIn("No such file", objs[0]["error"])
        self.assertIn("longer than %d" % MAX_SIZE, objs[2]["error"])
        self.assertIn("boundary", objs[3]["error"])
        self.assertIn("folder", objs[4]["error"])
        # exactly max_size octets is read
        ok = self.file(b"Subject: x\r\n\r\n" + b"x" * (MAX_SIZE - 14))
        self.assertEqual(os.path.getsize(ok), MAX_SIZE)
        self.assertEqual(run(ok)[0], 0)

    def test_standard_input(self):
        data = F.qsbmf(RCPT, F.verp("b", VDOM, JOB, 8), F.msgid(JOB, 8, HOST))
        p = subprocess.run([VOLLEY, "feedback", "parse", "--json", "-"], input=data,
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        o = json.loads(p.stdout)
        self.assertEqual((o["file"], o["kind"]), ("-", "bounce-heuristic"))
        self.assertMatch(o, JOB, 8, "verp")

    def test_usage(self):
        for args in ((), ("--bogus", "x"), ("--json",)):
            with self.subTest(args):
                rc, out, err = run(*args)
                self.assertEqual((rc, out), (2, ""))
                self.assertIn("usage: volley feedback parse", err)
        rc, out, _ = run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: volley feedback parse", out)
        p = subprocess.run([VOLLEY, "help", "feedback"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("parse [--json] FILE...", p.stdout)     # among the subcommands
        # a file named like an option, after --
        path = self.file(F.garbage(RCPT, "x@" + VDOM, "<x@y>"), "-odd")
        rc, out, _ = run("--json", "--", path)
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(out)["kind"], "not-report")


if __name__ == "__main__":
    unittest.main()
