#!/usr/bin/env bash
# tests/journey.sh - the kit's user journey against a deployment that is
# already running: yours from `make up` or `make compose-up`, a classroom
# machine, any phase. Register, log in, who am I, shorten, expand, follow
# the short link, read its analytics; each step a check.
#
# Usage: BASE_URL=http://localhost:8080 tests/journey.sh
#        BASE_URL=http://localhost:8000 JWT_SECRET=<the deployment's> tests/journey.sh
#
#   BASE_URL          required: where the deployment answers - the monolith
#                     (Phase 1), the gateway (Phase 2) or nginx (Phase 3)
#   API_PREFIX        where the API lives under BASE_URL. By default GET
#                     /health says: "" for the monolith, /api/v1 for a
#                     gateway. /r/<code> is always at BASE_URL.
#   JWT_SECRET        optional, the deployment's secret (compose keeps it in
#                     .env, `make up` in .run/jwt_secret). With it, two more
#                     checks: the token the deployment issues verifies with
#                     this secret, and a token signed here with it is
#                     accepted. A wrong secret fails both, and says so.
#   JOURNEY_USERNAME, JOURNEY_PASSWORD
#                     optional: log in as this existing user instead of
#                     registering a new one
#
# What it writes: one new user, named journey-<time>-<random> so that no two
# runs collide (none with JOURNEY_USERNAME), one short link owned by it, and
# one click on that link. What it reads: GET /health and that user's own
# things, nothing of anyone else's. About ten requests, inside the default
# rate limits.
#
# Every check prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, N failed", and the exit code is 1 when a check failed (2 for a
# usage error). When BASE_URL does not answer, or answers but is not the
# kit, it says so and stops there.
# jq programs are single-quoted on purpose: $names in them are jq's.
# shellcheck disable=SC2016
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tests/lib.sh
source tests/lib.sh

if [ -z "${BASE_URL:-}" ]; then
	echo "usage: BASE_URL=http://host:port [JWT_SECRET=...] [API_PREFIX=/api/v1] tests/journey.sh" >&2
	exit 2
fi
BASE=${BASE_URL%/}
SECRET=${JWT_SECRET:-}

echo "# the journey against $BASE${SECRET:+ (and its JWT_SECRET)}"

# stop_here DESCRIPTION REASON: a check the rest depends on failed: say
# so, stop.
stop_here() {
	fail "$1" "$2"
	finish
	exit 1
}

