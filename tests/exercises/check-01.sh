#!/usr/bin/env bash
# tests/exercises/check-01.sh - exercise 01: an API-key middleware in the
# monolith's chain (docs/workshop/exercise-01-api-key.md). `make check N=01`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 01 "an API-key middleware in the monolith's chain"

PORT_ON=$(free_port)
PORT_OFF=$(free_port)
step "the monolith with API_KEYS=key-one,key-two"
need "the monolith is healthy on $PORT_ON" start_monolith "$BIN_DIR/monolith" "$TEST_DIR/monolith-keys" \
	"$PORT_ON" STORE=memory JWT_SECRET="$EXERCISE_SECRET" API_KEYS=key-one,key-two
ON="http://127.0.0.1:$PORT_ON"

step "GET /expand/nope with no key"
http GET "$ON/expand/nope"
expect_problem 401
step "GET /expand/nope with X-API-Key: wrong"
http GET "$ON/expand/nope" '' -H 'X-API-Key: wrong'
expect_problem 401
step "GET /expand/nope with X-API-Key: key-two (a listed key gets through to the handler)"
http GET "$ON/expand/nope" '' -H 'X-API-Key: key-two'
expect_problem 404
step "GET /health and /metrics with no key (a load balancer and Prometheus have none)"
http GET "$ON/health"
expect_status 200
http GET "$ON/metrics"
expect_status 200
step "a browser's preflight with no key (CORS answers it before your middleware)"
http OPTIONS "$ON/shorten" '' -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: POST'
expect_status 204

step "the monolith without API_KEYS (no keys configured: no check)"
need "the monolith is healthy on $PORT_OFF" start_monolith "$BIN_DIR/monolith" "$TEST_DIR/monolith-open" \
	"$PORT_OFF" STORE=memory JWT_SECRET="$EXERCISE_SECRET"
http GET "http://127.0.0.1:$PORT_OFF/expand/nope"
expect_problem 404

verdict
