/*
 * test_cache.c - kit/cache.h: how the response cache reads Cache-Control
 * and how long it keeps an answer (kit_cache_control_parse, kit_cache_ttl).
 *
 * Threats: a shared cache that keeps what the service said not to keep
 * (no-store: a bank statement in Redis; private on a public route: one
 * user's page served to the next caller); that keeps an answer longer than
 * the service allows (max-age, s-maxage), or than the route allows
 * (ttl_seconds); and a parser that a quoted value or an odd spacing
 * fools into reading a directive that is not there ("no-store" inside a
 * quoted field name must not count, "max-age=10x" is not a number).
 * What is cached and for whom, end to end, is tests/phase2.sh's "the
 * response cache" section.
 *
 * Run alone: make && build/tests/test_cache
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kit/cache.h"

static const struct kit_cache_policy policy = { .ttl_seconds = 60, .route = "/r" };

static void test_directives_are_read(void **unused)
{
	struct kit_cache_control cc;

	kit_cache_control_parse("public, max-age=30, s-maxage=5", &cc);
	assert_true(cc.is_public);
	assert_false(cc.is_private || cc.no_store || cc.no_cache);
	assert_int_equal(cc.max_age, 30);
	assert_int_equal(cc.s_maxage, 5);

	kit_cache_control_parse("No-Store,PRIVATE", &cc); /* names without case */
	assert_true(cc.no_store);
	assert_true(cc.is_private);
	assert_int_equal(cc.max_age, -1);

	kit_cache_control_parse(NULL, &cc); /* no header */
	assert_false(cc.no_store || cc.no_cache || cc.is_private || cc.is_public);
	assert_int_equal(cc.max_age, -1);
	assert_int_equal(cc.s_maxage, -1);
}

static void test_odd_values_are_not_directives(void **unused)
{
	struct kit_cache_control cc;

	/* A quoted argument holding a directive's name is not that directive. */
	kit_cache_control_parse("no-cache=\"no-store, private\", max-age=9", &cc);
	assert_true(cc.no_cache);
	assert_false(cc.no_store);
	assert_false(cc.is_private);
	assert_int_equal(cc.max_age, 9);
	/* Not numbers: absent. */
	kit_cache_control_parse("max-age=10x, s-maxage=-1", &cc);
	assert_int_equal(cc.max_age, -1);
	assert_int_equal(cc.s_maxage, -1);
	kit_cache_control_parse("max-age", &cc);
	assert_int_equal(cc.max_age, -1);
	/* A quoted number is read (RFC 9111 allows the sender that much). */
	kit_cache_control_parse("max-age=\"12\"", &cc);
	assert_int_equal(cc.max_age, 12);
	/* A longer name that starts like one is another directive. */
	kit_cache_control_parse("no-store-please, privateer", &cc);
	assert_false(cc.no_store);
	assert_false(cc.is_private);
}

static void test_what_is_not_kept(void **unused)
{
	assert_int_equal(kit_cache_ttl(&policy, true, "no-store"), 0);
	assert_int_equal(kit_cache_ttl(&policy, true, "no-cache"), 0);
	/* private: one user's; a public route's key has no user. */
	assert_int_equal(kit_cache_ttl(&policy, false, "private, max-age=30"), 0);
	assert_int_equal(kit_cache_ttl(&policy, true, "private, max-age=30"), 30);
}

static void test_how_long(void **unused)
{
	/* Nothing said: the route's ttl. */
	assert_int_equal(kit_cache_ttl(&policy, false, NULL), 60);
	assert_int_equal(kit_cache_ttl(&policy, false, "public"), 60);
	/* The service's limit when shorter, never longer than the route's. */
	assert_int_equal(kit_cache_ttl(&policy, false, "max-age=7"), 7);
	assert_int_equal(kit_cache_ttl(&policy, false, "max-age=600"), 60);
	/* s-maxage is for shared caches: it wins over max-age either way. */
	assert_int_equal(kit_cache_ttl(&policy, false, "max-age=600, s-maxage=3"), 3);
	assert_int_equal(kit_cache_ttl(&policy, false, "max-age=3, s-maxage=40"), 40);
	/* max-age=0: stale at once, not kept. */
	assert_int_equal(kit_cache_ttl(&policy, false, "max-age=0"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_directives_are_read),
		cmocka_unit_test(test_odd_values_are_not_directives),
		cmocka_unit_test(test_what_is_not_kept),
		cmocka_unit_test(test_how_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
