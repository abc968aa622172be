/*
 * router.c - matching a request path against a route pattern
 * (kit/router.h). The route table itself lives in app.c; this file only
 * answers "does this path fit this pattern, and what are its parameters".
 *
 * Patterns are literal segments, ":name" parameters and, last, "..." for
 * "this prefix and anything below it". The path is the one
 * civetweb already URL-decoded, so a parameter value is a decoded segment.
 * Pure functions: safe from any thread.
 */
#include <stdio.h>
#include <string.h>

#include "kit/router.h"

/* Length of the segment starting at s (up to the next '/' or the end). */
static size_t segment_length(const char *s)
{
	const char *slash = strchr(s, '/');

	return slash != NULL ? (size_t)(slash - s) : strlen(s);
}

bool kit_route_match(const char *pattern, const char *path,
		     struct kit_param *params, int *count, const char **rest)
{
	const char *p = pattern;
	const char *u = path;
	int found = 0;

	*count = 0;
	if (rest != NULL)
		*rest = NULL;
	while (*p != '\0' && *u != '\0') {
		if (strcmp(p, "...") == 0 && p > pattern && p[-1] == '/') {
			/* A prefix route: whatever follows matches. */
			if (rest != NULL)
				*rest = u - 1;
			*count = found;
			return true;
		}
		if (*p == '/' || *u == '/') {
			if (*p != *u)
				return false;
			p++;
			u++;
			continue;
		}
		size_t plen = segment_length(p);
		size_t ulen = segment_length(u);

		if (*p == ':') {
			if (found == KIT_MAX_PARAMS || ulen == 0 ||
			    ulen >= sizeof(params[0].value) ||
			    plen - 1 >= sizeof(params[0].name))
				return false;
			memcpy(params[found].name, p + 1, plen - 1);
			params[found].name[plen - 1] = '\0';
			memcpy(params[found].value, u, ulen);
			params[found].value[ulen] = '\0';
			found++;
		} else if (plen != ulen || memcmp(p, u, plen) != 0) {
			return false;
		}
		p += plen;
		u += ulen;
	}
	if (*u == '\0' && strcmp(p, "/...") == 0) {
		/* "/api/v1/auth" against "/api/v1/auth/...": the prefix itself. */
		if (rest != NULL)
			*rest = u;
		*count = found;
		return true;
	}
	if (*u == '\0' && strcmp(p, "...") == 0 && p > pattern && p[-1] == '/') {
		/* "/api/v1/auth/" against "/api/v1/auth/...". */
		if (rest != NULL)
			*rest = u - 1;
		*count = found;
		return true;
	}
	if (*p != '\0' || *u != '\0')
		return false; /* one is a prefix of the other */
	*count = found;
	return true;
}
