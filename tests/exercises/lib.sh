# shellcheck shell=bash disable=SC2034
# tests/exercises/lib.sh - what every exercise checker shares (source it
# from tests/exercises/check-NN.sh).
#
# A checker looks at the tree it is run in, the learner's: it starts what
# it needs itself (Redis, a service, a gateway, on free ports, from
# build/bin), so it needs no `make up`, leaves nothing running, and gives
# the same answer on a laptop, in CI and on a scratch copy with the
# exercise's reference patch (tests/exercises.sh proves each one fails
# before the patch and passes after). Every check says "ok" or "not ok"
# with what was expected; the last line is the verdict.
#
# It builds on tests/lib.sh (checks, http, start_service, ...).

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
# shellcheck source=tests/lib.sh
source tests/lib.sh

BIN_DIR=${BIN_DIR:-$PWD/build/bin}
EXERCISE_SECRET="exercise-secret-0123456789abcdef-0123456789"

# exercise NN TITLE: the checker's first line; remembers which it is.
exercise() {
	EXERCISE=$1
	EXERCISE_DOC=$(ls docs/workshop/exercise-"$1"-*.md 2>/dev/null | head -n 1)
	echo "# exercise $1: $2"
	echo "# checking the tree in $PWD (binaries: $BIN_DIR)"
}

# verdict: the last word. Exit status 0 on a pass.
verdict() {
	local status=0
	finish || status=1
	if [ "$status" = 0 ]; then
		echo "exercise $EXERCISE: PASS"
	else
		echo "exercise $EXERCISE: not yet: the 'not ok' lines above say what is missing;" \
			"the hint is in ${EXERCISE_DOC:-docs/workshop/}"
	fi
	return "$status"
}

# need DESCRIPTION COMMAND...: like must_start, and says where to look when
# it fails (a process that does not start ends the check).
need() {
	local description=$1
	shift
	if "$@"; then
		pass "$description"
	else
		fail "$description" "it did not start: its log is under $TEST_DIR (kept)"
		verdict
		exit 1
	fi
}

# ex_redis: a Redis of the checker's own; EX_REDIS (redis://.../0).
ex_redis() {
	EX_REDIS_PORT=$(free_port)
	need "redis-server answers on port $EX_REDIS_PORT" start_redis "$EX_REDIS_PORT" "$TEST_DIR/redis"
	EX_REDIS="redis://127.0.0.1:$EX_REDIS_PORT/0"
}

# ex_token USER [TIER]: a token the checker's gateways accept, in TOKEN.
ex_token() {
	local now
	now=$(date +%s)
	TOKEN=$(make_token HS256 "$EXERCISE_SECRET" \
		"{\"sub\":\"$1\",\"tier\":\"${2:-free}\",\"iat\":$now,\"exp\":$((now + 600))}")
}

# The environment every checker's gateway gets: the secret, Redis for the
# rate limits and the cache, and limits high enough not to matter unless
# the exercise is about them.
ex_gateway_env() {
	EX_GATEWAY_ENV=(JWT_SECRET="$EXERCISE_SECRET" REDIS_URL="$EX_REDIS" LOOP_THREADS=1
		RATE_LIMIT_ANONYMOUS=100000 RATE_LIMIT_FREE=100000 RATE_LIMIT_PREMIUM=100000
		REDIS_RATE_LIMIT_TIMEOUT_MS=3000 REDIS_CACHE_TIMEOUT_MS=3000 "$@")
}

# ex_unit NAME: the unit tests in build/tests/NAME pass; on a failure, the
# names of the failing tests and cmocka's reasons are shown.
ex_unit() {
	local binary="${BIN_DIR%/bin}/tests/$1" out
	if out=$("$binary" 2>&1); then
		pass "the unit tests in build/tests/$1 pass"
	else
		fail "the unit tests in build/tests/$1 pass" \
			"$(grep -E '^\[  (ERROR|FAILED)  \]|^\[   LINE   \]' <<<"$out" | head -n 8 | tr '\n' ' ')"
	fi
}
