#!/usr/bin/env bash
# tests/conformance.sh - one table of raw requests against every kind of
# server the kit faces clients with, beside nginx: the gateway on the
# event-loop core (its strict parser), the same gateway on civetweb
# (SERVER_CORE=threads: civetweb's parser, then civetweb_guard.c), a
# service on civetweb met directly, and nginx as the reference parser. The
# cases, the checks and how to read the table are in
# tests/conformance/run.py; this script starts the servers and stops them.
#
# Usage: tests/conformance.sh [bin-dir]   (default build/bin)
#        tests/conformance.sh build/bin CASE...   (only those cases)
#
#   raw client ──► gateway "loop"    (event-loop core) ──┐
#   raw client ──► gateway "threads" (civetweb core)   ──┼──► tests/upstream_fixture.py
#   raw client ──► nginx (proxy_pass /fixture/)        ──┘    (records what arrives)
#   raw client ──► url-shortener "service" (civetweb; no upstream)
#
# Every check prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, N failed" and the exit code is 1 when any check failed. Logs are
# kept (path printed) when something failed, or always with KEEP_LOGS=1.
# The whole run takes about 15 s.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${1:-build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
shift $(($# > 0 ? 1 : 0))
ONLY=("$@")

echo "# conformance: raw requests against the kit's servers and nginx ($BIN_DIR)"
echo "# scratch directory: $TEST_DIR"

section "prerequisites"
step "prerequisites"
have_tool() {
	command -v "$1" >/dev/null
}
for tool in nginx redis-server redis-cli curl /usr/bin/python3; do
	check_true "$tool is installed" have_tool "$tool"
done
require_binaries "the gateway and a service exist" "$BIN_DIR/gateway" "$BIN_DIR/url-shortener"

# ---------------------------------------------------------------------------
section "start-up"
# The fixture; Redis for the gateways' rate limiter (limits far too high to
# trip); the two gateways, routing /fixture/... to the fixture's
# /conformance/...; nginx with a minimal config of its own doing the same;
# and the url-shortener service (memory store: nothing to keep).
# ---------------------------------------------------------------------------
step "start-up"
REDIS_PORT=$(free_port)
FIXTURE_PORT=$(free_port)
LOOP_PORT=$(free_port)
THREADS_PORT=$(free_port)
SERVICE_PORT=$(free_port)
NGINX_PORT=$(free_port)
FIXTURE="http://127.0.0.1:$FIXTURE_PORT"

jq -n --arg url "$FIXTURE" '{
	upstreams: {fixture: {url: $url}},
	routes: [{prefix: "/fixture", upstream: "fixture", rewrite: "/conformance",
		  access: "public", timeout_ms: 5000}]}' >"$TEST_DIR/gateway.json"
GATEWAY_ENV=(
	GATEWAY_CONFIG="$TEST_DIR/gateway.json"
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	JWT_SECRET="conformance-test-secret-0123456789abcdef-0123"
	RATE_LIMIT_WINDOW_SECONDS=60
	RATE_LIMIT_ANONYMOUS=1000000
	RATE_LIMIT_FREE=1000000
	RATE_LIMIT_PREMIUM=1000000
	WORKER_THREADS=16
)

# write_nginx_conf DIR PORT: a minimal nginx that proxies /fixture/ to the
# fixture's /conformance/, as the gateways do; everything else is 404.
write_nginx_conf() {
	local dir=$1 port=$2 user_line=""
	mkdir -p "$dir/logs" "$dir/temp"
	# A root master runs its workers as this user, who owns the directory.
	if [ "$(id -u)" -eq 0 ]; then
		user_line="user $(id -un) $(id -gn);"
	fi
	cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $dir/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/temp/body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
    server {
        listen 127.0.0.1:$port;
        location = /nginx-health { return 200 "ok\n"; }
        location /fixture/ {
            proxy_pass $FIXTURE/conformance/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location / { return 404; }
    }
}
EOF
}

# start_conformance_nginx DIR PORT: starts it in the foreground (its pid is
# the master's) and polls /nginx-health; sets NGINX_PID.
start_conformance_nginx() {
	local dir=$1 port=$2
	write_nginx_conf "$dir" "$port"
	start_program "nginx:$port" "$dir/nginx" \
		nginx -p "$dir" -c nginx.conf -e logs/error.log -g 'daemon off;'
	NGINX_PID=$SERVER_PID
	if ! wait_for_http "http://127.0.0.1:$port/nginx-health" "$NGINX_PID"; then
		sed 's/^/#   /' "$dir/logs/error.log" "$dir/nginx.err" 2>/dev/null | tail -n 20 >&2
		return 1
	fi
}

declare -A SERVER_NAMES=()
must_start "redis-server answers PING on port $REDIS_PORT" \
	start_redis "$REDIS_PORT" "$TEST_DIR/redis"
must_start "the upstream fixture is ready on $FIXTURE" \
	start_fixture "$TEST_DIR/fixture" "$FIXTURE_PORT"
must_start "the gateway on the event-loop core is healthy on port $LOOP_PORT" \
	start_gateway "$BIN_DIR/gateway" "$TEST_DIR/gateway-loop" "$LOOP_PORT" \
	"${GATEWAY_ENV[@]}" SERVER_CORE=events
SERVER_NAMES[$GATEWAY_PID]="the gateway (event loop)"
must_start "the gateway on civetweb (SERVER_CORE=threads) is healthy on port $THREADS_PORT" \
	start_gateway "$BIN_DIR/gateway" "$TEST_DIR/gateway-threads" "$THREADS_PORT" \
	"${GATEWAY_ENV[@]}" SERVER_CORE=threads
SERVER_NAMES[$GATEWAY_PID]="the gateway (civetweb)"
must_start "the url-shortener service (civetweb) is healthy on port $SERVICE_PORT" \
	start_service url-shortener "$BIN_DIR/url-shortener" "$TEST_DIR/service" "$SERVICE_PORT" \
	STORE=memory ANALYTICS_URL="http://127.0.0.1:$(free_port)" WORKER_THREADS=16
SERVER_NAMES[$SERVICE_PID]="the url-shortener service"
must_start "nginx (the reference) is healthy on port $NGINX_PORT" \
	start_conformance_nginx "$TEST_DIR/nginx" "$NGINX_PORT"

# ---------------------------------------------------------------------------
section "the cases (tests/conformance/run.py)"
# ---------------------------------------------------------------------------
step ""
/usr/bin/python3 tests/conformance/run.py --fixture "$FIXTURE" \
	--server "nginx=reference:$NGINX_PORT" \
	--server "loop=gateway:$LOOP_PORT" \
	--server "threads=gateway:$THREADS_PORT" \
	--server "service=service:$SERVICE_PORT" \
	${ONLY[@]+--only "${ONLY[@]}"} | tee "$TEST_DIR/conformance.out"
status=${PIPESTATUS[0]}
counts=$(sed -n 's/^conformance: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$TEST_DIR/conformance.out")
if [ -z "$counts" ]; then
	fail "run.py reported its counts" "it exited $status without a 'conformance: N passed, N failed' line"
else
	TESTS_PASSED=$((TESTS_PASSED + ${counts% *}))
	TESTS_FAILED=$((TESTS_FAILED + ${counts#* }))
fi

# ---------------------------------------------------------------------------
section "clean stop"
# ---------------------------------------------------------------------------
step "clean stop"
check_clean_stop
finish
