/*
 * SPF (RFC 7208): the record parser and check_host(), pure. Every DNS
 * answer comes from the caller's lookup callback; the evaluation counts
 * the DNS-querying terms (10 at most) and the void lookups (2 at most)
 * across includes and redirects, as 4.6.4 says.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "doctor.h"

static const char *const result_names[] = {
	[DOC_SPF_NONE] = "none", [DOC_SPF_NEUTRAL] = "neutral", [DOC_SPF_PASS] = "pass",
	[DOC_SPF_FAIL] = "fail", [DOC_SPF_SOFTFAIL] = "softfail",
	[DOC_SPF_TEMPERROR] = "temperror", [DOC_SPF_PERMERROR] = "permerror",
};

const char *doc_spf_result_name(enum doc_spf_result r)
{
	return (unsigned)r <= DOC_SPF_PERMERROR ? result_names[r] : "?";
}

/* ---- addresses ---- */

int doc_ip_parse(const char *s, struct doc_ip *ip)
{
	memset(ip, 0, sizeof *ip);
	if (inet_pton(AF_INET, s, ip->ip) == 1)
		ip->family = AF_INET;
	else if (inet_pton(AF_INET6, s, ip->ip) == 1)
		ip->family = AF_INET6;
	else
		return -1;
	return 0;
}

bool doc_ip_in(const struct doc_ip *a, const struct doc_ip *net, unsigned bits)
{
	unsigned max = a->family == AF_INET ? 32 : 128;

	if (a->family != net->family || bits > max)
		return false;
	unsigned whole = bits / 8, rest = bits % 8;
	if (memcmp(a->ip, net->ip, whole))
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a->ip[whole] & mask) == (net->ip[whole] & mask);
}

/* ---- the record ---- */

bool doc_spf_is_record(const char *txt)
{
	return !strncasecmp(txt, "v=spf1", 6) && (txt[6] == ' ' || !txt[6]);
}

/* A macro-string (RFC 7208 7.1): every '%' starts a valid macro. */
static bool macro_ok(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return false;
		if (*s != '%')
			continue;
		s++;
		if (*s == '%' || *s == '_' || *s == '-')
			continue;
		if (*s != '{' || !strchr("slodiphcrtvSLODIPHCRTV", s[1]) || !s[1])
			return false;
		s += 2;
		while (isdigit((unsigned char)*s))
			s++;
		if (*s == 'r' || *s == 'R')
			s++;
		while (*s && strchr(".-+,/_=", *s))
			s++;
		if (*s != '}')
			return false;
	}
	return true;
}

/* "/24", "//64", "/24//64" at the end of s, cut off into *c4, *c6. */
static int take_cidr(char *s, int *c4, int *c6, bool dual)
{
	char *slash = strchr(s, '/');
	char *end;

	*c4 = *c6 = -1;
	if (!slash)
		return 0;
	*slash = '\0';
	char *p = slash + 1;
	if (*p != '/') {
		long v = strtol(p, &end, 10);
		if (end == p || v < 0 || v > 32 || (p[0] == '0' && end - p > 1))
			return -1;
		*c4 = (int)v;
		p = end;
		if (!*p)
			return 0;
		if (p[0] != '/' || p[1] != '/')
			return -1;
		p += 2;
	} else {
		p++;
	}
	if (!dual || *p == '\0')
		return -1;
	long v = strtol(p, &end, 10);
	if (end == p || *end || v < 0 || v > 128 || (p[0] == '0' && end - p > 1))
		return -1;
	*c6 = (int)v;
	return 0;
}

static const struct { const char *name; enum doc_spf_mech m; } mechs[] = {
	{"all", DOC_M_ALL}, {"include", DOC_M_INCLUDE}, {"a", DOC_M_A}, {"mx", DOC_M_MX},
	{"ptr", DOC_M_PTR}, {"ip4", DOC_M_IP4}, {"ip6", DOC_M_IP6}, {"exists", DOC_M_EXISTS},
};

