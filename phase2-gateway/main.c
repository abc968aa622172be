/*
 * phase2-gateway/main.c - Phase 2: the gateway in front of three services.
 *
 * This file is the architecture. Put it beside phase1-monolith/main.c: the
 * middleware is the same list in the same order, but Redis now keeps the
 * rate-limit counters (so any number of gateways share one limit), and
 * where the monolith mounted the business code, the gateway mounts routes
 * that proxy to the services (phase2-gateway/gateway.json). The services
 * run the same handler code in their own processes (services/<name>/main.c)
 * and trust the identity the gateway passes on.
 *
 * request id -> access log -> metrics -> CORS -> JWT auth -> rate limit
 *            -> response cache (routes that say "cache") -> route -> proxy
 *               (pooled keep-alive connections, balanced over instances)
 */
#include <kit/gateway.h>
#include <kit/kit.h>

int main(void)
{
	struct kit_app *app = kit_app_new("gateway", 3000);
	struct kit_gateway_config *routes = kit_gateway_config_load(
		app, kit_env_string("GATEWAY_CONFIG", "phase2-gateway/gateway.json"));

	/* A gateway mostly waits - on clients, on Redis, on the services - so
	 * a few event-loop threads serve every connection, where civetweb
	 * would spend a thread on each (SERVER_CORE=threads brings that back). */
	kit_app_use_event_loop(app);

	kit_use(app, &kit_request_id);       /* X-Request-Id, passed on upstream       */
	kit_use(app, &kit_access_log);       /* one JSON line per request              */
	kit_use(app, &kit_metrics);          /* service label = the upstream           */
	kit_use(app, &kit_cors);             /* once, here, for every service          */
	kit_use(app, &kit_auth_jwt);         /* verified once; X-User-Id/-Tier upstream */
	kit_use(app, &kit_rate_limit_redis); /* shared by every gateway instance       */
	kit_use(app, &kit_response_cache);   /* repeated reads from Redis, not the service */

	kit_mount_operations(app);           /* GET /health (+ upstreams), /metrics    */
	kit_gateway_mount(app, routes);      /* /api/v1/... and /r/... -> services     */

	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
