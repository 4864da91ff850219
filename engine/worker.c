/*
 * An engine worker: one thread, one io_uring, its own pools and
 * connections (each a lifecycle machine, enum conn_state, under its SMTP
 * session's). Connect with a linked timeout, sendmsg with iovecs
 * (commands, then the body's own memory), multishot recv into a provided
 * buffer ring, timers from a heap, and an inbox other threads push
 * messages into (a lock-free MPSC list woken by an eventfd read on the
 * ring).
 */
#include "engine_int.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <unistd.h>

#define RING_ENTRIES 4096
#define CQ_ENTRIES 65536
#define NBUFS 1024
#define BUFSZ 16384
#define TICK_MS 50
#define TLS_RECORD_MAX 16384    /* plaintext per TLS record (RFC 8446 5.1) */
#define POOL_RETRY_MS 1000 /* no new connection this soon after one failed */
#define SEND_ERR_READ_MS 2000 /* after a failed send, the peer's last replies may still come */
/* TLS handshakes a worker runs at once; more wait their turn. A handshake
 * holds some 40 KB (OpenSSL's 16 KB message buffer, its record buffers,
 * the peer's certificate) that an established session gives back: ten
 * thousand sessions starting together would otherwise hold 400 MB at
 * once. At 50 ms a flight this still admits thousands a second. */
#define HANDSHAKES_MAX 256
#define MAY_PLAIN_MS 600000 /* how long a host's broken TLS is remembered */

/* user_data = vl_ud(pointer, op). OP_DNS: the resolver's own SQEs
 * (dns_new's tag), handed to dns_on_cqe. */
enum op { OP_DNS = 0, OP_CONNECT, OP_LINK_TIMEOUT, OP_RECV, OP_SEND, OP_WAKE, OP_TICK };

struct pool;

/* A pool's DANE state (RFC 7672) under policy dane or dane-only: the host's
 * TLSA RRset, looked up on the worker's own resolver before the first
 * connection and again when its TTL is over. Connections wait for it. */
enum dane_state {
	DANE_UNKNOWN,  /* never asked */
	DANE_LOOKING,  /* a lookup in flight: no connection opens meanwhile */
	DANE_NONE,     /* no usable, DNSSEC-validated records: TLS without
			* authentication (dane), or nothing (dane-only) */
	DANE_RECORDS,  /* usable validated records: every connection
			* authenticates by them or sends nothing */
	DANE_FAILED,   /* the lookup failed (a bogus answer, SERVFAIL, a
			* timeout): the host cannot be used until it is over */
};
#define DANE_RETRY_MS 60000  /* a failed lookup is asked again after this */
#define DANE_MIN_TTL_MS 30000
struct pool_dane {
	enum dane_state st;
	bool asking;                 /* inside dns_resolve_tlsa: answered inline */
	uint64_t until;              /* the answer's end of life, ms */
	bool at_canon;               /* the lookup in flight asks the CNAME
				      * target's name (RFC 7672 2.2.2) */
	char base[256];              /* the TLSA base domain of the records */
	struct tls_tlsa *rr;         /* DANE_RECORDS: the RRset (data after it) */
	char *text;                  /* ... as "u s m hex" lines, for reports */
	size_t n, usable;
	char why[400];               /* what the state rests on, for results */
};

/*
 * A connection's lifecycle: what the worker does with the socket and where
 * the connection stands in its pool. The SMTP dialogue on it is the
 * session's own machine (enum eng_state, session.c); this one sits under
 * it. Every change goes through conn_enter(), which checks it against
 * conn_next[] and logs it at debug level. docs/engine.md has the diagram.
 *
 *   NEW -> CONNECTING -> SETUP <-> TLS
 *               |                   ^
 *               +-------------------+  (implicit TLS: the handshake first)
 *                          |
 *                          v
 *                     IDLE <-> BUSY
 *                          |
 *                          v
 *                       QUITTING
 *                          |
 *                          v
 *                       DRAINING -> CLOSING -> CLOSED
 *
 * SETUP's first READY goes to IDLE, BUSY (a message waits) or QUITTING
 * (stopping, or max_messages_per_connection 0); SETUP, IDLE and BUSY may go
 * to DRAINING too (the session ended: a refusal, a 421). Every live state
 * may go straight to CLOSING: a failure (conn_fail), a timeout, EOF.
 */
enum conn_state {
	CONN_NEW,        /* allocated, not yet counted in its pool */
	CONN_CONNECTING, /* TCP connect in flight, with its linked timeout */
	CONN_SETUP,      /* banner, EHLO, STARTTLS, AUTH: not usable yet */
	CONN_TLS,        /* the TLS handshake after STARTTLS's 220, or right
			  * after the connect (implicit TLS) */
	CONN_IDLE,       /* session READY, on the pool's idle list */
	CONN_BUSY,       /* a transaction (and its RSET) in progress */
	CONN_QUITTING,   /* QUIT sent: its reply, EOF or the quit timeout ends it */
	CONN_DRAINING,   /* the session is over: its last output goes, then close */
	CONN_CLOSING,    /* out of its pool, socket shut down: CQEs still to come */
	CONN_CLOSED,     /* freed (seen only in the log) */
	CONN_NSTATES
};

struct conn {
	struct eng_worker *w;
	struct pool *pool;
	int fd;
	enum conn_state state;         /* changed only by conn_enter() */
	/* Requests in flight on the ring whose CQEs point at c (the connect
	 * and its linked timeout, the multishot recv, a send), plus a hold
	 * while on_recv hands input to the session, which may close c. Several
	 * are out at once and the kernel owns them, so a count, not the state,
	 * says when a CLOSING connection may be freed: at zero. */
	unsigned ops;
	/* Facts the lifecycle state does not carry: */
	bool established;   /* reached READY once: counted in nestablished,
			     * not nconnecting. DRAINING and CLOSING are
			     * reached both before and after, and the close
			     * must know which count to give back and whether
			     * the host failed before it was ever usable. */
	bool send_busy;     /* a sendmsg in flight: may overlap any live state */
	int send_err;       /* a send failed (its errno): nothing more goes, but
			     * replies already sent by the peer (a pipelined
			     * earlier transaction's 250) are still read; the
			     * receive side's end then fails the rest */
	bool body_sent;     /* the send in flight carries a body: when it is
			     * done, the wait for the reply begins */
	bool tls_shut;      /* close_notify queued (once, while DRAINING) */
	bool dane;          /* its handshake must authenticate by the pool's
			     * TLSA records (decided when TLS starts: a
			     * refresh of the records meanwhile changes
			     * nothing for it) */
	bool verify;        /* its handshake must pass WebPKI verification of
			     * the route's name (verify, or MTA-STS without
			     * DANE): enforced, or only reported (testing) */
	bool tls_fallback;  /* TLS broke under `may`: the close is no failure
			     * of the host; the clear-text retry follows */
	bool hs_running;    /* its handshake counts in w->nhandshakes */
	bool hs_waiting;    /* in state TLS, waiting its turn to begin */
	bool reading;       /* conn_plaintext is handing it a read's replies */
	struct eng_sess s;
	struct eng_reply_parser rp;
	struct tls_conn *tls;
	char *tlsa_text;    /* the pool's TLSA records when DANE applied to it
			     * (its own copy: a refresh frees the pool's) */
	struct vl_heap_node timer;
	struct __kernel_timespec connect_ts;
	struct send_slot *snd;         /* the send in flight, NULL when none */
	struct eng_msg *held;          /* finished while a send was in flight:
					* their bodies may still be read */
	/* in state IDLE: the pool's idle list; in state TLS while
	 * hs_waiting: the worker's handshake queue */
	struct conn *idle_next, *idle_prev;
	struct conn *all_next, *all_prev;
} __attribute__((aligned(8)));

/* What one send needs, and only while it is in flight (the kernel reads
 * the msghdr, the iovecs and the bytes until its CQE): conn_flush takes
 * one from the worker's spares, on_send gives it back. Ten thousand
 * sessions waiting for their replies hold none. */
struct send_slot {
	struct msghdr mh;
	struct iovec *v;               /* commands (or ciphertext), then body pieces */
	size_t n, cap;
	struct vl_buf buf;             /* the session's commands or the ciphertext,
					* moved in (no copy) and freed after */
	struct send_slot *next;        /* in the worker's spares */
};
#define SPARE_SLOTS 64             /* spares a worker keeps; more are freed */

struct pool {
	struct eng_route route;        /* a copy: the key */
	uint64_t hash;
	struct pool *hnext;
	struct eng_mq q;               /* messages waiting for a session */
	struct conn *idle;             /* connections in state IDLE */
	unsigned nconn, nconnecting;
	unsigned nestablished;         /* open ones that reached READY */
	uint64_t no_open_until;        /* after a failed attempt: pause, ms */
	uint64_t may_plain_until;      /* `may` and TLS broke: clear text */
	bool kick_later;               /* on w->kick_list */
	struct pool *kick_next;
	SSL_SESSION *ticket;           /* TLS resumption for this host */
	struct eng_worker *w;
	struct pool_dane dane;         /* policies dane and dane-only */
};

