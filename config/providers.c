/*
 * providers = ( { name; domains; mx; max_connections; ...; replies = ( {
 * code; enhanced; text; action; duration; }, ... ); }, ... ): the mailbox
 * providers (docs/providers.md). The shipped list (providers.conf,
 * compiled in) is parsed at every load; the user's entries come first and
 * replace a shipped one of the same name.
 */
#include "config.h"

#include <libconfig.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROV_MAX 256
#define PROV_REPLIES_MAX 64

struct pctx {
	const char *file;
	char *err;
	size_t errlen;
};

static int pfail(struct pctx *x, const config_setting_t *s, const char *path, const char *what)
{
	snprintf(x->err, x->errlen, "%s:%d: %s: %s", x->file,
		 s ? config_setting_source_line(s) : 0, path, what);
	return -1;
}

static const char *const actions[] = {
	[CFG_RA_BACKOFF] = "backoff", [CFG_RA_SUSPEND_SOURCE] = "suspend-source",
	[CFG_RA_SUSPEND_POOL] = "suspend-pool", [CFG_RA_DEFER] = "defer",
	[CFG_RA_BOUNCE] = "bounce",
};

const char *cfg_reply_action_name(enum cfg_reply_action a)
{
	return (size_t)a < VL_ARRAY_LEN(actions) ? actions[a] : "?";
}

static int globs(struct pctx *x, const config_setting_t *g, const char *key, const char *path,
		 char ***out, size_t *n)
{
	const config_setting_t *l = config_setting_get_member(g, key);
	char sub[160];

	*out = vl_calloc(1, sizeof **out);
	*n = 0;
	if (!l)
		return 0;
	snprintf(sub, sizeof sub, "%.96s.%s", path, key);
	if (!config_setting_is_array(l) && !config_setting_is_list(l))
		return pfail(x, l, sub, "expected a list of globs [ \"*.example.com\", ... ]");
	size_t len = (size_t)config_setting_length(l);
	*out = vl_realloc(*out, (len + 1) * sizeof **out);
	for (size_t i = 0; i < len; i++) {
		const char *v = config_setting_get_string_elem(l, (int)i);
		if (!v || !*v || strlen(v) > 255)
			return pfail(x, l, sub, "expected non-empty strings (globs)");
		(*out)[(*n)++] = vl_strdup(v);
		(*out)[*n] = NULL;
	}
	return 0;
}

static void strs_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static void reply_free(struct cfg_reply_rule *r)
{
	free(r->code);
	free(r->enhanced);
	free(r->text);
	if (r->re) {
		regfree(r->re);
		free(r->re);
	}
}

static void provider_free(struct cfg_provider *p)
{
	free(p->name);
	strs_free(p->domains);
	strs_free(p->mx);
	free(p->p.rate);
	for (size_t i = 0; i < p->nreplies; i++)
		reply_free(&p->replies[i]);
	free(p->replies);
	memset(p, 0, sizeof *p);
}

static const char *opt_str(const config_setting_t *g, const char *key, const char *dflt)
{
	const char *v = NULL;

	return config_setting_lookup_string(g, key, &v) ? v : dflt;
}

/* Every key of group g is one of keys (NULL-terminated); the error lists
 * them. */
static int check_keys(struct pctx *x, const config_setting_t *g, const char *path,
		      const char *const *keys)
{
	char sub[160], list[320] = "";

	for (size_t j = 0; keys[j]; j++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "",
			 keys[j]);
	for (int i = 0; i < config_setting_length(g); i++) {
		const char *k = config_setting_name(config_setting_get_elem(g, (unsigned)i));
		bool known = false;
		for (size_t j = 0; keys[j]; j++)
			known |= !strcmp(k, keys[j]);
		snprintf(sub, sizeof sub, "%.96s.%.48s", path, k);
		if (!known) {
			char why[400];
			snprintf(why, sizeof why, "unknown key (%s)", list);
			return pfail(x, g, sub, why);
		}
	}
	return 0;
}

static int get_reply(struct pctx *x, const config_setting_t *g, const char *path,
		     struct cfg_reply_rule *r)
{
	static const char *const keys[] = { "code", "enhanced", "text", "action", "duration", NULL };
	char sub[160];

