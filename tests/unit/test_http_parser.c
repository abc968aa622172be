/*
 * test_http_parser.c - kit/http_parser.h: kit_http_parse_head,
 * kit_http_header_value, kit_http_path_normalize and the chunked body
 * decoder.
 *
 * Threats: request smuggling (Content-Length beside Transfer-Encoding, two
 * different Content-Lengths, an encoding we cannot decode, bare LF and
 * obs-fold that another server would read differently, chunk framing that
 * lets a body run into the next request); header injection (NUL and other
 * controls in values and targets); path traversal past a route prefix
 * ("/api/v1/%2e%2e/admin" must not stay under "/api/v1/"); and resource
 * exhaustion (heads with no end, too many headers, endless chunk-size lines
 * or trailers, a chunk larger than the body limit). Every refusal is paired
 * with a positive control: a request that differs from it only in the
 * thing refused, and still parses.
 *
 * Run alone: make && build/tests/test_http_parser
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "kit/http_parser.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_HEAD 8192

/* What parse_bytes() parses: a head's pointers point in here, so they are
 * valid until the next parse. */
static char request_buffer[65536];

/* bytes with \r, \n and other controls spelled out, for failure messages.
 * Returns a static buffer: valid until the next call. */
static const char *shown(const char *bytes, size_t len)
{
	static char text[512];
	size_t w = 0;

	for (size_t i = 0; i < len && w + 5 < sizeof(text); i++) {
		unsigned char ch = (unsigned char)bytes[i];

		size_t room = sizeof(text) - w;

		if (ch == '\r')
			w += (size_t)snprintf(text + w, room, "\\r");
		else if (ch == '\n')
			w += (size_t)snprintf(text + w, room, "\\n");
		else if (ch < 0x20 || ch >= 0x7f)
			w += (size_t)snprintf(text + w, room, "\\x%02x", ch);
		else
			text[w++] = (char)ch;
	}
	text[w] = '\0';
	return text;
}

static int parse_bytes(const char *bytes, size_t len, size_t max_head,
		       struct kit_http_head *head)
{
	assert_true(len <= sizeof(request_buffer));
	memcpy(request_buffer, bytes, len);
	return kit_http_parse_head(request_buffer, len, max_head, head);
}

static int parse(const char *text, struct kit_http_head *head)
{
	return parse_bytes(text, strlen(text), MAX_HEAD, head);
}

/* Fails naming the request, so a failing case says which one. */
static void expect_status_bytes(const char *bytes, size_t len, int expected)
{
	struct kit_http_head head;
	int status = parse_bytes(bytes, len, MAX_HEAD, &head);

	if (status != expected)
		fail_msg("\"%s\": got %d, expected %d", shown(bytes, len),
			 status, expected);
}

static void expect_status(const char *text, int expected)
{
	expect_status_bytes(text, strlen(text), expected);
}

/* "GET / HTTP/1.1\r\nHost: x\r\n" + lines + "\r\n": a request around some
 * header lines (each already ending in CRLF). Static buffer. */
static const char *request_with(const char *lines)
{
	static char text[16384];

	snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: x\r\n%s\r\n",
		 lines);
	return text;
}

/* ---- the request line -------------------------------------------------- */

static void test_simple_get_with_query(void **state)
{
	static const char text[] =
		"GET /search?q=a%20b&x=1 HTTP/1.1\r\n"
		"Host: example.com\r\n"
		"Accept: */*\r\n"
		"\r\n"
		"NEXT";
	struct kit_http_head head;

	assert_int_equal(parse(text, &head), 0);
	assert_string_equal(head.method, "GET");
	assert_string_equal(head.target, "/search?q=a%20b&x=1");
	assert_int_equal(head.path_len, strlen("/search"));
	assert_string_equal(head.query, "q=a%20b&x=1");
	assert_int_equal(head.version_minor, 1);
	assert_int_equal(head.header_count, 2);
	assert_string_equal(head.headers[0].name, "Host");
	assert_string_equal(head.headers[0].value, "example.com");
	assert_string_equal(head.headers[1].name, "Accept");
	assert_string_equal(head.headers[1].value, "*/*");
	assert_true(head.content_length == -1);
	assert_false(head.chunked);
	assert_true(head.keep_alive);
	assert_false(head.expect_continue);
	assert_int_equal(head.head_len, strlen(text) - strlen("NEXT"));
	/* The pointers are into the caller's buffer, not copies. */
	assert_true(head.method == request_buffer);
	/* What follows the head is left alone. */
	assert_memory_equal(request_buffer + head.head_len, "NEXT", 4);
}

static void test_query_forms(void **state)
{
	struct kit_http_head head;

	assert_int_equal(parse("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", &head), 0);
	assert_null(head.query); /* no '?' at all */
	assert_int_equal(head.path_len, 2);

	assert_int_equal(parse("GET /a? HTTP/1.1\r\nHost: x\r\n\r\n", &head), 0);
	assert_non_null(head.query); /* a '?' with nothing after it */
	assert_string_equal(head.query, "");
	assert_int_equal(head.path_len, 2);
	assert_string_equal(head.target, "/a?");

	assert_int_equal(parse("GET /a?b?c=/d HTTP/1.1\r\nHost: x\r\n\r\n", &head), 0);
	assert_string_equal(head.query, "b?c=/d"); /* after the first '?' */
	assert_int_equal(head.path_len, 2);
}

/* Threat: a request line two servers split differently. Exactly
 * "token SP /target SP HTTP/d.d". */
static void test_bad_request_line_400(void **state)
{
	static const char *const good[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n",
		"M-SEARCH /x HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /%7Efoo;p=1?x=%20&y=~ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a/b/ HTTP/1.0\r\n\r\n",
	};
	static const char *const bad[] = {
		"GET\r\n\r\n",
		"GET /\r\n\r\n",
		"GET / \r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /  HTTP/1.1\r\nHost: x\r\n\r\n",
		" GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1 \r\n\r\n",
		"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /\tHTTP/1.1\r\nHost: x\r\n\r\n",
		"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",      /* not a token */
		"GE(T / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", /* absolute-form */
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",  /* asterisk-form */
		"GET example.com HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", /* authority-form */
		"GET / http/1.1\r\n\r\n",      /* HTTP-name is case-sensitive */
		"GET / HTTPS/1.1\r\n\r\n",
		"GET / HTTP/1\r\n\r\n",
		"GET / HTTP/1.1.1\r\n\r\n",
		"GET / HTTP/11.1\r\n\r\n",
		"GET / HTTP/a.b\r\n\r\n",
		"GET / HTTP/1,1\r\n\r\n",
	};

	for (size_t i = 0; i < COUNT(good); i++)
		expect_status(good[i], 0);
	for (size_t i = 0; i < COUNT(bad); i++)
		expect_status(bad[i], 400);
}