struct eng_worker {
	struct engine *e;              /* for eng_route_conns, eng_send_elsewhere */
	const struct eng_config *cfg;
	unsigned id;
	struct vl_ring r;
	SSL_CTX *tls_ctx;
	struct {                       /* CA stores of routes' ca_file, loaded
					* once each, on first use */
		const char *path;
		X509_STORE *st;
	} stores[8];
	unsigned nstores;
	struct pool **pools;           /* hash table */
	size_t npools_cap, npools;
	struct conn *all;              /* every connection not yet freed */
	size_t nconns;
	unsigned long long conn_seq;   /* the last connection's number (logs) */
	atomic_size_t nconns_seen;     /* nconns, for other threads */
	struct vl_heap timers;
	struct pool *kick_list;        /* pools paused with messages waiting */
	/* inbox */
	struct eng_msg *_Atomic in_head;
	struct eng_msg *in_tail;
	struct eng_msg in_stub;
	atomic_bool wake_pending;
	unsigned ncqe;             /* completions seen: the inbox is looked at
				    * every INBOX_EVERY of them */
	int efd;
	uint64_t efd_val;
	struct __kernel_timespec tick_ts;
	/* MX lookups asked by other threads (rare: one per new domain) */
	struct dns_resolver *dns;
	pthread_mutex_t dns_mu;
	struct dns_req *dns_reqs;
	struct dns_stats dns_seen;     /* under dns_mu, for other threads */
	atomic_bool stop;
	uint64_t stop_deadline;
	bool stopping;
	struct send_slot *spares;      /* send slots not in flight */
	unsigned nspares;
	unsigned nhandshakes;          /* TLS handshakes running */
	struct conn *hs_head, *hs_tail; /* waiting to begin theirs, oldest first */
	char plain[TLS_RECORD_MAX];    /* TLS: commands and body staged */
} __attribute__((aligned(64)));

static struct io_uring_sqe *get_sqe(struct eng_worker *w)
{
	return vl_ring_sqe(&w->r);
}

enum dns_kind { REQ_MX, REQ_HOST, REQ_TXT, REQ_TLSA };
struct dns_req {
	enum dns_kind kind;
	bool any_address;
	unsigned port;
	eng_mx_fn fn;            /* REQ_MX, REQ_HOST */
	eng_txt_fn txt_fn;       /* REQ_TXT */
	eng_tlsa_fn tlsa_fn;     /* REQ_TLSA */
	void *arg;
	struct dns_req *next;
	char domain[256];
};

/* c-ares' library set-up and tear-down are not thread-safe: workers
 * create and free their resolvers one at a time. */
static pthread_mutex_t dns_life = PTHREAD_MUTEX_INITIALIZER;

/* ---- inbox: Vyukov's intrusive MPSC queue ---- */

static void inbox_init(struct eng_worker *w)
{
	w->in_stub.next_ = NULL;
	atomic_store(&w->in_head, &w->in_stub);
	w->in_tail = &w->in_stub;
}

static void inbox_push(struct eng_worker *w, struct eng_msg *m)
{
	__atomic_store_n(&m->next_, NULL, __ATOMIC_RELAXED);
	struct eng_msg *prev = atomic_exchange_explicit(&w->in_head, m, memory_order_acq_rel);
	__atomic_store_n(&prev->next_, m, __ATOMIC_RELEASE);
}

static struct eng_msg *inbox_pop(struct eng_worker *w)
{
	struct eng_msg *tail = w->in_tail;
	struct eng_msg *next = __atomic_load_n(&tail->next_, __ATOMIC_ACQUIRE);

	if (tail == &w->in_stub) {
		if (!next)
			return NULL;
		w->in_tail = tail = next;
		next = __atomic_load_n(&next->next_, __ATOMIC_ACQUIRE);
	}
	if (next) {
		w->in_tail = next;
		return tail;
	}
	if (tail != atomic_load_explicit(&w->in_head, memory_order_acquire))
		return NULL; /* a producer is between its two steps; it will wake us */
	inbox_push(w, &w->in_stub);
	next = __atomic_load_n(&tail->next_, __ATOMIC_ACQUIRE);
	if (next) {
		w->in_tail = next;
		return tail;
	}
	return NULL;
}

static void wake(struct eng_worker *w)
{
	uint64_t one = 1;

	if (write(w->efd, &one, sizeof one) < 0)
		vl_log(VL_LOG_ERROR, "engine: eventfd write: %s", strerror(errno));
}

void eng_worker_submit(struct eng_worker *w, struct eng_msg *m)
{
	inbox_push(w, m);
	if (!atomic_exchange(&w->wake_pending, true))
		wake(w); /* one wake for a burst of submissions */
}

void eng_worker_resolve(struct eng_worker *w, const struct eng_dns_ask *ask, const char *domain,
			void *arg)
{
	struct dns_req *q = vl_calloc(1, sizeof *q);

	q->kind = ask->tlsa ? REQ_TLSA : ask->txt ? REQ_TXT : ask->host ? REQ_HOST : REQ_MX;
	q->tlsa_fn = ask->tlsa;
	q->port = ask->port;
	q->fn = ask->mx;
	q->txt_fn = ask->txt;
	q->any_address = ask->any_address;
	q->arg = arg;
	snprintf(q->domain, sizeof q->domain, "%s", domain);
	pthread_mutex_lock(&w->dns_mu);
	q->next = w->dns_reqs;
	w->dns_reqs = q;
	pthread_mutex_unlock(&w->dns_mu);
	if (!atomic_exchange(&w->wake_pending, true))
		wake(w);
}

void eng_worker_dns_stats(struct eng_worker *w, struct dns_stats *s)
{
	pthread_mutex_lock(&w->dns_mu);
	*s = w->dns_seen;
	pthread_mutex_unlock(&w->dns_mu);
}

static void on_mx(void *arg, const struct dns_mx_result *r)
{
	struct dns_req *q = arg;

	q->fn(q->arg, r);
	free(q);
}

static void on_txt(void *arg, const struct dns_txt_result *r)
{
	struct dns_req *q = arg;

	q->txt_fn(q->arg, r);
	free(q);
}

static void on_tlsa_req(void *arg, const struct dns_tlsa_result *r)
{
	struct dns_req *q = arg;

	q->tlsa_fn(q->arg, r);
	free(q);
}

/* Requests without a resolver (disabled, or shut down) are answered at
 * once, as the resolver itself answers after dns_shutdown(). */
static void no_resolver(struct dns_req *q)
{
	const char *why = "no resolver: DNS is not configured in this engine";
	struct dns_mx_result r = { .domain = q->domain, .status = DNS_SHUTDOWN, .why = why };
	struct dns_txt_result t = { .qname = q->domain, .status = DNS_SHUTDOWN, .why = why };
	struct dns_tlsa_result a = { .qname = q->domain, .status = DNS_SHUTDOWN, .why = why };

	if (q->kind == REQ_TXT)
		on_txt(q, &t);
	else if (q->kind == REQ_TLSA)
		on_tlsa_req(q, &a);
	else
		on_mx(q, &r);
}

static void ask_dns(struct eng_worker *w, struct dns_req *q)
{
	switch (q->kind) {
	case REQ_MX: dns_resolve_mx(w->dns, q->domain, on_mx, q); break;
	case REQ_HOST: dns_resolve_host(w->dns, q->domain, q->any_address, on_mx, q); break;
	case REQ_TXT: dns_resolve_txt(w->dns, q->domain, on_txt, q); break;
	case REQ_TLSA: dns_resolve_tlsa(w->dns, q->domain, q->port, on_tlsa_req, q); break;
	}
}

static void take_dns(struct eng_worker *w)
{
	pthread_mutex_lock(&w->dns_mu);
	struct dns_req *q = w->dns_reqs;
	w->dns_reqs = NULL;
	if (w->dns)
		dns_get_stats(w->dns, &w->dns_seen);
	pthread_mutex_unlock(&w->dns_mu);
	while (q) {
		struct dns_req *next = q->next;
		if (w->dns)
			ask_dns(w, q);
		else
			no_resolver(q);
		q = next;
	}
}

static void dns_start(struct eng_worker *w)
{
	char err[256];

	if (!w->cfg->dns)
		return;
	pthread_mutex_lock(&dns_life);
	w->dns = dns_new(&w->r, OP_DNS, &w->cfg->dns_cfg, err, sizeof err);
	pthread_mutex_unlock(&dns_life);
	if (!w->dns)
		vl_log(VL_LOG_ERROR, "engine: worker %u: no resolver: %s", w->id, err);
}

static void dispatch(void *arg, struct io_uring_cqe *cqe);

/* Lookups still pending get DNS_SHUTDOWN; the resolver is freed once its
 * cancellations have come back. */
static void dns_stop(struct eng_worker *w)
{
	if (!w->dns)
		return;
	dns_shutdown(w->dns);
	uint64_t until = vl_now_ms() + 2000;
	while (!dns_quiescent(w->dns) && vl_now_ms() < until)
		if (vl_ring_wait(&w->r, dispatch, w) < 0)
			break;
	pthread_mutex_lock(&dns_life);
	dns_free(w->dns);
	pthread_mutex_unlock(&dns_life);
	w->dns = NULL;
	take_dns(w);
}

/* The message leaves the engine: its worker's count for the route drops
 * (engine.c's spread) before on_done, which may free it. */
static void msg_done(struct eng_msg *m)
{
	if (m->load_)
		atomic_fetch_sub_explicit(m->load_, 1, memory_order_relaxed);
	m->load_ = NULL;
	m->on_done(m);
}

/* After the thread has ended: a message forwarded to this worker after it
 * stopped (prepared on another one) still gets its results. */
