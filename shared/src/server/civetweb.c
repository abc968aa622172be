/*
 * civetweb.c - the kit's first server core: civetweb's thread per
 * connection (server/core.h; the app picks it unless main() calls
 * kit_app_use_event_loop(), and SERVER_CORE=threads brings it back).
 *
 * civetweb parses the request head itself and calls dispatch() on one of
 * its worker threads. dispatch() gives the app what the event-loop core
 * gives it: a struct kit_http_head (civetweb's header fields, with the
 * framing read by the kit's own rules, kit_http_read_framing()), the path
 * normalized by the kit's normalizer, and this core's transport:
 *   read_body    mg_read(), after "100 Continue" when the client asked,
 *                refused (408) once REQUEST_TIMEOUT_MS has passed since
 *                the head came; but mg_read() itself waits until all it was
 *                asked for has arrived, restarting its timer at every byte,
 *                so a client trickling its body holds its worker until the
 *                body is whole (a limit of this core: docs/security.md);
 *   keeps_alive  what the client asked, once the body is read or absent;
 *   send         one mg_write(); when the connection is to close after it,
 *                mg_disable_connection_keep_alive() makes civetweb do so.
 * A request that the kit's rules refuse (a framing civetweb would read
 * differently, a path the normalizer refuses) reaches the app as a refusal
 * and the connection closes after the answer.
 *
 * Every worker is marked as a kit thread (kit_thread_begin) that waits by
 * blocking: one request at a time, so a blocking call holds up no one else.
 *
 * Threads: one worker serves one connection at a time; civetweb_run() runs
 * on the main thread, waits for SIGINT/SIGTERM and then stops the server
 * with civetweb_stop() (just above it: why mg_stop() alone is neither quick
 * nor graceful in civetweb 1.15).
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>

#include "kit/config.h"
#include "kit/http_parser.h"
#include "kit/request.h"
#include "server/civetweb_guard.h"
#include "server/core.h"

/* A request's connection, as this core's transport sees it. */
struct civetweb_conn {
	struct mg_connection *mg;
	uint64_t body_deadline_ns;   /* REQUEST_TIMEOUT_MS from the head's arrival */
	struct kit_http_head head;
	bool continue_sent;          /* "100 Continue" answered               */
	long long body_read;         /* bytes mg_read() has given             */
	bool body_done;              /* all of the body read                  */
};

/* ---- the transport ---- */

static long civetweb_read_body(struct kit_request *req, char *buf, size_t size,
			       int *status)
{
	static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct civetweb_conn *conn = req->conn;
	int n;

	if (conn->body_done)
		return 0;
	/* civetweb sends 100 Continue for CGI only; a handler's request
	 * waits for us, and we invite the body only now that it is wanted. */
	if (conn->head.expect_continue && !conn->continue_sent) {
		conn->continue_sent = true;
		if (mg_write(conn->mg, go_on, sizeof(go_on) - 1) <= 0) {
			*status = 400;
			return -1;
		}
	}
	/* civetweb's own timeout is per read: a client sending a byte at a
	 * time would hold this worker for ever. The whole body has the
	 * request's deadline, as on the event loop. */
	if (kit_now_ns() >= conn->body_deadline_ns) {
		*status = 408;
		return -1;
	}
	n = mg_read(conn->mg, buf, size);
	if (n < 0) {
		*status = 400; /* civetweb could not read the framing */
		return -1;
	}
	conn->body_read += n;
	/* The end: all of a Content-Length, or civetweb's end of chunks
	 * (or of the client). */
	if (n == 0 || conn->body_read == conn->head.content_length)
		conn->body_done = true;
	return n;
}

static bool civetweb_keeps_alive(const struct kit_request *req)
{
	const struct civetweb_conn *conn = req->conn;
	bool has_body = conn->head.content_length > 0 || conn->head.chunked;

	return conn->head.keep_alive && (!has_body || conn->body_done);
}

static void civetweb_send(struct kit_request *req, const char *data, size_t len,
			  bool close_after)
{
	struct civetweb_conn *conn = req->conn;

	if (close_after)
		mg_disable_connection_keep_alive(conn->mg);
	mg_write(conn->mg, data, len);
}

static const struct kit_transport civetweb_transport = {
	.read_body = civetweb_read_body,
	.keeps_alive = civetweb_keeps_alive,
	.send = civetweb_send,
};

