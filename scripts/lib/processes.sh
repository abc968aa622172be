# shellcheck shell=bash
# scripts/lib/processes.sh - what `make up` runs, and how each of those
# processes is started, checked and stopped. scripts/up.sh,
# scripts/service.sh, scripts/down.sh and scripts/doctor.sh source it, so
# they agree on every process's name, port, pid file, log and environment:
# a gateway that service.sh restarts is started exactly as up.sh started it.
#
#   settings   kit_run_dir: RUN_DIR (KIT_RUN_DIR, default .run/);
#              kit_settings: that, every port (REDIS_PORT, PORT, ... from
#              the environment, with their defaults) and BIN_DIR.
#   phases     require_phase, phase_waves PHASE (the processes in start order),
#              phase_processes PHASE, process_ports NAME, process_port_var
#              NAME (the variable that sets its port).
#   starting   start_process NAME (in the background: log RUN_DIR/NAME.log,
#              pid file RUN_DIR/NAME.pid) and wait_ready NAME (polls).
#   stopping   stop_pid_files FILE...: SIGTERM, poll, SIGKILL after 10 s.
#   looking    pid_alive, running_pid NAME, tcp_in_use, udp_in_use,
#              port_holder tcp|udp PORT, kit_name_of_pid PID.
#   a run      save_run_settings and load_run_settings: RUN_DIR/up.env holds
#              what `make up` was started with (the phase, the ports, the
#              settings given in its environment), so service.sh starts a
#              process again the same way.
#   secret     use_jwt_secret: which JWT secret a run uses, and why.
#
# A pid file is the pid on its first line and on the second the program (as
# `ps -o args=` shows it) that pid must be running: .run/api-gateway-1.pid
# holds "4242" and ".../build/bin/gateway-advanced". A pid can be reused
# after a reboot, so a pid whose program differs is never signalled.
#
# The processes themselves are started with the caller's environment plus
# their own variables (PORT, REDIS_URL, ...): every setting of
# docs/configuration.md can be given in the environment and wins.

KIT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
POLL_TRIES=200      # x POLL_INTERVAL = 10 s at most per wait
POLL_INTERVAL=0.05

