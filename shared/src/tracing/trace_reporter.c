/*
 * trace_reporter.c - one thread per process that sends finished spans to
 * Jaeger, so that no request ever waits on a tracing backend
 * (trace_reporter.h).
 *
 * Spans arrive through a bounded queue (a ring of TRACE_QUEUE_CAPACITY).
 * The thread sleeps until one arrives, then waits up to 200 ms for more
 * (or until 100 are there), takes everything queued and sends it: over
 * UDP as emitBatch packets of at most 65000 bytes (a bigger batch is split
 * into several packets), or over HTTP as one Batch POSTed to the collector
 * (libcurl, 1 s timeout). A full queue drops the new span rather than wait:
 * tracing must never slow the service down. What happened is counted:
 *   kit_trace_spans_reported_total             sent (UDP accepted by the
 *                                               kernel, HTTP answered 2xx)
 *   kit_trace_spans_dropped_total{reason}      queue_full, too_large,
 *                                               send_failed, not_running
 *   kit_trace_report_errors_total              failed sends (packets, POSTs)
 * UDP has no answer: "reported" means sent, not received.
 *
 * Threads: the queue is guarded by reporter.lock; reporter.wake tells the
 * thread that the first span (or the 100th) arrived or that stop was asked.
 * The socket, the curl handle and the encoding buffers belong to the
 * reporter thread alone. It blocks every signal, so SIGTERM still reaches
 * kit_app_run()'s sigwait() on main()'s thread.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kit/config.h"
#include "kit/metrics.h"
#include "kit/request.h"
#include "tracing/trace_reporter.h"

#define TRACE_QUEUE_CAPACITY 1000       /* spans waiting, at most         */
#define TRACE_FLUSH_SPANS 100           /* send as soon as this many wait */
#define TRACE_FLUSH_INTERVAL_NS 200000000ull /* or 200 ms after the first */
#define TRACE_HTTP_TIMEOUT_MS 1000L

struct trace_reporter {
	/* Set by trace_reporter_start() before the thread starts. */
	struct trace_reporter_config config;
	struct jaeger_process *process;
	atomic_bool running;
	pthread_t thread;

	/* The queue: a ring of TRACE_QUEUE_CAPACITY spans, head first. */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct jaeger_span **ring;
	size_t head;
	size_t count;
	bool stopping;

	/* The reporter thread's own. */
	struct jaeger_span **taken;     /* what one flush sends            */
	struct jaeger_buffer packet;    /* the encoded packet or body      */
	int udp_socket;                 /* -1 until the agent's address resolves */
	struct sockaddr_storage agent_address;
	socklen_t agent_address_len;
	uint32_t seqid;
	CURL *curl;
	struct curl_slist *http_headers;
	bool failing;                   /* the last send failed (log changes only) */

	/* Metrics (thread-safe by themselves). */
	struct kit_metric *reported_total;
	struct kit_metric *dropped_total;
	struct kit_metric *errors_total;
};

static struct trace_reporter reporter = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.udp_socket = -1,
};

/* ---- configuration ---- */