static int parse_ip(struct doc_spf_term *t, char *arg, char *err, size_t errlen)
{
	int fam = t->mech == DOC_M_IP4 ? AF_INET : AF_INET6;
	long bits = -1, max = fam == AF_INET ? 32 : 128;
	char *slash = strchr(arg, '/'), *end = NULL;

	if (slash) {
		*slash = '\0';
		bits = strtol(slash + 1, &end, 10);
	}
	if ((slash && (end == slash + 1 || *end || bits < 0 || bits > max ||
		       (slash[1] == '0' && end - slash > 2))) ||
	    doc_ip_parse(arg, &t->ip) < 0 || t->ip.family != fam) {
		snprintf(err, errlen, "bad address in \"%s\"", t->raw);
		return -1;
	}
	if (fam == AF_INET)
		t->cidr4 = (int)bits;
	else
		t->cidr6 = (int)bits;
	return 0;
}

static int parse_modifier(struct doc_spf_rec *r, struct doc_spf_term *t, char *s, char *eq,
			  char *err, size_t errlen)
{
	*eq = '\0';
	for (char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("-_.", *c)) {
			snprintf(err, errlen, "bad modifier name in \"%s\"", t->raw);
			return -1;
		}
	if (!isalpha((unsigned char)*s) || !macro_ok(eq + 1)) {
		snprintf(err, errlen, "bad modifier \"%s\"", t->raw);
		return -1;
	}
	bool redir = !strcasecmp(s, "redirect");
	if (!redir && strcasecmp(s, "exp"))
		return 0;                       /* unknown modifiers are ignored */
	if (redir ? r->redirect != NULL : r->exp != NULL) {
		snprintf(err, errlen, "\"%s\" given twice", s);
		return -1;
	}
	if (!eq[1]) {
		snprintf(err, errlen, "\"%s\" without a domain", t->raw);
		return -1;
	}
	t->qual = '=';
	t->mech = redir ? DOC_M_REDIRECT : DOC_M_EXP;
	t->spec = eq + 1;
	r->n++;
	if (redir)
		r->redirect = t;
	else
		r->exp = t;
	return 0;
}

static int parse_mech(struct doc_spf_rec *r, struct doc_spf_term *t, char *s, char *err,
		      size_t errlen)
{
	t->qual = '+';
	if (strchr("+-~?", *s))
		t->qual = *s++;
	size_t nl = strcspn(s, ":/");
	size_t i = 0;
	while (i < sizeof mechs / sizeof mechs[0] &&
	       (strlen(mechs[i].name) != nl || strncasecmp(mechs[i].name, s, nl)))
		i++;
	if (i == sizeof mechs / sizeof mechs[0]) {
		snprintf(err, errlen, "unknown mechanism \"%s\"", t->raw);
		return -1;
	}
	t->mech = mechs[i].m;
	char *arg = s[nl] == ':' ? s + nl + 1 : NULL;
	bool cidr = t->mech == DOC_M_A || t->mech == DOC_M_MX;
	if (t->mech == DOC_M_IP4 || t->mech == DOC_M_IP6) {
		if (!arg || parse_ip(t, arg, err, errlen) < 0) {
			if (!arg)
				snprintf(err, errlen, "\"%s\" without an address", t->raw);
			return -1;
		}
	} else if ((s[nl] == '/' && !cidr) ||
		   (t->mech == DOC_M_ALL && s[nl]) ||
		   ((t->mech == DOC_M_INCLUDE || t->mech == DOC_M_EXISTS) && (!arg || !*arg)) ||
		   (cidr && take_cidr(arg ? arg : s + nl, &t->cidr4, &t->cidr6, true) < 0) ||
		   (arg && (!*arg || !macro_ok(arg)))) {
		snprintf(err, errlen, "bad term \"%s\"", t->raw);
		return -1;
	}
	if (t->mech != DOC_M_IP4 && t->mech != DOC_M_IP6)
		t->spec = arg;
	r->n++;
	return 0;
}

