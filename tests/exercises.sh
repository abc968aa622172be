#!/usr/bin/env bash
# tests/exercises.sh - every workshop exercise's checker, proven against its
# reference solution: on a scratch copy of this tree the checker must fail
# (the exercise is not done yet), and after the solution's patch
# (tests/exercises/solutions/NN.patch) it must pass. So a checker that
# cannot fail, or a solution that no longer applies or no longer works,
# turns `make test` red.
#
# Usage: tests/exercises.sh [NN...]   (default: every exercise)
#
# The copy: the files git knows (tracked, or new and not ignored) plus the
# normal build (build/, without build/asan and build/fuzz), times kept, so
# `make` in the copy rebuilds only what a patch touched. Runs after `make
# all` (make test does that first).
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

if [ $# -gt 0 ]; then
	EXERCISES=("$@")
else
	mapfile -t EXERCISES < <(ls tests/exercises/check-*.sh | sed 's/.*check-\([0-9]*\)\.sh/\1/')
fi

section "prerequisites"
check_true "build/bin/gateway exists (make all ran)" test -x build/bin/gateway
[ $# -gt 0 ] || check_num "there are at least ten exercises" "${#EXERCISES[@]}" '>=' 10

# scratch_copy DIR: this tree, as described above, into DIR.
scratch_copy() {
	mkdir -p "$1"
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$1"
	tar -cf - --exclude=build/asan --exclude=build/fuzz build | tar -xf - -C "$1"
}

for n in "${EXERCISES[@]}"; do
	section "exercise $n"
	step "exercise $n"
	dir="$TEST_DIR/exercise-$n"
	check_true "docs/workshop/exercise-$n-*.md exists" bash -c "ls docs/workshop/exercise-$n-*.md >/dev/null 2>&1"
	check_true "its reference solution exists" test -f "tests/exercises/solutions/$n.patch"
	scratch_copy "$dir"
	(cd "$dir" && make -s all) >"$TEST_DIR/build-$n-before.log" 2>&1
	check_eq "the scratch copy builds" 0 "$?"

	step "exercise $n before its solution"
	(cd "$dir" && bash "tests/exercises/check-$n.sh") >"$TEST_DIR/check-$n-before.log" 2>&1
	status=$?
	check_eq "the checker fails (exit 1)" 1 "$status"
	check_match "and says what is missing" "exercise $n: not yet" "$(tail -n 1 "$TEST_DIR/check-$n-before.log")"

	step "exercise $n with tests/exercises/solutions/$n.patch"
	(cd "$dir" && git apply "$PWD/tests/exercises/solutions/$n.patch") \
		>"$TEST_DIR/patch-$n.log" 2>&1
	check_eq "the patch applies" 0 "$?" || sed 's/^/#   /' "$TEST_DIR/patch-$n.log"
	(cd "$dir" && make -s all) >"$TEST_DIR/build-$n-after.log" 2>&1
	status=$?
	check_eq "the copy builds with it" 0 "$status"
	[ "$status" = 0 ] || tail -n 15 "$TEST_DIR/build-$n-after.log" | sed 's/^/#   /'
	(cd "$dir" && bash "tests/exercises/check-$n.sh") >"$TEST_DIR/check-$n-after.log" 2>&1
	status=$?
	check_eq "the checker passes (exit 0)" 0 "$status"
	if [ "$status" != 0 ]; then
		grep -A2 '^not ok' "$TEST_DIR/check-$n-after.log" | head -n 20 | sed 's/^/#   /'
	fi
	check_match "and says PASS" "exercise $n: PASS" "$(tail -n 1 "$TEST_DIR/check-$n-after.log")"
	# The copy's processes are stopped by its checker; its files go.
	[ "$status" = 0 ] && rm -rf "$dir"
done

finish
