#!/bin/sh
# Feedback reports parsed per second on one core: build/volley-feedback-bench
# (feedback/'s fb_parse and the matching hints over a round robin of the
# samples in tests/unit/data/feedback/: DSNs, ARF, heuristic bounces, a
# non-report) beside Python's standard email package doing the comparable
# work on the same samples (bench/feedback-peer.py), as a ratio.
#   COUNT (100000): reports per run; the peer parses COUNT/10.
set -eu
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
N=${COUNT:-100000}
D=tests/unit/data/feedback
[ -x "$B/volley-feedback-bench" ] || make --no-print-directory "$B/volley-feedback-bench" >/dev/null
echo "== feedback: reports parsed per second, one core, $N reports"
ours=$(taskset -c 0 "$B/volley-feedback-bench" "$N" "$D")
echo "$ours"
peer=$(taskset -c 0 /usr/bin/python3 bench/feedback-peer.py "$((N / 10))" "$D")
echo "$peer"
v=$(echo "$ours" | awk '/^feedback_parse_rate/ {print $2}')
p=$(echo "$peer" | awk '/^feedback_peer_rate/ {print $2}')
echo "$v $p" | awk '{printf "volley %d reports/s, python email %d reports/s: %.1fx\n", $1, $2, $1 / $2}'
