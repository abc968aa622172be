/*
 * fuzz_http_chunked.c - libFuzzer target: kit_http_chunked_decode(), the
 * "Transfer-Encoding: chunked" decoder the event-loop core feeds whatever
 * a socket gives it (shared/src/server/http_parser.c).
 *
 * Input: byte 0 sets the body limit (out_room): 255 means "as large as
 * the input", any other value v means v * 8 bytes (so 413 is reachable);
 * the rest is the body as it arrives on the connection.
 *
 * Properties, beyond "no crash, no sanitizer report":
 *   - fed in two pieces, split at every position (every one up to 1024
 *     bytes of input, a stride of positions past that), the decoder gives
 *     the same status and, unless it refused, consumes the same bytes and
 *     produces the same body as fed the whole at once; fed one byte at a
 *     time, too;
 *   - INCOMPLETE consumes all it is given; *produced never exceeds the
 *     room; after 0 a further call returns 0 and uses nothing, after a
 *     refusal it returns the same refusal;
 *   - a body accepted is what a plain reading of RFC 9112 7.1 gives: the
 *     concatenated chunk data of exactly the bytes consumed, which end in
 *     CRLF.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "kit/http_parser.h"

#define SPLIT_ALL_UP_TO 1024

struct outcome {
	int status;
	size_t consumed;
	size_t produced;
};

/* Feeds in[0..len) in pieces ending at the offsets in cuts (ascending,
 * the last one len), as a read loop would. */
static struct outcome decode_pieces(const char *in, size_t len, const size_t *cuts,
				    int pieces, char *out, size_t room)
{
	struct kit_http_chunked c;
	struct outcome r = { KIT_HTTP_INCOMPLETE, 0, 0 };
	size_t start = 0;

	kit_http_chunked_init(&c);
	for (int i = 0; i < pieces && r.status == KIT_HTTP_INCOMPLETE; i++) {
		size_t consumed = 0, produced = 0;
		size_t piece = cuts[i] - start;

		r.status = kit_http_chunked_decode(&c, in + start, piece, &consumed,
						   out + r.produced, room - r.produced, &produced);
		FUZZ_CHECK(r.status == KIT_HTTP_INCOMPLETE || r.status == 0 ||
			   r.status == 400 || r.status == 413, "status %d", r.status);
		FUZZ_CHECK(consumed <= piece && produced <= room - r.produced,
			   "consumed %zu of %zu, produced %zu of %zu", consumed, piece,
			   produced, room - r.produced);
		if (r.status == KIT_HTTP_INCOMPLETE)
			FUZZ_CHECK(consumed == piece, "INCOMPLETE left %zu bytes", piece - consumed);
		if (r.status == KIT_HTTP_INCOMPLETE || r.status == 0) {
			r.consumed += consumed;
			r.produced += produced;
		}
		start = cuts[i];
	}
	if (r.status > 0) /* refused: the counts are not meaningful */
		r.consumed = r.produced = 0;
	/* Once over, it stays over. */
	if (r.status != KIT_HTTP_INCOMPLETE) {
		size_t consumed = 1, produced = 1;
		char spare;
		int again = kit_http_chunked_decode(&c, "0\r\n\r\n", 5, &consumed, &spare, 1,
						    &produced);
		FUZZ_CHECK(again == r.status, "a call after %d gave %d", r.status, again);
		if (again == 0)
			FUZZ_CHECK(consumed == 0 && produced == 0, "a call after the end used bytes");
	}
	return r;
}

/* Reads an accepted body in[0..len) the plain way: size line (hex digits,
 * then anything up to CRLF), data, CRLF, until size 0; then trailer lines
 * up to an empty one. Returns the body's length in out, or -1 when the
 * bytes are not such a body ending exactly at len. */
