/*
 * c-ares on the owner's io_uring. c-ares' socket-state callback says which
 * sockets to watch; each gets a one-shot POLL_ADD, re-armed after every
 * completion: one-shot polls are level-triggered, and c-ares 1.18 reads a
 * TCP answer in several calls, so an edge-triggered multishot poll could
 * leave bytes unread with no wakeup to come. c-ares' retry timeouts go on
 * the ring as TIMEOUT SQEs, one armed at a time.
 */
#include "dns_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dns_watch {
	struct dns_ev ev;            /* first: user_data points here */
	struct dns_resolver *r;
	struct dns_watch *next;      /* live sockets */
	int fd;
	bool want_r, want_w;
	bool armed;                  /* a poll is in the kernel */
	bool removing;               /* ... and its removal is asked */
	bool busy;                   /* c-ares is processing it now */
	bool dead;                   /* c-ares closed the socket */
	unsigned armed_mask;
};

struct dns_timer {
	struct dns_ev ev;
	struct dns_resolver *r;
	struct __kernel_timespec ts; /* read by the kernel at submission */
	uint64_t deadline_ms;
	bool stale;                  /* replaced by an earlier one */
};

static uint64_t ud(struct dns_resolver *r, void *obj)
{
	return (uint64_t)(uintptr_t)obj | r->tag;
}

static struct io_uring_sqe *sqe_for(struct dns_resolver *r, void *obj)
{
	struct io_uring_sqe *sqe = vl_ring_sqe(r->ring);

	r->ops++;
	io_uring_sqe_set_data64(sqe, ud(r, obj));
	return sqe;
}

static void ev_link(struct dns_resolver *r, struct dns_ev *ev, uint8_t kind)
{
	ev->kind = kind;
	ev->next = r->objs.next;
	ev->prev = &r->objs;
	r->objs.next->prev = ev;
	r->objs.next = ev;
}

static void ev_free(struct dns_ev *ev)
{
	ev->prev->next = ev->next;
	ev->next->prev = ev->prev;
	free(ev);
}

/* ---- sockets ---- */

static void watch_arm(struct dns_watch *w)
{
	unsigned mask = (w->want_r ? POLLIN : 0) | (w->want_w ? POLLOUT : 0);

	if (!mask)
		return;
	io_uring_prep_poll_add(sqe_for(w->r, w), w->fd, mask);
	w->armed = true;
	w->armed_mask = mask;
}

static void watch_remove(struct dns_watch *w)
{
	if (!w->armed || w->removing)
		return;
	io_uring_prep_poll_remove(sqe_for(w->r, &w->r->nop), ud(w->r, w));
	w->removing = true;
}

static void watch_maybe_free(struct dns_watch *w)
{
	if (w->dead && !w->armed && !w->busy)
		ev_free(&w->ev);
}

static struct dns_watch *watch_find(struct dns_resolver *r, int fd)
{
	struct dns_watch *w = r->watches;

	while (w && w->fd != fd)
		w = w->next;
	return w;
}

static void watch_close(struct dns_resolver *r, struct dns_watch *w)
{
	struct dns_watch **pp = &r->watches;

	while (*pp != w)
		pp = &(*pp)->next;
	*pp = w->next;
	w->dead = true;
	/* The poll holds the file open until removed: remove it now, not
	 * when it would fire, which for a closed socket is never. */
	watch_remove(w);
	watch_maybe_free(w);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_watch *w = watch_find(r, fd);

	if (!readable && !writable) {
		if (w)
			watch_close(r, w);
		return;
	}
	if (!w) {
		w = vl_calloc(1, sizeof *w);
		ev_link(r, &w->ev, DNS_K_WATCH);
		w->r = r;
		w->fd = fd;
		w->next = r->watches;
		r->watches = w;
	}
	w->want_r = readable;
	w->want_w = writable;
	unsigned mask = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
	if (!w->armed && !w->busy)
		watch_arm(w);
	else if (w->armed && (mask & ~w->armed_mask))
		watch_remove(w);     /* re-armed with the new mask on its CQE */
}

static void on_watch(struct dns_resolver *r, struct dns_watch *w, int res)
{
	w->armed = false;
	w->removing = false;
	if (w->dead || !r->ch) {
		watch_maybe_free(w);
		return;
	}
	if (res > 0) {
		bool err = res & (POLLERR | POLLHUP);
		ares_socket_t rfd = (res & POLLIN) || err ? w->fd : ARES_SOCKET_BAD;
		ares_socket_t wfd = ((res & POLLOUT) || err) && w->want_w ? w->fd
									 : ARES_SOCKET_BAD;
		w->busy = true;
		r->in_ares++;
		ares_process_fd(r->ch, rfd, wfd);
		dns_io_leave(r);
		w->busy = false;
	}
	if (w->dead)
		watch_maybe_free(w);
	else
		watch_arm(w);
	dns_io_kick(r);
}

/* ---- timers ---- */

static void timer_set(struct dns_resolver *r, uint64_t deadline_ms)
{
	struct dns_timer *t = vl_calloc(1, sizeof *t);
	uint64_t now = vl_now_ms(), d = deadline_ms > now ? deadline_ms - now : 1;

	if (r->timer) {
		r->timer->stale = true;
		io_uring_prep_timeout_remove(sqe_for(r, &r->nop), ud(r, r->timer), 0);
	}
	ev_link(r, &t->ev, DNS_K_TIMER);
	t->r = r;
	t->deadline_ms = now + d;
	t->ts.tv_sec = (long long)(d / 1000);
	t->ts.tv_nsec = (long long)(d % 1000) * 1000000;
	io_uring_prep_timeout(sqe_for(r, t), &t->ts, 0, 0);
	r->timer = t;
}

