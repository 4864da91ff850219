/* scheduler/journal.c: records encoded, appended and replayed come back the
 * same; a torn tail (a partial last record, or zeros) is cut off and the
 * file truncated to its last whole record; a record with a bad checksum or
 * an impossible state ends the replay there; empty and missing files; I/O
 * errors. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../scheduler/sched_int.h"
#include "unit.h"

static char dir[64], path[128];

static void setup(void)
{
	cr_redirect_stderr();    /* the cut tails are logged as warnings */
	unit_tmpdir(dir, sizeof dir, "journal");
	snprintf(path, sizeof path, "%s/journal", dir);
}

static void teardown(void)
{
	unit_rmdir(dir);
}

TestSuite(sched_journal, .init = setup, .fini = teardown);

#define MAXREC 64
struct got {
	struct sched_jrec r[MAXREC];
	size_t n;
};

static void collect(void *arg, const struct sched_jrec *r)
{
	struct got *g = arg;
	cr_assert_lt(g->n, MAXREC);
	g->r[g->n++] = *r;
}

static void write_file(const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static off_t file_size(void)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

/* Record i of a varied set: every state, attempts, classes, codes, texts
 * of every length class (none, short, the most kept, longer than kept). */
static struct sched_jrec sample(size_t i)
{
	struct sched_jrec r = { 0 };
	static const size_t lens[] = { 0, 1, 17, SCHED_JREC_TEXT_MAX };

	r.idx = i == 5 ? SCHED_JREC_ALL : (uint32_t)(i * 7919);
	r.state = (uint8_t)(i % (SCHED_R_SUPPRESSED + 1));
	r.attempts = (uint8_t)(i * 3);
	r.cls = (uint8_t)(i % SCHED_BC_COUNT);
	r.flags = (uint8_t)(i & 1);
	r.time = 1795454401u + (uint32_t)i;
	r.code = (int16_t)(i % 3 == 0 ? 0 : 250 + (int)i);
	if (i % 2)
		snprintf(r.enhanced, sizeof r.enhanced, "5.%zu.1", i % 8);
	r.textlen = (uint16_t)lens[i % 4];
	for (size_t k = 0; k < r.textlen; k++)
		r.text[k] = (char)('a' + (i + k) % 26);
	r.text[r.textlen] = '\0';
	return r;
}

static void same(const struct sched_jrec *a, const struct sched_jrec *b, size_t i)
{
	cr_assert_eq(a->idx, b->idx, "record %zu", i);
	cr_assert_eq(a->state, b->state, "record %zu", i);
	cr_assert_eq(a->attempts, b->attempts, "record %zu", i);
	cr_assert_eq(a->cls, b->cls, "record %zu", i);
	cr_assert_eq(a->flags, b->flags, "record %zu", i);
	cr_assert_eq(a->time, b->time, "record %zu", i);
	cr_assert_eq(a->code, b->code, "record %zu", i);
	cr_assert_str_eq(a->enhanced, b->enhanced, "record %zu", i);
	cr_assert_eq(a->textlen, b->textlen, "record %zu", i);
	cr_assert_eq(memcmp(a->text, b->text, a->textlen), 0, "record %zu", i);
	cr_assert_eq(b->text[b->textlen], '\0', "record %zu", i);
}

/* n sample records into b; ends[i] is where record i ends. */
static void encode_n(struct vl_buf *b, size_t n, size_t *ends)
{
	vl_buf_init(b);
	for (size_t i = 0; i < n; i++) {
		struct sched_jrec r = sample(i);
		sched_journal_encode(&r, b);
		if (ends)
			ends[i] = b->len;
	}
}

Test(sched_journal, encode_append_replay_round_trip)
{
	struct vl_buf b;
	size_t ends[12];
	struct got *g = calloc(1, sizeof *g);

	encode_n(&b, 12, ends);
	/* appended in two batches, as the committer does */
	write_file(b.p, ends[6]);
	int fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, b.p + ends[6], b.len - ends[6]), (ssize_t)(b.len - ends[6]));
	close(fd);
	cr_assert_eq(sched_journal_replay(path, collect, g), 0);
	cr_assert_eq(g->n, 12);
	for (size_t i = 0; i < 12; i++) {
		struct sched_jrec want = sample(i);
		same(&want, &g->r[i], i);
	}
	cr_assert_eq(file_size(), (off_t)b.len, "a whole journal is left as it is");
	/* decode one at a time: each record's own length */
	for (size_t i = 0, off = 0; i < 12; off = ends[i++]) {
		struct sched_jrec r;
		cr_assert_eq(sched_journal_decode(b.p + off, b.len - off, &r), ends[i] - off);
	}
	vl_buf_free(&b);
	free(g);
}

Test(sched_journal, text_longer_than_kept_is_cut)
{
	struct sched_jrec r = { .idx = 1, .state = SCHED_R_BOUNCED, .textlen = 2000 };
	struct sched_jrec back;
	struct vl_buf b;

	/* the struct holds SCHED_JREC_TEXT_MAX + 1: the encoder must not read past */
	memset(r.text, 'x', SCHED_JREC_TEXT_MAX);
	vl_buf_init(&b);
	sched_journal_encode(&r, &b);
	cr_assert_eq(sched_journal_decode(b.p, b.len, &back), b.len);
	cr_assert_eq(back.textlen, SCHED_JREC_TEXT_MAX);
	cr_assert_eq(strlen(back.text), SCHED_JREC_TEXT_MAX);
	vl_buf_free(&b);
}

