/* scheduler/shape.c and site.c: a site's token bucket (refill at the rate,
 * burst cap, waits) and its adaptive back-off (AIMD: the rate cut to 0.85
 * down to its floor, a pause doubling while episodes come close, one step
 * per episode, recovery fast then slowly near the last ceiling, up to the
 * configured rate or to unlimited), then the same through
 * sched_site_result, the function the delivery thread calls. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../scheduler/deliver_int.h"

#define T0 1000000ull            /* any clock reading: the caller passes time */

/* ---- token bucket ---- */

Test(sched_bucket, starts_full_with_a_burst_of_one_second)
{
	struct sched_bucket b;

	sched_bucket_init(&b, 50);
	cr_assert_float_eq(b.burst, 50, 1e-9);
	cr_assert_float_eq(b.tokens, 50, 1e-9);
	sched_bucket_init(&b, 0.25);           /* slower than 1/s: a burst of one */
	cr_assert_float_eq(b.burst, 1, 1e-9);
	cr_assert_float_eq(b.tokens, 1, 1e-9);
}

Test(sched_bucket, burst_then_the_rate)
{
	struct sched_bucket b;
	int sent = 0;

	sched_bucket_init(&b, 10);
	b.at_ms = T0;
	while (!sched_bucket_wait(&b, T0)) {
		sched_bucket_take(&b);
		sent++;
	}
	cr_assert_eq(sent, 10, "the burst: one second's worth");
	cr_assert_eq(sched_bucket_wait(&b, T0), 100, "then one every 100 ms");
	cr_assert_eq(sched_bucket_wait(&b, T0 + 40), 60);
	uint64_t w = sched_bucket_wait(&b, T0 + 99);
	cr_assert(w >= 1 && w <= 2, "%llu (1 ms, give or take the rounding)",
		  (unsigned long long)w);
	cr_assert_eq(sched_bucket_wait(&b, T0 + 100), 0);
	sched_bucket_take(&b);
	cr_assert_float_eq(b.tokens, 0, 1e-9);
	sched_bucket_refill(&b, T0 + 150);
	cr_assert_float_eq(b.tokens, 0.5, 1e-9, "half a token in 50 ms");
}

Test(sched_bucket, refill_stops_at_the_burst)
{
	struct sched_bucket b;

	sched_bucket_init(&b, 20);
	b.tokens = 0;
	b.at_ms = T0;
	sched_bucket_refill(&b, T0 + 500);
	cr_assert_float_eq(b.tokens, 10, 1e-9);
	sched_bucket_refill(&b, T0 + 3600 * 1000);
	cr_assert_float_eq(b.tokens, 20, 1e-9, "an hour idle is still one burst");
	sched_bucket_refill(&b, T0 + 3600 * 1000);
	cr_assert_float_eq(b.tokens, 20, 1e-9);
}

Test(sched_bucket, paces_a_long_run_at_the_rate)
{
	struct sched_bucket b;
	uint64_t now = T0;
	unsigned sent = 0;

	sched_bucket_init(&b, 25);
	b.at_ms = T0;
	/* a dispatch loop that sleeps exactly as long as it is told */
	while (now < T0 + 60000) {
		uint64_t w = sched_bucket_wait(&b, now);
		if (w) {
			now += w;
			continue;
		}
		sched_bucket_take(&b);
		sent++;
	}
	/* 60 s at 25/s, plus the initial burst of 25 */
	cr_assert(sent >= 25 * 60 + 25 - 1 && sent <= 25 * 60 + 25 + 1, "%u sent", sent);
}

Test(sched_bucket, rate_zero_is_unlimited)
{
	struct sched_bucket b = { 0 };

	for (int i = 0; i < 100000; i++) {
		cr_assert_eq(sched_bucket_wait(&b, T0), 0);
		sched_bucket_take(&b);
	}
	cr_assert_float_eq(b.tokens, 0, 1e-9, "nothing is counted");
}

/* ---- adaptive back-off ---- */

struct pace {
	struct sched_bucket b;
	struct sched_backoff bo;
	double rate;
	unsigned window;
};

static struct pace pace(double rate, unsigned window)
{
	struct pace p = { .rate = rate, .window = window };
	sched_bucket_init(&p.b, rate);
	return p;
}

