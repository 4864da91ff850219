/*
 * Rendering one recipient: a walk over the job's pieces. Static octets
 * are copied when short and pointed at (an iovec into the job) when long;
 * per recipient only To, Date, Message-ID, templated headers and the
 * parts with slots are built, their static text already encoded.
 */
#include "message_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct val {
	const char *p;
	size_t n;
	bool rcpt;           /* the recipient's own (checked per recipient) */
};

struct rctx {
	const struct msg_job *j;
	const struct msg_rcpt *r;
	struct msg_out *o;
	size_t flushed;      /* octets of o->buf already in o->iov */
	time_t date;
	struct val v[MSG_JOB_VARS_MAX];
	char to_hdr[1400];   /* the predefined to_header, when a template uses it */
	char url[MSG_UNSUB_BASE_MAX + 2 + MSG_UNSUB_TOKEN_MAX + 1];  /* volley's unsubscribe URL */
	size_t url_len;      /* 0: not made yet */
	bool checking;       /* msg_job_check_rcpt: no render follows */
};

/* Only the scalars: v (resolve), to_hdr (predefined) and url (own_url)
 * are written before they are read, and zeroing their 10 KB for every
 * recipient was most of what a check cost at intake. */
static void rctx_init(struct rctx *c, const struct msg_job *j, const struct msg_rcpt *r,
		      struct msg_out *o, time_t date, bool checking)
{
	c->j = j;
	c->r = r;
	c->o = o;
	c->flushed = 0;
	c->date = date;
	c->url_len = 0;
	c->checking = checking;
}

/* volley's unsubscribe URL for this recipient, made once per render. A
 * check alone gets a stand-in of the same length: intake checks every
 * recipient of a job, and only lengths matter there (the HMAC is not
 * worth it). */
static const char *own_url(struct rctx *c, size_t *len)
{
	const struct msg_job *j = c->j;
	size_t el = strlen(c->r->email), b = j->ubase ? strlen(j->ubase) : 0;

	if (!c->url_len && c->checking && j->ubase && c->r->index <= UINT32_MAX &&
	    el >= 3 && el <= 254) {
		size_t n = b + 1 + msg_unsub_token_len(strlen(j->job_id), (uint32_t)c->r->index, el);
		memcpy(c->url, j->ubase, b);
		memset(c->url + b, 'A', n - b);
		c->url[b] = '/';
		c->url[n] = '\0';
		c->url_len = n;
	}
	if (!c->url_len) {
		int n = msg_unsub_url(c->j, c->r->email, c->r->index, c->url, sizeof c->url);
		c->url_len = n > 0 ? (size_t)n : 0;
	}
	*len = c->url_len;
	return c->url_len ? c->url : NULL;
}

/* ---- values and their checks ---- */

/* KumoMTA's predefined substitutions, over the job's and under the
 * recipient's own: email, name (when the recipient has one) and to_header
 * (name and email as a To value). false: name is not one of them. */
static bool predefined(struct rctx *c, const char *name, struct val *v)
{
	const struct msg_rcpt *r = c->r;

	if (!strcmp(name, "email")) {
		*v = (struct val){r->email, strlen(r->email), true};
	} else if (!strcmp(name, "name") && r->name) {
		*v = (struct val){r->name, strlen(r->name), true};
	} else if (!strcmp(name, "to_header")) {
		struct vl_buf b;
		vl_buf_init(&b);
		msg_hdr_mailbox(&b, r->name, r->email);
		size_t n = b.len < sizeof c->to_hdr ? b.len : sizeof c->to_hdr - 1;
		memcpy(c->to_hdr, b.p, n);
		c->to_hdr[n] = '\0';
		vl_buf_free(&b);
		*v = (struct val){c->to_hdr, n, true};
	} else {
		return false;
	}
	return true;
}

