/*
 * services/notifications/notifications.c - a user's notifications.
 *
 *   POST /internal/notifications  {"id","user","kind","text","link"?,"at"?}
 *                                 -> 201 stored (200: that id was already)
 *   GET  /notifications           (authenticated) the caller's, newest
 *                                 first: {"notifications": [...], "count"}
 *
 * Each user has one hash, "notifications:<user>": the notification's id ->
 * its JSON {id, kind, text, link, at}. The sender names the id, so a
 * notification sent twice (a retry, two senders racing) is stored once:
 * the second write sets the same field to the same value. The analytics
 * service sends "<code>-clicks-<N>" when a link passes N clicks.
 *
 * The gateway routes /api/v1/notifications here and has no route to
 * /internal: only processes on the internal network post notifications
 * (the same arrangement as analytics' /internal/clicks). No state but a
 * metric pointer, set before the server starts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "kit/kit.h"
#include "kit/text.h"
#include "notifications/notifications.h"
#include "url-shortener/url_shortener.h"

#define NOTIFICATIONS_ID_MAX 100
#define NOTIFICATIONS_KIND_MAX 32
#define NOTIFICATIONS_TEXT_MAX 280
/* Latest "at" accepted: the last second strftime's %Y writes as 4 digits. */
#define NOTIFICATIONS_AT_MAX 253402300799LL

static struct kit_metric *notifications_stored_total;

bool notifications_id_is_valid(const char *id)
{
	size_t len = strnlen(id, NOTIFICATIONS_ID_MAX + 1);

	return len > 0 && len <= NOTIFICATIONS_ID_MAX &&
	       strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") == len;
}

bool notifications_kind_is_valid(const char *kind)
{
	size_t len = strnlen(kind, NOTIFICATIONS_KIND_MAX + 1);

	return len > 0 && len <= NOTIFICATIONS_KIND_MAX &&
	       strspn(kind, "abcdefghijklmnopqrstuvwxyz_") == len;
}

/* 1-280 bytes, no control characters: it is shown to the user as is. */
bool notifications_text_is_valid(const char *text)
{
	return kit_text_is_displayable(text, NOTIFICATIONS_TEXT_MAX);
}

/* "notifications:<user>" into key; -1 when it does not fit. */
static int notifications_key(char *key, size_t size, const char *user)
{
	int written = snprintf(key, size, "notifications:%s", user);

	return written < 0 || (size_t)written >= size ? -1 : 0;
}

/* ---- POST /internal/notifications ---- */

/* The optional "at" (unix seconds) as ISO 8601 into out; now when absent.
 * Returns KIT_NEXT, or answers 400. */
static int notifications_json_at(struct kit_request *req, const cJSON *body, char *out,
				 size_t size)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(body, "at");
	long long at = (long long)time(NULL);

	if (item != NULL && !cJSON_IsNull(item)) {
		if (!cJSON_IsNumber(item) || item->valuedouble < 0 ||
		    item->valuedouble > (double)NOTIFICATIONS_AT_MAX ||
		    item->valuedouble != (double)(long long)item->valuedouble)
			return kit_problem(req, 400, "at must be an integer number of seconds between 0 and %lld",
					   NOTIFICATIONS_AT_MAX);
		at = (long long)item->valuedouble;
	}
	if (kit_utc_timestamp((time_t)at, out, size) != 0)
		return kit_problem(req, 400, "at cannot be written as a date");
	return KIT_NEXT;
}

