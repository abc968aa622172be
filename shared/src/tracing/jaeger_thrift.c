/*
 * jaeger_thrift.c - Jaeger's span model and its two Thrift encodings
 * (jaeger_thrift.h), written by hand: the kit needs five structs and one
 * oneway call, not a Thrift library.
 *
 * The field ids and types below are jaeger-idl's (thrift/jaeger.thrift and
 * thrift/agent.thrift, as bundled in the npm package jaeger-client 3.19.0).
 * Each struct is written by one function as the list of its fields, and a
 * small writer does the protocol: in the binary protocol a field is
 * (type byte, big-endian i16 id), integers are big-endian, strings and
 * lists carry an i32 length; in the compact protocol a field is one byte
 * (id delta << 4 | type) when the id grows by 1-15, integers are zigzag
 * varints, doubles little-endian, a bool field has its value in its type
 * (1 true, 2 false), and a list of fewer than 15 elements has its size in
 * the high nibble of its header byte. tests/unit/test_tracing.c checks
 * both against bytes worked out by hand; tests/jaeger_sink.py decodes them
 * with code Apache Thrift generates from the same IDL.
 */
#include <stdlib.h>
#include <string.h>

#include "tracing/jaeger_thrift.h"

/* ---- building spans ---- */

/* A copy of text cut to at most max bytes, with every byte that is not
 * part of a valid UTF-8 sequence replaced by '?'. NULL when out of
 * memory. */
static char *copy_utf8(const char *text, size_t max)
{
	size_t len = strnlen(text, max);
	char *copy = malloc(len + 1);
	size_t i = 0;

	if (copy == NULL)
		return NULL;
	while (i < len) {
		unsigned char c = (unsigned char)text[i];
		size_t need = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 && c >= 0xC2 ? 1
			    : (c & 0xF0) == 0xE0 ? 2
			    : (c & 0xF8) == 0xF0 && c <= 0xF4 ? 3 : 4;
		bool valid = need < 4 && i + need < len;

		for (size_t k = 1; valid && k <= need; k++)
			valid = ((unsigned char)text[i + k] & 0xC0) == 0x80;
		/* Overlong three-byte forms and UTF-16 surrogates. */
		if (valid && need == 2) {
			unsigned char next = (unsigned char)text[i + 1];

			valid = !(c == 0xE0 && next < 0xA0) && !(c == 0xED && next >= 0xA0);
		}
		if (valid && need == 3) {
			unsigned char next = (unsigned char)text[i + 1];

			valid = !(c == 0xF0 && next < 0x90) && !(c == 0xF4 && next >= 0x90);
		}
		if (!valid) {
			copy[i++] = '?';
			continue;
		}
		memcpy(copy + i, text + i, need + 1);
		i += need + 1;
	}
	copy[len] = '\0';
	return copy;
}

static void tag_clear(struct jaeger_tag *tag)
{
	free(tag->key);
	free(tag->string);
	memset(tag, 0, sizeof(*tag));
}

/* The next free tag of an array of max, with its key copied in; NULL when
 * the array is full or out of memory. */
static struct jaeger_tag *tag_add(struct jaeger_tag *tags, size_t *count,
				  size_t max, const char *key,
				  enum jaeger_tag_type type)
{
	struct jaeger_tag *tag;

	if (*count == max)
		return NULL;
	tag = &tags[*count];
	memset(tag, 0, sizeof(*tag));
	tag->key = copy_utf8(key, JAEGER_KEY_MAX);
	if (tag->key == NULL)
		return NULL;
	tag->type = type;
	(*count)++;
	return tag;
}

static int tag_add_string(struct jaeger_tag *tags, size_t *count, size_t max,
			  const char *key, const char *value)
{
	struct jaeger_tag *tag = tag_add(tags, count, max, key, JAEGER_TAG_STRING);

	if (tag == NULL)
		return -1;
	tag->string = copy_utf8(value, JAEGER_STRING_MAX);
	if (tag->string == NULL) {
		tag_clear(tag);
		(*count)--;
		return -1;
	}
	return 0;
}

struct jaeger_span *jaeger_span_new(const char *operation_name)
{
	struct jaeger_span *span = calloc(1, sizeof(*span));

	if (span == NULL)
		return NULL;
	span->operation_name = copy_utf8(operation_name, JAEGER_STRING_MAX);
	if (span->operation_name == NULL) {
		free(span);
		return NULL;
	}
	return span;
}

