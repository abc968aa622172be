#!/usr/bin/env bash
# tests/diagrams.sh - the diagrams in docs/diagrams/ are what their sources
# draw. Each <name>.svg of graphviz must end with the sha256 of <name>.dot as
# it is now (`make diagrams` writes it there), the source must still be one
# dot draws, and the SVG must parse; graphviz lays text out with the
# machine's fonts, so its output is not compared byte for byte. The trace
# waterfall, the kit's own drawing, is drawn again from redirect-trace.jsonl
# and must equal the committed SVG byte for byte. Then the waterfall script
# draws a trace it has not seen, to show it reads any span file the trace
# sink writes: a made-up three-span trace with a known shape.
#
# Every check prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, N failed".
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

echo "# diagrams: docs/diagrams/*.svg against their sources"

section "prerequisites"
check_true "graphviz's dot is installed (scripts/deps.sh docs)" command -v dot

section "each diagram is its source, drawn again"
for source in docs/diagrams/*.dot; do
	svg=${source%.dot}.svg
	if ! dot -Tsvg "$source" -o "$TEST_DIR/drawn.svg" 2>"$TEST_DIR/dot.err"; then
		fail "dot draws $source" "$(head -n 3 "$TEST_DIR/dot.err")"
		continue
	fi
	hash=$(sha256sum <"$source" | cut -c1-64)
	check_match "$svg was drawn from $source as it is now (make diagrams)" \
		"sha256 $hash -->\$" "$(tail -n 1 "$svg" 2>/dev/null)"
	check_true "$svg parses as XML" python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$svg"
done
drawn="$TEST_DIR/redirect-trace.svg"
python3 docs/diagrams/trace_waterfall.py docs/diagrams/redirect-trace.jsonl >"$drawn" 2>"$TEST_DIR/draw.err"
check_eq "trace_waterfall.py draws the committed trace" 0 "$?"
check_true "docs/diagrams/redirect-trace.svg is that trace drawn (make diagrams)" \
	cmp -s "$drawn" docs/diagrams/redirect-trace.svg

section "the waterfall script on another trace"
# A gateway span, its client span, and the service's span under it.
cat >"$TEST_DIR/spans.jsonl" <<'JSON'
{"trace_id": "00000000000000aa", "spanId": "0000000000000001", "parentSpanId": "0000000000000000", "service": "gateway", "operationName": "GET /x", "startTime": 1000, "duration": 900, "tags": {"span.kind": "server"}}
{"trace_id": "00000000000000aa", "spanId": "0000000000000003", "parentSpanId": "0000000000000002", "service": "users", "operationName": "GET /y", "startTime": 1200, "duration": 300, "tags": {"span.kind": "server"}}
{"trace_id": "00000000000000aa", "spanId": "0000000000000002", "parentSpanId": "0000000000000001", "service": "gateway", "operationName": "GET /x", "startTime": 1100, "duration": 500, "tags": {"span.kind": "client"}}
{"trace_id": "00000000000000bb", "spanId": "0000000000000009", "parentSpanId": "0000000000000000", "service": "gateway", "operationName": "other", "startTime": 5, "duration": 5, "tags": {"span.kind": "server"}}
JSON
SVG=$(python3 docs/diagrams/trace_waterfall.py "$TEST_DIR/spans.jsonl" 00000000000000aa)
check_eq "it draws trace 00000000000000aa" 0 "$?"
check_true "the SVG parses as XML" python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parseString(sys.argv[1])' "$SVG"
check_match "it says 3 spans over 900 µs" 'Trace 00000000000000aa: 3 spans, 900 µs' "$SVG"
ORDER=$(sed -n 's/.*>\([a-z]*: [A-Z]* \/[a-z]* ([a-z]*)\)<.*/\1/p' <<<"$SVG" | tr '\n' '|')
check_eq "parents before children: server, its client span, the service" \
	'gateway: GET /x (server)|gateway: GET /x (client)|users: GET /y (server)|' "$ORDER"
# $1 is bash -c's argument: the single quotes are on purpose.
# shellcheck disable=SC2016
check_true "no span of the other trace" bash -c '! grep -q "other" <<<"$1"' _ "$SVG"
python3 docs/diagrams/trace_waterfall.py "$TEST_DIR/spans.jsonl" 00000000000000cc >/dev/null 2>"$TEST_DIR/none.err"
check_eq "a trace that is not in the file is an error" 1 "$?"

finish
