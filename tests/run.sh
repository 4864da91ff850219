#!/bin/sh
# Every test of volley: Criterion unit tests, end-to-end tests against real
# clients, and the connection stress test. Prints each suite's own summary
# and, last, the total as "N passed, N failed". VOLLEY_BUILD picks the build
# (build/ or build/asan/).
set -u
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
export VOLLEY_BUILD="$B" VOLLEY_SINK="$B/volley-sink"
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
passed=0
failed=0

# suite NAME COMMAND...: run, echo, add up "X passed, Y failed".
suite() {
	name=$1
	shift
	echo "== $name"
	"$@" >"$LOG/$name" 2>&1
	rc=$?
	cat "$LOG/$name"
	line=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed" "$LOG/$name" | tail -1)
	p=$(echo "$line" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')
	f=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
	if [ -z "$line" ] || { [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; }; then
		echo "$name: no result or exit $rc: counted as 1 failure"
		p=${p:-0} f=$((${f:-0} + 1))
	fi
	passed=$((passed + p))
	failed=$((failed + f))
}

# Criterion prints its own synthesis; restate it in the common form.
echo "== unit"
"$B/tests/unit" --jobs 2 >"$LOG/unit" 2>&1
rc=$?
cat "$LOG/unit"
syn=$(grep "Synthesis:" "$LOG/unit" | tail -1)
up=$(echo "$syn" | sed -nE 's/.*Passing: ([0-9]+).*/\1/p')
uf=$(echo "$syn" | sed -nE 's/.*Failing: ([0-9]+) \| Crashing: ([0-9]+).*/\1 \2/p')
if [ -z "$syn" ]; then
	echo "unit: no Criterion synthesis (exit $rc): counted as 1 failure"
	up=0 uf="1 0"
fi
uf=$(echo "$uf" | awk '{print $1 + $2}')
# Criterion's workers report leaks on exit without failing the test: count them.
leaks=$(grep -c "ERROR: LeakSanitizer" "$LOG/unit")
if [ "$leaks" -gt 0 ]; then
	echo "unit: LeakSanitizer reported $leaks leaking test process(es): counted as failures"
	uf=$((uf + leaks))
fi
echo "unit: $up passed, $uf failed"
passed=$((passed + up))
failed=$((failed + uf))

suite e2e python3 -m tests.e2e.run
suite stress python3 -m tests.stress.many_conns
suite crash python3 -m tests.stress.crash
suite crash-shared env CRASH_SHARED=1 python3 -m tests.stress.crash

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
