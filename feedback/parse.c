/* fb_parse: the message's header, then the multipart/report it is (or
 * holds, nested at most max_depth deep), its status or feedback part, the
 * returned message's header; else the heuristic (heur.c). */
#include "fb_int.h"
#include "../common/common.h"

#include <string.h>
#include <strings.h>

struct ctx {
	const struct fb_opts *o;
	struct fb_report *r;
	unsigned budget;        /* MIME parts left */
	unsigned max_parts;
	char *err;
	size_t errlen;
};

void fb_opts_default(struct fb_opts *o)
{
	*o = (struct fb_opts){ .max_size = FB_MAX_SIZE, .max_depth = FB_MAX_DEPTH,
			       .max_parts = FB_MAX_PARTS, .max_rcpts = FB_MAX_RCPTS };
}

const char *fb_kind_name(enum fb_kind k)
{
	static const char *const names[] = { "not-report", "dsn", "arf", "bounce-heuristic" };
	return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

const char *fb_action_name(enum fb_action a)
{
	static const char *const names[] = { "", "failed", "delayed", "delivered",
					     "relayed", "expanded", "other" };
	return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

static void rcpt_free(struct fb_rcpt *x)
{
	free(x->final_rcpt);
	free(x->orig_rcpt);
	free(x->diag_type);
	free(x->diag);
	free(x->remote_mta);
}

void fb_report_free(struct fb_report *r)
{
	for (size_t i = 0; i < r->nrcpts; i++)
		rcpt_free(&r->rcpts[i]);
	free(r->rcpts);
	for (size_t i = 0; i < r->norig_rcpt_to; i++)
		free(r->orig_rcpt_to[i]);
	free(r->orig_rcpt_to);
	char *s[] = { r->envelope_to, r->from, r->subject, r->reporting_mta, r->arrival_date,
		      r->feedback_type, r->user_agent, r->version, r->orig_mail_from,
		      r->source_ip, r->reported_domain, r->orig_msgid, r->orig_from,
		      r->orig_to, r->orig_subject };
	for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
		free(s[i]);
	memset(r, 0, sizeof *r);
}

/* "type; value": the value trimmed (the whole when there is no ';'). */
static char *typed_value(const struct fb_field *f)
{
	const char *semi = memchr(f->val, ';', f->vlen);
	const char *v = semi ? semi + 1 : f->val;
	return fb_trimdup(v, (size_t)(f->val + f->vlen - v));
}

static void keep(char **slot, char *v)
{
	if (*slot)
		free(v);
	else
		*slot = v;
}

static enum fb_action action_of(const char *v)
{
	static const char *const names[] = { "failed", "delayed", "delivered", "relayed",
					     "expanded" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strncasecmp(v, names[i], strlen(names[i])))
			return (enum fb_action)(FB_ACT_FAILED + i);
	return FB_ACT_OTHER;
}

/* "rfc822; addr": an address with an '@' (a cut or odd value is none) */
static char *mailbox(const char *v)
{
	char *a = fb_addr_of(v, true);
	if (a && !strchr(a, '@')) {
		free(a);
		a = NULL;
	}
	return a;
}

static void rcpt_field(struct fb_rcpt *x, const struct fb_field *f)
{
	if (fb_field_is(f, "Final-Recipient")) {
		keep(&x->final_rcpt, mailbox(f->val));
	} else if (fb_field_is(f, "Original-Recipient")) {
		keep(&x->orig_rcpt, mailbox(f->val));
	} else if (fb_field_is(f, "Action")) {
		x->action = action_of(f->val);
	} else if (fb_field_is(f, "Status")) {
		size_t n = fb_status_at(f->val, f->vlen);
		if (n && n < FB_STATUS_MAX) {
			memcpy(x->status, f->val, n);
			x->status[n] = '\0';
		}
	} else if (fb_field_is(f, "Diagnostic-Code")) {
		const char *semi = strchr(f->val, ';');
		if (semi && !x->diag) {
			x->diag_type = fb_trimdup(f->val, (size_t)(semi - f->val));
			x->diag = fb_trimdup(semi + 1, strlen(semi + 1));
		} else if (!x->diag) {
			x->diag = fb_trimdup(f->val, f->vlen);
		}
	} else if (fb_field_is(f, "Remote-MTA")) {
		keep(&x->remote_mta, typed_value(f));
	}
}

/* The message/delivery-status body: the per-message block, then one block
 * per recipient (RFC 3464 2.1). */
static int dsn_fields(struct ctx *c, const char *p, size_t n)
{
	struct fb_hdr_it it;
	struct fb_field f;
	const char *end = p + n;
	bool first = true;
	int rc;

	fb_hdr_init(&it, p, n);
	while (it.p < end) {
		struct fb_rcpt x = { 0 };
		bool any = false;

		it.nfields = 0;
		while ((rc = fb_hdr_next(&it, &f, c->err, c->errlen)) == 1) {
			any = true;
			if (!first) {
				rcpt_field(&x, &f);
			} else if (fb_field_is(&f, "Reporting-MTA")) {
				keep(&c->r->reporting_mta, typed_value(&f));
			} else if (fb_field_is(&f, "Arrival-Date")) {
				keep(&c->r->arrival_date, fb_trimdup(f.val, f.vlen));
			}
		}
		if (rc < 0) {
			rcpt_free(&x);
			return -1;
		}
		if (!any)
			continue;       /* extra blank lines */
		if (first) {
			first = false;
			continue;
		}
		struct fb_rcpt *slot = x.final_rcpt || x.orig_rcpt ? fb_rcpt_add(c->r, c->o->max_rcpts)
								  : NULL;
		if (slot)
			*slot = x;
		else
			rcpt_free(&x);
		if (c->r->truncated)
			break;
	}
	if (!c->r->nrcpts) {
		fb_errf(c->err, c->errlen, "a delivery-status part without a per-recipient block");
		return -1;
	}
	return 0;
}

static void list_add(struct fb_report *r, char *v, size_t max)
{
	if (!v)
		return;
	if (r->norig_rcpt_to >= max) {
		r->truncated = true;
		free(v);
		return;
	}
	if ((r->norig_rcpt_to & (r->norig_rcpt_to - 1)) == 0)
		r->orig_rcpt_to = vl_realloc(r->orig_rcpt_to,
					     (r->norig_rcpt_to ? r->norig_rcpt_to * 2 : 1) * sizeof(char *));
	r->orig_rcpt_to[r->norig_rcpt_to++] = v;
}

/* The message/feedback-report body (RFC 5965 3.1, 3.2). */
static int arf_fields(struct ctx *c, const char *p, size_t n)
{
	struct fb_hdr_it it;
	struct fb_field f;
	struct fb_report *r = c->r;
	int rc;

	fb_hdr_init(&it, p, n);
	while ((rc = fb_hdr_next(&it, &f, c->err, c->errlen)) == 1) {
		if (fb_field_is(&f, "Feedback-Type"))
			keep(&r->feedback_type, fb_trimdup(f.val, f.vlen));
		else if (fb_field_is(&f, "User-Agent"))
			keep(&r->user_agent, fb_trimdup(f.val, f.vlen));
		else if (fb_field_is(&f, "Version"))
			keep(&r->version, fb_trimdup(f.val, f.vlen));
		else if (fb_field_is(&f, "Original-Mail-From"))
			keep(&r->orig_mail_from, fb_addr_of(f.val, false));
		else if (fb_field_is(&f, "Original-Rcpt-To"))
			list_add(r, fb_addr_of(f.val, false), c->o->max_rcpts);
		else if (fb_field_is(&f, "Arrival-Date") || fb_field_is(&f, "Received-Date"))
			keep(&r->arrival_date, fb_trimdup(f.val, f.vlen));
		else if (fb_field_is(&f, "Source-IP"))
			keep(&r->source_ip, fb_trimdup(f.val, f.vlen));
		else if (fb_field_is(&f, "Reported-Domain"))
			keep(&r->reported_domain, fb_trimdup(f.val, f.vlen));
	}
	if (rc < 0)
		return -1;
	if (!r->feedback_type) {
		fb_errf(c->err, c->errlen, "a feedback-report part without Feedback-Type");
		return -1;
	}
	return 0;
}

static bool is_returned(const char *type)
{
	return !strcmp(type, "message/rfc822") || !strcmp(type, "text/rfc822-headers") ||
	       !strcmp(type, "message/global") || !strcmp(type, "message/global-headers");
}

/* multipart/report: its machine-readable part (want) and the returned
 * message or header after it. */
static int report(struct ctx *c, const struct fb_entity *e, bool dsn)
{
	struct fb_slice parts[FB_MAX_PARTS];
	size_t np, len;
	bool found = false;

	if (fb_multipart(e->body, e->ct.boundary, parts, FB_MAX_PARTS, &np, &c->budget, c->err,
			 c->errlen))
		return -1;
	for (size_t i = 0; i < np; i++) {
		struct fb_entity pe;
		if (fb_entity_parse(parts[i].p, parts[i].n, &pe, NULL, c->err, c->errlen))
			return -1;
		const char *t = pe.ct.type;
		bool want = dsn ? !strcmp(t, "message/delivery-status") ||
					  !strcmp(t, "message/global-delivery-status")
				: !strcmp(t, "message/feedback-report");
		if (want && !found) {
			/* the status part is decoded whole: its size is bounded by the message's */
			char *d = fb_decode(&pe, pe.body.n, &len);
			int rc = dsn ? dsn_fields(c, d, len) : arf_fields(c, d, len);
			free(d);
			if (rc)
				return -1;
			found = true;
		} else if (found && is_returned(t) && !c->r->orig_msgid) {
			char *d = fb_decode(&pe, FB_TEXT_MAX, &len);
			int rc = fb_orig_headers(d, len, c->r, c->err, c->errlen);
			free(d);
			/* a returned header cut at FB_TEXT_MAX is still what it has */
			(void)rc;
		}
	}
	if (!found) {
		fb_errf(c->err, c->errlen, "a multipart/report (%s) without its %s part",
			dsn ? "delivery-status" : "feedback-report",
			dsn ? "message/delivery-status" : "message/feedback-report");
		return -1;
	}
	c->r->kind = dsn ? FB_DSN : FB_ARF;
	return 0;
}

static bool multipart_ok(struct ctx *c, const struct fb_entity *e)
{
	if (e->ct.boundary_ok)
		return true;
	fb_errf(c->err, c->errlen, "%s %s", e->ct.type,
		e->ct.has_boundary ? "with a boundary RFC 2046 refuses (1-70 characters of its set)"
				   : "without a boundary");
	return false;
}

/* The report in e, or in a multipart/mixed holding it: 1 found, 0 none. */
static int find_report(struct ctx *c, const struct fb_entity *e, unsigned depth)
{
	if (depth > c->o->max_depth) {
		fb_errf(c->err, c->errlen, "MIME nesting deeper than %u levels", c->o->max_depth);
		return -1;
	}
	if (strncmp(e->ct.type, "multipart/", 10))
		return 0;
	if (!multipart_ok(c, e))
		return -1;
	if (!strcmp(e->ct.type, "multipart/report")) {
		if (!strcmp(e->ct.report_type, "delivery-status"))
			return report(c, e, true) ? -1 : 1;
		if (!strcmp(e->ct.report_type, "feedback-report"))
			return report(c, e, false) ? -1 : 1;
		return 0;
	}
	if (strcmp(e->ct.type, "multipart/mixed"))
		return 0;
	struct fb_slice parts[FB_MAX_PARTS];
	size_t np;
	if (fb_multipart(e->body, e->ct.boundary, parts, FB_MAX_PARTS, &np, &c->budget, c->err,
			 c->errlen))
		return -1;
	for (size_t i = 0; i < np; i++) {
		struct fb_entity pe;
		if (fb_entity_parse(parts[i].p, parts[i].n, &pe, NULL, c->err, c->errlen))
			return -1;
		int rc = find_report(c, &pe, depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

static void top_free(struct fb_top *t)
{
	free(t->delivered_to);
	free(t->to);
	free(t->from);
	free(t->subject);
}

int fb_parse(const char *msg, size_t len, const struct fb_opts *o, struct fb_report *out,
	     char *err, size_t errlen)
{
	struct fb_opts def;
	struct fb_top top = { 0 };
	struct fb_entity e;
	int rc = -1;

	/* NULL, or a field left 0, means the default */
	fb_opts_default(&def);
	if (o) {
		def.max_size = o->max_size ? o->max_size : def.max_size;
		def.max_depth = o->max_depth ? o->max_depth : def.max_depth;
		def.max_parts = o->max_parts ? o->max_parts : def.max_parts;
		def.max_rcpts = o->max_rcpts ? o->max_rcpts : def.max_rcpts;
	}
	o = &def;
	memset(out, 0, sizeof *out);
	if (errlen)
		err[0] = '\0';
	unsigned parts = o->max_parts < FB_MAX_PARTS ? o->max_parts : FB_MAX_PARTS;
	struct ctx c = { o, out, parts, parts, err, errlen };
	if (len > o->max_size) {
		fb_errf(err, errlen, "message of %zu octets over the limit of %zu", len, o->max_size);
		return -1;
	}
	if (fb_entity_parse(msg, len, &e, &top, err, errlen))
		goto out;
	out->envelope_to = fb_addr_of(top.delivered_to ? top.delivered_to : top.to ? top.to : "",
				      false);
	out->from = top.from ? vl_strdup(top.from) : NULL;
	out->subject = top.subject ? vl_strdup(top.subject) : NULL;
	int found = find_report(&c, &e, 0);
	if (found < 0)
		goto out;
	/* the heuristic reads the same parts again: a budget of its own */
	unsigned budget = c.max_parts;
	if (!found && fb_heuristic(&e, &top, o, &budget, out, err, errlen))
		goto out;
	rc = 0;
out:
	top_free(&top);
	if (rc)
		fb_report_free(out);
	return rc;
}
