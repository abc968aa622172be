/*
 * test_split.c - kit/gateway.h: kit_split_choose, kit_split_bucket and
 * kit_split_cookie, how an A/B test or a canary assigns callers.
 *
 * Threats: a canary that gets another share than its file says (a 10%
 * canary taking 30% of the traffic is an outage); a caller who flips
 * between variants from one request to the next, or from one gateway
 * instance to another (an A/B test whose groups are mixed measures
 * nothing); raising a canary that also sends some of its users back to
 * stable (they saw the new version, now the old one again); two splits
 * that put the same users in both canaries (a bad release in one then
 * hides in the other's numbers). And the cookie parser reads what a
 * client sends, so a cookie named like ours ("xkit_ab") must not count.
 *
 * The shares are measured over 10,000 distinct users "user-0".."user-9999";
 * with a fair hash the share of a 50% variant varies by about 0.5
 * percentage points, so the tests allow 2.
 *
 * Run alone: make && build/tests/test_split
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit/gateway.h"

#define USERS 10000
#define TOLERANCE 200 /* 2 percentage points of USERS */

/* A split as the parser would leave it, built by hand. */
static struct kit_split make_split(const char *name, const long *weights, int count)
{
	struct kit_split split;

	memset(&split, 0, sizeof(split));
	snprintf(split.name, sizeof(split.name), "%s", name);
	split.sticky_by = KIT_SPLIT_STICKY_USER;
	split.variant_count = count;
	for (int i = 0; i < count; i++) {
		snprintf(split.variants[i].name, sizeof(split.variants[i].name), "v%d", i);
		split.variants[i].weight = weights[i];
	}
	return split;
}

static const char *user_key(int i, char *buffer, size_t size)
{
	snprintf(buffer, size, "user-%d", i);
	return buffer;
}

/* Counts how many of the USERS land on each variant; fails on an index
 * out of range. */
static void count_variants(const struct kit_split *split, int *counts)
{
	char key[32];

	memset(counts, 0, sizeof(int) * KIT_SPLIT_MAX_VARIANTS);
	for (int i = 0; i < USERS; i++) {
		int index = kit_split_choose(split, user_key(i, key, sizeof(key)));
		if (index < 0 || index >= split->variant_count)
			fail_msg("%s: variant %d for %s", split->name, index, key);
		counts[index]++;
	}
}

static void expect_shares(const long *weights, int count)
{
	struct kit_split split = make_split("shares", weights, count);
	int counts[KIT_SPLIT_MAX_VARIANTS];

	count_variants(&split, counts);
	for (int i = 0; i < count; i++) {
		int expected = (int)(weights[i] * USERS / 100);
		fprintf(stderr, "  weight %ld: %d of %d users\n", weights[i], counts[i], USERS);
		if (counts[i] < expected - TOLERANCE || counts[i] > expected + TOLERANCE)
			fail_msg("variant %d (weight %ld) got %d of %d users, expected %d +- %d",
				 i, weights[i], counts[i], USERS, expected, TOLERANCE);
	}
}

/* ---- shares ------------------------------------------------------------ */

static void test_shares_50_50(void **state)
{
	expect_shares((const long[]){ 50, 50 }, 2);
}

static void test_shares_90_10(void **state)
{
	expect_shares((const long[]){ 90, 10 }, 2);
}

/* The same with the small variant first: nothing favours the end. */
static void test_shares_10_90_and_three_ways(void **state)
{
	expect_shares((const long[]){ 10, 90 }, 2);
	expect_shares((const long[]){ 20, 30, 50 }, 3);
}

/* ---- stickiness -------------------------------------------------------- */

/* The same key gets the same variant every time, and from another copy of
 * the split (another worker, another gateway instance). */
static void test_same_key_same_variant(void **state)
{
	struct kit_split split = make_split("sticky", (const long[]){ 50, 50 }, 2);
	struct kit_split copy = make_split("sticky", (const long[]){ 50, 50 }, 2);
	int first[1000];
	char key[32];

	for (int i = 0; i < 1000; i++)
		first[i] = kit_split_choose(&split, user_key(i, key, sizeof(key)));
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 1000; i++) {
			user_key(i, key, sizeof(key));
			assert_int_equal(kit_split_choose(&split, key), first[i]);
			assert_int_equal(kit_split_choose(&copy, key), first[i]);
		}
	}
}

