"""server_probe.py - hostile clients for tests/server_limits.sh, on raw
sockets (Python 3 standard library). Each command attacks one server on
127.0.0.1 and prints one JSON object of what it measured; the shell script
decides what passes.

  server_probe.py flood PORT [--requests N] [--flood-path P] [--probe-path P]
      One client pipelines N GET requests as fast as the server takes them
      (reading the answers on another thread), while a second client sends
      one request at a time on its own connection. Measures the second
      client's latencies before the flood (alone) and during it, and how
      much of the flood was still unanswered when the second client's
      requests had all been answered.

  server_probe.py posts PORT --path P [--count N] [--concurrency C] [--bytes B]
      N POSTs of B bytes each with no credentials, C at a time, each on a
      connection of its own, the whole body sent without waiting for an
      answer - all but its last byte, which waits until all C clients of
      the round have sent theirs (so a server that buffers bodies before it
      answers holds C of them at once). Counts the statuses (a lost answer counts as "none"), and the
      clients whose body could not be sent whole (the server reset the
      connection instead of draining it: no lingering close).

  server_probe.py cap PORT --hold N [--path P]
      Holds N keep-alive connections, each after one answered request, then
      opens one more and sends a request: is it answered while the N are
      held? Then closes one of the N: is it answered now, and how soon?

  server_probe.py slow PORT --clients N --mode head|body [--path P]
                  [--interval S] [--seconds S] [--probe-path P]
      N clients each send a request one byte every S seconds (the head, or
      a head and then its body), slowloris style, while another client
      sends a request every 0.2 s. Reports, per slow client, the status it
      got (or "closed") and when; and the other client's latencies.

  server_probe.py idle PORT --count N --seconds S
      Opens N connections that send nothing, holds them S seconds, then
      closes them (the file-descriptor exhaustion test).
"""
import argparse
import json
import socket
import sys
import threading
import time


def connect(port, timeout=10.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Reads whole HTTP/1.1 responses (Content-Length framed) off a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def response(self):
        """The next response's status, or None when the connection ended."""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            rest += chunk
        self.buffer = rest[length:]
        if 100 <= status < 200:
            return self.response()
        return status


def request(path, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, extra)).encode()


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


def timed_requests(port, path, count, pause=0.0, stop=None):
    """count requests one after another on one connection; their latencies in
    ms (stops early when stop() says so)."""
    sock = connect(port)
    reader = Reader(sock)
    latencies = []
    for _ in range(count):
        if stop is not None and stop():
            break
        started = time.monotonic()
        sock.sendall(request(path))
        if reader.response() is None:
            break
        latencies.append((time.monotonic() - started) * 1000)
        if pause:
            time.sleep(pause)
    sock.close()
    return latencies


def flood(args):
    alone = timed_requests(args.port, args.probe_path, 50)
    sock = connect(args.port, timeout=60)
    reader = Reader(sock)
    answered = [0]
    finished = threading.Event()

    def read_answers():
        try:
            while answered[0] < args.requests:
                if reader.response() is None:
                    break
                answered[0] += 1
        except OSError:
            pass
        finished.set()

    thread = threading.Thread(target=read_answers, daemon=True)
    thread.start()
    one = request(args.flood_path)
    batch = one * 1000
    started = time.monotonic()
    sent = 0

    def send_flood():
        nonlocal sent
        try:
            while sent < args.requests:
                n = min(1000, args.requests - sent)
                sock.sendall(batch if n == 1000 else one * n)
                sent += n
        except OSError:
            pass

    sender = threading.Thread(target=send_flood, daemon=True)
    sender.start()
    # Let the flood get going: a tenth of it answered, or a second.
    while answered[0] < args.requests // 10 and time.monotonic() - started < 1:
        time.sleep(0.001)
    during = []
    unanswered_at_probe_end = None
    probe = connect(args.port, timeout=60)
    probe_reader = Reader(probe)
    for _ in range(20):
        if finished.is_set():
            break
        t0 = time.monotonic()
        probe.sendall(request(args.probe_path))
        if probe_reader.response() is None:
            break
        during.append((time.monotonic() - t0) * 1000)
    unanswered_at_probe_end = args.requests - answered[0]
    probe.close()
    finished.wait(120)
    flood_seconds = time.monotonic() - started
    sock.close()
    print(json.dumps({
        "flood_requests": args.requests,
        "flood_answered": answered[0],
        "flood_seconds": round(flood_seconds, 3),
        "alone_p50_ms": percentile(alone, 0.5),
        "alone_p99_ms": percentile(alone, 0.99),
        "during_count": len(during),
        "during_p50_ms": percentile(during, 0.5),
        "during_p99_ms": percentile(during, 0.99),
        "during_max_ms": round(max(during), 3) if during else None,
        "flood_unanswered_when_probes_done": unanswered_at_probe_end,
    }))


