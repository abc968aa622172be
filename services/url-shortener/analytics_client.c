/*
 * services/url-shortener/analytics_client.c - Phase 2: new links and clicks
 * go to the analytics service over HTTP, without making a redirect wait.
 *
 * Where it sits: url_shortener_mount(app, analytics_over_http(app)) in
 * services/url-shortener/main.c. A handler's events->clicked() builds the
 * event's JSON, puts it on a bounded queue and returns 0 at once (-1 when
 * the queue is full: the handler counts the loss). One sender thread posts
 * the queue in order to ANALYTICS_URL + /internal/links or /internal/clicks
 * through ONE curl easy handle, so its keep-alive connection is reused
 * event after event. 2xx: done. 4xx: analytics refused the event, it is
 * dropped and counted. A connection error, a timeout or a 5xx: the event
 * stays at the head and is tried again after a back-off (100 ms doubling to
 * 5 s, back to 100 ms after a success). So when analytics is down the
 * redirect still answers at once and clicks wait (the queue-depth gauge
 * shows them) until analytics is back.
 *
 * Threads: civetweb workers queue events; the sender thread alone uses the
 * curl handle. The queue is guarded by client.lock, and client.wake tells
 * the sender that an event arrived or that stop was asked. Metrics are
 * updated outside that lock. analytics_over_http() runs on main()'s thread
 * before kit_app_run(), because curl_global_init() is not thread-safe; the
 * sender blocks every signal, so SIGTERM still reaches kit_app_run().
 *
 * A clean stop (SIGTERM) gets ANALYTICS_DRAIN_SECONDS to deliver what is
 * queued. What it cannot deliver in that time (analytics is down) is not
 * dropped: it is appended to the Redis list "analytics:undelivered" in the
 * service's own Redis (REDIS_URL), and the next url-shortener to start
 * (any instance: the events are the same whatever the API version) takes
 * the list back into its queue before it serves, and delivers it. So a
 * restart loses no click, whatever analytics is doing (tests/faults.sh
 * shows both halves). Only when that Redis cannot be reached either are
 * events lost, and the log says how many.
 *
 * Trade-offs, on purpose: the queue is in memory, so events still queued
 * when the process is killed hard (SIGKILL, a crash) are lost. The next
 * step is a durable queue (a Redis list the sender pops with LMOVE, or a
 * stream). Delivery is at least once: a timeout after analytics stored a
 * click sends it again, and it counts twice; an idempotency key (the
 * request id) would fix that. A click that waited in Redis over a restart
 * is sent without its trace context (a span of its own trace is not worth
 * keeping a request's context for).
 *
 * Tracing (Phase 3): an event keeps the trace context of the request that
 * caused it, and every attempt to send it is a client span of that trace
 * (POST /internal/clicks, peer.service analytics) whose uber-trace-id goes
 * with the event, so a redirect's trace continues into analytics even
 * though the click is sent after the redirect has answered.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>

#include "analytics/analytics.h"
#include "kit/kit.h"
#include "kit/tracing.h"
#include "url-shortener/analytics_client.h"
#include "url-shortener/url_shortener.h"

#define ANALYTICS_CLIENT_URL_MAX 512
#define ANALYTICS_CONNECT_TIMEOUT_MS 200L
#define ANALYTICS_TIMEOUT_MS 1000L        /* the whole exchange            */
#define ANALYTICS_BACKOFF_MIN_MS 100L
#define ANALYTICS_BACKOFF_MAX_MS 5000L
/* Longest referrer or user agent an event keeps, so that a full queue has
 * a bounded size (about 2.5 KB an event at most). Analytics keeps 512
 * bytes of the referrer and only the family of the user agent. */
#define ANALYTICS_CLIENT_TEXT_MAX 1024
/* How much of a refused event's answer goes into the log line. */
#define ANALYTICS_CLIENT_REPLY_MAX 256
/* Where a clean stop leaves what it could not deliver, for the next start. */
#define ANALYTICS_UNDELIVERED_KEY "analytics:undelivered"

enum analytics_event_kind { ANALYTICS_EVENT_LINK, ANALYTICS_EVENT_CLICK };

/* One event waiting to be sent. Owned by the queue from the moment it is
 * queued; freed by the sender once delivered or refused, or by
 * analytics_client_stop() when it could not be delivered. */
struct analytics_event {
	enum analytics_event_kind kind;
	char request_id[KIT_REQUEST_ID_MAX + 1]; /* of the request that caused it */
	char *body;                             /* JSON text, malloc'd        */
	bool traced;                            /* trace holds that request's */
	struct kit_trace_context trace;         /* server span's context      */
};

