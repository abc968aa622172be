#!/usr/bin/env bash
# tests/event_loop.sh - a black-box walk through the gateway's server core,
# shared/src/server/event_loop.c and loop_connection.c with its parser
# shared/src/server/http_parser.c: not what the gateway does with a request
# (tests/phase2.sh shows that), but what the core does with the bytes
# before and around one. Requests it must refuse and how (status,
# problem+json, then a closed connection), paths that try to walk out of a
# route, keep-alive and pipelining, "Expect: 100-continue", chunked bodies,
# clients that are slow, clients that hang up, and many connections at
# once.
#
# Usage: tests/event_loop.sh [bin-dir]   (default build/bin; build/asan/bin
#                                         for the AddressSanitizer + UBSan run)
#
# curl tidies a request up before it sends it, so most requests here are
# written byte by byte and sent by a small Python client (raw_client.py,
# written into the scratch directory below), which reports what came back
# and whether the server closed the connection.
#
#   raw client ──► gateway G1 (LOOP_THREADS=1, MAX_BODY_BYTES=1024) ──┬──► tests/upstream_fixture.py
#   raw client ──► gateway G2 (LOOP_THREADS=2)                        ──┘
#                  (both count in one redis-server: limits too high to trip)
#
# Every check prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, N failed" and the exit code is 1 when any check failed. Logs are
# kept (path printed) when something failed, or always with KEEP_LOGS=1.
# The gateways' logs are finally searched for sanitizer reports.
#
# Timing: a slow client is refused after REQUEST_TIMEOUT_MS (10 s in
# loop_connection.c). Rather than wait for that, the slow clients are started
# first, in the background, and their answers read in the last section;
# the whole script takes about 15 s, under ASan too.
#
# Read it top to bottom: each section says what it shows and why.

# jq programs are single-quoted on purpose: $names in them are jq's.
# shellcheck disable=SC2016
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${1:-build/bin}
case $BIN_DIR in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
GATEWAY="$BIN_DIR/gateway"

echo "# event-loop server core black-box tests against $GATEWAY"
echo "# scratch directory: $TEST_DIR"

# ---------------------------------------------------------------------------
section "prerequisites"
# ---------------------------------------------------------------------------
have_tool() {
	command -v "$1" >/dev/null
}
for tool in curl jq redis-server redis-cli openssl ss sha256sum /usr/bin/python3; do
	check_true "$tool is installed" have_tool "$tool"
done
require_binaries "the gateway exists" "$GATEWAY"

# ---------------------------------------------------------------------------
# The raw client. One Python file (standard library only) with three
# commands: "talk" drives one connection step by step, "crowd" opens many
# at once, "chunk" frames a chunked request. Its own comment says how.
# ---------------------------------------------------------------------------
RAW_CLIENT="$TEST_DIR/raw_client.py"
cat >"$RAW_CLIENT" <<'PYTHON'
"""raw_client.py - exact bytes on the wire, for tests/event_loop.sh (curl
would tidy a request up before sending it). Python 3 standard library.

  raw_client.py talk PORT [--rcvbuf BYTES] ACTION...
      One connection to 127.0.0.1:PORT (its receive buffer fixed at
      BYTES when given: a client that reads nothing then holds little),
      driven step by step:
        send FILE          write FILE's bytes in one send()
        trickle FILE SECS  write FILE one byte every SECS seconds, stopping
                           early when the server answers or closes
        read N             read until N more whole responses (1xx count)
                           have come; 5 s at most
        read-bytes N       read until N bytes in all have come; 5 s at most
        idle SECS          do nothing for SECS seconds (a client thinking)
        until-close SECS   read until the server closes; SECS at most
        wait-upstream URL KEY COUNT
                           poll URL (the fixture's /stats) until its JSON
                           has KEY >= COUNT (5 s at most): the request
                           has reached the upstream
        close              hang up (FIN); ends the list
        reset              hang up with a TCP RST (SO_LINGER 0); ends it
      Prints one JSON object: responses [{status, reason, headers (names
      in lower case), body (text), body_sha256}], closed (the server
      closed the connection), close_seconds (from the first byte sent to
      that close), leftover (bytes that are not a whole response) and
      error (why an action gave up; null when none did).

  raw_client.py crowd PORT CONNECTIONS REQUESTS PATH
      Opens CONNECTIONS connections at once (one thread each), waits until
      all are open, then sends REQUESTS keep-alive GET PATH requests on
      each, one after the other. Prints {"statuses": {"200": n, ...},
      "problems": [first five], "problem_count", "seconds"}; a connection
      closed before its last answer is a problem.

  raw_client.py chunk BODY_FILE PATH OUT_PREFIX
      Writes a POST PATH with BODY_FILE's bytes as a chunked body of odd
      chunk sizes (upper- and lower-case hex, a chunk extension, two
      trailer fields), followed by a pipelined GET /fixture/big?bytes=2,
      in four pieces split mid size line, between a chunk's CR and LF
      and mid trailer: OUT_PREFIX.1 to .4.
"""
import hashlib
import json
import socket
import struct
import sys
import threading
import time
import urllib.request


