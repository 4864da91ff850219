/*
 * dns internals, shared by the files of dns/ and the unit tests only: the answer
 * parser (parse.c), the cache (cache.c), the ring driver (io.c), the
 * name/type lookups (resolve.c) and host ordering (mx.c).
 */
#ifndef VOLLEY_DNS_INT_H
#define VOLLEY_DNS_INT_H

#include <ares.h>

#include "../common/common.h"
#include "dns.h"

#define DNS_T_A 1
#define DNS_T_NS 2
#define DNS_T_CNAME 5
#define DNS_T_SOA 6
#define DNS_T_PTR 12
#define DNS_T_MX 15
#define DNS_T_TXT 16
#define DNS_T_AAAA 28
#define DNS_T_OPT 41
#define DNS_T_TLSA 52

#define DNS_NAME_MAX 256         /* 253 octets of text, a dot, NUL, spare */
#define DNS_MAX_HOSTS 16         /* MX hosts kept per domain */
#define DNS_MAX_ADDRS 8          /* addresses kept per host and family */
#define DNS_MAX_CHASE 8          /* CNAMEs a lookup follows */
#define DNS_RCVBUF (1 << 20)     /* c-ares sockets' SO_RCVBUF (rmem_max caps it) */
#define DNS_EDNS_SIZE 1232       /* the DNS flag day 2020 UDP size */

/* ---- parse.c: raw answers ---- */

struct dns_mx_rr {
	uint16_t pref;
	char *host;              /* lower case, no trailing dot; "" = root */
};

/* One name/type answer, parsed: CNAMEs from the question name followed
 * inside the answer section, records of the type kept from the last name. */
struct dns_ans {
	enum dns_status status;  /* OK, NXDOMAIN, NODATA or a transient one */
	uint16_t qtype;
	uint32_t ttl;            /* min TTL of the records and CNAMEs used; for
				    NXDOMAIN/NODATA the SOA's (RFC 2308 5), 0
				    without SOA (not cacheable) */
	uint32_t cname_ttl;      /* min TTL of the CNAMEs followed, or UINT32_MAX */
	bool ad;                 /* the header's AD bit */
	char *canon;             /* name the records belong to; NULL = qname */
	size_t n;
	union {
		struct dns_mx_rr *mx;
		struct dns_addr *addr;
		struct dns_tlsa_rr *tlsa;
		struct dns_txt_rr *txt;
		char **ptr;          /* PTR targets, lower case, no trailing dot */
	} u;
};

/* Parse buf (a whole DNS message) answering qname/qtype into a. Always
 * fills a; returns -1 (status DNS_ERROR) when the message is malformed. */
int dns_parse_answer(const uint8_t *buf, size_t len, const char *qname,
		     uint16_t qtype, struct dns_ans *a);
void dns_ans_free(struct dns_ans *a);
/* Expand the (possibly compressed) name at *off into out, lower case,
 * without the trailing dot ("" for the root); *off moves past it. -1 on a
 * malformed name, -2 on a name that is well-formed but not a host name
 * (octets outside LDH and '_'): callers skip such records. */
int dns_name_expand(const uint8_t *buf, size_t len, size_t *off,
		    char out[DNS_NAME_MAX]);
/* A query for name/type with RD, AD (RFC 6840 5.7: "tell me the AD bit"),
 * EDNS0 and, when do_bit, DO. *out is malloc'd. -1 on a bad name. */
int dns_build_query(const char *name, uint16_t qtype, bool do_bit,
		    uint8_t **out, size_t *outlen);
/* Lower-case copy of a domain without its trailing dot; -1 if it is not a
 * host name (LDH labels of 1..63, '_' allowed, 253 octets at most). */
int dns_normalize(const char *in, char out[DNS_NAME_MAX]);
/* DNS_ADDR_* flags of an address, or DNS_ADDR_UNUSABLE for ones no mail
 * goes to (unspecified, multicast, broadcast, reserved). */
#define DNS_ADDR_UNUSABLE 0x100
unsigned dns_addr_classify(const struct dns_addr *a);

/* ---- cache.c: name/type entries, LRU, TTL clamps ---- */

struct dns_waiter {
	struct dns_waiter *next;
	void (*fn)(void *arg, unsigned slot, const struct dns_ans *a,
		   uint32_t ttl);
	void *arg;
	unsigned slot;
};

struct dns_link {                          /* LRU list links */
	struct dns_link *prev, *next;
};

