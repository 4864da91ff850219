"""End-to-end tests of the volley CLI (build/volley) against the real volleyd.

Every volley run is bounded (RUN_WAIT); every process a test starts is
stopped by PID in a cleanup; volleyd is started and stopped by daemon.py.
The daemon routes all mail to a closed loopback port, so nothing leaves the
machine and jobs stay undelivered (deferred) until a test cancels them.
"""

import http.server
import json
import os
import pty
import select
import signal
import socket
import subprocess
import threading
import time
import unittest

from . import util
from .daemon import VOLLEY, VOLLEYD, VolleydTest, simple_job

RUN_WAIT = 60.0         # bound on one volley run
LINE_WAIT = 15.0        # bound on waiting for one line of output
CSV_HEADER = "email,code,enhanced,bounce_class,text,reason\n"
HAVE_VOLLEYD = os.access(VOLLEYD, os.X_OK)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("VOLLEY_SOCKET", "VOLLEY_TOKEN")}
    env.update(extra or {})
    return env


def volley(*args, env=None, timeout=RUN_WAIT, input=None):
    """Run build/volley to its end; subprocess.run kills it on timeout."""
    return subprocess.run([VOLLEY, *args], capture_output=True, text=True,
                          env=clean_env(env), timeout=timeout, input=input)


def open_fifo_writer(path, timeout=LINE_WAIT):
    """The write end of a FIFO, once its reader has it open."""
    def try_open():
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None

    fd = util.wait_until(try_open, timeout)
    if fd is None:
        raise TimeoutError("no reader opened %s within %.0fs" % (path, timeout))
    return fd


def write_all(fd, data, timeout=RUN_WAIT):
    """Write everything to a non-blocking fd within timeout."""
    deadline = time.monotonic() + timeout
    while data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("reader stopped reading")
        if select.select([], [fd], [], left)[1]:
            data = data[os.write(fd, data):]


def vm_hwm_kb(pid):
    """Peak resident memory of a live process (of its program, not of the
    Python that forked it)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def csv_job():
    """A job whose template uses the CSV's columns first and city."""
    return {
        "envelope_sender": "bounces@news.example.com",
        "content": {
            "from": {"email": "news@example.com"},
            "subject": "Hello {{ first }}",
            "text_body": "Hi {{ first }}, news from {{ city }}.",
        },
        "campaign": "cli-test",
    }


# Quoted fields with commas, "" escapes and a line break; CRLF and LF ends.
QUOTED_CSV = ('email,name,first,city\r\n'
              'ann@example.net,"Smith, Ann","Ann ""the"" first","Paris\nFrance"\r\n'
              '\r\n'
              'bob@example.net,Bob,Bob,Rome\r\n'
              '"carl@example.net",,Carl,"Oslo, Norway"\n')
QUOTED_RCPTS = [
    {"email": "ann@example.net", "name": "Smith, Ann",
     "substitutions": {"first": 'Ann "the" first', "city": "Paris\nFrance"}},
    {"email": "bob@example.net", "name": "Bob",
     "substitutions": {"first": "Bob", "city": "Rome"}},
    {"email": "carl@example.net", "substitutions": {"first": "Carl", "city": "Oslo, Norway"}},
]


