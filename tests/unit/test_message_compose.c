/* message/: a job's content compiled once (errors name their field),
 * recipients checked and rendered (buf + iovecs into the job). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../../message/message.h"

static const struct msg_job_opts opts = {.job_id = "J1", .hostname = "mta.example.com", .max_size = 0};

static struct msg_job *compile_opts(const char *content, const char *subs,
				    const char *unsub, const struct msg_job_opts *o,
				    struct msg_err *e)
{
	json_error_t je;
	json_t *c = json_loads(content, JSON_DECODE_ANY, &je);
	json_t *s = subs ? json_loads(subs, 0, &je) : NULL;
	json_t *u = unsub ? json_loads(unsub, 0, &je) : NULL;
	cr_assert_not_null(c, "%s: %s", content, je.text);
	struct msg_job *j = msg_job_compile(c, s, u, o, e);
	json_decref(c);
	json_decref(s);
	json_decref(u);
	return j;
}

static struct msg_job *compile(const char *content, const char *subs, const char *unsub,
			       struct msg_err *e)
{
	return compile_opts(content, subs, unsub, &opts, e);
}

static void compile_err(const char *content, const char *subs, const char *unsub,
			const char *code, const char *field)
{
	struct msg_err e;
	struct msg_job *j = compile(content, subs, unsub, &e);
	cr_assert_null(j, "%s compiled", content);
	cr_assert_str_eq(e.code, code, "%s: %s", content, e.message);
	cr_assert_str_eq(e.field, field, "%s: %s", content, e.message);
	cr_assert(e.message[0]);
}

#define FROM "\"from\": {\"email\": \"news@example.com\"}"

Test(msg_compose, errors_name_fields)
{
	compile_err("{\"text_body\": \"x\"}", NULL, NULL, "invalid_field", "content.from");
	compile_err("{" FROM ", \"text_body\": \"x\", \"x\": 1}", NULL, NULL, "unknown_field",
		    "content.x");
	compile_err("{\"from\": {\"email\": \"bad\"}, \"text_body\": \"x\"}", NULL, NULL,
		    "invalid_address", "content.from.email");
	compile_err("{\"from\": {\"email\": \"a@b\", \"name\": 3}, \"text_body\": \"x\"}", NULL,
		    NULL, "invalid_field", "content.from.name");
	compile_err("{" FROM "}", NULL, NULL, "invalid_field", "content");
	compile_err("{" FROM ", \"subject\": [], \"text_body\": \"x\"}", NULL, NULL,
		    "invalid_field", "content.subject");
	compile_err("{" FROM ", \"html_body\": \"{{ x\"}", NULL, NULL, "invalid_field",
		    "content.html_body");
	compile_err("{" FROM ", \"text_body\": \"x\", \"headers\": {\"MIME-Version\": \"2\"}}",
		    NULL, NULL, "invalid_field", "content.headers.MIME-Version");
	compile_err("{" FROM ", \"text_body\": \"x\", \"headers\": {\"X-A\": \"1\", \"x-a\": \"2\"}}",
		    NULL, NULL, "invalid_field", "content.headers.x-a");
	compile_err("{" FROM ", \"text_body\": \"x\", \"attachments\": [{\"data\": \"x\"}, "
		    "{\"data\": \"Zm9\", \"base64\": true}]}", NULL, NULL, "invalid_field",
		    "content.attachments[1].data");
	compile_err("{" FROM ", \"text_body\": \"x\", \"attachments\": [{\"data\": \"x\", "
		    "\"content_type\": \"multipart/mixed\"}]}", NULL, NULL, "invalid_field",
		    "content.attachments[0].content_type");
	compile_err("{" FROM ", \"text_body\": \"x\", \"attachments\": [{}]}", NULL, NULL,
		    "invalid_field", "content.attachments[0].data");
	compile_err("{" FROM ", \"text_body\": \"x\"}", "{\"a\": {}}", NULL, "invalid_field",
		    "substitutions.a");
	compile_err("{" FROM ", \"subject\": \"{{ a }}\", \"text_body\": \"x\"}",
		    "{\"a\": \"1\\n2\"}", NULL, "invalid_field", "substitutions.a");
	compile_err("{" FROM ", \"text_body\": \"x\"}", NULL, "{\"url\": \"http://x.example/\"}",
		    "invalid_field", "unsubscribe.url");
	compile_err("{" FROM ", \"text_body\": \"x\"}", NULL, "{}", "invalid_field", "unsubscribe");
	compile_err("{" FROM ", \"text_body\": \"x\", \"headers\": {\"List-Unsubscribe\": \"<x>\"}}",
		    NULL, "{\"mailto\": \"u@example.com\"}", "invalid_field",
		    "content.headers.List-Unsubscribe");
	compile_err("42", NULL, NULL, "invalid_field", "content");
	compile_err("\"no header line\\n\\nbody\"", NULL, NULL, "invalid_field", "content");
	compile_err("\" starts with space: x\\n\\nbody\"", NULL, NULL, "invalid_field", "content");
	compile_err("\"Subject: {{ bad\\n\\nbody\"", NULL, NULL, "invalid_field", "content");
	struct msg_err e;
	struct msg_job_opts bad = {.job_id = "bad id!", .hostname = "h.example", .max_size = 0};
	cr_assert_null(compile_opts("{" FROM ", \"text_body\": \"x\"}", NULL, NULL, &bad, &e));
	cr_assert_str_eq(e.field, "job_id");
	struct msg_job_opts badhost = {.job_id = "J", .hostname = "not a host", .max_size = 0};
	cr_assert_null(compile_opts("{" FROM ", \"text_body\": \"x\"}", NULL, NULL, &badhost, &e));
	cr_assert_str_eq(e.field, "hostname");
}

Test(msg_compose, too_large)
{
	struct msg_job_opts small = {.job_id = "J1", .hostname = "mta.example.com", .max_size = 400};
	struct msg_err e;
	char content[2000];
	snprintf(content, sizeof content, "{" FROM ", \"text_body\": \"%0500d\"}", 0);
	cr_assert_null(compile_opts(content, NULL, NULL, &small, &e));
	cr_assert_str_eq(e.code, "too_large");
	small.max_size = 1000;
	struct msg_job *j = compile_opts(content, NULL, NULL, &small, &e);
	cr_assert_not_null(j, "%s", e.message);
	cr_assert(msg_job_static_size(j) > 500 && msg_job_static_size(j) < 1000);
	msg_job_free(j);
}

Test(msg_compose, variables)
{
	struct msg_err e;
	struct msg_job *j = compile("{" FROM ", \"subject\": \"{{ a }} {{ b }}\", "
				    "\"text_body\": \"{{ b }} {{ c }}\", \"html_body\": \"{{ c }}\"}",
				    NULL, "{\"url\": \"https://u.example/{{ d }}\"}", &e);
	cr_assert_not_null(j, "%s", e.message);
	cr_assert_eq(msg_job_nvars(j), 4);
	const char *want[] = {"a", "b", "d", "c"};   /* headers come first */
	bool hdr[] = {true, true, false, false};
	for (size_t i = 0; i < 4; i++) {
		cr_assert_str_eq(msg_job_var(j, i), want[i]);
		cr_assert_eq(msg_job_var_in_header(j, i), hdr[i], "%s", want[i]);
	}
	cr_assert_null(msg_job_var(j, 4));
	cr_assert_not(msg_job_needs_smtputf8(j));
	cr_assert_not(msg_job_needs_8bitmime(j));
	msg_job_free(j);
	j = compile("{\"from\": {\"email\": \"j\xc3\xb6rg@example.com\"}, \"text_body\": \"x\"}",
		    NULL, NULL, &e);
	cr_assert(msg_job_needs_smtputf8(j));
	msg_job_free(j);
	j = compile("\"Subject: x\\n\\nGr\xc3\xbc\xc3\x9f" "e\"", NULL, NULL, &e);
	cr_assert(msg_job_needs_8bitmime(j));
	cr_assert_not(msg_job_needs_smtputf8(j));
	msg_job_free(j);
}

