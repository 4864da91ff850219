/*
 * One UTC day's TLS sessions per policy domain (RFC 8460 4), bounded, and
 * the report JSON of section 4.4. Pure: no I/O, no locks (store.c owns a
 * day and locks around it).
 */
#include "tlsrpt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct detail {
	char *type, *sip, *mx, *rip, *reason;   /* NULL: not known */
	uint64_t n;
};

struct policy {
	char *type, *strings, *mx;              /* strings, mx: lines, or NULL */
	uint64_t ok, fail;
	struct detail *d;
	size_t nd, capd;
};

struct dom {
	char name[254];
	struct policy p[RPT_POLICIES_MAX];
	size_t np;
	size_t ndetails;                         /* over every policy */
	uint64_t details_over, policies_over;    /* sessions not fully kept */
	bool dirty;
};

struct rpt_day {
	int64_t day;
	json_t *index;                           /* name -> position in v */
	struct dom **v;
	size_t n, cap;
	uint64_t dropped;
};

/* ---- days and names ---- */

int64_t rpt_day_of(double t)
{
	int64_t s = (int64_t)t;

	return (s >= 0 ? s : s - 86399) / 86400;
}

void rpt_day_format(int64_t day, char out[11])
{
	time_t t = (time_t)(day * 86400);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, 11, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
		 (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u);
}

int rpt_day_parse(const char *s, int64_t *day)
{
	struct tm tm = { 0 };
	char back[11];

	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return -1;
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = atoi(s + 5) - 1;
	tm.tm_mday = atoi(s + 8);
	if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1)
		return -1;
	*day = rpt_day_of((double)timegm(&tm));
	rpt_day_format(*day, back);
	return strcmp(back, s) ? -1 : 0;          /* 2026-02-30 is no date */
}

/* ---- the aggregates ---- */

struct rpt_day *rpt_day_new(int64_t day)
{
	struct rpt_day *d = vl_calloc(1, sizeof *d);

	d->day = day;
	d->index = json_object();
	return d;
}

static void policy_free(struct policy *p)
{
	for (size_t i = 0; i < p->nd; i++) {
		struct detail *x = &p->d[i];
		free(x->type), free(x->sip), free(x->mx), free(x->rip), free(x->reason);
	}
	free(p->d);
	free(p->type), free(p->strings), free(p->mx);
}

void rpt_day_free(struct rpt_day *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		for (size_t j = 0; j < d->v[i]->np; j++)
			policy_free(&d->v[i]->p[j]);
		free(d->v[i]);
	}
	free(d->v);
	json_decref(d->index);
	free(d);
}

int64_t rpt_day_day(const struct rpt_day *d)
{
	return d->day;
}

size_t rpt_day_ndomains(const struct rpt_day *d)
{
	return d->n;
}

const char *rpt_day_domain(const struct rpt_day *d, size_t i, bool *dirty)
{
	if (dirty)
		*dirty = d->v[i]->dirty;
	return d->v[i]->name;
}

void rpt_day_set_dirty(struct rpt_day *d, size_t i, bool dirty)
{
	d->v[i]->dirty = dirty;
}

uint64_t rpt_day_dropped(const struct rpt_day *d)
{
	return d->dropped;
}

static struct dom *dom_find(struct rpt_day *d, const char *name, bool create)
{
	json_t *at = json_object_get(d->index, name);

	if (at)
		return d->v[json_integer_value(at)];
	if (!create || d->n >= RPT_DOMAINS_MAX)
		return NULL;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->v = vl_realloc(d->v, d->cap * sizeof *d->v);
	}
	struct dom *m = vl_calloc(1, sizeof *m);
	snprintf(m->name, sizeof m->name, "%s", name);
	json_object_set_new(d->index, name, json_integer((json_int_t)d->n));
	d->v[d->n++] = m;
	return m;
}

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* s cut to max octets (NULL and "" stay NULL: absent). */
static char *dup_max(const char *s, size_t max)
{
	return s && *s ? vl_strndup(s, max) : NULL;
}

static struct policy *policy_find(struct dom *m, const char *type, const char *strings,
				  const char *mx)
{
	char *s = dup_max(strings, RPT_STRINGS_MAX), *x = dup_max(mx, RPT_STRINGS_MAX);
	struct policy *p = NULL;

	for (size_t i = 0; i < m->np && !p; i++)
		if (!strcmp(m->p[i].type, type) && same(m->p[i].strings, s) && same(m->p[i].mx, x))
			p = &m->p[i];
	if (p || m->np == RPT_POLICIES_MAX) {
		free(s), free(x);
		return p;
	}
	p = &m->p[m->np++];
	*p = (struct policy){ .type = vl_strdup(type), .strings = s, .mx = x };
	return p;
}

static struct detail *detail_find(struct dom *m, struct policy *p, const struct rpt_session *s)
{
	char *reason = dup_max(s->reason, RPT_REASON_MAX);

