/*
 * kit/wait.h - waiting without holding up the thread: what a middleware or
 * handler calls where it would otherwise block (src/server/thread.c).
 *
 * The same middleware runs on either server core (kit/app.h):
 *   - on a civetweb worker, one thread serves one request, so each of these
 *     simply blocks (poll(2), curl_easy_perform);
 *   - on an event-loop thread, one thread serves hundreds of requests, each
 *     on a coroutine of its own: these make the calling request yield, and
 *     the loop serves the others until the socket is ready, the transfer is
 *     done or the deadline passes.
 * A call that blocks in any other way (read(2) on a socket, hiredis's
 * redisCommand, sleep) stops every request of a loop thread. The loop
 * notices a request that holds the thread too long (LOOP_STALL_MS) and logs
 * it; code that must block belongs on SERVER_CORE=threads.
 *
 * Threads without a server core (a background sender, the trace reporter)
 * get the blocking behaviour.
 */
#ifndef KIT_WAIT_H
#define KIT_WAIT_H

#include <stddef.h>

#include <curl/curl.h>

/* Waits until fd is ready for events (POLLIN and/or POLLOUT) or timeout_ms
 * (>= 0) has passed. Returns 1 when ready (or in error: the next read or
 * write says which), 0 on timeout, -1 when the wait itself failed (errno). */
int kit_wait_fd(int fd, short events, long timeout_ms);

/* curl_easy_perform(easy), or on a loop thread the same transfer driven by
 * that thread's multi handle while the request yields. On a loop thread,
 * connections are then kept in the multi handle's cache, shared by every
 * request of that thread (CURLOPT_MAXCONNECTS is replaced by the loop's
 * limit, kit_loop_set_max_idle() in kit/app.h). */
CURLcode kit_http_perform(CURL *easy);

/* A request waiting for another request of the same loop thread (a reply
 * read off a shared connection by whichever request reads first). */
struct kit_waiter;
/* The calling request, or NULL on a thread that blocks (nothing to wait
 * for there: it serves one request at a time). */
struct kit_waiter *kit_waiter_self(void);
/* Sleeps until kit_waiter_wake() or timeout_ms. Returns 1 when woken, 0
 * on timeout. Only for a request whose kit_waiter_self() is not NULL. */
int kit_waiter_sleep(long timeout_ms);
/* Wakes waiter if it sleeps; it runs again once the loop gets to it. */
void kit_waiter_wake(struct kit_waiter *waiter);

/* Runs fn(arg) at the end of the loop's current round, after every
 * request that could run has run and before the loop waits again: work
 * that many requests share is then done once (one write of the Redis
 * commands of the whole round). On a blocking thread fn runs at once. The
 * caller sees to it that it asks once per round, and that arg lives until
 * then. */
void kit_at_round_end(void (*fn)(void *arg), void *arg);

/* Writes data (whole lines) to standard output: at once on a blocking
 * thread; on a loop thread at the end of the loop's current round, in one
 * write(2) with the other lines of that round. Lines are never split or
 * interleaved; one that cannot be buffered is written at once. */
void kit_write_stdout(const char *data, size_t len);

#endif
