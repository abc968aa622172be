#!/usr/bin/env bash
# tests/phase2.sh - a black-box walk through Phase 2 with curl and jq: the
# same journey as Phase 1, now through a gateway in front of three services,
# and then what a gateway adds and must get right: one identity the client
# cannot forge, answers when a service is dead or hangs, one rate limit
# shared by several gateways, Redis trouble, pooled upstream connections,
# clicks that wait for analytics, a config file that is checked, and,
# against a scripted upstream (tests/upstream_fixture.py behind gateway G4),
# bodies passed byte for byte, size limits and the one retry.
#
# Usage: tests/phase2.sh [bin-dir]     (default build/bin; build/asan/bin for
#                                       the AddressSanitizer + UBSan run)
#
# It starts everything itself on free loopback ports, talks only to
# 127.0.0.1, and stops every process by pid at the end, also when a check
# fails or the script is interrupted:
#
#   client ──► gateway G1 ──► users, url-shortener, analytics ──► data Redis
#              gateway G2 ─┐   (url-shortener ──► analytics: clicks, in the
#              gateway G3 ─┴──► rate-limit Redis          background)
#   client ──► gateway G4 ──► tests/upstream_fixture.py   (near the end)
#
# Every check prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, N failed" and the exit code is 1 when any check failed. Logs are
# kept (path printed) when something failed, or always with KEEP_LOGS=1.
# Every log is finally searched for sanitizer reports.
#
# Read it top to bottom: each section says what it shows and why.

# jq programs are single-quoted on purpose: $names in them are jq's.
# shellcheck disable=SC2016
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${1:-build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
GATEWAY="$BIN_DIR/gateway"
USERS="$BIN_DIR/users"
URL_SHORTENER="$BIN_DIR/url-shortener"
ANALYTICS="$BIN_DIR/analytics"
NOTIFICATIONS="$BIN_DIR/notifications"

echo "# Phase 2 black-box tests against $BIN_DIR/{gateway,users,url-shortener,analytics}"
echo "# scratch directory: $TEST_DIR"

# ---------------------------------------------------------------------------
section "prerequisites"
# ---------------------------------------------------------------------------
have_tool() {
	command -v "$1" >/dev/null
}
for tool in curl jq redis-server redis-cli openssl promtool xargs timeout sha256sum /usr/bin/python3; do
	check_true "$tool is installed" have_tool "$tool"
done
require_binaries "the Phase 2 binaries exist" "$GATEWAY" "$USERS" "$URL_SHORTENER" "$ANALYTICS" \
	"$NOTIFICATIONS"

# ---------------------------------------------------------------------------
# Start-up.
#
# Two redis-servers: one keeps the services' data (users, links, clicks),
# the other only the gateways' rate-limit counters. The Redis section below
# stops the rate-limit one to show what the gateway does without it; with a
# single Redis that would also take the services' data away, and we would
# be testing something else (the services' own failure).
# ---------------------------------------------------------------------------
DATA_REDIS_PORT=$(free_port)
LIMITS_REDIS_PORT=$(free_port)
USERS_PORT=$(free_port)
URL_SHORTENER_PORT=$(free_port)
ANALYTICS_PORT=$(free_port)
NOTIFICATIONS_PORT=$(free_port)
G1_PORT=$(free_port)
G2_PORT=$(free_port)
G3_PORT=$(free_port)
G1="http://127.0.0.1:$G1_PORT"
G2="http://127.0.0.1:$G2_PORT"
G3="http://127.0.0.1:$G3_PORT"
URL_SHORTENER_BASE="http://127.0.0.1:$URL_SHORTENER_PORT"

# A test secret of 45 bytes (at least 32 are required).
SECRET="phase2-test-secret-0123456789abcdef-0123456789"
WORKER_THREADS=8 # civetweb (SERVER_CORE=threads): one per connection
LOOP_THREADS=2   # the event-loop core

# The services. PBKDF2 runs 1000 iterations (not 600000) so that logins
# stay fast under AddressSanitizer; ALLOW_INSECURE_DEV_SECRET=true allows
# so few. short_url must point at the gateway, not at the service.
USERS_ENV=(
	REDIS_URL="redis://127.0.0.1:$DATA_REDIS_PORT/0"
	JWT_SECRET="$SECRET"
	ALLOW_INSECURE_DEV_SECRET=true
	PASSWORD_PBKDF2_ITERATIONS=1000
)
URL_SHORTENER_ENV=(
	REDIS_URL="redis://127.0.0.1:$DATA_REDIS_PORT/0"
	PUBLIC_BASE_URL="$G1"
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
)
# Milestones at 3 and 5 clicks (the shipped 10, 100, 1000 would take a
# while): analytics tells the link's owner through notifications.
ANALYTICS_ENV=(
	REDIS_URL="redis://127.0.0.1:$DATA_REDIS_PORT/0"
	NOTIFICATIONS_URL="http://127.0.0.1:$NOTIFICATIONS_PORT"
	CLICK_MILESTONES=3,5
)
NOTIFICATIONS_ENV=(
	REDIS_URL="redis://127.0.0.1:$DATA_REDIS_PORT/0"
)

# The gateways read a copy of phase2-gateway/gateway.json changed for the
# test: the /api/v1/expand route times out after 1000 ms (the hang section
# needs a short timeout), and the "login" policy allows 500 logins a minute
# per IP (every request here comes from 127.0.0.1); the rest of the policy,
# "on_redis_failure" among it, is the shipped file's.
EXPAND_TIMEOUT_MS=1000
LOGIN_LIMIT=500
GATEWAY_CONFIG_FILE="$TEST_DIR/gateway.json"
jq --argjson timeout "$EXPAND_TIMEOUT_MS" --argjson login "$LOGIN_LIMIT" '
	(.routes[] | select(.prefix == "/api/v1/expand") | .timeout_ms) = $timeout
	| .rate_limit_policies.login += {window_seconds: 60, anonymous: $login,
	                                 free: $login, premium: $login}' \
	phase2-gateway/gateway.json >"$GATEWAY_CONFIG_FILE"

# The operator's token: GET /health/details needs it (Authorization:
# Bearer). 40 bytes; at least 32 are required.
OPERATOR_TOKEN="phase2-operator-token-0123456789abcdefgh"

# Every gateway: upstream URLs from the environment (they override the
# file's), the rate-limit Redis, and limits too high to matter except where
# a section lowers them.
GATEWAY_ENV=(
	OPERATOR_TOKEN="$OPERATOR_TOKEN"
	LOOP_THREADS="$LOOP_THREADS"
	GATEWAY_CONFIG="$GATEWAY_CONFIG_FILE"
	USERS_URL="http://127.0.0.1:$USERS_PORT"
	URL_SHORTENER_URL="http://127.0.0.1:$URL_SHORTENER_PORT"
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
	NOTIFICATIONS_URL="http://127.0.0.1:$NOTIFICATIONS_PORT"
	REDIS_URL="redis://127.0.0.1:$LIMITS_REDIS_PORT/0"
	# The limiter gives Redis 50 ms by default; a busy machine (tests run
	# side by side) can be slower, and the sections that count exactly
	# would then see fail-open 200s, fail-closed 503s and the limiter's
	# 1 s back-off. A stopped Redis still fails at once (refused).
	REDIS_RATE_LIMIT_TIMEOUT_MS=3000
	JWT_SECRET="$SECRET"
	WORKER_THREADS="$WORKER_THREADS"
	RATE_LIMIT_WINDOW_SECONDS=60
	RATE_LIMIT_ANONYMOUS=100000
	RATE_LIMIT_FREE=100000
	RATE_LIMIT_PREMIUM=100000
)


section "start-up"
step "redis"
must_start "data redis-server answers PING on port $DATA_REDIS_PORT" \
	start_redis "$DATA_REDIS_PORT" "$TEST_DIR/data-redis"
must_start "rate-limit redis-server answers PING on port $LIMITS_REDIS_PORT" \
	start_redis "$LIMITS_REDIS_PORT" "$TEST_DIR/limits-redis"
LIMITS_REDIS_PID=$REDIS_PID

step "services"
must_start "notifications is healthy on port $NOTIFICATIONS_PORT" \
	start_service notifications "$NOTIFICATIONS" "$TEST_DIR/notifications" "$NOTIFICATIONS_PORT" \
	"${NOTIFICATIONS_ENV[@]}"
NOTIFICATIONS_PID=$SERVICE_PID
must_start "users is healthy on port $USERS_PORT" \
	start_service users "$USERS" "$TEST_DIR/users" "$USERS_PORT" "${USERS_ENV[@]}"
USERS_PID=$SERVICE_PID
must_start "analytics is healthy on port $ANALYTICS_PORT" \
	start_service analytics "$ANALYTICS" "$TEST_DIR/analytics" "$ANALYTICS_PORT" "${ANALYTICS_ENV[@]}"
ANALYTICS_PID=$SERVICE_PID
must_start "url-shortener is healthy on port $URL_SHORTENER_PORT" \
	start_service url-shortener "$URL_SHORTENER" "$TEST_DIR/url-shortener" \
	"$URL_SHORTENER_PORT" "${URL_SHORTENER_ENV[@]}"
URL_SHORTENER_PID=$SERVICE_PID

# G1 serves the journey. G2 and G3 share the rate-limit section with a low
# limit; G2 is also the one that fails closed when Redis is gone.
step "gateways"
must_start "gateway G1 is healthy on $G1" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-1" "$G1_PORT" "${GATEWAY_ENV[@]}"
G1_PID=$GATEWAY_PID
must_start "gateway G2 (RATE_LIMIT_FREE=20, fails closed) is healthy on $G2" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-2" "$G2_PORT" "${GATEWAY_ENV[@]}" \
	RATE_LIMIT_FREE=20 RATE_LIMIT_ON_REDIS_ERROR=closed
G2_PID=$GATEWAY_PID
must_start "gateway G3 (RATE_LIMIT_FREE=20) is healthy on $G3" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-3" "$G3_PORT" "${GATEWAY_ENV[@]}" \
	RATE_LIMIT_FREE=20
G3_PID=$GATEWAY_PID

# G5 runs the shipped phase2-gateway/gateway.json as it is, with its login
# policy (20 a window, "on_redis_failure": "local") under a name of its
# own ("login-outage": its Redis keys are its alone) and an hour-long
# window (the outage section must not straddle two windows).
OUTAGE_CONFIG_FILE="$TEST_DIR/gateway-outage.json"
jq '.rate_limit_policies["login-outage"] = (.rate_limit_policies.login | .window_seconds = 3600)
	| del(.rate_limit_policies.login)
	| (.routes[] | select(.rate_limit == "login") | .rate_limit) = "login-outage"' \
	phase2-gateway/gateway.json >"$OUTAGE_CONFIG_FILE"
G5_PORT=$(free_port)
G5="http://127.0.0.1:$G5_PORT"
must_start "gateway G5 (the shipped login policy, on_redis_failure local) is healthy on $G5" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-5" "$G5_PORT" "${GATEWAY_ENV[@]}" \
	GATEWAY_CONFIG="$OUTAGE_CONFIG_FILE"
G5_PID=$GATEWAY_PID

declare -A PIPE_TOKEN=()
UUID_V4='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
UPSTREAMS=(users url-shortener analytics)
declare -A UPSTREAM_PORTS=([users]=$USERS_PORT [url-shortener]=$URL_SHORTENER_PORT
	[analytics]=$ANALYTICS_PORT)

# log_line FILE REQUEST_ID: the access-log line (one JSON object) FILE has
# for that request id, or nothing.
log_line() {
	grep -F -- "$2" "$1" 2>/dev/null |
		jq -c -R --arg id "$2" 'fromjson? | select(type == "object" and .request_id == $id)' 2>/dev/null |
		head -n 1
}
has_log_line() {
	[ -n "$(log_line "$1" "$2")" ]
}

# ---------------------------------------------------------------------------
section "the gateway's health"
# GET /health is liveness, for load balancers and readiness polls: 200 in
# constant time, asking nothing of the upstreams and telling nothing about
# them. GET /health/details, for the operator only (OPERATOR_TOKEN),
# reports the gateway itself, the rate-limit Redis, and each upstream: is
# it up, where is it, and how the connection pool to it is doing (the
# guide's agentkeepalive getCurrentStatus()).
# ---------------------------------------------------------------------------
# details GATEWAY: GET /health/details with the operator's token.
details() {
	http GET "$1/health/details" '' -H "Authorization: Bearer $OPERATOR_TOKEN"
}
# details_say GATEWAY JQ_FILTER: the detailed report makes JQ_FILTER true.
# The checks behind it are cached for HEALTH_CHECK_INTERVAL_MS (1 s), so a
# change shows within about a second: callers poll.
details_say() {
	details "$1"
	jq -e "$2" <<<"$HTTP_BODY" >/dev/null 2>&1
}

step "GET /health"
http GET "$G1/health"
expect_status 200
expect_json '.status' ok
expect_json '.service' gateway
expect_jq "nothing but status and service" 'keys == ["service", "status"]'

step "GET /health/details"
details "$G1"
expect_status 200
expect_json '.status' healthy
expect_json '.service' gateway
expect_json '.checks.redis.status' up
for upstream in "${UPSTREAMS[@]}"; do
	expect_json ".checks[\"$upstream\"].status" up
	expect_json ".checks[\"$upstream\"].instances[0].url" "http://127.0.0.1:${UPSTREAM_PORTS[$upstream]}"
	expect_json ".checks[\"$upstream\"].instances[0].circuit" closed
	expect_jq "checks[\"$upstream\"].pool has created, errors, closed, idle, in_use, requests" \
		'.checks[$u].pool | [.created, .errors, .closed, .idle, .in_use, .requests]
		 | all(type == "number")' --arg u "$upstream"
done
expect_header_match X-Request-Id "$UUID_V4"

# ---------------------------------------------------------------------------
section "the Phase 1 journey, through the gateway"
# The same requests as tests/phase1.sh, under /api/v1. The client only
# ever talks to the gateway; the answers are the services'.
# ---------------------------------------------------------------------------
PASSWORD="correct horse battery staple"

step "register alice"
http POST "$G1/api/v1/auth/register" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}"
expect_status 201
expect_json '.username' alice
expect_json '.tier' free

