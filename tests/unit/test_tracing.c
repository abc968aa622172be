/*
 * test_tracing.c - kit/tracing.h's trace headers and client spans, and the
 * Jaeger Thrift encoders behind them (shared/src/tracing/jaeger_thrift.h).
 *
 * Threat (header parsing): uber-trace-id and traceparent come from anyone
 * who can reach a service. A parser that takes an all-zero id, an id too
 * long for 64/128 bits, or garbage would let a client break trace
 * correlation or make one span an ancestor of unrelated requests; each
 * refusal below is paired with a valid header that is accepted.
 *
 * The encoders are checked against bytes worked out by hand from the
 * Thrift specs, field by field (the comments say which), so a wrong field
 * id or type fails here. The last test decodes a whole batch with
 * tests/jaeger_sink.py (code generated from Jaeger's IDL by Apache
 * Thrift); it skips when python3-thrift, thrift or the IDL is missing.
 *
 * Run alone: make && build/tests/test_tracing (from the repository root)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kit/tracing.h"
#include "tracing/jaeger_thrift.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- uber-trace-id ---- */

static void test_uber_valid_64_bit(void **state)
{
	struct kit_trace_context ctx;

	assert_true(kit_trace_parse_uber("4bf92f3577b34da6:00f067aa0ba902b7:0:1", &ctx));
	assert_true(ctx.trace_id_high == 0);
	assert_true(ctx.trace_id_low == 0x4bf92f3577b34da6ull);
	assert_true(ctx.span_id == 0x00f067aa0ba902b7ull);
	assert_true(ctx.parent_id == 0);
	assert_int_equal(ctx.flags, 1);

	/* Jaeger clients drop leading zeros; flags may be two digits. */
	assert_true(kit_trace_parse_uber("abc:DEF:12:03", &ctx));
	assert_true(ctx.trace_id_low == 0xabc && ctx.span_id == 0xdef);
	assert_true(ctx.parent_id == 0x12);
	assert_int_equal(ctx.flags, 3);
}

static void test_uber_valid_128_bit(void **state)
{
	struct kit_trace_context ctx;

	assert_true(kit_trace_parse_uber(
		"4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1", &ctx));
	assert_true(ctx.trace_id_high == 0x4bf92f3577b34da6ull);
	assert_true(ctx.trace_id_low == 0xa3ce929d0e0e4736ull);
	/* 17 digits: the first one is the high half. */
	assert_true(kit_trace_parse_uber("1ffffffffffffffff:1:0:0", &ctx));
	assert_true(ctx.trace_id_high == 1 && ctx.trace_id_low == UINT64_MAX);
	assert_int_equal(ctx.flags, 0);
}

static void test_uber_url_encoded(void **state)
{
	struct kit_trace_context ctx;

	assert_true(kit_trace_parse_uber("4bf92f3577b34da6%3A00f067aa0ba902b7%3A0%3A1", &ctx));
	assert_true(ctx.trace_id_low == 0x4bf92f3577b34da6ull);
	assert_true(ctx.span_id == 0x00f067aa0ba902b7ull);
	assert_int_equal(ctx.flags, 1);
	assert_true(kit_trace_parse_uber("4bf92f3577b34da6%3a00f067aa0ba902b7%3a0%3a1", &ctx));
	assert_true(ctx.span_id == 0x00f067aa0ba902b7ull);
	/* Only ':' may be encoded. */
	assert_false(kit_trace_parse_uber("4bf92f3577b34da6%3A00f067aa0ba902b7%3A0%3A%31", &ctx));
	assert_false(kit_trace_parse_uber("4bf92f3577b34da6%3A1%3A0%3", &ctx));
	assert_false(kit_trace_parse_uber("4bf92f3577b34da6%3A1%3A0%", &ctx));
}

static void test_uber_zero_ids_refused(void **state)
{
	struct kit_trace_context ctx;

	assert_true(kit_trace_parse_uber("1:1:0:1", &ctx)); /* control */
	assert_false(kit_trace_parse_uber("0:00f067aa0ba902b7:0:1", &ctx));
	assert_false(kit_trace_parse_uber("0000000000000000:1:0:1", &ctx));
	assert_false(kit_trace_parse_uber("00000000000000000000000000000000:1:0:1", &ctx));
	assert_false(kit_trace_parse_uber("4bf92f3577b34da6:0:0:1", &ctx));
	assert_false(kit_trace_parse_uber("4bf92f3577b34da6:0000000000000000:0:1", &ctx));
}