struct analytics_client {
	/* Written by analytics_over_http() before the sender starts; read-only
	 * afterwards. */
	char links_url[ANALYTICS_CLIENT_URL_MAX + 32];  /* <base>/internal/links  */
	char clicks_url[ANALYTICS_CLIENT_URL_MAX + 32]; /* <base>/internal/clicks */
	size_t capacity;        /* ANALYTICS_QUEUE_SIZE                        */
	long drain_seconds;     /* ANALYTICS_DRAIN_SECONDS                     */
	bool started;           /* the sender thread runs                      */
	pthread_t sender;
	CURL *curl;             /* used by the sender thread only              */

	/* The queue: a ring of capacity events, head first. */
	pthread_mutex_t lock;
	pthread_cond_t wake;    /* an event was queued, or stop was asked      */
	struct analytics_event **ring;
	size_t head;
	size_t count;
	bool accepting;         /* false before start and after stop           */
	bool stopping;          /* stop asked: send until drain_deadline_ns    */
	uint64_t drain_deadline_ns;
	size_t drained;         /* events delivered after stop was asked       */

	/* Metrics (thread-safe by themselves). */
	struct kit_metric *queue_depth;
	struct kit_metric *sent_total;
	struct kit_metric *dropped_total;
	struct kit_metric *send_failures_total;
};

static struct analytics_client analytics_client = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

/* The "event" label of an event kind. */
static const char *analytics_event_label(enum analytics_event_kind kind)
{
	return kind == ANALYTICS_EVENT_LINK ? "link" : "click";
}

static void analytics_event_free(struct analytics_event *event)
{
	if (event == NULL)
		return;
	free(event->body);
	free(event);
}

/* ---- the request path: build the event, queue it, return ---- */

/* Copies text into out (ANALYTICS_CLIENT_TEXT_MAX + 1 bytes), cut at a
 * UTF-8 character boundary when it is longer. */
static void analytics_copy_text(char *out, const char *text)
{
	size_t len = strnlen(text, ANALYTICS_CLIENT_TEXT_MAX + 1);

	if (len > ANALYTICS_CLIENT_TEXT_MAX) {
		len = ANALYTICS_CLIENT_TEXT_MAX;
		/* text[len], the first byte left out, continues a character
		 * that started inside the kept part: leave that one out too. */
		while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
			len--;
	}
	memcpy(out, text, len);
	out[len] = '\0';
}

/* Adds name: text (cut to ANALYTICS_CLIENT_TEXT_MAX) unless text is NULL
 * or empty. Returns 0, or -1 when out of memory. */
static int analytics_add_text(cJSON *object, const char *name, const char *text)
{
	char kept[ANALYTICS_CLIENT_TEXT_MAX + 1];

	if (text == NULL || text[0] == '\0')
		return 0;
	analytics_copy_text(kept, text);
	return cJSON_AddStringToObject(object, name, kept) == NULL ? -1 : 0;
}

/* Puts event on the queue, or frees it and counts it as dropped when the
 * queue is full (or the client is not running). Returns 0 or -1. */
static int analytics_client_queue(struct analytics_event *event)
{
	struct analytics_client *client = &analytics_client;
	const char *label = analytics_event_label(event->kind);
	bool queued = false;

	pthread_mutex_lock(&client->lock);
	if (client->accepting && client->count < client->capacity) {
		client->ring[(client->head + client->count) % client->capacity] = event;
		client->count++;
		queued = true;
		pthread_cond_signal(&client->wake);
	}
	pthread_mutex_unlock(&client->lock);

	if (!queued) {
		analytics_event_free(event);
		kit_metric_add(client->dropped_total,
			       (const char *const[]){ label, "queue_full" }, 1);
		return -1;
	}
	return 0;
}

/* Serializes body into a new event for req and queues it. body is freed
 * here. Returns 0, or -1 when the event is lost (no memory, queue full). */
static int analytics_client_submit(struct kit_request *req,
				   enum analytics_event_kind kind, cJSON *body)
{
	struct analytics_event *event = calloc(1, sizeof(*event));

	if (event == NULL)
		goto fail;
	event->kind = kind;
	snprintf(event->request_id, sizeof(event->request_id), "%s",
		 req->request_id);
	event->traced = kit_span_context(kit_request_span(req), &event->trace);
	event->body = cJSON_PrintUnformatted(body);
	if (event->body == NULL)
		goto fail;
	cJSON_Delete(body);
	return analytics_client_queue(event);
fail:
	fprintf(stderr, "url-shortener: request %s: no memory for an analytics event\n",
		req->request_id);
	analytics_event_free(event);
	cJSON_Delete(body);
	return -1;
}

/* events->link_created: {"code","owner"} for POST /internal/links. */
static int analytics_http_link_created(struct kit_request *req,
				       const char *code, const char *owner)
{
	cJSON *body = cJSON_CreateObject();

	if (cJSON_AddStringToObject(body, "code", code) == NULL ||
	    cJSON_AddStringToObject(body, "owner", owner) == NULL) {
		cJSON_Delete(body);
		return -1;
	}
	return analytics_client_submit(req, ANALYTICS_EVENT_LINK, body);
}

