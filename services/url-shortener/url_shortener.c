/*
 * services/url-shortener/url_shortener.c - short codes for http(s) URLs.
 *
 *   POST /shorten       (authenticated) checks the URL (url_validate.c),
 *                       stores "link:<code>" with SET NX, tells analytics
 *   GET  /expand/:code  the stored URL, as JSON
 *   GET  /r/:code       302 to the stored URL, then tells analytics
 *
 * A link is JSON {code, url, owner, created_at}, and "expires_at" (epoch
 * seconds) when it was made to expire. Generated codes are 7 base62
 * characters from getrandom(); SET NX keeps codes unique and a collision just
 * draws again. A path code alias_is_valid() refuses is a 404 that never
 * reaches the store. A lost analytics event never fails a request: it is
 * counted in a metric. url_shortener_config is written by
 * url_shortener_mount() before the server starts and only read after.
 *
 * Two API versions, one code base, chosen at start by API_VERSION (Phase 3
 * runs both behind one gateway, /api/v1 and /api/v2):
 *   1  (default) the Phase 1 answers, unchanged to the byte
 *   2  POST /shorten also takes "expires_in" (seconds, 60..31536000), and
 *      shorten and expand answer with "api_version": 2, "expires_at" (ISO
 *      8601 or null) and "links" {self, redirect, analytics}
 * Both versions answer 410 Gone for an expired link, whichever version
 * made it: they share the store.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "analytics/analytics.h"
#include "kit/kit.h"
#include "url-shortener/url_shortener.h"

#define URL_SHORTENER_CODE_LENGTH 7
/* Draws of a generated code before giving up; with 62^7 codes even one
 * collision is rare, so running out means something else is wrong. */
#define URL_SHORTENER_CODE_ATTEMPTS 5
#define URL_SHORTENER_BASE_URL_MAX 512
/* expires_in bounds (v2): a minute to a year (365 days). */
#define URL_SHORTENER_EXPIRES_MIN 60
#define URL_SHORTENER_EXPIRES_MAX 31536000

struct url_shortener_config {
	/* PUBLIC_BASE_URL without a trailing '/': short_url = base/r/code. */
	char public_base_url[URL_SHORTENER_BASE_URL_MAX];
	/* Where new links and clicks are reported; outlives the app. */
	const struct analytics_events *events;
	/* API_VERSION: 1 (default) or 2; see the top of this file. */
	long api_version;
};

static struct url_shortener_config url_shortener_config;

/* Clicks analytics did not get (events->clicked() returned -1). */
static struct kit_metric *url_shortener_clicks_lost_total;
/* New links analytics did not hear of (events->link_created() == -1). */
static struct kit_metric *url_shortener_links_unannounced_total;

static const char url_shortener_base62[] =
	"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Writes a fresh random code (7 base62 characters and a NUL) into code.
 * Bytes of 248 and up are drawn again, so that byte % 62 favours no
 * character (248 = 4 * 62). Returns 0, or -1 when getrandom() fails. */
static int url_shortener_generate_code(char code[URL_SHORTENER_CODE_LENGTH + 1])
{
	size_t filled = 0;

	while (filled < URL_SHORTENER_CODE_LENGTH) {
		unsigned char bytes[16];
		ssize_t got = getrandom(bytes, sizeof(bytes), 0);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (ssize_t i = 0; i < got && filled < URL_SHORTENER_CODE_LENGTH; i++) {
			if (bytes[i] >= 248)
				continue;
			code[filled++] = url_shortener_base62[bytes[i] % 62];
		}
	}
	code[filled] = '\0';
	return 0;
}

/* "link:<code>" into key. Returns 0, or -1 when it does not fit. */
static int url_shortener_key(char *key, size_t key_size, const char *code)
{
	int written = snprintf(key, key_size, "link:%s", code);

	if (written < 0 || (size_t)written >= key_size)
		return -1;
	return 0;
}

/* Builds the stored form of a link; expires_at is epoch seconds, or 0 for
 * a link that never expires (no member: a v1 record stays as it was).
 * Returns malloc'd JSON text (the caller frees it) or NULL when out of
 * memory. */