	if (!config_setting_is_group(g))
		return pfail(x, g, path, "expected { code = \"421\"; text = \"...\"; action = ...; }");
	if (check_keys(x, g, path, keys) < 0)
		return -1;
	r->code = vl_strdup(opt_str(g, "code", "*"));
	r->enhanced = vl_strdup(opt_str(g, "enhanced", "*"));
	r->text = vl_strdup(opt_str(g, "text", ""));
	const char *a = opt_str(g, "action", NULL);
	snprintf(sub, sizeof sub, "%.96s.action", path);
	if (!a)
		return pfail(x, g, sub, "needed: backoff, suspend-source, suspend-pool, defer or bounce");
	size_t ai = 0;
	while (ai < VL_ARRAY_LEN(actions) && strcmp(a, actions[ai]))
		ai++;
	if (ai == VL_ARRAY_LEN(actions))
		return pfail(x, g, sub, "expected backoff, suspend-source, suspend-pool, defer or bounce");
	r->action = (enum cfg_reply_action)ai;
	const char *dur = opt_str(g, "duration", NULL);
	snprintf(sub, sizeof sub, "%.96s.duration", path);
	bool suspend = r->action == CFG_RA_SUSPEND_SOURCE || r->action == CFG_RA_SUSPEND_POOL;
	if (dur && !suspend)
		return pfail(x, g, sub, "only suspend-source and suspend-pool take a duration");
	r->duration_ms = 3600000;
	if (dur && (vl_parse_duration_ms(dur, &r->duration_ms) < 0 || !r->duration_ms ||
		    r->duration_ms > 7 * 86400000ull))
		return pfail(x, g, sub, "expected a duration from 1s to 7d (\"30m\", \"4h\")");
	if (*r->text) {
		char why[160];
		regex_t *re = vl_malloc(sizeof *re);
		int rc = regcomp(re, r->text, REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc) {
			regerror(rc, re, why, sizeof why);
			free(re);
			snprintf(sub, sizeof sub, "%.96s.text", path);
			return pfail(x, g, sub, why);
		}
		r->re = re;
	}
	return 0;
}

static int get_limits(struct pctx *x, const config_setting_t *g, const char *path,
		      struct cfg_policy *p)
{
	static const char *const ints[] = { "max_connections", "max_messages_per_connection",
					    "max_recipients_per_message" };
	int64_t *dst[] = { &p->max_connections, &p->max_messages_per_connection,
			   &p->max_recipients_per_message };
	char sub[160];
	long long v;
	double r;

	p->port = p->implicit_tls = -1;      /* never a provider's to set */
	for (size_t i = 0; i < VL_ARRAY_LEN(ints); i++) {
		*dst[i] = -1;
		if (!config_setting_get_member(g, ints[i]))
			continue;
		snprintf(sub, sizeof sub, "%.96s.%s", path, ints[i]);
		if (!config_setting_lookup_int64(g, ints[i], &v) || v < 1 || v > 100000)
			return pfail(x, g, sub, "expected an integer from 1 to 100000");
		*dst[i] = v;
	}
	const char *rate = opt_str(g, "rate", NULL);
	snprintf(sub, sizeof sub, "%s.rate", path);
	if (rate && *rate && vl_parse_rate(rate, &r) < 0)
		return pfail(x, g, sub, "not a rate (\"50/s\", \"3000/min\", \"50000/h\")");
	if (rate)
		p->rate = vl_strdup(rate);
	return 0;
}

static int get_provider(struct pctx *x, const config_setting_t *g, const char *path,
			struct cfg_provider *p)
{
	static const char *const keys[] = { "name", "extend", "domains", "mx", "max_connections",
		"max_messages_per_connection", "max_recipients_per_message", "rate", "replies",
		NULL };
	const char *name = NULL;
	int extend = 0;
	char sub[160];

