#!/usr/bin/env bash
# scripts/up.sh PHASE - start a phase of the kit natively on loopback, no
# Docker: `make up` runs `scripts/up.sh 1` after building, `make up
# PHASE=2` runs `scripts/up.sh 2`, `make up PHASE=3` runs `scripts/up.sh 3`.
#
# Phase 1 is a redis-server and the monolith:
#   redis         127.0.0.1:$REDIS_PORT (6390), append-only persistence,
#                 data in .run/redis/, log .run/redis.log
#   monolith      127.0.0.1:$PORT (8080), log .run/monolith.log
# Phase 2 is the same redis-server, three services and the gateway:
#   url-shortener 127.0.0.1:$URL_SHORTENER_PORT (8081)
#   analytics     127.0.0.1:$ANALYTICS_PORT (8082)
#   users         127.0.0.1:$USERS_PORT (8083)
#   notifications 127.0.0.1:$NOTIFICATIONS_PORT (8087): told by analytics
#                 when a link passes 10, 100, 1000 clicks
#   gateway       127.0.0.1:$GATEWAY_PORT (3000), routes from
#                 phase2-gateway/gateway.json (GATEWAY_CONFIG to use another)
#   prometheus    127.0.0.1:$PROMETHEUS_PORT (9190), scraping the gateway and
#                 each service (Phases 2 and 3), config and data in .run/prometheus/
# Phase 3 is the same redis-server (data and rate limits), the services
# (the url-shortener twice more: as API v2, and as v2's canary), three
# gateways behind nginx, and a trace sink:
#   url-shortener            127.0.0.1:$URL_SHORTENER_PORT (8081), API v1
#   url-shortener-b          127.0.0.1:$URL_SHORTENER_B_PORT (8086), API v1's second
#                            instance: the gateways balance between the two
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
# How each is started (its environment, log and pid file) is in
# scripts/lib/processes.sh, which scripts/service.sh shares: it stops,
# starts or restarts one of them the same way. Each log (stdout, the access
# log, and stderr together) is .run/<name>.log; the pids go to
# .run/<name>.pid, and `make down` (scripts/down.sh) stops whatever is
# running.
#
# Settings come from the environment, and win: any setting of
# docs/configuration.md (RATE_LIMIT_FREE=5 make up PHASE=2), the ports
# above, KIT_RUN_DIR (another folder than .run/, e.g. for a second copy on
# other ports), and JWT_SECRET. Without JWT_SECRET, a secret is made once
# (openssl rand -hex 32) and kept in .run/jwt_secret, so tokens stay valid
# across restarts; the summary says which was used. What the run was
# started with goes to .run/up.env, for service.sh.
#
# Readiness is polled (redis-cli ping, GET /health, nginx's /nginx-health,
# the sink's ready file), never guessed. If anything fails to start, what
# was already started is stopped again (down.sh) and the reason printed.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/processes.sh
source scripts/lib/processes.sh

PHASE=${1:-1}
require_phase up.sh "$PHASE"
KIT_PHASE=$PHASE
kit_settings || exit 2
mapfile -t WAVES < <(phase_waves "$PHASE")

# 1. Refuse to start twice. A pid file whose process is gone is stale: drop it.
if ! mkdir -p "$RUN_DIR" || [ ! -w "$RUN_DIR" ]; then
	echo "up: cannot write to $RUN_DIR (KIT_RUN_DIR); make doctor says more." >&2
	exit 1
