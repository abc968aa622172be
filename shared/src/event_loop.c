/*
 * event_loop.c - the second server core (kit/event_loop.h): LOOP_THREADS
 * threads, each with its own listening socket (SO_REUSEPORT: the kernel
 * spreads new connections over them) and its own epoll set, serving every
 * connection it accepted until that connection closes.
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
 * A round of the loop: wait for events (epoll_wait), handle them, run
 * every request that can go on, then the work left for the end of the
 * round (kit_at_round_end: the round's Redis commands in one write) and
 * the round's access-log lines in one write.
 * Timeouts: a request must arrive whole within REQUEST_TIMEOUT_MS of its
 * first byte (408 otherwise), an idle keep-alive connection is closed after
 * KEEP_ALIVE_TIMEOUT_MS, and so is one whose client stops reading.
 *
 * Coroutines are ucontext_t contexts on small mmap()ed stacks with a guard
 * page, reused from a free list; only the pages a request touches become
 * resident. ASan is told about every stack switch.
 *
 * Threads: a loop thread owns everything here except the app (read-only)
 * and the stop eventfd, which the main thread writes on SIGINT/SIGTERM.
 * Every connection, coroutine and socket belongs to one loop thread for
 * its whole life, so nothing here takes a lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <ucontext.h>
#include <unistd.h>

#include <curl/curl.h>

#include "internal.h"
#include "kit/config.h"
#include "kit/event_loop.h"
#include "kit/http_parser.h"
#include "kit/request.h"
#include "kit/response.h"

#define HEAD_MAX 16384               /* request line and headers, like civetweb */
#define REQUEST_TIMEOUT_MS 10000     /* a whole request, from its first byte   */
#define KEEP_ALIVE_TIMEOUT_MS 30000  /* idle between requests; a stalled send  */
#define STACK_SIZE (128 * 1024)      /* a coroutine's stack (virtual; touched pages count) */
#define SPARE_COROUTINES 256         /* kept for reuse per loop thread          */
#define MAX_EVENTS 128
#define ROUND_END_MAX 16             /* kit_at_round_end() calls per round      */

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define KIT_ASAN 1
#else
#define KIT_ASAN 0
#endif

/* What an epoll event points at. */
enum watch_kind { WATCH_LISTEN, WATCH_STOP, WATCH_CONN, WATCH_CURL, WATCH_WAIT };
struct watch {
	enum watch_kind kind;
};

struct loop;
struct kit_loop_conn;

/* One request's coroutine. */
struct coroutine {
	ucontext_t context;
	char *stack;                 /* STACK_SIZE bytes, the lowest page a guard */
	struct loop *loop;
	struct kit_loop_conn *conn;  /* whose request it runs                    */
	bool finished;
	struct coroutine *next;      /* the ready queue or the free list         */

	/* kit_wait_fd */
	struct watch wait_watch;     /* WATCH_WAIT: the fd is ready               */
	int wait_fd;
	int wait_result;             /* WAITING, then 1 ready or 0 timed out      */
	bool sleeping;               /* in kit_waiter_sleep, not on an fd         */
	uint64_t wait_deadline_ns;
	struct coroutine *wait_prev, *wait_next;

	/* kit_http_perform */
	bool curl_done;
	CURLcode curl_result;
};
#define WAITING (-2)

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

/* A socket libcurl asked us to watch. */
struct curl_watch {
	struct watch watch;          /* WATCH_CURL                                */
	curl_socket_t fd;
};

struct loop {
	struct kit_app *app;
	pthread_t thread;
	int index;
	int epoll_fd;
	int listen_fd;
	int stop_fd;                 /* eventfd, written by kit_loop_run on a signal */
	struct watch listen_watch, stop_watch;
	bool stopping;

	struct kit_thread resources; /* kit_thread_resource() on this thread      */
	CURLM *multi;
	uint64_t curl_deadline_ns;   /* 0: no curl timer                          */

	ucontext_t main_context;
	const void *main_stack_bottom;  /* for ASan's stack switch annotations */
	size_t main_stack_size;
	struct coroutine *ready_head, *ready_tail;
	struct coroutine *spare;
	int spare_count;
	struct coroutine *waiting;   /* in kit_wait_fd, with a deadline          */

