/*
 * metrics_registry.c - the process-wide Prometheus registry (kit/metrics.h)
 * and its text exposition format.
 *
 * A family holds its series in an open-addressed hash table keyed by the
 * joined label values. One mutex per family: a request takes it twice (the
 * counter and the histogram), each time for a lookup and an add, which on
 * two cores costs far less than the request's own syscalls. Series are
 * never removed; label values must stay bounded (route patterns, not paths).
 *
 * Rendering copies nothing under the lock but numbers; the text is built
 * into a growing buffer that the caller frees.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit/metrics.h"
#include "kit/noncrypto.h"

#define MAX_FAMILIES 64
#define MAX_BUCKETS 24
#define TABLE_SIZE (KIT_METRICS_MAX_SERIES * 2) /* open addressing, load <= 0.5 */
#define MAX_COLLECTORS 8

const double kit_metrics_latency_buckets[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t kit_metrics_latency_bucket_count =
	sizeof(kit_metrics_latency_buckets) / sizeof(kit_metrics_latency_buckets[0]);

struct series {
	char *key;               /* label values joined by '\x1f' */
	char *label_values[KIT_METRICS_MAX_LABELS];
	double value;            /* counter, gauge; histogram sum  */
	unsigned long long count;                       /* histogram */
	unsigned long long buckets[MAX_BUCKETS];        /* histogram, not cumulative */
};

struct kit_metric {
	enum kit_metric_type type;
	const char *name;
	const char *help;
	const char *labels[KIT_METRICS_MAX_LABELS];
	size_t label_count;
	double bounds[MAX_BUCKETS];
	size_t bucket_count;

	pthread_mutex_t lock;    /* guards table, order, series_count */
	struct series **table;   /* TABLE_SIZE slots */
	struct series **order;   /* insertion order, for rendering */
	size_t series_count;
	unsigned long long dropped;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kit_metric *families[MAX_FAMILIES];
static size_t family_count;
static struct {
	void (*collect)(void *arg);
	void *arg;
} collectors[MAX_COLLECTORS];
static size_t collector_count;

static bool is_valid_name(const char *name)
{
	if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789_:") == strlen(name);
}

static struct series *find_series(struct kit_metric *metric,
				  const char *const *label_values);

struct kit_metric *kit_metric_register(enum kit_metric_type type,
				       const char *name, const char *help,
				       const char *const *labels,
				       const double *buckets,
				       size_t bucket_count)
{
	struct kit_metric *metric = NULL;

	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < family_count; i++) {
		if (strcmp(families[i]->name, name) == 0) {
			metric = families[i]->type == type ? families[i] : NULL;
			if (metric == NULL)
				fprintf(stderr, "metrics: %s registered twice with different types\n", name);
			goto out;
		}
	}
	if (!is_valid_name(name) || family_count == MAX_FAMILIES) {
		fprintf(stderr, "metrics: cannot register %s (bad name or too many families)\n", name);
		goto out;
	}
	if (type == KIT_HISTOGRAM && buckets == NULL) {
		buckets = kit_metrics_latency_buckets;
		bucket_count = kit_metrics_latency_bucket_count;
	}
	if (bucket_count > MAX_BUCKETS) {
		fprintf(stderr, "metrics: %s has more than %d buckets\n", name, MAX_BUCKETS);
		goto out;
	}
	for (size_t i = 1; type == KIT_HISTOGRAM && i < bucket_count; i++) {
		if (!(buckets[i] > buckets[i - 1])) {
			fprintf(stderr, "metrics: %s buckets must strictly increase\n", name);
			goto out;
		}
	}
	metric = calloc(1, sizeof(*metric));
	if (metric == NULL)
		goto out;
	metric->table = calloc(TABLE_SIZE, sizeof(*metric->table));
	metric->order = calloc(KIT_METRICS_MAX_SERIES, sizeof(*metric->order));
	if (metric->table == NULL || metric->order == NULL) {
		free(metric->table);
		free(metric->order);
		free(metric);
		metric = NULL;
		goto out;
	}
	metric->type = type;
	metric->name = name;
	metric->help = help;
	for (; labels != NULL && labels[metric->label_count] != NULL &&
	       metric->label_count < KIT_METRICS_MAX_LABELS;
	     metric->label_count++)
		metric->labels[metric->label_count] = labels[metric->label_count];
	if (type == KIT_HISTOGRAM) {
		memcpy(metric->bounds, buckets, bucket_count * sizeof(double));
		metric->bucket_count = bucket_count;
	}
	pthread_mutex_init(&metric->lock, NULL);
	families[family_count++] = metric;
	/* A metric without labels has exactly one series: create it now, so
	 * it shows (at 0) from the first scrape rather than appearing later. */
	if (metric->label_count == 0 && type != KIT_HISTOGRAM)
		find_series(metric, NULL);
out:
	pthread_mutex_unlock(&registry_lock);
	return metric;
}

/* The series for label_values, created on first use. Called with the
 * family's lock held. NULL when the family is full or memory is out. */
static struct series *find_series(struct kit_metric *metric,
				  const char *const *label_values)
{
	char key[1024];
	size_t used = 0;

	key[0] = '\0';
	for (size_t i = 0; i < metric->label_count; i++) {
		int n = snprintf(key + used, sizeof(key) - used, "%s\x1f",
				 label_values[i] != NULL ? label_values[i] : "");
		if (n < 0 || (size_t)n >= sizeof(key) - used)
			return NULL;
		used += (size_t)n;
	}

	size_t slot = kit_hash_string(key) % TABLE_SIZE;
	while (metric->table[slot] != NULL) {
		if (strcmp(metric->table[slot]->key, key) == 0)
			return metric->table[slot];
		slot = (slot + 1) % TABLE_SIZE;
	}
	if (metric->series_count == KIT_METRICS_MAX_SERIES) {
		metric->dropped++;
		return NULL;
	}

	struct series *series = calloc(1, sizeof(*series));
	if (series == NULL)
		return NULL;
	series->key = strdup(key);
	for (size_t i = 0; i < metric->label_count; i++)
		series->label_values[i] = strdup(label_values[i] != NULL ? label_values[i] : "");
	metric->table[slot] = series;
	metric->order[metric->series_count++] = series;
	return series;
}

static void update(struct kit_metric *metric, const char *const *label_values,
		   double value, char how)
{
	struct series *series;

	if (metric == NULL)
		return;
	pthread_mutex_lock(&metric->lock);
	series = find_series(metric, label_values);
	if (series != NULL) {
		if (how == '+') {
			series->value += value;
		} else if (how == '=') {
			series->value = value;
		} else {
			size_t i = 0;
			while (i < metric->bucket_count && value > metric->bounds[i])
				i++;
			if (i < metric->bucket_count)
				series->buckets[i]++;
			series->value += value;
			series->count++;
		}
	}
	pthread_mutex_unlock(&metric->lock);
}

void kit_metric_add(struct kit_metric *metric, const char *const *label_values,
		    double value)
{
	update(metric, label_values, value, '+');
}

void kit_metric_set(struct kit_metric *metric, const char *const *label_values,
		    double value)
{
	update(metric, label_values, value, '=');
}

void kit_metric_observe(struct kit_metric *metric,
			const char *const *label_values, double value)
{
	update(metric, label_values, value, 'o');
}

void kit_metrics_on_render(void (*collect)(void *arg), void *arg)
{
	pthread_mutex_lock(&registry_lock);
	if (collector_count < MAX_COLLECTORS) {
		collectors[collector_count].collect = collect;
		collectors[collector_count].arg = arg;
		collector_count++;
	}
	pthread_mutex_unlock(&registry_lock);
}

/* ---- text exposition format ---- */

struct text {
	char *data;
	size_t len, capacity;
	bool failed;
};

static void text_append(struct text *text, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void text_append(struct text *text, const char *fmt, ...)
{
	va_list args;
	int n;

	if (text->failed)
		return;
	for (;;) {
		size_t room = text->capacity - text->len;

		va_start(args, fmt);
		n = vsnprintf(text->data + text->len, room, fmt, args);
		va_end(args);
		if (n < 0) {
			text->failed = true;
			return;
		}
		if ((size_t)n < room) {
			text->len += (size_t)n;
			return;
		}
		size_t capacity = text->capacity * 2 + (size_t)n;
		char *bigger = realloc(text->data, capacity);
		if (bigger == NULL) {
			text->failed = true;
			return;
		}
		text->data = bigger;
		text->capacity = capacity;
	}
}

/* Label values escape backslash, double quote and newline; HELP text
 * escapes backslash and newline (text format 0.0.4). */
static void append_escaped(struct text *text, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			text_append(text, "\\\\");
		else if (*s == '\n')
			text_append(text, "\\n");
		else if (*s == '"' && quote)
			text_append(text, "\\\"");
		else
			text_append(text, "%c", *s);
	}
}

/* The shortest text that reads back as value: 0.00025, not
 * 0.00025000000000000001 (what %.17g prints). */
static const char *shortest_number(double value, char *out)
{
	for (int digits = 6; digits <= 17; digits++) {
		snprintf(out, 32, "%.*g", digits, value);
		if (strtod(out, NULL) == value)
			break;
	}
	return out;
}

static void append_number(struct text *text, double value)
{
	if (isinf(value))
		text_append(text, value > 0 ? "+Inf" : "-Inf");
	else if (isnan(value))
		text_append(text, "NaN");
	else
		text_append(text, "%s", shortest_number(value, (char[32]){ 0 }));
}

/* {a="x",b="y"} with an optional extra label (le for buckets). */
static void append_labels(struct text *text, const struct kit_metric *metric,
			  const struct series *series, const char *extra_name,
			  double extra_value)
{
	bool any = metric->label_count > 0 || extra_name != NULL;

	if (!any)
		return;
	text_append(text, "{");
	for (size_t i = 0; i < metric->label_count; i++) {
		text_append(text, "%s%s=\"", i ? "," : "", metric->labels[i]);
		append_escaped(text, series->label_values[i], true);
		text_append(text, "\"");
	}
	if (extra_name != NULL) {
		text_append(text, "%s%s=\"", metric->label_count ? "," : "", extra_name);
		append_number(text, extra_value);
		text_append(text, "\"");
	}
	text_append(text, "}");
}

static void render_family(struct text *text, struct kit_metric *metric)
{
	static const char *const type_names[] = { "counter", "gauge", "histogram" };

	text_append(text, "# HELP %s ", metric->name);
	append_escaped(text, metric->help, false);
	text_append(text, "\n# TYPE %s %s\n", metric->name, type_names[metric->type]);

	pthread_mutex_lock(&metric->lock);
	for (size_t s = 0; s < metric->series_count; s++) {
		const struct series *series = metric->order[s];

		if (metric->type != KIT_HISTOGRAM) {
			text_append(text, "%s", metric->name);
			append_labels(text, metric, series, NULL, 0);
			text_append(text, " ");
			append_number(text, series->value);
			text_append(text, "\n");
			continue;
		}
		unsigned long long cumulative = 0;
		for (size_t b = 0; b < metric->bucket_count; b++) {
			cumulative += series->buckets[b];
			text_append(text, "%s_bucket", metric->name);
			append_labels(text, metric, series, "le", metric->bounds[b]);
			text_append(text, " %llu\n", cumulative);
		}
		text_append(text, "%s_bucket", metric->name);
		append_labels(text, metric, series, "le", INFINITY);
		text_append(text, " %llu\n%s_sum", series->count, metric->name);
		append_labels(text, metric, series, NULL, 0);
		text_append(text, " ");
		append_number(text, series->value);
		text_append(text, "\n%s_count", metric->name);
		append_labels(text, metric, series, NULL, 0);
		text_append(text, " %llu\n", series->count);
	}
	pthread_mutex_unlock(&metric->lock);
}

char *kit_metrics_render(size_t *len)
{
	struct text text = { .data = malloc(8192), .capacity = 8192 };
	unsigned long long dropped = 0;

	if (text.data == NULL)
		return NULL;
	text.data[0] = '\0';
	for (size_t i = 0; i < collector_count; i++)
		collectors[i].collect(collectors[i].arg);

	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < family_count; i++) {
		if (families[i]->series_count > 0)
			render_family(&text, families[i]);
		dropped += families[i]->dropped;
	}
	pthread_mutex_unlock(&registry_lock);
	text_append(&text,
		    "# HELP kit_metrics_dropped_series_total Series refused because a family reached its limit.\n"
		    "# TYPE kit_metrics_dropped_series_total counter\n"
		    "kit_metrics_dropped_series_total %llu\n", dropped);
	if (text.failed) {
		free(text.data);
		return NULL;
	}
	if (len != NULL)
		*len = text.len;
	return text.data;
}

void kit_metrics_reset(void)
{
	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < family_count; i++) {
		struct kit_metric *metric = families[i];

		for (size_t s = 0; s < metric->series_count; s++) {
			struct series *series = metric->order[s];
			free(series->key);
			for (size_t l = 0; l < metric->label_count; l++)
				free(series->label_values[l]);
			free(series);
		}
		pthread_mutex_destroy(&metric->lock);
		free(metric->table);
		free(metric->order);
		free(metric);
	}
	family_count = 0;
	collector_count = 0;
	pthread_mutex_unlock(&registry_lock);
}
