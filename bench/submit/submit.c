/*
 * volley-submit: an SMTP submission load client. N concurrent connections
 * (--clients), each: EHLO, STARTTLS (or implicit TLS from the connect on),
 * EHLO, AUTH PLAIN (or LOGIN), then --per-conn messages (MAIL, RCPT...,
 * DATA, pipelined when offered), QUIT, and a new connection resuming the
 * last TLS session, as a client library's pool does, until --messages are
 * sent. It measures accepted messages a second and the latency from the
 * end of the data to the server's 250. docs/bench.md.
 *
 * One io_uring per thread (--threads, default 1) drives every connection
 * of the thread: connect, multishot recv into provided buffers, one send
 * in flight per connection; TLS is tls/'s tls_conn over memory BIOs, the
 * SMTP session sess.c's state machine. Bounded: --max-time stops the run
 * (what is in flight is counted lost), --timeout a silent server,
 * --max-errors a server that fails every connection.
 */
#include "submit.h"

#include "../../tls/tls.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { OP_CONNECT = 1, OP_RECV, OP_SEND };

struct opts {
	char host[256], servername[256];
	uint16_t port;
	long clients, messages, per_conn, threads, max_errors;
	int rcpts;
	uint64_t size, max_time_ms, timeout_ms;
	const char *verify;
	bool json;
	struct vs_sess_cfg cfg;
};

struct shared {
	const struct opts *o;
	struct sockaddr_storage addr;
	socklen_t alen;
	SSL_CTX *ctx;
	atomic_long next_id;      /* messages handed out */
	atomic_long errors;
	atomic_bool stop;         /* AUTH refused, verification failed, too many errors */
	atomic_bool timed_out;    /* --max-time reached */
	uint64_t deadline_ms;
	pthread_mutex_t mu;
	char first_error[300];
};

struct counts {
	long sent, accepted, refused4, refused5, rcpt_refused, auth_refused, auth_tempfail;
	long errors, lost;
	long conns, handshakes, resumed;
};

struct worker;
struct client {
	struct worker *w;
	int fd;
	bool live;                /* a connection exists (maybe closing) */
	bool closing, connecting, recv_armed, send_busy;
	bool start_tls, quit_done;
	struct tls_conn *tls;
	bool handshaking;
	SSL_SESSION *resume;      /* the last session ticket, for the next connection */
	struct vs_sess sess;
	/* The messages this client has claimed, [cur, end): a block of
	 * --per-conn at a time, so that no connection is made for nothing
	 * at the end, and the rest of a block outlives a failed connection. */
	long cur, end;
	struct vl_buf plain, out, fly;
	uint64_t dot_ns, last_ms;
};

struct worker {
	pthread_t tid;
	struct shared *sh;
	struct vl_ring ring;
	struct client *c;
	int nclients;
	struct vs_msg msg;
	struct counts n;
	uint32_t *lat_us;         /* end of data to 250, one per accepted message */
	size_t nlat, caplat;
};

