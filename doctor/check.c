/*
 * The checks of `volley doctor` (docs/doctor.md): the I/O shell around the
 * pure parsers. volley's own resolver (dns/) runs on a private io_uring;
 * each lookup is waited for in turn (a preflight asks a few dozen
 * questions, one after the other reads simply). One row per finding.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "../common/common.h"
#include "../config/config.h"
#include "../dns/dns.h"
#include "../message/message.h"
#include "../tls/tls.h"
#include "doctor.h"

#define DNS_TAG 1

struct ctx {
	struct vl_ring ring;
	struct dns_resolver *r;
	bool done;
	/* the last answer, copied out of its callback */
	enum doc_rc rc;
	enum dns_status status;
	bool ad;
	size_t n;
	char **txt;              /* TXT records, PTR names */
	struct doc_ip *ip;       /* addresses */
	size_t nmx;
	struct dns_mx_result *mx;
	const struct cfg *cfg;
	struct doc_report *rep;
};

static const char *const verdicts[] = {"pass", "warn", "fail"};

const char *doc_verdict_name(enum doc_verdict v)
{
	return (unsigned)v <= DOC_FAIL ? verdicts[v] : "?";
}

void doc_add(struct doc_report *rep, const char *check, const char *subject,
	     enum doc_verdict v, const char *fix, const char *fmt, ...)
{
	if (rep->n == rep->cap) {
		rep->cap = rep->cap ? rep->cap * 2 : 16;
		rep->rows = vl_realloc(rep->rows, rep->cap * sizeof *rep->rows);
	}
	struct doc_row *r = &rep->rows[rep->n++];
	va_list ap;

	memset(r, 0, sizeof *r);
	snprintf(r->check, sizeof r->check, "%s", check);
	snprintf(r->subject, sizeof r->subject, "%s", subject);
	snprintf(r->fix, sizeof r->fix, "%s", fix ? fix : "");
	r->verdict = v;
	va_start(ap, fmt);
	vsnprintf(r->detail, sizeof r->detail, fmt, ap);
	va_end(ap);
	*(v == DOC_PASS ? &rep->npass : v == DOC_WARN ? &rep->nwarn : &rep->nfail) += 1;
}

void doc_report_free(struct doc_report *rep)
{
	free(rep->rows);
	memset(rep, 0, sizeof *rep);
}

/* ---- lookups, one at a time ---- */

static void clear(struct ctx *c)
{
	for (size_t i = 0; c->txt && i < c->n; i++)
		free(c->txt[i]);
	free(c->txt);
	free(c->ip);
	dns_mx_free(c->mx);
	c->txt = NULL;
	c->ip = NULL;
	c->mx = NULL;
	c->n = c->nmx = 0;
	c->ad = false;
}

static enum doc_rc rc_of(enum dns_status s)
{
	switch (s) {
	case DNS_OK: return DOC_RC_OK;
	case DNS_NXDOMAIN: case DNS_BADNAME: return DOC_RC_NXDOMAIN;
	case DNS_NODATA: case DNS_NOADDR: case DNS_NULLMX: case DNS_BADMX: return DOC_RC_NODATA;
	default: return DOC_RC_TEMP;
	}
}

static void dispatch(void *arg, struct io_uring_cqe *cqe)
{
	struct ctx *c = arg;

	if ((io_uring_cqe_get_data64(cqe) & 7) == DNS_TAG)
		dns_on_cqe(c->r, cqe);
}

static void wait_answer(struct ctx *c)
{
	while (!c->done)
		if (vl_ring_wait(&c->ring, dispatch, c) < 0) {
			c->rc = DOC_RC_TEMP;
			c->status = DNS_ERROR;
			break;
		}
}

static void on_txt(void *arg, const struct dns_txt_result *res)
{
	struct ctx *c = arg;

	c->status = res->status;
	c->rc = rc_of(res->status);
	c->ad = res->ad;
	c->txt = vl_calloc(res->n + 1, sizeof *c->txt);
	for (size_t i = 0; i < res->n; i++)
		if (strlen(res->rr[i].data) == res->rr[i].len)   /* a NUL inside: dropped */
			c->txt[c->n++] = vl_strdup(res->rr[i].data);
	if (c->rc == DOC_RC_OK && !c->n)
		c->rc = DOC_RC_NODATA;
	c->done = true;
}

static void on_ptr(void *arg, const struct dns_ptr_result *res)
{
	struct ctx *c = arg;

	c->status = res->status;
	c->rc = rc_of(res->status);
	c->txt = vl_calloc(res->n + 1, sizeof *c->txt);
	for (size_t i = 0; i < res->n; i++)
		c->txt[c->n++] = vl_strdup(res->names[i]);
	c->done = true;
}

