/* volley-sink's command line and reply rules. */
#include "sink.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const stage_names[SMTPD_ST_COUNT] = {
	[SMTPD_ST_CONNECT] = "connect", [SMTPD_ST_HELO] = "helo",
	[SMTPD_ST_MAIL] = "mail",       [SMTPD_ST_RCPT] = "rcpt",
	[SMTPD_ST_DATA] = "data",       [SMTPD_ST_DOT] = "dot",
	[SMTPD_ST_RSET] = "rset",       [SMTPD_ST_NOOP] = "noop",
	[SMTPD_ST_QUIT] = "quit",       [SMTPD_ST_STARTTLS] = "starttls",
	[SMTPD_ST_VRFY] = "vrfy",
};

int sink_stage_parse(const char *name, enum smtpd_stage *st)
{
	if (strcmp(name, "greeting") == 0) {
		*st = SMTPD_ST_CONNECT;
		return 0;
	}
	if (strcmp(name, "ehlo") == 0) {
		*st = SMTPD_ST_HELO;
		return 0;
	}
	for (int i = 0; i < SMTPD_ST_COUNT; i++) {
		if (strcmp(name, stage_names[i]) == 0) {
			*st = (enum smtpd_stage)i;
			return 0;
		}
	}
	return -1;
}

/* Turn "\n" and "\r" escapes into bytes; "\\" into a backslash. */
static char *unescape(const char *s)
{
	char *out = vl_malloc(strlen(s) + 1), *o = out;

	for (; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			*o++ = *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s == 't' ? '\t' : *s;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

/* "550 5.1.1 text\nmore" -> "550-5.1.1 text\r\n550 more\r\n". A reply needs
 * a 2xx-5xx code; CR, LF (other than the \n separator) and NUL are refused
 * so a rule cannot produce something that is not a reply. */
static int format_reply(struct sink_rule *r, const char *spec, char *err,
			size_t errlen)
{
	if (!(spec[0] >= '2' && spec[0] <= '5' && isdigit((unsigned char)spec[1]) &&
	      isdigit((unsigned char)spec[2]) && (spec[3] == ' ' || spec[3] == '\0'))) {
		snprintf(err, errlen,
			 "reply '%s' must start with a 3-digit code 200-599 "
			 "(or be drop, stall or raw:BYTES)", spec);
		return -1;
	}
	r->code = (spec[0] - '0') * 100 + (spec[1] - '0') * 10 + (spec[2] - '0');
	char *text = unescape(spec[3] ? spec + 4 : "");
	struct vl_buf b;
	vl_buf_init(&b);
	for (char *line = text;;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strchr(line, '\r') || strlen(line) > 500) {
			snprintf(err, errlen, "reply '%s': lines must be at most 500 "
				 "characters without CR", spec);
			free(text);
			vl_buf_free(&b);
			return -1;
		}
		vl_buf_printf(&b, "%d%c%s\r\n", r->code, nl ? '-' : ' ', line);
		if (!nl)
			break;
		line = nl + 1;
	}
	free(text);
	vl_buf_append(&b, "", 1);
	r->reply = b.p;
	return 0;
}

static int rule_parse(struct sink_rule *r, const char *spec, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '=');
	char head[256];

	if (!eq || (size_t)(eq - spec) >= sizeof head) {
		snprintf(err, errlen, "--reply '%s': expected STAGE[:PATTERN]=REPLY", spec);
		return -1;
	}
	memcpy(head, spec, (size_t)(eq - spec));
	head[eq - spec] = '\0';
	char *colon = strchr(head, ':');
	if (colon)
		*colon = '\0';
	if (sink_stage_parse(head, &r->stage) < 0) {
		snprintf(err, errlen, "--reply '%s': unknown stage '%s' (connect, "
			 "greeting, helo, ehlo, mail, rcpt, data, dot, rset, noop, "
			 "quit, starttls, vrfy)", spec, head);
		return -1;
	}
	if (colon && colon[1] && strcmp(colon + 1, "*") != 0)
		r->pattern = vl_strdup(colon + 1);

	const char *val = eq + 1;
	if (strcmp(val, "drop") == 0) {
		r->kind = SINK_RULE_DROP;
	} else if (strcmp(val, "stall") == 0) {
		r->kind = SINK_RULE_STALL;
	} else if (strncmp(val, "raw:", 4) == 0) {
		r->kind = SINK_RULE_RAW;
		r->reply = unescape(val + 4);
	} else {
		r->kind = SINK_RULE_REPLY;
		char msg[512];
		if (format_reply(r, val, msg, sizeof msg) < 0) {
			snprintf(err, errlen, "--reply: %s", msg);
			free(r->pattern);
			r->pattern = NULL;
			return -1;
		}
	}
	return 0;
}