static char *url_shortener_link_text(const char *code, const char *url,
				     const char *owner, const char *created_at,
				     long long expires_at)
{
	cJSON *link = cJSON_CreateObject();
	char *text = NULL;

	if (cJSON_AddStringToObject(link, "code", code) == NULL ||
	    cJSON_AddStringToObject(link, "url", url) == NULL ||
	    cJSON_AddStringToObject(link, "owner", owner) == NULL ||
	    cJSON_AddStringToObject(link, "created_at", created_at) == NULL)
		goto out;
	if (expires_at != 0 &&
	    cJSON_AddNumberToObject(link, "expires_at", (double)expires_at) == NULL)
		goto out;
	text = cJSON_PrintUnformatted(link);
out:
	cJSON_Delete(link);
	return text;
}

/* A stored link. json owns the strings. */
struct url_shortener_link {
	cJSON *json;
	const char *url;
	const char *created_at;
	long long expires_at;   /* epoch seconds; 0: never */
};

static const char *url_shortener_link_string(const cJSON *json,
					     const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, name);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* Finds the link for the ":code" route parameter. Returns KIT_NEXT with
 * *link filled (the caller cJSON_Delete()s link->json), or answers 404 (a
 * code that is not valid or not there), 410 (expired), 503 (store) or 500
 * (a record that is not what /shorten wrote) and returns that status. */
static int url_shortener_link_load(struct kit_request *req,
				   struct url_shortener_link *link)
{
	struct kit_store *store;
	const char *code = kit_request_param(req, "code");
	char key[64];
	char *text = NULL;
	char why[128];
	char expired_at[32];
	const cJSON *expires;
	enum kit_store_result result;

	memset(link, 0, sizeof(*link));
	if (!alias_is_valid(code) ||
	    url_shortener_key(key, sizeof(key), code) != 0)
		return kit_problem(req, 404, "no such short link");

	store = kit_request_store(req);
	result = kit_store_get(store, key, &text, NULL);
	if (result == KIT_STORE_NOT_FOUND)
		return kit_problem(req, 404, "no such short link");
	if (result != KIT_STORE_OK)
		return kit_problem_store(req, store);

	link->json = cJSON_Parse(text);
	free(text);
	link->url = url_shortener_link_string(link->json, "url");
	link->created_at = url_shortener_link_string(link->json, "created_at");
	expires = cJSON_GetObjectItemCaseSensitive(link->json, "expires_at");
	if (cJSON_IsNumber(expires))
		link->expires_at = (long long)expires->valuedouble;
	/* The URL goes into a Location header: check it again rather than
	 * trust whatever else may have written to the store. */
	if (link->url == NULL || link->created_at == NULL ||
	    (expires != NULL && (!cJSON_IsNumber(expires) || link->expires_at <= 0)) ||
	    !url_is_acceptable(link->url, why, sizeof(why))) {
		fprintf(stderr, "url-shortener: request %s: record %s is damaged\n",
			req->request_id, key);
		cJSON_Delete(link->json);
		link->json = NULL;
		return kit_problem(req, 500, "short link record is damaged");
	}
	/* Expired links stay in the store, so that they can answer 410 (the
	 * link existed and is gone for good) rather than 404. */
	if (link->expires_at != 0 && link->expires_at <= (long long)time(NULL)) {
		if (kit_utc_timestamp(link->expires_at, expired_at, sizeof(expired_at)) != 0)
			snprintf(expired_at, sizeof(expired_at), "%lld", link->expires_at);
		cJSON_Delete(link->json);
		link->json = NULL;
		return kit_problem(req, 410, "this short link expired at %s", expired_at);
	}
	return KIT_NEXT;
}

/* v2: "expires_in" of the body (absent or null: 0, never expires) into
 * *seconds. Returns KIT_NEXT, or answers 400 and returns it. */
static int url_shortener_expires_in(struct kit_request *req, const cJSON *body,
				    long long *seconds)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(body, "expires_in");

	*seconds = 0;
	if (item == NULL || cJSON_IsNull(item))
		return KIT_NEXT;
	/* The range before the cast: casting 3e44 to long long is undefined
	 * behaviour (found by tests/fuzz/fuzz_url_shortener.c). */
	if (!cJSON_IsNumber(item) ||
	    !(item->valuedouble >= URL_SHORTENER_EXPIRES_MIN &&
	      item->valuedouble <= URL_SHORTENER_EXPIRES_MAX) ||
	    item->valuedouble != (double)(long long)item->valuedouble)
		return kit_problem(req, 400, "expires_in must be a whole number of seconds, %d..%d",
				   URL_SHORTENER_EXPIRES_MIN, URL_SHORTENER_EXPIRES_MAX);
	*seconds = (long long)item->valuedouble;
	return KIT_NEXT;
}