struct rcpt {
	struct msg_rcpt r;
	const char *keys[4], *vals[4];
};

static struct msg_rcpt *rcpt(struct rcpt *x, const char *email, const char *name,
			     const char *k1, const char *v1, const char *k2, const char *v2)
{
	memset(x, 0, sizeof *x);
	x->keys[0] = k1, x->vals[0] = v1, x->keys[1] = k2, x->vals[1] = v2;
	x->r = (struct msg_rcpt){email, name, 3, k2 ? 2 : k1 ? 1 : 0, x->keys, x->vals, NULL};
	return &x->r;
}

static void check_err(const struct msg_job *j, const struct msg_rcpt *r, const char *code,
		      const char *field)
{
	struct msg_err e;
	cr_assert_eq(msg_job_check_rcpt(j, r, &e), -1);
	cr_assert_str_eq(e.code, code, "%s", e.message);
	cr_assert_str_eq(e.field, field, "%s", e.message);
	struct msg_out o;
	msg_out_init(&o);
	cr_assert_eq(msg_render(j, r, 0, &o, &e), -1, "render refuses it too");
	cr_assert_str_eq(e.field, field);
	msg_out_free(&o);
}

Test(msg_compose, check_rcpt)
{
	struct msg_err e;
	struct rcpt x;
	struct msg_job *j = compile("{" FROM ", \"subject\": \"Hi {{ first }}\", "
				    "\"text_body\": \"{{ body }}\"}", "{\"body\": \"job\"}", NULL, &e);
	cr_assert_not_null(j, "%s", e.message);
	cr_assert_eq(msg_job_check_rcpt(j, rcpt(&x, "a@b.example", "A", "first", "Ann", NULL, NULL),
					&e), 0, "%s", e.message);
	check_err(j, rcpt(&x, "a@b.example", "A", NULL, NULL, NULL, NULL), "missing_substitution",
		  "substitutions.first");
	check_err(j, rcpt(&x, "a@b.example", "A", "first", "x\r\nBcc: v@x", NULL, NULL),
		  "invalid_field", "substitutions.first");
	check_err(j, rcpt(&x, "a@b.example", "A", "first", "x\xff", NULL, NULL), "invalid_field",
		  "substitutions.first");
	check_err(j, rcpt(&x, "a@b.example", "A\nB", "first", "x", NULL, NULL), "invalid_field",
		  "name");
	check_err(j, rcpt(&x, "bad", "A", "first", "x", NULL, NULL), "invalid_address", "email");
	/* a body value may hold line breaks */
	cr_assert_eq(msg_job_check_rcpt(j, rcpt(&x, "a@b.example", NULL, "first", "x", "body",
						"1\n2"), &e), 0);
	msg_job_free(j);
	/* a content string's body lines, and the unsubscribe URL's length */
	j = compile("\"Subject: x\\n\\nline {{ v }} end\\n\"", NULL,
		    "{\"url\": \"https://u.example/{{ t }}\"}", &e);
	cr_assert_not_null(j, "%s", e.message);
	char big[1200];
	memset(big, 'v', 990);
	big[990] = '\0';
	check_err(j, rcpt(&x, "a@b.example", NULL, "v", big, "t", "x"), "invalid_field",
		  "substitutions.v");
	memset(big, '\n', 10);
	cr_assert_eq(msg_job_check_rcpt(j, rcpt(&x, "a@b.example", NULL, "v", big, "t", "x"),
					&e), 0, "%s", e.message);
	memset(big, '/', 300);
	big[300] = '\0';
	check_err(j, rcpt(&x, "a@b.example", NULL, "v", "x", "t", big), "invalid_field",
		  "unsubscribe.url");
	msg_job_free(j);
}