void eng_worker_drain(struct eng_worker *w)
{
	struct eng_msg *m;

	while ((m = inbox_pop(w))) {
		if (m->prepare && m->prep_)
			atomic_fetch_sub_explicit(m->prep_, 1, memory_order_relaxed);
		m->prepare = NULL;
		m->prep_ = NULL;
		m->first_ = 0;
		m->pending_ = m->nrcpt;
		for (size_t i = 0; i < m->nrcpt; i++)
			eng_result_give(m, i, ENG_TRANSIENT, 0, "", "the engine is shutting down",
					"queue", NULL, false);
		msg_done(m);
	}
}

void eng_worker_stop(struct eng_worker *w, uint64_t grace_ms)
{
	w->stop_deadline = vl_now_ms() + grace_ms;
	atomic_store(&w->stop, true);
	wake(w);
}

/* ---- pools ---- */

/* Whether the host's name is part of what a connection proves (verify
 * checks it, DANE looks up its TLSA records): then two names on one
 * address are two pools. */
static bool route_named(const struct eng_route *r)
{
	return r->tls == TLS_POLICY_VERIFY || r->tls == TLS_POLICY_DANE ||
	       r->tls == TLS_POLICY_DANE_ONLY || r->tls == TLS_POLICY_MTA_STS;
}

static const char *route_ca(const struct eng_route *r)
{
	return r->ca_file ? r->ca_file : "";
}

uint64_t eng_route_hash(const struct eng_route *r)
{
	unsigned char tls = (unsigned char)r->tls;
	uint64_t h = vl_hash(&r->addr, r->addrlen);

	if (r->has_source)
		h = vl_hash_add(h, &r->source, r->sourcelen);
	h = vl_hash_add(h, r->helo, strlen(r->helo));
	h = vl_hash_add(h, &tls, 1);
	h = vl_hash_add(h, &r->implicit_tls, sizeof r->implicit_tls);
	if (route_named(r)) {
		unsigned char sts = (unsigned char)(r->sts * 2 + r->sts_mx_ok);
		h = vl_hash_lower(h, r->name, strlen(r->name));
		h = vl_hash_add(h, &sts, 1);
		h = vl_hash_add(h, route_ca(r), strlen(route_ca(r)));
	}
	return vl_hash_add(h, r->auth_user, strlen(r->auth_user));
}

static bool route_same(const struct eng_route *a, const struct eng_route *b)
{
	return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0 &&
	       a->has_source == b->has_source &&
	       (!a->has_source || memcmp(&a->source, &b->source, a->sourcelen) == 0) &&
	       strcmp(a->helo, b->helo) == 0 &&
	       a->tls == b->tls && a->implicit_tls == b->implicit_tls &&
	       strcmp(a->auth_user, b->auth_user) == 0 &&
	       (!route_named(a) || (a->dnssec == b->dnssec && a->sts == b->sts &&
				    a->sts_mx_ok == b->sts_mx_ok &&
				    strcasecmp(a->name, b->name) == 0 &&
				    strcmp(route_ca(a), route_ca(b)) == 0));
}

static struct pool *pool_get(struct eng_worker *w, const struct eng_route *r, uint64_t h)
{
	if (w->npools_cap) {
		for (struct pool *p = w->pools[h % w->npools_cap]; p; p = p->hnext)
			if (p->hash == h && route_same(&p->route, r))
				return p;
	}
	if (w->npools + 1 > w->npools_cap / 2) { /* grow and rehash */
		size_t cap = w->npools_cap ? w->npools_cap * 2 : 64;
		struct pool **v = vl_calloc(cap, sizeof *v);
		for (size_t i = 0; i < w->npools_cap; i++) {
			for (struct pool *p = w->pools[i], *n; p; p = n) {
				n = p->hnext;
				p->hnext = v[p->hash % cap];
				v[p->hash % cap] = p;
			}
		}
		free(w->pools);
		w->pools = v;
		w->npools_cap = cap;
	}
	struct pool *p = vl_calloc(1, sizeof *p);
	p->w = w;
	p->route = *r;
	p->hash = h;
	p->hnext = w->pools[h % w->npools_cap];
	w->pools[h % w->npools_cap] = p;
	w->npools++;
	return p;
}

static void queue_push(struct pool *p, struct eng_msg *m, bool front)
{
	eng_mq_push(&p->q, m, front);
}

static struct eng_msg *queue_pop(struct pool *p)
{
	return eng_mq_pop(&p->q);
}

/* Give every queued message of p a transient result: no connection to the
 * host could be made, or the engine is stopping. */
/* s: the session that failed, NULL for none; without one, failure is
 * the TLS-RPT result type of why the pool cannot be used (or NULL). */
static void pool_fail_queue(struct pool *p, const struct eng_sess *s, const char *failure,
			    const char *stage, int code, const char *enh,
			    const char *text)
{
	struct eng_msg *m;
	struct eng_sess none = { .tls_failure = failure };

	if (!s && failure)
		s = &none;
	while ((m = queue_pop(p))) {
		for (size_t i = m->first_; i < m->nrcpt; i++)
			eng_result_give(m, i, ENG_TRANSIENT, code, enh, text, stage, s, false);
		msg_done(m);
	}
}

/* A spread route's pool could not connect and has no session left: what
 * waits goes to a worker of the route that has one (eng_send_elsewhere),
 * unless part-sent or moved once already. true: nothing is left. */
static bool pool_send_elsewhere(struct eng_worker *w, struct pool *p)
{
	struct eng_mq keep = { 0 };
	struct eng_msg *m;

	if (w->stopping)
		return false;
	while ((m = queue_pop(p)))
		if (!eng_send_elsewhere(w->e, m, w->id))
			eng_mq_push(&keep, m, false);
	p->q = keep;
	return p->q.head == NULL;
}

/* A transaction ended: the message is done, or its next recipients go
 * back to the front of the queue. */
static void msg_finished(struct pool *p, struct eng_msg *m)
{
	if (m->pending_ == 0) {
		msg_done(m);
		return;
	}
	m->first_ += m->count_;
	m->count_ = 0;
	queue_push(p, m, true);
}

static void pool_kick(struct eng_worker *w, struct pool *p);
static void pool_open(struct eng_worker *w, struct pool *p);

/* ---- DANE: the pool's TLSA RRset ---- */

static bool dane_policy(const struct pool *p)
{
	return p->route.tls == TLS_POLICY_DANE || p->route.tls == TLS_POLICY_DANE_ONLY;
}

/* "3 1 1 6f8c...e2a1, 2 0 1 ..." for results and logs (digests cut). */
static void dane_describe(const struct pool_dane *d, char *out, size_t len)
{
	size_t at = 0;

	out[0] = '\0';
	for (size_t i = 0; i < d->n && at + 32 < len; i++) {
		const struct tls_tlsa *r = &d->rr[i];
		at += (size_t)snprintf(out + at, len - at, "%s%u %u %u ", i ? ", " : "",
				       r->usage, r->selector, r->mtype);
		for (size_t k = 0; k < r->len && k < 8 && at + 3 < len; k++)
			at += (size_t)snprintf(out + at, len - at, "%02x", r->data[k]);
		if (r->len > 8 && at + 4 < len)
			at += (size_t)snprintf(out + at, len - at, "...");
	}
}

/* RFC 8460 4.4's policy-string for a TLSA RRset: one record a line. */
static char *dane_text(const struct dns_tlsa_result *res)
{
	struct vl_buf b;

	vl_buf_init(&b);
	for (size_t i = 0; i < res->n; i++) {
		const struct dns_tlsa_rr *x = &res->rr[i];
		vl_buf_printf(&b, "%s%u %u %u ", i ? "\n" : "", x->usage, x->selector, x->mtype);
		for (size_t k = 0; k < x->len; k++)
			vl_buf_printf(&b, "%02x", x->data[k]);
	}
	vl_buf_append(&b, "", 1);   /* the NUL */
	return b.p;
}

static void dane_keep(struct pool_dane *d, const struct dns_tlsa_result *res)
{
	size_t bytes = 0;

	free(d->text);
	d->text = dane_text(res);
	for (size_t i = 0; i < res->n; i++)
		bytes += res->rr[i].len;
	free(d->rr);
	d->rr = vl_malloc(res->n * sizeof *d->rr + bytes + 1);
	unsigned char *data = (unsigned char *)(d->rr + res->n);
	d->n = res->n;
	d->usable = 0;
	for (size_t i = 0; i < res->n; i++) {
		const struct dns_tlsa_rr *x = &res->rr[i];
		memcpy(data, x->data, x->len);
		d->rr[i] = (struct tls_tlsa){ x->usage, x->selector, x->mtype, data, x->len };
		d->usable += tls_tlsa_usable(&d->rr[i]);
		data += x->len;
	}
}

static void dane_ask(struct eng_worker *w, struct pool *p, bool canon);

/* Whether the host was reached through a CNAME: then the target's name is
 * the first TLSA base domain, the MX name the second (RFC 7672 2.2.2). */
static bool route_aliased(const struct eng_route *r)
{
	return r->canon[0] && strcasecmp(r->canon, r->name) != 0;
}

