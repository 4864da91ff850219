/*
 * MTA-STS discovery (RFC 8461 5): for a domain under policy dane or
 * mta-sts, the _mta-sts TXT record on the engine's resolver; when it names
 * a policy not kept, the policy host's addresses, then the fetch (sts/'s
 * thread). Every answer comes back through the delivery thread's inbox,
 * so the domain's state is this thread's alone. A domain's first
 * discovery holds its recipients when no valid policy is kept (at most
 * the fetch's 10 s); later checks run in the background while the kept
 * policy applies.
 */
#include "deliver_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHED_STS_RECHECK_MS (15 * 60 * 1000)  /* TXT checks, per domain */

bool sched_sts_wanted(const struct cfg_policy *p)
{
	return p->tls && (!strcmp(p->tls, "dane") || !strcmp(p->tls, "mta-sts"));
}

static uint64_t now_s(void)
{
	return (uint64_t)vl_wall_time();
}

const struct sts_entry *sched_sts_policy(struct sched_deliver *d, const char *domain)
{
	const struct sts_entry *e = d->sts ? sts_store_get(d->sts, domain) : NULL;

	return e && now_s() < e->expires && e->policy.mode != TLS_STS_NONE ? e : NULL;
}

/* Discovery is over: the domain goes on with what is kept now. */
static void sts_done(struct sched_deliver *d, struct sched_dom *m, const char *failure,
		     const char *why)
{
	if (failure)
		vl_log(VL_LOG_INFO, "mta-sts: %s: %s", m->name, why);
	m->sts_failure = failure;
	m->sts_step = SCHED_STS_IDLE;
	m->sts_until_ms = vl_now_ms() + SCHED_STS_RECHECK_MS;
	bool was_blocking = m->sts_blocking;
	m->sts_blocking = false;
	if (was_blocking || m->placed)
		sched_dom_place(d, m);
}

/* ---- the answers, on their threads: copied for the delivery thread ---- */

static void on_txt(void *arg, const struct dns_txt_result *r)
{
	struct sched_dom *m = arg;
	struct sched_dns_done *dd = vl_calloc(1, sizeof *dd);

	dd->kind = SCHED_DD_TXT;
	dd->dom = m;
	dd->status = r->status;
	dd->ntxt = r->n;
	dd->txt = vl_calloc(r->n + 1, sizeof *dd->txt);
	dd->txtlen = vl_calloc(r->n + 1, sizeof *dd->txtlen);
	for (size_t i = 0; i < r->n; i++) {
		dd->txt[i] = vl_malloc(r->rr[i].len + 1);
		memcpy(dd->txt[i], r->rr[i].data, r->rr[i].len + 1);
		dd->txtlen[i] = r->rr[i].len;
	}
	sched_dd_post(m->d, dd);
}

static void on_host(void *arg, const struct dns_mx_result *r)
{
	sched_dd_post_mx(arg, SCHED_DD_HOST, r);
}

static void on_fetch(void *arg, const struct sts_fetch_result *r)
{
	struct sched_dom *m = arg;
	struct sched_dns_done *dd = vl_calloc(1, sizeof *dd);

	dd->kind = SCHED_DD_FETCH;
	dd->dom = m;
	dd->ok = r->ok;
	if (r->ok) {
		dd->body = vl_malloc(r->len + 1);
		memcpy(dd->body, r->body, r->len);
		dd->len = r->len;
	}
	dd->why = vl_strdup(r->why);
	sched_dd_post(m->d, dd);
}

/* ---- the steps ---- */

void sched_sts_check(struct sched_deliver *d, struct sched_dom *m, const struct cfg_policy *p)
{
	char qname[300];

	if (!d->sts || m->host || !sched_sts_wanted(p) || m->sts_step != SCHED_STS_IDLE ||
	    vl_now_ms() < m->sts_until_ms)
		return;
	m->sts_step = SCHED_STS_TXT;
	/* the first time, with nothing valid kept, the policy decides where
	 * the first messages may go: they wait for it */
	m->sts_blocking = !m->placed && !sched_sts_policy(d, m->name);
	snprintf(qname, sizeof qname, "_mta-sts.%s", m->name);
	eng_resolve_txt(d->eng, qname, on_txt, m);
}

