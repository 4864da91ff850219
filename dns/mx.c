/*
 * MX resolution (RFC 5321 5.1), host, TLSA and TXT lookups on top of
 * dns_lookup():
 * the MX answer, then A and AAAA of each host, all through the cache, then
 * the careful-MTA filters and the order. docs/dns.md has the rules.
 */
#include "dns_int.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V4, V6 };

struct mxh {                     /* one host being resolved */
	char name[DNS_NAME_MAX];
	char canon[DNS_NAME_MAX];
	uint16_t pref;
	bool asked[2], ad[2];
	enum dns_status st[2];
	size_t naddr[2];
	struct dns_addr addr[2][DNS_MAX_ADDRS];
};

struct mx_req {
	struct dns_resolver *r;
	dns_mx_cb cb;
	void *arg;
	char domain[DNS_NAME_MAX];
	unsigned pending;            /* lookups not answered yet */
	uint32_t ttl;
	bool implicit, mx_ad;
	bool host_only;              /* dns_resolve_host: no MX asked */
	bool any_address;            /* ... and no address policy */
	unsigned nliteral, nbad;     /* MX targets skipped */
	size_t nh;
	struct mxh *h;
};

static const char *const status_names[] = {
	[DNS_OK] = "ok", [DNS_NXDOMAIN] = "nxdomain", [DNS_NODATA] = "nodata",
	[DNS_NULLMX] = "null-mx", [DNS_NOADDR] = "no-address", [DNS_BADMX] = "bad-mx",
	[DNS_BADNAME] = "bad-name", [DNS_SERVFAIL] = "servfail",
	[DNS_TIMEOUT] = "timeout", [DNS_LAME] = "lame",
	[DNS_ERROR] = "error", [DNS_SHUTDOWN] = "shutdown",
};

const char *dns_status_name(enum dns_status s)
{
	return (unsigned)s < VL_ARRAY_LEN(status_names) ? status_names[s] : "?";
}

bool dns_status_permanent(enum dns_status s)
{
	return s >= DNS_NXDOMAIN && s <= DNS_BADNAME;
}

static bool transient(enum dns_status s)
{
	return s != DNS_OK && !dns_status_permanent(s);
}

void dns_addr_str(const struct dns_addr *a, char *out, size_t len)
{
	if (!inet_ntop(a->family, a->ip, out, (socklen_t)len) && len)
		out[0] = '\0';
}

/* ---- ordering ---- */

void dns_order_hosts(struct dns_host *h, size_t n, uint64_t *seed)
{
	for (size_t i = 1; i < n; i++)           /* stable insertion sort */
		for (size_t j = i; j > 0 && h[j - 1].pref > h[j].pref; j--) {
			struct dns_host t = h[j];
			h[j] = h[j - 1];
			h[j - 1] = t;
		}
	for (size_t i = 0, end; i < n; i = end) { /* shuffle each run */
		for (end = i + 1; end < n && h[end].pref == h[i].pref; end++)
			;
		for (size_t k = end - 1; k > i; k--) {
			size_t j = i + (size_t)(vl_rand(seed) % (k - i + 1));
			struct dns_host t = h[k];
			h[k] = h[j];
			h[j] = t;
		}
	}
}

/* ---- finishing ---- */

static void mx_done(struct mx_req *q, struct dns_mx_result *res)
{
	res->domain = q->domain;
	q->cb(q->arg, res);
	free(q->h);
	free(q);
}

__attribute__((format(printf, 3, 4)))
static void mx_fail(struct mx_req *q, enum dns_status st, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	struct dns_mx_result res = { .status = st, .why = why, .ttl = q->ttl,
				     .mx_ad = q->mx_ad, .implicit = q->implicit };

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	mx_done(q, &res);
}

struct tally {                   /* why hosts were left out */
	unsigned transient, blocked, noaddr;
	enum dns_status first_st;
	const char *first_host;
	bool any_shutdown;
};

/* The addresses of h policy lets through, in family order; 0 if none. */
static size_t host_addrs(const struct dns_resolver *r, const struct mxh *h, bool any,
			 struct dns_addr *out, unsigned *blocked)
{
	int order[2] = { r->cfg.prefer_ipv6 ? V6 : V4, r->cfg.prefer_ipv6 ? V4 : V6 };
	size_t n = 0;

	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < h->naddr[order[k]]; i++) {
			struct dns_addr a = h->addr[order[k]][i];
			a.flags = dns_addr_classify(&a);
			if ((a.flags & DNS_ADDR_UNUSABLE) ||
			    (a.flags && !r->cfg.allow_private && !any)) {
				(*blocked)++;
				continue;
			}
			out[n++] = a;
		}
	return n;
}

