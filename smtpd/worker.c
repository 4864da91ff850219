/*
 * The SMTP server's worker: one io_uring per thread doing all socket I/O.
 * Multishot accept per listener, multishot recv into a provided buffer ring,
 * one send in flight per connection (replies produced meanwhile are batched
 * into the next one), a tick for idle timeouts, and a timeout per
 * connection for latency_ms, and an eventfd through which other threads
 * answer sessions that wait for a hook (the mailbox). TLS is OpenSSL over memory BIOs (tls/), so
 * encrypted and plain connections share the same I/O path.
 */
#include "smtpd.h"
#include "../tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define CQ_ENTRIES 65536
#define NBUFS 1024            /* provided receive buffers per worker */
#define BUFSZ 16384
#define MAX_MARKS 16
#define TLS_CHUNK 16384
#define MAX_WIRE (4u << 20)  /* replies a client does not read: then RST */
#define PAUSE_WIRE (256u << 10) /* stop reading while this much waits to go */
#define RESUME_WIRE (64u << 10)
#define INPUT_STEP 4096        /* input handled between backpressure checks */

/* user_data = vl_ud(pointer, op) */
enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_LATENCY, OP_TICK, OP_CANCEL, OP_WAKE };

#define WAIT_MAX_MS 30000     /* stopping: how long sessions waiting for a hook are given */

struct listener {
	int fd;
	struct smtpd_worker *w;
	char name[72];
	bool implicit_tls;
	bool rearm_on_tick;    /* accept failed (EMFILE...): retry later */
	uint64_t last_log_ms;
} __attribute__((aligned(8)));

struct mark {          /* --latency: bytes up to end may go at due */
	uint64_t end, due;
};

struct conn {
	struct smtpd_worker *w;
	int fd;
	unsigned ops;              /* SQEs in flight */
	bool closing, close_after_send, send_busy, recv_armed, timer_armed;
	bool reset_after_send;  /* a drop: RST once the replies before it went */
	bool timed_out, tls_started, implicit_tls;
	bool waiting;              /* the session waits for a hook's answer */
	struct vl_buf held;        /* plaintext input read meanwhile */
	bool paused;               /* recv cancelled until replies drain */
	struct vl_buf pending_in;  /* input read but not processed meanwhile */
	struct tls_conn *tls;
	struct vl_buf out;         /* plaintext replies from the session */
	struct vl_buf wire;        /* bytes to send (ciphertext under TLS) */
	struct vl_buf inflight;    /* bytes of the send in flight */
	size_t inflight_off;
	uint64_t wire_total, moved_total; /* absolute byte counts, for marks */
	struct mark marks[MAX_MARKS];
	int nmarks;
	struct __kernel_timespec lat_ts;
	uint64_t last_active;
	struct conn *idle_prev, *idle_next;  /* LRU, oldest first */
	struct conn *rearm_next;
	bool rearm;
	struct smtpd_sess sess;
} __attribute__((aligned(8)));

/* Answers from other threads: a list under a mutex, and an eventfd that
 * wakes the ring when the list stops being empty. */
struct mitem {
	struct smtpd_sess *s;
	int code;
	bool has_text;
	char text[SMTPD_REPLY_MAX];
};

struct smtpd_mbox {
	pthread_mutex_t mu;
	struct mitem *items;
	size_t n, cap;
	int efd;
	uint64_t val;              /* the ring reads the eventfd into this */
};

struct smtpd_worker {
	const struct smtpd_conf *conf;
	const struct smtpd_hooks *hooks;
	struct smtpd_mbox mbox;
	uint64_t nwaiting;
	struct vl_ring r;
	struct listener listeners[SMTPD_MAX_LISTEN];
	int nlisten;
	SSL_CTX *tls_ctx;
	struct smtpd_ctx ctx;
	struct smtpd_stats stats;
	struct conn *idle_head, *idle_tail;
	struct conn *rearm_list;
	uint64_t nconns;
	bool stopping;
	struct __kernel_timespec tick_ts;
} __attribute__((aligned(8)));

