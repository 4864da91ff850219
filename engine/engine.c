/* The engine: workers on threads; messages go to the worker that owns
 * their route's pool (by hash), so a pool lives on one thread only. */
#include "engine_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct engine {
	struct eng_config cfg;
	int n;
	struct eng_worker **w;
	pthread_t *tid;
	bool stopped;
	_Atomic unsigned rr;             /* breaks ties between the workers */
	_Atomic int *prep;               /* [n]: messages waiting to be prepared */
};

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
	e->w = vl_calloc((size_t)e->n, sizeof *e->w);
	e->tid = vl_calloc((size_t)e->n, sizeof *e->tid);
	e->prep = vl_calloc((size_t)e->n, sizeof *e->prep);
	for (int i = 0; i < e->n; i++) {
		e->w[i] = eng_worker_new(&e->cfg, (unsigned)i, err, errlen);
		if (!e->w[i]) {
			for (int j = 0; j < i; j++)
				eng_worker_free(e->w[j]);
			free(e->w);
			free(e->tid);
			free(e->prep);
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

/* A message goes to the worker that owns its route's pool. One with a
 * prepare step (DKIM signing: CPU-bound) is prepared first where
 * prep_worker says, so every core signs, then handed to its owner. */
void eng_submit(struct engine *e, struct eng_msg *m)
{
	int o = (int)(eng_route_hash(m->route) % (uint64_t)e->n);
	struct eng_worker *owner = e->w[o];

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
	free(e);
}
