/* Header fields, MIME entities, multipart splitting and transfer decoding:
 * every loop bounded by its input, every output by its input. */
#include "fb_int.h"
#include "../common/common.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void fb_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void fb_hdr_init(struct fb_hdr_it *it, const char *p, size_t n)
{
	it->p = p;
	it->end = p + n;
	it->nfields = 0;
}

/* The physical line at p: its content length (no CR LF) into *clen, the
 * next line's start returned; NULL when over FB_LINE_MAX. */
static const char *line_at(const char *p, const char *end, size_t *clen)
{
	size_t left = (size_t)(end - p);
	const char *nl = memchr(p, '\n', left < FB_LINE_MAX + 2 ? left : FB_LINE_MAX + 2);

	if (!nl) {
		if (left > FB_LINE_MAX + 1)
			return NULL;
		nl = end;
	}
	size_t n = (size_t)(nl - p);
	if (n && p[n - 1] == '\r')
		n--;
	if (n > FB_LINE_MAX)
		return NULL;
	*clen = n;
	return nl < end ? nl + 1 : end;
}

static void val_add(struct fb_field *f, const char *s, size_t n)
{
	size_t room = FB_FIELD_MAX - f->vlen;

	if (n > room)
		n = room;
	memcpy(f->val + f->vlen, s, n);
	f->vlen += n;
}

int fb_hdr_next(struct fb_hdr_it *it, struct fb_field *f, char *err, size_t errlen)
{
	for (;;) {
		size_t n;
		const char *line = it->p;

		if (line >= it->end)
			return 0;
		const char *next = line_at(line, it->end, &n);
		if (!next) {
			fb_errf(err, errlen, "a header line longer than %d octets", FB_LINE_MAX);
			return -1;
		}
		it->p = next;
		if (n == 0)
			return 0;       /* the blank line: the body follows */
		const char *colon = memchr(line, ':', n);
		/* a stray continuation or a line without a colon: skipped */
		if (line[0] == ' ' || line[0] == '\t' || !colon || colon == line)
			continue;
		if (++it->nfields > FB_FIELDS_MAX) {
			fb_errf(err, errlen, "more than %d header fields in one block", FB_FIELDS_MAX);
			return -1;
		}
		f->name = line;
		f->nlen = (size_t)(colon - line);
		while (f->nlen && (line[f->nlen - 1] == ' ' || line[f->nlen - 1] == '\t'))
			f->nlen--;
		f->vlen = 0;
		val_add(f, colon + 1, n - (size_t)(colon + 1 - line));
		/* continuation lines, unfolded (the CR LF dropped) */
		while (it->p < it->end && (it->p[0] == ' ' || it->p[0] == '\t')) {
			const char *c = it->p;
			next = line_at(c, it->end, &n);
			if (!next) {
				fb_errf(err, errlen, "a header line longer than %d octets", FB_LINE_MAX);
				return -1;
			}
			it->p = next;
			/* folding whitespace becomes one space */
			while (n && (*c == ' ' || *c == '\t'))
				c++, n--;
			val_add(f, " ", 1);
			val_add(f, c, n);
		}
		/* trimmed both ends */
		size_t s = 0;
		while (s < f->vlen && (f->val[s] == ' ' || f->val[s] == '\t'))
			s++;
		while (f->vlen > s && (f->val[f->vlen - 1] == ' ' || f->val[f->vlen - 1] == '\t'))
			f->vlen--;
		memmove(f->val, f->val + s, f->vlen - s);
		f->vlen -= s;
		f->val[f->vlen] = '\0';
		return 1;
	}
}

bool fb_field_is(const struct fb_field *f, const char *name)
{
	size_t n = strlen(name);

	return f->nlen == n && !strncasecmp(f->name, name, n);
}

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A parameter value (token or quoted-string) at s into out: its end. */
static const char *param_value(const char *s, char *out, size_t outlen, bool *fits)
{
	size_t n = 0;

	*fits = true;
	if (*s == '"') {
		for (s++; *s && *s != '"'; s++) {
			if (*s == '\\' && s[1])
				s++;
			if (n + 1 < outlen)
				out[n++] = *s;
			else
				*fits = false;
		}
		if (*s == '"')
			s++;
	} else {
		for (; *s && *s != ';' && *s != ' ' && *s != '\t'; s++) {
			if (n + 1 < outlen)
				out[n++] = *s;
			else
				*fits = false;
		}
	}
	out[n] = '\0';
	return s;
}

/* RFC 2046 5.1.1: 1-70 of bcharsnospace / space, not ending in a space. */
static bool boundary_ok(const char *b)
{
	size_t n = strlen(b);

	if (n < 1 || n > 70 || b[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)b[i]) && !strchr("'()+_,-./:=? ", b[i]))
			return false;
	return true;
}

