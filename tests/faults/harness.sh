# shellcheck shell=bash disable=SC2016,SC2034
# tests/faults/harness.sh - the machinery of tests/faults.sh (source it after
# tests/lib.sh): one fault under load, from the first request to the last
# figure.
#
# run_fault NAME drives one fault through the same seven steps, whatever
# the fault is:
#
#   1. seed     K fresh links, owned by the probe user, for the load to
#               redirect to and expand (their analytics start at 0 clicks)
#   2. load     wrk with tests/faults/mix.lua through TARGET (the Phase 2
#               gateway, or nginx in front of the Phase 3 gateways), until
#               PRE_REQUESTS have been answered: the load is flowing
#   3. inject   fault_inject NAME; the fault lasts HOLD_SECONDS (a SIGTERM
#               stop is a restart: no hold)
#   4. recover  fault_recover NAME (restart, SIGCONT, raise the limit ...)
#   5. heal     fault_probe NAME, polled from the moment recovery began until
#               it succeeds: the time to heal
#   6. after    POST_REQUESTS more answers, then wrk is stopped (SIGINT: it
#               reports and runs done())
#   7. verify   the invariants, each a check that can fail:
#               - the gateway answered every request (no socket error at
#                 the client), and every failure as problem+json
#               - the pool gauges are back to normal: no connection counted
#                 in use once the load has stopped
#               - the rate limit is exact again: a fresh user gets exactly
#                 LIMIT answers, then 429
#               - no lost write: every link a 201 announced expands
#               - no lost click: for every seeded link, analytics counts at
#                 least as many clicks as the client got 302s (polled: the
#                 url-shortener's queue retries with back-off)
#
# Each fault's figures go to $FIGURES (one JSON object a line) for
# tests/faults/report.sh. The fault itself is three functions the caller
# defines, dispatching on NAME: fault_inject, fault_recover, fault_probe
# (the probe sets PROBE_WHAT to say what it asked).
#
# The one fixed wait is HOLD_SECONDS, and it is not a wait for something to
# become ready: it is how long the fault lasts, part of what is measured.
# Everything else is polled with a bound.
#
# The caller sets: TARGET (base URL the load goes to), TARGET_PHASE (2 or
# 3), GATEWAY_URLS (the gateways whose /metrics hold the pool figures),
# OWNER_TOKEN, LOAD_TOKENS_FILE, SECRET, LIMIT, and the knobs SEED_LINKS,
# WRK_THREADS, WRK_CONNECTIONS, DELAY_MS, PRE_REQUESTS, POST_REQUESTS,
# HOLD_SECONDS, HEAL_BOUND, CLICK_BOUND; and CLICKS_MAY_BE_LOST, the one
# fault whose lost clicks are reported rather than failed on (a SIGKILLed
# url-shortener: its queue is in memory).

FIGURES="$TEST_DIR/figures.jsonl"
: >"$FIGURES"
FAULT_NUMBER=0

# now_s: the wall clock in seconds with microseconds, as mix.lua's buckets
# use it (CLOCK_REALTIME).
now_s() {
	printf '%s' "${EPOCHREALTIME/,/.}"
}

# seconds_between T0 T1: T1 - T0 with milliseconds.
seconds_between() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

# answered_total: requests the target has answered so far. Phase 2: the
# gateway's http_requests_total for the three services' routes (not its own
# /metrics, which this poll would otherwise count); Phase 3: the lines of
# nginx's access log (its /nginx-health is not logged).
answered_total() {
	local metrics
	if [ "$TARGET_PHASE" = 3 ]; then
		wc -l <"$NGINX_ACCESS_LOG"
		return
	fi
	metrics=$(curl -s --max-time 2 "$TARGET/metrics")
	awk -v a="$(metric_sum "$metrics" http_requests_total 'service="url-shortener"')" \
		-v b="$(metric_sum "$metrics" http_requests_total 'service="users"')" \
		-v c="$(metric_sum "$metrics" http_requests_total 'service="analytics"')" \
		'BEGIN { printf "%d", a + b + c }'
}