int trace_reporter_config_from_env(struct trace_reporter_config *config)
{
	const char *kind = kit_env_string("TRACE_REPORTER", "udp-binary");
	const char *host = kit_env_string("JAEGER_AGENT_HOST", "127.0.0.1");
	const char *url = kit_env_string("JAEGER_COLLECTOR_URL",
					 "http://127.0.0.1:14268/api/traces");
	long default_port;

	memset(config, 0, sizeof(*config));
	if (strcmp(kind, "udp-binary") == 0) {
		config->kind = TRACE_REPORTER_UDP_BINARY;
		default_port = 6832;
	} else if (strcmp(kind, "udp-compact") == 0) {
		config->kind = TRACE_REPORTER_UDP_COMPACT;
		default_port = 6831;
	} else if (strcmp(kind, "http") == 0) {
		config->kind = TRACE_REPORTER_HTTP;
		default_port = 6832; /* not used */
	} else {
		fprintf(stderr, "TRACE_REPORTER: \"%s\" is not one of udp-binary, udp-compact, http\n",
			kind);
		return -1;
	}
	if (strlen(host) >= sizeof(config->agent_host) ||
	    strpbrk(host, " \t\r\n/") != NULL) {
		fprintf(stderr, "JAEGER_AGENT_HOST: \"%s\" is not a host name or address\n",
			host);
		return -1;
	}
	snprintf(config->agent_host, sizeof(config->agent_host), "%s", host);
	if (kit_env_long("JAEGER_AGENT_PORT", default_port, 1, 65535,
			 &config->agent_port) != 0)
		return -1;
	if (strlen(url) >= sizeof(config->collector_url) ||
	    (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) ||
	    strpbrk(url, " \t\r\n") != NULL) {
		fprintf(stderr, "JAEGER_COLLECTOR_URL: \"%s\" is not an http:// or https:// URL of under %zu bytes\n",
			url, sizeof(config->collector_url));
		return -1;
	}
	snprintf(config->collector_url, sizeof(config->collector_url), "%s", url);
	return 0;
}

/* ---- the request side: queue a span, never wait ---- */

bool trace_reporter_running(void)
{
	return atomic_load(&reporter.running);
}

void trace_reporter_submit(struct jaeger_span *span)
{
	struct trace_reporter *r = &reporter;
	const char *reason = NULL;

	if (span == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	if (!atomic_load(&r->running) || r->stopping) {
		reason = "not_running"; /* a span finished after stop */
	} else if (r->count == TRACE_QUEUE_CAPACITY) {
		reason = "queue_full";
	} else {
		r->ring[(r->head + r->count) % TRACE_QUEUE_CAPACITY] = span;
		r->count++;
		/* The thread sleeps until the first span, then until the
		 * 100th or 200 ms: wake it at those two moments only. */
		if (r->count == 1 || r->count == TRACE_FLUSH_SPANS)
			pthread_cond_signal(&r->wake);
	}
	pthread_mutex_unlock(&r->lock);
	if (reason != NULL) {
		jaeger_span_free(span);
		kit_metric_add(r->dropped_total, (const char *const[]){ reason }, 1);
	}
}

/* ---- the reporter thread: sending ---- */

/* A send failed: count it, and say so on stderr when it starts failing
 * (not for every packet: the agent being down would flood the log). */
static void report_failure(struct trace_reporter *r, size_t spans, const char *why)
{
	kit_metric_add(r->errors_total, NULL, 1);
	kit_metric_add(r->dropped_total, (const char *const[]){ "send_failed" },
		       (double)spans);
	if (!r->failing)
		fprintf(stderr, "tracing: cannot report spans (%s); dropping them until it works again\n",
			why);
	r->failing = true;
}

static void report_success(struct trace_reporter *r, size_t spans)
{
	kit_metric_add(r->reported_total, NULL, (double)spans);
	if (r->failing)
		fprintf(stderr, "tracing: reporting spans works again\n");
	r->failing = false;
}

/* Resolves the agent's address and opens the socket, once it works.
 * Returns true when the socket is ready; why says what failed. */
static bool udp_ready(struct trace_reporter *r, char *why, size_t why_size)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM };
	struct addrinfo *found = NULL;
	char port[16];
	int error;

	if (r->udp_socket >= 0)
		return true;
	snprintf(port, sizeof(port), "%ld", r->config.agent_port);
	error = getaddrinfo(r->config.agent_host, port, &hints, &found);
	if (error != 0) {
		snprintf(why, why_size, "JAEGER_AGENT_HOST %s: %s",
			 r->config.agent_host, gai_strerror(error));
		return false;
	}
	r->udp_socket = socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (r->udp_socket < 0) {
		snprintf(why, why_size, "socket: %s", strerror(errno));
	} else {
		memcpy(&r->agent_address, found->ai_addr, found->ai_addrlen);
		r->agent_address_len = found->ai_addrlen;
	}
	freeaddrinfo(found);
	return r->udp_socket >= 0;
}

