/* The events log's positions (scheduler/events.c) as webhooks use them:
 * a reader opened at a place, type filters, at most N lines a read, the
 * position after a read, and places lost to retention or beyond the log. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../scheduler/scheduler.h"
#include "unit.h"

static char tmp[64], dir[96];

static void setup(void)
{
	unit_tmpdir(tmp, sizeof tmp, "whev");
	snprintf(dir, sizeof dir, "%s/events", tmp);
}

static void teardown(void)
{
	unit_rmdir(tmp);
}

TestSuite(webhook_events, .init = setup, .fini = teardown);

static struct sched_events *open_log(uint64_t rotate, unsigned keep)
{
	char err[256];
	struct sched_events *e = sched_events_open(dir, rotate, keep, err, sizeof err);
	cr_assert_not_null(e, "%s", err);
	return e;
}

/* Event i: a Delivery, every third a Bounce; recipient r<i>. */
static void add(struct sched_events *e, unsigned from, unsigned to)
{
	struct vl_buf b;

	vl_buf_init(&b);
	for (unsigned i = from; i < to; i++) {
		char rcpt[32];
		snprintf(rcpt, sizeof rcpt, "r%u@example.net", i);
		struct sched_event ev = { .type = i % 3 == 2 ? "Bounce" : "Delivery",
					  .time = 1795454401.5, .job = "j", .recipient = rcpt,
					  .code = 250, .text = "ok" };
		sched_event_format(&ev, &b);
	}
	sched_events_append(e, b.p, b.len);
	cr_assert_eq(sched_events_flush(e), 0);
	vl_buf_free(&b);
}

/* The recipients' numbers in buf[0, n), into out; returns how many. */
static size_t numbers(const char *buf, long n, unsigned *out, size_t max)
{
	size_t k = 0;
	const char *p = buf, *end = buf + n;

	while (p < end && k < max && (p = memmem(p, (size_t)(end - p), "\"recipient\":\"r", 14))) {
		p += 14;
		out[k++] = (unsigned)strtoul(p, NULL, 10);
	}
	return k;
}

static char buf[1 << 16];

Test(webhook_events, read_n_lines_and_resume_at_the_position)
{
	struct sched_events *e = open_log(0, 10);
	struct sched_events_pos start = sched_events_end(e), p;
	unsigned got[64];
	size_t lines;

	add(e, 0, 10);
	struct sched_events_reader *r = sched_events_reader_open_at(e, &start, NULL, 0, NULL);
	long n = sched_events_read_lines(r, buf, sizeof buf, 4, &lines, 0);
	cr_assert_eq(lines, 4);
	cr_assert_eq(numbers(buf, n, got, 64), 4);
	cr_assert_eq(got[0], 0);
	cr_assert_eq(got[3], 3);
	p = sched_events_reader_pos(r);
	sched_events_reader_close(r);

	/* a new reader at p goes on with event 4, whole lines */
	r = sched_events_reader_open_at(e, &p, NULL, 0, NULL);
	n = sched_events_read_lines(r, buf, sizeof buf, 100, &lines, 0);
	cr_assert_eq(lines, 6);
	cr_assert_eq(numbers(buf, n, got, 64), 6);
	cr_assert_eq(got[0], 4);
	cr_assert_eq(buf[n - 1], '\n');
	/* caught up: nothing now, and the position is the log's end */
	cr_assert_eq(sched_events_read_lines(r, buf, sizeof buf, 100, &lines, 0), 0);
	p = sched_events_reader_pos(r);
	struct sched_events_pos end = sched_events_end(e);
	cr_assert_eq(p.seq, end.seq);
	cr_assert_eq(p.off, end.off);
	sched_events_reader_close(r);
	sched_events_close(e);
}

Test(webhook_events, open_at_the_end_sees_only_new_events)
{
	struct sched_events *e = open_log(0, 10);
	unsigned got[64];
	size_t lines;

	add(e, 0, 5);
	struct sched_events_reader *r = sched_events_reader_open_at(e, NULL, NULL, 0, NULL);
	cr_assert_eq(sched_events_read_lines(r, buf, sizeof buf, 100, &lines, 0), 0);
	add(e, 5, 7);
	long n = sched_events_read_lines(r, buf, sizeof buf, 100, &lines, 100);
	cr_assert_eq(numbers(buf, n, got, 64), 2);
	cr_assert_eq(got[0], 5);
	sched_events_reader_close(r);
	sched_events_close(e);
}

