/*
 * A message submitted over SMTP (RFC 6409), made ready to store: its
 * header fields kept octet for octet in order, but Bcc (RFC 6409 8.1:
 * the submission server may remove it) and volley's own X-Volley-*
 * fields, which are read into the result; Date and Message-ID added when
 * missing (RFC 6409 8.2, 8.3). The From field is parsed to its mailboxes
 * (RFC 5322 3.4, 3.6.2) with a bounded tokenizer: no recursion, no copy
 * of more than one address at a time. The body is not copied.
 */
#include "message_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ADDR_BUF 512              /* an address is at most 254 octets */
#define COMMENT_DEPTH 64

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

void msg_submit_init(struct msg_submit *s)
{
	memset(s, 0, sizeof *s);
	vl_buf_init(&s->head);
}

void msg_submit_free(struct msg_submit *s)
{
	vl_buf_free(&s->head);
	msg_submit_init(s);
}

/* ---- the From field: tokens, then mailboxes ---- */

enum tok { T_END, T_WORD, T_SPECIAL };

struct lex {
	const char *p, *end;
	const char *t;                /* the token's text */
	size_t tlen;
	char special;                 /* T_SPECIAL: which one */
};

static bool atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~.", c);
}

/* Skip white space, line ends of folds and (nested) comments; -1 with why
 * on an unclosed or too deeply nested comment. */
static int skip_cfws(struct lex *x, const char **why)
{
	int depth = 0;

	for (; x->p < x->end; x->p++) {
		char c = *x->p;
		if (depth && c == '\\' && x->p + 1 < x->end) {
			x->p++;
		} else if (c == '(') {
			if (++depth > COMMENT_DEPTH)
				return *why = "comments nested too deeply", -1;
		} else if (depth && c == ')') {
			depth--;
		} else if (!depth && !is_wsp(c) && c != '\r' && c != '\n') {
			break;
		}
	}
	if (depth)
		return *why = "a comment is not closed", -1;
	return 0;
}

/* The end of a quoted string or domain literal opened at x->p, or NULL. */
static const char *closing(const struct lex *x, char close)
{
	for (const char *q = x->p + 1; q < x->end; q++) {
		if (*q == '\\')
			q++;
		else if (*q == close)
			return q + 1;
		else if (close == ']' && (*q == '[' || *q == '\0'))
			return NULL;
	}
	return NULL;
}

/* The next token: a word (atoms with dots, a quoted string or a domain
 * literal), or one of < > @ , ; :. -1 with why. */
static int next(struct lex *x, enum tok *t, const char **why)
{
	if (skip_cfws(x, why) < 0)
		return -1;
	x->t = x->p;
	if (x->p == x->end)
		return *t = T_END, 0;
	char c = *x->p;
	if (strchr("<>@,;:", c)) {
		x->special = c;
		x->p++;
		x->tlen = 1;
		return *t = T_SPECIAL, 0;
	}
	const char *e = x->p;
	if (c == '"' || c == '[') {
		if (!(e = closing(x, c == '"' ? '"' : ']')))
			return *why = c == '"' ? "a quoted string is not closed"
					       : "a domain literal is not closed", -1;
	} else {
		while (e < x->end && atext((unsigned char)*e))
			e++;
		if (e == x->p)
			return *why = "a character that has no place in an address list", -1;
	}
	x->p = e;
	x->tlen = (size_t)(e - x->t);
	return *t = T_WORD, 0;
}

struct from {
	char bare[ADDR_BUF];          /* the item's words outside < > */
	char ang[ADDR_BUF];           /* inside < > */
	size_t nbare, nang;
	bool bare_long, ang_long;
	bool in_angle, angle_done, in_group, any;
	size_t nmbox;
	char domain[256];             /* the first mailbox's */
};

/* A word's text without the line ends of folds, appended to an address. */
static void add_text(char *buf, size_t *n, bool *overflow, const char *t, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (t[i] == '\r' || t[i] == '\n')
			continue;
		if (*n + 1 >= ADDR_BUF) {
			*overflow = true;
			return;
		}
		buf[(*n)++] = t[i];
	}
}

