/* Non-standard bounces (docs/feedback.md, "The heuristic"): a plain-text
 * bounce from a bounce-looking sender or with a bounce-looking Subject,
 * qmail's QSBMF, Exchange's NDR text. Reads at most FB_TEXT_MAX octets of
 * the first text/plain part; nothing here recurses. */
#include "fb_int.h"
#include "../common/common.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define DIAG_MAX 512
#define PARA_MAX 2048  /* a recipient's paragraph read for its status */

struct text {
	const char *p;
	size_t n;
};

static bool has(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; i + k <= n; i++)
		if (tolower((unsigned char)s[i]) == needle[0] && !strncasecmp(s + i, needle, k))
			return true;
	return false;
}

static bool has_any(const char *s, size_t n, const char *const *list)
{
	for (; *list; list++)
		if (has(s, n, *list))
			return true;
	return false;
}

static const char *const bounce_from[] = { "mailer-daemon", "postmaster", "mail delivery",
					   "mail-delivery", NULL };
static const char *const bounce_subject[] = {
	"undelivered mail", "undeliverable", "delivery status notification", "mail delivery failed",
	"returned mail", "failure notice", "delivery failure", "could not be delivered",
	"delivery has failed", "non remis", NULL
};
/* where the explanation ends and the returned message begins */
static const char *const copy_marks[] = { "original message", "below this line is a copy",
					  "this is a copy of the message", "undelivered message",
					  NULL };
#define QMAIL_MARK "this is the qmail-send program"
#define EXCH_MARK "delivery has failed to these recipients or groups"
#define EXCH_ADMIN "diagnostic information for administrators"

/* the next line of t at *pos: start and length (no CR LF); false at the end */
static bool next_line(struct text t, size_t *pos, const char **l, size_t *ln)
{
	if (*pos >= t.n)
		return false;
	const char *s = t.p + *pos;
	const char *nl = memchr(s, '\n', t.n - *pos);
	size_t n = nl ? (size_t)(nl - s) : t.n - *pos;
	*pos += n + (nl ? 1 : 0);
	if (n && s[n - 1] == '\r')
		n--;
	*l = s;
	*ln = n;
	return true;
}

static bool blank(const char *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (l[i] != ' ' && l[i] != '\t')
			return false;
	return true;
}

static bool header_like(const char *l, size_t n)
{
	static const char *const names[] = { "received:", "return-path:", "message-id:",
					     "delivered-to:", NULL };
	for (size_t i = 0; names[i]; i++)
		if (n >= strlen(names[i]) && !strncasecmp(l, names[i], strlen(names[i])))
			return true;
	return false;
}

static bool local_char(char c)
{
	return isalnum((unsigned char)c) || (c && strchr(".!#$%&'*+/=?^_`{|}~-", c));
}

/* The first address in l (n octets) starting the search at 0: into out
 * (NUL-terminated); its start offset, or -1. */
static long addr_in(const char *l, size_t n, char *out, size_t outlen)
{
	for (size_t at = 0; at < n; at++) {
		if (l[at] != '@')
			continue;
		size_t s = at, e = at + 1;
		while (s > 0 && local_char(l[s - 1]))
			s--;
		while (e < n && (isalnum((unsigned char)l[e]) || l[e] == '.' || l[e] == '-'))
			e++;
		while (e > at + 1 && l[e - 1] == '.')
			e--;
		if (s == at || e == at + 1 || !memchr(l + at + 1, '.', e - at - 1) ||
		    e - s >= outlen)
			continue;
		memcpy(out, l + s, e - s);
		out[e - s] = '\0';
		return (long)s;
	}
	return -1;
}