Test(sched_backoff, slow_down_pauses_and_cuts)
{
	struct pace p = pace(100, 20);

	cr_assert_not(sched_backoff_suspended(&p.bo, T0));
	cr_assert_eq(sched_backoff_slow_down(&p.bo, &p.b, p.window, T0), 1000);
	cr_assert_eq(p.bo.level, 1);
	cr_assert_float_eq(p.b.rate, 85, 1e-9);
	cr_assert_float_eq(p.b.burst, 85, 1e-9);
	cr_assert_float_eq(p.bo.ceiling, 100, 1e-9);
	cr_assert_float_eq(p.b.tokens, 0, 1e-9, "the bucket is emptied");
	cr_assert(sched_backoff_suspended(&p.bo, T0 + 999));
	cr_assert_not(sched_backoff_suspended(&p.bo, T0 + 1000));
	/* nothing accrues while suspended, even if the bucket is looked at */
	sched_bucket_refill(&p.b, T0 + 500);
	cr_assert_float_eq(p.b.tokens, 0, 1e-9);
	sched_bucket_refill(&p.b, T0 + 999);
	cr_assert_float_eq(p.b.tokens, 0, 1e-9);
	/* afterwards the cut rate: one token per 1000/85 ms */
	cr_assert_eq(sched_bucket_wait(&p.b, T0 + 1000), 12);
}

Test(sched_backoff, one_step_per_episode)
{
	struct pace p = pace(100, 20);

	sched_backoff_slow_down(&p.bo, &p.b, p.window, T0);
	struct pace before = p;
	/* more "slow down" replies from messages sent before the cut: during
	 * the pause and the hold after it */
	for (uint64_t t = T0; t < T0 + 2000; t += 100)
		cr_assert_eq(sched_backoff_slow_down(&p.bo, &p.b, p.window, t), 0);
	cr_assert_eq(memcmp(&p, &before, sizeof p), 0, "nothing changed");
	cr_assert_eq(sched_backoff_slow_down(&p.bo, &p.b, p.window, T0 + 2000), 2000,
		     "a new episode, soon after the last: a longer pause");
}

Test(sched_backoff, pauses_double_while_episodes_come_close)
{
	struct pace p = pace(1000, 20);
	static const uint64_t want[] = { 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000,
					 256000, 512000, 1024000, 1800000, 1800000 };
	uint64_t now = T0;

	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		uint64_t ms = sched_backoff_slow_down(&p.bo, &p.b, p.window, now);
		cr_assert_eq(ms, want[i], "episode %zu: %llu ms", i + 1, (unsigned long long)ms);
		cr_assert_eq(p.bo.until_ms, now + ms);
		now += ms + SCHED_BACKOFF_HOLD_MS;  /* the next reply right after the hold */
	}
}

Test(sched_backoff, rate_cut_down_to_the_floor)
{
	struct pace p = pace(0.3, 20);
	uint64_t now = T0;

	now += sched_backoff_slow_down(&p.bo, &p.b, p.window, now) + SCHED_BACKOFF_HOLD_MS;
	cr_assert_float_eq(p.b.rate, 0.255, 1e-9);
	now += sched_backoff_slow_down(&p.bo, &p.b, p.window, now) + SCHED_BACKOFF_HOLD_MS;
	cr_assert_float_eq(p.b.rate, 0.21675, 1e-9);
	sched_backoff_slow_down(&p.bo, &p.b, p.window, now);
	cr_assert_float_eq(p.b.rate, SCHED_BACKOFF_MIN_RATE, 1e-9);
	cr_assert_float_eq(p.b.burst, 1, 1e-9);
}

Test(sched_backoff, unlimited_site_cuts_what_it_was_seen_delivering)
{
	struct pace p = pace(0, 20);

	sched_backoff_slow_down(&p.bo, &p.b, p.window, T0);
	cr_assert_float_eq(p.b.rate, 17, 1e-9, "nothing seen yet: its window, 20 a second");
	p = pace(0, 20);
	/* 300 deliveries a second for two seconds */
	for (int i = 0; i <= 600; i++)
		sched_backoff_ok(&p.bo, &p.b, p.rate, p.window, T0 + (uint64_t)i * 10 / 3);
	cr_assert_float_eq(p.bo.seen, 300, 1);
	sched_backoff_slow_down(&p.bo, &p.b, p.window, T0 + 2001);
	cr_assert_float_eq(p.b.rate, 0.85 * p.bo.ceiling, 1e-9);
	cr_assert_float_eq(p.bo.ceiling, 300, 1);
}

