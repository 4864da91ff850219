/*
 * A content string: a whole RFC 5322 message, itself a template. Kept as
 * given, with line endings made CRLF; header fields that hold a slot or
 * raw UTF-8 are rewritten (unfolded, refolded, RFC 2047) so what is
 * substituted cannot break the header; Date, Message-ID and the
 * unsubscribe headers are added.
 */
#include "message_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct seen {
	bool date, msgid, unsub;
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* The line at s..end: its length without CRLF. */
static size_t line_len(const char *s, const char *end)
{
	const char *nl = memmem(s, (size_t)(end - s), "\r\n", 2);
	return nl ? (size_t)(nl - s) : (size_t)(end - s);
}

static int long_line(size_t no, struct msg_err *e)
{
	return msg_fail(e, "invalid_field", "content", "line %zu is longer than %d octets",
			no, MSG_LINE_MAX);
}

/* A field's value unfolded (CRLF before white space removed), leading
 * white space dropped. */
static void unfold(const char *v, size_t n, struct vl_buf *out)
{
	size_t i = 0;

	while (i < n && (is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n'))
		i++;
	for (; i < n; i++)
		if (v[i] != '\r' && v[i] != '\n')
			vl_buf_append(out, &v[i], 1);
}

static int field(struct msg_job *j, const char *f, size_t n, struct seen *seen,
		 struct msg_err *e)
{
	const char *colon = memchr(f, ':', n);
	char name[80];
	size_t nlen = colon ? (size_t)(colon - f) : 0;

	if (!colon || !msg_hdr_name_ok(f, nlen))
		return msg_fail(e, "invalid_field", "content", "'%.*s' is not a header "
				"field (name: value) and no blank line comes before it",
				(int)(n < 40 ? n : 40), f);
	memcpy(name, f, nlen);
	name[nlen] = '\0';
	seen->date |= !strcasecmp(name, "Date");
	seen->msgid |= !strcasecmp(name, "Message-ID");
	seen->unsub |= !strncasecmp(name, "List-Unsubscribe", 16);
	const char *v = colon + 1;
	size_t vlen = n - nlen - 1;
	int slots = memmem(v, vlen, "{{", 2) != NULL;
	if (!slots && !msg_has_8bit(v, vlen)) {
		msg_job_static(j, f, n);
		msg_job_static(j, "\r\n", 2);
		return 0;
	}
	struct vl_buf u;
	vl_buf_init(&u);
	unfold(v, vlen, &u);
	int rc = msg_job_header(j, name, u.p ? u.p : "", u.len,
				msg_hdr_is_addr(name) ? MSG_HDR_ADDR : MSG_HDR_TEXT, 0,
				"content", e);
	vl_buf_free(&u);
	return rc;
}

/* The header section s..s+n (CRLF line ends), field by field. */
static int headers(struct msg_job *j, const char *s, size_t n, struct seen *seen,
		   struct msg_err *e)
{
	const char *end = s + n, *f = s;
	size_t no = 1;

	if (n && is_wsp(s[0]))
		return msg_fail(e, "invalid_field", "content", "the first line starts with "
				"white space, which only continues a header field");
	while (f < end) {
		const char *l = f;
		for (;;) {      /* the field goes on while lines start with WSP */
			size_t len = line_len(l, end);
			if (len > MSG_LINE_MAX)
				return long_line(no, e);
			no++;
			l += len + (l + len < end ? 2 : 0);
			if (l >= end || !is_wsp(*l))
				break;
		}
		size_t flen = (size_t)(l - f);
		if (flen >= 2 && f[flen - 2] == '\r' && f[flen - 1] == '\n')
			flen -= 2;
		if (field(j, f, flen, seen, e) < 0)
			return -1;
		f = l;
	}
	return 0;
}

/* Static lines of the body must fit; values are checked per recipient. */
static int body_lines(const struct msg_job *j, const struct piece *p, size_t first,
		      struct msg_err *e)
{
	size_t col = 0, no = first;

	for (size_t i = 0; i < p->nsegs; i++) {
		const struct span *s = &p->segs[i].s;
		if (p->segs[i].var != SIZE_MAX)
			continue;
		const char *t = j->stat.p + s->off, *end = t + s->len;
		for (;;) {
			size_t len = line_len(t, end);
			if (col + len > MSG_LINE_MAX)
				return long_line(no, e);
			if (t + len == end) {
				col += len;
				break;
			}
			col = 0;
			no++;
			t += len + 2;
		}
	}
	return 0;
}

static int body(struct msg_job *j, const char *b, size_t n, size_t first,
		struct msg_err *e)
{
	struct piece *p = msg_job_piece(j, PC_RAW);

	j->eightbit |= msg_has_8bit(b, n);
	if (msg_job_tpl(j, b, n, MSG_ESC_NONE, NULL, "content", p, e) < 0 ||
	    body_lines(j, p, first, e) < 0)
		return -1;
	for (size_t i = 0; i < p->nsegs; i++)
		if (p->segs[i].var != SIZE_MAX)
			j->vars[p->segs[i].var].in_raw = true;
	if (p->nsegs == 1 && p->segs[0].var == SIZE_MAX) {
		/* no slot: the text sits in stat right after the blank line's
		 * static piece, which takes it in */
		struct span s = p->segs[0].s;
		free(p->segs);
		j->np--;
		j->p[j->np - 1].s.len += s.len;
		if (!s.nl || s.tail)
			msg_job_static(j, "\r\n", 2);
	} else if (p->nsegs == 0) {
		free(p->segs);
		j->np--;
	}
	return 0;
}

int msg_raw_compile(struct msg_job *j, const char *s, size_t n, const json_t *unsub,
		    struct msg_err *e)
{
	char err[200];
	struct msg_tpl *t = msg_tpl_compile(s, n, err, sizeof err);
	struct seen seen = {0};
	struct vl_buf m;

	if (!t)      /* checked here so offsets are the caller's */
		return msg_fail(e, "invalid_field", "content", "%s", err);
	msg_tpl_free(t);
	if (memchr(s, '\0', n) || !msg_utf8_valid(s, n))
		return msg_fail(e, "invalid_field", "content", "must be valid UTF-8 "
				"without NUL");
	vl_buf_init(&m);
	msg_crlf(s, n, &m);
	const char *p = m.p ? m.p : "", *blank = memmem(p, m.len, "\r\n\r\n", 4);
	size_t hlen = blank ? (size_t)(blank - p) + 2 : m.len, boff = blank ? hlen + 2 : m.len;
	if (m.len >= 2 && !memcmp(p, "\r\n", 2))
		hlen = 0, boff = 2;       /* no header section at all */
	int rc = headers(j, p, hlen, &seen, e);
	if (rc == 0 && !seen.date)
		msg_job_piece(j, PC_DATE);
	if (rc == 0 && !seen.msgid)
		msg_job_piece(j, PC_MSGID);
	if (rc == 0 && unsub && seen.unsub)
		rc = msg_fail(e, "invalid_field", "unsubscribe", "the content already has "
			      "List-Unsubscribe headers");
	if (rc == 0)
		rc = msg_unsub_compile(j, unsub, seen.unsub, e);
	if (rc == 0) {
		msg_job_static(j, "\r\n", 2);
		size_t first = 1;
		for (size_t i = 0; i < boff; i++)
			first += p[i] == '\n';
		rc = body(j, p + boff, m.len - boff, first, e);
	}
	vl_buf_free(&m);
	return rc;
}
