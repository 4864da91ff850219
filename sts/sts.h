/*
 * sts: MTA-STS (RFC 8461) policies, fetched and kept. Prefix: sts_.
 *
 * The parsers are tls/'s (tls_sts_*); this module adds what has state:
 *   - the store: every policy fetched, in memory and on disk (one file a
 *     domain under the data dir), so that a restart keeps enforcing;
 *   - the fetcher: one thread running libcurl's multi interface, which
 *     fetches https://mta-sts.<domain>/.well-known/mta-sts.txt from the
 *     addresses the caller resolved (CURLOPT_RESOLVE: volley's own
 *     resolver, never the system's), with certificate verification, no
 *     redirects, a size and a time limit;
 *   - the decision (sts_decide): what a fresh TXT answer means for a domain
 *     given what the store holds.
 * The store is used by one thread (the scheduler's delivery thread); the
 * fetcher's callbacks run on its own thread.
 */
#ifndef VOLLEY_STS_H
#define VOLLEY_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../tls/tls.h"

#define STS_FETCH_TIMEOUT_MS 10000   /* RFC 8461 3.3: senders should time out */
#define STS_FETCH_MAX TLS_STS_POLICY_MAX

/* ---- the store ---- */

struct sts_entry {
	char domain[256];
	char id[33];                 /* the TXT record's id when fetched */
	uint64_t fetched;            /* unix seconds */
	uint64_t expires;            /* fetched + max_age */
	uint64_t checked;            /* last TXT check that confirmed it */
	struct tls_sts_policy policy;
	char *text;                  /* the policy file as served (reports) */
};

struct sts_store;
/* Loads every policy under dir (created if missing). Unreadable or
 * damaged files are logged and skipped. NULL with err on an I/O error. */
struct sts_store *sts_store_open(const char *dir, char *err, size_t errlen);
void sts_store_free(struct sts_store *s);
/* The domain's entry, expired or not; NULL when none. */
const struct sts_entry *sts_store_get(const struct sts_store *s, const char *domain);
/* Parse and keep a policy fetched now (written to disk first: tmp, fsync,
 * rename). -1 with err when the text is not a valid policy (nothing
 * kept) or on an I/O error. */
int sts_store_put(struct sts_store *s, const char *domain, const char *id, const char *text,
		  size_t len, uint64_t now, char *err, size_t errlen);
/* The TXT record still names the kept policy's id: note when (memory). */
void sts_store_confirm(struct sts_store *s, const char *domain, uint64_t now);
/* Forget a domain's policy (its max_age passed long ago). */
void sts_store_drop(struct sts_store *s, const char *domain);
size_t sts_store_count(const struct sts_store *s);
/* One domain's kept policy read from dir, for another thread than the
 * store's (views): NULL with err when there is none or it is damaged. */
struct sts_entry *sts_entry_load(const char *dir, const char *domain, char *err,
				 size_t errlen);
void sts_entry_free(struct sts_entry *e);

/* ---- what a TXT answer means (RFC 8461 3.1, 5.1) ---- */

enum sts_txt_state {
	STS_TXT_NONE,        /* no record (NXDOMAIN, no data, none v=STSv1) */
	STS_TXT_RECORD,      /* exactly one valid record: its id */
	STS_TXT_INVALID,     /* several, or one that does not parse */
	STS_TXT_FAILED,      /* the lookup failed (SERVFAIL, timeout) */
};
enum sts_action {
	STS_USE_NONE,        /* no policy: deliver as the TLS policy says */
	STS_USE_CACHED,      /* the kept policy applies as it is */
	STS_FETCH,           /* fetch the policy (the kept one, if any, meanwhile) */
};
/* A usable kept entry (not expired at now) and the TXT answer -> action.
 * 5.1: no record or a failed lookup keeps a valid cached policy; a new id
 * means a fetch; the same id means the kept policy. */
enum sts_action sts_decide(const struct sts_entry *kept, uint64_t now,
			   enum sts_txt_state txt, const char *txt_id);
/* The TXT records of _mta-sts.<domain> (each joined), classified: id is
 * the record's when STS_TXT_RECORD. */
enum sts_txt_state sts_txt_classify(const char *const *recs, const size_t *lens, size_t n,
				    char id[33]);

/* ---- the fetcher ---- */

struct sts_fetch_result {
	const char *domain;
	bool ok;                     /* 200 with a body under the limit */
	const char *body;            /* ok: the policy text (not NUL-terminated) */
	size_t len;
	char why[700];               /* !ok: what went wrong, for logs/reports */
};
typedef void (*sts_fetch_fn)(void *arg, const struct sts_fetch_result *r);

struct sts_fetcher;
/* port: 443 except in tests of the fetcher itself. */
struct sts_fetcher *sts_fetcher_new(unsigned port, char *err, size_t errlen);
/* Fetch the policy of domain from one of addrs ("192.0.2.1", "2001:db8::1"),
 * verifying the server's certificate for mta-sts.<domain> against ca_file
 * (NULL or "": the system's store). fn runs once, on the fetcher's thread
 * (or at once, here, on a bad request). From any thread. */
void sts_fetch(struct sts_fetcher *f, const char *domain, const char *const *addrs,
	       size_t naddrs, const char *ca_file, sts_fetch_fn fn, void *arg);
/* Stops the thread; fetches in flight get ok = false ("shutting down"). */
void sts_fetcher_free(struct sts_fetcher *f);

#endif