static long reference_decode(const char *in, size_t len, char *out)
{
	size_t i = 0, produced = 0;

	for (;;) {
		unsigned long long size = 0;
		size_t digits = 0;

		while (i < len && fuzz_hex((unsigned char)in[i]) >= 0) {
			size = size * 16 + (unsigned long long)fuzz_hex((unsigned char)in[i]);
			if (size > KIT_HTTP_CHUNK_SIZE_MAX)
				return -1; /* leading zeros are fine, a huge size not */
			i++;
			digits++;
		}
		if (digits == 0)
			return -1;
		const char *crlf = memmem(in + i, len - i, "\r\n", 2);
		if (crlf == NULL)
			return -1;
		i = (size_t)(crlf - in) + 2;
		if (size == 0)
			break;
		if (size > len - i || len - i - size < 2 || memcmp(in + i + size, "\r\n", 2) != 0)
			return -1;
		memcpy(out + produced, in + i, size);
		produced += size;
		i += size + 2;
	}
	for (;;) { /* trailers, then the empty line */
		const char *crlf = memmem(in + i, len - i, "\r\n", 2);
		if (crlf == NULL)
			return -1;
		bool empty = crlf == in + i;
		i = (size_t)(crlf - in) + 2;
		if (empty)
			break;
	}
	return i == len ? (long)produced : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t len = size - 1;
	size_t room = data[0] == 255 ? len : (size_t)data[0] * 8;
	char *in = malloc(len + 1);
	char *whole_out = malloc(room + 1);
	char *out = malloc(room + 1);
	char *reference = malloc(len + 1);
	size_t cuts[2];

	if (in == NULL || whole_out == NULL || out == NULL || reference == NULL)
		abort();
	memcpy(in, data + 1, len);

	/* 1. All at once. */
	cuts[0] = len;
	struct outcome whole = decode_pieces(in, len, cuts, 1, whole_out, room);

	/* 2. Two pieces, split at every position (a stride past 1024). */
	size_t step = len <= SPLIT_ALL_UP_TO ? 1 : len / 256 + 1;
	for (size_t cut = 0; cut <= len; cut += step) {
		cuts[0] = cut;
		cuts[1] = len;
		struct outcome two = decode_pieces(in, len, cuts, 2, out, room);
		FUZZ_CHECK(two.status == whole.status && two.consumed == whole.consumed &&
			   two.produced == whole.produced &&
			   memcmp(out, whole_out, whole.produced) == 0,
			   "split at %zu: status %d consumed %zu produced %zu; whole: %d %zu %zu",
			   cut, two.status, two.consumed, two.produced, whole.status,
			   whole.consumed, whole.produced);
	}

	/* 3. One byte at a time, as a slow client sends it. */
	size_t *every = malloc((len + 1) * sizeof(*every));
	if (every == NULL)
		abort();
	for (size_t i = 0; i < len; i++)
		every[i] = i + 1;
	struct outcome bytes = decode_pieces(in, len, every, (int)len, out, room);
	FUZZ_CHECK(bytes.status == whole.status && bytes.consumed == whole.consumed &&
		   bytes.produced == whole.produced &&
		   memcmp(out, whole_out, whole.produced) == 0,
		   "byte by byte: %d %zu %zu; whole: %d %zu %zu", bytes.status,
		   bytes.consumed, bytes.produced, whole.status, whole.consumed, whole.produced);
	free(every);

	/* 4. An accepted body is the plain reading of the bytes consumed. */
	if (whole.status == 0) {
		long expect = reference_decode(in, whole.consumed, reference);
		FUZZ_CHECK(expect >= 0, "accepted %zu bytes that are not a chunked body",
			   whole.consumed);
		FUZZ_CHECK((size_t)expect == whole.produced &&
			   memcmp(reference, whole_out, whole.produced) == 0,
			   "decoded %zu bytes, the plain reading gives %ld", whole.produced, expect);
	}
	free(in);
	free(whole_out);
	free(out);
	free(reference);
	return 0;
}
