/* feedback/: hostile input (every bound and the error naming it), every
 * prefix of a real DSN, transfer decoding, and the matching hints. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/common.h"
#include "../../feedback/fb_int.h"
#include "fb_samples.h"

static char err[256];

static int parse(const char *m, size_t n, const struct fb_opts *o, struct fb_report *r)
{
	err[0] = '\0';
	return fb_parse(m, n, o, r, err, sizeof err);
}

static void expect_error(const char *m, size_t n, const char *what)
{
	struct fb_report r;

	cr_assert_eq(parse(m, n, NULL, &r), -1, "accepted; wanted an error with \"%s\"", what);
	cr_assert(strstr(err, what), "error \"%s\" does not say \"%s\"", err, what);
	cr_assert_eq(r.kind, FB_NOT_REPORT);
	cr_assert_null(r.envelope_to);
	fb_report_free(&r);
}

Test(feedback_bounds, size_limit)
{
	struct fb_opts o;
	struct fb_report r;
	size_t n;
	char *m = fb_sample("postfix-dsn.eml", &n);

	fb_opts_default(&o);
	cr_assert_eq(o.max_size, 10u * 1024 * 1024);
	o.max_size = n - 1;
	cr_assert_eq(parse(m, n, &o, &r), -1);
	cr_assert(strstr(err, "over the limit"), "%s", err);
	fb_report_free(&r);
	o.max_size = n;
	cr_assert_eq(parse(m, n, &o, &r), 0, "%s", err);
	cr_assert_eq(r.kind, FB_DSN);
	fb_report_free(&r);
	free(m);
}

/* Every prefix of a real DSN: no crash, no leak (ASan), never a wrong kind. */
Test(feedback_bounds, every_prefix_of_a_dsn)
{
	size_t n, dsn = 0;
	char *m = fb_sample("postfix-dsn.eml", &n);

	for (size_t k = 0; k <= n; k++) {
		char *c = malloc(k ? k : 1);    /* exact size: ASan sees any overread */
		memcpy(c, m, k);
		struct fb_report r;
		if (parse(c, k, NULL, &r) == 0) {
			cr_assert(r.kind == FB_DSN || r.kind == FB_NOT_REPORT, "prefix %zu: kind %d", k,
				  r.kind);
			if (r.kind == FB_DSN) {
				dsn++;
				/* a cut inside the address keeps what is there */
				const char *a = r.rcpts[0].final_rcpt;
				cr_assert(a && strchr(a, '@') && !strncmp(a, "nobody@example.org", strlen(a)),
					  "%s", a);
			}
		}
		fb_report_free(&r);
		free(c);
	}
	cr_assert_gt(dsn, 100, "truncated returned headers still give the DSN (%zu)", dsn);
	free(m);
}

Test(feedback_bounds, multipart_without_boundary)
{
	static const char m[] = "Content-Type: multipart/report; report-type=delivery-status\n\n"
				"--x\nContent-Type: message/delivery-status\n\n";
	expect_error(m, sizeof m - 1, "without a boundary");
}

Test(feedback_bounds, boundary_over_70_characters)
{
	char m[400];
	char b[72];

	memset(b, 'a', 71);
	b[71] = '\0';
	snprintf(m, sizeof m, "Content-Type: multipart/report; report-type=delivery-status; "
			      "boundary=\"%s\"\n\n--%s\n\n--%s--\n", b, b, b);
	expect_error(m, strlen(m), "boundary RFC 2046 refuses");
	b[70] = '\0';   /* 70: allowed, then the missing status part is the error */
	snprintf(m, sizeof m, "Content-Type: multipart/report; report-type=delivery-status; "
			      "boundary=\"%s\"\n\n--%s\n\n--%s--\n", b, b, b);
	expect_error(m, strlen(m), "without its message/delivery-status part");
}

Test(feedback_bounds, boundary_not_in_body)
{
	static const char m[] = "Content-Type: multipart/report; report-type=feedback-report; "
				"boundary=abc\n\nno parts here\n--abd\n";
	expect_error(m, sizeof m - 1, "no MIME delimiter");
}

