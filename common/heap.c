/* A binary min-heap of intrusive nodes with back-indices: set, move and
 * delete in O(log n), so ten thousand sessions each re-arming per reply
 * stay cheap. */
#include "common.h"

static void place(struct vl_heap *h, size_t i, struct vl_heap_node *t)
{
	h->v[i] = t;
	t->idx = i;
}

static void up(struct vl_heap *h, size_t i)
{
	struct vl_heap_node *t = h->v[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h->v[p]->key <= t->key)
			break;
		place(h, i, h->v[p]);
		i = p;
	}
	place(h, i, t);
}

static void down(struct vl_heap *h, size_t i)
{
	struct vl_heap_node *t = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->key < h->v[c]->key)
			c++;
		if (t->key <= h->v[c]->key)
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, t);
}

static bool in_heap(const struct vl_heap *h, const struct vl_heap_node *t)
{
	return t->idx != SIZE_MAX && t->idx < h->n && h->v[t->idx] == t;
}

void vl_heap_set(struct vl_heap *h, struct vl_heap_node *t, uint64_t key)
{
	if (in_heap(h, t)) {
		uint64_t old = t->key;
		t->key = key;
		if (key < old)
			up(h, t->idx);
		else
			down(h, t->idx);
		return;
	}
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = vl_realloc(h->v, h->cap * sizeof *h->v);
	}
	t->key = key;
	place(h, h->n++, t);
	up(h, h->n - 1);
}

void vl_heap_del(struct vl_heap *h, struct vl_heap_node *t)
{
	if (!in_heap(h, t))
		return;
	size_t i = t->idx;
	t->idx = SIZE_MAX;
	struct vl_heap_node *last = h->v[--h->n];
	if (i == h->n)
		return;
	place(h, i, last);
	up(h, i);
	down(h, last->idx);
}

void vl_heap_free(struct vl_heap *h)
{
	free(h->v);
	*h = (struct vl_heap){ 0 };
}
