/* scheduler/: the suppression list -- add/remove, case rules, persistence
 * and compaction, paging, threads, and a million addresses. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../scheduler/scheduler.h"
#include "unit.h"

static char dir[64], path[96];

static void setup(void)
{
	unit_tmpdir(dir, sizeof dir, "supp");
	snprintf(path, sizeof path, "%s/suppression", dir);
}

static void teardown(void)
{
	unit_rmdir(dir);
}

TestSuite(sched_suppress, .init = setup, .fini = teardown);

static struct sched_suppress *open_list(void)
{
	char err[256] = "";
	struct sched_suppress *s = sched_suppress_open(path, err, sizeof err);
	cr_assert_not_null(s, "%s", err);
	return s;
}

static bool has(struct sched_suppress *s, const char *e)
{
	return sched_suppressed(s, e, strlen(e));
}

static size_t file_lines(void)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	size_t n = 0;
	int c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void append_raw(const char *text)
{
	FILE *f = fopen(path, "a");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

Test(sched_suppress, add_remove_and_duplicates)
{
	struct sched_suppress *s = open_list();
	cr_assert_eq(sched_suppress_count(s), 0);
	cr_assert_eq(sched_suppress_add(s, "ann@example.net", "invalid-recipient", "job1"), 0);
	cr_assert_eq(sched_suppress_add(s, "ann@example.net", "again", "job2"), 1);
	cr_assert(has(s, "ann@example.net"));
	cr_assert(!has(s, "bob@example.net"));
	cr_assert_eq(sched_suppress_count(s), 1);
	cr_assert_eq(sched_suppress_remove(s, "ann@example.net"), 0);
	cr_assert_eq(sched_suppress_remove(s, "ann@example.net"), 1);
	cr_assert(!has(s, "ann@example.net"));
	cr_assert_eq(sched_suppress_count(s), 0);
	cr_assert_eq(sched_suppress_add(s, "ann@example.net", "back", NULL), 0);
	cr_assert(has(s, "ann@example.net"));
	sched_suppress_close(s);
}

Test(sched_suppress, domain_case_insensitive_local_part_not)
{
	struct sched_suppress *s = open_list();
	cr_assert_eq(sched_suppress_add(s, "Ann@Example.NET", "r", NULL), 0);
	cr_assert(has(s, "Ann@example.net"));
	cr_assert(has(s, "Ann@EXAMPLE.net"));
	cr_assert(!has(s, "ann@example.net"));
	cr_assert_eq(sched_suppress_add(s, "Ann@example.net", "r", NULL), 1);
	cr_assert_eq(sched_suppress_add(s, "ANN@example.net", "r", NULL), 0);
	cr_assert_eq(sched_suppress_count(s), 2);
	/* an '@' in a quoted local part: the domain is after the last one */
	cr_assert_eq(sched_suppress_add(s, "\"a@B\"@X.org", "r", NULL), 0);
	cr_assert(has(s, "\"a@B\"@x.org"));
	cr_assert(!has(s, "\"a@b\"@x.org"));
	json_t *l = sched_suppress_list(s, NULL, 10);
	json_t *a = json_object_get(l, "suppressed");
	cr_assert_eq(json_array_size(a), 3);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "email")),
			 "\"a@B\"@x.org");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1), "email")),
			 "ANN@example.net");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 2), "email")),
			 "Ann@example.net", "stored with the domain lower-cased");
	json_decref(l);
	cr_assert_eq(sched_suppress_remove(s, "Ann@EXAMPLE.NET"), 0);
	cr_assert(has(s, "ANN@example.net"));
	sched_suppress_close(s);
}

