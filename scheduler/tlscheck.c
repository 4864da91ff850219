/*
 * volley tls-check DOMAIN: what volley would do with TLS for a domain, as
 * the delivery path would see it now. Runs on the asking (API) thread and
 * waits for its answers: the engine's resolvers for MX, TLSA and TXT, the
 * kept MTA-STS policy read from disk, and, when the TXT names a policy not
 * kept, a fetch on the MTA-STS fetcher. It changes nothing: the policy it
 * fetches is shown, not kept.
 */
#include "deliver_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_WAIT_MS 15000      /* per answer */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	json_t *j;                   /* the answer as JSON */
	struct dns_mx_result *mx;    /* MX and host answers, copied */
	char id[33];                 /* TXT: the record's id */
	enum sts_txt_state txt;
};

static void w_init(struct waiter *w)
{
	memset(w, 0, sizeof *w);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void w_signal(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* false on a timeout: then the waiter must stay alive (it is leaked, as
 * the late answer will still write into it). */
static bool w_wait(struct waiter *w)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += CHECK_WAIT_MS / 1000;
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) != 0)
			break;
	bool done = w->done;
	pthread_mutex_unlock(&w->mu);
	return done;
}

static void w_free(struct waiter *w)
{
	dns_mx_free(w->mx);
	json_decref(w->j);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

/* ---- answers, on engine workers or the fetcher ---- */

static void on_mx(void *arg, const struct dns_mx_result *r)
{
	struct waiter *w = arg;

	w->mx = dns_mx_dup(r);
	w_signal(w);
}

static void on_tlsa(void *arg, const struct dns_tlsa_result *r)
{
	struct waiter *w = arg;
	json_t *recs = json_array();
	size_t usable = 0;

	for (size_t i = 0; i < r->n; i++) {
		const struct dns_tlsa_rr *x = &r->rr[i];
		struct tls_tlsa t = { x->usage, x->selector, x->mtype, x->data, x->len };
		struct vl_buf b;
		vl_buf_init(&b);
		vl_buf_printf(&b, "%u %u %u ", x->usage, x->selector, x->mtype);
		for (size_t k = 0; k < x->len; k++)
			vl_buf_printf(&b, "%02x", x->data[k]);
		vl_buf_append(&b, "", 1);
		json_array_append_new(recs, json_string(b.p));
		vl_buf_free(&b);
		usable += tls_tlsa_usable(&t);
	}
	w->j = json_pack("{s:s, s:s, s:b, s:o, s:I}", "name", r->qname,
			 "status", dns_status_name(r->status), "dnssec", r->ad, "records", recs,
			 "usable", (json_int_t)(r->ad ? usable : 0));
	w_signal(w);
}

static void on_txt(void *arg, const struct dns_txt_result *r)
{
	struct waiter *w = arg;
	json_t *recs = json_array();
	const char **t = vl_calloc(r->n + 1, sizeof *t);
	size_t *lens = vl_calloc(r->n + 1, sizeof *lens);

	for (size_t i = 0; i < r->n; i++) {
		t[i] = r->rr[i].data;
		lens[i] = r->rr[i].len;
		json_array_append_new(recs, json_stringn(r->rr[i].data, r->rr[i].len));
	}
	w->txt = r->status == DNS_OK ? sts_txt_classify(t, lens, r->n, w->id) :
		 r->status == DNS_NXDOMAIN || r->status == DNS_NODATA ? STS_TXT_NONE :
		 STS_TXT_FAILED;
	w->j = json_pack("{s:s, s:o}", "status", dns_status_name(r->status), "records", recs);
	free(t);
	free(lens);
	w_signal(w);
}

static void on_fetch(void *arg, const struct sts_fetch_result *r)
{
	struct waiter *w = arg;

	w->j = r->ok ? json_pack("{s:s%}", "policy", r->body, r->len) :
		       json_pack("{s:s}", "error", r->why);
	if (!w->j)
		w->j = json_pack("{s:s}", "error", "the policy is not UTF-8 text");
	w_signal(w);
}

/* ---- the steps ---- */

static json_t *policy_json(const struct sts_entry *e)
{
	json_t *mx = json_array();
	char f[32], x[32];

	for (size_t i = 0; i < e->policy.nmx; i++)
		json_array_append_new(mx, json_string(e->policy.mx[i]));
	vl_iso8601((double)e->fetched, f);
	vl_iso8601((double)e->expires, x);
	return json_pack("{s:s, s:s, s:I, s:o, s:s, s:s}", "id", e->id, "mode",
			 tls_sts_mode_name(e->policy.mode), "max_age",
			 (json_int_t)e->policy.max_age, "mx", mx, "fetched", f, "expires", x);
}

/* Ask fn-style lookups through a fresh waiter; NULL on a timeout. */
static struct waiter *ask_mx(struct sched_deliver *d, const char *name, bool host)
{
	struct waiter *w = vl_malloc(sizeof *w);

	w_init(w);
	if (host)
		eng_resolve_host(d->eng, name, d->cfg->dns.allow_private, on_mx, w);
	else
		eng_resolve_mx(d->eng, name, on_mx, w);
	return w_wait(w) ? w : NULL;
}

/* A policy fetched now from the policy host (not kept). */
static json_t *fetch_now(struct sched_deliver *d, const char *domain, const char *ca_file,
			 struct sts_entry *out)
{
	char host[300], err[300];
	const char *addrs[16];
	char ips[16][64];
	size_t n = 0;

	snprintf(host, sizeof host, "mta-sts.%s", domain);
	struct waiter *h = ask_mx(d, host, true);
	if (!h)
		return json_pack("{s:s}", "error", "no answer for the policy host in time");
	for (size_t i = 0; h->mx->status == DNS_OK && h->mx->nhosts &&
	     i < h->mx->hosts[0].naddrs && n < 16; i++, n++) {
		dns_addr_str(&h->mx->hosts[0].addrs[i], ips[n], sizeof ips[n]);
		addrs[n] = ips[n];
	}
	w_free(h);
	struct waiter *w = vl_malloc(sizeof *w);
	w_init(w);
	sts_fetch(d->fetcher, domain, addrs, n, ca_file, on_fetch, w);
	if (!w_wait(w))
		return json_pack("{s:s}", "error", "the fetch did not end in time");
	json_t *j = json_incref(w->j);
	const char *text = json_string_value(json_object_get(j, "policy"));
	if (text && tls_sts_policy_parse(text, strlen(text), &out->policy, err, sizeof err) < 0)
		json_object_set_new(j, "error", json_string(err));
	w_free(w);
	return j;
}

/* The domain's MTA-STS state: TXT, kept policy, a fetch when needed.
 * *applies: the policy volley would apply now (NULL: none). */
static json_t *sts_json(struct sched_deliver *d, const char *domain, const char *ca_file,
			struct sts_entry *fresh, const struct sts_entry **applies,
			struct sts_entry **kept)
{
	char qname[300], err[1600], dir[PATH_MAX];
	struct waiter *w = vl_malloc(sizeof *w);
	json_t *out = json_object();

	snprintf(qname, sizeof qname, "_mta-sts.%s", domain);
	snprintf(dir, sizeof dir, "%s/mta-sts", d->cfg->data_dir);
	*kept = sts_entry_load(dir, domain, err, sizeof err);
	*applies = NULL;
	w_init(w);
	eng_resolve_txt(d->eng, qname, on_txt, w);
	if (!w_wait(w)) {
		json_object_set_new(out, "txt", json_pack("{s:s}", "status", "no answer in time"));
		return out;
	}
	json_object_set_new(out, "txt", json_incref(w->j));
	if (w->txt == STS_TXT_RECORD)
		json_object_set_new(json_object_get(out, "txt"), "id", json_string(w->id));
	json_object_set_new(out, "kept", *kept ? policy_json(*kept) : json_null());
	enum sts_action act = sts_decide(*kept, (uint64_t)vl_wall_time(), w->txt, w->id);
	if (act == STS_FETCH) {
		json_t *f = fetch_now(d, domain, ca_file, fresh);
		json_object_set_new(out, "fetched_now", f);
		if (json_object_get(f, "policy") && !json_object_get(f, "error"))
			*applies = fresh;
		else if (*kept && (uint64_t)vl_wall_time() < (*kept)->expires)
			*applies = *kept;
	} else if (act == STS_USE_CACHED) {
		*applies = *kept;
	}
	if (*applies && (*applies)->policy.mode == TLS_STS_NONE)
		*applies = NULL;
	json_object_set_new(out, "applies", *applies ?
			    json_string(tls_sts_mode_name((*applies)->policy.mode)) : json_null());
	w_free(w);
	return out;
}

/* What the engine does with one host (docs/engine.md, TLS policies). */
static const char *verdict(enum tls_policy pol, json_t *tlsa, const struct sts_entry *sts,
			   bool listed, char *buf, size_t len)
{
	json_int_t usable = json_integer_value(json_object_get(tlsa, "usable"));
	const char *st = json_string_value(json_object_get(tlsa, "status"));
	bool failed = st && strcmp(st, "ok") && strcmp(st, "nodata") && strcmp(st, "nxdomain") &&
		      strcmp(st, "not looked up");
	bool dane = pol == TLS_POLICY_DANE || pol == TLS_POLICY_DANE_ONLY;

	if (pol == TLS_POLICY_NONE)
		return "clear text: policy none";
	if (pol == TLS_POLICY_MAY)
		return "STARTTLS when offered, else clear text; certificate not checked";
	if (pol == TLS_POLICY_VERIFY)
		return "STARTTLS required; the certificate must verify for the host name";
	if (dane && failed)
		return "not used now: its TLSA lookup failed (DANE cannot be checked)";
	if (dane && usable > 0)
		return "STARTTLS required; DANE: the certificate must match its TLSA records";
	if (pol == TLS_POLICY_DANE_ONLY)
		return "not used: no usable DNSSEC-validated TLSA records (policy dane-only)";
	if (sts && sts->policy.mode == TLS_STS_ENFORCE)
		return listed ? "STARTTLS required; MTA-STS enforce: the certificate must verify "
				"for the host name" :
				"not used: not in the MTA-STS policy's mx list (enforce)";
	if (sts && sts->policy.mode == TLS_STS_TESTING) {
		snprintf(buf, len, "STARTTLS required; MTA-STS testing: %s, failures only "
			 "reported", listed ? "certificate checked" : "not in the mx list");
		return buf;
	}
	return "STARTTLS required; certificate not checked";
}

static json_t *host_json(struct sched_deliver *d, const struct dns_host *h, bool mx_ad,
			 unsigned port, enum tls_policy pol, const struct sts_entry *sts)
{
	json_t *addrs = json_array(), *tlsa = NULL;
	char ip[64], buf[200];
	bool dnssec = mx_ad && h->ad;
	bool listed = sts && tls_sts_mx_match(&sts->policy, h->name);

	for (size_t i = 0; i < h->naddrs; i++) {
		dns_addr_str(&h->addrs[i], ip, sizeof ip);
		json_array_append_new(addrs, json_string(ip));
	}
	if ((pol == TLS_POLICY_DANE || pol == TLS_POLICY_DANE_ONLY) && dnssec) {
		struct waiter *w = vl_malloc(sizeof *w);
		w_init(w);
		eng_resolve_tlsa(d->eng, h->name, port, on_tlsa, w);
		if (w_wait(w)) {
			tlsa = json_incref(w->j);
			w_free(w);
		} else {
			tlsa = json_pack("{s:s}", "status", "no answer in time");
		}
	}
	if (!tlsa)
		tlsa = json_pack("{s:s, s:s}", "status", "not looked up", "why",
				 pol != TLS_POLICY_DANE && pol != TLS_POLICY_DANE_ONLY ?
				 "the policy does not use DANE" :
				 "its MX or address records are not DNSSEC-validated");
	const char *v = verdict(pol, tlsa, sts, listed, buf, sizeof buf);
	return json_pack("{s:s, s:i, s:o, s:b, s:o, s:o, s:s}", "name", h->name, "pref",
			 (int)h->pref, "addresses", addrs, "dnssec", dnssec, "tlsa", tlsa,
			 "mta_sts_listed", sts ? json_boolean(listed) : json_null(),
			 "volley_would", v);
}

json_t *sched_deliver_tls_check(struct sched_deliver *d, const char *domain)
{
	struct cfg_policy p;
	enum tls_policy pol = TLS_POLICY_DANE;
	struct sts_entry *fresh = vl_calloc(1, sizeof *fresh), *kept = NULL;
	const struct sts_entry *applies = NULL;
	json_t *out, *hosts = json_array();

	cfg_policy_for(d->cfg, domain, &p);
	tls_policy_parse(p.tls, &pol);
	out = json_pack("{s:s, s:s, s:s?}", "domain", domain, "policy", p.tls, "ca_file",
			*p.ca_file ? p.ca_file : NULL);
	if (*p.route) {
		json_object_set_new(out, "route", json_string(p.route));
		json_object_set_new(out, "note", json_string("a routed domain: its MX hosts and "
							     "MTA-STS are not used"));
		free(fresh);
		return out;
	}
	if (sched_sts_wanted(&p))
		json_object_set_new(out, "mta_sts", sts_json(d, domain, p.ca_file, fresh, &applies,
							     &kept));
	struct waiter *w = ask_mx(d, domain, false);
	if (!w) {
		json_object_set_new(out, "mx", json_pack("{s:s}", "status", "no answer in time"));
	} else {
		json_object_set_new(out, "mx", json_pack("{s:s, s:s, s:b, s:b}", "status",
			dns_status_name(w->mx->status), "why", w->mx->why ? w->mx->why : "",
			"dnssec", w->mx->mx_ad, "implicit", w->mx->implicit));
		for (size_t i = 0; i < w->mx->nhosts; i++)
			json_array_append_new(hosts, host_json(d, &w->mx->hosts[i], w->mx->mx_ad,
							       (unsigned)p.port, pol, applies));
		w_free(w);
	}
	json_object_set_new(out, "hosts", hosts);
	sts_entry_free(kept);
	free(fresh);
	return out;
}
