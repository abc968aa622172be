/*
 * fuzz_http_path.c - libFuzzer target: kit_http_path_normalize(), which
 * turns a request-target's path into the path routes are matched on
 * (shared/src/server/http_parser.c). A gateway's prefix checks are only as
 * safe as this function: "/api/v1/%2e%2e/admin" must not stay under
 * /api/v1.
 *
 * Input: byte 0 sets the size of the output buffer: 255 means 4096 (the
 * event-loop core's), any other value v means v bytes (so 414 is
 * reachable); the rest is the path, as the head parser hands it over
 * (target[0..path_len)).
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - an accepted path starts with '/', holds no NUL (strlen is where the
 *     output ends), no empty segment ("//"), no "." or ".." segment, and
 *     is no longer than the input;
 *   - it equals an independent reading of the header's three rules:
 *     percent-decode, then a stack of segments ("." and "" dropped, ".."
 *     pops), a trailing slash kept when the last segment was "", "." or
 *     ".."; refusals agree too: 400 (no leading '/', a bad escape, a NUL),
 *     414 (no room for the decoded path and its NUL), whichever comes
 *     first;
 *   - normalizing is idempotent: an output without '%' normalizes to
 *     itself.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "kit/http_parser.h"

/* The reference: 0, 400 or 414, and the path in out (out_size bytes,
 * the input's length + 2 is always enough for it). */
static int reference_normalize(const char *in, size_t len, size_t size, char *out)
{
	char *decoded = malloc(len + 1);
	size_t n = 0;

	if (decoded == NULL)
		abort();
	if (len == 0 || in[0] != '/') {
		free(decoded);
		return 400;
	}
	for (size_t i = 0; i < len;) {
		unsigned char byte = (unsigned char)in[i];
		if (byte == '%') {
			if (len - i < 3 || fuzz_hex((unsigned char)in[i + 1]) < 0 ||
			    fuzz_hex((unsigned char)in[i + 2]) < 0) {
				free(decoded);
				return 400;
			}
			byte = (unsigned char)(fuzz_hex((unsigned char)in[i + 1]) * 16 +
					       fuzz_hex((unsigned char)in[i + 2]));
			i += 3;
		} else {
			i++;
		}
		if (byte == 0) {
			free(decoded);
			return 400;
		}
		if (n + 1 >= size) {
			free(decoded);
			return 414;
		}
		decoded[n++] = (char)byte;
	}

	/* Segments between slashes; decoded[0] is '/'. */
	size_t w = 0;
	size_t starts[4096 + 1];
	int depth = 0;
	bool trailing = true;
	size_t i = 1;
	for (;;) {
		size_t end = i;
		while (end < n && decoded[end] != '/')
			end++;
		size_t seg = end - i;
		if (seg == 0 || (seg == 1 && decoded[i] == '.')) {
			trailing = true;
		} else if (seg == 2 && decoded[i] == '.' && decoded[i + 1] == '.') {
			if (depth > 0)
				w = starts[--depth];
			trailing = true;
		} else {
			starts[depth++] = w;
			out[w++] = '/';
			memcpy(out + w, decoded + i, seg);
			w += seg;
			trailing = false;
		}
		if (end >= n)
			break;
		i = end + 1;
	}
	if (w == 0 || trailing)
		out[w++] = '/';
	out[w] = '\0';
	free(decoded);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 4096)
		return 0;
	size_t len = size - 1;
	size_t out_size = data[0] == 255 ? 4096 : data[0];
	char *target = malloc(len + 1);
	char *out = malloc(out_size + 1);
	char *expect = malloc(len + 2);
	char *again = malloc(len + 2);

	if (target == NULL || out == NULL || expect == NULL || again == NULL)
		abort();
	memcpy(target, data + 1, len);
	/* Exactly out_size bytes for the function: the extra one is a
	 * sentinel it must not write. */
	out[out_size] = 'Z';
	int status = kit_http_path_normalize(target, len, out, out_size);
	FUZZ_CHECK(out[out_size] == 'Z', "wrote past the %zu bytes it was given", out_size);
	int want = reference_normalize(target, len, out_size, expect);
	FUZZ_CHECK(status == want, "status %d, the rules say %d", status, want);

	if (status == 0) {
		size_t out_len = strlen(out);
		FUZZ_CHECK(out_len < out_size && out_len <= len,
			   "%zu bytes out of %zu in", out_len, len);
		FUZZ_CHECK(out[0] == '/', "\"%s\" does not start with '/'", out);
		FUZZ_CHECK(strstr(out, "//") == NULL, "\"%s\" has an empty segment", out);
		FUZZ_CHECK(strstr(out, "/../") == NULL && strstr(out, "/./") == NULL &&
			   !(out_len >= 3 && strcmp(out + out_len - 3, "/..") == 0) &&
			   !(out_len >= 2 && strcmp(out + out_len - 2, "/.") == 0),
			   "\"%s\" has a dot segment", out);
		FUZZ_CHECK(strcmp(out, expect) == 0, "\"%s\", the rules say \"%s\"", out, expect);
		if (strchr(out, '%') == NULL) {
			int s = kit_http_path_normalize(out, out_len, again, out_len + 1);
			FUZZ_CHECK(s == 0 && strcmp(again, out) == 0,
				   "\"%s\" normalizes again to \"%s\" (%d)", out, again, s);
		}
	}
	free(target);
	free(out);
	free(expect);
	free(again);
	return 0;
}
