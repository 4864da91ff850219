/*
 * The HTTP server: libmicrohttpd with a thread per connection, so a
 * million-recipient upload being written to the spool never holds up a
 * health check, and no API thread ever touches an engine worker's ring.
 * Requests are dispatched by method and path (route_*); submissions stream
 * into api_intake.
 */
#include "api.h"
#include "../message/message.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#define IDEM_MAX 128
#define CONN_TIMEOUT_S 300

struct api;

struct listener {
	struct api *a;
	bool tcp;                 /* needs the bearer token */
	struct MHD_Daemon *d;
};

struct api {
	const struct cfg *cfg;
	struct sched *sc;
	struct sched_spool *spool;
	struct sched_suppress *sup;
	struct sched_events *ev;
	struct listener unix_l, tcp_l;
	char *sock_path;
	atomic_bool draining;
	double started;
	_Atomic uint64_t jobs_in, rcpts_in, bytes_in, rejected, spool_used, used_at;
	struct api_tlsrpt *tlsrpt;    /* TLS-RPT reports, or NULL */
};

/* One request's state across handler calls. */
struct req {
	struct api_intake *in;
	char *idem;               /* reserved key, released unless bound */
	bool inject;              /* /api/inject/v1 */
	bool done;
	struct MHD_Response *resp; /* an answer held until the upload is read */
	unsigned status;
};

/* ---- responses ---- */

/* A submission refused (or replayed) before its body is read is answered
 * only once the body has been read and dropped: a client still sending
 * would otherwise meet a closed connection (EPIPE) instead of the answer.
 * submit_begin() sets this for its thread; queue() then holds the answer. */
static __thread struct req *deferring;

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status,
			     struct MHD_Response *r)
{
	if (deferring) {
		deferring->resp = r;
		deferring->status = status;
		return MHD_YES;
	}
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status,
				 const char *type, char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body,
								 MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", type);
	return queue(c, status, r);
}

/* Steals body. */
static enum MHD_Result send_json_h(struct MHD_Connection *c, unsigned status,
				   json_t *body, const char *h, const char *v)
{
	char *text = json_dumps(body, JSON_COMPACT);
	size_t n = strlen(text);

	json_decref(body);
	text = vl_realloc(text, n + 2);
	text[n++] = '\n';
	struct MHD_Response *r = MHD_create_response_from_buffer(n, text,
								 MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (h)
		MHD_add_response_header(r, h, v);
	return queue(c, status, r);
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
	return send_json_h(c, status, body, NULL, NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *code,
				  const char *field, const char *msg)
{
	struct api_error e = { .status = status };

	snprintf(e.code, sizeof e.code, "%s", code);
	snprintf(e.field, sizeof e.field, "%s", field ? field : "");
	snprintf(e.message, sizeof e.message, "%s", msg);
	return send_json_h(c, (unsigned)status, api_error_json(&e),
			   status == 503 ? "Retry-After" : NULL, "30");
}

/* NDJSON produced as the client reads it (chunked). */
static enum MHD_Result send_stream(struct MHD_Connection *c, MHD_ContentReaderCallback read,
				   void *cls, MHD_ContentReaderFreeCallback done)
{
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536,
								   read, cls, done);
	MHD_add_response_header(r, "Content-Type", "application/x-ndjson");
	enum MHD_Result rc = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return rc;
}

/* ---- submissions ---- */

static bool media(const char *ct, const char *want)
{
	size_t n = strlen(want);
	return ct && strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' ||
						       ct[n] == ' ');
}

/* The spool's size, measured again every few seconds: retired jobs give
 * their space back. */
static uint64_t spool_used(struct api *a)
{
	uint64_t now = vl_now_ms(), last = atomic_load(&a->used_at);

	if (now - last > 5000 && atomic_compare_exchange_strong(&a->used_at, &last, now))
		atomic_store(&a->spool_used, sched_spool_used_bytes(a->spool));
	return atomic_load(&a->spool_used);
}

