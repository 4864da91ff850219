/* The engine: workers on threads, each with pools of its own (a pool
 * lives on one thread only). A route's messages go to its home worker
 * (by hash) while that keeps up, beyond that to the least loaded of the
 * workers the route is spread over, each with its own pool and a share
 * of the route's connections. */
#include "engine_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COUNT_BUCKETS 256
struct route_count {
	uint64_t h;
	unsigned n;
	struct route_count *next;
};

struct engine {
	struct eng_config cfg;
	int n;
	struct eng_worker **w;
	pthread_t *tid;
	bool stopped;
	_Atomic unsigned rr;             /* breaks ties between the workers */
	_Atomic int *prep;               /* [n]: messages waiting to be prepared */
	_Atomic unsigned *load;          /* [SPREAD_SLOTS][n]: messages handed to
					  * each worker and not done, by route
					  * hash (a shared slot only spreads a
					  * quiet route sooner) */
	_Atomic unsigned *conns;         /* [SPREAD_SLOTS][n]: connections open
					  * or opening, likewise */
	/* The same exactly, by route hash, for the API: touched at a
	 * connection's open and close only, so a mutex does */
	pthread_mutex_t cmu;
	struct route_count *counts[COUNT_BUCKETS];
};

#define SPREAD_SLOTS 1024

static void *run(void *arg)
{
	vl_thread_name("vl-engine");
	eng_worker_run(arg);
	return NULL;
}

struct engine *eng_new(const struct eng_config *c, char *err, size_t errlen)
{
	struct engine *e = vl_calloc(1, sizeof *e);

	e->cfg = *c;
	e->n = c->workers > 0 ? c->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (e->n < 1)
		e->n = 1;
	e->cfg.workers = e->n; /* the workers' eng_share needs it */
	e->load = vl_calloc(SPREAD_SLOTS * (size_t)e->n, sizeof *e->load);
	e->conns = vl_calloc(SPREAD_SLOTS * (size_t)e->n, sizeof *e->conns);
	pthread_mutex_init(&e->cmu, NULL);
	e->w = vl_calloc((size_t)e->n, sizeof *e->w);
	e->tid = vl_calloc((size_t)e->n, sizeof *e->tid);
	e->prep = vl_calloc((size_t)e->n, sizeof *e->prep);
	for (int i = 0; i < e->n; i++) {
		e->w[i] = eng_worker_new(e, &e->cfg, (unsigned)i, err, errlen);
		if (!e->w[i]) {
			for (int j = 0; j < i; j++)
				eng_worker_free(e->w[j]);
			free(e->w);
			free(e->tid);
			free(e->prep);
			free(e->load);
			free(e->conns);
			pthread_mutex_destroy(&e->cmu);
			free(e);
			return NULL;
		}
	}
	for (int i = 0; i < e->n; i++)
		pthread_create(&e->tid[i], NULL, run, e->w[i]);
	return e;
}

/* Where a message is prepared: the worker with the fewest messages
 * waiting to be (ties in turn), counting the owner of the message's pool
 * as OWNER_BIAS more. The owner does all of that pool's I/O (with one
 * destination, all of it): strict turns left the other core idle a third
 * of the time. So the owner signs only while the others are behind. */
#define OWNER_BIAS 4

static int prep_worker(struct engine *e, int owner)
{
	unsigned start = atomic_fetch_add_explicit(&e->rr, 1, memory_order_relaxed);
	int best = 0, bestq = 0;

	for (int k = 0; k < e->n; k++) {
		int i = (int)((start + (unsigned)k) % (unsigned)e->n);
		int q = atomic_load_explicit(&e->prep[i], memory_order_relaxed) +
			(i == owner ? OWNER_BIAS : 0);
		if (k == 0 || q < bestq)
			best = i, bestq = q;
	}
	return best;
}

unsigned eng_share(uint64_t route_hash, unsigned cap, unsigned id, unsigned n)
{
	unsigned k = cap < n ? cap : n;
	unsigned r = (id + n - (unsigned)(route_hash % n)) % n;

	if (r >= k) /* not one of the route's: only after a reload shrank
		     * the cap or while stopping; one keeps it moving */
		return 1;
	return cap / k + (r < cap % k);
}

