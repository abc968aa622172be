/*
 * redis_io.c - hiredis on a non-blocking socket, waiting with kit_wait_fd()
 * so that on an event-loop thread only the calling request waits
 * (kit/redis_io.h).
 *
 * A command is hiredis's own steps, spelled out: append it to the output
 * buffer, write until the buffer is empty (waiting for POLLOUT if the
 * socket is full), then read until the reader has a whole reply (waiting
 * for POLLIN in between). One deadline covers the whole command.
 *
 * The pipe (second half) shares one connection between the requests of a
 * thread: commands are written as they come, and replies, which Redis
 * sends in the same order, are handed out in that order from a queue of
 * waiting calls. The first call in the queue reads for everyone; when its
 * own reply is there it wakes the next one to take over.
 */
#include <errno.h>
#include <stdlib.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/sds.h>

#include "kit/wait.h"
#include "kit/redis_io.h"
#include "kit/request.h"

/* Milliseconds left until deadline_ns (at least 0). */
static long left_ms(uint64_t deadline_ns)
{
	uint64_t now = kit_now_ns();

	return now >= deadline_ns ? 0 : (long)((deadline_ns - now + 999999) / 1000000);
}

static void fail(redisContext *c, const char *why)
{
	c->err = REDIS_ERR_IO;
	snprintf(c->errstr, sizeof(c->errstr), "%s", why);
}

redisContext *kit_redis_connect(const char *host, int port, long timeout_ms,
				char *error, size_t size)
{
	redisContext *c = redisConnectNonBlock(host, port);
	int problem = 0;
	socklen_t length = sizeof(problem);
	int ready;

	if (c == NULL) {
		snprintf(error, size, "out of memory");
		return NULL;
	}
	if (c->err) {
		snprintf(error, size, "%s", c->errstr);
		redisFree(c);
		return NULL;
	}
	/* The TCP handshake is under way: writable means it is done. */
	ready = kit_wait_fd(c->fd, POLLOUT, timeout_ms);
	if (ready <= 0) {
		snprintf(error, size, "%s", ready == 0 ? "connect timed out" : strerror(errno));
		redisFree(c);
		return NULL;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &problem, &length) != 0 || problem != 0) {
		snprintf(error, size, "%s", strerror(problem != 0 ? problem : errno));
		redisFree(c);
		return NULL;
	}
	return c;
}

/* Sends one command (argc arguments, each argv[i] of argvlen[i] bytes) on
 * a context no one else uses and waits at most timeout_ms for its reply.
 * Returns the reply (free it with freeReplyObject), or NULL when the
 * connection failed or timed out: c->errstr says why, and c must then be
 * freed. (The pipe uses it for SELECT, before others can share c.) */
static redisReply *command_alone(redisContext *c, long timeout_ms, int argc,
				 const char **argv, const size_t *argvlen)
{
	uint64_t deadline_ns = kit_now_ns() + (uint64_t)timeout_ms * 1000000u;
	void *reply = NULL;
	int done = 0;

	if (redisAppendCommandArgv(c, argc, argv, argvlen) != REDIS_OK)
		return NULL;
	/* 1. Write the command out. */
	for (;;) {
		if (redisBufferWrite(c, &done) != REDIS_OK)
			return NULL;
		if (done)
			break;
		if (kit_wait_fd(c->fd, POLLOUT, left_ms(deadline_ns)) <= 0) {
			fail(c, "timed out sending");
			return NULL;
		}
	}
	/* 2. Read until a whole reply is there. */
	for (;;) {
		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
			return NULL;
		if (reply != NULL)
			return reply;
		if (kit_wait_fd(c->fd, POLLIN, left_ms(deadline_ns)) <= 0) {
			fail(c, "timed out waiting for the reply");
			return NULL;
		}
		if (redisBufferRead(c) != REDIS_OK)
			return NULL;
	}
}

/* ---- one connection, pipelined ---- */

/* A command waiting for its reply; lives on its request's stack. */
struct pipe_call {
	struct kit_waiter *waiter;   /* to wake (NULL on a civetweb worker) */
	redisReply *reply;
	bool done;                   /* reply set, or the connection failed */
	struct pipe_call *next;
};

struct kit_redis_pipe {
	char host[256];
	int port, db;
	long timeout_ms;
	redisContext *c;             /* NULL: connect on next use            */
	bool connecting;             /* a request is connecting for everyone */
	long connect_attempts;       /* how many were made                   */
	bool flushing;               /* a request is writing the output      */
	bool flush_at_round_end;     /* kit_at_round_end(pipe_round_flush)   */
	bool reading;                /* the head of the queue is reading     */
	long replies;                /* replies read on this connection      */
	struct pipe_call *head, *tail;
};