step "register alice again"
http POST "$G1/api/v1/auth/register" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}"
expect_problem 409

for name in bob carol dave; do
	step "register $name"
	http POST "$G1/api/v1/auth/register" "{\"username\":\"$name\",\"password\":\"$PASSWORD\"}"
	expect_status 201
	expect_json '.tier' free
done

# Premium is an operator's decision, not a name a client registers first:
# the users binary, run as a command against the same store, sets the
# tier of an existing account. It shows from the next login on.
# users_command ARGS...: the users binary as a command, with the service's
# store; its exit status in COMMAND_STATUS, its output in COMMAND_OUT.
users_command() {
	COMMAND_OUT=$(env -i PATH="$PATH" ${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} \
		${UBSAN_OPTIONS:+UBSAN_OPTIONS=$UBSAN_OPTIONS} \
		REDIS_URL="redis://127.0.0.1:$DATA_REDIS_PORT/0" "$USERS" "$@" 2>&1)
	COMMAND_STATUS=$?
	printf '%s\n' "$COMMAND_OUT" >>"$TEST_DIR/users-command.log"
}
step "an operator grants carol premium (users grant-premium carol)"
users_command grant-premium carol
check_eq "exit 0" 0 "$COMMAND_STATUS"
check_match "it says so" 'carol: tier premium' "$COMMAND_OUT"
step "users grant-premium for a name nobody registered"
users_command grant-premium mallory
check_eq "exit 1" 1 "$COMMAND_STATUS"
check_match "it says why" 'no account named "mallory"' "$COMMAND_OUT"
step "users grant-premium with a bad name"
users_command grant-premium 'Bad Name'
check_eq "exit 2" 2 "$COMMAND_STATUS"

# login TOKEN_VARIABLE NAME: logs NAME in and keeps the token.
login() {
	http POST "$G1/api/v1/auth/login" "{\"username\":\"$2\",\"password\":\"$PASSWORD\"}"
	printf -v "$1" '%s' "$(jq -r '.token // empty' <<<"$HTTP_BODY" 2>/dev/null)"
}

# /api/v1/auth has the file's "login" policy, not RATE_LIMIT_ANONYMOUS:
# the test copy allows LOGIN_LIMIT per window.
step "log in as alice"
login ALICE_TOKEN alice
expect_status 200
expect_json '.token_type' Bearer
expect_json '.username' alice
expect_jq "token has three parts" '.token | split(".") | length == 3'
expect_header X-RateLimit-Limit "$LOGIN_LIMIT"

for name in bob carol dave; do
	step "log in as $name"
	login "${name^^}_TOKEN" "$name"
	expect_status 200
done
expect_json '.tier' free # dave's
AUTH="Authorization: Bearer $ALICE_TOKEN"

step "log in with a wrong password"
http POST "$G1/api/v1/auth/login" '{"username":"alice","password":"wrong password!"}'
expect_problem 401

step "GET /api/v1/users/me as alice"
http GET "$G1/api/v1/users/me" '' -H "$AUTH"
expect_status 200
expect_json '.username' alice
expect_json '.tier' free
expect_header X-RateLimit-Limit 100000

step "GET /api/v1/users/me as carol"
http GET "$G1/api/v1/users/me" '' -H "Authorization: Bearer $CAROL_TOKEN"
expect_status 200
expect_json '.tier' premium

TARGET="https://example.com/articles/gateways?from=phase2"
step "shorten a URL"
http POST "$G1/api/v1/shorten" "{\"url\":\"$TARGET\"}" -H "$AUTH"
expect_status 201
expect_jq "code is 7 characters of base62" '.code | test("^[A-Za-z0-9]{7}$")'
expect_json '.url' "$TARGET"
expect_json '.owner' alice
CODE=$(jq -r '.code // empty' <<<"$HTTP_BODY" 2>/dev/null)
CODE=${CODE:-missing-code}
# PUBLIC_BASE_URL is the gateway: the short link a user shares must not
# point at a service nobody outside can reach.
expect_json '.short_url' "$G1/r/$CODE"

step "GET /api/v1/expand/<code>"
http GET "$G1/api/v1/expand/$CODE"
expect_status 200
expect_json '.code' "$CODE"
expect_json '.url' "$TARGET"

# A problem the service writes comes back through the gateway unchanged,
# with the gateway's request id in it: the id went upstream.
step "GET /api/v1/expand/<unknown code>"
http GET "$G1/api/v1/expand/NoSuchCode"
expect_problem 404

REFERRER="https://news.example/item?id=42"
FIREFOX="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
# The UTC day before the first click and once analytics has both: the
# same one, unless midnight passed in between (then either may hold them).
CLICK_DAYS=("$(date -u +%F)")
for click in 1 2; do
	step "GET /r/<code>, click $click"
	http GET "$G1/r/$CODE" '' -H "Referer: $REFERRER" -A "$FIREFOX"
	expect_status 302
	expect_header Location "$TARGET"
	expect_header_match Cache-Control 'no-store'
done

# The url-shortener tells analytics about a click in the background, after
# the redirect has gone out: poll until both clicks are counted.
# clicks_are N: analytics (through G1, as alice) counts N clicks on CODE.
clicks_are() {
	http GET "$G1/api/v1/analytics/$CODE" '' -H "$AUTH"
	[ "$HTTP_STATUS" = 200 ] && jq -e --argjson n "$1" '.clicks == $n' <<<"$HTTP_BODY" >/dev/null 2>&1
}
step "GET /api/v1/analytics/<code>"
if poll_until 10 clicks_are 2; then
	pass "2 clicks counted after ${POLL_ELAPSED}s"
else
	fail "2 clicks counted within 10 s" "last answer: $HTTP_STATUS ${HTTP_BODY:0:300}"
fi
CLICK_DAYS+=("$(date -u +%F)") # analytics has counted them by now
expect_json '.code' "$CODE"
expect_jq "clicks_by_day has both, on the day they happened (${CLICK_DAYS[*]})" \
	'. as $body | [$first, $last] | unique | map($body.clicks_by_day[.] // 0) | add == 2' \
	--arg first "${CLICK_DAYS[0]}" --arg last "${CLICK_DAYS[1]}"
expect_json '.last_referrer' "$REFERRER"
expect_json '.last_user_agent_family' Firefox

step "GET /api/v1/analytics/<code> as bob"
http GET "$G1/api/v1/analytics/$CODE" '' -H "Authorization: Bearer $BOB_TOKEN"
expect_problem 403

# ---------------------------------------------------------------------------
section "bad input through the gateway"
# ---------------------------------------------------------------------------
step "shorten with a body that is not JSON"
http POST "$G1/api/v1/shorten" 'not json' -H "$AUTH"
expect_problem 400

step "register with \"username\": 5"
http POST "$G1/api/v1/auth/register" '{"username":5,"password":"long enough password"}'
expect_problem 400

step "shorten without a token"
http POST "$G1/api/v1/shorten" "{\"url\":\"$TARGET\"}"
expect_problem 401
expect_header_match WWW-Authenticate '^Bearer'

# Forged tokens are the gateway's business now: it verifies once, and the
# services never see a token at all. Positive control: alice's real token,
# accepted above by the same route.
step "alice's token with a tampered signature"
http GET "$G1/api/v1/users/me" '' -H "Authorization: Bearer $(tamper_token "$ALICE_TOKEN")"
expect_problem 401

step 'an unsigned token with alg "none"'
NOW=$(date +%s)
NONE_CLAIMS=$(jq -cn --argjson now "$NOW" '{sub: "alice", tier: "premium", iat: $now, exp: ($now + 600)}')
http GET "$G1/api/v1/users/me" '' \
	-H "Authorization: Bearer $(make_token none "" "$NONE_CLAIMS" '{"alg":"none","typ":"JWT"}')"
expect_problem 401

step "a script-built HS256 token (positive control for the one above)"
http GET "$G1/api/v1/users/me" '' -H "Authorization: Bearer $(make_token HS256 "$SECRET" "$NONE_CLAIMS")"
expect_status 200
expect_json '.username' alice

# The gateway routes any method under /api/v1/shorten to the service; the
# service says which methods it has (405 with Allow, or 404).
step "DELETE /api/v1/shorten"
http DELETE "$G1/api/v1/shorten" '' -H "$AUTH"
case $HTTP_STATUS in
405)
	expect_problem 405
	expect_header_match Allow 'POST'
	;;
404) expect_problem 404 ;;
*) fail "status 405 or 404" "got $(_got_status); body: ${HTTP_BODY:0:300}" ;;
esac

step "GET /api/v1/no/such/route (no route at the gateway)"
http GET "$G1/api/v1/no/such/route"
expect_problem 404

step "GET /no/such/route"
http GET "$G1/no/such/route"
expect_problem 404

# ---------------------------------------------------------------------------
section "identity: X-User-* from a client never reaches a service"
# Threat: the services trust X-User-Id / X-User-Tier (they have no token to
# check). A client who sends those headers itself would become whoever it
# names, unless the gateway removes them before it adds the verified ones.
# Positive control: the same request without the spoofed header is alice.
# (Cache-Control: no-cache: /users/me is cached, and the point here is what
# reaches the service. A cached answer is keyed by the verified user, never
# by a header: see "the response cache" below.)
# ---------------------------------------------------------------------------
SPOOF_ID="phase2-spoof.$RANDOM"
step "alice's token with X-User-Id: mallory and X-User-Tier: premium"
http GET "$G1/api/v1/users/me" '' -H "$AUTH" -H 'X-User-Id: mallory' \
	-H 'X-User-Tier: premium' -H "X-Request-Id: $SPOOF_ID" -H 'Cache-Control: no-cache'
expect_status 200
expect_json '.username' alice
expect_json '.tier' free
expect_header X-Request-Id "$SPOOF_ID"

# The users service logged the request under the gateway's request id, and
# the user it was told about is alice.
step "the users service's access log for $SPOOF_ID"
if poll_until 5 has_log_line "$TEST_DIR/users.out" "$SPOOF_ID"; then
	pass "users logged request id $SPOOF_ID"
	check_eq "its user is alice" alice "$(log_line "$TEST_DIR/users.out" "$SPOOF_ID" | jq -r '.user')"
else
	fail "users logged request id $SPOOF_ID" "no such line in $TEST_DIR/users.out"
fi

