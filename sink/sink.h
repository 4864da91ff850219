/*
 * volley-sink: an io_uring SMTP server that counts (or stores) and discards
 * mail, with scripted replies and fault injection. docs/sink.md is its
 * manual. The SMTP server itself is smtpd/ (shared with volleyd); this
 * module is what makes it a sink:
 *   sink_conf.c   command line and reply rules
 *   sink_hooks.c  the rules, fault dice, --auth and the store as smtpd hooks
 *   sink_store.c  the maildir writer
 *   main.c        threads, signals, counters
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
#include "../smtpd/smtpd.h"

#define SINK_DEFAULT_PORT 2525

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
	uint64_t stats_every_ms;
	bool quiet;
	unsigned disabled;      /* SMTPD_NO_* extensions not offered */
	char *auth_user, *auth_pass; /* --auth: required, only inside TLS */
	bool requiretls;        /* --requiretls: REQUIRETLS (RFC 8689) inside TLS */
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

/* Counters (smtpd's) as the one JSON line --stats-every prints. */
void sink_stats_json(const struct smtpd_stats *sum, struct vl_buf *out);

/* ---- maildir ---- */
struct sink_store;
/* Create DIR/{tmp,new,env}; NULL with err filled. */
struct sink_store *sink_store_open(const char *dir, char *err, size_t errlen);
int sink_store_put(struct sink_store *s, const struct smtpd_envelope *env,
		   const char *msg, size_t len);
void sink_store_close(struct sink_store *s);

/* ---- the sink as smtpd's hooks ---- */

/* One per worker: the hooks' arg. */
struct sink_ctx {
	const struct sink_conf *conf;
	struct sink_store *store;   /* NULL: discard */
	uint64_t rng;               /* the fault dice */
};
/* rng seeded from the configuration and the worker's number. */
void sink_ctx_init(struct sink_ctx *x, const struct sink_conf *conf, unsigned worker,
		   struct sink_store *store);
extern const struct smtpd_hooks sink_hooks;

#endif
