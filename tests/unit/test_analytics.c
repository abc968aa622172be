/*
 * test_analytics.c - services/analytics/analytics.h: the user-agent family
 * and the storage side (analytics_store_link, analytics_store_click) on the
 * memory store, read back with kit_store_hash_get_all().
 *
 * Days are UTC: the click timestamps sit half an hour before and after
 * midnight UTC, and the process runs with TZ set nine hours east, so a
 * day computed with localtime() instead of gmtime() lands on the wrong
 * date and the test fails.
 *
 * Run alone: make && build/tests/test_analytics
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analytics/analytics.h"
#include "kit/store.h"

/* 2027-01-15T23:30:00Z and 2027-01-16T00:30:00Z. */
#define BEFORE_MIDNIGHT 1800055800LL
#define AFTER_MIDNIGHT (BEFORE_MIDNIGHT + 3600)

static const char CHROME_UA[] =
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
	"(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
static const char FIREFOX_UA[] =
	"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
static const char SAFARI_UA[] =
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
	"(KHTML, like Gecko) Version/17.1 Safari/605.1.15";
static const char EDGE_UA[] =
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
	"(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91";

/* ---- analytics_user_agent_family ------------------------------------- */

static void test_browsers(void **state)
{
	assert_string_equal(analytics_user_agent_family(CHROME_UA), "Chrome");
	assert_string_equal(analytics_user_agent_family(FIREFOX_UA), "Firefox");
	assert_string_equal(analytics_user_agent_family(SAFARI_UA), "Safari");
}

/* Edge's user agent also says Chrome and Safari; Edg/ must win. */
static void test_edge_before_chrome(void **state)
{
	assert_string_equal(analytics_user_agent_family(EDGE_UA), "Edge");
}

static void test_curl(void **state)
{
	assert_string_equal(analytics_user_agent_family("curl/8.4.0"), "curl");
}

static void test_bots(void **state)
{
	assert_string_equal(analytics_user_agent_family(
				    "Googlebot/2.1 (+http://www.google.com/bot.html)"),
			    "bot");
	assert_string_equal(analytics_user_agent_family(
				    "Mozilla/5.0 (compatible; bingbot/2.0; "
				    "+http://www.bing.com/bingbot.htm)"),
			    "bot");
	/* A crawler that also claims Chrome is still a bot. */
	assert_string_equal(analytics_user_agent_family(
				    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) "
				    "AppleWebKit/537.36 (KHTML, like Gecko) "
				    "Chrome/119.0.6045.199 Mobile Safari/537.36 "
				    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
			    "bot");
}

static void test_other(void **state)
{
	assert_string_equal(analytics_user_agent_family(NULL), "other");
	assert_string_equal(analytics_user_agent_family(""), "other");
	assert_string_equal(analytics_user_agent_family("SomethingElse/1.0"), "other");
}

/* ---- storage --------------------------------------------------------- */

struct fixture {
	struct kit_store *store;
};

static int setup_store(void **state)
{
	static struct fixture f;
	struct kit_store_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.kind = KIT_STORE_MEMORY;
	kit_store_memory_reset();
	f.store = kit_store_open(&cfg);
	assert_non_null(f.store);
	setenv("TZ", "KIT-9", 1); /* UTC+9, no tzdata needed */
	tzset();
	*state = &f;
	return 0;
}

static int teardown_store(void **state)
{
	struct fixture *f = *state;
	kit_store_close(f->store);
	f->store = NULL;
	unsetenv("TZ");
	tzset();
	return 0;
}

static void read_hash(struct kit_store *store, const char *key,
		      struct kit_store_hash *hash)
{
	memset(hash, 0, sizeof(*hash));
	assert_int_equal(kit_store_hash_get_all(store, key, hash), KIT_STORE_OK);
}

static void test_store_link(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(analytics_store_link(f->store, "abc1234", "alice"), 0);
	struct kit_store_hash hash;
	read_hash(f->store, "analytics:abc1234", &hash);
	assert_string_equal(kit_store_hash_value(&hash, "owner"), "alice");
	kit_store_hash_free(&hash);
}

static void test_store_clicks(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(analytics_store_link(f->store, "abc1234", "alice"), 0);
	assert_int_equal(analytics_store_click(f->store, "abc1234",
					       "https://news.example/", CHROME_UA,
					       BEFORE_MIDNIGHT), 0);
	assert_int_equal(analytics_store_click(f->store, "abc1234",
					       "https://news.example/", FIREFOX_UA,
					       BEFORE_MIDNIGHT + 60), 0);
	assert_int_equal(analytics_store_click(f->store, "abc1234",
					       "https://blog.example/post", EDGE_UA,
					       AFTER_MIDNIGHT), 0);

	struct kit_store_hash hash;
	read_hash(f->store, "analytics:abc1234", &hash);
	assert_string_equal(kit_store_hash_value(&hash, "owner"), "alice");
	assert_string_equal(kit_store_hash_value(&hash, "total"), "3");
	assert_string_equal(kit_store_hash_value(&hash, "day:2027-01-15"), "2");
	assert_string_equal(kit_store_hash_value(&hash, "day:2027-01-16"), "1");
	assert_string_equal(kit_store_hash_value(&hash, "last_referrer"),
			    "https://blog.example/post");
	assert_string_equal(kit_store_hash_value(&hash, "last_user_agent_family"),
			    "Edge");
	kit_store_hash_free(&hash);

	/* Another code is another hash. */
	struct kit_store_hash other;
	memset(&other, 0, sizeof(other));
	assert_int_equal(kit_store_hash_get_all(f->store, "analytics:zzz9999", &other),
			 KIT_STORE_NOT_FOUND);
	kit_store_hash_free(&other);
}

/* A redirect without Referer or User-Agent headers is still a click.
 * (The header does not say NULL is allowed; a request without those
 * headers is ordinary, so the test assumes it.) */
static void test_click_without_headers(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(analytics_store_link(f->store, "nohdrs", "bob"), 0);
	assert_int_equal(analytics_store_click(f->store, "nohdrs", NULL, NULL,
					       AFTER_MIDNIGHT), 0);
	struct kit_store_hash hash;
	read_hash(f->store, "analytics:nohdrs", &hash);
	assert_string_equal(kit_store_hash_value(&hash, "total"), "1");
	assert_string_equal(kit_store_hash_value(&hash, "day:2027-01-16"), "1");
	kit_store_hash_free(&hash);
}

#define STORE_TEST(test) \
	cmocka_unit_test_setup_teardown(test, setup_store, teardown_store)

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_browsers),
		cmocka_unit_test(test_edge_before_chrome),
		cmocka_unit_test(test_curl),
		cmocka_unit_test(test_bots),
		cmocka_unit_test(test_other),
		STORE_TEST(test_store_link),
		STORE_TEST(test_store_clicks),
		STORE_TEST(test_click_without_headers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