/* A host or MX result: its addresses, flattened. */
static void on_hosts(void *arg, const struct dns_mx_result *res)
{
	struct ctx *c = arg;
	size_t total = 0;

	c->status = res->status;
	c->rc = res->implicit ? DOC_RC_NODATA : rc_of(res->status);
	c->mx = dns_mx_dup(res);
	for (size_t h = 0; h < res->nhosts; h++)
		total += res->hosts[h].naddrs;
	c->ip = vl_calloc(total + 1, sizeof *c->ip);
	for (size_t h = 0; h < res->nhosts; h++)
		for (size_t i = 0; i < res->hosts[h].naddrs; i++) {
			const struct dns_addr *a = &res->hosts[h].addrs[i];
			c->ip[c->n].family = a->family;
			memcpy(c->ip[c->n].ip, a->ip, 16);
			c->n++;
		}
	c->nmx = res->implicit ? 0 : res->nhosts;
	c->done = true;
}

static void ask_txt(struct ctx *c, const char *name)
{
	clear(c);
	c->done = false;
	dns_resolve_txt(c->r, name, on_txt, c);
	wait_answer(c);
}

static void ask_host(struct ctx *c, const char *name)
{
	clear(c);
	c->done = false;
	dns_resolve_host(c->r, name, true, on_hosts, c);
	wait_answer(c);
}

static void ask_mx(struct ctx *c, const char *name)
{
	clear(c);
	c->done = false;
	dns_resolve_mx(c->r, name, on_hosts, c);
	wait_answer(c);
}

static void ask_ptr(struct ctx *c, const struct doc_ip *ip)
{
	struct dns_addr a = { .family = ip->family };

	memcpy(a.ip, ip->ip, 16);
	clear(c);
	c->done = false;
	dns_resolve_ptr(c->r, &a, on_ptr, c);
	wait_answer(c);
}

/* Only the addresses of one family; none left of an answer is no data
 * (what an A or AAAA query alone would have said). */
static void keep_family(struct ctx *c, int family)
{
	size_t k = 0;

	for (size_t i = 0; i < c->n; i++)
		if (c->ip[i].family == family)
			c->ip[k++] = c->ip[i];
	c->n = k;
	if (c->rc == DOC_RC_OK && !k)
		c->rc = DOC_RC_NODATA;
}

/* The SPF evaluator's lookups. */
static void spf_lookup(void *arg, enum doc_q q, const char *name, struct doc_answer *ans)
{
	struct ctx *c = arg;

	struct doc_ip ip;

	if (q == DOC_Q_TXT) {
		ask_txt(c, name);
	} else if (q == DOC_Q_MX) {
		ask_mx(c, name);
	} else if (q == DOC_Q_PTR) {
		if (doc_ip_parse(name, &ip) == 0) {
			ask_ptr(c, &ip);
		} else {
			clear(c);
			c->rc = DOC_RC_NXDOMAIN;
		}
	} else {
		ask_host(c, name);
		keep_family(c, q == DOC_Q_A ? AF_INET : AF_INET6);
	}
	*ans = (struct doc_answer){ .rc = c->rc, .n = c->n, .nmx = c->nmx,
		.txt = (const char *const *)c->txt, .ip = c->ip };
}

static void ip_str(const struct doc_ip *ip, char *out, size_t len)
{
	if (!inet_ntop(ip->family, ip->ip, out, (socklen_t)len))
		snprintf(out, len, "?");
}

static const char *ehlo_of(const struct cfg *cfg, size_t i)
{
	const char *e = cfg->egress[i].ehlo;
	return e && *e ? e : cfg->hostname;
}

/* ---- SPF ---- */

/* No egress list: the record still evaluated (for 0.0.0.0), so that a
 * broken one fails. */
static void spf_unlisted(struct ctx *c, const char *subj, const struct doc_spf_out *out)
{
	bool broken = out->result == DOC_SPF_PERMERROR || out->result == DOC_SPF_NONE;

	doc_add(c->rep, "spf", subj, broken ? DOC_FAIL : DOC_WARN,
		broken ? "publish one valid v=spf1 record (10 DNS lookups at most)" :
			 "list the sending addresses in the configuration's egress list",
		"no egress addresses configured: the machine's default address cannot be "
		"known; the record evaluates to %s (%s; %u lookups)",
		doc_spf_result_name(out->result), out->why, out->lookups);
}

/* One address's row: pass, or what fails and its fix. */
static void spf_row(struct ctx *c, const char *subj, const char *domain, const struct doc_ip *ip,
		    const struct doc_spf_out *o)
{
	char fix[600], ips[64];
	const struct doc_spf_out out = *o;      /* a copy: short names below */
	const char *res = doc_spf_result_name(out.result);

	ip_str(ip, ips, sizeof ips);
	if (out.result == DOC_SPF_PASS && out.plus_all) {
		doc_add(c->rep, "spf", subj, DOC_WARN, "end the record with -all or ~all after the "
			"mechanisms that cover your senders", "pass only through \"+all\" (%s): "
			"anyone may send as %s", out.why, domain);
		return;
	}
	if (out.result == DOC_SPF_PASS) {
		doc_add(c->rep, "spf", subj, DOC_PASS, "", "pass: %s (%u of %d DNS lookups)", out.why,
			out.lookups, DOC_SPF_LOOKUPS_MAX);
		return;
	}
	if (out.result == DOC_SPF_PERMERROR || out.result == DOC_SPF_NONE)
		snprintf(fix, sizeof fix, "publish one valid SPF record at %s that covers %s "
			 "(at most 10 DNS-querying terms, includes flattened if need be)", domain, ips);
	else if (out.result == DOC_SPF_TEMPERROR)
		snprintf(fix, sizeof fix, "DNS failed for now: run volley doctor again");
	else
		snprintf(fix, sizeof fix, "add ip%c:%s to the SPF record of %s (or an include "
			 "that covers it)", ip->family == AF_INET ? '4' : '6', ips, domain);
	doc_add(c->rep, "spf", subj, out.result == DOC_SPF_TEMPERROR ? DOC_WARN : DOC_FAIL, fix,
		"%s: %s", res, out.why);
}

