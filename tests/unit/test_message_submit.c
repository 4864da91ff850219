/* message/submit.c: a message submitted over SMTP made ready to store --
 * Bcc and X-Volley-* removed, Date and Message-ID added, From parsed, the
 * limits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../message/message_int.h"

static const struct msg_submit_opts opts = { "j123", "mta.example.net", 1700000000 };

/* prepare() on a C string; the stored message (head + body) as a C
 * string into a static buffer, or NULL with *e on error. */
static const char *prep(const char *in, struct msg_submit *s, struct msg_err *e)
{
	static char out[1 << 16];

	memset(e, 0, sizeof *e);
	if (msg_submit_prepare(in, strlen(in), &opts, s, e) < 0)
		return NULL;
	cr_assert_lt(s->head.len + s->body_len, sizeof out);
	memcpy(out, s->head.p, s->head.len);
	memcpy(out + s->head.len, s->body, s->body_len);
	out[s->head.len + s->body_len] = '\0';
	return out;
}

static void want_error(const char *in, const char *code, const char *field, const char *words)
{
	struct msg_submit s;
	struct msg_err e;

	msg_submit_init(&s);
	cr_assert_null(prep(in, &s, &e), "accepted: %s", in);
	cr_assert_str_eq(e.code, code, "%s: %s %s", in, e.code, e.message);
	cr_assert_str_eq(e.field, field, "%s: field %s (%s)", in, e.field, e.message);
	cr_assert(strstr(e.message, words), "%s: '%s' lacks '%s'", in, e.message, words);
	cr_assert_eq(s.head.len, 0);
	msg_submit_free(&s);
}

Test(message_submit, kept_byte_for_byte_and_date_msgid_added)
{
	struct msg_submit s;
	struct msg_err e;
	const char *in = "From: Ann <ann@Example.COM>\r\nTo: bob@example.net\r\n"
			 "Subject:  odd   spacing\t\r\n\tfolded\r\nX-Other: 1\r\n\r\nBody\r\n.line\r\n";

	msg_submit_init(&s);
	const char *out = prep(in, &s, &e);
	cr_assert_not_null(out, "%s", e.message);
	cr_assert_str_eq(out, "From: Ann <ann@Example.COM>\r\nTo: bob@example.net\r\n"
			 "Subject:  odd   spacing\t\r\n\tfolded\r\nX-Other: 1\r\n"
			 "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
			 "Message-ID: <j123@mta.example.net>\r\n\r\nBody\r\n.line\r\n");
	cr_assert_str_eq(s.from_domain, "example.com");
	cr_assert_eq(s.nfrom, 1);
	cr_assert(s.added_date && s.added_msgid);
	cr_assert_not(s.smtputf8);
	cr_assert_not(s.eightbit);
	cr_assert_eq(s.body, in + strlen(in) - strlen("Body\r\n.line\r\n"));
	cr_assert_eq(s.priority, MSG_PRIO_NONE);
	cr_assert_str_eq(s.campaign, "");
	cr_assert_eq(s.expires_ms, 0);
	msg_submit_free(&s);
}

Test(message_submit, existing_date_and_message_id_not_duplicated)
{
	struct msg_submit s;
	struct msg_err e;
	const char *in = "message-id: <x@y>\r\nFrom: a@b.example\r\nDATE: Mon, 1 Jan 2024 "
			 "00:00:00 +0000\r\n\r\nhi\r\n";

	msg_submit_init(&s);
	const char *out = prep(in, &s, &e);
	cr_assert_not_null(out, "%s", e.message);
	cr_assert_str_eq(out, in);
	cr_assert_not(s.added_date);
	cr_assert_not(s.added_msgid);
	/* only Message-ID missing: only it is added */
	out = prep("From: a@b.example\r\nDate: x\r\n\r\n", &s, &e);
	cr_assert_str_eq(out, "From: a@b.example\r\nDate: x\r\nMessage-ID: <j123@mta.example.net>"
			 "\r\n\r\n");
	msg_submit_free(&s);
}