/* A route's counter for a worker in one of the [SPREAD_SLOTS][n] arrays. */
static _Atomic unsigned *slot(struct engine *e, _Atomic unsigned *a, uint64_t h,
			      unsigned worker)
{
	return &a[(h % SPREAD_SLOTS) * (unsigned)e->n + worker];
}

static _Atomic unsigned *load_of(struct engine *e, uint64_t h, unsigned worker)
{
	return slot(e, e->load, h, worker);
}

/* The exact count of route h: +1, -1 (an entry at zero goes), or 0 to read. */
static unsigned count_step(struct engine *e, uint64_t h, int delta)
{
	struct route_count **pp = &e->counts[h % COUNT_BUCKETS], *c;
	unsigned n = 0;

	pthread_mutex_lock(&e->cmu);
	while ((c = *pp) && c->h != h)
		pp = &c->next;
	if (!c && delta > 0) {
		c = *pp = vl_calloc(1, sizeof *c);
		c->h = h;
	}
	if (c) {
		c->n += delta > 0 ? 1u : delta < 0 && c->n ? -1u : 0u;
		n = c->n;
		if (!n) {
			*pp = c->next;
			free(c);
		}
	}
	pthread_mutex_unlock(&e->cmu);
	return n;
}

void eng_route_conns(struct engine *e, uint64_t h, unsigned worker, int delta)
{
	_Atomic unsigned *u = slot(e, e->conns, h, worker);

	if (delta > 0)
		atomic_fetch_add_explicit(u, 1, memory_order_relaxed);
	else
		atomic_fetch_sub_explicit(u, 1, memory_order_relaxed);
	count_step(e, h, delta);
}

unsigned eng_route_connections(struct engine *e, const struct eng_route *r)
{
	return count_step(e, eng_route_hash(r), 0);
}

bool eng_send_elsewhere(struct engine *e, struct eng_msg *m, unsigned from)
{
	unsigned n = (unsigned)e->n, home = (unsigned)(m->hash_ % n);
	unsigned cap = m->route->max_connections, k = cap < n ? cap : n;
	_Atomic unsigned *u = slot(e, e->conns, m->hash_, 0);

	if (m->moved_ || m->first_ != 0 || m->pending_ != m->nrcpt)
		return false;
	for (unsigned j = 0; j < k; j++) {
		unsigned i = (home + j) % n;
		if (i == from || atomic_load_explicit(&u[i], memory_order_relaxed) == 0)
			continue;
		atomic_fetch_sub_explicit(m->load_, 1, memory_order_relaxed);
		m->load_ = load_of(e, m->hash_, i);
		atomic_fetch_add_explicit(m->load_, 1, memory_order_relaxed);
		m->moved_ = true;
		eng_worker_submit(e->w[i], m);
		return true;
	}
	return false;
}

/* A route stays on its home worker while that has fewer than two
 * messages per connection of its share; beyond that each message goes to
 * the least loaded of the route's workers. A busy host (a smarthost, a
 * large mailbox provider) so uses every core, and a quiet one keeps its
 * connections on one worker, where they are reused. */
static int spread(struct engine *e, uint64_t h, unsigned cap)
{
	unsigned n = (unsigned)e->n, home = (unsigned)(h % n), k = cap < n ? cap : n;
	_Atomic unsigned *l = load_of(e, h, 0);
	unsigned best = home, least = atomic_load_explicit(&l[home], memory_order_relaxed);

	if (k <= 1 || least < 2 * eng_share(h, cap, home, n))
		return (int)home;
	for (unsigned j = 1; j < k; j++) {
		unsigned i = (home + j) % n;
		unsigned q = atomic_load_explicit(&l[i], memory_order_relaxed);
		if (q < least)
			best = i, least = q;
	}
	return (int)best;
}

/* A message goes to the worker spread() picks. One with a prepare step
 * (DKIM signing: CPU-bound) is prepared first where prep_worker says, so
 * every core signs, then handed to that worker. */
