#!/usr/bin/env bash
# tests/exercises/check-07.sh - exercise 07: the notification service's
# second endpoint, POST /notifications/:id/read
# (docs/workshop/exercise-07-mark-as-read.md). `make check N=07`.
set -u
# shellcheck source=tests/exercises/lib.sh
source "$(dirname "$0")/lib.sh"
exercise 07 "POST /notifications/:id/read, and an unread count"

ex_redis
PORT=$(free_port)
N="http://127.0.0.1:$PORT"
need "the notifications service is healthy" start_service notifications "$BIN_DIR/notifications" \
	"$TEST_DIR/notifications" "$PORT" REDIS_URL="$EX_REDIS"
# The service believes X-User-Id, as behind the gateway.
AS_ANA=(-H 'X-User-Id: ana' -H 'X-User-Tier: free')
AS_BEN=(-H 'X-User-Id: ben' -H 'X-User-Tier: free')

step "two notifications for ana (POST /internal/notifications, as a service would)"
for n in 1 2; do
	http POST "$N/internal/notifications" \
		"{\"id\":\"note-$n\",\"user\":\"ana\",\"kind\":\"test\",\"text\":\"number $n\",\"at\":$((1700000000 + n))}"
	expect_status 201
done

step "POST /notifications/note-1/read as ana"
http POST "$N/notifications/note-1/read" '' "${AS_ANA[@]}"
expect_status 204
step "GET /notifications as ana"
http GET "$N/notifications" '' "${AS_ANA[@]}"
expect_status 200
expect_json '.count' 2
expect_json '.unread' 1
expect_jq "note-1 is read" 'any(.notifications[]; .id == "note-1" and .read == true)'
expect_jq "note-2 is not" 'any(.notifications[]; .id == "note-2" and .read == false)'
expect_jq "still newest first" '[.notifications[].id] == ["note-2", "note-1"]'

step "marking it again changes nothing"
http POST "$N/notifications/note-1/read" '' "${AS_ANA[@]}"
expect_status 204
http GET "$N/notifications" '' "${AS_ANA[@]}"
expect_json '.unread' 1

step "not ana's to mark: ben, an unknown id, no identity"
http POST "$N/notifications/note-2/read" '' "${AS_BEN[@]}"
expect_problem 404
http POST "$N/notifications/nope/read" '' "${AS_ANA[@]}"
expect_problem 404
http POST "$N/notifications/note-2/read"
expect_problem 401
http GET "$N/notifications" '' "${AS_ANA[@]}"
expect_json '.unread' 1

step "the same notification sent again stays read"
http POST "$N/internal/notifications" \
	'{"id":"note-1","user":"ana","kind":"test","text":"number 1","at":1700000001}'
expect_status 200
http GET "$N/notifications" '' "${AS_ANA[@]}"
expect_jq "note-1 is still read" 'any(.notifications[]; .id == "note-1" and .read == true)'

verdict