# answered_since BASE N: at least N more answers than BASE.
answered_since() {
	[ "$(answered_total)" -ge $(($1 + $2)) ]
}

# seed_links FILE N: N fresh links owned by the probe user, their codes in
# FILE. Returns 1 when one could not be made.
seed_links() {
	local file=$1 n=$2 i code
	: >"$file"
	for i in $(seq 1 "$n"); do
		http POST "$TARGET/api/v1/shorten" \
			"{\"url\":\"https://example.com/faults/seed/$RUN_TAG/$i\"}" \
			-H "Authorization: Bearer $OWNER_TOKEN"
		code=$(jq -r '.code // empty' <<<"$HTTP_BODY" 2>/dev/null)
		if [ "$HTTP_STATUS" != 201 ] || [ -z "$code" ]; then
			echo "# seeding link $i: $HTTP_STATUS ${HTTP_BODY:0:200}" >&2
			return 1
		fi
		echo "$code" >>"$file"
	done
}

# pool_in_use: the sum of gateway_upstream_connections{state="in_use"}
# over every gateway in GATEWAY_URLS that answers.
pool_in_use() {
	local url total=0 n
	for url in "${GATEWAY_URLS[@]}"; do
		n=$(metric_sum "$(curl -s --max-time 2 "$url/metrics")" \
			gateway_upstream_connections 'state="in_use"')
		total=$((total + ${n:-0}))
	done
	echo "$total"
}

pool_idle_now() {
	[ "$(pool_in_use)" = 0 ]
}

