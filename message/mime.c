/*
 * Body encodings: UTF-8 checks, base64, quoted-printable, line endings,
 * HTML escaping. All append to a vl_buf.
 */
#include "message_int.h"

#include <string.h>

bool msg_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len = msg_utf8_len((unsigned char)c);
		if (len == 1 || i + len > n)
			return false;
		unsigned cp = c & (0xff >> (len + 1));
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF */
		static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += len;
	}
	return true;
}

size_t msg_utf8_len(unsigned char c)
{
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	if (c >= 0xf0 && c <= 0xf4)
		return 4;
	return 1;
}

bool msg_has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void msg_b64_encode(const void *src, size_t n, struct vl_buf *out)
{
	const unsigned char *p = src;
	size_t lines = (n + 56) / 57;
	char *o = vl_buf_reserve(out, (n + 2) / 3 * 4 + lines * 2), *start = o;

	for (size_t i = 0; i < n; i += 3) {
		if (i && i % 57 == 0) {
			*o++ = '\r';
			*o++ = '\n';
		}
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = b64[v >> 18];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	out->len += (size_t)(o - start);
}

static int b64_val(unsigned char c)
{
	const char *q = c ? strchr(b64, c) : NULL;
	return q ? (int)(q - b64) : -1;
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int msg_b64_decode(const char *src, size_t n, struct vl_buf *out)
{
	size_t mark = out->len, i = 0;
	int q[4], k = 0, pad = 0;

	for (; i < n; i++) {
		if (is_ws(src[i]))
			continue;
		if (src[i] == '=' && k >= 2) {
			q[k++] = 0;
			pad++;
		} else if (pad || (q[k] = b64_val((unsigned char)src[i])) < 0) {
			goto bad;      /* data after padding, or not base64 */
		} else {
			k++;
		}
		if (k < 4)
			continue;
		unsigned v = (unsigned)q[0] << 18 | (unsigned)q[1] << 12 |
			     (unsigned)q[2] << 6 | (unsigned)q[3];
		unsigned char b[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8),
				      (unsigned char)v};
		vl_buf_append(out, b, 3 - (size_t)pad);
		k = 0;
		if (pad)
			break;
	}
	for (i++; i < n; i++)      /* only white space may follow the padding */
		if (!is_ws(src[i]))
			goto bad;
	if (k == 0)
		return 0;
bad:
	out->len = mark;
	return -1;
}

/* Octets quoted-printable may leave as they are (RFC 2045 6.7 (2)); '='
 * never, so "=_" cannot occur. */
static bool qp_plain(unsigned char c)
{
	return c >= 33 && c <= 126 && c != '=';
}

void msg_qp_encode(const char *s, size_t n, size_t *col, struct vl_buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	/* at most 3 octets an input octet, and a soft break per 73 of them */
	char *o = vl_buf_reserve(out, 3 * n + n / 8 + 8), *start = o;
	size_t c = *col;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\r' || ch == '\n') {
			if (ch == '\r' && i + 1 < n && s[i + 1] == '\n')
				i++;
			*o++ = '\r';
			*o++ = '\n';
			c = 0;
			continue;
		}
		bool ws = ch == ' ' || ch == '\t';
		bool eol = i + 1 == n || s[i + 1] == '\r' || s[i + 1] == '\n';
		bool plain = qp_plain(ch) || (ws && !eol);
		if (c + (plain ? 1 : 3) > 75) {     /* room for a soft break's '=' */
			memcpy(o, "=\r\n", 3);
			o += 3;
			c = 0;
		}
		if (plain) {
			*o++ = (char)ch;
			c++;
		} else {
			*o++ = '=';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
			c += 3;
		}
	}
	out->len += (size_t)(o - start);
	*col = c;
}

void msg_crlf(const char *s, size_t n, struct vl_buf *out)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
			i++;
			continue;
		}
		if (s[i] != '\r' && s[i] != '\n')
			continue;
		vl_buf_append(out, s + start, i - start);
		vl_buf_append(out, "\r\n", 2);
		start = i + 1;
	}
	vl_buf_append(out, s + start, n - start);
}

void msg_html_escape(const char *v, size_t n, struct vl_buf *out)
{
	char *o = vl_buf_reserve(out, 6 * n), *start = o;

	for (size_t i = 0; i < n; i++) {
		const char *ent;
		switch (v[i]) {
		case '&': ent = "&amp;"; break;
		case '<': ent = "&lt;"; break;
		case '>': ent = "&gt;"; break;
		case '"': ent = "&quot;"; break;
		case '\'': ent = "&#39;"; break;
		default:
			*o++ = v[i];
			continue;
		}
		while (*ent)
			*o++ = *ent++;
	}
	out->len += (size_t)(o - start);
}
