/*
 * test_redis_io.c - kit/redis_io.h: when kit_redis_pipe_command() says a
 * failure is "stale" (the caller may send the command once more on a new
 * connection), against a scripted fake Redis on a loopback socket.
 *
 * Why it matters: the Redis rate limiter retries a stale failure. A
 * connection that broke (Redis restarted) is stale: the command never ran.
 * A reply that was only late (Redis slow) is not: Redis may have run the
 * command, and running an INCR twice counts one request twice, so a user
 * gets fewer requests than the limit. tests/faults.sh found that under
 * load: a fresh user got 9 of 10.
 *
 * The fake Redis answers each command it reads (one RESP array) after the
 * delay its script gives, or closes the connection; it counts the commands
 * it read. The pipe runs on this thread, with no event loop: the blocking
 * path a civetweb worker takes.
 *
 * Run alone: make && build/tests/test_redis_io
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "kit/redis_io.h"

#define TIMEOUT_MS 50
#define LATE_MS 200   /* a reply this late is past TIMEOUT_MS */
#define CLOSE -1      /* a step that closes the connection instead */

/* What the fake Redis does with the n-th command on a connection: answer
 * after steps[n] milliseconds, or CLOSE. */
struct fake_redis {
	int listen_fd;
	int port;
	int steps[4];
	int step_count;
	atomic_int commands;    /* read, over all connections */
	pthread_t thread;
};

static void sleep_ms(int ms)
{
	struct timespec wait = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&wait, NULL);
}

/* Reads one RESP array command from fd into nothing; returns 0, or -1
 * when the connection closed. Commands here are small: one read holds
 * one whole command (the pipe sends one at a time in these tests). */
static int read_command(int fd)
{
	char buffer[4096];
	ssize_t got = read(fd, buffer, sizeof(buffer));

	return got > 0 && buffer[0] == '*' ? 0 : -1;
}

static void *fake_redis_main(void *arg)
{
	struct fake_redis *fake = arg;

	for (;;) {
		int fd = accept(fake->listen_fd, NULL, NULL);

		if (fd < 0)
			return NULL; /* the test closed the listening socket */
		for (int n = 0; read_command(fd) == 0; n++) {
			int step = n < fake->step_count ? fake->steps[n] : 0;

			atomic_fetch_add(&fake->commands, 1);
			if (step == CLOSE)
				break;
			sleep_ms(step);
			if (write(fd, ":1\r\n", 4) != 4)
				break;
		}
		close(fd);
	}
}

static void fake_redis_start(struct fake_redis *fake, const int *steps, int count)
{
	struct sockaddr_in address = { .sin_family = AF_INET };
	socklen_t length = sizeof(address);

	memset(fake, 0, sizeof(*fake));
	memcpy(fake->steps, steps, sizeof(int) * (size_t)count);
	fake->step_count = count;
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fake->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fake->listen_fd >= 0);
	assert_int_equal(bind(fake->listen_fd, (struct sockaddr *)&address, sizeof(address)), 0);
	assert_int_equal(listen(fake->listen_fd, 8), 0);
	assert_int_equal(getsockname(fake->listen_fd, (struct sockaddr *)&address, &length), 0);
	fake->port = ntohs(address.sin_port);
	assert_int_equal(pthread_create(&fake->thread, NULL, fake_redis_main, fake), 0);
}

static void fake_redis_stop(struct fake_redis *fake)
{
	shutdown(fake->listen_fd, SHUT_RDWR);
	close(fake->listen_fd);
	pthread_join(fake->thread, NULL);
}

/* One INCR through the pipe: its reply (freed here) and *stale. */
static bool incr(struct kit_redis_pipe *pipe, bool *stale)
{
	const char *argv[] = { "INCR", "kit-test" };
	size_t argv_len[] = { 4, 8 };
	redisReply *reply = kit_redis_pipe_command(pipe, 2, argv, argv_len, stale);
	bool answered = reply != NULL;

	freeReplyObject(reply);
	return answered;
}

/* A connection that answered, then broke: stale, the command never ran
 * anywhere that kept it. */
static void test_broken_connection_is_stale(void **state)
{
	const int steps[] = { 0, CLOSE };
	struct fake_redis fake;
	struct kit_redis_pipe *pipe;
	bool stale = false;

	fake_redis_start(&fake, steps, 2);
	pipe = kit_redis_pipe_new("127.0.0.1", fake.port, 0, TIMEOUT_MS);
	assert_non_null(pipe);
	assert_true(incr(pipe, &stale));
	assert_false(stale);
	assert_false(incr(pipe, &stale));
	assert_true(stale);
	kit_redis_pipe_free(pipe);
	fake_redis_stop(&fake);
}

/* A connection that answered, then answered too late: not stale, since
 * the fake Redis did read (and would have run) the command. */
static void test_late_reply_is_not_stale(void **state)
{
	const int steps[] = { 0, LATE_MS };
	struct fake_redis fake;
	struct kit_redis_pipe *pipe;
	bool stale = true;

	fake_redis_start(&fake, steps, 2);
	pipe = kit_redis_pipe_new("127.0.0.1", fake.port, 0, TIMEOUT_MS);
	assert_non_null(pipe);
	assert_true(incr(pipe, &stale));
	assert_false(incr(pipe, &stale));
	assert_false(stale);
	assert_int_equal(atomic_load(&fake.commands), 2);
	kit_redis_pipe_free(pipe);
	fake_redis_stop(&fake);
}

/* The first command on a connection fails: nothing was ever answered,
 * so there is no reason to think a retry would do better. */
static void test_first_failure_is_not_stale(void **state)
{
	const int steps[] = { CLOSE };
	struct fake_redis fake;
	struct kit_redis_pipe *pipe;
	bool stale = true;

	fake_redis_start(&fake, steps, 1);
	pipe = kit_redis_pipe_new("127.0.0.1", fake.port, 0, TIMEOUT_MS);
	assert_non_null(pipe);
	assert_false(incr(pipe, &stale));
	assert_false(stale);
	kit_redis_pipe_free(pipe);
	fake_redis_stop(&fake);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broken_connection_is_stale),
		cmocka_unit_test(test_late_reply_is_not_stale),
		cmocka_unit_test(test_first_failure_is_not_stale),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
