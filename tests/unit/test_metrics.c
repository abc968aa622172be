/*
 * test_metrics.c - kit/metrics.h: registering families, add/set/observe,
 * and the Prometheus text exposition format (0.0.4) kit_metrics_render()
 * writes: HELP/TYPE lines, label escaping, cumulative histogram buckets.
 *
 * Values are compared as numbers (strtod), not as text, so "1" and "1.0"
 * both pass; label sets are compared as text because their spelling is the
 * format. When promtool is on PATH, one test also has it lint a render.
 * kit_metrics_reset() runs before every test.
 *
 * Run alone: make && build/tests/test_metrics
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kit/metrics.h"

static int reset(void **state)
{
	kit_metrics_reset();
	return 0;
}

static char *render(void)
{
	size_t len = 0;
	char *text = kit_metrics_render(&len);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	return text;
}

/* True when text has exactly this line. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return false;
}

/* The value of the sample line "<series> <value>"; fails when absent. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ') {
			char *end = NULL;
			double v = strtod(p + n + 1, &end);
			if (end == p + n + 1)
				fail_msg("unparsable value on \"%s\"", series);
			return v;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	fail_msg("no sample \"%s\" in:\n%s", series, text);
	return NAN;
}

static size_t count_lines_starting(const char *text, const char *prefix)
{
	size_t count = 0, n = strlen(prefix);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, n) == 0)
			count++;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return count;
}

static const char *const LABEL_A[] = { "a", NULL };

static void test_counter_renders(void **state)
{
	struct kit_metric *m = kit_metric_register(KIT_COUNTER, "test_requests_total",
						   "Requests seen.", LABEL_A,
						   NULL, 0);
	assert_non_null(m);
	const char *x[] = { "x" };
	kit_metric_add(m, x, 1);

	char *text = render();
	assert_true(has_line(text, "# HELP test_requests_total Requests seen."));
	assert_true(has_line(text, "# TYPE test_requests_total counter"));
	assert_true(sample(text, "test_requests_total{a=\"x\"}") == 1.0);
	/* HELP and TYPE come before the samples. */
	const char *help = strstr(text, "# HELP test_requests_total");
	const char *type = strstr(text, "# TYPE test_requests_total");
	const char *first = strstr(text, "\ntest_requests_total{");
	assert_non_null(first);
	assert_true(help < type && type < first);
	free(text);
}

static void test_counter_accumulates(void **state)
{
	struct kit_metric *m = kit_metric_register(KIT_COUNTER, "test_hits_total",
						   "Hits.", LABEL_A, NULL, 0);
	assert_non_null(m);
	const char *x[] = { "x" }, *y[] = { "y" };
	kit_metric_add(m, x, 1);
	kit_metric_add(m, x, 2);
	kit_metric_add(m, y, 0.5);
	kit_metric_add(m, x, 4);

	char *text = render();
	assert_true(sample(text, "test_hits_total{a=\"x\"}") == 7.0);
	assert_true(sample(text, "test_hits_total{a=\"y\"}") == 0.5);
	assert_int_equal(count_lines_starting(text, "test_hits_total{"), 2);
	assert_int_equal(count_lines_starting(text, "# TYPE test_hits_total "), 1);
	free(text);

	/* Large counts keep every digit (a "%g" render would print
	 * 1.23457e+08 and lose the low ones). */
	kit_metric_add(m, y, 123456789);
	text = render();
	assert_true(sample(text, "test_hits_total{a=\"y\"}") == 123456789.5);
	free(text);
}

static void test_two_labels_in_order(void **state)
{
	static const char *const labels[] = { "method", "route", NULL };
	struct kit_metric *m = kit_metric_register(KIT_COUNTER, "test_routes_total",
						   "By route.", labels, NULL, 0);
	assert_non_null(m);
	const char *v[] = { "GET", "/expand/:code" };
	kit_metric_add(m, v, 3);
	char *text = render();
	assert_true(sample(text, "test_routes_total{method=\"GET\",route=\"/expand/:code\"}")
		    == 3.0);
	free(text);
}

static void test_gauge_set(void **state)
{
	struct kit_metric *g = kit_metric_register(KIT_GAUGE, "test_in_flight",
						   "In flight.", NULL, NULL, 0);
	assert_non_null(g);
	kit_metric_set(g, NULL, 5);
	kit_metric_set(g, NULL, 2);
	kit_metric_add(g, NULL, -1);

	char *text = render();
	assert_true(has_line(text, "# TYPE test_in_flight gauge"));
	/* No labels: "name value" (or "name{} value"). */
	double v = strstr(text, "\ntest_in_flight{} ") != NULL
			   ? sample(text, "test_in_flight{}")
			   : sample(text, "test_in_flight");
	assert_true(v == 1.0);
	free(text);
}

