#!/usr/bin/env bash
# tests/tracing.sh - a black-box look at distributed tracing: what the kit
# sends to Jaeger, read back by tests/jaeger_sink.py (a decoder generated
# from Jaeger's own Thrift IDL, sharing no code with the kit).
#
# Usage: tests/tracing.sh [bin-dir]    (default build/bin; build/asan/bin
#                                       for the AddressSanitizer run)
#
#   client ──► gateway-advanced ──► url-shortener ──► analytics (clicks, in
#              (phase3-advanced/        the background)
#               gateway.json)
#   every process ──► tests/jaeger_sink.py (UDP binary, UDP compact, HTTP)
#
# It shows: one redirect is ONE trace of five spans, correctly parented,
# with the guide's tags and each process's name and instance; X-Trace-ID is
# that trace; a caller's uber-trace-id or traceparent is continued (and its
# "not sampled" obeyed); 5xx are errors, 4xx are not; the compact protocol
# and the HTTP collector carry the same spans; TRACE_SAMPLER=off sends
# nothing but still answers X-Trace-ID; a dead collector costs no latency;
# bad settings stop start-up. Ends with "N passed, N failed".

# jq programs are single-quoted on purpose: $names in them are jq's.
# shellcheck disable=SC2016
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${1:-build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
GATEWAY="$BIN_DIR/gateway-advanced"
USERS="$BIN_DIR/users"
URL_SHORTENER="$BIN_DIR/url-shortener"
ANALYTICS="$BIN_DIR/analytics"

echo "# tracing black-box tests against $BIN_DIR/{gateway-advanced,users,url-shortener,analytics}"
echo "# scratch directory: $TEST_DIR"

# ---------------------------------------------------------------------------
section "prerequisites"
# ---------------------------------------------------------------------------
for tool in curl jq redis-server redis-cli python3; do
	check_true "$tool is installed" command -v "$tool" >/dev/null
done
require_binaries "the binaries exist" "$GATEWAY" "$USERS" "$URL_SHORTENER" "$ANALYTICS"


# ---------------------------------------------------------------------------
section "start-up"
# The sink first: every process reports to it. Without python3-thrift or
# thrift-compiler it cannot decode anything, and this script skips.
# ---------------------------------------------------------------------------
TRACES="$TEST_DIR/traces.jsonl"
step "trace sink"
start_sink "$TEST_DIR/jaeger-sink" "$TRACES"
case $? in
0) pass "tests/jaeger_sink.py is ready (UDP $SINK_UDP_BINARY_PORT binary, $SINK_UDP_COMPACT_PORT compact, HTTP $SINK_HTTP_PORT)" ;;
2)
	echo "# SKIP: tests/jaeger_sink.py cannot run here (python3-thrift, thrift-compiler or the IDL missing: scripts/deps.sh)"
	finish
	exit 0
	;;
*) must_start "tests/jaeger_sink.py is ready" false ;;
esac

REDIS_PORT=$(free_port)
USERS_PORT=$(free_port)
URL_SHORTENER_PORT=$(free_port)
ANALYTICS_PORT=$(free_port)
DEAD_PORT=$(free_port) # nothing listens here
SECRET="tracing-test-secret-0123456789abcdef-0123456789"
DATA="redis://127.0.0.1:$REDIS_PORT/0"

# Every process samples every new trace and reports to the sink.
TRACE_BINARY=(TRACE_SAMPLER=const TRACE_REPORTER=udp-binary
	JAEGER_AGENT_HOST=127.0.0.1 JAEGER_AGENT_PORT="$SINK_UDP_BINARY_PORT")

step "redis"
must_start "redis-server answers PING on port $REDIS_PORT" \
	start_redis "$REDIS_PORT" "$TEST_DIR/redis"

# analytics has no INSTANCE_ID: its instance tag is then <hostname>:<port>.
step "services"
must_start "users is healthy on port $USERS_PORT" \
	start_service users "$USERS" "$TEST_DIR/users" "$USERS_PORT" "${TRACE_BINARY[@]}" \
	REDIS_URL="$DATA" JWT_SECRET="$SECRET" ALLOW_INSECURE_DEV_SECRET=true \
	PASSWORD_PBKDF2_ITERATIONS=1000 INSTANCE_ID=users-1
