/* message/shared.c: which jobs and recipients may share a transaction. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "../../message/message.h"

static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
static const struct msg_unsub_conf unsub = {
	.base_url = "https://u.example.com/u", .key = secret, .keylen = 32 };

static struct msg_job *job(const char *content, const char *subs, const char *usub,
			   bool own_unsub)
{
	struct msg_job_opts o = { .job_id = "J1", .hostname = "mta.example.com",
				  .unsub = own_unsub ? &unsub : NULL };
	json_error_t je;
	json_t *c = json_loads(content, JSON_DECODE_ANY, &je);
	json_t *s = subs ? json_loads(subs, 0, &je) : NULL;
	json_t *u = usub ? json_loads(usub, 0, &je) : NULL;
	struct msg_err e;
	cr_assert_not_null(c, "%s: %s", content, je.text);
	struct msg_job *j = msg_job_compile(c, s, u, &o, &e);
	cr_assert_not_null(j, "%s: %s: %s", content, e.field, e.message);
	json_decref(c);
	json_decref(s);
	json_decref(u);
	return j;
}

static bool shareable(const char *content, const char *subs, const char *usub, bool own)
{
	struct msg_job *j = job(content, subs, usub, own);
	bool r = msg_job_shareable(j);
	msg_job_free(j);
	return r;
}

#define FROM "\"from\": {\"email\": \"news@example.com\"}"
#define TO "\"headers\": {\"To\": \"Readers <list@example.com>\"}"

Test(msg_shared, the_generated_to_names_the_recipient)
{
	cr_assert_not(shareable("{" FROM ", \"subject\": \"s\", \"text_body\": \"x\"}", NULL,
				NULL, false));
	cr_assert(shareable("{" FROM ", " TO ", \"subject\": \"s\", \"text_body\": \"x\"}", NULL,
			    NULL, false));
	/* a To of one's own that names the recipient varies again */
	cr_assert_not(shareable("{" FROM ", \"headers\": {\"To\": \"{{ email }}\"}, "
				"\"text_body\": \"x\"}", NULL, NULL, false));
}

Test(msg_shared, job_level_values_are_the_same_for_all)
{
	const char *c = "{" FROM ", " TO ", \"subject\": \"The {{ issue }} issue\", "
			"\"text_body\": \"Hello, the {{ issue }} issue\", "
			"\"html_body\": \"<p>{{ issue }}</p>\"}";
	cr_assert(shareable(c, "{\"issue\": \"December\"}", NULL, false));
	/* without a job value, each recipient brings its own */
	cr_assert_not(shareable(c, NULL, NULL, false));
	/* predefined per-recipient values win over the job's */
	cr_assert_not(shareable("{" FROM ", " TO ", \"text_body\": \"Hi {{ name }}\"}",
				"{\"name\": \"all\"}", NULL, false));
	cr_assert_not(shareable("{" FROM ", " TO ", \"text_body\": \"{{ email }}\"}",
				"{\"email\": \"x@y.z\"}", NULL, false));
	cr_assert_not(shareable("{" FROM ", " TO ", \"subject\": \"{{ to_header }}\", "
				"\"text_body\": \"x\"}", "{\"to_header\": \"x\"}", NULL, false));
}

Test(msg_shared, unsubscribe_urls)
{
	const char *c = "{" FROM ", " TO ", \"text_body\": \"x\"}";
	/* volley's own one-click URL: a token per recipient */
	cr_assert_not(shareable(c, NULL, NULL, true));
	cr_assert_not(shareable("{" FROM ", " TO ", \"text_body\": \"{{ unsubscribe_url }}\"}",
				NULL, "{\"url\": \"https://x.example/u\"}", true));
	/* the job's own URL, the same for all; or none */
	cr_assert(shareable(c, NULL, "{\"url\": \"https://x.example/u\", \"mailto\": "
			    "\"u@example.com\"}", true));
	cr_assert(shareable(c, NULL, "{\"builtin\": false}", true));
	/* the job's URL with a per-recipient value */
	cr_assert_not(shareable(c, NULL, "{\"url\": \"https://x.example/u/{{ token }}\"}", false));
	cr_assert(shareable(c, "{\"token\": \"t\"}",
			    "{\"url\": \"https://x.example/u/{{ token }}\"}", false));
}

