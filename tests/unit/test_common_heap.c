/* common: the timer heap, against a brute-force reference. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../common/common.h"

#define N 500

Test(vl_heap, ordered_under_random_set_and_delete)
{
	static struct vl_heap_node t[N];
	struct vl_heap h = {0};
	uint64_t seed = 12345;
	bool in[N] = {false};

	for (int i = 0; i < N; i++)
		t[i].idx = SIZE_MAX;
	for (int step = 0; step < 20000; step++) {
		int i = (int)(vl_rand(&seed) % N);
		if (vl_rand(&seed) % 4 == 0) {
			vl_heap_del(&h, &t[i]);
			in[i] = false;
		} else {
			vl_heap_set(&h, &t[i], vl_rand(&seed) % 100000);
			in[i] = true;
		}
		/* The top is the smallest due among those in the heap. */
		uint64_t min = UINT64_MAX;
		size_t count = 0;
		for (int j = 0; j < N; j++)
			if (in[j]) {
				count++;
				if (t[j].key < min)
					min = t[j].key;
			}
		cr_assert_eq(h.n, count);
		if (count)
			cr_assert_eq(vl_heap_top(&h)->key, min, "step %d", step);
		else
			cr_assert_null(vl_heap_top(&h));
	}
	/* Popping everything comes out sorted. */
	uint64_t last = 0;
	struct vl_heap_node *top;
	while ((top = vl_heap_top(&h))) {
		cr_assert_geq(top->key, last);
		last = top->key;
		vl_heap_del(&h, top);
		cr_assert_eq(top->idx, SIZE_MAX);
	}
	vl_heap_del(&h, &t[0]); /* deleting what is not there is harmless */
	vl_heap_free(&h);
}
