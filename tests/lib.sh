# shellcheck shell=bash disable=SC2016,SC2034
# tests/lib.sh - helpers shared by the black-box test scripts (source it).
#
# What it gives a test script:
#   checks    step, pass, fail, check_eq, check_match, check_true, finish:
#             every check prints "ok - ..." or "not ok - ..." with the
#             reason (expected vs got) and is counted; finish prints
#             "N passed, N failed" and returns 1 when anything failed.
#   HTTP      http METHOD URL [BODY] [curl args...] sends one request and
#             keeps the answer in HTTP_STATUS, HTTP_BODY and a headers file;
#             expect_status, expect_json, expect_jq, expect_header,
#             expect_header_match, expect_no_header and expect_problem then
#             read it.
#   processes free_port, start_redis, start_monolith, wait_for_http,
#             stop_pid. Every process started here is recorded, and an EXIT
#             trap stops them all by pid, even when a check fails or the
#             script is interrupted.
#
# Everything a script writes (logs, redis data, response files) goes under
# $TEST_DIR, a fresh temporary directory. It is removed at exit when every
# check passed, and kept (its path printed) when one failed or KEEP_LOGS=1.
#
# Traffic goes to 127.0.0.1 only. Readiness is always polled with a bounded
# number of tries; nothing sleeps and hopes.

TESTS_PASSED=0
TESTS_FAILED=0
CURRENT_STEP=""

TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kit-test.XXXXXX")
STARTED_PIDS=()        # every process start_* launched, in start order
declare -A PID_NAMES=() # pid -> a name for messages

# How long readiness polls may take: POLL_TRIES x POLL_INTERVAL seconds.
# The AddressSanitizer build starts slower, hence the generous bound.
POLL_TRIES=${POLL_TRIES:-300}
POLL_INTERVAL=${POLL_INTERVAL:-0.05}

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

# step DESCRIPTION: names what the following checks are about.
step() {
	CURRENT_STEP=$1
}

# Prints a section header (a comment in the output, so TAP readers skip it).
section() {
	printf '\n# --- %s\n' "$1"
}

_label() {
	if [ -n "$CURRENT_STEP" ]; then
		printf '%s: %s' "$CURRENT_STEP" "$1"
	else
		printf '%s' "$1"
	fi
}

# pass DESCRIPTION
pass() {
	TESTS_PASSED=$((TESTS_PASSED + 1))
	printf 'ok - %s\n' "$(_label "$1")"
}

# fail DESCRIPTION REASON
fail() {
	TESTS_FAILED=$((TESTS_FAILED + 1))
	printf 'not ok - %s\n' "$(_label "$1")"
	if [ -n "${2:-}" ]; then
		printf '#   %s\n' "$2"
	fi
}

# check_eq DESCRIPTION EXPECTED GOT
check_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1" "expected '$2', got '$3'"
	fi
}

# check_match DESCRIPTION EXTENDED_REGEX GOT
check_match() {
	if [[ $3 =~ $2 ]]; then
		pass "$1"
	else
		fail "$1" "expected a match for /$2/, got '$3'"
	fi
}

# check_true DESCRIPTION COMMAND...: passes when the command succeeds.
check_true() {
	local description=$1
	shift
	if "$@"; then
		pass "$description"
	else
		fail "$description" "command failed: $*"
	fi
}

# finish: stops every process still running, says where the logs are when
# they are kept, and prints the totals as the last line. Returns 1 when a
# check failed.
FINISHED=0
finish() {
	stop_all
	FINISHED=1
	if [ "${KEEP_LOGS:-0}" = "1" ] || [ "$TESTS_FAILED" -gt 0 ]; then
		echo "# logs kept in $TEST_DIR"
	fi
	echo
	echo "$TESTS_PASSED passed, $TESTS_FAILED failed"
	[ "$TESTS_FAILED" -eq 0 ]
}

# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

HTTP_STATUS=""
HTTP_BODY=""
HTTP_ERROR=""
HTTP_HEADERS_FILE="$TEST_DIR/last.headers"
HTTP_BODY_FILE="$TEST_DIR/last.body"
HTTP_COUNT=0