# b64url_decode: base64url (no padding) to bytes, stdin to stdout.
b64url_decode() {
	local data
	data=$(tr -- '-_' '+/')
	while [ $((${#data} % 4)) -ne 0 ]; do data+="="; done
	openssl base64 -d -A <<<"$data"
}

# ---------------------------------------------------------------------------
section "is it there"
# ---------------------------------------------------------------------------
step "GET $BASE/health"
http GET "$BASE/health"
if [ "$HTTP_STATUS" = 000 ]; then
	stop_here "it answers" "no answer from $BASE: $HTTP_ERROR (is the deployment up, and is BASE_URL right?)"
fi
expect_status 200
SERVICE=$(jq -r '.service // empty' <<<"$HTTP_BODY" 2>/dev/null)
if [ -z "$SERVICE" ]; then
	stop_here "it is the kit" "this is not the kit's /health (no .service in: ${HTTP_BODY:0:200}); is BASE_URL right?"
fi
pass "the kit answers: service \"$SERVICE\""
if [ -z "${API_PREFIX+set}" ]; then
	if [ "$SERVICE" = monolith ]; then API_PREFIX=""; else API_PREFIX=/api/v1; fi
fi
API="$BASE$API_PREFIX"
echo "# the API: $API"

# ---------------------------------------------------------------------------
section "an account"
# ---------------------------------------------------------------------------
if [ -n "${JOURNEY_USERNAME:-}" ]; then
	USERNAME=$JOURNEY_USERNAME
	PASSWORD=${JOURNEY_PASSWORD:?JOURNEY_USERNAME needs JOURNEY_PASSWORD}
	echo "# logging in as the existing user $USERNAME"
else
	# 3-32 characters of [a-z0-9_.-]: 8 + 10 + 1 + 6 = 25.
	USERNAME="journey-$(date +%s)-$(openssl rand -hex 3)"
	PASSWORD="journey $(openssl rand -hex 12)"
	step "POST $API_PREFIX/auth/register ($USERNAME)"
	http POST "$API/auth/register" "$(jq -cn --arg u "$USERNAME" --arg p "$PASSWORD" \
		'{username: $u, password: $p}')"
	expect_status 201
	expect_json .username "$USERNAME"
fi

step "POST $API_PREFIX/auth/login"
http POST "$API/auth/login" "$(jq -cn --arg u "$USERNAME" --arg p "$PASSWORD" \
	'{username: $u, password: $p}')"
expect_status 200
TOKEN=$(jq -r '.token // empty' <<<"$HTTP_BODY" 2>/dev/null)
[ -n "$TOKEN" ] || stop_here "a token" "no token in the answer: ${HTTP_BODY:0:300}"
expect_json .token_type Bearer
AUTH="Authorization: Bearer $TOKEN"

if [ -n "$SECRET" ]; then
	# The signature is HMAC(secret, header.payload) with the header's alg.
	step "the token is signed with JWT_SECRET"
	ALG=$(b64url_decode <<<"${TOKEN%%.*}" | jq -r .alg 2>/dev/null)
	case $ALG in
	HS256 | HS384 | HS512)
		EXPECTED=$(printf '%s' "${TOKEN%.*}" |
			openssl dgst "-sha${ALG#HS}" -hmac "$SECRET" -binary | b64url)
		check_eq "the $ALG signature verifies with JWT_SECRET" "$EXPECTED" "${TOKEN##*.}"
		if [ "$EXPECTED" != "${TOKEN##*.}" ]; then
			echo "#   the deployment signs with another secret: JWT_SECRET is wrong, or BASE_URL is another deployment"
		fi
		;;
	*) fail "the token names an HMAC algorithm" "its header says alg '$ALG'" ;;
	esac
fi

step "GET $API_PREFIX/users/me"
http GET "$API/users/me" '' -H "$AUTH"
expect_status 200
expect_json .username "$USERNAME"

if [ -n "$SECRET" ]; then
	# The login token's claims, fresh times, signed here: what an instructor
	# does to hand out tokens. The deployment must take it as its own.
	step "a token signed here with JWT_SECRET"
	NOW=$(date +%s)
	CLAIMS=$(b64url_decode <<<"$(cut -d. -f2 <<<"$TOKEN")" |
		jq -c --argjson now "$NOW" '.iat = $now | .exp = $now + 300' 2>/dev/null)
	if [ -z "$CLAIMS" ]; then
		fail "the login token's claims are JSON" "token: ${TOKEN:0:80}..."
	else
		http GET "$API/users/me" '' -H "Authorization: Bearer $(make_token "${ALG:-HS256}" "$SECRET" "$CLAIMS")"
		expect_status 200
		if [ "$HTTP_STATUS" = 401 ]; then
			echo "#   refused: JWT_SECRET is not this deployment's secret"
		fi
	fi
fi

# ---------------------------------------------------------------------------
section "a short link"
# ---------------------------------------------------------------------------
TARGET="https://example.com/journey/$USERNAME"
step "POST $API_PREFIX/shorten"
http POST "$API/shorten" "$(jq -cn --arg url "$TARGET" '{url: $url}')" -H "$AUTH"
expect_status 201
CODE=$(jq -r '.code // empty' <<<"$HTTP_BODY" 2>/dev/null)
[ -n "$CODE" ] || stop_here "a code" "no code in the answer: ${HTTP_BODY:0:300}"
expect_json .owner "$USERNAME"
# short_url starts with the deployment's PUBLIC_BASE_URL, which need not be
# BASE_URL (localhost vs 127.0.0.1, a public name): only its end is ours.
expect_jq "short_url ends with /r/$CODE" '.short_url | endswith("/r/" + $code)' --arg code "$CODE"

step "GET $API_PREFIX/expand/<code>"
http GET "$API/expand/$CODE"
expect_status 200
expect_json .url "$TARGET"

step "GET /r/<code>"
http GET "$BASE/r/$CODE" '' -H "Referer: https://journey.example/"
expect_status 302
expect_header Location "$TARGET"

# ---------------------------------------------------------------------------
section "its analytics"
# ---------------------------------------------------------------------------
# Behind a gateway the click reaches analytics in the background, after the
# redirect went out: poll, slowly (each poll counts against this user's rate
# limit), until it is counted.
one_click() {
	http GET "$API/analytics/$CODE" '' -H "$AUTH"
	[ "$HTTP_STATUS" = 200 ] && jq -e '.clicks == 1' <<<"$HTTP_BODY" >/dev/null 2>&1
}
step "GET $API_PREFIX/analytics/<code>"
if POLL_INTERVAL=0.5 poll_until 10 one_click; then
	pass "the click is counted (after ${POLL_ELAPSED}s)"
else
	fail "the click is counted within 10 s" "last answer: $(_got_status) ${HTTP_BODY:0:300}"
fi
expect_json .last_referrer "https://journey.example/"

step "GET $API_PREFIX/analytics/<code> without a token"
http GET "$API/analytics/$CODE"
expect_status 401

finish
