/* submit/: the submission log. Its records (round trip, every flipped bit
 * and cut caught, CRC32C against a bitwise reference), recovery (a torn
 * last record ignored; a crash between making the jobs and deleting the
 * segment: complete jobs kept, incomplete ones made again, nothing twice),
 * a failed write cut back so that its records never come back, the
 * queue's bound, the checks, the job.json of a verbatim job, rotation,
 * a job that cannot be made tried again; and many items from several
 * threads becoming jobs with their recipients and octets. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../submit/log_int.h"
#include "unit.h"

static char dir[64];
static struct cfg cfg;
static struct sched_spool *sp;

static void setup(void)
{
	char err[256];

	unit_tmpdir(dir, sizeof dir, "sublog");
	memset(&cfg, 0, sizeof cfg);
	cfg.data_dir = dir;
	cfg.max_message_size = 1 << 20;
	cfg.max_age_ms = 3 * 86400000ull;
	sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
}

static void teardown(void)
{
	sched_spool_close(sp);
	unit_rmdir(dir);
}

TestSuite(submit_log, .init = setup, .fini = teardown);

/* ---- items and their answers ---- */

struct slot {
	atomic_int state;             /* 0 waiting, 1 answered */
	int rc, err;
	char id[SCHED_ID_LEN + 1];
	char msg[512];
	size_t len;
	const char *rcpts[3];
	char rbuf[3][64];
	size_t nrcpt;
};

static void done(void *arg, int rc, const char *id)
{
	struct slot *s = arg;

	s->err = rc ? errno : 0;
	s->rc = rc;
	snprintf(s->id, sizeof s->id, "%s", id);
	atomic_store(&s->state, 1);
}

/* Item k: its own recipients and message (8-bit, "{{", a dotted line). */
static void fill(struct slot *s, size_t k)
{
	s->nrcpt = 1 + k % 3;
	for (size_t i = 0; i < s->nrcpt; i++) {
		snprintf(s->rbuf[i], sizeof s->rbuf[i], "r%zu.%zu@d%zu.example", k, i, k % 5);
		s->rcpts[i] = s->rbuf[i];
	}
	s->len = (size_t)snprintf(s->msg, sizeof s->msg, "From: App <app@example.com>\r\n"
				  "Subject: item %zu\r\nMessage-ID: <%zu@example.com>\r\n\r\n"
				  "Caf\xe9 {{ item }} %zu\r\n.\r\nend\r\n", k, k, k);
}

static struct sub_item item(struct slot *s)
{
	return (struct sub_item){ .sender = "bounces@example.com", .rcpts = s->rcpts,
				  .nrcpt = s->nrcpt, .msg = s->msg, .len = s->len,
				  .done = done, .arg = s };
}

static void put(struct sub_log *l, struct slot *s, size_t k)
{
	fill(s, k);
	struct sub_item it = item(s);
	cr_assert_eq(sub_log_put(l, &it), 0, "put %zu: %s", k, strerror(errno));
}

static void wait_answered(struct slot *s, size_t n)
{
	for (int t = 0; t < 30000; t++) {
		size_t k = 0;
		while (k < n && atomic_load(&s[k].state))
			k++;
		if (k == n)
			return;
		usleep(1000);
	}
	cr_assert_fail("not every item was answered within 30 s");
}

static size_t count(const char *sub, const char *suffix)
{
	char p[128];
	size_t n = 0;
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	DIR *d = opendir(p);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		n += e->d_name[0] != '.' && l >= strlen(suffix) &&
		     !strcmp(e->d_name + l - strlen(suffix), suffix);
	}
	if (d)
		closedir(d);
	return n;
}

static char *segment(int i)  /* the i-th segment's path, sorted */
{
	static char path[512];
	char p[128];
	struct dirent **list;
	snprintf(p, sizeof p, "%s/submit", dir);
	int n = scandir(p, &list, NULL, alphasort), k = 0;
	path[0] = 0;
	for (int j = 0; j < n; j++) {
		if (strstr(list[j]->d_name, ".seg") && k++ == i)
			snprintf(path, sizeof path, "%s/%s", p, list[j]->d_name);
		free(list[j]);
	}
	free(list);
	cr_assert(path[0], "no segment %d", i);
	return path;
}

