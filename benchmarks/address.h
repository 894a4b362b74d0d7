/*
 * address.h - the address syntax of the aiosock benchmark programs: parsing
 * tcp://, udp://, unix: and unixgram: addresses (loopback only) and printing
 * them back.  Both echo.c and loadgen.c include it, so the server and the
 * load generator can never disagree on what an address means.
 *
 * Everything here is static: each program compiles its own copy and there
 * is nothing to link.  Both programs use every function, which matters:
 * an unused one fails the -Wall -Werror build (-Wunused-function).  The
 * includer defines _GNU_SOURCE before its first #include, which complain()
 * needs for program_invocation_short_name.
 */
#ifndef AIOSOCK_BENCH_ADDRESS_H
#define AIOSOCK_BENCH_ADDRESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Argument errors name the program, like every other diagnostic. */
static void __attribute__((format(printf, 1, 2))) complain(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

enum transport { T_TCP, T_UDP, T_UNIX, T_UNIXGRAM };

struct address {
	enum transport transport;
	struct sockaddr_storage sa;
	socklen_t len;
	bool has_path; /* a filesystem unix socket, as opposed to abstract */
};

static const char *scheme_name(enum transport t)
{
	static const char *const names[] = { "tcp", "udp", "unix", "unixgram" };
	return names[t];
}

static bool is_stream(enum transport t)
{
	return t == T_TCP || t == T_UNIX;
}

static bool is_inet(enum transport t)
{
	return t == T_TCP || t == T_UDP;
}

static int parse_port(const char *s, bool allow_zero, in_port_t *out)
{
	char *end = NULL;
	unsigned long v = 0;

	/* strtoul alone would accept signs, spaces and an empty string. */
	if (*s >= '0' && *s <= '9') {
		errno = 0;
		v = strtoul(s, &end, 10);
	}
	if (!end || errno || *end || v > 65535 || (v == 0 && !allow_zero)) {
		complain("invalid port '%s'\n", s);
		return -1;
	}
	*out = htons((in_port_t)v);
	return 0;
}

static int refuse_non_loopback(const char *host)
{
	complain("refusing non-loopback address '%s': only 127.0.0.0/8 "
		 "and ::1 are allowed\n", host);
	return -1;
}

static int parse_ipv6(const char *rest, bool allow_zero, struct address *a)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
	const char *close = strchr(rest, ']');
	char host[INET6_ADDRSTRLEN + 1];
	size_t n;

	if (!close || close[1] != ':' ||
	    (n = (size_t)(close - rest - 1)) >= sizeof host) {
		complain("malformed IPv6 address '%s'\n", rest);
		return -1;
	}
	memcpy(host, rest + 1, n);
	host[n] = '\0';
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
		complain("'%s' is not an IPv6 literal\n", host);
		return -1;
	}
	if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
		return refuse_non_loopback(host);
	s6->sin6_family = AF_INET6;
	a->len = sizeof *s6;
	return parse_port(close + 2, allow_zero, &s6->sin6_port);
}

static int parse_ipv4(const char *rest, bool allow_zero, struct address *a)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
	const char *colon = strrchr(rest, ':');
	char host[INET_ADDRSTRLEN + 1];
	size_t n;

	if (!colon || (n = (size_t)(colon - rest)) >= sizeof host) {
		complain("expected HOST:PORT, got '%s'\n", rest);
		return -1;
	}
	memcpy(host, rest, n);
	host[n] = '\0';
	/* Names are not resolved: a resolver could hand back a routable IP. */
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
		complain("'%s' is not an IP literal (use 127.0.0.1 or "
			 "[::1]; names are not resolved)\n", host);
		return -1;
	}
	if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127)
		return refuse_non_loopback(host);
	s4->sin_family = AF_INET;
	a->len = sizeof *s4;
	return parse_port(colon + 1, allow_zero, &s4->sin_port);
}

static int parse_unix(const char *rest, struct address *a)
{
	struct sockaddr_un *su = (struct sockaddr_un *)&a->sa;
	bool abstract = rest[0] == '@';
	const char *name = abstract ? rest + 1 : rest + 2;
	size_t n = strlen(name);

	if (abstract ? n == 0 : strncmp(rest, "///", 3) != 0) {
		complain("unix addresses are unix:///absolute/path or "
			 "unix:@name, got '%s'\n", rest);
		return -1;
	}
	if (n + 1 > sizeof su->sun_path) {
		complain("unix socket name too long (max %zu bytes)\n",
			 sizeof su->sun_path - 1);
		return -1;
	}
	su->sun_family = AF_UNIX;
	/* An abstract name is exactly its bytes after a leading NUL, with no
	 * terminator counted, as Python spells it; a path keeps its NUL. */
	memcpy(su->sun_path + abstract, name, n);
	a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	a->has_path = !abstract;
	return 0;
}

static int parse_address(const char *text, bool allow_port0, struct address *a)
{
	static const struct {
		const char *prefix;
		enum transport t;
	} schemes[] = {
		{ "tcp://", T_TCP }, { "udp://", T_UDP },
		{ "unixgram:", T_UNIXGRAM }, { "unix:", T_UNIX },
	};

	memset(a, 0, sizeof *a);
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
		size_t n = strlen(schemes[i].prefix);
		const char *rest = text + n;

		if (strncmp(text, schemes[i].prefix, n) != 0)
			continue;
		a->transport = schemes[i].t;
		if (!is_inet(a->transport))
			return parse_unix(rest, a);
		return rest[0] == '[' ? parse_ipv6(rest, allow_port0, a)
				      : parse_ipv4(rest, allow_port0, a);
	}
	complain("unknown address scheme in '%s' (tcp://, udp://, "
		 "unix:, unixgram:)\n", text);
	return -1;
}

static void format_address(const struct address *a, char *buf, size_t size)
{
	const char *scheme = scheme_name(a->transport);
	const struct sockaddr_un *su = (const struct sockaddr_un *)&a->sa;
	char host[INET6_ADDRSTRLEN];

	if (a->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&a->sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
		snprintf(buf, size, "%s://[%s]:%u", scheme, host,
			 ntohs(s6->sin6_port));
	} else if (a->sa.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)&a->sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
		snprintf(buf, size, "%s://%s:%u", scheme, host,
			 ntohs(s4->sin_port));
	} else if (a->has_path) {
		snprintf(buf, size, "%s://%s", scheme, su->sun_path);
	} else {
		snprintf(buf, size, "%s:@%s", scheme, su->sun_path + 1);
	}
}

#endif /* AIOSOCK_BENCH_ADDRESS_H */
