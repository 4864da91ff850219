/* scheduler/: the spool writes whole jobs or nothing, finds duplicates,
 * and reads recipient tables back. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../scheduler/scheduler.h"
#include "unit.h"

static char dir[64];
static struct sched_spool *sp;

static void setup(void)
{
	char err[256];
	unit_tmpdir(dir, sizeof dir, "spool");
	sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
}

static void teardown(void)
{
	sched_spool_close(sp);
	unit_rmdir(dir);
}

static size_t entries(const char *sub)
{
	char p[128];
	size_t n = 0;
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	DIR *d = opendir(p);
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static struct sched_rcpt mk(const char *email, const char *name, const char *k,
			    const char *v)
{
	struct sched_rcpt r = { .email = email, .email_len = strlen(email), .name = name,
				.name_len = name ? strlen(name) : 0 };
	if (k) {
		r.nsubs = 1;
		r.keys[0] = k;
		r.klens[0] = strlen(k);
		r.vals[0] = v;
		r.vlens[0] = strlen(v);
	}
	return r;
}

TestSuite(sched_spool, .init = setup, .fini = teardown);

Test(sched_spool, commit_then_read_back)
{
	char id[SCHED_ID_LEN + 1], err[256];
	size_t first;
	sched_new_id(id);
	struct sched_intake *in = sched_intake_begin(sp, id, err, sizeof err);
	cr_assert_not_null(in, "%s", err);
	struct sched_rcpt a = mk("ann@example.net", "Ann", "name", "Ann");
	struct sched_rcpt b = mk("bob@example.net", NULL, NULL, NULL);
	cr_assert_eq(sched_intake_add(in, &a, &first), 0);
	cr_assert_eq(sched_intake_add(in, &b, &first), 0);
	cr_assert_eq(entries("jobs"), 0, "visible before commit");
	cr_assert_eq(sched_intake_commit(in, "{}", 2), 0);
	cr_assert_eq(entries("jobs"), 1);
	cr_assert_eq(entries("tmp"), 0);
	struct sched_table *t = sched_table_open(sp, id);
	cr_assert_not_null(t);
	cr_assert_eq(sched_table_count(t), 2);
	struct sched_rcpt r;
	cr_assert_eq(sched_table_get(t, 0, &r), 0);
	cr_assert_str_eq(r.email, "ann@example.net");
	cr_assert_str_eq(r.name, "Ann");
	cr_assert_eq(r.nsubs, 1);
	cr_assert_str_eq(r.keys[0], "name");
	cr_assert_str_eq(r.vals[0], "Ann");
	cr_assert_eq(sched_table_get(t, 1, &r), 0);
	cr_assert_str_eq(r.email, "bob@example.net");
	cr_assert_null(r.name);
	cr_assert_eq(sched_table_get(t, 2, &r), -1);
	sched_table_close(t);
	cr_assert_gt(sched_spool_job_bytes(sp, id), 0);
}

/* A verbatim job's message file: written into tmp/<id>/ with the rest,
 * moved with it, octets kept; the commit without fsync makes the same job. */
static void read_file(const char *path, struct vl_buf *out)
{
	FILE *f = fopen(path, "rb");
	char buf[4096];
	size_t n;
	cr_assert_not_null(f, "%s", path);
	vl_buf_reset(out);
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		vl_buf_append(out, buf, n);
	fclose(f);
}

