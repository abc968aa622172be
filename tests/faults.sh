#!/usr/bin/env bash
# tests/faults.sh - faults under load, and graceful shutdown, measured.
#
# Usage: tests/faults.sh [--full] [--report FILE] [bin-dir]
#
#   (no flag)  the short suite `make test` runs (tests/run.sh): three faults
#              with a few seconds of load each (analytics killed, Redis
#              killed, a Phase 3 gateway restarted with SIGTERM behind
#              nginx), then the graceful-shutdown checks (the gateway on
#              both cores, the url-shortener); under a minute; invariants
#              only
#   --full     every fault (`make faults`): each service killed (SIGKILL)
#              and restarted, each stopped (SIGTERM) and restarted, one
#              frozen (SIGSTOP) and thawed, Redis killed and restarted
#              with its data directory, Redis's memory limit filled and
#              raised again, and one of three Phase 3 gateways behind
#              nginx stopped and restarted, then killed and restarted
#   --report FILE  writes the figures into FILE (docs/reliability.md)
#              between its "figures" markers (tests/faults/report.sh)
#
# What runs, natively, on free loopback ports, started and stopped by pid
# (tests/lib.sh), readiness polled:
#
#   wrk + tests/faults/mix.lua ──► gateway (Phase 2, event loop) ──┐
#     (redirects, expands, a few        users, url-shortener, ◄─────┘
#      users shortening)                analytics ──► Redis (append-only,
#   wrk ──► nginx ──► api-gateway-1..3 (Phase 3) ──┘    data directory kept)
#
# For each fault, tests/faults/harness.sh's run_fault seeds links, starts
# the load, injects the fault, recovers, polls until requests succeed
# again, and then checks what must hold whatever happened: every request
# answered (502/503/504 problem+json at worst), the connection pool back to
# normal, the rate limit exact again, no link lost that a client was told
# was saved, no click lost that a client was redirected for. Throughput and
# latency are never asserted (the machine is shared): they are figures.
#
# The graceful-shutdown section then holds requests in flight and sends
# SIGTERM: to the gateway on each server core (a slow upstream,
# tests/upstream_fixture.py) and to a service, the url-shortener (its Redis
# frozen, so its requests wait; analytics frozen, so clicks queue). Every
# client must get a whole answer, new connections must be refused, the
# process must exit 0 within a bound, and queued spans and clicks must
# arrive.
#
# Every check prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, N failed". Logs are kept (path printed) when a check failed, or
# always with KEEP_LOGS=1.

# jq programs are single-quoted on purpose: $names in them are jq's.
# shellcheck disable=SC2016
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh
# shellcheck source=tests/faults/harness.sh
source tests/faults/harness.sh

FULL=0
REPORT=""
BIN_DIR=build/bin
while [ $# -gt 0 ]; do
	case $1 in
	--full) FULL=1 ;;
	--report)
		REPORT=${2:?--report needs a file}
		shift
		;;
	-*)
		echo "usage: tests/faults.sh [--full] [--report FILE] [bin-dir]" >&2
		exit 2
		;;
	*) BIN_DIR=$1 ;;
	esac
	shift
done
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
GATEWAY="$BIN_DIR/gateway"
GATEWAY3="$BIN_DIR/gateway-advanced"
USERS="$BIN_DIR/users"
URL_SHORTENER="$BIN_DIR/url-shortener"
ANALYTICS="$BIN_DIR/analytics"

echo "# faults under load ($([ "$FULL" = 1 ] && echo full || echo short)) against $BIN_DIR"
echo "# scratch directory: $TEST_DIR"
LOAD_AT_START=$(cut -d ' ' -f 1-3 /proc/loadavg)

# The knobs. The short suite holds each fault 1 s with a light load; the
# full run 3 s with more. DELAY_MS paces each wrk connection: a steady load
# of a few hundred requests a second, not a saturated machine.
if [ "$FULL" = 1 ]; then
	SEED_LINKS=16 WRK_THREADS=2 WRK_CONNECTIONS=8 DELAY_MS=10
	PRE_REQUESTS=1500 POST_REQUESTS=1500 HOLD_SECONDS=3
else
	SEED_LINKS=8 WRK_THREADS=2 WRK_CONNECTIONS=4 DELAY_MS=10
	PRE_REQUESTS=250 POST_REQUESTS=250 HOLD_SECONDS=1
fi
HEAL_BOUND=30   # seconds from recovery until requests succeed again
CLICK_BOUND=30  # seconds for every click to reach analytics (back-off is 5 s at most)
LIMIT=10        # RATE_LIMIT_FREE: the fresh user of each limit check

# ---------------------------------------------------------------------------
section "prerequisites"
# ---------------------------------------------------------------------------
have_tool() {
	command -v "$1" >/dev/null
}
for tool in curl jq wrk redis-server redis-cli nginx ss /usr/bin/python3; do
	check_true "$tool is installed" have_tool "$tool"
done
require_binaries "the binaries exist" "$GATEWAY" "$GATEWAY3" "$USERS" "$URL_SHORTENER" "$ANALYTICS"