# pool_snapshot: the pool figures of every gateway in GATEWAY_URLS, as one
# JSON object: {"<gateway port>": {"<upstream>": {"idle", "in_use",
# "errors", "created"}}}, read from their /metrics (one jq per gateway).
pool_snapshot() {
	local url out="{}"
	for url in "${GATEWAY_URLS[@]}"; do
		out=$(curl -s --max-time 2 "$url/metrics" | jq -R -s -c --arg g "${url##*:}" --argjson all "$out" '
			[split("\n")[] | capture("^(?<name>gateway_upstream_connections(_created_total|_closed_total)?|gateway_upstream_connection_errors_total)\\{upstream=\"(?<u>[^\"]+)\"(,state=\"(?<state>[a-z_]+)\")?\\} (?<v>[0-9.e+]+)$")]
			| reduce .[] as $m ({}; .[$m.u] += {
				({"gateway_upstream_connections": ($m.state // ""),
				  "gateway_upstream_connections_created_total": "created",
				  "gateway_upstream_connections_closed_total": "closed",
				  "gateway_upstream_connection_errors_total": "errors"}[$m.name]): ($m.v | tonumber)})
			| $all + {($g): .}')
	done
	echo "$out"
}

# limit_is_exact: a user the gateways have never seen (a new subject, free
# tier, a token made here) sends LIMIT + 2 GET /api/v1/users/me one after
# the other; exactly the first LIMIT must pass the limiter and the last two
# be 429. (The users service has never heard of that user and answers 404:
# what counts is that the limiter let it through.) Sets LIMIT_DETAIL to the
# statuses seen, in order. The window is an hour, fixed on the clock: when
# it ends within 5 s, the check waits for the next one.
limit_is_exact() {
	local token i statuses=() passed=0 limited=0 first_limited=0 left
	left=$((3600 - $(date +%s) % 3600))
	[ "$left" -ge 5 ] || sleep "$left"
	token=$(make_token HS256 "$SECRET" "$(jq -cn --arg sub "limit-${RUN_TAG,,}-$RANDOM" \
		--argjson now "$(date +%s)" '{sub: $sub, tier: "free", iat: $now, exp: ($now + 600)}')")
	for i in $(seq 1 $((LIMIT + 2))); do
		http GET "$TARGET/api/v1/users/me" '' -H "Authorization: Bearer $token"
		statuses+=("$HTTP_STATUS")
		if [ "$HTTP_STATUS" = 429 ]; then
			limited=$((limited + 1))
			[ "$first_limited" = 0 ] && first_limited=$i
		else
			passed=$((passed + 1))
		fi
	done
	LIMIT_DETAIL=$(printf '%s ' "${statuses[@]}" | sed 's/ $//')
	[ "$passed" = "$LIMIT" ] && [ "$limited" = 2 ] && [ "$first_limited" = $((LIMIT + 1)) ]
}

# expand_all FILE: GETs /api/v1/expand/<code> for every code in FILE over
# one keep-alive connection (a curl config file); prints "status code" per
# line.
expand_all() {
	local file=$1 config="$FAULT_DIR/expand.curl" code
	: >"$config"
	while read -r code; do
		[ -n "$code" ] || continue
		printf 'url = "%s/api/v1/expand/%s"\noutput = "/dev/null"\n' "$TARGET" "$code" >>"$config"
	done <"$file"
	[ -s "$config" ] || return 0
	curl -s --max-time 60 -K "$config" -w '%{http_code} %{url_effective}\n' |
		sed 's#^\([0-9]*\) .*/#\1 #'
}

# clicks_of CODE: the clicks analytics counts for CODE, as its owner asks
# for them (through the target), or nothing when it does not answer 200.
clicks_of() {
	local body
	body=$(curl -s --max-time 5 -H "Authorization: Bearer $OWNER_TOKEN" \
		-w '\n%{http_code}' "$TARGET/api/v1/analytics/$1")
	[ "${body##*$'\n'}" = 200 ] || return 0
	jq -r '.clicks // empty' <<<"${body%$'\n'*}" 2>/dev/null
}

# clicks_counted: every seeded link has at least as many clicks in
# analytics as the client got 302s for it. Writes "code client counted"
# lines to $FAULT_DIR/clicks.txt.
clicks_counted() {
	local code client counted all=0
	: >"$FAULT_DIR/clicks.txt"
	while read -r code; do
		client=$(jq -r --arg c "$code" '.clicks[$c] // 0' "$FAULT_DIR/wrk.json")
		counted=$(clicks_of "$code")
		echo "$code $client ${counted:-none}" >>"$FAULT_DIR/clicks.txt"
		[ -n "$counted" ] && [ "$counted" -ge "$client" ] || all=1
	done <"$FAULT_DIR/codes"
	return $all
}

# click_deliveries: the request ids of this run's clicks that analytics
# stored (its access log: POST /internal/clicks answered 204), one a line,
# as many times as each was stored.
click_deliveries() {
	cat "$TEST_DIR"/analytics*.out 2>/dev/null |
		grep -F "\"request_id\":\"$RUN_TAG.r." |
		jq -r 'select(.path == "/internal/clicks" and .status == 204) | .request_id' 2>/dev/null
}

# links_made_unannounced: how many of the shortens whose client got no 201
# a url-shortener answered 201 all the same (its access logs): links that
# exist though their client was told they failed (a retry makes another).
links_made_unannounced() {
	jq -r '.unsaved[]' "$FAULT_DIR/wrk.json" | sort >"$FAULT_DIR/unsaved.txt"
	cat "$TEST_DIR"/url-shortener*.out 2>/dev/null |
		grep -F "\"request_id\":\"$RUN_TAG.s." |
		jq -r 'select(.status == 201) | .request_id' 2>/dev/null | sort -u |
		comm -12 "$FAULT_DIR/unsaved.txt" - | wc -l
}

# redirects_served: the request ids of this run's redirects that a
# url-shortener answered 302 (its access logs), one a line.
redirects_served() {
	cat "$TEST_DIR"/url-shortener*.out 2>/dev/null |
		grep -F "\"request_id\":\"$RUN_TAG.r." |
		jq -r 'select(.status == 302) | .request_id' 2>/dev/null
}

# window_sum FROM TO: answered, ok and failed in the buckets [FROM, TO)
# (seconds), as "answered ok failed".
window_sum() {
	jq -r --argjson from "$1" --argjson to "$2" '
		[.buckets[] | select(.[0] >= ($from * 10 | floor) and .[0] < ($to * 10 | floor))]
		| [(map(.[1] + .[2]) | add // 0), (map(.[1]) | add // 0), (map(.[2]) | add // 0)]
		| @tsv' "$FAULT_DIR/wrk.json"
}

# run_fault NAME DESCRIPTION [positive]: the seven steps above. "positive"
# adds a check that the load saw the fault at all (failed answers), for
# faults that cannot go unnoticed; its absence means the fault may well
# cost the client nothing (a gateway stopped behind nginx).
run_fault() {
	local name=$1 description=$2 felt=${3:-}
	local base t_start t_fault t_recover t_healed t_end wrk_pid heal_s="" healed=false
	local answered ok failed pool_ok=false limit_ok=false lost_links lost_clicks
	local wrk_status hold

	FAULT_NUMBER=$((FAULT_NUMBER + 1))
	RUN_TAG=$(printf 'F%02d' "$FAULT_NUMBER")
	FAULT_DIR="$TEST_DIR/fault-$RUN_TAG-$name"
	mkdir -p "$FAULT_DIR"
	section "fault $RUN_TAG: $description"
	step "$name"

	# 1. Seed.
	if ! seed_links "$FAULT_DIR/codes" "$SEED_LINKS"; then
		fail "seeded $SEED_LINKS links" "see the log above; skipping this fault"
		return
	fi

	# 2. Load, until it flows.
	base=$(answered_total)
	t_start=$(now_s)
	start_program "wrk:$RUN_TAG" "$FAULT_DIR/wrk" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" \
		-d120s --timeout 10s -s tests/faults/mix.lua "$TARGET" -- \
		"$FAULT_DIR/wrk.json" "$FAULT_DIR/codes" "$LOAD_TOKENS_FILE" "$OWNER_TOKEN" \
		"$RUN_TAG" "$DELAY_MS"
	wrk_pid=$SERVER_PID
	if ! poll_until 30 answered_since "$base" "$PRE_REQUESTS"; then
		fail "the load flows ($PRE_REQUESTS answers within 30 s)" \
			"answered $(($(answered_total) - base)); see $FAULT_DIR/wrk.err"
	fi
	POOL_BEFORE=$(pool_snapshot)

	# 3. Inject; the fault lasts HOLD_SECONDS, except a stop with SIGTERM,
	#    which is a restart: started again at once, as a deploy would.
	t_fault=$(now_s)
	fault_inject "$name"
	case $name in
	term-*) hold=0 ;;
	*) hold=$HOLD_SECONDS ;;
	esac
	sleep "$hold"

	# 4 and 5. Recover, and poll until the probe succeeds.
	t_recover=$(now_s)
	fault_recover "$name"
	if poll_until "$HEAL_BOUND" fault_probe "$name"; then
		t_healed=$(now_s)
		heal_s=$(seconds_between "$t_recover" "$t_healed")
		healed=true
		pass "heals: $PROBE_WHAT ${heal_s}s after recovery began"
	else
		t_healed=$(now_s)
		fail "heals within $HEAL_BOUND s: $PROBE_WHAT" "last: $(_got_status) ${HTTP_BODY:0:200}"
	fi

	# 6. After: more answers, then stop wrk (SIGINT: it reports).
	base=$(answered_total)
	poll_until 30 answered_since "$base" "$POST_REQUESTS" ||
		echo "# only $(($(answered_total) - base)) answers after healing (wanted $POST_REQUESTS)"
	t_end=$(now_s)
	kill -INT "$wrk_pid" 2>/dev/null
	poll_until 15 wrk_exited "$wrk_pid"
	if wait "$wrk_pid" 2>/dev/null; then wrk_status=0; else wrk_status=$?; fi
	_forget_pid "$wrk_pid"
	if ! jq -e . "$FAULT_DIR/wrk.json" >/dev/null 2>&1; then
		fail "wrk wrote its results (exit $wrk_status)" "$(tail -n 5 "$FAULT_DIR/wrk.err" 2>/dev/null)"
		return
	fi

	# 7. Verify. What the client got:
	answered=$(jq '[.statuses[][]] | add // 0' "$FAULT_DIR/wrk.json")
	failed=$(jq -r '[.buckets[][2]] | add // 0' "$FAULT_DIR/wrk.json")
	ok=$((answered - failed))
	echo "# $answered answered, $ok ok, $failed failed: $(jq -r '[.statuses | to_entries[]
		| .key as $k | .value | to_entries[] | "\($k):\(.key)x\(.value)"] | join(" ")' "$FAULT_DIR/wrk.json")"
	check_num "the load got answers ($answered)" "$answered" '>' 0
	if [ "$felt" = positive ]; then
		check_num "the load felt the fault ($failed failed answers)" "$failed" '>' 0
	fi
	check_eq "every request was answered (no socket error at the client)" \
		'0 0 0' "$(jq -r '.socket_errors | "\(.connect) \(.read) \(.write)"' "$FAULT_DIR/wrk.json")"
	if [ "$TARGET_PHASE" = 2 ]; then
		check_eq "every failed answer is problem+json" 0 "$(jq '.problem.other' "$FAULT_DIR/wrk.json")"
	fi

	# The pool: nothing left in use once the load has stopped.
	if poll_until 10 pool_idle_now; then
		pool_ok=true
		pass "pool gauges back to normal: no upstream connection in use (${POLL_ELAPSED}s after the load)"
	else
		fail "pool gauges back to normal within 10 s" "in use: $(pool_in_use)"
	fi
	POOL_AFTER=$(pool_snapshot)

	# The rate limit, exact again.
	if limit_is_exact; then
		limit_ok=true
		pass "rate limit exact: a fresh user gets $LIMIT, then 429 ($LIMIT_DETAIL)"
	else
		fail "rate limit exact: a fresh user gets $LIMIT, then 429" "statuses: $LIMIT_DETAIL"
	fi

	# No lost write: every 201 (the load's and the probes') expands.
	jq -r '.created[]' "$FAULT_DIR/wrk.json" >"$FAULT_DIR/created"
	cat "$FAULT_DIR/probe-created" >>"$FAULT_DIR/created" 2>/dev/null
	expand_all "$FAULT_DIR/created" >"$FAULT_DIR/expanded.txt"
	lost_links=$(grep -cv '^200 ' "$FAULT_DIR/expanded.txt")
	check_eq "no lost write: all $(wc -l <"$FAULT_DIR/created") links a 201 announced expand" \
		0 "$lost_links"

	# No lost click, eventually.
	if poll_until "$CLICK_BOUND" clicks_counted; then
		pass "no lost click: analytics counts every 302 on the seeded links (${POLL_ELAPSED}s after the load)"
	elif [ "${CLICKS_MAY_BE_LOST:-}" = "$name" ]; then
		echo "# clicks lost (expected for $name, see the fault's description): $(awk '$3 == "none" || $3 < $2' "$FAULT_DIR/clicks.txt" | wc -l) links short"
	else
		fail "no lost click within $CLICK_BOUND s" \
			"code client counted: $(awk '$3 == "none" || $3 < $2' "$FAULT_DIR/clicks.txt" | head -n 5 | paste -sd ';' -)"
	fi
	lost_clicks=$(awk '$3 == "none" { s += $2; next } $3 < $2 { s += $2 - $3 } END { print s + 0 }' "$FAULT_DIR/clicks.txt")

	# The figures.
	click_deliveries >"$FAULT_DIR/deliveries.txt"
	redirects_served >"$FAULT_DIR/served.txt"
	jq -r '.clicked[]' "$FAULT_DIR/wrk.json" | sort >"$FAULT_DIR/clicked.txt"
	read -r before_answered before_ok before_failed <<<"$(window_sum "$t_start" "$t_fault")"
	read -r during_answered during_ok during_failed <<<"$(window_sum "$t_fault" "$t_healed")"
	read -r after_answered after_ok after_failed <<<"$(window_sum "$t_healed" 1e12)"
	jq -cn \
		--arg name "$name" --arg run "$RUN_TAG" --arg description "$description" \
		--argjson phase "$TARGET_PHASE" \
		--slurpfile wrk "$FAULT_DIR/wrk.json" \
		--arg heal "$heal_s" --argjson healed "$healed" --arg probe "$PROBE_WHAT" \
		--argjson hold "$hold" \
		--argjson fault_s "$(seconds_between "$t_start" "$t_fault")" \
		--argjson recover_s "$(seconds_between "$t_start" "$t_recover")" \
		--argjson pool_ok "$pool_ok" --argjson pool_before "$POOL_BEFORE" \
		--argjson pool_after "$POOL_AFTER" \
		--argjson limit_ok "$limit_ok" --arg limit_detail "$LIMIT_DETAIL" \
		--argjson acknowledged "$(wc -l <"$FAULT_DIR/created")" --argjson lost_links "$lost_links" \
		--argjson clicks_client "$(wc -l <"$FAULT_DIR/clicked.txt")" \
		--argjson clicks_counted "$(awk '$3 != "none" { s += $3 } END { print s + 0 }' "$FAULT_DIR/clicks.txt")" \
		--argjson lost_clicks "$lost_clicks" \
		--argjson served "$(sort -u "$FAULT_DIR/served.txt" | wc -l)" \
		--argjson unannounced "$(links_made_unannounced)" \
		--argjson deliveries "$(wc -l <"$FAULT_DIR/deliveries.txt")" \
		--argjson delivered_ids "$(sort -u "$FAULT_DIR/deliveries.txt" | wc -l)" \
		--argjson clicked_not_delivered "$(sort -u "$FAULT_DIR/deliveries.txt" | comm -23 "$FAULT_DIR/clicked.txt" - | wc -l)" \
		--argjson windows "$(jq -cn \
			--argjson a "[${before_answered:-0},${before_ok:-0},${before_failed:-0}]" \
			--argjson b "[${during_answered:-0},${during_ok:-0},${during_failed:-0}]" \
			--argjson c "[${after_answered:-0},${after_ok:-0},${after_failed:-0}]" \
			'{before: $a, during: $b, after: $c}')" \
		--arg extra "${FAULT_EXTRA:-}" \
		'$wrk[0] as $w | {
			name: $name, run: $run, description: $description, phase: $phase,
			answered: ([$w.statuses[][]] | add // 0),
			failed: ([$w.buckets[][2]] | add // 0),
			statuses: $w.statuses, socket_errors: $w.socket_errors,
			problem: $w.problem, samples: $w.samples,
			windows: $windows, hold_s: $hold, fault_at_s: $fault_s, recover_at_s: $recover_s,
			heal_s: (if $healed then ($heal | tonumber) else null end), probe: $probe,
			pool_ok: $pool_ok, pool_before: $pool_before, pool_after: $pool_after,
			limit_ok: $limit_ok, limit_statuses: $limit_detail,
			links_acknowledged: $acknowledged, links_lost: $lost_links,
			links_failed_but_made: $unannounced,
			clicks_client: $clicks_client, clicks_counted: $clicks_counted,
			clicks_lost: $lost_clicks,
			redirects_served: $served, click_deliveries: $deliveries,
			clicks_delivered_ids: $delivered_ids,
			clicks_duplicated: ($deliveries - $delivered_ids),
			clicked_not_in_log: $clicked_not_delivered,
			extra: $extra
		}' >>"$FIGURES"
	FAULT_EXTRA=""
}

wrk_exited() {
	! pid_alive "$1"
}