def stub_daemon(test, answers):
    """A loopback HTTP server answering GET path -> JSON from answers; its
    URL. Stopped by the test's cleanup."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(answers.get(self.path.split("?")[0], {})).encode()
            self.send_response(200 if self.path.split("?")[0] in answers else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    test.addCleanup(lambda: (srv.shutdown(), srv.server_close(), t.join(LINE_WAIT)))
    return "http://127.0.0.1:%d" % srv.server_address[1]


class TempDir:
    def make_dir(self):
        return util.tempdir("volley-cli-", cleanup=self.addCleanup)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(path, mode, **({} if mode == "wb" else
                                 {"newline": "", "encoding": "utf-8"})) as f:
            f.write(json.dumps(data) if isinstance(data, dict) else data)
        return path


class CliOfflineTest(unittest.TestCase, TempDir):
    """What needs no daemon: usage errors, exit 3, list conversion."""

    def setUp(self):
        self.dir = self.make_dir()
        self.sock = os.path.join(self.dir, "volley.sock")

    def assertUsage(self, r, *words):
        self.assertEqual(r.returncode, 2, r)
        self.assertTrue(r.stderr.startswith("volley: ") or "usage" in r.stderr, r)
        for w in words:
            self.assertIn(w, r.stderr)

    def test_usage_errors_exit_2(self):
        job = self.write("job.json", simple_job())
        self.assertUsage(volley())
        self.assertUsage(volley("frobnicate"), "frobnicate")
        self.assertUsage(volley("jobs", "--frob"), "--frob")
        self.assertUsage(volley("cancel"), "missing argument")
        self.assertUsage(volley("cancel", "a", "b"), "too many")
        self.assertUsage(volley("submit"), "missing argument")
        self.assertUsage(volley("jobs", "--wait"), "--wait")
        self.assertUsage(volley("status", "--watch"), "ID")
        self.assertUsage(volley("jobs", "--limit", "x"), "--limit")
        self.assertUsage(volley("events", "--job"), "--job")
        self.assertUsage(volley("--socket", "a", "--url", "http://b", "health"))
        self.assertUsage(volley("--socket", self.sock, "submit", job,
                                "--idempotency-key", "a\tb"), "idempotency")

    def test_help_and_version(self):
        r = volley("--help")
        self.assertEqual(r.returncode, 0, r)
        for cmd in ("submit", "status", "jobs", "cancel", "pause", "resume", "queues",
                    "events", "stats", "bounces", "health"):
            self.assertIn("volley " + cmd, r.stdout)
        r = volley("--version")
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout, r"^volley \d+\.\d+\.\d+\n$")

    def test_unreadable_files_exit_2_naming_them(self):
        missing = os.path.join(self.dir, "nope.json")
        self.assertUsage(volley("--socket", self.sock, "submit", missing), missing)
        bad = self.write("bad.json", "{\"envelope_sender\": ")
        self.assertUsage(volley("--socket", self.sock, "submit", bad), bad, "line")
        arr = self.write("arr.json", "[1, 2]")
        self.assertUsage(volley("--socket", self.sock, "submit", arr), arr, "object")
        job = self.write("job.json", simple_job())
        nolist = os.path.join(self.dir, "nope.csv")
        self.assertUsage(volley("--socket", self.sock, "submit", job, "--recipients", nolist),
                         nolist)
        txt = self.write("list.txt", "a@b.c\n")
        self.assertUsage(volley("--socket", self.sock, "submit", job, "--recipients", txt),
                         txt, ".csv")

    def test_csv_without_email_column_exit_2(self):
        job = self.write("job.json", csv_job())
        lst = self.write("list.csv", "mail,name\nann@example.net,Ann\n")
        r = volley("--socket", self.sock, "submit", job, "--recipients", lst)
        self.assertUsage(r, lst, "email")
        empty = self.write("empty.csv", "")
        self.assertUsage(volley("--socket", self.sock, "submit", job, "--recipients", empty),
                         empty, "header")

    def test_csv_converted_exactly(self):
        """--dry-run prints the NDJSON body: the job, then one recipient a line."""
        job = dict(csv_job(), recipients=[{"email": "inline@example.net",
                                           "substitutions": {"first": "I", "city": "X"}}])
        jp = self.write("job.json", job)
        lst = self.write("list.csv", "\ufeff" + QUOTED_CSV)
        r = volley("submit", jp, "--recipients", lst, "--dry-run")
        self.assertEqual(r.returncode, 0, r)
        lines = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual(lines[0], csv_job())
        # the name column is also a substitution, so {{ name }} works
        want = [dict(r, substitutions=dict({"name": r.get("name", "")}, **r["substitutions"]))
                for r in QUOTED_RCPTS]
        self.assertEqual(lines[1:], job["recipients"] + want)

    def test_csv_malformed_rows_exit_2(self):
        job = self.write("job.json", csv_job())
        for name, body, what in (
                ("extra.csv", "email,first\na@example.net,A\nb@example.net,B,oops\n", "line 3"),
                ("quote.csv", 'email,first\n"a@example.net,A\n', "never closed"),
                ("after.csv", 'email,first\n"a@example.net"x,A\n', "line 2"),
                ("utf8.csv", b"email,first\na@example.net,\xff\n", "UTF-8")):
            with self.subTest(name):
                lst = self.write(name, body)
                r = volley("submit", job, "--recipients", lst, "--dry-run")
                self.assertUsage(r, lst, what)

    def test_ndjson_list_passed_through(self):
        job = self.write("job.json", csv_job())
        body = "".join(json.dumps(x) + "\n" for x in QUOTED_RCPTS)
        lst = self.write("list.ndjson", body)
        r = volley("submit", job, "--recipients", lst, "--dry-run")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout, json.dumps(csv_job(), separators=(",", ":")) + "\n" + body)

    def test_no_daemon_exit_3_with_hint(self):
        r = volley("--data-dir", self.dir, "health")
        self.assertEqual(r.returncode, 3, r)
        self.assertEqual(r.stderr.count("\n"), 2, r)
        self.assertIn("cannot reach volleyd at %s: no such socket" % self.sock, r.stderr)
        self.assertIn("volleyd --data-dir %s" % self.dir, r.stderr)
        # where the daemon's log is, detached or under systemd
        self.assertIn("its log: %s/volleyd.log" % self.dir, r.stderr)
        self.assertIn("journalctl -u volleyd", r.stderr)
        r = volley("jobs", env={"VOLLEY_SOCKET": self.sock})
        self.assertEqual(r.returncode, 3, r)
        self.assertIn(self.sock, r.stderr)
        r = volley("--url", "http://127.0.0.1:%d" % util.free_port(), "stats")
        self.assertEqual(r.returncode, 3, r)
        self.assertIn("cannot reach volleyd", r.stderr)
        job = self.write("job.json", simple_job())
        r = volley("--socket", self.sock, "submit", job)
        self.assertEqual(r.returncode, 3, r)

    def test_stale_socket_says_connection_refused(self):
        """A socket file nobody listens on: a volleyd that stopped."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.sock)
        s.close()
        r = volley("--socket", self.sock, "jobs")
        self.assertEqual(r.returncode, 3, r)
        self.assertIn("cannot reach volleyd at %s: connection refused" % self.sock, r.stderr)
        self.assertIn("volleyd.log", r.stderr)

    def test_per_command_help(self):
        top = volley("--help").stdout
        self.assertIn("volley suppression list", top)
        for cmd in ("submit", "status", "jobs", "cancel", "pause", "resume", "queues",
                    "events", "stats", "bounces", "health", "suppression", "tls-check",
                    "tls-report"):
            with self.subTest(cmd):
                r = volley(cmd, "--help")
                self.assertEqual(r.returncode, 0, r)
                self.assertTrue(r.stdout.startswith("usage: volley %s" % cmd), r.stdout)
                self.assertNotEqual(r.stdout, top)
                self.assertEqual(r.stdout.count("usage:"), 1, r.stdout)
                self.assertEqual(volley("help", cmd).stdout, r.stdout)
        self.assertIn("--recipients", volley("submit", "--help").stdout)
        self.assertIn("import FILE", volley("suppression", "--help").stdout)
        for argv in (("dkim", "--help"), ("dkim", "keygen", "--help"), ("help", "dkim")):
            with self.subTest(argv):
                r = volley(*argv)
                self.assertEqual(r.returncode, 0, r)
                self.assertIn("usage: volley dkim keygen --domain D", r.stdout)
        self.assertUsage(volley("frobnicate", "--help"), "frobnicate")

    def test_suppression_usage(self):
        for argv, word in ((("suppression",), "missing argument"),
                           (("suppression", "frob"), "list, add, remove or import"),
                           (("suppression", "add"), "EMAIL"),
                           (("suppression", "import"), "FILE"),
                           (("suppression", "list", "x"), "no argument"),
                           (("suppression", "add", "a@b.c", "--limit", "2"), "--limit"),
                           (("jobs", "--limit", "2", "--recipients", "x.csv"), "--recipients")):
            with self.subTest(argv):
                self.assertUsage(volley("--socket", self.sock, *argv), word)
        missing = os.path.join(self.dir, "none.txt")
        self.assertUsage(volley("--socket", self.sock, "suppression", "import", missing), missing)

    def test_jobs_table_expired_column(self):
        """The EXPIRED column shows counts.expired (a stub daemon on --url)."""
        job = {"id": "j1", "state": "done", "recipients": 10, "created": "2026-01-01T00:00:00Z",
               "campaign": "c", "counts": {"queued": 0, "delivered": 3, "bounced": 1,
                                          "deferred": 0, "expired": 6}}
        url = stub_daemon(self, {"/v1/jobs": {"jobs": [job]}})
        r = volley("--url", url, "jobs")
        self.assertEqual(r.returncode, 0, r)
        head, row = r.stdout.splitlines()
        cells = dict(zip(head.split(), row.split()))
        self.assertEqual(cells["EXPIRED"], "6")
        self.assertEqual(cells["BOUNCED"], "1")
        end = head.index("EXPIRED") + len("EXPIRED")
        self.assertEqual(row[end - 1], "6")        # right-aligned under its header

    def test_default_socket_is_volley_data(self):
        r = subprocess.run([VOLLEY, "health"], capture_output=True, text=True,
                           env=clean_env(), cwd=self.dir, timeout=RUN_WAIT)
        self.assertEqual(r.returncode, 3, r)
        self.assertIn("volley-data/volley.sock", r.stderr)
        self.assertIn("volleyd --data-dir volley-data", r.stderr)