/* "[CLIENT]STAGE[:PATTERN]=REPLY": a rule for the clients whose IP
 * address matches the CLIENT glob only (a provider that throttles one
 * sending address). */
int sink_rule_parse(struct sink_rule *r, const char *spec, char *err,
		    size_t errlen)
{
	char *client = NULL;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end == spec + 1) {
			memset(r, 0, sizeof *r);
			snprintf(err, errlen, "--reply '%s': expected [CLIENT]STAGE[:PATTERN]=REPLY",
				 spec);
			return -1;
		}
		client = vl_strndup(spec + 1, (size_t)(end - spec - 1));
		spec = end + 1;
	}
	memset(r, 0, sizeof *r);
	if (rule_parse(r, spec, err, errlen) < 0) {
		free(client);
		return -1;
	}
	r->client = client;
	return 0;
}

static int parse_fault(struct sink_fault *f, const char *opt, const char *arg,
		       enum smtpd_stage dflt, char *err, size_t errlen)
{
	const char *colon = strchr(arg, ':');
	const char *pct = arg;

	f->stage = dflt;
	if (colon) {
		char stage[32];
		size_t n = (size_t)(colon - arg);
		if (n >= sizeof stage)
			n = sizeof stage - 1;
		memcpy(stage, arg, n);
		stage[n] = '\0';
		if (sink_stage_parse(stage, &f->stage) < 0 || f->stage > SMTPD_ST_DOT) {
			snprintf(err, errlen, "%s '%s': stage must be connect, ehlo, "
				 "mail, rcpt, data or dot", opt, arg);
			return -1;
		}
		pct = colon + 1;
	}
	if (vl_parse_percent(pct, &f->pct) < 0) {
		snprintf(err, errlen, "%s '%s': expected a percentage 0-100 such as 5%%",
			 opt, arg);
		return -1;
	}
	return 0;
}

void sink_usage(FILE *f)
{
	fputs("usage: volley-sink [--listen ADDR:PORT]... [--threads N] [--hostname NAME]\n"
	      "                   [--tls | --implicit-tls] [--cert FILE --key FILE]\n"
	      "                   [--latency DUR] [--timeout DUR]\n"
	      "                   [--reply '[CLIENT]STAGE[:PATTERN]=REPLY']... [--tempfail [STAGE:]PCT]\n"
	      "                   [--permfail [STAGE:]PCT] [--disconnect [STAGE:]PCT] [--seed N]\n"
	      "                   [--max-conns N] [--max-size BYTES] [--max-rcpts N]\n"
	      "                   [--maildir DIR] [--stats-every DUR] [--quiet]\n"
	      "                   [--accept-log FILE [--accept-log-rcpt GLOB]]\n"
	      "                   [--disable EXT[,EXT]...] [--auth USER:PASS] [--requiretls]\n"
	      "                   [--profile gmail|yahoo|microsoft [--profile-conns N]\n"
	      "                    [--profile-rate RATE] [--profile-burst N]\n"
	      "                    [--profile-msgs-per-conn N] [--profile-rcpts N]\n"
	      "                    [--profile-new-defer DUR] [--profile-ramp DUR]\n"
	      "                    [--profile-ramp-start PCT] [--profile-time-scale N]\n"
	      "                    [--profile-rate-stage mail|rcpt|dot] [--profile-max-ips N]]\n"
	      "       volley-sink --help | --version\n"
	      "See docs/sink.md.\n", f);
}

