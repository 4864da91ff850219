/*
 * The fast path for NDJSON recipient lines: {"email", "name",
 * "substitutions": {k: string|number|boolean}} parsed straight into a
 * sched_rcpt, without building a jansson DOM (which costs most of the
 * intake time of a million-recipient job). It handles exactly the
 * well-formed lines; anything else -- a syntax error, an unknown field, a
 * wrong type, a duplicate key, NUL, invalid UTF-8 -- returns 0 so that
 * jansson parses the line again and names the error. Both paths must
 * therefore agree on every valid line; tests/unit/test_api_rcpt.c and the
 * fuzzer compare them.
 */
#include "api_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct cur {
	const char *p, *end;
	char *out;               /* unescaped strings go here */
	bool utf8;               /* a non-ASCII octet was copied */
};

static void ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' ||
				 *c->p == '\n'))
		c->p++;
}

static bool eat(struct cur *c, char ch)
{
	ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

static int hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char h = p[i];
		unsigned d = h >= '0' && h <= '9' ? (unsigned)(h - '0') :
			     h >= 'a' && h <= 'f' ? (unsigned)(h - 'a' + 10) :
			     h >= 'A' && h <= 'F' ? (unsigned)(h - 'A' + 10) : 16;
		if (d == 16)
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

static void put_utf8(struct cur *c, unsigned cp)
{
	if (cp < 0x80) {
		*c->out++ = (char)cp;
	} else if (cp < 0x800) {
		*c->out++ = (char)(0xc0 | cp >> 6);
		*c->out++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*c->out++ = (char)(0xe0 | cp >> 12);
		*c->out++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*c->out++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*c->out++ = (char)(0xf0 | cp >> 18);
		*c->out++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*c->out++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*c->out++ = (char)(0x80 | (cp & 0x3f));
	}
}

/* \uXXXX (and its low surrogate); no NUL, no lone surrogate. */
static int unicode_escape(struct cur *c)
{
	unsigned cp, lo;

	if (c->end - c->p < 5 || hex4(c->p + 1, &cp) < 0)
		return -1;
	c->p += 5;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return -1;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
		    hex4(c->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
			return -1;
		c->p += 6;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp == 0)
		return -1;
	put_utf8(c, cp);
	return 0;
}

static int escape(struct cur *c)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;

	if (++c->p >= c->end)
		return -1;
	if (*c->p == 'u')
		return unicode_escape(c);
	if (!(e = memchr(from, *c->p, 8)))
		return -1;
	*c->out++ = to[e - from];
	c->p++;
	return 0;
}

/* A string into the output area, NUL-terminated. */
static int string(struct cur *c, const char **s, size_t *n)
{
	if (!eat(c, '"'))
		return -1;
	char *start = c->out;
	bool utf8 = false;
	while (c->p < c->end && *c->p != '"') {
		unsigned char ch = (unsigned char)*c->p;
		if (ch < 0x20)
			return -1;
		if (ch == '\\') {
			if (escape(c) < 0)
				return -1;
			continue;
		}
		utf8 |= ch >= 0x80;
		*c->out++ = (char)ch;
		c->p++;
	}
	if (c->p >= c->end)
		return -1;
	c->p++;
	*n = (size_t)(c->out - start);
	*c->out++ = '\0';
	*s = start;
	if (utf8 && !api_utf8_valid(start, *n))
		return -1;
	return 0;
}

static int digits(struct cur *c)
{
	const char *s = c->p;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return c->p > s ? 0 : -1;
}

/* Integers pass as written (jansson would print them the same); reals,
 * whose text jansson rewrites, and integers past 64 bits go to jansson. */
static bool number_fits(const char *p, size_t n)
{
	char buf[32], *end;

	if (n >= sizeof buf || memchr(p, '.', n) || memchr(p, 'e', n) || memchr(p, 'E', n) ||
	    (n == 2 && p[0] == '-' && p[1] == '0'))
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	errno = 0;
	strtoll(buf, &end, 10);
	return errno == 0;
}

/* A number's literal text, or true/false, copied as the value. */
static int scalar(struct cur *c, const char **s, size_t *n)
{
	ws(c);
	if (c->p < c->end && *c->p == '"')
		return string(c, s, n);
	const char *st = c->p;
	if (c->end - c->p >= 4 && !memcmp(c->p, "true", 4))
		c->p += 4;
	else if (c->end - c->p >= 5 && !memcmp(c->p, "false", 5))
		c->p += 5;
	else {
		if (c->p < c->end && *c->p == '-')
			c->p++;
		if (c->p < c->end && *c->p == '0')
			c->p++;
		else if (digits(c) < 0)
			return -1;
		if (c->p < c->end && *c->p == '.' && (c->p++, digits(c) < 0))
			return -1;
		if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
			c->p++;
			if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
				c->p++;
			if (digits(c) < 0)
				return -1;
		}
	}
	*n = (size_t)(c->p - st);
	if (*st != 't' && *st != 'f' && !number_fits(st, *n))
		return -1;
	memcpy(c->out, st, *n);
	*s = c->out;
	c->out += *n;
	*c->out++ = '\0';
	return 0;
}

static int subs(struct cur *c, struct sched_rcpt *r)
{
	if (!eat(c, '{'))
		return -1;
	if (eat(c, '}'))
		return 0;
	do {
		size_t i = r->nsubs;
		if (i == SCHED_MAX_SUBS || string(c, &r->keys[i], &r->klens[i]) < 0 ||
		    !eat(c, ':') || scalar(c, &r->vals[i], &r->vlens[i]) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (r->klens[j] == r->klens[i] && !memcmp(r->keys[j], r->keys[i], r->klens[i]))
				return -1;
		r->nsubs++;
	} while (eat(c, ','));
	return eat(c, '}') ? 0 : -1;
}

static int member(struct cur *c, struct sched_rcpt *r, unsigned *seen)
{
	const char *k;
	size_t kn;

	if (string(c, &k, &kn) < 0 || !eat(c, ':'))
		return -1;
	if (!strcmp(k, "email") && !(*seen & 1)) {
		*seen |= 1;
		return string(c, &r->email, &r->email_len);
	}
	if (!strcmp(k, "name") && !(*seen & 2)) {
		*seen |= 2;
		return string(c, &r->name, &r->name_len);
	}
	if (!strcmp(k, "substitutions") && !(*seen & 4)) {
		*seen |= 4;
		return subs(c, r);
	}
	return -1;
}

bool api_rcpt_fast(const char *p, size_t n, struct vl_buf *scratch, struct sched_rcpt *r)
{
	struct cur c = { p, p + n, NULL, false };
	unsigned seen = 0;

	/* Unescaped output never outgrows the input, plus a NUL a string. */
	vl_buf_reset(scratch);
	c.out = vl_buf_reserve(scratch, 2 * n + 16);
	r->name = NULL;
	r->name_len = 0;
	r->nsubs = 0;
	if (!eat(&c, '{') || eat(&c, '}'))
		return false;
	do {
		if (member(&c, r, &seen) < 0)
			return false;
	} while (eat(&c, ','));
	if (!eat(&c, '}'))
		return false;
	ws(&c);
	return c.p == c.end && (seen & 1);
}

bool api_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + n;

	while (p < e) {
		unsigned c = *p, len, cp;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else
			return false;
		if ((size_t)(e - p) < len)
			return false;
		for (unsigned i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		p += len;
	}
	return true;
}