static struct io_uring_sqe *get_sqe(struct smtpd_worker *w)
{
	return vl_ring_sqe(&w->r);
}

/* ---- idle list ---- */

static void idle_remove(struct smtpd_worker *w, struct conn *c)
{
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else if (w->idle_head == c)
		w->idle_head = c->idle_next;
	else
		return; /* not listed */
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	else
		w->idle_tail = c->idle_prev;
	c->idle_prev = c->idle_next = NULL;
}

static void idle_touch(struct smtpd_worker *w, struct conn *c)
{
	idle_remove(w, c);
	c->last_active = vl_now_ms();
	c->idle_prev = w->idle_tail;
	if (w->idle_tail)
		w->idle_tail->idle_next = c;
	else
		w->idle_head = c;
	w->idle_tail = c;
}

/* ---- connection lifetime ---- */

static void conn_maybe_free(struct conn *c)
{
	if (!c->closing || c->ops > 0 || c->rearm)
		return;
	close(c->fd);
	tls_conn_free(c->tls);
	smtpd_sess_free(&c->sess);
	vl_buf_free(&c->out);
	vl_buf_free(&c->wire);
	vl_buf_free(&c->inflight);
	vl_buf_free(&c->pending_in);
	vl_buf_free(&c->held);
	c->w->nconns--;
	free(c);
}

static void conn_close(struct conn *c, bool reset)
{
	struct smtpd_worker *w = c->w;

	if (c->closing)
		return;
	c->closing = true;
	if (reset) { /* SO_LINGER 0: close() sends RST, as a crashed peer would */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	idle_remove(w, c);
	atomic_fetch_sub_explicit(w->ctx.conns_open, 1, memory_order_relaxed);
	SMTPD_STAT_ADD(&w->stats, conns_open, (uint64_t)-1);
	/* A graceful close ends the recv and send with shutdown(): an async
	 * cancel scans every request on the ring, quadratic over thousands of
	 * closing connections. A reset must not send a FIN first: cancel. */
	if ((c->recv_armed || c->send_busy) && !reset) {
		shutdown(c->fd, SHUT_RDWR);
	} else if (c->recv_armed || c->send_busy) {
		struct io_uring_sqe *sqe = get_sqe(w);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, vl_ud(c, OP_CANCEL));
		c->ops++;
	}
	if (c->timer_armed) { /* do not keep the fd (and a drop's RST) waiting */
		struct io_uring_sqe *sqe = get_sqe(w);
		io_uring_prep_timeout_remove(sqe, vl_ud(c, OP_LATENCY), 0);
		io_uring_sqe_set_data64(sqe, vl_ud(c, OP_CANCEL));
		c->ops++;
	}
	conn_maybe_free(c);
}

static void arm_recv(struct conn *c)
{
	vl_ring_recv(&c->w->r, c->fd, vl_ud(c, OP_RECV));
	c->recv_armed = true;
	c->ops++;
}

/* ---- output ---- */

static void arm_latency_timer(struct conn *c, uint64_t now)
{
	uint64_t wait = c->marks[0].due > now ? c->marks[0].due - now : 0;
	struct io_uring_sqe *sqe = get_sqe(c->w);

	c->lat_ts.tv_sec = (long long)(wait / 1000);
	c->lat_ts.tv_nsec = (long long)(wait % 1000) * 1000000;
	io_uring_prep_timeout(sqe, &c->lat_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, vl_ud(c, OP_LATENCY));
	c->timer_armed = true;
	c->ops++;
}

/* How many wire bytes may go now: all of them, or with --latency those
 * whose hold time has passed. */