static void on_tlsa(void *arg, const struct dns_tlsa_result *res)
{
	struct pool *p = arg;
	struct pool_dane *d = &p->dane;
	uint64_t ttl = (uint64_t)res->ttl * 1000;

	if (d->at_canon && (res->status == DNS_NODATA || res->status == DNS_NXDOMAIN ||
			    (res->status == DNS_OK && !res->n))) {
		dane_ask(p->w, p, false);    /* none at the target: the MX name's */
		return;
	}
	snprintf(d->base, sizeof d->base, "%s", d->at_canon ? p->route.canon : p->route.name);
	d->until = vl_now_ms() + (ttl > DANE_MIN_TTL_MS ? ttl : DANE_MIN_TTL_MS);
	if (res->status == DNS_OK && res->ad && res->n) {
		dane_keep(d, res);
		char recs[300];
		dane_describe(d, recs, sizeof recs);
		d->st = d->usable ? DANE_RECORDS : DANE_NONE;
		snprintf(d->why, sizeof d->why, "%s: %s TLSA record%s %s", res->qname,
			 d->usable ? "DNSSEC-validated" : "no usable", d->n == 1 ? "" : "s", recs);
	} else if (res->status == DNS_OK || res->status == DNS_NODATA ||
		   res->status == DNS_NXDOMAIN) {
		d->st = DANE_NONE;   /* none, or unsigned: insecure means none */
		snprintf(d->why, sizeof d->why, "%s: no DNSSEC-validated TLSA records",
			 res->qname);
	} else {
		d->st = DANE_FAILED;
		d->until = vl_now_ms() + DANE_RETRY_MS;
		snprintf(d->why, sizeof d->why, "%s: TLSA lookup failed (%s): DANE cannot "
			 "be checked", res->qname, res->why ? res->why : "?");
	}
	vl_log(VL_LOG_DEBUG, "engine: %s: %s", p->route.name, d->why);
	if (!d->asking && !p->w->stopping)
		pool_kick(p->w, p);
}

/* MTA-STS (RFC 8461) applies to the pool's host: its domain has a
 * policy, and DANE does not authenticate the host (DANE comes first, 2). */
static bool sts_applies(const struct pool *p)
{
	return p->route.sts != ENG_STS_OFF &&
	       (p->route.tls == TLS_POLICY_MTA_STS ||
		(p->route.tls == TLS_POLICY_DANE && p->dane.st != DANE_RECORDS));
}

/* An enforced policy uses only the hosts its mx list names (4.1): the
 * others get nothing, and their messages go on to the next MX. */
static bool sts_ready(struct pool *p)
{
	char why[400];

	if (!sts_applies(p) || p->route.sts != ENG_STS_ENFORCE || p->route.sts_mx_ok)
		return true;
	snprintf(why, sizeof why, "MTA-STS: %s is not in the mx list of its domain's "
		 "enforced policy; nothing sent", p->route.name);
	pool_fail_queue(p, NULL, "validation-failure", "mta-sts", 0, "", why);
	return false;
}

static void dane_ask(struct eng_worker *w, struct pool *p, bool canon)
{
	p->dane.at_canon = canon;
	dns_resolve_tlsa(w->dns, canon ? p->route.canon : p->route.name,
			 vl_sockaddr_port(&p->route.addr), on_tlsa, p);
}

/* Whether connections may open now under the pool's DANE state; starts
 * the lookup when the state is unknown or old. A host whose lookup failed,
 * or that has no usable records under dane-only, fails what waits. */
static bool dane_ready(struct eng_worker *w, struct pool *p)
{
	struct pool_dane *d = &p->dane;

	if (!dane_policy(p))
		return true;
	if (d->st == DANE_LOOKING)
		return false;
	if (d->st == DANE_UNKNOWN || (d->until != UINT64_MAX && vl_now_ms() >= d->until)) {
		const char *name = p->route.name;
		const char *no = !w->dns ? "no resolver" :
				 !*name || vl_ip_literal(name) ? "an address, not a host name" :
				 !p->route.dnssec ? "its MX or address records are not "
						    "DNSSEC-validated" : NULL;
		if (no) {
			d->st = DANE_NONE;
			d->until = UINT64_MAX;
			snprintf(d->why, sizeof d->why, "%s: no TLSA lookup (%s)", name, no);
		} else {
			d->st = DANE_LOOKING;
			d->asking = true;
			dane_ask(w, p, route_aliased(&p->route));
			d->asking = false;
			if (d->st == DANE_LOOKING)
				return false;
		}
	}
	if (d->st == DANE_FAILED ||
	    (d->st == DANE_NONE && p->route.tls == TLS_POLICY_DANE_ONLY)) {
		char why[480];
		snprintf(why, sizeof why, "%s%s", d->why,
			 d->st == DANE_NONE ? "; policy dane-only" : "");
		pool_fail_queue(p, NULL, d->st == DANE_FAILED ? "dnssec-invalid" : "dane-required",
				"dane", 0, "", why);
		return false;
	}
	return true;
}

static void release_held(struct conn *c)
{
	while (c->held) {
		struct eng_msg *m = c->held;
		c->held = m->next_;
		msg_finished(c->pool, m);
	}
}

/* The session ended transactions (several at once when it failed with
 * some pipelined): hand the messages back, but not while a send may still
 * read their bodies. */
static void hand_back(struct conn *c)
{
	struct eng_msg *m = c->s.finished;

	c->s.finished = NULL;
	while (m) {
		struct eng_msg *next = m->next_;
		if (c->send_busy) {
			m->next_ = c->held;
			c->held = m;
		} else {
			msg_finished(c->pool, m);
		}
		m = next;
	}
}

/* ---- connections ---- */

static const char *const conn_names[CONN_NSTATES] = {
	[CONN_NEW] = "NEW", [CONN_CONNECTING] = "CONNECTING", [CONN_SETUP] = "SETUP",
	[CONN_TLS] = "TLS", [CONN_IDLE] = "IDLE", [CONN_BUSY] = "BUSY",
	[CONN_QUITTING] = "QUITTING", [CONN_DRAINING] = "DRAINING",
	[CONN_CLOSING] = "CLOSING", [CONN_CLOSED] = "CLOSED",
};

/* The lifecycle's transitions: from each state, a bit per state it may go
 * to (the diagram above enum conn_state). */
#define TO(st) (1u << CONN_##st)
static const unsigned conn_next[CONN_NSTATES] = {
	[CONN_NEW] = TO(CONNECTING),
	[CONN_CONNECTING] = TO(SETUP) | TO(TLS) | TO(CLOSING), /* TLS: implicit */
	/* the first READY: IDLE, or BUSY with a message waiting, or QUIT
	 * (stopping, or max_messages_per_connection reached) */
	[CONN_SETUP] = TO(TLS) | TO(IDLE) | TO(BUSY) | TO(QUITTING) | TO(DRAINING) |
		       TO(CLOSING),
	[CONN_TLS] = TO(SETUP) | TO(DRAINING) | TO(CLOSING), /* SETUP: EHLO again */
	[CONN_IDLE] = TO(BUSY) | TO(QUITTING) | TO(DRAINING) | TO(CLOSING),
	[CONN_BUSY] = TO(IDLE) | TO(QUITTING) | TO(DRAINING) | TO(CLOSING),
	[CONN_QUITTING] = TO(DRAINING) | TO(CLOSING),
	[CONN_DRAINING] = TO(CLOSING),
	[CONN_CLOSING] = TO(CLOSED),
	[CONN_CLOSED] = 0,
};
#undef TO

/* CLOSING or CLOSED: out of its pool; no more I/O is started for it. */
static bool conn_closing(const struct conn *c)
{
	return c->state >= CONN_CLOSING;
}

__attribute__((cold, noinline))
static void conn_illegal(const struct conn *c, enum conn_state from, enum conn_state to)
{
	vl_log(VL_LOG_ERROR, "engine: conn %u.%llu %s: illegal connection state "
	       "transition %s -> %s", c->s.id_worker, c->s.id_conn, c->s.peer,
	       conn_names[from], conn_names[to]);
	if (ENG_STRICT_STATES)
		abort();
}

/* ---- the handshake queue (HANDSHAKES_MAX) ---- */

/* c's handshake may begin now (counted), or it waits its turn: false. */
static bool hs_admit(struct conn *c)
{
	struct eng_worker *w = c->w;

	if (c->hs_running)
		return true;
	if (w->nhandshakes < HANDSHAKES_MAX && !w->hs_head) {
		c->hs_running = true;
		w->nhandshakes++;
		return true;
	}
	c->hs_waiting = true;
	c->idle_next = NULL;
	c->idle_prev = w->hs_tail;
	if (w->hs_tail)
		w->hs_tail->idle_next = c;
	else
		w->hs_head = c;
	w->hs_tail = c;
	return false;
}

static void hs_unlink(struct conn *c)
{
	struct eng_worker *w = c->w;

	c->hs_waiting = false;
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		w->hs_head = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	else
		w->hs_tail = c->idle_prev;
	c->idle_next = c->idle_prev = NULL;
}

/* c leaves state TLS: its handshake is over (done or failed), or it
 * never began. */
static void hs_leave(struct conn *c)
{
	if (c->hs_running) {
		c->hs_running = false;
		c->w->nhandshakes--;
	}
	if (c->hs_waiting)
		hs_unlink(c);
}

/* Every lifecycle change goes through here: checked, the pool's idle list
 * kept as exactly the connections in state IDLE (newest first), and logged
 * at debug level (vl_log drops a debug line before formatting it: at the
 * info level the log is a call and a compare). A state to itself is no
 * change (conn_ready may leave a connection IDLE or BUSY). */
