/*
 * event_loop.c - the kit's second server core (server/core.h): the loop
 * threads, the coroutines requests run on, and the waits that let a
 * request yield (this core's table of kit/wait.h). What a loop does with a
 * client connection's bytes is in loop_connection.c.
 *
 * civetweb gives every open connection a thread. A gateway mostly waits -
 * on the client, on Redis, on the upstream - and with a thread per
 * connection each wait is a sleep and a wake-up, and each idle keep-alive
 * connection holds a thread's memory. Here one thread waits on all of them
 * at once (epoll), the way nginx and Envoy do.
 *
 * LOOP_THREADS threads, each with its own listening socket (SO_REUSEPORT:
 * the kernel spreads new connections over them), its own epoll set and
 * its own curl multi handle, each serving every connection it accepted
 * until that connection closes.
 *
 * A round of the loop: wait for events (epoll_wait), handle them, run
 * every request that can go on, give each posted connection its turn (a
 * pipelined request, the next 16 KiB of input: one turn per round, so one
 * busy client cannot hold the thread, as nginx posts events and redis caps
 * a read), then the work left for the end of the round (kit_at_round_end:
 * the round's Redis commands in one write) and the round's access-log
 * lines in one write.
 *
 * Coroutines run on small mmap()ed stacks with a guard page, reused from a
 * free list; only the pages a request touches become resident. Switching
 * to one and back costs no system call (context_switch.c). ASan is told
 * about every stack switch. A request that holds the thread longer than
 * LOOP_STALL_MS without yielding is logged and counted: something on its
 * path blocks.
 *
 * At most MAX_CONNECTIONS / LOOP_THREADS connections per loop: at the cap,
 * and when the process runs out of file descriptors, the loop stops
 * accepting for a while (new clients wait in the kernel's backlog) rather
 * than spinning on a listening socket it cannot drain.
 *
 * Threads: a loop thread owns everything here except the config
 * (read-only), the stop eventfd, which the main thread writes on
 * SIGINT/SIGTERM, and the counters /metrics reads (atomics). Every
 * connection, coroutine and socket belongs to one loop thread for its
 * whole life, so nothing here takes a lock.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kit/config.h"
#include "kit/metrics.h"
#include "kit/request.h"
#include "kit/wait.h"
#include "server/event_loop_internal.h"

#define STACK_SIZE (128 * 1024)      /* a coroutine's stack (virtual; touched pages count) */
#define SPARE_COROUTINES 256         /* kept for reuse per loop thread          */
#define MAX_EVENTS 128
#define ACCEPT_RETRY_MS 100          /* out of file descriptors: try again after */
#define LOG_INTERVAL_NS 1000000000ULL /* a repeated complaint: once a second    */

/* A socket libcurl asked us to watch. */
struct curl_watch {
	struct watch watch;          /* WATCH_CURL                                */
	curl_socket_t fd;
};

static __thread struct loop *current_loop;
__thread struct coroutine *current_coroutine;

/* The process's loops, for the gauges /metrics reads (set by loop_run). */
static struct loop *all_loops;
static long all_loop_count;
static struct kit_metric *accept_pauses_metric;
static struct kit_metric *stalls_metric;

/* ---- coroutines ---- */

/* Where every coroutine starts: one request (loop_connection.c), then back
 * to the loop for good; coroutine_get() prepares it afresh for the next. */
static void coroutine_main(void)
{
	struct coroutine *co = current_coroutine;
	struct loop *loop = co->loop;

#if KIT_ASAN
	__sanitizer_finish_switch_fiber(NULL, &loop->main_stack_bottom,
					&loop->main_stack_size);
#endif
	loop_request_main();
	co->finished = true;
#if KIT_ASAN
	/* NULL: this stack's frames are done with. */
	__sanitizer_start_switch_fiber(NULL, loop->main_stack_bottom, loop->main_stack_size);
#endif
	kit_context_switch(&co->context, &loop->main_context);
}

/* A coroutine from the free list or a new one; NULL when out of memory. */
struct coroutine *coroutine_get(struct loop *loop)
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
	}
	co->next = NULL;
	co->finished = false;
	co->conn = NULL;
	/* Start at the top again: a few stores, no system call. */
	kit_context_prepare(&co->context, co->stack, STACK_SIZE, coroutine_main);
	return co;
}

static void coroutine_free(struct coroutine *co)
{
	munmap(co->stack, STACK_SIZE);
	free(co);
}

