#!/usr/bin/env bash
# scripts/up.sh PHASE - start a phase of the kit natively on loopback, no
# Docker: `make up` runs `scripts/up.sh 1` after building, `make up
# PHASE=2` runs `scripts/up.sh 2`, `make up PHASE=3` runs `scripts/up.sh 3`.
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
# Phase 3 is the same redis-server (data and rate limits), the services
# (the url-shortener twice more: as API v2, and as v2's canary), three
# gateways behind nginx, and a trace sink:
#   url-shortener            127.0.0.1:$URL_SHORTENER_PORT (8081), API v1
#   url-shortener-v2         127.0.0.1:$URL_SHORTENER_V2_PORT (8084), API_VERSION=2
#   url-shortener-v2-canary  127.0.0.1:$URL_SHORTENER_V2_CANARY_PORT (8085), API_VERSION=2
#   analytics, users         as in Phase 2
#   api-gateway-1..3         127.0.0.1:$GATEWAY3_PORTS (3001 3002 3003):
#                            build/bin/gateway-advanced, phase3-advanced/gateway.json
#   nginx                    127.0.0.1:$NGINX_PORT (8000), the one entry point;
#                            its config and logs in .run/nginx/
#   jaeger-sink              tests/jaeger_sink.py on UDP $JAEGER_AGENT_PORT (6832):
#                            decodes the spans every process sends, one JSON
#                            line per span in .run/traces.jsonl. When something
#                            already listens on UDP 6832 (a Jaeger agent), no
#                            sink is started and the spans go there.
# Each log (stdout, the access log, and stderr together) is .run/<name>.log;
# the pids go to .run/<name>.pid, and `make down` (scripts/down.sh) stops
# whatever is running.
#
# The JWT secret is made once (openssl rand -hex 32) and kept in
# .run/jwt_secret, so tokens stay valid across restarts. Any other setting
# of docs/configuration.md can be given in the environment:
#   RATE_LIMIT_FREE=5 make up PHASE=2
# Readiness is polled (redis-cli ping, GET /health, nginx's /nginx-health,
# the sink's "ready" line), never guessed.
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
URL_SHORTENER_V2_PORT=${URL_SHORTENER_V2_PORT:-8084}            # Phase 3
URL_SHORTENER_V2_CANARY_PORT=${URL_SHORTENER_V2_CANARY_PORT:-8085}
read -r -a GATEWAY3_PORTS <<<"${GATEWAY3_PORTS:-3001 3002 3003}" # api-gateway-1..3
NGINX_PORT=${NGINX_PORT:-8000}
JAEGER_AGENT_PORT=${JAEGER_AGENT_PORT:-6832}          # UDP, Thrift binary
SINK_UDP_COMPACT_PORT=${SINK_UDP_COMPACT_PORT:-6831}  # the sink's other two
SINK_HTTP_PORT=${SINK_HTTP_PORT:-14268}               # inputs: Jaeger's ports
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
	if [ ${#GATEWAY3_PORTS[@]} -ne 3 ]; then
		echo "up: GATEWAY3_PORTS must name three ports, e.g. '3001 3002 3003'" >&2
		exit 2
	fi
	PORTS=("$REDIS_PORT" "$USERS_PORT" "$URL_SHORTENER_PORT" "$URL_SHORTENER_V2_PORT"
		"$URL_SHORTENER_V2_CANARY_PORT" "$ANALYTICS_PORT" "${GATEWAY3_PORTS[@]}" "$NGINX_PORT")
	BINARIES=("$BIN_DIR/users" "$BIN_DIR/url-shortener" "$BIN_DIR/analytics"
		"$BIN_DIR/gateway-advanced")
	;;
*)
	echo "usage: scripts/up.sh 1|2|3" >&2
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

# tcp_in_use PORT / udp_in_use PORT: something listens there.
tcp_in_use() {
	[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}
udp_in_use() {
	[ -n "$(ss -Hlun "sport = :$1" 2>/dev/null)" ]
}

# 1. Refuse to start twice. A pid file whose process is gone is stale: drop it.
mkdir -p "$RUN_DIR/redis"
for pid_file in "$RUN_DIR"/*.pid; do
	[ -e "$pid_file" ] || continue
	pid=$(sed -n 1p "$pid_file")
	if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid"; then
		echo "up: already running: $(basename "$pid_file" .pid) (pid $pid)." >&2
		echo "up: stop it first with: make down" >&2
		exit 1
	fi
	rm -f "$pid_file"
done

for port in "${PORTS[@]}"; do
	if tcp_in_use "$port"; then
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
if [ "$PHASE" = 3 ] && ! command -v nginx >/dev/null; then
	echo "up: nginx is missing: run scripts/deps.sh (it installs nginx-light)." >&2
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
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# 3. The JWT secret: made once, readable by this user only.
if [ ! -s "$RUN_DIR/jwt_secret" ]; then
	(umask 077 && openssl rand -hex 32 >"$RUN_DIR/jwt_secret")
fi
JWT_SECRET=$(cat "$RUN_DIR/jwt_secret")

# start NAME BINARY PORT [VAR=VALUE...]: starts BINARY in the background on
# 127.0.0.1:PORT with the caller's environment plus the given variables,
# logs to .run/NAME.log, writes .run/NAME.pid: the pid, and on a second
# line the binary, so down.sh can check the pid still runs it.
start() {
	local name=$1 binary=$2 port=$3
	shift 3
	env PORT="$port" BIND_ADDRESS=127.0.0.1 "$@" \
		nohup "$binary" >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
	printf '%s\n%s\n' "$!" "$binary" >"$RUN_DIR/$name.pid"
}

# wait_healthy NAME PORT [PATH]: polls GET PATH (default /health) until it
# answers 200; gives up when NAME's process exits.
wait_healthy() {
	local name=$1 port=$2 path=${3:-/health} pid code
	pid=$(sed -n 1p "$RUN_DIR/$name.pid")
	for _ in $(seq 1 "$POLL_TRIES"); do
		if ! pid_alive "$pid"; then
			tail -n 20 "$RUN_DIR/$name.log" >&2
			give_up "$name exited; see .run/$name.log"
		fi
		code=$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' \
			"http://127.0.0.1:$port$path" || true)
		[ "$code" = "200" ] && return 0
		sleep "$POLL_INTERVAL"
	done
	give_up "GET http://127.0.0.1:$port$path did not answer 200; see .run/$name.log"
}

# start_sink (Phase 3): tests/jaeger_sink.py on the ports a Jaeger agent
# (Thrift over UDP: binary and compact) and collector (HTTP) would use,
# writing each span it decodes as one JSON line to .run/traces.jsonl. Polls
# its log for the line saying it is ready. Sets TRACES_GO_TO, for the
# summary. When UDP $JAEGER_AGENT_PORT is taken, a Jaeger agent (such as the
# compose profile's all-in-one) is assumed to be there: no sink.
start_sink() {
	local log="$RUN_DIR/jaeger-sink.log" offset pid port
	if udp_in_use "$JAEGER_AGENT_PORT"; then
		TRACES_GO_TO="to what already listens on UDP 127.0.0.1:$JAEGER_AGENT_PORT (a Jaeger
  agent? Jaeger all-in-one shows them on http://127.0.0.1:16686, service \"gateway\")."
		return 0
	fi
	if [ ! -f "$ROOT/tests/jaeger_sink.py" ] || ! command -v python3 >/dev/null; then
		TRACES_GO_TO="nowhere: neither tests/jaeger_sink.py (with python3) nor a Jaeger agent
  on UDP $JAEGER_AGENT_PORT is there."
		return 0
	fi
	for port in "$SINK_UDP_COMPACT_PORT" "$SINK_HTTP_PORT"; do
		if udp_in_use "$port" || tcp_in_use "$port"; then
			give_up "port $port, the trace sink's, is in use (SINK_UDP_COMPACT_PORT, SINK_HTTP_PORT)"
		fi
	done
	offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
	nohup python3 "$ROOT/tests/jaeger_sink.py" --udp-binary "$JAEGER_AGENT_PORT" \
		--udp-compact "$SINK_UDP_COMPACT_PORT" --http "$SINK_HTTP_PORT" \
		--out "$RUN_DIR/traces.jsonl" >>"$log" 2>&1 </dev/null &
	pid=$!
	printf '%s\n%s\n' "$pid" "jaeger_sink.py" >"$RUN_DIR/jaeger-sink.pid"
	for _ in $(seq 1 "$POLL_TRIES"); do
		pid_alive "$pid" || give_up "the trace sink exited; see .run/jaeger-sink.log"
		# Only this run's lines count: the log is appended to.
		if tail -c +"$((offset + 1))" "$log" | grep -qi 'ready'; then
			TRACES_GO_TO="to tests/jaeger_sink.py, one JSON line per span in .run/traces.jsonl:
  tail -f .run/traces.jsonl | jq"
			return 0
		fi
		sleep "$POLL_INTERVAL"
	done
	give_up "the trace sink did not say it is ready; see .run/jaeger-sink.log"
}

# start_nginx (Phase 3): writes .run/nginx/nginx.conf for the three
# gateways (scripts/nginx-native-conf.sh) and runs Debian's nginx on it as
# this user, in the foreground (so the pid is the master's), then polls its
# /nginx-health, and a gateway's /health through it.
start_nginx() {
	local prefix="$RUN_DIR/nginx"
	bash "$ROOT/scripts/nginx-native-conf.sh" "$prefix" "$NGINX_PORT" "${GATEWAY3_PORTS[@]}" ||
		give_up "could not write $prefix/nginx.conf"
	nohup nginx -p "$prefix" -c nginx.conf -e logs/error.log -g 'daemon off;' \
		>>"$RUN_DIR/nginx.log" 2>&1 </dev/null &
	printf '%s\n%s\n' "$!" "nginx: master process" >"$RUN_DIR/nginx.pid"
	wait_healthy nginx "$NGINX_PORT" /nginx-health
	wait_healthy nginx "$NGINX_PORT" /health
}

# start_phase3: the sink, the services, three gateways, nginx.
start_phase3() {
	local trace name port version variant i
	start_sink
	# Every process samples every request (const) and sends its spans to the
	# sink, or to the agent found on the port. Each may be overridden.
	trace=(TRACE_SAMPLER="${TRACE_SAMPLER:-const}"
		TRACE_REPORTER="${TRACE_REPORTER:-udp-binary}"
		JAEGER_AGENT_HOST="${JAEGER_AGENT_HOST:-127.0.0.1}"
		JAEGER_AGENT_PORT="$JAEGER_AGENT_PORT")

	# The services, on loopback only (they trust X-User-*). One
	# url-shortener binary runs three times: API v1, API v2 and v2's canary.
	# All three share the data Redis: a link made through one version
	# expands through the other. short_url points at nginx.
	start users "$BIN_DIR/users" "$USERS_PORT" "${trace[@]}" INSTANCE_ID=users \
		REDIS_URL="$REDIS_URL" JWT_SECRET="$JWT_SECRET"
	start analytics "$BIN_DIR/analytics" "$ANALYTICS_PORT" "${trace[@]}" \
		INSTANCE_ID=analytics REDIS_URL="$REDIS_URL"
	for variant in v1 v2 v2-canary; do
		case $variant in
		v1) name=url-shortener port=$URL_SHORTENER_PORT version=1 ;;
		v2) name=url-shortener-v2 port=$URL_SHORTENER_V2_PORT version=2 ;;
		v2-canary) name=url-shortener-v2-canary port=$URL_SHORTENER_V2_CANARY_PORT version=2 ;;
		esac
		start "$name" "$BIN_DIR/url-shortener" "$port" "${trace[@]}" \
			INSTANCE_ID="url-shortener-$variant" API_VERSION="$version" \
			REDIS_URL="$REDIS_URL" PUBLIC_BASE_URL="$URL" \
			ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
	done
	wait_healthy users "$USERS_PORT"
	wait_healthy analytics "$ANALYTICS_PORT"
	wait_healthy url-shortener "$URL_SHORTENER_PORT"
	wait_healthy url-shortener-v2 "$URL_SHORTENER_V2_PORT"
	wait_healthy url-shortener-v2-canary "$URL_SHORTENER_V2_CANARY_PORT"

	# Three identical gateways: only the port and INSTANCE_ID differ. They
	# count rate limits in the one Redis, and believe X-Forwarded-For from
	# nginx (127.0.0.1) only, so per-IP limits see the client, not nginx.
	for i in 1 2 3; do
		start "api-gateway-$i" "$BIN_DIR/gateway-advanced" "${GATEWAY3_PORTS[$((i - 1))]}" \
			"${trace[@]}" INSTANCE_ID="api-gateway-$i" TRUSTED_PROXIES=127.0.0.1 \
			GATEWAY_CONFIG="${GATEWAY_CONFIG:-$ROOT/phase3-advanced/gateway.json}" \
			REDIS_URL="$REDIS_URL" JWT_SECRET="$JWT_SECRET" \
			USERS_URL="http://127.0.0.1:$USERS_PORT" \
			ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" \
			URL_SHORTENER_V1_URL="http://127.0.0.1:$URL_SHORTENER_PORT" \
			URL_SHORTENER_V2_URL="http://127.0.0.1:$URL_SHORTENER_V2_PORT" \
			URL_SHORTENER_V2_CANARY_URL="http://127.0.0.1:$URL_SHORTENER_V2_CANARY_PORT"
	done
	for i in 1 2 3; do
		wait_healthy "api-gateway-$i" "${GATEWAY3_PORTS[$((i - 1))]}"
	done

	start_nginx
}

# 4. The servers. The rest of their settings come from the environment.
if [ "$PHASE" = 1 ]; then
	start monolith "$MONOLITH" "$PORT" REDIS_URL="$REDIS_URL" JWT_SECRET="$JWT_SECRET"
	wait_healthy monolith "$PORT"
	URL="http://127.0.0.1:$PORT"
	API=$URL
elif [ "$PHASE" = 2 ]; then
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
else
	URL="http://127.0.0.1:$NGINX_PORT"
	API=$URL/api/v1
	start_phase3
fi

# 5. Say where it is and what to try.
echo
case $PHASE in
1)
	echo "Phase 1 is up: the monolith on $URL, Redis on 127.0.0.1:$REDIS_PORT."
	echo "Logs: .run/monolith.log, .run/redis.log.   Stop with: make down"
	;;
2)
	cat <<EOF
Phase 2 is up: the gateway on $URL in front of
  users on 127.0.0.1:$USERS_PORT, url-shortener on 127.0.0.1:$URL_SHORTENER_PORT,
  analytics on 127.0.0.1:$ANALYTICS_PORT, Redis on 127.0.0.1:$REDIS_PORT.
Logs: .run/{gateway,users,url-shortener,analytics,redis}.log.   Stop with: make down
EOF
	;;
3)
	cat <<EOF
Phase 3 is up: nginx on $URL in front of three gateways
  (api-gateway-1..3 on 127.0.0.1:${GATEWAY3_PORTS[0]}, :${GATEWAY3_PORTS[1]}, :${GATEWAY3_PORTS[2]}), in front of
  users :$USERS_PORT, analytics :$ANALYTICS_PORT, url-shortener (API v1) :$URL_SHORTENER_PORT,
  url-shortener-v2 :$URL_SHORTENER_V2_PORT and its canary :$URL_SHORTENER_V2_CANARY_PORT; Redis on 127.0.0.1:$REDIS_PORT.
Traces go $TRACES_GO_TO
Logs: .run/<name>.log; nginx's in .run/nginx/logs/.   Stop with: make down
EOF
	;;
esac
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
if [ "$PHASE" = 3 ]; then
	G1="http://127.0.0.1:${GATEWAY3_PORTS[0]}"
	cat <<EOF

What Phase 3 adds, to look at:

  curl -si $API/expand/\$CODE | grep -i '^x-'
               # X-Instance: which gateway answered (again: nginx takes turns);
               # X-Trace-ID: the trace, in .run/traces.jsonl (or Jaeger)
  curl -s $URL/api/v2/expand/\$CODE | jq
               # API v2 of the same link: api_version, expires_at, links
  curl -si -X POST $URL/api/v2/shorten -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"url":"https://example.com/v2","expires_in":3600}'
               # X-Variant: stable or canary (10%), the same for alice every time
  curl -si $URL/api/v2/expand/\$CODE -H 'X-Variant: canary' | grep -i '^x-'
               # forced onto the canary: X-Instance url-shortener-v2-canary
  curl -s $URL/api/v3/expand/\$CODE | jq
               # 404, with supported_versions
  curl -s $G1/metrics | grep ^gateway_split   # requests per variant, this gateway
  tail -f .run/traces.jsonl | jq              # every span, as the sink decoded it
  kill \$(sed -n 1p .run/api-gateway-2.pid)    # a gateway dies: nginx uses the others
EOF
fi