USERS_PID=$SERVICE_PID
must_start "analytics is healthy on port $ANALYTICS_PORT" \
	start_service analytics "$ANALYTICS" "$TEST_DIR/analytics" "$ANALYTICS_PORT" \
	"${TRACE_BINARY[@]}" REDIS_URL="$DATA"
ANALYTICS_PID=$SERVICE_PID
must_start "url-shortener is healthy on port $URL_SHORTENER_PORT" \
	start_service url-shortener "$URL_SHORTENER" "$TEST_DIR/url-shortener" \
	"$URL_SHORTENER_PORT" "${TRACE_BINARY[@]}" REDIS_URL="$DATA" \
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" INSTANCE_ID=url-shortener-1
URL_SHORTENER_PID=$SERVICE_PID

# The gateways: the same binary and routes (phase3-advanced/gateway.json),
# one per way of reporting, and one with tracing off. API v2 points at a
# port where nothing listens, to get a 502.
GATEWAY_ENV=(
	GATEWAY_CONFIG=phase3-advanced/gateway.json
	USERS_URL="http://127.0.0.1:$USERS_PORT"
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
	URL_SHORTENER_V1_URL="http://127.0.0.1:$URL_SHORTENER_PORT"
	URL_SHORTENER_V2_URL="http://127.0.0.1:$DEAD_PORT"
	URL_SHORTENER_V2_CANARY_URL="http://127.0.0.1:$DEAD_PORT"
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1"
	JWT_SECRET="$SECRET"
	WORKER_THREADS=8
	RATE_LIMIT_ANONYMOUS=100000
	RATE_LIMIT_FREE=100000
	RATE_LIMIT_PREMIUM=100000
)
declare -A GATEWAY_PORTS GATEWAY_PIDS
step "gateways"
start_traced_gateway() {
	local name=$1
	shift
	GATEWAY_PORTS[$name]=$(free_port)
	must_start "gateway $name is healthy on port ${GATEWAY_PORTS[$name]}" \
		start_gateway "$GATEWAY" "$TEST_DIR/gateway-$name" "${GATEWAY_PORTS[$name]}" \
		"${GATEWAY_ENV[@]}" INSTANCE_ID="gateway-$name" "$@"
	GATEWAY_PIDS[$name]=$GATEWAY_PID
}
start_traced_gateway binary "${TRACE_BINARY[@]}"
start_traced_gateway compact TRACE_SAMPLER=const TRACE_REPORTER=udp-compact \
	JAEGER_AGENT_HOST=127.0.0.1 JAEGER_AGENT_PORT="$SINK_UDP_COMPACT_PORT"
start_traced_gateway http TRACE_SAMPLER=const TRACE_REPORTER=http \
	JAEGER_COLLECTOR_URL="http://127.0.0.1:$SINK_HTTP_PORT/api/traces"
start_traced_gateway off TRACE_SAMPLER=off
start_traced_gateway dead-collector TRACE_SAMPLER=const TRACE_REPORTER=http \
	JAEGER_COLLECTOR_URL="http://127.0.0.1:$DEAD_PORT/api/traces"
G="http://127.0.0.1:${GATEWAY_PORTS[binary]}"

TRACE_ID_RE='^[0-9a-f]{16}([0-9a-f]{16})?$'
ZERO_ID=0000000000000000

# ---- reading the sink's file ----

