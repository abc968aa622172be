/*
 * jaeger_thrift.h - a span as Jaeger stores it, and its Thrift encodings
 * (internal to the library: tracing.c builds spans, trace_reporter.c sends
 * them, the unit tests check the bytes).
 *
 * The structs mirror jaeger-idl's jaeger.thrift (Tag, Log, Span, Process,
 * Batch); jaeger_thrift.c writes them in the two Thrift protocols a Jaeger
 * agent reads: binary (UDP port 6832, and the body of a collector's
 * POST /api/traces) and compact (UDP port 6831). The UDP form is the whole
 * message agent.thrift's `oneway void emitBatch(1: jaeger.Batch batch)`.
 *
 * Ownership: a jaeger_span and everything it points to belong to whoever
 * holds the span (the request, then the reporter's queue); jaeger_span_free
 * frees it all. Strings are copied in, cut to a bounded length and made
 * valid UTF-8 (Thrift strings are UTF-8; a path can hold any byte).
 * Threads: nothing here is shared; a span is used by one thread at a time.
 */
#ifndef KIT_JAEGER_THRIFT_H
#define KIT_JAEGER_THRIFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds that keep one span, with its process, under a UDP packet (65000
 * bytes): 32 tags and 4 logs (of 2 fields) with keys of at most 128 bytes
 * and values of at most 1 KB make under 50 KB, the process under 11 KB.
 * Tags and logs past these are dropped; strings are cut. */
#define JAEGER_SPAN_MAX_TAGS 32
#define JAEGER_SPAN_MAX_LOGS 4
#define JAEGER_STRING_MAX 1024
#define JAEGER_KEY_MAX 128
/* The largest UDP payload a Jaeger agent accepts by default. */
#define JAEGER_UDP_PACKET_MAX 65000

/* jaeger.thrift's enum TagType. */
enum jaeger_tag_type {
	JAEGER_TAG_STRING = 0,
	JAEGER_TAG_DOUBLE = 1,
	JAEGER_TAG_BOOL = 2,
	JAEGER_TAG_LONG = 3,
	/* BINARY = 4 exists in the IDL; the kit never sends it. */
};

struct jaeger_tag {
	char *key;                 /* owned                                  */
	enum jaeger_tag_type type;
	char *string;              /* owned; JAEGER_TAG_STRING               */
	double number;             /* JAEGER_TAG_DOUBLE                      */
	bool flag;                 /* JAEGER_TAG_BOOL                        */
	int64_t integer;           /* JAEGER_TAG_LONG                        */
};

struct jaeger_log {
	int64_t timestamp;         /* microseconds since the epoch           */
	struct jaeger_tag *fields; /* owned                                  */
	size_t field_count;
};

struct jaeger_span {
	uint64_t trace_id_low;
	uint64_t trace_id_high;    /* 0 for a 64-bit trace id                */
	uint64_t span_id;
	uint64_t parent_span_id;   /* 0 for a root span                      */
	char *operation_name;      /* owned                                  */
	int32_t flags;             /* 1 sampled, 2 debug                     */
	int64_t start_time;        /* microseconds since the epoch           */
	int64_t duration;          /* microseconds                           */
	struct jaeger_tag tags[JAEGER_SPAN_MAX_TAGS];
	size_t tag_count;
	struct jaeger_log logs[JAEGER_SPAN_MAX_LOGS];
	size_t log_count;
};

/* The process every span of a batch comes from: serviceName and its tags
 * (instance, hostname, kit.version). */
struct jaeger_process {
	char *service_name;        /* owned                                  */
	struct jaeger_tag tags[8];
	size_t tag_count;
};

/* ---- building spans and processes ---- */

/* A span with its operation name; everything else zero. NULL when out of
 * memory. Free with jaeger_span_free (NULL is ignored). */
struct jaeger_span *jaeger_span_new(const char *operation_name);
void jaeger_span_free(struct jaeger_span *span);

/* Add a tag to a span. Return 0, or -1 when out of memory or when the span
 * already has JAEGER_SPAN_MAX_TAGS tags (the tag is then dropped). */
int jaeger_span_tag_string(struct jaeger_span *span, const char *key, const char *value);
int jaeger_span_tag_long(struct jaeger_span *span, const char *key, int64_t value);
int jaeger_span_tag_bool(struct jaeger_span *span, const char *key, bool value);
int jaeger_span_tag_double(struct jaeger_span *span, const char *key, double value);

/* Adds a log entry {event: event, message: message} at timestamp. Returns
 * 0, or -1 (out of memory, or JAEGER_SPAN_MAX_LOGS already). */
int jaeger_span_log(struct jaeger_span *span, int64_t timestamp,
		    const char *event, const char *message);

/* A process named service_name, without tags. NULL when out of memory. */
struct jaeger_process *jaeger_process_new(const char *service_name);
/* Adds a string tag; 0, or -1 (no memory, or 8 tags already). */
int jaeger_process_tag(struct jaeger_process *process, const char *key,
		       const char *value);
void jaeger_process_free(struct jaeger_process *process);

/* ---- encoding ---- */

enum jaeger_protocol {
	JAEGER_BINARY,   /* TBinaryProtocol, strict message header */
	JAEGER_COMPACT,  /* TCompactProtocol                       */
};

/*
 * A growable byte buffer. Start from {0}; writes append and grow it, and a
 * failed allocation sets `failed` (later writes do nothing), so a caller
 * checks once at the end. With count_only set, nothing is stored and only
 * len grows: a way to measure an encoding without allocating.
 */
struct jaeger_buffer {
	unsigned char *data;
	size_t len;
	size_t capacity;
	bool failed;
	bool count_only;
};
void jaeger_buffer_reset(struct jaeger_buffer *buffer); /* len 0, keeps memory */
void jaeger_buffer_free(struct jaeger_buffer *buffer);

/* One struct each, as the IDL defines it (the unit tests check these). */
void jaeger_write_tag(struct jaeger_buffer *out, enum jaeger_protocol protocol,
		      const struct jaeger_tag *tag);
void jaeger_write_span(struct jaeger_buffer *out, enum jaeger_protocol protocol,
		       const struct jaeger_span *span);

/* A Batch {process, spans}: the body of a POST /api/traces (binary). */
void jaeger_write_batch(struct jaeger_buffer *out, enum jaeger_protocol protocol,
			const struct jaeger_process *process,
			struct jaeger_span *const *spans, size_t count);

/* The whole UDP packet: the message header of Agent.emitBatch (oneway,
 * seqid) and its arguments {1: batch}. */
void jaeger_write_emit_batch(struct jaeger_buffer *out,
			     enum jaeger_protocol protocol, int32_t seqid,
			     const struct jaeger_process *process,
			     struct jaeger_span *const *spans, size_t count);

/* How many of spans[0..count) fit in one emitBatch packet of at most
 * limit bytes (counted from the start, in order). 0 means spans[0] alone
 * does not fit. */
size_t jaeger_emit_batch_fit(enum jaeger_protocol protocol,
			     const struct jaeger_process *process,
			     struct jaeger_span *const *spans, size_t count,
			     size_t limit);

#endif
