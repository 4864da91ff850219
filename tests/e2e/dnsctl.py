"""Harness for the dns/ tests and benchmark (stdlib only).

Unbound    Debian's unbound on 127.0.0.1:<free port> serving local zones from
           a temp config (no recursion, no validation, no root hints), with
           unbound-control on a Unix socket for its own query counters;
           started, waited for until it answers, stopped by PID.
FakeDNS    a scripted DNS server in a thread (UDP and TCP): AD bit set on
           its answers, SERVFAIL, REFUSED, lame referrals, truncation with
           the answer over TCP in two pieces; it records each query's flags.
Blackhole  a UDP socket that reads queries and never answers.
resolve    runs build/volley-resolve and parses its JSON lines.

Every address is on 127.0.0.0/8; every wait is bounded.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

from . import util

RESOLVE = util.build_path("volley-resolve", "VOLLEY_RESOLVE")
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
UNBOUND_CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
START_WAIT = 15.0
STOP_WAIT = 5.0

T_A, T_NS, T_CNAME, T_SOA, T_MX, T_AAAA, T_OPT, T_TLSA = 1, 2, 5, 6, 15, 28, 41, 52

# ---- wire format ----

def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_name(msg, off):
    labels, jumped, end = [], False, off
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumped = True
            continue
        if n == 0:
            if not jumped:
                end = off + 1
            return ".".join(labels), end
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    raise ValueError("name loop")


def rr(name, rtype, ttl, rdata):
    return wire_name(name) + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def parse_query(msg):
    """(id, flags, qname, qtype, do_bit) of a query."""
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    qname, off = read_name(msg, 12)
    qtype, _ = struct.unpack("!HH", msg[off:off + 4])
    off += 4
    do_bit = False
    for _ in range(ar):
        _, off = read_name(msg, off)
        rtype, _cls, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        if rtype == T_OPT:
            do_bit = bool(ttl & 0x8000)
        off += 10 + rdlen
    return qid, flags, qname.lower(), qtype, do_bit


def make_query(name, qtype, qid=0x1234):
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + wire_name(name) + \
        struct.pack("!HH", qtype, 1)


def make_response(query, rcode=0, answers=(), authority=(), ad=False, ra=True, tc=False,
                  aa=False):
    qid, qflags, _, _, _ = parse_query(query)
    qend = 12
    _, qend = read_name(query, 12)
    question = query[12:qend + 4]
    flags = 0x8000 | (qflags & 0x0100) | rcode
    flags |= (0x0080 if ra else 0) | (0x0020 if ad else 0) | (0x0200 if tc else 0)
    flags |= 0x0400 if aa else 0
    hdr = struct.pack("!6H", qid, flags, 1, len(answers), len(authority), 0)
    return hdr + question + b"".join(answers) + b"".join(authority)


def udp_query(server, name, qtype, timeout=1.0):
    """One query over UDP; the raw answer or None."""
    host, port = server.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(make_query(name, qtype), (host, int(port)))
        return s.recvfrom(65535)[0]
    except OSError:
        return None
    finally:
        s.close()


# ---- unbound ----

SOA = "3600 IN SOA ns.{z} hostmaster.{z} 1 3600 600 86400 300"


class Unbound:
    """unbound serving zones {zone: [local-data lines]} on port, else on a
    free one."""

    def __init__(self, zones, threads=1, extra="", port=None):
        self.zones = zones
        self.threads = threads
        self.extra = extra
        self.proc = None
        self.dir = None
        self.port = None
        self.fixed_port = port

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def server_lines(self, modules="iterator", verbosity=0, threads=None):
        """The server: section's start, shared by every unbound here: on
        loopback, in the foreground, unprivileged, every file in self.dir."""
        return [
            "server:",
            "  interface: 127.0.0.1",
            "  port: %d" % self.port,
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            '  directory: "%s"' % self.dir,
            '  pidfile: "%s/unbound.pid"' % self.dir,
            "  use-syslog: no",
            '  logfile: ""',
            "  verbosity: %d" % verbosity,
            "  num-threads: %d" % (threads or self.threads),
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            '  module-config: "%s"' % modules,
            "  so-reuseport: no",
            "  statistics-cumulative: yes",
            "  extended-statistics: yes",
        ]

    def control_lines(self):
        return ["remote-control:", "  control-enable: yes",
                '  control-interface: "%s/ctl.sock"' % self.dir,
                "  control-use-cert: no"]

    def config(self):
        lines = self.server_lines() + ["  minimal-responses: yes"]
        for zone, data in self.zones.items():
            lines.append('  local-zone: "%s." static' % zone)
            lines.append('  local-data: "%s. %s"' % (zone, SOA.format(z=zone + ".")))
            # a record with quoted strings (TXT) goes in single quotes
            lines += [("  local-data: '%s'" if '"' in d else '  local-data: "%s"') % d
                      for d in data]
        lines += [self.extra] + self.control_lines()
        return "\n".join(lines) + "\n"

    def start(self):
        self.dir = util.tempdir("volley-unbound-")
        self.port = self.fixed_port or util.free_port(udp=True)
        self.conf = os.path.join(self.dir, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write(self.config())
        self.log = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = util.start([UNBOUND, "-d", "-c", self.conf], stdout=self.log,
                               stderr=subprocess.STDOUT)
        zone = self.probe_name()
        if util.wait_until(lambda: udp_query(self.server, zone, T_SOA, 0.3), START_WAIT,
                           0.05, proc=self.proc):
            return self
        self.log.seek(0)
        err = self.log.read()
        self.stop()
        raise RuntimeError("unbound did not answer: %s" % err[-2000:])

    def probe_name(self):
        """The name whose SOA start() asks until unbound answers."""
        return next(iter(self.zones))

    def stats(self):
        """unbound-control stats_noreset as a dict of numbers."""
        out = subprocess.run([UNBOUND_CONTROL, "-c", self.conf, "stats_noreset"],
                             capture_output=True, text=True, timeout=10).stdout
        d = {}
        for line in out.splitlines():
            k, _, v = line.partition("=")
            try:
                d[k] = float(v)
            except ValueError:
                pass
        return d

    def queries(self):
        return int(self.stats().get("total.num.queries", -1))

    def stop(self):
        if self.proc:
            util.stop(self.proc, wait=STOP_WAIT)
        if self.dir:
            self.log.close()
            util.remove_dir(self.dir)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- scripted servers ----

class FakeDNS:
    """A DNS server in a thread, answering by name prefix:

    servfail.*  SERVFAIL            refused.*  REFUSED
    lame.*      NOERROR, no answer, an NS referral, RA clear
    big.*       MX: over UDP truncated (TC), over TCP 40 MX hosts, sent in two
                pieces 50 ms apart
    secure.*    MX 10 mx.<name>, its A 127.0.0.5, TLSA 3 1 1 at _25._tcp.mx.<name>,
                all with AD set
    anything else: A 127.0.0.6, else NXDOMAIN with an SOA
    queries: [(qname, qtype, ad_bit, do_bit, transport)] as received.
    """

    def __init__(self):
        self.port = util.free_port(udp=True)
        self.queries = []
        self.stopping = False
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.tcp.settimeout(0.2)
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def answer(self, q, tcp):
        _, flags, name, qtype, do_bit = parse_query(q)
        self.queries.append((name, qtype, bool(flags & 0x20), do_bit,
                             "tcp" if tcp else "udp"))
        first = name.split(".")[0]
        soa = rr("fake.test", T_SOA, 60, wire_name("ns.fake.test") +
                 wire_name("h.fake.test") + struct.pack("!5I", 1, 2, 3, 4, 30))
        if first == "servfail":
            return make_response(q, rcode=2)
        if first == "refused":
            return make_response(q, rcode=5)
        if first == "lame":
            return make_response(q, authority=[rr(name, T_NS, 60, wire_name("ns.elsewhere"))],
                                 ra=False)
        if first == "big" and qtype == T_MX:
            if not tcp:
                return make_response(q, tc=True)
            ans = [rr(name, T_MX, 60, struct.pack("!H", 10 + i % 3) +
                      wire_name("mx%02d-%s.%s" % (i, "x" * 30, name))) for i in range(40)]
            return make_response(q, answers=ans)
        if name.startswith("_25._tcp.mx.secure.") and qtype == T_TLSA:
            data = bytes([3, 1, 1]) + bytes(range(32))
            return make_response(q, answers=[rr(name, T_TLSA, 60, data)], ad=True)
        if first == "secure" and qtype == T_MX:
            return make_response(q, answers=[rr(name, T_MX, 60, struct.pack("!H", 10) +
                                                wire_name("mx." + name))], ad=True)
        if name.startswith("mx.secure.") and qtype == T_A:
            return make_response(q, answers=[rr(name, T_A, 60, bytes([127, 0, 0, 5]))],
                                 ad=True)
        if name.startswith("mx.secure.") or name.startswith("_25._tcp."):
            return make_response(q, authority=[soa], ad=True)
        if qtype == T_A:
            return make_response(q, answers=[rr(name, T_A, 60, bytes([127, 0, 0, 6]))])
        return make_response(q, rcode=3, authority=[soa])

    def _serve_udp(self):
        while not self.stopping:
            try:
                q, addr = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.udp.sendto(self.answer(q, False), addr)
            except (OSError, ValueError, struct.error):
                pass

    def _serve_tcp(self):
        while not self.stopping:
            try:
                c, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(c,), daemon=True).start()

    def _tcp_conn(self, c):
        c.settimeout(3)
        try:
            while not self.stopping:
                hdr = c.recv(2, socket.MSG_WAITALL)
                if len(hdr) < 2:
                    return
                q = c.recv(struct.unpack("!H", hdr)[0], socket.MSG_WAITALL)
                a = self.answer(q, True)
                msg = struct.pack("!H", len(a)) + a
                # In two pieces: the reader must come back for the rest.
                c.sendall(msg[:len(msg) // 2])
                time.sleep(0.05)
                c.sendall(msg[len(msg) // 2:])
        except OSError:
            pass
        finally:
            c.close()


class Blackhole:
    """A UDP 'server' that reads every query and answers none."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._drain, daemon=True)

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def _drain(self):
        while not self.stopping:
            try:
                self.sock.recvfrom(65535)
                self.received += 1
            except socket.timeout:
                continue
            except OSError:
                return

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- volley-resolve ----

def resolve(servers, *args, script=None, timeout=60.0, private=True):
    """Run volley-resolve; returns (JSON lines as objects, stderr)."""
    argv = [RESOLVE]
    for s in ([servers] if isinstance(servers, str) else servers):
        argv += ["--server", s]
    if private:
        argv.append("--allow-private")
    argv += ["--deadline-ms", str(int(timeout * 1000) - 2000)]
    argv += list(args)
    if script is not None:
        argv.append("--script")
    p = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if p.returncode != 0:
        raise RuntimeError("volley-resolve exited %d: %s %s" % (p.returncode, p.stderr,
                                                               p.stdout[-2000:]))
    return lines, p.stderr