/* Deliveries at the current rate, one second's worth a step. */
static int steps_until_whole(struct pace *p, uint64_t *now, int max_steps)
{
	int steps = 0;
	while (steps < max_steps) {
		double before = p->b.rate;
		*now += 10;
		if (sched_backoff_ok(&p->bo, &p->b, p->rate, p->window, *now))
			return steps + 1;
		if (p->b.rate != before)
			steps++;
	}
	return -1;
}

Test(sched_backoff, recovers_fast_then_slowly_near_the_ceiling)
{
	struct pace p = pace(100, 20);
	uint64_t now = T0;

	now += sched_backoff_slow_down(&p.bo, &p.b, p.window, now);
	/* a step per second's worth of deliveries: 85 of them now */
	for (int i = 1; i < 85; i++) {
		cr_assert_not(sched_backoff_ok(&p.bo, &p.b, p.rate, p.window, now));
		cr_assert_eq(p.bo.ok_streak, (unsigned)i);
	}
	cr_assert_not(sched_backoff_ok(&p.bo, &p.b, p.rate, p.window, now));
	cr_assert_float_eq(p.b.rate, 85 * 1.05, 1e-9, "fast, far below the ceiling");
	cr_assert_eq(p.bo.ok_streak, 0);
	cr_assert(p.bo.active);
	/* 89.25 -> 93.7 -> 98.4 (past 0.95 of the ceiling), then by half a
	 * per cent a step: 98.9, 99.4, 99.9, then the configured 100 */
	static const double want[] = { 89.25 * 1.05, 89.25 * 1.05 * 1.05,
				       89.25 * 1.05 * 1.05 * 1.005 };
	for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
		double before = p.b.rate;
		while (p.b.rate == before)
			cr_assert_not(sched_backoff_ok(&p.bo, &p.b, p.rate, p.window, now += 10));
		cr_assert_float_eq(p.b.rate, want[k], 1e-9, "step %zu", k + 2);
	}
	int n = steps_until_whole(&p, &now, 100000);
	cr_assert_eq(n, 3, "%d steps", n);
	cr_assert_float_eq(p.b.rate, 100, 1e-9, "the configured rate, not past it");
	cr_assert_not(p.bo.active);
	cr_assert_eq(p.bo.level, 0);
	/* over: no streak counted outside a back-off */
	cr_assert_not(sched_backoff_ok(&p.bo, &p.b, p.rate, p.window, now));
	cr_assert_eq(p.bo.ok_streak, 0);
	now += 5000;
	cr_assert_eq(sched_backoff_slow_down(&p.bo, &p.b, p.window, now), 1000,
		     "the next episode starts from the first pause again");
}

Test(sched_backoff, calm_resets_the_pause)
{
	struct pace p = pace(100, 20);
	uint64_t now = T0;

	now += sched_backoff_slow_down(&p.bo, &p.b, p.window, now) + SCHED_BACKOFF_HOLD_MS;
	cr_assert_eq(sched_backoff_slow_down(&p.bo, &p.b, p.window, now), 2000);
	now += 2000 + SCHED_BACKOFF_HOLD_MS;
	/* three steps of deliveries without a slow-down: calm again */
	for (unsigned s = 0; s < SCHED_BACKOFF_CALM_STEPS; s++) {
		double before = p.b.rate;
		while (p.b.rate == before)
			sched_backoff_ok(&p.bo, &p.b, p.rate, p.window, now += 10);
	}
	cr_assert_eq(sched_backoff_slow_down(&p.bo, &p.b, p.window, now), 1000);
}

Test(sched_backoff, unlimited_site_recovers_to_unlimited)
{
	struct pace p = pace(0, 20);
	uint64_t now = T0;

	sched_backoff_slow_down(&p.bo, &p.b, p.window, now);
	now += 2000;
	/* from 17 a second, past 10 x window = 200/s */
	int n = steps_until_whole(&p, &now, 100000);
	cr_assert_gt(n, 0);
	cr_assert_float_eq(p.b.rate, 0, 1e-12, "unlimited again");
	cr_assert_eq(sched_bucket_wait(&p.b, now), 0);
}

/* ---- through sched_site_result, as the delivery thread calls it ---- */

static struct sched_dmsg *reply(enum eng_status st, int code, const char *enh, const char *text)
{
	struct sched_dmsg *m = calloc(1, sizeof *m);

