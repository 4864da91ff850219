/*
 * dns: MX, A/AAAA, TLSA and TXT resolution on c-ares, driven by the owner's
 * io_uring (no thread, no blocking call), with a TTL cache that also
 * coalesces concurrent lookups. Prefix: dns_. Manual: docs/dns.md.
 *
 * The owner's ring, the owner's loop. The resolver puts its own SQEs on
 * the ring (a POLL_ADD per c-ares socket, a TIMEOUT for c-ares' retries,
 * the removals of both); each carries user_data = pointer | tag, with the
 * 3-bit tag given to dns_new() and an 8-aligned pointer. The owner hands
 * every CQE whose low three bits equal the tag to dns_on_cqe(). Everything
 * runs on the ring's thread; nothing here is thread-safe, and dns_new() and
 * dns_free() must not run in two threads at once (c-ares 1.18's library
 * init and cleanup are not thread-safe).
 *
 * Callbacks. A result is passed by const pointer and is valid only during
 * the callback (dns_mx_dup() keeps a copy). A callback may run before the
 * request call returns: answers from the cache, bad names and a resolver
 * shutting down are answered at once.
 */
#ifndef VOLLEY_DNS_H
#define VOLLEY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <liburing.h>

struct vl_ring;
struct dns_resolver;

/* ---- configuration ---- */

enum dns_family {
	DNS_FAM_BOTH,            /* A and AAAA */
	DNS_FAM_V4,              /* A only: no AAAA queries */
	DNS_FAM_V6,              /* AAAA only */
};

struct dns_config {
	const char *const *servers; /* "ip:port" / "[v6]:port"; none: resolv.conf */
	size_t nservers;
	unsigned timeout_ms;     /* per try; default 3000 */
	unsigned tries;          /* per server; default 2 */
	uint32_t min_ttl;        /* positive answers kept at least (s); default 30 */
	uint32_t max_ttl;        /* ... and at most (s); default 21600 */
	uint32_t neg_ttl_max;    /* NXDOMAIN/no data at most (s); default 900 */
	uint32_t fail_ttl;       /* SERVFAIL/timeouts remembered (s); default 5 */
	size_t cache_max;        /* cached name/type entries; default 100000 */
	unsigned max_inflight;   /* queries out at once; more wait their turn
				    (a resolver drops what it cannot hold:
				    unbound takes 1024 per thread by
				    default); default 256 */
	enum dns_family family;  /* default DNS_FAM_BOTH */
	bool prefer_ipv6;        /* per host, AAAA before A; default IPv4 first */
	bool allow_private;      /* keep loopback/private/link-local addresses */
	bool dnssec;             /* DO bit on queries (AD is always asked); default true */
	uint64_t seed;           /* shuffle among equal preferences; 0: from the clock */
};

/* Every field at its default; a caller then sets what it needs. */
void dns_config_default(struct dns_config *c);

/* ---- statuses ---- */

enum dns_status {
	DNS_OK,
	/* permanent: the domain, as published, takes no mail */
	DNS_NXDOMAIN,            /* the name does not exist */
	DNS_NODATA,              /* the name exists, no record of the type (TLSA) */
	DNS_NULLMX,              /* RFC 7505 "MX 0 ." */
	DNS_NOADDR,              /* no MX host (nor the implicit one) has an address */
	DNS_BADMX,               /* MX targets unusable: IP literals, or only
				    loopback/private addresses (allow_private off) */
	DNS_BADNAME,             /* not a valid domain name */
	/* transient: try again later */
	DNS_SERVFAIL,            /* no server answered usefully: SERVFAIL,
				    REFUSED or unreachable, every server tried */
	DNS_TIMEOUT,
	DNS_LAME,                /* a referral or an answer without recursion */
	DNS_ERROR,               /* network error, malformed answer, no memory */
	DNS_SHUTDOWN,            /* the resolver is shutting down */
};

/* "ok", "nxdomain", "nodata", "null-mx", ... (stable: tests and events). */
const char *dns_status_name(enum dns_status s);
/* True for the statuses a bounce follows from (class "dns"); false for
 * DNS_OK and the transient ones (a deferral, class "dns"). */
bool dns_status_permanent(enum dns_status s);

/* ---- results ---- */

enum {                           /* dns_addr.flags: why policy may refuse it */
	DNS_ADDR_LOOPBACK = 1,   /* 127/8, ::1 */
	DNS_ADDR_PRIVATE = 2,    /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 */
	DNS_ADDR_LINKLOCAL = 4,  /* 169.254/16, fe80::/10 */
};

struct dns_addr {
	int family;              /* AF_INET or AF_INET6 */
	uint8_t ip[16];          /* network order; 4 octets for AF_INET */
	unsigned flags;          /* DNS_ADDR_* */
};

struct dns_host {
	char *name;              /* the MX target (or the domain, implicit MX) */
	char *canon;             /* name after CNAMEs (== name when none) */
	uint16_t pref;
	bool ad;                 /* its A/AAAA answers were authenticated */
	size_t naddrs;
	struct dns_addr *addrs;  /* by family preference, then as answered */
};

struct dns_mx_result {
	const char *domain;      /* as asked, lower case, no trailing dot */
	enum dns_status status;
	const char *why;         /* one line for humans: logs, bounce texts */
	uint32_t ttl;            /* seconds the answer stays true (minimum) */
	bool ad;                 /* every answer used was authenticated */
	bool mx_ad;              /* the MX answer (or its absence) was */
	bool implicit;           /* no MX: the domain itself (RFC 5321 5.1) */
	bool partial;            /* some host failed transiently and is left out */
	size_t nhosts;
	struct dns_host *hosts;  /* preference order, shuffled among equals;
				    only hosts with an address */
};