/* v2: adds "api_version": 2, "expires_at" (ISO 8601 or null) and "links"
 * {"self", "redirect", "analytics"} to reply. Returns 0, or -1 when out
 * of memory. */
static int url_shortener_add_v2(cJSON *reply, const char *code, long long expires_at)
{
	const char *base = url_shortener_config.public_base_url;
	/* base is at most 511 bytes and code 32: each link fits. */
	char self[URL_SHORTENER_BASE_URL_MAX + 64];
	char redirect[URL_SHORTENER_BASE_URL_MAX + 64];
	char analytics[URL_SHORTENER_BASE_URL_MAX + 64];
	char expires[32];
	cJSON *links;

	if (cJSON_AddNumberToObject(reply, "api_version", 2) == NULL)
		return -1;
	if (expires_at != 0) {
		if (kit_utc_timestamp(expires_at, expires, sizeof(expires)) != 0 ||
		    cJSON_AddStringToObject(reply, "expires_at", expires) == NULL)
			return -1;
	} else if (cJSON_AddNullToObject(reply, "expires_at") == NULL) {
		return -1;
	}
	snprintf(self, sizeof(self), "%s/api/v2/expand/%s", base, code);
	snprintf(redirect, sizeof(redirect), "%s/r/%s", base, code);
	snprintf(analytics, sizeof(analytics), "%s/api/v2/analytics/%s", base, code);
	links = cJSON_AddObjectToObject(reply, "links");
	if (links == NULL ||
	    cJSON_AddStringToObject(links, "self", self) == NULL ||
	    cJSON_AddStringToObject(links, "redirect", redirect) == NULL ||
	    cJSON_AddStringToObject(links, "analytics", analytics) == NULL)
		return -1;
	return 0;
}

/* POST /shorten {"url","alias"?} -> 201 {"code","short_url","url","owner",
 * "created_at"}; 409 when the alias is taken. v2 also takes "expires_in"
 * and answers with url_shortener_add_v2()'s members. */
