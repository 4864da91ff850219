#!/usr/bin/python3
"""Validate TLS-RPT reports (RFC 8460 4.4) against tlsrpt-schema.json.

    /usr/bin/python3 tests/tools/tlsrpt_validate.py FILE...   (or - for stdin)

Also checks what a schema cannot: the date range is one whole UTC day and
each policy's failure details add up to at most its failure count.
Prints one line per problem; exit 0 iff every report is valid. Needs
Debian's python3-jsonschema (scripts/install-deps.sh installs it)."""

import json
import os
import sys

import jsonschema

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tlsrpt-schema.json")


def problems(report, schema):
    v = jsonschema.Draft7Validator(schema)
    out = ["%s: %s" % ("/".join(map(str, e.path)) or "(top)", e.message)
           for e in v.iter_errors(report)]
    if out:
        return out
    dr = report["date-range"]
    day = dr["start-datetime"][:10]
    if dr["start-datetime"] != day + "T00:00:00Z" or dr["end-datetime"] != day + "T23:59:59Z":
        out.append("date-range: not one whole UTC day: %r" % dr)
    for i, p in enumerate(report["policies"]):
        details = sum(d["failed-session-count"] for d in p.get("failure-details", []))
        if details > p["summary"]["total-failure-session-count"]:
            out.append("policies/%d: failure details count %d, more than the summary's %d"
                       % (i, details, p["summary"]["total-failure-session-count"]))
    return out


def main(paths):
    with open(SCHEMA) as f:
        schema = json.load(f)
    bad = 0
    for path in paths:
        data = sys.stdin.read() if path == "-" else open(path).read()
        for line in problems(json.loads(data), schema):
            print("%s: %s" % (path, line))
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["-"]))
