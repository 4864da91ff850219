/*
 * Composition of a content object: its fields read and checked, the
 * message's headers, and the MIME tree with every static part encoded
 * once (docs/message.md has the choices). job.c has the building blocks.
 */
#include "message_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* {"email": ..., "name": ...} as a header value for MSG_HDR_ADDR. */
static int mailbox(struct msg_job *j, const json_t *o, const char *path,
		   struct vl_buf *out, struct msg_err *e)
{
	static const char *const names[] = {"email", "name", NULL};
	const char *email, *name;
	size_t elen, nlen;
	char why[120], f[160];
	bool utf8;

	if (!json_is_object(o))
		return msg_fail(e, "invalid_field", path, "must be an object "
				"{\"email\", \"name\"}");
	if (msg_json_fields(o, path, names, e) < 0 ||
	    msg_json_str(o, "email", path, true, &email, &elen, e) < 0 ||
	    msg_json_str(o, "name", path, false, &name, &nlen, e) < 0)
		return -1;
	snprintf(f, sizeof f, "%s.email", path);
	if (msg_addr_check(email, elen, &utf8, why, sizeof why) < 0)
		return msg_fail(e, "invalid_address", f, "%s", why);
	j->smtputf8 |= utf8;
	snprintf(f, sizeof f, "%s.name", path);
	if (name && msg_has_crlf(name, nlen))
		return msg_fail(e, "invalid_field", f, "holds CR or LF");
	msg_hdr_mailbox(out, name, email);
	return 0;
}

/* ---- the content object ---- */

struct att {
	const char *data, *type, *name, *cid;
	size_t len, namelen, cidlen;
	bool b64;
};

enum { G_FROM = 1, G_TO = 2, G_SUBJECT = 4, G_REPLY = 8, G_DATE = 16, G_MSGID = 32 };

struct content {
	const json_t *o, *from, *reply, *headers;
	const char *subject, *text, *html;
	size_t subject_len, text_len, html_len;
	struct att *att;
	size_t natt, ninline;
	unsigned custom;         /* generated headers replaced by custom ones */
};

static bool token_char(unsigned char c)
{
	return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* type/subtype, optional parameters of printable ASCII. */
static bool ctype_ok(const char *s, size_t n)
{
	size_t i = 0, t, sub;

	while (i < n && token_char((unsigned char)s[i]))
		i++;
	if ((t = i) == 0 || i == n || s[i++] != '/')
		return false;
	while (i < n && token_char((unsigned char)s[i]))
		i++;
	if ((sub = i - t - 1) == 0 || n > 200 || (i < n && s[i] != ';'))
		return false;
	for (; i < n; i++)
		if (s[i] < 32 || s[i] > 126)
			return false;
	return strncasecmp(s, "multipart/", 10) && strncasecmp(s, "message/", 8);
}

static bool cid_ok(const char *s, size_t n)
{
	if (n == 0 || n > 250)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 32 || s[i] >= 127 || s[i] == '<' || s[i] == '>')
			return false;
	return true;
}

