#!/usr/bin/python3
"""tests/upstream_fixture.py - a tiny scripted upstream for the gateway's
black-box tests: it answers exactly what a test needs to see what the
gateway does with bodies, sizes and dropped keep-alive connections, and
counts what reached it. Python 3 standard library only.

  upstream_fixture.py PORT      listens on 127.0.0.1:PORT (HTTP/1.1,
                                keep-alive) and prints "ready" once it does;
                                SIGTERM or SIGINT stops it (exit 0)

Endpoints:
  POST /echo, PUT /echo   200 with exactly the request body's bytes and its
                          Content-Type, plus X-Body-Sha256: the SHA-256 (hex)
                          of the bytes that arrived here.
  GET /big?bytes=N        200 with N bytes of "x" (Content-Length: N).
  GET /slow?ms=N          sleeps N milliseconds (0..MAX_SLOW_MS), then 200
                          {"slept_ms": N}: an upstream the gateway waits on,
                          so a client can hang up while it does.
  GET /flaky, POST /flaky a keep-alive connection the upstream drops just as
                          the gateway reuses it. On each connection, the
                          first /flaky request of a method is answered (200,
                          small JSON); the second of that method on the same
                          connection is read completely and then the
                          connection is closed without a byte of answer. A
                          request on a fresh connection is always answered.
  any /cacheable          200 (or ?status=N) {"served": N, "method", "user"}:
                          N requests of that method to /cacheable before this
                          one, and the X-User-Id the gateway passed; the
                          answer carries Cache-Control, Vary and Set-Cookie
                          from ?cc=, ?vary= and ?cookie= (the response
                          cache's tests).
  GET /framing/KIND       an answer framed as KIND says, written raw, then the
                          connection closed: chunked (with an extension and a
                          trailer), continue (a 100 before the 200),
                          until-close (no length), both (Content-Length and
                          chunked), two-lengths, short (cut off mid-body).
  GET /stats              {"GET /flaky": 3, "POST /echo": 2, ...}: requests
                          received per method and path (query left out;
                          /stats itself not counted), dropped ones included.
  GET /health             200 {"status": "ok"} (the gateway's /health asks).
  any /headers            200 {"headers": [[name, value], ...], "body_bytes": N}:
                          every request header line exactly as it arrived, in
                          order (a repeated one twice), so a test sees what
                          the gateway passed on, added or dropped.
  any method /conformance/...
                          200 {"target": ..., "body_length": N}: what
                          tests/conformance/run.py sends through the
                          servers under test; any method is accepted.
  GET /record             [{"connection", "method", "target", "version",
                          "headers": [[name, value]...], "body"}, ...]:
                          exactly what arrived, request by request, in
                          order (every request but /record, /stats and
                          /health), so a test can see what a server in
                          front let through. The body is text as Latin-1
                          (every byte one character); a chunked request
                          body is recorded decoded.

Why "per method" on /flaky: the test sends GET /flaky twice and then POST
/flaky twice through a gateway with one worker thread, so all of it can
travel on one pooled connection. Counting per method, the first POST is
answered wherever it lands (even on the connection the GET retry opened),
and the second POST is dropped on a connection the gateway reused - the
case the gateway must not retry. Counting every request, the first POST
would already be the second request on that connection.

Why it closes only AFTER reading the second request: libcurl checks a pooled
connection before it reuses it and quietly opens a new one when the peer
has already closed it. Closing before the request arrives would test that
check, not the gateway's retry; closing after it has been sent is the race
the retry is for.

http.server makes one handler instance per connection and calls it for
every request that connection carries, so an attribute set on self in
setup() (the per-connection counts below) lives exactly as long as the
connection. Each response says which connection carried it
(X-Fixture-Connection, X-Fixture-Request-On-Connection), which shows it.
"""

import hashlib
import itertools
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BIG_BYTES = 64 << 20
MAX_SLOW_MS = 60000

