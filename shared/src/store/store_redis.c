/*
 * store_redis.c - the store on Redis, through hiredis' synchronous API.
 *
 * One handle is one connection and belongs to one worker thread (hiredis
 * contexts are not thread-safe). It connects on first use with a short
 * connect timeout and a command timeout, so a dead Redis costs a request a
 * bounded wait, never a hang. After an I/O error the connection is dropped
 * and the next call reconnects: a Redis restart heals without restarting
 * the service. A read (GET, HGETALL, PING) that finds its connection broken
 * - Redis closed or reset it, as after a restart - is sent once more on a
 * new connection, so not even the first read of each worker after a
 * restart fails; a write is never sent twice, since Redis may have run it
 * before the connection broke. A Redis error reply (WRONGTYPE...) keeps
 * the connection.
 *
 * Multi-field hash updates go out as MULTI / HSET|HINCRBY... / EXEC in one
 * pipelined write, so they are atomic and cost one round trip.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store/store_backend.h"

static struct timeval milliseconds(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

void store_redis_disconnect(struct kit_store *store)
{
	if (store->redis != NULL) {
		redisFree(store->redis);
		store->redis = NULL;
	}
}

static enum kit_store_result fail(struct kit_store *store, const char *what)
{
	snprintf(store->error, sizeof(store->error), "redis %s:%d: %s",
		 store->config.host, store->config.port, what);
	return KIT_STORE_ERROR;
}

/* Connects when not connected. */
static enum kit_store_result ensure_connected(struct kit_store *store)
{
	redisContext *c;
	redisReply *reply;

	if (store->redis != NULL)
		return KIT_STORE_OK;
	c = redisConnectWithTimeout(store->config.host, store->config.port,
				    milliseconds(store->config.connect_timeout_ms));
	if (c == NULL)
		return fail(store, "out of memory");
	if (c->err) {
		fail(store, c->errstr);
		redisFree(c);
		return KIT_STORE_ERROR;
	}
	redisSetTimeout(c, milliseconds(store->config.command_timeout_ms));
	store->redis = c;
	if (store->config.db != 0) {
		reply = redisCommand(c, "SELECT %d", store->config.db);
		if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
			fail(store, reply != NULL ? reply->str : c->errstr);
			freeReplyObject(reply);
			store_redis_disconnect(store);
			return KIT_STORE_ERROR;
		}
		freeReplyObject(reply);
	}
	return KIT_STORE_OK;
}

/* Checks a reply: NULL means the connection broke (dropped, reconnected by
 * the next call); an error reply is reported as such. */
static enum kit_store_result check_reply(struct kit_store *store, redisReply *reply)
{
	if (reply == NULL) {
		fail(store, store->redis->errstr[0] ? store->redis->errstr : "connection lost");
		store_redis_disconnect(store);
		return KIT_STORE_ERROR;
	}
	if (reply->type == REDIS_REPLY_ERROR)
		return fail(store, reply->str);
	return KIT_STORE_OK;
}

/* Whether the connection broke (Redis closed or reset it, as when it
 * restarted) rather than timed out, after which Redis may still be working
 * on the command. */
static bool connection_broke(const redisContext *c)
{
	return c->err == REDIS_ERR_EOF ||
	       (c->err == REDIS_ERR_IO && strcmp(c->errstr, strerror(EAGAIN)) != 0);
}

/* Runs a read command into *reply (freed by the caller, even on failure):
 * once more on a new connection when a connection that was already open
 * turns out broken (see the top of the file). */
static enum kit_store_result read_command(struct kit_store *store, redisReply **reply,
					  const char *format, ...)
{
	for (int attempt = 1;; attempt++) {
		bool reused = store->redis != NULL;
		enum kit_store_result result = ensure_connected(store);
		va_list args;

		*reply = NULL;
		if (result != KIT_STORE_OK)
			return result;
		va_start(args, format);
		*reply = redisvCommand(store->redis, format, args);
		va_end(args);
		if (*reply == NULL && reused && attempt == 1 && connection_broke(store->redis)) {
			store_redis_disconnect(store);
			continue;
		}
		return check_reply(store, *reply);
	}
}