void jaeger_span_free(struct jaeger_span *span)
{
	if (span == NULL)
		return;
	for (size_t i = 0; i < span->tag_count; i++)
		tag_clear(&span->tags[i]);
	for (size_t i = 0; i < span->log_count; i++) {
		for (size_t k = 0; k < span->logs[i].field_count; k++)
			tag_clear(&span->logs[i].fields[k]);
		free(span->logs[i].fields);
	}
	free(span->operation_name);
	free(span);
}

int jaeger_span_tag_string(struct jaeger_span *span, const char *key, const char *value)
{
	return tag_add_string(span->tags, &span->tag_count, JAEGER_SPAN_MAX_TAGS,
			      key, value);
}

int jaeger_span_tag_long(struct jaeger_span *span, const char *key, int64_t value)
{
	struct jaeger_tag *tag = tag_add(span->tags, &span->tag_count,
					 JAEGER_SPAN_MAX_TAGS, key, JAEGER_TAG_LONG);

	if (tag == NULL)
		return -1;
	tag->integer = value;
	return 0;
}

int jaeger_span_tag_bool(struct jaeger_span *span, const char *key, bool value)
{
	struct jaeger_tag *tag = tag_add(span->tags, &span->tag_count,
					 JAEGER_SPAN_MAX_TAGS, key, JAEGER_TAG_BOOL);

	if (tag == NULL)
		return -1;
	tag->flag = value;
	return 0;
}

int jaeger_span_tag_double(struct jaeger_span *span, const char *key, double value)
{
	struct jaeger_tag *tag = tag_add(span->tags, &span->tag_count,
					 JAEGER_SPAN_MAX_TAGS, key, JAEGER_TAG_DOUBLE);

	if (tag == NULL)
		return -1;
	tag->number = value;
	return 0;
}

int jaeger_span_log(struct jaeger_span *span, int64_t timestamp,
		    const char *event, const char *message)
{
	struct jaeger_log *log;

	if (span->log_count == JAEGER_SPAN_MAX_LOGS)
		return -1;
	log = &span->logs[span->log_count];
	memset(log, 0, sizeof(*log));
	log->timestamp = timestamp;
	log->fields = calloc(2, sizeof(*log->fields));
	if (log->fields == NULL)
		return -1;
	if (tag_add_string(log->fields, &log->field_count, 2, "event", event) != 0 ||
	    tag_add_string(log->fields, &log->field_count, 2, "message", message) != 0) {
		for (size_t k = 0; k < log->field_count; k++)
			tag_clear(&log->fields[k]);
		free(log->fields);
		log->fields = NULL;
		return -1;
	}
	span->log_count++;
	return 0;
}

struct jaeger_process *jaeger_process_new(const char *service_name)
{
	struct jaeger_process *process = calloc(1, sizeof(*process));

	if (process == NULL)
		return NULL;
	process->service_name = copy_utf8(service_name, JAEGER_STRING_MAX);
	if (process->service_name == NULL) {
		free(process);
		return NULL;
	}
	return process;
}

int jaeger_process_tag(struct jaeger_process *process, const char *key,
		       const char *value)
{
	return tag_add_string(process->tags, &process->tag_count,
			      sizeof(process->tags) / sizeof(process->tags[0]),
			      key, value);
}

void jaeger_process_free(struct jaeger_process *process)
{
	if (process == NULL)
		return;
	for (size_t i = 0; i < process->tag_count; i++)
		tag_clear(&process->tags[i]);
	free(process->service_name);
	free(process);
}

/* ---- the buffer ---- */

void jaeger_buffer_reset(struct jaeger_buffer *buffer)
{
	buffer->len = 0;
	buffer->failed = false;
}

void jaeger_buffer_free(struct jaeger_buffer *buffer)
{
	free(buffer->data);
	buffer->data = NULL;
	buffer->len = 0;
	buffer->capacity = 0;
	buffer->failed = false;
}

static void put_bytes(struct jaeger_buffer *out, const void *bytes, size_t len)
{
	if (out->failed)
		return;
	if (out->count_only) {
		out->len += len;
		return;
	}
	if (out->len + len > out->capacity) {
		size_t capacity = out->capacity == 0 ? 1024 : out->capacity;
		unsigned char *grown;

		while (capacity < out->len + len)
			capacity *= 2;
		grown = realloc(out->data, capacity);
		if (grown == NULL) {
			out->failed = true;
			return;
		}
		out->data = grown;
		out->capacity = capacity;
	}
	memcpy(out->data + out->len, bytes, len);
	out->len += len;
}

