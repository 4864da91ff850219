/*
 * The IMAP responses the poller reads (RFC 3501/9051), parsed without I/O:
 * framing (a line, and for each {N} at its end N octets of literal and the
 * line's continuation), then one response at a time: tagged status,
 * untagged status with its response code (UIDVALIDITY, TRYCREATE,
 * CAPABILITY), CAPABILITY, SEARCH and FETCH. Everything from the server
 * is untrusted: bounded lengths, UIDs within 1..2^32-1, malformed input an
 * error naming what is wrong.
 */
#include "imap.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- framing ---- */

/* The literal's length if the line [s, e) (without its line end) ends in
 * {N} or {N+}: 1 and *n; 0 if it does not; -1 on a malformed count. */
static int literal_at_end(const char *s, const char *e, uint64_t *n)
{
	if (e == s || e[-1] != '}')
		return 0;
	const char *q = e - 1;
	if (q > s && q[-1] == '+')
		q--;
	const char *d = q;
	while (d > s && isdigit((unsigned char)d[-1]))
		d--;
	if (d == s || d[-1] != '{')
		return 0;
	if (d == q || q - d > 10)
		return -1;
	uint64_t v = 0;
	for (const char *c = d; c < q; c++)
		v = v * 10 + (uint64_t)(*c - '0');
	*n = v;
	return 1;
}

long imap_frame(const char *buf, size_t len, size_t max_literal, char *err, size_t errlen)
{
	size_t pos = 0, line_bytes = 0;
	int literals = 0;

	for (;;) {
		const char *s = buf + pos;
		const char *nl = memchr(s, '\n', len - pos);
		if (!nl) {
			if (line_bytes + (len - pos) > IMAP_LINE_MAX)
				return vl_fail(err, errlen, "a response line longer than %d octets",
					       IMAP_LINE_MAX);
			return 0;
		}
		line_bytes += (size_t)(nl - s) + 1;
		if (line_bytes > IMAP_LINE_MAX)
			return vl_fail(err, errlen, "a response line longer than %d octets",
				       IMAP_LINE_MAX);
		const char *e = nl > s && nl[-1] == '\r' ? nl - 1 : nl;
		uint64_t n;
		int lit = literal_at_end(s, e, &n);
		if (lit < 0)
			return vl_fail(err, errlen, "a malformed literal length");
		pos = (size_t)(nl - buf) + 1;
		if (!lit)
			return (long)pos;
		if (++literals > IMAP_LITERALS_MAX)
			return vl_fail(err, errlen, "more than %d literals in one response",
				       IMAP_LITERALS_MAX);
		if (n > max_literal)
			return vl_fail(err, errlen, "a literal of %llu octets (at most %zu)",
				       (unsigned long long)n, max_literal);
		if (len - pos < n)
			return 0;
		pos += (size_t)n;
	}
}

/* ---- tokens ---- */

struct cur {
	const char *p, *e;
};

static bool at(const struct cur *c, char ch)
{
	return c->p < c->e && *c->p == ch;
}

static bool eat(struct cur *c, char ch)
{
	if (!at(c, ch))
		return false;
	c->p++;
	return true;
}

/* An atom's characters: RFC 3501's ATOM-CHAR less ']' (a response code's
 * end), and '\' too for flags. '[' is one: callers reading a FETCH item's
 * name stop at it themselves. */
static bool atom_ch(char ch, bool flag)
{
	unsigned char u = (unsigned char)ch;
	if (u <= 0x20 || u >= 0x7f)
		return false;
	if (strchr("(){%*\"]", ch))
		return false;
	return flag || ch != '\\';
}

/* An atom (or a flag "\Seen") into [*s, *s + *n). 0 if none there. */
static bool atom(struct cur *c, const char **s, size_t *n, bool flag)
{
	const char *b = c->p;
	while (c->p < c->e && atom_ch(*c->p, flag))
		c->p++;
	*s = b;
	*n = (size_t)(c->p - b);
	return *n > 0;
}

