/*
 * internal.h - what the library's own files share and nobody else sees: the
 * app struct (read by the dispatcher, the operations endpoints and the
 * middleware that need the app's settings).
 *
 * Nothing here is part of the kit's API; a phase or a service includes only
 * the kit/ headers.
 */
#ifndef KIT_INTERNAL_H
#define KIT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kit/app.h"
#include "kit/store.h"
#include "server/core.h"

#define KIT_MAX_MIDDLEWARE 16
#define KIT_MAX_ROUTES 64
#define KIT_MAX_HEALTH_CHECKS 8
#define KIT_MAX_TRUSTED_PROXIES 16

struct kit_health_entry {
	const char *name;
	kit_health_check_fn check;
	void *arg;
	bool critical;               /* failing: 503 rather than "degraded" */
};

struct kit_app {
	const char *name;
	bool failed;                 /* a config error: kit_app_run refuses */
	uint64_t started_ns;

	/* The server core and what it is given (kit_app_new,
	 * kit_app_use_event_loop): address, port, the HTTP policy, thread
	 * counts, the per-thread resources, the serve function. */
	const struct kit_server *server;
	struct kit_server_config server_config;

	char instance_id[64];        /* INSTANCE_ID: sent as X-Instance       */
	char trusted_proxies[KIT_MAX_TRUSTED_PROXIES][48];
	int trusted_proxy_count;

	const struct kit_middleware *middleware[KIT_MAX_MIDDLEWARE];
	void *middleware_state[KIT_MAX_MIDDLEWARE];
	int middleware_count;

	struct kit_route_spec routes[KIT_MAX_ROUTES];
	int route_count;

	struct kit_thread_resource_entry resources[KIT_MAX_THREAD_RESOURCES];
	int resource_count;
	int store_slot;              /* the store is resource 0 */

	struct kit_health_entry health[KIT_MAX_HEALTH_CHECKS];
	int health_count;

	struct kit_store_config store_config;
	bool uses_store;             /* kit_app_use_store() was called */
};

/* The type slug of a problem for status ("not-found"). */
const char *kit_problem_slug(int status);

/* /health's check of the store (operations.c). */
bool kit_store_health_check(struct kit_request *req, void *arg,
			    struct cJSON *check);

#endif
