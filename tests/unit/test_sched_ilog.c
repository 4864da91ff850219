/* scheduler/: the spool's intake log. Small jobs made durable by a record
 * in data_dir/ilog/ (group commit), their files restored from it after a
 * crash, checkpoints that remove what is durable in jobs/. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../scheduler/spool_int.h"
#include "unit.h"

static char dir[64];
static struct sched_spool *sp;

static void setup(void)
{
	char err[256];
	unit_tmpdir(dir, sizeof dir, "ilog");
	sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(sched_spool_ilog_start(sp, 0, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
	sched_spool_close(sp);
	unit_rmdir(dir);
}

TestSuite(sched_ilog, .init = setup, .fini = teardown);

/* The log as it stands copied aside (close checkpoints it away), and put
 * back after the close: what a kill -9 would leave. */
static void shell(const char *fmt, const char *a)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, fmt, a, a, a);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void crash_copy(void)
{
	shell("cp -r '%s/ilog' '%s/ilog.crash'", dir);
}

static void crash_restore(void)
{
	shell("rm -rf '%s/ilog' && mv '%s/ilog.crash' '%s/ilog'", dir);
}

static size_t entries(const char *sub)
{
	char p[160];
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

/* The segments' octets, summed: records beyond the headers. */
static long long seg_bytes(void)
{
	char p[160];
	long long n = 0;
	snprintf(p, sizeof p, "%s/ilog", dir);
	DIR *d = opendir(p);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char f[400];
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(f, sizeof f, "%.160s/%.200s", p, e->d_name);
		if (stat(f, &st) == 0)
			n += st.st_size - 8;
	}
	if (d)
		closedir(d);
	return n;
}

/* A job of n recipients u<i>@example.net committed; its id into id. */
static void job(struct sched_spool *s, size_t n, const char *json, char *id)
{
	char err[256], email[64];
	size_t first;
	sched_new_id(id);
	struct sched_intake *in = sched_intake_begin(s, id, err, sizeof err);
	cr_assert_not_null(in, "%s", err);
	for (size_t i = 0; i < n; i++) {
		snprintf(email, sizeof email, "u%zu@example.net", i);
		struct sched_rcpt r = { .email = email, .email_len = strlen(email) };
		cr_assert_eq(sched_intake_add(in, &r, &first), 0);
	}
	cr_assert_eq(sched_intake_commit(in, json, strlen(json)), 0, "%s", strerror(errno));
}

static void slurp(const char *path, struct vl_buf *out)
{
	FILE *f = fopen(path, "rb");
	char buf[4096];
	size_t n;
	vl_buf_reset(out);
	cr_assert_not_null(f, "%s", path);
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		vl_buf_append(out, buf, n);
	fclose(f);
}

static void job_file(const char *id, enum sched_spool_file f, char *out, size_t n)
{
	cr_assert_eq(sched_spool_path(sp, id, f, out, n), 0);
}

Test(sched_ilog, record_round_trip_torn_and_damaged)
{
	struct vl_buf b;
	struct sched_ilog_rec r = { .kind = SCHED_ILOG_JOB, .nfiles = 2 }, d;
	vl_buf_init(&b);
	snprintf(r.id, sizeof r.id, "0194c1d2e3f4-5a6b7c8d");
	r.f[0] = (struct sched_ilog_file){ SCHED_SPOOL_JOB, "{\"a\":1}", 7 };
	r.f[1] = (struct sched_ilog_file){ SCHED_SPOOL_RCPT, "\0\1\2", 3 };
	sched_ilog_encode(&b, &r);
	long k = sched_ilog_decode(b.p, b.len, &d);
	cr_assert_eq(k, (long)b.len);
	cr_assert_eq(d.kind, SCHED_ILOG_JOB);
	cr_assert_str_eq(d.id, r.id);
	cr_assert_eq(d.nfiles, 2);
	cr_assert_eq(d.f[0].which, SCHED_SPOOL_JOB);
	cr_assert_eq(d.f[0].n, 7);
	cr_assert_eq(memcmp(d.f[0].p, "{\"a\":1}", 7), 0);
	cr_assert_eq(d.f[1].n, 3);
	cr_assert_eq(memcmp(d.f[1].p, "\0\1\2", 3), 0);
	/* every shorter prefix is a torn record, not a damaged one */
	for (size_t n = 0; n < b.len; n++)
		cr_assert_eq(sched_ilog_decode(b.p, n, &d), 0, "%zu", n);
	/* a flipped bit anywhere past the length is damage */
	for (size_t i = 4; i < b.len; i++) {
		b.p[i] ^= 0x10;
		cr_assert_eq(sched_ilog_decode(b.p, b.len, &d), -1, "octet %zu", i);
		b.p[i] ^= 0x10;
	}
	/* a record that names no job file, or a bad id, is refused even with a
	 * good CRC */
	vl_buf_reset(&b);
	r.f[1].which = SCHED_SPOOL_JOURNAL;
	sched_ilog_encode(&b, &r);
	cr_assert_eq(sched_ilog_decode(b.p, b.len, &d), -1);
	vl_buf_reset(&b);
	r.f[1].which = SCHED_SPOOL_RCPT;
	snprintf(r.id, sizeof r.id, "../../../etc/passwd!!");
	sched_ilog_encode(&b, &r);
	cr_assert_eq(sched_ilog_decode(b.p, b.len, &d), -1);
	vl_buf_free(&b);
}

