/* cluster/link.c: a link over TLS to a TLS server of the test's own on a
 * loopback socket, both non-blocking in one poll loop: the handshake, the
 * certificate's name, 8 MB written while the server reads 16 KB at a time
 * (writes that wait), a reply of 600 KB read in pieces, a reply past the
 * 1 MB bound; and plain TCP, a command and its reply, a refused connect. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../cluster/cluster_int.h"
#include "../../tls/tls.h"

#define OUT_BYTES (8u << 20)

struct srv {
	SSL_CTX *ctx;
	SSL *ssl;
	int lfd, fd;
	unsigned port;
	char ca[64];                 /* its certificate, the client's CA file */
	size_t got;                  /* bytes read from the client */
	bool bad;                    /* what it read was not what was sent */
	struct vl_buf out;           /* to send */
};

static void srv_start(struct srv *s)
{
	char err[256];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;

	memset(s, 0, sizeof *s);
	s->fd = -1;
	vl_buf_init(&s->out);
	s->ctx = tls_server_ctx_new(NULL, NULL, "redis.test", err, sizeof err);
	cr_assert_not_null(s->ctx, "%s", err);
	snprintf(s->ca, sizeof s->ca, "/tmp/volley-unit-link-XXXXXX");
	int fd = mkstemp(s->ca);
	FILE *f = fdopen(fd, "w");
	cr_assert(PEM_write_X509(f, SSL_CTX_get0_certificate(s->ctx)));
	fclose(f);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	cr_assert(bind(s->lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(s->lfd, 4) == 0);
	getsockname(s->lfd, (struct sockaddr *)&a, &al);
	s->port = ntohs(a.sin_port);
}

static void srv_stop(struct srv *s)
{
	SSL_free(s->ssl);
	if (s->fd >= 0)
		close(s->fd);
	close(s->lfd);
	tls_ctx_free(s->ctx);
	vl_buf_free(&s->out);
	unlink(s->ca);
}

/* The server's turn: accept, handshake, read at most 16 KB (checking the
 * client's pattern), send what out holds. */
static void srv_step(struct srv *s)
{
	char buf[16384];

	if (s->fd < 0) {
		if ((s->fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK)) < 0)
			return;
		s->ssl = SSL_new(s->ctx);
		SSL_set_fd(s->ssl, s->fd);
		SSL_set_accept_state(s->ssl);
	}
	int n = SSL_read(s->ssl, buf, sizeof buf);
	for (int i = 0; i < n; i++)
		if (buf[i] != (char)('a' + (s->got + (size_t)i) % 26))
			s->bad = true;
	if (n > 0)
		s->got += (size_t)n;
	ERR_clear_error();
	if (s->out.len && SSL_is_init_finished(s->ssl)) {
		n = SSL_write(s->ssl, s->out.p, (int)(s->out.len > 16384 ? 16384 : s->out.len));
		if (n > 0)
			vl_buf_consume(&s->out, (size_t)n);
	}
	ERR_clear_error();
}

/* Drive both until done() or the link fails (bounded: 20 s). The
 * link's result: 0 going, -1 failed (why). *waits: flushes that left
 * bytes in out (the socket full). */
static int run(struct clu_link *l, struct srv *s, bool (*done)(struct clu_link *, struct srv *),
	       char *why, size_t n, unsigned *waits)
{
	uint64_t end = vl_now_ms() + 20000;

	while (vl_now_ms() < end && !done(l, s)) {
		struct pollfd p = { .fd = l->fd, .events = clu_link_events(l) };
		poll(&p, 1, 1);
		srv_step(s);
		if (clu_link_io(l, p.revents, why, n) < 0 || clu_link_flush(l, why, n) < 0)
			return -1;
		if (waits && l->out.len)
			(*waits)++;
	}
	cr_assert(done(l, s), "done in time");
	return 0;
}

static bool is_up(struct clu_link *l, struct srv *s)
{
	(void)s;
	return l->state == CLU_LINK_UP;
}

static bool all_sent(struct clu_link *l, struct srv *s)
{
	return !l->out.len && s->got == OUT_BYTES;
}

static bool reply_in(struct clu_link *l, struct srv *s)
{
	return l->rd && !s->out.len && l->rd->len - l->rd->pos >= 9 + 600000 + 2;
}

static void start(struct clu_link *l, struct clu_tls *t, struct srv *s, const char *name)
{
	char err[300];
	struct clu_tls_opts o = { .on = true, .ca_file = s->ca, .server_name = name };

	cr_assert_eq(clu_tls_init(t, &o, "127.0.0.1", err, sizeof err), 0, "%s", err);
	clu_link_init(l, t);
	cr_assert_eq(clu_link_open(l, "127.0.0.1", s->port, err, sizeof err), 0, "%s", err);
}

