/*
 * The "_smtp._tls" TXT record (RFC 8460 3):
 *
 *   tlsrpt-record = "v=TLSRPTv1" 1*(field-delim tlsrpt-field) [field-delim]
 *   field-delim   = *WSP ";" *WSP
 *   tlsrpt-rua    = "rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
 *   extension     = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") "="
 *                   1*(%x21-3A / %x3C / %x3E-7E)
 *
 * Whatever a domain publishes reaches here: every octet is checked, the
 * output is bounded, unknown fields are ignored.
 */
#include "tlsrpt.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

struct cur {
	const char *start, *p, *end;
};


static void skip_wsp(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

static bool name_char(char ch, bool first)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (!first && (ch == '_' || ch == '-' || ch == '.'));
}

/* A URI's octets: visible ASCII but the delimiters ';' and ','. */
static bool uri_char(char ch)
{
	return ch > 0x20 && ch < 0x7f && ch != ';' && ch != ',';
}

/* mailto:local@domain or https://host...; anything else is skipped. */
static bool uri_usable(const char *u, size_t n)
{
	if (n > 7 && !strncasecmp(u, "mailto:", 7))
		return memchr(u + 7, '@', n - 7) && u[7] != '@' && u[n - 1] != '@';
	return n > 8 && !strncasecmp(u, "https://", 8) && u[8] != '/';
}

static int parse_rua(struct cur *c, struct rpt_record *r, char *err, size_t errlen)
{
	for (;;) {
		const char *u = c->p;
		while (c->p < c->end && uri_char(*c->p))
			c->p++;
		size_t n = (size_t)(c->p - u);
		if (!n)
			return vl_fail(err, errlen, "rua: no URI at offset %zu", (size_t)(u - c->start));
		if (n < RPT_URI_MAX && r->nrua < RPT_RUA_MAX && uri_usable(u, n)) {
			memcpy(r->rua[r->nrua], u, n);
			r->rua[r->nrua++][n] = '\0';
		}
		skip_wsp(c);
		if (c->p == c->end || *c->p != ',')
			return 0;
		c->p++;
		skip_wsp(c);
	}
}

/* One field: rua (the first one counts) or an extension (skipped). */
static int parse_field(struct cur *c, struct rpt_record *r, bool *seen_rua, char *err,
		       size_t errlen)
{
	const char *name = c->p;

	if (c->p == c->end || !name_char(*c->p, true))
		return vl_fail(err, errlen, "a field name must start with a letter or digit");
	while (c->p < c->end && name_char(*c->p, false) && c->p - name < 32)
		c->p++;
	size_t n = (size_t)(c->p - name);
	if (c->p == c->end || *c->p != '=')
		return vl_fail(err, errlen, "field \"%.*s\": no '=' (or a name over 32 octets)",
			    (int)n, name);
	c->p++;
	if (n == 3 && !memcmp(name, "rua", 3) && !*seen_rua) {
		*seen_rua = true;
		return parse_rua(c, r, err, errlen);
	}
	const char *v = c->p;
	while (c->p < c->end && *c->p > 0x20 && *c->p < 0x7f && *c->p != ';' && *c->p != '=')
		c->p++;
	if (c->p == v)
		return vl_fail(err, errlen, "field \"%.*s\": an empty value", (int)n, name);
	return 0;
}

int rpt_record_parse(const char *txt, size_t len, struct rpt_record *r, char *err,
		     size_t errlen)
{
	struct cur c = { txt, txt, txt + len };
	bool seen_rua = false;

	r->nrua = 0;
	if (len < 10 || memcmp(txt, "v=TLSRPTv1", 10))
		return vl_fail(err, errlen, "not a TLS-RPT record (it must start with v=TLSRPTv1)");
	c.p += 10;
	for (;;) {
		skip_wsp(&c);
		if (c.p == c.end)
			break;
		if (*c.p != ';')
			return vl_fail(err, errlen, "octet 0x%02x at offset %zu where ';' must be",
				    (unsigned char)*c.p, (size_t)(c.p - txt));
		c.p++;
		skip_wsp(&c);
		if (c.p == c.end)
			break;        /* a trailing delimiter */
		if (parse_field(&c, r, &seen_rua, err, errlen) < 0)
			return -1;
	}
	if (!seen_rua)
		return vl_fail(err, errlen, "no rua field");
	if (!r->nrua)
		return vl_fail(err, errlen, "rua names no mailto: or https: URI volley can use");
	return 0;
}