	struct {                     /* kit_at_round_end(), run once a round     */
		void (*fn)(void *arg);
		void *arg;
	} round_end[ROUND_END_MAX];
	int round_end_count;
	char *stdout_lines;          /* kit_write_stdout(), written once a round */
	size_t stdout_len;

	struct kit_loop_conn *conns; /* every open connection                    */
	int conn_count;
	int active;                  /* requests running (coroutines in use)     */
	struct kit_loop_conn *queued_head, *queued_tail; /* requests waiting for
	                              * one of LOOP_MAX_REQUESTS coroutines     */
	uint64_t next_sweep_ns;
};

static __thread struct loop *current_loop;
static __thread struct coroutine *current_coroutine;

static uint64_t ms_to_ns(long ms)
{
	return (uint64_t)ms * 1000000ULL;
}

/* ---- coroutines ---- */

static void coroutine_entry(void);

/* A coroutine from the free list or a new one; NULL when out of memory. */
static struct coroutine *coroutine_get(struct loop *loop)
{
	struct coroutine *co = loop->spare;

	if (co != NULL) {
		loop->spare = co->next;
		loop->spare_count--;
	} else {
		co = calloc(1, sizeof(*co));
		if (co == NULL)
			return NULL;
		co->stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (co->stack == MAP_FAILED) {
			free(co);
			return NULL;
		}
		/* A stack that overflows hits this page and crashes cleanly
		 * instead of writing over whatever lies below. */
		mprotect(co->stack, 4096, PROT_NONE);
		co->loop = loop;
		co->wait_watch.kind = WATCH_WAIT;
		/* Once per coroutine: getcontext costs a system call (the
		 * signal mask), and makecontext below only needs the stack
		 * and the link, which never change. */
		getcontext(&co->context);
		co->context.uc_stack.ss_sp = co->stack;
		co->context.uc_stack.ss_size = STACK_SIZE;
		co->context.uc_link = &loop->main_context;
	}
	co->next = NULL;
	co->finished = false;
	co->conn = NULL;
	makecontext(&co->context, coroutine_entry, 0); /* start at the top again */
	return co;
}

static void coroutine_free(struct coroutine *co)
{
	munmap(co->stack, STACK_SIZE);
	free(co);
}

static void coroutine_put(struct loop *loop, struct coroutine *co)
{
	if (loop->spare_count >= SPARE_COROUTINES) {
		coroutine_free(co);
		return;
	}
	co->next = loop->spare;
	loop->spare = co;
	loop->spare_count++;
}

/* Runs co until it yields or finishes (loop side). */
static void coroutine_resume(struct loop *loop, struct coroutine *co)
{
#if KIT_ASAN
	void *fake_stack = NULL;

	__sanitizer_start_switch_fiber(&fake_stack, co->stack, STACK_SIZE);
#endif
	current_coroutine = co;
	swapcontext(&loop->main_context, &co->context);
	current_coroutine = NULL;
#if KIT_ASAN
	__sanitizer_finish_switch_fiber(fake_stack, NULL, NULL);
#endif
}

/* Gives the thread back to the loop until something makes co ready. */
static void coroutine_yield(struct coroutine *co)
{
	struct loop *loop = co->loop;
#if KIT_ASAN
	void *fake_stack = NULL;

	__sanitizer_start_switch_fiber(&fake_stack, loop->main_stack_bottom,
				       loop->main_stack_size);
#endif
	swapcontext(&co->context, &loop->main_context);
#if KIT_ASAN
	__sanitizer_finish_switch_fiber(fake_stack, &loop->main_stack_bottom,
					&loop->main_stack_size);
#endif
}

static void make_ready(struct loop *loop, struct coroutine *co)
{
	co->next = NULL;
	if (loop->ready_tail != NULL)
		loop->ready_tail->next = co;
	else
		loop->ready_head = co;
	loop->ready_tail = co;
}

/* ---- waiting inside a request ---- */

static void waiting_remove(struct loop *loop, struct coroutine *co)
{
	if (co->wait_prev != NULL)
		co->wait_prev->wait_next = co->wait_next;
	else if (loop->waiting == co)
		loop->waiting = co->wait_next;
	if (co->wait_next != NULL)
		co->wait_next->wait_prev = co->wait_prev;
	co->wait_prev = co->wait_next = NULL;
}

/* Yields until the loop wakes co: its fd is ready, someone woke it, or
 * timeout_ms passed (then wait_result is 0). */