Test(sched_spool, message_file_and_commit_without_fsync)
{
	static const char m[] = "From: a@b.example\r\n\r\n\xe9\0{{ x }}\r\n.\r\n";
	char id[SCHED_ID_LEN + 1], err[256], path[512];
	size_t first;
	struct vl_buf got;

	vl_buf_init(&got);
	for (int sync = 0; sync < 2; sync++) {
		sched_new_id(id);
		struct sched_intake *in = sched_intake_begin(sp, id, err, sizeof err);
		cr_assert_not_null(in, "%s", err);
		struct sched_rcpt a = mk("ann@example.net", NULL, NULL, NULL);
		cr_assert_eq(sched_intake_add(in, &a, &first), 0);
		cr_assert_eq(sched_intake_message(in, m, sizeof m - 1), 0);
		errno = 0;
		cr_assert_eq(sched_intake_message(in, m, 1), -1, "one message a job");
		cr_assert_eq(errno, EEXIST);
		snprintf(path, sizeof path, "%s/tmp/%s/message", dir, id);
		cr_assert_eq(access(path, F_OK), 0, "written into tmp/ before the commit");
		int rc = sync ? sched_intake_commit(in, "{}", 2)
			      : sched_intake_commit_nosync(in, "{}", 2);
		cr_assert_eq(rc, 0);
		cr_assert_eq(sched_spool_path(sp, id, SCHED_SPOOL_MESSAGE, path, sizeof path), 0);
		read_file(path, &got);
		cr_assert_eq(got.len, sizeof m - 1);
		cr_assert(!memcmp(got.p, m, got.len), "octets kept, NUL and 8-bit included");
		struct sched_table *t = sched_table_open(sp, id);
		cr_assert_not_null(t);
		cr_assert_eq(sched_table_count(t), 1);
		sched_table_close(t);
	}
	cr_assert_eq(entries("jobs"), 2);
	cr_assert_eq(entries("tmp"), 0);
	cr_assert_eq(sched_spool_sync(sp), 0);
	/* an aborted intake takes its message with it */
	sched_new_id(id);
	struct sched_intake *in = sched_intake_begin(sp, id, err, sizeof err);
	cr_assert_eq(sched_intake_message(in, m, sizeof m - 1), 0);
	sched_intake_abort(in);
	cr_assert_eq(entries("tmp"), 0);
	cr_assert_eq(entries("jobs"), 2);
	vl_buf_free(&got);
}

Test(sched_spool, abort_leaves_nothing)
{
	char id[SCHED_ID_LEN + 1], err[256];
	size_t first;
	sched_new_id(id);
	struct sched_intake *in = sched_intake_begin(sp, id, err, sizeof err);
	struct sched_rcpt a = mk("ann@example.net", NULL, NULL, NULL);
	sched_intake_add(in, &a, &first);
	cr_assert_eq(entries("tmp"), 1);
	sched_intake_abort(in);
	cr_assert_eq(entries("tmp"), 0);
	cr_assert_eq(entries("jobs"), 0);
}

Test(sched_spool, duplicates_over_many_and_across_flushes)
{
	char id[SCHED_ID_LEN + 1], err[256], email[64];
	size_t first;
	sched_new_id(id);
	struct sched_intake *in = sched_intake_begin(sp, id, err, sizeof err);
	/* enough recipients that early ones are flushed to the file */
	for (int i = 0; i < 60000; i++) {
		snprintf(email, sizeof email, "user%d@Domain%d.example", i, i % 7);
		struct sched_rcpt r = mk(email, NULL, "pad", "................................");
		cr_assert_eq(sched_intake_add(in, &r, &first), 0, "%s", email);
	}
	for (int i = 0; i < 60000; i += 997) {
		snprintf(email, sizeof email, "user%d@DOMAIN%d.EXAMPLE", i, i % 7);
		struct sched_rcpt r = mk(email, NULL, NULL, NULL);
		cr_assert_eq(sched_intake_add(in, &r, &first), 1, "%s", email);
		cr_assert_eq(first, (size_t)i);
		snprintf(email, sizeof email, "USER%d@domain%d.example", i, i % 7);
		r = mk(email, NULL, NULL, NULL);
		cr_assert_eq(sched_intake_add(in, &r, &first), 0, "local part is case-sensitive");
	}
	cr_assert_eq(sched_intake_count(in), 60000 + 61);
	cr_assert_eq(sched_intake_commit(in, "{}", 2), 0);
	/* the table reads back through its mapped index; the intake's
	 * scratch files (duplicate set, offsets) did not come along */
	struct sched_table *t = sched_table_open(sp, id);
	cr_assert_not_null(t);
	cr_assert_eq(sched_table_count(t), 60061);
	struct sched_rcpt r;
	cr_assert_eq(sched_table_get(t, 59999, &r), 0);
	cr_assert_str_eq(r.email, "user59999@Domain2.example");
	cr_assert_eq(sched_table_get(t, 60060, &r), 0);
	cr_assert_str_eq(r.email, "USER59820@domain5.example");
	sched_table_close(t);
	char p[160];
	snprintf(p, sizeof p, "jobs/%s", id);
	cr_assert_eq(entries(p), 2, "rcpt and job.json only");
}

