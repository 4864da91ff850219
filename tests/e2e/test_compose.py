"""MIME composition end to end: build/volley-compose renders jobs, Python's
email package (an independent parser) reads every message back.

Each composed message is checked for its wire form (CRLF only, no line over
998 octets, no parser defects) and then for meaning: header values decode
to what the job said, the MIME tree has the expected shape, text and html
bodies are the substituted strings, attachments are byte for byte the same.
"""

import base64
import json
import os
import random
import subprocess
import unittest
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from . import util
from .sinkctl import sanitizer_report

COMPOSE = util.build_path("volley-compose", "VOLLEY_COMPOSE")
DATE = 1795000000
FROM = {"email": "news@example.com", "name": "Example News"}
ADDRESS_HEADERS = ("From", "To", "Cc", "Reply-To")
ANN = {"email": "ann@example.net", "name": "Ann", "substitutions": {"name": "Ann"}}


class Run:
    def __init__(self, rc, stdout, stderr, messages):
        self.rc, self.stdout, self.stderr, self.messages = rc, stdout, stderr, messages
        self.info = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
        err = [l for l in stderr.splitlines() if l.startswith("{")]
        self.error = json.loads(err[-1]) if err else None


def compose(job, *args):
    """volley-compose on job (a dict): every message as bytes, in order."""
    d = util.tempdir("volley-compose-")
    try:
        path = os.path.join(d, "job.json")
        with open(path, "w") as f:
            json.dump(job, f)
        p = subprocess.run([COMPOSE, path, d, "--date", str(DATE), *map(str, args)],
                           capture_output=True, text=True, timeout=60)
        msgs = []
        for i in range(len(job.get("recipients", []))):
            name = os.path.join(d, "%d.eml" % i)
            if os.path.exists(name):
                with open(name, "rb") as f:
                    msgs.append(f.read())
        return Run(p.returncode, p.stdout, p.stderr, msgs)
    finally:
        util.remove_dir(d)


def job(content, recipients=None, **kw):
    j = {"content": content, "recipients": recipients or [ANN]}
    j.update(kw)
    return j


def text(s):
    """A decoded text part as the job wrote it (Python keeps CRLF)."""
    return s.replace("\r\n", "\n")


def phrase(s):
    """A display name as Python's address parser gives it back: white
    space runs are one space (the encoding keeps them; the parser does not)."""
    return " ".join(s.split())