# span_where TRACE_ID JQ_CONDITION: the first span of the trace for which
# the condition holds (one JSON object), or nothing.
span_where() {
	jq -c --arg trace "$1" "select(.trace_id == \$trace and ($2))" "$TRACES" 2>/dev/null |
		head -n 1
}
# span_count TRACE_ID [JQ_CONDITION]: how many spans the sink has.
span_count() {
	jq -c --arg trace "$1" "select(.trace_id == \$trace and (${2:-true}))" "$TRACES" 2>/dev/null |
		wc -l
}
# has_span TRACE_ID JQ_CONDITION: for poll_until.
has_span() {
	[ -n "$(span_where "$1" "$2")" ]
}
# field SPAN JQ_PATH: one value of a span, as jq -r prints it.
field() {
	jq -r "$2" <<<"$1" 2>/dev/null
}
# The five spans of a redirect, as jq conditions.
GATEWAY_SERVER='.service == "gateway" and .tags["span.kind"] == "server"'
GATEWAY_CLIENT='.service == "gateway" and .tags["span.kind"] == "client"'
SHORTENER_SERVER='.service == "url-shortener" and .tags["span.kind"] == "server"'
SHORTENER_CLIENT='.service == "url-shortener" and .tags["span.kind"] == "client"'
ANALYTICS_SERVER='.service == "analytics" and .tags["span.kind"] == "server"'
# whole_redirect TRACE_ID: all five are there (the click reaches analytics
# in the background, after the redirect has answered).
whole_redirect() {
	has_span "$1" "$GATEWAY_SERVER" && has_span "$1" "$GATEWAY_CLIENT" &&
		has_span "$1" "$SHORTENER_SERVER" && has_span "$1" "$SHORTENER_CLIENT" &&
		has_span "$1" "$ANALYTICS_SERVER"
}
# every_trace_id_is ID: every X-Trace-ID header of the last response is ID
# (the gateway sets one; the service behind it may pass its own on, which
# is the same trace).
every_trace_id_is() {
	local values
	values=$(header_values X-Trace-ID | sort -u)
	check_eq "X-Trace-ID is $1" "$1" "$values"
}
# random_hex N: N random lower-case hex digits.
random_hex() {
	od -An -tx1 -N"$(($1 / 2))" /dev/urandom | tr -d ' \n'
}

# A link to follow.
step "a user and a link"
http POST "$G/api/v1/auth/register" '{"username":"tracy","password":"correct horse battery staple"}'
expect_status 201
http POST "$G/api/v1/auth/login" '{"username":"tracy","password":"correct horse battery staple"}'
TOKEN=$(jq -r '.token // empty' <<<"$HTTP_BODY")
http POST "$G/api/v1/shorten" '{"url":"https://example.com/traced"}' -H "Authorization: Bearer $TOKEN"
expect_status 201
CODE=$(jq -r '.code // empty' <<<"$HTTP_BODY")
check_match "a short code" '^[A-Za-z0-9_-]+$' "$CODE"

# ---------------------------------------------------------------------------
section "one redirect, one trace"
# GET /r/<code>: the gateway opens the trace (server span) and calls the
# url-shortener (client span, uber-trace-id sent on); the url-shortener
# continues it (server span), answers 302, and later posts the click to
# analytics (client span) which continues it too (server span). Five
# spans, one trace id, each the child of the one before.
# ---------------------------------------------------------------------------
step "GET /r/<code>"
http GET "$G/r/$CODE"
expect_status 302
expect_header_match X-Trace-ID "$TRACE_ID_RE"
TRACE=$(header X-Trace-ID)
every_trace_id_is "$TRACE"

step "the trace in the sink"
if poll_until 15 whole_redirect "$TRACE"; then
	pass "five spans of trace $TRACE arrived (in ${POLL_ELAPSED}s)"
else
	fail "five spans of trace $TRACE arrived" \
		"the sink has: $(jq -c --arg t "$TRACE" 'select(.trace_id == $t) | [.service, .tags["span.kind"], .operationName]' "$TRACES" 2>/dev/null | tr '\n' ' ')"
fi
GW_SERVER=$(span_where "$TRACE" "$GATEWAY_SERVER")
GW_CLIENT=$(span_where "$TRACE" "$GATEWAY_CLIENT")
US_SERVER=$(span_where "$TRACE" "$SHORTENER_SERVER")
US_CLIENT=$(span_where "$TRACE" "$SHORTENER_CLIENT")
AN_SERVER=$(span_where "$TRACE" "$ANALYTICS_SERVER")
check_eq "exactly five spans carry the trace id" 5 "$(span_count "$TRACE" | tr -d ' ')"
check_eq "all five came over UDP, binary protocol" udp-binary \
	"$(jq -r --arg t "$TRACE" 'select(.trace_id == $t) | .protocol' "$TRACES" | sort -u)"

