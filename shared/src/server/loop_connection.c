/*
 * loop_connection.c - one client connection on an event-loop thread: the
 * HTTP/1.1 server half of the event-loop core, and its transport
 * (server/core.h; event_loop.c runs the threads, the coroutines and the
 * waits).
 *
 * A connection goes round four steps:
 *   1. read the request head and parse it (http_parser.c); a malformed
 *      one becomes a refusal (400/431/501/505), served like a request so
 *      it is logged and counted, and the connection closes after it
 *   2. run the request through the app on a coroutine of its own, once
 *      one of LOOP_MAX_REQUESTS is free; where the code would block it
 *      yields (kit/wait.h) and the loop serves other connections
 *   3. the body is read only when the app asks (read_body below): a
 *      request that auth or the rate limit refuses never costs its body.
 *      "100 Continue" goes out on that first read. The request yields
 *      while bytes are on their way
 *   4. the response goes out (send); once the client has taken all of it
 *      the connection is posted for the loop's next round, where the next
 *      request (pipelined, or still to come) gets its turn. A body the app
 *      did not read, Connection: close, HTTP/1.0 or a refusal close it.
 *
 * Fairness and bounds: a connection gets one turn per round (one read of
 * at most READ_CHUNK bytes, one request started), so a client pipelining
 * thousands of requests is served in step with everyone else on its loop
 * thread. The input buffer holds at most MAX_HEADER_BYTES + READ_CHUNK;
 * what a client sends beyond waits in the socket. A client that pipelines
 * but does not read its answers is held to one answer at a time.
 *
 * Closing: when the client may still be sending (a body the app did not
 * read, a refused request), the connection is not simply closed - with
 * unread bytes the kernel would send a reset, and the client could lose
 * the answer before reading it. It is shut down for writing, and what the
 * client still sends is read and dropped until it closes or LINGER_MS
 * passes (nginx's lingering close; civetweb does the same).
 *
 * Timeouts (server/http_policy.c): a request, head and body, must arrive
 * within REQUEST_TIMEOUT_MS of its first byte, whether it comes first or
 * pipelined after another (408); an idle keep-alive connection closes
 * after KEEP_ALIVE_TIMEOUT_MS, and so does one whose client stops reading.
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

#include "kit/http_parser.h"
#include "kit/request.h"
#include "kit/wait.h"
#include "server/event_loop_internal.h"

#define READ_CHUNK 16384             /* most one read takes (redis: 16 KiB)     */
#define FIRST_BUFFER 4096            /* a connection's input buffer to start    */
#define ACCEPTS_PER_ROUND 64         /* new connections one round takes         */
#define LINGER_MS 2000               /* a closing client's unread bytes: drained
                                      * this long at most (nginx: lingering_time) */

enum conn_state { READING_HEAD, IN_APP, CLOSING };

struct kit_loop_conn {
	struct watch watch;          /* WATCH_CONN, first: the event's pointer    */
	struct loop *loop;
	int fd;
	char peer[48];
	enum conn_state state;       /* IN_APP also while queued for a coroutine */
	bool readable;               /* an edge arrived we have not read all of   */
	bool peer_closed;            /* the client shut down its side             */
	bool close_after;            /* close once out is sent                    */
	bool posted;                 /* on the loop's posted list                 */
	bool dead;                   /* closed while posted: freed on its turn    */
	bool linger;                 /* the client may still be sending            */
	bool lingering;              /* shut down for writing, draining its input  */

	char *in;                    /* received bytes: the head, then the rest   */
	size_t in_len, in_size;
	char *out;                   /* response bytes not yet sent               */
	size_t out_len, out_sent, out_size;

	/* The current request. */
	struct kit_http_head head;   /* parsed in place at the start of in        */
	char *path;                  /* its path, decoded and normalized          */
	size_t path_size;
	int refusal;                 /* not 0: refused before the app (step 1)    */
	const char *refusal_detail;
	uint64_t request_deadline_ns; /* head and body must be in by then         */

	/* Its body, as the app reads it (read_body). */
	size_t body_pos;             /* where unread input starts (>= head_len)   */
	long long body_left;         /* Content-Length bytes still to read        */
	size_t body_received;        /* chunked: decoded bytes so far             */
	struct kit_http_chunked chunked;
	bool body_done;              /* all of it read, or there is none          */
	bool continue_sent;
	struct kit_waiter *body_waiter; /* the request, while it waits for bytes  */

