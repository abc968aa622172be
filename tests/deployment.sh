#!/usr/bin/env bash
# tests/deployment.sh - the black-box scripts that take a deployment's URL
# (tests/journey.sh with BASE_URL, tests/compare.sh with --phaseN URL),
# run against a deployment this script starts itself: Phase 1 (redis and
# the monolith) and Phase 2 (the three services and the gateway) on free
# loopback ports, with their default rate limits, as `make up` would run
# them (only PBKDF2 is made cheap, to keep the test fast).
#
# Usage: tests/deployment.sh [bin-dir]     (default build/bin)
#
# What it shows:
#   - journey.sh passes against each phase, given the right JWT_SECRET, and
#     finds the API by itself (/ for the monolith, /api/v1 for the gateway);
#   - it fails, and says why, given a wrong JWT_SECRET, a URL where nothing
#     listens, or a URL where something that is not the kit answers; and it
#     refuses to run without BASE_URL;
#   - compare.sh --phase1 URL --phase2 URL measures the two running phases
#     (a table with their two columns, its check passed) and gives up
#     clearly on a URL where nothing listens.
# The scripts under test run as child processes; their output is kept in
# the scratch directory and quoted when a check fails. The last line is "N
# passed, N failed".
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${1:-build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
echo "# journey.sh and compare.sh against a running deployment ($BIN_DIR); scratch: $TEST_DIR"

require_binaries "the programs are built" "$BIN_DIR/monolith" "$BIN_DIR/gateway" \
	"$BIN_DIR/users" "$BIN_DIR/url-shortener" "$BIN_DIR/analytics"

# --- the deployment ------------------------------------------------------------
SECRET="deployment-test-secret-0123456789abcdef-0123456789"
CHEAP=(ALLOW_INSECURE_DEV_SECRET=true PASSWORD_PBKDF2_ITERATIONS=1000)
REDIS_PORT=$(free_port)
MONOLITH_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
USERS_PORT=$(free_port)
URL_SHORTENER_PORT=$(free_port)
ANALYTICS_PORT=$(free_port)
P1="http://127.0.0.1:$MONOLITH_PORT"
P2="http://127.0.0.1:$GATEWAY_PORT"

section "start-up"
must_start "redis-server answers" start_redis "$REDIS_PORT" "$TEST_DIR/redis"
must_start "the monolith is healthy" start_monolith "$BIN_DIR/monolith" "$TEST_DIR/monolith" \
	"$MONOLITH_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" JWT_SECRET="$SECRET" "${CHEAP[@]}"
must_start "users is healthy" start_service users "$BIN_DIR/users" "$TEST_DIR/users" \
	"$USERS_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1" JWT_SECRET="$SECRET" "${CHEAP[@]}"
must_start "analytics is healthy" start_service analytics "$BIN_DIR/analytics" \
	"$TEST_DIR/analytics" "$ANALYTICS_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1"
must_start "url-shortener is healthy" start_service url-shortener "$BIN_DIR/url-shortener" \
	"$TEST_DIR/url-shortener" "$URL_SHORTENER_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1" \
	PUBLIC_BASE_URL="$P2" ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
must_start "the gateway is healthy" start_gateway "$BIN_DIR/gateway" "$TEST_DIR/gateway" \
	"$GATEWAY_PORT" GATEWAY_CONFIG="$PWD/phase2-gateway/gateway.json" \
	USERS_URL="http://127.0.0.1:$USERS_PORT" \
	URL_SHORTENER_URL="http://127.0.0.1:$URL_SHORTENER_PORT" \
	ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" \
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" JWT_SECRET="$SECRET"

# run_under_test NAME [VAR=VALUE...] -- COMMAND...: runs a script under
# test with those variables added (this shell's JWT_SECRET, BASE_URL,
# API_PREFIX and COMPARE_REPEAT removed first); RC is its exit status, OUT
# the file with its output, SUMMARY its "N passed, N failed" line. Its own
# scratch directory goes inside ours (TMPDIR), so the ones it keeps after
# a failure we provoked go when ours does.
run_under_test() {
	local name=$1 assignments=()
	shift
	while [ "$1" != "--" ]; do
		assignments+=("$1")
		shift
	done
	shift
	OUT="$TEST_DIR/$name.out"
	env -u JWT_SECRET -u BASE_URL -u API_PREFIX -u COMPARE_REPEAT TMPDIR="$TEST_DIR" \
		"${assignments[@]}" "$@" >"$OUT" 2>&1
	RC=$?
	SUMMARY=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$OUT" | tail -n 1)
}

# quote: the end of the last script's output, as a failure's reason.
quote() {
	tail -n 12 "$OUT" | tr '\n' '|'
}

# --- journey.sh ------------------------------------------------------------------
section "journey.sh"
step "Phase 1, the right secret"
run_under_test journey-p1 BASE_URL="$P1" JWT_SECRET="$SECRET" -- bash tests/journey.sh
check_eq "exits 0" 0 "$RC"
check_match "every check passed" '^[1-9][0-9]* passed, 0 failed$' "$SUMMARY"
check_true "it verified the token with JWT_SECRET" grep -q '^ok - .*signature verifies with JWT_SECRET' "$OUT"
check_true "it found the API at / (the monolith)" grep -qx "# the API: $P1" "$OUT"
[ "$RC" = 0 ] || fail "Phase 1 journey output" "$(quote)"

step "Phase 2, the right secret"
run_under_test journey-p2 BASE_URL="$P2" JWT_SECRET="$SECRET" -- bash tests/journey.sh
check_eq "exits 0" 0 "$RC"
check_match "every check passed" '^[1-9][0-9]* passed, 0 failed$' "$SUMMARY"
check_true "it found the API at /api/v1 (a gateway)" grep -qx "# the API: $P2/api/v1" "$OUT"
[ "$RC" = 0 ] || fail "Phase 2 journey output" "$(quote)"

step "a wrong secret"
run_under_test journey-wrong-secret BASE_URL="$P2" JWT_SECRET="not-$SECRET" -- bash tests/journey.sh
check_eq "exits 1" 1 "$RC"
check_true "the signature check fails" grep -q '^not ok - .*signature verifies with JWT_SECRET' "$OUT"
check_true "it says the deployment signs with another secret" \
	grep -q 'the deployment signs with another secret' "$OUT"
check_true "its token is refused, and it says why" \
	grep -q 'refused: JWT_SECRET is not this deployment' "$OUT"
check_match "those are the only failures" '^[1-9][0-9]* passed, 2 failed$' "$SUMMARY"

step "a URL where nothing listens"
run_under_test journey-nothing BASE_URL="http://127.0.0.1:$(free_port)" -- bash tests/journey.sh
check_eq "exits 1" 1 "$RC"
check_true "it says there is no answer, and stops" grep -q 'no answer from http://127.0.0.1:' "$OUT"
check_eq "after one check" "0 passed, 1 failed" "$SUMMARY"

step "a URL where something else answers"
# Redis speaks no HTTP: curl gets nothing back it can read.
run_under_test journey-redis BASE_URL="http://127.0.0.1:$REDIS_PORT" -- bash tests/journey.sh
check_eq "exits 1" 1 "$RC"
check_true "it says so, and stops" grep -q 'is BASE_URL right?' "$OUT"
# nginx-style: HTTP, but not the kit. The monolith's /r/ prefix answers
# 404 problem+json for /r/health: a URL one path segment off.
run_under_test journey-off-by-a-path BASE_URL="$P1/r" -- bash tests/journey.sh
check_eq "one path segment off: exits 1" 1 "$RC"
check_true "one path segment off: it says this is not the kit's /health" \
	grep -q "this is not the kit's /health" "$OUT"

step "no BASE_URL"
run_under_test journey-usage -- bash tests/journey.sh
check_eq "exits 2" 2 "$RC"
check_true "it prints the usage" grep -q '^usage: BASE_URL=' "$OUT"

# --- compare.sh ------------------------------------------------------------------
section "compare.sh --phase1 URL --phase2 URL"
step "both running"
run_under_test compare-urls COMPARE_REPEAT=2 -- bash tests/compare.sh --phase1 "$P1" --phase2 "$P2"
check_eq "exits 0" 0 "$RC"
check_eq "its check passed" "1 passed, 0 failed" "$SUMMARY"
check_true "the table has a column for each of the two phases, and their difference" \
	grep -Eq '^step +route \(Phase 1\) +phase 1 +phase 2 +p1 ms +p2 ms +p2 - p1 *$' "$OUT"
check_true "the redirect row shows 302 on both" grep -Eq '^redirect +GET /r/:code +302 +302 ' "$OUT"
[ "$RC" = 0 ] || fail "compare.sh output" "$(quote)"

step "one URL where nothing listens"
run_under_test compare-nothing COMPARE_REPEAT=2 -- \
	bash tests/compare.sh --phase1 "$P1" --phase2 "http://127.0.0.1:$(free_port)"
check_eq "exits 1" 1 "$RC"
check_true "it says which phase does not answer" grep -q 'phase 2: no answer from http://127.0.0.1:' "$OUT"

step "a flag without a URL"
run_under_test compare-usage -- bash tests/compare.sh --phase1
check_eq "exits 2" 2 "$RC"
check_true "it prints the usage" grep -q '^usage: tests/compare.sh' "$OUT"
step ""

section "the deployment stops cleanly"
declare -A SERVER_NAMES=([$MONOLITH_PID]=monolith [$GATEWAY_PID]=gateway)
check_clean_stop
finish
