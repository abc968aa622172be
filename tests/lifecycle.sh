#!/usr/bin/env bash
# tests/lifecycle.sh - how a server on civetweb's core (the services, the
# monolith, a gateway with SERVER_CORE=threads) stops on SIGTERM:
# kit_civetweb_stop() in shared/src/server/civetweb.c.
#
# Usage: tests/lifecycle.sh [bin-dir]   (default build/bin; build/asan/bin
#                                        for the AddressSanitizer + UBSan run)
#
# A clean stop keeps three promises, one section each:
#
#   1. A request in flight is finished, not cut. A gateway on civetweb's
#      threads waits on GET /fixture/slow?ms=3000 (tests/upstream_fixture.py)
#      when it gets SIGTERM: from then on it refuses new connections, yet
#      the waiting client gets its whole answer, and the gateway exits 0.
#      (civetweb 1.15's mg_stop() alone drops that answer: once its stop
#      flag is set it writes nothing more.)
#   2. An idle keep-alive connection is hung up, not waited for: the client
#      holding it reads end-of-file, and the stop does not sit out its drain
#      bound (the server would say "still open after ..." on stderr).
#   3. What the app queued is still delivered after the server has stopped:
#      a click the url-shortener could not send yet (analytics is down)
#      reaches analytics, started again while the url-shortener drains its
#      queue (services/url-shortener/main.c: analytics_client_stop() runs
#      after kit_app_run() returns), and the url-shortener exits 0.
#
#   curl ──► gateway (SERVER_CORE=threads) ──► tests/upstream_fixture.py
#   curl ──► url-shortener ──► analytics          (one redis-server for all)
#
# Nothing here measures how long a stop takes (a busy machine would make
# such a check fail); the times are printed as comments, and
# docs/configuration.md has the measured table. Every check prints "ok -
# ..." or "not ok - ..."; the last line is "N passed, N failed".

# jq programs are single-quoted on purpose: $names in them are jq's.
# shellcheck disable=SC2016
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${1:-build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
GATEWAY="$BIN_DIR/gateway"
URL_SHORTENER="$BIN_DIR/url-shortener"
ANALYTICS="$BIN_DIR/analytics"

echo "# stop on SIGTERM (civetweb core) against $BIN_DIR"
echo "# scratch directory: $TEST_DIR"

# ---------------------------------------------------------------------------
section "prerequisites"
# ---------------------------------------------------------------------------
check_tools curl jq redis-server redis-cli /usr/bin/python3
require_binaries "the binaries exist" "$GATEWAY" "$URL_SHORTENER" "$ANALYTICS"

REDIS_PORT=$(free_port)
FIXTURE_PORT=$(free_port)
FIXTURE="http://127.0.0.1:$FIXTURE_PORT"
SECRET="lifecycle-test-secret-0123456789abcdef-0123"
SLOW_MS=3000

GATEWAY_CONFIG_FILE="$TEST_DIR/gateway.json"
jq -n --arg url "$FIXTURE" '{
	upstreams: {fixture: {url: $url}},
	routes: [{prefix: "/fixture", upstream: "fixture", rewrite: "/", access: "public",
	          timeout_ms: 20000}]}' >"$GATEWAY_CONFIG_FILE"
GATEWAY_ENV=(
	SERVER_CORE=threads
	GATEWAY_CONFIG="$GATEWAY_CONFIG_FILE"
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	JWT_SECRET="$SECRET"
	RATE_LIMIT_ANONYMOUS=1000000
	WORKER_THREADS=8
)

section "start-up"
step "start-up"
must_start "redis-server answers PING on port $REDIS_PORT" \
	start_redis "$REDIS_PORT" "$TEST_DIR/redis"
must_start "the upstream fixture is ready on $FIXTURE" \
	start_fixture "$TEST_DIR/fixture" "$FIXTURE_PORT"

# fixture_count "METHOD /path": how many such requests reached the fixture.
fixture_count() {
	curl -s --max-time 5 "$FIXTURE/stats" | jq -r --arg key "$1" '.[$key] // 0'
}
slow_request_arrived() {
	[ "$(fixture_count 'GET /slow')" -ge 1 ]
}
# refuses PORT: a connection to 127.0.0.1:PORT is refused (curl exit 7).
refuses() {
	curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$1/health"
	[ $? -eq 7 ]
}
# exited PID: the process is gone (or a zombie, waiting to be reaped).
exited() {
	! pid_alive "$1"
}
# stop_seconds START_US: seconds since START_US (from $EPOCHREALTIME), for
# the comments.
stop_seconds() {
	awk -v us=$((${EPOCHREALTIME/[.,]/} - $1)) 'BEGIN { printf "%.3f", us / 1e6 }'
}