# ---------------------------------------------------------------------------
# The stack. One Redis: the services' data in db 0, the gateways' rate-limit
# counters in db 1 (so killing Redis takes both away, as it would in
# production). It runs append-only (appendfsync everysec) with its data
# directory kept across restarts.
# ---------------------------------------------------------------------------
REDIS_PORT=$(free_port)
USERS_PORT=$(free_port)
SHORTENER_PORT=$(free_port)
ANALYTICS_PORT=$(free_port)
G_PORT=$(free_port)
G="http://127.0.0.1:$G_PORT"
REDIS_DIR="$TEST_DIR/redis"
SECRET="faults-test-secret-0123456789abcdef-0123456789"
DATA="redis://127.0.0.1:$REDIS_PORT/0"

USERS_ENV=(REDIS_URL="$DATA" JWT_SECRET="$SECRET" ALLOW_INSECURE_DEV_SECRET=true
	PASSWORD_PBKDF2_ITERATIONS=1000 INSTANCE_ID=users)
ANALYTICS_ENV=(REDIS_URL="$DATA" INSTANCE_ID=analytics)
SHORTENER_ENV=(REDIS_URL="$DATA" PUBLIC_BASE_URL="$G" INSTANCE_ID=url-shortener
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT")

# The gateways read a copy of their route file whose "login" policy allows
# 500 logins a minute (every request here comes from 127.0.0.1).
jq '.rate_limit_policies.login = {window_seconds: 60, anonymous: 500, free: 500, premium: 500}' \
	phase2-gateway/gateway.json >"$TEST_DIR/gateway.json"
jq '.rate_limit_policies.login = {window_seconds: 60, anonymous: 500, free: 500, premium: 500}' \
	phase3-advanced/gateway.json >"$TEST_DIR/gateway-advanced.json"
# The load's users are premium (a limit too high to matter); the limit
# checks use fresh free users, whose limit is LIMIT an hour. The limiter
# waits 250 ms for Redis, not 50: on this shared two-core machine a reply
# sometimes takes longer than 50 ms, and the limiter then sends its count
# again on a new connection, where Redis has already run it, and counts the
# request twice (a known bug, docs/reliability.md). The checks here are
# about recovering from faults, so they are given a Redis that answers in
# time.
LIMIT_ENV=(RATE_LIMIT_WINDOW_SECONDS=3600 RATE_LIMIT_ANONYMOUS=1000000
	RATE_LIMIT_FREE="$LIMIT" RATE_LIMIT_PREMIUM=1000000 REDIS_RATE_LIMIT_TIMEOUT_MS=250)
GATEWAY_ENV=(LOOP_THREADS=2 GATEWAY_CONFIG="$TEST_DIR/gateway.json" JWT_SECRET="$SECRET"
	USERS_URL="http://127.0.0.1:$USERS_PORT" URL_SHORTENER_URL="http://127.0.0.1:$SHORTENER_PORT"
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1"
	"${LIMIT_ENV[@]}")

# start_named NAME: starts (or restarts, same port, same log) one of the
# services; sets its pid in PIDS[NAME].
declare -A PIDS=()
start_named() {
	case $1 in
	users) start_service users "$USERS" "$TEST_DIR/users" "$USERS_PORT" "${USERS_ENV[@]}" ;;
	analytics) start_service analytics "$ANALYTICS" "$TEST_DIR/analytics" "$ANALYTICS_PORT" "${ANALYTICS_ENV[@]}" ;;
	url-shortener) start_service url-shortener "$URL_SHORTENER" "$TEST_DIR/url-shortener" \
		"$SHORTENER_PORT" "${SHORTENER_ENV[@]}" ;;
	esac || return 1
	PIDS[$1]=$SERVICE_PID
}

section "start-up"
step "redis and the services"
must_start "redis-server answers PING on port $REDIS_PORT" start_redis "$REDIS_PORT" "$REDIS_DIR"
for name in users analytics url-shortener; do
	must_start "$name is healthy" start_named "$name"
done
step "the Phase 2 gateway"
must_start "gateway is healthy on $G" start_gateway "$GATEWAY" "$TEST_DIR/gateway" "$G_PORT" "${GATEWAY_ENV[@]}"
G_PID=$GATEWAY_PID

# The probe user owns the seeded links (so it may read their analytics)
# and is registered (so GET /api/v1/users/me answers 200); the load's
# shorteners are three more users. Their tokens are made here, premium
# (the gateways sign nothing: they check the secret's signature), so the
# load never meets the limit that the fresh free users of the limit checks
# do.
step "users"
http POST "$G/api/v1/auth/register" '{"username":"fault-owner","password":"correct horse battery staple"}'
expect_status 201
# premium_token SUBJECT: a token for SUBJECT, premium tier, two hours.
premium_token() {
	make_token HS256 "$SECRET" "$(jq -cn --arg sub "$1" --argjson now "$(date +%s)" \
		'{sub: $sub, tier: "premium", iat: $now, exp: ($now + 7200)}')"
}
OWNER_TOKEN=$(premium_token fault-owner)
LOAD_TOKENS_FILE="$TEST_DIR/load-tokens"
for i in 1 2 3; do
	premium_token "load-$i"
	echo