/* An item of the list ends: its address is a mailbox. */
static int mailbox(struct from *f, struct msg_err *e)
{
	const char *a = f->angle_done ? f->ang : f->bare;
	size_t n = f->angle_done ? f->nang : f->nbare;
	bool utf8;
	char why[120];

	if (!f->any) {      /* an empty item: ",," or an empty group */
		f->angle_done = false;
		return 0;
	}
	if (f->angle_done ? f->ang_long : f->bare_long)
		return msg_fail(e, "invalid_address", "From", "an address longer than 254 octets");
	if (!memchr(a, '@', n))
		return msg_fail(e, "invalid_address", "From", "'%.*s' is not an address "
				"(local@domain, or a name and <local@domain>)", (int)(n > 80 ? 80 : n), a);
	if (msg_addr_check(a, n, &utf8, why, sizeof why) < 0)
		return msg_fail(e, "invalid_address", "From", "'%.*s': %s",
				(int)(n > 80 ? 80 : n), a, why);
	const char *d = memrchr(a, '@', n) + 1;
	size_t dn = n - (size_t)(d - a);
	if (*d == '[')
		return msg_fail(e, "invalid_address", "From", "the From domain is an address "
				"literal: DKIM and the allowed domains need a name");
	if (f->nmbox++ == 0) {
		for (size_t i = 0; i < dn; i++)
			f->domain[i] = (char)(d[i] >= 'A' && d[i] <= 'Z' ? d[i] + 32 : d[i]);
		f->domain[dn] = '\0';
	}
	f->nbare = f->nang = 0;
	f->bare_long = f->ang_long = f->angle_done = f->any = false;
	return 0;
}

static int special(struct from *f, char c, struct msg_err *e)
{
	switch (c) {
	case '<':
		if (f->in_angle || f->angle_done)
			break;
		f->in_angle = f->any = true;
		return 0;
	case '>':
		if (!f->in_angle)
			break;
		f->in_angle = false;
		f->angle_done = true;
		return 0;
	case ':':
		if (f->in_angle) {          /* the end of an obsolete route: dropped */
			f->nang = 0;
			f->ang_long = false;
			return 0;
		}
		if (f->in_group || f->angle_done || memchr(f->bare, '@', f->nbare))
			break;
		f->in_group = true;         /* display-name ":" starts a group */
		f->nbare = 0;
		f->bare_long = f->any = false;
		return 0;
	case ',':
		if (f->in_angle)            /* inside an obsolete route */
			return 0;
		return mailbox(f, e);
	case ';':
		if (!f->in_group || f->in_angle)
			break;
		f->in_group = false;
		return mailbox(f, e);
	case '@':
		if (f->in_angle)
			add_text(f->ang, &f->nang, &f->ang_long, "@", 1);
		else if (!f->angle_done)
			add_text(f->bare, &f->nbare, &f->bare_long, "@", 1);
		else
			break;
		f->any = true;
		return 0;
	}
	return msg_fail(e, "invalid_address", "From", "'%c' out of place", c);
}

/* The mailboxes of a From value: how many, and the first one's domain. */
static int parse_from(const char *v, size_t n, struct from *f, struct msg_err *e)
{
	struct lex x = { .p = v, .end = v + n };
	const char *why;
	enum tok t;

	memset(f, 0, sizeof *f);
	for (;;) {
		if (next(&x, &t, &why) < 0)
			return msg_fail(e, "invalid_address", "From", "%s", why);
		if (t == T_END)
			break;
		if (t == T_SPECIAL) {
			if (special(f, x.special, e) < 0)
				return -1;
			continue;
		}
		if (f->angle_done)
			return msg_fail(e, "invalid_address", "From", "'%.*s' after an address's '>'",
					(int)(x.tlen > 40 ? 40 : x.tlen), x.t);
		if (f->in_angle)
			add_text(f->ang, &f->nang, &f->ang_long, x.t, x.tlen);
		else
			add_text(f->bare, &f->nbare, &f->bare_long, x.t, x.tlen);
		f->any = true;
	}
	if (f->in_angle)
		return msg_fail(e, "invalid_address", "From", "a '<' is not closed");
	if (f->in_group)
		return msg_fail(e, "invalid_address", "From", "a group is not closed with ';'");
	if (mailbox(f, e) < 0)
		return -1;
	if (f->nmbox == 0)
		return msg_fail(e, "invalid_address", "From", "no address in the From field");
	return 0;
}

/* ---- the header section ---- */

struct hdr {
	const struct msg_submit_opts *o;
	struct msg_submit *out;
	struct msg_err *e;
	const char *from;             /* the From field's value */
	size_t from_len;
	unsigned nfrom, nsender;
	bool date, msgid, campaign, priority, expires;
	struct vl_buf tmp;
};

/* A field's value unfolded and without white space at either end. */
static void value_of(const char *v, size_t n, struct vl_buf *out)
{
	vl_buf_reset(out);
	for (size_t i = 0; i < n; i++)
		if (v[i] != '\r' && v[i] != '\n')
			vl_buf_append(out, &v[i], 1);
	size_t s = 0;
	while (s < out->len && is_wsp(out->p[s]))
		s++;
	vl_buf_consume(out, s);
	while (out->len && is_wsp(out->p[out->len - 1]))
		out->len--;
	vl_buf_append(out, "", 1);
	out->len--;
}

