#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py - writes the seed corpora, tests/fuzz/corpus/<target>/.

The seeds are the kit's own traffic: the requests of the walkthroughs and of
tests/event_loop.sh, the tokens the users service issues (HS256 over
{"sub","tier","iat","exp"}, signed here with the fuzz targets' key,
FUZZ_JWT_SECRET in fake_request.h), the trace headers the kit sends, the
route paths of docs/api.md, the two shipped gateway.json files and the
refusals tests/unit/test_gateway_config.c checks. A few dozen small files
per target: the fuzzer mutates from there.

Files named regression-* are inputs that once failed (docs/security.md);
this script does not touch them. Run from anywhere:
python3 tests/fuzz/make_seeds.py (it rewrites only the seed-* files).
"""
import base64
import hashlib
import hmac
import json
import os
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SECRET = b"fuzz-secret-0123456789abcdef0123456789abcdef"  # FUZZ_JWT_SECRET
NOW = 1800000000      # fuzz_jwt.c's FUZZ_NOW
FAR = 4102444800      # 2100-01-01: still valid when the middleware checks at the real time


def write(target, seeds):
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("seed-*"):
        old.unlink()
    for name, data in seeds:
        if isinstance(data, str):
            data = data.encode("latin-1")
        (folder / f"seed-{name}").write_bytes(data)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(payload, header=None, secret=SECRET, alg=hashlib.sha256):
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(secret, signing.encode(), alg).digest()
    return signing + "." + b64(sig)


def request(method, target, headers=(), body=b""):
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"
    for h in headers:
        head += h + "\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


ALICE = token({"sub": "alice", "tier": "premium", "iat": NOW, "exp": NOW + 3600})

# ---- http_head ------------------------------------------------------------
login = b'{"username":"alice","password":"correct horse battery"}'
write("http_head", [
    ("health", request("GET", "/health")),
    ("metrics", request("GET", "/metrics", ["Accept: text/plain"])),
    ("register", request("POST", "/api/v1/auth/register", ["Content-Type: application/json"], login)),
    ("login", request("POST", "/api/v1/auth/login", ["Content-Type: application/json", "User-Agent: curl/8.4.0"], login)),
    ("shorten", request("POST", "/api/v1/shorten", ["Authorization: Bearer " + ALICE, "Content-Type: application/json"],
                        b'{"url":"https://example.com/a?b=1","alias":"my-link"}')),
    ("me", request("GET", "/api/v1/users/me", ["Authorization: Bearer " + ALICE])),
    ("redirect", request("GET", "/r/my-link", ["Referer: https://news.example/", "User-Agent: Mozilla/5.0 Firefox/121.0"])),
    ("expand-v2-traced", request("GET", "/api/v2/expand/my-link?x=1&y", ["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Cookie: kit_ab=abc"])),
    ("uber-trace", request("GET", "/api/v1/analytics/my-link", ["uber-trace-id: 4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1", "X-Request-Id: 123e4567-e89b-12d3-a456-426614174000"])),
    ("cors-preflight", request("OPTIONS", "/api/v1/shorten", ["Origin: http://localhost:5173", "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization, content-type"])),
    ("xff", request("GET", "/api/v1/expand/abc", ["X-Forwarded-For: 203.0.113.7, 10.0.0.2", "X-Variant: canary"])),
    ("http10-keepalive", b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    ("http10-chunked", b"POST /fixture/echo HTTP/1.0\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("connection-close", b"GET /fixture/big?bytes=5 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: foo, close\r\n\r\n"),
    ("expect-continue", b"POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 65536\r\nExpect: 100-continue\r\n\r\n"),
    ("chunked", b"POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("pipelined", b"GET /fixture/slow?ms=300 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /fixture/big?bytes=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("leading-crlf", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("tab-value", b"GET /a HTTP/1.1\r\nHost:\t a \t\r\nX-Empty:\r\n\r\n"),
    ("bare-lf", b"GET /fixture/big?bytes=1 HTTP/1.1\nHost: 127.0.0.1\n\n"),
    ("obs-fold", b"GET /fixture/big?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Folded: one\r\n two\r\n\r\n"),
    ("cl-te", b"POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /fixture/smuggled HTTP/1.1\r\n\r\n"),
    ("two-lengths", b"POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("same-lengths", b"POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello"),
    ("te-gzip", b"POST /fixture/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("http12", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
    ("absolute-form", b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("nul-raw", b"GET /fixture/big\0?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("lone-cr", b"GET / HTTP/1.1\rHost: a\r\n\r\n"),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
    ("huge-length", b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
    ("65-headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-Field-%d: v\r\n" % i for i in range(65)) + b"\r\n"),
    ("incomplete", b"GET /fixture/big?bytes=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: "),
])

# ---- http_chunked (byte 0: the body limit; 255 = as large as the input) ---
write("http_chunked", [
    ("hello", b"\xff5\r\nhello\r\n0\r\n\r\n"),
    ("two-chunks", b"\xff5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("extension", b"\xff5;name=value\r\nhello\r\n0;last\r\n\r\n"),
    ("bws-extension", b"\xff5 \t;x=y\r\nhello\r\n0\r\n\r\n"),
    ("trailers", b"\xff3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: two\r\n\r\n"),
    ("upper-hex", b"\xffA\r\n0123456789\r\n0\r\n\r\n"),
    ("leading-zeros", b"\xff0005\r\nhello\r\n00\r\n\r\n"),
    ("many-leading-zeros", b"\xff" + b"0" * 40 + b"5\r\nhello\r\n0\r\n\r\n"),
    ("next-request", b"\xff5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n"),
    ("json-body", b"\xff" + b"%x\r\n" % len(login) + login + b"\r\n0\r\n\r\n"),
    ("over-limit", b"\x015\r\nhello\r\n0\r\n\r\n"),
    ("exact-limit", b"\x018\r\n12345678\r\n0\r\n\r\n"),
    ("bad-size", b"\xffzz\r\nhello\r\n0\r\n\r\n"),
    ("negative", b"\xff-1\r\nx\r\n0\r\n\r\n"),
    ("data-too-long", b"\xff3\r\nabcd\r\n0\r\n\r\n"),
    ("bare-lf", b"\xff5\nhello\r\n0\r\n\r\n"),
    ("lf-in-extension", b"\xff5;a\nb\r\nhello\r\n0\r\n\r\n"),
    ("huge-size", b"\xff10000000001\r\n"),
    ("incomplete", b"\xff5\r\nhel"),
    ("no-final-crlf", b"\xff0\r\n"),
    ("control-in-trailer", b"\xff0\r\nX: a\x01b\r\n\r\n"),
    ("space-in-size", b"\xff5 6\r\nhello\r\n0\r\n\r\n"),
])

# ---- http_path (byte 0: out size; 255 = 4096) ------------------------------
paths = [
    "/", "/api/v1/shorten", "/api/v1/%2e%2e/admin", "/api/v1/expand/%2E%2E%2Fmetrics", "//a///b",
    "/a/./b/../c", "/a/b/", "/a/b/..", "/..", "/../../etc/passwd", "/fixture/x/../big",
    "/fixture/%2e%2e/metrics", "/fixture/big%00", "/r/caf%C3%A9", "/a%2Fb", "/a%2fb/%2e/c",
    "/%0A", "/bad%zz", "/trunc%2", "/api/v1/auth/login", "/./", "/.../x", "/a/..b/.c",
    "/api/v2/analytics/abc", "no-slash",
]
write("http_path", [(f"{i:02d}", b"\xff" + p.encode()) for i, p in enumerate(paths)] +
      [("tight-414", b"\x08/api/v1/shorten"), ("exact-fit", b"\x06/a/b/c"), ("zero-room", b"\x00/")])

# ---- jwt (the Authorization header) ---------------------------------------
claims = {"sub": "alice", "tier": "premium", "iat": NOW, "exp": NOW + 3600}
far = {"sub": "bob", "tier": "free", "iat": NOW, "exp": FAR}
write("jwt", [
    ("issued", "Bearer " + ALICE),
    ("far-future", "Bearer " + token(far)),
    ("free-tier", "Bearer " + token({"sub": "carol", "tier": "free", "iat": NOW, "exp": FAR})),
    ("no-tier", "Bearer " + token({"sub": "dave", "exp": FAR})),
    ("iss-aud", "Bearer " + token(dict(far, iss="kit", aud="kit-api"))),
    ("aud-list", "Bearer " + token(dict(far, iss="kit", aud=["other", "kit-api"]))),
    ("nbf", "Bearer " + token(dict(far, nbf=NOW - 10))),
    ("nbf-future", "Bearer " + token(dict(far, nbf=FAR - 10))),
    ("expired", "Bearer " + token(dict(claims, exp=NOW - 3600))),
    ("within-leeway", "Bearer " + token(dict(claims, exp=NOW - 20))),
    ("no-exp", "Bearer " + token({"sub": "alice"})),
    ("no-sub", "Bearer " + token({"tier": "free", "exp": FAR})),
    ("empty-sub", "Bearer " + token({"sub": "", "exp": FAR})),
    ("long-sub", "Bearer " + token({"sub": "x" * 65, "exp": FAR})),
    ("max-sub", "Bearer " + token({"sub": "y" * 64, "exp": FAR})),
    ("alg-none", "Bearer " + token(far, header={"alg": "none"}).rsplit(".", 1)[0] + "."),
    ("hs512", "Bearer " + token(far, header={"alg": "HS512", "typ": "JWT"}, alg=hashlib.sha512)),
    ("wrong-key", "Bearer " + token(far, secret=b"another-secret-another-secret-12")),
    ("tampered", "Bearer " + token(far)[:-2] + "AA"),
    ("no-signature", "Bearer " + token(far).rsplit(".", 1)[0] + "."),
    ("lower-bearer", "bearer " + token(far)),
    ("spaces", "Bearer    " + token(far)),
    ("basic", "Basic YWxpY2U6c2VjcmV0"),
    ("four-parts", "Bearer " + token(far) + ".x"),
    ("string-exp", "Bearer " + token({"sub": "alice", "exp": "never"})),
    ("unicode-sub", "Bearer " + token({"sub": "zo\u00eb", "exp": FAR})),
    # Claims as JSON (fuzz_jwt.c signs them under the kit's header).
    ("claims-issued", json.dumps(claims, separators=(",", ":"))),
    ("claims-leeway", json.dumps({"sub": "alice", "exp": NOW - 20}, separators=(",", ":"))),
    ("claims-nbf", json.dumps(dict(far, nbf=NOW + 20), separators=(",", ":"))),
    ("claims-iss-aud", json.dumps(dict(far, iss="kit", aud=["kit-api"]), separators=(",", ":"))),
    ("claims-float-exp", '{"sub":"alice","exp":1.8e9,"nbf":-1e308}'),
])

# ---- trace_context (uber-trace-id and traceparent values) -----------------
write("trace_context", [
    ("uber-128", "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0000000000000000:1"),
    ("uber-64", "a3ce929d0e0e4736:00f067aa0ba902b7:0:1"),
    ("uber-kit", "00000000000000000a3ce929d0e0e473:000000000000002a:0000000000000001:0"),
    ("uber-encoded", "a3ce929d0e0e4736%3A00f067aa0ba902b7%3a0%3A3"),
    ("uber-short", "1:2:0:1"),
    ("uber-zero-trace", "0:1:0:1"),
    ("uber-zero-span", "1:0:0:1"),
    ("uber-three", "1:2:3"),
    ("uber-five", "1:2:3:4:5"),
    ("uber-upper", "ABCDEF:1234:0:FF"),
    ("uber-33", "1" * 33 + ":1:0:1"),
    ("uber-bad-escape", "1%3B2:0:1"),
    ("tp-00", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("tp-unsampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    ("tp-future", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra"),
    ("tp-00-extra", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
    ("tp-ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("tp-upper", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
    ("tp-zero", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ("tp-short", "00-4bf92f3577b34da6-00f067aa0ba902b7-01"),
])

# ---- route_match (paths; the patterns come from the kit) ------------------
write("route_match", [(f"{i:02d}", p) for i, p in enumerate([
    "/auth/register", "/auth/login", "/users/me", "/shorten", "/expand/abc123X", "/r/my-link",
    "/analytics/my-link", "/internal/links", "/internal/clicks", "/health", "/metrics",
    "/api/v1/auth", "/api/v1/auth/", "/api/v1/auth/login", "/api/v1/authx", "/api/v2/shorten",
    "/api/v2/expand/abc", "/api/v3/expand/abc", "/api/", "/r", "/r/", "/rx", "/expand/",
    "/expand/a/b", "/expand/" + "c" * 127, "/expand/" + "c" * 128, "//", "", "/users/me/",
    "/api/v1/analytics//x",
])])

# ---- url_validate (byte 0: the "why" buffer's size) ------------------------
urls = [
    "https://example.com/a?b=1#c", "http://example.com", "HTTP://EXAMPLE.COM/", "https://example.com:8443/x",
    "http://[::1]:8080/", "http://[2001:db8::1]/", "http://127.0.0.1:65535", "http://a:65536",
    "http://a:", "https://xn--caf-dma.example/", "https://caf\xc3\xa9.example/", "http://a%2eb/",
    "http://bank.com@evil.com/", "http://evil.com#@bank.com", "javascript:alert(1)", "ftp://example.com/",
    "http://", "http:///path", "http://exa mple.com", "http://example.com/\r\nSet-Cookie: x",
    "http://example.com\\@evil", "http://[::1", "http://[::1]x", "http://a<b>/", "//example.com",
    "http://0x7f.1/", "my-link", "abc", "ab", "A_b-9" * 6, "x" * 33,
]
write("url_validate", [(f"{i:02d}", b"\x80" + u.encode("latin-1")) for i, u in enumerate(urls)] +
      [("why-tiny", b"\x01http://bank.com@evil.com/"), ("why-none", b"\x00ftp://x/"),
       ("long", b"\x80https://example.com/" + b"a" * 2030)])

# ---- gateway_config --------------------------------------------------------
def gw(**top):
    base = {"upstreams": {"users": {"url": "http://127.0.0.1:8083"}},
            "routes": [{"prefix": "/api/v1/users", "upstream": "users"}]}
    base.update(top)
    return json.dumps(base, indent=1)

gateway = [
    ("phase2", (ROOT / "phase2-gateway/gateway.json").read_bytes()),
    ("phase3", (ROOT / "phase3-advanced/gateway.json").read_bytes()),
    ("minimal", gw()),
    ("url-env", gw(upstreams={"users": {"url": "http://127.0.0.1:8083", "url_env": "USERS_URL"}})),
    ("public-rewrite", gw(routes=[{"prefix": "/r", "upstream": "users", "rewrite": "/r", "access": "public", "timeout_ms": 2000}])),
    ("policy", gw(rate_limit_policies={"login": {"window_seconds": 60, "anonymous": 20, "free": 20, "premium": 20}},
                  routes=[{"prefix": "/api/v1/auth", "upstream": "users", "rate_limit": "login"}])),
    ("pool", gw(pool={"max_idle_per_thread": 64, "max_idle_per_upstream": 0, "idle_timeout_seconds": 1,
                      "connect_timeout_ms": 60000, "max_response_bytes": 1024})),
    ("unknown-member", gw(prefx="/x")),
    ("duplicate-member", '{"upstreams": {"users": {"url": "http://127.0.0.1:8083"}}, "routes": [{"prefix": "/a", "upstream": "users", "access": "public", "access": "authenticated"}]}'),
    ("bad-prefix", gw(routes=[{"prefix": "/a/", "upstream": "users"}])),
    ("shadowed", gw(routes=[{"prefix": "/api", "upstream": "users"}, {"prefix": "/api/v1", "upstream": "users"}])),
    ("no-upstream", gw(routes=[{"prefix": "/a", "upstream": "billing"}])),
    ("bad-url", gw(upstreams={"users": {"url": "https://x/"}})),
    ("timeout-float", gw(routes=[{"prefix": "/a", "upstream": "users", "timeout_ms": 1.5}])),
    ("timeout-huge", gw(routes=[{"prefix": "/a", "upstream": "users", "timeout_ms": 1e300}])),
    ("both", gw(routes=[{"prefix": "/a", "upstream": "users", "split": "s"}])),
    ("split-weights", gw(splits={"s": {"sticky_by": "user", "variants": [
        {"name": "a", "upstream": "users", "weight": 60}, {"name": "b", "upstream": "users", "weight": 30}]}},
        routes=[{"prefix": "/a", "split": "s"}])),
    ("split-ok", gw(splits={"s": {"variants": [
        {"name": "stable", "upstream": "users", "weight": 90}, {"name": "canary", "upstream": "users", "weight": 10}]}},
        routes=[{"prefix": "/a", "split": "s"}])),
    ("versions-unlisted", gw(versions=["v1"], routes=[{"prefix": "/api/v2/users", "upstream": "users"}])),
    ("versions-dup", gw(versions=["v1", "v1"])),
    ("not-json", "{\"upstreams\": "),
    ("array", "[]"),
    ("empty-routes", gw(routes=[])),
]
write("gateway_config", gateway)

# ---- service bodies --------------------------------------------------------
write("users", [
    ("alice", login),
    ("premium", b'{"username":"premium1","password":"12345678"}'),
    ("free", b'{"username":"bob_2.x-y","password":"' + b"p" * 128 + b'"}'),
    ("short-password", b'{"username":"carol","password":"1234567"}'),
    ("long-password", b'{"username":"carol","password":"' + b"p" * 129 + b'"}'),
    ("bad-name", b'{"username":"_carol","password":"correct horse"}'),
    ("upper-name", b'{"username":"Carol","password":"correct horse"}'),
    ("long-name", b'{"username":"' + b"a" * 33 + b'","password":"correct horse"}'),
    ("number-name", b'{"username":42,"password":"correct horse"}'),
    ("null-password", b'{"username":"dave","password":null}'),
    ("missing", b'{"username":"dave"}'),
    ("extra-members", b'{"username":"erin","password":"correct horse","tier":"premium","admin":true}'),
    ("duplicate-key", b'{"username":"frank","username":"alice","password":"correct horse"}'),
    ("escapes", b'{"username":"gr\\u0061ce","password":"p\\u00e4ssw\\u00f6rd\\n\\t"}'),
    ("nul-escape", b'{"username":"heidi","password":"abc\\u0000defghij"}'),
    ("trailing-data", login + b" x"),
    ("trailing-space", login + b" \r\n\t"),
    ("array", b'[{"username":"alice"}]'),
    ("string", b'"alice"'),
    ("empty", b""),
    ("not-json", b"username=alice&password=secret"),
    ("nested", b'{"username":{"a":[1,2,{"b":null}]},"password":"x"}'),
])
write("url_shortener", [
    ("plain", b'{"url":"https://example.com/a?b=1"}'),
    ("alias", b'{"url":"https://example.com/docs","alias":"my-link"}'),
    ("expires", b'{"url":"http://example.org","alias":"temp_1","expires_in":3600}'),
    ("expires-null", b'{"url":"http://example.org","expires_in":null}'),
    ("expires-min", b'{"url":"http://example.org","expires_in":59}'),
    ("expires-float", b'{"url":"http://example.org","expires_in":60.5}'),
    ("ipv6", b'{"url":"http://[::1]:8080/x"}'),
    ("idn", b'{"url":"https://caf\xc3\xa9.example/men\xc3\xbc"}'),
    ("escaped-url", b'{"url":"https:\\/\\/example.com\\/\\u00e9"}'),
    ("userinfo", b'{"url":"http://bank.com@evil.com/"}'),
    ("javascript", b'{"url":"javascript:alert(1)"}'),
    ("crlf", b'{"url":"http://example.com/\\r\\nSet-Cookie: a=b"}'),
    ("bad-alias", b'{"url":"http://example.com","alias":"a/b"}'),
    ("short-alias", b'{"url":"http://example.com","alias":"ab"}'),
    ("number-url", b'{"url":12}'),
    ("null-alias", b'{"url":"http://example.com","alias":null}'),
    ("no-url", b'{"alias":"abc"}'),
    ("long-url", b'{"url":"https://example.com/' + b"a" * 2040 + b'"}'),
    ("array", b"[]"),
    ("trailing", b'{"url":"http://example.com"}}'),
])
write("analytics", [
    ("link-and-click", b'{"code":"abc123X","owner":"alice","referrer":"https://news.example/","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0","at":1800000000}'),
    ("link-only", b'{"code":"my-link","owner":"alice"}'),
    ("click-only", b'{"code":"my-link","referrer":null,"user_agent":"curl/8.4.0"}'),
    ("edge", b'{"code":"abc","owner":"bob","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91"}'),
    ("bot", b'{"code":"abc","owner":"bob","user_agent":"Googlebot/2.1 (+http://www.google.com/bot.html)"}'),
    ("at-zero", b'{"code":"abc","owner":"bob","at":0}'),
    ("at-max", b'{"code":"abc","owner":"bob","at":253402300799}'),
    ("at-over", b'{"code":"abc","owner":"bob","at":253402300800}'),
    ("at-float", b'{"code":"abc","owner":"bob","at":1.5}'),
    ("at-string", b'{"code":"abc","owner":"bob","at":"now"}'),
    ("long-referrer", b'{"code":"abc","owner":"bob","referrer":"https://r.example/' + b"\xc3\xa9" * 300 + b'"}'),
    ("empty-referrer", b'{"code":"abc","owner":"bob","referrer":""}'),
    ("bad-code", b'{"code":"a/b","owner":"bob"}'),
    ("long-owner", b'{"code":"abc","owner":"' + b"o" * 65 + b'"}'),
    ("empty-owner", b'{"code":"abc","owner":""}'),
    ("owner-spaces", b'{"code":"abc","owner":" bob "}'),
    ("number-code", b'{"code":123,"owner":"bob"}'),
    ("not-json", b"code=abc"),
    ("empty", b""),
    ("nested", b'{"code":"abc","owner":"bob","user_agent":{"x":1}}'),
])
print("seeds written under", HERE / "corpus")
