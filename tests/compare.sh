#!/usr/bin/env bash
# tests/compare.sh - the same journey against Phase 1, Phase 2 and Phase 3,
# side by side: what the gateway changes (nothing, for the client: every
# status must match) and what each phase costs in hops:
#   Phase 1  client -> monolith                              (1 hop)
#   Phase 2  client -> gateway -> service                    (2 hops)
#   Phase 3  client -> nginx -> one of 3 gateways -> service (3 hops)
#
# Usage: tests/compare.sh [bin-dir]     (default build/bin): start all three here
#        COMPARE_REPEAT=50 tests/compare.sh
#        tests/compare.sh --phase1 URL [--phase2 URL] [--phase3 URL]
#                                       phases that are already running
#
# By default it starts one redis-server (a database per phase: Phase 1's
# data in db 0, Phase 2's in db 1 and its gateway's rate-limit counters in
# db 2, Phase 3's in db 3 and 4), the monolith, the three services and a
# gateway for Phase 2, three more services, three gateway-advanced
# instances and nginx for Phase 3, all on free loopback ports, and stops
# them by pid at the end. Every phase runs with the same settings: PBKDF2
# at 1000 iterations (the default 600000 would make register and login
# measure nothing but PBKDF2), rate limits too high to matter, access logs
# on. Phase 3 runs with tracing at its default (TRACE_SAMPLER=off: trace
# ids, no spans sent), so the third column is the cost of the extra hop,
# not of Jaeger.
#
# With --phaseN URL it starts nothing and measures the deployments at those
# URLs instead: `make up` or `make compose-up` on this machine, or another
# machine (the monolith's URL for Phase 1, the gateway's for Phase 2,
# nginx's for Phase 3; the API is under /api/v1 for 2 and 3). Any one, two
# or three phases; the table has a column for each given. Such a deployment
# runs with its own settings, so two things differ from the default mode:
#   - its rate limits apply: the journey's public requests (register, login,
#     expand, redirect: 4 per repetition) count against 30 a minute per
#     client address, and the gateways allow 20 logins and registrations a
#     minute, so COMPARE_REPEAT defaults to 5 here; a 429 in the table means
#     you went over (wait a minute, or repeat less);
#   - register and login measure its PBKDF2 (600000 iterations by default),
#     a good part of a second each.
# It writes what the journey writes: per repetition and phase one user
# (cmp-<time>-<random>-p<phase>-u<i>, unique to the run, so phases that share
# one Redis do not collide) and one link with one click; it reads only those.
#
# Each step of the journey (register, login, me, shorten, expand, redirect,
# analytics) runs COMPARE_REPEAT times (default 20; 5 with URLs) on each
# phase, one phase after the other for each repetition so that all see the
# same machine. The table shows, per step, the status each phase answered
# and the median of curl's time_total in milliseconds.
#
# Step by step rather than user by user: all the registrations, then all
# the logins, and so on. Phases 2 and 3 tell analytics about a new link in
# the background, so a link's analytics asked for a millisecond after it
# was created could still be unknown there; before the analytics step the
# script waits (10 s at most) until each phase's analytics knows the last
# link made through it, and so, the announcements being in order, all.
#
# Counts as one check ("1 passed, 0 failed"): the journey ran on every
# phase, and every step answered the status the API promises (201, 200,
# 200, 201, 200, 302, 200), the same on every phase. The exit code is 1
# otherwise.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

usage() {
	echo "usage: tests/compare.sh [bin-dir]" >&2
	echo "       tests/compare.sh --phase1 URL [--phase2 URL] [--phase3 URL]" >&2
	exit 2
}

