/*
 * The delivery thread: turns spooled jobs into engine messages at each
 * site's pace and every result into a journaled outcome. It owns jobs in
 * delivery, sites and timers outright; the API threads and the engine's
 * workers reach it only through its inbox (a mutex and a condition
 * variable), so nothing here needs a lock of its own.
 *
 * A message carries one recipient, or, for a job whose content is the
 * same for every recipient (msg_job_shareable, no VERP), up to the site's
 * max_recipients_per_message recipients of that job waiting at that site:
 * one rendering, one transaction with several RCPTs, and a result per
 * recipient that is journaled, counted and told in events as alone.
 */
#include "deliver_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SWEEP_MS 5000            /* expiry check of jobs that do not move */
#define WAIT_MAX_MS 1000

/* ---- timers, on common's heap ---- */

void sched_timer_add(struct sched_deliver *d, uint64_t due_ms, enum sched_tkind k, void *p,
		     uint32_t idx)
{
	struct sched_timer *t = d->free_timers;

	if (t)
		d->free_timers = t->p;
	else
		t = vl_malloc(sizeof *t);
	*t = (struct sched_timer){ .kind = k, .idx = idx, .p = p };
	vl_heap_node_init(&t->hn);
	vl_heap_set(&d->timers, &t->hn, due_ms);
}

/* A timer fired or forgotten goes to the free list (p links it there). */
static void timer_free(struct sched_deliver *d, struct sched_timer *t)
{
	t->p = d->free_timers;
	d->free_timers = t;
}

/* The next timer due by now (the caller gives it to timer_free), or NULL. */
static struct sched_timer *timer_due(struct sched_deliver *d, uint64_t now)
{
	struct vl_heap_node *top = vl_heap_top(&d->timers);

	if (!top || top->key > now)
		return NULL;
	vl_heap_del(&d->timers, top);
	return (struct sched_timer *)top;
}

/* Drop the retry timers of a job that is going away: the heap is rebuilt
 * from the timers that stay. */
static void timers_forget(struct sched_deliver *d, struct sched_djob *dj)
{
	struct vl_heap old = d->timers;

	d->timers = (struct vl_heap){ 0 };
	for (size_t i = 0; i < old.n; i++) {
		struct sched_timer *t = (struct sched_timer *)old.v[i];
		struct sched_sjq *q = t->p;
		vl_heap_node_init(&t->hn);
		if (t->kind == SCHED_T_RETRY && q->dj == dj)
			q->site->deferred--;
		else if (t->kind != SCHED_T_REQUEUE || t->p != dj) {
			vl_heap_set(&d->timers, &t->hn, t->hn.key);
			continue;
		}
		timer_free(d, t);
	}
	dj->ntimers = 0;
	vl_heap_free(&old);
}

static void fire_retry(struct sched_deliver *d, struct sched_sjq *q, uint32_t idx)
{
	struct sched_djob *dj = q->dj;

	const char *domain;

	q->site->deferred--;
	dj->ntimers--;
	if (dj->st[idx] != SCHED_R_DEFERRED || dj->cancelled || dj->expired)
		return;
	if (vl_wall_time() >= dj->expires) {
		sched_djob_expire(dj);
		return;
	}
	/* an MX site: the domain may have moved since (its answer's TTL); a
	 * site of several sources: the pool picks again (this one may be
	 * backing off) */
	if ((q->site->routes != &q->site->route || q->site->src >= 0) &&
	    sched_djob_email(dj, idx, &domain)) {
		sched_dom_enqueue(d, dj, idx, domain);
		return;
	}
	sched_sjq_push(q, idx);
	q->site->waiting++;
	sched_site_ready(d, q->site);
}

/* A recipient whose domain did not resolve tries its domain again. */
static void fire_requeue(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx)
{
	const char *domain;

	dj->ntimers--;
	if (dj->st[idx] != SCHED_R_DEFERRED || dj->cancelled || dj->expired ||
	    !sched_djob_email(dj, idx, &domain))
		return;
	sched_dom_enqueue(d, dj, idx, domain);
}

static void fire_timers(struct sched_deliver *d)
{
	uint64_t now = vl_now_ms();

	struct sched_timer *t;

	while ((t = timer_due(d, now))) {
		if (t->kind == SCHED_T_RETRY)
			fire_retry(d, t->p, t->idx);
		else if (t->kind == SCHED_T_REQUEUE)
			fire_requeue(d, t->p, t->idx);
		else
			sched_site_ready(d, t->p);
		timer_free(d, t);
	}
}

/* ---- events ---- */

void sched_deliver_event(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
			 const char *type, const struct sched_dmsg *m,
			 const struct sched_jrec *r)
{
	if (!d->ev)
		return;
	const char *domain = "", *email = m ? m->rcpt : sched_djob_email(dj, idx, &domain);
	if (m && email)
		domain = strrchr(email, '@') ? strrchr(email, '@') + 1 : email;
	struct sched_event ev = {
		.type = type, .time = vl_wall_time(), .job = dj->j->id,
		.recipient = email ? email : "", .domain = domain,
		.attempt = dj->att[idx],
	};

	if (r) {
		ev.code = r->code;
		ev.enhanced = r->enhanced;
		ev.text = r->text;
		ev.bounce_class = sched_bounce_class_name((enum sched_bounce_class)r->cls);
	}
	if (m) {
		ev.site = m->q->site->name;
		ev.mx = m->q->site->routes ? m->q->site->routes[m->host].name : NULL;
		ev.peer_address = m->peer[0] ? m->peer : NULL;
		ev.source_address = m->q->site->src_addr;
		ev.tls_version = m->tls_version[0] ? m->tls_version : NULL;
		ev.tls_cipher = m->tls_cipher;
		ev.tls_verified = m->tls_verified;
		ev.tls_policy = tls_policy_name(m->q->site->route.tls);
		ev.tls_dane = m->tls_dane;
		ev.tls_mta_sts = m->q->site->sts_mode == ENG_STS_ENFORCE ? "enforce" :
				 m->q->site->sts_mode == ENG_STS_TESTING ? "testing" : NULL;
		ev.size = m->out.size;
	}
	sched_event_format(&ev, &d->events);
}

/* ---- sending ---- */

/* src (NULL: "") into dst of size n, cut to fit: snprintf's "%s" without
 * its format parsing (a result a recipient, on the workers). */
static void copy(char *dst, size_t n, const char *src)
{
	size_t len = src ? strnlen(src, n - 1) : 0;

	memcpy(dst, src ? src : "", len);
	dst[len] = '\0';
}

static void on_result(struct eng_msg *em, size_t rcpt, const struct eng_result *r)
{
	struct sched_dmsg *m = em->arg;

	/* a shared message: the recipient's own slot */
	struct sched_rres *x = m->nrcpt > 1 && rcpt < m->nrcpt ? &m->res[rcpt] : &m->r;

	x->status = r->status;
	x->code = r->code;
	x->maybe = r->maybe_delivered;
	copy(x->enhanced, sizeof x->enhanced, r->enhanced);
	copy(x->stage, sizeof x->stage, r->stage);
	copy(x->text, sizeof x->text, r->text);
	/* the connection's: the same for every recipient of the transaction */
	copy(m->peer, sizeof m->peer, r->peer);
	copy(m->tls_version, sizeof m->tls_version, r->tls_version);
	copy(m->tls_cipher, sizeof m->tls_cipher, r->tls_cipher);
	m->tls_verified = r->tls_verified;
	m->tls_dane = r->tls_dane;
	if (r->reply_s > 0)
		m->reply_s = r->reply_s;
	sched_tlsrpt_copy(m, r);
}

