/*
 * echo.c - reference echo server for the aiosock benchmarks: the figure the
 * Python servers are compared against, i.e. what this machine can do when the
 * server costs (almost) nothing.
 *
 * Usage:
 *   echo ADDRESS [--max-seconds N]
 *
 *   ADDRESS  tcp://127.0.0.1:PORT   tcp://[::1]:PORT
 *            udp://127.0.0.1:PORT   udp://[::1]:PORT
 *            unix:///abs/path.sock  unix:@abstract-name
 *            unixgram:///abs/path   unixgram:@abstract-name
 *            Only loopback IPs are accepted (127.0.0.0/8 and ::1, literals
 *            only, no name resolution). PORT 0 lets the kernel choose.
 *   --max-seconds N   stop by itself after N seconds (default 3600, float).
 *
 * Behaviour: one thread, non-blocking sockets, level-triggered epoll.
 *   Streams echo every byte back; a connection with unsent output is not
 *   read until that output is flushed, so memory stays bounded (at most one
 *   256 KiB read per connection).  Datagrams are sent back to their sender;
 *   a reply the kernel cannot take right now (EAGAIN) is dropped and counted.
 *
 * Output contract:
 *   stdout  exactly one line, "READY <address>", flushed as soon as the socket
 *           is bound (and listening), carrying the real port, for example
 *           "READY tcp://127.0.0.1:45123".  Nothing else is ever written there.
 *   stderr  diagnostics, and one summary line when the server stops.
 *   exit    0 after SIGTERM, SIGINT or --max-seconds; 1 on a setup failure
 *           (bind, listen, ...); 2 on bad arguments or a non-loopback address.
 *   A unix socket file created by the server is removed when it stops.
 *
 * Build: cc -O2 -std=gnu11 -Wall -Wextra -Werror -o echo echo.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
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
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "address.h"

enum { EXIT_SETUP = 1, EXIT_USAGE = 2 };

#define IO_BUF_SIZE (256 * 1024)
#define LISTEN_BACKLOG 1024
/* Bounds one readiness of the datagram socket so a flood cannot starve
 * SIGTERM and the timer; level-triggered epoll brings us straight back. */
#define DGRAM_BATCH 4096
#define SOCKET_BUFFER_WISH (4 * 1024 * 1024)

/* ------------------------------------------------------------------ */
/* Server state.                                                        */

/* Every epoll registration points at a struct starting with this, so one
 * pointer in epoll_event says both what woke us and which object it is. */
enum kind { H_LISTENER, H_DGRAM, H_CONN, H_SIGNAL, H_TIMER };

struct handle {
	enum kind kind;
	int fd;
};

struct conn {
	struct handle h;
	unsigned char *pending; /* echo bytes the kernel has not taken yet */
	size_t pending_len, pending_off;
};

struct server {
	struct address addr;
	int epfd;
	struct handle sock, sig, timer;
	struct stat bound; /* identity of the socket file we created */
	const char *stop_reason;
	unsigned long long accepted, open_conns, datagrams, dropped;
	unsigned long long send_errors, recv_errors, unaddressable;
};

static unsigned char io_buf[IO_BUF_SIZE];

static int watch(struct server *s, int op, struct handle *h, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = h };

	return epoll_ctl(s->epfd, op, h->fd, &ev);
}

/* ------------------------------------------------------------------ */
/* Streams.                                                             */

static void close_conn(struct server *s, struct conn *c)
{
	close(c->h.fd); /* also drops it from the epoll set */
	free(c->pending);
	free(c);
	s->open_conns--;
}

static void keep_pending(struct server *s, struct conn *c, size_t from,
			 size_t len)
{
	c->pending = malloc(len);
	if (!c->pending) {
		close_conn(s, c);
		return;
	}
	memcpy(c->pending, io_buf + from, len);
	c->pending_len = len;
	c->pending_off = 0;
	/* Not reading while output is stuck is what bounds memory. */
	if (watch(s, EPOLL_CTL_MOD, &c->h, EPOLLOUT) < 0)
		close_conn(s, c);
}

