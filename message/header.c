/*
 * Header fields: folding (RFC 5322 2.2.3), RFC 2047 encoded words for
 * what is not printable ASCII, RFC 2231 parameters, dates. A value is cut
 * into words at white space (and, in address lists, around quoted strings,
 * <addresses> and commas); words that need it are encoded, a run of them
 * together with the white space between (decoders drop white space
 * between encoded words); lines are folded before white space, which
 * unfolding gives back exactly.
 */
#include "message_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hw {
	struct vl_buf *out;
	size_t col;          /* octets on the current line */
	int words;           /* words on it after the field name */
};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Put sep and word, folding before sep when the line would grow past 78.
 * A word without sep is glued to the one before: folded (with a space,
 * harmless between tokens of an address list) only to stay under 998. */
static void hw_put(struct hw *h, const char *sep, size_t seplen, const char *w,
		   size_t wlen)
{
	if (h->words && (seplen ? h->col + seplen + wlen > MSG_LINE_WANT
				: h->col + wlen > MSG_WORD_MAX)) {
		vl_buf_append(h->out, "\r\n", 2);
		h->col = 0;
		if (!seplen)
			sep = " ", seplen = 1;
	}
	vl_buf_append(h->out, sep, seplen);
	vl_buf_append(h->out, w, wlen);
	h->col += seplen + wlen;
	h->words++;
}

/* ---- RFC 2047 ---- */

/* Q may leave these as they are even inside a phrase (RFC 2047 5 (3)). */
static bool q_plain(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!*+-/", c);
}

static size_t q_len(const unsigned char *t, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += q_plain(t[i]) || t[i] == ' ' ? 1 : 3;
	return len;
}

static void q_put(struct vl_buf *out, const unsigned char *t, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = vl_buf_reserve(out, 3 * n), *start = o;

	for (size_t i = 0; i < n; i++) {
		if (q_plain(t[i])) {
			*o++ = (char)t[i];
		} else if (t[i] == ' ') {
			*o++ = '_';
		} else {
			*o++ = '=';
			*o++ = hex[t[i] >> 4];
			*o++ = hex[t[i] & 15];
		}
	}
	out->len += (size_t)(o - start);
}

#define EW_OVERHEAD 12      /* "=?utf-8?Q?" "?=" */
#define EW_MAX 75

/* Where to end an encoded word that would hold t[i..j): after the last
 * space of its second half if there is one. Decoders drop the white space
 * between encoded words, but some (Python's address parser) put a space
 * there in a phrase; cut where the text has one, they agree more. */
static size_t split_at_space(const unsigned char *t, size_t i, size_t j, size_t n)
{
	if (j == n)
		return j;
	for (size_t k = j; k > i + (j - i) / 2; k--)
		if (t[k - 1] == ' ')
			return k;
	return j;
}

/* Emit t as encoded words, the first after sep, each holding whole
 * characters and fitting the room left on its line. */
static void ew_run(struct hw *h, const char *sep, size_t seplen,
		   const unsigned char *t, size_t n)
{
	bool b = (n + 2) / 3 * 4 < q_len(t, n);
	size_t i = 0;

	while (i < n) {
		if (h->words && h->col + seplen + EW_OVERHEAD + 12 > MSG_LINE_WANT) {
			vl_buf_append(h->out, "\r\n", 2);
			h->col = 0;
		}
		size_t used = h->col + seplen;
		size_t room = used < MSG_LINE_WANT ? MSG_LINE_WANT - used : 0;
		size_t cap = room > EW_MAX ? EW_MAX - EW_OVERHEAD :
			     room > EW_OVERHEAD ? room - EW_OVERHEAD : 0;
		size_t j = i, qlen = 0;
		while (j < n) {
			size_t c = msg_utf8_len(t[j]);
			if (j + c > n)
				c = n - j;
			size_t elen = b ? (j + c - i + 2) / 3 * 4 : qlen + q_len(t + j, c);
			if (elen > cap && j > i)
				break;
			qlen = elen;
			j += c;
		}
		j = split_at_space(t, i, j, n);
		size_t mark = h->out->len;
		vl_buf_append(h->out, sep, seplen);
		vl_buf_appends(h->out, b ? "=?utf-8?B?" : "=?utf-8?Q?");
		if (b)
			msg_b64_encode(t + i, j - i, h->out);
		else
			q_put(h->out, t + i, j - i);
		vl_buf_append(h->out, "?=", 2);
		h->col += h->out->len - mark;
		h->words++;
		sep = " ";
		seplen = 1;
		i = j;
	}
}