static void test_uber_too_long_refused(void **state)
{
	struct kit_trace_context ctx;

	/* Controls: the longest valid fields. */
	assert_true(kit_trace_parse_uber("ffffffffffffffffffffffffffffffff:"
					 "ffffffffffffffff:ffffffffffffffff:ff", &ctx));
	assert_false(kit_trace_parse_uber("1ffffffffffffffffffffffffffffffff:1:0:1", &ctx));
	assert_false(kit_trace_parse_uber("1:1ffffffffffffffff:0:1", &ctx));
	assert_false(kit_trace_parse_uber("1:1:1ffffffffffffffff:1", &ctx));
	assert_false(kit_trace_parse_uber("1:1:0:001", &ctx));

	char huge[600];
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	huge[10] = ':';
	huge[20] = ':';
	huge[30] = ':';
	assert_false(kit_trace_parse_uber(huge, &ctx));
}

static void test_uber_garbage_refused(void **state)
{
	static const char *const garbage[] = {
		"", "abc", "1:2:3", "1:2:3:4:5", "g:1:0:1", "1::0:1", ":1:0:1",
		"1:1::1", "1:1:0:", " 1:1:0:1", "1:1:0:1 ", "1:1:0:1\r\n",
		"-1:1:0:1", "0x1:1:0:1", "1:+1:0:1", "1;1;0;1", "1:1:0:1:",
		"1:1:0:zz", "%41:1:0:1", "\xff:1:0:1",
	};
	struct kit_trace_context ctx = { .trace_id_low = 42 };

	assert_true(kit_trace_parse_uber("1:1:0:1", &ctx)); /* control */
	ctx.trace_id_low = 42;
	for (size_t i = 0; i < COUNT(garbage); i++) {
		if (kit_trace_parse_uber(garbage[i], &ctx))
			fail_msg("accepted uber-trace-id \"%s\"", garbage[i]);
		assert_true(ctx.trace_id_low == 42); /* *out untouched */
	}
	assert_false(kit_trace_parse_uber(NULL, &ctx));
}

/* ---- traceparent ---- */