/* Refusals before reading the body: draining, full spool, bad type. */
static enum MHD_Result precheck(struct api *a, struct MHD_Connection *c, bool *ndjson,
				bool *refused)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	char msg[200];

	*refused = true;
	if (atomic_load(&a->draining))
		return send_error(c, 503, "shutting_down", NULL,
				  "volleyd is shutting down and takes no new jobs");
	if (a->cfg->spool.max_bytes && spool_used(a) >= a->cfg->spool.max_bytes) {
		snprintf(msg, sizeof msg, "the spool holds %llu octets, over spool.max_bytes; "
			 "retry when jobs have finished",
			 (unsigned long long)atomic_load(&a->spool_used));
		return send_error(c, 503, "spool_full", NULL, msg);
	}
	if (sched_spool_free_bytes(a->spool) < a->cfg->spool.min_free || !sched_accepting(a->sc))
		return send_error(c, 503, "disk_full", NULL, "the spool's disk has less free "
				  "space than spool.min_free (or the journal cannot be "
				  "written); retry when space returns");
	*ndjson = media(ct, "application/x-ndjson") || media(ct, "application/ndjson");
	if (!*ndjson && !media(ct, "application/json"))
		return send_error(c, 415, "unsupported_media_type", NULL,
				  "send the job with Content-Type: application/json, or "
				  "application/x-ndjson for a job and then a recipient a line");
	*refused = false;
	return MHD_YES;
}

