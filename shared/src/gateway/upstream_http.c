/*
 * upstream_http.c - the proxy's HTTP/1.1 client: one request to one
 * upstream instance on a pooled keep-alive connection, and its answer.
 *
 * Position: called by gateway_proxy_route() (proxy.c) for every attempt,
 * in place of libcurl, which cost more than half of a proxied request's
 * CPU (docs/performance.md, "Where the time goes"; bench row raw-floor).
 *
 * What it does, and nothing more:
 *   - connections: per thread (a loop thread's requests share them, one
 *     request at a time each), per instance, a stack of idle ones; one
 *     idle longer than idle_timeout_seconds, or that the upstream has
 *     closed (a peek at it before reuse), is closed, not reused; a new
 *     one is connected with the pool's connect_timeout_ms. The instance's
 *     address is resolved once per thread (getaddrinfo: instant for an IP;
 *     a name, compose's "users:8083", is looked up then, which blocks the
 *     thread for that lookup) and again after a failed connect.
 *   - the request: "METHOD target HTTP/1.1", Host, the caller's header
 *     lines (a line with an empty value is left out, as libcurl did), a
 *     Content-Length when there is a body, the body; one write when it
 *     fits the socket, waits (kit_wait_fd) when it does not.
 *   - the answer: status line and header lines (at most 64 KiB), 1xx
 *     answers skipped, then the body by Content-Length, chunked, or up to
 *     the close; none for HEAD, 1xx, 204 and 304. Both Content-Length and
 *     chunked, or a Content-Length that is not one number, is a broken
 *     answer (smuggling's other side). A body over the limit stops the
 *     exchange (too large) and closes the connection.
 *   - keep-alive: the connection goes back to the pool after a whole
 *     answer, unless the answer said Connection: close, was HTTP/1.0
 *     without keep-alive, ended at the close, or the caller said not to.
 *   - every wait ends at the attempt's deadline: timed out.
 *
 * Threads: the pool is the calling thread's (a per-thread resource of the
 * proxy); counters are the upstream's atomics (pool.created/closed/errors).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gateway/gateway_internal.h"
#include "kit/request.h"
#include "kit/text.h"
#include "kit/wait.h"

#define HEAD_MAX (64 * 1024)

struct idle_conn {
	int fd;
	uint64_t used_ns;
};

struct instance_pool {
	struct kit_upstream *upstream;     /* whose counters its connections move */
	const struct kit_upstream_instance *instance;
	struct sockaddr_storage address;
	socklen_t address_len;             /* 0: not resolved (yet, or again) */
	struct idle_conn *idle;
	int idle_count, idle_capacity;
};

struct upstream_pool {
	struct instance_pool *instances;
	int count, capacity;
};

struct upstream_pool *upstream_pool_new(void)
{
	return calloc(1, sizeof(struct upstream_pool));
}

static void close_counted(struct kit_upstream *upstream, int fd)
{
	close(fd);
	atomic_fetch_add(&upstream->pool.closed, 1);
}

void upstream_pool_free(struct upstream_pool *pool)
{
	if (pool == NULL)
		return;
	for (int i = 0; i < pool->count; i++) {
		struct instance_pool *p = &pool->instances[i];

		for (int j = 0; j < p->idle_count; j++)
			close_counted(p->upstream, p->idle[j].fd);
		free(p->idle);
	}
	free(pool->instances);
	free(pool);
}

static struct instance_pool *pool_of(struct upstream_pool *pool, struct kit_upstream *upstream,
				     const struct kit_upstream_instance *instance)
{
	for (int i = 0; i < pool->count; i++) {
		if (pool->instances[i].instance == instance)
			return &pool->instances[i];
	}
	if (pool->count == pool->capacity) {
		int capacity = pool->capacity ? pool->capacity * 2 : 8;
		struct instance_pool *bigger = realloc(pool->instances, (size_t)capacity * sizeof(*bigger));

		if (bigger == NULL)
			return NULL;
		pool->instances = bigger;
		pool->capacity = capacity;
	}
	memset(&pool->instances[pool->count], 0, sizeof(pool->instances[0]));
	pool->instances[pool->count].upstream = upstream;
	pool->instances[pool->count].instance = instance;
	return &pool->instances[pool->count++];
}