/* events->clicked: {"code","referrer"?,"user_agent"?,"at"} for POST
 * /internal/clicks. "at" is now, so a click delivered late still counts on
 * the day it happened. */
static int analytics_http_clicked(struct kit_request *req, const char *code,
				  const char *referrer, const char *user_agent)
{
	cJSON *body = cJSON_CreateObject();

	if (cJSON_AddStringToObject(body, "code", code) == NULL ||
	    analytics_add_text(body, "referrer", referrer) != 0 ||
	    analytics_add_text(body, "user_agent", user_agent) != 0 ||
	    cJSON_AddNumberToObject(body, "at", (double)time(NULL)) == NULL) {
		cJSON_Delete(body);
		return -1;
	}
	return analytics_client_submit(req, ANALYTICS_EVENT_CLICK, body);
}

static const struct analytics_events analytics_http_events = {
	.link_created = analytics_http_link_created,
	.clicked = analytics_http_clicked,
};

/* ---- the sender thread ---- */

enum analytics_send_result {
	ANALYTICS_SENT,     /* 2xx: analytics has it                        */
	ANALYTICS_REFUSED,  /* 4xx: analytics will never take it: drop it   */
	ANALYTICS_RETRY,    /* no answer, or 5xx: keep it and try again     */
};

/* The start of analytics' answer, kept for the log line of a refusal. */
struct analytics_reply {
	char text[ANALYTICS_CLIENT_REPLY_MAX + 1];
	size_t len;
};

static size_t analytics_reply_write(char *data, size_t size, size_t count,
				    void *arg)
{
	struct analytics_reply *reply = arg;
	size_t bytes = size * count;

	for (size_t i = 0; i < bytes && reply->len < ANALYTICS_CLIENT_REPLY_MAX; i++) {
		unsigned char c = (unsigned char)data[i];

		/* The answer goes into one log line: no control characters. */
		reply->text[reply->len++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	reply->text[reply->len] = '\0';
	return bytes;
}

/*
 * POSTs event through the client's curl handle, giving up after timeout_ms.
 * Returns what to do with the event; why gets the reason of a refusal or a
 * failure, for the caller's log line.
 */
static enum analytics_send_result
analytics_client_send(struct analytics_client *client,
		      const struct analytics_event *event, long timeout_ms,
		      char *why, size_t why_size)
{
	enum analytics_send_result result = ANALYTICS_RETRY;
	struct curl_slist *headers = NULL;
	struct curl_slist *grown;
	struct analytics_reply reply = { .len = 0 };
	char request_id_header[KIT_REQUEST_ID_MAX + 32];
	char trace_value[KIT_TRACE_HEADER_MAX];
	char trace_header[KIT_TRACE_HEADER_MAX + 32];
	const char *url = event->kind == ANALYTICS_EVENT_LINK ? client->links_url
							     : client->clicks_url;
	struct kit_span *span = NULL;
	long connect_timeout_ms = ANALYTICS_CONNECT_TIMEOUT_MS;
	long status = 0;
	CURLcode code;

	/* 1. Headers: JSON, the id of the request that caused the event (so
	 *    one id follows a click through both services' logs), that
	 *    request's trace, continued by a client span for this attempt
	 *    (so one trace shows the redirect and the click's delivery), and
	 *    no "Expect: 100-continue" round trip. */
	snprintf(request_id_header, sizeof(request_id_header), "X-Request-Id: %s",
		 event->request_id);
	if (event->traced)
		span = kit_trace_client_start_from(
			&event->trace,
			event->kind == ANALYTICS_EVENT_LINK ? "POST /internal/links"
							    : "POST /internal/clicks",
			"analytics", "POST", url, trace_value);
	snprintf(trace_header, sizeof(trace_header), "uber-trace-id: %s",
		 span != NULL ? trace_value : "");
	grown = curl_slist_append(headers, "Content-Type: application/json");
	if (grown != NULL) {
		headers = grown;
		grown = curl_slist_append(headers, "Expect:");
	}
	if (grown != NULL && event->request_id[0] != '\0') {
		headers = grown;
		grown = curl_slist_append(headers, request_id_header);
	}
	if (grown != NULL && span != NULL) {
		headers = grown;
		grown = curl_slist_append(headers, trace_header);
	}
	if (grown == NULL) {
		snprintf(why, why_size, "no memory for the request headers");
		goto out;
	}
	headers = grown;

	/* 2. The request. The handle keeps its connection between events;
	 *    only what changes per event is set here. */
	if (connect_timeout_ms > timeout_ms)
		connect_timeout_ms = timeout_ms;
	code = curl_easy_setopt(client->curl, CURLOPT_URL, url);
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_HTTPHEADER, headers);
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_POSTFIELDS, event->body);
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_POSTFIELDSIZE,
					(long)strlen(event->body));
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_CONNECTTIMEOUT_MS,
					connect_timeout_ms);
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_WRITEDATA, &reply);
	if (code != CURLE_OK) {
		snprintf(why, why_size, "curl_easy_setopt: %s",
			 curl_easy_strerror(code));
		goto out;
	}

	/* 3. Send it and read the status. */
	code = curl_easy_perform(client->curl);
	if (code != CURLE_OK) {
		snprintf(why, why_size, "%s", curl_easy_strerror(code));
		goto out;
	}
	code = curl_easy_getinfo(client->curl, CURLINFO_RESPONSE_CODE, &status);
	if (code != CURLE_OK) {
		snprintf(why, why_size, "curl_easy_getinfo: %s",
			 curl_easy_strerror(code));
		goto out;
	}

	/* 4. 2xx delivered; 4xx refused for good, except 408 and 429, which
	 *    say "later"; anything else (5xx: analytics' store is down) is
	 *    tried again. */
	snprintf(why, why_size, "HTTP %ld %s", status, reply.text);
	if (status >= 200 && status < 300)
		result = ANALYTICS_SENT;
	else if (status >= 400 && status < 500 && status != 408 && status != 429)
		result = ANALYTICS_REFUSED;