UNSIGNED_ID="phase2-unsigned.$RANDOM"
step "no token, X-User-Id: mallory on POST /api/v1/shorten"
http POST "$G1/api/v1/shorten" "{\"url\":\"$TARGET\"}" -H 'X-User-Id: mallory' \
	-H "X-Request-Id: $UNSIGNED_ID"
expect_problem 401
# The gateway's own line is written after the response; once it is there,
# the request is over, and the url-shortener must never have seen it.
if poll_until 5 has_log_line "$TEST_DIR/gateway-1.out" "$UNSIGNED_ID"; then
	if has_log_line "$TEST_DIR/url-shortener.out" "$UNSIGNED_ID"; then
		fail "the url-shortener never saw it" "its log has $UNSIGNED_ID"
	else
		pass "the url-shortener never saw it"
	fi
else
	fail "the gateway logged $UNSIGNED_ID" "no such line in $TEST_DIR/gateway-1.out"
fi

# A public route passes no identity at all, whatever the client says.
PUBLIC_ID="phase2-public.$RANDOM"
step "no token, X-User-Id: mallory on GET /api/v1/expand/<code>"
http GET "$G1/api/v1/expand/$CODE" '' -H 'X-User-Id: mallory' -H "X-Request-Id: $PUBLIC_ID"
expect_status 200
if poll_until 5 has_log_line "$TEST_DIR/url-shortener.out" "$PUBLIC_ID"; then
	check_eq "the url-shortener's log says user null" null \
		"$(log_line "$TEST_DIR/url-shortener.out" "$PUBLIC_ID" | jq -r '.user')"
else
	fail "the url-shortener logged $PUBLIC_ID" "no such line in $TEST_DIR/url-shortener.out"
fi

# ---------------------------------------------------------------------------
section "connection pool: keep-alive connections to the upstreams are reused"
# Opening a TCP connection per proxied request costs a handshake and, under
# load, ports in TIME_WAIT. The gateway keeps its upstream connections open
# and reuses them, so after 200 requests, 8 at a time, it has opened at
# most one connection to the url-shortener per request in flight: on the
# event-loop core 8 per loop thread (LOOP_THREADS=2: 16), on civetweb's
# one per worker thread (WORKER_THREADS=8), not 200.
# ---------------------------------------------------------------------------
step "200 GET /api/v1/expand/<code>, 8 at a time"
seq 1 200 | xargs -P 8 -I{} curl -s -o /dev/null --max-time 20 -w '%{http_code}\n' \
	"$G1/api/v1/expand/$CODE" >"$TEST_DIR/pool-codes.txt"
echo "# answers: $(sort "$TEST_DIR/pool-codes.txt" | uniq -c | awk '{ printf "%s x %s  ", $2, $1 }')"
check_eq "200 answers 200" 200 "$(grep -c '^200$' "$TEST_DIR/pool-codes.txt")"
# The report is at most a second old: poll until it counts the 200.
poll_until 5 details_say "$G1" '.checks["url-shortener"].pool.requests >= 200'
POOL=$(jq -c '.checks["url-shortener"].pool' <<<"$HTTP_BODY" 2>/dev/null)
echo "# url-shortener pool after them: $POOL"
check_num "pool.requests >= 200" "$(jq -r '.requests' <<<"$POOL" 2>/dev/null)" '>=' 200
if [ "${SERVER_CORE:-events}" = threads ]; then
	POOL_BOUND=$WORKER_THREADS
else
	POOL_BOUND=$((8 * LOOP_THREADS))
fi
check_num "pool.created <= $POOL_BOUND" "$(jq -r '.created' <<<"$POOL" 2>/dev/null)" '<=' "$POOL_BOUND"
check_num "pool.in_use is 0 between requests" "$(jq -r '.in_use' <<<"$POOL" 2>/dev/null)" '==' 0

# ---------------------------------------------------------------------------
section "one rate limit, two gateways (RATE_LIMIT_FREE=20 on G2 and G3)"
# The counter lives in the rate-limit Redis and is incremented atomically,
# so any number of gateways admit exactly the limit between them. (Phase
# 1's in-memory counter would admit 20 per process: 40 here.) dave has made
# no authenticated request yet; his 60 go to G2 and G3 alternately, 16 at a
# time.
# ---------------------------------------------------------------------------
# The window is fixed on the wall clock: when the current one is about to
# end, wait for the next, so that all 60 requests fall into one window.
SECONDS_LEFT=$((60 - $(date +%s) % 60))
if [ "$SECONDS_LEFT" -lt 8 ]; then
	echo "# waiting ${SECONDS_LEFT}s for the next rate-limit window"
	sleep "$SECONDS_LEFT"
fi
step "60 GET /api/v1/users/me as dave over G2 and G3"
for _ in $(seq 1 30); do
	echo "$G2/api/v1/users/me"
	echo "$G3/api/v1/users/me"
done | xargs -P 16 -I{} curl -s -o /dev/null --max-time 20 -w '%{http_code}\n' \
	-H "Authorization: Bearer $DAVE_TOKEN" {} >"$TEST_DIR/shared-limit-codes.txt"
echo "# answers: $(sort "$TEST_DIR/shared-limit-codes.txt" | uniq -c | awk '{ printf "%s x %s  ", $2, $1 }')"
check_eq "exactly 20 are 200" 20 "$(grep -c '^200$' "$TEST_DIR/shared-limit-codes.txt")"
check_eq "exactly 40 are 429" 40 "$(grep -c '^429$' "$TEST_DIR/shared-limit-codes.txt")"

step "request 61, to G2"
http GET "$G2/api/v1/users/me" '' -H "Authorization: Bearer $DAVE_TOKEN"
expect_problem 429
expect_header_match Retry-After '^[1-9][0-9]*$'
expect_header X-RateLimit-Limit 20
expect_header X-RateLimit-Remaining 0
expect_header_match RateLimit-Policy '^"free";q=20;w=60$'
expect_header_match RateLimit '^"free";r=0;t=[0-9]+$'

step "G2 and G3 metrics"
LIMITED=0
for gateway in "$G2" "$G3"; do
	http GET "$gateway/metrics"
	n=$(metric_sum "$HTTP_BODY" gateway_rate_limit_decisions_total 'decision="limited"')
	LIMITED=$(awk -v a="$LIMITED" -v b="${n:-0}" 'BEGIN { print a + b }')
done
check_num 'gateway_rate_limit_decisions_total{decision="limited"}, G2 + G3' "$LIMITED" '==' 41

# ---------------------------------------------------------------------------
section "one Redis connection per loop thread: every reply reaches its request"
# On the event loop the rate limiter sends the commands of all a thread's
# requests down one Redis connection and hands the replies out in order
# (kit/redis_io.h). A reply given to the wrong request would count one
# user's hit against another. Three new users, a to c: b is 10 hits ahead
# and c 20 before 30 requests (10 each) go out at once, so each user's
# X-RateLimit-Remaining values must be exactly its own run of ten.
# ---------------------------------------------------------------------------
step "30 GET /api/v1/users/me at once, 10 each for users a, b and c"
for user in a b c; do
	PIPE_TOKEN[$user]=$(make_token HS256 "$SECRET" \
		"$(jq -cn --arg sub "pipe-$user-$RANDOM" --argjson now "$(date +%s)" \
			'{sub: $sub, tier: "free", iat: $now, exp: ($now + 600)}')")
done
for _ in $(seq 1 10); do
	curl -s -o /dev/null -H "Authorization: Bearer ${PIPE_TOKEN[b]}" "$G1/api/v1/users/me"
done
for _ in $(seq 1 20); do
	curl -s -o /dev/null -H "Authorization: Bearer ${PIPE_TOKEN[c]}" "$G1/api/v1/users/me"
done
# All 30 start together (a barrier), each prints "user remaining".
python3 - "$G1_PORT" "${PIPE_TOKEN[a]}" "${PIPE_TOKEN[b]}" "${PIPE_TOKEN[c]}" \
	>"$TEST_DIR/pipe-remaining.txt" <<'PY'
import http.client, sys, threading
port, tokens = int(sys.argv[1]), dict(zip("abc", sys.argv[2:5]))
start, lock, lines = threading.Barrier(30), threading.Lock(), []
def one(user):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    start.wait()
    connection.request("GET", "/api/v1/users/me",
                       headers={"Authorization": "Bearer " + tokens[user]})
    remaining = connection.getresponse().getheader("X-RateLimit-Remaining")
    with lock:
        lines.append(f"{user} {remaining}")
threads = [threading.Thread(target=one, args=(user,)) for user in "abc" for _ in range(10)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print("\n".join(sorted(lines)))
PY
for user in a b c; do
	case $user in a) first=99990 ;; b) first=99980 ;; c) first=99970 ;; esac
	check_eq "user $user's Remaining values are exactly $first..$((first + 9))" \
		"$(seq "$first" $((first + 9)) | tr '\n' ' ')" \
		"$(awk -v u="$user" '$1 == u { print $2 }' "$TEST_DIR/pipe-remaining.txt" | sort -n | tr '\n' ' ')"
done

# ---------------------------------------------------------------------------
section "the rate-limit Redis goes away, and comes back"
# A gateway must decide what a rate limit means when it cannot count. G1
# fails open (the default): requests pass, the response and /health say
# so, a metric counts the errors. G2 fails closed
# (RATE_LIMIT_ON_REDIS_ERROR=closed): 503. Both reconnect by themselves.
# ---------------------------------------------------------------------------
# G5's login policy, before the outage: 3 logins counted in Redis. The
# window is an hour on the wall clock: when this one is about to end, wait
# for the next, so that the whole section falls into one window.
SECONDS_LEFT=$((3600 - $(date +%s) % 3600))
if [ "$SECONDS_LEFT" -lt 90 ]; then
	echo "# waiting ${SECONDS_LEFT}s for the next hour-long rate-limit window"
	sleep "$SECONDS_LEFT"
fi
# g5_login: one login as bob through G5.
g5_login() {
	http POST "$G5/api/v1/auth/login" "{\"username\":\"bob\",\"password\":\"$PASSWORD\"}"
}
step "G5: 3 logins while Redis is up"
for n in 1 2 3; do
	g5_login
done
expect_status 200
expect_header X-RateLimit-Limit 20
expect_header X-RateLimit-Remaining 17
expect_no_header X-RateLimit-Status

step "stop the rate-limit Redis"
stop_pid "$LIMITS_REDIS_PID"
check_exits_0 "redis-server exits 0 on SIGTERM" "$STOPPED_STATUS"

step "G1 (fail open): GET /api/v1/users/me"
http GET "$G1/api/v1/users/me" '' -H "$AUTH"
expect_status 200
expect_json '.username' alice
expect_header X-RateLimit-Status redis-unavailable
# The response cache lives in the same Redis: it steps aside (a miss).
expect_header X-Cache MISS

step "G1 (fail open): GET /api/v1/expand/<code>"
http GET "$G1/api/v1/expand/$CODE"
expect_status 200
expect_header X-RateLimit-Status redis-unavailable

step "G1 (fail open): GET /health/details"
if poll_until 5 details_say "$G1" '.checks.redis.status == "down"'; then
	pass "the report says Redis is down"
else
	fail "the report says Redis is down" "${HTTP_BODY:0:300}"
fi
expect_status 200
expect_json '.status' degraded
step "G1 (fail open): GET /health (liveness) is still 200"
http GET "$G1/health"
expect_status 200

step "G1 (fail open): GET /metrics"
http GET "$G1/metrics"
check_num "gateway_rate_limit_redis_errors_total > 0" \
	"$(metric_sum "$HTTP_BODY" gateway_rate_limit_redis_errors_total)" '>' 0

step "G2 (fail closed): GET /api/v1/users/me"
http GET "$G2/api/v1/users/me" '' -H "Authorization: Bearer $CAROL_TOKEN"
expect_problem 503

step "G2 (fail closed): GET /api/v1/expand/<code>"
http GET "$G2/api/v1/expand/$CODE"
expect_problem 503

# Failing closed, the detailed report says unhealthy (503). Liveness stays
# 200: every gateway shares this Redis, so a load balancer taking them out
# would help nobody (a deliberate change: /health once answered 503 here).
step "G2 (fail closed): GET /health/details"
if poll_until 5 details_say "$G2" '.checks.redis.status == "down"'; then
	pass "the report says Redis is down"
