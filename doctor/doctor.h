/*
 * doctor: `volley doctor`, the preflight of a bulk sender (docs/doctor.md).
 * Prefix: doc_.
 *
 * Two halves. The record parsers (SPF, the DKIM key record, DMARC) and the
 * SPF evaluator are pure: no I/O, the evaluator asks a lookup callback for
 * every DNS answer it needs (spf.c, rec.c; unit tests and a fuzzer). The
 * checks (check.c) are the I/O shell: volley's own resolver (dns/) on a
 * private io_uring, the configuration (config/), the configured DKIM keys
 * (message/), the MTA-STS policy over HTTPS (fetch.c, libcurl), one result
 * row per check.
 */
#ifndef VOLLEY_DOCTOR_H
#define VOLLEY_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg;

/* ---- addresses ---- */

struct doc_ip {
	int family;              /* AF_INET or AF_INET6 */
	uint8_t ip[16];          /* network order */
};

/* "192.0.2.1" / "2001:db8::1" into *ip; -1 if it is neither. */
int doc_ip_parse(const char *s, struct doc_ip *ip);
/* Whether a and b share their first bits bits (same family only). */
bool doc_ip_in(const struct doc_ip *a, const struct doc_ip *net, unsigned bits);

/* ---- the lookups the SPF evaluator asks for ---- */

enum doc_q {
	DOC_Q_TXT,               /* TXT records of a name */
	DOC_Q_A,                 /* A records of a name */
	DOC_Q_AAAA,              /* AAAA records of a name */
	DOC_Q_MX,                /* the addresses of a name's MX hosts */
	DOC_Q_PTR,               /* PTR names of an address ("name" is the
				    address as text); answered in txt */
};

enum doc_rc {
	DOC_RC_OK,
	DOC_RC_NXDOMAIN,         /* the name does not exist */
	DOC_RC_NODATA,           /* ... no record of the type (a "void" answer) */
	DOC_RC_TEMP,             /* SERVFAIL, timeout: try again later */
};

struct doc_answer {
	enum doc_rc rc;
	size_t n;                /* TXT, PTR: records; A, AAAA, MX: addresses */
	const char *const *txt;  /* each NUL-terminated (records with a NUL
				    inside are the caller's to drop) */
	const struct doc_ip *ip;
	size_t nmx;              /* MX: how many MX names there were */
};

/* Fills *ans for name; what it points to stays valid until the next call. */
typedef void (*doc_lookup_fn)(void *arg, enum doc_q q, const char *name,
			      struct doc_answer *ans);

/* ---- SPF (spf.c; RFC 7208) ---- */

enum doc_spf_result {
	DOC_SPF_NONE, DOC_SPF_NEUTRAL, DOC_SPF_PASS, DOC_SPF_FAIL,
	DOC_SPF_SOFTFAIL, DOC_SPF_TEMPERROR, DOC_SPF_PERMERROR,
};
/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *doc_spf_result_name(enum doc_spf_result r);

#define DOC_SPF_LOOKUPS_MAX 10   /* RFC 7208 4.6.4: DNS-querying terms */
#define DOC_SPF_VOIDS_MAX 2      /* ... and lookups that found nothing */
#define DOC_SPF_TERMS_MAX 128    /* terms of one record; more is permerror */
#define DOC_SPF_RECORD_MAX 4096  /* octets of one record; more is permerror */

enum doc_spf_mech {
	DOC_M_ALL, DOC_M_INCLUDE, DOC_M_A, DOC_M_MX, DOC_M_PTR, DOC_M_IP4, DOC_M_IP6,
	DOC_M_EXISTS, DOC_M_REDIRECT, DOC_M_EXP,
};

struct doc_spf_term {
	char qual;               /* '+', '-', '~', '?' (modifiers: '=') */
	enum doc_spf_mech mech;
	const char *raw;         /* the term as written */
	const char *spec;        /* domain-spec (macros unexpanded), or NULL */
	struct doc_ip ip;        /* ip4:, ip6: */
	int cidr4, cidr6;        /* prefix lengths, -1 when not given */
};

struct doc_spf_rec {
	size_t n;
	struct doc_spf_term t[DOC_SPF_TERMS_MAX];
	const struct doc_spf_term *redirect, *exp;
	char text[2 * (DOC_SPF_RECORD_MAX + 1)]; /* raw and spec point here */
};

/* Whether a TXT record is an SPF record ("v=spf1" then a space or the end). */
bool doc_spf_is_record(const char *txt);
/* Parse one record (with its "v=spf1"). -1 with err on a syntax error
 * (RFC 7208 4.6: permerror), naming the term. */
int doc_spf_parse(const char *txt, struct doc_spf_rec *out, char *err, size_t errlen);

struct doc_spf_query {
	struct doc_ip ip;        /* the sending address */
	const char *domain;      /* the domain checked (MAIL FROM's or HELO's) */
	const char *sender;      /* local@domain, for macros */
	const char *helo;        /* the EHLO name, for %{h} */
};