static int notifications_post(struct kit_request *req)
{
	struct kit_store *store = kit_request_store(req);
	const char *id, *user, *kind, *text, *link;
	char key[64], at[32];
	cJSON *body, *stored = NULL;
	char *value = NULL;
	struct kit_store_hash existing = { 0 };
	enum kit_store_result result;
	int status;

	/* 1. The notification: every field follows docs/api.md's rules. */
	status = kit_request_json(req, &body);
	if (status == KIT_NEXT)
		status = kit_json_string(req, body, "id", true, &id);
	if (status == KIT_NEXT)
		status = kit_json_string(req, body, "user", true, &user);
	if (status == KIT_NEXT)
		status = kit_json_string(req, body, "kind", true, &kind);
	if (status == KIT_NEXT)
		status = kit_json_string(req, body, "text", true, &text);
	if (status == KIT_NEXT)
		status = kit_json_string(req, body, "link", false, &link);
	if (status == KIT_NEXT)
		status = notifications_json_at(req, body, at, sizeof(at));
	if (status != KIT_NEXT)
		return status;
	if (!notifications_id_is_valid(id))
		return kit_problem(req, 400, "id must be 1-%d characters of A-Z a-z 0-9 _ . : -",
				   NOTIFICATIONS_ID_MAX);
	if (!kit_username_is_valid(user, strlen(user)))
		return kit_problem(req, 400, "user must be a username (3-32 of a-z 0-9 _ . -)");
	if (!notifications_kind_is_valid(kind))
		return kit_problem(req, 400, "kind must be 1-%d characters of a-z _", NOTIFICATIONS_KIND_MAX);
	if (!notifications_text_is_valid(text))
		return kit_problem(req, 400, "text must be 1-%d bytes without control characters",
				   NOTIFICATIONS_TEXT_MAX);
	if (link != NULL && !alias_is_valid(link))
		return kit_problem(req, 400, "link must be 3-32 characters of A-Z a-z 0-9 _ -");
	if (notifications_key(key, sizeof(key), user) != 0)
		return kit_problem(req, 400, "user is too long");

	/* 2. Stored under its id: sent again, it is the same field. */
	result = kit_store_hash_get_all(store, key, &existing);
	if (result == KIT_STORE_ERROR)
		return kit_problem_store(req, store);
	bool again = kit_store_hash_value(&existing, id) != NULL;
	kit_store_hash_free(&existing);
	if (!again) {
		stored = cJSON_CreateObject();
		if (stored == NULL || cJSON_AddStringToObject(stored, "id", id) == NULL ||
		    cJSON_AddStringToObject(stored, "kind", kind) == NULL ||
		    cJSON_AddStringToObject(stored, "text", text) == NULL ||
		    (link != NULL ? cJSON_AddStringToObject(stored, "link", link)
				  : cJSON_AddNullToObject(stored, "link")) == NULL ||
		    cJSON_AddStringToObject(stored, "at", at) == NULL ||
		    (value = cJSON_PrintUnformatted(stored)) == NULL) {
			cJSON_Delete(stored);
			return kit_problem(req, 500, "out of memory");
		}
		const struct kit_store_field_op op = { .field = id, .value = value };
		result = kit_store_hash_update(store, key, &op, 1);
		free(value);
		cJSON_Delete(stored);
		if (result != KIT_STORE_OK)
			return kit_problem_store(req, store);
		kit_metric_add(notifications_stored_total, (const char *const[]){ kind }, 1);
	}
	cJSON *reply = cJSON_CreateObject();
	cJSON_AddStringToObject(reply, "id", id);
	cJSON_AddBoolToObject(reply, "stored_before", again);
	status = kit_respond_json(req, again ? 200 : 201, reply);
	cJSON_Delete(reply);
	return status;
}

/* ---- GET /notifications ---- */

/* Newest first: by "at", then by id (the same second). */
static int notifications_newer_first(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
	const char *xa = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "at"));
	const char *ya = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(y, "at"));
	int order = strcmp(ya != NULL ? ya : "", xa != NULL ? xa : "");

	if (order != 0)
		return order;
	xa = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "id"));
	ya = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(y, "id"));
	return strcmp(ya != NULL ? ya : "", xa != NULL ? xa : "");
}

static int notifications_get(struct kit_request *req)
{
	struct kit_store *store = kit_request_store(req);
	struct kit_store_hash all = { 0 };
	cJSON **items = NULL, *reply = NULL, *list;
	size_t count = 0;
	char key[64];
	int status;

	if (!kit_username_is_valid(req->user.subject, strlen(req->user.subject)) ||
	    notifications_key(key, sizeof(key), req->user.subject) != 0)
		return kit_problem(req, 401, "no caller identity");
	if (kit_store_hash_get_all(store, key, &all) == KIT_STORE_ERROR)
		return kit_problem_store(req, store);
	items = calloc(all.count > 0 ? all.count : 1, sizeof(*items));
	reply = cJSON_CreateObject();
	list = cJSON_AddArrayToObject(reply, "notifications");
	if (items == NULL || list == NULL) {
		status = kit_problem(req, 500, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < all.count; i++) {
		items[count] = cJSON_Parse(all.values[i]);
		if (cJSON_IsObject(items[count]))
			count++;
		else
			cJSON_Delete(items[count]); /* not ours: skipped, not shown */
	}
	qsort(items, count, sizeof(*items), notifications_newer_first);
	for (size_t i = 0; i < count; i++) {
		if (i < NOTIFICATIONS_LIST_MAX) {
			cJSON_AddItemToArray(list, items[i]);
			items[i] = NULL;
		}
	}
	cJSON_AddNumberToObject(reply, "count", (double)count);
	status = kit_respond_json(req, 200, reply);
out:
	for (size_t i = 0; i < count; i++)
		cJSON_Delete(items[i]);
	free(items);
	cJSON_Delete(reply);
	kit_store_hash_free(&all);
	return status;
}

void notifications_mount(struct kit_app *app)
{
	kit_app_use_store(app);
	kit_route(app, "GET", "/notifications", notifications_get, KIT_AUTHENTICATED);
}

void notifications_mount_internal(struct kit_app *app)
{
	kit_app_use_store(app);
	notifications_stored_total = kit_metric_register(KIT_COUNTER,
		"notifications_stored_total", "Notifications stored, by kind (a repeated id is not counted).",
		(const char *const[]){ "kind", NULL }, NULL, 0);
	/* KIT_PUBLIC: the caller is a service, not a user; what keeps clients
	 * out is the network, as for analytics' /internal routes. */
	kit_route(app, "POST", "/internal/notifications", notifications_post, KIT_PUBLIC);
}
