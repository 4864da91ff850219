"""Packaging and first run: `make install` with DESTDIR, the README's first
run block run as written, every example of docs/jobs.md posted to a
volleyd, and the Debian package built with dpkg-buildpackage on a copy of
the tree (it compiles the programs again: about a minute on 2 cores;
VOLLEY_SKIP_DEB=1 skips it), extracted with dpkg -x and run: --version,
--check-config, a delivery to a volley-sink.

Every process started here is stopped by PID (the README block's in its
own process group, which the test ends; its volleyd by its pid file)."""

import json
import os
import re
import signal
import subprocess
import time
import unittest

from . import util
from .daemon import VOLLEYD, VolleydTest
from .sinkctl import Sink

REPO = util.REPO
MAKE_WAIT = 300.0        # make install (builds the man pages if missing)
README_WAIT = 90.0       # the README block, start to end
DEB_WAIT = 1200.0        # dpkg-buildpackage from scratch
HAVE_SCDOC = subprocess.run(["sh", "-c", "command -v scdoc"], capture_output=True).returncode == 0
HAVE_DEBHELPER = os.access("/usr/bin/dh", os.X_OK)
IN_BUILD = os.path.abspath(os.path.dirname(VOLLEYD)) == os.path.join(REPO, "build")


def fenced(text, lang):
    """The bodies of the ```lang blocks of a Markdown text."""
    return re.findall(r"^```%s\n(.*?)^```$" % re.escape(lang), text, re.S | re.M)