stats_lock = threading.Lock()
stats = {}                       # "METHOD /path" -> requests received
record = []                      # what arrived (GET /record), under stats_lock
connection_ids = itertools.count(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"    # keep-alive unless the client says close
    server_version = "upstream-fixture"
    # Headers and body go out in two writes; with Nagle's algorithm on, the
    # second would wait for the gateway's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        # One handler per connection (see the module comment).
        with stats_lock:
            self.connection_id = next(connection_ids)
        self.requests_on_connection = 0
        self.flaky_seen = {}             # method -> /flaky requests so far

    def log_message(self, format, *args):
        sys.stderr.write("upstream_fixture: connection %d: %s\n"
                         % (self.connection_id, format % args))

    # ---- helpers ----

    def read_body(self):
        if (self.headers.get("Transfer-Encoding") or "").strip().lower() == "chunked":
            return self.read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def read_chunked_body(self):
        """A chunked body, decoded (trailers read and dropped); a server in
        front may pass one on as it came."""
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += self.rfile.read(size)
            self.rfile.readline()            # the CRLF after the data
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass                             # trailer lines
        return body

    def keep(self, body):
        """Adds what arrived to the record (GET /record)."""
        with stats_lock:
            record.append({"connection": self.connection_id, "method": self.command,
                           "target": self.path, "version": self.request_version,
                           "headers": [[name, value] for name, value in self.headers.items()],
                           "body": body.decode("latin-1")})

    def count(self, path):
        with stats_lock:
            key = "%s %s" % (self.command, path)
            stats[key] = stats.get(key, 0) + 1

    def reply(self, status, body, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Fixture-Connection", str(self.connection_id))
        self.send_header("X-Fixture-Request-On-Connection", str(self.requests_on_connection))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status, value):
        self.reply(status, json.dumps(value).encode())

    # ---- one request ----

    def serve(self):
        url = urlsplit(self.path)
        self.requests_on_connection += 1
        body = self.read_body()          # always all of it: keep-alive stays in step
        if url.path != "/stats":
            self.count(url.path)
        if url.path not in ("/record", "/stats", "/health"):
            self.keep(body)

        if url.path == "/echo" and self.command in ("POST", "PUT"):
            content_type = self.headers.get("Content-Type") or "application/octet-stream"
            self.reply(200, body, content_type,
                       [("X-Body-Sha256", hashlib.sha256(body).hexdigest())])
        elif url.path == "/big" and self.command == "GET":
            try:
                size = int(parse_qs(url.query).get("bytes", [""])[0])
            except ValueError:
                size = -1
            if not 0 <= size <= MAX_BIG_BYTES:
                self.reply_json(400, {"error": "bytes must be 0..%d" % MAX_BIG_BYTES})
                return
            self.reply(200, b"x" * size, "application/octet-stream")
        elif url.path == "/slow" and self.command == "GET":
            try:
                delay_ms = int(parse_qs(url.query).get("ms", [""])[0])
            except ValueError:
                delay_ms = -1
            if not 0 <= delay_ms <= MAX_SLOW_MS:
                self.reply_json(400, {"error": "ms must be 0..%d" % MAX_SLOW_MS})
                return
            time.sleep(delay_ms / 1000)
            self.reply_json(200, {"slept_ms": delay_ms})
        elif url.path == "/flaky" and self.command in ("GET", "POST"):
            seen = self.flaky_seen.get(self.command, 0) + 1
            self.flaky_seen[self.command] = seen
            if seen >= 2:
                # Read completely (above), now hang up without a word.
                self.log_message("dropping %s /flaky (request %d on this connection)",
                                 self.command, self.requests_on_connection)
                self.close_connection = True
                return
            self.reply_json(200, {"method": self.command, "connection": self.connection_id,
                                  "request_on_connection": self.requests_on_connection})
        elif url.path.startswith("/conformance/"):
            self.reply_json(200, {"target": self.path, "body_length": len(body)})
        elif url.path == "/record" and self.command == "GET":
            with stats_lock:
                snapshot = list(record)
            self.reply_json(200, snapshot)
        elif url.path == "/stats" and self.command == "GET":
            with stats_lock:
                snapshot = dict(stats)
            self.reply_json(200, snapshot)
        elif url.path == "/cacheable":
            # For the gateway's response cache: the answer carries what the
            # query asks for (cc: Cache-Control, vary, cookie: Set-Cookie,
            # status), and says how many requests for this path the
            # fixture has served, and for whom (X-User-Id), so a test can
            # tell a cached answer from a fresh one.
            query = parse_qs(url.query)
            headers = [(name, query[key][0]) for key, name in
                       (("cc", "Cache-Control"), ("vary", "Vary"), ("cookie", "Set-Cookie"))
                       if key in query]
            with stats_lock:
                served = stats.get("%s /cacheable" % self.command, 0)
            status = int(query.get("status", ["200"])[0])
            self.reply(status, json.dumps({"served": served, "method": self.command,
                                           "user": self.headers.get("X-User-Id")}).encode(),
                       "application/json", headers)
        elif url.path.startswith("/framing/"):
            # Answers framed every way HTTP/1.1 allows (and one way it does
            # not), written byte for byte, for the gateway's client.
            kind = url.path[len("/framing/"):]
            raw = {
                "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
                "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter",
                "until-close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nto the end",
                "both": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                "short": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            }.get(kind)
            if raw is None:
                self.reply_json(404, {"error": "no such framing"})
                return
            self.wfile.write(raw)
            self.wfile.flush()
            # Every one of them ends the connection here: the gateway must
            # not reuse it (and "short" is cut off mid-body).
            self.close_connection = True
        elif url.path == "/headers":
            self.reply_json(200, {"headers": [[name, value] for name, value in self.headers.items()],
                                  "body_bytes": len(body)})
        elif url.path == "/health" and self.command == "GET":
            self.reply_json(200, {"status": "ok"})
        else:
            self.reply_json(404, {"error": "no such endpoint", "method": self.command,
                                  "path": url.path})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = serve

    def __getattr__(self, name):
        # Any other method (TRACE, FOO, ...) is served too: what a server
        # in front passes on is for the test to see, not for us to refuse.
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)


class Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of connections (a
    # gateway opening one per request it holds in flight) overflows it, and
    # the kernel drops the extra handshakes, which then stall for seconds.
    request_queue_size = 128


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.stderr.write("usage: upstream_fixture.py PORT\n")
        return 2
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True     # open keep-alive connections do not block exit

    def stop(*_):
        # shutdown() waits for serve_forever(), which runs in this thread:
        # ask from another one.
        threading.Thread(target=server.shutdown).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    print("ready", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