/* ---- a request ---- */

/* The app answered without reading the whole body (a 401, a 413) and the
 * connection closes. Closed with unread bytes, the kernel would reset it,
 * and the client could lose the answer: civetweb's graceful close only
 * shuts down writing on Linux. So what is left of the body is read and
 * dropped first (nginx's lingering close), at most MAX_BODY_BYTES and
 * until the request's deadline. Not drained: a body the client holds back
 * until "100 Continue", which it never got, and a declared body longer
 * than the limit (the client is closed on anyway). */
static void drain_unread_body(struct civetweb_conn *conn, const struct kit_http_policy *policy)
{
	char sink[8192];
	long long drained = 0;

	if (conn->body_done || (conn->head.content_length <= 0 && !conn->head.chunked))
		return;
	if (conn->head.expect_continue && !conn->continue_sent)
		return;
	if (conn->head.content_length - conn->body_read > policy->max_body_bytes)
		return;
	while (drained < policy->max_body_bytes && kit_now_ns() < conn->body_deadline_ns) {
		int n = mg_read(conn->mg, sink, sizeof(sink));

		if (n <= 0)
			return;
		drained += n;
	}
}

/* The head as the kit sees it, from civetweb's request info: the fields
 * civetweb split, checked and framed by the kit's strict rules
 * (civetweb_guard.c). Returns 0, or the status the kit refuses the request
 * with and *detail. */
static int civetweb_head(const struct mg_request_info *info, struct kit_http_head *head,
			 const char **detail)
{
	struct kit_http_framing framing;
	int refusal = kit_civetweb_check(info, &framing, detail);

	head->method = info->request_method;
	/* With decode_url off, request_uri is the target as sent, its '?'
	 * already cut off by civetweb (the query is query_string). */
	head->target = info->request_uri;
	head->path_len = strlen(info->request_uri);
	head->query = info->query_string;
	head->version_minor = strcmp(info->http_version, "1.0") == 0 ? 0 : 1;
	head->header_count = info->num_headers;
	for (int i = 0; i < info->num_headers; i++) {
		head->headers[i].name = info->http_headers[i].name;
		head->headers[i].value = info->http_headers[i].value;
	}
	if (refusal != 0)
		return refusal;
	kit_http_apply_framing(head, &framing);
	return 0;
}

/* Serves the request civetweb parsed on mg: refused with refusal and
 * detail when that is not 0, as the event-loop core refuses (the app
 * answers it after its outer middleware, and the connection closes). */
static int serve(const struct kit_server_config *config, struct mg_connection *mg,
		 int refusal, const char *detail)
{
	const struct mg_request_info *info = mg_get_request_info(mg);
	struct civetweb_conn conn = { .mg = mg, .head = { .content_length = -1 } };
	struct kit_request req;
	char *path;
	size_t path_len;

	memset(&req, 0, offsetof(struct kit_request, extra_headers));
	req.extra_headers[0] = '\0';
	req.extra_headers_len = 0;
	req.transport = &civetweb_transport;
	req.conn = &conn;
	req.http = &conn.head;
	req.start_ns = kit_now_ns();
	conn.body_deadline_ns = req.start_ns +
		(uint64_t)config->policy.request_timeout_ms * 1000000ULL;
	snprintf(req.peer, sizeof(req.peer), "%s", info->remote_addr);

	if (refusal == 0)
		refusal = civetweb_head(info, &conn.head, &detail);
	path_len = refusal == 0 ? conn.head.path_len : 0;
	path = malloc(path_len + 1);
	if (path == NULL) {
		mg_disable_connection_keep_alive(mg);
		return 0; /* civetweb answers 500 */
	}
	path[0] = '\0';
	req.method = info->request_method;
	req.query = info->query_string;
	req.path = path;
	if (refusal == 0) {
		refusal = kit_http_path_normalize(info->request_uri, path_len, path, path_len + 1);
		detail = "the request path is malformed";
	}
	if (refusal != 0) {
		/* The app blanks method, path and query (app.c, serve()); the
		 * head's fields and what follows it are this core's to drop. */
		req.refusal = refusal;
		req.refusal_detail = detail;
		conn.head.header_count = 0;
		conn.head.keep_alive = false;
	}
	config->serve(config->app, &req);
	drain_unread_body(&conn, &config->policy);
	free(path);
	return req.status;
}

