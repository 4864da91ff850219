"""The delivery engine end to end: volley-drive against volley-sink.

Every test checks both sides: each recipient's result as the engine reports
it (volley-drive --results), and what the sink received (maildir content,
envelopes, counters). Every run of volley-drive is bounded in time.
"""

import collections
import re
import socket
import threading
import time

from .sinkctl import (SinkTest, data_wire, drive_body, drive_message, drive_rcpt,
                     make_cert, run_drive, sanitizer_report)

HELO = "drive.volley.test"
SENDER = "bounce@drive.test"
RCPT_RE = re.compile(r"^(?:user|m\u00fcller)(\d+)\.(\d+)@drive\.test$")
SIZE = 3000                     # cuts the last line short: no final CRLF
STATUSES = ("delivered", "transient", "permanent")


def cut_after(marker, extra):
    """A body size that ends drive_body just after `marker` plus extra octets."""
    return drive_body(8000).index(marker) + extra


# body sizes for the DATA path: a cut line, whole lines (ends with CRLF), a
# lone dot as the last line without CRLF, a dot line cut short, empty
DATA_SIZES = (SIZE, cut_after(b"\r\n.", 2), cut_after(b"\r\n.", 3),
              cut_after(b"\r\n.", 4), 0)


class DriveTest(SinkTest):
    """Runs volley-drive against sinks and checks the engine's contract."""

    def drive(self, routes, *args, messages=1, rcpts=1, size=SIZE, timeout=20):
        """volley-drive to routes (a Sink, or a list of Sinks / HOST:PORT);
        checks that every recipient got exactly one result and that the
        summary and exit status agree with them."""
        routes = routes if isinstance(routes, list) else [routes]
        argv = []
        for r in routes:
            argv += ["--route", r if isinstance(r, str) else r.route()]
        argv += ["--messages", messages, "--rcpts", rcpts, "--size", size, *args]
        run = run_drive(*argv, timeout=timeout)
        self.check_run(run, messages, rcpts, "--smtputf8" in args)
        return run

    def assertNoSanitizerReport(self, run):
        report = sanitizer_report(run.stderr)
        if report:
            self.fail("sanitizer report from volley-drive:\n" + report)

    def check_run(self, run, messages, rcpts, smtputf8):
        self.assertNoSanitizerReport(run)
        got = [(r["msg"], r["rcpt"]) for r in run.results]
        want = {(n, drive_rcpt(n, i, smtputf8)) for n in range(messages) for i in range(rcpts)}
        self.assertEqual(len(got), len(set(got)), "a recipient got two results: %r" % run)
        self.assertEqual(set(got), want, run)
        self.assertIsNotNone(run.summary, run)
        for status in STATUSES:
            self.assertEqual(run.summary[status], run.count(status), run)
        self.assertEqual(run.summary["maybe_delivered"],
                         sum(r["maybe_delivered"] for r in run.results), run)
        self.assertEqual(run.rc, 0 if run.count("delivered") == len(want) else 1, run)
        for r in run.results:
            self.check_result(r)

    def check_result(self, r):
        """What engine.h promises of any one result."""
        self.assertIn(r["status"], STATUSES, r)
        code, enh = r["code"], r["enhanced"]
        if r["status"] == "delivered":
            self.assertTrue(200 <= code < 300 and r["stage"] == "dot", r)
            self.assertIs(r["maybe_delivered"], False, r)
        elif r["status"] == "permanent":
            self.assertTrue(500 <= code < 600, r)
        else:
            self.assertTrue(code == 0 or 300 <= code < 600, r)   # 3xx: out of place
        if enh:
            self.assertRegex(enh, r"^[245]\.\d{1,3}\.\d{1,3}$", r)
            self.assertEqual(enh[0], str(code)[0], r)
        if code == 0:
            self.assertEqual(enh, "", r)
        self.assertIn(r["stage"], ("connect", "greeting", "ehlo", "starttls", "tls", "auth",
                                   "mail", "rcpt", "data", "dot", "size"), r)

    def assertResults(self, run, status, results=None, **want):
        """Every result (of run, or those given) has status and these fields."""
        results = run.results if results is None else results
        self.assertTrue(results, run)
        for r in results:
            self.assertEqual((r["status"], {k: r[k] for k in want}), (status, want),
                             "%r\nin %r" % (r, run))

    def with_sink(self, sink_args, *args, **kw):
        """Start a sink with sink_args, drive to it: (sink, run)."""
        sink = self.start_sink(*sink_args)
        return sink, self.drive(sink, *args, **kw)

    def stored(self, sink, count):
        """The messages the sink stored since last asked: exactly count."""
        msgs = sink.new_messages(count, wait=5)
        self.assertEqual(len(msgs), count, msgs)
        for m in msgs:
            self.assertEqual((m.env["id"], m.env["size"]), (m.id, len(m.data)), m)
        self.assertEqual(sink.tmp_files(), [])
        return msgs

    def assertNothingStored(self, sink, run):
        self.assertEqual(sink.new_messages(wait=0.2), [], run)
        self.assertEqual(sink.final_stats()["messages"], 0, run)

    def assertRepliesNameStored(self, run, msgs):
        """Each delivered recipient is in exactly one stored envelope, and
        the 250 it got names that message's queue id; no stored message is
        unaccounted for."""
        where = {}
        for m in msgs:
            for rcpt in m.env["rcpt"]:
                self.assertNotIn(rcpt, where, "stored twice: %r" % m)
                where[rcpt] = m
        delivered = [r for r in run.results if r["status"] == "delivered"]
        self.assertEqual(sorted(where), sorted(r["rcpt"] for r in delivered))
        for r in delivered:
            self.assertIn(where[r["rcpt"]].id, r["text"], r)

    def msg_number(self, m):
        return int(RCPT_RE.match(m.env["rcpt"][0]).group(1))

    def assertStoredAsGenerated(self, msgs, size=SIZE, data=False, **flags):
        """Each stored message holds exactly what volley-drive generated for
        it (plus the CRLF a DATA transaction adds to an unterminated one)."""
        for m in msgs:
            want = drive_message(self.msg_number(m), size, **flags)
            self.assertEqual(m.data, data_wire(want) if data else want, m)

    def refused_route(self, host="127.0.0.1"):
        """HOST:PORT where connections are refused: a port bound (so no one
        else takes it) but not listening, for the rest of the test."""
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind((host, 0))
        return "%s:%d" % (host, s.getsockname()[1])

    def assertFailedAll(self, sink_args, *args, status="transient", messages=3, **want):
        """Every recipient fails with these fields and the sink stores nothing."""
        sink, run = self.with_sink(sink_args, *args, messages=messages)
        self.assertResults(run, status, **want)
        self.assertNothingStored(sink, run)
        return sink, run


