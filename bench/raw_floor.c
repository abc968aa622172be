/*
 * bench/raw_floor.c - bench-raw-floor: the event-loop server core with
 * the least proxy there is, to measure how fast the kit's gateway could be
 * without libcurl. Not a gateway: a measuring stick for the "raw-floor"
 * row of `make bench` (docs/performance.md, "Where the time goes").
 *
 * GET /bench sends one fixed request, "GET /bench HTTP/1.1", on a
 * keep-alive connection to the bench's upstream (BENCH_UPSTREAM_URL, an IP
 * and port), reads the answer until its Content-Length is in, and answers
 * the client with its body. Connections are pooled per loop thread (a
 * stack of idle descriptors); waiting goes through kit_wait_fd (kit/wait.h),
 * as the real proxy's does through kit_http_perform. Nothing else: no
 * header passing, no chunked answers, no timeouts beyond a wait's, no
 * retry (a pooled connection the upstream closed costs a 502), no metrics - which is the point: the distance between this row and
 * gateway-bare is what the proxy's HTTP client costs, and the distance
 * between this row and nginx-proxy what the server core costs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <kit/kit.h>
#include <kit/wait.h>

#define IDLE_MAX 512

static struct sockaddr_in upstream;
static __thread int idle[IDLE_MAX]; /* this loop thread's pooled connections */
static __thread int idle_count;

static int connect_upstream(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&upstream, sizeof(upstream)) != 0 &&
	    (errno != EINPROGRESS || kit_wait_fd(fd, POLLOUT, 1000) != 1)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The answer's body, once the whole of it is in buf[0..got): its start
 * and length; NULL while more is to come. */
static const char *complete(char *buf, size_t got, size_t *len)
{
	char *end = strstr(buf, "\r\n\r\n");
	char *length = end != NULL ? strcasestr(buf, "\ncontent-length:") : NULL;
	size_t head;

	if (length == NULL || length > end)
		return NULL;
	*len = strtoul(length + 16, NULL, 10);
	head = (size_t)(end + 4 - buf);
	return got >= head + *len ? end + 4 : NULL;
}

static int forward(struct kit_request *req)
{
	static const char request[] = "GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	char buf[4096];
	size_t got = 0, len;
	int fd = idle_count > 0 ? idle[--idle_count] : connect_upstream();

	if (fd < 0)
		return kit_problem(req, 502, "the upstream refused the connection");
	if (send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(request) - 1) {
		close(fd);
		return kit_problem(req, 502, "the request did not go out whole");
	}
	for (;;) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		const char *body;

		if (n > 0) {
			got += (size_t)n;
			buf[got] = '\0';
			body = complete(buf, got, &len);
			if (body == NULL)
				continue;
			/* An upstream that says it closes (nginx does after
			 * keepalive_requests) gets no second request. */
			if (idle_count < IDLE_MAX && strcasestr(buf, "\nconnection: close") == NULL)
				idle[idle_count++] = fd;
			else
				close(fd);
			return kit_respond(req, 200, "application/json", body, len);
		}
		if (n < 0 && errno == EAGAIN && got < sizeof(buf) - 1 &&
		    kit_wait_fd(fd, POLLIN, 5000) == 1)
			continue;
		close(fd);
		return kit_problem(req, 502, "no whole answer from the upstream");
	}
}

int main(void)
{
	struct kit_app *app = kit_app_new("raw-floor", 3000);
	const char *url = kit_env_string("BENCH_UPSTREAM_URL", "http://127.0.0.1:8099");
	const char *port = strrchr(url, ':');

	upstream.sin_family = AF_INET;
	upstream.sin_port = htons((uint16_t)(port != NULL ? atoi(port + 1) : 0));
	if (strncmp(url, "http://", 7) != 0 || port == NULL || upstream.sin_port == 0 ||
	    inet_pton(AF_INET, "127.0.0.1", &upstream.sin_addr) != 1)
		kit_app_fail(app, "BENCH_UPSTREAM_URL: \"%s\" is not http://127.0.0.1:PORT", url);
	kit_app_use_event_loop(app);
	kit_mount_operations(app);           /* GET /health: readiness only */
	kit_route_add(app, &(struct kit_route_spec){
		.method = "GET", .pattern = "/bench", .handler = forward,
		.access = KIT_PUBLIC, .loop_safe = true, /* waits in kit_wait_fd only */
	});
	int status = kit_app_run(app);
	kit_app_free(app);
	return status;
}
