#!/usr/bin/python3
"""Webhooks against delivery: volley-bench's newsletter scenario (by default
200,000 recipients) without a webhook and with one for Delivery events to a
local receiver, alternated, in one run; prints msg/s both ways, their
ratio, and the webhook's events/s and lag; then the webhook's own rate:
how fast it sends a finished run's events from the start of the log
(docs/bench.md, "Webhooks").

    /usr/bin/python3 bench/webhook.py [--recipients N] [--rounds R]
        [--batch B] [--gzip] [--scenario NAME] [--build DIR]

The receiver is tests/e2e/hookrecv.py as its own process
(ThreadingHTTPServer, HTTP/1.1 keep-alive): it checks each batch's
signature and timestamp, counts the events without parsing them, answers
200, and notes when each batch arrived against its last event's time.
Every process started is stopped by PID; everything runs on loopback.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
SECRET = "bench-secret"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stop(p):
    """Stop by PID; the CPU seconds it used."""
    p.send_signal(signal.SIGTERM)
    for _ in range(50):
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = status
            return ru.ru_utime + ru.ru_stime
        time.sleep(0.1)
    p.kill()
    _, _, ru = os.wait4(p.pid, 0)
    return ru.ru_utime + ru.ru_stime


def bench(a, tmp, name, conf=None, keep=False):
    out = os.path.join(tmp, name)
    cmd = [os.path.join(a.build, "volley-bench"), a.scenario, "--recipients",
           str(a.recipients), "--no-plot", "--out", out]
    if conf:
        cmd += ["--volley-conf", conf]
    if keep:
        cmd += ["--keep"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=1800)
    try:
        with open(out + ".json") as f:
            r = json.load(f)["results"][0]
    except (OSError, ValueError, KeyError, IndexError):
        sys.exit("webhook bench: volley-bench failed:\n" + p.stdout.decode())
    if not r["ok"]:
        sys.exit("webhook bench: volley-bench: not every recipient accounted for: " + r["note"])
    for line in p.stdout.decode().splitlines():
        if line.startswith("run folder kept: "):
            r["kept"] = line[len("run folder kept: "):]
    return r


def with_hook(a, tmp, i):
    port = free_port()
    conf = os.path.join(tmp, "hook.conf")
    with open(conf, "w") as f:
        f.write('webhooks = ( { name = "bench"; url = "http://127.0.0.1:%d/hook"; '
                'events = [ "Delivery" ]; secret = "%s"; batch = %d; gzip = %s; } );\n'
                % (port, SECRET, a.batch, "true" if a.gzip else "false"))
    stats = open(os.path.join(tmp, "receiver-%d.jsonl" % i), "w+")
    rx = subprocess.Popen(["/usr/bin/python3", "-m", "tests.e2e.hookrecv", "--port", str(port),
                           "--secret", SECRET, "--count-only"], cwd=SRC, stdout=stats,
                          env=dict(os.environ, PYTHONPATH=SRC))
    cpu = 0.0
    try:
        time.sleep(0.5)
        r = bench(a, tmp, "hook-%d" % i, conf)
        time.sleep(1.2)     # the receiver's last counts
    finally:
        cpu = stop(rx)
    stats.seek(0)
    lines = [json.loads(line) for line in stats if line.strip()]
    r["hook"] = lines[-1] if lines else {}
    r["hook"]["receiver_cpu_s"] = cpu
    return r


def drain(a, tmp, run_dir):
    """The webhook's own rate: volleyd started on a copy of a finished run's
    events with the cursor at their start, a webhook for Delivery to a
    fresh receiver; the time until the receiver has every event."""
    src = os.path.join(run_dir, "volley", "data", "events")
    data = os.path.join(tmp, "drain-data")
    shutil.copytree(src, os.path.join(data, "events"))
    shutil.rmtree(run_dir, ignore_errors=True)
    files = sorted(os.listdir(os.path.join(data, "events")))
    want = 0
    for name in files:
        with open(os.path.join(data, "events", name), "rb") as f:
            want += f.read().count(b'{"type":"Delivery",')
    os.makedirs(os.path.join(data, "webhooks"))
    with open(os.path.join(data, "webhooks", "bench.cursor"), "w") as f:
        f.write("volley-webhook-cursor 1 %d 0\n" % int(files[0].split(".")[0]))
    port = free_port()
    conf = os.path.join(tmp, "drain.conf")
    with open(conf, "w") as f:
        f.write('data_dir = "%s";\ndns = { servers = [ "127.0.0.1:9" ]; };\n'
                'api = { socket = "%s/volley.sock"; };\n'
                'webhooks = ( { name = "bench"; url = "http://127.0.0.1:%d/hook"; '
                'events = [ "Delivery" ]; secret = "%s"; batch = %d; gzip = %s; } );\n'
                % (data, data, port, SECRET, a.batch, "true" if a.gzip else "false"))
    stats = open(os.path.join(tmp, "receiver-drain.jsonl"), "w+")
    rx = subprocess.Popen(["/usr/bin/python3", "-m", "tests.e2e.hookrecv", "--port", str(port),
                           "--secret", SECRET, "--count-only"], cwd=SRC, stdout=stats,
                          env=dict(os.environ, PYTHONPATH=SRC))
    time.sleep(0.5)
    log = open(os.path.join(tmp, "drain-volleyd.log"), "w")
    t0 = time.time()
    vd = subprocess.Popen([os.path.join(a.build, "volleyd"), "--foreground", "--config", conf],
                          stdout=log, stderr=subprocess.STDOUT)
    last = {}
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.5)
            stats.seek(0)
            lines = [json.loads(x) for x in stats if x.strip()]
            if lines:
                last = lines[-1]
            if last.get("events", 0) >= want:
                break
    finally:
        vd_cpu = stop(vd)
        rx_cpu = stop(rx)
    got = last.get("events", 0)
    span = last.get("last_arrival", t0) - t0
    print("catch-up: %d of %d Delivery events sent from the start of the log in %.2f s "
          "(from volleyd's start): %.0f events/s; volleyd %.1f CPU-s, receiver %.1f CPU-s"
          % (got, want, span, got / span if span > 0 else 0, vd_cpu, rx_cpu))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--scenario", default="newsletter")
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--no-drain", action="store_true", help="skip the catch-up measure")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="volley-hookbench-")
    plain, hooked = [], []
    print("webhook bench: %s, %d recipients, %d rounds (alternated), batch %d%s"
          % (a.scenario, a.recipients, a.rounds, a.batch, ", gzip" if a.gzip else ""))
    print("%-8s %10s %9s %9s %12s %10s %10s %10s %8s %8s"
          % ("run", "delivered", "msg/s", "cpu-s/1k", "hook events", "hook ev/s", "final lag",
             "max lag", "rejected", "rx cpu-s"))
    for i in range(a.rounds):
        order = ["plain", "hook"] if i % 2 == 0 else ["hook", "plain"]
        for kind in order:
            if kind == "plain":
                keep = i == a.rounds - 1 and not a.no_drain
                r = bench(a, tmp, "plain-%d" % i, keep=keep)
                plain.append(r)
                print("%-8s %10d %9.0f %9.3f" % ("no hook", r["delivered"], r["messages_per_s"],
                                                  r["cpu_s_per_1000"]))
            else:
                r = with_hook(a, tmp, i)
                hooked.append(r)
                h = r["hook"]
                span = h.get("last_arrival", 0) - h.get("first_arrival", 0)
                rate = h.get("events", 0) / span if span > 0 else 0
                print("%-8s %10d %9.0f %9.3f %12d %10.0f %9.2fs %9.2fs %8d %8.1f"
                      % ("webhook", r["delivered"], r["messages_per_s"], r["cpu_s_per_1000"],
                         h.get("events", 0), rate, h.get("last_lag", 0), h.get("max_lag", 0),
                         h.get("rejected", 0), h.get("receiver_cpu_s", 0)))
                sys.stdout.flush()
    mp = sum(r["messages_per_s"] for r in plain) / len(plain)
    mh = sum(r["messages_per_s"] for r in hooked) / len(hooked)
    got = sum(r["hook"].get("events", 0) for r in hooked)
    want = sum(r["delivered"] for r in hooked)
    cp = sum(r["cpu_s_per_1000"] for r in plain) / len(plain)
    ch = sum(r["cpu_s_per_1000"] for r in hooked) / len(hooked)
    print("mean msg/s: no webhook %.0f, webhook %.0f; webhook / no webhook %.3f "
          "(target: at least 0.95)" % (mp, mh, mh / mp))
    print("volleyd's CPU per 1,000 messages: no webhook %.4f s, webhook %.4f s (%+.1f%%)"
          % (cp, ch, 100.0 * (ch - cp) / cp if cp else 0))
    print("the webhook received %d of %d Delivery events before volleyd stopped (%.2f%%)"
          % (got, want, 100.0 * got / want if want else 0))
    kept = [r["kept"] for r in plain if r.get("kept")]
    if kept:
        drain(a, tmp, kept[0])
    print("run folder: %s" % tmp)


if __name__ == "__main__":
    main()
