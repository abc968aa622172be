#!/usr/bin/env bash
# tests/workshop.sh - `make up`, scripts/service.sh and `make down`, black
# box: the workshop's steps that kill, stop or restart a process
# (docs/workshop.md), done the way the workshop says, must leave nothing
# running once `make down` has run.
#
# Usage: tests/workshop.sh [bin-dir]      (default build/bin)
#
# It runs the real scripts/up.sh, service.sh and down.sh, Phase 1, then 2,
# then 3, in a run directory of its own (KIT_RUN_DIR, under the scratch
# directory) on ports the kernel says are free (REDIS_PORT, PORT, ... in the
# environment), so it can run beside the other suites and beside a `make
# up` on the default ports. Between the steps it collects the pid of every
# process a pid file named; after each `make down` none of them may be
# alive, no port of the run may be listening and no pid file may be left.
# Along the way it checks what the workshop promises of each step (a 502
# for a stopped service, a 504 for a paused one, links that survive Redis
# going away), that settings from the environment win (JWT_SECRET,
# SERVER_CORE), and that the JWT secret is said and kept as documented.
#
# The last line is "N passed, N failed"; the exit code is 1 when a check
# failed. Whatever happens, the exit trap runs down.sh for its run
# directory, so a failed check leaves nothing behind either.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN=${1:-build/bin}
case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac

echo "# make up / scripts/service.sh / make down, the workshop's steps, against $BIN"
echo "# scratch directory: $TEST_DIR"

# ---------------------------------------------------------------------------
section "prerequisites"
# ---------------------------------------------------------------------------
require_binaries "the binaries are built" "$BIN/monolith" "$BIN/gateway" \
	"$BIN/gateway-advanced" "$BIN/users" "$BIN/url-shortener" "$BIN/analytics"
have_tool() {
	command -v "$1" >/dev/null
}
for tool in curl jq redis-server redis-cli openssl ss nginx python3; do
	check_true "$tool is installed" have_tool "$tool"
done

# The run: its own directory and ports, given as up.sh reads them.
use_own_run scripts/down.sh
export BIN_DIR="$BIN"
# Settings from the environment reach every process: fast logins (PBKDF2
# with 1000 iterations, which a development secret allows).
export PASSWORD_PBKDF2_ITERATIONS=1000 ALLOW_INSECURE_DEV_SECRET=true
unset JWT_SECRET SERVER_CORE RATE_LIMIT_FREE

# kit SCRIPT ARGS...: runs scripts/SCRIPT.sh; its output goes to KIT_OUT
# (and the log), its exit status to KIT_STATUS.
KIT_OUT=""
KIT_STATUS=0
kit() {
	local script=$1
	shift
	KIT_STATUS=0
	KIT_OUT=$(bash "scripts/$script.sh" "$@" 2>&1) || KIT_STATUS=$?
	printf '$ %s.sh %s\n%s\n' "$script" "$*" "$KIT_OUT" >>"$TEST_DIR/kit.log"
}

