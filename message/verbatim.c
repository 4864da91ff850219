/*
 * A verbatim message: octets taken whole from a submitter (SMTP
 * submission) who has already made it a finished message (Date,
 * Message-ID, no Bcc). Nothing is added or rewritten: the job is one
 * static piece, the same octets for every recipient (before DKIM, whose
 * fields go in front). Only the header is checked, for what delivery
 * relies on: CRLF lines that are fields or continuations, without NUL,
 * and exactly one From field (DKIM signs it and picks its key by it).
 * The body may hold any octets, 8-bit and "{{" included.
 */
#include "message_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Octets of the header section, each line with its CRLF; the body starts
 * after the blank line (or there is none: all header, ending in CRLF). */
static size_t header_len(const char *m, size_t n, size_t *body)
{
	const char *blank = memmem(m, n, "\r\n\r\n", 4);

	if (n >= 2 && m[0] == '\r' && m[1] == '\n') {
		*body = 2;
		return 0;
	}
	if (!blank) {
		*body = n;
		return n;
	}
	*body = (size_t)(blank - m) + 4;
	return (size_t)(blank - m) + 2;
}

static bool is_from(const char *f, size_t n)
{
	size_t k = 4;

	if (n < 5 || strncasecmp(f, "From", 4))
		return false;
	while (k < n && (f[k] == ' ' || f[k] == '\t'))
		k++;
	return k < n && f[k] == ':';
}

/* One header line [p, p + n) without its CRLF. */
static int check_line(const char *p, size_t n, size_t no, bool first, size_t *froms,
		      struct msg_err *e)
{
	size_t k = 0;

	if (memchr(p, '\r', n) || memchr(p, '\n', n) || memchr(p, '\0', n))
		return msg_fail(e, "invalid_field", "message", "header line %zu holds a bare CR, "
				"a bare LF or NUL", no);
	if (n > MSG_LINE_MAX)
		return msg_fail(e, "invalid_field", "message", "header line %zu is longer than %d "
				"octets", no, MSG_LINE_MAX);
	if (n && (p[0] == ' ' || p[0] == '\t')) {
		if (first)
			return msg_fail(e, "invalid_field", "message", "the first header line "
					"starts with white space");
		return 0;
	}
	while (k < n && p[k] > 32 && p[k] < 127 && p[k] != ':')
		k++;
	size_t name = k;
	while (k < n && (p[k] == ' ' || p[k] == '\t'))
		k++;
	if (name == 0 || k == n || p[k] != ':')
		return msg_fail(e, "invalid_field", "message", "header line %zu is not a field "
				"(name: value) nor its continuation", no);
	*froms += is_from(p, n);
	return 0;
}

int msg_verbatim_check(const char *msg, size_t len, size_t max_size, struct msg_err *e)
{
	size_t body, hlen = len ? header_len(msg, len, &body) : 0, froms = 0, no = 1;

	memset(e, 0, sizeof *e);
	if (len == 0)
		return msg_fail(e, "invalid_field", "message", "the message is empty");
	if (max_size && len > max_size)
		return msg_fail(e, "too_large", "message", "the message is %zu octets, over the "
				"limit of %zu", len, max_size);
	if (hlen < 2 || msg[hlen - 2] != '\r' || msg[hlen - 1] != '\n')
		return msg_fail(e, "invalid_field", "message", "the header does not end with CRLF "
				"(or there is none)");
	for (const char *p = msg, *end = msg + hlen; p < end; no++) {
		const char *crlf = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (check_line(p, (size_t)(crlf - p), no, p == msg, &froms, e) < 0)
			return -1;
		p = crlf + 2;
	}
	if (froms != 1)
		return msg_fail(e, "invalid_field", "message", froms ? "the header has more than "
				"one From field" : "the header has no From field");
	return 0;
}

struct msg_job *msg_job_compile_verbatim(const char *msg, size_t len,
					 const struct msg_job_opts *o, struct msg_err *e)
{
	size_t max = o ? o->max_size : 0, body;

	if (msg_verbatim_check(msg, len, max, e) < 0)
		return NULL;
	struct msg_job *j = vl_calloc(1, sizeof *j);
	size_t hlen = header_len(msg, len, &body);
	j->max_size = max;
	j->job_id = o && o->job_id ? vl_strdup(o->job_id) : NULL;
	j->hostname = o && o->hostname ? vl_strdup(o->hostname) : NULL;
	j->smtputf8 = msg_has_8bit(msg, hlen);
	j->eightbit = msg_has_8bit(msg + body, len - body);
	msg_job_static(j, msg, len);
	return j;
}

/* The domain of the (last) address in a From value: after its '@', up to
 * what cannot be in a domain (">", white space, a comment, a list's ','). */
static int value_domain(const char *v, size_t n, char *out, size_t outlen)
{
	const char *lt = memrchr(v, '<', n), *end = v + n;

	if (lt) {
		const char *gt = memchr(lt, '>', (size_t)(end - lt));
		v = lt + 1;
		end = gt ? gt : end;
	}
	const char *at = memrchr(v, '@', (size_t)(end - v));
	size_t len = 0;
	if (!at || outlen == 0)
		return -1;
	for (const char *p = at + 1; p < end && !strchr(" \t\r\n>,;()\"<", *p); p++) {
		if (len + 1 >= outlen)
			return -1;
		out[len++] = (char)(*p >= 'A' && *p <= 'Z' ? *p | 0x20 : *p);
	}
	while (len && out[len - 1] == '.')
		len--;
	out[len] = '\0';
	return len ? 0 : -1;
}

int msg_verbatim_from_domain(const char *msg, size_t len, char *out, size_t outlen)
{
	size_t body, hlen = header_len(msg, len, &body);
	const char *end = msg + hlen;

	for (const char *f = msg; f < end;) {
		const char *l = f;
		do {            /* the field goes on while lines start with WSP */
			const char *crlf = memmem(l, (size_t)(end - l), "\r\n", 2);
			l = crlf ? crlf + 2 : end;
		} while (l < end && (*l == ' ' || *l == '\t'));
		if (is_from(f, (size_t)(l - f))) {
			const char *colon = memchr(f, ':', (size_t)(l - f));
			return value_domain(colon + 1, (size_t)(l - colon - 1), out, outlen);
		}
		f = l;
	}
	return -1;
}