void eng_submit(struct engine *e, struct eng_msg *m)
{
	m->hash_ = eng_route_hash(m->route);
	int o = spread(e, m->hash_, m->route->max_connections);
	struct eng_worker *owner = e->w[o];

	m->load_ = load_of(e, m->hash_, (unsigned)o);
	m->moved_ = false;
	atomic_fetch_add_explicit(m->load_, 1, memory_order_relaxed);
	m->owner_ = NULL;
	m->prep_ = NULL;
	if (m->prepare && e->n > 1) {
		int i = prep_worker(e, o);
		m->owner_ = owner;
		m->prep_ = &e->prep[i];
		atomic_fetch_add_explicit(m->prep_, 1, memory_order_relaxed);
		eng_worker_submit(e->w[i], m);
		return;
	}
	eng_worker_submit(owner, m);
}

static void resolve(struct engine *e, const struct eng_dns_ask *ask, const char *name, void *arg)
{
	uint64_t h = vl_hash_lower(VL_HASH_INIT, name, strlen(name));

	eng_worker_resolve(e->w[h % (uint64_t)e->n], ask, name, arg);
}

void eng_resolve_mx(struct engine *e, const char *domain, eng_mx_fn fn, void *arg)
{
	resolve(e, &(struct eng_dns_ask){ .mx = fn }, domain, arg);
}

void eng_resolve_host(struct engine *e, const char *name, bool any_address, eng_mx_fn fn,
		      void *arg)
{
	resolve(e, &(struct eng_dns_ask){ .mx = fn, .host = true, .any_address = any_address },
		name, arg);
}

void eng_resolve_txt(struct engine *e, const char *name, eng_txt_fn fn, void *arg)
{
	resolve(e, &(struct eng_dns_ask){ .txt = fn }, name, arg);
}

void eng_resolve_tlsa(struct engine *e, const char *host, unsigned port, eng_tlsa_fn fn,
		      void *arg)
{
	resolve(e, &(struct eng_dns_ask){ .tlsa = fn, .port = port }, host, arg);
}

void eng_dns_stats(struct engine *e, struct dns_stats *s)
{
	memset(s, 0, sizeof *s);
	for (int i = 0; i < e->n; i++) {
		struct dns_stats one;
		eng_worker_dns_stats(e->w[i], &one);
		s->queries += one.queries;
		s->answers += one.answers;
		s->timeouts += one.timeouts;
		s->failures += one.failures;
		s->cache_hits += one.cache_hits;
		s->coalesced += one.coalesced;
		s->cache_entries += one.cache_entries;
		s->mx_requests += one.mx_requests;
		s->in_flight += one.in_flight;
	}
}

void eng_stop(struct engine *e, uint64_t grace_ms)
{
	if (e->stopped)
		return;
	e->stopped = true;
	for (int i = 0; i < e->n; i++)
		eng_worker_stop(e->w[i], grace_ms);
	for (int i = 0; i < e->n; i++)
		pthread_join(e->tid[i], NULL);
	for (int i = 0; i < e->n; i++)
		eng_worker_drain(e->w[i]);
}

size_t eng_open_connections(struct engine *e)
{
	size_t n = 0;

	for (int i = 0; i < e->n; i++)
		n += eng_worker_conns(e->w[i]);
	return n;
}

unsigned eng_workers(const struct engine *e)
{
	return (unsigned)e->n;
}

size_t eng_worker_connections(struct engine *e, unsigned worker)
{
	return worker < (unsigned)e->n ? eng_worker_conns(e->w[worker]) : 0;
}

void eng_free(struct engine *e)
{
	if (!e)
		return;
	eng_stop(e, 0);
	for (int i = 0; i < e->n; i++)
		eng_worker_free(e->w[i]);
	free(e->w);
	free(e->tid);
	free(e->prep);
	free(e->load);
	free(e->conns);
	for (size_t i = 0; i < COUNT_BUCKETS; i++)
		while (e->counts[i]) {
			struct route_count *n = e->counts[i]->next;
			free(e->counts[i]);
			e->counts[i] = n;
		}
	pthread_mutex_destroy(&e->cmu);
	free(e);
}