Test(sched_suppress, refuses_what_cannot_be_an_address)
{
	struct sched_suppress *s = open_list();
	const char *bad[] = { "", "no-at-sign", "@example.net", "ann@", "a\tb@example.net",
			      "ann@example.net\n", "ann@exa\rmple.net", "a\x7f@x.org" };
	for (size_t i = 0; i < VL_ARRAY_LEN(bad); i++) {
		errno = 0;
		cr_expect_eq(sched_suppress_add(s, bad[i], "r", NULL), -1, "%s", bad[i]);
		cr_expect_eq(errno, EINVAL);
		cr_expect(!has(s, bad[i]));
		cr_expect_eq(sched_suppress_remove(s, bad[i]), 1);
	}
	char long_addr[700];
	memset(long_addr, 'a', sizeof long_addr);
	memcpy(long_addr + 680, "@example.net", 13);
	cr_expect_eq(sched_suppress_add(s, long_addr, "r", NULL), -1);
	cr_assert_eq(sched_suppress_add(s, NULL, "r", NULL), -1);
	cr_assert_eq(sched_suppress_count(s), 0);
	cr_assert_eq(file_lines(), 1, "only the header");
	sched_suppress_close(s);
}

Test(sched_suppress, persists_reason_job_time_and_compacts)
{
	struct sched_suppress *s = open_list();
	double t0 = vl_wall_time();
	cr_assert_eq(sched_suppress_add(s, "a@x.org", "550 5.1.1\tuser\nunknown", "J1"), 0);
	cr_assert_eq(sched_suppress_add(s, "b@x.org", "mailbox gone", NULL), 0);
	cr_assert_eq(sched_suppress_add(s, "c@x.org", "", NULL), 0);
	cr_assert_eq(sched_suppress_remove(s, "b@x.org"), 0);
	sched_suppress_close(s);
	cr_assert_eq(file_lines(), 1 + 4);

	s = open_list();
	cr_assert_eq(file_lines(), 1 + 2, "compacted: the removal and its add are gone");
	cr_assert_eq(sched_suppress_count(s), 2);
	cr_assert(has(s, "a@x.org") && !has(s, "b@x.org") && has(s, "c@x.org"));
	json_t *l = sched_suppress_list(s, NULL, 10);
	json_t *a = json_object_get(l, "suppressed"), *e = json_array_get(a, 0);
	cr_assert_str_eq(json_string_value(json_object_get(e, "reason")),
			 "550 5.1.1 user unknown", "tab and newline became spaces");
	cr_assert_str_eq(json_string_value(json_object_get(e, "job")), "J1");
	char when[32];
	vl_iso8601(t0, when);
	const char *added = json_string_value(json_object_get(e, "added"));
	cr_assert_not_null(added);
	cr_assert_eq(strncmp(added, when, 15), 0, "%s vs %s", added, when);
	e = json_array_get(a, 1);
	cr_assert(json_is_null(json_object_get(e, "job")));
	cr_assert_str_eq(json_string_value(json_object_get(e, "reason")), "");
	cr_assert(json_is_null(json_object_get(l, "next")));
	json_decref(l);
	/* appends after a compaction land in the new file */
	cr_assert_eq(sched_suppress_add(s, "d@x.org", "r", NULL), 0);
	sched_suppress_close(s);
	s = open_list();
	cr_assert_eq(sched_suppress_count(s), 3);
	cr_assert(has(s, "d@x.org"));
	sched_suppress_close(s);
}

Test(sched_suppress, clean_file_not_rewritten)
{
	struct sched_suppress *s = open_list();
	sched_suppress_add(s, "a@x.org", "r", NULL);
	sched_suppress_close(s);
	struct stat a, b;
	cr_assert_eq(stat(path, &a), 0);
	s = open_list();
	sched_suppress_close(s);
	cr_assert_eq(stat(path, &b), 0);
	cr_assert_eq(a.st_ino, b.st_ino);
	cr_assert_eq(a.st_size, b.st_size);
}