	if (!config_setting_is_group(g))
		return pfail(x, g, path, "expected { name = \"...\"; domains = [...]; mx = [...]; }");
	if (check_keys(x, g, path, keys) < 0)
		return -1;
	snprintf(sub, sizeof sub, "%.96s.name", path);
	if (!config_setting_lookup_string(g, "name", &name) || !cfg_name_ok(name, 32))
		return pfail(x, g, sub, "needed: 1 to 32 of letters, digits, '-', '_'");
	p->name = vl_strdup(name);
	if (globs(x, g, "domains", path, &p->domains, &p->ndomains) < 0 ||
	    globs(x, g, "mx", path, &p->mx, &p->nmx) < 0 || get_limits(x, g, path, &p->p) < 0)
		return -1;
	snprintf(sub, sizeof sub, "%.96s.extend", path);
	if (config_setting_get_member(g, "extend") &&
	    !config_setting_lookup_bool(g, "extend", &extend))
		return pfail(x, g, sub, "expected true or false");
	p->extend = extend;
	if (!p->ndomains && !p->nmx && !p->extend)
		return pfail(x, g, path, "matches nothing: give domains or mx globs");
	const config_setting_t *l = config_setting_get_member(g, "replies");
	if (!l)
		return 0;
	snprintf(sub, sizeof sub, "%.96s.replies", path);
	if (!config_setting_is_list(l) || config_setting_length(l) > PROV_REPLIES_MAX)
		return pfail(x, l, sub, "expected a list ( { ... }, ... ) of at most 64 entries");
	p->replies = vl_calloc((size_t)config_setting_length(l) + 1, sizeof *p->replies);
	for (int i = 0; i < config_setting_length(l); i++) {
		snprintf(sub, sizeof sub, "%.96s.replies[%d]", path, i);
		if (get_reply(x, config_setting_get_elem(l, (unsigned)i), sub,
			      &p->replies[p->nreplies++]) < 0)
			return -1;
	}
	return 0;
}

int cfg_provider_find(const struct cfg *c, const char *name)
{
	for (size_t i = 0; i < c->nproviders; i++)
		if (!strcmp(c->providers[i].name, name))
			return (int)i;
	return -1;
}

static char **strs_cat(char **a, size_t *na, char **b, size_t nb)
{
	a = vl_realloc(a, (*na + nb + 1) * sizeof *a);
	for (size_t i = 0; i < nb; i++)
		a[(*na)++] = b[i];
	a[*na] = NULL;
	return a;
}

/* extend = true: p's globs added to the provider of its name, its limits
 * over that one's, its replies tried first; p is consumed into it, which
 * becomes the user's (printed whole, so the printed form loads the same). */
static int extend(struct pctx *x, const config_setting_t *g, const char *path, struct cfg *c,
		  struct cfg_provider *p)
{
	int at = cfg_provider_find(c, p->name);

	if (at < 0) {
		provider_free(p);
		return pfail(x, g, path, "extends no provider of that name (see volleyd "
			     "--check-config)");
	}
	struct cfg_provider *o = &c->providers[at];
	o->domains = strs_cat(o->domains, &o->ndomains, p->domains, p->ndomains);
	o->mx = strs_cat(o->mx, &o->nmx, p->mx, p->nmx);
	free(p->domains);
	free(p->mx);
	p->domains = p->mx = NULL;
	int64_t *dst[] = { &o->p.max_connections, &o->p.max_messages_per_connection,
			   &o->p.max_recipients_per_message };
	int64_t src[] = { p->p.max_connections, p->p.max_messages_per_connection,
			  p->p.max_recipients_per_message };
	for (size_t i = 0; i < VL_ARRAY_LEN(src); i++)
		if (src[i] >= 0)
			*dst[i] = src[i];
	if (p->p.rate) {
		free(o->p.rate);
		o->p.rate = p->p.rate;
		p->p.rate = NULL;
	}
	struct cfg_reply_rule *r = vl_calloc(p->nreplies + o->nreplies + 1, sizeof *r);
	memcpy(r, p->replies, p->nreplies * sizeof *r);
	memcpy(r + p->nreplies, o->replies, o->nreplies * sizeof *r);
	free(o->replies);
	o->replies = r;
	o->nreplies += p->nreplies;
	p->nreplies = 0;
	struct cfg_provider merged = *o;
	merged.builtin = false;
	memmove(c->providers + at, c->providers + at + 1,
		(c->nproviders - (size_t)at - 1) * sizeof *c->providers);
	c->nproviders--;
	provider_free(p);
	size_t pos = 0;
	while (pos < c->nproviders && !c->providers[pos].builtin)
		pos++;
	memmove(c->providers + pos + 1, c->providers + pos,
		(c->nproviders - pos) * sizeof *c->providers);
	c->providers[pos] = merged;
	c->nproviders++;
	return 0;
}

