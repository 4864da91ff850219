#!/usr/bin/env python3
"""What one redis-server sustains of volley's cluster script (docs/cluster.md,
"Plan on paper: 20 nodes"): the Lua script taken from cluster/conn.c, loaded
into a redis-server of our own on a free loopback port (nothing on disk,
stopped by PID), then redis-benchmark (Debian's redis-tools) runs each
operation as the nodes send it: a rate lease on one key and on 1,000 keys,
a connection lease among 20 holders, a heartbeat; PING and SET as the
yardstick. Prints requests a second each. The benchmark client shares the
machine with the server: on 2 cores the figures are a floor.

    python3 bench/cluster-redis.py [--requests N] [--clients N] [--pipeline N]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_text():
    """The SCRIPT string literal of cluster/conn.c, its C comments dropped."""
    with open(os.path.join(REPO, "cluster", "conn.c")) as f:
        src = f.read()
    m = re.search(r"static const char SCRIPT\[\] =(.*?);\n\nenum rkind", src, re.S)
    if not m:
        sys.exit("cluster-redis: the SCRIPT literal was not found in cluster/conn.c")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return "".join(parts).encode().decode("unicode_escape")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def cli(port, *args):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def cpu_s(pid):
    """utime + stime of a process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(pid, port, opts, name, *cmd, keys=1000):
    """requests a second of one command line, from redis-benchmark -q,
    and redis-server's CPU per request meanwhile (what one core sustains:
    1 s over it); __rand_int__ in it stands for 0 to keys - 1."""
    c0 = cpu_s(pid)
    p = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q",
                        "-n", str(opts.requests), "-c", str(opts.clients),
                        "-P", str(opts.pipeline), "-r", str(keys), *cmd],
                       capture_output=True, text=True, timeout=600)
    m = re.findall(r"([\d.]+) requests per second", p.stdout)
    rps = float(m[-1]) if m else 0.0
    us = (cpu_s(pid) - c0) * 1e6 / opts.requests
    print("%-40s %9.0f requests/s %7.1f us of server CPU each: %8.0f/s a core"
          % (name, rps, us, 1e6 / us if us > 0 else 0))
    return rps


def run(pid, port, opts):
    sha = cli(port, "SCRIPT", "LOAD", script_text())
    print("redis-server %s, script %s; %d requests, %d clients, pipeline %d; load: %s"
          % (cli(port, "INFO", "server").split("redis_version:")[1].split()[0], sha[:12],
             opts.requests, opts.clients, opts.pipeline, os.getloadavg()))
    bench(pid, port, opts, "PING", "PING")
    bench(pid, port, opts, "SET (random key)", "SET", "k:__rand_int__", "v")
    bench(pid, port, opts, "rate lease, one key", "EVALSHA", sha, "1", "volley:rate:one",
          "rate", "1000000", "1000000", "100")
    bench(pid, port, opts, "rate lease, 1,000 keys", "EVALSHA", sha, "1",
          "volley:rate:__rand_int__", "rate", "1000000", "1000000", "100")
    # one site's connections held by 20 nodes (n0..n19: the script reads
    # every holder, O(holders))
    bench(pid, port, opts, "connection lease, one site, 20 holders", "EVALSHA", sha, "3",
          "volley:conn:one:exp", "volley:conn:one:held", "volley:nodes", "conn",
          "n__rand_int__", "200", "10", "10000", keys=20)
    bench(pid, port, opts, "heartbeat, 20 nodes", "EVALSHA", sha, "2", "volley:nodes",
          "volley:node:n__rand_int__", "hb", "n__rand_int__", "10000", "{}", keys=20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--pipeline", type=int, default=1)
    opts = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="volley-redis-bench-") as d:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", d,
                                 "--daemonize", "no"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            if not wait_port(port, 10):
                sys.exit("cluster-redis: redis-server did not listen")
            run(proc.pid, port, opts)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