Test(sched_ilog, small_job_logged_no_scratch_files)
{
	char id[SCHED_ID_LEN + 1];
	cr_assert_eq(seg_bytes(), 0);
	job(sp, 3, "{\"small\":true}", id);
	cr_assert_eq(entries("jobs"), 1);
	cr_assert_eq(entries("tmp"), 0);
	cr_assert_gt(seg_bytes(), 0, "the job's record is in the log");
	/* only the table and job.json: no dedup or index file was made */
	char p[160];
	snprintf(p, sizeof p, "jobs/%s", id);
	cr_assert_eq(entries(p), 2);
	struct sched_table *t = sched_table_open(sp, id);
	cr_assert_not_null(t);
	cr_assert_eq(sched_table_count(t), 3);
	sched_table_close(t);
}

Test(sched_ilog, big_job_not_logged)
{
	char id[SCHED_ID_LEN + 1];
	/* over 1 MB of table: the fsync path, nothing in the log */
	job(sp, 40000, "{}", id);
	cr_assert_eq(seg_bytes(), 0);
	struct sched_table *t = sched_table_open(sp, id);
	cr_assert_not_null(t);
	cr_assert_eq(sched_table_count(t), 40000);
	sched_table_close(t);
}

/* kill -9 after the 202, before the checkpoint: the job's files may be
 * torn or gone; the next open restores them from the log, byte for byte,
 * and keeps what the job has beside them (its journal). */
Test(sched_ilog, replay_restores_torn_and_missing_jobs)
{
	char a[SCHED_ID_LEN + 1], b[SCHED_ID_LEN + 1], err[256], path[PATH_MAX], dpath[PATH_MAX];
	struct vl_buf before, after, rcpt;
	vl_buf_init(&before);
	vl_buf_init(&after);
	vl_buf_init(&rcpt);
	job(sp, 2, "{\"job\":\"a\"}", a);
	job(sp, 5, "{\"job\":\"b\"}", b);
	job_file(a, SCHED_SPOOL_JOB, path, sizeof path);
	slurp(path, &before);
	job_file(b, SCHED_SPOOL_RCPT, path, sizeof path);
	slurp(path, &rcpt);
	/* the crash: a's job.json torn, a journal beside it; b's directory
	 * never reached the disk. The log (fdatasync'd) is all there. */
	job_file(a, SCHED_SPOOL_JOB, path, sizeof path);
	cr_assert_eq(truncate(path, 3), 0);
	job_file(a, SCHED_SPOOL_JOURNAL, path, sizeof path);
	FILE *f = fopen(path, "w");
	fputs("journal", f);
	fclose(f);
	job_file(b, SCHED_SPOOL_DIR, dpath, sizeof dpath);
	unit_rmdir(dpath);
	crash_copy();
	sched_spool_close(sp);
	crash_restore();
	sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(seg_bytes(), 0, "replayed, then removed");
	job_file(a, SCHED_SPOOL_JOB, path, sizeof path);
	slurp(path, &after);
	cr_assert_eq(after.len, before.len);
	cr_assert_eq(memcmp(after.p, before.p, before.len), 0);
	job_file(a, SCHED_SPOOL_JOURNAL, path, sizeof path);
	slurp(path, &after);
	cr_assert_eq(after.len, 7, "the journal beside it is kept");
	job_file(b, SCHED_SPOOL_RCPT, path, sizeof path);
	slurp(path, &after);
	cr_assert_eq(after.len, rcpt.len);
	cr_assert_eq(memcmp(after.p, rcpt.p, rcpt.len), 0);
	struct sched_table *t = sched_table_open(sp, b);
	cr_assert_not_null(t);
	cr_assert_eq(sched_table_count(t), 5);
	sched_table_close(t);
	cr_assert_eq(entries("tmp"), 0);
	cr_assert_eq(sched_spool_ilog_start(sp, 0, err, sizeof err), 0, "%s", err);
	vl_buf_free(&before);
	vl_buf_free(&after);
	vl_buf_free(&rcpt);
}