/* Add p, replacing a shipped one of the same name; the user's first. */
static int add(struct pctx *x, const config_setting_t *g, const char *path, struct cfg *c,
	       struct cfg_provider *p)
{
	if (p->extend)
		return extend(x, g, path, c, p);
	int at = cfg_provider_find(c, p->name);

	if (at >= 0 && c->providers[at].builtin == p->builtin) {
		provider_free(p);
		return pfail(x, g, path, "a provider of that name is there already");
	}
	if (at >= 0) {
		provider_free(&c->providers[at]);
		memmove(c->providers + at, c->providers + at + 1,
			(c->nproviders - (size_t)at - 1) * sizeof *c->providers);
		c->nproviders--;
	}
	if (c->nproviders >= PROV_MAX) {
		provider_free(p);
		return pfail(x, g, path, "too many providers (256 at most)");
	}
	c->providers = vl_realloc(c->providers, (c->nproviders + 1) * sizeof *c->providers);
	/* user entries before the shipped ones: theirs match first */
	size_t pos = 0;
	if (p->builtin)
		pos = c->nproviders;
	else
		while (pos < c->nproviders && !c->providers[pos].builtin)
			pos++;
	memmove(c->providers + pos + 1, c->providers + pos,
		(c->nproviders - pos) * sizeof *c->providers);
	c->providers[pos] = *p;
	c->nproviders++;
	return 0;
}

int cfg_providers_load(const void *list, const char *file, bool builtin, struct cfg *c,
		       char *err, size_t errlen)
{
	const config_setting_t *l = list;
	struct pctx x = { file, err, errlen };
	char path[64];

	if (!config_setting_is_list(l))
		return pfail(&x, l, "providers", "expected a list ( { name = ...; }, ... )");
	for (int i = 0; i < config_setting_length(l); i++) {
		struct cfg_provider p = { .builtin = builtin };
		snprintf(path, sizeof path, "providers[%d]", i);
		if (get_provider(&x, config_setting_get_elem(l, (unsigned)i), path, &p) < 0) {
			provider_free(&p);
			return -1;
		}
		if (add(&x, l, path, c, &p) < 0)
			return -1;
	}
	return 0;
}

int cfg_providers_builtin_load(struct cfg *c, char *err, size_t errlen)
{
	config_t cf;
	int rc = -1;

	config_init(&cf);
	if (!config_read_string(&cf, cfg_providers_builtin)) {
		snprintf(err, errlen, "built-in providers.conf:%d: %s", config_error_line(&cf),
			 config_error_text(&cf));
	} else {
		const config_setting_t *l = config_lookup(&cf, "providers");
		rc = l ? cfg_providers_load(l, "built-in providers.conf", true, c, err, errlen) : 0;
	}
	config_destroy(&cf);
	return rc;
}

void cfg_providers_drop_builtin(struct cfg *c)
{
	size_t k = 0;

	for (size_t i = 0; i < c->nproviders; i++) {
		if (c->providers[i].builtin)
			provider_free(&c->providers[i]);
		else
			c->providers[k++] = c->providers[i];
	}
	c->nproviders = k;
}

void cfg_providers_free(struct cfg *c)
{
	for (size_t i = 0; i < c->nproviders; i++)
		provider_free(&c->providers[i]);
	free(c->providers);
	c->providers = NULL;
	c->nproviders = 0;
}

static bool any_glob(char *const *g, const char *s)
{
	for (size_t i = 0; g[i]; i++)
		if (vl_glob_match(g[i], s))
			return true;
	return false;
}

int cfg_provider_for(const struct cfg *c, const char *domain, const char *const *mx, size_t nmx)
{
	for (size_t i = 0; i < c->nproviders; i++)
		if (any_glob(c->providers[i].domains, domain))
			return (int)i;
	for (size_t i = 0; i < c->nproviders; i++)
		for (size_t j = 0; j < nmx; j++)
			if (any_glob(c->providers[i].mx, mx[j]))
				return (int)i;
	return -1;
}

/* A comma-separated list of globs; "*" any, including "" (none given). */
static bool list_match(const char *list, const char *s)
{
	char one[64];

	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		snprintf(one, sizeof one, "%.*s", (int)(n < 63 ? n : 63), p);
		if (!strcmp(one, "*") || vl_glob_match(one, s))
			return true;
		p += n + (p[n] == ',');
	}
	return false;
}

