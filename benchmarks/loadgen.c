/*
 * loadgen.c - load generator for the aiosock benchmarks.  It must never be
 * the bottleneck, so it is one thread of non-blocking sockets on epoll that
 * never copies payloads: every request is written from one shared pattern.
 *
 * Usage:
 *   loadgen --address ADDR [--connections N] [--size S] [--duration D]
 *           [--warmup W] [--pipeline K] [--timeout-ms T]
 *
 *   --address      tcp://127.0.0.1:PORT  tcp://[::1]:PORT
 *                  udp://127.0.0.1:PORT  udp://[::1]:PORT
 *                  unix:///abs/path.sock unix:@name
 *                  unixgram:///abs/path  unixgram:@name
 *                  Loopback only (127.0.0.0/8, ::1; IP literals, no names).
 *   --connections  concurrent connections / datagram sockets (default 10)
 *   --size         payload bytes per request (default 1024; UDP <= 65507,
 *                  unixgram <= 262144)
 *   --duration     measured seconds, float (default 5)
 *   --warmup       seconds of unrecorded traffic first, float (default 1)
 *   --pipeline     0 = ping-pong (default).  K > 0, streams only: frames are
 *                  a 4-byte big-endian length (== S) plus S bytes, and each
 *                  connection keeps K frames in flight.
 *   --timeout-ms   datagram reply timeout; a late reply is a loss (1000)
 *
 * A request is one message (ping-pong), one frame (pipelined) or one
 * datagram, completed when its whole echo is back; its latency runs from
 * the moment it is issued (its write is attempted at once; a pipelined
 * frame may wait behind earlier ones if the socket buffer is full) to the
 * moment the last byte of its echo has been read.
 * Echoes are checked for length, never content.  A stream connection that
 * fails (reset, early close, echo longer than sent, wrong frame header) is
 * counted in "errors" and closed; the others keep running, none reconnects.
 * Datagrams carry a sequence number in their first (up to 8) bytes so that
 * a reply arriving after its timeout is discarded, not credited to the
 * next request.  Each unixgram socket binds a path of its own, INDEX in
 * a private directory made by mkdtemp under $TMPDIR (or /tmp), so that
 * the server can answer; the directory is removed at exit.  Not an
 * abstract name: libuv hands uvloop no address length on receive, so
 * uvloop reads an abstract sender as all 108 bytes of sun_path and cannot
 * answer it.
 *
 * Timeline: connect everything (give up after 5 s: exit 1), warm up for W
 * seconds, record for D seconds, stop.  Requests, sent and losses count
 * events inside the recorded window; errors count the whole run.
 *
 * Output contract: stdout receives exactly one JSON object on one line:
 *   loadgen "c"; address (normalised); transport tcp|udp|unix|unixgram;
 *   connections; size; pipeline; duration_s; warmup_s; requests (completed
 *   in the window); requests_per_s; mib_per_s (requests*size/2^20/duration,
 *   one direction); p50_us p90_us p99_us p999_us (from a histogram with
 *   buckets under 0.8 % wide) max_us mean_us (exact); errors; losses
 *   (datagrams only); sent (requests issued in the window); cpu_pct (this
 *   process's user+system CPU over the window, 100 = one full core: near
 *   100 means the load generator itself may be the limit).
 * Diagnostics go to stderr.  Exit status: 0 for a completed run, even with
 * errors counted; 1 for a setup failure; 2 for bad arguments or an address
 * that is not loopback.
 *
 * Build: cc -O2 -std=gnu11 -Wall -Wextra -Werror -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h> /* isfinite() is a macro: no -lm needed */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "address.h"

enum { EXIT_SETUP = 1, EXIT_USAGE = 2 };

#define RX_BUF_SIZE (256 * 1024)
#define MAX_CONNECTIONS 10000
#define MAX_STREAM_SIZE (64L * 1024 * 1024)
#define MAX_UDP_SIZE 65507
#define MAX_UNIXGRAM_SIZE RX_BUF_SIZE /* what echo.c can receive */
#define MAX_PIPELINE 4096
#define CONNECT_GIVE_UP_NS (5 * NS_PER_S)
#define CONNECT_RETRY_NS (20 * NS_PER_MS)
#define PATTERN_MIN (64 * 1024) /* big enough for large, cheap writes */
#define MAX_LOGGED_ERRORS 10
#define NS_PER_S 1000000000ULL
#define NS_PER_MS 1000000ULL