# Every pid a pid file of the run named, at any time.
declare -A SEEN_PIDS=()
remember_pids() {
	local file
	for file in "$KIT_RUN_DIR"/*.pid; do
		[ -f "$file" ] || continue
		SEEN_PIDS[$(sed -n 1p "$file")]=$(basename "$file" .pid)
	done
}

# pid_of NAME: the pid in NAME's pid file; running_pid_of NAME: the same
# when that process is alive.
pid_of() {
	sed -n 1p "$KIT_RUN_DIR/$1.pid" 2>/dev/null
}
running_pid_of() {
	local pid
	pid=$(pid_of "$1")
	[ -n "$pid" ] && pid_alive "$pid" && echo "$pid"
}

# check_nothing_left: after down, no pid seen is alive, no port of the run
# is listening, no pid file is left.
check_nothing_left() {
	local pid alive="" port taken="" files
	for pid in "${!SEEN_PIDS[@]}"; do
		pid_alive "$pid" && alive+=" ${SEEN_PIDS[$pid]}($pid)"
	done
	check_eq "no process of the run is alive (${#SEEN_PIDS[@]} pids seen)" "" "$alive"
	for port in "${RUN_TCP_PORTS[@]}"; do
		port_in_use "$port" && taken+=" $port"
	done
	for port in "${RUN_UDP_PORTS[@]}"; do
		[ -n "$(ss -Hlun "sport = :$port")" ] && taken+=" $port/udp"
	done
	check_eq "no port of the run is listening" "" "$taken"
	files=$(cd "$KIT_RUN_DIR" && ls -- *.pid 2>/dev/null)
	check_eq "no pid file is left" "" "$files"
}

# http_code URL [curl args...]: the status of one GET.
http_code() {
	local url=$1
	shift
	curl -s -o /dev/null --max-time 20 -w '%{http_code}' "$@" "$url"
}
answers() { # answers CODE URL [curl args...]
	[ "$(http_code "${@:2}")" = "$1" ]
}

# check_soon DESCRIPTION SECONDS CODE URL [curl args...]: URL answers CODE
# within SECONDS (polled).
check_soon() {
	local description=$1 seconds=$2 code=$3
	shift 3
	if poll_until "$seconds" answers "$code" "$@"; then
		pass "$description (after ${POLL_ELAPSED}s)"
	else
		fail "$description (within $seconds s)" "last: $(http_code "$@")"
	fi
}

# targets_up PROM_PORT N: Prometheus on PROM_PORT scrapes N targets, all
# up (polled: the first scrape comes within its 5 s interval).
targets_up() {
	local answer
	answer=$(curl -s --max-time 5 "http://127.0.0.1:$1/api/v1/targets") || return 1
	jq -e --argjson n "$2" '[.data.activeTargets[] | select(.health == "up")] | length == $n' \
		<<<"$answer" >/dev/null
}

# prometheus_instances PROM_PORT: the instance labels it scrapes, sorted, on one line.
prometheus_instances() {
	curl -s --max-time 5 "http://127.0.0.1:$1/api/v1/targets" |
		jq -r '[.data.activeTargets[].labels.instance] | sort | join(" ")'
}

# check_scraped INSTANCES...: the run's Prometheus scrapes exactly these
# instances, and every one is up within 30 s (the first scrape comes within
# its 5 s interval).
check_scraped() {
	local want="$*" count=$#
	if poll_until 30 targets_up "$PROMETHEUS_PORT" "$count"; then
		pass "$count targets, all up (after ${POLL_ELAPSED}s)"
	else
		fail "$count targets, all up within 30 s" "$(curl -s "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/targets" |
			jq -c '[.data.activeTargets[] | [.labels.instance, .health, .lastError]]')"
	fi
	check_eq "they are the phase's gateways and services, by name" "$want" \
		"$(prometheus_instances "$PROMETHEUS_PORT")"
}

# login BASE NAME: registers NAME (once) and prints a token.
login() {
	local body="{\"username\":\"$2\",\"password\":\"correct horse battery\"}"
	curl -s --max-time 20 -H 'Content-Type: application/json' -d "$body" "$1/auth/register" >/dev/null
	curl -s --max-time 20 -H 'Content-Type: application/json' -d "$body" "$1/auth/login" | jq -r .token
}

# shorten BASE TOKEN URL: prints the new link's code.
shorten() {
	curl -s --max-time 20 -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
		-d "{\"url\":\"$3\"}" "$1/shorten" | jq -r .code
}

# signed_with TOKEN SECRET: the token's HS256 signature is made with SECRET.
signed_with() {
	local token=$1 expected
	expected=$(printf '%s' "${token%.*}" | openssl dgst -sha256 -hmac "$2" -binary | b64url)
	[ -n "$token" ] && [ "${token##*.}" = "$expected" ]
}

# ---------------------------------------------------------------------------
section "Phase 1: JWT_SECRET from the environment wins"
# ---------------------------------------------------------------------------
SECRET="workshop-test-secret-0123456789abcdef-0123456789"
M="http://127.0.0.1:$PORT"

step "JWT_SECRET=... up.sh 1"
JWT_SECRET=$SECRET kit up 1
remember_pids
check_eq "up.sh 1 exits 0" 0 "$KIT_STATUS"
check_match "it says the secret came from the environment" \
	'JWT secret: JWT_SECRET from the environment' "$KIT_OUT"
check_true "no $KIT_RUN_DIR/jwt_secret was written" test ! -e "$KIT_RUN_DIR/jwt_secret"
check_true "up.env does not hold the secret" bash -c "! grep -qF -- '$SECRET' '$KIT_RUN_DIR/up.env'"
TOKEN=$(login "$M" alice)
check_true "the monolith's token is signed with that JWT_SECRET" signed_with "$TOKEN" "$SECRET"

step "restarting the monolith without JWT_SECRET, or with another"
MONOLITH_PID=$(pid_of monolith)
kit service restart monolith
check_eq "service.sh refuses" 1 "$KIT_STATUS"
check_match "and says to give JWT_SECRET again" 'JWT_SECRET=' "$KIT_OUT"
JWT_SECRET="another-secret-0123456789abcdef-0123456789abcdef" kit service restart monolith
check_eq "another JWT_SECRET is refused" 1 "$KIT_STATUS"
check_match "and it says why" 'not the one make up started with' "$KIT_OUT"
check_eq "the monolith was left running" "$MONOLITH_PID" "$(running_pid_of monolith)"
step "restarting the monolith with the same JWT_SECRET"
JWT_SECRET=$SECRET kit service restart monolith
remember_pids
check_eq "exits 0" 0 "$KIT_STATUS"
NEW_PID=$(running_pid_of monolith)
check_match "a monolith runs" '^[0-9]+$' "$NEW_PID"
check_true "a new one" test "$NEW_PID" != "$MONOLITH_PID"
check_true "the old token is still good" answers 200 "$M/users/me" -H "Authorization: Bearer $TOKEN"

# ---------------------------------------------------------------------------
section "Phase 1, exercise 1.5: pull the database out, put it back"
# ---------------------------------------------------------------------------
CODE=$(shorten "$M" "$TOKEN" https://example.com/workshop-1)
check_match "a link" '^[A-Za-z0-9_-]+$' "$CODE"
step "service.sh stop redis"
kit service stop redis
check_eq "exits 0" 0 "$KIT_STATUS"
SHORTEN_ARGS=(-X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json'
	-d '{"url":"https://example.com/workshop-1b"}')
check_true "a shorten is 503 (storage unavailable)" answers 503 "$M/shorten" "${SHORTEN_ARGS[@]}"
check_true "/health, the load balancer's liveness, stays 200" answers 200 "$M/health"
step "service.sh start redis"
kit service start redis
remember_pids
check_eq "exits 0" 0 "$KIT_STATUS"
check_soon "a shorten works again, the monolith not restarted" 10 201 "$M/shorten" "${SHORTEN_ARGS[@]}"
check_true "the link survived (append-only file)" answers 302 "$M/r/$CODE"

step "make down"
kit down
check_eq "down.sh exits 0" 0 "$KIT_STATUS"
check_nothing_left

# ---------------------------------------------------------------------------
section "Phase 2, exercises 2.4, 2.5, 2.6, 2.8: stop, pause, restart"
# ---------------------------------------------------------------------------
G="http://127.0.0.1:$GATEWAY_PORT"
step "up.sh 2, no JWT_SECRET"
kit up 2
remember_pids
check_eq "up.sh 2 exits 0" 0 "$KIT_STATUS"
check_match "it says it generated the secret" 'jwt_secret \(generated now' "$KIT_OUT"
check_eq "the secret file is this user's only" 600 "$(stat -c %a "$KIT_RUN_DIR/jwt_secret" 2>/dev/null)"
TOKEN=$(login "$G/api/v1" alice)
check_true "the token is signed with $KIT_RUN_DIR/jwt_secret" \
	signed_with "$TOKEN" "$(cat "$KIT_RUN_DIR/jwt_secret")"
AUTH="Authorization: Bearer $TOKEN"
CODE=$(shorten "$G/api/v1" "$TOKEN" https://example.com/workshop-2)
check_match "a link" '^[A-Za-z0-9_-]+$' "$CODE"

step "Prometheus watches the gateway and each service"
check_scraped analytics gateway notifications url-shortener users
http GET "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/rules"
expect_json '[.data.groups[].name] | sort | join(" ")' "kit-alerts kit-per-instance"

step "2.4 service.sh stop url-shortener"
kit service stop url-shortener
check_eq "exits 0" 0 "$KIT_STATUS"
http GET "$G/api/v1/expand/$CODE"
expect_status 502
expect_json .upstream url-shortener
check_true "users still answers" answers 200 "$G/api/v1/users/me" -H "$AUTH"
step "2.4 service.sh start url-shortener"
kit service start url-shortener
remember_pids
check_eq "exits 0" 0 "$KIT_STATUS"
check_soon "the gateway heals: expand is 200" 10 200 "$G/api/v1/expand/$CODE"

step "2.5 service.sh pause url-shortener"
kit service pause url-shortener
check_eq "exits 0" 0 "$KIT_STATUS"
kit service status url-shortener
check_match "status says paused" 'url-shortener +paused' "$KIT_OUT"
http GET "$G/api/v1/expand/$CODE"
expect_status 504
kit service resume url-shortener
check_eq "resume exits 0" 0 "$KIT_STATUS"
check_soon "expand is 200 again" 10 200 "$G/api/v1/expand/$CODE"

step "2.6 service.sh stop analytics, then start"
kit service stop analytics
check_eq "exits 0" 0 "$KIT_STATUS"
check_true "a redirect still answers" answers 302 "$G/r/$CODE"
kit service start analytics
remember_pids
check_eq "start exits 0" 0 "$KIT_STATUS"

step "2.11 GET /users/me twice, PATCH, and again: the response cache"
# x_cache URL [curl args...]: the X-Cache of a GET.
x_cache() {
	curl -s -o /dev/null -D - "$@" | tr -d '\r' | awk 'tolower($1) == "x-cache:" { print $2 }'
}
curl -s -o /dev/null -X PATCH "$G/api/v1/users/me" -H "$AUTH" -H 'Content-Type: application/json' \
	-d '{"display_name":"Workshop"}'
check_eq "after a PATCH: MISS" MISS "$(x_cache "$G/api/v1/users/me" -H "$AUTH")"
check_eq "then: HIT" HIT "$(x_cache "$G/api/v1/users/me" -H "$AUTH")"
check_match "the entry is in the run's Redis, with the service's 30 s" '^([1-9]|[12][0-9]|30)$' \
	"$(redis-cli -p "$REDIS_PORT" TTL "$(redis-cli -p "$REDIS_PORT" --scan --pattern 'cache:u:*' | head -n 1)")"

step "2.12 GET /api/v1/notifications: the fourth service, through the gateway"
check_true "answers 200 with a list" answers 200 "$G/api/v1/notifications" -H "$AUTH"

step "2.8 SERVER_CORE=threads service.sh restart gateway"
LOOP_THREADS_NOW=$(ps -o nlwp= -p "$(pid_of gateway)" | tr -d ' ')
SERVER_CORE=threads kit service restart gateway
remember_pids
check_eq "exits 0" 0 "$KIT_STATUS"
# civetweb runs WORKER_THREADS (64) workers; the event loop one thread per
# CPU and a few helpers.
check_num "the event-loop gateway had fewer than 40 threads" "$LOOP_THREADS_NOW" '<' 40
check_num "the restarted one has civetweb's 64 workers and more" \
	"$(ps -o nlwp= -p "$(pid_of gateway)" | tr -d ' ')" '>' 64
check_true "and it serves" answers 200 "$G/api/v1/users/me" -H "$AUTH"

step "a second make up while this one runs"
kit up 2
check_eq "up.sh refuses" 1 "$KIT_STATUS"
check_match "and says to stop first" 'make down' "$KIT_OUT"

step "a name the phase does not have"
kit service stop api-gateway-2
check_eq "service.sh exits 2" 2 "$KIT_STATUS"
check_match "and lists the names it has" 'url-shortener, notifications, gateway' "$KIT_OUT"

step "make down, with url-shortener paused"
kit service pause url-shortener
kit down
check_eq "down.sh exits 0" 0 "$KIT_STATUS"
check_nothing_left
kit service start users
check_eq "service.sh after make down refuses" 1 "$KIT_STATUS"
check_match "and says to make up first" 'make up first' "$KIT_OUT"

# ---------------------------------------------------------------------------
section "Phase 3, exercise 3.6: a gateway dies, and comes back"
# ---------------------------------------------------------------------------
N="http://127.0.0.1:$NGINX_PORT"
step "up.sh 3"
kit up 3
remember_pids
check_eq "up.sh 3 exits 0" 0 "$KIT_STATUS"
check_match "it says the secret was kept" 'jwt_secret \(kept from an earlier run' "$KIT_OUT"
check_true "Phase 2's token is still good through nginx" \
	answers 200 "$N/api/v1/users/me" -H "$AUTH"

step "Prometheus watches each of the three gateways, not nginx"
check_scraped analytics api-gateway-1 api-gateway-2 api-gateway-3 notifications url-shortener \
	url-shortener-b url-shortener-v2 url-shortener-v2-canary users

step "3.8 service.sh stop url-shortener-b: the gateway goes round it"
G31="http://127.0.0.1:${GATEWAY3_PORT_LIST[0]}"
# shortener_answers N: N x GET expand from api-gateway-1, one "STATUS
# INSTANCE" line each (the url-shortener's X-Instance). Each request comes
# as another client (the gateways believe X-Forwarded-For from 127.0.0.1,
# as from nginx), or the anonymous limit (30 a minute) would end the step.
# (A random address: a counter would not survive the $(...) subshell.)
shortener_answers() {
	local i
	for i in $(seq 1 "$1"); do
		curl -s -o /dev/null -D - -H "X-Forwarded-For: 10.38.$((RANDOM % 250)).$((RANDOM % 250 + 1))" \
			"$G31/api/v1/expand/$CODE" | tr -d '\r' |
			awk 'NR == 1 { status = $2 } tolower($1) == "x-instance:" && $2 ~ /^url-shortener/ { who = $2 }
				END { print status " " who }'
	done
}
check_eq "10 x expand: both v1 instances answer, in turn" "5 200 url-shortener-v1,5 200 url-shortener-v1-b" \
	"$(shortener_answers 10 | sort | uniq -c | awk '{ print $1 " " $2 " " $3 }' | paste -sd ',' -)"
kit service stop url-shortener-b
check_eq "stop exits 0" 0 "$KIT_STATUS"
check_eq "10 x expand: all 200, from url-shortener-v1" "10 200 url-shortener-v1" \
	"$(shortener_answers 10 | sort | uniq -c | awk '{ print $1 " " $2 " " $3 }' | paste -sd ',' -)"
kit service start url-shortener-b
remember_pids
check_eq "start exits 0" 0 "$KIT_STATUS"
back=0
deadline=$((SECONDS + 30)) # open_ms is 5 s
while [ "$SECONDS" -lt "$deadline" ]; do
	if [ "$(shortener_answers 1)" = "200 url-shortener-v1-b" ]; then
		back=1
		break
	fi
	sleep 0.05
done
check_eq "after open_ms, url-shortener-v1-b answers again" 1 "$back"
if [ "$back" = 0 ]; then
	grep -h 'circuit' "$KIT_RUN_DIR/api-gateway-1.log" | tail -n 5 | sed 's/^/#   /'
	tail -n 5 "$KIT_RUN_DIR/url-shortener-b.log" | sed 's/^/#   /'
fi

step "3.6 service.sh stop api-gateway-2"
kit service stop api-gateway-2
check_eq "exits 0" 0 "$KIT_STATUS"
failures=0
for _ in $(seq 1 12); do
	answers 200 "$N/health" || failures=$((failures + 1))
done
check_eq "12 requests through nginx, none failed" 0 "$failures"
kit service start api-gateway-2
remember_pids
check_eq "start exits 0" 0 "$KIT_STATUS"
check_true "api-gateway-2 answers" answers 200 "http://127.0.0.1:${GATEWAY3_PORT_LIST[1]}/health"
step "restart nginx and the trace sink"
kit service restart nginx
remember_pids
check_eq "nginx restarts" 0 "$KIT_STATUS"
kit service restart jaeger-sink
remember_pids
if [[ $KIT_OUT == *"cannot run here"* ]]; then
	echo "# the trace sink cannot run here (see its log); its restart is not checked"
else
	check_eq "the sink restarts" 0 "$KIT_STATUS"
fi

step "make down, with api-gateway-3 paused"
kit service pause api-gateway-3
kit down
check_eq "down.sh exits 0" 0 "$KIT_STATUS"
check_nothing_left

finish