/* On an engine worker: hand the message back to the delivery thread. */
static void on_done(struct eng_msg *em)
{
	struct sched_dmsg *m = em->arg;
	struct sched_deliver *d = m->dj->d;

	struct sched_dmsg *head = atomic_load_explicit(&d->results, memory_order_relaxed);

	do
		m->next = head;
	while (!atomic_compare_exchange_weak(&d->results, &head, m));
	/* seq_cst against wait_inbox's store of idle then load of results:
	 * one of the two sides sees the other */
	if (atomic_load(&d->idle)) {
		pthread_mutex_lock(&d->mu);
		pthread_cond_signal(&d->cv);
		pthread_mutex_unlock(&d->mu);
	}
}

static struct sched_dmsg *msg_get(struct sched_deliver *d)
{
	struct sched_dmsg *m = d->free_msgs;

	if (m) {
		d->free_msgs = m->next;
		return m;
	}
	m = vl_calloc(1, sizeof *m);
	msg_out_init(&m->out);
	vl_buf_init(&m->sig);
	return m;
}

/* Room for n recipients, and their results when shared: a message of one
 * keeps its result in its own fields (half a kilobyte a slot, and a
 * message for every session in flight). */
static void msg_reserve(struct sched_dmsg *m, size_t n)
{
	if (m->rcap < n) {
		m->rcap = n < 4 ? 4 : n < 2 * m->rcap ? 2 * m->rcap : n;
		m->rcpts = vl_realloc(m->rcpts, m->rcap * sizeof *m->rcpts);
		m->idxs = vl_realloc(m->idxs, m->rcap * sizeof *m->idxs);
	}
	if (n > 1 && m->rescap < m->rcap) {
		m->res = vl_realloc(m->res, m->rcap * sizeof *m->res);
		m->rescap = m->rcap;
	}
}

/* Recipient i of a shared message becomes the one processed: its index,
 * address and result into the message's own fields. */
static void msg_load(struct sched_dmsg *m, size_t i)
{
	m->idx = m->idxs[i];
	m->rcpt = m->rcpts[i];
	if (m->nrcpt > 1)
		m->r = m->res[i];
}

/* A result decided without a reply, for every recipient of the message. */
static void msg_result_all(struct sched_dmsg *m, enum eng_status st, const char *stage,
			   const char *text)
{
	m->r.status = st;
	m->r.code = 0;
	m->r.maybe = false;
	m->r.enhanced[0] = '\0';
	snprintf(m->r.stage, sizeof m->r.stage, "%s", stage);
	snprintf(m->r.text, sizeof m->r.text, "%s", text);
	for (size_t i = 0; m->nrcpt > 1 && i < m->nrcpt; i++)
		m->res[i] = m->r;
}

static void msg_put(struct sched_deliver *d, struct sched_dmsg *m)
{
	m->next = d->free_msgs;
	d->free_msgs = m;
}

static void process(struct sched_deliver *d, struct sched_dmsg *m);

/* An outcome decided here, without the engine (no route, bad render). */
static void local_result(struct sched_deliver *d, struct sched_dmsg *m, enum eng_status st,
			 const char *stage, const char *text)
{
	msg_result_all(m, st, stage, text);
	m->tls_verified = m->tls_dane = false;
	m->host = 0;
	m->out.size = 0;
	m->peer[0] = m->tls_version[0] = m->tls_cipher[0] = '\0';
	sched_tlsrpt_reset(m);
	process(d, m);
}

/* On an engine worker (eng_msg.prepare): DKIM-Signature fields in front
 * of the rendered message, so signing (RSA above all) runs on every core.
 * The body hash is computed once per job for the recipients that get the
 * job's common body, whatever their headers (the first worker to get there
 * publishes it). false: the message must not go (signing failed and
 * dkim_required is set); the result is set. */
static bool sign(struct eng_msg *em)
{
	struct sched_dmsg *m = em->arg;
	struct sched_djob *dj = m->dj;
	unsigned char bh[MSG_DKIM_BH_LEN];
	const unsigned char *use = NULL;
	char err[256];

	vl_buf_reset(&m->sig);        /* a message walking the MX list is signed anew */
	if (m->body_common) {
		if (atomic_load_explicit(&dj->bh_ok, memory_order_acquire)) {
			use = dj->bh;
		} else if (msg_dkim_msg_body_hash(dj->dkim_opts.bcanon, m->out.iov, m->out.niov,
						  bh) == 0) {
			use = bh;
			if (!atomic_exchange(&dj->bh_claim, true)) {
				memcpy(dj->bh, bh, sizeof bh);
				atomic_store_explicit(&dj->bh_ok, true, memory_order_release);
			}
		}
	}
	if (msg_dkim_sign(dj->keys, dj->nkeys, &dj->dkim_opts, m->out.iov, m->out.niov, use,
			  &m->sig, err, sizeof err) < 0) {
		if (dj->dkim_required) {
			char why[300];
			snprintf(why, sizeof why, "cannot sign: %s", err);
			msg_result_all(m, ENG_PERMANENT, "dkim", why);
			m->peer[0] = m->tls_version[0] = '\0';
			return false;
		}
		vl_log(VL_LOG_WARN, "job %s: sending unsigned: %s", dj->j->id, err);
		return true;
	}
	if (m->iovcap < m->out.niov + 1) {
		m->iovcap = m->out.niov + 8;
		m->iov = vl_realloc(m->iov, m->iovcap * sizeof *m->iov);
	}
	m->iov[0] = (struct iovec){ m->sig.p, m->sig.len };
	memcpy(m->iov + 1, m->out.iov, m->out.niov * sizeof *m->iov);
	em->body = m->iov;
	em->nbody = m->out.niov + 1;
	return true;
}

static int render(struct sched_deliver *d, struct sched_dmsg *m, struct sched_rcpt *r)
{
	struct sched_djob *dj = m->dj;
	struct msg_err me;
	struct msg_rcpt mr = { .email = r->email, .name = r->name, .index = m->idx,
			       .nsubs = r->nsubs, .keys = r->keys, .vals = r->vals,
			       .lens = r->vlens };

	if (msg_render(dj->msg, &mr, time(NULL), &m->out, &me) < 0) {
		local_result(d, m, ENG_PERMANENT, "size", me.message);
		return -1;
	}
	if (!dj->verp || msg_verp(dj->sender, dj->j->id, m->idx, m->from, sizeof m->from) < 0)
		snprintf(m->from, sizeof m->from, "%s", dj->sender);
	vl_buf_reset(&m->sig);
	if (dj->nkeys) {              /* signed on the worker: sign() */
		m->body_common = dj->body_static || msg_rcpt_body_static(dj->msg, &mr);
		return 0;
	}
	if (d->cfg->dkim_required) {
		char why[320];
		snprintf(why, sizeof why, "dkim_required is set and no DKIM key is configured "
			 "for %s", dj->from_domain[0] ? dj->from_domain : "the From domain");
		local_result(d, m, ENG_PERMANENT, "dkim", why);
		return -1;
	}
	return 0;
}