static void note_error(struct shared *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_error(struct shared *sh, const char *fmt, ...)
{
	pthread_mutex_lock(&sh->mu);
	if (!sh->first_error[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(sh->first_error, sizeof sh->first_error, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&sh->mu);
}

/* ---- the session's callbacks ---- */

/* A new block of messages for c when its own is used up; false when
 * none is left or the run stops. */
static bool claim(struct client *c)
{
	struct shared *sh = c->w->sh;
	if (atomic_load(&sh->stop))
		return false;
	if (c->cur < c->end)
		return true;
	long i = atomic_fetch_add(&sh->next_id, sh->o->per_conn);
	if (i >= sh->o->messages)
		return false;
	c->cur = i;
	c->end = i + sh->o->per_conn < sh->o->messages ? i + sh->o->per_conn : sh->o->messages;
	return true;
}

static bool next_msg(void *arg, uint64_t *id)
{
	struct client *c = arg;
	if (c->cur >= c->end || atomic_load(&c->w->sh->stop))
		return false;
	*id = (uint64_t)c->cur++;
	c->w->n.sent++;
	return true;
}

static void body(void *arg, uint64_t id, struct vl_buf *out)
{
	struct client *c = arg;
	vs_msg_append(&c->w->msg, id, out);
}

static void latency(struct worker *w, uint64_t ns)
{
	if (w->nlat == w->caplat) {
		w->caplat = w->caplat ? 2 * w->caplat : 4096;
		w->lat_us = vl_realloc(w->lat_us, w->caplat * sizeof *w->lat_us);
	}
	w->lat_us[w->nlat++] = (uint32_t)(ns / 1000 > UINT32_MAX ? UINT32_MAX : ns / 1000);
}

static void event(void *arg, enum vs_ev ev, uint64_t id, int code, const char *text)
{
	struct client *c = arg;
	struct worker *w = c->w;
	(void)id;
	switch (ev) {
	case VS_EV_STARTTLS: c->start_tls = true; break;
	case VS_EV_READY: break;
	case VS_EV_DOT: c->dot_ns = vl_now_ns(); break;
	case VS_EV_ACCEPTED:
		w->n.accepted++;
		latency(w, vl_now_ns() - c->dot_ns);
		break;
	case VS_EV_REFUSED:
		if (code >= 400 && code < 500)
			w->n.refused4++;
		else
			w->n.refused5++;
		note_error(w->sh, "a message refused: %d %s", code, text);
		break;
	case VS_EV_RCPT_REFUSED: w->n.rcpt_refused++; break;
	case VS_EV_AUTH_REFUSED:
		note_error(w->sh, "AUTH refused: %d %s", code, text);
		if (code >= 400 && code < 500) {
			/* "try again later", as an overloaded auth service says:
			 * this connection ends and a new one tries again, as a
			 * client would; counted with the errors (--max-errors). */
			w->n.auth_tempfail++;
			w->n.errors++;
			if (atomic_fetch_add(&w->sh->errors, 1) + 1 >= w->sh->o->max_errors)
				atomic_store(&w->sh->stop, true);
			break;
		}
		/* Every other connection would be refused too: the run stops. */
		w->n.auth_refused++;
		atomic_store(&w->sh->stop, true);
		break;
	case VS_EV_CLOSE: c->quit_done = true; break;
	case VS_EV_FAIL:
		if (code)
			note_error(w->sh, "%d %s", code, text);
		else
			note_error(w->sh, "%s", text);
		break;
	}
}

/* ---- connections ---- */

static void send_more(struct client *c)
{
	if (c->send_busy || c->fd < 0)
		return;
	if (!c->fly.len) {
		if (!c->out.len)
			return;
		struct vl_buf t = c->fly;
		c->fly = c->out;
		c->out = t;
	}
	struct io_uring_sqe *sqe = vl_ring_sqe(&c->w->ring);
	io_uring_prep_send(sqe, c->fd, c->fly.p, c->fly.len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, vl_ud(c, OP_SEND));
	c->send_busy = true;
}

/* Stop reading and writing; the fd is closed once no operation is left. */
static void shut(struct client *c)
{
	if (!c->closing) {
		c->closing = true;
		shutdown(c->fd, SHUT_RDWR);
	}
}

/* A connection that failed: its message in flight is lost. */
static void conn_error(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_error(struct client *c, const char *fmt, ...)
{
	struct worker *w = c->w;
	uint64_t id;
	if (c->closing)
		return;
	if (fmt) {
		char why[256];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, sizeof why, fmt, ap);
		va_end(ap);
		note_error(w->sh, "%s", why);
	}
	w->n.errors++;
	if (vs_sess_busy(&c->sess, &id))
		w->n.lost++;
	if (atomic_fetch_add(&w->sh->errors, 1) + 1 >= w->sh->o->max_errors)
		atomic_store(&w->sh->stop, true);
	shut(c);
}

static void start_tls(struct client *c)
{
	struct shared *sh = c->w->sh;
	const char *name = sh->o->servername[0] ? sh->o->servername : NULL;
	c->tls = tls_conn_new_client(sh->ctx, name, sh->o->verify != NULL, NULL, c->resume);
	if (!c->tls) {
		conn_error(c, "TLS: cannot make a client connection");
		return;
	}
	c->handshaking = true;
	tls_conn_output(c->tls, &c->out);   /* the ClientHello */
}

/* The handshake has just finished. */
static void tls_ready(struct client *c)
{
	struct worker *w = c->w;
	c->handshaking = false;
	w->n.handshakes++;
	w->n.resumed += tls_conn_resumed(c->tls);
	if (w->sh->o->verify && !tls_conn_verified(c->tls)) {
		atomic_store(&w->sh->stop, true);
		conn_error(c, "the server's certificate is not verified: %s",
			   tls_conn_verify_error(c->tls));
		return;
	}
	if (!c->sess.tls_up)
		vs_sess_tls_up(&c->sess, &c->plain);
}

static void smtp_in(struct client *c, const char *p, size_t n)
{
	int rc = vs_sess_input(&c->sess, p, n, &c->plain);
	if (rc < 0)
		conn_error(c, NULL);
}

/* Plaintext the session wrote: through TLS when it is up. */
static void plain_out(struct client *c)
{
	if (!c->plain.len)
		return;
	if (!c->tls) {
		vl_buf_append(&c->out, c->plain.p, c->plain.len);
	} else if (tls_conn_write(c->tls, c->plain.p, c->plain.len) < 0) {
		conn_error(c, "TLS: write failed");
		return;
	}
	vl_buf_reset(&c->plain);
	if (c->tls)
		tls_conn_output(c->tls, &c->out);
}

static void take_session(struct client *c)
{
	SSL_SESSION *s = tls_conn_take_session(c->tls);
	if (s) {
		SSL_SESSION_free(c->resume);
		c->resume = s;
	}
}

static void tls_in(struct client *c, const char *p, size_t n)
{
	char buf[16384];
	ssize_t r;
	tls_conn_input(c->tls, p, n);
	while ((r = tls_conn_read(c->tls, buf, sizeof buf)) > 0) {
		if (c->handshaking)
			tls_ready(c);
		smtp_in(c, buf, (size_t)r);
		if (c->closing)
			return;
	}
	if (r < 0) {
		char why[200];
		conn_error(c, "TLS: %s", tls_last_error(why, sizeof why));
		return;
	}
	if (c->handshaking && tls_conn_established(c->tls))
		tls_ready(c);
	take_session(c);
	tls_conn_output(c->tls, &c->out);   /* handshake, tickets' acks, alerts */
}

/* QUIT answered: close_notify (the session stays resumable), then close. */
static void quit(struct client *c)
{
	if (c->tls) {
		struct vl_buf b;
		vl_buf_init(&b);
		tls_conn_shutdown(c->tls);
		tls_conn_output(c->tls, &b);
		if (b.len && !c->send_busy)  /* a few octets: the socket takes them */
			(void)send(c->fd, b.p, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		vl_buf_free(&b);
	}
	shut(c);
}

static void on_data(struct client *c, const char *p, size_t n)
{
	c->last_ms = vl_now_ms();
	if (c->tls)
		tls_in(c, p, n);
	else
		smtp_in(c, p, n);
	if (c->closing)
		return;
	if (c->start_tls) {  /* STARTTLS's 220: the handshake begins */
		c->start_tls = false;
		start_tls(c);
	}
	plain_out(c);
	if (c->quit_done) {
		quit(c);
		return;
	}
	send_more(c);
}

static void connect_one(struct client *c)
{
	struct worker *w = c->w;
	struct shared *sh = w->sh;
	int one = 1;
	static const struct vs_sess_ops ops = { next_msg, body, event, NULL };
	struct vs_sess_ops o = ops;
	o.arg = c;
	c->fd = socket(sh->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		note_error(sh, "socket: %s", strerror(errno));
		atomic_store(&sh->stop, true);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->live = c->connecting = true;
	c->closing = c->recv_armed = c->send_busy = c->start_tls = c->quit_done = false;
	c->last_ms = vl_now_ms();
	vs_sess_init(&c->sess, &sh->o->cfg, &o);
	w->n.conns++;
	struct io_uring_sqe *sqe = vl_ring_sqe(&w->ring);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&sh->addr, sh->alen);
	io_uring_sqe_set_data64(sqe, vl_ud(c, OP_CONNECT));
}


/* Closed when nothing is in flight; then a new connection if mail is left. */
static void maybe_close(struct client *c)
{
	if (!c->closing || c->connecting || c->recv_armed || c->send_busy)
		return;
	close(c->fd);
	c->fd = -1;
	c->live = false;
	tls_conn_free(c->tls);
	c->tls = NULL;
	c->handshaking = false;
	vl_buf_reset(&c->out);
	vl_buf_reset(&c->fly);
	vl_buf_reset(&c->plain);
	if (claim(c))
		connect_one(c);
}

static void on_connect(struct client *c, int res)
{
	c->connecting = false;
	if (c->closing) {
		maybe_close(c);
		return;
	}
	if (res < 0) {
		conn_error(c, "connect: %s", strerror(-res));
		maybe_close(c);
		return;
	}
	vl_ring_recv(&c->w->ring, c->fd, vl_ud(c, OP_RECV));
	c->recv_armed = true;
	if (c->w->sh->o->cfg.tls == VS_TLS_IMPLICIT) {
		start_tls(c);
		send_more(c);
	}
}

static void on_recv(struct client *c, struct io_uring_cqe *cqe)
{
	struct worker *w = c->w;
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (cqe->res > 0 && !c->closing)
			on_data(c, vl_ring_buf(&w->ring, bid), (size_t)cqe->res);
		vl_ring_buf_return(&w->ring, bid);
	}
	if (more)
		return;
	if (cqe->res == -ENOBUFS && !c->closing) {  /* buffers were short: again */
		vl_ring_recv(&w->ring, c->fd, vl_ud(c, OP_RECV));
		return;
	}
	c->recv_armed = false;
	if (!c->closing) {
		if (cqe->res == 0)
			conn_error(c, "the server closed the connection%s",
				   c->sess.done ? "" : " in the middle of the session");
		else if (cqe->res < 0)
			conn_error(c, "recv: %s", strerror(-cqe->res));
		else {  /* data, but the multishot ended: read on */
			vl_ring_recv(&w->ring, c->fd, vl_ud(c, OP_RECV));
			c->recv_armed = true;
		}
	}
	maybe_close(c);
}

static void on_send(struct client *c, int res)
{
	c->send_busy = false;
	if (res < 0) {
		if (!c->closing)
			conn_error(c, "send: %s", strerror(-res));
	} else {
		vl_buf_consume(&c->fly, (size_t)res);
		if (!c->closing)
			send_more(c);
	}
	maybe_close(c);
}

static void on_cqe(void *arg, struct io_uring_cqe *cqe)
{
	(void)arg;
	struct client *c = vl_ud_ptr(cqe->user_data);
	switch (vl_ud_op(cqe->user_data)) {
	case OP_CONNECT: on_connect(c, cqe->res); break;
	case OP_RECV: on_recv(c, cqe); break;
	case OP_SEND: on_send(c, cqe->res); break;
	}
}

/* Every 100 ms: the run's deadline, a stop, a silent server. */
static void sweep(struct worker *w)
{
	struct shared *sh = w->sh;
	uint64_t now = vl_now_ms();
	if (now >= sh->deadline_ms && !atomic_load(&sh->stop)) {
		atomic_store(&sh->stop, true);
		atomic_store(&sh->timed_out, true);
		note_error(sh, "--max-time (%llu s) reached",
			   (unsigned long long)(sh->o->max_time_ms / 1000));
	}
	bool stop = atomic_load(&sh->stop);
	for (int i = 0; i < w->nclients; i++) {
		struct client *c = &w->c[i];
		uint64_t id;
		if (!c->live || c->closing)
			continue;
		/* A stop leaves what is in flight (counted lost) but lets a
		 * connection that is not in a transaction end by itself. */
		if (stop && vs_sess_busy(&c->sess, &id) && now >= sh->deadline_ms) {
			w->n.lost++;
			shut(c);
		} else if (now - c->last_ms > sh->o->timeout_ms) {
			conn_error(c, "no reply within %llu s",
				   (unsigned long long)(sh->o->timeout_ms / 1000));
		} else if (stop && now >= sh->deadline_ms) {
			shut(c);
		}
	}
}

static int live_clients(const struct worker *w)
{
	int n = 0;
	for (int i = 0; i < w->nclients; i++)
		n += w->c[i].live;
	return n;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	if (vl_ring_enable(&w->ring) < 0) {
		note_error(w->sh, "io_uring: cannot enable the ring");
		atomic_store(&w->sh->stop, true);
		return NULL;
	}
	for (int i = 0; i < w->nclients && claim(&w->c[i]); i++)
		connect_one(&w->c[i]);
	uint64_t last = 0;
	while (live_clients(w) > 0) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100000000 };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int rc = io_uring_submit_and_wait_timeout(&w->ring.ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
			note_error(w->sh, "io_uring: %s", strerror(-rc));
			break;
		}
		io_uring_for_each_cqe(&w->ring.ring, head, cqe) {
			on_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring.ring, n);
		uint64_t now = vl_now_ms();
		if (now - last >= 100) {
			sweep(w);
			last = now;
		}
	}
	return NULL;
}

/* ---- the command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: volley-submit [--connect HOST:PORT] [--clients N] [--messages N]\n"
		"         [--per-conn N] [--rcpts N] [--size BYTES] [--user USER --pass PASS]\n"
		"         [--auth plain|login] [--from ADDR] [--to-domain DOMAIN]\n"
		"         [--tls starttls|implicit|none] [--verify CAFILE] [--servername NAME]\n"
		"         [--ehlo NAME] [--max-time SECONDS] [--timeout SECONDS]\n"
		"         [--max-errors N] [--threads N] [--json]\n"
		"An SMTP submission load client: docs/bench.md.\n");
}

static int num(const char *opt, const char *arg, long min, long max, long *v)
{
	uint64_t u;
	if (vl_parse_u64(arg, &u) < 0 || u < (uint64_t)min || u > (uint64_t)max) {
		fprintf(stderr, "volley-submit: %s: a number from %ld to %ld, not \"%s\"\n", opt, min,
			max, arg);
		return -1;
	}
	*v = (long)u;
	return 0;
}

static int secs(const char *opt, const char *arg, uint64_t *ms)
{
	if (vl_parse_duration_ms(arg, ms) < 0 || *ms == 0) {
		fprintf(stderr, "volley-submit: %s: a duration like 60 or 2m, not \"%s\"\n", opt, arg);
		return -1;
	}
	return 0;
}

static int choice(const char *opt, const char *arg, const char *const *names, int *v)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(arg, names[i])) {
			*v = i;
			return 0;
		}
	fprintf(stderr, "volley-submit: %s: not \"%s\"\n", opt, arg);
	return -1;
}

static int parse_opt(struct opts *o, int c, const char *arg)
{
	static const char *const tls[] = { "starttls", "implicit", "none", NULL };
	static const char *const mech[] = { "plain", "login", NULL };
	long v;
	int k;
	switch (c) {
	case 'c':
		if (vl_parse_hostport(arg, o->host, sizeof o->host, &o->port) < 0 || !o->port) {
			fprintf(stderr, "volley-submit: --connect: HOST:PORT, not \"%s\"\n", arg);
			return -1;
		}
		return 0;
	case 'n': return num("--clients", arg, 1, 100000, &o->clients);
	case 'm': return num("--messages", arg, 1, 100000000, &o->messages);
	case 'p': return num("--per-conn", arg, 1, 100000000, &o->per_conn);
	case 'r':
		if (num("--rcpts", arg, 1, VS_RCPTS_MAX, &v) < 0)
			return -1;
		o->rcpts = (int)v;
		return 0;
	case 's':
		if (vl_parse_size(arg, &o->size) < 0 || o->size < 256 || o->size > 100 << 20) {
			fprintf(stderr, "volley-submit: --size: 256 octets to 100MB, not \"%s\"\n", arg);
			return -1;
		}
		return 0;
	case 'u': o->cfg.user = arg; return 0;
	case 'P': o->cfg.pass = arg; return 0;
	case 'f': o->cfg.from = arg; return 0;
	case 'd': o->cfg.to_domain = arg; return 0;
	case 'e': o->cfg.ehlo = arg; return 0;
	case 't':
		if (choice("--tls (starttls, implicit or none)", arg, tls, &k) < 0)
			return -1;
		o->cfg.tls = (enum vs_tls)k;
		return 0;
	case 'a':
		if (choice("--auth (plain or login)", arg, mech, &k) < 0)
			return -1;
		o->cfg.mech = (enum vs_mech)k;
		return 0;
	case 'v': o->verify = arg; return 0;
	case 'S': snprintf(o->servername, sizeof o->servername, "%s", arg); return 0;
	case 'T': return secs("--max-time", arg, &o->max_time_ms);
	case 'o': return secs("--timeout", arg, &o->timeout_ms);
	case 'E': return num("--max-errors", arg, 1, 100000000, &o->max_errors);
	case 'h': return num("--threads", arg, 1, 64, &o->threads);
	case 'j': o->json = true; return 0;
	case 'H': usage(stdout); exit(0);
	case 'V': printf("volley-submit %s\n", VL_VERSION); exit(0);
	default: usage(stderr); return -1;
	}
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "connect", 1, 0, 'c' }, { "clients", 1, 0, 'n' }, { "messages", 1, 0, 'm' },
		{ "per-conn", 1, 0, 'p' }, { "rcpts", 1, 0, 'r' }, { "size", 1, 0, 's' },
		{ "user", 1, 0, 'u' }, { "pass", 1, 0, 'P' }, { "from", 1, 0, 'f' },
		{ "to-domain", 1, 0, 'd' }, { "ehlo", 1, 0, 'e' }, { "tls", 1, 0, 't' },
		{ "auth", 1, 0, 'a' }, { "verify", 1, 0, 'v' }, { "servername", 1, 0, 'S' },
		{ "max-time", 1, 0, 'T' }, { "timeout", 1, 0, 'o' }, { "max-errors", 1, 0, 'E' },
		{ "threads", 1, 0, 'h' }, { "json", 0, 0, 'j' }, { "help", 0, 0, 'H' },
		{ "version", 0, 0, 'V' }, { 0, 0, 0, 0 }
	};
	int c;
	*o = (struct opts){ .host = "127.0.0.1", .port = 587, .clients = 50, .messages = 1000,
			    .per_conn = 20, .threads = 1, .max_errors = 100, .rcpts = 1,
			    .size = 4096, .max_time_ms = 600000, .timeout_ms = 60000 };
	o->cfg = (struct vs_sess_cfg){ .ehlo = "volley-submit.test", .from = "sender@submit.test",
				       .to_domain = "submit.test" };
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1)
		if (parse_opt(o, c, optarg) < 0)
			return -1;
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	if (!o->cfg.user != !o->cfg.pass) {
		fprintf(stderr, "volley-submit: --user and --pass go together\n");
		return -1;
	}
	if (!o->servername[0] && !vl_ip_literal(o->host))
		snprintf(o->servername, sizeof o->servername, "%s", o->host);
	if (o->verify && !o->servername[0]) {
		fprintf(stderr, "volley-submit: --verify checks a name: give --servername "
			"(--connect names an address)\n");
		return -1;
	}
	o->cfg.rcpts = o->rcpts;
	o->cfg.per_conn = o->per_conn;
	return 0;
}

static int resolve(const struct opts *o, struct shared *sh)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	char port[8];
	snprintf(port, sizeof port, "%u", o->port);
	int rc = getaddrinfo(o->host, port, &hints, &ai);
	if (rc) {
		fprintf(stderr, "volley-submit: %s: %s\n", o->host, gai_strerror(rc));
		return -1;
	}
	memcpy(&sh->addr, ai->ai_addr, ai->ai_addrlen);
	sh->alen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

/* ---- the figures ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
	if (!n)
		return -1;
	size_t k = (size_t)(p * (double)n + 0.999999);   /* nearest rank */
	return v[k ? k - 1 : 0] / 1000.0;
}

