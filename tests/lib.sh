# shellcheck shell=bash disable=SC2016,SC2034
# tests/lib.sh - helpers shared by the black-box test scripts (source it).
#
# What it gives a test script:
#   checks    step, pass, fail, check_eq, check_match, check_true, check_tools, finish:
#             every check prints "ok - ..." or "not ok - ..." with the
#             reason (expected vs got) and is counted; finish prints
#             "N passed, N failed" and returns 1 when anything failed.
#   HTTP      http METHOD URL [BODY] [curl args...] sends one request and
#             keeps the answer in HTTP_STATUS, HTTP_BODY, HTTP_TIME and a
#             headers file; expect_status, expect_json, expect_jq,
#             expect_header, expect_header_match, expect_no_header and
#             expect_problem then read it.
#   numbers   check_num (compare numbers, floats too), metric_sum (add up
#             the series of one Prometheus family), poll_until (retry a
#             command until it succeeds, for at most N seconds).
#   tokens    b64url, make_token: JWTs built with openssl, forged ones too.
#   processes free_port, start_redis, start_service (any kit server: polls
#             its /health), start_monolith, start_gateway, wait_for_http,
#             stop_pid, stop_pids (several at once), kill_pid (SIGKILL: a
#             crash). Every process started here is recorded, and an EXIT
#             trap stops them all by pid, even when a check fails or the
#             script is interrupted.
#   Phase 3   (at the end) header_values, has_header_value (a header that
#             comes twice), free_udp_port, start_program (any other
#             program), start_nginx (the native nginx config in a
#             directory of TEST_DIR, polls /nginx-health), start_sink
#             (tests/jaeger_sink.py on kernel-picked ports), start_fixture
#             (tests/upstream_fixture.py, a scripted upstream).
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

