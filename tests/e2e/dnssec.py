"""A DNSSEC-signed DNS world on loopback, for the DANE tests (stdlib only).

DnssecWorld   zones under one made-up top-level domain (default "test."),
              signed at start with ldns (ldns-keygen, ldns-signzone;
              ECDSAP256SHA256, one key per zone with the SEP flag), served by
              NSD, validated by unbound from one trust anchor (the DS of the
              top zone's key):

    with DnssecWorld({"secure.test": ["mx.secure.test. 300 IN A 127.0.0.2", ...],
                      "bogus.test": [...], "expired.test": [...],
                      "plain.test": [...]},
                     bogus=["bogus.test"], expired=["expired.test"],
                     unsigned=["plain.test"]) as w:
        w.resolver       # "127.0.0.1:PORT": the validating unbound (dns.servers)

  Each zone gets its SOA and NS (ns.<tld>., served by the NSD) and is
  delegated from its parent (the longest other zone above it, else the top
  zone), with the DS of its key unless it is unsigned. Records are zone-file
  lines, absolute names best ($ORIGIN is the zone, $TTL 300).
    secure      signed; the chain of trust runs from the anchor: answers
                come with AD.
    unsigned    not signed and delegated without DS (the parent's NSEC
                proves there is none): insecure, answers without AD.
    bogus       signed, then its A, AAAA, MX, TLSA and TXT records altered
                in the signed file (the RRSIGs no longer match): unbound
                answers SERVFAIL.
    expired     signed with signatures that expired a week ago: SERVFAIL.
  unbound_extra: "server:" lines for every unbound (volley-bench's tuning).
  w.add_resolver(anchor=None) starts another validating unbound on the same
  NSD: anchor "wrong" (the DS of a key that signs nothing: everything under
  the top zone is bogus) or None (no anchor: everything insecure). The
  world stops these too.

Nsd                NSD on host:<free port> for zone files, unprivileged
                   (username ""), every file in its folder; stopped by PID
                   with the processes it forks (util.stop_tree).
ValidatingUnbound  unbound as a validating recursive resolver: stub zones to
                   the NSD, trust-anchor lines, val-log-level 2 in its log.
tlsa(), tlsa_3_1_1(), tlsa_2_0_1()
                   TLSA record data for a PEM certificate: SHA-256 of its
                   SubjectPublicKeyInfo or of the whole certificate.

Every address is on 127.0.0.0/8; every wait is bounded; every process is
stopped by its PID and every file is in a temporary folder removed at stop.
"""

import hashlib
import ipaddress
import os
import shutil
import ssl
import struct
import subprocess
import time

from . import dnsctl, util

NSD = shutil.which("nsd") or "/usr/sbin/nsd"
KEYGEN = shutil.which("ldns-keygen") or "/usr/bin/ldns-keygen"
SIGNZONE = shutil.which("ldns-signzone") or "/usr/bin/ldns-signzone"
KEY2DS = shutil.which("ldns-key2ds") or "/usr/bin/ldns-key2ds"
START_WAIT = 15.0
STOP_WAIT = 5.0
ALGORITHM = "ECDSAP256SHA256"         # 13: small keys, fast signing
TTL = 300


def _run(argv, cwd, timeout=20):
    p = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(map(str, argv)), p.returncode,
                                                 (p.stderr or p.stdout)[-2000:]))
    return p.stdout


def rcode_aa(msg):
    """(rcode, AA bit) of a DNS message."""
    flags = struct.unpack("!H", msg[2:4])[0]
    return flags & 0xF, bool(flags & 0x0400)


# ---- NSD ----

