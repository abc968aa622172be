/*
 * test_balancer.c - kit/gateway.h: kit_balancer_pick and kit_balancer_done,
 * which instance of an upstream gets an attempt and how each instance's
 * circuit breaker moves.
 *
 * Threats: one instance getting all the traffic while others idle (a
 * rotation that is not one); a dead instance kept in rotation, so that
 * every other request waits for a refused connection; a dead instance
 * never let back, so one bad minute halves capacity for good; two
 * requests probing a half-open instance at once (a probe is one request);
 * a retry sent back to the instance that just failed it while another is
 * there; and, with every instance out, failing every request fast, which
 * turns a blip into an outage (the balancer then tries them anyway).
 *
 * The clock is passed in, so no test sleeps.
 *
 * Run alone: make && build/tests/test_balancer
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kit/gateway.h"

#define MS 1000000ULL /* nanoseconds */

static struct kit_upstream upstream;

/* An upstream of `count` instances, breaker: 3 failures, open 1000 ms. */
static struct kit_upstream *make_upstream(int count, enum kit_balance balance)
{
	memset(&upstream, 0, sizeof(upstream));
	snprintf(upstream.name, sizeof(upstream.name), "svc");
	for (int i = 0; i < count; i++)
		snprintf(upstream.instances[i].url, sizeof(upstream.instances[i].url),
			 "http://127.0.0.1:%d", 9001 + i);
	upstream.instance_count = count;
	upstream.balance = balance;
	upstream.breaker_failures = 3;
	upstream.breaker_open_ms = 1000;
	return &upstream;
}

static int index_of(const struct kit_upstream_instance *instance)
{
	return (int)(instance - upstream.instances);
}

/* One whole attempt: pick, then report. Returns the instance's index. */
static int attempt(bool failed, uint64_t now)
{
	enum kit_breaker_state state;
	struct kit_upstream_instance *instance = kit_balancer_pick(&upstream, NULL, now);

	kit_balancer_done(&upstream, instance, failed, now, &state);
	return index_of(instance);
}

static void test_round_robin_takes_turns(void **unused)
{
	int seen[3] = { 0 };

	make_upstream(3, KIT_BALANCE_ROUND_ROBIN);
	for (int i = 0; i < 300; i++)
		seen[attempt(false, 0)]++;
	assert_int_equal(seen[0], 100);
	assert_int_equal(seen[1], 100);
	assert_int_equal(seen[2], 100);
	/* Counted per instance, and nothing left in flight. */
	assert_int_equal(upstream.instances[1].requests, 100);
	assert_int_equal(upstream.instances[1].in_flight, 0);
}

static void test_least_in_flight_prefers_the_idle_one(void **unused)
{
	struct kit_upstream_instance *busy[4];

	make_upstream(2, KIT_BALANCE_LEAST_IN_FLIGHT);
	/* Four picks left in flight spread 2 and 2... */
	for (int i = 0; i < 4; i++)
		busy[i] = kit_balancer_pick(&upstream, NULL, 0);
	assert_int_equal(upstream.instances[0].in_flight, 2);
	assert_int_equal(upstream.instances[1].in_flight, 2);
	/* ...then instance 1's finish, and the next two go to it. */
	for (int i = 0; i < 4; i++) {
		enum kit_breaker_state state;

		if (index_of(busy[i]) == 1)
			kit_balancer_done(&upstream, busy[i], false, 0, &state);
	}
	assert_int_equal(index_of(kit_balancer_pick(&upstream, NULL, 0)), 1);
	assert_int_equal(index_of(kit_balancer_pick(&upstream, NULL, 0)), 1);
}