static bool ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static void submit(struct sched_deliver *d, struct sched_dmsg *m)
{
	struct eng_msg *em = &m->m;

	memset(em, 0, sizeof *em);
	em->route = &m->q->site->routes[m->host];
	em->mail_from = m->from;
	em->rcpts = m->rcpts;
	em->nrcpt = m->nrcpt;
	em->body = m->out.iov;
	em->nbody = m->out.niov;
	em->prepare = m->dj->nkeys ? sign : NULL;
	em->eightbit = m->out.eightbit;
	em->smtputf8 = m->out.smtputf8 || !ascii(m->from);
	for (size_t i = 0; i < m->nrcpt && !em->smtputf8; i++)
		em->smtputf8 = !ascii(m->rcpts[i]);
	em->require_tls = m->dj->require_tls;
	em->urgent = m->dj->transactional;
	em->on_result = on_result;
	em->on_done = on_done;
	em->arg = m;
	sched_tlsrpt_reset(m);
	m->sent_ms = vl_now_ms();
	m->reply_s = 0;
	d->dispatched++;
	eng_submit(d->eng, em);
}

/* Suppressed: decided here, without the engine. */
static bool suppressed(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
		       const struct sched_rcpt *r)
{
	if (!d->sup || !sched_suppressed(d->sup, r->email, r->email_len))
		return false;
	struct sched_jrec why = { .textlen = 0 };
	why.textlen = (uint16_t)snprintf(why.text, sizeof why.text, "suppressed: the "
					 "address is on the suppression list");
	sched_djob_set(dj, idx, SCHED_R_SUPPRESSED, &why);
	sched_deliver_event(d, dj, idx, "AdminBounce", NULL, &why);
	d->suppressed++;
	return true;
}

/* Recipient idx goes into m, in flight (an attempt, as alone). */
static void msg_add(struct sched_deliver *d, struct sched_dmsg *m, uint32_t idx,
		    const char *email)
{
	struct sched_djob *dj = m->dj;

	msg_reserve(m, m->nrcpt + 1);
	m->idxs[m->nrcpt] = idx;
	m->rcpts[m->nrcpt++] = email;
	dj->att[idx]++;
	sched_djob_set(dj, idx, SCHED_R_INFLIGHT, NULL);
	dj->inflight++;
	d->inflight++;
}

/* Recipients a message of dj may carry at site s: 1 unless the job is
 * shared; then the policy's max_recipients_per_message (the route's
 * max_rcpts_per_txn), and no more than the server took before it said
 * "too many recipients". */
static size_t msg_limit(const struct sched_djob *dj, const struct sched_site *s)
{
	size_t n = s->route.max_rcpts_per_txn ? s->route.max_rcpts_per_txn : 1;

	if (!dj->shared)
		return 1;
	return s->rcpt_limit && s->rcpt_limit < n ? s->rcpt_limit : n;
}

static bool rcpt_shareable(const struct sched_djob *dj, const struct sched_rcpt *r)
{
	struct msg_rcpt mr = { .email = r->email, .nsubs = r->nsubs, .keys = r->keys,
			       .vals = r->vals, .lens = r->vlens };

	return msg_rcpt_shareable(dj->msg, &mr);
}

/* The recipients waiting behind m's first in its queue (the same job at
 * the same site) join it, in queue order, up to limit and while the job's
 * rate_limit has tokens (one a recipient; the site's rate counts the
 * message). One with values of its own stops it: it goes alone next. */
static void gather(struct sched_deliver *d, struct sched_dmsg *m, size_t limit)
{
	struct sched_sjq *q = m->q;
	struct sched_djob *dj = m->dj;
	struct sched_rcpt *r = &d->rcpt;
	uint64_t now = vl_now_ms();

	while (m->nrcpt < limit && q->len) {
		uint32_t idx = q->idx[q->head];
		bool gone = sched_rstate_final(dj->st[idx]) ||
			    sched_table_get(dj->table, idx, r) < 0;
		if (!gone && (sched_bucket_wait(&dj->rate, now) || !rcpt_shareable(dj, r)))
			break;
		sched_sjq_pop(q);
		q->site->waiting--;
		if (gone || suppressed(d, dj, idx, r))
			continue;
		sched_bucket_take(&dj->rate);
		msg_add(d, m, idx, r->email);
	}
}

void sched_deliver_send(struct sched_deliver *d, struct sched_sjq *q, uint32_t idx)
{
	struct sched_djob *dj = q->dj;
	struct sched_rcpt *r = &d->rcpt;

	if (sched_rstate_final(dj->st[idx]))
		return;
	if (sched_table_get(dj->table, idx, r) < 0)
		return;
	if (suppressed(d, dj, idx, r))
		return;
	struct sched_dmsg *m = msg_get(d);
	m->dj = dj;
	m->q = q;
	m->nrcpt = 0;
	msg_add(d, m, idx, r->email);
	m->idx = idx;
	m->rcpt = r->email;
	q->site->inflight++;
	if (!q->site->routable) {
		local_result(d, m, ENG_TRANSIENT, "routing", q->site->no_route);
		return;
	}
	m->host = sched_site_first_host(q->site, vl_now_ms());
	size_t limit = msg_limit(dj, q->site);
	if (limit > 1 && !rcpt_shareable(dj, r))
		limit = 1;
	msg_reserve(m, limit);
	/* rendered for the first recipient: its index names the Message-ID */
	if (render(d, m, r) < 0)
		return;
	if (limit > 1)
		gather(d, m, limit);
	submit(d, m);
}

/* ---- results ---- */

/* When recipient idx of dj, deferred just now, is retried (shape.c):
 * false when the job has expired instead. */
static bool retry_wait(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
		       uint64_t *wait_ms)
{
	uint64_t delay = sched_retry_delay(d->cfg->retry_ms, d->cfg->nretry, dj->att[idx], &d->seed);

	return !dj->expired && sched_retry_wait(delay, vl_wall_time(), dj->expires, wait_ms);
}

static void fill_jrec(struct sched_jrec *r, const struct sched_dmsg *m,
		      const struct sched_bounce_verdict *v)
{
	memset(r, 0, offsetof(struct sched_jrec, text));
	r->code = (int16_t)m->r.code;
	memcpy(r->enhanced, m->r.enhanced, sizeof r->enhanced);
	r->cls = (uint8_t)v->cls;
	/* "stage: text" when no reply came, else the reply's text; cut to fit */
	size_t n = 0;
	if (m->r.stage[0] && !m->r.code) {
		n = strnlen(m->r.stage, sizeof m->r.stage);
		memcpy(r->text, m->r.stage, n);
		memcpy(r->text + n, ": ", 2);
		n += 2;
	}
	size_t tl = strnlen(m->r.text, SCHED_JREC_TEXT_MAX - n);
	memcpy(r->text + n, m->r.text, tl);
	n += tl;
	r->text[n] = '\0';
	r->textlen = (uint16_t)n;
	r->flags = m->r.maybe;
}