/* Fill out with the usable hosts; t says what happened to the rest. */
static size_t usable_hosts(struct mx_req *q, struct dns_host *out,
			   struct dns_addr *pool, struct tally *t, bool *partial, bool *ad)
{
	size_t n = 0;

	for (size_t i = 0; i < q->nh; i++) {
		struct mxh *h = &q->h[i];
		unsigned blocked = 0;
		bool tf = false, hostad = true;
		for (int f = 0; f < 2; f++) {
			if (!h->asked[f])
				continue;
			t->any_shutdown |= h->st[f] == DNS_SHUTDOWN;
			if (transient(h->st[f]) && !tf && !t->first_host) {
				t->first_st = h->st[f];
				t->first_host = h->name;
			}
			tf |= transient(h->st[f]);
			hostad &= h->ad[f];
		}
		size_t na = host_addrs(q->r, h, q->any_address, pool, &blocked);
		if (!na) {
			t->transient += tf;
			t->blocked += !tf && blocked;
			t->noaddr += !tf && !blocked;
			continue;
		}
		*partial |= tf;
		*ad &= hostad;
		out[n++] = (struct dns_host){ .name = h->name, .pref = h->pref,
			.canon = h->canon[0] ? h->canon : h->name, .ad = hostad,
			.naddrs = na, .addrs = pool };
		pool += na;
	}
	return n;
}

static void hosts_failed(struct mx_req *q, const struct tally *t)
{
	if (t->transient)
		mx_fail(q, t->first_st, "cannot resolve MX host %s of %s: %s",
			t->first_host, q->domain, dns_status_name(t->first_st));
	else if (t->blocked)
		mx_fail(q, DNS_BADMX, "MX hosts of %s have only loopback, private or "
			"unusable addresses", q->domain);
	else if (q->host_only)
		mx_fail(q, DNS_NOADDR, "%s has no address", q->domain);
	else if (q->implicit)
		mx_fail(q, DNS_NOADDR, "%s has no MX record and no address", q->domain);
	else
		mx_fail(q, DNS_NOADDR, "no MX host of %s has an address (%s%s)",
			q->domain, q->h[0].name, q->nh > 1 ? ", ..." : "");
}

static void finish_hosts(struct mx_req *q)
{
	struct dns_host hosts[DNS_MAX_HOSTS];
	struct dns_addr *pool = vl_malloc(q->nh * 2 * DNS_MAX_ADDRS * sizeof *pool);
	struct tally t = { 0 };
	bool partial = false, ad = q->mx_ad;
	char why[64];

	size_t n = usable_hosts(q, hosts, pool, &t, &partial, &ad);
	if (t.any_shutdown)
		mx_fail(q, DNS_SHUTDOWN, "the resolver is shutting down");
	else if (!n)
		hosts_failed(q, &t);
	else {
		dns_order_hosts(hosts, n, &q->r->rng);
		snprintf(why, sizeof why, "%zu host%s%s%s", n, n == 1 ? "" : "s",
			 q->implicit ? ", implicit MX" : q->host_only ? ", no MX asked" : "", partial ? ", some unresolved" : "");
		struct dns_mx_result res = { .status = DNS_OK, .why = why, .ttl = q->ttl,
			.ad = ad, .mx_ad = q->mx_ad, .implicit = q->implicit,
			.partial = partial, .nhosts = n, .hosts = hosts };
		mx_done(q, &res);
	}
	free(pool);
}

/* ---- lookups ---- */

static void on_addr(void *arg, unsigned slot, const struct dns_ans *a, uint32_t ttl)
{
	struct mx_req *q = arg;
	struct mxh *h = &q->h[slot / 2];
	int f = (int)(slot % 2);

	h->st[f] = a->status;
	h->ad[f] = a->ad;
	if (ttl < q->ttl)
		q->ttl = ttl;
	for (size_t i = 0; a->status == DNS_OK && i < a->n && i < DNS_MAX_ADDRS; i++)
		h->addr[f][h->naddr[f]++] = a->u.addr[i];
	if (a->status == DNS_OK && a->canon)
		snprintf(h->canon, sizeof h->canon, "%s", a->canon);
	if (--q->pending == 0)
		finish_hosts(q);
}