else
	fail "the report says Redis is down" "${HTTP_BODY:0:300}"
fi
expect_status 503
expect_json '.status' unhealthy
step "G2 (fail closed): GET /health (liveness)"
http GET "$G2/health"
expect_status 200

# Threat: a password guesser who gets a free run while Redis is down
# (once: 40 logins in a row, all answered). The shipped login policy says
# "local": the limit holds, counted by this gateway alone for the length
# of the outage. Positive control: the first 20 are served.
step "G5 (login policy local): 40 logins while Redis is down"
: >"$TEST_DIR/outage-logins.txt"
for n in $(seq 1 40); do
	g5_login
	echo "$HTTP_STATUS $(header X-RateLimit-Status)" >>"$TEST_DIR/outage-logins.txt"
done
echo "# answers: $(sort "$TEST_DIR/outage-logins.txt" | uniq -c | awk '{ printf "%s %s x %s  ", $2, $3, $1 }')"
check_eq "exactly 20 are 200" 20 "$(grep -c '^200 ' "$TEST_DIR/outage-logins.txt")"
check_eq "exactly 20 are 429" 20 "$(grep -c '^429 ' "$TEST_DIR/outage-logins.txt")"
check_eq "every answer says X-RateLimit-Status: local" 40 "$(grep -c ' local$' "$TEST_DIR/outage-logins.txt")"
expect_problem 429
expect_header_match Retry-After '^[1-9][0-9]*$'

step "G5: a route with no policy of its own follows RATE_LIMIT_ON_REDIS_ERROR (open)"
http GET "$G5/api/v1/expand/$CODE"
expect_status 200
expect_header X-RateLimit-Status redis-unavailable

step "G2 (defaults fail closed): its login route still follows the login policy (local)"
http POST "$G2/api/v1/auth/login" "{\"username\":\"bob\",\"password\":\"$PASSWORD\"}"
expect_status 200
expect_header X-RateLimit-Status local

step "G5 metrics: every outcome counted"
http GET "$G5/metrics"
check_num 'gateway_rate_limit_decisions_total{policy="login-outage",decision="local_allowed"} == 20' \
	"$(metric_sum "$HTTP_BODY" gateway_rate_limit_decisions_total 'policy="login-outage"' 'decision="local_allowed"')" '==' 20
check_num 'gateway_rate_limit_decisions_total{policy="login-outage",decision="local_limited"} == 20' \
	"$(metric_sum "$HTTP_BODY" gateway_rate_limit_decisions_total 'policy="login-outage"' 'decision="local_limited"')" '==' 20
check_num 'gateway_rate_limit_decisions_total{policy="default",decision="open"} >= 1' \
	"$(metric_sum "$HTTP_BODY" gateway_rate_limit_decisions_total 'policy="default"' 'decision="open"')" '>=' 1
http GET "$G2/metrics"
check_num 'G2: gateway_rate_limit_decisions_total{policy="default",decision="closed"} >= 2' \
	"$(metric_sum "$HTTP_BODY" gateway_rate_limit_decisions_total 'policy="default"' 'decision="closed"')" '>=' 2

step "start the rate-limit Redis again, same port"
must_start "redis-server is back on port $LIMITS_REDIS_PORT" \
	start_redis "$LIMITS_REDIS_PORT" "$TEST_DIR/limits-redis"
LIMITS_REDIS_PID=$REDIS_PID

# counted_again GATEWAY TOKEN: an answer that was counted in Redis again.
counted_again() {
	http GET "$1/api/v1/users/me" '' -H "Authorization: Bearer $2"
	[ "$HTTP_STATUS" = 200 ] && has_header X-RateLimit-Remaining && ! has_header X-RateLimit-Status
}
step "G1 reconnects"
if poll_until 5 counted_again "$G1" "$ALICE_TOKEN"; then
	pass "X-RateLimit-Remaining again, no X-RateLimit-Status, after ${POLL_ELAPSED}s"
	check_num "within about a second" "$POLL_ELAPSED" '<' 2
else
	fail "X-RateLimit-Remaining again, no X-RateLimit-Status, within 5 s" \
		"last: $(_got_status), X-RateLimit-Status: '$(header X-RateLimit-Status)'"
fi
if poll_until 5 details_say "$G1" '.status == "healthy" and .checks.redis.status == "up"'; then
	pass "the report says healthy, Redis up"
else
	fail "the report says healthy, Redis up" "${HTTP_BODY:0:300}"
fi

step "G2 reconnects"
if poll_until 5 counted_again "$G2" "$CAROL_TOKEN"; then
	pass "200 with X-RateLimit-Remaining after ${POLL_ELAPSED}s"
else
	fail "200 with X-RateLimit-Remaining within 5 s" "last: $(_got_status) ${HTTP_BODY:0:200}"
fi
if poll_until 5 details_say "$G2" '.status == "healthy"'; then
	pass "the report says healthy again"
else
	fail "the report says healthy again" "${HTTP_BODY:0:300}"
fi
expect_status 200

# Redis is back: the shared count resumes where Redis had it (3), not
# where G5's local count ended (40). Which also shows the local counts
# stayed local.
g5_counted_again() {
	http GET "$G5/api/v1/expand/$CODE"
	[ "$HTTP_STATUS" = 200 ] && ! has_header X-RateLimit-Status
}
step "G5: the shared count resumes"
if poll_until 5 g5_counted_again; then
	pass "G5 counts in Redis again after ${POLL_ELAPSED}s"
else
	fail "G5 counts in Redis again within 5 s" "X-RateLimit-Status: '$(header X-RateLimit-Status)'"
fi
g5_login
expect_status 200
expect_header X-RateLimit-Remaining 16
expect_no_header X-RateLimit-Status

# ---------------------------------------------------------------------------
section "a service crashes (SIGKILL), and comes back"
# The gateway answers for a dead upstream itself: 502, naming the service,
# and only on that service's routes. Restarted on the same port, it is used
# again without touching the gateway.
# ---------------------------------------------------------------------------
step "kill the url-shortener"
kill_pid "$URL_SHORTENER_PID"

# expect_upstream NAME: the problem body names the upstream.
expect_upstream() {
	expect_json '.upstream' "$1"
}
step "POST /api/v1/shorten while it is dead"
http POST "$G1/api/v1/shorten" '{"url":"https://example.com/dead"}' -H "$AUTH"
expect_problem 502
expect_upstream url-shortener

step "GET /api/v1/expand/<code> while it is dead"
http GET "$G1/api/v1/expand/$CODE"
expect_problem 502
expect_upstream url-shortener

step "GET /r/<code> while it is dead"
http GET "$G1/r/$CODE"
expect_problem 502
expect_upstream url-shortener

step "GET /api/v1/users/me while it is dead"
http GET "$G1/api/v1/users/me" '' -H "$AUTH"
expect_status 200
expect_json '.username' alice

step "GET /health/details while it is dead"
if poll_until 5 details_say "$G1" '.checks["url-shortener"].status == "down"'; then
	pass "the report says the url-shortener is down"
else
	fail "the report says the url-shortener is down" "${HTTP_BODY:0:300}"
fi
expect_status 200
expect_json '.status' degraded
expect_json '.checks.users.status' up
check_num "checks[\"url-shortener\"].pool.errors > 0" \
	"$(jq -r '.checks["url-shortener"].pool.errors' <<<"$HTTP_BODY" 2>/dev/null)" '>' 0

step "restart the url-shortener on the same port"
must_start "url-shortener is healthy again" \
	start_service url-shortener "$URL_SHORTENER" "$TEST_DIR/url-shortener-2" \
	"$URL_SHORTENER_PORT" "${URL_SHORTENER_ENV[@]}"
URL_SHORTENER_PID=$SERVICE_PID

expand_answers() {
	http GET "$G1/api/v1/expand/$CODE"
	[ "$HTTP_STATUS" = 200 ]
}
step "the gateway heals by itself"
if poll_until 5 expand_answers; then
	pass "GET /api/v1/expand/<code> is 200 again after ${POLL_ELAPSED}s"
else
	fail "GET /api/v1/expand/<code> is 200 again within 5 s" "last: $(_got_status) ${HTTP_BODY:0:200}"
fi

# ---------------------------------------------------------------------------
section "a service hangs (SIGSTOP): the route's timeout ($EXPAND_TIMEOUT_MS ms in the test config)"
# A stopped process still has its socket: connections are accepted by the
# kernel, but nothing ever answers. Without a timeout the gateway worker
# would wait forever; with one the client gets a 504 naming the service.
# ---------------------------------------------------------------------------
step "SIGSTOP the url-shortener"
kill -STOP "$URL_SHORTENER_PID"

step "GET /api/v1/expand/<code> while it hangs"
http GET "$G1/api/v1/expand/$CODE"
expect_problem 504
expect_upstream url-shortener
TIMEOUT_S=$(awk -v ms="$EXPAND_TIMEOUT_MS" 'BEGIN { print ms / 1000 }')
check_num "answered in under timeout + 1.5 s (took ${HTTP_TIME}s)" "$HTTP_TIME" '<' \
	"$(awk -v t="$TIMEOUT_S" 'BEGIN { print t + 1.5 }')"
check_num "not before timeout - 0.2 s (took ${HTTP_TIME}s)" "$HTTP_TIME" '>' \
	"$(awk -v t="$TIMEOUT_S" 'BEGIN { print t - 0.2 }')"

step "GET /api/v1/users/me while the url-shortener hangs"
http GET "$G1/api/v1/users/me" '' -H "$AUTH"
expect_status 200
check_num "answered in under 0.5 s (took ${HTTP_TIME}s)" "$HTTP_TIME" '<' 0.5

step "SIGCONT the url-shortener"
kill -CONT "$URL_SHORTENER_PID"
if poll_until 5 expand_answers; then
	pass "GET /api/v1/expand/<code> is 200 again after ${POLL_ELAPSED}s"
else
	fail "GET /api/v1/expand/<code> is 200 again within 5 s" "last: $(_got_status) ${HTTP_BODY:0:200}"
fi

# ---------------------------------------------------------------------------
section "analytics is down: redirects do not wait for it"
# A redirect is the product; counting it is not. The url-shortener answers
# the 302 at once and queues the click for analytics, sending it in the
# background; while analytics is down the queue grows, and when it is back
# the queue drains and no click is lost.
# ---------------------------------------------------------------------------
# queue_depth: url_shortener_analytics_queue_depth on the service's own
# /metrics (operations endpoints are not routed through the gateway).
queue_depth() {
	metric_sum "$(curl -s --max-time 5 "$URL_SHORTENER_BASE/metrics")" \
		url_shortener_analytics_queue_depth
}
queue_is_empty() {
	[ "$(queue_depth)" = 0 ]
}
queue_is_not_empty() {
	local depth
	depth=$(queue_depth)
	[ -n "$depth" ] && [ "$depth" != 0 ]
}
# clicks_now: the click count analytics has for CODE now.
clicks_now() {
	http GET "$G1/api/v1/analytics/$CODE" '' -H "$AUTH"
	jq -r '.clicks // empty' <<<"$HTTP_BODY" 2>/dev/null
}

step "before"
if poll_until 10 queue_is_empty; then
	pass "the analytics queue is empty"
else
	fail "the analytics queue is empty" "url_shortener_analytics_queue_depth is '$(queue_depth)'"
fi
CLICKS_BEFORE=$(clicks_now)
check_match "analytics counts the clicks so far" '^[0-9]+$' "$CLICKS_BEFORE"
CLICKS_BEFORE=${CLICKS_BEFORE:-0}

step "stop analytics"
stop_pid "$ANALYTICS_PID"
check_exits_0 "analytics exits 0 on SIGTERM" "$STOPPED_STATUS"

for click in 1 2 3; do
	step "GET /r/<code> while analytics is down, click $click"
	http GET "$G1/r/$CODE" '' -H "Referer: $REFERRER" -A "$FIREFOX"
	expect_status 302
	expect_header Location "$TARGET"
	check_num "answered in under 0.5 s (took ${HTTP_TIME}s)" "$HTTP_TIME" '<' 0.5
done

step "GET /api/v1/analytics/<code> while analytics is down"
http GET "$G1/api/v1/analytics/$CODE" '' -H "$AUTH"
expect_problem 502
expect_upstream analytics