Test(message_submit, bcc_removed_with_continuation_lines)
{
	struct msg_submit s;
	struct msg_err e;
	const char *in = "Bcc: hidden@x.example,\r\n  other@x.example,\r\n\tthird@x.example\r\n"
			 "From: a@b.example\r\nbcc:\r\nTo: t@x.example\r\nBCC: last@x.example\r\n"
			 " (cont)\r\nDate: d\r\nMessage-ID: <m@x>\r\n\r\nBcc: in the body stays\r\n";

	msg_submit_init(&s);
	const char *out = prep(in, &s, &e);
	cr_assert_not_null(out, "%s", e.message);
	cr_assert_str_eq(out, "From: a@b.example\r\nTo: t@x.example\r\nDate: d\r\n"
			 "Message-ID: <m@x>\r\n\r\nBcc: in the body stays\r\n");
	/* Resent-Bcc and Bcc-like names are not Bcc */
	out = prep("From: a@b.example\r\nBccx: 1\r\nResent-Bcc: r@x.example\r\n\r\n", &s, &e);
	cr_assert(strstr(out, "Bccx: 1\r\nResent-Bcc: r@x.example\r\n"), "%s", out);
	msg_submit_free(&s);
}

Test(message_submit, x_volley_fields_read_and_removed_any_case)
{
	struct msg_submit s;
	struct msg_err e;
	const char *in = "x-volley-campaign:  Spring\r\n sale 2024 \r\nFrom: a@b.example\r\n"
			 "X-VOLLEY-PRIORITY: Transactional\r\nX-Volley-Expires: 2h\r\n"
			 "X-Volley-Other: kept\r\n\r\nb\r\n";

	msg_submit_init(&s);
	const char *out = prep(in, &s, &e);
	cr_assert_not_null(out, "%s", e.message);
	cr_assert_str_eq(s.campaign, "Spring sale 2024");
	cr_assert_eq(s.priority, MSG_PRIO_TRANSACTIONAL);
	cr_assert_eq(s.expires_ms, 7200000);
	cr_assert_null(strstr(out, "ampaign"));
	cr_assert_null(strstr(out, "RIORITY"));
	cr_assert_null(strstr(out, "Expires"));
	cr_assert(strstr(out, "X-Volley-Other: kept\r\n"));
	/* a second prepare into the same result starts afresh */
	out = prep("From: a@b.example\r\nX-Volley-Priority: bulk\r\n\r\n", &s, &e);
	cr_assert_not_null(out);
	cr_assert_eq(s.priority, MSG_PRIO_BULK);
	cr_assert_str_eq(s.campaign, "");
	cr_assert_eq(s.expires_ms, 0);
	msg_submit_free(&s);
}

Test(message_submit, x_volley_bad_values_name_the_field)
{
	want_error("From: a@b.example\r\nX-Volley-Priority: urgent\r\n\r\n", "invalid_field",
		   "X-Volley-Priority", "bulk or transactional");
	want_error("From: a@b.example\r\nx-volley-expires: soon\r\n\r\n", "invalid_field",
		   "X-Volley-Expires", "duration");
	want_error("From: a@b.example\r\nX-Volley-Expires: 30s\r\n\r\n", "invalid_field",
		   "X-Volley-Expires", "\"1m\" to \"30d\"");
	want_error("From: a@b.example\r\nX-Volley-Expires: 31d\r\n\r\n", "invalid_field",
		   "X-Volley-Expires", "\"1m\" to \"30d\"");
	want_error("From: a@b.example\r\nX-Volley-Campaign:   \r\n\r\n", "invalid_field",
		   "X-Volley-Campaign", "1 to 256");
	want_error("From: a@b.example\r\nX-Volley-Campaign: a\tb\r\n\r\n", "invalid_field",
		   "X-Volley-Campaign", "control");
	want_error("From: a@b.example\r\nX-Volley-Campaign: \xff\xfe\r\n\r\n", "invalid_field",
		   "X-Volley-Campaign", "UTF-8");
	want_error("From: a@b.example\r\nX-Volley-Campaign: a\r\nX-Volley-Campaign: b\r\n\r\n",
		   "invalid_field", "X-Volley-Campaign", "appears twice");
	char big[400];
	snprintf(big, sizeof big, "From: a@b.example\r\nX-Volley-Campaign: %0257d\r\n\r\n", 0);
	want_error(big, "invalid_field", "X-Volley-Campaign", "1 to 256");
	snprintf(big, sizeof big, "From: a@b.example\r\nX-Volley-Campaign: %0256d\r\n\r\n", 0);
	struct msg_submit s;
	struct msg_err e;
	msg_submit_init(&s);
	cr_assert_not_null(prep(big, &s, &e), "%s", e.message);
	cr_assert_eq(strlen(s.campaign), 256);
	msg_submit_free(&s);
}

