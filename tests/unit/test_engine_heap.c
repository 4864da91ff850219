/* engine: the timer heap, against a brute-force reference. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../engine/engine_int.h"

#define N 500

Test(eng_heap, ordered_under_random_set_and_delete)
{
	static struct eng_timer t[N];
	struct eng_heap h = {0};
	uint64_t seed = 12345;
	bool in[N] = {false};

	for (int i = 0; i < N; i++)
		t[i].idx = SIZE_MAX;
	for (int step = 0; step < 20000; step++) {
		int i = (int)(vl_rand(&seed) % N);
		if (vl_rand(&seed) % 4 == 0) {
			eng_heap_del(&h, &t[i]);
			in[i] = false;
		} else {
			eng_heap_set(&h, &t[i], vl_rand(&seed) % 100000);
			in[i] = true;
		}
		/* The top is the smallest due among those in the heap. */
		uint64_t min = UINT64_MAX;
		size_t count = 0;
		for (int j = 0; j < N; j++)
			if (in[j]) {
				count++;
				if (t[j].due < min)
					min = t[j].due;
			}
		cr_assert_eq(h.n, count);
		if (count)
			cr_assert_eq(eng_heap_top(&h)->due, min, "step %d", step);
		else
			cr_assert_null(eng_heap_top(&h));
	}
	/* Popping everything comes out sorted. */
	uint64_t last = 0;
	struct eng_timer *top;
	while ((top = eng_heap_top(&h))) {
		cr_assert_geq(top->due, last);
		last = top->due;
		eng_heap_del(&h, top);
		cr_assert_eq(top->idx, SIZE_MAX);
	}
	eng_heap_del(&h, &t[0]); /* deleting what is not there is harmless */
	eng_heap_free(&h);
}
