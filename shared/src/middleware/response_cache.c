/*
 * response_cache.c - middleware: answers repeated reads from Redis instead
 * of asking the service again (the guide's product-catalogue cache), and
 * forgets them when the resource is written (kit/cache.h has the rules).
 *
 * Position: last, after the rate limit: a cached answer still counts
 * against the caller's limit, and auth has run, so on an authenticated
 * route the key can hold the verified user.
 * Reads:    the route's policy (req->cache: gateway.json "cache"), method,
 *           path, query, req->user, the request's Cache-Control, Pragma and
 *           Authorization; in finish, the response's status, its
 *           Cache-Control, Vary and Set-Cookie, and the body kit_respond()
 *           kept for it.
 * Writes:   X-Cache: HIT (with Age) | MISS | BYPASS; a hit is the whole
 *           answer (the service is not asked); in finish, the entry
 *           (a 200 to a GET), or drops the path's entries (a 2xx write).
 * Config:   REDIS_URL (the one the rate limiter uses), REDIS_CACHE_TIMEOUT_MS
 *           (50: connect and each command).
 * Metrics:  gateway_cache_requests_total{route, result="hit"|"miss"|
 *           "bypass"|"stored"|"not_stored"|"invalidated"|"error"}.
 *
 * In Redis, for a path P (its length L first, so that no path and query
 * can be read as another's), scope S ("p" on a public route, "u:<user>"
 * on an authenticated one):
 *   cache:S:L:P?query     the entry: "kitcache1 <stored_at> <status>\n",
 *                         the Content-Type line, kept headers, a blank
 *                         line, the body; expires by itself (SET EX)
 *   cache-index:S:L:P     a set of the path's entry keys, for a write to
 *                         drop them all in one step
 * Storing is one round trip (a Lua script: SET EX, SADD, EXPIRE), as is
 * dropping (SMEMBERS, DEL): Redis runs each script whole, so a read never
 * sees an index without its entries.
 *
 * Redis down: the cache steps aside. A lookup that fails is a miss, a
 * store that fails is skipped, both counted as "error"; after a failure
 * the cache leaves Redis alone for REDIS_BACKOFF_MS (every thread, an
 * atomic deadline), so an outage costs one timeout, not one per request.
 * A write whose invalidation fails is logged: its old entries live until
 * their TTL, which is why a route's ttl_seconds is the staleness it
 * accepts.
 *
 * Threads: each thread has its own Redis pipe (kit/redis_io.h), shared by
 * the thread's requests on an event loop; the back-off deadline is atomic.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "kit/cache.h"
#include "kit/config.h"
#include "kit/metrics.h"
#include "kit/middleware.h"
#include "kit/redis_io.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/store.h"

#define REDIS_BACKOFF_MS 1000
#define ENTRY_MAGIC "kitcache1"
#define KEY_MAX 1024
/* The largest body kept: a route may pass answers of up to the pool's
 * max_response_bytes (8 MiB) on, but a cache of such answers would hold
 * Redis's memory hostage to a few URLs. */
#define ENTRY_BODY_MAX (1024 * 1024)
/* Response headers an entry keeps, besides Content-Type: what describes
 * the content, never what belongs to one request (ids, rate limits). */
static const char *const kept_headers[] = {
	"Cache-Control", "ETag", "Last-Modified", "Content-Language", "Expires", NULL,
};

static const char store_script[] =
	"redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
	"redis.call('SADD', KEYS[2], KEYS[1])\n"
	"if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then\n"
	"  redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
	"end\n"
	"return 1\n";
static const char drop_script[] =
	"local entries = redis.call('SMEMBERS', KEYS[1])\n"
	"for _, key in ipairs(entries) do redis.call('DEL', key) end\n"
	"redis.call('DEL', KEYS[1])\n"
	"return #entries\n";

struct response_cache {
	struct kit_store_config redis; /* REDIS_URL */
	long timeout_ms;               /* REDIS_CACHE_TIMEOUT_MS */
	int thread_slot;
	atomic_ullong skip_until_ns;
	struct kit_metric *requests;
};

/* ---- the rules (kit/cache.h) ---- */

/* The number after "name=" at text, or -1. */
static long directive_seconds(const char *text)
{
	char *end;
	long value;

	if (*text != '=')
		return -1;
	text++;
	if (*text == '"')
		text++;
	if (*text < '0' || *text > '9')
		return -1;
	value = strtol(text, &end, 10);
	if (value < 0 || (*end != '\0' && *end != ',' && *end != ' ' && *end != '"' && *end != '\t'))
		return -1;
	return value;
}

