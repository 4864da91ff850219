/*
 * engine: the delivery engine. Worker threads, each with its own io_uring,
 * deliver messages over pooled SMTP client sessions: one pool per
 * destination host (address, port, source address, TLS policy, implicit
 * TLS, AUTH user), pipelined
 * commands, STARTTLS over OpenSSL memory BIOs, AUTH inside TLS, BDAT when
 * offered. Every recipient of every message submitted gets exactly one
 * result, then the message gets its done call. Prefix: eng_.
 */
#ifndef VOLLEY_ENGINE_H
#define VOLLEY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "../dns/dns.h"
#include "../tls/tls.h"

/* Timeouts in milliseconds; defaults are RFC 5321 4.5.3.2's. */
struct eng_timeouts {
	uint64_t connect;    /* TCP connect: 30 s */
	uint64_t greeting;   /* 220 banner: 5 min */
	uint64_t helo;       /* EHLO/HELO, STARTTLS, AUTH, RSET: 5 min */
	uint64_t tls;        /* TLS handshake: 2 min */
	uint64_t mail;       /* MAIL: 5 min */
	uint64_t rcpt;       /* RCPT: 5 min */
	uint64_t data;       /* DATA initiation (354): 2 min */
	uint64_t data_block; /* sending the body, all of it: 3 min */
	uint64_t data_term;  /* reply after the final dot: 10 min */
	uint64_t idle;       /* an unused pooled session is closed after: 10 s */
	uint64_t quit;       /* reply to QUIT before closing anyway: 5 s */
};

struct eng_config {
	int workers;                     /* 0: one per core */
	char helo[256];                  /* EHLO name */
	struct eng_timeouts t;
	unsigned max_rcpts_per_txn;      /* recipients per transaction: 100 */
	char ca_file[1024];              /* for tls = verify; "": system store */
	bool dns;                        /* a resolver per worker (eng_resolve_mx) */
	struct dns_config dns_cfg;       /* its settings; strings must outlive
					  * the engine */
};
void eng_config_defaults(struct eng_config *c);

/* A destination host: the key of a connection pool. */
struct eng_route {
	char name[256];                  /* host name: SNI, verification, logs */
	char canon[256];                 /* the name after CNAMEs, "" when none:
					  * DANE's first TLSA base (RFC 7672
					  * 2.2.2) */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct sockaddr_storage source;  /* source address, if has_source */
	socklen_t sourcelen;
	bool has_source;
	char helo[256];                  /* EHLO name from this source; "": the
					  * engine's (part of the pool's key:
					  * two sources never share a
					  * connection) */
	enum tls_policy tls;
	bool dnssec;                     /* the MX and the host's addresses were
					  * DNSSEC-validated: only then does
					  * policy dane look for TLSA records
					  * (RFC 7672 2.2) */
	const char *ca_file;             /* verify and MTA-STS: the CA bundle
					  * ("" or NULL: the engine's); must
					  * outlive the engine */
	enum eng_sts {                   /* the domain's MTA-STS mode, under
					  * policies dane and mta-sts */
		ENG_STS_OFF, ENG_STS_TESTING, ENG_STS_ENFORCE
	} sts;
	bool sts_mx_ok;                  /* the host matches the policy's mx */
	bool implicit_tls;               /* TLS from the connect on, before the
					  * greeting (RFC 8314, port 465); the
					  * policy still says what is checked */
	char auth_user[256], auth_pass[256]; /* AUTH when auth_user[0] */
	unsigned max_connections;        /* default 50 */
	unsigned max_messages_per_connection; /* default 1000 */
	unsigned max_rcpts_per_txn;      /* RCPTs per transaction of a message
					  * on this route (eng_msg.route: a
					  * pool's own route does not count);
					  * 0: the engine's (eng_config) */
};
/* "host:port" or "[v6]:port" (an IP address; name defaults to it). */
int eng_route_parse(struct eng_route *r, const char *hostport, char *err,
		    size_t errlen);

enum eng_status { ENG_DELIVERED, ENG_TRANSIENT, ENG_PERMANENT };

struct eng_result {
	enum eng_status status;
	int code;                 /* the reply's code; 0 when none came */
	const char *enhanced;     /* "5.1.1" or "" */
	const char *text;         /* reply text, or what went wrong */
	const char *stage;        /* connect, greeting, ehlo, starttls, tls,
				   * dane (the host's TLSA records: lookup
				   * failed, no match, none under dane-only),
				   * mta-sts (an enforced policy: the host is
				   * not in its mx list, or its certificate
				   * did not verify),
				   * auth, mail, rcpt, data, dot, size;
				   * requiretls (a require_tls message the
				   * connection cannot carry); queue:
				   * the engine stopped before it was sent */
	bool maybe_delivered;     /* no answer to the final dot: the peer may
				   * have the message; a retry may duplicate */
	const char *peer;         /* "127.0.0.1:2525" */
	const char *tls_version;  /* NULL: clear text */
	const char *tls_cipher;
	bool tls_verified;
	bool tls_dane;            /* authenticated by the host's TLSA records */
	/* For TLS reporting (RFC 8460): why TLS failed, as a result type
	 * (starttls-not-supported, certificate-host-mismatch,
	 * certificate-expired, certificate-not-trusted, validation-failure,
	 * tlsa-invalid, dnssec-invalid, dane-required, ...), NULL when it did
	 * not; and the TLSA RRset that applied ("3 1 1 <hex>" lines), NULL
	 * when DANE did not. */
	const char *tls_failure;
	const char *tls_tlsa;
	/* stage dot: seconds from the final dot or BDAT LAST going out to
	 * this reply (the peer's response time); 0 when not measured */
	double reply_s;
};