static void wait_until_woken(struct coroutine *co, long timeout_ms)
{
	struct loop *loop = co->loop;

	co->wait_result = WAITING;
	co->wait_deadline_ns = kit_now_ns() + ms_to_ns(timeout_ms);
	co->wait_prev = NULL;
	co->wait_next = loop->waiting;
	if (loop->waiting != NULL)
		loop->waiting->wait_prev = co;
	loop->waiting = co;
	coroutine_yield(co);
}

int kit_wait_fd(int fd, short events, long timeout_ms)
{
	struct coroutine *co = current_coroutine;
	struct loop *loop;
	struct epoll_event event = { 0 };

	if (co == NULL) {
		/* A civetweb worker (or a loop thread outside a request): block. */
		struct pollfd pfd = { .fd = fd, .events = events };
		int n;

		do {
			n = poll(&pfd, 1, (int)timeout_ms);
		} while (n < 0 && errno == EINTR);
		return n < 0 ? -1 : n > 0;
	}
	loop = co->loop;
	event.events = EPOLLONESHOT | ((events & POLLIN) ? EPOLLIN : 0) |
		       ((events & POLLOUT) ? EPOLLOUT : 0);
	event.data.ptr = &co->wait_watch;
	if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, fd, &event) != 0) {
		if (errno != ENOENT || epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0)
			return -1;
	}
	co->wait_fd = fd;
	wait_until_woken(co, timeout_ms);

	if (co->wait_result == 0) {
		/* Timed out with the event still armed: disarm it, or it would
		 * wake whichever request runs on this coroutine next. */
		epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
	}
	return co->wait_result;
}

struct kit_waiter *kit_waiter_self(void)
{
	return (struct kit_waiter *)current_coroutine;
}

int kit_waiter_sleep(long timeout_ms)
{
	struct coroutine *co = current_coroutine;

	co->wait_fd = -1;
	co->sleeping = true;
	wait_until_woken(co, timeout_ms);
	co->sleeping = false;
	return co->wait_result;
}

void kit_waiter_wake(struct kit_waiter *waiter)
{
	struct coroutine *co = (struct coroutine *)waiter;

	if (!co->sleeping || co->wait_result != WAITING)
		return;
	co->wait_result = 1;
	waiting_remove(co->loop, co);
	make_ready(co->loop, co);
}

CURLcode kit_http_perform(CURL *easy)
{
	struct coroutine *co = current_coroutine;
	CURLMcode added;

	if (co == NULL)
		return curl_easy_perform(easy);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, co);
	co->curl_done = false;
	added = curl_multi_add_handle(co->loop->multi, easy);
	if (added != CURLM_OK) {
		fprintf(stderr, "%s: curl_multi_add_handle: %s\n",
			kit_app_name(co->loop->app), curl_multi_strerror(added));
		return CURLE_FAILED_INIT;
	}
	while (!co->curl_done)
		coroutine_yield(co);
	curl_multi_remove_handle(co->loop->multi, easy);
	return co->curl_result;
}

/* ---- work left for the end of the round ---- */

void kit_at_round_end(void (*fn)(void *arg), void *arg)
{
	struct loop *loop = current_coroutine != NULL ? current_coroutine->loop : NULL;

	if (loop == NULL || loop->round_end_count == ROUND_END_MAX) {
		fn(arg); /* a civetweb worker, or too many: now */
		return;
	}
	loop->round_end[loop->round_end_count].fn = fn;
	loop->round_end[loop->round_end_count].arg = arg;
	loop->round_end_count++;
}

static void run_round_end(struct loop *loop)
{
	for (int i = 0; i < loop->round_end_count; i++)
		loop->round_end[i].fn(loop->round_end[i].arg);
	loop->round_end_count = 0;
}

/* ---- standard output, once a round ---- */

#define STDOUT_BUFFER_MAX 65536

static void write_all(const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* stdout is gone: nothing useful to do */
		data += n;
		len -= (size_t)n;
	}
}

static void stdout_flush(struct loop *loop)
{
	if (loop->stdout_len == 0)
		return;
	write_all(loop->stdout_lines, loop->stdout_len);
	loop->stdout_len = 0;
}

