/*
 * volleyd's configuration file (libconfig syntax). A key table per group
 * drives both parsing and the unknown-key check, so a misspelt key is an
 * error naming its line instead of a setting silently ignored.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum kind { K_STR, K_INT, K_SIZE, K_DUR, K_BOOL, K_TRI /* bool as int64_t 0/1, -1 unset */ };

struct key {
	const char *name;
	enum kind kind;
	size_t off;          /* into the struct being filled */
};

struct ctx {
	const char *file;
	char *err;
	size_t errlen;
};

static int fail(struct ctx *x, const config_setting_t *s, const char *path,
		const char *what)
{
	int line = s ? config_setting_source_line(s) : 0;

	snprintf(x->err, x->errlen, "%s:%d: %s: %s", x->file, line, path, what);
	return -1;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = vl_strdup(v);
}

/* A size or duration given as a string ("25MB", "5m") or an integer. */
static int get_scaled(struct ctx *x, const config_setting_t *s, const char *path,
		      enum kind k, uint64_t *out)
{
	if (config_setting_type(s) == CONFIG_TYPE_INT ||
	    config_setting_type(s) == CONFIG_TYPE_INT64) {
		long long v = config_setting_get_int64(s);
		if (v < 0)
			return fail(x, s, path, "must not be negative");
		*out = k == K_DUR ? (uint64_t)v * 1000 : (uint64_t)v;
		return 0;
	}
	const char *v = config_setting_get_string(s);
	if (!v)
		return fail(x, s, path, k == K_DUR ? "expected a duration such as \"5m\""
			    : "expected a size such as \"25MB\"");
	if ((k == K_DUR ? vl_parse_duration_ms(v, out) : vl_parse_size(v, out)) < 0)
		return fail(x, s, path, k == K_DUR ? "not a duration (\"50ms\", \"5m\", \"3d\")"
			    : "not a size (\"512KB\", \"25MB\", \"1GiB\")");
	return 0;
}

static int get_key(struct ctx *x, const config_setting_t *s, const char *path,
		   const struct key *k, void *base)
{
	void *dst = (char *)base + k->off;

	switch (k->kind) {
	case K_STR: {
		const char *v = config_setting_get_string(s);
		if (!v)
			return fail(x, s, path, "expected a string");
		set_str(dst, v);
		return 0;
	}
	case K_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return fail(x, s, path, "expected true or false");
		*(bool *)dst = config_setting_get_bool(s);
		return 0;
	case K_TRI:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return fail(x, s, path, "expected true or false");
		*(int64_t *)dst = config_setting_get_bool(s);
		return 0;
	case K_INT:
		if (config_setting_type(s) != CONFIG_TYPE_INT &&
		    config_setting_type(s) != CONFIG_TYPE_INT64)
			return fail(x, s, path, "expected an integer");
		*(int64_t *)dst = config_setting_get_int64(s);
		if (*(int64_t *)dst < 0)
			return fail(x, s, path, "must not be negative");
		return 0;
	default:
		return get_scaled(x, s, path, k->kind, dst);
	}
}

/* Fill base from group g by table; NULL-named members are skipped so the
 * caller can handle them (lists, sub-groups). */
static int get_group(struct ctx *x, const config_setting_t *g, const char *prefix,
		     const struct key *keys, size_t nkeys, const char *const *extra,
		     void *base)
{
	if (!config_setting_is_group(g))
		return fail(x, g, prefix, "expected a group { ... }");
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		char path[160];
		bool known = false;

		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name);
		for (size_t j = 0; j < nkeys && !known; j++) {
			if (strcmp(keys[j].name, name) == 0) {
				known = true;
				if (get_key(x, s, path, &keys[j], base) < 0)
					return -1;
			}
		}
		for (size_t j = 0; extra && extra[j] && !known; j++)
			known = strcmp(extra[j], name) == 0;
		if (!known)
			return fail(x, s, path, "unknown key");
	}
	return 0;
}

#define KEY(n, k, type, field) { n, k, offsetof(type, field) }

static const struct key top_keys[] = {
	KEY("data_dir", K_STR, struct cfg, data_dir),
	KEY("hostname", K_STR, struct cfg, hostname),
	KEY("workers", K_INT, struct cfg, workers),
	KEY("max_message_size", K_SIZE, struct cfg, max_message_size),
	KEY("bounce_rules", K_STR, struct cfg, bounce_rules),
	KEY("shutdown_grace", K_DUR, struct cfg, shutdown_grace_ms),
	KEY("dkim_required", K_BOOL, struct cfg, dkim_required),
	KEY("dkim_canonicalization", K_STR, struct cfg, dkim_canon),
	KEY("dkim_expire", K_DUR, struct cfg, dkim_expire_ms),
};
static const char *const top_groups[] = { "api", "console", "spool", "dns", "defaults",
					  "domains", "egress", "dkim", "events", "timeouts",
					  "provider_defaults", "tls_rpt", "log", "submission",
					  "feedback", "unsubscribe", "webhooks", "pools", "providers",
					  "cluster",
					  NULL };

static const struct key timeout_keys[] = {
	KEY("connect", K_DUR, struct cfg, timeouts.connect),
	KEY("greeting", K_DUR, struct cfg, timeouts.greeting),
	KEY("helo", K_DUR, struct cfg, timeouts.helo),
	KEY("tls", K_DUR, struct cfg, timeouts.tls),
	KEY("mail", K_DUR, struct cfg, timeouts.mail),
	KEY("rcpt", K_DUR, struct cfg, timeouts.rcpt),
	KEY("data", K_DUR, struct cfg, timeouts.data),
	KEY("data_block", K_DUR, struct cfg, timeouts.data_block),
	KEY("data_term", K_DUR, struct cfg, timeouts.data_term),
	KEY("idle", K_DUR, struct cfg, timeouts.idle),
	KEY("quit", K_DUR, struct cfg, timeouts.quit),
};

static const struct key events_keys[] = {
	KEY("rotate_bytes", K_SIZE, struct cfg, events.rotate_bytes),
	KEY("keep_files", K_INT, struct cfg, events.keep_files),
};

static const struct key tls_rpt_keys[] = {
	KEY("organization", K_STR, struct cfg, tls_rpt.organization),
	KEY("contact", K_STR, struct cfg, tls_rpt.contact),
	KEY("from", K_STR, struct cfg, tls_rpt.from),
	KEY("ca_file", K_STR, struct cfg, tls_rpt.ca_file),
	KEY("send", K_BOOL, struct cfg, tls_rpt.send),
};

/* tls_rpt = { organization; contact; ... }: both needed, contact an address. */
static int get_tls_rpt(struct ctx *x, const config_setting_t *s, struct cfg *c)
{
	if (get_group(x, s, "tls_rpt", tls_rpt_keys, VL_ARRAY_LEN(tls_rpt_keys), NULL, c) < 0)
		return -1;
	if (!*c->tls_rpt.organization)
		return fail(x, s, "tls_rpt.organization", "needed: the reports' organization-name");
	if (!strchr(c->tls_rpt.contact, '@'))
		return fail(x, s, "tls_rpt.contact", "needed: an email address (contact-info)");
	if (*c->tls_rpt.from && !strchr(c->tls_rpt.from, '@'))
		return fail(x, s, "tls_rpt.from", "expected an email address");
	c->tls_rpt.on = true;
	return 0;
}

static const struct key api_keys[] = {
	KEY("socket", K_STR, struct cfg, api.socket),
	KEY("listen", K_STR, struct cfg, api.listen),
	KEY("token", K_STR, struct cfg, api.token),
	KEY("max_connections", K_INT, struct cfg, api.max_connections),
	KEY("max_connections_per_ip", K_INT, struct cfg, api.max_connections_per_ip),
	KEY("threads", K_INT, struct cfg, api.threads),
	KEY("header_timeout", K_DUR, struct cfg, api.header_timeout_ms),
	KEY("idle_timeout", K_DUR, struct cfg, api.idle_timeout_ms),
	KEY("max_body", K_SIZE, struct cfg, api.max_body),
};

/* The API's limits and clocks (api.md, "Connections, limits and timeouts"). */
static int check_api_limits(struct ctx *x, const config_setting_t *s, const struct cfg *c)
{
	if (c->api.max_connections < 1 || c->api.max_connections > 1000000)
		return fail(x, s, "api.max_connections", "expected 1 to 1000000");
	if (c->api.max_connections_per_ip < 0)
		return fail(x, s, "api.max_connections_per_ip", "expected 0 (no limit) or more");
	if (c->api.threads < 1 || c->api.threads > 256)
		return fail(x, s, "api.threads", "expected 1 to 256");
	if (c->api.header_timeout_ms < 100)
		return fail(x, s, "api.header_timeout", "expected at least 100ms");
	if (c->api.idle_timeout_ms < 100)
		return fail(x, s, "api.idle_timeout", "expected at least 100ms");
	return 0;
}

static const struct key console_keys[] = {
	KEY("enabled", K_BOOL, struct cfg, console.enabled),
	KEY("actions", K_BOOL, struct cfg, console.actions),
};

static const struct key log_keys[] = {
	KEY("file", K_STR, struct cfg, log.file),
	KEY("syslog", K_BOOL, struct cfg, log.syslog),
	KEY("level", K_STR, struct cfg, log.level),
};

static const char *const level_names[] = { "error", "warn", "info", "debug" };

enum vl_log_level cfg_log_level(const struct cfg *c)
{
	for (size_t i = 0; i < VL_ARRAY_LEN(level_names); i++)
		if (strcmp(c->log.level, level_names[i]) == 0)
			return (enum vl_log_level)i;
	return VL_LOG_INFO;
}

/* What the daemon would refuse at start, refused here already (so
 * --check-config says it): the TCP listener's form and its token. */
static int check_api(struct ctx *x, const config_setting_t *root, const struct cfg *c)
{
	char host[256];
	uint16_t port;

	if (!*c->api.listen)
		return 0;
	root = config_setting_lookup((config_setting_t *)root, "api.listen");
	if (vl_parse_hostport(c->api.listen, host, sizeof host, &port) < 0 || !port)
		return fail(x, root, "api.listen", "expected \"host:port\"");
	if (!vl_ip_literal(host))
		return fail(x, root, "api.listen", "the host must be an IP address");
	if (!*c->api.token)
		return fail(x, root, "api.listen", "needs api.token: the TCP listener demands "
			    "Authorization: Bearer <token>");
	return 0;
}

static int check_log(struct ctx *x, const config_setting_t *root, const struct cfg *c)
{
	for (size_t i = 0; i < VL_ARRAY_LEN(level_names); i++)
		if (strcmp(c->log.level, level_names[i]) == 0)
			return 0;
	return fail(x, config_setting_lookup((config_setting_t *)root, "log.level"), "log.level", "expected error, warn, info or debug");
}

static const struct key spool_keys[] = {
	KEY("max_bytes", K_SIZE, struct cfg, spool.max_bytes),
	KEY("min_free", K_SIZE, struct cfg, spool.min_free),
	KEY("journal_commit_ms", K_INT, struct cfg, spool.journal_commit_ms),
	KEY("retain", K_DUR, struct cfg, spool.retain_ms),
	KEY("intake_checkpoint", K_DUR, struct cfg, spool.intake_checkpoint_ms),
};

