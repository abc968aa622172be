#!/usr/bin/env bash
# tests/exercises/check-05.sh - exercise 05: cache /api/v1/expand in the
# gateway (docs/workshop/exercise-05-cache-a-route.md). `make check N=05`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 05 "cache GET /api/v1/expand/<code> in the gateway for 60 s"

ex_redis
SHORTENER_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
G="http://127.0.0.1:$GATEWAY_PORT"
need "the url-shortener is healthy" start_service url-shortener "$BIN_DIR/url-shortener" \
	"$TEST_DIR/url-shortener" "$SHORTENER_PORT" REDIS_URL="$EX_REDIS" ANALYTICS_URL="http://127.0.0.1:9"
ex_gateway_env GATEWAY_CONFIG="$PWD/phase2-gateway/gateway.json" \
	URL_SHORTENER_URL="http://127.0.0.1:$SHORTENER_PORT" LINKS_URL="http://127.0.0.1:$SHORTENER_PORT" \
	USERS_URL="http://127.0.0.1:9" ANALYTICS_URL="http://127.0.0.1:9" NOTIFICATIONS_URL="http://127.0.0.1:9"
need "the gateway starts with phase2-gateway/gateway.json" start_gateway "$BIN_DIR/gateway" \
	"$TEST_DIR/gateway" "$GATEWAY_PORT" "${EX_GATEWAY_ENV[@]}"

step "a link, made at the url-shortener directly"
http POST "http://127.0.0.1:$SHORTENER_PORT/shorten" '{"url":"https://example.com/cache-exercise"}' \
	-H 'X-User-Id: ana' -H 'X-User-Tier: free'
CODE=$(jq -r '.code // "missing"' <<<"$HTTP_BODY")
# expands_seen: how many GET /expand/<code> the url-shortener has logged.
expands_seen() {
	grep -c "\"path\":\"/expand/$CODE\"" "$TEST_DIR/url-shortener.out" 2>/dev/null
}

step "GET /api/v1/expand/<code> three times"
http GET "$G/api/v1/expand/$CODE"
expect_status 200
expect_header X-Cache MISS
for _ in 1 2; do
	http GET "$G/api/v1/expand/$CODE"
done
expect_status 200
expect_header X-Cache HIT
expect_json '.url' "https://example.com/cache-exercise"
poll_until 5 test "$(expands_seen)" -ge 1
check_eq "the url-shortener was asked once" 1 "$(expands_seen)"
step "kept for the route's 60 s (the url-shortener says nothing of its own)"
KEY=$(redis-cli -p "$EX_REDIS_PORT" --scan --pattern "cache:p:*$CODE*" | head -n 1)
check_num "the entry's TTL in Redis" "$(redis-cli -p "$EX_REDIS_PORT" TTL "$KEY")" '>' 50
check_num "the entry's TTL in Redis" "$(redis-cli -p "$EX_REDIS_PORT" TTL "$KEY")" '<=' 60
step "another code is another entry"
http GET "$G/api/v1/expand/nope"
expect_problem 404
expect_header X-Cache MISS

verdict
