/*
 * The resolver: configuration, life cycle, and name/type lookups through
 * the cache. A miss creates a pending entry and sends one query; lookups
 * of the same name/type meanwhile wait on it (coalescing); the answer is
 * kept for its clamped TTL and handed to every waiter.
 */
#include "dns_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dns_config_default(struct dns_config *c)
{
	memset(c, 0, sizeof *c);
	c->timeout_ms = 3000;
	c->tries = 2;
	c->min_ttl = 30;
	c->max_ttl = 21600;
	c->neg_ttl_max = 900;
	c->fail_ttl = 5;
	c->cache_max = 100000;
	c->max_inflight = 256;
	c->family = DNS_FAM_BOTH;
	c->dnssec = true;
}

static int check_server(const char *s, char *err, size_t errlen)
{
	char host[64];
	uint8_t ip[16];
	uint16_t port;

	if (vl_parse_hostport(s, host, sizeof host, &port) == 0 && port &&
	    (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1))
		return 0;
	snprintf(err, errlen, "dns server \"%s\": want ip:port or [ipv6]:port", s);
	return -1;
}

static int check_config(unsigned tag, const struct dns_config *c, char *err,
			size_t errlen)
{
	if (tag > 7) {
		snprintf(err, errlen, "dns: tag %u is not 0..7", tag);
		return -1;
	}
	if (!c->timeout_ms || !c->tries || c->min_ttl > c->max_ttl) {
		snprintf(err, errlen, "dns: timeout_ms and tries must be > 0, min_ttl <= max_ttl");
		return -1;
	}
	for (size_t i = 0; i < c->nservers; i++)
		if (check_server(c->servers[i], err, errlen) < 0)
			return -1;
	return 0;
}

static void copy_servers(struct dns_resolver *r, const struct dns_config *c)
{
	if (!c->nservers)
		return;
	r->servers = vl_calloc(c->nservers, sizeof *r->servers);
	for (size_t i = 0; i < c->nservers; i++)
		r->servers[i] = vl_strdup(c->servers[i]);
	r->cfg.servers = (const char *const *)r->servers;
}

static void free_servers(struct dns_resolver *r)
{
	for (size_t i = 0; r->servers && i < r->cfg.nservers; i++)
		free(r->servers[i]);
	free(r->servers);
}

struct dns_resolver *dns_new(struct vl_ring *ring, unsigned tag,
			     const struct dns_config *c, char *err, size_t errlen)
{
	struct dns_resolver *r;

	if (check_config(tag, c, err, errlen) < 0)
		return NULL;
	r = vl_calloc(1, sizeof *r);
	r->ring = ring;
	r->tag = tag;
	r->cfg = *c;
	r->cfg.servers = NULL;
	r->rng = c->seed ? c->seed : vl_now_ns() ^ (uintptr_t)r;
	copy_servers(r, c);
	dns_cache_init(&r->cache, c->cache_max);
	r->backlog_tail = &r->backlog;
	if (!r->cfg.max_inflight)
		r->cfg.max_inflight = 256;
	if (dns_io_init(r, err, errlen) < 0) {
		dns_free(r);
		return NULL;
	}
	return r;
}

void dns_on_cqe(struct dns_resolver *r, struct io_uring_cqe *cqe)
{
	dns_io_cqe(r, cqe);
}

static void drain_backlog(struct dns_resolver *r);
static void pump_backlog(struct dns_resolver *r);

void dns_shutdown(struct dns_resolver *r)
{
	r->closing = true;
	drain_backlog(r);
	dns_io_shutdown(r);
}

bool dns_quiescent(const struct dns_resolver *r)
{
	return r->closing && !r->ch && !r->shut_pending && r->ops == 0;
}

void dns_free(struct dns_resolver *r)
{
	if (!r)
		return;
	r->closing = true;
	dns_io_free(r);
	dns_cache_free(&r->cache);
	free_servers(r);
	free(r);
}