void dns_io_kick(struct dns_resolver *r)
{
	/* A query's deadline is at least now + timeout (c-ares doubles it on
	 * later rounds), so a timer by then is never late; the exact one is
	 * taken from ares_timeout() when it fires, which in 1.18 walks every
	 * query: too dear to call per send. */
	if (!r->ch || !r->inflight)
		return;
	uint64_t deadline = vl_now_ms() + r->cfg.timeout_ms;
	if (!r->timer || r->timer->deadline_ms > deadline)
		timer_set(r, deadline);
}

static void on_timer(struct dns_resolver *r, struct dns_timer *t)
{
	struct timeval tv;

	if (r->timer == t)
		r->timer = NULL;
	if (!t->stale && r->ch) {
		r->in_ares++;
		ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
		dns_io_leave(r);
		if (r->ch && ares_timeout(r->ch, NULL, &tv)) {
			uint64_t d = vl_now_ms() + (uint64_t)tv.tv_sec * 1000 +
				     ((uint64_t)tv.tv_usec + 999) / 1000;
			if (!r->timer || r->timer->deadline_ms > d)
				timer_set(r, d);
		}
	}
	ev_free(&t->ev);
}

/* ---- the resolver's side ---- */

void dns_io_cqe(struct dns_resolver *r, struct io_uring_cqe *cqe)
{
	struct dns_ev *ev = (void *)(uintptr_t)(io_uring_cqe_get_data64(cqe) & ~(uint64_t)7);

	r->ops--;
	switch (ev->kind) {
	case DNS_K_WATCH:
		on_watch(r, (struct dns_watch *)ev, cqe->res);
		break;
	case DNS_K_TIMER:
		on_timer(r, (struct dns_timer *)ev);
		break;
	default:                     /* a removal's own completion */
		break;
	}
}

static int set_servers(struct dns_resolver *r, char *err, size_t errlen)
{
	struct vl_buf csv;
	int rc;

	if (!r->cfg.nservers)
		return 0;            /* /etc/resolv.conf, read by ares_init */
	vl_buf_init(&csv);
	for (size_t i = 0; i < r->cfg.nservers; i++)
		vl_buf_printf(&csv, "%s%s", i ? "," : "", r->cfg.servers[i]);
	vl_buf_append(&csv, "", 1);
	rc = ares_set_servers_ports_csv(r->ch, csv.p);
	if (rc != ARES_SUCCESS)
		snprintf(err, errlen, "dns servers \"%s\": %s", csv.p, ares_strerror(rc));
	vl_buf_free(&csv);
	return rc == ARES_SUCCESS ? 0 : -1;
}

int dns_io_init(struct dns_resolver *r, char *err, size_t errlen)
{
	struct ares_options o;
	int rc, mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
		       ARES_OPT_SOCK_STATE_CB | ARES_OPT_EDNSPSZ | ARES_OPT_SOCK_RCVBUF;

	r->objs.next = r->objs.prev = &r->objs;
	r->nop.kind = DNS_K_NOP;
	memset(&o, 0, sizeof o);
	/* EDNS: answers up to DNS_EDNS_SIZE over UDP before TC and TCP. */
	o.flags = ARES_FLAG_EDNS;
	o.timeout = (int)r->cfg.timeout_ms;
	o.tries = (int)r->cfg.tries;
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = r;
	o.ednspsz = DNS_EDNS_SIZE;
	/* Hundreds of answers can land between two turns of the loop; the
	 * default buffer (~200 datagrams) would drop them into timeouts. */
	o.socket_receive_buffer_size = DNS_RCVBUF;
	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS ||
	    (rc = ares_init_options(&r->ch, &o, mask)) != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		r->ch = NULL;
		return -1;
	}
	return set_servers(r, err, errlen);
}

void dns_io_leave(struct dns_resolver *r)
{
	if (--r->in_ares == 0 && r->shut_pending) {
		r->shut_pending = false;
		dns_io_shutdown(r);
	}
}

void dns_io_shutdown(struct dns_resolver *r)
{
	/* c-ares must not be destroyed under its own feet: a callback that
	 * shuts the resolver down has it done when c-ares returns. */
	if (r->in_ares) {
		r->shut_pending = true;
		return;
	}
	if (r->ch) {
		ares_channel ch = r->ch;
		ares_cancel(ch);     /* every query's callback: ECANCELLED */
		r->ch = NULL;
		ares_destroy(ch);    /* closes sockets: polls removed */
	}
	if (r->timer) {
		r->timer->stale = true;
		io_uring_prep_timeout_remove(sqe_for(r, &r->nop), ud(r, r->timer), 0);
		r->timer = NULL;
	}
}

void dns_io_free(struct dns_resolver *r)
{
	dns_io_shutdown(r);
	/* Flush our SQEs: the kernel reads a timeout's timespec when it
	 * takes the SQE, and must do so before that memory goes. */
	if (r->ops)
		io_uring_submit(&r->ring->ring);
	while (r->objs.next != &r->objs)
		ev_free(r->objs.next);
	r->watches = NULL;
	ares_library_cleanup();
}
