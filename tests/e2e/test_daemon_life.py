"""volleyd's life as an operator sees it: a detached start that tells the
truth (the exit code and the reason on stderr), --check-config refusing
what the start refuses, --version of every program, sd_notify readiness,
SIGHUP reloading the configuration (a bad file refused, the old one kept),
SIGUSR1 reopening the log after logrotate's rename, log.level, storage
errors logged with their path and errno, the pid file gone after a clean
stop. Every wait is bounded; every process is stopped by its PID."""

import os
import re
import signal
import socket
import subprocess
import time
import unittest

from . import util
from .daemon import VOLLEYD, Volleyd, VolleydTest, simple_job
from .sinkctl import Sink

PROGRAMS = ("volleyd", "volley", "volley-sink", "volley-bench", "volley-drive",
            "volley-blast", "volley-render-bench", "volley-dkim-bench",
            "volley-submitlog-bench", "volley-submit", "volley-logput")
NO_DNS = 'dns = { servers = [ "127.0.0.1:9" ]; };\n'


def route_to(sink, domain="*.test"):
    return ('domains = ( { match = "%s"; route = "%s"; tls = "none"; } );\n'
            'defaults = { retry = [ "1s" ]; };\n' % (domain, sink.route()))


def alive(pid):
    st = util._proc_stat(pid)
    return st is not None and st[0] != "Z"


class Detached(VolleydTest):
    """volleyd without --foreground: the parent's exit code is the verdict."""

    def setUp(self):
        self.dir = util.tempdir("volleyd-life-", cleanup=self.addCleanup)
        self.data = os.path.join(self.dir, "data")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def detach(self, config="", data=None, env=None):
        """Run volleyd detached; (exit code, stderr). A daemon it leaves is
        stopped at cleanup by the PID in its pid file."""
        data = data or self.data
        conf = self.write("volley.conf", NO_DNS + config)
        r = subprocess.run([VOLLEYD, "--config", conf, "--data-dir", data],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, **(env or {})))
        pid = self.pid_of(data)
        if pid:
            self.addCleanup(self.stop_pid, pid)
        return r.returncode, r.stderr

    @staticmethod
    def pid_of(data):
        try:
            with open(os.path.join(data, "volleyd.pid")) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def stop_pid(self, pid, sig=signal.SIGTERM):
        if not alive(pid):
            return
        os.kill(pid, sig)
        if not util.wait_until(lambda: not alive(pid), 15):
            os.kill(pid, signal.SIGKILL)
            util.wait_until(lambda: not alive(pid), 5)

    def health(self, data=None):
        d = Volleyd(data_dir=data or self.data)
        return d.request("GET", "/v1/health", timeout=5).status

    def log(self, data=None):
        with open(os.path.join(data or self.data, "volleyd.log"), errors="replace") as f:
            return f.read()

    def test_start_ready_then_clean_stop_removes_the_pid_file(self):
        rc, err = self.detach()
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        pid = self.pid_of(self.data)
        self.assertTrue(pid and alive(pid), pid)
        self.assertEqual(self.health(), 200)    # ready when the parent returned
        # the file has timestamps; the daemon says which version runs
        self.assertRegex(self.log(), r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info: "
                         r"volleyd \S+: ready")
        self.stop_pid(pid)
        self.assertFalse(os.path.exists(os.path.join(self.data, "volleyd.pid")))
        self.assertIn("volleyd: stopped", self.log())

    def test_missing_dkim_key_fails_with_the_reason(self):
        missing = os.path.join(self.dir, "nope.pem")
        rc, err = self.detach('dkim = ( { domain = "example.com"; selector = "s1"; '
                              'key = "%s"; } );\n' % missing)
        self.assertEqual(rc, 1)
        self.assertIn("dkim[0] (example.com, selector s1)", err)
        self.assertIn(missing, err)
        self.assertFalse(os.path.exists(os.path.join(self.data, "volleyd.pid")))

    def test_bad_socket_path_fails_with_the_reason(self):
        sock = os.path.join(self.dir, "no-such-dir", "volley.sock")
        rc, err = self.detach('api = { socket = "%s"; };\n' % sock)
        self.assertEqual(rc, 1)
        self.assertIn("api.socket %s" % sock, err)
        self.assertIn("is not a directory", err)

    def test_second_daemon_on_the_same_data_dir_fails(self):
        os.makedirs(self.data)
        first = self.start_daemon(data_dir=self.data)
        rc, err = self.detach()
        self.assertEqual(rc, 1)
        self.assertIn("another volleyd runs on this data dir", err)
        self.assertEqual(first.request("GET", "/v1/health").status, 200)

    def test_failure_after_the_fork_reaches_the_parent(self):
        # the TCP listener's port is taken: only the daemon itself finds out
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, err = self.detach('api = { listen = "127.0.0.1:%d"; token = "t"; };\n' % port)
        self.assertEqual(rc, 1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, err)
        self.assertIn("Address already in use", err)
        self.assertIn("Address already in use", self.log())   # and in the log
        self.assertFalse(os.path.exists(os.path.join(self.data, "volleyd.pid")))

    def test_sigusr1_reopens_the_log_after_a_rename(self):
        rc, err = self.detach()
        self.assertEqual(rc, 0, err)
        pid = self.pid_of(self.data)
        log = os.path.join(self.data, "volleyd.log")
        os.rename(log, log + ".1")              # what logrotate does
        os.kill(pid, signal.SIGUSR1)
        self.assertTrue(util.wait_until(lambda: os.path.exists(log) and
                                        "log file reopened" in self.log(), 10),
                        "no new log file")
        self.stop_pid(pid)
        with open(log + ".1") as f:
            old = f.read()
        self.assertIn("ready", old)
        self.assertNotIn("stopped", old)
        self.assertIn("volleyd: stopped", self.log())

    def test_log_level_and_file(self):
        path = os.path.join(self.dir, "elsewhere.log")
        rc, err = self.detach('log = { file = "%s"; level = "warn"; };\n' % path)
        self.assertEqual(rc, 0, err)
        self.stop_pid(self.pid_of(self.data))
        self.assertFalse(os.path.exists(os.path.join(self.data, "volleyd.log")))
        with open(path) as f:
            text = f.read()
        self.assertNotIn("info:", text)          # "ready" and "stopped" are info
        rc, err = self.detach('log = { file = "%s"; level = "info"; };\n' % path)
        self.assertEqual(rc, 0, err)
        self.stop_pid(self.pid_of(self.data))
        with open(path) as f:
            self.assertIn("info: volleyd: stopped", f.read())