int doc_spf_parse(const char *txt, struct doc_spf_rec *r, char *err, size_t errlen)
{
	size_t len = strlen(txt);

	memset(r, 0, offsetof(struct doc_spf_rec, text));
	if (!doc_spf_is_record(txt)) {
		snprintf(err, errlen, "not an SPF record (no v=spf1)");
		return -1;
	}
	if (len > DOC_SPF_RECORD_MAX) {
		snprintf(err, errlen, "record of %zu octets (at most %d kept)", len,
			 DOC_SPF_RECORD_MAX);
		return -1;
	}
	char *raw = r->text, *work = r->text + DOC_SPF_RECORD_MAX + 1;
	memcpy(raw, txt + 6, len - 5);
	memcpy(work, txt + 6, len - 5);
	size_t rl = len - 6;
	for (size_t at = 0; at < rl;) {
		if (raw[at] == ' ') {
			at++;
			continue;
		}
		size_t n = strcspn(raw + at, " ");
		if (r->n == DOC_SPF_TERMS_MAX) {
			snprintf(err, errlen, "more than %d terms", DOC_SPF_TERMS_MAX);
			return -1;
		}
		raw[at + n] = work[at + n] = '\0';
		struct doc_spf_term *t = &r->t[r->n];
		*t = (struct doc_spf_term){ .raw = raw + at, .cidr4 = -1, .cidr6 = -1 };
		char *s = work + at, *eq = strchr(s, '=');
		size_t before = strcspn(s, ":/");
		int rc = eq && (size_t)(eq - s) < before ?
			 parse_modifier(r, t, s, eq, err, errlen) :
			 parse_mech(r, t, s, err, errlen);
		if (rc < 0)
			return -1;
		at += n + 1;
	}
	return 0;
}

/* ---- macros (RFC 7208 7) ---- */

/* The value a macro letter stands for, into buf. */
static const char *macro_value(char c, const struct doc_spf_query *q, const char *domain,
			       char *buf, size_t len)
{
	const char *at = q->sender ? strrchr(q->sender, '@') : NULL;

	switch (tolower((unsigned char)c)) {
	case 's':
		return q->sender ? q->sender : "";
	case 'l':
		snprintf(buf, len, "%.*s", at ? (int)(at - q->sender) : 10,
			 at && at != q->sender ? q->sender : "postmaster");
		return buf;
	case 'o':
		return at ? at + 1 : q->domain;
	case 'd':
		return domain;
	case 'i':
		if (q->ip.family == AF_INET) {
			snprintf(buf, len, "%u.%u.%u.%u", q->ip.ip[0], q->ip.ip[1], q->ip.ip[2],
				 q->ip.ip[3]);
		} else {
			size_t n = 0;
			for (int i = 0; i < 16 && n + 4 < len; i++)
				n += (size_t)snprintf(buf + n, len - n, "%x.%x.", q->ip.ip[i] >> 4,
						      q->ip.ip[i] & 15);
			if (n)
				buf[n - 1] = '\0';
		}
		return buf;
	case 'v':
		return q->ip.family == AF_INET ? "in-addr" : "ip6";
	case 'h':
		return q->helo ? q->helo : "unknown";
	default:                                /* p (no PTR walk), c, r, t */
		return "unknown";
	}
}

/* Split value at delims, keep the rightmost keep parts (0: all), maybe
 * reversed, joined by '.'. */
static size_t transform(const char *value, const char *delims, unsigned keep, bool rev,
			char *out, size_t outlen)
{
	const char *part[128];
	size_t plen[128], n = 0, o = 0;

	for (const char *p = value; n < 128;) {
		size_t l = strcspn(p, delims);
		part[n] = p;
		plen[n++] = l;
		if (!p[l])
			break;
		p += l + 1;
	}
	size_t first = 0;
	if (rev)
		for (size_t i = 0; i < n / 2; i++) {
			const char *tp = part[i]; size_t tl = plen[i];
			part[i] = part[n - 1 - i]; plen[i] = plen[n - 1 - i];
			part[n - 1 - i] = tp; plen[n - 1 - i] = tl;
		}
	if (keep && keep < n)
		first = n - keep;
	for (size_t i = first; i < n; i++) {
		int w = snprintf(out + o, outlen - o, "%s%.*s", i > first ? "." : "",
				 (int)plen[i], part[i]);
		if (w < 0 || (size_t)w >= outlen - o)
			return outlen;
		o += (size_t)w;
	}
	return o;
}

