#!/bin/bash
# make demo: a personalised newsletter of 10,000 recipients through volley.
# Starts volley-sink (STARTTLS, a few scripted rejections, 2 % temporary
# failures, a maildir) and volleyd in a temporary folder on loopback,
# submits the job with the volley CLI (a progress bar on a terminal),
# prints the job's report, its bounces with their classes, the queues and
# where the events are, and stops what it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
N=${DEMO_RECIPIENTS:-10000}
DIR=$(mktemp -d /tmp/volley-demo.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SINK= VOLLEYD=
stop() {
	[ -n "$VOLLEYD" ] && kill -TERM "$VOLLEYD" 2>/dev/null && wait "$VOLLEYD" 2>/dev/null
	[ -n "$SINK" ] && kill -TERM "$SINK" 2>/dev/null && wait "$SINK" 2>/dev/null
	true
}
trap stop EXIT

"$B/volley-sink" --listen "127.0.0.1:$PORT" --tls --maildir "$DIR/maildir" \
	--reply 'rcpt:reader1?@news.test=550 5.1.1 The email account that you tried to reach does not exist' \
	--reply 'rcpt:reader2?@news.test=552 5.2.2 The email account that you tried to reach is over quota' \
	--tempfail rcpt:2% --quiet >"$DIR/sink-stats.jsonl" &
SINK=$!
cat >"$DIR/volley.conf" <<EOF
data_dir = "$DIR/data";
hostname = "mta1.volley-demo.test";
dns = { servers = [ "127.0.0.1:9" ]; };
defaults = { retry = [ "1s", "2s" ]; };
domains = ( { match = "*.test"; route = "127.0.0.1:$PORT"; tls = "encrypt"; max_connections = 20; } );
EOF
"$B/volleyd" --foreground --config "$DIR/volley.conf" 2>"$DIR/volleyd.log" &
VOLLEYD=$!
for _ in $(seq 200); do [ -S "$DIR/data/volley.sock" ] && break; sleep 0.05; done

cat >"$DIR/job.json" <<'EOF'
{
  "envelope_sender": "bounces@news.volley-demo.test",
  "campaign": "demo-2026",
  "verp": true,
  "content": {
    "from": {"email": "news@volley-demo.test", "name": "Volley Demo News"},
    "subject": "{{ first }}, the autumn issue is out",
    "text_body": "Hi {{ first }},\n\nthe autumn issue is out. It is {{ season }} in {{ city }}.\n",
    "html_body": "<p>Hi {{ first }},</p><p>the autumn issue is out. It is {{ season }} in {{ city }}.</p>"
  },
  "substitutions": {"season": "autumn"},
  "unsubscribe": {"url": "https://volley-demo.test/u/{{ token }}", "mailto": "unsubscribe@volley-demo.test"}
}
EOF
python3 - "$N" >"$DIR/list.csv" <<'PY'
import sys
cities = ["Amsterdam", "Zürich", "São Paulo", "Kraków", "Oslo", "Lyon"]
print("email,name,first,city,token")
for i in range(int(sys.argv[1])):
    print(f"reader{i}@news.test,Reader {i},Reader{i},\"{cities[i % len(cities)]}\",t{i:06x}")
PY

echo "== volley-sink on 127.0.0.1:$PORT (STARTTLS; reader1?@ and reader2?@ rejected, 2 % of"
echo "   recipients get a 4xx first); volleyd on $DIR/data/volley.sock"
echo "== volley submit job.json --recipients list.csv --wait   ($N recipients)"
V=("$B/volley" --data-dir "$DIR/data")
ID=$("${V[@]}" submit "$DIR/job.json" --recipients "$DIR/list.csv" --json |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"${V[@]}" status "$ID" --watch || true
echo "== volley status $ID"
"${V[@]}" status "$ID"
echo "== volley bounces $ID (CSV; the first lines)"
"${V[@]}" bounces "$ID" | awk 'NR <= 4 || /over quota/ && !q++' 
echo "== volley queues"
"${V[@]}" queues
f=$(find "$DIR/maildir/new" -type f -printf "%f\n" -quit)
echo "== one delivered message, as the sink stored it ($DIR/maildir/new/$f):"
awk '/^\r?$/ {exit} NR <= 16 {print "   " $0}' "$DIR/maildir/new/$f"
echo "== events (JSON lines): $DIR/data/events/; the first:"
awk 'NR == 1 {print "   " $0; exit}' "$DIR"/data/events/*.jsonl
echo "== files kept in $DIR"