static void report(const struct opts *o, struct shared *sh, struct worker *w, double secs_,
		   double cpu)
{
	struct counts t = { 0 };
	size_t nlat = 0;
	for (long i = 0; i < o->threads; i++) {  /* struct counts is longs only */
		long *a = (long *)&t, *b = (long *)&w[i].n;
		for (size_t k = 0; k < sizeof t / sizeof(long); k++)
			a[k] += b[k];
		nlat += w[i].nlat;
	}
	uint32_t *lat = vl_malloc(nlat * sizeof *lat);
	nlat = 0;
	for (long i = 0; i < o->threads; i++) {
		if (w[i].nlat)  /* none accepted: no array (memcpy wants one) */
			memcpy(lat + nlat, w[i].lat_us, w[i].nlat * sizeof *lat);
		nlat += w[i].nlat;
	}
	qsort(lat, nlat, sizeof *lat, cmp_u32);
	double p50 = pct(lat, nlat, 0.5), p99 = pct(lat, nlat, 0.99);
	double rate = secs_ > 0 ? (double)t.accepted / secs_ : 0;
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_printf(&b, "{\"messages\":%ld,\"sent\":%ld,\"accepted\":%ld,\"refused\":{\"4xx\":%ld,"
		      "\"5xx\":%ld},\"rcpt_refused\":%ld,\"auth_refused\":%ld,\"auth_tempfail\":%ld,"
		      "\"errors\":%ld,"
		      "\"lost\":%ld,\"connections\":%ld,\"tls_handshakes\":%ld,\"tls_resumed\":%ld,"
		      "\"clients\":%ld,\"per_conn\":%ld,\"rcpts\":%d,\"size\":%llu,"
		      "\"elapsed_s\":%.3f,\"msgs_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
		      "\"cpu_s\":%.3f,\"timed_out\":%s,\"first_error\":",
		      o->messages, t.sent, t.accepted, t.refused4, t.refused5, t.rcpt_refused,
		      t.auth_refused, t.auth_tempfail, t.errors, t.lost, t.conns, t.handshakes, t.resumed,
		      o->clients, o->per_conn, o->rcpts, (unsigned long long)o->size, secs_, rate,
		      p50, p99, cpu, atomic_load(&sh->timed_out) ? "true" : "false");
	vl_buf_json_string(&b, sh->first_error[0] ? sh->first_error : NULL);
	vl_buf_appends(&b, "}\n");
	if (o->json) {
		fwrite(b.p, 1, b.len, stdout);
	} else {
		printf("volley-submit: %ld of %ld messages accepted in %.2f s: %.0f msg/s\n",
		       t.accepted, o->messages, secs_, rate);
		printf("  refused 4xx %ld, 5xx %ld; recipients refused %ld; AUTH refused %ld, "
		       "AUTH 4xx %ld; errors %ld, lost %ld\n", t.refused4, t.refused5, t.rcpt_refused,
		       t.auth_refused, t.auth_tempfail, t.errors, t.lost);
		printf("  %ld connections, %ld TLS handshakes (%ld resumed); end of data to 250: "
		       "p50 %.2f ms, p99 %.2f ms; CPU %.2f s\n", t.conns, t.handshakes, t.resumed,
		       p50, p99, cpu);
		if (sh->first_error[0])
			printf("  first error: %s\n", sh->first_error);
	}
	vl_buf_free(&b);
	free(lat);
}

