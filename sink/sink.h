/*
 * volley-sink: an io_uring SMTP server that counts (or stores) and discards
 * mail, with scripted replies and fault injection. docs/sink.md is its
 * manual. The SMTP server itself is smtpd/ (shared with volleyd); this
 * module is what makes it a sink:
 *   sink_conf.c   command line and reply rules
 *   sink_hooks.c  the rules, fault dice, --auth and the store as smtpd hooks
 *   sink_store.c  the maildir writer
 *   sink_profile.c  provider profiles (--profile): the per-IP table and
 *                 the decisions, pure (no I/O, the time is given)
 *   main.c        threads, signals, counters
 * Prefix: sink_.
 */
#ifndef VOLLEY_SINK_H
#define VOLLEY_SINK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "../common/common.h"
#include "../smtpd/smtpd.h"

#define SINK_DEFAULT_PORT 2525

/* ---- provider profiles (sink_profile.c): pure, no I/O, no clock ----
 * A profile throttles per client IP (the connection's peer address) as a
 * large mailbox provider does: concurrent connections, a message rate
 * (token bucket), messages per connection, recipients per message, and
 * the "reputation age" of the IP: new IPs are deferred for new_defer_ms,
 * then their connection and rate limits ramp up linearly from ramp_start
 * of the whole over ramp_ms. */
enum sink_prof_reason {
	SINK_PR_OK,
	SINK_PR_CONNS,   /* too many connections from the IP */
	SINK_PR_RATE,    /* message rate of the IP exceeded */
	SINK_PR_NEWIP,   /* the IP is new: deferred */
	SINK_PR_RCPTS,   /* too many recipients in one message */
	SINK_PR_PERCONN, /* too many messages on one connection */
	SINK_PR_COUNT
};
#define SINK_PROF_IPS_DEFAULT 4096

/* A reply: code and a printf format with one %s, the client's IP. */
struct sink_prof_reply {
	int code;
	const char *fmt;
};

struct sink_profile {
	const char *name;
	uint32_t max_conns;      /* concurrent per IP; 0: no limit */
	double rate;             /* messages a second per IP; 0: no limit */
	double burst;            /* bucket size; 0: one second's worth (>= 1) */
	uint32_t msgs_per_conn;  /* 0: no limit */
	uint32_t rcpts_per_msg;  /* 0: no limit */
	uint64_t new_defer_ms;   /* a new IP is deferred this long */
	uint64_t ramp_ms;        /* then its limits grow to whole over this */
	double ramp_start;       /* share of the limits at the ramp's start */
	enum smtpd_stage conn_stage;  /* where the connection limit answers:
				       * CONNECT or the first command (HELO) */
	enum smtpd_stage rate_stage;  /* MAIL, RCPT (first of a message) or DOT */
	enum smtpd_stage newip_stage; /* CONNECT, MAIL, RCPT or DOT */
	struct sink_prof_reply reply[SINK_PR_COUNT];
};

/* The built-in profile called name (gmail, yahoo, microsoft), or NULL. */
const struct sink_profile *sink_prof_find(const char *name);
extern const char *const sink_prof_reason_names[SINK_PR_COUNT];

/* One client IP's state. */
struct sink_prof_ip {
	char addr[48];           /* "" when the slot is free */
	uint64_t first_ms;       /* first seen: the reputation age starts */
	uint64_t last_ms;        /* last event (the LRU order) */
	double tokens;           /* rate bucket */
	uint64_t tok_ms;
	uint32_t conns;          /* open connections counted */
	uint64_t accepted, rcpts;
	uint64_t throttled[SINK_PR_COUNT];
	int32_t hnext;           /* hash chain */
	int32_t prev, next;      /* LRU list, most recent first */
};

/* The IPs, at most cap: when full, the least recently connected IP
 * without an open connection is forgotten (it comes back as a new IP). */
struct sink_prof_table {
	struct sink_prof_ip *e;
	int32_t *bucket;
	uint32_t cap, nbucket, n;
	int32_t head, tail;      /* LRU list */
	uint64_t forgotten;      /* IPs dropped to make room */
	uint64_t full;           /* connections refused: every slot busy */
};

/* One connection's share. */
struct sink_prof_sess {
	struct sink_prof_ip *ip;       /* NULL: not counted (refused) */
	enum sink_prof_reason pending; /* answered at the first command */
	uint32_t msgs;                 /* accepted on this connection */
	bool txn_token;                /* this message took its rate token */
};

void sink_prof_table_init(struct sink_prof_table *t, uint32_t cap);
void sink_prof_table_free(struct sink_prof_table *t);
/* addr's entry, made (first seen at now) when new and touched; NULL when
 * every slot holds an IP with open connections. */
struct sink_prof_ip *sink_prof_ip_get(struct sink_prof_table *t, const char *addr,
				      uint64_t now);
/* The share (ramp_start..1) of the limits an IP has at now; 0 while new. */
double sink_prof_factor(const struct sink_profile *p, const struct sink_prof_ip *ip,
			uint64_t now);
/* A connection from addr at now: counted into its IP (ss->ip) unless
 * refused. The reason is answered at once when it is the connection's
 * stage; else it is left in ss->pending and SINK_PR_OK returned. */
enum sink_prof_reason sink_prof_connect(const struct sink_profile *p,
					struct sink_prof_table *t, const char *addr,
					uint64_t now, struct sink_prof_sess *ss);
/* A command at st (nrcpt recipients accepted so far in the message). */
enum sink_prof_reason sink_prof_command(const struct sink_profile *p,
					struct sink_prof_sess *ss, enum smtpd_stage st,
					int nrcpt, uint64_t now);