static void test_failures_in_a_row_open_the_breaker(void **unused)
{
	enum kit_breaker_state state;
	struct kit_upstream_instance *bad;

	make_upstream(2, KIT_BALANCE_ROUND_ROBIN);
	bad = &upstream.instances[0];
	/* Two failures, then an answer: the count starts again. */
	for (int i = 0; i < 2; i++) {
		atomic_fetch_add(&bad->in_flight, 1);
		assert_false(kit_balancer_done(&upstream, bad, true, 10 * MS, &state));
	}
	atomic_fetch_add(&bad->in_flight, 1);
	assert_false(kit_balancer_done(&upstream, bad, false, 10 * MS, &state));
	assert_int_equal(bad->consecutive_failures, 0);
	/* Three in a row: open, and reported as a change once. */
	for (int i = 0; i < 2; i++) {
		atomic_fetch_add(&bad->in_flight, 1);
		assert_false(kit_balancer_done(&upstream, bad, true, 20 * MS, &state));
	}
	atomic_fetch_add(&bad->in_flight, 1);
	assert_true(kit_balancer_done(&upstream, bad, true, 20 * MS, &state));
	assert_int_equal(state, KIT_BREAKER_OPEN);
	assert_int_equal(bad->state, KIT_BREAKER_OPEN);
	assert_int_equal(bad->ejections, 1);
	assert_int_equal(bad->failures, 5);
	/* Out of rotation: everything goes to instance 1 while it is open. */
	for (int i = 0; i < 50; i++)
		assert_int_equal(attempt(false, 500 * MS), 1);
}

/* Opens instance 0 of a fresh 2-instance upstream at `now`. */
static void open_instance_0(uint64_t now)
{
	enum kit_breaker_state state;

	make_upstream(2, KIT_BALANCE_ROUND_ROBIN);
	for (int i = 0; i < 3; i++) {
		atomic_fetch_add(&upstream.instances[0].in_flight, 1);
		kit_balancer_done(&upstream, &upstream.instances[0], true, now, &state);
	}
	assert_int_equal(upstream.instances[0].state, KIT_BREAKER_OPEN);
}

/* Picks at `now` until instance 0 comes up, within one turn of the
 * rotation (the others' attempts answer); returns it, half open. */
static struct kit_upstream_instance *pick_the_probe(uint64_t now)
{
	for (int i = 0; i < upstream.instance_count; i++) {
		struct kit_upstream_instance *instance = kit_balancer_pick(&upstream, NULL, now);
		enum kit_breaker_state state;

		if (index_of(instance) == 0)
			return instance;
		kit_balancer_done(&upstream, instance, false, now, &state);
	}
	fail_msg("instance 0 was not picked as the probe within one turn");
	return NULL;
}

static void test_one_probe_after_open_ms(void **unused)
{
	struct kit_upstream_instance *probe;
	enum kit_breaker_state state;

	open_instance_0(0);
	/* Not before its 1000 ms are over. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(attempt(false, 999 * MS), 1);
	/* Then exactly one request gets it (half open); the others, sent
	 * while the probe is out, go round it. */
	probe = pick_the_probe(1000 * MS);
	assert_int_equal(probe->state, KIT_BREAKER_HALF_OPEN);
	for (int i = 0; i < 10; i++)
		assert_int_equal(attempt(false, 1001 * MS), 1);
	/* The probe answers: closed, back in rotation. */
	assert_true(kit_balancer_done(&upstream, probe, false, 1002 * MS, &state));
	assert_int_equal(state, KIT_BREAKER_CLOSED);
	int seen[2] = { 0 };
	for (int i = 0; i < 10; i++)
		seen[attempt(false, 1003 * MS)]++;
	assert_int_equal(seen[0], 5);
	assert_int_equal(seen[1], 5);
}

