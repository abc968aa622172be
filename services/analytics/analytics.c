/*
 * services/analytics/analytics.c - click counts per short link.
 *
 *   GET /analytics/:code  (authenticated) the counts, for the link's owner
 *                         only: 403 for anyone else, 404 for an unknown code
 *
 * Each link has one hash, "analytics:<code>": owner, total, day:<YYYY-MM-DD>
 * (UTC), last_referrer, last_user_agent_family. A click changes them all in
 * one kit_store_hash_update() (Redis MULTI/EXEC), so a reader never sees a
 * total that disagrees with the days. The url-shortener reports through
 * struct analytics_events: analytics_in_process writes to this worker's
 * store (the monolith); from Phase 2 the analytics service calls
 * analytics_store_*() from its own endpoints, mounted by
 * analytics_mount_internal() in services/analytics/main.c only:
 *
 *   POST /internal/links   {"code","owner"}                      -> 204
 *   POST /internal/clicks  {"code","referrer"?,"user_agent"?,"at"?} -> 204
 *
 * The gateway has no route to /internal, so only processes on the internal
 * network (the url-shortener) reach them. The only state is a metric
 * pointer, set by analytics_mount() before the server starts.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "analytics/analytics.h"
#include "kit/kit.h"
#include "url-shortener/url_shortener.h"

/* Longest referrer kept; longer ones are cut at a UTF-8 boundary. */
#define ANALYTICS_REFERRER_MAX 512
#define ANALYTICS_DAY_PREFIX "day:"

/* Clicks written to the store by analytics_store_click(); NULL (and not
 * counted) in a process that did not call analytics_mount(). */
static struct kit_metric *analytics_clicks_recorded_total;

const char *analytics_user_agent_family(const char *user_agent)
{
	if (user_agent == NULL || user_agent[0] == '\0')
		return "other";
	/* Order matters: Chrome's string also says "Safari/", Edge's says
	 * "Chrome/" and "Safari/", and a crawler may say anything. */
	if (strcasestr(user_agent, "bot") != NULL ||
	    strcasestr(user_agent, "spider") != NULL ||
	    strcasestr(user_agent, "crawl") != NULL)
		return "bot";
	if (strcasestr(user_agent, "curl/") != NULL)
		return "curl";
	/* "Edg/" is Chromium Edge, "Edge/" the older EdgeHTML one. */
	if (strcasestr(user_agent, "Edg/") != NULL ||
	    strcasestr(user_agent, "Edge/") != NULL)
		return "Edge";
	if (strcasestr(user_agent, "Firefox/") != NULL)
		return "Firefox";
	if (strcasestr(user_agent, "Chrome/") != NULL)
		return "Chrome";
	if (strcasestr(user_agent, "Safari/") != NULL)
		return "Safari";
	return "other";
}

int analytics_key(char *key, size_t key_size, const char *code)
{
	int written = snprintf(key, key_size, "analytics:%s", code);

	if (written < 0 || (size_t)written >= key_size)
		return -1;
	return 0;
}

/* The length of text cut to at most max bytes, backing off so that a
 * multi-byte UTF-8 character is not split (which would make the stored
 * value invalid UTF-8 and the JSON answer wrong). */
static size_t analytics_cut_length(const char *text, size_t max)
{
	size_t len = strnlen(text, max + 1);

	if (len <= max)
		return len;
	len = max;
	/* text[len] is the first byte left out; while it continues a
	 * character, that character started inside the kept part. */
	while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
		len--;
	return len;
}

int analytics_store_link(struct kit_store *store, const char *code,
			 const char *owner)
{
	char key[64];
	const struct kit_store_field_op ops[] = {
		{ .field = "owner", .value = owner },
		/* total starts at 0, so a new link reads "clicks": 0. */
		{ .field = "total", .value = NULL, .increment = 0 },
	};

	if (code == NULL || owner == NULL ||
	    analytics_key(key, sizeof(key), code) != 0)
		return -1;
	if (kit_store_hash_update(store, key, ops, sizeof(ops) / sizeof(ops[0])) !=
	    KIT_STORE_OK)
		return -1;
	return 0;
}

