/*
 * server/core.h - the contract between the app and a server core.
 *
 * The kit has two server cores: civetweb's thread per connection
 * (civetweb.c) and a few epoll threads with a coroutine per request
 * (event_loop.c, loop_connection.c). The app above them (src/app/: the
 * chain, the routes, reading the request, sending the response) is written
 * once and never asks which core it runs on. As in redis's connection.h,
 * it reaches the core only through three tables of operations:
 *
 *   struct kit_server     per process: start the threads, serve until a
 *                         stop signal, stop gracefully;
 *   struct kit_transport  per request: read the body, send the response,
 *                         say whether the connection lives on after it;
 *   struct kit_waits      per thread: how code on this thread waits for a
 *                         socket, a transfer or another request (kit/wait.h).
 *
 * And a core reaches the app only through one function, the serve function
 * it is handed in struct kit_server_config: the core parses a request,
 * fills the first block of a struct kit_request (kit/request.h) and calls
 * serve(app, req); serve runs the chain and answers through the transport.
 * A request the core refuses before the app could see it (malformed head,
 * too slow) goes through serve too, with req->refusal set, so it is logged
 * and counted like any other.
 *
 * The HTTP policy (limits and timeouts) is one struct, read once from the
 * environment (http_policy.c), and both cores apply the same one.
 */
#ifndef KIT_SERVER_CORE_H
#define KIT_SERVER_CORE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

struct kit_request;
struct kit_waiter;

/* ---- the HTTP policy: both cores, one table (http_policy.c) ---- */

struct kit_http_policy {
	long max_head_bytes;         /* MAX_HEADER_BYTES: request line and headers; 431 */
	long max_body_bytes;         /* MAX_BODY_BYTES: a request body; 413            */
	long request_timeout_ms;     /* REQUEST_TIMEOUT_MS: head and body must arrive
	                              * within this of the request's first byte; 408  */
	long keep_alive_timeout_ms;  /* KEEP_ALIVE_TIMEOUT_MS: idle between requests,
	                              * and a client that stops reading an answer     */
	long listen_backlog;         /* LISTEN_BACKLOG: connections the kernel queues  */
	long max_connections;        /* MAX_CONNECTIONS: open client connections per
	                              * process; at the cap, accepting pauses          */
};

/* Reads the policy from the environment (docs/configuration.md lists each
 * setting, its default and its bounds). Returns 0, or -1 after printing
 * which setting is wrong. */
int kit_http_policy_from_env(struct kit_http_policy *policy);

/* ---- per-thread resources (thread.c) ---- */

#define KIT_MAX_THREAD_RESOURCES 8

/* A resource each serving thread gets its own of (kit_app_thread_resource):
 * create(arg) on first use, destroy(resource) when the thread ends. */
struct kit_thread_resource_entry {
	void *(*create)(void *arg);
	void (*destroy)(void *resource);
	void *arg;
};

/* ---- what the app hands a core ---- */

/* Runs one request through the app: the chain, the handler, the finish
 * hooks, the answer through req->transport. Returns when the request is
 * done (on a loop thread the request may have yielded inside). */
typedef void (*kit_serve_fn)(void *app, struct kit_request *req);

struct kit_server_config {
	const char *name;            /* the app's name, for log lines            */
	char bind_address[64];       /* BIND_ADDRESS: an IPv4 address            */
	long port;                   /* PORT                                     */
	struct kit_http_policy policy;
	long worker_threads;         /* civetweb: WORKER_THREADS                 */
	long loop_threads;           /* event loop: LOOP_THREADS                 */
	long loop_max_requests;      /* event loop: LOOP_MAX_REQUESTS running at
	                              * once per loop thread                     */
	long loop_stall_ms;          /* event loop: LOOP_STALL_MS, a request that
	                              * holds its thread longer is logged        */
	long loop_max_idle;          /* event loop: idle upstream connections per
	                              * loop thread (0: libcurl's default)       */
	const struct kit_thread_resource_entry *resources;
	int resource_count;
	kit_serve_fn serve;          /* the one way up into the app              */
	void *app;                   /* its first argument                       */
};

/* ---- the three tables ---- */

/* A server core. */
struct kit_server {
	const char *name;            /* "civetweb" or "event loop"               */
	/* True when one thread serves many requests at once, each yielding at
	 * its waits: then nothing on the request path may block, and the app
	 * refuses to start with a middleware or route not marked loop_safe. */
	bool shares_threads;
	/* Reads the core's own settings (WORKER_THREADS, LOOP_THREADS, ...)
	 * into config. Returns 0, or -1 after printing what is wrong. */
	int (*configure)(struct kit_server_config *config);
	/* Listens, serves until one of stop_signals arrives, then stops
	 * accepting, lets requests in flight finish (within a bound) and
	 * returns: 0 after a clean stop, 1 when it could not start. */
	int (*run)(const struct kit_server_config *config, const sigset_t *stop_signals);
};

/* How a request's bytes move: one table per core, req->transport. */
struct kit_transport {
	/* Reads up to size bytes of the request body, decoded (chunked or
	 * not), into buf. Returns the bytes read; 0 at the end of the body
	 * (or when the client stopped sending early: the caller compares with
	 * Content-Length); -1 with *status set when it cannot go on: 400 bad
	 * chunked framing, 408 the body did not arrive in time, 413 it is
	 * over the policy's limit. The first call answers
	 * "Expect: 100-continue" with 100 Continue, so a body is only invited
	 * once the app has decided to read it. */
	long (*read_body)(struct kit_request *req, char *buf, size_t size, int *status);
	/* Whether the connection can carry another request after this
	 * response: the client wants it, and the body is read or absent. */
	bool (*keeps_alive)(const struct kit_request *req);
	/* Sends len bytes of the response (all of it: the head and the body
	 * in one call). close_after: close the connection once they are out. */
	void (*send)(struct kit_request *req, const char *data, size_t len, bool close_after);
};

/* How the code on a thread waits (kit/wait.h): one table per kind of
 * thread. kit_blocking_waits is for civetweb workers and for threads no
 * core started; the event loop has its own. */
struct kit_waits {
	int (*fd)(int fd, short events, long timeout_ms);
	CURLcode (*http)(CURL *easy);
	struct kit_waiter *(*self)(void);
	int (*sleep)(long timeout_ms);
	void (*wake)(struct kit_waiter *waiter);
	void (*at_round_end)(void (*fn)(void *arg), void *arg);
	void (*write_stdout)(const char *data, size_t len);
};
extern const struct kit_waits kit_blocking_waits;

extern const struct kit_server kit_civetweb_server;   /* civetweb.c   */
extern const struct kit_server kit_event_loop_server; /* event_loop.c */

/* ---- the thread a core serves on (thread.c) ---- */

struct kit_thread {
	const struct kit_waits *waits;
	const struct kit_thread_resource_entry *entries;
	int entry_count;
	void *resources[KIT_MAX_THREAD_RESOURCES];
};

/* Makes thread the calling thread's, waiting through waits, with the
 * app's resource table (created on first use). */
void kit_thread_begin(struct kit_thread *thread, const struct kit_server_config *config,
		      const struct kit_waits *waits);
/* Destroys the thread's resources, on the thread that owned them. */
void kit_thread_end(struct kit_thread *thread);
/* The calling thread's resource in slot, created on first use; NULL when
 * the thread is not a core's or create() failed (it is asked again). */
void *kit_thread_slot(int slot);

#endif
