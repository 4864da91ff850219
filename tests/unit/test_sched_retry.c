/* scheduler/shape.c: when a deferred recipient comes back. The delay for
 * each attempt follows the configured list, its last entry repeating; the
 * jitter stays within [0.9, 1.1) of it over many seeds and does spread;
 * the wait is cut at the job's expiry, and a job past it retries nothing.
 * The default list is the one docs/scheduler.md gives. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"
#include "../../scheduler/shape.h"

#define MIN 60000ull
#define HOUR (60 * MIN)

/* delay within the jitter's bounds around base */
static void around(uint64_t delay, uint64_t base, const char *what)
{
	cr_assert(delay >= base * 9 / 10 && (double)delay < (double)base * 1.1,
		  "%s: %llu is not within [0.9, 1.1) x %llu", what, (unsigned long long)delay,
		  (unsigned long long)base);
}

Test(sched_retry, each_attempt_takes_its_entry_and_the_last_repeats)
{
	static const uint64_t list[] = { 5 * MIN, 10 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR };
	uint64_t seed = 42;
	char what[32];

	for (unsigned a = 1; a <= 6; a++) {
		snprintf(what, sizeof what, "attempt %u", a);
		for (int k = 0; k < 200; k++)
			around(sched_retry_delay(list, 6, a, &seed), list[a - 1], what);
	}
	static const unsigned later[] = { 7, 8, 20, 100, 255 };
	for (size_t i = 0; i < sizeof later / sizeof *later; i++) {
		snprintf(what, sizeof what, "attempt %u", later[i]);
		for (int k = 0; k < 200; k++)
			around(sched_retry_delay(list, 6, later[i], &seed), 4 * HOUR, what);
	}
	/* no attempt recorded yet counts as the first */
	around(sched_retry_delay(list, 6, 0, &seed), 5 * MIN, "attempt 0");
}

Test(sched_retry, a_list_of_one)
{
	static const uint64_t list[] = { 90000 };
	uint64_t seed = 7;

	for (unsigned a = 0; a < 300; a++)
		around(sched_retry_delay(list, 1, a, &seed), 90000, "one entry");
}

Test(sched_retry, jitter_within_bounds_over_many_seeds)
{
	static const uint64_t list[] = { 1000000 };
	uint64_t lo = UINT64_MAX, hi = 0;
	double sum = 0;
	const int n = 200000;

	for (int i = 0; i < n; i++) {
		uint64_t seed = (uint64_t)i * 0x9e3779b97f4a7c15ull + 1;
		uint64_t d = sched_retry_delay(list, 1, 1, &seed);
		around(d, 1000000, "jitter");
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
		sum += (double)d;
	}
	/* it does spread, over the whole band, evenly */
	cr_assert_lt(lo, 901000, "lowest %llu", (unsigned long long)lo);
	cr_assert_gt(hi, 1099000, "highest %llu", (unsigned long long)hi);
	cr_assert(fabs(sum / n - 1000000) < 2000, "mean %.0f", sum / n);
}

Test(sched_retry, the_seed_decides)
{
	static const uint64_t list[] = { 600000 };
	uint64_t a = 12345, b = 12345;

	uint64_t d1 = sched_retry_delay(list, 1, 1, &a);
	cr_assert_eq(sched_retry_delay(list, 1, 1, &b), d1, "same seed, same delay");
	cr_assert_eq(a, b);
	cr_assert_neq(a, 12345, "the seed moves on");
	int differ = 0;
	for (int i = 0; i < 10; i++)
		differ += sched_retry_delay(list, 1, 1, &a) != d1;
	cr_assert_gt(differ, 0, "successive retries of one burst spread");
}

Test(sched_retry, wait_cut_at_expiry)
{
	uint64_t w = 0;
	double now = 1795454401.0;

	/* plenty of life left: the delay as it is */
	cr_assert(sched_retry_wait(300000, now, now + 3 * 86400, &w));
	cr_assert_eq(w, 300000);
	/* 12.5 s left: retried then, for its last chance, not in 5 minutes */
	cr_assert(sched_retry_wait(300000, now, now + 12.5, &w));
	cr_assert_eq(w, 12500);
	/* exactly as long as is left */
	cr_assert(sched_retry_wait(12500, now, now + 12.5, &w));
	cr_assert_eq(w, 12500);
	/* less than a millisecond left: at once */
	cr_assert(sched_retry_wait(300000, now, now + 0.0004, &w));
	cr_assert_eq(w, 0);
}

Test(sched_retry, expired_job_does_not_retry)
{
	uint64_t w = 777;
	double now = 1795454401.0;

	cr_assert_not(sched_retry_wait(300000, now, now, &w), "the deadline itself");
	cr_assert_not(sched_retry_wait(300000, now + 1, now, &w));
	cr_assert_not(sched_retry_wait(0, now + 86400, now, &w));
	cr_assert_eq(w, 777, "untouched");
}

/* A recipient deferred again and again: every wait follows the list and
 * the last one ends at the job's expiry, after which it expires. */
Test(sched_retry, a_recipient_over_its_whole_life)
{
	static const uint64_t list[] = { 5 * MIN, 10 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR };
	double created = 1795454401.0, now = created, expires = created + 86400;
	uint64_t seed = 99, w;
	unsigned attempts = 1;

	while (sched_retry_wait(sched_retry_delay(list, 6, attempts, &seed), now, expires, &w)) {
		uint64_t base = list[attempts - 1 < 6 ? attempts - 1 : 5];
		if (now + (double)base * 1.1 / 1000 < expires)
			around(w, base, "a wait in the job's life");
		else
			cr_assert_leq(w, base * 11 / 10);
		now += (double)(w ? w : 1) / 1000;   /* a timer takes a moment */
		attempts++;
		cr_assert_lt(attempts, 100);
		cr_assert_leq(now, expires + 0.001);
	}
	/* 5m+10m+30m+1h+2h+4h is under 8 h, then every 4 h: 4 more, then one
	 * cut at the day's end (give or take one with the jitter) */
	cr_assert(attempts >= 11 && attempts <= 13, "%u attempts", attempts);
	cr_assert(now >= expires - 0.001, "the last retry is at the expiry");
}

Test(sched_retry, defaults_are_the_documented_list)
{
	char err[256] = "";
	struct cfg c;
	static const uint64_t want[] = { 5 * MIN, 10 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR };

	cr_assert_eq(cfg_load(&c, NULL, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.nretry, 6);
	for (size_t i = 0; i < 6; i++)
		cr_assert_eq(c.retry_ms[i], want[i], "entry %zu", i);
	cfg_free(&c);
}
