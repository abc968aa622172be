/*
 * services/analytics/main.c - Phase 2: the analytics service as its own
 * process.
 *
 * The same handler code the monolith mounts (services/analytics/
 * analytics.c), alone in a process on port 8082, behind the gateway. Put it
 * beside phase1-monolith/main.c: CORS, JWT verification and rate limiting
 * are gone from this chain, because the gateway does them once; in their
 * place kit_identity_headers trusts the X-User-Id/X-User-Tier the gateway
 * passes on. That trust is only safe because the service listens where
 * clients cannot reach it: BIND_ADDRESS defaults to 127.0.0.1 (an internal
 * network in containers).
 *
 * New in this process: where the monolith's url-shortener called analytics
 * code directly, the url-shortener process now posts its events to
 * POST /internal/links and /internal/clicks. The gateway has no route to
 * /internal, so clients cannot reach them.
 */
#include <kit/kit.h>

#include "analytics/analytics.h"

int main(void)
{
	struct kit_app *app = kit_app_new("analytics", 8082);

	kit_use(app, &kit_request_id);       /* the caller's X-Request-Id, kept     */
	kit_use(app, &kit_tracing);          /* the caller's trace continued (Phase 3;
	                                      * off unless TRACE_SAMPLER is set)   */
	kit_use(app, &kit_access_log);       /* one JSON line per request           */
	kit_use(app, &kit_metrics);          /* this service's own /metrics         */
	kit_use(app, &kit_identity_headers); /* X-User-Id/-Tier from the gateway    */

	kit_mount_operations(app);           /* GET /health, GET /metrics           */
	analytics_mount(app);                /* /analytics/:code                    */
	analytics_mount_internal(app);       /* /internal/links, /internal/clicks:
	                                      * events from the url-shortener       */

	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
