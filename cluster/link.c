/*
 * The transport of one connection to Redis (cluster_int.h): a
 * non-blocking socket driven by its owner's poll loop; bytes read go
 * into a redisReader, bytes sent come from an output buffer.
 */
#include "cluster_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_MAX (1u << 20)       /* unparsed reply bytes: more is nonsense here */

static int fail(struct clu_link *l, char *why, size_t n, const char *what)
{
	snprintf(why, n, "%s: %s", l->peer, what);
	clu_link_close(l);
	return -1;
}

void clu_link_init(struct clu_link *l)
{
	memset(l, 0, sizeof *l);
	l->fd = -1;
	vl_buf_init(&l->out);
}

int clu_link_open(struct clu_link *l, const char *host, unsigned port, char *why, size_t n)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char ps[16];

	clu_link_close(l);
	snprintf(l->peer, sizeof l->peer, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	snprintf(ps, sizeof ps, "%u", port);
	int e = getaddrinfo(host, ps, &hints, &ai);
	if (e)
		return fail(l, why, n, gai_strerror(e));
	l->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0 || (connect(l->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)) {
		freeaddrinfo(ai);
		return fail(l, why, n, strerror(errno));
	}
	freeaddrinfo(ai);
	int one = 1;
	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (!(l->rd = redisReaderCreate()))
		vl_oom(0);
	l->state = CLU_LINK_CONNECTING;
	l->opened_ms = vl_now_ms();
	return 0;
}

short clu_link_events(const struct clu_link *l)
{
	switch (l->state) {
	case CLU_LINK_CONNECTING:
		return POLLOUT;
	case CLU_LINK_UP:
		return (short)(POLLIN | (l->out.len ? POLLOUT : 0));
	default:
		return 0;
	}
}

/* The connect's outcome, once the socket is writable. */
static int connected(struct clu_link *l, char *why, size_t n)
{
	int e = 0;
	socklen_t len = sizeof e;

	if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e)
		return fail(l, why, n, strerror(e));
	l->state = CLU_LINK_UP;
	return 1;
}

/* Everything the socket has, into the reader. */
static int drain(struct clu_link *l, char *why, size_t n)
{
	char buf[16384];
	bool fed = false;

	for (;;) {
		ssize_t got = read(l->fd, buf, sizeof buf);
		if (got == 0)   /* replies first; poll reports the end again */
			return fed ? 0 : fail(l, why, n, "Redis closed the connection");
		if (got < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : fail(l, why, n, strerror(errno));
		if (redisReaderFeed(l->rd, buf, (size_t)got) != REDIS_OK)
			return fail(l, why, n, "a reply that does not parse");
		if (l->rd->len - l->rd->pos > READ_MAX)
			return fail(l, why, n, "a reply larger than 1 MB");
		fed = true;
	}
}

int clu_link_flush(struct clu_link *l, char *why, size_t n)
{
	if (l->state != CLU_LINK_UP)
		return 0;
	while (l->out.len) {
		ssize_t put = write(l->fd, l->out.p, l->out.len);
		if (put < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : fail(l, why, n, strerror(errno));
		vl_buf_consume(&l->out, (size_t)put);
	}
	return 0;
}

int clu_link_io(struct clu_link *l, short revents, char *why, size_t n)
{
	if (l->state == CLU_LINK_CONNECTING) {
		if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
			return 0;
		return connected(l, why, n);
	}
	if (l->state != CLU_LINK_UP)
		return 0;
	if ((revents & POLLOUT) && clu_link_flush(l, why, n) < 0)
		return -1;
	if ((revents & (POLLIN | POLLERR | POLLHUP)) && drain(l, why, n) < 0)
		return -1;
	return 0;
}

void clu_link_close(struct clu_link *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (l->rd)
		redisReaderFree(l->rd);
	l->rd = NULL;
	vl_buf_reset(&l->out);
	l->state = CLU_LINK_CLOSED;
}

void clu_link_free(struct clu_link *l)
{
	clu_link_close(l);
	vl_buf_free(&l->out);
}
