/*
 * Scenario files: libconfig, one setting a line (bench/scenarios/NAME.conf).
 * Unknown settings are errors, so a typo cannot silently bench the default.
 */
#include "vbench.h"

#include <libconfig.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const known[] = {
	"recipients", "domains", "message_size", "personalised", "tls", "dkim",
	"latency", "tempfail", "permfail", "disconnect", "sessions", "sink_addresses",
	"sink_threads", "transactional", "submit_rate", "peer_max", "peer_sessions",
	"timeout", "target_postfix", "target_nodemailer", "target_blast", "target_latency",
	"dane", "target_dane", "submission", "submit_clients", "per_conn", "submit_tls",
	"password_hash", "egress_sources", "profiles", "profile_options", "volleyd_conf",
	"rcpts_per_message", "target_shared", "peer_rcpts_per_message", "personalised_body",
	"openssl_seconds", "target_openssl", "base_sessions", "target_session_kb", "mixed",
	"mixed_max", "target_p99_ms", "target_mixed", "haraka_max", "cluster_nodes", "site_rate",
	"target_cluster", "target_redis_ops", NULL
};

static void defaults(struct vb_scen *sc)
{
	memset(sc, 0, sizeof *sc);
	sc->recipients = 10000;
	sc->domains = 100;
	sc->msg_size = 4000;   /* "4KB" */
	sc->personalised = true;
	sc->tls = true;
	sc->sessions = 100;
	sc->sink_addrs = 1;
	sc->sink_threads = 1;
	sc->peer_max = 100000;
	sc->peer_sessions = 50;
	sc->timeout_s = 600;
	sc->submit_clients = 50;
	sc->per_conn = 20;
	sc->rcpts_per_message = 100;   /* volleyd's default */
	sc->peer_rcpts = 1;
	sc->mixed_max = 100000;
	sc->haraka_max = 8000;    /* about a minute at Haraka's 100-160 msg/s */
	snprintf(sc->submit_tls, sizeof sc->submit_tls, "starttls");
	snprintf(sc->password_hash, sizeof sc->password_hash, "yescrypt");
}

static int err(const struct vb_scen *sc, const char *key, const char *why)
{
	fprintf(stderr, "volley-bench: %s: %s: %s\n", sc->path, key, why);
	return -1;
}

static int get_long(config_t *cf, struct vb_scen *sc, const char *key, long *v, long min,
		    long max)
{
	config_setting_t *s = config_lookup(cf, key);
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
		return err(sc, key, "must be a whole number");
	long long x = config_setting_get_int64(s);
	if (x < min || x > max) {
		char why[96];
		snprintf(why, sizeof why, "must be from %ld to %ld", min, max);
		return err(sc, key, why);
	}
	*v = (long)x;
	return 0;
}

static int get_bool(config_t *cf, struct vb_scen *sc, const char *key, bool *v)
{
	config_setting_t *s = config_lookup(cf, key);
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return err(sc, key, "must be true or false");
	*v = config_setting_get_bool(s);
	return 0;
}

static const char *get_str(config_t *cf, struct vb_scen *sc, const char *key, int *rc)
{
	config_setting_t *s = config_lookup(cf, key);
	if (!s)
		return NULL;
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		*rc = err(sc, key, "must be a string");
		return NULL;
	}
	return config_setting_get_string(s);
}

static int get_ratio(config_t *cf, struct vb_scen *sc, const char *key, double *v)
{
	config_setting_t *s = config_lookup(cf, key);
	if (!s)
		return 0;
	int t = config_setting_type(s);
	double x = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
		   : t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 ? (double)config_setting_get_int64(s)
		   : -1;
	if (x <= 0 || x > 1e6)
		return err(sc, key, "a positive ratio, like 20.0 or 0.5");
	*v = x;
	return 0;
}

/* personalised_body: as personalised unless given. */
static int get_body(config_t *cf, struct vb_scen *sc)
{
	sc->personalised_body = sc->personalised;
	return get_bool(cf, sc, "personalised_body", &sc->personalised_body);
}