enum kit_store_result store_redis_ping(struct kit_store *store)
{
	redisReply *reply;
	enum kit_store_result result = read_command(store, &reply, "PING");

	freeReplyObject(reply);
	return result;
}

enum kit_store_result store_redis_get(struct kit_store *store, const char *key,
				      char **value, size_t *len)
{
	redisReply *reply;
	enum kit_store_result result = read_command(store, &reply, "GET %s", key);

	if (result == KIT_STORE_OK) {
		if (reply->type == REDIS_REPLY_NIL) {
			result = KIT_STORE_NOT_FOUND;
		} else if (reply->type != REDIS_REPLY_STRING) {
			result = fail(store, "GET: unexpected reply type");
		} else {
			*value = malloc(reply->len + 1);
			if (*value == NULL) {
				result = fail(store, "out of memory");
			} else {
				memcpy(*value, reply->str, reply->len);
				(*value)[reply->len] = '\0';
				if (len != NULL)
					*len = reply->len;
			}
		}
	}
	freeReplyObject(reply);
	return result;
}

enum kit_store_result store_redis_set_nx(struct kit_store *store, const char *key,
					 const char *value, size_t len)
{
	enum kit_store_result result = ensure_connected(store);
	redisReply *reply;

	if (result != KIT_STORE_OK)
		return result;
	reply = redisCommand(store->redis, "SET %s %b NX", key, value, len);
	result = check_reply(store, reply);
	if (result == KIT_STORE_OK && reply->type == REDIS_REPLY_NIL)
		result = KIT_STORE_EXISTS;
	freeReplyObject(reply);
	return result;
}

enum kit_store_result store_redis_hash_update(struct kit_store *store, const char *key,
					      const struct kit_store_field_op *ops,
					      size_t count)
{
	enum kit_store_result result = ensure_connected(store);
	redisReply *reply = NULL;

	if (result != KIT_STORE_OK)
		return result;
	redisAppendCommand(store->redis, "MULTI");
	for (size_t i = 0; i < count; i++) {
		if (ops[i].value != NULL)
			redisAppendCommand(store->redis, "HSET %s %s %s", key,
					   ops[i].field, ops[i].value);
		else
			redisAppendCommand(store->redis, "HINCRBY %s %s %lld", key,
					   ops[i].field, ops[i].increment);
	}
	redisAppendCommand(store->redis, "EXEC");

	/* MULTI's +OK, one +QUEUED per op, then EXEC's array. */
	for (size_t i = 0; i < count + 2; i++) {
		if (redisGetReply(store->redis, (void **)&reply) != REDIS_OK)
			reply = NULL;
		result = check_reply(store, reply);
		if (result == KIT_STORE_OK && i == count + 1 &&
		    reply->type != REDIS_REPLY_ARRAY)
			result = fail(store, "EXEC: transaction aborted");
		freeReplyObject(reply);
		if (result != KIT_STORE_OK) {
			/* The pipeline is out of step: start afresh. */
			store_redis_disconnect(store);
			return result;
		}
	}
	return KIT_STORE_OK;
}

enum kit_store_result store_redis_hash_get_all(struct kit_store *store, const char *key,
					       struct kit_store_hash *out)
{
	redisReply *reply;
	enum kit_store_result result = read_command(store, &reply, "HGETALL %s", key);

	if (result == KIT_STORE_OK) {
		if (reply->type != REDIS_REPLY_ARRAY)
			result = fail(store, "HGETALL: unexpected reply type");
		else if (reply->elements == 0)
			result = KIT_STORE_NOT_FOUND;
		for (size_t i = 0; result == KIT_STORE_OK && i + 1 < reply->elements; i += 2) {
			const redisReply *field = reply->element[i];
			const redisReply *value = reply->element[i + 1];
			if (store_hash_append(out, field->str, field->len,
					      value->str, value->len) != 0)
				result = fail(store, "out of memory");
		}
	}
	freeReplyObject(reply);
	if (result != KIT_STORE_OK)
		kit_store_hash_free(out);
	return result;
}
