/*
 * Destination sites: where recipients wait, and the pace at which they
 * leave. A site is a route (or, once DNS exists, an MX host set) under one
 * effective policy; every domain mapping to the same pair shares its queue,
 * its connection pool and its shaping. Transactional jobs are served before
 * bulk ones; bulk jobs take turns. A reply that means "slow down" suspends
 * the site and halves its rate, which then recovers step by step.
 */
#include "deliver_int.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define BACKOFF_FIRST_MS 30000
#define BACKOFF_MAX_MS 1800000
#define RECOVER_EVERY 50         /* successes per rate step up */
#define RECOVER_STEP 1.25
#define MIN_RATE 0.2             /* per second, while backing off */
#define ROUND_MAX 2048           /* sends per site per round: outcomes decided
				  * locally (no route) return at once, and
				  * commits and events must keep up */

/* ---- queues ---- */

void sjq_push(struct sjq *q, uint32_t idx)
{
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		uint32_t *n = malloc(cap * sizeof *n);
		for (size_t i = 0; i < q->len; i++)
			n[i] = q->idx[(q->head + i) % q->cap];
		free(q->idx);
		q->idx = n;
		q->cap = cap;
		q->head = 0;
	}
	q->idx[(q->head + q->len++) % q->cap] = idx;
}

static uint32_t sjq_pop(struct sjq *q)
{
	uint32_t v = q->idx[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	return v;
}

struct sjq *sjq_for(struct djob *dj, struct site *s)
{
	for (size_t i = 0; i < dj->nqs; i++)
		if (dj->qs[i]->site == s)
			return dj->qs[i];
	struct sjq *q = calloc(1, sizeof *q), **list;
	q->dj = dj;
	q->site = s;
	dj->qs = realloc(dj->qs, (dj->nqs + 1) * sizeof *dj->qs);
	dj->qs[dj->nqs++] = q;
	list = dj->transactional ? &s->trans : &s->bulk;
	while (*list)
		list = &(*list)->next;
	*list = q;
	return q;
}

/* Unlink a job's queues from their sites (the job is going away). */
void sjq_unlink_all(struct djob *dj)
{
	for (size_t i = 0; i < dj->nqs; i++) {
		struct sjq *q = dj->qs[i];
		struct sjq **l = dj->transactional ? &q->site->trans : &q->site->bulk;
		while (*l && *l != q)
			l = &(*l)->next;
		if (*l)
			*l = q->next;
		q->site->waiting -= q->len;
	}
}

/* ---- sites ---- */

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int parse_source(const char *addr, struct eng_route *r)
{
	struct sockaddr_in *a4 = (void *)&r->source;
	struct sockaddr_in6 *a6 = (void *)&r->source;

	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		r->sourcelen = sizeof *a4;
	} else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		r->sourcelen = sizeof *a6;
	} else {
		return -1;
	}
	r->has_source = true;
	return 0;
}

static void site_route(struct deliver *d, struct site *s, const struct vl_policy *p,
		       const char *domain)
{
	char err[256];

	if (!*p->route) {
		snprintf(s->no_route, sizeof s->no_route, "no route for %s: MX resolution "
			 "is not built yet; configure a route for the domain", domain);
		return;
	}
	if (eng_route_parse(&s->route, p->route, err, sizeof err) < 0) {
		snprintf(s->no_route, sizeof s->no_route, "%s", err);
		return;
	}
	tls_policy_parse(p->tls, &s->route.tls);
	s->route.max_connections = (unsigned)p->max_connections;
	s->route.max_messages_per_connection = (unsigned)p->max_messages_per_connection;
	if (p->auth_user) {
		snprintf(s->route.auth_user, sizeof s->route.auth_user, "%s", p->auth_user);
		snprintf(s->route.auth_pass, sizeof s->route.auth_pass, "%s", p->auth_password);
	}
	if (d->cfg->negress && parse_source(d->cfg->egress[0].address, &s->route) < 0)
		vl_log(VL_LOG_WARN, "egress address %s is not an IP address; ignored",
		       d->cfg->egress[0].address);
	s->routable = true;
}

static struct site *site_new(struct deliver *d, const char *key, const struct vl_policy *p,
			     const char *domain)
{
	struct site *s = calloc(1, sizeof *s);

	s->key = strdup(key);
	site_route(d, s, p, domain);
	s->window = p->max_connections > 0 ? (unsigned)p->max_connections * 2 : 2;
	if (p->rate && *p->rate && vl_parse_rate(p->rate, &s->rate) == 0) {
		s->b.rate = s->rate;
		s->b.burst = s->b.tokens = s->rate < 1 ? 1 : s->rate;
	}
	s->next = d->sites;
	d->sites = s;
	json_object_set_new(d->site_index, key, json_integer((json_int_t)(intptr_t)s));
	return s;
}