void fb_ctype_parse(const char *v, struct fb_ctype *ct)
{
	size_t n = 0;

	memset(ct, 0, sizeof *ct);
	v = skip_ws(v);
	for (; *v && *v != ';' && *v != ' ' && *v != '\t' && *v != '('; v++)
		if (n + 1 < sizeof ct->type)
			ct->type[n++] = (char)tolower((unsigned char)*v);
	ct->type[n] = '\0';
	while ((v = strchr(v, ';'))) {
		char name[32], val[80];
		bool fits;

		v = skip_ws(v + 1);
		n = 0;
		for (; *v && *v != '=' && *v != ';' && *v != ' ' && *v != '\t'; v++)
			if (n + 1 < sizeof name)
				name[n++] = *v;
		name[n] = '\0';
		v = skip_ws(v);
		if (*v != '=')
			continue;
		v = param_value(skip_ws(v + 1), val, sizeof val, &fits);
		if (!strcasecmp(name, "boundary") && !ct->has_boundary) {
			ct->has_boundary = true;
			ct->boundary_ok = fits && boundary_ok(val);
			if (ct->boundary_ok)
				memcpy(ct->boundary, val, strlen(val) + 1);
		} else if (!strcasecmp(name, "report-type") && fits && strlen(val) < sizeof ct->report_type) {
			for (size_t i = 0; val[i]; i++)
				ct->report_type[i] = (char)tolower((unsigned char)val[i]);
		}
	}
}

static void top_keep(char **slot, const struct fb_field *f)
{
	if (!*slot)
		*slot = vl_strndup(f->val, f->vlen);
}

int fb_entity_parse(const char *p, size_t n, struct fb_entity *e, struct fb_top *top,
		    char *err, size_t errlen)
{
	struct fb_hdr_it it;
	struct fb_field f;
	bool have_ct = false;
	int rc;

	memset(e, 0, sizeof *e);
	fb_hdr_init(&it, p, n);
	while ((rc = fb_hdr_next(&it, &f, err, errlen)) == 1) {
		if (fb_field_is(&f, "Content-Type") && !have_ct) {
			fb_ctype_parse(f.val, &e->ct);
			have_ct = true;
		} else if (fb_field_is(&f, "Content-Transfer-Encoding")) {
			const char *v = f.val;
			e->cte = !strncasecmp(v, "base64", 6)             ? FB_CTE_BASE64
				 : !strncasecmp(v, "quoted-printable", 16) ? FB_CTE_QP
									   : FB_CTE_IDENTITY;
		} else if (top) {
			if (fb_field_is(&f, "Delivered-To"))
				top_keep(&top->delivered_to, &f);
			else if (fb_field_is(&f, "To"))
				top_keep(&top->to, &f);
			else if (fb_field_is(&f, "From"))
				top_keep(&top->from, &f);
			else if (fb_field_is(&f, "Subject"))
				top_keep(&top->subject, &f);
		}
	}
	if (rc < 0)
		return -1;
	if (!have_ct || !e->ct.type[0])
		strcpy(e->ct.type, "text/plain");
	e->body.p = it.p;
	e->body.n = (size_t)(p + n - it.p);
	return 0;
}

/* Is the line at p (len n, no CR LF) a delimiter of b: 1 open, 2 close? */
static int delimiter(const char *p, size_t n, const char *b, size_t bl)
{
	if (n < bl + 2 || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b, bl))
		return 0;
	size_t i = bl + 2;
	int kind = 1;
	if (n >= i + 2 && p[i] == '-' && p[i + 1] == '-') {
		kind = 2;
		i += 2;
	}
	for (; i < n; i++)       /* transport padding only */
		if (p[i] != ' ' && p[i] != '\t')
			return 0;
	return kind;
}