void coroutine_put(struct loop *loop, struct coroutine *co)
{
	if (loop->spare_count >= SPARE_COROUTINES) {
		coroutine_free(co);
		return;
	}
	co->next = loop->spare;
	loop->spare = co;
	loop->spare_count++;
}

/* A request held the thread held_ms without yielding: every other request
 * of this thread waited that long. Counted, and said once a second. */
static void report_stall(struct loop *loop, uint64_t now, uint64_t held_ms)
{
	kit_metric_add(stalls_metric, NULL, 1);
	if (now - loop->stall_logged_ns < LOG_INTERVAL_NS)
		return;
	fprintf(stderr, "%s: a request held event-loop thread %d for %llu ms without "
		"yielding: something on its path blocks (waits must go through kit/wait.h; "
		"blocking code runs on SERVER_CORE=threads)\n",
		loop->config->name, loop->index, (unsigned long long)held_ms);
	loop->stall_logged_ns = now;
}

/* Runs co until it yields or finishes (loop side), and reports a run past
 * LOOP_STALL_MS. */
void coroutine_resume(struct loop *loop, struct coroutine *co)
{
	uint64_t started = kit_now_ns(), held_ms;
#if KIT_ASAN
	void *fake_stack = NULL;

	__sanitizer_start_switch_fiber(&fake_stack, co->stack, STACK_SIZE);
#endif
	current_coroutine = co;
	kit_context_switch(&loop->main_context, &co->context);
	current_coroutine = NULL;
#if KIT_ASAN
	__sanitizer_finish_switch_fiber(fake_stack, NULL, NULL);
#endif
	held_ms = (kit_now_ns() - started) / 1000000;
	if (held_ms >= (uint64_t)loop->config->loop_stall_ms)
		report_stall(loop, started, held_ms);
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
	kit_context_switch(&co->context, &loop->main_context);
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

/* ---- this core's waits (kit/wait.h) ---- */

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

static int loop_wait_fd(int fd, short events, long timeout_ms)
{
	struct coroutine *co = current_coroutine;
	struct loop *loop;
	struct epoll_event event = { 0 };

	if (co == NULL) /* on the loop thread, outside any request: block */
		return kit_blocking_waits.fd(fd, events, timeout_ms);
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

static struct kit_waiter *loop_waiter_self(void)
{
	return (struct kit_waiter *)current_coroutine;
}

static int loop_waiter_sleep(long timeout_ms)
{
	struct coroutine *co = current_coroutine;

	co->wait_fd = -1;
	co->sleeping = true;
	wait_until_woken(co, timeout_ms);
	co->sleeping = false;
	return co->wait_result;
}

static void loop_waiter_wake(struct kit_waiter *waiter)
{
	struct coroutine *co = (struct coroutine *)waiter;

	if (!co->sleeping || co->wait_result != WAITING)
		return;
	co->wait_result = 1;
	waiting_remove(co->loop, co);
	make_ready(co->loop, co);
}

static CURLcode loop_http_perform(CURL *easy)
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
			co->loop->config->name, curl_multi_strerror(added));
		return CURLE_FAILED_INIT;
	}
	while (!co->curl_done)
		coroutine_yield(co);
	curl_multi_remove_handle(co->loop->multi, easy);
	return co->curl_result;
}