/* Threat: a label value (a route, a user agent) that breaks out of its
 * quotes or its line and forges samples. " \ and newline must be written
 * as \" \\ and \n. */
static void test_label_escaping(void **state)
{
	struct kit_metric *m = kit_metric_register(KIT_COUNTER, "test_escape_total",
						   "Escaping.", LABEL_A, NULL, 0);
	assert_non_null(m);
	const char *plain[] = { "plain" };
	const char *nasty[] = { "q\"b\\s\nforged_total 999" };
	kit_metric_add(m, plain, 1); /* control */
	kit_metric_add(m, nasty, 1);

	char *text = render();
	assert_true(sample(text, "test_escape_total{a=\"plain\"}") == 1.0);
	assert_true(sample(text, "test_escape_total{a=\"q\\\"b\\\\s\\nforged_total 999\"}")
		    == 1.0);
	assert_false(has_line(text, "forged_total 999\"} 1"));
	assert_int_equal(count_lines_starting(text, "forged_total"), 0);
	free(text);
}

/* Newlines in help text are escaped too (\n and \\ in HELP). */
static void test_help_escaping(void **state)
{
	struct kit_metric *m = kit_metric_register(KIT_GAUGE, "test_help_gauge",
						   "line one\nline two \\ end",
						   NULL, NULL, 0);
	assert_non_null(m);
	kit_metric_set(m, NULL, 1);
	char *text = render();
	assert_true(has_line(text, "# HELP test_help_gauge line one\\nline two \\\\ end"));
	free(text);
}

struct bucket_line {
	double le;
	double count;
};

/* Reads the "<name>_bucket{...le="..."} n" lines in order. */
static size_t read_buckets(const char *text, const char *name,
			   struct bucket_line *out, size_t max)
{
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "%s_bucket{", name);
	size_t n = 0;
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, strlen(prefix)) == 0) {
			assert_true(n < max);
			const char *eol = strchr(p, '\n');
			const char *le = strstr(p, "le=\"");
			assert_non_null(le);
			assert_true(eol == NULL || le < eol);
			le += 4;
			if (strncmp(le, "+Inf\"", 5) == 0)
				out[n].le = INFINITY;
			else
				out[n].le = strtod(le, NULL);
			const char *close = strstr(p, "} ");
			assert_non_null(close);
			out[n].count = strtod(close + 2, NULL);
			n++;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return n;
}

static void test_histogram(void **state)
{
	static const double buckets[] = { 0.1, 0.5, 1.0 };
	struct kit_metric *h = kit_metric_register(KIT_HISTOGRAM, "test_latency_seconds",
						   "Latency.", NULL, buckets, 3);
	assert_non_null(h);
	kit_metric_observe(h, NULL, 0.05); /* below the first bound */
	kit_metric_observe(h, NULL, 0.1);  /* on a bound: le is <=   */
	kit_metric_observe(h, NULL, 0.3);  /* between bounds         */
	kit_metric_observe(h, NULL, 0.5);  /* on a bound             */
	kit_metric_observe(h, NULL, 2.0);  /* above the last bound   */

	char *text = render();
	assert_true(has_line(text, "# TYPE test_latency_seconds histogram"));
	struct bucket_line b[8];
	size_t n = read_buckets(text, "test_latency_seconds", b, 8);
	assert_int_equal(n, 4);
	assert_true(b[0].le == 0.1 && b[0].count == 2);
	assert_true(b[1].le == 0.5 && b[1].count == 4);
	assert_true(b[2].le == 1.0 && b[2].count == 4);
	assert_true(isinf(b[3].le) && b[3].count == 5);
	double count = strstr(text, "\ntest_latency_seconds_count{} ") != NULL
			       ? sample(text, "test_latency_seconds_count{}")
			       : sample(text, "test_latency_seconds_count");
	double sum = strstr(text, "\ntest_latency_seconds_sum{} ") != NULL
			     ? sample(text, "test_latency_seconds_sum{}")
			     : sample(text, "test_latency_seconds_sum");
	assert_true(count == 5);
	assert_true(fabs(sum - 2.95) < 1e-9);
	free(text);
}