/* a recipient once (case-insensitive), not the report's own addresses */
static struct fb_rcpt *add_rcpt(struct fb_report *r, const char *a, const char *self_from,
				size_t max)
{
	if ((r->envelope_to && !strcasecmp(a, r->envelope_to)) ||
	    (self_from && !strcasecmp(a, self_from)))
		return NULL;
	for (size_t i = 0; i < r->nrcpts; i++)
		if (!strcasecmp(r->rcpts[i].final_rcpt, a))
			return NULL;
	struct fb_rcpt *x = fb_rcpt_add(r, max);
	if (x)
		x->final_rcpt = vl_strdup(a);
	return x;
}

/* the first x.y.z status in s (at a word start; "#5.1.1" counts) */
static size_t find_status(const char *s, size_t n, char out[FB_STATUS_MAX])
{
	for (size_t i = 0; i < n; i++) {
		if (i && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '.'))
			continue;
		size_t k = fb_status_at(s + i, n - i);
		if (k && k < FB_STATUS_MAX) {
			memcpy(out, s + i, k);
			out[k] = '\0';
			return k;
		}
	}
	return 0;
}

/* no x.y.z: the wording decides, permanent unless it says temporary */
static void guess_status(const char *s, size_t n, char out[FB_STATUS_MAX])
{
	bool temp = !has(s, n, "permanent") &&
		    (has(s, n, "temporar") || has(s, n, "delayed") || has(s, n, "will retry") ||
		     (has(s, n, "try again") && !has(s, n, "not going to try again")));
	strcpy(out, temp ? "4.0.0" : "5.0.0");
}

/* a line with an SMTP reply code ("550 ", "550-") or "Remote Server returned" */
static bool diag_line(const char *l, size_t n)
{
	if (has(l, n, "remote server returned"))
		return true;
	for (size_t i = 0; i + 3 < n; i++)
		if ((i == 0 || !isalnum((unsigned char)l[i - 1])) && (l[i] == '4' || l[i] == '5') &&
		    isdigit((unsigned char)l[i + 1]) && isdigit((unsigned char)l[i + 2]) &&
		    (l[i + 3] == ' ' || l[i + 3] == '-'))
			return true;
	return false;
}

static char *trim_max(const char *l, size_t n)
{
	return fb_trimdup(l, n < DIAG_MAX ? n : DIAG_MAX);
}

/* "<addr>:" paragraphs (Postfix's plain bounces, QSBMF): the address and
 * the paragraph after it, its status and diagnostic its own. */
static void paragraphs(struct text t, struct fb_report *r, const char *self, size_t max)
{
	size_t pos = 0, ln;
	const char *l;
	char a[256];

	while (next_line(t, &pos, &l, &ln)) {
		if (ln < 4 || l[0] != '<')
			continue;
		const char *gt = memchr(l, '>', ln);
		if (!gt || gt + 1 >= l + ln || gt[1] != ':' || addr_in(l, (size_t)(gt - l), a, sizeof a) != 1)
			continue;
		struct fb_rcpt *x = add_rcpt(r, a, self, max);
		if (!x)
			continue;
		/* the rest of the line and the paragraph, joined */
		const char *ps = gt + 2;
		size_t pe = pos;
		const char *pl;
		size_t pln;
		size_t scan = pos;
		/* at most PARA_MAX octets: lines without a blank one between
		 * must not make this quadratic */
		while (scan - pos < PARA_MAX && next_line(t, &scan, &pl, &pln) && !blank(pl, pln))
			pe = scan;
		size_t plen = (size_t)(t.p + pe - ps);
		if (!find_status(ps, plen, x->status))
			guess_status(ps, plen, x->status);
		char d[DIAG_MAX + 1];
		size_t dn = 0;
		for (const char *c = ps; c < t.p + pe && dn < DIAG_MAX; c++) {
			char ch = *c == '\r' || *c == '\n' || *c == '\t' ? ' ' : *c;
			if (ch != ' ' || (dn && d[dn - 1] != ' '))
				d[dn++] = ch;
		}
		x->diag = fb_trimdup(d, dn);
	}
}

