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

/* Reads JWT_* (signing) and PASSWORD_PBKDF2_ITERATIONS from the
 * environment and mounts the routes. A bad setting fails start-up through
 * kit_app_fail(), and so does PREMIUM_USERS, which is no longer read. */
void users_mount(struct kit_app *app);

/* The operator's commands, for `users <command> ...` (argv without the
 * program name): "grant-premium NAME" and "revoke-premium NAME" set the
 * tier of an existing account in the store REDIS_URL names (STORE=memory
 * is refused: no other process could see it). Prints what it did or why
 * not; returns the exit code: 0 done, 1 no such account or a store error,
 * 2 bad usage or setting. */
int users_command(int argc, char **argv);

#endif