static void test_histogram_with_labels(void **state)
{
	static const char *const labels[] = { "route", NULL };
	static const double buckets[] = { 1, 2 };
	struct kit_metric *h = kit_metric_register(KIT_HISTOGRAM, "test_size_bytes",
						   "Sizes.", labels, buckets, 2);
	assert_non_null(h);
	const char *r1[] = { "/a" }, *r2[] = { "/b" };
	kit_metric_observe(h, r1, 1.5);
	kit_metric_observe(h, r2, 0.5);
	kit_metric_observe(h, r2, 3);

	char *text = render();
	assert_true(sample(text, "test_size_bytes_bucket{route=\"/a\",le=\"+Inf\"}") == 1);
	assert_true(sample(text, "test_size_bytes_bucket{route=\"/b\",le=\"+Inf\"}") == 2);
	assert_true(sample(text, "test_size_bytes_count{route=\"/a\"}") == 1);
	assert_true(sample(text, "test_size_bytes_count{route=\"/b\"}") == 2);
	assert_true(sample(text, "test_size_bytes_sum{route=\"/b\"}") == 3.5);
	free(text);
}

static void test_latency_buckets(void **state)
{
	assert_true(kit_metrics_latency_bucket_count >= 2);
	assert_true(fabs(kit_metrics_latency_buckets[0] - 0.0001) < 1e-12);
	assert_true(kit_metrics_latency_buckets[kit_metrics_latency_bucket_count - 1]
		    == 10.0);
	for (size_t i = 1; i < kit_metrics_latency_bucket_count; i++)
		assert_true(kit_metrics_latency_buckets[i - 1]
			    < kit_metrics_latency_buckets[i]);

	/* NULL buckets pick them. */
	struct kit_metric *h = kit_metric_register(KIT_HISTOGRAM, "test_default_seconds",
						   "Default buckets.", NULL, NULL, 0);
	assert_non_null(h);
	kit_metric_observe(h, NULL, 0.001);
	char *text = render();
	struct bucket_line b[64];
	size_t n = read_buckets(text, "test_default_seconds", b, 64);
	assert_int_equal(n, kit_metrics_latency_bucket_count + 1);
	free(text);
}

static void test_register_twice_same_family(void **state)
{
	struct kit_metric *a = kit_metric_register(KIT_COUNTER, "test_twice_total",
						   "Twice.", LABEL_A, NULL, 0);
	struct kit_metric *b = kit_metric_register(KIT_COUNTER, "test_twice_total",
						   "Twice.", LABEL_A, NULL, 0);
	assert_non_null(a);
	assert_ptr_equal(a, b);
	const char *x[] = { "x" };
	kit_metric_add(a, x, 1);
	kit_metric_add(b, x, 1);
	char *text = render();
	assert_true(sample(text, "test_twice_total{a=\"x\"}") == 2);
	assert_int_equal(count_lines_starting(text, "# TYPE test_twice_total "), 1);
	free(text);
}

/* "Returns NULL (and prints why) on a bad definition": a name Prometheus
 * cannot parse. */
static void test_bad_name_refused(void **state)
{
	assert_non_null(kit_metric_register(KIT_COUNTER, "test_good_total", "Good.",
					    NULL, NULL, 0)); /* control */
	assert_null(kit_metric_register(KIT_COUNTER, "bad name", "x", NULL, NULL, 0));
	assert_null(kit_metric_register(KIT_COUNTER, "9starts_with_digit", "x",
					NULL, NULL, 0));
	assert_null(kit_metric_register(KIT_COUNTER, "", "x", NULL, NULL, 0));
}

/* A name already registered with another type is a bad definition: the
 * caller would otherwise write gauge values into a counter. */
static void test_type_conflict_refused(void **state)
{
	assert_non_null(kit_metric_register(KIT_COUNTER, "test_good_total", "Good.",
					    NULL, NULL, 0));
	assert_null(kit_metric_register(KIT_GAUGE, "test_good_total", "Good.",
					NULL, NULL, 0));
}

/* Buckets are "upper bounds in increasing order"; out of order they would
 * render le lines that are not cumulative, which Prometheus rejects. */
static void test_unordered_buckets_refused(void **state)
{
	static const double ordered[] = { 0.5, 1 };
	static const double unordered[] = { 1, 0.5 };
	static const double repeated[] = { 0.5, 0.5 };
	assert_non_null(kit_metric_register(KIT_HISTOGRAM, "test_ordered_seconds",
					    "x", NULL, ordered, 2)); /* control */
	assert_null(kit_metric_register(KIT_HISTOGRAM, "test_unordered_seconds",
					"x", NULL, unordered, 2));
	assert_null(kit_metric_register(KIT_HISTOGRAM, "test_repeated_seconds",
					"x", NULL, repeated, 2));
}

/* Threat: unbounded label values (raw paths) growing the registry without
 * end. Past KIT_METRICS_MAX_SERIES the family refuses new series and
 * counts the refusals. */