static void conn_enter(struct conn *c, enum conn_state to)
{
	enum conn_state from = c->state;
	struct pool *p = c->pool;

	if (from == to)
		return;
	if (!(conn_next[from] >> to & 1u))
		conn_illegal(c, from, to);
	if (from == CONN_IDLE) {
		if (c->idle_prev)
			c->idle_prev->idle_next = c->idle_next;
		else
			p->idle = c->idle_next;
		if (c->idle_next)
			c->idle_next->idle_prev = c->idle_prev;
		c->idle_next = c->idle_prev = NULL;
	}
	if (from == CONN_TLS)
		hs_leave(c);
	c->state = to;
	if (to == CONN_IDLE) {
		c->idle_prev = NULL;
		c->idle_next = p->idle;
		if (p->idle)
			p->idle->idle_prev = c;
		p->idle = c;
	}
	vl_log(VL_LOG_DEBUG, "engine: conn %u.%llu %s: %s -> %s", c->s.id_worker,
	       c->s.id_conn, c->s.peer, conn_names[from], conn_names[to]);
}

/* A closing connection is out of the heap for good (conn_close took it
 * out), so it can be freed without leaving a timer behind. */
static void conn_timer(struct conn *c, uint64_t ms)
{
	if (!conn_closing(c))
		vl_heap_set(&c->w->timers, &c->timer, vl_now_ms() + ms);
}

/* ---- send slots ---- */

static struct send_slot *slot_take(struct eng_worker *w)
{
	struct send_slot *t = w->spares;

	if (!t)
		return vl_calloc(1, sizeof *t);
	w->spares = t->next;
	w->nspares--;
	return t;
}

static void slot_free(struct send_slot *t)
{
	vl_buf_free(&t->buf);
	free(t->v);
	free(t);
}

/* Back among the spares (the kernel is done with it), its buffer freed;
 * or freed itself when the worker has enough of them. */
static void slot_give(struct eng_worker *w, struct send_slot *t)
{
	if (w->nspares >= SPARE_SLOTS) {
		slot_free(t);
		return;
	}
	t->n = 0;
	vl_buf_free(&t->buf);
	t->next = w->spares;
	w->spares = t;
	w->nspares++;
}

static void conn_maybe_free(struct conn *c)
{
	struct eng_worker *w = c->w;

	if (c->state != CONN_CLOSING || c->ops > 0)
		return;
	conn_enter(c, CONN_CLOSED);
	if (c->fd >= 0)
		close(c->fd);
	release_held(c);
	tls_conn_free(c->tls);
	eng_sess_free(&c->s);
	eng_reply_parser_free(&c->rp);
	if (c->snd)
		slot_give(w, c->snd);
	free(c->tlsa_text);
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		w->all = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	w->nconns--;
	free(c);
}

static void conn_close(struct conn *c)
{
	struct eng_worker *w = c->w;
	struct pool *p = c->pool;

	if (conn_closing(c))
		return;
	conn_enter(c, CONN_CLOSING); /* off the idle list, if it was there */
	vl_heap_del(&w->timers, &c->timer);
	if (c->established)
		p->nestablished--;
	p->nconn--;
	eng_route_conns(w->e, p->hash, w->id, -1);
	hand_back(c);
	if (!c->established) {
		p->nconnecting--;
		/* Failed before it was usable (unless TLS broke under `may`:
		 * then pool_kick below opens the clear-text one): pause new
		 * attempts so a refusing host is not hammered, and if no
		 * other session to it works or is on its way, what waits
		 * gets this failure now (the scheduler retries). */
		if (!c->tls_fallback) {
			p->no_open_until = vl_now_ms() + POOL_RETRY_MS;
			if (p->nestablished == 0 && p->nconnecting == 0 && p->q.head &&
			    !pool_send_elsewhere(w, p))
				pool_fail_queue(p, &c->s, NULL,
						c->s.fail_stage ? c->s.fail_stage : "connect",
						c->s.fail_code, c->s.fail_enhanced,
						c->s.fail_text && c->s.fail_text[0] ? c->s.fail_text :
						"connection lost");
		}
	}
	/* Ends the pending recv and send, and a connect still in flight
	 * (Linux disconnects a socket in SYN_SENT on shutdown, and the
	 * connect completes with an error). shutdown() rather than an async
	 * cancel: a cancel scans every request in flight on the ring, and ten
	 * thousand sessions closing would make that quadratic. */
	if (c->fd >= 0 && c->ops)
		shutdown(c->fd, SHUT_RDWR);
	conn_maybe_free(c);
	if (!w->stopping)
		pool_kick(w, p);
}

/* ---- sending ---- */

static void sv_push(struct send_slot *t, void *p, size_t n)
{
	if (!n)
		return;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 8;
		t->v = vl_realloc(t->v, t->cap * sizeof *t->v);
	}
	t->v[t->n++] = (struct iovec){.iov_base = p, .iov_len = n};
}

static void submit_send(struct conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(c->w);
	struct send_slot *t = c->snd;

	memset(&t->mh, 0, sizeof t->mh);
	t->mh.msg_iov = t->v;
	t->mh.msg_iovlen = t->n;
	io_uring_prep_sendmsg(sqe, c->fd, &t->mh, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, vl_ud(c, OP_SEND));
	c->send_busy = true;
	c->ops++;
}

/* Under TLS a rendered message is many small pieces (static blobs and
 * values); one SSL_write each would make a record each, with its own
 * header, tag and OpenSSL call overhead on both ends. They are staged in
 * the worker's one record-sized buffer and go as full records; the whole
 * records of a long piece (a large body's static text) are encrypted
 * where they lie, not copied through the stage first. */
struct tls_stage {
	struct tls_conn *tls;
	char *buf;
	size_t len;
	int rc;
};

static void stage(struct tls_stage *st, const char *p, size_t n)
{
	while (n && st->rc == 0) {
		if (st->len == 0 && n >= TLS_RECORD_MAX) {
			size_t k = n - n % TLS_RECORD_MAX;
			st->rc = tls_conn_write(st->tls, p, k);
			p += k;
			n -= k;
			continue;
		}
		size_t k = TLS_RECORD_MAX - st->len < n ? TLS_RECORD_MAX - st->len : n;
		memcpy(st->buf + st->len, p, k);
		st->len += k;
		p += k;
		n -= k;
		if (st->len == TLS_RECORD_MAX) {
			st->rc = tls_conn_write(st->tls, st->buf, st->len);
			st->len = 0;
		}
	}
}

/* The session's output in order: commands, each body after its BDAT (or
 * the 354), the commands after it; pipelined transactions share records. */
static int tls_write_staged(struct conn *c)
{
	struct eng_sess *s = &c->s;
	struct tls_stage st = { .tls = c->tls, .buf = c->w->plain };
	size_t at = 0;

	for (size_t b = 0; b < s->nbodies; b++) {
		const struct eng_out_body *x = &s->bodies[b];
		stage(&st, s->out.p + at, x->at - at);
		for (size_t i = 0; i < x->n; i++)
			stage(&st, x->v[i].iov_base, x->v[i].iov_len);
		at = x->at;
	}
	stage(&st, s->out.p + at, s->out.len - at);
	if (st.len && st.rc == 0)
		st.rc = tls_conn_write(c->tls, st.buf, st.len);
	return st.rc;
}

/* Send what the session wrote: its commands with the bodies between them
 * (one per transaction, after its BDAT LAST). In clear text a body goes
 * straight from the message's own memory; under TLS everything is
 * encrypted into the slot's buffer first. */
static void conn_flush(struct conn *c)
{
	struct eng_sess *s = &c->s;
	bool body = s->nbodies > 0;

	if (c->send_busy || conn_closing(c))
		return;
	if (c->send_err) {             /* nothing goes any more */
		if (c->state == CONN_DRAINING)
			conn_close(c);
		return;
	}
	struct send_slot *t = slot_take(c->w);
	if (body)
		s->now_ns = vl_now_ns(); /* the final dot's time (output_taken) */
	if (c->tls) {
		int rc = tls_write_staged(c);
		eng_sess_output_taken(s);
		if (rc < 0) {
			/* The connection cannot carry the session any more:
			 * the transaction in progress gets its transient
			 * results, as for a lost connection (closing without
			 * them lost the message), and whatever OpenSSL still
			 * has to send (an alert) goes before the close. */
			if (s->state != ENG_S_CLOSED) {
				char err[256], why[300];
				snprintf(why, sizeof why, "TLS: %s",
					 tls_last_error(err, sizeof err));
				eng_sess_fail(s, eng_sess_stage(s), 0, "", why);
				hand_back(c);
			}
			conn_enter(c, CONN_DRAINING);
		}
		/* A clean end (QUIT answered) says close_notify, which also
		 * keeps the host's ticket resumable; a failure does not. */
		if (c->state == CONN_DRAINING && !s->fail_stage && !c->tls_shut) {
			c->tls_shut = true;
			tls_conn_shutdown(c->tls);
		}
		/* t->buf has no storage: it takes the ciphertext's own
		 * (tls_conn_output), no copy */
		tls_conn_output(c->tls, &t->buf);
		sv_push(t, t->buf.p, t->buf.len);
	} else {
		/* the commands' buffer goes with the send (the session
		 * starts a new one if it writes meanwhile) */
		t->buf = s->out;
		vl_buf_init(&s->out);
		size_t at = 0;
		for (size_t b = 0; b < s->nbodies; b++) {
			const struct eng_out_body *x = &s->bodies[b];
			sv_push(t, t->buf.p + at, x->at - at);
			for (size_t i = 0; i < x->n; i++)
				sv_push(t, x->v[i].iov_base, x->v[i].iov_len);
			at = x->at;
		}
		sv_push(t, t->buf.p + at, t->buf.len - at);
		eng_sess_output_taken(s);
	}
	/* idle sessions hold no command buffer */
	vl_buf_free(&s->out);
	if (t->n) {
		c->body_sent = body;
		/* A body may take a while to go: RFC 5321's data block timeout
		 * applies until it has, then the wait for the reply. */
		if (body)
			conn_timer(c, c->w->cfg->t.data_block);
		c->snd = t;
		submit_send(c);
		return;
	}
	slot_give(c->w, t);
	if (c->state == CONN_DRAINING)
		conn_close(c);
}