static void loop_at_round_end(void (*fn)(void *arg), void *arg)
{
	struct loop *loop = current_coroutine != NULL ? current_coroutine->loop : NULL;

	if (loop == NULL || loop->round_end_count == ROUND_END_MAX) {
		fn(arg); /* outside a request, or too many: now */
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

#define STDOUT_BUFFER_MAX 65536

static void stdout_flush(struct loop *loop)
{
	if (loop->stdout_len == 0)
		return;
	kit_blocking_waits.write_stdout(loop->stdout_lines, loop->stdout_len);
	loop->stdout_len = 0;
}

static void loop_write_stdout(const char *data, size_t len)
{
	struct loop *loop = current_loop;

	if (loop->stdout_len + len > STDOUT_BUFFER_MAX)
		stdout_flush(loop);
	if (loop->stdout_lines == NULL && len <= STDOUT_BUFFER_MAX)
		loop->stdout_lines = malloc(STDOUT_BUFFER_MAX);
	if (loop->stdout_lines == NULL || len > STDOUT_BUFFER_MAX) {
		kit_blocking_waits.write_stdout(data, len); /* no buffer: at once */
		return;
	}
	memcpy(loop->stdout_lines + loop->stdout_len, data, len);
	loop->stdout_len += len;
}

static const struct kit_waits loop_waits = {
	.fd = loop_wait_fd,
	.http = loop_http_perform,
	.self = loop_waiter_self,
	.sleep = loop_waiter_sleep,
	.wake = loop_waiter_wake,
	.at_round_end = loop_at_round_end,
	.write_stdout = loop_write_stdout,
};

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

/* ---- accepting, paused and resumed ---- */

static const char *const pause_reasons[] = {
	[ACCEPT_OPEN] = "none",
	[ACCEPT_FULL] = "max_connections",
	[ACCEPT_NO_FDS] = "no_file_descriptors",
};

void loop_count_accept_pause(enum accept_pause reason)
{
	const char *labels[] = { pause_reasons[reason] };

	kit_metric_add(accept_pauses_metric, labels, 1);
}

/* Stops watching the listening socket: at the connection cap until one
 * closes, out of file descriptors for ACCEPT_RETRY_MS. Clients meanwhile
 * wait in the kernel's backlog. The level-triggered listening socket
 * would otherwise wake the loop again at once, forever. */
void loop_pause_accept(struct loop *loop, enum accept_pause reason, uint64_t now)
{
	if (loop->accept_paused != ACCEPT_OPEN || loop->listen_fd < 0)
		return;
	epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, loop->listen_fd, NULL);
	loop->accept_paused = reason;
	loop->accept_resume_ns = reason == ACCEPT_NO_FDS ? now + ms_to_ns(ACCEPT_RETRY_MS) : 0;
	loop_count_accept_pause(reason);
	if (reason == ACCEPT_NO_FDS) {
		/* Said once a second at most, with how many went unsaid. */
		if (now - loop->accept_error_logged_ns >= LOG_INTERVAL_NS) {
			fprintf(stderr, "%s: accept: out of file descriptors (%d connections open "
				"on loop %d); pausing accept for %d ms (%ld more since last said)\n",
				loop->config->name, loop->conn_count, loop->index,
				ACCEPT_RETRY_MS, loop->accept_errors_unlogged);
			loop->accept_error_logged_ns = now;
			loop->accept_errors_unlogged = 0;
		} else {
			loop->accept_errors_unlogged++;
		}
	}
}

void loop_resume_accept(struct loop *loop)
{
	struct epoll_event event = { .events = EPOLLIN };

	if (loop->accept_paused == ACCEPT_OPEN || loop->listen_fd < 0 || loop->stopping)
		return;
	event.data.ptr = &loop->listen_watch;
	epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->listen_fd, &event);
	loop->accept_paused = ACCEPT_OPEN;
}

/* ---- timers ---- */

/* Wakes requests whose wait has timed out, runs libcurl's timer, resumes
 * accepting after a pause for file descriptors, and once a second closes
 * connections past their deadline. */
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
	if (loop->accept_paused == ACCEPT_NO_FDS && now >= loop->accept_resume_ns)
		loop_resume_accept(loop);
	if (now >= loop->next_sweep_ns) {
		loop->next_sweep_ns = now + 1000000000ULL;
		loop_sweep_connections(loop, now);
	}
}

/* How long epoll_wait may sleep: until the nearest deadline, at most 1 s;
 * not at all when requests or connections wait for their turn. */
static int next_timeout_ms(struct loop *loop, uint64_t now)
{
	uint64_t nearest = loop->next_sweep_ns;

	if (loop->ready_head != NULL || loop->posted_head != NULL)
		return 0;
	if (loop->curl_deadline_ns != 0 && loop->curl_deadline_ns < nearest)
		nearest = loop->curl_deadline_ns;
	if (loop->accept_paused == ACCEPT_NO_FDS && loop->accept_resume_ns < nearest)
		nearest = loop->accept_resume_ns;
	for (struct coroutine *co = loop->waiting; co != NULL; co = co->wait_next) {
		if (co->wait_deadline_ns < nearest)
			nearest = co->wait_deadline_ns;
	}
	if (nearest <= now)
		return 0;
	return (int)((nearest - now + 999999) / 1000000);
}

/* ---- the loop thread ---- */