static const struct key policy_keys[] = {
	KEY("tls", K_STR, struct cfg_policy, tls),
	KEY("max_connections", K_INT, struct cfg_policy, max_connections),
	KEY("max_messages_per_connection", K_INT, struct cfg_policy,
	    max_messages_per_connection),
	KEY("max_recipients_per_message", K_INT, struct cfg_policy,
	    max_recipients_per_message),
	KEY("rate", K_STR, struct cfg_policy, rate),
	KEY("port", K_INT, struct cfg_policy, port),
	KEY("route", K_STR, struct cfg_policy, route),
	KEY("ca_file", K_STR, struct cfg_policy, ca_file),
	KEY("implicit_tls", K_TRI, struct cfg_policy, implicit_tls),
	KEY("pool", K_STR, struct cfg_policy, pool),
};

static const char *const tls_names[] = { "none", "may", "encrypt", "dane",
					 "dane-only", "mta-sts", "verify" };

/* A route's host: an IP address, or a host name (LDH labels, '_' allowed,
 * as dns/ takes them) that volleyd resolves. */
static bool route_host_ok(const char *h)
{
	size_t label = 0, n = strlen(h);

	if (vl_ip_literal(h))
		return true;
	if (n == 0 || n > 253 || h[0] == '.')
		return false;
	for (const char *p = h; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((isalnum((unsigned char)*p) || *p == '-' || *p == '_') && ++label <= 63) {
			continue;
		} else {
			return false;
		}
	}
	return true;
}

static int check_policy(struct ctx *x, const config_setting_t *g, const char *path,
			const struct cfg_policy *p)
{
	char sub[160];
	double r;
	uint16_t port;
	char host[256];

	if (p->tls) {
		bool ok = false;
		for (size_t i = 0; i < VL_ARRAY_LEN(tls_names); i++)
			ok |= strcmp(p->tls, tls_names[i]) == 0;
		snprintf(sub, sizeof sub, "%s.tls", path);
		if (!ok)
			return fail(x, g, sub, "expected none, may, encrypt, dane, dane-only, "
				    "mta-sts or verify");
	}
	snprintf(sub, sizeof sub, "%s.rate", path);
	if (p->rate && *p->rate && vl_parse_rate(p->rate, &r) < 0)
		return fail(x, g, sub, "not a rate (\"50/s\", \"3000/min\", \"50000/h\")");
	snprintf(sub, sizeof sub, "%s.max_connections", path);
	if (p->max_connections == 0 || p->max_connections < -1 || p->max_connections > 1000000)
		return fail(x, g, sub, "expected 1 to 1000000 connections");
	snprintf(sub, sizeof sub, "%s.port", path);
	if (p->port > 65535 || p->port == 0)
		return fail(x, g, sub, "expected a port 1-65535");
	snprintf(sub, sizeof sub, "%s.route", path);
	if (p->route && *p->route &&
	    (vl_parse_hostport(p->route, host, sizeof host, &port) < 0 || !route_host_ok(host)))
		return fail(x, g, sub, "expected \"host:port\" (an IP address, [IPv6] or a "
			    "host name, and a port)");
	snprintf(sub, sizeof sub, "%s.ca_file", path);
	if (p->ca_file && *p->ca_file && access(p->ca_file, R_OK) < 0)
		return fail(x, g, sub, strerror(errno));
	return 0;
}

static void overlay(struct cfg_policy *out, const struct cfg_policy *p);

/* Implicit TLS is TLS: policy none cannot go with it. Checked for the
 * defaults and for each rule on top of them; rules that only combine so
 * through overlapping matches are refused by the scheduler. */
static int check_implicit(struct ctx *x, const config_setting_t *g, const char *path,
			  const struct cfg_policy *defaults, const struct cfg_policy *rule)
{
	struct cfg_policy p = *defaults;

	if (rule)
		overlay(&p, rule);
	if (cfg_policy_implicit_tls(&p) && strcmp(p.tls, "none") == 0)
		return fail(x, g, path, "implicit TLS (port 465, or implicit_tls = true) "
			    "is always TLS: tls = \"none\" cannot go with it (use may, "
			    "encrypt, dane, dane-only or verify, or implicit_tls = false)");
	return 0;
}

/* A policy group, with its optional auth = { user; password; }. */
static int get_policy(struct ctx *x, const config_setting_t *g, const char *path,
		      struct cfg_policy *p, const char *const *extra)
{
	static const char *const with_auth[] = { "auth", "match", NULL };
	const config_setting_t *auth = config_setting_get_member(g, "auth");

	if (get_group(x, g, path, policy_keys, VL_ARRAY_LEN(policy_keys),
		      extra ? extra : with_auth, p) < 0)
		return -1;
	if (auth) {
		const char *u = NULL, *pw = NULL;
		char sub[160];
		snprintf(sub, sizeof sub, "%s.auth", path);
		if (!config_setting_is_group(auth) || config_setting_length(auth) != 2 ||
		    !config_setting_lookup_string(auth, "user", &u) ||
		    !config_setting_lookup_string(auth, "password", &pw))
			return fail(x, auth, sub, "expected { user = \"...\"; password = \"...\"; }");
		set_str(&p->auth_user, u);
		set_str(&p->auth_password, pw);
	}
	return check_policy(x, g, path, p);
}

static int get_strings(struct ctx *x, const config_setting_t *l, const char *path,
		       char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!config_setting_is_array(l) && !config_setting_is_list(l))
		return fail(x, l, path, "expected a list [ \"...\", ... ]");
	*n = (size_t)config_setting_length(l);
	*out = vl_calloc(*n + 1, sizeof **out);
	for (size_t i = 0; i < *n; i++) {
		const char *v = config_setting_get_string_elem(l, (int)i);
		if (!v)
			return fail(x, l, path, "expected strings");
		set_str(&(*out)[i], v);
	}
	return 0;
}

static int get_retry(struct ctx *x, const config_setting_t *l, struct cfg *c)
{
	char **v = NULL;
	size_t n = 0;
	int rc = get_strings(x, l, "defaults.retry", &v, &n);

	free(c->retry_ms);
	c->retry_ms = vl_calloc(n ? n : 1, sizeof *c->retry_ms);
	c->nretry = n;
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (vl_parse_duration_ms(v[i], &c->retry_ms[i]) < 0 || !c->retry_ms[i])
			rc = fail(x, l, "defaults.retry", "expected durations such as \"5m\"");
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	if (rc == 0 && n == 0)
		rc = fail(x, l, "defaults.retry", "needs at least one interval");
	return rc;
}

static int get_defaults(struct ctx *x, const config_setting_t *g, struct cfg *c)
{
	static const char *const extra[] = { "auth", "retry", "max_age", NULL };
	const config_setting_t *s;

	if (get_policy(x, g, "defaults", &c->defaults, extra) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "retry")) && get_retry(x, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "max_age")) &&
	    get_scaled(x, s, "defaults.max_age", K_DUR, &c->max_age_ms) < 0)
		return -1;
	return 0;
}

static void policy_unset(struct cfg_policy *p)
{
	memset(p, 0, sizeof *p);
	p->max_connections = p->max_messages_per_connection = -1;
	p->max_recipients_per_message = p->port = -1;
	p->implicit_tls = -1;
}

static int get_domains(struct ctx *x, const config_setting_t *l, struct cfg *c)
{
	if (!config_setting_is_list(l))
		return fail(x, l, "domains", "expected a list ( { match = ...; }, ... )");
	/* after the provider defaults, so the user's rules win */
	size_t base = c->ndomains, n = (size_t)config_setting_length(l);
	c->domains = vl_realloc(c->domains, (base + n + 1) * sizeof *c->domains);
	memset(c->domains + base, 0, (n + 1) * sizeof *c->domains);
	c->ndomains = base + n;
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
		struct cfg_domain_rule *d = &c->domains[base + i];
		const char *m = NULL;
		char path[64];

		snprintf(path, sizeof path, "domains[%zu]", i);
		policy_unset(&d->p);
		if (!config_setting_is_group(g) || !config_setting_lookup_string(g, "match", &m))
			return fail(x, g, path, "each entry needs match = \"domain or glob\"");
		set_str(&d->match, m);
		if (get_policy(x, g, path, &d->p, NULL) < 0 ||
		    check_implicit(x, g, path, &c->defaults, &d->p) < 0)
			return -1;
	}
	return 0;
}

/* egress and dkim: lists of groups of strings, the first nreq keys
 * required. */
static bool listed(const char *const *l, const char *k)
{
	for (; l && *l; l++)
		if (!strcmp(*l, k))
			return true;
	return false;
}

/* Groups of string keys into structs of as many char pointers; keys in
 * `other` are the caller's to read. */
static int get_records(struct ctx *x, const config_setting_t *l, const char *name,
		       const char *const *keys, size_t nkeys, size_t nreq, void **out, size_t *n,
		       const char *const *other)
{
	if (!config_setting_is_list(l))
		return fail(x, l, name, "expected a list ( { ... }, ... )");
	*n = (size_t)config_setting_length(l);
	char **v = vl_calloc((*n + 1) * nkeys, sizeof *v);
	*out = v;
	for (size_t i = 0; i < *n; i++) {
		const config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
		char path[64];
		snprintf(path, sizeof path, "%s[%zu]", name, i);
		if (!config_setting_is_group(g))
			return fail(x, g, path, "expected a group { ... }");
		for (int j = 0; j < config_setting_length(g); j++) {
			const config_setting_t *s = config_setting_get_elem(g, (unsigned)j);
			size_t k = 0;
			if (listed(other, config_setting_name(s)))
				continue;
			while (k < nkeys && strcmp(keys[k], config_setting_name(s)))
				k++;
			char sub[128];
			snprintf(sub, sizeof sub, "%s.%s", path, config_setting_name(s));
			if (k == nkeys)
				return fail(x, s, sub, "unknown key");
			if (!config_setting_get_string(s))
				return fail(x, s, sub, "expected a string");
			set_str(&v[i * nkeys + k], config_setting_get_string(s));
		}
		for (size_t k = 0; k < nreq; k++)
			if (!v[i * nkeys + k]) {
				char sub[128];
				snprintf(sub, sizeof sub, "%s.%s", path, keys[k]);
				return fail(x, g, sub, "missing");
			}
	}
	return 0;
}

/* egress: the strings through get_records, then into struct cfg_egress
 * (warmup.c reads the rest). */
static int get_egress(struct ctx *x, const config_setting_t *l, struct cfg *c)
{
	static const char *const keys[] = { "address", "ehlo", "name" };
	static const char *const other[] = { "warmup", "warmup_start", NULL };
	char **v = NULL;
	size_t n = 0;
	int rc = get_records(x, l, "egress", keys, 3, 2, (void **)&v, &n, other);

	if (rc == 0) {
		c->egress = vl_calloc(n + 1, sizeof *c->egress);
		c->negress = n;
		for (size_t i = 0; i < n; i++) {
			c->egress[i].address = v[i * 3];
			c->egress[i].ehlo = v[i * 3 + 1];
			c->egress[i].name = v[i * 3 + 2];
			c->egress[i].warmup_start = -1;
		}
	} else {
		for (size_t i = 0; v && i < (n + 1) * 3; i++)
			free(v[i]);
	}
	free(v);
	return rc;
}

/* egress: names default to the address and are unique; addresses are IP
 * addresses (a connection binds to them). */
static int check_egress(struct ctx *x, const config_setting_t *l, struct cfg *c)
{
	char path[96];

	for (size_t i = 0; i < c->negress; i++) {
		struct cfg_egress *e = &c->egress[i];
		const config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
		if (!e->name)
			set_str(&e->name, e->address);
		snprintf(path, sizeof path, "egress[%zu].address", i);
		if (!vl_ip_literal(e->address))
			return fail(x, g, path, "expected an IP address (the source to bind to)");
		snprintf(path, sizeof path, "egress[%zu].ehlo", i);
		bool ok = *e->ehlo && strlen(e->ehlo) < 256;
		for (const char *q = e->ehlo; ok && *q; q++)
			ok = *q > ' ' && *q < 127;
		if (!ok)
			return fail(x, g, path, "expected a host name (printable, no spaces, "
				    "at most 255 octets)");
		snprintf(path, sizeof path, "egress[%zu].name", i);
		if (!*e->name)
			return fail(x, g, path, "must not be empty");
		for (size_t k = 0; k < i; k++)
			if (strcmp(c->egress[k].name, e->name) == 0)
				return fail(x, g, path, "names a source twice (names default to "
					    "the address)");
	}
	return 0;
}

