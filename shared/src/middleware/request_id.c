/*
 * request_id.c - middleware: give every request an id and echo it.
 *
 * Position: first in the chain, so every later middleware, every log line
 * and every problem body can name the request.
 * Reads:    the X-Request-Id request header.
 * Writes:   req->request_id and the X-Request-Id response header.
 *
 * A client's id is kept when it is sane (1-64 characters of A-Z a-z 0-9
 * . _ : -), so a caller can follow its own id through our logs; anything
 * else is replaced by a new UUID v4, because an id ends up in log lines and
 * headers and must not carry quotes, spaces or CR/LF.
 *
 * Threads: ids come from kit_random_u64() (per-thread state).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kit/middleware.h"
#include "kit/noncrypto.h"
#include "kit/request.h"
#include "kit/response.h"

static bool is_sane_id(const char *id)
{
	size_t len = strlen(id);

	return len >= 1 && len <= KIT_REQUEST_ID_MAX &&
	       strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			  "0123456789._:-") == len;
}

void kit_new_request_id(char out[37])
{
	uint64_t high = kit_random_u64(), low = kit_random_u64();

	high = (high & ~0xF000ull) | 0x4000ull;               /* version 4 */
	low = (low & ~(3ull << 62)) | (2ull << 62);           /* variant 10 */
	snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx",
		 (unsigned)(high >> 32), (unsigned)(high >> 16) & 0xFFFFu,
		 (unsigned)high & 0xFFFFu, (unsigned)(low >> 48),
		 (unsigned long long)(low & 0xFFFFFFFFFFFFull));
}

static int request_id_handle(struct kit_request *req, void *state)
{
	const char *sent = kit_request_header(req, "X-Request-Id");

	if (sent != NULL && is_sane_id(sent))
		snprintf(req->request_id, sizeof(req->request_id), "%s", sent);
	else
		kit_new_request_id(req->request_id);
	kit_response_header(req, "X-Request-Id", req->request_id);
	return KIT_NEXT;
}

const struct kit_middleware kit_request_id = {
	.name = "request_id",
	.loop_safe = true,
	.handle = request_id_handle,
};