struct eng_msg;
/* Called on the worker thread, once per recipient, then done once. The
 * result's strings are valid only during the call. */
typedef void (*eng_result_fn)(struct eng_msg *m, size_t rcpt,
			      const struct eng_result *r);
typedef void (*eng_done_fn)(struct eng_msg *m);

struct eng_msg {
	const struct eng_route *route;   /* must outlive the message */
	const char *mail_from;           /* "" for the null sender */
	const char *const *rcpts;
	size_t nrcpt;
	const struct iovec *body;        /* the CRLF-canonical message, not
					  * dot-stuffed; lives until done */
	size_t nbody;
	bool eightbit, smtputf8;         /* needs 8BITMIME / SMTPUTF8 */
	bool require_tls;                /* REQUIRETLS (RFC 8689): sent only over
					  * an authenticated TLS connection (DANE
					  * or a verified certificate) to a host
					  * that offers REQUIRETLS, with MAIL's
					  * REQUIRETLS parameter; otherwise a
					  * transient result, stage requiretls */
	bool urgent;                     /* transactional: ahead of every
					  * message not urgent in its pool's
					  * queue (after the urgent ones
					  * already there) */
	eng_result_fn on_result;
	eng_done_fn on_done;
	/* Optional: run on the worker when it takes the message, before any
	 * session needs the body (e.g. DKIM signing, spread over the workers'
	 * cores). It may change body/nbody. false: the message is not sent;
	 * on_done follows at once, without results. */
	bool (*prepare)(struct eng_msg *m);
	void *arg;
	/* the engine's own */
	struct eng_msg *next_;
	size_t size_;
	size_t first_, count_;           /* recipients of this transaction */
	size_t pending_;                 /* recipients without a result */
	uint64_t hash_;                  /* eng_route_hash(route) */
	_Atomic unsigned *load_;         /* its worker's count for the route */
	bool moved_;                     /* went to another worker once */
	struct eng_worker *owner_;       /* prepared elsewhere: then to this one */
	_Atomic int *prep_;              /* the preparing worker's queue count */
};

struct engine;
struct engine *eng_new(const struct eng_config *c, char *err, size_t errlen);
/* Hand over a message; from any thread. */
void eng_submit(struct engine *e, struct eng_msg *m);
/* Stop taking work, finish transactions in flight (within grace_ms), give
 * queued messages a transient "shutting down" result, join the workers. */
void eng_stop(struct engine *e, uint64_t grace_ms);
/* MX resolution on a worker's ring (one worker per domain, so its cache
 * and coalescing see every lookup of the domain). fn runs on that
 * worker's thread; the result is valid only during the call. */
typedef void (*eng_mx_fn)(void *arg, const struct dns_mx_result *r);
void eng_resolve_mx(struct engine *e, const char *domain, eng_mx_fn fn, void *arg);
/* The addresses of one host name, no MX (dns_resolve_host), likewise.
 * any_address: private addresses too, whatever dns.allow_private says (a
 * smarthost the operator named). */
void eng_resolve_host(struct engine *e, const char *name, bool any_address, eng_mx_fn fn,
		      void *arg);
/* TXT records of a name, likewise. */
typedef void (*eng_txt_fn)(void *arg, const struct dns_txt_result *r);
void eng_resolve_txt(struct engine *e, const char *name, eng_txt_fn fn, void *arg);
/* TLSA records of _port._tcp.host, likewise (pools look up their own;
 * this is for views such as volley tls-check). */
typedef void (*eng_tlsa_fn)(void *arg, const struct dns_tlsa_result *r);
void eng_resolve_tlsa(struct engine *e, const char *host, unsigned port, eng_tlsa_fn fn,
		      void *arg);
/* Summed resolver counters of every worker (a recent view). */
void eng_dns_stats(struct engine *e, struct dns_stats *s);

/* Connections open right now, over all workers (a recent view). */
size_t eng_open_connections(struct engine *e);
/* Connections open or opening to a route, on every worker (routes equal
 * in every field share them). */
unsigned eng_route_connections(struct engine *e, const struct eng_route *r);
/* The number of workers, and the connections open on one of them. */
unsigned eng_workers(const struct engine *e);
size_t eng_worker_connections(struct engine *e, unsigned worker);
void eng_free(struct engine *e);

#endif