void kit_cache_control_parse(const char *value, struct kit_cache_control *out)
{
	memset(out, 0, sizeof(*out));
	out->max_age = -1;
	out->s_maxage = -1;
	for (const char *at = value; at != NULL && *at != '\0';) {
		size_t len;

		at += strspn(at, " \t,");
		len = strcspn(at, "=, \t");
		if (len == 8 && strncasecmp(at, "no-store", 8) == 0)
			out->no_store = true;
		else if (len == 8 && strncasecmp(at, "no-cache", 8) == 0)
			out->no_cache = true;
		else if (len == 7 && strncasecmp(at, "private", 7) == 0)
			out->is_private = true;
		else if (len == 6 && strncasecmp(at, "public", 6) == 0)
			out->is_public = true;
		else if (len == 7 && strncasecmp(at, "max-age", 7) == 0)
			out->max_age = directive_seconds(at + len);
		else if (len == 8 && strncasecmp(at, "s-maxage", 8) == 0)
			out->s_maxage = directive_seconds(at + len);
		at += len;
		/* Past the value, quoted or not, to the next ','. */
		if (*at == '=') {
			at++;
			if (*at == '"') {
				const char *close = strchr(at + 1, '"');
				at = close != NULL ? close + 1 : at + strlen(at);
			}
			at += strcspn(at, ",");
		}
	}
}

long kit_cache_ttl(const struct kit_cache_policy *policy, bool authenticated,
		   const char *response_cache_control)
{
	struct kit_cache_control cc;
	long ttl = policy->ttl_seconds;

	kit_cache_control_parse(response_cache_control, &cc);
	if (cc.no_store || cc.no_cache || (cc.is_private && !authenticated))
		return 0;
	/* s-maxage is for shared caches like this one; it wins over max-age. */
	if (cc.s_maxage >= 0 && cc.s_maxage < ttl)
		ttl = cc.s_maxage;
	else if (cc.s_maxage < 0 && cc.max_age >= 0 && cc.max_age < ttl)
		ttl = cc.max_age;
	return ttl;
}

/* ---- keys ---- */

/* "cache:S:L:P?query" (entry) or "cache-index:S:L:P" (index) into key.
 * False when it does not fit (then the request is not cached). */
static bool make_key(char *key, size_t size, const struct kit_request *req, bool index)
{
	char scope[8 + sizeof(req->user.subject)];
	int n;

	if (req->access == KIT_AUTHENTICATED)
		snprintf(scope, sizeof(scope), "u:%s", req->user.subject);
	else
		snprintf(scope, sizeof(scope), "p");
	if (index)
		n = snprintf(key, size, "cache-index:%s:%zu:%s", scope, strlen(req->path), req->path);
	else
		n = snprintf(key, size, "cache:%s:%zu:%s?%s", scope, strlen(req->path), req->path,
			     req->query != NULL ? req->query : "");
	return n > 0 && (size_t)n < size;
}

/* ---- Redis ---- */

static void *pipe_create(void *arg)
{
	const struct response_cache *cache = arg;

	return kit_redis_pipe_new(cache->redis.host, cache->redis.port, cache->redis.db,
				  cache->timeout_ms);
}

static void pipe_destroy(void *resource)
{
	kit_redis_pipe_free(resource);
}

/* One command (kit_redis_pipe_call: once more after a Redis restart), or
 * NULL while backing off or when Redis cannot be reached (which starts a
 * back-off). */
static redisReply *command(struct response_cache *cache, struct kit_request *req, int argc,
			   const char **argv, const size_t *argv_len)
{
	struct kit_redis_pipe *pipe = kit_thread_resource(req, cache->thread_slot);
	uint64_t now = kit_now_ns();
	redisReply *reply;

	if (pipe == NULL || now < atomic_load(&cache->skip_until_ns))
		return NULL;
	reply = kit_redis_pipe_call(pipe, argc, argv, argv_len);
	if (reply == NULL)
		atomic_store(&cache->skip_until_ns, now + REDIS_BACKOFF_MS * 1000000ULL);
	return reply;
}

static void count(struct response_cache *cache, const struct kit_request *req, const char *result)
{
	kit_metric_add(cache->requests, (const char *const[]){ req->cache->route, result }, 1);
}

/* ---- a hit ---- */

/* Answers req from entry (its text, len bytes); false when the entry is
 * not one this code wrote (then it is a miss). */
