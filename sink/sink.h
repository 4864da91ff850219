/*
 * volley-sink: an io_uring SMTP server that counts (or stores) and discards
 * mail, with scripted replies and fault injection. docs/sink.md is its
 * manual. The module splits into
 *   sink_conf.c   command line and reply rules
 *   sink_smtp.c   the SMTP server session: bytes in, replies out, no I/O
 *   sink_store.c  the maildir writer
 *   sink_io.c     the io_uring worker: accept, recv, send, timers, TLS
 *   sink_main.c   threads, signals, counters
 * Prefix: sink_.
 */
#ifndef VOLLEY_SINK_H
#define VOLLEY_SINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "../common/common.h"
#include "../tls/tls.h"

#define SINK_LINE_MAX 1000        /* command line incl. CRLF (RFC 5321) */
#define SINK_MAX_LISTEN 32
#define SINK_MAX_ERRORS 20        /* protocol errors before 421 */
#define SINK_DEFAULT_PORT 2525

/* Where a rule or a fault applies. */
enum sink_stage {
	SINK_ST_CONNECT,
	SINK_ST_HELO,
	SINK_ST_MAIL,
	SINK_ST_RCPT,
	SINK_ST_DATA,
	SINK_ST_DOT,
	SINK_ST_RSET,
	SINK_ST_NOOP,
	SINK_ST_QUIT,
	SINK_ST_STARTTLS,
	SINK_ST_VRFY,
	SINK_ST_COUNT
};

enum sink_rule_kind {
	SINK_RULE_REPLY, /* a reply with a code */
	SINK_RULE_DROP,  /* reset the connection */
	SINK_RULE_STALL, /* never answer */
	SINK_RULE_RAW,   /* send bytes verbatim */
};

struct sink_rule {
	enum sink_stage stage;
	char *pattern;          /* NULL: any */
	enum sink_rule_kind kind;
	int code;               /* SINK_RULE_REPLY */
	char *reply;            /* wire form, CRLF-terminated (REPLY and RAW) */
};

/* A fault-dice setting: share of commands at one stage. */
struct sink_fault {
	enum sink_stage stage;
	double pct;
};

struct sink_listen {
	char host[64];
	uint16_t port;
};

struct sink_conf {
	struct sink_listen listen[SINK_MAX_LISTEN];
	int nlisten;
	int threads;
	char hostname[256];
	bool tls;
	bool implicit_tls;      /* TLS from the connect on (RFC 8314): the
				 * greeting comes inside it, no STARTTLS */
	char *cert, *key;
	uint64_t latency_ms;
	uint64_t timeout_ms;
	struct sink_rule *rules;
	int nrules;
	struct sink_fault tempfail, permfail, disconnect;
	uint64_t seed;
	uint64_t max_conns;     /* 0: no limit */
	uint64_t max_size;
	uint64_t max_rcpts;
	char *maildir;
	uint64_t stats_every_ms;
	bool quiet;
	unsigned disabled;      /* SINK_NO_* extensions not offered */
	char *auth_user, *auth_pass; /* --auth: required, only inside TLS */
	bool requiretls;        /* --requiretls: REQUIRETLS (RFC 8689) inside TLS */
};

/* --disable: extensions the sink does not offer (and, for PIPELINING,
 * enforces: a client that pipelines anyway is refused). */
enum {
	SINK_NO_PIPELINING = 1 << 0,
	SINK_NO_CHUNKING = 1 << 1,
	SINK_NO_8BITMIME = 1 << 2,
	SINK_NO_SMTPUTF8 = 1 << 3,
	SINK_NO_SIZE = 1 << 4,
	SINK_NO_EHLO = 1 << 5,   /* EHLO gets 502: clients fall back to HELO */
};

/* Parse argv; 0 ok, 1 when --help was printed, -1 with err filled. */
int sink_conf_parse(struct sink_conf *c, int argc, char **argv, char *err,
		    size_t errlen);
/* Parse one --reply RULE into r; -1 with err filled. */
int sink_rule_parse(struct sink_rule *r, const char *spec, char *err,
		    size_t errlen);
int sink_stage_parse(const char *name, enum sink_stage *st);
void sink_conf_free(struct sink_conf *c);
void sink_usage(FILE *f);

/* Counters, one set per worker, summed by the main thread. Relaxed atomics:
 * each set has one writer, the reader only wants a recent view. */
struct sink_stats {
	_Atomic uint64_t conns_open, conns_total, conns_refused;
	_Atomic uint64_t messages, recipients, bytes;
	_Atomic uint64_t tls_sessions, replies_4xx, replies_5xx;
	_Atomic uint64_t drops, timeouts, errors;
};
#define SINK_STAT_ADD(s, f, n) atomic_fetch_add_explicit(&(s)->f, (n), memory_order_relaxed)
void sink_stats_json(const struct sink_stats *sum, struct vl_buf *out);
void sink_stats_sum(struct sink_stats *sum, struct sink_stats *const *each, int n);