static void launch(struct mx_req *q)
{
	struct dns_resolver *r = q->r;
	bool want[2] = { r->cfg.family != DNS_FAM_V6, r->cfg.family != DNS_FAM_V4 };

	q->pending = 1;              /* held until every lookup is started */
	for (size_t i = 0; i < q->nh; i++)
		for (int f = 0; f < 2; f++)
			if (want[f]) {
				q->h[i].asked[f] = true;
				q->pending++;
				dns_lookup(r, q->h[i].name, f == V4 ? DNS_T_A : DNS_T_AAAA,
					   on_addr, q, (unsigned)(i * 2 + (size_t)f));
			}
	if (--q->pending == 0)
		finish_hosts(q);
}

static int by_pref(const void *a, const void *b)
{
	const struct dns_mx_rr *x = a, *y = b;

	return (int)x->pref - (int)y->pref;
}

/* Keep the MX targets a careful MTA uses: host names, once each (at their
 * best preference), the DNS_MAX_HOSTS most preferred. */
static void take_targets(struct mx_req *q, const struct dns_ans *a, struct dns_mx_rr *c)
{
	size_t n = 0;
	char name[DNS_NAME_MAX];

	for (size_t i = 0; i < a->n; i++) {
		const char *t = a->u.mx[i].host;
		if (!t[0])
			continue;    /* "." among real MX: ignored (RFC 7505 3) */
		if (vl_ip_literal(t)) {
			q->nliteral++;
			continue;
		}
		if (dns_normalize(t, name) < 0) {
			q->nbad++;
			continue;
		}
		c[n++] = a->u.mx[i];
	}
	qsort(c, n, sizeof *c, by_pref);
	for (size_t i = 0; i < n && q->nh < DNS_MAX_HOSTS; i++) {
		size_t j = 0;
		while (j < q->nh && strcmp(q->h[j].name, c[i].host) != 0)
			j++;
		if (j < q->nh)
			continue;    /* seen at a better preference */
		snprintf(q->h[q->nh].name, DNS_NAME_MAX, "%s", c[i].host);
		q->h[q->nh++].pref = c[i].pref;
	}
}

static void on_mx_records(struct mx_req *q, const struct dns_ans *a)
{
	struct dns_mx_rr *c;

	if (a->n == 1 && !a->u.mx[0].host[0]) {
		mx_fail(q, DNS_NULLMX, "%s publishes a null MX (RFC 7505): it accepts no mail",
			q->domain);
		return;
	}
	c = vl_malloc(a->n * sizeof *c);
	q->h = vl_calloc(a->n < DNS_MAX_HOSTS ? a->n : DNS_MAX_HOSTS, sizeof *q->h);
	take_targets(q, a, c);
	free(c);
	if (!q->nh)
		mx_fail(q, DNS_BADMX, "%s: no MX target is a host name (%u IP literal%s, "
			"%u malformed; RFC 5321 5.1)", q->domain, q->nliteral,
			q->nliteral == 1 ? "" : "s", q->nbad);
	else
		launch(q);
}

static void on_mx(void *arg, unsigned slot, const struct dns_ans *a, uint32_t ttl)
{
	struct mx_req *q = arg;

	(void)slot;
	q->ttl = ttl;
	q->mx_ad = a->ad;
	switch (a->status) {
	case DNS_OK:
		on_mx_records(q, a);
		break;
	case DNS_NODATA:             /* RFC 5321 5.1: the domain itself */
		q->implicit = true;
		q->h = vl_calloc(1, sizeof *q->h);
		snprintf(q->h[0].name, DNS_NAME_MAX, "%s", q->domain);
		q->nh = 1;
		launch(q);
		break;
	case DNS_NXDOMAIN:
		mx_fail(q, DNS_NXDOMAIN, "%s does not exist (NXDOMAIN)", q->domain);
		break;
	default:
		mx_fail(q, a->status, "MX lookup for %s: %s", q->domain,
			dns_status_name(a->status));
		break;
	}
}

void dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_mx_cb cb, void *arg)
{
	struct mx_req *q = vl_calloc(1, sizeof *q);

	r->st.mx_requests++;
	*q = (struct mx_req){ .r = r, .cb = cb, .arg = arg, .ttl = UINT32_MAX };
	if (vl_ip_literal(domain) || dns_normalize(domain, q->domain) < 0) {
		snprintf(q->domain, sizeof q->domain, "%.*s", DNS_NAME_MAX - 1, domain);
		q->ttl = 0;
		mx_fail(q, DNS_BADNAME, "\"%s\" is not a domain name", q->domain);
		return;
	}
	dns_lookup(r, q->domain, DNS_T_MX, on_mx, q, 0);
}

/* ---- one host ---- */

void dns_resolve_host(struct dns_resolver *r, const char *name, bool any_address,
		      dns_mx_cb cb, void *arg)
{
	struct mx_req *q = vl_calloc(1, sizeof *q);

	r->st.host_requests++;
	*q = (struct mx_req){ .r = r, .cb = cb, .arg = arg, .ttl = UINT32_MAX, .mx_ad = true,
			      .host_only = true, .any_address = any_address };
	if (vl_ip_literal(name) || dns_normalize(name, q->domain) < 0) {
		snprintf(q->domain, sizeof q->domain, "%.*s", DNS_NAME_MAX - 1, name);
		q->ttl = 0;
		mx_fail(q, DNS_BADNAME, "\"%s\" is not a host name", q->domain);
		return;
	}
	q->h = vl_calloc(1, sizeof *q->h);
	snprintf(q->h[0].name, DNS_NAME_MAX, "%s", q->domain);
	q->nh = 1;
	launch(q);
}

/* ---- TXT and TLSA: the records as answered ---- */

struct rr_req {
	uint16_t qtype;              /* DNS_T_TXT, DNS_T_TLSA or DNS_T_PTR */
	union { dns_txt_cb txt; dns_tlsa_cb tlsa; dns_ptr_cb ptr; } cb;
	void *arg;
	char qname[DNS_NAME_MAX];
};

static void on_rr(void *arg, unsigned slot, const struct dns_ans *a, uint32_t ttl)
{
	struct rr_req *q = arg;
	const char *type = q->qtype == DNS_T_TXT ? "TXT" : q->qtype == DNS_T_PTR ? "PTR" : "TLSA";
	char why[300];

	(void)slot;
	if (a->status == DNS_OK)
		snprintf(why, sizeof why, "%zu %s record%s", a->n, type, a->n == 1 ? "" : "s");
	else if (a->status == DNS_NODATA || a->status == DNS_NXDOMAIN)
		snprintf(why, sizeof why, "no %s records at %s", type, q->qname);
	else
		snprintf(why, sizeof why, "%s lookup for %s: %s", type, q->qname,
			 dns_status_name(a->status));
	if (q->qtype == DNS_T_TXT) {
		struct dns_txt_result res = { .qname = q->qname, .status = a->status,
			.why = why, .ttl = ttl, .ad = a->ad, .n = a->n, .rr = a->u.txt };
		q->cb.txt(q->arg, &res);
	} else if (q->qtype == DNS_T_PTR) {
		struct dns_ptr_result res = { .qname = q->qname, .status = a->status,
			.why = why, .ttl = ttl, .ad = a->ad, .n = a->n, .names = a->u.ptr };
		q->cb.ptr(q->arg, &res);
	} else {
		struct dns_tlsa_result res = { .qname = q->qname, .status = a->status,
			.why = why, .ttl = ttl, .ad = a->ad, .n = a->n, .rr = a->u.tlsa };
		q->cb.tlsa(q->arg, &res);
	}
	free(q);
}

void dns_resolve_txt(struct dns_resolver *r, const char *name, dns_txt_cb cb, void *arg)
{
	struct rr_req *q = vl_calloc(1, sizeof *q);

	r->st.txt_requests++;
	if (vl_ip_literal(name) || dns_normalize(name, q->qname) < 0) {
		struct dns_txt_result res = { .qname = name, .why = "not a domain name",
			.status = DNS_BADNAME };
		cb(arg, &res);
		free(q);
		return;
	}
	q->qtype = DNS_T_TXT;
	q->cb.txt = cb;
	q->arg = arg;
	dns_lookup(r, q->qname, DNS_T_TXT, on_rr, q, 0);
}

