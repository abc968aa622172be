#!/usr/bin/python3
"""tests/conformance/run.py - the same raw bytes, byte for byte, sent to
every kind of server that faces a client in this kit, side by side with
nginx; then a table of what each did. Python 3 standard library only;
tests/conformance.sh starts the servers and runs it.

  run.py --fixture URL --server NAME=ROLE:PORT... [--only CASE...]

ROLE is one of
  gateway    a kit gateway routing /fixture/... to the fixture's
             /conformance/... (tests/upstream_fixture.py, which records
             every request that reaches it): "loop" (the event-loop core
             and its strict parser) and "threads" (SERVER_CORE=threads:
             civetweb's parser, then civetweb_guard.c);
  service    a kit service on civetweb, met directly: /fixture/... is no
             route of it, so a request it lets through is answered 404;
  reference  nginx proxying /fixture/ to the same fixture: printed beside
             ours as the reference parser, never checked against the kit.

Threat: request smuggling and everything next to it. When two servers on a
request's way read the same bytes differently (where a request ends, which
Host it is for, what its path is), an attacker hides a request inside
another, or sends a request where a proxy's checks do not see it. The kit's
answer is one strict parser (shared/src/server/http_parser.c) on the
event-loop core, and the same rules applied after civetweb's parser on the
civetweb core. Every refusal here stands beside requests that must be
served (the first cases, and each "served" one) on the same servers.

For each case and each server it records
  - the status (or "closed": no answer, connection closed; "none": no
    answer within the bound, connection still open), 1xx answers too;
  - whether the connection stayed usable: a probe request sent after the
    case's answers (with "Connection: close", so the end is the close);
  - what reached the upstream: the fixture's record, by the tag every
    request of the run carries in its query (?t=CASE.SERVER), the tag of a
    request hidden inside another ending in ".smuggled";
  - a control request on a second connection after the case: the server
    keeps serving other clients.
and then checks, per case: each kit server gave the case's expected
outcome (CASES below; a documented civetweb limit changes it for the
civetweb columns, and says why), both gateway cores gave the same status
(where they do not, the table says why), nothing the gateway should have
refused reached the upstream, the control request was served. nginx's
column is checked only for this: where it differs from the kit, the case
says why (NGINX).

Output: "ok - ..." / "not ok - ..." lines, the table, the notes, and
"conformance: N passed, N failed" last.
"""

import argparse
import json
import re
import socket
import sys
import time
import urllib.request

# ---------------------------------------------------------------------------
# How long to wait. An answer normally comes in milliseconds; the bounds
# only decide how long a broken server costs. WAIT_INTERIM is how long a
# client that sent "Expect: 100-continue" waits for "100 Continue" before it
# sends its body anyway (curl waits 1 s); not seeing one in that time is
# the observation, never a failure a slow machine could cause.
# ---------------------------------------------------------------------------
READ_BOUND = 5.0
WAIT_INTERIM = 1.0
HOST = b"127.0.0.1"


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------
# A request is a bytes template. Placeholders:
#   {P}  the path prefix every server routes to the fixture: /fixture
#   {T}  this run's tag (CASE.SERVER), sent as ?t={T}
#   {S}  the tag of a request hidden inside this one ({T}.smuggled)
#   {H}  the Host: 127.0.0.1
#   {L}  the length of everything after the head's first CRLF CRLF (for a
#        Content-Length that frames a body holding a hidden request)
#
# expect is the kit's verdict (the event-loop core's): "served" (the
# fixture answers 200; on the service, its 404), or a status ("none": no
# answer, the server waits for more). A served case may say how many
# requests it carries (served=N, pipelining), whether the connection closes
# after it (closes=True), and what the upstream must have received
# (upstream_body=...). on_service: the service's verdict where it is not
# the gateways' for a reason of its own (it proxies nothing; it answers a
# route it does not have without reading the body).
#
# civetweb= (threads= or service= for one of the two): where civetweb's
# own parser keeps the civetweb core from giving the kit's verdict, the
# outcome it gives instead and why (docs/security.md, "Request parsing").
# nginx=: why nginx, the reference, answers differently from the kit; a
# check fails when nginx differs and the case gives no reason, and when it
# gives one and nginx does not differ.


class Case:
    def __init__(self, name, request, expect, *, served=1, closes=False,
                 upstream_body=None, body=None, on_service=None, civetweb=None,
                 threads=None, service=None, nginx=None):
        self.name = name
        self.request = request          # bytes template
        self.body = body                # sent after waiting for 100 Continue
        self.expect = expect            # "served", "none" or a status
        self.on_service = on_service    # the service's verdict, when its own
        self.served = served            # requests a served case carries
        self.closes = closes            # served, then the connection closes
        self.upstream_body = upstream_body
        self.civetweb = civetweb        # (outcome, why) on threads and service
        self.threads = threads          # (outcome, why) on threads alone
        self.service = service          # (outcome, why) on the service alone
        self.nginx = nginx              # why nginx answers otherwise