step "parents"
check_eq "the gateway's server span is the root" "$ZERO_ID" "$(field "$GW_SERVER" .parentSpanId)"
check_eq "gateway client span <- gateway server span" \
	"$(field "$GW_SERVER" .spanId)" "$(field "$GW_CLIENT" .parentSpanId)"
check_eq "url-shortener server span <- gateway client span" \
	"$(field "$GW_CLIENT" .spanId)" "$(field "$US_SERVER" .parentSpanId)"
check_eq "url-shortener client span <- url-shortener server span" \
	"$(field "$US_SERVER" .spanId)" "$(field "$US_CLIENT" .parentSpanId)"
check_eq "analytics server span <- url-shortener client span" \
	"$(field "$US_CLIENT" .spanId)" "$(field "$AN_SERVER" .parentSpanId)"
check_eq "five different span ids" 5 \
	"$(jq -r --arg t "$TRACE" 'select(.trace_id == $t) | .spanId' "$TRACES" | sort -u | wc -l | tr -d ' ')"

step "names and tags"
check_eq "gateway server: operation" "GET /r/..." "$(field "$GW_SERVER" .operationName)"
check_eq "gateway server: http.method" GET "$(field "$GW_SERVER" '.tags["http.method"]')"
check_eq "gateway server: http.url" "/r/$CODE" "$(field "$GW_SERVER" '.tags["http.url"]')"
check_eq "gateway server: http.status_code" 302 "$(field "$GW_SERVER" '.tags["http.status_code"]')"
check_eq "gateway server: component" api-gateway-kit "$(field "$GW_SERVER" .tags.component)"
check_eq "gateway server: sampler.type (a root)" const "$(field "$GW_SERVER" '.tags["sampler.type"]')"
check_eq "gateway server: no error tag" null "$(field "$GW_SERVER" .tags.error)"
check_eq "gateway client: peer.service" url-shortener-v1 "$(field "$GW_CLIENT" '.tags["peer.service"]')"
check_eq "gateway client: http.method" GET "$(field "$GW_CLIENT" '.tags["http.method"]')"
check_match "gateway client: http.url is the upstream's" \
	"^http://127\.0\.0\.1:$URL_SHORTENER_PORT/r/$CODE" "$(field "$GW_CLIENT" '.tags["http.url"]')"
check_eq "gateway client: http.status_code" 302 "$(field "$GW_CLIENT" '.tags["http.status_code"]')"
check_eq "gateway client: component" api-gateway-kit "$(field "$GW_CLIENT" .tags.component)"
check_eq "url-shortener server: operation" "GET /r/:code" "$(field "$US_SERVER" .operationName)"
check_eq "url-shortener server: http.url" "/r/$CODE" "$(field "$US_SERVER" '.tags["http.url"]')"
check_eq "url-shortener server: http.status_code" 302 "$(field "$US_SERVER" '.tags["http.status_code"]')"
check_eq "url-shortener server: not a root (no sampler tags)" null \
	"$(field "$US_SERVER" '.tags["sampler.type"]')"
check_eq "url-shortener client: operation" "POST /internal/clicks" "$(field "$US_CLIENT" .operationName)"
check_eq "url-shortener client: peer.service" analytics "$(field "$US_CLIENT" '.tags["peer.service"]')"
check_eq "url-shortener client: http.method" POST "$(field "$US_CLIENT" '.tags["http.method"]')"
check_match "url-shortener client: http.status_code 2xx" '^2[0-9][0-9]$' \
	"$(field "$US_CLIENT" '.tags["http.status_code"]')"
check_eq "analytics server: operation" "POST /internal/clicks" "$(field "$AN_SERVER" .operationName)"
check_match "analytics server: http.status_code 2xx" '^2[0-9][0-9]$' \
	"$(field "$AN_SERVER" '.tags["http.status_code"]')"