static size_t releasable(struct conn *c)
{
	if (!c->w->conf->latency_ms)
		return c->wire.len;
	uint64_t now = vl_now_ms(), upto = c->moved_total;
	int i = 0;

	while (i < c->nmarks && c->marks[i].due <= now)
		upto = c->marks[i++].end;
	memmove(c->marks, c->marks + i, sizeof c->marks[0] * (size_t)(c->nmarks - i));
	c->nmarks -= i;
	if (c->nmarks && !c->timer_armed)
		arm_latency_timer(c, now);
	return (size_t)(upto - c->moved_total);
}

static void conn_flush(struct conn *c)
{
	if (c->send_busy || c->closing)
		return;
	size_t n = releasable(c);
	if (n == 0) {
		if (c->close_after_send && c->wire.len == 0 && !c->waiting)
			conn_close(c, c->reset_after_send);
		return;
	}
	vl_buf_reset(&c->inflight);
	if (n == c->wire.len) { /* the usual case: hand over the whole buffer */
		struct vl_buf t = c->inflight;
		c->inflight = c->wire;
		c->wire = t;
	} else {
		vl_buf_append(&c->inflight, c->wire.p, n);
		vl_buf_consume(&c->wire, n);
	}
	c->moved_total += n;
	c->inflight_off = 0;
	struct io_uring_sqe *sqe = get_sqe(c->w);
	io_uring_prep_send(sqe, c->fd, c->inflight.p, c->inflight.len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, vl_ud(c, OP_SEND));
	c->send_busy = true;
	c->ops++;
}

/* Move the session's replies to the wire, through TLS when it is on;
 * with last, end the TLS session after them (close_notify). */
static void conn_emit(struct conn *c, bool last)
{
	size_t before = c->wire.len;

	if (c->tls) {
		if (c->out.len && tls_conn_write(c->tls, c->out.p, c->out.len) < 0)
			c->close_after_send = true;
		if (last)
			tls_conn_shutdown(c->tls);
		tls_conn_output(c->tls, &c->wire);
	} else {
		vl_buf_append(&c->wire, c->out.p, c->out.len);
	}
	vl_buf_reset(&c->out);
	c->wire_total += c->wire.len - before;
	if (c->w->conf->latency_ms && c->wire.len > before) {
		uint64_t due = vl_now_ms() + c->w->conf->latency_ms;
		if (c->nmarks == MAX_MARKS)
			c->nmarks--; /* merge into the last: later, never sooner */
		c->marks[c->nmarks++] = (struct mark){c->wire_total, due};
	}
}

/* Act on what the session asked for, then send. */
static void conn_after_session(struct conn *c)
{
	struct smtpd_sess *s = &c->sess;

	if (s->action == SMTPD_DROP) {
		/* The reset replaces the reply to this command only: the
		 * replies to the commands before it (a pipelining client's
		 * earlier transactions) go first, as they would have had the
		 * client waited for each, then the RST. */
		conn_emit(c, false);
		c->close_after_send = c->reset_after_send = true;
		if (c->wire.len == 0 && !c->send_busy) {
			conn_close(c, true);
			return;
		}
		conn_flush(c);
		return;
	}
	if (s->action == SMTPD_WAIT && !c->waiting) {
		c->waiting = true;  /* c lives until the answer comes */
		c->ops++;
		c->w->nwaiting++;
	}
	if (c->wire.len > MAX_WIRE) {
		vl_log(VL_LOG_WARN, "%s: does not read its replies; reset", s->peer);
		conn_close(c, true);
		return;
	}
	if (c->wire.len > PAUSE_WIRE && c->recv_armed && !c->paused) {
		/* Backpressure: a client that does not read its replies is not
		 * read either, so it cannot make us buffer without bound. */
		struct io_uring_sqe *sqe = get_sqe(c->w);
		io_uring_prep_cancel64(sqe, vl_ud(c, OP_RECV), 0);
		io_uring_sqe_set_data64(sqe, vl_ud(c, OP_CANCEL));
		c->ops++;
		c->paused = true;
	}
	conn_emit(c, s->action == SMTPD_CLOSE && !c->close_after_send);
	if (s->action == SMTPD_CLOSE) {
		c->close_after_send = true;
		s->state = SMTPD_S_CLOSED;
	} else if (s->action == SMTPD_STARTTLS && !c->tls) {
		/* The 220 went out in clear above; from here on, TLS. */
		c->tls = tls_conn_new_server(c->w->tls_ctx);
		if (!c->tls)
			c->close_after_send = true;
	}
	conn_flush(c);
}

