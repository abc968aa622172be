/*
 * kit/router.h - matching a path against a route pattern.
 *
 * Patterns are literal segments and ":name" parameters: "/expand/:code"
 * matches "/expand/abc" with code=abc. A last segment "..." makes a prefix
 * route, as a gateway needs: "/api/v1/auth/..." matches "/api/v1/auth" and
 * anything below it, and *rest points at what follows the prefix in the
 * path ("" or "/login", which always starts with '/'). No regular expressions: a
 * route table a reader can check by eye. A parameter matches one non-empty
 * segment of at most 127 bytes; a trailing slash is a different path
 * ("/shorten/" does not match "/shorten").
 *
 * Pure functions, no state: the table itself lives in the app (app.c).
 */
#ifndef KIT_ROUTER_H
#define KIT_ROUTER_H

#include <stdbool.h>

#include "kit/request.h"

/* True when path matches pattern; the parameters are written to params
 * (at most KIT_MAX_PARAMS) and their number to *count. For a prefix
 * pattern, *rest (when rest is not NULL) points into path at what follows
 * the prefix; otherwise it is set to NULL. */
bool kit_route_match(const char *pattern, const char *path,
		     struct kit_param *params, int *count, const char **rest);

#endif
