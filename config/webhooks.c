/*
 * webhooks = ( { name; url; events; secret | secret_file; batch; gzip;
 * timeout; ca_file; }, ... ): parsed here, apart from config.c, as a list
 * of small groups with checks of their own (docs/webhooks.md).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The event types of docs/events.md: the names a webhook
 * may ask for. */
const char *const cfg_event_types[] = { "Reception", "Delivery", "TransientFailure",
	"Bounce", "Expiration", "AdminBounce", "OOB", "Feedback", "Unsubscribe", "JobPaused",
	"ClusterMode",
	NULL };

#define WH_BATCH_MAX 10000

static int wfail(const config_setting_t *s, const char *file, const char *path,
		 const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s:%d: %s: %s", file, s ? config_setting_source_line(s) : 0,
		 path, what);
	return -1;
}

/* A name that is a file name and a metric label: 1 to max of letters,
 * digits, '-', '_'. */
bool cfg_name_ok(const char *n, size_t max)
{
	size_t len = strlen(n);

	if (len < 1 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
		      (n[i] >= '0' && n[i] <= '9') || n[i] == '-' || n[i] == '_'))
			return false;
	return true;
}

bool cfg_webhook_name_ok(const char *n)
{
	return cfg_name_ok(n, 64);
}

/* A loopback address literal: 127.0.0.0/8 or [::1]. */
static bool loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (host[0] == '[') {
		char h[64];
		size_t n = strlen(host);
		if (n < 3 || n - 2 >= sizeof h || host[n - 1] != ']')
			return false;
		memcpy(h, host + 1, n - 2);
		h[n - 2] = 0;
		return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* https://HOST[:PORT][/PATH], or http:// to a loopback address only. */
int cfg_webhook_url_check(const char *url, char *why, size_t whylen)
{
	bool https = strncmp(url, "https://", 8) == 0;
	const char *h = url + (https ? 8 : 7), *end;
	char host[256];

	if (!https && strncmp(url, "http://", 7) != 0) {
		snprintf(why, whylen, "expected an https:// URL");
		return -1;
	}
	if (*h == '[')
		end = strchr(h, ']') ? strchr(h, ']') + 1 : h + strlen(h);
	else
		end = h + strcspn(h, ":/?#");
	if (end == h || (size_t)(end - h) >= sizeof host || strpbrk(url, " \t\r\n@")) {
		snprintf(why, whylen, "not a URL with a host (and without credentials or spaces)");
		return -1;
	}
	memcpy(host, h, (size_t)(end - h));
	host[end - h] = 0;
	if (!https && !loopback(host)) {
		snprintf(why, whylen, "plain http goes only to a loopback address (127.0.0.0/8, "
			 "[::1]); use https");
		return -1;
	}
	return 0;
}

static int get_str(const config_setting_t *g, const char *k, const char *file, const char *path,
		   char **out, char *err, size_t errlen)
{
	const config_setting_t *s = config_setting_get_member(g, k);
	char p[160];

	if (!s)
		return 0;
	snprintf(p, sizeof p, "%s.%s", path, k);
	if (!config_setting_get_string(s))
		return wfail(s, file, p, "expected a string", err, errlen);
	free(*out);
	*out = vl_strdup(config_setting_get_string(s));
	return 0;
}

static int get_events(const config_setting_t *l, const char *file, const char *path,
		      struct cfg_webhook *w, char *err, size_t errlen)
{
	char p[160];

	snprintf(p, sizeof p, "%s.events", path);
	if (!config_setting_is_array(l) && !config_setting_is_list(l))
		return wfail(l, file, p, "expected a list [ \"Delivery\", ... ]", err, errlen);
	w->nevents = (size_t)config_setting_length(l);
	w->events = vl_calloc(w->nevents + 1, sizeof *w->events);
	for (size_t i = 0; i < w->nevents; i++) {
		const char *v = config_setting_get_string_elem(l, (int)i);
		size_t k = 0;
		while (v && cfg_event_types[k] && strcmp(cfg_event_types[k], v))
			k++;
		if (!v || !cfg_event_types[k]) {
			char what[300];
			snprintf(what, sizeof what, "unknown event type \"%s\" (Reception, Delivery, "
				 "TransientFailure, Bounce, Expiration, AdminBounce, OOB, Feedback, "
				 "Unsubscribe)", v ? v : "(not a string)");
			return wfail(l, file, p, what, err, errlen);
		}
		w->events[i] = vl_strdup(v);
	}
	return 0;
}

static int get_secret(const config_setting_t *g, const char *file, const char *path,
		      struct cfg_webhook *w, char *err, size_t errlen)
{
	char *sfile = NULL, p[160], what[600];
	int rc = get_str(g, "secret_file", file, path, &sfile, err, errlen);

	if (rc == 0 && sfile) {
		struct vl_buf b;
		snprintf(p, sizeof p, "%s.secret_file", path);
		if (w->secret)
			rc = wfail(g, file, p, "secret and secret_file: one or the other", err, errlen);
		else if (vl_read_file(sfile, &b) < 0) {
			snprintf(what, sizeof what, "%s: %s", sfile, strerror(errno));
			vl_buf_free(&b);
			rc = wfail(g, file, p, what, err, errlen);
		} else {
			while (b.len && (b.p[b.len - 1] == '\n' || b.p[b.len - 1] == '\r'))
				b.len--;
			w->secret = vl_calloc(1, b.len + 1);
			memcpy(w->secret, b.p, b.len);
			vl_buf_free(&b);
		}
	}
	free(sfile);
	snprintf(p, sizeof p, "%s.secret", path);
	if (rc == 0 && (!w->secret || !*w->secret))
		rc = wfail(g, file, p, "needed (or secret_file): the key of the signature",
			   err, errlen);
	return rc;
}

static int get_numbers(const config_setting_t *g, const char *file, const char *path,
		       struct cfg_webhook *w, char *err, size_t errlen)
{
	const config_setting_t *s;
	char p[160];

	if ((s = config_setting_get_member(g, "batch"))) {
		snprintf(p, sizeof p, "%s.batch", path);
		long long v = config_setting_get_int64(s);
		if ((config_setting_type(s) != CONFIG_TYPE_INT &&
		     config_setting_type(s) != CONFIG_TYPE_INT64) || v < 1 || v > WH_BATCH_MAX)
			return wfail(s, file, p, "expected an integer from 1 to 10000", err, errlen);
		w->batch = (unsigned)v;
	}
	if ((s = config_setting_get_member(g, "gzip"))) {
		snprintf(p, sizeof p, "%s.gzip", path);
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return wfail(s, file, p, "expected true or false", err, errlen);
		w->gzip = config_setting_get_bool(s);
	}
	if ((s = config_setting_get_member(g, "timeout"))) {
		snprintf(p, sizeof p, "%s.timeout", path);
		const char *v = config_setting_get_string(s);
		if (!v || vl_parse_duration_ms(v, &w->timeout_ms) < 0 || !w->timeout_ms)
			return wfail(s, file, p, "expected a duration such as \"10s\"", err, errlen);
	}
	return 0;
}

static const char *const wh_keys[] = { "name", "url", "events", "secret", "secret_file",
	"batch", "gzip", "timeout", "ca_file", NULL };

static int get_one(const config_setting_t *g, size_t i, const char *file, struct cfg *c,
		   char *err, size_t errlen)
{
	struct cfg_webhook *w = &c->webhooks[i];
	const config_setting_t *s;
	char path[64], p[160], why[200];

	snprintf(path, sizeof path, "webhooks[%zu]", i);
	w->batch = 100;
	w->timeout_ms = 10000;
	if (!config_setting_is_group(g))
		return wfail(g, file, path, "expected a group { url = ...; }", err, errlen);
	for (int j = 0; j < config_setting_length(g); j++) {
		const char *n = config_setting_name(config_setting_get_elem(g, (unsigned)j));
		size_t k = 0;
		while (wh_keys[k] && strcmp(wh_keys[k], n))
			k++;
		snprintf(p, sizeof p, "%s.%s", path, n);
		if (!wh_keys[k])
			return wfail(config_setting_get_elem(g, (unsigned)j), file, p, "unknown key",
				     err, errlen);
	}
	if (get_str(g, "name", file, path, &w->name, err, errlen) < 0 ||
	    get_str(g, "url", file, path, &w->url, err, errlen) < 0 ||
	    get_str(g, "secret", file, path, &w->secret, err, errlen) < 0 ||
	    get_str(g, "ca_file", file, path, &w->ca_file, err, errlen) < 0 ||
	    get_secret(g, file, path, w, err, errlen) < 0 ||
	    get_numbers(g, file, path, w, err, errlen) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "events")) &&
	    get_events(s, file, path, w, err, errlen) < 0)
		return -1;
	snprintf(p, sizeof p, "%s.url", path);
	if (!w->url)
		return wfail(g, file, p, "needed", err, errlen);
	if (cfg_webhook_url_check(w->url, why, sizeof why) < 0)
		return wfail(config_setting_get_member(g, "url"), file, p, why, err, errlen);
	if (!w->name) {
		snprintf(p, sizeof p, "hook%zu", i + 1);
		w->name = vl_strdup(p);
	}
	snprintf(p, sizeof p, "%s.name", path);
	if (!cfg_webhook_name_ok(w->name))
		return wfail(g, file, p, "expected 1 to 64 of letters, digits, '-' and '_'",
			     err, errlen);
	for (size_t k = 0; k < i; k++)
		if (!strcmp(c->webhooks[k].name, w->name))
			return wfail(g, file, p, "a second webhook of this name", err, errlen);
	if (!w->ca_file)
		w->ca_file = vl_strdup("");
	return 0;
}