static int attachment(const json_t *o, size_t idx, struct att *a, struct msg_err *e)
{
	static const char *const names[] = {"data", "base64", "content_type", "file_name",
					    "content_id", NULL};
	char path[80], f[160];
	const json_t *b = json_object_get(o, "base64");

	snprintf(path, sizeof path, "content.attachments[%zu]", idx);
	if (!json_is_object(o))
		return msg_fail(e, "invalid_field", path, "must be an object");
	if (msg_json_fields(o, path, names, e) < 0 ||
	    msg_json_str(o, "data", path, true, &a->data, &a->len, e) < 0 ||
	    msg_json_str(o, "content_type", path, false, &a->type, &(size_t){0}, e) < 0 ||
	    msg_json_str(o, "file_name", path, false, &a->name, &a->namelen, e) < 0 ||
	    msg_json_str(o, "content_id", path, false, &a->cid, &a->cidlen, e) < 0)
		return -1;
	snprintf(f, sizeof f, "%s.base64", path);
	if (b && !json_is_boolean(b) && !json_is_null(b))
		return msg_fail(e, "invalid_field", f, "must be true or false");
	a->b64 = json_is_true(b);
	snprintf(f, sizeof f, "%s.content_type", path);
	if (!a->type)
		a->type = "application/octet-stream";
	else if (!ctype_ok(a->type, strlen(a->type)))
		return msg_fail(e, "invalid_field", f, "must be a MIME type/subtype "
				"(not multipart/ or message/), parameters in ASCII");
	snprintf(f, sizeof f, "%s.file_name", path);
	for (size_t i = 0; a->name && i < a->namelen; i++)
		if ((unsigned char)a->name[i] < 32 || a->name[i] == 127)
			return msg_fail(e, "invalid_field", f, "holds control characters");
	snprintf(f, sizeof f, "%s.content_id", path);
	if (a->cid && a->cidlen > 2 && a->cid[0] == '<' && a->cid[a->cidlen - 1] == '>')
		a->cid++, a->cidlen -= 2;
	if (a->cid && !cid_ok(a->cid, a->cidlen))
		return msg_fail(e, "invalid_field", f, "must be printable ASCII without "
				"spaces or angle brackets");
	return 0;
}

static int attachments(struct content *c, struct msg_err *e)
{
	const json_t *a = json_object_get(c->o, "attachments");

	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return msg_fail(e, "invalid_field", "content.attachments", "must be an array");
	c->natt = json_array_size(a);
	c->att = vl_calloc(c->natt ? c->natt : 1, sizeof *c->att);
	for (size_t i = 0; i < c->natt; i++) {
		if (attachment(json_array_get(a, i), i, &c->att[i], e) < 0)
			return -1;
		c->ninline += c->att[i].cid != NULL;
	}
	return 0;
}

static const struct {
	const char *name;
	unsigned bit;
} generated[] = {
	{"From", G_FROM}, {"To", G_TO}, {"Subject", G_SUBJECT},
	{"Reply-To", G_REPLY}, {"Date", G_DATE}, {"Message-ID", G_MSGID},
};

static int header_names(struct content *c, const json_t *unsub, struct msg_err *e)
{
	const char *key, *k2;
	json_t *v, *v2;
	char f[160];

	if (!c->headers || json_is_null(c->headers))
		return 0;
	if (!json_is_object(c->headers))
		return msg_fail(e, "invalid_field", "content.headers", "must be an object");
	json_object_foreach((json_t *)c->headers, key, v) {
		snprintf(f, sizeof f, "content.headers.%s", key);
		if (!msg_hdr_name_ok(key, strlen(key)))
			return msg_fail(e, "invalid_field", f, "is not a header field name "
					"(printable ASCII but ':', at most 76 octets)");
		if (!strcasecmp(key, "Content-Type") || !strcasecmp(key, "MIME-Version") ||
		    !strcasecmp(key, "Content-Transfer-Encoding"))
			return msg_fail(e, "invalid_field", f, "is set by composition");
		if (unsub && !strncasecmp(key, "List-Unsubscribe", 16))
			return msg_fail(e, "invalid_field", f, "is set by unsubscribe");
		json_object_foreach((json_t *)c->headers, k2, v2) {
			if (k2 == key)
				break;
			if (!strcasecmp(k2, key))
				return msg_fail(e, "invalid_field", f, "is given twice");
		}
		if (!json_is_string(v))
			return msg_fail(e, "invalid_field", f, "must be a string");
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		if (memchr(s, '\0', n) || msg_has_crlf(s, n))
			return msg_fail(e, "invalid_field", f, "holds CR, LF or NUL");
		for (size_t i = 0; i < VL_ARRAY_LEN(generated); i++)
			if (!strcasecmp(key, generated[i].name))
				c->custom |= generated[i].bit;
	}
	return 0;
}