enum {
	O_LISTEN = 256, O_THREADS, O_HOSTNAME, O_TLS, O_CERT, O_KEY, O_LATENCY,
	O_TIMEOUT, O_REPLY, O_TEMPFAIL, O_PERMFAIL, O_DISCONNECT, O_SEED,
	O_MAXCONNS, O_MAXSIZE, O_MAXRCPTS, O_MAILDIR, O_STATS, O_QUIET, O_HELP, O_VERSION,
	O_DISABLE, O_AUTH, O_REQUIRETLS, O_IMPLICIT_TLS, O_ALOG, O_ALOG_RCPT,
	/* --profile and its overrides: prof_opt[opt - O_PROFILE] */
	O_PROFILE, O_P_CONNS, O_P_RATE, O_P_BURST, O_P_MSGS, O_P_RCPTS, O_P_DEFER,
	O_P_RAMP, O_P_RAMP_START, O_P_SCALE, O_P_IPS, O_P_RATE_STAGE, O_P_END
};

_Static_assert(O_P_END - O_PROFILE <= sizeof ((struct sink_conf *)0)->prof_opt /
	       sizeof(char *), "prof_opt holds every --profile-* option");

static const struct option long_opts[] = {
	{"listen", required_argument, NULL, O_LISTEN},
	{"threads", required_argument, NULL, O_THREADS},
	{"hostname", required_argument, NULL, O_HOSTNAME},
	{"tls", no_argument, NULL, O_TLS},
	{"implicit-tls", no_argument, NULL, O_IMPLICIT_TLS},
	{"cert", required_argument, NULL, O_CERT},
	{"key", required_argument, NULL, O_KEY},
	{"latency", required_argument, NULL, O_LATENCY},
	{"timeout", required_argument, NULL, O_TIMEOUT},
	{"reply", required_argument, NULL, O_REPLY},
	{"tempfail", required_argument, NULL, O_TEMPFAIL},
	{"permfail", required_argument, NULL, O_PERMFAIL},
	{"disconnect", required_argument, NULL, O_DISCONNECT},
	{"seed", required_argument, NULL, O_SEED},
	{"max-conns", required_argument, NULL, O_MAXCONNS},
	{"max-size", required_argument, NULL, O_MAXSIZE},
	{"max-rcpts", required_argument, NULL, O_MAXRCPTS},
	{"maildir", required_argument, NULL, O_MAILDIR},
	{"accept-log", required_argument, NULL, O_ALOG},
	{"accept-log-rcpt", required_argument, NULL, O_ALOG_RCPT},
	{"stats-every", required_argument, NULL, O_STATS},
	{"quiet", no_argument, NULL, O_QUIET},
	{"disable", required_argument, NULL, O_DISABLE},
	{"auth", required_argument, NULL, O_AUTH},
	{"requiretls", no_argument, NULL, O_REQUIRETLS},
	{"profile", required_argument, NULL, O_PROFILE},
	{"profile-conns", required_argument, NULL, O_P_CONNS},
	{"profile-rate", required_argument, NULL, O_P_RATE},
	{"profile-burst", required_argument, NULL, O_P_BURST},
	{"profile-msgs-per-conn", required_argument, NULL, O_P_MSGS},
	{"profile-rcpts", required_argument, NULL, O_P_RCPTS},
	{"profile-new-defer", required_argument, NULL, O_P_DEFER},
	{"profile-ramp", required_argument, NULL, O_P_RAMP},
	{"profile-ramp-start", required_argument, NULL, O_P_RAMP_START},
	{"profile-time-scale", required_argument, NULL, O_P_SCALE},
	{"profile-max-ips", required_argument, NULL, O_P_IPS},
	{"profile-rate-stage", required_argument, NULL, O_P_RATE_STAGE},
	{"help", no_argument, NULL, O_HELP},
	{"version", no_argument, NULL, O_VERSION},
	{NULL, 0, NULL, 0},
};

static int bad(char *err, size_t errlen, const char *opt, const char *arg,
	       const char *what)
{
	snprintf(err, errlen, "--%s '%s': %s", opt, arg, what);
	return -1;
}

