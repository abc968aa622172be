#!/usr/bin/env bash
# scripts/deps.sh - install the Debian 12 packages the kit needs, and only
# those that are missing.
#
# `make deps` (and so `make up` and `make test`) runs this first. It asks
# dpkg what is installed; when everything is there it prints one line and
# does nothing else. Otherwise, as root, it runs `apt-get update` once and
# installs the missing packages without their recommends; as any other user
# it prints the apt-get command to run and exits 1.
#
# Installing redis-server or nginx-light may start Debian's own services on
# their default ports (6379, 80). The kit never uses those ports, so they are
# left alone: nothing here depends on them.
set -euo pipefail

# What each package is for, so a reader can tell what to drop.
PACKAGES=(
	build-essential      # cc, make, ar
	pkg-config           # finds the libraries' flags (see Makefile)
	libcivetweb-dev      # the embedded HTTP server
	libhiredis-dev       # the Redis client
	libjwt-dev           # JSON Web Tokens
	libcjson-dev         # JSON
	libcurl4-openssl-dev # HTTP client (the Phase 2/3 gateway's proxy)
	libssl-dev           # OpenSSL: PBKDF2, random bytes, HMAC
	libcmocka-dev        # unit tests
	redis-server         # the store (the kit starts its own on port 6390)
	curl                 # the black-box tests and the journey in `make up`
	jq                   # reading JSON in the tests
	openssl              # secrets (`openssl rand`) and test tokens
	iproute2             # ss: finding free ports in the tests
	procps               # ps: checking which process a pid file names
	prometheus           # promtool: checks the /metrics text format
	docker-compose       # validates docker-compose.yml offline (no engine)
	nginx-light          # Phase 3's load balancer
	wrk                  # benchmarks (bench/run.sh)
	gnuplot-nox          # the benchmark chart (bench/results.png)
	python3-thrift       # tests/jaeger_sink.py: decodes the kit's Jaeger spans
	thrift-compiler      # ... with code generated from Jaeger's own IDL
)

missing=()
for package in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
	if [ "$status" != "install ok installed" ]; then
		missing+=("$package")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#PACKAGES[@]} packages are installed"
	exit 0
fi

echo "deps: missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: run as root (or with sudo):" >&2
	echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "deps: installed ${missing[*]}"