	m->r.status = st;
	m->r.code = code;
	snprintf(m->r.enhanced, sizeof m->r.enhanced, "%s", enh);
	snprintf(m->r.text, sizeof m->r.text, "%s", text);
	snprintf(m->peer, sizeof m->peer, "127.0.0.5:2525");
	return m;
}

Test(sched_site, rate_limited_reply_backs_off_then_recovers, .init = cr_redirect_stderr)
{
	struct sched_deliver *d = calloc(1, sizeof *d);
	struct sched_site *s = calloc(1, sizeof *s);
	struct sched_dmsg *slow = reply(ENG_TRANSIENT, 421, "4.7.28", "too many messages");
	struct sched_dmsg *ok = reply(ENG_DELIVERED, 250, "2.0.0", "queued");
	struct sched_dmsg *other = reply(ENG_TRANSIENT, 451, "4.3.0", "try later");
	struct sched_bounce_verdict rl = { SCHED_BC_RATE_LIMITED, false };
	struct sched_bounce_verdict none = { SCHED_BC_NONE, false };
	struct sched_bounce_verdict soft = { SCHED_BC_OTHER, false };

	s->key = "127.0.0.5:2525|opportunistic|10|100|1|100/s|25|";
	s->rate = 100;
	s->window = 20;
	sched_bucket_init(&s->b, s->rate);

	/* an ordinary transient failure does not slow the site */
	s->inflight = 1;
	sched_site_result(d, s, other, &soft, NULL);
	cr_assert_eq(s->bo.level, 0);
	cr_assert_float_eq(s->b.rate, 100, 1e-9);
	cr_assert_eq(s->transient, 1);
	cr_assert_eq(d->ready, s, "the site is ready for its next message");

	s->inflight = 1;
	sched_site_result(d, s, slow, &rl, NULL);
	cr_assert_eq(s->inflight, 1, "the window place is the caller's: a shared message has a result a recipient");
	cr_assert_eq(s->transient, 2);
	cr_assert_eq(s->bo.level, 1);
	cr_assert_float_eq(s->b.rate, 85, 1e-9);
	cr_assert(sched_backoff_suspended(&s->bo, vl_now_ms()));
	cr_assert_not_null(strstr(s->backoff_reason, "421 4.7.28 too many messages "
				  "(from 127.0.0.5:2525) at "), "%s", s->backoff_reason);
	cr_assert_not_null(strstr(s->backoff_reason, ": suspended until "), "%s",
			   s->backoff_reason);
	cr_assert_not_null(strstr(s->backoff_reason, ", rate cut to 85/s"), "%s",
			   s->backoff_reason);
	char last[320];
	sched_site_last_response(s, last, sizeof last);
	cr_assert_str_eq(last, "421 4.7.28 too many messages");

	/* deliveries bring it back, step by step (85 -> 89.25 -> 93.7, then
	 * slowly near the ceiling of 100) */
	int n = 0;
	for (; n < 100000 && s->backoff_reason[0]; n++) {
		s->inflight = 1;
		sched_site_result(d, s, ok, &none, NULL);
	}
	cr_assert_gt(n, 500, "%d deliveries", n);
	cr_assert_lt(n, 100000);
	cr_assert_eq(s->bo.level, 0);
	cr_assert_float_eq(s->b.rate, 100, 1e-9);
	cr_assert_str_eq(s->backoff_reason, "", "the API no longer shows a back-off");
	cr_assert_eq(s->delivered, (uint64_t)n);
	free(slow);
	free(ok);
	free(other);
	free(s);
	free(d);
}

/* A provider's reply rules: a suspension of one source, or of every
 * source of the destination, for the rule's duration; no halving. */
