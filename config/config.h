/*
 * config: volleyd's configuration file (libconfig syntax) and the
 * domain-policy lookup. Prefix: cfg_.
 *
 * Every key has a default; unknown keys are errors (a typo must not be
 * silently ignored). Sizes take "25MB"-style strings or integers, durations
 * "5m"-style strings or integers (seconds). docs/config.md lists them.
 */
#ifndef VOLLEY_CONFIG_H
#define VOLLEY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

struct cfg_policy {               /* shaping and delivery for a set of domains */
	char *tls;               /* none|may|encrypt|dane|dane-only|mta-sts|verify */
	char *ca_file;           /* CA bundle for verify and MTA-STS; "": system */
	int64_t max_connections;
	int64_t max_messages_per_connection;
	int64_t max_recipients_per_message;
	char *rate;              /* "" = unlimited, else "N/s|min|h" */
	int64_t port;
	char *route;             /* "host:port" instead of MX, "" = MX; host is
				  * an IP address or a name (A/AAAA) */
	int64_t implicit_tls;    /* 1/0; unset (-1): on when the port is 465 */
	char *auth_user, *auth_password;
	char *pool;              /* the egress pool (cfg_pool_find); NULL: default */
};

/* A warm-up step: from day `day` of the schedule (1 = its first) on, at
 * most `max` messages a day to each provider (0: no cap from then on). */
struct cfg_warmup_step {
	uint32_t day;
	uint64_t max;
};

/* An egress source: a local address to send from and its EHLO name. */
struct cfg_egress {
	char *address, *ehlo;
	char *name;              /* unique; defaults to the address */
	/* warm-up (warmup.c): NULL/0 steps: none */
	char *warmup;            /* "standard", "custom" (a table), or NULL */
	struct cfg_warmup_step *steps;
	size_t nsteps;
	int64_t warmup_start;    /* day 1, in days since 1970-01-01 (UTC); -1:
				  * the day the source first sends */
};

/* A pool: egress sources sharing traffic by weight. */
struct cfg_pool {
	char *name;
	size_t n;
	size_t *src;             /* indexes into cfg.egress */
	unsigned *weight;        /* >= 1 each */
	bool overflow_wait;      /* a source over its warm-up cap: its share
				  * waits (true) or goes to the others */
};
#define CFG_POOL_DEFAULT "default"

/* A provider's reply rule (providers.c): what one of its replies means. */
enum cfg_reply_action {
	CFG_RA_BACKOFF,          /* the adaptive back-off of the source x site */
	CFG_RA_SUSPEND_SOURCE,   /* this source leaves the site for duration_ms */
	CFG_RA_SUSPEND_POOL,     /* every source leaves the site for duration_ms */
	CFG_RA_DEFER,            /* a deferral, nothing more */
	CFG_RA_BOUNCE,           /* a bounce, even for a 4xx */
};
struct cfg_reply_rule {
	char *code, *enhanced;   /* globs or comma-separated lists; "*": any */
	char *text;              /* POSIX ERE, case-insensitive; "": any */
	void *re;                /* its compiled form (regex_t), or NULL */
	enum cfg_reply_action action;
	uint64_t duration_ms;    /* suspend-*: how long */
};
/* A mailbox provider (providers.c, docs/providers.md): the domains whose
 * name or MX hosts match share one site per source, under its policy. */
struct cfg_provider {
	char *name;
	char **domains, **mx;    /* globs, NULL-terminated */
	size_t ndomains, nmx;
	struct cfg_policy p;     /* unset fields (NULL / -1) inherit defaults */
	struct cfg_reply_rule *replies;
	size_t nreplies;
	bool builtin;            /* from the shipped providers.conf */
	bool extend;             /* while loading: adds to the provider of its name */
};

struct cfg_domain_rule {
	char *match;             /* glob on the recipient domain */
	struct cfg_policy p;      /* unset fields (NULL / -1) inherit defaults */
};

/* A listener's address: "IP:PORT" or "[IPv6]:PORT" as written, and parsed. */
struct cfg_listen {
	char *text;
	char host[46];           /* the IP address, without brackets */
	uint16_t port;
};

/* What mail a submitting user sends gets (submission's defaults and its
 * per_user entries); an unset field is NULL / -1 and inherits. */
struct cfg_sub_settings {
	char **from_domains;     /* globs of allowed From domains, NULL-terminated;
				    NULL: unset */
	size_t nfrom_domains;
	char *campaign;
	char *priority;          /* "bulk" | "transactional" */
	char *rate_limit;        /* "100/m" (vl_parse_rate) */
	int64_t dkim;            /* 1/0, -1 unset */
	int64_t max_recipients;  /* -1 unset */
};

