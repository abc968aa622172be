#!/usr/bin/env bash
# tests/exercises/check-03.sh - exercise 03: no short links to the machine
# that follows them (docs/workshop/exercise-03-no-links-to-localhost.md).
# `make check N=03`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 03 "no short links to this machine"

PORT=$(free_port)
S="http://127.0.0.1:$PORT"
# The url-shortener alone, with its data in memory; it believes X-User-Id,
# as behind the gateway. (Its clicks would go to an analytics that is not
# there: irrelevant here.)
need "the url-shortener is healthy on $PORT" start_service url-shortener "$BIN_DIR/url-shortener" \
	"$TEST_DIR/url-shortener" "$PORT" STORE=memory ANALYTICS_URL="http://127.0.0.1:9"
# shorten URL: POST /shorten as ana; HTTP_STATUS and HTTP_BODY.
shorten() {
	http POST "$S/shorten" "{\"url\":\"$1\"}" -H 'X-User-Id: ana' -H 'X-User-Tier: free'
}

for url in "http://localhost/admin" "http://LOCALHOST.:8080/" "http://app.localhost/" \
	"http://127.0.0.1:6379/" "http://127.9.9.9/" "http://0.0.0.0/" "http://[::1]:3000/" "http://[::]/"; do
	step "POST /shorten $url"
	shorten "$url"
	expect_problem 400
done
for url in "https://example.com/" "http://localhost.example.com/" "http://127.example.com/x" \
	"http://[2001:db8::1]/"; do
	step "POST /shorten $url (not this machine)"
	shorten "$url"
	expect_status 201
done
step "the unit tests still pass (build/tests/test_url_validate)"
ex_unit test_url_validate

verdict