/* The From domain of a From field's value, or NULL (message in why). */
static const char *from_domain(const char *value, const char *extra, char *why)
{
	static struct msg_submit s;
	struct msg_err e;
	char in[2048];

	snprintf(in, sizeof in, "From:%s\r\n%s\r\nbody\r\n", value, extra);
	msg_submit_free(&s);
	msg_submit_init(&s);
	if (!prep(in, &s, &e)) {
		strcpy(why, e.message);
		return NULL;
	}
	return s.from_domain;
}

Test(message_submit, from_shapes)
{
	static const struct { const char *v, *domain; } ok[] = {
		{ " a@b.example", "b.example" },
		{ "a@B.Example", "b.example" },
		{ " Ann Example <ann@ex.example>", "ex.example" },
		{ " \"Example, Ann\" <ann@ex.example>", "ex.example" },
		{ " \"Ann \\\"Q\\\" <x@evil.example>\" <ann@ex.example>", "ex.example" },
		{ " (comment <x@evil.example>) ann@ex.example (another (nested) one)", "ex.example" },
		{ " Ann (the (real) one) <ann(c)@(c)ex.example>", "ex.example" },
		{ " <ann@ex.example>", "ex.example" },
		{ " ann . doe @ ex . example", "ex.example" },
		{ " \"ann doe\"@ex.example", "ex.example" },
		{ " Ann\r\n <ann@ex.example>", "ex.example" },
		{ " =?utf-8?q?J=C3=B6rg?= <j@ex.example>", "ex.example" },
		{ " J\xc3\xb6rg <j@ex.example>", "ex.example" },
		{ " <@route.example,@other.example:ann@ex.example>", "ex.example" },
		{ " Team: ann@ex.example;", "ex.example" },
		{ " ann@ex.example,", "ex.example" },
		{ " ann@xn--bcher-kva.example", "xn--bcher-kva.example" },
		{ " j\xc3\xb6rg@b\xc3\xbc" "cher.example", "b\xc3\xbc" "cher.example" },
	};
	char why[400];

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		const char *d = from_domain(ok[i].v, "", why);
		cr_assert_not_null(d, "From:%s: %s", ok[i].v, why);
		cr_assert_str_eq(d, ok[i].domain, "From:%s", ok[i].v);
	}
}

Test(message_submit, several_mailboxes_need_sender_first_domain_counts)
{
	char why[400];
	const char *d = from_domain(" a@one.example, B <b@two.example>", "Sender: s@x.example\r\n",
				    why);

	cr_assert_not_null(d, "%s", why);
	cr_assert_str_eq(d, "one.example");
	cr_assert_null(from_domain(" a@one.example, b@two.example", "", why));
	cr_assert(strstr(why, "Sender"), "%s", why);
	d = from_domain(" Team: a@one.example, b@two.example;", "Sender: s@x.example\r\n", why);
	cr_assert_not_null(d, "%s", why);
	cr_assert_str_eq(d, "one.example");
}

Test(message_submit, from_errors)
{
	static const struct { const char *v, *words; } bad[] = {
		{ " Ann Example", "not an address" },
		{ "", "no address" },
		{ " undisclosed-recipients:;", "no address" },
		{ " <ann@ex.example", "'<' is not closed" },
		{ " ann@ex.example>", "'>' out of place" },
		{ " <a@ex.example> <b@ex.example>", "out of place" },
		{ " <a@ex.example> trailing", "after an address" },
		{ " (unclosed ann@ex.example", "comment is not closed" },
		{ " \"unclosed ann@ex.example", "quoted string is not closed" },
		{ " ann@[192.0.2.1]", "address literal" },
		{ " ann@ex..example", "'ann@ex..example'" },
		{ " ann@ex.example\\", "no place" },
		{ " g: a@ex.example", "not closed with ';'" },
		{ " g: h: a@ex.example;;", "out of place" },
		{ " a@b@ex.example", "'a@b@ex.example'" },
		{ " @ex.example", "'@ex.example'" },
	};
	char why[400];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_null(from_domain(bad[i].v, "", why), "From:%s accepted", bad[i].v);
		cr_assert(strstr(why, bad[i].words), "From:%s: '%s' lacks '%s'", bad[i].v, why,
			  bad[i].words);
	}
	char deep[400] = " ";
	for (int i = 0; i < 100; i++)
		strcat(deep, "(");
	strcat(deep, "a@b.example");
	cr_assert_null(from_domain(deep, "", why));
	cr_assert(strstr(why, "nested too deeply"), "%s", why);
	char long_addr[400];
	snprintf(long_addr, sizeof long_addr, " %0300d@ex.example", 0);
	cr_assert_null(from_domain(long_addr, "", why));
	cr_assert(strstr(why, "longer than"), "%s", why);
	/* a long display name is no address and no error */
	snprintf(long_addr, sizeof long_addr, " %0300d <a@ex.example>", 0);
	cr_assert_not_null(from_domain(long_addr, "", why), "%s", why);
}

