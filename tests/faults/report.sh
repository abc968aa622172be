#!/usr/bin/env bash
# tests/faults/report.sh - turns the figures of a tests/faults.sh run into
# Markdown tables, inside a document that also holds prose written by hand.
#
#   report.sh FIGURES SHUTDOWNS REPORT LOAD_AT_START LOAD_AT_END MODE
#
# FIGURES is the run's figures.jsonl (one JSON object per fault, written by
# tests/faults/harness.sh), SHUTDOWNS its shutdowns.jsonl (one per graceful-
# shutdown check, tests/faults.sh); REPORT is the document
# (docs/reliability.md).
# Everything between the lines "<!-- figures:begin -->" and
# "<!-- figures:end -->" is replaced; everything else is kept, so the
# reading of the figures written around them survives a new run. A document
# without the markers gets them, with the tables, at its end. Exits 1 when
# FIGURES has nothing to report.
#
# The tables: one summary row per fault, then per fault the answers before,
# during and after it, the failures by kind of request, what a failed
# client was told (the first answer of each failed status), and the
# durability and pool figures; then one row per graceful shutdown.
set -euo pipefail

if [ $# -ne 6 ]; then
	echo "usage: $0 FIGURES SHUTDOWNS REPORT LOAD_AT_START LOAD_AT_END MODE" >&2
	exit 2
fi
FIGURES=$1 SHUTDOWNS=$2 REPORT=$3 LOAD_AT_START=$4 LOAD_AT_END=$5 MODE=$6
if [ ! -s "$FIGURES" ]; then
	echo "$0: $FIGURES is empty" >&2
	exit 1
fi
cd "$(dirname "$0")/../.."

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	COMMIT="$COMMIT + uncommitted changes"
fi
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEMORY=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)

