/*
 * http_policy.c - the limits and timeouts every server core applies, in one
 * declared table (server/core.h: struct kit_http_policy).
 *
 * nginx declares each module's settings in one table; so does the kit:
 * each row is a setting's environment variable, its default, its bounds,
 * and the field it fills. Both cores read the same struct, so a limit is
 * written once and means the same on either: what civetweb is configured
 * with and what the event loop enforces come from these rows.
 *
 * Read once at start-up (kit_app_new); read-only afterwards.
 */
#include <stddef.h>
#include <stdio.h>

#include "kit/config.h"
#include "server/core.h"

struct policy_setting {
	const char *name;        /* the environment variable                  */
	long fallback;           /* its default                               */
	long min, max;           /* accepted range, inclusive                 */
	size_t offset;           /* the field of struct kit_http_policy       */
};

#define FIELD(f) offsetof(struct kit_http_policy, f)

static const struct policy_setting settings[] = {
	/* A request line and its headers: 16 KiB, as civetweb's buffer. */
	{ "MAX_HEADER_BYTES", 16384, 1024, 1L << 20, FIELD(max_head_bytes) },
	/* A request body; a larger one is refused (413) before it is read. */
	{ "MAX_BODY_BYTES", 65536, 1, 64L << 20, FIELD(max_body_bytes) },
	/* From a request's first byte until its head and body are in: a
	 * client sending a byte at a time (slowloris) is cut off here. */
	{ "REQUEST_TIMEOUT_MS", 10000, 100, 600000, FIELD(request_timeout_ms) },
	/* An idle keep-alive connection, and a client that stops reading. */
	{ "KEEP_ALIVE_TIMEOUT_MS", 30000, 100, 3600000, FIELD(keep_alive_timeout_ms) },
	{ "LISTEN_BACKLOG", 512, 1, 65535, FIELD(listen_backlog) },
	/* Open client connections the process serves at once. */
	{ "MAX_CONNECTIONS", 10000, 1, 1000000, FIELD(max_connections) },
};

int kit_http_policy_from_env(struct kit_http_policy *policy)
{
	int status = 0;

	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const struct policy_setting *s = &settings[i];
		long *field = (long *)((char *)policy + s->offset);

		/* kit_env_long prints what is wrong with a bad value. */
		if (kit_env_long(s->name, s->fallback, s->min, s->max, field) != 0)
			status = -1;
	}
	return status;
}
