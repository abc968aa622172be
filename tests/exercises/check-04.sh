#!/usr/bin/env bash
# tests/exercises/check-04.sh - exercise 04: an upstream and a route in
# phase2-gateway/gateway.json (docs/workshop/exercise-04-route-and-upstream.md).
# `make check N=04`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 04 "a route and an upstream: GET /api/v1/links/<code>"

ex_redis
SHORTENER_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
G="http://127.0.0.1:$GATEWAY_PORT"
OPERATOR_TOKEN="exercise-operator-token-0123456789abcdef"
need "the url-shortener is healthy" start_service url-shortener "$BIN_DIR/url-shortener" \
	"$TEST_DIR/url-shortener" "$SHORTENER_PORT" REDIS_URL="$EX_REDIS" ANALYTICS_URL="http://127.0.0.1:9"
ex_gateway_env OPERATOR_TOKEN="$OPERATOR_TOKEN" GATEWAY_CONFIG="$PWD/phase2-gateway/gateway.json" \
	URL_SHORTENER_URL="http://127.0.0.1:$SHORTENER_PORT" LINKS_URL="http://127.0.0.1:$SHORTENER_PORT" \
	USERS_URL="http://127.0.0.1:9" ANALYTICS_URL="http://127.0.0.1:9" NOTIFICATIONS_URL="http://127.0.0.1:9"
need "the gateway starts with phase2-gateway/gateway.json" start_gateway "$BIN_DIR/gateway" \
	"$TEST_DIR/gateway" "$GATEWAY_PORT" "${EX_GATEWAY_ENV[@]}"

step "a link, made at the url-shortener directly (as ana)"
http POST "http://127.0.0.1:$SHORTENER_PORT/shorten" '{"url":"https://example.com/links-exercise"}' \
	-H 'X-User-Id: ana' -H 'X-User-Tier: free'
expect_status 201
CODE=$(jq -r '.code // "missing"' <<<"$HTTP_BODY")

step "GET /api/v1/links/<code> through the gateway, no token"
http GET "$G/api/v1/links/$CODE"
expect_status 200
expect_json '.url' "https://example.com/links-exercise"
step "GET /api/v1/links/nope"
http GET "$G/api/v1/links/nope"
expect_problem 404
step "it went through the upstream named links"
check_num "gateway_upstream_requests_total{upstream=\"links\"}" \
	"$(curl -s "$G/metrics" | awk '$1 == "gateway_upstream_requests_total{upstream=\"links\"}" { print $2 }')" '>=' 2
http GET "$G/health/details" '' -H "Authorization: Bearer $OPERATOR_TOKEN"
expect_json '.checks.links.status' up
step "its own environment variable: LINKS_URL moves it"
check_match "gateway.json gives links a url_env of LINKS_URL" 'LINKS_URL' \
	"$(jq -r '.upstreams.links.url_env // empty' phase2-gateway/gateway.json)"
step "the unit tests of the shipped file still pass (build/tests/test_gateway_config)"
ex_unit test_gateway_config

verdict
