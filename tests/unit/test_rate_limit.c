/*
 * test_rate_limit.c - kit/rate_limit.h: the pure fixed-window decision
 * (kit_rate_decide, kit_rate_window_start), the in-memory counter
 * (kit_rate_memory_hit, also under many threads) and the limits read from
 * the environment.
 *
 * Times are passed explicitly; nothing depends on the wall clock.
 *
 * Run alone: make && build/tests/test_rate_limit
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit/rate_limit.h"

#define WINDOW 60
#define WINDOW_START ((time_t)1800000000) /* a multiple of 60 */

/* ---- kit_rate_decide ------------------------------------------------- */

static void test_decide_counts_up_to_limit(void **state)
{
	for (long count = 1; count <= 5; count++) {
		struct kit_rate_decision d =
			kit_rate_decide(count, 5, WINDOW, WINDOW_START,
					WINDOW_START + 10);
		assert_true(d.allowed);
		assert_int_equal(d.limit, 5);
		assert_int_equal(d.remaining, 5 - count);
	}
}

static void test_decide_refuses_past_limit(void **state)
{
	struct kit_rate_decision d =
		kit_rate_decide(6, 5, WINDOW, WINDOW_START, WINDOW_START + 10);
	assert_false(d.allowed);
	assert_int_equal(d.limit, 5);
	assert_int_equal(d.remaining, 0);

	d = kit_rate_decide(1000, 5, WINDOW, WINDOW_START, WINDOW_START + 10);
	assert_false(d.allowed);
	assert_int_equal(d.remaining, 0);
}

static void test_decide_reset_seconds(void **state)
{
	struct kit_rate_decision d;
	d = kit_rate_decide(1, 5, WINDOW, WINDOW_START, WINDOW_START);
	assert_int_equal(d.reset_seconds, 60);
	d = kit_rate_decide(1, 5, WINDOW, WINDOW_START, WINDOW_START + 18);
	assert_int_equal(d.reset_seconds, 42);
	d = kit_rate_decide(1, 5, WINDOW, WINDOW_START, WINDOW_START + 59);
	assert_int_equal(d.reset_seconds, 1);

	for (time_t now = WINDOW_START; now < WINDOW_START + WINDOW; now++) {
		d = kit_rate_decide(7, 5, WINDOW, WINDOW_START, now);
		assert_in_range(d.reset_seconds, 1, WINDOW);
		assert_int_equal(d.remaining, 0);
	}
}

/* ---- kit_rate_window_start ------------------------------------------- */

static void test_window_start_alignment(void **state)
{
	assert_int_equal(kit_rate_window_start(60, WINDOW_START), WINDOW_START);
	assert_int_equal(kit_rate_window_start(60, WINDOW_START + 1), WINDOW_START);
	assert_int_equal(kit_rate_window_start(60, WINDOW_START + 59), WINDOW_START);
	assert_int_equal(kit_rate_window_start(60, WINDOW_START + 60),
			 WINDOW_START + 60);
	assert_int_equal(kit_rate_window_start(3600, 1800003599), 1800000000);
	assert_int_equal(kit_rate_window_start(7, 100), 98);
	for (time_t now = 1000; now < 1200; now++) {
		time_t start = kit_rate_window_start(60, now);
		assert_int_equal(start % 60, 0);
		assert_true(start <= now && now < start + 60);
	}
}

/* ---- kit_rate_memory_hit --------------------------------------------- */

static void test_memory_exact_limit(void **state)
{
	struct kit_rate_memory *limiter = kit_rate_memory_new();
	assert_non_null(limiter);
	for (long i = 1; i <= 5; i++) {
		/* Spread over the window: still the same window. */
		struct kit_rate_decision d = kit_rate_memory_hit(
			limiter, "ip:192.0.2.1", 5, WINDOW, WINDOW_START + i * 10);
		assert_true(d.allowed);
		assert_int_equal(d.remaining, 5 - i);
		assert_in_range(d.reset_seconds, 1, WINDOW);
	}
	struct kit_rate_decision d = kit_rate_memory_hit(
		limiter, "ip:192.0.2.1", 5, WINDOW, WINDOW_START + 59);
	assert_false(d.allowed);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.reset_seconds, 1);
	kit_rate_memory_free(limiter);
}