# http METHOD URL [BODY] [extra curl args...]
#
# Sends one request with curl (redirects are not followed) and keeps:
#   HTTP_STATUS   "201", or "000" when no answer came (HTTP_ERROR says why)
#   HTTP_BODY     the response body
#   the headers   read them with `header NAME`
# A non-empty BODY is sent as is, with Content-Type: application/json unless
# the extra arguments set a Content-Type of their own. A BODY starting with
# '@' names a file to send (curl's convention).
http() {
	local method=$1 url=$2 body=${3:-}
	shift 2
	[ $# -gt 0 ] && shift
	local args=(--silent --show-error --max-time 20 --request "$method"
		--output "$HTTP_BODY_FILE" --dump-header "$HTTP_HEADERS_FILE"
		--write-out '%{http_code}')
	if [ -n "$body" ]; then
		local arg has_type=0
		for arg in "$@"; do
			if [[ ${arg,,} == content-type:* ]]; then
				has_type=1
			fi
		done
		if [ $has_type -eq 0 ]; then
			args+=(--header 'Content-Type: application/json')
		fi
		args+=(--data-binary "$body")
	fi
	HTTP_COUNT=$((HTTP_COUNT + 1))
	: >"$HTTP_BODY_FILE"
	: >"$HTTP_HEADERS_FILE"
	HTTP_ERROR=""
	HTTP_STATUS=$(curl "${args[@]}" "$@" "$url" 2>"$TEST_DIR/last.curl-error") ||
		HTTP_ERROR=$(cat "$TEST_DIR/last.curl-error")
	HTTP_STATUS=${HTTP_STATUS:-000}
	HTTP_BODY=$(cat "$HTTP_BODY_FILE")
}

# header NAME: the value of response header NAME (case-insensitive; the
# last one when repeated), without the trailing CR. Empty when absent.
header() {
	local name=${1,,}
	tr -d '\r' <"$HTTP_HEADERS_FILE" |
		awk -v name="$name" '
			index($0, ":") { n = tolower(substr($0, 1, index($0, ":") - 1))
				if (n == name) { v = substr($0, index($0, ":") + 1)
					sub(/^[ \t]+/, "", v); value = v; found = 1 } }
			END { if (found) print value }'
}

# has_header NAME: succeeds when the response carries header NAME.
has_header() {
	tr -d '\r' <"$HTTP_HEADERS_FILE" | grep -qi "^$1:"
}

_got_status() {
	if [ "$HTTP_STATUS" = "000" ]; then
		printf '000 (no answer: %s)' "$HTTP_ERROR"
	else
		printf '%s' "$HTTP_STATUS"
	fi
}

# expect_status CODE
expect_status() {
	if [ "$HTTP_STATUS" = "$1" ]; then
		pass "status $1"
	else
		fail "status $1" "expected $1, got $(_got_status); body: ${HTTP_BODY:0:300}"
	fi
}

# expect_json JQ_PATH EXPECTED: the body's value at JQ_PATH, as jq -r prints
# it, equals EXPECTED.
expect_json() {
	local got
	got=$(jq -r "$1" <<<"$HTTP_BODY" 2>/dev/null) || got="(body is not JSON: ${HTTP_BODY:0:200})"
	check_eq "$1 == $2" "$2" "$got"
}

# expect_jq DESCRIPTION JQ_FILTER [jq args...]: jq -e FILTER is true on the
# body. Extra arguments go to jq (e.g. --arg code "$CODE").
expect_jq() {
	local description=$1 filter=$2
	shift 2
	if jq -e "$@" "$filter" <<<"$HTTP_BODY" >/dev/null 2>&1; then
		pass "$description"
	else
		fail "$description" "jq '$filter' is not true on: ${HTTP_BODY:0:300}"
	fi
}

# expect_header NAME VALUE: the header is present with exactly VALUE.
expect_header() {
	if has_header "$1"; then
		check_eq "header $1: $2" "$2" "$(header "$1")"
	else
		fail "header $1: $2" "no $1 header"
	fi
}

# expect_header_match NAME EXTENDED_REGEX
expect_header_match() {
	if has_header "$1"; then
		check_match "header $1 ~ /$2/" "$2" "$(header "$1")"
	else
		fail "header $1 ~ /$2/" "no $1 header"
	fi
}

# expect_no_header NAME
expect_no_header() {
	if has_header "$1"; then
		fail "no $1 header" "got '$1: $(header "$1")'"
	else
		pass "no $1 header"
	fi
}

# The problem "type" slug for each status (docs/api.md).
declare -A PROBLEM_SLUGS=(
	[400]=bad-request [401]=unauthorized [403]=forbidden [404]=not-found
	[405]=method-not-allowed [409]=conflict [413]=payload-too-large
	[415]=unsupported-media-type [429]=rate-limited [500]=internal-error
	[502]=bad-gateway [503]=unavailable [504]=gateway-timeout
)

# expect_problem CODE: an RFC 9457 answer: the status, then one check of the
# rest: Content-Type application/problem+json and a body with type, title,
# status, detail and request_id, where .status == CODE, .type ends with the
# status's slug (docs/api.md) and .request_id equals the X-Request-Id header.
expect_problem() {
	local code=$1 slug=${PROBLEM_SLUGS[$1]:-} content_type wrong=""
	expect_status "$code"
	content_type=$(header Content-Type)
	if [[ $content_type != application/problem+json* ]]; then
		wrong="Content-Type is '$content_type'; "
	fi
	if ! jq -e '(.type|type=="string") and (.title|type=="string") and
		(.status|type=="number") and (.detail|type=="string") and
		(.request_id|type=="string")' <<<"$HTTP_BODY" >/dev/null 2>&1; then
		wrong+="type, title, status, detail or request_id is missing; "
	fi
	if ! jq -e '.status == ($code|tonumber)' --arg code "$code" <<<"$HTTP_BODY" >/dev/null 2>&1; then
		wrong+=".status is not $code; "
	fi
	if [ -n "$slug" ] && ! jq -e '.type | endswith("/" + $slug)' --arg slug "$slug" \
		<<<"$HTTP_BODY" >/dev/null 2>&1; then
		wrong+=".type does not end with /$slug; "
	fi
	if ! jq -e '.request_id == $id' --arg id "$(header X-Request-Id)" \
		<<<"$HTTP_BODY" >/dev/null 2>&1; then
		wrong+=".request_id is not the X-Request-Id header; "
	fi
	if [ -z "$wrong" ]; then
		pass "problem+json ${slug:-$code}"
	else
		fail "problem+json ${slug:-$code}" "${wrong}body: ${HTTP_BODY:0:300}"
	fi
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$state" != "Z" ]
}

# port_in_use PORT: something listens on 127.0.0.1:PORT (or on every address).
port_in_use() {
	[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# free_port: prints a TCP port nobody listens on. The kernel picks it (bind
# to port 0) when python3 is there; otherwise a random one that ss shows
# free. Either way another process could take it before we do: the start_*
# helpers notice, because the server then fails to start.
free_port() {
	local port
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' &&
			return 0
	fi
	for _ in $(seq 1 100); do
		port=$((20000 + RANDOM % 30000))
		if ! port_in_use "$port"; then
			echo "$port"
			return 0
		fi
	done
	echo "free_port: no free port found" >&2
	return 1
}

# _record_pid PID NAME
_record_pid() {
	STARTED_PIDS+=("$1")
	PID_NAMES[$1]=$2
}

# start_redis PORT DIR: starts redis-server on 127.0.0.1:PORT with its data
# (append-only file) in DIR, waits until it answers PING and sets REDIS_PID.
# Returns 1 when it does not come up (its log is printed).
start_redis() {
	local port=$1 dir=$2
	mkdir -p "$dir"
	redis-server --port "$port" --bind 127.0.0.1 --daemonize no \
		--appendonly yes --appendfsync everysec --dir "$dir" \
		--save '' >>"$dir/redis.log" 2>&1 &
	REDIS_PID=$!
	_record_pid "$REDIS_PID" "redis-server:$port"
	for _ in $(seq 1 "$POLL_TRIES"); do
		if ! pid_alive "$REDIS_PID"; then
			echo "# redis-server on port $port exited; its log:" >&2
			sed 's/^/#   /' "$dir/redis.log" >&2
			return 1
		fi
		if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then
			return 0
		fi
		sleep "$POLL_INTERVAL"
	done
	echo "# redis-server on port $port did not answer PING" >&2
	return 1
}

# Environment variables passed through to the servers we start; everything
# else comes from the start_* arguments, so a variable left in the caller's
# shell (RATE_LIMIT_FREE, ...) cannot change what a test sees.
PASS_THROUGH_ENV=(PATH HOME LANG TMPDIR ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
	ASAN_SYMBOLIZER_PATH)

# start_server NAME BINARY LOG_PREFIX [VAR=VALUE...]: starts BINARY in the
# background with exactly the given environment (plus PASS_THROUGH_ENV);
# stdout goes to LOG_PREFIX.out, stderr to LOG_PREFIX.err. Sets SERVER_PID.
# Readiness is the caller's business (wait_for_http).
start_server() {
	local name=$1 binary=$2 log_prefix=$3 var
	shift 3
	local env_args=()
	for var in "${PASS_THROUGH_ENV[@]}"; do
		if [ -n "${!var:-}" ]; then
			env_args+=("$var=${!var}")
		fi
	done
	env -i "${env_args[@]}" "$@" "$binary" >>"$log_prefix.out" 2>>"$log_prefix.err" &
	SERVER_PID=$!
	_record_pid "$SERVER_PID" "$name"
}

# wait_for_http URL [PID]: polls URL until it answers 200, giving up after
# POLL_TRIES tries, or at once when PID (the server) has exited.
wait_for_http() {
	local url=$1 pid=${2:-} code
	for _ in $(seq 1 "$POLL_TRIES"); do
		if [ -n "$pid" ] && ! pid_alive "$pid"; then
			echo "# ${PID_NAMES[$pid]:-process $pid} exited before $url answered" >&2
			return 1
		fi
		code=$(curl --silent --output /dev/null --max-time 2 \
			--write-out '%{http_code}' "$url" 2>/dev/null) || true
		if [ "$code" = "200" ]; then
			return 0
		fi
		sleep "$POLL_INTERVAL"
	done
	echo "# $url did not answer 200 after $POLL_TRIES tries (last: $code)" >&2
	return 1
}

# start_monolith BINARY LOG_PREFIX PORT [VAR=VALUE...]: starts a monolith
# listening on 127.0.0.1:PORT with the given environment and polls
# /health until it answers 200. Sets MONOLITH_PID. Returns 1 (after
# printing the end of its stderr) when it exits or never gets healthy.
start_monolith() {
	local binary=$1 log_prefix=$2 port=$3
	shift 3
	start_server "monolith:$port" "$binary" "$log_prefix" \
		PORT="$port" BIND_ADDRESS=127.0.0.1 "$@"
	MONOLITH_PID=$SERVER_PID
	if ! wait_for_http "http://127.0.0.1:$port/health" "$MONOLITH_PID"; then
		echo "# the end of $log_prefix.err:" >&2
		tail -n 20 "$log_prefix.err" 2>/dev/null | sed 's/^/#   /' >&2
		return 1
	fi
}

# stop_pid PID: SIGTERM, poll until the process is gone, SIGKILL when it
# takes longer than the poll bound. Sets STOPPED_STATUS to its exit status
# (143 or 137 when a signal ended it). Safe to call twice.
stop_pid() {
	local pid=$1
	STOPPED_STATUS=""
	if [ -z "${PID_NAMES[$pid]+set}" ]; then
		return 0 # not ours, or already stopped
	fi
	if pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 "$POLL_TRIES"); do
			pid_alive "$pid" || break
			sleep "$POLL_INTERVAL"
		done
		if pid_alive "$pid"; then
			echo "# ${PID_NAMES[$pid]} ignored SIGTERM; sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	# Reap it (it is our child) and keep its exit status.
	if wait "$pid" 2>/dev/null; then
		STOPPED_STATUS=0
	else
		STOPPED_STATUS=$?
	fi
	unset "PID_NAMES[$pid]"
	local kept=() p
	for p in "${STARTED_PIDS[@]}"; do
		[ "$p" = "$pid" ] || kept+=("$p")
	done
	STARTED_PIDS=("${kept[@]}")
}

# stop_all: stops every process still recorded, newest first.
stop_all() {
	local i
	for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${STARTED_PIDS[$i]}"
	done
}

# The exit trap: stop what we started, then keep or remove TEST_DIR.
_cleanup() {
	local status=$?
	trap - EXIT INT TERM
	stop_all
	if [ "${KEEP_LOGS:-0}" = "1" ] || [ "$TESTS_FAILED" -gt 0 ] || [ "$status" -ne 0 ]; then
		# finish has already said where the logs are.
		[ "$FINISHED" = "1" ] || echo "# logs kept in $TEST_DIR" >&2
	else
		rm -rf "$TEST_DIR"
	fi
	exit "$status"
}
trap _cleanup EXIT
trap 'echo "# interrupted" >&2; exit 130' INT
trap 'echo "# terminated" >&2; exit 143' TERM

# sanitizer_reports FILE...: prints the files holding an AddressSanitizer,
# LeakSanitizer or UBSan report (empty when none does).
sanitizer_reports() {
	grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$@" 2>/dev/null || true
}
