/*
 * kit/event_loop.h - the kit's second server core: a few event-loop
 * threads, each serving many connections (src/server/event_loop.c, and
 * src/server/loop_connection.c for the HTTP of one connection).
 *
 * civetweb, the first core, gives every open connection a thread of its
 * own: simple, and right for the services, whose handlers compute (PBKDF2)
 * or wait on their store. A gateway mostly waits: on the client, on Redis,
 * on the upstream. With a thread per connection each wait is a sleep and a
 * wake-up, three per request, and each idle keep-alive connection holds a
 * thread's memory. On an event loop one thread waits on all of them at
 * once (epoll), the way nginx and Envoy do (docs/performance.md has the
 * numbers).
 *
 * The middleware and handlers are the same code on either core. Each
 * request runs on a coroutine of its own with a small stack; where the
 * code would block, it calls one of the two functions below, which on a
 * loop thread let the coroutine yield until its socket is ready while the
 * loop serves other requests, and on a civetweb worker simply block.
 */
#ifndef KIT_EVENT_LOOP_H
#define KIT_EVENT_LOOP_H

#include <curl/curl.h>

struct kit_app;

/* Makes kit_app_run() serve with LOOP_THREADS event-loop threads (default:
 * one per CPU) instead of civetweb's thread per connection, unless
 * SERVER_CORE=threads says otherwise. Call before kit_app_run(). */
void kit_app_use_event_loop(struct kit_app *app);

/* Waits until fd is ready for events (POLLIN and/or POLLOUT) or timeout_ms
 * (>= 0) has passed. Returns 1 when ready (or in error: the next read or
 * write says which), 0 on timeout, -1 when the wait itself failed (errno).
 * On a loop thread only the calling request waits. */
int kit_wait_fd(int fd, short events, long timeout_ms);

/* curl_easy_perform(easy), or on a loop thread the same transfer driven by
 * that thread's multi handle while the request yields. On a loop thread,
 * connections are then kept in the multi handle's cache, shared by every
 * request of that thread (CURLOPT_MAXCONNECTS is replaced by the loop's
 * limit, kit_loop_set_max_idle()). */
CURLcode kit_http_perform(CURL *easy);

/* A request waiting for another request of the same loop thread (a reply
 * read off a shared connection by whichever request reads first). */
struct kit_waiter;
/* The calling request, or NULL on a civetweb worker (nothing to wait for
 * there: a worker serves one request at a time). */
struct kit_waiter *kit_waiter_self(void);
/* Sleeps until kit_waiter_wake() or timeout_ms. Returns 1 when woken, 0
 * on timeout. Only for a request on a loop thread (kit_waiter_self() !=
 * NULL). */
int kit_waiter_sleep(long timeout_ms);
/* Wakes waiter if it sleeps; it runs again once the loop gets to it. */
void kit_waiter_wake(struct kit_waiter *waiter);

/* Runs fn(arg) at the end of the loop's current round, after every
 * request that could run has run and before the loop waits again: work
 * that many requests share is then done once (one write of the Redis
 * commands of the whole round). On a civetweb worker, or outside a
 * request, fn runs at once. The caller sees to it that it asks once per
 * round, and that arg lives until then. */
void kit_at_round_end(void (*fn)(void *arg), void *arg);

/* Writes data (whole lines) to standard output: at once on a civetweb
 * worker; on a loop thread at the end of the loop's current round, in one
 * write(2) with the other lines of that round (an access log line per
 * request would otherwise be a system call per request). Lines are never
 * split or interleaved; one that cannot be buffered is written at once. */
void kit_write_stdout(const char *data, size_t len);

/* How many idle connections each loop thread's multi handle keeps (libcurl
 * default otherwise). Call before kit_app_run(). */
void kit_loop_set_max_idle(struct kit_app *app, long connections);

#endif