static int parse_u64_opt(uint64_t *v, const char *opt, const char *arg,
			 uint64_t min, char *err, size_t errlen)
{
	if (vl_parse_u64(arg, v) < 0 || *v < min)
		return bad(err, errlen, opt, arg, min ? "expected a positive integer"
						      : "expected an integer");
	return 0;
}

static int parse_dur_opt(uint64_t *v, const char *opt, const char *arg,
			 char *err, size_t errlen)
{
	if (vl_parse_duration_ms(arg, v) < 0)
		return bad(err, errlen, opt, arg,
			   "expected a duration such as 50ms, 2s, 5m");
	return 0;
}

static void make_smtpd(struct sink_conf *c);

static int add_listen(struct sink_conf *c, const char *arg, char *err,
		      size_t errlen)
{
	if (c->nlisten >= SMTPD_MAX_LISTEN)
		return bad(err, errlen, "listen", arg, "too many listen addresses");
	struct smtpd_listen *l = &c->listen[c->nlisten];
	if (vl_parse_hostport(arg, l->host, sizeof l->host, &l->port) < 0)
		return bad(err, errlen, "listen", arg,
			   "expected ADDR:PORT such as 127.0.0.1:2525 or [::1]:2525");
	c->nlisten++;
	return 0;
}

static int add_rule(struct sink_conf *c, const char *arg, char *err,
		    size_t errlen)
{
	struct sink_rule r;

	if (sink_rule_parse(&r, arg, err, errlen) < 0)
		return -1;
	c->rules = vl_realloc(c->rules, sizeof *c->rules * (size_t)(c->nrules + 1));
	c->rules[c->nrules++] = r;
	return 0;
}

static int parse_disable(struct sink_conf *c, const char *arg, char *err,
			 size_t errlen)
{
	static const struct { const char *name; unsigned bit; } ext[] = {
		{"pipelining", SMTPD_NO_PIPELINING}, {"chunking", SMTPD_NO_CHUNKING},
		{"8bitmime", SMTPD_NO_8BITMIME}, {"smtputf8", SMTPD_NO_SMTPUTF8},
		{"size", SMTPD_NO_SIZE}, {"ehlo", SMTPD_NO_EHLO},
	};
	char list[256];

	snprintf(list, sizeof list, "%s", arg);
	char *save;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t i;
		for (i = 0; i < VL_ARRAY_LEN(ext) && strcasecmp(t, ext[i].name); i++)
			;
		if (i == VL_ARRAY_LEN(ext))
			return bad(err, errlen, "disable", arg, "expected a list of pipelining, "
				   "chunking, 8bitmime, smtputf8, size, ehlo");
		c->disabled |= ext[i].bit;
	}
	return 0;
}

static void conf_defaults(struct sink_conf *c)
{
	memset(c, 0, sizeof *c);
	c->threads = 1;
	snprintf(c->hostname, sizeof c->hostname, "sink.volley.test");
	c->timeout_ms = 300000;
	c->max_size = 52428800;
	c->max_rcpts = 1000;
	c->seed = (uint64_t)vl_now_ns() ^ (uint64_t)time(NULL) << 20;
	c->tempfail.stage = c->permfail.stage = SMTPD_ST_RCPT;
	c->disconnect.stage = SMTPD_ST_DOT;
}

