/*
 * test_text.c - kit/text.h: kit_json_escapes_are_sound() refuses the \u
 * escapes cJSON would turn into a NUL inside a C string, and nothing else;
 * kit_hex_digit() reads the three ranges and nothing else.
 */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kit/text.h"

static bool sound(const char *text)
{
	return kit_json_escapes_are_sound(text, strlen(text));
}

static void test_plain_text_and_escapes_pass(void **state)
{
	assert_true(sound("{\"username\":\"alice\"}"));
	assert_true(sound("{\"a\":\"tab\\there \\\"quoted\\\" \\\\ slash\\/\"}"));
	assert_true(sound("{\"a\":\"caf\\u00e9 \\uD83D\\uDE00\"}"));
	assert_true(sound("{\"a\":\"\\u0001\"}")); /* a control byte is cJSON's to judge */
	assert_true(sound(""));
}

static void test_an_escaped_nul_is_refused(void **state)
{
	assert_false(sound("{\"username\":\"alice\\u0000x\"}"));
	assert_false(sound("{\"sub\":\"\\u0000\"}"));
	assert_false(sound("{\"k\\u0000\":1}")); /* in a member name too */
}

static void test_a_bad_escape_is_refused(void **state)
{
	assert_false(sound("{\"a\":\"/\\u00ytics\"}")); /* cJSON reads it as NUL */
	assert_false(sound("{\"a\":\"\\u12\"}"));
	assert_false(sound("{\"a\":\"\\u"));
	assert_false(sound("{\"a\":\"\\"));
}

static void test_what_only_looks_like_an_escape_passes(void **state)
{
	/* An escaped backslash, then the letters u0000: no escape of NUL. */
	assert_true(sound("{\"a\":\"\\\\u0000\"}"));
	/* Outside a string there are no escapes (cJSON refuses the text). */
	assert_true(sound("\\u0000"));
}

static void test_hex_digits(void **state)
{
	assert_int_equal(kit_hex_digit('0'), 0);
	assert_int_equal(kit_hex_digit('9'), 9);
	assert_int_equal(kit_hex_digit('a'), 10);
	assert_int_equal(kit_hex_digit('F'), 15);
	assert_int_equal(kit_hex_digit('g'), -1);
	assert_int_equal(kit_hex_digit('/'), -1);
	assert_int_equal(kit_hex_digit('\0'), -1);
	assert_int_equal(kit_hex_digit((char)0xc1), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_text_and_escapes_pass),
		cmocka_unit_test(test_an_escaped_nul_is_refused),
		cmocka_unit_test(test_a_bad_escape_is_refused),
		cmocka_unit_test(test_what_only_looks_like_an_escape_passes),
		cmocka_unit_test(test_hex_digits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
