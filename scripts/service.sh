#!/usr/bin/env bash
# scripts/service.sh - stop, start or restart one process of a running
# `make up`, the way up.sh runs it, so that `make down` still stops it.
#
#   scripts/service.sh stop NAME      SIGTERM, then SIGKILL after 10 s
#   scripts/service.sh start NAME     start it again; polls until it answers
#   scripts/service.sh restart NAME   stop, then start
#   scripts/service.sh pause NAME     SIGSTOP: it hangs, as a frozen process does
#   scripts/service.sh resume NAME    SIGCONT
#   scripts/service.sh status [NAME]  running (pid, port), paused or stopped
#
# NAME is a process of the phase `make up` started: redis, monolith (Phase
# 1); users, analytics, url-shortener, notifications, gateway (Phase 2);
# url-shortener-b, url-shortener-v2, url-shortener-v2-canary,
# api-gateway-1..3, nginx, jaeger-sink (Phase 3).
#
# Why not `build/bin/url-shortener &` by hand? A process started that way
# has no pid file: `make down` cannot see it, it keeps its port, and the
# next `make up` stops at "port 8081 is already in use". service.sh keeps
# the pid file and the log in .run/ exactly as up.sh does; the start code
# is the same (scripts/lib/processes.sh).
#
# A process is started with what `make up` was started with (.run/up.env:
# the phase, the ports, the settings that were in its environment), unless
# the environment says otherwise: settings given here win, for this
# process:  SERVER_CORE=threads scripts/service.sh restart gateway
# The JWT secret is the run's: .run/jwt_secret, or, when `make up` was given
# JWT_SECRET, that same JWT_SECRET given again here.
#
# KIT_RUN_DIR names another run directory, as for up.sh and down.sh. Exit
# status: 0 done, 1 failed (with the reason), 2 bad arguments.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/processes.sh
source scripts/lib/processes.sh

usage() {
	sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

COMMAND=${1:-}
NAME=${2:-}
case $COMMAND in
start | stop | restart | pause | resume) [ -n "$NAME" ] || usage ;;
status) ;;
*) usage ;;
esac

kit_run_dir
if ! load_run_settings; then
	echo "service: nothing was started with make up (no $RUN_SHOWN/up.env): run make up first." >&2
	exit 1
fi
kit_settings
PROCESSES=$(phase_processes "$KIT_PHASE")
if [ -n "$NAME" ] && [[ " $PROCESSES " != *" $NAME "* ]]; then
	echo "service: Phase $KIT_PHASE has no process '$NAME'; it has: ${PROCESSES// /, }" >&2
	exit 2
fi

# needs_jwt_secret NAME: NAME verifies or issues tokens.
needs_jwt_secret() {
	case $1 in
	monolith | users | gateway | api-gateway-*) return 0 ;;
	*) return 1 ;;
	esac
}

# ports_free NAME: every port NAME listens on is free; otherwise says who
# holds it and returns 1. For the trace sink, a Jaeger agent on its UDP
# port is no problem (the spans go there).
ports_free() {
	local proto port pid program owner
	while read -r proto port; do
		if [ "$1" = jaeger-sink ] && [ "$port" = "$JAEGER_AGENT_PORT" ]; then
			continue
		fi
		"${proto}_in_use" "$port" || continue
		read -r pid program < <(port_holder "$proto" "$port")
		if owner=$(kit_name_of_pid "$pid"); then
			echo "service: $proto port $port is held by $owner (pid $pid): scripts/service.sh stop $owner" >&2
		else
			echo "service: $proto port $port is held by pid $pid ($program), which has no pid file in" >&2
			echo "service: $RUN_SHOWN/ (started by hand?): stop it (kill $pid), then start $1 again" >&2
		fi
		return 1
	done < <(process_ports "$1")
}

do_start() {
	local name=$1 pid status=0
	if pid=$(running_pid "$name"); then
		echo "service: $name is already running (pid $pid)"
		return 0
	fi
	rm -f "$RUN_DIR/$name.pid"
	ports_free "$name" || return 1
	start_process "$name" || return 1
	wait_ready "$name" || status=$?
	case $status in
	0)
		if pid=$(running_pid "$name"); then
			echo "service: started $name (pid $pid), log $RUN_SHOWN/$name.log"
		else
			echo "service: $name not started: a Jaeger agent listens on UDP $JAEGER_AGENT_PORT, the spans go there"
		fi
		;;
	2)
		echo "service: the trace sink cannot run here; $RUN_SHOWN/jaeger-sink.log says why" >&2
		return 1
		;;
	*)
		# It may still be there, not answering: stop it, leave nothing behind.
		stop_pid_files "$RUN_DIR/$name.pid" | sed 's/^/service: /'
		echo "service: $name did not start (see above)" >&2
		return 1
		;;
	esac
}

do_stop() {
	local name=$1
	if [ ! -f "$RUN_DIR/$name.pid" ]; then
		echo "service: $name is not running"
		return 0
	fi
	stop_pid_files "$RUN_DIR/$name.pid" | sed 's/^/service: /'
}

# do_signal NAME SIGNAL WORD: sends SIGNAL to NAME's process.
do_signal() {
	local pid
	if ! pid=$(running_pid "$1"); then
		echo "service: $1 is not running" >&2
		return 1
	fi
	kill "-$2" "$pid"
	echo "service: $3 $1 (pid $pid)"
}

# status_line NAME: one line: NAME, its state, pid and ports.
status_line() {
	local name=$1 pid state ports
	ports=$(process_ports "$name" | awk '{ printf "%s%s/%s", sep, $2, $1; sep = " " }')
	if pid=$(running_pid "$name"); then
		state=running
		[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = T ] && state=paused
		printf '%-24s %-8s pid %-7s %s\n' "$name" "$state" "$pid" "$ports"
	else
		printf '%-24s %-8s %-11s %s\n' "$name" stopped "" "$ports"
	fi
}

# The JWT secret first: a restart that could not start again must not stop.
if [[ $COMMAND == @(start|restart) ]] && needs_jwt_secret "$NAME"; then
	use_jwt_secret service || exit 1
fi

case $COMMAND in
start) do_start "$NAME" ;;
stop) do_stop "$NAME" ;;
restart) do_stop "$NAME" && do_start "$NAME" ;;
pause) do_signal "$NAME" STOP paused ;;
resume) do_signal "$NAME" CONT resumed ;;
status)
	echo "Phase $KIT_PHASE, run directory $RUN_SHOWN/"
	for name in ${NAME:-$PROCESSES}; do
		status_line "$name"
	done
	;;
esac
