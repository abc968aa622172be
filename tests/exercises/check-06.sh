#!/usr/bin/env bash
# tests/exercises/check-06.sh - exercise 06: a header the gateway adds,
# X-Upstream-Time (docs/workshop/exercise-06-a-header-the-gateway-adds.md).
# `make check N=06`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 06 "X-Upstream-Time: the milliseconds a proxied request spent on its upstream"

ex_redis
FIXTURE_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
G="http://127.0.0.1:$GATEWAY_PORT"
need "a scripted upstream (tests/upstream_fixture.py) is ready" start_fixture "$TEST_DIR/fixture" "$FIXTURE_PORT"
# A route file of the checker's own: /slow to the fixture, /dead to a
# port nothing listens on.
jq -n --arg url "http://127.0.0.1:$FIXTURE_PORT" '{
	upstreams: {fixture: {url: $url}, dead: {url: "http://127.0.0.1:9"}},
	routes: [{prefix: "/fixture", upstream: "fixture", rewrite: "/", access: "public"},
	         {prefix: "/dead", upstream: "dead", rewrite: "/", access: "public"}]}' >"$TEST_DIR/gateway.json"
ex_gateway_env GATEWAY_CONFIG="$TEST_DIR/gateway.json"
need "the gateway (build/bin/gateway) is healthy" start_gateway "$BIN_DIR/gateway" "$TEST_DIR/gateway" \
	"$GATEWAY_PORT" "${EX_GATEWAY_ENV[@]}"

step "GET /fixture/slow?ms=150: the upstream takes 150 ms"
http GET "$G/fixture/slow?ms=150"
expect_status 200
expect_header_match X-Upstream-Time '^[0-9]+$'
check_num "X-Upstream-Time is at least the upstream's 150 ms" "$(header X-Upstream-Time)" '>=' 150
check_num "X-Upstream-Time is milliseconds, not microseconds" "$(header X-Upstream-Time)" '<' 5000
step "GET /fixture/slow?ms=0"
http GET "$G/fixture/slow?ms=0"
check_num "a quick one is quick" "$(header X-Upstream-Time)" '<' 150
step "GET /dead/x: the upstream refuses (502), and the time it took is still said"
http GET "$G/dead/x"
expect_problem 502
expect_header_match X-Upstream-Time '^[0-9]+$'
step "GET /health: nothing was proxied"
http GET "$G/health"
expect_no_header X-Upstream-Time
step "one header, not two"
http GET "$G/fixture/slow?ms=0"
check_eq "X-Upstream-Time comes once" 1 "$(header_values X-Upstream-Time | wc -l)"

verdict
