#!/usr/bin/env python3
"""tests/jaeger_sink.py - a stand-in for a Jaeger agent and collector: every
span it receives becomes one JSON line in a file, so the tests (and `make up
PHASE=3`) can look at traces without a Jaeger install.

It decodes with classes Apache Thrift's compiler generates at start-up from
Jaeger's own IDL (jaeger.thrift, agent.thrift from the npm package
jaeger-client 3.19.0, fetched once into ${XDG_CACHE_HOME:-~/.cache}/
api-gateway-kit/, or --idl DIR), never with the kit's C code, so a wrong
field id or type in the kit's encoder shows up here. Needs python3-thrift
and thrift-compiler (scripts/deps.sh); exits 77 when they are missing.

  jaeger_sink.py --udp-binary PORT --udp-compact PORT [--http PORT] --out FILE
                 [--ready-file FILE]          (port 0: the kernel picks)
  jaeger_sink.py --decode FILE --protocol udp-binary|udp-compact|http
"""

import argparse
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What it does, in more detail:
#   serving   emitBatch over UDP (TBinaryProtocol on --udp-binary,
#             TCompactProtocol on --udp-compact) and POST /api/traces over
#             HTTP (a TBinaryProtocol Batch, answered 202). Once bound it
#             prints `ready {"pid":..,"udp_binary":..,"udp_compact":..,
#             "http":..}` on stdout and writes that JSON to --ready-file.
#             SIGTERM or SIGINT stops it (exit 0).
#   a line    {"protocol", "service", "instance", "process_tags",
#             "traceIdHigh", "traceIdLow", "spanId", "parentSpanId" (16
#             lower-case hex digits each), "trace_id" (as X-Trace-ID shows
#             it: 16 digits when traceIdHigh is 0, else 32),
#             "operationName", "flags", "startTime", "duration"
#             (microseconds), "tags": {key: value}, "logs": [{"timestamp",
#             "fields": {key: value}}]}
#   errors    a packet that does not decode (or leaves bytes over) goes to
#             stderr as "jaeger_sink: error: ..." and, as a JSON line, to
#             OUT.errors; the sink keeps going.
#   --decode  decodes one packet or body from a file and prints its lines
#             (exit 1 when it does not decode): the unit tests use it.

SKIP = 77
JAEGER_CLIENT = "jaeger-client@3.19.0"
IDL_IN_PACKAGE = "package/dist/src/jaeger-idl/thrift/"


def die(message, status=1):
    sys.stderr.write("jaeger_sink: %s\n" % message)
    sys.exit(status)


# Debian's python3-thrift lives in /usr/bin/python3's dist-packages; a
# python3 earlier on PATH (pyenv, a venv) may not see it. Run again with
# Debian's interpreter then (same pid: exec), once.
try:
    import thrift  # noqa: F401
except ImportError:
    DEBIAN_PYTHON = "/usr/bin/python3"
    if (os.environ.get("JAEGER_SINK_REEXEC") != "1" and os.access(DEBIAN_PYTHON, os.X_OK)
            and os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON)):
        os.environ["JAEGER_SINK_REEXEC"] = "1"
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])
    die("python3-thrift is not installed (apt-get install python3-thrift)", SKIP)

from thrift.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thrift.Thrift import TMessageType  # noqa: E402
from thrift.transport import TTransport  # noqa: E402


# ---------------------------------------------------------------------------
# The IDL and the generated code
# ---------------------------------------------------------------------------

def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "api-gateway-kit")