declare -A URLS=() # phase -> the base URL of a running deployment
BIN_DIR=build/bin
while [ $# -gt 0 ]; do
	case $1 in
	--phase1 | --phase2 | --phase3)
		if [ $# -lt 2 ] || ! [[ $2 =~ ^https?:// ]]; then usage; fi
		URLS[${1#--phase}]=${2%/}
		shift 2
		;;
	-*) usage ;;
	*)
		BIN_DIR=$1
		shift
		;;
	esac
done
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac

if [ ${#URLS[@]} -gt 0 ]; then
	MODE=urls
	mapfile -t PHASES < <(printf '%s\n' "${!URLS[@]}" | sort)
	REPEAT=${COMPARE_REPEAT:-5}
else
	MODE=local
	PHASES=(1 2 3)
	REPEAT=${COMPARE_REPEAT:-20}
fi
if ! [[ $REPEAT =~ ^[1-9][0-9]*$ ]]; then
	echo "compare: COMPARE_REPEAT must be a positive number, not '$REPEAT'" >&2
	exit 2
fi
PHASE_LIST=$(printf '%s, ' "${PHASES[@]}")
PHASE_LIST=${PHASE_LIST%, }

# give_up REASON: the comparison could not run; that is its one check.
give_up() {
	fail "the journey ran on phases $PHASE_LIST" "$1"
	finish
	exit 1
}

declare -A BASE=() API=() # phase -> where /r/ is, where the API is
if [ "$MODE" = local ]; then
	for binary in monolith gateway gateway-advanced users url-shortener analytics; do
		[ -x "$BIN_DIR/$binary" ] || give_up "no $BIN_DIR/$binary (run make first)"
	done
fi

# --- start-up (the default mode) ---------------------------------------------

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

# raise_login_policy ROUTE_FILE COPY: the route file's "login" policy (20 a
# minute per IP) would refuse most of the registrations and logins below:
# COPY is the file with it raised out of the way.
raise_login_policy() {
	jq --argjson high "$HIGH" '.rate_limit_policies.login =
		{window_seconds: 60, anonymous: $high, free: $high, premium: $high}' "$1" >"$2"
}

# start_all: the three phases on free loopback ports; sets BASE and API.
start_all() {
	local redis_port monolith_port gateway_port nginx_port gateway3_ports i
	redis_port=$(free_port)
	monolith_port=$(free_port)
	gateway_port=$(free_port)
	nginx_port=$(free_port)
	gateway3_ports=("$(free_port)" "$(free_port)" "$(free_port)")
	BASE=([1]="http://127.0.0.1:$monolith_port" [2]="http://127.0.0.1:$gateway_port"
		[3]="http://127.0.0.1:$nginx_port")
	SECRET="compare-test-secret-0123456789abcdef-0123456789"
	HIGH=1000000

	echo "# binaries: $BIN_DIR; scratch directory: $TEST_DIR"
	start_redis "$redis_port" "$TEST_DIR/redis" || give_up "redis-server did not start"

	start_monolith "$BIN_DIR/monolith" "$TEST_DIR/monolith" "$monolith_port" \
		REDIS_URL="redis://127.0.0.1:$redis_port/0" JWT_SECRET="$SECRET" \
		ALLOW_INSECURE_DEV_SECRET=true PASSWORD_PBKDF2_ITERATIONS=1000 \
		RATE_LIMIT_ANONYMOUS=$HIGH RATE_LIMIT_FREE=$HIGH RATE_LIMIT_PREMIUM=$HIGH ||
		give_up "the monolith did not start (see $TEST_DIR/monolith.err)"

	local users_port analytics_port shortener_port
	users_port=$(free_port) analytics_port=$(free_port) shortener_port=$(free_port)
	start_services "" "redis://127.0.0.1:$redis_port/1" "${BASE[2]}" \
		"$users_port" "$analytics_port" "$shortener_port"

	raise_login_policy phase2-gateway/gateway.json "$TEST_DIR/gateway.json"
	start_gateway "$BIN_DIR/gateway" "$TEST_DIR/gateway" "$gateway_port" \
		GATEWAY_CONFIG="$TEST_DIR/gateway.json" \
		USERS_URL="http://127.0.0.1:$users_port" \
		URL_SHORTENER_URL="http://127.0.0.1:$shortener_port" \
		ANALYTICS_URL="http://127.0.0.1:$analytics_port" \
		REDIS_URL="redis://127.0.0.1:$redis_port/2" JWT_SECRET="$SECRET" \
		RATE_LIMIT_ANONYMOUS=$HIGH RATE_LIMIT_FREE=$HIGH RATE_LIMIT_PREMIUM=$HIGH ||
		give_up "the gateway did not start (see $TEST_DIR/gateway.err)"

	# Phase 3: its own services (db 3), three gateways (rate limits in db 4,
	# the route file's login policy raised as above, v1 routes only used),
	# nginx in front of them.
	users_port=$(free_port) analytics_port=$(free_port) shortener_port=$(free_port)
	start_services p3- "redis://127.0.0.1:$redis_port/3" "${BASE[3]}" \
		"$users_port" "$analytics_port" "$shortener_port"
	raise_login_policy phase3-advanced/gateway.json "$TEST_DIR/gateway3.json"
	for i in 1 2 3; do
		start_gateway "$BIN_DIR/gateway-advanced" "$TEST_DIR/api-gateway-$i" "${gateway3_ports[$((i - 1))]}" \
			GATEWAY_CONFIG="$TEST_DIR/gateway3.json" INSTANCE_ID="api-gateway-$i" \
			TRUSTED_PROXIES=127.0.0.1 \
			USERS_URL="http://127.0.0.1:$users_port" \
			URL_SHORTENER_V1_URL="http://127.0.0.1:$shortener_port" \
			ANALYTICS_URL="http://127.0.0.1:$analytics_port" \
			REDIS_URL="redis://127.0.0.1:$redis_port/4" JWT_SECRET="$SECRET" \
			RATE_LIMIT_ANONYMOUS=$HIGH RATE_LIMIT_FREE=$HIGH RATE_LIMIT_PREMIUM=$HIGH ||
			give_up "api-gateway-$i did not start (see $TEST_DIR/api-gateway-$i.err)"
	done
	start_nginx "$TEST_DIR/nginx" "$nginx_port" "${gateway3_ports[@]}" ||
		give_up "nginx did not start (see $TEST_DIR/nginx/logs/error.log)"
}

echo "# the journey against phases $PHASE_LIST (1: the monolith; 2: a gateway and the"
echo "# services; 3: nginx, 3 gateways and the services), $REPEAT repetitions of each step"
if [ "$MODE" = local ]; then
	start_all
else
	# Already running: each must answer GET /health before anything is sent.
	for phase in "${PHASES[@]}"; do
		BASE[$phase]=${URLS[$phase]}
		echo "# phase $phase: ${BASE[$phase]}"
		http GET "${BASE[$phase]}/health"
		if [ "$HTTP_STATUS" = 000 ]; then
			give_up "phase $phase: no answer from ${BASE[$phase]}: $HTTP_ERROR"
		elif [ "$HTTP_STATUS" != 200 ] || ! jq -e .service <<<"$HTTP_BODY" >/dev/null 2>&1; then
			give_up "phase $phase: ${BASE[$phase]}/health answered $HTTP_STATUS, not the kit's 200: ${HTTP_BODY:0:200}"
		fi
	done
fi
for phase in "${PHASES[@]}"; do
	if [ "$phase" = 1 ]; then API[1]=${BASE[1]}; else API[$phase]=${BASE[$phase]}/api/v1; fi
done

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

# analytics_knows PHASE: that phase's analytics answers for the last link
# made through it (not measured).
analytics_knows() {
	http GET "${API[$1]}/analytics/${CODES[$1.$REPEAT]:-none}" '' \
		-H "Authorization: Bearer ${TOKENS[$1.$REPEAT]:-none}"
	[ "$HTTP_STATUS" = 200 ]
}

PASSWORD="correct horse battery staple"
RUN="$(date +%s)-$RANDOM" # usernames unique to this run
declare -A TOKENS=() CODES=()
STEPS=(register login me shorten expand redirect analytics)
declare -A EXPECTED=([register]=201 [login]=200 [me]=200 [shorten]=201 [expand]=200
	[redirect]=302 [analytics]=200)

# For phase P and repetition i: the user is cmp-<RUN>-p<P>-u<i>; its token
# and code are kept per phase.
for step in "${STEPS[@]}"; do
	if [ "$step" = analytics ]; then
		for phase in "${PHASES[@]}"; do
			POLL_INTERVAL=0.2 poll_until 10 analytics_knows "$phase" ||
				echo "# phase $phase: analytics did not know the last link after 10 s"
		done
	fi
	for i in $(seq 1 "$REPEAT"); do
		for phase in "${PHASES[@]}"; do
			user="cmp-$RUN-p$phase-u$i"
			credentials="{\"username\":\"$user\",\"password\":\"$PASSWORD\"}"
			base=${BASE[$phase]} api=${API[$phase]}
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

# difference A B: "B - A" in ms, and in percent of A.
difference() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		d = b - a; if (a > 0) printf "%+.2f (%+.0f%%)", d, 100 * d / a; else printf "%+.2f", d }'
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

# One row: step, route, a status column per phase, a median column per
# phase, a difference column per pair of neighbouring phases.
row() {
	local cells=("$@") format='%-10s %-20s' n=${#PHASES[@]} k
	for ((k = 0; k < n; k++)); do format+=' %-8s'; done
	for ((k = 0; k < n; k++)); do format+=' %8s'; done
	for ((k = 1; k < n; k++)); do format+=' %16s'; done
	# shellcheck disable=SC2059
	printf "$format%s\n" "${cells[@]}"
}
header_cells=(step "route (Phase 1)") rule_cells=(---- ---------------)
for phase in "${PHASES[@]}"; do header_cells+=("phase $phase") rule_cells+=(-------); done
for phase in "${PHASES[@]}"; do header_cells+=("p$phase ms") rule_cells+=(-----); done
for ((k = 1; k < ${#PHASES[@]}; k++)); do
	header_cells+=("p${PHASES[$k]} - p${PHASES[$((k - 1))]}") rule_cells+=(-------)
done
row "${header_cells[@]}" ""
row "${rule_cells[@]}" ""

WRONG=()
for step in "${STEPS[@]}"; do
	status_cells=() median_cells=() medians=() marker=""
	for phase in "${PHASES[@]}"; do
		status=$(statuses "$TEST_DIR/$phase-$step.txt")
		status_cells+=("$status")
		medians+=("$(median_ms "$TEST_DIR/$phase-$step.txt")")
		if [ "$status" != "${EXPECTED[$step]}" ]; then
			marker="  <- expected ${EXPECTED[$step]}"
			WRONG+=("$step: phase $phase answered $status")
		fi
	done
	median_cells=("${medians[@]}")
	for ((k = 1; k < ${#PHASES[@]}; k++)); do
		median_cells+=("$(difference "${medians[$((k - 1))]}" "${medians[$k]}")")
	done
	row "$step" "${ROUTE_1[$step]}" "${status_cells[@]}" "${median_cells[@]}" "$marker"
done
echo

PROMISED=$(for step in "${STEPS[@]}"; do printf '%s ' "${EXPECTED[$step]}"; done)
if [ ${#WRONG[@]} -eq 0 ]; then
	pass "the journey ran on phases $PHASE_LIST and every step answered as promised (${PROMISED% }), on every phase"
else
	fail "the journey ran on phases $PHASE_LIST and every step answered as promised, on every phase" \
		"$(printf '%s; ' "${WRONG[@]}")"
fi
finish
