#!/usr/bin/env bash
# tests/run.sh unit|all - run the kit's test suites, several at once, and
# add up their counts.
#
#   unit  every build/tests/test_* binary (cmocka unit tests; none yet is fine)
#   all   the unit tests and every black-box suite: tests/compose.sh;
#         tests/phase1.sh against build/bin/monolith, then against
#         build/asan/bin/monolith (AddressSanitizer + UBSan: phase1.sh fails
#         on any sanitizer report in the monolith's logs, and on a non-zero
#         exit at SIGTERM); tests/phase2.sh, tests/event_loop.sh (the
#         gateway's server core with exact bytes on the wire),
#         tests/phase3.sh, tests/tracing.sh and tests/lifecycle.sh (how a
#         server on civetweb stops on SIGTERM) against build/bin and
#         build/asan/bin the same way; phase2.sh once more with the gateways
#         on civetweb's threads (SERVER_CORE=threads) instead of the event
#         loop; tests/compare.sh (Phases 1, 2 and 3 side by side: one check,
#         that every step answered the same status on all three); and the
#         benchmark harness in smoke mode (bench/run.sh --smoke: one second
#         per scenario, so it cannot rot; one check, that every scenario
#         available here produced its numbers)
#
# `make test` builds both binaries first and then runs `tests/run.sh all`.
#
# Side by side: each `run_script` / `run_sanitized` line below only puts a
# suite in the queue; then TEST_JOBS suites run at once (default 4: on a
# 2-core machine shared with other builds, 2 took 270 s, 3 93-157 s, 4 79-153
# s, 5 73-95 s and 6 190 s, as the suites spend most of their time waiting on
# their servers rather than computing, until they crowd each other out;
# TEST_JOBS=1 runs them one after the other). They
# cannot get in each other's way: each script has its own scratch directory
# (lib.sh's TEST_DIR) and its own block of ports (lib.sh's free_port: a
# block claimed with a lock, so no two scripts, of this run or another, are
# ever handed the same port). The longest suites start first: the times of
# the last run are kept in build/test-times.tsv; a suite never timed yet
# starts first of all, and with no times at all (a fresh checkout, CI) the
# suites start in the order they are listed below, longest first.
#
# Each suite's output goes to a file of its own and is printed whole, under
# its header, when the suite ends; so the order of the sections is the
# order in which suites finish (with TEST_JOBS=1, it is shown as it comes). Its passes and failures are read from its
# own closing line (cmocka's "[  PASSED  ] N test(s)." / "[  FAILED  ] N
# test(s)", the scripts' "N passed, N failed"). A suite that exits non-zero
# without reporting a failure, or reports nothing, counts as one failure.
# The summary lists every suite in the order below with its counts and
# its time in seconds, then the wall time; the very last line is the
# total: "N passed, N failed". The exit code is 1 when anything failed.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1

MODE=${1:-all}
TEST_JOBS=${TEST_JOBS:-4}
if ! [[ $TEST_JOBS =~ ^[1-9][0-9]*$ ]]; then
	echo "tests/run.sh: TEST_JOBS must be a number of suites, 1 or more (got '$TEST_JOBS')" >&2
	exit 2
fi
# One at a time, a suite's output is shown as it comes (live), as before.
LIVE=0
[ "$TEST_JOBS" -gt 1 ] || LIVE=1
TIMES_FILE=build/test-times.tsv
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/kit-run.XXXXXX")
RUN_START_US=${EPOCHREALTIME/[.,]/}

header() {
	printf '\n==============================================================\n'
	printf '== %s\n' "$1"
	printf '==============================================================\n'
}

# seconds_since START_US: seconds since START_US (from $EPOCHREALTIME), one
# decimal.
seconds_since() {
	awk -v us=$((${EPOCHREALTIME/[.,]/} - $1)) 'BEGIN { printf "%.1f", us / 1e6 }'
}