void dns_get_stats(const struct dns_resolver *r, struct dns_stats *s)
{
	*s = r->st;
	s->cache_entries = r->cache.n;
	s->evicted = r->cache.evicted;
	s->in_flight = r->inflight;
	s->waiting = r->nbacklog;
}

/* ---- lookups ---- */

typedef void (*lookup_fn)(void *arg, unsigned slot, const struct dns_ans *a,
			  uint32_t ttl);

static void answer_now(uint16_t qtype, enum dns_status st, lookup_fn fn, void *arg,
		       unsigned slot)
{
	struct dns_ans a = { .status = st, .qtype = qtype };

	fn(arg, slot, &a, 0);
}

/* The entry's answer goes to every waiter; it stays cached or goes. */
static void complete(struct dns_resolver *r, struct dns_entry *e, struct dns_ans *a)
{
	uint32_t keep = r->closing ? 0 : dns_keep_ttl(a, &r->cfg);
	struct dns_waiter *w = e->waiters;

	e->waiters = NULL;
	e->wtail = &e->waiters;
	e->ans = *a;
	e->pending = false;
	e->pins++;                   /* alive while the waiters read it */
	if (keep)
		dns_cache_done(&r->cache, e, vl_now_ms() + keep * 1000ull);
	else
		dns_cache_remove(&r->cache, e);
	for (struct dns_waiter *next; w; w = next) {
		next = w->next;
		w->fn(w->arg, w->slot, &e->ans, keep);
		free(w);
	}
	dns_entry_unpin(e);
}

static enum dns_status ares_status(int status)
{
	switch (status) {
	case ARES_ETIMEOUT: return DNS_TIMEOUT;
	/* c-ares 1.18 tries the next server on SERVFAIL or REFUSED and, when
	 * none is left, reports ECONNREFUSED, as for an unreachable server. */
	case ARES_ESERVFAIL:
	case ARES_EREFUSED:
	case ARES_ECONNREFUSED: return DNS_SERVFAIL;
	case ARES_ECANCELLED:
	case ARES_EDESTRUCTION: return DNS_SHUTDOWN;
	default: return DNS_ERROR;
	}
}

static void send_query(struct dns_resolver *r, struct dns_entry *e);

/* An answer that stops at a CNAME, with neither records nor an SOA, says
 * nothing of the target (unbound's local data answers so): ask the target
 * next, for this same entry, so a loop of CNAMEs cannot deadlock waiters. */
static bool chase(struct dns_resolver *r, struct dns_entry *e, struct dns_ans *a)
{
	if (a->status != DNS_NODATA || !a->canon || a->ttl || r->closing)
		return false;
	if (!e->chase)
		e->chase_ad = true, e->chase_ttl = UINT32_MAX;
	if (++e->depth > DNS_MAX_CHASE)
		return false;
	e->chase_ttl = a->cname_ttl < e->chase_ttl ? a->cname_ttl : e->chase_ttl;
	e->chase_ad &= a->ad;
	free(e->chase);
	e->chase = a->canon;
	a->canon = NULL;
	dns_ans_free(a);
	send_query(r, e);
	return true;
}

/* The chased CNAMEs' TTLs and AD bits count in the final answer. */
static void merge_chase(struct dns_entry *e, struct dns_ans *a)
{
	if (!e->chase)
		return;
	if (a->ttl > e->chase_ttl)
		a->ttl = e->chase_ttl;
	a->ad = a->ad && e->chase_ad;
	if (!a->canon)
		a->canon = vl_strdup(e->chase);
}

static void on_ares(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_entry *e = arg;
	struct dns_resolver *r = e->r;
	struct dns_ans a;

	(void)timeouts;
	r->inflight--;
	if (status == ARES_SUCCESS && abuf) {
		r->st.answers++;
		dns_parse_answer(abuf, (size_t)alen, e->chase ? e->chase : e->name, e->qtype, &a);
		if (chase(r, e, &a))
			return;
		merge_chase(e, &a);
	} else {
		memset(&a, 0, sizeof a);
		a.qtype = e->qtype;
		a.status = ares_status(status);
		r->st.timeouts += a.status == DNS_TIMEOUT;
		r->st.failures += a.status != DNS_TIMEOUT && a.status != DNS_SHUTDOWN;
	}
	complete(r, e, &a);
	pump_backlog(r);
}