static off_t size_of(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "%s", path);
	return st.st_size;
}

/* The job of slot s is in the spool with its recipients and octets. */
static void check_job(const struct slot *s)
{
	char path[512];
	struct sched_table *t = sched_table_open(sp, s->id);
	struct sched_rcpt r;

	cr_assert_not_null(t, "job %s", s->id);
	cr_assert_eq(sched_table_count(t), s->nrcpt);
	for (size_t i = 0; i < s->nrcpt; i++) {
		cr_assert_eq(sched_table_get(t, i, &r), 0);
		cr_assert_str_eq(r.email, s->rcpts[i]);
	}
	sched_table_close(t);
	cr_assert_eq(sched_spool_path(sp, s->id, SCHED_SPOOL_MESSAGE, path, sizeof path), 0);
	FILE *f = fopen(path, "rb");
	char buf[600];
	cr_assert_not_null(f, "%s", path);
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	cr_assert_eq(n, s->len);
	cr_assert(!memcmp(buf, s->msg, n), "octets of %s", s->id);
	cr_assert_eq(sched_spool_path(sp, s->id, SCHED_SPOOL_JOB, path, sizeof path), 0);
	json_t *meta = json_load_file(path, 0, NULL), *job = json_object_get(meta, "job");
	cr_assert_not_null(meta);
	cr_assert(json_is_true(json_object_get(job, "raw_message")));
	cr_assert_null(json_object_get(job, "content"));
	cr_assert_str_eq(json_string_value(json_object_get(job, "envelope_sender")),
			 "bounces@example.com");
	cr_assert_eq(json_integer_value(json_object_get(meta, "recipients")), (json_int_t)s->nrcpt);
	json_decref(meta);
}

static bool job_dir(const char *id)
{
	char path[512];
	return sched_spool_path(sp, id, SCHED_SPOOL_DIR, path, sizeof path) == 0 &&
	       access(path, F_OK) == 0;
}

/* ---- records ---- */

