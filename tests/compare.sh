#!/usr/bin/env bash
# tests/compare.sh - the same journey against Phase 1, Phase 2 and Phase 3,
# side by side: what the gateway changes (nothing, for the client: every
# status must match) and what each phase costs in hops:
#   Phase 1  client -> monolith                              (1 hop)
#   Phase 2  client -> gateway -> service                    (2 hops)
#   Phase 3  client -> nginx -> one of 3 gateways -> service (3 hops)
#
# Usage: tests/compare.sh [bin-dir]     (default build/bin)
#        COMPARE_REPEAT=50 tests/compare.sh
#
# It starts one redis-server (a database per phase: Phase 1's data in db 0,
# Phase 2's in db 1 and its gateway's rate-limit counters in db 2, Phase 3's
# in db 3 and 4), the monolith, the three services and a gateway for Phase
# 2, three more services, three gateway-advanced instances and nginx for
# Phase 3, all on free loopback ports, and stops them by pid at the end.
# Each step of the journey (register, login, me, shorten, expand, redirect,
# analytics) runs COMPARE_REPEAT times (default 20) on each phase, one phase
# after the other for each repetition so that all see the same machine.
# The table shows, per step, the status each phase answered and the median
# of curl's time_total in milliseconds.
#
# Step by step rather than user by user: all the registrations, then all
# the logins, and so on. Phases 2 and 3 tell analytics about a new link in
# the background, so a link's analytics asked for a millisecond after it
# was created could still be unknown there; by the time the analytics step
# comes round, every link has long been announced.
#
# Every phase runs with the same settings: PBKDF2 at 1000 iterations (the
# default 600000 would make register and login measure nothing but
# PBKDF2), rate limits too high to matter, access logs on. Phase 3 runs
# with tracing at its default (TRACE_SAMPLER=off: trace ids, no spans
# sent), so the third column is the cost of the extra hop, not of Jaeger.
#
# Counts as one check ("1 passed, 0 failed"): it ran the journey on all
# three phases and every step's statuses matched. The exit code is 1
# otherwise.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${1:-build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
REPEAT=${COMPARE_REPEAT:-20}
if ! [[ $REPEAT =~ ^[1-9][0-9]*$ ]]; then
	echo "compare: COMPARE_REPEAT must be a positive number, not '$REPEAT'" >&2
	exit 2
fi

# give_up REASON: the comparison could not run; that is its one check.
give_up() {
	fail "the journey ran on all three phases" "$1"
	finish
	exit 1
}

for binary in monolith gateway gateway-advanced users url-shortener analytics; do
	[ -x "$BIN_DIR/$binary" ] || give_up "no $BIN_DIR/$binary (run make first)"
done

# --- start-up ---------------------------------------------------------------
REDIS_PORT=$(free_port)
MONOLITH_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
USERS_PORT=$(free_port)
URL_SHORTENER_PORT=$(free_port)
ANALYTICS_PORT=$(free_port)
NGINX_PORT=$(free_port)
P3_USERS_PORT=$(free_port)
P3_URL_SHORTENER_PORT=$(free_port)
P3_ANALYTICS_PORT=$(free_port)
P3_GATEWAY_PORTS=("$(free_port)" "$(free_port)" "$(free_port)")
P1="http://127.0.0.1:$MONOLITH_PORT"
P2="http://127.0.0.1:$GATEWAY_PORT"
P3="http://127.0.0.1:$NGINX_PORT"
SECRET="compare-test-secret-0123456789abcdef-0123456789"
HIGH=1000000

echo "# Phase 1 (monolith) vs Phase 2 (gateway + services) vs Phase 3 (nginx + 3 gateways +"
echo "# services), $REPEAT repetitions of each step"
echo "# binaries: $BIN_DIR; scratch directory: $TEST_DIR"

start_redis "$REDIS_PORT" "$TEST_DIR/redis" || give_up "redis-server did not start"

start_monolith "$BIN_DIR/monolith" "$TEST_DIR/monolith" "$MONOLITH_PORT" \
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" JWT_SECRET="$SECRET" \
	ALLOW_INSECURE_DEV_SECRET=true PASSWORD_PBKDF2_ITERATIONS=1000 \
	RATE_LIMIT_ANONYMOUS=$HIGH RATE_LIMIT_FREE=$HIGH RATE_LIMIT_PREMIUM=$HIGH ||
	give_up "the monolith did not start (see $TEST_DIR/monolith.err)"

