/*
 * Destination sites: where recipients wait, and the pace at which they
 * leave. A site is a route, or an MX host set, under one effective
 * policy; every domain mapping to the same pair shares its queue, its
 * connection pools and its shaping (all Google-hosted domains are one
 * site). Transactional jobs are served before
 * bulk ones; bulk jobs take turns. A reply that means "slow down" suspends
 * the site briefly and cuts its rate, which then recovers step by step.
 */
#include "deliver_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define ROUND_MAX 2048           /* sends per site per round: outcomes decided
				  * locally (no route) return at once, and
				  * commits and events must keep up */

/* ---- queues ---- */

void sched_sjq_push(struct sched_sjq *q, uint32_t idx)
{
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		uint32_t *n = vl_malloc(cap * sizeof *n);
		for (size_t i = 0; i < q->len; i++)
			n[i] = q->idx[(q->head + i) % q->cap];
		free(q->idx);
		q->idx = n;
		q->cap = cap;
		q->head = 0;
	}
	q->idx[(q->head + q->len++) % q->cap] = idx;
}

uint32_t sched_sjq_pop(struct sched_sjq *q)
{
	uint32_t v = q->idx[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	return v;
}

/* Found on the site's list: a site has few jobs, while a job of a
 * thousand domains may have a thousand sites. */
struct sched_sjq *sched_sjq_for(struct sched_djob *dj, struct sched_site *s)
{
	struct sched_sjq **list = dj->transactional ? &s->trans : &s->bulk;

	for (; *list; list = &(*list)->next)
		if ((*list)->dj == dj)
			return *list;
	struct sched_sjq *q = vl_calloc(1, sizeof *q);
	q->dj = dj;
	q->site = s;
	dj->qs = vl_realloc(dj->qs, (dj->nqs + 1) * sizeof *dj->qs);
	dj->qs[dj->nqs++] = q;
	*list = q;
	return q;
}

/* Unlink a job's queues from their sites (the job is going away). */
void sched_sjq_unlink_all(struct sched_djob *dj)
{
	for (size_t i = 0; i < dj->nqs; i++) {
		struct sched_sjq *q = dj->qs[i];
		struct sched_sjq **l = dj->transactional ? &q->site->trans : &q->site->bulk;
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

/* The site's egress source on a route: bind address and EHLO name. */
static void route_source(const struct sched_deliver *d, const struct sched_site *s,
			 struct eng_route *r)
{
	if (s->src < 0)
		return;
	const struct cfg_egress *e = &d->ecfg->egress[s->src];
	if (vl_sockaddr_parse(e->address, 0, &r->source, &r->sourcelen) == 0)
		r->has_source = true;
	else
		vl_log(VL_LOG_WARN, "egress address %s is not an IP address; ignored",
		       e->address);
	snprintf(r->helo, sizeof r->helo, "%s", e->ehlo);
}

/* The policy's template: TLS, AUTH, limits, source address. */
static void site_template(struct sched_deliver *d, struct sched_site *s, const struct cfg_policy *p)
{
	tls_policy_parse(p->tls, &s->route.tls);
	s->route.ca_file = p->ca_file && *p->ca_file ? p->ca_file : NULL;
	s->route.implicit_tls = cfg_policy_implicit_tls(p);
	s->route.max_connections = (unsigned)p->max_connections;
	s->route.max_messages_per_connection = (unsigned)p->max_messages_per_connection;
	/* recipients per message of a shared job (deliver.c), and the engine's cap */
	s->route.max_rcpts_per_txn = p->max_recipients_per_message < 1 ? 1
		: p->max_recipients_per_message > SCHED_RCPTS_MAX ? SCHED_RCPTS_MAX
		: (unsigned)p->max_recipients_per_message;
	if (p->auth_user) {
		snprintf(s->route.auth_user, sizeof s->route.auth_user, "%s", p->auth_user);
		snprintf(s->route.auth_pass, sizeof s->route.auth_pass, "%s", p->auth_password);
	}
	route_source(d, s, &s->route);
}

static void site_route(struct sched_deliver *d, struct sched_site *s, const struct cfg_policy *p)
{
	char err[256];

	if (eng_route_parse(&s->route, p->route, err, sizeof err) < 0) {
		snprintf(s->no_route, sizeof s->no_route, "%s", err);
		return;
	}
	site_template(d, s, p);
	s->routes = &s->route;
	s->nroutes = 1;
	s->routable = true;
}

/* One route per MX address, in the answer's order, up to SCHED_SITE_HOSTS_MAX,
 * each a copy of the site's template with its own address and name. */
static size_t build_routes(const struct sched_site *s, long long port,
			   const struct dns_mx_result *r, struct eng_route *out)
{
	size_t n = 0;

	for (size_t h = 0; h < r->nhosts && n < SCHED_SITE_HOSTS_MAX; h++)
		for (size_t a = 0; a < r->hosts[h].naddrs && n < SCHED_SITE_HOSTS_MAX; a++) {
			char ip[64];
			dns_addr_str(&r->hosts[h].addrs[a], ip, sizeof ip);
			out[n] = s->route;
			if (vl_sockaddr_parse(ip, (uint16_t)port, &out[n].addr, &out[n].addrlen) < 0)
				continue;
			snprintf(out[n].name, sizeof out[n].name, "%s", r->hosts[h].name);
			snprintf(out[n].canon, sizeof out[n].canon, "%s",
				 r->hosts[h].canon ? r->hosts[h].canon : "");
			out[n].dnssec = r->mx_ad && r->hosts[h].ad;
			out[n].sts = s->sts_mode;
			out[n].sts_mx_ok = s->sts && tls_sts_mx_match(&s->sts->policy,
								      r->hosts[h].name);
			n++;
		}
	return n;
}

static void site_hosts(struct sched_deliver *d, struct sched_site *s, const struct cfg_policy *p,
		       const struct dns_mx_result *r)
{
	char err[256];

	eng_route_parse(&s->route, "0.0.0.0:25", err, sizeof err);
	site_template(d, s, p);
	s->routes = vl_calloc(SCHED_SITE_HOSTS_MAX, sizeof *s->routes);
	s->nroutes = build_routes(s, cfg_policy_port(p), r, s->routes);
	s->routable = s->nroutes > 0;
	if (!s->routable)
		snprintf(s->no_route, sizeof s->no_route, "no usable %saddress",
			 *p->route ? "" : "MX ");
}

/* A fresh answer for a site's host set: when its addresses moved, later
 * messages go to the new ones. Messages in the engine still point into the
 * old array, so it is kept (in d->old_routes) until volleyd stops. */
static void site_refresh(struct sched_deliver *d, struct sched_site *s, const struct cfg_policy *p,
			 const struct dns_mx_result *r)
{
	struct eng_route *fresh = vl_calloc(SCHED_SITE_HOSTS_MAX, sizeof *fresh);
	size_t n = build_routes(s, cfg_policy_port(p), r, fresh);
	bool same = n == s->nroutes;

	/* as sets: every answer shuffles hosts of equal preference */
	for (size_t i = 0; same && i < n; i++) {
		bool found = false;
		for (size_t k = 0; k < s->nroutes && !found; k++)
			found = fresh[i].addrlen == s->routes[k].addrlen &&
				!memcmp(&fresh[i].addr, &s->routes[k].addr, fresh[i].addrlen);
		same = found;
	}
	if (same || !n) {
		free(fresh);
		return;
	}
	vl_log(VL_LOG_INFO, "site %s: addresses changed; %zu now", s->key, n);
	d->old_routes = vl_realloc(d->old_routes, (d->nold + 1) * sizeof *d->old_routes);
	d->old_routes[d->nold++] = s->routes;
	s->routes = fresh;
	s->nroutes = n;
	memset(s->down_until, 0, sizeof s->down_until);
}

static enum eng_sts sts_mode(const struct sts_entry *e)
{
	if (!e)
		return ENG_STS_OFF;
	return e->policy.mode == TLS_STS_ENFORCE ? ENG_STS_ENFORCE :
	       e->policy.mode == TLS_STS_TESTING ? ENG_STS_TESTING : ENG_STS_OFF;
}

static struct sts_entry *sts_copy(const struct sts_entry *e)
{
	struct sts_entry *c = vl_malloc(sizeof *c);

	*c = *e;
	c->text = vl_strdup(e->text);
	return c;
}

/* A site of group g for egress source src (-1: none): the key says so. */
static struct sched_site *site_alloc(struct sched_deliver *d, struct sched_sgroup *g, int src)
{
	struct sched_site *s = vl_calloc(1, sizeof *s);
	const char *key = g->key;

	s->group = g;
	s->src = src;
	s->wslot = sched_warm_slot(d, src, g->provider);
	s->lat_slot = -1;
	if (src >= 0) {
		const struct cfg_egress *e = &d->ecfg->egress[src];
		size_t n = strlen(key) + strlen(e->name) + 8;
		s->key = vl_malloc(n);
		snprintf(s->key, n, "%s|src=%s", key, e->name);
		s->src_name = vl_strdup(e->name);
		s->src_addr = vl_strdup(e->address);
	} else {
		s->key = vl_strdup(key);
	}
	s->name = vl_strndup(key, strcspn(key, "|"));
	g->site[src >= 0 ? (size_t)src : 0] = s;
	if (!g->any)
		g->any = s;
	s->next = d->sites;
	d->sites = s;
	return s;
}

/* With a cluster, a rate and a connection limit are the destination's
 * across every node and source: its sites draw from leases named by the
 * destination's key. */
static void site_lease(struct sched_deliver *d, struct sched_site *s)
{
	s->lease = d->clu && s->rate > 0 ? clu_lease_get(d->clu, s->group->key, s->rate) : NULL;
	s->conns = d->clu && s->route.max_connections ?
		clu_conns_get(d->clu, s->group->key, s->route.max_connections) : NULL;
}

static struct sched_site *site_new(struct sched_deliver *d, struct sched_sgroup *g, int src,
				   const struct cfg_policy *p, const struct dns_mx_result *mx,
				   const struct sts_entry *sts)
{
	struct sched_site *s = site_alloc(d, g, src);

	s->sts_mode = sts_mode(sts);
	s->sts = s->sts_mode != ENG_STS_OFF ? sts_copy(sts) : NULL;
	if (mx)
		site_hosts(d, s, p, mx);
	else
		site_route(d, s, p);
	if (s->routable && s->route.implicit_tls && s->route.tls == TLS_POLICY_NONE) {
		s->routable = false;   /* rules that combine so through overlapping matches */
		snprintf(s->no_route, sizeof s->no_route, "implicit TLS (port 465 or "
			 "implicit_tls) with tls = \"none\": refused");
	}
	s->window = p->max_connections > 0 ? (unsigned)p->max_connections * 2 : 2;
	if (p->rate && *p->rate && vl_parse_rate(p->rate, &s->rate) == 0)
		sched_bucket_init(&s->b, s->rate);
	site_lease(d, s);
	return s;
}

/* Another source's site for the same destination: a copy of one of the
 * group's sites (template, hosts, policy), with its own source and fresh
 * state. */
static struct sched_site *site_clone(struct sched_deliver *d, struct sched_sgroup *g, int src)
{
	const struct sched_site *o = g->any;
	struct sched_site *s = site_alloc(d, g, src);

	s->route = o->route;
	s->route.has_source = false;
	s->route.helo[0] = '\0';
	route_source(d, s, &s->route);
	if (o->routes == &o->route) {
		s->routes = &s->route;
	} else {
		s->routes = vl_calloc(SCHED_SITE_HOSTS_MAX, sizeof *s->routes);
		for (size_t i = 0; i < o->nroutes; i++) {
			s->routes[i] = o->routes[i];
			s->routes[i].has_source = s->route.has_source;
			s->routes[i].source = s->route.source;
			s->routes[i].sourcelen = s->route.sourcelen;
			memcpy(s->routes[i].helo, s->route.helo, sizeof s->routes[i].helo);
		}
	}
	s->nroutes = o->nroutes;
	s->routable = o->routable;
	memcpy(s->no_route, o->no_route, sizeof s->no_route);
	s->sts_mode = o->sts_mode;
	s->sts = o->sts ? sts_copy(o->sts) : NULL;
	s->window = o->window;
	s->rate = o->rate;
	if (s->rate > 0)
		sched_bucket_init(&s->b, s->rate);
	site_lease(d, s);
	return s;
}

/* The pool's index in the egress configuration; an unknown one (a reload
 * added it, or a job from before one) is the default. */
static int pool_index(const struct sched_deliver *d, const char *name)
{
	int i = cfg_pool_find(d->ecfg, name);

	return i >= 0 ? i : cfg_pool_find(d->ecfg, NULL);
}

static struct sched_sgroup *group_new(struct sched_deliver *d, const char *key,
				      const struct cfg_policy *p, const struct dns_mx_result *mx,
				      const struct sts_entry *sts, const char *provider)
{
	struct sched_sgroup *g = vl_calloc(1, sizeof *g);
	int pool = pool_index(d, p->pool);

	g->key = vl_strdup(key);
	g->provider = provider ? vl_strdup(provider) : NULL;
	g->nsrc = d->ecfg->negress ? d->ecfg->negress : 1;
	g->site = vl_calloc(g->nsrc, sizeof *g->site);
	g->npools = d->ecfg->npools;
	g->cur = vl_calloc(g->npools * g->nsrc + 1, sizeof *g->cur);
	g->pool = pool;
	/* the first site: the policy pool's first source */
	int src = -1;
	if (d->ecfg->negress)
		src = pool >= 0 && d->ecfg->pools[pool].n ? (int)d->ecfg->pools[pool].src[0] : 0;
	site_new(d, g, src, p, mx, sts);
	g->next = d->groups;
	d->groups = g;
	json_object_set_new(d->site_index, key, json_integer((json_int_t)(intptr_t)g));
	return g;
}

static struct sched_site *group_site(struct sched_deliver *d, struct sched_sgroup *g, size_t src)
{
	return g->site[src] ? g->site[src] : site_clone(d, g, (int)src);
}

struct sched_site *sched_group_pick(struct sched_deliver *d, struct sched_sgroup *g, int pool)
{
	const struct cfg_pool *pl;
	bool few[16], *skip;
	uint64_t now;

	if (!d->ecfg->negress)
		return g->any;
	if (pool < 0 || (size_t)pool >= g->npools)
		pool = g->pool;
	pl = pool >= 0 ? &d->ecfg->pools[pool] : NULL;
	if (!pl || !pl->n)
		return g->any;
	if (pl->n == 1)
		return group_site(d, g, pl->src[0]);
	size_t n = pl->n;
	skip = n <= VL_ARRAY_LEN(few) ? few : vl_malloc(n * sizeof *skip);
	now = vl_now_ms();
	for (size_t i = 0; i < n; i++) {
		const struct sched_site *s = g->site[pl->src[i]];
		skip[i] = s && (sched_backoff_suspended(&s->bo, now) ||
				(s->warm_until_ms > now && !pl->overflow_wait));
	}
	size_t at = sched_swrr_pick(g->cur + (size_t)pool * g->nsrc, pl->weight, skip, n);
	if (skip != few)
		free(skip);
	return group_site(d, g, pl->src[at]);
}

/* "<where>|tls|conns|per conn|rcpts|rate|port|user|ca[|implicit][|pool=P]
 * [|prov=NAME]": same key, same destination (a group of sites, one per
 * source). */
static void site_key(char *key, size_t len, const char *where, const struct cfg_policy *p,
		     const char *prov)
{
	snprintf(key, len, "%s|%s|%lld|%lld|%lld|%s|%lld|%s|%s%s%s%.64s%s%.32s", where, p->tls,
		 (long long)p->max_connections, (long long)p->max_messages_per_connection,
		 (long long)p->max_recipients_per_message, p->rate, (long long)p->port,
		 p->auth_user ? p->auth_user : "", p->ca_file ? p->ca_file : "",
		 cfg_policy_implicit_tls(p) ? "|implicit" : "", p->pool ? "|pool=" : "",
		 p->pool ? p->pool : "", prov ? "|prov=" : "", prov ? prov : "");
}

static struct sched_sgroup *group_get(struct sched_deliver *d, const char *where,
				      const struct cfg_policy *p, const struct dns_mx_result *mx,
				      const struct sts_entry *sts, const char *prov)
{
	char key[1700];

	site_key(key, sizeof key, where, p, prov);
	json_t *v = json_object_get(d->site_index, key);
	return v ? (struct sched_sgroup *)(intptr_t)json_integer_value(v) :
		   group_new(d, key, p, mx, sts, prov);
}

static const char *prov_name(const struct sched_deliver *d, int prov)
{
	return prov >= 0 ? d->cfg->providers[prov].name : NULL;
}

/* "|sts=E:101": the mode, and which of the hosts (in site-key order, by
 * name) the policy's mx list names. Domains with the same hosts and the
 * same verdicts share a site; a different verdict is another site. */
static void sts_suffix(char *out, size_t len, const char *hosts, const struct sts_entry *e)
{
	size_t at;
	char name[256];

	if (sts_mode(e) == ENG_STS_OFF) {
		out[0] = '\0';
		return;
	}
	at = (size_t)snprintf(out, len, "|sts=%c:", sts_mode(e) == ENG_STS_ENFORCE ? 'E' : 'T');
	for (const char *h = hosts; *h && at + 2 < len;) {
		size_t n = strcspn(h, ",");
		snprintf(name, sizeof name, "%.*s", (int)(n < 255 ? n : 255), h);
		out[at++] = tls_sts_mx_match(&e->policy, name) ? '1' : '0';
		h += n + (h[n] == ',');
	}
	out[at] = '\0';
}

/* A routed domain's group of sites (its policy names a route). */
struct sched_sgroup *sched_group_for(struct sched_deliver *d, const char *domain)
{
	char dom[256];
	struct cfg_policy p;

	snprintf(dom, sizeof dom, "%s", domain);
	lower(dom);
	json_t *hit = json_object_get(d->domain_site, dom);
	if (hit)
		return (struct sched_sgroup *)(intptr_t)json_integer_value(hit);
	int prov = cfg_provider_for(d->cfg, dom, NULL, 0);
	cfg_policy_for_provider(d->cfg, dom, prov, &p);
	struct sched_sgroup *g = group_get(d, p.route, &p, NULL, NULL, prov_name(d, prov));
	json_object_set_new(d->domain_site, dom, json_integer((json_int_t)(intptr_t)g));
	return g;
}

unsigned sched_site_first_host(struct sched_site *s, uint64_t now)
{
	for (unsigned i = 0; i < s->nroutes; i++)
		if (s->down_until[i] <= now)
			return i;
	return 0;                 /* all refused lately: the first again */
}

int sched_site_next_host(struct sched_site *s, unsigned after, uint64_t now)
{
	for (unsigned i = after + 1; i < s->nroutes; i++)
		if (s->down_until[i] <= now)
			return (int)i;
	return -1;
}

/* ---- domains resolved through DNS ---- */

/* Whether a route names its host (a smarthost to resolve), not an
 * address; the name goes to host[256]. */
static bool route_by_name(const char *route, char *host)
{
	uint16_t port;

	return *route && vl_parse_hostport(route, host, 256, &port) == 0 && !vl_ip_literal(host);
}

static struct sched_dom *dom_get(struct sched_deliver *d, const char *name, const char *route)
{
	json_t *v = json_object_get(d->doms, name);

	if (v)
		return (struct sched_dom *)(intptr_t)json_integer_value(v);
	struct sched_dom *m = vl_calloc(1, sizeof *m);
	m->d = d;
	m->name = vl_strdup(name);
	char host[256];
	if (route_by_name(route, host))
		m->host = vl_strdup(host);
	json_object_set_new(d->doms, name, json_integer((json_int_t)(intptr_t)m));
	return m;
}

/* On an engine worker: copy the answer over to the delivery thread. */
static void on_mx(void *arg, const struct dns_mx_result *r)
{
	sched_dd_post_mx(arg, SCHED_DD_MX, r);
}

void sched_dd_post_mx(struct sched_dom *m, enum sched_dd_kind kind, const struct dns_mx_result *r)
{
	struct sched_dns_done *dd = vl_calloc(1, sizeof *dd);

	dd->kind = kind;
	dd->dom = m;
	dd->r = dns_mx_dup(r);
	sched_dd_post(m->d, dd);
}

void sched_dd_post(struct sched_deliver *d, struct sched_dns_done *dd)
{
	pthread_mutex_lock(&d->mu);
	dd->next = d->dns_done;
	d->dns_done = dd;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

void sched_dd_free(struct sched_dns_done *dd)
{
	dns_mx_free(dd->r);
	for (size_t i = 0; i < dd->ntxt; i++)
		free(dd->txt[i]);
	free(dd->txt);
	free(dd->txtlen);
	free(dd->body);
	free(dd->why);
	free(dd);
}

static void pend_push(struct sched_dom *m, struct sched_djob *dj, uint32_t idx)
{
	if (m->npend == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->pend = vl_realloc(m->pend, m->cap * sizeof *m->pend);
	}
	m->pend[m->npend++] = (struct sched_pend){ dj, idx };
}

/* The recipient joins the site of the source its pool picks (the job's
 * pool, else its domain's). */
static void to_site(struct sched_deliver *d, struct sched_sgroup *g, struct sched_djob *dj,
		    uint32_t idx)
{
	struct sched_site *s = sched_group_pick(d, g, dj->pool >= 0 ? dj->pool : g->pool);

	sched_sjq_push(sched_sjq_for(dj, s), idx);
	s->waiting++;
	sched_site_ready(d, s);
}

void sched_dom_enqueue(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
		       const char *domain)
{
	char name[256];
	struct cfg_policy p;
	uint64_t now = vl_now_ms();

	snprintf(name, sizeof name, "%s", domain);
	lower(name);
	/* the caches first: the policy's globs once per domain, not per recipient */
	json_t *routed = json_object_get(d->domain_site, name);
	if (routed) {
		to_site(d, (struct sched_sgroup *)(intptr_t)json_integer_value(routed), dj, idx);
		return;
	}
	json_t *known = json_object_get(d->doms, name);
	char host[256];
	if (!known) {
		cfg_policy_for(d->cfg, name, &p);
		/* a route to an address is the site; a name is resolved below
		 * as the domain's MX would be */
		if (*p.route && !route_by_name(p.route, host)) {
			to_site(d, sched_group_for(d, name), dj, idx);
			return;
		}
	}
	struct sched_dom *m = known ? (struct sched_dom *)(intptr_t)json_integer_value(known) :
				dom_get(d, name, p.route);
	if (m->st == SCHED_D_OK && now < m->until_ms) {
		if (now >= m->sts_until_ms && m->sts_step == SCHED_STS_IDLE) {
			cfg_policy_for(d->cfg, name, &p);
			sched_sts_check(d, m, &p);
		}
		to_site(d, m->group, dj, idx);
		return;
	}
	if (m->st == SCHED_D_FAILED && now < m->until_ms) {
		sched_deliver_local(d, dj, idx, true, m->why);
		return;
	}
	pend_push(m, dj, idx);
	dj->pending_dns++;
	if (m->st != SCHED_D_RESOLVING) {
		m->st = SCHED_D_RESOLVING;
		m->mx_until_ms = 0;
		cfg_policy_for(d->cfg, name, &p);
		if (m->host) {  /* the operator named it: private addresses too */
			eng_resolve_host(d->eng, m->host, true, on_mx, m);
		} else {
			sched_sts_check(d, m, &p);
			eng_resolve_mx(d->eng, name, on_mx, m);
		}
	}
}

void sched_dom_answer(struct sched_deliver *d, struct sched_dns_done *dd)
{
	struct sched_dom *m = dd->dom;
	const struct dns_mx_result *r = dd->r;
	bool ok = r && r->status == DNS_OK && r->nhosts;
	/* a relay's name failing is the operator's problem, never the
	 * recipient's: it defers, even on NXDOMAIN */
	bool perm = r && !ok && dns_status_permanent(r->status) && !m->host;
	uint32_t ttl = r && r->ttl ? r->ttl : 60;

	if (dd->kind != SCHED_DD_MX) {
		sched_sts_answer(d, dd);
		return;
	}
	m->st = ok ? SCHED_D_RESOLVING : perm ? SCHED_D_FAILED : SCHED_D_NEW;
	m->until_ms = m->mx_until_ms = vl_now_ms() + (uint64_t)ttl * 1000;
	if (m->host) {
		struct cfg_policy p;
		cfg_policy_for(d->cfg, m->name, &p);
		snprintf(m->why, sizeof m->why, "route %s: %s", p.route,
			 r && r->why ? r->why : "no answer from the resolver");
	} else {
		snprintf(m->why, sizeof m->why, "%s: %s", m->name,
			 r && r->why ? r->why : "no answer from the resolver");
	}
	if (ok) {
		dns_mx_free(m->mx);
		m->mx = dd->r;
		dd->r = NULL;
	}
	sched_dd_free(dd);
	if (!ok || !m->sts_blocking || m->sts_step == SCHED_STS_IDLE)
		sched_dom_place(d, m);
}

/* The site for the domain's answer: a named route's (its route string is
 * the site), a provider's (every domain it serves, by name or MX host,
 * shares it: an MX rollup), or its MX hosts' under its MTA-STS policy now. */
static struct sched_sgroup *dom_site(struct sched_deliver *d, struct sched_dom *m)
{
	struct cfg_policy p;
	char key[1500], hosts[1400], suffix[64];
	const char *names[SCHED_SITE_HOSTS_MAX];
	const struct sts_entry *e = NULL;
	size_t n = 0;

	for (size_t i = 0; m->mx && i < m->mx->nhosts && i < SCHED_SITE_HOSTS_MAX; i++)
		names[n++] = m->mx->hosts[i].name;
	int prov = cfg_provider_for(d->cfg, m->name, m->host ? NULL : names, m->host ? 0 : n);
	cfg_policy_for_provider(d->cfg, m->name, prov, &p);
	if (m->host) {
		snprintf(key, sizeof key, "%s", p.route);
	} else {
		e = sched_sts_wanted(&p) ? sched_sts_policy(d, m->name) : NULL;
		dns_site_key(m->mx, hosts, sizeof hosts);
		sts_suffix(suffix, sizeof suffix, hosts, e);
		if (prov >= 0)
			snprintf(key, sizeof key, "provider:%s%s", prov_name(d, prov), suffix);
		else
			snprintf(key, sizeof key, "mx:%s%s", hosts, suffix);
	}
	struct sched_sgroup *g = group_get(d, key, &p, m->mx, e, prov_name(d, prov));
	/* a provider's site takes its hosts from one of its domains' answers:
	 * the others' (hosted domains) would make them change back and forth */
	uint64_t now = vl_now_ms();
	if (prov >= 0 && !m->host && g->anchor && strcmp(g->anchor, m->name) &&
	    now - g->anchor_ms > d->cfg->dns.max_ttl_ms) {
		free(g->anchor);      /* no answer from it for long: it left */
		g->anchor = NULL;
	}
	if (prov >= 0 && !m->host && !g->anchor)
		g->anchor = vl_strdup(m->name);
	if (g->anchor && strcmp(g->anchor, m->name))
		return g;
	g->anchor_ms = now;
	/* every source's site: they reach the same hosts */
	for (size_t i = 0; i < g->nsrc; i++) {
		struct sched_site *s = g->site[i];
		if (s && s->routes != &s->route)
			site_refresh(d, s, &p, m->mx);
	}
	return g;
}

void sched_dom_place(struct sched_deliver *d, struct sched_dom *m)
{
	bool ok = m->st != SCHED_D_FAILED && m->st != SCHED_D_NEW;

	if (m->st == SCHED_D_RESOLVING && !m->mx_until_ms)
		return;                  /* the MX answer is still to come */
	if (ok) {
		m->group = dom_site(d, m);
		m->st = SCHED_D_OK;
		m->placed = true;
	}
	struct sched_pend *pend = m->pend;
	size_t n = m->npend;
	m->pend = NULL;
	m->npend = m->cap = 0;
	for (size_t i = 0; i < n; i++) {
		struct sched_djob *dj = pend[i].dj;
		if (!--dj->pending_dns)
			d->reap_due = true;
		if (sched_rstate_final(dj->st[pend[i].idx]) || dj->cancelled)
			continue;
		if (ok)
			to_site(d, m->group, dj, pend[i].idx);
		else
			sched_deliver_local(d, dj, pend[i].idx, m->st == SCHED_D_FAILED, m->why);
	}
	free(pend);
}

static void dom_free(struct sched_dom *m)
{
	dns_mx_free(m->mx);
	free(m->name);
	free(m->host);
	free(m->pend);
	free(m);
}

void sched_doms_free(struct sched_deliver *d)
{
	const char *k;
	json_t *v;

	json_object_foreach(d->doms, k, v)
		dom_free((struct sched_dom *)(intptr_t)json_integer_value(v));
}

void sched_doms_forget(struct sched_deliver *d)
{
	const char *k;
	json_t *v;
	void *tmp;

	json_object_clear(d->domain_site);
	/* a domain with an answer or a policy fetch on the way is asked for
	 * by pointer: it stays, and is placed by the new rules when it comes */
	json_object_foreach_safe(d->doms, tmp, k, v) {
		struct sched_dom *m = (struct sched_dom *)(intptr_t)json_integer_value(v);
		if (m->st == SCHED_D_RESOLVING || m->sts_step != SCHED_STS_IDLE || m->npend)
			continue;
		dom_free(m);
		json_object_del(d->doms, k);
	}
}

void sched_site_ready(struct sched_deliver *d, struct sched_site *s)
{
	if (s->ready)
		return;
	s->ready = true;
	s->next_ready = d->ready;
	d->ready = s;
}

/* ---- shaping (the rules are shape.c's) ---- */

/* The next queue to serve: transactional first, then bulk in turn (only
 * transactional when trans_only). A job's own rate limit may hold it back
 * (*wait: when it may go). */
static struct sched_sjq *pick(struct sched_site *s, uint64_t now, uint64_t *wait,
			      bool trans_only)
{
	struct sched_sjq *lists[2] = { s->trans, s->bulk };

	for (int l = 0; l < 2 - trans_only; l++)
		for (struct sched_sjq *q = lists[l]; q; q = q->next) {
			if (!q->len || q->dj->paused || q->dj->cancelled)
				continue;
			uint64_t w = sched_bucket_wait(&q->dj->rate, now);
			if (!w)
				return q;
			if (!*wait || w < *wait)
				*wait = w;
		}
	return NULL;
}

/* Move a served bulk queue to the end, so bulk jobs take turns. */
static void rotate(struct sched_site *s, struct sched_sjq *q)
{
	if (q->dj->transactional || !q->next)
		return;
	struct sched_sjq **l = &s->bulk;
	while (*l != q)
		l = &(*l)->next;
	*l = q->next;
	while (*l)
		l = &(*l)->next;
	*l = q;
	q->next = NULL;
}

static void spill(struct sched_deliver *d, struct sched_site *s, bool warm);

/* Today's warm-up cap reached: the site waits for the next day; what waits
 * there goes to the pool's other sources unless the pool says wait. */
static void warm_capped(struct sched_deliver *d, struct sched_site *s)
{
	vl_log(VL_LOG_INFO, "site %s: source %s reached today's warm-up cap", s->key,
	       s->src_name);
	spill(d, s, true);
	sched_timer_add(d, s->warm_until_ms, SCHED_T_SITE, s, 0);
}

#define CONNS_WAIT_MS 20

static void dispatch(struct sched_deliver *d, struct sched_site *s, uint64_t now)
{
	uint64_t wait = 0;
	unsigned sent = 0;

	if (sched_backoff_suspended(&s->bo, now)) {
		sched_timer_add(d, s->bo.until_ms, SCHED_T_SITE, s, 0);
		return;
	}
	if (s->warm_until_ms > now) {
		sched_timer_add(d, s->warm_until_ms, SCHED_T_SITE, s, 0);
		return;
	}
	/* Transactional mail may go past a window full of bulk, by half a
	 * window more: in the engine it goes ahead of the bulk (urgent), so
	 * it leaves with the next free session instead of after a window's
	 * worth of bulk results (a big job's start: every session's TLS
	 * handshake). The site's rate and back-off still apply. */
	/* With a cluster the site's messages in the engine are at most the
	 * connections its lease allows: one a connection, so the pools open
	 * no more than that. */
	unsigned cap = s->conns ? clu_conns_use(d->clu, s->conns, s->waiting || s->inflight ?
						s->route.max_connections : 0) : UINT_MAX;
	if (s->conns && s->waiting && s->inflight >= cap)
		wait = CONNS_WAIT_MS;   /* a grant may come: look again */
	while (s->inflight < s->window + s->window / 2 && s->inflight < cap && s->waiting) {
		bool trans_only = s->inflight >= s->window;
		if (trans_only && !s->trans)
			break;
		if (++sent > ROUND_MAX) {
			sched_site_ready(d, s); /* the rest in the next round */
			return;
		}
		if ((wait = sched_bucket_wait(&s->b, now)))
			break;
		struct sched_sjq *q = pick(s, now, &wait, trans_only);
		if (!q)
			break;
		uint64_t lw = s->lease ? clu_lease_take(d->clu, s->lease, now) : 0;
		if (lw) {         /* the cluster's share: not yet */
			wait = !wait || lw < wait ? lw : wait;
			break;
		}
		uint64_t ww = s->wslot >= 0 ? sched_warm_take(d, s, now) : 0;
		if (ww == UINT64_MAX) {
			warm_capped(d, s);
			return;
		}
		if (ww) {         /* the cluster's count: not yet */
			wait = !wait || ww < wait ? ww : wait;
			break;
		}
		sched_bucket_take(&s->b);
		sched_bucket_take(&q->dj->rate);
		uint32_t idx = sched_sjq_pop(q);
		s->waiting--;
		rotate(s, q);
		sched_deliver_send(d, q, idx);
	}
	if (wait)
		sched_timer_add(d, now + wait, SCHED_T_SITE, s, 0);
}

void sched_site_dispatch_all(struct sched_deliver *d)
{
	uint64_t now = vl_now_ms();
	struct sched_site *s = d->ready;

	d->ready = NULL;
	while (s) {
		struct sched_site *next = s->next_ready;
		s->ready = false;
		dispatch(d, s, now);
		s = next;
	}
}

/* ---- adaptive back-off ---- */

/* Suspend and slow down (shape.c), and say why in words for the API. */
static void backoff(struct sched_deliver *d, struct sched_site *s, const struct sched_dmsg *m,
		    uint64_t now)
{
	char until[32], since[32];
	uint64_t ms = sched_backoff_slow_down(&s->bo, &s->b, s->window, now);

	if (!ms)
		return;               /* already backing off: one step per episode */
	if (s->lease)             /* the other nodes slow down too */
		clu_lease_cut(d->clu, s->lease, s->b.rate, ms);
	s->backoff_since = vl_wall_time();
	vl_iso8601(s->backoff_since, since);
	vl_iso8601(s->backoff_since + (double)ms / 1000, until);
	snprintf(s->backoff_reason, sizeof s->backoff_reason,
		 "%d %s %.160s (from %s) at %s: suspended until %s, rate cut to %.3g/s",
		 m->r.code, m->r.enhanced, m->r.text, m->peer[0] ? m->peer : "?", since, until,
		 s->b.rate);
	vl_log(VL_LOG_INFO, "site %s: %s", s->key, s->backoff_reason);
}

/* After enough successes the rate steps back up towards the configured
 * one (or to unlimited when none is configured). */
static void recover(struct sched_site *s, uint64_t now)
{
	if (sched_backoff_ok(&s->bo, &s->b, s->rate, s->window, now))
		s->backoff_reason[0] = '\0';
}

/* A suspended (or, warm, capped) source's waiting recipients go to the
 * pool's other sources (those not suspended themselves; with none, they
 * stay). A capped source keeps those of pools that say overflow = "wait". */
static void spill(struct sched_deliver *d, struct sched_site *s, bool warm)
{
	struct sched_sjq *lists[2] = { s->trans, s->bulk };
	struct sched_sgroup *g = s->group;
	size_t moved = 0;

	if (g->nsrc < 2 || !s->waiting)
		return;
	for (int l = 0; l < 2; l++)
		for (struct sched_sjq *q = lists[l]; q; q = q->next) {
			int pool = q->dj->pool >= 0 ? q->dj->pool : g->pool;
			if (warm && pool >= 0 && (size_t)pool < d->ecfg->npools &&
			    d->ecfg->pools[pool].overflow_wait)
				continue;
			for (size_t n = q->len; n; n--) {
				uint32_t idx = sched_sjq_pop(q);
				s->waiting--;
				to_site(d, g, q->dj, idx);
				moved++;
			}
		}
	if (moved)
		vl_log(VL_LOG_INFO, "site %s: %zu waiting recipients offered to the pool's "
		       "other sources", s->key, moved);
}

/* A provider rule's suspension: no sending from s to the site until
 * now + the rule's duration (a longer one in force stays). */
static void suspend(struct sched_deliver *d, struct sched_site *s, const struct sched_dmsg *m,
		    const struct cfg_reply_rule *r, uint64_t now)
{
	char until[32], since[32];

	if (s->bo.until_ms >= now + r->duration_ms)
		return;
	s->bo.until_ms = now + r->duration_ms;
	s->backoff_since = vl_wall_time();
	vl_iso8601(s->backoff_since, since);
	vl_iso8601(s->backoff_since + (double)r->duration_ms / 1000, until);
	snprintf(s->backoff_reason, sizeof s->backoff_reason,
		 "%d %s %.160s (from %s) at %s: provider %s says %s: suspended until %s",
		 m->r.code, m->r.enhanced, m->r.text, m->peer[0] ? m->peer : "?", since,
		 s->group->provider ? s->group->provider : "?",
		 cfg_reply_action_name(r->action), until);
	vl_log(VL_LOG_INFO, "site %s: %s", s->key, s->backoff_reason);
	sched_site_ready(d, s);
}

static void act(struct sched_deliver *d, struct sched_site *s, const struct sched_dmsg *m,
		const struct cfg_reply_rule *rr, bool rate_limited, uint64_t now)
{
	if (!rr) {
		if (rate_limited)
			backoff(d, s, m, now);
		return;
	}
	switch (rr->action) {
	case CFG_RA_BACKOFF:
		backoff(d, s, m, now);
		break;
	case CFG_RA_SUSPEND_SOURCE:
		suspend(d, s, m, rr, now);
		spill(d, s, false);
		break;
	case CFG_RA_SUSPEND_POOL:
		/* every source's site (without egress, the one site is site[0]) */
		for (size_t i = 0; i < s->group->nsrc; i++)
			if (s->group->site[i])
				suspend(d, s->group->site[i], m, rr, now);
		break;
	case CFG_RA_DEFER:
	case CFG_RA_BOUNCE:
		break;
	}
}

const struct cfg_reply_rule *sched_site_reply_rule(const struct sched_deliver *d,
						   const struct sched_site *s,
						   const struct sched_dmsg *m)
{
	char text[512];
	size_t n = 0;
	bool space = false;

	if (m->r.status == ENG_DELIVERED || !s->group->provider)
		return NULL;
	/* line breaks and runs of white space as one space, as the bounce rules */
	for (const char *t = m->r.text; *t && n + 1 < sizeof text; t++) {
		bool ws = *t == ' ' || *t == '\t' || *t == '\r' || *t == '\n';
		if (ws && !space && n)
			text[n++] = ' ';
		else if (!ws)
			text[n++] = *t;
		space = ws;
	}
	text[n] = '\0';
	return cfg_provider_reply(d->cfg, cfg_provider_find(d->cfg, s->group->provider), m->r.code,
				  m->r.enhanced, text);
}

void sched_site_last_response(const struct sched_site *s, char *out, size_t n)
{
	if (s->last.code)  /* "550 5.1.1 text", or "550 text" without an enhanced code */
		snprintf(out, n, "%d%s%s %s", s->last.code, *s->last.enhanced ? " " : "",
			 s->last.enhanced, s->last.text);
	else               /* no reply: where it failed and why */
		snprintf(out, n, "%s%s%s", s->last.stage, *s->last.stage ? ": " : "",
			 s->last.text);
}

void sched_site_result(struct sched_deliver *d, struct sched_site *s, const struct sched_dmsg *m,
		       const struct sched_bounce_verdict *v, const struct cfg_reply_rule *rr)
{
	uint64_t now = vl_now_ms();

	s->last_time = vl_wall_time();
	/* kept raw: formatting every result would cost more than the rest of
	 * this function, for a line shown on request */
	s->last.code = m->r.code;
	memcpy(s->last.enhanced, m->r.enhanced, sizeof s->last.enhanced);
	memcpy(s->last.stage, m->r.stage, sizeof s->last.stage);
	size_t tl = strnlen(m->r.text, sizeof s->last.text - 1);
	memcpy(s->last.text, m->r.text, tl);
	s->last.text[tl] = '\0';
	if (m->r.status == ENG_DELIVERED) {
		s->delivered++;
		recover(s, now);
	} else {
		if (m->r.status == ENG_PERMANENT)
			s->bounced++;
		else
			s->transient++;
		act(d, s, m, rr, v->cls == SCHED_BC_RATE_LIMITED, now);
	}
	sched_site_ready(d, s);
}

/* ---- views ---- */

static json_t *sts_mx_json(const struct sts_entry *e)
{
	json_t *a = json_array();

	for (size_t i = 0; i < e->policy.nmx; i++)
		json_array_append_new(a, json_string(e->policy.mx[i]));
	return a;
}

json_t *sched_site_json(const struct sched_deliver *d, const struct sched_site *s)
{
	char since[32], until[32];
	json_t *bo = json_null(), *last = json_null();
	double left = (double)s->bo.until_ms - (double)vl_now_ms();

	if (s->backoff_reason[0]) {
		vl_iso8601(s->backoff_since, since);
		vl_iso8601(vl_wall_time() + (left > 0 ? left / 1000 : 0), until);
		bo = json_pack("{s:s, s:s, s:s, s:b, s:i}", "reason", s->backoff_reason,
			       "since", since, "until", until, "suspended", left > 0,
			       "level", (int)s->bo.level);
	}
	if (s->last_time > 0) {
		vl_iso8601(s->last_time, since);
		char text[320];
		sched_site_last_response(s, text, sizeof text);
		last = json_pack("{s:s, s:s}", "text", text, "time", since);
	}
	json_t *hosts = json_array();
	for (size_t i = 0; i < s->nroutes; i++) {
		char addr[128];
		vl_sockaddr_str(&s->routes[i].addr, addr, sizeof addr);
		json_array_append_new(hosts, json_pack("{s:s, s:s}", "name", s->routes[i].name,
						       "address", addr));
	}
	json_t *tls = json_pack("{s:s, s:o}", "policy", tls_policy_name(s->route.tls),
				"mta_sts", s->sts ? json_pack("{s:s, s:s, s:o}", "mode",
				tls_sts_mode_name(s->sts->policy.mode), "id", s->sts->id, "mx",
				sts_mx_json(s->sts)) : json_null());
	json_int_t conns = 0;            /* open or opening, to any of its hosts */
	for (size_t i = 0; d->eng && i < s->nroutes; i++)
		conns += eng_route_connections(d->eng, &s->routes[i]);
	return json_pack("{s:o, s:s, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:f, s:o, s:o,"
			 " s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I}}",
			 "site", json_string(s->name), "key", s->key,
			 "provider", s->group->provider ? json_string(s->group->provider) : json_null(), "hosts", hosts, "tls", tls,
			 "queued", (json_int_t)s->waiting, "deferred", (json_int_t)s->deferred,
			 "in_flight", (json_int_t)s->inflight, "connections", conns,
			 "max_connections", (json_int_t)s->route.max_connections,
			 "rate", s->rate > 0 ? json_real(s->rate) : json_null(),
			 "current_rate", s->b.rate,
			 "backoff", bo, "last_response", last,
			 "route", s->routable ? json_true() : json_string(s->no_route),
			 "source", s->src_name ? json_string(s->src_name) : json_null(),
			 "source_address", s->src_addr ? json_string(s->src_addr) : json_null(),
			 "warmup", sched_warm_site_json(d, s),
			 "totals", "delivered", (json_int_t)s->delivered,
			 "bounced", (json_int_t)s->bounced, "transient", (json_int_t)s->transient);
}

void sched_sites_free(struct sched_deliver *d)
{
	for (size_t i = 0; i < d->nold; i++)
		free(d->old_routes[i]);
	free(d->old_routes);
	while (d->sites) {
		struct sched_site *n = d->sites->next;
		if (d->sites->routes != &d->sites->route)
			free(d->sites->routes);
		free(d->sites->key);
		free(d->sites->name);
		free(d->sites->src_name);
		free(d->sites->src_addr);
		if (d->sites->sts)
			free(d->sites->sts->text);
		free(d->sites->sts);
		free(d->sites);
		d->sites = n;
	}
	while (d->groups) {
		struct sched_sgroup *n = d->groups->next;
		free(d->groups->key);
		free(d->groups->provider);
		free(d->groups->anchor);
		free(d->groups->site);
		free(d->groups->cur);
		free(d->groups);
		d->groups = n;
	}
}