static void on_send(struct conn *c, int res)
{
	c->ops--;
	c->send_busy = false;
	if (conn_closing(c)) {
		conn_maybe_free(c);
		return;
	}
	release_held(c);
	if (res < 0) {
		/* A reset kills the send at once, while the replies the peer
		 * sent before it may be unread yet (or in a later completion):
		 * failing now would lose a 250 and send its message twice. */
		c->send_err = -res;
		slot_give(c->w, c->snd);
		c->snd = NULL;
		conn_timer(c, SEND_ERR_READ_MS);
		return;
	}
	/* Short send: drop what went, send the rest. */
	struct send_slot *t = c->snd;
	size_t n = (size_t)res, i = 0;
	while (i < t->n && n >= t->v[i].iov_len)
		n -= t->v[i++].iov_len;
	if (i < t->n) {
		t->v[i].iov_base = (char *)t->v[i].iov_base + n;
		t->v[i].iov_len -= n;
		memmove(t->v, t->v + i, (t->n - i) * sizeof *t->v);
		t->n -= i;
		submit_send(c);
		return;
	}
	c->snd = NULL;
	slot_give(c->w, t);
	if (c->body_sent && c->s.state != ENG_S_READY)
		conn_timer(c, eng_sess_timeout(&c->s));
	c->body_sent = false;
	if (c->s.out.len || c->s.nbodies || c->state == CONN_DRAINING)
		conn_flush(c);
}

/* ---- session events ---- */

static void conn_act(struct conn *c, enum eng_act act);

/* Leave politely: QUIT, then its reply (or the quit timeout) closes. */
static void conn_quit(struct conn *c)
{
	conn_enter(c, CONN_QUITTING);
	conn_act(c, eng_sess_quit(&c->s));
}

/* The session is READY: next message, QUIT, or wait in the pool. */
static void conn_ready(struct conn *c)
{
	struct pool *p = c->pool;
	struct eng_worker *w = c->w;

	bool up_now = !c->established;

	hand_back(c);
	if (up_now) {
		p->nconnecting--;
		c->established = true;
		p->nestablished++;
	}
	if (w->stopping || c->s.nmsgs >= p->route.max_messages_per_connection) {
		conn_quit(c);
		return;
	}
	/* A loop, not recursion: messages the peer cannot take (SIZE,
	 * 8BITMIME) are refused without a round trip, and a queue full of
	 * them must not become a deep call chain. */
	struct eng_msg *m;
	bool busy = false;
	while (!busy && (m = queue_pop(p))) {
		enum eng_act act = eng_sess_start(&c->s, m);
		if (act != ENG_IDLE) {
			conn_enter(c, CONN_BUSY);
			conn_act(c, act);   /* c may be gone after this */
			busy = true;
		} else {
			hand_back(c);
		}
	}
	if (!busy) {
		conn_enter(c, CONN_IDLE);
		conn_timer(c, w->cfg->t.idle);
		conn_flush(c); /* e.g. an RSET's successor output, if any */
	}
	/* One more up: room for more to start (slow start), counted after it
	 * took its own message, or the pool opens one too many. */
	if (up_now && !w->stopping)
		pool_open(w, p);
}

static void conn_tls_start(struct conn *c);

/* Pipelining across transactions: while the session's transactions wait
 * for their replies, the messages waiting in the pool go right behind
 * them, into the same write (eng_sess_pipe says when it can take one). */
static void conn_pipe(struct conn *c)
{
	struct pool *p = c->pool;
	struct eng_msg *m;

	while (c->state == CONN_BUSY && !c->w->stopping &&
	       c->s.nmsgs < p->route.max_messages_per_connection &&
	       eng_sess_pipe_open(&c->s) && (m = queue_pop(p))) {
		if (!eng_sess_pipe(&c->s, m)) {
			queue_push(p, m, true);  /* where it was: first */
			break;
		}
		hand_back(c);   /* one refused without a command (SIZE, ...) */
	}
}

static void conn_act(struct conn *c, enum eng_act act)
{
	switch (act) {
	case ENG_WAIT:
		hand_back(c);
		if (c->state == CONN_BUSY && !c->reading)
			conn_pipe(c);
		conn_timer(c, eng_sess_timeout(&c->s));
		conn_flush(c);
		break;
	case ENG_STARTTLS:
		conn_enter(c, CONN_TLS);
		conn_tls_start(c);
		break;
	case ENG_IDLE:
		conn_ready(c);
		break;
	case ENG_CLOSE:
		hand_back(c);
		conn_enter(c, CONN_DRAINING);
		conn_flush(c);
		break;
	}
}

/* A connection-level failure at stage (a static string): the session
 * gives its results, we close. */
static void conn_fail_at(struct conn *c, const char *stage, const char *text)
{
	struct pool *p = c->pool;

	/* Opportunistic TLS that breaks is not a reason to defer: like
	 * Postfix, go again in clear text, and remember the host's broken TLS
	 * for a while. No message is lost: TLS comes before any transaction.
	 * Not with implicit TLS: that port has no clear text. */
	if (c->state == CONN_TLS && p->route.tls == TLS_POLICY_MAY && !p->route.implicit_tls) {
		p->may_plain_until = vl_now_ms() + MAY_PLAIN_MS;
		c->tls_fallback = true;
		vl_log(VL_LOG_INFO, "engine: %s: %s; policy may: clear text for %d min",
		       c->s.peer, text, MAY_PLAIN_MS / 60000);
	}
	eng_sess_fail(&c->s, stage, 0, "", text);
	hand_back(c);
	conn_close(c);
}

/* ... at the stage the session is in. */
static void conn_fail(struct conn *c, const char *text)
{
	conn_fail_at(c, eng_sess_stage(&c->s), text);
}

/* ---- receiving ---- */

/* The replies of one read. The pipeline is topped up once they are all
 * in (c->reading), not after each: the transactions they ended are
 * replaced by as many in one write. */
static void conn_plaintext(struct conn *c, const char *data, size_t len)
{
	size_t off = 0;

	c->reading = true;
	c->s.now_ns = vl_now_ns();  /* the replies' arrival: response times */
	while (off < len && c->state < CONN_DRAINING) {
		struct eng_reply r;
		size_t used;
		int rc = eng_reply_feed(&c->rp, data + off, len - off, &used, &r);
		off += used;
		if (rc < 0) {
			c->reading = false;
			conn_fail(c, "malformed or over-long reply from the peer");
			return;
		}
		if (rc == 0)
			break;
		if (c->state == CONN_TLS) { /* plaintext during a handshake */
			c->reading = false;
			conn_fail(c, "reply pipelined into the TLS handshake");
			return;
		}
		conn_act(c, eng_sess_reply(&c->s, &r));
	}
	c->reading = false;
	if (c->state == CONN_BUSY) {
		conn_pipe(c);
		conn_flush(c);
	}
}

/* A verifying connection whose peer did not verify: may it go on? Not
 * under verify or an enforced MTA-STS policy (false: the connection is
 * failed, nothing sent); a testing policy only reports it (RFC 8461 5). */
static bool conn_unverified_ok(struct conn *c)
{
	const struct eng_route *r = &c->pool->route;
	bool enforce = r->tls == TLS_POLICY_VERIFY || r->sts == ENG_STS_ENFORCE;
	char why[700];

	c->s.tls_failure = tls_conn_verify_failure(c->tls);
	if (!enforce)
		return true;
	snprintf(why, sizeof why, "%s: the certificate of %s does not verify (%s)%s; nothing "
		 "sent", r->tls == TLS_POLICY_VERIFY ? "TLS policy verify" : "MTA-STS enforce",
		 r->name, tls_conn_verify_error(c->tls), route_ca(r)[0] ? " with its ca_file" : "");
	conn_fail_at(c, r->tls == TLS_POLICY_VERIFY ? "tls" : "mta-sts", why);
	return false;
}

/* The handshake is over: the session goes on inside TLS. false: the
 * connection failed (DANE) and is closing. */
static bool conn_tls_up(struct conn *c)
{
	if (c->dane && !tls_conn_dane(c->tls)) {
		char why[900];
		snprintf(why, sizeof why, "DANE: the certificate of %s matches none of "
			 "its TLSA records (%s; %s); nothing sent", c->pool->route.name,
			 c->pool->dane.why, tls_conn_verify_error(c->tls));
		c->s.tls_failure = "validation-failure";
		conn_fail_at(c, "dane", why);
		return false;
	}
	if (c->verify && !tls_conn_verified(c->tls) && !conn_unverified_ok(c))
		return false;
	conn_enter(c, CONN_SETUP);
	c->s.tls_on = true;
	c->s.tls_dane = tls_conn_dane(c->tls);
	c->s.tls_version = tls_conn_version(c->tls);
	c->s.tls_cipher = tls_conn_cipher(c->tls);
	c->s.tls_verified = tls_conn_verified(c->tls);
	conn_act(c, eng_sess_tls_done(&c->s));
	return !conn_closing(c);
}