static uint32_t crc_ref(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

Test(submit_log, crc32c)
{
	unsigned char buf[300];

	cr_assert_eq(vl_crc32c(0, "123456789", 9), 0xe3069283u, "the check value");
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	for (size_t off = 0; off < 9; off++)
		for (size_t n = 0; n + off <= sizeof buf; n += 13) {
			cr_assert_eq(vl_crc32c(0, buf + off, n), crc_ref(buf + off, n), "%zu+%zu",
				     off, n);
			/* continued in two pieces */
			cr_assert_eq(vl_crc32c(vl_crc32c(0, buf + off, n / 3), buf + off + n / 3,
						n - n / 3), crc_ref(buf + off, n));
		}
}

static void encode_full(const struct sub_rec *r, struct vl_buf *b)
{
	vl_buf_reset(b);
	sub_rec_encode(r, b);
	vl_buf_append(b, r->msg, r->len);
}

Test(submit_log, record_round_trip_and_damage)
{
	const char *rc[] = {"a@b.example", "j\xc3\xb6rg@c.example"};
	struct sub_rec r = { .flags = SUB_F_TRANSACTIONAL | SUB_F_REQUIRE_TLS, .created = 1.5e9,
			     .expires_in_ms = 3600000, .sender = "", .campaign = "spring",
			     .user = "app", .client = "127.0.0.1", .nrcpt = 2, .rcpts = rc,
			     .msg = "From: x@y.example\r\n\r\n\xff\r\n", .len = 25 }, d;
	struct vl_buf b;

	sched_new_id(r.id);
	vl_buf_init(&b);
	encode_full(&r, &b);
	cr_assert_eq(sub_rec_decode(b.p, b.len, &d), 0);
	cr_expect_str_eq(d.id, r.id);
	cr_expect_eq(d.flags, r.flags);
	cr_expect_eq(d.created, r.created);
	cr_expect_eq(d.expires_in_ms, r.expires_in_ms);
	cr_expect_str_eq(d.sender, "", "the null sender kept as \"\"");
	cr_expect_str_eq(d.campaign, "spring");
	cr_expect_null(d.rate_limit, "absent stays absent");
	cr_expect_str_eq(d.user, "app");
	cr_expect_str_eq(d.client, "127.0.0.1");
	cr_assert_eq(d.nrcpt, 2);
	cr_expect_str_eq(d.rcpts[1], rc[1]);
	cr_assert_eq(d.len, r.len);
	cr_expect(!memcmp(d.msg, r.msg, r.len));
	sub_rec_free(&d);
	/* every single flipped bit, and every cut, is caught */
	for (size_t i = 0; i < b.len; i++)
		for (int bit = 0; bit < 8; bit++) {
			b.p[i] ^= (char)(1 << bit);
			cr_assert_eq(sub_rec_decode(b.p, b.len, &d), -1, "octet %zu bit %d", i, bit);
			b.p[i] ^= (char)(1 << bit);
		}
	for (size_t n = 0; n < b.len; n++)
		cr_assert_eq(sub_rec_decode(b.p, n, &d), -1, "cut at %zu", n);
	/* an empty recipient (never written: found by fuzz_verbatim) */
	const char *empty[] = {"a@b.example", ""};
	r.rcpts = empty;
	encode_full(&r, &b);
	cr_assert_eq(sub_rec_decode(b.p, b.len, &d), -1);
	vl_buf_free(&b);
}

/* ---- recovery ---- */

static struct sub_log *bare(struct sched *sc)
{
	char err[256];
	struct sub_log *l = sub_log_open_bare(&cfg, sp, sc, NULL, err, sizeof err);
	cr_assert_not_null(l, "%s", err);
	return l;
}

static struct sub_log *open_log(struct sched *sc, const struct sub_log_opts *o)
{
	char err[256];
	struct sub_log *l = sub_log_open_opts(&cfg, sp, sc, o, err, sizeof err);
	cr_assert_not_null(l, "%s", err);
	return l;
}

Test(submit_log, torn_last_record_is_ignored)
{
	struct slot s[4] = {0};
	struct sub_log *l = bare(NULL);

	for (size_t k = 0; k < 3; k++)
		put(l, &s[k], k);
	sub_log_commit_step(l);
	for (size_t k = 0; k < 3; k++)
		cr_assert(s[k].state && s[k].rc == 0, "item %zu durable", k);
	sub_log_abandon(l);          /* a crash: nothing made, nothing deleted */
	cr_assert_eq(count("jobs", ""), 0);
	/* half of a fourth record, as a torn write leaves it */
	fill(&s[3], 3);
	struct sub_rec r = { .sender = "a@b.example", .rcpts = s[3].rcpts, .nrcpt = 1,
			     .msg = s[3].msg, .len = s[3].len };
	struct vl_buf b;
	vl_buf_init(&b);
	sched_new_id(r.id);
	encode_full(&r, &b);
	int fd = open(segment(0), O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, b.p, b.len / 2), (ssize_t)(b.len / 2));
	close(fd);
	vl_buf_free(&b);

	l = open_log(NULL, NULL);
	struct sub_log_stats st;
	sub_log_stats(l, &st);
	cr_expect_eq(st.jobs, 3);
	cr_expect_eq(st.recovered, 3);
	cr_expect_eq(st.segments, 1);
	sub_log_close(l);
	cr_assert_eq(count("jobs", ""), 3);
	cr_assert_eq(count("submit", ".seg"), 0, "the segment is gone");
	for (size_t k = 0; k < 3; k++)
		check_job(&s[k]);
	cr_assert_not(job_dir(r.id), "the torn record made no job");
}

