/* scheduler/rcptcur.c: the recipients cursor gives each recipient's last
 * committed outcome from the mapped journal and feedback file, the same
 * with windows of any size, with filters, job-wide records, late bounces
 * and a torn tail. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../scheduler/sched_int.h"
#include "unit.h"

#define N 10

static char dir[64], journal[128], feedback[128], id[SCHED_ID_LEN + 1];
static struct sched_spool *sp;

static void rec(struct vl_buf *b, uint32_t idx, enum sched_rstate st, int code,
		const char *text, uint8_t flags)
{
	struct sched_jrec r = { .idx = idx, .state = (uint8_t)st, .attempts = 1,
				.time = 1796600000, .code = (int16_t)code, .flags = flags,
				.cls = code >= 500 ? SCHED_BC_INVALID_RECIPIENT :
				       code >= 400 ? SCHED_BC_RATE_LIMITED : SCHED_BC_NONE };
	snprintf(r.enhanced, sizeof r.enhanced, "%s", code >= 500 ? "5.1.1" : code ? "2.0.0" : "");
	r.textlen = (uint16_t)snprintf(r.text, sizeof r.text, "%s", text);
	sched_journal_encode(&r, b);
}

static void write_file(const char *path, const struct vl_buf *b, size_t cut)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(b->p, 1, b->len - cut, f), b->len - cut);
	fclose(f);
}

static void setup(void)
{
	char err[256];
	size_t first;
	struct vl_buf j, fb;

	unit_tmpdir(dir, sizeof dir, "rcptcur");
	sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
	sched_new_id(id);
	struct sched_intake *in = sched_intake_begin(sp, id, err, sizeof err);
	cr_assert_not_null(in, "%s", err);
	for (int i = 0; i < N; i++) {
		char email[32];
		snprintf(email, sizeof email, "u%d@example.net", i);
		struct sched_rcpt r = { .email = email, .email_len = strlen(email) };
		cr_assert_eq(sched_intake_add(in, &r, &first), 0);
	}
	cr_assert_eq(sched_intake_commit(in, "{}", 2), 0);
	cr_assert_eq(sched_spool_path(sp, id, SCHED_SPOOL_JOURNAL, journal, sizeof journal), 0);
	cr_assert_eq(sched_spool_path(sp, id, SCHED_SPOOL_FEEDBACK, feedback, sizeof feedback), 0);
	/* 0-3 delivered (1 deferred first), 4 and 5 bounced, 6 deferred, then
	 * the job expires: 6-9 expired, 6 keeps its deferral's words; 2 is
	 * bounced late; a torn record at the end is not read */
	vl_buf_init(&j);
	for (uint32_t i = 0; i < 4; i++)
		rec(&j, i, i == 1 ? SCHED_R_DEFERRED : SCHED_R_DELIVERED, i == 1 ? 451 : 250,
		    i == 1 ? "later" : "ok", 0);
	rec(&j, 1, SCHED_R_DELIVERED, 250, "ok at last", 0);
	rec(&j, 4, SCHED_R_BOUNCED, 550, "no such user", 0);
	rec(&j, 5, SCHED_R_BOUNCED, 550, "gone", 0);
	rec(&j, 6, SCHED_R_DEFERRED, 451, "try again", 0);
	rec(&j, SCHED_JREC_ALL, SCHED_R_EXPIRED, 0, "expired", 0);
	rec(&j, 7, SCHED_R_DELIVERED, 250, "torn", 0);
	write_file(journal, &j, 3);
	vl_buf_init(&fb);
	rec(&fb, 2, SCHED_R_BOUNCED, 550, "late: mailbox gone", SCHED_FBR_OOB);
	rec(&fb, 3, SCHED_R_DELIVERED, 0, "complaint", SCHED_FBR_COMPLAINT);
	write_file(feedback, &fb, 0);
	vl_buf_free(&j);
	vl_buf_free(&fb);
}

static void teardown(void)
{
	sched_spool_close(sp);
	unit_rmdir(dir);
}

TestSuite(sched_rcptcur, .init = setup, .fini = teardown);

