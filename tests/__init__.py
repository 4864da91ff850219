"""volley's Python tests, a package imported from the repository root
(python3 -m tests.e2e.run, python3 -m tests.stress.crash, ...): e2e/ and
stress/. The unit tests (unit/) are C."""