static double cpu_now(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int setup(const struct opts *o, struct shared *sh, struct worker *w)
{
	char err[256];
	if (!(sh->ctx = tls_client_ctx_new(o->verify, err, sizeof err))) {
		fprintf(stderr, "volley-submit: %s\n", err);
		return -1;
	}
	long per = o->clients / o->threads, extra = o->clients % o->threads;
	for (long i = 0; i < o->threads; i++) {
		w[i].sh = sh;
		w[i].nclients = (int)(per + (i < extra));
		w[i].c = vl_calloc((size_t)w[i].nclients, sizeof *w[i].c);
		for (int k = 0; k < w[i].nclients; k++) {
			w[i].c[k].w = &w[i];
			w[i].c[k].fd = -1;
		}
		vs_msg_init(&w[i].msg, &o->cfg, o->size);
		if (vl_ring_init(&w[i].ring, 1024, 4096, 512, 16384, err, sizeof err) < 0) {
			fprintf(stderr, "volley-submit: %s\n", err);
			return -1;
		}
	}
	return 0;
}

static void cleanup(const struct opts *o, struct shared *sh, struct worker *w)
{
	for (long i = 0; i < o->threads; i++) {
		for (int k = 0; k < w[i].nclients; k++) {
			struct client *c = &w[i].c[k];
			if (c->fd >= 0)
				close(c->fd);
			tls_conn_free(c->tls);
			SSL_SESSION_free(c->resume);
			vl_buf_free(&c->plain);
			vl_buf_free(&c->out);
			vl_buf_free(&c->fly);
		}
		free(w[i].c);
		free(w[i].lat_us);
		vs_msg_free(&w[i].msg);
		vl_ring_exit(&w[i].ring);
	}
	tls_ctx_free(sh->ctx);
	pthread_mutex_destroy(&sh->mu);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct shared sh = { .o = &o };
	if (parse_args(argc, argv, &o) < 0)
		return 2;
	if (o.clients < o.threads)
		o.threads = o.clients;
	pthread_mutex_init(&sh.mu, NULL);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (resolve(&o, &sh) < 0)
		return 2;
	struct worker *w = vl_calloc((size_t)o.threads, sizeof *w);
	int rc = 1;
	if (setup(&o, &sh, w) == 0) {
		double cpu0 = cpu_now();
		uint64_t t0 = vl_now_ns();
		sh.deadline_ms = vl_now_ms() + o.max_time_ms;
		for (long i = 0; i < o.threads; i++)
			pthread_create(&w[i].tid, NULL, run, &w[i]);
		for (long i = 0; i < o.threads; i++)
			pthread_join(w[i].tid, NULL);
		double secs_ = (double)(vl_now_ns() - t0) / 1e9;
		report(&o, &sh, w, secs_, cpu_now() - cpu0);
		long accepted = 0;
		for (long i = 0; i < o.threads; i++)
			accepted += w[i].n.accepted;
		rc = accepted == o.messages ? 0 : 1;
	}
	cleanup(&o, &sh, w);
	free(w);
	return rc;
}