def parse_responses(data):
    """Splits data into whole responses; returns (responses, rest)."""
    responses = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return responses, data
        lines = data[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        length = 0 if status < 200 else int(headers.get("content-length", "0"))
        if len(data) < end + 4 + length:
            return responses, data
        body = data[end + 4:end + 4 + length]
        responses.append({"status": status, "reason": parts[2] if len(parts) > 2 else "",
                          "headers": headers, "body": body.decode("utf-8", "replace"),
                          "body_sha256": hashlib.sha256(body).hexdigest()})
        data = data[end + 4 + length:]


class Talk:
    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.received = 0           # bytes in all
        self.rest = b""             # bytes not yet a whole response
        self.responses = []
        self.first_send = None
        self.result = {"responses": [], "closed": False, "close_seconds": None,
                       "leftover": "", "error": None}

    def write(self, data):
        if self.first_send is None:
            self.first_send = time.monotonic()
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed()

    def closed(self):
        if not self.result["closed"]:
            self.result["closed"] = True
            if self.first_send is not None:
                self.result["close_seconds"] = round(time.monotonic() - self.first_send, 3)

    def receive(self, deadline):
        """Waits for bytes until deadline; keeps them, or notes a close."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        except ConnectionResetError:
            chunk = b""
        if chunk:
            self.received += len(chunk)
            more, self.rest = parse_responses(self.rest + chunk)
            self.responses += more
        else:
            self.closed()

    def read_until(self, done, seconds, what):
        deadline = time.monotonic() + seconds
        while not done() and not self.result["closed"] and time.monotonic() < deadline:
            self.receive(deadline)
        if not done():
            self.result["error"] = "%s: %d responses, %d bytes in all" % (
                what, len(self.responses), self.received)

    def run(self, actions):
        i = 0
        while i < len(actions) and self.result["error"] is None:
            action, args = actions[i], actions[i + 1:]
            if action == "send":
                with open(args[0], "rb") as f:
                    self.write(f.read())
                i += 2
            elif action == "trickle":
                with open(args[0], "rb") as f:
                    data = f.read()
                for byte in data:
                    self.write(bytes([byte]))
                    self.receive(time.monotonic() + float(args[1]))
                    if self.received or self.result["closed"]:
                        break
                i += 3
            elif action == "read":
                want = len(self.responses) + int(args[0])
                self.read_until(lambda: len(self.responses) >= want, 5, "read %s" % args[0])
                i += 2
            elif action == "read-bytes":
                want = int(args[0])
                self.read_until(lambda: self.received >= want, 5, "read-bytes %s" % args[0])
                i += 2
            elif action == "idle":
                time.sleep(float(args[0]))
                i += 2
            elif action == "until-close":
                self.read_until(lambda: self.result["closed"], float(args[0]),
                                "still open after %s s" % args[0])
                i += 2
            elif action == "wait-upstream":
                url, key, count = args[0], args[1], int(args[2])
                deadline = time.monotonic() + 5
                while True:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        if json.load(answer).get(key, 0) >= count:
                            break
                    if time.monotonic() > deadline:
                        self.result["error"] = "%s never reached %d at %s" % (key, count, url)
                        break
                    time.sleep(0.05)
                i += 4
            elif action == "reset":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            elif action == "close":
                break
            else:
                self.result["error"] = "unknown action %s" % action
        self.sock.close()
        self.result["responses"] = self.responses
        self.result["leftover"] = self.rest.decode("latin-1")
        return self.result


def read_one_response(stream):
    """Reads one response off a keep-alive connection; returns its status."""
    line = stream.readline()
    if not line:
        raise EOFError("the server closed the connection before answering")
    status = line.split(b" ")[1].decode()
    length = 0
    while True:
        header = stream.readline()
        if header in (b"\r\n", b""):
            break
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    stream.read(length)
    return status


def crowd(port, connections, requests, path):
    everyone_connected = threading.Barrier(connections)
    lock = threading.Lock()
    statuses, problems = {}, []
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()

    def client(number):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            stream = sock.makefile("rb")
            everyone_connected.wait(timeout=30)
            for _ in range(requests):
                sock.sendall(request)
                status = read_one_response(stream)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
            sock.close()
        except Exception as error:  # every failure is a finding: report it
            with lock:
                problems.append("connection %d: %r" % (number, error))
            everyone_connected.abort()

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"statuses": statuses, "problems": problems[:5], "problem_count": len(problems),
            "seconds": round(time.monotonic() - start, 3)}


def chunk(body_file, path, out_prefix):
    with open(body_file, "rb") as f:
        body = f.read()
    sizes = [1, 2, 3, 0x1F, 0xAB, 0x101, 4093, 8191]
    sizes.append(len(body) - sum(sizes))
    assert sizes[-1] > 0, "the body is too short for these chunk sizes"
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" % path).encode()
    framed, cuts, offset = head, [], 0
    for index, size in enumerate(sizes):
        size_line = ("%X" if index % 2 else "%x") % size
        extension = ";note=odd" if index == 4 else ""
        if index == 3:
            cuts.append(len(framed) + 1)  # between "1" and "F" of "1F"
        framed += ("%s%s\r\n" % (size_line, extension)).encode()
        framed += body[offset:offset + size]
        offset += size
        if index == 5:
            cuts.append(len(framed) + 1)  # between this chunk's CR and LF
        framed += b"\r\n"
    framed += b"0\r\nX-Trailer-One: 1\r\nX-Trailer-Two: 2\r\n\r\n"
    cuts.append(len(framed) - 20)         # inside the trailer
    framed += b"GET /fixture/big?bytes=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    start = 0
    for number, cut in enumerate(cuts + [len(framed)], 1):
        with open("%s.%d" % (out_prefix, number), "wb") as f:
            f.write(framed[start:cut])
        start = cut


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "talk":
        rcvbuf = None
        if args[1] == "--rcvbuf":
            rcvbuf = int(args[2])
            del args[1:3]
        print(json.dumps(Talk(int(args[0]), rcvbuf).run(args[1:])))
    elif command == "crowd":
        print(json.dumps(crowd(int(args[0]), int(args[1]), int(args[2]), args[3])))
    elif command == "chunk":
        chunk(args[0], args[1], args[2])
    else:
        sys.stderr.write("usage: see the comment at the top\n")
        return 2
    return 0


sys.exit(main())
PYTHON

# request NAME BYTES: writes a raw request to $TEST_DIR/requests/NAME and
# prints that path. BYTES is taken literally except for printf's %b
# escapes (\r, \n, \0, \t): '%2e' stays '%2e'.
mkdir -p "$TEST_DIR/requests"
request() {
	printf '%b' "$2" >"$TEST_DIR/requests/$1"
	printf '%s' "$TEST_DIR/requests/$1"
}

# talk PORT ACTION...: raw_client.py talk (see its comment); the answer,
# one JSON object, is in RAW and is read with the checks below.
RAW=""
TALKS=0
talk() {
	TALKS=$((TALKS + 1))
	if ! RAW=$(/usr/bin/python3 "$RAW_CLIENT" talk "$@" 2>"$TEST_DIR/talk-$TALKS.stderr"); then
		RAW=$(jq -cn --arg error "$(tail -n 1 "$TEST_DIR/talk-$TALKS.stderr")" \
			'{responses: [], closed: false, error: ("the client failed: " + $error)}')
	fi
}

# raw JQ_FILTER: the filter's value (jq -r) on the last talk's answer.
raw() {
	jq -r "$1" <<<"$RAW"
}

# expect_statuses "CODE CODE...": the connection carried exactly these
# responses, in this order (1xx included).
expect_statuses() {
	local got
	got=$(raw '[.responses[].status | tostring] | join(" ")')
	if [ "$got" = "$1" ]; then
		pass "answered $1"
	else
		fail "answered $1" "got '$got'; client: $(raw '.error // "no error"'); leftover: $(raw '.leftover[0:200]')"
	fi
}

# expect_closed: the server closed the connection.
expect_closed() {
	check_eq "the server closed the connection" true "$(raw .closed)"
}

# expect_open: every action went through and the connection is still open.
expect_open() {
	check_eq "the connection is still open" "false/no error" \
		"$(raw '"\(.closed)/\(.error // "no error")"')"
}

# expect_refusal INDEX CODE: response INDEX is CODE with an RFC 9457 body
# (Content-Type application/problem+json; type, title, status, detail;
# .status == CODE) and says "Connection: close"; and the server did close.
expect_refusal() {
	local index=$1 code=$2 response wrong=""
	response=$(raw ".responses[$index] // {}")
	check_eq "status $code" "$code" "$(jq -r '.status // "none"' <<<"$response")"
	if [[ $(jq -r '.headers["content-type"] // ""' <<<"$response") != application/problem+json* ]]; then
		wrong="Content-Type is '$(jq -r '.headers["content-type"] // ""' <<<"$response")'; "
	fi
	if ! jq -e '.body | fromjson | (.type|type=="string") and (.title|type=="string")
		and (.detail|type=="string") and .status == ($code|tonumber)' \
		--arg code "$code" <<<"$response" >/dev/null 2>&1; then
		wrong+="not a problem with type, title, detail and status $code; "
	fi
	if [ -z "$wrong" ]; then
		pass "problem+json"
	else
		fail "problem+json" "${wrong}body: $(jq -r '.body // ""' <<<"$response" | head -c 300)"
	fi
	check_eq "Connection: close, and the server closed it" "close/true" \
		"$(jq -r '.headers.connection // "no Connection header"' <<<"$response")/$(raw .closed)"
}

# ---------------------------------------------------------------------------
# Start-up. A redis-server for the rate limiter (limits far too high to
# trip), the scripted upstream, and two gateways in front of it:
#   G1  LOOP_THREADS=1 (one loop serves everything: one request that waits
#       must not hold up the others) and MAX_BODY_BYTES=1024 (the 413s);
#   G2  LOOP_THREADS=2 and the default body limit (64 KiB: a chunked body
#       of 40000 bytes; many connections spread over two loops).
# Routes: /fixture/... is public, /private/... needs a token; both go to
# the fixture with the prefix replaced by "/".
# ---------------------------------------------------------------------------
REDIS_PORT=$(free_port)
FIXTURE_PORT=$(free_port)
G1_PORT=$(free_port)
G2_PORT=$(free_port)
FIXTURE="http://127.0.0.1:$FIXTURE_PORT"
G1="http://127.0.0.1:$G1_PORT"
G2="http://127.0.0.1:$G2_PORT"
SECRET="event-loop-test-secret-0123456789abcdef-0123"
G1_MAX_BODY=1024

GATEWAY_CONFIG_FILE="$TEST_DIR/gateway.json"
jq -n --arg url "$FIXTURE" '{
	upstreams: {fixture: {url: $url}},
	routes: [
		{prefix: "/fixture", upstream: "fixture", rewrite: "/", access: "public", timeout_ms: 5000},
		{prefix: "/private", upstream: "fixture", rewrite: "/", access: "authenticated", timeout_ms: 5000}
	]}' >"$GATEWAY_CONFIG_FILE"
GATEWAY_ENV=(
	GATEWAY_CONFIG="$GATEWAY_CONFIG_FILE"
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	JWT_SECRET="$SECRET"
	RATE_LIMIT_WINDOW_SECONDS=60
	RATE_LIMIT_ANONYMOUS=1000000
	RATE_LIMIT_FREE=1000000
	RATE_LIMIT_PREMIUM=1000000
	WORKER_THREADS=8 # only read with SERVER_CORE=threads (civetweb)
)

section "start-up"
step "start-up"
must_start "redis-server answers PING on port $REDIS_PORT" \
	start_redis "$REDIS_PORT" "$TEST_DIR/redis"
must_start "the upstream fixture is ready on $FIXTURE" \
	start_fixture "$TEST_DIR/fixture" "$FIXTURE_PORT"
must_start "gateway G1 (LOOP_THREADS=1, MAX_BODY_BYTES=$G1_MAX_BODY) is healthy on $G1" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-1" "$G1_PORT" "${GATEWAY_ENV[@]}" \
	LOOP_THREADS=1 MAX_BODY_BYTES="$G1_MAX_BODY"
G1_PID=$GATEWAY_PID
must_start "gateway G2 (LOOP_THREADS=2) is healthy on $G2" \
	start_gateway "$GATEWAY" "$TEST_DIR/gateway-2" "$G2_PORT" "${GATEWAY_ENV[@]}" LOOP_THREADS=2
G2_PID=$GATEWAY_PID

# fixture_count "METHOD /path": how many such requests reached the fixture.
fixture_count() {
	curl -s --max-time 5 "$FIXTURE/stats" | jq -r --arg key "$1" '.[$key] // 0'
}
# fixture_total: every request that reached the fixture (but /stats).
fixture_total() {
	curl -s --max-time 5 "$FIXTURE/stats" | jq -r '[.[]] | add // 0'
}
# sha256_of FILE
sha256_of() {
	sha256sum "$1" | cut -d ' ' -f 1
}

# ---------------------------------------------------------------------------
section "slow clients, started now (their answers are read at the end)"
# A client that opens a connection and then sends slowly, or stops, holds
# a socket and a buffer. The core gives a request REQUEST_TIMEOUT_MS (10 s)
# from its first byte to arrive whole, then answers 408 and closes. Three
# such clients, on G1, in the background: one stops halfway through its
# head, one halfway through its body, and one sends a byte every 0.25 s
# (the deadline must not move with each byte, or it never comes). Each
# waits at most 15 s for the server to close.
# ---------------------------------------------------------------------------
SLOW_HEAD=$(request slow-head 'GET /fixture/big?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ')
SLOW_BODY=$(request slow-body 'POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten..')
TRICKLE=$(request trickle "GET /fixture/big?bytes=1 HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nX-Drip: $(printf 'd%.0s' $(seq 1 60))")
declare -A SLOW_PIDS=()
for slow in slow-head slow-body trickle; do
	case $slow in
	slow-head) actions=(send "$SLOW_HEAD" until-close 15) ;;
	slow-body) actions=(send "$SLOW_BODY" until-close 15) ;;
	trickle) actions=(trickle "$TRICKLE" 0.25 until-close 15) ;;
	esac
	start_program "raw client $slow" "$TEST_DIR/$slow" \
		/usr/bin/python3 "$RAW_CLIENT" talk "$G1_PORT" "${actions[@]}"
	SLOW_PIDS[$slow]=$SERVER_PID
done

# ---------------------------------------------------------------------------
section "1. malformed requests: refused with a status, then the connection closed"
# Threat: request smuggling. When two servers on a request's way (a load
# balancer, this gateway, a service) read the same bytes as different
# requests, a request hidden in another one's body reaches the service
# unchecked. Where a lenient parser and a strict one could disagree (a
# bare LF, a folded header line, two lengths), the core refuses the
# request outright and closes the connection: after a framing error no
# later byte on it can be trusted. Each case runs on a fresh connection;
# the positive controls show the same requests, well formed, get through.
# ---------------------------------------------------------------------------
ECHO_BEFORE=$(fixture_count 'POST /echo')

step "request line ending in a bare LF"
talk "$G1_PORT" send "$(request bare-lf 'GET /fixture/big?bytes=1 HTTP/1.1\nHost: 127.0.0.1\n\n')" until-close 5
expect_refusal 0 400

step "obs-fold (a header line starting with a space)"
talk "$G1_PORT" send "$(request obs-fold 'GET /fixture/big?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Folded: one\r\n two\r\n\r\n')" until-close 5
expect_refusal 0 400

# CL.TE: a front end going by Content-Length forwards all of it as one
# request; a back end going by Transfer-Encoding ends the body at "0" and
# reads "GET /fixture/smuggled" as a second request of its own.
SMUGGLED_BODY='0\r\n\r\nGET /fixture/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
SMUGGLED_LENGTH=$(printf '%b' "$SMUGGLED_BODY" | wc -c)
step "Content-Length and Transfer-Encoding: chunked together (smuggling)"
talk "$G1_PORT" send "$(request cl-te "POST /fixture/echo HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Length: $SMUGGLED_LENGTH\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n$SMUGGLED_BODY")" until-close 5
expect_refusal 0 400
check_eq "the fixture never saw it: POST /echo count unchanged" "$ECHO_BEFORE" "$(fixture_count 'POST /echo')"
check_eq "nor the request hidden in its body: GET /smuggled count 0" 0 "$(fixture_count 'GET /smuggled')"

# HTTP/1.0 has no chunked coding: a 1.0 front end does not read
# "Transfer-Encoding: chunked" as the end of the body, so it and we can
# disagree on where the next request starts. RFC 9112 6.1: a server that
# receives an HTTP/1.0 message with Transfer-Encoding MUST treat its
# framing as faulty and close the connection after processing it, even
# when the client asked for keep-alive. Whatever the answer to the POST
# (200 or 400), the GET written behind it must never run.
step "HTTP/1.0 with Transfer-Encoding: chunked and keep-alive, a request behind it"
talk "$G1_PORT" send "$(request http10-chunked 'POST /fixture/echo HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /fixture/after-http10-chunked HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n')" until-close 5
check_eq "one answer, then the server closed the connection" "1 answer/closed" \
	"$(raw '"\(.responses | length) answer\(if (.responses | length) == 1 then "" else "s" end)/\(if .closed then "closed" else "open" end)"')"
check_eq "the request behind it never reached the fixture" 0 "$(fixture_count 'GET /after-http10-chunked')"
ECHO_BEFORE=$(fixture_count 'POST /echo')

step "two different Content-Lengths"
talk "$G1_PORT" send "$(request two-lengths 'POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!')" until-close 5
expect_refusal 0 400
check_eq "the fixture never saw it: POST /echo count unchanged" "$ECHO_BEFORE" "$(fixture_count 'POST /echo')"

step "Transfer-Encoding: gzip"
talk "$G1_PORT" send "$(request te-gzip 'POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n')" until-close 5
expect_refusal 0 501

step "HTTP/2.0 in the request line"
talk "$G1_PORT" send "$(request http2 'GET /fixture/big?bytes=1 HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n')" until-close 5
expect_refusal 0 505

# The head may take 16384 bytes (HEAD_MAX) and 64 header fields.
A_15K=$(head -c 15000 /dev/zero | tr '\0' a)
A_20K=$(head -c 20480 /dev/zero | tr '\0' a)
step "a 20 KB header"
talk "$G1_PORT" send "$(request header-20k "GET /fixture/big?bytes=1 HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nX-Big: $A_20K\\r\\n\\r\\n")" until-close 5
expect_refusal 0 431
REFUSAL_431=$RAW

# header_lines N: N lines "X-Field-i: v", CRLF-terminated, for request().
header_lines() {
	local i
	for i in $(seq 1 "$1"); do
		printf 'X-Field-%d: v\\r\\n' "$i"
	done
}
step "65 header fields"
talk "$G1_PORT" send "$(request headers-65 "GET /fixture/big?bytes=1 HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n$(header_lines 64)\\r\\n")" until-close 5
expect_refusal 0 431

# Positive controls, each on a fresh connection after the refusals above.
step "positive control: a well-formed POST with the smuggling request's body"
talk "$G1_PORT" send "$(request cl-only "POST /fixture/echo HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Length: $SMUGGLED_LENGTH\\r\\n\\r\\n$SMUGGLED_BODY")" read 1
expect_statuses 200
check_eq "the fixture saw it: POST /echo count + 1" "$((ECHO_BEFORE + 1))" "$(fixture_count 'POST /echo')"
check_eq "as one request: GET /smuggled count still 0" 0 "$(fixture_count 'GET /smuggled')"

step "positive control: a 15 KB header, and 64 header fields"
talk "$G1_PORT" send "$(request header-15k "GET /fixture/big?bytes=1 HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nX-Big: $A_15K\\r\\n\\r\\n")" read 1
expect_statuses 200
# (To a route the gateway answers itself: the proxy passes on at most
# MAX_REQUEST_HEADERS (48) fields, 431 beyond, so that its own still fit
# in an upstream's 64; tests/phase2.sh checks that.)
talk "$G1_PORT" send "$(request headers-64 "GET /health HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n$(header_lines 63)\\r\\n")" read 1
expect_statuses 200

# What a refusal says. docs/api.md: every error is a problem whose title
# is the status's name, and every response carries X-Request-Id (the
# problem's request_id). The core answers these before any middleware
# runs, so it must do both itself. Checked once, on the 431 above.
step "what a refusal says (the 431 above)"
RAW=$REFUSAL_431
check_eq "the problem's title is the status's name" "Request Header Fields Too Large" \
	"$(raw '.responses[0].body | fromjson? | .title')"
check_eq "it carries an X-Request-Id, the problem's request_id" "header = request_id, not empty" \
	"$(raw '.responses[0] | (.headers["x-request-id"] // "") as $id | (.body | fromjson? | .request_id) as $rid
		| if $id != "" and $rid == $id then "header = request_id, not empty"
		  else "X-Request-Id \(if $id == "" then "absent" else $id | tojson end), request_id \($rid | tojson)" end')"
check_eq "no empty \"instance\" (the request never had a path)" "absent" \
	"$(raw '.responses[0].body | fromjson? | if has("instance") then "instance \(.instance | tojson)" else "absent" end')"

# ---------------------------------------------------------------------------
section "2. paths: a route is chosen on the normalized path"
# Threat: walking out of a route. The gateway proxies /fixture/... to
# anyone and /private/... only with a token. A client sends
# /fixture/../private/big, in plain or percent-encoded dots and slashes: a
# gateway that matched the raw path would take it for a public /fixture
# request and send it on, and whatever resolves the dots behind it
# (the upstream, a CDN) serves /private's content without a token. The core
# decodes and normalizes the path first (http_parser.c), so the router sees
# /private/big: the token is demanded (401) and nothing reaches the
# fixture. Positive controls: with a valid token the same paths are
# answered (so the 401 is about the token, not a broken path), and dot
# segments that stay inside /fixture work.
# ---------------------------------------------------------------------------
now=$(date +%s)
TOKEN=$(make_token HS256 "$SECRET" "$(jq -cn --argjson now "$now" \
	'{sub: "alice", tier: "free", iat: $now, exp: ($now + 600)}')")
ESCAPES=(
	'/fixture/../private/big?bytes=4'
	'/fixture/%2e%2e/private/big?bytes=4'
	'/fixture/.%2E/private/big?bytes=4'
	'/fixture/%2e%2e%2fprivate/big?bytes=4'
	'/fixture/x/..%2F..%2Fprivate/big?bytes=4'
)
TOTAL_BEFORE=$(fixture_total)
for path in "${ESCAPES[@]}"; do
	step "GET $path without a token"
	talk "$G1_PORT" send "$(request escape "GET $path HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n")" until-close 5
	expect_statuses 401
done
step "the escapes"
check_eq "none reached the fixture (its request count unchanged)" "$TOTAL_BEFORE" "$(fixture_total)"

for path in '/private/big?bytes=4' '/fixture/%2e%2e/private/big?bytes=4'; do
	step "positive control: GET $path with a valid token"
	talk "$G1_PORT" send "$(request escape-token "GET $path HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nAuthorization: Bearer $TOKEN\\r\\nConnection: close\\r\\n\\r\\n")" until-close 5
	expect_statuses 200
	check_eq "the fixture's 4 bytes" xxxx "$(raw '.responses[0].body')"
done

step "positive control: GET /fixture/x/../big?bytes=3 (dots inside the route)"
talk "$G1_PORT" send "$(request inside 'GET /fixture/x/../big?bytes=3 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')" until-close 5
expect_statuses 200
check_eq "the fixture's 3 bytes" xxx "$(raw '.responses[0].body')"

step "GET /fixture/%2e%2e/metrics is the gateway's own /metrics"
TOTAL_BEFORE=$(fixture_total)
talk "$G1_PORT" send "$(request to-metrics 'GET /fixture/%2e%2e/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')" until-close 5
expect_statuses 200
check_match "Prometheus text, not the fixture's" '^# (HELP|TYPE) ' "$(raw '.responses[0].body' | head -n 1)"
check_eq "the fixture saw nothing" "$TOTAL_BEFORE" "$(fixture_total)"

# A NUL cuts a C string short: "/fixture/big%00/../../private" would be
# matched as one path and used as another.
step "%00 in the path"
talk "$G1_PORT" send "$(request nul-encoded 'GET /fixture/big%00?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" until-close 5
expect_refusal 0 400
step "a raw NUL byte in the path"
talk "$G1_PORT" send "$(request nul-raw 'GET /fixture/big\0?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" until-close 5
expect_refusal 0 400

# ---------------------------------------------------------------------------
section "3. keep-alive and pipelining"
# HTTP/1.1 keeps a connection open unless a side says "close"; HTTP/1.0
# closes it unless the client asked for keep-alive. A client may also send
# its next request before the answer to the last one (pipelining): the
# answers must come back whole and in order. The first request here waits
# 300 ms on the upstream and the second does not, so a core that answered
# in completion order would give them back swapped.
# ---------------------------------------------------------------------------
step "two pipelined requests in one send, then a third on the same connection"
talk "$G1_PORT" \
	send "$(request pipelined 'GET /fixture/slow?ms=300 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /fixture/big?bytes=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" read 2 \
	send "$(request third 'GET /fixture/big?bytes=3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" read 1
expect_statuses "200 200 200"
check_eq "in order: the slow one's answer first" '{"slept_ms": 300}|xx|xxx' \
	"$(raw '[.responses[].body] | join("|")')"
expect_open

# The next request may also arrive while the one before it is still
# running (here: once the fixture has it). The core must not lose sight of
# those bytes: it reads them when the first answer is out.
step "a second request sent while the first waits on the upstream"
SLOW_BEFORE=$(fixture_count 'GET /slow')
talk "$G1_PORT" send "$(request while-1 'GET /fixture/slow?ms=300 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" \
	wait-upstream "$FIXTURE/stats" 'GET /slow' $((SLOW_BEFORE + 1)) \
	send "$(request while-2 'GET /fixture/big?bytes=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" read 2
expect_statuses "200 200"
check_eq "in order" '{"slept_ms": 300}|xx' "$(raw '[.responses[].body] | join("|")')"

# A client may pipeline more than the core buffers at once (its input
# buffer holds HEAD_MAX + 2 x MAX_BODY_BYTES + 64 KiB: 82 KiB on G1). The
# rest must wait in the socket until the buffered requests are served: no
# single request here is large, so none may be refused as too large.
# 800 requests of 243 bytes (padded with a header): 190 KiB in one send.
PAD=$(head -c 180 /dev/zero | tr '\0' p)
for i in $(seq 1 800); do
	printf 'GET /fixture/big?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\n\r\n' "$PAD"
done >"$TEST_DIR/requests/pipelined-800"
step "800 pipelined requests (190 KiB) in one send"
talk "$G1_PORT" send "$TEST_DIR/requests/pipelined-800" read 800
check_eq "800 answers, all 200" "800 x 200" \
	"$(raw '[.responses[].status] | group_by(.) | map("\(length) x \(.[0])") | join(", ")')"

# Threat: memory exhaustion. A client pipelines requests for big answers
# and reads none of them. Each answer the core produces must wait until
# the one before it has gone into the socket; otherwise they pile up in
# the gateway's memory (here 40 x 1 MB, from 3 KB of requests, and without
# end as the client sends more). What the kernel can hold for a client
# that reads nothing is the gateway's send buffer (net.ipv4.tcp_wmem, at
# most) and the client's receive buffer (fixed at 64 KiB here): the core
# may have built that many answers, plus the one it is still sending and
# one more. Each answer writes its access-log line once it is built, which
# is how the check counts them. Positive control: the same requests, read,
# are all answered.
# big_requests ID_PREFIX: 40 requests for 1 MB, with X-Request-Id
# ID_PREFIX-1 to ID_PREFIX-40.
big_requests() {
	local i
	for i in $(seq 1 40); do
		printf 'GET /fixture/big?bytes=1000000 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: %s-%d\r\n\r\n' "$1" "$i"
	done
}
big_requests read >"$TEST_DIR/requests/read-40"
big_requests unread >"$TEST_DIR/requests/unread-40"
SEND_BUFFER_MAX=$(awk '{ print $3 }' /proc/sys/net/ipv4/tcp_wmem)
UNREAD_BOUND=$(((SEND_BUFFER_MAX + 2 * 65536 + 999999) / 1000000 + 2))
# unread_answers: how many answers to unread-N requests G1 has built.
unread_answers() {
	grep -c '"request_id":"unread-' "$TEST_DIR/gateway-1.out"
}
step "40 pipelined 1 MB answers, read (positive control)"
talk "$G1_PORT" send "$TEST_DIR/requests/read-40" read 40
check_eq "40 answers, all 200" "40 x 200" \
	"$(raw '[.responses[].status] | group_by(.) | map("\(length) x \(.[0])") | join(", ")')"
step "40 pipelined 1 MB answers, never read"
talk "$G1_PORT" --rcvbuf 65536 send "$TEST_DIR/requests/unread-40" idle 2 close
check_num "G1 built at most $UNREAD_BOUND of the answers in 2 s" "$(unread_answers)" '<=' "$UNREAD_BOUND"

step "HTTP/1.0 without keep-alive"
talk "$G1_PORT" send "$(request http10 'GET /fixture/big?bytes=4 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n')" until-close 5
expect_statuses 200
check_eq "Connection: close, and the server closed it" "close/true" \
	"$(raw '"\(.responses[0].headers.connection // "no Connection header")/\(.closed)"')"

step "HTTP/1.0 with Connection: keep-alive"
talk "$G1_PORT" send "$(request http10-keep-alive 'GET /fixture/big?bytes=4 HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n')" read 1 \
	send "$(request http10-again 'GET /fixture/big?bytes=5 HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n')" read 1
expect_statuses "200 200"
expect_open

step "HTTP/1.1 with Connection: close"
talk "$G1_PORT" send "$(request close 'GET /fixture/big?bytes=5 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')" until-close 5
expect_statuses 200
check_eq "Connection: close, and the server closed it" "close/true" \
	"$(raw '"\(.responses[0].headers.connection // "no Connection header")/\(.closed)"')"

# ---------------------------------------------------------------------------
section "4. Expect: 100-continue (G1, MAX_BODY_BYTES=$G1_MAX_BODY)"
# A client with a body can ask first whether the server wants it: it sends
# the head with "Expect: 100-continue" and waits. "100 Continue" means send
# it; a final status instead (413 here) means don't, and the body never
# crosses the network. The client below sends nothing more until it has
# read an answer.
# ---------------------------------------------------------------------------
head -c "$G1_MAX_BODY" /dev/urandom >"$TEST_DIR/body-limit.bin"
step "POST /fixture/echo, $G1_MAX_BODY random bytes (at the limit), Expect: 100-continue"
talk "$G1_PORT" \
	send "$(request expect-head "POST /fixture/echo HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Type: application/octet-stream\\r\\nContent-Length: $G1_MAX_BODY\\r\\nExpect: 100-continue\\r\\n\\r\\n")" \
	read 1 send "$TEST_DIR/body-limit.bin" read 1
expect_statuses "100 200"
check_eq "the fixture got the body whole (X-Body-Sha256)" "$(sha256_of "$TEST_DIR/body-limit.bin")" \
	"$(raw '.responses[1].headers["x-body-sha256"] // "none"')"
check_eq "and it came back whole" "$(sha256_of "$TEST_DIR/body-limit.bin")" "$(raw '.responses[1].body_sha256 // "none"')"

step "POST /fixture/echo, Content-Length $((G1_MAX_BODY + 1)), Expect: 100-continue"
ECHO_BEFORE=$(fixture_count 'POST /echo')
talk "$G1_PORT" send "$(request expect-over "POST /fixture/echo HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Type: application/octet-stream\\r\\nContent-Length: $((G1_MAX_BODY + 1))\\r\\nExpect: 100-continue\\r\\n\\r\\n")" until-close 5
expect_statuses 413 # and so no 100 Continue before it
expect_refusal 0 413
check_num "answered without waiting for the body (seconds)" "$(raw '.close_seconds // "none"')" '<' 2
check_eq "nothing reached the fixture: POST /echo count unchanged" "$ECHO_BEFORE" "$(fixture_count 'POST /echo')"

# ---------------------------------------------------------------------------
section "5. a chunked body, in odd pieces (G2)"
# 40000 random bytes (NUL, CR and LF among them) as chunks of 1, 2, 3, 0x1F,
# 0xAB (with an extension), 0x101, 4093, 8191 bytes and the rest, sizes in
# upper and lower case, then two trailer fields, and a pipelined GET right
# behind. Sent in four writes split mid size line, between a CR and its LF
# and mid trailer, so the decoder must resume anywhere. The fixture
# hashes what it got (X-Body-Sha256).
# ---------------------------------------------------------------------------
head -c 40000 /dev/urandom >"$TEST_DIR/body-40000.bin"
/usr/bin/python3 "$RAW_CLIENT" chunk "$TEST_DIR/body-40000.bin" /fixture/echo "$TEST_DIR/requests/chunked"
step "POST /fixture/echo, 40000 bytes chunked, then GET /fixture/big?bytes=2"
talk "$G2_PORT" send "$TEST_DIR/requests/chunked.1" idle 0.05 send "$TEST_DIR/requests/chunked.2" idle 0.05 \
	send "$TEST_DIR/requests/chunked.3" idle 0.05 send "$TEST_DIR/requests/chunked.4" read 2
expect_statuses "200 200"
check_eq "the fixture got the decoded body whole (X-Body-Sha256)" "$(sha256_of "$TEST_DIR/body-40000.bin")" \
	"$(raw '.responses[0].headers["x-body-sha256"] // "none"')"
check_eq "and it came back whole" "$(sha256_of "$TEST_DIR/body-40000.bin")" "$(raw '.responses[0].body_sha256 // "none"')"
check_eq "the pipelined GET after the trailer was answered" xx "$(raw '.responses[1].body // "none"')"

step "a chunk size that is not hex"
talk "$G2_PORT" send "$(request chunked-bad 'POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n')" until-close 5
expect_refusal 0 400

# ---------------------------------------------------------------------------
section "6. clients that hang up while their request waits on the upstream (G1)"
# With one loop thread, every connection of G1 is served by the same
# thread. A request that waits on the upstream (/fixture/slow?ms=3000)
# must not hold the thread, and when its client goes away - with a FIN, or
# a reset - the request still ends cleanly: no crash, the loop not wedged,
# its socket closed (not left in CLOSE-WAIT for the keep-alive timeout).
# The same for a client that asks for 4 MB and hangs up after 1000 bytes.
# Each client hangs up only once the fixture has counted its request.
# ---------------------------------------------------------------------------
SLOW_BEFORE=$(fixture_count 'GET /slow')
step "hang up (FIN) while GET /fixture/slow?ms=3000 waits"
talk "$G1_PORT" send "$(request hangup-fin 'GET /fixture/slow?ms=3000 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: hangup-fin\r\n\r\n')" \
	wait-upstream "$FIXTURE/stats" 'GET /slow' $((SLOW_BEFORE + 1)) close
check_eq "the request reached the fixture before the client left" null "$(raw .error)"

step "hang up (RST) while GET /fixture/slow?ms=3000 waits"
talk "$G1_PORT" send "$(request hangup-rst 'GET /fixture/slow?ms=3000 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: hangup-rst\r\n\r\n')" \
	wait-upstream "$FIXTURE/stats" 'GET /slow' $((SLOW_BEFORE + 2)) reset
check_eq "the request reached the fixture before the client left" null "$(raw .error)"

step "while both wait"
http GET "$G1/health"
expect_status 200
check_num "/health answered in under a second (seconds)" "$HTTP_TIME" '<' 1
http GET "$G1/fixture/big?bytes=6"
expect_status 200
check_eq "a proxied request is answered too" xxxxxx "$HTTP_BODY"

step "hang up after 1000 bytes of a 4 MB answer"
talk "$G1_PORT" send "$(request hangup-big 'GET /fixture/big?bytes=4000000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" read-bytes 1000 close
check_eq "1000 bytes came before the client left" null "$(raw .error)"

# access_logged ID: G1's access log has a line for request id ID.
access_logged() {
	grep -q "\"request_id\":\"$1\"" "$TEST_DIR/gateway-1.out"
}
# no_close_wait PORT: no server socket on PORT waits for its owner to close it.
no_close_wait() {
	[ -z "$(ss -Htn state close-wait "( sport = :$1 )")" ]
}
step "after the hang-ups"
for id in hangup-fin hangup-rst; do
	check_true "the abandoned request $id ran to its end (access log line)" poll_until 8 access_logged "$id"
done
if poll_until 8 no_close_wait "$G1_PORT"; then
	pass "no G1 socket is left in CLOSE-WAIT"
else
	fail "no G1 socket is left in CLOSE-WAIT" \
		"after 8 s: $(ss -Htn state close-wait "( sport = :$G1_PORT )" | wc -l) of them"
fi
check_true "G1 is still running" pid_alive "$G1_PID"
http GET "$G1/health"
expect_status 200
http GET "$G1/fixture/big?bytes=7"
expect_status 200

# ---------------------------------------------------------------------------
section "7. many connections at once"
# 300 connections, all open before any sends (a barrier), then 3 keep-alive
# requests on each: every answer 200, no connection closed early. On G1 one
# loop thread holds all of them; on G2 two share them. Either way more
# requests arrive at once than a loop runs (LOOP_MAX_REQUESTS, 64): the
# rest wait their turn. The requests go to
# the gateway's own /metrics: proxied ones would open up to 300
# connections to the fixture at once, more than Python's listen backlog
# (5) takes, and test the fixture instead of the core.
# ---------------------------------------------------------------------------
for gateway in G1 G2; do
	port_var="${gateway}_PORT"
	step "$gateway: 300 connections x 3 GET /metrics"
	if ! CROWD=$(/usr/bin/python3 "$RAW_CLIENT" crowd "${!port_var}" 300 3 /metrics 2>&1); then
		CROWD=$(jq -cn --arg error "$CROWD" '{statuses: {}, problem_count: 1, problems: [$error]}')
	fi
	check_eq "900 answers, all 200" '{"200":900}' "$(jq -c '.statuses' <<<"$CROWD")"
	check_eq "no connection failed or closed early" 0 \
		"$(jq -r 'if .problem_count == 0 then 0 else "\(.problem_count), first: \(.problems)" end' <<<"$CROWD")"
	echo "# $(jq -r '.seconds' <<<"$CROWD") s"
done

# ---------------------------------------------------------------------------
section "8. slow clients (started at the top), and an idle keep-alive connection"
# ---------------------------------------------------------------------------
# slow_clients_done: every background slow client has exited.
slow_clients_done() {
	local pid
	for pid in "${SLOW_PIDS[@]}"; do
		pid_alive "$pid" && return 1
	done
	return 0
}
poll_until 16 slow_clients_done
stop_pids "${SLOW_PIDS[@]}" # reaps them (already gone unless 16 s passed)
for slow in slow-head slow-body trickle; do
	case $slow in
	slow-head) step "a client that stops halfway through its head" ;;
	slow-body) step "a client that stops halfway through its body" ;;
	trickle) step "a client that sends its head a byte every 0.25 s" ;;
	esac
	RAW=$(cat "$TEST_DIR/$slow.out" 2>/dev/null)
	[ -n "$RAW" ] || RAW='{"responses": [], "closed": false, "error": "still waiting after 16 s (stopped)"}'
	expect_statuses 408
	expect_refusal 0 408
	check_num "closed no sooner than REQUEST_TIMEOUT (10 s) after its first byte (seconds)" \
		"$(raw '.close_seconds // "none"')" '>=' 9.5
	check_num "and not much later (seconds)" "$(raw '.close_seconds // "none"')" '<=' 12.5
	echo "# closed $(raw '.close_seconds // "never"') s after its first byte"
done

step "a keep-alive connection idle for 2 s"
talk "$G1_PORT" send "$(request idle-1 'GET /fixture/big?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" read 1 idle 2 \
	send "$(request idle-2 'GET /fixture/big?bytes=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')" read 1
expect_statuses "200 200"
expect_open

# ---------------------------------------------------------------------------
section "clean stop, and sanitizers"
# Each gateway stops on SIGTERM with exit 0, after everything above (under
# ASan, a leak found at exit makes it non-zero). With build/asan/bin,
# AddressSanitizer, LeakSanitizer and UBSan write their reports to
# stderr: any is a failure.
# ---------------------------------------------------------------------------
step "SIGTERM"
declare -A SERVER_NAMES=([$G1_PID]="gateway G1" [$G2_PID]="gateway G2"
	[$FIXTURE_PID]="upstream fixture")
check_clean_stop

finish
