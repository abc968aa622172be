#!/usr/bin/env bash
# tests/fuzz.sh smoke|run|merge SECONDS [TARGET...] - the libFuzzer targets
# of tests/fuzz/ (docs/security.md, "Fuzzing").
#
#   smoke  what `make test` runs (one run_script line in tests/run.sh):
#          builds the targets (make fuzz-build), then runs each for SECONDS
#          (default 2), two at a time, niced, on a throwaway copy of its
#          seeds (tests/fuzz/corpus/<target>/). One check per target: it
#          built, ran its seconds, and reported no crash, sanitizer error or
#          failed property. Ends with "N passed, N failed". Without clang or
#          its fuzzer runtime every target fails, saying what to install.
#   run    `make fuzz`: each target for SECONDS, one after the other, niced,
#          on its work corpus build/fuzz/corpus/<target>/ (created, and
#          kept between runs) with the seeds beside it; a crash is saved as
#          build/fuzz/artifacts/<target>/crash-<sha1>. New inputs stay out
#          of git.
#   merge  `make fuzz-merge`: adds to tests/fuzz/corpus/<target>/ the inputs
#          of the work corpus that reach coverage the seeds do not
#          (libFuzzer -merge=1); review them, commit only the few worth
#          keeping (a 10-minute run adds about a hundred a target).
#
# No TARGET: every tests/fuzz/fuzz_<target>.c. FUZZ_JOBS (smoke: 2) runs
# that many at once. Run from anywhere; it works from the repository root.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1

MODE=${1:-smoke}
SECONDS_EACH=${2:-2}
shift 2 2>/dev/null || shift $#
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
	for source in tests/fuzz/fuzz_*.c; do
		name=${source#tests/fuzz/fuzz_}
		TARGETS+=("${name%.c}")
	done
fi
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/kit-fuzz.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
PASSED=0
FAILED=0
CC=${FUZZ_CC:-clang}

# The dictionary a target uses, if any.
dictionary() {
	case $1 in
	http_head | http_chunked) echo tests/fuzz/dict/http.dict ;;
	http_path | route_match) echo tests/fuzz/dict/path.dict ;;
	jwt) echo tests/fuzz/dict/jwt.dict ;;
	users | url_shortener | analytics | gateway_config) echo tests/fuzz/dict/json.dict ;;
	esac
}

# fuzz_flags TARGET SECONDS: the libFuzzer options every mode shares.
fuzz_flags() {
	local dict
	dict=$(dictionary "$1")
	printf '%s\n' -max_total_time="$2" -timeout=25 -rss_limit_mb=4096 \
		-print_final_stats=1 ${dict:+-dict="$dict"}
}

fail_all() {
	echo "$1" >&2
	echo
	echo "0 passed, ${#TARGETS[@]} failed"
	exit 1
}

# Can clang build and link a libFuzzer program at all?
toolchain_check() {
	command -v "$CC" >/dev/null ||
		fail_all "fuzz: $CC not found: apt-get install clang libclang-rt-14-dev"
	printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
		>"$SCRATCH/probe.c"
	"$CC" -fsanitize=fuzzer,address,undefined "$SCRATCH/probe.c" -o "$SCRATCH/probe" \
		>"$SCRATCH/probe.log" 2>&1 ||
		fail_all "fuzz: $CC cannot link a libFuzzer target (the fuzzer runtime is missing?): apt-get install libclang-rt-14-dev
$(tail -n 3 "$SCRATCH/probe.log")"
}

build() {
	echo "# building the fuzz targets (make fuzz-build, build/fuzz/)"
	if ! make --no-print-directory -j2 fuzz-build >"$SCRATCH/build.log" 2>&1; then
		tail -n 30 "$SCRATCH/build.log"
		fail_all "fuzz: the targets did not build (above)"
	fi
}

