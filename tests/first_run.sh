#!/usr/bin/env bash
# tests/first_run.sh - `make up` on a bare machine works the first time, and
# each make target installs only its own package set.
#
# Usage: tests/first_run.sh
#
# A bare Debian 12 has neither pkg-config nor the libraries until
# scripts/deps.sh installs them, and make reads the Makefile before that. A
# Makefile that runs pkg-config while it is read gets empty flags, and the
# link fails with undefined references; the second `make up` works, which
# hides the bug from anyone whose machine already has the packages. So the
# machine is made bare again, as far as make can tell, in a copy of the
# kit (the files git knows, no build/) with a PATH whose first folder holds:
#
#   pkg-config   fails, as if not installed, until the marker file exists;
#                every call before that is written down (there must be none)
#   dpkg-query   says no package is installed until the marker exists; then
#                the real one answers
#   apt-get      writes down what it was asked to install and creates the
#                marker; installs nothing. With FAKE_APT_FAIL=1 it fails,
#                so a make target stops right after deps: that shows which
#                set it asked for without building anything
#   id           says uid 0 for `id -u`, so deps.sh takes the root path
#
# Then `make -j2 up` (Phase 1) runs in the copy with its own run directory
# and free ports (KIT_RUN_DIR, REDIS_PORT, PORT: use_own_run), and must: exit 0, run no
# pkg-config before deps, ask apt-get for exactly the build set, build only
# the monolith, and leave it answering; `make down` must stop it. Then
# `make up PHASE=2`, `make up PHASE=3`, `make test`, `make bench` and
# `make deps` must each ask for their own sets (scripts/deps.sh --list)
# and stop when apt-get fails, having compiled nothing; and a plain `make`
# must stop at the first compile, saying to run `make deps`.
#
# The last line is "N passed, N failed"; the exit code is 1 when a check
# failed. Only the monolith is compiled (about 40 files), once.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

echo "# make up on a bare machine (simulated), and the package set of each target"
echo "# scratch directory: $TEST_DIR"

KIT="$TEST_DIR/kit"
FAKEBIN="$TEST_DIR/fakebin"
MARKER="$TEST_DIR/deps-ran"
REAL_PKG_CONFIG=$(command -v pkg-config)
mkdir -p "$KIT" "$FAKEBIN"

# ---------------------------------------------------------------------------
section "a copy of the kit, and a bare machine as make sees it"
# ---------------------------------------------------------------------------
# The files git knows (committed or not, but not ignored: no build/, no
# .run/); without git, the tree less those folders.
copy_kit() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' file; do
				[ -e "$file" ] && printf '%s\0' "$file"
			done | xargs -0 cp --parents -t "$KIT"
	else
		tar --exclude=./build --exclude=./.run --exclude=./.git -cf - . | tar -xf - -C "$KIT"
	fi
}
check_true "the kit is copied" copy_kit
check_true "the copy has no build/" test ! -e "$KIT/build"

cat >"$FAKEBIN/pkg-config" <<EOF
#!/bin/sh
# tests/first_run.sh's pkg-config: absent until deps.sh has run.
if [ -e "$MARKER" ]; then
	exec "$REAL_PKG_CONFIG" "\$@"
fi
echo "pkg-config \$*" >>"$TEST_DIR/pkg-config-before-deps"
echo "pkg-config: not installed (yet: tests/first_run.sh)" >&2
exit 127
EOF
cat >"$FAKEBIN/dpkg-query" <<EOF
#!/bin/sh
# tests/first_run.sh's dpkg-query: nothing is installed until deps.sh ran.
[ -e "$MARKER" ] && exec /usr/bin/dpkg-query "\$@"
exit 1
EOF
cat >"$FAKEBIN/apt-get" <<EOF
#!/bin/sh
# tests/first_run.sh's apt-get: writes down, installs nothing.
echo "\$*" >>"$TEST_DIR/apt-get.log"
case "\$*" in
*install*)
	[ "\${FAKE_APT_FAIL:-0}" = 1 ] && exit 100
	: >"$MARKER" ;;