/* civetweb's request handler: every request civetweb parsed. */
static int dispatch(struct mg_connection *mg, void *cbdata)
{
	return serve(cbdata, mg, 0, NULL);
}

/* civetweb's http_error callback: civetweb refused a request before the kit
 * saw it, and would send a text/plain page. The kit answers instead, with
 * the strict parser's status for the same bytes, as problem+json, and
 * closes. Returns 0: handled. */
static int civetweb_refused(struct mg_connection *mg, int status, const char *message)
{
	const struct kit_server_config *config = mg_get_user_data(mg_get_context(mg));
	int strict = kit_civetweb_strict_status(mg_get_request_info(mg), status);

	(void)message; /* civetweb's own wording; ours is the strict parser's */
	serve(config, mg, strict, kit_http_refusal_detail(strict));
	return 0;
}

/* ---- the workers ---- */

static void *worker_start(const struct mg_context *ctx, int thread_type)
{
	const struct kit_server_config *config = mg_get_user_data(ctx);
	struct kit_thread *thread;

	if (thread_type != 1)
		return NULL; /* only workers serve requests */
	thread = calloc(1, sizeof(*thread));
	if (thread != NULL)
		kit_thread_begin(thread, config, &kit_blocking_waits);
	return thread;
}

static void worker_stop(const struct mg_context *ctx, int thread_type, void *pointer)
{
	struct kit_thread *thread = pointer;

	if (thread == NULL)
		return;
	kit_thread_end(thread);
	free(thread);
}

static int log_civetweb_message(const struct mg_connection *conn, const char *message)
{
	fprintf(stderr, "civetweb: %s\n", message);
	return 1;
}

/*
 * Stopping. civetweb 1.15's mg_stop() alone is neither quick nor graceful:
 *
 *  - Not quick (civetweb issue #1163, fixed in 1.16): civetweb's master
 *    thread waits for new connections in poll() on the listening socket
 *    2 s at a time (SOCKET_TIMEOUT_QUANTUM) and looks at its stop flag only
 *    between two waits; so does each worker waiting for the next request on
 *    a keep-alive connection. mg_stop() sets the flag and then waits for
 *    all of them: up to 2 s, and 2 s exactly just after a request, because
 *    the master's wait starts again with every connection it accepts.
 *  - Not graceful: once the flag is set civetweb reads and writes nothing
 *    more (pull_inner() and push_all() give up at once), so a request still
 *    being handled loses its answer: the client sees the connection close.
 *
 * So civetweb_stop() does the stopping itself while civetweb still
 * runs, and calls mg_stop() only when nothing is left to lose and every
 * civetweb thread can see the flag at once:
 *
 *  1. Close the door: the listening socket is shut down, so new
 *     connections are refused from now on, and its descriptor number is
 *     given to the read end of a pipe nobody writes to. The master thread
 *     then waits on something that never becomes ready (a shut-down socket
 *     is always ready: it would spin).
 *  2. Hang up between requests: shutdown(SHUT_RD) on every connection. A
 *     worker waiting for the next request reads end-of-file and closes the
 *     connection; a worker in the middle of one finishes it (writing is
 *     untouched), then reads end-of-file and closes.
 *  3. Wait until every connection is closed, at most STOP_DRAIN_MS: then no
 *     request is in flight. Step 2 is repeated on every look.
 *  4. Wake the master (the pipe hangs up, and a second shutdown() of the
 *     old socket wakes a poll() begun before step 1, which still sleeps on
 *     that socket) and call mg_stop(): its workers are all idle, so it
 *     returns within its own 10 ms sleep.
 *
 * civetweb 1.15 does not hand out its sockets, so they are found by local
 * port among this process's descriptors (Linux lists them in /proc/self/fd;
 * SO_ACCEPTCONN tells the listening one). What this cannot save: a request
 * whose body is still arriving when the stop begins (step 2 cuts the body
 * short) and, after STOP_DRAIN_MS, any request still running. When the
 * descriptors cannot be listed, it falls back to plain mg_stop().
 */
#define STOP_DRAIN_MS 5000 /* the event-loop core waits as long (event_loop.c) */
#define STOP_LOOK_MS 10    /* how often step 3 looks again */