static void test_a_failed_probe_opens_it_again(void **unused)
{
	struct kit_upstream_instance *probe;
	enum kit_breaker_state state;

	open_instance_0(0);
	probe = pick_the_probe(1500 * MS);
	assert_true(kit_balancer_done(&upstream, probe, true, 1500 * MS, &state));
	assert_int_equal(state, KIT_BREAKER_OPEN);
	assert_int_equal(probe->ejections, 2);
	/* A new 1000 ms from the failed probe, not from the first opening. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(attempt(false, 2400 * MS), 1);
	assert_int_equal(pick_the_probe(2500 * MS)->state, KIT_BREAKER_HALF_OPEN);
}

static void test_a_retry_avoids_the_instance_that_failed(void **unused)
{
	/* Another request's pick in between, so that the rotation's next
	 * turn is the failed instance's: the retry must go round it. */
	make_upstream(2, KIT_BALANCE_ROUND_ROBIN);
	for (int i = 0; i < 30; i++) {
		struct kit_upstream_instance *first = kit_balancer_pick(&upstream, NULL, 0);
		struct kit_upstream_instance *other = kit_balancer_pick(&upstream, NULL, 0);
		struct kit_upstream_instance *retry = kit_balancer_pick(&upstream, first, 0);

		assert_ptr_not_equal(first, other); /* control: in turn */
		assert_ptr_not_equal(first, retry);
	}
	/* One instance: the retry can only go to it. */
	make_upstream(1, KIT_BALANCE_ROUND_ROBIN);
	struct kit_upstream_instance *only = kit_balancer_pick(&upstream, NULL, 0);
	assert_ptr_equal(kit_balancer_pick(&upstream, only, 0), only);
}

static void test_all_open_is_panic_mode(void **unused)
{
	enum kit_breaker_state state;
	int seen[2] = { 0 };

	make_upstream(2, KIT_BALANCE_ROUND_ROBIN);
	for (int j = 0; j < 2; j++) {
		for (int i = 0; i < 3; i++) {
			atomic_fetch_add(&upstream.instances[j].in_flight, 1);
			kit_balancer_done(&upstream, &upstream.instances[j], true, 0, &state);
		}
	}
	assert_int_equal(upstream.instances[0].state, KIT_BREAKER_OPEN);
	assert_int_equal(upstream.instances[1].state, KIT_BREAKER_OPEN);
	/* Both open: requests still go out, to both, in turn. */
	for (int i = 0; i < 10; i++)
		seen[attempt(true, 10 * MS)]++;
	assert_int_equal(seen[0], 5);
	assert_int_equal(seen[1], 5);
	/* An answer in panic mode closes that breaker at once. */
	struct kit_upstream_instance *one = kit_balancer_pick(&upstream, NULL, 20 * MS);
	assert_true(kit_balancer_done(&upstream, one, false, 20 * MS, &state));
	assert_int_equal(one->state, KIT_BREAKER_CLOSED);
}

/* An upstream of one instance (every Phase 2 upstream) never fails fast:
 * its breaker opens and shows, but requests are still sent. */
static void test_one_instance_is_always_tried(void **unused)
{
	make_upstream(1, KIT_BALANCE_ROUND_ROBIN);
	for (int i = 0; i < 10; i++)
		assert_int_equal(attempt(true, (uint64_t)i * MS), 0);
	assert_int_equal(upstream.instances[0].state, KIT_BREAKER_OPEN);
	assert_int_equal(upstream.instances[0].requests, 10);
}

/* ---- many threads at once (every loop thread shares an upstream) ---- */

#define RACERS 8
#define RACE_ROUNDS 20000

static atomic_int race_go;

/* Each racer: instance 0 always fails, 1 always answers, every attempt at
 * the same instant (now 0, then open_ms later in the second half). */
static void *race(void *arg)
{
	uint64_t now = (uint64_t)(intptr_t)arg;

	while (!atomic_load(&race_go))
		;
	for (int i = 0; i < RACE_ROUNDS; i++) {
		enum kit_breaker_state state;
		struct kit_upstream_instance *instance = kit_balancer_pick(&upstream, NULL, now);

		kit_balancer_done(&upstream, instance, index_of(instance) == 0, now, &state);
	}
	return NULL;
}