/* "index state text" per line, text "-" when none. */
static void read_page(enum sched_state filter, size_t win, size_t chunk, size_t first,
		      size_t limit, struct vl_buf *out)
{
	struct sched_cursor *c = sched_cursor_new(sched_table_open(sp, id), journal, feedback,
						  false, filter, win);
	if (first || limit)
		sched_cursor_page(c, first, limit);
	struct vl_buf raw;
	char buf[4096];
	size_t n;

	vl_buf_init(&raw);
	while ((n = sched_recipients_read(c, buf, chunk)))
		vl_buf_append(&raw, buf, n);
	sched_recipients_close(c);
	vl_buf_append(&raw, "", 1);
	vl_buf_reset(out);
	for (char *line = strtok(raw.p, "\n"); line; line = strtok(NULL, "\n")) {
		json_error_t e;
		json_t *o = json_loads(line, 0, &e);
		cr_assert_not_null(o, "%s: %s", line, e.text);
		json_t *resp = json_object_get(o, "response");
		const char *text = json_is_object(resp) ?
			json_string_value(json_object_get(resp, "text")) :
			json_string_value(json_object_get(o, "reason"));
		vl_buf_printf(out, "%lld %s %s\n", json_integer_value(json_object_get(o, "index")),
			      json_string_value(json_object_get(o, "state")), text ? text : "-");
		json_decref(o);
	}
	vl_buf_append(out, "", 1);
	vl_buf_free(&raw);
}

static void read_all(enum sched_state filter, size_t win, size_t chunk, struct vl_buf *out)
{
	read_page(filter, win, chunk, 0, 0, out);
}

static const char *all =
	"0 delivered ok\n1 delivered ok at last\n2 bounced late: mailbox gone\n3 delivered ok\n"
	"4 bounced no such user\n5 bounced gone\n6 expired try again\n7 expired expired\n"
	"8 expired expired\n9 expired expired\n";

Test(sched_rcptcur, every_window_size_gives_the_same)
{
	struct vl_buf out;

	vl_buf_init(&out);
	for (size_t win = 0; win <= N + 1; win++)
		for (size_t chunk = 40; chunk <= 4096; chunk *= 8) {
			read_all(SCHED_NSTATES, win, chunk, &out);
			cr_assert_str_eq(out.p, all, "window %zu, chunk %zu", win, chunk);
		}
	vl_buf_free(&out);
}

Test(sched_rcptcur, filters)
{
	struct vl_buf out;

	vl_buf_init(&out);
	read_all(SCHED_BOUNCED, 2, 4096, &out);
	cr_assert_str_eq(out.p, "2 bounced late: mailbox gone\n4 bounced no such user\n"
			 "5 bounced gone\n");
	read_all(SCHED_DELIVERED, 1, 4096, &out);
	cr_assert_str_eq(out.p, "0 delivered ok\n1 delivered ok at last\n3 delivered ok\n");
	read_all(SCHED_QUEUED, 0, 4096, &out);
	cr_assert_str_eq(out.p, "");
	vl_buf_free(&out);
}

Test(sched_rcptcur, no_journal_yet)
{
	struct vl_buf out;

	cr_assert_eq(unlink(journal), 0);
	cr_assert_eq(unlink(feedback), 0);
	vl_buf_init(&out);
	read_all(SCHED_NSTATES, 4, 4096, &out);
	cr_assert_eq(strncmp(out.p, "0 queued -\n1 queued -\n", 22), 0, "%s", out.p);
	vl_buf_free(&out);
}

Test(sched_rcptcur, pages)
{
	struct vl_buf out;

	vl_buf_init(&out);
	for (size_t win = 0; win <= 3; win++) {
		read_page(SCHED_NSTATES, win, 4096, 0, 3, &out);
		cr_assert_str_eq(out.p, "0 delivered ok\n1 delivered ok at last\n"
				 "2 bounced late: mailbox gone\n", "window %zu", win);
		read_page(SCHED_NSTATES, win, 40, 8, 5, &out);
		cr_assert_str_eq(out.p, "8 expired expired\n9 expired expired\n", "window %zu", win);
	}
	read_page(SCHED_BOUNCED, 0, 4096, 3, 1, &out);      /* after index 2 */
	cr_assert_str_eq(out.p, "4 bounced no such user\n");
	read_page(SCHED_BOUNCED, 0, 4096, 5, 10, &out);
	cr_assert_str_eq(out.p, "5 bounced gone\n");
	read_page(SCHED_BOUNCED, 0, 4096, 6, 10, &out);
	cr_assert_str_eq(out.p, "");
	read_page(SCHED_NSTATES, 0, 4096, 1000, 10, &out);   /* past the end */
	cr_assert_str_eq(out.p, "");
	vl_buf_free(&out);
}

Test(sched_rcptcur, classes)
{
	struct sched_cursor *c = sched_cursor_new(sched_table_open(sp, id), journal, feedback,
						  false, SCHED_NSTATES, 0);
	json_t *j = sched_cursor_classes(c);
	char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	/* 2 bounced late (its feedback record's class), 4 and 5 bounced; 6
	 * expired keeps its deferral's class; 7-9 expired with none */
	cr_assert_str_eq(text, "{\"bounced\":{\"invalid-recipient\":3},\"deferred\":{},"
			 "\"expired\":{\"rate-limited\":1}}");
	free(text);
	json_decref(j);
	sched_recipients_close(c);
}
