"""SMTP submission clients for the e2e tests, run under Debian's Python
(/usr/bin/python3 and its smtplib: the `python3` that runs the tests is
not Debian's) in a subprocess, so the client is the one applications on
this system use. Stdlib only on both sides.

session(...)  one SMTP session of scripted steps (smtplib calls); returns
              one result a step: code, text and the time it took.
Burst         many sessions in threads, each submitting its share of
              numbered messages and printing a JSON line per message as
              its answer comes (250 and its job id, another code, or the
              error that cut it short), to a file the test reads while it
              runs.

Every socket has a timeout; every run is bounded in time.
"""

import base64
import json
import os
import subprocess

from . import util

DEBIAN_PY = "/usr/bin/python3"
RUN_WAIT = 60.0

# Steps: ["ehlo", name] ["starttls"] ["login", user, password]
# ["auth", MECH, user, password] ["mail", addr, [options]] ["rcpt", addr]
# ["data", base64 message] ["docmd", line] ["rset"] ["quit"].
# Each result: {"op", "code", "text", "t"} (t: seconds), "features" after
# an EHLO; a step that raises anything but a reply ends the session with
# {"op", "error"}.
_SESSION = r'''
import base64, json, smtplib, ssl, sys, time
req = json.load(sys.stdin)
ctx = ssl.create_default_context(cafile=req.get("ca"))
ctx.check_hostname = False            # connected by address; with a CA, the chain is verified
if not req.get("ca"):
    ctx.verify_mode = ssl.CERT_NONE
src = (req["source"], 0) if req.get("source") else None
out = []
def run(op, fn):
    t = time.monotonic()
    try:
        r = fn()
    except smtplib.SMTPResponseException as e:
        r = (e.smtp_code, e.smtp_error)
    code, text = r if isinstance(r, tuple) else (None, b"")
    out.append({"op": op, "code": code,
                "text": text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text),
                "t": time.monotonic() - t})
try:
    if req["tls"] == "implicit":
        s = smtplib.SMTP_SSL(local_hostname=req["helo"], context=ctx, timeout=req["timeout"],
                             source_address=src)
    else:
        s = smtplib.SMTP(local_hostname=req["helo"], timeout=req["timeout"], source_address=src)
    s._host = req["host"]                 # starttls's server_hostname (connect() leaves it "")
    run("connect", lambda: s.connect(req["host"], req["port"]))
    for step in req["steps"]:
        op, a = step[0], step[1:]
        if op == "ehlo":
            run(op, lambda: s.ehlo(a[0]))
            out[-1]["features"] = dict(s.esmtp_features)
        elif op == "starttls":
            run(op, lambda: s.starttls(context=ctx))
        elif op == "login":
            run(op, lambda: s.login(a[0], a[1]))
        elif op == "auth":
            s.user, s.password = a[1], a[2]
            run(op, lambda: s.auth(a[0], getattr(s, "auth_" + a[0].lower())))
        elif op == "mail":
            run(op, lambda: s.mail(a[0], a[1] if len(a) > 1 else ()))
        elif op == "rcpt":
            run(op, lambda: s.rcpt(a[0]))
        elif op == "data":
            run(op, lambda: s.data(base64.b64decode(a[0])))
        elif op == "docmd":
            run(op, lambda: s.docmd(a[0]))
        elif op == "rset":
            run(op, lambda: s.rset())
        elif op == "quit":
            run(op, lambda: s.quit())
        else:
            raise ValueError("unknown step %r" % op)
except Exception as e:
    out.append({"op": "error", "error": "%s: %s" % (type(e).__name__, e)})
print(json.dumps(out))
'''


def available():
    return os.access(DEBIAN_PY, os.X_OK)


def b64(msg):
    return base64.b64encode(msg).decode()


def session(host, port, steps, tls="starttls", ca=None, source=None, helo="client.test",
            timeout=20.0):
    """Runs steps in one session (tls: "starttls" or "none": a plain
    connect, the steps say whether STARTTLS comes; "implicit": TLS from the
    connect on). Returns the results, the connect's first."""
    req = {"host": host, "port": port, "tls": tls, "ca": ca, "source": source,
           "helo": helo, "timeout": timeout,
           "steps": [[s[0], *[b64(x) if isinstance(x, bytes) else x for x in s[1:]]]
                     for s in steps]}
    p = subprocess.run([DEBIAN_PY, "-c", _SESSION], input=json.dumps(req), capture_output=True,
                       text=True, timeout=RUN_WAIT, preexec_fn=util.die_with_parent)
    if p.returncode != 0:
        raise AssertionError("smtplib client failed: %s" % p.stderr[-2000:])
    return json.loads(p.stdout)


# argv: JSON {host, port, ca, user, password, clients, messages: [[i, sender,
# [rcpts], base64 message], ...]}; message i goes to client i % clients.
_BURST = r'''
import base64, json, smtplib, ssl, sys, threading
req = json.loads(sys.stdin.read())
ctx = ssl.create_default_context(cafile=req["ca"])
ctx.check_hostname = False
lock = threading.Lock()
def say(d):
    with lock:
        sys.stdout.write(json.dumps(d) + "\n")
        sys.stdout.flush()
def client(k):
    mine = [m for m in req["messages"] if m[0] % req["clients"] == k]
    try:
        s = smtplib.SMTP(req["host"], req["port"], local_hostname="burst.test", timeout=20)
        s.starttls(context=ctx)
        s.login(req["user"], req["password"])
    except Exception as e:
        for m in mine:
            say({"i": m[0], "error": "session: %s" % e, "sent": False})
        return
    for n, (i, sender, rcpts, msg) in enumerate(mine):
        sent = False
        try:
            code, text = s.mail(sender)
            for r in rcpts:
                if code == 250:
                    code, text = s.rcpt(r)
            if code == 250:
                sent = True           # from here on the message may be stored
                code, text = s.data(base64.b64decode(msg))
            say({"i": i, "code": code, "text": text.decode("utf-8", "replace")})
        except Exception as e:
            say({"i": i, "error": "%s: %s" % (type(e).__name__, e), "sent": sent})
            for rest in mine[n + 1:]:
                say({"i": rest[0], "error": "not sent", "sent": False})
            return
    try:
        s.quit()
    except Exception:
        pass
ts = [threading.Thread(target=client, args=(k,)) for k in range(req["clients"])]
for t in ts:
    t.start()
for t in ts:
    t.join()
'''


class Burst:
    """The burst client, started at once; results() reads what it printed
    so far (one dict a message)."""

    def __init__(self, folder, host, port, ca, user, password, clients, messages):
        self.path = os.path.join(folder, "burst.out")
        req = {"host": host, "port": port, "ca": ca, "user": user, "password": password,
               "clients": clients,
               "messages": [[i, s, r, b64(m)] for i, s, r, m in messages]}
        self.out = open(self.path, "w")
        self.err = open(self.path + ".err", "w")
        self.proc = util.start([DEBIAN_PY, "-c", _BURST], stdin=subprocess.PIPE,
                               stdout=self.out, stderr=self.err)
        self.proc.stdin.write(json.dumps(req).encode())
        self.proc.stdin.close()
        self.proc.stdin = None

    def results(self):
        with open(self.path) as f:
            return [json.loads(l) for l in f.read().splitlines(True) if l.endswith("\n")]

    def wait(self, timeout=RUN_WAIT):
        """Waits (bounded) for the client to end; its results."""
        try:
            self.proc.wait(timeout)
        finally:
            util.stop(self.proc)
            self.out.close()
            self.err.close()
        return self.results()

    def stderr(self):
        with open(self.path + ".err") as f:
            return f.read()