static bool idem_valid(const char *k)
{
	size_t n = strlen(k);

	if (!n || n > IDEM_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (k[i] < 0x21 || k[i] > 0x7e)
			return false;
	return true;
}

/* An Idempotency-Key seen before answers the first job again. */
static enum MHD_Result idem_check(struct api *a, struct MHD_Connection *c,
				  struct req *r, const char *key, bool *answered)
{
	char id[SCHED_ID_LEN + 1];

	*answered = true;
	if (!idem_valid(key))
		return send_error(c, 400, "invalid_field", "Idempotency-Key",
				  "Idempotency-Key must be 1 to 128 printable ASCII characters");
	int rc = sched_idem_reserve(a->sc, key, id);
	if (rc < 0)
		return send_error(c, 409, "conflict", "Idempotency-Key", "a submission with "
				  "this Idempotency-Key is still being received");
	if (rc == 1) {
		json_t *acc = sched_job_accept_json(a->sc, id);
		if (!acc)
			return send_error(c, 500, "internal", NULL, "the job of this "
					  "Idempotency-Key cannot be read back");
		return send_json_h(c, 202, acc, "Idempotent-Replayed", "true");
	}
	r->idem = vl_strdup(key);
	*answered = false;
	return MHD_YES;
}

static enum MHD_Result submit_begin(struct api *a, struct MHD_Connection *c, struct req *r)
{
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
	bool ndjson, refused;
	enum MHD_Result rc = precheck(a, c, &ndjson, &refused);

	if (refused)
		return rc;
	if (key && ((rc = idem_check(a, c, r, key, &refused)), refused))
		return rc;
	r->in = api_intake_new(a->cfg, a->spool, ndjson, r->idem);
	return MHD_YES;
}

static enum MHD_Result submit_end(struct api *a, struct MHD_Connection *c, struct req *r)
{
	json_t *accept, *meta;
	char loc[64];

	if (api_intake_finish(r->in, &accept, &meta) < 0) {
		struct api_error e = *api_intake_error(r->in);
		/* Remove what was written before answering: a client that
		 * reads the error finds nothing left behind. */
		api_intake_free(r->in);
		r->in = NULL;
		if (r->idem)
			sched_idem_release(a->sc, r->idem);
		free(r->idem);
		r->idem = NULL;
		atomic_fetch_add(&a->rejected, 1);
		return send_json_h(c, (unsigned)e.status, api_error_json(&e),
				   e.status == 503 ? "Retry-After" : NULL, "60");
	}
	const char *id = api_intake_id(r->in);
	sched_job_add(a->sc, id, meta);
	json_decref(meta);
	free(r->idem);             /* now bound to the job */
	r->idem = NULL;
	atomic_fetch_add(&a->jobs_in, 1);
	atomic_fetch_add(&a->rcpts_in, (uint64_t)json_integer_value(
				 json_object_get(accept, "recipients")));
	atomic_fetch_add(&a->bytes_in, api_intake_bytes(r->in));
	atomic_fetch_add(&a->spool_used, sched_spool_job_bytes(a->spool, id));
	snprintf(loc, sizeof loc, "/v1/jobs/%s", id);
	r->done = true;
	return send_json_h(c, 202, accept, "Location", loc);
}

/* ---- jobs ---- */

static enum MHD_Result not_found(struct MHD_Connection *c, const char *what)
{
	char msg[160];
	snprintf(msg, sizeof msg, "no such %s", what);
	return send_error(c, 404, "not_found", NULL, msg);
}

static ssize_t read_rcpts(void *cls, uint64_t pos, char *buf, size_t max)
{
	size_t n = sched_recipients_read(cls, buf, max);
	(void)pos;
	return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void close_rcpts(void *cls)
{
	sched_recipients_close(cls);
}

static enum MHD_Result job_recipients(struct api *a, struct MHD_Connection *c,
				      const char *id)
{
	const char *st = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
	enum sched_state filter = SCHED_NSTATES;

	if (st && sched_state_parse(st, &filter) < 0)
		return send_error(c, 400, "invalid_field", "state", "state must be queued, "
				  "in_flight, delivered, deferred, bounced, expired, cancelled "
				  "or suppressed");
	struct sched_cursor *cur = sched_recipients_open(a->sc, id, filter);
	if (!cur)
		return not_found(c, "job");
	return send_stream(c, read_rcpts, cur, close_rcpts);
}

static enum MHD_Result job_control(struct api *a, struct MHD_Connection *c,
				   const char *id, const char *verb)
{
	enum sched_op op = !strcmp(verb, "pause") ? SCHED_PAUSE :
			   !strcmp(verb, "resume") ? SCHED_RESUME : SCHED_CANCEL;
	json_t *job;
	char why[200];

	switch (sched_job_control(a->sc, id, op, &job, why, sizeof why)) {
	case 0: return send_json(c, 200, job);
	case -1: return not_found(c, "job");
	case -2: return send_error(c, 409, "conflict", NULL, why);
	default: return send_error(c, 503, "disk_full", NULL, why);
	}
}

/* /v1/jobs/{id}[/{sub}] */
static enum MHD_Result route_job(struct api *a, struct MHD_Connection *c,
				 const char *method, const char *rest)
{
	const char *slash = strchr(rest, '/');
	size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
	char id[SCHED_ID_LEN + 1];
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");

	if (!sched_id_valid(rest, idlen))
		return not_found(c, "job");
	memcpy(id, rest, idlen);
	id[idlen] = '\0';
	if (!slash) {
		if (!get)
			return send_error(c, 405, "method_not_allowed", NULL, "use GET");
		json_t *j = sched_job_json(a->sc, id);
		return j ? send_json(c, 200, j) : not_found(c, "job");
	}
	const char *sub = slash + 1;
	if (!strcmp(sub, "recipients"))
		return get ? job_recipients(a, c, id) :
		       send_error(c, 405, "method_not_allowed", NULL, "use GET");
	if (!strcmp(sub, "pause") || !strcmp(sub, "resume") || !strcmp(sub, "cancel"))
		return post ? job_control(a, c, id, sub) :
		       send_error(c, 405, "method_not_allowed", NULL, "use POST");
	return not_found(c, "path");
}

/* ---- operations ---- */

static json_t *stats_json(struct api *a)
{
	return json_pack("{s:s, s:I, s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I}, s:o}",
			 "version", VL_VERSION,
			 "uptime_s", (json_int_t)(vl_wall_time() - a->started),
			 "intake", "jobs", (json_int_t)atomic_load(&a->jobs_in),
			 "recipients", (json_int_t)atomic_load(&a->rcpts_in),
			 "bytes", (json_int_t)atomic_load(&a->bytes_in),
			 "rejected", (json_int_t)atomic_load(&a->rejected),
			 "spool", "used_bytes", (json_int_t)atomic_load(&a->spool_used),
			 "free_bytes", (json_int_t)sched_spool_free_bytes(a->spool),
			 "scheduler", sched_stats_json(a->sc));
}

static void metric(struct vl_buf *b, const char *name, const char *type,
		   const char *help, const char *labels, double v)
{
	if (help)
		vl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	vl_buf_printf(b, "%s%s %.17g\n", name, labels ? labels : "", v);
}

static double num(json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

static void delivery_metrics(struct vl_buf *b, json_t *d)
{
	static const char *const outcomes[] = { "delivered", "bounced", "transient",
						"expired", "suppressed" };
	json_t *j = json_object_get(d, "journal"), *classes = json_object_get(d, "classes"), *v;
	const char *k;
	char lab[128];

	if (!d)
		return;
	for (size_t i = 0; i < VL_ARRAY_LEN(outcomes); i++) {
		snprintf(lab, sizeof lab, "{outcome=\"%s\"}", outcomes[i]);
		metric(b, "volley_outcomes_total", "counter", i ? NULL :
		       "Delivery outcomes since start.", lab, num(d, outcomes[i]));
	}
	bool first = true;
	json_object_foreach(classes, k, v) {
		for (int o = 0; o < 2; o++) {
			snprintf(lab, sizeof lab, "{outcome=\"%s\",class=\"%s\"}",
				 o ? "transient" : "bounced", k);
			metric(b, "volley_failures_total", "counter", first ?
			       "Failures since start by bounce class." : NULL, lab,
			       num(v, o ? "transient" : "bounced"));
			first = false;
		}
	}
	metric(b, "volley_in_flight", "gauge", "Messages in the engine.", NULL, num(d, "in_flight"));
	metric(b, "volley_connections", "gauge", "Open SMTP connections.", NULL,
	       num(d, "connections"));
	metric(b, "volley_journal_blocked", "gauge", "1 while the journal cannot be written.",
	       NULL, json_is_true(json_object_get(d, "journal_blocked")));
	metric(b, "volley_journal_commits_total", "counter", "Group commits of the journal.",
	       NULL, num(j, "commits"));
	metric(b, "volley_journal_commit_avg_seconds", "gauge",
	       "Mean time to make a commit durable.", NULL, num(j, "avg_ms") / 1000);
	metric(b, "volley_journal_commit_max_seconds", "gauge",
	       "Longest time to make a commit durable.", NULL, num(j, "max_ms") / 1000);
	json_t *dns = json_object_get(d, "dns");
	metric(b, "volley_dns_queries_total", "counter", "DNS queries sent.", NULL,
	       num(dns, "queries"));
	metric(b, "volley_dns_cache_hits_total", "counter", "DNS lookups answered by the cache.",
	       NULL, num(dns, "cache_hits"));
	metric(b, "volley_dns_timeouts_total", "counter", "DNS queries that timed out.", NULL,
	       num(dns, "timeouts"));
}

/* {site="..."}: label values escaped as the text format asks. */
static void site_label(json_t *site, char *lab, size_t len)
{
	struct vl_buf esc;

	vl_buf_init(&esc);
	vl_buf_json_string(&esc, json_string_value(json_object_get(site, "site")));
	snprintf(lab, len, "{site=%.*s}", (int)esc.len, esc.p);
	vl_buf_free(&esc);
}

static void site_metrics(struct vl_buf *b, struct api *a)
{
	static const char *const gauges[][2] = {
		{ "queued", "Recipients waiting at the site." },
		{ "deferred", "Recipients waiting for a retry." },
		{ "in_flight", "Messages to the site in the engine." },
		{ "current_rate", "Current rate cap per second (0: none)." },
		{ "backoff", "1 while the site is suspended after a slow-down reply." },
	};
	json_t *q = sched_queues_json(a->sc), *site;
	size_t i;
	char name[96], lab[400];

	for (size_t g = 0; g < VL_ARRAY_LEN(gauges); g++) {
		snprintf(name, sizeof name, "volley_site_%s", gauges[g][0]);
		json_array_foreach(json_object_get(q, "queues"), i, site) {
			json_t *bo = json_object_get(site, "backoff");
			site_label(site, lab, sizeof lab);
			metric(b, name, "gauge", i ? NULL : gauges[g][1], lab,
			       g == 4 ? json_is_true(json_object_get(bo, "suspended")) :
			       num(site, gauges[g][0]));
		}
	}
	json_decref(q);
}

static enum MHD_Result metrics(struct api *a, struct MHD_Connection *c)
{
	json_t *s = stats_json(a), *sched = json_object_get(s, "scheduler");
	json_t *counts = json_object_get(sched, "recipients"), *v;
	struct vl_buf b;
	const char *k;
	char lab[64];
	bool first = true;

	vl_buf_init(&b);
	metric(&b, "volley_up", "gauge", "volleyd is running.", NULL, 1);
	metric(&b, "volley_uptime_seconds", "gauge", "Seconds since volleyd started.", NULL,
	       (double)json_integer_value(json_object_get(s, "uptime_s")));
	metric(&b, "volley_jobs", "gauge", "Jobs in the spool.", NULL,
	       (double)json_integer_value(json_object_get(sched, "jobs")));
	metric(&b, "volley_jobs_active", "gauge", "Jobs with recipients not yet final.",
	       NULL, (double)json_integer_value(json_object_get(sched, "jobs_active")));
	json_object_foreach(counts, k, v) {
		snprintf(lab, sizeof lab, "{state=\"%s\"}", k);
		metric(&b, "volley_recipients", "gauge", first ?
		       "Recipients of the spooled jobs by state." : NULL, lab,
		       (double)json_integer_value(v));
		first = false;
	}
	metric(&b, "volley_intake_jobs_total", "counter", "Jobs accepted since start.", NULL,
	       (double)atomic_load(&a->jobs_in));
	metric(&b, "volley_intake_recipients_total", "counter",
	       "Recipients accepted since start.", NULL, (double)atomic_load(&a->rcpts_in));
	metric(&b, "volley_intake_bytes_total", "counter", "Octets of accepted uploads.",
	       NULL, (double)atomic_load(&a->bytes_in));
	metric(&b, "volley_intake_rejected_total", "counter",
	       "Submissions refused as bad input or for lack of space.", NULL,
	       (double)atomic_load(&a->rejected));
	metric(&b, "volley_spool_used_bytes", "gauge", "Octets the spooled jobs take.", NULL,
	       (double)atomic_load(&a->spool_used));
	metric(&b, "volley_spool_free_bytes", "gauge", "Octets free on the spool's disk.",
	       NULL, (double)sched_spool_free_bytes(a->spool));
	delivery_metrics(&b, json_object_get(sched, "delivery"));
	site_metrics(&b, a);
	json_decref(s);
	return send_text(c, 200, "text/plain; version=0.0.4", b.p, b.len);
}

static enum MHD_Result health(struct api *a, struct MHD_Connection *c)
{
	bool accepting = !atomic_load(&a->draining) && sched_accepting(a->sc) &&
			 sched_spool_free_bytes(a->spool) >= a->cfg->spool.min_free &&
			 (!a->cfg->spool.max_bytes ||
			  atomic_load(&a->spool_used) < a->cfg->spool.max_bytes);

	return send_json(c, 200, json_pack("{s:s, s:s, s:I, s:b}", "status", "ok",
					   "version", VL_VERSION, "uptime_s",
					   (json_int_t)(vl_wall_time() - a->started),
					   "accepting", accepting));
}

struct follower {
	struct api *a;
	struct sched_events_reader *r;
};

/* The event log, then (follow) new events as they are committed. */
static ssize_t read_events(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct follower *f = cls;
	long n;
	(void)pos;

	/* a follower waits in slices, so a gone client is noticed at the
	 * next keep-alive line and a draining volleyd ends the stream */
	for (int i = 0; i < 15; i++) {
		if (atomic_load(&f->a->draining))
			return MHD_CONTENT_READER_END_OF_STREAM;
		n = sched_events_read(f->r, buf, max, 1000);
		if (n != 0)
			return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
	}
	buf[0] = '\n';
	return 1;
}

static void close_events(void *cls)
{
	struct follower *f = cls;

	sched_events_reader_close(f->r);
	free(f);
}

static enum MHD_Result events(struct api *a, struct MHD_Connection *c)
{
	const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "follow");
	const char *job = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "job");
	bool follow = f && strcmp(f, "0") && strcmp(f, "false");

	if (job && !sched_id_valid(job, strlen(job)))
		return send_error(c, 400, "invalid_field", "job", "job must be a job id");
	struct sched_events_reader *r = sched_events_reader_open(a->ev, job, follow);
	struct follower *fl = vl_malloc(sizeof *fl);
	*fl = (struct follower){ a, r };
	return send_stream(c, read_events, fl, close_events);
}

/* ---- suppression list ---- */

static enum MHD_Result suppression_get(struct api *a, struct MHD_Connection *c)
{
	const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
	const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	uint64_t limit = 1000;

	if (l && (vl_parse_u64(l, &limit) < 0 || !limit))
		return send_error(c, 400, "invalid_field", "limit", "limit must be a positive integer");
	json_t *list = sched_suppress_list(a->sup, after, limit);
	json_object_set_new(list, "count", json_integer((json_int_t)sched_suppress_count(a->sup)));
	return send_json(c, 200, list);
}

static enum MHD_Result suppression_one(struct api *a, struct MHD_Connection *c,
				       const char *method, const char *email)
{
	char why[160];
	bool utf8;

	if (msg_addr_check(email, strlen(email), &utf8, why, sizeof why) < 0)
		return send_error(c, 400, "invalid_address", "email", why);
	if (!strcmp(method, "GET"))
		return sched_suppressed(a->sup, email, strlen(email)) ?
		       send_json(c, 200, json_pack("{s:s, s:b}", "email", email, "suppressed", 1)) :
		       not_found(c, "suppressed address");
	int rc = !strcmp(method, "DELETE") ? sched_suppress_remove(a->sup, email) :
		 !strcmp(method, "PUT") ? sched_suppress_add(a->sup, email, "added by API", "") : -2;
	if (rc == -2)
		return send_error(c, 405, "method_not_allowed", NULL, "use GET, PUT or DELETE");
	if (rc < 0 && errno == EINVAL)
		return send_error(c, 400, "invalid_address", "email",
				  "the suppression list refuses this address");
	if (rc < 0)
		return send_error(c, 503, "disk_full", NULL, "cannot write the suppression list");
	if (rc == 1 && !strcmp(method, "DELETE"))
		return not_found(c, "suppressed address");
	return send_json(c, 200, json_pack("{s:s, s:b}", "email", email, "suppressed",
					   strcmp(method, "DELETE") != 0));
}

/* ---- TLS view ---- */

/* A domain name as the delivery path would take it: letters, digits, '-',
 * '.', and no more than 253 octets. */
static bool domain_ok(const char *d)
{
	size_t n = strlen(d);

	if (!n || n > 253 || d[0] == '.' || d[n - 1] == '.' || strstr(d, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)d[i]) && d[i] != '-' && d[i] != '.')
			return false;
	return true;
}