/* ---- input ---- */

static void hold_input(struct conn *c, const char *data, size_t len)
{
	vl_buf_append(&c->held, data, len);
	if (c->held.len > PAUSE_WIRE && c->recv_armed && !c->paused) {
		struct io_uring_sqe *sqe = get_sqe(c->w);
		io_uring_prep_cancel64(sqe, vl_ud(c, OP_RECV), 0);
		io_uring_sqe_set_data64(sqe, vl_ud(c, OP_CANCEL));
		c->ops++;
		c->paused = true;
	}
}

static void conn_plaintext(struct conn *c, const char *data, size_t len)
{
	if (c->waiting) {
		hold_input(c, data, len);
		return;
	}
	if (c->sess.action != SMTPD_OK || c->close_after_send)
		return; /* e.g. bytes after STARTTLS or QUIT: ignored */
	size_t n = smtpd_sess_feed(&c->sess, data, len);
	if (c->sess.action == SMTPD_WAIT && n < len)
		hold_input(c, data + n, len - n);
}

/* The handshake is done: the session starts over inside TLS (with
 * implicit TLS it starts there: the greeting goes now). */
static void tls_begin(struct conn *c)
{
	if (c->tls_started)
		return;
	c->tls_started = true;
	smtpd_sess_tls_started(&c->sess, tls_conn_version(c->tls), tls_conn_cipher(c->tls));
	c->sess.tls_resumed = tls_conn_resumed(c->tls);
	if (c->implicit_tls)
		smtpd_sess_greet(&c->sess);
}

static void conn_tls_input(struct conn *c, const char *data, size_t len)
{
	char buf[TLS_CHUNK];
	ssize_t n;

	tls_conn_input(c->tls, data, len);
	while ((n = tls_conn_read(c->tls, buf, sizeof buf)) > 0) {
		tls_begin(c);
		conn_plaintext(c, buf, (size_t)n);
		if (c->sess.action != SMTPD_OK && c->sess.action != SMTPD_WAIT)
			break;
	}
	if (n < 0 || tls_conn_closed(c->tls)) {
		char err[256];
		vl_log(VL_LOG_DEBUG, "%s: TLS: %s", c->sess.peer,
		       n < 0 ? tls_last_error(err, sizeof err) : "closed");
		conn_emit(c, false); /* the alert, if any, with its latency mark */
		c->close_after_send = true;
		return;
	}
	if (tls_conn_established(c->tls))
		tls_begin(c);
}

static void conn_input(struct conn *c, const char *data, size_t len)
{
	if (c->close_after_send)
		return; /* leaving: nothing more is read, nothing buffered */
	idle_touch(c->w, c);
	/* Paused: keep what the kernel had already read, unprocessed, so a
	 * client that does not read costs its input, not 20x that in replies. */
	for (size_t off = 0; off < len && !c->closing; off += INPUT_STEP) {
		if (c->paused) {
			vl_buf_append(&c->pending_in, data + off, len - off);
			return;
		}
		size_t n = len - off < INPUT_STEP ? len - off : INPUT_STEP;
		if (c->tls)
			conn_tls_input(c, data + off, n);
		else
			conn_plaintext(c, data + off, n);
		conn_after_session(c);
	}
}

