/*
 * services/users/main.c - Phase 2: the users service as its own process.
 *
 * The same handler code the monolith mounts (services/users/users.c), alone
 * in a process on port 8083, behind the gateway. Put it beside
 * phase1-monolith/main.c: CORS, JWT verification and rate limiting are gone
 * from this chain, because the gateway does them once for every service;
 * in their place kit_identity_headers trusts the X-User-Id/X-User-Tier the
 * gateway passes on. That trust is only safe because the service listens
 * where clients cannot reach it: BIND_ADDRESS defaults to 127.0.0.1 (an
 * internal network in containers). The service still signs tokens at
 * login, so it needs JWT_SECRET, the same one the gateway verifies with.
 * The gateway's X-Request-Id is kept, so one id follows a request through
 * both access logs.
 *
 * With arguments it is an operator's command instead of a server:
 * `users grant-premium NAME` / `users revoke-premium NAME` set an account's
 * tier in the store (users_command()): premium is given by whoever runs the
 * service, never by whoever registers a name.
 */
#include <kit/kit.h>

#include "users/users.h"

int main(int argc, char **argv)
{
	if (argc > 1)
		return users_command(argc - 1, argv + 1);

	struct kit_app *app = kit_app_new("users", 8083);

	kit_use(app, &kit_request_id);       /* the gateway's X-Request-Id, kept    */
	kit_use(app, &kit_tracing);          /* the caller's trace continued (Phase 3;
	                                      * off unless TRACE_SAMPLER is set)   */
	kit_use(app, &kit_access_log);       /* one JSON line per request           */
	kit_use(app, &kit_metrics);          /* this service's own /metrics         */
	kit_use(app, &kit_identity_headers); /* X-User-Id/-Tier from the gateway    */

	kit_mount_operations(app);           /* GET /health, GET /metrics           */
	users_mount(app);                    /* /auth/register, /auth/login,
	                                      * /users/me                           */

	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