done >"$LOAD_TOKENS_FILE"

# ---------------------------------------------------------------------------
# The faults: what each does, how it ends, and how healing is seen.
# ---------------------------------------------------------------------------
SEED_CODE=""
# first_seed: a code of this fault's seeded links (for the probes).
first_seed() {
	head -n 1 "$FAULT_DIR/codes"
}

# The Redis error count for OOM ("errorstat_OOM:count=N"), 0 when none yet.
redis_oom_errors() {
	redis-cli -p "$REDIS_PORT" info errorstats 2>/dev/null | tr -d '\r' |
		sed -n 's/^errorstat_OOM:count=\([0-9]*\).*/\1/p' | grep . || echo 0
}
OOM_BEFORE=0
redis_refuses_writes() {
	[ "$(redis_oom_errors)" -gt "$OOM_BEFORE" ]
}

fault_inject() {
	case $1 in
	kill-redis) kill_pid "$REDIS_PID" ;;
	kill-gateway) kill_pid "${P3_PIDS[2]}" ;;
	kill-*) kill_pid "${PIDS[${1#kill-}]}" ;;
	term-gateway)
		stop_pid "${P3_PIDS[2]}"
		check_exits_0 "api-gateway-2 exits 0 on SIGTERM under load" "$STOPPED_STATUS"
		FAULT_EXTRA="exit status $STOPPED_STATUS"
		;;
	term-*)
		stop_pid "${PIDS[${1#term-}]}"
		check_exits_0 "${1#term-} exits 0 on SIGTERM under load" "$STOPPED_STATUS"
		FAULT_EXTRA="exit status $STOPPED_STATUS"
		;;
	stop-*) kill -STOP "${PIDS[${1#stop-}]}" ;;
	fill-redis)
		# The limit is set 256 KiB under what Redis uses now, so it stays
		# over it for the whole fault: every write that needs memory is
		# refused (noeviction: nothing is thrown away). At exactly the
		# usage, memory Redis gave back (client buffers) let writes
		# through again within a second, and the load felt nothing.
		OOM_BEFORE=$(redis_oom_errors)
		redis-cli -p "$REDIS_PORT" config set maxmemory-policy noeviction >/dev/null
		used=$(redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)/\1/p')
		redis-cli -p "$REDIS_PORT" config set maxmemory $((used > 524288 ? used - 262144 : 262144)) >/dev/null
		if poll_until 10 redis_refuses_writes; then
			pass "Redis refuses writes (OOM) ${POLL_ELAPSED}s after the limit was set"
		else
			fail "Redis refuses writes (OOM) within 10 s" "errorstat_OOM is $(redis_oom_errors)"
		fi
		;;
	esac
}

fault_recover() {
	case $1 in
	kill-redis) start_redis "$REDIS_PORT" "$REDIS_DIR" ;;
	fill-redis)
		FAULT_EXTRA="$(($(redis_oom_errors) - OOM_BEFORE)) writes refused (OOM) while full"
		redis-cli -p "$REDIS_PORT" config set maxmemory 0 >/dev/null
		;;
	*-gateway) start_p3 2 ;;
	kill-* | term-*) start_named "${1#*-}" ;;
	stop-*) kill -CONT "${PIDS[${1#stop-}]}" ;;
	esac
}

fault_probe() {
	local code
	code=$(first_seed)
	case $1 in
	*-users)
		PROBE_WHAT="GET /api/v1/users/me answers 200"
		http GET "$TARGET/api/v1/users/me" '' -H "Authorization: Bearer $OWNER_TOKEN"
		[ "$HTTP_STATUS" = 200 ]
		;;
	*-analytics)
		PROBE_WHAT="GET /api/v1/analytics/<code> answers 200"
		http GET "$TARGET/api/v1/analytics/$code" '' -H "Authorization: Bearer $OWNER_TOKEN"
		[ "$HTTP_STATUS" = 200 ]
		;;
	*-url-shortener)
		PROBE_WHAT="GET /api/v1/expand/<code> answers 200"
		http GET "$TARGET/api/v1/expand/$code"
		[ "$HTTP_STATUS" = 200 ]
		;;
	*-redis)
		# A write, counted by the rate limiter again (no
		# X-RateLimit-Status: redis-unavailable).
		PROBE_WHAT="POST /api/v1/shorten answers 201, counted in Redis"
		http POST "$TARGET/api/v1/shorten" "{\"url\":\"https://example.com/faults/probe/$RUN_TAG\"}" \
			-H "Authorization: Bearer $OWNER_TOKEN"
		[ "$HTTP_STATUS" = 201 ] || return 1
		jq -r '.code' <<<"$HTTP_BODY" >>"$FAULT_DIR/probe-created"
		! has_header X-RateLimit-Status
		;;
	*-gateway)
		# nginx sends requests to the restarted gateway again.
		PROBE_WHAT="nginx sends requests to api-gateway-2 again (200, X-Instance)"
		local i
		for i in 1 2 3; do
			http GET "$TARGET/api/v1/expand/$code"
			[ "$HTTP_STATUS" = 200 ] && has_header_value X-Instance api-gateway-2 && return 0
		done
		return 1
		;;
	esac
}