static int conf_option(struct sink_conf *c, int opt, const char *arg, char *err,
		       size_t errlen)
{
	uint64_t v;

	switch (opt) {
	case O_LISTEN: return add_listen(c, arg, err, errlen);
	case O_THREADS:
		if (parse_u64_opt(&v, "threads", arg, 1, err, errlen) < 0)
			return -1;
		if (v > 256)
			return bad(err, errlen, "threads", arg, "at most 256");
		c->threads = (int)v;
		return 0;
	case O_HOSTNAME:
		if (!*arg || strlen(arg) >= 250 || strpbrk(arg, " \r\n\t"))
			return bad(err, errlen, "hostname", arg, "expected a host name");
		snprintf(c->hostname, sizeof c->hostname, "%s", arg);
		return 0;
	case O_TLS: c->tls = true; return 0;
	case O_IMPLICIT_TLS: c->tls = c->implicit_tls = true; return 0;
	case O_CERT: free(c->cert); c->cert = vl_strdup(arg); return 0;
	case O_KEY: free(c->key); c->key = vl_strdup(arg); return 0;
	case O_LATENCY: return parse_dur_opt(&c->latency_ms, "latency", arg, err, errlen);
	case O_TIMEOUT:
		if (parse_dur_opt(&c->timeout_ms, "timeout", arg, err, errlen) < 0)
			return -1;
		if (c->timeout_ms < 100)
			return bad(err, errlen, "timeout", arg, "at least 100ms");
		return 0;
	case O_REPLY: return add_rule(c, arg, err, errlen);
	case O_TEMPFAIL:
		return parse_fault(&c->tempfail, "--tempfail", arg, SMTPD_ST_RCPT, err, errlen);
	case O_PERMFAIL:
		return parse_fault(&c->permfail, "--permfail", arg, SMTPD_ST_RCPT, err, errlen);
	case O_DISCONNECT:
		return parse_fault(&c->disconnect, "--disconnect", arg, SMTPD_ST_DOT, err, errlen);
	case O_SEED: return parse_u64_opt(&c->seed, "seed", arg, 0, err, errlen);
	case O_MAXCONNS: return parse_u64_opt(&c->max_conns, "max-conns", arg, 0, err, errlen);
	case O_MAXSIZE: return parse_u64_opt(&c->max_size, "max-size", arg, 1, err, errlen);
	case O_MAXRCPTS: return parse_u64_opt(&c->max_rcpts, "max-rcpts", arg, 1, err, errlen);
	case O_MAILDIR: free(c->maildir); c->maildir = vl_strdup(arg); return 0;
	case O_ALOG: free(c->accept_log); c->accept_log = vl_strdup(arg); return 0;
	case O_ALOG_RCPT:
		if (!*arg || strlen(arg) > 500)
			return bad(err, errlen, "accept-log-rcpt", arg, "expected a glob such as t*@*");
		free(c->accept_glob);
		c->accept_glob = vl_strdup(arg);
		return 0;
	case O_STATS:
		if (parse_dur_opt(&c->stats_every_ms, "stats-every", arg, err, errlen) < 0)
			return -1;
		if (c->stats_every_ms < 10)
			return bad(err, errlen, "stats-every", arg, "at least 10ms");
		return 0;
	case O_QUIET: c->quiet = true; return 0;
	case O_REQUIRETLS: c->requiretls = true; return 0;
	case O_DISABLE: return parse_disable(c, arg, err, errlen);
	case O_AUTH: {
		const char *colon = strchr(arg, ':');
		if (!colon || colon == arg || strlen(arg) > 500)
			return bad(err, errlen, "auth", arg, "expected USER:PASS");
		free(c->auth_user);
		free(c->auth_pass);
		c->auth_user = vl_strndup(arg, (size_t)(colon - arg));
		c->auth_pass = vl_strdup(colon + 1);
		return 0;
	}
	default:
		if (opt >= O_PROFILE && opt < O_P_END) {
			c->prof_opt[opt - O_PROFILE] = arg;
			return 0;
		}
		snprintf(err, errlen, "unknown option (see --help)");
		return -1;
	}
}

/* An integer override in [min, max], when given. */
static int prof_u32(const char *opt, const char *arg, uint64_t min, uint64_t max,
		    uint32_t *out, char *err, size_t errlen)
{
	uint64_t v;

	if (!arg)
		return 0;
	if (parse_u64_opt(&v, opt, arg, min, err, errlen) < 0)
		return -1;
	if (v > max)
		return bad(err, errlen, opt, arg, "too large");
	*out = (uint32_t)v;
	return 0;
}

static int prof_dur(const char *opt, const char *arg, uint64_t *out, char *err,
		    size_t errlen)
{
	return arg ? parse_dur_opt(out, opt, arg, err, errlen) : 0;
}