static int parse_strings(config_t *cf, struct vb_scen *sc)
{
	int rc = 0;
	const char *v;
	uint64_t u;

	if ((v = get_str(cf, sc, "message_size", &rc))) {
		if (vl_parse_size(v, &u) < 0 || u < 512 || u > 10 << 20)
			return err(sc, "message_size", "a size from 512 to 10MB, like \"4KB\"");
		sc->msg_size = (long)u;
	}
	if ((v = get_str(cf, sc, "latency", &rc))) {
		if (vl_parse_duration_ms(v, &u) < 0 || u > 60000)
			return err(sc, "latency", "a duration up to 60s, like \"50ms\"");
		sc->latency_ms = (long)u;
	}
	if ((v = get_str(cf, sc, "timeout", &rc))) {
		if (vl_parse_duration_ms(v, &u) < 0 || u < 1000)
			return err(sc, "timeout", "a duration of at least 1s, like \"10m\"");
		sc->timeout_s = (long)(u / 1000);
	}
	struct { const char *key; double *v; } pct[] = {
		{ "tempfail", &sc->tempfail }, { "permfail", &sc->permfail },
		{ "disconnect", &sc->disconnect },
	};
	for (size_t i = 0; i < sizeof pct / sizeof *pct; i++)
		if ((v = get_str(cf, sc, pct[i].key, &rc)) &&
		    (vl_parse_percent(v, pct[i].v) < 0 || *pct[i].v > 50))
			return err(sc, pct[i].key, "a percentage up to 50%, like \"5%\"");
	if ((v = get_str(cf, sc, "dkim", &rc))) {
		if (strcmp(v, "") && strcmp(v, "ed25519") && strcmp(v, "rsa"))
			return err(sc, "dkim", "\"\", \"ed25519\" or \"rsa\"");
		snprintf(sc->dkim, sizeof sc->dkim, "%s", v);
	}
	if ((v = get_str(cf, sc, "submit_tls", &rc))) {
		if (strcmp(v, "starttls") && strcmp(v, "implicit"))
			return err(sc, "submit_tls", "\"starttls\" (port 587) or \"implicit\" (465)");
		snprintf(sc->submit_tls, sizeof sc->submit_tls, "%s", v);
	}
	if ((v = get_str(cf, sc, "site_rate", &rc)) &&
	    (vl_parse_rate(v, &sc->site_rate) < 0 || sc->site_rate > 1e7))
		return err(sc, "site_rate", "a rate up to 10000000/s, like \"1000000/s\"");
	if ((v = get_str(cf, sc, "password_hash", &rc))) {
		if (strcmp(v, "yescrypt") && strcmp(v, "sha512crypt"))
			return err(sc, "password_hash", "\"yescrypt\" or \"sha512crypt\"");
		snprintf(sc->password_hash, sizeof sc->password_hash, "%s", v);
	}
	return rc;
}

/* profiles = [ "gmail", ... ]: known, each once. */
static int parse_profiles(config_t *cf, struct vb_scen *sc)
{
	config_setting_t *s = config_lookup(cf, "profiles");
	if (!s)
		return 0;
	int n = config_setting_type(s) == CONFIG_TYPE_ARRAY ? config_setting_length(s) : -1;
	if (n < 1 || n > VB_MAX_PROFILES)
		return err(sc, "profiles", "a list of one to three of \"gmail\", \"yahoo\", "
			   "\"microsoft\"");
	for (int i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (!v || !vb_prof_known(v))
			return err(sc, "profiles", "each one of \"gmail\", \"yahoo\", \"microsoft\"");
		for (int j = 0; j < i; j++)
			if (!strcmp(sc->profiles[j], v))
				return err(sc, "profiles", "names a profile twice");
		snprintf(sc->profiles[i], sizeof sc->profiles[i], "%s", v);
	}
	sc->nprofiles = n;
	return 0;
}

/* profile_options (the sinks'), volleyd_conf (beside the scenario file). */
static int parse_prov_strings(config_t *cf, struct vb_scen *sc)
{
	int rc = 0;
	const char *v;
	if ((v = get_str(cf, sc, "profile_options", &rc))) {
		if (strlen(v) >= sizeof sc->profile_opts)
			return err(sc, "profile_options", "too long");
		snprintf(sc->profile_opts, sizeof sc->profile_opts, "%s", v);
	}
	if ((v = get_str(cf, sc, "volleyd_conf", &rc))) {
		const char *slash = strrchr(sc->path, '/');
		int dl = slash ? (int)(slash - sc->path) + 1 : 0;
		if (v[0] == '/')
			dl = 0;
		if ((size_t)dl + strlen(v) >= sizeof sc->volleyd_conf)
			return err(sc, "volleyd_conf", "path too long");
		snprintf(sc->volleyd_conf, sizeof sc->volleyd_conf, "%.*s%s", dl, sc->path, v);
		if (access(sc->volleyd_conf, R_OK) < 0)
			return err(sc, "volleyd_conf", "no such readable file");
	}
	if (rc == 0 && sc->nprofiles && !sc->volleyd_conf[0])
		return err(sc, "profiles", "needs volleyd_conf: volleyd's domains for the sinks");
	if (rc == 0 && sc->nprofiles && (sc->dane || sc->submission || sc->transactional))
		return err(sc, "profiles", "goes without dane, submission and transactional");
	return rc;
}