/* Runs every request that can go on. */
static void run_ready(struct loop *loop)
{
	while (loop->ready_head != NULL) {
		struct coroutine *co = loop->ready_head;

		loop->ready_head = co->next;
		if (loop->ready_head == NULL)
			loop->ready_tail = NULL;
		coroutine_resume(loop, co);
		if (co->finished)
			loop_request_done(co->conn);
	}
}

static void loop_stop_accepting(struct loop *loop)
{
	loop->stopping = true;
	if (loop->listen_fd >= 0) {
		close(loop->listen_fd);
		loop->listen_fd = -1;
	}
	loop_close_idle_connections(loop);
}

static void *loop_main(void *arg)
{
	struct loop *loop = arg;
	struct epoll_event events[MAX_EVENTS];
	uint64_t stop_deadline = 0;

	current_loop = loop;
	kit_thread_begin(&loop->thread_state, loop->config, &loop_waits);
	for (;;) {
		uint64_t now = kit_now_ns();
		int n;

		if (loop->stopping) {
			if (loop->conn_count == 0 || now >= stop_deadline)
				break;
		}
		loop_start_queued(loop);
		n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, next_timeout_ms(loop, now));
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "%s: epoll_wait: %s\n", loop->config->name,
				strerror(errno));
			break;
		}
		bool stop_asked = false;

		for (int i = 0; i < n; i++) {
			struct watch *watch = events[i].data.ptr;
			uint32_t ready = events[i].events;

			switch (watch->kind) {
			case WATCH_LISTEN:
				loop_accept(loop);
				break;
			case WATCH_STOP: {
				uint64_t value;

				if (read(loop->stop_fd, &value, sizeof(value)) < 0) {
					/* the signal is what matters, not the count */
				}
				/* Acted on after this batch: stopping closes idle
				 * connections, and a later event of the same batch
				 * may point at one of them. */
				stop_asked = true;
				break;
			}
			case WATCH_CONN:
				loop_connection_event((struct kit_loop_conn *)watch, ready);
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
		if (stop_asked && !loop->stopping) {
			loop_stop_accepting(loop);
			stop_deadline = kit_now_ns() + ms_to_ns(5000);
		}
		expire(loop, kit_now_ns());
		run_ready(loop);
		/* Each connection with work left gets one turn; what it starts
		 * runs now, what it leaves waits for the next round. */
		loop_serve_posted(loop);
		run_ready(loop);
		run_round_end(loop);
		stdout_flush(loop); /* the round's access log lines, in one write */
	}
	run_round_end(loop);
	stdout_flush(loop);
	free(loop->stdout_lines);
	loop->stdout_lines = NULL;
	loop_close_all_connections(loop);
	/* The multi handle's cached connections first: closing them reports
	 * to the proxy's per-thread state, released just after. */
	curl_multi_cleanup(loop->multi);
	loop->multi = NULL;
	kit_thread_end(&loop->thread_state);
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
	const struct kit_server_config *config = loop->config;
	struct sockaddr_in address = { .sin_family = AF_INET };
	int one = 1;

	address.sin_port = htons((uint16_t)config->port);
	if (inet_pton(AF_INET, config->bind_address, &address.sin_addr) != 1) {
		fprintf(stderr, "%s: BIND_ADDRESS %s is not an IPv4 address\n", config->name,
			config->bind_address);
		return -1;
	}
	loop->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (loop->listen_fd < 0 ||
	    setsockopt(loop->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(loop->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(loop->listen_fd, (struct sockaddr *)&address, sizeof(address)) != 0 ||
	    listen(loop->listen_fd, (int)config->policy.listen_backlog) != 0) {
		fprintf(stderr, "%s: cannot listen on %s:%ld: %s\n", config->name,
			config->bind_address, config->port, strerror(errno));
		return -1;
	}
	return 0;
}

static int loop_init(struct loop *loop, const struct kit_server_config *config, int index)
{
	struct epoll_event event = { .events = EPOLLIN };
	long per_loop = config->policy.max_connections / config->loop_threads;

	loop->config = config;
	loop->index = index;
	loop->listen_fd = -1;
	loop->max_conns = per_loop > 0 ? (int)per_loop : 1;
	loop->listen_watch.kind = WATCH_LISTEN;
	loop->stop_watch.kind = WATCH_STOP;
	loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	loop->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	loop->multi = curl_multi_init();
	if (loop->epoll_fd < 0 || loop->stop_fd < 0 || loop->multi == NULL) {
		fprintf(stderr, "%s: cannot create an event loop: %s\n", config->name,
			strerror(errno));
		return -1;
	}
	if (loop_listen(loop) != 0)
		return -1;
	curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, curl_on_socket);
	curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
	curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, curl_on_timer);
	curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
	if (config->loop_max_idle > 0)
		curl_multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, config->loop_max_idle);

	/* Level-triggered: a connection left in the backlog (paused, or more
	 * than one round's worth) wakes the loop again. */
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