/* Pinned values: a gateway built tomorrow, or on another machine, must put
 * today's users where they are today. The expected buckets come from an
 * independent implementation of the same hash (Python):
 *
 *   def fnv(s):  h = 0xcbf29ce484222325
 *                for b in s.encode(): h = ((h ^ b) * 0x100000001b3) % 2**64
 *   def fmix(k): k ^= k >> 33; k = k * 0xff51afd7ed558ccd % 2**64
 *                k ^= k >> 33; k = k * 0xc4ceb9fe1a85ec53 % 2**64
 *                return k ^ (k >> 33)
 *   bucket = fmix(fnv(name + ":" + key)) % 10000
 */
static void test_bucket_is_pinned(void **state)
{
	assert_int_equal(kit_split_bucket("shortener-v2", "alice"), 3365);
	assert_int_equal(kit_split_bucket("shortener-v2", "bob"), 250);
	assert_int_equal(kit_split_bucket("shortener-v2", "127.0.0.1"), 4113);
	assert_int_equal(kit_split_bucket("ab", "user-0"), 9958);
	assert_int_equal(kit_split_bucket("", ""), 1709);
}

/* Variants own consecutive bucket ranges in the listed order: with 90/10,
 * buckets 0..8999 are the first variant's and 9000..9999 the second's. The
 * keys with those buckets are searched for (about one key in 10,000 has a
 * given bucket). */
static void test_ranges_follow_the_listed_order(void **state)
{
	static const unsigned edges[] = { 0, 8999, 9000, 9999 };
	static const int expected[] = { 0, 0, 1, 1 };
	struct kit_split split = make_split("edge", (const long[]){ 90, 10 }, 2);
	char key[32];

	for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++) {
		bool found = false;
		for (int i = 0; i < 1000000 && !found; i++) {
			snprintf(key, sizeof(key), "k-%d", i);
			if (kit_split_bucket(split.name, key) == edges[e]) {
				found = true;
				if (kit_split_choose(&split, key) != expected[e])
					fail_msg("bucket %u (%s) went to variant %d, expected %d",
						 edges[e], key, kit_split_choose(&split, key),
						 expected[e]);
			}
		}
		if (!found)
			fail_msg("no key with bucket %u among a million", edges[e]);
	}
}

/* ---- a canary growing -------------------------------------------------- */

/* 90/10 -> 80/20: about 10% of the users move, every one of them from
 * stable to canary; nobody goes back from canary to stable. */
static void test_raising_canary_moves_only_to_canary(void **state)
{
	struct kit_split before = make_split("shortener-v2", (const long[]){ 90, 10 }, 2);
	struct kit_split after = make_split("shortener-v2", (const long[]){ 80, 20 }, 2);
	int to_canary = 0, to_stable = 0;
	char key[32];

	for (int i = 0; i < USERS; i++) {
		int was = kit_split_choose(&before, user_key(i, key, sizeof(key)));
		int is = kit_split_choose(&after, key);

		if (was == 0 && is == 1)
			to_canary++;
		else if (was == 1 && is == 0)
			to_stable++;
	}
	fprintf(stderr, "  90/10 -> 80/20: %d moved to canary, %d back to stable\n",
		to_canary, to_stable);
	assert_int_equal(to_stable, 0);
	if (to_canary < 1000 - TOLERANCE || to_canary > 1000 + TOLERANCE)
		fail_msg("%d of %d users moved to canary, expected about 1000", to_canary, USERS);
}

/* ---- independent splits ------------------------------------------------ */

/* The split's name salts the key: for two 50/50 splits, being on one's
 * first variant says nothing about the other (both first: about 25%). */