/* ------------------------------------------------------------------ */
/* Clock and latency histogram.                                          */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Log-linear buckets over nanoseconds: exact below 128 ns, then every power
 * of two is split into 128 equal steps (error < 0.8 %) up to 2^35 ns
 * (34 s; anything slower lands in the last bucket, max_us stays exact).
 * Fixed 29 KiB, O(1) insert. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_TOP_BITS 35
#define HIST_BUCKETS ((HIST_TOP_BITS - HIST_SUB_BITS + 1) * HIST_SUB)

struct histogram {
	uint64_t counts[HIST_BUCKETS];
	uint64_t total, sum_ns, max_ns;
};

static unsigned hist_index(uint64_t ns)
{
	unsigned octave, shift;

	if (ns >= (1ULL << HIST_TOP_BITS))
		ns = (1ULL << HIST_TOP_BITS) - 1;
	if (ns < HIST_SUB)
		return (unsigned)ns;
	octave = 63u - (unsigned)__builtin_clzll(ns);
	shift = octave - HIST_SUB_BITS;
	return shift * HIST_SUB + (unsigned)(ns >> shift);
}

/* Middle of the bucket, so the error is half a step either way. */
static uint64_t hist_value(unsigned index)
{
	unsigned shift;

	if (index < 2 * HIST_SUB)
		return index;
	shift = index / HIST_SUB - 1;
	return ((uint64_t)(index - shift * HIST_SUB) << shift) +
	       ((1ULL << shift) - 1) / 2;
}

static void hist_record(struct histogram *h, uint64_t ns)
{
	h->counts[hist_index(ns)]++;
	h->total++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

static double hist_quantile_us(const struct histogram *h, double q)
{
	double exact = q * (double)h->total;
	uint64_t rank = (uint64_t)exact, seen = 0;

	if (h->total == 0)
		return 0;
	if ((double)rank < exact || rank < 1)
		rank++; /* ceiling, without pulling in libm */
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t v = hist_value(i);
			return (double)(v < h->max_ns ? v : h->max_ns) / 1e3;
		}
	}
	return (double)h->max_ns / 1e3;
}

/* ------------------------------------------------------------------ */
/* Run state.                                                            */

struct config {
	struct address addr;
	long connections, size, pipeline, timeout_ms;
	double duration, warmup;
};

enum conn_state { C_IDLE, C_CONNECTING, C_READY, C_DEAD };

struct conn {
	int fd;
	enum conn_state state;
	uint32_t events;   /* current epoll interest */
	uint64_t retry_at; /* connect phase: when to try again */
	/* Streams: bytes still owed to the socket, taken from the shared
	 * pattern at pattern_off; written/received catch over-long echoes. */
	uint64_t to_write, written, received;
	size_t pattern_off;
	/* Echo parser: header bytes seen (4 = none expected), payload left. */
	unsigned char hdr[4];
	unsigned hdr_have;
	size_t body_left;
	/* Send times of in-flight requests, oldest first (streams echo in
	 * order, so a FIFO pairs each echo with its request). */
	uint64_t *stamps;
	unsigned head, inflight;
	/* Datagrams: waiting = a reply is due by deadline; blocked = queued in
	 * run.blocked until the server has room. */
	bool waiting, blocked;
	uint64_t sent_at, deadline, seq;
};

struct run {
	struct config cfg;
	bool stream, framed;
	unsigned depth;      /* requests in flight per connection */
	size_t frame_len;    /* bytes of one request on the wire */
	size_t seq_len;      /* datagram bytes used for the sequence number */
	unsigned char *pattern;
	size_t pattern_len;
	int epfd;
	struct conn *conns;
	uint64_t win_start, win_end, timeout_ns, scan_ns;
	bool measuring;
	struct rusage ru_start;
	uint64_t wall_start;
	/* Datagram sockets whose send found the server's queue full, oldest
	 * first (see send_or_queue). */
	uint32_t *blocked;
	long blocked_head, blocked_count;
	struct histogram hist;
	unsigned long long requests, sent, errors, losses, late;
	int last_connect_errno;
};

