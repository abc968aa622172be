/*
 * redis_io.c - hiredis on a non-blocking socket, waiting with kit_wait_fd()
 * so that on an event-loop thread only the calling request waits
 * (kit/redis_io.h).
 *
 * A command is hiredis's own steps, spelled out: append it to the output
 * buffer, write until the buffer is empty (waiting for POLLOUT if the
 * socket is full), then read until the reader has a whole reply (waiting
 * for POLLIN in between). One deadline covers the whole command.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "kit/event_loop.h"
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

redisReply *kit_redis_command(redisContext *c, long timeout_ms, int argc,
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
