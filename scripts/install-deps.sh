#!/bin/sh
# Install what volley needs from Debian's packages; quiet and idempotent.
#   scripts/install-deps.sh          build + test dependencies (postfix and
#                                    gnuplot too: volley-bench's tests use them)
#   scripts/install-deps.sh --bench  the same (kept for older callers)
# scdoc builds the man pages; debhelper builds the Debian package (debian/).
# dovecot-core (its auth service, for the Postfix MSA's SASL) and whois
# (mkpasswd: the yescrypt hashes) serve volley-bench's submission scenario;
# the packaged dovecot service is not needed (volley-bench runs its own).
# redis-server and libhiredis-dev: the cluster module (cluster/) and its
# tests, which start their own redis-server on a loopback port.
# chromium and python3-websocket: the web console's browser tests (headless
# Chromium driven over the DevTools protocol, tests/e2e/cdp.py).
# prometheus: its promtool checks /metrics and contrib/prometheus/'s
# configuration in the tests; the service the package enables is stopped
# and disabled (nothing here scrapes, and it would hold port 9090).
set -eu

PKGS="build-essential pkg-config liburing-dev libc-ares-dev libssl-dev
libjemalloc-dev libcriterion-dev libjansson-dev libmicrohttpd-dev
libconfig-dev libcurl4-openssl-dev swaks libnet-ssleay-perl python3 openssl
curl unbound nsd ldnsutils python3-dkim opendkim-tools postfix gnuplot-nox
zlib1g-dev python3-jsonschema scdoc debhelper libcrypt-dev dovecot-core dovecot-imapd whois
libhiredis-dev redis-server chromium python3-websocket prometheus"
[ "${1:-}" = "--fuzz" ] && PKGS="$PKGS clang libclang-rt-14-dev"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# postfix asks how to configure itself; a bench peer needs no system mailer.
echo "postfix postfix/main_mailer_type select No configuration" |
	$SUDO debconf-set-selections 2>/dev/null || true
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian's prometheus package enables and starts its server: not wanted.
case " $missing " in *" prometheus "*)
	if [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
	else
		$SUDO invoke-rc.d prometheus stop >/dev/null 2>&1 || true
		$SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
	fi ;;
esac