int doc_spf_expand(const char *spec, const struct doc_spf_query *q, const char *domain,
		   char *out, size_t outlen)
{
	char tmp[1024], vbuf[128];
	size_t o = 0;

	if (!macro_ok(spec))
		return -1;
	for (const char *s = spec; *s && o < sizeof tmp - 1; s++) {
		if (*s != '%') {
			tmp[o++] = *s;
			continue;
		}
		s++;
		if (*s == '%' || *s == '_' || *s == '-') {
			const char *lit = *s == '%' ? "%" : *s == '_' ? " " : "%20";
			o += (size_t)snprintf(tmp + o, sizeof tmp - o, "%s", lit);
			continue;
		}
		const char *v = macro_value(s[1], q, domain, vbuf, sizeof vbuf);
		s += 2;
		unsigned keep = 0;
		bool digits = false;
		for (; isdigit((unsigned char)*s); s++, digits = true)
			keep = keep > 1000 ? keep : keep * 10 + (unsigned)(*s - '0');
		if (digits && keep == 0)
			return -1;                  /* "%{d0}": zero labels is an error */
		bool rev = *s == 'r' || *s == 'R';
		s += rev;
		char delims[8] = "";
		size_t nd = 0;
		while (*s != '}' && nd < sizeof delims - 1)
			delims[nd++] = *s++;
		delims[nd] = '\0';
		o += transform(v, nd ? delims : ".", keep, rev, tmp + o, sizeof tmp - o);
		if (o >= sizeof tmp)
			return -1;
	}
	tmp[o < sizeof tmp ? o : sizeof tmp - 1] = '\0';
	const char *r = tmp;
	while (strlen(r) > 253 && strchr(r, '.'))  /* 7.3: drop leftmost labels */
		r = strchr(r, '.') + 1;
	if (strlen(r) > 253 || strlen(r) >= outlen)
		return -1;
	strcpy(out, r);
	return 0;
}

/* ---- check_host() ---- */

struct ev {
	const struct doc_spf_query *q;
	doc_lookup_fn fn;
	void *arg;
	unsigned lookups, voids;
	bool plus_all;
	char why[800];           /* names of up to 255 octets in sentences */
};

/* A term that queries DNS: over the limit is permerror. */
static bool count_lookup(struct ev *e)
{
	if (++e->lookups <= DOC_SPF_LOOKUPS_MAX)
		return true;
	snprintf(e->why, sizeof e->why, "more than %d DNS-querying terms (RFC 7208 4.6.4)",
		 DOC_SPF_LOOKUPS_MAX);
	return false;
}

/* -1 temperror, -2 permerror (over the void limit), 0 void, 1 answered. */
static int answered(struct ev *e, const struct doc_answer *a, const char *name)
{
	if (a->rc == DOC_RC_TEMP) {
		snprintf(e->why, sizeof e->why, "DNS lookup of %s failed for now", name);
		return -1;
	}
	if (a->rc == DOC_RC_OK && a->n)
		return 1;
	if (++e->voids > DOC_SPF_VOIDS_MAX) {
		snprintf(e->why, sizeof e->why, "more than %d lookups found nothing (void "
			 "lookup limit, RFC 7208 4.6.4), the last %s", DOC_SPF_VOIDS_MAX, name);
		return -2;
	}
	return 0;
}

static bool addr_match(const struct ev *e, const struct doc_answer *a, int c4, int c6,
		       bool v4_only_any)
{
	for (size_t i = 0; i < a->n; i++) {
		if (v4_only_any) {
			if (a->ip[i].family == AF_INET)
				return true;
			continue;
		}
		int bits = e->q->ip.family == AF_INET ? (c4 < 0 ? 32 : c4) : (c6 < 0 ? 128 : c6);
		if (doc_ip_in(&e->q->ip, &a->ip[i], (unsigned)bits))
			return true;
	}
	return false;
}

static enum doc_spf_result check_host(struct ev *e, const char *domain);

enum { NOMATCH = 0, MATCH = 1, TEMP = -1, PERM = -2 };