struct dns_tlsa_rr {
	uint8_t usage, selector, mtype;
	size_t len;
	uint8_t *data;
};

struct dns_tlsa_result {
	const char *qname;       /* "_25._tcp.mx.example.com" */
	enum dns_status status;  /* OK, NODATA / NXDOMAIN (no TLSA), transient */
	const char *why;
	uint32_t ttl;
	bool ad;                 /* authenticated (DANE needs it) */
	size_t n;
	struct dns_tlsa_rr *rr;
};

struct dns_txt_rr {
	size_t len;
	char *data;              /* the record's strings joined, NUL-terminated
				    (len counts any NUL inside: check it) */
};

struct dns_txt_result {
	const char *qname;
	enum dns_status status;  /* OK, NODATA / NXDOMAIN (none), transient */
	const char *why;
	uint32_t ttl;
	bool ad;
	size_t n;
	struct dns_txt_rr *rr;
};

struct dns_ptr_result {
	const char *qname;       /* "1.2.0.192.in-addr.arpa" */
	enum dns_status status;  /* OK, NODATA / NXDOMAIN (none), transient */
	const char *why;
	uint32_t ttl;
	bool ad;
	size_t n;
	char **names;            /* lower case, no trailing dot */
};

typedef void (*dns_mx_cb)(void *arg, const struct dns_mx_result *res);
typedef void (*dns_tlsa_cb)(void *arg, const struct dns_tlsa_result *res);
typedef void (*dns_txt_cb)(void *arg, const struct dns_txt_result *res);
typedef void (*dns_ptr_cb)(void *arg, const struct dns_ptr_result *res);

/* ---- the resolver ---- */

/* A resolver on ring, its CQEs tagged tag (0..7). NULL with err set on a
 * bad configuration or when c-ares cannot start. */
struct dns_resolver *dns_new(struct vl_ring *ring, unsigned tag,
			     const struct dns_config *c, char *err, size_t errlen);
/* Route every CQE whose user_data & 7 == tag here. */
void dns_on_cqe(struct dns_resolver *r, struct io_uring_cqe *cqe);

/* RFC 5321 5.1 delivery hosts of a domain: MX by preference (shuffled
 * among equals) with their addresses, or the implicit MX. */
void dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_mx_cb cb,
		    void *arg);
/* The addresses of one host name, no MX lookup (a smarthost, an HTTPS
 * server): a result with one host, or none and a status. mx_ad is true
 * (no MX answer is involved), so ad alone says whether they validated.
 * any_address keeps loopback and private addresses whatever the
 * configuration says (a relay the operator named). */
void dns_resolve_host(struct dns_resolver *r, const char *name, bool any_address,
		      dns_mx_cb cb, void *arg);
/* TXT records of a name (MTA-STS, TLS-RPT), with the AD bit. */
void dns_resolve_txt(struct dns_resolver *r, const char *name, dns_txt_cb cb, void *arg);
/* PTR records of an address (its in-addr.arpa or ip6.arpa name): the
 * reverse name of a sending address, for forward-confirmed reverse DNS. */
void dns_resolve_ptr(struct dns_resolver *r, const struct dns_addr *a, dns_ptr_cb cb,
		     void *arg);
/* TLSA records of _port._tcp.host (RFC 7672), with the AD bit. */
void dns_resolve_tlsa(struct dns_resolver *r, const char *host, unsigned port,
		      dns_tlsa_cb cb, void *arg);

/* Shutting down takes two steps, because CQEs of the resolver's SQEs may
 * still be on their way. dns_shutdown(): every pending callback runs with
 * DNS_SHUTDOWN, sockets close, polls and timers are cancelled, later
 * requests are answered DNS_SHUTDOWN at once. The owner keeps routing CQEs
 * until dns_quiescent() (one ring round trip), then calls dns_free().
 * dns_free() on a resolver not quiescent is allowed only when the ring is
 * torn down next and no CQE is routed to it again: it flushes the SQ so
 * the kernel has read everything it needs, and io_uring never dereferences
 * user_data. */
void dns_shutdown(struct dns_resolver *r);
bool dns_quiescent(const struct dns_resolver *r);
void dns_free(struct dns_resolver *r);

/* ---- counters (tests, benchmarks, /v1/stats) ---- */

struct dns_stats {
	uint64_t queries;        /* sent to c-ares (one per name/type miss) */
	uint64_t answers;        /* ... of which answered (any rcode) */
	uint64_t timeouts, failures; /* ... timed out; other transient errors */
	uint64_t cache_hits;     /* name/type lookups answered by the cache */
	uint64_t coalesced;      /* ... that waited on a query in flight */
	uint64_t expired;        /* ... that found their entry expired */
	uint64_t evicted;        /* entries dropped for room */
	uint64_t cache_entries;  /* now */
	uint64_t mx_requests, tlsa_requests, host_requests, txt_requests, ptr_requests;
	uint64_t in_flight;      /* queries now */
	uint64_t waiting;        /* ... and waiting for their turn now */
	uint64_t inflight_peak;  /* the most ever out at once */
};
void dns_get_stats(const struct dns_resolver *r, struct dns_stats *s);

/* ---- helpers ---- */

/* The site key of an MX result: its host names, sorted, unique, joined by
 * ','. Domains with the same key share a destination site. Returns the
 * length the key needs (like snprintf); 0 for a result without hosts. */
size_t dns_site_key(const struct dns_mx_result *m, char *out, size_t outlen);
/* A deep copy that outlives the callback. */
struct dns_mx_result *dns_mx_dup(const struct dns_mx_result *m);
void dns_mx_free(struct dns_mx_result *m);
/* "192.0.2.1" or "2001:db8::1". */
void dns_addr_str(const struct dns_addr *a, char *out, size_t len);

#endif