	uint64_t deadline_ns;        /* between requests: idle or partial; 0 in app */
	struct coroutine *coroutine; /* while its request runs                    */
	struct kit_loop_conn *prev, *next;
	struct kit_loop_conn *queued_next; /* waiting for a coroutine             */
	struct kit_loop_conn *posted_next;
};

static const struct kit_http_policy *policy_of(const struct kit_loop_conn *conn)
{
	return &conn->loop->config->policy;
}

/* ---- the posted list: connections with work for the next round ---- */

static void conn_post(struct kit_loop_conn *conn)
{
	struct loop *loop = conn->loop;

	if (conn->posted)
		return;
	conn->posted = true;
	conn->posted_next = NULL;
	if (loop->posted_tail != NULL)
		loop->posted_tail->posted_next = conn;
	else
		loop->posted_head = conn;
	loop->posted_tail = conn;
}

static void conn_free(struct kit_loop_conn *conn)
{
	free(conn->in);
	free(conn->out);
	free(conn->path);
	free(conn);
}

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
	if (conn->linger && !conn->peer_closed && !conn->lingering && !loop->stopping) {
		conn->lingering = true;
		shutdown(conn->fd, SHUT_WR); /* the answer is out: FIN after it */
		conn->deadline_ns = kit_now_ns() + ms_to_ns(LINGER_MS);
		free(conn->in);
		conn->in = NULL;
		conn->in_len = conn->in_size = 0;
		if (conn->readable)
			conn_post(conn);
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
	atomic_fetch_sub(&loop->open_connections, 1);
	if (loop->accept_paused == ACCEPT_FULL)
		loop_resume_accept(loop);
	if (conn->posted) {
		conn->dead = true; /* loop_serve_posted() frees it */
		return;
	}
	conn_free(conn);
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
			conn->deadline_ns = kit_now_ns() + ms_to_ns(policy_of(conn)->keep_alive_timeout_ms);
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

/* Appends data to what is to be sent. Returns false when out of memory
 * (the connection is then to close). */
static bool conn_queue(struct kit_loop_conn *conn, const char *data, size_t len)
{
	if (conn->out_len + len > conn->out_size) {
		size_t size = conn->out_len + len;
		char *bigger = realloc(conn->out, size);

		if (bigger == NULL)
			return false;
		conn->out = bigger;
		conn->out_size = size;
	}
	memcpy(conn->out + conn->out_len, data, len);
	conn->out_len += len;
	return true;
}

/* ---- reading ---- */

/* The parsed head points into the input buffer: when the buffer moves
 * while a request runs, so must every pointer. */
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

/* The most input a connection holds: a head, and one read after it. */
static size_t conn_input_limit(const struct kit_loop_conn *conn)
{
	return (size_t)policy_of(conn)->max_head_bytes + READ_CHUNK + 1;
}

/* Grows the input buffer to size bytes. Not realloc: a parsed head's
 * pointers are moved over while the old buffer still exists. Never called
 * while a request runs (its context holds pointers into the head). Returns
 * false when out of memory. */
static bool conn_reserve(struct kit_loop_conn *conn, size_t size)
{
	char *bigger;

	if (conn->in_size >= size)
		return true;
	bigger = malloc(size);
	if (bigger == NULL)
		return false;
	if (conn->in_len > 0)
		memcpy(bigger, conn->in, conn->in_len);
	head_move(&conn->head, conn->in, bigger);
	free(conn->in);
	conn->in = bigger;
	conn->in_size = size;
	return true;
}

/* One read of at most READ_CHUNK bytes into the input buffer, which grows
 * (between requests, when it is full) up to conn_input_limit(): a client
 * of small requests keeps a small buffer. A short read drained the
 * socket (as nginx assumes): the next edge tells us when there is more; a
 * full one leaves `readable` set, for the next turn. Returns false when
 * out of memory (the connection is then to close). */
static bool conn_fill(struct kit_loop_conn *conn)
{
	size_t limit = conn_input_limit(conn);
	size_t room;
	ssize_t n;

	if (conn->state == READING_HEAD && conn->in_size - conn->in_len < 2 &&
	    conn->in_size < limit) {
		size_t size = conn->in_size ? conn->in_size * 2 : FIRST_BUFFER + 1;

		if (!conn_reserve(conn, size > limit ? limit : size))
			return false;
	}
	/* One byte kept free: the parser may need a NUL there. */
	room = conn->in_size - conn->in_len - 1;
	if (room > READ_CHUNK)
		room = READ_CHUNK;
	if (room == 0)
		return true; /* full: the rest waits in the socket */
	n = recv(conn->fd, conn->in + conn->in_len, room, 0);
	if (n > 0) {
		if (conn->in_len == 0 && conn->state == READING_HEAD)
			conn->request_deadline_ns = kit_now_ns() +
				ms_to_ns(policy_of(conn)->request_timeout_ms);
		conn->in_len += (size_t)n;
		if ((size_t)n < room)
			conn->readable = false;
		return true;
	}
	if (n < 0 && errno == EINTR)
		return true;
	conn->readable = false;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
		conn->peer_closed = true;
	return true;
}

/* ---- the transport (server/core.h) ---- */

/* Drops the body bytes the app has taken, keeping the head in place. */
static void body_consumed(struct kit_loop_conn *conn)
{
	size_t head_len = conn->head.head_len;
	size_t taken = conn->body_pos - head_len;

	if (taken == 0)
		return;
	memmove(conn->in + head_len, conn->in + conn->body_pos, conn->in_len - conn->body_pos);
	conn->in_len -= taken;
	conn->body_pos = head_len;
}

/* What of the input is this body's: decoded into buf, at most size
 * bytes. Returns the bytes produced (0: none yet), or -1 with *status. */
static long body_take(struct kit_loop_conn *conn, char *buf, size_t size, int *status)
{
	size_t available = conn->in_len - conn->body_pos;
	const char *raw = conn->in + conn->body_pos;

	if (!conn->head.chunked) {
		size_t n = available;

		if ((long long)n > conn->body_left)
			n = (size_t)conn->body_left;
		if (n > size)
			n = size;
		memcpy(buf, raw, n);
		conn->body_pos += n;
		conn->body_left -= (long long)n;
		conn->body_done = conn->body_left == 0;
		body_consumed(conn);
		return (long)n;
	}

	/* Chunked: decoded bytes are never more than raw ones, so feeding at
	 * most size raw bytes fits buf; the decoder's budget is what the
	 * body may still grow by before it is too large. */
	size_t limit = (size_t)policy_of(conn)->max_body_bytes;
	size_t budget = conn->body_received < limit ? limit - conn->body_received : 0;
	size_t consumed = 0, produced = 0;
	int result;

	if (available > size)
		available = size;
	result = kit_http_chunked_decode(&conn->chunked, raw, available, &consumed, buf,
					 budget, &produced);
	conn->body_pos += consumed;
	conn->body_received += produced;
	body_consumed(conn);
	if (result == 0) {
		conn->body_done = true;
	} else if (result != KIT_HTTP_INCOMPLETE) {
		*status = result; /* 400 framing, 413 over the limit */
		conn->close_after = true;
		return -1;
	}
	return (long)produced;
}

static long loop_read_body(struct kit_request *req, char *buf, size_t size, int *status)
{
	static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct kit_loop_conn *conn = req->conn;

	if (conn->head.expect_continue && !conn->continue_sent) {
		/* Invited only now that the app wants it, and only if none of
		 * it has come anyway. */
		conn->continue_sent = true;
		if (conn->in_len == conn->body_pos && !conn->body_done &&
		    conn_queue(conn, go_on, sizeof(go_on) - 1))
			conn_flush(conn); /* IN_APP: never closes here */
	}
	for (;;) {
		long n;
		uint64_t now;

		if (conn->body_done)
			return 0;
		if (conn->in_len > conn->body_pos) {
			size_t before = conn->in_len;

			n = body_take(conn, buf, size, status);
			if (n != 0 || conn->body_done)
				return n;
			if (conn->in_len < before && conn->in_len > conn->body_pos)
				continue; /* chunk framing taken; more bytes to decode */
		}
		if (conn->peer_closed) {
			conn->body_done = true;
			if (!conn->head.chunked)
				return 0; /* the caller sees it is short */
			*status = 400; /* ended before the last chunk */
			return -1;
		}
		if (conn->readable) {
			if (!conn_fill(conn)) {
				*status = 400;
				conn->close_after = true;
				return -1;
			}
			continue;
		}
		now = kit_now_ns();
		if (now >= conn->request_deadline_ns) {
			*status = 408;
			conn->close_after = true;
			return -1;
		}
		/* Nothing to read yet: yield until the next edge (the event
		 * wakes us) or the request's deadline. */
		conn->body_waiter = kit_waiter_self();
		kit_waiter_sleep((long)((conn->request_deadline_ns - now + 999999) / 1000000));
		conn->body_waiter = NULL;
	}
}

static bool loop_keeps_alive(const struct kit_request *req)
{
	const struct kit_loop_conn *conn = req->conn;

	return conn->head.keep_alive && conn->body_done && conn->refusal == 0 &&
	       !conn->loop->stopping;
}

static void loop_send(struct kit_request *req, const char *data, size_t len, bool close_after)
{
	struct kit_loop_conn *conn = req->conn;

	if (close_after)
		conn->close_after = true;
	if (conn->peer_closed)
		return;
	if (!conn_queue(conn, data, len)) {
		conn->close_after = true;
		return;
	}
	conn_flush(conn); /* IN_APP: never closes here */
}

static const struct kit_transport loop_transport = {
	.read_body = loop_read_body,
	.keeps_alive = loop_keeps_alive,
	.send = loop_send,
};

/* ---- a request ---- */

/* A coroutine's body (event_loop.c's coroutine_main calls it): one
 * request through the app. */
void loop_request_main(void)
{
	struct kit_loop_conn *conn = current_coroutine->conn;
	const struct kit_server_config *config = conn->loop->config;
	struct kit_request req;

	memset(&req, 0, offsetof(struct kit_request, extra_headers));
	req.extra_headers[0] = '\0';
	req.extra_headers_len = 0;
	req.transport = &loop_transport;
	req.conn = conn;
	req.http = &conn->head;
	req.start_ns = kit_now_ns();
	req.method = conn->head.method;
	req.query = conn->head.query;
	req.path = conn->path;
	req.refusal = conn->refusal;
	req.refusal_detail = conn->refusal_detail;
	memcpy(req.peer, conn->peer, sizeof(req.peer));
	config->serve(config->app, &req);
}

/* The app is done with the connection's request: drop its bytes and post
 * the connection, whose next turn sends what is left and takes the next
 * request. Never frees the connection (callers may still hold it). */
void loop_request_done(struct kit_loop_conn *conn)
{
	struct loop *loop = conn->loop;
	const struct kit_http_policy *policy = policy_of(conn);
	uint64_t now = kit_now_ns();

	coroutine_put(loop, conn->coroutine);
	conn->coroutine = NULL;
	loop->active--;
	if (conn->state == CLOSING || !conn->head.keep_alive || !conn->body_done ||
	    conn->refusal != 0 || loop->stopping)
		conn->close_after = true;
	/* Closing on a client that may still be sending: linger (conn_close). */
	conn->linger = conn->close_after &&
		       (!conn->body_done || conn->refusal != 0 || conn->readable ||
			conn->in_len > conn->body_pos);
	conn->state = READING_HEAD;
	if (conn->close_after) {
		conn->in_len = 0; /* nothing after it is to be read */
	} else {
		memmove(conn->in, conn->in + conn->body_pos, conn->in_len - conn->body_pos);
		conn->in_len -= conn->body_pos;
	}
	conn->refusal = 0;
	conn->body_pos = 0;
	/* A pipelined request already begun gets its own REQUEST_TIMEOUT_MS
	 * from now; an empty buffer waits for the next one as idle. */
	if (conn->in_len > 0) {
		conn->request_deadline_ns = now + ms_to_ns(policy->request_timeout_ms);
		conn->deadline_ns = conn->request_deadline_ns;
	} else {
		conn->deadline_ns = now + ms_to_ns(policy->keep_alive_timeout_ms);
	}
	conn_post(conn);
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
	if (loop->active >= loop->config->loop_max_requests) {
		conn->queued_next = NULL;
		if (loop->queued_tail != NULL)
			loop->queued_tail->queued_next = conn;
		else
			loop->queued_head = conn;
		loop->queued_tail = conn;
		atomic_fetch_add(&loop->queued_requests, 1);
		return;
	}
	co = coroutine_get(loop);
	if (co == NULL) {
		/* Out of memory: the client is cut off rather than the
		 * process. */
		conn->state = READING_HEAD;
		conn->close_after = true;
		conn->out_len = conn->out_sent = 0;
		conn_post(conn);
		return;
	}
	loop->active++;
	co->conn = conn;
	conn->coroutine = co;
	coroutine_resume(loop, co);
	if (co->finished)
		loop_request_done(conn);
}

/* A request refused before the app: served with no head to speak of. */
static void conn_refuse(struct kit_loop_conn *conn, int status, const char *detail)
{
	memset(&conn->head, 0, sizeof(conn->head));
	conn->head.method = "-";
	conn->head.content_length = -1;
	conn->refusal = status;
	conn->refusal_detail = detail;
	conn->body_done = true;
	/* The app blanks method, path and query (app.c, serve()). */
	conn_start_app(conn);
}

/* Parses the head in the input buffer; a complete one starts its request
 * (or its refusal). */
static void conn_take_head(struct kit_loop_conn *conn)
{
	const struct kit_http_policy *policy = policy_of(conn);
	int result = kit_http_parse_head(conn->in, conn->in_len, (size_t)policy->max_head_bytes,
					 &conn->head);

	if (result == KIT_HTTP_INCOMPLETE)
		return; /* the request's deadline runs from its first byte */
	if (result != 0) {
		conn_refuse(conn, result, kit_http_refusal_detail(result));
		return;
	}
	if (conn->path_size < conn->head.path_len + 1) {
		char *bigger = realloc(conn->path, conn->head.path_len + 1);

		if (bigger == NULL) {
			conn->close_after = true;
			conn_post(conn);
			return;
		}
		conn->path = bigger;
		conn->path_size = conn->head.path_len + 1;
	}
	result = kit_http_path_normalize(conn->head.target, conn->head.path_len, conn->path,
					 conn->path_size);
	if (result != 0) {
		conn_refuse(conn, result, "the request path is malformed");
		return;
	}
	conn->body_pos = conn->head.head_len;
	conn->body_left = conn->head.content_length > 0 ? conn->head.content_length : 0;
	conn->body_received = 0;
	conn->body_done = conn->body_left == 0 && !conn->head.chunked;
	/* Room for the body's reads now (the head and one read after it):
	 * the buffer cannot move once the request runs. */
	if (!conn->body_done &&
	    !conn_reserve(conn, conn->head.head_len + READ_CHUNK + 1)) {
		conn->close_after = true;
		conn_post(conn);
		return;
	}
	conn->continue_sent = false;
	if (conn->head.chunked)
		kit_http_chunked_init(&conn->chunked);
	conn_start_app(conn);
}

/* A lingering connection's turn: what the client still sends is read and
 * dropped, READ_CHUNK bytes a turn, until it closes. */
static void conn_drain(struct kit_loop_conn *conn)
{
	char sink[4096];
	size_t taken = 0;

	while (conn->readable && taken < READ_CHUNK) {
		ssize_t n = recv(conn->fd, sink, sizeof(sink), 0);

		if (n > 0) {
			taken += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		conn->readable = false;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			conn->peer_closed = true;
	}
	if (conn->peer_closed) {
		conn_close(conn);
		return;
	}
	if (conn->readable)
		conn_post(conn);
}

/* A connection's turn, when none of its requests runs: send what is
 * queued; only once the client has taken all of it, read once and take
 * the next request. Work left over (more to read) posts it for the next
 * round. */
static void conn_advance(struct kit_loop_conn *conn)
{
	if (conn->lingering) {
		conn_drain(conn);
		return;
	}
	if (!conn_flush(conn))
		return; /* closed */
	if (conn->out_len > conn->out_sent)
		return; /* EPOLLOUT brings us back */
	if (conn->close_after) {
		conn_close(conn);
		return;
	}
	if (conn->readable && !conn_fill(conn)) {
		conn_close(conn); /* out of memory */
		return;
	}
	if (conn->in_len > 0) {
		conn_take_head(conn);
	} else if (conn->peer_closed) {
		conn_close(conn);
		return;
	}
	if (conn->state == READING_HEAD && conn->readable)
		conn_post(conn);
}

void loop_serve_posted(struct loop *loop)
{
	struct kit_loop_conn *conn = loop->posted_head;

	/* This round's list; what is posted meanwhile waits for the next. */
	loop->posted_head = loop->posted_tail = NULL;
	while (conn != NULL) {
		struct kit_loop_conn *next = conn->posted_next;

		conn->posted = false;
		if (conn->dead)
			conn_free(conn);
		else if (conn->state == READING_HEAD)
			conn_advance(conn);
		conn = next;
	}
}

void loop_connection_event(struct kit_loop_conn *conn, uint32_t events)
{
	if (conn->dead)
		return;
	if (events & (EPOLLERR | EPOLLHUP))
		conn->peer_closed = true;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
		conn->readable = true;
	if (conn->state != READING_HEAD) {
		/* Its request runs (or waits for a coroutine): send what it has
		 * answered so far; wake it if it waits for its body; the rest
		 * waits until the request is done (loop_request_done). */
		if ((events & EPOLLOUT) && conn->out_len > conn->out_sent)
			conn_flush(conn);
		if (conn->body_waiter != NULL && (conn->readable || conn->peer_closed))
			kit_waiter_wake(conn->body_waiter);
		if (events & (EPOLLERR | EPOLLHUP))
			conn_close(conn); /* marks it CLOSING */
		return;
	}
	conn_advance(conn);
}

/* ---- accepting ---- */

void loop_accept(struct loop *loop)
{
	for (int accepted = 0; accepted < ACCEPTS_PER_ROUND; accepted++) {
		struct sockaddr_in address;
		socklen_t length = sizeof(address);
		struct kit_loop_conn *conn;
		struct epoll_event event = { 0 };
		int one = 1;
		int fd;

		if (loop->conn_count >= loop->max_conns) {
			loop_pause_accept(loop, ACCEPT_FULL, kit_now_ns());
			return;
		}
		fd = accept4(loop->listen_fd, (struct sockaddr *)&address, &length,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				loop_pause_accept(loop, ACCEPT_NO_FDS, kit_now_ns());
			return; /* EAGAIN: the backlog is empty */
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
		conn->deadline_ns = kit_now_ns() + ms_to_ns(loop->config->policy.keep_alive_timeout_ms);
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
		atomic_fetch_add(&loop->open_connections, 1);
	}
}

/* ---- the queue, the sweep, the stop ---- */

/* A coroutine came free: the longest-waiting request gets it. */
static void start_queued(struct loop *loop)
{
	struct kit_loop_conn *conn = loop->queued_head;

	loop->queued_head = conn->queued_next;
	if (loop->queued_head == NULL)
		loop->queued_tail = NULL;
	atomic_fetch_sub(&loop->queued_requests, 1);
	if (conn->state == CLOSING) { /* its client left while it waited */
		conn->state = READING_HEAD;
		conn_close(conn);
		return;
	}
	conn_start_app(conn);
}

void loop_start_queued(struct loop *loop)
{
	while (loop->queued_head != NULL && loop->active < loop->config->loop_max_requests)
		start_queued(loop);
}

void loop_sweep_connections(struct loop *loop, uint64_t now)
{
	for (struct kit_loop_conn *conn = loop->conns, *next; conn != NULL; conn = next) {
		next = conn->next;
		if (conn->state != READING_HEAD || conn->deadline_ns == 0)
			continue;
		if (conn->lingering) {
			if (now >= conn->deadline_ns) {
				conn->linger = false; /* enough: close for good */
				conn_close(conn);
			}
			continue;
		}
		/* A partial request's deadline runs from its first byte. */
		if (conn->in_len > 0 && conn->request_deadline_ns < conn->deadline_ns)
			conn->deadline_ns = conn->request_deadline_ns;
		if (now < conn->deadline_ns) {
			if (conn->in_len == 0 && conn->out_len == 0) {
				/* Idle: give its buffers back until it speaks. */
				free(conn->in);
				conn->in = NULL;
				conn->in_size = 0;
				free(conn->out);
				conn->out = NULL;
				conn->out_size = 0;
			}
			continue;
		}
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
	loop_serve_posted(loop); /* frees the closed ones still posted */
}