Test(feedback_bounds, huge_header_line)
{
	size_t n = FB_LINE_MAX + 100;
	char *m = malloc(n + 40);
	size_t k = (size_t)sprintf(m, "Subject: ");
	memset(m + k, 'x', n);
	memcpy(m + k + n, "\n\nbody\n", 7);
	expect_error(m, k + n + 7, "header line longer than");
	/* a continuation line counts the same */
	k = (size_t)sprintf(m, "Subject: a\n ");
	memset(m + k, 'y', n);
	memcpy(m + k + n, "\n\nbody\n", 7);
	expect_error(m, k + n + 7, "header line longer than");
	free(m);
}

Test(feedback_bounds, long_folded_field_is_cut_not_refused)
{
	struct vl_buf b;
	struct fb_report r;

	vl_buf_init(&b);
	vl_buf_appends(&b, "From: MAILER-DAEMON@x.example.org\nSubject: Undelivered Mail");
	for (int i = 0; i < 2000; i++)
		vl_buf_appends(&b, "\n more words in the subject");
	vl_buf_appends(&b, "\n\n<a@example.org>: 550 5.1.1 no\n");
	cr_assert_eq(parse(b.p, b.len, NULL, &r), 0, "%s", err);
	/* cut at FB_FIELD_MAX, then trimmed */
	cr_assert_leq(strlen(r.subject), FB_FIELD_MAX);
	cr_assert_gt(strlen(r.subject), FB_FIELD_MAX - 2);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	fb_report_free(&r);
	vl_buf_free(&b);
}

static void nested(struct vl_buf *b, int depth)
{
	vl_buf_appends(b, "Content-Type: multipart/mixed; boundary=\"b0\"\n\n");
	for (int i = 1; i <= depth; i++)
		vl_buf_printf(b, "--b%d\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n", i - 1, i);
	vl_buf_printf(b, "--b%d\nContent-Type: text/plain\n\nx\n", depth);
	for (int i = depth; i >= 0; i--)
		vl_buf_printf(b, "--b%d--\n", i);
}

Test(feedback_bounds, nesting_depth_20)
{
	struct vl_buf b;
	struct fb_report r;

	vl_buf_init(&b);
	nested(&b, 20);
	expect_error(b.p, b.len, "nesting deeper than 8");
	vl_buf_reset(&b);
	nested(&b, 7);  /* within the bound: an ordinary non-report */
	cr_assert_eq(parse(b.p, b.len, NULL, &r), 0, "%s", err);
	cr_assert_eq(r.kind, FB_NOT_REPORT);
	fb_report_free(&r);
	vl_buf_free(&b);
}

Test(feedback_bounds, too_many_parts)
{
	struct vl_buf b;

	vl_buf_init(&b);
	vl_buf_appends(&b, "Content-Type: multipart/mixed; boundary=p\n\n");
	for (int i = 0; i < 100; i++)
		vl_buf_appends(&b, "--p\nContent-Type: text/plain\n\nx\n");
	vl_buf_appends(&b, "--p--\n");
	expect_error(b.p, b.len, "more MIME parts than the limit");
	vl_buf_free(&b);
}

Test(feedback_bounds, recipients_cut_at_the_limit)
{
	struct vl_buf b;
	struct fb_report r;

	vl_buf_init(&b);
	vl_buf_appends(&b, "Content-Type: multipart/report; report-type=delivery-status; boundary=q\n\n"
			   "--q\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; m.example\n\n");
	for (int i = 0; i < 1500; i++)
		vl_buf_printf(&b, "Final-Recipient: rfc822; u%d@example.org\nAction: failed\n"
				  "Status: 5.1.1\n\n", i);
	vl_buf_appends(&b, "--q--\n");
	cr_assert_eq(parse(b.p, b.len, NULL, &r), 0, "%s", err);
	cr_assert_eq(r.kind, FB_DSN);
	cr_assert_eq(r.nrcpts, FB_MAX_RCPTS);
	cr_assert(r.truncated);
	cr_assert_str_eq(r.rcpts[999].final_rcpt, "u999@example.org");
	fb_report_free(&r);
	vl_buf_free(&b);
}