/* SMTP submission (RFC 6409, RFC 8314): on when it has a listener. */
struct cfg_submission {
	bool on;
	struct cfg_listen *listen, *implicit_tls;  /* STARTTLS (587), TLS (465) */
	size_t nlisten, nimplicit_tls;
	char *cert, *key;        /* PEM; needed with any listener */
	char *users;             /* the users file (submit/submit.h) */
	uint64_t max_message_size;     /* 0 in the file: the global one */
	uint64_t auth_cache_ttl_ms;    /* a verified login is remembered; 0: off */
	int64_t auth_cache_size;       /* entries */
	int64_t threads;               /* io_uring workers of the listeners (1) */
	struct cfg_sub_settings defaults;
	struct cfg_sub_user {
		char *name;
		struct cfg_sub_settings s;
	} *per_user;
	size_t nper_user;
};

/* A feedback mailbox read over IMAP (imap/, docs/feedback.md). */
struct cfg_mailbox {
	char *name;              /* [A-Za-z0-9_-]{1,32}; default mbox1, mbox2, ... */
	char *url;               /* imaps://HOST[:PORT]/FOLDER or imap:// (STARTTLS) */
	char *user, *password;   /* password read from password_file when given */
	char *password_file, *ca_file;   /* "": none; ca_file "": the system's CAs */
	uint64_t poll_ms;
	char *processed;         /* "flag", "delete" or "move:FOLDER" */
	char *other;             /* "leave" or "move:FOLDER" */
};

/* The return-path receiver (bounces and feedback): on when it listens;
 * mailboxes are read over IMAP whether it listens or not. */
struct cfg_feedback {
	bool on;
	struct cfg_listen *listen;
	size_t nlisten;
	char **domains;          /* the domains it takes mail for, NULL-terminated */
	size_t ndomains;
	char *cert, *key;        /* "": submission's; both "": no STARTTLS */
	uint64_t max_message_size;
	struct cfg_mailbox *mailboxes;
	size_t nmailboxes;
	/* complaints (docs/feedback.md): a job, and a From domain over 24 h,
	 * pause over this share of delivered, from min_delivered on */
	double complaint_rate;   /* 0.003 */
	int64_t complaint_min_delivered;
	uint64_t retain_ms;      /* processed reports are kept this long */
};

/* volley's one-click unsubscribe (RFC 8058; unsub/): on when base_url is
 * set. The secrets are octets (a string's, or a file's without its final
 * line break), 32 to 1024 of them. */
struct cfg_unsubscribe {
	bool on;
	struct cfg_listen *listen;   /* the HTTP listener(s); none: tokens only */
	size_t nlisten;
	char *base_url;              /* https://host/path: URLs are base_url/TOKEN */
	char *secret_file, *previous_secret_file;
	unsigned char *secret, *previous;   /* previous: accepted, not issued */
	size_t secret_len, previous_len;
	char *cert, *key;            /* HTTPS on the listener itself; "": plain HTTP */
	int64_t max_connections, max_connections_per_ip, threads;
	uint64_t timeout_ms;         /* a connection idle this long is closed */
};

/* A webhook (docs/webhooks.md): events POSTed as JSON, signed. */
struct cfg_webhook {
	char *name;              /* unique; default hook1, hook2, ... */
	char *url;               /* https, or http to a loopback address */
	char **events;           /* type names, NULL-terminated; none: all */
	size_t nevents;
	char *secret;            /* the HMAC key (secret_file's content) */
	unsigned batch;          /* events a POST at most (100) */
	bool gzip;
	uint64_t timeout_ms;     /* a request's limit (10 s) */
	char *ca_file;           /* "": the system's CAs */
};

/* cluster = { redis; node; password_file; tls; tls_*; lease_ttl; }: nodes
 * sharing limits through Redis (docs/cluster.md); off unless redis is set. */
struct cfg_cluster {
	bool on;
	char *redis;             /* redis[s]://[user:pass@]host:port/db (checked by cluster/) */
	char *node;              /* this node's name: letters, digits, '-', '_' */
	char *password_file;     /* "": the URL's password, if any */
	char *password;          /* read from password_file, or NULL */
	bool tls;                /* TLS to Redis (also with a rediss:// URL) */
	char *tls_ca_file;       /* "": the system's CAs */
	char *tls_cert, *tls_key;    /* a client certificate: both or neither */
	char *tls_server_name;   /* "": the URL's host */
	uint64_t lease_ttl_ms;   /* heartbeats' life; default 10 s */
};