out:
	/* The attempt's span: the status analytics answered, or 0 (error)
	 * when it did not answer. */
	kit_trace_client_finish(span, (int)status);
	/* The handle must not keep pointers to what is freed here. */
	code = curl_easy_setopt(client->curl, CURLOPT_HTTPHEADER, NULL);
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_WRITEDATA, NULL);
	if (code != CURLE_OK)
		fprintf(stderr, "url-shortener: analytics client: curl_easy_setopt: %s\n",
			curl_easy_strerror(code));
	curl_slist_free_all(headers);
	return result;
}

static struct timespec analytics_timespec(uint64_t ns)
{
	struct timespec when = {
		.tv_sec = (time_t)(ns / 1000000000u),
		.tv_nsec = (long)(ns % 1000000000u),
	};

	return when;
}

/* Waits backoff_ms before the next try, with client.lock held. Returns
 * early when stop is asked meanwhile (returns true: the drain then tries
 * at once), and never waits past the drain deadline. New events arriving
 * do not cut the wait short: analytics is down, they can wait too. */
static bool analytics_client_back_off(struct analytics_client *client,
				      long backoff_ms)
{
	bool was_stopping = client->stopping;
	uint64_t wake_ns = kit_now_ns() + (uint64_t)backoff_ms * 1000000u;

	if (was_stopping && wake_ns > client->drain_deadline_ns)
		wake_ns = client->drain_deadline_ns;
	while (client->stopping == was_stopping && kit_now_ns() < wake_ns) {
		struct timespec until = analytics_timespec(wake_ns);

		/* ETIMEDOUT and spurious wake-ups both go round the loop. */
		pthread_cond_timedwait(&client->wake, &client->lock, &until);
	}
	return client->stopping != was_stopping;
}

/*
 * The sender: takes the head of the queue, sends it without holding the
 * lock (workers keep queueing meanwhile), then removes it or backs off.
 * Ends when stop was asked and the queue is empty or the drain deadline
 * has passed; whatever is left stays queued for analytics_client_stop().
 */