struct doc_spf_out {
	enum doc_spf_result result;
	unsigned lookups, voids; /* DNS-querying terms, void answers */
	bool plus_all;           /* the pass came from "+all" (anyone passes) */
	char why[300];           /* one line: what matched or what was wrong */
};

/* check_host() (RFC 7208 4) of q, asking fn for every DNS answer. */
void doc_spf_check(const struct doc_spf_query *q, doc_lookup_fn fn, void *arg,
		   struct doc_spf_out *out);
/* Macro expansion (RFC 7208 7) of spec for q at domain into out (at most
 * 253 octets kept, leftmost labels dropped as 7.3 says). -1 on a bad macro. */
int doc_spf_expand(const char *spec, const struct doc_spf_query *q, const char *domain,
		   char *out, size_t outlen);

/* ---- the DKIM key record (rec.c; RFC 6376 3.6.1, RFC 8463) ---- */

#define DOC_DKIM_KEY_MAX 1100    /* decoded p= octets: RSA-8192's SPKI fits */

struct doc_dkim_rec {
	char k[16];              /* "rsa" (the default) or "ed25519" */
	bool testing;            /* t=y */
	bool revoked;            /* p= empty */
	bool sha256;             /* h= absent or lists sha256 */
	size_t keylen;
	uint8_t key[DOC_DKIM_KEY_MAX];   /* p=, decoded */
};
/* -1 with err: v= not DKIM1 or not first, no p=, bad base64, unknown k=,
 * s= without email, a duplicate tag, a malformed tag list. */
int doc_dkim_parse(const char *txt, struct doc_dkim_rec *out, char *err, size_t errlen);

/* ---- DMARC (rec.c; RFC 7489 6.3) ---- */

enum doc_dmarc_policy { DOC_P_NONE, DOC_P_QUARANTINE, DOC_P_REJECT };

struct doc_dmarc_rec {
	enum doc_dmarc_policy p, sp;
	bool strict_dkim, strict_spf;    /* adkim=s, aspf=s */
	unsigned pct;                    /* 100 unless set */
	char rua[256];                   /* as published ("" when none) */
};
/* Whether a TXT record claims to be DMARC ("v=DMARC1" first). */
bool doc_dmarc_is_record(const char *txt);
/* -1 with err: v= not first, p= missing or unknown, a bad adkim/aspf/pct,
 * rua not mailto: URIs, a duplicate tag, a malformed tag list. */
int doc_dmarc_parse(const char *txt, struct doc_dmarc_rec *out, char *err, size_t errlen);
const char *doc_dmarc_policy_name(enum doc_dmarc_policy p);

/* The organizational domain by the simple rule: the last two labels (an
 * approximation without the Public Suffix List: "example.co.uk" gives
 * "co.uk"). Lower case into out. */
void doc_org_domain(const char *domain, char *out, size_t outlen);
/* DMARC identifier alignment of a and b: equal, or (relaxed) the same
 * organizational domain. */
bool doc_aligned(const char *a, const char *b, bool strict);

/* ---- the checks (check.c): I/O ---- */

enum doc_verdict { DOC_PASS, DOC_WARN, DOC_FAIL };
const char *doc_verdict_name(enum doc_verdict v);   /* "pass", "warn", "fail" */

struct doc_row {
	char check[16];          /* "spf", "dkim", "dmarc", "ptr", ... */
	char subject[280];       /* what was checked: a domain, an address */
	enum doc_verdict verdict;
	char detail[400];        /* what was found */
	char fix[300];           /* what to do ("" when it passes) */
};

struct doc_report {
	size_t n, cap;
	struct doc_row *rows;
	unsigned npass, nwarn, nfail;
	bool dns_unreachable;    /* no lookup got any answer */
};

struct doc_opts {
	const struct cfg *cfg;
	const char *config_path;         /* the file cfg came from (unsubscribe) */
	const char *const *domains;      /* From domains; none: every DKIM domain */
	size_t ndomains;
	const char *return_path;         /* NULL: each From domain itself */
};

/* Every check; rows appended to rep. -1 with err when the resolver cannot
 * start (the report is empty then). */
int doc_run(const struct doc_opts *o, struct doc_report *rep, char *err, size_t errlen);
void doc_report_free(struct doc_report *rep);
/* A row added to rep (counted by verdict). */
void doc_add(struct doc_report *rep, const char *check, const char *subject,
	     enum doc_verdict v, const char *fix, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* The MTA-STS policy of domain from ip (fetch.c): what volleyd's fetcher
 * does, blocking, 10 s at most. The body (NUL-terminated) in out, its
 * length in *len; -1 with err naming the URL and what went wrong. */
int doc_sts_fetch(const char *domain, const struct doc_ip *ip, const char *ca_file,
		  char *out, size_t cap, size_t *len, char *err, size_t errlen);

/* The one-click unsubscribe check (unsub.c): whether volley's endpoint
 * is configured (unsubscribe.base_url, and a listener for the POSTs). */
void doc_check_unsubscribe(const struct cfg *c, struct doc_report *rep);

#endif
