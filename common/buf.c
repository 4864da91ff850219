/* Growable byte buffer (out-of-memory is fatal, as everywhere: vl_oom). */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vl_buf_init(struct vl_buf *b)
{
	b->p = NULL;
	b->len = b->cap = 0;
}

void vl_buf_free(struct vl_buf *b)
{
	free(b->p);
	vl_buf_init(b);
}

char *vl_buf_reserve(struct vl_buf *b, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		b->p = vl_realloc(b->p, cap);
		b->cap = cap;
	}
	return b->p + b->len;
}

void vl_buf_append(struct vl_buf *b, const void *data, size_t n)
{
	if (!n)
		return;
	memcpy(vl_buf_reserve(b, n), data, n);
	b->len += n;
}

void vl_buf_appends(struct vl_buf *b, const char *s)
{
	vl_buf_append(b, s, strlen(s));
}

void vl_buf_vprintf(struct vl_buf *b, const char *fmt, va_list ap)
{
	va_list again;
	char small[256];

	va_copy(again, ap);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	if (n >= 0 && (size_t)n < sizeof small) {
		vl_buf_append(b, small, (size_t)n);
	} else if (n >= 0) { /* too long for the stack: format in place */
		char *dst = vl_buf_reserve(b, (size_t)n + 1);
		vsnprintf(dst, (size_t)n + 1, fmt, again);
		b->len += (size_t)n;
	}
	va_end(again);
}

void vl_buf_printf(struct vl_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vl_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void vl_buf_consume(struct vl_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

void vl_buf_shrink(struct vl_buf *b, size_t keep)
{
	if (b->cap <= keep || b->len > keep)
		return;
	if (keep == 0) {
		vl_buf_free(b);
		return;
	}
	b->p = vl_realloc(b->p, keep);
	b->cap = keep;
}

/* Length of a valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	size_t n = (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
		 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (n == 0 || (n == 2 && p[0] < 0xc2) || (n == 4 && p[0] > 0xf4))
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) ||
	    (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
	    (n == 4 && p[0] == 0xf0 && p[1] < 0x90) ||
	    (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
		return 0; /* overlong, surrogate, or beyond U+10FFFF */
	return n;
}

size_t vl_json_put(char *dst, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	char *d = dst;

	if (!s) {
		memcpy(d, "null", 4);
		return 4;
	}
	*d++ = '"';
	while (*p) {
		const unsigned char *run = p;   /* printable ASCII goes in runs */
		while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
			p++;
		if (p > run) {
			memcpy(d, run, (size_t)(p - run));
			d += p - run;
			continue;
		}
		size_t n = utf8_len(p);
		if (n == 0) {
			memcpy(d, "\\ufffd", 6);
			d += 6;
			p++;
		} else if (n > 1) {
			memcpy(d, p, n);
			d += n;
			p += n;
		} else if (*p == '"' || *p == '\\') {
			*d++ = '\\';
			*d++ = (char)*p++;
		} else {                        /* a control character, DEL */
			memcpy(d, "\\u00", 4);
			d[4] = hex[*p >> 4];
			d[5] = hex[*p++ & 15];
			d += 6;
		}
	}
	*d++ = '"';
	return (size_t)(d - dst);
}

void vl_buf_json_string(struct vl_buf *b, const char *s)
{
	char *dst = vl_buf_reserve(b, s ? VL_JSON_PUT_MAX(strlen(s)) : 4);

	b->len += vl_json_put(dst, s);
}