static bool answer_from(struct kit_request *req, const char *entry, size_t len)
{
	const char *end = entry + len, *line, *body;
	char content_type[256] = "";
	long long stored_at;
	int status, used = 0;
	char age[24];

	if (sscanf(entry, ENTRY_MAGIC " %lld %d%n", &stored_at, &status, &used) != 2 ||
	    status < 200 || status > 599)
		return false;
	line = memchr(entry, '\n', len);
	if (line == NULL)
		return false;
	line++;
	/* The Content-Type line ("" for none), then "Name: value" lines up to
	 * a blank one, then the body. */
	const char *eol = memchr(line, '\n', (size_t)(end - line));
	if (eol == NULL || (size_t)(eol - line) >= sizeof(content_type))
		return false;
	memcpy(content_type, line, (size_t)(eol - line));
	content_type[eol - line] = '\0';
	for (line = eol + 1; line < end && *line != '\n'; line = eol + 1) {
		char name[64], value[512];
		const char *colon;

		eol = memchr(line, '\n', (size_t)(end - line));
		colon = eol != NULL ? memchr(line, ':', (size_t)(eol - line)) : NULL;
		if (colon == NULL || (size_t)(colon - line) >= sizeof(name) ||
		    (size_t)(eol - colon) >= sizeof(value))
			return false;
		memcpy(name, line, (size_t)(colon - line));
		name[colon - line] = '\0';
		memcpy(value, colon + 2, (size_t)(eol - colon - 2));
		value[eol - colon - 2] = '\0';
		kit_response_header(req, name, value);
	}
	if (line >= end)
		return false;
	body = line + 1;
	snprintf(age, sizeof(age), "%lld", (long long)time(NULL) > stored_at
		 ? (long long)time(NULL) - stored_at : 0LL);
	kit_response_header(req, "X-Cache", "HIT");
	kit_response_header(req, "Age", age);
	kit_respond(req, status, content_type[0] != '\0' ? content_type : NULL, body,
		    (size_t)(end - body));
	return true;
}

/* ---- the middleware ---- */

static int response_cache_init(struct kit_app *app, void **state)
{
	struct response_cache *cache = calloc(1, sizeof(*cache));

	if (cache == NULL)
		return -1;
	*state = cache;
	if (kit_store_config_from_env(&cache->redis) != 0 ||
	    kit_env_long("REDIS_CACHE_TIMEOUT_MS", 50, 1, 10000, &cache->timeout_ms) != 0)
		return -1;
	cache->thread_slot = kit_app_thread_resource(app, pipe_create, pipe_destroy, cache);
	cache->requests = kit_metric_register(KIT_COUNTER, "gateway_cache_requests_total",
		"Response cache outcomes per route: hit, miss, bypass (the client asked for "
		"fresh, or sent credentials to a public route), stored, not_stored (the "
		"answer may not be cached), invalidated (a write dropped the path's "
		"entries), error (Redis).",
		(const char *const[]){ "route", "result", NULL }, NULL, 0);
	return cache->thread_slot >= 0 ? 0 : -1;
}

