/*
 * fuzz_trace_context.c - libFuzzer target: the trace context a caller
 * sends, kit_trace_parse_uber() ("uber-trace-id") and
 * kit_trace_parse_traceparent() (W3C "traceparent"), both public in
 * kit/tracing.h and run by the tracing middleware on every request's
 * headers (shared/src/tracing/tracing.c). Input: a header value; both
 * parsers get it.
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - uber-trace-id: an accepted value is, once "%3A" is read as ':',
 *     four ':'-separated hex fields (trace id 1..32 digits, span and parent
 *     1..16, flags 1..2) whose numbers, read here with strtoull, are the
 *     context's; trace id and span id are not 0; a refused one leaves
 *     *out untouched;
 *   - formatting an accepted context (kit_trace_format_uber) and parsing
 *     the result gives the same context back;
 *   - traceparent: an accepted value is 55 characters (longer only past
 *     version 00, and then '-' at 55), of lower-case hex where the fields
 *     are, version not "ff"; the context's trace id, printed as 32 digits,
 *     is the value's bytes 3..34 and the span id bytes 36..51; flags keep
 *     only the sampled bit.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "kit/tracing.h"

static bool all_hex(const char *s, size_t len, bool lower_only)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		      (!lower_only && c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

static unsigned long long hex_number(const char *s, size_t len)
{
	char text[17];

	memcpy(text, s, len);
	text[len] = '\0';
	return strtoull(text, NULL, 16);
}

static void check_uber(const char *value)
{
	struct kit_trace_context ctx, again, untouched;
	char decoded[256];
	size_t n = 0;

	memset(&ctx, 0xA5, sizeof(ctx));
	untouched = ctx;
	if (!kit_trace_parse_uber(value, &ctx)) {
		FUZZ_CHECK(memcmp(&ctx, &untouched, sizeof(ctx)) == 0,
			   "refused \"%s\" but wrote the context", value);
		return;
	}
	/* The value with "%3A" read as ':'. */
	for (const char *p = value; *p != '\0'; p++) {
		FUZZ_CHECK(n + 1 < sizeof(decoded), "accepted a %zu-byte value", strlen(value));
		if (p[0] == '%' && p[1] == '3' && (p[2] == 'A' || p[2] == 'a')) {
			decoded[n++] = ':';
			p += 2;
		} else {
			decoded[n++] = *p;
		}
	}
	decoded[n] = '\0';

	const char *field[4];
	size_t len[4];
	int fields = 0;
	const char *start = decoded;
	for (const char *p = decoded;; p++) {
		if (*p == ':' || *p == '\0') {
			FUZZ_CHECK(fields < 4, "accepted \"%s\" with more than four fields", value);
			field[fields] = start;
			len[fields] = (size_t)(p - start);
			fields++;
			start = p + 1;
			if (*p == '\0')
				break;
		}
	}
	FUZZ_CHECK(fields == 4, "accepted \"%s\" with %d fields", value, fields);
	FUZZ_CHECK(len[0] >= 1 && len[0] <= 32 && len[1] >= 1 && len[1] <= 16 &&
		   len[2] >= 1 && len[2] <= 16 && len[3] >= 1 && len[3] <= 2,
		   "accepted \"%s\": field lengths %zu %zu %zu %zu", value, len[0], len[1],
		   len[2], len[3]);
	for (int i = 0; i < 4; i++)
		FUZZ_CHECK(all_hex(field[i], len[i], false), "accepted \"%s\": field %d not hex",
			   value, i);
	unsigned long long high = len[0] > 16 ? hex_number(field[0], len[0] - 16) : 0;
	unsigned long long low = len[0] > 16 ? hex_number(field[0] + len[0] - 16, 16)
					     : hex_number(field[0], len[0]);
	FUZZ_CHECK(ctx.trace_id_high == high && ctx.trace_id_low == low &&
		   ctx.span_id == hex_number(field[1], len[1]) &&
		   ctx.parent_id == hex_number(field[2], len[2]) &&
		   ctx.flags == hex_number(field[3], len[3]),
		   "\"%s\" read as %llx%016llx:%llx:%llx:%x", value,
		   (unsigned long long)ctx.trace_id_high, (unsigned long long)ctx.trace_id_low,
		   (unsigned long long)ctx.span_id, (unsigned long long)ctx.parent_id, ctx.flags);
	FUZZ_CHECK((ctx.trace_id_high | ctx.trace_id_low) != 0 && ctx.span_id != 0,
		   "accepted a zero trace or span id: \"%s\"", value);

	char formatted[KIT_TRACE_HEADER_MAX];
	kit_trace_format_uber(&ctx, formatted);
	FUZZ_CHECK(kit_trace_parse_uber(formatted, &again) &&
		   memcmp(&again, &ctx, sizeof(ctx)) == 0,
		   "\"%s\" formats as \"%s\", which does not parse back", value, formatted);
}

static void check_traceparent(const char *value)
{
	struct kit_trace_context ctx, untouched;
	char printed[64];

	memset(&ctx, 0x5A, sizeof(ctx));
	untouched = ctx;
	if (!kit_trace_parse_traceparent(value, &ctx)) {
		FUZZ_CHECK(memcmp(&ctx, &untouched, sizeof(ctx)) == 0,
			   "refused \"%s\" but wrote the context", value);
		return;
	}
	size_t len = strlen(value);
	FUZZ_CHECK(len == 55 || (len > 55 && value[55] == '-' && strncmp(value, "00", 2) != 0),
		   "accepted a %zu-byte traceparent \"%s\"", len, value);
	FUZZ_CHECK(all_hex(value, 2, true) && strncmp(value, "ff", 2) != 0 &&
		   value[2] == '-' && value[35] == '-' && value[52] == '-' &&
		   all_hex(value + 3, 32, true) && all_hex(value + 36, 16, true) &&
		   all_hex(value + 53, 2, true), "accepted traceparent \"%s\"", value);
	snprintf(printed, sizeof(printed), "%016llx%016llx-%016llx",
		 (unsigned long long)ctx.trace_id_high, (unsigned long long)ctx.trace_id_low,
		 (unsigned long long)ctx.span_id);
	FUZZ_CHECK(memcmp(printed, value + 3, 49) == 0, "\"%s\" read as %s", value, printed);
	FUZZ_CHECK(ctx.flags == (hex_number(value + 53, 2) & 1) && ctx.parent_id == 0,
		   "\"%s\": flags %x, parent %llx", value, ctx.flags,
		   (unsigned long long)ctx.parent_id);
	FUZZ_CHECK((ctx.trace_id_high | ctx.trace_id_low) != 0 && ctx.span_id != 0,
		   "accepted a zero trace or span id: \"%s\"", value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *value = fuzz_string(data, size);

	check_uber(value);
	check_traceparent(value);
	free(value);
	return 0;
}