step "the url-shortener's queue"
if poll_until 3 queue_is_not_empty; then
	pass "url_shortener_analytics_queue_depth > 0 ($(queue_depth))"
else
	fail "url_shortener_analytics_queue_depth > 0" "it is '$(queue_depth)'"
fi

step "start analytics again, same port"
must_start "analytics is healthy again" \
	start_service analytics "$ANALYTICS" "$TEST_DIR/analytics-2" "$ANALYTICS_PORT" "${ANALYTICS_ENV[@]}"
ANALYTICS_PID=$SERVICE_PID

step "the queue drains"
if poll_until 30 queue_is_empty; then
	pass "url_shortener_analytics_queue_depth is 0 after ${POLL_ELAPSED}s"
else
	fail "url_shortener_analytics_queue_depth is 0 within 30 s" "it is '$(queue_depth)'"
fi
if poll_until 10 clicks_are $((CLICKS_BEFORE + 3)); then
	pass "all 3 clicks are counted ($((CLICKS_BEFORE + 3)))"
else
	fail "all 3 clicks are counted ($((CLICKS_BEFORE + 3)))" "analytics says: ${HTTP_BODY:0:300}"
fi
URL_SHORTENER_METRICS=$(curl -s --max-time 5 "$URL_SHORTENER_BASE/metrics")
check_num 'url_shortener_analytics_events_sent_total > 0' \
	"$(metric_sum "$URL_SHORTENER_METRICS" url_shortener_analytics_events_sent_total)" '>' 0

# ---------------------------------------------------------------------------
section "a bad gateway config does not start"
# A typo in the route file must stop the gateway at start-up with the file,
# the field and the problem, not leave a route that fails at 3 a.m.
# ---------------------------------------------------------------------------
# refuses_config NAME PATTERN: the gateway, given $TEST_DIR/NAME as its
# config, exits non-zero at once and its stderr matches PATTERN (grep -E).
# timeout stops it if it wrongly starts serving.
refuses_config() {
	local name=$1 pattern=$2 status var env_args=()
	for var in "${PASS_THROUGH_ENV[@]}"; do
		[ -n "${!var:-}" ] && env_args+=("$var=${!var}")
	done
	timeout --kill-after=2 10 env -i "${env_args[@]}" "${GATEWAY_ENV[@]}" \
		PORT="$(free_port)" BIND_ADDRESS=127.0.0.1 GATEWAY_CONFIG="$TEST_DIR/$name" \
		"$GATEWAY" >"$TEST_DIR/refused-$name.out" 2>"$TEST_DIR/refused-$name.err"
	status=$?
	if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
		fail "exits non-zero" "it was still running after 10 s"
	elif [ "$status" -eq 0 ]; then
		fail "exits non-zero" "exit status 0"
	else
		pass "exits non-zero ($status)"
	fi
	if grep -q -E -- "$pattern" "$TEST_DIR/refused-$name.err"; then
		pass "stderr says /$pattern/"
	else
		fail "stderr says /$pattern/" "stderr: $(head -c 300 "$TEST_DIR/refused-$name.err")"
	fi
}

step 'routes[2].upstream is "billing"'
jq '.routes[2].upstream = "billing"' "$GATEWAY_CONFIG_FILE" >"$TEST_DIR/unknown-upstream.json"
refuses_config unknown-upstream.json 'unknown-upstream\.json'
refuses_config unknown-upstream.json 'routes\[2\]\.upstream'

step "a file that is not JSON"
printf '{ "upstreams": { "users": ' >"$TEST_DIR/not-json.json"
refuses_config not-json.json 'not-json\.json'

step "a file that does not exist"
refuses_config missing.json 'missing\.json'

# ---------------------------------------------------------------------------
section "gateway metrics"
# ---------------------------------------------------------------------------
step "G1 GET /metrics"
http GET "$G1/metrics"
expect_status 200
METRICS=$HTTP_BODY
if promtool check metrics <<<"$METRICS" >"$TEST_DIR/promtool.txt" 2>&1; then
	pass "promtool check metrics accepts it"
else
	fail "promtool check metrics accepts it" "$(head -c 500 "$TEST_DIR/promtool.txt")"
fi
# The service label is the upstream a route proxies to: one dashboard
# shows which service the traffic (and the errors) went to.
check_num 'http_requests_total{service="url-shortener"} > 0' \
	"$(metric_sum "$METRICS" http_requests_total 'service="url-shortener"')" '>' 0
check_num 'http_requests_total{service="url-shortener",status_code="502"} > 0' \
	"$(metric_sum "$METRICS" http_requests_total 'service="url-shortener"' 'status_code="502"')" '>' 0
for upstream in "${UPSTREAMS[@]}"; do
	label="upstream=\"$upstream\""
	check_num "gateway_upstream_requests_total{$label} > 0" \
		"$(metric_sum "$METRICS" gateway_upstream_requests_total "$label")" '>' 0
	check_num "gateway_upstream_request_duration_seconds_count{$label} > 0" \
		"$(metric_sum "$METRICS" gateway_upstream_request_duration_seconds_count "$label")" '>' 0
	check_num "gateway_upstream_connections_created_total{$label} > 0" \
		"$(metric_sum "$METRICS" gateway_upstream_connections_created_total "$label")" '>' 0
	check_match "gateway_upstream_connections{$label,state=\"idle\"} is there" '^[0-9.e+]+$' \
		"$(metric_sum "$METRICS" gateway_upstream_connections "$label" 'state="idle"')"
	check_match "gateway_upstream_connections{$label,state=\"in_use\"} is there" '^[0-9.e+]+$' \
		"$(metric_sum "$METRICS" gateway_upstream_connections "$label" 'state="in_use"')"
done
check_num 'gateway_upstream_request_duration_seconds_bucket{upstream="users",le="+Inf"} > 0' \
	"$(metric_sum "$METRICS" gateway_upstream_request_duration_seconds_bucket 'upstream="users"' 'le="+Inf"')" '>' 0
# The crash and the restart above closed connections and failed to open some.
check_num 'gateway_upstream_connections_closed_total{upstream="url-shortener"} > 0' \
	"$(metric_sum "$METRICS" gateway_upstream_connections_closed_total 'upstream="url-shortener"')" '>' 0
check_num 'gateway_upstream_connection_errors_total{upstream="url-shortener"} > 0' \
	"$(metric_sum "$METRICS" gateway_upstream_connection_errors_total 'upstream="url-shortener"')" '>' 0
check_num 'gateway_rate_limit_decisions_total{policy="login",decision="allowed"} > 0' \
	"$(metric_sum "$METRICS" gateway_rate_limit_decisions_total 'policy="login"' 'decision="allowed"')" '>' 0

# ---------------------------------------------------------------------------
section "a scripted upstream: any bytes, size limits, and one retry"
# The services above speak small JSON. A gateway must also pass any bytes
# through unchanged, refuse what is too big in either direction, and retry
# only what is safe to send twice. tests/upstream_fixture.py is an upstream
# written for that: it echoes bodies, sends bodies of any size, drops a
# keep-alive connection just as the gateway reuses it, and counts what
# reached it (GET /stats), so a check can see what the gateway sent, not
# only what came back. Gateway G4 serves it alone, with one worker thread
# (so every request goes out through the same curl handle and pool), a
# request-body limit of 64 KiB and a response limit of 64 KiB.
# ---------------------------------------------------------------------------
FIXTURE_PORT=$(free_port)
G4_PORT=$(free_port)
FIXTURE="http://127.0.0.1:$FIXTURE_PORT"
G4="http://127.0.0.1:$G4_PORT"
FIXTURE_LIMIT=65536 # MAX_BODY_BYTES and pool.max_response_bytes
FIXTURE_CONFIG_FILE="$TEST_DIR/gateway-fixture.json"
jq -n --arg url "$FIXTURE" --argjson limit "$FIXTURE_LIMIT" '{
	upstreams: {fixture: {url: $url}},
	pool: {max_response_bytes: $limit},
	routes: [{prefix: "/fixture", upstream: "fixture", rewrite: "/",
	          access: "public", timeout_ms: 3000}]}' >"$FIXTURE_CONFIG_FILE"

step "start-up"
must_start "the upstream fixture is ready on $FIXTURE" \
	start_fixture "$TEST_DIR/fixture" "$FIXTURE_PORT"
must_start "gateway G4 (WORKER_THREADS=1, MAX_BODY_BYTES=$FIXTURE_LIMIT) is healthy on $G4" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-4" "$G4_PORT" "${GATEWAY_ENV[@]}" \
	GATEWAY_CONFIG="$FIXTURE_CONFIG_FILE" WORKER_THREADS=1 LOOP_THREADS=1 MAX_BODY_BYTES="$FIXTURE_LIMIT"
G4_PID=$GATEWAY_PID

# fixture_count "METHOD /path": how many such requests reached the fixture.
fixture_count() {
	curl -s --max-time 5 "$FIXTURE/stats" | jq -r --arg key "$1" '.[$key] // 0'
}
# sha256_of FILE
sha256_of() {
	sha256sum "$1" | cut -d ' ' -f 1
}
# has_bytes FILE: FILE holds at least one NUL, one CR and one LF byte.
has_bytes() {
	[ "$(tr -cd '\000' <"$1" | wc -c)" -gt 0 ] && [ "$(tr -cd '\r' <"$1" | wc -c)" -gt 0 ] &&
		[ "$(tr -cd '\n' <"$1" | wc -c)" -gt 0 ]
}

# 1. Binary-safe bodies. Random bytes hold NULs (a C string would end
#    there) and CR/LF (which look like the end of a header): a proxy that
#    handles the body as text, or reads only up to the first NUL, changes
#    it. The hash is taken three times: of the file sent, of what the
#    fixture received (X-Body-Sha256) and of what came back.
RANDOM_BODY="$TEST_DIR/random-40000.bin"
head -c 40000 /dev/urandom >"$RANDOM_BODY"
RANDOM_SHA=$(sha256_of "$RANDOM_BODY")
step "40000 random bytes"
check_true "they contain NUL, CR and LF bytes" has_bytes "$RANDOM_BODY"
for method in POST PUT; do
	step "$method /fixture/echo with 40000 random bytes"
	http "$method" "$G4/fixture/echo" "@$RANDOM_BODY" -H 'Content-Type: application/octet-stream'
	expect_status 200
	expect_header X-Body-Sha256 "$RANDOM_SHA"
	check_eq "the body that came back has the sha256 of the one sent" "$RANDOM_SHA" \
		"$(sha256_of "$HTTP_BODY_FILE")"
	expect_header Content-Type application/octet-stream
done

# 2. Size limits, both ways. A request body over MAX_BODY_BYTES is refused
#    by the gateway (413) before anything goes upstream: the fixture's
#    count of POST /echo stays at the 1 of step 1. A response over
#    pool.max_response_bytes is not passed on half-read: 502 naming the
#    upstream. Just under the limit, every byte arrives.
step "POST /fixture/echo with 70000 bytes (over MAX_BODY_BYTES=$FIXTURE_LIMIT)"
head -c 70000 /dev/urandom >"$TEST_DIR/random-70000.bin"
http POST "$G4/fixture/echo" "@$TEST_DIR/random-70000.bin" -H 'Content-Type: application/octet-stream'
expect_problem 413
check_eq "it never reached the fixture (POST /echo count still 1)" 1 "$(fixture_count 'POST /echo')"

# The same limits for a chunked upload (Transfer-Encoding: chunked, no
# Content-Length): the gateway grows its buffer as chunks arrive, so the
# length is only known at the end. Every byte must arrive (hash through
# the fixture); exactly the limit passes; one byte over is a 413 that never
# reaches the fixture.
step "POST /fixture/echo, 40000 random bytes chunked"
http POST "$G4/fixture/echo" "@$RANDOM_BODY" -H 'Content-Type: application/octet-stream' \
	-H 'Transfer-Encoding: chunked'
expect_status 200
expect_header X-Body-Sha256 "$RANDOM_SHA"
check_eq "the fixture got it whole (POST /echo count 2)" 2 "$(fixture_count 'POST /echo')"