/* "http://host:port" -> host (into host, size bytes) and port ("80"). */
static bool split_url(const char *url, char *host, size_t size, char *port, size_t port_size)
{
	const char *start = url + 7, *end, *colon;
	size_t len;

	if (strncmp(url, "http://", 7) != 0)
		return false;
	end = start + strcspn(start, "/");
	if (*start == '[') { /* [v6]:port */
		const char *close = memchr(start, ']', (size_t)(end - start));

		if (close == NULL)
			return false;
		len = (size_t)(close - start - 1);
		if (len >= size)
			return false;
		memcpy(host, start + 1, len);
		host[len] = '\0';
		colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = memchr(start, ':', (size_t)(end - start));
		len = (size_t)((colon != NULL ? colon : end) - start);
		if (len == 0 || len >= size)
			return false;
		memcpy(host, start, len);
		host[len] = '\0';
	}
	if (colon != NULL) {
		len = (size_t)(end - colon - 1);
		if (len == 0 || len >= port_size)
			return false;
		memcpy(port, colon + 1, len);
		port[len] = '\0';
	} else {
		snprintf(port, port_size, "80");
	}
	return true;
}

static bool resolve(struct instance_pool *p)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *found = NULL;

	if (!split_url(p->instance->url, host, sizeof(host), port, sizeof(port)) ||
	    getaddrinfo(host, port, &hints, &found) != 0 || found == NULL)
		return false;
	memcpy(&p->address, found->ai_addr, found->ai_addrlen);
	p->address_len = found->ai_addrlen;
	freeaddrinfo(found);
	return true;
}

static long ms_left(uint64_t deadline_ns)
{
	uint64_t now = kit_now_ns();

	return now >= deadline_ns ? 0 : (long)((deadline_ns - now) / 1000000) + 1;
}

/* A new connection, or -1 with result->outcome REFUSED or TIMED_OUT. */
static int connect_new(struct kit_upstream *upstream, struct instance_pool *p,
		       uint64_t connect_deadline_ns, struct upstream_result *result)
{
	int fd, one = 1, error = 0;
	socklen_t error_len = sizeof(error);

	if (p->address_len == 0 && !resolve(p)) {
		atomic_fetch_add(&upstream->pool.errors, 1);
		result->outcome = UPSTREAM_REFUSED;
		return -1;
	}
	fd = socket(p->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		atomic_fetch_add(&upstream->pool.errors, 1);
		result->outcome = UPSTREAM_REFUSED;
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&p->address, p->address_len) != 0) {
		int ready = errno == EINPROGRESS ? kit_wait_fd(fd, POLLOUT, ms_left(connect_deadline_ns)) : -1;

		if (ready == 0) {
			close(fd);
			result->outcome = UPSTREAM_TIMED_OUT;
			return -1;
		}
		if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) != 0 ||
		    error != 0) {
			close(fd);
			atomic_fetch_add(&upstream->pool.errors, 1);
			p->address_len = 0; /* look the name up again next time */
			result->outcome = UPSTREAM_REFUSED;
			return -1;
		}
	}
	atomic_fetch_add(&upstream->pool.created, 1);
	return fd;
}

/* Writes all of iov (count parts) before the deadline. */
static bool write_all(int fd, struct iovec *iov, int count, uint64_t deadline_ns)
{
	while (count > 0) {
		ssize_t n = writev(fd, iov, count);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN || kit_wait_fd(fd, POLLOUT, ms_left(deadline_ns)) != 1)
				return false;
			continue;
		}
		while (count > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			count--;
		}
		if (count > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return true;
}

/* The reading side: what has arrived and not been used yet. */
struct reader {
	int fd;
	uint64_t deadline_ns;
	char *buf;
	size_t start, end, capacity;
	bool eof, timed_out, failed;
	size_t total;        /* bytes read on this exchange */
};

/* Reads more into r (growing its buffer up to limit); false at EOF, on an
 * error or at the deadline (which say which). */
static bool read_more(struct reader *r, size_t limit)
{
	if (r->start > 0 && r->start == r->end)
		r->start = r->end = 0;
	if (r->end == r->capacity) {
		if (r->start > 0) {
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		} else {
			size_t capacity = r->capacity * 2;
			char *bigger;

			if (capacity > limit + 65536)
				capacity = limit + 65536;
			if (capacity <= r->capacity || (bigger = realloc(r->buf, capacity)) == NULL) {
				r->failed = true;
				return false;
			}
			r->buf = bigger;
			r->capacity = capacity;
		}
	}
	for (;;) {
		ssize_t n = recv(r->fd, r->buf + r->end, r->capacity - r->end, 0);

		if (n > 0) {
			r->end += (size_t)n;
			r->total += (size_t)n;
			return true;
		}
		if (n == 0) {
			r->eof = true;
			return false;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			r->failed = true;
			return false;
		}
		int ready = kit_wait_fd(r->fd, POLLIN, ms_left(r->deadline_ns));
		if (ready == 0) {
			r->timed_out = true;
			return false;
		}
		if (ready < 0) {
			r->failed = true;
			return false;
		}
	}
}

