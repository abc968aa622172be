/*
 * rate_limit_redis.c - middleware: the fixed-window rate limiter with its
 * counters in Redis, so every gateway instance counts against one limit.
 *
 * Position: after auth, like rate_limit_memory.c, whose decision, headers
 * and 429 it shares (rate_limit.c): only where the count lives differs.
 * That is the guide's "stateless" lesson: three gateways behind a load
 * balancer admit the limit once, not three times.
 * Reads:    req->user, req->client_ip, the route's access and policy
 *           (gateway.json "rate_limit", else the RATE_LIMIT_* defaults).
 * Writes:   the rate-limit headers; 429 when over; while Redis is down,
 *           what the route's policy says (below).
 * Config:   REDIS_URL, REDIS_RATE_LIMIT_TIMEOUT_MS (50: connect and
 *           command), RATE_LIMIT_ON_REDIS_ERROR (open|closed|local, default
 *           open: for the RATE_LIMIT_* defaults and for a policy that does
 *           not say), RATE_LIMIT_* defaults.
 *
 * While Redis cannot be reached, each policy does what its
 * "on_redis_failure" says (gateway.json; kit/rate_limit.h):
 *   open    serve uncounted: X-RateLimit-Status: redis-unavailable.
 *           Availability first; right for reading a link.
 *   closed  answer 503 (Retry-After: 1). For a route where an unlimited
 *           burst is worse than an outage.
 *   local   count in this process instead, with the same policy and
 *           window: Phase 1's counter (kit_rate_memory_hit(),
 *           rate_limit_memory.c), answers as usual (429 over the limit)
 *           plus X-RateLimit-Status: local. Behind N gateways a caller
 *           gets up to N times the limit for the length of the outage,
 *           not unlimited; nobody is locked out. Right for logins: a
 *           password guesser must not get a free run because Redis
 *           restarted, and users must still log in. The local counts are
 *           not carried into Redis; when Redis is back the shared count
 *           simply resumes where Redis had it.
 * Every outcome is counted: gateway_rate_limit_decisions_total{policy,
 * decision="allowed"|"limited"|"open"|"closed"|"local_allowed"|
 * "local_limited"}, and gateway_rate_limit_redis_errors_total.
 *
 * One round trip per request, atomic: EVALSHA of a two-line Lua script
 * (INCR the window's key; on the first hit give it a TTL), so concurrent
 * gateways can never both read 59 and both write 60.
 *
 * A dead Redis must not cost every request its timeout: after a failure
 * the limiter skips Redis for REDIS_BACKOFF_MS, in every thread at once (an
 * atomic deadline), then lets one request try again; it reconnects by
 * itself when Redis is back.
 *
 * Threads: each thread owns its Redis connection (a per-thread resource;
 * hiredis contexts are not thread-safe). On an event-loop thread its
 * requests share it, pipelined, and one waiting on Redis lets the others
 * run (kit/redis_io.h). The back-off deadline is atomic.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "kit/config.h"
#include "kit/metrics.h"
#include "kit/middleware.h"
#include "kit/rate_limit.h"
#include "kit/redis_io.h"
#include "kit/request.h"
#include "kit/response.h"
#include "kit/store.h"

#define REDIS_BACKOFF_MS 1000

static const char count_script[] =
	"local count = redis.call('INCR', KEYS[1])\n"
	"if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
	"return count\n";

struct redis_limiter {
	struct kit_rate_limit_config defaults; /* RATE_LIMIT_*                 */
	struct kit_store_config redis;         /* REDIS_URL (host, port, db)  */
	long timeout_ms;                       /* REDIS_RATE_LIMIT_TIMEOUT_MS */
	enum kit_rate_on_redis_failure on_failure; /* RATE_LIMIT_ON_REDIS_ERROR */
	struct kit_rate_memory *local;         /* "local": counts during an outage */
	char script_sha[41];
	int thread_slot;
	atomic_ullong skip_until_ns;           /* back-off, shared by threads */
	struct kit_metric *decisions;
	struct kit_metric *errors;
};

/* A thread's connection to Redis: one pipe (kit/redis_io.h), shared by the
 * thread's requests, created on first use. */
static void *pipe_create(void *arg)
{
	const struct redis_limiter *limiter = arg;

	return kit_redis_pipe_new(limiter->redis.host, limiter->redis.port, limiter->redis.db,
				  limiter->timeout_ms);
}

static void pipe_destroy(void *resource)
{
	kit_redis_pipe_free(resource);
}

/* One command (kit_redis_pipe_call: once more after a Redis restart).
 * NULL when Redis cannot be reached. */
