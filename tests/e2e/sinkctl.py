"""Harness for the volley-sink end-to-end tests (stdlib only).

Sink       starts volley-sink on a free loopback port with a temp maildir,
           captures stdout (JSON stats) and stderr, and always stops it.
Client     a raw SMTP client over a socket: exact bytes in, parsed replies out.
SinkTest   unittest base class: start_sink() with automatic cleanup, reply
           assertions, maildir helpers.
run_drive  runs volley-drive (the engine's harness) to completion, bounded in
           time, and parses its per-recipient results; drive_message() is
           the message it generates, make_cert() a certificate for a sink.

Every network address is on 127.0.0.0/8; every wait is bounded.
"""

import json
import os
import re
import select
import smtplib
import socket
import ssl
import struct
import subprocess
import time
import unittest

from . import util

BINARY = util.build_path("volley-sink", "VOLLEY_SINK")
DRIVE = util.build_path("volley-drive", "VOLLEY_DRIVE")

START_WAIT = 15.0     # seconds for the sink to listen (a loaded machine, ASan)
STOP_WAIT = 5.0       # seconds between SIGTERM and SIGKILL
IO_TIMEOUT = 5.0      # default client read timeout
DRIVE_WAIT = 60.0     # default bound on one volley-drive run
DEFAULT_HOST = "127.0.0.1"

STATS_KEYS = {"time", "conns_open", "conns_total", "conns_refused", "messages",
              "recipients", "bytes", "tls_sessions", "replies_4xx",
              "replies_5xx", "drops", "timeouts", "errors", "auth_ok", "auth_failed"}
EXTENSIONS = {"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8",
              "ENHANCEDSTATUSCODES", "CHUNKING"}
ENH_RE = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")


def run_once(*args, timeout=5.0):
    """Run the binary to completion (usage errors): (rc, stdout, stderr)."""
    try:
        p = subprocess.run([BINARY, *args], capture_output=True, text=True,
                           timeout=timeout, preexec_fn=util.die_with_parent)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or ""


def sanitizer_report(text):
    """The first ASan/UBSan report in text (at most 3000 characters), or None."""
    hit = re.search(r"ERROR: \w+Sanitizer|runtime error:", text)
    return text[hit.start():hit.start() + 3000] if hit else None


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def smtplib_wire(msg):
    """The octets the sink must store for smtplib's sendmail(..., msg):
    a str gets bare CR/LF turned into CRLF; a final CRLF is added."""
    if isinstance(msg, str):
        msg = re.sub(r"\r\n|\n|\r", "\r\n", msg).encode("ascii")
    return msg if msg.endswith(b"\r\n") else msg + b"\r\n"


def dot_stuff(data):
    """DATA encoding of a message whose lines end in CRLF, with the final dot."""
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", data)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out + b".\r\n"


class Message:
    def __init__(self, ident, data, env):
        self.id, self.data, self.env = ident, data, env

    def __repr__(self):
        return "Message(%s, %d octets, %r)" % (self.id, len(self.data), self.env)