Test(feedback_bounds, arf_without_feedback_type)
{
	static const char m[] = "Content-Type: multipart/report; report-type=feedback-report; boundary=z\n\n"
				"--z\nContent-Type: message/feedback-report\n\nUser-Agent: x/1\n\n--z--\n";
	expect_error(m, sizeof m - 1, "without Feedback-Type");
}

Test(feedback_bounds, dsn_without_recipient_block)
{
	static const char m[] = "Content-Type: multipart/report; report-type=delivery-status; boundary=z\n\n"
				"--z\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; a.b\n\n--z--\n";
	expect_error(m, sizeof m - 1, "without a per-recipient block");
}

Test(feedback_bounds, original_rcpt_to_repeats)
{
	static const char m[] = "Content-Type: multipart/report; report-type=feedback-report; boundary=z\n\n"
				"--z\nContent-Type: message/feedback-report\n\nFeedback-Type: fraud\n"
				"Original-Rcpt-To: <a@example.org>\nOriginal-Rcpt-To: b@example.org\n"
				"Original-Rcpt-To: <c@example.org>\n\n--z--\n";
	struct fb_report r;

	cr_assert_eq(parse(m, sizeof m - 1, NULL, &r), 0, "%s", err);
	cr_assert_eq(r.kind, FB_ARF);
	cr_assert_str_eq(r.feedback_type, "fraud");
	cr_assert_eq(r.norig_rcpt_to, 3);
	cr_assert_str_eq(r.orig_rcpt_to[1], "b@example.org");
	cr_assert_str_eq(r.orig_rcpt_to[2], "c@example.org");
	fb_report_free(&r);
}

Test(feedback_bounds, decoding_is_bounded_by_its_input)
{
	struct fb_entity e = { 0 };
	size_t len;
	char *d;

	e.cte = FB_CTE_BASE64;
	e.body = (struct fb_slice){ "SGVs\r\nbG8=junk", 14 };
	d = fb_decode(&e, 1000, &len);
	cr_assert_eq(len, 5);
	cr_assert_str_eq(d, "Hello");
	free(d);
	d = fb_decode(&e, 4, &len);     /* only the first 4 octets read */
	cr_assert_eq(len, 3);
	cr_assert_str_eq(d, "Hel");
	free(d);
	e.cte = FB_CTE_QP;
	e.body = (struct fb_slice){ "a=3Db=\r\nc=ZZ=4", 14 };
	d = fb_decode(&e, 1000, &len);
	cr_assert_str_eq(d, "a=bc=ZZ=4");
	cr_assert_leq(len, 14);
	free(d);
}

Test(feedback_bounds, status_shapes)
{
	cr_assert_eq(fb_status_at("5.1.1", 5), 5);
	cr_assert_eq(fb_status_at("4.4.1 (x)", 9), 5);
	cr_assert_eq(fb_status_at("2.123.456", 9), 9);
	cr_assert_eq(fb_status_at("3.1.1", 5), 0);
	cr_assert_eq(fb_status_at("5.1234.1", 8), 0);
	cr_assert_eq(fb_status_at("5.1.", 4), 0);
	cr_assert_eq(fb_status_at("5.1.1.1", 7), 0);
}

