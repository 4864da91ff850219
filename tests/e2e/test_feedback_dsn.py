"""Asynchronous bounces made by a real Postfix, end to end: volleyd sends
a job to a private Postfix (postfixctl.Bouncer) that says 250 to every
recipient and then fails the delivery itself, so Postfix's bounce daemon
writes an RFC 3464 DSN to the job's envelope sender and relays it to
volleyd's return-path receiver (`feedback.listen`, `feedback.domains` =
the VERP domain). volley reports the recipients delivered (Postfix said
250); the DSNs land in data_dir/feedback/new/ (then cur/, once volleyd's
processor has applied them) within a bounded wait; `volley feedback parse`
on each says dsn, failed, 5.1.1, and points at the job and the recipient:
by the VERP address with `verp`, by the returned Message-ID without; and
volleyd has moved each recipient from delivered to bounced (OOB events,
the job's async_bounces). A second
Postfix defers instead (retry: transport, delay_warning_time 1s) and its
delayed DSN (4.4.1) is matched the same way and is an OOB event only. The failing Postfix sends its
DSNs over STARTTLS (required; the receiver has a certificate), the
deferring one in cleartext; volleyd's Received field says which.

Needs root (Postfix's master). Every wait is bounded; every process is
stopped by its PID.
"""

import json
import os
import subprocess
import unittest

from . import pki, postfixctl, util
from .daemon import VOLLEY, Volleyd, VolleydTest, simple_job

HOST = "127.0.0.1"
VDOM = "bounces.example.com"
MSGID_HOST = "msa.test"
DSN_WAIT = 60.0

W = None


class World:
    """volleyd with the return-path receiver (a certificate: STARTTLS
    offered); dest.test routed to a failing Bouncer that sends its DSNs
    back over STARTTLS (required), late.test to a deferring one that sends
    them in cleartext."""

    def __init__(self):
        self.fb_port = util.free_port(HOST)
        self.bouncers = {}
        self.d = None
        self.dir = util.tempdir("volley-fbdsn-")
        try:
            self.chain, self.key, _ = pki.TestCA(self.dir).issue("mx", ["mx.example.com"])
            for dom, mode, tls in (("dest.test", "fail", "encrypt"),
                                   ("late.test", "delay", "none")):
                b = postfixctl.Bouncer(HOST, util.free_port(HOST), [dom], HOST, self.fb_port,
                                       [VDOM], mode=mode, return_tls=tls)
                self.bouncers[dom] = b.start()
            self.d = Volleyd(config=self.config()).start()
        except Exception:
            self.close()
            raise

    def config(self):
        rules = ",\n  ".join('{ match = "%s"; route = "%s:%d"; tls = "none"; }'
                             % (dom, HOST, b.port) for dom, b in self.bouncers.items())
        return ('hostname = "%s";\n'
                'domains = ( %s );\n'
                'defaults = { retry = [ "1s" ]; };\n'
                'feedback = { listen = [ "%s:%d" ]; domains = [ "%s" ];\n'
                '  cert = "%s"; key = "%s"; };\n'
                % (MSGID_HOST, rules, HOST, self.fb_port, VDOM, self.chain, self.key))

    def close(self):
        if self.d:
            self.d.cleanup()
        for b in self.bouncers.values():
            b.stop()
        util.remove_dir(self.dir)


def setUpModule():
    global W
    if not postfixctl.available():
        raise unittest.SkipTest("needs Debian's Postfix and root")
    W = World()


def tearDownModule():
    global W
    if W:
        W.close()
        W = None