/* --profile NAME, then its overrides, then the time scale. */
static int apply_profile(struct sink_conf *c, char *err, size_t errlen)
{
	const char *const *o = c->prof_opt;
	const struct sink_profile *base;
	struct sink_profile *p = &c->profile;
	uint64_t scale = 1;

	if (!o[0]) {
		for (int i = 1; i < O_P_END - O_PROFILE; i++)
			if (o[i]) {
				snprintf(err, errlen, "--profile-* options need --profile");
				return -1;
			}
		return 0;
	}
	if (!(base = sink_prof_find(o[0])))
		return bad(err, errlen, "profile", o[0], "expected gmail, yahoo or microsoft");
	c->has_profile = true;
	*p = *base;
	c->profile_ips = SINK_PROF_IPS_DEFAULT;
	if (prof_u32("profile-conns", o[O_P_CONNS - O_PROFILE], 0, 1000000, &p->max_conns,
		     err, errlen) < 0 ||
	    prof_u32("profile-msgs-per-conn", o[O_P_MSGS - O_PROFILE], 0, 1000000000,
		     &p->msgs_per_conn, err, errlen) < 0 ||
	    prof_u32("profile-rcpts", o[O_P_RCPTS - O_PROFILE], 0, 1000000, &p->rcpts_per_msg,
		     err, errlen) < 0 ||
	    prof_u32("profile-max-ips", o[O_P_IPS - O_PROFILE], 1, 1 << 20, &c->profile_ips,
		     err, errlen) < 0 ||
	    prof_dur("profile-new-defer", o[O_P_DEFER - O_PROFILE], &p->new_defer_ms,
		     err, errlen) < 0 ||
	    prof_dur("profile-ramp", o[O_P_RAMP - O_PROFILE], &p->ramp_ms, err, errlen) < 0)
		return -1;
	const char *a;
	if ((a = o[O_P_RATE - O_PROFILE])) {
		if (!strcmp(a, "0"))
			p->rate = 0;
		else if (vl_parse_rate(a, &p->rate) < 0)
			return bad(err, errlen, "profile-rate", a,
				   "expected a rate such as 50/s, 300/min, 0 (no limit)");
	}
	if ((a = o[O_P_BURST - O_PROFILE])) {
		uint32_t b;
		if (prof_u32("profile-burst", a, 1, 1000000, &b, err, errlen) < 0)
			return -1;
		p->burst = b;
	}
	if ((a = o[O_P_RAMP_START - O_PROFILE])) {
		double pct;
		if (vl_parse_percent(a, &pct) < 0 || pct <= 0)
			return bad(err, errlen, "profile-ramp-start", a,
				   "expected a share above 0 such as 10%");
		p->ramp_start = pct / 100;
	}
	if ((a = o[O_P_RATE_STAGE - O_PROFILE]) &&
	    (sink_stage_parse(a, &p->rate_stage) < 0 ||
	     (p->rate_stage != SMTPD_ST_MAIL && p->rate_stage != SMTPD_ST_RCPT &&
	      p->rate_stage != SMTPD_ST_DOT)))
		return bad(err, errlen, "profile-rate-stage", a, "expected mail, rcpt or dot");
	if (o[O_P_SCALE - O_PROFILE] &&
	    parse_u64_opt(&scale, "profile-time-scale", o[O_P_SCALE - O_PROFILE], 1,
			  err, errlen) < 0)
		return -1;
	c->time_scale = (double)scale;
	p->new_defer_ms /= scale;
	p->ramp_ms /= scale;
	memset(c->prof_opt, 0, sizeof c->prof_opt); /* argv's: not kept */
	return 0;
}