step "POST /fixture/echo, exactly $FIXTURE_LIMIT bytes chunked"
head -c "$FIXTURE_LIMIT" "$TEST_DIR/random-70000.bin" >"$TEST_DIR/random-limit.bin"
http POST "$G4/fixture/echo" "@$TEST_DIR/random-limit.bin" -H 'Content-Type: application/octet-stream' \
	-H 'Transfer-Encoding: chunked'
expect_status 200
expect_header X-Body-Sha256 "$(sha256_of "$TEST_DIR/random-limit.bin")"

step "POST /fixture/echo, $((FIXTURE_LIMIT + 1)) bytes chunked"
head -c "$((FIXTURE_LIMIT + 1))" "$TEST_DIR/random-70000.bin" >"$TEST_DIR/random-over.bin"
http POST "$G4/fixture/echo" "@$TEST_DIR/random-over.bin" -H 'Content-Type: application/octet-stream' \
	-H 'Transfer-Encoding: chunked'
expect_problem 413
check_eq "it never reached the fixture (POST /echo count still 3)" 3 "$(fixture_count 'POST /echo')"

step "GET /fixture/big?bytes=70000 (over max_response_bytes=$FIXTURE_LIMIT)"
http GET "$G4/fixture/big?bytes=70000"
expect_problem 502
expect_json '.upstream' fixture
expect_jq "detail says over the size limit" '.detail | test("over the size limit")'

step "GET /fixture/big?bytes=60000"
http GET "$G4/fixture/big?bytes=60000"
expect_status 200
check_eq "exactly 60000 bytes" 60000 "$(wc -c <"$HTTP_BODY_FILE")"

# 3. One retry, idempotent methods only. An upstream may close an idle
#    keep-alive connection at the moment the gateway sends on it; the
#    request then gets no answer at all. For GET that is safe to send
#    again, once, on a new connection. A POST is not: the upstream may
#    have acted on it before the connection went (a link created, a
#    payment taken), so the client gets 502 and decides.
#
#    /flaky answers the first request of a method on each connection and
#    drops the second of that method on the same connection after reading
#    it whole. Closing only after the request arrived matters: libcurl
#    checks a pooled connection before reusing it and quietly opens a new
#    one if the peer has already closed it, which would test libcurl, not
#    the gateway. With WORKER_THREADS=1 the second request goes out on the
#    connection the first one used.
#
#    Counting per method is what lets the POST part follow the GET part
#    without a restart: the first POST /flaky is answered even though it
#    travels on the connection the GET retry opened, and the second POST
#    is then the one that meets a dropped connection - the case that must
#    not be retried. (Counting every request, the first POST would already
#    be dropped.)
step "GET /fixture/flaky, twice"
http GET "$G4/fixture/flaky"
expect_status 200
http GET "$G4/fixture/flaky"
expect_status 200
expect_header X-Fixture-Request-On-Connection 1 # the retry had a connection of its own
check_eq "the fixture saw 3 GET /flaky (1 + the dropped one + the retry)" 3 \
	"$(fixture_count 'GET /flaky')"

step "POST /fixture/flaky, twice"
http POST "$G4/fixture/flaky" '{}'
expect_status 200
http POST "$G4/fixture/flaky" '{}'
expect_problem 502
expect_json '.upstream' fixture
check_eq "the fixture saw exactly 2 POST /flaky (no retry)" 2 "$(fixture_count 'POST /flaky')"

# ---------------------------------------------------------------------------
section "how an upstream frames its answer: the gateway's own HTTP client"
# The gateway reads answers with a client of its own (upstream_http.c):
# chunked bodies (extensions and trailers too), a 100 before the real
# answer, a body that runs to the close; and it refuses what could be read
# two ways - Content-Length with chunked, two different lengths - or an
# answer cut off, as a 502, never passing half of it on. The fixture
# writes each answer raw and closes the connection, so none may be reused.
# ---------------------------------------------------------------------------
step "GET /fixture/framing/chunked"
http GET "$G4/fixture/framing/chunked"
expect_status 200
check_eq "the body, chunks joined" "hello, world" "$HTTP_BODY"
expect_no_header Transfer-Encoding
step "GET /fixture/framing/continue (100, then 200)"
http GET "$G4/fixture/framing/continue"
expect_status 200
check_eq "the real answer's body" after "$HTTP_BODY"
step "GET /fixture/framing/until-close (no length)"
http GET "$G4/fixture/framing/until-close"
expect_status 200
check_eq "the body up to the close" "to the end" "$HTTP_BODY"
for kind in both two-lengths short; do
	step "GET /fixture/framing/$kind"
	http GET "$G4/fixture/framing/$kind"
	expect_problem 502
	expect_json '.upstream' fixture
done
step "and the next request is served as usual (nothing left in step)"
http GET "$G4/fixture/framing/chunked"
check_eq "hello, world again" "hello, world" "$HTTP_BODY"

# ---------------------------------------------------------------------------
section "what reaches an upstream: exactly the client's headers, and the gateway's own"
# tests/upstream_fixture.py's /headers answers with every header line it
# received, so these checks see what the gateway passed on, not only what
# came back. Gateway G6 serves it with two routes, /fixture (public) and
# /fixture-auth (authenticated), believes X-Forwarded-For from 127.0.0.1
# (TRUSTED_PROXIES: the test plays the proxy), and keeps its detailed
# health report for a minute (HEALTH_CHECK_INTERVAL_MS=60000). The hostile
# requests go over raw sockets (python3), byte for byte, not through curl,
# which would tidy some of them up.
# ---------------------------------------------------------------------------
G6_PORT=$(free_port)
G6="http://127.0.0.1:$G6_PORT"
HEADERS_CONFIG_FILE="$TEST_DIR/gateway-headers.json"
jq -n --arg url "$FIXTURE" '{
	upstreams: {fixture: {url: $url}},
	routes: [{prefix: "/fixture-auth", upstream: "fixture", rewrite: "/", access: "authenticated"},
	         {prefix: "/fixture", upstream: "fixture", rewrite: "/", access: "public"},
	         {prefix: "/cached-auth", upstream: "fixture", rewrite: "/", access: "authenticated",
	          cache: {ttl_seconds: 60}},
	         {prefix: "/cached", upstream: "fixture", rewrite: "/", access: "public",
	          cache: {ttl_seconds: 60}}]}' \
	>"$HEADERS_CONFIG_FILE"
must_start "gateway G6 (TRUSTED_PROXIES=127.0.0.1, HEALTH_CHECK_INTERVAL_MS=60000) is healthy on $G6" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-6" "$G6_PORT" "${GATEWAY_ENV[@]}" \
	GATEWAY_CONFIG="$HEADERS_CONFIG_FILE" TRUSTED_PROXIES=127.0.0.1 HEALTH_CHECK_INTERVAL_MS=60000
G6_PID=$GATEWAY_PID

# raw PORT REQUEST: sends REQUEST (printf %b escapes: \r\n, \x01) on a new
# connection as is, reads until the server closes (the requests say
# Connection: close); RAW_STATUS is the status code ("000": no answer),
# RAW_BODY the body.
raw() {
	local out
	out=$(printf '%b' "$2" | python3 -c '
import socket, sys
data = sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(data)
chunks = []
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
except (socket.timeout, ConnectionResetError):
    pass
reply = b"".join(chunks)
head, _, body = reply.partition(b"\r\n\r\n")
status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "000"
sys.stdout.write(status + "\n" + body.decode("utf-8", "replace"))' "$1" 2>"$TEST_DIR/raw.err")
	RAW_STATUS=${out%%$'\n'*}
	RAW_STATUS=${RAW_STATUS:-000}
	RAW_BODY=${out#*$'\n'}
}
# seen NAME: the values of header NAME (any case) the fixture received in
# the last answer, one per line.
seen() {
	jq -r --arg n "${1,,}" '.headers[] | select(.[0] | ascii_downcase == $n) | .[1]' \
		<<<"$RAW_BODY" 2>/dev/null
}
# seen_count NAME: how many NAME lines the fixture received.
seen_count() {
	seen "$1" | grep -c . || true
}
HEAD_END='Host: 127.0.0.1\r\nConnection: close\r\n'

# Threat: a second Connection line names a header the client wants
# dropped on the way (RFC 9110 7.6.1: every token of every Connection line
# is hop-by-hop) - here X-Secret. Positive control: X-Other goes through.
step "two Connection lines (keep-alive, then X-Secret)"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}Connection: X-Secret\r\nX-Secret: s3cret\r\nX-Other: kept\r\n\r\n"
check_eq "status 200" 200 "$RAW_STATUS"
check_eq "the fixture got no X-Secret" 0 "$(seen_count X-Secret)"
check_eq "the fixture got X-Other: kept (positive control)" kept "$(seen X-Other)"

# Threat: X_User_Id reaches a service that reads '_' as '-' (nginx with
# underscores_in_headers, CGI, WSGI): the identity strip must catch every
# spelling. Positive control: the verified X-User-Id alice arrives, once.
step "alice's token with X_User_Id: mallory, x_user_tier: premium, X-User_Role: admin"
raw "$G6_PORT" "GET /fixture-auth/headers HTTP/1.1\r\n${HEAD_END}Authorization: Bearer $ALICE_TOKEN\r\nX_User_Id: mallory\r\nx_user_tier: premium\r\nX-User_Role: admin\r\n\r\n"
check_eq "status 200" 200 "$RAW_STATUS"
check_eq "X-User-Id: alice, and only that" alice "$(seen X-User-Id)"
check_eq "X-User-Tier: free, and only that" free "$(seen X-User-Tier)"
check_eq "no X_User_Id, x_user_tier or X-User_Role line" 0 \
	"$(jq '[.headers[] | select(.[0] | ascii_downcase | test("^x.user.(id|tier|role)$")) | select(.[0] | test("_"))] | length' <<<"$RAW_BODY")"
step "no token, X_User_Id: mallory on a public route"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X_User_Id: mallory\r\n\r\n"
check_eq "status 200" 200 "$RAW_STATUS"
check_eq "no user header of any spelling" 0 \
	"$(jq '[.headers[] | select(.[0] | ascii_downcase | test("^x.user"))] | length' <<<"$RAW_BODY")"

# A long header line is passed on whole, or refused: never cut short
# (once: silently truncated at 1024 bytes). Whole up to the 16 KiB a
# request head may take on either core; past that the core refuses it.
for size in 2000 15000; do
	step "a $size-byte header value"
	raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Long: $(head -c "$size" /dev/zero | tr '\0' a)\r\n\r\n"
	check_eq "status 200" 200 "$RAW_STATUS"
	check_eq "the fixture got all $size bytes" "$size" "$(seen X-Long | tr -d '\n' | wc -c)"
done
step "a 20000-byte header value (over the 16 KiB head)"
HEADERS_BEFORE=$(fixture_count 'GET /headers')
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Long: $(head -c 20000 /dev/zero | tr '\0' b)\r\n\r\n"
check_match "refused (4xx): $RAW_STATUS" '^4[0-9][0-9]$' "$RAW_STATUS"
check_eq "it never reached the fixture" "$HEADERS_BEFORE" "$(fixture_count 'GET /headers')"

# libcurl adds Content-Type: application/x-www-form-urlencoded to a POST
# without one, and Accept: */* to any request without one. The upstream
# must get what the client sent.
step "POST without Content-Type or Accept"
raw "$G6_PORT" "POST /fixture/headers HTTP/1.1\r\n${HEAD_END}Content-Length: 2\r\n\r\n{}"
check_eq "status 200" 200 "$RAW_STATUS"
check_eq "no Content-Type arrived" 0 "$(seen_count Content-Type)"
check_eq "no Accept arrived" 0 "$(seen_count Accept)"
check_eq "the 2-byte body arrived" 2 "$(jq -r '.body_bytes' <<<"$RAW_BODY")"
step "POST with Content-Type: application/json and Accept: text/plain (positive control)"
raw "$G6_PORT" "POST /fixture/headers HTTP/1.1\r\n${HEAD_END}Content-Type: application/json\r\nAccept: text/plain\r\nContent-Length: 2\r\n\r\n{}"
check_eq "Content-Type arrived as sent" application/json "$(seen Content-Type)"
check_eq "Accept arrived as sent" text/plain "$(seen Accept)"

# The same with the real users service: it takes a JSON login without a
# Content-Type (direct: 200), so through the gateway it must too (once:
# 415, for a Content-Type the client never sent).
step "a JSON login without Content-Type, straight to users"
http POST "http://127.0.0.1:$USERS_PORT/auth/login" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}" \
	-H 'Content-Type:'