/* The server's sockets as one look at the descriptor table found them. */
struct server_sockets {
	int listening[4];  /* civetweb listens once per address family */
	int listening_count;
	int connection_count;
};

/* socket_port FD: the local TCP/IP port of descriptor FD, or -1 when FD is
 * not an IPv4/IPv6 socket (or no longer open). */
static long socket_port(int fd)
{
	struct sockaddr_storage address;
	socklen_t length = sizeof(address);

	if (getsockname(fd, (struct sockaddr *)&address, &length) != 0)
		return -1;
	if (address.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&address)->sin_port);
	if (address.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&address)->sin6_port);
	return -1;
}

/* find_server_sockets PORT FOUND HANG_UP: fills FOUND with this process's
 * sockets whose local port is PORT: the listening ones, and how many
 * connections; with HANG_UP, shuts the reading side of each connection.
 * Returns false when the descriptors cannot be listed. Sockets civetweb
 * closes meanwhile are simply missed; outgoing connections (Redis, the
 * upstreams) have other local ports. */
static bool find_server_sockets(long port, struct server_sockets *found,
				bool hang_up)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;

	memset(found, 0, sizeof(*found));
	if (dir == NULL)
		return false;
	while ((entry = readdir(dir)) != NULL) {
		int fd = atoi(entry->d_name), listening = 0;
		socklen_t length = sizeof(listening);
		struct sockaddr_storage peer;
		socklen_t peer_length = sizeof(peer);

		if (entry->d_name[0] < '0' || entry->d_name[0] > '9' ||
		    fd == dirfd(dir) || socket_port(fd) != port)
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0)
			continue;
		if (!listening) {
			/* A connection has a peer; a shut-down listener (ours,
			 * kept for step 4) or a reset connection has none. */
			if (getpeername(fd, (struct sockaddr *)&peer, &peer_length) != 0)
				continue;
			found->connection_count++;
			if (hang_up)
				shutdown(fd, SHUT_RD);
		} else if (found->listening_count < (int)(sizeof(found->listening) /
							  sizeof(found->listening[0]))) {
			found->listening[found->listening_count++] = fd;
		}
	}
	closedir(dir);
	return true;
}

/* civetweb_stop CTX CONFIG: stops civetweb gracefully and at once (steps
 * 1-4 above), then frees CTX with mg_stop(). Every failure on the way is
 * explained on stderr and ends in plain mg_stop(), which is slow but
 * safe: the process still stops. */
static void civetweb_stop(struct mg_context *ctx, const struct kit_server_config *config)
{
	struct server_sockets sockets;
	int door[2], old_listeners[4], closed_doors = 0;
	uint64_t deadline_ns;
	struct timespec look = {0, STOP_LOOK_MS * 1000000L};
	const char *why = NULL;

	if (!find_server_sockets(config->port, &sockets, false))
		why = strerror(errno); /* opendir("/proc/self/fd") */
	else if (sockets.listening_count == 0)
		why = "no listening socket on its port";
	else if (pipe(door) != 0)
		why = strerror(errno);
	if (why != NULL) {
		fprintf(stderr, "%s: cannot stop gracefully (%s); plain mg_stop(), "
			"which may take 2 s and cut requests in flight\n", config->name, why);
		mg_stop(ctx);
		return;
	}

	/* 1. Close the door: keep the socket in old_listeners[], put the pipe
	 * under civetweb's number, refuse new connections. civetweb closes
	 * its number (the pipe) in mg_stop(); old_listeners[] are ours. */
	for (int i = 0; i < sockets.listening_count; i++) {
		int fd = sockets.listening[i], old = dup(fd);

		if (old < 0 || dup2(door[0], fd) < 0) {
			fprintf(stderr, "%s: cannot close the listening socket %d: %s\n",
				config->name, fd, strerror(errno));
			if (old >= 0)
				close(old);
			continue;
		}
		shutdown(old, SHUT_RDWR);
		old_listeners[closed_doors++] = old;
	}
	close(door[0]);

	/* 2 and 3. Hang up between requests; wait for the last connection. */
	deadline_ns = kit_now_ns() + (uint64_t)STOP_DRAIN_MS * 1000000u;
	find_server_sockets(config->port, &sockets, true);
	if (sockets.connection_count > 0)
		fprintf(stderr, "%s: no longer accepting; waiting for %d open "
			"connection(s) to finish (at most %d ms)\n", config->name,
			sockets.connection_count, STOP_DRAIN_MS);
	while (sockets.connection_count > 0 && kit_now_ns() < deadline_ns) {
		nanosleep(&look, NULL);
		find_server_sockets(config->port, &sockets, true);
	}
	if (sockets.connection_count > 0)
		fprintf(stderr, "%s: %d connection(s) still open after %d ms; "
			"stopping anyway\n", config->name, sockets.connection_count,
			STOP_DRAIN_MS);

	/* 4. Wake the master wherever it waits, then stop. Until mg_stop()
	 * sets its flag (right away) the master sees the hung-up pipe, does
	 * not accept from it, and looks at the flag again. */
	close(door[1]);
	for (int i = 0; i < closed_doors; i++)
		shutdown(old_listeners[i], SHUT_RDWR); /* ENOTCONN, but it wakes */
	mg_stop(ctx);
	for (int i = 0; i < closed_doors; i++)
		close(old_listeners[i]);
}

