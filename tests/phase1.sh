#!/usr/bin/env bash
# tests/phase1.sh - a black-box walk through the Phase 1 monolith with curl
# and jq: the journey a workshop attendee takes (register, log in, shorten,
# follow, read the analytics), then the edges a gateway must get right
# (forged tokens, bad input, CORS, rate limits, metrics, persistence).
#
# Usage: tests/phase1.sh [path-to-monolith]     (default build/bin/monolith)
#
# It starts its own redis-server and monolith on free loopback ports, talks
# only to 127.0.0.1, and stops both at the end, also when a check fails or
# the script is interrupted. Every check prints "ok - ..." or "not ok - ...";
# the last line is "N passed, N failed" and the exit code is 1 when any
# check failed. The logs are kept (path printed) when something failed, or
# always with KEEP_LOGS=1. Every log a monolith wrote is finally searched for
# AddressSanitizer / LeakSanitizer / UBSan reports, so the same script is the
# sanitizer run when given build/asan/bin/monolith.
#
# Read it top to bottom: each section says what it shows and why it matters.

# jq programs are single-quoted on purpose: $names in them are jq's.
# shellcheck disable=SC2016
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

MONOLITH=${1:-build/bin/monolith}
case $MONOLITH in /*) ;; *) MONOLITH="$PWD/$MONOLITH" ;; esac

echo "# Phase 1 black-box tests against $MONOLITH"
echo "# scratch directory: $TEST_DIR"

# ---------------------------------------------------------------------------
section "prerequisites"
# ---------------------------------------------------------------------------
have_tool() {
	command -v "$1" >/dev/null
}
for tool in curl jq redis-server redis-cli openssl promtool; do
	check_true "$tool is installed" have_tool "$tool"
done
if [ ! -x "$MONOLITH" ]; then
	fail "the monolith binary exists" "no executable at $MONOLITH (run make first)"
	finish
	exit 1
fi

# ---------------------------------------------------------------------------
# Start-up: a Redis of our own (append-only, in the scratch directory) and
# the monolith, each on a port the kernel says is free.
# ---------------------------------------------------------------------------
REDIS_PORT=$(free_port)
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
REDIS_DIR="$TEST_DIR/redis"

# A test secret of 45 bytes: the monolith refuses fewer than 32.
SECRET="phase1-test-secret-0123456789abcdef-0123456789"
# The operator's token for GET /health/details (at least 32 bytes).
OPERATOR_TOKEN="phase1-operator-token-0123456789abcdefgh"
# The users binary beside the monolith: its operator commands
# (grant-premium) work on the monolith's store too.
USERS_COMMAND="$(dirname "$MONOLITH")/users"

# The environment of every monolith in this script. PBKDF2 runs 1000
# iterations (not 600000) so that logins stay fast under AddressSanitizer;
# ALLOW_INSECURE_DEV_SECRET=true is what lets a development run use so few.
# The rate limits are high for the main journey; the rate-limit section
# restarts the monolith with low ones.
MONOLITH_ENV=(
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	JWT_SECRET="$SECRET"
	ALLOW_INSECURE_DEV_SECRET=true
	PASSWORD_PBKDF2_ITERATIONS=1000
	OPERATOR_TOKEN="$OPERATOR_TOKEN"
	MAX_BODY_BYTES=4096
	CORS_ALLOWED_ORIGINS=https://app.example
	RATE_LIMIT_WINDOW_SECONDS=60
	RATE_LIMIT_ANONYMOUS=100000
	RATE_LIMIT_FREE=100000
	RATE_LIMIT_PREMIUM=100000
)

# Each monolith run gets its own log files: monolith-1.out (stdout: the
# access log) and monolith-1.err (stderr: start-up messages, sanitizers).
MONOLITH_RUNS=0
# run_monolith [VAR=VALUE...]: starts the monolith on $PORT with
# MONOLITH_ENV plus the overrides; ends the script when it does not start.
run_monolith() {
	MONOLITH_RUNS=$((MONOLITH_RUNS + 1))
	MONOLITH_LOG="$TEST_DIR/monolith-$MONOLITH_RUNS"
	if start_monolith "$MONOLITH" "$MONOLITH_LOG" "$PORT" "${MONOLITH_ENV[@]}" "$@"; then
		pass "monolith run $MONOLITH_RUNS is healthy on $BASE"
	else
		fail "monolith run $MONOLITH_RUNS is healthy on $BASE" "see $MONOLITH_LOG.err"
		finish
		exit 1
	fi
}

# stop_monolith: SIGTERM, and a clean stop exits 0 (under ASan a leak found
# at exit makes it non-zero).
stop_monolith() {
	stop_pid "$MONOLITH_PID"
	check_exits_0 "monolith run $MONOLITH_RUNS exits 0 on SIGTERM" "$STOPPED_STATUS"
}

section "start-up"
step "redis"
if start_redis "$REDIS_PORT" "$REDIS_DIR"; then
	pass "redis-server answers PING on port $REDIS_PORT"
else
	fail "redis-server answers PING on port $REDIS_PORT"
	finish
	exit 1
fi
step "monolith"
run_monolith

ISO_UTC='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
UUID_V4='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

# ---------------------------------------------------------------------------
section "health and request ids"
# /health is what load balancers and our own readiness polls ask. Every
# response carries X-Request-Id, so one request can be found in every log.
# ---------------------------------------------------------------------------
# /health is liveness: constant, and nothing about the process's insides.
# The report with the store's check, uptime and memory is the operator's:
# /health/details, with OPERATOR_TOKEN (401 without it).
step "GET /health"
http GET "$BASE/health"
expect_status 200
expect_json '.status' ok
expect_json '.service' monolith
expect_jq "nothing but status and service" 'keys == ["service", "status"]'
expect_header_match X-Request-Id "$UUID_V4"

step "GET /health/details without the operator's token"
http GET "$BASE/health/details"
expect_problem 401
expect_header_match WWW-Authenticate '^Bearer'

step "GET /health/details with it"
http GET "$BASE/health/details" '' -H "Authorization: Bearer $OPERATOR_TOKEN"
expect_status 200
expect_json '.status' healthy
expect_json '.checks.store.status' up
expect_jq "service names the process" '.service | type == "string" and length > 0'
expect_jq "uptime_seconds is a number" '.uptime_seconds | type == "number"'
expect_jq "memory.rss_bytes is a positive number" '.memory.rss_bytes > 0'
expect_jq "timestamp is ISO 8601 UTC" '.timestamp | test($re)' --arg re "$ISO_UTC"

# A sane id from the client (1-64 of A-Z a-z 0-9 . _ : -) is kept, so a
# caller's trace id follows the request through our logs.
LOGGED_ID="phase1-trace:0001.$RANDOM"
step "a sane X-Request-Id"
http GET "$BASE/health" '' -H "X-Request-Id: $LOGGED_ID"
expect_header X-Request-Id "$LOGGED_ID"

# An insane one is replaced: it would otherwise be copied into logs and
# headers (log injection, header splitting, unbounded size).
step "a 65-character X-Request-Id"
http GET "$BASE/health" '' -H "X-Request-Id: $(printf 'a%.0s' $(seq 1 65))"
expect_header_match X-Request-Id "$UUID_V4"
step "an X-Request-Id with spaces and quotes"
http GET "$BASE/health" '' -H 'X-Request-Id: bad id "quoted"'
expect_header_match X-Request-Id "$UUID_V4"

# ---------------------------------------------------------------------------
section "register and log in"
# ---------------------------------------------------------------------------
PASSWORD="correct horse battery staple"

step "register alice"
http POST "$BASE/auth/register" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}"
expect_status 201
expect_json '.username' alice
expect_json '.tier' free
expect_jq "created_at is ISO 8601 UTC" '.created_at | test($re)' --arg re "$ISO_UTC"

step "register alice again"
http POST "$BASE/auth/register" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}"
expect_problem 409

step "register bob"
http POST "$BASE/auth/register" "{\"username\":\"bob\",\"password\":\"$PASSWORD\"}"
expect_status 201

# Every account registers free. Premium is an operator's grant to an
# existing account (once: whoever registered a name in PREMIUM_USERS first
# got it): `users grant-premium carol`, against the same store.
step "register carol"
http POST "$BASE/auth/register" "{\"username\":\"carol\",\"password\":\"$PASSWORD\"}"
expect_status 201
expect_json '.tier' free

step "an operator runs users grant-premium carol"
GRANT_OUT=$(env -i PATH="$PATH" ${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} \
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" "$USERS_COMMAND" grant-premium carol 2>&1)
check_eq "exit 0" 0 "$?"
check_match "it says so" 'carol: tier premium' "$GRANT_OUT"

step "register a bad username"
http POST "$BASE/auth/register" "{\"username\":\"Bad Name!\",\"password\":\"$PASSWORD\"}"
expect_problem 400

step "register a name an escaped NUL would cut to \"alice\""
http POST "$BASE/auth/register" "{\"username\":\"alice\\u0000x\",\"password\":\"$PASSWORD\"}"
expect_problem 400
expect_json '.detail | test("escape")' true

step "register with a 7-byte password"
http POST "$BASE/auth/register" '{"username":"dave","password":"1234567"}'
expect_problem 400

step "log in as alice"
http POST "$BASE/auth/login" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}"
expect_status 200
expect_json '.token_type' Bearer
expect_json '.username' alice
expect_json '.tier' free
expect_jq "expires_in is a positive number" '.expires_in > 0'
expect_jq "token has three parts" '.token | split(".") | length == 3'
ALICE_TOKEN=$(jq -r '.token // empty' <<<"$HTTP_BODY" 2>/dev/null)

step "log in as bob"
http POST "$BASE/auth/login" "{\"username\":\"bob\",\"password\":\"$PASSWORD\"}"
expect_status 200
BOB_TOKEN=$(jq -r '.token // empty' <<<"$HTTP_BODY" 2>/dev/null)

step "log in as carol"
http POST "$BASE/auth/login" "{\"username\":\"carol\",\"password\":\"$PASSWORD\"}"
expect_status 200
expect_json '.tier' premium
CAROL_TOKEN=$(jq -r '.token // empty' <<<"$HTTP_BODY" 2>/dev/null)

# A wrong password and an unknown user get the same answer, so the login
# form cannot be used to find out which usernames exist.
step "log in with a wrong password"
http POST "$BASE/auth/login" '{"username":"alice","password":"wrong password!"}'
expect_problem 401
WRONG_PASSWORD_DETAIL=$(jq -r '.detail' <<<"$HTTP_BODY" 2>/dev/null)

step "log in as an unknown user"
http POST "$BASE/auth/login" "{\"username\":\"nobody\",\"password\":\"$PASSWORD\"}"
expect_problem 401
expect_json '.detail' "$WRONG_PASSWORD_DETAIL"

# ---------------------------------------------------------------------------
section "who am I"
# ---------------------------------------------------------------------------
step "GET /users/me as alice"
http GET "$BASE/users/me" '' -H "Authorization: Bearer $ALICE_TOKEN"
expect_status 200
expect_json '.username' alice
expect_json '.tier' free

step "GET /users/me as carol"
http GET "$BASE/users/me" '' -H "Authorization: Bearer $CAROL_TOKEN"
expect_status 200
expect_json '.tier' premium

# ---------------------------------------------------------------------------
section "shorten"
# ---------------------------------------------------------------------------
TARGET="https://example.com/articles/gateways?from=phase1"
AUTH="Authorization: Bearer $ALICE_TOKEN"

step "shorten a URL"
http POST "$BASE/shorten" "{\"url\":\"$TARGET\"}" -H "$AUTH"
expect_status 201
expect_jq "code is 7 characters of base62" '.code | test("^[A-Za-z0-9]{7}$")'
expect_json '.url' "$TARGET"
expect_json '.owner' alice
expect_jq "short_url ends with /r/<code>" '.short_url | endswith("/r/" + $code)' \
	--arg code "$(jq -r '.code' <<<"$HTTP_BODY" 2>/dev/null)"
expect_jq "created_at is ISO 8601 UTC" '.created_at | test($re)' --arg re "$ISO_UTC"
CODE=$(jq -r '.code // empty' <<<"$HTTP_BODY" 2>/dev/null)
CODE=${CODE:-missing-code}

step "shorten without a token"
http POST "$BASE/shorten" "{\"url\":\"$TARGET\"}"
expect_problem 401

ALIAS="docs_$RANDOM"
step "shorten with an alias"
http POST "$BASE/shorten" "{\"url\":\"https://example.com/docs\",\"alias\":\"$ALIAS\"}" -H "$AUTH"
expect_status 201
expect_json '.code' "$ALIAS"

step "shorten with the same alias"
http POST "$BASE/shorten" "{\"url\":\"https://example.com/other\",\"alias\":\"$ALIAS\"}" -H "$AUTH"
expect_problem 409

# Each of these bodies is refused with 400 before anything is stored.
# name|body
BAD_BODIES=(
	'an alias with a space and a !|{"url":"https://example.com/","alias":"a b!"}'
	'a 2-character alias|{"url":"https://example.com/","alias":"ab"}'
	'an ftp:// url|{"url":"ftp://x"}'
	'a url with CR-LF (header injection)|{"url":"https://example.com/a\r\nSet-Cookie: x=1"}'
	'a javascript: url|{"url":"javascript:alert(1)"}'
	'a url without a host|{"url":"http://"}'
	'"url": 5 (wrong JSON type)|{"url": 5}'
	'a JSON array body|[]'
	'a body that is not JSON|not json'
	'no url at all|{}'
	'an alias cut short by an escaped NUL|{"url":"https://example.com/","alias":"abc\u0000def"}'
	'a url cut short by a bad escape (cJSON reads \u00zz as NUL)|{"url":"https://example.com/\u00zz.evil"}'
)
for entry in "${BAD_BODIES[@]}"; do
	step "shorten with ${entry%%|*}"
	http POST "$BASE/shorten" "${entry#*|}" -H "$AUTH"
	expect_problem 400
done

step "shorten with Content-Type text/plain"
http POST "$BASE/shorten" "{\"url\":\"$TARGET\"}" -H "$AUTH" -H 'Content-Type: text/plain'
expect_problem 415

# MAX_BODY_BYTES=4096 in this run: a 10000-byte body (valid JSON, 30 bytes
# around a 9970-byte path) is refused for its size alone.
step "shorten with a 10000-byte body"
printf '{"url":"https://example.com/%s"}' "$(head -c 9970 /dev/zero | tr '\0' a)" >"$TEST_DIR/big-body.json"
http POST "$BASE/shorten" "@$TEST_DIR/big-body.json" -H "$AUTH"
expect_problem 413

# ---------------------------------------------------------------------------
section "expand and redirect"
# ---------------------------------------------------------------------------
step "GET /expand/<code>"
http GET "$BASE/expand/$CODE"
expect_status 200
expect_json '.code' "$CODE"
expect_json '.url' "$TARGET"

step "GET /expand/<unknown code>"
http GET "$BASE/expand/NoSuchCode"
expect_problem 404

# The redirect itself: 302 with the URL, never cached (every click must
# reach us to be counted). Followed twice, as a Firefox user coming from a
# news site would.
REFERRER="https://news.example/item?id=42"
FIREFOX="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
# The UTC day before the first click and after the last: the same one,
# unless midnight passed in between (then the clicks may be on either).
CLICK_DAYS=("$(date -u +%F)")
for click in 1 2; do
	step "GET /r/<code>, click $click"
	http GET "$BASE/r/$CODE" '' -H "Referer: $REFERRER" -A "$FIREFOX"
	expect_status 302
	expect_header Location "$TARGET"
	expect_header_match Cache-Control 'no-store'
done
CLICK_DAYS+=("$(date -u +%F)")

step "GET /r/<unknown code>"
http GET "$BASE/r/NoSuchCode"
expect_problem 404

# ---------------------------------------------------------------------------
section "analytics"
# ---------------------------------------------------------------------------
step "GET /analytics/<code> as the owner"
http GET "$BASE/analytics/$CODE" '' -H "$AUTH"
expect_status 200
expect_json '.code' "$CODE"
expect_json '.clicks' 2
expect_jq "clicks_by_day has both, on the day they happened (${CLICK_DAYS[*]})" \
	'. as $body | [$first, $last] | unique | map($body.clicks_by_day[.] // 0) | add == 2' \
	--arg first "${CLICK_DAYS[0]}" --arg last "${CLICK_DAYS[1]}"
expect_json '.last_referrer' "$REFERRER"
expect_json '.last_user_agent_family' Firefox

# Only the owner may read a link's analytics.
step "GET /analytics/<code> as bob"
http GET "$BASE/analytics/$CODE" '' -H "Authorization: Bearer $BOB_TOKEN"
expect_problem 403

step "GET /analytics/<unknown code>"
http GET "$BASE/analytics/NoSuchCode" '' -H "$AUTH"
expect_problem 404

step "GET /analytics/<code> without a token"
http GET "$BASE/analytics/$CODE"
expect_problem 401

# ---------------------------------------------------------------------------
section "forged and broken tokens"
# Threat: a caller who has no valid token makes one the monolith accepts -
# by dropping the signature (alg "none"), by naming another algorithm than
# the pinned HS256, by editing a real token, or by replaying an expired
# one. Tokens are built here with openssl, and the positive control in the
# same block (a token built the same way, correctly signed) shows the
# refusals are about the forgery, not about how the script builds tokens.
# ---------------------------------------------------------------------------

# make_token and b64url come from tests/lib.sh.

# claims [jq assignments]: alice's claims (sub, tier, iat, exp in 10 min),
# changed by the jq expression given, e.g. claims '.exp = $now - 120'.
claims() {
	local now
	now=$(date +%s)
	jq -cn --argjson now "$now" \
		"{sub: \"alice\", tier: \"free\", iat: \$now, exp: (\$now + 600)} | ${1:-.}"
}

# me_with TOKEN: GET /users/me with that bearer token.
me_with() {
	http GET "$BASE/users/me" '' -H "Authorization: Bearer $1"
}

# Positive control: built by this script, signed with the right secret.
step "a script-built HS256 token (positive control)"
me_with "$(make_token HS256 "$SECRET" "$(claims)")"
expect_status 200
expect_json '.username' alice

step "no token"
http GET "$BASE/users/me"
expect_problem 401
expect_header_match WWW-Authenticate '^Bearer'

step "a garbage token"
me_with "not-a-jwt"
expect_problem 401

# Flip one character in the middle of the signature of alice's real token.
step "alice's token with a tampered signature"
me_with "$(tamper_token "$ALICE_TOKEN")"
expect_problem 401

step 'an unsigned token with alg "none"'
me_with "$(make_token none "" "$(claims)" '{"alg":"none","typ":"JWT"}')"
expect_problem 401

# Signed with the right secret, but HS512: the algorithm is pinned to HS256,
# and a token never chooses how it is checked.
step "an HS512 token while HS256 is pinned"
me_with "$(make_token HS512 "$SECRET" "$(claims)")"
expect_problem 401

step "a token signed with another secret"
me_with "$(make_token HS256 "another-secret-0123456789abcdef-0123456789" "$(claims)")"
expect_problem 401

# exp two minutes ago: beyond the 30 s leeway.
step "an expired token"
me_with "$(make_token HS256 "$SECRET" "$(claims '.exp = $now - 120')")"
expect_problem 401

# The monolith remembers verified tokens per worker thread (auth_jwt.c).
# Threat: a cached token outliving its exp. This one has 2 s left inside
# the 30 s leeway; twelve requests 0.5 s apart on ONE keep-alive connection
# (one civetweb thread, so one cache) must start 200 and end 401.
step "a cached token is refused once it expires"
EXPIRING=$(make_token HS256 "$SECRET" "$(claims '.exp = $now - 28')")
CODES=$(curl -s -o /dev/null -w '%{http_code} ' --rate 2/s \
	-H "Authorization: Bearer $EXPIRING" "$BASE/users/me?n=[1-12]")
check_eq "the first request with it is accepted" 200 "${CODES%% *}"
check_match "the last ones are refused (codes: $CODES)" '401 401 $' "$CODES"

step "a token without exp"
me_with "$(make_token HS256 "$SECRET" "$(claims 'del(.exp)')")"
expect_problem 401

step "a token with nbf in 5 minutes"
me_with "$(make_token HS256 "$SECRET" "$(claims '.nbf = $now + 300')")"
expect_problem 401

# ---------------------------------------------------------------------------
section "routing errors"
# ---------------------------------------------------------------------------
step "GET /no/such/route"
http GET "$BASE/no/such/route"
expect_problem 404

step "DELETE /shorten"
http DELETE "$BASE/shorten" '' -H "$AUTH"
expect_problem 405
expect_header_match Allow 'POST'

# ---------------------------------------------------------------------------
section "CORS (CORS_ALLOWED_ORIGINS=https://app.example)"
# A browser asks first (preflight) whether a page from another origin may
# POST with an Authorization header; only the listed origin is told yes.
# ---------------------------------------------------------------------------
step "preflight from https://app.example"
http OPTIONS "$BASE/shorten" '' -H 'Origin: https://app.example' \
	-H 'Access-Control-Request-Method: POST' \
	-H 'Access-Control-Request-Headers: authorization, content-type'
expect_status 204
expect_header Access-Control-Allow-Origin https://app.example
expect_header_match Access-Control-Allow-Methods 'POST'
expect_header_match Access-Control-Allow-Headers '[Aa]uthorization'
expect_header_match Vary 'Origin'

step "preflight from https://evil.example"
http OPTIONS "$BASE/shorten" '' -H 'Origin: https://evil.example' \
	-H 'Access-Control-Request-Method: POST'
expect_no_header Access-Control-Allow-Origin

step "GET /expand/<code> from https://app.example"
http GET "$BASE/expand/$CODE" '' -H 'Origin: https://app.example'
expect_status 200
expect_header Access-Control-Allow-Origin https://app.example
expect_header_match Vary 'Origin'

step "GET /expand/<code> from https://evil.example"
http GET "$BASE/expand/$CODE" '' -H 'Origin: https://evil.example'
expect_no_header Access-Control-Allow-Origin

# ---------------------------------------------------------------------------
section "metrics"
# ---------------------------------------------------------------------------
step "GET /metrics"
http GET "$BASE/metrics"
expect_status 200
METRICS=$HTTP_BODY
REQUESTS_LINE=$(grep -m1 '^http_requests_total{' <<<"$METRICS")
for label in method route status_code service; do
	check_match "http_requests_total has a $label label" "[{,]$label=\"" "$REQUESTS_LINE"
done
check_true "has http_request_duration_seconds_bucket" grep -q '^http_request_duration_seconds_bucket{' <<<"$METRICS"
check_true "has http_requests_in_flight" grep -q '^http_requests_in_flight' <<<"$METRICS"
# Route labels are patterns (/expand/:code), never raw paths: one series per
# short code would grow without bound.
if grep -q "route=\"[^\"]*$CODE" <<<"$METRICS"; then
	fail "route labels are patterns, not raw paths" "a route label contains the code $CODE"
else
	pass "route labels are patterns, not raw paths"
fi
if promtool check metrics <<<"$METRICS" >"$TEST_DIR/promtool.txt" 2>&1; then
	pass "promtool check metrics accepts it"
else
	fail "promtool check metrics accepts it" "$(head -c 500 "$TEST_DIR/promtool.txt")"
fi

# ---------------------------------------------------------------------------
section "access log"
# One JSON line per request on stdout, written after the response: find the
# one for the request we sent with our own X-Request-Id.
# ---------------------------------------------------------------------------
# log_line_for ID: the monolith's access-log line with request id ID into
# LOG_LINE (polled: it is written after the response), or "".
log_line_for() {
	LOG_LINE=""
	for _ in $(seq 1 "$POLL_TRIES"); do
		LOG_LINE=$(grep -m1 -F "\"request_id\":\"$1\"" "$MONOLITH_LOG.out" 2>/dev/null)
		[ -n "$LOG_LINE" ] && return 0
		sleep "$POLL_INTERVAL"
	done
	return 1
}
# expect_log DESCRIPTION JQ_FILTER [jq args...]: jq -e FILTER is true on
# LOG_LINE.
expect_log() {
	local description=$1 filter=$2
	shift 2
	if jq -e "$@" "$filter" <<<"$LOG_LINE" >/dev/null 2>&1; then
		pass "$description"
	else
		fail "$description" "jq '$filter' is not true on: ${LOG_LINE:0:300}"
	fi
}

step "access log"
if log_line_for "$LOGGED_ID"; then
	pass "stdout has a line with request id $LOGGED_ID"
	expect_log "that line is one JSON object" 'type == "object"'
	expect_log "it names the request: service, method, path, route" \
		'.service == "monolith" and .method == "GET" and .path == "/health" and .route == "/health"'
	expect_log "and the answer: status 200, bytes sent, a duration in ms" \
		'.status == 200 and .bytes_sent > 0 and (.duration_ms | type == "number") and .duration_ms >= 0'
	expect_log "with the client address and no user (not signed in)" \
		'.client_ip == "127.0.0.1" and .user == null'
	expect_log "and a UTC time with milliseconds" \
		'.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")'
else
	fail "stdout has a line with request id $LOGGED_ID" "not in $MONOLITH_LOG.out"
fi

# The path is what the client sent: quotes, control characters and UTF-8
# in it must come out as one valid JSON line holding exactly that path.
step "access log: a path with a quote, a control character and UTF-8"
HOSTILE_ID="phase1-hostile.$RANDOM"
http GET "$BASE/no-such/%22x%22%01%C3%A9%1F" '' -H "X-Request-Id: $HOSTILE_ID"
expect_status 404
if log_line_for "$HOSTILE_ID"; then
	expect_log "its line is one JSON object" 'type == "object"'
	expect_log "holding the decoded path exactly" \
		'.path == "/no-such/\"x\"\u0001é\u001f"'
	expect_log "with status 404 and route null" '.status == 404 and .route == null'
else
	fail "stdout has a line with request id $HOSTILE_ID" "not in $MONOLITH_LOG.out"
fi

# ---------------------------------------------------------------------------
section "persistence"
# Stop the monolith and Redis, start Redis again on the same data directory
# (its append-only file) and the monolith again: users and links are still
# there, and a token issued before the restart is still good (same secret).
# ---------------------------------------------------------------------------
step "restart"
stop_monolith
stop_pid "$REDIS_PID"
check_exits_0 "redis-server exits 0 on SIGTERM" "$STOPPED_STATUS"
if start_redis "$REDIS_PORT" "$REDIS_DIR"; then
	pass "redis-server is back on the same data directory"
else
	fail "redis-server is back on the same data directory"
	finish
	exit 1
fi
run_monolith

step "after the restart, GET /expand/<code>"
http GET "$BASE/expand/$CODE"
expect_status 200
expect_json '.url' "$TARGET"

step "after the restart, log in as alice"
http POST "$BASE/auth/login" "{\"username\":\"alice\",\"password\":\"$PASSWORD\"}"
expect_status 200

step "after the restart, alice's old token"
me_with "$ALICE_TOKEN"
expect_status 200

step "after the restart, analytics"
http GET "$BASE/analytics/$CODE" '' -H "$AUTH"
expect_json '.clicks' 2

# ---------------------------------------------------------------------------
section "rate limits (RATE_LIMIT_FREE=3, RATE_LIMIT_ANONYMOUS=5, 60 s window)"
# ---------------------------------------------------------------------------
step "restart with low limits"
stop_monolith

# The window is fixed on the wall clock (it starts at a multiple of 60 s).
# When it is about to end, wait for the next one, so that all the requests
# below fall into one window. This waits for the clock, not for a server.
SECONDS_LEFT=$((60 - $(date +%s) % 60))
if [ "$SECONDS_LEFT" -lt 5 ]; then
	echo "# waiting ${SECONDS_LEFT}s for the next rate-limit window"
	sleep "$SECONDS_LEFT"
fi
run_monolith RATE_LIMIT_FREE=3 RATE_LIMIT_ANONYMOUS=5

# A free user gets 3 requests per window, and every answer says how many
# are left.
for n in 1 2 3; do
	step "alice's request $n of 3"
	me_with "$ALICE_TOKEN"
	expect_status 200
	expect_header X-RateLimit-Limit 3
	expect_header X-RateLimit-Remaining $((3 - n))
	expect_header_match X-RateLimit-Reset '^[0-9]+$'
done

step "alice's request 4 of 3"
me_with "$ALICE_TOKEN"
expect_problem 429
expect_header_match Retry-After '^[1-9][0-9]*$'
expect_header X-RateLimit-Remaining 0
expect_header_match RateLimit-Policy '^"free";q=3;w=60$'
expect_header_match RateLimit '^"free";r=0;t=[0-9]+$'

# Another user has a budget of their own.
step "bob, while alice is limited"
me_with "$BOB_TOKEN"
expect_status 200

# Public routes are limited per client IP: 5 per window here.
for n in 1 2 3 4 5; do
	step "anonymous GET /expand, request $n of 5"
	http GET "$BASE/expand/$CODE"
	expect_status 200
done
step "anonymous GET /expand, request 6 of 5"
http GET "$BASE/expand/$CODE"
expect_problem 429
expect_header_match RateLimit-Policy '^"anonymous";q=5;w=60$'

# Operations endpoints are never limited: a load balancer polling /health
# must not be told "429" by the service it checks.
step "GET /health while the IP is limited"
HEALTH_CODES=""
for n in $(seq 1 10); do
	http GET "$BASE/health"
	HEALTH_CODES="$HEALTH_CODES$HTTP_STATUS "
done
check_eq "10 times 200" "200 200 200 200 200 200 200 200 200 200 " "$HEALTH_CODES"
expect_no_header X-RateLimit-Limit

step "stop"
stop_monolith

# ---------------------------------------------------------------------------
section "configuration that must not start"
# A bad setting stops start-up with the variable's name: never a server
# that runs with a guessable secret or a CORS policy browsers would abuse.
# ---------------------------------------------------------------------------

# refuses_to_start NAME PATTERN VAR=VALUE...: the monolith, started with
# exactly that environment, exits non-zero at once and its output matches
# PATTERN. timeout stops it if it wrongly starts serving.
refuses_to_start() {
	local name=$1 pattern=$2 status var
	shift 2
	local env_args=()
	for var in "${PASS_THROUGH_ENV[@]}"; do
		[ -n "${!var:-}" ] && env_args+=("$var=${!var}")
	done
	local log="$TEST_DIR/refused-$name"
	timeout --kill-after=2 20 env -i "${env_args[@]}" \
		PORT="$(free_port)" BIND_ADDRESS=127.0.0.1 \
		REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" "$@" \
		"$MONOLITH" >"$log.out" 2>"$log.err"
	status=$?
	if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
		fail "exits non-zero" "it was still running after 20 s"
	elif [ "$status" -eq 0 ]; then
		fail "exits non-zero" "exit status 0"
	else
		pass "exits non-zero ($status)"
	fi
	if grep -q -E "$pattern" "$log.out" "$log.err"; then
		pass "says /$pattern/"
	else
		fail "says /$pattern/" "output: $(head -c 300 "$log.err")"
	fi
}

step "JWT_SECRET of 11 bytes"
refuses_to_start short-secret 'JWT_SECRET' JWT_SECRET=short-value

# PREMIUM_USERS is no longer read: quietly ignoring it would leave an
# operator believing those names are premium.
step "PREMIUM_USERS=carol"
refuses_to_start premium-users 'PREMIUM_USERS.*grant-premium' JWT_SECRET="$SECRET" \
	PREMIUM_USERS=carol

step "OPERATOR_TOKEN of 12 bytes"
refuses_to_start short-operator-token 'OPERATOR_TOKEN' JWT_SECRET="$SECRET" \
	OPERATOR_TOKEN=short-secret

step "CORS_ALLOWED_ORIGINS='*' with CORS_ALLOW_CREDENTIALS=true"
refuses_to_start cors-star 'CORS_' JWT_SECRET="$SECRET" \
	CORS_ALLOWED_ORIGINS='*' CORS_ALLOW_CREDENTIALS=true

# ---------------------------------------------------------------------------
section "STORE=memory"
# The zero-infrastructure mode: no Redis needed, and it says loudly that
# nothing it stores survives a restart.
# ---------------------------------------------------------------------------
step "STORE=memory"
MEMORY_PORT=$(free_port)
if start_monolith "$MONOLITH" "$TEST_DIR/memory" "$MEMORY_PORT" \
	STORE=memory JWT_SECRET="$SECRET" ALLOW_INSECURE_DEV_SECRET=true \
	PASSWORD_PBKDF2_ITERATIONS=1000; then
	pass "starts without Redis"
	if grep -q -i 'persist' "$TEST_DIR/memory.out" "$TEST_DIR/memory.err"; then
		pass "says that nothing persists"
	else
		fail "says that nothing persists" "no 'persist' in its output"
	fi
	http POST "http://127.0.0.1:$MEMORY_PORT/auth/register" \
		"{\"username\":\"alice\",\"password\":\"$PASSWORD\"}"
	expect_status 201
	stop_pid "$MONOLITH_PID"
	check_exits_0 "exits 0 on SIGTERM" "$STOPPED_STATUS"
else
	fail "starts without Redis" "see $TEST_DIR/memory.err"
fi

# ---------------------------------------------------------------------------
section "sanitizers"
# With build/asan/bin/monolith, AddressSanitizer, LeakSanitizer and UBSan
# write their reports to stderr: any report is a failure.
# ---------------------------------------------------------------------------
step "sanitizer reports"
stop_all
check_no_sanitizer_reports

finish