def readme_first_run():
    """The first ```sh block under the README's "## First run" heading."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("\n## First run\n")
    end = text.find("\n## ", start + 1)
    blocks = fenced(text[start:end if end > 0 else None], "sh")
    if not blocks:
        raise AssertionError("README.md's First run section has no ```sh block")
    return blocks[0]


def jobs_md_examples():
    with open(os.path.join(REPO, "docs", "jobs.md"), encoding="utf-8") as f:
        text = f.read()
    return fenced(text, "json"), fenced(text, "ndjson")


def run(argv, timeout, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


class InstallTest(unittest.TestCase):
    """make install DESTDIR=... PREFIX=/usr: every file where it belongs."""

    @unittest.skipUnless(HAVE_SCDOC and IN_BUILD, "needs scdoc and the build in build/")
    def test_make_install_destdir(self):
        root = util.tempdir("volley-install-", cleanup=self.addCleanup)
        r = run(["make", "--no-print-directory", "-C", REPO, "install", "DESTDIR=" + root,
                 "PREFIX=/usr"], MAKE_WAIT)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
        want = ["usr/sbin/volleyd", "usr/bin/volley", "usr/bin/volley-sink",
                "usr/bin/volley-bench", "usr/share/man/man8/volleyd.8",
                "usr/share/man/man1/volley.1", "usr/share/man/man5/volley.conf.5",
                "usr/share/man/man1/volley-sink.1", "usr/share/man/man1/volley-bench.1",
                "usr/lib/systemd/system/volleyd.service", "etc/volley/volley.conf",
                "usr/share/doc/volley/jobs.md", "usr/share/doc/volley/README.md",
                "usr/share/volley/bench/scenarios/small.conf"]
        for path in want:
            self.assertTrue(os.path.isfile(os.path.join(root, path)), path)
        for b in want[:4]:
            self.assertTrue(os.access(os.path.join(root, b), os.X_OK), b)
        with open(os.path.join(root, "usr/lib/systemd/system/volleyd.service")) as f:
            unit = f.read()
        for line in ("Type=notify", "User=volley", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "StateDirectory=volley",
                     "ExecStart=/usr/sbin/volleyd --foreground --config "
                     "/etc/volley/volley.conf --data-dir /var/lib/volley"):
            self.assertIn("\n" + line + "\n", unit)
        self.assertNotIn("@", unit)
        # The example configuration is valid, and the man pages are roff.
        conf = os.path.join(root, "etc/volley/volley.conf")
        r = run([os.path.join(root, "usr/sbin/volleyd"), "--check-config", "--config", conf], 30)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn('data_dir = "/var/lib/volley"', r.stdout)
        with open(os.path.join(root, "usr/share/man/man1/volley.1")) as f:
            self.assertIn(".TH \"volley\" \"1\"", f.read())
        # A second install keeps an operator's configuration.
        with open(conf, "w") as f:
            f.write("# mine\n")
        r = run(["make", "--no-print-directory", "-C", REPO, "install", "DESTDIR=" + root,
                 "PREFIX=/usr"], MAKE_WAIT)
        self.assertEqual(r.returncode, 0, r)
        with open(conf) as f:
            self.assertEqual(f.read(), "# mine\n")


@unittest.skipUnless(IN_BUILD and os.access(VOLLEYD, os.X_OK),
                     "the README runs build/: needs the build there")
class ReadmeFirstRunTest(unittest.TestCase):
    """README.md's first-run block, run as written, with only DIR and PORT
    (which it documents) set."""

    def test_first_run_block(self):
        block = readme_first_run()
        d = util.tempdir("volley-readme-", cleanup=self.addCleanup)
        script = os.path.join(d, "first-run.sh")
        with open(script, "w") as f:
            f.write(block)
        run_dir = os.path.join(d, "run")
        env = dict(os.environ, DIR=run_dir, PORT=str(util.free_port()))
        # Output to a file: the sink it leaves running keeps a pipe open.
        out_path = os.path.join(d, "out")
        with open(out_path, "w") as out_f:
            p = subprocess.Popen(["bash", "-e", script], cwd=REPO, env=env,
                                 stdout=out_f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.addCleanup(self.stop_all, p, os.path.join(run_dir, "data", "volleyd.pid"))
        try:
            p.wait(timeout=README_WAIT)
        except subprocess.TimeoutExpired:
            pass
        with open(out_path, errors="replace") as f:
            out = f.read()
        self.assertIsNotNone(p.returncode, "the README block did not end within %.0fs: %s"
                             % (README_WAIT, out[-3000:]))
        self.assertEqual(p.returncode, 0, out[-3000:])
        self.assertRegex(out, r"done: 2 recipients: 2 delivered")
        self.assertIn("EXPIRED", out)
        self.assertEqual(len(os.listdir(os.path.join(run_dir, "maildir", "new"))), 2)

    def stop_all(self, p, pidfile):
        """The block's process group (its sink), then its detached volleyd."""
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        p.wait(timeout=util.STOP_WAIT)
        try:
            with open(pidfile) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + util.STOP_WAIT
        try:
            os.kill(pid, signal.SIGTERM)
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class JobsDocTest(VolleydTest):
    """Every example of docs/jobs.md is a job volleyd takes (202)."""

    def test_every_example_is_accepted(self):
        jsons, ndjsons = jobs_md_examples()
        self.assertGreaterEqual(len(jsons), 5)
        self.assertGreaterEqual(len(ndjsons), 1)
        d = self.start_daemon(config='defaults = { route = "127.0.0.1:%d"; };\n'
                              % util.free_port())
        for i, body in enumerate(jsons):
            with self.subTest(example=i, first_line=body.splitlines()[1][:60]):
                job = json.loads(body)
                r = d.submit(job)
                self.assertEqual(r.status, 202, r)
                self.assertEqual(r.json()["recipients"], len(job["recipients"]))
        for i, body in enumerate(ndjsons):
            with self.subTest(ndjson=i):
                r = d.request("POST", "/v1/jobs", body,
                              headers={"Content-Type": "application/x-ndjson"})
                self.assertEqual(r.status, 202, r)
                self.assertEqual(r.json()["recipients"], len(body.splitlines()) - 1)

    def test_top_level_fields_documented(self):
        """Each field intake knows has a row in docs/jobs.md's tables."""
        with open(os.path.join(REPO, "api", "intake.c")) as f:
            src = f.read()
        body = src[src.index("static int check_field("):]
        body = body[:body.index("\n}\n")]
        fields = set(re.findall(r'!strcmp\(k, "([a-z_]+)"\)', body))
        self.assertGreaterEqual(len(fields), 12)
        with open(os.path.join(REPO, "docs", "jobs.md")) as f:
            doc = f.read()
        for name in fields:
            self.assertTrue("\n| `%s` |" % name in doc, "%s has no row in docs/jobs.md" % name)


