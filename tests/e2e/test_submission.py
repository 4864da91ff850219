"""volleyd's inbound SMTP end to end: the submission listener (STARTTLS on
`submission.listen`, implicit TLS on `submission.implicit_tls`) and the
return-path receiver (`feedback.listen`), driven by real clients: Debian's
Python smtplib (submitclient.py: /usr/bin/python3 in a subprocess), swaks,
and Postfix relaying through volley with SASL; raw sockets only where the
test is about bytes no client sends (pipelining behind STARTTLS, a client
that vanishes mid-DATA). What is accepted must be a job (GET /v1/jobs) and
reach a volley-sink behind a domain route exactly as sent (but Bcc and the
X-Volley fields, and Date/Message-ID added when missing), DKIM-signed and
verified by python3-dkim; what is refused must leave no job and nothing
at the sink (a marker message sent afterwards is the only new job and the
only new mail: the submission log is FIFO).

Answers as the server gives them (smtpd/session.c, submit/server.c):
MAIL before STARTTLS 530 5.7.0; AUTH before STARTTLS 538 5.7.11 (RFC 4954's
"encryption required", not 530); AUTH failed 535 5.7.8, the answer delayed
(1 s, doubling) past three failures from one address; From or MAIL FROM
domain not allowed 550 5.7.1 naming the domain; too many recipients 452
4.5.3; over SIZE 552 5.3.4; a bare LF 554 5.6.11, a NUL 554 5.6.0, a line
over 998 octets 554 5.6.0.

One volleyd and one sink serve every class but the kill -9 one (setUpModule);
tests that make AUTH fail use their own loopback source address, since the
limiter counts per address. Every wait is bounded; every process is stopped
by its PID.
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import unittest
import uuid

from . import pki, postfixctl, submitclient, util
from .daemon import VOLLEY, Volleyd, VolleydTest
from .sinkctl import Client, Sink, sanitizer_report, tls_client_context
from .test_dkim import DKIMPY, keygen

HOST = "127.0.0.1"
PASSWORD = {"app": "app-Secret-1", "small": "small-Secret-2", "slow": "slow-Secret-3"}
MAX_SIZE = 200000
QUEUED = re.compile(r"queued as (\S+)")

W = None     # the shared world: setUpModule


def add_user(users, name, password):
    p = subprocess.run([VOLLEY, "user", "add", "--users", users, name], input=password + "\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def route_conf(sink_port, extra=""):
    return ('hostname = "msa.test";\n'
            'domains = ( { match = "dest.test"; route = "%s:%d"; tls = "none"; } );\n'
            'defaults = { retry = [ "1s" ]; };\n%s' % (HOST, sink_port, extra))


def stop_and_check(d):
    """Stop volleyd (SIGTERM), then fail on a sanitizer report in its log
    (under `make asan` builds: leaks show at exit)."""
    d.stop()
    try:
        with open(d.log_path, "rb") as f:
            report = sanitizer_report(f.read().decode("utf-8", "replace"))
    except OSError:
        report = None
    if report:
        raise AssertionError("sanitizer report from volleyd:\n" + report)



def stored(data_dir):
    """{name: octets} of the inbox: feedback/new/ and feedback/cur/ (the
    feedback processor moves what it has read)."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(data_dir, "feedback", sub)
        for n in os.listdir(d) if os.path.isdir(d) else ():
            try:
                with open(os.path.join(d, n), "rb") as f:
                    out[n] = f.read()
            except FileNotFoundError:    # moved between listdir and open
                with open(os.path.join(data_dir, "feedback", "cur", n), "rb") as f:
                    out[n] = f.read()
    return out

class World:
    """A CA and a certificate for msa.test, a users file (app; small, whose
    mail is bulk, unsigned, campaign small-default, 3 recipients at most),
    DKIM keys for example.com, a volley-sink for dest.test, and volleyd
    with submission (STARTTLS and implicit TLS) and feedback listeners."""

    def __init__(self):
        self.dir = util.tempdir("volley-sub-")
        self.ca = pki.TestCA(self.dir)
        self.chain, self.key, _ = self.ca.issue("msa", ["msa.test"])
        self.users = os.path.join(self.dir, "users")
        for name, pw in PASSWORD.items():
            add_user(self.users, name, pw)
        self.ed, ed_name, ed_txt, _ = keygen(self.dir, "s1", "ed25519")
        self.records = {ed_name + ".": ed_txt}
        self.sink = Sink().start()
        self.sub_port, self.tls_port, self.fb_port = (util.free_port(HOST) for _ in range(3))
        self.d = Volleyd(config=self.config())
        self.d.start()

    def config(self):
        return route_conf(self.sink.port, (
            'dkim = ( { domain = "example.com"; selector = "s1"; key = "%s"; } );\n'
            'submission = { listen = [ "%s:%d" ]; implicit_tls = [ "%s:%d" ];\n'
            '  cert = "%s"; key = "%s"; users = "%s";\n'
            '  from_domains = [ "example.com", "*.example.com" ]; max_message_size = %d;\n'
            '  per_user = ( { name = "small"; max_recipients = 3; priority = "bulk";\n'
            '                 campaign = "small-default"; dkim = false; },\n'
            '               { name = "slow"; rate_limit = "1/h"; } ); };\n'
            'feedback = { listen = [ "%s:%d" ]; domains = [ "bounces.example.com" ]; };\n'
            % (self.ed, HOST, self.sub_port, HOST, self.tls_port, self.chain, self.key,
               self.users, MAX_SIZE, HOST, self.fb_port)))

    def close(self):
        try:
            stop_and_check(self.d)
            self.sink.finish()
        finally:
            self.d.cleanup()
            self.sink.cleanup()
            util.remove_dir(self.dir)


def setUpModule():
    global W
    if not submitclient.available():
        raise unittest.SkipTest("needs Debian's /usr/bin/python3")
    W = World()


def tearDownModule():
    global W
    if W:
        W.close()
        W = None


# ---- messages ----

def fields(head):
    """The header fields of head (no empty line), each with its
    continuation lines and its CRLF, in order."""
    out = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line + b"\r\n"
        else:
            out.append(line + b"\r\n")
    return out


