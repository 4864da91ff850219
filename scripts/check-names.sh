#!/bin/sh
# Every external name a module defines carries its module's prefix
# (docs/building.md). Reads the symbol tables of a build's objects:
#   scripts/check-names.sh [BUILD]      (default build/)
# Prints each offending symbol as "object: symbol" and exits 1 if any.
set -u
B=${1:-build}
cd "$(dirname "$0")/.."
[ -d "$B/obj" ] || { echo "check-names: no $B/obj: run make first" >&2; exit 2; }
bad=0
# folder -> allowed prefixes (a program's main is always allowed)
check() {
	dir=$1
	shift
	for o in "$B"/obj/"$dir"/*.o; do
		[ -e "$o" ] || continue
		syms=$(nm --defined-only -g "$o" | awk '{print $3}')
		for s in $syms; do
			ok=0
			[ "$s" = main ] && ok=1
			for p in "$@"; do
				case "$s" in "$p"*) ok=1 ;; esac
			done
			if [ $ok -eq 0 ]; then
				echo "$o: $s"
				bad=1
			fi
		done
	done
}
check common vl_
check config cfg_
check tls tls_
check dns dns_
check tlsrpt rpt_
check message msg_
check feedback fb_
check imap imap_
check engine eng_
check sts sts_
check scheduler sched_
check gen sched_ cfg_ con_ # generated: bounce.rules (scheduler), providers.conf (config), console/www/ (console)
check api api_
check console con_
check submit sub_
check unsub uns_
check webhook wh_
check cluster clu_
check sink sink_
check doctor doc_
check smtpd smtpd_
check cli cli_
check volleyd vd_
check bench/vbench vb_
check bench/submit vs_
for p in blast drive render dkim feedback submitlog; do check "bench/$p"; done
check tests/tools
# a folder this script does not know is a module nobody checks: say so
known=" common config console tls dns tlsrpt message feedback imap engine cluster sts smtpd scheduler gen api submit unsub webhook sink doctor cli volleyd bench tests "
for d in "$B"/obj/*/; do
	m=$(basename "$d")
	case "$known" in *" $m "*) ;; *)
		echo "$d: a module folder without a prefix in scripts/check-names.sh"
		bad=1 ;;
	esac
done
for d in "$B"/obj/bench/*/ "$B"/obj/tests/*/; do
	case "$(basename "$d")" in vbench | submit | blast | drive | render | dkim | feedback | submitlog | tools | unit) ;; *)
		echo "$d: a program folder unknown to scripts/check-names.sh"
		bad=1 ;;
	esac
done
[ $bad -eq 0 ] || { echo "check-names: the names above lack their module's prefix" >&2; exit 1; }
echo "check-names: every external name carries its module's prefix"
