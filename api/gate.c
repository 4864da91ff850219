/*
 * The gate: the API's sockets, in front of libmicrohttpd.
 *
 * libmicrohttpd 0.9.75 answers malformed requests itself, in HTML, sends
 * two answers to a bad Content-Length, and reads a request before any of
 * our code may look at it. So the gate owns the sockets: a few threads,
 * each an epoll loop over its connections, accept on the listeners (at
 * most api.max_connections, api.max_connections_per_ip from one address
 * on TCP), and hold a connection until a request head is whole, valid and,
 * on TCP, carries the bearer token. Anything else is answered here, in
 * JSON (http1.c), and the connection closed. A valid request goes to
 * libmicrohttpd over a socket pair of the connection's own, its head
 * written anew in canonical form, its body passed on (chunked bodies
 * decoded and chunked again) and the answer back, framed, so that the
 * gate knows when it ends: requests go to libmicrohttpd one at a time, and
 * the next head's clock starts then.
 *
 * Clocks: a request head must be whole within api.header_timeout of the
 * connection's start or of the previous answer's end, however it trickles
 * in (408 if part of it came, else a silent close); while the gate waits
 * for the client (a body, or an answer it does not read), nothing may
 * stall longer than api.idle_timeout. Waiting for an answer has no limit
 * of the gate's (an /v1/events follower waits for events).
 */
#include "api_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define READ_CHUNK 65536
#define IN_MAX 65536               /* octets held from a client, not yet passed on */
#define BACKLOG_MAX (256 * 1024)   /* held for the other side before reading stops */
#define LINGER_MS 2000             /* after an error: read and drop, so the answer is read */
#define TICK_MS 100
#define PAUSE_MS 200               /* out of descriptors: accept again after */
#define IP_BUCKETS 1024

enum { TAG_CLIENT, TAG_MHD, TAG_LISTEN, TAG_WAKE };
enum { G_HEAD, G_BODY, G_WAIT, G_DRAIN, G_LINGER };

/* Written from off up to len. */
struct obuf {
	struct vl_buf b;
	size_t off;
};

struct ipslot {
	struct ipslot *next;
	unsigned char addr[16];
	unsigned n;
};

struct gthread;

struct gconn {
	struct gthread *t;
	struct gconn *prev, *next;
	int cfd, mfd;              /* the client; our end of the pair to libmicrohttpd */
	bool tcp, dead, gone, c_eof, close_after;
	unsigned st;
	struct sockaddr_storage sa;
	socklen_t salen;
	struct ipslot *ip;
	struct vl_buf in;          /* from the client, not yet passed on */
	size_t scanned;            /* octets of in the head scanner has seen */
	struct obuf tom, out;      /* to libmicrohttpd; to the client */
	struct api_http_scan scan;
	struct api_http_req req;
	struct api_http_chunks ch;
	uint64_t body_left;
	struct api_http_resp resp;
	bool resp_pending;         /* a request is with libmicrohttpd */
	uint64_t t_head, t_idle, t_linger;
	uint32_t ev_c, ev_m;       /* registered with epoll (0: not) */
};

struct gthread {
	struct api_gate *g;
	pthread_t th;
	bool started;
	int ep, wake;
	struct gconn *conns;
	struct gconn *grave;       /* destroyed in this round of events, freed after it */
	uint64_t paused_until;     /* listeners out of this epoll until then */
	char rbuf[READ_CHUNK];
};

struct api_gate {
	struct api_gate_cfg cfg;
	char *token;
	int lfd[2];
	unsigned nthreads;
	struct gthread *t;
	atomic_bool stop;
	_Atomic uint64_t open, accepted, refused, timeouts, bad, unauth, warned_at;
	pthread_mutex_t ipmu;
	struct ipslot *ipt[IP_BUCKETS];
	uint64_t seed;
};

/* ---- small things ---- */

static size_t pending(const struct obuf *o)
{
	return o->b.len - o->off;
}