/* ---- the server's counters (/metrics) ---- */

static void collect_gauges(void *arg)
{
	static struct kit_metric *connections, *queued;
	long open = 0, waiting = 0;

	if (connections == NULL) {
		connections = kit_metric_register(KIT_GAUGE, "kit_server_connections",
			"Client connections open on the event-loop core", NULL, NULL, 0);
		queued = kit_metric_register(KIT_GAUGE, "kit_server_requests_queued",
			"Requests waiting for one of LOOP_MAX_REQUESTS coroutines", NULL, NULL, 0);
	}
	for (long i = 0; i < all_loop_count; i++) {
		open += atomic_load(&all_loops[i].open_connections);
		waiting += atomic_load(&all_loops[i].queued_requests);
	}
	kit_metric_set(connections, NULL, (double)open);
	kit_metric_set(queued, NULL, (double)waiting);
}

static void register_metrics(void)
{
	static const char *const reason[] = { "reason", NULL };

	accept_pauses_metric = kit_metric_register(KIT_COUNTER,
		"kit_server_accept_pauses_total",
		"Times a loop stopped accepting: at MAX_CONNECTIONS, or out of file descriptors",
		reason, NULL, 0);
	stalls_metric = kit_metric_register(KIT_COUNTER, "kit_server_loop_stalls_total",
		"Requests that held an event-loop thread past LOOP_STALL_MS without yielding",
		NULL, NULL, 0);
	kit_metrics_on_render(collect_gauges, NULL);
}

/* ---- the server ---- */

static int loop_configure(struct kit_server_config *config)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (kit_env_long("LOOP_THREADS", cpus > 0 ? cpus : 1, 1, 64, &config->loop_threads) != 0 ||
	    kit_env_long("LOOP_MAX_REQUESTS", 64, 1, 4096, &config->loop_max_requests) != 0 ||
	    kit_env_long("LOOP_STALL_MS", 100, 1, 60000, &config->loop_stall_ms) != 0)
		return -1;
	return 0;
}

static int loop_run(const struct kit_server_config *config, const sigset_t *stop_signals)
{
	struct loop *loops = calloc((size_t)config->loop_threads, sizeof(*loops));
	int started = 0, signal_number = 0, status = 0;

	if (loops == NULL)
		return 1;
	for (int i = 0; i < config->loop_threads; i++) {
		loops[i].epoll_fd = loops[i].stop_fd = loops[i].listen_fd = -1;
		if (loop_init(&loops[i], config, i) != 0) {
			status = 1;
			goto out;
		}
	}
	all_loops = loops;
	all_loop_count = config->loop_threads;
	register_metrics();
	for (; started < config->loop_threads; started++) {
		if (pthread_create(&loops[started].thread, NULL, loop_main, &loops[started]) != 0) {
			fprintf(stderr, "%s: cannot start an event-loop thread\n", config->name);
			status = 1;
			goto out;
		}
	}
	fprintf(stderr, "%s: listening on http://%s:%ld (%ld event-loop threads)\n",
		config->name, config->bind_address, config->port, config->loop_threads);

	sigwait(stop_signals, &signal_number);
	fprintf(stderr, "%s: %s received, stopping\n", config->name,
		signal_number == SIGINT ? "SIGINT" : "SIGTERM");
out:
	for (int i = 0; i < started; i++) {
		uint64_t one = 1;

		if (write(loops[i].stop_fd, &one, sizeof(one)) < 0)
			fprintf(stderr, "%s: cannot stop loop %d\n", config->name, i);
	}
	for (int i = 0; i < started; i++)
		pthread_join(loops[i].thread, NULL);
	all_loop_count = 0; /* the gauges stop reading the loops */
	for (int i = 0; i < config->loop_threads; i++)
		loop_free(&loops[i]);
	free(loops);
	return status;
}

const struct kit_server kit_event_loop_server = {
	.name = "event loop",
	.shares_threads = true,
	.configure = loop_configure,
	.run = loop_run,
};
