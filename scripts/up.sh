#!/usr/bin/env bash
# scripts/up.sh PHASE - start a phase of the kit natively on loopback, no
# Docker: `make up` runs `scripts/up.sh 1` after building, `make up
# PHASE=2` runs `scripts/up.sh 2`.
#
# Phase 1 is a redis-server and the monolith:
#   redis-server  127.0.0.1:$REDIS_PORT (6390), append-only persistence,
#                 data in .run/redis/, log .run/redis.log
#   monolith      127.0.0.1:$PORT (8080), log .run/monolith.log
# Phase 2 is the same redis-server, three services and the gateway:
#   url-shortener 127.0.0.1:$URL_SHORTENER_PORT (8081)
#   analytics     127.0.0.1:$ANALYTICS_PORT (8082)
#   users         127.0.0.1:$USERS_PORT (8083)
#   gateway       127.0.0.1:$GATEWAY_PORT (3000), routes from
#                 phase2-gateway/gateway.json (GATEWAY_CONFIG to use another)
# Each log (stdout, the access log, and stderr together) is .run/<name>.log;
# the pids go to .run/<name>.pid, and `make down` (scripts/down.sh) stops
# whatever is running.
#
# The JWT secret is made once (openssl rand -hex 32) and kept in
# .run/jwt_secret, so tokens stay valid across restarts. Any other setting
# of docs/configuration.md can be given in the environment:
#   RATE_LIMIT_FREE=5 make up PHASE=2
# Readiness is polled (redis-cli ping, then GET /health), never guessed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RUN_DIR="$ROOT/.run"
PHASE=${1:-1}
REDIS_PORT=${REDIS_PORT:-6390}
PORT=${PORT:-8080}                         # Phase 1: the monolith
GATEWAY_PORT=${GATEWAY_PORT:-3000}         # Phase 2
URL_SHORTENER_PORT=${URL_SHORTENER_PORT:-8081}
ANALYTICS_PORT=${ANALYTICS_PORT:-8082}
USERS_PORT=${USERS_PORT:-8083}
BIN_DIR=${BIN_DIR:-$ROOT/build/bin}        # build/asan/bin for the sanitizer build
MONOLITH=${MONOLITH:-$BIN_DIR/monolith}
POLL_TRIES=200      # x POLL_INTERVAL = 10 s at most per wait
POLL_INTERVAL=0.05

case $PHASE in
1)
	PORTS=("$REDIS_PORT" "$PORT")
	BINARIES=("$MONOLITH")
	;;
2)
	PORTS=("$REDIS_PORT" "$USERS_PORT" "$URL_SHORTENER_PORT" "$ANALYTICS_PORT" "$GATEWAY_PORT")
	BINARIES=("$BIN_DIR/users" "$BIN_DIR/url-shortener" "$BIN_DIR/analytics" "$BIN_DIR/gateway")
	;;
3)
	echo "up: Phase 3 does not exist yet (coming): PHASE=1 and PHASE=2 run today." >&2
	exit 1
	;;
*)
	echo "usage: scripts/up.sh 1|2" >&2
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

for port in "${PORTS[@]}"; do
	if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
		echo "up: port $port is already in use (see the *_PORT variables at the top of scripts/up.sh)." >&2
		exit 1
	fi
done

for binary in "${BINARIES[@]}"; do
	if [ ! -x "$binary" ]; then
		echo "up: $binary is missing: run make first." >&2
		exit 1
	fi
done

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
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# 3. The JWT secret: made once, readable by this user only.
if [ ! -s "$RUN_DIR/jwt_secret" ]; then
	(umask 077 && openssl rand -hex 32 >"$RUN_DIR/jwt_secret")
fi
JWT_SECRET=$(cat "$RUN_DIR/jwt_secret")

# start NAME BINARY PORT [VAR=VALUE...]: starts BINARY in the background on
# 127.0.0.1:PORT with the caller's environment plus the given variables,
# logs to .run/NAME.log, writes .run/NAME.pid. The pid file is named after
# the program, so down.sh can check the pid still belongs to it.
start() {
	local name=$1 binary=$2 port=$3
	shift 3
	env PORT="$port" BIND_ADDRESS=127.0.0.1 "$@" \
		nohup "$binary" >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
	echo "$!" >"$RUN_DIR/$name.pid"
}

