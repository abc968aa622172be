#!/usr/bin/env bash
# scripts/up.sh PHASE - start a phase of the kit natively on loopback, no
# Docker: `make up` runs `scripts/up.sh 1` after building.
#
# Phase 1 is a redis-server and the monolith:
#   redis-server  127.0.0.1:$REDIS_PORT (6390), append-only persistence,
#                 data in .run/redis/, log .run/redis.log
#   monolith      127.0.0.1:$PORT (8080), log .run/monolith.log (stdout, the
#                 access log, and stderr together)
# Their pids go to .run/*.pid; `make down` (scripts/down.sh) stops them.
#
# The JWT secret is made once (openssl rand -hex 32) and kept in
# .run/jwt_secret, so tokens stay valid across restarts. Any other setting
# of docs/configuration.md can be given in the environment:
#   RATE_LIMIT_FREE=5 make up
# Readiness is polled (redis-cli ping, then GET /health), never guessed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RUN_DIR="$ROOT/.run"
PHASE=${1:-1}
REDIS_PORT=${REDIS_PORT:-6390}
PORT=${PORT:-8080}
MONOLITH=${MONOLITH:-$ROOT/build/bin/monolith} # override to run another build
POLL_TRIES=200      # x POLL_INTERVAL = 10 s at most per wait
POLL_INTERVAL=0.05

case $PHASE in
1) ;;
2 | 3)
	echo "up: Phase $PHASE does not exist yet (coming): only PHASE=1 runs today." >&2
	exit 1
	;;
*)
	echo "usage: scripts/up.sh 1" >&2
	exit 2
	;;
esac

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$state" != "Z" ]
}

# 1. Refuse to start twice. A pid file whose process is gone is stale: drop it.
mkdir -p "$RUN_DIR/redis"
for pid_file in "$RUN_DIR"/*.pid; do
	[ -e "$pid_file" ] || continue
	pid=$(cat "$pid_file")
	if pid_alive "$pid"; then
		echo "up: already running: $(basename "$pid_file" .pid) (pid $pid)." >&2
		echo "up: stop it first with: make down" >&2
		exit 1
	fi
	rm -f "$pid_file"
done

for port in "$REDIS_PORT" "$PORT"; do
	if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
		echo "up: port $port is already in use (set REDIS_PORT / PORT to use others)." >&2
		exit 1
	fi
done

if [ ! -x "$MONOLITH" ]; then
	echo "up: $MONOLITH is missing: run make first." >&2
	exit 1
fi

# If a later step fails, stop what this run already started: every process
# gets its pid file as soon as it starts, and down.sh stops them all.
give_up() {
	echo "up: $1" >&2
	bash "$ROOT/scripts/down.sh" >&2
	exit 1
}

# 2. Redis, with append-only persistence in .run/redis/.
nohup redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
	--appendonly yes --appendfsync everysec \
	--dir "$RUN_DIR/redis" --daemonize no \
	>>"$RUN_DIR/redis.log" 2>&1 </dev/null &
redis_pid=$!
echo "$redis_pid" >"$RUN_DIR/redis.pid"

ready=0
for _ in $(seq 1 "$POLL_TRIES"); do
	pid_alive "$redis_pid" || give_up "redis-server exited; see .run/redis.log"
	if [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; then
		ready=1
		break
	fi
	sleep "$POLL_INTERVAL"
done
[ "$ready" = 1 ] || give_up "redis-server did not answer PING; see .run/redis.log"

# 3. The JWT secret: made once, readable by this user only.
if [ ! -s "$RUN_DIR/jwt_secret" ]; then
	(umask 077 && openssl rand -hex 32 >"$RUN_DIR/jwt_secret")
fi

# 4. The monolith. The rest of its settings come from the environment.
PORT="$PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
	JWT_SECRET="$(cat "$RUN_DIR/jwt_secret")" \
	nohup "$MONOLITH" >>"$RUN_DIR/monolith.log" 2>&1 </dev/null &
monolith_pid=$!
echo "$monolith_pid" >"$RUN_DIR/monolith.pid"

URL="http://127.0.0.1:$PORT"
ready=0
for _ in $(seq 1 "$POLL_TRIES"); do
	pid_alive "$monolith_pid" || {
		tail -n 20 "$RUN_DIR/monolith.log" >&2
		give_up "the monolith exited; see .run/monolith.log"
	}
	code=$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$URL/health" || true)
	if [ "$code" = "200" ]; then
		ready=1
		break
	fi
	sleep "$POLL_INTERVAL"
done
[ "$ready" = 1 ] || give_up "GET $URL/health did not answer 200; see .run/monolith.log"

# 5. Say where it is and what to try.
cat <<EOF

Phase 1 is up: the monolith on $URL, Redis on 127.0.0.1:$REDIS_PORT.
Logs: .run/monolith.log, .run/redis.log.   Stop with: make down

A first journey (copy and paste; needs curl and jq):

  curl -s -X POST $URL/auth/register -H 'Content-Type: application/json' \\
       -d '{"username":"alice","password":"correct horse battery"}'

  TOKEN=\$(curl -s -X POST $URL/auth/login -H 'Content-Type: application/json' \\
       -d '{"username":"alice","password":"correct horse battery"}' | jq -r .token)

  CODE=\$(curl -s -X POST $URL/shorten -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"url":"https://example.com/"}' | jq -r .code)

  curl -i $URL/r/\$CODE

  curl -s $URL/analytics/\$CODE -H "Authorization: Bearer \$TOKEN" | jq

(The register call answers 409 when alice already exists: the data persists.)
EOF
