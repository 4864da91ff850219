/* scheduler/events.c: the event line format, rotation and retention, and
 * readers (filtered, following, across rotations and deletions). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../scheduler/scheduler.h"
#include "unit.h"

static char tmp[64], dir[96];

static void setup(void)
{
	unit_tmpdir(tmp, sizeof tmp, "events");
	snprintf(dir, sizeof dir, "%s/events", tmp);
}

static void teardown(void)
{
	unit_rmdir(tmp);
}

TestSuite(sched_events, .init = setup, .fini = teardown);

static struct sched_events *open_log(uint64_t rotate, unsigned keep)
{
	char err[256];
	struct sched_events *e = sched_events_open(dir, rotate, keep, err, sizeof err);
	cr_assert_not_null(e, "%s", err);
	return e;
}

static json_t *parse_line(const struct vl_buf *b)
{
	json_error_t je;
	cr_assert_gt(b->len, 0);
	cr_assert_eq(b->p[b->len - 1], '\n');
	cr_assert_null(memchr(b->p, '\n', b->len - 1), "one line only");
	json_t *j = json_loadb(b->p, b->len, 0, &je);
	cr_assert_not_null(j, "%s: %.*s", je.text, (int)b->len, b->p);
	return j;
}

static const char *sget(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_string(v), "%s is not a string", k);
	return json_string_value(v);
}

/* A line "{"type":"Delivery",...,"recipient":"<job>-<i>"...}". */
static void line(struct vl_buf *b, const char *job, unsigned i)
{
	char rcpt[64];
	snprintf(rcpt, sizeof rcpt, "%s-%u@example.net", job, i);
	struct sched_event ev = { .type = "Delivery", .time = 1795454401.5, .job = job,
				  .recipient = rcpt, .attempt = i, .code = 250, .text = "ok" };
	sched_event_format(&ev, b);
}

static void append_lines(struct sched_events *e, const char *job, unsigned from,
			 unsigned to)
{
	struct vl_buf b;
	vl_buf_init(&b);
	for (unsigned i = from; i < to; i++) {
		vl_buf_reset(&b);
		line(&b, job, i);
		sched_events_append(e, b.p, b.len);
	}
	vl_buf_free(&b);
}

/* Everything a reader gives until -1 (or a timeout with follow). */
static void read_all(struct sched_events_reader *r, struct vl_buf *out, size_t max,
		     int timeout_ms)
{
	char *buf = malloc(max);
	long n;
	while ((n = sched_events_read(r, buf, max, timeout_ms)) > 0)
		vl_buf_append(out, buf, (size_t)n);
	free(buf);
}

/* The attempt numbers of the lines in b, checking each line parses. */
static size_t attempts(const struct vl_buf *b, unsigned *out, size_t max)
{
	size_t n = 0, pos = 0;
	while (pos < b->len) {
		const char *nl = memchr(b->p + pos, '\n', b->len - pos);
		cr_assert_not_null(nl, "a torn line at the end");
		json_error_t je;
		json_t *j = json_loadb(b->p + pos, (size_t)(nl - b->p) + 1 - pos, 0, &je);
		cr_assert_not_null(j, "%s", je.text);
		cr_assert_lt(n, max);
		out[n++] = (unsigned)json_integer_value(json_object_get(j, "attempt"));
		json_decref(j);
		pos = (size_t)(nl - b->p) + 1;
	}
	return n;
}

static size_t count_files(uint64_t *first, uint64_t *last)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;
	*first = UINT64_MAX, *last = 0;
	while (d && (de = readdir(d))) {
		if (!strstr(de->d_name, ".jsonl"))
			continue;
		uint64_t s = strtoull(de->d_name, NULL, 10);
		n++;
		*first = s < *first ? s : *first;
		*last = s > *last ? s : *last;
	}
	if (d)
		closedir(d);
	return n;
}

static off_t file_size(uint64_t seq)
{
	char p[160];
	struct stat st;
	snprintf(p, sizeof p, "%s/%08lu.jsonl", dir, (unsigned long)seq);
	return stat(p, &st) == 0 ? st.st_size : -1;
}