static redisReply *command(struct kit_redis_pipe *pipe, int argc, const char **argv,
			   const size_t *argv_len)
{
	return kit_redis_pipe_call(pipe, argc, argv, argv_len);
}

/* Counts one hit on key: EVALSHA (EVAL the first time a Redis sees the
 * script). Returns the count, or -1 when Redis cannot be reached or the
 * reply is not a count. */
static long long count_hit(const struct redis_limiter *limiter, struct kit_redis_pipe *pipe,
			   const char *key, long ttl_ms)
{
	redisReply *reply;
	long long count = -1;
	char ttl_text[24];
	const char *argv[] = { "EVALSHA", limiter->script_sha, "1", key, ttl_text };
	size_t argv_len[] = { 7, strlen(limiter->script_sha), 1, strlen(key), 0 };

	/* The arguments as an array, not a format string: hiredis then
	 * copies them instead of parsing a format on every request. */
	argv_len[4] = (size_t)snprintf(ttl_text, sizeof(ttl_text), "%ld", ttl_ms);
	reply = command(pipe, 5, argv, argv_len);
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		/* First use on this Redis (or after a restart): send the
		 * script itself once; EVALSHA finds it from then on. */
		freeReplyObject(reply);
		argv[0] = "EVAL";
		argv_len[0] = 4;
		argv[1] = count_script;
		argv_len[1] = strlen(count_script);
		reply = command(pipe, 5, argv, argv_len);
	}
	if (reply == NULL)
		return -1;
	if (reply->type == REDIS_REPLY_INTEGER)
		count = reply->integer;
	else
		fprintf(stderr, "rate_limit_redis: unexpected reply: %s\n",
			reply->type == REDIS_REPLY_ERROR ? reply->str : "(not an integer)");
	freeReplyObject(reply);
	return count;
}

/* /health: can this thread reach Redis now? (Ignores the back-off, so it
 * also shows when Redis has come back.) */
static bool redis_health(struct kit_request *req, void *arg, cJSON *check)
{
	const struct redis_limiter *limiter = arg;
	struct kit_redis_pipe *pipe = kit_thread_resource(req, limiter->thread_slot);
	const char *argv[] = { "PING" };
	size_t argv_len[] = { 4 };
	redisReply *reply = pipe != NULL ? command(pipe, 1, argv, argv_len) : NULL;
	bool ok = reply != NULL && reply->type == REDIS_REPLY_STATUS;

	freeReplyObject(reply);
	cJSON_AddStringToObject(check, "on_error", kit_rate_on_redis_failure_name(limiter->on_failure));
	if (!ok)
		cJSON_AddStringToObject(check, "detail", reply == NULL ? "cannot reach Redis"
									: "PING failed");
	return ok;
}

static int rate_limit_redis_init(struct kit_app *app, void **state)
{
	struct redis_limiter *limiter = calloc(1, sizeof(*limiter));
	const char *mode = kit_env_string("RATE_LIMIT_ON_REDIS_ERROR", "open");
	unsigned char digest[SHA_DIGEST_LENGTH];

	if (limiter == NULL)
		return -1;
	*state = limiter;
	if (kit_rate_limit_config_from_env(&limiter->defaults) != 0 ||
	    kit_store_config_from_env(&limiter->redis) != 0 ||
	    kit_env_long("REDIS_RATE_LIMIT_TIMEOUT_MS", 50, 1, 10000, &limiter->timeout_ms) != 0)
		return -1;
	if (!kit_rate_on_redis_failure_parse(mode, &limiter->on_failure)) {
		fprintf(stderr, "RATE_LIMIT_ON_REDIS_ERROR: \"%s\" is not open, closed or local\n", mode);
		return -1;
	}
	/* Any policy of the route file may say "local", and the file is read
	 * after the chain is built, so the counter is always there. Its
	 * table is allocated, not touched: it costs memory only once used. */
	limiter->local = kit_rate_memory_new();
	if (limiter->local == NULL)
		return -1;

	SHA1((const unsigned char *)count_script, strlen(count_script), digest);
	for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
		snprintf(limiter->script_sha + 2 * i, 3, "%02x", digest[i]);

	limiter->thread_slot = kit_app_thread_resource(app, pipe_create,
						       pipe_destroy, limiter);
	limiter->decisions = kit_metric_register(KIT_COUNTER, "gateway_rate_limit_decisions_total",
		"Rate-limit decisions: allowed or limited by the count in Redis; with Redis "
		"unreachable, open (served uncounted), closed (503), local_allowed or "
		"local_limited (counted in this process).",
		(const char *const[]){ "policy", "decision", NULL }, NULL, 0);
	limiter->errors = kit_metric_register(KIT_COUNTER, "gateway_rate_limit_redis_errors_total",
		"Failed Redis calls of the rate limiter.", NULL, NULL, 0);
	/* With the defaults failing closed, a Redis outage stops most of this
	 * instance: the detailed health says "unhealthy" (503). Otherwise it
	 * only degrades it. */
	if (limiter->on_failure == KIT_RATE_ON_REDIS_CLOSED)
		kit_app_health_check(app, "redis", redis_health, limiter);
	else
		kit_app_health_report(app, "redis", redis_health, limiter);
	return limiter->thread_slot >= 0 ? 0 : -1;
}