	for (size_t i = 0; i < p->nd; i++) {
		struct detail *x = &p->d[i];
		if (same(x->type, s->result_type) && same(x->sip, s->sending_ip) &&
		    same(x->mx, s->receiving_mx) && same(x->rip, s->receiving_ip) &&
		    same(x->reason, reason)) {
			free(reason);
			return x;
		}
	}
	if (m->ndetails >= RPT_DETAILS_MAX) {
		free(reason);
		return NULL;
	}
	if (p->nd == p->capd) {
		p->capd = p->capd ? p->capd * 2 : 4;
		p->d = vl_realloc(p->d, p->capd * sizeof *p->d);
	}
	m->ndetails++;
	p->d[p->nd] = (struct detail){
		.type = vl_strdup(s->result_type ? s->result_type : "validation-failure"),
		.sip = dup_max(s->sending_ip, 64), .mx = dup_max(s->receiving_mx, 253),
		.rip = dup_max(s->receiving_ip, 64), .reason = reason,
	};
	return &p->d[p->nd++];
}

/* Count n sessions of s (n > 1 when loading a stored detail). */
static int add_n(struct rpt_day *d, const struct rpt_session *s, uint64_t n)
{
	char name[254];
	struct dom *m;

	if (vl_domain_norm(s->domain, name) < 0 || !(m = dom_find(d, name, true))) {
		d->dropped += n;
		return -1;
	}
	m->dirty = true;
	struct policy *p = policy_find(m, s->policy_type ? s->policy_type : "no-policy-found",
				       s->policy_strings, s->mx_patterns);
	if (!p) {
		m->policies_over += n;
		return 1;
	}
	if (s->success) {
		p->ok += n;
		return 0;
	}
	p->fail += n;
	struct detail *x = detail_find(m, p, s);
	if (!x) {
		m->details_over += n;
		return 1;
	}
	x->n += n;
	return 0;
}

int rpt_day_add(struct rpt_day *d, const struct rpt_session *s)
{
	return add_n(d, s, 1);
}

/* ---- JSON ---- */

static json_t *lines_json(const char *s)
{
	json_t *a = json_array();

	while (s && *s) {
		const char *e = strchr(s, '\n');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n)
			json_array_append_new(a, json_stringn(s, n));
		s = e ? e + 1 : NULL;
	}
	return a;
}

static void set_opt(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

static json_t *detail_json(const struct detail *x)
{
	json_t *o = json_pack("{s:s}", "result-type", x->type);

	set_opt(o, "sending-mta-ip", x->sip);
	set_opt(o, "receiving-mx-hostname", x->mx);
	set_opt(o, "receiving-ip", x->rip);
	json_object_set_new(o, "failed-session-count", json_integer((json_int_t)x->n));
	set_opt(o, "failure-reason-code", x->reason);
	return o;
}

static json_t *policy_json(const struct dom *m, const struct policy *p)
{
	json_t *pol = json_pack("{s:s}", "policy-type", p->type), *fd = json_array();

	if (p->strings)
		json_object_set_new(pol, "policy-string", lines_json(p->strings));
	json_object_set_new(pol, "policy-domain", json_string(m->name));
	if (p->mx)
		json_object_set_new(pol, "mx-host", lines_json(p->mx));
	for (size_t i = 0; i < p->nd; i++)
		json_array_append_new(fd, detail_json(&p->d[i]));
	return json_pack("{s:o, s:{s:I, s:I}, s:o}", "policy", pol, "summary",
			 "total-successful-session-count", (json_int_t)p->ok,
			 "total-failure-session-count", (json_int_t)p->fail, "failure-details", fd);
}

json_t *rpt_day_domain_json(const struct rpt_day *d, const char *domain)
{
	char name[254], date[11];
	struct dom *m;

	if (vl_domain_norm(domain, name) < 0 || !(m = dom_find((struct rpt_day *)d, name, false)))
		return NULL;
	json_t *ps = json_array();
	for (size_t i = 0; i < m->np; i++)
		json_array_append_new(ps, policy_json(m, &m->p[i]));
	rpt_day_format(d->day, date);
	return json_pack("{s:s, s:s, s:o, s:{s:I, s:I}}", "policy-domain", m->name, "date", date,
			 "policies", ps, "overflow", "failure-details", (json_int_t)m->details_over,
			 "policies", (json_int_t)m->policies_over);
}

/* An array of strings as lines (NULL when absent or empty); false when
 * it is not an array of strings. */
static bool join_lines(const json_t *a, struct vl_buf *b)
{
	size_t i;
	json_t *v;

	vl_buf_reset(b);
	if (!a)
		return true;
	if (!json_is_array(a))
		return false;
	json_array_foreach(a, i, v) {
		if (!json_is_string(v))
			return false;
		vl_buf_printf(b, "%s%s", i ? "\n" : "", json_string_value(v));
	}
	vl_buf_append(b, "", 1);
	return true;
}

static const char *str_of(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static uint64_t count_of(const json_t *o, const char *k, bool *ok)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		*ok = false;
		return 0;
	}
	return (uint64_t)json_integer_value(v);
}

