/*
 * services/users - accounts: register, log in (a signed JWT), who am I.
 *
 * The same handler set runs inside the Phase 1 monolith and, from Phase 2
 * on, as its own process behind the gateway: it reads the caller from
 * req->user, which the monolith's JWT middleware or the service's
 * identity-header middleware fills.
 *
 * Routes:  POST /auth/register  {"username","password"}  -> 201
 *          POST /auth/login     {"username","password"}  -> 200 {"token",...}
 *          GET  /users/me       (authenticated)          -> 200 {"username","tier",...}
 */
#ifndef SERVICES_USERS_H
#define SERVICES_USERS_H

struct kit_app;

/* Reads JWT_* (signing), PASSWORD_PBKDF2_ITERATIONS and PREMIUM_USERS from
 * the environment and mounts the routes. A bad setting fails start-up
 * through kit_app_fail(). */
void users_mount(struct kit_app *app);

#endif