static int x_campaign(struct hdr *h, const char *name)
{
	const char *v = h->tmp.p;
	bool ctl = false;

	for (size_t i = 0; i < h->tmp.len; i++)
		ctl |= (unsigned char)v[i] < 0x20 || v[i] == 0x7f;
	if (h->tmp.len == 0 || h->tmp.len > 256 || ctl || !msg_utf8_valid(v, h->tmp.len))
		return msg_fail(h->e, "invalid_field", name, "%s: expected 1 to 256 octets of "
				"UTF-8 without control characters", name);
	memcpy(h->out->campaign, v, h->tmp.len + 1);
	return 0;
}

static int x_priority(struct hdr *h, const char *name)
{
	if (!strcasecmp(h->tmp.p, "bulk"))
		h->out->priority = MSG_PRIO_BULK;
	else if (!strcasecmp(h->tmp.p, "transactional"))
		h->out->priority = MSG_PRIO_TRANSACTIONAL;
	else
		return msg_fail(h->e, "invalid_field", name, "%s: expected bulk or "
				"transactional", name);
	return 0;
}

static int x_expires(struct hdr *h, const char *name)
{
	uint64_t ms;

	if (vl_parse_duration_ms(h->tmp.p, &ms) < 0 || ms < 60000 || ms > 30 * 86400000ull)
		return msg_fail(h->e, "invalid_field", name, "%s: expected a duration from "
				"\"1m\" to \"30d\" (\"90m\", \"48h\", \"2d\")", name);
	h->out->expires_ms = ms;
	return 0;
}

/* X-Volley-Campaign, -Priority, -Expires: read, checked, not kept. */
static int x_volley(struct hdr *h, const char *name, const char *v, size_t n)
{
	static const struct { const char *name; size_t off; int (*fn)(struct hdr *, const char *); }
	xs[] = {
		{ "X-Volley-Campaign", offsetof(struct hdr, campaign), x_campaign },
		{ "X-Volley-Priority", offsetof(struct hdr, priority), x_priority },
		{ "X-Volley-Expires", offsetof(struct hdr, expires), x_expires },
	};
	for (size_t i = 0; i < VL_ARRAY_LEN(xs); i++) {
		if (strcasecmp(name, xs[i].name))
			continue;
		bool *seen = (bool *)((char *)h + xs[i].off);
		if (*seen)
			return msg_fail(h->e, "invalid_field", xs[i].name, "%s appears twice",
					xs[i].name);
		*seen = true;
		value_of(v, n, &h->tmp);
		return xs[i].fn(h, xs[i].name);
	}
	return 1;
}

/* One field f..f+n (its line ends included, when it has them): kept,
 * dropped or read. */
static int field(struct hdr *h, const char *f, size_t n, size_t line)
{
	const char *colon = memchr(f, ':', n);
	size_t nl = colon ? (size_t)(colon - f) : 0;
	char name[80];

	while (nl && is_wsp(f[nl - 1]))   /* obsolete "Name :" (RFC 5322 4.5) */
		nl--;
	if (!colon || !msg_hdr_name_ok(f, nl))
		return msg_fail(h->e, "invalid_field", "header", "line %zu is neither a header "
				"field (Name: value) nor the continuation of one", line);
	memcpy(name, f, nl);
	name[nl] = '\0';
	const char *v = colon + 1;
	size_t vn = n - (size_t)(v - f);
	if (!strcasecmp(name, "Bcc"))
		return 0;
	int r = x_volley(h, name, v, vn);
	if (r <= 0)
		return r;
	if (!strcasecmp(name, "From")) {
		h->nfrom++;
		h->from = v;
		h->from_len = vn;
	}
	h->nsender += !strcasecmp(name, "Sender");
	h->date |= !strcasecmp(name, "Date");
	h->msgid |= !strcasecmp(name, "Message-ID");
	vl_buf_append(&h->out->head, f, n);
	if (n < 2 || f[n - 2] != '\r' || f[n - 1] != '\n')
		vl_buf_append(&h->out->head, "\r\n", 2);   /* the message ended in it */
	return 0;
}

/* The header section's lines up to the empty line (or the end: RFC 5322
 * 2.1 lets a message be header only), each checked, each field handed to
 * field(). *body: where the body starts. */