expect_status 200
step "the same login through the gateway"
http POST "$G1/api/v1/auth/login" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}" -H 'Content-Type:'
expect_status 200
expect_json '.username' alice

# Threat: a control byte in a header value (here 0x01) passed on to an
# upstream that reads it differently. Refused before anything is sent
# (the event loop's parser refuses it itself; on civetweb the proxy does).
step "a header value with a control byte"
HEADERS_BEFORE=$(fixture_count 'GET /headers')
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Odd: a\x01b\r\n\r\n"
check_eq "status 400" 400 "$RAW_STATUS"
check_eq "it never reached the fixture" "$HEADERS_BEFORE" "$(fixture_count 'GET /headers')"

# Threat: whoever holds the signing key puts CR LF into a token's sub; the
# gateway would copy it into X-User-Id and the upstream would read a
# header line of the token maker's choosing. sub must be a username and
# the tier a known one, else 401. Positive control: a script-built token
# for alice goes through.
step "a signed token whose sub carries CR LF"
NOW=$(date +%s)
CRLF_TOKEN=$(make_token HS256 "$SECRET" "$(jq -cn --argjson now "$NOW" \
	'{sub: "alice\r\nX-Injected: 1", tier: "free", iat: $now, exp: ($now + 600)}')")
HEADERS_BEFORE=$(fixture_count 'GET /headers')
http GET "$G6/fixture-auth/headers" '' -H "Authorization: Bearer $CRLF_TOKEN"
expect_problem 401
check_eq "it never reached the fixture" "$HEADERS_BEFORE" "$(fixture_count 'GET /headers')"
step "a signed token with tier \"admin\""
http GET "$G6/fixture-auth/headers" '' -H "Authorization: Bearer $(make_token HS256 "$SECRET" \
	"$(jq -cn --argjson now "$NOW" '{sub: "alice", tier: "admin", iat: $now, exp: ($now + 600)}')")"
expect_problem 401
step "a script-built token for alice (positive control)"
http GET "$G6/fixture-auth/headers" '' -H "Authorization: Bearer $(make_token HS256 "$SECRET" \
	"$(jq -cn --argjson now "$NOW" '{sub: "alice", tier: "free", iat: $now, exp: ($now + 600)}')")"
expect_status 200
RAW_BODY=$HTTP_BODY
check_eq "X-User-Id: alice" alice "$(seen X-User-Id)"
check_eq "no X-Injected" 0 "$(seen_count X-Injected)"

# Threat: 60 headers from a client push the gateway's own X-User-Id past
# the 64 a civetweb service reads: the service answered 401 "no caller
# identity" for an authenticated caller. The gateway caps a client's
# headers (MAX_REQUEST_HEADERS, 48) so its own always fit. Positive
# control: 40 headers are served. (Cache-Control: no-cache, so that the
# request is passed on: a cached answer passes nothing on.)
# many_headers N: curl arguments for N headers X-Filler-1..N.
many_headers() {
	local i
	for i in $(seq 1 "$1"); do
		printf -- '-H\nX-Filler-%d: %d\n' "$i" "$i"
	done
}
step "alice with 40 headers more"
mapfile -t FILLERS < <(many_headers 40)
http GET "$G1/api/v1/users/me" '' -H "$AUTH" -H 'Cache-Control: no-cache' "${FILLERS[@]}"
expect_status 200
expect_json '.username' alice
step "alice with 60 headers more"
mapfile -t FILLERS < <(many_headers 60)
http GET "$G1/api/v1/users/me" '' -H "$AUTH" -H 'Cache-Control: no-cache' "${FILLERS[@]}"
expect_problem 431

# ---------------------------------------------------------------------------
section "X-Forwarded-For: every line, and addresses only"
# Threat: behind a proxy that appends its own X-Forwarded-For line rather
# than extending the client's, a gateway that reads only the first line
# reads the client's own words and lets it pick its rate-limit key; and a
# value that is no address ("deadbeef") would be a fresh key per request.
# G6 trusts 127.0.0.1 (the test, playing the proxy); what it decided is the
# X-Forwarded-For it sends on, which the fixture shows.
# ---------------------------------------------------------------------------
step "one line, \"198.51.100.1, 203.0.113.9\" (positive control)"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n\r\n"
check_eq "the client is the right-most untrusted entry" 203.0.113.9 "$(seen X-Forwarded-For)"

step "two lines: the client's 9.9.9.9, then the proxy's 203.0.113.7"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
check_eq "status 200" 200 "$RAW_STATUS"
check_eq "the client is 203.0.113.7" 203.0.113.7 "$(seen X-Forwarded-For)"

step "X-Forwarded-For: deadbeef"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Forwarded-For: deadbeef\r\n\r\n"
check_eq "not an address: the walk ends at the proxy, 127.0.0.1" 127.0.0.1 "$(seen X-Forwarded-For)"

step "X-Forwarded-For: 203.0.113.7, deadbeef"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Forwarded-For: 203.0.113.7, deadbeef\r\n\r\n"
check_eq "nothing left of garbage is read" 127.0.0.1 "$(seen X-Forwarded-For)"

step "X-Forwarded-For: 2001:DB8:0::1"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Forwarded-For: 2001:DB8:0::1\r\n\r\n"
check_eq "IPv6, one canonical spelling" 2001:db8::1 "$(seen X-Forwarded-For)"

step "the access log keys the client the same way"
raw "$G6_PORT" "GET /fixture/headers HTTP/1.1\r\n${HEAD_END}X-Request-Id: phase2-xff-two-lines\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
if poll_until 5 has_log_line "$TEST_DIR/gateway-6.out" phase2-xff-two-lines; then
	check_eq "client_ip 203.0.113.7" 203.0.113.7 \
		"$(log_line "$TEST_DIR/gateway-6.out" phase2-xff-two-lines | jq -r '.client_ip')"
else
	fail "G6 logged phase2-xff-two-lines" "no such line in $TEST_DIR/gateway-6.out"
fi

# ---------------------------------------------------------------------------
section "notifications: a link passes 3 and 5 clicks, and its owner is told"
# The fourth service. analytics (CLICK_MILESTONES=3,5 here) posts to
# notifications' /internal/notifications when a click takes a link past a
# milestone; alice reads hers through the gateway. The id names the event
# ("<code>-clicks-3"), so sending it twice stores it once; while
# notifications is down, the next click sends it again.
# ---------------------------------------------------------------------------
# notified_of ID [TOKEN]: GET /api/v1/notifications has ID.
notified_of() {
	http GET "$G1/api/v1/notifications" '' -H "Authorization: Bearer ${2:-$ALICE_TOKEN}"
	jq -e --arg id "$1" 'any(.notifications[]; .id == $id)' <<<"$HTTP_BODY" >/dev/null 2>&1
}
# click_n N CODE: N redirects through G1.
click_n() {
	local i
	for i in $(seq 1 "$1"); do
		curl -s -o /dev/null "$G1/r/$2"
	done
}
step "alice shortens a link and it is clicked twice: nothing yet"
http POST "$G1/api/v1/shorten" '{"url":"https://example.com/notify-me"}' -H "$AUTH"
expect_status 201
NCODE=$(jq -r '.code // "missing"' <<<"$HTTP_BODY")
click_n 2 "$NCODE"
http GET "$G1/api/v1/notifications" '' -H "$AUTH"
expect_status 200
expect_jq "no notification about $NCODE" "[.notifications[] | select(.link == \"$NCODE\")] == []"

step "notifications goes down; the third click passes 3"
stop_pid "$NOTIFICATIONS_PID"
click_n 1 "$NCODE"
if poll_until 10 grep -q "notifying alice of $NCODE-clicks-3" "$TEST_DIR"/analytics*.err; then
	pass "analytics says it could not notify, and will send again"
else
	fail "analytics says it could not notify" "no such line in $TEST_DIR/analytics*.err"
fi

step "notifications is back; the fourth click sends the missed one"
must_start "notifications is healthy again" \
	start_service notifications "$NOTIFICATIONS" "$TEST_DIR/notifications-2" "$NOTIFICATIONS_PORT" \
	"${NOTIFICATIONS_ENV[@]}"