static void test_traceparent_valid(void **state)
{
	struct kit_trace_context ctx;

	assert_true(kit_trace_parse_traceparent(
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx));
	assert_true(ctx.trace_id_high == 0x4bf92f3577b34da6ull);
	assert_true(ctx.trace_id_low == 0xa3ce929d0e0e4736ull);
	assert_true(ctx.span_id == 0x00f067aa0ba902b7ull);
	assert_true(ctx.parent_id == 0);
	assert_int_equal(ctx.flags, 1);

	assert_true(kit_trace_parse_traceparent(
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &ctx));
	assert_int_equal(ctx.flags, 0);
	/* Only "sampled" is taken from the W3C flags. */
	assert_true(kit_trace_parse_traceparent(
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", &ctx));
	assert_int_equal(ctx.flags, 1);
	/* A later version may append fields; its first 55 characters are
	 * read as version 00's. */
	assert_true(kit_trace_parse_traceparent(
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx));
	assert_true(kit_trace_parse_traceparent(
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next", &ctx));
}

static void test_traceparent_invalid(void **state)
{
	static const char *const invalid[] = {
		/* version ff is forbidden; 00 has exactly four fields */
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		/* all-zero ids */
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		/* upper case, wrong lengths, wrong separators */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
		"", "00", "garbage",
	};
	struct kit_trace_context ctx;

	assert_true(kit_trace_parse_traceparent( /* control */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx));
	for (size_t i = 0; i < COUNT(invalid); i++) {
		if (kit_trace_parse_traceparent(invalid[i], &ctx))
			fail_msg("accepted traceparent \"%s\"", invalid[i]);
	}
	assert_false(kit_trace_parse_traceparent(NULL, &ctx));
}

/* ---- formatting ---- */

static void test_format_round_trip(void **state)
{
	const struct kit_trace_context contexts[] = {
		{ 0, 0x4bf92f3577b34da6ull, 0x00f067aa0ba902b7ull, 0, 1 },
		{ 0x4bf92f3577b34da6ull, 0xa3ce929d0e0e4736ull, 1, 2, 0 },
		{ UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, 0xff },
		{ 0, 1, 1, 0, 3 },
	};
	char header[KIT_TRACE_HEADER_MAX];
	char id[33];

	for (size_t i = 0; i < COUNT(contexts); i++) {
		struct kit_trace_context back;

		kit_trace_format_uber(&contexts[i], header);
		assert_true(strlen(header) < KIT_TRACE_HEADER_MAX);
		assert_true(kit_trace_parse_uber(header, &back));
		assert_memory_equal(&back.trace_id_high, &contexts[i].trace_id_high, 8);
		assert_memory_equal(&back.trace_id_low, &contexts[i].trace_id_low, 8);
		assert_true(back.span_id == contexts[i].span_id);
		assert_true(back.parent_id == contexts[i].parent_id);
		assert_int_equal(back.flags, contexts[i].flags);
	}
	kit_trace_format_uber(&contexts[0], header);
	assert_string_equal(header, "4bf92f3577b34da6:00f067aa0ba902b7:0000000000000000:1");
	kit_trace_format_id(&contexts[0], id);
	assert_string_equal(id, "4bf92f3577b34da6");
	kit_trace_format_id(&contexts[1], id);
	assert_string_equal(id, "4bf92f3577b34da6a3ce929d0e0e4736");
	kit_trace_format_id(&contexts[3], id); /* zero-padded, as Jaeger shows it */
	assert_string_equal(id, "0000000000000001");
}

/* ---- client spans ---- */

static void test_client_span_continues_the_trace(void **state)
{
	const struct kit_trace_context parent = {
		0x4bf92f3577b34da6ull, 0xa3ce929d0e0e4736ull, 0x1111, 0x2222, 1,
	};
	char header[KIT_TRACE_HEADER_MAX];
	struct kit_trace_context sent, ctx;
	struct kit_span *span;

	span = kit_trace_client_start_from(&parent, "POST /internal/clicks", "analytics",
					   "POST", "http://127.0.0.1:8082/internal/clicks",
					   header);
	assert_non_null(span);
	assert_true(kit_trace_parse_uber(header, &sent));
	assert_true(sent.trace_id_high == parent.trace_id_high);
	assert_true(sent.trace_id_low == parent.trace_id_low);
	assert_true(sent.parent_id == parent.span_id);  /* child of the server span */
	assert_true(sent.span_id != 0 && sent.span_id != parent.span_id);
	assert_int_equal(sent.flags, 1);
	assert_true(kit_span_context(span, &ctx));
	assert_true(ctx.span_id == sent.span_id);
	/* Tags on a span that is not reported (no reporter here) are fine. */
	kit_span_tag_string(span, "k", "v");
	kit_span_tag_int(span, "n", 1);
	kit_span_tag_bool(span, "b", true);
	kit_span_log_error(span, "boom");
	kit_trace_client_finish(span, 503);

	/* No parent: no span, no header; NULL is ignored everywhere. */
	strcpy(header, "junk");
	assert_null(kit_trace_client_start_from(NULL, "op", "peer", "GET", "/", header));
	assert_string_equal(header, "");
	const struct kit_trace_context zero = { 0 };
	strcpy(header, "junk");
	assert_null(kit_trace_client_start_from(&zero, "op", "peer", "GET", "/", header));
	assert_string_equal(header, "");
	assert_false(kit_span_context(NULL, &ctx));
	kit_span_tag_string(NULL, "k", "v");
	kit_span_log_error(NULL, "x");
	kit_trace_client_finish(NULL, 200);
}

/* ---- Thrift: helpers ---- */

/* Fails with both byte strings in hex when they differ. */
static void expect_bytes(const struct jaeger_buffer *got, const unsigned char *want,
			 size_t want_len)
{
	if (!got->failed && got->len == want_len && memcmp(got->data, want, want_len) == 0)
		return;
	print_error("want %zu bytes:", want_len);
	for (size_t i = 0; i < want_len; i++)
		print_error(" %02x", want[i]);
	print_error("\ngot  %zu bytes:", got->len);
	for (size_t i = 0; i < got->len; i++)
		print_error(" %02x", got->data[i]);
	print_error("\n");
	fail();
}

#define EXPECT_BYTES(buffer, ...)                                              \
	do {                                                                   \
		static const unsigned char want_[] = { __VA_ARGS__ };          \
		expect_bytes((buffer), want_, sizeof(want_));                  \
	} while (0)

static struct jaeger_tag string_tag(const char *key, const char *value)
{
	return (struct jaeger_tag){ .key = (char *)key, .type = JAEGER_TAG_STRING,
				    .string = (char *)value };
}

/* ---- Thrift: Tag ---- */

static void test_thrift_tag_string(void **state)
{
	struct jaeger_tag tag = string_tag("k", "v");
	struct jaeger_buffer out = { 0 };

	jaeger_write_tag(&out, JAEGER_BINARY, &tag);
	EXPECT_BYTES(&out,
		0x0b, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 'k', /* 1: string key  */
		0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,      /* 2: i32 vType 0 */
		0x0b, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 'v', /* 3: string vStr */
		0x00);                                         /* stop           */

	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_COMPACT, &tag);
	EXPECT_BYTES(&out,
		0x18, 0x01, 'k',  /* delta 1, binary(8); length 1          */
		0x15, 0x00,       /* delta 1, i32(5); zigzag(0)            */
		0x18, 0x01, 'v',  /* delta 1, binary                       */
		0x00);
	jaeger_buffer_free(&out);
}

static void test_thrift_tag_other_types(void **state)
{
	struct jaeger_tag flag = { .key = "b", .type = JAEGER_TAG_BOOL, .flag = false };
	struct jaeger_tag yes = { .key = "b", .type = JAEGER_TAG_BOOL, .flag = true };
	struct jaeger_tag number = { .key = "d", .type = JAEGER_TAG_DOUBLE, .number = 1.5 };
	struct jaeger_tag negative = { .key = "n", .type = JAEGER_TAG_LONG, .integer = -2 };
	struct jaeger_tag big = { .key = "n", .type = JAEGER_TAG_LONG, .integer = 300 };
	struct jaeger_buffer out = { 0 };

	/* bool: binary writes type 2 and a byte; compact folds the value
	 * into the field header (1 true, 2 false). Field 5 is 3 after 2. */
	jaeger_write_tag(&out, JAEGER_BINARY, &flag);
	EXPECT_BYTES(&out, 0x0b, 0x00, 0x01, 0, 0, 0, 1, 'b', 0x08, 0x00, 0x02, 0, 0, 0, 2,
		     0x02, 0x00, 0x05, 0x00, 0x00);
	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_COMPACT, &flag);
	EXPECT_BYTES(&out, 0x18, 0x01, 'b', 0x15, 0x04, 0x32, 0x00);
	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_COMPACT, &yes);
	EXPECT_BYTES(&out, 0x18, 0x01, 'b', 0x15, 0x04, 0x31, 0x00);

	/* double 1.5 = 0x3ff8000000000000: big-endian in binary,
	 * little-endian in compact. Field 4, type double (4 / 7). */
	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_BINARY, &number);
	EXPECT_BYTES(&out, 0x0b, 0x00, 0x01, 0, 0, 0, 1, 'd', 0x08, 0x00, 0x02, 0, 0, 0, 1,
		     0x04, 0x00, 0x04, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x00);
	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_COMPACT, &number);
	EXPECT_BYTES(&out, 0x18, 0x01, 'd', 0x15, 0x02, 0x27, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f,
		     0x00);

	/* i64 -2: two's complement in binary; zigzag 3 in compact. Field
	 * 6 (delta 4), type i64 (10 / 6); vType LONG = 3 (zigzag 6). */
	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_BINARY, &negative);
	EXPECT_BYTES(&out, 0x0b, 0x00, 0x01, 0, 0, 0, 1, 'n', 0x08, 0x00, 0x02, 0, 0, 0, 3,
		     0x0a, 0x00, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0x00);
	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_COMPACT, &negative);
	EXPECT_BYTES(&out, 0x18, 0x01, 'n', 0x15, 0x06, 0x46, 0x03, 0x00);
	/* 300: zigzag 600 = 0x258, a two-byte varint d8 04. */
	jaeger_buffer_reset(&out);
	jaeger_write_tag(&out, JAEGER_COMPACT, &big);
	EXPECT_BYTES(&out, 0x18, 0x01, 'n', 0x15, 0x06, 0x46, 0xd8, 0x04, 0x00);
	jaeger_buffer_free(&out);
}

