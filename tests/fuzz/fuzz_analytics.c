/*
 * fuzz_analytics.c - libFuzzer target: the analytics service's JSON
 * bodies (services/analytics/analytics.c), through its real handlers.
 * Input: a request body, sent to both internal endpoints.
 *
 * The app is the analytics process of Phase 2 (services/analytics/main.c)
 * minus what writes logs: request_id, metrics and identity_headers, then
 * analytics_mount() and analytics_mount_internal(), on STORE=memory,
 * emptied before every input. Each input goes through fuzz_serve()
 * (fake_request.c, which checks every response's framing and JSON) as:
 *   1. POST /internal/links  (the body as {"code","owner"});
 *   2. POST /internal/clicks (the same body as {"code","referrer"?,
 *      "user_agent"?,"at"?});
 *   3. when the link was recorded: GET /analytics/<code> as its owner
 *      (X-User-Id) and as someone else.
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - each endpoint answers 204, 400, 413 or 415, never a 5xx;
 *   - an event is accepted only with a code alias_is_valid() accepts, and
 *     a link only with an owner of 1..KIT_SUBJECT_MAX bytes;
 *   - the owner reads back the code, clicks = 1 when the click was
 *     accepted (else 0), that click on the UTC day of its "at" (or of
 *     now), last_referrer = its referrer (null when empty; past 512
 *     bytes cut, but never inside a UTF-8 character), last_user_agent_family =
 *     analytics_user_agent_family(its user_agent); anyone else gets 403;
 *     an owner that is not a valid username is no caller at all (401).
 */
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "analytics/analytics.h"
#include "fake_request.h"
#include "fuzz.h"
#include "kit/app.h"
#include "kit/jwt.h"
#include "kit/request.h"
#include "kit/store.h"
#include "url-shortener/url_shortener.h"

static struct kit_app *app;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	app = fuzz_service_app("analytics", 8082);
	analytics_mount(app);
	analytics_mount_internal(app);
	return 0;
}

static int post(const char *path, const uint8_t *body, size_t size, struct fuzz_response *r)
{
	return fuzz_post_json(app, path, "", body, size, r);
}

static int get_as(const char *code, const char *user, struct fuzz_response *r)
{
	size_t size = strlen(code) + strlen(user) + 128;
	char *head = malloc(size);
	int n, status;

	if (head == NULL)
		abort();
	n = snprintf(head, size, "GET /analytics/%s HTTP/1.1\r\nHost: a\r\nX-User-Id: %s\r\n\r\n",
		     code, user);
	status = fuzz_serve(app, head, (size_t)n, NULL, 0, r);
	free(head);
	return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_response link, click, r;
	long long before = (long long)time(NULL);
	cJSON *body = cJSON_ParseWithLength((const char *)data, size);
	const char *code = fuzz_json_string(body, "code");
	const char *owner = fuzz_json_string(body, "owner");

	kit_store_memory_reset();
	int l = post("/internal/links", data, size, &link);
	FUZZ_CHECK(l == 204 || l == 400 || l == 413 || l == 415, "/internal/links answered %d: %.*s",
		   l, (int)link.body_len, link.body);
	if (l == 204)
		FUZZ_CHECK(code != NULL && alias_is_valid(code) && owner != NULL &&
			   owner[0] != '\0' && strlen(owner) <= KIT_SUBJECT_MAX,
			   "recorded a link with code \"%s\", owner \"%s\"", code ? code : "(none)",
			   owner ? owner : "(none)");
	int c = post("/internal/clicks", data, size, &click);
	long long after = (long long)time(NULL);
	FUZZ_CHECK(c == 204 || c == 400 || c == 413 || c == 415, "/internal/clicks answered %d: %.*s",
		   c, (int)click.body_len, click.body);
	if (c == 204)
		FUZZ_CHECK(code != NULL && alias_is_valid(code), "recorded a click on \"%s\"",
			   code ? code : "(none)");

	/* The owner can read only under a name the services take as a
	 * caller (identity_headers.c: a valid username); any other owner is
	 * no caller at all (401). */
	if (l == 204 && !kit_username_is_valid(owner, strlen(owner)) &&
	    fuzz_header_keeps(owner, strlen(owner))) {
		int g = get_as(code, owner, &r);
		FUZZ_CHECK(g == 401, "an owner that is not a username read %d", g);
		fuzz_response_free(&r);
	}
	if (l == 204 && kit_username_is_valid(owner, strlen(owner))) {
		int g = get_as(code, owner, &r);
		cJSON *reply = cJSON_ParseWithLength(r.body, r.body_len);
		const cJSON *clicks = cJSON_GetObjectItemCaseSensitive(reply, "clicks");
		FUZZ_CHECK(g == 200 && fuzz_json_string(reply, "code") != NULL &&
			   strcmp(fuzz_json_string(reply, "code"), code) == 0 && cJSON_IsNumber(clicks) &&
			   clicks->valuedouble == (c == 204 ? 1 : 0),
			   "the owner read %d: %.*s", g, (int)r.body_len, r.body);
		if (c == 204) {
			/* The day of the click: "at", or now (either side of it). */
			const cJSON *at = cJSON_GetObjectItemCaseSensitive(body, "at");
			const cJSON *days = cJSON_GetObjectItemCaseSensitive(reply, "clicks_by_day");
			long long when[2] = { before, after };
			bool found = false;
			if (cJSON_IsNumber(at))
				when[0] = when[1] = (long long)at->valuedouble;
			for (int i = 0; i < 2; i++) {
				char day[32];
				time_t t = (time_t)when[i];
				struct tm utc;
				gmtime_r(&t, &utc);
				strftime(day, sizeof(day), "%Y-%m-%d", &utc);
				const cJSON *n = cJSON_GetObjectItemCaseSensitive(days, day);
				found |= cJSON_IsNumber(n) && n->valuedouble == 1;
			}
			FUZZ_CHECK(found, "the click is not on its day: %.*s", (int)r.body_len, r.body);
			const char *referrer = fuzz_json_string(body, "referrer");
			const char *agent = fuzz_json_string(body, "user_agent");
			const char *last_referrer = fuzz_json_string(reply, "last_referrer");
			const char *family = fuzz_json_string(reply, "last_user_agent_family");
			if (referrer == NULL || referrer[0] == '\0') {
				FUZZ_CHECK(last_referrer == NULL, "last_referrer \"%s\" with none sent",
					   last_referrer);
			} else {
				/* Kept whole up to 512 bytes; past that cut, never
				 * inside a UTF-8 character. */
				size_t kept = last_referrer != NULL ? strlen(last_referrer) : 0;
				FUZZ_CHECK(last_referrer != NULL &&
					   strncmp(last_referrer, referrer, kept) == 0 &&
					   (referrer[kept] == '\0' ||
					    (kept <= 512 &&
					     ((unsigned char)referrer[kept] & 0xC0) != 0x80)),
					   "last_referrer \"%s\" for \"%s\"", last_referrer, referrer);
			}
			if (agent != NULL)
				FUZZ_CHECK(family != NULL &&
					   strcmp(family, analytics_user_agent_family(agent)) == 0,
					   "last_user_agent_family \"%s\" for \"%s\"", family, agent);
		}
		cJSON_Delete(reply);
		fuzz_response_free(&r);

		g = get_as(code, strcmp(owner, "mallory") == 0 ? "eve" : "mallory", &r);
		FUZZ_CHECK(g == 403, "someone else read %d", g);
		fuzz_response_free(&r);
	}
	fuzz_response_free(&link);
	fuzz_response_free(&click);
	cJSON_Delete(body);
	return 0;
}
