/*
 * event_loop_internal.h - what the two halves of the event-loop core share:
 * event_loop.c runs the loop threads, the coroutines and the waits;
 * loop_connection.c serves one client connection's HTTP on them. Nothing
 * here is seen outside those two files.
 */
#ifndef KIT_EVENT_LOOP_INTERNAL_H
#define KIT_EVENT_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "server/context_switch.h"
#include "server/core.h"

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
	struct kit_context context;
	char *stack;                 /* its stack; the lowest page a guard       */
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

/* Why a loop stopped accepting for a while. */
enum accept_pause { ACCEPT_OPEN, ACCEPT_FULL, ACCEPT_NO_FDS };

struct loop {
	const struct kit_server_config *config;
	pthread_t thread;
	int index;
	int epoll_fd;
	int listen_fd;
	int stop_fd;                 /* eventfd, written by loop_run on a signal */
	struct watch listen_watch, stop_watch;
	bool stopping;

	struct kit_thread thread_state; /* resources and waits of this thread    */
	CURLM *multi;
	uint64_t curl_deadline_ns;   /* 0: no curl timer                          */

	struct kit_context main_context;
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

	/* Connections. Every one has its turn each round: one whose work is
	 * not done (a pipelined request, more bytes to read) is posted for
	 * the next round instead of being served on at once. */
	struct kit_loop_conn *conns; /* every open connection                    */
	int conn_count;
	int max_conns;               /* MAX_CONNECTIONS / LOOP_THREADS           */
	struct kit_loop_conn *posted_head, *posted_tail;
	enum accept_pause accept_paused;
	uint64_t accept_resume_ns;   /* ACCEPT_NO_FDS: when to try again         */
	uint64_t accept_error_logged_ns;
	long accept_errors_unlogged;

	int active;                  /* requests running (coroutines in use)     */
	struct kit_loop_conn *queued_head, *queued_tail; /* requests waiting for
	                              * one of LOOP_MAX_REQUESTS coroutines     */
	uint64_t next_sweep_ns;
	uint64_t stall_logged_ns;

	/* Read by /metrics from another thread. */
	atomic_long open_connections;
	atomic_long queued_requests;
};

/* The request running on this thread now, or NULL (event_loop.c). */
extern __thread struct coroutine *current_coroutine;

static inline uint64_t ms_to_ns(long ms)
{
	return (uint64_t)ms * 1000000ULL;
}

/* event_loop.c: a coroutine ready to run loop_request_main() (NULL when
 * out of memory), back to the free list, and run until it yields or ends;
 * the server's counters; accepting paused and resumed. */
struct coroutine *coroutine_get(struct loop *loop);
void coroutine_put(struct loop *loop, struct coroutine *co);
void coroutine_resume(struct loop *loop, struct coroutine *co);
void loop_count_accept_pause(enum accept_pause reason);
void loop_pause_accept(struct loop *loop, enum accept_pause reason, uint64_t now);
void loop_resume_accept(struct loop *loop);

/* loop_connection.c: a coroutine's request, accepting, a connection's
 * events, a request that finished (its coroutine is done), starting
 * requests that waited for a coroutine, the posted connections' turn, the
 * once-a-second deadline sweep, and closing connections when the loop
 * stops (idle ones at once; all of them at the very end). */
void loop_request_main(void);
void loop_accept(struct loop *loop);
void loop_connection_event(struct kit_loop_conn *conn, uint32_t events);
void loop_request_done(struct kit_loop_conn *conn);
void loop_start_queued(struct loop *loop);
void loop_serve_posted(struct loop *loop);
void loop_sweep_connections(struct loop *loop, uint64_t now);
void loop_close_idle_connections(struct loop *loop);
void loop_close_all_connections(struct loop *loop);

#endif