# kit_run_dir: RUN_DIR, from KIT_RUN_DIR or .run/ (a relative KIT_RUN_DIR
# is taken from the kit's folder), and RUN_SHOWN, as messages show it.
kit_run_dir() {
	RUN_DIR=${KIT_RUN_DIR:-$KIT_ROOT/.run}
	[[ $RUN_DIR == /* ]] || RUN_DIR=$KIT_ROOT/$RUN_DIR
	RUN_SHOWN=${RUN_DIR#"$KIT_ROOT"/}
}

# kit_settings: kit_run_dir, and the ports and binaries, from the
# environment or their defaults.
kit_settings() {
	kit_run_dir
	REDIS_PORT=${REDIS_PORT:-6390}
	PORT=${PORT:-8080}                         # Phase 1: the monolith
	GATEWAY_PORT=${GATEWAY_PORT:-3000}         # Phase 2
	URL_SHORTENER_PORT=${URL_SHORTENER_PORT:-8081}
	ANALYTICS_PORT=${ANALYTICS_PORT:-8082}
	USERS_PORT=${USERS_PORT:-8083}
	NOTIFICATIONS_PORT=${NOTIFICATIONS_PORT:-8087}
	URL_SHORTENER_V2_PORT=${URL_SHORTENER_V2_PORT:-8084}            # Phase 3
	URL_SHORTENER_V2_CANARY_PORT=${URL_SHORTENER_V2_CANARY_PORT:-8085}
	URL_SHORTENER_B_PORT=${URL_SHORTENER_B_PORT:-8086}              # v1's second instance
	GATEWAY3_PORTS=${GATEWAY3_PORTS:-3001 3002 3003} # api-gateway-1..3
	NGINX_PORT=${NGINX_PORT:-8000}
	JAEGER_AGENT_PORT=${JAEGER_AGENT_PORT:-6832}          # UDP, Thrift binary
	SINK_UDP_COMPACT_PORT=${SINK_UDP_COMPACT_PORT:-6831}  # the sink's other two
	SINK_HTTP_PORT=${SINK_HTTP_PORT:-14268}               # inputs: Jaeger's ports
	PROMETHEUS_PORT=${PROMETHEUS_PORT:-9190}              # Phases 2 and 3 (not 9090: Debian's own service)
	BIN_DIR=${BIN_DIR:-$KIT_ROOT/build/bin}    # build/asan/bin for the sanitizer build
	MONOLITH=${MONOLITH:-$BIN_DIR/monolith}
	REDIS_URL_OF_RUN="redis://127.0.0.1:$REDIS_PORT/0"
	read -r -a GATEWAY3_PORT_LIST <<<"$GATEWAY3_PORTS"
	if [ ${#GATEWAY3_PORT_LIST[@]} -ne 3 ]; then
		echo "GATEWAY3_PORTS must name three ports, e.g. '3001 3002 3003'" >&2
		return 2
	fi
}

# ---------------------------------------------------------------------------
# The phases
# ---------------------------------------------------------------------------

# require_phase SCRIPT PHASE: PHASE is 1, 2 or 3; otherwise prints SCRIPT's
# usage and exits 2.
require_phase() {
	case $2 in
	1 | 2 | 3) ;;
	*)
		echo "usage: scripts/$1 1|2|3   (not '$2')" >&2
		exit 2
		;;
	esac
}

# phase_waves PHASE: the processes of PHASE, one wave a line, in start
# order. up.sh starts the processes of a wave together, waits until each is
# ready, then starts the next wave: the gateways only once their services
# answer, nginx only once the gateways do.
phase_waves() {
	case $1 in
	1) printf '%s\n' redis monolith ;;
	2) printf '%s\n' redis "users analytics url-shortener notifications" gateway prometheus ;;
	3) printf '%s\n' redis jaeger-sink \
		"users analytics notifications url-shortener url-shortener-b url-shortener-v2 url-shortener-v2-canary" \
		"api-gateway-1 api-gateway-2 api-gateway-3" nginx prometheus ;;
	*) return 1 ;;
	esac
}

# phase_processes PHASE: the same names on one line.
phase_processes() {
	phase_waves "$1" | tr '\n' ' ' | sed 's/ $//'
}

# process_ports NAME: the ports NAME listens on, one "tcp PORT" or
# "udp PORT" a line.
process_ports() {
	case $1 in
	redis) echo "tcp $REDIS_PORT" ;;
	monolith) echo "tcp $PORT" ;;
	gateway) echo "tcp $GATEWAY_PORT" ;;
	users) echo "tcp $USERS_PORT" ;;
	analytics) echo "tcp $ANALYTICS_PORT" ;;
	notifications) echo "tcp $NOTIFICATIONS_PORT" ;;
	url-shortener) echo "tcp $URL_SHORTENER_PORT" ;;
	url-shortener-v2) echo "tcp $URL_SHORTENER_V2_PORT" ;;
	url-shortener-v2-canary) echo "tcp $URL_SHORTENER_V2_CANARY_PORT" ;;
	url-shortener-b) echo "tcp $URL_SHORTENER_B_PORT" ;;
	api-gateway-[123]) echo "tcp ${GATEWAY3_PORT_LIST[${1#api-gateway-} - 1]}" ;;
	nginx) echo "tcp $NGINX_PORT" ;;
	prometheus) echo "tcp $PROMETHEUS_PORT" ;;
	jaeger-sink) printf 'udp %s\nudp %s\ntcp %s\n' "$JAEGER_AGENT_PORT" \
		"$SINK_UDP_COMPACT_PORT" "$SINK_HTTP_PORT" ;;
	*) return 1 ;;
	esac
}

# process_port_var NAME: the variable that sets NAME's port.
process_port_var() {
	case $1 in
	redis) echo REDIS_PORT ;;
	monolith) echo PORT ;;
	gateway) echo GATEWAY_PORT ;;
	users) echo USERS_PORT ;;
	analytics) echo ANALYTICS_PORT ;;
	notifications) echo NOTIFICATIONS_PORT ;;
	url-shortener) echo URL_SHORTENER_PORT ;;
	url-shortener-v2) echo URL_SHORTENER_V2_PORT ;;
	url-shortener-v2-canary) echo URL_SHORTENER_V2_CANARY_PORT ;;
	url-shortener-b) echo URL_SHORTENER_B_PORT ;;
	api-gateway-[123]) echo GATEWAY3_PORTS ;;
	nginx) echo NGINX_PORT ;;
	prometheus) echo PROMETHEUS_PORT ;;
	jaeger-sink) echo "JAEGER_AGENT_PORT, SINK_UDP_COMPACT_PORT, SINK_HTTP_PORT" ;;
	esac
}

# ---------------------------------------------------------------------------
# Looking
# ---------------------------------------------------------------------------

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$state" != "Z" ]
}

# tcp_in_use PORT / udp_in_use PORT: something listens there. Without ss
# (iproute2, not yet installed on a bare machine: make doctor runs before
# deps), TCP is tried by connecting, with bash's /dev/tcp; UDP cannot be.
tcp_in_use() {
	if command -v ss >/dev/null; then
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}
udp_in_use() {
	[ -n "$(ss -Hlun "sport = :$1" 2>/dev/null)" ]
}

# port_holder tcp|udp PORT: "PID PROGRAM" of the process listening there,
# "? ?" when ss may not say (another user's process, seen by a non-root
# user), nothing when the port is free.
port_holder() {
	local flag=-Hltnp line
	[ "$1" = udp ] && flag=-Hlunp
	line=$(ss "$flag" "sport = :$2" 2>/dev/null | head -n 1)
	[ -n "$line" ] || return 0
	if [[ $line =~ users:\(\(\"([^\"]*)\",pid=([0-9]+) ]]; then
		echo "${BASH_REMATCH[2]} ${BASH_REMATCH[1]}"
	else
		echo "? ?"
	fi
}

# pid_file_program FILE: the program FILE says its pid runs (line 2; an
# older pid file without it: the file's name, which must start the
# program's name, as .run/redis.pid for redis-server).
pid_file_program() {
	local program
	program=$(sed -n 2p "$1" 2>/dev/null || true)
	[ -n "$program" ] || program=$(basename "$1" .pid)
	echo "$program"
}

# pid_file_check FILE: prints the pid FILE names when that process is alive
# and still runs the program FILE says; otherwise prints why not on stderr
# and returns 1 (2 when the pid now runs another program).
pid_file_check() {
	local file=$1 pid expected program
	pid=$(sed -n 1p "$file" 2>/dev/null || true)
	if ! [[ $pid =~ ^[0-9]+$ ]] || ! pid_alive "$pid"; then
		echo "$(basename "$file" .pid) is not running" >&2
		return 1
	fi
	expected=$(pid_file_program "$file")
	program=$(ps -o args= -p "$pid" 2>/dev/null || true)
	if [[ $program != *"$expected"* ]]; then
		echo "pid $pid is now '$program', not $expected" >&2
		return 2
	fi
	echo "$pid"
}

# running_pid NAME: the pid of NAME when RUN_DIR/NAME.pid names a live
# process of the right program; nothing (and status 1) otherwise.
running_pid() {
	[ -f "$RUN_DIR/$1.pid" ] || return 1
	pid_file_check "$RUN_DIR/$1.pid" 2>/dev/null
}

# kit_name_of_pid PID: the name of the pid file in RUN_DIR that holds PID.
kit_name_of_pid() {
	local file
	for file in "$RUN_DIR"/*.pid; do
		[ -f "$file" ] || continue
		if [ "$(sed -n 1p "$file")" = "$1" ]; then
			basename "$file" .pid
			return 0
		fi
	done
	return 1
}

# ---------------------------------------------------------------------------
# A run's settings and its JWT secret
# ---------------------------------------------------------------------------

# The variables a run is started with, kept in RUN_DIR/up.env: the kit's
# own (phase, ports, binaries), and every setting docs/configuration.md
# names (in backquotes, in capitals) that is set in the environment. The
# JWT secret is never written there: only where it came from, and its
# SHA-256, so that service.sh can tell a different one apart.
KIT_RUN_VARS=(KIT_PHASE REDIS_PORT PORT GATEWAY_PORT URL_SHORTENER_PORT ANALYTICS_PORT NOTIFICATIONS_PORT
	USERS_PORT URL_SHORTENER_V2_PORT URL_SHORTENER_V2_CANARY_PORT URL_SHORTENER_B_PORT GATEWAY3_PORTS NGINX_PORT
	JAEGER_AGENT_PORT SINK_UDP_COMPACT_PORT SINK_HTTP_PORT BIN_DIR MONOLITH
	JWT_SECRET_FROM JWT_SECRET_SHA256)

# save_run_settings: writes RUN_DIR/up.env (readable by this user only):
# the kit's own variables as NAME=VALUE, and the settings that were in the
# environment as "export NAME=VALUE".
save_run_settings() {
	local name
	(
		umask 077
		echo "# What scripts/up.sh was started with; scripts/service.sh reads it."
		for name in "${KIT_RUN_VARS[@]}"; do
			[ -z "${!name+set}" ] || printf '%s=%q\n' "$name" "${!name}"
		done
		# shellcheck disable=SC2016 # the backquotes are Markdown's
		grep -o '`[A-Z][A-Z0-9_]*`' "$KIT_ROOT/docs/configuration.md" 2>/dev/null |
			tr -d '`' | sort -u | while read -r name; do
			[ "$name" != JWT_SECRET ] || continue
			[[ " ${KIT_RUN_VARS[*]} " != *" $name "* ]] || continue
			if printenv "$name" >/dev/null; then
				printf 'export %s=%q\n' "$name" "$(printenv "$name")"
			fi
		done
	) >"$RUN_DIR/up.env"
}

# load_run_settings: sets, from RUN_DIR/up.env, every variable that is not
# already set (the environment wins), and exports those that were exported.
# Returns 1 when there is no up.env: nothing was started with `make up`.
load_run_settings() {
	local line name
	[ -f "$RUN_DIR/up.env" ] || return 1
	while IFS= read -r line; do
		[[ $line =~ ^(export )?([A-Z][A-Z0-9_]*)=(.*)$ ]] || continue
		name=${BASH_REMATCH[2]}
		[ -z "${!name+set}" ] || continue
		# The value was written with printf %q: eval reads it back.
		eval "${BASH_REMATCH[1]}$name=${BASH_REMATCH[3]}"
	done <"$RUN_DIR/up.env"
}

# shellcheck disable=SC2034 # JWT_SECRET_SAID is for the caller to print
# use_jwt_secret up|service: sets KIT_JWT_SECRET, JWT_SECRET_FROM
# ("environment" or "file") and JWT_SECRET_SAID (a sentence saying which).
#   up       JWT_SECRET from the environment when given; otherwise
#            RUN_DIR/jwt_secret, made (openssl rand -hex 32) when missing.
#   service  the secret the run started with: JWT_SECRET when given (it
#            must be that one), else RUN_DIR/jwt_secret if the run used it.
# Returns 1, having said why, when service.sh cannot know the secret.
use_jwt_secret() {
	local recorded_from=${JWT_SECRET_FROM:-} recorded_sum=${JWT_SECRET_SHA256:-}
	if [ -n "${JWT_SECRET:-}" ]; then
		KIT_JWT_SECRET=$JWT_SECRET
		JWT_SECRET_FROM=environment
		JWT_SECRET_SAID="JWT secret: JWT_SECRET from the environment (nothing written to $RUN_SHOWN/jwt_secret)"
	elif [ "$1" = service ] && [ "$recorded_from" = environment ]; then
		echo "service: make up was given JWT_SECRET in its environment and did not write it" >&2
		echo "service: down; give the same one here: JWT_SECRET=... scripts/service.sh ..." >&2
		return 1
	elif [ -s "$RUN_DIR/jwt_secret" ]; then
		KIT_JWT_SECRET=$(cat "$RUN_DIR/jwt_secret")
		JWT_SECRET_FROM="file"
		JWT_SECRET_SAID="JWT secret: $RUN_SHOWN/jwt_secret (kept from an earlier run; JWT_SECRET=... make up to use another)"
	else
		(umask 077 && openssl rand -hex 32 >"$RUN_DIR/jwt_secret") || return 1
		KIT_JWT_SECRET=$(cat "$RUN_DIR/jwt_secret")
		JWT_SECRET_FROM="file"
		JWT_SECRET_SAID="JWT secret: $RUN_SHOWN/jwt_secret (generated now; JWT_SECRET=... make up to use another)"
	fi
	JWT_SECRET_SHA256=$(printf '%s' "$KIT_JWT_SECRET" | sha256sum | cut -d' ' -f1)
	if [ "$1" = service ] && [ -n "$recorded_sum" ] && [ "$recorded_sum" != "$JWT_SECRET_SHA256" ]; then
		echo "service: this JWT secret is not the one make up started with: tokens would verify" >&2
		echo "service: in one process and not in another. Give that one, or change it for all:" >&2
		echo "service: make down; JWT_SECRET=... make up" >&2
		return 1
	fi
}

# ---------------------------------------------------------------------------
# Starting
# ---------------------------------------------------------------------------

# launch NAME BINARY PORT [VAR=VALUE...]: starts a kit server in the
# background on 127.0.0.1:PORT with the caller's environment plus the given
# variables; its stdout (the access log) and stderr go to RUN_DIR/NAME.log,
# its pid and binary to RUN_DIR/NAME.pid.
launch() {
	local name=$1 binary=$2 port=$3
	shift 3
	if [ ! -x "$binary" ]; then
		echo "$binary is missing: run make first" >&2
		return 1
	fi
	env PORT="$port" BIND_ADDRESS=127.0.0.1 "$@" \
		nohup "$binary" >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
	printf '%s\n%s\n' "$!" "$binary" >"$RUN_DIR/$name.pid"
}

# start_process NAME: starts NAME as phase KIT_PHASE runs it. Needs
# kit_settings, KIT_PHASE, and KIT_JWT_SECRET for the processes that verify
# or issue tokens. Returns 1 (having said why) when it cannot start.
start_process() {
	local name=$1 phase=${KIT_PHASE:?} url trace=() ids=()
	mkdir -p "$RUN_DIR"
	# The public URL: short links point there.
	case $phase in
	1) url="http://127.0.0.1:$PORT" ;;
	2) url="http://127.0.0.1:$GATEWAY_PORT" ;;
	3) url="http://127.0.0.1:$NGINX_PORT" ;;
	esac
	# Phase 3: every process samples every request (const) and sends its
	# spans to the sink, or to the agent found on the port; each says which
	# instance it is. Each may be overridden from the environment.
	if [ "$phase" = 3 ]; then
		trace=(TRACE_SAMPLER="${TRACE_SAMPLER:-const}"
			TRACE_REPORTER="${TRACE_REPORTER:-udp-binary}"
			JAEGER_AGENT_HOST="${JAEGER_AGENT_HOST:-127.0.0.1}"
			JAEGER_AGENT_PORT="$JAEGER_AGENT_PORT")
		ids=(INSTANCE_ID="$name")
	fi
	case $name in
	redis) start_redis ;;
	jaeger-sink) start_sink ;;
	nginx) start_nginx ;;
	prometheus) start_prometheus "$phase" ;;
	monolith)
		launch monolith "$MONOLITH" "$PORT" REDIS_URL="$REDIS_URL_OF_RUN" \
			JWT_SECRET="${KIT_JWT_SECRET:?}" ;;
	# The services listen on loopback only: they trust the X-User-* headers
	# the gateway sets, so nothing but the gateway may reach them.
	users)
		launch users "$BIN_DIR/users" "$USERS_PORT" "${trace[@]}" "${ids[@]}" \
			REDIS_URL="$REDIS_URL_OF_RUN" JWT_SECRET="${KIT_JWT_SECRET:?}" ;;
	# analytics tells a link's owner, through notifications, when the link
	# passes 10, 100 and 1000 clicks.
	analytics)
		launch analytics "$BIN_DIR/analytics" "$ANALYTICS_PORT" "${trace[@]}" "${ids[@]}" \
			REDIS_URL="$REDIS_URL_OF_RUN" NOTIFICATIONS_URL="http://127.0.0.1:$NOTIFICATIONS_PORT" ;;
	notifications)
		launch notifications "$BIN_DIR/notifications" "$NOTIFICATIONS_PORT" "${trace[@]}" "${ids[@]}" \
			REDIS_URL="$REDIS_URL_OF_RUN" ;;
	# One url-shortener binary runs four times in Phase 3: API v1 as two
	# instances the gateways balance between (url-shortener-b the second),
	# API v2 and v2's canary, all sharing the data Redis: a link made
	# through one expands through any other.
	url-shortener | url-shortener-b | url-shortener-v2 | url-shortener-v2-canary)
		local port=$URL_SHORTENER_PORT version=1
		[ "$phase" = 3 ] && ids=(INSTANCE_ID=url-shortener-v1)
		case $name in
		url-shortener-b) port=$URL_SHORTENER_B_PORT ids=(INSTANCE_ID=url-shortener-v1-b) ;;
		url-shortener-v2) port=$URL_SHORTENER_V2_PORT version=2 ids=(INSTANCE_ID="$name") ;;
		url-shortener-v2-canary) port=$URL_SHORTENER_V2_CANARY_PORT version=2 ids=(INSTANCE_ID="$name") ;;
		esac
		[ "$phase" = 3 ] && ids+=(API_VERSION="$version")
		launch "$name" "$BIN_DIR/url-shortener" "$port" "${trace[@]}" "${ids[@]}" \
			REDIS_URL="$REDIS_URL_OF_RUN" PUBLIC_BASE_URL="$url" \
			ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" ;;
	# The gateway counts rate limits in the same Redis (keys "rl:..."); its
	# upstream URLs follow the ports above.
	gateway)
		launch gateway "$BIN_DIR/gateway" "$GATEWAY_PORT" \
			GATEWAY_CONFIG="${GATEWAY_CONFIG:-$KIT_ROOT/phase2-gateway/gateway.json}" \
			REDIS_URL="$REDIS_URL_OF_RUN" JWT_SECRET="${KIT_JWT_SECRET:?}" \
			USERS_URL="http://127.0.0.1:$USERS_PORT" \
			URL_SHORTENER_URL="http://127.0.0.1:$URL_SHORTENER_PORT" \
			ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" \
			NOTIFICATIONS_URL="http://127.0.0.1:$NOTIFICATIONS_PORT" ;;
	# Three identical gateways: only the port and INSTANCE_ID differ. They
	# count rate limits in the one Redis, and believe X-Forwarded-For from
	# nginx (127.0.0.1) only, so per-IP limits see the client, not nginx.
	api-gateway-[123])
		launch "$name" "$BIN_DIR/gateway-advanced" "$(process_ports "$name" | cut -d' ' -f2)" \
			"${trace[@]}" "${ids[@]}" TRUSTED_PROXIES=127.0.0.1 \
			GATEWAY_CONFIG="${GATEWAY_CONFIG:-$KIT_ROOT/phase3-advanced/gateway.json}" \
			REDIS_URL="$REDIS_URL_OF_RUN" JWT_SECRET="${KIT_JWT_SECRET:?}" \
			USERS_URL="http://127.0.0.1:$USERS_PORT" \
			ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT" \
			NOTIFICATIONS_URL="http://127.0.0.1:$NOTIFICATIONS_PORT" \
			URL_SHORTENER_V1_URL="http://127.0.0.1:$URL_SHORTENER_PORT,http://127.0.0.1:$URL_SHORTENER_B_PORT" \
			URL_SHORTENER_V2_URL="http://127.0.0.1:$URL_SHORTENER_V2_PORT" \
			URL_SHORTENER_V2_CANARY_URL="http://127.0.0.1:$URL_SHORTENER_V2_CANARY_PORT" ;;
	*)
		echo "no process '$name' in Phase $phase (it has: $(phase_processes "$phase"))" >&2
		return 1 ;;
	esac
}

# start_redis: redis-server on 127.0.0.1:REDIS_PORT, append-only
# persistence in RUN_DIR/redis/ (so links survive a restart).
start_redis() {
	mkdir -p "$RUN_DIR/redis"
	nohup redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
		--appendonly yes --appendfsync everysec \
		--dir "$RUN_DIR/redis" --daemonize no \
		>>"$RUN_DIR/redis.log" 2>&1 </dev/null &
	printf '%s\n%s\n' "$!" redis-server >"$RUN_DIR/redis.pid"
}

# start_sink (Phase 3): tests/jaeger_sink.py on the ports a Jaeger agent
# (Thrift over UDP: binary and compact) and collector (HTTP) would use,
# writing each span it decodes as one JSON line to RUN_DIR/traces.jsonl.
# When UDP JAEGER_AGENT_PORT is taken, a Jaeger agent (such as the compose
# profile's all-in-one) is assumed to be there: no sink, no pid file.
start_sink() {
	local port
	if udp_in_use "$JAEGER_AGENT_PORT"; then
		return 0
	fi
	for port in "$SINK_UDP_COMPACT_PORT" "$SINK_HTTP_PORT"; do
		if udp_in_use "$port" || tcp_in_use "$port"; then
			echo "port $port, the trace sink's, is in use (SINK_UDP_COMPACT_PORT, SINK_HTTP_PORT)" >&2
			return 1
		fi
	done
	rm -f "$RUN_DIR/jaeger-sink.ready"
	nohup python3 "$KIT_ROOT/tests/jaeger_sink.py" --udp-binary "$JAEGER_AGENT_PORT" \
		--udp-compact "$SINK_UDP_COMPACT_PORT" --http "$SINK_HTTP_PORT" \
		--out "$RUN_DIR/traces.jsonl" --ready-file "$RUN_DIR/jaeger-sink.ready" \
		>>"$RUN_DIR/jaeger-sink.log" 2>&1 </dev/null &
	printf '%s\n%s\n' "$!" jaeger_sink.py >"$RUN_DIR/jaeger-sink.pid"
}

# start_nginx (Phase 3): writes RUN_DIR/nginx/nginx.conf for the three
# gateways (scripts/nginx-native-conf.sh) and runs Debian's nginx on it as
# this user, in the foreground (so the pid is the master's).
start_nginx() {
	local prefix="$RUN_DIR/nginx"
	if ! command -v nginx >/dev/null; then
		echo "nginx is missing: scripts/deps.sh phase3 installs nginx-light" >&2
		return 1
	fi
	bash "$KIT_ROOT/scripts/nginx-native-conf.sh" "$prefix" "$NGINX_PORT" \
		"${GATEWAY3_PORT_LIST[@]}" >/dev/null || return 1
	nohup nginx -p "$prefix" -c nginx.conf -e logs/error.log -g 'daemon off;' \
		>>"$RUN_DIR/nginx.log" 2>&1 </dev/null &
	printf '%s\n%s\n' "$!" "nginx: master process" >"$RUN_DIR/nginx.pid"
}

# start_prometheus PHASE (Phases 2 and 3): Debian's prometheus on
# 127.0.0.1:PROMETHEUS_PORT, scraping every gateway and service of the phase
# directly, each under its own name (not through nginx, where /metrics
# would be whichever gateway answered), with monitoring/rules.yml. Its
# config is written to RUN_DIR/prometheus/prometheus.yml
# (scripts/prometheus-native-conf.sh), its data kept in
# RUN_DIR/prometheus/data for a day.
start_prometheus() {
	local dir="$RUN_DIR/prometheus" targets=() name
	if ! command -v prometheus >/dev/null; then
		echo "prometheus is missing: scripts/deps.sh phase$1 installs it" >&2
		return 1
	fi
	for name in $(phase_processes "$1"); do
		case $name in redis | nginx | jaeger-sink | prometheus) continue ;; esac
		targets+=("$name=$(process_ports "$name" | awk '$1 == "tcp" { print $2; exit }')")
	done
	mkdir -p "$dir/data"
	bash "$KIT_ROOT/scripts/prometheus-native-conf.sh" "$dir/prometheus.yml" \
		"$KIT_ROOT/monitoring/rules.yml" "${targets[@]}" || return 1
	nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
		>>"$RUN_DIR/prometheus.log" 2>&1 </dev/null &
	printf '%s\n%s\n' "$!" prometheus >"$RUN_DIR/prometheus.pid"
}

# wait_ready NAME: polls until NAME answers (redis-cli PING; GET /health;
# nginx's /nginx-health and a gateway's /health through it; the sink's
# ready file). Returns 0 when it does; 1 when NAME exits or does not answer
# in time (the end of its log is printed); 2 when the trace sink exits
# because it cannot run here (exit 77: no python3-thrift, thrift-compiler
# or Jaeger's IDL; 127: no python3).
wait_ready() {
	local name=$1 pid port status
	[ -f "$RUN_DIR/$name.pid" ] || return 0 # the sink, when an agent is there
	pid=$(sed -n 1p "$RUN_DIR/$name.pid")
	port=$(process_ports "$name" | awk '$1 == "tcp" { print $2; exit }')
	for _ in $(seq 1 "$POLL_TRIES"); do
		if ! pid_alive "$pid"; then
			status=0
			wait "$pid" 2>/dev/null || status=$?
			rm -f "$RUN_DIR/$name.pid"
			if [ "$name" = jaeger-sink ] && [[ $status == @(77|127) ]]; then
				return 2
			fi
			echo "$name exited (status $status); the end of $RUN_SHOWN/$name.log:" >&2
			tail -n 15 "$RUN_DIR/$name.log" 2>/dev/null | sed 's/^/  /' >&2
			return 1
		fi
		case $name in
		redis) [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0 ;;
		jaeger-sink) [ -s "$RUN_DIR/jaeger-sink.ready" ] && return 0 ;;
		nginx) http_ok "$port" /nginx-health && http_ok "$port" /health && return 0 ;;
		prometheus) http_ok "$port" /-/ready && return 0 ;;
		*) http_ok "$port" /health && return 0 ;;
		esac
		sleep "$POLL_INTERVAL"
	done
	echo "$name (pid $pid) did not get ready in $(awk -v n="$POLL_TRIES" -v s="$POLL_INTERVAL" \
		'BEGIN { print n * s }') s; see $RUN_SHOWN/$name.log" >&2
	return 1
}

# http_ok PORT PATH: GET http://127.0.0.1:PORT/PATH answers 200.
http_ok() {
	[ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://127.0.0.1:$1$2" || true)" = 200 ]
}

# ---------------------------------------------------------------------------
# Stopping
# ---------------------------------------------------------------------------

# stop_pid_files FILE...: stops the processes those files name, together:
# SIGTERM (and SIGCONT, for one paused with SIGSTOP: service.sh pause), a
# poll until all are gone, SIGKILL for any still there after 10 s. Removes
# each file once its process is gone, and a file whose process is already
# gone or whose pid now runs another program. civetweb can take up to 2 s
# to stop, so stopping servers together saves seconds. Returns 1 when one
# is still there after SIGKILL.
stop_pid_files() {
	local file pid name status=0 any
	declare -A pids=()
	for file in "$@"; do
		[ -f "$file" ] || continue
		name=$(basename "$file" .pid)
		if ! pid=$(pid_file_check "$file" 2>&1); then
			echo "$name: $pid; removing $(basename "$file")"
			rm -f "$file"
			continue
		fi
		kill -TERM "$pid" 2>/dev/null || true
		kill -CONT "$pid" 2>/dev/null || true
		pids[$file]=$pid
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
	for file in "${!pids[@]}"; do
		pid=${pids[$file]}
		name=$(basename "$file" .pid)
		if pid_alive "$pid"; then
			echo "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for _ in $(seq 1 "$POLL_TRIES"); do
				pid_alive "$pid" || break
				sleep "$POLL_INTERVAL"
			done
		fi
		if pid_alive "$pid"; then
			echo "$name (pid $pid) is still there" >&2
			status=1
			continue
		fi
		echo "stopped $name (pid $pid)"
		rm -f "$file"
	done
	return $status
}
