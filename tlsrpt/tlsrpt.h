/*
 * tlsrpt: SMTP TLS Reporting (RFC 8460). What volley records of each
 * delivery attempt's TLS, per policy domain and UTC day (report.c:
 * aggregation, bounded, and the report JSON of section 4.4), the
 * "_smtp._tls" TXT record's parser (record.c), and the days kept on disk
 * under data_dir/tls-rpt/ (store.c). Depends on common/ only.
 * Prefix: rpt_.
 */
#ifndef VOLLEY_TLSRPT_H
#define VOLLEY_TLSRPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../common/common.h"

/* Bounds: nothing grows without limit; what does not fit is counted. */
#define RPT_DETAILS_MAX 100      /* distinct failure details per domain and day */
#define RPT_POLICIES_MAX 16      /* distinct policies per domain and day */
#define RPT_DOMAINS_MAX 10000    /* domains per day */
#define RPT_STRINGS_MAX 4096     /* octets of a policy's strings or mx patterns */
#define RPT_REASON_MAX 256       /* octets of a failure-reason-code kept */
#define RPT_RUA_MAX 8            /* rua URIs kept from a record */
#define RPT_URI_MAX 512          /* octets of one */

/* ---- days: UTC calendar days, as days since 1970-01-01 ---- */
int64_t rpt_day_of(double t);
/* "2026-11-23" (out: 11 octets). */
void rpt_day_format(int64_t day, char out[11]);
/* Strictly YYYY-MM-DD, a real date. 0, or -1. */
int rpt_day_parse(const char *s, int64_t *day);

/* ---- one session (a message's transaction attempt) ---- */
struct rpt_session {
	const char *domain;          /* the policy domain: the recipient domain */
	/* The policy that applied: "tlsa" (strings: the TLSA records, one a
	 * line), "sts" (the policy text's lines, mx: its patterns, one a
	 * line), or "no-policy-found" (NULL strings and mx). */
	const char *policy_type;
	const char *policy_strings;  /* lines joined by \n, or NULL */
	const char *mx_patterns;     /* lines joined by \n, or NULL */
	bool success;
	/* failures only (NULL: unknown) */
	const char *result_type;     /* RFC 8460 4.3, e.g. starttls-not-supported */
	const char *sending_ip;
	const char *receiving_mx;
	const char *receiving_ip;
	const char *reason;          /* failure-reason-code: what went wrong */
};

/* ---- one day's aggregates (report.c; no locking: the owner's) ---- */
struct rpt_day;
struct rpt_day *rpt_day_new(int64_t day);
void rpt_day_free(struct rpt_day *d);
int64_t rpt_day_day(const struct rpt_day *d);
/* Count s. 0; 1 when counted only in part (its failure detail or its
 * policy did not fit: the overflow counters say so); -1 when not at all
 * (a bad domain, or the day has RPT_DOMAINS_MAX domains). */
int rpt_day_add(struct rpt_day *d, const struct rpt_session *s);
size_t rpt_day_ndomains(const struct rpt_day *d);
/* Domain i's name, and whether it changed since it was last marked
 * clean (written). */
const char *rpt_day_domain(const struct rpt_day *d, size_t i, bool *dirty);
void rpt_day_set_dirty(struct rpt_day *d, size_t i, bool dirty);
/* Sessions refused for want of room (domains), for logs and stats. */
uint64_t rpt_day_dropped(const struct rpt_day *d);

/* A domain's aggregates as kept on disk (a new reference, NULL if the day
 * has none): {"policy-domain", "date", "policies": [ RFC 8460 policy
 * objects with summary and failure-details ], "overflow": {...}}. */
json_t *rpt_day_domain_json(const struct rpt_day *d, const char *domain);
/* Merge such an object back (a restart). -1 with err when it is not one. */
int rpt_day_load(struct rpt_day *d, const json_t *stored, char *err, size_t errlen);

/* The RFC 8460 4.4 report of a stored object (a new reference). */
struct rpt_meta {
	const char *organization;    /* organization-name */
	const char *contact;         /* contact-info */
	const char *submitter;       /* our host name: report-id's right side */
};
json_t *rpt_report_json(const json_t *stored, const struct rpt_meta *m);
/* "2026-11-23.example.net@mta.example.org" (a unique id per day, domain
 * and submitter, so a report sent again keeps it). */
void rpt_report_id(const char *date, const char *domain, const char *submitter,
		   char *out, size_t len);

/* ---- the _smtp._tls TXT record (record.c, RFC 8460 3) ---- */
struct rpt_record {
	size_t nrua;
	char rua[RPT_RUA_MAX][RPT_URI_MAX];  /* "mailto:..." or "https://..." */
};
/* "v=TLSRPTv1; rua=mailto:a@b.example,https://r.example/x". Unknown
 * fields are ignored, URIs of other schemes skipped. 0, or -1 with err
 * naming what is wrong (not a TLSRPTv1 record, no usable rua). */
int rpt_record_parse(const char *txt, size_t len, struct rpt_record *r, char *err,
		     size_t errlen);

/* ---- the days on disk (store.c) ----
 * data_dir/tls-rpt/YYYY-MM-DD/<domain>.json, written atomically (a
 * temporary file, fsync, rename, fsync of the folder); <domain>.sent
 * once the report went out. Thread-safe: one mutex. */
struct rpt_store;
/* Open dir (created if missing) and load today's aggregates. */
struct rpt_store *rpt_store_open(const char *dir, char *err, size_t errlen);
void rpt_store_close(struct rpt_store *st);
/* Count one session, on the current UTC day (a new day starts a new
 * aggregate; the old one is written by the next flush). */
void rpt_store_add(struct rpt_store *st, const struct rpt_session *s);
/* Write what changed since the last flush. -1 when a file could not be
 * written (logged; it stays dirty). */
int rpt_store_flush(struct rpt_store *st);
/* A domain's stored object for a day (today's from memory), a new
 * reference, or NULL when nothing was recorded. */
json_t *rpt_store_get(struct rpt_store *st, int64_t day, const char *domain);
/* Days on disk before `before`, oldest first (at most max), but a day
 * whose last changes still wait for a flush. */
size_t rpt_store_days(struct rpt_store *st, int64_t before, int64_t *days, size_t max);
/* A day's domains on disk (a JSON array of strings, new reference). */
json_t *rpt_store_domains(struct rpt_store *st, int64_t day);
/* The report of (day, domain) went out (or needs not): what says how. */
int rpt_store_mark_sent(struct rpt_store *st, int64_t day, const char *domain,
			const char *what);
bool rpt_store_sent(struct rpt_store *st, int64_t day, const char *domain);
/* Remove a day's folder. */
void rpt_store_remove_day(struct rpt_store *st, int64_t day);

#endif
