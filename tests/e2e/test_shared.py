"""Shared transactions end to end: a job whose content is the same for
every recipient (its own To, job-level values only, no VERP, no volley
unsubscribe token) goes to each destination as messages of several RCPTs,
up to the destination's max_recipients_per_message.

- a real Postfix (postfixctl.Receiver, discard transport) takes a job of
  250 recipients over three domains: its log says how many recipients
  each message had (the queue manager's nrcpt=) and that every recipient
  came once; a domain whose rule says 1 gets one message each;
- volley-sink with reply rules refusing some RCPTs (550, 451): those
  recipients bounce or are deferred with their own replies, the others
  are delivered by the one message, each with its own events;
- volley-sink with --max-rcpts 7 (452 4.5.3 beyond): the over-limit
  recipients go again at once, not counted as attempts, and the site's
  messages carry 7 at most from then on;
- a personalised job still goes one recipient per message.

Every wait is bounded; every process is stopped by its PID.
"""

import email
import re
import unittest

from . import postfixctl, util
from .daemon import Volleyd, VolleydTest, simple_job
from .sinkctl import Sink

HOST = "127.0.0.1"
MSGID_HOST = "mta.shared.test"
TO = "Example News readers <readers@news.example.com>"


def shared_job(emails, **extra):
    job = {
        "envelope_sender": "bounces@news.example.com",
        "content": {
            "from": {"email": "news@example.com", "name": "Example News"},
            "subject": "The {{ issue }} issue",
            "text_body": "Hello, the {{ issue }} issue is out.",
            "headers": {"To": TO},
        },
        "substitutions": {"issue": "winter"},
        "recipients": [{"email": e} for e in emails],
    }
    job.update(extra)
    return job


def rule(dom, port, extra=""):
    return ('{ match = "%s"; route = "%s:%d"; tls = "none";%s }'
            % (dom, HOST, port, (" " + extra) if extra else ""))


class PostfixShared(VolleydTest):
    """250 recipients over a.test (at most 40 a message), b.test (the
    default, 100) and c.test (1) to a real Postfix."""

    @classmethod
    def setUpClass(cls):
        if not postfixctl.available():
            raise unittest.SkipTest("needs Debian's Postfix and root")
        cls.pf = postfixctl.Receiver(HOST, util.free_port(HOST),
                                     ["a.test", "b.test", "c.test"]).start()
        rules = [rule("a.test", cls.pf.port, "max_recipients_per_message = 40;"),
                 rule("b.test", cls.pf.port),
                 rule("c.test", cls.pf.port, "max_recipients_per_message = 1;")]
        try:
            cls.d = Volleyd(config='hostname = "%s";\ndomains = ( %s );\n'
                            % (MSGID_HOST, ",\n  ".join(rules))).start()
        except Exception:
            cls.pf.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        cls.pf.stop()

    def test_messages_with_many_recipients_each_recipient_once(self):
        doms = ["a.test", "b.test", "c.test"]
        emails = ["u%d@%s" % (i, doms[i % 3]) for i in range(250)]
        r = self.d.submit(shared_job(emails))
        self.assertEqual(r.status, 202, r)
        jid = r.json()["id"]
        j = self.wait_done(self.d, jid, timeout=60)
        self.assertEqual(j["counts"]["delivered"], 250, j)

        def all_in():
            got = self.pf.messages()
            n = sum(len(rc) for _, rc in got.values())
            return got if n >= 250 and all(len(rc) == k for k, rc in got.values()) else None
        got = self.wait_for("Postfix's log of 250 deliveries", all_in, timeout=30)
        seen = [a for _, rc in got.values() for a in rc]
        self.assertEqual(sorted(seen), sorted(emails), "every recipient once")
        per = {d: [] for d in doms}
        for n, rc in got.values():
            ds = {a.split("@")[1] for a in rc}
            self.assertEqual(len(ds), 1, "one domain a message: %r" % rc)
            per[ds.pop()].append(n)
        self.assertEqual(sum(per["a.test"]), 84)
        self.assertLessEqual(max(per["a.test"]), 40, per)
        self.assertEqual(max(per["a.test"]), 40, per)
        self.assertEqual(sum(per["b.test"]), 83)
        self.assertGreater(max(per["b.test"]), 40, per)
        self.assertLessEqual(len(per["b.test"]), 3, per)
        self.assertEqual(per["c.test"], [1] * 83, "max_recipients_per_message = 1")
        # every recipient keeps its own Delivery event and journal record
        ev = self.events(self.d, jid, "Delivery")
        self.assertEqual(sorted(e["recipient"] for e in ev), sorted(emails))
        rows = self.d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()
        self.assertEqual({(r["state"], r["attempts"], r["response"]["code"]) for r in rows},
                         {("delivered", 1, 250)})