static void test_split_names_assign_independently(void **state)
{
	struct kit_split a = make_split("checkout-button", (const long[]){ 50, 50 }, 2);
	struct kit_split b = make_split("search-ranking", (const long[]){ 50, 50 }, 2);
	struct kit_split a_again = make_split("checkout-button", (const long[]){ 50, 50 }, 2);
	int both_first = 0, agree = 0, agree_same_name = 0;
	char key[32];

	for (int i = 0; i < USERS; i++) {
		int in_a = kit_split_choose(&a, user_key(i, key, sizeof(key)));
		int in_b = kit_split_choose(&b, key);

		both_first += in_a == 0 && in_b == 0;
		agree += in_a == in_b;
		agree_same_name += in_a == kit_split_choose(&a_again, key); /* control */
	}
	fprintf(stderr, "  both first: %d, agree: %d of %d\n", both_first, agree, USERS);
	assert_int_equal(agree_same_name, USERS);
	if (both_first < USERS / 4 - TOLERANCE || both_first > USERS / 4 + TOLERANCE)
		fail_msg("%d users on both first variants, expected about %d", both_first, USERS / 4);
	if (agree < USERS / 2 - TOLERANCE || agree > USERS / 2 + TOLERANCE)
		fail_msg("%d users on the same variant of both, expected about %d", agree, USERS / 2);
}

/* ---- degenerate splits ------------------------------------------------- */

/* A variant of weight 0 gets nobody; no positive weight at all is -1. */
static void test_zero_weights(void **state)
{
	struct kit_split split = make_split("zero", (const long[]){ 0, 100, 0 }, 3);
	struct kit_split none = make_split("none", (const long[]){ 0, 0 }, 2);
	int counts[KIT_SPLIT_MAX_VARIANTS];

	count_variants(&split, counts);
	assert_int_equal(counts[0], 0);
	assert_int_equal(counts[1], USERS);
	assert_int_equal(counts[2], 0);
	assert_int_equal(kit_split_choose(&none, "user-1"), -1);
}

/* ---- the kit_ab cookie --------------------------------------------------- */

static void expect_cookie(const char *header, const char *expected)
{
	char out[64];
	bool found = kit_split_cookie(header, out, sizeof(out));

	const char *shown = header != NULL ? header : "(no header)";

	if (expected == NULL) {
		if (found || out[0] != '\0')
			fail_msg("Cookie: %s gave \"%s\", expected none", shown, out);
		return;
	}
	if (!found || strcmp(out, expected) != 0)
		fail_msg("Cookie: %s gave %s\"%s\", expected \"%s\"", shown,
			 found ? "" : "nothing, ", out, expected);
}

static void test_cookie(void **state)
{
	char small[4];

	expect_cookie("kit_ab=tester-1", "tester-1");
	expect_cookie("a=1; kit_ab=tester-1", "tester-1");
	expect_cookie("a=1;kit_ab=tester-1; b=2", "tester-1");
	expect_cookie("kit_ab=tester-1 ; b=2", "tester-1");
	/* Names are whole and case-sensitive. */
	expect_cookie("xkit_ab=1", NULL);
	expect_cookie("kit_abc=1", NULL);
	expect_cookie("KIT_AB=1", NULL);
	expect_cookie("xkit_ab=1; kit_ab=2", "2"); /* control for the above */
	/* Absent, empty or too long. */
	expect_cookie(NULL, NULL);
	expect_cookie("", NULL);
	expect_cookie("kit_ab=", NULL);
	expect_cookie("kit_ab", NULL);
	assert_false(kit_split_cookie("kit_ab=abcd", small, sizeof(small)));
	assert_string_equal(small, "");
	assert_true(kit_split_cookie("kit_ab=abc", small, sizeof(small)));
	assert_string_equal(small, "abc");
}

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shares_50_50),
		cmocka_unit_test(test_shares_90_10),
		cmocka_unit_test(test_shares_10_90_and_three_ways),
		cmocka_unit_test(test_same_key_same_variant),
		cmocka_unit_test(test_bucket_is_pinned),
		cmocka_unit_test(test_ranges_follow_the_listed_order),
		cmocka_unit_test(test_raising_canary_moves_only_to_canary),
		cmocka_unit_test(test_split_names_assign_independently),
		cmocka_unit_test(test_zero_weights),
		cmocka_unit_test(test_cookie),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
