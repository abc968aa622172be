#!/usr/bin/env bash
# scripts/down.sh - stop everything scripts/up.sh and scripts/service.sh
# started (`make down`), whichever phase that was.
#
# Reads the pid files in .run/ (KIT_RUN_DIR when set) and stops the servers
# first, and Redis and the trace sink last (so nothing loses its store while
# still serving, and the spans sent while stopping are still written), each
# by pid: SIGTERM (and SIGCONT, for a process paused with `service.sh
# pause`), poll until it is gone, SIGKILL when it takes longer than 10 s.
# The servers (the monolith; or nginx, the gateways and the services) are
# stopped together: civetweb can take up to 2 s to stop, so one after the
# other would cost 2 s each. Each pid file is removed once its process is
# gone; one whose process is already gone, or whose pid now belongs to
# another program, is just removed (scripts/lib/processes.sh says how a pid
# file names its program). When nothing is left, .run/up.env (what the run
# was started with) goes too: service.sh then needs a new `make up`.
#
# A process started by hand (`build/bin/url-shortener &`) has no pid file:
# down.sh cannot know it. scripts/service.sh start is the way to start one
# again; `make doctor` names whoever holds a kit port.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/processes.sh
source scripts/lib/processes.sh
kit_settings

shopt -s nullglob
pid_files=("$RUN_DIR"/*.pid)
if [ ${#pid_files[@]} -eq 0 ]; then
	echo "down: nothing is running"
	rm -f "$RUN_DIR/up.env"
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
	stop_pid_files "${servers[@]}" | sed 's/^/down: /' || status=1
fi
if [ ${#last[@]} -gt 0 ]; then
	stop_pid_files "${last[@]}" | sed 's/^/down: /' || status=1
fi
[ "$status" != 0 ] || rm -f "$RUN_DIR/up.env"
exit $status
