/* engine: a pool's queue, urgent (transactional) messages ahead of bulk. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../engine/engine_int.h"

#define N 12

/* Push the messages named by spec: 'b' bulk, 'u' urgent, 'F'/'f' an urgent
 * or a bulk next transaction put first; then pop them all into out. */
static void run(const char *spec, char *out)
{
	static struct eng_msg m[N];
	struct eng_mq q = { 0 };
	size_t n = strlen(spec);

	memset(m, 0, sizeof m);
	for (size_t i = 0; i < n; i++) {
		m[i].urgent = spec[i] == 'u' || spec[i] == 'F';
		m[i].size_ = i;   /* its number, to see the order */
		eng_mq_push(&q, &m[i], spec[i] == 'F' || spec[i] == 'f');
	}
	cr_assert_eq(q.len, n);
	size_t k = 0;
	for (struct eng_msg *x; (x = eng_mq_pop(&q));)
		out[k++] = (char)('a' + x->size_);
	out[k] = '\0';
	cr_assert_eq(k, n);
	cr_assert_eq(q.len, 0);
	cr_assert_null(q.head);
	cr_assert_null(q.tail);
	cr_assert_null(q.urgent);
}

Test(engine_queue, fifo_without_urgent)
{
	char out[N + 1];
	run("bbbb", out);
	cr_assert_str_eq(out, "abcd");
}

Test(engine_queue, urgent_ahead_of_bulk_fifo_among_urgent)
{
	char out[N + 1];
	/* a b c bulk, d urgent, e bulk, f urgent: d f first, in their order */
	run("bbbubu", out);
	cr_assert_str_eq(out, "dfabce");
	run("ubub", out);
	cr_assert_str_eq(out, "acbd");
	run("uuu", out);
	cr_assert_str_eq(out, "abc");
}

Test(engine_queue, next_transaction_first)
{
	char out[N + 1];
	/* b, u (urgent), then a bulk next transaction first, then urgent:
	 * the new urgent one goes behind the urgent one waiting */
	run("bufu", out);
	cr_assert_str_eq(out, "cbda");
	run("bbF", out);
	cr_assert_str_eq(out, "cab");
	run("buFu", out);
	cr_assert_str_eq(out, "cbda");
}

Test(engine_queue, urgent_after_the_urgent_ones_drained)
{
	struct eng_msg a = { .urgent = true }, b = { 0 }, c = { .urgent = true };
	struct eng_mq q = { 0 };

	eng_mq_push(&q, &a, false);
	eng_mq_push(&q, &b, false);
	cr_assert_eq(eng_mq_pop(&q), &a);
	cr_assert_null(q.urgent, "the urgent one left");
	eng_mq_push(&q, &c, false);
	cr_assert_eq(eng_mq_pop(&q), &c, "ahead of the bulk one");
	cr_assert_eq(eng_mq_pop(&q), &b);
	cr_assert_null(eng_mq_pop(&q));
}

/* A route's connections shared out over min(workers, cap) workers from its
 * home (hash % workers) on: they add up to the cap, the larger shares
 * first; a worker outside the route's gets one (only after a reload). */
Test(engine_spread, shares_add_up_to_the_cap)
{
	for (unsigned n = 1; n <= 5; n++) {
		for (unsigned cap = 1; cap <= 13; cap++) {
			for (uint64_t h = 0; h < 7; h++) {
				unsigned sum = 0, k = cap < n ? cap : n, home = (unsigned)(h % n);
				for (unsigned j = 0; j < n; j++) {
					unsigned id = (home + j) % n, s = eng_share(h, cap, id, n);
					if (j < k)
						sum += s;
					else
						cr_assert_eq(s, 1);
					if (j > 0 && j < k)
						cr_assert_geq(eng_share(h, cap, (id + n - 1) % n, n), s);
				}
				cr_assert_eq(sum, cap, "n %u cap %u h %llu", n, cap,
					     (unsigned long long)h);
			}
		}
	}
	cr_assert_eq(eng_share(3, 200, 1, 2), 100);
	cr_assert_eq(eng_share(3, 5, 1, 2), 3);  /* home: 3 % 2 = 1 */
	cr_assert_eq(eng_share(3, 5, 0, 2), 2);
}
