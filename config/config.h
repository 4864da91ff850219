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
};

struct cfg_domain_rule {
	char *match;             /* glob on the recipient domain */
	struct cfg_policy p;      /* unset fields (NULL / -1) inherit defaults */
	bool builtin;            /* one of the shipped provider defaults */
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
		uint64_t max_bytes, min_free;
		int64_t journal_commit_ms;
		uint64_t retain_ms;
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
	bool provider_defaults;  /* the shipped rules for big mailbox providers */
	uint64_t *retry_ms;
	size_t nretry;
	uint64_t max_age_ms;
	struct cfg_domain_rule *domains;
	size_t ndomains;
	struct { char *address, *ehlo; } *egress;
	size_t negress;
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
};

/* Defaults, then the file at path (NULL: none). -1 with err naming the
 * file, line and key, and c freed (cfg_free on it again is harmless). */
int cfg_load(struct cfg *c, const char *path, char *err,
		   size_t errlen);
void cfg_free(struct cfg *c);
/* The log level a configuration names. */
enum vl_log_level cfg_log_level(const struct cfg *c);
/* The effective configuration, in the file's own syntax. */
void cfg_print(const struct cfg *c, struct vl_buf *out);
/* The policy for a recipient domain: defaults overlaid by every matching
 * rule in order (later rules win). */
void cfg_policy_for(const struct cfg *c, const char *domain,
		      struct cfg_policy *out);
/* The port a policy's mail goes to: its route's, else `port`. */
unsigned cfg_policy_port(const struct cfg_policy *p);
/* Whether it speaks TLS from the connect on (RFC 8314): implicit_tls if
 * set, else whether that port is 465. */
bool cfg_policy_implicit_tls(const struct cfg_policy *p);

#endif