static void obuf_add(struct obuf *o, const void *p, size_t n)
{
	vl_buf_append(&o->b, p, n);
}

static void obuf_done(struct obuf *o, size_t n)
{
	o->off += n;
	if (o->off == o->b.len) {
		o->off = o->b.len = 0;
		vl_buf_shrink(&o->b, 0);
	} else if (o->off > 65536 && o->off * 2 > o->b.len) {
		vl_buf_consume(&o->b, o->off);
		o->off = 0;
	}
}

static void warn_limited(struct api_gate *g, const char *fmt, const char *what)
{
	uint64_t now = vl_now_ms(), last = atomic_load(&g->warned_at);

	if (now - last >= 60000 && atomic_compare_exchange_strong(&g->warned_at, &last, now))
		vl_log(VL_LOG_WARN, fmt, what);
}

static void fail_e(struct api_error *e, int status, const char *code, const char *msg)
{
	e->status = status;
	snprintf(e->code, sizeof e->code, "%s", code);
	e->field[0] = '\0';
	snprintf(e->message, sizeof e->message, "%s", msg);
}

/* ---- per-address counts (TCP) ---- */

static void ip_key(const struct sockaddr_storage *ss, unsigned char k[16])
{
	memset(k, 0, 16);
	if (ss->ss_family == AF_INET) {
		k[10] = k[11] = 0xff;
		memcpy(k + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		memcpy(k, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	}
}

/* Count one more connection of c's address; false when it has its limit. */
static bool ip_take(struct api_gate *g, struct gconn *c)
{
	unsigned char k[16];
	struct ipslot **b, *s;

	ip_key(&c->sa, k);
	pthread_mutex_lock(&g->ipmu);
	b = &g->ipt[vl_hash_add(g->seed, k, 16) % IP_BUCKETS];
	for (s = *b; s && memcmp(s->addr, k, 16); s = s->next)
		;
	if (s && g->cfg.max_per_ip && s->n >= g->cfg.max_per_ip) {
		pthread_mutex_unlock(&g->ipmu);
		return false;
	}
	if (!s) {
		s = vl_calloc(1, sizeof *s);
		memcpy(s->addr, k, 16);
		s->next = *b;
		*b = s;
	}
	s->n++;
	c->ip = s;
	pthread_mutex_unlock(&g->ipmu);
	return true;
}

static void ip_give(struct api_gate *g, struct gconn *c)
{
	struct ipslot **p;

	if (!c->ip)
		return;
	pthread_mutex_lock(&g->ipmu);
	if (--c->ip->n == 0) {
		p = &g->ipt[vl_hash_add(g->seed, c->ip->addr, 16) % IP_BUCKETS];
		while (*p != c->ip)
			p = &(*p)->next;
		*p = c->ip->next;
		free(c->ip);
	}
	pthread_mutex_unlock(&g->ipmu);
	c->ip = NULL;
}

/* ---- epoll ---- */

static void set_events(struct gthread *t, int fd, uint32_t *cur, uint32_t want, uint64_t tag)
{
	struct epoll_event ev = { .events = want, .data.u64 = tag };

	if (want == *cur)
		return;
	/* never registered with an empty mask: EPOLLHUP would still wake us */
	epoll_ctl(t->ep, !*cur ? EPOLL_CTL_ADD : want ? EPOLL_CTL_MOD : EPOLL_CTL_DEL, fd, &ev);
	*cur = want;
}

static bool want_cin(const struct gconn *c)
{
	if (c->c_eof)
		return false;
	if (c->st == G_LINGER)
		return true;
	return c->st <= G_WAIT && c->in.len < IN_MAX &&
	       (c->st != G_BODY || pending(&c->tom) < BACKLOG_MAX);
}

static void update_events(struct gconn *c)
{
	uint64_t p = (uint64_t)(uintptr_t)c;

	set_events(c->t, c->cfd, &c->ev_c, (want_cin(c) ? EPOLLIN : 0) |
		   (pending(&c->out) && c->st != G_LINGER ? EPOLLOUT : 0), p | TAG_CLIENT);
	if (c->mfd >= 0)
		set_events(c->t, c->mfd, &c->ev_m, (pending(&c->out) < BACKLOG_MAX ? EPOLLIN : 0) |
			   (pending(&c->tom) ? EPOLLOUT : 0), p | TAG_MHD);
}

/* ---- a connection's life ---- */

static void close_mhd(struct gconn *c)
{
	if (c->mfd < 0)
		return;
	set_events(c->t, c->mfd, &c->ev_m, 0, 0);
	close(c->mfd);         /* libmicrohttpd reads the end: a request not whole is dropped */
	c->mfd = -1;
	c->resp_pending = false;
	c->tom.off = c->tom.b.len = 0;
}

/* Closed now, freed once the round of events that may still name it is
 * over (free_grave). */
static void destroy(struct gconn *c)
{
	struct gthread *t = c->t;

	c->gone = true;
	close_mhd(c);
	set_events(t, c->cfd, &c->ev_c, 0, 0);
	close(c->cfd);
	ip_give(t->g, c);
	atomic_fetch_sub(&t->g->open, 1);
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	vl_buf_free(&c->in);
	vl_buf_free(&c->tom.b);
	vl_buf_free(&c->out.b);
	api_http_resp_free(&c->resp);
	c->next = t->grave;
	t->grave = c;
}

static void free_grave(struct gthread *t)
{
	while (t->grave) {
		struct gconn *c = t->grave;
		t->grave = c->next;
		free(c);
	}
}

/* Answer e ourselves, then close. */
static void refuse(struct gconn *c, const struct api_error *e, const char *extra)
{
	close_mhd(c);
	if (pending(&c->out) == 0)
		c->t_idle = vl_now_ms();
	api_http_error(&c->out.b, e, extra);
	vl_buf_reset(&c->in);
	c->scanned = 0;
	c->st = G_DRAIN;
}

static bool authorized(struct api_gate *g, const struct gconn *c)
{
	const char *v = c->in.p + c->req.auth;
	size_t n = c->req.auth_len, tn = strlen(g->token);

	if (!c->tcp)
		return true;
	if (g->cfg.console && (!strcmp(c->req.method, "GET") || !strcmp(c->req.method, "HEAD")) &&
	    api_console_path(c->in.p + c->req.target, c->req.target_len))
		return true;
	if (n < 7 || strncasecmp(v, "Bearer ", 7))
		return false;
	v += 7;
	n -= 7;
	while (n && *v == ' ') {
		v++;
		n--;
	}
	return n == tn && CRYPTO_memcmp(v, g->token, n) == 0;
}

static int attach(struct gconn *c)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (c->t->g->cfg.attach(c->t->g->cfg.cls, sv[1], (struct sockaddr *)&c->sa,
				c->salen) < 0) {
		close(sv[0]);
		return -1;
	}
	c->mfd = sv[0];
	return 0;
}

static void emit_chunk(void *cls, const char *p, size_t n)
{
	struct gconn *c = cls;
	char h[24];

	obuf_add(&c->tom, h, (size_t)snprintf(h, sizeof h, "%zx\r\n", n));
	obuf_add(&c->tom, p, n);
	obuf_add(&c->tom, "\r\n", 2);
}

/* A whole head is in c->in: check it, pass it on. */
static void take_head(struct gconn *c)
{
	struct api_gate *g = c->t->g;
	struct api_error e;
	struct vl_buf norm;

	vl_buf_init(&norm);
	if (api_http_parse(c->in.p, c->scan.len, &c->req, &norm, &e) < 0) {
		atomic_fetch_add(&g->bad, 1);
		refuse(c, &e, NULL);
		goto out;
	}
	if (!authorized(g, c)) {
		atomic_fetch_add(&g->unauth, 1);
		fail_e(&e, 401, "unauthorized", "send Authorization: Bearer <api.token>");
		refuse(c, &e, "WWW-Authenticate: Bearer\r\n");
		goto out;
	}
	if (c->mfd < 0 && attach(c) < 0) {
		vl_log(VL_LOG_ERROR, "api: cannot pass a connection on: %s", strerror(errno));
		fail_e(&e, 503, "internal", "the API cannot take the request now; retry");
		refuse(c, &e, "Retry-After: 5\r\n");
		goto out;
	}
	obuf_add(&c->tom, norm.p, norm.len);
	if (c->req.expect_continue) {
		if (!pending(&c->out))
			c->t_idle = vl_now_ms();
		obuf_add(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	vl_buf_consume(&c->in, c->scan.len);
	c->scanned = 0;
	api_http_scan_init(&c->scan);
	api_http_resp_init(&c->resp, c->req.head);
	c->resp_pending = true;
	c->close_after = c->req.close;
	c->t_idle = vl_now_ms();
	if (c->req.chunked) {
		api_http_chunks_init(&c->ch);
		c->st = G_BODY;
	} else if (c->req.has_length && c->req.length) {
		c->body_left = c->req.length;
		c->st = G_BODY;
	} else {
		c->st = G_WAIT;
	}
out:
	vl_buf_free(&norm);
}

/* Move what the client sent as far as it can go now. */
static void advance(struct gconn *c)
{
	struct api_error e;
	size_t used;

	while (!c->dead && c->in.len) {
		if (c->st == G_HEAD) {
			int rc = api_http_scan(&c->scan, c->in.p + c->scanned,
					       c->in.len - c->scanned, &used, &e);
			c->scanned += used;
			if (rc < 0) {
				atomic_fetch_add(&c->t->g->bad, 1);
				refuse(c, &e, NULL);
				return;
			}
			if (rc == 0)
				return;
			take_head(c);
		} else if (c->st == G_BODY) {
			if (pending(&c->tom) >= BACKLOG_MAX)
				return;
			if (c->req.chunked) {
				bool done;
				long n = api_http_chunks(&c->ch, c->in.p, c->in.len, emit_chunk, c,
							 &done, &e);
				if (n < 0) {
					atomic_fetch_add(&c->t->g->bad, 1);
					refuse(c, &e, NULL);  /* libmicrohttpd drops the request */
					return;
				}
				vl_buf_consume(&c->in, (size_t)n);
				if (done) {
					obuf_add(&c->tom, "0\r\n\r\n", 5);
					c->st = G_WAIT;
				}
			} else {
				size_t n = c->in.len < c->body_left ? c->in.len : (size_t)c->body_left;
				obuf_add(&c->tom, c->in.p, n);
				vl_buf_consume(&c->in, n);
				if (!(c->body_left -= n))
					c->st = G_WAIT;
			}
		} else {
			return;        /* the next request waits for this one's answer */
		}
	}
}

/* libmicrohttpd's answer is whole. */
static void answered(struct gconn *c)
{
	c->resp_pending = false;
	if (c->st == G_BODY || c->close_after || c->resp.close || c->c_eof) {
		close_mhd(c);       /* (an answer before the body: libmicrohttpd closes) */
		c->st = G_DRAIN;
		return;
	}
	c->st = G_HEAD;
	c->t_head = vl_now_ms() + c->t->g->cfg.header_ms;
	vl_buf_shrink(&c->in, 0);
	advance(c);
}

static bool client_in(struct gconn *c)
{
	if (!want_cin(c))
		return false;
	ssize_t n = recv(c->cfd, c->t->rbuf, c->st == G_LINGER ? READ_CHUNK : IN_MAX - c->in.len, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			c->dead = true;
		return false;
	}
	if (n == 0) {
		c->c_eof = true;
		/* a request not whole is abandoned; while an answer is on its
		 * way (or after it) the client may still read */
		if (c->st == G_LINGER || c->st == G_BODY ||
		    (c->st == G_HEAD && (c->in.len || !pending(&c->out))))
			c->dead = true;
		else if (c->st == G_HEAD)
			c->st = G_DRAIN;
		return true;
	}
	c->t_idle = vl_now_ms();
	if (c->st == G_LINGER)
		return true;
	vl_buf_append(&c->in, c->t->rbuf, (size_t)n);
	advance(c);
	return true;
}

/* libmicrohttpd closed its end: what it said goes out, then we close. */
static void mhd_closed(struct gconn *c)
{
	bool unanswered = c->resp_pending && !api_http_resp_started(&c->resp);

	close_mhd(c);
	if (c->st == G_LINGER)
		return;
	if (unanswered) {          /* a request dropped (cannot happen): still one answer */
		struct api_error e;
		vl_log(VL_LOG_ERROR, "api: libmicrohttpd closed a connection without an answer");
		fail_e(&e, 500, "internal", "the request was dropped without an answer");
		refuse(c, &e, NULL);
		return;
	}
	c->st = G_DRAIN;
}

static bool mhd_out(struct gconn *c)
{
	if (c->mfd < 0 || !pending(&c->tom))
		return false;
	ssize_t n = send(c->mfd, c->tom.b.p + c->tom.off, pending(&c->tom), MSG_NOSIGNAL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return false;
		mhd_closed(c);
		return true;
	}
	obuf_done(&c->tom, (size_t)n);
	if (c->st == G_BODY) {
		c->t_idle = vl_now_ms();    /* a stall on our side is not the client's */
		advance(c);
	}
	return true;
}

static bool mhd_in(struct gconn *c)
{
	if (c->mfd < 0 || pending(&c->out) >= BACKLOG_MAX)
		return false;
	ssize_t n = recv(c->mfd, c->t->rbuf, READ_CHUNK, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return false;
		n = 0;
	}
	if (n == 0) {
		mhd_closed(c);
		return true;
	}
	bool done = false;
	long used = c->resp_pending ? api_http_resp(&c->resp, c->t->rbuf, (size_t)n, &done) : -1;
	if (used != n) {           /* not framed, or past the answer: cannot happen */
		vl_log(VL_LOG_ERROR, "api: an answer of libmicrohttpd the gate cannot frame; "
		       "connection closed");
		c->dead = true;
		return false;
	}
	if (!pending(&c->out))
		c->t_idle = vl_now_ms();
	obuf_add(&c->out, c->t->rbuf, (size_t)n);
	if (done)
		answered(c);
	return true;
}

static bool client_out(struct gconn *c)
{
	if (!pending(&c->out) || c->st == G_LINGER)
		return false;
	ssize_t n = send(c->cfd, c->out.b.p + c->out.off, pending(&c->out), MSG_NOSIGNAL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			c->dead = true;
		return false;
	}
	c->t_idle = vl_now_ms();
	obuf_done(&c->out, (size_t)n);
	return true;
}

/* Every step that can be taken now, then the events to wait for. */
static void pump(struct gconn *c)
{
	bool more = true;

	if (c->gone)
		return;
	for (int round = 0; more && !c->dead && round < 16; round++) {
		more = client_in(c);
		if (!c->dead)
			more |= mhd_out(c);
		if (!c->dead)
			more |= mhd_in(c);
		if (!c->dead)
			more |= client_out(c);
		/* all said: close, after a short linger unless the client
		 * has closed (what it still sends is read and dropped, so
		 * that the answer is read, not reset) */
		if (!c->dead && c->st == G_DRAIN && !pending(&c->out)) {
			if (c->c_eof) {
				c->dead = true;
			} else {
				shutdown(c->cfd, SHUT_WR);
				c->st = G_LINGER;
				c->t_linger = vl_now_ms() + LINGER_MS;
				more = true;
			}
		}
	}
	if (c->dead)
		destroy(c);
	else
		update_events(c);
}

/* ---- accepting ---- */

/* Best effort: the answer, then close. */
static void refuse_fd(int fd, int status, const char *code, const char *msg)
{
	struct api_error e;
	struct vl_buf b;

	fail_e(&e, status, code, msg);
	vl_buf_init(&b);
	api_http_error(&b, &e, "Retry-After: 5\r\n");
	(void)!send(fd, b.p, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	vl_buf_free(&b);
	close(fd);
}

static void listen_events(struct gthread *t, bool on)
{
	for (int i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
					  .data.u64 = ((uint64_t)i << 3) | TAG_LISTEN };
		if (t->g->lfd[i] >= 0)
			epoll_ctl(t->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, t->g->lfd[i], &ev);
	}
}

static void on_accept(struct gthread *t, int li)
{
	struct api_gate *g = t->g;

	for (int k = 0; k < 64; k++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof sa;
		int fd = accept4(g->lfd[li], (struct sockaddr *)&sa, &salen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				warn_limited(g, "api: cannot accept connections: %s (raise the "
					     "descriptor limit, or lower api.max_connections)",
					     strerror(errno));
				listen_events(t, false);
				t->paused_until = vl_now_ms() + PAUSE_MS;
			}
			return;
		}
		atomic_fetch_add(&g->accepted, 1);
		if (atomic_load(&g->open) >= g->cfg.max_conns) {
			atomic_fetch_add(&g->refused, 1);
			warn_limited(g, "api: %s: connections refused", "api.max_connections reached");
			refuse_fd(fd, 503, "too_many_connections", "the API has api.max_connections "
				  "connections open; retry");
			continue;
		}
		struct gconn *c = vl_calloc(1, sizeof *c);
		c->t = t;
		c->cfd = fd;
		c->mfd = -1;
		c->tcp = li == 1;
		c->sa = sa;
		c->salen = salen;
		if (c->tcp && !ip_take(g, c)) {
			free(c);
			atomic_fetch_add(&g->refused, 1);
			refuse_fd(fd, 429, "too_many_connections", "this address has "
				  "api.max_connections_per_ip connections open; retry");
			continue;
		}
		atomic_fetch_add(&g->open, 1);
		c->t_head = vl_now_ms() + g->cfg.header_ms;
		c->next = t->conns;
		if (t->conns)
			t->conns->prev = c;
		t->conns = c;
		update_events(c);
	}
}

/* ---- clocks ---- */

static void tick(struct gthread *t)
{
	struct api_gate *g = t->g;
	uint64_t now = vl_now_ms();
	struct api_error e;

	if (t->paused_until && now >= t->paused_until) {
		t->paused_until = 0;
		listen_events(t, true);
	}
	for (struct gconn *c = t->conns, *next; c; c = next) {
		next = c->next;
		switch (c->st) {
		case G_HEAD:
			if (now < c->t_head)
				continue;
			atomic_fetch_add(&g->timeouts, 1);
			if (!c->in.len) {       /* nothing of a request: just close */
				c->dead = true;
				break;
			}
			fail_e(&e, 408, "request_timeout", "the request head did not arrive "
			       "whole within api.header_timeout");
			refuse(c, &e, NULL);
			break;
		case G_BODY:
		case G_WAIT:
		case G_DRAIN:
			if ((c->st != G_BODY && !pending(&c->out)) || now - c->t_idle < g->cfg.idle_ms)
				continue;
			atomic_fetch_add(&g->timeouts, 1);
			c->dead = true;
			break;
		case G_LINGER:
			if (now < c->t_linger)
				continue;
			c->dead = true;
			break;
		}
		pump(c);
	}
}

static void *gate_main(void *arg)
{
	struct gthread *t = arg;
	struct epoll_event evs[64];
	uint64_t last = vl_now_ms();

	vl_thread_name("vl-apigate");
	while (!atomic_load(&t->g->stop)) {
		int n = epoll_wait(t->ep, evs, 64, TICK_MS);
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			unsigned tag = (unsigned)(d & 7);
			if (tag == TAG_LISTEN)
				on_accept(t, (int)(d >> 3));
			else if (tag == TAG_CLIENT || tag == TAG_MHD)
				pump(vl_ud_ptr(d));
		}
		uint64_t now = vl_now_ms();
		if (now - last >= TICK_MS) {
			last = now;
			tick(t);
		}
		free_grave(t);
	}
	while (t->conns)
		destroy(t->conns);
	free_grave(t);
	return NULL;
}

/* ---- the gate ---- */

struct api_gate *api_gate_start(const struct api_gate_cfg *cfg, char *err, size_t errlen)
{
	struct api_gate *g = vl_calloc(1, sizeof *g);

	g->cfg = *cfg;
	g->token = vl_strdup(cfg->token ? cfg->token : "");
	g->lfd[0] = cfg->unix_fd;
	g->lfd[1] = cfg->tcp_fd;
	g->nthreads = cfg->threads ? cfg->threads : 1;
	pthread_mutex_init(&g->ipmu, NULL);
	if (getrandom(&g->seed, sizeof g->seed, 0) != sizeof g->seed)
		g->seed = vl_now_ns();
	for (int i = 0; i < 2; i++)
		if (g->lfd[i] >= 0)
			fcntl(g->lfd[i], F_SETFL, fcntl(g->lfd[i], F_GETFL) | O_NONBLOCK);
	g->t = vl_calloc(g->nthreads, sizeof *g->t);
	for (unsigned i = 0; i < g->nthreads; i++)
		g->t[i].ep = g->t[i].wake = -1;
	for (unsigned i = 0; i < g->nthreads; i++) {
		struct gthread *t = &g->t[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_WAKE };
		t->g = g;
		t->ep = epoll_create1(EPOLL_CLOEXEC);
		t->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (t->ep < 0 || t->wake < 0 || epoll_ctl(t->ep, EPOLL_CTL_ADD, t->wake, &ev) < 0) {
			snprintf(err, errlen, "api: cannot set up the gate: %s", strerror(errno));
			goto fail;
		}
		listen_events(t, true);
		if (pthread_create(&t->th, NULL, gate_main, t) != 0) {
			snprintf(err, errlen, "api: cannot start a thread");
			goto fail;
		}
		t->started = true;
	}
	return g;
fail:
	api_gate_stop(g);
	return NULL;
}

void api_gate_stats(struct api_gate *g, struct api_gate_stats *s)
{
	*s = (struct api_gate_stats){
		.open = atomic_load(&g->open), .accepted = atomic_load(&g->accepted),
		.refused = atomic_load(&g->refused), .timeouts = atomic_load(&g->timeouts),
		.bad_requests = atomic_load(&g->bad), .unauthorized = atomic_load(&g->unauth),
	};
}

void api_gate_stop(struct api_gate *g)
{
	uint64_t one = 1;

	if (!g)
		return;
	atomic_store(&g->stop, true);
	for (unsigned i = 0; i < g->nthreads; i++)
		if (g->t[i].wake >= 0)
			(void)!write(g->t[i].wake, &one, sizeof one);
	for (unsigned i = 0; i < g->nthreads; i++) {
		struct gthread *t = &g->t[i];
		if (t->started)
			pthread_join(t->th, NULL);
		if (t->ep >= 0)
			close(t->ep);
		if (t->wake >= 0)
			close(t->wake);
	}
	for (int i = 0; i < 2; i++)
		if (g->lfd[i] >= 0)
			close(g->lfd[i]);
	for (size_t i = 0; i < IP_BUCKETS; i++)
		while (g->ipt[i]) {
			struct ipslot *s = g->ipt[i];
			g->ipt[i] = s->next;
			free(s);
		}
	pthread_mutex_destroy(&g->ipmu);
	free(g->t);
	free(g->token);
	free(g);
}