class Sink:
    """One volley-sink process. Use as a context manager or call stop().
    port: listen there (the same on every one of hosts), else on a free one;
    parent: the folder of its temporary directory (maildir, stdout, stderr)."""

    def __init__(self, *args, hosts=(DEFAULT_HOST,), maildir=True, port=None, parent=None):
        self.args, self.hosts = [str(a) for a in args], tuple(hosts)
        self.dir = util.tempdir("volley-e2e-", dir=parent)
        self.maildir = os.path.join(self.dir, "maildir") if maildir else None
        self.proc, self.port, self.returncode = None, None, None
        self.fixed_port = port
        self._seen = set()

    @property
    def host(self):
        return self.hosts[0]

    def route(self, host=None):
        """HOST:PORT of this sink, as volley-drive's --route takes it."""
        return "%s:%d" % (host or self.host, self.port)

    def start(self, attempts=3):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError("no executable volley-sink at %s" % BINARY)
        if self.maildir:
            os.makedirs(self.maildir, exist_ok=True)
        for _ in range(1 if self.fixed_port else attempts):
            if self._start_once():
                return self
            if self.returncode != 1:       # 1: address in use, try another
                break
        raise RuntimeError("volley-sink did not start (rc=%s): %s\nstderr: %s"
                           % (self.returncode, self.argv(), self.stderr()[-2000:]))

    def argv(self):
        argv = [BINARY]
        for host in self.hosts:
            argv += ["--listen", "%s:%d" % (host, self.port)]
        if self.maildir:
            argv += ["--maildir", self.maildir]
        return argv + self.args

    def _start_once(self):
        self.port = self.fixed_port or util.free_port(self.hosts)
        with open(self._path("stdout"), "wb") as out, \
                open(self._path("stderr"), "wb") as err:
            self.proc = util.start(self.argv(), stdout=out, stderr=err)
        # No probe connection: the counters and --max-conns stay exact.
        if util.wait_port(self.hosts, self.port, START_WAIT, proc=self.proc):
            return True
        self.stop()     # exited (its status tells why), or too slow
        return False

    def stop(self, wait=STOP_WAIT):
        """SIGTERM, SIGKILL after wait seconds; returns the exit status."""
        if self.proc is not None:
            self.returncode = util.stop(self.proc, wait=wait)
        return self.returncode

    def cleanup(self):
        self.stop()
        util.remove_dir(self.dir)

    def finish(self):
        """cleanup(), then fail if stderr held a sanitizer report (make asan)."""
        self.stop()
        report = sanitizer_report(self.stderr())
        self.cleanup()
        if report:
            raise AssertionError("sanitizer report from volley-sink:\n" + report)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _read(self, name):
        try:
            with open(self._path(name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        return self._read("stdout")

    def stderr(self):
        return self._read("stderr")

    # -- counters ---------------------------------------------------------
    def stats_lines(self):
        """Every complete JSON line on stdout, parsed."""
        return [json.loads(line) for line in self.stdout().splitlines(True)
                if line.startswith("{") and line.endswith("\n")]

    def final_stats(self):
        """Stop the sink and return the last stats line (printed at exit)."""
        self.stop()
        lines = self.stats_lines()
        if not lines:
            raise AssertionError("no stats line on stdout: %r" % self.stdout())
        return lines[-1]

    # -- maildir ----------------------------------------------------------
    def messages(self):
        """All messages in new/, oldest first, each with its envelope."""
        new = os.path.join(self.maildir, "new")
        try:
            names = os.listdir(new)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            with open(os.path.join(new, name), "rb") as f:
                data = f.read()
            with open(os.path.join(self.maildir, "env", name + ".json")) as f:
                env = json.load(f)
            out.append((os.stat(os.path.join(new, name)).st_mtime_ns, name,
                        Message(name, data, env)))
        return [m for _, _, m in sorted(out, key=lambda t: t[:2])]

    def tmp_files(self):
        """Files left in tmp/ (a delivered or refused message leaves none)."""
        try:
            return os.listdir(os.path.join(self.maildir, "tmp"))
        except FileNotFoundError:
            return []

    def new_messages(self, count=0, wait=2.0):
        """Messages not returned before; waits (bounded) for at least count."""
        fresh = []

        def enough():
            fresh[:] = [m for m in self.messages() if m.id not in self._seen]
            return len(fresh) >= count

        util.wait_until(enough, wait)
        self._seen.update(m.id for m in fresh)
        return fresh

    # -- clients ----------------------------------------------------------
    def connect(self, host=None, timeout=IO_TIMEOUT):
        return Client(host or self.host, self.port, timeout)

    def smtp(self, host=None, timeout=IO_TIMEOUT, helo="client.test"):
        return smtplib.SMTP(host or self.host, self.port, local_hostname=helo,
                            timeout=timeout)


class Reply:
    def __init__(self, code, lines, raw):
        self.code, self.lines, self.raw = code, lines, raw

    @property
    def enh(self):
        """The enhanced status code of the first line, or None."""
        first = self.lines[0].split(" ", 1)[0] if self.lines else ""
        return first if ENH_RE.match(first) else None

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return "Reply(%r)" % self.raw


def as_reply(code_msg):
    """smtplib's (code, message) as a Reply."""
    code, msg = code_msg
    lines = msg.decode("utf-8", "replace").split("\n")
    return Reply(code, lines, "%d %s" % (code, msg))


class Client:
    """Raw SMTP over a socket; reads are buffered and bounded in time."""

    def __init__(self, host, port, timeout=IO_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def send_slowly(self, data, pause=0.001):
        """One octet per TCP segment (as far as the stack allows)."""
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(pause)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no data within the deadline; have %r" % self.buf)
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed; have %r" % self.buf)
        self.buf += chunk

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def reply(self, timeout=None):
        """One reply, multi-line or not."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines, raw, code = [], [], None
        while True:
            text = self.line(max(deadline - time.monotonic(), 0.001)).decode(
                "utf-8", "replace")
            raw.append(text)
            m = re.match(r"^(\d{3})([ -])(.*)$", text) or re.match(r"^(\d{3})()()$", text)
            if not m or (code is not None and int(m.group(1)) != code):
                raise AssertionError("malformed reply line %r in %r" % (text, raw))
            code = int(m.group(1))
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines, "\r\n".join(raw))

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def ehlo(self, name="client.test"):
        """EHLO; returns {KEYWORD: params} of the extensions advertised."""
        r = self.cmd("EHLO " + name)
        if r.code != 250:
            raise AssertionError("EHLO got %r" % r)
        return {l.split(" ", 1)[0].upper(): l.partition(" ")[2] for l in r.lines[1:]}

    def begin(self, rcpts=("rcpt@example.test",), sender="sender@example.test",
              ehlo=True):
        """[EHLO,] MAIL, RCPT...: asserts each gets 250."""
        if ehlo:
            self.ehlo()
        for line in ["MAIL FROM:<%s>" % sender] + ["RCPT TO:<%s>" % r for r in rcpts]:
            r = self.cmd(line)
            if r.code != 250:
                raise AssertionError("%s got %r" % (line, r))

    def data(self, message):
        """DATA with message (CRLF lines, dot-stuffed here): the final reply."""
        r = self.cmd("DATA")
        if r.code != 354:
            raise AssertionError("DATA got %r" % r)
        self.send(dot_stuff(message))
        return self.reply()

    def quiet(self, seconds):
        """True if nothing at all arrives within seconds."""
        if self.buf or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return False
        poller = select.poll()          # select() fails on fds >= 1024
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(seconds * 1000)

    def wait_close(self, timeout=None):
        """Read until the peer closes: 'fin' or 'rst'. Data must not come."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(deadline)
                raise AssertionError("unexpected data before close: %r" % self.buf)
        except ConnectionResetError:
            return "rst"
        except ConnectionError:
            return "fin"

    def reset(self):
        """Close with an RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()

    def starttls(self, ctx=None):
        """Wrap the socket after a 220 to STARTTLS; nothing may be buffered."""
        if self.buf:
            raise AssertionError("cleartext data after STARTTLS reply: %r" % self.buf)
        self.sock.settimeout(self.timeout)
        self.sock = (ctx or tls_client_context()).wrap_socket(self.sock)


class SinkTest(unittest.TestCase):
    """Base class. SINK_ARGS, if not None, starts one sink for the class
    (self.sink); start_sink() starts one for a single test."""

    SINK_ARGS = None
    sink = None

    @classmethod
    def setUpClass(cls):
        if cls.SINK_ARGS is not None:
            cls.sink = Sink(*cls.SINK_ARGS)
            cls.addClassCleanup(cls.sink.finish)
            cls.sink.start()

    def setUp(self):
        if self.sink is not None:
            self.sink.new_messages(wait=0)     # forget earlier tests' mail

    def start_sink(self, *args, **kw):
        sink = Sink(*args, **kw)
        self.addCleanup(sink.finish)
        return sink.start()

    def tempdir(self):
        return util.tempdir("volley-e2e-", cleanup=self.addCleanup)

    def connect(self, sink=None, host=None, greet=True):
        c = (sink or self.sink).connect(host)
        self.addCleanup(c.close)
        if greet:
            self.assertReply(c.reply(), 220)
        return c

    def smtp(self, sink=None, host=None):
        s = (sink or self.sink).smtp(host)
        self.addCleanup(s.close)
        return s

    def assertReply(self, reply, code, enh=None, text=None):
        """Code, and an enhanced code of the same class (RFC 2034) on
        everything but 220/354 and EHLO's 250 (pass enh=False there)."""
        self.assertEqual(reply.code, code, reply)
        if enh is not False and code not in (220, 354):
            self.assertIsNotNone(reply.enh, "no enhanced status code: %r" % reply)
            self.assertEqual(reply.enh[0], str(code)[0], reply)
            if enh:
                self.assertEqual(reply.enh, enh, reply)
        if text is not None:
            self.assertIn(text, reply.text, reply)
        return reply

    def check_replies(self, client, cases):
        """(line, code, enh) in order, each a subTest so all are checked."""
        for line, code, enh in cases:
            with self.subTest(line=line):
                self.assertReply(client.cmd(line), code, enh)

    def assertClass(self, reply, digit):
        """Any 4xx or 5xx (digit 4 or 5) with a matching enhanced code."""
        self.assertEqual(reply.code // 100, digit, reply)
        self.assertIsNotNone(reply.enh, reply)
        self.assertEqual(reply.enh[0], str(digit), reply)

    def assertClosed(self, client, how=None, timeout=None):
        got = client.wait_close(timeout)
        if how:
            self.assertEqual(got, how, "connection should end with %s" % how)

    def one_message(self, sink=None):
        """The one new message; its envelope's id and size must match."""
        msgs = (sink or self.sink).new_messages(1)
        self.assertEqual(len(msgs), 1, msgs)
        m = msgs[0]
        self.assertEqual((m.env["id"], m.env["size"]), (m.id, len(m.data)), m)
        return m

    def assertNoMessage(self, sink=None):
        sink = sink or self.sink
        self.assertEqual(sink.new_messages(wait=0.2), [])
        self.assertEqual(sink.tmp_files(), [])


# -- volley-drive -----------------------------------------------------------

def drive_rcpt(n, i=0, smtputf8=False):
    """Recipient i of message n as volley-drive names it."""
    return "%s%d.%d@drive.test" % ("m\u00fcller" if smtputf8 else "user", n, i)


def drive_body(size, eightbit=False):
    """The body volley-drive shares between its messages: exactly size
    octets of CRLF lines, every tenth starting with a dot; the last line
    may be cut short (no final CRLF)."""
    lead = "\u00e9".encode() if eightbit else b"e"
    out = bytearray()
    while len(out) < size:
        line = len(out) // 78
        out += b"%s%s line %06d of the test body, padding padding padding pad\r\n" % (
            b"." if line % 10 == 3 else b"x", lead, line)
    return bytes(out[:size])


def drive_message(n, size=4096, eightbit=False, smtputf8=False):
    """Message n as volley-drive hands it to the engine (not dot-stuffed)."""
    head = ("From: <sender@drive.test>\r\nTo: <%s>\r\nSubject: message %d\r\n"
            "Message-ID: <%d@drive.test>\r\n\r\n" % (drive_rcpt(n, 0, smtputf8), n, n))
    return head.encode() + drive_body(size, eightbit)


def data_wire(message):
    """What a DATA transaction stores for message: a final CRLF is added
    when it has none (BDAT stores the octets as they are)."""
    return message if message.endswith(b"\r\n") else message + b"\r\n"


class DriveRun:
    """A finished volley-drive --results run."""

    def __init__(self, argv, rc, stdout, stderr, seconds):
        self.argv, self.rc, self.stderr, self.seconds = argv, rc, stderr, seconds
        self.results = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        summaries = [json.loads(line) for line in stderr.splitlines()
                     if line.startswith("{")]
        self.summary = summaries[-1] if summaries else None

    def count(self, status):
        return sum(r["status"] == status for r in self.results)

    def __repr__(self):
        return "DriveRun(%s: rc=%s, %.2fs, %d results, first %r, stderr %r)" % (
            " ".join(self.argv[1:]), self.rc, self.seconds, len(self.results),
            self.results[:2], self.stderr[-1500:])


def run_drive(*args, timeout=DRIVE_WAIT, results=True):
    """volley-drive [--results] ARGS to completion; killed (by PID) and an
    AssertionError if it takes longer than timeout seconds."""
    if not os.access(DRIVE, os.X_OK):
        raise RuntimeError("no executable volley-drive at %s" % DRIVE)
    argv = [DRIVE] + (["--results"] if results else []) + [str(a) for a in args]
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, preexec_fn=util.die_with_parent)
    except subprocess.TimeoutExpired as e:     # run() killed it by PID
        raise AssertionError("volley-drive did not finish within %.0f s: %s\nstderr: %s"
                             % (timeout, " ".join(argv),
                                (e.stderr or b"").decode("utf-8", "replace")[-2000:]))
    return DriveRun(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                    p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)


def make_cert(directory, name, cn, san):
    """A self-signed P-256 certificate (name.pem, name.key) for cn with
    subjectAltName san (e.g. IP:127.0.0.1); returns (cert, key)."""
    cert, key = (os.path.join(directory, name + ext) for ext in (".pem", ".key"))
    argv = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2".split()
    argv += ["-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san,
             "-keyout", key, "-out", cert]
    subprocess.run(argv, check=True, capture_output=True, timeout=20)
    return cert, key