Test(submit_log, zeroes_or_a_bad_checksum_at_the_end)
{
	struct slot s[2] = {0};
	struct sub_log *l = bare(NULL);

	put(l, &s[0], 0);
	sub_log_commit_step(l);
	put(l, &s[1], 1);
	sub_log_commit_step(l);
	sub_log_abandon(l);
	/* the second record's last octet changed, then zeroes (preallocated) */
	int fd = open(segment(0), O_RDWR);
	off_t end = size_of(segment(0));
	char c;
	cr_assert_eq(pread(fd, &c, 1, end - 1), 1);
	c ^= 0x40;
	cr_assert_eq(pwrite(fd, &c, 1, end - 1), 1);
	cr_assert_eq(ftruncate(fd, end + 4096), 0);
	close(fd);
	sub_log_close(open_log(NULL, NULL));
	cr_assert(job_dir(s[0].id));
	cr_assert_not(job_dir(s[1].id));
	check_job(&s[0]);
}

Test(submit_log, crash_between_making_jobs_and_deleting_the_segment)
{
	struct slot s[3] = {0};
	char path[512], err[256];
	struct stat before, after;
	struct sub_log *l = bare(NULL);

	for (size_t k = 0; k < 3; k++)
		put(l, &s[k], k);
	sub_log_commit_step(l);
	sub_log_materialise_step(l, false);   /* jobs made, no syncfs, no delete */
	sub_log_abandon(l);
	cr_assert_eq(count("jobs", ""), 3);
	cr_assert_eq(count("submit", ".seg"), 1);
	/* what a crash before the syncfs may do: a file lost, one empty */
	cr_assert_eq(sched_spool_path(sp, s[0].id, SCHED_SPOOL_JOB, path, sizeof path), 0);
	cr_assert_eq(stat(path, &before), 0);
	cr_assert_eq(sched_spool_path(sp, s[1].id, SCHED_SPOOL_MESSAGE, path, sizeof path), 0);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(sched_spool_path(sp, s[2].id, SCHED_SPOOL_JOB, path, sizeof path), 0);
	cr_assert_eq(truncate(path, 0), 0);

	/* as volleyd starts: the registry first, then the log */
	struct sched *sc = sched_new(&cfg, sp, err, sizeof err);
	cr_assert_not_null(sc, "%s", err);
	json_t *j = sched_job_json(sc, s[2].id);
	cr_assert_null(j, "the registry skipped the job with an empty job.json");
	l = open_log(sc, NULL);
	struct sub_log_stats st;
	sub_log_stats(l, &st);
	cr_expect_eq(st.recovered, 2, "the two incomplete jobs made again, the whole one kept");
	sub_log_close(l);
	cr_assert_eq(count("submit", ".seg"), 0);
	cr_assert_eq(count("jobs", ""), 3, "nothing twice");
	cr_assert_eq(sched_spool_path(sp, s[0].id, SCHED_SPOOL_JOB, path, sizeof path), 0);
	cr_assert_eq(stat(path, &after), 0);
	cr_expect_eq(before.st_ino, after.st_ino, "the complete job was not made again");
	for (size_t k = 0; k < 3; k++) {
		check_job(&s[k]);
		j = sched_job_json(sc, s[k].id);
		cr_assert_not_null(j, "job %zu known to the registry", k);
		cr_expect_eq(json_integer_value(json_object_get(j, "recipients")),
			     (json_int_t)s[k].nrcpt);
		json_decref(j);
	}
	json_t *all = sched_jobs_json(sc, 100);
	cr_expect_eq(json_array_size(json_object_get(all, "jobs")), 3, "%s",
		     json_dumps(all, 0));
	json_decref(all);
	/* and again: nothing left to do */
	l = open_log(sc, NULL);
	sub_log_stats(l, &st);
	cr_expect_eq(st.jobs, 0);
	sub_log_close(l);
	sched_free(sc);
}

