/*
 * phase3-advanced/main.c - Phase 3: the gateway grown up, and run three
 * times behind nginx.
 *
 * Put it beside phase2-gateway/main.c; the differences are the lesson:
 *   - kit_tracing opens a Jaeger span for every request and carries the
 *     trace to the services (uber-trace-id), so one trace shows the
 *     gateway, the url-shortener and analytics;
 *   - the route file (phase3-advanced/gateway.json) has API versions (/api/v1
 *     and /api/v2 reach different upstreams; an unknown version is a 404
 *     that lists the known ones) and a sticky canary split of v2;
 *   - RATE_LIMIT_STORE=memory swaps in Phase 1's in-process limiter, to
 *     show what three instances behind a load balancer do to it: each
 *     counts alone, so a caller gets three times the limit. The default,
 *     redis, counts once for all of them.
 */
#include <string.h>

#include <kit/gateway.h>
#include <kit/kit.h>

int main(void)
{
	struct kit_app *app = kit_app_new("gateway", 3000);
	struct kit_gateway_config *routes = kit_gateway_config_load(
		app, kit_env_string("GATEWAY_CONFIG", "phase3-advanced/gateway.json"));
	const char *counters = kit_env_string("RATE_LIMIT_STORE", "redis");
	bool stateful = strcmp(counters, "memory") == 0;

	if (!stateful && strcmp(counters, "redis") != 0)
		kit_app_fail(app, "RATE_LIMIT_STORE: \"%s\" is not redis or memory", counters);
	kit_app_use_event_loop(app);         /* as in Phase 2: a few loop threads       */

	kit_use(app, &kit_request_id);       /* X-Request-Id, passed on upstream        */
	kit_use(app, &kit_tracing);          /* NEW: server span; uber-trace-id onwards */
	kit_use(app, &kit_access_log);       /* one JSON line, with the trace id        */
	kit_use(app, &kit_metrics);
	kit_use(app, &kit_cors);
	kit_use(app, &kit_auth_jwt);
	kit_use(app, stateful ? &kit_rate_limit_memory  /* Phase 1's: wrong here, on purpose */
			      : &kit_rate_limit_redis); /* one count for every instance     */
	kit_use(app, &kit_response_cache);   /* one cache in Redis for all three        */

	kit_mount_operations(app);
	kit_gateway_mount(app, routes);      /* versions, splits, proxy (client spans)  */

	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