static int load_policy(struct rpt_day *d, const char *domain, const json_t *pe,
		       struct vl_buf *strings, struct vl_buf *mx)
{
	const json_t *pol = json_object_get(pe, "policy"), *sum = json_object_get(pe, "summary");
	const json_t *fd = json_object_get(pe, "failure-details"), *x;
	bool ok = true;
	size_t i;

	if (!json_is_object(pol) || !json_is_object(sum) || !str_of(pol, "policy-type") ||
	    !join_lines(json_object_get(pol, "policy-string"), strings) ||
	    !join_lines(json_object_get(pol, "mx-host"), mx) || (fd && !json_is_array(fd)))
		return -1;
	struct rpt_session s = {
		.domain = domain, .policy_type = str_of(pol, "policy-type"),
		.policy_strings = strings->len ? strings->p : NULL, .mx_patterns = mx->len ? mx->p : NULL,
		.success = true,
	};
	uint64_t okn = count_of(sum, "total-successful-session-count", &ok);
	uint64_t failn = count_of(sum, "total-failure-session-count", &ok), detailed = 0;
	if (!ok)
		return -1;
	if (okn)
		add_n(d, &s, okn);
	s.success = false;
	json_array_foreach(fd, i, x) {
		s.result_type = str_of(x, "result-type");
		s.sending_ip = str_of(x, "sending-mta-ip");
		s.receiving_mx = str_of(x, "receiving-mx-hostname");
		s.receiving_ip = str_of(x, "receiving-ip");
		s.reason = str_of(x, "failure-reason-code");
		uint64_t n = count_of(x, "failed-session-count", &ok);
		if (!ok || !s.result_type || n > failn - detailed)
			return -1;
		add_n(d, &s, n);
		detailed += n;
	}
	if (failn > detailed) {       /* those whose details did not fit */
		char name[254];
		vl_domain_norm(domain, name);
		struct dom *m = dom_find(d, name, false);
		struct policy *p = m ? policy_find(m, s.policy_type, s.policy_strings,
						   s.mx_patterns) : NULL;
		if (p)
			p->fail += failn - detailed;
	}
	return 0;
}

int rpt_day_load(struct rpt_day *d, const json_t *stored, char *err, size_t errlen)
{
	const char *domain = str_of(stored, "policy-domain");
	const json_t *ps = json_object_get(stored, "policies"), *pe;
	const json_t *over = json_object_get(stored, "overflow");
	struct vl_buf strings, mx;
	char name[254];
	size_t i;
	int rc = 0;

	if (!domain || vl_domain_norm(domain, name) < 0 || !json_is_array(ps)) {
		snprintf(err, errlen, "not a TLS-RPT aggregate: no valid policy-domain or policies");
		return -1;
	}
	vl_buf_init(&strings);
	vl_buf_init(&mx);
	json_array_foreach(ps, i, pe)
		if (rc == 0 && load_policy(d, name, pe, &strings, &mx) < 0) {
			snprintf(err, errlen, "policies[%zu]: malformed", i);
			rc = -1;
		}
	vl_buf_free(&strings);
	vl_buf_free(&mx);
	struct dom *m = dom_find(d, name, false);
	if (m && json_is_object(over)) {
		json_int_t a = json_integer_value(json_object_get(over, "failure-details"));
		json_int_t b = json_integer_value(json_object_get(over, "policies"));
		m->details_over += a > 0 ? (uint64_t)a : 0;
		m->policies_over += b > 0 ? (uint64_t)b : 0;
	}
	if (m)
		m->dirty = false;     /* what is on disk */
	return rc;
}

void rpt_report_id(const char *date, const char *domain, const char *submitter,
		   char *out, size_t len)
{
	snprintf(out, len, "%s.%s@%s", date, domain, submitter);
}

json_t *rpt_report_json(const json_t *stored, const struct rpt_meta *m)
{
	const char *date = str_of(stored, "date"), *domain = str_of(stored, "policy-domain");
	char start[32], end[32], id[600];

	if (!date || !domain)
		return NULL;
	snprintf(start, sizeof start, "%sT00:00:00Z", date);
	snprintf(end, sizeof end, "%sT23:59:59Z", date);
	rpt_report_id(date, domain, m->submitter, id, sizeof id);
	return json_pack("{s:s, s:{s:s, s:s}, s:s, s:s, s:O}", "organization-name", m->organization,
			 "date-range", "start-datetime", start, "end-datetime", end,
			 "contact-info", m->contact, "report-id", id,
			 "policies", json_object_get(stored, "policies"));
}
