/*
 * test_store.c - kit/store.h: get, set_nx, hash_update and hash_get_all.
 *
 * Every case runs against the memory backend (STORE=memory). The same
 * cases run against Redis only when KIT_TEST_REDIS_URL is set (start a
 * throwaway redis-server and export its URL): a unit test must not
 * need, or write into, whatever Redis happens to listen on 6379, so
 * without that variable the Redis variants are reported as skipped. Redis
 * keys carry a per-run prefix ("kit-test:<pid>:") and are deleted after
 * each test.
 *
 * Run alone: make && build/tests/test_store
 *            KIT_TEST_REDIS_URL=redis://127.0.0.1:6390/15 build/tests/test_store
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "kit/store.h"

struct fixture {
	struct kit_store *store;
	struct kit_store_config cfg;
	bool redis;
	char prefix[64];
};

/* ---- fixtures -------------------------------------------------------- */

static int setup_memory(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	kit_store_memory_reset();
	f->cfg.kind = KIT_STORE_MEMORY;
	snprintf(f->prefix, sizeof(f->prefix), "kit-test:%ld:", (long)getpid());
	f->store = kit_store_open(&f->cfg);
	assert_non_null(f->store);
	*state = f;
	return 0;
}

/* The Redis variant: f->store stays NULL when KIT_TEST_REDIS_URL is unset,
 * and the test then calls skip() (see fixture_store()). */
static int setup_redis(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->redis = true;
	*state = f;
	const char *url = getenv("KIT_TEST_REDIS_URL");
	if (url == NULL || url[0] == '\0')
		return 0;
	setenv("STORE", "redis", 1);
	setenv("REDIS_URL", url, 1);
	assert_int_equal(kit_store_config_from_env(&f->cfg), 0);
	assert_int_equal(f->cfg.kind, KIT_STORE_REDIS);
	static int run = 0;
	snprintf(f->prefix, sizeof(f->prefix), "kit-test:%ld:%d:", (long)getpid(),
		 run++);
	f->store = kit_store_open(&f->cfg);
	assert_non_null(f->store);
	return 0;
}

/* Deletes this test's Redis keys with a separate hiredis connection. */
static void redis_delete_prefix(const struct fixture *f)
{
	struct timeval timeout = { 1, 0 };
	redisContext *c = redisConnectWithTimeout(f->cfg.host, f->cfg.port, timeout);
	if (c == NULL || c->err) {
		if (c != NULL)
			redisFree(c);
		return;
	}
	redisReply *r = redisCommand(c, "SELECT %d", f->cfg.db);
	if (r != NULL)
		freeReplyObject(r);
	r = redisCommand(c, "KEYS %s*", f->prefix);
	if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->elements; i++) {
			redisReply *d = redisCommand(c, "DEL %b", r->element[i]->str,
						     (size_t)r->element[i]->len);
			if (d != NULL)
				freeReplyObject(d);
		}
	}
	if (r != NULL)
		freeReplyObject(r);
	redisFree(c);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->redis && f->store != NULL)
		redis_delete_prefix(f);
	kit_store_close(f->store);
	free(f);
	return 0;
}

static struct kit_store *fixture_store(void **state)
{
	struct fixture *f = *state;
	if (f->store == NULL)
		skip(); /* Redis variant without KIT_TEST_REDIS_URL */
	return f->store;
}

/* "<prefix><name>" in a static buffer (one key at a time per test). */
static const char *key(void **state, const char *name)
{
	static char buf[2][128];
	static int which = 0;
	struct fixture *f = *state;
	which ^= 1;
	snprintf(buf[which], sizeof(buf[which]), "%s%s", f->prefix, name);
	return buf[which];
}

/* ---- cases, each run on both backends -------------------------------- */

static void test_ping(void **state)
{
	struct kit_store *s = fixture_store(state);
	assert_int_equal(kit_store_ping(s), KIT_STORE_OK);
}