# start_services LOG_PREFIX DATA_URL PUBLIC_BASE USERS_PORT ANALYTICS_PORT
# URL_SHORTENER_PORT: one set of the three services (Phase 2 and Phase 3
# each get their own, on their own Redis database), or give up.
start_services() {
	local prefix=$1 data=$2 base=$3 users_port=$4 analytics_port=$5 shortener_port=$6
	start_service users "$BIN_DIR/users" "$TEST_DIR/${prefix}users" "$users_port" \
		REDIS_URL="$data" JWT_SECRET="$SECRET" ALLOW_INSECURE_DEV_SECRET=true \
		PASSWORD_PBKDF2_ITERATIONS=1000 ||
		give_up "users did not start (see $TEST_DIR/${prefix}users.err)"
	start_service analytics "$BIN_DIR/analytics" "$TEST_DIR/${prefix}analytics" \
		"$analytics_port" REDIS_URL="$data" ||
		give_up "analytics did not start (see $TEST_DIR/${prefix}analytics.err)"
	start_service url-shortener "$BIN_DIR/url-shortener" "$TEST_DIR/${prefix}url-shortener" \
		"$shortener_port" REDIS_URL="$data" PUBLIC_BASE_URL="$base" \
		ANALYTICS_URL="http://127.0.0.1:$analytics_port" ||
		give_up "url-shortener did not start (see $TEST_DIR/${prefix}url-shortener.err)"
}

start_services "" "redis://127.0.0.1:$REDIS_PORT/1" "$P2" \
	"$USERS_PORT" "$ANALYTICS_PORT" "$URL_SHORTENER_PORT"

# The route file's "login" policy (20 a minute per IP) would refuse most
# of the registrations and logins below: the copy raises it.
jq --argjson high "$HIGH" '.rate_limit_policies.login =
	{window_seconds: 60, anonymous: $high, free: $high, premium: $high}' \
	phase2-gateway/gateway.json >"$TEST_DIR/gateway.json"
start_gateway "$BIN_DIR/gateway" "$TEST_DIR/gateway" "$GATEWAY_PORT" \
	GATEWAY_CONFIG="$TEST_DIR/gateway.json" \
	USERS_URL="http://127.0.0.1:$USERS_PORT" \
	URL_SHORTENER_URL="http://127.0.0.1:$URL_SHORTENER_PORT" \
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" \
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" JWT_SECRET="$SECRET" \
	RATE_LIMIT_ANONYMOUS=$HIGH RATE_LIMIT_FREE=$HIGH RATE_LIMIT_PREMIUM=$HIGH ||
	give_up "the gateway did not start (see $TEST_DIR/gateway.err)"

# Phase 3: its own services (db 3), three gateways (rate limits in db 4,
# the route file's login policy raised as above, v1 routes only used),
# nginx in front of them.
start_services p3- "redis://127.0.0.1:$REDIS_PORT/3" "$P3" \
	"$P3_USERS_PORT" "$P3_ANALYTICS_PORT" "$P3_URL_SHORTENER_PORT"
jq --argjson high "$HIGH" '.rate_limit_policies.login =
	{window_seconds: 60, anonymous: $high, free: $high, premium: $high}' \
	phase3-advanced/gateway.json >"$TEST_DIR/gateway3.json"
for i in 1 2 3; do
	start_gateway "$BIN_DIR/gateway-advanced" "$TEST_DIR/api-gateway-$i" "${P3_GATEWAY_PORTS[$((i - 1))]}" \
		GATEWAY_CONFIG="$TEST_DIR/gateway3.json" INSTANCE_ID="api-gateway-$i" \
		TRUSTED_PROXIES=127.0.0.1 \
		USERS_URL="http://127.0.0.1:$P3_USERS_PORT" \
		URL_SHORTENER_V1_URL="http://127.0.0.1:$P3_URL_SHORTENER_PORT" \
		ANALYTICS_URL="http://127.0.0.1:$P3_ANALYTICS_PORT" \
		REDIS_URL="redis://127.0.0.1:$REDIS_PORT/4" JWT_SECRET="$SECRET" \
		RATE_LIMIT_ANONYMOUS=$HIGH RATE_LIMIT_FREE=$HIGH RATE_LIMIT_PREMIUM=$HIGH ||
		give_up "api-gateway-$i did not start (see $TEST_DIR/api-gateway-$i.err)"
done
start_nginx "$TEST_DIR/nginx" "$NGINX_PORT" "${P3_GATEWAY_PORTS[@]}" ||
	give_up "nginx did not start (see $TEST_DIR/nginx/logs/error.log)"

# --- measuring --------------------------------------------------------------

# measure PHASE STEP METHOD URL [BODY] [curl args...]: one request; its
# status and time (ms) are appended to $TEST_DIR/PHASE-STEP.txt, and the
# body is kept in HTTP_BODY for the steps that need something from it.
measure() {
	local phase=$1 name=$2
	shift 2
	http "$@"
	printf '%s %s\n' "$HTTP_STATUS" \
		"$(awk -v s="${HTTP_TIME:-0}" 'BEGIN { printf "%.3f", s * 1000 }')" \
		>>"$TEST_DIR/$phase-$name.txt"
}

PASSWORD="correct horse battery staple"
RUN=$RANDOM # usernames unique to this run
declare -A TOKENS=() CODES=()
STEPS=(register login me shorten expand redirect analytics)

