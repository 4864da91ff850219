/*
 * The failed-login limiter: failures per client address, and the delay
 * the answer to the next one must wait. The table is a plain array
 * searched from end to end: at most max_addrs (4096) entries of 32 octets,
 * a few microseconds, where each AUTH it guards costs a crypt_r of tens
 * of milliseconds; and no hash function a peer could flood a bucket of.
 */
#include "submit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

struct addr {
	uint8_t fam;                  /* 4 or 6; 0: a free slot */
	uint8_t a[8];                 /* IPv4: 4 octets; IPv6: the /64 */
};

struct slot {
	struct addr k;
	uint32_t count;               /* failures, halved per quiet period */
	uint64_t last;                /* the last failure's time */
};

struct sub_authlimit {
	struct sub_authlimit_opts o;
	pthread_mutex_t mu;
	struct slot *v;
	size_t n;                     /* slots in use, at most o.max_addrs */
	struct sub_authlimit_stats st;
};

void sub_authlimit_defaults(struct sub_authlimit_opts *o)
{
	o->max_addrs = 4096;
	o->free_failures = 3;
	o->first_delay_ms = 1000;
	o->max_delay_ms = 30000;
	o->quiet_ms = 300000;
}

struct sub_authlimit *sub_authlimit_new(const struct sub_authlimit_opts *o)
{
	struct sub_authlimit *l = vl_calloc(1, sizeof *l);

	if (o)
		l->o = *o;
	else
		sub_authlimit_defaults(&l->o);
	if (!l->o.max_addrs)
		l->o.max_addrs = 1;
	if (!l->o.quiet_ms)
		l->o.quiet_ms = 1;
	l->v = vl_calloc(l->o.max_addrs, sizeof *l->v);
	pthread_mutex_init(&l->mu, NULL);
	return l;
}

void sub_authlimit_free(struct sub_authlimit *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->mu);
	free(l->v);
	free(l);
}

/* The address's key: IPv4 /32, IPv6 /64, IPv4-mapped as IPv4. -1: none. */
static int key_of(const struct sockaddr *sa, struct addr *k)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(k, 0, sizeof *k);
	if (sa && sa->sa_family == AF_INET) {
		k->fam = 4;
		memcpy(k->a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa && sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a, mapped, sizeof mapped) == 0) {
			k->fam = 4;
			memcpy(k->a, a + 12, 4);
		} else {
			k->fam = 6;
			memcpy(k->a, a, 8);
		}
		return 0;
	}
	return -1;
}

/* The slot's count at now: halved for every quiet period since its last
 * failure. */
static uint32_t decayed(const struct sub_authlimit *l, const struct slot *s, uint64_t now)
{
	uint64_t periods = now > s->last ? (now - s->last) / l->o.quiet_ms : 0;

	return periods >= 32 ? 0 : s->count >> periods;
}

static uint32_t delay_for(const struct sub_authlimit *l, uint64_t count)
{
	if (count <= l->o.free_failures)
		return 0;
	uint64_t steps = count - l->o.free_failures - 1;
	uint64_t d = steps >= 32 ? UINT64_MAX : (uint64_t)l->o.first_delay_ms << steps;
	return d > l->o.max_delay_ms ? l->o.max_delay_ms : (uint32_t)d;
}

static struct slot *find(struct sub_authlimit *l, const struct addr *k)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].k.fam == k->fam && memcmp(l->v[i].k.a, k->a, sizeof k->a) == 0)
			return &l->v[i];
	return NULL;
}

/* A slot for a new address: a free one, one decayed to nothing, else
 * the one whose last failure is oldest. */
static struct slot *take(struct sub_authlimit *l, const struct addr *k, uint64_t now)
{
	struct slot *s = NULL;

	if (l->n < l->o.max_addrs)
		s = &l->v[l->n++];
	for (size_t i = 0; !s && i < l->n; i++)
		if (!decayed(l, &l->v[i], now))
			s = &l->v[i];
	if (!s) {
		s = &l->v[0];
		for (size_t i = 1; i < l->n; i++)
			if (l->v[i].last < s->last)
				s = &l->v[i];
	}
	s->k = *k;
	s->count = 0;
	s->last = now;
	return s;
}

uint32_t sub_authlimit_fail(struct sub_authlimit *l, const struct sockaddr *sa, uint64_t now)
{
	struct addr k;
	uint32_t d;

	if (key_of(sa, &k) < 0)
		return 0;
	pthread_mutex_lock(&l->mu);
	struct slot *s = find(l, &k);
	if (!s)
		s = take(l, &k, now);
	s->count = decayed(l, s, now);
	if (s->count < UINT32_MAX)
		s->count++;
	s->last = now > s->last ? now : s->last;
	d = delay_for(l, s->count);
	l->st.failures++;
	l->st.delayed += d > 0;
	pthread_mutex_unlock(&l->mu);
	return d;
}

uint32_t sub_authlimit_delay(struct sub_authlimit *l, const struct sockaddr *sa, uint64_t now)
{
	struct addr k;
	uint32_t d;

	if (key_of(sa, &k) < 0)
		return 0;
	pthread_mutex_lock(&l->mu);
	const struct slot *s = find(l, &k);
	d = delay_for(l, (s ? (uint64_t)decayed(l, s, now) : 0) + 1);
	pthread_mutex_unlock(&l->mu);
	return d;
}

void sub_authlimit_stats(struct sub_authlimit *l, struct sub_authlimit_stats *out)
{
	pthread_mutex_lock(&l->mu);
	*out = l->st;
	out->tracked = l->n;
	pthread_mutex_unlock(&l->mu);
}