static void spf_one(struct ctx *c, const char *domain, const char *role, const struct doc_ip *ip,
		    const char *ehlo, bool listed)
{
	char sender[300], subj[300], ips[64];
	struct doc_spf_out out;

	snprintf(sender, sizeof sender, "postmaster@%s", domain);
	struct doc_spf_query q = { .ip = *ip, .domain = domain, .sender = sender, .helo = ehlo };
	doc_spf_check(&q, spf_lookup, c, &out);
	ip_str(ip, ips, sizeof ips);
	if (listed)
		snprintf(subj, sizeof subj, "%s (%s) from %s", domain, role, ips);
	else
		snprintf(subj, sizeof subj, "%s (%s)", domain, role);
	if (!listed)
		spf_unlisted(c, subj, &out);
	else
		spf_row(c, subj, domain, ip, &out);
}

static void check_spf(struct ctx *c, const char *domain, const char *role)
{
	const struct cfg *cfg = c->cfg;

	if (!cfg->negress) {
		struct doc_ip none = { .family = AF_INET };   /* 0.0.0.0: matches nearly nothing */
		spf_one(c, domain, role, &none, cfg->hostname, false);
		return;
	}
	for (size_t i = 0; i < cfg->negress; i++) {
		struct doc_ip ip;
		if (doc_ip_parse(cfg->egress[i].address, &ip) < 0) {
			doc_add(c->rep, "spf", cfg->egress[i].address, DOC_FAIL,
				"give egress addresses as IP addresses",
				"egress address \"%s\" is not an IP address", cfg->egress[i].address);
			continue;
		}
		spf_one(c, domain, role, &ip, ehlo_of(cfg, i), true);
	}
}

/* ---- DKIM ---- */

/* The size of an RSA public key (SubjectPublicKeyInfo), 0 if unreadable. */
static int rsa_bits(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
	int bits = k ? EVP_PKEY_get_bits(k) : 0;

	EVP_PKEY_free(k);
	return bits;
}

struct pubkey {
	unsigned char der[DOC_DKIM_KEY_MAX];
	size_t len;
	bool ed;
};

/* The configured key's public half, as p= holds it; false (reported) when
 * the key file does not load as volleyd would load it. */
static bool load_pub(struct ctx *c, const char *subj, const char *file, const char *domain,
		     const char *sel, struct pubkey *pk)
{
	char err[300];
	struct msg_dkim_key *k = msg_dkim_key_load(file, domain, sel, err, sizeof err);

	if (!k || msg_dkim_key_public(k, pk->der, sizeof pk->der, &pk->len) < 0) {
		doc_add(c->rep, "dkim", subj, DOC_FAIL, "fix the key file (volley dkim keygen "
			"makes one)", "%s", k ? "the public key does not fit" : err);
		msg_dkim_key_free(k);
		return false;
	}
	pk->ed = !strcmp(msg_dkim_key_alg(k), "ed25519-sha256");
	msg_dkim_key_free(k);
	return true;
}

/* The published record against the key: one row, true when usable. */
static bool judge_dkim(struct ctx *c, const char *subj, const char *file, const char *fix,
		       const struct pubkey *pk, const struct doc_dkim_rec *rec)
{
	const char *alg = pk->ed ? "ed25519" : "rsa";

	if (rec->revoked)
		doc_add(c->rep, "dkim", subj, DOC_FAIL, fix, "the key is revoked (empty p=)");
	else if (strcmp(rec->k, alg))
		doc_add(c->rep, "dkim", subj, DOC_FAIL, fix, "k=%s, but %s is an %s key", rec->k,
			file, alg);
	else if (rec->keylen != pk->len || memcmp(rec->key, pk->der, pk->len))
		doc_add(c->rep, "dkim", subj, DOC_FAIL, fix,
			"the published key does not match %s: signatures will fail", file);
	else if (!rec->sha256)
		doc_add(c->rep, "dkim", subj, DOC_FAIL, "drop h= or list sha256 in it",
			"h= excludes sha256, which volley signs with");
	else if (!pk->ed && rsa_bits(pk->der, pk->len) < 2048)
		doc_add(c->rep, "dkim", subj, DOC_WARN, "volley dkim keygen makes 2048-bit keys: "
			"rotate to one under a new selector", "matches %s, but the RSA key has %d bits "
			"(2048 is what Gmail and Yahoo ask for)", file, rsa_bits(pk->der, pk->len));
	else if (rec->testing)
		doc_add(c->rep, "dkim", subj, DOC_WARN, "remove t=y once tests are done",
			"matches %s, but t=y (testing): receivers may ignore the signatures", file);
	else
		doc_add(c->rep, "dkim", subj, DOC_PASS, "", "published, matches %s (%s-sha256)", file,
			alg);
	return c->rep->rows[c->rep->n - 1].verdict != DOC_FAIL;
}

