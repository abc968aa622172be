/*
 * test_notifications.c - the notifications service's field rules
 * (services/notifications) and analytics' milestones (services/analytics/
 * milestones.c), the two halves of "a link passes N clicks".
 *
 * Threats: a notification text with control characters (it is shown to the
 * user, and logged); an id that could be read as two (spaces, slashes); a
 * milestone skipped because two clicks arrived together (the rule is "the
 * largest milestone at or below the total", never "exactly N"); and a bad
 * CLICK_MILESTONES that starts a service which then never notifies anyone.
 * The whole path (clicks through the gateway, notifications down and back,
 * sent twice and stored once) is tests/phase2.sh's "notifications" section.
 *
 * Run alone: make && build/tests/test_notifications
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "analytics/analytics.h"
#include "kit/kit.h"
#include "notifications/notifications.h"

static void test_ids(void **unused)
{
	assert_true(notifications_id_is_valid("Ab3dE9x-clicks-10"));
	assert_true(notifications_id_is_valid("a:b.c_d"));
	assert_false(notifications_id_is_valid(""));
	assert_false(notifications_id_is_valid("a b"));
	assert_false(notifications_id_is_valid("a/b"));
	char longest[102];
	memset(longest, 'x', 101);
	longest[101] = '\0';
	assert_false(notifications_id_is_valid(longest));
	longest[100] = '\0';
	assert_true(notifications_id_is_valid(longest));
}

static void test_kinds_and_texts(void **unused)
{
	assert_true(notifications_kind_is_valid("link_clicks"));
	assert_false(notifications_kind_is_valid("Link"));
	assert_false(notifications_kind_is_valid(""));
	assert_true(notifications_text_is_valid("Your link passed 10 clicks. Ünïcode is fine."));
	assert_false(notifications_text_is_valid(""));
	assert_false(notifications_text_is_valid("line\nbreak"));
	assert_false(notifications_text_is_valid("bell\a"));
	assert_false(notifications_text_is_valid("del\x7f"));
	char longest[282];
	memset(longest, 'x', 281);
	longest[281] = '\0';
	assert_false(notifications_text_is_valid(longest));
	longest[280] = '\0';
	assert_true(notifications_text_is_valid(longest));
}

/* A fresh app with CLICK_MILESTONES=value; returns init's result. */
static int init_with(const char *value)
{
	struct kit_app *app;
	int result;

	setenv("CLICK_MILESTONES", value, 1);
	app = kit_app_new("milestones-test", 1);
	result = analytics_milestones_init(app);
	kit_app_free(app);
	unsetenv("CLICK_MILESTONES");
	return result;
}

static void test_the_milestone_reached(void **unused)
{
	assert_int_equal(init_with("10,100,1000"), 0);
	assert_int_equal(analytics_milestone_reached(0), 0);
	assert_int_equal(analytics_milestone_reached(9), 0);
	assert_int_equal(analytics_milestone_reached(10), 10);
	/* Two clicks together may read 11 and nobody 10: still "passed 10". */
	assert_int_equal(analytics_milestone_reached(11), 10);
	assert_int_equal(analytics_milestone_reached(999), 100);
	assert_int_equal(analytics_milestone_reached(1000000), 1000);
}

static void test_bad_milestones_fail_start_up(void **unused)
{
	assert_int_equal(init_with("3,5"), 0); /* control */
	assert_int_equal(init_with("5,3"), -1);   /* not ascending */
	assert_int_equal(init_with("10,10"), -1); /* a repeat */
	assert_int_equal(init_with("0,10"), -1);
	assert_int_equal(init_with("ten"), -1);
	assert_int_equal(init_with("10,"), -1);
	assert_int_equal(init_with("1,2,3,4,5,6,7,8,9"), -1); /* more than 8 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_kinds_and_texts),
		cmocka_unit_test(test_the_milestone_reached),
		cmocka_unit_test(test_bad_milestones_fail_start_up),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