Test(msg_shared, content_strings_and_verbatim)
{
	cr_assert(shareable("\"From: a@example.com\\r\\nTo: list@example.com\\r\\n"
			    "Subject: s\\r\\n\\r\\nbody\\r\\n\"", NULL, NULL, false));
	cr_assert_not(shareable("\"From: a@example.com\\r\\nTo: {{ email }}\\r\\n"
				"Subject: s\\r\\n\\r\\nbody\\r\\n\"", NULL, NULL, false));
	const char m[] = "From: a@example.com\r\nTo: x@example.com\r\n\r\nbody {{ x }}\r\n";
	struct msg_job_opts o = { 0 };
	struct msg_err e;
	struct msg_job *j = msg_job_compile_verbatim(m, sizeof m - 1, &o, &e);
	cr_assert_not_null(j);
	cr_assert(msg_job_shareable(j));
	msg_job_free(j);
}

Test(msg_shared, a_recipients_own_values)
{
	struct msg_job *j = job("{" FROM ", " TO ", \"text_body\": \"{{ issue }}\"}",
				"{\"issue\": \"December\"}", NULL, false);
	const char *keys[] = { "city", "issue" }, *vals[] = { "Oslo", "May" };
	struct msg_rcpt r = { .email = "a@b.example", .nsubs = 1, .keys = keys, .vals = vals };

	cr_assert(msg_job_shareable(j));
	cr_assert(msg_rcpt_shareable(j, &r), "a value the job does not use");
	r.nsubs = 2;
	cr_assert_not(msg_rcpt_shareable(j, &r), "its own issue");
	r.nsubs = 0;
	cr_assert(msg_rcpt_shareable(j, &r));
	msg_job_free(j);
}

/* The body hash of what r renders (its header skipped). */
static void body_hash(const struct msg_job *j, const struct msg_rcpt *r, unsigned char *bh)
{
	struct msg_out out;
	struct msg_err e;
	msg_out_init(&out);
	cr_assert_eq(msg_render(j, r, 1795400000, &out, &e), 0, "%s", e.message);
	cr_assert_eq(msg_dkim_msg_body_hash(MSG_DKIM_RELAXED, out.iov, out.niov, bh), 0);
	msg_out_free(&out);
}

Test(msg_shared, a_common_body_under_headers_that_vary)
{
	/* the To (generated), the subject and the unsubscribe URL name the
	 * recipient; the body takes the job's issue only */
	struct msg_job *j = job("{" FROM ", \"subject\": \"{{ first }}, the {{ issue }} issue\", "
				"\"text_body\": \"Hello, the {{ issue }} issue\", "
				"\"html_body\": \"<p>{{ issue }}</p>\"}",
				"{\"issue\": \"December\"}",
				"{\"url\": \"https://x.example/u/{{ token }}\"}", false);
	const char *k1[] = { "first", "token" }, *v1[] = { "Ann", "t1" };
	const char *k2[] = { "first", "token", "issue" }, *v2[] = { "Bo", "t2", "May" };
	struct msg_rcpt a = { .email = "a@b.example", .nsubs = 2, .keys = k1, .vals = v1 };
	struct msg_rcpt b = { .email = "c@d.example", .index = 1, .nsubs = 2, .keys = k2,
			      .vals = v2 };
	unsigned char ha[MSG_DKIM_BH_LEN], hb[MSG_DKIM_BH_LEN];

	cr_assert_not(msg_job_body_static(j), "the body has a slot");
	cr_assert_not(msg_job_shareable(j));
	cr_assert(msg_rcpt_body_static(j, &a));
	cr_assert(msg_rcpt_body_static(j, &b), "b's issue is not given (nsubs 2)");
	body_hash(j, &a, ha);
	body_hash(j, &b, hb);
	cr_assert(!memcmp(ha, hb, sizeof ha), "common bodies hash alike");
	b.nsubs = 3;                    /* b's own issue: b's own body */
	cr_assert_not(msg_rcpt_body_static(j, &b));
	body_hash(j, &b, hb);
	cr_assert(memcmp(ha, hb, sizeof ha));
	msg_job_free(j);
	/* a predefined value, or a slot without a job value, is per recipient */
	j = job("{" FROM ", \"text_body\": \"Hi {{ name }}\"}", "{\"name\": \"x\"}", NULL, false);
	cr_assert_not(msg_rcpt_body_static(j, &a));
	msg_job_free(j);
	j = job("{" FROM ", \"text_body\": \"Hi {{ first }}\"}", NULL, NULL, false);
	a.nsubs = 1;
	cr_assert_not(msg_rcpt_body_static(j, &a));
	msg_job_free(j);
	j = job("{" FROM ", \"text_body\": \"no slot\"}", NULL, NULL, false);
	cr_assert(msg_job_body_static(j) && msg_rcpt_body_static(j, &a));
	msg_job_free(j);
}