/* One configured key against its published record; true when it passes.
 * Of several records at the name, the one with this key is judged (else
 * the first that parses). */
static bool dkim_one(struct ctx *c, const char *domain, const char *sel, const char *file)
{
	char name[300], err[300] = "", fix[400];
	struct pubkey pk;
	struct doc_dkim_rec rec, best;
	bool have = false;

	snprintf(name, sizeof name, "%s._domainkey.%s", sel, domain);
	if (!load_pub(c, name, file, domain, sel, &pk))
		return false;
	snprintf(fix, sizeof fix, "publish the TXT record `volley dkim keygen` printed for %s at %s",
		 file, name);
	ask_txt(c, name);
	if (c->rc == DOC_RC_TEMP) {
		doc_add(c->rep, "dkim", name, DOC_WARN, "run volley doctor again",
			"TXT lookup failed for now (%s)", dns_status_name(c->status));
		return false;
	}
	if (c->rc != DOC_RC_OK) {
		doc_add(c->rep, "dkim", name, DOC_FAIL, fix, "no DKIM key record published");
		return false;
	}
	for (size_t i = 0; i < c->n; i++) {
		if (doc_dkim_parse(c->txt[i], &rec, have ? NULL : err, have ? 0 : sizeof err) < 0)
			continue;
		if (!have || (rec.keylen == pk.len && !memcmp(rec.key, pk.der, pk.len)))
			best = rec;
		have = true;
	}
	if (!have) {
		doc_add(c->rep, "dkim", name, DOC_FAIL, fix, "the record does not parse: %s", err);
		return false;
	}
	return judge_dkim(c, name, file, fix, &pk, &best);
}

/* Whether some configured key of domain works. */
/* The domain whose keys sign mail From domain: itself or its nearest
 * parent with keys in the configuration (scheduler/djob.c's rule); NULL
 * when none has. */
static const char *signing_domain(const struct cfg *cfg, const char *domain)
{
	for (const char *d = domain; d; d = strchr(d, '.') ? strchr(d, '.') + 1 : NULL)
		for (size_t i = 0; i < cfg->ndkim; i++)
			if (!strcasecmp(cfg->dkim[i].domain, d))
				return cfg->dkim[i].domain;
	return NULL;
}

/* Whether some key that signs mail From domain works; *d_out: its d=. */
static bool check_dkim(struct ctx *c, const char *domain, const char **d_out)
{
	const struct cfg *cfg = c->cfg;
	const char *d = signing_domain(cfg, domain);
	bool ok = false;

	*d_out = d;
	for (size_t i = 0; d && i < cfg->ndkim; i++)
		if (!strcasecmp(cfg->dkim[i].domain, d))
			ok |= dkim_one(c, d, cfg->dkim[i].selector, cfg->dkim[i].key);
	if (!d) {
		char fix[400];
		snprintf(fix, sizeof fix, "volley dkim keygen --domain %s --selector SEL; add it "
			 "to the dkim list of the configuration; publish its TXT record", domain);
		doc_add(c->rep, "dkim", domain, DOC_FAIL, fix, "no DKIM key configured for %s "
			"nor a parent domain: its mail goes out unsigned", domain);
	}
	return ok;
}

/* ---- DMARC and alignment ---- */

/* The DMARC record of domain (or of its organizational domain): 1 found
 * and parsed into *d, 0 none, -1 reported as broken. */