class Nsd:
    """NSD serving {zone: zone file path} on host:port (a free port unless
    given), its configuration, pidfile, xfrd state and log in folder."""

    def __init__(self, folder, zones, host="127.0.0.1", port=None):
        self.dir = folder
        self.zones = zones
        self.host = host
        self.port = port
        self.proc = None

    @property
    def server(self):
        return "%s:%d" % (self.host, self.port)

    def config(self):
        d = self.dir
        lines = [
            "server:",
            "  ip-address: %s" % self.host,
            "  port: %d" % self.port,
            '  username: ""',
            '  chroot: ""',
            '  zonesdir: "%s"' % d,
            '  database: ""',
            '  zonelistfile: "%s/zone.list"' % d,
            '  xfrdfile: "%s/xfrd.state"' % d,
            '  xfrdir: "%s"' % d,
            '  pidfile: "%s/nsd.pid"' % d,
            '  logfile: "%s/nsd.log"' % d,
            "  server-count: 1",
            "  do-ip6: no",
            "  reuseport: no",
            "  minimal-responses: yes",
            "  hide-version: yes",
            "  verbosity: 1",
            "remote-control:",
            "  control-enable: no",
        ]
        for zone, path in self.zones.items():
            lines += ["zone:", "  name: %s." % zone.rstrip("."), '  zonefile: "%s"' % path]
        return "\n".join(lines) + "\n"

    def answers(self):
        """True once every zone's SOA comes back authoritative."""
        for zone in self.zones:
            a = dnsctl.udp_query(self.server, zone, dnsctl.T_SOA, 0.3)
            if not a or rcode_aa(a) != (0, True):
                return False
        return True

    def start(self):
        self.port = self.port or util.free_port(self.host, udp=True)
        self.conf = os.path.join(self.dir, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write(self.config())
        self.stderr = open(os.path.join(self.dir, "nsd.stderr"), "w+")
        self.proc = util.start([NSD, "-d", "-c", self.conf], stdout=self.stderr,
                               stderr=subprocess.STDOUT)
        if util.wait_until(self.answers, START_WAIT, 0.05, proc=self.proc):
            return self
        err = self.log()
        self.stop()
        raise RuntimeError("nsd did not answer: %s" % err[-2000:])

    def log(self):
        out = ""
        for name in ("nsd.stderr", "nsd.log"):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    out += f.read()
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc:
            util.stop_tree(self.proc, wait=STOP_WAIT)
            self.proc = None
            self.stderr.close()


# ---- unbound ----

class ValidatingUnbound(dnsctl.Unbound):
    """unbound as a validating resolver: 'validator iterator', stub zones
    {zone: "ip@port"}, trust-anchor lines (none: nothing validates, all is
    insecure), val-log-level 2 (why an answer is bogus, in its log)."""

    def __init__(self, stubs, anchors=(), extra=""):
        super().__init__({z: [] for z in stubs}, extra=extra)
        self.stubs = stubs
        self.anchors = list(anchors)

    def probe_name(self):
        # Any answer will do, SERVFAIL too (a bogus or missing anchor).
        return min(self.stubs, key=lambda z: z.count("."))

    def config(self):
        lines = self.server_lines("validator iterator", verbosity=1, threads=1) + [
            "  val-log-level: 2",
            "  do-not-query-localhost: no",
            "  harden-dnssec-stripped: yes",
            "  trust-anchor-signaling: no",
            "  qname-minimisation: no",
        ]
        # test., invalid., onion. and the like are unbound's own empty
        # zones (RFC 6761) unless told otherwise.
        lines += ['  local-zone: "%s." nodefault' % z.rstrip(".")
                  for z in self.stubs if z.count(".") == 0]
        lines += ['  trust-anchor: "%s"' % a for a in self.anchors]
        lines.append(self.extra)
        for zone, addr in self.stubs.items():
            lines += ["stub-zone:", '  name: "%s."' % zone.rstrip("."),
                      "  stub-addr: %s" % addr]
        lines += self.control_lines()
        return "\n".join(lines) + "\n"

    def log_text(self):
        """What unbound has logged so far (validation failures among it)."""
        if not self.dir:
            return ""
        self.log.flush()
        with open(os.path.join(self.dir, "stderr")) as f:
            return f.read()


# ---- zones and keys ----

def _parent(zone, zones, tld):
    above = [z for z in zones if zone != z and zone.endswith("." + z)]
    return max(above, key=len) if above else tld


def _alter(line):
    """A signed zone's line with its data changed, if it is of a type that
    can be (A, AAAA, MX, TLSA, TXT); else None."""
    parts = line.split(None, 4)
    if len(parts) < 5 or line.startswith(";"):
        return None
    name, ttl, cls, rtype, data = parts
    rtype = rtype.upper()
    if rtype == "A":
        ip = ipaddress.IPv4Address(data.strip())
        data = str(ipaddress.IPv4Address(int(ip) ^ 1))
    elif rtype == "AAAA":
        ip = ipaddress.IPv6Address(data.strip())
        data = str(ipaddress.IPv6Address(int(ip) ^ 1))
    elif rtype == "MX":
        pref, host = data.split(None, 1)
        data = "%d %s" % (int(pref) + 1, host)
    elif rtype == "TLSA":
        head, _, hexdata = data.strip().rpartition(" ")
        data = head + " " + hexdata[:-1] + ("0" if hexdata[-1] != "0" else "1")
    elif rtype == "TXT":
        data = data.strip() + ' "altered"'
    else:
        return None
    return "\t".join((name, ttl, cls, rtype, data))


class DnssecWorld:
    """Signed zones under tld on NSD, validated by unbound (see the module's
    documentation). zones: {name: [zone-file lines]} (the tld itself may be
    given, for records of its own); bogus, expired, unsigned: zone names."""

    def __init__(self, zones, bogus=(), expired=(), unsigned=(), tld="test",
                 host="127.0.0.1", unbound_extra=""):
        self.tld = tld.strip(".").lower()
        self.zones = {z.strip(".").lower(): list(r) for z, r in zones.items()}
        self.zones.setdefault(self.tld, [])
        self.bogus = {z.strip(".").lower() for z in bogus}
        self.expired = {z.strip(".").lower() for z in expired}
        self.unsigned = {z.strip(".").lower() for z in unsigned}
        for z in self.zones:
            if z != self.tld and not z.endswith("." + self.tld):
                raise ValueError("zone %s is not under %s." % (z, self.tld))
        for z in self.bogus | self.expired | self.unsigned:
            if z not in self.zones or z == self.tld:
                raise ValueError("%s is not a zone below %s." % (z, self.tld))
        self.host = host
        self.unbound_extra = unbound_extra   # server: lines for every unbound
        self.dir = None
        self.nsd = None
        self.unbound = None
        self.others = []
        self.keys = {}                # zone -> key base name (in self.dir)
        self.ds = {}                  # zone -> its DS record line
        self.anchor = None            # the tld's DS: the trust anchor

    @property
    def resolver(self):
        """"127.0.0.1:PORT" of the validating unbound."""
        return self.unbound.server

    @property
    def authoritative(self):
        """"HOST:PORT" of NSD (no recursion, no validation)."""
        return self.nsd.server

    # -- keys and signing --

    def _keygen(self, zone):
        before = set(os.listdir(self.dir))
        _run([KEYGEN, "-a", ALGORITHM, "-k", zone + "."], self.dir)
        made = [f for f in set(os.listdir(self.dir)) - before if f.endswith(".key")]
        if len(made) != 1:
            raise RuntimeError("ldns-keygen for %s made %s" % (zone, made))
        base = made[0][:-len(".key")]
        ds = _run([KEY2DS, "-n", "-2", base + ".key"], self.dir).split()
        # "zone. TTL? IN DS tag alg type digest": keep the owner and the data.
        i = ds.index("DS")
        return base, "%s. IN DS %s" % (zone, " ".join(ds[i + 1:]))

    def _zone_text(self, zone):
        lines = ["$ORIGIN %s." % zone, "$TTL %d" % TTL,
                 "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 %d"
                 % (self.tld, self.tld, TTL),
                 "@ IN NS ns.%s." % self.tld]
        if zone == self.tld:
            lines.append("ns.%s. IN A %s" % (self.tld, self.host))
        lines += self.zones[zone]
        for child in self.zones:
            if child != self.tld and _parent(child, self.zones, self.tld) == zone:
                lines.append("%s. IN NS ns.%s." % (child, self.tld))
                if child not in self.unsigned:
                    lines.append(self.ds[child])
        return "\n".join(lines) + "\n"

    def _sign(self, zone):
        src = os.path.join(self.dir, zone + ".zone")
        with open(src, "w") as f:
            f.write(self._zone_text(zone))
        if zone in self.unsigned:
            return src
        out = src + ".signed"
        now = int(time.time())
        if zone in self.expired:
            inception, expiration = now - 14 * 86400, now - 7 * 86400
        else:
            inception, expiration = now - 3600, now + 7 * 86400
        _run([SIGNZONE, "-i", inception, "-e", expiration, "-f", out, src, self.keys[zone]],
             self.dir)
        if zone in self.bogus:
            with open(out) as f:
                lines = f.read().splitlines()
            changed = 0
            for i, line in enumerate(lines):
                new = _alter(line)
                if new is not None:
                    lines[i], changed = new, changed + 1
            if not changed:
                raise ValueError("bogus zone %s has no A/AAAA/MX/TLSA/TXT record to alter"
                                 % zone)
            with open(out, "w") as f:
                f.write("\n".join(lines) + "\n")
        return out

    # -- life --

    def start(self):
        self.dir = util.tempdir("volley-dnssec-")
        try:
            for zone in self.zones:
                if zone not in self.unsigned:
                    self.keys[zone], self.ds[zone] = self._keygen(zone)
            self.anchor = self.ds[self.tld]
            files = {z: self._sign(z) for z in self.zones}
            self.nsd = Nsd(self.dir, files, host=self.host).start()
            self.unbound = self.add_resolver(anchor=self.anchor)
        except BaseException:
            self.stop()
            raise
        return self

    def add_resolver(self, anchor="wrong"):
        """Another validating unbound on this world's NSD, started; anchor:
        a trust-anchor line, "wrong" (the DS of a key that signs nothing) or
        None (no anchor at all). Stopped with the world."""
        if anchor == "wrong":
            sub = os.path.join(self.dir, "wrong")
            os.makedirs(sub, exist_ok=True)
            before = set(os.listdir(sub))
            _run([KEYGEN, "-a", ALGORITHM, "-k", self.tld + "."], sub)
            key = [f for f in set(os.listdir(sub)) - before if f.endswith(".key")][0]
            ds = _run([KEY2DS, "-n", "-2", key], sub).split()
            anchor = "%s. IN DS %s" % (self.tld, " ".join(ds[ds.index("DS") + 1:]))
        stubs = {z: "%s@%d" % (self.nsd.host, self.nsd.port) for z in self.zones}
        u = ValidatingUnbound(stubs, [anchor] if anchor else [], extra=self.unbound_extra)
        self.others.append(u)
        return u.start()

    def stop(self):
        for u in reversed(self.others):
            u.stop()
        self.others = []
        if self.nsd:
            self.nsd.stop()
            self.nsd = None
        if self.dir:
            util.remove_dir(self.dir)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- TLSA data (RFC 6698 2.1) ----

def _tlv(der, off):
    """(content start, content end) of the DER element at off."""
    n = der[off + 1]
    start = off + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(der[start:start + k], "big")
        start += k
    return start, start + n


def cert_der(pem_path):
    """The first certificate of a PEM file, DER-encoded."""
    with open(pem_path) as f:
        text = f.read()
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(text[:text.index(end) + len(end)])


def spki_der(der):
    """A certificate's SubjectPublicKeyInfo, DER-encoded (RFC 5280 4.1)."""
    s, _ = _tlv(der, 0)                  # Certificate
    off, end = _tlv(der, s)              # tbsCertificate
    fields = []
    while off < end:
        fields.append(off)
        off = _tlv(der, off)[1]
    if der[fields[0]] == 0xA0:           # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    spki = fields[5]
    return der[spki:_tlv(der, spki)[1]]


def tlsa(pem_path, usage, selector, mtype):
    """"usage selector mtype hex" for the certificate in pem_path: selector 0
    the whole certificate, 1 its SubjectPublicKeyInfo; mtype 0 the data, 1
    SHA-256, 2 SHA-512."""
    der = cert_der(pem_path)
    data = der if selector == 0 else spki_der(der)
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return "%d %d %d %s" % (usage, selector, mtype, data.hex())


def tlsa_3_1_1(pem_path):
    """DANE-EE(3) SPKI(1) SHA-256(1): the server's own key."""
    return tlsa(pem_path, 3, 1, 1)


def tlsa_2_0_1(pem_path):
    """DANE-TA(2) Cert(0) SHA-256(1): a trust anchor (CA) certificate."""
    return tlsa(pem_path, 2, 0, 1)


def tlsa_2_1_1(pem_path):
    """DANE-TA(2) SPKI(1) SHA-256(1): a trust anchor's key."""
    return tlsa(pem_path, 2, 1, 1)
