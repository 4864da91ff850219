"""Private Postfixes for the e2e tests (stdlib only): a smarthost for
volleyd to send through, and a client that submits to volleyd.

Relay   Debian's Postfix, its own config, queue and data folders in a temp
        folder (a system Postfix is untouched), every service unchrooted,
        its log in a file (postlog): smtpd on HOST:PORT in wrapper mode
        (smtpd_tls_wrappermode: implicit TLS, RFC 8314), AUTH required to
        relay (smtpd_tls_auth_only), SASL from a Dovecot auth socket that
        DovecotAuth serves, and everything it accepts relayed on to one
        volley-sink (transport_maps). Started with `postfix -c ETC
        start-fg` as a child, stopped with `postfix -c ETC stop`, then by
        PID.
Bouncer the same private Postfix as a receiving MTA that says 250, then
        bounces (error(8): a failed DSN, 5.1.1) or defers (a delayed DSN,
        4.4.1, after a second): Postfix writes the RFC 3464 DSN itself and
        relays it to volleyd's return-path receiver (transport_maps).
Sender  the same private Postfix (folders, log) as a client of an SMTP submission
        server: what its smtpd on HOST:PORT takes from loopback goes to
        relayhost [IP]:PORT, STARTTLS required, SASL AUTH with a user and
        password from smtp_sasl_password_maps.
DovecotAuth
        Dovecot's authentication protocol (1.2, the part Postfix's smtpd
        speaks) on a Unix socket, in a thread: PLAIN and LOGIN against one
        user and password. Postfix has no SASL server of its own, and
        neither Dovecot nor Cyrus's saslpasswd2 is installed here.

Needs root (Postfix's master). Every address is on 127.0.0.0/8; every wait
is bounded.
"""

import base64
import os
import re
import shutil
import socket
import subprocess
import threading

from . import util

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
START_WAIT = 30.0


def available():
    return os.access(POSTFIX, os.X_OK) and os.geteuid() == 0


class DovecotAuth:
    def __init__(self, path, user, password):
        self.path, self.user, self.password = path, user, password
        self.requests = []     # (mechanism, user, ok) as decided
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)  # smtpd runs as postfix
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _check(self, mech, ident, creds, out):
        """creds: (user, password) or None when malformed."""
        ok = creds == (self.user, self.password)
        self.requests.append((mech, creds[0] if creds else None, ok))
        if ok:
            out.append("OK\t%s\tuser=%s" % (ident, self.user))
        else:
            out.append("FAIL\t%s" % ident)

    def _step(self, state, ident, data, out):
        """One client response (base64) in an exchange; state: [mech, user]."""
        raw = base64.b64decode(data or "")
        if state[0] == "PLAIN":
            parts = raw.split(b"\0")
            creds = (parts[1].decode(), parts[2].decode()) if len(parts) == 3 else None
            self._check("PLAIN", ident, creds, out)
            return True
        if state[1] is None:          # LOGIN: the user name, then the password
            state[1] = raw.decode()
            out.append("CONT\t%s\t%s" % (ident, base64.b64encode(b"Password:").decode()))
            return False
        self._check("LOGIN", ident, (state[1], raw.decode()), out)
        return True

    def _conn(self, c):
        c.settimeout(10)
        c.sendall(("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
                   "SPID\t%d\nCUID\t1\nCOOKIE\t%s\nDONE\n" % (os.getpid(), "0" * 32)).encode())
        exchanges, buf = {}, b""
        try:
            while not self.stopping:
                chunk = c.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    out = []
                    self._line(line.decode(errors="replace").split("\t"), exchanges, out)
                    if out:
                        c.sendall(("\n".join(out) + "\n").encode())
        except OSError:
            pass
        finally:
            c.close()

    def _line(self, f, exchanges, out):
        if f[0] == "AUTH" and len(f) >= 3:
            ident, mech = f[1], f[2].upper()
            args = dict(a.split("=", 1) for a in f[3:] if "=" in a)
            if mech not in ("PLAIN", "LOGIN"):
                out.append("FAIL\t%s\treason=unsupported mechanism" % ident)
                return
            state = exchanges[ident] = [mech, None]
            if "resp" in args:
                if self._step(state, ident, args["resp"], out):
                    exchanges.pop(ident, None)
            elif mech == "LOGIN":
                out.append("CONT\t%s\t%s" % (ident, base64.b64encode(b"Username:").decode()))
            else:
                out.append("CONT\t%s\t" % ident)
        elif f[0] == "CONT" and len(f) >= 2 and f[1] in exchanges:
            if self._step(exchanges[f[1]], f[1], f[2] if len(f) > 2 else "", out):
                exchanges.pop(f[1], None)