def fetch_idl(target):
    """npm pack jaeger-client into a temporary directory and copy the
    .thrift files of its jaeger-idl into target (nothing else is kept)."""
    if shutil.which("npm") is None:
        die("no IDL in %s and npm is not installed to fetch %s" % (target, JAEGER_CLIENT), SKIP)
    # Staged next to target and renamed into place in one step, so that a
    # sink started meanwhile (test suites run side by side) sees either no
    # IDL or all of it; when two fetch at once, the first rename wins.
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jaeger-idl.", dir=os.path.dirname(target)) as scratch:
        done = subprocess.run(["npm", "pack", "--silent", JAEGER_CLIENT], cwd=scratch,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            die("npm pack %s failed: %s" % (JAEGER_CLIENT, done.stderr.strip()[-300:]), SKIP)
        tarball = os.path.join(scratch, done.stdout.strip().splitlines()[-1])
        staging = os.path.join(scratch, "thrift")
        os.makedirs(staging)
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                name = member.name
                rest = name[len(IDL_IN_PACKAGE):]
                # Only plain files directly in the IDL directory: no paths
                # out of it, whatever the archive says.
                if (not name.startswith(IDL_IN_PACKAGE) or not member.isfile()
                        or "/" in rest or not rest.endswith(".thrift")):
                    continue
                with archive.extractfile(member) as source, \
                        open(os.path.join(staging, rest), "wb") as copy:
                    copy.write(source.read())
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.isfile(os.path.join(target, "agent.thrift")):
                raise


def find_idl(given):
    if given:
        idl = given
    else:
        idl = os.path.join(cache_dir(), "jaeger-client-3.19.0-idl")
        if not os.path.isfile(os.path.join(idl, "agent.thrift")):
            fetch_idl(idl)
    for name in ("jaeger.thrift", "agent.thrift"):
        if not os.path.isfile(os.path.join(idl, name)):
            die("%s has no %s" % (idl, name), SKIP)
    return idl


def load_generated(idl, scratch):
    """thrift --gen py into scratch; returns the Agent and jaeger.ttypes
    modules."""
    if shutil.which("thrift") is None:
        die("the thrift compiler is not installed (apt-get install thrift-compiler)", SKIP)
    done = subprocess.run(["thrift", "-r", "--gen", "py", "-out", scratch,
                           os.path.join(idl, "agent.thrift")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        die("thrift --gen py failed: %s" % done.stdout.strip()[-500:])
    sys.path.insert(0, scratch)
    from agent import Agent  # noqa: E402  (generated just now)
    from jaeger import ttypes  # noqa: E402
    return Agent, ttypes


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

class Decoder:
    def __init__(self, agent, ttypes):
        self.agent = agent
        self.ttypes = ttypes
        self.tag_types = ttypes.TagType

    @staticmethod
    def _check_consumed(transport, data):
        left = len(data) - transport._buffer.tell()
        if left != 0:
            raise ValueError("%d bytes left over after the message" % left)

    def _validate(self, batch):
        if batch is None:
            raise ValueError("no batch")
        batch.validate()  # required fields: process, spans
        batch.process.validate()
        for tag in batch.process.tags or []:
            tag.validate()
        for span in batch.spans:
            span.validate()
            for tag in span.tags or []:
                tag.validate()
            for log in span.logs or []:
                log.validate()
                for tag in log.fields:
                    tag.validate()
        return batch

    def udp(self, data, compact):
        """An Agent.emitBatch oneway message."""
        transport = TTransport.TMemoryBuffer(data)
        if compact:
            protocol = TCompactProtocol.TCompactProtocol(transport)
        else:
            protocol = TBinaryProtocol.TBinaryProtocol(transport, strictRead=True)
        name, kind, _seqid = protocol.readMessageBegin()
        if name != "emitBatch" or kind != TMessageType.ONEWAY:
            raise ValueError("message %r of type %d, expected oneway emitBatch" % (name, kind))
        args = self.agent.emitBatch_args()
        args.read(protocol)
        protocol.readMessageEnd()
        self._check_consumed(transport, data)
        return self._validate(args.batch)

    def http(self, data):
        """A Batch struct, binary protocol (POST /api/traces)."""
        transport = TTransport.TMemoryBuffer(data)
        batch = self.ttypes.Batch()
        batch.read(TBinaryProtocol.TBinaryProtocol(transport))
        self._check_consumed(transport, data)
        return self._validate(batch)

    def tag_value(self, tag):
        kinds = self.tag_types
        if tag.vType == kinds.STRING:
            return tag.vStr
        if tag.vType == kinds.DOUBLE:
            return tag.vDouble
        if tag.vType == kinds.BOOL:
            return tag.vBool
        if tag.vType == kinds.LONG:
            return tag.vLong
        if tag.vType == kinds.BINARY:
            return (tag.vBinary or b"").hex()
        raise ValueError("tag %r has vType %r" % (tag.key, tag.vType))

    def records(self, batch, protocol):
        """One dict per span."""
        process_tags = {t.key: self.tag_value(t) for t in batch.process.tags or []}
        for span in batch.spans:
            high = span.traceIdHigh & 0xFFFFFFFFFFFFFFFF
            low = span.traceIdLow & 0xFFFFFFFFFFFFFFFF
            yield {
                "protocol": protocol,
                "service": batch.process.serviceName,
                "instance": process_tags.get("instance"),
                "process_tags": process_tags,
                "traceIdHigh": "%016x" % high,
                "traceIdLow": "%016x" % low,
                "trace_id": ("%016x%016x" % (high, low)) if high else "%016x" % low,
                "spanId": "%016x" % (span.spanId & 0xFFFFFFFFFFFFFFFF),
                "parentSpanId": "%016x" % (span.parentSpanId & 0xFFFFFFFFFFFFFFFF),
                "operationName": span.operationName,
                "flags": span.flags,
                "startTime": span.startTime,
                "duration": span.duration,
                "tags": {t.key: self.tag_value(t) for t in span.tags or []},
                "logs": [{"timestamp": log.timestamp,
                          "fields": {t.key: self.tag_value(t) for t in log.fields}}
                         for log in span.logs or []],
            }


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

class Output:
    """Appends JSON lines to a file (or stdout), one writer at a time."""

    def __init__(self, path, errors_path=None):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8") if path else sys.stdout
        self.errors = open(errors_path, "a", encoding="utf-8") if errors_path else None

    def spans(self, records):
        with self.lock:
            for record in records:
                self.file.write(json.dumps(record, sort_keys=True) + "\n")
            self.file.flush()

    def error(self, protocol, message):
        sys.stderr.write("jaeger_sink: error: %s: %s\n" % (protocol, message))
        sys.stderr.flush()
        if self.errors:
            with self.lock:
                self.errors.write(json.dumps({"protocol": protocol, "error": message}) + "\n")
                self.errors.flush()


def handle(decoder, output, protocol, data):
    try:
        if protocol == "http":
            batch = decoder.http(data)
        else:
            batch = decoder.udp(data, compact=(protocol == "udp-compact"))
        output.spans(list(decoder.records(batch, protocol)))
        return True
    except Exception as error:  # a bad packet must not stop the sink
        output.error(protocol, "%s: %s (%d bytes)" % (type(error).__name__, error, len(data)))
        return False


def make_http_handler(decoder, output):
    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path.split("?", 1)[0] != "/api/traces":
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            ok = handle(decoder, output, "http", body)
            self.send_response(202 if ok else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass  # the spans file says what arrived

    return Collector


def serve(args, decoder, output):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    selector = selectors.DefaultSelector()
    ports = {"pid": os.getpid()}
    for protocol, port in (("udp-binary", args.udp_binary), ("udp-compact", args.udp_compact)):
        if port is None:
            continue
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for bursts: the kit sends a batch every 200 ms at most.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((args.host, port))
        selector.register(sock, selectors.EVENT_READ, protocol)
        ports[protocol.replace("-", "_")] = sock.getsockname()[1]

    httpd = None
    if args.http is not None:
        httpd = ThreadingHTTPServer((args.host, args.http), make_http_handler(decoder, output))
        httpd.daemon_threads = True
        ports["http"] = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()

    ready = json.dumps(ports, sort_keys=True)
    if args.ready_file:
        partial = args.ready_file + ".partial"
        with open(partial, "w") as f:
            f.write(ready + "\n")
        os.replace(partial, args.ready_file)
    print("ready " + ready, flush=True)

    while not stop.is_set():
        for key, _ in selector.select(timeout=0.1):
            data = key.fileobj.recv(65536)
            handle(decoder, output, key.data, data)
    if httpd is not None:
        httpd.shutdown()
        httpd.server_close()
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--udp-binary", type=int, metavar="PORT")
    parser.add_argument("--udp-compact", type=int, metavar="PORT")
    parser.add_argument("--http", type=int, metavar="PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--out", metavar="FILE", help="append span lines here (default stdout)")
    parser.add_argument("--ready-file", metavar="FILE")
    parser.add_argument("--idl", metavar="DIR", help="jaeger-idl's thrift directory")
    parser.add_argument("--decode", metavar="FILE", help="decode one packet or body and exit")
    parser.add_argument("--protocol", choices=["udp-binary", "udp-compact", "http"])
    parser.add_argument("--check", action="store_true",
                        help="only check that the decoder can be built (exit 0, or 77)")
    args = parser.parse_args()

    idl = find_idl(args.idl)
    with tempfile.TemporaryDirectory(prefix="jaeger-sink.") as scratch:
        agent, ttypes = load_generated(idl, scratch)
        decoder = Decoder(agent, ttypes)
        if args.check:
            print("jaeger_sink: decoder generated from %s" % idl)
            return 0
        errors = args.out + ".errors" if args.out else None
        output = Output(args.out, errors)
        if args.decode:
            if not args.protocol:
                parser.error("--decode needs --protocol")
            with open(args.decode, "rb") as f:
                data = f.read()
            return 0 if handle(decoder, output, args.protocol, data) else 1
        if args.udp_binary is None and args.udp_compact is None and args.http is None:
            parser.error("give at least one of --udp-binary, --udp-compact, --http")
        return serve(args, decoder, output)


if __name__ == "__main__":
    sys.exit(main())