static void transient(struct sched_deliver *d, struct sched_dmsg *m, struct sched_jrec *r)
{
	struct sched_djob *dj = m->dj;
	uint64_t wait;

	if (dj->cancelled) {
		sched_djob_set(dj, m->idx, SCHED_R_CANCELLED, r);
		sched_deliver_event(d, dj, m->idx, "AdminBounce", m, r);
		return;
	}
	if (!retry_wait(d, dj, m->idx, &wait)) {
		sched_djob_set(dj, m->idx, SCHED_R_EXPIRED, r);
		sched_deliver_event(d, dj, m->idx, "Expiration", m, r);
		d->expired++;
		return;
	}
	sched_djob_set(dj, m->idx, SCHED_R_DEFERRED, r);
	sched_deliver_event(d, dj, m->idx, "TransientFailure", m, r);
	/* the wait was cut on the wall clock; timers run on the monotonic one */
	m->q->site->deferred++;
	dj->ntimers++;
	sched_timer_add(d, vl_now_ms() + wait, SCHED_T_RETRY, m->q, m->idx);
	d->transient++;
	sched_hist_add(d->hist, sched_hist_now(), SCHED_HIST_DEFERRED);
}

/* Refused at connect or at the greeting, or not to be used under DANE
 * (its TLSA lookup failed, or its certificate matched none of its
 * records: RFC 7672 2.2), or that an enforced MTA-STS policy rules out
 * (not in its mx list, or a certificate that does not verify: RFC 8461
 * 4.2): the next MX host gets the same message, without it counting as an
 * attempt (RFC 5321 5.1). A host that cannot take a REQUIRETLS message
 * (RFC 8689 4.2.1) is passed over for that message only: it stays up for
 * the others. */
static bool walk_mx(struct sched_deliver *d, struct sched_dmsg *m)
{
	struct sched_site *s = m->q->site;
	uint64_t now = vl_now_ms();
	bool rtls = !strcmp(m->r.stage, "requiretls");

	for (size_t i = 1; i < m->nrcpt; i++)   /* before MAIL: the same for all */
		if (m->res[i].status != ENG_TRANSIENT || strcmp(m->res[i].stage, m->r.stage))
			return false;
	if (m->r.status != ENG_TRANSIENT || m->r.maybe || s->nroutes < 2 || atomic_load(&d->quiet) ||
	    (strcmp(m->r.stage, "connect") && strcmp(m->r.stage, "greeting") &&
	     strcmp(m->r.stage, "dane") && strcmp(m->r.stage, "mta-sts") && !rtls))
		return false;
	if (!rtls)
		s->down_until[m->host] = now + 60000;
	int next = sched_site_next_host(s, m->host, now);
	if (next < 0)
		return false;
	m->host = (unsigned)next;
	submit(d, m);
	return true;
}

/* A provider's reply rule decides before the verdict: a bounce, or a
 * retry (the address is blocked, not the recipient). */
static void apply_rule(struct sched_dmsg *m, const struct cfg_reply_rule *rr)
{
	if (rr)
		m->r.status = rr->action == CFG_RA_BOUNCE ? ENG_PERMANENT : ENG_TRANSIENT;
}

/* The verdict, journal record and provider rule of the result loaded in m. */
static void judge(struct sched_deliver *d, struct sched_dmsg *m,
		  struct sched_bounce_verdict *v, struct sched_jrec *r,
		  const struct cfg_reply_rule **rr)
{
	*v = (struct sched_bounce_verdict){ SCHED_BC_NONE, false };
	if (m->r.status != ENG_DELIVERED)
		sched_bounce_classify(d->rules, m->r.code, m->r.enhanced, m->r.text, m->r.stage, v);
	*rr = sched_site_reply_rule(d, m->q->site, m);
	apply_rule(m, *rr);
	if (m->r.status == ENG_PERMANENT)
		v->hard = true;         /* the engine saw a 5xx: final whatever the class */
	else if (*rr)
		v->hard = false;
	fill_jrec(r, m, v);
}

/* Recipients i and i - 1 of a shared message got the same result (the
 * accepted ones share the final reply): judged once. */
static bool same_result(const struct sched_dmsg *m, size_t i)
{
	const struct sched_rres *a = &m->res[i], *b = &m->res[i - 1];

	return a->status == b->status && a->code == b->code && a->maybe == b->maybe &&
	       !strcmp(a->stage, b->stage) && !strcmp(a->enhanced, b->enhanced) &&
	       !strcmp(a->text, b->text);
}

/* One recipient's outcome (m loaded with it: msg_load; v, r and the
 * provider's rule rr judged). */
static void one_result(struct sched_deliver *d, struct sched_dmsg *m,
		       const struct sched_bounce_verdict *vp, struct sched_jrec *r,
		       const struct cfg_reply_rule *rr)
{
	struct sched_djob *dj = m->dj;
	struct sched_bounce_verdict v = *vp;

	sched_site_result(d, m->q->site, m, &v, rr);
	if (m->q->site->src >= 0)
		d->by_source[m->q->site->src][m->r.status == ENG_DELIVERED ? 0 :
					      m->r.status == ENG_PERMANENT ? 1 : 2]++;
	if (m->r.status != ENG_DELIVERED && v.cls < SCHED_BC_COUNT)
		d->by_class[m->r.status == ENG_PERMANENT ? 0 : 1][v.cls]++;
	dj->inflight--;
	d->inflight--;
	if (m->r.status == ENG_DELIVERED) {
		sched_djob_set(dj, m->idx, SCHED_R_DELIVERED, r);
		sched_deliver_event(d, dj, m->idx, "Delivery", m, r);
		d->delivered++;
		sched_hist_add(d->hist, sched_hist_now(), SCHED_HIST_DELIVERED);
		sched_lat_delivered(sched_lat_of(d->sc), dj->transactional,
				    vl_wall_time() - dj->j->created);
	} else if (m->r.status == ENG_PERMANENT) {
		sched_djob_set(dj, m->idx, SCHED_R_BOUNCED, r);
		sched_deliver_event(d, dj, m->idx, "Bounce", m, r);
		d->bounced++;
		sched_hist_add(d->hist, sched_hist_now(), SCHED_HIST_BOUNCED);
		if (v.cls == SCHED_BC_INVALID_RECIPIENT) {
			vl_buf_append(&d->suppress, m->rcpt, strlen(m->rcpt) + 1);
			vl_buf_append(&d->suppress, dj->j->id, strlen(dj->j->id) + 1);
		}
	} else {
		transient(d, m, r);
	}
}

/* "452 4.5.3 too many recipients" to a RCPT of a shared message (RFC 5321
 * 4.5.3.1.10; or 552, which RFC 5321 says to take as 452 there), the
 * recipient loaded: the server's limit, not the recipient's failure. */