void kit_write_stdout(const char *data, size_t len)
{
	struct loop *loop = current_loop;

	if (loop != NULL && loop->stdout_len + len > STDOUT_BUFFER_MAX)
		stdout_flush(loop);
	if (loop != NULL && loop->stdout_lines == NULL && len <= STDOUT_BUFFER_MAX)
		loop->stdout_lines = malloc(STDOUT_BUFFER_MAX);
	if (loop == NULL || loop->stdout_lines == NULL || len > STDOUT_BUFFER_MAX) {
		write_all(data, len); /* a civetweb worker, or no buffer */
		return;
	}
	memcpy(loop->stdout_lines + loop->stdout_len, data, len);
	loop->stdout_len += len;
}

/* ---- libcurl's multi interface on this loop ---- */

static int curl_on_socket(CURL *easy, curl_socket_t fd, int what, void *arg,
			  void *socket_data)
{
	struct loop *loop = arg;
	struct curl_watch *watch = socket_data;
	struct epoll_event event = { 0 };

	if (what == CURL_POLL_REMOVE) {
		if (watch != NULL) {
			epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
			curl_multi_assign(loop->multi, fd, NULL);
			free(watch);
		}
		return 0;
	}
	event.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
		       ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (watch == NULL) {
		watch = calloc(1, sizeof(*watch));
		if (watch == NULL)
			return -1;
		watch->watch.kind = WATCH_CURL;
		watch->fd = fd;
		event.data.ptr = watch;
		if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0 &&
		    (errno != EEXIST || epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, fd, &event) != 0)) {
			free(watch);
			return -1;
		}
		curl_multi_assign(loop->multi, fd, watch);
		return 0;
	}
	event.data.ptr = watch;
	epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, fd, &event);
	return 0;
}

static int curl_on_timer(CURLM *multi, long timeout_ms, void *arg)
{
	struct loop *loop = arg;

	loop->curl_deadline_ns = timeout_ms < 0 ? 0 : kit_now_ns() + ms_to_ns(timeout_ms);
	return 0;
}

/* Hands finished transfers back to the requests waiting on them. */
static void curl_collect(struct loop *loop)
{
	CURLMsg *message;
	int left;

	while ((message = curl_multi_info_read(loop->multi, &left)) != NULL) {
		struct coroutine *co = NULL;

		if (message->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&co);
		if (co == NULL)
			continue;
		co->curl_result = message->data.result;
		co->curl_done = true;
		make_ready(loop, co);
	}
}

static void curl_act(struct loop *loop, curl_socket_t fd, int flags)
{
	int running;

	curl_multi_socket_action(loop->multi, fd, flags, &running);
	curl_collect(loop);
}

/* ---- connections ---- */

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

/* The coroutine's body: one request through the app. */
static void coroutine_entry(void)
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
static void conn_request_done(struct kit_loop_conn *conn)
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
		conn_request_done(conn);
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
		/* Transfer-Encoding on HTTP/1.0: its framing cannot be trusted;
		 * serve this request, then close (RFC 9112, 6.1). */
		if (conn->head.chunked && conn->head.version_minor == 0)
			conn->head.keep_alive = false;
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

static void conn_on_event(struct kit_loop_conn *conn, uint32_t events)
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

static void accept_connections(struct loop *loop)
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

/* ---- timers ---- */

/* Wakes requests whose wait has timed out, and closes connections past
 * their deadline (once a second: a scan of every connection). */