# Phase 2: the load through the one gateway.
TARGET=$G
TARGET_PHASE=2
GATEWAY_URLS=("$G")

# A SIGKILLed url-shortener loses the clicks still in its in-memory queue
# (services/url-shortener/analytics_client.c says so: the next step is a
# durable queue). That fault (the full run only) reports how many, and
# does not fail on them; every other fault must lose none.
CLICKS_MAY_BE_LOST=kill-url-shortener

if [ "$FULL" = 1 ]; then
	run_fault kill-users "users killed (SIGKILL) and restarted" positive
	run_fault kill-url-shortener "url-shortener killed (SIGKILL) and restarted" positive
	run_fault kill-analytics "analytics killed (SIGKILL) and restarted" positive
	run_fault term-users "users stopped (SIGTERM) and restarted"
	run_fault term-url-shortener "url-shortener stopped (SIGTERM) and restarted"
	run_fault term-analytics "analytics stopped (SIGTERM) and restarted"
	run_fault stop-url-shortener "url-shortener frozen (SIGSTOP), then thawed (SIGCONT)" positive
	run_fault kill-redis "Redis killed (SIGKILL) and restarted, data directory kept" positive
	run_fault fill-redis "Redis's memory limit filled (maxmemory, noeviction), then raised" positive
else
	run_fault kill-analytics "analytics killed (SIGKILL) and restarted" positive
	run_fault kill-redis "Redis killed (SIGKILL) and restarted, data directory kept" positive
fi

# ---------------------------------------------------------------------------
# Phase 3: three gateways behind nginx, the load through nginx. Their v2
# routes are not part of the load; v2 and the canary point at the one
# url-shortener, so no extra processes run.
# ---------------------------------------------------------------------------
section "start-up: three Phase 3 gateways behind nginx"
P3_PORTS=("$(free_port)" "$(free_port)" "$(free_port)")
LB_PORT=$(free_port)
P3_ENV=(LOOP_THREADS=2 GATEWAY_CONFIG="$TEST_DIR/gateway-advanced.json" JWT_SECRET="$SECRET"
	USERS_URL="http://127.0.0.1:$USERS_PORT" ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
	URL_SHORTENER_V1_URL="http://127.0.0.1:$SHORTENER_PORT"
	URL_SHORTENER_V2_URL="http://127.0.0.1:$SHORTENER_PORT"
	URL_SHORTENER_V2_CANARY_URL="http://127.0.0.1:$SHORTENER_PORT"
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1" TRUSTED_PROXIES=127.0.0.1 "${LIMIT_ENV[@]}")
declare -A P3_PIDS=()
# start_p3 N: starts (or restarts) api-gateway-N.
start_p3() {
	start_gateway "$GATEWAY3" "$TEST_DIR/api-gateway-$1" "${P3_PORTS[$(($1 - 1))]}" \
		"${P3_ENV[@]}" INSTANCE_ID="api-gateway-$1" || return 1
	P3_PIDS[$1]=$GATEWAY_PID
}
for i in 1 2 3; do
	must_start "api-gateway-$i is healthy" start_p3 "$i"
done
must_start "nginx answers on port $LB_PORT" start_nginx "$TEST_DIR/nginx" "$LB_PORT" "${P3_PORTS[@]}"
NGINX_ACCESS_LOG="$TEST_DIR/nginx/logs/access.log"

TARGET="http://127.0.0.1:$LB_PORT"
TARGET_PHASE=3
GATEWAY_URLS=()
for port in "${P3_PORTS[@]}"; do
	GATEWAY_URLS+=("http://127.0.0.1:$port")
done

# api-gateway-2 goes, then comes back.
run_fault term-gateway "api-gateway-2 of three behind nginx stopped (SIGTERM) and restarted"
if [ "$FULL" = 1 ]; then
	run_fault kill-gateway "api-gateway-2 of three behind nginx killed (SIGKILL) and restarted"
fi

# ---------------------------------------------------------------------------
section "graceful shutdown"
# SIGTERM with requests in flight. What must hold: new connections are
# refused at once (a load balancer moves on), every request already in
# flight gets its whole answer, the process exits 0 within a bound, and
# what it had queued (spans, clicks) arrives. The trace sink
# (tests/jaeger_sink.py) receives the spans; tests/upstream_fixture.py's
# /slow keeps a gateway's requests in flight for SLOW_MS.
# ---------------------------------------------------------------------------
SLOW_MS=1500
IN_FLIGHT=16
EXIT_BOUND=$((SLOW_MS / 1000 + 4)) # seconds from SIGTERM to exit, at most

TRACING=0
step "trace sink"
start_sink "$TEST_DIR/jaeger-sink" "$TEST_DIR/traces.jsonl"
case $? in
0) pass "tests/jaeger_sink.py is ready" && TRACING=1 ;;
2) echo "# the trace sink cannot run here (python3-thrift, thrift-compiler): span checks skipped" ;;
*) fail "tests/jaeger_sink.py is ready" "see $TEST_DIR/jaeger-sink.err" ;;
esac
FIXTURE_PORT=$(free_port)
must_start "the upstream fixture is ready" start_fixture "$TEST_DIR/fixture" "$FIXTURE_PORT"
jq -n --arg url "http://127.0.0.1:$FIXTURE_PORT" '{
	upstreams: {fixture: {url: $url}},
	routes: [{prefix: "/fixture", upstream: "fixture", rewrite: "/", access: "public", timeout_ms: 10000}]}' \
	>"$TEST_DIR/gateway-fixture.json"