@unittest.skipUnless(HAVE_VOLLEYD, "no build/volleyd yet")
class CliDaemonTest(VolleydTest, TempDir):
    """The CLI against a running volleyd."""

    def setUp(self):
        self.dir = self.make_dir()
        # Every domain goes to a closed port: mail defers, nothing leaves.
        self.d = self.start_daemon(config='defaults = { route = "127.0.0.1:%d"; };\n'
                                   % util.free_port())

    def cli(self, *args, env=None, **kw):
        return volley("--socket", self.d.sock, *args, env=env, **kw)

    def ok(self, *args, **kw):
        r = self.cli(*args, **kw)
        self.assertEqual(r.returncode, 0, r)
        return r

    def submit(self, job=None, *args):
        path = self.write("job-%d.json" % time.monotonic_ns(), job or simple_job())
        r = self.ok("submit", path, "--json", *args)
        return json.loads(r.stdout)

    def job(self, jid):
        r = self.d.request("GET", "/v1/jobs/" + jid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def spawn(self, *args, env=None):
        p = util.start([VOLLEY, "--socket", self.d.sock, *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=clean_env(env))
        self.addCleanup(util.kill, p)
        return p

    def read_line(self, p):
        """One line of p's stdout, waiting at most LINE_WAIT."""
        line = b""
        deadline = time.monotonic() + LINE_WAIT
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "no line from volley within %.0fs: %r" % (LINE_WAIT, line))
            if select.select([p.stdout], [], [], left)[0]:
                ch = os.read(p.stdout.fileno(), 1)
                self.assertTrue(ch, "volley ended early: %r" % line)
                line += ch
        return line.decode()

    # ---- submitting ----

    def test_submit_json_prints_id(self):
        path = self.write("job.json", simple_job(3))
        r = self.ok("submit", path)
        jid = r.stdout.strip()
        self.assertRegex(jid, r"^\S+$")
        self.assertEqual(self.job(jid)["recipients"], 3)

    def test_submit_json_output(self):
        ans = self.submit(simple_job(4))
        self.assertEqual(ans["recipients"], 4)
        self.assertEqual(ans["fail_count"], 0)
        self.assertEqual(self.job(ans["id"])["recipients"], 4)

    def test_submit_duplicates_reported_on_stderr(self):
        job = simple_job(2)
        job["recipients"].append(dict(job["recipients"][0]))
        path = self.write("job.json", job)
        r = self.ok("submit", path)
        self.assertIn("1 recipient dropped", r.stderr)
        self.assertIn("duplicate", r.stderr)
        self.assertEqual(self.job(r.stdout.strip())["recipients"], 2)

    def test_submit_csv_quoted_fields(self):
        job = self.write("job.json", csv_job())
        lst = self.write("list.csv", QUOTED_CSV)
        r = self.ok("submit", job, "--recipients", lst, "--json")
        ans = json.loads(r.stdout)
        self.assertEqual(ans["recipients"], 3)
        rc = self.d.request("GET", "/v1/jobs/%s/recipients" % ans["id"])
        self.assertEqual(rc.status, 200, rc)
        self.assertEqual([x["email"] for x in rc.lines()],
                         ["ann@example.net", "bob@example.net", "carl@example.net"])

    def test_csv_line_break_reaches_the_daemon_as_a_value(self):
        """A quoted line break is one value: in the subject it is refused
        as header injection (exit 1), nothing is stored."""
        job = csv_job()
        job["content"]["subject"] = "From {{ city }}"
        jp = self.write("job.json", job)
        lst = self.write("list.csv", QUOTED_CSV)
        r = self.cli("submit", jp, "--recipients", lst)
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"^volley: .+\n")
        self.assertEqual(self.d.request("GET", "/v1/jobs").json()["jobs"], [])

    def test_csv_error_mid_stream_stores_nothing(self):
        job = self.write("job.json", csv_job())
        rows = "".join("u%d@example.net,U%d,C\n" % (i, i) for i in range(5000))
        lst = self.write("list.csv", "email,first,city\n" + rows + "x@example.net,X\n")
        r = self.cli("submit", job, "--recipients", lst)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("line 5002", r.stderr)
        time.sleep(0.2)
        self.assertEqual(self.d.request("GET", "/v1/jobs").json()["jobs"], [])
        self.assertEqual(self.d.jobs_on_disk(), [])

    def test_daemon_refuses_a_row_of_a_big_list(self):
        """The daemon's 400 for line 4 of a 50,000-row upload: exit 1 with
        its message, not a broken connection; nothing stored."""
        job = self.write("job.json", csv_job())
        rows = "".join("u%d@example.net,U%d,C\n" % (i, i) for i in range(50000))
        lst = self.write("list.csv", "email,first,city\na@example.net,A,C\nb@example.net,B,C\n"
                         "not-an-address,X,C\n" + rows)
        r = self.cli("submit", job, "--recipients", lst)
        self.assertEqual(r.returncode, 1, r)
        self.assertRegex(r.stderr, r"^volley: .*line 4\b.*\n$")
        self.assertEqual(self.d.request("GET", "/v1/jobs").json()["jobs"], [])

    def test_submit_ndjson_list_after_inline_recipients(self):
        job = dict(csv_job(), recipients=[{"email": "inline%d@example.net" % i,
                                           "substitutions": {"first": "I", "city": "X"}}
                                          for i in range(2)])
        jp = self.write("job.json", job)
        lst = self.write("list.ndjson", "".join(json.dumps(x) + "\n" for x in QUOTED_RCPTS))
        ans = json.loads(self.ok("submit", jp, "--recipients", lst, "--json").stdout)
        self.assertEqual(ans["recipients"], 5)

    def test_big_csv_streamed(self):
        """20,000 recipients (5 MB) through a FIFO: volley sends while the
        list is still being written, and its memory does not grow with it."""
        job = self.write("job.json", csv_job())
        fifo = os.path.join(self.dir, "big.csv")
        os.mkfifo(fifo)
        # Under ASan, freed memory would sit in quarantine and look like growth.
        asan = os.environ.get("ASAN_OPTIONS", "")
        p = self.spawn("submit", job, "--recipients", fifo, "--json",
                       env={"ASAN_OPTIONS": asan + (":" if asan else "") + "quarantine_size_mb=0"})
        bio = "x" * 200
        rows = ['"user%d@d%d.example.net","User, %d",U%d,City %d,%s\n' % (i, i % 97, i, i, i, bio)
                for i in range(20000)]
        fd = open_fifo_writer(fifo)
        try:
            write_all(fd, ("email,name,first,city,bio\n" + "".join(rows[:2000])).encode())
            time.sleep(0.5)
            before = vm_hwm_kb(p.pid)
            write_all(fd, "".join(rows[2000:]).encode())
            time.sleep(0.5)
            after = vm_hwm_kb(p.pid)
        finally:
            os.close(fd)
        out, err = p.communicate(timeout=RUN_WAIT)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(json.loads(out)["recipients"], 20000)
        self.assertLess(after - before, 2048, "peak RSS %d KB, then %d KB" % (before, after))

    def test_idempotency_key(self):
        path = self.write("job.json", simple_job())
        a = self.ok("submit", path, "--idempotency-key", "cli-key-1")
        b = self.ok("submit", path, "--idempotency-key", "cli-key-1")
        self.assertEqual(a.stdout, b.stdout)
        self.assertIn("idempotency key", b.stderr)
        self.assertEqual(len(self.d.request("GET", "/v1/jobs").json()["jobs"]), 1)

    def test_daemon_error_exit_1_with_field(self):
        job = simple_job(3)
        job["recipients"][1]["email"] = "not-an-address"
        path = self.write("job.json", job)
        r = self.cli("submit", path)
        self.assertEqual(r.returncode, 1, r)
        self.assertTrue(r.stderr.startswith("volley: recipients[1].email"), r)
        r = self.cli("status", "no-such-job")
        self.assertEqual(r.returncode, 1, r)
        self.assertTrue(r.stderr.startswith("volley: "), r)

    # ---- looking ----

    def test_health(self):
        r = self.ok("health")
        self.assertTrue(r.stdout.startswith("ok"), r)
        h = json.loads(self.ok("health", "--json").stdout)
        self.assertEqual(h["status"], "ok")

    def test_jobs_table_and_json(self):
        ids = [self.submit(simple_job(n, campaign="camp-%d" % n))["id"] for n in (1, 2)]
        r = self.ok("jobs")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "STATE", "RECIPIENTS", "QUEUED", "DELIVERED",
                                            "BOUNCED", "DEFERRED", "EXPIRED", "CREATED",
                                            "CAMPAIGN"])
        rows = {l.split()[0]: l.split() for l in lines[1:]}
        self.assertEqual(set(rows), set(ids))
        self.assertEqual(rows[ids[1]][2], "2")
        self.assertEqual(rows[ids[1]][-1], "camp-2")
        # aligned: every row's STATE starts in the header's column
        col = lines[0].index("STATE")
        self.assertTrue(all(l[col - 2:col] == "  " and l[col] != " " for l in lines[1:]), lines)
        self.assertEqual(self.ok("status").stdout, r.stdout)
        js = [json.loads(l) for l in self.ok("jobs", "--json").stdout.splitlines()]
        self.assertEqual([j["id"] for j in js], ids[::-1])
        self.assertEqual(len(self.ok("jobs", "--limit", "1", "--json").stdout.splitlines()), 1)

    def test_status_of_a_job(self):
        jid = self.submit(simple_job(3, campaign="fall"))["id"]
        r = self.ok("status", jid)
        kv = dict(l.split(None, 1) for l in r.stdout.splitlines())
        self.assertEqual(kv["id"], jid)
        self.assertEqual(kv["recipients"], "3")
        self.assertEqual(kv["campaign"], "fall")
        self.assertIn(kv["state"], ("active", "paused", "done"))
        j = json.loads(self.ok("status", jid, "--json").stdout)
        self.assertEqual(j["id"], jid)
        self.assertEqual(j["recipients"], 3)

    def test_queues_stats_events(self):
        self.submit()
        for cmd in ("queues", "stats", "events"):
            with self.subTest(cmd):
                self.ok(cmd)
                for line in self.ok(cmd, "--json").stdout.splitlines():
                    json.loads(line)

    def test_bounces_csv_header(self):
        jid = self.submit()["id"]
        r = self.ok("bounces", jid)
        self.assertTrue(r.stdout.startswith(CSV_HEADER), r)
        r = self.cli("bounces", "no-such-job")
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stdout, "")

    # ---- suppression ----

    def test_suppression_add_list_remove_import(self):
        self.assertEqual(self.ok("suppression", "add", "ann@Example.NET").stdout,
                         "ann@Example.NET suppressed\n")
        self.assertEqual(self.d.request("GET", "/v1/suppression/ann@example.net").status, 200)
        lst = self.write("list.txt", "# bounced last year\nbob@example.net\n\n"
                         "  carl@example.net  \nnot-an-address\ndan@example.net\n")
        r = self.cli("suppression", "import", lst)
        self.assertEqual(r.returncode, 1, r)          # one line failed
        self.assertEqual(r.stdout, "3 added, 1 failed (%s, 6 lines read)\n" % lst)
        self.assertIn("%s: line 5: not-an-address not added" % lst, r.stderr)
        r = self.ok("suppression", "list")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["EMAIL", "REASON", "JOB", "ADDED"])
        emails = [l.split()[0] for l in lines[1:]]
        self.assertEqual(len(emails), 4, r.stdout)
        for e in ("bob@example.net", "carl@example.net", "dan@example.net"):
            self.assertIn(e, emails)
        js = [json.loads(l) for l in self.ok("suppression", "list", "--json").stdout.splitlines()]
        self.assertEqual(len(js), 4)
        self.assertEqual(len(self.ok("suppression", "list", "--limit", "2").stdout.splitlines()), 3)
        self.assertEqual(self.ok("suppression", "remove", "bob@example.net").stdout,
                         "bob@example.net removed\n")
        self.assertEqual(self.d.request("GET", "/v1/suppression/bob@example.net").status, 404)
        r = self.cli("suppression", "remove", "bob@example.net")
        self.assertEqual(r.returncode, 1, r)          # not on the list any more
        r = self.cli("suppression", "add", "no-at-sign")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("email", r.stderr)
        r = self.ok("suppression", "add", "eve@example.net", "--json")
        self.assertEqual(json.loads(r.stdout), {"email": "eve@example.net", "suppressed": True})
        r = self.cli("suppression", "import", "-", input="fay@example.net\n")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(self.d.request("GET", "/v1/suppression/fay@example.net").status, 200)

    def test_suppression_list_pages(self):
        """More addresses than one page of the API: every one listed, once."""
        n = 1203
        lst = self.write("many.txt", "".join("u%04d@example.org\n" % i for i in range(n)))
        r = self.cli("suppression", "import", lst, timeout=120)
        self.assertEqual(r.returncode, 0, r)
        emails = [json.loads(l)["email"]
                  for l in self.ok("suppression", "list", "--json").stdout.splitlines()]
        self.assertEqual(len(emails), n)
        self.assertEqual(len(set(emails)), n)
        self.assertEqual(len(self.ok("suppression", "list", "--json", "--limit", "1100")
                             .stdout.splitlines()), 1100)

    # ---- control ----

    def test_pause_resume_cancel(self):
        jid = self.submit()["id"]
        self.assertEqual(self.ok("pause", jid).stdout, "%s paused\n" % jid)
        self.assertEqual(self.job(jid)["state"], "paused")
        self.assertEqual(self.ok("resume", jid).stdout, "%s active\n" % jid)
        self.assertEqual(self.job(jid)["state"], "active")
        j = json.loads(self.ok("cancel", jid, "--json").stdout)
        self.assertEqual(j["state"], "cancelled")
        for cmd in ("resume", "pause"):
            r = self.cli(cmd, jid)
            self.assertEqual(r.returncode, 1, r)
            self.assertRegex(r.stderr, r"^volley: .+\n$")
        r = self.cli("cancel", "no-such-job")
        self.assertEqual(r.returncode, 1, r)

    def test_wait_ends_when_cancelled_elsewhere(self):
        path = self.write("job.json", simple_job(5))
        p = self.spawn("submit", path, "--wait")
        jid = self.read_line(p).strip()
        time.sleep(0.6)
        self.assertIsNone(p.poll(), "--wait ended before the job was done")
        self.ok("cancel", jid)
        out, err = p.communicate(timeout=LINE_WAIT)
        self.assertEqual(p.returncode, 0, err)
        last = out.decode().splitlines()[-1]
        self.assertIn("job %s done (cancelled)" % jid, last)
        self.assertIn("5 recipients", last)

    def test_wait_interrupted_leaves_the_job(self):
        path = self.write("job.json", simple_job(2))
        p = self.spawn("submit", path, "--wait")
        jid = self.read_line(p).strip()
        self.read_line(p)           # the first progress line: it is waiting
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=LINE_WAIT)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn(b"stopped waiting", err)
        self.assertFalse(self.job(jid)["state"] == "cancelled")

    def test_watch_draws_a_bar_on_a_terminal(self):
        jid = self.submit(simple_job(4))["id"]
        self.ok("cancel", jid)
        master, slave = pty.openpty()
        p = util.start([VOLLEY, "--socket", self.d.sock, "status", jid, "--watch"],
                       stdout=slave, stderr=slave, env=clean_env())
        os.close(slave)
        self.addCleanup(util.kill, p)
        out = b""
        deadline = time.monotonic() + LINE_WAIT
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        os.close(master)
        self.assertEqual(p.wait(LINE_WAIT), 0, out)
        text = out.decode()
        self.assertIn("\r[", text)
        self.assertIn("100.0%", text)
        self.assertIn("done (cancelled)", text)

    def test_events_follow_until_interrupted(self):
        jid = self.submit()["id"]
        p = self.spawn("events", "-f", "--job", jid)
        time.sleep(1.0)
        self.assertIsNone(p.poll(), "events -f ended by itself")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=LINE_WAIT)
        self.assertEqual(p.returncode, 130, err)

    # ---- addressing the daemon ----

    def test_socket_from_data_dir_and_env(self):
        r = volley("--data-dir", self.d.data_dir, "health")
        self.assertEqual(r.returncode, 0, r)
        r = volley("health", env={"VOLLEY_SOCKET": self.d.sock})
        self.assertEqual(r.returncode, 0, r)


@unittest.skipUnless(HAVE_VOLLEYD, "no build/volleyd yet")
class CliTcpTest(VolleydTest):
    """--url and --token against api.listen."""

    def test_url_with_token(self):
        port = util.free_port()
        self.start_daemon(config='api = { listen = "127.0.0.1:%d"; token = "s3cret"; };\n'
                          % port)
        url = "http://127.0.0.1:%d" % port
        r = volley("--url", url, "--token", "s3cret", "health")
        self.assertEqual(r.returncode, 0, r)
        r = volley("--url", url + "/", "health", env={"VOLLEY_TOKEN": "s3cret"})
        self.assertEqual(r.returncode, 0, r)
        r = volley("--url", url, "--token", "wrong", "health")
        self.assertEqual(r.returncode, 1, r)
        self.assertTrue(r.stderr.startswith("volley: "), r)
        r = volley("--url", url, "jobs")
        self.assertEqual(r.returncode, 1, r)


if __name__ == "__main__":
    unittest.main()
