"""The generic helpers of volley's Python tests (stdlib only); the harness
modules (sinkctl, daemon, dnsctl) and the stress tests build on them.

Paths        REPO, BUILD ($VOLLEY_BUILD, default build/, relative to the
             repository) and build_path(): a program of the build under test.
Ports        free_port(): a port free on one or more 127.0.0.x addresses
             (TCP, or TCP and UDP); listening() and wait_port(): whether,
             and until, something listens on a TCP port (seen in
             /proc/net/tcp: no probe connection).
Processes    start(): a process in its own process group (a new session),
             killed if this one dies (PR_SET_PDEATHSIG), and registered;
             stop(): by PID, SIGTERM, then SIGKILL after a bounded wait,
             reaped; stop_tree(): the same, then waits for (or kills) the
             processes it had forked, by PID. stop_all() stops whatever is
             still registered, at exit too. run_main(): a program's main, a
             SIGTERM ending it at once (status 143) through the same cleanup.
Waiting      wait_until(): a condition polled until a deadline.
Directories  tempdir(): a fresh directory, removed by the cleanup it is
             given (a TestCase's addCleanup) or else at exit.

Every wait is bounded; every process is stopped by its PID.
"""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.path.join(REPO, os.environ.get("VOLLEY_BUILD") or "build"))

STOP_WAIT = 10.0      # seconds between SIGTERM and SIGKILL, and after SIGKILL

_procs = {}           # pid -> Popen, started and not yet stopped
_dirs = {}            # temporary directories not yet removed (ordered)


def build_path(name, env=None):
    """The program name of the build under test: $env when set (relative to
    the current directory), else BUILD/name."""
    return os.path.abspath((env and os.environ.get(env)) or os.path.join(BUILD, name))


# ---- ports ----

def free_port(hosts="127.0.0.1", udp=False, tries=50):
    """A port free for TCP, and for UDP too if udp, on every one of hosts
    (an address or a sequence of them, on 127.0.0.0/8). Nothing holds it
    afterwards: the next bind may still lose it to someone else."""
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
    for _ in range(tries):
        held = []
        try:
            first = socket.socket(socket.AF_INET, kinds[0])
            held.append(first)
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            for host in hosts:
                for kind in kinds:
                    if (host, kind) != (hosts[0], kinds[0]):
                        s = socket.socket(socket.AF_INET, kind)
                        held.append(s)
                        s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port on %s" % (hosts,))


def _proc_hex(host, port):
    addr = struct.unpack("<I", socket.inet_aton(host))[0]
    return "%08X:%04X" % (addr, port)


def listening(host, port):
    """True if a TCP socket listens on host:port (or *:port). Read from
    /proc/net/tcp, so no probe connection skews a server's counters; a
    connect probe only where /proc cannot be read."""
    want = {_proc_hex(host, port), _proc_hex("0.0.0.0", port)}
    try:
        with open("/proc/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            return False
    return any(r[1] in want and r[3] == "0A" for r in rows)


def wait_port(hosts, port, timeout, proc=None):
    """True once something listens on port on every one of hosts (an address
    or a sequence of them), within timeout seconds; False at the deadline or
    as soon as proc (a Popen) has exited."""
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    return bool(wait_until(lambda: all(listening(h, port) for h in hosts), timeout,
                           proc=proc))


# ---- waiting ----

def wait_until(fn, timeout, interval=0.02, proc=None):
    """fn()'s first true value, polled every interval seconds; None if
    timeout seconds pass first, or once proc (a Popen) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            return None
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# ---- processes ----

def die_with_parent():
    """preexec_fn: the child gets SIGKILL when this process dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(argv, **kw):
    """subprocess.Popen(argv, **kw) (stdin /dev/null unless given) in its own
    process group, killed if this process dies, registered for stop_all()."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen([str(a) for a in argv], start_new_session=True,
                         preexec_fn=die_with_parent, **kw)
    _procs[p.pid] = p
    return p


def stop(p, sig=signal.SIGTERM, wait=STOP_WAIT):
    """Stop p (a Popen) by its PID: sig, SIGKILL if it is still there after
    wait seconds, then reap it and close its pipes. Returns its exit status
    (negative: the signal that ended it)."""
    try:
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(STOP_WAIT)
    finally:
        _procs.pop(p.pid, None)
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()
    return p.returncode


def _proc_stat(pid):
    """(state, ppid, start time) of pid from /proc/PID/stat; None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def descendants(pid):
    """[(pid, start time)] of every process below pid now (children,
    grandchildren...), read from /proc."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st:
                parent[int(name)] = st
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, st in parent.items():
            if st[1] == p:
                out.append((c, st[2]))
                todo.append(c)
    return out


def stop_tree(p, sig=signal.SIGTERM, wait=STOP_WAIT):
    """stop(p) for a daemon that forks processes of its own (NSD): those seen
    below it before the signal are then waited for, each by its PID (and
    start time, against reuse), until gone or dead awaiting their reaper;
    SIGKILLed past wait seconds. Returns p's exit status."""
    kids = descendants(p.pid)
    rc = stop(p, sig, wait)

    def alive():
        return [(c, t) for c, t in kids
                if (st := _proc_stat(c)) and st[2] == t and st[0] not in "ZX"]

    if kids and not wait_until(lambda: not alive(), wait):
        for c, _ in alive():
            try:
                os.kill(c, signal.SIGKILL)
            except OSError:
                pass
        wait_until(lambda: not alive(), STOP_WAIT)
    return rc


def kill(p):
    """SIGKILL p by its PID and reap it: stop() without the grace."""
    return stop(p, signal.SIGKILL)


def stop_all():
    """Stop every process start()ed and not stopped yet."""
    for p in list(_procs.values()):
        try:
            stop(p)
        except (OSError, subprocess.TimeoutExpired):
            pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, under run_main(). A KeyboardInterrupt, so that unittest lets
    it through at once, as it does Ctrl-C, rather than count it against the
    running test and go on with the next one."""


def _terminate(*_):
    raise Terminated()


def run_main(main, *args):
    """main(*args), its value the exit status. A SIGTERM raises Terminated
    wherever the program is: finally blocks run, the status is 143, and the
    exit handlers stop every process still registered."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return main(*args)
    except Terminated:
        print("terminated by SIGTERM", flush=True)
        return 143


# ---- directories ----

def tempdir(prefix="volley-", dir=None, cleanup=None):
    """A new directory (under dir, else the system's temporary folder). It is
    removed by cleanup(remove_dir, path) when cleanup is given (a TestCase's
    addCleanup or addClassCleanup), and at exit in any case."""
    path = tempfile.mkdtemp(prefix=prefix, dir=dir)
    _dirs[path] = True
    if cleanup is not None:
        cleanup(remove_dir, path)
    return path


def remove_dir(path):
    """Remove a directory tree, whatever it holds (missing is fine)."""
    _dirs.pop(path, None)
    shutil.rmtree(path, ignore_errors=True)


def _at_exit():
    stop_all()
    for path in reversed(list(_dirs)):
        remove_dir(path)


atexit.register(_at_exit)