static void send_query(struct dns_resolver *r, struct dns_entry *e)
{
	uint8_t *q;
	size_t qlen;

	if (dns_build_query(e->chase ? e->chase : e->name, e->qtype, r->cfg.dnssec, &q, &qlen) < 0) {
		struct dns_ans a = { .status = DNS_ERROR, .qtype = e->qtype };
		complete(r, e, &a);
		return;
	}
	r->st.queries++;
	r->inflight++;
	if (r->inflight > r->st.inflight_peak)
		r->st.inflight_peak = r->inflight;
	r->in_ares++;
	/* May call on_ares before it returns: e is not touched after. */
	ares_send(r->ch, q, (int)qlen, on_ares, e);
	dns_io_leave(r);
	free(q);
	dns_io_kick(r);
}

/* ---- the backlog: queries beyond max_inflight wait, in order ---- */

static void to_backlog(struct dns_resolver *r, struct dns_entry *e)
{
	e->qnext = NULL;
	*r->backlog_tail = e;
	r->backlog_tail = &e->qnext;
	r->nbacklog++;
}

static struct dns_entry *from_backlog(struct dns_resolver *r)
{
	struct dns_entry *e = r->backlog;

	if (e) {
		r->backlog = e->qnext;
		if (!r->backlog)
			r->backlog_tail = &r->backlog;
		r->nbacklog--;
	}
	return e;
}

/* A query slot came free: the oldest waiting query goes out. */
static void pump_backlog(struct dns_resolver *r)
{
	struct dns_entry *e;

	while (!r->closing && r->inflight < r->cfg.max_inflight && (e = from_backlog(r)))
		send_query(r, e);
}

/* Shutting down: what never went out is answered like what did. */
static void drain_backlog(struct dns_resolver *r)
{
	struct dns_entry *e;

	while ((e = from_backlog(r))) {
		struct dns_ans a = { .status = DNS_SHUTDOWN, .qtype = e->qtype };
		complete(r, e, &a);
	}
}

static void add_waiter(struct dns_entry *e, lookup_fn fn, void *arg, unsigned slot)
{
	struct dns_waiter *w = vl_malloc(sizeof *w);

	*w = (struct dns_waiter){ .fn = fn, .arg = arg, .slot = slot };
	*e->wtail = w;
	e->wtail = &w->next;
}

static void cache_hit(struct dns_resolver *r, struct dns_entry *e, uint64_t now,
		      lookup_fn fn, void *arg, unsigned slot)
{
	r->st.cache_hits++;
	dns_cache_touch(&r->cache, e);
	e->pins++;
	fn(arg, slot, &e->ans, (uint32_t)((e->expires_ms - now + 999) / 1000));
	dns_entry_unpin(e);
}

void dns_lookup(struct dns_resolver *r, const char *name, uint16_t qtype,
		lookup_fn fn, void *arg, unsigned slot)
{
	struct dns_entry *e;
	uint64_t now = vl_now_ms();

	if (r->closing || !r->ch) {
		answer_now(qtype, DNS_SHUTDOWN, fn, arg, slot);
		return;
	}
	e = dns_cache_find(&r->cache, name, qtype);
	if (e && !e->pending && now >= e->expires_ms) {
		r->st.expired++;
		dns_cache_remove(&r->cache, e);
		e = NULL;
	}
	if (e && !e->pending) {
		cache_hit(r, e, now, fn, arg, slot);
		return;
	}
	if (e) {
		r->st.coalesced++;
		add_waiter(e, fn, arg, slot);
		return;
	}
	e = dns_cache_add(&r->cache, name, qtype);
	add_waiter(e, fn, arg, slot);
	e->r = r;
	if (r->inflight >= r->cfg.max_inflight)
		to_backlog(r, e);
	else
		send_query(r, e);
}