struct kit_redis_pipe *kit_redis_pipe_new(const char *host, int port, int db,
					  long timeout_ms)
{
	struct kit_redis_pipe *pipe = calloc(1, sizeof(*pipe));

	if (pipe == NULL)
		return NULL;
	snprintf(pipe->host, sizeof(pipe->host), "%s", host);
	pipe->port = port;
	pipe->db = db;
	pipe->timeout_ms = timeout_ms;
	return pipe;
}

void kit_redis_pipe_free(struct kit_redis_pipe *pipe)
{
	if (pipe == NULL)
		return;
	if (pipe->c != NULL)
		redisFree(pipe->c);
	free(pipe);
}

/* The connection failed: every waiting call fails with it (their replies
 * would never come), and the next command connects again. */
static void pipe_fail(struct kit_redis_pipe *pipe, const char *why)
{
	fprintf(stderr, "redis %s:%d: %s\n", pipe->host, pipe->port, why);
	for (struct pipe_call *call = pipe->head; call != NULL; call = call->next) {
		call->done = true;
		if (call->waiter != NULL)
			kit_waiter_wake(call->waiter);
	}
	pipe->head = pipe->tail = NULL;
	pipe->reading = false;
	if (pipe->c != NULL) {
		redisFree(pipe->c);
		pipe->c = NULL;
	}
}

/* Connects (and SELECTs the database) unless connected. Requests that
 * find another one connecting wait for it. Returns 0, or -1 (reason on
 * stderr). */
static int pipe_connect(struct kit_redis_pipe *pipe, uint64_t deadline_ns)
{
	char error[128];
	redisContext *c;
	long attempts = pipe->connect_attempts;

	while (pipe->connecting) {
		if (kit_now_ns() >= deadline_ns)
			return -1;
		kit_waiter_sleep(1); /* rare: only while a connection is made */
	}
	if (pipe->c != NULL)
		return 0;
	/* The attempt we waited for failed: Redis is not there. Trying again
	 * at once, one request after another, would only repeat it. */
	if (pipe->connect_attempts != attempts)
		return -1;
	pipe->connecting = true;
	pipe->connect_attempts++;
	c = kit_redis_connect(pipe->host, pipe->port, left_ms(deadline_ns), error, sizeof(error));
	if (c != NULL && pipe->db != 0) {
		char db[16];
		const char *argv[] = { "SELECT", db };
		size_t argv_len[] = { 6, 0 };
		redisReply *reply;

		argv_len[1] = (size_t)snprintf(db, sizeof(db), "%d", pipe->db);
		reply = command_alone(c, left_ms(deadline_ns), 2, argv, argv_len);
		if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
			snprintf(error, sizeof(error), "SELECT %s failed", db);
			redisFree(c);
			c = NULL;
		}
		freeReplyObject(reply);
	}
	pipe->connecting = false;
	if (c == NULL) {
		fprintf(stderr, "redis %s:%d: %s\n", pipe->host, pipe->port, error);
		return -1;
	}
	pipe->c = c;
	pipe->replies = 0;
	return 0;
}

/* Writes the output buffer out, unless another request is doing that
 * (it writes ours too). Returns 0, or -1 after failing the pipe. */
static int pipe_flush(struct kit_redis_pipe *pipe, uint64_t deadline_ns)
{
	int done = 0;

	if (pipe->flushing)
		return 0;
	pipe->flushing = true;
	while (pipe->c != NULL) {
		if (redisBufferWrite(pipe->c, &done) != REDIS_OK) {
			pipe->flushing = false;
			pipe_fail(pipe, pipe->c->errstr);
			return -1;
		}
		if (done)
			break;
		redisContext *writing = pipe->c;

		if (kit_wait_fd(writing->fd, POLLOUT, left_ms(deadline_ns)) <= 0) {
			pipe->flushing = false;
			if (pipe->c == writing) /* not failed by another meanwhile */
				pipe_fail(pipe, "timed out sending");
			return -1;
		}
		if (pipe->c != writing)
			break;
	}
	pipe->flushing = false;
	return pipe->c != NULL ? 0 : -1;
}

/* At the end of a loop round: the round's commands, in one write. What
 * the socket does not take now is written by the request reading the
 * replies (pipe_read_for), which may wait for the socket. */
static void pipe_round_flush(void *arg)
{
	struct kit_redis_pipe *pipe = arg;
	int done = 0;

	pipe->flush_at_round_end = false;
	if (pipe->c != NULL && !pipe->flushing && redisBufferWrite(pipe->c, &done) != REDIS_OK)
		pipe_fail(pipe, pipe->c->errstr);
}

