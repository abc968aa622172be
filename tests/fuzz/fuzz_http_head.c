/*
 * fuzz_http_head.c - libFuzzer target: kit_http_parse_head(), the request
 * head parser the event-loop core runs on every byte a client sends
 * (shared/src/server/http_parser.c). Input: the bytes on the connection.
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - an accepted head's pointers (method, target, query, every header
 *     name and value) point inside buf[0..head_len), each string ends
 *     there, and they say what the header promises: a token method, a
 *     target starting with '/' of visible ASCII, path_len up to the first
 *     '?', query right after it, token header names, values without
 *     controls (HTAB aside) or surrounding whitespace, a Content-Length
 *     that a header gives, never beside chunked;
 *   - the head ends in CRLF CRLF, and the bytes after head_len are not
 *     touched; an incomplete head leaves the buffer as it was;
 *   - what comes after the head does not change it: parsing only
 *     buf[0..head_len) gives the same head;
 *   - every shorter prefix of an accepted head is INCOMPLETE, and once a
 *     prefix has a verdict (a head, or a refusal: a bare LF is refused as
 *     soon as it is seen), the whole input gets the same one;
 *   - max_head: a head that fits is parsed the same under a tighter limit
 *     that still holds it; one that does not fit is 431.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "kit/http_parser.h"

#define HEAD_MAX 16384 /* the event-loop core's (loop_connection.c) */

static bool is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL))
			return false;
	}
	return true;
}

/* s is a NUL-terminated string inside buf[0..len). */
static bool inside(const char *s, const char *buf, size_t len)
{
	return s >= buf && s < buf + len && memchr(s, '\0', (size_t)(buf + len - s)) != NULL;
}

/* Parses a fresh copy of data[0..len) under max_head. */
static int parse_copy(const uint8_t *data, size_t len, size_t max_head,
		      struct kit_http_head *head, bool *untouched)
{
	char *buf = malloc(len + 1);
	int status;

	if (buf == NULL)
		abort();
	memcpy(buf, data, len);
	status = kit_http_parse_head(buf, len, max_head, head);
	if (untouched != NULL)
		*untouched = memcmp(buf, data, len) == 0;
	free(buf);
	return status;
}

