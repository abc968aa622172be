/*
 * loop_connection.c - one client connection on an event-loop thread: the
 * HTTP/1.1 server half of the event-loop core (event_loop.c runs the
 * threads, the coroutines and the waits).
 *
 * A connection goes round four steps:
 *   1. read the request head and parse it (http_parser.c); a malformed
 *      one is answered 400/431/501/505 here and the connection closed
 *   2. read the body: Content-Length bytes, or chunks decoded as they
 *      come, up to MAX_BODY_BYTES ("100 Continue" first when asked); a
 *      body over the limit is not read: the request goes on marked too
 *      large, kit_request_body() answers 413, and the connection closes
 *   3. run the request through the app (kit_app_serve: the chain, the
 *      handler, the finish hooks) on a coroutine of its own, once one of
 *      LOOP_MAX_REQUESTS is free. Where the code would block - Redis, the
 *      upstream - it calls kit_wait_fd() or kit_http_perform(), the
 *      coroutine yields, and the loop serves other connections until the
 *      socket is ready or the deadline passes
 *   4. send the response (kit_respond -> kit_loop_send); once the client
 *      has taken all of it, go back to 1 for the next request, or close
 *      (Connection: close, HTTP/1.0, a 401, an unread body)
 * Timeouts: a request must arrive whole within REQUEST_TIMEOUT_MS of its
 * first byte (408 otherwise), an idle keep-alive connection is closed after
 * KEEP_ALIVE_TIMEOUT_MS, and so is one whose client stops reading.
 *
 * Threads: a connection belongs to the loop thread that accepted it for
 * its whole life, so nothing here takes a lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/event_loop_internal.h"
#include "kit/http_parser.h"
#include "kit/request.h"
#include "kit/response.h"

#define HEAD_MAX 16384               /* request line and headers, like civetweb */
#define REQUEST_TIMEOUT_MS 10000     /* a whole request, from its first byte   */
#define KEEP_ALIVE_TIMEOUT_MS 30000  /* idle between requests; a stalled send  */

enum conn_state { READING_HEAD, READING_BODY, IN_APP, CLOSING };

struct kit_loop_conn {
	struct watch watch;          /* WATCH_CONN, first: the event's pointer    */
	struct loop *loop;
	int fd;
	char peer[48];
	enum conn_state state;
	bool readable;               /* an edge arrived we have not read after    */
	bool peer_closed;            /* the client shut down its side             */
	bool close_after;            /* close once out is sent                    */

	char *in;                    /* received bytes not yet consumed           */
	size_t in_len, in_size;
	char *out;                   /* response bytes not yet sent               */
	size_t out_len, out_sent, out_size;

	struct kit_http_head head;   /* the current request's, parsed in place   */
	char *path;                  /* its path, decoded and normalized          */
	size_t path_size;
	char *body;                  /* its body, handed to the request           */
	size_t body_len, body_size;
	size_t body_consumed;        /* raw bytes of in the body took             */
	struct kit_http_chunked chunked;
	bool body_too_large;

	uint64_t deadline_ns;        /* 0: none (the app is running)              */
	struct coroutine *coroutine; /* while IN_APP                              */
	struct kit_loop_conn *prev, *next;
	struct kit_loop_conn *queued_next; /* waiting for a coroutine         */
};

static void conn_close(struct kit_loop_conn *conn)
{
	struct loop *loop = conn->loop;

	if (conn->state == IN_APP) {
		/* The request still runs: it finishes (its answer has nowhere
		 * to go) and then the connection is closed. */
		conn->state = CLOSING;
		conn->close_after = true;
		return;
	}
	close(conn->fd);
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		loop->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	loop->conn_count--;
	free(conn->in);
	free(conn->out);
	free(conn->body);
	free(conn->path);
	free(conn);
}

/* Sends what is queued. Returns false when the connection was closed. */
static bool conn_flush(struct kit_loop_conn *conn)
{
	while (conn->out_sent < conn->out_len) {
		ssize_t n = send(conn->fd, conn->out + conn->out_sent,
				 conn->out_len - conn->out_sent, MSG_NOSIGNAL);

		if (n > 0) {
			conn->out_sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* The client reads slowly: EPOLLOUT resumes us. */
			conn->deadline_ns = kit_now_ns() + ms_to_ns(KEEP_ALIVE_TIMEOUT_MS);
			return true;
		}
		conn->out_len = conn->out_sent = 0;
		conn->close_after = true;
		conn->peer_closed = true;
		break;
	}
	conn->out_len = conn->out_sent = 0;
	if (conn->close_after && conn->state != IN_APP) {
		conn_close(conn);
		return false;
	}
	return true;
}