NOTIFICATIONS_PID=$SERVICE_PID
click_n 1 "$NCODE"
check_true "alice has \"$NCODE passed 3 clicks\" (within 10 s)" poll_until 10 notified_of "$NCODE-clicks-3"
expect_jq "its fields" "[.notifications[] | select(.id == \"$NCODE-clicks-3\")][0]
	| .kind == \"link_clicks\" and .link == \"$NCODE\" and (.text | test(\"passed 3 clicks\"))
	and (.at | test(\"^[0-9]{4}-[0-9]{2}-[0-9]{2}T\"))"

step "the fifth click passes 5"
click_n 1 "$NCODE"
check_true "alice has \"$NCODE passed 5 clicks\" (within 10 s)" poll_until 10 notified_of "$NCODE-clicks-5"
expect_jq "newest first, each once" \
	"[.notifications[] | select(.link == \"$NCODE\") | .id] == [\"$NCODE-clicks-5\", \"$NCODE-clicks-3\"]"
http GET "$G1/api/v1/notifications" '' -H "Authorization: Bearer $BOB_TOKEN"
expect_status 200
expect_jq "bob has none of alice's" "[.notifications[] | select(.link == \"$NCODE\")] == []"

step "POST /internal/notifications: for services, not through the gateway"
NOTIFY="http://127.0.0.1:$NOTIFICATIONS_PORT/internal/notifications"
http POST "$NOTIFY" "{\"id\":\"$NCODE-clicks-5\",\"user\":\"alice\",\"kind\":\"link_clicks\",\"text\":\"again\"}"
expect_status 200
expect_json '.stored_before' true
notified_of "$NCODE-clicks-5"
expect_jq "sent twice, stored once (the first text kept)" \
	"[.notifications[] | select(.id == \"$NCODE-clicks-5\")] | length == 1 and (.[0].text | test(\"passed 5\"))"
for bad in '{"id":"a b","user":"alice","kind":"k","text":"t"}' \
	'{"id":"x1","user":"Alice!","kind":"k","text":"t"}' \
	'{"id":"x1","user":"alice","kind":"Kind","text":"t"}' \
	'{"id":"x1","user":"alice","kind":"k","text":""}' \
	'{"id":"x1","user":"alice","kind":"k","text":"bell\u0007"}' \
	'{"id":"x1","user":"alice","kind":"k","text":"t","link":"no/slash"}' \
	'{"id":"x1","user":"alice","kind":"k","text":"t","at":-1}' \
	'{"user":"alice","kind":"k","text":"t"}'; do
	http POST "$NOTIFY" "$bad"
	check_eq "400 for $bad" 400 "$HTTP_STATUS"
done
http POST "$G1/internal/notifications" '{"id":"x1","user":"alice","kind":"k","text":"t"}' -H "$AUTH"
expect_problem 404
http GET "$G1/api/v1/notifications"
expect_problem 401

# ---------------------------------------------------------------------------
section "the response cache: repeated reads from Redis, never one user's for another"
# A route opts in with "cache" in gateway.json (kit/cache.h): /users/me in
# the shipped file, /cached and /cached-auth on G6 here, in front of the
# fixture's /cacheable, which says how many times it was asked and lets the
# query choose its Cache-Control. Every gateway shares the one Redis.
# ---------------------------------------------------------------------------
# cached URL [curl args...]: GET through G6; CACHE_RESULT is X-Cache,
# SERVED the fixture's count in the body ("" when not JSON).
cached() {
	http GET "$G6$1" '' "${@:2}"
	CACHE_RESULT=$(header X-Cache)
	SERVED=$(jq -r '.served // empty' <<<"$HTTP_BODY" 2>/dev/null)
}
# redis_cache CMD...: redis-cli on the gateways' Redis.
redis_cache() {
	redis-cli -p "$LIMITS_REDIS_PORT" "$@"
}

step "GET /cached/cacheable?t=a twice"
BEFORE=$(fixture_count 'GET /cacheable')
cached "/cached/cacheable?t=a"
expect_status 200
check_eq "the first: X-Cache MISS" MISS "$CACHE_RESULT"
FIRST_BODY=$HTTP_BODY
cached "/cached/cacheable?t=a"
expect_status 200
check_eq "the second: X-Cache HIT" HIT "$CACHE_RESULT"
check_eq "the same body" "$FIRST_BODY" "$HTTP_BODY"
expect_header_match Age '^[0-9]+$'
expect_header Content-Type application/json
check_eq "the fixture was asked once" $((BEFORE + 1)) "$(fixture_count 'GET /cacheable')"
check_eq "a HEAD is a hit too" HIT "$(curl -s -I "$G6/cached/cacheable?t=a" | tr -d '\r' | awk 'tolower($1) == "x-cache:" { print $2 }')"

step "another query, and another gateway (G1 shares the Redis)"
cached "/cached/cacheable?t=b"
check_eq "?t=b is a miss of its own" MISS "$CACHE_RESULT"
check_eq "its entry expires within the route's 60 s" 1 \
	"$(t=$(redis_cache TTL "cache:p:17:/cached/cacheable?t=b"); [ "$t" -ge 1 ] && [ "$t" -le 60 ] && echo 1)"

step "a path that spells a query (%3F) is not the query's entry"
http GET "$G6/cached/cacheable%3Ft=a"
check_eq "not a hit" "" "$(header X-Cache | grep -x HIT)"
check_eq "the fixture answered for that path (404)" 404 "$HTTP_STATUS"

step "the client asks for fresh: Cache-Control no-cache, Pragma no-cache, no-store"
BEFORE_SERVED=$(jq -r .served <<<"$FIRST_BODY")
cached "/cached/cacheable?t=a" -H 'Cache-Control: no-cache'
check_eq "no-cache: BYPASS" BYPASS "$CACHE_RESULT"
check_num "a fresh answer from the fixture" "$SERVED" '>' "$BEFORE_SERVED"
FRESH=$SERVED
cached "/cached/cacheable?t=a"
check_eq "then a HIT" HIT "$CACHE_RESULT"
check_eq "of the fresh answer (it was stored)" "$FRESH" "$SERVED"
cached "/cached/cacheable?t=a" -H 'Pragma: no-cache'
check_eq "Pragma: no-cache: BYPASS" BYPASS "$CACHE_RESULT"
cached "/cached/cacheable?t=c" -H 'Cache-Control: no-store'
check_eq "no-store: BYPASS" BYPASS "$CACHE_RESULT"
cached "/cached/cacheable?t=c"
check_eq "and not stored: the next is a MISS" MISS "$CACHE_RESULT"

step "the service says what may be kept"
for case in "cc=no-store" "cc=no-cache" "cc=private" "vary=Accept" "cookie=session%3D1" "status=201"; do
	cached "/cached/cacheable?$case"
	cached "/cached/cacheable?$case"
	check_eq "$case: never a hit" MISS "$CACHE_RESULT"
done
cached "/cached/big?bytes=1048577"
cached "/cached/big?bytes=1048577"
check_eq "a body over 1 MiB: never a hit" MISS "$CACHE_RESULT"
cached "/cached/big?bytes=1048576"
cached "/cached/big?bytes=1048576"
check_eq "1 MiB exactly: a hit" HIT "$CACHE_RESULT"
cached "/cached/cacheable?cc=public%2C%20max-age%3D7"
cached "/cached/cacheable?cc=public%2C%20max-age%3D7"
check_eq "max-age=7: a hit" HIT "$CACHE_RESULT"
check_eq "kept for at most 7 s" 1 \
	"$(t=$(redis_cache TTL "cache:p:17:/cached/cacheable?cc=public%2C%20max-age%3D7"); [ "$t" -ge 1 ] && [ "$t" -le 7 ] && echo 1)"
cached "/cached/cacheable?cc=max-age%3D600%2C%20s-maxage%3D3"
cached "/cached/cacheable?cc=max-age%3D600%2C%20s-maxage%3D3"
check_eq "s-maxage=3 (for shared caches) wins over max-age=600" 1 \
	"$(t=$(redis_cache TTL "cache:p:17:/cached/cacheable?cc=max-age%3D600%2C%20s-maxage%3D3"); [ "$t" -ge 1 ] && [ "$t" -le 3 ] && echo 1)"

step "credentials on a public route: neither read nor stored"
cached "/cached/cacheable?t=a" -H "$AUTH"
check_eq "BYPASS" BYPASS "$CACHE_RESULT"

step "an authenticated route: one entry per user"
cached "/cached-auth/cacheable?t=me" -H "$AUTH"
check_eq "alice: MISS" MISS "$CACHE_RESULT"
cached "/cached-auth/cacheable?t=me" -H "$AUTH"
check_eq "alice again: HIT" HIT "$CACHE_RESULT"
expect_json '.user' alice
cached "/cached-auth/cacheable?t=me" -H "Authorization: Bearer $BOB_TOKEN"
check_eq "bob, the same URL: MISS (alice's answer is not his)" MISS "$CACHE_RESULT"
expect_json '.user' bob
cached "/cached-auth/cacheable?t=me" -H "Authorization: Bearer $BOB_TOKEN"
check_eq "bob again: HIT, his own" HIT "$CACHE_RESULT"
expect_json '.user' bob
cached "/cached-auth/cacheable?t=me&cc=private"
check_eq "no token: 401, nothing from the cache" 401 "$HTTP_STATUS"
cached "/cached-auth/cacheable?t=priv&cc=private" -H "$AUTH"
cached "/cached-auth/cacheable?t=priv&cc=private" -H "$AUTH"
check_eq "private is kept on an authenticated route (the key holds the user)" HIT "$CACHE_RESULT"

step "a write drops the path's entries: alice's, not bob's"
http POST "$G6/cached-auth/cacheable" '{}' -H "$AUTH"
expect_status 200
cached "/cached-auth/cacheable?t=me" -H "$AUTH"
check_eq "alice: MISS after her POST" MISS "$CACHE_RESULT"
cached "/cached-auth/cacheable?t=me" -H "Authorization: Bearer $BOB_TOKEN"
check_eq "bob: still a HIT" HIT "$CACHE_RESULT"
http PUT "$G6/cached/cacheable" '{}'
cached "/cached/cacheable?t=a"
check_eq "a public PUT drops the public entries: MISS" MISS "$CACHE_RESULT"
http DELETE "$G6/cached/cacheable?status=500"
cached "/cached/cacheable?t=a"
check_eq "a write that failed (500) drops nothing: HIT" HIT "$CACHE_RESULT"

step "GET /api/v1/users/me: the shipped route, through G1 and G5"
http PATCH "$G1/api/v1/users/me" '{"display_name":"Alice A."}' -H "$AUTH"
expect_status 200
expect_json '.display_name' 'Alice A.'
cached_users() {
	http GET "$1/api/v1/users/me" '' "${@:2}"
	CACHE_RESULT=$(header X-Cache)
}
cached_users "$G1" -H "$AUTH" -H "X-Request-Id: phase2-cache-miss.$RANDOM"
check_eq "after the PATCH: MISS" MISS "$CACHE_RESULT"
expect_json '.display_name' 'Alice A.'
expect_header Cache-Control 'private, max-age=30'
HIT_ID="phase2-cache-hit.$RANDOM"
cached_users "$G5" -H "$AUTH" -H "X-Request-Id: $HIT_ID"
check_eq "then through G5: HIT (one cache for every gateway)" HIT "$CACHE_RESULT"
expect_json '.display_name' 'Alice A.'
if poll_until 5 has_log_line "$TEST_DIR/gateway-5.out" "$HIT_ID"; then
	check_eq "the users service never saw the hit" 0 "$(grep -c "$HIT_ID" "$TEST_DIR/users.out")"
else
	fail "G5 logged $HIT_ID" "no such line in $TEST_DIR/gateway-5.out"
fi
http PATCH "$G1/api/v1/users/me" '{"display_name":"Alice B."}' -H "$AUTH"
cached_users "$G5" -H "$AUTH"
check_eq "after another PATCH: MISS" MISS "$CACHE_RESULT"
expect_json '.display_name' 'Alice B.'
http PATCH "$G1/api/v1/users/me" '{"display_name":"bad\u0007name"}' -H "$AUTH"
expect_problem 400

step "the metrics count every outcome"
METRICS=$(curl -s "$G6/metrics")
for result in hit miss bypass stored not_stored invalidated; do
	check_num "gateway_cache_requests_total{route=\"/cached\",result=\"$result\"}" \
		"$(awk -v want="gateway_cache_requests_total{route=\"/cached\",result=\"$result\"}" \
			'$1 == want { print $2 }' <<<"$METRICS")" '>' 0
done

# ---------------------------------------------------------------------------
section "health: liveness is free, the detailed report is the operator's and cached"
# Threat: /health was open, unlimited and asked every upstream (and Redis)
# on every call: 40 calls, 40 requests to each upstream, and their URLs
# and pool figures for anyone. Now /health asks nobody; /health/details
# needs OPERATOR_TOKEN and asks each upstream at most once per
# HEALTH_CHECK_INTERVAL_MS (a minute on G6). Counted at the upstream.
# ---------------------------------------------------------------------------
PROBES_BEFORE=$(fixture_count 'GET /health')
step "40 x GET /health"
: >"$TEST_DIR/live-codes.txt"
for _ in $(seq 1 40); do
	http GET "$G6/health"
	echo "$HTTP_STATUS" >>"$TEST_DIR/live-codes.txt"
done
check_eq "40 answers 200" 40 "$(grep -c '^200$' "$TEST_DIR/live-codes.txt")"
check_eq "no upstream URL in it" 0 "$(grep -c "$FIXTURE_PORT" "$HTTP_BODY_FILE")"
expect_jq "nothing but status and service" 'keys == ["service", "status"]'
check_eq "the fixture was asked nothing" "$PROBES_BEFORE" "$(fixture_count 'GET /health')"

step "40 x GET /health/details without the token, or a wrong one"
: >"$TEST_DIR/details-codes.txt"
for n in $(seq 1 40); do
	if [ $((n % 2)) = 0 ]; then
		http GET "$G6/health/details" '' -H "Authorization: Bearer wrong-$OPERATOR_TOKEN"
	else
		http GET "$G6/health/details"
	fi
	echo "$HTTP_STATUS" >>"$TEST_DIR/details-codes.txt"
done
check_eq "40 answers 401" 40 "$(grep -c '^401$' "$TEST_DIR/details-codes.txt")"
expect_problem 401
check_eq "no upstream URL in it" 0 "$(grep -c "$FIXTURE_PORT" "$HTTP_BODY_FILE")"
check_eq "the fixture was asked nothing" "$PROBES_BEFORE" "$(fixture_count 'GET /health')"

step "GET /health/details with the operator's token (positive control)"
details "$G6"
expect_status 200
expect_json '.checks.fixture.instances[0].url' "$FIXTURE"
expect_json '.checks.fixture.status' up
expect_jq "pool figures" '.checks.fixture.pool | [.created, .requests] | all(type == "number")'

step "40 x GET /health/details with the token"
: >"$TEST_DIR/details-codes.txt"
for _ in $(seq 1 40); do
	details "$G6"
	echo "$HTTP_STATUS" >>"$TEST_DIR/details-codes.txt"
done
check_eq "40 answers 200" 40 "$(grep -c '^200$' "$TEST_DIR/details-codes.txt")"
check_num "the fixture was asked at most once for all 41" \
	"$(( $(fixture_count 'GET /health') - PROBES_BEFORE ))" '<=' 1

# ---------------------------------------------------------------------------
section "clean stop, and sanitizers"
# Every server stops on SIGTERM with exit 0 (under ASan, a leak found at
# exit makes it non-zero). With build/asan/bin, AddressSanitizer,
# LeakSanitizer and UBSan write their reports to stderr: any is a failure.
# ---------------------------------------------------------------------------
step "SIGTERM"
declare -A SERVER_NAMES=([$G1_PID]="gateway G1" [$G2_PID]="gateway G2" [$G3_PID]="gateway G3"
	[$G4_PID]="gateway G4" [$G5_PID]="gateway G5" [$G6_PID]="gateway G6" [$FIXTURE_PID]="upstream fixture" [$USERS_PID]=users [$URL_SHORTENER_PID]=url-shortener [$ANALYTICS_PID]=analytics
	[$NOTIFICATIONS_PID]=notifications)
check_clean_stop

finish
