/* scheduler/fback.c's pure parts: the complaint-rate decision (a share over
 * the rate, only from the minimum delivered on, in words) and a job's
 * per-recipient flags (set, cleared, many recipients, no counter moved).
 * The feedback file and the effects are tested end to end
 * (tests/e2e/test_feedback_loop.py). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../scheduler/fback_int.h"
#include "unit.h"

Test(sched_feedback, rate_needs_the_minimum_and_more_than_the_share)
{
	char why[160];

	cr_assert_not(sched_fb_over(0.003, 1000, 5, 999, why, sizeof why));   /* too few */
	cr_assert_not(sched_fb_over(0.003, 1000, 3, 1000, why, sizeof why));  /* 0.3 %: not over */
	cr_assert(sched_fb_over(0.003, 1000, 4, 1000, why, sizeof why));
	cr_assert_str_eq(why, "complaint rate 0.40% (4 of 1000 delivered) is over 0.30%");
	cr_assert_not(sched_fb_over(0.1, 5, 0, 0, why, sizeof why));
	cr_assert(sched_fb_over(0.1, 5, 1, 5, why, sizeof why));
}

Test(sched_feedback, flags_per_recipient)
{
	struct sched_job j = { .recipients = 100000 };

	cr_assert_eq(sched_fb_flags(&j, 7), 0);
	for (uint32_t i = 0; i < 100000; i += 3)
		sched_fb_mark(&j, i, SCHED_FBR_OOB, true);
	sched_fb_mark(&j, 9, SCHED_FBR_COMPLAINT, true);
	cr_assert_eq(sched_fb_flags(&j, 9), SCHED_FBR_OOB | SCHED_FBR_COMPLAINT);
	cr_assert_eq(sched_fb_flags(&j, 10), 0);
	cr_assert_eq(sched_fb_flags(&j, 99999), SCHED_FBR_OOB);
	sched_fb_mark(&j, 9, SCHED_FBR_OOB, false);
	cr_assert_eq(sched_fb_flags(&j, 9), SCHED_FBR_COMPLAINT);
	cr_assert_eq(j.fb_oob + j.fb_complaints, 0);   /* marks move no counter */
	sched_fb_job_free(&j);
	cr_assert_null(j.fbset);
}