/* ---- words ---- */

enum tok { T_WORD, T_QUOTED, T_ANGLE, T_COMMA };

struct word {
	const char *sep, *w;
	size_t seplen, wlen;
	enum tok t;
	bool enc;
};

/* An address (or <address>, or a comma) in an address list: not encoded,
 * unless too long for any line (no address is). */
static bool is_addr(const struct word *w, enum msg_hdr_kind k)
{
	if (w->wlen > MSG_WORD_MAX)
		return false;
	return w->t == T_ANGLE || w->t == T_COMMA ||
	       (k == MSG_HDR_ADDR && w->t == T_WORD && memchr(w->w, '@', w->wlen));
}

/* Holds "=?charset?Q|B?text?=", which a reader would decode: the text
 * must then go encoded itself to come back as written. */
static bool looks_encoded(const char *s, size_t n)
{
	for (const char *p = memmem(s, n, "=?", 2); p; ) {
		const char *end = s + n, *q = p + 2;
		while (q < end && *q != '?' && *q != ' ')
			q++;
		if (q > p + 2 && q + 2 < end && q[0] == '?' && strchr("QqBb", q[1]) && q[1] &&
		    q[2] == '?' && memmem(q + 3, (size_t)(end - q - 3), "?=", 2))
			return true;
		p = memmem(p + 2, (size_t)(end - p - 2), "=?", 2);
	}
	return false;
}

static bool needs_enc(const struct word *w, enum msg_hdr_kind k, unsigned flags)
{
	if (is_addr(w, k))
		return false;
	if (w->wlen > MSG_WORD_MAX || ((flags & MSG_HDR_EQ) && looks_encoded(w->w, w->wlen)))
		return true;
	for (size_t i = 0; i < w->wlen; i++)
		if ((unsigned char)w->w[i] >= 0x7f || (unsigned char)w->w[i] < 0x20)
			return true;
	return false;
}

/* The next word of v from *pos; false at the end. */
static bool next_word(const char *v, size_t n, size_t *pos, enum msg_hdr_kind k,
		      struct word *w)
{
	size_t i = *pos;

	w->sep = v + i;
	while (i < n && is_wsp(v[i]))
		i++;
	w->seplen = (size_t)(v + i - w->sep);
	if (i == n)
		return false;
	w->w = v + i;
	w->t = T_WORD;
	if (k == MSG_HDR_ADDR && (v[i] == '"' || v[i] == '<' || v[i] == ',')) {
		char close = v[i] == '"' ? '"' : v[i] == '<' ? '>' : 0;
		w->t = v[i] == '"' ? T_QUOTED : v[i] == '<' ? T_ANGLE : T_COMMA;
		for (i++; close && i < n && v[i] != close; i++)
			if (v[i] == '\\' && close == '"' && i + 1 < n)
				i++;
		if (close && i < n)
			i++;
	} else {
		while (i < n && !is_wsp(v[i]) &&
		       !(k == MSG_HDR_ADDR && strchr("\"<,", v[i])))
			i++;
	}
	w->wlen = (size_t)(v + i - w->w);
	*pos = i;
	return true;
}