MASTER_SERVICES = [
    "pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup",
    "qmgr unix n - n 300 1 qmgr", "tlsmgr unix - - n 1000? 1 tlsmgr",
    "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
    "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
    "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
    "proxymap unix - - n - - proxymap", "proxywrite unix - - n - 1 proxymap",
    "smtp unix - - n - - smtp", "relay unix - - n - - smtp",
    "showq unix n - n - - showq", "error unix - - n - - error",
    "retry unix - - n - - error", "discard unix - - n - - discard",
    "local unix - n n - - local", "anvil unix - - n - 1 anvil",
    "scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd"]


class _Postfix:
    """What every private Postfix here shares: its folders, the parts of
    main.cf that keep it away from the system's, master.cf with one smtpd
    on host:port, start-fg and stop. Subclasses give the rest."""

    SMTPD_ARGS = ""          # -o options of the smtpd line in master.cf
    CHECK = True             # `postfix check` first (start-fg checks too, slowly)

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.proc = self.auth = None
        self.dir = None

    def _paths(self):
        d = self.dir
        return d, os.path.join(d, "etc"), os.path.join(d, "queue"), os.path.join(d, "maillog")

    def _write(self, name, text):
        with open(os.path.join(self.etc, name), "w") as f:
            f.write(text)

    def _base_main(self, hostname, domain):
        return [
            "compatibility_level = 3.6",
            "config_directory = %s" % self.etc,
            "queue_directory = %s" % self.queue,
            "data_directory = %s/data" % self.dir,
            "maillog_file = %s" % self.log,
            "maillog_file_prefixes = %s" % self.dir,
            "myhostname = %s" % hostname, "mydomain = %s" % domain,
            # 127.0.0.1: Postfix wants an interface address; smtpd binds to
            # its own host:port in master.cf whatever this says
            "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
            "mydestination =", "relay_domains =",
            "local_transport = error:local delivery is disabled",
            "alias_maps =", "alias_database =", "biff = no",
            "smtpd_peername_lookup = no",
            "queue_run_delay = 1s", "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s"]

    def _configure(self):
        raise NotImplementedError

    def _prepare(self):
        """Before start-fg: what the configuration needs in place."""

    def start(self):
        self.dir = util.tempdir("volley-postfix-")
        os.chmod(self.dir, 0o755)       # the postfix user goes through to data/
        self.dir, self.etc, self.queue, self.log = self._paths()
        for d in (self.etc, self.queue):
            os.makedirs(d, mode=0o755)
        self._configure()
        self._write("master.cf", "\n".join(
            ["%s:%d inet n - n - - smtpd%s" % (self.host, self.port, self.SMTPD_ARGS)] +
            MASTER_SERVICES + [""]))
        if self.CHECK:
            p = subprocess.run([POSTFIX, "-c", self.etc, "check"], capture_output=True,
                               text=True, timeout=60)
            if p.returncode != 0:
                raise RuntimeError("postfix check: %s %s" % (p.stdout, p.stderr))
        self._prepare()
        self.out = open(os.path.join(self.dir, "postfix.out"), "w")
        self.proc = util.start([POSTFIX, "-c", self.etc, "start-fg"], stdout=self.out,
                               stderr=subprocess.STDOUT)
        if not util.wait_port(self.host, self.port, START_WAIT, proc=self.proc):
            err = self.log_text()[-2000:]
            self.stop()
            raise RuntimeError("postfix did not listen on %s:%d: %s"
                               % (self.host, self.port, err))
        return self

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, timeout=30)
            util.stop_tree(self.proc, wait=10)
            self.proc = None
            self.out.close()
        if self.auth:
            self.auth.stop()
            self.auth = None
        if self.dir:
            util.remove_dir(self.dir)
            self.dir = None