static int parse(config_t *cf, struct vb_scen *sc)
{
	config_setting_t *root = config_root_setting(cf);
	for (int i = 0; i < config_setting_length(root); i++) {
		const char *k = config_setting_name(config_setting_get_elem(root, i));
		size_t j = 0;
		while (known[j] && strcmp(known[j], k))
			j++;
		if (!known[j])
			return err(sc, k, "unknown setting");
	}
	long addrs = sc->sink_addrs, threads = sc->sink_threads, egress = 0, nodes = 0;
	if (get_long(cf, sc, "recipients", &sc->recipients, 1, 100000000) < 0 ||
	    get_long(cf, sc, "domains", &sc->domains, 1, 1000000) < 0 ||
	    get_long(cf, sc, "sessions", &sc->sessions, 1, 100000) < 0 ||
	    get_long(cf, sc, "sink_addresses", &addrs, 1, VB_MAX_ADDRS) < 0 ||
	    get_long(cf, sc, "sink_threads", &threads, 1, 64) < 0 ||
	    get_long(cf, sc, "egress_sources", &egress, 0, 16) < 0 ||
	    get_long(cf, sc, "submit_rate", &sc->submit_rate, 0, 1000000) < 0 ||
	    get_long(cf, sc, "peer_max", &sc->peer_max, 1, 100000000) < 0 ||
	    get_long(cf, sc, "peer_sessions", &sc->peer_sessions, 1, 100000) < 0 ||
	    get_bool(cf, sc, "personalised", &sc->personalised) < 0 ||
	    get_body(cf, sc) < 0 ||
	    get_long(cf, sc, "openssl_seconds", &sc->openssl_seconds, 0, 600) < 0 ||
	    get_ratio(cf, sc, "target_openssl", &sc->target_openssl) < 0 ||
	    get_bool(cf, sc, "tls", &sc->tls) < 0 ||
	    get_bool(cf, sc, "transactional", &sc->transactional) < 0 || parse_strings(cf, sc) < 0 ||
	    get_bool(cf, sc, "dane", &sc->dane) < 0 ||
	    get_bool(cf, sc, "submission", &sc->submission) < 0 ||
	    get_long(cf, sc, "submit_clients", &sc->submit_clients, 1, 10000) < 0 ||
	    get_long(cf, sc, "per_conn", &sc->per_conn, 1, 100000000) < 0 ||
	    get_ratio(cf, sc, "target_dane", &sc->target_dane) < 0 ||
	    get_long(cf, sc, "rcpts_per_message", &sc->rcpts_per_message, 1, 1000) < 0 ||
	    get_ratio(cf, sc, "target_shared", &sc->target_shared) < 0 ||
	    get_long(cf, sc, "peer_rcpts_per_message", &sc->peer_rcpts, 1, 100) < 0 ||
	    get_ratio(cf, sc, "target_postfix", &sc->target_postfix) < 0 ||
	    get_ratio(cf, sc, "target_nodemailer", &sc->target_nodemailer) < 0 ||
	    get_ratio(cf, sc, "target_blast", &sc->target_blast) < 0 ||
	    get_ratio(cf, sc, "target_latency", &sc->target_latency) < 0 ||
	    get_long(cf, sc, "base_sessions", &sc->base_sessions, 1, 100000) < 0 ||
	    get_ratio(cf, sc, "target_session_kb", &sc->target_session_kb) < 0 ||
	    get_bool(cf, sc, "mixed", &sc->mixed) < 0 ||
	    get_long(cf, sc, "mixed_max", &sc->mixed_max, 1, 10000000) < 0 ||
	    get_ratio(cf, sc, "target_p99_ms", &sc->target_p99_ms) < 0 ||
	    get_ratio(cf, sc, "target_mixed", &sc->target_mixed) < 0 ||
	    get_long(cf, sc, "haraka_max", &sc->haraka_max, 1, 100000000) < 0 ||
	    get_ratio(cf, sc, "target_cluster", &sc->target_cluster) < 0 ||
	    get_ratio(cf, sc, "target_redis_ops", &sc->target_redis_ops) < 0 ||
	    get_long(cf, sc, "cluster_nodes", &nodes, 0, 8) < 0 ||
	    parse_profiles(cf, sc) < 0 || parse_prov_strings(cf, sc) < 0)
		return -1;
	sc->cluster_nodes = (int)nodes;
	sc->sink_addrs = (int)addrs;
	sc->sink_threads = (int)threads;
	sc->egress = (int)egress;
	if (sc->sessions < sc->sink_addrs)
		return err(sc, "sessions", "at least one per sink address");
	if (sc->dane && !sc->tls)
		return err(sc, "dane", "needs tls = true");
	if ((sc->openssl_seconds || sc->target_openssl > 0) && !sc->dkim[0])
		return err(sc, sc->target_openssl > 0 ? "target_openssl" : "openssl_seconds",
			   "needs dkim: the yardstick is openssl speed for its key");
	if (sc->target_openssl > 0 && !sc->openssl_seconds)
		return err(sc, "target_openssl", "needs openssl_seconds (1-600)");
	if (sc->personalised_body && !sc->personalised)
		return err(sc, "personalised_body", "needs personalised = true");
	if (sc->target_session_kb > 0 && !sc->base_sessions)
		return err(sc, "target_session_kb", "needs base_sessions");
	/* a message rendered once for several: the same for all */
	if (sc->peer_rcpts > 1 && (sc->personalised || sc->transactional || sc->submission))
		return err(sc, "peer_rcpts_per_message", "needs personalised = false, without "
			   "transactional or submission");
	/* The bulk job through one upload and a stream of transactional
	 * ones through the API beside it; every message delivered. */
	if (sc->mixed && (sc->transactional || sc->submission || sc->dane || sc->nprofiles ||
			  sc->peer_rcpts > 1 || sc->tempfail > 0 || sc->permfail > 0 ||
			  sc->disconnect > 0))
		return err(sc, "mixed", "goes without transactional, submission, dane, profiles, "
			   "peer_rcpts_per_message and faults");
	if (sc->mixed && sc->submit_rate < 1)
		return err(sc, "mixed", "needs submit_rate: the transactional jobs a second");
	if (sc->cluster_nodes && (sc->cluster_nodes < 2 || !sc->egress || sc->mixed ||
				  sc->transactional || sc->submission || sc->dane || sc->nprofiles ||
				  sc->base_sessions || sc->target_shared > 0))
		return err(sc, "cluster_nodes", "2 to 8, with egress_sources (each node's own "
			   "addresses), without mixed, transactional, submission, dane, profiles, "
			   "base_sessions and target_shared");
	if (sc->cluster_nodes * sc->egress > 16)
		return err(sc, "cluster_nodes", "times egress_sources at most 16 addresses");
	if ((sc->target_cluster > 0 || sc->target_redis_ops > 0) && !sc->cluster_nodes)
		return err(sc, sc->target_cluster > 0 ? "target_cluster" : "target_redis_ops",
			   "needs cluster_nodes");
	/* An MX record a domain in the signed zone. */
	if (sc->dane && sc->domains > 100000)
		return err(sc, "domains", "at most 100000 with dane");
	/* Submitted mail goes to one domain (volley-submit's --to-domain). */
	if (sc->submission && (sc->dane || sc->transactional || sc->dkim[0] || sc->sink_addrs > 1))
		return err(sc, "submission", "goes without dane, transactional, dkim and more "
			   "than one sink address");
	return 0;
}