static void conn_tls_input(struct conn *c, const char *data, size_t len)
{
	char buf[16384];
	ssize_t n;

	tls_conn_input(c->tls, data, len);
	while ((n = tls_conn_read(c->tls, buf, sizeof buf)) > 0) {
		/* implicit TLS: the banner may come with the handshake's end */
		if (c->state == CONN_TLS && c->pool->route.implicit_tls && !conn_tls_up(c))
			return;
		conn_plaintext(c, buf, (size_t)n);
		if (conn_closing(c))
			return;
	}
	SSL_SESSION *ticket = tls_conn_take_session(c->tls);
	if (ticket) {
		SSL_SESSION_free(c->pool->ticket);
		c->pool->ticket = ticket;
	}
	if (n < 0) {
		char err[256], why[300];
		snprintf(why, sizeof why, "TLS: %s", tls_last_error(err, sizeof err));
		c->s.tls_failure = "validation-failure";
		conn_fail(c, why);
		return;
	}
	if (c->state == CONN_TLS && tls_conn_established(c->tls)) {
		conn_tls_up(c);
		return;
	}
	if (c->state == CONN_TLS)
		conn_flush(c); /* more handshake to send */
}

/* The CA store of a route's own ca_file (NULL: the context's), loaded on
 * first use; *bad when it cannot be. */
static X509_STORE *route_store(struct eng_worker *w, const struct eng_route *r, bool *bad)
{
	char err[300];
	const char *path = route_ca(r);

	*bad = false;
	if (!*path)
		return NULL;
	for (unsigned i = 0; i < w->nstores; i++)
		if (strcmp(w->stores[i].path, path) == 0)
			return w->stores[i].st;
	X509_STORE *st = tls_store_new(path, err, sizeof err);
	if (!st) {
		vl_log(VL_LOG_ERROR, "engine: %s", err);
		*bad = true;
		return NULL;
	}
	if (w->nstores == VL_ARRAY_LEN(w->stores)) {
		tls_store_free(w->stores[0].st);   /* more bundles than slots: rare */
		memmove(w->stores, w->stores + 1, sizeof w->stores - sizeof w->stores[0]);
		w->nstores--;
	}
	w->stores[w->nstores].path = path;
	w->stores[w->nstores++].st = st;
	return st;
}

/* A DANE connection by the pool's usable records; NULL with c->dane off
 * when OpenSSL takes none of them (a Full(0) record that is no
 * certificate or key: an unusable RRset, RFC 7672 2.2, as if none). */
static struct tls_conn *conn_tls_dane(struct conn *c)
{
	struct pool *p = c->pool;
	size_t usable = 0;
	bool alias = strcasecmp(p->dane.base, p->route.name) != 0;
	struct tls_conn *t = tls_conn_new_dane(c->w->tls_ctx, p->dane.base,
					       alias ? p->route.name : NULL, p->dane.rr,
					       p->dane.n, &usable);

	if (t && usable == 0) {
		tls_conn_free(t);
		c->dane = false;
		return NULL;
	}
	c->tlsa_text = vl_strdup(p->dane.text);
	c->s.tls_tlsa = c->tlsa_text;
	return t;
}

static void conn_tls_start(struct conn *c)
{
	struct pool *p = c->pool;
	bool bad_ca = false;

	if (!hs_admit(c)) {   /* waiting counts in the handshake's time */
		conn_timer(c, c->w->cfg->t.tls);
		return;
	}
	c->dane = dane_policy(p) && p->dane.st == DANE_RECORDS;
	if (c->dane)
		c->tls = conn_tls_dane(c);
	if (!c->dane && p->route.tls == TLS_POLICY_DANE_ONLY) {
		char why[480];
		snprintf(why, sizeof why, "%s: none usable; policy dane-only", p->dane.why);
		c->s.tls_failure = "tlsa-invalid";
		conn_fail_at(c, "dane", why);
		return;
	}
	if (!c->dane) {
		c->verify = p->route.tls == TLS_POLICY_VERIFY || sts_applies(p);
		X509_STORE *st = c->verify ? route_store(c->w, &p->route, &bad_ca) : NULL;
		if (!bad_ca)
			c->tls = tls_conn_new_client(c->w->tls_ctx, p->route.name, c->verify, st,
						     p->ticket);
		if (sts_applies(p) && !p->route.sts_mx_ok)
			c->s.tls_failure = "validation-failure";  /* testing: reported */
	}
	if (!c->tls) {
		conn_fail(c, bad_ca ? "TLS: the route's CA file cannot be loaded" :
			  "TLS: cannot set up a client connection");
		return;
	}
	conn_timer(c, c->w->cfg->t.tls);
	conn_flush(c); /* the ClientHello */
}

static void arm_recv(struct conn *c)
{
	vl_ring_recv(&c->w->r, c->fd, vl_ud(c, OP_RECV));
	c->ops++;
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
	struct eng_worker *w = c->w;
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more)
		c->ops--;
	c->ops++; /* hold c while the input is handled */
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (cqe->res > 0 && !conn_closing(c)) {
			const char *data = vl_ring_buf(&w->r, bid);
			if (c->tls)
				conn_tls_input(c, data, (size_t)cqe->res);
			else
				conn_plaintext(c, data, (size_t)cqe->res);
		}
		vl_ring_buf_return(&w->r, bid);
	}
	c->ops--;
	if (conn_closing(c)) {
		conn_maybe_free(c);
		return;
	}
	if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS)) {
		char why[128];
		if (c->send_err)
			snprintf(why, sizeof why, "send failed: %s", strerror(c->send_err));
		else if (cqe->res == 0)
			snprintf(why, sizeof why, "connection closed by the peer");
		else
			snprintf(why, sizeof why, "connection lost: %s", strerror(-cqe->res));
		if (c->state == CONN_QUITTING || c->state == CONN_DRAINING)
			conn_close(c);
		else
			conn_fail(c, why);
		return;
	}
	if (!more)
		arm_recv(c); /* ENOBUFS or the kernel ended the multishot */
}

/* ---- connecting ---- */

static void on_connect(struct conn *c, int res)
{
	c->ops--;
	if (conn_closing(c)) {
		conn_maybe_free(c);
		return;
	}
	if (res < 0) {
		char why[160];
		snprintf(why, sizeof why, "connect to %s: %s", c->s.peer,
			 res == -ECANCELED ? "timed out" : strerror(-res));
		conn_fail(c, why);
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	arm_recv(c);
	enum eng_act act = eng_sess_connected(&c->s);
	if (act == ENG_WAIT)
		conn_enter(c, CONN_SETUP);
	conn_act(c, act);   /* the banner's timeout, or the handshake (implicit TLS) */
}

static void conn_open(struct eng_worker *w, struct pool *p)
{
	struct conn *c = vl_calloc(1, sizeof *c);
	const struct eng_route *r = &p->route;

	c->w = w;
	c->pool = p;
	vl_heap_node_init(&c->timer);
	eng_sess_init(&c->s, w->cfg, &p->route);
	c->s.id_worker = w->id;
	c->s.id_conn = ++w->conn_seq;
	eng_reply_parser_init(&c->rp);
	vl_sockaddr_str(&r->addr, c->s.peer, sizeof c->s.peer);
	c->all_next = w->all;
	if (w->all)
		w->all->all_prev = c;
	w->all = c;
	w->nconns++;
	conn_enter(c, CONN_CONNECTING);
	p->nconn++;
	eng_route_conns(w->e, p->hash, w->id, 1);
	p->nconnecting++;
	if (vl_now_ms() < p->may_plain_until)
		c->s.starttls_refused = true; /* skip STARTTLS, as if refused */
	c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || (r->has_source &&
			  bind(c->fd, (const struct sockaddr *)&r->source, r->sourcelen) < 0)) {
		char why[160];
		snprintf(why, sizeof why, "socket for %s: %s", c->s.peer, strerror(errno));
		eng_sess_fail(&c->s, "connect", 0, "", why);
		conn_close(c);
		return;
	}
	struct io_uring_sqe *sqe = get_sqe(w);
	io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)&r->addr, r->addrlen);
	io_uring_sqe_set_data64(sqe, vl_ud(c, OP_CONNECT));
	sqe->flags |= IOSQE_IO_LINK;
	c->connect_ts.tv_sec = (long long)(w->cfg->t.connect / 1000);
	c->connect_ts.tv_nsec = (long long)(w->cfg->t.connect % 1000) * 1000000;
	sqe = get_sqe(w);
	io_uring_prep_link_timeout(sqe, &c->connect_ts, 0);
	io_uring_sqe_set_data64(sqe, vl_ud(c, OP_LINK_TIMEOUT));
	c->ops += 2;
	/* The linked timeout covers the connect; the heap is a backstop. */
	conn_timer(c, w->cfg->t.connect + 1000);
}

/* Sessions a pool sets up at once: this many, or as many as it has up
 * already (doubling as they come up, as TCP's slow start). Two hundred
 * TLS handshakes begun together on two cores all end after most of a
 * second, and the first message (a transactional one, ahead of the bulk)
 * waits for that; sixteen at a time give it a session within
 * milliseconds, and a pool of ten thousand 50 ms away is up in nine
 * doublings. */
#define POOL_CONNECT_BURST 16

/* Open connections as the queue grows, up to this worker's share of the
 * route's cap (eng_share). */
static void pool_open(struct eng_worker *w, struct pool *p)
{
	unsigned cap = eng_share(p->hash, p->route.max_connections, w->id,
				 (unsigned)w->cfg->workers);
	unsigned burst = p->nestablished > POOL_CONNECT_BURST ? p->nestablished
							       : POOL_CONNECT_BURST;

	while (p->q.len > p->nconnecting && p->nconn < cap && p->nconnecting < burst)
		conn_open(w, p);
}