/* Replies drained: read again, starting with what waited. */
static void conn_resume(struct conn *c)
{
	struct vl_buf in = c->pending_in;

	c->paused = false;
	vl_buf_init(&c->pending_in);
	c->ops++; /* conn_input may close c */
	conn_input(c, in.p, in.len);
	c->ops--;
	vl_buf_free(&in);
	if (c->closing)
		conn_maybe_free(c);
	else if (!c->paused && !c->recv_armed && !c->close_after_send)
		arm_recv(c);
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
	struct smtpd_worker *w = c->w;
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more) {
		c->recv_armed = false;
		c->ops--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		c->ops++; /* keep c alive if the input makes it close */
		if (cqe->res > 0 && !c->closing)
			conn_input(c, vl_ring_buf(&w->r, bid), (size_t)cqe->res);
		vl_ring_buf_return(&w->r, bid);
		c->ops--;
	}
	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (cqe->res == 0) {
		/* The client half-closed: it may still read. Answer what it sent
		 * (a 250 not seen is a message sent twice), then close; a session
		 * waiting for a hook gets its answer first. */
		c->close_after_send = true;
		if (!c->waiting)
			c->sess.state = SMTPD_S_CLOSED;
		conn_flush(c);
		return;
	}
	if (cqe->res == -ECANCELED && c->paused)
		return; /* recv stopped for backpressure; re-armed when drained */
	if (cqe->res < 0 && cqe->res != -ENOBUFS) {
		conn_close(c, false); /* reset: the client is gone */
		return;
	}
	if (!more && !c->rearm) { /* multishot ended (e.g. ENOBUFS): re-arm */
		c->rearm = true;
		c->rearm_next = w->rearm_list;
		w->rearm_list = c;
	}
}

static void on_send(struct conn *c, int res)
{
	c->ops--;
	c->send_busy = false;
	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (res < 0) {
		conn_close(c, false);
		return;
	}
	c->inflight_off += (size_t)res;
	if (c->inflight_off < c->inflight.len) { /* short send: the rest */
		struct io_uring_sqe *sqe = get_sqe(c->w);
		io_uring_prep_send(sqe, c->fd, c->inflight.p + c->inflight_off,
				   c->inflight.len - c->inflight_off, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, vl_ud(c, OP_SEND));
		c->send_busy = true;
		c->ops++;
		return;
	}
	vl_buf_reset(&c->inflight);
	vl_buf_shrink(&c->inflight, 1 << 16);
	if (c->paused && !c->waiting && c->wire.len < RESUME_WIRE && !c->recv_armed &&
	    !c->close_after_send) {
		conn_resume(c);
		if (c->closing)
			return;
	}
	conn_flush(c);
}

static void on_latency(struct conn *c)
{
	c->ops--;
	c->timer_armed = false;
	if (c->closing)
		conn_maybe_free(c);
	else
		conn_flush(c);
}

/* ---- answers from other threads ---- */

void smtpd_mbox_post(struct smtpd_mbox *m, struct smtpd_sess *s, int code, const char *text)
{
	uint64_t one = 1;

	pthread_mutex_lock(&m->mu);
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->items = vl_realloc(m->items, m->cap * sizeof *m->items);
	}
	struct mitem *it = &m->items[m->n++];
	it->s = s;
	it->code = code;
	it->has_text = text != NULL;
	if (text)
		snprintf(it->text, sizeof it->text, "%s", text);
	bool first = m->n == 1;
	pthread_mutex_unlock(&m->mu);
	if (first && write(m->efd, &one, sizeof one) < 0)
		vl_log(VL_LOG_ERROR, "smtpd: eventfd write: %s", strerror(errno));
}

static void arm_wake(struct smtpd_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_read(sqe, w->mbox.efd, &w->mbox.val, sizeof w->mbox.val, 0);
	io_uring_sqe_set_data64(sqe, vl_ud(w, OP_WAKE));
}