static void put_byte(struct jaeger_buffer *out, uint8_t byte)
{
	put_bytes(out, &byte, 1);
}

/* The low `size` bytes of value, most significant first. */
static void put_big_endian(struct jaeger_buffer *out, uint64_t value, int size)
{
	unsigned char bytes[8];

	for (int i = 0; i < size; i++)
		bytes[i] = (unsigned char)(value >> (8 * (size - 1 - i)));
	put_bytes(out, bytes, (size_t)size);
}

/* Unsigned LEB128: seven bits a byte, low first, high bit "more". */
static void put_varint(struct jaeger_buffer *out, uint64_t value)
{
	unsigned char bytes[10];
	size_t n = 0;

	while (value >= 0x80) {
		bytes[n++] = (unsigned char)(value | 0x80);
		value >>= 7;
	}
	bytes[n++] = (unsigned char)value;
	put_bytes(out, bytes, n);
}

/* Zigzag maps signed to unsigned so that small magnitudes stay small:
 * 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3. */
static uint64_t zigzag64(int64_t n)
{
	return ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
}

static uint32_t zigzag32(int32_t n)
{
	return ((uint32_t)n << 1) ^ (uint32_t)(n >> 31);
}

/* ---- the two protocols ---- */

/* Thrift's field types, numbered as the binary protocol writes them. */
enum thrift_type {
	T_STOP = 0,
	T_BOOL = 2,
	T_DOUBLE = 4,
	T_I32 = 8,
	T_I64 = 10,
	T_STRING = 11,
	T_STRUCT = 12,
	T_LIST = 15,
};

/* The compact protocol's numbers for the same types (a bool field's type
 * is its value, see write_bool_field). */
static uint8_t compact_type(enum thrift_type type)
{
	switch (type) {
	case T_BOOL:   return 1;
	case T_I32:    return 5;
	case T_I64:    return 6;
	case T_DOUBLE: return 7;
	case T_STRING: return 8;
	case T_LIST:   return 9;
	case T_STRUCT: return 12;
	case T_STOP:   break;
	}
	return 0;
}

/* A writer: where the bytes go and in which protocol. Every function that
 * writes a struct keeps its own `last` field id (the compact protocol
 * writes each field id as the difference from the previous one, and a
 * nested struct starts again from 0). */
struct writer {
	struct jaeger_buffer *out;
	enum jaeger_protocol protocol;
};

static void write_field(struct writer *w, int16_t *last, int16_t id,
			enum thrift_type type)
{
	if (w->protocol == JAEGER_BINARY) {
		put_byte(w->out, (uint8_t)type);
		put_big_endian(w->out, (uint16_t)id, 2);
		return;
	}
	if (id > *last && id - *last <= 15) {
		put_byte(w->out, (uint8_t)(((id - *last) << 4) | compact_type(type)));
	} else {
		put_byte(w->out, compact_type(type));
		put_varint(w->out, zigzag32(id));
	}
	*last = id;
}

static void write_stop(struct writer *w)
{
	put_byte(w->out, T_STOP);
}

static void write_i32(struct writer *w, int32_t value)
{
	if (w->protocol == JAEGER_BINARY)
		put_big_endian(w->out, (uint32_t)value, 4);
	else
		put_varint(w->out, zigzag32(value));
}

static void write_i64(struct writer *w, int64_t value)
{
	if (w->protocol == JAEGER_BINARY)
		put_big_endian(w->out, (uint64_t)value, 8);
	else
		put_varint(w->out, zigzag64(value));
}

static void write_double(struct writer *w, double value)
{
	uint64_t bits;

	memcpy(&bits, &value, sizeof(bits));
	if (w->protocol == JAEGER_BINARY) {
		put_big_endian(w->out, bits, 8);
	} else {
		unsigned char bytes[8];

		for (int i = 0; i < 8; i++)
			bytes[i] = (unsigned char)(bits >> (8 * i));
		put_bytes(w->out, bytes, 8);
	}
}

static void write_string(struct writer *w, const char *text)
{
	size_t len = strlen(text);

	if (w->protocol == JAEGER_BINARY)
		put_big_endian(w->out, (uint32_t)len, 4);
	else
		put_varint(w->out, len);
	put_bytes(w->out, text, len);
}