static bool word_is(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* A decimal number of at most 19 digits no larger than max. */
static int number(struct cur *c, uint64_t max, uint64_t *out)
{
	const char *b = c->p;
	uint64_t v = 0;

	while (c->p < c->e && isdigit((unsigned char)*c->p)) {
		if (c->p - b >= 19)
			return -1;
		v = v * 10 + (uint64_t)(*c->p++ - '0');
	}
	if (c->p == b || v > max)
		return -1;
	*out = v;
	return 0;
}

static int uid_num(struct cur *c, uint32_t *out)
{
	uint64_t v;
	if (number(c, UINT32_MAX, &v) < 0 || v == 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* A literal {N}CRLF and its N octets (framing has checked them). */
static int literal(struct cur *c, const char **s, size_t *n)
{
	uint64_t v;
	if (!eat(c, '{') || number(c, SIZE_MAX, &v) < 0)
		return -1;
	eat(c, '+');
	if (!eat(c, '}'))
		return -1;
	eat(c, '\r');
	if (!eat(c, '\n') || (uint64_t)(c->e - c->p) < v)
		return -1;
	*s = c->p;
	*n = (size_t)v;
	c->p += v;
	return 0;
}

/* A quoted string; escapes only skipped (raw bytes in [*s, *s + *n)),
 * *escaped set when it had any. */
static int quoted(struct cur *c, const char **s, size_t *n, bool *escaped)
{
	if (!eat(c, '"'))
		return -1;
	*s = c->p;
	*escaped = false;
	while (c->p < c->e && *c->p != '"') {
		if (*c->p == '\r' || *c->p == '\n')
			return -1;
		if (*c->p == '\\') {
			*escaped = true;
			if (++c->p == c->e)
				return -1;
		}
		c->p++;
	}
	*n = (size_t)(c->p - *s);
	return eat(c, '"') ? 0 : -1;
}

/* Skips one value of any shape: atom, number, NIL, quoted, literal, or a
 * parenthesised list of them (depth bounded). */
static int skip_value(struct cur *c, int depth)
{
	const char *s;
	size_t n;
	bool esc;

	if (depth > 16)
		return -1;
	if (at(c, '"'))
		return quoted(c, &s, &n, &esc);
	if (at(c, '{'))
		return literal(c, &s, &n);
	if (eat(c, '(')) {
		while (!at(c, ')')) {
			if (skip_value(c, depth + 1) < 0)
				return -1;
			if (!eat(c, ' ') && !at(c, ')'))
				return -1;
		}
		c->p++;
		return 0;
	}
	if (!atom(c, &s, &n, true))
		return -1;
	if (at(c, '[')) {        /* BODY[...]<...> as a name inside a list */
		while (c->p < c->e && *c->p != ']' && *c->p != '\n')
			c->p++;
		return eat(c, ']') ? 0 : -1;
	}
	return 0;
}

/* ---- responses ---- */

static unsigned caps_of(struct cur *c)
{
	unsigned caps = 0;
	const char *s;
	size_t n;

	while (eat(c, ' ') && atom(c, &s, &n, false)) {
		if (word_is(s, n, "MOVE"))
			caps |= IMAP_CAP_MOVE;
		else if (word_is(s, n, "UIDPLUS"))
			caps |= IMAP_CAP_UIDPLUS;
	}
	return caps;
}

/* "[CODE args]" after a status word. */
static int resp_code(struct cur *c, struct imap_resp *o)
{
	const char *s;
	size_t n;

	if (!atom(c, &s, &n, false) || n >= sizeof o->code)
		return -1;
	for (size_t i = 0; i < n; i++)
		o->code[i] = (char)toupper((unsigned char)s[i]);
	o->code[n] = '\0';
	if (word_is(s, n, "UIDVALIDITY") || word_is(s, n, "UIDNEXT")) {
		if (!eat(c, ' ') || uid_num(c, &o->code_num) < 0)
			return -1;
	} else if (word_is(s, n, "CAPABILITY")) {
		o->is_capability = true;
		o->caps = caps_of(c);
	}
	while (c->p < c->e && *c->p != ']' && *c->p != '\r' && *c->p != '\n')
		c->p++;
	return eat(c, ']') ? 0 : -1;
}

static enum imap_status status_word(const char *s, size_t n)
{
	static const struct { const char *w; enum imap_status s; } t[] = {
		{ "OK", IMAP_S_OK }, { "NO", IMAP_S_NO }, { "BAD", IMAP_S_BAD },
		{ "BYE", IMAP_S_BYE }, { "PREAUTH", IMAP_S_PREAUTH },
	};
	for (size_t i = 0; i < VL_ARRAY_LEN(t); i++)
		if (word_is(s, n, t[i].w))
			return t[i].s;
	return IMAP_S_NONE;
}

/* After the status word: " [code] text" or " text" or nothing. */
static int status_rest(struct cur *c, struct imap_resp *o)
{
	if (eat(c, ' ') && eat(c, '[') && resp_code(c, o) < 0)
		return -1;
	eat(c, ' ');
	const char *e = c->e;
	while (e > c->p && (e[-1] == '\n' || e[-1] == '\r'))
		e--;
	o->text = c->p;
	o->text_len = (size_t)(e - c->p);
	return 0;
}

static int untagged(struct cur *c, struct imap_resp *o, char *err, size_t errlen)
{
	const char *s;
	size_t n;

	o->kind = IMAP_R_UNTAGGED;
	if (isdigit((unsigned char)*c->p)) {
		uint64_t v;
		if (number(c, UINT32_MAX, &v) < 0 || !eat(c, ' ') || !atom(c, &s, &n, false))
			return vl_fail(err, errlen, "a malformed numbered response");
		o->is_fetch = word_is(s, n, "FETCH");
		return 0;
	}
	if (!atom(c, &s, &n, false))
		return vl_fail(err, errlen, "an untagged response without its name");
	if ((o->status = status_word(s, n)) != IMAP_S_NONE) {
		if (status_rest(c, o) < 0)
			return vl_fail(err, errlen, "a malformed response code");
		return 0;
	}
	if (word_is(s, n, "CAPABILITY")) {
		o->is_capability = true;
		o->caps = caps_of(c);
	}
	o->is_search = word_is(s, n, "SEARCH");
	return 0;
}

int imap_resp_parse(const char *r, size_t n, struct imap_resp *o, char *err, size_t errlen)
{
	struct cur c = { r, r + n };
	const char *s;
	size_t len;

	memset(o, 0, sizeof *o);
	if (n < 2 || r[n - 1] != '\n')
		return vl_fail(err, errlen, "a response without its line end");
	if (eat(&c, '+')) {
		o->kind = IMAP_R_CONT;
		return 0;
	}
	if (eat(&c, '*')) {
		if (!eat(&c, ' ') || c.p == c.e)
			return vl_fail(err, errlen, "a malformed untagged response");
		return untagged(&c, o, err, errlen);
	}
	if (!atom(&c, &s, &len, false) || len >= sizeof o->tag || !eat(&c, ' '))
		return vl_fail(err, errlen, "a malformed tag");
	memcpy(o->tag, s, len);
	o->tag[len] = '\0';
	o->kind = IMAP_R_TAGGED;
	if (!atom(&c, &s, &len, false) ||
	    ((o->status = status_word(s, len)) != IMAP_S_OK && o->status != IMAP_S_NO &&
	     o->status != IMAP_S_BAD))
		return vl_fail(err, errlen, "a tagged response without OK, NO or BAD");
	if (status_rest(&c, o) < 0)
		return vl_fail(err, errlen, "a malformed response code");
	return 0;
}

/* ---- SEARCH ---- */

/* Keeps the smallest max values in out (ascending, distinct). */
static void keep_smallest(uint32_t *out, size_t max, size_t *n, uint32_t v)
{
	size_t i = *n;
	if (i == max && (max == 0 || v >= out[max - 1]))
		return;
	if (i == max)
		i--;
	while (i > 0 && out[i - 1] > v)
		i--;
	if (i > 0 && out[i - 1] == v)
		return;
	size_t last = *n < max ? *n : max - 1;
	memmove(out + i + 1, out + i, (last - i) * sizeof *out);
	out[i] = v;
	if (*n < max)
		(*n)++;
}

int imap_parse_search(const char *r, size_t n, uint32_t after, uint32_t *out, size_t max,
		      size_t *nout, char *err, size_t errlen)
{
	struct cur c = { r, r + n };
	const char *s;
	size_t len;

	*nout = 0;
	if (!eat(&c, '*') || !eat(&c, ' ') || !atom(&c, &s, &len, false) ||
	    !word_is(s, len, "SEARCH"))
		return vl_fail(err, errlen, "not a SEARCH response");
	while (eat(&c, ' ')) {
		uint32_t v;
		if (at(&c, '\r') || at(&c, '\n'))
			break;
		if (at(&c, '(')) {       /* (MODSEQ n) of CONDSTORE: not ours */
			if (skip_value(&c, 0) < 0)
				return vl_fail(err, errlen, "a malformed SEARCH response");
			continue;
		}
		if (uid_num(&c, &v) < 0)
			return vl_fail(err, errlen, "a SEARCH result that is no UID (1 to 2^32-1)");
		if (v > after)
			keep_smallest(out, max, nout, v);
	}
	eat(&c, '\r');
	if (!eat(&c, '\n') || c.p != c.e)
		return vl_fail(err, errlen, "a malformed SEARCH response");
	return 0;
}

/* ---- FETCH ---- */

static int flags_list(struct cur *c, bool *seen)
{
	const char *s;
	size_t n;

	if (!eat(c, '('))
		return -1;
	while (!eat(c, ')')) {
		if (c->p >= c->e || (!atom(c, &s, &n, true) && !(eat(c, '\\') && eat(c, '*'))))
			return -1;
		if (word_is(s, n, "\\Seen"))
			*seen = true;
		if (!eat(c, ' ') && !at(c, ')'))
			return -1;
	}
	return 0;
}

/* nstring: NIL, a quoted string without escapes, or a literal. */
static int nstring(struct cur *c, struct imap_fetch *o)
{
	const char *s;
	size_t n;
	bool esc;

	if (at(c, '{')) {
		if (literal(c, &s, &n) < 0)
			return -1;
	} else if (at(c, '"')) {
		if (quoted(c, &s, &n, &esc) < 0 || esc)
			return -1;
	} else {
		if (!atom(c, &s, &n, false) || !word_is(s, n, "NIL"))
			return -1;
		return 0;
	}
	o->has_body = true;
	o->body = s;
	o->body_len = n;
	return 0;
}

/* One "NAME value" of the FETCH list. */
static int fetch_att(struct cur *c, struct imap_fetch *o)
{
	const char *s;
	size_t n;
	uint64_t v;

	s = c->p;                /* the name: an atom up to a '[' */
	while (c->p < c->e && atom_ch(*c->p, false) && *c->p != '[')
		c->p++;
	n = (size_t)(c->p - s);
	if (!n)
		return -1;
	if (at(c, '[')) {
		const char *b = c->p;
		while (c->p < c->e && *c->p != ']' && *c->p != '\n')
			c->p++;
		if (!eat(c, ']'))
			return -1;
		bool whole = word_is(s, n, "BODY") && c->p - b == 2;
		if (!eat(c, ' '))
			return -1;
		return whole ? nstring(c, o) : skip_value(c, 0);
	}
	if (!eat(c, ' '))
		return -1;
	if (word_is(s, n, "UID"))
		return uid_num(c, &o->uid);
	if (word_is(s, n, "RFC822.SIZE")) {
		if (number(c, UINT64_MAX / 2, &v) < 0)
			return -1;
		o->has_size = true;
		o->size = v;
		return 0;
	}
	if (word_is(s, n, "FLAGS"))
		return flags_list(c, &o->seen);
	return skip_value(c, 0);
}

int imap_parse_fetch(const char *r, size_t n, struct imap_fetch *o, char *err, size_t errlen)
{
	struct cur c = { r, r + n };
	const char *s;
	size_t len;
	uint64_t seq;

	memset(o, 0, sizeof *o);
	if (!eat(&c, '*') || !eat(&c, ' ') || number(&c, UINT32_MAX, &seq) < 0 || seq == 0 ||
	    !eat(&c, ' ') || !atom(&c, &s, &len, false) || !word_is(s, len, "FETCH") ||
	    !eat(&c, ' ') || !eat(&c, '('))
		return vl_fail(err, errlen, "not a FETCH response");
	o->seq = (uint32_t)seq;
	while (!eat(&c, ')')) {
		if (fetch_att(&c, o) < 0)
			return vl_fail(err, errlen, "a malformed FETCH item");
		if (!eat(&c, ' ') && !at(&c, ')'))
			return vl_fail(err, errlen, "a malformed FETCH list");
	}
	eat(&c, '\r');
	if (!eat(&c, '\n') || c.p != c.e)
		return vl_fail(err, errlen, "text after the FETCH list");
	return 0;
}

/* ---- the mailbox URL ---- */

static int hexval(char ch)
{
	if (isdigit((unsigned char)ch))
		return ch - '0';
	ch = (char)tolower((unsigned char)ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static int decode_folder(const char *s, char *out, size_t outlen, char *err, size_t errlen)
{
	size_t o = 0;

	for (; *s; s++) {
		int ch = (unsigned char)*s;
		if (ch == '%') {
			int h = hexval(s[1]), l = h < 0 ? -1 : hexval(s[2]);
			if (l < 0)
				return vl_fail(err, errlen, "a bad %%-escape in the folder");
			ch = h * 16 + l;
			s += 2;
		}
		if (ch == ';' || ch == '?' || ch == '#')
			return vl_fail(err, errlen, "URL parameters are not supported");
		if (ch < 0x20 || ch > 0x7e || strchr("\"\\*%", ch))
			return vl_fail(err, errlen, "the folder holds a character that is "
				       "not allowed (printable ASCII or spaces, no quotes, '\\', '*', '%%')");
		if (o + 1 >= outlen || o >= 255)
			return vl_fail(err, errlen, "the folder is longer than 255 octets");
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return 0;
}

int imap_url_split(const char *url, char *base, size_t baselen, char *folder,
		   size_t folderlen, bool *implicit_tls, char *err, size_t errlen)
{
	const char *rest;

	if (!strncasecmp(url, "imaps://", 8)) {
		*implicit_tls = true;
		rest = url + 8;
	} else if (!strncasecmp(url, "imap://", 7)) {
		*implicit_tls = false;
		rest = url + 7;
	} else {
		return vl_fail(err, errlen, "expected imaps://HOST[:PORT]/FOLDER or "
			       "imap://HOST[:PORT]/FOLDER (STARTTLS)");
	}
	size_t hl = strcspn(rest, "/");
	if (hl == 0)
		return vl_fail(err, errlen, "no host in the URL");
	if (memchr(rest, '@', hl))
		return vl_fail(err, errlen, "no user in the URL: use user and password");
	for (size_t i = 0; i < hl; i++)
		if (!isalnum((unsigned char)rest[i]) && !strchr(".-:[]_", rest[i]))
			return vl_fail(err, errlen, "a bad host in the URL");
	if ((size_t)(rest - url) + hl + 2 > baselen)
		return vl_fail(err, errlen, "the URL is too long");
	snprintf(base, baselen, "%.*s/", (int)((size_t)(rest - url) + hl), url);
	const char *path = rest[hl] == '/' ? rest + hl + 1 : rest + hl;
	if (!*path)
		path = "INBOX";
	return decode_folder(path, folder, folderlen, err, errlen);
}

int imap_check_config(const struct cfg *c, char *err, size_t errlen)
{
	char base[512], folder[256], e[256];
	bool implicit;

	for (size_t i = 0; i < c->feedback.nmailboxes; i++)
		if (imap_url_split(c->feedback.mailboxes[i].url, base, sizeof base, folder,
				   sizeof folder, &implicit, e, sizeof e) < 0)
			return vl_fail(err, errlen, "feedback.mailboxes[%zu].url: %s", i, e);
	return 0;
}