def stored(data_dir):
    """{path: bytes} of every message in feedback/new and feedback/cur."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(data_dir, "feedback", sub)
        for n in os.listdir(d) if os.path.isdir(d) else ():
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.join(d, n)] = f.read()
    return out


def parse(got, tmp):
    """`volley feedback parse` on copies of the stored messages (volleyd's
    processor moves the originals from new/ to cur/ meanwhile); each
    object's "file" is put back to the original's path."""
    copies = {}
    for i, (path, data) in enumerate(sorted(got.items())):
        c = os.path.join(tmp, "m%d" % i)
        with open(c, "wb") as f:
            f.write(data)
        copies[c] = path
    p = subprocess.run([VOLLEY, "feedback", "parse", "--json", *copies], capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    out = [json.loads(l) for l in p.stdout.decode().splitlines()]
    for o in out:
        o["file"] = copies[o["file"]]
    return out


class PostfixDSN(VolleydTest):
    def submit(self, domain, verp, n=2):
        job = simple_job(0, envelope_sender="bounces@" + VDOM, verp=verp)
        job["recipients"] = [{"email": "u%d.%s@%s" % (i, "v" if verp else "m", domain),
                              "substitutions": {"name": "U%d" % i}} for i in range(n)]
        r = W.d.submit(job)
        self.assertEqual(r.status, 202, r)
        return r.json()["id"], {x["email"]: i for i, x in enumerate(job["recipients"])}

    def delivered(self, jid, n):
        """The recipients' rows once all n are final: delivered (Postfix's
        250), or already bounced by its DSN."""
        def all_final():
            rows = W.d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()
            return rows if len(rows) == n and all(
                r["state"] not in ("queued", "deferred", "in_flight") for r in rows) else None
        rows = self.wait_for("job %s final" % jid, all_final, timeout=30)
        self.assertTrue(all(r["state"] in ("delivered", "bounced") for r in rows), rows)
        self.assertTrue(all(r["state"] == "bounced" or r["response"]["code"] == 250
                            for r in rows), rows)
        return rows

    def effects(self, jid, n, failed):
        """What volleyd's processor made of the DSNs: a failure moves each
        recipient from delivered to bounced (OOB events, the late bounce
        counted); a delay is an OOB event only."""
        def applied():
            rep = [r for r in W.d.request("GET", "/v1/feedback?limit=1000").json()["reports"]
                   if r["job"] == jid]
            return rep if len(rep) >= n else None
        rep = self.wait_for("%d reports of %s applied" % (n, jid), applied, timeout=20)
        self.assertEqual({r["effect"] for r in rep}, {"bounced" if failed else "recorded"}, rep)
        j = W.d.request("GET", "/v1/jobs/" + jid).json()
        if failed:
            self.assertEqual((j["counts"]["bounced"], j["counts"]["delivered"],
                              j["feedback"]["async_bounces"]), (n, 0, n), j)
            rows = W.d.request("GET", "/v1/jobs/%s/recipients?state=bounced" % jid).lines()
            self.assertEqual(len(rows), n)
            # Postfix's error transport: "X-Postfix; ...", no SMTP code
            self.assertTrue(all(r["reason"].startswith("late bounce 5.1.1: ")
                                for r in rows), rows)
        else:
            self.assertEqual((j["counts"]["delivered"], j["feedback"]["async_bounces"]),
                             (n, 0), j)
        oob = [e for e in W.d.request("GET", "/v1/events?job=" + jid).lines()
               if e["type"] == "OOB"]
        self.assertEqual(len(oob), n, oob)

    def dsns(self, jid, n, bouncer):
        """The n stored messages that name the job (its id is in the VERP
        address or in the returned Message-ID), within DSN_WAIT."""
        def mine():
            got = {p: m for p, m in stored(W.d.data_dir).items() if jid.encode() in m}
            return got if len(got) >= n else None
        got = util.wait_until(mine, DSN_WAIT, 0.2)
        if not got:
            self.fail("no %d DSNs for %s in %ds; Postfix's log:\n%s"
                      % (n, jid, DSN_WAIT, bouncer.log_text()[-3000:]))
        self.assertEqual(len(got), n, list(got))
        return got

    def check(self, domain, verp, action, status, tls):
        jid, index = self.submit(domain, verp)
        self.delivered(jid, len(index))
        got = self.dsns(jid, len(index), W.bouncers[domain])
        seen = {}
        for o in parse(got, util.tempdir("volley-fbcopy-", cleanup=self.addCleanup)):
            data = got[o["file"]]
            # volleyd's receiver wrote its trace fields in front
            self.assertTrue(data.startswith(b"Return-Path: <>\r\nDelivered-To: "), data[:200])
            received = data.split(b"\r\nReceived: ", 1)[1].split(b";", 1)[0]
            self.assertIn(b"with ESMTPS" if tls else b"with ESMTP id", received)
            self.assertEqual((o["kind"], o["error"]), ("dsn", None), o)
            self.assertIn("MAILER-DAEMON@bouncer.%s" % domain, o["from"])
            self.assertEqual(o["reporting_mta"], "bouncer.%s" % domain)
            self.assertEqual(len(o["recipients"]), 1, o)
            r = o["recipients"][0]
            self.assertEqual((r["action"], r["status"]), (action, status), o)
            self.assertIn("volley test bouncer", r["diagnostic"])
            email = r["final_rcpt"]
            self.assertIn(email, index, o)
            self.assertEqual(o["orig_msgid"], "<%s.%d@%s>" % (jid, index[email], MSGID_HOST))
            if verp:
                self.assertEqual(o["envelope_to"],
                                 "bounces+%s.%d@%s" % (jid, index[email], VDOM))
                self.assertEqual(o["match"], {"job": jid, "index": index[email], "by": "verp"})
            else:
                self.assertEqual(o["envelope_to"], "bounces@" + VDOM)
                self.assertEqual(o["match"],
                                 {"job": jid, "index": index[email], "by": "message-id"})
            seen[email] = o
        self.assertEqual(set(seen), set(index))     # one DSN each recipient
        self.effects(jid, len(index), action == "failed")

    def test_failed_dsn_matches_by_verp(self):
        self.check("dest.test", True, "failed", "5.1.1", tls=True)

    def test_failed_dsn_matches_by_message_id_without_verp(self):
        self.check("dest.test", False, "failed", "5.1.1", tls=True)

    def test_shared_message_dsn_matches_each_recipient_by_address(self):
        """A job whose content is the same for all (its own To, no VERP)
        goes to dest.test as one message of three RCPTs: its Message-ID
        names the first recipient's index, Postfix's one DSN names all
        three, and each is matched to its own recipient by its address."""
        emails = ["s%d@dest.test" % i for i in range(3)]
        job = {"envelope_sender": "bounces@" + VDOM,
               "content": {"from": {"email": "news@example.com"}, "subject": "shared",
                           "text_body": "the same for all",
                           "headers": {"To": "readers@example.com"}},
               "recipients": [{"email": e} for e in emails]}
        r = W.d.submit(job)
        self.assertEqual(r.status, 202, r)
        jid = r.json()["id"]
        self.delivered(jid, 3)
        got = self.dsns(jid, 1, W.bouncers["dest.test"])
        o = parse(got, util.tempdir("volley-fbcopy-", cleanup=self.addCleanup))[0]
        self.assertEqual(o["orig_msgid"], "<%s.0@%s>" % (jid, MSGID_HOST))
        self.assertEqual(sorted(x["final_rcpt"] for x in o["recipients"]), emails, o)

        def applied():
            rep = [x for x in W.d.request("GET", "/v1/feedback?limit=1000").json()["reports"]
                   if x["job"] == jid]
            return rep if len(rep) >= 3 else None
        rep = self.wait_for("3 reports of %s applied" % jid, applied, timeout=20)
        self.assertEqual(sorted((x["index"], x["recipient"], x["effect"]) for x in rep),
                         [(i, e, "bounced") for i, e in enumerate(emails)])
        j = W.d.request("GET", "/v1/jobs/" + jid).json()
        self.assertEqual((j["counts"]["bounced"], j["feedback"]["async_bounces"]), (3, 3), j)

    def test_delayed_dsn_matches_by_verp(self):
        self.check("late.test", True, "delayed", "4.4.1", tls=False)


if __name__ == "__main__":
    unittest.main()
