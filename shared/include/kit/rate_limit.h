/*
 * kit/rate_limit.h - the rate-limit decision, its headers and its limits,
 * shared by the in-memory limiter (Phase 1, rate_limit_memory.c) and the
 * Redis one (Phase 2/3).
 *
 * A fixed window: each key may make `limit` requests per `window` seconds;
 * the window starts at a multiple of `window` on the wall clock, so every
 * instance that shares a store agrees on it.
 */
#ifndef KIT_RATE_LIMIT_H
#define KIT_RATE_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct kit_request;

/* What a limiter whose counters live in Redis does while Redis cannot be
 * reached (rate_limit_redis.c). The in-memory limiter never needs it. */
enum kit_rate_on_redis_failure {
	KIT_RATE_ON_REDIS_DEFAULT = 0, /* whatever RATE_LIMIT_ON_REDIS_ERROR
	                                * says (open, unless set)            */
	KIT_RATE_ON_REDIS_OPEN,        /* serve uncounted                     */
	KIT_RATE_ON_REDIS_CLOSED,      /* refuse: 503                         */
	KIT_RATE_ON_REDIS_LOCAL,       /* count in this process instead, with
	                                * the same limits (rate_limit_memory.c's
	                                * counter), until Redis is back        */
};

/* "open", "closed", "local" into *out. Returns false for anything else. */
bool kit_rate_on_redis_failure_parse(const char *text, enum kit_rate_on_redis_failure *out);
/* The name of a value: "open", "closed", "local" (DEFAULT: "default"). */
const char *kit_rate_on_redis_failure_name(enum kit_rate_on_redis_failure value);

/* Limits per caller class: RATE_LIMIT_WINDOW_SECONDS (60),
 * RATE_LIMIT_ANONYMOUS (30: public routes, per client IP),
 * RATE_LIMIT_FREE (60) and RATE_LIMIT_PREMIUM (600, per user). */
struct kit_rate_limit_config {
	char name[32];          /* the policy's name: "default", "login"   */
	long window_seconds;
	long anonymous_limit;
	long free_limit;
	long premium_limit;
	/* gateway.json "on_redis_failure"; DEFAULT for the RATE_LIMIT_*
	 * defaults and for a policy that does not say. */
	enum kit_rate_on_redis_failure on_redis_failure;
};

int kit_rate_limit_config_from_env(struct kit_rate_limit_config *cfg);

struct kit_rate_decision {
	bool allowed;
	long limit;
	long remaining;      /* after this request, never negative */
	long reset_seconds;  /* until the window ends, at least 1  */
};

/* The decision for the count-th request in the window that started at
 * window_start (a pure function, shared by every backend). */
struct kit_rate_decision kit_rate_decide(long count, long limit,
					 long window_seconds,
					 time_t window_start, time_t now);

/* The start of the window that contains now. */
time_t kit_rate_window_start(long window_seconds, time_t now);

/* Picks the key and the limit for req: "user:<sub>" with the tier's limit
 * for authenticated callers, "ip:<client ip>" with the anonymous limit for
 * everyone else. *policy names the limit ("free", "premium", "anonymous").
 * key_size bytes are written at most. */
long kit_rate_limit_for(const struct kit_rate_limit_config *cfg,
			const struct kit_request *req, char *key,
			size_t key_size, const char **policy);

/* Adds X-RateLimit-Limit/-Remaining/-Reset and the IETF RateLimit-Policy /
 * RateLimit fields; when the request is refused, answers 429 with
 * Retry-After and a problem body and returns 429. Returns KIT_NEXT when the
 * request may pass. */
int kit_rate_limit_apply(struct kit_request *req, const char *policy,
			 long window_seconds,
			 const struct kit_rate_decision *decision);

/* The in-memory fixed-window counter behind rate_limit_memory.c, usable on
 * its own (unit tests). Thread-safe: striped locks inside. */
struct kit_rate_memory;
struct kit_rate_memory *kit_rate_memory_new(void);
void kit_rate_memory_free(struct kit_rate_memory *limiter);
/* Counts one request for key at now and returns the decision. */
struct kit_rate_decision kit_rate_memory_hit(struct kit_rate_memory *limiter,
					     const char *key, long limit,
					     long window_seconds, time_t now);

#endif