# slow_requests_seen: GET /slow requests that reached the fixture.
slow_requests_seen() {
	curl -s --max-time 2 "http://127.0.0.1:$FIXTURE_PORT/stats" | jq -r '."GET /slow" // 0'
}
# refuses_connections PORT: a new connection to PORT is refused.
refuses_connections() {
	curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/health"
	[ $? = 7 ]
}
# exited PID
exited() {
	! pid_alive "$1"
}
# sink_has_span SERVICE TRACE_ID [OPERATION]: the sink got a span of that
# trace from that service (with that operation name, when given).
sink_has_span() {
	jq -c --arg s "$1" --arg t "$2" --arg o "${3:-}" \
		'select(.service == $s and .trace_id == $t and ($o == "" or .operationName == $o))' \
		"$TEST_DIR/traces.jsonl" 2>/dev/null | grep -q .
}
# server_spans INSTANCE OPERATION: how many server spans that instance
# reported with that operation name.
server_spans() {
	jq -s --arg i "$1" --arg o "$2" \
		'[.[] | select(.instance == $i and .operationName == $o and .tags["span.kind"] == "server")] | length' \
		"$TEST_DIR/traces.jsonl" 2>/dev/null || echo 0
}
server_spans_reported() {
	[ "$(server_spans "$1" "$2")" -ge "$3" ]
}
every_trace_reported() {
	local service=$1 file=$2 operation=${3:-} id
	while read -r id; do
		sink_has_span "$service" "$id" "$operation" || return 1
	done <"$file"
}

# exits_in_bound PID NAME T0: PID exits within EXIT_BOUND seconds of T0
# (when SIGTERM was sent); SIGKILL when it does not. Sets EXIT_ELAPSED.
exits_in_bound() {
	local pid=$1 name=$2 t0=$3 elapsed
	poll_until "$EXIT_BOUND" exited "$pid"
	elapsed=$(seconds_between "$t0" "$(now_s)")
	EXIT_ELAPSED=$elapsed
	if exited "$pid"; then
		check_num "$name exits within $EXIT_BOUND s of SIGTERM (${elapsed}s)" "$elapsed" '<=' "$EXIT_BOUND"
	else
		fail "$name exits within $EXIT_BOUND s of SIGTERM" "still running after ${elapsed}s; SIGKILL"
		kill -KILL "$pid" 2>/dev/null
	fi
}

# refuses_after NAME PORT: once SIGTERM is sent, a new connection to PORT
# is refused within 2 s. Sets REFUSED_AFTER (seconds, or "no").
refuses_after() {
	if poll_until 2 refuses_connections "$2"; then
		REFUSED_AFTER=$POLL_ELAPSED
		pass "$1 refuses new connections ${POLL_ELAPSED}s after SIGTERM"
	else
		REFUSED_AFTER=no
		fail "$1 refuses new connections within 2 s of SIGTERM" "port $2 still accepts"
	fi
}

# record_shutdown WHAT ANSWERS_FILE EXPECTED_STATUS FLUSHED: one line of
# figures for tests/faults/report.sh: what the in-flight clients got, how
# soon new connections were refused, how the process ended, and whether
# what it had queued arrived (FLUSHED, a few words).
SHUTDOWNS="$TEST_DIR/shutdowns.jsonl"
: >"$SHUTDOWNS"
record_shutdown() {
	jq -s -c --arg what "$1" --argjson status "$3" --arg flushed "$4" \
		--arg refused "$REFUSED_AFTER" --arg exit_s "$EXIT_ELAPSED" --arg exit_status "$EXIT_STATUS" '{
		what: $what, in_flight: length,
		whole: [.[] | select(.result == "whole" and .status == $status)] | length,
		cut: [.[] | select(.result == "cut")] | length,
		other: [.[] | select(.result != "cut" and (.result != "whole" or .status != $status))] | length,
		refused_after_s: $refused, exit_s: $exit_s, exit_status: $exit_status, flushed: $flushed
	}' "$2" >>"$SHUTDOWNS"
}

# sigterm_and_wait PID NAME PORT: SIGTERM, then the checks every shutdown
# shares. Sets EXIT_STATUS.
sigterm_and_wait() {
	local pid=$1 name=$2 port=$3 t0
	t0=$(now_s)
	kill -TERM "$pid"
	refuses_after "$name" "$port"
	exits_in_bound "$pid" "$name" "$t0"
	if wait "$pid" 2>/dev/null; then EXIT_STATUS=0; else EXIT_STATUS=$?; fi
	_forget_pid "$pid"
	check_eq "$name exits 0" 0 "$EXIT_STATUS"
}