# wait_healthy NAME PORT: polls GET /health until it answers 200.
wait_healthy() {
	local name=$1 port=$2 pid code
	pid=$(cat "$RUN_DIR/$name.pid")
	for _ in $(seq 1 "$POLL_TRIES"); do
		if ! pid_alive "$pid"; then
			tail -n 20 "$RUN_DIR/$name.log" >&2
			give_up "$name exited; see .run/$name.log"
		fi
		code=$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' \
			"http://127.0.0.1:$port/health" || true)
		[ "$code" = "200" ] && return 0
		sleep "$POLL_INTERVAL"
	done
	give_up "GET http://127.0.0.1:$port/health did not answer 200; see .run/$name.log"
}

# 4. The servers. The rest of their settings come from the environment.
if [ "$PHASE" = 1 ]; then
	start monolith "$MONOLITH" "$PORT" REDIS_URL="$REDIS_URL" JWT_SECRET="$JWT_SECRET"
	wait_healthy monolith "$PORT"
	URL="http://127.0.0.1:$PORT"
	API=$URL
else
	URL="http://127.0.0.1:$GATEWAY_PORT"
	API=$URL/api/v1
	# The services listen on loopback only: they trust the X-User-* headers
	# the gateway sets, so nothing but the gateway may reach them.
	start users "$BIN_DIR/users" "$USERS_PORT" \
		REDIS_URL="$REDIS_URL" JWT_SECRET="$JWT_SECRET"
	start analytics "$BIN_DIR/analytics" "$ANALYTICS_PORT" REDIS_URL="$REDIS_URL"
	start url-shortener "$BIN_DIR/url-shortener" "$URL_SHORTENER_PORT" \
		REDIS_URL="$REDIS_URL" PUBLIC_BASE_URL="$URL" \
		ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
	wait_healthy users "$USERS_PORT"
	wait_healthy analytics "$ANALYTICS_PORT"
	wait_healthy url-shortener "$URL_SHORTENER_PORT"
	# The gateway counts rate limits in the same Redis (its keys start
	# with "rl:"); its upstream URLs follow the ports above.
	start gateway "$BIN_DIR/gateway" "$GATEWAY_PORT" \
		GATEWAY_CONFIG="${GATEWAY_CONFIG:-$ROOT/phase2-gateway/gateway.json}" \
		REDIS_URL="$REDIS_URL" JWT_SECRET="$JWT_SECRET" \
		USERS_URL="http://127.0.0.1:$USERS_PORT" \
		URL_SHORTENER_URL="http://127.0.0.1:$URL_SHORTENER_PORT" \
		ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
	wait_healthy gateway "$GATEWAY_PORT"
fi

# 5. Say where it is and what to try.
echo
if [ "$PHASE" = 1 ]; then
	echo "Phase 1 is up: the monolith on $URL, Redis on 127.0.0.1:$REDIS_PORT."
	echo "Logs: .run/monolith.log, .run/redis.log.   Stop with: make down"
else
	cat <<EOF
Phase 2 is up: the gateway on $URL in front of
  users on 127.0.0.1:$USERS_PORT, url-shortener on 127.0.0.1:$URL_SHORTENER_PORT,
  analytics on 127.0.0.1:$ANALYTICS_PORT, Redis on 127.0.0.1:$REDIS_PORT.
Logs: .run/{gateway,users,url-shortener,analytics,redis}.log.   Stop with: make down
EOF
fi
cat <<EOF

A first journey (copy and paste; needs curl and jq):

  curl -s -X POST $API/auth/register -H 'Content-Type: application/json' \\
       -d '{"username":"alice","password":"correct horse battery"}'

  TOKEN=\$(curl -s -X POST $API/auth/login -H 'Content-Type: application/json' \\
       -d '{"username":"alice","password":"correct horse battery"}' | jq -r .token)

  CODE=\$(curl -s -X POST $API/shorten -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"url":"https://example.com/"}' | jq -r .code)

  curl -i $URL/r/\$CODE

  curl -s $API/analytics/\$CODE -H "Authorization: Bearer \$TOKEN" | jq

(The register call answers 409 when alice already exists: the data persists.)
EOF
if [ "$PHASE" = 2 ]; then
	cat <<EOF

What the gateway adds, to look at:

  curl -s $URL/health | jq     # each upstream: up/down and its connection pool
  curl -s $URL/metrics | grep ^gateway_upstream
  curl -s $API/users/me -H "Authorization: Bearer \$TOKEN" -H 'X-User-Id: mallory' | jq
                               # still alice: the gateway drops client X-User-* headers
EOF
fi
