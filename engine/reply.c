/*
 * SMTP reply parser (RFC 5321 4.2, RFC 3463 enhanced codes). Bytes from a
 * peer in, complete replies out. Never trusts the peer: a line over
 * ENG_REPLY_LINE_MAX octets, a missing or inconsistent code, or more than
 * ENG_REPLY_MAX_LINES lines is an error, and the session treats it like a
 * broken connection (the recipients are deferred).
 */
#include "engine_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void eng_reply_parser_init(struct eng_reply_parser *p)
{
	memset(p, 0, sizeof *p);
}

void eng_reply_parser_free(struct eng_reply_parser *p)
{
	free(p->line);
	free(p->cur);
	eng_reply_parser_init(p);
}

/* An empty reply, without clearing its 1 KB of text. */
static void reply_clear(struct eng_reply *r)
{
	r->code = 0;
	r->enhanced[0] = '\0';
	r->text[0] = '\0';
	r->text_len = 0;
	r->lines = 0;
}

/* "X.Y.Z" at s with X the reply's class; returns its length or 0. */
static size_t enhanced_len(const char *s, size_t n, int klass)
{
	size_t i = 0;

	if (n < 5 || s[0] != '0' + klass || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < n && isdigit((unsigned char)s[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
		if (part == 0) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && s[i] != ' ')
		return 0;
	return i;
}

static void text_append(struct eng_reply *r, const char *s, size_t n)
{
	size_t room = sizeof r->text - 1 - r->text_len;

	if (r->text_len && room) {
		r->text[r->text_len++] = '\n';
		room--;
	}
	if (n > room)
		n = room; /* long multi-line replies are cut, never overflow */
	memcpy(r->text + r->text_len, s, n);
	r->text_len += n;
	r->text[r->text_len] = '\0';
}

/* One complete line (without CRLF): 0 more lines follow, 1 done, -1 bad. */
static int parse_line(struct eng_reply *r, const char *l, size_t n)
{
	if (n < 3 || !isdigit((unsigned char)l[0]) || !isdigit((unsigned char)l[1]) ||
	    !isdigit((unsigned char)l[2]) || l[0] < '2' || l[0] > '5' ||
	    (n > 3 && l[3] != ' ' && l[3] != '-'))
		return -1;
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (r->lines == 0)
		r->code = code;
	else if (code != r->code)
		return -1;
	if (++r->lines > ENG_REPLY_MAX_LINES)
		return -1;
	const char *t = n > 4 ? l + 4 : "";
	size_t tn = n > 4 ? n - 4 : 0;
	size_t el = enhanced_len(t, tn, code / 100);
	if (el) {
		if (r->lines == 1) {
			memcpy(r->enhanced, t, el);
			r->enhanced[el] = '\0';
		}
		t += el;
		tn -= el;
		while (tn && *t == ' ')
			t++, tn--;
	}
	text_append(r, t, tn);
	return n > 3 && l[3] == '-' ? 0 : 1;
}

/* The rest of a line begun in an earlier input (n octets at in, the LF
 * not included): the whole line, in p->line. false: too long. */
static bool line_join(struct eng_reply_parser *p, const char *in, size_t n)
{
	if (p->len + n > ENG_REPLY_LINE_MAX + 1) /* + CR */
		return false;
	if (!p->line)
		p->line = vl_malloc(ENG_REPLY_LINE_MAX + 2);
	memcpy(p->line + p->len, in, n);
	p->len += n;
	return true;
}

/* Lines are parsed where they are; only a line cut by the end of the
 * input is copied (into p->line), and only a reply cut between lines is
 * kept (p->cur) until the next input. */
int eng_reply_feed(struct eng_reply_parser *p, const char *in, size_t len,
		   size_t *used, struct eng_reply *out)
{
	size_t i = 0;

	if (p->cur) {
		*out = *p->cur;
		free(p->cur);
		p->cur = NULL;
	} else {
		reply_clear(out);
	}
	while (i < len) {
		const char *nl = memchr(in + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (in + i)) : len - i;
		const char *l = in + i;
		if (!nl || p->len) {
			if (!line_join(p, in + i, n)) {
				*used = i;
				return -1;
			}
			l = p->line;
			n = p->len;
		} else if (n > ENG_REPLY_LINE_MAX + 1) {
			*used = i;
			return -1;
		}
		i = nl ? (size_t)(nl - in) + 1 : len;
		if (!nl)
			break;
		if (n && l[n - 1] == '\r')
			n--;
		int rc = parse_line(out, l, n);
		if (p->line) {               /* a line cut in two: rare */
			free(p->line);
			p->line = NULL;
			p->len = 0;
		}
		if (rc != 0) {
			*used = i;
			return rc;
		}
	}
	*used = i;
	if (out->lines) {                    /* the reply goes on in the next input */
		p->cur = vl_malloc(sizeof *p->cur);
		*p->cur = *out;
	}
	return 0;
}