# whole_answers FILE N STATUS: inflight.py's results: N whole answers, each
# with STATUS. Prints what else came.
whole_answers() {
	local file=$1 n=$2 status=$3 got
	got=$(jq -s --argjson s "$status" '[.[] | select(.result == "whole" and .status == $s)] | length' "$file")
	if [ "$got" = "$n" ]; then
		pass "all $n in-flight requests got a whole $status"
	else
		fail "all $n in-flight requests got a whole $status" \
			"$got did; the others: $(jq -s -c 'map(select(.result != "whole" or .status != '"$status"')
				| {result, status, error}) | group_by(.) | map({n: length} + .[0])' "$file")"
	fi
}

# shutdown_gateway CORE: the Phase 3 gateway (it traces) on that server
# core, IN_FLIGHT requests waiting on the fixture's /slow, then SIGTERM.
shutdown_gateway() {
	local core=$1 port base client trace_env=(TRACE_SAMPLER=off)
	step "gateway, $core core"
	port=$(free_port)
	if [ "$TRACING" = 1 ]; then
		trace_env=(TRACE_SAMPLER=const TRACE_REPORTER=udp-binary JAEGER_AGENT_HOST=127.0.0.1
			JAEGER_AGENT_PORT="$SINK_UDP_BINARY_PORT")
	fi
	if ! start_gateway "$GATEWAY3" "$TEST_DIR/shutdown-gateway-$core" "$port" \
		GATEWAY_CONFIG="$TEST_DIR/gateway-fixture.json" JWT_SECRET="$SECRET" \
		RATE_LIMIT_STORE=memory SERVER_CORE="$core" LOOP_THREADS=2 WORKER_THREADS=$((IN_FLIGHT * 2)) \
		INSTANCE_ID="shutdown-$core" "${trace_env[@]}"; then
		fail "the gateway ($core core) starts" "see $TEST_DIR/shutdown-gateway-$core.err"
		return
	fi
	base=$(slow_requests_seen)
	/usr/bin/python3 tests/faults/inflight.py "$port" "/fixture/slow?ms=$SLOW_MS" "$IN_FLIGHT" \
		"$TEST_DIR/inflight-$core.ready" "$TEST_DIR/inflight-$core.jsonl" &
	client=$!
	if poll_until 10 eval '[ "$(slow_requests_seen)" -ge $((base + IN_FLIGHT)) ]'; then
		pass "$IN_FLIGHT requests in flight (all waiting at the upstream)"
	else
		fail "$IN_FLIGHT requests in flight within 10 s" "the fixture saw $(($(slow_requests_seen) - base))"
	fi
	sigterm_and_wait "$GATEWAY_PID" "the gateway ($core core)" "$port"
	wait "$client"
	whole_answers "$TEST_DIR/inflight-$core.jsonl" "$IN_FLIGHT" 200
	check_eq "each body is the upstream's whole answer" "$IN_FLIGHT" \
		"$(jq -s --arg b "{\"slept_ms\": $SLOW_MS}" '[.[] | select(.body == $b)] | length' \
			"$TEST_DIR/inflight-$core.jsonl")"
	local flushed="no trace sink"
	if [ "$TRACING" = 1 ]; then
		if poll_until 5 server_spans_reported "shutdown-$core" "GET /fixture/..." "$IN_FLIGHT"; then
			pass "the server spans of all $IN_FLIGHT in-flight requests reached the sink (flushed at exit)"
		else
			fail "the server spans of all $IN_FLIGHT in-flight requests reached the sink" \
				"it has $(server_spans "shutdown-$core" "GET /fixture/...") (see $TEST_DIR/traces.jsonl)"
		fi
		flushed="$(server_spans "shutdown-$core" "GET /fixture/...") of $IN_FLIGHT server spans"
	fi
	record_shutdown "gateway-advanced, SERVER_CORE=$core, $IN_FLIGHT requests waiting $SLOW_MS ms on the upstream" \
		"$TEST_DIR/inflight-$core.jsonl" 200 "$flushed"
}

shutdown_gateway events
shutdown_gateway threads

# The url-shortener runs on civetweb, as every service does. A second
# instance, on its own port, with the stack's Redis and analytics. To hold
# its requests in flight, Redis is frozen (SIGSTOP): a redirect waits on
# its GET (REDIS_COMMAND_TIMEOUT_MS is raised so that it does not give up).
# To hold clicks in its queue, analytics is frozen first.
step "url-shortener (civetweb core)"
S_PORT=$(free_port)
S_URL="http://127.0.0.1:$S_PORT"
s_trace_env=(TRACE_SAMPLER=off)
if [ "$TRACING" = 1 ]; then
	s_trace_env=(TRACE_SAMPLER=const TRACE_REPORTER=udp-compact JAEGER_AGENT_HOST=127.0.0.1
		JAEGER_AGENT_PORT="$SINK_UDP_COMPACT_PORT")
