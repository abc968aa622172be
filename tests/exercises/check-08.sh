#!/usr/bin/env bash
# tests/exercises/check-08.sh - exercise 08: a limit of its own for
# /api/v1/users, counted once across three gateways
# (docs/workshop/exercise-08-a-limit-across-three-gateways.md).
# `make check N=08`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 08 "5 profile reads a minute for a free user, whichever of three gateways serves them"

ex_redis
USERS_PORT=$(free_port)
need "the users service is healthy" start_service users "$BIN_DIR/users" "$TEST_DIR/users" "$USERS_PORT" \
	REDIS_URL="$EX_REDIS" JWT_SECRET="$EXERCISE_SECRET" ALLOW_INSECURE_DEV_SECRET=true \
	PASSWORD_PBKDF2_ITERATIONS=1000
for name in rita sam; do
	http POST "http://127.0.0.1:$USERS_PORT/auth/register" \
		"{\"username\":\"$name\",\"password\":\"a long password\"}"
done
# Three gateways with the learner's phase3-advanced/gateway.json, one Redis.
ex_gateway_env GATEWAY_CONFIG="$PWD/phase3-advanced/gateway.json" USERS_URL="http://127.0.0.1:$USERS_PORT" \
	ANALYTICS_URL="http://127.0.0.1:9" NOTIFICATIONS_URL="http://127.0.0.1:9" \
	URL_SHORTENER_V1_URL="http://127.0.0.1:9" URL_SHORTENER_V2_URL="http://127.0.0.1:9" \
	URL_SHORTENER_V2_CANARY_URL="http://127.0.0.1:9" TRACE_SAMPLER=off
GATEWAYS=()
for i in 1 2 3; do
	port=$(free_port)
	need "api-gateway-$i is healthy on $port" start_gateway "$BIN_DIR/gateway-advanced" \
		"$TEST_DIR/api-gateway-$i" "$port" "${EX_GATEWAY_ENV[@]}" INSTANCE_ID="api-gateway-$i"
	GATEWAYS+=("http://127.0.0.1:$port")
done
# round USER TIER N: N x GET /api/v1/users/me, in turn through the three
# gateways; the statuses counted, "200 x 5 429 x 10".
round() {
	local i
	ex_token "$1" "$2"
	for i in $(seq 0 $(($3 - 1))); do
		curl -s -o /dev/null -w '%{http_code}\n' "${GATEWAYS[$((i % 3))]}/api/v1/users/me" \
			-H "Authorization: Bearer $TOKEN"
	done | sort | uniq -c | awk '{ printf "%s%s x %s", (NR > 1 ? " " : ""), $2, $1 }'
}

step "15 x GET /api/v1/users/me as rita (free), 5 through each gateway"
check_eq "5 answered, 10 refused: one count for all three" "200 x 5 429 x 10" "$(round rita free 15)"
ex_token rita free
http GET "${GATEWAYS[0]}/api/v1/users/me" '' -H "Authorization: Bearer $TOKEN"
expect_problem 429
expect_header X-RateLimit-Limit 5
expect_header_match RateLimit-Policy '^"free";q=5;w=60$'
step "15 x the same as sam (premium)"
check_eq "all 15 answered (premium: 50)" "200 x 15" "$(round sam premium 15)"
step "/api/v2/users is the same resource: the same limit"
ex_token rita free
http GET "${GATEWAYS[1]}/api/v2/users/me" '' -H "Authorization: Bearer $TOKEN"
expect_header X-RateLimit-Limit 5
step "logins keep their own policy"
http POST "${GATEWAYS[2]}/api/v1/auth/login" '{"username":"rita","password":"a long password"}'
expect_status 200
expect_header X-RateLimit-Limit 20

verdict
