#!/usr/bin/env bash
# scripts/down.sh - stop everything scripts/up.sh started (`make down`).
#
# Reads the pid files in .run/, stops the servers first and Redis last (so
# nothing loses its store while still serving), each by pid: SIGTERM, poll
# until it is gone, SIGKILL when it takes longer than 10 s. Removes each pid
# file once its process is gone. A pid file whose process is already gone,
# or whose pid now belongs to another program, is just removed.
set -euo pipefail

cd "$(dirname "$0")/.."
RUN_DIR="$PWD/.run"
POLL_TRIES=200      # x POLL_INTERVAL = 10 s before SIGKILL
POLL_INTERVAL=0.05

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$state" != "Z" ]
}

# stop_by_pid_file FILE: stops the process FILE names, if it is still the
# program the file is named after (.run/monolith.pid -> monolith,
# .run/redis.pid -> redis-server), and removes FILE.
stop_by_pid_file() {
	local pid_file=$1 name pid program
	name=$(basename "$pid_file" .pid)
	pid=$(cat "$pid_file" 2>/dev/null || true)
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! pid_alive "$pid"; then
		echo "down: $name was not running"
		rm -f "$pid_file"
		return 0
	fi
	# A pid can be reused after a reboot: check it is still our program.
	program=$(ps -o comm= -p "$pid" 2>/dev/null || true)
	case $program in
	"$name"*) ;;
	*)
		echo "down: pid $pid is now '$program', not $name: left alone"
		rm -f "$pid_file"
		return 0
		;;
	esac
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 "$POLL_TRIES"); do
		pid_alive "$pid" || break
		sleep "$POLL_INTERVAL"
	done
	if pid_alive "$pid"; then
		echo "down: $name (pid $pid) ignored SIGTERM; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for _ in $(seq 1 "$POLL_TRIES"); do
			pid_alive "$pid" || break
			sleep "$POLL_INTERVAL"
		done
	fi
	if pid_alive "$pid"; then
		echo "down: $name (pid $pid) is still there" >&2
		return 1
	fi
	echo "down: stopped $name (pid $pid)"
	rm -f "$pid_file"
}

shopt -s nullglob
pid_files=("$RUN_DIR"/*.pid)
if [ ${#pid_files[@]} -eq 0 ]; then
	echo "down: nothing is running"
	exit 0
fi

status=0
# Servers first, Redis last.
for pid_file in "${pid_files[@]}"; do
	[ "$(basename "$pid_file")" = "redis.pid" ] && continue
	stop_by_pid_file "$pid_file" || status=1
done
if [ -e "$RUN_DIR/redis.pid" ]; then
	stop_by_pid_file "$RUN_DIR/redis.pid" || status=1
fi
exit $status