# ---------------------------------------------------------------------------
section "a request in flight is finished, not cut"
# The gateway, on civetweb's threads, proxies GET /fixture/slow?ms=3000.
# SIGTERM once the fixture has the request (polled): the gateway must
# refuse new connections at once, still answer the waiting client in
# full, and exit 0.
# ---------------------------------------------------------------------------
GATEWAY_PORT=$(free_port)
step "start"
must_start "gateway (SERVER_CORE=threads) is healthy on port $GATEWAY_PORT" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway" "$GATEWAY_PORT" "${GATEWAY_ENV[@]}"
IN_FLIGHT_GATEWAY_PID=$GATEWAY_PID

step "GET /fixture/slow?ms=$SLOW_MS, then SIGTERM"
curl -s --max-time 30 -o "$TEST_DIR/slow.body" -w '%{http_code}' \
	"http://127.0.0.1:$GATEWAY_PORT/fixture/slow?ms=$SLOW_MS" >"$TEST_DIR/slow.status" \
	2>"$TEST_DIR/slow.err" &
CLIENT_PID=$!
if poll_until 10 slow_request_arrived; then
	pass "the fixture has the request (after ${POLL_ELAPSED}s)"
else
	fail "the fixture has the request" "GET /slow never reached it"
fi
STOP_START_US=${EPOCHREALTIME/[.,]/}
kill -TERM "$IN_FLIGHT_GATEWAY_PID"
# The client must still be waiting: otherwise this section proves nothing.
check_true "SIGTERM came while the request was in flight" pid_alive "$CLIENT_PID"
if poll_until 10 refuses "$GATEWAY_PORT"; then
	pass "new connections are refused (after ${POLL_ELAPSED}s)"
	check_true "while the request is still in flight" pid_alive "$CLIENT_PID"
else
	fail "new connections are refused" "port $GATEWAY_PORT still accepts 10 s after SIGTERM"
fi
wait "$CLIENT_PID"
check_eq "the client's curl succeeded" 0 "$?"
check_eq "the waiting client got its answer: 200" 200 "$(cat "$TEST_DIR/slow.status")"
check_eq "in full: {\"slept_ms\": $SLOW_MS}" "$SLOW_MS" \
	"$(jq -r '.slept_ms' "$TEST_DIR/slow.body" 2>/dev/null)"
stop_pid "$IN_FLIGHT_GATEWAY_PID"
echo "# SIGTERM to exit: $(stop_seconds "$STOP_START_US") s (the request had $SLOW_MS ms to run)"
check_exits_0 "the gateway exits 0" "$STOPPED_STATUS"
check_true "it said it waited for the open connection" \
	grep -q 'waiting for 1 open connection' "$TEST_DIR/gateway.err"

# ---------------------------------------------------------------------------
section "an idle keep-alive connection is hung up, not waited for"
# A client keeps a keep-alive connection open after one answer and sends
# nothing more. On SIGTERM the server hangs it up (the client reads
# end-of-file) instead of waiting for it until its drain bound.
# ---------------------------------------------------------------------------
GATEWAY_PORT=$(free_port)
step "start"
must_start "gateway (SERVER_CORE=threads) is healthy on port $GATEWAY_PORT" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-idle" "$GATEWAY_PORT" "${GATEWAY_ENV[@]}"
IDLE_GATEWAY_PID=$GATEWAY_PID

step "one request on a keep-alive connection, then SIGTERM"
# The client prints "answered" once it has the whole answer, then waits (at
# most 30 s) for the server to close: "eof", or "still open".
/usr/bin/python3 - "$GATEWAY_PORT" >"$TEST_DIR/idle.out" 2>"$TEST_DIR/idle.err" <<'PYTHON' &
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
head, _, body = data.partition(b"\r\n\r\n")
length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
while len(body) < length:
    body += s.recv(65536)
print("answered", head.split(b"\r\n")[0].decode(), flush=True)
s.settimeout(30)
try:
    print("eof" if s.recv(65536) == b"" else "more data", flush=True)
except socket.timeout:
    print("still open", flush=True)
PYTHON
IDLE_CLIENT_PID=$!
idle_client_answered() {
	grep -q '^answered' "$TEST_DIR/idle.out" || ! pid_alive "$IDLE_CLIENT_PID"
}
poll_until 10 idle_client_answered
check_eq "the keep-alive client got its answer" "answered HTTP/1.1 200 OK" \
	"$(head -n 1 "$TEST_DIR/idle.out")"
STOP_START_US=${EPOCHREALTIME/[.,]/}
kill -TERM "$IDLE_GATEWAY_PID"
wait "$IDLE_CLIENT_PID"
check_eq "the client reads end-of-file: the server hung up" eof \
	"$(sed -n 2p "$TEST_DIR/idle.out")"
