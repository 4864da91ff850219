#!/bin/bash
# Job intake (the project's target: a 1,000,000-recipient NDJSON job accepted,
# durable, in under 5 s). Generates a personalised job of N recipients over
# 1,000 domains, uploads it to volleyd over the Unix socket with curl RUNS
# times, and prints the time to the 202 (fsync'd), recipients per second,
# and volleyd's peak RSS against the size of the upload. The recipients'
# domains route to a volley-sink that answers after 60 s over one
# connection, so deliveries (two messages in flight) stay out of the figures.
#   RUNS=3 RECIPIENTS=1000000 bench/intake.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
RUNS=${RUNS:-3}
N=${RECIPIENTS:-1000000}
T=$(mktemp -d)
PID=
SINK=
cleanup() {
	for p in $PID $SINK; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

python3 - "$N" >"$T/job.ndjson" <<'EOF'
import json, sys
n = int(sys.argv[1])
w = sys.stdout.write
w(json.dumps({"envelope_sender": "bounces@news.example.com", "campaign": "bench",
              "content": {"from": {"email": "news@example.com", "name": "Example News"},
                          "subject": "Hello {{ name }}",
                          "text_body": "Hi {{ name }},\n\nyour code is {{ token }}.\n",
                          "html_body": "<p>Hi {{ name }}</p><p>code {{ token }}</p>"},
              "unsubscribe": {"url": "https://example.com/u/{{ token }}"}}) + "\n")
for i in range(n):
    w('{"email":"user%d@domain%d.example","name":"User %d","substitutions":'
      '{"name":"User %d","token":"%08x"}}\n' % (i, i % 1000, i, i, (i * 2654435761) % 2**32))
EOF
SIZE=$(stat -c %s "$T/job.ndjson")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$B/volley-sink" --listen "127.0.0.1:$PORT" --latency 60s --quiet >/dev/null &
SINK=$!
cat >"$T/volley.conf" <<EOF2
domains = ( { match = "*.example"; route = "127.0.0.1:$PORT"; tls = "none";
              max_connections = 1; } );
EOF2
"$B/volleyd" --foreground --data-dir "$T/data" --config "$T/volley.conf" 2>"$T/volleyd.log" &
PID=$!
for _ in $(seq 100); do [ -S "$T/data/volley.sock" ] && break; sleep 0.05; done

echo "== intake: $N recipients, $((SIZE / 1000000)) MB of NDJSON, $RUNS runs, $(nproc) cores"
printf '%-6s %10s %14s %8s\n' run seconds "recipients/s" status
times=()
for i in $(seq "$RUNS"); do
	out=$(curl -s -o "$T/answer" -w '%{http_code} %{time_total}' --unix-socket "$T/data/volley.sock" \
		-H 'Content-Type: application/x-ndjson' --data-binary @"$T/job.ndjson" \
		http://localhost/v1/jobs)
	code=${out% *}; secs=${out#* }
	got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["recipients"])' "$T/answer" 2>/dev/null || echo 0)
	[ "$code" = 202 ] && [ "$got" = "$N" ] || { echo "run $i: HTTP $code, $got recipients" >&2; cat "$T/answer" >&2; exit 1; }
	awk -v i="$i" -v s="$secs" -v n="$N" -v c="$code" 'BEGIN {printf "%-6s %10.2f %14.0f %8s\n", i, s, n / s, c}'
	times+=("$secs")
done
med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
rss=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$PID/status")
file=$(awk '/RssFile/ {print $2}' "/proc/$PID/status")
awk -v m="$med" -v n="$N" -v rss="$rss" -v size="$SIZE" 'BEGIN {
	printf "median %.2f s to a durable 202 (target < 5 s: %s); %.0f recipients/s\n",
		m, m < 5 ? "met" : "MISSED", n / m
	printf "volleyd peak RSS %.0f MB (page cache of mapped spool files included)\n", rss / 1000 }'
awk -v a="$anon" -v f="$file" -v runs="$RUNS" -v size="$SIZE" 'BEGIN {
	printf "after %d jobs: %.0f MB private memory (%.2f of one %.0f MB upload), %.0f MB of mapped spool files (page cache)\n",
		runs, a / 1000, a * 1000 / size, size / 1e6, f / 1000 }'
