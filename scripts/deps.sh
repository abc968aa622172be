#!/usr/bin/env bash
# scripts/deps.sh - install the Debian 12 packages a task needs, and only
# those that are missing.
#
#   scripts/deps.sh [SET...]           install what SET needs (default: build)
#   scripts/deps.sh --check SET...     say what is missing; exit 1 if anything is
#   scripts/deps.sh --list SET...      print the packages, one a line
#
# The packages come in sets, so that running Phase 1 does not install a
# benchmark tool (docs/setup.md counts what each set brings in):
#
#   build    compile the kit and run Phase 1 (`make up`)
#   phase1   nothing more
#   phase2   prometheus, which watches the gateway and the services
#   phase3   nginx, the trace sink's needs, and prometheus (`make up PHASE=3`)
#   test     what the test suites call (`make test`)
#   bench    what the benchmark calls (`make bench`)
#   docs     what draws the diagrams (`make diagrams`)
#
# Each make target asks for its own sets: `make up PHASE=n` for build and
# phasen, `make test` for build, phase3 and test, `make bench` for build and
# bench. It asks dpkg what is installed; when everything is there it prints
# one line and does nothing else. Otherwise, as root, it runs `apt-get
# update` once and installs the missing packages without their recommends;
# as any other user it prints the apt-get command to run and exits 1.
#
# Installing redis-server, nginx-light or prometheus may start Debian's own
# services on their default ports (6379, 80, 9090). The kit never uses those
# ports, so they are left alone: nothing here depends on them.
set -euo pipefail

# The sets: SET, PACKAGE, what it is for. A package may be in several sets.
TABLE=$(cat <<'EOF'
build  gcc                  the C compiler (and binutils: as, ld, ar)
build  libc6-dev            the C library headers
build  make                 the Makefile (most machines have it already)
build  pkg-config           finds the libraries' flags (see the Makefile)
build  libcivetweb-dev      the embedded HTTP server
build  libhiredis-dev       the Redis client
build  libjwt-dev           JSON Web Tokens
build  libcjson-dev         JSON
build  libcurl4-openssl-dev HTTP client (trace reports, the url-shortener's clicks)
build  libssl-dev           OpenSSL: PBKDF2, random bytes, HMAC
build  redis-server         the store (the kit starts its own on port 6390)
build  curl                 up.sh polls /health; the journey it prints
build  jq                   the journey up.sh prints, and the workshop
build  openssl              the JWT secret (openssl rand)
build  procps               ps: checking which program a pid file names
build  iproute2             ss: which ports are taken, and by whom
phase2 prometheus           scrapes the gateway and each service (make up PHASE=2)
phase3 nginx-light          Phase 3's load balancer in front of three gateways
phase3 python3-thrift       tests/jaeger_sink.py: decodes the spans ...
phase3 thrift-compiler      ... with code generated from Jaeger's own IDL
phase3 npm                  ... which the sink fetches once (npm pack)
phase3 prometheus           scrapes the three gateways and each service
test   libcmocka-dev        the unit tests
test   jq                   reading JSON in the tests
test   prometheus           promtool: checks the /metrics text format
test   docker-compose       validates docker-compose.yml offline (no engine)
test   nginx-light          Phase 3 tests, and the benchmark smoke run
test   python3-thrift       tests/jaeger_sink.py, as in phase3
test   thrift-compiler      tests/jaeger_sink.py, as in phase3
test   npm                  tests/jaeger_sink.py, as in phase3
test   wrk                  the benchmark smoke run
test   clang                the fuzz targets (libFuzzer)
test   libclang-rt-14-dev   ... clang's runtime: libFuzzer and the sanitizers
test   strace               tests/server_limits.sh: counts the loop's system calls
test   graphviz             tests/diagrams.sh: the diagrams regenerate from their sources
bench  wrk                  the load generator
bench  gnuplot-nox          the chart (bench/results.png)
bench  nginx-light          the upstream every scenario ends at
bench  npm                  the guide's Express gateway (npm install express)
check  libcmocka-dev        make check N=..: the unit tests some exercises must keep passing
check  prometheus           make check N=10: promtool tests an alert
docs   graphviz             dot: docs/diagrams/*.dot into SVG (make diagrams)
docs   python3              docs/diagrams/trace_waterfall.py
EOF
)
SETS="build phase1 phase2 phase3 test bench check docs"

usage() {
	sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	echo "SET is one of: $SETS" >&2
	exit 2
}

# packages_of SET...: the packages of those sets, each once, in table order.
packages_of() {
	local wanted=" $* " set package
	declare -A seen=()
	while read -r set package _; do
		[ -n "$set" ] || continue
		[[ $wanted == *" $set "* ]] || continue
		[ -z "${seen[$package]:-}" ] || continue
		seen[$package]=1
		echo "$package"
	done <<<"$TABLE"
}

# is_present PACKAGE: dpkg has it installed (INSTALLED, below, is what
# dpkg-query said of them all at once). npm is the exception: any npm
# command will do. NodeSource's nodejs package ships its own npm and
# conflicts with Debian's, so asking apt for npm there would fail.
is_present() {
	if [ "$1" = npm ]; then
		command -v npm >/dev/null
		return
	fi
	grep -qx "install ok installed $1" <<<"$INSTALLED"
}

mode=install
case ${1:-} in
--check) mode=check; shift ;;
--list) mode=list; shift ;;
-h | --help) usage ;;
esac
[ $# -gt 0 ] || set -- build
for set in "$@"; do
	[[ " $SETS " == *" $set "* ]] || { echo "deps: unknown set '$set'" >&2; usage; }
done

mapfile -t packages < <(packages_of "$@")
if [ "$mode" = list ]; then
	[ ${#packages[@]} -eq 0 ] || printf '%s\n' "${packages[@]}"
	exit 0
fi

# One dpkg-query for every package: "install ok installed gcc" for each one
# installed (nothing, and a complaint on stderr, for one it never heard of).
INSTALLED=""
if [ ${#packages[@]} -gt 0 ]; then
	INSTALLED=$(dpkg-query -W -f='${Status} ${Package}\n' "${packages[@]}" 2>/dev/null || true)
fi
missing=()
for package in "${packages[@]}"; do
	is_present "$package" || missing+=("$package")
done

label="$*"
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: ${label// /, }: all ${#packages[@]} packages are installed"
	exit 0
fi

echo "deps: ${label// /, }: missing ${missing[*]}"
[ "$mode" = check ] && exit 1
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: installing needs root; run (or with sudo):" >&2
	echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-get update; then
	echo "deps: apt-get update failed: check the network and /etc/apt/sources.list" >&2
	exit 1
fi
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
	echo "deps: apt-get install failed (see above); nothing else was changed" >&2
	exit 1
fi
echo "deps: installed ${missing[*]}"