static bool too_many(const struct sched_dmsg *m)
{
	if (m->nrcpt < 2 || strcmp(m->r.stage, "rcpt") || (m->r.code != 452 && m->r.code != 552))
		return false;
	return (strlen(m->r.enhanced) == 5 && !strcmp(m->r.enhanced + 1, ".5.3")) ||
	       strcasestr(m->r.text, "too many recipients");
}

/* Recipient i of m refused as one too many: when the server took others
 * of the message, it goes back to its queue at once, without an event and
 * not counted as an attempt (its state goes back to queued, which is not
 * journaled), and the site's messages carry no more than the server took
 * before it said so. false: an ordinary deferral. */
static bool requeue(struct sched_deliver *d, struct sched_dmsg *m, size_t i)
{
	struct sched_djob *dj = m->dj;
	struct sched_site *s = m->q->site;
	size_t taken = 0;

	for (size_t k = 0; k < m->nrcpt; k++)
		taken += strcmp(m->res[k].stage, "rcpt") && strcmp(m->res[k].stage, "mail");
	if (!taken || dj->cancelled || dj->expired || atomic_load(&d->quiet))
		return false;
	if (i && (!s->rcpt_limit || i < s->rcpt_limit)) {
		s->rcpt_limit = (unsigned)i;
		vl_log(VL_LOG_INFO, "site %s: %d %s %.160s after %zu recipients: messages carry "
		       "%zu at most", s->key, m->r.code, m->r.enhanced, m->r.text, i, i);
	}
	dj->inflight--;
	d->inflight--;
	dj->att[m->idx]--;
	sched_djob_set(dj, m->idx, SCHED_R_QUEUED, NULL);
	sched_sjq_push(m->q, m->idx);
	s->waiting++;
	sched_site_ready(d, s);
	return true;
}

/* How the message's connection was protected, counted (m loaded with its
 * first recipient). Messages that reached no transaction (no route, no
 * connection, a failed greeting) count nowhere, but for TLS failures. */
static void tls_count(struct sched_deliver *d, const struct sched_dmsg *m)
{
	static const char *const txn[] = { "mail", "rcpt", "data", "dot" };
	enum sched_tls k;
	bool sent = false;

	for (size_t i = 0; i < VL_ARRAY_LEN(txn); i++)
		sent |= !strcmp(m->r.stage, txn[i]);
	if (m->tls_failure[0])
		k = SCHED_TLS_FAILED;
	else if (!sent)
		k = SCHED_TLS_KINDS;
	else if (!m->tls_version[0])
		k = SCHED_TLS_NONE;
	else if (m->tls_dane)
		k = SCHED_TLS_DANE;
	else if (m->tls_verified)
		k = m->q->site->sts ? SCHED_TLS_STS : SCHED_TLS_VERIFIED;
	else
		k = SCHED_TLS_ENCRYPTED;
	if (k != SCHED_TLS_KINDS)
		sched_lat_tls(sched_lat_of(d->sc), k);
}

/* The peer's response time to the end of data, into its site's histogram. */
static void site_reply_time(struct sched_deliver *d, struct sched_dmsg *m)
{
	struct sched_site *s = m->q->site;
	struct sched_lat *l = sched_lat_of(d->sc);

	if (m->reply_s <= 0)
		return;
	if (s->lat_slot < 0)
		s->lat_slot = sched_lat_site(l, s->name);
	sched_lat_reply(l, s->lat_slot, m->reply_s);
}

static void process(struct sched_deliver *d, struct sched_dmsg *m)
{
	sched_tlsrpt_record(d, m);     /* one session for the message */
	site_reply_time(d, m);
	msg_load(m, 0);
	tls_count(d, m);
	if (walk_mx(d, m))
		return;
	m->q->site->inflight--;        /* the message leaves the site's window */
	struct sched_bounce_verdict v;
	struct sched_jrec r;
	const struct cfg_reply_rule *rr = NULL;
	bool judged = false;
	for (size_t i = 0; i < m->nrcpt; i++) {
		msg_load(m, i);
		if (too_many(m) && requeue(d, m, i)) {
			judged = false;
			continue;
		}
		if (!judged || !same_result(m, i))
			judge(d, m, &v, &r, &rr);
		else
			apply_rule(m, rr);
		judged = true;
		one_result(d, m, &v, &r, rr);
	}
	msg_put(d, m);
}

/* A recipient that never reached the engine: its domain did not resolve
 * (permanently: a bounce; for now: a retry later). */
void sched_deliver_local(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
			 bool permanent, const char *text)
{
	struct sched_jrec r = { .cls = SCHED_BC_DNS };
	int n = snprintf(r.text, sizeof r.text, "%s", text);

	r.textlen = (uint16_t)(n > SCHED_JREC_TEXT_MAX ? SCHED_JREC_TEXT_MAX : n);
	dj->att[idx]++;
	if (permanent) {
		sched_djob_set(dj, idx, SCHED_R_BOUNCED, &r);
		sched_deliver_event(d, dj, idx, "Bounce", NULL, &r);
		d->bounced++;
		sched_hist_add(d->hist, sched_hist_now(), SCHED_HIST_BOUNCED);
		d->by_class[0][SCHED_BC_DNS]++;
		return;
	}
	uint64_t wait;
	if (!retry_wait(d, dj, idx, &wait)) {
		sched_djob_set(dj, idx, SCHED_R_EXPIRED, &r);
		sched_deliver_event(d, dj, idx, "Expiration", NULL, &r);
		d->expired++;
		return;
	}
	sched_djob_set(dj, idx, SCHED_R_DEFERRED, &r);
	sched_deliver_event(d, dj, idx, "TransientFailure", NULL, &r);
	d->transient++;
	sched_hist_add(d->hist, sched_hist_now(), SCHED_HIST_DEFERRED);
	d->by_class[1][SCHED_BC_DNS]++;
	dj->ntimers++;
	sched_timer_add(d, vl_now_ms() + wait, SCHED_T_REQUEUE, dj, idx);
}

/* ---- the loop ---- */

/* Counter changes that need no commit (dispatches) go to the registry now. */
static void publish_now(struct sched_deliver *d)
{
	if (!d->now_dirty)
		return;
	d->now_dirty = false;
	sched_lock(d->sc);
	for (struct sched_djob *dj = d->jobs; dj; dj = dj->next)
		for (int s = 0; s < SCHED_NSTATES; s++) {
			dj->j->counts[s] = (size_t)((long long)dj->j->counts[s] + dj->now_delta[s]);
			dj->now_delta[s] = 0;
		}
	sched_unlock(d->sc);
}

static void maybe_commit(struct sched_deliver *d, bool now)
{
	uint64_t t = vl_now_ms();
	bool any = d->events.len > 0 || d->batch_dirty;

	/* a committer behind (a slow fsync) gets one bigger batch later
	 * rather than a queue of them */
	if (!any || (!now && (t < d->next_commit_ms || sched_commit_backlog(d->commit) > 1)))
		return;
	sched_commit_submit(d->commit, d->jobs, &d->events, &d->suppress);
	d->batch_dirty = false;
	d->reap_due = true;       /* in_batch is cleared: jobs may be over */
	d->next_commit_ms = t + (uint64_t)d->cfg->spool.journal_commit_ms;
}