static int url_shortener_shorten(struct kit_request *req)
{
	struct kit_store *store = kit_request_store(req);
	const char *owner = req->user.subject;
	cJSON *body;
	const char *url;
	const char *alias = NULL;
	char why[128];
	char code[64];
	char key[64];
	char created_at[32];
	char short_url[URL_SHORTENER_BASE_URL_MAX + 64];
	char *link_text = NULL;
	cJSON *reply = NULL;
	long long now = (long long)time(NULL);
	long long expires_in = 0, expires_at = 0;
	enum kit_store_result result = KIT_STORE_ERROR;
	int attempts;
	int written;
	int status;

	/* 1. The body: url (a string) and alias (a string, or absent/null). */
	status = kit_request_json(req, &body);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "url", true, &url);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "alias", false, &alias);
	if (status != KIT_NEXT)
		return status;
	if (url_shortener_config.api_version >= 2) {
		status = url_shortener_expires_in(req, body, &expires_in);
		if (status != KIT_NEXT)
			return status;
		if (expires_in != 0)
			expires_at = now + expires_in;
	}

	/* 2. The rules of docs/api.md. */
	if (!url_is_acceptable(url, why, sizeof(why)))
		return kit_problem(req, 400, "%s", why);
	if (alias != NULL && !alias_is_valid(alias))
		return kit_problem(req, 400, "alias must be 3-32 characters of A-Z a-z 0-9 _ -");
	if (kit_utc_timestamp(now, created_at,
				      sizeof(created_at)) != 0)
		return kit_problem(req, 500, "could not read the clock");

	/* 3. Store it under the alias, or under a fresh code: SET NX never
	 *    replaces someone else's link. A taken alias is the caller's
	 *    problem (409); a taken generated code is drawn again. */
	attempts = alias != NULL ? 1 : URL_SHORTENER_CODE_ATTEMPTS;
	for (int attempt = 0; attempt < attempts; attempt++) {
		if (alias != NULL) {
			/* alias_is_valid() keeps it to 32 bytes: it fits. */
			memcpy(code, alias, strlen(alias) + 1);
		} else if (url_shortener_generate_code(code) != 0) {
			fprintf(stderr, "url-shortener: request %s: getrandom: %s\n",
				req->request_id, strerror(errno));
			status = kit_problem(req, 500, "could not generate a code");
			goto out;
		}
		free(link_text);
		link_text = url_shortener_link_text(code, url, owner, created_at,
						    expires_at);
		if (link_text == NULL ||
		    url_shortener_key(key, sizeof(key), code) != 0) {
			status = kit_problem(req, 500, "out of memory");
			goto out;
		}
		result = kit_store_set_nx(store, key, link_text,
					  strlen(link_text));
		if (result != KIT_STORE_EXISTS)
			break;
	}
	if (result == KIT_STORE_EXISTS && alias != NULL) {
		status = kit_problem(req, 409, "alias is taken");
		goto out;
	}
	if (result == KIT_STORE_EXISTS) {
		fprintf(stderr, "url-shortener: request %s: %d generated codes in a row were taken\n",
			req->request_id, attempts);
		status = kit_problem(req, 503, "could not find a free code; try again");
		goto out;
	}
	if (result != KIT_STORE_OK) {
		status = kit_problem_store(req, store);
		goto out;
	}

	/* 4. Tell analytics. The link exists either way, so a lost event is
	 *    counted and logged, not turned into an error for the caller. */
	if (url_shortener_config.events->link_created(req, code, owner) != 0) {
		kit_metric_add(url_shortener_links_unannounced_total, NULL, 1);
		fprintf(stderr, "url-shortener: request %s: analytics did not record new link %s\n",
			req->request_id, code);
	}

	/* 5. Answer. The base is at most 511 bytes and the code 32, so
	 *    short_url always fits; the check is for whoever changes that. */
	written = snprintf(short_url, sizeof(short_url), "%s/r/%s",
			   url_shortener_config.public_base_url, code);
	if (written < 0 || (size_t)written >= sizeof(short_url)) {
		status = kit_problem(req, 500, "short_url does not fit");
		goto out;
	}
	reply = cJSON_CreateObject();
	if (cJSON_AddStringToObject(reply, "code", code) == NULL ||
	    cJSON_AddStringToObject(reply, "short_url", short_url) == NULL ||
	    cJSON_AddStringToObject(reply, "url", url) == NULL ||
	    cJSON_AddStringToObject(reply, "owner", owner) == NULL ||
	    cJSON_AddStringToObject(reply, "created_at", created_at) == NULL ||
	    (url_shortener_config.api_version >= 2 &&
	     url_shortener_add_v2(reply, code, expires_at) != 0)) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	status = kit_respond_json(req, 201, reply);
out:
	cJSON_Delete(reply);
	free(link_text);
	return status;
}

/* GET /expand/:code -> 200 {"code","url","created_at"} (v2: and
 * url_shortener_add_v2()'s members); 404; 410 when expired. */
static int url_shortener_expand(struct kit_request *req)
{
	struct url_shortener_link link;
	cJSON *reply = NULL;
	int status;

	status = url_shortener_link_load(req, &link);
	if (status != KIT_NEXT)
		return status;
	reply = cJSON_CreateObject();
	if (cJSON_AddStringToObject(reply, "code",
				    kit_request_param(req, "code")) == NULL ||
	    cJSON_AddStringToObject(reply, "url", link.url) == NULL ||
	    cJSON_AddStringToObject(reply, "created_at", link.created_at) == NULL ||
	    (url_shortener_config.api_version >= 2 &&
	     url_shortener_add_v2(reply, kit_request_param(req, "code"),
				  link.expires_at) != 0)) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	status = kit_respond_json(req, 200, reply);
out:
	cJSON_Delete(reply);
	cJSON_Delete(link.json);
	return status;
}

/* GET /r/:code -> 302 Location: <url>, Cache-Control: no-store; then the
 * click goes to analytics. 410 for an expired link (no click recorded). */