Test(submit_log, a_failed_write_is_cut_back_and_never_recovered)
{
	struct slot s[5] = {0};
	struct sub_log *l = bare(NULL);
	struct rlimit rl;

	put(l, &s[0], 0);
	put(l, &s[1], 1);
	sub_log_commit_step(l);
	cr_assert(s[0].rc == 0 && s[1].rc == 0);
	off_t good = size_of(segment(0));
	/* the file may not grow past the middle of the next batch */
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &rl);
	struct rlimit small = { (rlim_t)good + 300, rl.rlim_max };
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
	put(l, &s[2], 2);
	put(l, &s[3], 3);
	sub_log_commit_step(l);
	for (int k = 2; k < 4; k++) {
		cr_assert(s[k].state, "answered");
		cr_assert_eq(s[k].rc, -1);
		cr_assert_eq(s[k].err, EFBIG, "%s", strerror(s[k].err));
	}
	cr_assert_eq(size_of(segment(0)), good, "cut back to the last durable record");
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	put(l, &s[4], 4);
	sub_log_commit_step(l);
	cr_assert_eq(s[4].rc, 0, "the log goes on after a failed batch");
	struct sub_log_stats st;
	sub_log_stats(l, &st);
	cr_expect_eq(st.accepted, 3);
	cr_expect_eq(st.failed, 2);
	sub_log_abandon(l);
	sub_log_close(open_log(NULL, NULL));
	for (int k = 0; k < 5; k++)
		cr_expect_eq(job_dir(s[k].id), s[k].rc == 0, "item %d", k);
	check_job(&s[4]);
}

Test(submit_log, refused_while_the_spool_is_short_of_space)
{
	struct slot s[2] = {0};
	struct sub_log *l = bare(NULL);

	cfg.spool.min_free = UINT64_MAX;
	put(l, &s[0], 0);
	sub_log_commit_step(l);
	cr_assert(s[0].state);
	cr_assert_eq(s[0].rc, -1);
	cr_assert_eq(s[0].err, ENOSPC, "452 4.3.1 for the client");
	cfg.spool.min_free = 0;
	put(l, &s[1], 1);
	sub_log_commit_step(l);
	cr_assert_eq(s[1].rc, 0);
	sub_log_close(l);
	cr_assert_not(job_dir(s[0].id));
	check_job(&s[1]);
}

Test(submit_log, a_job_that_cannot_be_made_is_tried_again)
{
	struct slot s[1] = {0};
	char tmp[128], moved[128];
	struct sub_log *l = bare(NULL);

	put(l, &s[0], 0);
	sub_log_commit_step(l);
	snprintf(tmp, sizeof tmp, "%s/tmp", dir);
	snprintf(moved, sizeof moved, "%s/tmp.away", dir);
	cr_assert_eq(rename(tmp, moved), 0);
	cr_assert_eq(close(open(tmp, O_CREAT | O_WRONLY, 0600)), 0);  /* tmp/ a file */
	sub_log_materialise_step(l, true);
	cr_assert_not(job_dir(s[0].id));
	cr_assert_eq(count("submit", ".seg"), 1, "kept while its job is not made");
	cr_assert_eq(unlink(tmp), 0);
	cr_assert_eq(rename(moved, tmp), 0);
	sub_log_close(l);             /* closes the segment, makes the job, deletes it */
	check_job(&s[0]);
	cr_assert_eq(count("submit", ".seg"), 0);
}

/* ---- limits, checks, the job's shape ---- */