/* ---- Thrift: Span ---- */

static void test_thrift_span_with_one_tag(void **state)
{
	struct jaeger_span *span = jaeger_span_new("op");
	struct jaeger_buffer out = { 0 };

	assert_non_null(span);
	span->trace_id_low = 1;
	span->span_id = 2;
	span->flags = 1;
	span->start_time = 3;
	span->duration = 4;
	assert_int_equal(jaeger_span_tag_string(span, "k", "v"), 0);

	jaeger_write_span(&out, JAEGER_BINARY, span);
	EXPECT_BYTES(&out,
		0x0a, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1,  /* 1: i64 traceIdLow    */
		0x0a, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0,  /* 2: i64 traceIdHigh   */
		0x0a, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 2,  /* 3: i64 spanId        */
		0x0a, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0,  /* 4: i64 parentSpanId  */
		0x0b, 0x00, 0x05, 0, 0, 0, 2, 'o', 'p',    /* 5: string operation  */
		0x08, 0x00, 0x07, 0, 0, 0, 1,              /* 7: i32 flags         */
		0x0a, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 3,  /* 8: i64 startTime     */
		0x0a, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 4,  /* 9: i64 duration      */
		0x0f, 0x00, 0x0a, 0x0c, 0, 0, 0, 1,        /* 10: list<struct> [1] */
		0x0b, 0x00, 0x01, 0, 0, 0, 1, 'k',         /*   Tag                */
		0x08, 0x00, 0x02, 0, 0, 0, 0,
		0x0b, 0x00, 0x03, 0, 0, 0, 1, 'v',
		0x00,
		0x00);                                     /* stop                 */

	jaeger_buffer_reset(&out);
	jaeger_write_span(&out, JAEGER_COMPACT, span);
	EXPECT_BYTES(&out,
		0x16, 0x02,            /* 1: i64(6), zigzag(1)                      */
		0x16, 0x00,            /* 2                                         */
		0x16, 0x04,            /* 3: zigzag(2)                              */
		0x16, 0x00,            /* 4                                         */
		0x18, 0x02, 'o', 'p',  /* 5: binary(8)                              */
		0x25, 0x02,            /* 7: delta 2 (no field 6), i32(5)           */
		0x16, 0x06,            /* 8: zigzag(3)                              */
		0x16, 0x08,            /* 9: zigzag(4)                              */
		0x19, 0x1c,            /* 10: list(9); 1 element, struct(12)        */
		0x18, 0x01, 'k', 0x15, 0x00, 0x18, 0x01, 'v', 0x00,
		0x00);

	/* Ids with the top bit set are negative i64s: -1 is zigzag 1. */
	span->span_id = UINT64_MAX;
	jaeger_buffer_reset(&out);
	jaeger_write_span(&out, JAEGER_COMPACT, span);
	assert_int_equal(out.data[4], 0x16);
	assert_int_equal(out.data[5], 0x01);
	jaeger_buffer_free(&out);
	jaeger_span_free(span);
}