/* Match waiting messages with idle sessions; open connections as the
 * queue grows (pool_open). */
static void pool_kick(struct eng_worker *w, struct pool *p)
{
	while (p->q.head && p->idle)
		conn_ready(p->idle); /* takes from the queue itself */
	if (w->stopping || !dane_ready(w, p) || !sts_ready(p))
		return;
	if (vl_now_ms() < p->no_open_until) {
		/* Paused after a failed connect: the tick comes back for it. */
		if (p->q.head && !p->kick_later) {
			p->kick_later = true;
			p->kick_next = w->kick_list;
			w->kick_list = p;
		}
		return;
	}
	pool_open(w, p);
}

/* ---- timers ---- */

static void on_timeout(struct conn *c)
{
	char why[128];

	switch (c->state) {
	case CONN_IDLE: /* unused too long: leave politely */
		conn_quit(c);
		return;
	case CONN_QUITTING:
	case CONN_DRAINING:
		conn_close(c);
		return;
	default:
		if (c->send_err) {
			snprintf(why, sizeof why, "send failed: %s", strerror(c->send_err));
			conn_fail(c, why);
			return;
		}
		snprintf(why, sizeof why, "timeout after %llu s waiting in %s",
			 (unsigned long long)eng_sess_timeout(&c->s) / 1000,
			 eng_sess_stage(&c->s));
		conn_fail(c, why);
	}
}

static void expire_timers(struct eng_worker *w)
{
	uint64_t now = vl_now_ms();
	struct vl_heap_node *t;

	while ((t = vl_heap_top(&w->timers)) && t->key <= now) {
		struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
		vl_heap_del(&w->timers, t);
		on_timeout(c);
	}
}

/* ---- the loop ---- */

static size_t body_size(const struct eng_msg *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->nbody; i++)
		n += m->body[i].iov_len;
	return n;
}

static void take_inbox(struct eng_worker *w)
{
	struct eng_msg *m;

	while ((m = inbox_pop(w))) {
		if (m->prepare) {
			bool ok = m->prepare(m);
			m->prepare = NULL;
			if (m->prep_)
				atomic_fetch_sub_explicit(m->prep_, 1, memory_order_relaxed);
			m->prep_ = NULL;
			if (!ok) {
				msg_done(m);
				continue;
			}
			/* stopping: the owner may be gone; fail it here below */
			if (m->owner_ && m->owner_ != w && !w->stopping) {
				struct eng_worker *o = m->owner_;
				m->owner_ = NULL;
				eng_worker_submit(o, m);
				continue;
			}
		}
		m->size_ = body_size(m);
		m->first_ = m->count_ = 0;
		m->pending_ = m->nrcpt;
		if (m->nrcpt == 0) {
			msg_done(m);
			continue;
		}
		struct pool *p = pool_get(w, m->route, m->hash_);
		if (w->stopping) {
			queue_push(p, m, false);
			pool_fail_queue(p, NULL, NULL, "queue", 0, "", "the engine is shutting down");
			continue;
		}
		queue_push(p, m, false);
		pool_kick(w, p);
	}
}

static void arm_wake(struct eng_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof w->efd_val, 0);
	io_uring_sqe_set_data64(sqe, vl_ud(w, OP_WAKE));
}

static void arm_tick(struct eng_worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, vl_ud(w, OP_TICK));
}

/* Stop: queued messages fail now, idle sessions QUIT, busy ones get until
 * the grace deadline. */
static void begin_stop(struct eng_worker *w)
{
	w->stopping = true;
	for (size_t i = 0; i < w->npools_cap; i++)
		for (struct pool *p = w->pools[i]; p; p = p->hnext) {
			pool_fail_queue(p, NULL, NULL, "queue", 0, "", "the engine is shutting down");
			while (p->idle)
				conn_quit(p->idle);
		}
}

/* Pools whose pause after a failed connect is over get their turn. */
static void kick_paused(struct eng_worker *w)
{
	uint64_t now = vl_now_ms();
	struct pool **pp = &w->kick_list;

	while (*pp) {
		struct pool *p = *pp;
		if (now < p->no_open_until) {
			pp = &p->kick_next;
			continue;
		}
		*pp = p->kick_next;
		p->kick_later = false;
		pool_kick(w, p);
	}
}

/* Within a long batch of completions too: a message handed over waits
 * for at most this many of them. */
#define INBOX_EVERY 32

static void dispatch(void *arg, struct io_uring_cqe *cqe)
{
	struct eng_worker *w = arg;
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = vl_ud_ptr(ud);

	if (++w->ncqe % INBOX_EVERY == 0)
		take_inbox(w);
	if (!p)
		return;
	switch ((enum op)vl_ud_op(ud)) {
	case OP_DNS:
		if (w->dns)
			dns_on_cqe(w->dns, cqe);
		break;
	case OP_CONNECT: on_connect(p, cqe->res); break;
	case OP_RECV: on_recv(p, cqe); break;
	case OP_SEND: on_send(p, cqe->res); break;
	case OP_LINK_TIMEOUT: {
		struct conn *c = p;
		c->ops--;
		conn_maybe_free(c);
		break;
	}
	case OP_WAKE:
		atomic_store(&w->wake_pending, false);
		take_inbox(w);
		take_dns(w);
		arm_wake(w);
		break;
	case OP_TICK:
		arm_tick(w);
		kick_paused(w);
		if (w->dns) {          /* a fresh view of the resolver's counters */
			pthread_mutex_lock(&w->dns_mu);
			dns_get_stats(w->dns, &w->dns_seen);
			pthread_mutex_unlock(&w->dns_mu);
		}
		break;
	}
}

/* Handshakes that waited their turn begin as others end (from the loop,
 * not from inside an ending one: a failing start closes its connection). */
static void hs_next(struct eng_worker *w)
{
	while (w->hs_head && w->nhandshakes < HANDSHAKES_MAX) {
		struct conn *c = w->hs_head;
		hs_unlink(c);
		c->hs_running = true;
		w->nhandshakes++;
		conn_tls_start(c);
	}
}

int eng_worker_run(struct eng_worker *w)
{
	if (vl_ring_enable(&w->r) < 0) {
		vl_log(VL_LOG_ERROR, "engine: cannot enable the ring: %s", strerror(errno));
		return -1;
	}
	dns_start(w);
	arm_wake(w);
	arm_tick(w);
	take_inbox(w);
	take_dns(w);
	for (;;) {
		if (vl_ring_wait(&w->r, dispatch, w) < 0)
			return -1;
		/* Messages handed over during the batch go to their pools now,
		 * not after the eventfd's completion comes round in a later
		 * batch (a transactional one would wait a batch or two of
		 * hundreds of completions). wake_pending stays: that
		 * completion still comes and finds the inbox empty. */
		take_inbox(w);
		expire_timers(w);
		hs_next(w);
		atomic_store_explicit(&w->nconns_seen, w->nconns, memory_order_relaxed);
		if (atomic_load(&w->stop)) {
			if (!w->stopping)
				begin_stop(w);
			take_inbox(w);
			if (vl_now_ms() > w->stop_deadline)
				for (struct conn *c = w->all, *next; c; c = next) {
					next = c->all_next;
					if (!conn_closing(c))
						conn_fail(c, "the engine is shutting down");
				}
			if (w->nconns == 0) {
				dns_stop(w);
				return 0;
			}
		}
	}
}

/* ---- setup ---- */

struct eng_worker *eng_worker_new(struct engine *e, const struct eng_config *cfg,
				  unsigned id, char *err, size_t errlen)
{
	struct eng_worker *w = vl_cacheline_alloc(sizeof *w);

	w->e = e;
	w->cfg = cfg;
	w->id = id;
	w->efd = -1;
	inbox_init(w);
	pthread_mutex_init(&w->dns_mu, NULL);
	w->tick_ts.tv_nsec = TICK_MS * 1000000LL;
	w->tls_ctx = tls_client_ctx_new(cfg->ca_file[0] ? cfg->ca_file : NULL, err, errlen);
	if (!w->tls_ctx)
		goto fail;
	w->efd = eventfd(0, EFD_CLOEXEC);
	if (w->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if (vl_ring_init(&w->r, RING_ENTRIES, CQ_ENTRIES, NBUFS, BUFSZ, err, errlen) < 0)
		goto fail;
	return w;
fail:
	eng_worker_free(w);
	return NULL;
}

size_t eng_worker_conns(struct eng_worker *w)
{
	return atomic_load_explicit(&w->nconns_seen, memory_order_relaxed);
}

void eng_worker_free(struct eng_worker *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->npools_cap; i++)
		for (struct pool *p = w->pools[i], *n; p; p = n) {
			n = p->hnext;
			SSL_SESSION_free(p->ticket);
			free(p->dane.rr);
			free(p->dane.text);
			free(p);
		}
	free(w->pools);
	while (w->spares) {
		struct send_slot *t = w->spares;
		w->spares = t->next;
		slot_free(t);
	}
	vl_heap_free(&w->timers);
	pthread_mutex_destroy(&w->dns_mu);
	vl_ring_exit(&w->r);
	if (w->efd >= 0)
		close(w->efd);
	tls_ctx_free(w->tls_ctx);
	for (unsigned i = 0; i < w->nstores; i++)
		tls_store_free(w->stores[i].st);
	free(w);
}