class DeliveryTest(DriveTest):
    def test_pipelining_and_chunking(self):
        sink, run = self.with_sink((), messages=5)
        self.assertResults(run, "delivered", code=250, enhanced="2.0.0", stage="dot",
                           maybe_delivered=False, peer=sink.route(), tls=None)
        msgs = self.stored(sink, 5)
        self.assertStoredAsGenerated(msgs)
        self.assertRepliesNameStored(run, msgs)
        for m in msgs:
            n = self.msg_number(m)
            self.assertEqual(m.env["rcpt"], [drive_rcpt(n)])
            self.assertEqual((m.env["mail_from"], m.env["helo"], m.env["local"]),
                             (SENDER, HELO, sink.route()))
            self.assertEqual((m.env["chunking"], m.env["body"], m.env["smtputf8"],
                              m.env["tls"], m.env["auth"]), (True, None, False, None, None))
            lines = m.data.split(b"\r\n")
            dotted = [l for l in lines if l.startswith(b".")]
            self.assertEqual(dotted, [l for l in drive_body(SIZE).split(b"\r\n")
                                      if l.startswith(b".")])
            self.assertTrue(dotted and not any(l.startswith(b"..") for l in lines))
        bodies = {m.data.split(b"\r\n\r\n", 1)[1] for m in msgs}
        self.assertEqual(bodies, {drive_body(SIZE)})
        stats = sink.final_stats()
        self.assertEqual((stats["messages"], stats["recipients"], stats["bytes"]),
                         (5, 5, sum(len(m.data) for m in msgs)))
        self.assertEqual((stats["errors"], stats["replies_4xx"], stats["replies_5xx"]), (0, 0, 0))

    def test_large_message_chunked(self):
        size = 300000                        # too big to go with the commands
        sink, run = self.with_sink((), messages=2, size=size)
        self.assertResults(run, "delivered", code=250)
        msgs = self.stored(sink, 2)
        self.assertStoredAsGenerated(msgs, size)
        self.assertTrue(all(m.env["chunking"] for m in msgs))

    def test_unpipelined_peer_and_data_path(self):
        # the sink refuses (554, close) a client that pipelines when it may not
        for disable in ("pipelining", "chunking", "pipelining,chunking"):
            sink = self.start_sink("--disable", disable)
            chunking = "chunking" not in disable
            for size in DATA_SIZES:
                with self.subTest(disable=disable, size=size):
                    run = self.drive(sink, messages=3, size=size)
                    self.assertResults(run, "delivered", code=250, stage="dot")
                    msgs = self.stored(sink, 3)
                    self.assertStoredAsGenerated(msgs, size, data=not chunking)
                    self.assertTrue(all(m.env["chunking"] is chunking for m in msgs))
            with self.subTest(disable=disable):
                stats = sink.final_stats()
                self.assertEqual((stats["messages"], stats["errors"], stats["replies_5xx"]),
                                 (3 * len(DATA_SIZES), 0, 0))

    def test_helo_fallback(self):
        sink, run = self.with_sink(("--disable", "ehlo"), messages=3)
        self.assertResults(run, "delivered", code=250)
        msgs = self.stored(sink, 3)
        self.assertStoredAsGenerated(msgs, data=True)
        for m in msgs:
            self.assertEqual((m.env["helo"], m.env["chunking"], m.env["body"]),
                             (HELO, False, None))
        stats = sink.final_stats()
        # one refused EHLO per connection, nothing else refused
        self.assertEqual(stats["replies_5xx"], stats["conns_total"])
        self.assertEqual(stats["messages"], 3)


class RecipientTest(DriveTest):
    def test_recipients_share_one_transaction(self):
        sink, run = self.with_sink((), messages=2, rcpts=3)
        self.assertResults(run, "delivered", code=250)
        msgs = self.stored(sink, 2)
        self.assertStoredAsGenerated(msgs)
        for m in msgs:
            n = self.msg_number(m)
            self.assertEqual(m.env["rcpt"], [drive_rcpt(n, i) for i in range(3)])
        self.assertRepliesNameStored(run, msgs)
        stats = sink.final_stats()
        self.assertEqual((stats["messages"], stats["recipients"]), (2, 6))

    def test_max_rcpts_per_txn_splits(self):
        sink, run = self.with_sink((), "--max-rcpts-per-txn", 2, rcpts=5)
        self.assertResults(run, "delivered", code=250)
        msgs = self.stored(sink, 3)
        self.assertEqual(sorted(m.env["rcpt"] for m in msgs),
                         [[drive_rcpt(0, 0), drive_rcpt(0, 1)],
                          [drive_rcpt(0, 2), drive_rcpt(0, 3)], [drive_rcpt(0, 4)]])
        self.assertEqual({m.data for m in msgs}, {drive_message(0, SIZE)})
        self.assertRepliesNameStored(run, msgs)
        stats = sink.final_stats()
        self.assertEqual((stats["messages"], stats["recipients"]), (3, 5))

    def test_sink_recipient_limit(self):
        sink, run = self.with_sink(("--max-rcpts", 2), messages=2, rcpts=3)
        over = [r for r in run.results if r["rcpt"].startswith(("user0.2", "user1.2"))]
        self.assertResults(run, "transient", over, code=452, enhanced="4.5.3", stage="rcpt")
        self.assertResults(run, "delivered", [r for r in run.results if r not in over])
        msgs = self.stored(sink, 2)
        self.assertRepliesNameStored(run, msgs)
        self.assertEqual(sorted(m.env["rcpt"] for m in msgs),
                         [[drive_rcpt(n, 0), drive_rcpt(n, 1)] for n in (0, 1)])

    def test_one_recipient_refused(self):
        sink, run = self.with_sink(("--reply", "rcpt:user0.1@*=550 5.1.1 no such user"),
                                   messages=2, rcpts=3)
        bad = [r for r in run.results if r["rcpt"] == drive_rcpt(0, 1)]
        self.assertResults(run, "permanent", bad, code=550, enhanced="5.1.1", stage="rcpt",
                           text="no such user", maybe_delivered=False)
        self.assertResults(run, "delivered", [r for r in run.results if r not in bad])
        msgs = self.stored(sink, 2)
        self.assertEqual(sorted(m.env["rcpt"] for m in msgs),
                         [[drive_rcpt(0, 0), drive_rcpt(0, 2)],
                          [drive_rcpt(1, i) for i in range(3)]])
        self.assertRepliesNameStored(run, msgs)
        self.assertStoredAsGenerated(msgs)

    def test_every_recipient_refused(self):
        for extra in ((), ("--disable", "chunking")):
            with self.subTest(sink=extra):
                sink, run = self.with_sink(("--reply", "rcpt:*=550 5.1.1 no such user") + extra,
                                           messages=3, rcpts=2)
                self.assertResults(run, "permanent", code=550, enhanced="5.1.1",
                                   stage="rcpt", maybe_delivered=False)
                self.assertNothingStored(sink, run)


