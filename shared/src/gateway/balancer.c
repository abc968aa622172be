/*
 * balancer.c - which instance of an upstream gets the next attempt, and
 * each instance's circuit breaker (kit/gateway.h has the rules).
 *
 * Position: called by the proxy (proxy.c) around every attempt: pick,
 * send, done. Nothing here does I/O or reads the clock: the caller passes
 * the time, so tests/unit/test_balancer.c can walk a breaker through its
 * states without waiting.
 *
 * Threads: every loop thread or civetweb worker picks from the same
 * upstream at once. Each field is an atomic; a state change that two
 * threads could race on (closed -> open, open -> half_open) is a
 * compare-and-swap, so exactly one of them makes it (one probe, one
 * ejection counted). The counters that only inform (in_flight for
 * least_in_flight) may be a request out of date, which costs nothing.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "kit/gateway.h"

const char *kit_breaker_state_name(enum kit_breaker_state state)
{
	switch (state) {
	case KIT_BREAKER_CLOSED:
		return "closed";
	case KIT_BREAKER_HALF_OPEN:
		return "half_open";
	case KIT_BREAKER_OPEN:
		return "open";
	}
	return "unknown";
}

/* Whether an open instance's time out of rotation is over at now_ns; if
 * so, this caller (and no other) turns it half_open: the probe. */
static bool take_probe(const struct kit_upstream *upstream,
		       struct kit_upstream_instance *instance, uint64_t now_ns)
{
	int open = KIT_BREAKER_OPEN;
	uint64_t opened = atomic_load(&instance->opened_ns);

	if (now_ns < opened || now_ns - opened < (uint64_t)upstream->breaker_open_ms * 1000000u)
		return false;
	return atomic_compare_exchange_strong(&instance->state, &open, KIT_BREAKER_HALF_OPEN);
}

/* The instance of the closed ones (or a probe) that the policy prefers,
 * scanning from `start`; `avoid` is passed over. NULL when none is. */
static struct kit_upstream_instance *choose(struct kit_upstream *upstream,
					    const struct kit_upstream_instance *avoid,
					    int start, uint64_t now_ns)
{
	struct kit_upstream_instance *best = NULL;
	long best_in_flight = 0;

	for (int k = 0; k < upstream->instance_count; k++) {
		struct kit_upstream_instance *instance =
			&upstream->instances[(start + k) % upstream->instance_count];
		int state = atomic_load(&instance->state);
		long in_flight;

		if (instance == avoid)
			continue;
		if (state == KIT_BREAKER_OPEN && take_probe(upstream, instance, now_ns))
			return instance; /* its trial comes first */
		if (state != KIT_BREAKER_CLOSED)
			continue;
		if (upstream->balance == KIT_BALANCE_ROUND_ROBIN)
			return instance;
		in_flight = atomic_load(&instance->in_flight);
		if (best == NULL || in_flight < best_in_flight) {
			best = instance;
			best_in_flight = in_flight;
		}
	}
	return best;
}

struct kit_upstream_instance *kit_balancer_pick(struct kit_upstream *upstream,
						const struct kit_upstream_instance *avoid,
						uint64_t now_ns)
{
	int count = upstream->instance_count;
	int start = (int)(atomic_fetch_add(&upstream->next, 1) % (unsigned long)count);
	struct kit_upstream_instance *instance;

	/* 1. A closed instance (or a due probe) other than the one that
	 *    just failed; 2. that one, if it is still closed; 3. panic:
	 *    every instance is out, so use them anyway, in turn. */
	instance = choose(upstream, count > 1 ? avoid : NULL, start, now_ns);
	if (instance == NULL && avoid != NULL && count > 1 &&
	    atomic_load(&avoid->state) == KIT_BREAKER_CLOSED)
		instance = (struct kit_upstream_instance *)avoid;
	if (instance == NULL) {
		instance = &upstream->instances[start];
		if (instance == avoid && count > 1)
			instance = &upstream->instances[(start + 1) % count];
	}
	atomic_fetch_add(&instance->in_flight, 1);
	atomic_fetch_add(&instance->requests, 1);
	return instance;
}

bool kit_balancer_done(struct kit_upstream *upstream, struct kit_upstream_instance *instance,
		       bool failed, uint64_t now_ns, enum kit_breaker_state *state)
{
	int now_state = atomic_load(&instance->state);

	atomic_fetch_sub(&instance->in_flight, 1);
	if (!failed) {
		atomic_store(&instance->consecutive_failures, 0);
		*state = KIT_BREAKER_CLOSED;
		if (now_state == KIT_BREAKER_CLOSED)
			return false;
		/* The probe answered (or a request sent before it opened, or
		 * in panic mode): back in rotation. */
		return atomic_compare_exchange_strong(&instance->state, &now_state,
						      KIT_BREAKER_CLOSED);
	}
	atomic_fetch_add(&instance->failures, 1);
	long in_a_row = atomic_fetch_add(&instance->consecutive_failures, 1) + 1;

	*state = (enum kit_breaker_state)now_state;
	if (now_state == KIT_BREAKER_OPEN ||
	    (now_state == KIT_BREAKER_CLOSED && in_a_row < upstream->breaker_failures))
		return false;
	/* closed with too many failures in a row, or a failed probe: open
	 * (again) from now. */
	atomic_store(&instance->opened_ns, now_ns);
	if (!atomic_compare_exchange_strong(&instance->state, &now_state, KIT_BREAKER_OPEN))
		return false; /* another thread moved it first */
	atomic_fetch_add(&instance->ejections, 1);
	*state = KIT_BREAKER_OPEN;
	return true;
}