step "processes"
check_eq "gateway: instance tag" gateway-binary "$(field "$GW_SERVER" .instance)"
check_eq "url-shortener: instance tag" url-shortener-1 "$(field "$US_SERVER" .instance)"
check_eq "analytics: instance tag without INSTANCE_ID is <hostname>:<port>" \
	"$(hostname):$ANALYTICS_PORT" "$(field "$AN_SERVER" .instance)"
check_eq "analytics: hostname tag" "$(hostname)" "$(field "$AN_SERVER" .process_tags.hostname)"
check_match "gateway: kit.version tag" '^[0-9]+\.[0-9]+' "$(field "$GW_SERVER" '.process_tags["kit.version"]')"

step "times"
check_num "the gateway server span starts within a minute of now (µs since the epoch)" \
	"$(( $(date +%s) * 1000000 - $(field "$GW_SERVER" .startTime) ))" '<' 60000000
check_num "the gateway client span lies inside the server span" \
	"$(field "$GW_CLIENT" .startTime)" '>=' "$(field "$GW_SERVER" .startTime)"
check_num "gateway server span duration >= its client span's" \
	"$(field "$GW_SERVER" .duration)" '>=' "$(field "$GW_CLIENT" .duration)"

step "the access log names the trace"
check_true "the gateway's access log has trace_id $TRACE" \
	grep -q "\"trace_id\":\"$TRACE\"" "$TEST_DIR/gateway-binary.out"

# ---------------------------------------------------------------------------
section "a caller's trace is continued"
# A client (or a gateway in front) that sends uber-trace-id keeps its trace
# id; our server span is the child of its span. The same with W3C
# traceparent. A caller that says "not sampled" is obeyed by every process:
# nothing is reported, though the id still comes back.
# ---------------------------------------------------------------------------
step "uber-trace-id, 64-bit"
CALLER_TRACE=$(random_hex 16)
CALLER_SPAN=$(random_hex 16)
http GET "$G/r/$CODE" '' -H "uber-trace-id: $CALLER_TRACE:$CALLER_SPAN:0:1"
expect_status 302
every_trace_id_is "$CALLER_TRACE"
if poll_until 15 whole_redirect "$CALLER_TRACE"; then
	pass "the whole redirect is in the caller's trace"
else
	fail "the whole redirect is in the caller's trace" "$(span_count "$CALLER_TRACE") spans"
fi
check_eq "the gateway's server span is the child of the caller's span" "$CALLER_SPAN" \
	"$(field "$(span_where "$CALLER_TRACE" "$GATEWAY_SERVER")" .parentSpanId)"
check_eq "not a root: no sampler tags" null \
	"$(field "$(span_where "$CALLER_TRACE" "$GATEWAY_SERVER")" '.tags["sampler.type"]')"

step "uber-trace-id, 128-bit and URL-encoded"
CALLER_TRACE=$(random_hex 32)
CALLER_SPAN=$(random_hex 16)
http GET "$G/r/$CODE" '' -H "uber-trace-id: $CALLER_TRACE%3A$CALLER_SPAN%3A0%3A1"
every_trace_id_is "$CALLER_TRACE"
if poll_until 15 has_span "$CALLER_TRACE" "$SHORTENER_SERVER"; then
	pass "the url-shortener's span is in the 128-bit trace"
else
	fail "the url-shortener's span is in the 128-bit trace" "$(span_count "$CALLER_TRACE") spans"
fi
SPAN=$(span_where "$CALLER_TRACE" "$GATEWAY_SERVER")
check_eq "traceIdHigh" "${CALLER_TRACE:0:16}" "$(field "$SPAN" .traceIdHigh)"
check_eq "traceIdLow" "${CALLER_TRACE:16:16}" "$(field "$SPAN" .traceIdLow)"
check_eq "parent" "$CALLER_SPAN" "$(field "$SPAN" .parentSpanId)"

step "traceparent"
CALLER_TRACE=$(random_hex 32)
CALLER_SPAN=$(random_hex 16)
http GET "$G/r/$CODE" '' -H "traceparent: 00-$CALLER_TRACE-$CALLER_SPAN-01"
expect_status 302
every_trace_id_is "$CALLER_TRACE"
if poll_until 15 has_span "$CALLER_TRACE" "$GATEWAY_SERVER"; then
	pass "the gateway's span is in the traceparent's trace"