/* The session got its answer: reply, then go on with what was held. */
static void conn_answered(struct conn *c, const struct mitem *it)
{
	struct vl_buf in = c->held;

	c->waiting = false;
	c->w->nwaiting--;
	if (c->closing) {
		c->ops--;
		conn_maybe_free(c);
		return;
	}
	smtpd_sess_apply(&c->sess, it->code, it->has_text ? it->text : NULL);
	conn_after_session(c);
	vl_buf_init(&c->held);
	for (size_t off = 0; off < in.len && !c->closing && !c->waiting &&
	     !c->close_after_send;) {
		size_t n = in.len - off < INPUT_STEP ? in.len - off : INPUT_STEP;
		conn_plaintext(c, in.p + off, n);
		off += n;
		if (c->waiting && off < in.len) /* the rest waits again */
			vl_buf_append(&c->held, in.p + off, in.len - off);
		conn_after_session(c);
	}
	vl_buf_free(&in);
	c->ops--;
	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (c->paused && !c->waiting && c->wire.len < RESUME_WIRE && !c->recv_armed)
		conn_resume(c);
}

static void on_wake(struct smtpd_worker *w)
{
	struct mitem *items;
	size_t n;

	pthread_mutex_lock(&w->mbox.mu);
	items = w->mbox.items;
	n = w->mbox.n;
	w->mbox.items = NULL;
	w->mbox.n = w->mbox.cap = 0;
	pthread_mutex_unlock(&w->mbox.mu);
	for (size_t i = 0; i < n; i++)
		conn_answered(items[i].s->conn, &items[i]);
	free(items);
	arm_wake(w);
}

/* ---- accept ---- */

static void arm_accept(struct listener *l)
{
	struct io_uring_sqe *sqe = get_sqe(l->w);

	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, vl_ud(l, OP_ACCEPT));
}

static void on_accept(struct listener *l, struct io_uring_cqe *cqe)
{
	struct smtpd_worker *w = l->w;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int one = 1;

	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (cqe->res < 0) {
		/* Out of descriptors or memory: retrying at once would spin, so
		 * the next tick retries, and the log says so once a second. */
		uint64_t now = vl_now_ms();
		if (cqe->res != -ECANCELED && now - l->last_log_ms >= 1000) {
			l->last_log_ms = now;
			vl_log(VL_LOG_WARN, "accept on %s: %s", l->name, strerror(-cqe->res));
		}
		if (!more && !w->stopping)
			l->rearm_on_tick = true;
		return;
	}
	if (!more && !w->stopping)
		arm_accept(l);
	int fd = cqe->res;
	if (w->stopping) {
		close(fd);
		return;
	}
	struct conn *c = vl_calloc(1, sizeof *c);
	c->w = w;
	c->fd = fd;
	w->nconns++;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	smtpd_sess_init(&c->sess, &w->ctx, &c->out);
	c->sess.mbox = &w->mbox;
	c->sess.conn = c;
	c->implicit_tls = l->implicit_tls;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		vl_sockaddr_str(&ss, c->sess.peer, sizeof c->sess.peer);
	sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		vl_sockaddr_str(&ss, c->sess.local, sizeof c->sess.local);
	atomic_fetch_add_explicit(w->ctx.conns_open, 1, memory_order_relaxed);
	SMTPD_STAT_ADD(&w->stats, conns_open, 1);
	SMTPD_STAT_ADD(&w->stats, conns_total, 1);
	idle_touch(w, c);
	arm_recv(c);
	if (c->implicit_tls) { /* the client speaks first: its ClientHello */
		if (!(c->tls = tls_conn_new_server(w->tls_ctx)))
			conn_close(c, true);
		return;
	}
	smtpd_sess_greet(&c->sess);
	conn_after_session(c);
}

/* ---- timers ---- */

static void arm_tick(struct smtpd_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, vl_ud(w, OP_TICK));
}

/* Idle connections get a 421; one that still has not gone by the next
 * expiry (it may not even read) is reset. */