def name_of(field):
    return field.split(b":", 1)[0].strip().lower()


def split_message(data):
    head, _, body = data.partition(b"\r\n\r\n")
    return fields(head), body


def unique(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def simple_message(tag, frm="App <app@example.com>", extra=b""):
    return (b"From: %s\r\nTo: someone@dest.test\r\nSubject: %s\r\n"
            b"Message-ID: <%s@client.example.com>\r\n%s\r\nbody of %s\r\n"
            % (frm.encode(), tag.encode(), tag.encode(), extra, tag.encode()))


def job_id(result):
    m = QUEUED.search(result["text"])
    assert m, "no job id in %r" % result
    return m.group(1)


class Base(VolleydTest):
    """Helpers over the shared world."""

    def setUp(self):
        self.w = W
        self.jobs_before = self.job_ids()
        self.w.sink.new_messages(wait=0)       # forget earlier tests' mail

    # -- clients --
    def smtp(self, steps, port=None, tls="starttls", source=None, user="app", auth=True,
             helo="client.test"):
        """A session through Debian's smtplib; with auth, EHLO [STARTTLS
        EHLO] AUTH (smtplib's login) come first."""
        port = port or (self.w.tls_port if tls == "implicit" else self.w.sub_port)
        pre = [["ehlo", helo]]
        if tls == "starttls":
            pre += [["starttls"], ["ehlo", helo]]
        if auth:
            pre += [["login", user, PASSWORD.get(user, "x")]]
        res = submitclient.session(HOST, port, pre + list(steps), tls="none" if tls ==
                                   "starttls" else tls, ca=self.w.ca.ca_pem, source=source,
                                   helo=helo)
        self.assertNotIn("error", res[-1], res)
        self.assertEqual(res[0]["code"], 220, res)
        for r in res[1:len(pre) + 1]:
            self.assertIn(r["code"], (220, 235, 250), res)
        return res[len(pre) + 1:]

    def send(self, msg, rcpts=("someone@dest.test",), sender="app@example.com", **kw):
        """MAIL, RCPT..., DATA, QUIT; the results of those steps."""
        steps = [["mail", sender]] + [["rcpt", r] for r in rcpts] + [["data", msg], ["quit"]]
        return self.smtp(steps, **kw)

    def send_ok(self, msg, rcpts=("someone@dest.test",), **kw):
        """send() that must be accepted: the job's id."""
        res = self.send(msg, rcpts, **kw)
        self.assertEqual([r["code"] for r in res], [250] * (len(rcpts) + 1) + [250, 221], res)
        self.assertRegex(res[-2]["text"], r"^2\.0\.0 Ok: queued as ", res)
        return job_id(res[-2])

    # -- what is stored --
    def job_ids(self):
        return {j["id"] for j in self.w.d.request("GET", "/v1/jobs?limit=10000").json()["jobs"]}

    def job(self, jid):
        """The job once it is listed (made from the log) and done."""
        self.wait_for("job %s listed" % jid, lambda: jid in self.job_ids(), timeout=20)
        return self.wait_done(self.w.d, jid)

    def delivered(self, jid, n):
        """The job, done with n deliveries, and the n messages at the sink."""
        j = self.job(jid)
        self.assertEqual(j["counts"]["delivered"], n, j)
        msgs = self.w.sink.new_messages(n, wait=10)
        self.assertEqual(len(msgs), n, msgs)
        return j, msgs

    def assertNothingStored(self):
        """No job and no mail since setUp but a marker's, sent now: the
        submission log keeps the order, so a job from anything before the
        marker would be listed by the time the marker's is."""
        tag = unique("marker")
        jid = self.send_ok(simple_message(tag))
        self.job(jid)
        self.assertEqual(self.job_ids() - self.jobs_before, {jid})
        msgs = self.w.sink.new_messages(1, wait=10)
        self.assertEqual([tag.encode() in m.data for m in msgs], [True], msgs)

    def metrics(self):
        out = {}
        for line in self.w.d.request("GET", "/metrics").body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


# ---- 1. accepted ----

class Accepted(Base):
    def sent_message(self, tag):
        """Fields kept as written (case, spacing, folds, order), a folded
        Bcc, volley's three fields, a body with a dot line and 8-bit text."""
        return (b"From: \"App, Inc.\" <app@example.com>\r\n"
                b"To: Ann <ann@dest.test>, bob@dest.test\r\n"
                b"Bcc: secret@dest.test,\r\n\tother@elsewhere.test\r\n"
                b"subject:   Folded\r\n  subject %s \r\n"
                b"X-Volley-Campaign: spring-2026\r\n"
                b"X-Volley-Priority: bulk\r\n"
                b"x-volley-expires: 2h\r\n"
                b"Message-ID: <%s@client.example.com>\r\n"
                b"Date: Mon, 23 Nov 2026 17:20:01 +0000\r\n"
                b"X-Odd:    spaced   value\r\n"
                b"MIME-Version: 1.0\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n"
                b"\r\n"
                b"Hello {{ name }},\r\n.a line that starts with a dot\r\n"
                b"caf\xc3\xa9\r\n" % (tag.encode(), tag.encode()))

    def assertKeptAsSent(self, sent, got, added=()):
        """got's header is sent's without Bcc and X-Volley-*, after
        volley's DKIM-Signature (and any Received) and before the fields
        named in added; the bodies are equal."""
        sf, sbody = split_message(sent)
        gf, gbody = split_message(got)
        self.assertEqual(gbody, sbody)
        while gf and name_of(gf[0]) in (b"dkim-signature", b"received"):
            gf.pop(0)
        want = [f for f in sf if name_of(f) != b"bcc" and not name_of(f).startswith(b"x-volley-")]
        self.assertEqual(b"".join(gf[:len(want)]), b"".join(want))
        self.assertEqual(sorted(name_of(f) for f in gf[len(want):]), sorted(added))
        return gf[len(want):]

    def test_thunderbird_sequence_over_starttls_makes_one_job_for_every_recipient(self):
        tag = unique("tb")
        sent = self.sent_message(tag)
        rcpts = ["ann@dest.test", "bob@dest.test", "secret@dest.test"]
        res = submitclient.session(HOST, self.w.sub_port, [
            ["ehlo", "tb.client.test"], ["starttls"], ["ehlo", "tb.client.test"],
            ["auth", "PLAIN", "app", PASSWORD["app"]], ["mail", "bounce@example.com"],
            *[["rcpt", r] for r in rcpts], ["data", sent], ["quit"]],
            tls="none", ca=self.w.ca.ca_pem)
        self.assertEqual([(r["op"], r["code"]) for r in res], [
            ("connect", 220), ("ehlo", 250), ("starttls", 220), ("ehlo", 250), ("auth", 235),
            ("mail", 250), ("rcpt", 250), ("rcpt", 250), ("rcpt", 250), ("data", 250),
            ("quit", 221)], res)
        clear, inside = res[1]["features"], res[3]["features"]
        self.assertIn("starttls", clear)
        self.assertNotIn("auth", clear)            # AUTH only inside TLS
        self.assertEqual(clear["size"], str(MAX_SIZE))
        self.assertNotIn("starttls", inside)
        self.assertEqual(inside["auth"].split(), ["PLAIN", "LOGIN"])
        jid = job_id(res[-2])
        j, msgs = self.delivered(jid, 3)
        self.assertEqual(self.job_ids() - self.jobs_before, {jid})     # one job
        self.assertEqual(j["recipients"], 3)
        self.assertEqual((j["campaign"], j["priority"]), ("spring-2026", "bulk"), j)
        iso = "%Y-%m-%dT%H:%M:%SZ"
        life = (datetime.datetime.strptime(j["expires"], iso) -
                datetime.datetime.strptime(j["created"], iso)).total_seconds()
        self.assertAlmostEqual(life, 7200, delta=2, msg=j)
        self.assertEqual(sorted(m.env["rcpt"][0] for m in msgs), rcpts)
        self.assertEqual({m.env["mail_from"] for m in msgs}, {"bounce@example.com"})
        for m in msgs:
            self.assertEqual(len(m.env["rcpt"]), 1, m.env)
            self.assertKeptAsSent(sent, m.data)
            self.assertNotIn(b"secret@dest.test,", m.data)            # Bcc stripped
            self.assertNotIn(b"x-volley", m.data.lower())
            self.assertIn(b"Message-ID: <%s@client.example.com>\r\n" % tag.encode(), m.data)
        rows = self.w.d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()
        self.assertEqual(sorted((r["email"], r["state"]) for r in rows),
                         [(r, "delivered") for r in rcpts])

    def test_implicit_tls_adds_date_and_message_id_when_missing(self):
        tag = unique("implicit")
        sent = (b"From: app@example.com\r\nTo: x@dest.test\r\nSubject: %s\r\n\r\nbody\r\n"
                % tag.encode())
        jid = self.send_ok(sent, rcpts=["x@dest.test"], tls="implicit")
        j, (m,) = self.delivered(jid, 1)
        added = self.assertKeptAsSent(sent, m.data, added=(b"date", b"message-id"))
        self.assertIn(b"Message-ID: <%s@msa.test>\r\n" % jid.encode(), added)
        self.assertTrue(m.env["tls"] is None)   # the route says tls = none
        # the user's defaults: transactional, no campaign
        self.assertEqual((j["priority"], j["campaign"]), ("transactional", None), j)

    def test_per_user_settings_apply_without_headers(self):
        tag = unique("small")
        jid = self.send_ok(simple_message(tag), user="small")
        j, (m,) = self.delivered(jid, 1)
        self.assertEqual((j["campaign"], j["priority"]), ("small-default", "bulk"), j)
        self.assertNotIn(b"DKIM-Signature", m.data)         # dkim = false for small

    def test_dkim_signature_verified_by_python3_dkim(self):
        tag = unique("dkim")
        sent = self.sent_message(tag)
        jid = self.send_ok(sent, rcpts=["ann@dest.test", "bob@dest.test"])
        _, msgs = self.delivered(jid, 2)
        paths = [os.path.join(self.w.sink.maildir, "new", m.id) for m in msgs]
        for m in msgs:
            self.assertTrue(m.data.startswith(b"DKIM-Signature:"), m.data[:200])
            self.assertIn(b"d=example.com", m.data.split(b"\r\n\r\n")[0])
        req = json.dumps({"records": self.w.records, "files": paths})
        p = subprocess.run([submitclient.DEBIAN_PY, "-c", DKIMPY], input=req,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), [[True], [True]])
        # the same file changed must fail: the verifier does verify
        with open(paths[0], "rb") as f:
            data = f.read()
        with open(paths[0], "wb") as f:
            f.write(data.replace(b"caf\xc3\xa9", b"cafe!"))
        p = subprocess.run([submitclient.DEBIAN_PY, "-c", DKIMPY], input=json.dumps(
            {"records": self.w.records, "files": paths[:1]}), capture_output=True, text=True,
            timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotEqual(json.loads(p.stdout), [[True]])     # False or the reason

    def test_a_line_of_998_octets_is_taken_whole(self):
        tag = unique("long")
        line = b"z" * 998
        sent = simple_message(tag) + line + b"\r\n"
        jid = self.send_ok(sent, rcpts=["x@dest.test"])
        _, (m,) = self.delivered(jid, 1)
        self.assertTrue(m.data.endswith(b"\r\n" + line + b"\r\n"), m.data[-100:])
        self.assertKeptAsSent(sent, m.data, added=(b"date",))

    def test_auth_login_through_smtplib(self):
        tag = unique("login")
        res = self.smtp([["auth", "LOGIN", "app", PASSWORD["app"]], ["mail", "app@example.com"],
                         ["rcpt", "x@dest.test"], ["data", simple_message(tag)], ["quit"]],
                        auth=False)
        self.assertEqual([r["code"] for r in res], [235, 250, 250, 250, 221], res)
        self.delivered(job_id(res[-2]), 1)


@unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
class Swaks(Base):
    def swaks(self, *extra, data=None, password=PASSWORD["app"]):
        path = os.path.join(util.tempdir("volley-swaks-", cleanup=self.addCleanup), "data.eml")
        with open(path, "wb") as f:
            f.write(data[:-2])          # swaks adds the final CRLF
        p = subprocess.run(["swaks", "--server", HOST, "--from", "app@example.com",
                            "--to", "a@dest.test,b@dest.test", "--helo", "swaks.test",
                            "--auth-user", "app", "--auth-password", password,
                            "--data", "@" + path, "--timeout", "20", *extra],
                           capture_output=True, text=True, timeout=60)
        replies = [(int(m.group(1)), m.group(2)) for m in re.finditer(
            r"^<[-~*]{1,2}\s+(\d{3})[ -](.*)$", p.stdout, re.M)]
        return p.returncode, replies, p.stdout + p.stderr

    def check(self, *extra):
        tag = unique("swaks")
        data = simple_message(tag)
        rc, replies, out = self.swaks(*extra, data=data)
        self.assertEqual(rc, 0, out)
        self.assertIn(235, [c for c, _ in replies], out)
        jid = QUEUED.search([t for c, t in replies if c == 250 and "queued" in t][0]).group(1)
        _, msgs = self.delivered(jid, 2)
        self.assertEqual(sorted(m.env["rcpt"][0] for m in msgs), ["a@dest.test", "b@dest.test"])
        for m in msgs:
            self.assertIn(b"Subject: %s\r\n" % tag.encode(), m.data)
            self.assertTrue(m.data.endswith(data.split(b"\r\n\r\n", 1)[1]), m.data)

    def test_auth_plain_over_starttls(self):
        self.check("--port", str(self.w.sub_port), "--tls", "--auth", "PLAIN")

    def test_auth_login_over_implicit_tls(self):
        self.check("--port", str(self.w.tls_port), "--tls-on-connect", "--auth", "LOGIN")

    def test_auth_login_over_starttls_and_plain_over_implicit_tls(self):
        self.check("--port", str(self.w.sub_port), "--tls", "--auth", "LOGIN")
        self.check("--port", str(self.w.tls_port), "--tls-on-connect", "--auth", "PLAIN")

    def test_wrong_password_is_535_and_stores_nothing(self):
        rc, replies, out = self.swaks("--port", str(self.w.sub_port), "--tls", "--auth",
                                      "LOGIN", "--local-interface", "127.0.0.41",
                                      password="wrong", data=simple_message(unique("bad")))
        self.assertNotEqual(rc, 0, out)
        codes = [c for c, _ in replies]
        self.assertIn(535, codes, out)
        self.assertNotIn(235, codes, out)
        self.assertNotIn(354, codes, out)
        self.assertNothingStored()


# ---- 2. refused: nothing stored ----

def plain_auth(user, password):
    return "AUTH PLAIN " + submitclient.b64(b"\0%s\0%s" % (user.encode(), password.encode()))


class Refused(Base):
    def codes(self, res):
        return [r["code"] for r in res]

    def assertReply(self, r, code, enh, text=None):
        self.assertEqual(r["code"], code, r)
        self.assertTrue(r["text"].startswith(enh + " "), r)
        if text:
            self.assertIn(text, r["text"], r)

    def test_mail_before_starttls_is_530(self):
        res = self.smtp([["mail", "app@example.com"], ["rcpt", "x@dest.test"], ["quit"]],
                        tls="none", auth=False)
        self.assertReply(res[0], 530, "5.7.0", "STARTTLS")
        self.assertEqual(self.codes(res), [530, 503, 221], res)
        self.assertNothingStored()

    def test_auth_before_starttls_is_538(self):
        # RFC 4954's 538 5.7.11 "encryption required", which the server
        # gives rather than 530; smtplib's login() would not even try,
        # AUTH not being offered in clear, so the command goes raw.
        res = self.smtp([["docmd", plain_auth("app", PASSWORD["app"])],
                         ["mail", "app@example.com"], ["quit"]], tls="none", auth=False)
        self.assertReply(res[0], 538, "5.7.11", "encryption required")
        self.assertReply(res[1], 530, "5.7.0")
        self.assertNothingStored()

    def test_mail_inside_tls_without_auth_is_530(self):
        res = self.smtp([["mail", "app@example.com"], ["quit"]], auth=False)
        self.assertReply(res[0], 530, "5.7.0", "Authentication required")
        self.assertNothingStored()

    def test_wrong_password_is_535_and_repeated_failures_are_delayed(self):
        before = self.metrics()
        src = "127.0.0.51"       # the limiter counts per client address
        res = self.smtp([["auth", "PLAIN", "app", "wrong"]] * 5 +
                        [["auth", "LOGIN", "app", PASSWORD["app"]], ["mail", "app@example.com"],
                         ["rset"], ["quit"]], auth=False, source=src)
        for r in res[:5]:
            self.assertReply(r, 535, "5.7.8")
        # three failures answered at once, then 1 s, then 2 s (the bound is
        # generous: what counts is that the answer waited at all)
        self.assertGreaterEqual(res[3]["t"], 0.9, res)
        self.assertGreaterEqual(res[4]["t"], 0.9, res)
        self.assertEqual(self.codes(res[5:]), [235, 250, 250, 221], res)
        after = self.metrics()
        self.assertEqual(after["volley_submission_auth_delayed_total"] -
                         before["volley_submission_auth_delayed_total"], 2)
        self.assertNothingStored()

    def test_user_not_in_the_users_file_is_535(self):
        res = self.smtp([["auth", "PLAIN", "nobody", PASSWORD["app"]],
                         ["auth", "LOGIN", "nobody", PASSWORD["app"]],
                         ["mail", "app@example.com"], ["quit"]], auth=False,
                        source="127.0.0.52")
        self.assertReply(res[0], 535, "5.7.8")
        self.assertReply(res[1], 535, "5.7.8")
        self.assertReply(res[2], 530, "5.7.0")
        self.assertNothingStored()

    def test_from_domain_not_allowed_is_550_naming_it(self):
        msg = simple_message(unique("evil"), frm="Evil <app@evil.test>")
        res = self.send(msg, rcpts=["x@dest.test"])
        self.assertEqual(self.codes(res[:2]), [250, 250], res)
        self.assertReply(res[2], 550, "5.7.1", "evil.test")
        self.assertNothingStored()

    def test_mail_from_domain_not_allowed_is_550_naming_it(self):
        res = self.send(simple_message(unique("evilenv")), rcpts=["x@dest.test"],
                        sender="bounce@evil-sender.test")
        self.assertReply(res[0], 550, "5.7.1", "evil-sender.test")
        self.assertEqual(self.codes(res[1:]), [503, 503, 221], res)
        self.assertNothingStored()

    def test_too_many_recipients_is_452(self):
        res = self.smtp([["mail", "app@example.com"]] +
                        [["rcpt", "r%d@dest.test" % i] for i in range(4)] +
                        [["rset"], ["quit"]], user="small")
        self.assertEqual(self.codes(res), [250, 250, 250, 250, 452, 250, 221], res)
        self.assertReply(res[4], 452, "4.5.3", "at most 3")
        self.assertNothingStored()

    def test_oversize_is_552(self):
        body = b"".join(b"%06d %s\r\n" % (i, b"x" * 70) for i in range(MAX_SIZE // 78 + 50))
        msg = simple_message(unique("big"), extra=b"") + body
        self.assertGreater(len(msg), MAX_SIZE)
        res = self.smtp([["mail", "app@example.com", ["SIZE=%d" % len(msg)]], ["rset"],
                         ["mail", "app@example.com"], ["rcpt", "x@dest.test"],
                         ["data", msg], ["quit"]])
        self.assertReply(res[0], 552, "5.3.4")            # announced: refused at MAIL
        self.assertEqual(self.codes(res[1:4]), [250, 250, 250], res)
        self.assertReply(res[4], 552, "5.3.4")            # not announced: at the end
        self.assertNothingStored()

    def bad_data(self, body, code, enh, text):
        msg = simple_message(unique("bad")) + body
        res = self.send(msg, rcpts=["x@dest.test"])
        self.assertEqual(self.codes(res[:2]), [250, 250], res)
        self.assertReply(res[2], code, enh, text)
        self.assertNothingStored()

    def test_bare_lf_is_554(self):
        self.bad_data(b"one line\nand a bare LF\r\n", 554, "5.6.11", "bare CR or LF")

    def test_nul_is_554(self):
        self.bad_data(b"a NUL \x00 here\r\n", 554, "5.6.0", "NUL")

    def test_line_over_998_octets_is_554(self):
        self.bad_data(b"y" * 999 + b"\r\n", 554, "5.6.0", "998")

    def raw_session(self, port=None):
        """A raw client, greeted, through EHLO STARTTLS EHLO AUTH."""
        c = Client(HOST, port or self.w.sub_port, timeout=15)
        self.addCleanup(c.close)
        self.assertEqual(c.reply().code, 220)
        c.ehlo()
        self.assertEqual(c.cmd("STARTTLS").code, 220)
        c.starttls(tls_client_context())
        self.assertIn("AUTH", c.ehlo())
        self.assertEqual(c.cmd(plain_auth("app", PASSWORD["app"])).code, 235)
        return c

    def test_client_that_disconnects_mid_data_stores_nothing(self):
        for how in ("fin", "rst"):
            with self.subTest(how=how):
                c = self.raw_session()
                for line in ("MAIL FROM:<app@example.com>", "RCPT TO:<x@dest.test>"):
                    self.assertEqual(c.cmd(line).code, 250)
                self.assertEqual(c.cmd("DATA").code, 354)
                c.send(b"From: app@example.com\r\nSubject: %s\r\n\r\nhalf a bo"
                       % unique("cut").encode())
                if how == "rst":
                    c.reset()
                else:
                    c.close()
        self.wait_for("the sessions to end", lambda: self.metrics().get(
            'volley_smtpd_connections{listener="submission"}') == 0, timeout=10)
        self.assertNothingStored()

    def test_mail_pipelined_behind_starttls_is_discarded(self):
        c = Client(HOST, self.w.sub_port, timeout=15)
        self.addCleanup(c.close)
        self.assertEqual(c.reply().code, 220)
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<x@dest.test>\r\n")
        self.assertEqual(c.reply().code, 220)
        # nothing more in cleartext: the MAIL and RCPT were not answered
        self.assertEqual(c.buf, b"")
        if not c.quiet(0.5):
            self.fail("answered in cleartext after STARTTLS: %r" % c.sock.recv(4096))
        c.starttls(tls_client_context())
        # inside TLS the session starts over: no EHLO yet, no transaction
        r = c.cmd("MAIL FROM:<app@example.com>")
        self.assertEqual((r.code, r.enh), (503, "5.5.1"), r)
        self.assertIn("AUTH", c.ehlo())
        self.assertEqual(c.cmd(plain_auth("app", PASSWORD["app"])).code, 235)
        r = c.cmd("RCPT TO:<x@dest.test>")
        self.assertEqual((r.code, r.enh), (503, "5.5.1"), r)     # need MAIL first
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertNothingStored()


# ---- 4. the return-path receiver ----

class ReturnPath(Base):
    def inbox(self):
        """Every stored message: in new/, or in cur/ once the feedback
        processor has read it."""
        return stored(self.w.d.data_dir)

    def test_bounce_domain_is_accepted_over_starttls_and_stored(self):
        before = self.inbox()
        tag = unique("dsn")
        msg = (b"From: MAILER-DAEMON@mx.dest.test\r\nTo: bounces+abc.1@bounces.example.com\r\n"
               b"Subject: Undelivered Mail %s\r\n\r\nThe mail could not be delivered.\r\n"
               % tag.encode())
        res = submitclient.session(HOST, self.w.fb_port, [
            ["ehlo", "mx.dest.test"], ["starttls"], ["ehlo", "mx.dest.test"], ["mail", ""],
            ["rcpt", "bounces+abc.1@bounces.example.com"],
            ["rcpt", "Bounces+x.2@BOUNCES.example.com"], ["data", msg], ["quit"]],
            tls="none", ca=self.w.ca.ca_pem)
        self.assertEqual([r["code"] for r in res], [220, 250, 220, 250, 250, 250, 250, 250, 221],
                         res)
        self.assertIn("starttls", res[1]["features"])
        self.assertNotIn("auth", res[3]["features"])
        sid = job_id(res[-2])
        new = self.inbox()
        self.assertEqual(set(new) - set(before), {sid})
        data = new[sid]
        self.assertTrue(data.startswith(
            b"Return-Path: <>\r\nDelivered-To: bounces+abc.1@bounces.example.com\r\n"
            b"Delivered-To: Bounces+x.2@BOUNCES.example.com\r\nReceived: from mx.dest.test"),
            data[:300])
        self.assertTrue(data.endswith(b"\r\n" + msg), data)
        self.assertIn(b"with ESMTPS", data.split(b"\r\n\r\n")[0])
        self.assertEqual(os.listdir(os.path.join(self.w.d.data_dir, "feedback", "tmp")), [])
        self.assertNothingStored()           # no job, nothing delivered

    def test_other_domain_is_550_and_not_stored(self):
        before = self.inbox()
        res = submitclient.session(HOST, self.w.fb_port, [
            ["ehlo", "mx.dest.test"], ["mail", "someone@dest.test"],
            ["rcpt", "x@other.test"], ["rcpt", "bounces@example.com"],
            ["data", simple_message(unique("relay"))], ["quit"]], tls="none")
        self.assertEqual([r["code"] for r in res], [220, 250, 250, 550, 550, 554, 221], res)
        for r in res[3:5]:
            self.assertTrue(r["text"].startswith("5.7.1 "), r)
        self.assertIn("x@other.test", res[3]["text"])
        self.assertEqual(self.inbox(), before)
        self.assertNothingStored()

    def test_plaintext_bounce_is_taken_too(self):
        before = self.inbox()
        res = submitclient.session(HOST, self.w.fb_port, [
            ["ehlo", "mx.dest.test"], ["mail", ""], ["rcpt", "b@bounces.example.com"],
            ["data", b"Subject: plain\r\n\r\nx\r\n"], ["quit"]], tls="none")
        self.assertEqual([r["code"] for r in res], [220, 250, 250, 250, 250, 221], res)
        self.assertEqual(len(set(self.inbox()) - set(before)), 1)

    def test_client_that_half_closes_after_the_dot_still_gets_its_250(self):
        """The answer waits for the store; a client that shuts down its
        sending side right after the final dot must still read the 250
        (unseen, it would send the message again)."""
        import socket
        before = self.inbox()
        c = Client(HOST, self.w.fb_port, timeout=15)
        self.addCleanup(c.close)
        self.assertEqual(c.reply().code, 220)
        c.ehlo()
        for line in ("MAIL FROM:<>", "RCPT TO:<b@bounces.example.com>"):
            self.assertEqual(c.cmd(line).code, 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(b"Subject: half-closed\r\n\r\nx\r\n.\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        r = c.reply()
        self.assertEqual(r.code, 250, r)
        self.assertEqual(len(set(self.inbox()) - set(before)), 1)

    def test_no_starttls_without_a_certificate(self):
        port = util.free_port(HOST)
        d = self.start_daemon(config=route_conf(self.w.sink.port, (
            'feedback = { listen = [ "%s:%d" ]; domains = [ "bounces.example.com" ]; };\n'
            % (HOST, port))))
        self.addCleanup(stop_and_check, d)
        res = submitclient.session(HOST, port, [
            ["ehlo", "mx.dest.test"], ["docmd", "STARTTLS"], ["mail", ""],
            ["rcpt", "b@bounces.example.com"], ["data", b"Subject: x\r\n\r\nx\r\n"],
            ["quit"]], tls="none")
        self.assertEqual([r["code"] for r in res], [220, 250, 502, 250, 250, 250, 221], res)
        self.assertNotIn("starttls", res[1]["features"])
        self.assertEqual(len(stored(d.data_dir)), 1)


# ---- 6. metrics ----

class Metrics(Base):
    def test_families_and_auth_counts(self):
        before = self.metrics()
        tag = unique("metrics")
        self.delivered(self.send_ok(simple_message(tag), rcpts=["m1@dest.test", "m2@dest.test"]),
                       2)
        self.smtp([["quit"]], tls="implicit")
        res = self.smtp([["auth", "PLAIN", "app", "nope"], ["auth", "LOGIN", "app", "nope"],
                         ["auth", "PLAIN", "ghost", "nope"], ["quit"]], auth=False,
                        source="127.0.0.61")
        self.assertEqual([r["code"] for r in res], [535, 535, 535, 221], res)
        res = self.send(simple_message(unique("m"), frm="x@evil.test"), rcpts=["x@dest.test"])
        self.assertEqual(res[2]["code"], 550, res)
        self.wait_for("the sessions to end", lambda: self.metrics().get(
            'volley_smtpd_connections{listener="submission"}') == 0, timeout=10)
        after = self.metrics()

        def delta(k):
            return after.get(k, 0) - before.get(k, 0)

        sub, fb = '{listener="submission"}', '{listener="feedback"}'
        self.assertEqual(delta('volley_submission_auth_total{result="ok"}'), 3)
        self.assertEqual(delta('volley_submission_auth_total{result="failed"}'), 3)
        self.assertEqual(delta("volley_smtpd_connections_total" + sub), 4)
        self.assertEqual(delta("volley_smtpd_messages_total" + sub), 1)
        self.assertEqual(delta("volley_smtpd_recipients_total" + sub), 2)
        self.assertEqual(delta("volley_smtpd_tls_sessions_total" + sub), 4)
        self.assertEqual(delta("volley_smtpd_replies_5xx_total" + sub), 4)
        self.assertEqual(delta('volley_submission_refused_total{reason="from_domain"}'), 1)
        self.assertEqual(delta("volley_submission_auth_delayed_total"), 0)
        self.assertGreaterEqual(delta("volley_submission_log_jobs_total"), 1)
        self.assertGreaterEqual(delta("volley_submission_log_syncs_total"), 1)
        for k in ("volley_smtpd_connections" + fb, "volley_smtpd_connections_total" + fb,
                  "volley_smtpd_messages_total" + fb, "volley_smtpd_bytes_total" + sub,
                  "volley_smtpd_replies_4xx_total" + sub,
                  'volley_submission_refused_total{reason="rate_limit"}',
                  'volley_submission_refused_total{reason="busy"}',
                  "volley_submission_auth_tracked_addresses", "volley_submission_log_waiting"):
            self.assertIn(k, after)
        text = self.w.d.request("GET", "/metrics").body.decode()
        for fam in ("volley_smtpd_connections_total", "volley_submission_auth_total"):
            self.assertEqual(text.count("# TYPE %s " % fam), 1, text)


# ---- 3. Postfix as a relay client ----

@unittest.skipUnless(postfixctl.available(), "needs root and Debian's Postfix")
class PostfixRelay(Base):
    """Postfix with relayhost = [127.0.0.1]:<submission port>,
    smtp_tls_security_level = encrypt and SASL (smtp_sasl_password_maps)
    relays what it is given through volleyd to the sink; mail from
    liar@example.com authenticates with a wrong password."""

    @classmethod
    def setUpClass(cls):
        cls.port = util.free_port(HOST)
        cls.pf = postfixctl.Sender(HOST, cls.port, HOST, W.sub_port, "app", PASSWORD["app"],
                                   by_sender={"liar@example.com": ("app", "not-the-password")})
        cls.addClassCleanup(cls.pf.stop)
        cls.pf.start()

    def hand_to(self, msg, rcpts, sender="app@example.com"):
        res = submitclient.session(HOST, self.port, [["ehlo", "app.client.test"],
                                                     ["mail", sender],
                                                     *[["rcpt", r] for r in rcpts],
                                                     ["data", msg], ["quit"]], tls="none")
        self.assertEqual([r["code"] for r in res], [220, 250, 250] + [250] * len(rcpts) +
                         [250, 221], res)

    def test_postfix_relays_through_volley_with_starttls_and_auth(self):
        tag = unique("postfix")
        msg = (b"From: App <app@example.com>\r\nTo: p1@dest.test, p2@dest.test\r\n"
               b"Subject: %s\r\n\r\nrelayed by Postfix\r\n" % tag.encode())
        self.hand_to(msg, ["p1@dest.test", "p2@dest.test"])
        # Postfix's log names volley's answer, and with it the job
        m = self.wait_for("Postfix to relay", lambda: re.search(
            r"to=<p1@dest\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent "
            r"\(250 2\.0\.0 Ok: queued as (\S+)\)" % W.sub_port, self.pf.log_text()),
            timeout=30)
        jid = m.group(1)
        j, msgs = self.delivered(jid, 2)
        self.assertEqual(j["recipients"], 2)     # one transaction, one job
        self.assertEqual(sorted(m.env["rcpt"][0] for m in msgs), ["p1@dest.test", "p2@dest.test"])
        for m in msgs:
            self.assertIn(b"Subject: %s\r\n" % tag.encode(), m.data)
            self.assertIn(b"by sender.client.test (Postfix)", m.data)
            self.assertTrue(m.data.endswith(b"\r\n\r\nrelayed by Postfix\r\n"), m.data)
            self.assertEqual(m.env["mail_from"], "app@example.com")
        self.assertRegex(self.pf.log_text(), r"TLS connection established to "
                         r"127\.0\.0\.1\[127\.0\.0\.1\]:%d" % W.sub_port)

    def test_postfix_with_a_wrong_password_gets_535_and_nothing_is_stored(self):
        self.hand_to(simple_message(unique("pfbad")), ["p9@dest.test"], sender="liar@example.com")
        self.wait_for("Postfix to give up on AUTH", lambda: re.search(
            r"SASL authentication failed; server 127\.0\.0\.1\[127\.0\.0\.1\] said: "
            r"535 5\.7\.8", self.pf.log_text()), timeout=30)
        self.assertNothingStored()


# ---- 5. kill -9 in the middle of a burst ----

class KillDuringBurst(VolleydTest):
    """Concurrent smtplib clients submit numbered messages; volleyd gets
    SIGKILL once a quarter of them have their 250, and starts again on the
    same data dir. Every message that got a 250 must then be delivered
    exactly once to each recipient; one that got no answer (cut off)
    at most once; one never sent not at all. The sink is down while the
    clients run (its port refuses, so deliveries wait), so the kill hits
    the submission path alone: a delivery the kill interrupts after the
    sink took it would be sent again, SMTP's known duplicate, which is
    not what this test is about."""

    CLIENTS, MESSAGES = 8, 600
    RCPTS = ("k1@dest.test", "k2@dest.test")

    def message(self, i):
        return (b"From: App <app@example.com>\r\nTo: k1@dest.test\r\nSubject: burst %d\r\n"
                b"Message-ID: <burst-%d@client.example.com>\r\n\r\nmessage %d\r\n" % (i, i, i))

    def test_every_250_survives_kill_9_and_is_delivered_once(self):
        folder = util.tempdir("volley-burst-", cleanup=self.addCleanup)
        sink_port = util.free_port(HOST)
        port = util.free_port(HOST)
        d = Volleyd(data_dir=util.tempdir("volleyd-burst-", cleanup=self.addCleanup),
                    config=route_conf(sink_port, (
                        'submission = { listen = [ "%s:%d" ]; cert = "%s"; key = "%s";\n'
                        '  users = "%s"; from_domains = [ "example.com" ]; };\n'
                        % (HOST, port, W.chain, W.key, W.users))))
        self.addCleanup(d.cleanup)
        self.addCleanup(stop_and_check, d)
        d.start()
        burst = submitclient.Burst(folder, HOST, port, W.ca.ca_pem, "app", PASSWORD["app"],
                                   self.CLIENTS, [(i, "app@example.com", list(self.RCPTS),
                                                   self.message(i))
                                                  for i in range(self.MESSAGES)])
        self.addCleanup(util.stop, burst.proc)

        def a_quarter():
            return sum(r.get("code") == 250 for r in burst.results()) >= self.MESSAGES // 4

        if not util.wait_until(a_quarter, 60, interval=0.005, proc=burst.proc):
            self.fail("a quarter of the messages not accepted: %s" % burst.results()[-3:])
        d.kill9()
        results = {r["i"]: r for r in burst.wait()}
        self.assertEqual(sorted(results), list(range(self.MESSAGES)), burst.stderr())
        ok = {i: QUEUED.search(r["text"]).group(1) for i, r in results.items()
              if r.get("code") == 250}
        cut = {i for i, r in results.items() if r.get("sent")}
        refused = {i for i, r in results.items() if "code" in r and r["code"] != 250}
        self.assertGreaterEqual(len(ok), self.MESSAGES // 4)
        self.assertLess(len(ok), self.MESSAGES, "the kill came too late to cut anything")
        self.assertEqual(refused, set(), [results[i] for i in refused])

        sink = Sink(port=sink_port).start()
        self.addCleanup(sink.finish)
        d.start()

        def all_done():
            jobs = d.request("GET", "/v1/jobs?limit=10000").json()["jobs"]
            ids = {j["id"] for j in jobs}
            return (set(ok.values()) <= ids and all(j["done"] for j in jobs)) and jobs

        jobs = self.wait_for("every job done", all_done, timeout=60)
        self.assertTrue(all(j["counts"]["delivered"] == 2 for j in jobs), jobs)
        got = {}
        for m in sink.new_messages(2 * len(jobs), wait=10):
            i = int(re.search(rb"Subject: burst (\d+)\r\n", m.data).group(1))
            key = (i, m.env["rcpt"][0])
            got[key] = got.get(key, 0) + 1
            self.assertEqual(m.data.split(b"\r\n\r\n", 1)[1], b"message %d\r\n" % i)
        for i in range(self.MESSAGES):
            counts = [got.get((i, r), 0) for r in self.RCPTS]
            if i in ok:
                self.assertEqual(counts, [1, 1], (i, results[i]))
            elif i in cut:
                self.assertIn(counts, ([0, 0], [1, 1]), (i, results[i]))
            else:
                self.assertEqual(counts, [0, 0], (i, results[i]))
        self.assertEqual(len(jobs), sum(1 for i in range(self.MESSAGES)
                                        if got.get((i, self.RCPTS[0]))))
        print("\n  kill -9 burst: %d accepted, %d cut off (%d of them kept), %d not sent"
              % (len(ok), len(cut), sum(1 for i in cut if got.get((i, self.RCPTS[0]))),
                 self.MESSAGES - len(ok) - len(cut)))


# ---- more of the protocol: BDAT, REQUIRETLS, a user's rate, a new users file ----

class More(Base):
    raw_session = Refused.raw_session

    def test_bdat_from_a_raw_client_is_one_job(self):
        tag = unique("bdat")
        body = simple_message(tag)
        c = self.raw_session()
        for line in ("MAIL FROM:<app@example.com>", "RCPT TO:<x@dest.test>"):
            self.assertEqual(c.cmd(line).code, 250)
        half = len(body) // 2
        c.send(b"BDAT %d\r\n" % half + body[:half])
        self.assertEqual(c.reply().code, 250)
        c.send(b"BDAT %d LAST\r\n" % (len(body) - half) + body[half:])
        r = c.reply()
        self.assertEqual(r.code, 250, r)
        jid = QUEUED.search(r.text).group(1)
        _, msgs = self.delivered(jid, 1)
        self.assertIn(b"Subject: " + tag.encode(), msgs[0].data)

    def test_requiretls_on_mail_makes_the_job_require_tls(self):
        res = self.send(simple_message(unique("rtls")), sender="app@example.com")
        jid = job_id(res[-2])
        self.assertFalse(self.w.d.request("GET", "/v1/jobs/" + jid).json()["require_tls"])
        tag = unique("rtls")
        steps = [["mail", "app@example.com", ["REQUIRETLS"]], ["rcpt", "x@dest.test"],
                 ["data", simple_message(tag)], ["quit"]]
        res = self.smtp(steps)
        self.assertEqual(res[2]["code"], 250, res)
        j = self.w.d.request("GET", "/v1/jobs/" + job_id(res[2])).json()
        self.assertTrue(j["require_tls"], j)

    def test_a_user_over_its_rate_limit_gets_451(self):
        self.send_ok(simple_message(unique("rate")), user="slow")
        res = self.send(simple_message(unique("rate")), user="slow")
        self.assertEqual(res[-2]["code"], 451, res)
        self.assertIn("rate limit", res[-2]["text"])
        m = self.metrics()
        self.assertGreaterEqual(m['volley_submission_refused_total{reason="rate_limit"}'], 1)

    def test_sighup_reads_the_users_file_again(self):
        src = "127.0.0.%d" % (60 + os.getpid() % 100)
        late = unique("late")[:20]
        PASSWORD[late] = "late-Secret-4"
        self.addCleanup(PASSWORD.pop, late, None)
        r = submitclient.session(HOST, self.w.sub_port, [
            ["ehlo", "c"], ["starttls"], ["ehlo", "c"], ["login", late, PASSWORD[late]],
            ["quit"]], tls="none", ca=self.w.ca.ca_pem, source=src)
        self.assertEqual(r[4]["code"], 535, r)
        add_user(self.w.users, late, PASSWORD[late])
        self.w.d.proc.send_signal(signal.SIGHUP)
        self.wait_for("the reload", lambda: "configuration reloaded" in self.w.d.output(),
                      timeout=20)
        self.send_ok(simple_message(unique("late")), user=late, source=src)


class SpoolFull(Base):
    def test_mail_is_452_while_the_disk_is_under_min_free(self):
        port = util.free_port(HOST)
        d = self.start_daemon(config=route_conf(self.w.sink.port, (
            'spool = { min_free = "1000000G"; };\n'
            'submission = { listen = [ "%s:%d" ]; cert = "%s"; key = "%s"; users = "%s"; };\n'
            % (HOST, port, self.w.chain, self.w.key, self.w.users))))
        self.addCleanup(stop_and_check, d)
        res = self.send(simple_message(unique("full")), port=port)
        self.assertEqual(res[0]["code"], 452, res)
        self.assertIn("4.3.1", res[0]["text"])
        self.assertEqual(d.jobs_on_disk(), [])