/* A list of 15 or more: compact's header says "size follows" (0xf) and
 * writes the size as a varint; 14 still fits the nibble. */
static void test_thrift_long_list(void **state)
{
	struct jaeger_span *span = jaeger_span_new("o");
	struct jaeger_buffer out = { 0 };
	const unsigned char *list;

	assert_non_null(span);
	for (int i = 0; i < 14; i++)
		assert_int_equal(jaeger_span_tag_long(span, "k", i), 0);
	jaeger_write_span(&out, JAEGER_COMPACT, span);
	/* 4 ids of 2 bytes, op of 3, flags 2, times 4: the list at 17. */
	list = out.data + 17;
	assert_int_equal(list[0], 0x19);
	assert_int_equal(list[1], 0xec); /* 14 << 4 | struct */

	assert_int_equal(jaeger_span_tag_long(span, "k", 14), 0);
	jaeger_buffer_reset(&out);
	jaeger_write_span(&out, JAEGER_COMPACT, span);
	list = out.data + 17;
	assert_int_equal(list[1], 0xfc);
	assert_int_equal(list[2], 15);

	jaeger_buffer_reset(&out);
	jaeger_write_span(&out, JAEGER_BINARY, span);
	/* 4 ids of 11 bytes, op 8, flags 7, times 22: the list at 81. */
	list = out.data + 81;
	assert_int_equal(list[0], 0x0f);
	assert_int_equal(list[3], 0x0c);
	assert_int_equal(list[7], 15);
	jaeger_buffer_free(&out);
	jaeger_span_free(span);
}

/* ---- Thrift: the emitBatch message ---- */

static void test_thrift_emit_batch_message(void **state)
{
	struct jaeger_process *process = jaeger_process_new("s");
	struct jaeger_buffer out = { 0 };

	assert_non_null(process);
	jaeger_write_emit_batch(&out, JAEGER_BINARY, 7, process, NULL, 0);
	EXPECT_BYTES(&out,
		0x80, 0x01, 0x00, 0x04,          /* strict version 1, ONEWAY (4)  */
		0, 0, 0, 9, 'e', 'm', 'i', 't', 'B', 'a', 't', 'c', 'h',
		0, 0, 0, 7,                      /* seqid                         */
		0x0c, 0x00, 0x01,                /* args 1: struct Batch          */
		0x0c, 0x00, 0x01,                /*   1: struct Process           */
		0x0b, 0x00, 0x01, 0, 0, 0, 1, 's', 0x00,
		0x0f, 0x00, 0x02, 0x0c, 0, 0, 0, 0, /* 2: list<struct> []        */
		0x00,                            /*   end of Batch                */
		0x00);                           /* end of args                   */

	jaeger_buffer_reset(&out);
	jaeger_write_emit_batch(&out, JAEGER_COMPACT, 7, process, NULL, 0);
	EXPECT_BYTES(&out,
		0x82,                            /* protocol id                   */
		0x81,                            /* ONEWAY (4) << 5 | version 1   */
		0x07,                            /* seqid, varint                 */
		0x09, 'e', 'm', 'i', 't', 'B', 'a', 't', 'c', 'h',
		0x1c,                            /* args 1: struct                */
		0x1c,                            /*   1: struct Process           */
		0x18, 0x01, 's', 0x00,
		0x19, 0x0c,                      /*   2: list, 0 structs          */
		0x00,
		0x00);

	/* The HTTP body is the Batch alone, binary. */
	jaeger_buffer_reset(&out);
	jaeger_write_batch(&out, JAEGER_BINARY, process, NULL, 0);
	EXPECT_BYTES(&out, 0x0c, 0x00, 0x01, 0x0b, 0x00, 0x01, 0, 0, 0, 1, 's', 0x00,
		     0x0f, 0x00, 0x02, 0x0c, 0, 0, 0, 0, 0x00);
	jaeger_buffer_free(&out);
	jaeger_process_free(process);
}

