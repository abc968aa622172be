/*
 * fuzz_url_shortener.c - libFuzzer target: the url-shortener's JSON body
 * (services/url-shortener/url_shortener.c), through its real handlers.
 * Input: a POST /shorten body.
 *
 * The app is the monolith's shortener: request_id, metrics and
 * identity_headers, then url_shortener_mount() with the in-process
 * analytics events and analytics_mount(), API_VERSION=2 (v2 runs all of
 * v1's code and "expires_in" besides), on STORE=memory, emptied before
 * every input. Each input goes through fuzz_serve() (fake_request.c,
 * which checks every response's framing and JSON) as POST /shorten by
 * user "fuzzer"; when that created a link, then GET /expand/<code>,
 * GET /r/<code>, GET /analytics/<code> as the owner and as someone else,
 * and the same POST once more.
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - POST answers 201, 400, 413 or 415, never a 5xx, and never 409 on an
 *     empty store;
 *   - a created link holds exactly the body's url, which
 *     url_is_acceptable() accepts; its code is the alias when one was
 *     given, else 7 characters of [A-Za-z0-9]; owner "fuzzer"; short_url
 *     is PUBLIC_BASE_URL "/r/" code;
 *   - /expand answers 200 with the same url; /r answers 302 whose
 *     Location header is byte for byte that url (the header a browser
 *     follows: nothing added, nothing split);
 *   - the redirect counted one click: /analytics shows 1 to the owner,
 *     and 403 to anyone else;
 *   - the same body again: 409 when it names an alias, else a new code.
 */
#include <stdbool.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "analytics/analytics.h"
#include "fake_request.h"
#include "fuzz.h"
#include "kit/app.h"
#include "kit/store.h"
#include "url-shortener/url_shortener.h"

static struct kit_app *app;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	app = fuzz_service_app("url-shortener", 8081);
	url_shortener_mount(app, &analytics_in_process);
	analytics_mount(app);
	return 0;
}

static int shorten(const uint8_t *body, size_t size, struct fuzz_response *r)
{
	return fuzz_post_json(app, "/shorten", "X-User-Id: fuzzer\r\nX-User-Tier: free\r\n", body,
			      size, r);
}

static int get(const char *path, const char *user, struct fuzz_response *r)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "GET %s HTTP/1.1\r\nHost: s\r\nUser-Agent: curl/8.4.0\r\n"
			 "Referer: https://example.com/page\r\n%s%s%s\r\n",
			 path, user != NULL ? "X-User-Id: " : "", user != NULL ? user : "",
			 user != NULL ? "\r\n" : "");

	return fuzz_serve(app, head, (size_t)n, NULL, 0, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_response made, r;
	cJSON *body = cJSON_ParseWithLength((const char *)data, size);
	const char *url = fuzz_json_string(body, "url");
	const char *alias = fuzz_json_string(body, "alias");
	char code[64], path[128], location[4096];

	kit_store_memory_reset();
	int s = shorten(data, size, &made);
	FUZZ_CHECK(s == 201 || s == 400 || s == 413 || s == 415, "POST /shorten answered %d: %.*s",
		   s, (int)made.body_len, made.body);
	if (s != 201)
		goto out;

	/* The link as created. */
	cJSON *reply = cJSON_ParseWithLength(made.body, made.body_len);
	FUZZ_CHECK(url != NULL && fuzz_json_string(reply, "url") != NULL &&
		   strcmp(fuzz_json_string(reply, "url"), url) == 0 && url_is_acceptable(url, NULL, 0),
		   "created a link to \"%s\" from a body with url \"%s\"", fuzz_json_string(reply, "url"), url);
	const char *c = fuzz_json_string(reply, "code");
	FUZZ_CHECK(c != NULL && strlen(c) < sizeof(code), "no code: %.*s", (int)made.body_len,
		   made.body);
	strcpy(code, c);
	if (alias != NULL)
		FUZZ_CHECK(strcmp(code, alias) == 0, "alias %s gave code %s", alias, code);
	else
		FUZZ_CHECK(strlen(code) == 7 && strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						   "abcdefghijklmnopqrstuvwxyz0123456789") == 7,
			   "generated code \"%s\"", code);
	char short_url[128];
	snprintf(short_url, sizeof(short_url), "http://localhost:3000/r/%s", code);
	FUZZ_CHECK(fuzz_json_string(reply, "owner") != NULL && strcmp(fuzz_json_string(reply, "owner"), "fuzzer") == 0 &&
		   fuzz_json_string(reply, "short_url") != NULL &&
		   strcmp(fuzz_json_string(reply, "short_url"), short_url) == 0,
		   "owner/short_url: %.*s", (int)made.body_len, made.body);
	cJSON_Delete(reply);

	/* /expand. */
	snprintf(path, sizeof(path), "/expand/%s", code);
	int e = get(path, NULL, &r);
	reply = cJSON_ParseWithLength(r.body, r.body_len);
	FUZZ_CHECK(e == 200 && fuzz_json_string(reply, "url") != NULL && strcmp(fuzz_json_string(reply, "url"), url) == 0,
		   "GET %s answered %d: %.*s", path, e, (int)r.body_len, r.body);
	cJSON_Delete(reply);
	fuzz_response_free(&r);

	/* /r: the Location header is the url, exactly. */
	snprintf(path, sizeof(path), "/r/%s", code);
	int red = get(path, NULL, &r);
	FUZZ_CHECK(red == 302 && fuzz_response_header(&r, "Location", location, sizeof(location)) &&
		   strcmp(location, url) == 0,
		   "GET %s answered %d, Location \"%s\" for \"%s\"", path, red,
		   red == 302 ? location : "", url);
	fuzz_response_free(&r);

	/* The click, seen by the owner only. */
	snprintf(path, sizeof(path), "/analytics/%s", code);
	int a = get(path, "fuzzer", &r);
	reply = cJSON_ParseWithLength(r.body, r.body_len);
	const cJSON *clicks = cJSON_GetObjectItemCaseSensitive(reply, "clicks");
	FUZZ_CHECK(a == 200 && cJSON_IsNumber(clicks) && clicks->valuedouble == 1,
		   "GET %s answered %d: %.*s", path, a, (int)r.body_len, r.body);
	cJSON_Delete(reply);
	fuzz_response_free(&r);
	a = get(path, "someone-else", &r);
	FUZZ_CHECK(a == 403, "GET %s as someone else answered %d", path, a);
	fuzz_response_free(&r);

	/* Again. */
	s = shorten(data, size, &r);
	FUZZ_CHECK(s == (alias != NULL ? 409 : 201), "the same body again answered %d", s);
	if (s == 201) {
		reply = cJSON_ParseWithLength(r.body, r.body_len);
		FUZZ_CHECK(fuzz_json_string(reply, "code") != NULL && strcmp(fuzz_json_string(reply, "code"), code) != 0,
			   "a second link got the same code %s", code);
		cJSON_Delete(reply);
	}
	fuzz_response_free(&r);
out:
	fuzz_response_free(&made);
	cJSON_Delete(body);
	return 0;
}