# check_num DESCRIPTION GOT OP LIMIT: GOT and LIMIT are numbers (integers
# or decimals, as Prometheus and curl print them); OP is one of
# < <= > >= ==. Fails when GOT is not a number.
check_num() {
	local description=$1 got=$2 op=$3 limit=$4
	if [[ ! $got =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
		fail "$description" "expected a number $op $limit, got '$got'"
	elif awk -v a="$got" -v b="$limit" -v op="$op" 'BEGIN {
		if (op == "<") exit !(a + 0 < b + 0)
		if (op == "<=") exit !(a + 0 <= b + 0)
		if (op == ">") exit !(a + 0 > b + 0)
		if (op == ">=") exit !(a + 0 >= b + 0)
		if (op == "==") exit !(a + 0 == b + 0)
		exit 2 }'; then
		pass "$description"
	else
		fail "$description" "expected $op $limit, got $got"
	fi
}

# poll_until SECONDS COMMAND...: runs COMMAND every POLL_INTERVAL until it
# succeeds (returns 0) or SECONDS have passed (returns 1). POLL_ELAPSED is
# then the time it took, in seconds with milliseconds ("0.350"). For
# things that happen in the background (a click delivered, a reconnect):
# the bound says how long is too long.
POLL_ELAPSED=""
poll_until() {
	local limit_us start_us now_us
	limit_us=$(awk -v s="$1" 'BEGIN { printf "%d", s * 1000000 }')
	shift
	start_us=${EPOCHREALTIME/[.,]/}
	while :; do
		if "$@"; then
			now_us=${EPOCHREALTIME/[.,]/}
			POLL_ELAPSED=$(awk -v us=$((now_us - start_us)) 'BEGIN { printf "%.3f", us / 1e6 }')
			return 0
		fi
		now_us=${EPOCHREALTIME/[.,]/}
		if [ $((now_us - start_us)) -ge "$limit_us" ]; then
			POLL_ELAPSED=$(awk -v us=$((now_us - start_us)) 'BEGIN { printf "%.3f", us / 1e6 }')
			return 1
		fi
		sleep "$POLL_INTERVAL"
	done
}

# metric_sum TEXT NAME [LABEL="VALUE"...]: the sum of every series of
# metric NAME in the Prometheus text TEXT whose labels include each
# LABEL="VALUE" given (exactly, quotes included). Prints nothing when no
# series matches, so "absent" and "0" stay different.
#   metric_sum "$METRICS" gateway_upstream_requests_total 'upstream="users"'
metric_sum() {
	local text=$1 name=$2
	shift 2
	awk -v name="$name" -v filters="$*" '
		BEGIN { n = split(filters, wanted, " ") }
		/^#/ || NF == 0 { next }
		{
			line = $0
			brace = index(line, "{")
			if (brace > 0) {
				series = substr(line, 1, brace - 1)
				end = index(line, "} ")
				labels = substr(line, brace, end - brace + 1)
				rest = substr(line, end + 2)
			} else {
				series = $1
				labels = ""
				rest = $2
			}
			if (series != name)
				next
			for (i = 1; i <= n; i++)
				if (index(labels, wanted[i]) == 0)
					next
			split(rest, value, " ")
			sum += value[1]
			found = 1
		}
		END { if (found) printf "%.15g\n", sum }' <<<"$text"
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
HTTP_TIME=""
HTTP_HEADERS_FILE="$TEST_DIR/last.headers"
HTTP_BODY_FILE="$TEST_DIR/last.body"
HTTP_COUNT=0

# http METHOD URL [BODY] [extra curl args...]
#
# Sends one request with curl (redirects are not followed) and keeps:
#   HTTP_STATUS   "201", or "000" when no answer came (HTTP_ERROR says why)
#   HTTP_BODY     the response body, as text (NUL bytes dropped; the exact
#                 bytes are in $HTTP_BODY_FILE)
#   HTTP_TIME     seconds the exchange took, as curl measured it ("0.004213")
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
		--write-out '%{http_code} %{time_total}')
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
	local written
	written=$(curl "${args[@]}" "$@" "$url" 2>"$TEST_DIR/last.curl-error") ||
		HTTP_ERROR=$(cat "$TEST_DIR/last.curl-error")
	HTTP_STATUS=${written%% *}
	HTTP_STATUS=${HTTP_STATUS:-000}
	HTTP_TIME=${written#* }
	# tr, not cat: a binary body would make bash warn about NUL bytes.
	HTTP_BODY=$(tr -d '\000' <"$HTTP_BODY_FILE")
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

# our_child PID: PID is alive and a child of this shell. A process that
# ended and was reaped frees its number, and with pid_max at 32768 and
# thousands of curl runs per suite, the number soon belongs to a process of
# another suite: a signal sent by number alone once killed a neighbour's
# server. So the library signals only its own children.
our_child() {
	pid_alive "$1" && [ "$(awk '{ print $4 }' "/proc/$1/stat" 2>/dev/null)" = "$BASHPID" ]
}

# port_in_use PORT: something listens on 127.0.0.1:PORT (or on every address).
port_in_use() {
	[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# Ports. Suites run side by side (tests/run.sh), so "a port the kernel
# says is free" is not enough: two scripts could be handed the same one
# between the check and the bind, and any outgoing connection may take a
# port from the kernel's ephemeral range at any time. So every script takes
# its ports from a block of PORT_BLOCK_SIZE that is its own: below that
# range (no outgoing connection ever gets one), claimed with an flock(1) on
# a lock file under PORT_LOCK_DIR that this shell holds until it exits (and
# the servers it started, which inherit the descriptor, until they do), so
# no other script, of this run or of anyone else's, can claim it. Inside
# the block, free_port hands the ports out in turn, skipping any that
# something else listens on. The next one to hand out is kept in a file,
# since free_port runs in $(...), a subshell.
PORT_BLOCK_SIZE=100
PORT_LOCK_DIR=${PORT_LOCK_DIR:-/tmp/kit-test-ports}
PORT_BLOCK_START=""
PORT_NEXT_FILE="$TEST_DIR/.next-port"

# _claim_port_block: sets PORT_BLOCK_START to the first port of a block no
# other script holds, and keeps its lock open on a descriptor of this
# shell. Returns 1 when none is free (free_port then says so).
_claim_port_block() {
	local range low high first count block start lock
	range=$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || range="32768 60999"
	read -r low high <<<"$range"
	# Below the ephemeral range from 20000 (clear of the usual service
	# ports: 6379, 8000-8085, 16686...), or above it when that is too
	# narrow.
	first=20000
	count=$(((low - first) / PORT_BLOCK_SIZE))
	if [ "$count" -lt 10 ]; then
		first=$((high + 1))
		count=$(((65536 - first) / PORT_BLOCK_SIZE))
	fi
	[ "$count" -gt 0 ] || return 1
	mkdir -p "$PORT_LOCK_DIR" 2>/dev/null || return 1
	# Start at a random block, so that scripts starting together rarely
	# try the same locks.
	block=$((RANDOM % count))
	for _ in $(seq 1 "$count"); do
		start=$((first + block * PORT_BLOCK_SIZE))
		lock="$PORT_LOCK_DIR/$start.lock"
		# The braces keep 2>/dev/null to this exec: on exec itself it
		# would send the whole script's stderr there for good.
		if { exec {PORT_LOCK_FD}>>"$lock"; } 2>/dev/null; then
			if flock -n "$PORT_LOCK_FD"; then
				PORT_BLOCK_START=$start
				echo 0 >"$PORT_NEXT_FILE"
				return 0
			fi
			exec {PORT_LOCK_FD}>&-
		fi
		block=$(((block + 1) % count))
	done
	return 1
}
if ! command -v flock >/dev/null 2>&1 || ! _claim_port_block; then
	echo "# no block of test ports could be claimed under $PORT_LOCK_DIR;" \
		"free_port falls back to ports the kernel picks" >&2
fi

# free_port: prints a TCP port for a server of this script: the next one
# of its block that nobody listens on. Without a block (see above), a port
# the kernel picks (bind to port 0), which another process could take
# before the server binds it: then the server fails to start, and the
# start_* helper says so.
free_port() {
	local next port
	if [ -z "$PORT_BLOCK_START" ]; then
		python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
		return
	fi
	next=$(cat "$PORT_NEXT_FILE")
	while [ "$next" -lt "$PORT_BLOCK_SIZE" ]; do
		port=$((PORT_BLOCK_START + next))
		next=$((next + 1))
		if ! port_in_use "$port"; then
			echo "$next" >"$PORT_NEXT_FILE"
			echo "$port"
			return 0
		fi
	done
	echo "free_port: all $PORT_BLOCK_SIZE ports from $PORT_BLOCK_START are taken" >&2
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
# shell (RATE_LIMIT_FREE, ...) cannot change what a test sees. SERVER_CORE
# is the exception on purpose: SERVER_CORE=threads runs a script's gateways
# on civetweb instead of the event loop (tests/run.sh does that once).
PASS_THROUGH_ENV=(PATH HOME LANG TMPDIR ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
	ASAN_SYMBOLIZER_PATH XDG_CACHE_HOME SERVER_CORE)

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

# start_service NAME BINARY LOG_PREFIX PORT [VAR=VALUE...]: starts a kit
# server (the monolith, the gateway, a Phase 2 service) listening on
# 127.0.0.1:PORT with the given environment, and polls its /health until it
# answers 200. Sets SERVICE_PID. Returns 1 (after printing the end of its
# stderr) when it exits or never gets healthy.
start_service() {
	local name=$1 binary=$2 log_prefix=$3 port=$4
	shift 4
	start_server "$name:$port" "$binary" "$log_prefix" \
		PORT="$port" BIND_ADDRESS=127.0.0.1 "$@"
	SERVICE_PID=$SERVER_PID
	if ! wait_for_http "http://127.0.0.1:$port/health" "$SERVICE_PID"; then
		echo "# the end of $log_prefix.err:" >&2
		tail -n 20 "$log_prefix.err" 2>/dev/null | sed 's/^/#   /' >&2
		return 1
	fi
}

# start_monolith BINARY LOG_PREFIX PORT [VAR=VALUE...]: start_service for
# the monolith; sets MONOLITH_PID.
start_monolith() {
	local status=0
	start_service monolith "$@" || status=1
	MONOLITH_PID=$SERVICE_PID
	return $status
}

# start_gateway BINARY LOG_PREFIX PORT [VAR=VALUE...]: start_service for a
# gateway; sets GATEWAY_PID. Its /health answers 200 while an upstream is
# down ("degraded"), so it is ready as soon as it listens.
start_gateway() {
	local status=0
	start_service gateway "$@" || status=1
	GATEWAY_PID=$SERVICE_PID
	return $status
}

# _forget_pid PID: drops PID from the processes the exit trap stops.
_forget_pid() {
	local pid=$1 kept=() p
	unset "PID_NAMES[$pid]"
	for p in "${STARTED_PIDS[@]}"; do
		[ "$p" = "$pid" ] || kept+=("$p")
	done
	STARTED_PIDS=("${kept[@]}")
}

# stop_pids PID...: stops several processes at once: SIGTERM (and SIGCONT,
# in case a test left one stopped with SIGSTOP) to all of them, then one
# poll until all are gone, SIGKILL for those that take longer than the poll
# bound, STOP_TIMEOUT seconds of wall time (not a number of tries, which a
# busy machine stretches). A server finishes the requests it has in flight
# before it exits (up to 5 s; the url-shortener then delivers its queued
# clicks for up to 2 s), and under ASan LeakSanitizer then checks the whole
# heap at exit: on a busy machine that was seen to take past 15 s. So 60 s:
# long enough for a slow stop, short enough to name one that hangs.
# Stopping several one after the other would add up; together they cost
# the slowest one. Each exit status goes to STOPPED_STATUSES[PID] (143 or
# 137 when a signal ended it). Pids this library did not start are ignored.
STOP_TIMEOUT=${STOP_TIMEOUT:-60}
declare -A STOPPED_STATUSES=()
stop_pids() {
	local pid ours=() any_alive start_us=${EPOCHREALTIME/[.,]/} waited lsan_hung=0
	for pid in "$@"; do
		[ -n "${PID_NAMES[$pid]+set}" ] || continue # not ours, or stopped
		ours+=("$pid")
		if our_child "$pid"; then
			kill -TERM "$pid" 2>/dev/null || true
			kill -CONT "$pid" 2>/dev/null || true
		fi
	done
	while :; do
		any_alive=0
		for pid in "${ours[@]}"; do
			if our_child "$pid"; then
				any_alive=1
				break
			fi
		done
		[ "$any_alive" = 0 ] && break
		waited=$(((${EPOCHREALTIME/[.,]/} - start_us) / 1000000))
		[ "$waited" -ge "$STOP_TIMEOUT" ] && break
		sleep "$POLL_INTERVAL"
	done
	for pid in "${ours[@]}"; do
		if our_child "$pid"; then
			echo "# ${PID_NAMES[$pid]} still runs ${STOP_TIMEOUT} s after SIGTERM;" \
				"sending SIGKILL. Its threads and child processes:" >&2
			# STAT t: stopped by a tracer (LeakSanitizer's, at exit,
			# is a child process of the same name).
			ps -L -o tid=,stat=,wchan:24=,comm= -p "$pid" 2>&1 | sed 's/^/#   thread /' >&2
			ps -o pid=,stat=,wchan:24=,comm= --ppid "$pid" 2>&1 | sed 's/^/#   child  /' >&2
			lsan_hung=0
			_lsan_tracer_hung "$pid" && lsan_hung=1
			kill -KILL "$pid" 2>/dev/null || true
		fi
		# Reap it (it is our child) and keep its exit status.
		if wait "$pid" 2>/dev/null; then
			STOPPED_STATUSES[$pid]=0
		else
			STOPPED_STATUSES[$pid]=$?
		fi
		[ "$lsan_hung" = 1 ] && STOPPED_STATUSES[$pid]=lsan-hung
		lsan_hung=0
		_forget_pid "$pid"
	done
}

# _lsan_tracer_hung PID: whether PID, a sanitized build past its SIGTERM,
# is stuck in LeakSanitizer's check at exit rather than in its own code:
# a child process of the same program (LSan's tracer, a clone that
# ptrace-attaches to every thread) waiting in wait4 for a thread that does
# not stop, while the program yields in a loop for the tracer to finish.
# Seen once in CI on a loaded machine, never in 400 tries here; nothing the
# program does can end it. Prints the kernel's stacks for a later look.
_lsan_tracer_hung() {
	local pid=$1 child exe
	[ -n "${ASAN_OPTIONS:-}" ] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
		[ "$(readlink "/proc/$child/exe" 2>/dev/null)" = "$exe" ] || continue
		# wait4 is system call 61 on x86_64.
		[ "$(cut -d ' ' -f 1 "/proc/$child/syscall" 2>/dev/null)" = 61 ] || continue
		echo "# LeakSanitizer's tracer (pid $child) waits in wait4 for a thread of $pid that never stops;" \
			"its leak check cannot finish. Kernel stacks:" >&2
		cat "/proc/$child/stack" "/proc/$pid"/task/*/stack 2>/dev/null | sed 's/^/#     /' >&2
		return 0
	done
	return 1
}

# check_exits_0 DESCRIPTION STATUS: STATUS (from STOPPED_STATUSES) is 0.
# "lsan-hung" (above) is a skip, said as such: the program had stopped its
# own work, and the leak check that was to run is LeakSanitizer's to lose.
check_exits_0() {
	if [ "$2" = lsan-hung ]; then
		pass "$1 # SKIP LeakSanitizer's tracer hung at exit: exit status and leak check unknown"
	else
		check_eq "$1" 0 "$2"
	fi
}

# stop_pid PID: stop_pids for one process; its exit status is also in
# STOPPED_STATUS. Safe to call twice.
stop_pid() {
	STOPPED_STATUS=""
	stop_pids "$1"
	STOPPED_STATUS=${STOPPED_STATUSES[$1]:-}
}

# kill_pid PID: SIGKILL, as a crash or the OOM killer would: no clean-up,
# no goodbye to open connections. Reaps the process.
kill_pid() {
	local pid=$1
	[ -n "${PID_NAMES[$pid]+set}" ] || return 0
	our_child "$pid" && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	STOPPED_STATUS=137
	_forget_pid "$pid"
}

# stop_all: stops every process still recorded, all at once.
stop_all() {
	[ ${#STARTED_PIDS[@]} -gt 0 ] || return 0
	stop_pids "${STARTED_PIDS[@]}"
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

# check_tools TOOL...: one check per tool (a command name or a path) that
# it is installed.
check_tools() {
	local tool
	for tool in "$@"; do
		if command -v "$tool" >/dev/null; then
			pass "$tool is installed"
		else
			fail "$tool is installed" "not found (run scripts/deps.sh)"
		fi
	done
}

# require_binaries DESCRIPTION BINARY...: one check that every binary is
# built; when one is missing, the script cannot go on: it stops here.
require_binaries() {
	local description=$1 binary missing=""
	shift
	for binary in "$@"; do
		[ -x "$binary" ] || missing="$missing $binary"
	done
	if [ -n "$missing" ]; then
		fail "$description" "missing:$missing (run make first)"
		finish
		exit 1
	fi
}

# must_start DESCRIPTION COMMAND...: a start-up step the rest of the script
# cannot do without: a passing check, or a failing one and a stop here.
must_start() {
	local description=$1
	shift
	if "$@"; then
		pass "$description"
	else
		fail "$description" "see the logs in $TEST_DIR"
		finish
		exit 1
	fi
}

# check_clean_stop: the end of a script. SERVER_NAMES (an associative array,
# pid -> name) lists the servers that must stop on SIGTERM with exit 0 (a
# leak found at exit under ASan makes it non-zero); then everything else
# is stopped and every log is searched for sanitizer reports.
check_clean_stop() {
	local pid
	stop_pids "${!SERVER_NAMES[@]}"
	for pid in "${!SERVER_NAMES[@]}"; do
		check_exits_0 "${SERVER_NAMES[$pid]} exits 0" "${STOPPED_STATUSES[$pid]:-not stopped}"
	done
	stop_all

	step "sanitizer reports"
	check_no_sanitizer_reports
}

# check_no_sanitizer_reports: one passing check when no server log in
# TEST_DIR holds an AddressSanitizer, LeakSanitizer or UBSan report, else
# one failing check per log that does, quoting its first line. Call it
# after stop_all, so reports written at exit (leaks) are in the logs.
check_no_sanitizer_reports() {
	local reports report
	reports=$(sanitizer_reports "$TEST_DIR"/*.err "$TEST_DIR"/*.out)
	if [ -z "$reports" ]; then
		pass "no sanitizer report in any log"
		return
	fi
	for report in $reports; do
		fail "no sanitizer report in $(basename "$report")" \
			"$(grep -m1 -E 'ERROR: |runtime error:' "$report")"
	done
}

# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------

# b64url: base64url without padding (RFC 7515), stdin to stdout.
b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# make_token ALG SECRET PAYLOAD_JSON [HEADER_JSON]: a JWT signed with
# HMAC-SHA-256/384/512 (ALG HS256/HS384/HS512) or not at all (ALG none),
# built here with openssl so tests can forge what a server must refuse.
make_token() {
	local alg=$1 secret=$2 payload=$3 header=${4:-}
	local signing_input signature=""
	if [ -z "$header" ]; then
		header=$(jq -cn --arg alg "$alg" '{alg: $alg, typ: "JWT"}')
	fi
	signing_input="$(printf '%s' "$header" | b64url).$(printf '%s' "$payload" | b64url)"
	case $alg in
	HS256) signature=$(printf '%s' "$signing_input" | openssl dgst -sha256 -hmac "$secret" -binary | b64url) ;;
	HS384) signature=$(printf '%s' "$signing_input" | openssl dgst -sha384 -hmac "$secret" -binary | b64url) ;;
	HS512) signature=$(printf '%s' "$signing_input" | openssl dgst -sha512 -hmac "$secret" -binary | b64url) ;;
	none) ;;
	esac
	printf '%s.%s' "$signing_input" "$signature"
}

# tamper_token TOKEN: TOKEN with one character in the middle of its
# signature changed (not the last one: its low bits are padding and may
# decode the same).
tamper_token() {
	local token=$1 signature flipped
	signature=${token##*.}
	flipped=${signature:10:1}
	if [ "$flipped" = "A" ]; then flipped=B; else flipped=A; fi
	printf '%s' "${token%.*}.${signature:0:10}$flipped${signature:11}"
}

# ---------------------------------------------------------------------------
# Phase 3: more than one header, UDP ports, nginx, the trace sink
# ---------------------------------------------------------------------------

# header_values NAME: every value of response header NAME, one per line, in
# the order they came (a proxied answer can carry the same header twice:
# X-Instance from the gateway and from the service behind it).
header_values() {
	local name=${1,,}
	tr -d '\r' <"$HTTP_HEADERS_FILE" |
		awk -v name="$name" '
			index($0, ":") { n = tolower(substr($0, 1, index($0, ":") - 1))
				if (n == name) { v = substr($0, index($0, ":") + 1)
					sub(/^[ \t]+/, "", v); print v } }'
}

# has_header_value NAME VALUE: one of the NAME headers is exactly VALUE.
has_header_value() {
	header_values "$1" | grep -qxF -- "$2"
}

# free_udp_port: prints a UDP port nobody has bound (the kernel picks it).
free_udp_port() {
	python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_program NAME LOG_PREFIX COMMAND [ARGS...]: starts a program that is
# not a kit server (nginx, the trace sink) in the background with only the
# PASS_THROUGH_ENV environment; stdout to LOG_PREFIX.out, stderr to
# LOG_PREFIX.err. Sets SERVER_PID; the exit trap stops it.
start_program() {
	local name=$1 log_prefix=$2 var env_args=()
	shift 2
	for var in "${PASS_THROUGH_ENV[@]}"; do
		if [ -n "${!var:-}" ]; then
			env_args+=("$var=${!var}")
		fi
	done
	env -i "${env_args[@]}" "$@" >>"$log_prefix.out" 2>>"$log_prefix.err" </dev/null &
	SERVER_PID=$!
	_record_pid "$SERVER_PID" "$name"
}

# start_nginx PREFIX_DIR PORT GATEWAY_PORT...: Phase 3's native nginx config
# (scripts/nginx-native-conf.sh) in PREFIX_DIR, listening on 127.0.0.1:PORT
# and balancing over the gateways on 127.0.0.1:GATEWAY_PORT...; nginx runs
# in the foreground as this user (-g 'daemon off;', so the pid is the
# master's), its logs in PREFIX_DIR/logs/. Polls /nginx-health; sets
# NGINX_PID. Returns 1 (after printing its error log) when it does not
# come up.
start_nginx() {
	local prefix=$1 port=$2
	shift 2
	if ! bash scripts/nginx-native-conf.sh "$prefix" "$port" "$@" >&2; then
		echo "# scripts/nginx-native-conf.sh failed" >&2
		return 1
	fi
	start_program "nginx:$port" "$prefix/nginx" \
		nginx -p "$prefix" -c nginx.conf -e logs/error.log -g 'daemon off;'
	NGINX_PID=$SERVER_PID
	if ! wait_for_http "http://127.0.0.1:$port/nginx-health" "$NGINX_PID"; then
		echo "# nginx's error log:" >&2
		sed 's/^/#   /' "$prefix/logs/error.log" "$prefix/nginx.err" 2>/dev/null | tail -n 20 >&2
		return 1
	fi
}

# start_sink LOG_PREFIX OUT_FILE: tests/jaeger_sink.py, a decoder of what the
# kit sends to Jaeger that shares no code with it, listening where a Jaeger
# agent (Thrift over UDP, binary and compact) and collector (Thrift over
# HTTP) would, on ports the kernel picks. It writes one JSON line per span
# to OUT_FILE. Polls for its ready file (the JSON it also prints on its
# "ready" line), then sets SINK_PID, SINK_UDP_BINARY_PORT,
# SINK_UDP_COMPACT_PORT and SINK_HTTP_PORT. Returns 2 when the sink cannot
# run here (it exits 77: python3-thrift or thrift-compiler is missing), 1
# when it exits otherwise or is not ready in time. The first run fetches
# Jaeger's IDL once (see the sink), so the bound is 60 s.
start_sink() {
	local log_prefix=$1 out=$2 ready="$TEST_DIR/jaeger-sink.ready" status
	rm -f "$ready"
	start_program jaeger-sink "$log_prefix" python3 tests/jaeger_sink.py \
		--udp-binary 0 --udp-compact 0 --http 0 --out "$out" --ready-file "$ready"
	SINK_PID=$SERVER_PID
	poll_until 60 _sink_ready "$ready"
	if [ ! -s "$ready" ]; then
		if pid_alive "$SINK_PID"; then
			echo "# the trace sink was not ready after 60 s" >&2
			return 1
		fi
		wait "$SINK_PID"
		status=$?
		_forget_pid "$SINK_PID"
		echo "# the trace sink exited ($status); its stderr:" >&2
		sed 's/^/#   /' "$log_prefix.err" >&2
		[ "$status" -eq 77 ] && return 2
		return 1
	fi
	SINK_UDP_BINARY_PORT=$(jq -r '.udp_binary' "$ready")
	SINK_UDP_COMPACT_PORT=$(jq -r '.udp_compact' "$ready")
	SINK_HTTP_PORT=$(jq -r '.http' "$ready")
}

# _sink_ready FILE: the sink wrote FILE, or has exited (poll no more).
_sink_ready() {
	[ -s "$1" ] || ! pid_alive "$SINK_PID"
}

# start_fixture LOG_PREFIX PORT: tests/upstream_fixture.py, a scripted
# upstream for the gateway (echo, bodies of any size, a keep-alive
# connection dropped as it is reused, request counts at GET /stats), on
# 127.0.0.1:PORT, run by Debian's /usr/bin/python3 (standard library only).
# Polls for the "ready" line it prints once listening; sets FIXTURE_PID.
# Returns 1 (after printing its stderr) when it exits or is not ready after
# POLL_TRIES tries.
start_fixture() {
	local log_prefix=$1 port=$2
	start_program "upstream-fixture:$port" "$log_prefix" \
		/usr/bin/python3 tests/upstream_fixture.py "$port"
	FIXTURE_PID=$SERVER_PID
	for _ in $(seq 1 "$POLL_TRIES"); do
		if grep -qx ready "$log_prefix.out" 2>/dev/null; then
			return 0
		fi
		if ! pid_alive "$FIXTURE_PID"; then
			echo "# the upstream fixture on port $port exited; its stderr:" >&2
			sed 's/^/#   /' "$log_prefix.err" >&2
			return 1
		fi
		sleep "$POLL_INTERVAL"
	done
	echo "# the upstream fixture on port $port was not ready after $POLL_TRIES tries" >&2
	return 1
}

# ---------------------------------------------------------------------------
# A `make up` run of the test's own (tests/workshop.sh, doctor.sh, first_run.sh)
# ---------------------------------------------------------------------------

# use_own_run [DOWN_SCRIPT]: points scripts/up.sh, down.sh, service.sh and
# doctor.sh (which read these variables) at a run directory in TEST_DIR,
# KIT_RUN_DIR, and at ports the kernel says are free: REDIS_PORT, PORT,
# GATEWAY_PORT, ... (exported). RUN_TCP_PORTS and RUN_UDP_PORTS list them;
# GATEWAY3_PORT_LIST holds the three of GATEWAY3_PORTS. The exit trap then
# runs DOWN_SCRIPT (default scripts/down.sh) for that run before lib.sh's own
# clean-up, so a check that fails mid-run leaves nothing running.
use_own_run() {
	OWN_RUN_DOWN=${1:-scripts/down.sh}
	export KIT_RUN_DIR="$TEST_DIR/run"
	export REDIS_PORT PORT GATEWAY_PORT USERS_PORT URL_SHORTENER_PORT ANALYTICS_PORT NOTIFICATIONS_PORT \
		URL_SHORTENER_V2_PORT URL_SHORTENER_V2_CANARY_PORT URL_SHORTENER_B_PORT GATEWAY3_PORTS \
		NGINX_PORT JAEGER_AGENT_PORT SINK_UDP_COMPACT_PORT SINK_HTTP_PORT PROMETHEUS_PORT
	REDIS_PORT=$(free_port)
	PORT=$(free_port)
	GATEWAY_PORT=$(free_port)
	USERS_PORT=$(free_port)
	URL_SHORTENER_PORT=$(free_port)
	ANALYTICS_PORT=$(free_port)
	NOTIFICATIONS_PORT=$(free_port)
	URL_SHORTENER_V2_PORT=$(free_port)
	URL_SHORTENER_V2_CANARY_PORT=$(free_port)
	URL_SHORTENER_B_PORT=$(free_port)
	GATEWAY3_PORT_LIST=("$(free_port)" "$(free_port)" "$(free_port)")
	GATEWAY3_PORTS=${GATEWAY3_PORT_LIST[*]}
	NGINX_PORT=$(free_port)
	JAEGER_AGENT_PORT=$(free_udp_port)
	SINK_UDP_COMPACT_PORT=$(free_udp_port)
	SINK_HTTP_PORT=$(free_port)
	PROMETHEUS_PORT=$(free_port)
	RUN_TCP_PORTS=("$REDIS_PORT" "$PORT" "$GATEWAY_PORT" "$USERS_PORT" "$URL_SHORTENER_PORT"
		"$ANALYTICS_PORT" "$NOTIFICATIONS_PORT" "$URL_SHORTENER_V2_PORT" "$URL_SHORTENER_V2_CANARY_PORT" "$URL_SHORTENER_B_PORT"
		"${GATEWAY3_PORT_LIST[@]}" "$NGINX_PORT" "$SINK_HTTP_PORT" "$PROMETHEUS_PORT")
	RUN_UDP_PORTS=("$JAEGER_AGENT_PORT" "$SINK_UDP_COMPACT_PORT")
	trap '_own_run_down; _cleanup' EXIT
}

# _own_run_down: the exit trap's first half; keeps the exit status for
# _cleanup.
_own_run_down() {
	local status=$?
	bash "$OWN_RUN_DOWN" >>"$TEST_DIR/exit-down.out" 2>&1
	return $status
}
