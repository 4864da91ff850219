/*
 * The name/type cache: a chained hash table of entries, pending ones (a
 * query in flight, its waiters queued) and done ones (an answer and its
 * expiry) on an LRU list, so the table stays within its bound. Entries a
 * callback is reading are pinned: eviction and expiry never free them.
 */
#include "dns_int.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_CAP 1024

static uint64_t hash_of(const char *name, uint16_t qtype)
{
	return vl_hash(name, strlen(name)) ^ qtype;
}

void dns_cache_init(struct dns_cache *c, size_t max)
{
	memset(c, 0, sizeof *c);
	c->cap = INITIAL_CAP;
	c->max = max ? max : 1;
	c->lru.next = c->lru.prev = &c->lru;
	c->tab = vl_calloc(c->cap, sizeof *c->tab);
}

static void free_entry(struct dns_entry *e)
{
	for (struct dns_waiter *w = e->waiters, *next; w; w = next) {
		next = w->next;
		free(w);
	}
	dns_ans_free(&e->ans);
	free(e->chase);
	free(e);
}

void dns_cache_free(struct dns_cache *c)
{
	for (size_t i = 0; i < c->cap && c->tab; i++)
		for (struct dns_entry *e = c->tab[i], *next; e; e = next) {
			next = e->hnext;
			free_entry(e);
		}
	free(c->tab);
	memset(c, 0, sizeof *c);
}

struct dns_entry *dns_cache_find(struct dns_cache *c, const char *name,
				 uint16_t qtype)
{
	uint64_t h = hash_of(name, qtype);

	for (struct dns_entry *e = c->tab[h & (c->cap - 1)]; e; e = e->hnext)
		if (e->hash == h && e->qtype == qtype && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void lru_unlink(struct dns_entry *e)
{
	struct dns_link *l = &e->lru;

	if (!l->prev)
		return;
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = NULL;
}

static void lru_push(struct dns_cache *c, struct dns_entry *e)
{
	struct dns_link *l = &e->lru;

	l->next = c->lru.next;
	l->prev = &c->lru;
	c->lru.next->prev = l;
	c->lru.next = l;
}

/* The entry a link belongs to: the link is its first member. */
static struct dns_entry *entry_of(struct dns_link *l) { return (struct dns_entry *)l; }

static void grow(struct dns_cache *c)
{
	size_t cap = c->cap * 2;
	struct dns_entry **tab = vl_calloc(cap, sizeof *tab);

	for (size_t i = 0; i < c->cap; i++)
		for (struct dns_entry *e = c->tab[i], *next; e; e = next) {
			next = e->hnext;
			e->hnext = tab[e->hash & (cap - 1)];
			tab[e->hash & (cap - 1)] = e;
		}
	free(c->tab);
	c->tab = tab;
	c->cap = cap;
}

void dns_cache_remove(struct dns_cache *c, struct dns_entry *e)
{
	if (e->linked) {
		struct dns_entry **pp = &c->tab[e->hash & (c->cap - 1)];
		while (*pp != e)
			pp = &(*pp)->hnext;
		*pp = e->hnext;
		e->linked = false;
		c->n--;
	}
	lru_unlink(e);
	if (!e->pins)
		free_entry(e);
}

void dns_entry_unpin(struct dns_entry *e)
{
	if (--e->pins == 0 && !e->linked)
		free_entry(e);
}

/* Drop the least recently used done entries to make room for one. */
static void evict(struct dns_cache *c)
{
	struct dns_link *l = c->lru.prev;

	while (c->n >= c->max && l != &c->lru) {
		struct dns_link *prev = l->prev;
		struct dns_entry *e = entry_of(l);
		if (!e->pins) {
			dns_cache_remove(c, e);
			c->evicted++;
		}
		l = prev;
	}
}

struct dns_entry *dns_cache_add(struct dns_cache *c, const char *name,
				uint16_t qtype)
{
	size_t len = strlen(name);
	struct dns_entry *e = vl_calloc(1, sizeof *e + len + 1);

	memcpy(e->name, name, len + 1);
	e->hash = hash_of(name, qtype);
	e->qtype = qtype;
	e->pending = true;
	e->wtail = &e->waiters;
	if (c->n >= c->max)
		evict(c);
	if (c->n >= c->cap - c->cap / 4)
		grow(c);
	e->hnext = c->tab[e->hash & (c->cap - 1)];
	c->tab[e->hash & (c->cap - 1)] = e;
	e->linked = true;
	c->n++;
	return e;
}

void dns_cache_done(struct dns_cache *c, struct dns_entry *e, uint64_t expires_ms)
{
	e->pending = false;
	e->expires_ms = expires_ms;
	lru_push(c, e);
}

void dns_cache_touch(struct dns_cache *c, struct dns_entry *e)
{
	if (c->lru.next == &e->lru || !e->lru.prev)
		return;
	lru_unlink(e);
	lru_push(c, e);
}

static uint32_t clamp(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

uint32_t dns_keep_ttl(const struct dns_ans *a, const struct dns_config *c)
{
	switch (a->status) {
	case DNS_OK:
		return clamp(a->ttl, c->min_ttl, c->max_ttl);
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		return a->ttl < c->neg_ttl_max ? a->ttl : c->neg_ttl_max;
	case DNS_SHUTDOWN:
		return 0;
	default:                     /* RFC 2308 7: at most 5 minutes */
		return c->fail_ttl < 300 ? c->fail_ttl : 300;
	}
}