poll_until 30 exited "$IDLE_GATEWAY_PID"
stop_pid "$IDLE_GATEWAY_PID"
echo "# SIGTERM to exit: $(stop_seconds "$STOP_START_US") s"
check_exits_0 "the gateway exits 0" "$STOPPED_STATUS"
if grep -q 'still open after' "$TEST_DIR/gateway-idle.err"; then
	fail "the stop did not wait for the idle connection" \
		"$(grep -m1 'still open after' "$TEST_DIR/gateway-idle.err")"
else
	pass "the stop did not wait for the idle connection"
fi

# ---------------------------------------------------------------------------
section "what the app queued is delivered after the server stops"
# analytics is down, so a redirect's click waits in the url-shortener's
# queue. SIGTERM: the server stops, then main() drains the queue for up to
# ANALYTICS_DRAIN_SECONDS (20 here); analytics comes back meanwhile and
# gets the click; the url-shortener exits 0.
# ---------------------------------------------------------------------------
ANALYTICS_PORT=$(free_port)
SHORTENER_PORT=$(free_port)
SHORTENER="http://127.0.0.1:$SHORTENER_PORT"
ANALYTICS_ENV=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1")
step "start"
must_start "analytics is healthy on port $ANALYTICS_PORT" \
	start_service analytics "$ANALYTICS" "$TEST_DIR/analytics" "$ANALYTICS_PORT" "${ANALYTICS_ENV[@]}"
ANALYTICS_PID=$SERVICE_PID
must_start "url-shortener is healthy on port $SHORTENER_PORT" \
	start_service url-shortener "$URL_SHORTENER" "$TEST_DIR/url-shortener" "$SHORTENER_PORT" \
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1" ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" \
	PUBLIC_BASE_URL="$SHORTENER" ANALYTICS_DRAIN_SECONDS=20
SHORTENER_PID=$SERVICE_PID
IDENTITY=(-H 'X-User-Id: alice' -H 'X-User-Tier: free')

step "a link, and analytics stopped"
http POST "$SHORTENER/shorten" '{"url":"https://example.com/lifecycle"}' "${IDENTITY[@]}"
expect_status 201
CODE=$(jq -r '.code // empty' <<<"$HTTP_BODY")
check_match "it has a code" '^[A-Za-z0-9_-]+$' "$CODE"
# link_known: analytics has stored the new link (sent in the background).
link_known() {
	http GET "http://127.0.0.1:$ANALYTICS_PORT/analytics/$CODE" '' "${IDENTITY[@]}"
	[ "$HTTP_STATUS" = 200 ]
}
if poll_until 10 link_known; then
	pass "analytics knows the link"
else
	fail "analytics knows the link" "GET /analytics/$CODE: $HTTP_STATUS ${HTTP_BODY:0:200}"
fi
stop_pid "$ANALYTICS_PID"
check_exits_0 "analytics exits 0" "$STOPPED_STATUS"

step "a click while analytics is down, then SIGTERM"
http GET "$SHORTENER/r/$CODE"
expect_status 302
queue_depth() {
	metric_sum "$(curl -s --max-time 5 "$SHORTENER/metrics")" url_shortener_analytics_queue_depth
}
click_queued() {
	[ "$(queue_depth)" = 1 ]
}
if poll_until 10 click_queued; then
	pass "the click waits in the queue"
else
	fail "the click waits in the queue" "url_shortener_analytics_queue_depth is '$(queue_depth)'"
fi
kill -TERM "$SHORTENER_PID"
if poll_until 10 refuses "$SHORTENER_PORT"; then
	pass "the url-shortener no longer accepts connections"
else
	fail "the url-shortener no longer accepts connections" "port $SHORTENER_PORT still accepts"
fi
check_true "but is still running: draining its queue" pid_alive "$SHORTENER_PID"

step "analytics back, on the same port"
must_start "analytics is healthy again" \
	start_service analytics "$ANALYTICS" "$TEST_DIR/analytics-2" "$ANALYTICS_PORT" "${ANALYTICS_ENV[@]}"
ANALYTICS_PID=$SERVICE_PID
poll_until 30 exited "$SHORTENER_PID"
stop_pid "$SHORTENER_PID"
check_exits_0 "the url-shortener exits 0" "$STOPPED_STATUS"
http GET "http://127.0.0.1:$ANALYTICS_PORT/analytics/$CODE" '' "${IDENTITY[@]}"
expect_status 200
expect_json '.clicks' 1

# ---------------------------------------------------------------------------
section "clean stop, and sanitizers"
# ---------------------------------------------------------------------------
step "SIGTERM"
declare -A SERVER_NAMES=([$ANALYTICS_PID]=analytics [$FIXTURE_PID]="upstream fixture")
check_clean_stop

finish
