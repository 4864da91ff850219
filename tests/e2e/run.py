#!/usr/bin/env python3
"""Run the end-to-end tests.

    python3 -m tests.e2e.run [FILTER...]     (from the repository root)
    python3 tests/e2e/run.py [FILTER...]     (the same, from anywhere)

A FILTER selects the tests whose id (tests.e2e.module.Class.test) contains it.
The last line is `e2e: N passed, N failed[, N skipped]`; exit 0 iff none failed.
The build: $VOLLEY_BUILD (default build/); volley-sink: $VOLLEY_SINK, default
the build's.

tests/ is a package whose modules import each other relatively from the
repository root: started as a file, this runs itself again as the module
tests.e2e.run with the root on PYTHONPATH (-P: the current folder is not).
"""

import os
import sys
import time
import unittest

if __name__ == "__main__" and not __package__:
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.execve(sys.executable, [sys.executable, "-P", "-m", "tests.e2e.run", *sys.argv[1:]],
              dict(os.environ, PYTHONPATH=os.pathsep.join(
                  filter(None, [_root, os.environ.get("PYTHONPATH")]))))

from . import sinkctl, util  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def tests_of(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from tests_of(item)
        else:
            yield item


class Result(unittest.TextTestResult):
    """Counts tests, not subtests: a test fails once however many of its
    subtests do; a failing setUpClass counts as one failure."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.passed = 0
        self.times = {}

    def startTest(self, test):
        self.times[test.id()] = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.times[test.id()] = time.monotonic() - self.times[test.id()]

    def slowest(self, n):
        return sorted(self.times.items(), key=lambda kv: -kv[1])[:n]

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    def counts(self):
        bad = {getattr(t, "test_case", t).id() for t, _ in self.failures + self.errors}
        return self.passed, len(bad) + len(self.unexpectedSuccesses), len(self.skipped)


def main(filters):
    if not os.access(sinkctl.BINARY, os.X_OK):
        print("e2e: no executable volley-sink at %s (run make, or set VOLLEY_SINK)"
              % sinkctl.BINARY)
        print("e2e: 0 passed, 1 failed")
        return 1
    found = unittest.TestLoader().discover(HERE, pattern="test_*.py", top_level_dir=util.REPO)
    tests = [t for t in tests_of(found) if not filters or any(f in t.id() for f in filters)]
    if not tests:
        print("e2e: no test matches %s" % " ".join(filters))
        print("e2e: 0 passed, 1 failed")
        return 1
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=Result).run(unittest.TestSuite(tests))
    if len(tests) > 20:   # where the suite's time goes
        print("slowest tests:")
        for name, secs in result.slowest(15):
            print("  %6.1f s  %s" % (secs, name))
    passed, failed, skipped = result.counts()
    summary = "e2e: %d passed, %d failed" % (passed, failed)
    if skipped:
        summary += ", %d skipped" % skipped
    sys.stdout.flush()
    print(summary, flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(util.run_main(main, sys.argv[1:]))