static void expire_idle(struct smtpd_worker *w)
{
	uint64_t now = vl_now_ms();

	while (w->idle_head && now - w->idle_head->last_active >= w->conf->timeout_ms) {
		struct conn *c = w->idle_head;
		if (c->timed_out) {
			conn_close(c, true);
			continue;
		}
		idle_touch(w, c);
		if (c->waiting)
			continue; /* the hook's answer is what it waits for */
		c->timed_out = true;
		if (c->sess.state == SMTPD_S_CLOSED)
			continue;
		if (c->tls && !c->tls_started) { /* no way to say 421 mid-handshake */
			SMTPD_STAT_ADD(&w->stats, timeouts, 1);
			conn_close(c, false);
			continue;
		}
		c->sess.action = SMTPD_OK;
		c->sess.state = SMTPD_S_CMD;
		smtpd_sess_timeout(&c->sess);
		conn_after_session(c);
	}
}

static void stop_worker(struct smtpd_worker *w)
{
	w->stopping = true;
	for (int i = 0; i < w->nlisten; i++) {
		struct io_uring_sqe *sqe = get_sqe(w);
		io_uring_prep_cancel_fd(sqe, w->listeners[i].fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, 0);
	}
	/* A session waiting for a hook's answer gets it, then closes: a 250
	 * the client never sees is a message it sends twice. */
	for (struct conn *c = w->idle_head, *next; c; c = next) {
		next = c->idle_next;
		if (c->waiting) {
			c->close_after_send = true;
			idle_remove(w, c);
		} else {
			conn_close(c, false);
		}
	}
}

/* ---- setup ---- */

int smtpd_listen_parse(const char *spec, struct smtpd_listen *l)
{
	unsigned char bin[16];
	struct smtpd_listen t = { .implicit_tls = l->implicit_tls };

	if (vl_parse_hostport(spec, t.host, sizeof t.host, &t.port) < 0 || t.port == 0 ||
	    (inet_pton(AF_INET, t.host, bin) != 1 && inet_pton(AF_INET6, t.host, bin) != 1))
		return -1;
	*l = t;
	return 0;
}