static int find_dmarc(struct ctx *c, const char *domain, struct doc_dmarc_rec *d, char *at,
		      size_t atlen)
{
	char org[256], name[300], err[200];
	const char *fix = "publish one record: _dmarc TXT \"v=DMARC1; p=quarantine; "
			  "rua=mailto:dmarc-reports@YOUR-DOMAIN\"";

	doc_org_domain(domain, org, sizeof org);
	for (int pass = 0; pass < 2; pass++) {
		const char *dom = pass ? org : domain;
		if (pass && !strcasecmp(org, domain))
			break;
		snprintf(name, sizeof name, "_dmarc.%s", dom);
		snprintf(at, atlen, "%s", name);
		ask_txt(c, name);
		if (c->rc == DOC_RC_TEMP) {
			doc_add(c->rep, "dmarc", name, DOC_WARN, "run volley doctor again",
				"TXT lookup failed for now (%s)", dns_status_name(c->status));
			return -1;
		}
		const char *rec = NULL;
		size_t nrec = 0;
		for (size_t i = 0; i < c->n; i++) {
			if (!doc_dmarc_is_record(c->txt[i]))
				continue;
			if (!rec)
				rec = c->txt[i];
			nrec++;
		}
		if (nrec > 1) {
			doc_add(c->rep, "dmarc", name, DOC_FAIL, fix, "%zu DMARC records: receivers "
				"apply none (RFC 7489 6.6.3)", nrec);
			return -1;
		}
		if (!rec)
			continue;
		if (doc_dmarc_parse(rec, d, err, sizeof err) < 0) {
			doc_add(c->rep, "dmarc", name, DOC_FAIL, fix, "the record does not parse: %s",
				err);
			return -1;
		}
		if (pass)
			d->p = d->sp;   /* a subdomain gets the organizational domain's sp= */
		return 1;
	}
	doc_add(c->rep, "dmarc", domain, DOC_FAIL, fix, "no DMARC record at _dmarc.%s%s%s: "
		"Gmail and Yahoo require one of bulk senders", domain,
		strcasecmp(org, domain) ? " nor at _dmarc." : "", strcasecmp(org, domain) ? org : "");
	return 0;
}

/* The policy and rua rows of a found record. */
static void dmarc_rows(struct ctx *c, const char *at, const struct doc_dmarc_rec *d)
{
	if (d->p == DOC_P_NONE)
		doc_add(c->rep, "dmarc", at, DOC_WARN, "move to p=quarantine, then p=reject, "
			"once the aggregate reports show only your own mail failing",
			"p=none: monitoring only (accepted by Gmail and Yahoo, but spoofed "
			"mail is not stopped)");
	else if (d->pct < 100)
		doc_add(c->rep, "dmarc", at, DOC_WARN, "raise pct to 100",
			"p=%s applies to %u %% of failing mail", doc_dmarc_policy_name(d->p), d->pct);
	else
		doc_add(c->rep, "dmarc", at, DOC_PASS, "", "p=%s", doc_dmarc_policy_name(d->p));
	if (!d->rua[0])
		doc_add(c->rep, "dmarc-rua", at, DOC_WARN, "add rua=mailto:ADDRESS to receive "
			"aggregate reports", "no rua: nobody receives the aggregate reports");
	else
		doc_add(c->rep, "dmarc-rua", at, DOC_PASS, "", "rua=%s", d->rua);
}

/* align-dkim: whether DMARC can pass through DKIM. */
static bool align_dkim(struct ctx *c, const char *domain, const char *dkim_d, bool dkim_ok,
		       bool strict)
{
	char fix[600];
	bool al = dkim_ok && doc_aligned(dkim_d, domain, strict);

	snprintf(fix, sizeof fix, "configure a working DKIM key with d=%s", domain);
	if (!dkim_ok)
		doc_add(c->rep, "align-dkim", domain, DOC_FAIL, fix, "no working DKIM key for %s: "
			"DMARC cannot pass through DKIM", domain);
	else if (!al)
		doc_add(c->rep, "align-dkim", domain, DOC_FAIL, fix, "DKIM d=%s is not the From "
			"domain, and adkim=s wants them equal", dkim_d);
	else
		doc_add(c->rep, "align-dkim", domain, DOC_PASS, "", "DKIM d=%s %s%s", dkim_d,
			strcasecmp(dkim_d, domain) ? "is a parent of the From domain: aligned "
			"(relaxed)" : "is the From domain: aligned", strict ? " (adkim=s)" : "");
	return al;
}

/* align-spf: the return path against From; a warn when DKIM aligns. */
static void align_spf(struct ctx *c, const char *domain, const char *rp, bool strict,
		      bool dkim_al)
{
	char fix[600], how[400], org[256];
	bool al = doc_aligned(rp, domain, strict);

	doc_org_domain(domain, org, sizeof org);
	snprintf(fix, sizeof fix, "use a return path under %s (e.g. bounces.%s), or rely on DKIM",
		 strict ? domain : org, strict ? domain : org);
	if (!strcasecmp(rp, domain))
		snprintf(how, sizeof how, "the same domain");
	else if (strict)
		snprintf(how, sizeof how, "aspf=s: the names must be equal");
	else
		snprintf(how, sizeof how, "relaxed: organizational domain %s by the last two "
			 "labels, approximate without the Public Suffix List", org);
	doc_add(c->rep, "align-spf", domain, al ? DOC_PASS : dkim_al ? DOC_WARN : DOC_FAIL,
		al ? "" : fix, "return path %s %s From %s (%s)", rp,
		al ? "aligned with" : "not aligned with", domain, how);
}

static void check_dmarc(struct ctx *c, const char *domain, const char *rp, const char *dkim_d,
			bool dkim_ok)
{
	struct doc_dmarc_rec d = {0};     /* none found: relaxed alignment, as RFC 7489's default */
	char at[300];

	if (find_dmarc(c, domain, &d, at, sizeof at) > 0)
		dmarc_rows(c, at, &d);
	bool dkim_al = align_dkim(c, domain, dkim_d, dkim_ok, d.strict_dkim);
	align_spf(c, domain, rp, d.strict_spf, dkim_al);
}