/* A torn last record (the crash came during the write: no 202 was sent)
 * ends the replay; the records before it are restored. */
Test(sched_ilog, torn_tail_ignored)
{
	char a[SCHED_ID_LEN + 1], err[256], p[PATH_MAX], seg[PATH_MAX] = "", adir[PATH_MAX];
	job(sp, 1, "{}", a);
	job_file(a, SCHED_SPOOL_DIR, adir, sizeof adir);
	crash_copy();
	sched_spool_close(sp);
	snprintf(p, sizeof p, "%s/ilog.crash", dir);
	DIR *d = opendir(p);
	struct dirent *e;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".seg"))
			snprintf(seg, sizeof seg, "%.2000s/%.200s", p, e->d_name);
	closedir(d);
	FILE *f = fopen(seg, "ab");
	fwrite("\100\0\0\0\1\2\3\4partial", 1, 15, f);
	fclose(f);
	crash_restore();
	unit_rmdir(adir);
	sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
	cr_assert_eq(entries("jobs"), 1, "the whole record before the torn one");
	cr_assert_eq(sched_spool_ilog_start(sp, 0, err, sizeof err), 0, "%s", err);
}

struct th {
	int n;
	char ids[20][SCHED_ID_LEN + 1];
};

static void *committer(void *arg)
{
	struct th *t = arg;
	for (int i = 0; i < t->n; i++)
		job(sp, 1, "{\"thread\":true}", t->ids[i]);
	return NULL;
}

/* Eight threads at once: every job in jobs/ and in the log, in fewer
 * writes than jobs (shared fdatasyncs); a checkpoint removes the records
 * and moves the clean time on. */
Test(sched_ilog, group_commit_and_checkpoint)
{
	pthread_t th[8];
	struct th t[8];
	for (int i = 0; i < 8; i++) {
		t[i].n = 20;
		pthread_create(&th[i], NULL, committer, &t[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(entries("jobs"), 160);
	double before = sched_spool_ilog_clean(sp);
	cr_assert(isfinite(before));
	cr_assert_gt(seg_bytes(), 0);
	/* the thread checkpoints about every second; the clean time moves
	 * once the old segment's removal is durable */
	for (int i = 0; i < 40 && (seg_bytes() > 0 || sched_spool_ilog_clean(sp) <= before); i++)
		usleep(100000);
	cr_assert_eq(seg_bytes(), 0, "checkpointed: the records are gone");
	cr_assert_gt(sched_spool_ilog_clean(sp), before);
	for (int i = 0; i < 8; i++)
		for (int k = 0; k < 20; k++) {
			struct sched_table *tb = sched_table_open(sp, t[i].ids[k]);
			cr_assert_not_null(tb);
			sched_table_close(tb);
		}
}

Test(sched_ilog, no_log_no_clean_limit)
{
	char err[256], d2[64];
	unit_tmpdir(d2, sizeof d2, "ilog2");
	struct sched_spool *s = sched_spool_open(d2, err, sizeof err);
	cr_assert_not_null(s, "%s", err);
	cr_assert(isinf(sched_spool_ilog_clean(s)));
	sched_spool_close(s);
	unit_rmdir(d2);
}