static void *analytics_client_sender(void *arg)
{
	struct analytics_client *client = arg;
	long backoff_ms = ANALYTICS_BACKOFF_MIN_MS;
	long failures_in_a_row = 0;

	pthread_mutex_lock(&client->lock);
	for (;;) {
		struct analytics_event *event;
		enum analytics_send_result result;
		long timeout_ms = ANALYTICS_TIMEOUT_MS;
		size_t waiting;
		char why[ANALYTICS_CLIENT_REPLY_MAX + 64];
		const char *label;

		/* 1. An event to send, or the end. */
		while (client->count == 0 && !client->stopping)
			pthread_cond_wait(&client->wake, &client->lock);
		if (client->count == 0)
			break;
		if (client->stopping) {
			uint64_t now = kit_now_ns();
			long left_ms;

			if (now >= client->drain_deadline_ns)
				break;
			left_ms = (long)((client->drain_deadline_ns - now) / 1000000u);
			if (left_ms < timeout_ms)
				timeout_ms = left_ms > 0 ? left_ms : 1;
		}
		event = client->ring[client->head];
		label = analytics_event_label(event->kind);
		pthread_mutex_unlock(&client->lock);

		/* 2. Send it. */
		why[0] = '\0';
		result = analytics_client_send(client, event, timeout_ms, why,
					       sizeof(why));

		/* 3. Delivered or refused: off the queue. */
		if (result != ANALYTICS_RETRY) {
			if (failures_in_a_row > 0)
				fprintf(stderr, "url-shortener: analytics takes events again after %ld failed attempts\n",
					failures_in_a_row);
			if (result == ANALYTICS_SENT) {
				kit_metric_add(client->sent_total,
					       (const char *const[]){ label }, 1);
			} else {
				kit_metric_add(client->dropped_total,
					       (const char *const[]){ label, "rejected" }, 1);
				fprintf(stderr, "url-shortener: request %s: analytics refused the %s event, dropped: %s\n",
					event->request_id, label, why);
			}
			failures_in_a_row = 0;
			backoff_ms = ANALYTICS_BACKOFF_MIN_MS;
			analytics_event_free(event);
			pthread_mutex_lock(&client->lock);
			client->ring[client->head] = NULL;
			client->head = (client->head + 1) % client->capacity;
			client->count--;
			if (client->stopping && result == ANALYTICS_SENT)
				client->drained++;
			continue;
		}

		/* 4. Not delivered: it stays at the head; wait, then again. */
		kit_metric_add(client->send_failures_total, NULL, 1);
		failures_in_a_row++;
		pthread_mutex_lock(&client->lock);
		waiting = client->count;
		pthread_mutex_unlock(&client->lock);
		fprintf(stderr, "url-shortener: request %s: sending the %s event to analytics failed (%s); %zu events waiting, back-off %ld ms\n",
			event->request_id, label, why, waiting, backoff_ms);
		pthread_mutex_lock(&client->lock);
		if (analytics_client_back_off(client, backoff_ms))
			backoff_ms = ANALYTICS_BACKOFF_MIN_MS;
		else if (backoff_ms * 2 < ANALYTICS_BACKOFF_MAX_MS)
			backoff_ms *= 2;
		else
			backoff_ms = ANALYTICS_BACKOFF_MAX_MS;
	}
	pthread_mutex_unlock(&client->lock);
	return NULL;
}

/* ---- what a stop could not deliver: kept in Redis for the next start ---- */

/* A connection to the service's own Redis (REDIS_URL, db selected), or
 * NULL with why filled: STORE=memory (nowhere that outlives the process),
 * or Redis cannot be reached. Blocking, with the store's timeouts: used
 * only at start and at stop, on main()'s thread, while nothing serves. */
