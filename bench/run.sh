#!/usr/bin/env bash
# bench/run.sh - what each architecture of the kit costs, measured side by
# side with nginx and with the guide's Express gateway.
#
#   bash bench/run.sh [--duration S] [--connections N] [--repeat N]
#                     [--scenarios a,b,c] [--smoke] [--out DIR]
#
#   --duration S      seconds of load per measurement (8)
#   --connections N   keep-alive connections wrk holds open (50)
#   --repeat N        repetitions; scenarios run interleaved, A B C A B C (3)
#   --scenarios LIST  a comma-separated subset of the names below (all)
#   --smoke           1 s per scenario, 1 repetition, 4 connections: checks
#                     that the harness still works (tests/run.sh runs it);
#                     the report goes to a temporary directory unless --out
#   --out DIR         where results.md, results.csv and results.png go
#                     (bench/; in smoke mode a temporary directory)
#
# `make bench` builds everything and runs this with the defaults; it takes
# about eight minutes on the 2-core machine the kit is developed on.
# BENCH_LOOP_THREADS=N gives the kit's event-loop gateways N loop threads
# and nginx-proxy N workers (default: one per core).
#
# Every scenario ends at the same upstream: nginx answering every request
# with 200 {"ok":true} from memory (bench/nginx/upstream.conf), so what a
# scenario measures is whatever sits between wrk and that upstream:
#
#   direct            wrk -> upstream (the floor)
#   nginx-proxy       wrk -> nginx reverse proxy, keep-alive pool -> upstream
#   gateway-bare      wrk -> bench-gateway-bare (proxy only, no middleware)
#   gateway-pipeline  wrk -> build/bin/gateway, the whole Phase 2 chain: JWT
#                     verified, rate limit counted in Redis (limit too high
#                     to trip), metrics, access log to a file, pooled proxy
#   gateway-threads   the same on civetweb's thread per connection
#                     (SERVER_CORE=threads) instead of the event loop
#   gateway-nopool    the same, the pool off: "max_idle_per_upstream": 0
#   express           wrk -> the guide's Express gateway (bench/express)
#   monolith-expand   wrk -> Phase 1 monolith, GET /expand/<code> (Redis)
#   gateway-expand    wrk -> gateway GET /api/v1/expand/<code> -> the
#                     url-shortener service -> Redis
#   phase3-x3         wrk -> nginx load balancer -> 3 x gateway-advanced
#   phase3-x1         wrk -> nginx load balancer -> 1 x gateway-advanced
# and, once at the end, gateway-pipeline with 200 connections (its memory).
#
# What is measured, per scenario and repetition:
#   req/s, p50, p99   wrk -t1 -c N -d S --latency. One wrk thread: it drives
#                     far more than any scenario here serves, and a second
#                     thread would only take CPU from the processes under
#                     test on a 2-core machine.
#   +latency @1 conn  a separate wrk -t1 -c1 run, wrk and the scenario's
#                     processes on one core (see run_wrk_one_core): its p50
#                     minus direct's (median over the repetitions): what the
#                     hop and its work add
#   CPU us/request    utime+stime of the process(es) under test, from
#                     /proc/<pid>/stat before and after the load run,
#                     divided by the requests served; "+ other" is the same
#                     for what they need besides the upstream (Redis, a
#                     service, a load balancer), named in the report
#   peak RSS          VmHWM from /proc/<pid>/status (summed over processes)
# Each process is started once, its readiness polled (never slept on), and
# every one is stopped by pid at the end, also on failure or Ctrl-C
# (tests/lib.sh's exit trap). Only 127.0.0.1 is ever contacted.
#
# Scenarios whose parts are missing (gateway-advanced not built yet, a pool
# of 0 refused by an older gateway, npm unable to install Express) are
# reported "not available" and the run goes on; a scenario that fails in
# any other way is an error, and the exit code is then 1. The last line is
# "1 passed, 0 failed" or "0 passed, 1 failed", for tests/run.sh.
#
# Needs: wrk, nginx (nginx-light), redis-server, curl, jq, openssl, procps,
# taskset (util-linux), gnuplot (the chart), node and npm (Express only).
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------
usage() {
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

DURATION=""
CONNECTIONS=""
REPEAT=""
SCENARIO_LIST=""
SMOKE=0
OUT_DIR=""
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=${2:-}; shift 2 || usage ;;
	--connections) CONNECTIONS=${2:-}; shift 2 || usage ;;
	--repeat) REPEAT=${2:-}; shift 2 || usage ;;
	--scenarios) SCENARIO_LIST=${2:-}; shift 2 || usage ;;
	--out) OUT_DIR=${2:-}; shift 2 || usage ;;
	--smoke) SMOKE=1; shift ;;
	-h | --help) usage ;;
	*) echo "run.sh: unknown option '$1'" >&2; usage ;;
	esac
done

# Smoke defaults are small; explicit flags win in either mode.
if [ "$SMOKE" = 1 ]; then
	DURATION=${DURATION:-1}
	CONNECTIONS=${CONNECTIONS:-4}
	REPEAT=${REPEAT:-1}
	C1_DURATION=1   # the 1-connection latency run
	WARMUP=0        # seconds of unrecorded load before the first repetition
else
	DURATION=${DURATION:-8}
	CONNECTIONS=${CONNECTIONS:-50}
	REPEAT=${REPEAT:-3}
	C1_DURATION=2
	WARMUP=1
fi
RSS_CONNECTIONS=200 # the memory check: pipeline gateway at 200 connections