static unsigned char rx_buf[RX_BUF_SIZE];

static bool in_window(const struct run *r, uint64_t t)
{
	return t >= r->win_start && t < r->win_end;
}

static void note_error(struct run *r, size_t i, const char *what, int err)
{
	r->errors++;
	if (r->errors > MAX_LOGGED_ERRORS)
		return;
	fprintf(stderr, "loadgen: connection %zu: %s%s%s\n", i, what,
		err ? ": " : "", err ? strerror(err) : "");
	if (r->errors == MAX_LOGGED_ERRORS)
		fprintf(stderr, "loadgen: further errors are only counted\n");
}

static void fail_conn(struct run *r, struct conn *c, const char *what, int err)
{
	note_error(r, (size_t)(c - r->conns), what, err);
	close(c->fd);
	c->fd = -1;
	c->state = C_DEAD;
}

static void set_interest(struct run *r, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events };

	if (c->events == events)
		return;
	ev.data.u32 = (uint32_t)(c - r->conns);
	if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
}

/* ------------------------------------------------------------------ */
/* Streams.                                                              */

static void queue_request(struct run *r, struct conn *c, uint64_t now)
{
	c->stamps[(c->head + c->inflight) % r->depth] = now;
	c->inflight++;
	c->to_write += r->frame_len;
	if (in_window(r, now))
		r->sent++;
}