/* Exchange: the addresses between its mark and the administrators' part. */
static void exchange(struct text t, struct fb_report *r, const char *self, size_t max)
{
	size_t pos = 0, ln;
	const char *l;
	bool in = false;
	char a[256];

	while (next_line(t, &pos, &l, &ln)) {
		if (has(l, ln, EXCH_MARK)) {
			in = true;
			continue;
		}
		if (!in)
			continue;
		if (has(l, ln, EXCH_ADMIN) || has(l, ln, "original message headers"))
			break;
		if (ln < 200 && addr_in(l, ln, a, sizeof a) >= 0)
			add_rcpt(r, a, self, max);
	}
}

/* Lines that are an address alone ("  user@example.com", "<u@x>:"), or
 * say "delivered to ADDR" / "delivery to ADDR". */
static void generic(struct text t, struct fb_report *r, const char *self, size_t max)
{
	size_t pos = 0, ln;
	const char *l;
	char a[256];

	while (next_line(t, &pos, &l, &ln)) {
		while (ln && (*l == ' ' || *l == '\t'))
			l++, ln--;
		while (ln && (l[ln - 1] == ' ' || l[ln - 1] == ':' || l[ln - 1] == '\t'))
			ln--;
		long s = addr_in(l, ln, a, sizeof a);
		if (s < 0)
			continue;
		size_t al = strlen(a), end = (size_t)s + al;
		bool alone = (s == 0 && end == ln) ||
			     (s == 1 && l[0] == '<' && end + 1 == ln && l[end] == '>');
		bool said = false;
		for (size_t i = 0; i + 12 <= (size_t)s && !said; i++)
			said = !strncasecmp(l + i, "delivered to ", 13) ||
			       !strncasecmp(l + i, "delivery to ", 12);
		if (alone || said)
			add_rcpt(r, a, self, max);
	}
}

/* The explanation: the text before the returned copy. */
static struct text explanation(struct text t, struct text *rest)
{
	size_t pos = 0, ln, prev = 0;
	const char *l;

	while (next_line(t, &pos, &l, &ln)) {
		if (has_any(l, ln, copy_marks) || header_like(l, ln)) {
			*rest = (struct text){ t.p + prev, t.n - prev };
			return (struct text){ t.p, prev };
		}
		prev = pos;
	}
	*rest = (struct text){ t.p + t.n, 0 };
	return t;
}

/* The first text/plain and the returned part (message/rfc822 or
 * text/rfc822-headers), a multipart at most two levels deep. */
static int find_parts(const struct fb_entity *top, unsigned *budget, struct fb_entity *text,
		      struct fb_entity *orig, bool *has_text, bool *has_orig, char *err, size_t errlen)
{
	struct fb_slice parts[FB_MAX_PARTS], sub[FB_MAX_PARTS];
	size_t np, ns;

	if (!strcmp(top->ct.type, "text/plain")) {
		*text = *top;
		*has_text = true;
		return 0;
	}
	if (strncmp(top->ct.type, "multipart/", 10) || !top->ct.boundary_ok)
		return 0;
	if (fb_multipart(top->body, top->ct.boundary, parts, FB_MAX_PARTS, &np, budget, err, errlen))
		return -1;
	for (size_t i = 0; i < np; i++) {
		struct fb_entity e;
		if (fb_entity_parse(parts[i].p, parts[i].n, &e, NULL, err, errlen))
			return -1;
		if (!*has_text && !strcmp(e.ct.type, "text/plain")) {
			*text = e;
			*has_text = true;
		} else if (!*has_orig && (!strcmp(e.ct.type, "message/rfc822") ||
					  !strcmp(e.ct.type, "text/rfc822-headers"))) {
			*orig = e;
			*has_orig = true;
		} else if (!*has_text && !strcmp(e.ct.type, "multipart/alternative") &&
			   e.ct.boundary_ok) {
			if (fb_multipart(e.body, e.ct.boundary, sub, FB_MAX_PARTS, &ns, budget, err,
					 errlen))
				return -1;
			for (size_t k = 0; k < ns && !*has_text; k++) {
				struct fb_entity se;
				if (fb_entity_parse(sub[k].p, sub[k].n, &se, NULL, err, errlen))
					return -1;
				if (!strcmp(se.ct.type, "text/plain")) {
					*text = se;
					*has_text = true;
				}
			}
		}
	}
	return 0;
}