static void test_get_missing(void **state)
{
	struct kit_store *s = fixture_store(state);
	char *value = NULL;
	size_t len = 99;
	assert_int_equal(kit_store_get(s, key(state, "nothing-here"), &value, &len),
			 KIT_STORE_NOT_FOUND);
}

static void test_set_nx_then_get(void **state)
{
	struct kit_store *s = fixture_store(state);
	const char *json = "{\"code\":\"abc\",\"url\":\"https://example.com\"}";
	assert_int_equal(kit_store_set_nx(s, key(state, "link:abc"), json,
					  strlen(json)),
			 KIT_STORE_OK);

	char *value = NULL;
	size_t len = 0;
	assert_int_equal(kit_store_get(s, key(state, "link:abc"), &value, &len),
			 KIT_STORE_OK);
	assert_non_null(value);
	assert_int_equal(len, strlen(json));
	assert_string_equal(value, json);
	free(value);

	/* len may be NULL. */
	value = NULL;
	assert_int_equal(kit_store_get(s, key(state, "link:abc"), &value, NULL),
			 KIT_STORE_OK);
	assert_string_equal(value, json);
	free(value);
}

/* set_nx stores len bytes, not up to the first NUL of a longer buffer. */
static void test_set_nx_respects_len(void **state)
{
	struct kit_store *s = fixture_store(state);
	assert_int_equal(kit_store_set_nx(s, key(state, "short"), "abcdef", 3),
			 KIT_STORE_OK);
	char *value = NULL;
	size_t len = 0;
	assert_int_equal(kit_store_get(s, key(state, "short"), &value, &len),
			 KIT_STORE_OK);
	assert_int_equal(len, 3);
	assert_string_equal(value, "abc");
	free(value);
}

/* Threat: a second writer (an alias race, two POST /shorten with the same
 * alias) overwriting the first owner's link. */
static void test_set_nx_twice_keeps_first(void **state)
{
	struct kit_store *s = fixture_store(state);
	assert_int_equal(kit_store_set_nx(s, key(state, "link:mine"), "first", 5),
			 KIT_STORE_OK);
	assert_int_equal(kit_store_set_nx(s, key(state, "link:mine"), "second", 6),
			 KIT_STORE_EXISTS);
	char *value = NULL;
	size_t len = 0;
	assert_int_equal(kit_store_get(s, key(state, "link:mine"), &value, &len),
			 KIT_STORE_OK);
	assert_string_equal(value, "first");
	assert_int_equal(len, 5);
	free(value);
}

static void test_hash_update_and_get_all(void **state)
{
	struct kit_store *s = fixture_store(state);
	const struct kit_store_field_op first[] = {
		{ "owner", "alice", 0 },
		{ "total", NULL, 1 },
		{ "day:2027-01-15", NULL, 1 },
	};
	assert_int_equal(kit_store_hash_update(s, key(state, "analytics:abc"),
					       first, 3),
			 KIT_STORE_OK);
	const struct kit_store_field_op second[] = {
		{ "total", NULL, 2 },
		{ "day:2027-01-15", NULL, 1 },
		{ "last_referrer", "https://ref.example/", 0 },
	};
	assert_int_equal(kit_store_hash_update(s, key(state, "analytics:abc"),
					       second, 3),
			 KIT_STORE_OK);

	struct kit_store_hash hash;
	memset(&hash, 0, sizeof(hash));
	assert_int_equal(kit_store_hash_get_all(s, key(state, "analytics:abc"),
						&hash),
			 KIT_STORE_OK);
	assert_int_equal(hash.count, 4);
	assert_string_equal(kit_store_hash_value(&hash, "owner"), "alice");
	assert_string_equal(kit_store_hash_value(&hash, "total"), "3");
	assert_string_equal(kit_store_hash_value(&hash, "day:2027-01-15"), "2");
	assert_string_equal(kit_store_hash_value(&hash, "last_referrer"),
			    "https://ref.example/");
	assert_null(kit_store_hash_value(&hash, "missing"));
	assert_null(kit_store_hash_value(&hash, "tota")); /* not a prefix match */
	kit_store_hash_free(&hash);
}