TABLES=$(mktemp)
trap 'rm -f "$TABLES"' EXIT
{
	echo "<!-- figures:begin -->"
	echo "<!-- Written by \`make faults\` (tests/faults.sh --full --report docs/reliability.md);"
	echo "     edit the text around these markers, not between them. -->"
	echo
	echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT, $MODE suite."
	echo "Machine: $CPU, $(nproc) cores, $MEMORY, $(uname -sr); shared with other work:"
	echo "load average (1, 5, 15 min) $LOAD_AT_START at the start, $LOAD_AT_END at the end."
	echo
	echo "| fault | sent | ok | failed, by status | no answer | time to heal | pool back to normal | limit exact | lost writes | lost clicks | duplicate clicks |"
	echo "|---|--:|--:|---|--:|--:|---|---|--:|--:|--:|"
	jq -r '
		def failed_by_status:
			[.statuses | to_entries[] | .key as $kind | .value | to_entries[]
			 | select(.key != ({"r": "302", "e": "200", "s": "201", "u": "200", "a": "200"}[$kind] // ""))
			 | {status: .key, n: .value}]
			| group_by(.status) | map("\(.[0].status) × \(map(.n) | add)") | join(", ");
		def no_answer: .socket_errors.read + .socket_errors.write + .socket_errors.timeout;
		"| \(.run) \(.description) | \(.answered + no_answer) | \(.answered - .failed) | \(failed_by_status | if . == "" then "none" else . end) | \(no_answer) | \(if .heal_s == null then "not healed" else "\(.heal_s) s" end) | \(if .pool_ok then "yes" else "NO" end) | \(if .limit_ok then "yes" else "NO" end) | \(.links_lost) of \(.links_acknowledged) | \(.clicks_lost) of \(.clicks_client) | \(.clicks_duplicated) |"
	' "$FIGURES"
	echo
	echo "*sent*: requests wrk sent (answered, plus any with no answer); *ok*: the expected status"
	echo "(302 for a redirect, 200 for an expand, a profile or analytics, 201 for a shorten);"
	echo "*time to heal*: from the moment recovery began (the restart, SIGCONT, the limit raised)"
	echo "until the probe request succeeded; *pool back to normal*: every gateway's"
	echo "\`gateway_upstream_connections{state=\"in_use\"}\` back to 0 once the load stopped; *limit"
	echo "exact*: a fresh user got exactly the limit, then 429; *lost writes*: links a 201 announced"
	echo "that do not expand afterwards; *lost clicks*: 302s the client got on the seeded links that"
	echo "analytics never counted; *duplicate clicks*: clicks analytics stored twice under one request"
	echo "id (its access log)."
	jq -r '
		def kind_name: {"r": "redirect", "e": "expand", "s": "shorten", "u": "users/me",
			"a": "analytics", "?": "no request id"}[.] // .;
		def expected: {"r": "302", "e": "200", "s": "201", "u": "200", "a": "200"}[.] // "";
		def pool_line: to_entries | map(.key as $g | .value | to_entries
			| map("\(.key) \(.value.idle) idle/\(.value.in_use) in use") | join(", ")
			| "gateway :\($g): " + .) | join("; ");
		"",
		"#### \(.run) \(.name): \(.description)",
		"",
		"| window | answered | ok | failed |",
		"|---|--:|--:|--:|",
		"| before the fault (\(.fault_at_s) s) | \(.windows.before[0]) | \(.windows.before[1]) | \(.windows.before[2]) |",
		"| from the fault until healed (held \(.hold_s) s, healed \(.heal_s // "-") s after recovery) | \(.windows.during[0]) | \(.windows.during[1]) | \(.windows.during[2]) |",
		"| after healing | \(.windows.after[0]) | \(.windows.after[1]) | \(.windows.after[2]) |",
		"",
		"- failed, by request: \([.statuses | to_entries[] | .key as $kind | .value | to_entries[]
			| select(.key != ($kind | expected)) | "\($kind | kind_name) \(.key) × \(.value)"]
			| if length == 0 then "none" else join(", ") end)",
		"- failed answers that were problem+json: \(.problem.json) of \(.problem.json + .problem.other)",
		(.samples | to_entries[] | "- a \(.key) looked like: `\(.value | gsub("`"; "'"'"'") | .[0:260])`"),
		"- probe: \(.probe)\(if .extra != "" then "; \(.extra)" else "" end)",
		"- writes: \(.links_acknowledged) links announced with 201, \(.links_lost) do not expand; \(.links_failed_but_made) shortens the client saw fail were made all the same (201 in the url-shortener'"'"'s log)",
		"- clicks: \(.clicks_client) redirects answered 302 on the seeded links, \(.clicks_counted) counted by analytics (\(.clicks_lost) lost); the url-shortener served \(.redirects_served) of this run'"'"'s redirects (302 in its log); analytics stored \(.click_deliveries) clicks under \(.clicks_delivered_ids) request ids (\(.clicks_duplicated) duplicates); \(.clicked_not_in_log) of the client'"'"'s 302s are not in analytics'"'"' log",
		"- rate limit, fresh user: \(.limit_statuses)",
		"- pool before: \(.pool_before | pool_line)",
		"- pool after: \(.pool_after | pool_line)"
	' "$FIGURES"
	if [ -s "$SHUTDOWNS" ]; then
		echo
		echo "#### Graceful shutdown: SIGTERM with requests in flight"
		echo
		echo "| process | in flight | whole answers | cut | other | new connections refused after | exit status | exit after | flushed |"
		echo "|---|--:|--:|--:|--:|--:|--:|--:|---|"
		jq -r '"| \(.what) | \(.in_flight) | \(.whole) | \(.cut) | \(.other) | \(.refused_after_s) s | \(.exit_status) | \(.exit_s) s | \(.flushed) |"' "$SHUTDOWNS"
	fi
	echo
	echo "<!-- figures:end -->"
} >"$TABLES"

if [ -f "$REPORT" ] && grep -q '^<!-- figures:begin -->$' "$REPORT" && grep -q '^<!-- figures:end -->$' "$REPORT"; then
	awk -v tables="$TABLES" '
		$0 == "<!-- figures:begin -->" { while ((getline line < tables) > 0) print line; skip = 1; next }
		$0 == "<!-- figures:end -->" { skip = 0; next }
		!skip' "$REPORT" >"$REPORT.new"
	mv "$REPORT.new" "$REPORT"
else
	{
		[ -f "$REPORT" ] && cat "$REPORT" && echo
		cat "$TABLES"
	} >"$REPORT.new"
	mv "$REPORT.new" "$REPORT"
fi
echo "# figures written to $REPORT"
