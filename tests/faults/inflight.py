#!/usr/bin/python3
"""tests/faults/inflight.py - N requests held in flight at once, each read
to its last byte, for the graceful-shutdown checks in tests/faults.sh.

  inflight.py PORT PATH N READY_FILE OUT_FILE [HEADER: VALUE ...]

Opens N connections to 127.0.0.1:PORT, sends "GET PATH" on each (HTTP/1.1,
keep-alive, with the extra headers given), writes READY_FILE once every
request has gone out, then reads every answer and writes one JSON line
per request to OUT_FILE:

  {"i": 3, "result": "whole", "status": 200, "bytes": 17, "headers": {...}}

"result" is
  whole     a status line, headers, and exactly Content-Length body bytes
            (or a chunked body up to its last chunk)
  cut       the connection closed or was reset after the request went out
            and before the answer was whole: an in-flight request cut
  refused   the connection was never made (nothing was in flight)
  timeout   no whole answer within 30 s

Exits 0 when it ran (whatever the results: the test reads them), 2 on bad
arguments. Python 3 standard library only (Debian's /usr/bin/python3), so
it shares no HTTP code with the kit. Traffic goes to 127.0.0.1 only.
"""

import json
import socket
import sys
import threading

TIMEOUT_S = 30


def read_answer(sock):
    """Reads one HTTP/1.1 answer. Returns (status, headers, body bytes) or
    raises ConnectionError when it ends early."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the headers (%d bytes)" % len(data))
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        want = int(headers["content-length"])
        while len(rest) < want:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed after %d of %d body bytes" % (len(rest), want))
            rest += chunk
        return status, headers, rest[:want]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a chunked body")
            rest += chunk
        return status, headers, rest
    return status, headers, rest  # no body framing: a 204 or 304


def main():
    if len(sys.argv) < 6 or not sys.argv[1].isdigit() or not sys.argv[3].isdigit():
        sys.stderr.write(__doc__)
        return 2
    port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ready_file, out_file = sys.argv[4], sys.argv[5]
    extra = "".join(h + "\r\n" for h in sys.argv[6:])
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (path, port, extra)).encode()

    results = [None] * count
    sent = threading.Barrier(count + 1)

    def one(i):
        sock = None
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
            sock.sendall(request)
        except OSError as error:
            results[i] = {"i": i, "result": "refused", "error": str(error)}
            if sock is not None:
                sock.close()
            sent.wait()
            return
        sent.wait()
        try:
            status, headers, body = read_answer(sock)
            results[i] = {"i": i, "result": "whole", "status": status, "bytes": len(body),
                          "headers": headers, "body": body.decode("utf-8", "replace")[:200]}
        except socket.timeout:
            results[i] = {"i": i, "result": "timeout"}
        except (OSError, ConnectionError, ValueError, IndexError) as error:
            results[i] = {"i": i, "result": "cut", "error": str(error)}
        finally:
            sock.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    sent.wait()
    with open(ready_file, "w") as ready:
        ready.write("sent %d\n" % count)
    for thread in threads:
        thread.join()
    with open(out_file, "w") as out:
        for result in results:
            out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