/* emitBatch packets of at most JAEGER_UDP_PACKET_MAX bytes, as many as the
 * spans need. */
static void send_udp(struct trace_reporter *r, struct jaeger_span **spans,
		     size_t count)
{
	enum jaeger_protocol protocol = r->config.kind == TRACE_REPORTER_UDP_COMPACT
						? JAEGER_COMPACT : JAEGER_BINARY;
	char why[256];
	size_t done = 0;

	if (!udp_ready(r, why, sizeof(why))) {
		report_failure(r, count, why);
		return;
	}
	while (done < count) {
		size_t fit = jaeger_emit_batch_fit(protocol, r->process, spans + done,
						   count - done, JAEGER_UDP_PACKET_MAX);
		ssize_t sent;

		if (fit == 0) {
			/* jaeger_thrift.h's bounds make this impossible; if
			 * they change, one span must not block the rest. */
			kit_metric_add(r->dropped_total,
				       (const char *const[]){ "too_large" }, 1);
			done++;
			continue;
		}
		jaeger_buffer_reset(&r->packet);
		jaeger_write_emit_batch(&r->packet, protocol, (int32_t)r->seqid++,
					r->process, spans + done, fit);
		if (r->packet.failed) {
			report_failure(r, fit, "out of memory encoding a batch");
		} else {
			sent = sendto(r->udp_socket, r->packet.data, r->packet.len, 0,
				      (const struct sockaddr *)&r->agent_address,
				      r->agent_address_len);
			if (sent == (ssize_t)r->packet.len) {
				report_success(r, fit);
			} else {
				snprintf(why, sizeof(why), "sendto %s:%ld: %s",
					 r->config.agent_host, r->config.agent_port,
					 sent < 0 ? strerror(errno) : "short write");
				report_failure(r, fit, why);
			}
		}
		done += fit;
	}
}

/* The collector's answer is not needed: only its status. */
static size_t discard_body(char *data, size_t size, size_t count, void *arg)
{
	return size * count;
}

/* The curl handle and its fixed options, on first use (on this thread).
 * Returns true when it is ready. */
static bool http_ready(struct trace_reporter *r, char *why, size_t why_size)
{
	CURLcode code;

	if (r->curl != NULL)
		return true;
	r->curl = curl_easy_init();
	r->http_headers = curl_slist_append(NULL, "Content-Type: application/x-thrift");
	if (r->curl == NULL || r->http_headers == NULL) {
		snprintf(why, why_size, "curl_easy_init failed");
		goto fail;
	}
	/* NOSIGNAL: a thread must not get SIGALRM for a DNS timeout. The
	 * collector is internal: an http_proxy in the environment must not
	 * reroute it. */
	code = curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
	if (code == CURLE_OK)
		code = curl_easy_setopt(r->curl, CURLOPT_URL, r->config.collector_url);
	if (code == CURLE_OK)
		code = curl_easy_setopt(r->curl, CURLOPT_PROXY, "");
	if (code == CURLE_OK)
		code = curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->http_headers);
	if (code == CURLE_OK)
		code = curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, TRACE_HTTP_TIMEOUT_MS);
	if (code == CURLE_OK)
		code = curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, discard_body);
	if (code == CURLE_OK)
		code = curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "api-gateway-kit-tracing");
	if (code != CURLE_OK) {
		snprintf(why, why_size, "curl_easy_setopt: %s", curl_easy_strerror(code));
		goto fail;
	}
	return true;
fail:
	curl_easy_cleanup(r->curl);
	r->curl = NULL;
	curl_slist_free_all(r->http_headers);
	r->http_headers = NULL;
	return false;
}