/* RFC 7208 5.5 (ptr, deprecated): some PTR name of the address, at or
 * under target, resolves back to it. DNS errors are no match. */
static int ptr_match(struct ev *e, const char *target)
{
	char ipstr[64], names[10][256];
	struct doc_answer a = {0};
	size_t n = 0, tl = strlen(target);

	if (!inet_ntop(e->q->ip.family, e->q->ip.ip, ipstr, sizeof ipstr))
		return NOMATCH;
	e->fn(e->arg, DOC_Q_PTR, ipstr, &a);
	for (size_t i = 0; a.rc == DOC_RC_OK && i < a.n && n < 10; i++) {
		size_t l = strlen(a.txt[i]);
		if (l < sizeof names[0] && (l == tl ? !strcasecmp(a.txt[i], target) :
		    l > tl && a.txt[i][l - tl - 1] == '.' && !strcasecmp(a.txt[i] + l - tl, target)))
			memcpy(names[n++], a.txt[i], l + 1);
	}
	enum doc_q q = e->q->ip.family == AF_INET ? DOC_Q_A : DOC_Q_AAAA;
	for (size_t i = 0; i < n; i++) {
		e->fn(e->arg, q, names[i], &a);
		if (a.rc == DOC_RC_OK && addr_match(e, &a, -1, -1, false))
			return MATCH;
	}
	return NOMATCH;
}

/* One DNS-querying mechanism's outcome. */
static int dns_mech(struct ev *e, const struct doc_spf_term *t, const char *target)
{
	struct doc_answer a = {0};

	if (!count_lookup(e))
		return PERM;
	switch (t->mech) {
	case DOC_M_INCLUDE: {
		enum doc_spf_result r = check_host(e, target);
		if (r == DOC_SPF_PASS)
			return MATCH;
		if (r == DOC_SPF_TEMPERROR)
			return TEMP;
		if (r == DOC_SPF_PERMERROR || r == DOC_SPF_NONE) {
			if (r == DOC_SPF_NONE)
				snprintf(e->why, sizeof e->why, "include:%s has no SPF record",
					 target);
			return PERM;
		}
		e->why[0] = '\0';               /* its fail/neutral is no match here */
		return NOMATCH;
	}
	case DOC_M_PTR:
		return ptr_match(e, target);
	case DOC_M_MX:
		e->fn(e->arg, DOC_Q_MX, target, &a);
		if (a.rc == DOC_RC_OK && a.nmx > 10) {
			snprintf(e->why, sizeof e->why, "mx:%s has %zu MX names (10 at most, "
				 "RFC 7208 4.6.4)", target, a.nmx);
			return PERM;
		}
		break;
	case DOC_M_EXISTS:                      /* an A query whatever the family */
		e->fn(e->arg, DOC_Q_A, target, &a);
		break;
	default:                                /* a */
		e->fn(e->arg, e->q->ip.family == AF_INET ? DOC_Q_A : DOC_Q_AAAA, target, &a);
		break;
	}
	int r = answered(e, &a, target);
	if (r <= 0)
		return r == 0 ? NOMATCH : r == -1 ? TEMP : PERM;
	return addr_match(e, &a, t->cidr4, t->cidr6, t->mech == DOC_M_EXISTS) ? MATCH : NOMATCH;
}

static int term_match(struct ev *e, const struct doc_spf_term *t, const char *domain)
{
	char target[256];

	switch (t->mech) {
	case DOC_M_ALL:
		return MATCH;
	case DOC_M_IP4:
	case DOC_M_IP6: {
		int bits = t->mech == DOC_M_IP4 ? (t->cidr4 < 0 ? 32 : t->cidr4) :
						  (t->cidr6 < 0 ? 128 : t->cidr6);
		return doc_ip_in(&e->q->ip, &t->ip, (unsigned)bits) ? MATCH : NOMATCH;
	}
	default:
		break;
	}
	if (doc_spf_expand(t->spec ? t->spec : "%{d}", e->q, domain, target, sizeof target) < 0) {
		snprintf(e->why, sizeof e->why, "bad macro in \"%s\"", t->raw);
		return PERM;
	}
	return dns_mech(e, t, target);
}