fi
for pid_file in "$RUN_DIR"/*.pid; do
	[ -e "$pid_file" ] || continue
	if pid=$(pid_file_check "$pid_file" 2>/dev/null); then
		echo "up: already running: $(basename "$pid_file" .pid) (pid $pid)." >&2
		echo "up: stop it first with: make down" >&2
		exit 1
	fi
	rm -f "$pid_file"
done

# Every port this phase listens on must be free. The sink's are checked
# when it starts: a Jaeger agent on its UDP port is welcome.
for name in $(phase_processes "$PHASE"); do
	[ "$name" != jaeger-sink ] || continue
	while read -r _ port; do
		tcp_in_use "$port" || continue
		read -r holder program < <(port_holder tcp "$port")
		echo "up: port $port ($name) is in use by pid $holder ($program)." >&2
		echo "up: make doctor PHASE=$PHASE says more and what to do; or choose another port:" >&2
		echo "up: $(process_port_var "$name")=... make up PHASE=$PHASE" >&2
		exit 1
	done < <(process_ports "$name")
done

case $PHASE in
1) BINARIES=("$MONOLITH") ;;
2) BINARIES=("$BIN_DIR/users" "$BIN_DIR/url-shortener" "$BIN_DIR/analytics" "$BIN_DIR/gateway") ;;
3) BINARIES=("$BIN_DIR/users" "$BIN_DIR/url-shortener" "$BIN_DIR/analytics" "$BIN_DIR/gateway-advanced") ;;
esac
for binary in "${BINARIES[@]}"; do
	if [ ! -x "$binary" ]; then
		echo "up: $binary is missing: run make first." >&2
		exit 1
	fi
done
if [ "$PHASE" = 3 ] && ! command -v nginx >/dev/null; then
	echo "up: nginx is missing: run scripts/deps.sh phase3 (it installs nginx-light)." >&2
	exit 1
fi

# If a later step fails, stop what this run already started: every process
# gets its pid file as soon as it starts, and down.sh stops them all.
give_up() {
	echo "up: $1" >&2
	bash scripts/down.sh >&2
	exit 1
}

# 2. The JWT secret (see the top), and what this run is started with.
use_jwt_secret up || give_up "could not make a JWT secret in $RUN_SHOWN/jwt_secret"
save_run_settings

# 3. The processes, a wave at a time: each wave started together, then
# each of its processes polled until ready.
SINK_CANNOT_RUN=0
for wave in "${WAVES[@]}"; do
	for name in $wave; do
		start_process "$name" || give_up "could not start $name (see above)"
	done
	for name in $wave; do
		status=0
		wait_ready "$name" || status=$?
		case $status in
		0) ;;
		2) SINK_CANNOT_RUN=1 ;; # Phase 3 still works, without traces
		*) give_up "$name did not start (see above)" ;;
		esac
	done
done

URL="http://127.0.0.1:$PORT"
API=$URL
if [ "$PHASE" = 2 ]; then
	URL="http://127.0.0.1:$GATEWAY_PORT"
	API=$URL/api/v1
elif [ "$PHASE" = 3 ]; then
	URL="http://127.0.0.1:$NGINX_PORT"
	API=$URL/api/v1
	if [ -f "$RUN_DIR/jaeger-sink.pid" ]; then
		TRACES_GO_TO="to tests/jaeger_sink.py, one JSON line per span in $RUN_SHOWN/traces.jsonl:
  tail -f $RUN_SHOWN/traces.jsonl | jq"
	elif [ "$SINK_CANNOT_RUN" = 1 ]; then
		TRACES_GO_TO="nowhere: tests/jaeger_sink.py cannot run here ($RUN_SHOWN/jaeger-sink.log says
  why: python3-thrift, thrift-compiler, or npm to fetch Jaeger's IDL once; scripts/deps.sh phase3)."
	else
		TRACES_GO_TO="to what already listens on UDP 127.0.0.1:$JAEGER_AGENT_PORT (a Jaeger
  agent? Jaeger all-in-one shows them on http://127.0.0.1:16686, service \"gateway\")."
	fi
fi

# 4. Say where it is and what to try.
echo
case $PHASE in
1)
	echo "Phase 1 is up: the monolith on $URL, Redis on 127.0.0.1:$REDIS_PORT."
	echo "Logs: $RUN_SHOWN/monolith.log, $RUN_SHOWN/redis.log."
	;;
2)
	cat <<EOF
Phase 2 is up: the gateway on $URL in front of
  users on 127.0.0.1:$USERS_PORT, url-shortener on 127.0.0.1:$URL_SHORTENER_PORT,
  analytics on 127.0.0.1:$ANALYTICS_PORT, notifications on 127.0.0.1:$NOTIFICATIONS_PORT,
  Redis on 127.0.0.1:$REDIS_PORT.
Logs: $RUN_SHOWN/{gateway,users,url-shortener,analytics,notifications,redis}.log.
EOF
	;;
3)
	cat <<EOF
Phase 3 is up: nginx on $URL in front of three gateways
  (api-gateway-1..3 on 127.0.0.1:${GATEWAY3_PORT_LIST[0]}, :${GATEWAY3_PORT_LIST[1]}, :${GATEWAY3_PORT_LIST[2]}), in front of
  users :$USERS_PORT, analytics :$ANALYTICS_PORT, notifications :$NOTIFICATIONS_PORT,
  url-shortener (API v1) :$URL_SHORTENER_PORT
  and its second instance url-shortener-b :$URL_SHORTENER_B_PORT (the gateways balance between them),
  url-shortener-v2 :$URL_SHORTENER_V2_PORT and its canary :$URL_SHORTENER_V2_CANARY_PORT; Redis on 127.0.0.1:$REDIS_PORT.
Traces go $TRACES_GO_TO
Logs: $RUN_SHOWN/<name>.log; nginx's in $RUN_SHOWN/nginx/logs/.
EOF
	;;
esac
cat <<EOF
$JWT_SECRET_SAID.
Stop everything: make down.  One process: scripts/service.sh stop|start|restart|status NAME
  (NAME: $(phase_processes "$PHASE" | sed 's/ /, /g')).
EOF
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
  curl -s 'http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=instance:http_requests:rate1m' | jq -c '.data.result[] | [.metric.instance, .value[1]]'
                               # Prometheus (UI: http://127.0.0.1:$PROMETHEUS_PORT): requests
                               # per second, per process
EOF
fi
if [ "$PHASE" = 3 ]; then
	G1="http://127.0.0.1:${GATEWAY3_PORT_LIST[0]}"
	cat <<EOF

What Phase 3 adds, to look at:

  curl -si $API/expand/\$CODE | grep -i '^x-'
               # X-Instance: which gateway answered (again: nginx takes turns);
               # X-Trace-ID: the trace, in $RUN_SHOWN/traces.jsonl (or Jaeger)
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
  tail -f $RUN_SHOWN/traces.jsonl | jq        # every span, as the sink decoded it
  scripts/service.sh stop api-gateway-2       # a gateway dies: nginx uses the others
  curl -s 'http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=instance:http_requests:rate1m{job="gateway"}' | jq -c '.data.result[] | [.metric.instance, .value[1]]'
               # Prometheus (UI: http://127.0.0.1:$PROMETHEUS_PORT): each gateway on its own
EOF
fi