static redisContext *analytics_redis_connect(char *why, size_t why_size)
{
	struct kit_store_config config;
	struct timeval connect_timeout, command_timeout;
	redisContext *c;
	redisReply *reply;

	if (kit_store_config_from_env(&config) != 0) {
		snprintf(why, why_size, "bad STORE or REDIS_URL");
		return NULL;
	}
	if (config.kind != KIT_STORE_REDIS) {
		snprintf(why, why_size, "STORE=memory: nothing outlives the process");
		return NULL;
	}
	connect_timeout.tv_sec = config.connect_timeout_ms / 1000;
	connect_timeout.tv_usec = (config.connect_timeout_ms % 1000) * 1000;
	command_timeout.tv_sec = config.command_timeout_ms / 1000;
	command_timeout.tv_usec = (config.command_timeout_ms % 1000) * 1000;
	c = redisConnectWithTimeout(config.host, config.port, connect_timeout);
	if (c == NULL || c->err) {
		snprintf(why, why_size, "Redis %s:%d: %s", config.host, config.port,
			 c != NULL ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, command_timeout);
	reply = redisCommand(c, "SELECT %d", config.db);
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		snprintf(why, why_size, "Redis %s:%d: SELECT %d: %s", config.host,
			 config.port, config.db, reply != NULL ? reply->str : c->errstr);
		freeReplyObject(reply);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(reply);
	return c;
}

/* An event as one JSON text for the list: {"kind","request_id","body"};
 * malloc'd, NULL when out of memory. */
static char *analytics_event_to_text(const struct analytics_event *event)
{
	cJSON *item = cJSON_CreateObject();
	char *text = NULL;

	if (cJSON_AddStringToObject(item, "kind", analytics_event_label(event->kind)) != NULL &&
	    cJSON_AddStringToObject(item, "request_id", event->request_id) != NULL &&
	    cJSON_AddStringToObject(item, "body", event->body) != NULL)
		text = cJSON_PrintUnformatted(item);
	cJSON_Delete(item);
	return text;
}

/* The event a list item holds, or NULL when it is not one (or no memory). */
static struct analytics_event *analytics_event_from_text(const char *text)
{
	cJSON *item = cJSON_Parse(text);
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(item, "kind");
	const cJSON *request_id = cJSON_GetObjectItemCaseSensitive(item, "request_id");
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(item, "body");
	struct analytics_event *event = NULL;

	if (cJSON_IsString(kind) && cJSON_IsString(request_id) && cJSON_IsString(body) &&
	    (strcmp(kind->valuestring, "link") == 0 || strcmp(kind->valuestring, "click") == 0) &&
	    (event = calloc(1, sizeof(*event))) != NULL) {
		event->kind = strcmp(kind->valuestring, "link") == 0 ? ANALYTICS_EVENT_LINK
								      : ANALYTICS_EVENT_CLICK;
		snprintf(event->request_id, sizeof(event->request_id), "%s",
			 request_id->valuestring);
		event->body = strdup(body->valuestring);
		if (event->body == NULL) {
			free(event);
			event = NULL;
		}
	}
	cJSON_Delete(item);
	return event;
}

/* At stop, after the drain: appends the events left in the queue to the
 * list, oldest first, in one RPUSH, and empties the queue. Returns how many
 * are kept there; the others are lost (the caller says so). */
static size_t analytics_client_keep_undelivered(struct analytics_client *client)
{
	size_t count = client->count, kept = 0;
	const char **argv = calloc(count + 2, sizeof(*argv));
	size_t *argv_len = calloc(count + 2, sizeof(*argv_len));
	char why[256] = "out of memory";
	redisContext *c = NULL;
	redisReply *reply = NULL;
	size_t built = 0;

	if (argv == NULL || argv_len == NULL)
		goto out;
	argv[0] = "RPUSH";
	argv[1] = ANALYTICS_UNDELIVERED_KEY;
	for (; built < count; built++) {
		char *text = analytics_event_to_text(
			client->ring[(client->head + built) % client->capacity]);

		if (text == NULL)
			goto out;
		argv[built + 2] = text;
	}
	for (size_t i = 0; i < count + 2; i++)
		argv_len[i] = strlen(argv[i]);
	c = analytics_redis_connect(why, sizeof(why));
	if (c == NULL)
		goto out;
	reply = redisCommandArgv(c, (int)count + 2, argv, argv_len);
	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
		snprintf(why, sizeof(why), "RPUSH %s: %s", ANALYTICS_UNDELIVERED_KEY,
			 reply == NULL ? c->errstr
				       : reply->type == REDIS_REPLY_ERROR ? reply->str : "not a count");
	else
		kept = count;
out:
	if (kept == 0)
		fprintf(stderr, "url-shortener: cannot keep the %zu undelivered analytics events for the next start (%s)\n",
			count, why);
	freeReplyObject(reply);
	redisFree(c);
	for (size_t i = 0; i < built; i++)
		free((char *)argv[i + 2]);
	free(argv);
	free(argv_len);
	return kept;
}

/* At start, before the sender runs: takes the events a previous stop left
 * in the list into the queue, as many as it holds (the rest stay for the
 * next start). Redis down only delays them: they stay in the list. */
static void analytics_client_take_undelivered(struct analytics_client *client)
{
	char why[256];
	redisContext *c = analytics_redis_connect(why, sizeof(why));
	size_t taken = 0, bad = 0;

	if (c == NULL) {
		fprintf(stderr, "url-shortener: cannot look for undelivered analytics events (%s); they wait for the next start\n",
			why);
		return;
	}
	while (client->count < client->capacity) {
		redisReply *reply = redisCommand(c, "LPOP %s", ANALYTICS_UNDELIVERED_KEY);
		struct analytics_event *event;

		if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
			if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
				fprintf(stderr, "url-shortener: LPOP %s: %s\n", ANALYTICS_UNDELIVERED_KEY,
					reply != NULL ? reply->str : c->errstr);
			freeReplyObject(reply);
			break; /* nil: the list is empty */
		}
		event = analytics_event_from_text(reply->str);
		freeReplyObject(reply);
		if (event == NULL) {
			bad++;
			continue;
		}
		client->ring[(client->head + client->count) % client->capacity] = event;
		client->count++;
		taken++;
	}
	redisFree(c);
	if (taken > 0 || bad > 0)
		fprintf(stderr, "url-shortener: took back %zu analytics events a previous stop could not deliver%s\n",
			taken, bad > 0 ? " (and dropped some that were not events)" : "");
	if (bad > 0)
		kit_metric_add(client->dropped_total, (const char *const[]){ "click", "rejected" },
			       (double)bad);
}

/* ---- start and stop ---- */

/* The queue-depth gauge, set from the queue when /metrics is rendered. */
static void analytics_client_collect(void *arg)
{
	struct analytics_client *client = arg;
	size_t depth;

	pthread_mutex_lock(&client->lock);
	depth = client->count;
	pthread_mutex_unlock(&client->lock);
	kit_metric_set(client->queue_depth, NULL, (double)depth);
}

/* Registers the metrics and creates their series at 0, so that a rate()
 * or an alert on them has a series from the start. Returns 0 or -1. */