class ConnectionTest(DriveTest):
    def test_one_connection_for_200_messages(self):
        sink, run = self.with_sink((), "--max-conns", 1, messages=200, size=500)
        self.assertResults(run, "delivered", code=250)
        msgs = self.stored(sink, 200)
        self.assertEqual(len({m.env["peer"] for m in msgs}), 1)
        stats = sink.final_stats()
        self.assertEqual((stats["conns_total"], stats["messages"]), (1, 200))

    def test_max_messages_per_connection(self):
        sink, run = self.with_sink((), "--max-conns", 1, "--max-per-conn", 50,
                                   messages=200, size=500)
        self.assertResults(run, "delivered", code=250)
        per_peer = collections.Counter(m.env["peer"] for m in self.stored(sink, 200))
        self.assertEqual(sorted(per_peer.values()), [50] * 4)
        stats = sink.final_stats()
        self.assertEqual((stats["conns_total"], stats["messages"]), (4, 200))

    def test_connection_cap(self):
        sink, run = self.with_sink(("--latency", "20ms"), "--max-conns", 3,
                                   messages=30, size=500)
        self.assertResults(run, "delivered", code=250)
        self.stored(sink, 30)
        self.assertIn(sink.final_stats()["conns_total"], (2, 3))

    def test_busy_route_spread_over_workers(self):
        # More waiting than the home worker's share of connections keeps
        # busy: the route is spread, each worker opening its share (3 + 3),
        # never more than the route's cap (the sink refuses a seventh).
        sink, run = self.with_sink(("--latency", "30ms", "--max-conns", 6), "--workers", 2,
                                   "--max-conns", 6, messages=300, size=500, timeout=60)
        self.assertResults(run, "delivered", code=250)
        self.stored(sink, 300)
        self.assertEqual(run.summary["peak_conns_by_worker"], [3, 3], run)
        stats = sink.final_stats()
        self.assertEqual((stats["conns_total"], stats["conns_refused"]), (6, 0))

    def test_quiet_route_stays_home(self):
        # Fewer waiting than twice the home's share: one worker, whose
        # connections the messages share.
        sink, run = self.with_sink(("--latency", "30ms"), "--workers", 2, "--max-conns", 6,
                                   messages=4, size=500)
        self.assertResults(run, "delivered", code=250)
        self.assertEqual(sorted(run.summary["peak_conns_by_worker"])[0], 0, run)

    def test_extra_connections_refused_by_peer(self):
        # The peer takes one connection and answers the others 421: the
        # messages should go over the one it took, not all fail with it;
        # those spread to the other worker go back to the route's home.
        sink, run = self.with_sink(("--max-conns", 1), "--workers", 2, "--max-conns", 5,
                                   messages=20)
        self.assertEqual(run.count("delivered"), 20, run)
        self.assertEqual(len(self.stored(sink, 20)), 20)
        self.assertEqual(sink.final_stats()["messages"], 20)

    def test_connect_refused_fails_fast(self):
        route = self.refused_route()
        run = self.drive([route], messages=200, rcpts=2, timeout=20)
        self.assertResults(run, "transient", code=0, stage="connect", maybe_delivered=False,
                           peer=route, tls=None)
        self.assertTrue(all("refused" in r["text"].lower() for r in run.results), run)
        self.assertLess(run.seconds, 4.0, "a reconnect storm? %r" % run)

    def test_several_routes(self):
        sink = self.start_sink(hosts=("127.0.0.2", "127.0.0.3"))
        down = self.refused_route("127.0.0.4")
        run = self.drive([sink.route("127.0.0.2"), sink.route("127.0.0.3"), down], messages=9)
        for r in run.results:                    # message n goes to route n % 3
            if r["msg"] % 3 == 2:
                self.assertEqual((r["status"], r["stage"], r["peer"]),
                                 ("transient", "connect", down), r)
            else:
                self.assertEqual(r["status"], "delivered", r)
        msgs = self.stored(sink, 6)
        self.assertEqual(sorted((self.msg_number(m), m.env["local"]) for m in msgs),
                         [(n, sink.route("127.0.0.%d" % (2 + n % 3)))
                          for n in range(9) if n % 3 != 2])


