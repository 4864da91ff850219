#!/bin/bash
# DKIM end to end: messages per second through volleyd to volley-sink
# (STARTTLS, journal, events) with signing off, with an Ed25519 key, with an
# RSA-2048 key and with both (dual signing), for a personalised job of N
# recipients. Signing runs on the engine workers (one per core).
#   RECIPIENTS=20000 bench/dkim-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
N=${RECIPIENTS:-20000}
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

PORT=$(python3 -c 'from tests.e2e.util import free_port; print(free_port())')
"$B/volley-sink" --listen "127.0.0.1:$PORT" --tls --quiet >/dev/null &
PIDS+=($!)
"$B/volley" dkim keygen --domain example.com --selector ed --algorithm ed25519 --out "$T" >/dev/null
"$B/volley" dkim keygen --domain example.com --selector rsa --algorithm rsa --out "$T" >/dev/null
python3 - "$N" >"$T/job.ndjson" <<'EOF'
import json, sys
w = sys.stdout.write
w(json.dumps({"envelope_sender": "bounces@example.com",
              "content": {"from": {"email": "news@example.com", "name": "News"},
                          "subject": "Hello {{ name }}",
                          "text_body": "Hi {{ name }},\n" + "A line of the newsletter.\n" * 60,
                          "html_body": "<p>Hi {{ name }}</p>" + "<p>A paragraph.</p>" * 100}}) + "\n")
for i in range(int(sys.argv[1])):
    w('{"email":"u%d@d%d.example","substitutions":{"name":"U%d"}}\n' % (i, i % 100, i))
EOF

run() {   # NAME DKIM-LIST
	local dir="$T/$1"
	mkdir -p "$dir"
	cat >"$dir/volley.conf" <<EOF
data_dir = "$dir/data";
domains = ( { match = "*.example"; route = "127.0.0.1:$PORT"; tls = "encrypt"; } );
dkim = ( $2 );
EOF
	"$B/volleyd" --foreground --config "$dir/volley.conf" 2>"$dir/log" &
	local pid=$!
	for _ in $(seq 200); do [ -S "$dir/data/volley.sock" ] && break; sleep 0.05; done
	python3 - "$dir/data/volley.sock" "$T/job.ndjson" "$N" "$1" <<'EOF'
import json, sys, time
from tests.e2e.daemon import UnixHTTPConnection
sock, path, n, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def req(m, p, body=None, h=None):
    c = UnixHTTPConnection(sock, timeout=120)
    c.request(m, p, body=body, headers=h or {})
    r = c.getresponse(); b = r.read(); c.close(); return b
jid = json.loads(req("POST", "/v1/jobs", open(path, "rb").read(),
                     {"Content-Type": "application/x-ndjson"}))["id"]
t0 = time.monotonic()
while True:
    j = json.loads(req("GET", "/v1/jobs/" + jid))
    if j["done"]:
        break
    if time.monotonic() - t0 > 300:
        sys.exit("timed out: %s" % j)
    time.sleep(0.05)
s = time.monotonic() - t0
print("%-12s %8d %8.2f %10.0f" % (name, j["counts"]["delivered"], s, j["counts"]["delivered"] / s))
EOF
	kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "== DKIM end to end: $N personalised messages over STARTTLS, $(nproc) cores"
printf '%-12s %8s %8s %10s\n' signing delivered seconds "msgs/s"
ED="{ domain = \"example.com\"; selector = \"ed\"; key = \"$T/example.com.ed.pem\"; }"
RSA="{ domain = \"example.com\"; selector = \"rsa\"; key = \"$T/example.com.rsa.pem\"; }"
run off ""
run ed25519 "$ED"
run rsa-2048 "$RSA"
run both "$ED, $RSA"