else
	fail "the gateway's span is in the traceparent's trace"
fi
check_eq "the gateway's server span is the child of the traceparent's span" "$CALLER_SPAN" \
	"$(field "$(span_where "$CALLER_TRACE" "$GATEWAY_SERVER")" .parentSpanId)"

step "malformed headers start a new trace"
http GET "$G/r/$CODE" '' -H "uber-trace-id: 0000000000000000:$CALLER_SPAN:0:1"
expect_header_match X-Trace-ID "$TRACE_ID_RE"
check_true "an all-zero trace id is not taken" [ "$(header X-Trace-ID)" != "0000000000000000" ]
http GET "$G/r/$CODE" '' -H "traceparent: ff-$CALLER_TRACE-$CALLER_SPAN-01"
expect_header_match X-Trace-ID '^[0-9a-f]{16}$'

step "a caller's 'not sampled' is obeyed"
UNSAMPLED_UBER=$(random_hex 16)
http GET "$G/r/$CODE" '' -H "uber-trace-id: $UNSAMPLED_UBER:$(random_hex 16):0:0"
every_trace_id_is "$UNSAMPLED_UBER"
UNSAMPLED_W3C=$(random_hex 32)
http GET "$G/r/$CODE" '' -H "traceparent: 00-$UNSAMPLED_W3C-$(random_hex 16)-00"
every_trace_id_is "$UNSAMPLED_W3C"
# A sampled marker through the same processes afterwards: each reporter
# sends in order, so once the marker's five spans are in, the unsampled
# requests' spans would be too, had anyone reported them.
MARKER=$(random_hex 16)
http GET "$G/r/$CODE" '' -H "uber-trace-id: $MARKER:$(random_hex 16):0:1"
poll_until 15 whole_redirect "$MARKER" || fail "the marker trace arrived"
check_eq "no span of the unsampled uber-trace-id" 0 "$(span_count "$UNSAMPLED_UBER" | tr -d ' ')"
check_eq "no span of the unsampled traceparent" 0 "$(span_count "$UNSAMPLED_W3C" | tr -d ' ')"

# ---------------------------------------------------------------------------
section "errors: 5xx are, 4xx are not"
# The guide marks status >= 400 as an error; the kit marks >= 500 only (a
# 404 is the client's mistake, not the service's).
# ---------------------------------------------------------------------------
step "502 from a dead upstream"
http GET "$G/api/v2/expand/$CODE"
expect_status 502
TRACE_502=$(header X-Trace-ID)
poll_until 15 has_span "$TRACE_502" "$GATEWAY_CLIENT" || true
SPAN=$(span_where "$TRACE_502" "$GATEWAY_SERVER")
check_eq "server span: error=true" true "$(field "$SPAN" .tags.error)"
check_eq "server span: http.status_code" 502 "$(field "$SPAN" '.tags["http.status_code"]')"
check_eq "server span: a log event=error, message=HTTP 502" "error HTTP 502" \
	"$(field "$SPAN" '.logs[0].fields | "\(.event) \(.message)"')"
SPAN=$(span_where "$TRACE_502" "$GATEWAY_CLIENT")
check_eq "client span: error=true" true "$(field "$SPAN" .tags.error)"
check_eq "client span: no http.status_code (no answer)" null "$(field "$SPAN" '.tags["http.status_code"]')"
check_match "client span: peer.service is a v2 upstream" '^url-shortener-v2' \
	"$(field "$SPAN" '.tags["peer.service"]')"

step "404s"
http GET "$G/r/no-such-code-here"
expect_status 404
TRACE_404=$(header X-Trace-ID)
http GET "$G/no/route/at/all"
expect_status 404
TRACE_UNMATCHED=$(header X-Trace-ID)
poll_until 15 has_span "$TRACE_UNMATCHED" "$GATEWAY_SERVER" || true
poll_until 15 has_span "$TRACE_404" "$SHORTENER_SERVER" || true
SPAN=$(span_where "$TRACE_404" "$SHORTENER_SERVER")
check_eq "url-shortener 404: http.status_code" 404 "$(field "$SPAN" '.tags["http.status_code"]')"
check_eq "url-shortener 404: no error tag" null "$(field "$SPAN" .tags.error)"
SPAN=$(span_where "$TRACE_UNMATCHED" "$GATEWAY_SERVER")
check_eq "an unmatched path's operation" "GET unmatched" "$(field "$SPAN" .operationName)"
check_eq "an unmatched path: no error tag" null "$(field "$SPAN" .tags.error)"