int sink_conf_parse(struct sink_conf *c, int argc, char **argv, char *err,
		    size_t errlen)
{
	int opt;

	conf_defaults(c);
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		if (opt == O_HELP) {
			sink_usage(stdout);
			return 1;
		}
		if (opt == O_VERSION) {
			printf("volley-sink %s\n", VL_VERSION);
			return 1;
		}
		if (opt == '?' || opt == ':') {
			/* getopt sets optopt to a known option that lacked
			 * its value, and to 0 for an unknown one. */
			snprintf(err, errlen, "%s: '%s'", optopt ? "option needs a value"
				 : "unknown option", argv[optind - 1]);
			return -1;
		}
		if (conf_option(c, opt, optarg, err, errlen) < 0)
			return -1;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (c->nlisten == 0)
		add_listen(c, "127.0.0.1:2525", err, errlen);
	if (!!c->cert != !!c->key) {
		snprintf(err, errlen, "--cert and --key go together");
		return -1;
	}
	if ((c->cert) && !c->tls)
		c->tls = true;
	if (c->accept_glob && !c->accept_log) {
		snprintf(err, errlen, "--accept-log-rcpt needs --accept-log");
		return -1;
	}
	if (c->requiretls && !c->tls) {
		/* offered only inside TLS (RFC 8689 4.1): without it, never */
		snprintf(err, errlen, "--requiretls needs --tls (or --cert/--key)");
		return -1;
	}
	for (int i = 0; i < c->nlisten; i++)
		c->listen[i].implicit_tls = c->implicit_tls;
	if (apply_profile(c, err, errlen) < 0)
		return -1;
	make_smtpd(c);
	return 0;
}

/* What the server itself needs to know. */
static void make_smtpd(struct sink_conf *c)
{
	struct smtpd_conf *d = &c->smtpd;

	memset(d, 0, sizeof *d);
	memcpy(d->listen, c->listen, sizeof d->listen);
	d->nlisten = c->nlisten;
	snprintf(d->hostname, sizeof d->hostname, "%s", c->hostname);
	d->banner = "volley-sink";
	d->starttls = c->tls && !c->implicit_tls;
	d->auth = c->auth_user != NULL;
	d->requiretls = c->requiretls;
	d->keep_message = c->maildir != NULL;
	d->disabled = c->disabled;
	d->max_size = c->max_size;
	d->max_rcpts = c->max_rcpts;
	d->max_conns = c->max_conns;
	d->timeout_ms = c->timeout_ms;
	d->latency_ms = c->latency_ms;
}

void sink_conf_free(struct sink_conf *c)
{
	for (int i = 0; i < c->nrules; i++) {
		free(c->rules[i].pattern);
		free(c->rules[i].client);
		free(c->rules[i].reply);
	}
	free(c->rules);
	free(c->cert);
	free(c->key);
	free(c->maildir);
	free(c->accept_log);
	free(c->accept_glob);
	free(c->auth_user);
	free(c->auth_pass);
	memset(c, 0, sizeof *c);
}

static const char *const stat_names[] = {
	"conns_open", "conns_total", "conns_refused", "messages", "recipients",
	"bytes", "tls_sessions", "replies_4xx", "replies_5xx", "drops",
	"timeouts", "errors", "auth_ok", "auth_failed",
};

/* The counters are laid out as consecutive atomics in the order above. */
_Static_assert(sizeof(struct smtpd_stats) == sizeof(_Atomic uint64_t) * 14,
	       "stat_names must match struct smtpd_stats");

void sink_stats_json(const struct smtpd_stats *sum, const struct sink_conf *c,
		     struct sink_prof_shared *prof, struct sink_alog *alog,
		     struct vl_buf *out)
{
	const _Atomic uint64_t *v = (const _Atomic uint64_t *)sum;

	vl_buf_printf(out, "{\"time\": %.3f", vl_wall_time());
	for (size_t f = 0; f < VL_ARRAY_LEN(stat_names); f++)
		vl_buf_printf(out, ", \"%s\": %llu", stat_names[f],
			      (unsigned long long)atomic_load_explicit(&v[f],
							memory_order_relaxed));
	if (alog)
		vl_buf_printf(out, ", \"accept_logged\": %llu",
			      (unsigned long long)atomic_load(&alog->n));
	if (prof) {
		vl_buf_appends(out, ", ");
		pthread_mutex_lock(&prof->mu);
		sink_prof_json(&c->profile, &prof->t, vl_now_ms(), out);
		pthread_mutex_unlock(&prof->mu);
	}
	vl_buf_appends(out, "}\n");
}
