/*
 * The last hour of results, a second at a time (GET /v1/stats/history):
 * a ring of SCHED_HIST_SECONDS slots the delivery thread alone writes and
 * API threads read without a lock. A reader may catch a slot while it is
 * reset for a new second; it then reads a count short, which a chart
 * forgives (the totals in /v1/stats stay exact).
 */
#include "sched_int.h"

#include <time.h>

void sched_hist_add(struct sched_hist *h, int64_t sec, enum sched_hist_kind k)
{
	struct sched_hist_slot *s = &h->s[(uint64_t)sec % SCHED_HIST_SECONDS];

	if (atomic_load_explicit(&s->sec, memory_order_relaxed) != sec) {
		for (int i = 0; i < SCHED_HIST_KINDS; i++)
			atomic_store_explicit(&s->n[i], 0, memory_order_relaxed);
		atomic_store_explicit(&s->sec, sec, memory_order_release);
	}
	atomic_fetch_add_explicit(&s->n[k], 1, memory_order_relaxed);
}

void sched_hist_read(const struct sched_hist *h, int64_t now, unsigned secs,
		     uint32_t (*out)[SCHED_HIST_KINDS])
{
	for (unsigned i = 0; i < secs; i++) {
		int64_t sec = now - (int64_t)secs + 1 + i;
		const struct sched_hist_slot *s = &h->s[(uint64_t)sec % SCHED_HIST_SECONDS];
		bool mine = sec >= 0 &&
			    atomic_load_explicit(&s->sec, memory_order_acquire) == sec;
		for (int k = 0; k < SCHED_HIST_KINDS; k++)
			out[i][k] = mine ? atomic_load_explicit(&s->n[k], memory_order_relaxed) : 0;
	}
}

int64_t sched_hist_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec;
}

json_t *sched_hist_json(const struct sched_hist *h, int64_t now, unsigned secs)
{
	static const char *const names[] = { "delivered", "deferred", "bounced" };
	uint32_t (*v)[SCHED_HIST_KINDS];

	if (secs > SCHED_HIST_SECONDS)
		secs = SCHED_HIST_SECONDS;
	json_t *r = json_pack("{s:I, s:I}", "end", (json_int_t)now, "seconds", (json_int_t)secs);
	v = vl_calloc(secs ? secs : 1, sizeof *v);
	if (h)
		sched_hist_read(h, now, secs, v);
	for (int k = 0; k < SCHED_HIST_KINDS; k++) {
		json_t *a = json_array();
		for (unsigned i = 0; i < secs; i++)
			json_array_append_new(a, json_integer(v[i][k]));
		json_object_set_new(r, names[k], a);
	}
	free(v);
	return r;
}