# ---------------------------------------------------------------------------
# The queue. A job is one suite: JOB_NAMES[i], JOB_KINDS[i] ("script" or
# "unit"), JOB_COMMANDS[i] (the command, shell-quoted, with the variables
# run_sanitized adds in front).
# ---------------------------------------------------------------------------
JOB_NAMES=()
JOB_KINDS=()
JOB_COMMANDS=()

# run_script NAME COMMAND...: queues a script that ends with "N passed, N
# failed".
run_script() {
	local name=$1
	shift
	JOB_NAMES+=("$name")
	JOB_KINDS+=(script)
	JOB_COMMANDS+=("${JOB_ENV:-}$(printf '%q ' "$@")")
}

# run_sanitized NAME COMMAND...: run_script with the ASan/UBSan build's
# options: leaks checked, and the first report aborts the process (the
# scripts grep their servers' logs for reports).
run_sanitized() {
	JOB_ENV="ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 " \
		run_script "$@"
}

# run_unit: queues the cmocka binaries, as one job.
run_unit() {
	JOB_NAMES+=("unit tests (build/tests/test_*)")
	JOB_KINDS+=(unit)
	JOB_COMMANDS+=("")
}

# ---------------------------------------------------------------------------
# What a job does, in its own subshell, its output in $SCRATCH/job-I.log.
# It writes one line per result to $SCRATCH/job-I.records:
#   NAME | PASSED | FAILED | EXIT_STATUS | SECONDS | NOTE
# separated by the ASCII unit separator (US below; a tab would not do: read
# takes two tabs in a row as one), where an empty PASSED means "no counts
# found".
US=$'\x1f'
# ---------------------------------------------------------------------------