int analytics_store_click(struct kit_store *store, const char *code,
			  const char *referrer, const char *user_agent,
			  long long now)
{
	char key[64];
	char day_field[32];
	char referrer_kept[ANALYTICS_REFERRER_MAX + 1];
	struct kit_store_field_op ops[4];
	size_t count = 0;
	time_t when = (time_t)now;
	struct tm utc;

	if (code == NULL || analytics_key(key, sizeof(key), code) != 0)
		return -1;
	if (gmtime_r(&when, &utc) == NULL ||
	    strftime(day_field, sizeof(day_field), ANALYTICS_DAY_PREFIX "%Y-%m-%d",
		     &utc) == 0)
		return -1;

	ops[count++] = (struct kit_store_field_op){ .field = "total",
						    .increment = 1 };
	ops[count++] = (struct kit_store_field_op){ .field = day_field,
						    .increment = 1 };
	ops[count++] = (struct kit_store_field_op){
		.field = "last_user_agent_family",
		.value = analytics_user_agent_family(user_agent),
	};
	/* A click without a Referer keeps the last one that had it. */
	if (referrer != NULL && referrer[0] != '\0') {
		size_t len = analytics_cut_length(referrer,
						  ANALYTICS_REFERRER_MAX);

		memcpy(referrer_kept, referrer, len);
		referrer_kept[len] = '\0';
		ops[count++] = (struct kit_store_field_op){
			.field = "last_referrer",
			.value = referrer_kept,
		};
	}

	if (kit_store_hash_update(store, key, ops, count) != KIT_STORE_OK)
		return -1;
	if (analytics_clicks_recorded_total != NULL)
		kit_metric_add(analytics_clicks_recorded_total, NULL, 1);
	return 0;
}

/* analytics_in_process: the monolith's events, written to the store of the
 * worker thread that served the request. A failure is logged here, with
 * the store's reason; the caller counts it. */
static int analytics_in_process_link_created(struct kit_request *req,
					     const char *code,
					     const char *owner)
{
	struct kit_store *store = kit_request_store(req);

	if (analytics_store_link(store, code, owner) != 0) {
		fprintf(stderr, "analytics: request %s: link %s not recorded: %s\n",
			req->request_id, code, kit_store_error(store));
		return -1;
	}
	return 0;
}

static int analytics_in_process_clicked(struct kit_request *req,
					const char *code, const char *referrer,
					const char *user_agent)
{
	struct kit_store *store = kit_request_store(req);

	if (analytics_store_click(store, code, referrer, user_agent,
				  (long long)time(NULL)) != 0) {
		fprintf(stderr, "analytics: request %s: click on %s not recorded: %s\n",
			req->request_id, code, kit_store_error(store));
		return -1;
	}
	return 0;
}

const struct analytics_events analytics_in_process = {
	.link_created = analytics_in_process_link_created,
	.clicked = analytics_in_process_clicked,
};