static int parse(struct content *c, const json_t *unsub, struct msg_err *e)
{
	static const char *const names[] = {"from", "reply_to", "subject", "text_body",
					    "html_body", "headers", "attachments", NULL};

	if (msg_json_fields(c->o, "content", names, e) < 0 ||
	    msg_json_str(c->o, "subject", "content", false, &c->subject, &c->subject_len, e) < 0 ||
	    msg_json_str(c->o, "text_body", "content", false, &c->text, &c->text_len, e) < 0 ||
	    msg_json_str(c->o, "html_body", "content", false, &c->html, &c->html_len, e) < 0)
		return -1;
	if (c->subject && msg_has_crlf(c->subject, c->subject_len))
		return msg_fail(e, "invalid_field", "content.subject", "holds CR or LF");
	c->from = json_object_get(c->o, "from");
	c->reply = json_object_get(c->o, "reply_to");
	c->headers = json_object_get(c->o, "headers");
	if (!c->from || json_is_null(c->from))
		return msg_fail(e, "invalid_field", "content.from", "is required");
	if (header_names(c, unsub, e) < 0 || attachments(c, e) < 0)
		return -1;
	if (!c->text && !c->html && !c->natt)
		return msg_fail(e, "invalid_field", "content", "needs text_body, html_body "
				"or attachments");
	return 0;
}

/* ---- headers of the message ---- */

/* From or Reply-To from a mailbox object (checked even when replaced). */
static int mailbox_header(struct msg_job *j, const char *name, const json_t *o,
			  const char *path, bool emit, struct msg_err *e)
{
	struct vl_buf v, h;

	vl_buf_init(&v);
	vl_buf_init(&h);
	int rc = mailbox(j, o, path, &v, e);
	if (rc == 0 && emit) {
		msg_hdr_write(&h, name, v.p, v.len, MSG_HDR_ADDR, MSG_HDR_EQ, &j->smtputf8);
		msg_job_static(j, h.p, h.len);
	}
	vl_buf_free(&v);
	vl_buf_free(&h);
	return rc;
}

static int custom_headers(struct msg_job *j, const struct content *c, struct msg_err *e)
{
	const char *key;
	json_t *v;
	char f[160];

	if (!c->headers || json_is_null(c->headers))
		return 0;
	json_object_foreach((json_t *)c->headers, key, v) {
		snprintf(f, sizeof f, "content.headers.%s", key);
		enum msg_hdr_kind k = msg_hdr_is_addr(key) ? MSG_HDR_ADDR : MSG_HDR_TEXT;
		if (msg_job_header(j, key, json_string_value(v), json_string_length(v), k,
			       MSG_HDR_EQ, f, e) < 0)
			return -1;
	}
	return 0;
}

/* The content's own List-Unsubscribe* headers (then none is built in). */
static bool has_unsub_header(const struct content *c)
{
	const char *key;
	json_t *v;

	if (!json_is_object(c->headers))
		return false;
	json_object_foreach((json_t *)c->headers, key, v)
		if (!strncasecmp(key, "List-Unsubscribe", 16))
			return true;
	return false;
}

static int top_headers(struct msg_job *j, const struct content *c, const json_t *unsub,
		       struct msg_err *e)
{
	if (mailbox_header(j, "From", c->from, "content.from", !(c->custom & G_FROM), e) < 0)
		return -1;
	if (c->reply && !json_is_null(c->reply) &&
	    mailbox_header(j, "Reply-To", c->reply, "content.reply_to",
			   !(c->custom & G_REPLY), e) < 0)
		return -1;
	if (!(c->custom & G_TO))
		msg_job_piece(j, PC_TO);
	if (c->subject && !(c->custom & G_SUBJECT) &&
	    msg_job_header(j, "Subject", c->subject, c->subject_len, MSG_HDR_TEXT, MSG_HDR_EQ,
		       "content.subject", e) < 0)
		return -1;
	if (!(c->custom & G_DATE))
		msg_job_piece(j, PC_DATE);
	if (!(c->custom & G_MSGID))
		msg_job_piece(j, PC_MSGID);
	if (msg_unsub_compile(j, unsub, has_unsub_header(c), e) < 0)
		return -1;
	if (custom_headers(j, c, e) < 0)
		return -1;
	msg_job_static(j, "MIME-Version: 1.0\r\n", 19);
	return 0;
}