void kit_loop_send(struct kit_request *req, const char *data, size_t len, bool close_after)
{
	struct kit_loop_conn *conn = req->loop_conn;

	if (close_after)
		conn->close_after = true;
	if (conn->peer_closed)
		return;
	if (conn->out_len + len > conn->out_size) {
		size_t size = conn->out_len + len;
		char *bigger = realloc(conn->out, size);

		if (bigger == NULL) {
			conn->close_after = true;
			return;
		}
		conn->out = bigger;
		conn->out_size = size;
	}
	memcpy(conn->out + conn->out_len, data, len);
	conn->out_len += len;
	conn_flush(conn); /* IN_APP: never closes here */
}

struct kit_thread *kit_loop_thread(struct kit_request *req)
{
	return &req->loop_conn->loop->resources;
}

/* Answers a request that never reached the app (malformed, too slow) and
 * closes the connection once that is sent. */
static void conn_refuse(struct kit_loop_conn *conn, int status, const char *detail)
{
	struct kit_request req;

	memset(&req, 0, sizeof(req));
	req.app = conn->loop->app;
	req.loop_conn = conn;
	req.method = "GET";
	req.path = "";
	kit_new_request_id(req.request_id);
	kit_response_header(&req, "X-Request-Id", req.request_id);
	conn->close_after = true;
	conn->state = IN_APP; /* kit_loop_send must not close it under us */
	kit_problem(&req, status, "%s", detail);
	conn->state = READING_HEAD;
	conn_flush(conn); /* closes it once the answer is out */
}

static void conn_serve(struct kit_loop_conn *conn);
static void conn_read(struct kit_loop_conn *conn);
static void conn_advance(struct kit_loop_conn *conn);
static size_t conn_input_limit(const struct kit_loop_conn *conn);

/* A coroutine's body: one request through the app. */
void loop_request_main(void)
{
	struct coroutine *co = current_coroutine;
	struct kit_loop_conn *conn = co->conn;
	struct loop *loop = co->loop;
	struct kit_request req;

#if KIT_ASAN
	__sanitizer_finish_switch_fiber(NULL, &loop->main_stack_bottom,
					&loop->main_stack_size);
#endif
	memset(&req, 0, offsetof(struct kit_request, extra_headers));
	req.extra_headers[0] = '\0';
	req.extra_headers_len = 0;
	req.app = loop->app;
	req.loop_conn = conn;
	req.http = &conn->head;
	req.start_ns = kit_now_ns();
	req.method = conn->head.method;
	req.query = conn->head.query;
	req.path = conn->path;
	if (conn->body_too_large) {
		req.body_too_large = true;
	} else {
		req.body = conn->body; /* the request owns it now */
		req.body_len = conn->body_len;
		req.body_read = true;
		conn->body = NULL;
		conn->body_len = conn->body_size = 0;
	}
	kit_app_serve(&req, conn->peer);
	co->finished = true;
#if KIT_ASAN
	__sanitizer_start_switch_fiber(NULL, loop->main_stack_bottom, loop->main_stack_size);
#endif
	/* Returning switches to uc_link, the loop. */
}

/* The app is done with the connection's request: send, then read on. */
void loop_request_done(struct kit_loop_conn *conn)
{
	struct loop *loop = conn->loop;

	coroutine_put(loop, conn->coroutine);
	conn->coroutine = NULL;
	loop->active--;
	/* What the request took off the input: its head and its body. */
	size_t used = conn->head.head_len + conn->body_consumed;

	if (conn->state == CLOSING || conn->body_too_large || !conn->head.keep_alive ||
	    loop->stopping)
		conn->close_after = true;
	conn->state = READING_HEAD;
	free(conn->body);
	conn->body = NULL;
	conn->body_len = conn->body_size = conn->body_consumed = 0;
	conn->body_too_large = false;
	if (used <= conn->in_len) {
		memmove(conn->in, conn->in + used, conn->in_len - used);
		conn->in_len -= used;
	} else {
		conn->in_len = 0;
	}
	conn->deadline_ns = kit_now_ns() + ms_to_ns(KEEP_ALIVE_TIMEOUT_MS);
	conn_advance(conn); /* a pipelined request may already be here */
}