Test(sched_site, provider_rules_suspend_a_source_or_the_pool, .init = cr_redirect_stderr)
{
	struct sched_deliver *d = calloc(1, sizeof *d);
	struct sched_sgroup g = { 0 };
	struct sched_site *site[2] = { calloc(1, sizeof **site), calloc(1, sizeof **site) };
	struct sched_dmsg *blk = reply(ENG_TRANSIENT, 550, "5.7.1", "[BM01] blocked");
	struct sched_bounce_verdict other = { SCHED_BC_OTHER, false };
	struct sched_bounce_verdict rl = { SCHED_BC_RATE_LIMITED, false };
	struct cfg_reply_rule src = { .action = CFG_RA_SUSPEND_SOURCE, .duration_ms = 3600000 };
	struct cfg_reply_rule pool = { .action = CFG_RA_SUSPEND_POOL, .duration_ms = 600000 };
	struct cfg_reply_rule defer = { .action = CFG_RA_DEFER };
	uint64_t now = vl_now_ms();

	g.provider = "bigmail";
	g.nsrc = 2;
	g.site = site;
	for (int i = 0; i < 2; i++) {
		site[i]->group = &g;
		site[i]->src = i;
		site[i]->key = "k";
		sched_bucket_init(&site[i]->b, 100);
		site[i]->rate = 100;
	}
	/* defer: a rate-limited reply without the back-off */
	site[0]->inflight = 1;
	sched_site_result(d, site[0], blk, &rl, &defer);
	cr_assert_not(sched_backoff_suspended(&site[0]->bo, now));
	cr_assert_eq(site[0]->transient, 1);

	site[0]->inflight = 1;
	sched_site_result(d, site[0], blk, &other, &src);
	cr_assert(sched_backoff_suspended(&site[0]->bo, now + 3599000));
	cr_assert_not(sched_backoff_suspended(&site[0]->bo, now + 3601000 + 1000));
	cr_assert_not(sched_backoff_suspended(&site[1]->bo, now), "the other source goes on");
	cr_assert_float_eq(site[0]->b.rate, 100, 1e-9, "a suspension does not halve the rate");
	cr_assert_not_null(strstr(site[0]->backoff_reason, "provider bigmail says suspend-source: "
				  "suspended until "), "%s", site[0]->backoff_reason);
	/* a shorter one does not cut a longer one short */
	site[0]->inflight = 1;
	sched_site_result(d, site[0], blk, &other, &pool);
	cr_assert(sched_backoff_suspended(&site[0]->bo, now + 3599000));
	cr_assert(sched_backoff_suspended(&site[1]->bo, now + 599000));
	cr_assert_not(sched_backoff_suspended(&site[1]->bo, now + 602000));
	cr_assert_not_null(strstr(site[1]->backoff_reason, "suspend-pool"));
	free(blk);
	free(site[0]);
	free(site[1]);
	free(d);
}

/* ---- weighted choice of an egress source ---- */

Test(sched_swrr, weights_three_to_one_spread_evenly)
{
	int cur[2] = { 0, 0 };
	const unsigned w[2] = { 3, 1 };
	size_t n[2] = { 0, 0 };
	char seq[9] = "";

	for (int i = 0; i < 8; i++) {
		size_t k = sched_swrr_pick(cur, w, NULL, 2);
		n[k]++;
		seq[i] = (char)('a' + k);
	}
	cr_assert_str_eq(seq, "aabaaaba");  /* never b twice in a row, 3:1 per 4 */
	cr_assert_eq(n[0], 6);
	cr_assert_eq(n[1], 2);
	for (int i = 0; i < 4000; i++)
		n[sched_swrr_pick(cur, w, NULL, 2)]++;
	cr_assert_eq(n[0], 3006);
	cr_assert_eq(n[1], 1002);
}

Test(sched_swrr, equal_weights_alternate_and_one_entry_always_wins)
{
	int cur[3] = { 0 };
	const unsigned w[3] = { 1, 1, 1 };

	for (int i = 0; i < 9; i++)
		cr_assert_eq(sched_swrr_pick(cur, w, NULL, 3), (size_t)(i % 3));
	int one = 0;
	const unsigned w1 = 5;
	for (int i = 0; i < 5; i++)
		cr_assert_eq(sched_swrr_pick(&one, &w1, NULL, 1), 0);
	cr_assert_eq(one, 0);
}

Test(sched_swrr, skips_a_suspended_source_unless_all_are)
{
	int cur[3] = { 0 };
	const unsigned w[3] = { 3, 1, 1 };
	bool skip[3] = { true, false, false };
	size_t n[3] = { 0 };

	for (int i = 0; i < 100; i++)
		n[sched_swrr_pick(cur, w, skip, 3)]++;
	cr_assert_eq(n[0], 0);
	cr_assert_eq(n[1], 50);
	cr_assert_eq(n[2], 50);
	bool all[3] = { true, true, true };   /* all suspended: weights as usual */
	memset(cur, 0, sizeof cur);
	memset(n, 0, sizeof n);
	for (int i = 0; i < 50; i++)
		n[sched_swrr_pick(cur, w, all, 3)]++;
	cr_assert_eq(n[0], 30);
	cr_assert_eq(n[1], 10);
	cr_assert_eq(n[2], 10);
}
