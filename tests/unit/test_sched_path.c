/* scheduler/spool.c: sched_spool_path, the one place a job's file names are
 * made: the layout, ids refused when they are not job ids, truncation
 * reported; and the spool's own calls refusing such ids. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../scheduler/spool.h"
#include "unit.h"

static char dir[64];
static struct sched_spool *sp;

static void setup(void)
{
	char err[256];
	unit_tmpdir(dir, sizeof dir, "path");
	sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
}

static void teardown(void)
{
	sched_spool_close(sp);
	unit_rmdir(dir);
}

TestSuite(sched_path, .init = setup, .fini = teardown);

#define ID "0194c1d2e3f4-5a6b7c8d"

Test(sched_path, every_file_of_a_job)
{
	static const struct {
		enum sched_spool_file f;
		const char *tail;
	} want[] = {
		{ SCHED_SPOOL_DIR, "jobs/" ID },
		{ SCHED_SPOOL_JOB, "jobs/" ID "/job.json" },
		{ SCHED_SPOOL_RCPT, "jobs/" ID "/rcpt" },
		{ SCHED_SPOOL_JOURNAL, "jobs/" ID "/journal" },
		{ SCHED_SPOOL_CONTROL, "jobs/" ID "/control" },
		{ SCHED_SPOOL_DONE, "jobs/" ID "/done.json" },
		{ SCHED_SPOOL_TMP, "tmp/" ID },
		{ SCHED_SPOOL_MESSAGE, "jobs/" ID "/message" },
	};
	char got[512], exp[512];

	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		snprintf(exp, sizeof exp, "%s/%s", dir, want[i].tail);
		cr_assert_eq(sched_spool_path(sp, ID, want[i].f, got, sizeof got), 0);
		cr_assert_str_eq(got, exp);
	}
	snprintf(exp, sizeof exp, "%s/jobs", dir);
	cr_assert_str_eq(sched_spool_jobs_dir(sp), exp);
}

Test(sched_path, refuses_what_is_not_a_job_id)
{
	static const char *const bad[] = {
		"", "..", "../../etc", "0194c1d2e3f4-5a6b7c8", "0194c1d2e3f4-5a6b7c8d0",
		"0194C1D2E3F4-5A6B7C8D", "0194c1d2e3f4_5a6b7c8d", "0194c1d2e3f45a6b7c8d-",
		"0194c1d2e3f4-5a6b7c8g", "0194c1d2e3f4/5a6b7c8d", "0194c1d2e3f4-5a6b/c8d",
		"-0194c1d2e3f45a6b7c8d",
	};
	char got[512];

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		strcpy(got, "untouched");
		errno = 0;
		cr_assert_eq(sched_spool_path(sp, bad[i], SCHED_SPOOL_JOURNAL, got, sizeof got), -1,
			     "%s", bad[i]);
		cr_assert_eq(errno, EINVAL, "%s", bad[i]);
		cr_assert_str_eq(got, "", "%s", bad[i]);
		cr_assert_not(sched_id_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
	}
	errno = 0;
	cr_assert_eq(sched_spool_path(sp, NULL, SCHED_SPOOL_JOB, got, sizeof got), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(sched_spool_path(sp, ID, (enum sched_spool_file)99, got, sizeof got), -1);
	cr_assert_eq(errno, EINVAL);
}

Test(sched_path, new_ids_are_valid)
{
	char id[SCHED_ID_LEN + 1];

	for (int i = 0; i < 100; i++) {
		sched_new_id(id);
		cr_assert(sched_id_valid(id, strlen(id)), "%s", id);
	}
	/* only the n octets given count */
	cr_assert(sched_id_valid(ID "trailing", SCHED_ID_LEN));
}

Test(sched_path, truncation_is_reported)
{
	char exp[512], got[512];
	int n = snprintf(exp, sizeof exp, "%s/jobs/%s/journal", dir, ID);

	/* exactly fits: n octets and the NUL */
	cr_assert_eq(sched_spool_path(sp, ID, SCHED_SPOOL_JOURNAL, got, (size_t)n + 1), 0);
	cr_assert_str_eq(got, exp);
	for (size_t len = (size_t)n; len > 0; len -= len > 8 ? 7 : 1) {
		memset(got, 'x', sizeof got);
		errno = 0;
		cr_assert_eq(sched_spool_path(sp, ID, SCHED_SPOOL_JOURNAL, got, len), -1, "%zu", len);
		cr_assert_eq(errno, ENAMETOOLONG);
		cr_assert_str_eq(got, "", "a cut path is never handed out");
	}
	cr_assert_eq(sched_spool_path(sp, ID, SCHED_SPOOL_JOURNAL, NULL, 0), -1);
	cr_assert_eq(errno, ENAMETOOLONG);
}

Test(sched_path, spool_calls_refuse_bad_ids)
{
	char err[256] = "", p[128];
	struct stat st;

	/* ".." would be data_dir itself */
	cr_assert_eq(sched_spool_remove(sp, ".."), -1);
	snprintf(p, sizeof p, "%s/jobs", dir);
	cr_assert_eq(stat(p, &st), 0, "the spool survives");
	cr_assert_eq(sched_spool_job_bytes(sp, "../.."), 0);
	cr_assert_null(sched_table_open(sp, "../jobs"));
	cr_assert_null(sched_intake_begin(sp, "../evil", err, sizeof err));
	cr_assert_neq(strstr(err, "cannot receive job"), NULL, "%s", err);
	snprintf(p, sizeof p, "%s/evil", dir);
	cr_assert_neq(stat(p, &st), 0, "nothing made outside tmp/");
}