/* ---- PTR (FCrDNS) ---- */

/* Which PTR names of ip resolve back to it: the first into confirmed,
 * whether one of them is ehlo; every name into names. */
static bool confirm_names(struct ctx *c, const struct doc_ip *ip, const char *ehlo,
			  char *names, size_t nlen, char *confirmed, size_t clen)
{
	size_t n = c->n;
	char **list = c->txt;
	bool ehlo_ok = false;

	c->txt = NULL;                  /* the lookups below reuse c */
	c->n = 0;
	for (size_t k = 0; k < n; k++) {
		size_t l = strlen(names);
		snprintf(names + l, nlen - l, "%s%s", k ? ", " : "", list[k]);
		ask_host(c, list[k]);
		bool back = false;
		for (size_t a = 0; a < c->n; a++)
			back |= doc_ip_in(ip, &c->ip[a], ip->family == AF_INET ? 32 : 128);
		if (back && !confirmed[0])
			snprintf(confirmed, clen, "%s", list[k]);
		ehlo_ok |= back && ehlo && !strcasecmp(list[k], ehlo);
	}
	for (size_t k = 0; k < n; k++)
		free(list[k]);
	free(list);
	return ehlo_ok;
}

static void ptr_one(struct ctx *c, const struct doc_ip *ip, const char *ehlo)
{
	char ips[64], fix[600], names[300] = "", confirmed[256] = "";

	ip_str(ip, ips, sizeof ips);
	snprintf(fix, sizeof fix, "have the owner of %s set its PTR to %s, and %s's A/AAAA "
		 "record to %s", ips, ehlo, ehlo, ips);
	ask_ptr(c, ip);
	if (c->rc == DOC_RC_TEMP) {
		doc_add(c->rep, "ptr", ips, DOC_WARN, "run volley doctor again",
			"PTR lookup failed for now (%s)", dns_status_name(c->status));
		return;
	}
	if (c->rc != DOC_RC_OK || !c->n) {
		doc_add(c->rep, "ptr", ips, DOC_FAIL, fix, "no PTR record: Gmail, Yahoo and "
			"Microsoft refuse or junk mail from addresses without one");
		return;
	}
	bool ehlo_ok = confirm_names(c, ip, ehlo, names, sizeof names, confirmed,
				     sizeof confirmed);
	if (!confirmed[0])
		doc_add(c->rep, "ptr", ips, DOC_FAIL, fix, "PTR %s does not resolve back to %s "
			"(not forward-confirmed)", names, ips);
	else if (!ehlo_ok)
		doc_add(c->rep, "ptr", ips, DOC_WARN, fix, "PTR %s, forward-confirmed, but the "
			"EHLO name is %s", confirmed, ehlo);
	else
		doc_add(c->rep, "ptr", ips, DOC_PASS, "", "PTR %s, forward-confirmed, the EHLO "
			"name", ehlo);
}

static void check_ptr(struct ctx *c)
{
	const struct cfg *cfg = c->cfg;

	if (!cfg->negress) {
		doc_add(c->rep, "ptr", "(default address)", DOC_WARN,
			"list the sending addresses in the configuration's egress list",
			"no egress addresses configured: the machine's default address cannot be known");
		return;
	}
	for (size_t i = 0; i < cfg->negress; i++) {
		struct doc_ip ip;
		const char *ehlo = ehlo_of(cfg, i);
		if (doc_ip_parse(cfg->egress[i].address, &ip) == 0)   /* else said under spf */
			ptr_one(c, &ip, ehlo && *ehlo ? ehlo : "(no EHLO name)");
	}
}

/* ---- MX of the return path; MTA-STS and TLSA of the From domain ---- */

static void check_mx(struct ctx *c, const char *rp)
{
	char fix[300], hosts[300] = "";

	snprintf(fix, sizeof fix, "publish an MX record for %s pointing at a server that takes "
		 "its bounces (volleyd's return-path receiver: feedback.listen)", rp);
	ask_mx(c, rp);
	if (c->rc == DOC_RC_TEMP) {
		doc_add(c->rep, "mx", rp, DOC_WARN, "run volley doctor again",
			"MX lookup failed for now (%s)", dns_status_name(c->status));
		return;
	}
	if (!c->mx || c->mx->status != DNS_OK) {
		doc_add(c->rep, "mx", rp, DOC_FAIL, fix, "%s: bounces to the return path cannot be "
			"delivered", c->mx ? c->mx->why : "no answer");
		return;
	}
	for (size_t h = 0; h < c->mx->nhosts; h++) {
		size_t l = strlen(hosts);
		snprintf(hosts + l, sizeof hosts - l, "%s%s (%u)", h ? ", " : "",
			 c->mx->hosts[h].name, c->mx->hosts[h].pref);
	}
	size_t inside = 0, total = 0;
	for (size_t h = 0; h < c->mx->nhosts; h++)
		for (size_t i = 0; i < c->mx->hosts[h].naddrs; i++, total++)
			inside += c->mx->hosts[h].addrs[i].flags != 0;
	if (c->mx->implicit)
		doc_add(c->rep, "mx", rp, DOC_WARN, fix, "no MX record: bounces go to %s's own "
			"address (implicit MX)", rp);
	else if (inside == total && !c->cfg->dns.allow_private)
		doc_add(c->rep, "mx", rp, DOC_WARN, fix, "%s: only loopback, private or link-local "
			"addresses, which the Internet cannot deliver bounces to", hosts);
	else
		doc_add(c->rep, "mx", rp, DOC_PASS, "", "%s", hosts);
}

