#!/usr/bin/python3
"""The DNSSEC world of volley-bench's dane scenario (docs/bench.md), on
loopback, until SIGTERM (or its parent's death).

    dane-world.py --dir DIR --port SINKPORT --hosts N --domains M

The zone bench.test., signed and served by tests/e2e/dnssec.py's
DnssecWorld (ldns-signzone, NSD, a validating unbound anchored at test.):
  dK.sA.bench.test      MX 10 mx.sA.bench.test   (A = K mod N, K < M)
  mx.sA.bench.test      A 127.0.0.(21+A)         (the sink's addresses)
  _SINKPORT._tcp.mx.sA.bench.test  TLSA 3 1 1 <the sink certificate's key>
The sink's certificate and key are made here: DIR/sink.pem, DIR/sink.key;
NSD's and unbound's folders are made in DIR too.
Once a TLSA answer comes back validated (AD), DIR/resolver holds the
unbound's "127.0.0.1:PORT"; on failure DIR/error holds why. Every process
is stopped by its PID (tests/e2e/util.py).
"""

import argparse
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.e2e import dnsctl, dnssec, util  # noqa: E402


# A bulk sender's local resolver, tuned as unbound's documentation advises
# for heavy load: volleyd asks a job's MX and _mta-sts TXT of every domain
# at once, and past num-queries-per-thread (default 1024) unbound drops
# queries, which then time out (docs/bench.md).
UNBOUND_TUNING = "\n".join([
    "  num-queries-per-thread: 4096",
    "  outgoing-range: 8192",
    "  so-rcvbuf: 4m",
])


def make_cert(d, hosts):
    names = ",".join("DNS:mx.s%d.bench.test" % a for a in range(hosts))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "sink.key", "-out",
                    "sink.pem", "-days", "7", "-subj", "/CN=mx.s0.bench.test",
                    "-addext", "subjectAltName=" + names],
                   cwd=d, check=True, capture_output=True, timeout=30)
    return os.path.join(d, "sink.pem")


def zone_lines(tlsa, port, hosts, domains):
    lines = []
    for a in range(hosts):
        mx = "mx.s%d.bench.test." % a
        lines += ["%s IN A 127.0.0.%d" % (mx, 21 + a),
                  "_%d._tcp.%s IN TLSA %s" % (port, mx, tlsa)]
    lines += ["d%d.s%d.bench.test. IN MX 10 mx.s%d.bench.test." % (k, k % hosts, k % hosts)
              for k in range(domains)]
    return lines


def validated(resolver, name):
    """A TLSA answer for name with the AD bit (asked with AD set)."""
    q = struct.pack("!6H", 0x4242, 0x0120, 1, 0, 0, 0) + dnsctl.wire_name(name) + \
        struct.pack("!HH", dnsctl.T_TLSA, 1)
    host, port = resolver.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        s.sendto(q, (host, int(port)))
        a = s.recvfrom(65535)[0]
    except OSError:
        return False
    finally:
        s.close()
    flags, _, ancount = struct.unpack("!3H", a[2:8])
    return flags & 0xF == 0 and bool(flags & 0x0020) and ancount > 0


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def main(args):
    # Our parent is volley-bench: if it dies, we stop the world (SIGTERM).
    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))
    if os.getppid() == 1:
        return 1
    # NSD's and unbound's folders in ours: the run's folder holds it all.
    tempfile.tempdir = args.dir
    world = None
    try:
        tlsa = dnssec.tlsa_3_1_1(make_cert(args.dir, args.hosts))
        world = dnssec.DnssecWorld(
            {"bench.test": zone_lines(tlsa, args.port, args.hosts, args.domains)},
            unbound_extra=UNBOUND_TUNING).start()
        if not validated(world.resolver, "_%d._tcp.mx.s0.bench.test" % args.port):
            raise RuntimeError("the TLSA answer is not validated:\n" +
                               world.unbound.log_text()[-2000:])
        write(os.path.join(args.dir, "resolver"), world.resolver + "\n")
        while True:
            signal.pause()
    except Exception as e:  # noqa: BLE001 -- said to volley-bench, then we stop
        write(os.path.join(args.dir, "error"), "%s\n" % e)
        return 1
    finally:
        # One SIGTERM is enough (volley-bench's and our parent's death may
        # both come): the world's stop must not be cut short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if world:
            world.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hosts", type=int, required=True)
    ap.add_argument("--domains", type=int, required=True)
    sys.exit(util.run_main(main, ap.parse_args()))