static size_t file_lines(uint64_t seq)
{
	char p[160];
	size_t n = 0;
	int c;
	snprintf(p, sizeof p, "%s/%08lu.jsonl", dir, (unsigned long)seq);
	FILE *f = fopen(p, "r");
	cr_assert_not_null(f);
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* ---- format ---- */

Test(sched_events, format_every_field)
{
	struct sched_event ev = {
		.type = "Bounce", .time = 1795454401.123, .job = "0194c1d2e3f4-5a6b7c8d",
		.recipient = "ann@example.net", .domain = "example.net",
		.site = "mx.example.net", .mx = "mx1.example.net",
		.peer_address = "192.0.2.1:25", .source_address = "192.0.2.10",
		.attempt = 3, .code = 550, .enhanced = "5.1.1", .text = "no such user",
		.bounce_class = "invalid-recipient", .tls_version = "TLSv1.3",
		.tls_cipher = "TLS_AES_256_GCM_SHA384", .tls_verified = true,
		.tls_dane = false, .tls_policy = "dane", .size = 4096,
	};
	struct vl_buf b;
	vl_buf_init(&b);
	sched_event_format(&ev, &b);
	const char *head = "{\"type\":\"Bounce\",\"time\":\"2026-11-23T17:20:01.123Z\","
			   "\"job\":\"0194c1d2e3f4-5a6b7c8d\",";
	cr_assert(strncmp(b.p, head, strlen(head)) == 0, "%s", b.p);
	json_t *j = parse_line(&b);
	cr_assert_eq(json_object_size(j), 15);
	cr_assert(json_is_null(json_object_get(j, "reason")), "a reply came");
	cr_assert_str_eq(sget(j, "recipient"), "ann@example.net");
	cr_assert_str_eq(sget(j, "domain"), "example.net");
	cr_assert_str_eq(sget(j, "site"), "mx.example.net");
	cr_assert_str_eq(sget(j, "mx"), "mx1.example.net");
	cr_assert_str_eq(sget(j, "peer_address"), "192.0.2.1:25");
	cr_assert_str_eq(sget(j, "source_address"), "192.0.2.10");
	cr_assert_eq(json_integer_value(json_object_get(j, "attempt")), 3);
	cr_assert_eq(json_integer_value(json_object_get(j, "size")), 4096);
	json_t *resp = json_object_get(j, "response");
	cr_assert_eq(json_integer_value(json_object_get(resp, "code")), 550);
	cr_assert_str_eq(sget(resp, "enhanced"), "5.1.1");
	cr_assert_str_eq(sget(resp, "text"), "no such user");
	json_t *tls = json_object_get(j, "tls");
	cr_assert_str_eq(sget(tls, "version"), "TLSv1.3");
	cr_assert_str_eq(sget(tls, "cipher"), "TLS_AES_256_GCM_SHA384");
	cr_assert(json_is_true(json_object_get(tls, "verified")));
	cr_assert(json_is_false(json_object_get(tls, "dane")));
	cr_assert(json_is_null(json_object_get(tls, "mta_sts")));
	cr_assert_str_eq(sget(tls, "policy"), "dane");
	cr_assert_str_eq(sget(j, "bounce_class"), "invalid-recipient");
	json_decref(j);
	vl_buf_free(&b);
}

Test(sched_events, format_nulls_keep_every_key)
{
	static const char *const keys[] = {
		"type", "time", "job", "recipient", "domain", "site", "mx", "peer_address",
		"source_address", "attempt", "response", "reason", "bounce_class", "tls", "size",
	};
	struct sched_event ev = { .type = "Reception", .time = 0 };
	struct vl_buf b;
	vl_buf_init(&b);
	sched_event_format(&ev, &b);
	json_t *j = parse_line(&b);
	cr_assert_eq(json_object_size(j), VL_ARRAY_LEN(keys));
	for (size_t i = 0; i < VL_ARRAY_LEN(keys); i++)
		cr_assert_not_null(json_object_get(j, keys[i]), "%s", keys[i]);
	cr_assert_str_eq(sget(j, "time"), "1970-01-01T00:00:00.000Z");
	for (size_t i = 2; i < 9; i++)
		cr_assert(json_is_null(json_object_get(j, keys[i])), "%s", keys[i]);
	cr_assert(json_is_null(json_object_get(j, "response")));
	cr_assert(json_is_null(json_object_get(j, "reason")));
	cr_assert(json_is_null(json_object_get(j, "bounce_class")));
	cr_assert(json_is_null(json_object_get(j, "tls")));
	json_decref(j);
	/* a reply without an enhanced code */
	vl_buf_reset(&b);
	ev.code = 421, ev.enhanced = "", ev.text = NULL;
	sched_event_format(&ev, &b);
	j = parse_line(&b);
	json_t *resp = json_object_get(j, "response");
	cr_assert(json_is_null(json_object_get(resp, "enhanced")));
	cr_assert(json_is_null(json_object_get(resp, "text")));
	json_decref(j);
	/* no reply: the failure's own words are the reason */
	vl_buf_reset(&b);
	ev.code = 0, ev.text = "dane: mx.example.net matches none of its TLSA records";
	sched_event_format(&ev, &b);
	j = parse_line(&b);
	cr_assert(json_is_null(json_object_get(j, "response")));
	cr_assert_str_eq(sget(j, "reason"), ev.text);
	json_decref(j);
	vl_buf_free(&b);
}

Test(sched_events, format_hostile_text_is_valid_json)
{
	const char *text = "bad \"quote\" \\ back\r\nslash\tand \x01\x7f"
			   " bad utf-8 \xff\xc3\x28 \xe2\x82 end \xf0\x9f\x98\x80 \",\"job\":\"x";
	struct sched_event ev = { .type = "TransientFailure", .time = 1795454401.9996,
				  .job = "j\"1\n", .recipient = "a\"@b\n", .code = 451,
				  .enhanced = "4.7.0\"", .text = text, .tls_version = "x\xff",
				  .tls_cipher = NULL };
	struct vl_buf b;
	vl_buf_init(&b);
	sched_event_format(&ev, &b);
	json_t *j = parse_line(&b);
	cr_assert_str_eq(sget(j, "time"), "2026-11-23T17:20:02.000Z");
	cr_assert_str_eq(sget(j, "job"), "j\"1\n");
	cr_assert_str_eq(sget(j, "recipient"), "a\"@b\n");
	const char *t = sget(json_object_get(j, "response"), "text");
	cr_assert_not_null(strstr(t, "bad \"quote\" \\ back\r\nslash\tand \x01\x7f"));
	cr_assert_not_null(strstr(t, "\xf0\x9f\x98\x80 \",\"job\":\"x"));
	cr_assert_not_null(strstr(t, "\xef\xbf\xbd"), "U+FFFD for invalid octets");
	cr_assert(json_is_null(json_object_get(json_object_get(j, "tls"), "cipher")));
	json_decref(j);
	vl_buf_free(&b);
}

/* ---- files ---- */

Test(sched_events, rotation_and_retention)
{
	struct sched_events *e = open_log(2000, 3);
	uint64_t first, last;
	append_lines(e, "j", 0, 200);
	cr_assert_eq(sched_events_flush(e), 0);
	cr_assert_eq(count_files(&first, &last), 3);
	cr_assert_eq(last - first, 2);
	cr_assert_gt(last, 5, "many files were written");
	for (uint64_t s = first; s < last; s++) {
		cr_assert_geq(file_size(s), 2000);
		cr_assert_lt(file_size(s), 2400, "rotated at the first line end past the size");
	}
	/* the retained files hold the newest lines, in order, whole */
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, false);
	struct vl_buf got;
	unsigned at[200];
	vl_buf_init(&got);
	read_all(r, &got, 4096, 0);
	size_t n = attempts(&got, at, 200);
	cr_assert_gt(n, 10);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(at[i], 200 - n + i);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}