Test(message_submit, from_field_count)
{
	want_error("To: a@b.example\r\n\r\nFrom: in@body.example\r\n", "invalid_field", "From",
		   "no From field");
	want_error("From: a@b.example\r\nfrom: c@d.example\r\n\r\n", "invalid_field", "From",
		   "2 From fields");
	want_error("From: Ann\r\n\r\n", "invalid_address", "From", "not an address");
}

Test(message_submit, no_separator_is_header_only)
{
	struct msg_submit s;
	struct msg_err e;

	msg_submit_init(&s);
	const char *out = prep("From: a@b.example\r\nSubject: s\r\n", &s, &e);
	cr_assert_not_null(out, "%s", e.message);
	cr_assert_eq(s.body_len, 0);
	cr_assert(strstr(out, "Subject: s\r\nDate: "), "%s", out);
	cr_assert_eq(strcmp(out + strlen(out) - 5, ">\r\n\r\n"), 0, "%s", out);
	/* the last line without its CRLF gets one */
	out = prep("From: a@b.example\r\nSubject: s", &s, &e);
	cr_assert_not_null(out, "%s", e.message);
	cr_assert(strstr(out, "Subject: s\r\nDate: "), "%s", out);
	/* an empty header section: no From */
	want_error("\r\nbody\r\n", "invalid_field", "From", "no From field");
	want_error("", "invalid_field", "From", "no From field");
	msg_submit_free(&s);
}

Test(message_submit, eight_bit_flags)
{
	struct msg_submit s;
	struct msg_err e;

	msg_submit_init(&s);
	cr_assert_not_null(prep("From: a@b.example\r\nSubject: caf\xc3\xa9\r\n\r\nplain\r\n", &s, &e));
	cr_assert(s.smtputf8);
	cr_assert_not(s.eightbit);
	cr_assert_not_null(prep("From: a@b.example\r\n\r\ncaf\xe9 latin-1\r\n", &s, &e));
	cr_assert_not(s.smtputf8);
	cr_assert(s.eightbit);
	/* 8-bit only in a removed Bcc: the stored header needs no SMTPUTF8 */
	cr_assert_not_null(prep("From: a@b.example\r\nBcc: j\xc3\xb6rg@x.example\r\n\r\n", &s, &e));
	cr_assert_not(s.smtputf8);
	msg_submit_free(&s);
}

Test(message_submit, header_shape_errors)
{
	want_error(" folded first\r\nFrom: a@b.example\r\n\r\n", "invalid_field", "header",
		   "line 1 starts with white space");
	want_error("From: a@b.example\r\nnot a field\r\n\r\n", "invalid_field", "header",
		   "line 2 is neither");
	want_error("From: a@b.example\r\n: empty name\r\n\r\n", "invalid_field", "header",
		   "line 2 is neither");
	want_error("From: a@b.example\nTo: x\r\n\r\n", "invalid_field", "header",
		   "line 1 ends in a bare");
	want_error("From: a@b.example\r\nTo: x\ry\r\n\r\n", "invalid_field", "header",
		   "line 2 ends in a bare");
	want_error("From: a@b.example\r\nTo: x\r", "invalid_field", "header",
		   "line 2 ends in a bare");
	struct msg_submit s;
	struct msg_err e;
	msg_submit_init(&s);
	static const char nul[] = "From: a@b.example\r\nTo: x\0y\r\n\r\n";
	cr_assert_eq(msg_submit_prepare(nul, sizeof nul - 1, &opts, &s, &e), -1);
	cr_assert(strstr(e.message, "line 2 holds a NUL"), "%s", e.message);
	/* obsolete "Name :" is a field */
	cr_assert_not_null(prep("From : a@b.example\r\nSubject\t: s\r\n\r\n", &s, &e), "%s",
			   e.message);
	cr_assert_str_eq(s.from_domain, "b.example");
	/* a bad id or host name from the caller */
	struct msg_submit_opts o = { "bad id", "h.example", 0 };
	cr_assert_eq(msg_submit_prepare("From: a@b.example\r\n\r\n", 21, &o, &s, &e), -1);
	cr_assert_str_eq(e.field, "opts");
	msg_submit_free(&s);
}