static void test_hash_increments_accumulate(void **state)
{
	struct kit_store *s = fixture_store(state);
	for (int i = 0; i < 10; i++) {
		const struct kit_store_field_op op[] = { { "n", NULL, 5 } };
		assert_int_equal(kit_store_hash_update(s, key(state, "counter"), op, 1),
				 KIT_STORE_OK);
	}
	const struct kit_store_field_op down[] = { { "n", NULL, -8 } };
	assert_int_equal(kit_store_hash_update(s, key(state, "counter"), down, 1),
			 KIT_STORE_OK);

	struct kit_store_hash hash;
	memset(&hash, 0, sizeof(hash));
	assert_int_equal(kit_store_hash_get_all(s, key(state, "counter"), &hash),
			 KIT_STORE_OK);
	assert_int_equal(hash.count, 1);
	assert_string_equal(kit_store_hash_value(&hash, "n"), "42");
	kit_store_hash_free(&hash);
}

static void test_hash_set_overwrites(void **state)
{
	struct kit_store *s = fixture_store(state);
	const struct kit_store_field_op a[] = { { "last", "one", 0 } };
	const struct kit_store_field_op b[] = { { "last", "two", 0 } };
	assert_int_equal(kit_store_hash_update(s, key(state, "h"), a, 1), KIT_STORE_OK);
	assert_int_equal(kit_store_hash_update(s, key(state, "h"), b, 1), KIT_STORE_OK);
	struct kit_store_hash hash;
	memset(&hash, 0, sizeof(hash));
	assert_int_equal(kit_store_hash_get_all(s, key(state, "h"), &hash),
			 KIT_STORE_OK);
	assert_int_equal(hash.count, 1);
	assert_string_equal(kit_store_hash_value(&hash, "last"), "two");
	kit_store_hash_free(&hash);
}

static void test_hash_get_all_missing(void **state)
{
	struct kit_store *s = fixture_store(state);
	struct kit_store_hash hash;
	memset(&hash, 0, sizeof(hash));
	hash.count = 7; /* must come back empty */
	assert_int_equal(kit_store_hash_get_all(s, key(state, "no-hash"), &hash),
			 KIT_STORE_NOT_FOUND);
	assert_int_equal(hash.count, 0);
	kit_store_hash_free(&hash);
}

/* Keys are separate: a string key is not a hash, and "a" is not "ab". */
static void test_keys_are_separate(void **state)
{
	struct kit_store *s = fixture_store(state);
	assert_int_equal(kit_store_set_nx(s, key(state, "ab"), "x", 1), KIT_STORE_OK);
	char *value = NULL;
	assert_int_equal(kit_store_get(s, key(state, "a"), &value, NULL),
			 KIT_STORE_NOT_FOUND);
	const struct kit_store_field_op op[] = { { "f", "v", 0 } };
	assert_int_equal(kit_store_hash_update(s, key(state, "hash-only"), op, 1),
			 KIT_STORE_OK);
	struct kit_store_hash hash;
	memset(&hash, 0, sizeof(hash));
	assert_int_equal(kit_store_hash_get_all(s, key(state, "ab-other"), &hash),
			 KIT_STORE_NOT_FOUND);
	kit_store_hash_free(&hash);
}

/* ---- memory backend only --------------------------------------------- */

static void test_memory_reset_forgets(void **state)
{
	struct kit_store *s = fixture_store(state);
	assert_int_equal(kit_store_set_nx(s, key(state, "k"), "v", 1), KIT_STORE_OK);
	char *value = NULL;
	assert_int_equal(kit_store_get(s, key(state, "k"), &value, NULL), KIT_STORE_OK);
	free(value);
	kit_store_memory_reset();
	value = NULL;
	assert_int_equal(kit_store_get(s, key(state, "k"), &value, NULL),
			 KIT_STORE_NOT_FOUND);
}