static void test_memory_new_window_resets(void **state)
{
	struct kit_rate_memory *limiter = kit_rate_memory_new();
	assert_non_null(limiter);
	for (int i = 0; i < 5; i++)
		assert_true(kit_rate_memory_hit(limiter, "user:alice", 5, WINDOW,
						WINDOW_START + 30).allowed);
	assert_false(kit_rate_memory_hit(limiter, "user:alice", 5, WINDOW,
					 WINDOW_START + 30).allowed);

	struct kit_rate_decision d = kit_rate_memory_hit(
		limiter, "user:alice", 5, WINDOW, WINDOW_START + WINDOW);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 4);
	assert_int_equal(d.reset_seconds, 60);
	kit_rate_memory_free(limiter);
}

static void test_memory_keys_independent(void **state)
{
	struct kit_rate_memory *limiter = kit_rate_memory_new();
	assert_non_null(limiter);
	for (int i = 0; i < 3; i++)
		assert_true(kit_rate_memory_hit(limiter, "ip:192.0.2.1", 3, WINDOW,
						WINDOW_START).allowed);
	assert_false(kit_rate_memory_hit(limiter, "ip:192.0.2.1", 3, WINDOW,
					 WINDOW_START).allowed);

	struct kit_rate_decision d = kit_rate_memory_hit(
		limiter, "ip:192.0.2.2", 3, WINDOW, WINDOW_START);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 2);
	/* A key that is a prefix of another is still another key. */
	d = kit_rate_memory_hit(limiter, "ip:192.0.2.", 3, WINDOW, WINDOW_START);
	assert_true(d.allowed);
	assert_int_equal(d.remaining, 2);
	kit_rate_memory_free(limiter);
}

/* Many distinct keys (more than any small fixed table) each keep their own
 * count. */
static void test_memory_many_keys(void **state)
{
	struct kit_rate_memory *limiter = kit_rate_memory_new();
	assert_non_null(limiter);
	char key[32];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 5000; i++) {
			snprintf(key, sizeof(key), "ip:10.0.%d.%d", i / 256, i % 256);
			struct kit_rate_decision d = kit_rate_memory_hit(
				limiter, key, 2, WINDOW, WINDOW_START);
			assert_true(d.allowed);
			assert_int_equal(d.remaining, 1 - round);
		}
	}
	assert_false(kit_rate_memory_hit(limiter, "ip:10.0.0.0", 2, WINDOW,
					 WINDOW_START).allowed);
	kit_rate_memory_free(limiter);
}

#define THREADS 8
#define HITS_PER_THREAD 1000
#define SHARED_LIMIT 5000

struct hammer {
	struct kit_rate_memory *limiter;
	long allowed;
	long min_remaining_seen;
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < HITS_PER_THREAD; i++) {
		struct kit_rate_decision d = kit_rate_memory_hit(
			h->limiter, "user:shared", SHARED_LIMIT, WINDOW,
			WINDOW_START + 5);
		if (d.allowed)
			h->allowed++;
		if (d.remaining < h->min_remaining_seen)
			h->min_remaining_seen = d.remaining;
	}
	return NULL;
}

/* Threat: a client beating the limit by sending requests concurrently
 * (a lost update in the counter admits more than the limit). 8000 hits on
 * one key with a limit of 5000 must admit exactly 5000. */
