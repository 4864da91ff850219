/*
 * scheduler/shape: the delivery thread's rules of pace and time, as pure
 * functions over small structs (no threads, no clocks of their own: the
 * caller passes the time), so unit tests call the very code the thread
 * runs. Token buckets (a site's rate, a job's rate_limit), a site's
 * adaptive back-off on "slow down" replies, the delay before a deferred
 * recipient's retry and its cut at the job's expiry. Internal to
 * scheduler/ (deliver_int.h includes it). Prefix: sched_.
 */
#ifndef VOLLEY_SCHED_SHAPE_H
#define VOLLEY_SCHED_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- token bucket ----
 * rate tokens a second, at most burst of them (one second's worth, at
 * least 1); rate 0 = unlimited. Times are milliseconds on one clock. */
struct sched_bucket {
	double rate, tokens, burst;
	uint64_t at_ms;                  /* tokens counted up to then */
};
/* Full, at rate (0: unlimited). */
void sched_bucket_init(struct sched_bucket *b, double rate);
/* Add what accrued since at_ms, up to burst (nothing before at_ms). */
void sched_bucket_refill(struct sched_bucket *b, uint64_t now_ms);
/* Refills, then the ms until a token is there (0: one is). */
uint64_t sched_bucket_wait(struct sched_bucket *b, uint64_t now_ms);
/* Spend one token (nothing when unlimited). */
void sched_bucket_take(struct sched_bucket *b);

/* ---- adaptive back-off ----
 * Additive increase, multiplicative decrease, as TCP finds a path's rate:
 * a "slow down" reply cuts the site's rate to SCHED_BACKOFF_DECREASE of
 * what it was (its bucket's rate, or for an unlimited site the rate it was
 * seen delivering, else `window` a second), not below
 * SCHED_BACKOFF_MIN_RATE, remembers that rate as the ceiling, and pauses
 * the site: SCHED_BACKOFF_FIRST_MS, doubled for each further episode that
 * comes before SCHED_BACKOFF_CALM_STEPS increases (up to
 * SCHED_BACKOFF_MAX_MS). Replies to messages sent before the cut (within
 * the pause and SCHED_BACKOFF_HOLD_MS after it) are the same episode.
 * Then each second's worth of deliveries (at least
 * SCHED_BACKOFF_RECOVER_MIN) raises the rate: by SCHED_BACKOFF_FAST well
 * below the ceiling, by SCHED_BACKOFF_NEAR within its last 5 %, by
 * SCHED_BACKOFF_PROBE past it; back at the configured rate (or, with none,
 * past 10 x window: unlimited again) the back-off ends. */
#define SCHED_BACKOFF_FIRST_MS 1000u
#define SCHED_BACKOFF_MAX_MS 1800000u
#define SCHED_BACKOFF_HOLD_MS 1000u
#define SCHED_BACKOFF_DECREASE 0.85
#define SCHED_BACKOFF_CALM_STEPS 3u
#define SCHED_BACKOFF_RECOVER_MIN 5u
#define SCHED_BACKOFF_FAST 1.05
#define SCHED_BACKOFF_NEAR 1.005
#define SCHED_BACKOFF_PROBE 1.02
#define SCHED_BACKOFF_MIN_RATE 0.2       /* per second */
struct sched_backoff {
	uint64_t until_ms;               /* suspended until then */
	uint64_t hold_ms;                /* one episode until then */
	unsigned level;                  /* episodes since the site was calm */
	unsigned ok_streak;              /* deliveries since the last step */
	unsigned steps;                  /* increases since the last episode */
	bool active;                     /* below the configured rate */
	double ceiling;                  /* the rate the last episode began at */
	/* deliveries a second, measured over windows of a second */
	double seen;
	uint64_t seen_at;
	unsigned seen_n;
};
/* A "slow down" reply at now_ms for a site with bucket b and window
 * messages in the engine at most. The pause in ms, or 0 when it is the
 * episode under way (nothing changes). The bucket is empty until the
 * pause ends. */
uint64_t sched_backoff_slow_down(struct sched_backoff *bo, struct sched_bucket *b,
				 unsigned window, uint64_t now_ms);
/* A delivery at now_ms. True when it ended the back-off: the bucket is at
 * the configured rate again (rate, 0 = unlimited). */
bool sched_backoff_ok(struct sched_backoff *bo, struct sched_bucket *b, double rate,
		      unsigned window, uint64_t now_ms);
/* Whether the site may send at now_ms. */
static inline bool sched_backoff_suspended(const struct sched_backoff *bo, uint64_t now_ms)
{
	return bo->until_ms > now_ms;
}

/* ---- retries ----
 * The delay before the retry that follows attempt `attempts` (1: after
 * the first attempt): retry_ms[attempts - 1], the last entry repeating
 * once the list is used up (attempts 0 counts as 1), times a jitter drawn
 * from *seed in [0.9, 1.1), so the retries of one burst do not come back
 * together. nretry >= 1. */
uint64_t sched_retry_delay(const uint64_t *retry_ms, size_t nretry, unsigned attempts,
			   uint64_t *seed);
/* A recipient deferred at now_s (wall clock, seconds) in a job expiring
 * at expires_s: false when the job has expired (now_s >= expires_s: the
 * recipient expires instead of waiting); else true and *wait_ms is
 * delay_ms, cut to what is left of the job's life. */
bool sched_retry_wait(uint64_t delay_ms, double now_s, double expires_s, uint64_t *wait_ms);

/* ---- weighted choice of an egress source ----
 * Smooth weighted round-robin (as nginx's upstreams): each eligible entry
 * gains its weight, the largest current value wins and loses the total,
 * so weights 3:1 give a b a a | a b a a ... evenly spread. Entries with
 * skip[i] set (a source suspended by back-off) neither gain nor win,
 * unless every entry is skipped: then all take part. skip may be NULL.
 * cur[n] is the state, zeroed at first. Returns the index; n >= 1. */
size_t sched_swrr_pick(int *cur, const unsigned *weight, const bool *skip, size_t n);

#endif
