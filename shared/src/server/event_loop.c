/*
 * event_loop.c - the kit's second server core (kit/event_loop.h): the
 * loop threads, the coroutines requests run on, and the waits that let a
 * request yield. What a loop does with a client connection's bytes is in
 * loop_connection.c.
 *
 * LOOP_THREADS threads, each with its own listening socket (SO_REUSEPORT:
 * the kernel spreads new connections over them), its own epoll set and
 * its own curl multi handle, each serving every connection it accepted
 * until that connection closes.
 *
 * A round of the loop: wait for events (epoll_wait), handle them, run
 * every request that can go on, then the work left for the end of the
 * round (kit_at_round_end: the round's Redis commands in one write) and
 * the round's access-log lines in one write.
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

#include "server/event_loop_internal.h"
#include "kit/config.h"
#include "kit/event_loop.h"
#include "kit/request.h"

#define STACK_SIZE (128 * 1024)      /* a coroutine's stack (virtual; touched pages count) */
#define SPARE_COROUTINES 256         /* kept for reuse per loop thread          */
#define MAX_EVENTS 128

/* A socket libcurl asked us to watch. */
struct curl_watch {
	struct watch watch;          /* WATCH_CURL                                */
	curl_socket_t fd;
};

static __thread struct loop *current_loop;
__thread struct coroutine *current_coroutine;

/* ---- coroutines ---- */

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
	makecontext(&co->context, loop_request_main, 0); /* start at the top again */
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

/* Runs co until it yields or finishes (loop side). */
void coroutine_resume(struct loop *loop, struct coroutine *co)
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

/* ---- timers ---- */

/* Wakes requests whose wait has timed out, runs libcurl's timer, and
 * once a second closes connections past their deadline. */
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
	if (now >= loop->next_sweep_ns) {
		loop->next_sweep_ns = now + 1000000000ULL;
		loop_sweep_connections(loop, now);
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
	loop_close_idle_connections(loop);
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
		loop_start_queued(loop);
		n = epoll_wait(loop->epoll_fd, events, MAX_EVENTS, next_timeout_ms(loop, now));
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "%s: epoll_wait: %s\n", kit_app_name(loop->app),
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
		/* Run every request that can go on; one may make another ready. */
		while (loop->ready_head != NULL) {
			struct coroutine *co = loop->ready_head;

			loop->ready_head = co->next;
			if (loop->ready_head == NULL)
				loop->ready_tail = NULL;
			coroutine_resume(loop, co);
			if (co->finished)
				loop_request_done(co->conn);
		}
		run_round_end(loop);
		stdout_flush(loop); /* the round's access log lines, in one write */
	}
	run_round_end(loop);
	stdout_flush(loop);
	free(loop->stdout_lines);
	loop_close_all_connections(loop);
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