@unittest.skipIf(os.environ.get("VOLLEY_SKIP_DEB") == "1", "VOLLEY_SKIP_DEB=1")
@unittest.skipUnless(HAVE_DEBHELPER, "no debhelper (scripts/install-deps.sh installs it)")
class DebianPackageTest(unittest.TestCase):
    """dpkg-buildpackage -us -uc -b on a copy of the tree, then the package
    extracted (dpkg -x) and run from there."""

    def test_build_extract_run(self):
        top = util.tempdir("volley-deb-", cleanup=self.addCleanup)
        src = os.path.join(top, "src")
        files = run(["git", "-C", REPO, "ls-files", "-z"], 30).stdout.split("\0")
        os.makedirs(src)
        r = subprocess.run(["cp", "--parents", "-t", src] + [f for f in files if f],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r)
        # noopt and nostrip: the packaging is what is tested, not the
        # optimiser (half the build's time on two cores)
        env = dict(os.environ, DEB_BUILD_OPTIONS="noopt noddebs")
        r = run(["dpkg-buildpackage", "-us", "-uc", "-b", "-j2"], DEB_WAIT, cwd=src, env=env)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        debs = [f for f in os.listdir(top) if re.match(r"volley_.*\.deb$", f)]
        self.assertEqual(len(debs), 1, debs)
        deb = os.path.join(top, debs[0])
        listing = run(["dpkg-deb", "-c", deb], 30).stdout
        for path in ("./usr/sbin/volleyd", "./usr/bin/volley", "./lib/systemd/system/volleyd.service",
                     "./etc/volley/volley.conf", "./usr/share/man/man8/volleyd.8.gz"):
            self.assertIn(path, listing)
        info = run(["dpkg-deb", "-e", deb, os.path.join(top, "control")], 30)
        self.assertEqual(info.returncode, 0, info)
        with open(os.path.join(top, "control", "postinst")) as f:
            postinst = f.read()
        self.assertIn("adduser --system", postinst)
        self.assertIn("volleyd.service", postinst)  # dh_installsystemd's enabling
        root = os.path.join(top, "root")
        self.assertEqual(run(["dpkg", "-x", deb, root], 60).returncode, 0)
        self.run_extracted(root)

    def run_extracted(self, root):
        volley, volleyd = os.path.join(root, "usr/bin/volley"), os.path.join(root, "usr/sbin/volleyd")
        r = run([volley, "--version"], 30)
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout, r"^volley \d+\.\d+\.\d+\n$")
        conf = os.path.join(root, "etc/volley/volley.conf")
        r = run([volleyd, "--check-config", "--config", conf], 30)
        self.assertEqual(r.returncode, 0, r)
        # A delivery through the extracted volleyd to a volley-sink.
        sink = Sink("--tls")
        self.addCleanup(sink.cleanup)
        sink.start()
        data = util.tempdir("volley-deb-data-", cleanup=self.addCleanup)
        cfg = os.path.join(data, "volley.conf")
        with open(cfg, "w") as f:
            f.write('dns = { servers = [ "127.0.0.1:9" ]; };\n'
                    'domains = ( { match = "*.test"; route = "%s"; tls = "encrypt"; } );\n'
                    % sink.route())
        p = util.start([volleyd, "--foreground", "--config", cfg, "--data-dir", data],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(util.stop, p)
        job = os.path.join(data, "job.json")
        with open(job, "w") as f:
            json.dump({"envelope_sender": "b@example.com",
                       "content": {"from": {"email": "n@example.com"}, "subject": "deb",
                                   "text_body": "from the package\n"},
                       "recipients": [{"email": "ann@example.test"}]}, f)
        ok = util.wait_until(lambda: run([volley, "--data-dir", data, "health"], 10)
                             .returncode == 0, 15, 0.1)
        self.assertTrue(ok, "the extracted volleyd never answered")
        r = run([volley, "--data-dir", data, "submit", job, "--wait"], 60)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("1 delivered", r.stdout)
        self.assertEqual(len(sink.new_messages(1, wait=10)), 1)


if __name__ == "__main__":
    unittest.main()