/* A job with nothing left to do leaves the delivery thread. */
static void reap(struct sched_deliver *d)
{
	if (!d->reap_due)
		return;
	d->reap_due = false;
	for (struct sched_djob **p = &d->jobs; *p;) {
		struct sched_djob *dj = *p;
		if (dj->nonfinal || dj->inflight || dj->in_batch || dj->pending_dns ||
		    dj->enq < dj->n) {
			p = &dj->next;
			continue;
		}
		*p = dj->next;
		if (dj->ntimers)
			timers_forget(d, dj);
		sched_sjq_unlink_all(dj);
		sched_lock(d->sc);
		dj->j->d = NULL;
		sched_unlock(d->sc);
		sched_djob_free(dj);
	}
}

static void sweep(struct sched_deliver *d)
{
	double now = vl_wall_time();

	for (struct sched_djob *dj = d->jobs; dj; dj = dj->next)
		if (dj->nonfinal && now >= dj->expires)
			sched_djob_expire(dj);
	sched_retire(d->sc);
}

static void take_commands(struct sched_deliver *d, struct sched_job ***adds, size_t *nadds,
			  struct sched_job ***ctls, size_t *nctls, struct sched_dmsg **results)
{
	d->want_snap_now = d->want_snap;
	d->want_snap = false;
	*adds = d->adds;
	*nadds = d->nadds;
	*ctls = d->ctls;
	*nctls = d->nctls;
	*results = atomic_exchange(&d->results, NULL);
	d->take_dns = d->dns_done;
	d->dns_done = NULL;
	d->adds = d->ctls = NULL;
	d->nadds = d->capadds = d->nctls = d->capctls = 0;
}

/* Results are many recipients each when transactions are shared: the
 * engine is given more work between every RESULTS_CHUNK of them, rather
 * than waiting idle until the whole round's results are journaled. */
#define RESULTS_CHUNK 16

static void run_commands(struct sched_deliver *d, struct sched_job **adds, size_t nadds,
			 struct sched_job **ctls, size_t nctls, struct sched_dmsg *results,
			 bool dispatch)
{
	unsigned done = 0;

	for (size_t i = 0; i < nadds; i++) {
		struct sched_djob *dj = sched_djob_load(d, adds[i]);
		if (dj) {
			dj->next = d->jobs;
			d->jobs = dj;
			d->reap_due = true;   /* it may have nothing left to do */
			d->enqueuing |= dj->enq < dj->n;
		}
	}
	for (size_t i = 0; i < nctls; i++)
		if (ctls[i]->d)
			sched_djob_control(ctls[i]->d);
	while (results) {
		struct sched_dmsg *next = results->next;
		process(d, results);
		results = next;
		if (dispatch && results && ++done % RESULTS_CHUNK == 0 && d->ready)
			sched_site_dispatch_all(d);
	}
	while (d->take_dns) {
		struct sched_dns_done *next = d->take_dns->next;
		sched_dom_answer(d, d->take_dns);
		d->take_dns = next;
	}
	free(adds);
	free(ctls);
}

/* A big job's recipients go into their sites' queues a part a round, so
 * that the round stays short for what else arrives (transactional jobs,
 * results). */
static void enqueue_more(struct sched_deliver *d)
{
	if (!d->enqueuing)
		return;
	d->enqueuing = false;
	for (struct sched_djob *dj = d->jobs; dj; dj = dj->next)
		if (dj->enq < dj->n)
			d->enqueuing |= sched_djob_enqueue(dj, SCHED_ENQ_ROUND);
}

static uint64_t next_wake(struct sched_deliver *d)
{
	uint64_t now = vl_now_ms(), t = now + WAIT_MAX_MS;

	struct vl_heap_node *top = vl_heap_top(&d->timers);

	if (top && top->key < t)
		t = top->key;
	if (d->next_commit_ms > now && d->next_commit_ms < t)
		t = d->next_commit_ms;
	return t > now ? t - now : 0;
}

/* After a round with results, the thread sleeps GATHER_US whatever
 * results come meanwhile, then takes them all in one round: at a high
 * rate a wake (a futex call and two context switches) per message would
 * cost more than the message's own bookkeeping. Each site keeps twice its
 * connections in flight, so the sessions have their next message while
 * the results wait. */
#define GATHER_US 250

static void wait_inbox(struct sched_deliver *d, uint64_t ms, bool gather)
{
	struct timespec ts;

	if (d->nadds || d->nctls || d->stopping || !ms || d->ready || d->dns_done ||
	    d->sync_req != d->sync_done || d->reload_in || d->enqueuing)
		return;
	uint64_t us = ms * 1000;
	if (gather && us > GATHER_US)
		us = GATHER_US;
	if (!gather) {
		atomic_store(&d->idle, true);
		if (atomic_load(&d->results)) {
			atomic_store(&d->idle, false);
			return;
		}
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(us / 1000000);
	ts.tv_nsec += (long)(us % 1000000) * 1000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&d->cv, &d->mu, &ts);
	atomic_store(&d->idle, false);
}

/* Requests made through sched_deliver_sync() are answered at the end of the
 * round that saw them, with a queue snapshot when one was asked for. */
static void answer(struct sched_deliver *d, uint64_t sync)
{
	json_t *snap = NULL;

	if (sync == d->sync_done)
		return;
	if (d->want_snap_now) {
		json_t *a = json_array();
		for (struct sched_site *s = d->sites; s; s = s->next)
			json_array_append_new(a, sched_site_json(d, s));
		snap = json_pack("{s:o}", "queues", a);
	}
	pthread_mutex_lock(&d->mu);
	if (snap) {
		json_decref(d->snap);
		d->snap = snap;
	}
	d->sync_done = sync;
	pthread_cond_broadcast(&d->progress);
	pthread_mutex_unlock(&d->mu);
}

static void *run(void *arg)
{
	struct sched_deliver *d = arg;
	uint64_t last_sweep = 0;
	bool gather = false;

	vl_thread_name("vl-deliver");
	for (;;) {
		struct sched_job **adds, **ctls;
		size_t nadds, nctls;
		struct sched_dmsg *results;

		pthread_mutex_lock(&d->mu);
		wait_inbox(d, next_wake(d), gather);
		take_commands(d, &adds, &nadds, &ctls, &nctls, &results);
		gather = results != NULL;
		struct sched_reload *reload = d->reload_in;
		d->reload_in = NULL;
		bool stopping = d->stopping;
		uint64_t sync = d->sync_req;
		pthread_mutex_unlock(&d->mu);
		if (reload)        /* before the jobs added after it */
			sched_reload_apply(d, reload);
		run_commands(d, adds, nadds, ctls, nctls, results,
			     !stopping && !atomic_load(&d->blocked));
		enqueue_more(d);
		fire_timers(d);
		if (vl_now_ms() - last_sweep >= SWEEP_MS) {
			sweep(d);
			last_sweep = vl_now_ms();
		}
		atomic_store(&d->blocked, sched_commit_blocked(d->commit));
		sched_warm_tick(d, vl_now_ms());
		if (!stopping && !atomic_load(&d->blocked))
			sched_site_dispatch_all(d);
		if (stopping)
			atomic_store(&d->quiet, true);
		publish_now(d);
		maybe_commit(d, stopping || nctls || sync != d->sync_done);
		reap(d);
		answer(d, sync);
		if (stopping && !d->inflight)
			break;
	}
	return NULL;
}

