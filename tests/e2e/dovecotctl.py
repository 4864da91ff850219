"""A private Dovecot IMAP server for the e2e tests (stdlib only).

Dovecot     Debian's dovecot (dovecot-core, dovecot-imapd) with its own
            configuration, base_dir, state and log under a temporary
            folder; nothing of the system's is read or written. It listens
            on host: an imap port (STARTTLS offered; plaintext LOGIN refused
            before TLS) and an imaps port (implicit TLS), TLS 1.2 or newer
            with a certificate the caller gives (tests/e2e/pki.py's TestCA);
            one passwd-file user; maildir storage in the temporary folder.
            Started as a child with `dovecot -F -c CONF`, stopped by PID.
            Run as root, its login and mail processes take Debian's dovenull
            and dovecot users; unprivileged, every process is the caller.
Client      /usr/bin/python3's imaplib (Debian's Python) in a subprocess:
            APPEND, flags, folders, UIDVALIDITY, over implicit TLS with the
            test CA verified. (The `python3` on PATH may be another build.)

Every wait is bounded; every process started is stopped by its PID.
"""

import json
import os
import pwd
import re
import shutil
import subprocess
import textwrap

from . import util

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
IMAPD = "/usr/lib/dovecot/imap"
DEBIAN_PYTHON = "/usr/bin/python3"
START_WAIT = 20.0


def available():
    return os.access(DOVECOT, os.X_OK) and os.access(IMAPD, os.X_OK) and \
        os.access(DEBIAN_PYTHON, os.X_OK)