static void echo_back(struct server *s, struct conn *c, size_t n)
{
	ssize_t w = send(c->h.fd, io_buf, n, MSG_NOSIGNAL);

	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			close_conn(s, c);
			return;
		}
		w = 0;
	}
	if ((size_t)w < n)
		keep_pending(s, c, (size_t)w, n - (size_t)w);
}

static void flush_pending(struct server *s, struct conn *c)
{
	while (c->pending_off < c->pending_len) {
		ssize_t w = send(c->h.fd, c->pending + c->pending_off,
				 c->pending_len - c->pending_off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0) {
			close_conn(s, c);
			return;
		}
		c->pending_off += (size_t)w;
	}
	free(c->pending);
	c->pending = NULL;
	if (watch(s, EPOLL_CTL_MOD, &c->h, EPOLLIN) < 0)
		close_conn(s, c);
}

static void on_conn(struct server *s, struct conn *c)
{
	ssize_t n;

	if (c->pending) {
		flush_pending(s, c);
		return;
	}
	/* One read per wake-up keeps connections fair; level-triggered epoll
	 * reports the socket again if more is waiting. */
	n = recv(c->h.fd, io_buf, sizeof io_buf, 0);
	if (n > 0)
		echo_back(s, c, (size_t)n);
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		close_conn(s, c);
}

static void add_conn(struct server *s, int fd)
{
	struct conn *c = calloc(1, sizeof *c);
	int one = 1;

	if (!c) {
		close(fd);
		return;
	}
	c->h.kind = H_CONN;
	c->h.fd = fd;
	/* Echoes are small and latency-bound: never let Nagle hold them. */
	if (s->addr.transport == T_TCP)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (watch(s, EPOLL_CTL_ADD, &c->h, EPOLLIN) < 0) {
		close(fd);
		free(c);
		return;
	}
	s->accepted++;
	s->open_conns++;
}

