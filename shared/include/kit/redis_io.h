/*
 * kit/redis_io.h - hiredis calls that wait without holding up the thread
 * (src/store/redis_io.c).
 *
 * hiredis's blocking API sleeps in read(2) until Redis answers. That is
 * fine on a civetweb worker, which serves one request, and wrong on an
 * event-loop thread, which serves hundreds: every one of them would wait
 * for this request's Redis round trip. These two functions use hiredis on
 * a non-blocking socket and wait with kit_wait_fd() (kit/wait.h):
 * on a loop thread only the calling request waits; on a civetweb worker
 * it is the same blocking call as before, with a timeout.
 *
 * A context is used by one request at a time (hiredis contexts are not
 * thread-safe, and replies come back in order): a loop thread keeps a
 * small pool of them, one per request waiting on Redis at once.
 */
#ifndef KIT_REDIS_IO_H
#define KIT_REDIS_IO_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

/* Connects to host:port within timeout_ms. Returns a connected context,
 * or NULL after writing the reason (at most size bytes) into error.
 * Free it with redisFree(). */
redisContext *kit_redis_connect(const char *host, int port, long timeout_ms,
				char *error, size_t size);

/*
 * One connection shared by every request of a thread, pipelined: each
 * request appends its command and waits for its reply, and whichever
 * request is first in line reads the replies off the socket for all of
 * them, in order. On a loop thread with 50 requests waiting on Redis that
 * is one write and one read for many commands, on Redis's side too, where
 * a connection each would cost 50 of both. On a civetweb worker there is
 * only ever one request in line, and it is a plain blocking call.
 *
 * Threads: a pipe belongs to one thread (a per-thread resource).
 */
struct kit_redis_pipe;

/* A pipe to host:port, database db (SELECT after connecting), with
 * timeout_ms for connecting and for each command. It connects on first
 * use, and again after a failure. NULL when out of memory. */
struct kit_redis_pipe *kit_redis_pipe_new(const char *host, int port, int db,
					  long timeout_ms);
void kit_redis_pipe_free(struct kit_redis_pipe *pipe);

/* Sends one command and waits for its reply. Returns the reply (free it
 * with freeReplyObject), or NULL when Redis could not be reached, the
 * connection failed or the reply did not come in time; the reason is then
 * on stderr and every other command waiting on the connection fails with
 * it. *stale is set when the failed connection had answered before
 * (Redis may have restarted since): the caller may then try once more,
 * on a new connection. */
redisReply *kit_redis_pipe_command(struct kit_redis_pipe *pipe, int argc,
				   const char **argv, const size_t *argvlen,
				   bool *stale);

/* kit_redis_pipe_command(), and once more on a new connection when the
 * failed one had answered before: without that, every thread's first
 * command after a Redis restart would fail and Redis would seem down for
 * as long as the caller's back-off. NULL when Redis cannot be reached. */
redisReply *kit_redis_pipe_call(struct kit_redis_pipe *pipe, int argc, const char **argv,
				const size_t *argvlen);

#endif