/* Threat: header injection through the target, which access logs and the
 * proxied request line repeat. Visible ASCII only. */
static void test_control_in_target_400(void **state)
{
	static const char nul[] = "GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n";

	expect_status("GET /a%00b%0d%0a HTTP/1.1\r\nHost: x\r\n\r\n", 0); /* control */
	expect_status_bytes(nul, sizeof(nul) - 1, 400);
	expect_status("GET /a\x01" "b HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	expect_status("GET /a\x1b[31m HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	expect_status("GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	expect_status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

static void test_version_505(void **state)
{
	struct kit_http_head head;
	static const char *const unsupported[] = {
		"GET / HTTP/2.0\r\n\r\n", "GET / HTTP/1.2\r\n\r\n",
		"GET / HTTP/0.9\r\n\r\n", "GET / HTTP/3.0\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
	};

	assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &head), 0);
	assert_int_equal(head.version_minor, 0);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &head), 0);
	assert_int_equal(head.version_minor, 1);
	for (size_t i = 0; i < COUNT(unsupported); i++)
		expect_status(unsupported[i], 505);
}

/* ---- completeness -------------------------------------------------- */

/* Every proper prefix of a valid head is "not yet", and leaves the buffer
 * as it was; the whole head parses. */
static void test_incomplete_for_every_prefix(void **state)
{
	static const char text[] =
		"\r\n" /* an empty line first: skipped (RFC 9112 2.2) */
		"POST /api/v1/items?draft=1 HTTP/1.1\r\n"
		"Host: example.com\r\n"
		"Content-Type: application/json\r\n"
		"Content-Length: 2\r\n"
		"Connection: keep-alive\r\n"
		"\r\n";
	size_t len = sizeof(text) - 1;
	struct kit_http_head head;

	for (size_t n = 0; n < len; n++) {
		int status = parse_bytes(text, n, MAX_HEAD, &head);

		if (status != KIT_HTTP_INCOMPLETE)
			fail_msg("prefix of %zu bytes \"%s\": got %d, expected "
				 "KIT_HTTP_INCOMPLETE", n, shown(text, n),
				 status);
		if (memcmp(request_buffer, text, n) != 0)
			fail_msg("prefix of %zu bytes: the buffer was modified",
				 n);
	}
	assert_int_equal(parse_bytes(text, len, MAX_HEAD, &head), 0);
	assert_string_equal(head.method, "POST");
	assert_true(head.content_length == 2);
	assert_int_equal(head.head_len, len);
}