static int resolve(struct rctx *c, struct msg_err *e)
{
	const struct msg_job *j = c->j;
	const struct msg_rcpt *r = c->r;

	for (size_t i = 0; i < j->nvars; i++) {
		size_t k = 0;
		while (k < r->nsubs && strcmp(r->keys[k], j->vars[i].name))
			k++;
		if (k < r->nsubs) {
			c->v[i] = (struct val){r->vals[k],
					       r->lens ? r->lens[k] : strlen(r->vals[k]), true};
		} else if (predefined(c, j->vars[i].name, &c->v[i])) {
			continue;
		} else if (j->vars[i].job_val) {
			c->v[i] = (struct val){j->vars[i].job_val, j->vars[i].job_len, false};
		} else if (!strcmp(j->vars[i].name, "name")) {
			c->v[i] = (struct val){"", 0, false};   /* no name: empty, as KumoMTA */
		} else if (!strcmp(j->vars[i].name, "unsubscribe_url")) {
			/* after the job's own value: senders that already use the name keep it */
			size_t n;
			const char *u = own_url(c, &n);
			if (!u)
				return msg_fail(e, "missing_substitution", "substitutions.unsubscribe_url",
						"has no value: volley's own unsubscribe URL needs "
						"unsubscribe.base_url in volleyd's configuration, and "
						"neither the recipient nor the job gives one");
			c->v[i] = (struct val){u, n, false};
		} else {
			char f[160];
			snprintf(f, sizeof f, "substitutions.%s", j->vars[i].name);
			return msg_fail(e, "missing_substitution", f, "has no value for this "
					"recipient nor for the job");
		}
	}
	return 0;
}

static bool has_crlf0(const char *s, size_t n)
{
	return memchr(s, '\r', n) || memchr(s, '\n', n) || memchr(s, '\0', n);
}

/* A value fits where it goes (job values were checked at compile). */
static int check_value(const struct var *var, const struct val *v, struct msg_err *e)
{
	char f[160];

	snprintf(f, sizeof f, "substitutions.%s", var->name);
	if (!msg_utf8_valid(v->p, v->n))
		return msg_fail(e, "invalid_field", f, "is not valid UTF-8");
	if (var->in_header && has_crlf0(v->p, v->n))
		return msg_fail(e, "invalid_field", f, "holds CR, LF or NUL and goes "
				"into a header");
	if (var->in_raw && memchr(v->p, '\0', v->n))
		return msg_fail(e, "invalid_field", f, "holds NUL");
	return 0;
}

static int too_long(const struct rctx *c, size_t var, struct msg_err *e)
{
	char f[160];

	snprintf(f, sizeof f, "substitutions.%s", var == SIZE_MAX ? "" : c->j->vars[var].name);
	return msg_fail(e, "invalid_field", var == SIZE_MAX ? "content" : f,
			"makes a line longer than %d octets", MSG_LINE_MAX);
}

/* Lines of a content string's body stay within 998 octets. */
static int raw_lines(const struct rctx *c, const struct piece *p, struct msg_err *e)
{
	size_t col = 0, last = SIZE_MAX;    /* the variable last on this line */

	for (size_t i = 0; i < p->nsegs; i++) {
		const struct tseg *s = &p->segs[i];
		if (s->var == SIZE_MAX) {
			if (col + s->s.head > MSG_LINE_MAX)
				return too_long(c, last, e);
			col = s->s.nl ? s->s.tail : col + s->s.head;
			last = s->s.nl ? SIZE_MAX : last;
			continue;
		}
		const struct val *v = &c->v[s->var];
		for (size_t k = 0; k < v->n && col <= MSG_LINE_MAX; k++) {
			bool br = v->p[k] == '\r' || v->p[k] == '\n';
			col = br ? 0 : col + 1;
			if (v->p[k] == '\r' && k + 1 < v->n && v->p[k + 1] == '\n')
				k++;
		}
		last = s->var;
		if (col > MSG_LINE_MAX)
			return too_long(c, last, e);
	}
	return 0;
}

static size_t url_len(const char *s, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			     (ch >= '0' && ch <= '9') || strchr("-._~", ch);
		len += plain && ch ? 1 : 3;
	}
	return len;
}

static int unsub_len(const struct rctx *c, const struct piece *p, struct msg_err *e)
{
	size_t len = 0;

	for (size_t i = 0; i < p->nsegs; i++) {
		const struct tseg *s = &p->segs[i];
		len += s->var == SIZE_MAX ? s->s.len : url_len(c->v[s->var].p, c->v[s->var].n);
	}
	if (len <= c->j->url_max)
		return 0;
	return msg_fail(e, "invalid_field", "unsubscribe.url", "is %zu octets for this "
			"recipient, over %zu", len, c->j->url_max);
}