class Relay(_Postfix):
    """A private Postfix: smtps (wrapper mode) on host:port with cert/key,
    AUTH as user/password required, relaying to [sink_host]:sink_port."""

    SMTPD_ARGS = " -o smtpd_tls_wrappermode=yes"

    def __init__(self, host, port, cert, key, sink_host, sink_port, user="u",
                 password="p"):
        super().__init__(host, port)
        self.cert, self.key = cert, key
        self.sink = (sink_host, sink_port)
        self.user, self.password = user, password

    def _configure(self):
        self._write("main.cf", "\n".join(self._base_main("relay.smart.test", "smart.test") + [
            "mynetworks =",
            "transport_maps = regexp:%s/transport" % self.etc,
            "smtp_tls_security_level = none",
            # relaying only after AUTH, AUTH only inside TLS
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions = permit_sasl_authenticated, reject",
            "smtpd_sasl_auth_enable = yes", "smtpd_sasl_type = dovecot",
            "smtpd_sasl_path = private/auth", "smtpd_tls_auth_only = yes",
            "smtpd_tls_chain_files = %s, %s" % (self.key, self.cert),
            "smtpd_tls_security_level = encrypt",
            "smtpd_tls_received_header = yes", "smtpd_tls_loglevel = 1", ""]))
        self._write("transport", "/./ smtp:[%s]:%d\n" % self.sink)
        # the key is read by smtpd: Postfix wants it root's, not world-readable
        os.chmod(self.key, 0o600)

    def _prepare(self):
        os.makedirs(os.path.join(self.queue, "private"), exist_ok=True)
        self.auth = DovecotAuth(os.path.join(self.queue, "private", "auth"), self.user,
                                self.password).start()


class Sender(_Postfix):
    """A private Postfix as a submission client: its smtpd on host:port
    takes mail from 127.0.0.0/8 without AUTH and relays all of it to
    relayhost [relay_host]:relay_port with STARTTLS required
    (smtp_tls_security_level = encrypt) and SASL AUTH as user/password
    (Cyrus SASL's client plugins, libsasl2-modules: PLAIN, LOGIN); senders
    in by_sender ({address: (user, password)}) authenticate as theirs
    (smtp_sender_dependent_authentication). No separate `postfix check`:
    start-fg runs the same checks."""

    CHECK = False

    def __init__(self, host, port, relay_host, relay_port, user, password, by_sender=None):
        super().__init__(host, port)
        self.relay = "[%s]:%d" % (relay_host, relay_port)
        self.user, self.password = user, password
        self.by_sender = dict(by_sender or {})

    def _configure(self):
        self._write("main.cf", "\n".join(self._base_main("sender.client.test", "client.test") + [
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject",
            "relayhost = %s" % self.relay,
            "smtp_sasl_auth_enable = yes",
            "smtp_sasl_password_maps = texthash:%s/sasl_passwd" % self.etc,
            "smtp_sender_dependent_authentication = %s" % ("yes" if self.by_sender else "no"),
            # PLAIN and LOGIN are fine inside TLS (the default refuses them)
            "smtp_sasl_security_options = noanonymous",
            "smtp_sasl_tls_security_options = noanonymous",
            "smtp_tls_security_level = encrypt", "smtp_tls_loglevel = 1", ""]))
        lines = ["%s %s:%s" % (a, u, p) for a, (u, p) in self.by_sender.items()]
        self._write("sasl_passwd", "\n".join(
            lines + ["%s %s:%s" % (self.relay, self.user, self.password), ""]))
        os.chmod(os.path.join(self.etc, "sasl_passwd"), 0o600)


