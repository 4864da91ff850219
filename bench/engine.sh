#!/bin/bash
# The delivery engine against volley-sink on loopback, 4 KB messages, one
# recipient each (the performance targets in bench/RESULTS.md):
#  1. zero latency, TLS off: volley-drive (the engine) vs volley-blast (a raw
#     pre-rendered pipelined client, the ceiling), same sink, same sessions;
#  2. zero latency, TLS on (STARTTLS, policy encrypt);
#  3. 50 ms reply latency: 1,000 and 10,000 sessions over 10 sink addresses:
#     throughput against sessions / RTT, and memory per open session.
#   RUNS=3 MESSAGES=100000 SESSIONS=50 LATENCY_RUNS="1000:100000 10000:200000" \
#   bench/engine.sh     (LATENCY_RUNS: sessions:messages pairs)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-100000}
SESSIONS=${SESSIONS:-50}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.05; done
	echo "$1:$2 never opened" >&2; exit 1
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sink() { "$B/volley-sink" "$@" --quiet >/dev/null & PIDS+=($!); }

P=$(free_port); PT=$(free_port)
sink --listen "127.0.0.1:$P"
sink --listen "127.0.0.1:$PT" --tls
wait_port 127.0.0.1 "$P"; wait_port 127.0.0.1 "$PT"

echo "== zero latency, $MESSAGES messages of 4 KB, $SESSIONS sessions, $RUNS runs, $(nproc) cores"
printf '%-28s %10s %14s\n' client "msgs/s" "cpu us/msg"
declare -a BL DR DT BC DC TC
for i in $(seq "$RUNS"); do
	out=$("$B/volley-blast" --route "127.0.0.1:$P" --conns "$SESSIONS" --messages "$MESSAGES" 2>&1)
	BL+=("$(field msgs_per_s <<<"$out")"); BC+=("$(field cpu_us_per_msg <<<"$out")")
	printf '%-28s %10s %14s\n' "volley-blast (ceiling)" "${BL[-1]}" "${BC[-1]}"
	out=$("$B/volley-drive" --route "127.0.0.1:$P" --tls none --max-conns "$SESSIONS" --messages "$MESSAGES" 2>&1)
	DR+=("$(field msgs_per_s <<<"$out")"); DC+=("$(field cpu_us_per_msg <<<"$out")")
	printf '%-28s %10s %14s\n' "engine, TLS off" "${DR[-1]}" "${DC[-1]}"
	out=$("$B/volley-drive" --route "127.0.0.1:$PT" --tls encrypt --max-conns "$SESSIONS" --messages "$MESSAGES" 2>&1)
	DT+=("$(field msgs_per_s <<<"$out")"); TC+=("$(field cpu_us_per_msg <<<"$out")")
	printf '%-28s %10s %14s\n' "engine, TLS on" "${DT[-1]}" "${TC[-1]}"
done
bl=$(median "${BL[@]}"); dr=$(median "${DR[@]}"); dt=$(median "${DT[@]}")
printf '%-28s %10s %14s\n' "median blast" "$bl" "$(median "${BC[@]}")"
printf '%-28s %10s %14s\n' "median engine TLS off" "$dr" "$(median "${DC[@]}")"
printf '%-28s %10s %14s\n' "median engine TLS on" "$dt" "$(median "${TC[@]}")"
python3 -c "print(f'ratio engine/ceiling: TLS off {$dr/$bl:.2f}, TLS on {$dt/$bl:.2f} (target >= 0.5 with TLS off)')"

echo
echo "== 50 ms reply latency, 10 sink addresses (127.0.0.21-30)"
L=(); R=()
LP=$(free_port)
for i in $(seq 21 30); do L+=(--listen "127.0.0.$i:$LP"); R+=(--route "127.0.0.$i:$LP"); done
sink "${L[@]}" --latency 50ms
wait_port 127.0.0.21 "$LP"
printf '%9s %9s %10s %12s %8s %11s\n' sessions messages "msgs/s" "ideal/s" ratio "KB/session"
for run in ${LATENCY_RUNS:-1000:100000 10000:200000}; do
	s=${run%%:*} m=${run#*:}
	out=$("$B/volley-drive" "${R[@]}" --tls none --max-conns $((s / 10)) --messages "$m" 2>&1)
	got=$(field msgs_per_s <<<"$out"); kb=$(field kb_per_conn <<<"$out"); pc=$(field peak_conns <<<"$out")
	python3 -c "
ideal = $pc / 0.050
print(f'{$pc:9d} {$m:9d} {$got:10.0f} {ideal:12.0f} {$got/ideal:8.2f} {$kb:11.1f}')"
done