Test(sched_events, reopen_continues_numbering)
{
	uint64_t first, last;
	struct sched_events *e = open_log(1 << 20, 10);
	sched_events_close(e);   /* nothing written: no file */
	cr_assert_eq(count_files(&first, &last), 0);
	for (int round = 0; round < 3; round++) {
		e = open_log(1 << 20, 2);
		append_lines(e, "j", (unsigned)round * 10, (unsigned)round * 10 + 10);
		sched_events_close(e);   /* flushes */
	}
	char other[160];
	snprintf(other, sizeof other, "%s/notes.txt", dir);
	fclose(fopen(other, "w"));   /* not a log file: left alone */
	cr_assert_eq(count_files(&first, &last), 2);
	cr_assert_eq(first, 2);
	cr_assert_eq(last, 3);
	e = open_log(1 << 20, 2);
	append_lines(e, "j", 30, 31);
	cr_assert_eq(sched_events_flush(e), 0);
	cr_assert_eq(count_files(&first, &last), 2);
	cr_assert_eq(first, 3);
	cr_assert_eq(last, 4);
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, false);
	struct vl_buf got;
	unsigned at[64];
	vl_buf_init(&got);
	read_all(r, &got, 100, 0);   /* small: lines are cut and joined again */
	cr_assert_eq(attempts(&got, at, 64), 11);
	cr_assert_eq(at[0], 20);
	cr_assert_eq(at[10], 30);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}

