/*
 * Job intake: a submitted job is validated field by field, its content
 * composed once, and its recipients checked and appended to the spool as
 * they stream in. Nothing is visible until sched_intake_commit() has
 * fsync'd the whole job; any error leaves nothing behind.
 *
 * application/json holds the whole job (bounded by api.max_body);
 * application/x-ndjson is the job on line 1, then a recipient a line,
 * handled a line at a time so a million recipients need no DOM.
 */
#include "api_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../message/message.h"

#define RCPT_LINE_MAX (1u << 20)  /* one NDJSON recipient line */
#define REPORT_MAX 100            /* failed_recipients / errors listed */
#define NAME_MAX_LEN 512
#define SUBKEY_MAX 128
#define SPACE_CHECK 65536         /* recipients between free-space checks */

struct api_intake {
	const struct cfg *cfg;
	struct sched_spool *spool;
	bool ndjson;
	char *idem;
	char id[SCHED_ID_LEN + 1];
	struct api_error err;
	bool failed, committed;
	struct vl_buf buf;        /* JSON: the body; NDJSON: a partial line */
	struct vl_buf scratch;    /* the fast parser's unescaped strings */
	size_t bytes, line;
	json_t *job;              /* validated, without recipients */
	struct msg_job *msg;
	struct sched_intake *si;
	size_t seen, dups;
	json_t *failed_rcpts, *errors;
	bool skip_invalid;        /* on_invalid "skip": keep the valid ones */
	size_t nbad;              /* invalid recipients */
	json_t *bad;              /* the first REPORT_MAX of them, as objects */
	struct api_error first;   /* the first one's error */
	const char *cur_email;    /* the recipient being checked, if known */
	json_t *warnings;         /* fields accepted but ignored */
	bool warned_metadata;
	double created;
	struct sched_rcpt sr;
	/* numbers and booleans as text, made when a recipient has one: 16 KB
	 * in the struct made it a large allocation, which jemalloc zeroes or
	 * recycles with madvise (a TLB shootdown on every core) each request */
	char (*nums)[MSG_SUB_TMP];
};

/* A JSON string of text that may quote a client's bytes (a parser's
 * "near '...'" can cut a UTF-8 sequence): octets that do not make UTF-8
 * become '?', so an error answer is never lost to its own text. */
