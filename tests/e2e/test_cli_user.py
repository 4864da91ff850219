"""End-to-end tests of `volley user` (build/volley): the submission users
file edited without the daemon. Every hash the CLI writes is checked
against Debian's own crypt(3), through the crypt module of Debian's
/usr/bin/python3 (3.11: the module is still there), not through volley's
code; the other lines of the file must come out byte for byte.

Every run is bounded (RUN_WAIT); the terminal tests start volley on a
pseudo-terminal and stop it by PID in a cleanup.
"""

import json
import os
import pty
import select
import signal
import stat
import subprocess
import time
import unittest

from . import util
from .daemon import VOLLEY

RUN_WAIT = 60.0
LINE_WAIT = 15.0
SYSTEM_PY = "/usr/bin/python3"


def volley(*args, input=None, env=None):
    e = {k: v for k, v in os.environ.items() if k != "VOLLEY_USERS"}
    e.update(env or {})
    return subprocess.run([VOLLEY, *args], capture_output=True, text=True, input=input,
                          env=e, timeout=RUN_WAIT)


def system_crypt_ok(password, hashed):
    """Does Debian's crypt(3) find password in hashed?"""
    code = ("import crypt, json, sys; d = json.load(sys.stdin); "
            "print(json.dumps(crypt.crypt(d['p'], d['h']) == d['h']))")
    r = subprocess.run([SYSTEM_PY, "-W", "ignore", "-c", code], capture_output=True, text=True,
                       input=json.dumps({"p": password, "h": hashed}), timeout=RUN_WAIT)
    if r.returncode != 0:
        raise AssertionError("system crypt: %s" % r.stderr)
    return json.loads(r.stdout)


