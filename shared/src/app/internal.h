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

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kit/app.h"
#include "kit/store.h"

#define KIT_MAX_MIDDLEWARE 16
#define KIT_MAX_ROUTES 64
#define KIT_MAX_HEALTH_CHECKS 8
#define KIT_MAX_TRUSTED_PROXIES 16

#define KIT_MAX_THREAD_RESOURCES 8

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

struct kit_thread_resource_entry {
	void *(*create)(void *arg);
	void (*destroy)(void *resource);
	void *arg;
};

struct kit_app {
	const char *name;
	bool failed;                 /* a config error: kit_app_run refuses */
	uint64_t started_ns;

	/* Server settings (environment, see kit_app_new). */
	char bind_address[64];
	char instance_id[64];        /* INSTANCE_ID: sent as X-Instance       */
	long port;
	long worker_threads;         /* civetweb: one per open connection     */
	bool event_loop;             /* kit_app_use_event_loop(): the second core */
	long loop_threads;           /* LOOP_THREADS                          */
	long loop_max_requests;      /* LOOP_MAX_REQUESTS: running per thread */
	long loop_max_idle;          /* idle upstream connections per loop    */
	long max_body;
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

/* The state a worker thread owns (created by civetweb's init_thread, freed
 * by exit_thread): one pointer per registered resource, created on first
 * use (kit_thread_resource). */
struct kit_thread {
	const struct kit_app *app;
	void *resources[KIT_MAX_THREAD_RESOURCES];
};

/* Frees a thread's resources (each one's destroy), on the thread that
 * owned them, when it exits. */
void kit_thread_release(struct kit_thread *thread);

/* Runs one request through the app: the route, the chain, the handler and
 * the finish hooks; then frees what the request allocated. The caller has
 * filled app, the transport (conn, or loop_conn and http), method, path,
 * query, start_ns and the body fields; peer is the socket's address.
 * Returns the status sent. Both server cores call it. */
int kit_app_serve(struct kit_request *req, const char *peer);

/* The event-loop core (event_loop.c, loop_connection.c). kit_loop_run
 * serves until one of stop_signals arrives and returns the exit code;
 * kit_loop_send queues a response's bytes on the request's connection and
 * sends what the socket takes (close_after: close the connection once it
 * is out); kit_loop_thread is the calling loop thread's resources. */
int kit_loop_run(struct kit_app *app, const sigset_t *stop_signals);
/* The civetweb core (civetweb.c): serves until one of stop_signals. */
int kit_civetweb_run(struct kit_app *app, const sigset_t *stop_signals);
void kit_loop_send(struct kit_request *req, const char *data, size_t len,
		   bool close_after);
struct kit_thread *kit_loop_thread(struct kit_request *req);

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