struct cfg {
	char *data_dir, *hostname;
	int64_t workers;
	uint64_t max_message_size;
	char *bounce_rules;          /* a user's rules file, consulted first */
	bool dkim_required;          /* never send a message unsigned */
	char *dkim_canon;            /* "relaxed/relaxed", "simple/simple", ... */
	uint64_t dkim_expire_ms;     /* x= this long after t=; 0: no x= */
	uint64_t shutdown_grace_ms;  /* SIGTERM: transactions in flight may end */
	struct {
		uint64_t rotate_bytes;
		int64_t keep_files;
	} events;
	struct {
		char *socket, *listen, *token;
		int64_t max_connections, max_connections_per_ip, threads;
		uint64_t max_body, header_timeout_ms, idle_timeout_ms;
	} api;
	struct {
		bool enabled;    /* the web console on the API's listeners */
		bool actions;    /* it offers pause, resume and cancel */
	} console;
	struct {
		uint64_t max_bytes, min_free;
		int64_t journal_commit_ms;
		uint64_t retain_ms;
		uint64_t intake_checkpoint_ms;  /* the intake log's checkpoints */
	} spool;
	struct {
		char **servers;
		size_t nservers;
		int64_t timeout_ms;
		bool allow_private;  /* MX hosts on loopback/private addresses */
		uint64_t min_ttl_ms, max_ttl_ms; /* answers kept at least, at most */
		bool ipv6, prefer_ipv6;  /* use AAAA addresses; before A ones */
	} dns;
	struct cfg_policy defaults;
	struct {                 /* SMTP client timeouts (RFC 5321 4.5.3.2), ms */
		uint64_t connect, greeting, helo, tls, mail, rcpt, data,
			 data_block, data_term, idle, quit;
	} timeouts;
	bool provider_defaults;  /* the shipped providers.conf applies */
	struct cfg_provider *providers; /* user ones first, then the shipped ones */
	size_t nproviders;
	uint64_t *retry_ms;
	size_t nretry;
	uint64_t max_age_ms;
	struct cfg_domain_rule *domains;
	size_t ndomains;
	struct cfg_egress *egress;
	size_t negress;
	/* the configured pools, then the implicit "default" (every source,
	 * equal weights) unless one of them is named so; always at least one */
	struct cfg_pool *pools;
	size_t npools;
	struct { char *domain, *selector, *key; } *dkim;
	size_t ndkim;
	struct {                 /* TLS reporting (RFC 8460): on when set */
		bool on;
		char *organization, *contact; /* the report's organization-name, contact-info */
		char *from;          /* From of mailed reports; "": tlsrpt-noreply@hostname */
		char *ca_file;       /* https reports: CAs to verify with; "": the system's */
		bool send;           /* send daily reports (false: record only) */
	} tls_rpt;
	struct {                 /* volleyd's own log */
		char *file;          /* "": data_dir/volleyd.log (detached only) */
		bool syslog;         /* also to syslog(3), facility mail */
		char *level;         /* error|warn|info|debug */
	} log;
	struct cfg_submission submission;
	struct cfg_feedback feedback;
	struct cfg_unsubscribe unsubscribe;
	struct cfg_webhook *webhooks;
	size_t nwebhooks;
	struct cfg_cluster cluster;
};

/* ---- webhooks (webhooks.c) ---- */
/* The event types there are, NULL-terminated: what webhooks may name. */
extern const char *const cfg_event_types[];
/* 1 to 64 of letters, digits, '-', '_'. */
bool cfg_webhook_name_ok(const char *name);
/* 1 to max of letters, digits, '-', '_' (a file name, a metric label). */
bool cfg_name_ok(const char *name, size_t max);
/* https, or http to 127.0.0.0/8 or [::1]; -1 with why. */
int cfg_webhook_url_check(const char *url, char *why, size_t whylen);
/* list: the libconfig setting of `webhooks`. -1 with err (file:line: key). */
int cfg_webhooks_load(const void *list, const char *file, struct cfg *c, char *err,
		      size_t errlen);
void cfg_webhooks_free(struct cfg *c);
void cfg_webhooks_print(const struct cfg *c, struct vl_buf *out);

/* ---- warm-up (warmup.c) ---- */
/* list: the libconfig setting of `egress`; reads each entry's warmup and
 * warmup_start into c->egress (already parsed). -1 with err. */