/* Reads replies for the queue until call's has come. Returns 0, or -1
 * after failing the pipe. */
static int pipe_read_for(struct kit_redis_pipe *pipe, struct pipe_call *call,
			 uint64_t deadline_ns)
{
	pipe->reading = true;
	while (!call->done) {
		void *reply = NULL;

		if (redisGetReplyFromReader(pipe->c, &reply) != REDIS_OK) {
			pipe_fail(pipe, pipe->c->errstr);
			return -1;
		}
		if (reply != NULL) {
			/* Redis answers in order: this is the first call's. */
			struct pipe_call *first = pipe->head;

			pipe->head = first->next;
			if (pipe->head == NULL)
				pipe->tail = NULL;
			first->reply = reply;
			first->done = true;
			pipe->replies++;
			if (first != call && first->waiter != NULL)
				kit_waiter_wake(first->waiter);
			continue;
		}
		/* Commands the round's write left over (a full socket) are
		 * written from here, as the socket takes them. */
		bool unsent = !pipe->flush_at_round_end && sdslen(pipe->c->obuf) > 0;
		int ready = kit_wait_fd(pipe->c->fd, unsent ? POLLIN | POLLOUT : POLLIN,
					left_ms(deadline_ns));
		int done;

		/* Another request may have failed the pipe meanwhile (and a
		 * new connection may be in use): then ours is done, and the
		 * pipe is no longer ours to touch. */
		if (call->done)
			return call->reply != NULL ? 0 : -1;
		if (ready <= 0) {
			pipe_fail(pipe, "timed out waiting for a reply");
			return -1;
		}
		if (unsent && redisBufferWrite(pipe->c, &done) != REDIS_OK) {
			pipe_fail(pipe, pipe->c->errstr);
			return -1;
		}
		if (redisBufferRead(pipe->c) != REDIS_OK) {
			pipe_fail(pipe, pipe->c->errstr);
			return -1;
		}
	}
	pipe->reading = false;
	/* Hand the reading over to the next in line. */
	if (pipe->head != NULL && pipe->head->waiter != NULL)
		kit_waiter_wake(pipe->head->waiter);
	return 0;
}

redisReply *kit_redis_pipe_command(struct kit_redis_pipe *pipe, int argc,
				   const char **argv, const size_t *argvlen,
				   bool *stale)
{
	uint64_t deadline_ns = kit_now_ns() + (uint64_t)pipe->timeout_ms * 1000000u;
	struct pipe_call call = { .waiter = kit_waiter_self() };
	long replies_before;

	*stale = false;
	if (pipe_connect(pipe, deadline_ns) != 0)
		return NULL;
	replies_before = pipe->replies;
	if (redisAppendCommandArgv(pipe->c, argc, argv, argvlen) != REDIS_OK) {
		pipe_fail(pipe, "out of memory");
		return NULL;
	}
	if (pipe->tail != NULL)
		pipe->tail->next = &call;
	else
		pipe->head = &call;
	pipe->tail = &call;
	if (call.waiter != NULL) {
		/* On a loop thread: written with the round's other commands. */
		if (!pipe->flush_at_round_end) {
			pipe->flush_at_round_end = true;
			kit_at_round_end(pipe_round_flush, pipe);
		}
	} else if (pipe_flush(pipe, deadline_ns) != 0) {
		*stale = replies_before > 0;
		return NULL;
	}
	/* Wait for the reply: read it ourselves when first in line and no
	 * one else reads, else sleep until the reader hands it over (or
	 * hands the reading over). */
	while (!call.done) {
		if (!pipe->reading && pipe->head == &call) {
			if (pipe_read_for(pipe, &call, deadline_ns) != 0)
				break;
			continue;
		}
		if (call.waiter == NULL || kit_waiter_sleep(left_ms(deadline_ns)) == 0) {
			if (!call.done)
				pipe_fail(pipe, "timed out waiting in line for a reply");
			break;
		}
	}
	if (call.reply == NULL)
		*stale = replies_before > 0;
	return call.reply;
}

redisReply *kit_redis_pipe_call(struct kit_redis_pipe *pipe, int argc, const char **argv,
				const size_t *argvlen)
{
	bool stale = false;
	redisReply *reply = kit_redis_pipe_command(pipe, argc, argv, argvlen, &stale);

	if (reply == NULL && stale)
		reply = kit_redis_pipe_command(pipe, argc, argv, argvlen, &stale);
	return reply;
}