# For phase P (1, 2 or 3) and repetition i: the user is cmp<RUN>u<i> on
# every phase (they have separate data), its token and code are kept per
# phase.
for step in "${STEPS[@]}"; do
	for i in $(seq 1 "$REPEAT"); do
		user="cmp${RUN}u$i"
		credentials="{\"username\":\"$user\",\"password\":\"$PASSWORD\"}"
		for phase in 1 2 3; do
			case $phase in
			1) base=$P1 api=$P1 ;;
			2) base=$P2 api=$P2/api/v1 ;;
			3) base=$P3 api=$P3/api/v1 ;;
			esac
			auth="Authorization: Bearer ${TOKENS[$phase.$i]:-none}"
			code=${CODES[$phase.$i]:-none}
			case $step in
			register)
				measure "$phase" "$step" POST "$api/auth/register" "$credentials" ;;
			login)
				measure "$phase" "$step" POST "$api/auth/login" "$credentials"
				TOKENS[$phase.$i]=$(jq -r '.token // "none"' <<<"$HTTP_BODY" 2>/dev/null) ;;
			me)
				measure "$phase" "$step" GET "$api/users/me" '' -H "$auth" ;;
			shorten)
				measure "$phase" "$step" POST "$api/shorten" \
					"{\"url\":\"https://example.com/compare/$i\"}" -H "$auth"
				CODES[$phase.$i]=$(jq -r '.code // "none"' <<<"$HTTP_BODY" 2>/dev/null) ;;
			expand)
				measure "$phase" "$step" GET "$api/expand/$code" ;;
			redirect)
				measure "$phase" "$step" GET "$base/r/$code" ;;
			analytics)
				measure "$phase" "$step" GET "$api/analytics/$code" '' -H "$auth" ;;
			esac
		done
	done
done

# --- the table --------------------------------------------------------------

# statuses FILE: "201" when every answer was 201, else "201x18 409x2".
statuses() {
	awk '{ print $1 }' "$1" | sort | uniq -c | sort -k2 |
		awk '{ out = out (NR > 1 ? " " : "") $2 "x" $1; n++; last = $2 }
		     END { if (n == 1) print last; else print out }'
}

# median_ms FILE: the median of the times in FILE.
median_ms() {
	awk '{ print $2 }' "$1" | sort -n |
		awk '{ t[NR] = $1 } END { if (NR % 2) m = t[(NR + 1) / 2];
			else m = (t[NR / 2] + t[NR / 2 + 1]) / 2; printf "%.2f", m }'
}

declare -A ROUTE_1=([register]="POST /auth/register" [login]="POST /auth/login"
	[me]="GET /users/me" [shorten]="POST /shorten" [expand]="GET /expand/:code"
	[redirect]="GET /r/:code" [analytics]="GET /analytics/:code")

echo
echo "# hops: 1 = client -> monolith; 2 = client -> gateway -> service;"
echo "#       3 = client -> nginx -> gateway -> service"
echo "# latency: median of $REPEAT curl time_total, in ms (a new TCP connection to the"
echo "# entry point per request; nginx and the gateways keep theirs to what is behind)."
echo "# Each hop on loopback costs a few tenths of a millisecond, about as much as the"
echo "# noise of a busy machine: COMPARE_REPEAT=200 gives steadier medians."
echo
FORMAT='%-10s %-20s %-8s %-8s %-8s %8s %8s %8s %16s %16s\n'
# shellcheck disable=SC2059
printf "$FORMAT" step "route (Phase 1)" "phase 1" "phase 2" "phase 3" "p1 ms" "p2 ms" "p3 ms" "p2 - p1" "p3 - p2"
# shellcheck disable=SC2059
printf "$FORMAT" ---- --------------- ------- ------- ------- ----- ----- ----- ------- -------
# difference A B: "B - A" in ms, and in percent of A.
difference() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		d = b - a; if (a > 0) printf "%+.2f (%+.0f%%)", d, 100 * d / a; else printf "%+.2f", d }'
}
MISMATCHES=()
for step in "${STEPS[@]}"; do
	status_1=$(statuses "$TEST_DIR/1-$step.txt")
	status_2=$(statuses "$TEST_DIR/2-$step.txt")
	status_3=$(statuses "$TEST_DIR/3-$step.txt")
	median_1=$(median_ms "$TEST_DIR/1-$step.txt")
	median_2=$(median_ms "$TEST_DIR/2-$step.txt")
	median_3=$(median_ms "$TEST_DIR/3-$step.txt")
	marker=""
	if [ "$status_1" != "$status_2" ] || [ "$status_1" != "$status_3" ]; then
		marker="  <- differs"
		MISMATCHES+=("$step: phase 1 $status_1, phase 2 $status_2, phase 3 $status_3")
	fi
	# shellcheck disable=SC2059
	printf "${FORMAT%\\n}%s\n" "$step" "${ROUTE_1[$step]}" "$status_1" "$status_2" "$status_3" \
		"$median_1" "$median_2" "$median_3" "$(difference "$median_1" "$median_2")" \
		"$(difference "$median_2" "$median_3")" "$marker"
done
echo

if [ ${#MISMATCHES[@]} -eq 0 ]; then
	pass "the journey ran on all three phases and every step's statuses match"
else
	fail "the journey ran on all three phases and every step's statuses match" \
		"$(printf '%s; ' "${MISMATCHES[@]}")"
fi
finish