static int egress_find(const struct cfg *c, const char *name)
{
	for (size_t i = 0; i < c->negress; i++)
		if (strcmp(c->egress[i].name, name) == 0)
			return (int)i;
	return -1;
}

int cfg_pool_find(const struct cfg *c, const char *name)
{
	if (!name)
		name = CFG_POOL_DEFAULT;
	for (size_t i = 0; i < c->npools; i++)
		if (strcmp(c->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* One pool { name; sources = [...]; weights = [...]; } into pl. */
static int get_pool(struct ctx *x, const config_setting_t *g, const char *path,
		    const struct cfg *c, struct cfg_pool *pl)
{
	const config_setting_t *src = config_setting_get_member(g, "sources");
	const config_setting_t *w = config_setting_get_member(g, "weights");
	const char *name = NULL;
	char sub[128];

	if (!config_setting_is_group(g))
		return fail(x, g, path, "expected a group { name = ...; sources = [...]; }");
	for (int j = 0; j < config_setting_length(g); j++) {
		const char *k = config_setting_name(config_setting_get_elem(g, (unsigned)j));
		snprintf(sub, sizeof sub, "%s.%s", path, k);
		if (strcmp(k, "name") && strcmp(k, "sources") && strcmp(k, "weights") &&
		    strcmp(k, "overflow"))
			return fail(x, g, sub, "unknown key");
	}
	const char *ov = NULL;
	snprintf(sub, sizeof sub, "%s.overflow", path);
	if (config_setting_get_member(g, "overflow") &&
	    (!config_setting_lookup_string(g, "overflow", &ov) ||
	     (strcmp(ov, "spill") && strcmp(ov, "wait"))))
		return fail(x, g, sub, "expected \"spill\" (to the pool's other sources) or "
			    "\"wait\"");
	pl->overflow_wait = ov && !strcmp(ov, "wait");
	snprintf(sub, sizeof sub, "%s.name", path);
	if (!config_setting_lookup_string(g, "name", &name) || !*name)
		return fail(x, g, sub, "missing (a non-empty string)");
	set_str(&pl->name, name);
	snprintf(sub, sizeof sub, "%s.sources", path);
	if (!src || (!config_setting_is_array(src) && !config_setting_is_list(src)) ||
	    config_setting_length(src) < 1)
		return fail(x, src ? src : g, sub, "expected a list of egress names [ \"ip1\", ... ]");
	pl->n = (size_t)config_setting_length(src);
	pl->src = vl_calloc(pl->n, sizeof *pl->src);
	pl->weight = vl_calloc(pl->n, sizeof *pl->weight);
	for (size_t i = 0; i < pl->n; i++) {
		const char *v = config_setting_get_string_elem(src, (int)i);
		int at = v ? egress_find(c, v) : -1;
		snprintf(sub, sizeof sub, "%s.sources[%zu]", path, i);
		if (!v)
			return fail(x, src, sub, "expected the name of an egress source");
		if (at < 0)
			return fail(x, src, sub, "names no egress source (egress names default "
				    "to their address)");
		for (size_t k = 0; k < i; k++)
			if (pl->src[k] == (size_t)at)
				return fail(x, src, sub, "names a source twice");
		pl->src[i] = (size_t)at;
		pl->weight[i] = 1;
	}
	if (!w)
		return 0;
	snprintf(sub, sizeof sub, "%s.weights", path);
	if ((!config_setting_is_array(w) && !config_setting_is_list(w)) ||
	    (size_t)config_setting_length(w) != pl->n)
		return fail(x, w, sub, "expected one integer per source");
	for (size_t i = 0; i < pl->n; i++) {
		const config_setting_t *e = config_setting_get_elem(w, (unsigned)i);
		long long v = e && (config_setting_type(e) == CONFIG_TYPE_INT ||
				    config_setting_type(e) == CONFIG_TYPE_INT64) ?
			      config_setting_get_int64(e) : -1;
		if (v < 1 || v > 1000000)
			return fail(x, w, sub, "expected integers 1-1000000");
		pl->weight[i] = (unsigned)v;
	}
	return 0;
}

static int get_pools(struct ctx *x, const config_setting_t *l, struct cfg *c)
{
	char path[64];

	if (!config_setting_is_list(l))
		return fail(x, l, "pools", "expected a list ( { name = ...; sources = [...]; }, ... )");
	size_t n = (size_t)config_setting_length(l);
	c->pools = vl_calloc(n + 1, sizeof *c->pools);
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
		snprintf(path, sizeof path, "pools[%zu]", i);
		c->npools = i + 1;
		if (get_pool(x, g, path, c, &c->pools[i]) < 0)
			return -1;
		if (cfg_pool_find(c, c->pools[i].name) != (int)i)
			return fail(x, g, path, "names a pool twice");
	}
	return 0;
}

/* The implicit pool "default": every source, equal weights (none without
 * egress: the engine's own address and EHLO name). */
static void add_default_pool(struct cfg *c)
{
	if (cfg_pool_find(c, CFG_POOL_DEFAULT) >= 0)
		return;
	c->pools = vl_realloc(c->pools, (c->npools + 1) * sizeof *c->pools);
	struct cfg_pool *pl = &c->pools[c->npools++];
	memset(pl, 0, sizeof *pl);
	set_str(&pl->name, CFG_POOL_DEFAULT);
	pl->n = c->negress;
	pl->src = vl_calloc(pl->n + 1, sizeof *pl->src);
	pl->weight = vl_calloc(pl->n + 1, sizeof *pl->weight);
	for (size_t i = 0; i < pl->n; i++) {
		pl->src[i] = i;
		pl->weight[i] = 1;
	}
}

/* Every policy's pool exists. */
static int check_pool_keys(struct ctx *x, const config_setting_t *root, const struct cfg *c)
{
	char path[64];

	if (c->defaults.pool && cfg_pool_find(c, c->defaults.pool) < 0)
		return fail(x, root, "defaults.pool", "names no pool (see pools; \"default\" "
			    "is every egress source)");
	for (size_t i = 0, user = 0; i < c->ndomains; i++) {
		snprintf(path, sizeof path, "domains[%zu].pool", user++);
		if (c->domains[i].p.pool && cfg_pool_find(c, c->domains[i].p.pool) < 0)
			return fail(x, root, path, "names no pool (see pools; \"default\" is "
				    "every egress source)");
	}
	return 0;
}

/* ---- submission and feedback: the SMTP listeners ---- */

bool cfg_user_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFG_USER_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._@+-", *s))
			return false;
	return true;
}

void cfg_sub_settings_init(struct cfg_sub_settings *s)
{
	memset(s, 0, sizeof *s);
	s->dkim = s->max_recipients = -1;
}

void cfg_sub_settings_free(struct cfg_sub_settings *s)
{
	for (size_t i = 0; i < s->nfrom_domains; i++)
		free(s->from_domains[i]);
	free(s->from_domains);
	free(s->campaign);
	free(s->priority);
	free(s->rate_limit);
	cfg_sub_settings_init(s);
}

/* A glob of From domains: what a domain name holds (UTF-8 too) and '*',
 * '?'; nothing that would end a list or an address. */
static bool domain_glob_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x80 && !isalnum(c) && !strchr(".-_*?", c))
			return false;
	}
	return true;
}

static int sub_fail(char *err, size_t errlen, const char **bad, const char *key,
		    const char *what)
{
	*bad = key;
	snprintf(err, errlen, "%s", what);
	return -1;
}

int cfg_sub_settings_check(const struct cfg_sub_settings *s, const char **bad,
			   char *err, size_t errlen)
{
	double r;

	for (size_t i = 0; i < s->nfrom_domains; i++)
		if (!domain_glob_ok(s->from_domains[i]))
			return sub_fail(err, errlen, bad, "from_domains", "expected domain "
					"names or globs such as \"*.example.com\"");
	if (s->campaign) {
		size_t n = strlen(s->campaign);
		bool ctl = false;
		for (const char *p = s->campaign; *p; p++)
			ctl |= (unsigned char)*p < 0x20 || *p == 0x7f;
		if (n == 0 || n > 256 || ctl)
			return sub_fail(err, errlen, bad, "campaign", "expected 1 to 256 octets "
					"without control characters");
	}
	if (s->priority && strcmp(s->priority, "bulk") && strcmp(s->priority, "transactional"))
		return sub_fail(err, errlen, bad, "priority", "expected bulk or transactional");
	if (s->rate_limit && vl_parse_rate(s->rate_limit, &r) < 0)
		return sub_fail(err, errlen, bad, "rate_limit", "not a rate (\"50/s\", "
				"\"100/m\", \"3000/min\", \"50000/h\")");
	if (s->max_recipients == 0 || s->max_recipients > 100000)
		return sub_fail(err, errlen, bad, "max_recipients", "expected 1 to 100000");
	return 0;
}

/* from_domains=a.example,b.example into a NULL-terminated list. */
static void split_domains(struct cfg_sub_settings *s, const char *v)
{
	size_t n = 1;

	for (const char *p = v; *p; p++)
		n += *p == ',';
	for (size_t i = 0; i < s->nfrom_domains; i++)
		free(s->from_domains[i]);
	free(s->from_domains);
	s->from_domains = vl_calloc(n + 1, sizeof *s->from_domains);
	s->nfrom_domains = n;
	for (size_t i = 0; i < n; i++) {
		const char *comma = strchr(v, ',');
		size_t len = comma ? (size_t)(comma - v) : strlen(v);
		s->from_domains[i] = vl_strndup(v, len);
		v += len + (comma != NULL);
	}
}

int cfg_sub_setting_parse(struct cfg_sub_settings *s, const char *key, const char *v,
			  char *err, size_t errlen)
{
	const char *bad;
	uint64_t u;

	if (!strcmp(key, "from_domains")) {
		split_domains(s, v);
	} else if (!strcmp(key, "campaign")) {
		set_str(&s->campaign, v);
	} else if (!strcmp(key, "priority")) {
		set_str(&s->priority, v);
	} else if (!strcmp(key, "rate_limit")) {
		set_str(&s->rate_limit, v);
	} else if (!strcmp(key, "dkim")) {
		if (strcmp(v, "yes") && strcmp(v, "no"))
			return vl_fail(err, errlen, "dkim: expected yes or no");
		s->dkim = !strcmp(v, "yes");
	} else if (!strcmp(key, "max_recipients")) {
		if (vl_parse_u64(v, &u) < 0 || u == 0 || u > 100000)
			return vl_fail(err, errlen, "max_recipients: expected 1 to 100000");
		s->max_recipients = (int64_t)u;
	} else {
		return vl_fail(err, errlen, "%s: unknown key (from_domains, campaign, priority, "
			       "rate_limit, dkim or max_recipients)", key);
	}
	char why[160];
	if (cfg_sub_settings_check(s, &bad, why, sizeof why) < 0)
		return vl_fail(err, errlen, "%s: %s", bad, why);
	return 0;
}

