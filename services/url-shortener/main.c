/*
 * services/url-shortener/main.c - Phase 2: the url-shortener service as its
 * own process.
 *
 * The same handler code the monolith mounts (services/url-shortener/
 * url_shortener.c), alone in a process on port 8081, behind the gateway.
 * Put it beside phase1-monolith/main.c: CORS, JWT verification and rate
 * limiting are gone from this chain, because the gateway does them once; in
 * their place kit_identity_headers trusts the X-User-Id/X-User-Tier the
 * gateway passes on, which is only safe because the service listens where
 * clients cannot reach it (BIND_ADDRESS defaults to 127.0.0.1).
 *
 * The other difference is one argument: analytics is another process now,
 * so new links and clicks go to it over HTTP, through a queue and a
 * background thread (analytics_client.c), instead of analytics_in_process.
 * PUBLIC_BASE_URL is the gateway's URL (http://localhost:3000), because
 * that is where clients follow short links.
 */
#include <kit/kit.h>

#include "url-shortener/analytics_client.h"
#include "url-shortener/url_shortener.h"

int main(void)
{
	struct kit_app *app = kit_app_new("url-shortener", 8081);

	kit_use(app, &kit_request_id);       /* the gateway's X-Request-Id, kept    */
	kit_use(app, &kit_tracing);          /* the caller's trace continued (Phase 3;
	                                      * off unless TRACE_SAMPLER is set)   */
	kit_use(app, &kit_access_log);       /* one JSON line per request           */
	kit_use(app, &kit_metrics);          /* this service's own /metrics         */
	kit_use(app, &kit_identity_headers); /* X-User-Id/-Tier from the gateway    */

	kit_mount_operations(app);           /* GET /health, GET /metrics           */
	/* analytics_over_http() calls curl_global_init() and starts the sender
	 * thread: here, on main()'s thread, before the server starts. */
	url_shortener_mount(app, analytics_over_http(app)); /* /shorten, /expand,
	                                      * /r; clicks queued for analytics     */

	int status = kit_app_run(app);
	analytics_client_stop();             /* deliver what is queued (at most
	                                      * ANALYTICS_DRAIN_SECONDS), then stop */
	kit_app_free(app);
	return status;
}
