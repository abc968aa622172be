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
 * itself runs on the main thread and waits for SIGINT/SIGTERM.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "app/internal.h"
#include "kit/request.h"
#include "server/civetweb_guard.h"

/* civetweb's request handler: the context from civetweb's request info. */
static int dispatch(struct mg_connection *conn, void *cbdata)
{
	const struct mg_request_info *info = mg_get_request_info(conn);
	struct kit_request req;
	/* What the event-loop core's parser refuses is refused here too, and
	 * the connection closed (civetweb_guard.c). */
	int refused = kit_civetweb_guard(conn, cbdata);

	if (refused != 0)
		return refused;
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
	/* civetweb's own refusals as problem+json (civetweb_guard.c). */
	callbacks.http_error = kit_civetweb_error_page;

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
	mg_stop(ctx);
	mg_exit_library();
	return 0;
}