Test(feedback_match, verp)
{
	char id[FB_JOB_ID_LEN + 1];
	size_t idx = 0;

	cr_assert(fb_match_verp("bounces+0194c1d2e3f4-5a6b7c8d.42@news.example.com", id, &idx));
	cr_assert_str_eq(id, "0194c1d2e3f4-5a6b7c8d");
	cr_assert_eq(idx, 42);
	cr_assert(fb_match_verp("a+b+0194c1d2e3f4-5a6b7c8d.0@x", id, &idx));
	cr_assert_eq(idx, 0);
	cr_assert(fb_match_verp("\"odd local+0194c1d2e3f4-5a6b7c8d.7\"@x", id, &idx));
	cr_assert_eq(idx, 7);
	cr_assert_not(fb_match_verp("bounces+0194C1D2E3F4-5a6b7c8d.42@x", id, &idx), "uppercase hex");
	cr_assert_not(fb_match_verp("bounces+0194c1d2e3f4-5a6b7c8d@x", id, &idx), "no index");
	cr_assert_not(fb_match_verp("bounces+0194c1d2e3f4-5a6b7c8d.@x", id, &idx));
	cr_assert_not(fb_match_verp("bounces+0194c1d2e3f4-5a6b7c8d.4x@x", id, &idx));
	cr_assert_not(fb_match_verp("bounces+0194c1d2e3f4-5a6b7c8d.123456789012345678901@x", id, &idx));
	cr_assert_not(fb_match_verp("bounces+0194c1d2e3f45a6b7c8d0.42@x", id, &idx), "no dash");
	cr_assert_not(fb_match_verp("bounces@x", id, &idx));
	cr_assert_not(fb_match_verp("bounces+0194c1d2e3f4-5a6b7c8d.42", id, &idx), "no domain");
	cr_assert_not(fb_match_verp(NULL, id, &idx));
}

Test(feedback_match, msgid)
{
	char id[FB_JOB_ID_LEN + 1];
	size_t idx = 0;
	bool has = false;

	cr_assert(fb_match_msgid("<0194c1d2e3f4-5a6b7c8d.12@mta.example.com>", id, &idx, &has));
	cr_assert(has);
	cr_assert_eq(idx, 12);
	cr_assert(fb_match_msgid(" <0194c1d2e3f4-5a6b7c8d@mta.example.com>", id, &idx, &has));
	cr_assert_not(has);
	cr_assert_str_eq(id, "0194c1d2e3f4-5a6b7c8d");
	cr_assert(fb_match_msgid("0194c1d2e3f4-5a6b7c8d.3@h", id, &idx, &has));
	cr_assert_eq(idx, 3);
	cr_assert_not(fb_match_msgid("<0194c1d2e3f4-5a6b7c8d.x@h>", id, &idx, &has));
	cr_assert_not(fb_match_msgid("<0194c1d2e3f4-5a6b7c8dz@h>", id, &idx, &has));
	cr_assert_not(fb_match_msgid("<CAF=abc123@mail.example.org>", id, &idx, &has));
	cr_assert_not(fb_match_msgid("<short@h>", id, &idx, &has));
	cr_assert_not(fb_match_msgid("8787KJKJ3K4J3K4J3K4J3.mail@example.net", id, &idx, &has));
}

/* The heuristic reads the parts find_report read: a budget of its own, so
 * 40 parts (under the 64) are not counted twice. */
Test(feedback_bounds, forty_parts_are_not_counted_twice)
{
	struct vl_buf b;
	struct fb_report r;

	vl_buf_init(&b);
	vl_buf_appends(&b, "From: MAILER-DAEMON@x.example.org\nContent-Type: multipart/mixed; boundary=p\n\n");
	vl_buf_appends(&b, "--p\nContent-Type: text/plain\n\n<lost@example.org>: 550 5.1.1 unknown\n");
	for (int i = 0; i < 39; i++)
		vl_buf_appends(&b, "--p\nContent-Type: application/octet-stream\n\nx\n");
	vl_buf_appends(&b, "--p--\n");
	cr_assert_eq(parse(b.p, b.len, NULL, &r), 0, "%s", err);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "lost@example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.1.1");
	fb_report_free(&r);
	vl_buf_free(&b);
}

Test(feedback_bounds, zero_options_take_the_defaults)
{
	struct fb_opts o = { 0 };
	struct fb_report r;
	size_t n;
	char *m = fb_sample("multi-rcpt-dsn.eml", &n);

	cr_assert_eq(parse(m, n, &o, &r), 0, "%s", err);
	cr_assert_eq(r.nrcpts, 3);
	fb_report_free(&r);
	o.max_rcpts = 2;
	cr_assert_eq(parse(m, n, &o, &r), 0, "%s", err);
	cr_assert_eq(r.nrcpts, 2);
	cr_assert(r.truncated);
	fb_report_free(&r);
	free(m);
}