static enum MHD_Result tls_check(struct api *a, struct MHD_Connection *c)
{
	const char *dom = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "domain");
	char lower[256];

	if (!dom)
		return send_error(c, 400, "missing_field", "domain", "give ?domain=example.com");
	if (!domain_ok(dom))
		return send_error(c, 400, "invalid_field", "domain", "not a domain name");
	for (size_t i = 0; i <= strlen(dom); i++)
		lower[i] = (char)tolower((unsigned char)dom[i]);
	json_t *j = sched_tls_check(a->sc, lower);
	if (!j)
		return send_error(c, 503, "not_delivering", NULL, "delivery is not running");
	return send_json(c, 200, j);
}

/* ---- TLS-RPT ---- */

void api_set_tlsrpt(struct api *a, struct api_tlsrpt *t)
{
	a->tlsrpt = t;
}

/* GET /v1/tls-report?domain=D[&date=YYYY-MM-DD], POST /v1/tls-report/send?... */
static enum MHD_Result tls_report(struct api *a, struct MHD_Connection *c, const char *method,
				  bool send)
{
	const char *domain = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "domain");
	const char *date = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "date");
	struct api_error e = { 0 };

	if (send ? strcmp(method, "POST") != 0 : strcmp(method, "GET") && strcmp(method, "HEAD"))
		return send_error(c, 405, "method_not_allowed", NULL, send ? "use POST" : "use GET");
	json_t *j = api_tlsrpt_answer(a->tlsrpt, domain, date, send, &e);
	return j ? send_json(c, 200, j) : send_json(c, (unsigned)e.status, api_error_json(&e));
}

