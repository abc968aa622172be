/*
 * kit/metrics.h - a process-wide registry of Prometheus metrics, rendered in
 * the Prometheus text exposition format (0.0.4) by /metrics.
 *
 * A metric is a family (name, help, label names); each distinct tuple of
 * label values is a series created on first use. Callers must keep label
 * values bounded (route patterns, not raw paths), or the registry grows
 * without end: it refuses new series past KIT_METRICS_MAX_SERIES per family
 * and counts the refusals in kit_metrics_dropped_series_total.
 *
 * Threads: every function may be called from any thread; one mutex per
 * family guards its series (held for a hash lookup and an add).
 */
#ifndef KIT_METRICS_H
#define KIT_METRICS_H

#include <stddef.h>

#define KIT_METRICS_MAX_LABELS 6
#define KIT_METRICS_MAX_SERIES 2048

enum kit_metric_type { KIT_COUNTER, KIT_GAUGE, KIT_HISTOGRAM };

struct kit_metric;

/* Registers a family, or returns the one already registered under name
 * (same type and labels). labels is NULL-terminated (or NULL for none).
 * buckets (histograms only) are upper bounds in increasing order; NULL
 * picks kit_metrics_latency_buckets. Names and help must be literals or
 * outlive the process. Returns NULL (and prints why) on a bad definition. */
struct kit_metric *kit_metric_register(enum kit_metric_type type,
				       const char *name, const char *help,
				       const char *const *labels,
				       const double *buckets,
				       size_t bucket_count);

/* label_values has one entry per label name, in order (NULL for a metric
 * without labels). A NULL metric (a failed registration) is ignored. */
void kit_metric_add(struct kit_metric *metric, const char *const *label_values,
		    double value);
void kit_metric_set(struct kit_metric *metric, const char *const *label_values,
		    double value);
void kit_metric_observe(struct kit_metric *metric,
			const char *const *label_values, double value);

/* Latency buckets in seconds, from 100 µs to 10 s: most of a kit request's
 * work is sub-millisecond, so the guide's 0.1 s first bucket would put
 * every request in one bucket. */
extern const double kit_metrics_latency_buckets[];
extern const size_t kit_metrics_latency_bucket_count;

/* A callback run before every render, to set gauges from live state (pool
 * sizes, process memory). */
void kit_metrics_on_render(void (*collect)(void *arg), void *arg);

/* Renders every family. Returns a malloc'd NUL-terminated text; *len gets
 * its length. NULL when out of memory. */
char *kit_metrics_render(size_t *len);

/* Forgets every family (unit tests). */
void kit_metrics_reset(void);

#endif