fi
QUEUED=10
if start_service url-shortener-shutdown "$URL_SHORTENER" "$TEST_DIR/url-shortener-shutdown" "$S_PORT" \
	"${SHORTENER_ENV[@]}" REDIS_COMMAND_TIMEOUT_MS=15000 WORKER_THREADS=$((IN_FLIGHT * 2)) \
	INSTANCE_ID=url-shortener-shutdown "${s_trace_env[@]}"; then
	S_PID=$SERVICE_PID
	# A link of the probe user's, made through this instance.
	http POST "$S_URL/shorten" '{"url":"https://example.com/faults/shutdown"}' -H 'X-User-Id: fault-owner'
	expect_status 201
	S_CODE=$(jq -r '.code // "none"' <<<"$HTTP_BODY")
	TARGET=$G
	link_known() { [ "$(clicks_of "$S_CODE")" = 0 ]; }
	poll_until 10 link_known || fail "analytics knows the new link" "$(clicks_of "$S_CODE")"

	# 1. Clicks queued before the signal: analytics frozen, QUEUED redirects.
	kill -STOP "${PIDS[analytics]}"
	: >"$TEST_DIR/queued.traces"
	for i in $(seq 1 "$QUEUED"); do
		http GET "$S_URL/r/$S_CODE"
		[ "$HTTP_STATUS" = 302 ] || fail "redirect $i while analytics is frozen" "$(_got_status)"
		header X-Trace-ID >>"$TEST_DIR/queued.traces"
	done
	queue_depth() {
		metric_sum "$(curl -s --max-time 2 "$S_URL/metrics")" url_shortener_analytics_queue_depth
	}
	queue_holds() { [ "$(queue_depth)" -ge "$QUEUED" ]; }
	if poll_until 5 queue_holds; then
		pass "$QUEUED clicks queued before the signal (queue depth $(queue_depth))"
	else
		fail "$QUEUED clicks queued before the signal" "queue depth $(queue_depth)"
	fi

	# 2. Requests in flight: Redis frozen, IN_FLIGHT redirects sent.
	kill -STOP "$REDIS_PID"
	/usr/bin/python3 tests/faults/inflight.py "$S_PORT" "/r/$S_CODE" "$IN_FLIGHT" \
		"$TEST_DIR/inflight-service.ready" "$TEST_DIR/inflight-service.jsonl" &
	S_CLIENT=$!
	connections_open() {
		[ "$(ss -Htn state established "sport = :$S_PORT" | wc -l)" -ge "$IN_FLIGHT" ]
	}
	if poll_until 5 eval '[ -s "$TEST_DIR/inflight-service.ready" ] && connections_open'; then
		pass "$IN_FLIGHT redirects in flight (sent; the service waits on Redis)"
	else
		fail "$IN_FLIGHT redirects in flight within 5 s" "$(ss -Htn state established "sport = :$S_PORT" | wc -l) connections"
	fi

	# 3. SIGTERM; once the service has taken it, Redis and analytics go on.
	S_SIGTERM_AT=$(now_s)
	kill -TERM "$S_PID"
	stop_taken() { grep -q 'SIGTERM received' "$TEST_DIR/url-shortener-shutdown.err"; }
	poll_until 2 stop_taken || fail "the url-shortener says it got SIGTERM" "nothing in its stderr"
	refuses_after "the url-shortener" "$S_PORT"
	kill -CONT "$REDIS_PID"
	kill -CONT "${PIDS[analytics]}"
	exits_in_bound "$S_PID" "the url-shortener" "$S_SIGTERM_AT"
	if wait "$S_PID" 2>/dev/null; then EXIT_STATUS=0; else EXIT_STATUS=$?; fi
	_forget_pid "$S_PID"
	check_eq "the url-shortener exits 0" 0 "$EXIT_STATUS"
	wait "$S_CLIENT"
	whole_answers "$TEST_DIR/inflight-service.jsonl" "$IN_FLIGHT" 302

	# 4. What it had queued: every click (queued before the signal, and
	#    those of in-flight redirects that were served) reaches analytics.
	SERVED=$(jq -r 'select(.status == 302) | .request_id' "$TEST_DIR/url-shortener-shutdown.out" 2>/dev/null | wc -l)
	all_clicks_in() { [ "$(clicks_of "$S_CODE")" -ge "$SERVED" ]; }
	if poll_until 10 all_clicks_in; then
		pass "all $SERVED clicks of the redirects it served reached analytics ($QUEUED queued before the signal)"
	else
		fail "all $SERVED clicks of the redirects it served reached analytics" "analytics counts $(clicks_of "$S_CODE")"
	fi
	check_match "its last words: nothing lost" 'analytics client stopped: [0-9]+ events delivered while draining, .* 0 could not be delivered and are lost$' \
		"$(grep 'analytics client stopped' "$TEST_DIR/url-shortener-shutdown.err" | tail -n 1)"
	if [ "$TRACING" = 1 ]; then
		# Each queued click was delivered during the drain, after the
		# server had stopped: its delivery span was reported at exit.
		if poll_until 5 every_trace_reported url-shortener "$TEST_DIR/queued.traces" "POST /internal/clicks"; then
			pass "the drain's delivery spans reached the sink (flushed at exit)"
		else
			fail "the drain's delivery spans reached the sink" "see $TEST_DIR/traces.jsonl"
		fi
	fi
	record_shutdown "url-shortener (civetweb), $IN_FLIGHT redirects waiting on a frozen Redis, $QUEUED clicks queued for a frozen analytics" \
		"$TEST_DIR/inflight-service.jsonl" 302 "clicks: analytics counts $(clicks_of "$S_CODE") of the $SERVED redirects it served"

	# 5. A clean stop while analytics cannot take the clicks (frozen the
	#    whole time): the drain gives up after ANALYTICS_DRAIN_SECONDS, and
	#    what it could not deliver must not be lost. The next start of a
	#    url-shortener delivers it.
	step "url-shortener stopped while analytics is down"
	CLICKS_BEFORE=$(clicks_of "$S_CODE")
	S_ENV=("${SHORTENER_ENV[@]}" ANALYTICS_DRAIN_SECONDS=1 INSTANCE_ID=url-shortener-shutdown)
	kill -STOP "${PIDS[analytics]}"
	if start_service url-shortener-shutdown "$URL_SHORTENER" "$TEST_DIR/url-shortener-shutdown" \
		"$S_PORT" "${S_ENV[@]}"; then
		S_PID=$SERVICE_PID
		for i in $(seq 1 "$QUEUED"); do
			http GET "$S_URL/r/$S_CODE"
			[ "$HTTP_STATUS" = 302 ] || fail "redirect $i while analytics is frozen" "$(_got_status)"
		done
		poll_until 5 queue_holds || fail "$QUEUED clicks queued" "queue depth $(queue_depth)"
		stop_pid "$S_PID"
		check_exits_0 "it exits 0 (analytics still frozen)" "$STOPPED_STATUS"
		check_match "its last words: $QUEUED kept in Redis, none lost" \
			"delivered while draining, $QUEUED kept in Redis .* 0 could not be delivered and are lost\$" \
			"$(grep 'analytics client stopped' "$TEST_DIR/url-shortener-shutdown.err" | tail -n 1)"
	else
		fail "the url-shortener starts again" "see $TEST_DIR/url-shortener-shutdown.err"
	fi
	kill -CONT "${PIDS[analytics]}"
	if start_service url-shortener-shutdown "$URL_SHORTENER" "$TEST_DIR/url-shortener-shutdown" \
		"$S_PORT" "${S_ENV[@]}"; then
		S_PID=$SERVICE_PID
		clicks_arrived() { [ "$(clicks_of "$S_CODE")" -ge $((CLICKS_BEFORE + QUEUED)) ]; }
		if poll_until 10 clicks_arrived; then
			pass "the $QUEUED clicks it could not deliver arrive after the next start (${POLL_ELAPSED}s)"
		else
			fail "the $QUEUED clicks it could not deliver arrive after the next start" \
				"analytics counts $(clicks_of "$S_CODE") (was $CLICKS_BEFORE); $(grep 'analytics client stopped' \
					"$TEST_DIR/url-shortener-shutdown.err" | tail -n 1)"
		fi
		stop_pid "$S_PID"
		check_exits_0 "it exits 0" "$STOPPED_STATUS"
	else
		fail "the url-shortener starts a third time" "see $TEST_DIR/url-shortener-shutdown.err"
	fi