/* ---- the server ---- */

static int civetweb_configure(struct kit_server_config *config)
{
	/* civetweb spends one thread on each open connection, idle keep-alive
	 * ones included: the workers are the connection limit. */
	return kit_env_long("WORKER_THREADS", 64, 1, 1024, &config->worker_threads);
}

static int civetweb_run(const struct kit_server_config *config, const sigset_t *stop_signals)
{
	const struct kit_http_policy *policy = &config->policy;
	char listen[96], threads[16], keep_alive[24], request_timeout[24], backlog[24];
	char head_max[24];
	struct mg_callbacks callbacks;
	struct mg_context *ctx;
	int signal_number = 0;

	snprintf(listen, sizeof(listen), "%s:%ld", config->bind_address, config->port);
	snprintf(threads, sizeof(threads), "%ld", config->worker_threads);
	snprintf(keep_alive, sizeof(keep_alive), "%ld", policy->keep_alive_timeout_ms);
	snprintf(request_timeout, sizeof(request_timeout), "%ld", policy->request_timeout_ms);
	snprintf(backlog, sizeof(backlog), "%ld", policy->listen_backlog);
	snprintf(head_max, sizeof(head_max), "%ld", policy->max_head_bytes);
	const char *options[] = {
		"listening_ports", listen,
		"num_threads", threads,
		"enable_keep_alive", "yes",
		"keep_alive_timeout_ms", keep_alive,
		/* civetweb applies it to the whole head, but to each read of a
		 * body alone: read_body adds the body's deadline. */
		"request_timeout_ms", request_timeout,
		"max_request_size", head_max,
		"tcp_nodelay", "1",
		"listen_backlog", backlog,
		/* The kit decodes and normalizes the path itself, the same way
		 * on both cores (kit_http_path_normalize). */
		"decode_url", "no",
		/* civetweb answers CORS preflights itself with "*" unless this
		 * is empty; cors.c owns that decision. */
		"access_control_allow_origin", "",
		NULL,
	};

	memset(&callbacks, 0, sizeof(callbacks));
	callbacks.init_thread = worker_start;
	callbacks.exit_thread = worker_stop;
	callbacks.log_message = log_civetweb_message;
	/* civetweb's own refusals answered as the kit's (civetweb_refused). */
	callbacks.http_error = civetweb_refused;

	mg_init_library(0);
	ctx = mg_start(&callbacks, (void *)config, options);
	if (ctx == NULL) {
		fprintf(stderr, "%s: cannot listen on %s (see civetweb's message above)\n",
			config->name, listen);
		mg_exit_library();
		return 1;
	}
	mg_set_request_handler(ctx, "/", dispatch, (void *)config);
	fprintf(stderr, "%s: listening on http://%s (%ld worker threads)\n",
		config->name, listen, config->worker_threads);

	sigwait(stop_signals, &signal_number);
	fprintf(stderr, "%s: %s received, stopping\n", config->name,
		signal_number == SIGINT ? "SIGINT" : "SIGTERM");
	civetweb_stop(ctx, config);
	mg_exit_library();
	return 0;
}

const struct kit_server kit_civetweb_server = {
	.name = "civetweb",
	.shares_threads = false,
	.configure = civetweb_configure,
	.run = civetweb_run,
};