Test(submit_log, queue_bound_and_checks)
{
	struct sub_log_opts o = { .queue_max = 4 };
	struct sub_log *l = open_log(NULL, &o);
	struct slot s[6] = {0};
	char why[200];

	sub_log_hold(l, true);
	for (size_t k = 0; k < 4; k++)
		put(l, &s[k], k);
	fill(&s[4], 4);
	struct sub_item it = item(&s[4]);
	errno = 0;
	cr_assert_eq(sub_log_put(l, &it), -1);
	cr_assert_eq(errno, EAGAIN, "the fifth waits: try later");
	sub_log_hold(l, false);
	wait_answered(s, 4);
	cr_assert_not(s[4].state, "a refused put is never answered");

	/* the checks, with a reason for the SMTP reply */
	fill(&s[5], 5);
	it = item(&s[5]);
	s[5].rbuf[1][0] = '@';
	it.nrcpt = 2;
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	cr_expect_eq(errno, EINVAL);
	cr_expect(strstr(why, "recipient 2"), "%s", why);
	cr_assert_eq(sub_log_put(l, &it), -1);
	fill(&s[5], 5);
	it = item(&s[5]);
	it.sender = "not an address";
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	cr_expect(strstr(why, "sender"), "%s", why);
	it = item(&s[5]);
	it.msg = "Subject: no from\r\n\r\nx\r\n";
	it.len = strlen(it.msg);
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	cr_expect_eq(errno, EINVAL);
	cr_expect(strstr(why, "no From field"), "%s", why);
	it = item(&s[5]);
	cfg.max_message_size = s[5].len - 1;
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	cr_expect_eq(errno, EMSGSIZE, "over max_message_size");
	cfg.max_message_size = 1 << 20;
	it.rate_limit = "fast";
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	it = item(&s[5]);
	it.expires_in_ms = 1000;
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	it = item(&s[5]);
	it.user = "bad\r\nuser";
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	it = item(&s[5]);
	it.campaign = "\xff\xfe";
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1, "campaign not UTF-8");
	it = item(&s[5]);
	snprintf(it.id, sizeof it.id, "../../etc");
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	it = item(&s[5]);
	memcpy(it.id, s[0].id, sizeof it.id);
	for (int t = 0; t < 3000 && !job_dir(s[0].id); t++)
		usleep(1000);
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1, "an id that is taken");
	cr_expect_eq(errno, EEXIST);
	it = item(&s[5]);
	it.nrcpt = 0;
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), -1);
	it = item(&s[5]);
	cr_assert_eq(sub_log_check(l, &it, why, sizeof why), 0);
	struct sub_log_stats st;
	sub_log_stats(l, &st);
	cr_expect_eq(st.refused, 2);
	sub_log_close(l);
	cr_assert_eq(count("jobs", ""), 4);
}

Test(submit_log, job_json_of_a_verbatim_job)
{
	struct sub_log *l = open_log(NULL, NULL);
	struct slot s = {0};
	const char *rc[] = {"ann@example.net", "bob@example.net", "ann@EXAMPLE.net"};

	fill(&s, 0);
	struct sub_item it = item(&s);
	sched_new_id(it.id);
	it.rcpts = rc;
	it.nrcpt = 3;
	it.sender = "";
	it.campaign = "receipts";
	it.transactional = true;
	it.expires_in_ms = 3600000;
	it.rate_limit = "50/s";
	it.no_dkim = true;
	it.require_tls = true;
	it.user = "shop";
	it.client = "192.0.2.7";
	cr_assert_eq(sub_log_put(l, &it), 0);
	sub_log_close(l);
	cr_assert_str_eq(s.id, it.id, "the caller's id is the job's");
	char path[512];
	cr_assert_eq(sched_spool_path(sp, it.id, SCHED_SPOOL_JOB, path, sizeof path), 0);
	json_t *m = json_load_file(path, 0, NULL);
	cr_assert_not_null(m);
	json_t *want = json_pack("{s:s, s:b, s:s, s:s, s:s, s:s, s:b, s:b}",
				 "envelope_sender", "", "raw_message", 1, "priority",
				 "transactional", "campaign", "receipts", "expires_in", "3600s",
				 "rate_limit", "50/s", "dkim", 0, "require_tls", 1);
	cr_expect(json_equal(json_object_get(m, "job"), want), "%s",
		  json_dumps(json_object_get(m, "job"), 0));
	json_decref(want);
	cr_expect_str_eq(json_string_value(json_object_get(m, "id")), it.id);
	cr_expect_eq(json_integer_value(json_object_get(m, "recipients")), 2, "the duplicate once");
	double created = json_number_value(json_object_get(m, "created"));
	cr_expect_gt(created, 1.6e9);
	cr_expect_eq(json_number_value(json_object_get(m, "expires")), created + 3600);
	json_t *acc = json_object_get(m, "accept");
	cr_expect_eq(json_integer_value(json_object_get(acc, "fail_count")), 1);
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(acc,
				"failed_recipients"), 0)), "ann@EXAMPLE.net");
	want = json_pack("{s:s, s:s, s:s, s:I}", "protocol", "smtp", "user", "shop", "client",
			 "192.0.2.7", "size", (json_int_t)s.len);
	cr_expect(json_equal(json_object_get(m, "submission"), want), "%s",
		  json_dumps(json_object_get(m, "submission"), 0));
	json_decref(want);
	json_decref(m);
}