static void write_bool_field(struct writer *w, int16_t *last, int16_t id, bool value)
{
	if (w->protocol == JAEGER_BINARY) {
		write_field(w, last, id, T_BOOL);
		put_byte(w->out, value ? 1 : 0);
		return;
	}
	/* Compact: the value is the field's type, 1 true or 2 false. */
	if (id > *last && id - *last <= 15) {
		put_byte(w->out, (uint8_t)(((id - *last) << 4) | (value ? 1 : 2)));
	} else {
		put_byte(w->out, value ? 1 : 2);
		put_varint(w->out, zigzag32(id));
	}
	*last = id;
}

static void write_list_begin(struct writer *w, enum thrift_type element, size_t size)
{
	if (w->protocol == JAEGER_BINARY) {
		put_byte(w->out, (uint8_t)element);
		put_big_endian(w->out, (uint32_t)size, 4);
	} else if (size < 15) {
		put_byte(w->out, (uint8_t)((size << 4) | compact_type(element)));
	} else {
		put_byte(w->out, (uint8_t)(0xF0 | compact_type(element)));
		put_varint(w->out, size);
	}
}

/* ---- jaeger.thrift's structs ---- */

/* struct Tag { 1: string key, 2: TagType vType, 3: optional string vStr,
 *   4: optional double vDouble, 5: optional bool vBool, 6: optional i64
 *   vLong, 7: optional binary vBinary } */
static void write_tag(struct writer *w, const struct jaeger_tag *tag)
{
	int16_t last = 0;

	write_field(w, &last, 1, T_STRING);
	write_string(w, tag->key);
	write_field(w, &last, 2, T_I32);
	write_i32(w, (int32_t)tag->type);
	switch (tag->type) {
	case JAEGER_TAG_STRING:
		write_field(w, &last, 3, T_STRING);
		write_string(w, tag->string != NULL ? tag->string : "");
		break;
	case JAEGER_TAG_DOUBLE:
		write_field(w, &last, 4, T_DOUBLE);
		write_double(w, tag->number);
		break;
	case JAEGER_TAG_BOOL:
		write_bool_field(w, &last, 5, tag->flag);
		break;
	case JAEGER_TAG_LONG:
		write_field(w, &last, 6, T_I64);
		write_i64(w, tag->integer);
		break;
	}
	write_stop(w);
}

static void write_tag_list(struct writer *w, const struct jaeger_tag *tags,
			   size_t count)
{
	write_list_begin(w, T_STRUCT, count);
	for (size_t i = 0; i < count; i++)
		write_tag(w, &tags[i]);
}

/* struct Log { 1: i64 timestamp, 2: list<Tag> fields } */
static void write_log(struct writer *w, const struct jaeger_log *log)
{
	int16_t last = 0;

	write_field(w, &last, 1, T_I64);
	write_i64(w, log->timestamp);
	write_field(w, &last, 2, T_LIST);
	write_tag_list(w, log->fields, log->field_count);
	write_stop(w);
}

/* struct Span { 1: i64 traceIdLow, 2: i64 traceIdHigh, 3: i64 spanId,
 *   4: i64 parentSpanId, 5: string operationName, 6: optional
 *   list<SpanRef> references, 7: i32 flags, 8: i64 startTime, 9: i64
 *   duration, 10: optional list<Tag> tags, 11: optional list<Log> logs }
 * references is left out: a CHILD_OF parent is parentSpanId already. */
static void write_span(struct writer *w, const struct jaeger_span *span)
{
	int16_t last = 0;

	write_field(w, &last, 1, T_I64);
	write_i64(w, (int64_t)span->trace_id_low);
	write_field(w, &last, 2, T_I64);
	write_i64(w, (int64_t)span->trace_id_high);
	write_field(w, &last, 3, T_I64);
	write_i64(w, (int64_t)span->span_id);
	write_field(w, &last, 4, T_I64);
	write_i64(w, (int64_t)span->parent_span_id);
	write_field(w, &last, 5, T_STRING);
	write_string(w, span->operation_name);
	write_field(w, &last, 7, T_I32);
	write_i32(w, span->flags);
	write_field(w, &last, 8, T_I64);
	write_i64(w, span->start_time);
	write_field(w, &last, 9, T_I64);
	write_i64(w, span->duration);
	if (span->tag_count > 0) {
		write_field(w, &last, 10, T_LIST);
		write_tag_list(w, span->tags, span->tag_count);
	}
	if (span->log_count > 0) {
		write_field(w, &last, 11, T_LIST);
		write_list_begin(w, T_STRUCT, span->log_count);
		for (size_t i = 0; i < span->log_count; i++)
			write_log(w, &span->logs[i]);
	}
	write_stop(w);
}