static void test_memory_threads_admit_exactly_limit(void **state)
{
	struct kit_rate_memory *limiter = kit_rate_memory_new();
	assert_non_null(limiter);
	pthread_t threads[THREADS];
	struct hammer work[THREADS];
	for (int i = 0; i < THREADS; i++) {
		work[i] = (struct hammer){ limiter, 0, SHARED_LIMIT };
		assert_int_equal(pthread_create(&threads[i], NULL, hammer_run,
						&work[i]), 0);
	}
	long allowed = 0;
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		allowed += work[i].allowed;
		assert_true(work[i].min_remaining_seen >= 0);
	}
	assert_int_equal(allowed, SHARED_LIMIT);
	assert_false(kit_rate_memory_hit(limiter, "user:shared", SHARED_LIMIT,
					 WINDOW, WINDOW_START + 5).allowed);
	kit_rate_memory_free(limiter);
}

/* ---- kit_rate_limit_config_from_env ---------------------------------- */

static int clear_rate_env(void **state)
{
	unsetenv("RATE_LIMIT_WINDOW_SECONDS");
	unsetenv("RATE_LIMIT_ANONYMOUS");
	unsetenv("RATE_LIMIT_FREE");
	unsetenv("RATE_LIMIT_PREMIUM");
	return 0;
}

static void test_config_defaults(void **state)
{
	struct kit_rate_limit_config cfg;
	memset(&cfg, 0xff, sizeof(cfg));
	assert_int_equal(kit_rate_limit_config_from_env(&cfg), 0);
	assert_int_equal(cfg.window_seconds, 60);
	assert_int_equal(cfg.anonymous_limit, 30);
	assert_int_equal(cfg.free_limit, 60);
	assert_int_equal(cfg.premium_limit, 600);
}

static void test_config_values(void **state)
{
	struct kit_rate_limit_config cfg;
	setenv("RATE_LIMIT_WINDOW_SECONDS", "10", 1);
	setenv("RATE_LIMIT_ANONYMOUS", "3", 1);
	setenv("RATE_LIMIT_FREE", "7", 1);
	setenv("RATE_LIMIT_PREMIUM", "70", 1);
	assert_int_equal(kit_rate_limit_config_from_env(&cfg), 0);
	assert_int_equal(cfg.window_seconds, 10);
	assert_int_equal(cfg.anonymous_limit, 3);
	assert_int_equal(cfg.free_limit, 7);
	assert_int_equal(cfg.premium_limit, 70);
}

/* A bad value stops start-up; it is never replaced by the default. */
static void test_config_bad_values(void **state)
{
	struct kit_rate_limit_config cfg;
	const char *bad[] = { "abc", "0", "-5", "12abc" };
	assert_int_equal(kit_rate_limit_config_from_env(&cfg), 0); /* control */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("RATE_LIMIT_FREE", bad[i], 1);
		if (kit_rate_limit_config_from_env(&cfg) != -1)
			fail_msg("RATE_LIMIT_FREE=%s accepted", bad[i]);
	}
	unsetenv("RATE_LIMIT_FREE");
	setenv("RATE_LIMIT_WINDOW_SECONDS", "0", 1);
	assert_int_equal(kit_rate_limit_config_from_env(&cfg), -1);
	setenv("RATE_LIMIT_WINDOW_SECONDS", "60", 1);
	setenv("RATE_LIMIT_PREMIUM", "lots", 1);
	assert_int_equal(kit_rate_limit_config_from_env(&cfg), -1);
}

/* Tests that set variables start and end with none of them set. */
#define ENV_TEST(test) \
	cmocka_unit_test_setup_teardown(test, clear_rate_env, clear_rate_env)

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide_counts_up_to_limit),
		cmocka_unit_test(test_decide_refuses_past_limit),
		cmocka_unit_test(test_decide_reset_seconds),
		cmocka_unit_test(test_window_start_alignment),
		cmocka_unit_test(test_memory_exact_limit),
		cmocka_unit_test(test_memory_new_window_resets),
		cmocka_unit_test(test_memory_keys_independent),
		cmocka_unit_test(test_memory_many_keys),
		cmocka_unit_test(test_memory_threads_admit_exactly_limit),
		ENV_TEST(test_config_defaults),
		ENV_TEST(test_config_values),
		ENV_TEST(test_config_bad_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