static void test_series_cap(void **state)
{
	struct kit_metric *m = kit_metric_register(KIT_COUNTER, "test_paths_total",
						   "By path.", LABEL_A, NULL, 0);
	assert_non_null(m);
	char value[32];
	const char *v[] = { value };
	for (int i = 0; i < KIT_METRICS_MAX_SERIES + 10; i++) {
		snprintf(value, sizeof(value), "/p/%d", i);
		kit_metric_add(m, v, 1);
	}
	/* An existing series still counts. */
	snprintf(value, sizeof(value), "/p/0");
	kit_metric_add(m, v, 1);

	char *text = render();
	assert_int_equal(count_lines_starting(text, "test_paths_total{"),
			 KIT_METRICS_MAX_SERIES);
	assert_true(sample(text, "test_paths_total{a=\"/p/0\"}") == 2);
	assert_non_null(strstr(text, "kit_metrics_dropped_series_total"));
	free(text);
}

static struct kit_metric *collected_gauge;
static bool collect_enabled;

static void collect(void *arg)
{
	if (collect_enabled && collected_gauge != NULL)
		kit_metric_set(collected_gauge, NULL, *(double *)arg);
}

static void test_on_render_callback(void **state)
{
	static double live_value = 42;
	collected_gauge = kit_metric_register(KIT_GAUGE, "test_collected",
					      "Set at render.", NULL, NULL, 0);
	assert_non_null(collected_gauge);
	collect_enabled = true;
	kit_metrics_on_render(collect, &live_value);
	char *text = render();
	collect_enabled = false; /* the callback may outlive this test */
	double v = strstr(text, "\ntest_collected{} ") != NULL
			   ? sample(text, "test_collected{}")
			   : sample(text, "test_collected");
	assert_true(v == 42);
	free(text);
}

static void test_reset_forgets(void **state)
{
	struct kit_metric *m = kit_metric_register(KIT_COUNTER, "test_forgotten_total",
						   "Forgotten.", NULL, NULL, 0);
	assert_non_null(m);
	kit_metric_add(m, NULL, 1);
	char *text = render();
	assert_non_null(strstr(text, "test_forgotten_total"));
	free(text);
	kit_metrics_reset();
	text = render();
	assert_null(strstr(text, "test_forgotten_total"));
	free(text);
}

/* promtool, when installed, parses and lints a render with every type. */
static void test_promtool_accepts_render(void **state)
{
	if (system("command -v promtool >/dev/null 2>&1") != 0)
		skip(); /* promtool is not installed */

	static const char *const labels[] = { "route", "status", NULL };
	struct kit_metric *c = kit_metric_register(KIT_COUNTER, "test_http_requests_total",
						   "HTTP requests.", labels, NULL, 0);
	struct kit_metric *g = kit_metric_register(KIT_GAUGE, "test_in_flight_requests",
						   "Requests in flight.", NULL, NULL, 0);
	struct kit_metric *h = kit_metric_register(KIT_HISTOGRAM,
						   "test_request_duration_seconds",
						   "Request latency.", labels, NULL, 0);
	assert_non_null(c);
	assert_non_null(g);
	assert_non_null(h);
	const char *ok[] = { "/expand/:code", "200" };
	const char *nasty[] = { "a\"b\\c\nd", "500" };
	kit_metric_add(c, ok, 3);
	kit_metric_add(c, nasty, 1);
	kit_metric_set(g, NULL, 2);
	kit_metric_observe(h, ok, 0.0003);
	kit_metric_observe(h, ok, 0.2);
	kit_metric_observe(h, nasty, 20);

	char *text = render();
	char path[] = "/tmp/kit-test-metrics-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	free(text);

	char cmd[256];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	int rc = system(cmd);
	unlink(path);
	assert_int_equal(rc, 0);
}

#define T(test) cmocka_unit_test_setup(test, reset)

/* An optional argument runs only the tests whose names match it
 * (cmocka's pattern: '*' and '?' wildcards). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		T(test_counter_renders),
		T(test_counter_accumulates),
		T(test_two_labels_in_order),
		T(test_gauge_set),
		T(test_label_escaping),
		T(test_help_escaping),
		T(test_histogram),
		T(test_histogram_with_labels),
		T(test_latency_buckets),
		T(test_register_twice_same_family),
		T(test_bad_name_refused),
		T(test_type_conflict_refused),
		T(test_unordered_buckets_refused),
		T(test_series_cap),
		T(test_on_render_callback),
		T(test_reset_forgets),
		T(test_promtool_accepts_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