# _record_counts NAME OUTPUT STATUS START_US RECORDS: the counts in OUTPUT
# (a script's last "N passed, N failed" line) as one line of RECORDS.
_record_counts() {
	local name=$1 output=$2 status=$3 start_us=$4 records=$5 counts passed="" failed=""
	counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$output" | tail -n 1)
	if [ -n "$counts" ]; then
		passed=${counts%% passed*}
		failed=${counts#*, }
		failed=${failed%% failed*}
	fi
	printf "%s${US}%s${US}%s${US}%s${US}%s${US}%s\n" "$name" "$passed" "${failed:-0}" "$status" \
		"$(seconds_since "$start_us")" "no 'N passed, N failed' line; exit $status" >>"$records"
}

# _script_job I: runs JOB_COMMANDS[I].
_script_job() {
	local i=$1 start_us=${EPOCHREALTIME/[.,]/} status
	if [ "$LIVE" = 1 ]; then
		eval "env ${JOB_COMMANDS[$i]}" 2>&1 </dev/null | tee "$SCRATCH/job-$i.log"
		status=${PIPESTATUS[0]}
	else
		eval "env ${JOB_COMMANDS[$i]}" >"$SCRATCH/job-$i.log" 2>&1 </dev/null
		status=$?
	fi
	_record_counts "${JOB_NAMES[$i]}" "$SCRATCH/job-$i.log" "$status" "$start_us" \
		"$SCRATCH/job-$i.records"
}

# start_unit_redis: a throwaway redis-server (no persistence) for the store
# tests' Redis variants, on a port the kernel picks (tried again on another
# one if something takes it first); exports KIT_TEST_REDIS_URL once it
# answers PING. Without it those cases skip.
UNIT_REDIS_PID=
start_unit_redis() {
	local port
	command -v redis-server >/dev/null || return 0
	for _ in 1 2 3 4 5; do
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
		stop_unit_redis
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

# _unit_job I: every cmocka binary under build/tests/, one record each.
_unit_job() {
	local i=$1 binary output status passed failed found=0 start_us
	local records="$SCRATCH/job-$i.records"
	trap 'stop_unit_redis' EXIT
	start_unit_redis
	for binary in build/tests/test_*; do
		[ -x "$binary" ] || continue
		found=1
		output="$SCRATCH/$(basename "$binary").out"
		echo "# $binary"
		start_us=${EPOCHREALTIME/[.,]/}
		# Plain text on stdout, whatever the caller's CMOCKA_MESSAGE_OUTPUT.
		CMOCKA_MESSAGE_OUTPUT=STDOUT "./$binary" 2>&1 | tee "$output"
		status=${PIPESTATUS[0]}
		passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' "$output" | tail -n 1)
		failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s).*/\1/p' "$output" | tail -n 1)
		if [ -z "$passed" ] && [ -z "$failed" ]; then
			# No summary line: it crashed before cmocka could print one.
			printf "%s${US}${US}0${US}%s${US}%s${US}%s\n" "unit $(basename "$binary")" "$status" \
				"$(seconds_since "$start_us")" "no cmocka summary; exit $status" >>"$records"
			continue
		fi
		printf "%s${US}%s${US}%s${US}%s${US}%s${US}\n" "unit $(basename "$binary")" "${passed:-0}" \
			"${failed:-0}" "$status" "$(seconds_since "$start_us")" >>"$records"
	done
	stop_unit_redis
	if [ "$found" -eq 0 ]; then
		echo "# no unit test binaries (tests/unit/test_*.c) yet"
	fi
}

# _job I: runs job I; its output goes to its log.
_job() {
	local i=$1
	: >"$SCRATCH/job-$i.records"
	if [ "${JOB_KINDS[$i]}" = unit ] && [ "$LIVE" = 1 ]; then
		_unit_job "$i" 2>&1 </dev/null | tee "$SCRATCH/job-$i.log"
	elif [ "${JOB_KINDS[$i]}" = unit ]; then
		_unit_job "$i" >"$SCRATCH/job-$i.log" 2>&1 </dev/null
	else
		_script_job "$i"
	fi
}

# ---------------------------------------------------------------------------
# Running the queue
# ---------------------------------------------------------------------------
TOTAL_PASSED=0
TOTAL_FAILED=0
declare -A SUMMARY=()   # job index -> its summary line(s)
declare -A RUNNING=()   # pid of a running job -> job index
declare -A LAST_TIME=() # suite name -> seconds it took last time
JOB_START_US=()         # job index -> when it started ($EPOCHREALTIME, us)

# load_times: LAST_TIME from the last runs (build/test-times.tsv).
load_times() {
	local name seconds
	[ -r "$TIMES_FILE" ] || return 0
	while IFS=$'\t' read -r name seconds; do
		[ -n "$name" ] && LAST_TIME[$name]=$seconds
	done <"$TIMES_FILE"
}

# start_order: the job indices, longest first (see the top of the file).
start_order() {
	local i
	for i in "${!JOB_NAMES[@]}"; do
		# Never timed: first, in the order listed (sort -s keeps it).
		printf '%s\t%s\n' "${LAST_TIME[${JOB_NAMES[$i]}]:-999999}" "$i"
	done | sort -s -t $'\t' -k1,1 -g -r | cut -f 2
}

# add_result I NAME PASSED FAILED STATUS SECONDS NOTE: adds one result of
# job I to the totals and its line to the job's summary. A non-zero exit
# with no failure counted is a crash: one more failure; no counts at all
# is one failure.
add_result() {
	local i=$1 name=$2 passed=$3 failed=$4 status=$5 seconds=$6 note=""
	if [ -z "$passed" ]; then
		passed=0
		failed=1
		note=" ($7)"
	elif [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note=" (exited $status without reporting a failure)"
	fi
	TOTAL_PASSED=$((TOTAL_PASSED + passed))
	TOTAL_FAILED=$((TOTAL_FAILED + failed))
	SUMMARY[$i]+=$(printf '%-52s %4d passed, %d failed %6s s%s' "$name" "$passed" \
		"$failed" "$seconds" "$note")$'\n'
}

# finish_job PID: the job with this pid has ended: print its output under
# its header, add up its results, keep its time for the next run's order.
finish_job() {
	local i=${RUNNING[$1]} name passed failed status seconds note
	unset "RUNNING[$1]"
	LAST_TIME[${JOB_NAMES[$i]}]=$(seconds_since "${JOB_START_US[$i]}")
	if [ "$LIVE" = 0 ]; then
		header "${JOB_NAMES[$i]}"
		cat "$SCRATCH/job-$i.log"
	fi
	if [ ! -s "$SCRATCH/job-$i.records" ]; then
		# The job itself died before it could write its result.
		printf "%s${US}${US}0${US}1${US}%s${US}%s\n" "${JOB_NAMES[$i]}" "${LAST_TIME[${JOB_NAMES[$i]}]}" \
			"the job left no result" >"$SCRATCH/job-$i.records"
	fi
	SUMMARY[$i]=""
	while IFS=$US read -r name passed failed status seconds note; do
		add_result "$i" "$name" "$passed" "$failed" "$status" "$seconds" "$note"
	done <"$SCRATCH/job-$i.records"
}

# stop_jobs: on the way out (interrupted, terminated), stop the suites still
# running, by pid: the script each job runs (the job's child; its own exit
# trap then stops its servers), then the job.
stop_jobs() {
	local pid
	for pid in "${!RUNNING[@]}"; do
		pkill -TERM -P "$pid" 2>/dev/null
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${!RUNNING[@]}"; do
		wait "$pid" 2>/dev/null
	done
}
trap 'stop_jobs; rm -rf "$SCRATCH"' EXIT
trap 'echo "# interrupted" >&2; exit 130' INT
trap 'echo "# terminated" >&2; exit 143' TERM

# run_jobs: TEST_JOBS at a time, longest first, until the queue is done.
run_jobs() {
	local order=() next=0 pid i
	load_times
	mapfile -t order < <(start_order)
	while [ "$next" -lt "${#order[@]}" ] || [ "${#RUNNING[@]}" -gt 0 ]; do
		while [ "$next" -lt "${#order[@]}" ] && [ "${#RUNNING[@]}" -lt "$TEST_JOBS" ]; do
			i=${order[$next]}
			next=$((next + 1))
			JOB_START_US[$i]=${EPOCHREALTIME/[.,]/}
			[ "$LIVE" = 0 ] || header "${JOB_NAMES[$i]}"
			_job "$i" &
			RUNNING[$!]=$i
			if [ "$LIVE" = 0 ]; then
				printf '# started: %s\n' "${JOB_NAMES[$i]}"
			fi
		done
		# The next job to end, whichever it is.
		pid=""
		wait -n -p pid "${!RUNNING[@]}"
		if [ -n "$pid" ] && [ -n "${RUNNING[$pid]+set}" ]; then
			finish_job "$pid"
		fi
	done
}

# save_times: every suite's time, for the next run's order.
save_times() {
	local name
	[ -d "$(dirname "$TIMES_FILE")" ] || return 0
	for name in "${!LAST_TIME[@]}"; do
		printf '%s\t%s\n' "$name" "${LAST_TIME[$name]}"
	done | sort >"$TIMES_FILE.new" && mv "$TIMES_FILE.new" "$TIMES_FILE"
}

# The suites. The longest first: with no build/test-times.tsv, this is the
# order they start in.
case $MODE in
unit)
	run_unit
	;;
all)
	run_sanitized "phase 2 ASan+UBSan (build/asan)" bash tests/phase2.sh build/asan/bin
	run_sanitized "event-loop server core ASan+UBSan (build/asan)" bash tests/event_loop.sh build/asan/bin
	run_sanitized "phase 1 ASan+UBSan (build/asan)" bash tests/phase1.sh build/asan/bin/monolith
	run_sanitized "phase 3 ASan+UBSan (build/asan)" bash tests/phase3.sh build/asan/bin
	run_sanitized "tracing ASan+UBSan (build/asan)" bash tests/tracing.sh build/asan/bin
	run_script "phase 2 (build/bin)" bash tests/phase2.sh build/bin
	run_script "phase 2, gateways on civetweb threads (SERVER_CORE=threads)" \
		env SERVER_CORE=threads bash tests/phase2.sh build/bin
	run_script "event-loop server core (build/bin)" bash tests/event_loop.sh build/bin
	run_script "server cores under hostile clients (build/bin)" bash tests/server_limits.sh build/bin
	run_sanitized "server cores under hostile clients ASan+UBSan (build/asan)" bash tests/server_limits.sh build/asan/bin
	run_script "conformance: both gateway cores, a civetweb service, nginx" bash tests/conformance.sh build/bin
	run_script "phase 3 (build/bin)" bash tests/phase3.sh build/bin
	run_script "phase 1 (build/bin/monolith)" bash tests/phase1.sh build/bin/monolith
	run_script "tracing (build/bin)" bash tests/tracing.sh build/bin
	run_script "make up on a bare machine (tests/first_run.sh)" bash tests/first_run.sh
	run_script "make doctor (tests/doctor.sh)" bash tests/doctor.sh build/bin
	run_script "make up, service.sh, make down (tests/workshop.sh)" bash tests/workshop.sh build/bin
	run_script "scripts against a running deployment (tests/deployment.sh)" bash tests/deployment.sh build/bin
	run_script "faults under load, graceful shutdown (tests/faults.sh)" bash tests/faults.sh build/bin
	run_script "benchmark smoke (bench/run.sh)" bash bench/run.sh --smoke --out "$SCRATCH/bench"
	run_script "phases 1, 2, 3 (tests/compare.sh)" bash tests/compare.sh build/bin
	run_sanitized "stop on SIGTERM ASan+UBSan (build/asan)" bash tests/lifecycle.sh build/asan/bin
	run_script "stop on SIGTERM (tests/lifecycle.sh)" bash tests/lifecycle.sh build/bin
	run_unit
	run_script "compose files (tests/compose.sh)" bash tests/compose.sh
	run_script "fuzz smoke (tests/fuzz.sh, build/fuzz)" bash tests/fuzz.sh smoke
	run_script "diagrams drawn from their sources (tests/diagrams.sh)" bash tests/diagrams.sh
	run_script "workshop exercises against their solutions (tests/exercises.sh)" bash tests/exercises.sh
	run_script "Prometheus rules and configs (tests/monitoring.sh)" bash tests/monitoring.sh
	;;
