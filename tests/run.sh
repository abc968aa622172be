#!/usr/bin/env bash
# tests/run.sh unit|all - run the kit's test suites and add up their counts.
#
#   unit  every build/tests/test_* binary (cmocka unit tests; none yet is fine)
#   all   unit, then tests/compose.sh, then tests/phase1.sh against
#         build/bin/monolith, then again against build/asan/bin/monolith
#         (AddressSanitizer + UBSan: phase1.sh fails on any sanitizer report
#         in the monolith's logs, and on a non-zero exit at SIGTERM), then
#         tests/phase2.sh and then tests/phase3.sh against build/bin and
#         build/asan/bin the same way (phase2.sh once more with the
#         gateways on civetweb's threads, SERVER_CORE=threads, instead of
#         the event loop; between the two phases, tests/event_loop.sh
#         against build/bin and build/asan/bin: the gateway's server core
#         with exact bytes on the wire - malformed requests, paths,
#         pipelining, 100-continue, chunked bodies, slow and vanishing
#         clients, 300 connections), then tests/compare.sh (Phases 1, 2
#         and 3 side by side: one check, that every step answered the same
#         status on all three), and last the benchmark harness in smoke
#         mode (bench/run.sh --smoke: one second per scenario, so it cannot
#         rot; one check, that every scenario available here produced its
#         numbers)
#
# `make test` builds both binaries first and then runs `tests/run.sh all`.
# Each suite gets a header; its passes and failures are read from its own
# closing line (cmocka's "[  PASSED  ] N test(s)." / "[  FAILED  ] N
# test(s)", the scripts' "N passed, N failed"). A suite that exits non-zero
# without reporting a failure, or reports nothing, counts as one failure.
# The very last line is the total: "N passed, N failed". The exit code is 1
# when anything failed.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1

MODE=${1:-all}
TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()   # one line per suite, printed before the total
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/kit-run.XXXXXX")
trap 'stop_unit_redis; rm -rf "$SCRATCH"' EXIT

header() {
	printf '\n==============================================================\n'
	printf '== %s\n' "$1"
	printf '==============================================================\n'
}

# record NAME PASSED FAILED EXIT_STATUS [NOTE]: adds a suite's counts to the
# totals. A non-zero exit with no failure counted is a crash: one more
# failure.
record() {
	local name=$1 passed=$2 failed=$3 status=$4 note=${5:+ ($5)}
	if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note=" (exited $status without reporting a failure)"
	fi
	TOTAL_PASSED=$((TOTAL_PASSED + passed))
	TOTAL_FAILED=$((TOTAL_FAILED + failed))
	SUMMARY+=("$(printf '%-34s %4d passed, %d failed%s' "$name" "$passed" "$failed" "$note")")
}

# start_unit_redis: a throwaway redis-server (no persistence) for the store
# tests' Redis variants, on a port the kernel picks; exports
# KIT_TEST_REDIS_URL once it answers PING. Without it those cases skip.
UNIT_REDIS_PID=
start_unit_redis() {
	local port
	command -v redis-server >/dev/null || return 0
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize no >"$SCRATCH/unit-redis.log" 2>&1 &
	UNIT_REDIS_PID=$!
	for _ in $(seq 1 200); do
		if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then
			export KIT_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
			return 0
		fi
		kill -0 "$UNIT_REDIS_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "# unit redis-server did not start; Redis cases will skip" >&2
}

stop_unit_redis() {
	[ -n "$UNIT_REDIS_PID" ] || return 0
	kill "$UNIT_REDIS_PID" 2>/dev/null
	wait "$UNIT_REDIS_PID" 2>/dev/null
	UNIT_REDIS_PID=
	unset KIT_TEST_REDIS_URL
}

# run_unit: every cmocka binary under build/tests/.
run_unit() {
	local binary output status passed failed found=0
	header "unit tests (build/tests/test_*)"
	start_unit_redis
	for binary in build/tests/test_*; do
		[ -x "$binary" ] || continue
		found=1
		output="$SCRATCH/$(basename "$binary").out"
		echo "# $binary"
		# Plain text on stdout, whatever the caller's CMOCKA_MESSAGE_OUTPUT.
		CMOCKA_MESSAGE_OUTPUT=STDOUT "./$binary" 2>&1 | tee "$output"
		status=${PIPESTATUS[0]}
		passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' "$output" | tail -n 1)
		failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s).*/\1/p' "$output" | tail -n 1)
		if [ -z "$passed" ] && [ -z "$failed" ]; then
			# No summary line: it crashed before cmocka could print one.
			record "unit $(basename "$binary")" 0 1 "$status" \
				"no cmocka summary; exit $status"
			continue
		fi
		record "unit $(basename "$binary")" "${passed:-0}" "${failed:-0}" "$status"
	done
	stop_unit_redis
	if [ "$found" -eq 0 ]; then
		echo "# no unit test binaries (tests/unit/test_*.c) yet"
	fi
}

# run_script NAME COMMAND...: a script that ends with "N passed, N failed".
run_script() {
	local name=$1 output status counts passed=0 failed=0
	shift
	header "$name"
	output="$SCRATCH/script.out"
	"$@" 2>&1 | tee "$output"
	status=${PIPESTATUS[0]}
	counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$output" | tail -n 1)
	if [ -z "$counts" ]; then
		record "$name" 0 1 "$status" "no 'N passed, N failed' line; exit $status"
		return
	fi
	passed=${counts%% passed*}
	failed=${counts#*, }
	failed=${failed%% failed*}
	record "$name" "$passed" "$failed" "$status"
}

# run_sanitized NAME COMMAND...: run_script with the ASan/UBSan build's
# options: leaks checked, and the first report aborts the process (the
# scripts grep their servers' logs for reports).
run_sanitized() {
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		run_script "$@"
}

case $MODE in
unit)
	run_unit
	;;
all)
	run_unit
	run_script "compose files (tests/compose.sh)" bash tests/compose.sh
	run_script "phase 1 (build/bin/monolith)" bash tests/phase1.sh build/bin/monolith
	run_sanitized "phase 1 ASan+UBSan (build/asan)" bash tests/phase1.sh build/asan/bin/monolith
	run_script "phase 2 (build/bin)" bash tests/phase2.sh build/bin
	run_sanitized "phase 2 ASan+UBSan (build/asan)" bash tests/phase2.sh build/asan/bin
	run_script "phase 2, gateways on civetweb threads (SERVER_CORE=threads)" \
		env SERVER_CORE=threads bash tests/phase2.sh build/bin
	run_script "event-loop server core (build/bin)" bash tests/event_loop.sh build/bin
	run_sanitized "event-loop server core ASan+UBSan (build/asan)" bash tests/event_loop.sh build/asan/bin
	run_script "phase 3 (build/bin)" bash tests/phase3.sh build/bin
	run_sanitized "phase 3 ASan+UBSan (build/asan)" bash tests/phase3.sh build/asan/bin
	run_script "tracing (build/bin)" bash tests/tracing.sh build/bin
	run_sanitized "tracing ASan+UBSan (build/asan)" bash tests/tracing.sh build/asan/bin
	run_script "faults under load, graceful shutdown (tests/faults.sh)" bash tests/faults.sh build/bin
	run_script "phases 1, 2, 3 (tests/compare.sh)" bash tests/compare.sh build/bin
	run_script "benchmark smoke (bench/run.sh)" bash bench/run.sh --smoke --out "$SCRATCH/bench"
	;;
*)
	echo "usage: tests/run.sh unit|all" >&2
	exit 2
	;;
esac

header "summary"
for line in "${SUMMARY[@]}"; do
	echo "$line"
done
echo
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
