/*
 * services/analytics/milestones.c - tells a link's owner when the link
 * passes a number of clicks: a notification through the notifications
 * service (services/notifications), the kit's example of one service
 * calling another.
 *
 * Position: after analytics' POST /internal/clicks has stored a click
 * (analytics.c), in the analytics service only; the monolith has no
 * notifications service and does not call this.
 * Config:   NOTIFICATIONS_URL (unset: no notifications; make up and
 *           compose set it), CLICK_MILESTONES ("10,100,1000": ascending,
 *           at most 8).
 * Metrics:  analytics_notifications_total{result="sent"|"failed"}.
 *
 * After a click, the link's hash says its owner, its total and the last
 * milestone notified ("notified"). When the largest milestone at or below
 * the total is above "notified", the owner is told, with the id
 * "<code>-clicks-<N>", and then "notified" is set to N. So:
 *   - a milestone is never skipped: two clicks landing together may both
 *     read 11 and nobody read 10, and "passed 10" is still sent;
 *   - it is sent once: two senders racing send the same id, which the
 *     notifications service stores once;
 *   - nothing is lost while notifications is down: "notified" stays where
 *     it was, and the next click of that link sends it. (A link that is
 *     never clicked again keeps its notification unsent until it is.)
 *
 * Threads: the settings are read at start and only read after; each call
 * makes its own libcurl handle (rare: once per milestone), waiting through
 * kit_http_perform (kit/wait.h), so it is right on either server core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "analytics/analytics.h"
#include "kit/kit.h"
#include "kit/tracing.h"
#include "kit/wait.h"

#define MILESTONES_MAX 8
#define SEND_TIMEOUT_MS 1000

static struct {
	char url[512];                 /* NOTIFICATIONS_URL + the path; "" off */
	long at[MILESTONES_MAX];       /* ascending */
	int count;
	struct kit_metric *sent;
} milestones;

int analytics_milestones_init(struct kit_app *app)
{
	const char *base = kit_env_string("NOTIFICATIONS_URL", NULL);
	const char *list = kit_env_string("CLICK_MILESTONES", "10,100,1000");

	milestones.count = 0;
	for (const char *at = list; *at != '\0';) {
		char *end;
		long value = strtol(at, &end, 10);

		if (end == at || value < 1 || milestones.count == MILESTONES_MAX ||
		    (milestones.count > 0 && value <= milestones.at[milestones.count - 1]) ||
		    (*end != ',' && *end != '\0') || (*end == ',' && end[1] == '\0')) {
			kit_app_fail(app, "CLICK_MILESTONES: \"%s\" is not up to %d ascending whole numbers, like 10,100,1000",
				     list, MILESTONES_MAX);
			return -1;
		}
		milestones.at[milestones.count++] = value;
		at = *end == ',' ? end + 1 : end;
	}
	milestones.url[0] = '\0';
	if (base != NULL && base[0] != '\0') {
		if (strncmp(base, "http://", 7) != 0 || strlen(base) > 400) {
			kit_app_fail(app, "NOTIFICATIONS_URL: \"%s\" must be http://host[:port]", base);
			return -1;
		}
		snprintf(milestones.url, sizeof(milestones.url), "%s/internal/notifications", base);
	}
	milestones.sent = kit_metric_register(KIT_COUNTER, "analytics_notifications_total",
		"Milestone notifications sent to the notifications service, or failed (sent again on the link's next click).",
		(const char *const[]){ "result", NULL }, NULL, 0);
	return 0;
}

/* The largest milestone at or below total; 0 for none. */
long analytics_milestone_reached(long long total)
{
	long reached = 0;

	for (int i = 0; i < milestones.count && milestones.at[i] <= total; i++)
		reached = milestones.at[i];
	return reached;
}

/* POSTs the notification; true on a 2xx. */
static bool notify_owner(struct kit_request *req, const char *owner, const char *code, long milestone)
{
	char id[64], text[128], trace[KIT_TRACE_HEADER_MAX], line[KIT_TRACE_HEADER_MAX + 32],
		request_id[KIT_REQUEST_ID_MAX + 16];
	struct curl_slist *headers = NULL;
	struct kit_span *span;
	cJSON *body = cJSON_CreateObject();
	char *json = NULL;
	CURL *curl = curl_easy_init();
	long status = 0;
	CURLcode code_sent = CURLE_FAILED_INIT;

	snprintf(id, sizeof(id), "%s-clicks-%ld", code, milestone);
	snprintf(text, sizeof(text), "Your link %s has passed %ld clicks.", code, milestone);
	if (body != NULL && cJSON_AddStringToObject(body, "id", id) != NULL &&
	    cJSON_AddStringToObject(body, "user", owner) != NULL &&
	    cJSON_AddStringToObject(body, "kind", "link_clicks") != NULL &&
	    cJSON_AddStringToObject(body, "text", text) != NULL &&
	    cJSON_AddStringToObject(body, "link", code) != NULL)
		json = cJSON_PrintUnformatted(body);
	span = kit_trace_client_start(req, "POST /internal/notifications", "notifications", "POST",
				      milestones.url, trace);
	snprintf(request_id, sizeof(request_id), "X-Request-Id: %s", req->request_id);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, request_id);
	if (trace[0] != '\0') {
		snprintf(line, sizeof(line), "uber-trace-id: %s", trace);
		headers = curl_slist_append(headers, line);
	}
	if (curl != NULL && json != NULL && headers != NULL) {
		curl_easy_setopt(curl, CURLOPT_URL, milestones.url);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)SEND_TIMEOUT_MS);
		curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
		code_sent = kit_http_perform(curl);
		if (code_sent == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	}
	kit_trace_client_finish(span, (int)status);
	if (status < 200 || status > 299)
		fprintf(stderr, "analytics: request %s: notifying %s of %s: %s; sent again on the next click\n",
			req->request_id, owner, id,
			code_sent != CURLE_OK ? curl_easy_strerror(code_sent) : "not a 2xx answer");
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	free(json);
	cJSON_Delete(body);
	return status >= 200 && status <= 299;
}

void analytics_milestones_check(struct kit_request *req, struct kit_store *store, const char *code)
{
	struct kit_store_hash link = { 0 };
	char key[64];
	const char *owner, *total, *notified;
	long reached;

	if (milestones.url[0] == '\0' ||
	    analytics_key(key, sizeof(key), code) != 0 ||
	    kit_store_hash_get_all(store, key, &link) != KIT_STORE_OK)
		return;
	owner = kit_store_hash_value(&link, "owner");
	total = kit_store_hash_value(&link, "total");
	notified = kit_store_hash_value(&link, "notified");
	reached = total != NULL ? analytics_milestone_reached(atoll(total)) : 0;
	if (owner != NULL && reached > (notified != NULL ? atol(notified) : 0)) {
		bool ok = notify_owner(req, owner, code, reached);
		char value[24];

		kit_metric_add(milestones.sent, (const char *const[]){ ok ? "sent" : "failed" }, 1);
		snprintf(value, sizeof(value), "%ld", reached);
		const struct kit_store_field_op op = { .field = "notified", .value = value };
		if (ok && kit_store_hash_update(store, key, &op, 1) != KIT_STORE_OK)
			fprintf(stderr, "analytics: request %s: %s notified of %ld, not recorded: it may be sent again (stored once)\n",
				req->request_id, code, reached);
	}
	kit_store_hash_free(&link);
}