class Bouncer(_Postfix):
    """A private Postfix that says 250 and bounces later, as a receiving
    MTA does when it accepts and then cannot deliver: its smtpd on
    host:port takes every recipient of `domains` (relay_domains, from
    anywhere), and the queue manager hands them to Postfix's error(8)
    service (transport_maps), so Postfix's bounce daemon writes the RFC
    3464 DSN to the envelope sender itself. The DSN's way out: the
    `return_domains` (the VERP domain) go to [return_host]:return_port
    (volleyd's return-path receiver), with smtp_tls_security_level =
    return_tls ("none", "may", or "encrypt": STARTTLS required, the
    certificate not checked).

    Its name (HELO, Reporting-MTA, MAILER-DAEMON@) is bouncer.DOMAIN, after
    the first of domains.

    mode "fail": `error:5.1.1 ...`, a failed DSN (Status 5.1.1) at once.
    mode "delay": `retry:4.4.1 ...` (the error service in its deferring
    mode), retried every second, and delay_warning_time = 1s, so Postfix
    sends a delayed DSN (Action: delayed, Status 4.4.1) a second or two
    after the message came in; the message stays queued until stop()."""

    CHECK = False
    FAIL_TEXT = "5.1.1 mailbox unavailable (volley test bouncer)"
    DELAY_TEXT = "4.4.1 host not reachable (volley test bouncer)"

    def __init__(self, host, port, domains, return_host, return_port, return_domains,
                 mode="fail", return_tls="none"):
        super().__init__(host, port)
        if mode not in ("fail", "delay"):
            raise ValueError("mode: fail or delay")
        self.domains, self.return_domains = list(domains), list(return_domains)
        self.ret = "[%s]:%d" % (return_host, return_port)
        self.mode = mode
        self.return_tls = return_tls

    def _configure(self):
        dom = self.domains[0]
        self._write("main.cf", "\n".join(self._base_main("bouncer." + dom, dom) + [
            "mynetworks = 127.0.0.0/8",
            "relay_domains = %s" % ", ".join(self.domains),
            "smtpd_relay_restrictions = permit_auth_destination, reject",
            # the error transport would be seen at RCPT (550): accept, bounce later
            "smtpd_reject_unlisted_recipient = no",
            "transport_maps = texthash:%s/transport" % self.etc,
            "smtp_tls_security_level = %s" % self.return_tls, "smtp_tls_loglevel = 1",
            # the delay mode: warn after a second in the queue (qmgr checks
            # it at each deferral, and deferrals come every second)
            "delay_warning_time = 1s",
            "maximal_queue_lifetime = 1h", "bounce_queue_lifetime = 1h", ""]))
        what = ("error:" + self.FAIL_TEXT) if self.mode == "fail" else ("retry:" + self.DELAY_TEXT)
        lines = ["%s %s" % (d, what) for d in self.domains]
        lines += ["%s smtp:%s" % (d, self.ret) for d in self.return_domains]
        self._write("transport", "\n".join(lines + [""]))


class Receiver(_Postfix):
    """A private Postfix as the receiving MTA of `domains`: its smtpd on
    host:port takes every recipient of them from loopback, and the queue
    manager hands them to discard(8). Its log says what came in: the queue
    manager's `nrcpt=N` per message, and a `to=<...>, ... status=sent`
    line per recipient (messages())."""

    CHECK = False

    def __init__(self, host, port, domains):
        super().__init__(host, port)
        self.domains = list(domains)

    def _configure(self):
        dom = self.domains[0]
        self._write("main.cf", "\n".join(self._base_main("mx." + dom, dom) + [
            "mynetworks = 127.0.0.0/8",
            "relay_domains = %s" % ", ".join(self.domains),
            "smtpd_relay_restrictions = permit_auth_destination, reject",
            "smtpd_reject_unlisted_recipient = no",
            "transport_maps = texthash:%s/transport" % self.etc, ""]))
        self._write("transport", "\n".join("%s discard:" % d for d in self.domains) + "\n")

    def messages(self):
        """{queue id: (nrcpt, [recipients delivered])} from the log, for
        the messages whose queue manager line is in it."""
        nrcpt, rcpts = {}, {}
        for line in self.log_text().splitlines():
            m = re.search(r" ([0-9A-F]{6,}): from=<[^>]*>, size=\d+, nrcpt=(\d+)", line)
            if m:
                nrcpt[m.group(1)] = int(m.group(2))
            m = re.search(r" ([0-9A-F]{6,}): to=<([^>]*)>,.* status=sent ", line)
            if m:
                rcpts.setdefault(m.group(1), []).append(m.group(2))
        return {q: (n, rcpts.get(q, [])) for q, n in nrcpt.items()}