/* A batch bigger than a UDP packet is split: every packet is at most the
 * limit, no span is lost or sent twice. */
static void test_thrift_batch_split(void **state)
{
	enum { SPANS = 40 };
	struct jaeger_process *process = jaeger_process_new("split");
	struct jaeger_span *spans[SPANS];
	struct jaeger_buffer out = { 0 };
	char value[JAEGER_STRING_MAX + 1];

	memset(value, 'x', JAEGER_STRING_MAX);
	value[JAEGER_STRING_MAX] = '\0';
	for (int i = 0; i < SPANS; i++) {
		spans[i] = jaeger_span_new("big");
		assert_non_null(spans[i]);
		for (int t = 0; t < 8; t++) /* about 8 KB a span */
			assert_int_equal(jaeger_span_tag_string(spans[i], "k", value), 0);
	}
	for (int p = 0; p < 2; p++) {
		enum jaeger_protocol protocol = p == 0 ? JAEGER_BINARY : JAEGER_COMPACT;
		size_t done = 0, packets = 0;

		while (done < SPANS) {
			size_t fit = jaeger_emit_batch_fit(protocol, process, spans + done,
							   SPANS - done, JAEGER_UDP_PACKET_MAX);
			assert_true(fit > 0);
			jaeger_buffer_reset(&out);
			jaeger_write_emit_batch(&out, protocol, -1, process, spans + done, fit);
			assert_false(out.failed);
			assert_true(out.len <= JAEGER_UDP_PACKET_MAX);
			/* One more span would not have fitted. */
			if (done + fit < SPANS) {
				jaeger_buffer_reset(&out);
				jaeger_write_emit_batch(&out, protocol, -1, process,
							spans + done, fit + 1);
				assert_true(out.len > JAEGER_UDP_PACKET_MAX - 5);
			}
			done += fit;
			packets++;
		}
		assert_int_equal(done, SPANS);
		assert_true(packets >= 5); /* 40 x 8 KB in 65 KB packets */
	}
	/* The bounds keep the largest possible span under one packet. */
	struct jaeger_span *huge = jaeger_span_new(value);
	for (int t = 0; t < JAEGER_SPAN_MAX_TAGS + 2; t++)
		jaeger_span_tag_string(huge, value, value);
	for (int l = 0; l < JAEGER_SPAN_MAX_LOGS + 2; l++)
		jaeger_span_log(huge, 1, value, value);
	assert_int_equal(huge->tag_count, JAEGER_SPAN_MAX_TAGS);
	assert_int_equal(huge->log_count, JAEGER_SPAN_MAX_LOGS);
	assert_int_equal(jaeger_emit_batch_fit(JAEGER_BINARY, process, &huge, 1,
					       JAEGER_UDP_PACKET_MAX), 1);
	jaeger_span_free(huge);

	for (int i = 0; i < SPANS; i++)
		jaeger_span_free(spans[i]);
	jaeger_buffer_free(&out);
	jaeger_process_free(process);
}

/* Thrift strings are UTF-8: bytes that are not (a path can hold any) are
 * replaced, and long strings are cut. */
static void test_span_strings_are_utf8(void **state)
{
	struct jaeger_span *span = jaeger_span_new("GET /caf\xc3\xa9");
	char *long_text = malloc(5000);

	assert_non_null(span);
	assert_string_equal(span->operation_name, "GET /caf\xc3\xa9");
	assert_int_equal(jaeger_span_tag_string(span, "bad", "a\xff" "b\xc3" "c\xed\xa0\x80" "d"), 0);
	assert_string_equal(span->tags[0].string, "a?b?c???d");
	memset(long_text, 'y', 4999);
	long_text[4999] = '\0';
	assert_int_equal(jaeger_span_tag_string(span, "long", long_text), 0);
	assert_int_equal(strlen(span->tags[1].string), JAEGER_STRING_MAX);
	/* Cut inside a two-byte character: the half is replaced. */
	memset(long_text, 'y', JAEGER_STRING_MAX - 1);
	memcpy(long_text + JAEGER_STRING_MAX - 1, "\xc3\xa9", 3);
	assert_int_equal(jaeger_span_tag_string(span, "cut", long_text), 0);
	assert_int_equal(span->tags[2].string[JAEGER_STRING_MAX - 1], '?');
	free(long_text);
	jaeger_span_free(span);
}

