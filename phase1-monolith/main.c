/*
 * phase1-monolith/main.c - Phase 1: one process, one port, everything inside.
 *
 * This file is the architecture. The middleware every request passes, in
 * order, then the business code mounted beside it: the same users,
 * url-shortener and analytics handlers that Phase 2 runs as three processes
 * behind a gateway. Compare it with phase2-gateway/main.c: what moves out of
 * this file is what a gateway is for.
 *
 * Configuration comes from the environment (docs/configuration.md); a bad
 * value stops start-up before the port opens.
 */
#include <kit/kit.h>

#include "analytics/analytics.h"
#include "url-shortener/url_shortener.h"
#include "users/users.h"

int main(void)
{
	struct kit_app *app = kit_app_new("monolith", 8080);

	kit_use(app, &kit_request_id);        /* X-Request-Id in, out, in every log line */
	kit_use(app, &kit_access_log);        /* one JSON line per request, written last */
	kit_use(app, &kit_metrics);           /* http_requests_total, latency histogram  */
	kit_use(app, &kit_cors);              /* browsers: preflight answered here       */
	kit_use(app, &kit_auth_jwt);          /* Bearer JWT on KIT_AUTHENTICATED routes  */
	kit_use(app, &kit_rate_limit_memory); /* one process: its memory is enough       */

	kit_mount_operations(app);            /* GET /health, GET /metrics               */
	users_mount(app);                     /* /auth/register, /auth/login, /users/me  */
	analytics_mount(app);                 /* /analytics/:code                        */
	url_shortener_mount(app, &analytics_in_process); /* /shorten, /expand, /r; clicks
	                                                  * go straight to analytics code */

	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