static void accept_all(struct server *s)
{
	static bool warned;

	for (;;) {
		int fd = accept4(s->sock.fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			add_conn(s, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && !warned) {
			warned = true;
			perror("echo: accept4");
		}
		return;
	}
}

/* ------------------------------------------------------------------ */
/* Datagrams.                                                           */

static void echo_datagram(struct server *s, size_t n,
			  const struct sockaddr_storage *from, socklen_t len)
{
	s->datagrams++;
	/* An unbound unix datagram client has no address to answer to. */
	if (len <= sizeof(sa_family_t)) {
		s->unaddressable++;
		return;
	}
	if (sendto(s->sock.fd, io_buf, n, MSG_NOSIGNAL,
		   (const struct sockaddr *)from, len) >= 0)
		return;
	if (errno == EAGAIN)
		s->dropped++;
	else
		s->send_errors++;
}

static void on_datagrams(struct server *s)
{
	for (int i = 0; i < DGRAM_BATCH; i++) {
		struct sockaddr_storage from;
		socklen_t len = sizeof from;
		ssize_t n = recvfrom(s->sock.fd, io_buf, sizeof io_buf, 0,
				     (struct sockaddr *)&from, &len);
		if (n >= 0) {
			echo_datagram(s, (size_t)n, &from, len);
			continue;
		}
		if (errno == EAGAIN)
			return;
		if (errno != EINTR) {
			/* e.g. a queued ICMP error: it is consumed by this
			 * call, so carrying on cannot loop forever. */
			s->recv_errors++;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Setup.                                                               */

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A socket file is stale when the kernel refuses connections to it; a live
 * one belongs to another server and must not be stolen.  Any other answer,
 * even EPROTOTYPE from a server of the other socket type, means live. */
static bool unix_path_is_live(const struct address *a)
{
	int type = is_stream(a->transport) ? SOCK_STREAM : SOCK_DGRAM;
	int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return true;
	live = connect(fd, (const struct sockaddr *)&a->sa, a->len) == 0 ||
	       (errno != ECONNREFUSED && errno != ENOENT);
	close(fd);
	return live;
}

static int clear_stale_path(const struct address *a)
{
	const char *path = ((const struct sockaddr_un *)&a->sa)->sun_path;
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : (perror(path), -1);
	if (!S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "echo: %s exists and is not a socket; "
				"not replacing it\n", path);
		return -1;
	}
	if (unix_path_is_live(a)) {
		fprintf(stderr, "echo: %s is in use by a running server\n",
			path);
		return -1;
	}
	return unlink(path) < 0 ? (perror(path), -1) : 0;
}

static void tune_socket(struct server *s, int fd)
{
	int one = 1, wish = SOCKET_BUFFER_WISH;

	if (s->addr.transport == T_TCP)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (is_stream(s->addr.transport))
		return;
	/* Room for bursts from many clients of up to 64 KiB datagrams; the
	 * kernel silently caps this at net.core.[rw]mem_max. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &wish, sizeof wish);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &wish, sizeof wish);
}

static int bind_and_listen(struct server *s, int fd)
{
	struct address *a = &s->addr;
	const char *path = ((struct sockaddr_un *)&a->sa)->sun_path;

	if (a->has_path && clear_stale_path(a) < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a->sa, a->len) < 0) {
		perror("echo: bind");
		return -1;
	}
	if (a->has_path && lstat(path, &s->bound) < 0)
		memset(&s->bound, 0, sizeof s->bound);
	if (is_stream(a->transport) && listen(fd, LISTEN_BACKLOG) < 0) {
		perror("echo: listen");
		return -1;
	}
	/* Port 0 means the real port is only known now. */
	if (is_inet(a->transport) &&
	    getsockname(fd, (struct sockaddr *)&a->sa, &a->len) < 0) {
		perror("echo: getsockname");
		return -1;
	}
	return 0;
}

static int open_socket(struct server *s)
{
	int stream = is_stream(s->addr.transport);
	int fd = socket(s->addr.sa.ss_family,
			(stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK |
				SOCK_CLOEXEC, 0);

	if (fd < 0) {
		perror("echo: socket");
		return -1;
	}
	tune_socket(s, fd);
	s->sock.kind = stream ? H_LISTENER : H_DGRAM;
	s->sock.fd = fd;
	if (bind_and_listen(s, fd) < 0)
		return -1;
	return watch(s, EPOLL_CTL_ADD, &s->sock, EPOLLIN);
}

/* Signals arrive through a descriptor so the loop never has to reason about
 * EINTR or async-signal safety. */
static int open_signal_fd(struct server *s)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	s->sig.kind = H_SIGNAL;
	s->sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return s->sig.fd < 0 ? -1 : 0;
}

static int open_timer(struct server *s, double seconds)
{
	struct itimerspec its = { 0 };
	time_t whole = (time_t)seconds;

	its.it_value.tv_sec = whole;
	its.it_value.tv_nsec = (long)((seconds - (double)whole) * 1e9);
	if (whole == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1; /* all zero would disarm the timer */
	s->timer.kind = H_TIMER;
	s->timer.fd = timerfd_create(CLOCK_MONOTONIC,
				     TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer.fd < 0 || timerfd_settime(s->timer.fd, 0, &its, NULL) < 0)
		return -1;
	return watch(s, EPOLL_CTL_ADD, &s->timer, EPOLLIN);
}

static int setup(struct server *s, double max_seconds)
{
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0 || open_signal_fd(s) < 0 ||
	    watch(s, EPOLL_CTL_ADD, &s->sig, EPOLLIN) < 0 ||
	    open_timer(s, max_seconds) < 0) {
		perror("echo: setup");
		return -1;
	}
	return open_socket(s);
}

/* ------------------------------------------------------------------ */
/* Main loop and shutdown.                                              */

static void on_signal(struct server *s)
{
	struct signalfd_siginfo si;

	if (read(s->sig.fd, &si, sizeof si) == (ssize_t)sizeof si)
		s->stop_reason = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
}

static void dispatch(struct server *s, struct handle *h)
{
	switch (h->kind) {
	case H_LISTENER:
		accept_all(s);
		break;
	case H_DGRAM:
		on_datagrams(s);
		break;
	case H_CONN:
		on_conn(s, (struct conn *)h);
		break;
	case H_SIGNAL:
		on_signal(s);
		break;
	case H_TIMER:
		s->stop_reason = "--max-seconds";
		break;
	}
}

static int serve(struct server *s)
{
	struct epoll_event evs[256];

	while (!s->stop_reason) {
		int n = epoll_wait(s->epfd, evs, 256, -1);

		if (n < 0 && errno != EINTR) {
			perror("echo: epoll_wait");
			return -1;
		}
		for (int i = 0; i < n; i++)
			dispatch(s, evs[i].data.ptr);
	}
	return 0;
}

/* Only remove the file if it is still the one we bound: another server may
 * have replaced it meanwhile. */
static void remove_own_path(const struct server *s)
{
	const char *path = ((const struct sockaddr_un *)&s->addr.sa)->sun_path;
	struct stat st;

	if (!s->addr.has_path || lstat(path, &st) < 0)
		return;
	if (st.st_ino == s->bound.st_ino && st.st_dev == s->bound.st_dev)
		unlink(path);
}

static void report(const struct server *s)
{
	fprintf(stderr, "echo: stopped by %s: connections=%llu (open %llu) "
			"datagrams=%llu dropped=%llu send_errors=%llu "
			"recv_errors=%llu unaddressable=%llu\n",
		s->stop_reason ? s->stop_reason : "error", s->accepted,
		s->open_conns, s->datagrams, s->dropped, s->send_errors,
		s->recv_errors, s->unaddressable);
}

/* ------------------------------------------------------------------ */
/* Arguments.                                                           */

static void usage(void)
{
	fprintf(stderr, "usage: echo ADDRESS [--max-seconds N]\n"
			"  ADDRESS: tcp://127.0.0.1:PORT | tcp://[::1]:PORT | "
			"udp://... | unix:///path | unix:@name |\n"
			"           unixgram:///path | unixgram:@name\n");
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(v) || v <= 0 || v > 1e7) {
		complain("invalid --max-seconds '%s'\n", s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct server *s, double *max_s)
{
	const char *address = NULL;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (strcmp(arg, "--max-seconds") == 0 && i + 1 < argc) {
			if (parse_seconds(argv[++i], max_s) < 0)
				return -1;
		} else if (strncmp(arg, "--max-seconds=", 14) == 0) {
			if (parse_seconds(arg + 14, max_s) < 0)
				return -1;
		} else if (arg[0] == '-' || address) {
			complain("unexpected argument '%s'\n", arg);
			return -1;
		} else {
			address = arg;
		}
	}
	if (!address) {
		complain("missing ADDRESS\n");
		return -1;
	}
	return parse_address(address, true, &s->addr);
}

int main(int argc, char **argv)
{
	static struct server s;
	double max_seconds = 3600;
	char text[256];
	int rc;

	if (parse_args(argc, argv, &s, &max_seconds) < 0) {
		usage();
		return EXIT_USAGE;
	}
	if (setup(&s, max_seconds) < 0) {
		remove_own_path(&s);
		return EXIT_SETUP;
	}
	format_address(&s.addr, text, sizeof text);
	printf("READY %s\n", text);
	fflush(stdout);
	rc = serve(&s);
	remove_own_path(&s);
	report(&s);
	return rc < 0 ? EXIT_SETUP : 0;
}
