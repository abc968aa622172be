#!/usr/bin/env bash
# tests/exercises/check-09.sh - exercise 09: a third way to balance,
# "balance": "random" (docs/workshop/exercise-09-random-balancing.md).
# `make check N=09`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 09 "\"balance\": \"random\" for an upstream of several instances"

ex_redis
A_PORT=$(free_port)
B_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
G="http://127.0.0.1:$GATEWAY_PORT"
for who in a b; do
	port=$A_PORT
	[ "$who" = b ] && port=$B_PORT
	need "url-shortener $who is healthy" start_service "url-shortener-$who" "$BIN_DIR/url-shortener" \
		"$TEST_DIR/url-shortener-$who" "$port" REDIS_URL="$EX_REDIS" ANALYTICS_URL="http://127.0.0.1:9" \
		INSTANCE_ID="shortener-$who"
done
jq -n --arg a "http://127.0.0.1:$A_PORT" --arg b "http://127.0.0.1:$B_PORT" '{
	upstreams: {svc: {urls: [$a, $b], balance: "random"}},
	routes: [{prefix: "/x", upstream: "svc", rewrite: "/expand", access: "public"}]}' >"$TEST_DIR/gateway.json"
ex_gateway_env GATEWAY_CONFIG="$TEST_DIR/gateway.json"
need "the gateway accepts \"balance\": \"random\" and starts" start_gateway "$BIN_DIR/gateway" \
	"$TEST_DIR/gateway" "$GATEWAY_PORT" "${EX_GATEWAY_ENV[@]}"

step "60 x GET /x/nope (each instance answers 404 and says who it is)"
for _ in $(seq 1 60); do
	curl -s -o /dev/null -D - "$G/x/nope" | tr -d '\r' | awk 'tolower($1) == "x-instance:" { print $2 }'
done >"$TEST_DIR/order.txt"
check_eq "60 answers" 60 "$(wc -l <"$TEST_DIR/order.txt")"
check_num "shortener-a answered at least 10" "$(grep -c '^shortener-a$' "$TEST_DIR/order.txt")" '>=' 10
check_num "shortener-b answered at least 10" "$(grep -c '^shortener-b$' "$TEST_DIR/order.txt")" '>=' 10
# A rotation never repeats an instance twice in a row; random does, about
# half the time with two (all 59 alternations by chance: 1 in 2^59).
check_num "the same instance twice in a row, somewhere (not a rotation)" \
	"$(uniq -d "$TEST_DIR/order.txt" | wc -l)" '>=' 1
step "the unit tests pass (build/tests/test_balancer, test_gateway_config)"
ex_unit test_balancer
ex_unit test_gateway_config

verdict
