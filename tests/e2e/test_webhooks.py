"""Webhooks end to end (docs/webhooks.md): volleyd delivers jobs to
volley-sink and POSTs the events to a receiver in this process
(tests/e2e/hookrecv.py) that checks every signature and timestamp, fails
the first attempts (500, a closed connection), goes down for a while, and
records the batches; volleyd is killed with -9 mid-stream and restarted.
Every wait is bounded."""

import json
import os
import re
import signal
import time

from . import util
from .daemon import VolleydTest, simple_job
from .hookrecv import Receiver
from .sinkctl import Sink

SECRET = "s3cret-for-tests"


def hook(name, rx, events=None, batch=50, gzip=False, extra=""):
    ev = "" if events is None else "events = [ %s ]; " % ", ".join('"%s"' % e for e in events)
    return ('{ name = "%s"; url = "%s"; %ssecret = "%s"; batch = %d; gzip = %s; '
            'timeout = "5s"; %s}' % (name, rx.url(), ev, SECRET, batch,
                                     "true" if gzip else "false", extra))


def conf(sink, hooks):
    return ('domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
            'defaults = { retry = [ "1s" ]; };\n'
            'webhooks = ( %s );\n' % (sink.route(), ",\n".join(hooks)))


def metrics(d):
    out = {}
    for line in d.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith("volley_webhook_"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def log_events(data_dir, kind, job=None):
    """Every event of a type in the events files, in the log's order."""
    d = os.path.join(data_dir, "events")
    out = []
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name)) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue    # the torn tail a kill -9 may leave
                if True:
                    if e["type"] == kind and (job is None or e["job"] == job):
                        out.append(e)
    return out


def key(e):
    return (e["type"], e["job"], e["recipient"], e["time"], e["attempt"])