# ---------------------------------------------------------------------------
section "the other reporters: UDP compact, HTTP collector"
# The same redirect through gateways that report differently; the services
# behind them still report over UDP binary, so one trace mixes encodings.
# ---------------------------------------------------------------------------
for reporter in compact http; do
	step "TRACE_REPORTER=$([ "$reporter" = compact ] && echo udp-compact || echo http)"
	http GET "http://127.0.0.1:${GATEWAY_PORTS[$reporter]}/r/$CODE"
	expect_status 302
	TRACE_R=$(header X-Trace-ID)
	if poll_until 15 whole_redirect "$TRACE_R"; then
		pass "five spans of trace $TRACE_R arrived"
	else
		fail "five spans of trace $TRACE_R arrived" "$(span_count "$TRACE_R") spans"
	fi
	want_protocol=$([ "$reporter" = compact ] && echo udp-compact || echo http)
	SPAN=$(span_where "$TRACE_R" "$GATEWAY_SERVER")
	check_eq "the gateway's spans came as $want_protocol" "$want_protocol" \
		"$(jq -r --arg t "$TRACE_R" 'select(.trace_id == $t and .service == "gateway") | .protocol' "$TRACES" | sort -u)"
	check_eq "gateway server: instance" "gateway-$reporter" "$(field "$SPAN" .instance)"
	check_eq "gateway server: http.status_code" 302 "$(field "$SPAN" '.tags["http.status_code"]')"
	check_eq "url-shortener server <- gateway client" \
		"$(field "$(span_where "$TRACE_R" "$GATEWAY_CLIENT")" .spanId)" \
		"$(field "$(span_where "$TRACE_R" "$SHORTENER_SERVER")" .parentSpanId)"
done

# ---------------------------------------------------------------------------
section "TRACE_SAMPLER=off"
# Tracing off: nothing is reported (no reporter, no kit_trace_* metrics),
# yet every answer has an X-Trace-ID, and the context goes on unsampled,
# so the services behind it report nothing either.
# ---------------------------------------------------------------------------
step "a redirect through the gateway with tracing off"
http GET "http://127.0.0.1:${GATEWAY_PORTS[off]}/r/$CODE"
expect_status 302
expect_header_match X-Trace-ID "$TRACE_ID_RE"
TRACE_OFF=$(header X-Trace-ID)
MARKER=$(random_hex 16)
http GET "$G/r/$CODE" '' -H "uber-trace-id: $MARKER:$(random_hex 16):0:1"
poll_until 15 whole_redirect "$MARKER" || fail "the marker trace arrived"
check_eq "no span of trace $TRACE_OFF anywhere" 0 "$(span_count "$TRACE_OFF" | tr -d ' ')"
check_eq "no span from the gateway with tracing off" 0 \
	"$(jq -c 'select(.instance == "gateway-off")' "$TRACES" | wc -l | tr -d ' ')"
http GET "http://127.0.0.1:${GATEWAY_PORTS[off]}/metrics"
check_eq "no kit_trace_spans_reported_total when off" "" \
	"$(metric_sum "$HTTP_BODY" kit_trace_spans_reported_total)"

# ---------------------------------------------------------------------------
section "a dead collector"
# Spans are sent by a background thread: a collector that refuses
# connections costs the requests nothing; the failure shows in metrics.
# ---------------------------------------------------------------------------
step "TRACE_REPORTER=http to a port where nothing listens"
DEAD="http://127.0.0.1:${GATEWAY_PORTS[dead-collector]}"
http GET "$DEAD/r/$CODE"
expect_status 302
check_num "the redirect still answers at once (seconds)" "$HTTP_TIME" '<' 0.5
dead_collector_counted() {
	http GET "$DEAD/metrics"
	[ "$(metric_sum "$HTTP_BODY" kit_trace_report_errors_total)" != "0" ] &&
		[ -n "$(metric_sum "$HTTP_BODY" kit_trace_report_errors_total)" ]
}
if poll_until 10 dead_collector_counted; then
	pass "kit_trace_report_errors_total went up"