/* ---- readers ---- */

Test(sched_events, reader_without_follow_sees_the_log_as_at_open)
{
	struct sched_events *e = open_log(1 << 20, 4);
	append_lines(e, "j", 0, 50);
	cr_assert_eq(sched_events_flush(e), 0);
	append_lines(e, "j", 50, 60);   /* buffered, not flushed: not seen */
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, false);
	cr_assert_eq(sched_events_flush(e), 0);   /* after open: not seen */
	char buf[300];
	long n = sched_events_read(r, buf, sizeof buf, 0);
	cr_assert_gt(n, 0);
	cr_assert_eq(buf[n - 1], '\n', "whole lines");
	struct vl_buf got;
	unsigned at[64];
	vl_buf_init(&got);
	vl_buf_append(&got, buf, (size_t)n);
	read_all(r, &got, sizeof buf, 0);
	cr_assert_eq(attempts(&got, at, 64), 50);
	for (unsigned i = 0; i < 50; i++)
		cr_assert_eq(at[i], i);
	cr_assert_eq(sched_events_read(r, buf, sizeof buf, 0), -1);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}

Test(sched_events, job_filter)
{
	struct sched_events *e = open_log(3000, 100);
	struct vl_buf b;
	vl_buf_init(&b);
	for (unsigned i = 0; i < 60; i++) {
		/* job B's lines carry job A's key in hostile text */
		struct sched_event ev = { .type = "Bounce", .time = 1, .attempt = i,
					  .job = i % 3 ? "B" : "A", .code = 550,
					  .recipient = "\",\"job\":\"A\",",
					  .text = ",\"job\":\"A\"" };
		sched_event_format(&ev, &b);
	}
	sched_events_append(e, b.p, b.len);
	cr_assert_eq(sched_events_flush(e), 0);
	struct sched_events_reader *r = sched_events_reader_open(e, "A", false);
	struct vl_buf got;
	unsigned at[64];
	vl_buf_init(&got);
	read_all(r, &got, 1000, 0);
	cr_assert_eq(attempts(&got, at, 64), 20);
	for (unsigned i = 0; i < 20; i++)
		cr_assert_eq(at[i], i * 3);
	sched_events_reader_close(r);
	r = sched_events_reader_open(e, "C", false);
	char buf[100];
	cr_assert_eq(sched_events_read(r, buf, sizeof buf, 0), -1);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
	vl_buf_free(&b);
}