def get(extra=b"", path=b"{P}/a", version=b"HTTP/1.1"):
    """A GET with Host and the tag, and extra header lines."""
    return b"GET " + path + b"?t={T} " + version + b"\r\nHost: {H}\r\n" + extra + b"\r\n"


def post(headers, body):
    """A POST with Host and the tag; headers are complete lines."""
    return b"POST {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\n" + headers + b"\r\n" + body


# A request hidden in another one's body: served only if a server took the
# outer request's framing from the wrong header.
HIDDEN = b"GET {P}/a?t={S} HTTP/1.1\r\nHost: {H}\r\n\r\n"
CHUNKED_HIDING = b"0\r\n\r\n" + HIDDEN

UNPARSED = ("civetweb stops parsing at this line and leaves the rest of the "
            "head unparsed; the guard cannot see past the last field civetweb "
            "kept (docs/security.md)")
TOO_BIG = ("civetweb answers a head over its 16 KiB buffer itself, with the same "
           "\"Malformed message\" 400 as a head with a bad byte: its error page "
           "cannot tell them apart to say 431")
CHUNK_EXT = ("civetweb's chunked reader refuses chunk extensions, which RFC 9112 7.1.1 "
             "allows: the body is malformed to it (400)")

CASES = [
    # ---- positive controls: what every server must serve ---------------
    Case("get", get(), "served"),
    Case("post-length", post(b"Content-Length: 5\r\n", b"hello"), "served",
         upstream_body="hello"),
    Case("post-chunked", post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
         "served", upstream_body="hello"),

    # ---- smuggling: Content-Length and Transfer-Encoding ---------------
    Case("cl-te", post(b"Content-Length: {L}\r\nTransfer-Encoding: chunked\r\n", CHUNKED_HIDING), 400),
    Case("te-cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: {L}\r\n", CHUNKED_HIDING), 400),
    Case("cl-cl-differ", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
    Case("cl-cl-same", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), "served",
         upstream_body="hello",
         nginx="nginx refuses any second Content-Length; RFC 9112 6.3 lets a "
               "recipient accept identical ones, as we do"),
    Case("cl-list", post(b"Content-Length: 5, 5\r\n", b"hello"), 400),
    Case("cl-plus", post(b"Content-Length: +5\r\n", b"hello"), 400),
    Case("cl-minus", post(b"Content-Length: -1\r\n", b""), 400),
    Case("cl-hex", post(b"Content-Length: 0x2f\r\n", b""), 400),
    Case("cl-inner-space", post(b"Content-Length: 1 0\r\n", b"0123456789"), 400),
    Case("cl-zeros", post(b"Content-Length: 0005\r\n", b"hello"), "served", upstream_body="hello"),
    Case("cl-overflow", post(b"Content-Length: 99999999999999999999\r\n", b""), 400),
    Case("cl-huge", post(b"Content-Length: 9223372036854775807\r\n", b""), 413,
         on_service="served"),
    Case("cl-empty", post(b"Content-Length: \r\n", b""), 400),
    Case("te-identity", post(b"Transfer-Encoding: identity\r\n", b""), 501),
    Case("te-chunked-identity", post(b"Transfer-Encoding: chunked, identity\r\n", b""), 501),
    Case("te-xchunked", post(b"Transfer-Encoding: xchunked\r\n", b""), 501),
    Case("te-gzip", post(b"Transfer-Encoding: gzip\r\n", b""), 501),
    Case("te-upper", post(b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"), "served",
         upstream_body="hello"),
    Case("te-leading-space", post(b"Transfer-Encoding:    chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
         "served", upstream_body="hello"),
    Case("te-space-colon", post(b"Transfer-Encoding : chunked\r\n", CHUNKED_HIDING), 400),
    Case("te-tab-colon", post(b"Transfer-Encoding\t: chunked\r\n", CHUNKED_HIDING), 400),
    Case("te-twice", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                          b"5\r\nhello\r\n0\r\n\r\n"), 501,
         nginx="nginx says 400 to a second Transfer-Encoding; to us two lines are "
               "the list \"chunked, chunked\", not one chunked coding: 501 as for any"),
    Case("te-obs-fold", post(b"Transfer-Encoding:\r\n chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), 400,
         civetweb=(501, "civetweb stops at the fold and keeps \"Transfer-Encoding:\" with "
                        "an empty value: refused as an unknown coding, 501, not 400")),
    Case("te-http10", b"POST {P}/a?t={T} HTTP/1.0\r\nHost: {H}\r\nConnection: keep-alive\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + HIDDEN,
         "served", closes=True, upstream_body="hello",
         nginx="nginx refuses Transfer-Encoding on HTTP/1.0; RFC 9112 6.1 lets a "
               "server read it and close after, as we do"),

    # ---- line ends and folding -----------------------------------------
    Case("lf-request-line", b"GET {P}/a?t={T} HTTP/1.1\nHost: {H}\r\n\r\n", 400,
         nginx="nginx takes a bare LF as a line end (RFC 9112 2.2 allows it); "
               "we refuse: a server that does not would read another head"),
    Case("lf-field", b"GET {P}/a?t={T} HTTP/1.1\r\nHost: {H}\nX-A: b\r\n\r\n", 400,
         nginx="as lf-request-line"),
    Case("lf-everywhere", b"GET {P}/a?t={T} HTTP/1.1\nHost: {H}\nX-A: b\n\n", 400,
         nginx="as lf-request-line"),
    Case("lf-last-line", b"GET {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\nX-A: b\n\n", 400,
         civetweb=("served", "the last field's LF and the blank line's LF leave the two "
                             "NULs a CR LF leaves; what follows may be past the head"),
         nginx="as lf-request-line"),
    Case("lf-last-then-crlf", b"GET {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\nX-A: b\n\r\n\r\n", 400,
         nginx="as lf-request-line"),
    Case("cr-cr-request-line", b"GET {P}/a?t={T} HTTP/1.1\r\rHost: {H}\r\n\r\n", 400,
         civetweb=("served", "CR CR after the version leaves the two NULs a CR LF leaves")),
    Case("http10-lf-no-fields", b"GET {P}/a?t={T} HTTP/1.0\n\n", 400, closes=True,
         civetweb=("served", "with no field, the request line's LF LF leaves the NULs a "
                             "CR LF CR LF leaves, and what follows is past the head"),
         nginx="as lf-request-line"),
    Case("cr-request-line", b"GET {P}/a?t={T} HTTP/1.1\rHost: {H}\r\n\r\n", 400),
    Case("cr-field", b"GET {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\nX-A: b\rX-C: d\r\n\r\n", 400),
    Case("obs-fold", get(b"X-A: one\r\n two\r\n"), 400,
         civetweb=("served", UNPARSED)),
    Case("obs-fold-hides-length", b"POST {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\nX-A: one\r\n two\r\n"
                                  b"Content-Length: {L}\r\n\r\n" + HIDDEN, 400,
         civetweb=({"status": "served", "smuggled": 1, "answers": 2, "after": "open"},
                   UNPARSED + "; the Content-Length after the fold is unseen, so the body "
                              "is served as a request of its own: use the event-loop core "
                              "in front")),
    Case("two-spaces-after-method", b"GET  {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\n\r\n", 400,
         nginx="nginx takes any run of spaces between the parts (RFC 9112 3 lets a "
               "lenient reader); one SP exactly, or two servers split the line apart"),
    Case("two-spaces-before-version", b"GET {P}/a?t={T}  HTTP/1.1\r\nHost: {H}\r\n\r\n", 400,
         nginx="as two-spaces-after-method"),
    Case("obs-fold-hides-host", b"GET {P}/a?t={T} HTTP/1.1\r\nX-A: one\r\n two\r\nHost: {H}\r\n\r\n", 400),
    Case("obs-fold-first-line", b"GET {P}/a?t={T} HTTP/1.1\r\n Host: {H}\r\n\r\n", 400),
    Case("space-before-request-line", b" GET {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\n\r\n", 400,
         civetweb=("served", "civetweb skips whitespace before the request line; "
                             "the guard cannot see it")),
    Case("crlf-before-request-line", b"\r\nGET {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\n\r\n", "served"),
    Case("colon-line", get(b":no-name\r\n"), 400,
         civetweb=("served", UNPARSED)),

    # ---- sizes ---------------------------------------------------------
    # The parser takes it; the gateway's upstream URL is at most 2 KiB
    # (proxy.c): its 414 is an answer, not a refusal of the connection.
    Case("target-10k", get(path=b"{P}/" + b"a" * 10000), {"status": 414, "after": "open"},
         on_service="served"),
    Case("target-20k", get(path=b"{P}/" + b"a" * 20000), 431,
         civetweb=(400, TOO_BIG),
         nginx="nginx says 414 URI Too Long, where the line alone is over its limit"),
    Case("field-20k", get(b"X-Big: " + b"b" * 20000 + b"\r\n"), 431,
         civetweb=(400, TOO_BIG),
         nginx="nginx's status for a long field is 400 (\"Request Header Or Cookie Too Large\")"),
    # A gateway passes on at most MAX_REQUEST_HEADERS fields (48), so that
    # the ones it adds still fit in a service's 64: past that its proxy
    # answers 431, an answer of the app (the head was read whole), so the
    # connection stays open. civetweb keeps 64 fields and stops, so with 64
    # a service's guard cannot tell whether more followed: it refuses.
    Case("fields-48", get(b"".join(b"X-F%d: v\r\n" % i for i in range(47))), "served"),
    Case("fields-49", get(b"".join(b"X-F%d: v\r\n" % i for i in range(48))),
         {"status": 431, "after": "open"}, on_service="served",
         nginx="nginx has no count limit, only one of bytes"),
    Case("fields-64", get(b"".join(b"X-F%d: v\r\n" % i for i in range(63))),
         {"status": 431, "after": "open"},
         civetweb=(431, "civetweb keeps 64 fields and stops: the guard cannot tell "
                        "whether more followed, so it refuses and closes"),
         nginx="nginx has no count limit, only one of bytes"),
    Case("fields-65", get(b"".join(b"X-F%d: v\r\n" % i for i in range(64))), 431,
         nginx="nginx has no count limit, only one of bytes"),
    Case("fields-3000", get(b"a:\r\n" * 3000), 431,
         nginx="nginx counts bytes, not fields: 12 KiB of fields are over its "
               "buffers, a 400"),

    # ---- NUL and other controls -----------------------------------------
    Case("nul-method", b"G\0T {P}/a?t={T} HTTP/1.1\r\nHost: {H}\r\n\r\n", 400),
    Case("nul-target", get(path=b"{P}/a\0b"), 400),
    Case("nul-field-name", get(b"X-A\0B: c\r\n"), 400),
    Case("nul-field-value", get(b"X-A: b\0c\r\n"), 400),
    Case("ctl-field-value", get(b"X-A: b\x01c\r\n"), 400,
         nginx="nginx passes control characters in values on"),
    Case("esc-target", get(path=b"{P}/a\x1b[31m"), 400),
    Case("del-field-value", get(b"X-A: b\x7f\r\n"), 400,
         nginx="as ctl-field-value"),
    Case("tab-field-value", get(b"X-A: b\tc\r\n"), "served",
         civetweb=(400, "civetweb refuses any HTAB in a head, even where RFC 9110 "
                        "allows it; the request never reaches the kit")),
    Case("obs-text-value", get(b"X-A: caf\xc3\xa9\r\n"), "served"),
    Case("obs-text-target", get(path=b"{P}/caf\xc3\xa9"), 400,
         nginx="nginx takes bytes over 0x7f in a target; RFC 9112 3.2 does not"),
    Case("bad-field-name", get(b"X(A): b\r\n"), 400,
         nginx="nginx ignores a field whose name is not a token (ignore_invalid_headers)"),

    # ---- paths ---------------------------------------------------------
    Case("pct-nul", get(path=b"{P}/a%00b"), 400),
    Case("pct-crlf", get(path=b"{P}/a%0d%0ab"), "served"),
    Case("dot-dot", get(path=b"{P}/x/../a"), "served"),
    Case("pct-dot-dot", get(path=b"{P}/x/%2e%2e/a"), "served"),
    Case("pct-dot-dot-out", get(path=b"{P}/%2e%2e/nothing-here"), 404),
    Case("pct-slash", get(path=b"{P}%2fa"), "served"),
    Case("pct-bad", get(path=b"{P}/a%zz"), 400),

    # ---- request-target forms and methods --------------------------------
    Case("absolute-form", b"GET http://example.com{P}/a?t={T} HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
         civetweb=("closed", "civetweb closes without a word when the absolute-form's "
                             "host is not itself; the kit never sees the request"),
         nginx="RFC 9112 3.2.2: a server must accept the absolute-form; we are "
               "stricter, no client of ours sends it to an origin"),
    Case("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: {H}\r\n\r\n", 400,
         civetweb=("closed", "civetweb closes without a word on \"*\"; the kit never "
                             "sees the request")),
    Case("connect", b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n", 400),
    Case("unknown-method", get().replace(b"GET ", b"FOO ", 1), "served",
         civetweb=(400, "civetweb refuses a method outside its list; the strict "
                        "parser takes any token")),

    # ---- versions --------------------------------------------------------
    Case("http10", get(version=b"HTTP/1.0"), "served", closes=True),
    Case("http10-keep-alive", get(b"Connection: keep-alive\r\n", version=b"HTTP/1.0"), "served"),
    Case("http09", b"GET {P}/a?t={T}\r\n\r\n", 400,
         nginx="nginx answers HTTP/0.9 in kind; we refuse it"),
    Case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    Case("http12", get(version=b"HTTP/1.2"), 505,
         nginx="nginx takes any HTTP/1.x as 1.1"),
    Case("http20", get(version=b"HTTP/2.0"), 505),
    Case("http-1-10", get(version=b"HTTP/1.10"), 400,
         nginx="nginx reads 1.10 as a version number"),
    Case("http-lower", get(version=b"http/1.1"), 400),
    Case("connection-close", get(b"Connection: close\r\n"), "served", closes=True),

    # ---- Expect: 100-continue --------------------------------------------
    Case("expect-then-body", post(b"Content-Length: 5\r\nExpect: 100-continue\r\n", b""), "served",
         body=b"hello", upstream_body="hello"),
    Case("expect-no-body", post(b"Content-Length: 5\r\nExpect: 100-continue\r\n", b""), "none",
         on_service="served"),

    # ---- pipelining ------------------------------------------------------
    Case("pipeline-3", get() * 3, "served", served=3),
    Case("pipeline-after-refusal", get(b"Content-Length: 0x2f\r\n") + HIDDEN, 400),
    Case("pipeline-after-lf", b"GET {P}/a?t={T} HTTP/1.1\nHost: {H}\n\n" + HIDDEN, 400,
         nginx="as lf-request-line"),

    # ---- Host -------------------------------------------------------------
    Case("host-missing", b"GET {P}/a?t={T} HTTP/1.1\r\n\r\n", 400),
    Case("host-twice", get(b"Host: other.example\r\n"), 400),
    Case("host-twice-same", get(b"Host: {H}\r\n"), 400),
    Case("host-whitespace", b"GET {P}/a?t={T} HTTP/1.1\r\nHost:   {H}   \r\n\r\n", "served"),
    Case("host-inner-space", b"GET {P}/a?t={T} HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    Case("host-slash", b"GET {P}/a?t={T} HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    Case("host-http10-none", b"GET {P}/a?t={T} HTTP/1.0\r\n\r\n", "served", closes=True),

    # ---- chunked bodies -----------------------------------------------------
    Case("chunk-ext", post(b"Transfer-Encoding: chunked\r\n", b"5;a=b\r\nhello\r\n0\r\n\r\n"), "served",
         upstream_body="hello", threads=(400, CHUNK_EXT)),
    Case("chunk-ext-quoted", post(b"Transfer-Encoding: chunked\r\n", b'5;a="b c"\r\nhello\r\n0\r\n\r\n'),
         "served", upstream_body="hello", threads=(400, CHUNK_EXT)),
    Case("chunk-trailer", post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
         "served", upstream_body="hello",
         civetweb=({"status": "served", "after": "closed"},
                   "civetweb reads a body with trailers, then closes the connection "
                   "(it keeps it only after \"0\" CRLF CRLF)")),
    Case("chunk-overflow", post(b"Transfer-Encoding: chunked\r\n",
                                b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"), 400, on_service="served"),
    Case("chunk-negative", post(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"), 400, on_service="served"),
    Case("chunk-bad-hex", post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"), 400, on_service="served"),
    Case("chunk-no-crlf", post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n"), 400, on_service="served"),
    Case("chunk-short", post(b"Transfer-Encoding: chunked\r\n", b"2\r\nhello\r\n0\r\n\r\n"), 400, on_service="served"),
    Case("chunk-lf", post(b"Transfer-Encoding: chunked\r\n", b"5\nhello\n0\n\n"), 400,
         on_service="served", nginx="as lf-request-line"),
]


# ---------------------------------------------------------------------------
# The wire
# ---------------------------------------------------------------------------

def render(template, tag):
    data = (template.replace(b"{P}", b"/fixture").replace(b"{S}", tag + b".smuggled")
            .replace(b"{T}", tag).replace(b"{H}", HOST))
    if b"{L}" in data:
        body = data.split(b"\r\n\r\n", 1)[1]
        data = data.replace(b"{L}", str(len(body)).encode())
    return data


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


def parse_responses(data):
    """Whole responses at the start of data; returns (responses, rest).
    Content-Length, chunked and 1xx answers; nothing else is expected."""
    responses = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return responses, data
        lines = data[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = data[end + 4:]
        if 100 <= status < 200:
            responses.append(Response(status, headers, b""))
            data = rest
            continue
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, offset = b"", 0
            while True:
                line_end = rest.find(b"\r\n", offset)
                if line_end < 0:
                    return responses, data
                size = int(rest[offset:line_end].split(b";")[0] or b"0", 16)
                if size == 0:
                    trailer_end = rest.find(b"\r\n\r\n", line_end)
                    if trailer_end < 0 and rest[line_end:line_end + 4] != b"\r\n\r\n":
                        return responses, data
                    offset = (trailer_end if trailer_end >= 0 else line_end) + 4
                    break
                if len(rest) < line_end + 2 + size + 2:
                    return responses, data
                body += rest[line_end + 2:line_end + 2 + size]
                offset = line_end + 2 + size + 2
            responses.append(Response(status, headers, body))
            data = rest[offset:]
            continue
        length = int(headers.get("content-length", "0") or 0)
        if len(rest) < length:
            return responses, data
        responses.append(Response(status, headers, rest[:length]))
        data = rest[length:]


class Connection:
    """One client connection: bytes out, whole responses in, and whether
    the server has closed it."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_BOUND)
        self.buffer = b""
        self.responses = []
        self.closed = False

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def read(self, done, seconds):
        """Reads until done() or the server closes or seconds pass."""
        deadline = time.monotonic() + seconds
        while not done() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            more, self.buffer = parse_responses(self.buffer + chunk)
            self.responses += more

    def finals(self):
        return [r for r in self.responses if r.status >= 200]

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# A run: one case against one server
# ---------------------------------------------------------------------------

class Run:
    """What one server did with one case."""

    def __init__(self, case, server):
        self.case, self.server = case, server
        self.tag = ("%s.%s" % (case.name, server.name)).encode()
        self.interim = []          # 1xx statuses
        self.statuses = []         # final statuses before the probe
        self.first = None          # the first final Response
        self.after = "open"        # the connection after: open or closed
        self.extra = 0             # answers between the case's and the probe's
        self.control = None        # the control request's status
        self.upstream = []         # records with this run's tag
        self.smuggled = []         # records with the hidden request's tag
        self.error = None

    @property
    def status(self):
        """The first final status, or "closed" / "none" when there was none."""
        if self.statuses:
            return str(self.statuses[0])
        return "closed" if self.after == "closed" else "none"


def perform(case, server, expected):
    """Sends case to server, reads what comes back, probes the connection,
    sends the control request; returns the Run (the upstream's record is
    filled in later, once every run is over)."""
    run = Run(case, server)
    want = case.served if expected["status"] == "served" else 1
    conn = Connection(server.port)
    try:
        data = render(case.request, run.tag)
        conn.send(data)
        if case.body is not None or case.expect == "none":
            # "Expect: 100-continue": wait for it (or an early final
            # answer) as a client does, then send the body - or not.
            conn.read(lambda: len(conn.responses) > 0, WAIT_INTERIM)
            if case.body is not None and not conn.closed and not conn.finals():
                conn.send(case.body)
        if case.expect != "none" or case.body is not None:
            conn.read(lambda: len(conn.finals()) >= want, READ_BOUND)
        run.interim = [r.status for r in conn.responses if r.status < 200]
        run.statuses = [r.status for r in conn.finals()]
        run.first = conn.finals()[0] if conn.finals() else None
        if expected["status"] == "none" or (case.expect == "none" and conn.finals()):
            # Nothing more to ask on this connection: it waits for a body
            # that is never coming (or the service answered without it).
            if expected["after"] == "closed":
                conn.read(lambda: False, READ_BOUND)
            run.after = "closed" if conn.closed else "open"
        else:
            run.control = control(server, run.tag)
            if conn.closed:
                run.after = "closed"
            else:
                # The probe: served only if the connection is still usable.
                before = len(conn.finals())
                conn.send(render(b"GET {P}/probe?t={T}.probe HTTP/1.1\r\nHost: {H}\r\n"
                                 b"Connection: close\r\n\r\n", run.tag))
                conn.read(lambda: False, READ_BOUND)
                got = len(conn.finals()) - before
                run.after = "open" if got > 0 else "closed"
                run.extra = max(0, got - 1)
                if not conn.closed:
                    run.error = "still open %.0f s after a Connection: close probe" % READ_BOUND
        if run.control is None:
            run.control = control(server, run.tag)
    except OSError as error:
        run.error = "%s: %s" % (type(error).__name__, error)
    finally:
        conn.close()
    return run


def control(server, tag):
    """A plain request on a second connection: still serving others?"""
    conn = Connection(server.port)
    try:
        conn.send(render(b"GET {P}/control?t={T}.control HTTP/1.1\r\nHost: {H}\r\n"
                         b"Connection: close\r\n\r\n", tag))
        conn.read(lambda: len(conn.finals()) >= 1, READ_BOUND)
        finals = conn.finals()
        return finals[0].status if finals else None
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# What each server should do
# ---------------------------------------------------------------------------

REFUSALS = (400, 408, 411, 413, 414, 431, 501, 505)


def declares_body(case):
    """The case's head announces a body: a Content-Length above 0, or a
    Transfer-Encoding."""
    head = case.request.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return (re.search(rb"\r\nContent-Length: *(\{L\}|0*[1-9][0-9]*)\r\n", head) is not None
            or b"\r\nTransfer-Encoding:" in head)


def expected_outcome(case, server):
    """The outcome the case expects on server, as a dict, and why it is not
    the kit's verdict (None when it is)."""
    outcome, why = case.expect, None
    if server.role == "service" and case.on_service is not None:
        outcome = case.on_service
    override = None
    if server.name == "threads":
        override = case.threads or case.civetweb
    elif server.name == "service":
        override = case.service or case.civetweb
    if override is not None:
        outcome, why = override
    if not isinstance(outcome, dict):
        outcome = {"status": outcome}
    outcome = dict(outcome)
    status = outcome["status"]
    refused = status in REFUSALS or status == "closed"
    # A service lets a request through to its 404 without reading the
    # body; the response then says "Connection: close" and closes.
    unread = server.role == "service" and status == "served" and declares_body(case)
    outcome.setdefault("after", "closed" if refused or (status == "served" and case.closes)
                       or unread else "open")
    outcome.setdefault("smuggled", 0)
    outcome.setdefault("interim", None)
    outcome.setdefault("answers", case.served if status == "served" else 1)
    return outcome, why


def shown_status(outcome, server):
    """What the expected status looks like on the wire for server."""
    status = outcome["status"]
    if status == "served":
        return "404" if server.role == "service" else "200"
    return str(status)


def refusal_shape(response, closing):
    """What is wrong with a refusal's form: one application/problem+json
    body with its status (RFC 9457), and "Connection: close" when the
    server closes after it."""
    wrong = []
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        wrong.append("Content-Type %r, expected application/problem+json"
                     % response.headers.get("content-type"))
    try:
        problem = json.loads(response.body)
        if problem.get("status") != response.status or not problem.get("detail"):
            wrong.append("the problem's status or detail is wrong: %r" % problem)
    except ValueError:
        wrong.append("the body is not JSON: %r" % response.body[:80])
    if closing and "close" not in response.headers.get("connection", "").lower():
        wrong.append("no Connection: close on a refusal")
    return wrong


def judge(run, expected):
    """The ways run differs from expected; empty when it does not."""
    case, server = run.case, run.server
    wrong = []
    want = shown_status(expected, server)
    if run.error:
        wrong.append(run.error)
    if run.status != want:
        wrong.append("status %s, expected %s" % (run.status, want))
    answers = len(run.statuses) + run.extra
    if expected["status"] not in ("none", "closed") and answers != expected["answers"]:
        wrong.append("%d answers, expected %d%s" % (
            answers, expected["answers"],
            ": a request hidden in another was served" if answers > expected["answers"] else ""))
    if expected["status"] != "none" and run.after != expected["after"]:
        wrong.append("the connection was %s afterwards, expected %s" % (run.after, expected["after"]))
    if isinstance(expected["status"], int) and expected["status"] >= 400 and run.first:
        wrong += refusal_shape(run.first, expected["after"] == "closed")
    if expected["interim"] == "none" and run.interim:
        wrong.append("interim %s, expected none" % run.interim)
    if server.role == "gateway":
        reached = len(run.upstream)
        if expected["status"] == "served":
            if reached != case.served:
                wrong.append("%d request(s) reached the upstream, expected %d" % (reached, case.served))
            elif case.upstream_body is not None and run.upstream[0]["body"] != case.upstream_body:
                wrong.append("the upstream got the body %r, expected %r"
                             % (run.upstream[0]["body"][:60], case.upstream_body))
            for record in run.upstream:
                if any(ord(c) < 0x21 or ord(c) > 0x7e for c in record["target"]):
                    wrong.append("the upstream got a target with a control byte: %r" % record["target"])
        elif reached:
            wrong.append("%d request(s) reached the upstream; it should have none" % reached)
        if len(run.smuggled) != expected["smuggled"]:
            wrong.append("the hidden request reached the upstream %d time(s), expected %d"
                         % (len(run.smuggled), expected["smuggled"]))
    control_want = 404 if server.role == "service" else 200
    if run.control != control_want:
        wrong.append("the control request on a second connection got %s, expected %d"
                     % (run.control, control_want))
    return wrong


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

def cell(run):
    """How a run reads in the table: [1xx>]status[ x][ ^N][ S!]."""
    if run is None:
        return "-"
    text = "".join("%d>" % s for s in run.interim) + run.status
    if len(run.statuses) > 1:
        text += "*%d" % len(run.statuses)
    if run.after == "closed" and run.statuses:
        text += " x"
    if run.upstream:
        text += " ^%d" % len(run.upstream)
    if run.smuggled or run.extra:
        text += " S!"
    if run.error:
        text += " ?"
    return text


LEGEND = """\
# Each cell: the status ("closed": closed with no answer; "none": no answer,
# still open), "100>" before it for an interim answer, "*N" for N answers,
# " x" when the server closed the connection after answering, " ^N" when N
# requests reached the upstream (the fixture), " S!" when a request hidden in
# another one was served, " ?" when the client saw an error. The service's
# "404" is its answer to a request it let through (no route)."""


def print_table(runs, servers, notes):
    columns = [s for s in ("nginx", "loop", "threads", "service") if s in servers]
    width = max(len(c.name) for c in CASES) + 2
    print()
    print(LEGEND)
    print("#")
    print("# %-*s" % (width, "case") + "".join("%-16s" % c for c in columns))
    for case in CASES:
        row = "".join("%-16s" % cell(runs.get((case.name, c))) for c in columns)
        print("# %-*s%s" % (width, case.name, row.rstrip()))
    print("#")
    print("# Why a server differs from the kit's verdict (the case table says so):")
    for case_name, who, why in notes:
        print("#   %-*s %-9s %s" % (width, case_name, who + ":", why))


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

class Server:
    def __init__(self, spec):
        name, _, rest = spec.partition("=")
        role, _, port = rest.partition(":")
        if role not in ("gateway", "service", "reference") or not port.isdigit():
            raise SystemExit("--server %s: expected NAME=gateway|service|reference:PORT" % spec)
        self.name, self.role, self.port = name, role, int(port)


def fetch_record(fixture):
    with urllib.request.urlopen(fixture + "/record", timeout=READ_BOUND) as answer:
        return json.load(answer)


def tag_of(record):
    query = record["target"].partition("?")[2]
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "t":
            return value
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", required=True)
    parser.add_argument("--server", action="append", required=True, type=Server)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    servers = {s.name: s for s in args.server}
    cases = [c for c in CASES if not args.only or c.name in args.only]
    passed = failed = 0

    def check(ok, description, reasons=()):
        nonlocal passed, failed
        if ok:
            passed += 1
            print("ok - %s" % description)
        else:
            failed += 1
            print("not ok - %s" % description)
            for reason in reasons:
                print("#   %s" % reason)
        sys.stdout.flush()

    started = time.monotonic()
    runs = {}
    for case in cases:
        for server in args.server:
            expected, _ = expected_outcome(case, server)
            runs[(case.name, server.name)] = perform(case, server, expected)

    by_tag = {}
    for record in fetch_record(args.fixture):
        by_tag.setdefault(tag_of(record), []).append(record)
    for run in runs.values():
        run.upstream = by_tag.get(run.tag.decode(), [])
        run.smuggled = by_tag.get(run.tag.decode() + ".smuggled", [])

    notes = []
    for case in cases:
        for server in args.server:
            run = runs[(case.name, server.name)]
            expected, why = expected_outcome(case, server)
            if why and (case.name, "civetweb", why) not in notes:
                notes.append((case.name, "civetweb", why))
            if server.role == "reference":
                continue
            summary = "%s on %s: %s" % (case.name, server.name, shown_status(expected, server))
            if why:
                summary += " (a civetweb limit, see the notes)"
            check(not judge(run, expected), summary, judge(run, expected))
        # Both gateway cores, one behaviour: the same status, or a reason.
        if "loop" in servers and "threads" in servers:
            loop, threads = runs[(case.name, "loop")], runs[(case.name, "threads")]
            _, why = expected_outcome(case, servers["threads"])
            if why:
                check(True, "%s: loop %s, threads %s: a documented civetweb limit"
                      % (case.name, loop.status, threads.status))
            else:
                check(loop.status == threads.status,
                      "%s: both gateway cores answer %s" % (case.name, loop.status),
                      ["loop %s, threads %s" % (loop.status, threads.status)])
        # nginx, the reference: where it differs from the kit, say why.
        if "nginx" in servers:
            run = runs[(case.name, "nginx")]
            expected, _ = expected_outcome(case, servers["nginx"])
            same = run.status == shown_status(expected, servers["nginx"])
            if not same and case.nginx:
                notes.append((case.name, "nginx", case.nginx))
            reasons = []
            if not same and case.nginx is None:
                reasons.append("nginx answers %s where the kit's verdict is %s, and the case "
                               "gives no reason" % (run.status, shown_status(expected, servers["nginx"])))
            if same and case.nginx is not None:
                reasons.append("nginx answers as the kit does, yet the case gives a reason "
                               "for a difference: %s" % case.nginx)
            check(not reasons, "%s: nginx answers %s%s" % (
                case.name, run.status, "" if same else ", and the case says why"), reasons)

    print_table(runs, servers, notes)
    print("# %d cases on %d servers in %.1f s" % (len(cases), len(args.server),
                                                time.monotonic() - started))
    print()
    print("conformance: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
