/*
 * civetweb.c - the kit's first server core: civetweb's thread per
 * connection (kit_app_run() picks it unless kit_app_use_event_loop() was
 * called; the event-loop core is event_loop.c).
 *
 * civetweb parses the request and calls dispatch() on one of its worker
 * threads; dispatch() fills a struct kit_request from civetweb's request
 * info and hands it to kit_app_serve(), which runs the chain. Per-thread
 * state (struct kit_thread: the store connection, curl handles) is created
 * by civetweb's init_thread callback on the worker that owns it and freed
 * by exit_thread.
 *
 * Threads: one worker serves one connection at a time; kit_civetweb_run()
 * itself runs on the main thread, waits for SIGINT/SIGTERM and then stops
 * the server with kit_civetweb_stop() (just above it: why mg_stop() alone
 * is neither quick nor graceful in civetweb 1.15).
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

#include "app/internal.h"
#include "kit/request.h"

/* civetweb's request handler: the context from civetweb's request info. */
static int dispatch(struct mg_connection *conn, void *cbdata)
{
	const struct mg_request_info *info = mg_get_request_info(conn);
	struct kit_request req;

	memset(&req, 0, offsetof(struct kit_request, extra_headers));
	req.extra_headers[0] = '\0';
	req.extra_headers_len = 0;
	req.app = cbdata;
	req.conn = conn;
	req.start_ns = kit_now_ns();
	req.method = info->request_method;
	req.path = info->local_uri != NULL ? info->local_uri : "/";
	req.query = info->query_string;
	return kit_app_serve(&req, info->remote_addr);
}

static void *thread_start(const struct mg_context *ctx, int thread_type)
{
	struct kit_thread *thread;

	if (thread_type != 1)
		return NULL; /* only workers serve requests */
	thread = calloc(1, sizeof(*thread));
	if (thread != NULL)
		thread->app = mg_get_user_data(ctx);
	return thread;
}

static void thread_stop(const struct mg_context *ctx, int thread_type,
			void *pointer)
{
	struct kit_thread *thread = pointer;

	if (thread == NULL)
		return;
	kit_thread_release(thread);
	free(thread);
}

static int log_civetweb_message(const struct mg_connection *conn,
				const char *message)
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
 * So kit_civetweb_stop() does the stopping itself while civetweb still
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

/* kit_civetweb_stop CTX APP: stops civetweb gracefully and at once (steps
 * 1-4 above), then frees CTX with mg_stop(). Every failure on the way is
 * explained on stderr and ends in plain mg_stop(), which is slow but
 * safe: the process still stops. */
static void kit_civetweb_stop(struct mg_context *ctx, const struct kit_app *app)
{
	struct server_sockets sockets;
	int door[2], old_listeners[4], closed_doors = 0;
	uint64_t deadline_ns;
	struct timespec look = {0, STOP_LOOK_MS * 1000000L};
	const char *why = NULL;

	if (!find_server_sockets(app->port, &sockets, false))
		why = strerror(errno); /* opendir("/proc/self/fd") */
	else if (sockets.listening_count == 0)
		why = "no listening socket on its port";
	else if (pipe(door) != 0)
		why = strerror(errno);
	if (why != NULL) {
		fprintf(stderr, "%s: cannot stop gracefully (%s); plain mg_stop(), "
			"which may take 2 s and cut requests in flight\n", app->name, why);
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
				app->name, fd, strerror(errno));
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
	find_server_sockets(app->port, &sockets, true);
	if (sockets.connection_count > 0)
		fprintf(stderr, "%s: no longer accepting; waiting for %d open "
			"connection(s) to finish (at most %d ms)\n", app->name,
			sockets.connection_count, STOP_DRAIN_MS);
	while (sockets.connection_count > 0 && kit_now_ns() < deadline_ns) {
		nanosleep(&look, NULL);
		find_server_sockets(app->port, &sockets, true);
	}
	if (sockets.connection_count > 0)
		fprintf(stderr, "%s: %d connection(s) still open after %d ms; "
			"stopping anyway\n", app->name, sockets.connection_count,
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

int kit_civetweb_run(struct kit_app *app, const sigset_t *stop_signals)
{
	char listen[96], threads[16];
	struct mg_callbacks callbacks;
	struct mg_context *ctx;
	int signal_number = 0;

	snprintf(listen, sizeof(listen), "%s:%ld", app->bind_address, app->port);
	snprintf(threads, sizeof(threads), "%ld", app->worker_threads);
	const char *options[] = {
		"listening_ports", listen,
		"num_threads", threads,
		"enable_keep_alive", "yes",
		"keep_alive_timeout_ms", "30000",
		"request_timeout_ms", "10000",
		"tcp_nodelay", "1",
		"listen_backlog", "512",
		/* civetweb answers CORS preflights itself with "*" unless this
		 * is empty; cors.c owns that decision. */
		"access_control_allow_origin", "",
		NULL,
	};

	memset(&callbacks, 0, sizeof(callbacks));
	callbacks.init_thread = thread_start;
	callbacks.exit_thread = thread_stop;
	callbacks.log_message = log_civetweb_message;

	mg_init_library(0);
	ctx = mg_start(&callbacks, app, options);
	if (ctx == NULL) {
		fprintf(stderr, "%s: cannot listen on %s (see civetweb's message above)\n",
			app->name, listen);
		mg_exit_library();
		return 1;
	}
	mg_set_request_handler(ctx, "/", dispatch, app);
	fprintf(stderr, "%s: listening on http://%s (%ld worker threads)\n",
		app->name, listen, app->worker_threads);

	sigwait(stop_signals, &signal_number);
	fprintf(stderr, "%s: %s received, stopping\n", app->name,
		signal_number == SIGINT ? "SIGINT" : "SIGTERM");
	kit_civetweb_stop(ctx, app);
	mg_exit_library();
	return 0;
}