/* ---- maildir ---- */
struct sink_store;
struct sink_envelope {
	const char *id;
	const char *mail_from;
	const char *rcpts;      /* NUL-separated */
	int nrcpt;
	const char *helo;
	const char *body;       /* NULL, "7BIT", "8BITMIME" */
	bool smtputf8, chunking;
	bool requiretls;        /* MAIL had the REQUIRETLS parameter */
	const char *tls_version, *tls_cipher; /* NULL: cleartext */
	bool tls_resumed;
	const char *auth;       /* NULL: not authenticated */
	const char *peer, *local;
};
/* Create DIR/{tmp,new,env}; NULL with err filled. */
struct sink_store *sink_store_open(const char *dir, char *err, size_t errlen);
int sink_store_put(struct sink_store *s, const struct sink_envelope *env,
		   const char *msg, size_t len);
void sink_store_close(struct sink_store *s);

/* ---- SMTP session ---- */

/* What the worker shares with its sessions. */
struct sink_ctx {
	const struct sink_conf *conf;
	struct sink_stats *stats;
	struct sink_store *store;   /* NULL: discard */
	uint64_t rng;
	unsigned worker;
	uint64_t next_id;
	_Atomic uint64_t *conns_open; /* all workers', for --max-conns */
};

enum sink_action {
	SINK_OK,        /* keep going */
	SINK_STARTTLS,  /* flush replies, then start TLS; drop buffered input */
	SINK_CLOSE,     /* flush replies, then close */
	SINK_DROP,      /* reset the connection now */
};

enum sink_state {
	SINK_S_CMD,
	SINK_S_DATA,
	SINK_S_BDAT,
	SINK_S_STALL,
	SINK_S_CLOSED,
};

struct sink_sess {
	struct sink_ctx *ctx;
	enum sink_state state;
	enum sink_action action;
	struct vl_buf *out;         /* replies go here (plaintext) */

	bool greeted, noservice;    /* noservice: after a 554 greeting */
	bool helo, ehlo, tls, in_mail;
	int auth_step;             /* AUTH exchange in progress */
	char auth_user[256];        /* authenticated as, or "" */
	bool line_overflow;
	int errors;
	char line[SINK_LINE_MAX];
	size_t line_len;
	char helo_name[256];

	/* transaction */
	char mail_from[520];
	const char *body;           /* BODY= value or NULL */
	bool smtputf8, chunking, requiretls;
	struct vl_buf rcpts;        /* accepted recipients, NUL-separated */
	int nrcpt;

	/* message data */
	int dstate;                 /* DATA end-of-message scanner */
	bool data_cr;               /* previous data byte was CR */
	size_t data_line;           /* octets in the current data line */
	bool data_long_line, data_too_big;
	uint64_t msg_size;
	uint64_t bdat_left;
	bool bdat_last, bdat_discard;
	struct vl_buf msg;          /* kept only with a store */

	/* set by the worker */
	const char *tls_version, *tls_cipher;
	bool tls_resumed;
	char peer[64], local[64];
};

void sink_sess_init(struct sink_sess *s, struct sink_ctx *ctx, struct vl_buf *out);
void sink_sess_free(struct sink_sess *s);
/* Send the greeting (or the fault/rule that replaces it). */
enum sink_action sink_sess_greet(struct sink_sess *s);
/* Consume client bytes (plaintext). Returns the number of bytes used: fewer
 * than len only when s->action != SINK_OK, and the rest must not be fed. */
size_t sink_sess_feed(struct sink_sess *s, const char *in, size_t len);
/* The TLS handshake finished: new session state, as RFC 3207 requires. */
void sink_sess_tls_started(struct sink_sess *s, const char *version,
			   const char *cipher);
/* The idle timer fired. */
void sink_sess_timeout(struct sink_sess *s);

/* ---- worker ---- */
struct sink_worker;
/* tls: the server context all workers share (NULL without --tls), so one
 * sink shows one certificate and resumes sessions across workers. */
struct sink_worker *sink_worker_new(const struct sink_conf *conf, unsigned id,
				    struct sink_store *store, SSL_CTX *tls,
				    _Atomic uint64_t *conns_open, char *err,
				    size_t errlen);
/* Runs until *stop is set. 0 on a clean stop. */
int sink_worker_run(struct sink_worker *w, atomic_bool *stop);
struct sink_stats *sink_worker_stats(struct sink_worker *w);
void sink_worker_free(struct sink_worker *w);

#endif