static int check(struct rctx *c, struct msg_err *e)
{
	const struct msg_rcpt *r = c->r;
	char why[120];
	bool utf8;

	e->code[0] = e->field[0] = e->message[0] = '\0';
	if (!r->email || msg_addr_check(r->email, strlen(r->email), &utf8, why, sizeof why) < 0)
		return msg_fail(e, "invalid_address", "email", "%s", r->email ? why : "missing");
	if (r->name && (has_crlf0(r->name, strlen(r->name)) ||
			!msg_utf8_valid(r->name, strlen(r->name))))
		return msg_fail(e, "invalid_field", "name", "holds CR or LF, or is not "
				"valid UTF-8");
	if (resolve(c, e) < 0)
		return -1;
	for (size_t i = 0; i < c->j->nvars; i++)
		if (c->v[i].rcpt && check_value(&c->j->vars[i], &c->v[i], e) < 0)
			return -1;
	for (size_t i = 0; i < c->j->np; i++) {
		const struct piece *p = &c->j->p[i];
		if (p->kind == PC_RAW && raw_lines(c, p, e) < 0)
			return -1;
		if (p->kind == PC_UNSUB && !p->builtin && unsub_len(c, p, e) < 0)
			return -1;
		size_t n;
		if (p->kind == PC_UNSUB && p->builtin && !own_url(c, &n))
			return msg_fail(e, "invalid_field", "email", "cannot go into an "
					"unsubscribe token (index over 2^32)");
	}
	return 0;
}

int msg_job_check_rcpt(const struct msg_job *j, const struct msg_rcpt *r,
		       struct msg_err *err)
{
	struct rctx c;

	rctx_init(&c, j, r, NULL, 0, true);

	return check(&c, err);
}

/* ---- output ---- */

static void push_iov(struct msg_out *o, const void *p, size_t n)
{
	if (o->niov == o->iovcap) {
		o->iovcap = o->iovcap ? o->iovcap * 2 : 16;
		o->iov = vl_realloc(o->iov, o->iovcap * sizeof *o->iov);
	}
	o->iov[o->niov++] = (struct iovec){(void *)p, n};
}

/* What o->buf gained since the last flush becomes an iovec (its base set
 * at the end: buf may still move). */
static void flush(struct rctx *c)
{
	struct msg_out *o = c->o;

	if (o->buf.len > c->flushed)
		push_iov(o, NULL, o->buf.len - c->flushed);
	c->flushed = o->buf.len;
}

static void put_static(struct rctx *c, const struct span *s)
{
	const char *p = c->j->stat.p + s->off;

	if (s->len < MSG_COPY_MAX) {
		vl_buf_append(&c->o->buf, p, s->len);
		return;
	}
	flush(c);
	push_iov(c->o, p, s->len);
}

/* Segments as text (header values and URLs), into o->tmp. */
static void segs_text(struct rctx *c, const struct piece *p, enum msg_escape esc)
{
	for (size_t i = 0; i < p->nsegs; i++) {
		const struct tseg *s = &p->segs[i];
		if (s->var == SIZE_MAX)
			vl_buf_append(&c->o->tmp, c->j->stat.p + s->s.off, s->s.len);
		else if (esc == MSG_ESC_URL)
			msg_url_escape(c->v[s->var].p, c->v[s->var].n, &c->o->tmp);
		else
			vl_buf_append(&c->o->tmp, c->v[s->var].p, c->v[s->var].n);
	}
}

/* "Message-ID: <job.index@hostname>" without printf (per recipient). */
static void message_id(const struct rctx *c, struct vl_buf *b)
{
	char num[24], *n = num + sizeof num;
	size_t i = c->r->index;

	do
		*--n = (char)('0' + i % 10);
	while (i /= 10);
	vl_buf_append(b, "Message-ID: <", 13);
	vl_buf_appends(b, c->j->job_id);
	vl_buf_append(b, ".", 1);
	vl_buf_append(b, n, (size_t)(num + sizeof num - n));
	vl_buf_append(b, "@", 1);
	vl_buf_appends(b, c->j->hostname);
	vl_buf_append(b, ">\r\n", 3);
}

static void render_header(struct rctx *c, const struct piece *p)
{
	struct msg_out *o = c->o;

	o->tmp.len = 0;
	switch (p->kind) {
	case PC_TO:
		msg_hdr_mailbox(&o->tmp, c->r->name, c->r->email);
		msg_hdr_write(&o->buf, "To", o->tmp.p, o->tmp.len, MSG_HDR_ADDR, MSG_HDR_EQ,
			      &o->smtputf8);
		break;
	case PC_HEADER:
		segs_text(c, p, MSG_ESC_HEADER);
		msg_hdr_write(&o->buf, p->name, o->tmp.p ? o->tmp.p : "", o->tmp.len, p->hk,
			      p->hflags, &o->smtputf8);
		break;
	case PC_UNSUB:
		if (p->name) {
			vl_buf_appends(&o->tmp, p->name);
			vl_buf_append(&o->tmp, ", ", 2);
		}
		vl_buf_append(&o->tmp, "<", 1);
		if (p->builtin) {
			size_t n;
			const char *u = own_url(c, &n);
			vl_buf_append(&o->tmp, u, n);
		} else {
			segs_text(c, p, MSG_ESC_URL);
		}
		vl_buf_append(&o->tmp, ">", 1);
		msg_hdr_write(&o->buf, "List-Unsubscribe", o->tmp.p, o->tmp.len, MSG_HDR_TEXT,
			      0, &o->smtputf8);
		break;
	case PC_DATE:
		vl_buf_appends(&o->buf, "Date: ");
		msg_hdr_date(&o->buf, c->date);
		vl_buf_appends(&o->buf, "\r\n");
		break;
	default:        /* PC_MSGID */
		message_id(c, &o->buf);
	}
}

