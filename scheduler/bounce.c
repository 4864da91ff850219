/*
 * Bounce classification: rules from a user's file, then the built-in
 * scheduler/bounce.rules (compiled in as sched_bounce_builtin by the
 * Makefile), map a failure to a class and hard/soft. The format is in
 * bounce.rules' header and docs/bounces.md.
 */
#include <errno.h>
#include <stdarg.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"

#include "../common/common.h"

extern const char sched_bounce_builtin[];

#define TEXT_MAX 4096            /* reply text matched; longer is cut */

enum verdict { V_HARD, V_SOFT, V_AUTO };

struct rule {
	enum sched_bounce_class cls;
	enum verdict verdict;
	uint8_t codes[125];       /* a bit per code 0..999; 0 = no reply */
	char **stage, **enh;      /* NULL-terminated glob lists; NULL = any */
	bool has_re;
	regex_t re;
};

struct sched_bounce_rules {
	struct rule *r;
	size_t n, cap;
};

static const char *const class_names[SCHED_BC_COUNT] = {
	[SCHED_BC_INVALID_RECIPIENT] = "invalid-recipient",
	[SCHED_BC_MAILBOX_FULL] = "mailbox-full",
	[SCHED_BC_INACTIVE_MAILBOX] = "inactive-mailbox",
	[SCHED_BC_POLICY] = "policy",
	[SCHED_BC_SPAM_BLOCK] = "spam-block",
	[SCHED_BC_RATE_LIMITED] = "rate-limited",
	[SCHED_BC_DNS] = "dns",
	[SCHED_BC_TLS] = "tls",
	[SCHED_BC_ROUTING] = "routing",
	[SCHED_BC_PROTOCOL] = "protocol",
	[SCHED_BC_TIMEOUT] = "timeout",
	[SCHED_BC_MESSAGE_TOO_LARGE] = "message-too-large",
	[SCHED_BC_OTHER] = "other",
};

const char *sched_bounce_class_name(enum sched_bounce_class c)
{
	return c > SCHED_BC_NONE && c < SCHED_BC_COUNT ? class_names[c] : NULL;
}

int sched_bounce_class_parse(const char *s, enum sched_bounce_class *c)
{
	for (int i = SCHED_BC_NONE + 1; i < SCHED_BC_COUNT; i++)
		if (strcmp(s, class_names[i]) == 0) {
			*c = (enum sched_bounce_class)i;
			return 0;
		}
	return -1;
}

/* ---- loading ---- */

struct src {                     /* where a rule comes from, for errors */
	const char *name;
	unsigned line;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct src *s, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	snprintf(s->err, s->errlen, "%s:%u: %s", s->name, s->line, what);
	return -1;
}

static void free_list(char **l)
{
	for (size_t i = 0; l && l[i]; i++)
		free(l[i]);
	free(l);
}

static void rule_free(struct rule *r)
{
	free_list(r->stage);
	free_list(r->enh);
	if (r->has_re)
		regfree(&r->re);
}

/* "a,b*,none" -> {"a", "b*", "", NULL}; "*" -> NULL (any). */
static char **glob_list(const char *f)
{
	if (strcmp(f, "*") == 0)
		return NULL;
	size_t n = 1;
	for (const char *p = f; *p; p++)
		n += *p == ',';
	char **l = vl_calloc(n + 1, sizeof *l);
	const char *p = f;
	for (size_t i = 0; i < n; i++) {
		size_t len = strcspn(p, ",");
		bool none = len == 4 && strncmp(p, "none", 4) == 0;
		l[i] = vl_strndup(p, none ? 0 : len);
		p += len + (p[len] == ',');
	}
	return l;
}

static bool list_match(char *const *l, const char *s)
{
	if (!l)
		return true;
	for (; *l; l++)
		if (vl_glob_match(*l, s))
			return true;
	return false;
}

