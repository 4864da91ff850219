"""Stress tests, each a program: many_conns (connections held at once) and
crash (kill -9 during a big job); they build on tests.e2e's harness."""
