"""The web console in a real browser: headless Chromium (tests/e2e/cdp.py)
on volleyd's TCP listener, with a token, while volleyd delivers a
50,000-recipient job to volley-sink and a second sink answers 421.

Checked: the overview chart updates, the job's progress reaches 100 %, the
queues page shows the back-off reason, the job's events view shows new
events without a reload, a wrong token is refused (the page says so, the
API answered 401), and every request the page made went to volleyd's own
origin. Screenshots: build/console-shots/ (docs/console.md links them).
"""

import json
import os
import unittest

from . import cdp, util
from .daemon import Volleyd, simple_job
from .sinkctl import Sink

TOKEN = "console-test-token"
SHOTS = os.path.join(util.REPO, "build", "console-shots")
BIG = 50000
BIG_RATE = "4000/s"     # about 12 s of delivery: the chart is sampled meanwhile
BUSY_REPLY = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail"


def job(n, domain, **extra):
    """n recipients at domain, the same message for all (shared transactions)."""
    j = simple_job(0, **extra)
    j["content"]["subject"] = "Hello"
    j["content"]["text_body"] = "Hi, the {{ campaign }} issue is out."
    j["recipients"] = [{"email": "u%d@%s" % (i, domain)} for i in range(n)]
    return j


@unittest.skipIf(cdp.missing(), cdp.missing() or "")
class ConsoleBrowser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ok = Sink("--tls", maildir=False).start()
        cls.addClassCleanup(cls.ok.stop)
        cls.busy = Sink("--tls", "--reply", "rcpt:*=" + BUSY_REPLY, maildir=False,
                        hosts=("127.0.0.2",)).start()
        cls.addClassCleanup(cls.busy.stop)
        port = util.free_port()
        cls.origin = "http://127.0.0.1:%d" % port
        cls.d = Volleyd(config=(
            'api = { listen = "127.0.0.1:%d"; token = "%s"; };\n'
            'domains = ( { match = "*.ok.test"; route = "%s"; tls = "encrypt"; },\n'
            '  { match = "busy.test"; route = "%s"; tls = "encrypt"; } );\n'
            'defaults = { retry = [ "1s" ]; };\n'
            % (port, TOKEN, cls.ok.route(), cls.busy.route())))
        cls.addClassCleanup(cls.d.cleanup)
        cls.d.start()
        cls.big = cls.submit(job(BIG, "big.ok.test", campaign="big", rate_limit=BIG_RATE))
        cls.submit(job(10, "busy.test", campaign="busy"))
        cls.b = cdp.Browser()
        cls.addClassCleanup(cls.b.close)

    @classmethod
    def submit(cls, j):
        r = cls.d.submit(j, timeout=60)
        if r.status != 202:
            raise AssertionError("job refused: %r" % r)
        return r.json()["id"]

    def setUp(self):
        self.login()

    # -- helpers -----------------------------------------------------------
    def go(self, route):
        """Open a route (a hash change on the page once it is loaded)."""
        view = {"#/": "overview", "#/queues": "queues"}.get(route, "job")
        self.b.navigate(self.origin + "/console/" + route)
        self.b.wait_for("document.body.dataset.view === %s" % json.dumps(view),
                        what="the %s view" % view)
        if view == "job":
            self.b.wait_for("document.getElementById('job-id').textContent === %s"
                            % json.dumps(route.rsplit("/", 1)[1]), what="the job's data")

    def login(self):
        """The console open with the right token (asked once a tab)."""
        if not self.b.evaluate("location.href").startswith(self.origin):
            self.go("#/")
        dialog = "document.getElementById('token-dialog').open"
        loaded = "document.getElementById('status').dataset.state === 'ok'"
        if self.b.wait_for("%s || %s" % (dialog, loaded), 10, "the token dialog or the data") \
                and self.b.evaluate(dialog):
            self.b.fill("#token-input", TOKEN)
            self.b.click("#token-submit")
        self.b.wait_for("!%s && %s" % (dialog, loaded), 10, "the console to load with the token")

    def shot(self, name):
        path = self.b.screenshot(os.path.join(SHOTS, name))
        self.assertGreater(os.path.getsize(path), 5000, path)

    def text(self, selector):
        return self.b.evaluate("document.querySelector(%s).innerText" % json.dumps(selector))

    # -- the checks ----------------------------------------------------------
    # test_N_: in this order (unittest sorts by name), each also alone
    def test_1_overview_chart_updates_while_delivering(self):
        self.go("#/")
        chart = "document.getElementById('chart-history')"
        bar = "document.querySelector('#jobs-table progress[data-job-id=\"%s\"]')" % self.big
        # state.hist: the page's per-second history the chart draws
        sample = ("[+%s.dataset.end, %s.toDataURL(), state.hist.delivered.reduce((a, b) => a + b, 0),"
                  " %s ? %s.value : -1]" % (chart, chart, bar, bar))
        self.b.wait_for("+%s.dataset.max > 100" % chart, 20, "deliveries in the chart")
        end, image, total, progress = self.b.evaluate(sample)
        self.assertLess(progress, 1, "the job was done before the first sample")
        self.b.wait_for("(s => s[0] > %d && s[1] !== %s && s[2] > %d && s[3] > %r)(%s)"
                        % (end, json.dumps(image), total, progress, sample),
                        8, "the chart and the job's progress to grow")
        self.assertIn(self.big, self.text("#jobs-table"))
        self.assertEqual(self.b.evaluate("+%s.dataset.seconds" % chart), 3600)
        self.shot("overview.png")

    def test_2_job_progress_reaches_100_percent(self):
        self.go("#/job/" + self.big)
        self.b.wait_for("document.getElementById('job-progress').value === 1", 40,
                        "the job's progress to reach 100 %")
        j = self.d.request("GET", "/v1/jobs/" + self.big).json()
        self.assertTrue(j["done"], j)
        self.assertEqual(j["counts"]["delivered"], BIG, j)
        self.b.wait_for("document.querySelector('#job-counters [data-key=delivered] dd')"
                        ".textContent === '50,000'", 5, "50,000 delivered on the page")
        self.assertEqual(self.text("#job-state"), "done")
        self.shot("job.png")
        # the overview's row says the same
        self.go("#/")
        self.b.wait_for("(document.querySelector('#jobs-table progress[data-job-id=\"%s\"]') || {})"
                        ".value === 1" % self.big, 5, "the overview's progress bar")

    def test_3_queues_page_shows_the_back_off_reason(self):
        self.go("#/queues")
        row = "document.querySelector('#queues-table tr[data-site=\"%s\"]')" % self.busy.route()
        self.b.wait_for("%s && %s.dataset.backoff !== 'none'" % (row, row), 20,
                        "the busy site's back-off")
        cell = self.b.evaluate("%s.querySelector('.backoff').textContent" % row)
        self.assertIn("4.7.28", cell)
        self.assertIn("suspended", cell)
        ok = self.b.evaluate("document.querySelector('#queues-table tr[data-site=\"%s\"]')"
                             ".dataset.backoff" % self.ok.route())
        self.assertEqual(ok, "none")
        self.shot("queues.png")

    def test_4_events_view_shows_new_events_without_reload(self):
        # a job that trickles, 2 a second for 20 s: events keep coming
        jid = self.submit(job(40, "slow.ok.test", campaign="slow", rate_limit="2/s"))
        self.go("#/job/" + jid)
        self.b.evaluate("window.__sameDocument = true")
        rows = "document.querySelectorAll('#job-events tbody tr')"
        # rows of this job only (the table may still hold the last job's)
        n = self.b.wait_for("(r => r.length && [...r].every(e => e.innerText.includes("
                            "'@slow.ok.test')) && r.length)(%s)" % rows, 10, "a first event")
        rows += ".length"
        self.b.wait_for("%s > %d" % (rows, n), 10, "more events")
        self.assertTrue(self.b.evaluate("window.__sameDocument === true"), "the page reloaded")
        self.assertEqual(self.b.evaluate("document.getElementById('events-live').dataset.state"), "on")
        self.assertIn("Delivery", self.text("#job-events"))
        self.assertIn("@slow.ok.test", self.text("#job-events"))

    def test_5_wrong_token_is_refused(self):
        self.b.evaluate("sessionStorage.clear()")
        self.b.send("Page.reload", {"ignoreCache": True})
        self.b.wait_for("document.getElementById('token-dialog').open", 10, "the token dialog")
        seen = len(self.b.responses)
        self.b.fill("#token-input", "not-the-token")
        self.b.click("#token-submit")
        self.b.wait_for("!document.getElementById('token-error').hidden && "
                        "document.getElementById('token-dialog').open", 10, "the refusal")
        self.b.pump()
        refused = [u for u, s in self.b.responses[seen:] if s == 401 and "/v1/" in u]
        self.assertTrue(refused, self.b.responses[seen:])
        self.assertIsNone(self.b.evaluate("sessionStorage.getItem('volley.token')"))
        self.shot("token.png")
        self.login()

    def test_6_every_request_is_to_volleyd(self):
        """The network log of the session (all of it when the tests ran before)."""
        for route in ("#/", "#/queues", "#/job/" + self.big):
            self.go(route)
            self.b.wait_for("document.getElementById('status').dataset.state === 'ok'", 10)
        self.b.pump()
        urls = self.b.requests
        for want in ("/console/app.js", "/console/app.css", "/v1/stats/history", "/v1/queues"):
            self.assertTrue(any(want in u for u in urls), (want, urls[:20]))
        outside = [u for u in urls if not u.startswith(self.origin + "/")]
        self.assertEqual(outside, [])
        self.assertEqual(self.b.console, [])