static void conn_start_app(struct kit_loop_conn *conn)
{
	struct loop *loop = conn->loop;
	struct coroutine *co;

	conn->state = IN_APP;
	conn->deadline_ns = 0;
	/* Back-pressure: at most LOOP_MAX_REQUESTS requests run at once on
	 * a loop thread (each holds a stack, a curl handle, buffers). The
	 * others wait their turn here, in arrival order. */
	if (loop->active >= loop->app->loop_max_requests) {
		conn->queued_next = NULL;
		if (loop->queued_tail != NULL)
			loop->queued_tail->queued_next = conn;
		else
			loop->queued_head = conn;
		loop->queued_tail = conn;
		return;
	}
	co = coroutine_get(loop);
	if (co == NULL) {
		conn->state = READING_HEAD;
		conn_refuse(conn, 503, "the server is out of memory");
		return;
	}
	loop->active++;
	co->conn = conn;
	conn->coroutine = co;
	coroutine_resume(loop, co);
	if (co->finished)
		loop_request_done(conn);
}

/* A coroutine came free: the longest-waiting request gets it. */
static void start_queued(struct loop *loop)
{
	struct kit_loop_conn *conn = loop->queued_head;

	if (conn == NULL || loop->active >= loop->app->loop_max_requests)
		return;
	loop->queued_head = conn->queued_next;
	if (loop->queued_head == NULL)
		loop->queued_tail = NULL;
	if (conn->state == CLOSING) { /* its client left while it waited */
		conn->state = READING_HEAD;
		conn_close(conn);
		return;
	}
	conn_start_app(conn);
}

/* Whether the body has arrived (READING_BODY): BODY_READY, BODY_WAIT for
 * more bytes, or BODY_REFUSED after conn_refuse() (conn may be freed). */
enum { BODY_READY, BODY_WAIT, BODY_REFUSED };
static int conn_body_ready(struct kit_loop_conn *conn)
{
	const char *raw = conn->in + conn->head.head_len;
	size_t raw_len = conn->in_len - conn->head.head_len;
	size_t limit = kit_app_max_body(conn->loop->app);

	if (!conn->head.chunked) {
		size_t want = (size_t)conn->head.content_length;

		if (raw_len < want)
			return BODY_WAIT;
		conn->body = malloc(want + 1);
		if (conn->body == NULL) {
			conn_refuse(conn, 503, "the server is out of memory");
			return BODY_REFUSED;
		}
		memcpy(conn->body, raw, want);
		conn->body[want] = '\0';
		conn->body_len = want;
		conn->body_consumed = want;
		return BODY_READY;
	}
	/* Chunked: decode what has arrived. Decoded bytes are never more
	 * than raw ones, so the buffer grows to what the raw bytes could
	 * hold (at most the limit) and the decoder is given the whole
	 * budget left under the limit. */
	size_t raw_left = raw_len - conn->body_consumed;
	size_t budget = limit - conn->body_len;
	size_t need = conn->body_len + (raw_left < budget ? raw_left : budget) + 1;
	size_t consumed = 0, produced = 0;
	int result;

	if (need > conn->body_size) {
		size_t size = conn->body_size * 2 > need ? conn->body_size * 2 : need;
		char *bigger;

		if (size > limit + 1)
			size = limit + 1;
		bigger = realloc(conn->body, size);
		if (bigger == NULL) {
			conn_refuse(conn, 503, "the server is out of memory");
			return BODY_REFUSED;
		}
		conn->body = bigger;
		conn->body_size = size;
	}
	result = kit_http_chunked_decode(&conn->chunked, raw + conn->body_consumed, raw_left,
					 &consumed, conn->body + conn->body_len, budget, &produced);
	conn->body_consumed += consumed;
	conn->body_len += produced;
	if (result == 0) {
		conn->body[conn->body_len] = '\0';
		return BODY_READY;
	}
	if (result == 413) {
		conn->body_too_large = true; /* kit_request_body answers 413 */
		return BODY_READY;
	}
	if (result != KIT_HTTP_INCOMPLETE) {
		conn_refuse(conn, 400, "the chunked body is malformed");
		return BODY_REFUSED;
	}
	return BODY_WAIT;
}