/* One Batch (binary protocol) POSTed to the collector. */
static void send_http(struct trace_reporter *r, struct jaeger_span **spans,
		      size_t count)
{
	char why[CURL_ERROR_SIZE + 64];
	long status = 0;
	CURLcode code;

	if (!http_ready(r, why, sizeof(why))) {
		report_failure(r, count, why);
		return;
	}
	jaeger_buffer_reset(&r->packet);
	jaeger_write_batch(&r->packet, JAEGER_BINARY, r->process, spans, count);
	if (r->packet.failed) {
		report_failure(r, count, "out of memory encoding a batch");
		return;
	}
	code = curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, r->packet.data);
	if (code == CURLE_OK)
		code = curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE, (long)r->packet.len);
	if (code == CURLE_OK)
		code = curl_easy_perform(r->curl);
	if (code == CURLE_OK)
		code = curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	if (code != CURLE_OK) {
		snprintf(why, sizeof(why), "POST %s: %s", r->config.collector_url,
			 curl_easy_strerror(code));
		report_failure(r, count, why);
	} else if (status < 200 || status > 299) {
		snprintf(why, sizeof(why), "POST %s: HTTP %ld", r->config.collector_url,
			 status);
		report_failure(r, count, why);
	} else {
		report_success(r, count);
	}
}

static struct timespec timespec_from_ns(uint64_t ns)
{
	struct timespec when = {
		.tv_sec = (time_t)(ns / 1000000000u),
		.tv_nsec = (long)(ns % 1000000000u),
	};

	return when;
}

/*
 * The thread: sleep until a span is queued; then wait up to 200 ms for
 * more (less when 100 are there or stop is asked); take them all and send
 * them without holding the lock. After stop, it sends what is left and
 * ends.
 */