/* ---- a whole batch, decoded by code generated from Jaeger's IDL ---- */

#define SINK "tests/jaeger_sink.py"
#define ROUND_TRIP_SPANS 17 /* more than 14: the long list header */

static struct jaeger_span *round_trip_span(int i)
{
	struct jaeger_span *span = jaeger_span_new(i == 0 ? "GET /r/:code" : "child");

	assert_non_null(span);
	span->trace_id_high = 0x4bf92f3577b34da6ull;
	span->trace_id_low = 0xa3ce929d0e0e4736ull; /* top bit set: negative */
	span->span_id = 0x8000000000000001ull + (uint64_t)i;
	span->parent_span_id = i == 0 ? 0 : 0x8000000000000001ull;
	span->flags = 1;
	span->start_time = 1700000000123456ll + i;
	span->duration = 1234;
	if (i == 0) {
		jaeger_span_tag_string(span, "http.url", "/r/caf\xc3\xa9");
		jaeger_span_tag_long(span, "http.status_code", 302);
		jaeger_span_tag_long(span, "negative", -5);
		jaeger_span_tag_bool(span, "error", true);
		jaeger_span_tag_bool(span, "cached", false);
		jaeger_span_tag_double(span, "sampler.param", 0.25);
		jaeger_span_log(span, 1700000000123999ll, "error", "HTTP 503");
		return span;
	}
	for (int t = 0; t < 16; t++)
		jaeger_span_tag_long(span, "n", t);
	return span;
}

/* Runs the sink's decoder on file; returns its output (malloc'd), NULL
 * when it failed. */
