/*
 * store_memory.c - the store in process memory: for unit tests and for the
 * explicit zero-infrastructure mode (STORE=memory), where the process says
 * at start-up that nothing persists.
 *
 * One table for the whole process, shared by every handle, behind one
 * mutex: simple and correct, and fast enough for a mode that exists for
 * learning, not for load. Keys hold either a string or a hash (a small
 * array of fields), like their Redis counterparts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit/noncrypto.h"
#include "store/store_backend.h"

#define BUCKETS 1024

struct entry {
	struct entry *next;
	char *key;
	char *value;                 /* a string key, or NULL for a hash */
	size_t value_len;
	struct kit_store_hash hash;  /* a hash key */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *table[BUCKETS];

static struct entry **bucket_of(const char *key)
{
	return &table[kit_hash_string(key) % BUCKETS];
}

static struct entry *find(const char *key)
{
	for (struct entry *e = *bucket_of(key); e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0)
			return e;
	}
	return NULL;
}

static struct entry *insert(const char *key)
{
	struct entry *e = calloc(1, sizeof(*e));
	struct entry **bucket = bucket_of(key);

	if (e == NULL)
		return NULL;
	e->key = strdup(key);
	if (e->key == NULL) {
		free(e);
		return NULL;
	}
	e->next = *bucket;
	*bucket = e;
	return e;
}

enum kit_store_result store_memory_get(const char *key, char **value, size_t *len)
{
	enum kit_store_result result = KIT_STORE_NOT_FOUND;
	struct entry *e;

	pthread_mutex_lock(&table_lock);
	e = find(key);
	if (e != NULL && e->value != NULL) {
		*value = malloc(e->value_len + 1);
		if (*value == NULL) {
			result = KIT_STORE_ERROR;
		} else {
			memcpy(*value, e->value, e->value_len + 1);
			if (len != NULL)
				*len = e->value_len;
			result = KIT_STORE_OK;
		}
	}
	pthread_mutex_unlock(&table_lock);
	return result;
}

enum kit_store_result store_memory_set_nx(const char *key, const char *value, size_t len)
{
	enum kit_store_result result = KIT_STORE_OK;
	struct entry *e;

	pthread_mutex_lock(&table_lock);
	if (find(key) != NULL) {
		result = KIT_STORE_EXISTS;
		goto out;
	}
	e = insert(key);
	if (e != NULL)
		e->value = malloc(len + 1);
	if (e == NULL || e->value == NULL) {
		result = KIT_STORE_ERROR; /* an entry without value reads as empty hash */
		goto out;
	}
	memcpy(e->value, value, len);
	e->value[len] = '\0';
	e->value_len = len;
out:
	pthread_mutex_unlock(&table_lock);
	return result;
}

/* Sets field in hash to value (a copy). */
static int hash_set(struct kit_store_hash *hash, const char *field, const char *value)
{
	for (size_t i = 0; i < hash->count; i++) {
		if (strcmp(hash->fields[i], field) == 0) {
			char *copy = strdup(value);
			if (copy == NULL)
				return -1;
			free(hash->values[i]);
			hash->values[i] = copy;
			return 0;
		}
	}
	return store_hash_append(hash, field, strlen(field), value, strlen(value));
}

enum kit_store_result store_memory_hash_update(const char *key,
					       const struct kit_store_field_op *ops,
					       size_t count)
{
	enum kit_store_result result = KIT_STORE_OK;
	struct entry *e;

	pthread_mutex_lock(&table_lock);
	e = find(key);
	if (e == NULL)
		e = insert(key);
	if (e == NULL || e->value != NULL) { /* out of memory, or a string key */
		result = KIT_STORE_ERROR;
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		char number[32];
		const char *value = ops[i].value;

		if (value == NULL) {
			const char *old = kit_store_hash_value(&e->hash, ops[i].field);
			snprintf(number, sizeof(number), "%lld",
				 (old != NULL ? atoll(old) : 0) + ops[i].increment);
			value = number;
		}
		if (hash_set(&e->hash, ops[i].field, value) != 0) {
			result = KIT_STORE_ERROR;
			goto out;
		}
	}
out:
	pthread_mutex_unlock(&table_lock);
	return result;
}

enum kit_store_result store_memory_hash_get_all(const char *key,
						struct kit_store_hash *out)
{
	enum kit_store_result result = KIT_STORE_NOT_FOUND;
	struct entry *e;

	pthread_mutex_lock(&table_lock);
	e = find(key);
	if (e != NULL && e->value == NULL && e->hash.count > 0) {
		result = KIT_STORE_OK;
		for (size_t i = 0; i < e->hash.count; i++) {
			if (store_hash_append(out, e->hash.fields[i], strlen(e->hash.fields[i]),
					      e->hash.values[i], strlen(e->hash.values[i])) != 0) {
				kit_store_hash_free(out);
				result = KIT_STORE_ERROR;
				break;
			}
		}
	}
	pthread_mutex_unlock(&table_lock);
	return result;
}

void kit_store_memory_reset(void)
{
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < BUCKETS; i++) {
		struct entry *e = table[i];
		while (e != NULL) {
			struct entry *next = e->next;
			free(e->key);
			free(e->value);
			kit_store_hash_free(&e->hash);
			free(e);
			e = next;
		}
		table[i] = NULL;
	}
	pthread_mutex_unlock(&table_lock);
}