static const struct key sub_setting_keys[] = {
	KEY("campaign", K_STR, struct cfg_sub_settings, campaign),
	KEY("priority", K_STR, struct cfg_sub_settings, priority),
	KEY("rate_limit", K_STR, struct cfg_sub_settings, rate_limit),
	KEY("dkim", K_TRI, struct cfg_sub_settings, dkim),
	KEY("max_recipients", K_INT, struct cfg_sub_settings, max_recipients),
};

/* The settings among group g's members (the others are the caller's). */
static int get_settings(struct ctx *x, const config_setting_t *g, const char *path,
			struct cfg_sub_settings *s)
{
	const config_setting_t *m;
	const char *bad;
	char sub[160], why[160];

	for (size_t i = 0; i < VL_ARRAY_LEN(sub_setting_keys); i++) {
		snprintf(sub, sizeof sub, "%s.%s", path, sub_setting_keys[i].name);
		if ((m = config_setting_get_member(g, sub_setting_keys[i].name)) &&
		    get_key(x, m, sub, &sub_setting_keys[i], s) < 0)
			return -1;
	}
	snprintf(sub, sizeof sub, "%s.from_domains", path);
	if ((m = config_setting_get_member(g, "from_domains")) &&
	    get_strings(x, m, sub, &s->from_domains, &s->nfrom_domains) < 0)
		return -1;
	if (cfg_sub_settings_check(s, &bad, why, sizeof why) < 0) {
		snprintf(sub, sizeof sub, "%s.%s", path, bad);
		return fail(x, config_setting_get_member(g, bad), sub, why);
	}
	return 0;
}

/* listen = [ "IP:PORT", "[IPv6]:PORT" ]: IP addresses, never names. */
static int get_listen(struct ctx *x, const config_setting_t *g, const char *name,
		      const char *path, struct cfg_listen **out, size_t *n)
{
	const config_setting_t *l = config_setting_get_member(g, name);
	char **v = NULL;
	size_t nv = 0;
	int rc;

	if (!l)
		return 0;
	rc = get_strings(x, l, path, &v, &nv);
	*out = vl_calloc(nv + 1, sizeof **out);
	*n = nv;
	for (size_t i = 0; i < nv; i++) {
		struct cfg_listen *e = &(*out)[i];
		struct sockaddr_storage ss;
		socklen_t len;
		e->text = v[i];
		if (rc == 0 && (vl_parse_hostport(v[i], e->host, sizeof e->host, &e->port) < 0 ||
				(v[i][0] != '[' && strchr(e->host, ':')) ||
				vl_sockaddr_parse(e->host, e->port, &ss, &len) < 0))
			rc = fail(x, l, path, "expected \"IP:PORT\" or \"[IPv6]:PORT\" (an "
				  "IP address, not a name, and a port 1-65535)");
	}
	free(v);
	return rc;
}

static const struct key submission_keys[] = {
	KEY("cert", K_STR, struct cfg_submission, cert),
	KEY("key", K_STR, struct cfg_submission, key),
	KEY("users", K_STR, struct cfg_submission, users),
	KEY("max_message_size", K_SIZE, struct cfg_submission, max_message_size),
	KEY("auth_cache_ttl", K_DUR, struct cfg_submission, auth_cache_ttl_ms),
	KEY("auth_cache_size", K_INT, struct cfg_submission, auth_cache_size),
	KEY("threads", K_INT, struct cfg_submission, threads),
};

static int get_per_user(struct ctx *x, const config_setting_t *l, struct cfg_submission *sub)
{
	static const char *const extra[] = { "name", "from_domains", NULL };

	if (!config_setting_is_list(l))
		return fail(x, l, "submission.per_user", "expected a list ( { name = ...; }, ... )");
	sub->nper_user = (size_t)config_setting_length(l);
	sub->per_user = vl_calloc(sub->nper_user + 1, sizeof *sub->per_user);
	for (size_t i = 0; i < sub->nper_user; i++)
		cfg_sub_settings_init(&sub->per_user[i].s);
	for (size_t i = 0; i < sub->nper_user; i++) {
		const config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
		struct cfg_sub_user *u = &sub->per_user[i];
		const char *name = NULL;
		char path[64];

		snprintf(path, sizeof path, "submission.per_user[%zu]", i);
		if (!config_setting_is_group(g) || !config_setting_lookup_string(g, "name", &name))
			return fail(x, g, path, "each entry needs name = \"user\"");
		set_str(&u->name, name);
		if (!cfg_user_name_ok(name))
			return fail(x, g, path, "name: expected 1 to 64 of letters, digits, "
				    "'.', '_', '@', '+' and '-'");
		for (size_t j = 0; j < i; j++)
			if (!strcmp(sub->per_user[j].name, name))
				return fail(x, g, path, "name: a second entry for this user");
		if (get_group(x, g, path, sub_setting_keys, VL_ARRAY_LEN(sub_setting_keys),
			      extra, &u->s) < 0 || get_settings(x, g, path, &u->s) < 0)
			return -1;
	}
	return 0;
}

/* A certificate or key file given: volleyd must be able to read it. */
static int check_file(struct ctx *x, const config_setting_t *g, const char *path,
		      const char *file)
{
	char what[600];

	if (!*file || access(file, R_OK) == 0)
		return 0;
	snprintf(what, sizeof what, "%s: %s", file, strerror(errno));
	return fail(x, g, path, what);
}

static int get_submission(struct ctx *x, const config_setting_t *g, struct cfg *c)
{
	static const char *const extra[] = { "listen", "implicit_tls", "from_domains",
		"campaign", "priority", "rate_limit", "dkim", "max_recipients", "per_user", NULL };
	struct cfg_submission *s = &c->submission;
	const config_setting_t *m;

	if (get_group(x, g, "submission", submission_keys, VL_ARRAY_LEN(submission_keys),
		      extra, s) < 0 ||
	    get_listen(x, g, "listen", "submission.listen", &s->listen, &s->nlisten) < 0 ||
	    get_listen(x, g, "implicit_tls", "submission.implicit_tls", &s->implicit_tls,
		       &s->nimplicit_tls) < 0 ||
	    get_settings(x, g, "submission", &s->defaults) < 0)
		return -1;
	if ((m = config_setting_get_member(g, "per_user")) && get_per_user(x, m, s) < 0)
		return -1;
	if (s->auth_cache_size < 1 || s->auth_cache_size > 1000000)
		return fail(x, config_setting_get_member(g, "auth_cache_size"),
			    "submission.auth_cache_size", "expected 1 to 1000000");
	if (s->threads < 1 || s->threads > 64)
		return fail(x, config_setting_get_member(g, "threads"), "submission.threads",
			    "expected 1 to 64");
	s->on = s->nlisten + s->nimplicit_tls > 0;
	if (!s->on)
		return 0;
	if (!*s->cert || !*s->key)
		return fail(x, g, *s->cert ? "submission.key" : "submission.cert",
			    "needed with a listener: submission is TLS only (STARTTLS on "
			    "listen, TLS from the start on implicit_tls; AUTH only inside TLS)");
	if (!*s->users)
		return fail(x, g, "submission.users", "needed with a listener: the users "
			    "file (name:hash lines; volley user add NAME)");
	if (check_file(x, config_setting_get_member(g, "cert"), "submission.cert", s->cert) < 0 ||
	    check_file(x, config_setting_get_member(g, "key"), "submission.key", s->key) < 0 ||
	    check_file(x, config_setting_get_member(g, "users"), "submission.users", s->users) < 0)
		return -1;
	return 0;
}

static const struct key feedback_keys[] = {
	KEY("cert", K_STR, struct cfg_feedback, cert),
	KEY("key", K_STR, struct cfg_feedback, key),
	KEY("max_message_size", K_SIZE, struct cfg_feedback, max_message_size),
	KEY("complaint_min_delivered", K_INT, struct cfg_feedback, complaint_min_delivered),
	KEY("retain", K_DUR, struct cfg_feedback, retain_ms),
};

static const struct key mailbox_keys[] = {
	KEY("name", K_STR, struct cfg_mailbox, name),
	KEY("url", K_STR, struct cfg_mailbox, url),
	KEY("user", K_STR, struct cfg_mailbox, user),
	KEY("password", K_STR, struct cfg_mailbox, password),
	KEY("password_file", K_STR, struct cfg_mailbox, password_file),
	KEY("ca_file", K_STR, struct cfg_mailbox, ca_file),
	KEY("poll", K_DUR, struct cfg_mailbox, poll_ms),
	KEY("processed", K_STR, struct cfg_mailbox, processed),
	KEY("other", K_STR, struct cfg_mailbox, other),
};

static bool mailbox_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 32)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

/* "move:FOLDER": a folder of printable ASCII without quotes, '\', '*', '%'. */
static bool move_ok(const char *v)
{
	if (strncmp(v, "move:", 5) || !v[5] || strlen(v + 5) > 255)
		return false;
	for (const char *p = v + 5; *p; p++)
		if (*p < 0x20 || *p > 0x7e || strchr("\"\\*%", *p))
			return false;
	return true;
}

/* The password from password_file: its first line. */
static int read_password(struct ctx *x, const config_setting_t *g, const char *path,
			 struct cfg_mailbox *m)
{
	struct vl_buf b;
	char what[600];

	if (vl_read_file(m->password_file, &b) < 0) {
		snprintf(what, sizeof what, "%s: %s", m->password_file, strerror(errno));
		return fail(x, g, path, what);
	}
	size_t n = 0;
	while (n < b.len && b.p[n] != '\n' && b.p[n] != '\r' && b.p[n])
		n++;
	free(m->password);
	m->password = vl_strndup(b.p, n);
	vl_buf_free(&b);
	return 0;
}

static int check_mailbox(struct ctx *x, const config_setting_t *g, const char *path,
			 struct cfg_mailbox *m, size_t i)
{
	char key[128];

#define MKEY(k) (snprintf(key, sizeof key, "%s.%s", path, k), key)
	if (!*m->name) {
		free(m->name);
		m->name = vl_calloc(1, 32);
		snprintf(m->name, 32, "mbox%zu", i + 1);
	}
	if (!mailbox_name_ok(m->name))
		return fail(x, g, MKEY("name"), "expected 1 to 32 of A-Z, a-z, 0-9, '_', '-'");
	if (strncasecmp(m->url, "imaps://", 8) && strncasecmp(m->url, "imap://", 7))
		return fail(x, g, MKEY("url"), "TLS is required: imaps://HOST[:PORT]/FOLDER "
			    "(implicit TLS) or imap://HOST[:PORT]/FOLDER (STARTTLS, enforced)");
	if (!*m->user)
		return fail(x, g, MKEY("user"), "missing");
	if (!*m->password == !*m->password_file)
		return fail(x, g, MKEY("password"), "give password or password_file (one)");
	if (*m->password_file && read_password(x, g, MKEY("password_file"), m) < 0)
		return -1;
	if (check_file(x, g, MKEY("ca_file"), m->ca_file) < 0)
		return -1;
	if (m->poll_ms < 1000)
		return fail(x, g, MKEY("poll"), "at least 1s");
	if (strcmp(m->processed, "flag") && strcmp(m->processed, "delete") &&
	    !move_ok(m->processed))
		return fail(x, g, MKEY("processed"), "expected \"flag\", \"delete\" or "
			    "\"move:FOLDER\"");
	if (strcmp(m->other, "leave") && !move_ok(m->other))
		return fail(x, g, MKEY("other"), "expected \"leave\" or \"move:FOLDER\"");
#undef MKEY
	return 0;
}