/* ---- the face (sched_int.h) ---- */

static void push(struct sched_job ***a, size_t *n, size_t *cap, struct sched_job *j)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*a = vl_realloc(*a, *cap * sizeof **a);
	}
	(*a)[(*n)++] = j;
}

void sched_deliver_add_job(struct sched_deliver *d, struct sched_job *j)
{
	pthread_mutex_lock(&d->mu);
	push(&d->adds, &d->nadds, &d->capadds, j);
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

/* One round of the delivery thread, from another thread; then wait for
 * what it committed. */
static void sched_deliver_sync(struct sched_deliver *d, struct sched_job *ctl, bool snap)
{
	pthread_mutex_lock(&d->mu);
	if (ctl)
		push(&d->ctls, &d->nctls, &d->capctls, ctl);
	d->want_snap |= snap;
	uint64_t target = ++d->sync_req;
	pthread_cond_signal(&d->cv);
	while (d->sync_done < target && !d->stopping)
		pthread_cond_wait(&d->progress, &d->mu);
	bool stopping = d->stopping;
	pthread_mutex_unlock(&d->mu);
	if (!stopping)
		sched_commit_drain(d->commit);
}

void sched_deliver_control(struct sched_deliver *d, struct sched_job *j)
{
	sched_deliver_sync(d, j, false);
}

json_t *sched_deliver_queues_json(struct sched_deliver *d)
{
	json_t *r;

	sched_deliver_sync(d, NULL, true);
	pthread_mutex_lock(&d->mu);
	r = d->snap ? json_deep_copy(d->snap) : json_pack("{s:[]}", "queues");
	pthread_mutex_unlock(&d->mu);
	return r;
}

struct clu *sched_deliver_clu(struct sched_deliver *d)
{
	return d->clu;
}

static json_t *cluster_json(const struct sched_deliver *d);

/* Counters written by the delivery thread and read here without a lock:
 * a stale view at worst, never a torn one on the machines we run on. */
json_t *sched_deliver_stats_json(struct sched_deliver *d)
{
	json_t *classes = json_object();

	for (int c = 1; c < SCHED_BC_COUNT; c++) {
		if (!d->by_class[0][c] && !d->by_class[1][c])
			continue;
		json_object_set_new(classes, sched_bounce_class_name((enum sched_bounce_class)c),
				    json_pack("{s:I, s:I}",
					      "bounced", (json_int_t)d->by_class[0][c],
					      "transient", (json_int_t)d->by_class[1][c]));
	}
	json_t *src = json_object();
	for (size_t i = 0; i < d->ecfg->negress; i++)
		json_object_set_new(src, d->ecfg->egress[i].name,
				    json_pack("{s:s, s:I, s:I, s:I, s:o}",
					      "address", d->ecfg->egress[i].address,
					      "delivered", (json_int_t)d->by_source[i][0],
					      "bounced", (json_int_t)d->by_source[i][1],
					      "transient", (json_int_t)d->by_source[i][2],
					      "warmup", sched_warm_stats_json(d, (int)i)));
	struct dns_stats ds;
	eng_dns_stats(d->eng, &ds);
	json_t *dns = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "queries", (json_int_t)ds.queries,
				"cache_hits", (json_int_t)ds.cache_hits,
				"coalesced", (json_int_t)ds.coalesced,
				"timeouts", (json_int_t)ds.timeouts,
				"failures", (json_int_t)ds.failures,
				"in_flight", (json_int_t)ds.in_flight);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:o, s:o, s:o, s:o}",
			 "dispatched", (json_int_t)d->dispatched,
			 "delivered", (json_int_t)d->delivered,
			 "bounced", (json_int_t)d->bounced,
			 "transient", (json_int_t)d->transient,
			 "expired", (json_int_t)d->expired,
			 "suppressed", (json_int_t)d->suppressed,
			 "in_flight", (json_int_t)d->inflight,
			 "connections", (json_int_t)eng_open_connections(d->eng),
			 "journal_blocked", atomic_load(&d->blocked),
			 "journal", sched_commit_stats_json(d->commit),
			 "classes", classes, "dns", dns, "sources", src,
			 "cluster", cluster_json(d));
}

/* ---- the cluster (cluster/) ---- */

/* On vl-cluster: each change of mode is an event, ClusterMode. */
static void on_cluster_mode(void *arg, enum clu_mode mode, unsigned nodes, const char *why)
{
	struct sched_deliver *d = arg;
	char text[320];
	struct vl_buf b;

	if (!d->ev)
		return;
	snprintf(text, sizeof text, mode == CLU_SHARED ?
		 "shared mode: limits are the cluster's (%u nodes): %.200s" :
		 "local mode: each limit at 1/%u of the cluster's: %.200s", nodes, why);
	struct sched_event e = { .type = "ClusterMode", .time = vl_wall_time(), .job = "",
				 .recipient = "", .domain = "", .text = text };
	vl_buf_init(&b);
	sched_event_format(&e, &b);
	sched_events_append(d->ev, b.p, b.len);
	/* now, not at the next journal commit: an idle node has none */
	sched_events_flush(d->ev);
	vl_buf_free(&b);
}

static int cluster_start(struct sched_deliver *d, char *err, size_t errlen)
{
	const struct cfg *c = d->ecfg;
	char state[4200], sock[4200];
	struct vl_buf info;

	if (!c->cluster.on)
		return 0;
	snprintf(state, sizeof state, "%s/cluster-nodes", c->data_dir);
	if (*c->api.socket)
		snprintf(sock, sizeof sock, "%s", c->api.socket);
	else
		snprintf(sock, sizeof sock, "%s/volley.sock", c->data_dir);
	vl_buf_init(&info);
	vl_buf_appends(&info, "{\"node\":");
	vl_buf_json_string(&info, c->cluster.node);
	vl_buf_appends(&info, ",\"socket\":");
	vl_buf_json_string(&info, sock);
	vl_buf_appends(&info, ",\"listen\":");
	vl_buf_json_string(&info, c->api.listen);
	vl_buf_appends(&info, "}");
	vl_buf_append(&info, "", 1);
	const struct cfg_cluster *k = &c->cluster;
	struct clu_opts o = { .redis = k->redis, .password = k->password,
			      .tls = { .on = k->tls, .ca_file = k->tls_ca_file, .cert = k->tls_cert,
				       .key = k->tls_key, .server_name = k->tls_server_name },
			      .node = c->cluster.node, .info = info.p,
			      .lease_ttl_ms = c->cluster.lease_ttl_ms, .state_file = state,
			      .on_mode = on_cluster_mode, .arg = d };
	d->clu = clu_start(&o, err, errlen);
	vl_buf_free(&info);
	return d->clu ? 0 : -1;
}