/* One line of the head (CR LF or LF ended) from r into *line, *len. */
static bool read_line(struct reader *r, const char **line, size_t *len)
{
	for (;;) {
		char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);

		if (nl != NULL) {
			*line = r->buf + r->start;
			*len = (size_t)(nl - *line);
			if (*len > 0 && (*line)[*len - 1] == '\r')
				(*len)--;
			r->start = (size_t)(nl + 1 - r->buf);
			return true;
		}
		if (r->end - r->start > HEAD_MAX || !read_more(r, HEAD_MAX))
			return false;
	}
}

static bool append(struct upstream_result *result, const char *text, size_t len)
{
	char *bigger;

	if (result->body_len + len > result->body_limit) {
		result->outcome = UPSTREAM_TOO_LARGE;
		return false;
	}
	if (result->body_len + len > result->body_capacity) {
		size_t capacity = result->body_capacity ? result->body_capacity : 4096;

		while (capacity < result->body_len + len)
			capacity *= 2;
		bigger = realloc(result->body, capacity);
		if (bigger == NULL) {
			result->outcome = UPSTREAM_BROKEN;
			return false;
		}
		result->body = bigger;
		result->body_capacity = capacity;
	}
	memcpy(result->body + result->body_len, text, len);
	result->body_len += len;
	return true;
}

/* Moves up to want bytes of body from r to the result. */
static bool take(struct reader *r, struct upstream_result *result, size_t want)
{
	while (want > 0) {
		size_t have = r->end - r->start;

		if (have == 0 && !read_more(r, 65536))
			return false;
		have = r->end - r->start;
		if (have > want)
			have = want;
		if (!append(result, r->buf + r->start, have))
			return false;
		r->start += have;
		want -= have;
	}
	return true;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value,
		      size_t *value_len)
{
	size_t name_len = strlen(name);

	if (len <= name_len || line[name_len] != ':' || strncasecmp(line, name, name_len) != 0)
		return false;
	*value = line + name_len + 1;
	*value_len = len - name_len - 1;
	while (*value_len > 0 && (**value == ' ' || **value == '\t')) {
		(*value)++;
		(*value_len)--;
	}
	while (*value_len > 0 && ((*value)[*value_len - 1] == ' ' || (*value)[*value_len - 1] == '\t'))
		(*value_len)--;
	return true;
}

/* Whether the comma-separated list value (len bytes) has token. */
static bool list_has(const char *value, size_t len, const char *token)
{
	size_t token_len = strlen(token);

	for (size_t i = 0; i < len;) {
		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		size_t start = i;
		while (i < len && value[i] != ',')
			i++;
		size_t end = i;
		while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
			end--;
		if (end - start == token_len && strncasecmp(value + start, token, token_len) == 0)
			return true;
	}
	return false;
}

/* Reads one answer's head into result (raw lines, the status line first)
 * and its framing. false: broken, timed out or closed (r says which). */