static int analytics_client_register_metrics(struct analytics_client *client)
{
	static const char *const event_labels[] = { "event", NULL };
	static const char *const dropped_labels[] = { "event", "reason", NULL };
	static const char *const events[] = { "link", "click" };

	client->queue_depth = kit_metric_register(
		KIT_GAUGE, "url_shortener_analytics_queue_depth",
		"Analytics events waiting to be sent.", NULL, NULL, 0);
	client->sent_total = kit_metric_register(
		KIT_COUNTER, "url_shortener_analytics_events_sent_total",
		"Analytics events the analytics service accepted.",
		event_labels, NULL, 0);
	client->dropped_total = kit_metric_register(
		KIT_COUNTER, "url_shortener_analytics_events_dropped_total",
		"Analytics events given up: the queue was full, or analytics refused them.",
		dropped_labels, NULL, 0);
	client->send_failures_total = kit_metric_register(
		KIT_COUNTER, "url_shortener_analytics_send_failures_total",
		"Attempts to send an analytics event that failed and will be retried.",
		NULL, NULL, 0);
	if (client->queue_depth == NULL || client->sent_total == NULL ||
	    client->dropped_total == NULL || client->send_failures_total == NULL)
		return -1;

	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		kit_metric_add(client->sent_total, (const char *const[]){ events[i] }, 0);
		kit_metric_add(client->dropped_total,
			       (const char *const[]){ events[i], "queue_full" }, 0);
		kit_metric_add(client->dropped_total,
			       (const char *const[]){ events[i], "rejected" }, 0);
	}
	kit_metric_add(client->send_failures_total, NULL, 0);
	kit_metric_set(client->queue_depth, NULL, 0);
	kit_metrics_on_render(analytics_client_collect, client);
	return 0;
}

/* ANALYTICS_URL, ANALYTICS_QUEUE_SIZE and ANALYTICS_DRAIN_SECONDS into
 * client. Returns 0, or -1 after kit_app_fail(). */
static int analytics_client_configure(struct kit_app *app,
				      struct analytics_client *client)
{
	const char *value = kit_env_string("ANALYTICS_URL", "http://127.0.0.1:8082");
	char base[ANALYTICS_CLIENT_URL_MAX];
	char why[128];
	long queue_size;
	size_t len;

	if (strlen(value) >= sizeof(base)) {
		kit_app_fail(app, "ANALYTICS_URL: longer than %zu bytes", sizeof(base) - 1);
		return -1;
	}
	snprintf(base, sizeof(base), "%s", value);
	if (!url_is_acceptable(base, why, sizeof(why))) {
		kit_app_fail(app, "ANALYTICS_URL: %s", why);
		return -1;
	}
	if (strpbrk(base, "?#") != NULL) {
		kit_app_fail(app, "ANALYTICS_URL: must not have a query or fragment");
		return -1;
	}
	len = strlen(base);
	while (len > 0 && base[len - 1] == '/')
		base[--len] = '\0';
	snprintf(client->links_url, sizeof(client->links_url),
		 "%s/internal/links", base);
	snprintf(client->clicks_url, sizeof(client->clicks_url),
		 "%s/internal/clicks", base);

	if (kit_env_long("ANALYTICS_QUEUE_SIZE", 10000, 1, 1000000, &queue_size) != 0 ||
	    kit_env_long("ANALYTICS_DRAIN_SECONDS", 2, 0, 60,
			 &client->drain_seconds) != 0) {
		kit_app_fail(app, "analytics client: bad setting (see above)");
		return -1;
	}
	client->capacity = (size_t)queue_size;
	return 0;
}

/* The curl handle's options that never change. Returns 0, or -1 after
 * kit_app_fail(). */
static int analytics_client_open_curl(struct kit_app *app,
				      struct analytics_client *client)
{
	CURLcode code;

	client->curl = curl_easy_init();
	if (client->curl == NULL) {
		kit_app_fail(app, "analytics client: curl_easy_init failed");
		return -1;
	}
	/* NOSIGNAL: a thread must not get SIGALRM for a DNS timeout. */
	code = curl_easy_setopt(client->curl, CURLOPT_NOSIGNAL, 1L);
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_WRITEFUNCTION,
					analytics_reply_write);
	/* Service-to-service traffic stays on the internal network: an
	 * http_proxy in the environment must not reroute it. */
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_PROXY, "");
	if (code == CURLE_OK)
		code = curl_easy_setopt(client->curl, CURLOPT_USERAGENT,
					"url-shortener-analytics-client");
	if (code != CURLE_OK) {
		kit_app_fail(app, "analytics client: curl_easy_setopt: %s",
			     curl_easy_strerror(code));
		return -1;
	}
	return 0;
}

