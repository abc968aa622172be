/*
 * kit/store.h - the small key/value + hash store the services keep their
 * data in: Redis through hiredis (durable: the kit's redis-server runs with
 * append-only persistence), or process memory for unit tests and the
 * explicit zero-infrastructure mode (STORE=memory), which says at start-up
 * that nothing persists.
 *
 * Threads: a Redis store is one connection and is NOT thread-safe, like the
 * hiredis context inside it: each worker thread opens its own (the app does
 * that for you: kit_request_store()). The memory backend is one table shared
 * by every handle and locked inside.
 *
 * Every call returns an enum kit_store_result; on KIT_STORE_ERROR the reason
 * is in kit_store_error(store) until the next call. A broken Redis
 * connection is dropped and reconnected by the next call, so a Redis restart
 * heals by itself.
 */
#ifndef KIT_STORE_H
#define KIT_STORE_H

#include <stddef.h>

enum kit_store_kind { KIT_STORE_REDIS, KIT_STORE_MEMORY };

struct kit_store_config {
	enum kit_store_kind kind;
	char host[256];        /* Redis host (REDIS_URL redis://host:port/db) */
	int port;
	int db;
	int connect_timeout_ms; /* REDIS_CONNECT_TIMEOUT_MS, default 200       */
	int command_timeout_ms; /* REDIS_COMMAND_TIMEOUT_MS, default 1000      */
};

/* Reads STORE (redis|memory, default redis) and REDIS_URL (default
 * redis://127.0.0.1:6379/0). Returns 0, or -1 after printing the bad
 * variable and why. */
int kit_store_config_from_env(struct kit_store_config *cfg);

enum kit_store_result {
	KIT_STORE_OK = 0,
	KIT_STORE_NOT_FOUND,  /* get/hgetall: no such key                   */
	KIT_STORE_EXISTS,     /* set_nx: the key was already there          */
	KIT_STORE_ERROR,      /* connection or protocol error: see error()  */
};

struct kit_store;

/* Opens a handle. For Redis it connects lazily on first use, so opening
 * never fails on a Redis that is down; NULL only when out of memory.
 * Free with kit_store_close() (NULL is fine). */
struct kit_store *kit_store_open(const struct kit_store_config *cfg);
void kit_store_close(struct kit_store *store);
const char *kit_store_error(const struct kit_store *store);

/* Checks the connection (Redis PING). */
enum kit_store_result kit_store_ping(struct kit_store *store);

/* *value is malloc'd and NUL-terminated (caller frees); *len may be NULL. */
enum kit_store_result kit_store_get(struct kit_store *store, const char *key,
				    char **value, size_t *len);

/* Sets key only when it does not exist yet (Redis SET NX). */
enum kit_store_result kit_store_set_nx(struct kit_store *store,
				       const char *key, const char *value,
				       size_t len);

/* One change to a field of a hash: set it to value, or, when value is NULL,
 * add increment to its integer. */
struct kit_store_field_op {
	const char *field;
	const char *value;
	long long increment;
};

/* Applies every op to hash key atomically, in one round trip (Redis
 * MULTI/EXEC). */
enum kit_store_result kit_store_hash_update(struct kit_store *store,
					    const char *key,
					    const struct kit_store_field_op *ops,
					    size_t count);

/* A hash as field/value pairs, all malloc'd; free with kit_store_hash_free. */
struct kit_store_hash {
	size_t count;
	char **fields;
	char **values;
};

/* KIT_STORE_NOT_FOUND (and an empty *out) when the key does not exist. */
enum kit_store_result kit_store_hash_get_all(struct kit_store *store,
					     const char *key,
					     struct kit_store_hash *out);
/* The value of field in hash, or NULL. */
const char *kit_store_hash_value(const struct kit_store_hash *hash,
				 const char *field);
void kit_store_hash_free(struct kit_store_hash *hash);

/* Memory backend only: forgets everything (unit tests). */
void kit_store_memory_reset(void);

#endif