static int parse_codes(struct src *s, struct rule *r, const char *f)
{
	char **l = glob_list(f);
	for (size_t i = 0; l && l[i]; i++)
		if (strspn(l[i], "0123456789*?") != strlen(l[i]) || strlen(l[i]) > 3) {
			free_list(l);
			return fail(s, "code '%s': globs of digits, '*', '?', or none", f);
		}
	char num[4];
	for (int c = 0; c < 1000; c++) {
		snprintf(num, sizeof num, "%d", c);
		if (c == 0 ? list_match(l, "") : list_match(l, num))
			r->codes[c / 8] |= (uint8_t)(1u << (c % 8));
	}
	free_list(l);
	return 0;
}

static bool code_bit(const struct rule *r, int c)
{
	return r->codes[c / 8] & (1u << (c % 8));
}

/* The verdict is checked against the codes the rule can match. */
static int parse_verdict(struct src *s, struct rule *r, const char *f)
{
	if (strcmp(f, "hard") == 0)
		r->verdict = V_HARD;
	else if (strcmp(f, "soft") == 0)
		r->verdict = V_SOFT;
	else if (strcmp(f, "auto") == 0)
		r->verdict = V_AUTO;
	else
		return fail(s, "verdict '%s': hard, soft or auto", f);
	if (r->cls == SCHED_BC_RATE_LIMITED && r->verdict != V_SOFT)
		return fail(s, "rate-limited must be soft (the site is backed off, "
			    "the recipient retried)");
	for (int c = 400; r->verdict == V_HARD && c < 500; c++)
		if (code_bit(r, c))
			return fail(s, "a hard rule matches the 4xx code %d: a 4xx is "
				    "never hard (write the code as 5* or use auto)", c);
	return 0;
}

/* "/re/" (with "\/" for '/') or "*", then nothing but a comment. */
static int parse_text(struct src *s, struct rule *r, const char *p, const char *end)
{
	if (*p == '*') {
		p++;
	} else if (*p == '/') {
		char *re = vl_malloc((size_t)(end - p) + 1), *o = re;
		for (p++; p < end && *p != '/'; p++) {
			if (*p == '\\' && p + 1 < end && p[1] == '/')
				p++;
			*o++ = *p;
		}
		*o = '\0';
		if (p == end) {
			free(re);
			return fail(s, "text: no closing '/'");
		}
		p++;
		int rc = regcomp(&r->re, re, REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc) {
			char why[128];
			regerror(rc, &r->re, why, sizeof why);
			fail(s, "text /%s/: %s", re, why);
			free(re);
			return -1;
		}
		free(re);
		r->has_re = true;
	} else {
		return fail(s, "text: /regex/ or *");
	}
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p < end && *p != '#')
		return fail(s, "unexpected '%.*s' after the text", (int)(end - p), p);
	return 0;
}

#define FIELD_MAX 256

/* Up to n whitespace-separated fields of [*p, end) into f; -1 when one is
 * too long. */
static int fields(const char **p, const char *end, char f[][FIELD_MAX], int n)
{
	int i = 0;
	while (i < n) {
		while (*p < end && (**p == ' ' || **p == '\t'))
			(*p)++;
		size_t len = 0;
		while (*p + len < end && (*p)[len] != ' ' && (*p)[len] != '\t')
			len++;
		if (len >= FIELD_MAX)
			return -1;
		if (!len)
			break;
		memcpy(f[i], *p, len);
		f[i++][len] = '\0';
		*p += len;
	}
	while (*p < end && (**p == ' ' || **p == '\t'))
		(*p)++;
	return i;
}

static int parse_rule(struct src *s, struct rule *r, const char *p, const char *end)
{
	char f[5][FIELD_MAX];
	int n = fields(&p, end, f, 5);
	if (n < 0)
		return fail(s, "a field longer than %d octets", FIELD_MAX - 1);
	if (n < 5 || p == end)
		return fail(s, "want: class verdict stage code enhanced text");
	if (sched_bounce_class_parse(f[0], &r->cls))
		return fail(s, "unknown class '%s'", f[0]);
	if (parse_codes(s, r, f[3]) || parse_verdict(s, r, f[1]))
		return -1;
	r->stage = glob_list(f[2]);
	r->enh = glob_list(f[4]);
	return parse_text(s, r, p, end);
}

static struct rule *grow(struct sched_bounce_rules *rs)
{
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 64;
		rs->r = vl_realloc(rs->r, rs->cap * sizeof *rs->r);
	}
	struct rule *r = &rs->r[rs->n];
	memset(r, 0, sizeof *r);
	return r;
}