/* Threat: the compare-and-swaps are the whole of the breaker's thread
 * safety. Under eight threads at once: nothing is left in flight, every
 * attempt is counted once, the failing instance is opened (and counted as
 * opened) without a lost update, and while it is open nobody but a probe
 * reaches it. A test cannot force the worst interleaving (with the probe's
 * compare-and-swap replaced by a plain store, 5 runs out of 5 still
 * passed: two racers must read "open" within nanoseconds of each other);
 * the one-probe rule itself is test_one_probe_after_open_ms's. */
static void test_many_threads_at_once(void **unused)
{
	pthread_t racers[RACERS];
	long requests = 0;

	make_upstream(2, KIT_BALANCE_ROUND_ROBIN);
	atomic_store(&race_go, 0);
	for (int i = 0; i < RACERS; i++)
		assert_int_equal(pthread_create(&racers[i], NULL, race, (void *)(intptr_t)0), 0);
	atomic_store(&race_go, 1);
	for (int i = 0; i < RACERS; i++)
		pthread_join(racers[i], NULL);

	for (int i = 0; i < 2; i++) {
		assert_int_equal(upstream.instances[i].in_flight, 0);
		requests += upstream.instances[i].requests;
	}
	assert_int_equal(requests, (long)RACERS * RACE_ROUNDS);
	assert_int_equal(upstream.instances[0].state, KIT_BREAKER_OPEN);
	assert_int_equal(upstream.instances[1].state, KIT_BREAKER_CLOSED);
	assert_int_equal(upstream.instances[1].failures, 0);
	/* Opened once at time 0 (a failure on an open instance does not open
	 * it again), and out of rotation from then on: it got the three that
	 * opened it and the few picked around that moment (about one per
	 * racer; a racer preempted between its count and its compare-and-swap
	 * widens the window a little), not the half of 160,000 a rotation
	 * would have sent it. */
	assert_int_equal(upstream.instances[0].ejections, 1);
	assert_in_range(upstream.instances[0].requests, 3, 3 + 4 * RACERS);

	/* open_ms later: every racer competes for the probe; one gets it,
	 * fails it, and the instance is open again, with one more ejection:
	 * exactly one more request reached it. */
	long before_probe = upstream.instances[0].requests;
	atomic_store(&race_go, 0);
	for (int i = 0; i < RACERS; i++)
		assert_int_equal(pthread_create(&racers[i], NULL, race, (void *)(intptr_t)(1000 * MS)), 0);
	atomic_store(&race_go, 1);
	for (int i = 0; i < RACERS; i++)
		pthread_join(racers[i], NULL);
	assert_int_equal(upstream.instances[0].in_flight, 0);
	assert_int_equal(upstream.instances[0].state, KIT_BREAKER_OPEN);
	assert_int_equal(upstream.instances[0].ejections, 2);
	assert_int_equal(upstream.instances[0].requests, before_probe + 1);
}

static void test_state_names(void **unused)
{
	assert_string_equal(kit_breaker_state_name(KIT_BREAKER_CLOSED), "closed");
	assert_string_equal(kit_breaker_state_name(KIT_BREAKER_HALF_OPEN), "half_open");
	assert_string_equal(kit_breaker_state_name(KIT_BREAKER_OPEN), "open");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_robin_takes_turns),
		cmocka_unit_test(test_least_in_flight_prefers_the_idle_one),
		cmocka_unit_test(test_failures_in_a_row_open_the_breaker),
		cmocka_unit_test(test_one_probe_after_open_ms),
		cmocka_unit_test(test_a_failed_probe_opens_it_again),
		cmocka_unit_test(test_a_retry_avoids_the_instance_that_failed),
		cmocka_unit_test(test_all_open_is_panic_mode),
		cmocka_unit_test(test_one_instance_is_always_tried),
		cmocka_unit_test(test_many_threads_at_once),
		cmocka_unit_test(test_state_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