/* Parses and serves what is in the input buffer. */
static void conn_serve(struct kit_loop_conn *conn)
{
	struct kit_app *app = conn->loop->app;
	int result;

	if (conn->state == READING_HEAD) {
		size_t target_len;

		result = kit_http_parse_head(conn->in, conn->in_len, HEAD_MAX, &conn->head);
		if (result == KIT_HTTP_INCOMPLETE)
			return; /* the deadline was set when its first byte came */
		if (result != 0) {
			conn_refuse(conn, result, result == 431 ? "the request head is too large"
					  : result == 505 ? "only HTTP/1.0 and HTTP/1.1 are served"
					  : result == 501 ? "only the chunked transfer coding is supported"
					  : "the request is malformed");
			return;
		}
		target_len = conn->head.path_len;
		if (conn->path_size < target_len + 1) {
			char *bigger = realloc(conn->path, target_len + 1);

			if (bigger == NULL) {
				conn_refuse(conn, 503, "the server is out of memory");
				return;
			}
			conn->path = bigger;
			conn->path_size = target_len + 1;
		}
		result = kit_http_path_normalize(conn->head.target, target_len, conn->path,
						 conn->path_size);
		if (result != 0) {
			conn_refuse(conn, result, "the request path is malformed");
			return;
		}
		conn->body_len = conn->body_consumed = 0;
		conn->body_too_large = false;
		if (conn->head.content_length > (long long)kit_app_max_body(app)) {
			conn->body_too_large = true; /* not read: the connection closes */
			conn_start_app(conn);
			return;
		}
		if (conn->head.content_length <= 0 && !conn->head.chunked) {
			conn_start_app(conn);
			return;
		}
		if (conn->head.chunked)
			kit_http_chunked_init(&conn->chunked);
		if (conn->head.expect_continue) { /* the parser sets it on HTTP/1.1 only */
			static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";

			if (send(conn->fd, go_on, sizeof(go_on) - 1, MSG_NOSIGNAL) < 0) {
				conn_close(conn);
				return;
			}
		}
		conn->state = READING_BODY;
	}
	if (conn->state != READING_BODY)
		return;
	result = conn_body_ready(conn);
	if (result == BODY_READY) {
		conn_start_app(conn);
	} else if (result == BODY_WAIT && conn->in_len + 1 >= conn_input_limit(conn)) {
		/* The whole buffer and still no end: chunk framing alone
		 * beyond every limit. */
		conn_refuse(conn, 413, "the request is too large");
	}
}

/* The parsed head points into the input buffer: when the buffer moves
 * (it grows while a body arrives), so must every pointer. */
static void head_move(struct kit_http_head *head, const char *from, const char *to)
{
#define MOVED(p) ((p) != NULL ? to + ((p) - from) : NULL)
	head->method = MOVED(head->method);
	head->target = MOVED(head->target);
	head->query = MOVED(head->query);
	for (int i = 0; i < head->header_count; i++) {
		head->headers[i].name = MOVED(head->headers[i].name);
		head->headers[i].value = MOVED(head->headers[i].value);
	}
#undef MOVED
}

/* The most input a connection buffers: a request's raw bytes stay here
 * until it is done, and chunk framing may add to its body, so twice the
 * body limit and some. Requests pipelined beyond it wait in the socket. */
static size_t conn_input_limit(const struct kit_loop_conn *conn)
{
	return HEAD_MAX + 2 * kit_app_max_body(conn->loop->app) + 65536;
}

/* Reads what the socket has (as far as the input buffer goes), then
 * serves it. */