/* the embedded original header: the block around its Message-ID line */
static void embedded_headers(struct text rest, struct fb_report *r)
{
	size_t pos = 0, ln, block = 0;
	const char *l;
	char err[8];

	while (next_line(rest, &pos, &l, &ln)) {
		if (blank(l, ln)) {
			block = pos;
			continue;
		}
		if (ln >= 11 && !strncasecmp(l, "message-id:", 11)) {
			fb_orig_headers(rest.p + block, rest.n - block, r, err, sizeof err);
			return;
		}
	}
}

static void status_and_diag(struct text ex, struct fb_report *r, size_t from)
{
	char st[FB_STATUS_MAX] = "";
	char *diag = NULL;
	size_t pos = 0, ln;
	const char *l;
	struct text scope = { ex.p + from, ex.n - from };

	while (next_line(scope, &pos, &l, &ln))
		if (diag_line(l, ln)) {
			diag = trim_max(l, ln);
			break;
		}
	if (!find_status(scope.p, scope.n, st) && !find_status(ex.p, ex.n, st))
		guess_status(ex.p, ex.n, st);
	for (size_t i = 0; i < r->nrcpts; i++) {
		if (!r->rcpts[i].status[0])
			memcpy(r->rcpts[i].status, st, sizeof st);
		if (!r->rcpts[i].diag && diag)
			r->rcpts[i].diag = vl_strdup(diag);
	}
	free(diag);
}

int fb_heuristic(const struct fb_entity *top, const struct fb_top *th, const struct fb_opts *o,
		 unsigned *budget, struct fb_report *r, char *err, size_t errlen)
{
	struct fb_entity text, orig;
	bool has_text = false, has_orig = false;
	size_t len;

	if (find_parts(top, budget, &text, &orig, &has_text, &has_orig, err, errlen))
		return -1;
	if (!has_text)
		return 0;
	char *d = fb_decode(&text, FB_TEXT_MAX, &len);
	struct text t = { d, len }, rest;
	bool qmail = has(d, len, QMAIL_MARK), exch = has(d, len, EXCH_MARK);
	bool gate = qmail || (th->from && has_any(th->from, strlen(th->from), bounce_from)) ||
		    (th->subject && has_any(th->subject, strlen(th->subject), bounce_subject));
	if (!gate) {
		free(d);
		return 0;
	}
	char *self = th->from ? fb_addr_of(th->from, false) : NULL;
	struct text ex = explanation(t, &rest);
	size_t from = 0;
	paragraphs(ex, r, self, o->max_rcpts);
	if (exch) {
		exchange(t, r, self, o->max_rcpts);
		/* Exchange's diagnostics come in the administrators' part */
		const char *p = d;
		for (; p + strlen(EXCH_ADMIN) <= d + len; p++)
			if (!strncasecmp(p, EXCH_ADMIN, strlen(EXCH_ADMIN)))
				break;
		from = p < d + len ? (size_t)(p - d) : 0;
		ex = t;
	} else if (!r->nrcpts) {
		generic(ex, r, self, o->max_rcpts);
	}
	free(self);
	if (r->nrcpts) {
		status_and_diag(ex, r, from);
		r->kind = FB_BOUNCE_HEURISTIC;
		if (has_orig) {
			size_t ol;
			char *od = fb_decode(&orig, FB_TEXT_MAX, &ol);
			fb_orig_headers(od, ol, r, err, errlen);
			free(od);
			if (errlen)
				err[0] = '\0';
		}
		if (!r->orig_msgid)
			embedded_headers(rest.n ? rest : t, r);
	}
	free(d);
	return 0;
}
