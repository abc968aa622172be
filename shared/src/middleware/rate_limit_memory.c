/*
 * rate_limit_memory.c - middleware: a fixed-window rate limiter whose
 * counters live in this process's memory.
 *
 * Position: after auth, so authenticated callers are counted per user and
 * by their tier's limit; everyone else per client IP. Operations routes
 * (/health, /metrics) and unmatched paths are not counted.
 * Reads:    req->user, req->client_ip, the route's access and policy (a
 *           gateway route may name one; else RATE_LIMIT_*).
 * Writes:   the rate-limit response headers; 429 when over the limit.
 * Config:   RATE_LIMIT_* (kit/rate_limit.h).
 *
 * Deliberately Phase 1 only: one process, one memory, exact counts. Run
 * three copies behind a load balancer and each keeps its own count, so a
 * caller gets three times the limit; Phase 3 shows that, and moves the
 * counter to Redis (the guide's "stateless" lesson).
 *
 * Threads: the table is split into stripes, each with its own mutex, so
 * workers counting different keys rarely wait on each other. Entries from
 * past windows are swept when a stripe fills; if a stripe is still full of
 * live keys, the new key is let through uncounted (fail open) and counted
 * in kit_rate_limit_untracked_total, rather than refusing a stranger
 * because of other people's traffic.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kit/metrics.h"
#include "kit/middleware.h"
#include "kit/noncrypto.h"
#include "kit/rate_limit.h"
#include "kit/request.h"

#define STRIPES 64
#define SLOTS_PER_STRIPE 4096                 /* open addressing         */
#define MAX_LIVE_PER_STRIPE (SLOTS_PER_STRIPE * 3 / 4)
#define KEY_MAX 96

struct counter {
	char key[KEY_MAX];    /* "" marks an empty slot */
	time_t window_start;
	long count;
};

struct stripe {
	pthread_mutex_t lock;
	struct counter *slots; /* SLOTS_PER_STRIPE */
	size_t used;
};

struct kit_rate_memory {
	struct stripe stripes[STRIPES];
	struct kit_metric *untracked;
};

struct kit_rate_memory *kit_rate_memory_new(void)
{
	struct kit_rate_memory *limiter = calloc(1, sizeof(*limiter));

	if (limiter == NULL)
		return NULL;
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&limiter->stripes[i].lock, NULL);
		limiter->stripes[i].slots =
			calloc(SLOTS_PER_STRIPE, sizeof(struct counter));
		if (limiter->stripes[i].slots == NULL) {
			kit_rate_memory_free(limiter);
			return NULL;
		}
	}
	limiter->untracked = kit_metric_register(
		KIT_COUNTER, "kit_rate_limit_untracked_total",
		"Requests let through uncounted because the in-memory table was full.",
		NULL, NULL, 0);
	return limiter;
}

void kit_rate_memory_free(struct kit_rate_memory *limiter)
{
	if (limiter == NULL)
		return;
	for (int i = 0; i < STRIPES; i++) {
		free(limiter->stripes[i].slots);
		pthread_mutex_destroy(&limiter->stripes[i].lock);
	}
	free(limiter);
}

/* The slot holding key, or the empty slot where it belongs. Lock held;
 * the table is never full (at most MAX_LIVE_PER_STRIPE are used). */
static struct counter *probe(struct stripe *stripe, const char *key,
			     uint64_t hash)
{
	size_t slot = (hash / STRIPES) % SLOTS_PER_STRIPE;

	while (stripe->slots[slot].key[0] != '\0' &&
	       strcmp(stripe->slots[slot].key, key) != 0)
		slot = (slot + 1) % SLOTS_PER_STRIPE;
	return &stripe->slots[slot];
}

/* Re-inserts only the counters of the current window, forgetting the
 * rest. Lock held. Returns -1 when out of memory (the table is kept). */
static int sweep(struct stripe *stripe, time_t window_start)
{
	struct counter *old = stripe->slots;
	struct counter *fresh = calloc(SLOTS_PER_STRIPE, sizeof(struct counter));

	if (fresh == NULL)
		return -1;
	stripe->slots = fresh;
	stripe->used = 0;
	for (size_t i = 0; i < SLOTS_PER_STRIPE; i++) {
		if (old[i].key[0] == '\0' || old[i].window_start < window_start)
			continue;
		*probe(stripe, old[i].key, kit_hash_string(old[i].key)) = old[i];
		stripe->used++;
	}
	free(old);
	return 0;
}

struct kit_rate_decision kit_rate_memory_hit(struct kit_rate_memory *limiter,
					     const char *key, long limit,
					     long window_seconds, time_t now)
{
	time_t window_start = kit_rate_window_start(window_seconds, now);
	uint64_t hash = kit_hash_string(key);
	struct stripe *stripe = &limiter->stripes[hash % STRIPES];
	struct counter *counter;
	long count = 1;
	bool tracked = true;

	pthread_mutex_lock(&stripe->lock);
	counter = probe(stripe, key, hash);
	if (counter->key[0] == '\0') {
		if (stripe->used >= MAX_LIVE_PER_STRIPE &&
		    sweep(stripe, window_start) == 0)
			counter = probe(stripe, key, hash);
		if (stripe->used >= MAX_LIVE_PER_STRIPE) {
			tracked = false;
		} else {
			snprintf(counter->key, KEY_MAX, "%s", key);
			counter->window_start = window_start;
			counter->count = 0;
			stripe->used++;
		}
	}
	if (tracked) {
		if (counter->window_start != window_start) {
			counter->window_start = window_start;
			counter->count = 0;
		}
		count = ++counter->count;
	}
	pthread_mutex_unlock(&stripe->lock);

	if (!tracked)
		kit_metric_add(limiter->untracked, NULL, 1);
	return kit_rate_decide(count, limit, window_seconds, window_start, now);
}

struct rate_limit_memory_state {
	struct kit_rate_limit_config config;
	struct kit_rate_memory *limiter;
};

static int rate_limit_memory_init(struct kit_app *app, void **state)
{
	struct rate_limit_memory_state *self = calloc(1, sizeof(*self));

	if (self == NULL)
		return -1;
	*state = self;
	if (kit_rate_limit_config_from_env(&self->config) != 0)
		return -1;
	self->limiter = kit_rate_memory_new();
	return self->limiter != NULL ? 0 : -1;
}

static int rate_limit_memory_handle(struct kit_request *req, void *state)
{
	struct rate_limit_memory_state *self = state;
	const struct kit_rate_limit_config *config =
		req->rate_limit != NULL ? req->rate_limit : &self->config;
	struct kit_rate_decision decision;
	const char *policy;
	char who[KEY_MAX - 32], key[KEY_MAX];
	long limit;

	if (req->route_pattern == NULL || req->access == KIT_OPERATIONS)
		return KIT_NEXT;
	limit = kit_rate_limit_for(config, req, who, sizeof(who), &policy);
	snprintf(key, sizeof(key), "%s:%s", config->name, who); /* per policy */
	decision = kit_rate_memory_hit(self->limiter, key, limit,
				       config->window_seconds, time(NULL));
	return kit_rate_limit_apply(req, policy, config->window_seconds, &decision);
}

static void rate_limit_memory_destroy(void *state)
{
	struct rate_limit_memory_state *self = state;

	if (self == NULL)
		return;
	kit_rate_memory_free(self->limiter);
	free(self);
}

const struct kit_middleware kit_rate_limit_memory = {
	.name = "rate_limit_memory",
	.loop_safe = true,
	.init = rate_limit_memory_init,
	.handle = rate_limit_memory_handle,
	.destroy = rate_limit_memory_destroy,
};