static bool read_head(struct reader *r, struct upstream_result *result, long long *length,
		      bool *chunked, bool *keep_alive)
{
	const char *line, *value;
	size_t len, value_len;
	int minor;

	for (;;) { /* 1xx answers come before the real one */
		char reason_free[4];

		result->head_len = 0;
		if (!read_line(r, &line, &len))
			return false;
		if (len < 12 || len >= 8192 || sscanf(line, "HTTP/1.%1d %3d%c", &minor, &result->status,
						      reason_free) < 2 ||
		    result->status < 100 || result->status > 999 || (minor != 0 && minor != 1))
			return r->failed = true, false;
		*length = -1;
		*chunked = false;
		*keep_alive = minor == 1;
		for (;;) {
			size_t offset = (size_t)(line - r->buf);
			char *head;

			if (result->head_len + len + 3 > HEAD_MAX)
				return r->failed = true, false;
			if (result->head_len + len + 3 > result->head_capacity) {
				size_t capacity = result->head_capacity ? result->head_capacity * 2 : 4096;

				while (capacity < result->head_len + len + 3)
					capacity *= 2;
				head = realloc(result->head, capacity);
				if (head == NULL)
					return r->failed = true, false;
				result->head = head;
				result->head_capacity = capacity;
			}
			line = r->buf + offset;
			memcpy(result->head + result->head_len, line, len);
			memcpy(result->head + result->head_len + len, "\r\n", 3);
			result->head_len += len + 2;
			if (header_is(line, len, "Content-Length", &value, &value_len)) {
				char *end;
				long long parsed;

				if (value_len == 0 || value_len > 18 ||
				    strspn(value, "0123456789") < value_len ||
				    (parsed = strtoll(value, &end, 10), *length >= 0 && parsed != *length))
					return r->failed = true, false;
				*length = parsed;
			} else if (header_is(line, len, "Transfer-Encoding", &value, &value_len)) {
				if (!(value_len == 7 && strncasecmp(value, "chunked", 7) == 0))
					return r->failed = true, false;
				*chunked = true;
			} else if (header_is(line, len, "Connection", &value, &value_len)) {
				if (list_has(value, value_len, "close"))
					*keep_alive = false;
				else if (list_has(value, value_len, "keep-alive"))
					*keep_alive = true;
			}
			if (!read_line(r, &line, &len))
				return false;
			if (len == 0)
				break;
		}
		if (*chunked && *length >= 0)
			return r->failed = true, false; /* ambiguous framing */
		if (result->status >= 200 || result->status == 101)
			return true;
	}
}

static bool read_chunked(struct reader *r, struct upstream_result *result)
{
	for (;;) {
		const char *line;
		size_t len, size = 0, digits = 0;

		if (!read_line(r, &line, &len))
			return false;
		while (digits < len && kit_hex_digit(line[digits]) >= 0) {
			if (size > (SIZE_MAX >> 4))
				return r->failed = true, false;
			size = size * 16 + (size_t)kit_hex_digit(line[digits]);
			digits++;
		}
		if (digits == 0 || (digits < len && line[digits] != ';' && line[digits] != ' ' &&
				    line[digits] != '\t'))
			return r->failed = true, false;
		if (size == 0) {
			do { /* trailers, up to the blank line */
				if (!read_line(r, &line, &len))
					return false;
			} while (len > 0);
			return true;
		}
		if (!take(r, result, size) || !read_line(r, &line, &len) || len != 0)
			return result->outcome != UPSTREAM_OK ? false : (r->failed = true, false);
	}
}