/* struct Process { 1: string serviceName, 2: optional list<Tag> tags } */
static void write_process(struct writer *w, const struct jaeger_process *process)
{
	int16_t last = 0;

	write_field(w, &last, 1, T_STRING);
	write_string(w, process->service_name);
	if (process->tag_count > 0) {
		write_field(w, &last, 2, T_LIST);
		write_tag_list(w, process->tags, process->tag_count);
	}
	write_stop(w);
}

/* struct Batch { 1: Process process, 2: list<Span> spans } */
static void write_batch(struct writer *w, const struct jaeger_process *process,
			struct jaeger_span *const *spans, size_t count)
{
	int16_t last = 0;

	write_field(w, &last, 1, T_STRUCT);
	write_process(w, process);
	write_field(w, &last, 2, T_LIST);
	write_list_begin(w, T_STRUCT, count);
	for (size_t i = 0; i < count; i++)
		write_span(w, spans[i]);
	write_stop(w);
}

void jaeger_write_tag(struct jaeger_buffer *out, enum jaeger_protocol protocol,
		      const struct jaeger_tag *tag)
{
	struct writer w = { out, protocol };

	write_tag(&w, tag);
}

void jaeger_write_span(struct jaeger_buffer *out, enum jaeger_protocol protocol,
		       const struct jaeger_span *span)
{
	struct writer w = { out, protocol };

	write_span(&w, span);
}

void jaeger_write_batch(struct jaeger_buffer *out, enum jaeger_protocol protocol,
			const struct jaeger_process *process,
			struct jaeger_span *const *spans, size_t count)
{
	struct writer w = { out, protocol };

	write_batch(&w, process, spans, count);
}

/* agent.thrift: service Agent { oneway void emitBatch(1: jaeger.Batch batch) }
 * A call is a message header, then the arguments as a struct. */
void jaeger_write_emit_batch(struct jaeger_buffer *out,
			     enum jaeger_protocol protocol, int32_t seqid,
			     const struct jaeger_process *process,
			     struct jaeger_span *const *spans, size_t count)
{
	enum { MESSAGE_ONEWAY = 4 };
	struct writer w = { out, protocol };
	int16_t last = 0;

	if (protocol == JAEGER_BINARY) {
		/* Strict: version 1 and the message type in one i32, then the
		 * name, then the sequence id. */
		put_big_endian(out, 0x80010000u | MESSAGE_ONEWAY, 4);
		write_string(&w, "emitBatch");
		put_big_endian(out, (uint32_t)seqid, 4);
	} else {
		/* Protocol id, then version 1 in the low 5 bits and the type in
		 * the high 3, then the sequence id (a plain varint), the name. */
		put_byte(out, 0x82);
		put_byte(out, (uint8_t)((MESSAGE_ONEWAY << 5) | 1));
		put_varint(out, (uint32_t)seqid);
		write_string(&w, "emitBatch");
	}
	write_field(&w, &last, 1, T_STRUCT);
	write_batch(&w, process, spans, count);
	write_stop(&w); /* the end of the arguments struct */
}

size_t jaeger_emit_batch_fit(enum jaeger_protocol protocol,
			     const struct jaeger_process *process,
			     struct jaeger_span *const *spans, size_t count,
			     size_t limit)
{
	struct jaeger_buffer counter = { .count_only = true };
	size_t used;
	size_t fit = 0;

	/* The packet without spans, with the longest sequence id (-1 is a
	 * five-byte varint) and room for the list header to grow (at most
	 * five bytes more in either protocol). */
	jaeger_write_emit_batch(&counter, protocol, -1, process, NULL, 0);
	used = counter.len + 5;
	while (fit < count) {
		jaeger_buffer_reset(&counter);
		jaeger_write_span(&counter, protocol, spans[fit]);
		if (used + counter.len > limit)
			break;
		used += counter.len;
		fit++;
	}
	return fit;
}