/* Redis cannot be reached: what the route's policy says (see the top). */
static int without_redis(struct redis_limiter *limiter, struct kit_request *req,
			 const struct kit_rate_limit_config *config, const char *who,
			 long limit, const char *tier_policy, time_t now)
{
	enum kit_rate_on_redis_failure on_failure =
		config->on_redis_failure != KIT_RATE_ON_REDIS_DEFAULT ? config->on_redis_failure
								      : limiter->on_failure;
	struct kit_rate_decision decision;
	char key[192];

	switch (on_failure) {
	case KIT_RATE_ON_REDIS_CLOSED:
		kit_metric_add(limiter->decisions, (const char *const[]){ config->name, "closed" }, 1);
		kit_response_header(req, "Retry-After", "1");
		return kit_problem(req, 503, "the rate limiter cannot reach Redis; try again shortly");
	case KIT_RATE_ON_REDIS_LOCAL:
		/* The key of rate_limit_memory.c: per policy, per caller. */
		snprintf(key, sizeof(key), "%s:%s", config->name, who);
		decision = kit_rate_memory_hit(limiter->local, key, limit,
					       config->window_seconds, now);
		kit_metric_add(limiter->decisions,
			       (const char *const[]){ config->name,
						      decision.allowed ? "local_allowed" : "local_limited" }, 1);
		kit_response_header(req, "X-RateLimit-Status", "local");
		return kit_rate_limit_apply(req, tier_policy, config->window_seconds, &decision);
	case KIT_RATE_ON_REDIS_OPEN:
	case KIT_RATE_ON_REDIS_DEFAULT: /* not reached: the setting is never DEFAULT */
		break;
	}
	kit_metric_add(limiter->decisions, (const char *const[]){ config->name, "open" }, 1);
	kit_response_header(req, "X-RateLimit-Status", "redis-unavailable");
	return KIT_NEXT;
}

static int rate_limit_redis_handle(struct kit_request *req, void *state)
{
	struct redis_limiter *limiter = state;
	const struct kit_rate_limit_config *config =
		req->rate_limit != NULL ? req->rate_limit : &limiter->defaults;
	struct kit_redis_pipe *pipe;
	struct kit_rate_decision decision;
	const char *tier_policy;
	char who[96], key[192];
	time_t now = time(NULL);
	time_t window_start = kit_rate_window_start(config->window_seconds, now);
	uint64_t now_ns = kit_now_ns();
	long limit;
	long long count = -1;

	if (req->route_pattern == NULL || req->access == KIT_OPERATIONS)
		return KIT_NEXT;
	limit = kit_rate_limit_for(config, req, who, sizeof(who), &tier_policy);
	snprintf(key, sizeof(key), "rl:%s:%s:%lld", config->name, who, (long long)window_start);

	pipe = kit_thread_resource(req, limiter->thread_slot);
	if (pipe != NULL && now_ns >= atomic_load(&limiter->skip_until_ns)) {
		count = count_hit(limiter, pipe, key, (config->window_seconds + 1) * 1000);
		if (count < 0) {
			kit_metric_add(limiter->errors, NULL, 1);
			atomic_store(&limiter->skip_until_ns,
				     now_ns + (uint64_t)REDIS_BACKOFF_MS * 1000000u);
		}
	}
	if (count < 0)
		return without_redis(limiter, req, config, who, limit, tier_policy, now);

	decision = kit_rate_decide((long)count, limit, config->window_seconds, window_start, now);
	kit_metric_add(limiter->decisions,
		       (const char *const[]){ config->name, decision.allowed ? "allowed" : "limited" }, 1);
	return kit_rate_limit_apply(req, tier_policy, config->window_seconds, &decision);
}

static void rate_limit_redis_destroy(void *state)
{
	struct redis_limiter *limiter = state;

	if (limiter != NULL)
		kit_rate_memory_free(limiter->local);
	free(state);
}

const struct kit_middleware kit_rate_limit_redis = {
	.name = "rate_limit_redis",
	.loop_safe = true,
	.init = rate_limit_redis_init,
	.handle = rate_limit_redis_handle,
	.destroy = rate_limit_redis_destroy,
};