/* A stored counter: decimal, not negative. Returns 0 with *out set, or -1. */
static int analytics_parse_count(const char *text, long long *out)
{
	char *end = NULL;
	long long value;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	value = strtoll(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = value;
	return 0;
}

/* "YYYY-MM-DD": the shape of what analytics_store_click() writes. */
static bool analytics_date_is_valid(const char *date)
{
	static const char shape[] = "0000-00-00";

	for (size_t i = 0; i < sizeof(shape) - 1; i++) {
		bool digit = date[i] >= '0' && date[i] <= '9';

		if (shape[i] == '-' ? date[i] != '-' : !digit)
			return false;
	}
	return date[sizeof(shape) - 1] == '\0';
}

struct analytics_day {
	const char *date;   /* "YYYY-MM-DD", owned by the hash */
	long long clicks;
};

static int analytics_day_compare(const void *a, const void *b)
{
	const struct analytics_day *left = a;
	const struct analytics_day *right = b;

	return strcmp(left->date, right->date);
}

/* Adds the day:* fields of hash to by_day, oldest first (a hash has no
 * order; a reader expects one). Returns 0, or -1 for a damaged field
 * (*bad_field set) or no memory (*bad_field NULL). */
static int analytics_add_days(cJSON *by_day, const struct kit_store_hash *hash,
			      const char **bad_field)
{
	struct analytics_day *days;
	size_t count = 0;
	size_t prefix_len = strlen(ANALYTICS_DAY_PREFIX);
	int result = -1;

	*bad_field = NULL;
	days = calloc(hash->count > 0 ? hash->count : 1, sizeof(*days));
	if (days == NULL)
		return -1;
	for (size_t i = 0; i < hash->count; i++) {
		const char *field = hash->fields[i];

		if (strncmp(field, ANALYTICS_DAY_PREFIX, prefix_len) != 0)
			continue;
		if (!analytics_date_is_valid(field + prefix_len) ||
		    analytics_parse_count(hash->values[i],
					  &days[count].clicks) != 0) {
			*bad_field = field;
			goto out;
		}
		days[count].date = field + prefix_len;
		count++;
	}
	qsort(days, count, sizeof(*days), analytics_day_compare);
	for (size_t i = 0; i < count; i++) {
		if (cJSON_AddNumberToObject(by_day, days[i].date,
					    (double)days[i].clicks) == NULL)
			goto out;
	}
	result = 0;
out:
	free(days);
	return result;
}

/* Adds name: value, or name: null when value is NULL. Returns the item or
 * NULL when out of memory. */
static cJSON *analytics_add_string_or_null(cJSON *object, const char *name,
					   const char *value)
{
	if (value == NULL)
		return cJSON_AddNullToObject(object, name);
	return cJSON_AddStringToObject(object, name, value);
}

/* Answers 500 for a field analytics_store_*() could not have written, and
 * logs which one. */
static int analytics_damaged(struct kit_request *req, const char *key,
			     const char *field)
{
	fprintf(stderr, "analytics: request %s: %s field %s is damaged\n",
		req->request_id, key, field);
	return kit_problem(req, 500, "analytics record is damaged");
}

/* GET /analytics/:code -> 200 {"code","clicks","clicks_by_day",
 * "last_referrer","last_user_agent_family"}; 403 for anyone but the owner;
 * 404 when nothing is recorded for code. */
static int analytics_get(struct kit_request *req)
{
	const char *code = kit_request_param(req, "code");
	struct kit_store *store;
	struct kit_store_hash hash = { 0 };
	enum kit_store_result result;
	const char *owner;
	const char *total;
	const char *bad_field = NULL;
	long long clicks = 0;
	char key[64];
	cJSON *reply = NULL;
	cJSON *by_day;
	int status;

	/* 1. The hash. A code that could not exist is not looked up. */
	if (!alias_is_valid(code) || analytics_key(key, sizeof(key), code) != 0)
		return kit_problem(req, 404, "no analytics for this code");
	store = kit_request_store(req);
	result = kit_store_hash_get_all(store, key, &hash);
	if (result == KIT_STORE_NOT_FOUND)
		return kit_problem(req, 404, "no analytics for this code");
	if (result != KIT_STORE_OK)
		return kit_problem_store(req, store);

	/* 2. Only the owner may read it. A hash without an owner holds clicks
	 *    on a link whose creation analytics never heard of (see
	 *    url_shortener_links_unannounced_total): nobody owns it. */
	owner = kit_store_hash_value(&hash, "owner");
	if (owner == NULL) {
		status = kit_problem(req, 404, "no analytics for this code");
		goto out;
	}
	if (strcmp(owner, req->user.subject) != 0) {
		status = kit_problem(req, 403, "only the link's owner may read its analytics");
		goto out;
	}

	/* 3. The answer: counts, then the last click's details. */
	total = kit_store_hash_value(&hash, "total");
	if (total != NULL && analytics_parse_count(total, &clicks) != 0) {
		status = analytics_damaged(req, key, "total");
		goto out;
	}
	reply = cJSON_CreateObject();
	if (cJSON_AddStringToObject(reply, "code", code) == NULL ||
	    cJSON_AddNumberToObject(reply, "clicks", (double)clicks) == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	by_day = cJSON_AddObjectToObject(reply, "clicks_by_day");
	if (by_day == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	if (analytics_add_days(by_day, &hash, &bad_field) != 0) {
		if (bad_field != NULL)
			status = analytics_damaged(req, key, bad_field);
		else
			status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	if (analytics_add_string_or_null(reply, "last_referrer",
					 kit_store_hash_value(&hash, "last_referrer")) == NULL ||
	    analytics_add_string_or_null(reply, "last_user_agent_family",
					 kit_store_hash_value(&hash, "last_user_agent_family")) == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	status = kit_respond_json(req, 200, reply);
out:
	cJSON_Delete(reply);
	kit_store_hash_free(&hash);
	return status;
}

/* ---- the internal endpoints (Phase 2's analytics process) ---- */

/* Latest "at" accepted: 9999-12-31T23:59:59Z, the last second that
 * strftime's %Y still writes as four digits. */
#define ANALYTICS_AT_MAX 253402300799LL

/* The optional integer member "at" (unix seconds) into *at: now when it is
 * absent or null. Returns KIT_NEXT, or answers 400 and returns 400. */
static int analytics_json_time(struct kit_request *req, const cJSON *body,
			       long long *at)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(body, "at");
	double value;

	*at = (long long)time(NULL);
	if (item == NULL || cJSON_IsNull(item))
		return KIT_NEXT;
	if (!cJSON_IsNumber(item))
		return kit_problem(req, 400, "at must be an integer (unix seconds)");
	value = item->valuedouble;
	if (value != floor(value) || value < 0 ||
	    value > (double)ANALYTICS_AT_MAX)
		return kit_problem(req, 400, "at must be an integer number of seconds between 0 and %lld",
				   ANALYTICS_AT_MAX);
	*at = (long long)value;
	return KIT_NEXT;
}

/* POST /internal/links {"code","owner"} -> 204: a new link, owned by
 * owner, starts at 0 clicks. Sent by the url-shortener's analytics client. */
static int analytics_internal_link(struct kit_request *req)
{
	struct kit_store *store;
	cJSON *body;
	const char *code;
	const char *owner;
	int status;

	/* 1. The event. */
	status = kit_request_json(req, &body);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "code", true, &code);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "owner", true, &owner);
	if (status != KIT_NEXT)
		return status;
	if (!alias_is_valid(code))
		return kit_problem(req, 400, "code must be 3-32 characters of A-Z a-z 0-9 _ -");
	if (owner[0] == '\0' || strlen(owner) > KIT_SUBJECT_MAX)
		return kit_problem(req, 400, "owner must be 1-%d bytes", KIT_SUBJECT_MAX);

	/* 2. Stored, or 503: the sender keeps the event and tries again. */
	store = kit_request_store(req);
	if (analytics_store_link(store, code, owner) != 0)
		return kit_problem_store(req, store);
	return kit_respond_empty(req, 204);
}

/* POST /internal/clicks {"code","referrer"?,"user_agent"?,"at"?} -> 204.
 * "at" is when the redirect happened, so a click delivered late (analytics
 * was down) still counts on its own day. */
static int analytics_internal_click(struct kit_request *req)
{
	struct kit_store *store;
	cJSON *body;
	const char *code;
	const char *referrer;
	const char *user_agent;
	long long at;
	int status;

	/* 1. The event. */
	status = kit_request_json(req, &body);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "code", true, &code);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "referrer", false, &referrer);
	if (status != KIT_NEXT)
		return status;
	status = kit_json_string(req, body, "user_agent", false, &user_agent);
	if (status != KIT_NEXT)
		return status;
	status = analytics_json_time(req, body, &at);
	if (status != KIT_NEXT)
		return status;
	if (!alias_is_valid(code))
		return kit_problem(req, 400, "code must be 3-32 characters of A-Z a-z 0-9 _ -");

	/* 2. Stored, or 503: the sender keeps the event and tries again. */
	store = kit_request_store(req);
	if (analytics_store_click(store, code, referrer, user_agent, at) != 0)
		return kit_problem_store(req, store);
	status = kit_respond_empty(req, 204);
	/* 3. After the answer: has the link passed a milestone? */
	analytics_milestones_check(req, store, code);
	return status;
}

void analytics_mount_internal(struct kit_app *app)
{
	kit_app_use_store(app);
	if (analytics_milestones_init(app) != 0)
		return;
	/* KIT_PUBLIC: no identity needed, because the caller is a service,
	 * not a user; what keeps clients out is the network (the gateway has
	 * no route here, and the service listens on loopback / an internal
	 * network), not this flag. */
	kit_route(app, "POST", "/internal/links", analytics_internal_link,
		  KIT_PUBLIC);
	kit_route(app, "POST", "/internal/clicks", analytics_internal_click,
		  KIT_PUBLIC);
}

void analytics_mount(struct kit_app *app)
{
	kit_app_use_store(app);
	analytics_clicks_recorded_total = kit_metric_register(
		KIT_COUNTER, "analytics_clicks_recorded_total",
		"Clicks written to the analytics store.", NULL, NULL, 0);
	if (analytics_clicks_recorded_total == NULL) {
		kit_app_fail(app, "analytics: could not register analytics_clicks_recorded_total");
		return;
	}
	kit_route(app, "GET", "/analytics/:code", analytics_get,
		  KIT_AUTHENTICATED);
}