struct writer {
	struct sched_events *e;
	const char *job;
	unsigned from, to, per_flush;
	int delay_ms;
};

static void *write_lines(void *arg)
{
	struct writer *w = arg;
	usleep((useconds_t)w->delay_ms * 1000);
	unsigned step = w->per_flush ? w->per_flush : 100;
	for (unsigned i = w->from; i < w->to; i += step) {
		unsigned to = i + step < w->to ? i + step : w->to;
		append_lines(w->e, w->job, i, to);
		if (w->per_flush)
			sched_events_flush(w->e);
	}
	return NULL;
}

Test(sched_events, follow_waits_for_new_lines)
{
	struct sched_events *e = open_log(1 << 20, 4);
	append_lines(e, "j", 0, 5);
	sched_events_flush(e);
	struct sched_events_reader *r = sched_events_reader_open(e, "j", true);
	char buf[4096];
	struct vl_buf got;
	unsigned at[64];
	vl_buf_init(&got);
	long n = sched_events_read(r, buf, sizeof buf, 1000);
	cr_assert_gt(n, 0);
	vl_buf_append(&got, buf, (size_t)n);
	uint64_t t0 = vl_now_ms();
	cr_assert_eq(sched_events_read(r, buf, sizeof buf, 50), 0, "nothing new");
	cr_assert_geq(vl_now_ms() - t0, 45);
	pthread_t th;
	struct writer w = { e, "j", 5, 10, 5, 50 };
	pthread_create(&th, NULL, write_lines, &w);
	t0 = vl_now_ms();
	n = sched_events_read(r, buf, sizeof buf, 5000);
	cr_assert_gt(n, 0);
	cr_assert_lt(vl_now_ms() - t0, 4000, "woken by the flush");
	vl_buf_append(&got, buf, (size_t)n);
	pthread_join(th, NULL);
	cr_assert_eq(attempts(&got, at, 64), 10);
	cr_assert_eq(at[9], 9);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}

Test(sched_events, follow_across_rotations)
{
	struct sched_events *e = open_log(1500, 1000);
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, true);
	pthread_t th;
	struct writer w = { e, "j", 0, 2000, 7, 0 };
	pthread_create(&th, NULL, write_lines, &w);
	struct vl_buf got;
	static unsigned at[2000];
	vl_buf_init(&got);
	read_all(r, &got, 777, 500);   /* until 500 ms pass with nothing new */
	pthread_join(th, NULL);
	read_all(r, &got, 777, 100);
	uint64_t first, last;
	cr_assert_gt(count_files(&first, &last), 100);
	cr_assert_eq(attempts(&got, at, 2000), 2000);
	for (unsigned i = 0; i < 2000; i++)
		cr_assert_eq(at[i], i);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}

Test(sched_events, reader_survives_its_file_deleted)
{
	struct sched_events *e = open_log(2000, 2);
	append_lines(e, "j", 0, 100);
	sched_events_flush(e);
	uint64_t first, last;
	cr_assert_eq(count_files(&first, &last), 2);
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, true);
	char buf[200];
	struct vl_buf got;
	static unsigned at[1000];
	vl_buf_init(&got);
	long n = sched_events_read(r, buf, sizeof buf, 0);   /* opens the oldest */
	cr_assert_gt(n, 0);
	vl_buf_append(&got, buf, (size_t)n);
	uint64_t held = first;
	size_t held_lines = file_lines(held);
	append_lines(e, "j", 100, 1000);
	sched_events_flush(e);
	cr_assert_eq(count_files(&first, &last), 2);
	cr_assert_gt(first, held + 5, "the reader's file is gone");
	cr_assert_eq(file_size(held), -1);
	read_all(r, &got, sizeof buf, 100);
	size_t k = attempts(&got, at, 1000);
	/* all of the held file, then a gap, then the retained files to the end */
	size_t i = 1;
	while (i < k && at[i] == at[i - 1] + 1)
		i++;
	cr_assert_lt(i, k, "a gap where files were removed");
	cr_assert_eq(i, held_lines, "the rest of the held file was read");
	for (i++; i < k; i++)
		cr_assert_eq(at[i], at[i - 1] + 1);
	cr_assert_eq(at[k - 1], 999);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}

