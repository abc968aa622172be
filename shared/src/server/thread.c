/*
 * thread.c - the thread a request runs on: its per-thread resources and its
 * way of waiting (server/core.h, kit/wait.h).
 *
 * Each server core marks every thread it serves on with kit_thread_begin():
 * civetweb for each worker, the event loop for each loop thread. From then
 * on, kit_wait_fd() and the other waits of kit/wait.h go through that
 * thread's table of waits - blocking calls on a civetweb worker, a yield on
 * a loop thread - and kit_thread_slot() finds the thread's resources. A
 * thread no core started (the url-shortener's click sender, the trace
 * reporter) has no mark and gets the blocking waits.
 *
 * Threads: everything here is the calling thread's own (a thread-local
 * pointer); nothing is shared.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "kit/wait.h"
#include "server/core.h"

static __thread struct kit_thread *current_thread;

void kit_thread_begin(struct kit_thread *thread, const struct kit_server_config *config,
		      const struct kit_waits *waits)
{
	thread->waits = waits;
	thread->entries = config->resources;
	thread->entry_count = config->resource_count;
	for (int i = 0; i < KIT_MAX_THREAD_RESOURCES; i++)
		thread->resources[i] = NULL;
	current_thread = thread;
}

void kit_thread_end(struct kit_thread *thread)
{
	for (int i = 0; i < thread->entry_count; i++) {
		if (thread->resources[i] != NULL)
			thread->entries[i].destroy(thread->resources[i]);
		thread->resources[i] = NULL;
	}
	if (current_thread == thread)
		current_thread = NULL;
}

void *kit_thread_slot(int slot)
{
	struct kit_thread *thread = current_thread;

	if (thread == NULL || slot < 0 || slot >= thread->entry_count)
		return NULL;
	if (thread->resources[slot] == NULL)
		thread->resources[slot] = thread->entries[slot].create(thread->entries[slot].arg);
	return thread->resources[slot];
}

/* ---- the blocking waits: a civetweb worker, or a thread of no core ---- */

static int blocking_fd(int fd, short events, long timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	do {
		n = poll(&pfd, 1, (int)timeout_ms);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : n > 0;
}

static CURLcode blocking_http(CURL *easy)
{
	return curl_easy_perform(easy);
}

static struct kit_waiter *blocking_self(void)
{
	return NULL; /* one request per thread: nobody to wait for */
}

static int blocking_sleep(long timeout_ms)
{
	return 0; /* never called: kit_waiter_self() is NULL here */
}

static void blocking_wake(struct kit_waiter *waiter)
{
}

static void blocking_at_round_end(void (*fn)(void *arg), void *arg)
{
	fn(arg); /* no rounds: now */
}

static void blocking_write_stdout(const char *data, size_t len)
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

const struct kit_waits kit_blocking_waits = {
	.fd = blocking_fd,
	.http = blocking_http,
	.self = blocking_self,
	.sleep = blocking_sleep,
	.wake = blocking_wake,
	.at_round_end = blocking_at_round_end,
	.write_stdout = blocking_write_stdout,
};

/* ---- kit/wait.h: whichever way this thread waits ---- */

static const struct kit_waits *waits(void)
{
	return current_thread != NULL ? current_thread->waits : &kit_blocking_waits;
}

int kit_wait_fd(int fd, short events, long timeout_ms)
{
	return waits()->fd(fd, events, timeout_ms);
}

CURLcode kit_http_perform(CURL *easy)
{
	return waits()->http(easy);
}

struct kit_waiter *kit_waiter_self(void)
{
	return waits()->self();
}

int kit_waiter_sleep(long timeout_ms)
{
	return waits()->sleep(timeout_ms);
}

void kit_waiter_wake(struct kit_waiter *waiter)
{
	waits()->wake(waiter);
}

void kit_at_round_end(void (*fn)(void *arg), void *arg)
{
	waits()->at_round_end(fn, arg);
}

void kit_write_stdout(const char *data, size_t len)
{
	waits()->write_stdout(data, len);
}