/* The run s..s+n with quoted strings unquoted, into t; its length. */
static size_t unquote(const char *s, size_t n, char *t)
{
	size_t len = 0;
	bool q = false;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"')
			q = !q;
		else if (s[i] == '\\' && q && i + 1 < n)
			t[len++] = s[++i];
		else
			t[len++] = s[i];
	}
	return len;
}

/* A run of encoded words; in an address list quoted strings are unquoted
 * first (text never needs it: the run is the value as it stands). */
static void put_run(struct hw *h, const struct word *first, const struct word *last,
		    enum msg_hdr_kind k)
{
	const char *sep = first->seplen && h->words ? first->sep : " ";
	size_t seplen = first->seplen && h->words ? first->seplen : 1;
	const char *s = first->w;
	size_t n = (size_t)(last->w + last->wlen - s);

	if (k == MSG_HDR_TEXT) {
		ew_run(h, sep, seplen, (const unsigned char *)s, n);
		return;
	}
	char small[512], *t = n <= sizeof small ? small : vl_malloc(n);
	if (!t)
		abort();
	n = unquote(s, n, t);
	ew_run(h, sep, seplen, (const unsigned char *)t, n);
	if (t != small)
		free(t);
}

/* Long white space would make long lines: the words around it are
 * encoded so it lands inside encoded words; next to an address it
 * shrinks to one space (the same to an address list's grammar). */
#define SEP_MAX 64

void msg_hdr_write(struct vl_buf *out, const char *name, const char *v, size_t n,
		   enum msg_hdr_kind k, unsigned flags, bool *raw8)
{
	struct hw h = {out, strlen(name) + 1, 0};
	struct word w[2], first = {0};
	size_t pos = 0;
	bool have = next_word(v, n, &pos, k, &w[0]), in_run = false;

	vl_buf_appends(out, name);
	vl_buf_append(out, ":", 1);
	if (have)
		w[0].enc = needs_enc(&w[0], k, flags);
	while (have) {
		bool more = next_word(v, n, &pos, k, &w[1]);
		if (more) {
			w[1].enc = needs_enc(&w[1], k, flags);
			if (w[1].seplen > SEP_MAX && !is_addr(&w[0], k) && !is_addr(&w[1], k))
				w[0].enc = w[1].enc = true;
		}
		if (w[0].enc && !in_run)
			first = w[0], in_run = true;
		if (in_run && !(more && w[1].enc)) {
			put_run(&h, &first, &w[0], k);
			in_run = false;
		} else if (!in_run) {
			bool std = !h.words || w[0].seplen > SEP_MAX;
			hw_put(&h, std ? " " : w[0].sep, std ? 1 : w[0].seplen, w[0].w, w[0].wlen);
			if (msg_has_8bit(w[0].w, w[0].wlen))
				*raw8 = true;
		}
		w[0] = w[1];
		have = more;
	}
	vl_buf_append(out, "\r\n", 2);
}

/* ---- mailboxes, parameters, dates ---- */

static bool atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~", c);
}

/* A display name that can go as plain atoms: atext words, single spaces. */
static bool phrase_plain(const char *s)
{
	if (!*s || *s == ' ')
		return false;
	for (; *s; s++)
		if (!atext((unsigned char)*s) && !(*s == ' ' && s[1] && s[1] != ' '))
			return false;
	return true;
}

void msg_hdr_mailbox(struct vl_buf *out, const char *name, const char *email)
{
	if (!name || !*name) {
		vl_buf_appends(out, email);
		return;
	}
	if (phrase_plain(name)) {
		vl_buf_appends(out, name);
	} else {
		vl_buf_append(out, "\"", 1);
		for (const char *s = name; *s; s++) {
			if (*s == '"' || *s == '\\')
				vl_buf_append(out, "\\", 1);
			vl_buf_append(out, s, 1);
		}
		vl_buf_append(out, "\"", 1);
	}
	vl_buf_append(out, " <", 2);   /* per recipient: no printf */
	vl_buf_appends(out, email);
	vl_buf_append(out, ">", 1);
}