int fb_multipart(struct fb_slice body, const char *boundary, struct fb_slice *parts,
		 size_t max, size_t *nparts, unsigned *budget, char *err, size_t errlen)
{
	size_t bl = strlen(boundary);
	const char *p = body.p, *end = body.p + body.n, *start = NULL;
	bool seen = false;

	*nparts = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *next = nl ? nl + 1 : end;
		size_t n = (size_t)((nl ? nl : end) - p);
		if (n && p[n - 1] == '\r')
			n--;
		int k = p[0] == '-' ? delimiter(p, n, boundary, bl) : 0;
		if (k) {
			if (start) {
				/* the CR LF before the delimiter belongs to it */
				const char *e = p;
				if (e > start && e[-1] == '\n')
					e--;
				if (e > start && e[-1] == '\r')
					e--;
				if (*nparts < max)
					parts[*nparts] = (struct fb_slice){ start, (size_t)(e - start) };
				(*nparts)++;
			}
			seen = true;
			if (k == 2) {
				start = NULL;
				break;
			}
			if (*budget == 0) {
				fb_errf(err, errlen, "more MIME parts than the limit");
				return -1;
			}
			(*budget)--;
			start = next;
		}
		p = next;
	}
	if (!seen) {
		fb_errf(err, errlen, "no MIME delimiter --%s in the multipart body", boundary);
		return -1;
	}
	if (start && start < end) {     /* truncated: no close delimiter */
		if (*nparts < max)
			parts[*nparts] = (struct fb_slice){ start, (size_t)(end - start) };
		(*nparts)++;
	}
	if (*nparts > max)
		*nparts = max;
	return 0;
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static size_t b64_decode(const char *in, size_t n, char *out)
{
	size_t o = 0;
	unsigned acc = 0, bits = 0;

	for (size_t i = 0; i < n; i++) {
		int v = b64val((unsigned char)in[i]);
		if (in[i] == '=')
			break;
		if (v < 0)
			continue;       /* line ends, blanks, junk */
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	return o;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (unsigned char)toupper(c);
	return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static size_t qp_decode(const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] != '=') {
			out[o++] = in[i];
			continue;
		}
		if (i + 1 < n && in[i + 1] == '\n') {           /* soft line break */
			i++;
		} else if (i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n') {
			i += 2;
		} else if (i + 2 < n && hexval((unsigned char)in[i + 1]) >= 0 &&
			   hexval((unsigned char)in[i + 2]) >= 0) {
			out[o++] = (char)(hexval((unsigned char)in[i + 1]) * 16 +
					  hexval((unsigned char)in[i + 2]));
			i += 2;
		} else {
			out[o++] = '=';
		}
	}
	return o;
}

char *fb_decode(const struct fb_entity *e, size_t cap, size_t *len)
{
	size_t n = e->body.n < cap ? e->body.n : cap;
	char *out = vl_malloc(n + 1);

	if (e->cte == FB_CTE_BASE64)
		n = b64_decode(e->body.p, n, out);
	else if (e->cte == FB_CTE_QP)
		n = qp_decode(e->body.p, n, out);
	else
		memcpy(out, e->body.p, n);
	out[n] = '\0';
	*len = n;
	return out;
}

char *fb_trimdup(const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t'))
		v++, n--;
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
		n--;
	return n ? vl_strndup(v, n) : NULL;
}

char *fb_addr_of(const char *v, bool has_type)
{
	if (has_type) {
		const char *semi = strchr(v, ';');
		if (semi)
			v = semi + 1;
	}
	const char *lt = strchr(v, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt)
		return fb_trimdup(lt + 1, (size_t)(gt - lt - 1));
	return fb_trimdup(v, strlen(v));
}

size_t fb_status_at(const char *s, size_t n)
{
	size_t i = 0;

	if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (i < n && d < 4 && isdigit((unsigned char)s[i]))
			i++, d++;
		if (d < 1 || d > 3)
			return 0;
		if (part == 0) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
	}
	return i < n && (isdigit((unsigned char)s[i]) || s[i] == '.') ? 0 : i;
}

int fb_orig_headers(const char *p, size_t n, struct fb_report *r, char *err, size_t errlen)
{
	struct fb_hdr_it it;
	struct fb_field f;
	int rc;

	fb_hdr_init(&it, p, n);
	while ((rc = fb_hdr_next(&it, &f, err, errlen)) == 1) {
		char **slot = fb_field_is(&f, "Message-ID") ? &r->orig_msgid
			      : fb_field_is(&f, "From")     ? &r->orig_from
			      : fb_field_is(&f, "To")       ? &r->orig_to
			      : fb_field_is(&f, "Subject")  ? &r->orig_subject
							    : NULL;
		if (slot && !*slot)
			*slot = fb_trimdup(f.val, f.vlen);
	}
	return rc;
}

struct fb_rcpt *fb_rcpt_add(struct fb_report *r, size_t max)
{
	if (r->nrcpts >= max) {
		r->truncated = true;
		return NULL;
	}
	if ((r->nrcpts & (r->nrcpts - 1)) == 0)      /* 0, 1, 2, 4...: grow */
		r->rcpts = vl_realloc(r->rcpts, (r->nrcpts ? r->nrcpts * 2 : 1) * sizeof *r->rcpts);
	struct fb_rcpt *x = &r->rcpts[r->nrcpts++];
	memset(x, 0, sizeof *x);
	return x;
}
