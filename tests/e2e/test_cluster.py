"""volleyd nodes sharing limits through Redis (docs/cluster.md), end to
end: a redis-server of the test's own on a free loopback port (no
persistence, stopped by PID), three volleyd nodes with their own data
dirs and source addresses (127.0.0.2, .3, .4), one volley-sink that
records each message's peer and time. Checks: a site's rate holds for
the cluster, not per node; Redis stopped mid-run puts every node in local
mode at 1/N of the limit, delivery goes on, and shared mode comes back
with Redis; a node killed with kill -9 leaves the registry within the
lease time and the others take the whole rate. Every wait is bounded."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest

from .daemon import VOLLEY, Volleyd, VolleydTest, simple_job
from .sinkctl import Sink, sanitizer_report
from . import util

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


class Redis:
    """redis-server on 127.0.0.1:port, nothing written to disk; with tls
    (a list of redis-server's --tls-* arguments) TLS only on that port."""

    def __init__(self, port=None, tls=None):
        self.port = port or util.free_port()
        self.dir = util.tempdir("volley-redis-")
        self.proc = None
        self.tls = tls

    def start(self):
        self.log = open(os.path.join(self.dir, "log"), "ab")
        ports = ["--port", "0", "--tls-port", str(self.port)] + self.tls if self.tls \
            else ["--port", str(self.port)]
        self.proc = util.start([REDIS] + ports + ["--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", self.dir,
                                "--daemonize", "no"], stdout=self.log,
                               stderr=subprocess.STDOUT)
        if not util.wait_port("127.0.0.1", self.port, 10, proc=self.proc):
            raise RuntimeError("redis-server did not listen on %d" % self.port)
        return self

    def stop(self):
        if self.proc:
            util.stop(self.proc)
            self.proc = None
            self.log.close()

    def cleanup(self):
        self.stop()
        util.remove_dir(self.dir)

    @property
    def url(self):
        return "%s://127.0.0.1:%d/0" % ("rediss" if self.tls else "redis", self.port)


def node_conf(sink, redis, i, rate, conns=30, extra=""):
    rate = 'rate = "%s";' % rate if rate else ""
    return ('egress = ( { name = "n%d"; address = "%s"; ehlo = "n%d.example.test"; } );\n'
            'domains = ( { match = "*.test"; route = "%s"; tls = "none"; %s '
            'max_connections = %d; } );\n'
            'defaults = { retry = [ "1s" ]; };\n'
            'cluster = { redis = "%s"; node = "node-%d"; lease_ttl = "3s"; %s };\n'
            % (i, ADDRS[i], i, sink.route(), rate, conns, redis.url, i, extra))


def start_node(test, config):
    """A volleyd node stopped at the test's end; its whole log checked for
    a sanitizer report (make asan) before its folder goes."""
    d = Volleyd(config=config)

    def finish():
        d.stop()
        try:
            with open(d.log_path, "rb") as f:
                report = sanitizer_report(f.read().decode(errors="replace"))
        except OSError:
            report = None
        d.cleanup()
        if report:
            raise AssertionError("sanitizer report from volleyd:\n" + report)
    test.addCleanup(finish)
    return d


def metric(d, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name),
                  d.request("GET", "/metrics", timeout=5).body.decode(), re.M)
    return float(m.group(1)) if m else None


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class Cluster(VolleydTest):
    sink_args = ()

    def setUp(self):
        self.redis = Redis().start()
        self.addCleanup(self.redis.cleanup)
        self.sink = Sink(*self.sink_args).start()
        self.addCleanup(self.sink.cleanup)

    def nodes(self, rate, n=3, conns=30):
        ds = []
        for i in range(n):
            ds.append(start_node(self, node_conf(self.sink, self.redis, i, rate, conns)).start())
        for d in ds:
            self.wait_for("shared mode with %d nodes" % n,
                          lambda: metric(d, "volley_cluster_shared") == 1 and
                          metric(d, "volley_cluster_nodes") == n, timeout=15)
        return ds

    def submit(self, d, n, domain="d.test"):
        r = d.submit(simple_job(n, domain=domain))
        self.assertEqual(r.status, 202, r)
        return r.json()["id"]

    def arrivals(self, want, timeout):
        """(time, peer address) of each message at the sink, sorted, once
        want have come (bounded)."""
        msgs = self.sink.new_messages(want, wait=timeout)
        out = []
        for m in msgs:
            st = os.stat(os.path.join(self.sink.maildir, "new", m.id))
            out.append((st.st_mtime_ns / 1e9, m.env["peer"].rsplit(":", 1)[0]))
        return sorted(out)

    def test_site_rate_holds_for_the_cluster(self):
        """500/s for the site, three nodes with 4,000 recipients each:
        the sink sees 500/s +- 5 % from 3 s in to the end (not 3 x 500)."""
        ds = self.nodes("500/s")
        for d in ds:
            self.submit(d, 4000)
        got = self.arrivals(12000, timeout=50)
        self.assertEqual(len(got), 12000)
        t0 = got[0][0]
        # after the start (the Redis bucket's burst, then leases granted
        # up to a quarter burst ahead of the refill until demand pins it
        # there), the steady pace to the last message (about 21 s): a
        # fixed window's end would count a loaded machine's late
        # deliveries (a clump after a stall) against the bucket
        t1 = got[-1][0]
        win = [t for t, _ in got if t0 + 3 <= t]
        rate = (len(win) - 1) / (t1 - t0 - 3)
        print("\n    cluster rate: %.1f/s at the sink over %.1f s" % (rate, t1 - t0 - 3),
              end=" ")
        self.assertLess(abs(rate - 500) / 500, 0.05, "%.1f/s at the sink" % rate)
        # every node had its part
        peers = {p for t, p in got if t0 + 3 <= t}
        self.assertEqual(peers, set(ADDRS))
        # leases, not one Redis call per message
        rt = sum(metric(d, "volley_cluster_redis_roundtrips_total") for d in ds)
        print("redis round trips a message: %.4f" % (rt / 12000), end=" ")
        self.assertLess(rt / 12000, 0.1, "%d round trips for 12000 messages" % rt)

    def test_redis_down_local_one_nth_then_shared_again(self):
        """300/s; Redis killed mid-run: each node in local mode at 100/s
        (1/3), delivery goes on; Redis back: shared mode again, and a
        ClusterMode event each way."""
        ds = self.nodes("300/s")
        for d in ds:
            self.submit(d, 2500)
        util.wait_until(lambda: len(os.listdir(os.path.join(self.sink.maildir, "new"))) >= 600,
                        15)
        port = self.redis.port
        self.redis.stop()
        for d in ds:
            self.wait_for("local mode", lambda: metric(d, "volley_cluster_shared") == 0,
                          timeout=5)
        t_down = time.time()
        time.sleep(5)
        t_end = time.time()
        self.redis = Redis(port).start()
        self.addCleanup(self.redis.cleanup)
        for d in ds:
            self.wait_for("shared mode again", lambda: metric(d, "volley_cluster_shared") == 1,
                          timeout=15)
        got = self.arrivals(7500, timeout=40)
        # the local window, after the first second (each node's local
        # bucket starts full: one second of 1/N)
        for a in ADDRS:
            n = len([1 for t, p in got if p == a and t_down + 1 <= t < t_end])
            rate = n / (t_end - t_down - 1)
            self.assertLessEqual(rate, 100 * 1.05, "%s: %.1f/s in local mode" % (a, rate))
            self.assertGreater(rate, 50, "%s: delivery goes on (%.1f/s)" % (a, rate))
        for d in ds:
            ev = [e for e in d.request("GET", "/v1/events").lines()
                  if e["type"] == "ClusterMode"]
            text = " | ".join(e["reason"] for e in ev)
            self.assertIn("local mode: each limit at 1/3", text)
            self.assertIn("shared mode", text)
            self.assertGreaterEqual(metric(d, "volley_cluster_mode_changes_total"), 3)

    def test_killed_node_leaves_and_the_others_take_the_rate(self):
        """A node killed with kill -9 leaves the registry within the lease
        time (3 s); the two others then reach the whole 300/s."""
        ds = self.nodes("300/s")
        for d in ds:
            self.submit(d, 3000)
        util.wait_until(lambda: len(os.listdir(os.path.join(self.sink.maildir, "new"))) >= 300,
                        15)
        ds[2].kill9()
        t_kill = time.time()
        for d in ds[:2]:
            self.wait_for("two nodes", lambda: metric(d, "volley_cluster_nodes") == 2,
                          timeout=8)
        self.assertLess(time.time() - t_kill, 3 + 1 + 1.5, "gone within the lease time")
        time.sleep(4)
        t1 = time.time()
        time.sleep(4)
        t2 = time.time()
        got = self.arrivals(len(os.listdir(os.path.join(self.sink.maildir, "new"))), 5)
        win = [p for t, p in got if t1 <= t < t2]
        self.assertNotIn(ADDRS[2], win)
        rate = len(win) / (t2 - t1)
        self.assertLess(abs(rate - 300) / 300, 0.07, "%.1f/s from the two left" % rate)


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class Idempotency(Cluster):
    def test_same_key_on_two_nodes_is_one_job(self):
        """A job with an Idempotency-Key submitted to node 0, then to
        nodes 1 and 2: one job (node 0's), replayed by the others, who
        store nothing; its recipients delivered once."""
        ds = self.nodes("1000/s")
        h = {"Idempotency-Key": "order-7731"}
        r0 = ds[0].submit(simple_job(20, domain="d.test"), headers=h)
        self.assertEqual(r0.status, 202, r0)
        jid = r0.json()["id"]
        for d in ds[1:]:
            r = self.wait_for("the key bound in Redis", lambda: (
                lambda x: x if x.status == 202 else None)(
                    d.submit(simple_job(20, domain="d.test"), headers=h)), timeout=5)
            self.assertEqual(r.json()["id"], jid, r)
            self.assertEqual(r.json()["node"], "node-0", r)
            self.assertEqual(r.headers.get("Idempotent-Replayed"), "true", r)
            self.assertEqual(d.jobs_on_disk(), [], "nothing stored on the other node")
        # the node that holds it replays its own job as before
        r = ds[0].submit(simple_job(20, domain="d.test"), headers=h)
        self.assertEqual((r.status, r.json()["id"]), (202, jid), r)
        self.wait_done(ds[0], jid)
        time.sleep(0.5)
        self.assertEqual(len(os.listdir(os.path.join(self.sink.maildir, "new"))), 20)
        # another key is another job, wherever it goes
        r = ds[1].submit(simple_job(2, domain="d.test"), headers={"Idempotency-Key": "x"})
        self.assertEqual(r.status, 202, r)
        self.assertNotEqual(r.json()["id"], jid)
        self.assertEqual(len(ds[1].jobs_on_disk()), 1)

    def test_cli_lists_every_nodes_jobs(self):
        """`volley jobs --cluster` asked at node 0 lists the jobs of all
        three: nodes 0 and 1 by their sockets, node 2 by its TCP
        listener with the token; a NODE column, --json with "node". A
        node gone (killed) is named, the others still listed, exit 3."""
        port = util.free_port()
        ds = []
        for i in range(3):
            extra = ('api = { listen = "127.0.0.1:%d"; token = "t0k"; };\n' % port
                     if i == 2 else "")
            ds.append(start_node(self, extra + node_conf(self.sink, self.redis, i,
                                                            "1000/s")).start())
        for d in ds:
            self.wait_for("shared mode with 3 nodes",
                          lambda: metric(d, "volley_cluster_nodes") == 3, timeout=15)
        ids = {}
        for i, d in enumerate(ds):
            ids["node-%d" % i] = self.submit(d, 1 + i)

        def run(*args):
            return subprocess.run([VOLLEY, "--socket", ds[0].sock, "--token", "t0k"] +
                                  list(args), capture_output=True, text=True, timeout=30)
        r = run("jobs", "--cluster")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].split()[:2] == ["NODE", "ID"], r.stdout)
        rows = {tuple(l.split()[:2]) for l in lines[1:]}
        self.assertEqual(rows, {(n, j) for n, j in ids.items()}, r.stdout)
        r = run("--cluster", "jobs", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = {(j["node"], j["id"], j["recipients"])
               for j in map(__import__("json").loads, r.stdout.splitlines())}
        self.assertEqual(got, {("node-%d" % i, ids["node-%d" % i], 1 + i) for i in range(3)})
        # a wrong token: node 2 refuses, the others are listed
        r = subprocess.run([VOLLEY, "--socket", ds[0].sock, "--token", "bad", "jobs",
                            "--cluster"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("node node-2: its jobs are not listed", r.stderr)
        self.assertEqual({l.split()[0] for l in r.stdout.splitlines()[1:]},
                         {"node-0", "node-1"})
        # node 1 killed: still registered until its lease ends, unreachable
        os.kill(ds[1].proc.pid, signal.SIGKILL)
        ds[1].proc.wait(timeout=10)
        r = run("jobs", "--cluster")
        self.assertEqual(r.returncode, 3, r)
        self.assertIn("node node-1", r.stderr)
        self.assertEqual({l.split()[0] for l in r.stdout.splitlines()[1:]},
                         {"node-0", "node-2"})
        # without a cluster: said so
        d = start_node(self, "").start()
        r = subprocess.run([VOLLEY, "--socket", d.sock, "jobs", "--cluster"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("not in a cluster", r.stderr)

    test_site_rate_holds_for_the_cluster = None
    test_redis_down_local_one_nth_then_shared_again = None
    test_killed_node_leaves_and_the_others_take_the_rate = None


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class WarmUp(Cluster):
    def test_warmup_cap_holds_for_the_cluster(self):
        """Three nodes, each with a source named ip1 (one public address
        behind them) on day 1 of a schedule capped at 30 for bigmail, each
        with 20 recipients there: 30 delivered in all, every node capped
        for the day, the rest waiting. Then Redis stops: for another
        provider (its own count) each node sends 10, its 1/N, in local
        mode."""
        ds = []
        for i in range(3):
            conf = ('egress = ( { name = "ip1"; address = "%s"; ehlo = "n%d.example.test";\n'
                    '             warmup = ( [ 1, 30 ], [ 2, 0 ] ); } );\n'
                    'domains = ( { match = "*.test"; route = "%s"; tls = "none"; } );\n'
                    'defaults = { retry = [ "1s" ]; };\n'
                    'providers = ( { name = "bigmail"; domains = [ "big.test" ]; },\n'
                    '              { name = "other"; domains = [ "other.test" ]; } );\n'
                    'cluster = { redis = "%s"; node = "node-%d"; lease_ttl = "3s"; };\n'
                    % (ADDRS[i], i, self.sink.route(), self.redis.url, i))
            ds.append(start_node(self, conf).start())
        for d in ds:
            self.wait_for("shared mode with 3 nodes",
                          lambda: metric(d, "volley_cluster_nodes") == 3, timeout=15)
        for d in ds:
            self.submit(d, 20, domain="big.test")
        new = os.path.join(self.sink.maildir, "new")
        util.wait_until(lambda: len(os.listdir(new)) >= 30, 20)

        def warm(d, provider="bigmail"):
            for q in d.request("GET", "/v1/queues").json()["queues"]:
                if q["provider"] == provider:
                    return q["warmup"]
            return None
        for d in ds:
            self.wait_for("capped for the day",
                          lambda: (warm(d) or {}).get("capped_until") or
                          (warm(d) or {}).get("sent") == 20, timeout=15)
        time.sleep(1)
        self.assertEqual(len(os.listdir(new)), 30)
        sent = [warm(d)["sent"] for d in ds]
        self.assertEqual(sum(sent), 30, sent)
        self.assertEqual({warm(d)["cap"] for d in ds}, {30})
        self.redis.stop()
        for d in ds:
            self.wait_for("local mode", lambda: metric(d, "volley_cluster_shared") == 0,
                          timeout=10)
            self.submit(d, 15, domain="other.test")
        util.wait_until(lambda: len(os.listdir(new)) >= 60, 20)
        time.sleep(1.5)
        self.assertEqual(len(os.listdir(new)), 60)
        self.assertEqual([warm(d, "other")["sent"] for d in ds], [10, 10, 10])

    test_site_rate_holds_for_the_cluster = None
    test_redis_down_local_one_nth_then_shared_again = None
    test_killed_node_leaves_and_the_others_take_the_rate = None


def iso_time(s):
    """An event's time (2026-12-07T17:20:01.456Z) in seconds since the epoch."""
    import calendar
    base, frac = s.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float("0." + frac)


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class SlowDown(Cluster):
    # node 0 (127.0.0.2) alone is told to slow down, for slow@d.test only
    sink_args = ("--reply", "[127.0.0.2]rcpt:slow*=451 4.7.28 Our system has detected an "
                 "unusual rate of unsolicited mail originating from your IP address")

    def test_a_421_on_one_node_slows_every_node(self):
        """300/s over three nodes; node 0 gets a 451 4.7.28 "slow down": the
        other two, never told, pause with it (nothing from them 0.6 to
        0.85 s after it), then the cluster runs at the cut rate (0.85 x
        300, +7 %) instead of 300."""
        ds = self.nodes("300/s")
        for d in ds:
            self.submit(d, 2500)
        new = os.path.join(self.sink.maildir, "new")
        util.wait_until(lambda: len(os.listdir(new)) >= 900, 15)
        jid = ds[0].submit(simple_job(0, domain="d.test") | {
            "recipients": [{"email": "slow@d.test", "substitutions": {"name": "x"}}]}).json()["id"]
        tf = util.wait_until(lambda: self.events(ds[0], jid, "TransientFailure"), 10)
        if not tf:
            print(ds[0].request("GET", "/v1/jobs/" + jid).json(),
                  ds[0].request("GET", "/v1/events?job=" + jid).lines(),
                  ds[0].request("GET", "/v1/queues").json())
            self.fail("no 421 seen")
        t_cut = iso_time(tf[0]["time"])
        # one episode: no retry of slow@ to slow the cluster again
        self.assertEqual(ds[0].request("POST", "/v1/jobs/%s/cancel" % jid).status, 200)
        time.sleep(5)
        got = self.arrivals(len(os.listdir(new)), 5)
        others = [t for t, p in got if p != ADDRS[0] and t_cut + 0.6 <= t < t_cut + 0.85]
        self.assertLessEqual(len(others), 3, "the others paused too: %d sent" % len(others))
        after = [t for t, p in got if t_cut + 1.5 <= t < t_cut + 4.5]
        rate = len(after) / 3.0
        print("\n    after the cut: %.1f/s" % rate, end=" ")
        self.assertLessEqual(rate, 0.85 * 300 * 1.07, "%.1f/s after the cut" % rate)
        self.assertGreater(rate, 0.85 * 300 * 0.8, "delivery goes on: %.1f/s" % rate)
        self.assertGreaterEqual(metric(ds[0], "volley_cluster_slow_downs_total"), 1)
        for d in ds[1:]:
            self.assertEqual(metric(d, "volley_cluster_slow_downs_total"), 0)

    test_site_rate_holds_for_the_cluster = None
    test_redis_down_local_one_nth_then_shared_again = None
    test_killed_node_leaves_and_the_others_take_the_rate = None


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class Connections(Cluster):
    # every reply 20 ms late: sessions stay busy, so each node would open
    # all its max_connections without the cluster's leases
    sink_args = ("--latency", "20ms", "--stats-every", "100ms")

    def test_connection_limit_holds_for_the_cluster(self):
        """max_connections = 30 for the site, three nodes with 1,500
        recipients each and no rate: at no sample (every 100 ms) has the
        sink more than 30 connections open, and the nodes use them."""
        ds = self.nodes(None, conns=30)
        for d in ds:
            self.submit(d, 1500)
        self.sink.new_messages(4500, wait=60)
        samples = [l["conns_open"] for l in self.sink.stats_lines()]
        self.assertGreater(len(samples), 10)
        self.assertLessEqual(max(samples), 30, samples)
        self.assertGreaterEqual(max(samples), 24, "the shares are used: %s" % samples)
        for d in ds:
            self.assertEqual(metric(d, "volley_cluster_shared"), 1)

    test_site_rate_holds_for_the_cluster = None
    test_redis_down_local_one_nth_then_shared_again = None
    test_killed_node_leaves_and_the_others_take_the_rate = None


def redis_cmd(port, *args):
    """One command to the test's Redis over a raw socket (RESP); the reply's
    first line (enough for the integers and statuses used here)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(out)
        return c.recv(65536).split(b"\r\n")[0].decode()


def redis_tls_clients(port, ca):
    """CLIENT LIST over TLS (python's ssl, the test's CA)."""
    import ssl
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
            c.sendall(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n")
            time.sleep(0.2)
            return c.recv(65536).decode()


def suppressed(d, email):
    return d.request("GET", "/v1/suppression/" + email, timeout=5).status == 200


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class Suppression(Cluster):
    """The suppression list shared through Redis (docs/cluster.md)."""
    sink_args = ("--reply", "rcpt:hard*=550 5.1.1 The email account that you tried to reach "
                 "does not exist")

    def add(self, d, email):
        r = d.request("PUT", "/v1/suppression/" + email)
        self.assertIn(r.status, (200, 201), r)

    def until(self, what, fn, timeout):
        """Seconds until fn() holds (polled every 10 ms, bounded)."""
        t0 = time.time()
        self.assertTrue(util.wait_until(fn, timeout, interval=0.01), what)
        return time.time() - t0

    def test_added_on_one_node_stops_delivery_from_another_within_a_second(self):
        """Node 1 sends a job of 300 recipients at 50/s; once 50 have
        arrived, node 0 (API) suppresses 20 of the later ones: node 1
        knows within a second, and no suppressed address reaches the sink
        later than a second after the PUT."""
        ds = self.nodes("50/s", n=2)
        jid = self.submit(ds[1], 300)
        self.sink.new_messages(50, wait=20)
        late = ["user%d@d.test" % i for i in range(100, 300, 10)]
        t_add = time.time()
        for e in late:
            self.add(ds[0], e)
        t_done = time.time()
        lag = self.until("node 1 has them", lambda: all(suppressed(ds[1], e) for e in late), 5)
        print("\n    20 PUTs on node 0 took %.3f s; all on node 1 %.3f s after" %
              (t_done - t_add, lag), end=" ")
        self.assertLess(t_done - t_add + lag, 1.0)
        job = self.wait_done(ds[1], jid, timeout=30)
        after = [m.env["rcpt"][0] for m in self.sink.messages()
                 if os.stat(os.path.join(self.sink.maildir, "new", m.id)).st_mtime > t_add + 1.0]
        self.assertEqual([e for e in late if e in after], [], "delivered after add + 1 s")
        self.assertGreaterEqual(job["counts"]["suppressed"], 15, job)
        self.assertEqual(metric(ds[0], "volley_cluster_suppressions_sent_total"), 20)
        self.assertEqual(metric(ds[1], "volley_cluster_suppressions_received_total"), 20)
        self.assertEqual(metric(ds[0], "volley_cluster_suppressions_received_total"), 0,
                         "no echo of its own changes")
        self.assertEqual(metric(ds[1], "volley_cluster_suppressions_sent_total"), 0,
                         "what came from the cluster is not sent again")

    def test_removal_propagates_and_a_later_node_loads_the_list(self):
        """Added on node 0, removed on node 1: gone everywhere within a
        second. A node started afterwards (empty data dir) has what is
        still suppressed, with its reason, and not the removed one; it
        delivers accordingly."""
        ds = self.nodes("1000/s", n=2)
        self.add(ds[0], "gone@d.test")
        self.add(ds[0], "kept@d.test")
        self.until("node 1 has both", lambda: suppressed(ds[1], "gone@d.test") and
                   suppressed(ds[1], "kept@d.test"), 2)
        self.assertEqual(ds[1].request("DELETE", "/v1/suppression/gone@d.test").status, 200)
        lag = self.until("removed on node 0", lambda: not suppressed(ds[0], "gone@d.test"), 2)
        self.assertLess(lag, 1.0)
        d2 = start_node(self, node_conf(self.sink, self.redis, 2, "1000/s")).start()
        self.until("node 2 caught up", lambda: suppressed(d2, "kept@d.test"), 10)
        self.assertFalse(suppressed(d2, "gone@d.test"))
        lst = d2.request("GET", "/v1/suppression").json()["suppressed"]
        e = [x for x in lst if x["email"] == "kept@d.test"]
        self.assertEqual([(x["reason"], x["job"]) for x in e], [("added by API", None)], lst)
        jid = d2.submit(simple_job(0, recipients=[
            {"email": a, "substitutions": {"name": "x"}}
            for a in ("kept@d.test", "gone@d.test")])).json()["id"]
        job = self.wait_done(d2, jid)
        self.assertEqual((job["counts"]["delivered"], job["counts"]["suppressed"]), (1, 1), job)
        # restarted, a node loads only what it missed (its counter is on disk)
        ds[1].stop()
        self.add(ds[0], "new@d.test")
        ds[1].start()
        self.until("node 1 caught up", lambda: suppressed(ds[1], "new@d.test"), 10)
        self.assertEqual(metric(ds[1], "volley_cluster_suppressions_received_total"), 1)

    def test_a_hard_bounce_on_one_node_suppresses_on_the_others(self):
        """A 550 5.1.1 to node 0 suppresses the address there (the
        committer's invalid-recipient): node 1 has it too, reason and job."""
        ds = self.nodes("1000/s", n=2)
        jid = ds[0].submit(simple_job(0, recipients=[
            {"email": "hard1@d.test", "substitutions": {"name": "x"}}])).json()["id"]
        self.wait_done(ds[0], jid)
        self.until("node 1 has it", lambda: suppressed(ds[1], "hard1@d.test"), 2)
        lst = ds[1].request("GET", "/v1/suppression").json()["suppressed"]
        self.assertEqual([(x["email"], x["reason"], x["job"]) for x in lst],
                         [("hard1@d.test", "invalid-recipient", jid)])

    def test_added_while_redis_is_down_reaches_the_others_after(self):
        """Redis stopped: node 0 suppresses an address (its own list at
        once, one change pending); Redis back (empty: no persistence):
        node 0 sends it, node 1 gets it."""
        ds = self.nodes("1000/s", n=2)
        port = self.redis.port
        self.redis.stop()
        self.wait_for("down", lambda: metric(ds[0], "volley_cluster_suppressions_shared") == 0,
                      timeout=5)
        self.add(ds[0], "offline@d.test")
        self.assertTrue(suppressed(ds[0], "offline@d.test"))
        self.assertEqual(metric(ds[0], "volley_cluster_suppressions_pending"), 1)
        time.sleep(1)
        self.assertFalse(suppressed(ds[1], "offline@d.test"))
        self.redis = Redis(port).start()
        self.addCleanup(self.redis.cleanup)
        self.until("node 1 has it", lambda: suppressed(ds[1], "offline@d.test"), 15)
        self.assertEqual(metric(ds[0], "volley_cluster_suppressions_pending"), 0)

    def test_shared_over_tls(self):
        """Redis with TLS only: both of a node's connections (commands and
        subscriber) go over TLS, and a suppression on node 0 reaches node 1
        within a second."""
        from . import pki
        ca = pki.TestCA(util.tempdir("volley-suppca-", cleanup=self.addCleanup))
        chain, key, _ = ca.issue("redis", ["127.0.0.1"])
        r = Redis(tls=["--tls-cert-file", chain, "--tls-key-file", key,
                       "--tls-ca-cert-file", ca.ca_pem, "--tls-auth-clients", "no"]).start()
        self.addCleanup(r.cleanup)
        ds = [start_node(self, node_conf(self.sink, r, i, "1000/s",
                                         extra='tls_ca_file = "%s";' % ca.ca_pem)).start()
              for i in range(2)]
        for d in ds:
            self.wait_for("synced over TLS",
                          lambda: metric(d, "volley_cluster_suppressions_shared") == 1, timeout=15)
        self.add(ds[0], "tls@d.test")
        lag = self.until("node 1 has it", lambda: suppressed(ds[1], "tls@d.test"), 5)
        self.assertLess(lag, 1.0)
        clients = redis_tls_clients(r.port, ca.ca_pem)
        self.assertGreaterEqual(clients.count("cmd=subscribe"), 2, clients)

    def test_hostile_entries_are_skipped(self):
        """Garbage in Redis's list and on its channel: logged and skipped
        (counted), the nodes go on and later changes still apply."""
        ds = self.nodes("1000/s", n=2)
        port = self.redis.port
        big = "x" * 100000
        for member, value in (("a@d.test", "{not json"), ("b@d.test", '{"op":"add"}'),
                              ("c@d.test", big), ("no-at", '{"op":"add","node":"n","at":1}'),
                              ("d@d.test", '{"op":"add","node":"' + big + '","at":1}')):
            redis_cmd(port, "HSET", "volley:supp", member, value)
            redis_cmd(port, "ZADD", "volley:supp:seq", redis_cmd(port, "INCR",
                                                                 "volley:supp:ctr")[1:], member)
        for msg in ("1", "x\ty\tz", "99999999999\tq@d.test\t{}", "5\t" + big, big):
            redis_cmd(port, "PUBLISH", "volley:supp:ch", msg)
        # a node that loads all of it
        d2 = start_node(self, node_conf(self.sink, self.redis, 2, "1000/s")).start()
        self.wait_for("node 2 synced",
                      lambda: metric(d2, "volley_cluster_suppressions_shared") == 1, timeout=10)
        self.assertGreaterEqual(metric(d2, "volley_cluster_suppressions_bad_total"), 5)
        self.assertGreaterEqual(metric(ds[0], "volley_cluster_suppressions_bad_total"), 4)
        for e in ("a@d.test", "b@d.test", "c@d.test", "d@d.test"):
            self.assertFalse(suppressed(d2, e), e)
        self.add(ds[1], "good@d.test")
        for d in (ds[0], d2):
            self.until("a good change after the garbage",
                       lambda: suppressed(d, "good@d.test"), 2)

    test_site_rate_holds_for_the_cluster = None
    test_redis_down_local_one_nth_then_shared_again = None
    test_killed_node_leaves_and_the_others_take_the_rate = None


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server is not installed")
class Config(VolleydTest):
    def test_bad_cluster_config_refused_with_the_key(self):
        for text, what in (('cluster = { redis = "rediss://127.0.0.1:1/0"; '
                            'tls_cert = "/etc/hostname"; node = "a"; };', "cluster.tls_key"),
                           ('cluster = { redis = "redis://127.0.0.1:99999"; node = "a"; };',
                            "cluster.redis"),
                           ('cluster = { redis = "redis://127.0.0.1:6379"; };',
                            "cluster.node")):
            d = Volleyd(config=text)
            self.addCleanup(d.cleanup)
            d.start(wait=False)
            rc = d.proc.wait(timeout=10)
            self.assertNotEqual(rc, 0, text)
            self.assertIn(what, d.output(), text)

    def test_starts_local_without_redis_and_joins_when_it_comes(self):
        port = util.free_port()
        sink = Sink().start()
        self.addCleanup(sink.cleanup)
        r = Redis(port)
        d = start_node(self, node_conf(sink, r, 0, "50/s")).start()
        self.assertEqual(metric(d, "volley_cluster_shared"), 0)
        r.start()
        self.addCleanup(r.cleanup)
        self.wait_for("shared", lambda: metric(d, "volley_cluster_shared") == 1, timeout=10)
        self.assertEqual(metric(d, "volley_cluster_nodes"), 1)
        cli = subprocess.run(["redis-cli", "-p", str(port), "GET", "volley:node:node-0"],
                             capture_output=True, text=True, timeout=10)
        if cli.returncode == 0:   # the registry keeps the node's API address
            self.assertIn(d.sock, cli.stdout)