def posts(args):
    body = b"x" * args.bytes
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (args.path, args.bytes)).encode()
    statuses = {}
    send_errors = [0]
    lock = threading.Lock()
    next_index = [0]
    # All clients of a round hold their last byte until every one of them
    # has sent the rest: the server then has every body but one byte.
    barrier = threading.Barrier(args.concurrency)

    def worker():
        while True:
            with lock:
                if next_index[0] >= args.count:
                    return
                next_index[0] += 1
            status = "none"
            try:
                sock = connect(args.port)
                try:
                    sock.sendall(head + body[:-1])
                    try:
                        barrier.wait(timeout=30)
                    except threading.BrokenBarrierError:
                        pass  # the last round is smaller: go on
                    sock.sendall(body[-1:])
                except OSError:
                    # Reset while sending: the server closed without
                    # draining what the client still had to send.
                    with lock:
                        send_errors[0] += 1
                got = Reader(sock).response()
                status = str(got) if got is not None else "none"
                sock.close()
            except OSError as error:
                status = "error:" + type(error).__name__
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"statuses": statuses, "send_errors": send_errors[0]}))


def cap(args):
    held = []
    for _ in range(args.hold):
        sock = connect(args.port)
        sock.sendall(request(args.path))
        if Reader(sock).response() is None:
            print(json.dumps({"error": "a held connection was not answered"}))
            return
        held.append(sock)
    extra = connect(args.port)
    extra.sendall(request(args.path))
    extra.settimeout(1.5)
    reader = Reader(extra)
    try:
        answered_while_full = reader.response() is not None
    except socket.timeout:
        answered_while_full = False
    held.pop().close()
    extra.settimeout(20)
    started = time.monotonic()
    try:
        status = reader.response()
    except socket.timeout:
        status = None
    after_ms = round((time.monotonic() - started) * 1000, 1)
    for sock in held:
        sock.close()
    extra.close()
    print(json.dumps({"answered_while_full": answered_while_full,
                      "status_after_one_closed": status,
                      "ms_after_one_closed": after_ms}))


def slow(args):
    if args.mode == "head":
        payload = request(args.path, "X-Slow: " + "a" * 400 + "\r\n")
        prefix = b""
    else:
        body = b"b" * 400
        prefix = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                  "Content-Length: %d\r\n\r\n" % (args.path, len(body))).encode()
        payload = body
    results = [None] * args.clients
    started = time.monotonic()

    def slow_client(index):
        outcome = {"status": "open", "seconds": None}
        try:
            sock = connect(args.port)
            sock.setblocking(True)
            if prefix:
                sock.sendall(prefix)
            sock.settimeout(args.interval)
            reader = Reader(sock)
            for i in range(len(payload)):
                if time.monotonic() - started > args.seconds:
                    break
                try:
                    sock.sendall(payload[i:i + 1])
                except OSError:
                    outcome["status"] = "closed"
                    break
                try:
                    status = reader.response()
                    outcome["status"] = status if status is not None else "closed"
                    break
                except socket.timeout:
                    continue
            sock.close()
        except OSError as error:
            outcome["status"] = "error:" + type(error).__name__
        outcome["seconds"] = round(time.monotonic() - started, 2)
        results[index] = outcome

    threads = [threading.Thread(target=slow_client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the slow clients are all connected and trickling
    latencies = []
    failures = 0
    deadline = time.monotonic() + min(args.seconds, 4)
    while time.monotonic() < deadline:
        try:
            latencies += timed_requests(args.port, args.probe_path, 1)
        except OSError:
            failures += 1
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    statuses = {}
    for outcome in results:
        key = str(outcome["status"])
        statuses[key] = statuses.get(key, 0) + 1
    print(json.dumps({
        "slow_statuses": statuses,
        "slow_seconds_max": max(o["seconds"] for o in results),
        "slow_seconds_min": min(o["seconds"] for o in results),
        "probe_count": len(latencies),
        "probe_failures": failures,
        "probe_p50_ms": percentile(latencies, 0.5),
        "probe_max_ms": round(max(latencies), 1) if latencies else None,
    }))


def idle(args):
    socks = []
    for _ in range(args.count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", args.port), timeout=2))
        except OSError:
            break
    time.sleep(args.seconds)
    for sock in socks:
        sock.close()
    print(json.dumps({"opened": len(socks)}))


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("flood")
    p.add_argument("port", type=int)
    p.add_argument("--requests", type=int, default=100000)
    p.add_argument("--flood-path", default="/nope")
    p.add_argument("--probe-path", default="/probe")
    p = commands.add_parser("posts")
    p.add_argument("port", type=int)
    p.add_argument("--path", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--bytes", type=int, default=65536)
    p = commands.add_parser("cap")
    p.add_argument("port", type=int)
    p.add_argument("--hold", type=int, required=True)
    p.add_argument("--path", default="/probe")
    p = commands.add_parser("slow")
    p.add_argument("port", type=int)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--mode", choices=["head", "body"], default="head")
    p.add_argument("--path", default="/probe")
    p.add_argument("--interval", type=float, default=0.3)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--probe-path", default="/probe")
    p = commands.add_parser("idle")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seconds", type=float, default=2)
    args = parser.parse_args()
    {"flood": flood, "posts": posts, "cap": cap, "slow": slow, "idle": idle}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