/* ---- dispatch ---- */

static enum MHD_Result route_get(struct api *a, struct MHD_Connection *c, const char *url)
{
	if (!strcmp(url, "/v1/health"))
		return health(a, c);
	if (!strcmp(url, "/v1/jobs")) {
		const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
		uint64_t limit = 100;
		if (l && (vl_parse_u64(l, &limit) < 0 || !limit))
			return send_error(c, 400, "invalid_field", "limit",
					  "limit must be a positive integer");
		return send_json(c, 200, sched_jobs_json(a->sc, limit));
	}
	if (!strcmp(url, "/v1/queues"))
		return send_json(c, 200, sched_queues_json(a->sc));
	if (!strcmp(url, "/v1/tls-check"))
		return tls_check(a, c);
	if (!strcmp(url, "/v1/suppression"))
		return suppression_get(a, c);
	if (!strcmp(url, "/v1/events"))
		return events(a, c);
	if (!strcmp(url, "/v1/stats"))
		return send_json(c, 200, stats_json(a));
	if (!strcmp(url, "/metrics"))
		return metrics(a, c);
	return not_found(c, "path");
}

static bool authorized(struct listener *l, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *tok = l->a->cfg->api.token;
	size_t n = strlen(tok);

	if (!l->tcp)
		return true;
	return h && strncmp(h, "Bearer ", 7) == 0 && strlen(h + 7) == n &&
	       CRYPTO_memcmp(h + 7, tok, n) == 0;
}