class TlsTest(DriveTest):
    def assertTlsDelivered(self, sink, run, count, verified=False):
        self.assertResults(run, "delivered", code=250)
        for r in run.results:
            self.assertRegex(r["tls"]["version"], r"^TLSv1\.[23]$", r)
            self.assertTrue(r["tls"]["cipher"], r)
            self.assertIs(r["tls"]["verified"], verified, r)
        tls = {r["rcpt"]: {k: r["tls"][k] for k in ("version", "cipher")} for r in run.results}
        for m in self.stored(sink, count):
            got = {k: m.env["tls"][k] for k in ("version", "cipher")}
            self.assertEqual(got, tls[m.env["rcpt"][0]], m)

    def test_starttls_may_and_encrypt(self):
        sink = self.start_sink("--tls")
        for policy in ("may", "encrypt"):
            with self.subTest(policy=policy):
                self.assertTlsDelivered(sink, self.drive(sink, "--tls", policy, messages=3), 3)
        stats = sink.final_stats()
        self.assertEqual(stats["messages"], 6)
        self.assertEqual(stats["tls_sessions"], stats["conns_total"])

    def test_tls_sessions_resumed_per_host(self):
        # One connection at a time, five messages each: the first does a
        # full handshake, the next three resume with the host's ticket.
        sink = self.start_sink("--tls")
        run = self.drive(sink, "--tls", "encrypt", "--max-conns", 1, "--max-per-conn", 5,
                         messages=20)
        self.assertResults(run, "delivered", code=250)
        resumed = [m.env["tls"]["resumed"] for m in self.stored(sink, 20)]
        self.assertEqual((resumed.count(False), resumed.count(True)), (5, 15))
        self.assertEqual(sink.final_stats()["conns_total"], 4)

    def test_handshakes_wait_their_turn(self):
        # A worker runs at most 256 handshakes at once (HANDSHAKES_MAX):
        # 20 hosts, each pool setting up its first 16 sessions together
        # (its slow start), 320 connections opened at once on one worker,
        # the sink 20 ms away, so some wait in STARTTLS's 220 for a turn;
        # every one gets it and every message goes, over TLS.
        hosts = tuple("127.0.0.%d" % (40 + i) for i in range(20))
        sink = self.start_sink("--tls", "--threads", 2, "--latency", "20ms", hosts=hosts)
        run = self.drive([sink.route(h) for h in hosts], "--tls", "encrypt", "--workers", 1,
                         "--max-conns", 20, messages=400, size=500, timeout=60)
        self.assertTlsDelivered(sink, run, 400)
        stats = sink.final_stats()
        self.assertGreater(stats["conns_total"], 256, "the queue was not reached")
        self.assertEqual(stats["tls_sessions"], stats["conns_total"])

    def test_no_starttls_offered(self):
        sink = self.start_sink()
        run = self.drive(sink, "--tls", "may", messages=3)
        self.assertResults(run, "delivered", tls=None)
        self.assertTrue(all(m.env["tls"] is None for m in self.stored(sink, 3)))
        for policy in ("encrypt", "verify"):
            with self.subTest(policy=policy):
                run = self.drive(sink, "--tls", policy, messages=3)
                self.assertResults(run, "transient", code=0, stage="starttls", tls=None,
                                   maybe_delivered=False)
                self.stored(sink, 0)
        stats = sink.final_stats()
        self.assertEqual((stats["messages"], stats["tls_sessions"]), (3, 0))

    def test_starttls_refused(self):
        sink = self.start_sink("--tls", "--reply", "starttls=454 4.7.0 no tls now")
        run = self.drive(sink, "--tls", "may", messages=2)
        self.assertResults(run, "delivered", tls=None)
        self.assertTrue(all(m.env["tls"] is None for m in self.stored(sink, 2)))
        run = self.drive(sink, "--tls", "encrypt", messages=2)
        self.assertResults(run, "transient", code=454, enhanced="4.7.0", stage="starttls")
        self.stored(sink, 0)

    def test_starttls_accepted_but_no_tls(self):
        # 220 to STARTTLS, then the peer goes on in clear text
        self.assertFailedAll(("--tls", "--reply", "starttls=raw:220 ready\\r\\n"),
                             "--tls", "encrypt", "--timeout", "tls=2s", code=0, stage="tls",
                             tls=None, maybe_delivered=False)

    def test_broken_tls_under_may_falls_back_to_clear_text(self):
        # 220 to STARTTLS, then no TLS: under `may` the engine reconnects in
        # clear text at once, and nothing is deferred.
        sink = self.start_sink("--tls", "--reply", "starttls=raw:220 ready\\r\\n")
        run = self.drive(sink, "--tls", "may", "--max-conns", 1, "--timeout", "tls=2s",
                         messages=3)
        self.assertResults(run, "delivered", code=250, tls=None)
        self.assertTrue(all(m.env["tls"] is None for m in self.stored(sink, 3)))
        self.assertEqual(sink.final_stats()["conns_total"], 2)

    def test_verify(self):
        d = self.tempdir()
        cert, key = make_cert(d, "ip", "127.0.0.1", "IP:127.0.0.1")
        other, other_key = make_cert(d, "other", "other.test", "DNS:other.test")
        generated = self.start_sink("--tls")
        mine = self.start_sink("--tls", "--cert", cert, "--key", key)
        wrong_name = self.start_sink("--tls", "--cert", other, "--key", other_key)
        for sink, ca in ((generated, ()), (mine, ()), (wrong_name, ("--ca", other))):
            with self.subTest(sink=sink.args, ca=ca):
                run = self.drive(sink, "--tls", "verify", *ca, messages=2)
                self.assertResults(run, "transient", stage="tls", tls=None,
                                   maybe_delivered=False)
                self.stored(sink, 0)
        run = self.drive(mine, "--tls", "verify", "--ca", cert, messages=3)
        self.assertTlsDelivered(mine, run, 3, verified=True)
        self.assertEqual(mine.final_stats()["messages"], 3)