void upstream_exchange(struct upstream_pool *pool, struct kit_upstream *upstream,
		       const struct kit_upstream_instance *instance,
		       const struct upstream_request *request, struct upstream_result *result)
{
	const struct kit_gateway_config *config = request->config;
	struct instance_pool *p = pool != NULL ? pool_of(pool, upstream, instance) : NULL;
	struct reader r = { .fd = -1, .deadline_ns = request->deadline_ns };
	uint64_t now = kit_now_ns();
	char host[300], head_extra[64];
	long long length;
	bool chunked = false, keep_alive = false, body_expected;
	int fd = -1;

	result->outcome = UPSTREAM_OK;
	result->status = 0;
	result->body_len = 0;
	result->head_len = 0;
	result->reused = false;
	if (p == NULL) {
		result->outcome = UPSTREAM_BROKEN;
		return;
	}

	/* 1. A connection: the most recently used idle one still young
	 *    enough, or a new one. */
	while (fd < 0 && p->idle_count > 0) {
		struct idle_conn conn = p->idle[--p->idle_count];
		char byte;

		/* Still open? An upstream that closed it (it restarted, or its
		 * own keep-alive ran out) has sent a FIN, which a peek sees at
		 * once: one system call, where sending on it would cost the
		 * request (a POST is not sent twice). */
		if (now - conn.used_ns < (uint64_t)config->idle_timeout_seconds * 1000000000u &&
		    !request->fresh_connection &&
		    recv(conn.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) {
			fd = conn.fd;
			result->reused = true;
		} else {
			close_counted(upstream, conn.fd);
		}
	}
	if (fd < 0) {
		uint64_t connect_deadline = now + (uint64_t)config->connect_timeout_ms * 1000000u;

		fd = connect_new(upstream, p, connect_deadline < request->deadline_ns
						      ? connect_deadline : request->deadline_ns, result);
		if (fd < 0)
			return;
	}
	r.fd = fd;
	r.capacity = 16384;
	r.buf = malloc(r.capacity);
	if (r.buf == NULL) {
		close_counted(upstream, fd);
		result->outcome = UPSTREAM_BROKEN;
		return;
	}

	/* 2. The request: head and body in one writev. */
	const char *authority = instance->url + 7;
	snprintf(host, sizeof(host), "%.*s", (int)strcspn(authority, "/"), authority);
	size_t head_size = strlen(request->method) + strlen(request->target) + strlen(host) + 64;
	for (const struct curl_slist *h = request->headers; h != NULL; h = h->next)
		head_size += strlen(h->data) + 2;
	char *head = malloc(head_size);
	size_t used;
	if (head == NULL) {
		free(r.buf);
		close_counted(upstream, fd);
		result->outcome = UPSTREAM_BROKEN;
		return;
	}
	used = (size_t)sprintf(head, "%s %s HTTP/1.1\r\nHost: %s\r\n", request->method,
			       request->target, host);
	for (const struct curl_slist *h = request->headers; h != NULL; h = h->next) {
		size_t len = strlen(h->data);

		if (len > 0 && h->data[len - 1] == ' ' && len >= 2 && h->data[len - 2] == ':')
			continue; /* "Name: " with no value: not sent */
		memcpy(head + used, h->data, len);
		memcpy(head + used + len, "\r\n", 2);
		used += len + 2;
	}
	head_extra[0] = '\0';
	if (request->send_body)
		snprintf(head_extra, sizeof(head_extra), "Content-Length: %zu\r\n", request->body_len);
	used += (size_t)sprintf(head + used, "%s\r\n", head_extra);
	struct iovec iov[2] = {
		{ .iov_base = head, .iov_len = used },
		{ .iov_base = (void *)request->body, .iov_len = request->send_body ? request->body_len : 0 },
	};
	bool sent = write_all(fd, iov, iov[1].iov_len > 0 ? 2 : 1, request->deadline_ns);
	free(head);

	/* 3. The answer. A reused connection that the upstream had closed
	 *    shows as an error or an end before any byte of it: "dropped",
	 *    which the caller may retry. */
	r.total = 0;
	if (!sent || !read_head(&r, result, &length, &chunked, &keep_alive)) {
		/* Nothing came back (and the send failed or the connection
		 * ended): dropped; anything else half-read: broken. */
		if (r.timed_out || (!sent && ms_left(request->deadline_ns) == 0))
			result->outcome = UPSTREAM_TIMED_OUT;
		else if (r.total == 0 && (!sent || !r.failed))
			result->outcome = UPSTREAM_DROPPED;
		else
			result->outcome = UPSTREAM_BROKEN;
		goto done;
	}
	body_expected = !request->head_only && result->status != 204 && result->status != 304 &&
			result->status >= 200;
	if (body_expected) {
		bool whole;

		if (chunked) {
			whole = read_chunked(&r, result);
		} else if (length >= 0) {
			whole = take(&r, result, (size_t)length);
		} else { /* up to the close */
			keep_alive = false;
			while (take(&r, result, r.end - r.start) && read_more(&r, result->body_limit))
				;
			whole = r.eof && result->outcome == UPSTREAM_OK;
		}
		if (!whole) {
			if (result->outcome == UPSTREAM_OK)
				result->outcome = r.timed_out ? UPSTREAM_TIMED_OUT : UPSTREAM_BROKEN;
			goto done;
		}
	}
	/* Bytes past the answer mean the upstream is out of step: no reuse. */
	if (r.end != r.start)
		keep_alive = false;

done:
	free(r.buf);
	if (result->outcome == UPSTREAM_OK && keep_alive && !request->close_after) {
		if (p->idle_count == p->idle_capacity) {
			int capacity = p->idle_capacity ? p->idle_capacity * 2 : 8;
			struct idle_conn *bigger = realloc(p->idle, (size_t)capacity * sizeof(*bigger));

			if (bigger == NULL) {
				close_counted(upstream, fd);
				return;
			}
			p->idle = bigger;
			p->idle_capacity = capacity;
		}
		p->idle[p->idle_count++] = (struct idle_conn){ .fd = fd, .used_ns = kit_now_ns() };
	} else {
		close_counted(upstream, fd);
	}
}