static void flush_writes(struct run *r, struct conn *c)
{
	while (c->to_write > 0) {
		size_t len = r->pattern_len - c->pattern_off;
		ssize_t w;

		if (len > c->to_write)
			len = (size_t)c->to_write;
		w = send(c->fd, r->pattern + c->pattern_off, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0) {
			fail_conn(r, c, "send", errno);
			return;
		}
		c->to_write -= (uint64_t)w;
		c->written += (uint64_t)w;
		c->pattern_off = (c->pattern_off + (size_t)w) % r->pattern_len;
		if ((size_t)w < len)
			break; /* socket buffer full: wait for EPOLLOUT */
	}
	set_interest(r, c, c->to_write ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void complete_request(struct run *r, struct conn *c, uint64_t now)
{
	uint64_t started = c->stamps[c->head];

	c->head = (c->head + 1) % r->depth;
	c->inflight--;
	if (in_window(r, now)) {
		r->requests++;
		hist_record(&r->hist, now - started);
	}
	c->hdr_have = r->framed ? 0 : 4;
	c->body_left = (size_t)r->cfg.size;
	queue_request(r, c, now);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static int consume_echo(struct run *r, struct conn *c, const unsigned char *p,
			size_t n, uint64_t now)
{
	while (n > 0) {
		size_t take;

		if (c->hdr_have < 4) {
			c->hdr[c->hdr_have++] = *p++;
			n--;
			if (c->hdr_have == 4 && be32(c->hdr) != r->cfg.size) {
				fail_conn(r, c, "echoed frame header is not "
						"--size", 0);
				return -1;
			}
			continue;
		}
		take = n < c->body_left ? n : c->body_left;
		p += take;
		n -= take;
		c->body_left -= take;
		if (c->body_left == 0)
			complete_request(r, c, now);
	}
	return 0;
}

static void read_echo(struct run *r, struct conn *c)
{
	ssize_t n = recv(c->fd, rx_buf, sizeof rx_buf, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		fail_conn(r, c, n == 0 ? "server closed mid-echo (short echo)"
				       : "recv", n == 0 ? 0 : errno);
		return;
	}
	if (c->received + (uint64_t)n > c->written) {
		fail_conn(r, c, "echo longer than what was sent", 0);
		return;
	}
	c->received += (uint64_t)n;
	/* One timestamp per read: every request completed by these bytes
	 * finished at the same moment from our point of view. */
	if (consume_echo(r, c, rx_buf, (size_t)n, now_ns()) == 0)
		flush_writes(r, c);
}

static void on_stream_event(struct run *r, struct conn *c, uint32_t events)
{
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		read_echo(r, c);
	if (c->state == C_READY && (events & EPOLLOUT))
		flush_writes(r, c);
}

static void start_stream(struct run *r, struct conn *c, uint64_t now)
{
	c->hdr_have = r->framed ? 0 : 4;
	c->body_left = (size_t)r->cfg.size;
	for (unsigned k = 0; k < r->depth; k++)
		queue_request(r, c, now);
	flush_writes(r, c);
}

/* ------------------------------------------------------------------ */
/* Datagrams.                                                            */

/* The sequence number rides in the first bytes and the rest of the payload
 * comes straight from the shared pattern: no per-socket copy.  Returns false
 * when the server's queue is full (unix datagrams) and nothing was sent. */
static bool send_datagram(struct run *r, struct conn *c, uint64_t now)
{
	struct iovec iov[2] = {
		{ .iov_base = &c->seq, .iov_len = r->seq_len },
		{ .iov_base = r->pattern,
		  .iov_len = r->frame_len - r->seq_len },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);

	if (w < 0 && errno == EAGAIN)
		return false;
	/* After a failed send the timeout only paces the next attempt, so the
	 * failure is counted once, as an error, not also as a loss. */
	c->waiting = w >= 0;
	c->sent_at = now;
	c->deadline = now + r->timeout_ns;
	if (w < 0)
		note_error(r, (size_t)(c - r->conns), "send", errno);
	else if (in_window(r, now))
		r->sent++;
	return true;
}

/* A full unix datagram queue wakes every EPOLLOUT waiter each time one slot
 * frees, so with many sockets the load generator would burn its CPU on
 * failed sends.  Blocked sockets wait in a FIFO instead, retried after each
 * batch of replies (each reply means the server dequeued something) and on
 * every timeout scan. */
static void send_or_queue(struct run *r, struct conn *c, uint64_t now)
{
	c->seq++;
	c->waiting = false;
	if (send_datagram(r, c, now))
		return;
	c->blocked = true;
	r->blocked[(r->blocked_head + r->blocked_count) % r->cfg.connections] =
		(uint32_t)(c - r->conns);
	r->blocked_count++;
}

static void retry_blocked(struct run *r, uint64_t now)
{
	while (r->blocked_count > 0) {
		struct conn *c = &r->conns[r->blocked[r->blocked_head]];

		if (!send_datagram(r, c, now))
			return;
		c->blocked = false;
		r->blocked_head = (r->blocked_head + 1) % r->cfg.connections;
		r->blocked_count--;
	}
}

static void take_reply(struct run *r, struct conn *c, size_t n, uint64_t now)
{
	if (!c->waiting || n < r->seq_len ||
	    memcmp(rx_buf, &c->seq, r->seq_len) != 0) {
		r->late++; /* answer to a request already written off */
		return;
	}
	c->waiting = false;
	if (n != (size_t)r->cfg.size) {
		note_error(r, (size_t)(c - r->conns), "echoed datagram has "
			   "the wrong length", 0);
	} else if (in_window(r, now)) {
		r->requests++;
		hist_record(&r->hist, now - c->sent_at);
	}
	send_or_queue(r, c, now);
}

/* One datagram per wake-up: a socket has at most one reply due, so looping
 * until EAGAIN would mostly add a failed recv per request; level-triggered
 * epoll reports the socket again if a stale reply is also queued. */
static void read_reply(struct run *r, struct conn *c)
{
	/* MSG_TRUNC makes recv report the real length even if the datagram
	 * was bigger than the buffer. */
	ssize_t n = recv(c->fd, rx_buf, sizeof rx_buf, MSG_TRUNC);

	if (n >= 0) {
		take_reply(r, c, (size_t)n, now_ns());
	} else if (errno != EAGAIN && errno != EINTR) {
		/* e.g. ICMP port unreachable: the request is gone; count it
		 * once, as an error, and let the timeout pace the retry. */
		note_error(r, (size_t)(c - r->conns), "recv", errno);
		c->waiting = false;
	}
}

static void on_dgram_event(struct run *r, struct conn *c, uint32_t events)
{
	if (events & (EPOLLIN | EPOLLERR))
		read_reply(r, c);
}

static void scan_timeouts(struct run *r, uint64_t now)
{
	for (long i = 0; i < r->cfg.connections; i++) {
		struct conn *c = &r->conns[i];

		if (c->state != C_READY || c->blocked || now < c->deadline)
			continue;
		if (c->waiting && in_window(r, now))
			r->losses++;
		send_or_queue(r, c, now);
	}
	retry_blocked(r, now);
}

/* ------------------------------------------------------------------ */
/* Connecting.                                                           */

static char client_dir[64];
static size_t client_paths;

static void remove_client_dir(void)
{
	char path[sizeof client_dir + 24];

	for (size_t i = 0; i < client_paths; i++) {
		snprintf(path, sizeof path, "%s/%zu", client_dir, i);
		unlink(path);
	}
	rmdir(client_dir);
}

static int make_client_dir(void)
{
	const char *tmp = getenv("TMPDIR");

	/* A long $TMPDIR would not leave room in sun_path for the names. */
	if (!tmp || !*tmp || strlen(tmp) > 40)
		tmp = "/tmp";
	snprintf(client_dir, sizeof client_dir, "%s/aiosock-loadgen-XXXXXX", tmp);
	if (!mkdtemp(client_dir)) {
		fprintf(stderr, "loadgen: mkdtemp %s: %s\n", client_dir,
			strerror(errno));
		client_dir[0] = '\0';
		return -1;
	}
	atexit(remove_client_dir);
	return 0;
}

static int bind_unixgram_client(int fd, size_t index)
{
	struct sockaddr_un su = { .sun_family = AF_UNIX };

	if (!client_dir[0] && make_client_dir() < 0)
		return -1;
	snprintf(su.sun_path, sizeof su.sun_path, "%s/%zu", client_dir, index);
	if (bind(fd, (struct sockaddr *)&su, sizeof su) < 0) {
		fprintf(stderr, "loadgen: bind %s: %s\n", su.sun_path,
			strerror(errno));
		return -1;
	}
	if (index >= client_paths)
		client_paths = index + 1;
	return 0;
}

/* Large unix datagrams must fit the sender's buffer. */
static int fit_datagram(const struct run *r, int fd)
{
	int want = (int)(2 * r->frame_len + 4096), have = 0;
	socklen_t len = sizeof have;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
	getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &have, &len);
	if ((size_t)have >= r->frame_len + 64)
		return 0;
	fprintf(stderr, "loadgen: socket send buffer (%d bytes) too small for "
			"%zu-byte datagrams (see net.core.wmem_max)\n", have,
		r->frame_len);
	return -1;
}

static int new_socket(struct run *r, size_t index)
{
	const struct address *a = &r->cfg.addr;
	int type = r->stream ? SOCK_STREAM : SOCK_DGRAM;
	int fd = socket(a->sa.ss_family,
			type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	if (a->transport == T_TCP)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (a->transport == T_UNIXGRAM &&
	    (bind_unixgram_client(fd, index) < 0 || fit_datagram(r, fd) < 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void retry_later(struct run *r, struct conn *c, uint64_t now, int err)
{
	r->last_connect_errno = err;
	close(c->fd);
	c->fd = -1;
	c->state = C_IDLE;
	c->retry_at = now + CONNECT_RETRY_NS;
}

/* Returns 1 when connected, 0 while in progress or waiting for a retry. */
static int start_connect(struct run *r, struct conn *c, uint64_t now)
{
	const struct address *a = &r->cfg.addr;
	struct epoll_event ev = { .events = EPOLLOUT };

	c->fd = new_socket(r, (size_t)(c - r->conns));
	if (c->fd < 0) {
		r->last_connect_errno = errno;
		c->retry_at = now + CONNECT_RETRY_NS;
		return 0;
	}
	if (connect(c->fd, (const struct sockaddr *)&a->sa, a->len) == 0) {
		c->state = C_READY;
		return 1;
	}
	/* A unix listener with a full backlog says EAGAIN, not EINPROGRESS. */
	if (errno != EINPROGRESS) {
		retry_later(r, c, now, errno);
		return 0;
	}
	ev.data.u32 = (uint32_t)(c - r->conns);
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		retry_later(r, c, now, errno);
		return 0;
	}
	c->state = C_CONNECTING;
	return 0;
}

static int finish_connect(struct run *r, struct conn *c, uint64_t now)
{
	int err = 0;
	socklen_t len = sizeof err;

	if (c->state != C_CONNECTING)
		return 0;
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		retry_later(r, c, now, err);
		return 0;
	}
	c->state = C_READY;
	return 1;
}

static long start_due(struct run *r, uint64_t now)
{
	long done = 0;

	for (long i = 0; i < r->cfg.connections; i++) {
		struct conn *c = &r->conns[i];

		if (c->state == C_IDLE && now >= c->retry_at)
			done += start_connect(r, c, now);
	}
	return done;
}

static int connect_all(struct run *r)
{
	uint64_t give_up = now_ns() + CONNECT_GIVE_UP_NS;
	long missing = r->cfg.connections;
	struct epoll_event evs[256];

	for (;;) {
		uint64_t now = now_ns();
		int n;

		missing -= start_due(r, now);
		if (missing == 0)
			return 0;
		if (now >= give_up)
			break;
		n = epoll_wait(r->epfd, evs, 256, 5);
		for (int i = 0; i < n; i++)
			missing -= finish_connect(r, &r->conns[evs[i].data.u32],
						  now_ns());
	}
	fprintf(stderr, "loadgen: %ld of %ld connections not established "
			"within 5 s (last error: %s)\n", missing,
		r->cfg.connections, r->last_connect_errno ?
		strerror(r->last_connect_errno) : "none");
	return -1;
}

/* ------------------------------------------------------------------ */
/* Main loop.                                                            */

static int arm(struct run *r)
{
	for (long i = 0; i < r->cfg.connections; i++) {
		struct conn *c = &r->conns[i];
		struct epoll_event ev = { .events = EPOLLIN };

		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
			perror("loadgen: epoll_ctl");
			return -1;
		}
		c->events = EPOLLIN;
	}
	return 0;
}

static void kick_off(struct run *r, uint64_t now)
{
	for (long i = 0; i < r->cfg.connections; i++) {
		if (r->stream)
			start_stream(r, &r->conns[i], now);
		else
			send_or_queue(r, &r->conns[i], now);
	}
}

static int ms_until(uint64_t now, uint64_t when)
{
	uint64_t ms;

	if (when <= now)
		return 0;
	/* Rounded up: waking early would just spin until the deadline. */
	ms = (when - now + NS_PER_MS - 1) / NS_PER_MS;
	return ms > 60000 ? 60000 : (int)ms;
}

static uint64_t next_wake(const struct run *r, uint64_t next_scan)
{
	uint64_t wake = r->win_end;

	if (!r->measuring && r->win_start < wake)
		wake = r->win_start;
	if (!r->stream && next_scan < wake)
		wake = next_scan;
	return wake;
}

static void dispatch(struct run *r, const struct epoll_event *ev)
{
	struct conn *c = &r->conns[ev->data.u32];

	if (c->state != C_READY)
		return;
	if (r->stream)
		on_stream_event(r, c, ev->events);
	else
		on_dgram_event(r, c, ev->events);
}

static void begin_measuring(struct run *r, uint64_t now)
{
	r->measuring = true;
	r->wall_start = now;
	getrusage(RUSAGE_SELF, &r->ru_start);
}

static void run_loop(struct run *r, uint64_t start)
{
	struct epoll_event evs[256];
	uint64_t now = start, next_scan = start + r->scan_ns;

	while (now < r->win_end) {
		int n = epoll_wait(r->epfd, evs, 256,
				   ms_until(now, next_wake(r, next_scan)));

		for (int i = 0; i < n; i++)
			dispatch(r, &evs[i]);
		now = now_ns();
		if (!r->measuring && now >= r->win_start)
			begin_measuring(r, now);
		if (r->blocked_count > 0)
			retry_blocked(r, now);
		if (!r->stream && now >= next_scan) {
			scan_timeouts(r, now);
			next_scan = now + r->scan_ns;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Report.                                                               */

static double tv_seconds(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double cpu_percent(const struct run *r, uint64_t now)
{
	struct rusage ru;
	double cpu, wall = (double)(now - r->wall_start) / 1e9;

	if (!r->measuring || wall <= 0 || getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	cpu = tv_seconds(ru.ru_utime) - tv_seconds(r->ru_start.ru_utime) +
	      tv_seconds(ru.ru_stime) - tv_seconds(r->ru_start.ru_stime);
	return 100.0 * cpu / wall;
}

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void print_report(const struct run *r, double cpu_pct)
{
	const struct config *cfg = &r->cfg;
	const struct histogram *h = &r->hist;
	char addr[256];
	double rate = (double)r->requests / cfg->duration;

	format_address(&cfg->addr, addr, sizeof addr);
	printf("{\"loadgen\":\"c\",\"address\":");
	print_json_string(addr);
	printf(",\"transport\":\"%s\",\"connections\":%ld,\"size\":%ld,"
	       "\"pipeline\":%ld,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
	       "\"requests\":%llu,\"requests_per_s\":%.1f,\"mib_per_s\":%.3f,",
	       scheme_name(cfg->addr.transport), cfg->connections, cfg->size,
	       cfg->pipeline, cfg->duration, cfg->warmup, r->requests, rate,
	       rate * (double)cfg->size / 1048576.0);
	printf("\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
	       "\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,",
	       hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.90),
	       hist_quantile_us(h, 0.99), hist_quantile_us(h, 0.999),
	       (double)h->max_ns / 1e3,
	       h->total ? (double)h->sum_ns / (double)h->total / 1e3 : 0.0);
	printf("\"errors\":%llu,\"losses\":%llu,\"sent\":%llu,"
	       "\"cpu_pct\":%.1f}\n", r->errors, r->losses, r->sent, cpu_pct);
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Arguments.                                                            */

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen --address ADDR [--connections N] [--size S]\n"
		"               [--duration D] [--warmup W] [--pipeline K]\n"
		"               [--timeout-ms T]\n"
		"  ADDR: tcp://127.0.0.1:PORT | tcp://[::1]:PORT | udp://...|\n"
		"        unix:///path | unix:@name | unixgram:///path | "
		"unixgram:@name\n");
}

static bool parse_long(const char *name, const char *s, long lo, long hi,
		       long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi) {
		complain("invalid --%s '%s' (expected %ld..%ld)\n",
			 name, s, lo, hi);
		return false;
	}
	*out = v;
	return true;
}

static bool parse_secs(const char *name, const char *s, bool zero_ok,
		       double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(v) || v < 0 || v > 86400 ||
	    (v == 0 && !zero_ok)) {
		complain("invalid --%s '%s'\n", name, s);
		return false;
	}
	*out = v;
	return true;
}

static bool parse_option(struct config *cfg, int opt, const char *arg,
			 const char **address)
{
	switch (opt) {
	case 'a':
		*address = arg;
		return true;
	case 'c':
		return parse_long("connections", arg, 1, MAX_CONNECTIONS,
				  &cfg->connections);
	case 's':
		return parse_long("size", arg, 1, MAX_STREAM_SIZE, &cfg->size);
	case 'd':
		return parse_secs("duration", arg, false, &cfg->duration);
	case 'w':
		return parse_secs("warmup", arg, true, &cfg->warmup);
	case 'p':
		return parse_long("pipeline", arg, 0, MAX_PIPELINE,
				  &cfg->pipeline);
	case 't':
		return parse_long("timeout-ms", arg, 1, 60000,
				  &cfg->timeout_ms);
	}
	return false;
}

static bool check_combination(const struct config *cfg)
{
	enum transport t = cfg->addr.transport;

	if (cfg->pipeline > 0 && !is_stream(t)) {
		complain("--pipeline needs a stream transport (tcp or "
			 "unix); datagrams are always ping-pong\n");
		return false;
	}
	if ((t == T_UDP && cfg->size > MAX_UDP_SIZE) ||
	    (t == T_UNIXGRAM && cfg->size > MAX_UNIXGRAM_SIZE)) {
		complain("--size %ld is too big for one %s datagram "
			 "(max %d)\n", cfg->size, scheme_name(t),
			 t == T_UDP ? MAX_UDP_SIZE : MAX_UNIXGRAM_SIZE);
		return false;
	}
	return true;
}

/* Returns 0 to run, 1 after --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct config *cfg)
{
	static const struct option options[] = {
		{ "address", required_argument, NULL, 'a' },
		{ "connections", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "pipeline", required_argument, NULL, 'p' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *address = NULL;
	int opt;

	*cfg = (struct config){ .connections = 10, .size = 1024,
				.duration = 5, .warmup = 1, .pipeline = 0,
				.timeout_ms = 1000 };
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'h')
			return 1;
		if (opt == '?' || !parse_option(cfg, opt, optarg, &address))
			return -1;
	}
	if (optind < argc || !address) {
		if (optind < argc)
			complain("unexpected argument '%s'\n", argv[optind]);
		else
			complain("missing --address\n");
		return -1;
	}
	if (parse_address(address, false, &cfg->addr) < 0)
		return -1;
	return check_combination(cfg) ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Setup.                                                                */

/* Several whole frames back to back, so that a connection can write many
 * pipelined frames with one send() whatever its position in the stream. */
static int make_pattern(struct run *r)
{
	size_t frames = 1;

	if (r->stream)
		frames = (PATTERN_MIN + r->frame_len - 1) / r->frame_len;

	r->pattern_len = frames * r->frame_len;
	r->pattern = malloc(r->pattern_len);
	if (!r->pattern)
		return -1;
	for (size_t f = 0; f < frames; f++) {
		unsigned char *p = r->pattern + f * r->frame_len;
		size_t body = r->frame_len;

		if (r->framed) {
			uint32_t n = (uint32_t)r->cfg.size;

			for (int b = 0; b < 4; b++)
				*p++ = (unsigned char)(n >> (24 - 8 * b));
			body -= 4;
		}
		for (size_t i = 0; i < body; i++)
			p[i] = (unsigned char)('a' + i % 26);
	}
	return 0;
}

static int make_conns(struct run *r)
{
	r->conns = calloc((size_t)r->cfg.connections, sizeof *r->conns);
	r->blocked = calloc((size_t)r->cfg.connections, sizeof *r->blocked);
	if (!r->conns || !r->blocked)
		return -1;
	for (long i = 0; i < r->cfg.connections; i++) {
		r->conns[i].fd = -1;
		r->conns[i].stamps = calloc(r->depth, sizeof(uint64_t));
		if (!r->conns[i].stamps)
			return -1;
	}
	return 0;
}

static int ensure_fd_limit(long connections)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)connections + 32;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return 0;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= need)
		return 0;
	fprintf(stderr, "loadgen: RLIMIT_NOFILE too low for %ld connections\n",
		connections);
	return -1;
}

static int prepare(struct run *r)
{
	const struct config *cfg = &r->cfg;

	r->stream = is_stream(cfg->addr.transport);
	r->framed = cfg->pipeline > 0;
	r->depth = r->framed ? (unsigned)cfg->pipeline : 1;
	r->frame_len = (size_t)cfg->size + (r->framed ? 4 : 0);
	r->seq_len = r->stream ? 0 : (cfg->size < 8 ? (size_t)cfg->size : 8);
	r->timeout_ns = (uint64_t)cfg->timeout_ms * NS_PER_MS;
	/* Timeouts are found by scanning; a tenth of the timeout (1..10 ms)
	 * keeps the scan cheap and the loss detection prompt. */
	r->scan_ns = r->timeout_ns / 10;
	if (r->scan_ns < NS_PER_MS)
		r->scan_ns = NS_PER_MS;
	if (r->scan_ns > 10 * NS_PER_MS)
		r->scan_ns = 10 * NS_PER_MS;
	if (make_pattern(r) < 0 || make_conns(r) < 0 ||
	    (r->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		perror("loadgen: setup");
		return -1;
	}
	return ensure_fd_limit(cfg->connections);
}

static uint64_t seconds_to_ns(double s)
{
	return (uint64_t)(s * 1e9 + 0.5);
}

int main(int argc, char **argv)
{
	static struct run r;
	uint64_t start;
	int rc = parse_args(argc, argv, &r.cfg);

	if (rc != 0) {
		usage();
		return rc > 0 ? 0 : EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if (prepare(&r) < 0 || connect_all(&r) < 0 || arm(&r) < 0)
		return EXIT_SETUP;
	start = now_ns();
	r.win_start = start + seconds_to_ns(r.cfg.warmup);
	r.win_end = r.win_start + seconds_to_ns(r.cfg.duration);
	if (start >= r.win_start)
		begin_measuring(&r, start);
	kick_off(&r, start);
	run_loop(&r, start);
	print_report(&r, cpu_percent(&r, now_ns()));
	if (r.late)
		fprintf(stderr, "loadgen: %llu late datagram replies ignored\n",
			r.late);
	return 0;
}