Test(sched_suppress, damaged_duplicate_and_torn_lines)
{
	struct sched_suppress *s = open_list();
	sched_suppress_add(s, "a@x.org", "first", NULL);
	sched_suppress_close(s);
	append_raw("+\ta@X.ORG\t1700000000\t\tsecond\n"   /* duplicate: first kept */
		   "garbage line\n"
		   "+\tno-at\t1700000000\t\tr\n"
		   "-\tnobody@x.org\t1700000000\n"
		   "+\tb@x.org\t1700000000\tJ\tr\n"
		   "+\tc@x.org\t17000");                 /* torn by a crash */
	s = open_list();
	cr_assert_eq(sched_suppress_count(s), 2);
	cr_assert(has(s, "a@x.org") && has(s, "b@x.org") && !has(s, "c@x.org"));
	cr_assert_eq(file_lines(), 1 + 2);
	json_t *l = sched_suppress_list(s, NULL, 10);
	json_t *e = json_array_get(json_object_get(l, "suppressed"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(e, "reason")), "first");
	json_decref(l);
	/* the next append is a line of its own, not glued to the torn one */
	cr_assert_eq(sched_suppress_add(s, "c@x.org", "r", NULL), 0);
	sched_suppress_close(s);
	s = open_list();
	cr_assert_eq(sched_suppress_count(s), 3);
	sched_suppress_close(s);
}

Test(sched_suppress, pages_in_address_order)
{
	struct sched_suppress *s = open_list();
	char e[64];
	uint64_t seed = 42;
	int order[250];
	for (int i = 0; i < 250; i++)
		order[i] = i;
	for (int i = 249; i > 0; i--) {
		int j = (int)(vl_rand(&seed) % (uint64_t)(i + 1)), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (int i = 0; i < 250; i++) {
		snprintf(e, sizeof e, "user%03d@example.net", order[i]);
		cr_assert_eq(sched_suppress_add(s, e, "r", NULL), 0);
	}
	char after[64] = "";
	int seen = 0, pages = 0;
	for (;;) {
		json_t *l = sched_suppress_list(s, seen ? after : NULL, 100);
		json_t *a = json_object_get(l, "suppressed"), *next = json_object_get(l, "next");
		pages++;
		for (size_t i = 0; i < json_array_size(a); i++, seen++) {
			snprintf(e, sizeof e, "user%03d@example.net", seen);
			cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, i),
									   "email")), e);
		}
		if (json_is_null(next)) {
			json_decref(l);
			break;
		}
		snprintf(after, sizeof after, "%s", json_string_value(next));
		json_decref(l);
		/* a change between pages re-sorts; paging goes on from `after` */
		if (pages == 1)
			cr_assert_eq(sched_suppress_remove(s, "user050@example.net"), 0);
		if (pages == 1)
			cr_assert_eq(sched_suppress_add(s, "user050@example.net", "r", NULL), 0);
	}
	cr_assert_eq(seen, 250);
	cr_assert_eq(pages, 3);
	/* `after` need not be in the list */
	json_t *l = sched_suppress_list(s, "user149@example.net~", 2);
	json_t *a = json_object_get(l, "suppressed");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "email")),
			 "user150@example.net");
	cr_assert_str_eq(json_string_value(json_object_get(l, "next")), "user151@example.net");
	json_decref(l);
	l = sched_suppress_list(s, "zzz", 10);
	cr_assert_eq(json_array_size(json_object_get(l, "suppressed")), 0);
	cr_assert(json_is_null(json_object_get(l, "next")));
	json_decref(l);
	sched_suppress_close(s);
}

struct worker {
	struct sched_suppress *s;
	int id;
	int bad;
};

static void *hammer(void *arg)
{
	struct worker *w = arg;
	char e[64];
	for (int i = 0; i < 400; i++) {
		snprintf(e, sizeof e, "t%d-%d@Example.net", w->id, i);
		w->bad += sched_suppress_add(w->s, e, "r", "J") != 0;
		w->bad += !sched_suppressed(w->s, e, strlen(e));
		snprintf(e, sizeof e, "shared%d@example.net", i % 50);
		w->bad += sched_suppress_add(w->s, e, "r", NULL) < 0;
		if (i % 4 == 0) {
			snprintf(e, sizeof e, "t%d-%d@example.NET", w->id, i);
			w->bad += sched_suppress_remove(w->s, e) != 0;
		}
		if (i % 100 == 0)
			json_decref(sched_suppress_list(w->s, NULL, 20));
		(void)sched_suppress_count(w->s);
	}
	return NULL;
}

