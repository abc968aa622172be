/*
 * bench/gateway_bare.c - the Phase 2 gateway with no middleware at all: the
 * benchmark's "proxy only" scenario (bench/run.sh, scenario gateway-bare).
 *
 * Put it beside phase2-gateway/main.c: the same route file and the same
 * pooled libcurl proxy, but not one kit_use() line, so no request id, no
 * access log, no metrics, no CORS, no JWT and no rate limit. What this
 * binary costs per request is civetweb plus the proxy; the difference to
 * the real gateway is what the middleware chain costs.
 *
 * kit_mount_operations() is kept although it is not middleware: it only
 * adds GET /health (and /metrics) to the route table, so the harness can
 * poll /health for readiness like every other process. A request to a
 * proxied route never runs it.
 */
#include <kit/gateway.h>
#include <kit/kit.h>

int main(void)
{
	struct kit_app *app = kit_app_new("gateway", 3000);
	struct kit_gateway_config *routes = kit_gateway_config_load(
		app, kit_env_string("GATEWAY_CONFIG", "bench/gateway.bench.json"));

	kit_app_use_event_loop(app);         /* the same server core as the gateway */

	kit_mount_operations(app);           /* GET /health: readiness only       */
	kit_gateway_mount(app, routes);      /* the routes -> the pooled proxy    */

	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