else
	fail "the url-shortener for the shutdown check starts" "see $TEST_DIR/url-shortener-shutdown.err"
fi

# ---------------------------------------------------------------------------
section "the figures"
# ---------------------------------------------------------------------------
LOAD_AT_END=$(cut -d ' ' -f 1-3 /proc/loadavg)
jq -r '"# \(.run) \(.name): \(.answered) answered, \(.failed) failed, heal \(.heal_s // "-")s, lost links \(.links_lost), lost clicks \(.clicks_lost), duplicate clicks \(.clicks_duplicated)"' "$FIGURES"
if [ -n "$REPORT" ]; then
	if bash tests/faults/report.sh "$FIGURES" "$SHUTDOWNS" "$REPORT" "$LOAD_AT_START" "$LOAD_AT_END" \
		"$([ "$FULL" = 1 ] && echo full || echo short)"; then
		pass "figures written to $REPORT"
	else
		fail "figures written to $REPORT" "tests/faults/report.sh failed"
	fi
fi

# ---------------------------------------------------------------------------
section "clean stop"
# ---------------------------------------------------------------------------
step "SIGTERM"
declare -A SERVER_NAMES=([$G_PID]=gateway [${PIDS[users]}]=users
	[${PIDS[url-shortener]}]=url-shortener [${PIDS[analytics]}]=analytics)
for i in 1 2 3; do
	SERVER_NAMES[${P3_PIDS[$i]}]=api-gateway-$i
done
SERVER_NAMES[$NGINX_PID]=nginx
check_clean_stop

finish
