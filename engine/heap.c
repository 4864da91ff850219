/* A binary min-heap of timers with back-indices: set, move and delete in
 * O(log n), so ten thousand sessions each re-arming per reply stay cheap. */
#include "engine_int.h"

#include <stdint.h>
#include <stdlib.h>

static void place(struct eng_heap *h, size_t i, struct eng_timer *t)
{
	h->v[i] = t;
	t->idx = i;
}

static void up(struct eng_heap *h, size_t i)
{
	struct eng_timer *t = h->v[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h->v[p]->due <= t->due)
			break;
		place(h, i, h->v[p]);
		i = p;
	}
	place(h, i, t);
}

static void down(struct eng_heap *h, size_t i)
{
	struct eng_timer *t = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->due < h->v[c]->due)
			c++;
		if (t->due <= h->v[c]->due)
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, t);
}

void eng_heap_set(struct eng_heap *h, struct eng_timer *t, uint64_t due)
{
	if (t->idx != SIZE_MAX && t->idx < h->n && h->v[t->idx] == t) {
		uint64_t old = t->due;
		t->due = due;
		if (due < old)
			up(h, t->idx);
		else
			down(h, t->idx);
		return;
	}
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = realloc(h->v, h->cap * sizeof *h->v);
		if (!h->v)
			abort();
	}
	t->due = due;
	place(h, h->n++, t);
	up(h, h->n - 1);
}

void eng_heap_del(struct eng_heap *h, struct eng_timer *t)
{
	size_t i = t->idx;

	if (i == SIZE_MAX || i >= h->n || h->v[i] != t)
		return;
	t->idx = SIZE_MAX;
	struct eng_timer *last = h->v[--h->n];
	if (i == h->n)
		return;
	place(h, i, last);
	up(h, i);
	down(h, last->idx);
}

struct eng_timer *eng_heap_top(const struct eng_heap *h)
{
	return h->n ? h->v[0] : NULL;
}

void eng_heap_free(struct eng_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