static enum doc_spf_result qual_result(char q)
{
	return q == '-' ? DOC_SPF_FAIL : q == '~' ? DOC_SPF_SOFTFAIL :
	       q == '?' ? DOC_SPF_NEUTRAL : DOC_SPF_PASS;
}

/* The record of domain, parsed into *r: 1, none (0), or an error. */
static int fetch_record(struct ev *e, const char *domain, struct doc_spf_rec *r,
			enum doc_spf_result *err_res)
{
	struct doc_answer a = {0};
	const char *found = NULL;
	char err[200];

	e->fn(e->arg, DOC_Q_TXT, domain, &a);
	if (a.rc == DOC_RC_TEMP) {
		snprintf(e->why, sizeof e->why, "TXT lookup of %s failed for now", domain);
		*err_res = DOC_SPF_TEMPERROR;
		return -1;
	}
	for (size_t i = 0; a.rc == DOC_RC_OK && i < a.n; i++) {
		if (!doc_spf_is_record(a.txt[i]))
			continue;
		if (found) {
			snprintf(e->why, sizeof e->why, "%s has more than one SPF record", domain);
			*err_res = DOC_SPF_PERMERROR;
			return -1;
		}
		found = a.txt[i];
	}
	if (!found) {
		snprintf(e->why, sizeof e->why, "%s has no SPF record", domain);
		return 0;
	}
	if (doc_spf_parse(found, r, err, sizeof err) < 0) {
		snprintf(e->why, sizeof e->why, "the SPF record of %s: %s", domain, err);
		*err_res = DOC_SPF_PERMERROR;
		return -1;
	}
	return 1;
}

static enum doc_spf_result check_host(struct ev *e, const char *domain)
{
	struct doc_spf_rec *r = malloc(sizeof *r);
	enum doc_spf_result res = DOC_SPF_NEUTRAL;

	if (!r) {
		snprintf(e->why, sizeof e->why, "out of memory");
		return DOC_SPF_TEMPERROR;
	}
	int got = fetch_record(e, domain, r, &res);
	if (got <= 0) {
		free(r);
		return got == 0 ? DOC_SPF_NONE : res;
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct doc_spf_term *t = &r->t[i];
		if (t->qual == '=')
			continue;
		int m = term_match(e, t, domain);
		if (m == MATCH) {
			res = qual_result(t->qual);
			e->plus_all |= t->mech == DOC_M_ALL && res == DOC_SPF_PASS;
			if (!e->why[0])
				snprintf(e->why, sizeof e->why, "\"%s\" in %s", t->raw, domain);
			free(r);
			return res;
		}
		if (m != NOMATCH) {
			free(r);
			return m == TEMP ? DOC_SPF_TEMPERROR : DOC_SPF_PERMERROR;
		}
	}
	if (r->redirect) {
		char target[256];
		if (doc_spf_expand(r->redirect->spec, e->q, domain, target, sizeof target) < 0) {
			snprintf(e->why, sizeof e->why, "bad macro in \"%s\"", r->redirect->raw);
			res = DOC_SPF_PERMERROR;
		} else if (!count_lookup(e)) {
			res = DOC_SPF_PERMERROR;
		} else {
			res = check_host(e, target);
			if (res == DOC_SPF_NONE) {
				snprintf(e->why, sizeof e->why, "redirect=%s has no SPF record",
					 target);
				res = DOC_SPF_PERMERROR;
			}
		}
	} else {
		snprintf(e->why, sizeof e->why, "nothing matched in %s (neutral)", domain);
	}
	free(r);
	return res;
}

void doc_spf_check(const struct doc_spf_query *q, doc_lookup_fn fn, void *arg,
		   struct doc_spf_out *out)
{
	struct ev e = { .q = q, .fn = fn, .arg = arg };

	out->result = check_host(&e, q->domain);
	out->lookups = e.lookups;
	out->voids = e.voids;
	out->plus_all = e.plus_all;
	size_t n = strnlen(e.why, sizeof out->why - 1);
	memcpy(out->why, e.why, n);     /* cut to the row's width */
	out->why[n] = '\0';
}
