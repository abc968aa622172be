#!/usr/bin/env bash
# tests/exercises/check-02.sh - exercise 02: a metric of your own,
# users_registrations_total (docs/workshop/exercise-02-a-metric.md).
# `make check N=02`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 02 "a metric of your own: users_registrations_total"

PORT=$(free_port)
M="http://127.0.0.1:$PORT"
need "the monolith is healthy on $PORT" start_monolith "$BIN_DIR/monolith" "$TEST_DIR/monolith" \
	"$PORT" STORE=memory JWT_SECRET="$EXERCISE_SECRET" ALLOW_INSECURE_DEV_SECRET=true \
	PASSWORD_PBKDF2_ITERATIONS=1000
# registrations: the value of users_registrations_total on /metrics ("" when absent).
registrations() {
	curl -s "$M/metrics" | awk '$1 == "users_registrations_total" { print $2 }'
}

step "before anyone registers"
check_eq "users_registrations_total is on /metrics, at 0" 0 "$(registrations)"
check_match "with a # HELP line that says what it counts" '^# HELP users_registrations_total .+' \
	"$(curl -s "$M/metrics" | grep '^# HELP users_registrations_total')"
check_match "and # TYPE counter" '^# TYPE users_registrations_total counter$' \
	"$(curl -s "$M/metrics" | grep '^# TYPE users_registrations_total')"

step "ana and ben register, and ana tries again"
for name in ana ben ana; do
	http POST "$M/auth/register" "{\"username\":\"$name\",\"password\":\"a long password\"}"
done
expect_problem 409
check_eq "users_registrations_total is 2 (a taken name creates no account)" 2 "$(registrations)"
step "a login is not a registration"
http POST "$M/auth/login" '{"username":"ana","password":"a long password"}'
expect_status 200
check_eq "still 2" 2 "$(registrations)"

verdict