/* ---- the MIME tree ---- */

static void qp_static(struct msg_job *j, const char *s, size_t n)
{
	size_t col = 0;

	msg_qp_encode(s, n, &col, &j->stat);
}

/* 7bit will do: ASCII without controls, lines <= 998, no "=_" (our
 * boundaries), and at the top a final line break (one is added there). */
static bool seven_bit(const struct vl_buf *t, bool top)
{
	size_t line = 0;

	for (size_t i = 0; i < t->len; i++) {
		unsigned char c = (unsigned char)t->p[i];
		if (c == '\r' && i + 1 < t->len && t->p[i + 1] == '\n') {
			line = 0;
			i++;
			continue;
		}
		if (c >= 127 || (c < 32 && c != '\t') || ++line > MSG_LINE_MAX)
			return false;
	}
	if (memmem(t->p ? t->p : "", t->len, "=_", 2))
		return false;
	return !top || t->len == 0 || line == 0;
}

static int text_part(struct msg_job *j, const char *sub, const char *src, size_t n,
		     enum msg_escape esc, const char *field, bool top, struct msg_err *e)
{
	char h[160];
	int slots = msg_job_slots(src, n, field, e);

	if (slots < 0)
		return -1;
	struct vl_buf t, q;
	vl_buf_init(&t);
	vl_buf_init(&q);
	if (!slots)
		msg_crlf(src, n, &t);
	bool seven = !slots && seven_bit(&t, top);
	snprintf(h, sizeof h, "Content-Type: text/%s; charset=utf-8\r\n"
		 "Content-Transfer-Encoding: %s\r\n\r\n", sub,
		 seven ? "7bit" : "quoted-printable");
	msg_job_static(j, h, strlen(h));
	if (!slots) {
		size_t col = 0;
		if (!seven)
			msg_qp_encode(t.p, t.len, &col, &q);
		if (top && col)
			vl_buf_append(&q, "=\r\n", 3);
		msg_job_static(j, seven ? t.p : q.p, seven ? t.len : q.len);
	}
	vl_buf_free(&t);
	vl_buf_free(&q);
	if (!slots)
		return 0;
	struct piece *p = msg_job_piece(j, PC_QP);
	p->esc = esc;
	p->soft_end = top;
	return msg_job_tpl(j, src, n, esc, qp_static, field, p, e);
}

static int attachment_part(struct msg_job *j, const struct att *a, size_t idx,
			   struct msg_err *e)
{
	struct vl_buf h, raw;
	char f[80];

	vl_buf_init(&h);
	vl_buf_init(&raw);
	if (a->b64 && msg_b64_decode(a->data, a->len, &raw) < 0) {
		vl_buf_free(&raw);
		snprintf(f, sizeof f, "content.attachments[%zu].data", idx);
		return msg_fail(e, "invalid_field", f, "is not valid base64");
	}
	vl_buf_printf(&h, "Content-Type: %s", a->type);
	if (a->name)
		msg_hdr_param(&h, "name", a->name, a->namelen);
	vl_buf_appends(&h, "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: ");
	vl_buf_appends(&h, a->cid ? "inline" : "attachment");
	if (a->name)
		msg_hdr_param(&h, "filename", a->name, a->namelen);
	vl_buf_appends(&h, "\r\n");
	if (a->cid)
		vl_buf_printf(&h, "Content-ID: <%.*s>\r\n", (int)a->cidlen, a->cid);
	vl_buf_appends(&h, "\r\n");
	if (a->b64)
		msg_b64_encode(raw.p, raw.len, &h);
	else
		msg_b64_encode(a->data, a->len, &h);
	msg_job_static(j, h.p, h.len);
	vl_buf_free(&h);
	vl_buf_free(&raw);
	return 0;
}

