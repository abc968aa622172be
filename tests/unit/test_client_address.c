/*
 * test_client_address.c - shared/src/app/client_address.c: which address
 * a request is counted and logged under (kit_client_address_pick,
 * kit_trusted_proxies_parse, kit_ip_parse).
 *
 * Threat: a client that picks its own address picks its own rate-limit
 * key (a fresh one per request: no limit at all) and writes what it likes
 * into the access log. Behind a trusted proxy the client controls every
 * X-Forwarded-For entry left of the proxy's own, and, when the proxy
 * appends a second header line instead of extending the first, the whole
 * first line. Each refusal below is paired with a positive control: the
 * honest chain still yields the real client.
 *
 * Run alone: make && build/tests/test_client_address
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "app/internal.h"

/* The address picked for peer and xff with trusted (a comma list). */
static const char *pick(const char *trusted_list, const char *peer, const char *xff)
{
	static char out[64];
	struct kit_trusted_proxies trusted;
	char error[160];

	assert_int_equal(kit_trusted_proxies_parse(trusted_list, &trusted, error, sizeof(error)), 0);
	kit_client_address_pick(&trusted, peer, xff, out, sizeof(out));
	return out;
}

/* Positive control: behind one trusted proxy, the entry it appended. */
static void test_trusted_proxy_reports_client(void **state)
{
	assert_string_equal(pick("127.0.0.1", "127.0.0.1", "203.0.113.7"), "203.0.113.7");
}

/* Threat: any client sends X-Forwarded-For; from an untrusted peer it is
 * ignored. */
static void test_untrusted_peer_ignores_header(void **state)
{
	assert_string_equal(pick("127.0.0.1", "198.51.100.9", "203.0.113.7"), "198.51.100.9");
	assert_string_equal(pick("", "198.51.100.9", "203.0.113.7"), "198.51.100.9");
}

/* Threat: the client writes the left part of the list; the right-most
 * untrusted entry wins, not the first. */
static void test_right_most_untrusted_wins(void **state)
{
	assert_string_equal(pick("127.0.0.1", "127.0.0.1", "1.1.1.1, 203.0.113.7"), "203.0.113.7");
	/* Two trusted hops: skip both, stop at the client. */
	assert_string_equal(pick("127.0.0.1, 10.0.0.2", "127.0.0.1",
				 "1.1.1.1, 203.0.113.7, 10.0.0.2"), "203.0.113.7");
}

/* Two header lines, joined by the caller with ',' in order (what
 * kit_client_address_resolve does): the proxy's line is the right one. */
static void test_joined_lines_read_right_to_left(void **state)
{
	/* Line 1 from the client ("9.9.9.9"), line 2 appended by nginx. */
	assert_string_equal(pick("127.0.0.1", "127.0.0.1", "9.9.9.9,203.0.113.7"), "203.0.113.7");
}

/* Threat: "deadbeef", a name, a port or an empty entry is not an address:
 * it must never become the key. The walk ends at the last trusted hop. */
static void test_invalid_entry_ends_walk(void **state)
{
	static const char *const bad[] = {
		"deadbeef", "localhost", "203.0.113.7:443", "[2001:db8::1]",
		"1.2.3", "", " ", "unknown", "203.0.113.7 extra", "::g",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *got = pick("127.0.0.1", "127.0.0.1", bad[i]);
		if (strcmp(got, "127.0.0.1") != 0)
			fail_msg("X-Forwarded-For \"%s\" gave \"%s\", expected the proxy 127.0.0.1",
				 bad[i], got);
	}
	/* Behind two trusted hops, garbage left of the second stops at it. */
	assert_string_equal(pick("127.0.0.1, 10.0.0.2", "127.0.0.1",
				 "203.0.113.7, deadbeef, 10.0.0.2"), "10.0.0.2");
	/* Whatever is left of garbage is never read. */
	assert_string_equal(pick("127.0.0.1", "127.0.0.1", "203.0.113.7, deadbeef"), "127.0.0.1");
}

/* IPv6, in any spelling, is one canonical key. */
static void test_ipv6_canonical(void **state)
{
	assert_string_equal(pick("127.0.0.1", "127.0.0.1", "2001:DB8:0:0::1"), "2001:db8::1");
	assert_string_equal(pick("::1", "::1", "2001:db8::7"), "2001:db8::7");
	assert_string_equal(pick("127.0.0.1", "127.0.0.1", "::FFFF:203.0.113.7"),
			    "::ffff:203.0.113.7");
	/* A trusted proxy compared as bytes, whatever its spelling. */
	assert_string_equal(pick("2001:db8::a", "2001:DB8:0::A", "198.51.100.1"), "198.51.100.1");
}

/* Every entry trusted: the left-most. No header: the peer. */
static void test_all_trusted_and_none(void **state)
{
	assert_string_equal(pick("127.0.0.1, 10.0.0.2", "127.0.0.1", "10.0.0.2"), "10.0.0.2");
	assert_string_equal(pick("127.0.0.1", "127.0.0.1", NULL), "127.0.0.1");
}

/* TRUSTED_PROXIES: addresses only; a bad entry stops start-up naming it. */
static void test_trusted_list_refusals(void **state)
{
	struct kit_trusted_proxies trusted;
	char error[160];

	assert_int_equal(kit_trusted_proxies_parse(" 127.0.0.1 , ::1,10.0.0.2", &trusted,
						   error, sizeof(error)), 0);
	assert_int_equal(trusted.count, 3);
	assert_int_equal(kit_trusted_proxies_parse("127.0.0.1, nginx", &trusted, error,
						   sizeof(error)), -1);
	assert_non_null(strstr(error, "TRUSTED_PROXIES"));
	assert_non_null(strstr(error, "nginx"));
	assert_int_equal(kit_trusted_proxies_parse("10.0.0.0/8", &trusted, error,
						   sizeof(error)), -1);
	assert_int_equal(kit_trusted_proxies_parse(
		"1.0.0.1,1.0.0.2,1.0.0.3,1.0.0.4,1.0.0.5,1.0.0.6,1.0.0.7,1.0.0.8,"
		"1.0.0.9,1.0.0.10,1.0.0.11,1.0.0.12,1.0.0.13,1.0.0.14,1.0.0.15,"
		"1.0.0.16,1.0.0.17", &trusted, error, sizeof(error)), -1);
	assert_int_equal(kit_trusted_proxies_parse("", &trusted, error, sizeof(error)), 0);
	assert_int_equal(trusted.count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trusted_proxy_reports_client),
		cmocka_unit_test(test_untrusted_peer_ignores_header),
		cmocka_unit_test(test_right_most_untrusted_wins),
		cmocka_unit_test(test_joined_lines_read_right_to_left),
		cmocka_unit_test(test_invalid_entry_ends_walk),
		cmocka_unit_test(test_ipv6_canonical),
		cmocka_unit_test(test_all_trusted_and_none),
		cmocka_unit_test(test_trusted_list_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
