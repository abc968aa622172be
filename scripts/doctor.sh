#!/usr/bin/env bash
# scripts/doctor.sh [PHASE] - is this machine ready for `make up PHASE=n`?
# `make doctor [PHASE=n]` runs it. One screen, four things:
#
#   ports      every port the phase listens on: free, or who holds it (a
#              process of a running `make up`, named by its pid file in
#              .run/, or any other program, as `ss -ltnp` shows it)
#   packages   each package set of scripts/deps.sh: present, or what is
#              missing (the phase's own sets are needed; test and bench
#              only for `make test` and `make bench`)
#   Docker     an engine, only a client, or neither (the native `make up`
#              needs none; the compose profiles need an engine)
#   .run/      the run directory can be written
#
# Each problem comes with what to do ("->"). It changes nothing: it only
# looks. The ports, KIT_RUN_DIR and the phase are read as up.sh reads them,
# from the environment: `PORT=9090 make doctor` checks port 9090. It runs on
# a bare machine too (before scripts/deps.sh has installed anything).
# Exit status: 0 when the phase can start, 1 when something is in the way.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=scripts/lib/processes.sh
source scripts/lib/processes.sh

PHASE=${1:-1}
require_phase doctor.sh "$PHASE"
kit_settings || exit 2
PROBLEMS=0

# ok|note|problem WHAT [FIX]: one line of the report; a problem is counted
# and its FIX printed under it.
ok() { printf '  ok       %s\n' "$1"; }
note() { printf '  note     %s\n' "$1"; }
problem() {
	PROBLEMS=$((PROBLEMS + 1))
	printf '  PROBLEM  %s\n' "$1"
	[ -z "${2:-}" ] || printf '           -> %s\n' "$2"
}

echo "make doctor: is this machine ready for Phase $PHASE? (run directory $RUN_SHOWN/)"

# --- ports ------------------------------------------------------------------
echo
echo "Ports on 127.0.0.1"
command -v ss >/dev/null ||
	note "ss (iproute2) is missing: a taken TCP port is found, not who holds it; UDP not at all"
for name in $(phase_processes "$PHASE"); do
	while read -r proto port; do
		if ! "${proto}_in_use" "$port"; then
			ok "$port/$proto $name"
			continue
		fi
		# The sink's agent port taken is fine: the spans go to that agent.
		if [ "$name" = jaeger-sink ] && [ "$port" = "$JAEGER_AGENT_PORT" ]; then
			note "$port/$proto $name: something listens there (a Jaeger agent?): no sink, spans go to it"
			continue
		fi
		read -r pid program < <(port_holder "$proto" "$port")
		if [ -z "${pid:-}" ] || [ "$pid" = "?" ]; then
			problem "$port/$proto $name: in use, by a process ss does not show (another user's?)" \
				"as root: ss -ltnup 'sport = :$port'; or another port: $(process_port_var "$name")=... make up PHASE=$PHASE"
		elif owner=$(kit_name_of_pid "$pid"); then
			problem "$port/$proto $name: held by the kit's $owner (pid $pid, $RUN_SHOWN/$owner.pid): make up is running" \
				"make down (or scripts/service.sh stop $owner)"
		elif [[ $(ps -o args= -p "$pid" 2>/dev/null) == *build/*bin/* ]]; then
			problem "$port/$proto $name: held by pid $pid ($(ps -o args= -p "$pid" | cut -c1-60)), a kit program with no pid file (started by hand?)" \
				"kill $pid; next time start it with scripts/service.sh start $name"
		else
			problem "$port/$proto $name: held by pid $pid ($program), not the kit's" \
				"stop it (kill $pid), or give the kit another port: $(process_port_var "$name")=... make up PHASE=$PHASE"
		fi
	done < <(process_ports "$name")
done

# --- packages ---------------------------------------------------------------
echo
echo "Packages (scripts/deps.sh; docs/setup.md)"
for set in build phase1 phase2 phase3 test bench; do
	needed=0
	case $set in
	build | "phase$PHASE") needed=1 ;;
	esac
	# deps.sh --check says "deps: SET: all N packages are installed" or
	# "deps: SET: missing PACKAGE...".
	if output=$(bash scripts/deps.sh --check "$set"); then
		count=$(sed -n 's/.*: all \([0-9]*\) packages.*/\1/p' <<<"$output")
		if [ "$count" = 0 ]; then
			[ "$needed" = 0 ] || ok "$set: needs nothing more than build"
		else
			ok "$set: all $count present"
		fi
		continue
	fi
	missing=${output#*missing }
	case $set in
	build) user="make up" ;;
	phase*) user="make up PHASE=${set#phase}" ;;
	test | bench) user="make $set" ;;
	esac
	if [ "$needed" = 1 ]; then
		problem "$set: missing $missing" \
			"make up PHASE=$PHASE installs them (as root), or: scripts/deps.sh $set"
	else
		note "$set: missing $missing ($user installs them)"
	fi
done

# --- Docker -----------------------------------------------------------------
echo
echo "Docker (not needed by make up; the compose profiles need an engine)"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
	ok "an engine answers: docker compose --profile phase$PHASE up --build works here"
elif command -v docker >/dev/null; then
	note "the docker client is here, but no engine answers (docker info fails)"
elif command -v docker-compose >/dev/null; then
	note "only the client: $(docker-compose version --short 2>/dev/null || echo docker-compose), no engine (tests/compose.sh checks the files with it)"
else
	note "neither an engine nor a client: use make up, or install Docker for the compose profiles"
fi

# --- the run directory ------------------------------------------------------
echo
echo "Run directory"
# Tried for real (root writes past permission bits, but not into a file
# or a read-only file system); a directory made for the try is removed.
probe="$RUN_DIR/.doctor.$$"
made=
[ -d "$RUN_DIR" ] || made=$RUN_DIR
if mkdir -p "$RUN_DIR" 2>/dev/null && : >"$probe" 2>/dev/null; then
	rm -f "$probe"
	[ -z "$made" ] || rmdir "$made"
	ok "$RUN_SHOWN/ is writable"
else
	problem "$RUN_SHOWN/ cannot be written (up.sh keeps pid files, logs and Redis's data there)" \
		"give it to this user (chown -R $(id -un) $RUN_SHOWN), or use another: KIT_RUN_DIR=/some/dir make up"
fi

echo
if [ "$PROBLEMS" -eq 0 ]; then
	echo "All is well for Phase $PHASE: make up PHASE=$PHASE"
	exit 0
fi
echo "$PROBLEMS problem(s) for Phase $PHASE: see the -> under each."
exit 1
