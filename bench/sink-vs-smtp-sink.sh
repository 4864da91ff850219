#!/bin/bash
# volley-sink against Postfix's smtp-sink, both blasted by Postfix's
# smtp-source with the same settings on loopback. Prints each run, then the
# medians and the ratios volley-sink / smtp-sink for throughput and for
# messages per CPU-second of the sink itself (the client shares the machine,
# so CPU efficiency is the steadier figure on 2 cores).
#   SESSIONS=50 MESSAGES=100000 SIZE=4096 RUNS=3 bench/sink-vs-smtp-sink.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-50}
MESSAGES=${MESSAGES:-100000}
SIZE=${SIZE:-4096}
RUNS=${RUNS:-3}
B=${VOLLEY_BUILD:-build}
HOST=127.0.0.1
export PATH="$PATH:/usr/sbin"
for t in smtp-source smtp-sink "$B/volley-sink"; do
	command -v "$t" >/dev/null || { echo "missing $t (make bench installs postfix)" >&2; exit 1; }
done

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "port $1 never opened" >&2; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME PORT PID -> "msgs_per_s msgs_per_cpu_s"
run() {
	local port=$2 pid=$3 t0 t1 c0 c1
	c0=$(cpu_ticks "$pid")
	t0=$(date +%s.%N)
	timeout 600 smtp-source -d -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
		-f bench@source.test -t sink@sink.test "$HOST:$port"
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	python3 -c "
import os,sys
t=$t1-$t0; cpu=($c1-$c0)/os.sysconf('SC_CLK_TCK')
print(f'{$MESSAGES/t:.0f} {$MESSAGES/max(cpu,0.01):.0f}')"
}

P1=$(free_port); P2=$(free_port)
USER_OPT=(); [ "$(id -u)" = 0 ] && USER_OPT=(-u nobody)
smtp-sink "${USER_OPT[@]}" -m 10000 "$HOST:$P1" 4096 & PIDS+=($!); SPID=$!
"$B/volley-sink" --listen "$HOST:$P2" --quiet >/dev/null & PIDS+=($!); VPID=$!
wait_port "$P1"; wait_port "$P2"

echo "smtp-source -d -s $SESSIONS -m $MESSAGES -l $SIZE, $RUNS runs each, $(nproc) cores"
printf '%-12s %4s %12s %16s\n' sink run "msgs/s" "msgs/cpu-s"
declare -a V_T V_C S_T S_C
for i in $(seq "$RUNS"); do
	read -r t c < <(run smtp-sink "$P1" "$SPID"); S_T+=("$t"); S_C+=("$c")
	printf '%-12s %4d %12s %16s\n' smtp-sink "$i" "$t" "$c"
	read -r t c < <(run volley-sink "$P2" "$VPID"); V_T+=("$t"); V_C+=("$c")
	printf '%-12s %4d %12s %16s\n' volley-sink "$i" "$t" "$c"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
vt=$(median "${V_T[@]}"); st=$(median "${S_T[@]}")
vc=$(median "${V_C[@]}"); sc=$(median "${S_C[@]}")
echo
printf 'median       %17s %16s\n' "msgs/s" "msgs/cpu-s"
printf 'smtp-sink    %17s %16s\n' "$st" "$sc"
printf 'volley-sink  %17s %16s\n' "$vt" "$vc"
python3 -c "print(f'ratio volley-sink/smtp-sink: throughput {$vt/$st:.2f}, per CPU-second {$vc/$sc:.2f}')"