static int get_mailboxes(struct ctx *x, const config_setting_t *l, struct cfg_feedback *f)
{
	if (!config_setting_is_list(l))
		return fail(x, l, "feedback.mailboxes", "expected a list ( { ... }, ... )");
	f->nmailboxes = (size_t)config_setting_length(l);
	f->mailboxes = vl_calloc(f->nmailboxes + 1, sizeof *f->mailboxes);
	for (size_t i = 0; i < f->nmailboxes; i++) {
		struct cfg_mailbox *m = &f->mailboxes[i];
		const config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
		char path[64];
		set_str(&m->name, "");
		set_str(&m->url, "");
		set_str(&m->user, "");
		set_str(&m->password, "");
		set_str(&m->password_file, "");
		set_str(&m->ca_file, "");
		set_str(&m->processed, "flag");
		set_str(&m->other, "leave");
		m->poll_ms = 60000;
		snprintf(path, sizeof path, "feedback.mailboxes[%zu]", i);
		if (get_group(x, g, path, mailbox_keys, VL_ARRAY_LEN(mailbox_keys), NULL, m) < 0 ||
		    check_mailbox(x, g, path, m, i) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(f->mailboxes[j].name, m->name))
				return fail(x, g, path, "a second mailbox with this name");
	}
	return 0;
}

static void free_mailboxes(struct cfg_feedback *f)
{
	for (size_t i = 0; i < f->nmailboxes; i++) {
		struct cfg_mailbox *m = &f->mailboxes[i];
		free(m->name);
		free(m->url);
		free(m->user);
		if (m->password)
			explicit_bzero(m->password, strlen(m->password));
		free(m->password);
		free(m->password_file);
		free(m->ca_file);
		free(m->processed);
		free(m->other);
	}
	free(f->mailboxes);
	f->mailboxes = NULL;
	f->nmailboxes = 0;
}

/* "0.3%" or a fraction such as 0.003: into (0, 1]. */
static int get_rate(struct ctx *x, const config_setting_t *g, const char *name,
		    const char *path, double *out)
{
	const config_setting_t *s = config_setting_get_member(g, name);
	const char *v;
	char *end;

	if (!s)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
		*out = config_setting_get_float(s);
	} else if ((v = config_setting_get_string(s))) {
		*out = strtod(v, &end);
		if (end == v || (*end && strcmp(end, "%")))
			return fail(x, s, path, "expected a share such as \"0.3%\" or 0.003");
		if (*end)
			*out /= 100;
	} else {
		return fail(x, s, path, "expected a share such as \"0.3%\" or 0.003");
	}
	if (!(*out > 0 && *out <= 1))
		return fail(x, s, path, "must be more than 0 and at most 100%");
	return 0;
}

/* After submission: its certificate serves feedback when it has none. */
static int get_feedback(struct ctx *x, const config_setting_t *g, struct cfg *c)
{
	static const char *const extra[] = { "listen", "domains", "mailboxes", "complaint_rate",
					     NULL };
	struct cfg_feedback *f = &c->feedback;
	const config_setting_t *m;
	char d[254];

	if (get_group(x, g, "feedback", feedback_keys, VL_ARRAY_LEN(feedback_keys), extra, f) < 0 ||
	    get_listen(x, g, "listen", "feedback.listen", &f->listen, &f->nlisten) < 0 ||
	    get_rate(x, g, "complaint_rate", "feedback.complaint_rate", &f->complaint_rate) < 0)
		return -1;
	if (f->complaint_min_delivered < 1)
		return fail(x, g, "feedback.complaint_min_delivered", "must be at least 1");
	if ((m = config_setting_get_member(g, "domains"))) {
		free(f->domains);
		if (get_strings(x, m, "feedback.domains", &f->domains, &f->ndomains) < 0)
			return -1;
		for (size_t i = 0; i < f->ndomains; i++)
			if (vl_domain_norm(f->domains[i], d) < 0 || !strchr(d, '.'))
				return fail(x, m, "feedback.domains", "expected domain names "
					    "such as \"bounces.example.com\"");
	}
	if (!*f->cert != !*f->key)
		return fail(x, g, *f->cert ? "feedback.key" : "feedback.cert",
			    "cert and key go together");
	if (!*f->cert) {
		set_str(&f->cert, c->submission.cert);
		set_str(&f->key, c->submission.key);
	}
	if ((m = config_setting_get_member(g, "mailboxes")) && get_mailboxes(x, m, f) < 0)
		return -1;
	f->on = f->nlisten > 0;
	if (f->on && !f->ndomains)
		return fail(x, g, "feedback.domains", "needed with a listener: the domains "
			    "of the return paths it takes mail for");
	if (check_file(x, config_setting_get_member(g, "cert"), "feedback.cert", f->cert) < 0 ||
	    check_file(x, config_setting_get_member(g, "key"), "feedback.key", f->key) < 0)
		return -1;
	return 0;
}

/* ---- unsubscribe: volley's one-click endpoint ---- */

/* What message/ also checks (msg_unsub_base_ok); config is below it. */
static const char *unsub_base_why(const char *u)
{
	size_t n = strlen(u);

	if (n < 9 || strncasecmp(u, "https://", 8))
		return "expected an https:// URL (RFC 8058 one-click needs https)";
	if (n > 256)
		return "longer than 256 octets";
	if (u[n - 1] == '/')
		return "must not end with '/' (tokens go after base_url \"/\")";
	for (size_t i = 0; i < n; i++)
		if (u[i] <= 32 || u[i] >= 127 || strchr("<>\"\\^`|{}?#", u[i]))
			return "holds a character a URL may not, or a query or fragment";
	if (u[8] == '/')
		return "has no host";
	return NULL;
}


static const struct key unsub_keys[] = {
	KEY("base_url", K_STR, struct cfg_unsubscribe, base_url),
	KEY("secret_file", K_STR, struct cfg_unsubscribe, secret_file),
	KEY("previous_secret_file", K_STR, struct cfg_unsubscribe, previous_secret_file),
	KEY("cert", K_STR, struct cfg_unsubscribe, cert),
	KEY("key", K_STR, struct cfg_unsubscribe, key),
	KEY("max_connections", K_INT, struct cfg_unsubscribe, max_connections),
	KEY("max_connections_per_ip", K_INT, struct cfg_unsubscribe, max_connections_per_ip),
	KEY("threads", K_INT, struct cfg_unsubscribe, threads),
	KEY("timeout", K_DUR, struct cfg_unsubscribe, timeout_ms),
};

/* A secret's octets: the string's, or the file's (its final line breaks
 * dropped); 32 to 1024 of them. */
static int get_secret(struct ctx *x, const config_setting_t *g, const char *name,
		      const char *file, unsigned char **out, size_t *n)
{
	const config_setting_t *s = config_setting_get_member(g, name);
	char path[64], buf[1100];
	const char *v = s ? config_setting_get_string(s) : NULL;
	size_t len = 0;

	snprintf(path, sizeof path, "unsubscribe.%s", *file ? (strcmp(name, "secret") ?
		 "previous_secret_file" : "secret_file") : name);
	if (s && !v)
		return fail(x, s, path, "expected a string");
	if (s && *file)
		return fail(x, s, path, "give the secret or its file, not both");
	if (*file) {
		FILE *f = fopen(file, "r");
		if (!f) {
			snprintf(buf, sizeof buf, "%s: %s", file, strerror(errno));
			return fail(x, g, path, buf);
		}
		len = fread(buf, 1, sizeof buf, f);
		fclose(f);
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			len--;
		v = buf;
	} else if (v) {
		len = strlen(v);
	} else {
		return 0;
	}
	if (len < 32 || len > 1024)
		return fail(x, s ? s : g, path, "expected 32 to 1024 octets of secret "
			    "(e.g. `openssl rand -hex 32`)");
	*out = vl_malloc(len);
	memcpy(*out, v, len);
	*n = len;
	explicit_bzero(buf, sizeof buf);
	return 0;
}

static int get_unsubscribe(struct ctx *x, const config_setting_t *g, struct cfg *c)
{
	static const char *const extra[] = { "listen", "secret", "previous_secret", NULL };
	struct cfg_unsubscribe *u = &c->unsubscribe;

	if (get_group(x, g, "unsubscribe", unsub_keys, VL_ARRAY_LEN(unsub_keys), extra, u) < 0 ||
	    get_listen(x, g, "listen", "unsubscribe.listen", &u->listen, &u->nlisten) < 0 ||
	    get_secret(x, g, "secret", u->secret_file, &u->secret, &u->secret_len) < 0 ||
	    get_secret(x, g, "previous_secret", u->previous_secret_file, &u->previous,
		       &u->previous_len) < 0)
		return -1;
	u->on = *u->base_url != '\0';
	if (!u->on)
		return u->nlisten ? fail(x, g, "unsubscribe.base_url", "needed with a listener: "
					 "the https URL the tokens go under") : 0;
	const char *why = unsub_base_why(u->base_url);
	if (why)
		return fail(x, g, "unsubscribe.base_url", why);
	if (!u->secret)
		return fail(x, g, "unsubscribe.secret", "needed with base_url (or secret_file)");
	if (!*u->cert != !*u->key)
		return fail(x, g, *u->cert ? "unsubscribe.key" : "unsubscribe.cert",
			    "cert and key go together");
	if (u->max_connections < 1 || u->max_connections > 100000)
		return fail(x, g, "unsubscribe.max_connections", "expected 1 to 100000");
	if (u->max_connections_per_ip < 1)
		return fail(x, g, "unsubscribe.max_connections_per_ip", "expected at least 1");
	if (u->threads < 1 || u->threads > 16)
		return fail(x, g, "unsubscribe.threads", "expected 1 to 16");
	if (u->timeout_ms < 1000)
		return fail(x, g, "unsubscribe.timeout", "expected at least 1s");
	if (check_file(x, config_setting_get_member(g, "cert"), "unsubscribe.cert", u->cert) < 0 ||
	    check_file(x, config_setting_get_member(g, "key"), "unsubscribe.key", u->key) < 0)
		return -1;
	return 0;
}

static const struct key cluster_keys[] = {
	KEY("redis", K_STR, struct cfg_cluster, redis),
	KEY("node", K_STR, struct cfg_cluster, node),
	KEY("password_file", K_STR, struct cfg_cluster, password_file),
	KEY("tls", K_BOOL, struct cfg_cluster, tls),
	KEY("tls_ca_file", K_STR, struct cfg_cluster, tls_ca_file),
	KEY("tls_cert", K_STR, struct cfg_cluster, tls_cert),
	KEY("tls_key", K_STR, struct cfg_cluster, tls_key),
	KEY("tls_server_name", K_STR, struct cfg_cluster, tls_server_name),
	KEY("lease_ttl", K_DUR, struct cfg_cluster, lease_ttl_ms),
};

/* The password, its file's first line (the URL's password otherwise). */
static int cluster_password(struct ctx *x, const config_setting_t *g, struct cfg_cluster *k)
{
	struct vl_buf b;
	char what[600];

	if (vl_read_file(k->password_file, &b) < 0) {
		snprintf(what, sizeof what, "%s: %s", k->password_file, strerror(errno));
		return fail(x, g, "cluster.password_file", what);
	}
	size_t n = 0;
	while (n < b.len && b.p[n] != '\n' && b.p[n] != '\r')
		n++;
	if (!n || n > 255) {
		vl_buf_free(&b);
		return fail(x, g, "cluster.password_file", "expected a password of 1 to 255 "
			    "characters on its first line");
	}
	k->password = vl_strndup(b.p, n);
	explicit_bzero(b.p, b.len);
	vl_buf_free(&b);
	return 0;
}

/* A host name or an IP literal: what a certificate may name. */
static bool server_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 253)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(".-:", *s))
			return false;
	return true;
}

