/*
 * test_server_core.c - the contract between the app and its server core
 * (src/server/core.h, kit/app.h): what the event-loop core refuses to run,
 * and what it reports when code on it blocks anyway.
 *
 * Threat: one blocking call on an event-loop thread stalls every request
 * that thread serves (hundreds), silently. The kit guards it twice: an app
 * whose middleware, route or store is not marked loop_safe does not start
 * on the event loop, and a request that holds a loop thread past
 * LOOP_STALL_MS is logged and counted. Each refusal has its positive
 * control: the same app with the part marked loop_safe gets past the check
 * (it then fails only because its port is taken).
 *
 * The last test serves real requests in-process: kit_app_run() on a thread
 * of its own, a client on 127.0.0.1, SIGTERM to stop it.
 *
 * Run alone: make && build/tests/test_server_core
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kit/kit.h"

/* ---- helpers ---- */

/* A port the kernel says is free now. */
static int free_port(void)
{
	struct sockaddr_in address = { .sin_family = AF_INET };
	socklen_t length = sizeof(address);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
	close(fd);
	return ntohs(address.sin_port);
}

/* A listening socket holding a port, so a server started on it fails
 * right after the checks this file is about. */
static int hold_port(int *port)
{
	struct sockaddr_in address = { .sin_family = AF_INET };
	socklen_t length = sizeof(address);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
	*port = ntohs(address.sin_port);
	return fd;
}

/* stderr goes to a file while `captured` is open; captured_text() reads it. */
static char captured_path[] = "/tmp/kit-test-server-core.XXXXXX";
static int saved_stderr = -1;

static void capture_stderr(void)
{
	int fd = mkstemp(captured_path);

	assert_true(fd >= 0);
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/* Restores stderr and returns what was written (static buffer). */
static const char *captured_text(void)
{
	static char text[8192];
	FILE *file;
	size_t n;

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	file = fopen(captured_path, "r");
	assert_non_null(file);
	n = fread(text, 1, sizeof(text) - 1, file);
	text[n] = '\0';
	fclose(file);
	unlink(captured_path);
	strcpy(captured_path, "/tmp/kit-test-server-core.XXXXXX");
	return text;
}

static int answer_ok(struct kit_request *req)
{
	return kit_respond(req, 200, "text/plain", "ok", 2);
}

static int pass_on(struct kit_request *req, void *state)
{
	return KIT_NEXT;
}

static const struct kit_middleware blocking_middleware = {
	.name = "blocking_middleware",
	.handle = pass_on, /* loop_safe left false */
};

static const struct kit_middleware yielding_middleware = {
	.name = "yielding_middleware",
	.loop_safe = true,
	.handle = pass_on,
};

/* An app on the event loop whose port is taken: returns kit_app_run()'s
 * status with stderr in *text. */
static int run_on_taken_port(struct kit_app *app, const char **text)
{
	int status;

	capture_stderr();
	status = kit_app_run(app);
	*text = captured_text();
	return status;
}

static struct kit_app *new_app_on_taken_port(int *held)
{
	int port;
	char value[16];

	*held = hold_port(&port);
	snprintf(value, sizeof(value), "%d", port);
	setenv("PORT", value, 1);
	setenv("SERVER_CORE", "events", 1);
	return kit_app_new("core-test", 1);
}

/* ---- what the event loop refuses ---- */

static void test_a_route_not_loop_safe_is_refused(void **unused)
{
	int held;
	struct kit_app *app = new_app_on_taken_port(&held);
	const char *text;

	kit_route(app, "GET", "/blocks", answer_ok, KIT_PUBLIC);
	kit_app_use_event_loop(app);
	assert_int_equal(run_on_taken_port(app, &text), 1);
	assert_non_null(strstr(text, "route GET /blocks is not marked loop_safe"));
	assert_null(strstr(text, "cannot listen")); /* refused before listening */
	kit_app_free(app);
	close(held);
}

static void test_a_loop_safe_route_gets_past_the_check(void **unused)
{
	int held;
	struct kit_app *app = new_app_on_taken_port(&held);
	const char *text;

	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/yields", .handler = answer_ok,
		.access = KIT_PUBLIC, .loop_safe = true,
	});
	kit_app_use_event_loop(app);
	assert_int_equal(run_on_taken_port(app, &text), 1);
	assert_null(strstr(text, "loop_safe"));
	assert_non_null(strstr(text, "cannot listen")); /* the port, not the check */
	kit_app_free(app);
	close(held);
}

static void test_a_middleware_not_loop_safe_is_refused(void **unused)
{
	int held;
	struct kit_app *app = new_app_on_taken_port(&held);
	const char *text;

	kit_use(app, &yielding_middleware);
	kit_use(app, &blocking_middleware);
	kit_app_use_event_loop(app);
	assert_int_equal(run_on_taken_port(app, &text), 1);
	assert_non_null(strstr(text, "middleware blocking_middleware is not marked loop_safe"));
	assert_null(strstr(text, "middleware yielding_middleware"));
	kit_app_free(app);
	close(held);
}

static void test_an_app_with_a_store_is_refused(void **unused)
{
	int held;
	struct kit_app *app = new_app_on_taken_port(&held);
	const char *text;

	kit_app_use_store(app);
	kit_app_use_event_loop(app);
	assert_int_equal(run_on_taken_port(app, &text), 1);
	assert_non_null(strstr(text, "the store makes blocking calls"));
	kit_app_free(app);
	close(held);
}