class SinkShared(VolleydTest):
    """volley-sink refusing some RCPTs (r.test), one taking 7 recipients a
    message (m.test), one for personalised mail (p.test)."""

    @classmethod
    def setUpClass(cls):
        cls.refusing = Sink("--reply", "rcpt:bad*@r.test=550 5.1.1 no such user",
                            "--reply", "rcpt:slow*@r.test=451 4.3.0 come back later").start()
        cls.limited = Sink("--max-rcpts", "7").start()
        cls.plain = Sink().start()
        rules = [rule("r.test", cls.refusing.port), rule("m.test", cls.limited.port),
                 rule("p.test", cls.plain.port)]
        try:
            cls.d = Volleyd(config='hostname = "%s";\ndomains = ( %s );\n'
                            'defaults = { retry = [ "1h" ]; };\n'
                            % (MSGID_HOST, ",\n  ".join(rules))).start()
        except Exception:
            for s in (cls.refusing, cls.limited, cls.plain):
                s.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        for s in (cls.refusing, cls.limited, cls.plain):
            s.finish()

    def counts(self, jid, want):
        def match():
            c = self.d.request("GET", "/v1/jobs/" + jid).json()["counts"]
            return c if all(c[k] == v for k, v in want.items()) else None
        return self.wait_for("counts %r" % want, match, timeout=30)

    def test_refused_rcpts_bounce_or_defer_each_with_its_reply(self):
        emails = ["ok%d@r.test" % i for i in range(10)] + \
                 ["bad%d@r.test" % i for i in range(3)] + ["slow%d@r.test" % i for i in range(2)]
        emails = emails[::2] + emails[1::2]        # refusals among the accepted
        r = self.d.submit(shared_job(emails))
        self.assertEqual(r.status, 202, r)
        jid = r.json()["id"]
        self.counts(jid, {"delivered": 10, "bounced": 3, "deferred": 2})
        msgs = self.refusing.new_messages(1)
        self.assertEqual(len(msgs), 1, msgs)
        m = msgs[0]
        self.assertEqual(sorted(m.env["rcpt"]), sorted(e for e in emails if e.startswith("ok")))
        head = email.message_from_bytes(m.data)
        self.assertEqual(head["To"], TO)
        # the Message-ID names the job and the message's first recipient
        self.assertEqual(head["Message-ID"], "<%s.0@%s>" % (jid, MSGID_HOST))
        rows = {r["email"]: r for r in
                self.d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()}
        for e in emails:
            row = rows[e]
            if e.startswith("ok"):
                self.assertEqual((row["state"], row["response"]["code"]), ("delivered", 250))
            elif e.startswith("bad"):
                self.assertEqual((row["state"], row["response"]["code"],
                                  row["response"]["text"]), ("bounced", 550, "no such user"))
            else:
                self.assertEqual((row["state"], row["response"]["code"],
                                  row["response"]["text"]),
                                 ("deferred", 451, "come back later"))
        bounces = self.events(self.d, jid, "Bounce")
        self.assertEqual(sorted(e["recipient"] for e in bounces),
                         sorted(e for e in emails if e.startswith("bad")))
        self.assertTrue(all(e["response"]["code"] == 550 for e in bounces), bounces)
        tf = self.events(self.d, jid, "TransientFailure")
        self.assertEqual(sorted(e["recipient"] for e in tf),
                         sorted(e for e in emails if e.startswith("slow")))
        self.assertEqual(len(self.events(self.d, jid, "Delivery")), 10)
        self.d.request("POST", "/v1/jobs/%s/cancel" % jid)

    def test_too_many_recipients_go_again_at_once(self):
        emails = ["u%d@m.test" % i for i in range(30)]
        r = self.d.submit(shared_job(emails))
        self.assertEqual(r.status, 202, r)
        jid = r.json()["id"]
        j = self.wait_done(self.d, jid, timeout=30)
        self.assertEqual(j["counts"]["delivered"], 30, j)
        msgs = self.limited.new_messages(5)
        got = [a for m in msgs for a in m.env["rcpt"]]
        self.assertEqual(sorted(got), sorted(emails), "each once")
        self.assertTrue(all(len(m.env["rcpt"]) <= 7 for m in msgs), msgs)
        self.assertEqual(len(msgs), 5, "7, then 7 a message: %r" % msgs)
        self.assertEqual(self.events(self.d, jid, "TransientFailure"), [],
                         "a 452 too many recipients is no deferral")
        rows = self.d.request("GET", "/v1/jobs/%s/recipients" % jid).lines()
        self.assertEqual({r["attempts"] for r in rows}, {1})

    def test_personalised_job_one_recipient_a_message(self):
        job = simple_job(0)
        job["recipients"] = [{"email": "u%d@p.test" % i, "substitutions": {"name": "U%d" % i}}
                             for i in range(6)]
        r = self.d.submit(job)
        self.assertEqual(r.status, 202, r)
        jid = r.json()["id"]
        self.wait_done(self.d, jid)
        msgs = self.plain.new_messages(6)
        self.assertEqual(sorted(len(m.env["rcpt"]) for m in msgs), [1] * 6)
        ids = {re.search(rb"Message-ID: <([^>]+)>", m.data).group(1) for m in msgs}
        self.assertEqual(len(ids), 6, "a Message-ID each")

    def test_verp_job_one_recipient_a_message(self):
        emails = ["v%d@p.test" % i for i in range(4)]
        r = self.d.submit(shared_job(emails, verp=True))
        self.assertEqual(r.status, 202, r)
        self.wait_done(self.d, r.json()["id"])
        msgs = self.plain.new_messages(4)
        self.assertEqual(sorted(len(m.env["rcpt"]) for m in msgs), [1] * 4)


if __name__ == "__main__":
    unittest.main()