static void expire(struct loop *loop, uint64_t now)
{
	struct coroutine *co = loop->waiting;

	while (co != NULL) {
		struct coroutine *next = co->wait_next;

		if (co->wait_result == WAITING && now >= co->wait_deadline_ns) {
			co->wait_result = 0;
			waiting_remove(loop, co);
			make_ready(loop, co);
		}
		co = next;
	}
	if (loop->curl_deadline_ns != 0 && now >= loop->curl_deadline_ns) {
		loop->curl_deadline_ns = 0;
		curl_act(loop, CURL_SOCKET_TIMEOUT, 0);
	}
	if (now < loop->next_sweep_ns)
		return;
	loop->next_sweep_ns = now + 1000000000ULL;
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

/* How long epoll_wait may sleep: until the nearest deadline, at most 1 s. */
static int next_timeout_ms(struct loop *loop, uint64_t now)
{
	uint64_t nearest = loop->next_sweep_ns;

	if (loop->ready_head != NULL)
		return 0;
	if (loop->curl_deadline_ns != 0 && loop->curl_deadline_ns < nearest)
		nearest = loop->curl_deadline_ns;
	for (struct coroutine *co = loop->waiting; co != NULL; co = co->wait_next) {
		if (co->wait_deadline_ns < nearest)
			nearest = co->wait_deadline_ns;
	}
	if (nearest <= now)
		return 0;
	return (int)((nearest - now + 999999) / 1000000);
}

/* ---- the loop thread ---- */

static void loop_stop_accepting(struct loop *loop)
{
	loop->stopping = true;
	if (loop->listen_fd >= 0) {
		close(loop->listen_fd);
		loop->listen_fd = -1;
	}
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

static void *loop_main(void *arg)
{
	struct loop *loop = arg;
	struct epoll_event events[MAX_EVENTS];
	uint64_t stop_deadline = 0;

	current_loop = loop;
	for (;;) {
		uint64_t now = kit_now_ns();
		int n;

		if (loop->stopping) {
			if (loop->conn_count == 0 || now >= stop_deadline)
				break;
		}
		while (loop->queued_head != NULL && loop->active < loop->app->loop_max_requests)
			start_queued(loop);
		n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, next_timeout_ms(loop, now));
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "%s: epoll_wait: %s\n", kit_app_name(loop->app),
				strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct watch *watch = events[i].data.ptr;
			uint32_t ready = events[i].events;

			switch (watch->kind) {
			case WATCH_LISTEN:
				accept_connections(loop);
				break;
			case WATCH_STOP: {
				uint64_t value;

				if (read(loop->stop_fd, &value, sizeof(value)) < 0) {
					/* the signal is what matters, not the count */
				}
				loop_stop_accepting(loop);
				stop_deadline = kit_now_ns() + ms_to_ns(5000);
				break;
			}
			case WATCH_CONN:
				conn_on_event((struct kit_loop_conn *)watch, ready);
				break;
			case WATCH_CURL: {
				struct curl_watch *socket = (struct curl_watch *)watch;
				int flags = ((ready & EPOLLIN) ? CURL_CSELECT_IN : 0) |
					    ((ready & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
					    ((ready & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);

				curl_act(loop, socket->fd, flags);
				break;
			}
			case WATCH_WAIT: {
				struct coroutine *co = (struct coroutine *)
					((char *)watch - offsetof(struct coroutine, wait_watch));

				if (co->wait_result == WAITING) {
					co->wait_result = 1;
					waiting_remove(loop, co);
					make_ready(loop, co);
				}
				break;
			}
			}
		}
		expire(loop, kit_now_ns());
		/* Run every request that can go on; one may make another ready. */
		while (loop->ready_head != NULL) {
			struct coroutine *co = loop->ready_head;

			loop->ready_head = co->next;
			if (loop->ready_head == NULL)
				loop->ready_tail = NULL;
			coroutine_resume(loop, co);
			if (co->finished)
				conn_request_done(co->conn);
		}
		run_round_end(loop);
		stdout_flush(loop); /* the round's access log lines, in one write */
	}
	run_round_end(loop);
	stdout_flush(loop);
	free(loop->stdout_lines);
	/* Past the stop deadline a request may still wait on an upstream:
	 * its connection is closed here and its coroutine is never resumed
	 * (the process is about to exit; it is not freed). */
	while (loop->conns != NULL) {
		loop->conns->state = READING_HEAD;
		conn_close(loop->conns);
	}
	/* The multi handle's cached connections first: closing them reports
	 * to the proxy's per-thread state, released just after. */
	curl_multi_cleanup(loop->multi);
	loop->multi = NULL;
	kit_thread_release(&loop->resources);
	while (loop->spare != NULL) {
		struct coroutine *co = loop->spare;

		loop->spare = co->next;
		coroutine_free(co);
	}
	return NULL;
}

/* Opens this loop's listening socket. Returns 0, or -1 after saying why. */
static int loop_listen(struct loop *loop)
{
	struct kit_app *app = loop->app;
	struct sockaddr_in address = { .sin_family = AF_INET };
	int one = 1;

	address.sin_port = htons((uint16_t)kit_app_port(app));
	if (inet_pton(AF_INET, app->bind_address, &address.sin_addr) != 1) {
		fprintf(stderr, "%s: BIND_ADDRESS %s is not an IPv4 address\n", app->name,
			app->bind_address);
		return -1;
	}
	loop->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (loop->listen_fd < 0 ||
	    setsockopt(loop->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(loop->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(loop->listen_fd, (struct sockaddr *)&address, sizeof(address)) != 0 ||
	    listen(loop->listen_fd, 512) != 0) {
		fprintf(stderr, "%s: cannot listen on %s:%ld: %s\n", app->name,
			app->bind_address, app->port, strerror(errno));
		return -1;
	}
	return 0;
}

static int loop_init(struct loop *loop, struct kit_app *app, int index)
{
	struct epoll_event event = { .events = EPOLLIN };

	loop->app = app;
	loop->index = index;
	loop->listen_fd = -1;
	loop->resources.app = app;
	loop->listen_watch.kind = WATCH_LISTEN;
	loop->stop_watch.kind = WATCH_STOP;
	loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	loop->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	loop->multi = curl_multi_init();
	if (loop->epoll_fd < 0 || loop->stop_fd < 0 || loop->multi == NULL) {
		fprintf(stderr, "%s: cannot create an event loop: %s\n", app->name,
			strerror(errno));
		return -1;
	}
	if (loop_listen(loop) != 0)
		return -1;
	curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, curl_on_socket);
	curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
	curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, curl_on_timer);
	curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
	if (app->loop_max_idle > 0)
		curl_multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, app->loop_max_idle);

	event.data.ptr = &loop->listen_watch;
	epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->listen_fd, &event);
	event.data.ptr = &loop->stop_watch;
	epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->stop_fd, &event);
	return 0;
}

