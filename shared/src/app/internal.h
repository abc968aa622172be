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

/* An IPv4 or IPv6 address as bytes (client_address.c). */
struct kit_ip {
	int family;                  /* AF_INET or AF_INET6 */
	unsigned char bytes[16];     /* 4 used for AF_INET  */
};

/* TRUSTED_PROXIES: the peers whose X-Forwarded-For is believed. */
struct kit_trusted_proxies {
	struct kit_ip list[KIT_MAX_TRUSTED_PROXIES];
	int count;
};

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
	struct kit_trusted_proxies trusted_proxies; /* TRUSTED_PROXIES      */

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

/* The client's address (client_address.c). kit_client_address_config
 * reads TRUSTED_PROXIES into app (0, or -1 after printing what is wrong);
 * kit_client_address_resolve writes req->client_ip from the peer and, when
 * the peer is trusted, every X-Forwarded-For line. The three below are the
 * parts, pure, for unit tests: kit_ip_parse reads len bytes of text as an
 * IPv4 or IPv6 address (inet_pton; nothing else: no port, no brackets);
 * kit_trusted_proxies_parse reads a comma-separated list (-1 with the
 * reason in error); kit_client_address_pick applies the rule to a peer
 * and an X-Forwarded-For list (NULL: none) and writes the address. */
int kit_client_address_config(struct kit_app *app);
void kit_client_address_resolve(struct kit_request *req, const char *peer);
bool kit_ip_parse(const char *text, size_t len, struct kit_ip *out);
int kit_trusted_proxies_parse(const char *text, struct kit_trusted_proxies *out,
			      char *error, size_t error_size);
void kit_client_address_pick(const struct kit_trusted_proxies *trusted,
			     const char *peer, const char *forwarded_for,
			     char *out, size_t out_size);

/* The type slug of a problem for status ("not-found"). */
const char *kit_problem_slug(int status);

/* /health's check of the store (operations.c). */
bool kit_store_health_check(struct kit_request *req, void *arg,
			    struct cJSON *check);

#endif
