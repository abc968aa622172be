#!/usr/bin/env bash
# tests/doctor.sh - `make doctor` (scripts/doctor.sh), black box: it must
# say all is well when it is, and otherwise name each problem, who causes
# it and what to do.
#
# Usage: tests/doctor.sh [bin-dir]      (default build/bin)
#
# Every case points doctor, through the environment, at ports the kernel
# says are free and at a run directory under the scratch directory, then
# puts one thing in the way:
#   - a port taken by a program that is not the kit's (a python3 listener)
#   - a port taken by a running `make up` (scripts/up.sh 1, stopped after)
#   - a port taken by a kit server started by hand, with no pid file
#   - a package missing (a dpkg-query on PATH that says so), of the phase's
#     own set (a problem) and of the test set only (a note)
#   - a run directory that cannot be made
#   - the trace sink's UDP port taken (a Jaeger agent: a note, no problem)
# The last line is "N passed, N failed"; the exit code is 1 when a check
# failed. Traffic goes to 127.0.0.1 only; everything started is stopped.
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN=${1:-build/bin}
case $BIN in /*) ;; *) BIN="$PWD/$BIN" ;; esac
require_binaries "the monolith is built" "$BIN/monolith"

echo "# make doctor (scripts/doctor.sh), black box"
echo "# scratch directory: $TEST_DIR"

# Doctor's view of the machine: a run directory and ports of this test's
# (if a check fails while the up.sh case runs, the exit trap stops it).
use_own_run scripts/down.sh
export BIN_DIR="$BIN"
unset JWT_SECRET

# doctor ARGS...: runs scripts/doctor.sh; DOCTOR_OUT, DOCTOR_STATUS.
doctor() {
	DOCTOR_STATUS=0
	DOCTOR_OUT=$(bash scripts/doctor.sh "$@" 2>&1) || DOCTOR_STATUS=$?
	printf '$ doctor.sh %s\n%s\n' "$*" "$DOCTOR_OUT" >>"$TEST_DIR/doctor.log"
}

# start_listener PROTO PORT: a python3 program holding 127.0.0.1:PORT (tcp
# or udp) until stopped; sets LISTENER_PID once it is bound.
start_listener() {
	local log="$TEST_DIR/listener-$2"
	start_program "listener:$2" "$log" python3 -c '
import socket, sys, time
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
# A connection of an earlier run may still be in TIME_WAIT on the port
# (free means "nobody listens"); every server the kit starts binds past it.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2])))
if kind == socket.SOCK_STREAM:
    s.listen()
print("ready", flush=True)
time.sleep(600)' "$1" "$2"
	LISTENER_PID=$SERVER_PID
	poll_until 10 grep -qx ready "$log.out"
}

# ---------------------------------------------------------------------------
section "a clean machine"
# ---------------------------------------------------------------------------
for phase in 1 3; do
	step "doctor $phase, nothing in the way"
	doctor "$phase"
	check_eq "exits 0" 0 "$DOCTOR_STATUS"
	check_match "says all is well" "All is well for Phase $phase" "$DOCTOR_OUT"
	check_match "checks the monolith's or nginx's port" \
		"ok +($PORT/tcp monolith|$NGINX_PORT/tcp nginx)" "$DOCTOR_OUT"
	check_match "checks the package sets" "ok +build: all [0-9]+ present" "$DOCTOR_OUT"
	check_match "says what Docker there is" "Docker" "$DOCTOR_OUT"
	check_match "checks the run directory" "ok +$KIT_RUN_DIR/ is writable" "$DOCTOR_OUT"
done
check_true "doctor made no run directory" test ! -e "$KIT_RUN_DIR"
doctor 4
check_eq "doctor 4: exits 2 (no such phase)" 2 "$DOCTOR_STATUS"

# ---------------------------------------------------------------------------
section "a port taken by another program"
# ---------------------------------------------------------------------------
step "a python3 listener on the monolith's port"
must_start "the listener is bound" start_listener tcp "$PORT"
doctor 1
check_eq "exits 1" 1 "$DOCTOR_STATUS"
check_match "names the port, the holder's pid and program" \
	"PROBLEM +$PORT/tcp monolith: held by pid $LISTENER_PID \\(python3?[^)]*\\), not the kit's" "$DOCTOR_OUT"
check_match "says what to do" "-> stop it \\(kill $LISTENER_PID\\), or give the kit another port: PORT=" "$DOCTOR_OUT"
check_match "counts one problem" "1 problem\\(s\\) for Phase 1" "$DOCTOR_OUT"
stop_pid "$LISTENER_PID"

# ---------------------------------------------------------------------------
section "a port taken by a running make up"
# ---------------------------------------------------------------------------
step "up.sh 1 is running"
UP_OUT=$(bash scripts/up.sh 1 2>&1)
check_eq "up.sh 1 exits 0" 0 "$?"
KIT_PID=$(sed -n 1p "$KIT_RUN_DIR/monolith.pid" 2>/dev/null)
doctor 1
check_eq "exits 1" 1 "$DOCTOR_STATUS"
check_match "names the kit's monolith and its pid file" \
	"PROBLEM +$PORT/tcp monolith: held by the kit's monolith \\(pid $KIT_PID, $KIT_RUN_DIR/monolith.pid\\)" "$DOCTOR_OUT"
check_match "and Redis" "PROBLEM +$REDIS_PORT/tcp redis: held by the kit's redis" "$DOCTOR_OUT"
check_match "says: make down" "-> make down" "$DOCTOR_OUT"
DOWN_OUT=$(bash scripts/down.sh 2>&1)
check_eq "down.sh exits 0" 0 "$?" || echo "$UP_OUT$DOWN_OUT" | sed 's/^/# /'

# ---------------------------------------------------------------------------
section "a port taken by a kit server started by hand (no pid file)"
# ---------------------------------------------------------------------------
step "build/bin/monolith started by hand"
must_start "the monolith answers" start_monolith "$BIN/monolith" "$TEST_DIR/by-hand" "$PORT" \
	STORE=memory JWT_SECRET=doctor-test-secret-0123456789abcdef-0123
doctor 1
check_eq "exits 1" 1 "$DOCTOR_STATUS"
check_match "says it is the kit's, with no pid file" \
	"PROBLEM +$PORT/tcp monolith: held by pid $MONOLITH_PID \\(.*monolith.*\\), a kit program with no pid file" "$DOCTOR_OUT"
check_match "says to kill it, and to use service.sh next time" \
	"-> kill $MONOLITH_PID; next time start it with scripts/service.sh start monolith" "$DOCTOR_OUT"
stop_pid "$MONOLITH_PID"

# ---------------------------------------------------------------------------
section "a package missing"
# ---------------------------------------------------------------------------
# A dpkg-query first on PATH that says one package is not installed: the
# real one's answer, less the line of $FAKE_MISSING (scripts/deps.sh asks
# for "${Status} ${Package}" of every package at once).
mkdir -p "$TEST_DIR/fakebin"
cat >"$TEST_DIR/fakebin/dpkg-query" <<'EOF'
#!/bin/sh
/usr/bin/dpkg-query "$@" | grep -v " $FAKE_MISSING\$"
exit 0
EOF
chmod +x "$TEST_DIR/fakebin/dpkg-query"

step "libhiredis-dev (build set) missing"
PATH="$TEST_DIR/fakebin:$PATH" FAKE_MISSING=libhiredis-dev doctor 1
check_eq "exits 1" 1 "$DOCTOR_STATUS"
check_match "names the set and the package" "PROBLEM +build: missing libhiredis-dev" "$DOCTOR_OUT"
check_match "says what installs it" "-> make up PHASE=1 installs them \\(as root\\), or: scripts/deps.sh build" "$DOCTOR_OUT"

step "wrk (test and bench sets) missing"
PATH="$TEST_DIR/fakebin:$PATH" FAKE_MISSING=wrk doctor 1
check_eq "exits 0: Phase 1 does not need it" 0 "$DOCTOR_STATUS"
check_match "a note for the test set" "note +test: missing wrk \\(make test installs them\\)" "$DOCTOR_OUT"
check_match "and for the bench set" "note +bench: missing wrk \\(make bench installs them\\)" "$DOCTOR_OUT"

# ---------------------------------------------------------------------------
section "a run directory that cannot be made"
# ---------------------------------------------------------------------------
step "KIT_RUN_DIR under a file"
: >"$TEST_DIR/a-file"
KIT_RUN_DIR="$TEST_DIR/a-file/run" doctor 1
check_eq "exits 1" 1 "$DOCTOR_STATUS"
check_match "names it" "PROBLEM +$TEST_DIR/a-file/run/ cannot be written" "$DOCTOR_OUT"
check_match "says what to do" "-> .*KIT_RUN_DIR=" "$DOCTOR_OUT"

# ---------------------------------------------------------------------------
section "the trace sink's UDP port taken: a Jaeger agent"
# ---------------------------------------------------------------------------
step "a UDP listener on JAEGER_AGENT_PORT"
must_start "the listener is bound" start_listener udp "$JAEGER_AGENT_PORT"
doctor 3
check_eq "exits 0: the spans go to the agent" 0 "$DOCTOR_STATUS"
check_match "a note, not a problem" "note +$JAEGER_AGENT_PORT/udp jaeger-sink: something listens there" "$DOCTOR_OUT"
stop_pid "$LISTENER_PID"

finish