/* The tls_* keys: only with TLS on, a certificate with its key, files readable. */
static int cluster_tls(struct ctx *x, const config_setting_t *g, struct cfg_cluster *k)
{
	static const char *const keys[] = { "tls_ca_file", "tls_cert", "tls_key", "tls_server_name" };
	const char *vals[] = { k->tls_ca_file, k->tls_cert, k->tls_key, k->tls_server_name };
	char path[64];

	bool on = k->tls || strncmp(k->redis, "rediss://", 9) == 0;
	for (size_t i = 0; i < VL_ARRAY_LEN(keys); i++) {
		snprintf(path, sizeof path, "cluster.%s", keys[i]);
		if (*vals[i] && !on)
			return fail(x, g, path, "only with tls = true or a rediss:// URL");
		if (i < 3 && check_file(x, config_setting_get_member(g, keys[i]), path, vals[i]) < 0)
			return -1;
	}
	if (!*k->tls_cert != !*k->tls_key)
		return fail(x, g, *k->tls_cert ? "cluster.tls_key" : "cluster.tls_cert",
			    "tls_cert and tls_key go together (a client certificate and its key)");
	if (*k->tls_server_name && !server_name_ok(k->tls_server_name))
		return fail(x, g, "cluster.tls_server_name", "expected a host name or an IP address");
	return 0;
}

static int get_cluster(struct ctx *x, const config_setting_t *g, struct cfg *c)
{
	struct cfg_cluster *k = &c->cluster;

	if (get_group(x, g, "cluster", cluster_keys, VL_ARRAY_LEN(cluster_keys), NULL, k) < 0)
		return -1;
	k->on = *k->redis != '\0';
	if (!k->on)
		return config_setting_length(g) ? fail(x, g, "cluster.redis", "needed: the "
						       "redis://host:port/db URL of the shared Redis") : 0;
	if (strncmp(k->redis, "redis://", 8) != 0 && strncmp(k->redis, "rediss://", 9) != 0)
		return fail(x, g, "cluster.redis", "expected redis[s]://[user:password@]host[:port][/db]");
	if (cluster_tls(x, g, k) < 0)
		return -1;
	if (!*k->node)
		return fail(x, g, "cluster.node", "needed: this node's name, unique in the cluster");
	if (!cfg_name_ok(k->node, 64))
		return fail(x, g, "cluster.node", "expected 1 to 64 letters, digits, '-', '_'");
	if (k->lease_ttl_ms < 1000 || k->lease_ttl_ms > 600000)
		return fail(x, g, "cluster.lease_ttl", "expected 1s to 10min");
	if (*k->password_file && cluster_password(x, g, k) < 0)
		return -1;
	return 0;
}

static void free_listen(struct cfg_listen *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i].text);
	free(l);
}

static void free_listeners(struct cfg *c)
{
	struct cfg_submission *s = &c->submission;

	free_listen(s->listen, s->nlisten);
	free_listen(s->implicit_tls, s->nimplicit_tls);
	free(s->cert);
	free(s->key);
	free(s->users);
	cfg_sub_settings_free(&s->defaults);
	for (size_t i = 0; i < s->nper_user; i++) {
		free(s->per_user[i].name);
		cfg_sub_settings_free(&s->per_user[i].s);
	}
	free(s->per_user);
	free_listen(c->feedback.listen, c->feedback.nlisten);
	for (size_t i = 0; i < c->feedback.ndomains; i++)
		free(c->feedback.domains[i]);
	free(c->feedback.domains);
	free(c->feedback.cert);
	free(c->feedback.key);
	free_mailboxes(&c->feedback);
	struct cfg_unsubscribe *u = &c->unsubscribe;
	free_listen(u->listen, u->nlisten);
	free(u->base_url);
	free(u->secret_file);
	free(u->previous_secret_file);
	if (u->secret)
		explicit_bzero(u->secret, u->secret_len);
	if (u->previous)
		explicit_bzero(u->previous, u->previous_len);
	free(u->secret);
	free(u->previous);
	free(u->cert);
	free(u->key);
	free(c->cluster.redis);
	free(c->cluster.node);
	free(c->cluster.password_file);
	free(c->cluster.tls_ca_file);
	free(c->cluster.tls_cert);
	free(c->cluster.tls_key);
	free(c->cluster.tls_server_name);
	if (c->cluster.password)
		explicit_bzero(c->cluster.password, strlen(c->cluster.password));
	free(c->cluster.password);
}

static void listener_defaults(struct cfg *c)
{
	set_str(&c->submission.cert, "");
	set_str(&c->submission.key, "");
	set_str(&c->submission.users, "");
	c->submission.auth_cache_ttl_ms = 300000;
	c->submission.auth_cache_size = 1024;
	c->submission.threads = 1;
	cfg_sub_settings_init(&c->submission.defaults);
	set_str(&c->feedback.cert, "");
	set_str(&c->feedback.key, "");
	c->feedback.complaint_rate = 0.003;
	c->feedback.complaint_min_delivered = 1000;
	c->feedback.retain_ms = 30ull * 86400 * 1000;
	c->feedback.domains = vl_calloc(1, sizeof *c->feedback.domains);
	set_str(&c->unsubscribe.base_url, "");
	set_str(&c->unsubscribe.secret_file, "");
	set_str(&c->unsubscribe.previous_secret_file, "");
	set_str(&c->unsubscribe.cert, "");
	set_str(&c->unsubscribe.key, "");
	c->unsubscribe.max_connections = 256;
	c->unsubscribe.max_connections_per_ip = 16;
	c->unsubscribe.threads = 2;
	c->unsubscribe.timeout_ms = 10000;
	set_str(&c->cluster.redis, "");
	set_str(&c->cluster.node, "");
	set_str(&c->cluster.password_file, "");
	set_str(&c->cluster.tls_ca_file, "");
	set_str(&c->cluster.tls_cert, "");
	set_str(&c->cluster.tls_key, "");
	set_str(&c->cluster.tls_server_name, "");
	c->cluster.lease_ttl_ms = 10000;
}

static void print_strings(struct vl_buf *o, const char *name, char *const *v, size_t n)
{
	vl_buf_printf(o, "  %s = [", name);
	for (size_t i = 0; i < n; i++)
		vl_buf_printf(o, "%s\"%s\"", i ? ", " : " ", v[i]);
	vl_buf_appends(o, " ];\n");
}

static void print_listen(struct vl_buf *o, const char *name, const struct cfg_listen *l,
			 size_t n)
{
	vl_buf_printf(o, "  %s = [", name);
	for (size_t i = 0; i < n; i++)
		vl_buf_printf(o, "%s\"%s\"", i ? ", " : " ", l[i].text);
	vl_buf_appends(o, " ];\n");
}

/* The set fields of s, "key = value; " each, on one line after lead. */
static void print_settings(struct vl_buf *o, const struct cfg_sub_settings *s,
			   const char *lead, const char *sep)
{
	if (s->from_domains) {
		vl_buf_printf(o, "%sfrom_domains = [", lead);
		for (size_t i = 0; i < s->nfrom_domains; i++)
			vl_buf_printf(o, "%s\"%s\"", i ? ", " : " ", s->from_domains[i]);
		vl_buf_printf(o, " ];%s", sep);
	}
	if (s->campaign)
		vl_buf_printf(o, "%scampaign = \"%s\";%s", lead, s->campaign, sep);
	if (s->priority)
		vl_buf_printf(o, "%spriority = \"%s\";%s", lead, s->priority, sep);
	if (s->rate_limit)
		vl_buf_printf(o, "%srate_limit = \"%s\";%s", lead, s->rate_limit, sep);
	if (s->dkim >= 0)
		vl_buf_printf(o, "%sdkim = %s;%s", lead, s->dkim ? "true" : "false", sep);
	if (s->max_recipients >= 0)
		vl_buf_printf(o, "%smax_recipients = %lld;%s", lead,
			      (long long)s->max_recipients, sep);
}

/* On one line (the reload compares a list to the line that ends it); the
 * password never: "(hidden)". */
static void print_mailboxes(struct vl_buf *o, const struct cfg_feedback *f)
{
	vl_buf_appends(o, "  mailboxes = (");
	for (size_t i = 0; i < f->nmailboxes; i++) {
		const struct cfg_mailbox *m = &f->mailboxes[i];
		vl_buf_printf(o, "%s{ name = \"%s\"; url = \"%s\"; user = \"%s\"; ", i ? ", " : " ",
			      m->name, m->url, m->user);
		if (*m->password_file)
			vl_buf_printf(o, "password_file = \"%s\"; ", m->password_file);
		else
			vl_buf_appends(o, "password = \"(hidden)\"; ");
		vl_buf_printf(o, "ca_file = \"%s\"; poll = \"%llums\"; processed = \"%s\"; "
			      "other = \"%s\"; }", m->ca_file, (unsigned long long)m->poll_ms,
			      m->processed, m->other);
	}
	vl_buf_appends(o, " );\n");
}

/* per_user on one line: the reload's comparison takes a list to the
 * line that ends it. */
static void print_listeners(struct vl_buf *o, const struct cfg *c)
{
	const struct cfg_submission *s = &c->submission;
	const struct cfg_feedback *f = &c->feedback;

	if (s->on) {
		vl_buf_appends(o, "submission = {\n");
		print_listen(o, "listen", s->listen, s->nlisten);
		print_listen(o, "implicit_tls", s->implicit_tls, s->nimplicit_tls);
		vl_buf_printf(o, "  cert = \"%s\";\n  key = \"%s\";\n  users = \"%s\";\n"
			      "  max_message_size = %llu;\n  auth_cache_ttl = \"%llums\";\n"
			      "  auth_cache_size = %lld;\n  threads = %lld;\n", s->cert, s->key,
			      s->users, (unsigned long long)s->max_message_size,
			      (unsigned long long)s->auth_cache_ttl_ms,
			      (long long)s->auth_cache_size, (long long)s->threads);
		print_settings(o, &s->defaults, "  ", "\n");
		vl_buf_appends(o, "  per_user = (");
		for (size_t i = 0; i < s->nper_user; i++) {
			vl_buf_printf(o, "%s{ name = \"%s\"; ", i ? ", " : " ", s->per_user[i].name);
			print_settings(o, &s->per_user[i].s, "", " ");
			vl_buf_appends(o, "}");
		}
		vl_buf_appends(o, " );\n};\n");
	}
	vl_buf_appends(o, "feedback = {\n");
	if (f->on || f->nmailboxes) {
		print_listen(o, "listen", f->listen, f->nlisten);
		print_strings(o, "domains", f->domains, f->ndomains);
		vl_buf_printf(o, "  cert = \"%s\";\n  key = \"%s\";\n  max_message_size = %llu;\n",
			      f->cert, f->key, (unsigned long long)f->max_message_size);
		print_mailboxes(o, f);
	}
	vl_buf_printf(o, "  complaint_rate = \"%g%%\";\n  complaint_min_delivered = %lld;\n"
		      "  retain = \"%llums\";\n};\n", f->complaint_rate * 100,
		      (long long)f->complaint_min_delivered, (unsigned long long)f->retain_ms);
	const struct cfg_unsubscribe *u = &c->unsubscribe;
	if (u->on) {
		/* never a secret: its file when it came from one, else a comment
		 * (such output then needs the secret put back to load) */
		vl_buf_appends(o, "unsubscribe = {\n");
		print_listen(o, "listen", u->listen, u->nlisten);
		vl_buf_printf(o, "  base_url = \"%s\";\n", u->base_url);
		if (*u->secret_file)
			vl_buf_printf(o, "  secret_file = \"%s\";\n", u->secret_file);
		else
			vl_buf_appends(o, "  # secret: given in the file, not shown\n");
		if (*u->previous_secret_file)
			vl_buf_printf(o, "  previous_secret_file = \"%s\";\n", u->previous_secret_file);
		else if (u->previous)
			vl_buf_appends(o, "  # previous_secret: given in the file, not shown\n");
		vl_buf_printf(o, "  cert = \"%s\";\n  key = \"%s\";\n"
			      "  max_connections = %lld;\n  max_connections_per_ip = %lld;\n"
			      "  threads = %lld;\n  timeout = \"%llums\";\n};\n", u->cert, u->key,
			      (long long)u->max_connections, (long long)u->max_connections_per_ip,
			      (long long)u->threads, (unsigned long long)u->timeout_ms);
	}
}