Test(cluster_link, tls_both_ways_in_pieces)
{
	struct srv s;
	struct clu_link l;
	struct clu_tls t;
	char why[400] = "";

	srv_start(&s);
	start(&l, &t, &s, "redis.test");
	cr_assert_eq(run(&l, &s, is_up, why, sizeof why, NULL), 0, "%s", why);
	cr_assert_not_null(l.ssl);
	for (size_t i = 0; i < OUT_BYTES; i++) {
		char c = (char)('a' + i % 26);
		vl_buf_append(&l.out, &c, 1);
	}
	unsigned waits = 0;
	cr_assert_eq(run(&l, &s, all_sent, why, sizeof why, &waits), 0, "%s", why);
	cr_assert_gt(waits, 0, "some writes waited for the socket");
	cr_assert_not(s.bad, "the server read what was written, in order");
	/* a bulk string of 600,000 bytes, sent 16 KB at a time */
	vl_buf_printf(&s.out, "$600000\r\n");
	for (size_t i = 0; i < 600000; i++)
		vl_buf_append(&s.out, "x", 1);
	vl_buf_append(&s.out, "\r\n", 2);
	cr_assert_eq(run(&l, &s, reply_in, why, sizeof why, NULL), 0, "%s", why);
	void *rep = NULL;
	cr_assert_eq(redisReaderGetReply(l.rd, &rep), REDIS_OK);
	cr_assert_not_null(rep);
	cr_assert_eq(((redisReply *)rep)->type, REDIS_REPLY_STRING);
	cr_assert_eq(((redisReply *)rep)->len, 600000);
	freeReplyObject(rep);
	clu_link_free(&l);
	clu_tls_free(&t);
	srv_stop(&s);
}

static bool never(struct clu_link *l, struct srv *s)
{
	(void)s;
	return l->state == CLU_LINK_CLOSED;
}

Test(cluster_link, wrong_name_fails_verification)
{
	struct srv s;
	struct clu_link l;
	struct clu_tls t;
	char why[400] = "";

	srv_start(&s);
	start(&l, &t, &s, "other.test");
	cr_assert_eq(run(&l, &s, never, why, sizeof why, NULL), -1);
	cr_assert_not_null(strstr(why, "certificate verify failed: hostname mismatch (name "
				  "other.test)"), "%s", why);
	cr_assert_eq(l.state, CLU_LINK_CLOSED);
	cr_assert_eq(l.fd, -1);
	clu_link_free(&l);
	clu_tls_free(&t);
	srv_stop(&s);
}

Test(cluster_link, reply_past_the_bound_fails)
{
	struct srv s;
	struct clu_link l;
	struct clu_tls t;
	char why[400] = "";

	srv_start(&s);
	start(&l, &t, &s, "redis.test");
	vl_buf_printf(&s.out, "$2000000\r\n");
	for (size_t i = 0; i < 2000000; i++)
		vl_buf_append(&s.out, "y", 1);
	uint64_t end = vl_now_ms() + 20000;
	int rc = 0;
	while (rc >= 0 && vl_now_ms() < end) {
		struct pollfd p = { .fd = l.fd, .events = clu_link_events(&l) };
		poll(&p, 1, 1);
		srv_step(&s);
		rc = clu_link_io(&l, p.revents, why, sizeof why);
	}
	cr_assert_eq(rc, -1);
	cr_assert_not_null(strstr(why, "a reply larger than 1 MB"), "%s", why);
	clu_link_free(&l);
	clu_tls_free(&t);
	srv_stop(&s);
}

/* Plain TCP: a command out, a reply in; then a port nobody listens on. */
Test(cluster_link, plain_tcp)
{
	struct srv s;
	struct clu_link l;
	char why[400] = "", buf[64];

	srv_start(&s);
	clu_link_init(&l, NULL);
	cr_assert_eq(clu_link_open(&l, "127.0.0.1", s.port, why, sizeof why), 0, "%s", why);
	vl_buf_appends(&l.out, "*1\r\n$4\r\nPING\r\n");
	int fd = -1;
	void *rep = NULL;
	size_t got = 0;
	for (uint64_t end = vl_now_ms() + 10000; !rep && vl_now_ms() < end;) {
		struct pollfd p = { .fd = l.fd, .events = clu_link_events(&l) };
		poll(&p, 1, 1);
		cr_assert_geq(clu_link_io(&l, p.revents, why, sizeof why), 0, "%s", why);
		cr_assert_eq(clu_link_flush(&l, why, sizeof why), 0, "%s", why);
		if (fd < 0)
			fd = accept(s.lfd, NULL, NULL);
		if (fd >= 0 && got < 14) {
			ssize_t r = recv(fd, buf + got, sizeof buf - got, MSG_DONTWAIT);
			got += r > 0 ? (size_t)r : 0;
			if (got == 14)
				cr_assert_eq(write(fd, "+PONG\r\n", 7), 7);
		}
		cr_assert_eq(redisReaderGetReply(l.rd, &rep), REDIS_OK);
	}
	cr_assert_not_null(rep, "a reply");
	cr_assert_eq(memcmp(buf, "*1\r\n$4\r\nPING\r\n", 14), 0);
	cr_assert_eq(((redisReply *)rep)->type, REDIS_REPLY_STATUS);
	cr_assert_str_eq(((redisReply *)rep)->str, "PONG");
	freeReplyObject(rep);
	close(fd);
	unsigned port = s.port;
	srv_stop(&s);                /* nobody listens there now */
	int rc = clu_link_open(&l, "127.0.0.1", port, why, sizeof why);
	for (uint64_t end = vl_now_ms() + 5000; rc == 0 && vl_now_ms() < end;) {
		struct pollfd p = { .fd = l.fd, .events = clu_link_events(&l) };
		poll(&p, 1, 1);
		rc = clu_link_io(&l, p.revents, why, sizeof why);
	}
	cr_assert_eq(rc, -1);
	char want[64];
	snprintf(want, sizeof want, "127.0.0.1:%u: Connection refused", port);
	cr_assert_str_eq(why, want);
	clu_link_free(&l);
}