static int url_shortener_redirect(struct kit_request *req)
{
	const char *code = kit_request_param(req, "code");
	struct url_shortener_link link;
	int status;

	/* 1. The link. */
	status = url_shortener_link_load(req, &link);
	if (status != KIT_NEXT)
		return status;

	/* 2. The redirect. no-store: a cached 302 would hide later clicks
	 *    from analytics. */
	kit_response_header(req, "Location", link.url);
	kit_response_header(req, "Cache-Control", "no-store");
	status = kit_respond(req, 302, NULL, NULL, 0);

	/* 3. The click, after the client has its answer. A HEAD (link
	 *    checkers, previews) is not someone following the link. */
	if (strcmp(req->method, "HEAD") != 0 &&
	    url_shortener_config.events->clicked(
		    req, code, kit_request_header(req, "Referer"),
		    kit_request_header(req, "User-Agent")) != 0) {
		kit_metric_add(url_shortener_clicks_lost_total, NULL, 1);
		fprintf(stderr, "url-shortener: request %s: click on %s was not recorded\n",
			req->request_id, code);
	}
	cJSON_Delete(link.json);
	return status;
}

/* PUBLIC_BASE_URL into url_shortener_config. Returns 0, or -1 after
 * kit_app_fail(). */
static int url_shortener_load_base_url(struct kit_app *app)
{
	char *base = url_shortener_config.public_base_url;
	size_t base_size = sizeof(url_shortener_config.public_base_url);
	const char *value = kit_env_string("PUBLIC_BASE_URL", NULL);
	char why[128];
	size_t len;
	int written;

	if (value == NULL)
		written = snprintf(base, base_size, "http://localhost:%d",
				   kit_app_port(app));
	else
		written = snprintf(base, base_size, "%s", value);
	if (written < 0 || (size_t)written >= base_size) {
		kit_app_fail(app, "PUBLIC_BASE_URL: longer than %zu bytes",
			     base_size - 1);
		return -1;
	}
	if (!url_is_acceptable(base, why, sizeof(why))) {
		kit_app_fail(app, "PUBLIC_BASE_URL: %s", why);
		return -1;
	}
	if (strpbrk(base, "?#") != NULL) {
		kit_app_fail(app, "PUBLIC_BASE_URL: must not have a query or fragment");
		return -1;
	}
	/* "https://s.example/" + "/r/abc" would give a double slash. */
	len = strlen(base);
	while (len > 0 && base[len - 1] == '/')
		base[--len] = '\0';
	return 0;
}

void url_shortener_mount(struct kit_app *app,
			 const struct analytics_events *events)
{
	/* 1. Configuration. */
	if (events == NULL || events->link_created == NULL ||
	    events->clicked == NULL) {
		kit_app_fail(app, "url-shortener: mounted without analytics events");
		return;
	}
	url_shortener_config.events = events;
	if (url_shortener_load_base_url(app) != 0)
		return;
	if (kit_env_long("API_VERSION", 1, 1, 2, &url_shortener_config.api_version) != 0) {
		kit_app_fail(app, "url-shortener: API_VERSION must be 1 or 2");
		return;
	}
	kit_app_use_store(app);

	/* 2. Metrics. */
	url_shortener_clicks_lost_total = kit_metric_register(
		KIT_COUNTER, "url_shortener_clicks_lost_total",
		"Redirects whose click analytics did not record.", NULL, NULL, 0);
	url_shortener_links_unannounced_total = kit_metric_register(
		KIT_COUNTER, "url_shortener_links_unannounced_total",
		"New links analytics did not record (their analytics read 404).",
		NULL, NULL, 0);
	if (url_shortener_clicks_lost_total == NULL ||
	    url_shortener_links_unannounced_total == NULL) {
		kit_app_fail(app, "url-shortener: could not register its metrics");
		return;
	}

	/* 3. Routes. */
	kit_route(app, "POST", "/shorten", url_shortener_shorten,
		  KIT_AUTHENTICATED);
	kit_route(app, "GET", "/expand/:code", url_shortener_expand,
		  KIT_PUBLIC);
	kit_route(app, "GET", "/r/:code", url_shortener_redirect, KIT_PUBLIC);
}
