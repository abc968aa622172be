#!/usr/bin/env python3
"""trace_waterfall.py - one trace drawn as a waterfall (SVG), from the spans
tests/jaeger_sink.py writes to .run/traces.jsonl (one JSON object a line).

    python3 docs/diagrams/trace_waterfall.py SPANS.jsonl [TRACE_ID] > OUT.svg

TRACE_ID: the trace to draw (X-Trace-ID of a response); without it, the
trace of the last server span with no parent in the file. Each span is a
row, children under their parent and indented, a bar from its start to its
end on one time axis (microseconds from the trace's first span), labelled
with the process, the operation and its kind. The output depends on the
spans alone, so the same file always gives the same SVG (`make diagrams`
and tests/diagrams.sh rely on that).
"""
import json
import sys
from xml.sax.saxutils import escape

ROW = 26          # pixels per span
LEFT = 330        # width of the label column
BAR_WIDTH = 520   # width of the time axis
TOP = 44          # title and axis above the first row
COLOURS = {"gateway": "#8fc9a3", "url-shortener": "#8fb3e0", "analytics": "#e0b98f",
           "users": "#c39fe0"}
NO_PARENT = "0000000000000000"


def read_spans(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pick_trace(spans, wanted):
    if wanted:
        return wanted
    roots = [s for s in spans if s.get("parentSpanId", NO_PARENT) == NO_PARENT
             and s.get("tags", {}).get("span.kind") == "server"]
    if not roots:
        sys.exit("trace_waterfall.py: no root span in the file")
    return roots[-1]["trace_id"]


def in_tree_order(spans):
    """Parents before their children, siblings by start time; with depth."""
    by_parent = {}
    ids = {s["spanId"] for s in spans}
    for s in spans:
        parent = s.get("parentSpanId", NO_PARENT)
        by_parent.setdefault(parent if parent in ids else NO_PARENT, []).append(s)
    ordered = []

    def walk(parent, depth):
        for s in sorted(by_parent.get(parent, []), key=lambda x: (x["startTime"], x["spanId"])):
            ordered.append((s, depth))
            walk(s["spanId"], depth + 1)
    walk(NO_PARENT, 0)
    return ordered


def draw(spans, trace_id):
    rows = in_tree_order(spans)
    start = min(s["startTime"] for s in spans)
    end = max(s["startTime"] + s["duration"] for s in spans)
    total = max(end - start, 1)
    scale = BAR_WIDTH / total
    height = TOP + ROW * len(rows) + 30
    width = LEFT + BAR_WIDTH + 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="18" font-size="14">Trace {escape(trace_id)}: '
           f'{len(rows)} spans, {total} µs</text>']
    for tick in range(0, 5):
        x = LEFT + BAR_WIDTH * tick / 4
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 12}" x2="{x:.1f}" y2="{height - 24}" '
                   f'stroke="#dddddd"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP - 16}" text-anchor="middle" fill="#666666">'
                   f'{round(total * tick / 4)} µs</text>')
    for i, (s, depth) in enumerate(rows):
        y = TOP + i * ROW
        kind = s.get("tags", {}).get("span.kind", "")
        label = f'{s.get("service", "?")}: {s.get("operationName", "?")} ({kind})'
        x = LEFT + (s["startTime"] - start) * scale
        w = max(s["duration"] * scale, 2)
        colour = COLOURS.get(s.get("service"), "#bbbbbb")
        out.append(f'<text x="{10 + 14 * depth}" y="{y + 16}">{escape(label)}</text>')
        out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{ROW - 10}" '
                   f'rx="3" fill="{colour}"/>')
        out.append(f'<text x="{x + w + 6:.1f}" y="{y + 16}" fill="#444444">{s["duration"]} µs</text>')
    out.append(f'<text x="10" y="{height - 8}" fill="#666666">client spans (kind client) are the '
               f'caller\'s wait for a service; server spans, the service\'s own work</text>')
    out.append('</svg>')
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    spans = read_spans(sys.argv[1])
    trace_id = pick_trace(spans, sys.argv[2] if len(sys.argv) == 3 else None)
    mine = [s for s in spans if s.get("trace_id") == trace_id]
    if not mine:
        sys.exit(f"trace_waterfall.py: no span of trace {trace_id} in {sys.argv[1]}")
    sys.stdout.write(draw(mine, trace_id))


if __name__ == "__main__":
    main()