static void free_policy(struct cfg_policy *p);

static void defaults(struct cfg *c)
{
	static const uint64_t retry[] = { 300000, 600000, 1800000, 3600000,
					  7200000, 14400000 };
	char host[256] = "localhost";

	memset(c, 0, sizeof *c);
	gethostname(host, sizeof host - 1);
	set_str(&c->data_dir, "volley-data");
	set_str(&c->hostname, host);
	c->max_message_size = 25000000;
	set_str(&c->bounce_rules, "");
	set_str(&c->dkim_canon, "relaxed/relaxed");
	c->shutdown_grace_ms = 30000;
	c->events.rotate_bytes = 64000000;
	c->events.keep_files = 50;
	c->max_age_ms = 3 * 86400000ull;
	set_str(&c->api.socket, "");
	set_str(&c->api.listen, "");
	set_str(&c->api.token, "");
	c->api.max_connections = 1024;
	c->api.max_connections_per_ip = 128;
	c->api.threads = 4;
	c->api.header_timeout_ms = 10000;
	c->api.idle_timeout_ms = 60000;
	c->api.max_body = 32000000;
	c->console.enabled = true;
	c->spool.min_free = 256000000;
	c->spool.journal_commit_ms = 50;
	c->spool.retain_ms = 7 * 86400000ull;
	c->spool.intake_checkpoint_ms = 1000;
	c->dns.timeout_ms = 3000;
	c->dns.min_ttl_ms = 30000;
	c->dns.ipv6 = true;
	c->dns.max_ttl_ms = 21600000;
	c->dns.servers = vl_calloc(1, sizeof *c->dns.servers);
	set_str(&c->defaults.tls, "dane");
	c->defaults.max_connections = 50;
	c->defaults.max_messages_per_connection = 1000;
	c->defaults.max_recipients_per_message = 100;
	set_str(&c->defaults.rate, "");
	c->defaults.port = 25;
	set_str(&c->defaults.route, "");
	set_str(&c->defaults.ca_file, "");
	c->defaults.implicit_tls = -1;
	c->timeouts.connect = 30000;
	c->timeouts.greeting = c->timeouts.helo = c->timeouts.mail = c->timeouts.rcpt = 300000;
	c->timeouts.tls = c->timeouts.data = 120000;
	c->timeouts.data_block = 180000;
	c->timeouts.data_term = 600000;
	c->timeouts.idle = 10000;
	c->timeouts.quit = 5000;
	c->provider_defaults = true;
	set_str(&c->tls_rpt.organization, "");
	set_str(&c->tls_rpt.contact, "");
	set_str(&c->tls_rpt.from, "");
	set_str(&c->tls_rpt.ca_file, "");
	c->tls_rpt.send = true;
	set_str(&c->log.file, "");
	set_str(&c->log.level, "info");
	listener_defaults(c);
	c->nretry = VL_ARRAY_LEN(retry);
	c->retry_ms = vl_malloc(sizeof retry);
	memcpy(c->retry_ms, retry, sizeof retry);
}

static int load(struct ctx *x, config_t *cf, struct cfg *c)
{
	static const char *const dkim_keys[] = { "domain", "selector", "key" };
	const config_setting_t *root = config_root_setting(cf), *s;

	if (get_group(x, root, "", top_keys, VL_ARRAY_LEN(top_keys), top_groups, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "api")) &&
	    (get_group(x, s, "api", api_keys, VL_ARRAY_LEN(api_keys), NULL, c) < 0 ||
	     check_api_limits(x, s, c) < 0))
		return -1;
	if ((s = config_setting_get_member(root, "console")) &&
	    get_group(x, s, "console", console_keys, VL_ARRAY_LEN(console_keys), NULL, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "events")) &&
	    get_group(x, s, "events", events_keys, VL_ARRAY_LEN(events_keys), NULL, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "spool")) &&
	    get_group(x, s, "spool", spool_keys, VL_ARRAY_LEN(spool_keys), NULL, c) < 0)
		return -1;
	if (c->spool.intake_checkpoint_ms < 10 || c->spool.intake_checkpoint_ms > 3600000)
		return fail(x, config_setting_lookup((config_setting_t *)root, "spool.intake_checkpoint"),
			    "spool.intake_checkpoint", "expected 10ms to 1h");
	if ((s = config_setting_get_member(root, "dns"))) {
		static const struct key dns_keys[] = {
			KEY("timeout_ms", K_INT, struct cfg, dns.timeout_ms),
			KEY("allow_private", K_BOOL, struct cfg, dns.allow_private),
			KEY("min_ttl", K_DUR, struct cfg, dns.min_ttl_ms),
			KEY("max_ttl", K_DUR, struct cfg, dns.max_ttl_ms),
			KEY("ipv6", K_BOOL, struct cfg, dns.ipv6),
			KEY("prefer_ipv6", K_BOOL, struct cfg, dns.prefer_ipv6) };
		static const char *const extra[] = { "servers", NULL };
		const config_setting_t *l;
		if (get_group(x, s, "dns", dns_keys, VL_ARRAY_LEN(dns_keys), extra, c) < 0)
			return -1;
		if ((l = config_setting_get_member(s, "servers"))) {
			free(c->dns.servers);
			if (get_strings(x, l, "dns.servers", &c->dns.servers, &c->dns.nservers) < 0)
				return -1;
		}
	}
	if ((s = config_setting_get_member(root, "defaults")) && get_defaults(x, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "provider_defaults"))) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return fail(x, s, "provider_defaults", "expected true or false");
		c->provider_defaults = config_setting_get_bool(s);
		if (!c->provider_defaults)
			cfg_providers_drop_builtin(c);
	}
	if ((s = config_setting_get_member(root, "timeouts")) &&
	    get_group(x, s, "timeouts", timeout_keys, VL_ARRAY_LEN(timeout_keys), NULL, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "domains")) && get_domains(x, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "providers")) &&
	    cfg_providers_load(s, x->file, false, c, x->err, x->errlen) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "egress")) &&
	    (get_egress(x, s, c) < 0 || check_egress(x, s, c) < 0 ||
	     cfg_warmup_load(s, x->file, c, x->err, x->errlen) < 0))
		return -1;
	if ((s = config_setting_get_member(root, "pools")) && get_pools(x, s, c) < 0)
		return -1;
	add_default_pool(c);
	if (check_pool_keys(x, root, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "dkim")) &&
	    get_records(x, s, "dkim", dkim_keys, 3, 3, (void **)&c->dkim, &c->ndkim, NULL) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "tls_rpt")) && get_tls_rpt(x, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "log")) &&
	    get_group(x, s, "log", log_keys, VL_ARRAY_LEN(log_keys), NULL, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "submission")) && get_submission(x, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "feedback")) && get_feedback(x, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "unsubscribe")) && get_unsubscribe(x, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "webhooks")) &&
	    cfg_webhooks_load(s, x->file, c, x->err, x->errlen) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "cluster")) && get_cluster(x, s, c) < 0)
		return -1;
	if (!c->submission.max_message_size)
		c->submission.max_message_size = c->max_message_size;
	if (!c->feedback.max_message_size)
		c->feedback.max_message_size = c->max_message_size;
	if (check_api(x, root, c) < 0 || check_log(x, root, c) < 0)
		return -1;
	if (!*c->data_dir)
		return fail(x, root, "data_dir", "must not be empty");
	if (!c->max_message_size)
		return fail(x, root, "max_message_size", "must be positive");
	if (strcmp(c->dkim_canon, "relaxed/relaxed") && strcmp(c->dkim_canon, "simple/simple") &&
	    strcmp(c->dkim_canon, "relaxed/simple") && strcmp(c->dkim_canon, "simple/relaxed"))
		return fail(x, root, "dkim_canonicalization", "expected relaxed/relaxed, "
			    "simple/simple, relaxed/simple or simple/relaxed");
	if (check_policy(x, root, "defaults", &c->defaults) < 0)
		return -1;
	return check_implicit(x, root, "defaults", &c->defaults, NULL);
}

int cfg_load(struct cfg *c, const char *path, char *err, size_t errlen)
{
	struct ctx x = { path ? path : "(defaults)", err, errlen };
	config_t cf;
	int rc;

	defaults(c);
	if (cfg_providers_builtin_load(c, err, errlen) < 0) {
		cfg_free(c);
		return -1;
	}
	if (!path) {
		add_default_pool(c);
		return 0;
	}
	config_init(&cf);
	if (!config_read_file(&cf, path)) {
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read the file", path);
		else
			snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&cf),
				 config_error_text(&cf));
		config_destroy(&cf);
		cfg_free(c);
		return -1;
	}
	rc = load(&x, &cf, c);
	config_destroy(&cf);
	if (rc < 0)
		cfg_free(c);     /* nothing half-loaded for the caller to free */
	return rc;
}

static void free_policy(struct cfg_policy *p)
{
	free(p->tls);
	free(p->rate);
	free(p->route);
	free(p->ca_file);
	free(p->auth_user);
	free(p->auth_password);
	free(p->pool);
}

void cfg_free(struct cfg *c)
{
	free(c->data_dir);
	free(c->hostname);
	free(c->bounce_rules);
	free(c->dkim_canon);
	free(c->api.socket);
	free(c->api.listen);
	free(c->api.token);
	for (size_t i = 0; i < c->dns.nservers; i++)
		free(c->dns.servers[i]);
	free(c->dns.servers);
	free_policy(&c->defaults);
	free(c->retry_ms);
	for (size_t i = 0; i < c->ndomains; i++) {
		free(c->domains[i].match);
		free_policy(&c->domains[i].p);
	}
	free(c->domains);
	for (size_t i = 0; i < c->negress; i++) {
		free(c->egress[i].address);
		free(c->egress[i].ehlo);
		free(c->egress[i].name);
		cfg_warmup_free(&c->egress[i]);
	}
	free(c->egress);
	for (size_t i = 0; i < c->npools; i++) {
		free(c->pools[i].name);
		free(c->pools[i].src);
		free(c->pools[i].weight);
	}
	free(c->pools);
	for (size_t i = 0; i < c->ndkim; i++) {
		free(c->dkim[i].domain);
		free(c->dkim[i].selector);
		free(c->dkim[i].key);
	}
	free(c->dkim);
	free(c->tls_rpt.organization);
	free(c->tls_rpt.contact);
	free(c->tls_rpt.from);
	free(c->tls_rpt.ca_file);
	free(c->log.file);
	free(c->log.level);
	free_listeners(c);
	cfg_webhooks_free(c);
	cfg_providers_free(c);
	memset(c, 0, sizeof *c);
}

static void overlay(struct cfg_policy *out, const struct cfg_policy *p)
{
#define OV_STR(f) if (p->f) out->f = p->f
#define OV_INT(f) if (p->f >= 0) out->f = p->f
	OV_STR(tls);
	OV_STR(rate);
	OV_STR(route);
	OV_STR(ca_file);
	OV_STR(auth_user);
	OV_STR(auth_password);
	OV_STR(pool);
	OV_INT(max_connections);
	OV_INT(max_messages_per_connection);
	OV_INT(max_recipients_per_message);
	OV_INT(port);
	OV_INT(implicit_tls);
#undef OV_STR
#undef OV_INT
}

