#!/usr/bin/env bash
# scripts/down.sh - stop everything scripts/up.sh started (`make down`),
# whichever phase that was.
#
# Reads the pid files in .run/ and stops the servers first, and Redis and
# the trace sink last (so nothing loses its store while still serving, and
# the spans sent while stopping are still written), each by pid: SIGTERM,
# poll until it is gone, SIGKILL when it takes longer than 10 s. The
# servers (the monolith; or nginx, the gateways and the services) are
# stopped together: civetweb can take up to 2 s to stop, so one after the
# other would cost 2 s each. Removes each pid file once its process is
# gone. A pid file whose process is already gone, or whose pid now belongs
# to another program, is just removed.
#
# A pid file is the pid on its first line and, optionally, on the second
# the program (as its command line shows it) that pid must be running:
# .run/api-gateway-1.pid holds "4242" and ".../build/bin/gateway-advanced".
# Without a second line the file's name must start the program's name
# (.run/redis.pid -> redis-server).
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
# is still the program the file says (see above), and prints its pid;
# otherwise removes FILE and prints nothing.
signal_by_pid_file() {
	local pid_file=$1 name pid expected program
	name=$(basename "$pid_file" .pid)
	pid=$(sed -n 1p "$pid_file" 2>/dev/null || true)
	expected=$(sed -n 2p "$pid_file" 2>/dev/null || true)
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! pid_alive "$pid"; then
		echo "down: $name was not running" >&2
		rm -f "$pid_file"
		return 0
	fi
	# A pid can be reused after a reboot: check it is still our program.
	if [ -n "$expected" ]; then
		program=$(ps -o args= -p "$pid" 2>/dev/null || true)
		[[ $program == *"$expected"* ]] || program="!$program"
	else
		program=$(ps -o comm= -p "$pid" 2>/dev/null || true)
		[[ $program == "$name"* ]] || program="!$program"
		expected=$name
	fi
	if [[ $program == "!"* ]]; then
		echo "down: pid $pid is now '${program#!}', not $expected: left alone" >&2
		rm -f "$pid_file"
		return 0
	fi
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
# Servers first, all together; then Redis and the trace sink.
servers=()
last=()
for pid_file in "${pid_files[@]}"; do
	case $(basename "$pid_file") in
	redis.pid | jaeger-sink.pid) last+=("$pid_file") ;;
	*) servers+=("$pid_file") ;;
	esac
done
if [ ${#servers[@]} -gt 0 ]; then
	stop_pid_files "${servers[@]}" || status=1
fi
if [ ${#last[@]} -gt 0 ]; then
	stop_pid_files "${last[@]}" || status=1
fi
exit $status
