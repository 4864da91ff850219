/*
 * The transport of one connection to Redis (cluster_int.h): a
 * non-blocking socket driven by its owner's poll loop, TLS over it when
 * configured (OpenSSL on the socket itself: SSL_connect, SSL_read and
 * SSL_write retried on WANT_READ / WANT_WRITE as poll allows); bytes
 * read go into a redisReader, bytes sent come from an output buffer.
 */
#include "cluster_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_MAX (1u << 20)       /* unparsed reply bytes: more is nonsense here */

/* ---- the TLS context ---- */

/* OpenSSL's reason for the last error, without its codes. */
static const char *ossl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "unknown TLS error";
}

static int ctx_fail(struct clu_tls *t, char *err, size_t n, const char *key, const char *file)
{
	snprintf(err, n, "cluster.%s: %s: %s", key, file, ossl_reason());
	clu_tls_free(t);
	return -1;
}

static int ctx_files(struct clu_tls *t, const struct clu_tls_opts *o, char *err, size_t n)
{
	bool ca = o->ca_file && *o->ca_file;

	if ((ca ? SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) :
	     SSL_CTX_set_default_verify_paths(t->ctx)) != 1)
		return ctx_fail(t, err, n, "tls_ca_file", ca ? o->ca_file : "(the system's CAs)");
	if (!o->cert || !*o->cert)
		return 0;
	if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert) != 1)
		return ctx_fail(t, err, n, "tls_cert", o->cert);
	if (!o->key || !*o->key || SSL_CTX_use_PrivateKey_file(t->ctx, o->key, SSL_FILETYPE_PEM) != 1)
		return ctx_fail(t, err, n, "tls_key", o->key ? o->key : "");
	if (SSL_CTX_check_private_key(t->ctx) != 1)
		return ctx_fail(t, err, n, "tls_key", o->key);
	return 0;
}