else
	fail "kit_trace_report_errors_total went up" "$(grep kit_trace <<<"$HTTP_BODY")"
fi
check_num 'kit_trace_spans_dropped_total{reason="send_failed"} >= 1' \
	"$(metric_sum "$HTTP_BODY" kit_trace_spans_dropped_total 'reason="send_failed"')" '>=' 1
check_true "the reporter said so once on stderr" \
	grep -q "tracing: cannot report spans" "$TEST_DIR/gateway-dead-collector.err"

step "the reporters' metrics"
http GET "$G/metrics"
check_num "gateway: kit_trace_spans_reported_total > 0" \
	"$(metric_sum "$HTTP_BODY" kit_trace_spans_reported_total)" '>' 0
check_eq 'gateway: kit_trace_spans_dropped_total{reason="queue_full"} is 0' 0 \
	"$(metric_sum "$HTTP_BODY" kit_trace_spans_dropped_total 'reason="queue_full"')"
check_eq "gateway: kit_trace_report_errors_total is 0" 0 \
	"$(metric_sum "$HTTP_BODY" kit_trace_report_errors_total)"

# ---------------------------------------------------------------------------
section "bad settings stop start-up"
# A typo must not quietly turn tracing off (or on): the process names the
# variable and does not start.
# ---------------------------------------------------------------------------
step "configuration errors"
# starts_with_error NAME=VALUE EXPECTED_TEXT: the gateway exits 1 at start
# with EXPECTED_TEXT on stderr.
starts_with_error() {
	local setting=$1 expected=$2 output status
	output=$(timeout 10 env -i PATH="$PATH" PORT="$(free_port)" "${GATEWAY_ENV[@]}" \
		TRACE_SAMPLER=const "$setting" "$GATEWAY" 2>&1 >/dev/null)
	status=$?
	if [ "$status" = 1 ] && grep -qF -- "$expected" <<<"$output"; then
		pass "$setting: exits 1 saying '$expected'"
	else
		fail "$setting: exits 1 saying '$expected'" "exit $status: $(tail -n 3 <<<"$output")"
	fi
}
starts_with_error TRACE_SAMPLER=sometimes 'TRACE_SAMPLER: "sometimes"'
starts_with_error TRACE_SAMPLER_PARAM=2 'TRACE_SAMPLER_PARAM: "2"'
starts_with_error TRACE_REPORTER=carrier-pigeon 'TRACE_REPORTER: "carrier-pigeon"'
starts_with_error JAEGER_AGENT_PORT=0 'JAEGER_AGENT_PORT'
starts_with_error JAEGER_COLLECTOR_URL=ftp://x 'JAEGER_COLLECTOR_URL'

# ---------------------------------------------------------------------------
section "clean stop, decoding, sanitizers"
# ---------------------------------------------------------------------------
step "SIGTERM"
declare -A SERVER_NAMES=([$USERS_PID]=users [$URL_SHORTENER_PID]=url-shortener
	[$ANALYTICS_PID]=analytics)
for name in "${!GATEWAY_PIDS[@]}"; do
	SERVER_NAMES[${GATEWAY_PIDS[$name]}]="gateway $name"
done
stop_pids "${!SERVER_NAMES[@]}"
for pid in "${!SERVER_NAMES[@]}"; do
	check_exits_0 "${SERVER_NAMES[$pid]} exits 0" "${STOPPED_STATUSES[$pid]:-not stopped}"
done
stop_pid "$SINK_PID"
check_exits_0 "the sink exits 0 on SIGTERM" "$STOPPED_STATUS"

step "the sink decoded everything"
check_eq "no packet failed to decode" 0 "$(wc -l <"$TRACES.errors" | tr -d ' ')"

step "sanitizer reports"
check_no_sanitizer_reports

finish
