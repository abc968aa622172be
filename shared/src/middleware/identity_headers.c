/*
 * identity_headers.c - middleware for a service behind the gateway: take
 * the caller's identity from the headers the gateway set.
 *
 * Position: where the monolith has auth_jwt. The gateway verified the
 * token once, removed any X-User-* headers the client sent, and passed the
 * verified subject and tier on; the service trusts them. That trust is
 * only safe because services listen on loopback or an internal network the
 * gateway alone can reach (docs/phase2.md).
 * Reads:    X-User-Id, X-User-Tier; the route's access.
 * Writes:   req->user, the same field auth_jwt fills in the monolith, so
 *           handlers never know which phase they run in. A
 *           KIT_AUTHENTICATED route without a usable X-User-Id answers 401.
 *
 * The headers are held to the rules a token's claims are (kit/jwt.h): the
 * id a valid username, the tier a known one (absent: free). The gateway
 * never sends anything else, so anything else did not come from it, and
 * is no identity at all rather than a guess.
 */
#include <stdio.h>
#include <string.h>

#include "kit/jwt.h"
#include "kit/middleware.h"
#include "kit/request.h"
#include "kit/response.h"

static int identity_headers_handle(struct kit_request *req, void *state)
{
	const char *user = kit_request_header(req, "X-User-Id");
	const char *tier = kit_request_header(req, "X-User-Tier");

	if (user != NULL && kit_username_is_valid(user, strlen(user)) &&
	    (tier == NULL || kit_tier_is_known(tier))) {
		req->user.authenticated = true;
		snprintf(req->user.subject, sizeof(req->user.subject), "%s", user);
		snprintf(req->user.tier, sizeof(req->user.tier), "%s", tier != NULL ? tier : "free");
	}
	if (req->route_pattern != NULL && req->access == KIT_AUTHENTICATED &&
	    !req->user.authenticated)
		return kit_problem(req, 401, "no caller identity: services are reached through the gateway");
	return KIT_NEXT;
}

const struct kit_middleware kit_identity_headers = {
	.name = "identity_headers",
	.loop_safe = true,
	.handle = identity_headers_handle,
};