int clu_tls_init(struct clu_tls *t, const struct clu_tls_opts *o, const char *host, char *err,
		 size_t errlen)
{
	const char *name = o->server_name && *o->server_name ? o->server_name : host;

	memset(t, 0, sizeof *t);
	if (strlen(name) >= sizeof t->name) {
		snprintf(err, errlen, "cluster.tls_server_name: too long");
		return -1;
	}
	snprintf(t->name, sizeof t->name, "%s", name);
	if (!(t->ctx = SSL_CTX_new(TLS_client_method()))) {
		snprintf(err, errlen, "cluster.tls: %s", ossl_reason());
		return -1;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	/* a reply cut short does not parse anyway: an EOF is an EOF */
	SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* out may grow (and move) between a WANT_WRITE and the retry */
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx_files(t, o, err, errlen);
}

void clu_tls_free(struct clu_tls *t)
{
	SSL_CTX_free(t->ctx);
	t->ctx = NULL;
}

/* ---- a link ---- */

static int fail(struct clu_link *l, char *why, size_t n, const char *what)
{
	snprintf(why, n, "%s: %s", l->peer, what);
	clu_link_close(l);
	return -1;
}

void clu_link_init(struct clu_link *l, const struct clu_tls *tls)
{
	memset(l, 0, sizeof *l);
	l->fd = -1;
	l->tls = tls;
	vl_buf_init(&l->out);
}

/* A connect to the next address the name gave: 0 under way, -1 (errno)
 * none left that takes one. */
static int connect_next(struct clu_link *l)
{
	int one = 1;

	while (l->next_ai) {
		const struct addrinfo *ai = l->next_ai;
		l->next_ai = ai->ai_next;
		if (l->fd >= 0)
			close(l->fd);
		l->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (l->fd >= 0 && (connect(l->fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
				   errno == EINPROGRESS)) {
			setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			return 0;
		}
	}
	return -1;
}

int clu_link_open(struct clu_link *l, const char *host, unsigned port, char *why, size_t n)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	char ps[16];

	clu_link_close(l);
	snprintf(l->peer, sizeof l->peer, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	snprintf(ps, sizeof ps, "%u", port);
	int e = getaddrinfo(host, ps, &hints, &l->ais);
	if (e) {
		l->ais = NULL;
		return fail(l, why, n, gai_strerror(e));
	}
	l->next_ai = l->ais;
	if (connect_next(l) < 0)
		return fail(l, why, n, strerror(errno));
	if (!(l->rd = redisReaderCreate()))
		vl_oom(0);
	l->state = CLU_LINK_CONNECTING;
	l->opened_ms = vl_now_ms();
	return 0;
}

short clu_link_events(const struct clu_link *l)
{
	short ev;

	switch (l->state) {
	case CLU_LINK_CONNECTING:
		return POLLOUT;
	case CLU_LINK_HANDSHAKE:
		return l->want;
	case CLU_LINK_UP:
		ev = l->read_wants_write ? POLLOUT : POLLIN;
		if (l->out.len)
			ev |= l->write_wants_read ? POLLIN : POLLOUT;
		return ev;
	default:
		return 0;
	}
}

/* Why the handshake failed: the verifier's reason when it said no. */
static int tls_failed(struct clu_link *l, int rc, char *why, size_t n)
{
	char what[400];
	long vr = SSL_get_verify_result(l->ssl);
	int e = SSL_get_error(l->ssl, rc);

	if (vr != X509_V_OK)
		snprintf(what, sizeof what, "TLS: certificate verify failed: %s (name %s)",
			 X509_verify_cert_error_string(vr), l->tls->name);
	else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
		snprintf(what, sizeof what, "TLS handshake: %s", errno ? strerror(errno) :
			 "the connection closed");
	else
		snprintf(what, sizeof what, "TLS handshake: %s", ossl_reason());
	ERR_clear_error();
	return fail(l, why, n, what);
}

static int handshake(struct clu_link *l, char *why, size_t n)
{
	ERR_clear_error();
	errno = 0;
	int rc = SSL_connect(l->ssl);
	if (rc == 1) {
		l->state = CLU_LINK_UP;
		return 1;
	}
	switch (SSL_get_error(l->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		l->want = POLLIN;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		l->want = POLLOUT;
		return 0;
	default:
		return tls_failed(l, rc, why, n);
	}
}

/* The SSL of a new connection: SNI (not for an address) and the name its
 * certificate must carry (a DNS name, or an IP address as OpenSSL takes
 * it from SSL_set1_host). */
static int tls_start(struct clu_link *l, char *why, size_t n)
{
	unsigned char a[16];
	const char *name = l->tls->name;
	bool literal = inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;

	if (!(l->ssl = SSL_new(l->tls->ctx)) || SSL_set_fd(l->ssl, l->fd) != 1 ||
	    (!literal && SSL_set_tlsext_host_name(l->ssl, name) != 1) ||
	    SSL_set1_host(l->ssl, name) != 1)
		return fail(l, why, n, ossl_reason());
	l->state = CLU_LINK_HANDSHAKE;
	return handshake(l, why, n);
}

/* The connect's outcome, once the socket is writable. */
static int connected(struct clu_link *l, char *why, size_t n)
{
	int e = 0;
	socklen_t len = sizeof e;

	if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e && connect_next(l) == 0)
		return 0;   /* the name's next address */
	if (e)
		return fail(l, why, n, strerror(e));
	if (l->tls)
		return tls_start(l, why, n);
	l->state = CLU_LINK_UP;
	return 1;
}

/* Why an SSL_read or SSL_write failed, into what. */
static void io_error(int e, char *what, size_t wn)
{
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !errno))
		snprintf(what, wn, "Redis closed the connection");
	else if (e == SSL_ERROR_SYSCALL)
		snprintf(what, wn, "%s", strerror(errno));
	else
		snprintf(what, wn, "TLS: %s", ossl_reason());
}

/* One read, plain or TLS: >0 bytes, 0 nothing now, -1 the end or an
 * error (what says which). */