for pair in "duration:$DURATION" "connections:$CONNECTIONS" "repeat:$REPEAT"; do
	if [[ ! ${pair#*:} =~ ^[1-9][0-9]{0,4}$ ]]; then
		echo "run.sh: --${pair%%:*} must be a positive integer, got '${pair#*:}'" >&2
		exit 2
	fi
done
# A kit server takes at most 1024 worker threads, one per connection.
if [ "$CONNECTIONS" -gt 1000 ]; then
	echo "run.sh: --connections: at most 1000 (civetweb needs a thread per connection)" >&2
	exit 2
fi

ALL_SCENARIOS=(direct nginx-proxy gateway-bare gateway-pipeline gateway-threads gateway-nopool express
	monolith-expand gateway-expand phase3-x3 phase3-x1)
SCENARIOS=()
if [ -z "$SCENARIO_LIST" ]; then
	SCENARIOS=("${ALL_SCENARIOS[@]}")
else
	IFS=, read -r -a wanted <<<"$SCENARIO_LIST"
	for name in "${wanted[@]}"; do
		if [[ " ${ALL_SCENARIOS[*]} " != *" $name "* ]]; then
			echo "run.sh: unknown scenario '$name'; known: ${ALL_SCENARIOS[*]}" >&2
			exit 2
		fi
		SCENARIOS+=("$name")
	done
fi

# selected NAME: the scenario is part of this run.
selected() {
	[[ " ${SCENARIOS[*]} " == *" $1 "* ]]
}

# The process helpers (start_service, wait_for_http, stop_pids, free_port,
# make_token) and the exit trap that stops everything by pid. Scratch
# files go to its $TEST_DIR, removed at the end unless the run failed (or
# KEEP_LOGS=1).
# shellcheck source=tests/lib.sh
source "$ROOT/tests/lib.sh"
WORK=$TEST_DIR

if [ -z "$OUT_DIR" ]; then
	if [ "$SMOKE" = 1 ]; then OUT_DIR="$WORK/report"; else OUT_DIR="$ROOT/bench"; fi
fi
mkdir -p "$OUT_DIR" || exit 1
OUT_DIR=$(cd "$OUT_DIR" && pwd)

for tool in wrk nginx redis-server redis-cli curl jq openssl ps taskset; do
	if ! command -v "$tool" >/dev/null; then
		echo "run.sh: $tool is missing (make deps installs it)" >&2
		exit 1
	fi
done

BIN_DIR=${BIN_DIR:-$ROOT/build/bin}
NGINX=$(command -v nginx)
CLOCK_TICKS=$(getconf CLK_TCK)

# civetweb spends one worker thread on every open connection, so every kit
# server on it (the services, the monolith, gateway-threads) gets more
# threads than wrk opens connections; the services behind the gateway get
# more than the gateway's whole pool to them. (The event-loop gateways
# ignore WORKER_THREADS.)
GATEWAY_THREADS=$((CONNECTIONS + 16 > 64 ? CONNECTIONS + 16 : 64))
SERVICE_THREADS=$((GATEWAY_THREADS + 32))
SECRET="bench-secret-0123456789abcdef-0123456789abcdef"
HIGH_LIMIT=100000000 # the most RATE_LIMIT_* accepts; never reached here

# ---------------------------------------------------------------------------
# Bookkeeping: what each scenario is, and what happened to it
# ---------------------------------------------------------------------------
declare -A TITLE=(
	[direct]="upstream alone (direct)"
	[nginx-proxy]="nginx reverse proxy, keep-alive pool"
	[gateway-bare]="Phase 2 gateway, proxy only"
	[gateway-pipeline]="Phase 2 gateway, whole pipeline"
	[gateway-threads]="the same on civetweb's threads (SERVER_CORE=threads)"
	[gateway-nopool]="Phase 2 gateway, pipeline, no pool"
	[express]="guide's Express gateway (JWT + proxy)"
	[monolith-expand]="Phase 1 monolith, GET /expand/:code"
	[gateway-expand]="Phase 2 gateway -> url-shortener, /api/v1/expand/:code"
	[phase3-x3]="Phase 3: nginx -> 3 x gateway-advanced"
	[phase3-x1]="Phase 3: nginx -> 1 x gateway-advanced"
	[gateway-pipeline-c200]="Phase 2 gateway, whole pipeline, $RSS_CONNECTIONS connections"
)
# What the CPU columns count for each scenario.
declare -A SUBJECT_NAME=(
	[direct]="upstream nginx worker" [nginx-proxy]="proxy nginx worker"
	[gateway-bare]="gateway" [gateway-pipeline]="gateway" [gateway-nopool]="gateway"
	[gateway-threads]="gateway"
	[express]="node" [monolith-expand]="monolith" [gateway-expand]="gateway"
	[phase3-x3]="3 gateways" [phase3-x1]="1 gateway" [gateway-pipeline-c200]="gateway"
)
declare -A OTHER_NAME=(
	[gateway-pipeline]="Redis" [gateway-nopool]="Redis" [monolith-expand]="Redis"
	[gateway-threads]="Redis"
	[gateway-expand]="url-shortener + Redis" [phase3-x3]="nginx LB + Redis"
	[phase3-x1]="nginx LB + Redis" [gateway-pipeline-c200]="Redis"
)
declare -A STATUS=()       # ready | unavailable | error
declare -A REASON=()       # why not ready
declare -A URL=()          # what wrk loads
declare -A EXPECT=()       # a jq test the answer to URL must pass
declare -A SUBJECT_PIDS=() # processes under test (space-separated)
declare -A OTHER_PIDS=()   # the helpers they need
declare -A WRK_THREADS=()  # wrk threads when not 1 (the -t2 rows)
for name in "${SCENARIOS[@]}"; do
	STATUS[$name]=pending
done

RAW="$WORK/raw.tsv" # one line per measurement; the report is made from it
: >"$RAW"

# unavailable NAME REASON / broken NAME REASON: a scenario that cannot run
# here (skipped, reported) or that failed (an error: the run fails).
unavailable() {
	STATUS[$1]=unavailable
	REASON[$1]=$2
	echo "  $1: not available: $2"
}
broken() {
	STATUS[$1]=error
	REASON[$1]=$2
	echo "  $1: ERROR: $2" >&2
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


# start_bench_redis PORT: a redis-server without persistence (the rate-limit
# counters and the services' data; nothing here needs to survive), ready
# when it answers PING. Sets REDIS_PID.
start_bench_redis() {
	local port=$1
	start_program "redis-server:$port" "$WORK/redis" redis-server --port "$port" \
		--bind 127.0.0.1 --save '' --appendonly no --daemonize no
	REDIS_PID=$SERVER_PID
	for _ in $(seq 1 "$POLL_TRIES"); do
		pid_alive "$REDIS_PID" || return 1
		[ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] && return 0
		sleep "$POLL_INTERVAL"
	done
	return 1
}

# start_bench_nginx NAME TEMPLATE PORT READY_PATH [@KEY@=VALUE...]: an nginx
# of our own from one of bench/nginx/*.conf, in a prefix directory of its
# own, in the foreground (daemon off) so the exit trap can stop it by pid.
# Ready when GET READY_PATH answers 200. Sets NGINX_PID (the master) and
# NGINX_WORKERS (its worker processes: what the CPU and RSS columns count).
start_bench_nginx() {
	local name=$1 template=$2 port=$3 ready_path=$4 dir="$WORK/nginx-$1" user_line="" pair
	shift 4
	mkdir -p "$dir"
	# As root, nginx would hand its worker to "nobody"; keep it the caller.
	if [ "$(id -u)" = 0 ]; then
		user_line="user $(id -un) $(id -gn);"
	fi
	sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@USER@|$user_line|" \
		"$ROOT/bench/nginx/$template" >"$dir/nginx.conf"
	for pair in "$@"; do
		# @SERVERS@ may hold several lines: let awk do that substitution.
		awk -v key="${pair%%=*}" -v value="${pair#*=}" \
			'{ i = index($0, key); if (i) $0 = substr($0, 1, i - 1) value substr($0, i + length(key)); print }' \
			"$dir/nginx.conf" >"$dir/nginx.conf.new" && mv "$dir/nginx.conf.new" "$dir/nginx.conf"
	done
	start_program "nginx-$name:$port" "$dir/nginx" "$NGINX" -p "$dir" -e "$dir/error.log" \
		-c "$dir/nginx.conf" -g 'daemon off;'
	NGINX_PID=$SERVER_PID
	if ! wait_for_http "http://127.0.0.1:$port$ready_path" "$NGINX_PID"; then
		tail -n 5 "$dir/error.log" "$dir/nginx.err" 2>/dev/null | sed 's/^/#   /' >&2
		return 1
	fi
	NGINX_WORKERS=$(ps -o pid= --ppid "$NGINX_PID" | tr -s ' \n' ' ')
	NGINX_WORKERS=${NGINX_WORKERS# }
	NGINX_WORKERS=${NGINX_WORKERS% }
	[ -n "$NGINX_WORKERS" ]
}

# The environment every kit gateway here gets: limits too high to trip,
# Redis for the counters (database 0), the access log on (stdout, which
# start_service sends to a file), metrics always on.
gateway_env() {
	if [ -n "$REDIS_PORT" ]; then
		echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
	fi
	printf '%s\n' \
		"JWT_SECRET=$SECRET" \
		"WORKER_THREADS=$GATEWAY_THREADS" \
		"LOOP_THREADS=$LOOP_THREADS" \
		"ACCESS_LOG=on" \
		"RATE_LIMIT_WINDOW_SECONDS=60" \
		"RATE_LIMIT_ANONYMOUS=$HIGH_LIMIT" \
		"RATE_LIMIT_FREE=$HIGH_LIMIT" \
		"RATE_LIMIT_PREMIUM=$HIGH_LIMIT" \
		"BENCH_UPSTREAM_URL=http://127.0.0.1:$UPSTREAM_PORT"
}

# start_kit NAME BINARY PORT [VAR=VALUE...]: start_service with the gateway
# environment (later VAR=VALUE win). Sets SERVICE_PID.
start_kit() {
	local name=$1 binary=$2 port=$3 env_lines=()
	shift 3
	mapfile -t env_lines < <(gateway_env)
	start_service "$name" "$binary" "$WORK/$name-$port" "$port" "${env_lines[@]}" "$@"
}

# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

# cpu_ticks PID...: utime + stime of the processes, all threads, in clock
# ticks (fields 14 and 15 of /proc/<pid>/stat; the name in parentheses is
# cut off first, as it may hold spaces).
cpu_ticks() {
	local total=0 pid stat fields
	for pid in "$@"; do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		read -r -a fields <<<"${stat##*) }"
		total=$((total + fields[11] + fields[12]))
	done
	echo "$total"
}

# machine_busy_ticks: CPU time the whole machine spent busy (every core,
# every process, the kernel), from the first line of /proc/stat.
machine_busy_ticks() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# children_ticks: CPU time of this shell's finished children (wrk, run
# under timeout, is one of them once waited for): cutime + cstime.
children_ticks() {
	local stat fields
	stat=$(cat "/proc/$$/stat")
	read -r -a fields <<<"${stat##*) }"
	echo $((fields[13] + fields[14]))
}

# peak_rss_kb PID...: the sum of the processes' VmHWM (peak resident set).
peak_rss_kb() {
	local pid total=0 kb
	for pid in "$@"; do
		kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
		total=$((total + ${kb:-0}))
	done
	echo "$total"
}

# run_wrk CONNECTIONS SECONDS URL OUTPUT [THREADS]: one wrk run, bounded by
# timeout; THREADS wrk threads (1).
run_wrk() {
	timeout $(($2 + 30)) wrk -t"${5:-1}" -c"$1" -d"${2}s" --latency \
		-H "Authorization: Bearer $TOKEN" "$3" >"$4" 2>&1
}

# The latency at 1 connection is measured with wrk and every process of the
# scenario on one core. Left to the scheduler, each hop lands on either
# core at random, and on this kind of virtual machine waking a process on
# the other core costs about 20 us (measured: direct's p50 is 18 us on one
# core, 58 us across two), which would drown what a hop itself adds.
ALL_CPUS=$(taskset -c -p $$ | sed 's/.*: *//')
LATENCY_CPU=${ALL_CPUS%%[,-]*}

# set_affinity CPU_LIST PID...: every thread of the processes to CPU_LIST.
set_affinity() {
	local cpus=$1 pid
	shift
	for pid in "$@"; do
		taskset -a -c -p "$cpus" "$pid" >/dev/null 2>&1 || true
	done
}

# run_wrk_one_core PID_LIST URL OUTPUT: wrk -c1 for $C1_DURATION seconds
# with wrk and the processes on $LATENCY_CPU; then they get every core back.
run_wrk_one_core() {
	local pids
	read -r -a pids <<<"$1"
	set_affinity "$LATENCY_CPU" "${pids[@]}"
	timeout $((C1_DURATION + 30)) taskset -c "$LATENCY_CPU" wrk -t1 -c1 -d"${C1_DURATION}s" \
		--latency -H "Authorization: Bearer $TOKEN" "$2" >"$3" 2>&1
	set_affinity "$ALL_CPUS" "${pids[@]}"
}

# parse_wrk OUTPUT: prints "requests req/s p50_us p99_us non2xx errors" from
# wrk's report (its latency distribution gives p50 and p99, in us/ms/s).
parse_wrk() {
	awk '
		function us(v) {
			if (v ~ /us$/) return v + 0
			if (v ~ /ms$/) return v * 1000
			if (v ~ /m$/) return v * 60e6
			if (v ~ /s$/) return v * 1e6
			return -1
		}
		/^ +50%/ { p50 = us($2) }
		/^ +99%/ { p99 = us($2) }
		/ requests in / { requests = $1 }
		/^Requests\/sec:/ { rps = $2 }
		/^ +Non-2xx or 3xx responses:/ { non2xx = $NF }
		/^ +Socket errors:/ { gsub(",", ""); errors = $4 + $6 + $8 + $10 }
		END {
			if (requests == "" || rps == "") exit 1
			printf "%d %.1f %.0f %.0f %d %d\n", requests, rps, p50, p99, non2xx, errors
		}' "$1"
}

# check_answer NAME: one request to the scenario's URL must answer 200 with
# the body it should, before any load is measured.
check_answer() {
	local name=$1 body status
	body=$(curl --silent --max-time 5 --write-out '\n%{http_code}' \
		-H "Authorization: Bearer $TOKEN" "${URL[$name]}" 2>&1)
	status=${body##*$'\n'}
	body=${body%$'\n'*}
	if [ "$status" != 200 ] || ! jq -e "${EXPECT[$name]}" <<<"$body" >/dev/null 2>&1; then
		broken "$name" "GET ${URL[$name]} answered $status: ${body:0:200}"
		return 1
	fi
}

# measure NAME REP CONNECTIONS SECONDS: the load run, the 1-connection run,
# CPU and memory; appends one line to $RAW. On a wrk failure, an error
# answer or socket errors above 1% the scenario becomes an error.
measure() {
	local name=$1 rep=$2 connections=$3 seconds=$4 out="$WORK/wrk-$1-$2"
	local subject other upstream=() pid cpu_before other_before cpu_after other_after
	local numbers c1 rss requests rps p50 p99 non2xx errors c1_p50 cpu_us other_us
	local busy_before busy_after upstream_before upstream_after wrk_before wrk_after
	local started_us elapsed_us foreign machine_us
	read -r -a subject <<<"${SUBJECT_PIDS[$name]}"
	read -r -a other <<<"${OTHER_PIDS[$name]:-}"
	# The upstream's worker, unless it is the subject (direct) already.
	for pid in $UPSTREAM_WORKERS; do
		[[ " ${subject[*]} " == *" $pid "* ]] || upstream+=("$pid")
	done

	check_answer "$name" || return 1
	busy_before=$(machine_busy_ticks)
	wrk_before=$(children_ticks)
	upstream_before=$(cpu_ticks "${upstream[@]}")
	cpu_before=$(cpu_ticks "${subject[@]}")
	other_before=$(cpu_ticks "${other[@]}")
	started_us=${EPOCHREALTIME/[.,]/}
	run_wrk "$connections" "$seconds" "${URL[$name]}" "$out.txt" "${WRK_THREADS[$name]:-1}"
	elapsed_us=$((${EPOCHREALTIME/[.,]/} - started_us))
	cpu_after=$(cpu_ticks "${subject[@]}")
	other_after=$(cpu_ticks "${other[@]}")
	upstream_after=$(cpu_ticks "${upstream[@]}")
	wrk_after=$(children_ticks)
	busy_after=$(machine_busy_ticks)
	# What the rest of the machine (processes that are no part of this
	# measurement) took meanwhile, in % of all cores: the run's noise.
	foreign=$(awk -v busy=$((busy_after - busy_before)) \
		-v ours=$((cpu_after - cpu_before + other_after - other_before + upstream_after - upstream_before + wrk_after - wrk_before)) \
		-v us="$elapsed_us" -v hz="$CLOCK_TICKS" -v cores="$CORES" \
		'BEGIN { f = (busy - ours) / hz / (us / 1e6 * cores) * 100; if (f < 0) f = 0; printf "%.1f", f }')
	if ! numbers=$(parse_wrk "$out.txt"); then
		broken "$name" "wrk failed: $(tr '\n' ' ' <"$out.txt" | cut -c1-200)"
		return 1
	fi
	read -r requests rps p50 p99 non2xx errors <<<"$numbers"
	if [ "$requests" -eq 0 ] || [ "$non2xx" -gt 0 ] || [ $((errors * 100)) -gt "$requests" ]; then
		broken "$name" "$requests requests, $non2xx non-2xx answers, $errors socket errors (rep $rep)"
		return 1
	fi

	# Latency with one connection: nothing queues, so p50 is the hop itself.
	run_wrk_one_core "${subject[*]} ${other[*]} ${upstream[*]}" "${URL[$name]}" "$out-c1.txt"
	if ! c1=$(parse_wrk "$out-c1.txt"); then
		broken "$name" "wrk -c1 failed: $(tr '\n' ' ' <"$out-c1.txt" | cut -c1-200)"
		return 1
	fi
	read -r _ _ c1_p50 _ _ _ <<<"$c1"

	rss=$(peak_rss_kb "${subject[@]}")
	cpu_us=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$CLOCK_TICKS" -v n="$requests" \
		'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
	other_us=""
	if [ ${#other[@]} -gt 0 ]; then
		other_us=$(awk -v t=$((other_after - other_before)) -v hz="$CLOCK_TICKS" -v n="$requests" \
			'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
	fi
	# The whole machine's busy CPU per request: wrk, the upstream and every
	# process of the scenario, the kernel's work for all of them included.
	# On loopback a sender does much of its receiver's TCP work in its own
	# context, so how the CPU splits between processes depends on who runs
	# where; the machine's total does not.
	machine_us=$(awk -v t=$((busy_after - busy_before)) -v hz="$CLOCK_TICKS" -v n="$requests" \
		'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$name" "$rep" "$connections" "$seconds" "$requests" "$rps" "$p50" "$p99" \
		"$c1_p50" "$cpu_us" "${other_us:--}" "$rss" "$non2xx" "$errors" "$foreign" \
		"$machine_us" >>"$RAW"
	printf '      %6.0f req/s  p50 %5.2f ms  p99 %6.2f ms  @1 conn %4d us  CPU %6.1f us/req  RSS %5.1f MB  other load %4.1f%%\n' \
		"$rps" "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" \
		"$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" "$c1_p50" "$cpu_us" \
		"$(awk -v v="$rss" 'BEGIN { print v / 1024 }')" "$foreign"
}

# ---------------------------------------------------------------------------
# The run's identity: every row of the report carries it
# ---------------------------------------------------------------------------
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
CPU_MODEL=${CPU_MODEL:-unknown CPU}
CORES=$(nproc)
# The kit's event-loop gateways get one loop thread per core, and the nginx
# they are compared with (nginx-proxy) as many worker processes.
LOOP_THREADS=${BENCH_LOOP_THREADS:-$CORES}
KERNEL=$(uname -r)
HOST=$(hostname 2>/dev/null || echo unknown)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# "+changes": the code differs from the commit (the previous report, which
# this run replaces, does not count).
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- . ':!bench/results.*' 2>/dev/null)" ]; then
	COMMIT="$COMMIT+changes"
fi
RUN_ID="$(date -u +%Y%m%dT%H%MZ)-$COMMIT"
MACHINE="${CORES}x $CPU_MODEL"

echo "# bench: run $RUN_ID on $MACHINE, Linux $KERNEL"
echo "# bench: ${#SCENARIOS[@]} scenarios x $REPEAT repetitions, $DURATION s each at" \
	"$CONNECTIONS connections (+ $C1_DURATION s at 1 connection)$([ "$SMOKE" = 1 ] && echo ', smoke')"
echo "# bench: scratch directory $WORK"
RUN_START_S=$SECONDS

# ---------------------------------------------------------------------------
# 1. Start everything the selected scenarios need
# ---------------------------------------------------------------------------
echo "# starting"
NOW=$(date +%s)
TOKEN=$(make_token HS256 "$SECRET" \
	"$(jq -cn --argjson now "$NOW" '{sub: "bench", tier: "free", iat: $now, exp: ($now + 7200)}')")
FIXED_BODY='. == {"ok": true}'

# The fixed upstream: every scenario needs it.
UPSTREAM_PORT=$(free_port)
if ! start_bench_nginx upstream upstream.conf "$UPSTREAM_PORT" /; then
	echo "run.sh: the fixed-response upstream (nginx) did not start" >&2
	for name in "${SCENARIOS[@]}"; do broken "$name" "no upstream"; done
	fail "benchmark harness" "the upstream nginx did not start"
	finish
	exit 1
fi
UPSTREAM_WORKERS=$NGINX_WORKERS
echo "  upstream nginx on 127.0.0.1:$UPSTREAM_PORT (worker $UPSTREAM_WORKERS)"

if selected direct; then
	URL[direct]="http://127.0.0.1:$UPSTREAM_PORT/bench"
	EXPECT[direct]=$FIXED_BODY
	SUBJECT_PIDS[direct]=$UPSTREAM_WORKERS
	STATUS[direct]=ready
fi

if selected nginx-proxy; then
	port=$(free_port)
	if start_bench_nginx proxy proxy.conf "$port" / "@UPSTREAM_PORT@=$UPSTREAM_PORT" \
		"@WORKERS@=$LOOP_THREADS"; then
		URL[nginx-proxy]="http://127.0.0.1:$port/bench"
		EXPECT[nginx-proxy]=$FIXED_BODY
		SUBJECT_PIDS[nginx-proxy]=$NGINX_WORKERS
		STATUS[nginx-proxy]=ready
	else
		broken nginx-proxy "the reverse-proxy nginx did not start"
	fi
fi

# Redis: rate-limit counters in database 0, the services' data in 1, the
# monolith's in 2. Without persistence: nothing here must survive.
REDIS_PORT=""
REDIS_PID=""
for name in gateway-pipeline gateway-threads gateway-nopool monolith-expand gateway-expand phase3-x3 phase3-x1; do
	selected "$name" || continue
	REDIS_PORT=$(free_port)
	if start_bench_redis "$REDIS_PORT"; then
		echo "  redis-server on 127.0.0.1:$REDIS_PORT"
	else
		echo "run.sh: redis-server did not start: $(tail -n 3 "$WORK/redis.err" "$WORK/redis.out" 2>/dev/null)" >&2
		REDIS_PID=""
	fi
	break
done

# need_redis NAME: the scenario needs Redis; an error when it is not there.
need_redis() {
	[ -n "$REDIS_PID" ] && return 0
	broken "$1" "redis-server did not start"
	return 1
}

if selected gateway-bare; then
	port=$(free_port)
	if [ ! -x "$BIN_DIR/bench-gateway-bare" ]; then
		broken gateway-bare "$BIN_DIR/bench-gateway-bare is missing (make bench builds it)"
	elif start_kit gateway-bare "$BIN_DIR/bench-gateway-bare" "$port" \
		GATEWAY_CONFIG="$ROOT/bench/gateway.bench.json"; then
		URL[gateway-bare]="http://127.0.0.1:$port/bench"
		EXPECT[gateway-bare]=$FIXED_BODY
		SUBJECT_PIDS[gateway-bare]=$SERVICE_PID
		STATUS[gateway-bare]=ready
	else
		broken gateway-bare "bench-gateway-bare did not start (see above)"
	fi
fi

# start_pipeline NAME CONFIG [VAR=VALUE...]: build/bin/gateway with the
# whole chain on the fixed upstream; the pooling-off config may be refused
# by a gateway that does not know a pool of 0 yet: that is "not available".
start_pipeline() {
	local name=$1 config=$2 port
	shift 2
	port=$(free_port)
	need_redis "$name" || return 0
	if [ ! -x "$BIN_DIR/gateway" ]; then
		broken "$name" "$BIN_DIR/gateway is missing (run make)"
	elif start_kit "$name" "$BIN_DIR/gateway" "$port" GATEWAY_CONFIG="$config" "$@"; then
		URL[$name]="http://127.0.0.1:$port/bench"
		EXPECT[$name]=$FIXED_BODY
		SUBJECT_PIDS[$name]=$SERVICE_PID
		OTHER_PIDS[$name]=$REDIS_PID
		STATUS[$name]=ready
	elif grep -q 'max_idle_per_upstream' "$WORK/$name-$port.err" 2>/dev/null; then
		unavailable "$name" "this gateway refuses the config: $(grep -m1 'max_idle_per_upstream' "$WORK/$name-$port.err")"
	else
		broken "$name" "the gateway did not start (see above)"
	fi
}
selected gateway-pipeline && start_pipeline gateway-pipeline "$ROOT/bench/gateway.bench.json"
selected gateway-threads && start_pipeline gateway-threads "$ROOT/bench/gateway.bench.json" \
	SERVER_CORE=threads
selected gateway-nopool && start_pipeline gateway-nopool "$ROOT/bench/gateway.nopool.json"

# The guide's Express gateway: npm ci when its modules are missing.
if selected express; then
	express_dir="$ROOT/bench/express"
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		unavailable express "node and npm are not installed"
	elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
		unavailable express "node $(node --version) is older than 18"
	elif [ ! -d "$express_dir/node_modules" ] &&
		! (cd "$express_dir" && timeout 300 npm ci --no-audit --no-fund >"$WORK/npm.log" 2>&1); then
		unavailable express "npm ci failed: $(tail -n 2 "$WORK/npm.log" | tr '\n' ' ' | cut -c1-160)"
		rm -rf "$express_dir/node_modules"
	else
		port=$(free_port)
		start_program "express:$port" "$WORK/express" PORT="$port" JWT_SECRET="$SECRET" \
			UPSTREAM_URL="http://127.0.0.1:$UPSTREAM_PORT" node "$express_dir/server.js"
		if wait_for_http "http://127.0.0.1:$port/health" "$SERVER_PID"; then
			URL[express]="http://127.0.0.1:$port/bench"
			EXPECT[express]=$FIXED_BODY
			SUBJECT_PIDS[express]=$SERVER_PID
			STATUS[express]=ready
		else
			broken express "the Express gateway did not start: $(tail -n 3 "$WORK/express.err" | tr '\n' ' ')"
		fi
	fi
fi

# A real endpoint: the monolith's GET /expand/<code> against the gateway's
# GET /api/v1/expand/<code> through the url-shortener service. Each stores
# one link first (POST shorten, with the bench token), in its own database.
if selected monolith-expand && need_redis monolith-expand; then
	port=$(free_port)
	if [ ! -x "$BIN_DIR/monolith" ]; then
		broken monolith-expand "$BIN_DIR/monolith is missing (run make)"
	elif start_monolith "$BIN_DIR/monolith" "$WORK/monolith" "$port" \
		REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2" JWT_SECRET="$SECRET" \
		WORKER_THREADS="$GATEWAY_THREADS" ACCESS_LOG=on \
		RATE_LIMIT_ANONYMOUS="$HIGH_LIMIT" RATE_LIMIT_FREE="$HIGH_LIMIT" \
		RATE_LIMIT_PREMIUM="$HIGH_LIMIT" PUBLIC_BASE_URL="http://127.0.0.1:$port"; then
		code=$(curl --silent --max-time 5 -H "Authorization: Bearer $TOKEN" \
			-H 'Content-Type: application/json' \
			--data '{"url":"https://example.com/bench/monolith"}' \
			"http://127.0.0.1:$port/shorten" | jq -r '.code // empty' 2>/dev/null)
		if [ -n "$code" ]; then
			URL[monolith-expand]="http://127.0.0.1:$port/expand/$code"
			EXPECT[monolith-expand]=".code == \"$code\""
			SUBJECT_PIDS[monolith-expand]=$MONOLITH_PID
			OTHER_PIDS[monolith-expand]=$REDIS_PID
			STATUS[monolith-expand]=ready
		else
			broken monolith-expand "POST /shorten on the monolith returned no code"
		fi
	else
		broken monolith-expand "the monolith did not start (see above)"
	fi
fi

if selected gateway-expand && need_redis gateway-expand; then
	shortener_port=$(free_port)
	analytics_port=$(free_port)
	port=$(free_port)
	# The route file is Phase 2's own, with one change: the pool may keep a
	# connection per gateway worker (the file's 8 is sized for several
	# gateways sharing a 64-thread service; at 50 connections it would
	# close most connections after one request, and we would measure that).
	jq --argjson cap "$GATEWAY_THREADS" '.pool.max_idle_per_upstream = $cap' \
		"$ROOT/phase2-gateway/gateway.json" >"$WORK/gateway.expand.json"
	data_env=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT/1" WORKER_THREADS="$SERVICE_THREADS" ACCESS_LOG=on)
	if [ ! -x "$BIN_DIR/url-shortener" ] || [ ! -x "$BIN_DIR/analytics" ] || [ ! -x "$BIN_DIR/gateway" ]; then
		broken gateway-expand "the Phase 2 binaries are missing from $BIN_DIR (run make)"
	elif ! start_service analytics "$BIN_DIR/analytics" "$WORK/analytics" "$analytics_port" "${data_env[@]}"; then
		broken gateway-expand "the analytics service did not start (see above)"
	elif ! start_service url-shortener "$BIN_DIR/url-shortener" "$WORK/url-shortener" \
		"$shortener_port" "${data_env[@]}" PUBLIC_BASE_URL="http://127.0.0.1:$port" \
		ANALYTICS_URL="http://127.0.0.1:$analytics_port"; then
		broken gateway-expand "the url-shortener service did not start (see above)"
	else
		shortener_pid=$SERVICE_PID
		if start_kit gateway-expand "$BIN_DIR/gateway" "$port" \
			GATEWAY_CONFIG="$WORK/gateway.expand.json" \
			URL_SHORTENER_URL="http://127.0.0.1:$shortener_port" \
			ANALYTICS_URL="http://127.0.0.1:$analytics_port" \
			USERS_URL="http://127.0.0.1:$(free_port)"; then
			gateway_pid=$SERVICE_PID
			code=$(curl --silent --max-time 5 -H "Authorization: Bearer $TOKEN" \
				-H 'Content-Type: application/json' \
				--data '{"url":"https://example.com/bench/gateway"}' \
				"http://127.0.0.1:$port/api/v1/shorten" | jq -r '.code // empty' 2>/dev/null)
			if [ -n "$code" ]; then
				URL[gateway-expand]="http://127.0.0.1:$port/api/v1/expand/$code"
				EXPECT[gateway-expand]=".code == \"$code\""
				SUBJECT_PIDS[gateway-expand]=$gateway_pid
				OTHER_PIDS[gateway-expand]="$shortener_pid $REDIS_PID"
				STATUS[gateway-expand]=ready
			else
				broken gateway-expand "POST /api/v1/shorten through the gateway returned no code"
			fi
		else
			broken gateway-expand "the gateway did not start (see above)"
		fi
	fi
fi

# Phase 3: gateway-advanced instances (the pipeline config, tracing at its
# default: off) behind an nginx load balancer, three of them and one.
start_phase3() {
	local name=$1 count=$2 pids=() servers="" i port lb_port
	need_redis "$name" || return 0
	if [ ! -x "$BIN_DIR/gateway-advanced" ]; then
		unavailable "$name" "$BIN_DIR/gateway-advanced is not built yet (Phase 3 is unfinished)"
		return 0
	fi
	for i in $(seq 1 "$count"); do
		port=$(free_port)
		if ! start_kit "$name-$i" "$BIN_DIR/gateway-advanced" "$port" \
			GATEWAY_CONFIG="$ROOT/bench/gateway.bench.json" INSTANCE_ID="gateway-$i" \
			TRUSTED_PROXIES=127.0.0.1; then
			broken "$name" "gateway-advanced instance $i did not start (see above)"
			return 0
		fi
		pids+=("$SERVICE_PID")
		servers+=$'\t\t'"server 127.0.0.1:$port;"$'\n'
	done
	lb_port=$(free_port)
	if ! start_bench_nginx "$name-lb" lb.conf "$lb_port" /health "@SERVERS@=${servers%$'\n'}"; then
		broken "$name" "the load-balancer nginx did not start"
		return 0
	fi
	URL[$name]="http://127.0.0.1:$lb_port/bench"
	EXPECT[$name]=$FIXED_BODY
	SUBJECT_PIDS[$name]="${pids[*]}"
	OTHER_PIDS[$name]="$NGINX_WORKERS $REDIS_PID"
	STATUS[$name]=ready
}
selected phase3-x3 && start_phase3 phase3-x3 3
selected phase3-x1 && start_phase3 phase3-x1 1

# The headline rows once more with two wrk threads, same processes, same
# run: with one wrk thread the client takes one core and the proxies share
# the other; with two, wrk competes for both (docs/performance.md says what
# that changes).
TWO_THREAD_ROWS=(nginx-proxy gateway-pipeline gateway-threads)
with_t2=()
for name in "${SCENARIOS[@]}"; do
	with_t2+=("$name")
	[[ " ${TWO_THREAD_ROWS[*]} " == *" $name "* ]] || continue
	t2="$name-t2"
	TITLE[$t2]="${TITLE[$name]}, wrk -t2"
	SUBJECT_NAME[$t2]=${SUBJECT_NAME[$name]}
	[ -z "${OTHER_NAME[$name]:-}" ] || OTHER_NAME[$t2]=${OTHER_NAME[$name]}
	STATUS[$t2]=${STATUS[$name]}
	REASON[$t2]=${REASON[$name]:-}
	URL[$t2]=${URL[$name]:-}
	EXPECT[$t2]=${EXPECT[$name]:-}
	SUBJECT_PIDS[$t2]=${SUBJECT_PIDS[$name]:-}
	OTHER_PIDS[$t2]=${OTHER_PIDS[$name]:-}
	WRK_THREADS[$t2]=2
	with_t2+=("$t2")
done
SCENARIOS=("${with_t2[@]}")

READY=()
for name in "${SCENARIOS[@]}"; do
	if [ "${STATUS[$name]}" = ready ]; then
		READY+=("$name")
		echo "  $name: ready (${URL[$name]})"
	fi
done
echo "# started in $((SECONDS - RUN_START_S)) s: ${#READY[@]} of ${#SCENARIOS[@]} scenarios ready"

# ---------------------------------------------------------------------------
# 2. Measure: every repetition runs every scenario once, in the same order
# ---------------------------------------------------------------------------
RSS_RUN=0
selected gateway-pipeline && [ "${STATUS[gateway-pipeline]}" = ready ] && RSS_RUN=1
PER_RUN_S=$((DURATION + C1_DURATION + 1)) # + about 1 s of checks and start-up
RUNS_LEFT=$((REPEAT * ${#READY[@]}))

# time_left: "~3 min" or "~40 s", for what is still to run.
time_left() {
	local s=$((RUNS_LEFT * PER_RUN_S + RSS_RUN * (DURATION + 3)))
	if [ "$s" -ge 90 ]; then echo "~$(((s + 30) / 60)) min"; else echo "~$s s"; fi
}

if [ "$WARMUP" -gt 0 ] && [ ${#READY[@]} -gt 0 ]; then
	echo "# warm-up: $WARMUP s per scenario, not recorded (pools fill, pages fault in)"
	for name in "${READY[@]}"; do
		run_wrk "$CONNECTIONS" "$WARMUP" "${URL[$name]}" "$WORK/warmup-$name.txt" \
			"${WRK_THREADS[$name]:-1}"
	done
fi

for rep in $(seq 1 "$REPEAT"); do
	index=0
	for name in "${READY[@]}"; do
		index=$((index + 1))
		[ "${STATUS[$name]}" = ready ] || { RUNS_LEFT=$((RUNS_LEFT - 1)); continue; }
		printf '[rep %d/%d] scenario %d/%d %-17s (%s left)\n' "$rep" "$REPEAT" "$index" \
			"${#READY[@]}" "$name" "$(time_left)"
		measure "$name" "$rep" "$CONNECTIONS" "$DURATION"
		RUNS_LEFT=$((RUNS_LEFT - 1))
	done
done

# Memory at 200 connections: a fresh pipeline gateway (its own peak, with
# enough worker threads for 200 connections), one run.
if [ "$RSS_RUN" = 1 ]; then
	printf '[memory] gateway-pipeline at %d connections (%s left)\n' "$RSS_CONNECTIONS" "$(time_left)"
	port=$(free_port)
	name=gateway-pipeline-c200
	if GATEWAY_THREADS=$((RSS_CONNECTIONS + 16)) start_kit "$name" "$BIN_DIR/gateway" "$port" \
		GATEWAY_CONFIG="$ROOT/bench/gateway.bench.json"; then
		STATUS[$name]=ready
		URL[$name]="http://127.0.0.1:$port/bench"
		EXPECT[$name]=$FIXED_BODY
		SUBJECT_PIDS[$name]=$SERVICE_PID
		OTHER_PIDS[$name]=$REDIS_PID
		measure "$name" 1 "$RSS_CONNECTIONS" "$DURATION"
	else
		broken "$name" "the gateway did not start (see above)"
	fi
	SCENARIOS+=("$name")
fi

# Peak memory is read once more now: it only grows.
echo "# measured in $((SECONDS - RUN_START_S)) s; stopping everything"
stop_all

# ---------------------------------------------------------------------------
# 3. The report: results.csv (every measurement), results.md, results.png
# ---------------------------------------------------------------------------

# column NAME FIELD: the values of one field of raw.tsv for a scenario, one
# per repetition. FIELD "added" is c1_p50 minus $DIRECT_C1_P50.
column() {
	awk -F'\t' -v name="$1" -v field="$2" -v direct="$DIRECT_C1_P50" '
		BEGIN { split("scenario rep connections duration requests rps p50 p99 c1_p50 cpu other rss non2xx errors foreign machine", names, " ")
			for (i in names) index_of[names[i]] = i }
		$1 != name { next }
		field == "added" { if (direct != "") print $9 - direct; next }
		$index_of[field] != "-" { print $index_of[field] }' "$RAW"
}

# stats NAME FIELD: "median min max" of a field, or nothing.
stats() {
	column "$1" "$2" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) exit
			m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			print m, v[1], v[NR]
		}'
}

# cell NAME FIELD SCALE DECIMALS: "median [min–max]" of a field divided by
# SCALE, or "–" when there is none; one value alone has no range.
cell() {
	local s
	s=$(stats "$1" "$2")
	if [ -z "$s" ]; then
		printf '–'
		return
	fi
	awk -v s="$s" -v scale="$3" -v d="$4" 'BEGIN {
		split(s, v, " ")
		fmt = "%." d "f"
		out = sprintf(fmt, v[1] / scale)
		if (v[2] != v[3]) out = out sprintf(" [" fmt "–" fmt "]", v[2] / scale, v[3] / scale)
		printf "%s", out }'
}

# median NAME FIELD: just the median, or nothing.
median() {
	stats "$1" "$2" | awk '{ print $1 }'
}

# The base of "+ latency at 1 conn": direct's median p50 at 1 connection
# over the repetitions (one noisy repetition of direct must not shift every
# other row of that repetition).
DIRECT_C1_P50=""
DIRECT_C1_P50=$(median direct c1_p50)

# Every measurement, with the run and the machine on each line.
{
	echo "run,machine,scenario,repetition,connections,duration_s,requests,req_per_s,p50_us,p99_us,c1_p50_us,added_us_at_1_connection,cpu_us_per_request,other_cpu_us_per_request,peak_rss_kb,non_2xx,socket_errors,foreign_load_pct,machine_cpu_us_per_request"
	awk -F'\t' -v OFS=, -v run="$RUN_ID" -v machine="\"$MACHINE\"" -v direct="$DIRECT_C1_P50" '
		{
			added = direct == "" ? "" : $9 - direct
			other = $11 == "-" ? "" : $11
			print run, machine, $1, $2, $3, $4, $5, $6, $7, $8, $9, added, $10, other, $12, $13, $14, $15, $16
		}' "$RAW"
} >"$OUT_DIR/results.csv"

# ratio A B: median req/s of A over B's, "1.23", or nothing.
ratio() {
	local a b
	a=$(median "$1" rps)
	b=$(median "$2" rps)
	[ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
}

# target DESCRIPTION MEASURED VERDICT_COMMAND...: one row of the targets table.
target_row() {
	local description=$1 measured=$2 verdict
	shift 2
	if [ -z "$measured" ]; then
		verdict="not measured"
		measured="–"
	elif "$@"; then
		verdict="**met**"
	else
		verdict="**not met**"
	fi
	printf '| %s | %s | %s |\n' "$description" "$measured" "$verdict"
}
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

PIPELINE_VS_NGINX=$(ratio gateway-pipeline nginx-proxy)
PIPELINE_VS_NGINX_T2=$(ratio gateway-pipeline-t2 nginx-proxy-t2)
THREADS_VS_NGINX=$(ratio gateway-threads nginx-proxy)
# cpu_ratio A B: median CPU per request of A over B's, "1.23", or nothing.
cpu_ratio() {
	local a b
	a=$(median "$1" cpu)
	b=$(median "$2" cpu)
	[ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b }'
}
PIPELINE_CPU_VS_NGINX=$(cpu_ratio gateway-pipeline nginx-proxy)
PIPELINE_CPU_VS_NGINX_T2=$(cpu_ratio gateway-pipeline-t2 nginx-proxy-t2)
PIPELINE_VS_EXPRESS=$(ratio gateway-pipeline express)
PIPELINE_ADDED=$(median gateway-pipeline added)
PIPELINE_RSS200=$(median gateway-pipeline-c200 rss)
PIPELINE_RSS200_MB=""
if [ -n "$PIPELINE_RSS200" ]; then
	PIPELINE_RSS200_MB=$(awk -v kb="$PIPELINE_RSS200" 'BEGIN { printf "%.1f", kb / 1024 }')
fi
TOTAL_S=$((SECONDS - RUN_START_S))
# The noise: CPU that processes outside the benchmark took during the load
# runs, in % of the machine (a shared machine shows it here).
FOREIGN_LOAD=$(awk -F'\t' '{ print $15 }' "$RAW" | sort -g | awk '
	{ v[NR] = $1 }
	END {
		if (NR == 0) { print "–"; exit }
		printf "processes outside the benchmark used %.1f%% of the machine'"'"'s CPU during a load run (median; %.1f%% at most): see foreign_load_pct in results.csv", v[int((NR + 1) / 2)], v[NR]
	}')
TOOLS="wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), nginx $("$NGINX" -v 2>&1 | sed 's|.*nginx/||'), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
if command -v node >/dev/null; then TOOLS="$TOOLS, node $(node --version)"; fi

{
	echo "# Benchmark results"
	echo
	echo "Written by \`bench/run.sh\` (\`make bench\`); do not edit by hand, run it again. The raw"
	echo "numbers, one line per measurement, are in [results.csv](results.csv); the chart is"
	echo "[results.png](results.png)."
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| run | \`$RUN_ID\`: started $STARTED_AT, took $((TOTAL_S / 60)) min $((TOTAL_S % 60)) s, git commit \`$COMMIT\` |"
	echo "| machine | $CORES cores (nproc), $CPU_MODEL, Linux $KERNEL, host \`$HOST\` |"
	echo "| load | \`wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency\` per measurement (\`-t2\` on the rows that say so), keep-alive, 127.0.0.1 only; then \`wrk -t1 -c1 -d${C1_DURATION}s\` for the latency at 1 connection |"
	echo "| proxies | the kit's event-loop gateways: $LOOP_THREADS loop threads each; nginx-proxy: $LOOP_THREADS worker processes: the same cores |"
	echo "| repetitions | $REPEAT, interleaved (every scenario once, then again)$([ "$WARMUP" -gt 0 ] && echo "; ${WARMUP} s of unrecorded warm-up each first")$([ "$SMOKE" = 1 ] && echo "; **smoke run: too short to quote**") |"
	echo "| upstream | nginx, 1 worker, \`return 200 '{\"ok\":true}'\` from memory (bench/nginx/upstream.conf) |"
	echo "| tools | $TOOLS |"
	echo "| other load | $FOREIGN_LOAD |"
	echo
	echo "Each cell is the median over the repetitions, [min–max] beside it."
	echo
	echo "| scenario | req/s | CPU µs/req | + other CPU µs/req | machine CPU µs/req | p50 ms | p99 ms | + latency at 1 conn (µs) | peak RSS MB | run | machine |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
	for name in "${SCENARIOS[@]}"; do
		label="**$name**: ${TITLE[$name]}"
		case ${STATUS[$name]} in
		unavailable)
			echo "| $label | not available: ${REASON[$name]//|/\\|} | | | | | | | | \`$RUN_ID\` | $MACHINE |"
			continue ;;
		error)
			echo "| $label | **error**: ${REASON[$name]//|/\\|} | | | | | | | | \`$RUN_ID\` | $MACHINE |"
			continue ;;
		esac
		if [ "$name" = direct ]; then added="0 (the base)"; else added=$(cell "$name" added 1 0); fi
		other_cell="–"
		if [ -n "${OTHER_NAME[$name]:-}" ]; then other_cell="$(cell "$name" other 1 1) (${OTHER_NAME[$name]})"; fi
		rss_max=$(column "$name" rss | sort -n | tail -n 1)
		echo "| $label | $(cell "$name" rps 1 0) | $(cell "$name" cpu 1 1) (${SUBJECT_NAME[$name]}) | $other_cell | $(cell "$name" machine 1 1) | $(cell "$name" p50 1000 2) | $(cell "$name" p99 1000 2) | $added | $(awk -v kb="${rss_max:-0}" 'BEGIN { printf "%.1f", kb / 1024 }') | \`$RUN_ID\` | $MACHINE |"
	done
	echo
	echo "- **req/s, p50, p99**: wrk at $CONNECTIONS connections (the last row: $RSS_CONNECTIONS)."
	echo "- **+ latency at 1 conn**: the scenario's p50 with one connection minus direct's (its median,"
	echo "  ${DIRECT_C1_P50:-?} µs): what the extra hop and its work add to one request when nothing queues."
	echo "  wrk and the scenario's processes share one core for this run: across two cores every"
	echo "  wake-up of a process on the other core costs about 20 µs on this kind of virtual machine,"
	echo "  and where each one lands is chance (direct: 18 µs on one core, 58 µs across two)."
	echo "- **CPU µs/req**: user + system CPU of the named process(es), from /proc/<pid>/stat around"
	echo "  the load run, per request served; all threads count. **+ other**: the same for what they"
	echo "  use besides the fixed upstream (named). The upstream's own CPU is in the direct row."
	echo "- **machine CPU µs/req**: the whole machine's busy CPU (/proc/stat, every core) per request:"
	echo "  wrk, the upstream, the scenario's processes and the kernel's work for all of them. On"
	echo "  loopback a sender does much of its receiver's TCP work in its own context, so how CPU"
	echo "  splits between processes moves with scheduling (a second wrk thread moves it); this"
	echo "  total does not, and the difference between two rows is what one architecture costs"
	echo "  more than the other, all of it."
	echo "- **peak RSS**: VmHWM of the process(es) under test at the end (all repetitions and warm-up)."
	echo
	echo "## Ratios and targets"
	echo
	echo "| target | measured | |"
	echo "|---|---|---|"
	target_row "whole pipeline ≥ 0.6 × nginx req/s (wrk -t1)" "${PIPELINE_VS_NGINX:+${PIPELINE_VS_NGINX} ×}" \
		at_least "${PIPELINE_VS_NGINX:-0}" 0.6
	target_row "whole pipeline ≤ 2 × nginx's CPU per request (wrk -t1)" "${PIPELINE_CPU_VS_NGINX:+${PIPELINE_CPU_VS_NGINX} ×}" \
		below "${PIPELINE_CPU_VS_NGINX:-0}" 2.0001
	target_row "whole pipeline ≥ 0.6 × nginx req/s (wrk -t2)" "${PIPELINE_VS_NGINX_T2:+${PIPELINE_VS_NGINX_T2} ×}" \
		at_least "${PIPELINE_VS_NGINX_T2:-0}" 0.6
	target_row "whole pipeline ≤ 2 × nginx's CPU per request (wrk -t2)" "${PIPELINE_CPU_VS_NGINX_T2:+${PIPELINE_CPU_VS_NGINX_T2} ×}" \
		below "${PIPELINE_CPU_VS_NGINX_T2:-0}" 2.0001
	target_row "whole pipeline ≥ 15 × the Express gateway, same run" "${PIPELINE_VS_EXPRESS:+${PIPELINE_VS_EXPRESS} ×}" \
		at_least "${PIPELINE_VS_EXPRESS:-0}" 15
	target_row "whole pipeline adds < 100 µs over direct at 1 connection" "${PIPELINE_ADDED:+${PIPELINE_ADDED} µs}" \
		below "${PIPELINE_ADDED:-0}" 100
	target_row "gateway RSS < 20 MB at $RSS_CONNECTIONS connections" "${PIPELINE_RSS200_MB:+${PIPELINE_RSS200_MB} MB}" \
		below "${PIPELINE_RSS200_MB:-0}" 20
	echo
	echo "Calibration on this kind of machine (2 cores): nginx as a keep-alive reverse proxy does about"
	echo "29k req/s at 50 connections for about 28 µs of CPU per request; the guide's Express gateway"
	echo "about 1k req/s for about 900 µs."
	echo
	echo "## What each row runs"
	echo
	echo "- **direct**: wrk straight to the upstream: the floor every other row pays on top of."
	echo "- **nginx-proxy**: nginx ($LOOP_THREADS workers, as many as a gateway's loop threads; no access log) with \`upstream { keepalive 32; }\`,"
	echo "  \`proxy_http_version 1.1\` and an empty Connection header (bench/nginx/proxy.conf)."
	echo "- **gateway-bare**: build/bin/bench-gateway-bare (bench/gateway_bare.c): Phase 2's main"
	echo "  with no \`kit_use()\` line: the event-loop core and the pooled proxy only."
	echo "- **gateway-pipeline**: build/bin/gateway with bench/gateway.bench.json, route \`/bench\`"
	echo "  authenticated: request id, access log (to a file), metrics, CORS, JWT verified on every"
	echo "  request (wrk sends a valid HS256 token), rate limit counted in Redis (a limit of"
	echo "  $HIGH_LIMIT, never reached), pooled proxy (\`max_idle_per_upstream\`: 256). The"
	echo "  event-loop core: one loop thread per CPU, at most 64 requests running on each."
	echo "- **gateway-threads**: the same binary and config with \`SERVER_CORE=threads\`: civetweb's"
	echo "  thread per connection ($GATEWAY_THREADS worker threads), one Redis connection and one"
	echo "  curl handle per thread. The difference to gateway-pipeline is the server core alone."
	echo "- **gateway-nopool**: the same with \`\"max_idle_per_upstream\": 0\` (bench/gateway.nopool.json):"
	echo "  every request opens and closes its upstream connection."
	echo "- **express**: bench/express/server.js, the guide's gateway: \`jwt.verify\` in an async"
	echo "  middleware, then http-proxy-middleware with a keep-alive agent (the guide's maxSockets 100,"
	echo "  maxFreeSockets 10). It does less than the pipeline (no log, metrics or rate limit)."
	echo "- **monolith-expand** / **gateway-expand**: the same link read by GET /expand/<code> from"
	echo "  the Phase 1 monolith, and by GET /api/v1/expand/<code> through the Phase 2 gateway and the"
	echo "  url-shortener service (Phase 2's route file, its pool cap raised to the worker count)."
	echo "  Both read Redis and write an access log; the sum of the two CPU columns is the comparison."
	echo "- **phase3-x3** / **phase3-x1**: build/bin/gateway-advanced (tracing at its default, off)"
	echo "  with the pipeline's config, three instances or one, behind an nginx load balancer with a"
	echo "  keep-alive pool (bench/nginx/lb.conf). On 2 cores three instances cannot be faster than"
	echo "  one; the rows show what the extra hop and the copies cost."
	echo "- **gateway-pipeline-c200**: a fresh pipeline gateway (event-loop core) at"
	echo "  $RSS_CONNECTIONS connections, once: its peak RSS is the memory target's number."
	echo
	echo "- **...-t2**: the row above it, the same processes in the same run, driven by two wrk"
	echo "  threads instead of one."
	echo
	echo "Every process runs on the same $CORES cores as wrk and the upstream nginx (one worker),"
	echo "unpinned, so a row's req/s is what the whole machine does with that architecture; the CPU"
	echo "column is the per-request cost, which depends less on the sharing (docs/performance.md)."
	echo
	echo "![Requests per second and CPU per request, by scenario](results.png)"
} >"$OUT_DIR/results.md"

# The chart: req/s (median, min–max bars) and CPU per request, by scenario.
CHART_OK=1
if command -v gnuplot >/dev/null; then
	: >"$WORK/chart.dat"
	for name in "${SCENARIOS[@]}"; do
		s=$(stats "$name" rps)
		c=$(median "$name" cpu)
		[ -n "$s" ] || continue
		printf '"%s" %s %s\n' "$name" "$s" "${c:-0}" >>"$WORK/chart.dat"
	done
	if ! gnuplot -e "data='$WORK/chart.dat'; out='$OUT_DIR/results.png'; title='run $RUN_ID on $MACHINE'" \
		"$ROOT/bench/chart.gp" 2>"$WORK/gnuplot.err"; then
		echo "run.sh: gnuplot failed: $(head -n 5 "$WORK/gnuplot.err")" >&2
		CHART_OK=0
	fi
else
	echo "run.sh: gnuplot is not installed (make deps): no chart" >&2
	CHART_OK=0
fi

# ---------------------------------------------------------------------------
# 4. The verdict
# ---------------------------------------------------------------------------
echo
sed -n '/^| scenario/,/^$/p' "$OUT_DIR/results.md"
sed -n '/^| target/,/^$/p' "$OUT_DIR/results.md"
echo "# report: $OUT_DIR/results.md, results.csv$([ "$CHART_OK" = 1 ] && echo ', results.png')"
echo "# total time: $((TOTAL_S / 60)) min $((TOTAL_S % 60)) s"

errors=""
numbers_missing=""
for name in "${SCENARIOS[@]}"; do
	case ${STATUS[$name]} in
	error) errors="$errors $name" ;;
	ready) [ -n "$(median "$name" rps)" ] || numbers_missing="$numbers_missing $name" ;;
	esac
done
if [ "$SMOKE" = 0 ] && [ "$CHART_OK" = 0 ]; then
	errors="$errors (chart)"
fi
if [ -z "$errors" ] && [ -z "$numbers_missing" ]; then
	pass "every available scenario produced its numbers"
else
	fail "every available scenario produced its numbers" \
		"errors:${errors:- none}; no numbers:${numbers_missing:- none}"
fi
finish