class Dovecot:
    def __init__(self, cert, key, ca, host="127.0.0.1", user="fbl", password="s3cret",
                 capability=None):
        """capability: the post-login CAPABILITY to announce instead of
        Dovecot's own (imap_capability), e.g. one without MOVE and UIDPLUS."""
        self.cert, self.key, self.ca = cert, key, ca
        self.capability = capability
        self.host, self.user, self.password = host, user, password
        self.proc = self.dir = None
        self.imap_port = self.imaps_port = None

    def _users(self):
        """(login user, internal user, mail uid, mail gid)."""
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid
        dv = pwd.getpwnam("dovecot")
        return "dovenull", "dovecot", dv.pw_uid, dv.pw_gid

    def start(self):
        self.dir = util.tempdir("volley-dovecot-")
        os.chmod(self.dir, 0o755)
        login, internal, uid, gid = self._users()
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.dir, sub), mode=0o755)
        mail = os.path.join(self.dir, "mail")
        if os.geteuid() == 0:
            os.chown(mail, uid, gid)
        # the key stays readable by dovecot's config process (root or us)
        shutil.copy(self.cert, os.path.join(self.dir, "cert.pem"))
        shutil.copy(self.key, os.path.join(self.dir, "key.pem"))
        os.chmod(os.path.join(self.dir, "key.pem"), 0o600)
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write("%s:{PLAIN}%s::::::\n" % (self.user, self.password))
        self.imap_port = util.free_port(self.host)
        self.imaps_port = util.free_port(self.host)
        while self.imaps_port == self.imap_port:
            self.imaps_port = util.free_port(self.host)
        d = self.dir
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(textwrap.dedent("""\
                base_dir = {d}/run
                state_dir = {d}/state
                log_path = {d}/dovecot.log
                info_log_path = {d}/dovecot.log
                instance_name = volley-test-{port}
                protocols = imap
                listen = {host}
                ssl = yes
                ssl_cert = <{d}/cert.pem
                ssl_key = <{d}/key.pem
                ssl_min_protocol = TLSv1.2
                disable_plaintext_auth = yes
                auth_mechanisms = plain login
                login_log_format_elements = user=<%u> method=%m rip=%r lip=%l lport=%{{local_port}} mpid=%e %c
                default_login_user = {login}
                default_internal_user = {internal}
                default_internal_group = {internal_group}
                first_valid_uid = {uid}
                last_valid_uid = {uid}
                first_valid_gid = 0
                mail_location = maildir:{d}/mail/%u
                mail_uid = {uid}
                mail_gid = {gid}
                passdb {{
                  driver = passwd-file
                  args = scheme=PLAIN {d}/passwd
                }}
                userdb {{
                  driver = static
                  args = uid={uid} gid={gid} home={d}/mail/%u
                }}
                service imap-login {{
                  chroot =
                  inet_listener imap {{
                    port = {imap}
                  }}
                  inet_listener imaps {{
                    port = {imaps}
                    ssl = yes
                  }}
                }}
                service anvil {{
                  chroot =
                }}
                namespace inbox {{
                  inbox = yes
                  separator = /
                }}
                """).format(d=d, host=self.host, login=login, internal=internal,
                            internal_group=internal if os.geteuid() == 0 else
                            _group_of(internal), uid=uid, gid=gid, imap=self.imap_port,
                            imaps=self.imaps_port, port=self.imaps_port))
        if self.capability:
            with open(self.conf, "a") as f:
                f.write("imap_capability = %s\n" % self.capability)
        self.out = open(os.path.join(d, "dovecot.out"), "w")
        self.proc = util.start([DOVECOT, "-F", "-c", self.conf], stdout=self.out,
                               stderr=subprocess.STDOUT)
        if not util.wait_port(self.host, self.imaps_port, START_WAIT, proc=self.proc) or \
                not util.wait_port(self.host, self.imap_port, START_WAIT, proc=self.proc):
            err = self.log_text()[-2000:]
            self.stop()
            raise RuntimeError("dovecot did not listen: %s" % err)
        return self

    def log_text(self):
        text = ""
        for name in ("dovecot.out", "dovecot.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def logins(self):
        """Dovecot's login lines: (user, local port, secured: "TLS" seen)."""
        out = []
        for line in self.log_text().splitlines():
            if "imap-login:" in line and "Login: user=" in line:
                u = re.search(r"user=<([^>]*)>", line)
                p = re.search(r"lport=(\d+)", line)
                out.append((u.group(1) if u else None, int(p.group(1)) if p else None,
                            "TLS" in line))
        return out

    def maildir(self, folder="INBOX"):
        base = os.path.join(self.dir, "mail", self.user)
        return base if folder == "INBOX" else os.path.join(base, "." + folder.replace("/", "."))

    def stop(self):
        if self.proc is not None:
            util.stop_tree(self.proc, wait=10)
            self.proc = None
            self.out.close()
        if self.dir:
            util.remove_dir(self.dir)
            self.dir = None

    # ---- the client: Debian's Python's imaplib in a subprocess ----

    def client(self, ops, timeout=60):
        """Runs ops (a list of [op, args...]) in one IMAP session over
        implicit TLS as the user; returns the list of their results.
        ops: ["append", folder, message(str), flags] -> uid or None;
        ["list", folder] -> [{"uid", "flags", "size"}...] (folder missing: None);
        ["uidvalidity", folder] -> int; ["create", folder]; ["delete", folder];
        ["rename", old, new]; ["body", folder, uid] -> message text."""
        args = json.dumps({"host": self.host, "port": self.imaps_port, "ca": self.ca,
                           "user": self.user, "password": self.password, "ops": ops})
        p = subprocess.run([DEBIAN_PYTHON, "-I", "-c", _CLIENT], input=args, text=True,
                           capture_output=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("imap client: %s" % p.stderr[-2000:])
        return json.loads(p.stdout)

    def append(self, message, folder="INBOX", flags=""):
        return self.client([["append", folder, message, flags]])[0]

    def messages(self, folder="INBOX"):
        return self.client([["list", folder]])[0]


def _group_of(user):
    import grp
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


_CLIENT = r'''
import imaplib, json, re, ssl, sys
a = json.load(sys.stdin)
ctx = ssl.create_default_context(cafile=a["ca"])
ctx.check_hostname = False
m = imaplib.IMAP4_SSL(a["host"], a["port"], ssl_context=ctx, timeout=30)
m.login(a["user"], a["password"])
out = []

def q(f):
    return '"' + f.replace("\\", "\\\\").replace('"', '\\"') + '"'

for op in a["ops"]:
    k = op[0]
    if k == "append":
        typ, data = m.append(q(op[1]), op[3] or None, None, op[2].encode())
        uid = None
        mm = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        if mm:
            uid = int(mm.group(1))
        out.append(uid)
    elif k == "list":
        typ, _ = m.select(q(op[1]), readonly=True)
        if typ != "OK":
            out.append(None)
            continue
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
        rows = []
        for d in data:
            if not d:
                continue
            d = d if isinstance(d, bytes) else d[0]
            u = re.search(rb"UID (\d+)", d)
            fl = re.search(rb"FLAGS \(([^)]*)\)", d)
            sz = re.search(rb"RFC822.SIZE (\d+)", d)
            if u:
                rows.append({"uid": int(u.group(1)),
                             "flags": fl.group(1).decode().split() if fl else [],
                             "size": int(sz.group(1)) if sz else 0})
        out.append(rows)
        m.close()
    elif k == "uidvalidity":
        typ, data = m.status(q(op[1]), "(UIDVALIDITY)")
        out.append(int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1)))
    elif k == "create":
        out.append(m.create(q(op[1]))[0])
    elif k == "delete":
        out.append(m.delete(q(op[1]))[0])
    elif k == "rename":
        out.append(m.rename(q(op[1]), q(op[2]))[0])
    elif k == "body":
        m.select(q(op[1]), readonly=True)
        typ, data = m.uid("FETCH", str(op[2]), "(BODY.PEEK[])")
        out.append(data[0][1].decode(errors="replace") if data and data[0] else None)
        m.close()
m.logout()
print(json.dumps(out))
'''