/* Worker threads each open their own handle; in memory mode they must all
 * see one table. */
static void test_memory_handles_share_data(void **state)
{
	struct fixture *f = *state;
	struct kit_store *other = kit_store_open(&f->cfg);
	assert_non_null(other);
	assert_int_equal(kit_store_set_nx(f->store, key(state, "shared"), "1", 1),
			 KIT_STORE_OK);
	char *value = NULL;
	assert_int_equal(kit_store_get(other, key(state, "shared"), &value, NULL),
			 KIT_STORE_OK);
	assert_string_equal(value, "1");
	free(value);
	assert_int_equal(kit_store_set_nx(other, key(state, "shared"), "2", 1),
			 KIT_STORE_EXISTS);

	const struct kit_store_field_op op[] = { { "n", NULL, 1 } };
	assert_int_equal(kit_store_hash_update(other, key(state, "h"), op, 1),
			 KIT_STORE_OK);
	assert_int_equal(kit_store_hash_update(f->store, key(state, "h"), op, 1),
			 KIT_STORE_OK);
	struct kit_store_hash hash;
	memset(&hash, 0, sizeof(hash));
	assert_int_equal(kit_store_hash_get_all(other, key(state, "h"), &hash),
			 KIT_STORE_OK);
	assert_string_equal(kit_store_hash_value(&hash, "n"), "2");
	kit_store_hash_free(&hash);
	kit_store_close(other);
}

/* ---- Redis restarted: the store's connection is gone ------------------ */

/* Kills every normal client connection of the test's Redis but the one
 * that asks (CLIENT KILL ... SKIPME yes): what a Redis restart does to the
 * store's open connection. Returns how many were killed. */
static long long kill_client_connections(const struct fixture *f)
{
	struct timeval timeout = { 1, 0 };
	redisContext *c = redisConnectWithTimeout(f->cfg.host, f->cfg.port, timeout);
	long long killed = -1;

	assert_non_null(c);
	assert_int_equal(c->err, 0);
	redisReply *r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		killed = r->integer;
	if (r != NULL)
		freeReplyObject(r);
	redisFree(c);
	return killed;
}

/* A read on a connection Redis has closed since it last answered is sent
 * again on a new one: no error reaches the caller (the first request of a
 * worker after a Redis restart used to fail with 503). */
static void test_read_after_connection_killed(void **state)
{
	struct kit_store *s = fixture_store(state);
	struct fixture *f = *state;
	char *value = NULL;

	assert_int_equal(kit_store_set_nx(s, key(state, "k"), "v", 1), KIT_STORE_OK);
	assert_true(kill_client_connections(f) >= 1);
	assert_int_equal(kit_store_get(s, key(state, "k"), &value, NULL), KIT_STORE_OK);
	assert_string_equal(value, "v");
	free(value);

	struct kit_store_hash hash;
	assert_int_equal(kill_client_connections(f) >= 1, 1);
	assert_int_equal(kit_store_hash_get_all(s, key(state, "none"), &hash), KIT_STORE_NOT_FOUND);
	assert_true(kill_client_connections(f) >= 1);
	assert_int_equal(kit_store_ping(s), KIT_STORE_OK);
}

/* A write is not sent twice: Redis may have run it before the connection
 * broke. The caller sees the error; the next call reconnects. */
static void test_write_after_connection_killed_is_an_error_once(void **state)
{
	struct kit_store *s = fixture_store(state);
	struct fixture *f = *state;

	assert_int_equal(kit_store_ping(s), KIT_STORE_OK);
	assert_true(kill_client_connections(f) >= 1);
	assert_int_equal(kit_store_set_nx(s, key(state, "w"), "1", 1), KIT_STORE_ERROR);
	assert_int_equal(kit_store_set_nx(s, key(state, "w"), "1", 1), KIT_STORE_OK);
}

/* ---- Redis down: no server needed ------------------------------------ */