static void *reporter_main(void *arg)
{
	struct trace_reporter *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		uint64_t deadline;
		size_t taken = 0;
		bool stopping;

		/* 1. A first span, or stop. */
		while (r->count == 0 && !r->stopping)
			pthread_cond_wait(&r->wake, &r->lock);

		/* 2. More, for a while: one packet carries many spans. */
		deadline = kit_now_ns() + TRACE_FLUSH_INTERVAL_NS;
		while (r->count < TRACE_FLUSH_SPANS && !r->stopping &&
		       kit_now_ns() < deadline) {
			struct timespec until = timespec_from_ns(deadline);

			/* ETIMEDOUT and spurious wake-ups go round the loop. */
			pthread_cond_timedwait(&r->wake, &r->lock, &until);
		}

		/* 3. Take everything queued. */
		while (r->count > 0) {
			r->taken[taken++] = r->ring[r->head];
			r->ring[r->head] = NULL;
			r->head = (r->head + 1) % TRACE_QUEUE_CAPACITY;
			r->count--;
		}
		stopping = r->stopping;
		pthread_mutex_unlock(&r->lock);

		/* 4. Send, then free. */
		if (taken > 0) {
			if (r->config.kind == TRACE_REPORTER_HTTP)
				send_http(r, r->taken, taken);
			else
				send_udp(r, r->taken, taken);
			for (size_t i = 0; i < taken; i++)
				jaeger_span_free(r->taken[i]);
		}

		pthread_mutex_lock(&r->lock);
		if (stopping && r->count == 0)
			break;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* ---- start and stop ---- */

static int register_metrics(struct trace_reporter *r)
{
	static const char *const reason_label[] = { "reason", NULL };
	static const char *const reasons[] = { "queue_full", "too_large", "send_failed" };

	r->reported_total = kit_metric_register(
		KIT_COUNTER, "kit_trace_spans_reported_total",
		"Finished spans sent to Jaeger (UDP: handed to the kernel; HTTP: answered 2xx).",
		NULL, NULL, 0);
	r->dropped_total = kit_metric_register(
		KIT_COUNTER, "kit_trace_spans_dropped_total",
		"Finished spans never sent: the queue was full, the span was too large, or the send failed.",
		reason_label, NULL, 0);
	r->errors_total = kit_metric_register(
		KIT_COUNTER, "kit_trace_report_errors_total",
		"Failed attempts to send spans (UDP packets, HTTP POSTs).",
		NULL, NULL, 0);
	if (r->reported_total == NULL || r->dropped_total == NULL ||
	    r->errors_total == NULL)
		return -1;
	kit_metric_add(r->reported_total, NULL, 0);
	kit_metric_add(r->errors_total, NULL, 0);
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		kit_metric_add(r->dropped_total, (const char *const[]){ reasons[i] }, 0);
	return 0;
}

int trace_reporter_start(const struct trace_reporter_config *config,
			 struct jaeger_process *process)
{
	struct trace_reporter *r = &reporter;
	pthread_condattr_t wake_attr;
	sigset_t every_signal, previous;
	int error;

	if (atomic_load(&r->running)) {
		fprintf(stderr, "tracing: the reporter is already running (one per process)\n");
		jaeger_process_free(process);
		return -1;
	}
	r->config = *config;
	r->process = process;
	if (register_metrics(r) != 0) {
		fprintf(stderr, "tracing: could not register the kit_trace_* metrics\n");
		goto fail;
	}

	/* The queue; its condition variable waits on the monotonic clock,
	 * like kit_now_ns(). */
	r->ring = calloc(TRACE_QUEUE_CAPACITY, sizeof(*r->ring));
	r->taken = calloc(TRACE_QUEUE_CAPACITY, sizeof(*r->taken));
	if (r->ring == NULL || r->taken == NULL) {
		fprintf(stderr, "tracing: no memory for the span queue\n");
		goto fail;
	}
	error = pthread_condattr_init(&wake_attr);
	if (error == 0) {
		error = pthread_condattr_setclock(&wake_attr, CLOCK_MONOTONIC);
		if (error == 0)
			error = pthread_cond_init(&r->wake, &wake_attr);
		pthread_condattr_destroy(&wake_attr);
	}
	if (error != 0) {
		fprintf(stderr, "tracing: cannot create the queue's condition variable: %s\n",
			strerror(error));
		goto fail;
	}

	/* The thread blocks every signal: kit_app_run() sigwait()s for
	 * SIGINT/SIGTERM on main()'s thread. */
	r->head = 0;
	r->count = 0;
	r->stopping = false;
	atomic_store(&r->running, true);
	sigfillset(&every_signal);
	pthread_sigmask(SIG_BLOCK, &every_signal, &previous);
	error = pthread_create(&r->thread, NULL, reporter_main, r);
	pthread_sigmask(SIG_SETMASK, &previous, NULL);
	if (error != 0) {
		atomic_store(&r->running, false);
		pthread_cond_destroy(&r->wake);
		fprintf(stderr, "tracing: cannot start the reporter thread: %s\n",
			strerror(error));
		goto fail;
	}
	return 0;
fail:
	free(r->ring);
	r->ring = NULL;
	free(r->taken);
	r->taken = NULL;
	jaeger_process_free(r->process);
	r->process = NULL;
	return -1;
}

void trace_reporter_stop(void)
{
	struct trace_reporter *r = &reporter;
	int error;

	if (!atomic_load(&r->running))
		return;

	/* 1. No more spans; the thread sends what is queued and ends (each
	 *    HTTP POST has a 1 s timeout; UDP does not wait). */
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	error = pthread_join(r->thread, NULL);
	if (error != 0) {
		/* Only a bug gets here; freeing what the thread may still use
		 * would be worse than leaking it at exit. */
		fprintf(stderr, "tracing: pthread_join(reporter): %s\n", strerror(error));
		return;
	}
	atomic_store(&r->running, false);

	/* 2. Free what the thread owned. */
	if (r->udp_socket >= 0)
		close(r->udp_socket);
	r->udp_socket = -1;
	curl_easy_cleanup(r->curl);
	r->curl = NULL;
	curl_slist_free_all(r->http_headers);
	r->http_headers = NULL;
	jaeger_buffer_free(&r->packet);
	free(r->ring);
	r->ring = NULL;
	free(r->taken);
	r->taken = NULL;
	jaeger_process_free(r->process);
	r->process = NULL;
	pthread_cond_destroy(&r->wake);
}