/* A text part with slots: static text is QP already (from column 0);
 * a soft break goes before it when its first line would not fit. */
static void render_qp(struct rctx *c, const struct piece *p)
{
	struct msg_out *o = c->o;
	size_t col = 0;

	for (size_t i = 0; i < p->nsegs; i++) {
		const struct tseg *s = &p->segs[i];
		if (s->var == SIZE_MAX) {
			if (col && col + s->s.head > 75) {
				vl_buf_append(&o->buf, "=\r\n", 3);
				col = 0;
			}
			put_static(c, &s->s);
			col = s->s.nl ? s->s.tail : col + s->s.head;
		} else if (p->esc == MSG_ESC_HTML) {
			o->tmp.len = 0;
			msg_html_escape(c->v[s->var].p, c->v[s->var].n, &o->tmp);
			msg_qp_encode(o->tmp.p, o->tmp.len, &col, &o->buf);
		} else {
			msg_qp_encode(c->v[s->var].p, c->v[s->var].n, &col, &o->buf);
		}
	}
	if (p->soft_end && col)
		vl_buf_append(&o->buf, "=\r\n", 3);
}

/* A content string's body: values as they are, line ends made CRLF. */
static void render_raw(struct rctx *c, const struct piece *p)
{
	struct msg_out *o = c->o;
	size_t col = 0;

	for (size_t i = 0; i < p->nsegs; i++) {
		const struct tseg *s = &p->segs[i];
		if (s->var == SIZE_MAX) {
			put_static(c, &s->s);
			col = s->s.nl ? s->s.tail : col + s->s.head;
			continue;
		}
		const struct val *v = &c->v[s->var];
		size_t start = o->buf.len;
		msg_crlf(v->p, v->n, &o->buf);
		const char *nl = memrchr(o->buf.p + start, '\n', o->buf.len - start);
		col = nl ? (size_t)(o->buf.p + o->buf.len - nl - 1) : col + (o->buf.len - start);
		o->eightbit |= msg_has_8bit(v->p, v->n);
	}
	if (col)
		vl_buf_append(&o->buf, "\r\n", 2);
}

int msg_render(const struct msg_job *j, const struct msg_rcpt *r, time_t date,
	       struct msg_out *out, struct msg_err *err)
{
	struct rctx c;

	rctx_init(&c, j, r, out, date, false);

	if (check(&c, err) < 0)
		return -1;
	out->buf.len = out->niov = out->size = 0;
	out->smtputf8 = j->smtputf8 || msg_has_8bit(r->email, strlen(r->email));
	out->eightbit = j->eightbit;
	for (size_t i = 0; i < j->np; i++) {
		const struct piece *p = &j->p[i];
		if (p->kind == PC_STATIC)
			put_static(&c, &p->s);
		else if (p->kind == PC_QP)
			render_qp(&c, p);
		else if (p->kind == PC_RAW)
			render_raw(&c, p);
		else
			render_header(&c, p);
	}
	flush(&c);
	for (size_t i = 0, off = 0; i < out->niov; i++) {
		if (!out->iov[i].iov_base) {
			out->iov[i].iov_base = out->buf.p + off;
			off += out->iov[i].iov_len;
		}
		out->size += out->iov[i].iov_len;
	}
	out->eightbit |= out->smtputf8;
	if (j->max_size && out->size > j->max_size)
		return msg_fail(err, "too_large", "content", "the message is %zu octets for "
				"this recipient, over the limit of %zu", out->size, j->max_size);
	return 0;
}

void msg_out_init(struct msg_out *o)
{
	memset(o, 0, sizeof *o);
	vl_buf_init(&o->buf);
	vl_buf_init(&o->tmp);
}

void msg_out_free(struct msg_out *o)
{
	vl_buf_free(&o->buf);
	vl_buf_free(&o->tmp);
	free(o->iov);
	memset(o, 0, sizeof *o);
}
