#!/usr/bin/env python3
"""Run the volley-sink end-to-end tests.

    tests/e2e/run.py [FILTER...]

A FILTER selects the tests whose id (module.Class.test) contains it.
The last line is `e2e: N passed, N failed[, N skipped]`; exit 0 iff none failed.
Binary: $VOLLEY_SINK, default <repo>/build/volley-sink.
"""

import os
import signal
import sys
import unittest

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

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    def counts(self):
        bad = {getattr(t, "test_case", t).id() for t, _ in self.failures + self.errors}
        return self.passed, len(bad) + len(self.unexpectedSuccesses), len(self.skipped)


def main(filters):
    sys.path.insert(0, HERE)
    import sinkctl
    # SIGTERM runs atexit too, so no sink outlives the runner
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not os.access(sinkctl.BINARY, os.X_OK):
        print("e2e: no executable volley-sink at %s (run make, or set VOLLEY_SINK)"
              % sinkctl.BINARY)
        print("e2e: 0 passed, 1 failed")
        return 1
    found = unittest.TestLoader().discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    tests = [t for t in tests_of(found) if not filters or any(f in t.id() for f in filters)]
    if not tests:
        print("e2e: no test matches %s" % " ".join(filters))
        print("e2e: 0 passed, 1 failed")
        return 1
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=Result).run(unittest.TestSuite(tests))
    passed, failed, skipped = result.counts()
    summary = "e2e: %d passed, %d failed" % (passed, failed)
    if skipped:
        summary += ", %d skipped" % skipped
    sys.stdout.flush()
    print(summary, flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