/* Same route and same effective policy: same site. */
struct site *site_for(struct deliver *d, const char *domain)
{
	char dom[256], key[1024];
	struct vl_policy p;

	snprintf(dom, sizeof dom, "%s", domain);
	lower(dom);
	json_t *hit = json_object_get(d->domain_site, dom);
	if (hit)
		return (struct site *)(intptr_t)json_integer_value(hit);
	vl_config_policy(d->cfg, dom, &p);
	snprintf(key, sizeof key, "%s|%s|%lld|%lld|%lld|%s|%lld|%s", *p.route ? p.route : dom,
		 p.tls, (long long)p.max_connections, (long long)p.max_messages_per_connection,
		 (long long)p.max_recipients_per_message, p.rate, (long long)p.port,
		 p.auth_user ? p.auth_user : "");
	json_t *v = json_object_get(d->site_index, key);
	struct site *s = v ? (struct site *)(intptr_t)json_integer_value(v) :
			     site_new(d, key, &p, dom);
	json_object_set_new(d->domain_site, dom, json_integer((json_int_t)(intptr_t)s));
	return s;
}

void site_ready(struct deliver *d, struct site *s)
{
	if (s->ready)
		return;
	s->ready = true;
	s->next_ready = d->ready;
	d->ready = s;
}

/* ---- shaping ---- */

static void refill(struct bucket *b, uint64_t now)
{
	if (b->rate <= 0)
		return;
	if (now > b->at_ms)
		b->tokens += (double)(now - b->at_ms) * b->rate / 1000.0;
	if (b->tokens > b->burst)
		b->tokens = b->burst;
	b->at_ms = now;
}

/* ms until a token (0: one is there). */
static uint64_t bucket_wait(struct bucket *b, uint64_t now)
{
	refill(b, now);
	if (b->rate <= 0 || b->tokens >= 1)
		return 0;
	return (uint64_t)ceil((1 - b->tokens) * 1000.0 / b->rate);
}

static void bucket_take(struct bucket *b)
{
	if (b->rate > 0)
		b->tokens -= 1;
}

/* The next queue to serve: transactional first, then bulk in turn. A
 * job's own rate limit may hold it back (*wait: when it may go). */
static struct sjq *pick(struct site *s, uint64_t now, uint64_t *wait)
{
	struct sjq *lists[2] = { s->trans, s->bulk };

	for (int l = 0; l < 2; l++)
		for (struct sjq *q = lists[l]; q; q = q->next) {
			if (!q->len || q->dj->paused || q->dj->cancelled)
				continue;
			uint64_t w = bucket_wait(&q->dj->rate, now);
			if (!w)
				return q;
			if (!*wait || w < *wait)
				*wait = w;
		}
	return NULL;
}

/* Move a served bulk queue to the end, so bulk jobs take turns. */
static void rotate(struct site *s, struct sjq *q)
{
	if (q->dj->transactional || !q->next)
		return;
	struct sjq **l = &s->bulk;
	while (*l != q)
		l = &(*l)->next;
	*l = q->next;
	while (*l)
		l = &(*l)->next;
	*l = q;
	q->next = NULL;
}

static void dispatch(struct deliver *d, struct site *s, uint64_t now)
{
	uint64_t wait = 0;
	unsigned sent = 0;

	if (s->backoff_until_ms > now) {
		timer_add(d, s->backoff_until_ms, T_SITE, s, 0);
		return;
	}
	while (s->inflight < s->window && s->waiting) {
		if (++sent > ROUND_MAX) {
			site_ready(d, s);     /* the rest in the next round */
			return;
		}
		if ((wait = bucket_wait(&s->b, now)))
			break;
		struct sjq *q = pick(s, now, &wait);
		if (!q)
			break;
		bucket_take(&s->b);
		bucket_take(&q->dj->rate);
		uint32_t idx = sjq_pop(q);
		s->waiting--;
		rotate(s, q);
		deliver_send(d, q, idx);
	}
	if (wait)
		timer_add(d, now + wait, T_SITE, s, 0);
}

void site_dispatch_all(struct deliver *d)
{
	uint64_t now = vl_now_ms();
	struct site *s = d->ready;

	d->ready = NULL;
	while (s) {
		struct site *next = s->next_ready;
		s->ready = false;
		dispatch(d, s, now);
		s = next;
	}
}

/* ---- adaptive back-off ---- */