Test(submit_log, segments_rotate_and_go)
{
	struct sub_log_opts o = { .segment_bytes = 2048 };
	struct sub_log *l = open_log(NULL, &o);
	struct slot s[40] = {0};

	for (size_t k = 0; k < 40; k++) {
		put(l, &s[k], k);
		wait_answered(&s[k], 1);     /* one batch each: a segment every few */
	}
	struct sub_log_stats st;
	for (int t = 0; t < 1000; t++) {
		sub_log_stats(l, &st);
		if (st.segments >= 3)
			break;
		usleep(10000);
	}
	cr_assert_geq(st.segments, 3, "closed past 2 KB, deleted once their jobs were made");
	sub_log_close(l);
	cr_assert_eq(count("submit", ".seg"), 0);
	cr_assert_eq(count("jobs", ""), 40);
	for (size_t k = 0; k < 40; k++)
		check_job(&s[k]);
}

/* ---- many sessions at once ---- */

#define THREADS 8
#define PER 250

struct worker {
	struct sub_log *l;
	struct slot *s;
	size_t first;
};

static void *session(void *arg)
{
	struct worker *w = arg;

	for (size_t k = 0; k < PER; k++) {
		struct slot *s = &w->s[k];
		fill(s, w->first + k);
		struct sub_item it = item(s);
		while (sub_log_put(w->l, &it) < 0) {
			cr_assert_eq(errno, EAGAIN);
			usleep(100);
		}
		if (k % 4 == 3)          /* sometimes wait, as a session does */
			wait_answered(s, 1);
	}
	return NULL;
}

Test(submit_log, many_items_from_several_threads, .timeout = 120)
{
	static struct slot s[THREADS * PER];
	struct worker w[THREADS];
	pthread_t t[THREADS];
	char err[256];
	struct sched *sc = sched_new(&cfg, sp, err, sizeof err);
	struct sub_log_opts o = { .queue_max = 64, .segment_bytes = 256 << 10 };

	cr_assert_not_null(sc, "%s", err);
	memset(s, 0, sizeof s);
	struct sub_log *l = open_log(sc, &o);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ l, s + i * PER, (size_t)i * PER };
		cr_assert_eq(pthread_create(&t[i], NULL, session, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	wait_answered(s, THREADS * PER);
	struct sub_log_stats st;
	sub_log_stats(l, &st);
	cr_assert_eq(st.accepted, THREADS * PER);
	cr_assert_eq(st.failed, 0);
	cr_assert_eq(st.syncs, st.batches, "one fdatasync a batch");
	cr_assert_lt(st.syncs, st.accepted, "batches of several items");
	sub_log_close(l);
	for (size_t k = 0; k < THREADS * PER; k++) {
		cr_assert_eq(s[k].rc, 0, "item %zu: %s", k, strerror(s[k].err));
		check_job(&s[k]);
		json_t *j = sched_job_json(sc, s[k].id);
		cr_assert_not_null(j, "item %zu in the registry", k);
		json_decref(j);
	}
	cr_assert_eq(count("jobs", ""), THREADS * PER);
	cr_assert_eq(count("submit", ".seg"), 0);
	cr_assert_eq(count("tmp", ""), 0);
	sched_free(sc);
}
