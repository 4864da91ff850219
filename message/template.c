/*
 * Templates: "{{ name }}" substitution, compiled once into segments.
 * Rendering walks the segment list: static text is one memcpy, a slot is
 * its value, escaped for the context. No parsing per recipient.
 */
#include "message_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seg {
	size_t off, len;      /* static text in src, when slot == SIZE_MAX */
	size_t slot;
};

struct msg_tpl {
	char *src;            /* a copy: segments point into it */
	struct seg *segs;
	size_t nsegs;
	char **names;         /* per slot */
	size_t nslots;
};

static bool name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static void add_seg(struct msg_tpl *t, size_t *cap, struct seg s)
{
	if (t->nsegs == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		t->segs = vl_realloc(t->segs, *cap * sizeof *t->segs);
	}
	t->segs[t->nsegs++] = s;
}

static void add_slot(struct msg_tpl *t, size_t *cap, const char *name, size_t n)
{
	if (t->nslots == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		t->names = vl_realloc(t->names, *cap * sizeof *t->names);
	}
	t->names[t->nslots++] = vl_strndup(name, n);
}

/* Parse "{{ name }}" at src+i (which starts with "{{"): the name's start
 * and length, and the offset after "}}"; -1 if malformed. */
static long parse_slot(const char *src, size_t len, size_t i, size_t *name,
		       size_t *nlen)
{
	size_t j = i + 2;

	while (j < len && src[j] == ' ')
		j++;
	*name = j;
	while (j < len && name_char(src[j]))
		j++;
	*nlen = j - *name;
	while (j < len && src[j] == ' ')
		j++;
	if (*nlen == 0 || *nlen > MSG_VAR_MAX || j + 1 >= len || src[j] != '}' ||
	    src[j + 1] != '}')
		return -1;
	return (long)(j + 2);
}

struct msg_tpl *msg_tpl_compile(const char *src, size_t len, char *err,
				size_t errlen)
{
	struct msg_tpl *t = vl_calloc(1, sizeof *t);
	size_t segcap = 0, slotcap = 0, start = 0, i = 0;

	t->src = vl_malloc(len + 1);
	memcpy(t->src, src, len);
	t->src[len] = '\0';
	while (i + 1 < len) {
		const char *open = memchr(src + i, '{', len - i - 1);
		if (!open)
			break;
		i = (size_t)(open - src);
		if (src[i + 1] != '{') {
			i++;
			continue;
		}
		size_t name, nlen;
		long end = parse_slot(src, len, i, &name, &nlen);
		if (end < 0) {
			snprintf(err, errlen, "malformed substitution at offset %zu: expected "
				 "{{ name }} with a name of letters, digits, '_', '-' or '.'", i);
			msg_tpl_free(t);
			return NULL;
		}
		if (i > start)
			add_seg(t, &segcap, (struct seg){start, i - start, SIZE_MAX});
		add_seg(t, &segcap, (struct seg){0, 0, t->nslots});
		add_slot(t, &slotcap, src + name, nlen);
		start = i = (size_t)end;
	}
	if (len > start)
		add_seg(t, &segcap, (struct seg){start, len - start, SIZE_MAX});
	return t;
}

void msg_tpl_free(struct msg_tpl *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nslots; i++)
		free(t->names[i]);
	free(t->names);
	free(t->segs);
	free(t->src);
	free(t);
}

size_t msg_tpl_nslots(const struct msg_tpl *t)
{
	return t->nslots;
}

const char *msg_tpl_slot(const struct msg_tpl *t, size_t i)
{
	return i < t->nslots ? t->names[i] : NULL;
}

bool msg_tpl_is_static(const struct msg_tpl *t)
{
	return t->nslots == 0;
}

size_t msg_tpl_nsegs(const struct msg_tpl *t)
{
	return t->nsegs;
}

size_t msg_tpl_seg(const struct msg_tpl *t, size_t i, const char **text, size_t *len)
{
	const struct seg *s = &t->segs[i];

	*text = t->src + s->off;
	*len = s->len;
	return s->slot;
}

/* RFC 3986 unreserved characters stay, every other octet is %XX. */
void msg_url_escape(const char *v, size_t n, struct vl_buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = vl_buf_reserve(out, 3 * n), *start = o;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	out->len += (size_t)(o - start);
}

int msg_tpl_render(const struct msg_tpl *t, msg_value_fn value, void *arg,
		   enum msg_escape esc, struct vl_buf *out, char *err,
		   size_t errlen)
{
	size_t mark = out->len;

	for (size_t i = 0; i < t->nsegs; i++) {
		const struct seg *s = &t->segs[i];
		if (s->slot == SIZE_MAX) {
			vl_buf_append(out, t->src + s->off, s->len);
			continue;
		}
		size_t n;
		const char *v = value(arg, s->slot, t->names[s->slot], &n);
		if (!v) {
			snprintf(err, errlen, "no value for '%s'", t->names[s->slot]);
			out->len = mark;
			return -1;
		}
		if (esc == MSG_ESC_HEADER && (memchr(v, '\r', n) || memchr(v, '\n', n) ||
					      memchr(v, '\0', n))) {
			snprintf(err, errlen, "the value of '%s' holds CR, LF or NUL, which "
				 "cannot go into a header", t->names[s->slot]);
			out->len = mark;
			return -1;
		}
		if (esc == MSG_ESC_HTML)
			msg_html_escape(v, n, out);
		else if (esc == MSG_ESC_URL)
			msg_url_escape(v, n, out);
		else
			vl_buf_append(out, v, n);
	}
	return 0;
}