static void txt_answer(struct sched_deliver *d, struct sched_dom *m,
		       const struct sched_dns_done *dd)
{
	char why[128];
	enum sts_txt_state st;
	const struct sts_entry *kept = d->sts ? sts_store_get(d->sts, m->name) : NULL;

	if (dd->status == DNS_OK)
		st = sts_txt_classify((const char *const *)dd->txt, dd->txtlen, dd->ntxt,
				      m->sts_id);
	else if (dd->status == DNS_NXDOMAIN || dd->status == DNS_NODATA)
		st = STS_TXT_NONE;
	else
		st = STS_TXT_FAILED;
	switch (sts_decide(kept, now_s(), st, m->sts_id)) {
	case STS_FETCH:
		snprintf(why, sizeof why, "mta-sts.%s", m->name);
		m->sts_step = SCHED_STS_HOST;
		eng_resolve_host(d->eng, why, d->cfg->dns.allow_private, on_host, m);
		return;
	case STS_USE_CACHED:
		if (st == STS_TXT_RECORD)
			sts_store_confirm(d->sts, m->name, now_s());
		sts_done(d, m, NULL, NULL);
		return;
	case STS_USE_NONE:
	default:
		snprintf(why, sizeof why, "_mta-sts TXT: %s",
			 st == STS_TXT_INVALID ? "invalid or several records" :
			 st == STS_TXT_FAILED ? dns_status_name(dd->status) : "none");
		sts_done(d, m, st == STS_TXT_INVALID ? "sts-policy-invalid" : NULL, why);
		return;
	}
}

static void host_answer(struct sched_deliver *d, struct sched_dom *m,
			const struct sched_dns_done *dd)
{
	const char *addrs[16];
	char ips[16][64], why[300];
	size_t n = 0;
	const struct dns_mx_result *r = dd->r;

	for (size_t i = 0; r && r->status == DNS_OK && r->nhosts && i < r->hosts[0].naddrs &&
	     n < 16; i++) {
		dns_addr_str(&r->hosts[0].addrs[i], ips[n], sizeof ips[n]);
		addrs[n] = ips[n];
		n++;
	}
	if (!n) {
		snprintf(why, sizeof why, "policy host mta-sts.%s: %s", m->name,
			 r && r->why ? r->why : "no address");
		sts_done(d, m, "sts-policy-fetch-error", why);
		return;
	}
	struct cfg_policy p;
	cfg_policy_for(d->cfg, m->name, &p);
	m->sts_step = SCHED_STS_FETCH;
	sts_fetch(d->fetcher, m->name, addrs, n, p.ca_file, on_fetch, m);
}

static void fetch_answer(struct sched_deliver *d, struct sched_dom *m,
			 const struct sched_dns_done *dd)
{
	char err[300];

	if (!dd->ok) {
		sts_done(d, m, "sts-policy-fetch-error", dd->why);
		return;
	}
	if (sts_store_put(d->sts, m->name, m->sts_id, dd->body, dd->len, now_s(), err,
			  sizeof err) < 0) {
		sts_done(d, m, "sts-policy-invalid", err);
		return;
	}
	const struct sts_entry *e = sts_store_get(d->sts, m->name);
	vl_log(VL_LOG_INFO, "mta-sts: %s: policy %s, mode %s, max_age %u, %zu mx", m->name,
	       e->id, tls_sts_mode_name(e->policy.mode), e->policy.max_age, e->policy.nmx);
	sts_done(d, m, NULL, NULL);
}

void sched_sts_answer(struct sched_deliver *d, struct sched_dns_done *dd)
{
	struct sched_dom *m = dd->dom;

	switch (dd->kind) {
	case SCHED_DD_TXT: txt_answer(d, m, dd); break;
	case SCHED_DD_HOST: host_answer(d, m, dd); break;
	case SCHED_DD_FETCH: fetch_answer(d, m, dd); break;
	default: break;
	}
	sched_dd_free(dd);
}