static ssize_t get(struct clu_link *l, char *buf, size_t len, char *what, size_t wn)
{
	if (!l->ssl) {
		ssize_t got = read(l->fd, buf, len);
		if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EINTR)))
			return got > 0 ? got : 0;
		snprintf(what, wn, "%s", got == 0 ? "Redis closed the connection" : strerror(errno));
		return -1;
	}
	ERR_clear_error();
	errno = 0;
	int got = SSL_read(l->ssl, buf, (int)len);
	if (got > 0)
		return got;
	int e = SSL_get_error(l->ssl, got);
	l->read_wants_write = e == SSL_ERROR_WANT_WRITE;
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	io_error(e, what, wn);
	return -1;
}

/* Everything there is, into the reader (TLS: until OpenSSL holds no
 * more, so poll misses nothing). */
static int drain(struct clu_link *l, char *why, size_t n)
{
	char buf[16384], what[300];
	bool fed = false;

	for (;;) {
		ssize_t got = get(l, buf, sizeof buf, what, sizeof what);
		if (got == 0)
			return 0;
		if (got < 0)   /* replies first; poll reports the end again */
			return fed ? 0 : fail(l, why, n, what);
		if (redisReaderFeed(l->rd, buf, (size_t)got) != REDIS_OK)
			return fail(l, why, n, "a reply that does not parse");
		if (l->rd->len - l->rd->pos > READ_MAX)
			return fail(l, why, n, "a reply larger than 1 MB");
		fed = true;
	}
}

/* One write, plain or TLS: >=0 bytes taken, -1 an error (what). */
static ssize_t put(struct clu_link *l, char *what, size_t wn)
{
	size_t len = l->out.len > (1u << 30) ? 1u << 30 : l->out.len;

	if (!l->ssl) {
		ssize_t n = send(l->fd, l->out.p, len, MSG_NOSIGNAL);
		if (n >= 0 || errno == EAGAIN || errno == EINTR)
			return n > 0 ? n : 0;
		snprintf(what, wn, "%s", strerror(errno));
		return -1;
	}
	ERR_clear_error();
	errno = 0;
	int n = SSL_write(l->ssl, l->out.p, (int)len);
	if (n > 0)
		return n;
	int e = SSL_get_error(l->ssl, n);
	l->write_wants_read = e == SSL_ERROR_WANT_READ;
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	io_error(e, what, wn);
	return -1;
}

int clu_link_flush(struct clu_link *l, char *why, size_t n)
{
	char what[300];

	while (l->state == CLU_LINK_UP && l->out.len) {
		ssize_t done = put(l, what, sizeof what);
		if (done < 0)
			return fail(l, why, n, what);
		if (done == 0)
			return 0;
		vl_buf_consume(&l->out, (size_t)done);
	}
	return 0;
}

int clu_link_io(struct clu_link *l, short revents, char *why, size_t n)
{
	if (!revents)
		return 0;
	if (l->state == CLU_LINK_CONNECTING)
		return connected(l, why, n);
	if (l->state == CLU_LINK_HANDSHAKE)
		return handshake(l, why, n);
	if (l->state != CLU_LINK_UP)
		return 0;
	/* either may have waited for the other's direction: try both */
	if (clu_link_flush(l, why, n) < 0)
		return -1;
	return drain(l, why, n);
}

void clu_link_close(struct clu_link *l)
{
	if (l->ssl)
		SSL_free(l->ssl);   /* no close_notify: Redis needs none */
	l->ssl = NULL;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (l->ais)
		freeaddrinfo(l->ais);
	l->ais = NULL;
	l->next_ai = NULL;
	if (l->rd)
		redisReaderFree(l->rd);
	l->rd = NULL;
	vl_buf_reset(&l->out);
	l->state = CLU_LINK_CLOSED;
	l->read_wants_write = l->write_wants_read = false;
}

void clu_link_free(struct clu_link *l)
{
	clu_link_close(l);
	vl_buf_free(&l->out);
}