static bool is_read(const char *method)
{
	return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static int response_cache_handle(struct kit_request *req, void *state)
{
	struct response_cache *cache = state;
	struct kit_cache_control asked;
	const char *pragma = kit_request_header(req, "Pragma");
	char key[KEY_MAX];
	redisReply *reply;

	if (req->cache == NULL || req->route_status != 0)
		return KIT_NEXT;
	if (!is_read(req->method)) {
		req->keep_response = false; /* finish drops the path on a 2xx */
		return KIT_NEXT;
	}
	kit_cache_control_parse(kit_request_header(req, "Cache-Control"), &asked);
	if (asked.no_store ||
	    (req->access == KIT_PUBLIC && kit_request_header(req, "Authorization") != NULL)) {
		kit_response_header(req, "X-Cache", "BYPASS");
		count(cache, req, "bypass");
		return KIT_NEXT; /* and not stored: keep_response stays false */
	}
	if (!make_key(key, sizeof(key), req, false))
		return KIT_NEXT;
	req->keep_response = strcmp(req->method, "GET") == 0;
	if (asked.no_cache || (pragma != NULL && strcasecmp(pragma, "no-cache") == 0)) {
		kit_response_header(req, "X-Cache", "BYPASS");
		count(cache, req, "bypass");
		return KIT_NEXT; /* the fresh answer is stored */
	}

	reply = command(cache, req, 2, (const char *[]){ "GET", key },
			(const size_t[]){ 3, strlen(key) });
	if (reply == NULL) {
		count(cache, req, "error");
	} else if (reply->type == REDIS_REPLY_STRING && answer_from(req, reply->str, reply->len)) {
		freeReplyObject(reply);
		req->service = req->cache->service;
		req->keep_response = false;
		count(cache, req, "hit");
		return req->status;
	} else if (reply->type != REDIS_REPLY_NIL) {
		fprintf(stderr, "response_cache: request %s: %s is not an entry; ignored\n",
			req->request_id, key);
	}
	freeReplyObject(reply);
	kit_response_header(req, "X-Cache", "MISS");
	count(cache, req, "miss");
	return KIT_NEXT;
}

/* The value of response header name among those set so far, or NULL. The
 * returned pointer is into a static per-thread buffer. */
static const char *response_header(const struct kit_request *req, const char *name)
{
	static __thread char value[512];
	size_t name_len = strlen(name);

	for (const char *line = req->extra_headers; *line != '\0';) {
		const char *end = strstr(line, "\r\n");

		if (end == NULL)
			break;
		if ((size_t)(end - line) > name_len + 1 && strncasecmp(line, name, name_len) == 0 &&
		    line[name_len] == ':') {
			const char *v = line + name_len + 1;
			size_t len;

			v += strspn(v, " \t");
			len = (size_t)(end - v) < sizeof(value) - 1 ? (size_t)(end - v) : sizeof(value) - 1;
			memcpy(value, v, len);
			value[len] = '\0';
			return value;
		}
		line = end + 2;
	}
	return NULL;
}

/* The entry text of req's answer, or NULL (out of memory). */
static char *entry_of(const struct kit_request *req, size_t *len)
{
	size_t size = 128 + (req->kept_content_type != NULL ? strlen(req->kept_content_type) : 0) +
		      req->kept_len;
	char *entry, *at;

	for (int i = 0; kept_headers[i] != NULL; i++) {
		const char *value = response_header(req, kept_headers[i]);

		if (value != NULL)
			size += strlen(kept_headers[i]) + strlen(value) + 3;
	}
	entry = malloc(size);
	if (entry == NULL)
		return NULL;
	at = entry + sprintf(entry, ENTRY_MAGIC " %lld %d\n%s\n", (long long)time(NULL),
			     req->status, req->kept_content_type != NULL ? req->kept_content_type : "");
	for (int i = 0; kept_headers[i] != NULL; i++) {
		const char *value = response_header(req, kept_headers[i]);

		if (value != NULL)
			at += sprintf(at, "%s: %s\n", kept_headers[i], value);
	}
	*at++ = '\n';
	memcpy(at, req->kept_body, req->kept_len);
	*len = (size_t)(at - entry) + req->kept_len;
	return entry;
}

static void store(struct response_cache *cache, struct kit_request *req)
{
	char key[KEY_MAX], index[KEY_MAX], ttl_text[24];
	long ttl;
	size_t len;
	char *entry;
	redisReply *reply;

	ttl = kit_cache_ttl(req->cache, req->access == KIT_AUTHENTICATED,
			    response_header(req, "Cache-Control"));
	if (req->status != 200 || req->kept_body == NULL || ttl == 0 ||
	    req->kept_len > ENTRY_BODY_MAX ||
	    response_header(req, "Vary") != NULL || response_header(req, "Set-Cookie") != NULL) {
		count(cache, req, "not_stored");
		return;
	}
	if (!make_key(key, sizeof(key), req, false) || !make_key(index, sizeof(index), req, true))
		return;
	entry = entry_of(req, &len);
	if (entry == NULL)
		return;
	snprintf(ttl_text, sizeof(ttl_text), "%ld", ttl);
	reply = command(cache, req, 7,
			(const char *[]){ "EVAL", store_script, "2", key, index, entry, ttl_text },
			(const size_t[]){ 4, strlen(store_script), 1, strlen(key), strlen(index), len,
					  strlen(ttl_text) });
	free(entry);
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		if (reply != NULL)
			fprintf(stderr, "response_cache: request %s: %s\n", req->request_id, reply->str);
		count(cache, req, "error");
	} else {
		count(cache, req, "stored");
	}
	freeReplyObject(reply);
}

static void drop(struct response_cache *cache, struct kit_request *req)
{
	char index[KEY_MAX];
	redisReply *reply;

	if (!make_key(index, sizeof(index), req, true))
		return;
	reply = command(cache, req, 4, (const char *[]){ "EVAL", drop_script, "1", index },
			(const size_t[]){ 4, strlen(drop_script), 1, strlen(index) });
	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		fprintf(stderr, "response_cache: request %s: could not drop the entries of %s; "
			"they live out their TTL\n", req->request_id, req->path);
		count(cache, req, "error");
	} else {
		count(cache, req, "invalidated");
	}
	freeReplyObject(reply);
}

/* After the answer has gone out: store it, or drop what a write changed. */
static void response_cache_finish(struct kit_request *req, void *state)
{
	struct response_cache *cache = state;

	if (req->cache == NULL || req->route_status != 0)
		return;
	if (req->keep_response)
		store(cache, req);
	else if (!is_read(req->method) && strcmp(req->method, "OPTIONS") != 0 &&
		 req->status >= 200 && req->status < 300)
		drop(cache, req);
}

static void response_cache_destroy(void *state)
{
	free(state);
}

const struct kit_middleware kit_response_cache = {
	.name = "response_cache",
	.loop_safe = true, /* Redis through kit/redis_io.h */
	.init = response_cache_init,
	.handle = response_cache_handle,
	.finish = response_cache_finish,
	.destroy = response_cache_destroy,
};