*)
	echo "usage: tests/run.sh unit|all" >&2
	exit 2
	;;
esac

# print_failures: the failed checks again, under the summary, each with the
# diagnostic lines that follow it: a CI log keeps only its end, and a red
# run should say there what went red.
print_failures() {
	local i lines
	[ "$TOTAL_FAILED" -gt 0 ] || return 0
	echo "what failed:"
	for i in "${!JOB_NAMES[@]}"; do
		lines=$(grep -E -A4 '^not ok|^\[  ERROR   \]|^\[   LINE   \]|^\[  FAILED  \] test_' \
			"$SCRATCH/job-$i.log" 2>/dev/null |
			grep -v -E '^ok |^--$|^$|^# build/|^\[ RUN|^\[ +OK|^\[=|^\[  PASSED|^\[  FAILED  \] [0-9]|FAILED TEST' |
			awk '!seen[$0]++' | head -n 40)
		[ -n "$lines" ] || continue
		echo "  ${JOB_NAMES[$i]}:"
		printf '%s\n' "$lines" | sed 's/^/    /'
	done
	echo
}

run_jobs
save_times

header "summary"
for i in "${!JOB_NAMES[@]}"; do
	printf '%s' "${SUMMARY[$i]:-}"
done
echo
print_failures
echo "wall time: $(seconds_since "$RUN_START_US") s, $TEST_JOBS suites at a time"
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