static void test_the_same_app_runs_on_civetweb(void **unused)
{
	int held;
	struct kit_app *app = new_app_on_taken_port(&held);
	const char *text;

	/* SERVER_CORE=threads: blocking parts are fine on civetweb. */
	setenv("SERVER_CORE", "threads", 1);
	kit_use(app, &blocking_middleware);
	kit_route(app, "GET", "/blocks", answer_ok, KIT_PUBLIC);
	kit_app_use_store(app);
	kit_app_use_event_loop(app);
	assert_int_equal(run_on_taken_port(app, &text), 1);
	assert_null(strstr(text, "loop_safe"));
	assert_non_null(strstr(text, "cannot listen"));
	kit_app_free(app);
	close(held);
}

/* ---- what the event loop reports ---- */

/* Lies: marked loop_safe, yet sleeps on the loop thread. */
static int sleep_on_the_thread(struct kit_request *req)
{
	usleep(1500 * 1000); /* well over LOOP_STALL_MS below */
	return kit_respond(req, 200, "text/plain", "late", 4);
}

static void *serve(void *app)
{
	return (void *)(intptr_t)kit_app_run(app);
}

/* Sends one request on a new connection and returns the status line's
 * code (0 when there is no answer). */
static int get(int port, const char *path)
{
	struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char request[256], answer[1024];
	int fd = -1, code = 0;
	ssize_t n;

	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* The server thread is starting: try for up to ten seconds. */
	for (int attempt = 0; attempt < 200; attempt++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(50 * 1000);
	}
	if (fd < 0)
		return 0;
	snprintf(request, sizeof(request),
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	if (write(fd, request, strlen(request)) == (ssize_t)strlen(request)) {
		n = read(fd, answer, sizeof(answer) - 1);
		if (n > 12) {
			answer[n] = '\0';
			sscanf(answer, "HTTP/1.1 %d", &code);
		}
	}
	close(fd);
	return code;
}

/* The app of the stall test, on port: LOOP_STALL_MS 1000, one loop thread,
 * a quick route and one that sleeps 1.5 s on the loop thread. */
static struct kit_app *stall_app(int port)
{
	char value[16];
	struct kit_app *app;

	snprintf(value, sizeof(value), "%d", port);
	setenv("PORT", value, 1);
	setenv("SERVER_CORE", "events", 1);
	setenv("LOOP_THREADS", "1", 1);
	setenv("LOOP_STALL_MS", "1000", 1); /* a busy machine does not reach it */
	app = kit_app_new("core-test", 1);
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/fast", .handler = answer_ok,
		.access = KIT_PUBLIC, .loop_safe = true,
	});
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/sleeps", .handler = sleep_on_the_thread,
		.access = KIT_PUBLIC, .loop_safe = true,
	});
	kit_app_use_event_loop(app);
	return app;
}

static bool metrics_say(const char *line)
{
	size_t len;
	char *metrics = kit_metrics_render(&len);
	bool found = strstr(metrics, line) != NULL;

	free(metrics);
	return found;
}

/* The loop counts a stall when the handler returns, after the answer has
 * gone out: the client can read it first. Polls for up to ten seconds. */
static bool metrics_come_to_say(const char *line)
{
	for (int attempt = 0; attempt < 1000; attempt++) {
		if (metrics_say(line))
			return true;
		usleep(10 * 1000);
	}
	return false;
}

static void test_a_request_that_blocks_the_loop_is_reported(void **unused)
{
	struct kit_app *app = NULL;
	pthread_t server;
	sigset_t stop;
	void *status = NULL;
	const char *text;
	int fast = 0, slow = 0;
	bool quiet_before = false, counted_after = false;

	/* SIGTERM must reach only the server's sigwait(). */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	capture_stderr();
	/* A port from free_port() can be taken by another process before the
	 * server binds it (suites run side by side): then the server thread
	 * ends at once with status 1, and the test starts again on another. */
	for (int attempt = 0; attempt < 3; attempt++) {
		int port = free_port();

		app = stall_app(port);
		assert_int_equal(pthread_create(&server, NULL, serve, app), 0);
		/* Positive control first: a quick request is not reported. */
		fast = get(port, "/fast");
		if (fast == 0 && pthread_tryjoin_np(server, &status) == 0) {
			kit_app_free(app);
			app = NULL;
			continue;
		}
		quiet_before = metrics_say("kit_server_loop_stalls_total 0");
		slow = get(port, "/sleeps");
		counted_after = metrics_come_to_say("kit_server_loop_stalls_total 1");
		pthread_kill(server, SIGTERM);
		pthread_join(server, &status);
		break;
	}
	/* The server's stderr back before any assertion, so that a failure
	 * shows (cmocka reports on stderr), with what the server said. */
	text = captured_text();
	if (fast != 200 || slow != 200 || !quiet_before || !counted_after)
		print_message("the server said:\n%s\n", text);
	assert_non_null(app);
	assert_int_equal(fast, 200);
	assert_true(quiet_before);
	assert_int_equal(slow, 200);
	assert_true(counted_after);
	assert_int_equal((int)(intptr_t)status, 0);
	assert_non_null(strstr(text, "held event-loop thread 0 for"));
	assert_non_null(strstr(text, "something on its path blocks"));
	kit_app_free(app);
	unsetenv("LOOP_THREADS");
	unsetenv("LOOP_STALL_MS");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_route_not_loop_safe_is_refused),
		cmocka_unit_test(test_a_loop_safe_route_gets_past_the_check),
		cmocka_unit_test(test_a_middleware_not_loop_safe_is_refused),
		cmocka_unit_test(test_an_app_with_a_store_is_refused),
		cmocka_unit_test(test_the_same_app_runs_on_civetweb),
		cmocka_unit_test(test_a_request_that_blocks_the_loop_is_reported),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