static int open_listener(struct listener *l, const struct smtpd_listen *spec,
			 char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *a4 = (void *)&ss;
	struct sockaddr_in6 *a6 = (void *)&ss;
	if (inet_pton(AF_INET, spec->host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(spec->port);
		sl = sizeof *a4;
	} else if (inet_pton(AF_INET6, spec->host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(spec->port);
		sl = sizeof *a6;
	} else {
		snprintf(err, errlen, "listen %s: not an IP address", spec->host);
		return -1;
	}
	snprintf(l->name, sizeof l->name, "%s:%u", spec->host, spec->port);
	l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0 ||
	    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    bind(l->fd, (struct sockaddr *)&ss, sl) < 0 || listen(l->fd, 4096) < 0) {
		snprintf(err, errlen, "listen %s: %s", l->name, strerror(errno));
		if (l->fd >= 0)
			close(l->fd);
		return -1;
	}
	return 0;
}

struct smtpd_worker *smtpd_worker_new(const struct smtpd_conf *conf,
				      const struct smtpd_hooks *hooks, void *hook_arg,
				      unsigned id, SSL_CTX *tls, _Atomic uint64_t *conns_open,
				      char *err, size_t errlen)
{
	struct smtpd_worker *w = vl_cacheline_alloc(sizeof *w);

	w->conf = conf;
	w->hooks = hooks;
	w->ctx = (struct smtpd_ctx){
		.conf = conf, .hooks = hooks, .hook_arg = hook_arg, .stats = &w->stats,
		.worker = id, .conns_open = conns_open,
	};
	pthread_mutex_init(&w->mbox.mu, NULL);
	w->mbox.efd = eventfd(0, EFD_CLOEXEC);
	uint64_t tick = conf->timeout_ms / 4;
	tick = tick > 200 ? 200 : tick < 10 ? 10 : tick;
	w->tick_ts.tv_sec = (long long)(tick / 1000);
	w->tick_ts.tv_nsec = (long long)(tick % 1000) * 1000000;
	w->tls_ctx = tls;
	if (w->mbox.efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if (vl_ring_init(&w->r, RING_ENTRIES, CQ_ENTRIES, NBUFS, BUFSZ, err, errlen) < 0)
		goto fail;
	for (int i = 0; i < conf->nlisten; i++) {
		w->listeners[i].w = w;
		w->listeners[i].implicit_tls = conf->listen[i].implicit_tls;
		if ((conf->listen[i].implicit_tls || conf->starttls) && !tls) {
			snprintf(err, errlen, "%s:%u: TLS without a certificate",
				 conf->listen[i].host, conf->listen[i].port);
			goto fail;
		}
		if (open_listener(&w->listeners[i], &conf->listen[i], err, errlen) < 0)
			goto fail;
		w->nlisten++;
	}
	return w;
fail:
	smtpd_worker_free(w);
	return NULL;
}

static void dispatch(void *arg, struct io_uring_cqe *cqe)
{
	struct smtpd_worker *w = arg;
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = vl_ud_ptr(ud);

	if (!p)
		return;
	switch ((enum op)vl_ud_op(ud)) {
	case OP_ACCEPT: on_accept(p, cqe); break;
	case OP_RECV: on_recv(p, cqe); break;
	case OP_SEND: on_send(p, cqe->res); break;
	case OP_LATENCY: on_latency(p); break;
	case OP_WAKE: on_wake(p); break;
	case OP_CANCEL: {
		struct conn *c = p;
		c->ops--;
		conn_maybe_free(c);
		break;
	}
	case OP_TICK:
		arm_tick(w); /* also while stopping: the deadline needs it */
		for (int i = 0; i < w->nlisten; i++)
			if (w->listeners[i].rearm_on_tick && !w->stopping) {
				w->listeners[i].rearm_on_tick = false;
				arm_accept(&w->listeners[i]);
			}
		break;
	}
}

int smtpd_worker_run(struct smtpd_worker *w, atomic_bool *stop)
{
	uint64_t stop_deadline = 0;

	if (vl_ring_enable(&w->r) < 0) {
		vl_log(VL_LOG_ERROR, "io_uring_enable_rings failed");
		return -1;
	}
	for (int i = 0; i < w->nlisten; i++)
		arm_accept(&w->listeners[i]);
	arm_tick(w);
	arm_wake(w);
	for (;;) {
		if (vl_ring_wait(&w->r, dispatch, w) < 0)
			return -1;
		while (w->rearm_list) {
			struct conn *c = w->rearm_list;
			w->rearm_list = c->rearm_next;
			c->rearm = false;
			if (!c->closing)
				arm_recv(c);
			else
				conn_maybe_free(c);
		}
		if (!w->stopping) {
			expire_idle(w);
			if (atomic_load(stop)) {
				stop_worker(w);
				stop_deadline = vl_now_ms() + 2000;
			}
		} else if (w->nconns == 0) {
			return 0;
		} else if (vl_now_ms() > stop_deadline + (w->nwaiting ? WAIT_MAX_MS : 0)) {
			if (w->nwaiting)
				vl_log(VL_LOG_ERROR, "smtpd: %llu sessions still wait for an answer",
				       (unsigned long long)w->nwaiting);
			return 0;
		}
	}
}

struct smtpd_stats *smtpd_worker_stats(struct smtpd_worker *w)
{
	return &w->stats;
}

void smtpd_worker_free(struct smtpd_worker *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->nlisten; i++)
		close(w->listeners[i].fd);
	vl_ring_exit(&w->r);
	if (w->mbox.efd >= 0)
		close(w->mbox.efd);
	free(w->mbox.items);
	pthread_mutex_destroy(&w->mbox.mu);
	free(w);
}