# smoke_one TARGET: runs it on a copy of its seeds; writes its verdict line
# to $SCRATCH/TARGET.verdict ("ok ..." or "FAIL ...").
smoke_one() {
	local target=$1 binary=build/fuzz/$1 work=$SCRATCH/$1 log=$SCRATCH/$1.log
	local runs cov
	mkdir -p "$work/corpus" "$work/artifacts"
	cp tests/fuzz/corpus/"$target"/* "$work/corpus/" 2>/dev/null
	if [ ! -x "$binary" ]; then
		echo "FAIL $target: $binary was not built" >"$SCRATCH/$target.verdict"
		return
	fi
	# shellcheck disable=SC2046
	nice -n 10 "$binary" $(fuzz_flags "$target" "$SECONDS_EACH") \
		-artifact_prefix="$work/artifacts/" "$work/corpus" >"$log" 2>&1
	local status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
	if [ "$status" -eq 0 ] && [ -n "$runs" ] && [ -z "$(ls -A "$work/artifacts")" ]; then
		echo "ok   $target: $runs runs in ${SECONDS_EACH}s, $cov" >"$SCRATCH/$target.verdict"
	else
		{
			echo "FAIL $target: exit $status, ${runs:-no} runs"
			grep -a -m 1 -A 3 'PROPERTY FAILED\|ERROR: \|runtime error' "$log" | sed 's/^/     /'
			ls "$work/artifacts" 2>/dev/null | sed 's/^/     artifact: /'
		} >"$SCRATCH/$target.verdict"
	fi
}

case $MODE in
smoke)
	toolchain_check
	build
	jobs_at_once=${FUZZ_JOBS:-2}
	running=0
	for target in "${TARGETS[@]}"; do
		smoke_one "$target" &
		running=$((running + 1))
		if [ "$running" -ge "$jobs_at_once" ]; then
			wait -n
			running=$((running - 1))
		fi
	done
	wait
	for target in "${TARGETS[@]}"; do
		cat "$SCRATCH/$target.verdict"
		case $(head -c 2 "$SCRATCH/$target.verdict") in
		ok) PASSED=$((PASSED + 1)) ;;
		*) FAILED=$((FAILED + 1)) ;;
		esac
	done
	echo
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
	;;
run)
	toolchain_check
	for target in "${TARGETS[@]}"; do
		mkdir -p "build/fuzz/corpus/$target" "build/fuzz/artifacts/$target"
		echo "# $target: ${SECONDS_EACH}s on build/fuzz/corpus/$target (seeds: tests/fuzz/corpus/$target)"
		# shellcheck disable=SC2046
		nice -n 10 "build/fuzz/$target" $(fuzz_flags "$target" "$SECONDS_EACH") \
			-artifact_prefix="build/fuzz/artifacts/$target/" \
			"build/fuzz/corpus/$target" "tests/fuzz/corpus/$target" \
			>"build/fuzz/$target.log" 2>&1
		status=$?
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build/fuzz/$target.log" | tail -n 1)
		cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "build/fuzz/$target.log" | tail -n 1)
		if [ "$status" -eq 0 ]; then
			echo "ok   $target: ${runs:-?} runs, $cov (log: build/fuzz/$target.log)"
			PASSED=$((PASSED + 1))
		else
			echo "FAIL $target: exit $status (log: build/fuzz/$target.log)"
			grep -a -m 1 -A 3 'PROPERTY FAILED\|ERROR: \|runtime error' "build/fuzz/$target.log" | sed 's/^/     /'
			ls "build/fuzz/artifacts/$target" | sed 's/^/     artifact: /'
			FAILED=$((FAILED + 1))
		fi
	done
	echo
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
	;;
merge)
	for target in "${TARGETS[@]}"; do
		if [ ! -d "build/fuzz/corpus/$target" ]; then
			echo "# $target: no work corpus (run make fuzz first)"
			continue
		fi
		before=$(ls "tests/fuzz/corpus/$target" | wc -l)
		nice -n 10 "build/fuzz/$target" -merge=1 "tests/fuzz/corpus/$target" \
			"build/fuzz/corpus/$target" >"$SCRATCH/$target.merge.log" 2>&1 ||
			{ tail -n 5 "$SCRATCH/$target.merge.log"; FAILED=$((FAILED + 1)); continue; }
		after=$(ls "tests/fuzz/corpus/$target" | wc -l)
		echo "# $target: $((after - before)) inputs added to tests/fuzz/corpus/$target"
	done
	[ "$FAILED" -eq 0 ]
	;;
*)
	echo "usage: tests/fuzz.sh smoke|run|merge SECONDS [TARGET...]" >&2
	exit 2
	;;
esac