/* 4.3.2.1.in-addr.arpa, or the 32 nibbles of ip6.arpa (RFC 3596 2.5). */
static void reverse_name(const struct dns_addr *a, char out[DNS_NAME_MAX])
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (a->family == AF_INET) {
		snprintf(out, DNS_NAME_MAX, "%u.%u.%u.%u.in-addr.arpa", a->ip[3], a->ip[2],
			 a->ip[1], a->ip[0]);
		return;
	}
	for (int i = 15; i >= 0; i--) {
		out[n++] = hex[a->ip[i] & 15];
		out[n++] = '.';
		out[n++] = hex[a->ip[i] >> 4];
		out[n++] = '.';
	}
	snprintf(out + n, DNS_NAME_MAX - n, "ip6.arpa");
}

void dns_resolve_ptr(struct dns_resolver *r, const struct dns_addr *a, dns_ptr_cb cb,
		     void *arg)
{
	struct rr_req *q = vl_calloc(1, sizeof *q);

	r->st.ptr_requests++;
	if (a->family != AF_INET && a->family != AF_INET6) {
		struct dns_ptr_result res = { .qname = "", .why = "not an address",
			.status = DNS_BADNAME };
		cb(arg, &res);
		free(q);
		return;
	}
	reverse_name(a, q->qname);
	q->qtype = DNS_T_PTR;
	q->cb.ptr = cb;
	q->arg = arg;
	dns_lookup(r, q->qname, DNS_T_PTR, on_rr, q, 0);
}

void dns_resolve_tlsa(struct dns_resolver *r, const char *host, unsigned port,
		      dns_tlsa_cb cb, void *arg)
{
	struct rr_req *q = vl_calloc(1, sizeof *q);
	char name[DNS_NAME_MAX];
	int n;

	r->st.tlsa_requests++;
	if (vl_ip_literal(host) || dns_normalize(host, name) < 0 || !port || port > 65535 ||
	    (n = snprintf(q->qname, sizeof q->qname, "_%u._tcp.%s", port, name)) > 253) {
		struct dns_tlsa_result res = { .qname = host, .why = "not a host name",
			.status = DNS_BADNAME };
		cb(arg, &res);
		free(q);
		return;
	}
	q->qtype = DNS_T_TLSA;
	q->cb.tlsa = cb;
	q->arg = arg;
	dns_lookup(r, q->qname, DNS_T_TLSA, on_rr, q, 0);
}

/* ---- results kept by the caller ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t dns_site_key(const struct dns_mx_result *m, char *out, size_t outlen)
{
	const char *names[DNS_MAX_HOSTS];
	size_t n = m->nhosts < DNS_MAX_HOSTS ? m->nhosts : DNS_MAX_HOSTS, len = 0;

	for (size_t i = 0; i < n; i++)
		names[i] = m->hosts[i].name;
	qsort(names, n, sizeof *names, cmp_str);
	if (outlen)
		out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i && strcmp(names[i], names[i - 1]) == 0)
			continue;
		int k = snprintf(len < outlen ? out + len : NULL, len < outlen ? outlen - len : 0,
				 "%s%s", len ? "," : "", names[i]);
		len += (size_t)k;
	}
	return len;
}

void dns_mx_free(struct dns_mx_result *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nhosts; i++) {
		free(m->hosts[i].name);
		free(m->hosts[i].canon);
		free(m->hosts[i].addrs);
	}
	free(m->hosts);
	free((char *)m->domain);
	free((char *)m->why);
	free(m);
}

static void dup_host(struct dns_host *d, const struct dns_host *s)
{
	*d = *s;
	d->name = vl_strdup(s->name);
	d->canon = vl_strdup(s->canon);
	d->addrs = vl_malloc((s->naddrs ? s->naddrs : 1) * sizeof *d->addrs);
	memcpy(d->addrs, s->addrs, s->naddrs * sizeof *d->addrs);
}

struct dns_mx_result *dns_mx_dup(const struct dns_mx_result *m)
{
	struct dns_mx_result *d = vl_calloc(1, sizeof *d);

	*d = *m;
	d->nhosts = 0;
	d->domain = vl_strdup(m->domain ? m->domain : "");
	d->why = vl_strdup(m->why ? m->why : "");
	d->hosts = vl_calloc(m->nhosts ? m->nhosts : 1, sizeof *d->hosts);
	for (; d->nhosts < m->nhosts; d->nhosts++)
		dup_host(&d->hosts[d->nhosts], &m->hosts[d->nhosts]);
	return d;
}