/* A table of the first format (no index) still reads, by a scan. */
Test(sched_spool, first_format_table_reads)
{
	char id[SCHED_ID_LEN + 1], err[256], p[160];
	size_t first;
	sched_new_id(id);
	struct sched_intake *in = sched_intake_begin(sp, id, err, sizeof err);
	struct sched_rcpt a = mk("ann@example.net", "Ann", "k", "v");
	cr_assert_eq(sched_intake_add(in, &a, &first), 0);
	cr_assert_eq(sched_intake_commit(in, "{}", 2), 0);
	/* rewrite it as the first format wrote it: 16-octet header, records */
	snprintf(p, sizeof p, "%s/jobs/%s/rcpt", dir, id);
	FILE *f = fopen(p, "r+b");
	cr_assert_not_null(f);
	char buf[4096];
	size_t n = fread(buf, 1, sizeof buf, f);
	uint64_t at, count;
	memcpy(&count, buf + 8, 8);
	memcpy(&at, buf + 16, 8);
	cr_assert_eq(count, 1);
	cr_assert_lt(at, n);
	char old[4096];
	memcpy(old, "VLRCPT01", 8);
	memcpy(old + 8, &count, 8);
	size_t rec = at - 24;             /* records (and padding) */
	memcpy(old + 16, buf + 24, rec);
	fclose(f);
	f = fopen(p, "wb");
	fwrite(old, 1, 16 + rec, f);
	fclose(f);
	struct sched_table *t = sched_table_open(sp, id);
	cr_assert_not_null(t);
	struct sched_rcpt r;
	cr_assert_eq(sched_table_get(t, 0, &r), 0);
	cr_assert_str_eq(r.email, "ann@example.net");
	cr_assert_str_eq(r.vals[0], "v");
	sched_table_close(t);
	/* a damaged index is refused, not followed */
	f = fopen(p, "wb");
	memcpy(buf + 16, &(uint64_t){ 1u << 30 }, 8);
	fwrite(buf, 1, n, f);
	fclose(f);
	cr_assert_null(sched_table_open(sp, id));
}

Test(sched_spool, leftovers_in_tmp_removed_at_open)
{
	char p[128], err[256];
	snprintf(p, sizeof p, "%s/tmp/0000-dead", dir);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/tmp/0000-dead/rcpt", dir);
	FILE *f = fopen(p, "w");
	fputs("x", f);
	fclose(f);
	struct sched_spool *s2 = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(s2);
	cr_assert_eq(entries("tmp"), 0);
	sched_spool_close(s2);
}

Test(sched_spool, ids_unique_and_ordered)
{
	char a[SCHED_ID_LEN + 1], b[SCHED_ID_LEN + 1];
	sched_new_id(a);
	for (int i = 0; i < 1000; i++) {
		sched_new_id(b);
		cr_assert_eq(strlen(b), SCHED_ID_LEN);
		cr_assert_neq(strcmp(a, b), 0);
		cr_assert_leq(strncmp(a, b, 12), 0);
		strcpy(a, b);
	}
}
