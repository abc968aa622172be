/*
 * store.c - the store's public face (kit/store.h): configuration from the
 * environment, handles, and the dispatch to the Redis backend
 * (store_redis.c) or the memory one (store_memory.c).
 *
 * Services call these functions without knowing which backend runs, so a
 * unit test or STORE=memory runs the same handler code as production.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit/config.h"
#include "store/store_backend.h"

/* redis://host[:port][/db] */
static int parse_redis_url(struct kit_store_config *cfg, const char *url)
{
	const char *p = url, *host_end;
	long port = 6379, db = 0;
	char *end;

	if (strncmp(p, "redis://", 8) != 0) {
		fprintf(stderr, "REDIS_URL: \"%s\" must look like redis://host:port/db\n", url);
		return -1;
	}
	p += 8;
	if (strchr(p, '@') != NULL) {
		fprintf(stderr, "REDIS_URL: passwords in the URL are not supported; keep Redis on a private network\n");
		return -1;
	}
	host_end = p + strcspn(p, ":/");
	if (host_end == p || (size_t)(host_end - p) >= sizeof(cfg->host)) {
		fprintf(stderr, "REDIS_URL: \"%s\" has no host\n", url);
		return -1;
	}
	memcpy(cfg->host, p, (size_t)(host_end - p));
	cfg->host[host_end - p] = '\0';
	p = host_end;
	if (*p == ':') {
		port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535 || (*end != '\0' && *end != '/')) {
			fprintf(stderr, "REDIS_URL: bad port in \"%s\"\n", url);
			return -1;
		}
		p = end;
	}
	if (*p == '/' && p[1] != '\0') {
		db = strtol(p + 1, &end, 10);
		if (end == p + 1 || *end != '\0' || db < 0 || db > 15) {
			fprintf(stderr, "REDIS_URL: bad database number in \"%s\"\n", url);
			return -1;
		}
	}
	cfg->port = (int)port;
	cfg->db = (int)db;
	return 0;
}

int kit_store_config_from_env(struct kit_store_config *cfg)
{
	const char *kind = kit_env_string("STORE", "redis");
	long connect_ms, command_ms;

	memset(cfg, 0, sizeof(*cfg));
	if (strcmp(kind, "redis") == 0) {
		cfg->kind = KIT_STORE_REDIS;
	} else if (strcmp(kind, "memory") == 0) {
		cfg->kind = KIT_STORE_MEMORY;
	} else {
		fprintf(stderr, "STORE: \"%s\" is not redis or memory\n", kind);
		return -1;
	}
	if (parse_redis_url(cfg, kit_env_string("REDIS_URL", "redis://127.0.0.1:6379/0")) != 0 ||
	    kit_env_long("REDIS_CONNECT_TIMEOUT_MS", 200, 1, 60000, &connect_ms) != 0 ||
	    kit_env_long("REDIS_COMMAND_TIMEOUT_MS", 1000, 1, 60000, &command_ms) != 0)
		return -1;
	cfg->connect_timeout_ms = (int)connect_ms;
	cfg->command_timeout_ms = (int)command_ms;
	return 0;
}

struct kit_store *kit_store_open(const struct kit_store_config *cfg)
{
	struct kit_store *store = calloc(1, sizeof(*store));

	if (store != NULL)
		store->config = *cfg;
	return store;
}

void kit_store_close(struct kit_store *store)
{
	if (store == NULL)
		return;
	store_redis_disconnect(store);
	free(store);
}

const char *kit_store_error(const struct kit_store *store)
{
	return store->error;
}

enum kit_store_result kit_store_ping(struct kit_store *store)
{
	if (store->config.kind == KIT_STORE_MEMORY)
		return KIT_STORE_OK;
	return store_redis_ping(store);
}

enum kit_store_result kit_store_get(struct kit_store *store, const char *key,
				    char **value, size_t *len)
{
	*value = NULL;
	if (store->config.kind == KIT_STORE_MEMORY)
		return store_memory_get(key, value, len);
	return store_redis_get(store, key, value, len);
}

enum kit_store_result kit_store_set_nx(struct kit_store *store,
				       const char *key, const char *value,
				       size_t len)
{
	if (store->config.kind == KIT_STORE_MEMORY)
		return store_memory_set_nx(key, value, len);
	return store_redis_set_nx(store, key, value, len);
}

enum kit_store_result kit_store_hash_update(struct kit_store *store,
					    const char *key,
					    const struct kit_store_field_op *ops,
					    size_t count)
{
	if (store->config.kind == KIT_STORE_MEMORY)
		return store_memory_hash_update(key, ops, count);
	return store_redis_hash_update(store, key, ops, count);
}

enum kit_store_result kit_store_hash_get_all(struct kit_store *store,
					     const char *key,
					     struct kit_store_hash *out)
{
	memset(out, 0, sizeof(*out));
	if (store->config.kind == KIT_STORE_MEMORY)
		return store_memory_hash_get_all(key, out);
	return store_redis_hash_get_all(store, key, out);
}

const char *kit_store_hash_value(const struct kit_store_hash *hash,
				 const char *field)
{
	for (size_t i = 0; i < hash->count; i++) {
		if (strcmp(hash->fields[i], field) == 0)
			return hash->values[i];
	}
	return NULL;
}

int store_hash_append(struct kit_store_hash *hash, const char *field,
		      size_t field_len, const char *value, size_t value_len)
{
	char **fields = realloc(hash->fields, (hash->count + 1) * sizeof(char *));
	char **values;

	if (fields == NULL)
		return -1;
	hash->fields = fields;
	values = realloc(hash->values, (hash->count + 1) * sizeof(char *));
	if (values == NULL)
		return -1;
	hash->values = values;
	hash->fields[hash->count] = strndup(field, field_len);
	hash->values[hash->count] = strndup(value, value_len);
	if (hash->fields[hash->count] == NULL || hash->values[hash->count] == NULL) {
		free(hash->fields[hash->count]);
		free(hash->values[hash->count]);
		return -1;
	}
	hash->count++;
	return 0;
}

void kit_store_hash_free(struct kit_store_hash *hash)
{
	for (size_t i = 0; i < hash->count; i++) {
		free(hash->fields[i]);
		free(hash->values[i]);
	}
	free(hash->fields);
	free(hash->values);
	memset(hash, 0, sizeof(*hash));
}
