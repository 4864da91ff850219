#!/bin/sh
# DKIM signing speed on one core: build/volley-dkim-bench (msg_dkim_sign of
# a typical bulk header set, body hash given) next to `openssl speed` on the
# same machine (the bare private-key operation), as a ratio; then body hash
# once per job against once per message (ed25519, 5 KB and 100 KB bodies),
# and the body hash of 100 KB (relaxed, simple) beside OpenSSL's SHA-256.
#   SECONDS_EACH (3): seconds per figure.
set -eu
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
S=${SECONDS_EACH:-3}
[ -x "$B/volley-dkim-bench" ] || make --no-print-directory "$B/volley-dkim-bench" >/dev/null
echo "== dkim: signatures per second, one core, ${S}s each"
ours=$("$B/volley-dkim-bench" "$S")
ssl=$(openssl speed -seconds "$S" rsa2048 ed25519 2>/dev/null)
ssl_rsa=$(echo "$ssl" | awk '/^rsa 2048 bits/ {print $(NF-1)}')
ssl_ed=$(echo "$ssl" | awk '/Ed25519/ {print $(NF-1)}')
v_rsa=$(echo "$ours" | awk '/^rsa2048_sign/ {print $2}')
v_ed=$(echo "$ours" | awk '/^ed25519_sign/ {print $2}')
printf "%-10s %14s %16s %7s\n" alg "volley sign/s" "openssl sign/s" ratio
printf "%-10s %14s %16s %6.0f%%\n" rsa-2048 "$v_rsa" "$ssl_rsa" \
	"$(echo "$v_rsa $ssl_rsa" | awk '{print 100 * $1 / $2}')"
printf "%-10s %14s %16s %6.0f%%\n" ed25519 "$v_ed" "$ssl_ed" \
	"$(echo "$v_ed $ssl_ed" | awk '{print 100 * $1 / $2}')"
echo "body hash once per job vs per message (ed25519, msg/s):"
echo "$ours" | awk '/_hash_/ {printf "  %-28s %8s\n", $1, $2}'
echo "body hash of 100 KB of prose (MB/s) against OpenSSL's bare SHA-256 of it:"
echo "$ours" | awk '/_body100k / {v[$1] = $2; printf "  %-28s %8s MB/s\n", $1, $2}
	END {printf "  relaxed / sha256 %.0f%%, simple / sha256 %.0f%%\n",
		100 * v["relaxed_body100k"] / v["sha256_body100k"],
		100 * v["simple_body100k"] / v["sha256_body100k"]}'
