/*
 * services/notifications/main.c - the notifications service, Phase 2 and 3:
 * the kit's fourth service, and the worked example of adding one.
 *
 * The same chain as services/users/main.c: the gateway has done CORS, auth
 * and rate limiting, so the service trusts the X-User-Id it passes on
 * (kit_identity_headers) and listens where only the gateway and the other
 * services reach it (BIND_ADDRESS: 127.0.0.1, an internal network in
 * containers). What it takes to add a service to the kit, every step, is
 * in docs/phase2.md ("Adding a service: notifications").
 */
#include <kit/kit.h>

#include "notifications/notifications.h"

int main(void)
{
	struct kit_app *app = kit_app_new("notifications", 8087);

	kit_use(app, &kit_request_id);       /* the caller's X-Request-Id, kept     */
	kit_use(app, &kit_tracing);          /* the caller's trace continued (Phase 3;
	                                      * off unless TRACE_SAMPLER is set)   */
	kit_use(app, &kit_access_log);       /* one JSON line per request           */
	kit_use(app, &kit_metrics);          /* this service's own /metrics         */
	kit_use(app, &kit_identity_headers); /* X-User-Id/-Tier from the gateway    */

	kit_mount_operations(app);           /* GET /health, GET /metrics           */
	notifications_mount(app);            /* GET /notifications: the caller's    */
	notifications_mount_internal(app);   /* POST /internal/notifications: from
	                                      * other services (analytics)          */

	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