static void loop_free(struct loop *loop)
{
	if (loop->multi != NULL)
		curl_multi_cleanup(loop->multi);
	if (loop->listen_fd >= 0)
		close(loop->listen_fd);
	if (loop->stop_fd >= 0)
		close(loop->stop_fd);
	if (loop->epoll_fd >= 0)
		close(loop->epoll_fd);
}

void kit_app_use_event_loop(struct kit_app *app)
{
	const char *core = kit_env_string("SERVER_CORE", "events");
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (strcmp(core, "threads") == 0)
		return;
	if (strcmp(core, "events") != 0) {
		kit_app_fail(app, "SERVER_CORE: \"%s\" is neither events nor threads", core);
		return;
	}
	if (kit_env_long("LOOP_THREADS", cpus > 0 ? cpus : 1, 1, 64, &app->loop_threads) != 0 ||
	    kit_env_long("LOOP_MAX_REQUESTS", 64, 1, 4096, &app->loop_max_requests) != 0) {
		app->failed = true;
		return;
	}
	app->event_loop = true;
}

void kit_loop_set_max_idle(struct kit_app *app, long connections)
{
	app->loop_max_idle = connections;
}

int kit_loop_run(struct kit_app *app, const sigset_t *stop_signals)
{
	struct loop *loops = calloc((size_t)app->loop_threads, sizeof(*loops));
	int started = 0, signal_number = 0, status = 0;

	if (loops == NULL)
		return 1;
	for (int i = 0; i < app->loop_threads; i++) {
		loops[i].epoll_fd = loops[i].stop_fd = loops[i].listen_fd = -1;
		if (loop_init(&loops[i], app, i) != 0) {
			status = 1;
			goto out;
		}
	}
	for (; started < app->loop_threads; started++) {
		if (pthread_create(&loops[started].thread, NULL, loop_main, &loops[started]) != 0) {
			fprintf(stderr, "%s: cannot start an event-loop thread\n", app->name);
			status = 1;
			goto out;
		}
	}
	fprintf(stderr, "%s: listening on http://%s:%ld (%ld event-loop threads)\n",
		app->name, app->bind_address, app->port, app->loop_threads);

	sigwait(stop_signals, &signal_number);
	fprintf(stderr, "%s: %s received, stopping\n", app->name,
		signal_number == SIGINT ? "SIGINT" : "SIGTERM");
out:
	for (int i = 0; i < started; i++) {
		uint64_t one = 1;

		if (write(loops[i].stop_fd, &one, sizeof(one)) < 0)
			fprintf(stderr, "%s: cannot stop loop %d\n", app->name, i);
	}
	for (int i = 0; i < started; i++)
		pthread_join(loops[i].thread, NULL);
	for (int i = 0; i < app->loop_threads; i++)
		loop_free(&loops[i]);
	free(loops);
	return status;
}
