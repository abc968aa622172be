/*
 * test_response_header.c - kit/response.h: kit_response_header, which
 * collects the headers middleware add before the response goes out.
 *
 * Threat: header injection and overruns. A value with CR or LF would let
 * whoever chose it (a client's request id, an upstream's header) add
 * headers or a body of their own; a header that does not fit must be
 * dropped whole, never cut, and must never write past the buffer. Each
 * refusal is paired with a header that must still go in.
 *
 * Run alone: make && build/tests/test_response_header
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kit/request.h"
#include "kit/response.h"

static void test_headers_are_appended_in_order(void **unused)
{
	struct kit_request req = { 0 };

	kit_response_header(&req, "X-Request-Id", "abc");
	kit_response_headerf(&req, "X-RateLimit-Remaining", "%ld", 41L);
	assert_string_equal(req.extra_headers,
			    "X-Request-Id: abc\r\nX-RateLimit-Remaining: 41\r\n");
	assert_int_equal(req.extra_headers_len, strlen(req.extra_headers));
}

static void test_control_characters_are_refused(void **unused)
{
	struct kit_request req = { 0 };

	kit_response_header(&req, "X-Evil", "a\r\nSet-Cookie: session=stolen");
	kit_response_header(&req, "X-Evil", "a\nb");
	kit_response_header(&req, "X-Evil\r\nX-Injected", "1");
	kit_response_header(&req, "X-Evil: x", "1"); /* a colon in the name */
	assert_int_equal(req.extra_headers_len, 0);
	kit_response_header(&req, "X-Fine", "a b\tc");
	assert_string_equal(req.extra_headers, "X-Fine: a b\tc\r\n");
}

/* Fills the buffer to within `left` bytes of its end (the NUL included)
 * with one header of the right length. */
static void fill_leaving(struct kit_request *req, size_t left)
{
	static char value[KIT_RESPONSE_HEADERS_MAX];
	size_t overhead = strlen("X-Fill: \r\n") + 1;
	size_t value_len = KIT_RESPONSE_HEADERS_MAX - left - overhead;

	memset(value, 'v', value_len);
	value[value_len] = '\0';
	kit_response_header(req, "X-Fill", value);
	assert_int_equal(req->extra_headers_len,
			 KIT_RESPONSE_HEADERS_MAX - left - 1);
}

static void test_a_header_that_just_fits_goes_in(void **unused)
{
	struct kit_request req = { 0 };

	/* "X-A: 1\r\n" is 8 bytes, and its NUL makes 9. */
	fill_leaving(&req, 8);
	kit_response_header(&req, "X-A", "1");
	assert_int_equal(req.extra_headers_len, KIT_RESPONSE_HEADERS_MAX - 1);
	assert_string_equal(req.extra_headers + req.extra_headers_len - 8, "X-A: 1\r\n");
}

static void test_a_header_one_byte_too_long_is_dropped_whole(void **unused)
{
	struct kit_request req = { 0 };
	size_t before;

	fill_leaving(&req, 8);
	before = req.extra_headers_len;
	kit_response_header(&req, "X-A", "12");
	assert_int_equal(req.extra_headers_len, before);
	assert_int_equal(req.extra_headers[before], '\0');
	assert_null(strstr(req.extra_headers, "X-A"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers_are_appended_in_order),
		cmocka_unit_test(test_control_characters_are_refused),
		cmocka_unit_test(test_a_header_that_just_fits_goes_in),
		cmocka_unit_test(test_a_header_one_byte_too_long_is_dropped_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