int cfg_warmup_load(const void *list, const char *file, struct cfg *c, char *err,
		    size_t errlen);
/* Messages source e may send to one provider on day `day` (1 = the
 * schedule's first; days before count as 1): UINT64_MAX when uncapped. */
uint64_t cfg_warmup_cap(const struct cfg_egress *e, int64_t day);
void cfg_warmup_free(struct cfg_egress *e);
/* " warmup = ...; warmup_start = ...;" as the file writes it ("" if none). */
void cfg_warmup_print(const struct cfg_egress *e, struct vl_buf *out);

/* ---- providers (providers.c) ---- */
/* The shipped providers.conf, compiled in. */
extern const char cfg_providers_builtin[];
/* list: the libconfig setting of `providers` (builtin: the shipped file's).
 * A name already there is replaced. -1 with err (file:line: key). */
int cfg_providers_load(const void *list, const char *file, bool builtin, struct cfg *c,
		       char *err, size_t errlen);
/* Parse the shipped file into c (called by cfg_load's defaults). */
int cfg_providers_builtin_load(struct cfg *c, char *err, size_t errlen);
void cfg_providers_drop_builtin(struct cfg *c);
void cfg_providers_free(struct cfg *c);
void cfg_providers_print(const struct cfg *c, struct vl_buf *out);
/* The provider of a domain: by its name, else by any of its MX hosts
 * (mx may be NULL). -1: none. */
int cfg_provider_for(const struct cfg *c, const char *domain, const char *const *mx,
		     size_t nmx);
int cfg_provider_find(const struct cfg *c, const char *name);
/* The first reply rule of provider i matching the reply (code 0: none came;
 * enhanced ""; text folded to one line). NULL: none. */
const struct cfg_reply_rule *cfg_provider_reply(const struct cfg *c, int i, int code,
						const char *enhanced, const char *text);
const char *cfg_reply_action_name(enum cfg_reply_action a);

/* ---- submission users (the users file is submit/'s; these are shared
 * by it, the configuration's per_user entries and `volley user`) ---- */
#define CFG_USER_NAME_MAX 64
/* A user name: 1 to 64 of letters, digits, '.', '_', '@', '+', '-'. */
bool cfg_user_name_ok(const char *name);
void cfg_sub_settings_init(struct cfg_sub_settings *s);   /* all unset */
void cfg_sub_settings_free(struct cfg_sub_settings *s);   /* and unset again */
/* The set values of s are valid: from_domains globs of domain characters,
 * campaign 1-256 octets without control characters, priority bulk or
 * transactional, rate_limit a rate (vl_parse_rate), max_recipients 1 to
 * 100000. -1 with *bad the key at fault and err what is wrong. */
int cfg_sub_settings_check(const struct cfg_sub_settings *s, const char **bad,
			   char *err, size_t errlen);
/* One setting as text, key=value of a users file: from_domains
 * (a.example,b.example), campaign, priority, rate_limit, dkim (yes|no),
 * max_recipients; set in s and checked. -1 with err ("key: what"). */
int cfg_sub_setting_parse(struct cfg_sub_settings *s, const char *key, const char *value,
			  char *err, size_t errlen);

/* Defaults, then the file at path (NULL: none). -1 with err naming the
 * file, line and key, and c freed (cfg_free on it again is harmless). */
int cfg_load(struct cfg *c, const char *path, char *err,
		   size_t errlen);
void cfg_free(struct cfg *c);
/* The log level a configuration names. */
enum vl_log_level cfg_log_level(const struct cfg *c);
/* The effective configuration, in the file's own syntax. */
void cfg_print(const struct cfg *c, struct vl_buf *out);
/* The policy for a recipient domain: the defaults, overlaid by provider
 * prov's policy (-1: none), then by every matching domains rule in order
 * (later rules win). */
void cfg_policy_for_provider(const struct cfg *c, const char *domain, int prov,
			     struct cfg_policy *out);
/* The same with the provider its name gives (cfg_provider_for without MX). */
void cfg_policy_for(const struct cfg *c, const char *domain,
		      struct cfg_policy *out);
/* The index of the pool named name (NULL: the default one), -1 when none. */
int cfg_pool_find(const struct cfg *c, const char *name);
/* The port a policy's mail goes to: its route's, else `port`. */
unsigned cfg_policy_port(const struct cfg_policy *p);
/* Whether it speaks TLS from the connect on (RFC 8314): implicit_tls if
 * set, else whether that port is 465. */
bool cfg_policy_implicit_tls(const struct cfg_policy *p);

#endif