const struct cfg_reply_rule *cfg_provider_reply(const struct cfg *c, int i, int code,
						const char *enhanced, const char *text)
{
	char cs[8];

	if (i < 0 || (size_t)i >= c->nproviders)
		return NULL;
	snprintf(cs, sizeof cs, "%d", code);
	const struct cfg_provider *p = &c->providers[i];
	for (size_t k = 0; k < p->nreplies; k++) {
		const struct cfg_reply_rule *r = &p->replies[k];
		if (!list_match(r->code, code ? cs : "") || !list_match(r->enhanced, enhanced))
			continue;
		if (r->re && regexec(r->re, text, 0, NULL, 0) != 0)
			continue;
		return r;
	}
	return NULL;
}

static void print_list(struct vl_buf *o, const char *key, char *const *v)
{
	if (!v[0])
		return;
	vl_buf_printf(o, " %s = [", key);
	for (size_t i = 0; v[i]; i++)
		vl_buf_printf(o, "%s \"%s\"", i ? "," : "", v[i]);
	vl_buf_appends(o, " ];");
}

/* One provider; lines start with lead ("# " for the shipped ones). */
static void print_one(struct vl_buf *o, const struct cfg_provider *p, const char *lead, bool last)
{
	vl_buf_printf(o, "%s  { name = \"%s\";", lead, p->name);
	print_list(o, "domains", p->domains);
	print_list(o, "mx", p->mx);
	if (p->p.max_connections >= 0)
		vl_buf_printf(o, " max_connections = %lld;", (long long)p->p.max_connections);
	if (p->p.max_messages_per_connection >= 0)
		vl_buf_printf(o, " max_messages_per_connection = %lld;",
			      (long long)p->p.max_messages_per_connection);
	if (p->p.max_recipients_per_message >= 0)
		vl_buf_printf(o, " max_recipients_per_message = %lld;",
			      (long long)p->p.max_recipients_per_message);
	if (p->p.rate)
		vl_buf_printf(o, " rate = \"%s\";", p->p.rate);
	if (p->nreplies)
		vl_buf_printf(o, "\n%s    replies = (\n", lead);
	for (size_t k = 0; k < p->nreplies; k++) {
		const struct cfg_reply_rule *r = &p->replies[k];
		vl_buf_printf(o, "%s      { code = \"%s\"; enhanced = \"%s\"; ", lead, r->code,
			      r->enhanced);
		if (*r->text) {
			vl_buf_appends(o, "text = \"");
			for (const char *t = r->text; *t; t++)
				vl_buf_printf(o, "%s%c", *t == '\\' || *t == '"' ? "\\" : "", *t);
			vl_buf_appends(o, "\"; ");
		}
		vl_buf_printf(o, "action = \"%s\";", actions[r->action]);
		if (r->action == CFG_RA_SUSPEND_SOURCE || r->action == CFG_RA_SUSPEND_POOL)
			vl_buf_printf(o, " duration = \"%llus\";",
				      (unsigned long long)(r->duration_ms / 1000));
		vl_buf_printf(o, " }%s\n", k + 1 < p->nreplies ? "," : "");
	}
	if (p->nreplies)
		vl_buf_printf(o, "%s    );", lead);
	vl_buf_printf(o, " }%s\n", last ? "" : ",");
}

/* The user's providers as a list; the shipped ones after them, commented
 * out (they apply without being named: printing them as entries would
 * make a reloaded copy of this output differ). */
void cfg_providers_print(const struct cfg *c, struct vl_buf *o)
{
	size_t nuser = 0;

	while (nuser < c->nproviders && !c->providers[nuser].builtin)
		nuser++;
	if (nuser) {
		vl_buf_appends(o, "providers = (\n");
		for (size_t i = 0; i < nuser; i++)
			print_one(o, &c->providers[i], "", i + 1 == nuser);
		vl_buf_appends(o, ");\n");
	}
	if (nuser < c->nproviders)
		vl_buf_appends(o, "# shipped providers (provider_defaults = true), after the above:\n");
	for (size_t i = nuser; i < c->nproviders; i++)
		print_one(o, &c->providers[i], "# ", i + 1 == c->nproviders);
}