@unittest.skipUnless(os.access(SYSTEM_PY, os.X_OK), "no Debian /usr/bin/python3")
class CliUserTest(unittest.TestCase):

    def setUp(self):
        self.dir = util.tempdir("volley-user-", cleanup=self.addCleanup)
        self.users = os.path.join(self.dir, "users")

    def read(self):
        with open(self.users, "rb") as f:
            return f.read().decode()

    def write(self, text, mode=0o640):
        with open(self.users, "w") as f:
            f.write(text)
        os.chmod(self.users, mode)

    def line_of(self, name):
        lines = [l for l in self.read().splitlines() if l.split(":")[0] == name]
        self.assertEqual(len(lines), 1, self.read())
        return lines[0]

    def assertNoTemp(self):
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["users"] if os.path.exists(self.users) else [])

    def add(self, name, password, *extra):
        return volley("user", "add", "--users", self.users, *extra, name, input=password)

    def test_add_hashes_with_yescrypt_that_system_crypt_verifies(self):
        r = self.add("app", "correct horse battery staple\n")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("added app in %s" % self.users, r.stdout)
        line = self.line_of("app")
        name, hashed = line.split(":", 1)
        self.assertTrue(hashed.startswith("$y$"), line)
        self.assertTrue(system_crypt_ok("correct horse battery staple", hashed))
        self.assertFalse(system_crypt_ok("correct horse battery stapl", hashed))
        self.assertFalse(system_crypt_ok("correct horse battery staple\n", hashed))
        self.assertEqual(stat.S_IMODE(os.stat(self.users).st_mode), 0o640)
        self.assertNoTemp()
        # a CRLF line end is a line end, not part of the password; only the
        # first line counts
        r = self.add("win", "pässwörd\r\nsecond line\n")
        self.assertEqual(r.returncode, 0, r)
        self.assertTrue(system_crypt_ok("pässwörd", self.line_of("win").split(":", 1)[1]))
        # no line end at all is fine too; $VOLLEY_USERS names the file
        r = volley("user", "add", "last", input="tail", env={"VOLLEY_USERS": self.users})
        self.assertEqual(r.returncode, 0, r)
        self.assertTrue(system_crypt_ok("tail", self.line_of("last").split(":", 1)[1]))

    def test_replace_keeps_every_other_line_and_the_settings(self):
        before = ("# submission users\n"
                  "\n"
                  "alpha:$6$rounds=1000$salt$hashhash:dkim=no\n"
                  "app:$6$old$old:from_domains=a.example,b.example:campaign=c:priority=bulk\n"
                  "  # indented comment\n"
                  "zeta:$2b$04$abcdefghijklmnopqrstuu\n")
        self.write(before, 0o600)
        r = self.add("app", "new-password\n")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("new password for app", r.stdout)
        after = self.read().splitlines(keepends=True)
        want = before.splitlines(keepends=True)
        self.assertEqual(len(after), len(want))
        for i, (a, w) in enumerate(zip(after, want)):
            if w.startswith("app:"):
                name, hashed, settings = a.rstrip("\n").split(":", 2)
                self.assertEqual(name, "app")
                self.assertEqual(settings, "from_domains=a.example,b.example:campaign=c:"
                                 "priority=bulk")
                self.assertTrue(system_crypt_ok("new-password", hashed))
            else:
                self.assertEqual(a, w, "line %d changed" % (i + 1))
        self.assertEqual(stat.S_IMODE(os.stat(self.users).st_mode), 0o600, "mode kept")
        self.assertNoTemp()

    def test_list_and_del(self):
        self.write("# c\nb:$6$x$y\na:$6$x$y:dkim=no\n\nc:$6$x$y")
        r = volley("user", "list", "--users", self.users)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout, "b\na\nc\n")
        r = volley("user", "del", "--users", self.users, "a")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(self.read(), "# c\nb:$6$x$y\n\nc:$6$x$y\n")
        r = volley("user", "del", "--users", self.users, "a")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("no user a in %s" % self.users, r.stderr)
        self.assertEqual(self.read(), "# c\nb:$6$x$y\n\nc:$6$x$y\n")
        os.unlink(self.users)
        for argv in (("list",), ("del", "b")):
            with self.subTest(argv):
                r = volley("user", argv[0], "--users", self.users, *argv[1:])
                self.assertEqual(r.returncode, 1, r)
                self.assertIn("%s: no such file" % self.users, r.stderr)
        self.assertFalse(os.path.exists(self.users))

    def test_errors_change_nothing(self):
        self.write("app:$6$x$y\n")
        for password, words in (("\n", "the password is empty"), ("", "the password is empty"),
                                ("x" * 1100 + "\n", "longer than 1024")):
            with self.subTest(words):
                r = self.add("app", password)
                self.assertEqual(r.returncode, 1, r)
                self.assertIn(words, r.stderr)
                self.assertEqual(self.read(), "app:$6$x$y\n")
        for argv, words in ((("user",), "usage: volley user"),
                            (("user", "add"), "usage: volley user"),
                            (("user", "list", "x"), "usage: volley user"),
                            (("user", "frob", "x"), "usage: volley user"),
                            (("user", "add", "a:b"), "'a:b' is not a user name"),
                            (("user", "add", "-x", "a"), "unknown option -x"),
                            (("user", "add", "a", "b"), "too many arguments")):
            with self.subTest(argv):
                r = volley(*argv, "--users", self.users, input="pw\n")
                self.assertEqual(r.returncode, 2, r)
                self.assertIn(words, r.stderr)
        self.assertEqual(self.read(), "app:$6$x$y\n")
        # the same user twice: the file is not one volleyd takes; say so
        self.write("app:$6$x$y\nother:$6$x$y\napp:$6$x$z\n")
        r = self.add("app", "pw\n")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("%s:3: app is in the file twice" % self.users, r.stderr)
        self.assertEqual(self.read(), "app:$6$x$y\nother:$6$x$y\napp:$6$x$z\n")
        # a folder that is not there
        missing = os.path.join(self.dir, "none", "users")
        r = volley("user", "add", "--users", missing, "app", input="pw\n")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(os.path.join(self.dir, "none"), r.stderr)
        self.assertNoTemp()

    def test_world_readable_file_is_kept_and_named(self):
        self.write("", 0o644)
        r = self.add("app", "pw\n")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("readable or writable by others", r.stderr)
        self.assertIn("chmod o-rwx %s" % self.users, r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(self.users).st_mode), 0o644)

    def test_help(self):
        for argv in (("user", "--help"), ("user", "add", "--help"), ("help", "user")):
            with self.subTest(argv):
                r = volley(*argv)
                self.assertEqual(r.returncode, 0, r)
                self.assertTrue(r.stdout.startswith("usage: volley user add|del|list"), r.stdout)
        self.assertIn("volley user add|del|list", volley("--help").stdout)

    # ---- on a terminal ----

    def terminal(self, *args):
        """volley user ... on a pseudo-terminal: (process, master fd)."""
        master, slave = pty.openpty()
        p = util.start([VOLLEY, "user", "--users", self.users, *args],
                       stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self.addCleanup(util.kill, p)
        self.addCleanup(os.close, master)
        return p, master

    def read_until(self, master, text, seen):
        deadline = time.monotonic() + LINE_WAIT
        while text not in seen[0]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([master], [], [], left)[0]:
                raise AssertionError("no %r in %r" % (text, seen[0]))
            try:
                seen[0] += os.read(master, 4096).decode(errors="replace")
            except OSError:
                raise AssertionError("terminal closed before %r: %r" % (text, seen[0]))

    def rest(self, p, master, seen):
        code = p.wait(RUN_WAIT)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen[0] += chunk.decode(errors="replace")
        return code

    def test_terminal_asks_twice_without_echo(self):
        p, m = self.terminal("add", "app")
        seen = [""]
        self.read_until(m, "Password for app: ", seen)
        os.write(m, b"tty-secret\n")
        self.read_until(m, "Again: ", seen)
        os.write(m, b"tty-secret\n")
        self.assertEqual(self.rest(p, m, seen), 0, seen[0])
        self.assertNotIn("tty-secret", seen[0], "the password was echoed")
        self.assertIn("added app", seen[0])
        self.assertTrue(system_crypt_ok("tty-secret", self.line_of("app").split(":", 1)[1]))

    def test_terminal_mismatch_and_interrupt_change_nothing(self):
        self.write("app:$6$x$y\n")
        p, m = self.terminal("add", "app")
        seen = [""]
        self.read_until(m, "Password for app: ", seen)
        os.write(m, b"one\n")
        self.read_until(m, "Again: ", seen)
        os.write(m, b"two\n")
        self.assertEqual(self.rest(p, m, seen), 1, seen[0])
        self.assertIn("the two passwords differ", seen[0])
        self.assertEqual(self.read(), "app:$6$x$y\n")
        p, m = self.terminal("add", "app")
        seen = [""]
        self.read_until(m, "Password for app: ", seen)
        p.send_signal(signal.SIGINT)
        self.assertEqual(self.rest(p, m, seen), 130, seen[0])
        self.assertEqual(self.read(), "app:$6$x$y\n")
        self.assertNoTemp()