Test(sched_journal, torn_tail_cut_at_every_length)
{
	struct vl_buf b;
	size_t ends[4];
	struct got *g = calloc(1, sizeof *g);

	encode_n(&b, 4, ends);
	/* the last record written only partly: every length short of whole */
	for (size_t cut = ends[2] + 1; cut < ends[3]; cut++) {
		write_file(b.p, cut);
		g->n = 0;
		cr_assert_eq(sched_journal_replay(path, collect, g), 0);
		cr_assert_eq(g->n, 3, "cut at %zu", cut);
		cr_assert_eq(file_size(), (off_t)ends[2], "truncated to the last whole record");
		/* replaying the cut file again changes nothing */
		g->n = 0;
		cr_assert_eq(sched_journal_replay(path, collect, g), 0);
		cr_assert_eq(g->n, 3);
		cr_assert_eq(file_size(), (off_t)ends[2]);
	}
	vl_buf_free(&b);
	free(g);
}

Test(sched_journal, zeros_after_the_last_record_are_cut)
{
	struct vl_buf b;
	size_t ends[3];
	struct got *g = calloc(1, sizeof *g);

	encode_n(&b, 3, ends);
	vl_buf_append(&b, (char[4096]){ 0 }, 4096);
	write_file(b.p, b.len);
	cr_assert_eq(sched_journal_replay(path, collect, g), 0);
	cr_assert_eq(g->n, 3);
	cr_assert_eq(file_size(), (off_t)ends[2]);
	vl_buf_free(&b);
	free(g);
}

/* A damaged record ends the replay where it starts: what follows it is
 * cut off with it (it cannot be told from a torn tail). */
static void damaged_at(size_t rec, size_t at)
{
	struct vl_buf b;
	size_t ends[6];
	struct got *g = calloc(1, sizeof *g);

	encode_n(&b, 6, ends);
	size_t start = rec ? ends[rec - 1] : 0;
	cr_assert_lt(start + at, ends[rec]);
	b.p[start + at] ^= 0x20;
	write_file(b.p, b.len);
	cr_assert_eq(sched_journal_replay(path, collect, g), 0);
	cr_assert_eq(g->n, rec, "record %zu, octet %zu", rec, at);
	for (size_t i = 0; i < rec; i++) {
		struct sched_jrec want = sample(i);
		same(&want, &g->r[i], i);
	}
	cr_assert_eq(file_size(), (off_t)start);
	vl_buf_free(&b);
	free(g);
}

Test(sched_journal, bad_checksum_stops_replay_there)
{
	damaged_at(3, 0);        /* the index */
	damaged_at(3, 8);        /* the time */
	damaged_at(2, 30);       /* the text (record 2 has 17 octets of it) */
	damaged_at(2, 28 + 17);  /* the checksum itself */
	damaged_at(0, 14);       /* the first record: nothing is replayed */
}

Test(sched_journal, impossible_state_or_length_is_not_a_record)
{
	struct sched_jrec r = { .idx = 9, .state = SCHED_R_SUPPRESSED + 1, .textlen = 0 };
	struct sched_jrec back;
	struct vl_buf b;

	/* a checksum that matches does not make an unknown state valid */
	vl_buf_init(&b);
	sched_journal_encode(&r, &b);
	cr_assert_eq(sched_journal_decode(b.p, b.len, &back), 0);
	r.state = SCHED_R_SUPPRESSED;
	vl_buf_reset(&b);
	sched_journal_encode(&r, &b);
	cr_assert_eq(sched_journal_decode(b.p, b.len, &back), b.len);
	/* a text length past the most kept */
	uint16_t tl = SCHED_JREC_TEXT_MAX + 1;
	memcpy(b.p + 24, &tl, 2);
	cr_assert_eq(sched_journal_decode(b.p, b.len, &back), 0);
	/* fewer octets than a header */
	cr_assert_eq(sched_journal_decode(b.p, 31, &back), 0);
	vl_buf_free(&b);
}

Test(sched_journal, empty_and_missing_files)
{
	struct got *g = calloc(1, sizeof *g);
	struct stat st;

	write_file("", 0);
	cr_assert_eq(sched_journal_replay(path, collect, g), 0);
	cr_assert_eq(g->n, 0);
	cr_assert_eq(file_size(), 0);
	unlink(path);
	/* no journal yet: a job nothing happened to */
	cr_assert_eq(sched_journal_replay(path, collect, g), 0);
	cr_assert_eq(g->n, 0);
	cr_assert_neq(stat(path, &st), 0, "replay does not create the file");
	free(g);
}

Test(sched_journal, io_errors)
{
	struct got *g = calloc(1, sizeof *g);
	char p[160];

	/* a directory where the journal should be */
	cr_assert_eq(mkdir(path, 0750), 0);
	errno = 0;
	cr_assert_eq(sched_journal_replay(path, collect, g), -1);
	cr_assert_eq(errno, EISDIR);
	/* a file where a directory should be */
	snprintf(p, sizeof p, "%s/journal/x", dir);
	rmdir(path);
	write_file("", 0);
	cr_assert_eq(sched_journal_replay(p, collect, g), -1);
	cr_assert_eq(errno, ENOTDIR);
	cr_assert_eq(g->n, 0);
	free(g);
}