class CheckConfig(unittest.TestCase):
    def check(self, text):
        d = util.tempdir("volley-conf-", cleanup=self.addCleanup)
        path = os.path.join(d, "volley.conf")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([VOLLEYD, "--check-config", "--config", path,
                               "--data-dir", os.path.join(d, "data")],
                              capture_output=True, text=True, timeout=10)

    def test_listen_without_token_refused(self):
        r = self.check('api = { listen = "127.0.0.1:8025"; };\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn("api.listen: needs api.token", r.stderr)
        self.assertIn("volley.conf:1:", r.stderr)
        r = self.check('api = { listen = "127.0.0.1:8025"; token = "t"; };\n')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_listen_not_an_address_refused(self):
        r = self.check('api = { listen = "localhost:8025"; token = "t"; };\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn("api.listen: the host must be an IP address", r.stderr)

    def test_start_checks_run_too(self):
        r = self.check('api = { socket = "/nonexistent-volley/x.sock"; };\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent-volley is not a directory", r.stderr)
        r = self.check('bounce_rules = "/nonexistent-volley/rules";\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent-volley/rules", r.stderr)

    def test_log_group(self):
        r = self.check('log = { level = "loud"; };\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn("log.level: expected error, warn, info or debug", r.stderr)
        # syslog is checked by configuration only: the test machine's
        # /dev/log is not the tests' to take over
        r = self.check('log = { file = "/var/log/v.log"; syslog = true; level = "debug"; };\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('log = {\n  file = "/var/log/v.log";\n  syslog = true;\n'
                      '  level = "debug";\n};', r.stdout)


class Version(unittest.TestCase):
    def test_every_program(self):
        want = re.escape(open(os.path.join(util.REPO, "common", "common.h")).read()
                         .split('#define VL_VERSION "')[1].split('"')[0])
        for name in PROGRAMS:
            r = subprocess.run([util.build_path(name), "--version"], capture_output=True,
                               text=True, timeout=10)
            self.assertEqual(r.returncode, 0, (name, r.stderr))
            self.assertRegex(r.stdout, r"^%s %s\n$" % (re.escape(name), want))


class Running(VolleydTest):
    """A foreground volleyd: notify, reload, plain log lines, storage errors."""

    def notify_socket(self, abstract=False):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = "@volley-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            s.bind("\0" + name[1:])
        else:
            name = os.path.join(util.tempdir("volley-notify-", cleanup=self.addCleanup),
                                "notify")
            s.bind(name)
        s.settimeout(10)
        return s, name

    def test_sd_notify_ready_reload_stopping(self):
        s, name = self.notify_socket()
        d = self.start_daemon(config=NO_DNS, env={"NOTIFY_SOCKET": name})
        msg = s.recv(512).decode()
        self.assertIn("READY=1", msg)
        self.assertIn("MAINPID=%d" % d.proc.pid, msg)
        d.proc.send_signal(signal.SIGHUP)
        self.assertEqual(s.recv(512), b"RELOADING=1")
        self.assertEqual(s.recv(512), b"READY=1")
        d.stop()
        self.assertEqual(s.recv(512), b"STOPPING=1")

    def test_sd_notify_abstract_socket(self):
        s, name = self.notify_socket(abstract=True)
        self.start_daemon(config=NO_DNS, env={"NOTIFY_SOCKET": name})
        self.assertIn("READY=1", s.recv(512).decode())

    def test_foreground_lines_are_plain_and_journald_gets_priorities(self):
        d = self.start_daemon(config=NO_DNS)
        self.assertRegex(d.output(), r"(?m)^info: volleyd \S+: ready")
        d.stop()
        j = self.start_daemon(config=NO_DNS, env={"JOURNAL_STREAM": "8:1234"})
        self.assertRegex(j.output(), r"(?m)^<6>info: volleyd \S+: ready")

    def test_pid_file_gone_after_clean_stop(self):
        d = self.start_daemon(config=NO_DNS)
        pidfile = os.path.join(d.data_dir, "volleyd.pid")
        with open(pidfile) as f:
            self.assertEqual(int(f.read()), d.proc.pid)
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(pidfile))

    def sink(self):
        s = Sink().start()
        self.addCleanup(s.stop)
        return s

    def reload(self, d, text, expect):
        with open(os.path.join(d.data_dir, "volley.conf"), "w") as f:
            f.write(NO_DNS + text)
        seen = d.output().count(expect)
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(util.wait_until(lambda: d.output().count(expect) > seen, 10),
                        "no %r in %s" % (expect, d.output()))

    def test_sighup_reloads_domain_rules_and_refuses_a_bad_file(self):
        a, b = self.sink(), self.sink()
        d = self.start_daemon(config=NO_DNS + route_to(a))
        self.wait_done(d, d.submit(simple_job(2, domain="r.test")).json()["id"])
        self.assertEqual(len(a.new_messages(2, wait=10)), 2)
        # a route to the second sink: new mail goes there
        self.reload(d, route_to(b) + "workers = 3;\n", "volleyd: configuration reloaded")
        self.assertIn("workers changed: needs a restart", d.output())
        self.wait_done(d, d.submit(simple_job(3, domain="r.test")).json()["id"])
        self.assertEqual(len(b.new_messages(3, wait=10)), 3)
        # a file that does not parse: refused, logged, the running one stays
        self.reload(d, route_to(a) + "domains = oops;\n", "reload refused")
        self.assertRegex(d.output(), r"reload refused: .*volley\.conf:\d+: .*the running "
                         r"configuration stays")
        # ... and one that parses but whose DKIM key does not load
        self.reload(d, route_to(a) + 'dkim = ( { domain = "example.com"; selector = "s"; '
                    'key = "/nonexistent-volley.pem"; } );\n', "/nonexistent-volley.pem")
        self.assertIn("reload refused: dkim[0]", d.output())
        self.wait_done(d, d.submit(simple_job(4, domain="r.test")).json()["id"])
        self.assertEqual(len(b.new_messages(4, wait=10)), 4)   # new ones since
        self.assertEqual(a.new_messages(1, wait=0.5), [])

    def test_sighup_applies_the_log_level(self):
        d = self.start_daemon(config=NO_DNS)
        self.reload(d, 'log = { level = "debug"; };\n', "configuration reloaded")
        self.reload(d, 'log = { level = "error"; };\n', "SIGHUP: reloading")
        time.sleep(0.3)
        self.assertEqual(d.output().count("configuration reloaded"), 1)  # info: quiet now

    def test_storage_error_logged_with_path_and_errno(self):
        d = self.start_daemon(config=NO_DNS)
        jobs = os.path.join(d.data_dir, "jobs")
        # a file where the jobs directory is expected (root ignores modes)
        os.rename(jobs, jobs + ".away")
        with open(jobs, "w"):
            pass

        def restore():
            if os.path.isfile(jobs):
                os.unlink(jobs)
                os.rename(jobs + ".away", jobs)
        self.addCleanup(restore)
        r = d.submit(simple_job(2))
        self.assertEqual(r.status, 503, r)
        self.assertRegex(d.output(), r"error: spool: cannot move the job to %s/[^:]+: "
                         r"Not a directory" % re.escape(jobs))
        restore()
        self.assertEqual(d.submit(simple_job(2)).status, 202)


if __name__ == "__main__":
    unittest.main()