static void check_accepted(const uint8_t *data, size_t size, char *buf,
			   const struct kit_http_head *head)
{
	size_t n = head->head_len;

	FUZZ_CHECK(n >= 4 && n <= size && n <= HEAD_MAX, "head_len %zu of %zu", n, size);
	FUZZ_CHECK(memcmp(data + n - 4, "\r\n\r\n", 4) == 0, "head does not end in CRLF CRLF");
	FUZZ_CHECK(memcmp(buf + n, data + n, size - n) == 0, "bytes after the head were changed");

	FUZZ_CHECK(inside(head->method, buf, n) && is_token(head->method),
		   "method \"%s\"", head->method);
	FUZZ_CHECK(inside(head->target, buf, n) && head->target[0] == '/',
		   "target \"%s\"", head->target);
	for (const char *p = head->target; *p != '\0'; p++)
		FUZZ_CHECK(*p > 0x20 && *p < 0x7f, "byte 0x%02x in the target",
			   (unsigned char)*p);
	const char *question = strchr(head->target, '?');
	if (question == NULL) {
		FUZZ_CHECK(head->query == NULL, "a query without a '?'");
		FUZZ_CHECK(head->path_len == strlen(head->target), "path_len %zu of \"%s\"",
			   head->path_len, head->target);
	} else {
		FUZZ_CHECK(head->path_len == (size_t)(question - head->target),
			   "path_len %zu, '?' at %zu", head->path_len,
			   (size_t)(question - head->target));
		FUZZ_CHECK(head->query == question + 1, "query not right after the '?'");
	}
	FUZZ_CHECK(head->version_minor == 0 || head->version_minor == 1,
		   "version_minor %d", head->version_minor);
	FUZZ_CHECK(head->header_count >= 0 && head->header_count <= KIT_HTTP_MAX_HEADERS,
		   "header_count %d", head->header_count);

	bool saw_length = false;
	for (int i = 0; i < head->header_count; i++) {
		const char *name = head->headers[i].name;
		const char *value = head->headers[i].value;
		size_t value_len;

		FUZZ_CHECK(inside(name, buf, n) && is_token(name), "header %d name \"%s\"", i, name);
		FUZZ_CHECK(inside(value, buf, n), "header %d value outside the head", i);
		value_len = strlen(value);
		for (size_t j = 0; j < value_len; j++) {
			unsigned char c = (unsigned char)value[j];
			FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f),
				   "control 0x%02x in header %s", c, name);
		}
		if (value_len > 0)
			FUZZ_CHECK(value[0] != ' ' && value[0] != '\t' &&
				   value[value_len - 1] != ' ' && value[value_len - 1] != '\t',
				   "header %s value \"%s\" not trimmed", name, value);
		/* The lookup finds the first field of that name. */
		const char *found = kit_http_header_value(head, name);
		for (int j = 0; j < i; j++) {
			if (strcasecmp(head->headers[j].name, name) == 0) {
				value = head->headers[j].value;
				break;
			}
		}
		FUZZ_CHECK(found == value, "kit_http_header_value(\"%s\") is not the first", name);
		if (strcasecmp(name, "Content-Length") == 0) {
			saw_length = true;
			FUZZ_CHECK(strtoll(head->headers[i].value, NULL, 10) == head->content_length,
				   "Content-Length %s read as %lld", head->headers[i].value,
				   head->content_length);
		}
	}
	FUZZ_CHECK(saw_length == (head->content_length >= 0),
		   "content_length %lld without the header", head->content_length);
	FUZZ_CHECK(!(head->chunked && head->content_length >= 0), "chunked beside Content-Length");
	if (head->version_minor == 0 && head->chunked)
		FUZZ_CHECK(!head->keep_alive, "keep-alive on HTTP/1.0 with Transfer-Encoding");
	if (head->version_minor == 0)
		FUZZ_CHECK(!head->expect_continue, "100-continue on HTTP/1.0");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kit_http_head head, again;
	char *buf = malloc(size + 1);
	bool untouched;
	int status;

	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	status = kit_http_parse_head(buf, size, HEAD_MAX, &head);
	FUZZ_CHECK(status == 0 || status == KIT_HTTP_INCOMPLETE || status == 400 ||
		   status == 431 || status == 501 || status == 505, "status %d", status);

	if (status == KIT_HTTP_INCOMPLETE) {
		FUZZ_CHECK(memcmp(buf, data, size) == 0, "INCOMPLETE changed the buffer");
		FUZZ_CHECK(size <= HEAD_MAX, "INCOMPLETE past max_head (%zu bytes)", size);
	}

	/* A prefix cut halfway: once it has a verdict (a head, or a refusal
	 * such as a bare LF, refused as soon as seen), more bytes do not
	 * change it. */
	int prefix = parse_copy(data, size / 2, HEAD_MAX, &again, &untouched);
	if (prefix == KIT_HTTP_INCOMPLETE)
		FUZZ_CHECK(untouched, "INCOMPLETE changed the buffer");
	else
		FUZZ_CHECK(status == prefix, "the first %zu bytes gave %d, all %zu gave %d",
			   size / 2, prefix, size, status);

	if (status == 0) {
		size_t n = head.head_len;

		check_accepted(data, size, buf, &head);

		/* The bytes after the head do not change it. */
		FUZZ_CHECK(parse_copy(data, n, HEAD_MAX, &again, NULL) == 0 &&
			   again.head_len == n && again.header_count == head.header_count &&
			   again.content_length == head.content_length &&
			   again.chunked == head.chunked && again.keep_alive == head.keep_alive &&
			   again.expect_continue == head.expect_continue &&
			   again.path_len == head.path_len,
			   "the head alone parses differently");

		/* Every shorter prefix is INCOMPLETE: try three. */
		size_t cuts[3] = { n - 1, n / 2, n - 3 };
		for (int i = 0; i < 3; i++) {
			if (cuts[i] >= n)
				continue;
			int s = parse_copy(data, cuts[i], HEAD_MAX, &again, &untouched);
			FUZZ_CHECK(s == KIT_HTTP_INCOMPLETE && untouched,
				   "prefix of %zu of a %zu-byte head gave %d", cuts[i], n, s);
		}

		/* max_head: exactly the head fits; one byte less does not. */
		FUZZ_CHECK(parse_copy(data, size, n, &again, NULL) == 0 && again.head_len == n,
			   "a head of %zu bytes refused under max_head %zu", n, n);
		if (size > n - 1)
			FUZZ_CHECK(parse_copy(data, size, n - 1, &again, NULL) == 431,
				   "a head of %zu bytes accepted under max_head %zu", n, n - 1);
	}
	free(buf);
	return 0;
}