struct dns_entry {
	struct dns_link lru;               /* first: LRU list, done entries only */
	struct dns_entry *hnext;           /* hash chain */
	struct dns_entry *qnext;           /* in the resolver's backlog */
	struct dns_resolver *r;
	uint64_t hash;
	uint64_t expires_ms;               /* monotonic, done entries */
	struct dns_waiter *waiters, **wtail;
	unsigned pins;                     /* readers now: not freed under them */
	char *chase;                       /* CNAME target asked now, or NULL */
	uint32_t chase_ttl;                /* min TTL of the CNAMEs chased */
	bool chase_ad;                     /* ... all authenticated */
	uint8_t depth;                     /* CNAMEs chased */
	uint16_t qtype;
	bool pending;                      /* a query is in flight */
	bool linked;                       /* in the hash table */
	struct dns_ans ans;
	char name[];
};

struct dns_cache {
	struct dns_entry **tab;
	size_t cap, n, max;
	struct dns_link lru;               /* sentinel: next is the newest */
	uint64_t evicted;
};

void dns_cache_init(struct dns_cache *c, size_t max);
void dns_cache_free(struct dns_cache *c);
struct dns_entry *dns_cache_find(struct dns_cache *c, const char *name,
				 uint16_t qtype);
/* A new pending entry; may evict old ones. */
struct dns_entry *dns_cache_add(struct dns_cache *c, const char *name,
				uint16_t qtype);
/* A pending entry got its answer, kept until expires_ms. */
void dns_cache_done(struct dns_cache *c, struct dns_entry *e, uint64_t expires_ms);
void dns_cache_touch(struct dns_cache *c, struct dns_entry *e);
/* Out of the table (freed now, or by the last unpin). */
void dns_cache_remove(struct dns_cache *c, struct dns_entry *e);
void dns_entry_unpin(struct dns_entry *e);
/* Seconds an answer is kept: positive ones clamped to [min_ttl, max_ttl],
 * negative ones to neg_ttl_max, transient ones fail_ttl; 0 = not kept. */
uint32_t dns_keep_ttl(const struct dns_ans *a, const struct dns_config *c);

/* ---- mx.c: ordering ---- */

/* By preference, shuffled among equal preferences (RFC 5321 5.1). */
void dns_order_hosts(struct dns_host *h, size_t n, uint64_t *seed);

/* ---- the resolver ---- */

enum dns_kind { DNS_K_NOP = 1, DNS_K_WATCH, DNS_K_TIMER };

/* Every object whose pointer rides in user_data starts with this. */
struct dns_ev {
	uint8_t kind;
	struct dns_ev *prev, *next;        /* all of the resolver's objects */
};

struct dns_resolver {
	struct vl_ring *ring;
	unsigned tag;
	struct dns_config cfg;
	char **servers;                    /* cfg.servers points here */
	ares_channel ch;                   /* NULL once shut down */
	struct dns_ev nop;                 /* user_data of the removals */
	struct dns_ev objs;                /* sentinel of watches and timers */
	struct dns_watch *watches;         /* live sockets */
	struct dns_timer *timer;           /* the armed one */
	uint64_t ops;                      /* SQEs whose CQE is still due */
	uint64_t inflight;                 /* c-ares queries */
	struct dns_entry *backlog, **backlog_tail; /* pending, not sent yet */
	uint64_t nbacklog;
	bool closing;
	unsigned in_ares;                  /* inside a c-ares call now */
	bool shut_pending;                 /* shut down when it returns */
	uint64_t rng;
	struct dns_cache cache;
	struct dns_stats st;
};

/* io.c */
int dns_io_init(struct dns_resolver *r, char *err, size_t errlen);
void dns_io_cqe(struct dns_resolver *r, struct io_uring_cqe *cqe);
/* After sending: make sure a timer fires by the first try's timeout. */
void dns_io_kick(struct dns_resolver *r);
void dns_io_shutdown(struct dns_resolver *r);
/* Leave a c-ares call (entered with r->in_ares++). */
void dns_io_leave(struct dns_resolver *r);
void dns_io_free(struct dns_resolver *r);

/* resolve.c: look name/type up through the cache; fn runs once, maybe
 * before this returns; a is valid during the call only. */
void dns_lookup(struct dns_resolver *r, const char *name, uint16_t qtype,
		void (*fn)(void *arg, unsigned slot, const struct dns_ans *a,
			   uint32_t ttl),
		void *arg, unsigned slot);

#endif