/* The MX hosts of domain that policy p does not allow, into out. */
static size_t sts_uncovered(struct ctx *c, const char *domain, const struct tls_sts_policy *p,
			    char *out, size_t outlen)
{
	size_t bad = 0;

	out[0] = '\0';
	ask_mx(c, domain);
	for (size_t h = 0; c->mx && c->mx->status == DNS_OK && !c->mx->implicit &&
			   h < c->mx->nhosts; h++) {
		if (tls_sts_mx_match(p, c->mx->hosts[h].name))
			continue;
		size_t l = strlen(out);
		snprintf(out + l, outlen - l, "%s%s", bad++ ? ", " : "", c->mx->hosts[h].name);
	}
	return bad;
}

/* The record is there: fetch the policy it announces and judge it. */
static void sts_policy(struct ctx *c, const char *domain, const char *name, const char *id)
{
	char host[300], err[800] = "", body[TLS_STS_POLICY_MAX + 1], bad[300];
	struct cfg_policy pol;
	struct tls_sts_policy *p = vl_malloc(sizeof *p);
	struct doc_ip ip;
	size_t len;

	snprintf(host, sizeof host, "mta-sts.%s", domain);
	ask_host(c, host);
	if (c->rc != DOC_RC_OK || !c->n) {
		doc_add(c->rep, "mta-sts", name, DOC_WARN, "give mta-sts.DOMAIN an address serving "
			"the policy over HTTPS", "id=%s, but %s has no address: the policy cannot be "
			"fetched (senders see no policy)", id, host);
		free(p);
		return;
	}
	ip = c->ip[0];
	cfg_policy_for(c->cfg, domain, &pol);    /* ca_file: as volleyd's fetcher */
	if (doc_sts_fetch(domain, &ip, pol.ca_file, body, sizeof body, &len, err, sizeof err) < 0 ||
	    tls_sts_policy_parse(body, len, p, err + strlen(err), sizeof err - strlen(err)) < 0) {
		doc_add(c->rep, "mta-sts", name, DOC_WARN, "serve a valid policy at "
			"https://mta-sts.DOMAIN/.well-known/mta-sts.txt with a certificate for that "
			"name", "id=%s, policy not usable: %s", id, err);
		free(p);
		return;
	}
	size_t nbad = sts_uncovered(c, domain, p, bad, sizeof bad);
	if (p->mode == TLS_STS_ENFORCE && nbad)
		doc_add(c->rep, "mta-sts", name, DOC_FAIL, "list every MX host in the policy's mx "
			"lines (and change the id)", "mode enforce, but MX %s not in its mx list: "
			"senders that enforce MTA-STS refuse to deliver there", bad);
	else if (p->mode != TLS_STS_ENFORCE)
		doc_add(c->rep, "mta-sts", name, DOC_WARN, "move to mode: enforce once TLS reports "
			"are clean", "id=%s, mode %s (fetched): senders do not enforce it", id,
			tls_sts_mode_name(p->mode));
	else
		doc_add(c->rep, "mta-sts", name, DOC_PASS, "", "id=%s, mode enforce, max_age %u, "
			"every MX host listed (fetched)", id, p->max_age);
	free(p);
}

static void check_sts(struct ctx *c, const char *domain)
{
	char name[300], err[200];
	struct tls_sts_txt t;

	snprintf(name, sizeof name, "_mta-sts.%s", domain);
	ask_txt(c, name);
	if (c->rc == DOC_RC_TEMP) {
		doc_add(c->rep, "mta-sts", name, DOC_WARN, "run volley doctor again",
			"TXT lookup failed for now (%s)", dns_status_name(c->status));
		return;
	}
	for (size_t i = 0; i < c->n; i++) {
		if (strncmp(c->txt[i], "v=STSv1", 7))
			continue;
		if (tls_sts_txt_parse(c->txt[i], strlen(c->txt[i]), &t, err, sizeof err) < 0) {
			doc_add(c->rep, "mta-sts", name, DOC_WARN, "fix the record: "
				"\"v=STSv1; id=20240101\"", "the record does not parse: %s", err);
			return;
		}
		sts_policy(c, domain, name, t.id);
		return;
	}
	doc_add(c->rep, "mta-sts", name, DOC_WARN, "optional: publish an MTA-STS policy "
		"(RFC 8461) so that senders require TLS to your MX hosts",
		"no MTA-STS record (informational)");
}