struct follower {
	struct sched_events_reader *r;
	long rc;
	uint64_t ms;
};

static void *follow(void *arg)
{
	struct follower *f = arg;
	char buf[1000];
	uint64_t t0 = vl_now_ms();
	while ((f->rc = sched_events_read(f->r, buf, sizeof buf, 10000)) > 0)
		;
	f->ms = vl_now_ms() - t0;
	return NULL;
}

Test(sched_events, close_wakes_followers)
{
	struct sched_events *e = open_log(1 << 20, 4);
	append_lines(e, "j", 0, 3);
	sched_events_flush(e);
	struct follower f[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		f[i] = (struct follower){ sched_events_reader_open(e, i ? NULL : "j", true), 9, 0 };
		pthread_create(&th[i], NULL, follow, &f[i]);
	}
	usleep(100 * 1000);
	sched_events_close(e);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(f[i].rc, -1);
		cr_assert_lt(f[i].ms, 5000);
		char buf[10];
		cr_assert_eq(sched_events_read(f[i].r, buf, sizeof buf, 0), -1);
		sched_events_reader_close(f[i].r);   /* the last one frees the log */
	}
}

struct tail {
	struct sched_events_reader *r;
	struct vl_buf got;
	size_t want;                 /* lines; 0: until the end */
};

static size_t newlines(const struct vl_buf *b)
{
	size_t n = 0;
	for (size_t i = 0; i < b->len; i++)
		n += b->p[i] == '\n';
	return n;
}

/* Follow until want lines came, the end, or 10 s. */
static void *tail_all(void *arg)
{
	struct tail *t = arg;
	char buf[8192];
	uint64_t t0 = vl_now_ms();
	long n;
	while (vl_now_ms() - t0 < 10000 && (!t->want || newlines(&t->got) < t->want) &&
	       (n = sched_events_read(t->r, buf, sizeof buf, 100)) >= 0)
		vl_buf_append(&t->got, buf, (size_t)n);
	return NULL;
}

static void *flush_loop(void *arg)
{
	struct sched_events *e = arg;
	for (int i = 0; i < 200; i++) {
		sched_events_flush(e);
		usleep(500);
	}
	return NULL;
}

Test(sched_events, concurrent_appenders_flushers_and_readers)
{
	static const char *const jobs[] = { "a", "b", "c", "d" };
	struct sched_events *e = open_log(64 * 1024, 1000);
	struct writer w[4];
	struct tail t[2];
	pthread_t wt[4], ft, tt[2];
	for (int i = 0; i < 2; i++) {
		t[i].r = sched_events_reader_open(e, i ? "c" : NULL, true);
		t[i].want = 0;
		vl_buf_init(&t[i].got);
		pthread_create(&tt[i], NULL, tail_all, &t[i]);
	}
	pthread_create(&ft, NULL, flush_loop, e);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct writer){ e, jobs[i], 0, 5000, i == 0 ? 10 : 0, 0 };
		pthread_create(&wt[i], NULL, write_lines, &w[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(wt[i], NULL);
	pthread_join(ft, NULL);
	sched_events_close(e);   /* flushes the rest, ends the readers */
	for (int i = 0; i < 2; i++)
		pthread_join(tt[i], NULL);
	/* on disk: every line once, each job's in order */
	e = open_log(64 * 1024, 1000);
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, false);
	struct vl_buf all;
	vl_buf_init(&all);
	read_all(r, &all, 8192, 0);
	unsigned next[4] = { 0 };
	for (char *p = all.p; p < all.p + all.len; p = strchr(p, '\n') + 1) {
		json_t *j = json_loadb(p, (size_t)(strchr(p, '\n') - p), 0, NULL);
		cr_assert_not_null(j, "a torn or mixed line");
		int k = sget(j, "job")[0] - 'a';
		cr_assert_eq(json_integer_value(json_object_get(j, "attempt")), next[k]++);
		json_decref(j);
	}
	for (int i = 0; i < 4; i++)
		cr_assert_eq(next[i], 5000);
	/* the follower of c saw a prefix of c's lines, in order */
	unsigned at[5000];
	size_t n = attempts(&t[1].got, at, 5000);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(at[i], i);
	cr_assert_leq(t[0].got.len, all.len);
	cr_assert(memcmp(t[0].got.p, all.p, t[0].got.len) == 0);
	for (int i = 0; i < 2; i++) {
		sched_events_reader_close(t[i].r);
		vl_buf_free(&t[i].got);
	}
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&all);
}

