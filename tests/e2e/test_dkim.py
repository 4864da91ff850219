"""DKIM signing end to end: build/volley-compose renders and signs jobs with
keys made by `volley dkim keygen` (rsa-2048, ed25519, both), and two
independent verifiers from Debian check every signature:

- python3-dkim (dkimpy), run under Debian's /usr/bin/python3, the public
  keys given through its dnsfunc from the TXT records keygen printed;
- opendkim-testmsg (opendkim-tools), which asks the system resolver: it
  runs in its own network and mount namespace (unshare) where unbound
  serves the TXT records on 127.0.0.1:53 and /etc/resolv.conf points there.

Tampered messages (body, Subject, an added From) must fail with both.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

from . import dnsctl, util
from .daemon import VOLLEY

COMPOSE = util.build_path("volley-compose", "VOLLEY_COMPOSE")

DEBIAN_PY = "/usr/bin/python3"   # python3-dkim is installed for Debian's python
DOMAIN = "example.com"
FROM = {"email": "news@example.com", "name": "Example News"}
ANN = {"email": "ann@example.net", "name": "Ann", "substitutions": {"name": "Ann"}}
ZOE = {"email": "zoe@example.org", "name": "Zoë Ünicode", "substitutions": {"name": "Zoë"}}

DKIMPY = r'''
import dkim, json, sys
req = json.load(sys.stdin)
recs = {k.encode(): v.encode() for k, v in req["records"].items()}
now = req.get("now")
def dns(name, timeout=5):
    return recs.get(name.lower())
out = []
for path in req["files"]:
    m = open(path, "rb").read()
    d = dkim.DKIM(m)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    res = []
    for i in range(n):
        try:
            res.append(bool(dkim.DKIM(m).verify(idx=i, dnsfunc=dns)))
        except Exception as e:
            res.append(str(e))
    out.append(res)
print(json.dumps(out))
'''


def keygen(d, selector, alg):
    p = subprocess.run([VOLLEY, "dkim", "keygen", "--domain", DOMAIN, "--selector", selector,
                        "--algorithm", alg, "--out", d], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    line = [l for l in p.stdout.splitlines() if " IN TXT " in l][0]
    name = line.split()[0]
    txt = "".join(re.findall(r'"([^"]*)"', line))
    return os.path.join(d, "%s.%s.pem" % (DOMAIN, selector)), name, txt, line


def opendkim_verify(records, files):
    """[(rc, output)] per file from opendkim-testmsg, inside a namespace."""
    req = json.dumps({"records": records, "files": files})
    p = subprocess.run(["unshare", "--net", "--mount", sys.executable, "-m",
                        "tests.e2e.test_dkim", "--opendkim"], input=req, cwd=util.REPO,
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError("opendkim harness failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout.splitlines()[-1])


def _opendkim_child():
    """In the fresh namespace: lo up, resolv.conf -> 127.0.0.1, unbound on 53."""
    req = json.load(sys.stdin)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    d = util.tempdir("volley-dkim-ns-")
    conf = os.path.join(d, "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
    subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], check=True)
    extra = "\n".join("  local-data: '%s TXT %s'" % (
        name, " ".join('"%s"' % txt[i:i + 255] for i in range(0, len(txt), 255)))
        for name, txt in req["records"].items())
    out = []
    with dnsctl.Unbound({DOMAIN: []}, extra=extra, port=53):
        for path in req["files"]:
            with open(path, "rb") as f:
                p = subprocess.run(["opendkim-testmsg"], stdin=f, capture_output=True,
                                   timeout=60)
            out.append([p.returncode, (p.stdout + p.stderr).decode(errors="replace")])
    util.remove_dir(d)
    print(json.dumps(out))


def job(content, recipients=None, **kw):
    j = {"content": content, "recipients": recipients or [ANN, ZOE]}
    j.update(kw)
    return j


PDF = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK" * 40
JOBS = {
    "text": job({"from": FROM, "subject": "Hello {{ name }}", "text_body": "Hi {{ name }},\nplain text.\n"}),
    "html_text": job({"from": FROM, "reply_to": {"email": "help@example.com"},
                      "subject": "News", "text_body": "Hi {{ name }}",
                      "html_body": "<p>Hi {{ name }}</p>\n<p>more</p>"},
                     unsubscribe={"url": "https://example.com/u/{{ name }}",
                                  "mailto": "unsub@example.com"}),
    "attachments": job({"from": FROM, "subject": "Files", "text_body": "see attached",
                        "html_body": "<p><img src=\"cid:logo\"></p>",
                        "attachments": [
                            {"data": PDF, "base64": True, "content_type": "application/pdf",
                             "file_name": "report.pdf"},
                            {"data": "iVBORw0KGgo=", "base64": True, "content_type": "image/png",
                             "file_name": "logo.png", "content_id": "logo"}]}),
    "non_ascii": job({"from": {"email": "news@example.com", "name": "Société Générale"},
                      "subject": "Grüße aus Köln, {{ name }} — ☃ ünïcödé",
                      "text_body": "Grüße, {{ name }}!\n"}),
    "long_headers": job({"from": FROM, "subject": " ".join(["long-subject-word"] * 30),
                         "headers": {"X-Long": " ".join(["value%d" % i for i in range(120)]),
                                     "References": " ".join("<id%d@example.com>" % i
                                                            for i in range(40)),
                                     "Feedback-ID": "c1:fall:volley"},
                         "text_body": "body"}),
    "trailing": job("From: News <news@example.com>\nTo: {{ name }} <x@example.net>\n"
                    "Subject: trailing\nX-Spaced:   a \t  b\t \nMIME-Version: 1.0\n"
                    "Content-Type: text/plain; charset=us-ascii\n\n"
                    "line with trailing spaces   \n\ttabbed  \t line\t\n \n"
                    "\n\nlast   \n\n\n\n"),
    "empty_body": job("From: news@example.com\nSubject: nothing\n\n"),
}

# Verbatim messages (SMTP submission's jobs): octets kept exactly, so
# 8-bit octets that are not UTF-8 (header and body), "{{", dotted lines,
# trailing white space and blank lines at the end are signed as they are.
VERBATIM = {
    "verbatim_8bit": (b"From: Shop <orders@example.com>\r\nTo: ann@example.net\r\n"
                      b"Subject: Caf\xe9 {{ not a template }}\r\n"
                      b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
                      b"Message-ID: <v1@example.com>\r\nMIME-Version: 1.0\r\n"
                      b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                      b"Content-Transfer-Encoding: 8bit\r\n\r\n"
                      b"Gr\xfc\xdfe {{ name }} \xff\r\n.\r\n..two dots\r\n"
                      b"trailing  \t\r\n\r\n\r\n"),
    "verbatim_folded": (b"Received: from app (127.0.0.1)\r\n\tby x; Mon, 7 Dec 2026\r\n"
                        b"From:\r\n Shop\r\n <orders@example.com>\r\n"
                        b"Subject:   spaced    out  \r\nTo: a@example.net,\r\n  b@example.net\r\n"
                        b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
                        b"body\r\n"),
}
for _name, _octets in VERBATIM.items():
    JOBS[_name] = {"verbatim": _octets, "recipients": [ANN, ZOE]}


class DkimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in (DEBIAN_PY, shutil.which("opendkim-testmsg"), shutil.which("unshare")):
            if not tool or not os.path.exists(tool):
                raise unittest.SkipTest("python3-dkim / opendkim-tools missing")
        cls.dir = util.tempdir("volley-dkim-", cleanup=cls.addClassCleanup)
        cls.rsa, rname, rtxt, cls.rline = keygen(cls.dir, "r2048", "rsa")
        cls.ed, ename, etxt, _ = keygen(cls.dir, "ed1", "ed25519")
        cls.records = {rname + ".": rtxt, ename + ".": etxt}
        cls.now = int(time.time())

    def sign(self, name, keys, *extra, date=None):
        """Compose and sign JOBS[name]; the message paths."""
        out = util.tempdir(dir=self.dir)
        path = os.path.join(out, "job.json")
        j = dict(JOBS[name])
        if "verbatim" in j:
            with open(os.path.join(out, "message"), "wb") as f:
                f.write(j.pop("verbatim"))
            j["verbatim_file"] = os.path.join(out, "message")
        with open(path, "w") as f:
            json.dump(j, f)
        args = [COMPOSE, path, out, "--date", str(date or self.now)]
        sel = {"rsa": (self.rsa, "r2048"), "ed": (self.ed, "ed1")}
        for i, k in enumerate(keys):
            sfx = "2" if i else ""
            args += ["--dkim-key" + sfx, sel[k][0], "--dkim-selector" + sfx, sel[k][1]]
        args += ["--dkim-domain", DOMAIN, *extra]
        p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        files = [os.path.join(out, "%d.eml" % i) for i in range(len(JOBS[name]["recipients"]))]
        for f in files:
            self.check_wire(f, len(keys))
        return files

    def check_wire(self, path, nsig):
        with open(path, "rb") as f:
            m = f.read()
        head = m.split(b"\r\n\r\n", 1)[0]
        fields = re.split(b"\r\n(?![ \t])", head)
        sigs = [s for s in fields if s.lower().startswith(b"dkim-signature:")]
        self.assertEqual(len(sigs), nsig)
        for s in sigs:
            for line in s.split(b"\r\n"):
                self.assertLessEqual(len(line), 78, line)
            self.assertRegex(s, rb"h=From:From:")

    def dkimpy(self, files):
        req = json.dumps({"records": self.records, "files": files})
        p = subprocess.run([DEBIAN_PY, "-c", DKIMPY], input=req, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def assert_verified(self, files, nsig):
        for f, res in zip(files, self.dkimpy(files)):
            self.assertEqual(res, [True] * nsig, f)
        for f, (rc, out) in zip(files, opendkim_verify(self.records, files)):
            self.assertEqual(rc, 0, "%s: %s" % (f, out))

    def test_every_job_every_key_set(self):
        files, counts = [], []
        for name in JOBS:
            for keys in (["rsa"], ["ed"], ["ed", "rsa"]):
                with self.subTest(job=name, keys=keys):
                    fs = self.sign(name, keys)
                    files += fs
                    counts += [len(keys)] * len(fs)
        for f, n, res in zip(files, counts, self.dkimpy(files)):
            self.assertEqual(res, [True] * n, f)
        for f, (rc, out) in zip(files, opendkim_verify(self.records, files)):
            self.assertEqual(rc, 0, "%s: %s" % (f, out))

    def test_verbatim_messages_signed_as_they_are(self):
        """A verbatim job renders its octets unchanged (after the signatures)
        and both verifiers accept every signature, relaxed and simple."""
        files = []
        for name in VERBATIM:
            for canon in ((), ("--dkim-canon", "simple")):
                fs = self.sign(name, ["ed", "rsa"], *canon)
                for f in fs:
                    with open(f, "rb") as fh:
                        m = fh.read()
                    self.assertTrue(m.endswith(VERBATIM[name]), f)
                    sigs = m[:len(m) - len(VERBATIM[name])]
                    self.assertEqual(sigs.count(b"DKIM-Signature:"), 2)
                    self.assertTrue(sigs.startswith(b"DKIM-Signature:"), f)
                files += fs
        self.assert_verified(files, 2)
        bad = self.tamper(self.sign("verbatim_8bit", ["ed", "rsa"]), b"\xff", b"\xfe")
        for res in self.dkimpy(bad):
            self.assertNotIn(True, res)

    def test_simple_canonicalisation(self):
        files = []
        for name in ("trailing", "long_headers", "empty_body", "attachments"):
            files += self.sign(name, ["ed", "rsa"], "--dkim-canon", "simple")
        self.assert_verified(files, 2)

    def test_each_of_a_dual_signature_alone(self):
        """Each signature of a dual-signed message verifies without the other."""
        files = []
        for f in self.sign("html_text", ["ed", "rsa"]):
            with open(f, "rb") as fh:
                m = fh.read()
            sigs = re.findall(rb"DKIM-Signature:.*?\r\n(?![ \t])", m, re.S)
            for keep in sigs:
                g = f + (".ed" if b"ed25519" in keep else ".rsa")
                with open(g, "wb") as fh:
                    fh.write(keep + m.replace(sigs[0], b"").replace(sigs[1], b""))
                files.append(g)
        self.assert_verified(files, 1)

    def tamper(self, files, old, new):
        out = []
        for f in files:
            with open(f, "rb") as fh:
                m = fh.read()
            head, body = m.split(b"\r\n\r\n", 1)
            if old == b"FROM":
                m = m.replace(b"\r\nFrom:", b"\r\nFrom: evil@example.net\r\nFrom:", 1)
            elif old in body:
                m = head + b"\r\n\r\n" + body.replace(old, new, 1)
            else:
                m = m.replace(old, new, 1)
            self.assertNotEqual(m, open(f, "rb").read())
            with open(f + ".bad", "wb") as fh:
                fh.write(m)
            out.append(f + ".bad")
        return out

    def test_tampered_fails(self):
        cases = [("text", b"plain text", b"plain texT"), ("non_ascii", b"\r\nSubject:", b"\r\nSubject: Re:"),
                 ("html_text", b"FROM", None), ("trailing", b"last", b"lAst")]
        for name, old, new in cases:
            with self.subTest(job=name):
                files = self.tamper(self.sign(name, ["ed", "rsa"]), old, new)
                for res in self.dkimpy(files):
                    self.assertEqual(len(res), 2)
                    self.assertNotIn(True, res)
                for rc, out in opendkim_verify(self.records, files):
                    self.assertNotEqual(rc, 0, out)

    def test_whitespace_changes_pass_relaxed_only(self):
        """Relaxed tolerates re-spacing in the body; simple does not."""
        relaxed = self.tamper(self.sign("trailing", ["rsa"]), b"line with", b"line   with")
        simple = self.tamper(self.sign("trailing", ["rsa"], "--dkim-canon", "simple"),
                             b"line with", b"line   with")
        self.assertEqual([r[0] for r in self.dkimpy(relaxed)], [True] * len(relaxed))
        self.assertNotIn(True, [r[0] for r in self.dkimpy(simple)])

    def test_expiry(self):
        ok = self.sign("text", ["ed"], "--dkim-expire", "3600")
        old = self.sign("text", ["ed"], "--dkim-expire", "60", date=self.now - 2 * 86400)
        with open(ok[0], "rb") as f:
            self.assertRegex(f.read(), rb"x=%d;" % (self.now + 3600))
        self.assertEqual([r[0] for r in self.dkimpy(ok)], [True] * len(ok))
        # dkimpy allows 10 hours of clock skew past x=
        self.assertNotIn(True, [r[0] for r in self.dkimpy(old)])
        for rc, out in opendkim_verify(self.records, old):
            self.assertNotEqual(rc, 0, out)

    def test_key_errors(self):
        bad = os.path.join(self.dir, "corrupt.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
        small = os.path.join(self.dir, "rsa512.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:512", "-out", small], check=True, capture_output=True)
        path = os.path.join(self.dir, "job.json")
        with open(path, "w") as f:
            json.dump(JOBS["text"], f)
        for key, why in ((os.path.join(self.dir, "missing.pem"), "No such file"),
                         (bad, "not a PEM private key"), (small, "512 bits")):
            p = subprocess.run([COMPOSE, path, self.dir, "--dkim-key", key, "--dkim-domain",
                                DOMAIN, "--dkim-selector", "s"], capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 1)
            self.assertIn(why, p.stderr)

    def test_keygen_record(self):
        self.assertTrue(self.rline.startswith("r2048._domainkey.example.com IN TXT \"v=DKIM1; k=rsa; p="))
        for s in re.findall(r'"([^"]*)"', self.rline):
            self.assertLessEqual(len(s), 255)
        self.assertEqual(os.stat(self.rsa).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.ed).st_mode & 0o777, 0o600)
        p = subprocess.run([VOLLEY, "dkim", "keygen", "--domain", DOMAIN, "--selector", "ed1",
                            "--algorithm", "ed25519", "--out", self.dir],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("exists", p.stderr)


if __name__ == "__main__" and sys.argv[1:] == ["--opendkim"]:
    _opendkim_child()
