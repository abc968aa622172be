/*
 * store_backend.h - the two implementations behind kit/store.h, and the
 * handle they share. store.c picks one per call by the handle's kind.
 */
#ifndef KIT_STORE_BACKEND_H
#define KIT_STORE_BACKEND_H

#include "kit/store.h"

struct redisContext;

struct kit_store {
	struct kit_store_config config;
	struct redisContext *redis; /* Redis: NULL until (re)connected */
	char error[256];            /* the last KIT_STORE_ERROR's reason */
};

enum kit_store_result store_redis_ping(struct kit_store *store);
enum kit_store_result store_redis_get(struct kit_store *store, const char *key,
				      char **value, size_t *len);
enum kit_store_result store_redis_set_nx(struct kit_store *store, const char *key,
					 const char *value, size_t len);
enum kit_store_result store_redis_hash_update(struct kit_store *store, const char *key,
					      const struct kit_store_field_op *ops,
					      size_t count);
enum kit_store_result store_redis_hash_get_all(struct kit_store *store, const char *key,
					       struct kit_store_hash *out);
void store_redis_disconnect(struct kit_store *store);

enum kit_store_result store_memory_get(const char *key, char **value, size_t *len);
enum kit_store_result store_memory_set_nx(const char *key, const char *value, size_t len);
enum kit_store_result store_memory_hash_update(const char *key,
					       const struct kit_store_field_op *ops,
					       size_t count);
enum kit_store_result store_memory_hash_get_all(const char *key,
						struct kit_store_hash *out);

/* Appends a copy of field/value to hash; -1 when out of memory. */
int store_hash_append(struct kit_store_hash *hash, const char *field,
		      size_t field_len, const char *value, size_t value_len);

#endif