static json_t *text_json(const char *t)
{
	json_t *j = json_string(t);

	if (j)
		return j;
	char *c = vl_strdup(t);
	for (char *p = c; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(c);
	free(c);
	return j;
}

json_t *api_error_json(const struct api_error *e)
{
	json_t *j = json_pack("{s:{s:s, s:o, s:o}}", "error", "code", e->code,
			      "message", text_json(e->message),
			      "field", *e->field ? text_json(e->field) : json_null());
	/* the list was dumped from what intake parsed, NULs included */
	json_t *list = e->ninvalid ? json_loads(e->invalid, JSON_ALLOW_NUL, NULL) : NULL;

	if (list) {
		json_t *o = json_object_get(j, "error");
		json_object_set_new(o, "invalid_count", json_integer((json_int_t)e->ninvalid));
		json_object_set_new(o, "invalid_recipients", list);
	}
	return j;
}

static int fail(struct api_intake *in, int status, const char *code,
		const char *field, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int fail(struct api_intake *in, int status, const char *code,
		const char *field, const char *fmt, ...)
{
	va_list ap;
	char msg[sizeof in->err.message - 40];

	if (in->failed)
		return -1;
	in->failed = true;
	in->err.status = status;
	snprintf(in->err.code, sizeof in->err.code, "%s", code);
	snprintf(in->err.field, sizeof in->err.field, "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (in->ndjson && in->line)
		snprintf(in->err.message, sizeof in->err.message, "line %zu: %s", in->line, msg);
	else
		snprintf(in->err.message, sizeof in->err.message, "%s", msg);
	return -1;
}

/* Each thread keeps the last intake it freed for its next request: the
 * struct is about 42 KB (two errors' texts, the recipient scratch), a
 * large allocation, which jemalloc hands back zeroed by madvise: a TLB
 * shootdown on every core (a VM exit each, virtualised) per request. */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_init(void)
{
	pthread_key_create(&spare_key, free);
}

static struct api_intake *intake_alloc(void)
{
	pthread_once(&spare_once, spare_init);
	struct api_intake *in = pthread_getspecific(spare_key);
	if (!in)
		return vl_calloc(1, sizeof *in);
	pthread_setspecific(spare_key, NULL);
	memset(in, 0, sizeof *in);
	return in;
}

static void intake_release(struct api_intake *in)
{
	pthread_once(&spare_once, spare_init);
	if (pthread_getspecific(spare_key) || pthread_setspecific(spare_key, in) != 0)
		free(in);
}

struct api_intake *api_intake_new(const struct cfg *c, struct sched_spool *spool,
				  bool ndjson, const char *idempotency_key)
{
	struct api_intake *in = intake_alloc();

	in->cfg = c;
	in->spool = spool;
	in->ndjson = ndjson;
	in->idem = idempotency_key ? vl_strdup(idempotency_key) : NULL;
	vl_buf_init(&in->buf);
	vl_buf_init(&in->scratch);
	in->failed_rcpts = json_array();
	in->errors = json_array();
	in->bad = json_array();
	in->warnings = json_array();
	in->created = vl_wall_time();
	sched_new_id(in->id);
	return in;
}

/* ---- the job object ---- */

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: case JSON_REAL: return "a number";
	case JSON_TRUE: case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static int want(struct api_intake *in, const json_t *v, json_type t,
		const char *field, const char *what)
{
	bool ok = json_typeof(v) == t || (t == JSON_TRUE && json_is_boolean(v));

	if (ok)
		return 0;
	return fail(in, 400, "wrong_type", field, "%s must be %s, not %s", field, what,
		    type_name(v));
}

/* A short text that goes into headers or logs: no control characters. */
static int check_text(struct api_intake *in, const json_t *v, const char *field,
		      size_t max)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);

	if (want(in, v, JSON_STRING, field, "a string") < 0)
		return -1;
	if (n > max)
		return fail(in, 400, "invalid_field", field, "%s is longer than %zu octets",
			    field, max);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return fail(in, 400, "invalid_field", field,
				    "%s holds a control character (CR, LF, NUL, ...)", field);
	return 0;
}

static int check_address(struct api_intake *in, const json_t *v, const char *field)
{
	char why[160];
	bool utf8;

	if (want(in, v, JSON_STRING, field, "a string") < 0)
		return -1;
	if (msg_addr_check(json_string_value(v), json_string_length(v), &utf8, why,
			   sizeof why) < 0)
		return fail(in, 400, "invalid_address", field, "%s: %s", field, why);
	return 0;
}

static int check_subs(struct api_intake *in, const json_t *subs, const char *field)
{
	const char *k;
	json_t *v;

	if (want(in, subs, JSON_OBJECT, field, "an object") < 0)
		return -1;
	if (json_object_size(subs) > SCHED_MAX_SUBS)
		return fail(in, 400, "invalid_field", field, "%s has more than %d entries",
			    field, SCHED_MAX_SUBS);
	json_object_foreach((json_t *)subs, k, v) {
		if (json_is_string(v) || json_is_number(v) || json_is_boolean(v))
			continue;
		char path[300];
		snprintf(path, sizeof path, "%s.%s", field, k);
		return fail(in, 400, "wrong_type", path,
			    "%s must be a string, number or boolean, not %s", path,
			    type_name(v));
	}
	return 0;
}

static int check_duration(struct api_intake *in, const json_t *v, const char *field)
{
	uint64_t ms;

	if (want(in, v, JSON_STRING, field, "a string such as \"48h\"") < 0)
		return -1;
	if (vl_parse_duration_ms(json_string_value(v), &ms) < 0 || ms < 60000 ||
	    ms > 30 * 86400000ull)
		return fail(in, 400, "invalid_field", field,
			    "%s must be a duration from \"1m\" to \"30d\"", field);
	return 0;
}

static void warn(struct api_intake *in, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void warn(struct api_intake *in, const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_array_append_new(in->warnings, json_string(msg));
}

/* Fields of KumoMTA's injection API that have no volley meaning: accepted
 * (when of the right type) and named in the answer's warnings. Their
 * defaults, and template_dialect "Jinja" (volley's {{ name }} is its
 * subset), are what volley does anyway: no warning. */
static int kumo_field(struct api_intake *in, const char *k, json_t *v)
{
	if (!strcmp(k, "deferred_generation") || !strcmp(k, "deferred_spool")) {
		if (want(in, v, JSON_TRUE, k, "a boolean") < 0)
			return -1;
		if (json_is_true(v))
			warn(in, "%s: ignored: volley stores every job whole and durably before "
			     "answering, and generates each message when it is sent", k);
		return 0;
	}
	if (!strcmp(k, "template_dialect")) {
		if (want(in, v, JSON_STRING, k, "a string") < 0)
			return -1;
		if (strcmp(json_string_value(v), "Jinja"))
			warn(in, "template_dialect: \"%s\" ignored: volley substitutes "
			     "{{ name }} variables only", json_string_value(v));
		return 0;
	}
	if (!strcmp(k, "trace_headers")) {
		if (want(in, v, JSON_OBJECT, k, "an object") < 0)
			return -1;
		warn(in, "trace_headers: ignored: volley adds no Received or X-KumoRef header");
		return 0;
	}
	return fail(in, 400, "unknown_field", k, "unknown field \"%s\"", k);
}

static int check_field(struct api_intake *in, const char *k, json_t *v)
{
	double r;

	if (!strcmp(k, "envelope_sender"))
		return check_address(in, v, k);
	if (!strcmp(k, "content"))
		return json_is_object(v) || json_is_string(v) ? 0 :
		       fail(in, 400, "wrong_type", k, "content must be an object or a "
			    "string (a whole message), not %s", type_name(v));
	if (!strcmp(k, "recipients")) {
		if (in->ndjson)
			return fail(in, 400, "invalid_field", k, "with application/x-ndjson "
				    "the recipients follow the job, one a line");
		return want(in, v, JSON_ARRAY, k, "an array");
	}
	if (!strcmp(k, "substitutions"))
		return check_subs(in, v, k);
	if (!strcmp(k, "campaign"))
		return check_text(in, v, k, 256);
	if (!strcmp(k, "priority")) {
		if (want(in, v, JSON_STRING, k, "a string") < 0)
			return -1;
		const char *p = json_string_value(v);
		return !strcmp(p, "bulk") || !strcmp(p, "transactional") ? 0 :
		       fail(in, 400, "invalid_field", k,
			    "priority must be \"bulk\" or \"transactional\"");
	}
	if (!strcmp(k, "expires_in"))
		return check_duration(in, v, k);
	if (!strcmp(k, "rate_limit")) {
		if (want(in, v, JSON_STRING, k, "a string such as \"50000/h\"") < 0)
			return -1;
		return vl_parse_rate(json_string_value(v), &r) == 0 ? 0 :
		       fail(in, 400, "invalid_field", k, "rate_limit must look like "
			    "\"50/s\", \"3000/min\" or \"50000/h\"");
	}
	if (!strcmp(k, "unsubscribe"))
		return want(in, v, JSON_OBJECT, k, "an object");
	if (!strcmp(k, "pool")) {
		if (want(in, v, JSON_STRING, k, "a string") < 0)
			return -1;
		return cfg_pool_find(in->cfg, json_string_value(v)) >= 0 ? 0 :
		       fail(in, 400, "invalid_field", k, "pool \"%.100s\" is not configured "
			    "(see pools; \"default\" is every egress source)",
			    json_string_value(v));
	}
	if (!strcmp(k, "verp") || !strcmp(k, "dkim") || !strcmp(k, "require_tls"))
		return want(in, v, JSON_TRUE, k, "a boolean");
	if (!strcmp(k, "raw_message"))   /* the spool's mark of a verbatim job */
		return fail(in, 400, "invalid_field", k, "raw_message is set by SMTP submission "
			    "only; send a whole message as content (a string)");
	if (!strcmp(k, "on_invalid")) {
		if (want(in, v, JSON_STRING, k, "a string") < 0)
			return -1;
		in->skip_invalid = !strcmp(json_string_value(v), "skip");
		return in->skip_invalid || !strcmp(json_string_value(v), "refuse") ? 0 :
		       fail(in, 400, "invalid_field", k, "on_invalid must be \"refuse\" or \"skip\"");
	}
	return kumo_field(in, k, v);
}

/* KumoMTA's content.amp_html_body has no volley part: dropped, warned. */
static void drop_amp(struct api_intake *in)
{
	json_t *c = json_object_get(in->job, "content");

	if (!json_is_object(c) || !json_object_get(c, "amp_html_body"))
		return;
	if (!json_is_null(json_object_get(c, "amp_html_body")))
		warn(in, "content.amp_html_body: ignored: volley sends no text/x-amp-html part");
	json_object_del(c, "amp_html_body");
}

static int compile_content(struct api_intake *in)
{
	const struct cfg_unsubscribe *u = &in->cfg->unsubscribe;
	const struct msg_unsub_conf uc = { .base_url = u->base_url, .key = u->secret,
					   .keylen = u->secret_len };
	const char *prio = json_string_value(json_object_get(in->job, "priority"));
	struct msg_job_opts o = {
		.job_id = in->id,
		.hostname = in->cfg->hostname,
		.max_size = in->cfg->max_message_size,
		.unsub = u->on ? &uc : NULL,
		.transactional = prio && !strcmp(prio, "transactional"),
	};
	struct msg_err me = { 0 };

	in->msg = msg_job_compile(json_object_get(in->job, "content"),
				  json_object_get(in->job, "substitutions"),
				  json_object_get(in->job, "unsubscribe"), &o, &me);
	if (in->msg)
		return 0;
	bool big = !strcmp(me.code, "too_large");
	return fail(in, big ? 413 : 400, *me.code ? me.code : "invalid_field",
		    me.field, "%s", me.message);
}

/* With dkim_required, a job that could not be signed is refused now,
 * rather than bounced message by message. */
static int check_dkim(struct api_intake *in)
{
	const struct cfg *c = in->cfg;
	char dom[256];

	if (!c->dkim_required)
		return 0;
	if (json_is_false(json_object_get(in->job, "dkim")))
		return fail(in, 400, "invalid_field", "dkim", "dkim is false but the "
			    "configuration sets dkim_required");
	if (msg_content_from_domain(json_object_get(in->job, "content"), dom, sizeof dom) < 0)
		return fail(in, 400, "invalid_field", "content", "dkim_required is set and the "
			    "From domain cannot be known before rendering (a substitution in it?)");
	for (const char *d = dom; d; d = strchr(d, '.') ? strchr(d, '.') + 1 : NULL)
		for (size_t i = 0; i < c->ndkim; i++)
			if (!strcasecmp(c->dkim[i].domain, d))
				return 0;
	return fail(in, 400, "invalid_field", "content.from", "dkim_required is set and no "
		    "DKIM key is configured for %s", dom);
}

static int begin_job(struct api_intake *in, json_t *job)
{
	const char *k;
	json_t *v;
	char err[256];

	in->job = job;            /* owned from here, whatever follows */
	if (!json_is_object(job))
		return fail(in, 400, "wrong_type", NULL, "the job must be a JSON object");
	json_object_foreach(job, k, v)
		if (check_field(in, k, v) < 0)
			return -1;
	if (!json_object_get(job, "envelope_sender"))
		return fail(in, 400, "missing_field", "envelope_sender",
			    "envelope_sender is required");
	if (!json_object_get(job, "content"))
		return fail(in, 400, "missing_field", "content", "content is required");
	if (!in->ndjson && !json_object_get(job, "recipients"))
		return fail(in, 400, "missing_field", "recipients", "recipients is required");
	drop_amp(in);
	if (compile_content(in) < 0 || check_dkim(in) < 0)
		return -1;
	if (in->spool && !(in->si = sched_intake_begin(in->spool, in->id, err, sizeof err)))
		return fail(in, 503, errno == ENOSPC ? "disk_full" : "internal", NULL,
			    "cannot store the job: %s", err);
	return 0;
}

/* ---- recipients ---- */

/* recipients[seen] is invalid (the error about its <sub>): recorded, and
 * the intake goes on, so that one answer names every bad recipient. The
 * job is refused at the end unless on_invalid is "skip". -1 always. */
static int rfail(struct api_intake *in, const char *sub, int status, const char *code,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int rfail(struct api_intake *in, const char *sub, int status, const char *code,
		 const char *fmt, ...)
{
	char path[sizeof in->first.field], msg[300], full[sizeof path + sizeof msg + 32];
	va_list ap;

	snprintf(path, sizeof path, "recipients[%zu]%s%s", in->seen, *sub ? "." : "", sub);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (in->ndjson)
		snprintf(full, sizeof full, "line %zu: %s: %s", in->line, path, msg);
	else
		snprintf(full, sizeof full, "%s: %s", path, msg);
	if (in->nbad++ == 0) {
		in->first.status = status;
		snprintf(in->first.code, sizeof in->first.code, "%s", code);
		snprintf(in->first.field, sizeof in->first.field, "%s", path);
		snprintf(in->first.message, sizeof in->first.message, "%.399s", full);
	}
	if (json_array_size(in->bad) < REPORT_MAX)
		json_array_append_new(in->bad, json_pack(
			"{s:I, s:o, s:o, s:s, s:s, s:s}", "index", (json_int_t)in->seen,
			"line", in->ndjson ? json_integer((json_int_t)in->line) : json_null(),
			"email", in->cur_email ? json_string(in->cur_email) : json_null(),
			"code", code, "field", path, "message", full));
	if (json_array_size(in->errors) < REPORT_MAX) {
		json_array_append_new(in->failed_rcpts, in->cur_email ?
				      json_string(in->cur_email) : json_null());
		json_array_append_new(in->errors, json_string(full));
	}
	return -1;
}

/* Numbers and booleans as text, the way composition writes the job's own. */
static const char *sub_text(struct api_intake *in, size_t i, const json_t *v, size_t *n)
{
	if (!json_is_string(v) && !in->nums)
		in->nums = vl_malloc(SCHED_MAX_SUBS * sizeof *in->nums);
	return msg_sub_string(v, in->nums ? in->nums[i] : NULL, n);
}

/* A recipient's substitutions: as check_subs, but a recipient's fault. */
static int rcpt_subs(struct api_intake *in, const json_t *subs)
{
	const char *k;
	json_t *v;
	char sub[200];

	if (!json_is_object(subs))
		return rfail(in, "substitutions", 400, "wrong_type", "must be an object, not %s",
			     type_name(subs));
	if (json_object_size(subs) > SCHED_MAX_SUBS)
		return rfail(in, "substitutions", 400, "invalid_field", "has more than %d entries",
			     SCHED_MAX_SUBS);
	json_object_foreach((json_t *)subs, k, v) {
		if (json_is_string(v) || json_is_number(v) || json_is_boolean(v))
			continue;
		snprintf(sub, sizeof sub, "substitutions.%s", k);
		return rfail(in, sub, 400, "wrong_type", "must be a string, number or boolean, "
			     "not %s", type_name(v));
	}
	return 0;
}

/* Types and field names of a recipient object (the jansson path). */
static int check_rcpt_json(struct api_intake *in, const json_t *r)
{
	const char *k;
	json_t *v;

	if (!json_is_object(r))
		return rfail(in, "", 400, "wrong_type", "must be an object, not %s", type_name(r));
	json_object_foreach((json_t *)r, k, v) {
		bool sub = !strcmp(k, "substitutions");
		if (!strcmp(k, "metadata") && json_is_object(v)) {
			if (!in->warned_metadata)   /* KumoMTA's: for its Lua hooks */
				warn(in, "recipients[].metadata: ignored: volley has no "
				     "per-message metadata");
			in->warned_metadata = true;
			continue;
		}
		if (strcmp(k, "email") && strcmp(k, "name") && !sub)
			return rfail(in, k, 400, "unknown_field", "unknown field");
		if (!sub && !json_is_string(v))
			return rfail(in, k, 400, "wrong_type", "must be a string, not %s",
				     type_name(v));
		if (sub && rcpt_subs(in, v) < 0)
			return -1;
	}
	if (!json_object_get(r, "email"))
		return rfail(in, "email", 400, "missing_field", "is required");
	return 0;
}

/* Fill in->sr from a checked recipient object. */
static void to_rcpt(struct api_intake *in, const json_t *r)
{
	const json_t *email = json_object_get(r, "email"), *name = json_object_get(r, "name");
	json_t *subs = json_object_get(r, "substitutions"), *v;
	struct sched_rcpt *sr = &in->sr;
	const char *k;

	sr->email = json_string_value(email);
	sr->email_len = json_string_length(email);
	sr->name = name ? json_string_value(name) : NULL;
	sr->name_len = name ? json_string_length(name) : 0;
	sr->nsubs = 0;
	json_object_foreach(subs, k, v) {
		size_t i = sr->nsubs++;
		sr->keys[i] = k;
		sr->klens[i] = strlen(k);
		sr->vals[i] = sub_text(in, i, v, &sr->vlens[i]);
	}
}

static bool has_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

/* What both parsers' output must pass, as it will be stored. */
static int check_rcpt(struct api_intake *in, const struct sched_rcpt *r)
{
	char why[160];
	bool utf8;

	if (msg_addr_check(r->email, r->email_len, &utf8, why, sizeof why) < 0)
		return rfail(in, "email", 400, "invalid_address", "%s", why);
	if (r->name && r->name_len > NAME_MAX_LEN)
		return rfail(in, "name", 400, "invalid_field", "longer than %d octets",
			     NAME_MAX_LEN);
	if (r->name && has_ctl(r->name, r->name_len))
		return rfail(in, "name", 400, "invalid_field",
			     "holds a control character (CR, LF, NUL, ...)");
	for (size_t i = 0; i < r->nsubs; i++) {
		if (r->klens[i] == 0 || r->klens[i] > SUBKEY_MAX)
			return rfail(in, "substitutions", 400, "invalid_field",
				     "a name must be 1 to %d octets", SUBKEY_MAX);
		if (memchr(r->vals[i], '\0', r->vlens[i]) || memchr(r->keys[i], '\0', r->klens[i]))
			return rfail(in, "substitutions", 400, "invalid_field", "holds NUL");
	}
	return 0;
}

static void report(struct api_intake *in, const char *email, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct api_intake *in, const char *email, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (json_array_size(in->errors) >= REPORT_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_array_append_new(in->failed_rcpts, json_string(email));
	json_array_append_new(in->errors, json_string(msg));
}

static int store_rcpt(struct api_intake *in)
{
	size_t first;
	int rc;

	if (!in->si)
		return 0;
	if ((in->seen % SPACE_CHECK) == 0 && in->seen &&
	    sched_spool_free_bytes(in->spool) < in->cfg->spool.min_free / 2)
		return fail(in, 503, "disk_full", NULL, "the spool's disk is nearly full "
			    "(under spool.min_free / 2 left); nothing was stored");
	rc = sched_intake_add(in->si, &in->sr, &first);
	if (rc < 0)
		return fail(in, 503, errno == ENOSPC ? "disk_full" : "internal", NULL,
			    "cannot store the recipients: %s; nothing was stored",
			    strerror(errno));
	if (rc == 1) {
		in->dups++;
		report(in, in->sr.email, "recipients[%zu].email: %s is a duplicate of "
		       "recipients[%zu]", in->seen, in->sr.email, first);
	}
	return 0;
}

/* Past a recipient, valid or not: -1 only when the whole job failed. */
static int next_rcpt(struct api_intake *in)
{
	in->seen++;
	in->cur_email = NULL;
	return in->failed ? -1 : 0;
}

/* in->sr holds a parsed recipient: check, then store (unless the job is
 * to be refused anyway). */
static int add_parsed(struct api_intake *in)
{
	struct msg_err me;  /* msg_job_check_rcpt sets it */

	in->cur_email = in->sr.email;
	if (check_rcpt(in, &in->sr) < 0)
		return next_rcpt(in);
	struct msg_rcpt mr = {
		.email = in->sr.email, .name = in->sr.name,
		.index = in->si ? sched_intake_count(in->si) : in->seen,
		.nsubs = in->sr.nsubs, .keys = in->sr.keys, .vals = in->sr.vals,
		.lens = in->sr.vlens,
	};
	if (msg_job_check_rcpt(in->msg, &mr, &me) < 0) {
		rfail(in, me.field, 400, *me.code ? me.code : "invalid_field", "%s", me.message);
		return next_rcpt(in);
	}
	if (in->nbad == 0 || in->skip_invalid)
		store_rcpt(in);
	return next_rcpt(in);
}

static bool nul_at(const json_t *v, char *path, size_t len, size_t cap, const char *skip);

static int add_rcpt(struct api_intake *in, const json_t *r)
{
	char path[160] = "";

	in->cur_email = json_string_value(json_object_get(r, "email"));
	if (nul_at(r, path, 0, sizeof path, NULL)) {
		rfail(in, path, 400, "invalid_field", "holds NUL (\\u0000)");
		return next_rcpt(in);
	}
	if (check_rcpt_json(in, r) < 0)
		return next_rcpt(in);
	to_rcpt(in, r);
	return add_parsed(in);
}

/* ---- feeding ---- */

/* The place of the first string in v that holds NUL (valid JSON as
 * \u0000, refused as a field's value), e.g. content.subject; false if none.
 * skip: a top-level member not looked into (NULL: none). */
static bool nul_at(const json_t *v, char *path, size_t len, size_t cap, const char *skip)
{
	const char *k;
	json_t *m;
	size_t i;

	if (json_is_string(v))
		return memchr(json_string_value(v), '\0', json_string_length(v)) != NULL;
	json_object_foreach((json_t *)v, k, m) {
		if (skip && !strcmp(k, skip))
			continue;
		snprintf(path + len, cap - len, "%s%s", len ? "." : "", k);
		if (nul_at(m, path, strlen(path), cap, NULL))
			return true;
	}
	json_array_foreach(v, i, m) {
		snprintf(path + len, cap - len, "[%zu]", i);
		if (nul_at(m, path, strlen(path), cap, NULL))
			return true;
	}
	path[len] = '\0';
	return false;
}

static json_t *parse(struct api_intake *in, const char *p, size_t n)
{
	json_error_t je;
	json_t *v = json_loadb(p, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	char path[160] = "";

	if (!v) {
		fail(in, 400, "malformed_json", NULL, "malformed JSON at column %d: %s",
		     je.column, je.text);
		return NULL;
	}
	/* the recipients' fields are checked one by one (add_rcpt) */
	if (nul_at(v, path, 0, sizeof path, "recipients")) {
		fail(in, 400, "invalid_field", path, "%s holds NUL (\\u0000)", path);
		json_decref(v);
		return NULL;
	}
	return v;
}

static bool blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

static int ndjson_line(struct api_intake *in, const char *p, size_t n)
{
	in->line++;
	if (blank(p, n))
		return 0;
	if (in->job && api_rcpt_fast(p, n, &in->scratch, &in->sr))
		return add_parsed(in);
	if (in->job) {
		json_error_t je;
		json_t *r = json_loadb(p, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
		if (!r) {
			rfail(in, "", 400, "malformed_json", "malformed JSON at column %d: %s",
			      je.column, je.text);
			return next_rcpt(in);
		}
		int rc = add_rcpt(in, r);
		json_decref(r);
		return rc;
	}
	json_t *v = parse(in, p, n);
	if (!v)
		return -1;
	return begin_job(in, v);   /* the job keeps v */
}

static size_t line_max(const struct api_intake *in)
{
	return in->job ? RCPT_LINE_MAX : in->cfg->api.max_body;
}

static int feed_ndjson(struct api_intake *in, const char *p, size_t n)
{
	while (n && !in->failed) {
		const char *nl = memchr(p, '\n', n);
		size_t len = nl ? (size_t)(nl - p) : n;
		if (in->buf.len + len > line_max(in))
			return fail(in, in->job ? 400 : 413, in->job ? "invalid_field" : "too_large",
				    NULL, "line %zu is longer than %zu octets", in->line + 1,
				    line_max(in));
		if (!nl) {
			vl_buf_append(&in->buf, p, n);
			return 0;
		}
		if (in->buf.len) {
			vl_buf_append(&in->buf, p, len);
			ndjson_line(in, in->buf.p, in->buf.len);
			vl_buf_reset(&in->buf);
		} else {
			ndjson_line(in, p, len);
		}
		p += len + 1;
		n -= len + 1;
	}
	return in->failed ? -1 : 0;
}

int api_intake_feed(struct api_intake *in, const char *data, size_t len)
{
	if (in->failed)
		return -1;
	in->bytes += len;
	if (in->ndjson)
		return feed_ndjson(in, data, len);
	if (in->buf.len + len > in->cfg->api.max_body)
		return fail(in, 413, "too_large", NULL, "the JSON body is over api.max_body "
			    "(%llu octets); send big lists as application/x-ndjson",
			    (unsigned long long)in->cfg->api.max_body);
	vl_buf_append(&in->buf, data, len);
	return 0;
}

static int finish_json(struct api_intake *in)
{
	size_t sp = 0;

	while (sp < in->buf.len && (in->buf.p[sp] == ' ' || in->buf.p[sp] == '\t' ||
				    in->buf.p[sp] == '\r' || in->buf.p[sp] == '\n'))
		sp++;
	if (sp == in->buf.len)
		return fail(in, 400, "malformed_json", NULL, "empty body: a JSON object is "
			    "required");
	json_t *job = parse(in, in->buf.p, in->buf.len);
	size_t i;
	json_t *r;

	vl_buf_free(&in->buf);
	if (!job || begin_job(in, job) < 0)
		return -1;
	json_array_foreach(json_object_get(job, "recipients"), i, r)
		if (add_rcpt(in, r) < 0)
			return -1;
	json_object_del(job, "recipients");
	return 0;
}

/* Recipients stored: neither duplicates nor skipped invalid ones. */
static size_t stored(const struct api_intake *in)
{
	return in->seen - in->dups - in->nbad;
}

static json_t *accept_json(struct api_intake *in)
{
	size_t n = stored(in);
	json_t *a = json_pack("{s:s, s:I, s:I, s:I, s:O, s:O}", "id", in->id,
			      "recipients", (json_int_t)n, "success_count", (json_int_t)n,
			      "fail_count", (json_int_t)(in->dups + in->nbad),
			      "failed_recipients", in->failed_rcpts, "errors", in->errors);

	if (in->nbad) {
		json_object_set_new(a, "invalid_count", json_integer((json_int_t)in->nbad));
		json_object_set(a, "invalid_recipients", in->bad);
	}
	if (json_array_size(in->warnings))
		json_object_set(a, "warnings", in->warnings);
	return a;
}

/* Refused for its invalid recipients: the first one's error, and the
 * list of them (as many as fit) for the client to fix all at once. */
static int refuse_invalid(struct api_intake *in)
{
	char *text;

	in->err = in->first;
	in->failed = true;
	in->err.ninvalid = in->nbad;
	if (in->nbad > 1) {
		size_t n = strlen(in->err.message);
		snprintf(in->err.message + n, sizeof in->err.message - n, " (and %zu more "
			 "invalid recipient%s: invalid_recipients lists %s)", in->nbad - 1,
			 in->nbad == 2 ? "" : "s",
			 in->nbad > REPORT_MAX ? "the first ones" : "them all");
	}
	while ((text = json_dumps(in->bad, JSON_COMPACT)) &&
	       strlen(text) >= sizeof in->err.invalid && json_array_size(in->bad) > 1) {
		free(text);
		json_array_remove(in->bad, json_array_size(in->bad) - 1);
	}
	snprintf(in->err.invalid, sizeof in->err.invalid, "%s",
		 text && strlen(text) < sizeof in->err.invalid ? text : "[]");
	free(text);
	return -1;
}

static json_t *meta_json(struct api_intake *in, json_t *accept)
{
	const char *exp = json_string_value(json_object_get(in->job, "expires_in"));
	uint64_t life = in->cfg->max_age_ms;

	if (exp)
		vl_parse_duration_ms(exp, &life);
	json_t *m = json_pack("{s:s, s:f, s:f, s:I, s:O, s:O}", "id", in->id,
			      "created", in->created, "expires", in->created + life / 1000.0,
			      "recipients", (json_int_t)stored(in),
			      "job", in->job, "accept", accept);
	if (in->idem)
		json_object_set_new(m, "idempotency_key", json_string(in->idem));
	return m;
}

static int commit(struct api_intake *in, json_t *meta)
{
	char *text = json_dumps(meta, JSON_COMPACT);
	int rc = sched_intake_commit(in->si, text, strlen(text));
	int e = errno;

	in->si = NULL;            /* freed by commit, either way */
	free(text);
	if (rc < 0)
		return fail(in, 503, e == ENOSPC ? "disk_full" : "internal", NULL,
			    "cannot store the job: %s; nothing was stored", strerror(e));
	in->committed = true;
	return 0;
}

int api_intake_finish(struct api_intake *in, json_t **accept, json_t **meta)
{
	*accept = *meta = NULL;
	if (in->failed)
		return -1;
	if (in->ndjson && in->buf.len) {
		ndjson_line(in, in->buf.p, in->buf.len);  /* last line, no newline */
		vl_buf_reset(&in->buf);
	}
	if (!in->ndjson && finish_json(in) < 0)
		return -1;
	if (in->failed)
		return -1;
	if (!in->job)
		return fail(in, 400, "malformed_json", NULL, "empty body: a JSON object (the "
			    "job) is required");
	if (in->nbad && (!in->skip_invalid || stored(in) == 0))
		return refuse_invalid(in);
	if (in->seen == 0)
		return fail(in, 400, "no_recipients", "recipients", "the job has no recipients");
	json_t *acc = accept_json(in), *m = meta_json(in, acc);
	if (in->si && commit(in, m) < 0) {
		json_decref(acc);
		json_decref(m);
		return -1;
	}
	*accept = acc;
	*meta = m;
	return 0;
}

const struct api_error *api_intake_error(const struct api_intake *in)
{
	return in->failed ? &in->err : NULL;
}

const char *api_intake_id(const struct api_intake *in)
{
	return in->id;
}

size_t api_intake_bytes(const struct api_intake *in)
{
	return in->bytes;
}

void api_intake_free(struct api_intake *in)
{
	if (!in)
		return;
	if (in->si)
		sched_intake_abort(in->si);
	msg_job_free(in->msg);
	json_decref(in->job);
	json_decref(in->failed_rcpts);
	json_decref(in->errors);
	json_decref(in->bad);
	json_decref(in->warnings);
	vl_buf_free(&in->buf);
	vl_buf_free(&in->scratch);
	free(in->nums);
	free(in->idem);
	intake_release(in);
}