void cfg_policy_for_provider(const struct cfg *c, const char *domain, int prov,
			     struct cfg_policy *out)
{
	*out = c->defaults;
	if (prov >= 0 && (size_t)prov < c->nproviders)
		overlay(out, &c->providers[prov].p);
	for (size_t i = 0; i < c->ndomains; i++)
		if (vl_glob_match(c->domains[i].match, domain))
			overlay(out, &c->domains[i].p);
}

void cfg_policy_for(const struct cfg *c, const char *domain, struct cfg_policy *out)
{
	cfg_policy_for_provider(c, domain, cfg_provider_for(c, domain, NULL, 0), out);
}

unsigned cfg_policy_port(const struct cfg_policy *p)
{
	char host[256];
	uint16_t port;

	if (p->route && *p->route && vl_parse_hostport(p->route, host, sizeof host, &port) == 0)
		return port;
	return p->port > 0 ? (unsigned)p->port : 25;
}

bool cfg_policy_implicit_tls(const struct cfg_policy *p)
{
	return p->implicit_tls >= 0 ? p->implicit_tls != 0 : cfg_policy_port(p) == 465;
}

static void print_policy(struct vl_buf *o, const struct cfg_policy *p, const char *ind)
{
	if (p->tls)
		vl_buf_printf(o, "%stls = \"%s\";\n", ind, p->tls);
	if (p->max_connections >= 0)
		vl_buf_printf(o, "%smax_connections = %lld;\n", ind, (long long)p->max_connections);
	if (p->max_messages_per_connection >= 0)
		vl_buf_printf(o, "%smax_messages_per_connection = %lld;\n", ind,
			      (long long)p->max_messages_per_connection);
	if (p->max_recipients_per_message >= 0)
		vl_buf_printf(o, "%smax_recipients_per_message = %lld;\n", ind,
			      (long long)p->max_recipients_per_message);
	if (p->rate)
		vl_buf_printf(o, "%srate = \"%s\";\n", ind, p->rate);
	if (p->port >= 0)
		vl_buf_printf(o, "%sport = %lld;\n", ind, (long long)p->port);
	if (p->route)
		vl_buf_printf(o, "%sroute = \"%s\";\n", ind, p->route);
	if (p->ca_file)
		vl_buf_printf(o, "%sca_file = \"%s\";\n", ind, p->ca_file);
	if (p->implicit_tls >= 0)
		vl_buf_printf(o, "%simplicit_tls = %s;\n", ind, p->implicit_tls ? "true" : "false");
	if (p->pool)
		vl_buf_printf(o, "%spool = \"%s\";\n", ind, p->pool);
	if (p->auth_user)
		vl_buf_printf(o, "%sauth = { user = \"%s\"; password = \"(hidden)\"; };\n",
			      ind, p->auth_user);
}

void cfg_print(const struct cfg *c, struct vl_buf *o)
{
	vl_buf_printf(o, "data_dir = \"%s\";\nhostname = \"%s\";\nworkers = %lld;\n"
		      "max_message_size = %llu;\nbounce_rules = \"%s\";\n"
		      "shutdown_grace = \"%llums\";\ndkim_required = %s;\n"
		      "dkim_canonicalization = \"%s\";\ndkim_expire = \"%llus\";\n"
		      "events = {\n  rotate_bytes = %llu;\n  keep_files = %lld;\n};\n",
		      c->data_dir, c->hostname,
		      (long long)c->workers, (unsigned long long)c->max_message_size,
		      c->bounce_rules, (unsigned long long)c->shutdown_grace_ms,
		      c->dkim_required ? "true" : "false", c->dkim_canon,
		      (unsigned long long)(c->dkim_expire_ms / 1000),
		      (unsigned long long)c->events.rotate_bytes, (long long)c->events.keep_files);
	vl_buf_printf(o, "api = {\n  socket = \"%s\";\n  listen = \"%s\";\n  token = \"%s\";\n"
		      "  max_connections = %lld;\n  max_connections_per_ip = %lld;\n"
		      "  threads = %lld;\n  header_timeout = \"%llums\";\n"
		      "  idle_timeout = \"%llums\";\n  max_body = %llu;\n};\n", c->api.socket,
		      c->api.listen, *c->api.token ? "(hidden)" : "",
		      (long long)c->api.max_connections, (long long)c->api.max_connections_per_ip,
		      (long long)c->api.threads, (unsigned long long)c->api.header_timeout_ms,
		      (unsigned long long)c->api.idle_timeout_ms, (unsigned long long)c->api.max_body);
	vl_buf_printf(o, "console = {\n  enabled = %s;\n  actions = %s;\n};\n",
		      c->console.enabled ? "true" : "false", c->console.actions ? "true" : "false");
	vl_buf_printf(o, "spool = {\n  max_bytes = %llu;\n  min_free = %llu;\n"
		      "  journal_commit_ms = %lld;\n  retain = \"%llus\";\n"
		      "  intake_checkpoint = \"%llums\";\n};\n",
		      (unsigned long long)c->spool.max_bytes,
		      (unsigned long long)c->spool.min_free,
		      (long long)c->spool.journal_commit_ms,
		      (unsigned long long)(c->spool.retain_ms / 1000),
		      (unsigned long long)c->spool.intake_checkpoint_ms);
	vl_buf_appends(o, "dns = {\n  servers = [");
	for (size_t i = 0; i < c->dns.nservers; i++)
		vl_buf_printf(o, "%s\"%s\"", i ? ", " : " ", c->dns.servers[i]);
	vl_buf_printf(o, " ];\n  timeout_ms = %lld;\n  allow_private = %s;\n"
		      "  min_ttl = \"%llus\";\n  max_ttl = \"%llus\";\n"
		      "  ipv6 = %s;\n  prefer_ipv6 = %s;\n};\ndefaults = {\n",
		      (long long)c->dns.timeout_ms, c->dns.allow_private ? "true" : "false",
		      (unsigned long long)(c->dns.min_ttl_ms / 1000),
		      (unsigned long long)(c->dns.max_ttl_ms / 1000),
		      c->dns.ipv6 ? "true" : "false", c->dns.prefer_ipv6 ? "true" : "false");
	print_policy(o, &c->defaults, "  ");
	vl_buf_appends(o, "  retry = [");
	for (size_t i = 0; i < c->nretry; i++)
		vl_buf_printf(o, "%s\"%llus\"", i ? ", " : " ",
			      (unsigned long long)(c->retry_ms[i] / 1000));
	vl_buf_printf(o, " ];\n  max_age = \"%llus\";\n};\n", (unsigned long long)(c->max_age_ms / 1000));
	vl_buf_printf(o, "timeouts = {\n  connect = \"%llums\";\n  greeting = \"%llums\";\n"
		      "  helo = \"%llums\";\n  tls = \"%llums\";\n  mail = \"%llums\";\n"
		      "  rcpt = \"%llums\";\n  data = \"%llums\";\n  data_block = \"%llums\";\n"
		      "  data_term = \"%llums\";\n  idle = \"%llums\";\n  quit = \"%llums\";\n};\n"
		      "provider_defaults = %s;\ndomains = (",
		      (unsigned long long)c->timeouts.connect, (unsigned long long)c->timeouts.greeting,
		      (unsigned long long)c->timeouts.helo, (unsigned long long)c->timeouts.tls,
		      (unsigned long long)c->timeouts.mail, (unsigned long long)c->timeouts.rcpt,
		      (unsigned long long)c->timeouts.data, (unsigned long long)c->timeouts.data_block,
		      (unsigned long long)c->timeouts.data_term, (unsigned long long)c->timeouts.idle,
		      (unsigned long long)c->timeouts.quit, c->provider_defaults ? "true" : "false");
	for (size_t i = 0; i < c->ndomains; i++) {
		vl_buf_printf(o, "%s\n  {\n    match = \"%s\";\n", i ? "," : "",
			      c->domains[i].match);
		print_policy(o, &c->domains[i].p, "    ");
		vl_buf_appends(o, "  }");
	}
	vl_buf_appends(o, "\n);\negress = (");
	for (size_t i = 0; i < c->negress; i++) {
		vl_buf_printf(o, "%s\n  { name = \"%s\"; address = \"%s\"; ehlo = \"%s\";",
			      i ? "," : "", c->egress[i].name, c->egress[i].address,
			      c->egress[i].ehlo);
		cfg_warmup_print(&c->egress[i], o);
		vl_buf_appends(o, " }");
	}
	vl_buf_appends(o, "\n);\npools = (");
	for (size_t i = 0, out = 0; i < c->npools; i++) {
		if (!c->pools[i].n)
			continue;
		vl_buf_printf(o, "%s\n  { name = \"%s\"; sources = [", out++ ? "," : "",
			      c->pools[i].name);
		for (size_t k = 0; k < c->pools[i].n; k++)
			vl_buf_printf(o, "%s\"%s\"", k ? ", " : " ",
				      c->egress[c->pools[i].src[k]].name);
		vl_buf_appends(o, " ]; weights = [");
		for (size_t k = 0; k < c->pools[i].n; k++)
			vl_buf_printf(o, "%s%u", k ? ", " : " ", c->pools[i].weight[k]);
		vl_buf_printf(o, " ];%s }", c->pools[i].overflow_wait ? " overflow = \"wait\";" : "");
	}
	vl_buf_appends(o, "\n);\ndkim = (");
	for (size_t i = 0; i < c->ndkim; i++)
		vl_buf_printf(o, "%s\n  { domain = \"%s\"; selector = \"%s\"; key = \"%s\"; }",
			      i ? "," : "", c->dkim[i].domain, c->dkim[i].selector,
			      c->dkim[i].key);
	vl_buf_appends(o, "\n);\n");
	if (c->tls_rpt.on)
		vl_buf_printf(o, "tls_rpt = {\n  organization = \"%s\";\n  contact = \"%s\";\n"
			      "  from = \"%s\";\n  ca_file = \"%s\";\n  send = %s;\n};\n",
			      c->tls_rpt.organization, c->tls_rpt.contact, c->tls_rpt.from,
			      c->tls_rpt.ca_file, c->tls_rpt.send ? "true" : "false");
	print_listeners(o, c);
	cfg_webhooks_print(c, o);
	if (c->cluster.on) {  /* never the password: its file, if any */
		const char *at = strrchr(c->cluster.redis, '@');
		const char *scheme = strncmp(c->cluster.redis, "rediss:", 7) ? "redis" : "rediss";
		vl_buf_printf(o, "cluster = {\n  redis = \"%s%s%s\";\n  node = \"%s\";\n"
			      "  password_file = \"%s\";\n  tls = %s;\n  tls_ca_file = \"%s\";\n"
			      "  tls_cert = \"%s\";\n  tls_key = \"%s\";\n  tls_server_name = \"%s\";\n"
			      "  lease_ttl = \"%llums\";\n};\n",
			      at ? scheme : "", at ? "://HIDDEN" : "", at ? at : c->cluster.redis,
			      c->cluster.node, c->cluster.password_file,
			      c->cluster.tls ? "true" : "false", c->cluster.tls_ca_file,
			      c->cluster.tls_cert, c->cluster.tls_key, c->cluster.tls_server_name,
			      (unsigned long long)c->cluster.lease_ttl_ms);
	}
	cfg_providers_print(c, o);
	vl_buf_printf(o, "log = {\n  file = \"%s\";\n  syslog = %s;\n  level = \"%s\";\n};\n",
		      c->log.file, c->log.syslog ? "true" : "false", c->log.level);
}