class AuthTest(DriveTest):
    AUTH_SINK = ("--tls", "--auth", "u:p")

    def test_auth_inside_tls(self):
        sink, run = self.with_sink(self.AUTH_SINK, "--tls", "encrypt", "--auth", "u:p",
                                   messages=3)
        self.assertResults(run, "delivered", code=250)
        for m in self.stored(sink, 3):
            self.assertEqual(m.env["auth"], "u")
            self.assertIsNotNone(m.env["tls"])

    def test_wrong_password(self):
        self.assertFailedAll(self.AUTH_SINK, "--tls", "encrypt", "--auth", "u:wrong",
                             code=535, enhanced="5.7.8", stage="auth")

    def test_no_credentials_in_clear(self):
        for sink_args in (self.AUTH_SINK, ("--auth", "u:p")):
            with self.subTest(sink=sink_args):
                sink, _ = self.assertFailedAll(sink_args, "--tls", "none", "--auth", "u:p",
                                               code=0, stage="auth", tls=None)
                stats = sink.final_stats()   # an AUTH in clear would get 538
                self.assertEqual((stats["replies_5xx"], stats["tls_sessions"]), (0, 0))

    def test_auth_required(self):
        self.assertFailedAll(self.AUTH_SINK, "--tls", "encrypt", status="permanent",
                             code=530, enhanced="5.7.0", stage="mail")

    def test_peer_offers_no_auth(self):
        self.assertFailedAll(("--tls",), "--tls", "encrypt", "--auth", "u:p",
                             code=0, stage="auth")


# the sink arguments for each way of sending the body
PATHS = (("bdat", ()), ("data", ("--disable", "chunking")))


class FaultTest(DriveTest):
    def test_421_ends_the_session(self):
        # An explicit refusal before the body: the message cannot have been
        # taken, so it is not "maybe delivered" however it was pipelined.
        for stage, enh in (("mail", "4.7.0"), ("rcpt", "4.3.0")):
            for name, path in PATHS:
                with self.subTest(stage=stage, path=name):
                    self.assertFailedAll(("--reply", "%s:*=421 %s closing" % (stage, enh)) + path,
                                         code=421, enhanced=enh, stage=stage,
                                         maybe_delivered=False)

    def test_dot_refused(self):
        for name, path in PATHS:
            with self.subTest(path=name):
                self.assertFailedAll(("--reply", "dot:*=554 5.7.1 rejected") + path,
                                     status="permanent", code=554, enhanced="5.7.1",
                                     stage="dot", text="rejected", maybe_delivered=False)
        self.assertFailedAll(("--permfail", "dot:100%"), status="permanent", stage="dot")

    def test_data_refused(self):
        self.assertFailedAll(("--reply", "data:*=554 5.7.1 no data", "--disable", "chunking"),
                             status="permanent", code=554, enhanced="5.7.1", stage="data")

    def test_tempfail_every_recipient(self):
        _, run = self.assertFailedAll(("--tempfail", "100%"), stage="rcpt",
                                      maybe_delivered=False)
        self.assertTrue(all(400 <= r["code"] < 500 for r in run.results), run)

    def test_disconnect_after_dot(self):
        # (a small BDAT goes with MAIL and RCPT, and their replies are lost
        # with the reset too: the stage may be any of them)
        dot = {"stage": "dot"}
        for extra, size, stage in (((), SIZE, {}), (("--disable", "chunking"), SIZE, dot),
                                   ((), 100000, dot)):
            with self.subTest(sink=extra, size=size):
                sink, run = self.with_sink(("--disconnect", "dot:100%") + extra,
                                           messages=2, size=size)
                self.assertResults(run, "transient", code=0, maybe_delivered=True, **stage)
                self.assertNothingStored(sink, run)

    def test_disconnect_at_rcpt(self):
        # Unpipelined, DATA, or a body too big to go with the commands: the
        # message had not been sent when the connection was reset. (A small
        # BDAT pipelined with RCPT may honestly be "maybe delivered".)
        for extra, size in ((("--disable", "pipelining"), SIZE),
                            (("--disable", "chunking"), SIZE), ((), 100000)):
            with self.subTest(sink=extra, size=size):
                sink, run = self.with_sink(("--disconnect", "rcpt:100%") + extra,
                                           messages=2, size=size)
                self.assertResults(run, "transient", code=0, maybe_delivered=False)
                self.assertNothingStored(sink, run)

    def test_drop_at_mail(self):
        sink, run = self.with_sink(("--reply", "mail:*=drop"), messages=2)
        self.assertResults(run, "transient", code=0, stage="mail")
        self.assertNothingStored(sink, run)

    def test_greeting_refused(self):
        for code, text in ((554, "5.3.2 no service"), (421, "4.3.2 bye")):
            with self.subTest(code=code):
                self.assertFailedAll(("--reply", "greeting=%d %s" % (code, text)), code=code,
                                     enhanced=text[:5], stage="greeting",
                                     maybe_delivered=False)
        self.assertFailedAll(("--disconnect", "connect:100%"), code=0, stage="greeting")

    def test_stall_after_dot(self):
        for name, path in PATHS:
            with self.subTest(path=name):
                sink, run = self.with_sink(("--reply", "dot:*=stall") + path,
                                           "--timeout", "data_term=1s", messages=2)
                self.assertResults(run, "transient", code=0, stage="dot",
                                   maybe_delivered=True)
                self.assertLess(run.seconds, 8.0, run)
                self.assertNothingStored(sink, run)

    def test_stalls_before_the_body(self):
        for rule, timeout, stage, extra in (
                ("rcpt:*=stall", "rcpt=500ms", "rcpt", ("--disable", "pipelining")),
                ("rcpt:*=stall", "rcpt=500ms", "rcpt", ("--disable", "chunking")),
                ("greeting=stall", "greeting=500ms", "greeting", ()),
                ("greeting=raw:220 no end of line", "greeting=500ms", "greeting", ()),
                ("helo=raw:250-more to come\\r\\n", "helo=500ms", "ehlo", ())):
            with self.subTest(rule=rule, sink=extra):
                sink, run = self.with_sink(("--reply", rule) + extra, "--timeout", timeout,
                                           messages=2)
                self.assertResults(run, "transient", code=0, stage=stage,
                                   maybe_delivered=False)
                self.assertLess(run.seconds, 8.0, run)
                self.assertNothingStored(sink, run)

    def test_stall_at_pipelined_rcpt(self):
        sink, run = self.with_sink(("--reply", "rcpt:*=stall"), "--timeout", "rcpt=1s",
                                   messages=2)
        self.assertResults(run, "transient", code=0, stage="rcpt")
        self.assertLess(run.seconds, 8.0, run)
        self.assertNothingStored(sink, run)

    def test_malformed_replies(self):
        for rule in ("mail:*=raw:garbage\\r\\n",
                     "mail:*=raw:250 " + "x" * 2996 + "\\r\\n",       # 3000 octets
                     "rcpt:*=raw:250-first\\r\\n251 other code\\r\\n",
                     "rcpt:*=raw:25\\r\\n",
                     "rcpt:*=raw:600 no such class\\r\\n",
                     "helo=raw:250-" + "y" * 3000 + "\\r\\n250 ok\\r\\n"):
            with self.subTest(rule=rule[:40]):
                self.assertFailedAll(("--reply", rule), code=0, messages=2,
                                     text="malformed or over-long reply from the peer")

    def test_multiline_and_bare_replies(self):
        _, run = self.assertFailedAll(
            ("--reply", "rcpt:*=550 5.1.1 line one\\nline two\\nline three"),
            status="permanent", code=550, enhanced="5.1.1", stage="rcpt", messages=1)
        self.assertResults(run, "permanent", text="line one\nline two\nline three")
        self.assertFailedAll(("--reply", "rcpt:*=raw:550\\r\\n"), status="permanent",
                             code=550, enhanced="", text="", stage="rcpt", messages=1)
        # an intermediate reply where a final one is due: not a delivery
        self.assertFailedAll(("--reply", "rcpt:*=raw:354 go ahead\\r\\n"), code=354,
                             stage="rcpt", messages=1)