Test(webhook_events, types_filter_and_the_position_passes_the_others)
{
	struct sched_events *e = open_log(0, 10);
	struct sched_events_pos start = sched_events_end(e);
	const char *const types[] = { "Bounce" };
	unsigned got[64];
	size_t lines;

	add(e, 0, 9);   /* Bounces: 2, 5, 8 */
	struct sched_events_reader *r = sched_events_reader_open_at(e, &start, types, 1, NULL);
	long n = sched_events_read_lines(r, buf, sizeof buf, 2, &lines, 0);
	cr_assert_eq(lines, 2);
	cr_assert_eq(numbers(buf, n, got, 64), 2);
	cr_assert_eq(got[0], 2);
	cr_assert_eq(got[1], 5);
	cr_assert_null(memmem(buf, (size_t)n, "Delivery", 8));
	struct sched_events_pos p = sched_events_reader_pos(r);
	sched_events_reader_close(r);
	r = sched_events_reader_open_at(e, &p, types, 1, NULL);
	n = sched_events_read_lines(r, buf, sizeof buf, 10, &lines, 0);
	cr_assert_eq(numbers(buf, n, got, 64), 1);
	cr_assert_eq(got[0], 8);
	sched_events_reader_close(r);
	sched_events_close(e);
}

Test(webhook_events, positions_across_rotation)
{
	struct sched_events *e = open_log(1000, 50);   /* a file every few lines */
	struct sched_events_pos p = sched_events_end(e);
	unsigned got[64], next = 0;
	size_t lines;

	add(e, 0, 40);
	/* three lines at a time, each from a fresh reader at the last position */
	while (next < 40) {
		struct sched_events_reader *r = sched_events_reader_open_at(e, &p, NULL, 0, NULL);
		long n = sched_events_read_lines(r, buf, sizeof buf, 3, &lines, 0);
		cr_assert_gt(n, 0, "stuck at %u", next);
		size_t k = numbers(buf, n, got, 64);
		for (size_t i = 0; i < k; i++)
			cr_assert_eq(got[i], next++);
		p = sched_events_reader_pos(r);
		sched_events_reader_close(r);
	}
	cr_assert_gt(p.seq, 1);
	sched_events_close(e);
}

Test(webhook_events, a_position_lost_to_retention_goes_on_at_the_oldest)
{
	struct sched_events *e = open_log(1000, 3);
	struct sched_events_pos p = sched_events_end(e), oldest;
	uint64_t skipped = 0;
	unsigned got[64];
	size_t lines;

	add(e, 0, 60);   /* ~12 files of which 3 are kept */
	oldest = sched_events_begin(e);
	cr_assert_gt(oldest.seq, p.seq);
	struct sched_events_reader *r = sched_events_reader_open_at(e, &p, NULL, 0, &skipped);
	cr_assert_eq(skipped, oldest.seq - p.seq);
	long n = sched_events_read_lines(r, buf, sizeof buf, 1, &lines, 0);
	cr_assert_eq(numbers(buf, n, got, 64), 1);
	cr_assert_gt(got[0], 0);
	sched_events_reader_close(r);

	/* beyond the log (the folder replaced): the oldest, nothing counted */
	struct sched_events_pos far = { p.seq + 1000, 5 };
	r = sched_events_reader_open_at(e, &far, NULL, 0, &skipped);
	cr_assert_eq(skipped, 0);
	n = sched_events_read_lines(r, buf, sizeof buf, 1, &lines, 0);
	unsigned first = got[0];
	cr_assert_eq(numbers(buf, n, got, 64), 1);
	cr_assert_eq(got[0], first);
	sched_events_reader_close(r);
	sched_events_close(e);
}

Test(webhook_events, a_line_cut_in_pieces_counts_from_its_start)
{
	struct sched_events *e = open_log(0, 10);
	struct sched_events_pos start = sched_events_end(e), p;
	size_t lines;

	add(e, 0, 2);
	struct sched_events_reader *r = sched_events_reader_open_at(e, &start, NULL, 0, NULL);
	char small[40];
	cr_assert_eq(sched_events_read_lines(r, small, sizeof small, 5, &lines, 0), 40);
	p = sched_events_reader_pos(r);
	cr_assert_eq(p.off, start.off);      /* inside the first line: still its start */
	sched_events_reader_close(r);
	sched_events_close(e);
}