static void backoff(struct site *s, const struct dmsg *m, uint64_t now)
{
	char until[32], since[32];
	double cur = s->b.rate > 0 ? s->b.rate : (double)s->window;
	uint64_t ms = BACKOFF_FIRST_MS << (s->backoff_level < 6 ? s->backoff_level : 6);

	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	if (s->backoff_until_ms > now)
		return;               /* already backing off: one step per episode */
	s->backoff_level++;
	s->ok_streak = 0;
	s->b.rate = cur / 2 < MIN_RATE ? MIN_RATE : cur / 2;
	s->b.burst = s->b.rate < 1 ? 1 : s->b.rate;
	s->b.tokens = 0;
	s->b.at_ms = now + ms;
	s->backoff_until_ms = now + ms;
	s->backoff_since = vl_wall_time();
	vl_iso8601(s->backoff_since, since);
	vl_iso8601(s->backoff_since + (double)ms / 1000, until);
	snprintf(s->backoff_reason, sizeof s->backoff_reason,
		 "%d %s %.160s (from %s) at %s: suspended until %s, rate halved to %.3g/s",
		 m->code, m->enhanced, m->text, m->peer[0] ? m->peer : "?", since, until,
		 s->b.rate);
	vl_log(VL_LOG_INFO, "site %s: %s", s->key, s->backoff_reason);
}

/* After enough successes the rate steps back up towards the configured
 * one (or to unlimited when none is configured). */
static void recover(struct site *s)
{
	if (!s->backoff_level || ++s->ok_streak < RECOVER_EVERY)
		return;
	s->ok_streak = 0;
	s->b.rate *= RECOVER_STEP;
	s->b.burst = s->b.rate < 1 ? 1 : s->b.rate;
	if ((s->rate > 0 && s->b.rate >= s->rate) ||
	    (s->rate <= 0 && s->b.rate >= (double)s->window * 10)) {
		s->b.rate = s->rate;
		s->b.burst = s->rate < 1 ? 1 : s->rate;
		s->backoff_level = 0;
		s->backoff_reason[0] = '\0';
	}
}

void site_result(struct deliver *d, struct site *s, const struct dmsg *m,
		 const struct sched_bounce_verdict *v)
{
	uint64_t now = vl_now_ms();

	s->inflight--;
	s->last_time = vl_wall_time();
	snprintf(s->last_response, sizeof s->last_response, "%d %s %.250s", m->code,
		 m->enhanced, m->text);
	if (m->status == ENG_DELIVERED) {
		s->delivered++;
		recover(s);
	} else if (v->cls == SCHED_BC_RATE_LIMITED) {
		s->transient++;
		backoff(s, m, now);
	} else if (m->status == ENG_PERMANENT) {
		s->bounced++;
	} else {
		s->transient++;
	}
	site_ready(d, s);
}

/* ---- views ---- */

static json_t *site_name(const struct site *s)
{
	const char *bar = strchr(s->key, '|');
	return json_stringn(s->key, bar ? (size_t)(bar - s->key) : strlen(s->key));
}

json_t *site_json(const struct site *s)
{
	char since[32], until[32];
	json_t *bo = json_null(), *last = json_null();
	double left = (double)s->backoff_until_ms - (double)vl_now_ms();

	if (s->backoff_reason[0]) {
		vl_iso8601(s->backoff_since, since);
		vl_iso8601(vl_wall_time() + (left > 0 ? left / 1000 : 0), until);
		bo = json_pack("{s:s, s:s, s:s, s:b, s:i}", "reason", s->backoff_reason,
			       "since", since, "until", until, "suspended", left > 0,
			       "level", (int)s->backoff_level);
	}
	if (s->last_time > 0) {
		vl_iso8601(s->last_time, since);
		last = json_pack("{s:s, s:s}", "text", s->last_response, "time", since);
	}
	return json_pack("{s:o, s:s, s:I, s:I, s:I, s:I, s:o, s:f, s:o, s:o, s:o,"
			 " s:{s:I, s:I, s:I}}",
			 "site", site_name(s), "key", s->key,
			 "queued", (json_int_t)s->waiting, "deferred", (json_int_t)s->deferred,
			 "in_flight", (json_int_t)s->inflight,
			 "max_connections", (json_int_t)s->route.max_connections,
			 "rate", s->rate > 0 ? json_real(s->rate) : json_null(),
			 "current_rate", s->b.rate,
			 "backoff", bo, "last_response", last,
			 "route", s->routable ? json_true() : json_string(s->no_route),
			 "totals", "delivered", (json_int_t)s->delivered,
			 "bounced", (json_int_t)s->bounced, "transient", (json_int_t)s->transient);
}

void sites_free(struct deliver *d)
{
	while (d->sites) {
		struct site *n = d->sites->next;
		free(d->sites->key);
		free(d->sites);
		d->sites = n;
	}
}