class SizeTest(DriveTest):
    def test_message_over_peer_size(self):
        sink = self.start_sink("--max-size", 1000)
        run = self.drive(sink, messages=3, size=4096)
        self.assertResults(run, "permanent", code=552, enhanced="5.3.4", stage="size")
        self.assertNothingStored(sink, run)
        self.assertEqual(sink.final_stats()["replies_5xx"], 0)   # never offered

    def test_many_refused_on_one_connection(self):
        # Messages refused without a round trip, all queued for the one
        # session: handled in a loop, not a call chain as deep as the queue.
        n = 200000
        sink = self.start_sink("--max-size", 1000)
        run = run_drive("--route", sink.route(), "--messages", n, "--max-conns", 1,
                        "--size", 2000, results=False, timeout=60)
        self.assertNoSanitizerReport(run)
        self.assertIsNotNone(run.summary, run)
        self.assertEqual((run.rc, run.summary["permanent"]), (1, n), run)
        stats = sink.final_stats()
        self.assertEqual((stats["conns_total"], stats["messages"], stats["replies_5xx"]),
                         (1, 0, 0))

    def test_size_boundary(self):
        sink = self.start_sink("--max-size", 1000)
        fits = 1000 - len(drive_message(0, 0))
        run = self.drive(sink, size=fits)
        self.assertResults(run, "delivered", code=250)
        self.assertEqual(len(self.stored(sink, 1)[0].data), 1000)
        run = self.drive(sink, size=fits + 1)
        self.assertResults(run, "permanent", code=552, enhanced="5.3.4", stage="size")
        self.stored(sink, 0)


class EightBitTest(DriveTest):
    def test_8bitmime(self):
        sink, run = self.with_sink((), "--8bit", messages=2)
        self.assertResults(run, "delivered", code=250)
        msgs = self.stored(sink, 2)
        self.assertStoredAsGenerated(msgs, eightbit=True)
        self.assertTrue(all(m.env["body"] == "8BITMIME" for m in msgs), msgs)
        for sink_args in (("--disable", "8bitmime"), ("--disable", "ehlo")):
            with self.subTest(sink=sink_args):
                self.assertFailedAll(sink_args, "--8bit", status="permanent", code=554,
                                     enhanced="5.6.3", stage="size")

    def test_smtputf8(self):
        sink, run = self.with_sink((), "--smtputf8", messages=2)
        self.assertResults(run, "delivered", code=250)
        msgs = self.stored(sink, 2)
        self.assertStoredAsGenerated(msgs, smtputf8=True)
        for m in msgs:
            self.assertIs(m.env["smtputf8"], True)
            self.assertEqual(m.env["rcpt"], [drive_rcpt(self.msg_number(m), 0, True)])
        self.assertFailedAll(("--disable", "smtputf8"), "--smtputf8", status="permanent",
                             code=553, enhanced="5.6.7", stage="size")