static char *sink_decode(const char *file, const char *protocol)
{
	char command[512];
	char *text = calloc(1, 1 << 20);
	size_t len = 0, n;
	FILE *pipe;

	snprintf(command, sizeof(command),
		 "python3 " SINK " --decode %s --protocol %s", file, protocol);
	pipe = popen(command, "r");
	assert_non_null(pipe);
	while ((n = fread(text + len, 1, (1 << 20) - 1 - len, pipe)) > 0)
		len += n;
	if (pclose(pipe) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void check_decoded(char *text, const char *protocol)
{
	int lines = 0;

	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		cJSON *span = cJSON_Parse(line);
		cJSON *tags = cJSON_GetObjectItem(span, "tags");

		assert_non_null(span);
		assert_string_equal(cJSON_GetObjectItem(span, "protocol")->valuestring, protocol);
		assert_string_equal(cJSON_GetObjectItem(span, "service")->valuestring, "round-trip");
		assert_string_equal(cJSON_GetObjectItem(span, "instance")->valuestring, "i-1");
		assert_string_equal(cJSON_GetObjectItem(span, "trace_id")->valuestring,
				    "4bf92f3577b34da6a3ce929d0e0e4736");
		assert_string_equal(cJSON_GetObjectItem(span, "traceIdLow")->valuestring,
				    "a3ce929d0e0e4736");
		assert_int_equal(cJSON_GetObjectItem(span, "duration")->valuedouble, 1234);
		if (lines == 0) {
			cJSON *log = cJSON_GetArrayItem(cJSON_GetObjectItem(span, "logs"), 0);
			cJSON *fields = cJSON_GetObjectItem(log, "fields");

			assert_string_equal(cJSON_GetObjectItem(span, "spanId")->valuestring,
					    "8000000000000001");
			assert_string_equal(cJSON_GetObjectItem(span, "parentSpanId")->valuestring,
					    "0000000000000000");
			assert_string_equal(cJSON_GetObjectItem(span, "operationName")->valuestring,
					    "GET /r/:code");
			assert_int_equal(cJSON_GetObjectItem(span, "startTime")->valuedouble,
					 1700000000123456.0);
			assert_string_equal(cJSON_GetObjectItem(tags, "http.url")->valuestring,
					    "/r/caf\xc3\xa9");
			assert_int_equal(cJSON_GetObjectItem(tags, "http.status_code")->valuedouble, 302);
			assert_int_equal(cJSON_GetObjectItem(tags, "negative")->valuedouble, -5);
			assert_true(cJSON_IsTrue(cJSON_GetObjectItem(tags, "error")));
			assert_true(cJSON_IsFalse(cJSON_GetObjectItem(tags, "cached")));
			assert_true(cJSON_GetObjectItem(tags, "sampler.param")->valuedouble == 0.25);
			assert_int_equal(cJSON_GetObjectItem(log, "timestamp")->valuedouble,
					 1700000000123999.0);
			assert_string_equal(cJSON_GetObjectItem(fields, "event")->valuestring, "error");
			assert_string_equal(cJSON_GetObjectItem(fields, "message")->valuestring,
					    "HTTP 503");
		} else {
			assert_string_equal(cJSON_GetObjectItem(span, "parentSpanId")->valuestring,
					    "8000000000000001");
			assert_int_equal(cJSON_GetObjectItem(tags, "n")->valuedouble, 15);
		}
		cJSON_Delete(span);
		lines++;
	}
	assert_int_equal(lines, ROUND_TRIP_SPANS);
}

static void test_batch_decodes_with_jaeger_idl(void **state)
{
	static const struct {
		const char *protocol;
		enum jaeger_protocol encoding;
		bool udp;
		int32_t seqid;
	} forms[] = {
		{ "udp-binary", JAEGER_BINARY, true, 1 },
		{ "udp-compact", JAEGER_COMPACT, true, 300 }, /* a two-byte varint */
		{ "http", JAEGER_BINARY, false, 0 },
	};
	struct jaeger_process *process;
	struct jaeger_span *spans[ROUND_TRIP_SPANS];
	struct jaeger_buffer out = { 0 };
	char file[] = "/tmp/kit-test-tracing.XXXXXX";
	int fd;

	if (access(SINK, R_OK) != 0) {
		print_message("%s not found: run from the repository root\n", SINK);
		skip();
	}
	int status = system("python3 " SINK " --check >/dev/null 2>&1");
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) == 77) {
		print_message("python3-thrift, thrift or the IDL is missing: skipped\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);

	process = jaeger_process_new("round-trip");
	assert_non_null(process);
	assert_int_equal(jaeger_process_tag(process, "instance", "i-1"), 0);
	assert_int_equal(jaeger_process_tag(process, "kit.version", "1.0.0"), 0);
	for (int i = 0; i < ROUND_TRIP_SPANS; i++)
		spans[i] = round_trip_span(i);

	for (size_t f = 0; f < COUNT(forms); f++) {
		char *text;

		jaeger_buffer_reset(&out);
		if (forms[f].udp)
			jaeger_write_emit_batch(&out, forms[f].encoding, forms[f].seqid,
						process, spans, ROUND_TRIP_SPANS);
		else
			jaeger_write_batch(&out, forms[f].encoding, process, spans,
					   ROUND_TRIP_SPANS);
		assert_false(out.failed);
		strcpy(file, "/tmp/kit-test-tracing.XXXXXX");
		fd = mkstemp(file);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, out.data, out.len), (ssize_t)out.len);
		close(fd);
		text = sink_decode(file, forms[f].protocol);
		unlink(file);
		if (text == NULL)
			fail_msg("jaeger_sink.py could not decode the %s batch", forms[f].protocol);
		check_decoded(text, forms[f].protocol);
		free(text);
	}

	/* Positive controls for the decoder: a packet with one byte more
	 * than its message, and one whose Batch ends in a field header
	 * instead of its stop byte, are both refused. */
	for (int broken = 0; broken < 2; broken++) {
		char *text;

		jaeger_buffer_reset(&out);
		jaeger_write_emit_batch(&out, JAEGER_BINARY, 1, process, spans, 1);
		if (broken == 0)
			out.data[out.len++] = 0x00; /* the buffer has room */
		else
			out.data[out.len - 2] = 0x0b;
		strcpy(file, "/tmp/kit-test-tracing.XXXXXX");
		fd = mkstemp(file);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, out.data, out.len), (ssize_t)out.len);
		close(fd);
		text = sink_decode(file, "udp-binary 2>/dev/null");
		unlink(file);
		assert_null(text);
	}

	for (int i = 0; i < ROUND_TRIP_SPANS; i++)
		jaeger_span_free(spans[i]);
	jaeger_process_free(process);
	jaeger_buffer_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uber_valid_64_bit),
		cmocka_unit_test(test_uber_valid_128_bit),
		cmocka_unit_test(test_uber_url_encoded),
		cmocka_unit_test(test_uber_zero_ids_refused),
		cmocka_unit_test(test_uber_too_long_refused),
		cmocka_unit_test(test_uber_garbage_refused),
		cmocka_unit_test(test_traceparent_valid),
		cmocka_unit_test(test_traceparent_invalid),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_client_span_continues_the_trace),
		cmocka_unit_test(test_thrift_tag_string),
		cmocka_unit_test(test_thrift_tag_other_types),
		cmocka_unit_test(test_thrift_span_with_one_tag),
		cmocka_unit_test(test_thrift_long_list),
		cmocka_unit_test(test_thrift_emit_batch_message),
		cmocka_unit_test(test_thrift_batch_split),
		cmocka_unit_test(test_span_strings_are_utf8),
		cmocka_unit_test(test_batch_decodes_with_jaeger_idl),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