static int header(struct hdr *h, const char *m, size_t len, size_t *body)
{
	size_t i = 0, line = 1, fstart = SIZE_MAX, fline = 0;

	for (;;) {
		if (i == len) {
			*body = len;
			return fstart == SIZE_MAX ? 0 : field(h, m + fstart, len - fstart, fline);
		}
		size_t s = i;
		while (i < len && m[i] != '\r' && m[i] != '\n' && m[i] != '\0')
			i++;
		if (i - s > MSG_LINE_MAX)
			return msg_fail(h->e, "invalid_field", "header", "line %zu is longer than "
					"%d octets", line, MSG_LINE_MAX);
		if (i < len && m[i] == '\0')
			return msg_fail(h->e, "invalid_field", "header", "line %zu holds a NUL", line);
		if (i < len && (m[i] == '\n' || i + 1 == len || m[i + 1] != '\n'))
			return msg_fail(h->e, "invalid_field", "header", "line %zu ends in a bare "
					"CR or LF (lines end in CRLF)", line);
		size_t eol = i < len ? i + 2 : len;
		if (s == i) {                       /* the empty line: the body follows */
			*body = eol;
			return fstart == SIZE_MAX ? 0 : field(h, m + fstart, s - fstart, fline);
		}
		if (eol > MSG_SUBMIT_HEADER_MAX)
			return msg_fail(h->e, "too_large", "header", "the header section is over "
					"%d octets", MSG_SUBMIT_HEADER_MAX);
		if (is_wsp(m[s]) && fstart == SIZE_MAX)
			return msg_fail(h->e, "invalid_field", "header", "line %zu starts with white "
					"space, which only continues a header field", line);
		if (!is_wsp(m[s])) {
			if (fstart != SIZE_MAX && field(h, m + fstart, s - fstart, fline) < 0)
				return -1;
			fstart = s;
			fline = line;
		}
		i = eol;
		line++;
	}
}

/* "[A-Za-z0-9._-]{1,64}" and a host name of letters, digits, '.', '-', '_'. */
static bool word_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && !strchr("._-", *s))
			return false;
	return true;
}

/* From: exactly one field, with one mailbox, or several and a Sender. */
static int check_from(struct hdr *h)
{
	struct from f;

	if (h->nfrom == 0)
		return msg_fail(h->e, "invalid_field", "From", "no From field (RFC 5322 3.6.2 "
				"requires one)");
	if (h->nfrom > 1)
		return msg_fail(h->e, "invalid_field", "From", "%u From fields (RFC 5322 3.6 "
				"allows one)", h->nfrom);
	if (parse_from(h->from, h->from_len, &f, h->e) < 0)
		return -1;
	if (f.nmbox > 1 && h->nsender == 0)
		return msg_fail(h->e, "invalid_field", "From", "%zu mailboxes in From need a "
				"Sender field (RFC 5322 3.6.2)", f.nmbox);
	memcpy(h->out->from_domain, f.domain, sizeof f.domain);
	h->out->nfrom = f.nmbox;
	return 0;
}

int msg_submit_prepare(const char *msg, size_t len, const struct msg_submit_opts *o,
		       struct msg_submit *out, struct msg_err *e)
{
	struct hdr h = { .o = o, .out = out, .e = e };
	size_t body = 0;
	int rc = -1;

	vl_buf_reset(&out->head);
	out->body = NULL;
	out->body_len = 0;
	out->from_domain[0] = out->campaign[0] = '\0';
	out->nfrom = 0;
	out->priority = MSG_PRIO_NONE;
	out->expires_ms = 0;
	out->smtputf8 = out->eightbit = out->added_date = out->added_msgid = false;
	if (!word_ok(o->msg_id, 64) || !word_ok(o->hostname, 253))
		return msg_fail(e, "invalid_field", "opts", "the Message-ID's id and host "
				"must be 1-64 and 1-253 of letters, digits, '.', '_' and '-'");
	vl_buf_init(&h.tmp);
	if (header(&h, msg, len, &body) < 0 || check_from(&h) < 0)
		goto out;
	if (!h.date) {
		vl_buf_appends(&out->head, "Date: ");
		msg_hdr_date(&out->head, o->date ? o->date : time(NULL));
		vl_buf_appends(&out->head, "\r\n");
		out->added_date = true;
	}
	if (!h.msgid) {
		vl_buf_printf(&out->head, "Message-ID: <%s@%s>\r\n", o->msg_id, o->hostname);
		out->added_msgid = true;
	}
	vl_buf_append(&out->head, "\r\n", 2);
	out->body = msg + body;
	out->body_len = len - body;
	out->smtputf8 = msg_has_8bit(out->head.p, out->head.len);
	out->eightbit = msg_has_8bit(out->body, out->body_len);
	rc = 0;
out:
	vl_buf_free(&h.tmp);
	if (rc < 0)
		vl_buf_reset(&out->head);
	return rc;
}
