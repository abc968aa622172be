#!/usr/bin/env bash
# scripts/down.sh - stop everything scripts/up.sh started (`make down`),
# whichever phase that was.
#
# Reads the pid files in .run/ and stops the servers first and Redis last
# (so nothing loses its store while still serving), each by pid: SIGTERM,
# poll until it is gone, SIGKILL when it takes longer than 10 s. The
# servers (the monolith, or the gateway and the services) are stopped
# together: civetweb can take up to 2 s to stop, so one after the other
# would cost 2 s each. Removes each pid file once its process is gone. A
# pid file whose process is already gone, or whose pid now belongs to
# another program, is just removed.
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

# signal_by_pid_file FILE: sends SIGTERM to the process FILE names, if it
# is still the program the file is named after (.run/gateway.pid ->
# gateway, .run/redis.pid -> redis-server), and prints its pid; otherwise
# removes FILE and prints nothing.
signal_by_pid_file() {
	local pid_file=$1 name pid program
	name=$(basename "$pid_file" .pid)
	pid=$(cat "$pid_file" 2>/dev/null || true)
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! pid_alive "$pid"; then
		echo "down: $name was not running" >&2
		rm -f "$pid_file"
		return 0
	fi
	# A pid can be reused after a reboot: check it is still our program.
	program=$(ps -o comm= -p "$pid" 2>/dev/null || true)
	case $program in
	"$name"*) ;;
	*)
		echo "down: pid $pid is now '$program', not $name: left alone" >&2
		rm -f "$pid_file"
		return 0
		;;
	esac
	kill -TERM "$pid" 2>/dev/null || true
	echo "$pid"
}

# stop_pid_files FILE...: stops the processes those files name, together,
# and removes the files. Returns 1 when one is still there after SIGKILL.
stop_pid_files() {
	local pid_file pid any status=0
	declare -A pids=()
	for pid_file in "$@"; do
		pid=$(signal_by_pid_file "$pid_file")
		[ -n "$pid" ] && pids[$pid_file]=$pid
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	for _ in $(seq 1 "$POLL_TRIES"); do
		any=0
		for pid in "${pids[@]}"; do
			pid_alive "$pid" && any=1
		done
		[ "$any" = 0 ] && break
		sleep "$POLL_INTERVAL"
	done
	for pid_file in "${!pids[@]}"; do
		pid=${pids[$pid_file]}
		if pid_alive "$pid"; then
			echo "down: $(basename "$pid_file" .pid) (pid $pid) ignored SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for _ in $(seq 1 "$POLL_TRIES"); do
				pid_alive "$pid" || break
				sleep "$POLL_INTERVAL"
			done
		fi
		if pid_alive "$pid"; then
			echo "down: $(basename "$pid_file" .pid) (pid $pid) is still there" >&2
			status=1
			continue
		fi
		echo "down: stopped $(basename "$pid_file" .pid) (pid $pid)"
		rm -f "$pid_file"
	done
	return $status
}

shopt -s nullglob
pid_files=("$RUN_DIR"/*.pid)
if [ ${#pid_files[@]} -eq 0 ]; then
	echo "down: nothing is running"
	exit 0
fi

status=0
# Servers first, all together; Redis last.
servers=()
for pid_file in "${pid_files[@]}"; do
	[ "$(basename "$pid_file")" = "redis.pid" ] || servers+=("$pid_file")
done
if [ ${#servers[@]} -gt 0 ]; then
	stop_pid_files "${servers[@]}" || status=1
fi
if [ -e "$RUN_DIR/redis.pid" ]; then
	stop_pid_files "$RUN_DIR/redis.pid" || status=1
fi
exit $status