/* A message of nrcpt recipients accepted. */
void sink_prof_accepted(struct sink_prof_sess *ss, int nrcpt);
/* The connection ended. */
void sink_prof_close(struct sink_prof_sess *ss);
/* The reply for r to ip, wire form (CRLF), into out; returns its code. */
int sink_prof_reply(const struct sink_profile *p, enum sink_prof_reason r, const char *ip,
		    char *out, size_t outlen);
/* "ADDR:PORT" / "[V6]:PORT" -> the address alone. */
void sink_prof_peer_addr(const char *peer, char *out, size_t outlen);
/* The table as JSON members ("profile": ..., "ips": {...}) for the stats line. */
void sink_prof_json(const struct sink_profile *p, const struct sink_prof_table *t,
		    uint64_t now, struct vl_buf *out);

/* What the workers share: the table under a mutex. */
struct sink_prof_shared {
	pthread_mutex_t mu;
	struct sink_prof_table t;
};

enum sink_rule_kind {
	SINK_RULE_REPLY, /* a reply with a code */
	SINK_RULE_DROP,  /* reset the connection */
	SINK_RULE_STALL, /* never answer */
	SINK_RULE_RAW,   /* send bytes verbatim */
};

struct sink_rule {
	enum smtpd_stage stage;
	char *pattern;          /* NULL: any */
	char *client;           /* glob on the client's IP address; NULL: any */
	enum sink_rule_kind kind;
	int code;               /* SINK_RULE_REPLY */
	char *reply;            /* wire form, CRLF-terminated (REPLY and RAW) */
};

/* A fault-dice setting: share of commands at one stage. */
struct sink_fault {
	enum smtpd_stage stage;
	double pct;
};

struct sink_conf {
	struct smtpd_listen listen[SMTPD_MAX_LISTEN];
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
	char *accept_log;       /* --accept-log FILE: a line per accepted
				 * recipient matching accept_glob */
	char *accept_glob;      /* --accept-log-rcpt GLOB; NULL: every one */
	uint64_t stats_every_ms;
	bool quiet;
	unsigned disabled;      /* SMTPD_NO_* extensions not offered */
	char *auth_user, *auth_pass; /* --auth: required, only inside TLS */
	bool requiretls;        /* --requiretls: REQUIRETLS (RFC 8689) inside TLS */
	bool has_profile;       /* --profile */
	struct sink_profile profile; /* with the overrides applied */
	double time_scale;      /* --profile-time-scale: divides the IP ages */
	uint32_t profile_ips;   /* --profile-max-ips */
	const char *prof_opt[16]; /* --profile-* values, applied after the
				   * parse whatever their order (argv's) */
	struct smtpd_conf smtpd; /* the server's settings, made from the above */
};

/* Parse argv; 0 ok, 1 when --help was printed, -1 with err filled. */
int sink_conf_parse(struct sink_conf *c, int argc, char **argv, char *err,
		    size_t errlen);
/* Parse one --reply RULE into r; -1 with err filled. */
int sink_rule_parse(struct sink_rule *r, const char *spec, char *err,
		    size_t errlen);
int sink_stage_parse(const char *name, enum smtpd_stage *st);
void sink_conf_free(struct sink_conf *c);
void sink_usage(FILE *f);

/* Counters (smtpd's, with --accept-log its lines as "accept_logged", and
 * with --profile the table's per client IP) as the one JSON line
 * --stats-every prints. prof, alog: NULL without those options. */
struct sink_alog;
void sink_stats_json(const struct smtpd_stats *sum, const struct sink_conf *c,
		     struct sink_prof_shared *prof, struct sink_alog *alog,
		     struct vl_buf *out);

/* ---- maildir ---- */
struct sink_store;
/* Create DIR/{tmp,new,env}; NULL with err filled. */
struct sink_store *sink_store_open(const char *dir, char *err, size_t errlen);
int sink_store_put(struct sink_store *s, const struct smtpd_envelope *env,
		   const char *msg, size_t len);
void sink_store_close(struct sink_store *s);

/* ---- the accept log (--accept-log): when each chosen recipient's
 * message was accepted, for latency measured at the receiving end ---- */
struct sink_alog {
	pthread_mutex_t mu;      /* the workers share the file */
	FILE *f;
	const char *glob;        /* NULL: every recipient */
	_Atomic uint64_t n;      /* lines written (and flushed) */
};
/* Open (truncate) path; NULL with err filled. */
struct sink_alog *sink_alog_open(const char *path, const char *glob, char *err,
				 size_t errlen);
/* "SECONDS.MICROS RCPT\n" for each recipient of env that matches, now
 * (just before the 250); flushed, so a count in the stats line means
 * that many lines are in the file. */
void sink_alog_put(struct sink_alog *a, const struct smtpd_envelope *env);
void sink_alog_close(struct sink_alog *a);

/* ---- the sink as smtpd's hooks ---- */

/* One per worker: the hooks' arg. */
struct sink_ctx {
	const struct sink_conf *conf;
	struct sink_store *store;   /* NULL: discard */
	uint64_t rng;               /* the fault dice */
	struct sink_prof_shared *prof; /* NULL: no --profile */
	struct sink_alog *alog;     /* NULL: no --accept-log */
};
/* rng seeded from the configuration and the worker's number. */
void sink_ctx_init(struct sink_ctx *x, const struct sink_conf *conf, unsigned worker,
		   struct sink_store *store, struct sink_prof_shared *prof,
		   struct sink_alog *alog);
extern const struct smtpd_hooks sink_hooks;

#endif