static json_t *cluster_json(const struct sched_deliver *d)
{
	struct clu_stats st;

	if (!d->clu)
		return json_null();
	clu_stats(d->clu, &st);
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "mode", st.mode == CLU_SHARED ? "shared" : "local",
			 "slow_downs_shared", (json_int_t)st.cuts,
			 "nodes", (json_int_t)st.nodes,
			 "roundtrips", (json_int_t)st.roundtrips,
			 "leases", (json_int_t)st.leases,
			 "lease_tokens", (json_int_t)st.tokens,
			 "last_lease", (json_int_t)st.last_lease,
			 "mode_changes", (json_int_t)st.mode_changes,
			 "reconnects", (json_int_t)st.reconnects,
			 "queue_full", (json_int_t)st.queue_full);
}

static int load_keys(struct sched_deliver *d, char *err, size_t errlen)
{
	d->dkim = vl_calloc(d->cfg->ndkim + 1, sizeof *d->dkim);
	for (size_t i = 0; i < d->cfg->ndkim; i++, d->ndkim++)
		if (!(d->dkim[i] = msg_dkim_key_load(d->cfg->dkim[i].key, d->cfg->dkim[i].domain,
						     d->cfg->dkim[i].selector, err, errlen)))
			return -1;
	return 0;
}

static void free_keys(struct sched_deliver *d)
{
	for (size_t i = 0; i < d->ndkim; i++)
		msg_dkim_key_free(d->dkim[i]);
	free(d->dkim);
}

/* MTA-STS: the policies kept under the data dir, and the fetcher. */
static int sts_open(struct sched_deliver *d, char *err, size_t errlen)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof dir, "%s/mta-sts", d->cfg->data_dir);
	if (!(d->sts = sts_store_open(dir, err, errlen)) ||
	    !(d->fetcher = sts_fetcher_new(443, err, errlen)))
		return -1;
	if (sts_store_count(d->sts))
		vl_log(VL_LOG_INFO, "mta-sts: %zu polic%s kept", sts_store_count(d->sts),
		       sts_store_count(d->sts) == 1 ? "y" : "ies");
	return 0;
}

struct sched_deliver *sched_deliver_start(struct sched *sc, const struct cfg *cfg,
					  struct sched_spool *spool, struct sched_suppress *sup,
					  struct sched_events *ev, struct engine *eng, char *err,
					  size_t errlen)
{
	struct sched_deliver *d = vl_calloc(1, sizeof *d);

	d->sc = sc;
	d->eng = eng;
	d->cfg = cfg;
	d->unsub_on = cfg->unsubscribe.on;
	d->unsub = (struct msg_unsub_conf){ .base_url = cfg->unsubscribe.base_url,
					    .key = cfg->unsubscribe.secret,
					    .keylen = cfg->unsubscribe.secret_len };
	d->ecfg = cfg;
	d->hist = sched_hist_of(sc);
	d->by_source = vl_calloc(cfg->negress + 1, sizeof *d->by_source);
	d->spool = spool;
	d->sup = sup;
	d->ev = ev;
	d->seed = vl_now_ns();
	d->rpt = sched_tlsrpt_store(sc);
	sched_warm_open(d);
	d->site_index = json_object();
	d->domain_site = json_object();
	d->doms = json_object();
	vl_buf_init(&d->events);
	vl_buf_init(&d->suppress);
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	pthread_cond_init(&d->progress, NULL);
	if (load_keys(d, err, errlen) < 0 ||
	    !(d->rules = sched_bounce_load(cfg->bounce_rules, err, errlen)) ||
	    sts_open(d, err, errlen) < 0 ||
	    cluster_start(d, err, errlen) < 0 ||
	    !(d->commit = sched_commit_start(d, err, errlen)))
		goto fail;
	sched_lock(sc);
	for (size_t i = 0; i < sched_njobs(sc); i++)   /* finished ones stay on disk */
		if (!sched_job_at(sc, i)->finished)
			push(&d->adds, &d->nadds, &d->capadds, sched_job_at(sc, i));
	sched_unlock(sc);
	if (pthread_create(&d->tid, NULL, run, d) != 0) {
		snprintf(err, errlen, "cannot start the delivery thread");
		goto fail;
	}
	return d;
fail:
	sched_commit_stop(d->commit);
	clu_stop(d->clu);
	sts_fetcher_free(d->fetcher);
	sts_store_free(d->sts);
	sched_bounce_free(d->rules);
	free_keys(d);
	sched_warm_close(d);
	free(d->by_source);
	free(d);
	return NULL;
}

void sched_deliver_stop(struct sched_deliver *d, uint64_t grace_ms)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_cond_signal(&d->cv);
	pthread_cond_broadcast(&d->progress);
	pthread_mutex_unlock(&d->mu);
	while (!atomic_load(&d->quiet))
		usleep(1000);
	/* the engine ends transactions in flight, then gives what it still
	 * holds a transient result, which the thread journals as deferred */
	eng_stop(d->eng, grace_ms);
	pthread_join(d->tid, NULL);
	clu_stop(d->clu);              /* its leases are the sites' */
	d->clu = NULL;
	sts_fetcher_free(d->fetcher);  /* fetches in flight answer into the inbox */
	sched_commit_submit(d->commit, d->jobs, &d->events, &d->suppress);
	sched_commit_drain(d->commit);
	sched_commit_stop(d->commit);
	while (d->jobs) {
		struct sched_djob *n = d->jobs->next;
		sched_djob_free(d->jobs);
		d->jobs = n;
	}
	while (d->dns_done) {     /* answers that came after the thread ended */
		struct sched_dns_done *n = d->dns_done->next;
		sched_dd_free(d->dns_done);
		d->dns_done = n;
	}
	sts_store_free(d->sts);
	while (d->free_msgs) {
		struct sched_dmsg *n = d->free_msgs->next;
		msg_out_free(&d->free_msgs->out);
		vl_buf_free(&d->free_msgs->sig);
		free(d->free_msgs->iov);
		free(d->free_msgs->tls_tlsa);
		free(d->free_msgs->rcpts);
		free(d->free_msgs->idxs);
		free(d->free_msgs->res);
		free(d->free_msgs);
		d->free_msgs = n;
	}
	sched_warm_close(d);
	sched_sites_free(d);
	sched_doms_free(d);
	json_decref(d->doms);
	sched_bounce_free(d->rules);
	free_keys(d);
	sched_reload_free_all(d);
	json_decref(d->site_index);
	json_decref(d->domain_site);
	vl_buf_free(&d->events);
	vl_buf_free(&d->suppress);
	for (size_t i = 0; i < d->timers.n; i++)
		free(d->timers.v[i]);
	vl_heap_free(&d->timers);
	while (d->free_timers) {
		struct sched_timer *n = d->free_timers->p;
		free(d->free_timers);
		d->free_timers = n;
	}
	free(d->adds);
	free(d->ctls);
	json_decref(d->snap);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	pthread_cond_destroy(&d->progress);
	free(d->by_source);
	free(d);
}

bool sched_deliver_blocked(struct sched_deliver *d)
{
	return d && atomic_load(&d->blocked);
}
