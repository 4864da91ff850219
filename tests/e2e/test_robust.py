"""Robustness: many concurrent connections, several threads."""

import resource
import selectors
import socket
import time

from .sinkctl import SinkTest

MSG = b"Subject: robust\r\n\r\nbody\r\n"


class ConcurrencyTest(SinkTest):
    def raise_nofile(self, need):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            if hard != resource.RLIM_INFINITY and hard < need:
                self.skipTest("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def greetings(self, socks, timeout=15.0):
        """What each socket got up to its first CRLF (bounded in time)."""
        got = {s.fileno(): b"" for s in socks}
        with selectors.DefaultSelector() as sel:
            for s in socks:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    try:
                        chunk = key.fileobj.recv(4096)
                    except ConnectionError:
                        chunk = b""
                    got[key.fd] += chunk
                    if not chunk or b"\r\n" in got[key.fd]:
                        sel.unregister(key.fileobj)
        return list(got.values())

    def test_1000_concurrent_connections(self):
        n = 1000
        self.raise_nofile(n + 256)
        sink = self.start_sink()
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(n):
            socks.append(socket.create_connection((sink.host, sink.port), timeout=5))
        got = self.greetings(socks)
        bad = [g for g in got if not (g.startswith(b"220") and g.endswith(b"\r\n"))]
        self.assertEqual(len(bad), 0, "%d of %d not greeted, e.g. %r" % (len(bad), n, bad[:3]))
        for s in socks:
            s.close()
        c = self.connect(sink)
        c.begin()
        self.assertReply(c.data(MSG), 250)
        self.assertEqual([m.data for m in sink.new_messages(1)], [MSG])
        self.assertGreaterEqual(sink.final_stats()["conns_total"], n + 1)

    def test_threads(self):
        sink = self.start_sink("--threads", "2")
        for i in range(20):
            s = self.smtp(sink)
            self.assertEqual(s.sendmail("a@example.test", ["b%d@example.test" % i], MSG), {})
            s.quit()
        self.assertEqual(len(sink.new_messages(20)), 20)
        self.assertEqual(sink.final_stats()["messages"], 20)