/* Pipelining: the second request is not part of the first's head. */
static void test_pipelined_request_left_alone(void **state)
{
	static const char text[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
				   "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	struct kit_http_head head;

	assert_int_equal(parse(text, &head), 0);
	assert_string_equal(head.target, "/a");
	assert_int_equal(head.head_len, strlen("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
	size_t first = head.head_len;
	assert_int_equal(kit_http_parse_head(request_buffer + first,
					     strlen(text) - first, MAX_HEAD,
					     &head), 0);
	assert_string_equal(head.target, "/b");
}

static void test_leading_empty_lines(void **state)
{
	struct kit_http_head head;

	static const char text[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";

	assert_int_equal(parse(text, &head), 0);
	assert_string_equal(head.method, "GET");
	assert_int_equal(head.head_len, sizeof(text) - 1);
	/* Empty lines alone are not a request yet. */
	expect_status("\r\n\r\n\r\n", KIT_HTTP_INCOMPLETE);
	/* Still CRLF only. */
	expect_status("\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

/* Threat: a head that never ends, growing the connection's buffer. The
 * head, empty line included, must fit in max_head. */
static void test_head_longer_than_max_head_431(void **state)
{
	static const char text[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t len = sizeof(text) - 1;
	struct kit_http_head head;
	static char big[MAX_HEAD + 100];

	assert_int_equal(parse_bytes(text, len, len, &head), 0); /* control */
	assert_int_equal(parse_bytes(text, len, len - 1, &head), 431);

	/* No end yet: "not yet" up to max_head bytes, 431 past it. */
	assert_int_equal(parse_bytes(text, 20, 20, &head), KIT_HTTP_INCOMPLETE);
	assert_int_equal(parse_bytes(text, 21, 20, &head), 431);

	/* A header value longer than the limit. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX-Big: ", 23);
	assert_int_equal(parse_bytes(big, MAX_HEAD, MAX_HEAD, &head),
			 KIT_HTTP_INCOMPLETE);
	assert_int_equal(parse_bytes(big, MAX_HEAD + 1, MAX_HEAD, &head), 431);
	assert_int_equal(parse_bytes(big, sizeof(big), MAX_HEAD, &head), 431);
}

/* ---- header lines -------------------------------------------------- */

/* Threat: lines one parser joins or splits and another does not. */
static void test_bad_header_line_400(void **state)
{
	static const char *const good[] = {
		"Name: v\r\n",
		"Name:v\r\n",
		"Name: a:b: c\r\n",
		"X-Odd!#$%&'*+-.^_`|~09: v\r\n", /* every token character */
		"Name:\r\n",                      /* an empty value */
		"Name: v\r\nOther: w\r\n",
	};
	static const char *const bad[] = {
		"NoColon\r\n",
		"Name : v\r\n",   /* whitespace before ':' */
		"Name\t: v\r\n",
		": v\r\n",        /* empty name */
		"Na me: v\r\n",   /* not a token */
		"Na(me: v\r\n",
		"Na\"me: v\r\n",
		"N\xc3\xa4me: v\r\n",
		" Name: v\r\n",   /* obs-fold, even on the first line */
		"Name: v\r\n continued\r\n",
		"Name: v\r\n\tcontinued\r\n",
	};

	for (size_t i = 0; i < COUNT(good); i++)
		expect_status(request_with(good[i]), 0);
	for (size_t i = 0; i < COUNT(bad); i++)
		expect_status(request_with(bad[i]), 400);
}

/* Threat: lines ended by a bare LF or split by a lone CR, which lenient
 * servers take as line ends and strict ones do not. */
static void test_bare_lf_and_lone_cr_400(void **state)
{
	expect_status("GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n", 0); /* control */
	expect_status("GET / HTTP/1.1\nHost: x\r\nA: b\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: x\r\nA: b\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\n", 400);
	expect_status("GET / HTTP/1.1\n\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: x\r\nA: b\rC: d\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\r\nHost: x\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\r\n", 400);
	/* Refused as soon as seen, before the head is complete... */
	expect_status("GET / HTTP/1.1\nHost", 400);
	expect_status("GET / HTTP/1.1\rX", 400);
	/* ...but a CR at the very end may still get its LF. */
	expect_status("GET / HTTP/1.1\r", KIT_HTTP_INCOMPLETE);
}

/* Threat: header injection: a NUL cuts a value short for C code, and ESC
 * or DEL reach terminals through the logs. HTAB and obs-text stay legal. */
static void test_control_in_header_value_400(void **state)
{
	static const char nul[] = "GET / HTTP/1.1\r\nHost: x\r\nA: b\0c\r\n\r\n";
	struct kit_http_head head;

	assert_int_equal(parse(request_with("A: b\tc\r\n"), &head), 0);
	assert_string_equal(kit_http_header_value(&head, "A"), "b\tc");
	assert_int_equal(parse(request_with("A: caf\xc3\xa9\r\n"), &head), 0);
	assert_string_equal(kit_http_header_value(&head, "A"), "caf\xc3\xa9");

	expect_status_bytes(nul, sizeof(nul) - 1, 400);
	expect_status(request_with("A: b\x01" "c\r\n"), 400);
	expect_status(request_with("A: \x1b[2Jb\r\n"), 400);
	expect_status(request_with("A: b\x7f\r\n"), 400);
	expect_status(request_with("A: b\x0b" "c\r\n"), 400);
}

static void test_header_value_trimming_and_lookup(void **state)
{
	struct kit_http_head head;

	assert_int_equal(parse(request_with("X-Spaced:   two words \t \r\n"
					    "X-Empty:\r\n"
					    "X-Blank: \t \r\n"
					    "X-Inner:a  \t  b\r\n"
					    "Dup: first\r\n"
					    "DUP: second\r\n"),
			       &head),
			 0);
	assert_int_equal(head.header_count, 7);
	assert_string_equal(head.headers[1].name, "X-Spaced"); /* case kept */
	assert_string_equal(head.headers[1].value, "two words");
	assert_string_equal(kit_http_header_value(&head, "x-spaced"),
			    "two words");
	assert_string_equal(kit_http_header_value(&head, "X-SPACED"),
			    "two words");
	assert_string_equal(kit_http_header_value(&head, "X-Empty"), "");
	assert_string_equal(kit_http_header_value(&head, "X-Blank"), "");
	assert_string_equal(kit_http_header_value(&head, "X-Inner"),
			    "a  \t  b");
	assert_string_equal(kit_http_header_value(&head, "dup"), "first");
	assert_null(kit_http_header_value(&head, "X-Missing"));
	assert_null(kit_http_header_value(&head, "X-Spaced-Not"));
	assert_null(kit_http_header_value(&head, "X-Space"));
}

/* Threat: a flood of small headers, each costing a lookup. */
static void test_header_count_431(void **state)
{
	static char text[4096];
	struct kit_http_head head;
	size_t w;

	int most = KIT_HTTP_MAX_HEADERS;

	for (int count = most; count <= most + 1; count++) {
		/* Host is the first of the count fields. */
		w = (size_t)snprintf(text, sizeof(text),
				     "GET / HTTP/1.1\r\nHost: x\r\n");
		for (int i = 1; i < count; i++)
			w += (size_t)snprintf(text + w, sizeof(text) - w,
					      "H%d: v%d\r\n", i, i);
		snprintf(text + w, sizeof(text) - w, "\r\n");

		int status = parse(text, &head);
		if (count == KIT_HTTP_MAX_HEADERS) {
			assert_int_equal(status, 0); /* control */
			assert_int_equal(head.header_count, count);
			assert_string_equal(head.headers[most - 1].value,
					    "v63");
		} else {
			assert_int_equal(status, 431);
		}
	}
}

/* ---- the body's length -------------------------------------------- */

static void test_content_length(void **state)
{
	static const struct {
		const char *value;
		long long length;
	} good[] = {
		{ "0", 0 },
		{ "42", 42 },
		{ "  42 \t", 42 },
		{ "007", 7 },
		{ "9223372036854775807", LLONG_MAX },
	};
	static const char *const bad[] = {
		"", "abc", "-1", "+5", "0x10", "5, 5", "1 2", "4a", "1e3",
		"9223372036854775808", "99999999999999999999999",
	};
	char line[128];
	struct kit_http_head head;

	for (size_t i = 0; i < COUNT(good); i++) {
		snprintf(line, sizeof(line), "Content-Length: %s\r\n",
			 good[i].value);
		assert_int_equal(parse(request_with(line), &head), 0);
		assert_true(head.content_length == good[i].length);
	}
	for (size_t i = 0; i < COUNT(bad); i++) {
		snprintf(line, sizeof(line), "Content-Length: %s\r\n", bad[i]);
		expect_status(request_with(line), 400);
	}
}

/* Threat: request smuggling with two lengths (RFC 9112 6.3 item 5). */
static void test_duplicate_content_length(void **state)
{
	struct kit_http_head head;

	assert_int_equal(parse(request_with("Content-Length: 5\r\n"
					    "content-length: 5\r\n"),
			       &head),
			 0);
	assert_true(head.content_length == 5);
	expect_status(request_with("Content-Length: 5\r\n"
				   "Content-Length: 6\r\n"),
		      400);
	expect_status(request_with("Content-Length: 6\r\n"
				   "X-Between: 1\r\n"
				   "CONTENT-LENGTH: 5\r\n"),
		      400);
}

/* Threat: request smuggling, CL.TE and TE.CL: a front end reading one
 * length and a back end the other (RFC 9112 6.3 item 3). */
static void test_content_length_and_transfer_encoding_400(void **state)
{
	struct kit_http_head head;

	assert_int_equal(parse(request_with("Content-Length: 5\r\n"), &head),
			 0);
	assert_true(head.content_length == 5);
	assert_false(head.chunked);
	assert_int_equal(parse(request_with("Transfer-Encoding: chunked\r\n"),
			       &head),
			 0);
	assert_true(head.chunked);
	assert_true(head.content_length == -1);

	expect_status(request_with("Content-Length: 5\r\n"
				   "Transfer-Encoding: chunked\r\n"),
		      400);
	expect_status(request_with("Transfer-Encoding: chunked\r\n"
				   "Content-Length: 5\r\n"),
		      400);
	expect_status(request_with("transfer-encoding: CHUNKED\r\n"
				   "content-length: 0\r\n"),
		      400);
	/* Smuggling is named first, even with an encoding we lack. */
	expect_status(request_with("Content-Length: 5\r\n"
				   "Transfer-Encoding: gzip\r\n"),
		      400);
}

/* Threat: an encoding we would pass on undecoded, with its length
 * unknown. Only chunked, alone. */
static void test_transfer_encoding_501(void **state)
{
	static const char *const good[] = {
		"chunked", "Chunked", "CHUNKED", "  chunked\t",
	};
	static const char *const unsupported[] = {
		"gzip, chunked", "chunked, gzip", "gzip", "identity", "",
		"chunked, chunked", "chunked;q=1", "chunkedx", "x-chunked",
	};
	char line[128];
	struct kit_http_head head;

	for (size_t i = 0; i < COUNT(good); i++) {
		snprintf(line, sizeof(line), "Transfer-Encoding: %s\r\n",
			 good[i]);
		assert_int_equal(parse(request_with(line), &head), 0);
		assert_true(head.chunked);
	}
	for (size_t i = 0; i < COUNT(unsupported); i++) {
		snprintf(line, sizeof(line), "Transfer-Encoding: %s\r\n",
			 unsupported[i]);
		expect_status(request_with(line), 501);
	}
	/* Two lines are one list: "chunked, chunked". */
	expect_status(request_with("Transfer-Encoding: chunked\r\n"
				   "Transfer-Encoding: chunked\r\n"),
		      501);
}

/* ---- the connection ----------------------------------------------- */

static void test_keep_alive_rules(void **state)
{
	static const struct {
		const char *version;
		const char *connection; /* NULL: no Connection header */
		bool keep_alive;
	} cases[] = {
		{ "1.1", NULL, true },
		{ "1.1", "close", false },
		{ "1.1", "Close", false },
		{ "1.1", "foo, close", false },
		{ "1.1", "close,foo", false },
		{ "1.1", "foo ,\tclose ", false },
		{ "1.1", "keep-alive", true },
		{ "1.1", "closed", true },      /* whole tokens only */
		{ "1.1", "x-close", true },
		{ "1.1", "keep-alive, close", false },
		{ "1.0", NULL, false },
		{ "1.0", "keep-alive", true },
		{ "1.0", "Keep-Alive", true },
		{ "1.0", "foo , keep-alive", true },
		{ "1.0", "keep-alive, close", false },
		{ "1.0", "close", false },
		{ "1.0", "keep-alives", false },
	};
	/* Transfer-Encoding on HTTP/1.0: served, then closed (RFC 9112 6.1). */
	static const char te_on_1_0[] =
		"POST / HTTP/1.0\r\nConnection: keep-alive\r\n"
		"Transfer-Encoding: chunked\r\n\r\n";
	char text[256];
	struct kit_http_head head;

	for (size_t i = 0; i < COUNT(cases); i++) {
		if (cases[i].connection != NULL)
			snprintf(text, sizeof(text),
				 "GET / HTTP/%s\r\nHost: x\r\nConnection: %s\r\n\r\n",
				 cases[i].version, cases[i].connection);
		else
			snprintf(text, sizeof(text), "GET / HTTP/%s\r\nHost: x\r\n\r\n",
				 cases[i].version);
		assert_int_equal(parse(text, &head), 0);
		if (head.keep_alive != cases[i].keep_alive)
			fail_msg("\"%s\": keep_alive %d, expected %d",
				 shown(text, strlen(text)), head.keep_alive,
				 cases[i].keep_alive);
	}
	assert_int_equal(parse(te_on_1_0, &head), 0);
	assert_true(head.chunked);
	assert_false(head.keep_alive);
	/* Several Connection lines are one list. */
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo\r\n"
			       "Connection: close\r\n\r\n",
			       &head),
			 0);
	assert_false(head.keep_alive);
}

static void test_expect_continue(void **state)
{
	static const struct {
		const char *request;
		bool expect_continue;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: x\r\nexpect: 100-Continue\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: x\r\nEXPECT:  100-CONTINUE \r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continuex\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-Expect: 100-continue\r\n\r\n", false },
		/* RFC 9110 10.1.1: ignored from an HTTP/1.0 client. */
		{ "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", false },
	};
	struct kit_http_head head;

	for (size_t i = 0; i < COUNT(cases); i++) {
		assert_int_equal(parse(cases[i].request, &head), 0);
		if (head.expect_continue != cases[i].expect_continue)
			fail_msg("\"%s\": expect_continue %d, expected %d",
				 shown(cases[i].request,
				       strlen(cases[i].request)),
				 head.expect_continue,
				 cases[i].expect_continue);
	}
}

/* ---- Host -------------------------------------------------------- */

/* Threat: a request two servers route to different sites. RFC 9112 3.2:
 * 400 for an HTTP/1.1 request without Host, for any request with two, and
 * for a Host that is not a host. Each refusal beside the request that
 * differs from it only in that. */
static void test_host_required_once_400(void **state)
{
	struct kit_http_head head;

	/* Exactly one on HTTP/1.1. */
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
			       &head),
			 0);
	assert_string_equal(kit_http_header_value(&head, "host"), "a.example");
	expect_status("GET / HTTP/1.1\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nX-Host: a.example\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a.example\r\n"
		      "Host: b.example\r\n\r\n",
		      400);
	expect_status("GET / HTTP/1.1\r\nHost: a.example\r\n"
		      "host: a.example\r\n\r\n",
		      400); /* even the same one twice */
	/* HTTP/1.0 may leave it out, but not send two. */
	expect_status("GET / HTTP/1.0\r\n\r\n", 0);
	expect_status("GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", 0);
	expect_status("GET / HTTP/1.0\r\nHost: a.example\r\n"
		      "Host: b.example\r\n\r\n",
		      400);
}

static void test_host_value_400(void **state)
{
	static const char *const good[] = {
		"example.com", "example.com:8080", "127.0.0.1", "127.0.0.1:80",
		"[::1]", "[::1]:443", "[v1.fe80::a+en1]", "a-b.c_d~e",
		"%41bc", "x:", "", "  example.com \t",
		"!$&'()*+,;=",
	};
	static const char *const bad[] = {
		"exa mple.com", "a/b", "a?b", "a#b", "user@example.com",
		"[::1", "[::1]x", "[]", "[::1]:x", "example.com:80x",
		"example.com:-1", "%zz", "%4", "ex\xc3\xa4mple", "a\\b",
		"a\"b", "<a>", "a:1:2",
	};
	char line[128];

	for (size_t i = 0; i < COUNT(good); i++) {
		snprintf(line, sizeof(line), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
			 good[i]);
		expect_status(line, 0);
		assert_true(kit_http_is_host(good[i]));
	}
	for (size_t i = 0; i < COUNT(bad); i++) {
		snprintf(line, sizeof(line), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
			 bad[i]);
		expect_status(line, 400);
		if (kit_http_is_host(bad[i]))
			fail_msg("kit_http_is_host(\"%s\") is true", bad[i]);
	}
}

/* ---- the field rules, called alone ---------------------------------- */

/* The rules a server with a parser of its own applies (civetweb's guard):
 * they must say what kit_http_parse_head() says, and take values with the
 * trailing spaces civetweb leaves on them. */
static void test_field_rules_alone(void **state)
{
	int minor = -1;
	long long length = -1;
	struct kit_http_framing framing;

	assert_true(kit_http_is_token("GET", 3));
	assert_true(kit_http_is_token("X-Odd!#$%&'*+-.^_`|~09", 22));
	assert_false(kit_http_is_token("", 0));
	assert_false(kit_http_is_token("Na me", 5));
	assert_false(kit_http_is_token("Na(me", 5));
	assert_false(kit_http_is_token("G\0T", 3));

	assert_true(kit_http_is_field_value("a\tb caf\xc3\xa9"));
	assert_false(kit_http_is_field_value("a\rb"));
	assert_false(kit_http_is_field_value("a\x7f"));

	assert_int_equal(kit_http_version("HTTP/1.1", 8, &minor), 0);
	assert_int_equal(minor, 1);
	assert_int_equal(kit_http_version("HTTP/1.0", 8, &minor), 0);
	assert_int_equal(minor, 0);
	assert_int_equal(kit_http_version("HTTP/2.0", 8, &minor), 505);
	assert_int_equal(kit_http_version("HTTP/0.9", 8, &minor), 505);
	assert_int_equal(kit_http_version("HTTP/1.10", 9, &minor), 400);
	assert_int_equal(kit_http_version("HTTP/1", 6, &minor), 400);
	assert_int_equal(kit_http_version("http/1.1", 8, &minor), 400);
	assert_int_equal(kit_http_version("HTTP/1.1", 7, &minor), 400);

	assert_int_equal(kit_http_content_length("42  ", &length), 0);
	assert_true(length == 42);
	assert_int_equal(kit_http_content_length("0x2f", &length), 400);
	assert_int_equal(kit_http_content_length(" ", &length), 400);

	/* The fields as civetweb hands them over: trailing spaces kept. */
	struct kit_http_header fields[] = {
		{ "Host", "example.com  " },
		{ "Content-Length", "5 " },
		{ "Connection", "close " },
		{ "Expect", "100-continue " },
	};
	assert_int_equal(kit_http_read_fields(fields, 4, 1, &framing), 0);
	assert_true(framing.content_length == 5);
	assert_false(framing.chunked);
	assert_false(framing.keep_alive);
	assert_true(framing.expect_continue);

	struct kit_http_header chunked[] = {
		{ "Host", "example.com" },
		{ "Transfer-Encoding", "chunked " },
	};
	assert_int_equal(kit_http_read_fields(chunked, 2, 1, &framing), 0);
	assert_true(framing.chunked);
	assert_true(framing.content_length == -1);
	assert_true(framing.keep_alive);
	chunked[1].value = "identity";
	assert_int_equal(kit_http_read_fields(chunked, 2, 1, &framing), 501);
	/* The same table without Host: fine on HTTP/1.0, not on 1.1. */
	assert_int_equal(kit_http_read_fields(fields + 1, 3, 0, &framing), 0);
	assert_int_equal(kit_http_read_fields(fields + 1, 3, 1, &framing), 400);
}

/* ---- the path ------------------------------------------------------ */

static void expect_normalized(const char *target, const char *expected)
{
	char out[256];
	int status = kit_http_path_normalize(target, strlen(target), out,
					     sizeof(out));

	if (status != 0)
		fail_msg("\"%s\": got %d, expected \"%s\"", target, status,
			 expected);
	if (strcmp(out, expected) != 0)
		fail_msg("\"%s\": got \"%s\", expected \"%s\"", target,
			 shown(out, strlen(out)), expected);
}

static void test_path_normalize_table(void **state)
{
	static const struct {
		const char *target;
		const char *path;
	} cases[] = {
		{ "/", "/" },
		{ "/a/b", "/a/b" },
		{ "/a/b/", "/a/b/" },            /* trailing slash kept */
		{ "/a/./b/../c", "/a/c" },
		{ "/..", "/" },                  /* never above "/" */
		{ "/../..", "/" },
		{ "/../a", "/a" },
		{ "/a/..", "/" },
		{ "/a/b/..", "/a/" },
		{ "/a/.", "/a/" },
		{ "/./", "/" },
		{ "/a/b/c/../../d", "/a/d" },
		{ "/a/./../b/./c/", "/b/c/" },
		{ "//a///b", "/a/b" },           /* merged slashes */
		{ "//", "/" },
		{ "/a//", "/a/" },
		{ "//..//a", "/a" },
		{ "/a/%2e%2e/b", "/b" },         /* decoded, then removed */
		{ "/a/%2E%2e/b", "/b" },
		{ "/a/.%2e/b", "/b" },
		{ "/a/%2e/b", "/a/b" },
		{ "/%2e%2e", "/" },
		{ "/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd" },
		{ "/a%2fb", "/a/b" },            /* an encoded slash is one */
		{ "/a%2F..%2Fb", "/b" },
		{ "/a%2F%2Fb", "/a/b" },
		{ "/%41%62", "/Ab" },
		{ "/a%20b", "/a b" },
		{ "/%C3%A9", "/\xc3\xa9" },      /* non-ASCII kept as bytes */
		{ "/caf%c3%a9/x", "/caf\xc3\xa9/x" },
		{ "/...", "/..." },              /* only "." and ".." count */
		{ "/..a", "/..a" },
		{ "/a..", "/a.." },
		{ "/.hidden/x", "/.hidden/x" },
	};

	for (size_t i = 0; i < COUNT(cases); i++)
		expect_normalized(cases[i].target, cases[i].path);
}

static void test_path_normalize_400(void **state)
{
	static const char *const bad[] = {
		"/%zz", "/%", "/%4", "/a%4", "/%0g", "/%g0", "/%%41",
		"/%00", "/a%00b", "/%00/..", "a/b", "%2fa", "",
	};
	static const char raw_nul[] = "/a\0b";
	char out[64];

	expect_normalized("/%41", "/A"); /* control */
	for (size_t i = 0; i < COUNT(bad); i++) {
		int status = kit_http_path_normalize(bad[i], strlen(bad[i]),
						     out, sizeof(out));
		if (status != 400)
			fail_msg("\"%s\": got %d, expected 400", bad[i],
				 status);
	}
	assert_int_equal(kit_http_path_normalize(raw_nul, sizeof(raw_nul) - 1,
						 out, sizeof(out)),
			 400);
}

static void test_path_normalize_414(void **state)
{
	char out[16];

	assert_int_equal(kit_http_path_normalize("/abc", 4, out, 5), 0);
	assert_string_equal(out, "/abc");
	assert_int_equal(kit_http_path_normalize("/abc", 4, out, 4), 414);
	/* Room is needed for the decoded path, before dots go. */
	assert_int_equal(kit_http_path_normalize("/a/../b", 7, out, 8), 0);
	assert_string_equal(out, "/b");
	assert_int_equal(kit_http_path_normalize("/a/../b", 7, out, 7), 414);
	/* ... and not for the escapes. */
	assert_int_equal(kit_http_path_normalize("/%41%42", 7, out, 4), 0);
	assert_string_equal(out, "/AB");
	assert_int_equal(kit_http_path_normalize("/%41%42", 7, out, 3), 414);
	assert_int_equal(kit_http_path_normalize("/", 1, out, 0), 414);
}

/* Threat: path traversal past a route prefix. The gateway matches
 * "/api/v1/..." on the normalized path; an encoded ".." must not leave it
 * looking like it is still under the prefix. */
static void test_path_cannot_escape_route_prefix(void **state)
{
	static const struct {
		const char *target;
		const char *path;
	} escapes[] = {
		{ "/api/v1/%2e%2e/admin", "/api/admin" },
		{ "/api/v1/%2e%2e/%2e%2e/admin", "/admin" },
		{ "/api/v1/..%2fadmin", "/api/admin" },
		{ "/api/v1/%2e%2e%2f%2e%2e%2fetc", "/etc" },
		{ "/api/v1//../../admin", "/admin" },
		{ "/api/v1/./%2E./x", "/api/x" },
	};
	const char *prefix = "/api/v1/";
	char out[256];
	struct kit_http_head head;

	/* Control: a path that is under the prefix stays there. */
	assert_int_equal(parse("GET /api/v1/users/./42?next=/../x HTTP/1.1"
			       "\r\nHost: x\r\n\r\n",
			       &head),
			 0);
	assert_int_equal(kit_http_path_normalize(head.target, head.path_len,
						 out, sizeof(out)),
			 0);
	assert_string_equal(out, "/api/v1/users/42");
	assert_string_equal(head.query, "next=/../x"); /* the query is not */

	for (size_t i = 0; i < COUNT(escapes); i++) {
		char text[256];

		snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n",
			 escapes[i].target);
		assert_int_equal(parse(text, &head), 0);
		assert_int_equal(kit_http_path_normalize(head.target,
							 head.path_len, out,
							 sizeof(out)),
				 0);
		if (strncmp(out, prefix, strlen(prefix)) == 0 ||
		    strcmp(out, escapes[i].path) != 0)
			fail_msg("\"%s\" became \"%s\", expected \"%s\"",
				 escapes[i].target, out, escapes[i].path);
	}
}

/* ---- chunked bodies ----------------------------------------------- */

struct decoded {
	int status;
	size_t consumed;  /* input bytes used in all                      */
	size_t length;    /* body bytes produced in all                   */
	char body[16384];
};

/*
 * Feeds in[0..len) to a fresh decoder in pieces: the pieces end at the
 * offsets in cuts[0..cut_count) (ascending) and at len. Stops at the first
 * status other than KIT_HTTP_INCOMPLETE, which must have used all of its
 * piece. limit is the body limit, at most sizeof(d->body).
 */
static void decode_with_cuts(const char *in, size_t len, const size_t *cuts,
			     size_t cut_count, size_t limit,
			     struct decoded *d)
{
	struct kit_http_chunked chunked;
	size_t from = 0;

	assert_true(limit <= sizeof(d->body));
	kit_http_chunked_init(&chunked);
	d->status = KIT_HTTP_INCOMPLETE;
	d->consumed = 0;
	d->length = 0;
	for (size_t i = 0; i <= cut_count; i++) {
		size_t to = i < cut_count ? cuts[i] : len;
		size_t used = 0;
		size_t made = 0;

		d->status = kit_http_chunked_decode(&chunked, in + from,
						    to - from, &used,
						    d->body + d->length,
						    limit - d->length, &made);
		d->consumed += used;
		d->length += made;
		if (d->status != KIT_HTTP_INCOMPLETE)
			return;
		if (used != to - from)
			fail_msg("KIT_HTTP_INCOMPLETE used %zu of %zu bytes",
				 used, to - from);
		from = to;
	}
}

static void decode_whole(const char *in, size_t len, size_t limit,
			 struct decoded *d)
{
	decode_with_cuts(in, len, NULL, 0, limit, d);
}

/* Checks one way of cutting against what the whole input gives. */
static void expect_same_decoding(const char *in, size_t len,
				 const size_t *cuts, size_t cut_count,
				 size_t limit, const struct decoded *whole,
				 const char *how)
{
	static struct decoded cut;

	decode_with_cuts(in, len, cuts, cut_count, limit, &cut);
	if (cut.status != whole->status)
		fail_msg("%s (first cut at %zu): status %d, whole input gave "
			 "%d", how, cut_count > 0 ? cuts[0] : len, cut.status,
			 whole->status);
	if (whole->status != 0)
		return; /* after a refusal the counts mean nothing */
	if (cut.consumed != whole->consumed || cut.length != whole->length ||
	    memcmp(cut.body, whole->body, whole->length) != 0)
		fail_msg("%s (first cut at %zu): consumed %zu body %zu "
			 "\"%s\", whole input gave %zu and %zu", how,
			 cut_count > 0 ? cuts[0] : len, cut.consumed,
			 cut.length, shown(cut.body, cut.length),
			 whole->consumed, whole->length);
}

/* A fixed pseudo-random sequence: the same cuts on every run. */
static uint32_t next_random(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 16;
}

/*
 * Decodes in[0..len) whole, then cut every way: byte by byte, at every
 * single offset, at every pair of offsets (short inputs), and at 500
 * pseudo-random sets of offsets; every way must give the whole result,
 * which must have expected_status.
 */
static void expect_any_split(const char *in, size_t len, size_t limit,
			     int expected_status, struct decoded *whole)
{
	static size_t cuts[16384];
	size_t cut;

	decode_whole(in, len, limit, whole);
	if (whole->status != expected_status)
		fail_msg("\"%s\": status %d, expected %d", shown(in, len),
			 whole->status, expected_status);

	assert_true(len <= COUNT(cuts));
	for (size_t i = 1; i < len; i++)
		cuts[i - 1] = i;
	expect_same_decoding(in, len, cuts, len > 0 ? len - 1 : 0, limit,
			     whole, "byte by byte");

	for (cut = 1; cut < len; cut++)
		expect_same_decoding(in, len, &cut, 1, limit, whole,
				     "one cut");

	if (len <= 200) {
		for (size_t i = 1; i < len; i++) {
			for (size_t j = i + 1; j < len; j++) {
				size_t pair[2] = { i, j };
				expect_same_decoding(in, len, pair, 2, limit,
						     whole, "two cuts");
			}
		}
	}

	uint32_t seed = 2024;
	for (int round = 0; round < 500; round++) {
		size_t count = 0;
		size_t at = 0;

		for (;;) {
			at += 1 + next_random(&seed) % 7;
			if (at >= len)
				break;
			cuts[count++] = at;
		}
		expect_same_decoding(in, len, cuts, count, limit, whole,
				     "random cuts");
	}
}

#define DECODE_ANY_SPLIT(literal, limit, status, whole)                      \
	expect_any_split(literal, sizeof(literal) - 1, limit, status, whole)

static void test_chunked_simple(void **state)
{
	static struct decoded d;

	static const char wiki[] = "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";

	DECODE_ANY_SPLIT(wiki, 100, 0, &d);
	assert_int_equal(d.length, 9);
	assert_memory_equal(d.body, "Wikipedia", 9);
	assert_int_equal(d.consumed, sizeof(wiki) - 1);

	/* Upper-case hex and leading zeros. */
	DECODE_ANY_SPLIT("A\r\n0123456789\r\n00a\r\nabcdefghij\r\n000\r\n\r\n",
			 100, 0, &d);
	assert_int_equal(d.length, 20);
	assert_memory_equal(d.body, "0123456789abcdefghij", 20);

	/* An empty body. */
	DECODE_ANY_SPLIT("0\r\n\r\n", 100, 0, &d);
	assert_int_equal(d.length, 0);
	assert_int_equal(d.consumed, 5);

	/* Binary data, CRLFs and NULs included, is data. */
	DECODE_ANY_SPLIT("6\r\n\r\n\0\r\n0\r\n0\r\n\r\n", 100, 0, &d);
	assert_int_equal(d.length, 6);
	assert_memory_equal(d.body, "\r\n\0\r\n0", 6);
}

static void test_chunked_extensions(void **state)
{
	static struct decoded d;

	DECODE_ANY_SPLIT("4;name=value\r\nWiki\r\n"
			 "5 ; a=\"b c\";flag\r\n" "pedia\r\n"
			 "0;last=1\r\n\r\n",
			 100, 0, &d);
	assert_int_equal(d.length, 9);
	assert_memory_equal(d.body, "Wikipedia", 9);

	/* A control character in an extension, whitespace not followed by
	 * ';'. */
	DECODE_ANY_SPLIT("4;a\x01\r\nWiki\r\n0\r\n\r\n", 100, 400, &d);
	DECODE_ANY_SPLIT("4 \r\nWiki\r\n0\r\n\r\n", 100, 400, &d);
	DECODE_ANY_SPLIT("4 5\r\nWiki\r\n0\r\n\r\n", 100, 400, &d);
}

static void test_chunked_trailers(void **state)
{
	static const char body[] = "3\r\nabc\r\n0\r\n"
				   "X-Checksum: abc\r\n"
				   "X-Other:\t1\r\n"
				   "\r\n";
	static struct decoded d;

	DECODE_ANY_SPLIT(body, 100, 0, &d);
	assert_int_equal(d.length, 3);
	assert_memory_equal(d.body, "abc", 3); /* trailers are not body */
	assert_int_equal(d.consumed, sizeof(body) - 1);

	/* Trailer lines end in CRLF like the rest. */
	DECODE_ANY_SPLIT("0\r\nX: a\n\r\n", 100, 400, &d);
	DECODE_ANY_SPLIT("0\r\nX: a\rb\r\n\r\n", 100, 400, &d);
	DECODE_ANY_SPLIT("0\r\n\n", 100, 400, &d);
	DECODE_ANY_SPLIT("0\r\n\rX", 100, 400, &d);
	DECODE_ANY_SPLIT("0\r\nX: \x01\r\n\r\n", 100, 400, &d);
}

/* Threat: smuggling through pipelining. The body ends where its framing
 * says; the bytes after it are the next request's, unread. */
static void test_chunked_leaves_next_request(void **state)
{
	static const char stream[] = "5\r\nhello\r\n0\r\nT: 1\r\n\r\n"
				     "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t framing = strlen("5\r\nhello\r\n0\r\nT: 1\r\n\r\n");
	static struct decoded d;
	struct kit_http_chunked chunked;
	size_t used = 99;
	size_t made = 99;
	char out[16];

	DECODE_ANY_SPLIT(stream, 100, 0, &d);
	assert_int_equal(d.consumed, framing);
	assert_int_equal(d.length, 5);
	assert_memory_equal(d.body, "hello", 5);

	/* Once complete, it stays complete and takes nothing more. */
	kit_http_chunked_init(&chunked);
	assert_int_equal(kit_http_chunked_decode(&chunked, stream,
						 sizeof(stream) - 1, &used, out,
						 sizeof(out), &made),
			 0);
	assert_int_equal(used, framing);
	assert_int_equal(kit_http_chunked_decode(&chunked, stream + framing,
						 sizeof(stream) - 1 - framing,
						 &used, out, sizeof(out),
						 &made),
			 0);
	assert_int_equal(used, 0);
	assert_int_equal(made, 0);
}

/* Threat: resource exhaustion: a body past the caller's limit. Refused at
 * the size line, before its data is read. */
static void test_chunked_over_out_room_413(void **state)
{
	static struct decoded d;
	struct kit_http_chunked chunked;
	size_t used;
	size_t made;
	char out[8];

	DECODE_ANY_SPLIT("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n", 9, 0, &d);
	assert_int_equal(d.length, 9); /* control: exactly the limit */
	DECODE_ANY_SPLIT("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n", 8, 413, &d);
	DECODE_ANY_SPLIT("9\r\nWikipedia\r\n0\r\n\r\n", 8, 413, &d);
	DECODE_ANY_SPLIT("4\r\nWiki\r\n5\r\n", 8, 413, &d);

	/* The size line alone is enough to refuse, and it sticks. */
	kit_http_chunked_init(&chunked);
	assert_int_equal(kit_http_chunked_decode(&chunked, "FFFFFF\r\n", 8,
						 &used, out, sizeof(out),
						 &made),
			 413);
	assert_int_equal(made, 0);
	assert_int_equal(kit_http_chunked_decode(&chunked, "abc", 3, &used,
						 out, sizeof(out), &made),
			 413);
}

/* A caller that lowers out_room by more than it was given still gets no
 * byte past out + out_room: the limit is checked again at the data. */
static void test_chunked_never_writes_past_out_room(void **state)
{
	struct kit_http_chunked chunked;
	char out[8];
	size_t used;
	size_t made;

	memset(out, '#', sizeof(out));
	kit_http_chunked_init(&chunked);
	assert_int_equal(kit_http_chunked_decode(&chunked, "5\r\nhe", 5, &used,
						 out, 5, &made),
			 KIT_HTTP_INCOMPLETE);
	assert_int_equal(made, 2);
	/* Three bytes of the chunk still due, room for one. */
	assert_int_equal(kit_http_chunked_decode(&chunked, "llo\r\n", 5, &used,
						 out + 2, 1, &made),
			 413);
	assert_int_equal(made, 0);
	assert_memory_equal(out + 2, "######", 6);
}

/* Threat: sizes read differently by two parsers ("0x5", " 5", "-1") or
 * large enough to overflow an unsigned sum. */
static void test_chunked_bad_size_400(void **state)
{
	static const char *const bad[] = {
		"g\r\n", "\r\n", ";ext\r\n", "-1\r\n", " 5\r\n", "+5\r\n",
		"0x5\r\n", "5\n", "5\rX", "5\r\r\n",
		"10000000001\r\n",             /* 2^40 + 1 */
		"FFFFFFFFFFFFFFFFFFFF\r\n",    /* 2^80 - 1: would overflow */
	};
	static struct decoded d;

	/* Controls: the largest size allowed, 2^40, gets past the size
	 * check to the body limit. */
	DECODE_ANY_SPLIT("10000000000\r\n", 100, 413, &d);
	DECODE_ANY_SPLIT("5;\tx\r\nhello\r\n0\r\n\r\n", 100, 0, &d);
	for (size_t i = 0; i < COUNT(bad); i++)
		expect_any_split(bad[i], strlen(bad[i]), 100, 400, &d);
}

/* Threat: a chunk longer than its size says, its tail taken for the next
 * chunk or the next request. */
static void test_chunked_missing_crlf_after_data_400(void **state)
{
	static const char *const bad[] = {
		"3\r\nabcd\r\n0\r\n\r\n",
		"3\r\nabc0\r\n\r\n",
		"3\r\nabc\r0\r\n\r\n",
		"3\r\nabc\n0\r\n\r\n",
		"3\r\nabc\n\r0\r\n\r\n",
		"3\r\nabcd\n0\r\n\r\n",     /* one byte too many, then LF */
		"3\r\nabc\n\n0\r\n\r\n",
	};
	static struct decoded d;

	DECODE_ANY_SPLIT("3\r\nabc\r\n0\r\n\r\n", 100, 0, &d); /* control */
	assert_memory_equal(d.body, "abc", 3);
	for (size_t i = 0; i < COUNT(bad); i++)
		expect_any_split(bad[i], strlen(bad[i]), 100, 400, &d);
}

/* Threat: resource exhaustion: a size line or trailers that never end. */
static void test_chunked_line_limits_400(void **state)
{
	static char text[KIT_HTTP_CHUNK_TRAILERS_MAX + 64];
	static struct decoded d;
	size_t w;

	/* A size line of exactly the limit, then one byte more. */
	for (size_t extra = 0; extra <= 1; extra++) {
		size_t line = KIT_HTTP_CHUNK_LINE_MAX + extra;

		memset(text, 'x', line);
		memcpy(text, "1;", 2);
		w = line;
		w += (size_t)snprintf(text + w, sizeof(text) - w,
				      "\r\nA\r\n0\r\n\r\n");
		expect_any_split(text, w, 100, extra == 0 ? 0 : 400, &d);
	}
	/* The same with leading zeros, which add nothing to the size. */
	for (size_t extra = 0; extra <= 1; extra++) {
		size_t line = KIT_HTTP_CHUNK_LINE_MAX + extra;

		memset(text, '0', line);
		text[line - 1] = '1';
		w = line;
		w += (size_t)snprintf(text + w, sizeof(text) - w,
				      "\r\nA\r\n0\r\n\r\n");
		decode_whole(text, w, 100, &d);
		assert_int_equal(d.status, extra == 0 ? 0 : 400);
	}
	/* Trailers of exactly the limit (their final CRLF included), then
	 * one byte more: "0\r\n" "X: aaa...\r\n" "\r\n". */
	for (size_t extra = 0; extra <= 1; extra++) {
		size_t value = KIT_HTTP_CHUNK_TRAILERS_MAX - 7 + extra;

		w = (size_t)snprintf(text, sizeof(text), "0\r\nX: ");
		memset(text + w, 'a', value);
		w += value;
		w += (size_t)snprintf(text + w, sizeof(text) - w, "\r\n\r\n");
		expect_any_split(text, w, 100, extra == 0 ? 0 : 400, &d);
	}
}

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get_with_query),
		cmocka_unit_test(test_query_forms),
		cmocka_unit_test(test_bad_request_line_400),
		cmocka_unit_test(test_control_in_target_400),
		cmocka_unit_test(test_version_505),
		cmocka_unit_test(test_incomplete_for_every_prefix),
		cmocka_unit_test(test_pipelined_request_left_alone),
		cmocka_unit_test(test_leading_empty_lines),
		cmocka_unit_test(test_head_longer_than_max_head_431),
		cmocka_unit_test(test_bad_header_line_400),
		cmocka_unit_test(test_bare_lf_and_lone_cr_400),
		cmocka_unit_test(test_control_in_header_value_400),
		cmocka_unit_test(test_header_value_trimming_and_lookup),
		cmocka_unit_test(test_header_count_431),
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_duplicate_content_length),
		cmocka_unit_test(test_content_length_and_transfer_encoding_400),
		cmocka_unit_test(test_transfer_encoding_501),
		cmocka_unit_test(test_keep_alive_rules),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_host_required_once_400),
		cmocka_unit_test(test_host_value_400),
		cmocka_unit_test(test_field_rules_alone),
		cmocka_unit_test(test_path_normalize_table),
		cmocka_unit_test(test_path_normalize_400),
		cmocka_unit_test(test_path_normalize_414),
		cmocka_unit_test(test_path_cannot_escape_route_prefix),
		cmocka_unit_test(test_chunked_simple),
		cmocka_unit_test(test_chunked_extensions),
		cmocka_unit_test(test_chunked_trailers),
		cmocka_unit_test(test_chunked_leaves_next_request),
		cmocka_unit_test(test_chunked_over_out_room_413),
		cmocka_unit_test(test_chunked_never_writes_past_out_room),
		cmocka_unit_test(test_chunked_bad_size_400),
		cmocka_unit_test(test_chunked_missing_crlf_after_data_400),
		cmocka_unit_test(test_chunked_line_limits_400),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