esac
exit 0
EOF
cat >"$FAKEBIN/id" <<'EOF'
#!/bin/sh
# tests/first_run.sh's id: root, for deps.sh.
[ "$1" = -u ] && { echo 0; exit 0; }
exec /usr/bin/id "$@"
EOF
chmod +x "$FAKEBIN"/*

# kit_make ARGS...: make in the copy, on the bare machine, as a make of its
# own (not a sub-make of a `make test` that runs this script); MAKE_OUT,
# MAKE_STATUS. APT_ASKED: the packages apt-get was asked to install.
kit_make() {
	rm -f "$TEST_DIR/apt-get.log"
	MAKE_STATUS=0
	MAKE_OUT=$(PATH="$FAKEBIN:$PATH" env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		make -C "$KIT" --no-print-directory "$@" 2>&1) ||
		MAKE_STATUS=$?
	printf '$ make %s\n%s\n' "$*" "$MAKE_OUT" >>"$TEST_DIR/make.log"
	APT_ASKED=$(sed -n 's/.*install -y --no-install-recommends //p' \
		"$TEST_DIR/apt-get.log" 2>/dev/null | tr ' ' '\n' | sort)
}

# set_of SET...: the packages of those sets, sorted, as deps.sh lists them.
set_of() {
	bash scripts/deps.sh --list "$@" | sort
}
# asked_for SET...: what deps.sh asks apt-get for on the bare machine: all
# of set_of, but npm when an npm command is already on PATH (deps.sh takes
# any npm; NodeSource's conflicts with Debian's).
asked_for() {
	if command -v npm >/dev/null; then
		set_of "$@" | grep -vx npm
	else
		set_of "$@"
	fi
}

# ---------------------------------------------------------------------------
section "make up, the first time"
# ---------------------------------------------------------------------------
use_own_run "$KIT/scripts/down.sh"
unset BIN_DIR MONOLITH JWT_SECRET

step "make -j2 up"
check_true "pkg-config is absent before deps" bash -c "! PATH='$FAKEBIN:$PATH' pkg-config --exists libjwt 2>/dev/null"
rm -f "$TEST_DIR/pkg-config-before-deps" # that call was this check's
kit_make -j2 up
check_eq "exits 0" 0 "$MAKE_STATUS"
[ "$MAKE_STATUS" = 0 ] || tail -n 15 <<<"$MAKE_OUT" | sed 's/^/#   /'
check_eq "no pkg-config ran before deps.sh installed it" "" \
	"$(cat "$TEST_DIR/pkg-config-before-deps" 2>/dev/null)"
check_eq "apt-get was asked for the build set, and nothing else" "$(asked_for build)" "$APT_ASKED"
check_true "build/bin/monolith is built" test -x "$KIT/build/bin/monolith"
check_eq "and nothing Phase 1 does not run" "monolith" "$(cd "$KIT/build/bin" 2>/dev/null && echo *)"
check_match "it says Phase 1 is up" "Phase 1 is up: the monolith on http://127.0.0.1:$PORT" "$MAKE_OUT"
http GET "http://127.0.0.1:$PORT/health"
expect_status 200
MONOLITH_PID=$(sed -n 1p "$KIT_RUN_DIR/monolith.pid" 2>/dev/null)

step "make down"
kit_make down
check_eq "exits 0" 0 "$MAKE_STATUS"
if [[ $MONOLITH_PID =~ ^[0-9]+$ ]] && ! pid_alive "$MONOLITH_PID"; then
	pass "the monolith (pid $MONOLITH_PID) is gone"
else
	fail "the monolith is gone" "pid '$MONOLITH_PID'"
fi
check_true "port $PORT is free" bash -c "[ -z \"\$(ss -Hltn 'sport = :$PORT')\" ]"

# ---------------------------------------------------------------------------
section "each target asks for its own sets, and stops when apt-get fails"
# ---------------------------------------------------------------------------
# The marker goes: the machine is bare again. apt-get fails, so nothing is
# built after deps.
rm -f "$MARKER"
export FAKE_APT_FAIL=1
rm -rf "$KIT/build"
for case in "up PHASE=2:build phase2" "up PHASE=3:build phase3" "test:build phase3 test" \
	"bench:build bench" "deps:build phase1" "deps SETS=test:test"; do
	target=${case%%:*}
	read -r -a sets <<<"${case#*:}"
	step "make $target"
	read -r -a args <<<"$target"
	kit_make "${args[@]}"
	check_true "fails, as apt-get did" test "$MAKE_STATUS" -ne 0
	check_eq "asked for ${sets[*]}" "$(asked_for "${sets[@]}")" "$APT_ASKED"
	check_true "built nothing" test ! -e "$KIT/build"
done
unset FAKE_APT_FAIL

step "make (build only), deps never ran"
kit_make
check_true "fails" test "$MAKE_STATUS" -ne 0
check_match "and says why, and what to do" "pkg-config cannot find .*: run \`make deps\`" "$MAKE_OUT"
check_true "built nothing" test ! -e "$KIT/build/bin"
step "the sets"
check_true "make test asks for clang (the fuzz targets)" grep -qx clang <<<"$(set_of build phase3 test)"
check_true "make up asks for no test tool" bash -c "! grep -qxE 'prometheus|wrk|docker-compose|libcmocka-dev' <<<'$(set_of build phase1)'"

finish