static void conn_read(struct kit_loop_conn *conn)
{
	size_t limit = conn_input_limit(conn);

	conn->readable = false;
	for (;;) {
		ssize_t n;

		if (conn->in_size - conn->in_len < 4096 && conn->in_size < limit + 1) {
			size_t size = conn->in_size ? conn->in_size * 2 : 4096 + 1;
			char *bigger;

			if (size > limit + 1)
				size = limit + 1;
			/* Not realloc: the parsed head's pointers are moved over
			 * while the old buffer still exists. */
			bigger = malloc(size);
			if (bigger == NULL) {
				conn_close(conn);
				return;
			}
			if (conn->in_len > 0)
				memcpy(bigger, conn->in, conn->in_len);
			if (conn->state == READING_BODY)
				head_move(&conn->head, conn->in, bigger);
			free(conn->in);
			conn->in = bigger;
			conn->in_size = size;
		}
		/* One byte kept free: the parser may need a NUL there. */
		size_t room = conn->in_size - conn->in_len - 1;

		if (room == 0) {
			conn->readable = true; /* the rest waits in the socket */
			break;
		}
		n = recv(conn->fd, conn->in + conn->in_len, room, 0);
		if (n > 0) {
			if (conn->in_len == 0)
				conn->deadline_ns = kit_now_ns() + ms_to_ns(REQUEST_TIMEOUT_MS);
			conn->in_len += (size_t)n;
			/* A short read drained the socket (as nginx assumes): the
			 * next edge tells us when there is more. */
			if ((size_t)n < room)
				break;
			continue;
		}
		if (n == 0) {
			conn->peer_closed = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		conn->peer_closed = true;
		break;
	}
	if (conn->in_len > 0)
		conn_serve(conn);
	else if (conn->peer_closed)
		conn_close(conn);
}

/* What a connection does when none of its requests runs: send what is
 * queued; only once the client has taken all of it, serve the next
 * request (already buffered, or read now). A client that pipelines
 * requests but does not read the answers is thereby held to one answer
 * at a time (back-pressure), instead of making the gateway build them all. */
static void conn_advance(struct kit_loop_conn *conn)
{
	if (!conn_flush(conn))
		return; /* closed */
	if (conn->out_len > conn->out_sent)
		return; /* EPOLLOUT brings us back */
	if (conn->close_after) {
		conn_close(conn);
		return;
	}
	if (conn->readable)
		conn_read(conn);
	else if (conn->in_len > 0)
		conn_serve(conn);
	else if (conn->peer_closed)
		conn_close(conn);
}

void loop_connection_event(struct kit_loop_conn *conn, uint32_t events)
{
	if (events & (EPOLLERR | EPOLLHUP)) {
		conn->peer_closed = true;
		if (conn->state != IN_APP) {
			conn_close(conn);
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLRDHUP))
		conn->readable = true;
	if (conn->state == IN_APP) {
		/* Its request runs: send what it has answered so far; read
		 * on when it is done (conn_request_done). */
		if ((events & EPOLLOUT) && conn->out_len > conn->out_sent)
			conn_flush(conn);
		return;
	}
	conn_advance(conn);
}

void loop_accept(struct loop *loop)
{
	for (;;) {
		struct sockaddr_in address;
		socklen_t length = sizeof(address);
		struct kit_loop_conn *conn;
		struct epoll_event event = { 0 };
		int one = 1;
		int fd = accept4(loop->listen_fd, (struct sockaddr *)&address, &length,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fprintf(stderr, "%s: accept: %s\n", kit_app_name(loop->app),
					strerror(errno));
			return;
		}
		conn = calloc(1, sizeof(*conn));
		if (conn == NULL) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn->watch.kind = WATCH_CONN;
		conn->loop = loop;
		conn->fd = fd;
		conn->state = READING_HEAD;
		conn->deadline_ns = kit_now_ns() + ms_to_ns(KEEP_ALIVE_TIMEOUT_MS);
		inet_ntop(AF_INET, &address.sin_addr, conn->peer, sizeof(conn->peer));
		/* Edge-triggered, registered once for both directions: no
		 * epoll_ctl per request. */
		event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		event.data.ptr = conn;
		if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
			close(fd);
			free(conn);
			continue;
		}
		conn->next = loop->conns;
		if (loop->conns != NULL)
			loop->conns->prev = conn;
		loop->conns = conn;
		loop->conn_count++;
	}
}


void loop_start_queued(struct loop *loop)
{
	while (loop->queued_head != NULL && loop->active < loop->app->loop_max_requests)
		start_queued(loop);
}

void loop_sweep_connections(struct loop *loop, uint64_t now)
{
	for (struct kit_loop_conn *conn = loop->conns, *next; conn != NULL; conn = next) {
		next = conn->next;
		if (conn->state == IN_APP || conn->deadline_ns == 0 || now < conn->deadline_ns)
			continue;
		if (conn->out_len > conn->out_sent || conn->in_len == 0)
			conn_close(conn); /* idle, or the client stopped reading */
		else
			conn_refuse(conn, 408, "the request did not arrive in time");
	}
}

void loop_close_idle_connections(struct loop *loop)
{
	/* Idle connections close now; busy ones after their request. */
	for (struct kit_loop_conn *conn = loop->conns, *next; conn != NULL; conn = next) {
		next = conn->next;
		if (conn->state == READING_HEAD && conn->in_len == 0 &&
		    conn->out_len == conn->out_sent)
			conn_close(conn);
		else
			conn->close_after = true;
	}
}

void loop_close_all_connections(struct loop *loop)
{
	/* Past the stop deadline a request may still wait on an upstream:
	 * its connection is closed here and its coroutine is never resumed
	 * (the process is about to exit; it is not freed). */
	while (loop->conns != NULL) {
		loop->conns->state = READING_HEAD;
		conn_close(loop->conns);
	}
}