Test(message_submit, line_and_header_limits)
{
	struct msg_submit s;
	struct msg_err e;
	struct vl_buf b;

	msg_submit_init(&s);
	vl_buf_init(&b);
	/* 998 octets a line is fine, 999 is not; a folded field may be longer */
	vl_buf_appends(&b, "From: a@b.example\r\nX-Long: ");
	for (int i = 0; i < 998 - 8; i++)
		vl_buf_append(&b, "x", 1);
	vl_buf_appends(&b, "\r\n y\r\n");
	for (int i = 0; i < 5; i++) {
		vl_buf_appends(&b, " ");
		for (int j = 0; j < 997; j++)
			vl_buf_append(&b, "z", 1);
		vl_buf_appends(&b, "\r\n");
	}
	vl_buf_appends(&b, "\r\n");
	cr_assert_eq(msg_submit_prepare(b.p, b.len, &opts, &s, &e), 0, "%s", e.message);
	vl_buf_reset(&b);
	vl_buf_appends(&b, "From: a@b.example\r\nX-Long: ");
	for (int i = 0; i < 998 - 7; i++)
		vl_buf_append(&b, "x", 1);
	vl_buf_appends(&b, "\r\n\r\n");
	cr_assert_eq(msg_submit_prepare(b.p, b.len, &opts, &s, &e), -1);
	cr_assert(strstr(e.message, "line 2 is longer than 998"), "%s", e.message);
	/* the body's lines are not the header's business */
	vl_buf_reset(&b);
	vl_buf_appends(&b, "From: a@b.example\r\n\r\n");
	for (int i = 0; i < 5000; i++)
		vl_buf_append(&b, "b", 1);
	cr_assert_eq(msg_submit_prepare(b.p, b.len, &opts, &s, &e), 0, "%s", e.message);
	/* a header section over 1 MiB */
	vl_buf_reset(&b);
	vl_buf_appends(&b, "From: a@b.example\r\n");
	while (b.len <= MSG_SUBMIT_HEADER_MAX)
		vl_buf_appends(&b, "X-Filler: 0123456789012345678901234567890123456789\r\n");
	vl_buf_appends(&b, "\r\n");
	cr_assert_eq(msg_submit_prepare(b.p, b.len, &opts, &s, &e), -1);
	cr_assert_str_eq(e.code, "too_large");
	cr_assert_eq(s.head.len, 0);
	/* and a message with no empty line stops there too */
	b.len -= 2;
	cr_assert_eq(msg_submit_prepare(b.p, b.len, &opts, &s, &e), -1);
	cr_assert_str_eq(e.code, "too_large");
	vl_buf_free(&b);
	msg_submit_free(&s);
}

Test(message_submit, idempotent)
{
	struct msg_submit s, t;
	struct msg_err e;
	const char *in = "Bcc: x@y.example\r\nFrom: \"A, B\" <a@b.example>\r\n"
			 "X-Volley-Campaign: c\r\nSubject: s\r\n\r\nbody\r\n";
	msg_submit_init(&s);
	msg_submit_init(&t);
	const char *out = prep(in, &s, &e);
	cr_assert_not_null(out);
	char *copy = strdup(out);
	const char *again = prep(copy, &t, &e);
	cr_assert_not_null(again, "%s", e.message);
	cr_assert_str_eq(again, copy);
	cr_assert_not(t.added_date);
	cr_assert_not(t.added_msgid);
	free(copy);
	msg_submit_free(&s);
	msg_submit_free(&t);
}