/* The rendered message as one string. */
static char *flat(const struct msg_out *o)
{
	static char s[400000];
	size_t n = 0;
	for (size_t i = 0; i < o->niov; i++) {
		cr_assert(n + o->iov[i].iov_len < sizeof s);
		memcpy(s + n, o->iov[i].iov_base, o->iov[i].iov_len);
		n += o->iov[i].iov_len;
	}
	cr_assert_eq(n, o->size);
	s[n] = '\0';
	return s;
}

Test(msg_compose, render)
{
	struct msg_err e;
	struct rcpt x;
	struct msg_out o;
	struct msg_job *j = compile("{\"from\": {\"email\": \"news@example.com\", \"name\": \"News\"},"
				    " \"subject\": \"Hi {{ name }}\", \"text_body\": \"Dear {{ name }},\\n"
				    "bye\\n\", \"html_body\": \"<b>{{ name }}</b>\", \"headers\": "
				    "{\"X-C\": \"{{ c }}\"}}", "{\"c\": \"fall\"}",
				    "{\"url\": \"https://u.example/{{ name }}\", \"mailto\": "
				    "\"u@example.com\"}", &e);
	cr_assert_not_null(j, "%s", e.message);
	msg_out_init(&o);
	cr_assert_eq(msg_render(j, rcpt(&x, "ann@example.net", "Ann Lee", "name", "<A&B>", NULL,
					NULL), 1795000000, &o, &e), 0, "%s", e.message);
	const char *m = flat(&o);
	cr_assert(strstr(m, "From: News <news@example.com>\r\n"), "%s", m);
	cr_assert(strstr(m, "\r\nTo: Ann Lee <ann@example.net>\r\n"), "%s", m);
	cr_assert(strstr(m, "\r\nSubject: Hi <A&B>\r\n"), "%s", m);
	cr_assert(strstr(m, "\r\nDate: Wed, 18 Nov 2026 11:06:40 +0000\r\n"), "%s", m);
	cr_assert(strstr(m, "\r\nMessage-ID: <J1.3@mta.example.com>\r\n"), "%s", m);
	cr_assert(strstr(m, "\r\nList-Unsubscribe: <mailto:u@example.com>, "
			    "<https://u.example/%3CA%26B%3E>\r\n"
			    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"), "%s", m);
	cr_assert(strstr(m, "\r\nX-C: fall\r\n"), "%s", m);
	cr_assert(strstr(m, "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative;"), "%s", m);
	cr_assert(strstr(m, "\r\n\r\nDear=20<A&B>,\r\nbye\r\n\r\n--"), "%s", m);
	cr_assert(strstr(m, "\r\n\r\n<b>&lt;A&amp;B&gt;</b>\r\n--"), "%s", m);
	cr_assert(!strcmp(m + strlen(m) - 4, "--\r\n"));
	cr_assert_not(o.smtputf8);
	/* a second render into the same msg_out replaces the first */
	cr_assert_eq(msg_render(j, rcpt(&x, "b@example.net", NULL, "name", "B", NULL, NULL),
				0, &o, &e), 0);
	m = flat(&o);
	cr_assert(strstr(m, "\r\nTo: b@example.net\r\n"), "%s", m);
	cr_assert_null(strstr(m, "Ann"));
	msg_out_free(&o);
	msg_job_free(j);
}

Test(msg_compose, static_blobs_are_iovecs)
{
	struct msg_err e;
	struct rcpt x;
	struct msg_out o;
	static char content[200000];
	int n = snprintf(content, sizeof content, "{" FROM ", \"text_body\": \"Hi {{ n }}\", "
			 "\"attachments\": [{\"data\": \"");
	memset(content + n, 'A', 100000);
	strcpy(content + n + 100000, "\", \"base64\": true}]}");
	struct msg_job *j = compile(content, NULL, NULL, &e);
	cr_assert_not_null(j, "%s", e.message);
	size_t stat = msg_job_static_size(j);
	cr_assert(stat > 100000);
	msg_out_init(&o);
	const char *blob = NULL;
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(msg_render(j, rcpt(&x, "a@b.example", NULL, "n", "x", NULL, NULL), 0,
					&o, &e), 0, "%s", e.message);
		cr_assert(o.size > stat);
		cr_assert(o.buf.len < 2000, "the attachment is not copied (%zu)", o.buf.len);
		const struct iovec *big = NULL;
		for (size_t i = 0; i < o.niov; i++)
			if (o.iov[i].iov_len > 90000)
				big = &o.iov[i];
		cr_assert_not_null(big);
		if (blob)
			cr_assert_eq(big->iov_base, blob, "the same job bytes each time");
		blob = big->iov_base;
	}
	msg_out_free(&o);
	msg_job_free(j);
}

Test(msg_compose, content_string)
{
	struct msg_err e;
	struct rcpt x;
	struct msg_out o;
	struct msg_job *j = compile("\"From: a@example.com\\nSubject: Hi {{ n }}\\n\\nBody {{ n }}\"",
				    NULL, NULL, &e);
	cr_assert_not_null(j, "%s", e.message);
	msg_out_init(&o);
	cr_assert_eq(msg_render(j, rcpt(&x, "a@b.example", NULL, "n", "J\xc3\xb6rg", NULL, NULL),
				0, &o, &e), 0);
	const char *m = flat(&o);
	cr_assert_str_eq(m, "From: a@example.com\r\nSubject: Hi =?utf-8?B?SsO2cmc=?=\r\n"
			 "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"
			 "Message-ID: <J1.3@mta.example.com>\r\n\r\nBody J\xc3\xb6rg\r\n");
	cr_assert(o.eightbit);
	msg_out_free(&o);
	msg_job_free(j);
	/* given Date and Message-ID (any case) stay; nothing is added */
	j = compile("\"DATE: x\\r\\nmessage-ID: <m@x>\\r\\n\\r\\nb\\r\\n\"", NULL, NULL, &e);
	msg_out_init(&o);
	cr_assert_eq(msg_render(j, rcpt(&x, "a@b.example", NULL, NULL, NULL, NULL, NULL), 0, &o,
				&e), 0);
	cr_assert_str_eq(flat(&o), "DATE: x\r\nmessage-ID: <m@x>\r\n\r\nb\r\n");
	msg_out_free(&o);
	msg_job_free(j);
}
