/*
 * internal.h - what the library's own files share and nobody else sees: the
 * app struct (read by the dispatcher, the operations endpoints and the
 * middleware that need the app's settings) and per-thread state.
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

#define KIT_MAX_MIDDLEWARE 16
#define KIT_MAX_ROUTES 64
#define KIT_MAX_HEALTH_CHECKS 8
#define KIT_MAX_TRUSTED_PROXIES 16

struct kit_route_entry {
	const char *method;
	const char *pattern;
	kit_handler_fn handler;
	enum kit_access access;
};

struct kit_health_entry {
	const char *name;
	kit_health_check_fn check;
};

struct kit_app {
	const char *name;
	bool failed;                 /* a config error: kit_app_run refuses */
	uint64_t started_ns;

	/* Server settings (environment, see kit_app_new). */
	char bind_address[64];
	long port;
	long worker_threads;
	long max_body;
	char trusted_proxies[KIT_MAX_TRUSTED_PROXIES][48];
	int trusted_proxy_count;

	const struct kit_middleware *middleware[KIT_MAX_MIDDLEWARE];
	void *middleware_state[KIT_MAX_MIDDLEWARE];
	int middleware_count;

	struct kit_route_entry routes[KIT_MAX_ROUTES];
	int route_count;

	struct kit_health_entry health[KIT_MAX_HEALTH_CHECKS];
	int health_count;

	struct kit_store_config store_config;
	bool store_config_loaded;
};

/* The state a worker thread owns (created by civetweb's init_thread, freed
 * by exit_thread): its own store connection, opened on first use. */
struct kit_thread {
	struct kit_store *store;
};

/* Writes a problem body for status without going through a request (used
 * by the dispatcher for requests it cannot build a context for). */
const char *kit_problem_slug(int status);

#endif
