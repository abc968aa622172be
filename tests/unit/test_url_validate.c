/*
 * test_url_validate.c - url_is_acceptable() and alias_is_valid() from
 * services/url-shortener/url_shortener.h (rules in docs/api.md).
 *
 * Threat: the shortener is an open redirect by design, so what it stores is
 * what /r/:code puts in a Location header. A javascript:/data:/relative URL,
 * a CR/LF (header injection), or an authority with userinfo
 * (http://good.com@evil.com, which reads as good.com but goes to evil.com)
 * must be refused. Each group of rejections sits beside an accepted URL as
 * the positive control.
 *
 * Run alone: make && build/tests/test_url_validate
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "url-shortener/url_shortener.h"

static void assert_accepted(const char *url)
{
	char why[128] = "";
	if (!url_is_acceptable(url, why, sizeof(why)))
		fail_msg("refused \"%s\": %s", url, why);
}

/* Refused, with a reason. */
static void assert_refused(const char *url, const char *label)
{
	char why[128];
	memset(why, 0, sizeof(why));
	if (url_is_acceptable(url, why, sizeof(why)))
		fail_msg("accepted %s", label);
	if (why[0] == '\0')
		fail_msg("refused %s without a reason in why", label);
}

static void test_http_and_https_accepted(void **state)
{
	assert_accepted("http://example.com");
	assert_accepted("https://example.com/");
	assert_accepted("https://example.com/a/b?q=1&r=2#frag");
	assert_accepted("http://localhost:8080/path");
	assert_accepted("http://127.0.0.1/");
	assert_accepted("https://[2001:db8::1]:8443/x");
	assert_accepted("https://example.com/%20encoded");
	/* '@' in the path or query is not userinfo. */
	assert_accepted("https://example.com/users/@alice?by=a@b.c");
}

static void test_uppercase_scheme_accepted(void **state)
{
	assert_accepted("HTTP://EXAMPLE.COM/");
	assert_accepted("Https://example.com");
}

static void test_other_schemes_refused(void **state)
{
	assert_accepted("https://example.com"); /* control */
	assert_refused("ftp://example.com/file", "ftp:");
	assert_refused("javascript:alert(1)", "javascript:");
	assert_refused("JavaScript:alert(1)", "JavaScript:");
	assert_refused("mailto:a@example.com", "mailto:");
	assert_refused("data:text/html,<script>alert(1)</script>", "data:");
	assert_refused("file:///etc/passwd", "file:");
	assert_refused("httpx://example.com", "httpx:");
	assert_refused(" http://example.com", "a leading space");
}

static void test_relative_and_hostless_refused(void **state)
{
	assert_accepted("http://example.com/path"); /* control */
	assert_refused("", "the empty string");
	assert_refused("/relative/path", "a relative path");
	assert_refused("example.com/path", "a URL without a scheme");
	assert_refused("//example.com/path", "a scheme-relative URL");
	assert_refused("http:example.com", "http: without //");
	assert_refused("http:/example.com", "http:/ with one slash");
	assert_refused("http://", "http:// with no host");
	assert_refused("https://", "https:// with no host");
	assert_refused("http:///path", "an empty host before a path");
	assert_refused("http://?q=1", "an empty host before a query");
	assert_refused("http://#frag", "an empty host before a fragment");
}

static void test_whitespace_and_controls_refused(void **state)
{
	assert_accepted("http://example.com/a-b"); /* control */
	assert_refused("http://example.com/a b", "a space");
	assert_refused("http://exa mple.com/", "a space in the host");
	assert_refused("http://example.com/\r\nSet-Cookie: a=b", "CR LF");
	assert_refused("http://example.com/\rx", "CR");
	assert_refused("http://example.com/\nx", "LF");
	assert_refused("http://example.com/\tx", "TAB");
	assert_refused("http://example.com/\x7fx", "DEL (0x7f)");
	assert_refused("http://example.com/\x01x", "0x01");
	assert_refused("http://example.com/\x1bx", "ESC");
	assert_refused("http://example.com/x\r", "a trailing CR");
	assert_refused("http://example.com\\@evil.com", "a backslash");
	assert_refused("http://example.com/a\\b", "a backslash in the path");
}

/* Threat: userinfo makes the URL read as good.com while it goes to
 * evil.com. */
static void test_userinfo_refused(void **state)
{
	assert_accepted("http://good.com/"); /* control */
	assert_refused("http://good.com@evil.com", "userinfo good.com@");
	assert_refused("http://good.com@evil.com/path", "userinfo before a path");
	assert_refused("https://user:pass@example.com/", "user:pass@");
	assert_refused("http://@example.com/", "an empty userinfo");
}

static void test_length_limit(void **state)
{
	static const char prefix[] = "https://example.com/";
	static char url[2050 + 1];
	memcpy(url, prefix, strlen(prefix));

	memset(url + strlen(prefix), 'a', 2048 - strlen(prefix));
	url[2048] = '\0';
	assert_int_equal(strlen(url), 2048);
	assert_accepted(url);

	memset(url + strlen(prefix), 'a', 2049 - strlen(prefix));
	url[2049] = '\0';
	assert_refused(url, "2049 bytes");
}

/* why is bounded by why_size even when the reason is longer. */
static void test_why_respects_size(void **state)
{
	char why[8];
	memset(why, 'Z', sizeof(why));
	assert_false(url_is_acceptable("ftp://example.com", why, 4));
	assert_true(memchr(why, '\0', 4) != NULL);
	assert_int_equal(why[4], 'Z');
}

static void test_alias_valid(void **state)
{
	assert_true(alias_is_valid("abc"));
	assert_true(alias_is_valid("my-link_2"));
	assert_true(alias_is_valid("ABC-xyz_09"));
	assert_true(alias_is_valid("---"));
	assert_true(alias_is_valid("abcdefghijklmnopqrstuvwxyz012345")); /* 32 */
}

static void test_alias_invalid(void **state)
{
	assert_true(alias_is_valid("abc")); /* control */
	assert_false(alias_is_valid(""));
	assert_false(alias_is_valid("ab"));
	assert_false(alias_is_valid("abcdefghijklmnopqrstuvwxyz0123456")); /* 33 */
	assert_false(alias_is_valid("ab/c"));
	assert_false(alias_is_valid("../x"));
	assert_false(alias_is_valid("a.bc"));
	assert_false(alias_is_valid("ab c"));
	assert_false(alias_is_valid("abc "));
	assert_false(alias_is_valid("abc\n"));
	assert_false(alias_is_valid("ab%2F"));
	assert_false(alias_is_valid("ab?c"));
	assert_false(alias_is_valid("h\xc3\xa9llo")); /* héllo, UTF-8 */
	assert_false(alias_is_valid("\xc3\xa9\xc3\xa9")); /* 2 chars, 4 bytes */
}

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_and_https_accepted),
		cmocka_unit_test(test_uppercase_scheme_accepted),
		cmocka_unit_test(test_other_schemes_refused),
		cmocka_unit_test(test_relative_and_hostless_refused),
		cmocka_unit_test(test_whitespace_and_controls_refused),
		cmocka_unit_test(test_userinfo_refused),
		cmocka_unit_test(test_length_limit),
		cmocka_unit_test(test_why_respects_size),
		cmocka_unit_test(test_alias_valid),
		cmocka_unit_test(test_alias_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