const struct analytics_events *analytics_over_http(struct kit_app *app)
{
	struct analytics_client *client = &analytics_client;
	pthread_condattr_t wake_attr;
	sigset_t every_signal, previous;
	CURLcode code;
	int error;

	if (client->started)
		return &analytics_http_events;

	/* 1. Configuration and metrics. */
	if (analytics_client_configure(app, client) != 0)
		return &analytics_http_events;
	if (analytics_client_register_metrics(client) != 0) {
		kit_app_fail(app, "analytics client: could not register its metrics");
		return &analytics_http_events;
	}

	/* 2. libcurl, once per process, from main()'s thread: not thread-safe. */
	code = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (code != CURLE_OK) {
		kit_app_fail(app, "analytics client: curl_global_init: %s",
			     curl_easy_strerror(code));
		return &analytics_http_events;
	}
	if (analytics_client_open_curl(app, client) != 0)
		goto fail;

	/* 3. The queue. The condition variable waits on the monotonic clock,
	 *    like kit_now_ns(), so a clock change does not stretch a back-off. */
	client->ring = calloc(client->capacity, sizeof(*client->ring));
	if (client->ring == NULL) {
		kit_app_fail(app, "analytics client: no memory for %zu queued analytics events",
			     client->capacity);
		goto fail;
	}
	error = pthread_condattr_init(&wake_attr);
	if (error == 0) {
		error = pthread_condattr_setclock(&wake_attr, CLOCK_MONOTONIC);
		if (error == 0)
			error = pthread_cond_init(&client->wake, &wake_attr);
		pthread_condattr_destroy(&wake_attr);
	}
	if (error != 0) {
		kit_app_fail(app, "analytics client: cannot create the analytics queue's condition variable: %s",
			     strerror(error));
		goto fail;
	}

	/* 4. What a previous stop could not deliver goes first. */
	analytics_client_take_undelivered(client);

	/* 5. The sender. It blocks every signal: kit_app_run() sigwait()s for
	 *    SIGINT/SIGTERM on main()'s thread, and a thread that did not block
	 *    them could take the signal and be killed by it instead. */
	client->accepting = true;
	sigfillset(&every_signal);
	pthread_sigmask(SIG_BLOCK, &every_signal, &previous);
	error = pthread_create(&client->sender, NULL, analytics_client_sender,
			       client);
	pthread_sigmask(SIG_SETMASK, &previous, NULL);
	if (error != 0) {
		client->accepting = false;
		pthread_cond_destroy(&client->wake);
		kit_app_fail(app, "analytics client: cannot start the analytics sender: %s",
			     strerror(error));
		goto fail;
	}
	client->started = true;
	return &analytics_http_events;
fail:
	free(client->ring);
	client->ring = NULL;
	curl_easy_cleanup(client->curl);
	client->curl = NULL;
	curl_global_cleanup();
	return &analytics_http_events;
}

void analytics_client_stop(void)
{
	struct analytics_client *client = &analytics_client;
	size_t queued;
	size_t kept = 0, lost;
	int error;

	if (!client->started)
		return;

	/* 1. No more events; the sender gets drain_seconds for the rest. */
	pthread_mutex_lock(&client->lock);
	client->accepting = false;
	client->stopping = true;
	client->drain_deadline_ns = kit_now_ns() +
				    (uint64_t)client->drain_seconds * 1000000000u;
	queued = client->count;
	pthread_cond_signal(&client->wake);
	pthread_mutex_unlock(&client->lock);
	if (queued > 0)
		fprintf(stderr, "url-shortener: delivering %zu queued analytics events (at most %ld s)\n",
			queued, client->drain_seconds);

	/* 2. The sender ends when the queue is empty or time is up. */
	error = pthread_join(client->sender, NULL);
	if (error != 0) {
		/* Only a bug gets here; freeing what the sender may still use
		 * would be worse than leaking it at exit. */
		fprintf(stderr, "url-shortener: pthread_join(analytics sender): %s\n",
			strerror(error));
		return;
	}

	/* 3. What is left goes to Redis for the next start; only what cannot
	 *    go there is lost. Say how much of each. */
	if (client->count > 0)
		kept = analytics_client_keep_undelivered(client);
	lost = client->count - kept;
	while (client->count > 0) {
		analytics_event_free(client->ring[client->head]);
		client->ring[client->head] = NULL;
		client->head = (client->head + 1) % client->capacity;
		client->count--;
	}
	fprintf(stderr, "url-shortener: analytics client stopped: %zu events delivered while draining, %zu kept in Redis (%s) for the next start, %zu could not be delivered and are lost\n",
		client->drained, kept, ANALYTICS_UNDELIVERED_KEY, lost);

	curl_easy_cleanup(client->curl);
	client->curl = NULL;
	curl_global_cleanup();
	free(client->ring);
	client->ring = NULL;
	pthread_cond_destroy(&client->wake);
	client->started = false;
}
