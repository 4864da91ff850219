#!/bin/sh
# Every #include points to the same module or a lower layer, and only at
# another module's face, never at its internals (*_int.h). The layers are
# docs/architecture.md's:
#
#   5  volleyd/  cli/  bench/  tests/     programs (nothing includes them)
#   4  api/  submit/  unsub/  webhook/
#   3  scheduler/  sink/  imap/  doctor/
#   2  engine/  message/  sts/  smtpd/  feedback/  cluster/
#   1  dns/  tls/  config/  tlsrpt/  console/
#   0  common/
#
# A module's faces are listed below (faces()); any other header of a
# module is its inside. Tests may include any header (they test the
# insides), the benchmark programs' too. Prints each offending include and exits 1 if there is one.
set -u
cd "$(dirname "$0")/.."

out=$(mktemp)
files=$(mktemp)
trap 'rm -f "$out" "$files"' EXIT
# tracked files and new ones not yet added (but not ignored ones)
git ls-files --cached --others --exclude-standard '*.c' '*.h' >"$files" 2>/dev/null
if [ ! -s "$files" ]; then
	echo "check-layers: no C files found (not a git checkout?): nothing was checked" >&2
	exit 2
fi
xargs grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' <"$files" | awk '
function layer(m) {
	if (m == "common") return 0
	if (m == "dns" || m == "tls" || m == "config" || m == "tlsrpt" || m == "console") return 1
	if (m == "engine" || m == "message" || m == "sts" || m == "smtpd" || m == "feedback" || m == "cluster") return 2
	if (m == "scheduler" || m == "sink" || m == "imap" || m == "doctor") return 3
	if (m == "api" || m == "submit" || m == "unsub" || m == "webhook") return 4
	if (m == "volleyd" || m == "cli" || m == "bench" || m == "tests") return 5
	return -1
}
# the headers other modules may include
function face(path) {
	return path ~ /^(common\/common|config\/config|tls\/tls|dns\/dns|message\/message|engine\/engine|sts\/sts|scheduler\/(scheduler|spool|suppress|events|bounce|fback)|sink\/sink|smtpd\/smtpd|api\/api|submit\/submit|unsub\/unsub|webhook\/webhook|tlsrpt\/tlsrpt|feedback\/feedback|imap\/imap|doctor\/doctor|cluster\/cluster|console\/console)\.h$/
}
# dir/inc with "." and ".." resolved
function norm(path,   n, i, k, parts, out, res) {
	n = split(path, parts, "/")
	k = 0
	for (i = 1; i <= n; i++) {
		if (parts[i] == "." || parts[i] == "") continue
		if (parts[i] == "..") { if (k > 0) k--; continue }
		out[++k] = parts[i]
	}
	res = ""
	for (i = 1; i <= k; i++) res = res (i > 1 ? "/" : "") out[i]
	return res
}
{
	split($0, a, ":")
	f = a[1]; n = a[2]
	inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*$/, "", inc)
	dir = f; sub(/\/[^\/]*$/, "", dir)
	target = norm(dir "/" inc)
	from = f; sub(/\/.*/, "", from)
	to = target; sub(/\/.*/, "", to)
	lf = layer(from); lt = layer(to)
	if (lf < 0) { print f ": folder " from " has no layer in scripts/check-layers.sh"; next }
	if (lt < 0) { print f ":" n ": includes " inc ", outside every module"; next }
	if (to == from) next
	# tests also test the pure parts of the benchmark programs (bench/submit)
	if (from == "tests" && to == "bench") next
	if (lt >= lf) { print f ":" n ": " from " (layer " lf ") includes " target " (layer " lt "): not a lower layer"; next }
	if (from != "tests" && !face(target)) print f ":" n ": " from " reaches into " to "\047s insides (" target ", not one of its faces)"
}' >"$out"
if [ -s "$out" ]; then
	cat "$out"
	echo "check-layers: the includes above point up a layer or into another module's insides" >&2
	exit 1
fi
echo "check-layers: every include points to its own module or a lower layer's face"