Test(sched_events, many_followers_each_get_every_line)
{
	struct sched_events *e = open_log(8192, 1000);
	struct tail t[32];
	pthread_t tt[32], wt;
	for (int i = 0; i < 32; i++) {
		t[i].r = sched_events_reader_open(e, i % 2 ? "j" : NULL, true);
		t[i].want = 3000;
		vl_buf_init(&t[i].got);
		pthread_create(&tt[i], NULL, tail_all, &t[i]);
	}
	struct writer w = { e, "j", 0, 3000, 20, 0 };
	pthread_create(&wt, NULL, write_lines, &w);
	pthread_join(wt, NULL);
	static unsigned at[3000];
	for (int i = 0; i < 32; i++) {
		pthread_join(tt[i], NULL);
		cr_assert_eq(attempts(&t[i].got, at, 3000), 3000);
		cr_assert_eq(at[2999], 2999);
		sched_events_reader_close(t[i].r);
		vl_buf_free(&t[i].got);
	}
	sched_events_close(e);
}

/* ---- write errors (a file size limit stands in for a full disk) ---- */

static void limit_fsize(rlim_t max)
{
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = max;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

Test(sched_events, write_error_keeps_lines_for_the_next_flush)
{
	signal(SIGXFSZ, SIG_IGN);
	struct sched_events *e = open_log(1 << 20, 4);
	append_lines(e, "j", 0, 10);
	cr_assert_eq(sched_events_flush(e), 0);
	limit_fsize((rlim_t)file_size(1) + 50);   /* a line written in part */
	append_lines(e, "j", 10, 20);
	cr_assert_eq(sched_events_flush(e), -1);
	append_lines(e, "j", 20, 30);
	cr_assert_eq(sched_events_flush(e), -1);
	limit_fsize(RLIM_INFINITY);
	cr_assert_eq(sched_events_flush(e), 0);
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, false);
	struct vl_buf got;
	unsigned at[64];
	vl_buf_init(&got);
	read_all(r, &got, 4096, 0);
	cr_assert_eq(attempts(&got, at, 64), 30);
	for (unsigned i = 0; i < 30; i++)
		cr_assert_eq(at[i], i);
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}

Test(sched_events, write_error_holds_a_bounded_tail)
{
	signal(SIGXFSZ, SIG_IGN);
	struct sched_events *e = open_log(64 * 1024, 4);   /* holds 256 KiB */
	limit_fsize(0);
	for (unsigned i = 0; i < 20000; i += 1000) {
		append_lines(e, "j", i, i + 1000);
		cr_assert_eq(sched_events_flush(e), -1);
	}
	limit_fsize(RLIM_INFINITY);
	cr_assert_eq(sched_events_flush(e), 0);
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, false);
	struct vl_buf got;
	static unsigned at[20000];
	vl_buf_init(&got);
	read_all(r, &got, 65536, 0);
	cr_assert_leq(got.len, 256 * 1024);
	size_t n = attempts(&got, at, 20000);
	cr_assert_gt(n, 500);
	cr_assert_lt(n, 20000, "the oldest were dropped");
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(at[i], 20000 - n + i, "the newest kept, in order");
	sched_events_reader_close(r);
	sched_events_close(e);
	vl_buf_free(&got);
}