static bool is_submit(const char *url)
{
	return !strcmp(url, "/v1/jobs") || !strcmp(url, "/api/inject/v1");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version,
			      const char *data, size_t *size, void **con_cls)
{
	struct listener *l = cls;
	struct api *a = l->a;
	struct req *r = *con_cls;
	(void)version;

	if (!r) {
		r = *con_cls = vl_calloc(1, sizeof *r);
		if (!authorized(l, c))
			return send_error(c, 401, "unauthorized", NULL,
					  "send Authorization: Bearer <api.token>");
		if (!strcmp(method, "POST") && is_submit(url)) {
			deferring = r;
			enum MHD_Result rc = submit_begin(a, c, r);
			deferring = NULL;
			return rc;
		}
		if (!strncmp(url, "/v1/jobs/", 9))
			return route_job(a, c, method, url + 9);
		if (!strncmp(url, "/v1/suppression/", 16))
			return suppression_one(a, c, method, url + 16);
		if (!strcmp(url, "/v1/tls-report") || !strcmp(url, "/v1/tls-report/send"))
			return tls_report(a, c, method, url[14] != '\0');
		if (!strcmp(url, "/api/inject/v1") ||
		    (!strcmp(url, "/v1/jobs") && strcmp(method, "GET")))
			return send_error(c, 405, "method_not_allowed", NULL,
					  !strcmp(url, "/v1/jobs") ? "use GET or POST" : "use POST");
		if (strcmp(method, "GET") && strcmp(method, "HEAD"))
			return send_error(c, 405, "method_not_allowed", NULL, "use GET");
		return route_get(a, c, url);
	}
	if (r->resp) {
		if (*size) {          /* refused before its body: drop the body */
			*size = 0;
			return MHD_YES;
		}
		enum MHD_Result rc = MHD_queue_response(c, r->status, r->resp);
		MHD_destroy_response(r->resp);
		r->resp = NULL;
		r->done = true;
		return rc;
	}
	if (!r->in || r->done)
		return MHD_YES;       /* answered already; the body is dropped */
	if (*size) {
		api_intake_feed(r->in, data, *size);
		*size = 0;
		return MHD_YES;
	}
	return submit_end(a, c, r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct listener *l = cls;
	struct req *r = *con_cls;
	(void)c;

	if (!r)
		return;
	if (r->in && !r->done && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		vl_log(VL_LOG_INFO, "api: submission %s abandoned mid-upload; nothing stored",
		       api_intake_id(r->in));
	if (r->resp)
		MHD_destroy_response(r->resp);
	api_intake_free(r->in);   /* removes whatever was not committed */
	if (r->idem)
		sched_idem_release(l->a->sc, r->idem);
	free(r->idem);
	free(r);
	*con_cls = NULL;
}

/* ---- listeners ---- */

static int unix_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof sa.sun_path) {
		snprintf(err, errlen, "api socket path too long (max %zu): %s",
			 sizeof sa.sun_path - 1, path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		snprintf(err, errlen, "another volleyd listens on %s", path);
		close(fd);
		return -1;
	}
	unlink(path);            /* a stale socket of a volleyd that died */
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0 || chmod(path, 0660) < 0 || listen(fd, 256) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int tcp_listen(const char *hostport, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int one = 1;

	if (vl_parse_hostport(hostport, host, sizeof host, &port) < 0) {
		snprintf(err, errlen, "api.listen: expected \"host:port\", got \"%s\"", hostport);
		return -1;
	}
	if (vl_sockaddr_parse(host, port, &ss, &sl) < 0) {
		snprintf(err, errlen, "api.listen: \"%s\" is not an IP address", host);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 256) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int start_listener(struct listener *l, int fd, char *err, size_t errlen)
{
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG;

	l->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, l,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_NOTIFY_COMPLETED, completed, l,
				MHD_OPTION_CONNECTION_LIMIT,
				(unsigned)l->a->cfg->api.max_connections,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
				/* bigger reads of big uploads: fewer handler calls */
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(512 * 1024),
				MHD_OPTION_END);
	if (!l->d) {
		snprintf(err, errlen, "cannot start the HTTP server");
		close(fd);
		return -1;
	}
	return 0;
}

struct api *api_start(const struct cfg *c, struct sched *sc,
		      struct sched_spool *spool, struct sched_suppress *sup,
		      struct sched_events *ev, char *err, size_t errlen)
{
	struct api *a = vl_calloc(1, sizeof *a);
	int fd;

	a->cfg = c;
	a->sc = sc;
	a->spool = spool;
	a->sup = sup;
	a->ev = ev;
	a->started = vl_wall_time();
	a->unix_l.a = a->tcp_l.a = a;
	a->tcp_l.tcp = true;
	atomic_store(&a->spool_used, sched_spool_used_bytes(spool));
	atomic_store(&a->used_at, vl_now_ms());
	if (*c->api.socket)
		a->sock_path = vl_strdup(c->api.socket);
	else if (asprintf(&a->sock_path, "%s/volley.sock", c->data_dir) < 0)
		abort();
	if ((fd = unix_listen(a->sock_path, err, errlen)) < 0 ||
	    start_listener(&a->unix_l, fd, err, errlen) < 0)
		goto fail;
	if (*c->api.listen) {
		if (!*c->api.token) {
			snprintf(err, errlen, "api.listen needs api.token: the TCP listener "
				 "demands Authorization: Bearer <token>");
			goto fail;
		}
		if ((fd = tcp_listen(c->api.listen, err, errlen)) < 0 ||
		    start_listener(&a->tcp_l, fd, err, errlen) < 0)
			goto fail;
	}
	return a;
fail:
	api_stop(a);
	return NULL;
}

void api_drain(struct api *a)
{
	atomic_store(&a->draining, true);
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	atomic_store(&a->draining, true);
	if (a->tcp_l.d)
		MHD_stop_daemon(a->tcp_l.d);
	if (a->unix_l.d) {
		MHD_stop_daemon(a->unix_l.d);
		unlink(a->sock_path);
	}
	free(a->sock_path);
	free(a);
}