/* Multipart framing: the header, then a delimiter before each part, the
 * close delimiter after the last (the message's final CRLF at the top). */
static void mp_open(struct msg_job *j, const char *sub, char tag)
{
	char h[120];

	snprintf(h, sizeof h, "Content-Type: multipart/%s;\r\n boundary=\"%s%c\"\r\n\r\n",
		 sub, j->boundary, tag);
	msg_job_static(j, h, strlen(h));
}

static void mp_next(struct msg_job *j, char tag, bool first)
{
	char d[64];

	snprintf(d, sizeof d, "%s--%s%c\r\n", first ? "" : "\r\n", j->boundary, tag);
	msg_job_static(j, d, strlen(d));
}

static void mp_close(struct msg_job *j, char tag, bool top)
{
	char d[64];

	snprintf(d, sizeof d, "\r\n--%s%c--%s", j->boundary, tag, top ? "\r\n" : "");
	msg_job_static(j, d, strlen(d));
}

/* text, html, or both as multipart/alternative (text first). */
static int alternative(struct msg_job *j, const struct content *c, bool top,
		       struct msg_err *e)
{
	if (!c->html)
		return text_part(j, "plain", c->text, c->text_len, MSG_ESC_NONE,
				 "content.text_body", top, e);
	if (!c->text)
		return text_part(j, "html", c->html, c->html_len, MSG_ESC_HTML,
				 "content.html_body", top, e);
	mp_open(j, "alternative", 'a');
	mp_next(j, 'a', true);
	if (text_part(j, "plain", c->text, c->text_len, MSG_ESC_NONE,
		      "content.text_body", false, e) < 0)
		return -1;
	mp_next(j, 'a', false);
	if (text_part(j, "html", c->html, c->html_len, MSG_ESC_HTML,
		      "content.html_body", false, e) < 0)
		return -1;
	mp_close(j, 'a', top);
	return 0;
}

/* Inline attachments (with a content_id) go with the html in
 * multipart/related; without html they are ordinary parts. */
static int related(struct msg_job *j, const struct content *c, bool top,
		   struct msg_err *e)
{
	if (!c->ninline || !c->html)
		return alternative(j, c, top, e);
	mp_open(j, "related", 'r');
	mp_next(j, 'r', true);
	if (alternative(j, c, false, e) < 0)
		return -1;
	for (size_t i = 0; i < c->natt; i++) {
		if (!c->att[i].cid)
			continue;
		mp_next(j, 'r', false);
		if (attachment_part(j, &c->att[i], i, e) < 0)
			return -1;
	}
	mp_close(j, 'r', top);
	return 0;
}

static int body(struct msg_job *j, const struct content *c, struct msg_err *e)
{
	bool lead = c->text || c->html, inl = c->html != NULL;
	size_t others = c->natt - (inl ? c->ninline : 0);

	if (!others)
		return related(j, c, true, e);
	mp_open(j, "mixed", 'm');
	bool first = true;
	if (lead) {
		mp_next(j, 'm', true);
		if (related(j, c, false, e) < 0)
			return -1;
		first = false;
	}
	for (size_t i = 0; i < c->natt; i++) {
		if (c->att[i].cid && inl)
			continue;
		mp_next(j, 'm', first);
		first = false;
		if (attachment_part(j, &c->att[i], i, e) < 0)
			return -1;
	}
	mp_close(j, 'm', true);
	return 0;
}

int msg_compose_object(struct msg_job *j, const json_t *o, const json_t *unsub,
			  struct msg_err *e)
{
	struct content c = {.o = o};
	int rc = parse(&c, unsub, e);

	if (rc == 0)
		rc = top_headers(j, &c, unsub, e);
	if (rc == 0)
		rc = body(j, &c, e);
	free(c.att);
	return rc;
}