static void on_tlsa(void *arg, const struct dns_tlsa_result *res)
{
	struct ctx *c = arg;

	c->status = res->status;
	c->rc = rc_of(res->status);
	c->ad = res->ad;
	c->n = res->n;
	c->done = true;
}

static void check_tlsa(struct ctx *c, const char *domain)
{
	ask_mx(c, domain);
	if (c->rc != DOC_RC_OK || !c->mx || c->mx->status != DNS_OK || c->mx->implicit) {
		doc_add(c->rep, "tlsa", domain, DOC_WARN, "", "no MX hosts to look up TLSA for "
			"(informational)");
		return;
	}
	struct dns_mx_result *mx = c->mx;
	c->mx = NULL;
	for (size_t h = 0; h < mx->nhosts; h++) {
		char subj[300];
		snprintf(subj, sizeof subj, "_25._tcp.%s", mx->hosts[h].name);
		clear(c);
		c->done = false;
		dns_resolve_tlsa(c->r, mx->hosts[h].name, 25, on_tlsa, c);
		wait_answer(c);
		if (c->rc == DOC_RC_OK && c->n && c->ad)
			doc_add(c->rep, "tlsa", subj, DOC_PASS, "", "%zu TLSA records, DNSSEC-validated",
				c->n);
		else if (c->rc == DOC_RC_OK && c->n)
			doc_add(c->rep, "tlsa", subj, DOC_WARN, "sign the zone with DNSSEC: DANE "
				"ignores unvalidated TLSA records", "%zu TLSA records, not "
				"DNSSEC-validated (no AD bit)", c->n);
		else
			doc_add(c->rep, "tlsa", subj, DOC_WARN, "optional: DNSSEC and TLSA records "
				"(RFC 7672) let senders authenticate your MX", "no TLSA records "
				"(informational)%s", c->rc == DOC_RC_TEMP ? ": lookup failed" : "");
	}
	dns_mx_free(mx);
}

/* ---- the run ---- */

static int start(struct ctx *c, const struct cfg *cfg, char *err, size_t errlen)
{
	struct dns_config dc;

	dns_config_default(&dc);
	dc.servers = (const char *const *)cfg->dns.servers;
	dc.nservers = cfg->dns.nservers;
	if (cfg->dns.timeout_ms > 0)
		dc.timeout_ms = (unsigned)cfg->dns.timeout_ms;
	dc.allow_private = true;     /* SPF and PTR look at every address */
	dc.min_ttl = 0;
	if (vl_ring_init(&c->ring, 64, 256, 4, 64, err, errlen) < 0)
		return -1;
	if (vl_ring_enable(&c->ring) < 0 ||
	    !(c->r = dns_new(&c->ring, DNS_TAG, &dc, err, errlen))) {
		if (!err[0])
			snprintf(err, errlen, "cannot enable the ring");
		vl_ring_exit(&c->ring);
		return -1;
	}
	return 0;
}

static void stop(struct ctx *c)
{
	clear(c);
	dns_shutdown(c->r);
	while (!dns_quiescent(c->r))
		if (vl_ring_wait(&c->ring, dispatch, c) < 0)
			break;
	dns_free(c->r);
	vl_ring_exit(&c->ring);
}

/* Whether the resolver answers at all: a TXT lookup of the first domain
 * that comes back with anything but a transient failure. */
static bool reachable(struct ctx *c, const char *domain)
{
	ask_txt(c, domain);
	return c->rc != DOC_RC_TEMP;
}

static void check_domain(struct ctx *c, const struct doc_opts *o, const char *domain)
{
	const char *rp = o->return_path ? o->return_path : domain;
	bool same = !strcasecmp(rp, domain);

	check_spf(c, rp, same ? "return path and From" : "return path");
	if (!same)
		check_spf(c, domain, "From");
	const char *dkim_d;
	bool dkim_ok = check_dkim(c, domain, &dkim_d);
	check_dmarc(c, domain, rp, dkim_d, dkim_ok);
	check_mx(c, rp);
	check_sts(c, domain);
	check_tlsa(c, domain);
}

int doc_run(const struct doc_opts *o, struct doc_report *rep, char *err, size_t errlen)
{
	struct ctx c = { .cfg = o->cfg, .rep = rep };

	err[0] = '\0';
	if (!o->ndomains) {
		snprintf(err, errlen, "no domain to check");
		return -1;
	}
	if (start(&c, o->cfg, err, errlen) < 0)
		return -1;
	if (!reachable(&c, o->domains[0])) {
		rep->dns_unreachable = true;
		snprintf(err, errlen, "DNS does not answer (%s for %s)", dns_status_name(c.status),
			 o->domains[0]);
		stop(&c);
		return 0;
	}
	for (size_t i = 0; i < o->ndomains; i++)
		check_domain(&c, o, o->domains[i]);
	check_ptr(&c);
	doc_check_unsubscribe(o->cfg, rep);
	stop(&c);
	return 0;
}