int cfg_webhooks_load(const void *list, const char *file, struct cfg *c, char *err,
		      size_t errlen)
{
	const config_setting_t *l = list;

	if (!config_setting_is_list(l))
		return wfail(l, file, "webhooks", "expected a list ( { url = ...; }, ... )",
			     err, errlen);
	c->nwebhooks = (size_t)config_setting_length(l);
	c->webhooks = vl_calloc(c->nwebhooks + 1, sizeof *c->webhooks);
	for (size_t i = 0; i < c->nwebhooks; i++)
		if (get_one(config_setting_get_elem(l, (unsigned)i), i, file, c, err, errlen) < 0)
			return -1;
	return 0;
}

void cfg_webhooks_free(struct cfg *c)
{
	for (size_t i = 0; i < c->nwebhooks; i++) {
		struct cfg_webhook *w = &c->webhooks[i];
		free(w->name);
		free(w->url);
		free(w->secret);
		free(w->ca_file);
		for (size_t k = 0; k < w->nevents; k++)
			free(w->events[k]);
		free(w->events);
	}
	free(c->webhooks);
	c->webhooks = NULL;
	c->nwebhooks = 0;
}

/* The secret is not printed. */
void cfg_webhooks_print(const struct cfg *c, struct vl_buf *o)
{
	if (!c->nwebhooks)
		return;
	vl_buf_appends(o, "webhooks = (\n");
	for (size_t i = 0; i < c->nwebhooks; i++) {
		const struct cfg_webhook *w = &c->webhooks[i];
		vl_buf_printf(o, "  { name = \"%s\"; url = \"%s\"; events = [", w->name, w->url);
		for (size_t k = 0; k < w->nevents; k++)
			vl_buf_printf(o, "%s\"%s\"", k ? ", " : " ", w->events[k]);
		vl_buf_printf(o, " ]; secret = \"(hidden)\"; batch = %u; gzip = %s; "
			      "timeout = \"%llums\"; ca_file = \"%s\"; }%s\n", w->batch,
			      w->gzip ? "true" : "false", (unsigned long long)w->timeout_ms,
			      w->ca_file, i + 1 < c->nwebhooks ? "," : "");
	}
	vl_buf_appends(o, ");\n");
}