Test(sched_suppress, many_threads)
{
	struct sched_suppress *s = open_list();
	pthread_t t[6];
	struct worker w[6];
	for (int i = 0; i < 6; i++) {
		w[i] = (struct worker){ s, i, 0 };
		pthread_create(&t[i], NULL, hammer, &w[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(w[i].bad, 0, "thread %d", i);
	}
	size_t want = 6 * 300 + 50;
	cr_assert_eq(sched_suppress_count(s), want);
	sched_suppress_close(s);
	s = open_list();
	cr_assert_eq(sched_suppress_count(s), want);
	cr_assert(has(s, "t3-1@example.net") && !has(s, "t3-4@example.net"));
	json_t *l = sched_suppress_list(s, NULL, 10000);
	cr_assert_eq(json_array_size(json_object_get(l, "suppressed")), want);
	json_decref(l);
	sched_suppress_close(s);
}

static long rss_kb(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	if (f)
		fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Load time and memory are printed, not asserted: machines differ. */
Test(sched_suppress, a_million_addresses, .timeout = 120)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	const int n = 1000000;
	for (int i = 0; i < n; i++)
		fprintf(f, "+\tsubscriber.%d@domain%d.example\t1700000000\tJOB-%d\t"
			"550 5.1.1 The email account that you tried to reach does not exist\n",
			i, i % 5000, i % 7);
	fclose(f);
	long before = rss_kb();
	uint64_t t0 = vl_now_ns();
	struct sched_suppress *s = open_list();
	double load_s = (double)(vl_now_ns() - t0) / 1e9;
	long after = rss_kb();
	cr_assert_eq(sched_suppress_count(s), (size_t)n);
	char e[64];
	t0 = vl_now_ns();
	for (int i = 0; i < n; i += 7) {
		snprintf(e, sizeof e, "subscriber.%d@DOMAIN%d.example", i, i % 5000);
		cr_assert(has(s, e), "%s", e);
		snprintf(e, sizeof e, "subscriber.%d@domain%d.example", i + n, i % 5000);
		cr_assert(!has(s, e));
	}
	double per = (double)(vl_now_ns() - t0) / (2.0 * (n / 7 + 1));
	t0 = vl_now_ns();
	json_t *l = sched_suppress_list(s, NULL, 100);
	double sort_s = (double)(vl_now_ns() - t0) / 1e9;
	cr_assert_eq(json_array_size(json_object_get(l, "suppressed")), 100);
	json_decref(l);
	cr_log_info("suppression: %d addresses loaded in %.2f s, %.1f MB resident "
		    "(%.0f B each), %.0f ns per lookup, first page (sort) %.2f s",
		    n, load_s, (double)(after - before) / 1024,
		    (double)(after - before) * 1024 / n, per, sort_s);
	sched_suppress_close(s);
}

Test(sched_suppress_many, one_flush_for_a_batch)
{
	char dir[64], path[96], err[256];
	unit_tmpdir(dir, sizeof dir, "supmany");
	snprintf(path, sizeof path, "%s/suppression", dir);
	struct sched_suppress *s = sched_suppress_open(path, err, sizeof err);
	cr_assert_not_null(s, "%s", err);
	const char *emails[] = { "a@x.example", "B@X.example", "bad", "a@X.EXAMPLE" };
	const char *jobs[] = { "j1", "j1", "j1", "j2" };
	cr_assert_eq(sched_suppress_add_many(s, emails, jobs, 4, "invalid-recipient"), 0);
	cr_assert_eq(sched_suppress_count(s), 2);   /* the invalid one skipped, a dup kept once */
	cr_assert(sched_suppressed(s, "a@x.example", 11));
	cr_assert(sched_suppressed(s, "B@x.example", 11));
	sched_suppress_close(s);
	s = sched_suppress_open(path, err, sizeof err);
	cr_assert_eq(sched_suppress_count(s), 2, "durable across a reopen");
	sched_suppress_close(s);
	unlink(path);
	rmdir(dir);
}

/* ---- a cluster's hook and apply ---- */

struct seen {
	int n, adds;
	char last[64], reason[64], job[64];
};

static void hook(void *arg, const struct sched_suppress_change *ch)
{
	struct seen *s = arg;
	s->n++;
	s->adds += ch->add;
	snprintf(s->last, sizeof s->last, "%s", ch->email);
	snprintf(s->reason, sizeof s->reason, "%s", ch->reason);
	snprintf(s->job, sizeof s->job, "%s", ch->job);
}

Test(sched_suppress, hook_sees_every_local_change_once)
{
	struct sched_suppress *s = open_list();
	struct seen seen = { 0 };
	const char *emails[] = { "b@x.test", "bad", "c@X.TEST" }, *jobs[] = { "j1", "j2", "j3" };

	sched_suppress_set_hook(s, hook, &seen);
	cr_assert_eq(sched_suppress_add(s, "Ann@Example.NET", "added by API", ""), 0);
	cr_assert_eq(seen.n, 1);
	cr_assert_str_eq(seen.last, "Ann@example.net", "the stored form");
	cr_assert_str_eq(seen.reason, "added by API");
	cr_assert_eq(sched_suppress_add(s, "Ann@example.net", "again", ""), 1);
	cr_assert_eq(seen.n, 1, "no change, nothing told");
	cr_assert_eq(sched_suppress_add_many(s, emails, jobs, 3, "invalid-recipient"), 0);
	cr_assert_eq(seen.n, 3, "the two valid ones");
	cr_assert_str_eq(seen.job, "j3");
	cr_assert_eq(sched_suppress_remove(s, "Ann@example.net"), 0);
	cr_assert_eq(sched_suppress_remove(s, "Ann@example.net"), 1);
	cr_assert_eq(seen.n, 4);
	cr_assert_eq(seen.adds, 3);
	sched_suppress_set_hook(s, NULL, NULL);
	cr_assert_eq(sched_suppress_add(s, "z@x.test", "r", ""), 0);
	cr_assert_eq(seen.n, 4);
	sched_suppress_close(s);
}

Test(sched_suppress, apply_is_durable_and_not_echoed)
{
	struct sched_suppress *s = open_list();
	struct seen seen = { 0 };
	struct sched_suppress_change ch[] = {
		{ .add = true, .email = "a@x.test", .reason = "unsubscribe", .job = "j9",
		  .at = 1767225600 },
		{ .add = true, .email = "no-at", .reason = "", .job = "", .at = 1 },
		{ .add = true, .email = "b@x.test", .reason = "r", .job = "", .at = 2 },
		{ .add = false, .email = "b@x.test", .at = 3 },
		{ .add = false, .email = "never@x.test", .at = 4 },
	};

	sched_suppress_set_hook(s, hook, &seen);
	cr_assert_eq(sched_suppress_apply(s, ch, 5), 3, "a added, b added and removed");
	cr_assert_eq(seen.n, 0, "applied changes are not told again");
	cr_assert(has(s, "a@x.test"));
	cr_assert(!has(s, "b@x.test"));
	cr_assert_eq(sched_suppress_apply(s, ch, 1), 0, "already there");
	sched_suppress_close(s);
	s = open_list();
	cr_assert(has(s, "a@x.test"));
	json_t *l = sched_suppress_list(s, NULL, 10);
	json_t *e = json_array_get(json_object_get(l, "suppressed"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(e, "reason")), "unsubscribe");
	cr_assert_str_eq(json_string_value(json_object_get(e, "job")), "j9");
	cr_assert_str_eq(json_string_value(json_object_get(e, "added")), "2026-01-01T00:00:00Z");
	json_decref(l);
	sched_suppress_close(s);
}