class ScaleTest(DriveTest):
    def test_many_submitting_threads(self):
        # Eight threads hand messages to the engine at once (its inboxes are
        # lock-free multi-producer queues): every one delivered, once.
        sink = self.start_sink()
        run = self.drive(sink, "--submitters", 8, "--workers", 2, messages=4000,
                         size=500, timeout=60)
        self.assertResults(run, "delivered", code=250)
        self.assertEqual(len({r["msg"] for r in run.results}), 4000)
        self.assertEqual(sink.final_stats()["messages"], 4000)

    def test_partial_fault_rates(self):
        n = 2000
        sink, run = self.with_sink(("--tempfail", "5%", "--permfail", "1%", "--seed", 1),
                                   messages=n, size=1000, timeout=60)
        delivered, transient, permanent = (run.count(s) for s in STATUSES)
        self.assertEqual(delivered + transient + permanent, n)
        self.assertTrue(30 <= transient <= 200, run.summary)
        self.assertTrue(2 <= permanent <= 60, run.summary)
        for r in run.results:
            if r["status"] != "delivered":
                self.assertEqual((r["stage"], r["code"] // 100, r["maybe_delivered"]),
                                 ("rcpt", 4 if r["status"] == "transient" else 5, False), r)
        msgs = self.stored(sink, delivered)
        self.assertRepliesNameStored(run, msgs)
        stats = sink.final_stats()
        self.assertEqual((stats["messages"], stats["recipients"]), (delivered, delivered))


class PipePeer:
    """A raw SMTP server on loopback (a thread, one connection at a time)
    that holds its replies back: it answers only once `hold` transactions
    (RSET, MAIL, RCPTs, BDAT n LAST and its n octets) have arrived without
    a reply, or when the client has been silent for `quiet` seconds. A
    client that waits for each transaction's replies before it sends the
    next never gets `hold` transactions in before a reply.

    It keeps a transaction open after a BDAT refused for want of
    recipients, as Postfix does: a MAIL after it without RSET is a nested
    MAIL (503), and RCPTs would join the open transaction.

    Faults, on the first connection only (the engine then opens another):
    mail_refused (transaction indexes whose MAIL gets 550), rcpts_refused
    (whose RCPTs get 550), close_after (close once that many transactions
    were answered, the rest unanswered), reply_421 (the index whose MAIL
    gets 421, then the close)."""

    def __init__(self, hold=3, quiet=1.0, caps=("PIPELINING", "CHUNKING"), mail_refused=(),
                 rcpts_refused=(), close_after=None, reply_421=None):
        self.hold, self.quiet, self.caps = hold, quiet, caps
        self.mail_refused, self.rcpts_refused = set(mail_refused), set(rcpts_refused)
        self.close_after, self.reply_421 = close_after, reply_421
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.txns = []          # every transaction: dict(conn, msgs, fate, rset)
        self.batches = []       # per reply flush: transactions answered in it
        self.conns = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def route(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.lsock.close()

    def _run(self):
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            with conn:
                self.conns += 1
                try:
                    self._serve(conn, self.conns == 1)
                except (OSError, ConnectionError):
                    pass

    def _serve(self, conn, faults):
        conn.settimeout(self.quiet)
        buf = b""
        conn.sendall(b"220 peer ESMTP\r\n")
        pending, out = [], []      # transactions complete, unanswered; replies
        cur, open_txn, answered = None, False, 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # parse whatever is whole
            while True:
                if cur is not None and cur.get("bdat") is not None:
                    if len(buf) < cur["bdat"]:
                        break
                    buf = buf[cur["bdat"]:]
                    cur["bdat"] = None
                    pending.append(cur)
                    cur = None
                    continue
                if b"\r\n" not in buf:
                    break
                line, buf = buf.split(b"\r\n", 1)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(("250-peer\r\n" + "".join("250-%s\r\n" % c for c in self.caps)
                                  + "250 8BITMIME\r\n").encode())
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                elif verb == b"RSET" and cur is None:
                    cur = {"rset": True, "cmds": [b"RSET"], "msgs": set(), "bdat": None}
                elif verb == b"MAIL":
                    if cur is None:
                        cur = {"rset": False, "cmds": [], "msgs": set(), "bdat": None}
                    cur["cmds"].append(b"MAIL")
                elif verb == b"RCPT":
                    cur["cmds"].append(b"RCPT")
                    cur["msgs"].add(int(RCPT_RE.match(line[9:-1].decode()).group(1)))
                elif verb == b"BDAT":
                    cur["cmds"].append(b"BDAT")
                    cur["bdat"] = int(line.split()[1])
                elif verb == b"RSET":          # one alone after a refusal
                    conn.sendall(b"250 2.0.0 reset\r\n")
                    open_txn = False
                else:
                    conn.sendall(b"502 5.5.2 what\r\n")
            if pending and (len(pending) >= self.hold or out == "quiet"):
                self.batches.append(len(pending))
                stop = None       # once the peer stops answering: the fate of the rest
                for t in pending:
                    t["conn"], t["index"] = self.conns, len(self.txns)
                    t["batch"] = len(self.batches) - 1
                    self.txns.append(t)
                    if stop:
                        t["fate"] = stop
                    elif faults and self.close_after is not None and answered >= self.close_after:
                        t["fate"] = stop = "unanswered"
                    elif faults and t["index"] == self.reply_421:
                        t["fate"], stop = "421", "after-421"
                        conn.sendall(b"421 4.3.2 closing\r\n")
                    else:
                        replies, open_txn = self._answer(t, faults, open_txn)
                        conn.sendall(replies)
                        answered += 1
                if stop:
                    return                       # the close
                pending = []
            out = None
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                out = "quiet"
                continue
            if not chunk:
                return
            buf += chunk

    def _answer(self, t, faults, open_txn):
        """The replies to t's commands in order; whether the server's
        transaction stays open after it."""
        r, mail_ok, rcpts = [], False, 0
        for cmd in t["cmds"]:
            if cmd == b"RSET":
                r.append(b"250 2.0.0 reset\r\n")
                open_txn = False
            elif cmd == b"MAIL":
                if open_txn:
                    r.append(b"503 5.5.1 nested MAIL command\r\n")
                    mail_ok = True               # the old one goes on
                elif faults and t["index"] in self.mail_refused:
                    r.append(b"550 5.7.1 sender refused\r\n")
                else:
                    r.append(b"250 2.1.0 ok\r\n")
                    mail_ok = open_txn = True
            elif cmd == b"RCPT":
                if not mail_ok:
                    r.append(b"503 5.5.1 need MAIL\r\n")
                elif faults and t["index"] in self.rcpts_refused:
                    r.append(b"550 5.1.1 no such user\r\n")
                else:
                    r.append(b"250 2.1.5 ok\r\n")
                    rcpts += 1
            elif cmd == b"BDAT":
                if rcpts:
                    r.append(b"250 2.0.0 queued as T%d\r\n" % t["index"])
                    t["fate"] = "delivered"
                    open_txn = False
                else:
                    r.append(b"554 5.5.1 no valid recipients\r\n")
                    t["fate"] = "refused"        # the transaction stays open
        t.setdefault("fate", "refused")
        if faults and t["index"] in self.mail_refused:
            t["fate"] = "mail-refused"
        elif faults and t["index"] in self.rcpts_refused:
            t["fate"] = "rcpts-refused"
        return b"".join(r), open_txn


class PipelineTest(DriveTest):
    """Pipelining across transactions (RFC 2920 with RFC 3030): the next
    message's transaction goes behind a BDAT LAST whose replies are out."""

    def peer(self, **kw):
        p = PipePeer(**kw)
        self.addCleanup(p.close)
        return p

    def fates(self, peer):
        """message number -> (its transaction, fate)."""
        out = {}
        for t in peer.txns:
            for n in t["msgs"]:
                self.assertNotIn(n, out, "a message sent twice: %r" % peer.txns)
                out[n] = t
        return out

    def assertFates(self, run, peer, messages):
        """Each message's result is what the peer did with it."""
        fates = self.fates(peer)
        for r in run.results:
            t = fates.get(r["msg"])
            fate = t["fate"] if t else "never sent"
            if not t:
                # sent after what the peer read before its close, or never:
                # the peer cannot tell; the engine gives a transient result,
                # maybe delivered only when it was not a 421 that ended it
                self.assertEqual(r["status"], "transient", r)
                self.assertIn(r["code"], (0, 421), r)
                self.assertFalse(r["code"] == 421 and r["maybe_delivered"], r)
                continue
            got = (r["status"], r["code"], r["maybe_delivered"])
            want = {"delivered": ("delivered", 250, False),
                    "mail-refused": ("permanent", 550, False),
                    "rcpts-refused": ("permanent", 550, False),
                    "421": ("transient", 421, False),
                    "after-421": ("transient", 421, False),
                    "unanswered": ("transient", 0, True)}.get(fate)
            self.assertEqual(got, want, "message %d (%s): %r\n%r" % (r["msg"], fate, r,
                                                                    peer.txns))
            if fate == "delivered":
                self.assertEqual(r["text"], "queued as T%d" % t["index"], r)
        self.assertEqual(len(run.results), messages)

    def test_several_transactions_before_a_reply(self):
        # The peer answers nothing until three transactions are in: only a
        # client that pipelines across transactions gets them there.
        peer = self.peer(hold=3, quiet=3.0)
        run = self.drive(peer.route(), "--max-conns", 1, messages=9, size=2000)
        self.assertFates(run, peer, 9)
        self.assertEqual(run.count("delivered"), 9, run)
        self.assertEqual(peer.conns, 1)
        self.assertGreaterEqual(max(peer.batches), 3, peer.batches)
        self.assertEqual(sum(peer.batches), 9)
        # the first on a connection has no RSET; one sent while another
        # was unanswered (behind the first of its batch) has
        self.assertFalse(peer.txns[0]["rset"])
        for prev, t in zip(peer.txns, peer.txns[1:]):
            if t["batch"] == prev["batch"]:
                self.assertTrue(t["rset"], peer.txns)

    def test_the_middle_transaction_fails(self):
        # MAIL refused for the second, every RCPT of the third: each its own
        # result, and the fourth after it is not a nested MAIL (its RSET)
        peer = self.peer(hold=4, quiet=3.0, mail_refused=(1,), rcpts_refused=(2,))
        run = self.drive(peer.route(), "--max-conns", 1, messages=8, size=2000)
        self.assertGreaterEqual(max(peer.batches), 4, peer.batches)
        self.assertFates(run, peer, 8)
        self.assertEqual(run.count("delivered"), 6, run)
        self.assertEqual(run.count("permanent"), 2, run)

    def test_dropped_with_transactions_outstanding(self):
        # One answered, the others of the batch unanswered when the
        # connection drops: those may have been delivered; the rest go over
        # a new connection.
        peer = self.peer(hold=3, quiet=3.0, close_after=1)
        run = self.drive(peer.route(), "--max-conns", 1, messages=8, size=2000)
        self.assertFates(run, peer, 8)
        fates = collections.Counter(t["fate"] for t in peer.txns)
        self.assertGreaterEqual(fates["unanswered"], 2, peer.txns)
        self.assertGreaterEqual(run.summary["maybe_delivered"], fates["unanswered"], run)
        self.assertGreaterEqual(fates["delivered"], 3, peer.txns)

    def test_421_with_transactions_outstanding(self):
        # 421 in the place of the second's MAIL reply: it and those behind
        # it get the 421 (the server closed before reading them: not maybe
        # delivered); the rest go over a new connection
        peer = self.peer(hold=3, quiet=3.0, reply_421=1)
        run = self.drive(peer.route(), "--max-conns", 1, messages=8, size=2000)
        self.assertFates(run, peer, 8)
        self.assertGreaterEqual(run.count("transient"), 2, run)
        self.assertEqual(run.summary["maybe_delivered"], 0, run)
        self.assertEqual(peer.conns, 2, "the rest over a new connection")

    def test_sink_without_pipelining_or_chunking(self):
        # one transaction at a time there (the unit tests show the bytes):
        # every message stored once, each recipient its own 250
        for extra in (("--disable", "pipelining"), ("--disable", "chunking")):
            with self.subTest(sink=extra):
                sink, run = self.with_sink(extra, "--max-conns", 1, messages=40, rcpts=2,
                                           size=2000)
                self.assertEqual(run.count("delivered"), 80, run)
                self.assertRepliesNameStored(run, self.stored(sink, 40))

    def test_sink_many_messages_few_connections(self):
        # volley-sink, TLS and not, latency on each reply: every message
        # stored exactly once, each recipient its 250's queue id
        for tls in (False, True):
            with self.subTest(tls=tls):
                extra, args = ("--latency", "20ms"), ("--max-conns", 2)
                if tls:
                    extra += ("--tls",)
                    args += ("--tls", "encrypt")
                sink, run = self.with_sink(extra, *args, messages=300, rcpts=2, size=3000)
                self.assertEqual(run.count("delivered"), 600, run)
                msgs = self.stored(sink, 300)
                self.assertRepliesNameStored(run, msgs)