/* A path, or a file of that name here (not a folder: the source tree
 * has one called cluster/), or a name in bench/scenarios/. */
static void resolve_path(const char *arg, const char *src_dir, struct vb_scen *sc)
{
	struct stat st;
	if (strchr(arg, '/') || (stat(arg, &st) == 0 && S_ISREG(st.st_mode)))
		snprintf(sc->path, sizeof sc->path, "%s", arg);
	else
		snprintf(sc->path, sizeof sc->path, "%s/bench/scenarios/%s.conf", src_dir, arg);
	const char *base = strrchr(sc->path, '/');
	base = base ? base + 1 : sc->path;
	snprintf(sc->name, sizeof sc->name, "%.*s", (int)strcspn(base, "."), base);
}

int vb_scen_load(const char *arg, const char *src_dir, struct vb_scen *sc)
{
	config_t cf;
	int rc = -1;

	defaults(sc);
	resolve_path(arg, src_dir, sc);
	if (access(sc->path, R_OK) < 0) {
		fprintf(stderr, "volley-bench: no scenario %s (%s); see bench/scenarios/\n", arg,
			sc->path);
		return -1;
	}
	config_init(&cf);
	if (!config_read_file(&cf, sc->path))
		fprintf(stderr, "volley-bench: %s:%d: %s\n", sc->path, config_error_line(&cf),
			config_error_text(&cf));
	else
		rc = parse(&cf, sc);
	config_destroy(&cf);
	return rc;
}