static int load_text(struct sched_bounce_rules *rs, struct src *s, const char *t,
		     size_t len)
{
	const char *end = t + len;
	for (const char *p = t; p < end; s->line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end, *q = p;
		p = nl ? nl + 1 : end;
		if (le > q && le[-1] == '\r')
			le--;
		while (q < le && (*q == ' ' || *q == '\t'))
			q++;
		if (q == le || *q == '#')
			continue;
		struct rule *r = grow(rs);
		if (parse_rule(s, r, q, le)) {
			rule_free(r);
			return -1;
		}
		rs->n++;
	}
	return 0;
}

static int load_file(struct sched_bounce_rules *rs, struct src *s)
{
	FILE *f = fopen(s->name, "r");
	if (!f) {
		snprintf(s->err, s->errlen, "%s: %s", s->name, strerror(errno));
		return -1;
	}
	struct vl_buf b;
	vl_buf_init(&b);
	size_t n;
	do {
		n = fread(vl_buf_reserve(&b, 65536), 1, 65536, f);
		b.len += n;
	} while (n == 65536);
	int bad = ferror(f);
	fclose(f);
	int rc = bad ? -1 : load_text(rs, s, b.p ? b.p : "", b.len);
	if (bad)
		snprintf(s->err, s->errlen, "%s: read error", s->name);
	vl_buf_free(&b);
	return rc;
}

struct sched_bounce_rules *sched_bounce_load(const char *user_file, char *err,
					     size_t errlen)
{
	struct sched_bounce_rules *rs = vl_calloc(1, sizeof *rs);
	struct src s = { .name = user_file, .line = 1, .err = err, .errlen = errlen };
	if (user_file && *user_file && load_file(rs, &s)) {
		sched_bounce_free(rs);
		return NULL;
	}
	s = (struct src){ .name = "scheduler/bounce.rules (built in)", .line = 1,
			  .err = err, .errlen = errlen };
	if (load_text(rs, &s, sched_bounce_builtin, strlen(sched_bounce_builtin))) {
		sched_bounce_free(rs);
		return NULL;
	}
	return rs;
}

void sched_bounce_free(struct sched_bounce_rules *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n; i++)
		rule_free(&rs->r[i]);
	free(rs->r);
	free(rs);
}

/* ---- classifying ---- */

/* Line breaks and runs of white space become one space, so a rule need
 * not guess where a provider wrapped its lines. */
static void fold(const char *t, char *out, size_t max)
{
	size_t o = 0;
	bool space = true;       /* drops leading white space */
	for (; t && *t && o + 1 < max; t++) {
		bool ws = *t == ' ' || *t == '\t' || *t == '\r' || *t == '\n';
		if (ws && space)
			continue;
		out[o++] = ws ? ' ' : *t;
		space = ws;
	}
	if (o && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

static bool rule_match(const struct rule *r, int code, const char *enh,
		       const char *stage, const char *text)
{
	return code_bit(r, code) && list_match(r->enh, enh) &&
	       list_match(r->stage, stage) &&
	       (!r->has_re || regexec(&r->re, text, 0, NULL, 0) == 0);
}

void sched_bounce_classify(const struct sched_bounce_rules *rs, int code,
			   const char *enhanced, const char *text, const char *stage,
			   struct sched_bounce_verdict *v)
{
	char folded[TEXT_MAX];
	if (code < 0 || code > 999)
		code = 0;        /* not a reply code: as if none came */
	fold(text, folded, sizeof folded);
	v->cls = SCHED_BC_OTHER;
	v->hard = code >= 500;
	for (size_t i = 0; rs && i < rs->n; i++) {
		const struct rule *r = &rs->r[i];
		if (!rule_match(r, code, enhanced ? enhanced : "", stage ? stage : "",
				folded))
			continue;
		v->cls = r->cls;
		v->hard = r->verdict == V_HARD || (r->verdict == V_AUTO && code >= 500);
		break;
	}
	if (code >= 400 && code < 500)
		v->hard = false;  /* load refuses such rules; kept as a guarantee */
}
