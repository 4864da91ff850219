/*
 * Pace and time rules of the delivery thread (shape.h): token buckets,
 * adaptive back-off, retry delays. site.c and deliver.c call these; the
 * unit tests too.
 */
#include "shape.h"

#include <math.h>

#include "../common/common.h"

/* ---- token bucket ---- */

static double burst_of(double rate)
{
	return rate < 1 ? 1 : rate;
}

void sched_bucket_init(struct sched_bucket *b, double rate)
{
	*b = (struct sched_bucket){ .rate = rate, .burst = burst_of(rate) };
	b->tokens = b->burst;
}

/* at_ms never moves back: a suspension sets it in the future, and
 * nothing accrues before then. */
void sched_bucket_refill(struct sched_bucket *b, uint64_t now_ms)
{
	if (b->rate <= 0)
		return;
	if (now_ms > b->at_ms) {
		b->tokens += (double)(now_ms - b->at_ms) * b->rate / 1000.0;
		b->at_ms = now_ms;
	}
	if (b->tokens > b->burst)
		b->tokens = b->burst;
}

uint64_t sched_bucket_wait(struct sched_bucket *b, uint64_t now_ms)
{
	sched_bucket_refill(b, now_ms);
	if (b->rate <= 0 || b->tokens >= 1)
		return 0;
	return (uint64_t)ceil((1 - b->tokens) * 1000.0 / b->rate);
}

void sched_bucket_take(struct sched_bucket *b)
{
	if (b->rate > 0)
		b->tokens -= 1;
}

/* ---- adaptive back-off ---- */

uint64_t sched_backoff_slow_down(struct sched_backoff *bo, struct sched_bucket *b,
				 unsigned window, uint64_t now_ms)
{
	double cur = b->rate > 0 ? b->rate : bo->seen > 0 ? bo->seen : (double)window;

	if (now_ms < bo->hold_ms)
		return 0;
	if (bo->steps >= SCHED_BACKOFF_CALM_STEPS || !bo->active)
		bo->level = 0;
	uint64_t ms = (uint64_t)SCHED_BACKOFF_FIRST_MS << (bo->level < 11 ? bo->level : 11);
	if (ms > SCHED_BACKOFF_MAX_MS)
		ms = SCHED_BACKOFF_MAX_MS;
	bo->level++;
	bo->ok_streak = bo->steps = 0;
	bo->active = true;
	bo->ceiling = cur;
	cur *= SCHED_BACKOFF_DECREASE;
	b->rate = cur < SCHED_BACKOFF_MIN_RATE ? SCHED_BACKOFF_MIN_RATE : cur;
	b->burst = burst_of(b->rate);
	b->tokens = 0;
	b->at_ms = now_ms + ms;       /* nothing accrues while suspended */
	bo->until_ms = now_ms + ms;
	bo->hold_ms = now_ms + ms + SCHED_BACKOFF_HOLD_MS;
	return ms;
}

/* Deliveries a second, over windows of a second. */
static void seen(struct sched_backoff *bo, uint64_t now_ms)
{
	bo->seen_n++;
	if (!bo->seen_at) {
		bo->seen_at = now_ms;
	} else if (now_ms - bo->seen_at >= 1000) {
		bo->seen = (double)bo->seen_n * 1000.0 / (double)(now_ms - bo->seen_at);
		bo->seen_at = now_ms;
		bo->seen_n = 0;
	}
}

bool sched_backoff_ok(struct sched_backoff *bo, struct sched_bucket *b, double rate,
		      unsigned window, uint64_t now_ms)
{
	seen(bo, now_ms);
	unsigned every = b->rate > SCHED_BACKOFF_RECOVER_MIN ? (unsigned)b->rate :
			 SCHED_BACKOFF_RECOVER_MIN;
	if (!bo->active || ++bo->ok_streak < every)
		return false;
	bo->ok_streak = 0;
	bo->steps++;
	b->rate *= b->rate < bo->ceiling * 0.95 ? SCHED_BACKOFF_FAST :
		   b->rate < bo->ceiling ? SCHED_BACKOFF_NEAR : SCHED_BACKOFF_PROBE;
	b->burst = burst_of(b->rate);
	if ((rate > 0 && b->rate < rate) || (rate <= 0 && b->rate < (double)window * 10))
		return false;
	b->rate = rate;
	b->burst = burst_of(rate);
	bo->active = false;
	bo->level = 0;
	return true;
}

/* ---- retries ---- */

uint64_t sched_retry_delay(const uint64_t *retry_ms, size_t nretry, unsigned attempts,
			   uint64_t *seed)
{
	size_t i = attempts ? attempts - 1 : 0;
	uint64_t base = retry_ms[i < nretry ? i : nretry - 1];
	/* 53 random bits: a uniform double in [0, 1) */
	double j = 0.9 + 0.2 * (double)(vl_rand(seed) >> 11) / 9007199254740992.0;

	return (uint64_t)((double)base * j);
}

bool sched_retry_wait(uint64_t delay_ms, double now_s, double expires_s, uint64_t *wait_ms)
{
	if (now_s >= expires_s)
		return false;
	uint64_t left = (uint64_t)((expires_s - now_s) * 1000);

	*wait_ms = delay_ms < left ? delay_ms : left;
	return true;
}

size_t sched_swrr_pick(int *cur, const unsigned *weight, const bool *skip, size_t n)
{
	bool all = true;
	size_t best = 0;
	long total = 0;

	for (size_t i = 0; skip && i < n && all; i++)
		all = skip[i];
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		if (skip && skip[i] && !all)
			continue;
		cur[i] += (int)weight[i];
		total += weight[i];
		if (!any || cur[i] > cur[best])
			best = i;
		any = true;
	}
	cur[best] -= (int)total;
	return best;
}