/* RFC 2231 attribute-char, kept as is (the rest percent-encoded). */
static bool attr_plain(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!#$&+-.^_`|~", c);
}

static bool param_quotable(const char *v, size_t n)
{
	if (n > 60)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
			return false;
	return true;
}

/* RFC 2231 pieces hold at most 50 encoded octets and whole characters
 * (some decoders take each piece's octets as text on their own). */
#define PARAM_PIECE 50

static size_t pct_len(const char *v, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += attr_plain((unsigned char)v[i]) ? 1 : 3;
	return len;
}

static void pct_put(struct vl_buf *out, const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (attr_plain((unsigned char)v[i]))
			vl_buf_append(out, &v[i], 1);
		else
			vl_buf_printf(out, "%%%02X", (unsigned char)v[i]);
	}
}

void msg_hdr_param(struct vl_buf *out, const char *name, const char *v, size_t n)
{
	if (param_quotable(v, n)) {
		vl_buf_printf(out, ";\r\n %s=\"", name);
		for (size_t i = 0; i < n; i++) {
			if (v[i] == '"' || v[i] == '\\')
				vl_buf_append(out, "\\", 1);
			vl_buf_append(out, &v[i], 1);
		}
		vl_buf_append(out, "\"", 1);
		return;
	}
	bool one = pct_len(v, n) <= PARAM_PIECE;
	for (size_t i = 0, k = 0; i < n || k == 0; k++) {
		if (one)
			vl_buf_printf(out, ";\r\n %s*=utf-8''", name);
		else
			vl_buf_printf(out, ";\r\n %s*%zu*=%s", name, k, k ? "" : "utf-8''");
		for (size_t used = 0; i < n;) {
			size_t c = msg_utf8_len((unsigned char)v[i]);
			c = i + c > n ? n - i : c;
			size_t len = pct_len(v + i, c);
			if (used && used + len > PARAM_PIECE)
				break;
			pct_put(out, v + i, c);
			used += len;
			i += c;
		}
	}
}

static char *two(char *o, int v)
{
	*o++ = (char)('0' + v / 10 % 10);
	*o++ = (char)('0' + v % 10);
	return o;
}

/* By hand, not strftime: locale-proof and cheap per recipient. */
void msg_hdr_date(struct vl_buf *out, time_t t)
{
	static const char days[] = "ThuFriSatSunMonTueWed";   /* 1970-01-01 was a Thursday */
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	long long day = (long long)t / 86400, sec = (long long)t % 86400;
	char *o = vl_buf_reserve(out, 32), *start = o;
	int year, mon, mday;

	if (sec < 0) {
		sec += 86400;
		day--;
	}
	vl_civil(day, &year, &mon, &mday);
	memcpy(o, days + 3 * (((day % 7) + 7) % 7), 3);
	memcpy(o + 3, ", ", 2);
	o = two(o + 5, mday);
	*o++ = ' ';
	memcpy(o, months + 3 * (mon - 1), 3);
	o[3] = ' ';
	o = two(two(o + 4, year / 100), year % 100);
	*o++ = ' ';
	o = two(o, (int)(sec / 3600));
	*o++ = ':';
	o = two(o, (int)(sec % 3600 / 60));
	*o++ = ':';
	o = two(o, (int)(sec % 60));
	memcpy(o, " +0000", 6);
	out->len += (size_t)(o + 6 - start);
}

bool msg_hdr_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 76)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 33 || s[i] > 126 || s[i] == ':')
			return false;
	return true;
}

bool msg_hdr_is_addr(const char *name)
{
	static const char *const names[] = {
		"From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Resent-From",
		"Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Bcc", NULL};

	for (size_t i = 0; names[i]; i++)
		if (!strcasecmp(name, names[i]))
			return true;
	return false;
}