/* A Redis that is not there: opening still succeeds (lazy connect), and the
 * first command reports KIT_STORE_ERROR with a reason. Port 1 on loopback
 * refuses at once. */
static void test_redis_down_is_an_error(void **state)
{
	struct kit_store_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.kind = KIT_STORE_REDIS;
	strcpy(cfg.host, "127.0.0.1");
	cfg.port = 1;
	cfg.connect_timeout_ms = 200;
	cfg.command_timeout_ms = 200;
	struct kit_store *s = kit_store_open(&cfg);
	assert_non_null(s);
	assert_int_equal(kit_store_ping(s), KIT_STORE_ERROR);
	assert_non_null(kit_store_error(s));
	assert_true(strlen(kit_store_error(s)) > 0);
	char *value = NULL;
	assert_int_equal(kit_store_get(s, "k", &value, NULL), KIT_STORE_ERROR);
	kit_store_close(s);
}

/* ---- configuration --------------------------------------------------- */

static void test_config_from_env(void **state)
{
	struct kit_store_config cfg;
	unsetenv("STORE");
	unsetenv("REDIS_URL");
	unsetenv("REDIS_CONNECT_TIMEOUT_MS");
	unsetenv("REDIS_COMMAND_TIMEOUT_MS");
	assert_int_equal(kit_store_config_from_env(&cfg), 0);
	assert_int_equal(cfg.kind, KIT_STORE_REDIS);
	assert_string_equal(cfg.host, "127.0.0.1");
	assert_int_equal(cfg.port, 6379);
	assert_int_equal(cfg.db, 0);
	assert_int_equal(cfg.connect_timeout_ms, 200);
	assert_int_equal(cfg.command_timeout_ms, 1000);

	setenv("REDIS_URL", "redis://cache.internal:6380/2", 1);
	assert_int_equal(kit_store_config_from_env(&cfg), 0);
	assert_string_equal(cfg.host, "cache.internal");
	assert_int_equal(cfg.port, 6380);
	assert_int_equal(cfg.db, 2);

	setenv("STORE", "memory", 1);
	assert_int_equal(kit_store_config_from_env(&cfg), 0);
	assert_int_equal(cfg.kind, KIT_STORE_MEMORY);

	setenv("STORE", "postgres", 1);
	assert_int_equal(kit_store_config_from_env(&cfg), -1);
	setenv("STORE", "redis", 1);
	setenv("REDIS_URL", "http://127.0.0.1:6379/0", 1);
	assert_int_equal(kit_store_config_from_env(&cfg), -1);
	setenv("REDIS_URL", "redis://127.0.0.1:notaport/0", 1);
	assert_int_equal(kit_store_config_from_env(&cfg), -1);
	unsetenv("STORE");
	unsetenv("REDIS_URL");
}

/* One case on each backend, named "memory: ..." and "redis: ...". */
#define BOTH(test)                                                  \
	{ "memory: " #test, test, setup_memory, teardown, NULL },    \
	{ "redis: " #test, test, setup_redis, teardown, NULL }

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		BOTH(test_ping),
		BOTH(test_get_missing),
		BOTH(test_set_nx_then_get),
		BOTH(test_set_nx_respects_len),
		BOTH(test_set_nx_twice_keeps_first),
		BOTH(test_hash_update_and_get_all),
		BOTH(test_hash_increments_accumulate),
		BOTH(test_hash_set_overwrites),
		BOTH(test_hash_get_all_missing),
		BOTH(test_keys_are_separate),
		cmocka_unit_test_setup_teardown(test_memory_reset_forgets,
						setup_memory, teardown),
		cmocka_unit_test_setup_teardown(test_memory_handles_share_data,
						setup_memory, teardown),
		cmocka_unit_test_setup_teardown(test_read_after_connection_killed,
						setup_redis, teardown),
		cmocka_unit_test_setup_teardown(test_write_after_connection_killed_is_an_error_once,
						setup_redis, teardown),
		cmocka_unit_test(test_redis_down_is_an_error),
		cmocka_unit_test(test_config_from_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