def u8(s):
    """Raw UTF-8 in a header (RFC 6532) as text: Python keeps such octets
    as surrogate escapes."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8")


def same_phrase(got, want):
    """Python's address parser also puts a space where two encoded words
    meet in a phrase (RFC 2047 6.2 says to drop the white space there), so
    a long name cut into several words may come back with extra spaces."""
    return phrase(got) == phrase(want) or "".join(got.split()) == "".join(want.split())


def filename(name):
    """What get_filename() gives back: unquote()d (of "..." or <...>), stripped."""
    quoted = len(name) > 1 and (name[0] + name[-1]) in ('""', "<>")
    return (name[1:-1] if quoted else name).strip()


class ComposeTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(COMPOSE, os.X_OK):
            self.fail("no executable volley-compose at %s (run make)" % COMPOSE)

    # ---- helpers ----

    def run_ok(self, j, *args):
        r = compose(j, *args)
        report = sanitizer_report(r.stderr)
        if report:
            self.fail("sanitizer report:\n" + report)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(len(r.messages), len(j["recipients"]))
        return [self.parse(raw) for raw in r.messages], r

    def run_err(self, j, field, code="invalid_field", *args):
        r = compose(j, *args)
        self.assertIsNone(sanitizer_report(r.stderr), r.stderr)
        self.assertEqual(r.rc, 1, (r.stdout, r.stderr))
        self.assertIsNotNone(r.error, r.stderr)
        self.assertEqual(r.error["field"], field, r.error)
        self.assertEqual(r.error["code"], code, r.error)
        self.assertTrue(r.error["message"])
        return r.error

    def parse(self, raw):
        self.check_wire(raw)
        m = BytesParser(policy=policy.default).parsebytes(raw)
        for part in m.walk():
            self.assertEqual(part.defects, [], part)
            for k, v in part.items():
                # RFC 6532 allows UTF-8 in addresses; Python's parser flags it
                utf8 = ("NonASCIILocalPartDefect", "UndecodableBytesDefect")
                defects = [d for d in v.defects if not (
                    type(d).__name__ in utf8 and k in ADDRESS_HEADERS and not str(v).isascii())]
                self.assertEqual(defects, [], (k, v))
        m.raw = raw
        return m

    def check_wire(self, raw):
        self.assertTrue(raw.endswith(b"\r\n"), raw[-40:])
        lines = raw[:-2].split(b"\r\n")
        for line in lines:
            self.assertNotIn(b"\n", line)
            self.assertNotIn(b"\r", line)
            self.assertLessEqual(len(line), 998)
        head = raw.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            self.assertTrue(all(c < 128 for c in line) or b"@" in line, line)

    def header_lines(self, m, name):
        """The raw lines of header name (folded lines included)."""
        head = m.raw.split(b"\r\n\r\n", 1)[0].decode("utf-8").split("\r\n")
        out, on = [], False
        for line in head:
            if line[:1] in (" ", "\t"):
                if on:
                    out.append(line)
                continue
            on = line.lower().startswith(name.lower() + ":")
            if on:
                out.append(line)
        return out

    def shape(self, m):
        if m.is_multipart():
            return (m.get_content_type(), [self.shape(p) for p in m.iter_parts()])
        return m.get_content_type()

    def body(self, m, ctype):
        for p in m.walk():
            if p.get_content_type() == ctype and not p.is_attachment() and \
                    p.get("Content-ID") is None:
                return text(p.get_content())
        self.fail("no %s part" % ctype)

    def attachments(self, m):
        return [p for p in m.walk() if not p.is_multipart() and
                (p.is_attachment() or p.get("Content-ID"))]

    # ---- shapes ----

    def test_text_only(self):
        [m], r = self.run_ok(job({"from": FROM, "subject": "Hi {{ name }}",
                                  "text_body": "Hello {{ name }},\nline two\n"}))
        self.assertEqual(self.shape(m), "text/plain")
        self.assertEqual(m.get_content_charset(), "utf-8")
        self.assertEqual(m["Content-Transfer-Encoding"], "quoted-printable")
        self.assertEqual(self.body(m, "text/plain"), "Hello Ann,\nline two\n")
        self.assertEqual(str(m["Subject"]), "Hi Ann")
        self.assertEqual(str(m["From"]), "Example News <news@example.com>")
        self.assertEqual(m["To"].addresses[0].addr_spec, "ann@example.net")
        self.assertEqual(m["To"].addresses[0].display_name, "Ann")
        self.assertEqual(str(m["MIME-Version"]), "1.0")

    def test_static_ascii_text_is_7bit(self):
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "Hello all,\nno slots.\n"}))
        self.assertEqual(m["Content-Transfer-Encoding"], "7bit")
        self.assertEqual(self.body(m, "text/plain"), "Hello all,\nno slots.\n")
        self.assertIn(b"\r\n\r\nHello all,\r\nno slots.\r\n", m.raw)
        # without a final line break it cannot end the message as 7bit
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "no line end"}))
        self.assertEqual(self.body(m, "text/plain"), "no line end")

    def test_html_only(self):
        [m], _ = self.run_ok(job({"from": FROM, "html_body": "<p>Hi {{ name }}</p>"},
                                 [dict(ANN, substitutions={"name": "<b>Tom & 'Jerry'</b>"})]))
        self.assertEqual(self.shape(m), "text/html")
        self.assertEqual(self.body(m, "text/html"),
                         "<p>Hi &lt;b&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;</p>")

    def test_text_and_html(self):
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "Hi {{ name }} & co",
                                  "html_body": "<p>Hi {{ name }} &amp; co</p>"},
                                 [dict(ANN, substitutions={"name": "A&B"})]))
        self.assertEqual(self.shape(m), ("multipart/alternative", ["text/plain", "text/html"]))
        self.assertEqual(self.body(m, "text/plain"), "Hi A&B & co")
        self.assertEqual(self.body(m, "text/html"), "<p>Hi A&amp;B &amp; co</p>")
        self.assertNotIn(b"Content-Transfer-Encoding: 7bit", m.raw.split(b"\r\n\r\n", 1)[0])

    def test_attachments(self):
        rnd = random.Random(7)
        blobs = [bytes(rnd.getrandbits(8) for _ in range(n)) for n in (0, 1, 2, 3, 57, 58, 5000)]
        atts = [{"data": base64.b64encode(b).decode(), "base64": True,
                 "content_type": "application/x-test", "file_name": "blob%d.bin" % i}
                for i, b in enumerate(blobs)]
        atts.append({"data": "plain text data ✓\n", "content_type": "text/csv",
                     "file_name": "r.csv"})
        atts.append({"data": "no type, no name"})
        [m], r = self.run_ok(job({"from": FROM, "text_body": "see attached",
                                  "attachments": atts}))
        self.assertEqual(self.shape(m), ("multipart/mixed", ["text/plain"] +
                                         ["application/x-test"] * len(blobs) +
                                         ["text/csv", "application/octet-stream"]))
        got = self.attachments(m)
        for i, b in enumerate(blobs):
            self.assertEqual(got[i].get_content(), b)
            self.assertEqual(got[i].get_filename(), "blob%d.bin" % i)
            self.assertEqual(got[i]["Content-Transfer-Encoding"], "base64")
            self.assertEqual(got[i].get_content_disposition(), "attachment")
        self.assertEqual(got[-2].get_payload(decode=True), "plain text data ✓\n".encode())
        self.assertEqual(got[-2].get_filename(), "r.csv")
        self.assertEqual(got[-1].get_payload(decode=True), b"no type, no name")
        self.assertIsNone(got[-1].get_filename())
        for line in m.raw.split(b"\r\n"):
            if line and set(line) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="):
                self.assertLessEqual(len(line), 76)
        self.assertEqual(self.body(m, "text/plain"), "see attached")

    def test_attachment_only(self):
        [m], _ = self.run_ok(job({"from": FROM, "attachments": [
            {"data": base64.b64encode(b"\x00\xff" * 100).decode(), "base64": True}]}))
        self.assertEqual(self.shape(m), ("multipart/mixed", ["application/octet-stream"]))
        self.assertEqual(self.attachments(m)[0].get_content(), b"\x00\xff" * 100)

    def test_big_attachment_is_not_copied_per_recipient(self):
        blob = os.urandom(300000)
        rcpts = [dict(ANN, email="r%d@example.net" % i) for i in range(3)]
        ms, r = self.run_ok(job({"from": FROM, "text_body": "Hi {{ name }}",
                                 "attachments": [{"data": base64.b64encode(blob).decode(),
                                                  "base64": True}]}, rcpts))
        for m, info in zip(ms, r.info):
            self.assertEqual(self.attachments(m)[0].get_content(), blob)
            self.assertGreaterEqual(info["iov"], 2)
            self.assertEqual(info["size"], len(m.raw))

    def test_inline_image(self):
        png = b"\x89PNG\r\n\x1a\n" + os.urandom(700)
        atts = [{"data": base64.b64encode(png).decode(), "base64": True,
                 "content_type": "image/png", "file_name": "logo.png", "content_id": "logo"},
                {"data": "x", "file_name": "a.txt", "content_type": "text/plain"}]
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "Logo",
                                  "html_body": '<img src="cid:logo">', "attachments": atts}))
        self.assertEqual(self.shape(m), (
            "multipart/mixed", [("multipart/related", [
                ("multipart/alternative", ["text/plain", "text/html"]), "image/png"]),
                "text/plain"]))
        img = [p for p in m.walk() if p.get_content_type() == "image/png"][0]
        self.assertEqual(img.get_content(), png)
        self.assertEqual(img["Content-ID"], "<logo>")
        self.assertEqual(img.get_content_disposition(), "inline")
        self.assertEqual(img.get_filename(), "logo.png")
        # html only, inline only: related around the html
        [m], _ = self.run_ok(job({"from": FROM, "html_body": '<img src="cid:l@x">',
                                  "attachments": [dict(atts[0], content_id="<l@x>")]}))
        self.assertEqual(self.shape(m), ("multipart/related", ["text/html", "image/png"]))
        self.assertEqual(self.attachments(m)[0]["Content-ID"], "<l@x>")

    def test_boundaries_do_not_occur_in_parts(self):
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "--=_vl. =_ --\n",
                                  "html_body": "<p>=_vl.</p>",
                                  "attachments": [{"data": "--=_vl.\r\n=_\r\n"}]}))
        self.assertEqual(self.body(m, "text/plain"), "--=_vl. =_ --\n")
        self.assertEqual(self.attachments(m)[0].get_content(), b"--=_vl.\r\n=_\r\n")
        bounds = {p.get_boundary() for p in m.walk() if p.is_multipart()}
        for b in bounds:
            self.assertEqual(m.raw.count(b"--" + b.encode() + b"--"), 1)

    # ---- non-ASCII, long lines, folding ----

    def test_non_ascii_everywhere(self):
        subject = "Grüße, {{ name }}! Ünïcödé ✓ 日本語 😀"
        content = {"from": {"email": "news@example.com", "name": "Zoë Ørsted, Ltd."},
                   "reply_to": {"email": "hjælp@example.com", "name": "Hjælp"},
                   "subject": subject, "text_body": "Hallo {{ name }}, schöne Grüße ✓\n",
                   "html_body": "<p>Hallo {{ name }} — 😀</p>"}
        rc = [{"email": "jörg@example.net", "name": "Jörg Müller",
               "substitutions": {"name": "Jörg"}}]
        [m], r = self.run_ok(job(content, rc))
        self.assertEqual(str(m["Subject"]), "Grüße, Jörg! Ünïcödé ✓ 日本語 😀")
        self.assertEqual(m["From"].addresses[0].display_name, "Zoë Ørsted, Ltd.")
        self.assertEqual(u8(m["Reply-To"].addresses[0].addr_spec), "hjælp@example.com")
        self.assertEqual(u8(m["Reply-To"].addresses[0].display_name), "Hjælp")
        self.assertEqual(u8(m["To"].addresses[0].display_name), "Jörg Müller")
        self.assertEqual(u8(m["To"].addresses[0].addr_spec), "jörg@example.net")
        self.assertEqual(self.body(m, "text/plain"), "Hallo Jörg, schöne Grüße ✓\n")
        self.assertEqual(self.body(m, "text/html"), "<p>Hallo Jörg — 😀</p>")
        self.assertTrue(r.info[0]["smtputf8"])
        # ASCII addresses: no raw UTF-8 anywhere
        content["reply_to"]["email"] = "help@example.com"
        [m], r = self.run_ok(job(content, [dict(rc[0], email="j@example.net")]))
        self.assertFalse(r.info[0]["smtputf8"])
        self.assertTrue(all(c < 128 for c in m.raw))

    def test_display_names_with_specials(self):
        names = ["Doe, John", 'A "quoted" \\ name', "=?utf-8?q?fake?=", "a.b (c) <d>",
                 "  spaced  out ", "x" * 120, "Ann\tTab", "ü" * 80, "日本 " * 30]
        rc = [{"email": "r%d@example.net" % i, "name": n} for i, n in enumerate(names)]
        ms, _ = self.run_ok(job({"from": FROM, "text_body": "x"}, rc))
        for n, m in zip(names, ms):
            self.assertTrue(same_phrase(m["To"].addresses[0].display_name, n),
                            (m["To"].addresses[0].display_name, n, m.raw[:600]))
            for line in self.header_lines(m, "To"):
                self.assertLessEqual(len(line.encode()), 998)

    def test_long_lines(self):
        long = "word " * 2000 + "end"
        nospace = "x" * 5000
        [m], _ = self.run_ok(job({"from": FROM, "text_body": long + "\n" + nospace,
                                  "html_body": "<p>" + nospace + "{{ name }}</p>"}))
        self.assertEqual(self.body(m, "text/plain"), long + "\n" + nospace)
        self.assertEqual(self.body(m, "text/html"), "<p>" + nospace + "Ann</p>")
        body = m.raw.split(b"\r\n\r\n", 1)[1]
        self.assertLessEqual(max(len(l) for l in body.split(b"\r\n")), 76)

    def test_long_subject_folds(self):
        rnd = random.Random(3)
        words = ["alpha", "Grüße", "beta", "日本語", "gamma", "ünïcödé", "d" * 30, "😀"]
        subject = " ".join(rnd.choice(words) for _ in range(80))
        [m], _ = self.run_ok(job({"from": FROM, "subject": subject, "text_body": "x"}))
        self.assertEqual(str(m["Subject"]), subject)
        lines = self.header_lines(m, "Subject")
        self.assertGreater(len(lines), 5)
        for line in lines:
            self.assertLessEqual(len(line), 78, line)
        for word in [w for line in lines for w in line.split() if w.startswith("=?")]:
            self.assertLessEqual(len(word), 75)

    def test_subject_edge_cases(self):
        cases = ["", "plain", "a  two  spaces", "tab\there", "=?utf-8?q?not_encoded?=",
                 "x" * 1500, "ü" * 700, "word " + "y" * 950 + " end",
                 "a" + " " * 200 + "b", "ctl\x01char", "ﬁ ligature", "end ü"]
        rc = [dict(ANN, email="r%d@example.net" % i, substitutions={"s": s})
              for i, s in enumerate(cases)]
        ms, _ = self.run_ok(job({"from": FROM, "subject": "{{ s }}", "text_body": "x"}, rc))
        for s, m in zip(cases, ms):
            self.assertEqual(str(m["Subject"]), s, self.header_lines(m, "Subject"))

    # ---- headers ----

    def test_custom_headers(self):
        content = {"from": FROM, "text_body": "x", "subject": "generated",
                   "headers": {"X-Campaign": "fall {{ campaign }}", "X-Ünï": "no"}}
        self.run_err(job(content), "content.headers.X-Ünï")
        content["headers"] = {"X-Campaign": "fall {{ campaign }}", "X-Note": "Grüße ✓",
                              "Subject": "custom {{ name }}", "Message-ID": "<own@id>",
                              "To": "Jörg <j@example.net>, \"Doe, J\" <d@example.net>",
                              "Cc": "Zoë <z@example.net>", "Date": "Thu, 01 Jan 2026 00:00:00 +0000",
                              "Reply-To": "r@example.net", "From": "Other <o@example.com>"}
        [m], _ = self.run_ok(job(content, substitutions={"campaign": "2026"}))
        self.assertEqual(str(m["X-Campaign"]), "fall 2026")
        self.assertEqual(str(m["X-Note"]), "Grüße ✓")
        self.assertEqual(str(m["Subject"]), "custom Ann")
        self.assertEqual(str(m["Message-ID"]), "<own@id>")
        self.assertEqual([(a.display_name, a.addr_spec) for a in m["To"].addresses],
                         [("Jörg", "j@example.net"), ("Doe, J", "d@example.net")])
        self.assertEqual(m["Cc"].addresses[0].display_name, "Zoë")
        self.assertEqual(str(m["From"]), "Other <o@example.com>")
        self.assertEqual(str(m["Reply-To"]), "r@example.net")
        self.assertEqual(m["Date"].datetime.year, 2026)
        for name in ("Subject", "To", "From", "Message-ID", "Date", "Reply-To"):
            self.assertEqual(len(m.get_all(name)), 1, name)

    def test_generated_headers(self):
        rc = [dict(ANN, email="r%d@example.net" % i) for i in range(3)]
        ms, _ = self.run_ok(job({"from": FROM, "text_body": "x",
                                 "reply_to": {"email": "help@example.com"}}, rc),
                            "--job-id", "J-42_x", "--hostname", "mta1.example.org")
        for i, m in enumerate(ms):
            self.assertEqual(str(m["Message-ID"]), "<J-42_x.%d@mta1.example.org>" % i)
            self.assertEqual(m["Date"].datetime, parsedate_to_datetime(
                "Wed, 18 Nov 2026 11:06:40 +0000"))
            self.assertEqual(m["Date"].datetime.timestamp(), DATE)
            self.assertEqual(str(m["Reply-To"]), "help@example.com")
            self.assertEqual(m["To"].addresses[0].addr_spec, "r%d@example.net" % i)
            self.assertIsNone(m["Subject"])

    def test_unsubscribe(self):
        u = {"url": "https://example.com/u/{{ token }}?l={{ list }}", "mailto": "unsub@example.com"}
        rc = [dict(ANN, substitutions={"name": "Ann", "token": "a b/c?d=é&x"})]
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "x"}, rc, unsubscribe=u,
                                 substitutions={"list": "news"}))
        self.assertEqual(str(m["List-Unsubscribe"]),
                         "<mailto:unsub@example.com>, "
                         "<https://example.com/u/a%20b%2Fc%3Fd%3D%C3%A9%26x?l=news>")
        self.assertEqual(str(m["List-Unsubscribe-Post"]), "List-Unsubscribe=One-Click")
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "x"},
                                 unsubscribe={"mailto": "mailto:u@example.com?subject=stop"}))
        self.assertEqual(str(m["List-Unsubscribe"]), "<mailto:u@example.com?subject=stop>")
        self.assertIsNone(m["List-Unsubscribe-Post"])
        [m], _ = self.run_ok(job({"from": FROM, "text_body": "x"},
                                 unsubscribe={"url": "HTTPS://example.com/static"}))
        self.assertEqual(str(m["List-Unsubscribe"]), "<HTTPS://example.com/static>")
        self.assertEqual(str(m["List-Unsubscribe-Post"]), "List-Unsubscribe=One-Click")

    def test_substitution_precedence(self):
        rc = [dict(ANN, substitutions={"name": "Own"}), dict(ANN, substitutions={}),
              dict(ANN, substitutions={"name": "", "n": 7})]
        ms, _ = self.run_ok(job({"from": FROM, "text_body": "[{{ name }}]{{n}}"}, rc,
                                substitutions={"name": "Job", "n": True}))
        # the recipient's own, then its name (predefined, as KumoMTA's), then the job's
        self.assertEqual([self.body(m, "text/plain") for m in ms],
                         ["[Own]true", "[Ann]true", "[]7"])

    # ---- content as a string ----

    def test_content_string(self):
        raw = ("From: News <news@example.com>\nTo: {{ name }} <ann@example.net>\n"
               "Subject: Hi {{ name }}\nX-Long: a\n b\n\nBody for {{ name }}\n.\nend")
        rc = [dict(ANN, substitutions={"name": "Jörg"})]
        [m], r = self.run_ok(job(raw, rc, unsubscribe={"url": "https://e.com/{{ name }}"}))
        self.assertEqual(str(m["Subject"]), "Hi Jörg")
        self.assertEqual(m["To"].addresses[0].display_name, "Jörg")
        self.assertEqual(str(m["Message-ID"]), "<job1.0@mta.example.com>")
        self.assertEqual(m["Date"].datetime.timestamp(), DATE)
        self.assertEqual(str(m["X-Long"]), "a b")
        self.assertIn(b"X-Long: a\r\n b\r\n", m.raw)
        self.assertEqual(str(m["List-Unsubscribe"]), "<https://e.com/J%C3%B6rg>")
        self.assertEqual(text(m.get_payload(decode=True).decode()), "Body for Jörg\n.\nend\n")
        self.assertTrue(r.info[0]["eightbit"])
        raw2 = ("Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nmessage-id: <mine@x>\r\n"
                "Subject: static\r\n\r\nbody\r\n")
        [m], r = self.run_ok(job(raw2))
        self.assertEqual(m.raw, raw2.encode())
        self.assertFalse(r.info[0]["eightbit"])

    def test_content_string_values_keep_lines(self):
        raw = "Subject: x\n\n{{ v }}\n"
        rc = [dict(ANN, substitutions={"v": "a\nb\r\nc\rd"})]
        [m], _ = self.run_ok(job(raw, rc))
        self.assertTrue(m.raw.endswith(b"\r\n\r\na\r\nb\r\nc\r\nd\r\n"), m.raw)
        self.run_err(job(raw, [dict(ANN, substitutions={"v": "y" * 999})]),
                     "recipients[0].substitutions.v")
        self.run_ok(job(raw, [dict(ANN, substitutions={"v": ("y" * 998 + "\n") * 3})]))

    # ---- errors ----

    def test_errors(self):
        ok = {"from": FROM, "text_body": "x"}
        cases = [
            (dict(ok, foo=1), "content.foo", "unknown_field"),
            (dict(ok, subject=5), "content.subject", "invalid_field"),
            (dict(ok, subject="a\r\nBcc: x@y"), "content.subject", "invalid_field"),
            ({"text_body": "x"}, "content.from", "invalid_field"),
            (dict(ok, **{"from": {"email": "bad"}}), "content.from.email", "invalid_address"),
            (dict(ok, **{"from": {"email": "a@b.c", "x": 1}}), "content.from.x", "unknown_field"),
            (dict(ok, reply_to={"email": "a b@c.d"}), "content.reply_to.email", "invalid_address"),
            ({"from": FROM}, "content", "invalid_field"),
            (dict(ok, text_body="{{ bad"), "content.text_body", "invalid_field"),
            (dict(ok, headers={"Content-Type": "text/plain"}), "content.headers.Content-Type",
             "invalid_field"),
            (dict(ok, headers={"Bad Name": "x"}), "content.headers.Bad Name", "invalid_field"),
            (dict(ok, headers={"X-A": 1}), "content.headers.X-A", "invalid_field"),
            (dict(ok, attachments={}), "content.attachments", "invalid_field"),
            (dict(ok, attachments=[{"data": "!!", "base64": True}]),
             "content.attachments[0].data", "invalid_field"),
            (dict(ok, attachments=[{"data": "x"}, {"data": "x", "base64": "yes"}]),
             "content.attachments[1].base64", "invalid_field"),
            (dict(ok, attachments=[{"data": "x", "content_type": "nope"}]),
             "content.attachments[0].content_type", "invalid_field"),
            (dict(ok, attachments=[{"data": "x", "content_id": "a b"}]),
             "content.attachments[0].content_id", "invalid_field"),
            (dict(ok, attachments=[{"data": "x", "file_name": "a\nb"}]),
             "content.attachments[0].file_name", "invalid_field"),
            (5, "content", "invalid_field"),
            ("Subject: x\n\n" + "y" * 999, "content", "invalid_field"),
            ("not a header\n\nbody", "content", "invalid_field"),
        ]
        for content, field, code in cases:
            with self.subTest(field=field, content=str(content)[:60]):
                self.run_err(job(content), field, code)

    def test_job_errors(self):
        ok = {"from": FROM, "subject": "{{ name }}", "text_body": "x"}
        self.run_err(job(ok, unsubscribe={"url": "http://example.com/u"}), "unsubscribe.url")
        self.run_err(job(ok, unsubscribe={"url": "https://e.com/ x"}), "unsubscribe.url")
        self.run_err(job(ok, unsubscribe={"mailto": "nope"}), "unsubscribe.mailto",
                     "invalid_address")
        self.run_err(job(ok, unsubscribe={"other": "x"}), "unsubscribe.other", "unknown_field")
        self.run_err(job(ok, substitutions={"x": [1]}), "substitutions.x")
        self.run_err(job(ok, substitutions={"name": "a\nb"}), "substitutions.name",
                     "invalid_field")
        self.run_err(job(ok, [dict(ANN, substitutions={"name": "a\r\nBcc: v@x"})]),
                     "recipients[0].substitutions.name", "invalid_field")
        self.run_err(job(dict(ok, subject="{{ first }}"), [dict(ANN, substitutions={})]),
                     "recipients[0].substitutions.first", "missing_substitution")
        self.run_err(job(ok, [dict(ANN, name="a\nb")]), "recipients[0].name")
        self.run_err(job(ok, [dict(ANN, email="no-at")]), "recipients[0].email",
                     "invalid_address")
        big = {"from": FROM, "text_body": "x" * 5000}
        self.run_err(job(big), "content", "too_large", "--max-size", 4000)
        self.run_ok(job(big), "--max-size", 6000)
        self.run_err(job({"from": FROM, "text_body": "{{ v }}"},
                         [dict(ANN, substitutions={"v": "y" * 6000})]),
                     "recipients[0].content", "too_large", "--max-size", 6000)

    # ---- many shapes at random ----

    def test_random_round_trips(self):
        rnd = random.Random(2026)
        alphabet = "abc XYZ 019 .,;:!?<>&\"'()[]=_-/\\@ üéñ ß ✓ 日本 😀 \t"
        for n in range(60):
            def s(k):
                return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(k)))
            subs = {"a": s(40), "b": s(200)}
            content = {"from": {"email": "f@example.com", "name": s(30)},
                       "subject": s(20) + "{{ a }}" + s(100)}
            if rnd.random() < 0.7:
                content["text_body"] = s(300) + "{{ b }}\n" + s(100) + "{{ a }}"
            if rnd.random() < 0.5:
                content["html_body"] = "<p>" + s(200) + "{{ a }}</p>"
            if rnd.random() < 0.4 or not ("text_body" in content or "html_body" in content):
                blob = os.urandom(rnd.randrange(2000))
                content["attachments"] = [{"data": base64.b64encode(blob).decode(),
                                           "base64": True,
                                           "file_name": s(40).replace("\t", "") or "f",
                                           "content_type": "application/octet-stream"}]
            rc = [{"email": "r@example.net", "name": s(30), "substitutions": subs}]
            with self.subTest(n=n):
                [m], _ = self.run_ok(job(content, rc))
                want = (content["subject"].replace("{{ a }}", subs["a"])).strip(" \t")
                self.assertEqual(str(m["Subject"]), want)
                for got, name in ((m["From"], content["from"]["name"]),
                                  (m["To"], rc[0]["name"])):
                    self.assertTrue(same_phrase(got.addresses[0].display_name, name),
                                    (got.addresses[0].display_name, name))
                if "text_body" in content:
                    want = content["text_body"].replace("{{ b }}", subs["b"]).replace(
                        "{{ a }}", subs["a"])
                    self.assertEqual(self.body(m, "text/plain"), want)
                if "html_body" in content:
                    esc = subs["a"].replace("&", "&amp;").replace("<", "&lt;").replace(
                        ">", "&gt;").replace('"', "&quot;").replace("'", "&#39;")
                    self.assertEqual(self.body(m, "text/html"),
                                     content["html_body"].replace("{{ a }}", esc))
                if "attachments" in content:
                    a = self.attachments(m)[0]
                    self.assertEqual(a.get_content(), blob)
                    self.assertEqual(a.get_filename(),
                                     filename(content["attachments"][0]["file_name"]))

    def test_random_content_strings_and_headers(self):
        rnd = random.Random(8058)
        alphabet = "abc XYZ 019 .,;:!?<>&\"'()[]=_-/\\@ üéñ ß ✓ 日本 😀 \t"
        for n in range(40):
            def s(k):
                return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(k)))
            subs = {"a": s(60), "b": s(300), "c": s(80) + "\n" + s(80)}
            # a value inside a template's quoted string: its author keeps '"' and '\' out
            subs["q"] = subs["a"].replace('"', "").replace("\\", "")
            raw = ("From: news@example.com\nSubject: " + s(20) + "{{ a }}" + s(20) +
                   "\nX-Custom: {{ b }}\n\n" + s(100) + "{{ c }}" + s(50) + "\n")
            rc = [{"email": "r@example.net", "substitutions": subs}]
            with self.subTest(n=n, kind="content string"):
                [m], _ = self.run_ok(job(raw, rc))
                sub = raw.split("\n")[1][len("Subject: "):].replace("{{ a }}", subs["a"])
                self.assertEqual(str(m["Subject"]), sub.strip(" \t"))
                self.assertEqual(str(m["X-Custom"]), subs["b"].strip(" \t"))
                body = raw.split("\n\n", 1)[1].replace("{{ c }}", subs["c"])
                self.assertEqual(text(m.get_payload(decode=True).decode()), body)
            content = {"from": FROM, "text_body": "x",
                       "headers": {"X-A": s(30) + "{{ a }}", "X-B": s(200),
                                   "Cc": '"{{ q }}" <c@example.net>'}}
            with self.subTest(n=n, kind="custom headers"):
                [m], _ = self.run_ok(job(content, rc))
                self.assertEqual(str(m["X-A"]),
                                 content["headers"]["X-A"].replace("{{ a }}", subs["a"]).strip(" \t"))
                self.assertEqual(str(m["X-B"]), content["headers"]["X-B"].strip(" \t"))
                self.assertEqual(m["Cc"].addresses[0].addr_spec, "c@example.net")
                self.assertTrue(same_phrase(m["Cc"].addresses[0].display_name, subs["q"]))