class Webhooks(VolleydTest):
    def sink(self, *args):
        s = Sink("--tls", *args).start()
        self.addCleanup(s.stop)
        return s

    def receiver(self, script=(), port=0):
        rx = Receiver(SECRET, script=script, port=port).start()
        self.addCleanup(rx.stop)
        return rx

    def wait_events(self, rx, name, want, timeout=60):
        """rx's events of webhook name once they hold every key of want."""
        keys = {key(e) for e in want}

        def all_in():
            got = rx.events_of(name)
            return got if keys <= {key(e) for e in got} else None
        return self.wait_for("%d events at %s" % (len(keys), name), all_in, timeout)

    def in_order(self, got, want):
        """want's events appear in got in want's order (first occurrences)."""
        seen, first = set(), []
        for e in got:
            if key(e) not in seen:
                seen.add(key(e))
                first.append(key(e))
        wanted = {key(e) for e in want}
        self.assertEqual([k for k in first if k in wanted], [key(e) for e in want])

    def test_retries_signature_filter_gzip_order(self):
        rx = self.receiver(script=[500, "close", 500])
        s = self.sink("--reply", "rcpt:user1@*=550 5.1.1 no such user")
        d = self.start_daemon(config=conf(s, [
            hook("deliveries", rx, events=["Delivery"], batch=50, gzip=True),
            hook("all", rx, batch=100)]))
        jid = d.submit(simple_job(300, domain="d.test")).json()["id"]
        self.assertEqual(self.wait_done(d, jid)["counts"]["delivered"], 299)
        want = log_events(d.data_dir, "Delivery", jid)
        self.assertEqual(len(want), 299)
        got = self.wait_events(rx, "deliveries", want)
        self.in_order(got, want)
        self.assertEqual({e["type"] for e in got}, {"Delivery"})     # the filter
        bounce = log_events(d.data_dir, "Bounce", jid)
        self.assertEqual(len(bounce), 1)
        got_all = self.wait_events(rx, "all", want + bounce)
        self.assertEqual({e["type"] for e in got_all}, {"Delivery", "Bounce"})
        for h, evs in rx.batches_of("deliveries"):
            self.assertEqual(h.get("Content-Encoding"), "gzip")
            self.assertLessEqual(len(evs), 50)
        for h, evs in rx.batches_of("all"):
            self.assertIsNone(h.get("Content-Encoding"))
            self.assertLessEqual(len(evs), 100)
        self.assertEqual(rx.rejected, [])
        self.assertEqual(rx.requests, len(rx.batches) + 3)
        def settled():
            # the receiver records a batch before its 200 reaches volleyd
            m = metrics(d)
            ok = sum(v for k, v in m.items() if 'result="2xx"' in k) == len(rx.batches)
            return m if ok else None
        m = self.wait_for("metrics", settled, timeout=10)
        self.assertEqual(m['volley_webhook_events_sent_total{webhook="deliveries"}'], 299)
        failed = sum(v for k, v in m.items() if k.startswith("volley_webhook_failures_total"))
        self.assertEqual(failed, 3, m)
        self.assertEqual(m['volley_webhook_requests_total{webhook="deliveries",result="2xx"}'] +
                         m['volley_webhook_requests_total{webhook="all",result="2xx"}'],
                         len(rx.batches), m)
        self.assertEqual(sum(v for k, v in m.items() if 'result="5xx"' in k), 2, m)
        self.assertEqual(sum(v for k, v in m.items() if 'result="error"' in k), 1, m)
        self.assertTrue(re.search(r"webhook \w+: \d+ events to .*attempt 1 failed",
                                  d.output()), d.output())

    def test_kill9_mid_stream_loses_nothing(self):
        rx = self.receiver(script=["sleep:0.05"] * 1000)    # a slow receiver
        s = self.sink()
        data = util.tempdir("volleyd-hook-")
        cfg = conf(s, [hook("crm", rx, events=["Delivery"], batch=10)])
        d = self.start_daemon(config=cfg, data_dir=data)
        jid = d.submit(simple_job(400, domain="d.test")).json()["id"]
        self.wait_for("some events at the receiver", lambda: len(rx.events_of("crm")) >= 30)
        self.assertLess(len(rx.events_of("crm")), 400)
        d.kill9()
        before = len(rx.events_of("crm"))
        rx.script.clear()
        d2 = self.start_daemon(config=cfg, data_dir=data)
        self.wait_done(d2, jid, timeout=60)
        want = log_events(data, "Delivery", jid)
        got = self.wait_events(rx, "crm", want, timeout=60)
        keys = [key(e) for e in got]
        dups = len(keys) - len(set(keys))
        print("\n  kill -9: %d events before the kill, %d received in all, %d duplicates, "
              "%d Delivery events in the log" % (before, len(keys), dups, len(want)))
        self.assertEqual({e["recipient"] for e in got},
                         {"user%d@d.test" % i for i in range(400)})
        self.assertEqual(rx.rejected, [])
        cursor = open(os.path.join(data, "webhooks", "crm.cursor")).read()
        self.assertRegex(cursor, r"^volley-webhook-cursor 1 \d+ \d+\n$")

    def test_receiver_down_then_backlog(self):
        port = util.free_port()
        s = self.sink()
        down = Receiver(SECRET, port=port)     # not started yet: connection refused
        d = self.start_daemon(config=conf(s, [hook("late", down, events=["Delivery"],
                                                    batch=100)]))
        jid = d.submit(simple_job(120, domain="d.test")).json()["id"]
        self.wait_done(d, jid)

        def lagging():
            m = metrics(d)
            return m if (m['volley_webhook_lag_seconds{webhook="late"}'] > 0 and
                         m['volley_webhook_failures_total{webhook="late"}'] >= 2) else None
        m = self.wait_for("lag and failures while the receiver is down", lagging)
        self.assertEqual(m['volley_webhook_events_sent_total{webhook="late"}'], 0)
        self.assertGreaterEqual(m['volley_webhook_requests_total{webhook="late",result="error"}'], 2)
        rx = self.receiver(port=port)
        want = log_events(d.data_dir, "Delivery", jid)
        got = self.wait_events(rx, "late", want, timeout=30)
        self.in_order(got, want)

        def caught_up():
            m = metrics(d)
            return m if m['volley_webhook_lag_seconds{webhook="late"}'] == 0 else None
        m = self.wait_for("lag back to 0", caught_up, timeout=10)
        self.assertEqual(m['volley_webhook_events_sent_total{webhook="late"}'], 120)

    def test_cursor_starts_at_end_and_damaged_cursor(self):
        rx = self.receiver()
        s = self.sink()
        data = util.tempdir("volleyd-hook-")
        d = self.start_daemon(config=conf(s, []).replace("webhooks = (  );\n", ""),
                              data_dir=data)
        old = d.submit(simple_job(5, domain="d.test")).json()["id"]
        self.wait_done(d, old)
        d.stop()
        cfg = conf(s, [hook("new", rx, events=["Delivery"])])
        d = self.start_daemon(config=cfg, data_dir=data)
        jid = d.submit(simple_job(5, domain="d.test")).json()["id"]
        self.wait_done(d, jid)
        got = self.wait_events(rx, "new", log_events(data, "Delivery", jid))
        self.assertNotIn(old, {e["job"] for e in got})   # no cursor: starts at the end
        d.stop()
        with open(os.path.join(data, "webhooks", "new.cursor"), "w") as f:
            f.write("garbage\n")
        n = len(rx.events_of("new"))
        d = self.start_daemon(config=cfg, data_dir=data)
        # damaged: from the oldest event kept, so the old job's events come too
        self.wait_for("the whole log again", lambda: old in {e["job"] for e in
                                                              rx.events_of("new")[n:]})
        self.assertIn("is damaged", d.output())
        self.assertTrue(os.path.exists(os.path.join(data, "webhooks", "new.cursor.bad")))

    def test_stop_with_a_request_in_flight(self):
        rx = self.receiver(script=["sleep:30"])
        s = self.sink()
        data = util.tempdir("volleyd-hook-")
        cfg = conf(s, [hook("slow", rx, events=["Delivery"])])
        d = self.start_daemon(config=cfg, data_dir=data)
        jid = d.submit(simple_job(20, domain="d.test")).json()["id"]
        self.wait_done(d, jid)
        self.wait_for("the request in flight", lambda: rx.requests >= 1)
        t = time.monotonic()
        self.assertEqual(d.stop(), 0)
        took = time.monotonic() - t
        self.assertLess(took, 5.0)     # about a second; slack for a loaded machine
        self.assertEqual(rx.events_of("slow"), [])
        d = self.start_daemon(config=cfg, data_dir=data)   # the cursor did not move
        self.wait_events(rx, "slow", log_events(data, "Delivery", jid))

    def test_reload_says_webhooks_need_a_restart(self):
        rx = self.receiver()
        s = self.sink()
        d = self.start_daemon(config=conf(s, [hook("a", rx)]))
        with open(os.path.join(d.data_dir, "volley.conf"), "w") as f:
            f.write('dns = { servers = [ "127.0.0.1:9" ]; };\n' +
                    conf(s, [hook("a", rx, batch=7)]))
        d.proc.send_signal(signal.SIGHUP)
        self.wait_for("the reload's warning",
                      lambda: "webhooks changed: needs a restart" in d.output(), timeout=10)

    def test_config_errors(self):
        for bad, words in [
                ('{ url = "http://192.0.2.1/x"; secret = "k"; }', "webhooks[0].url"),
                ('{ url = "https://h.example/x"; secret = "k"; events = [ "Nope" ]; }',
                 "webhooks[0].events"),
                ('{ url = "https://h.example/x"; }', "webhooks[0].secret")]:
            from .daemon import Volleyd
            v = Volleyd(config="webhooks = ( %s );\n" % bad)
            self.addCleanup(v.cleanup)
            v.start(wait=False)
            self.assertTrue(util.wait_until(lambda: v.proc.poll() is not None, 10))
            self.assertNotEqual(v.proc.returncode, 0)
            self.assertIn(words, v.output())
