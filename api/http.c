/*
 * The HTTP server: libmicrohttpd behind the gate (gate.c). The gate owns
 * the sockets and hands libmicrohttpd only requests whose head is whole
 * and valid, one at a time per connection, over a socket pair;
 * libmicrohttpd runs them on a small pool of threads, each an epoll loop
 * over its connections (api.threads). Requests are dispatched by method
 * and path (route_*); submissions stream into api_intake.
 *
 * No pool thread waits: what may take long (a submission's end, with its
 * parse and fsync; job control, which waits for the delivery thread; the
 * TLS views, which wait for DNS and HTTPS) runs on a worker while its
 * connection is suspended, and an /v1/events follower with nothing to
 * send is suspended until the follower thread finds events for it. Every
 * answer is queued once the request is whole (libmicrohttpd closes the
 * connection after an answer given from the head alone), so keep-alive
 * works for every request.
 */
#include "api_int.h"
#include "../cluster/cluster.h"
#include "../console/console.h"
#include "../message/message.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <microhttpd.h>

#define IDEM_MAX 128
#define KEEPALIVE_MS 15000        /* a blank line to a silent follower */
#define FOLLOW_TICK_MS 50         /* how often waiting followers are looked at */

#define API_WORKERS_PER_THREAD 4

struct req;
struct follower;

struct api {
	const struct cfg *cfg;
	struct sched *sc;
	struct sched_spool *spool;
	struct sched_suppress *sup;
	struct sched_events *ev;
	struct MHD_Daemon *d;
	struct api_gate *gate;
	char *sock_path;
	bool sock_bound;              /* ours to remove */
	atomic_bool draining, stopping;
	double started;
	_Atomic uint64_t jobs_in, rcpts_in, bytes_in, rejected, spool_used, used_at;
	struct api_tlsrpt *tlsrpt;    /* TLS-RPT reports, or NULL */
	struct { api_metrics_fn fn; void *arg; } more[API_METRICS_MAX]; /* other parts' lines */
	size_t nmore;
	/* slow requests, run by workers while their connection is suspended */
	pthread_mutex_t wmu;
	pthread_cond_t wcv;
	struct req *wq, *wq_tail;
	pthread_t *workers;
	unsigned nworkers;
	bool wstop;
	/* /v1/events followers suspended until there is something to send */
	pthread_mutex_t fmu;
	pthread_cond_t fcv;
	struct follower *waiting;
	pthread_t fthread;
	bool fstarted, fstop;
};

/* One request's state across handler calls. */
struct req {
	struct MHD_Connection *c;
	struct api_intake *in;
	char *idem;               /* reserved key, released unless bound */
	bool done, head;
	struct MHD_Response *resp; /* the answer, queued once the request is whole */
	unsigned status;
	/* a slow request: run by a worker, the connection suspended */
	enum MHD_Result (*slow)(struct api *a, struct MHD_Connection *c, struct req *r);
	char *url, *method;
	bool queued;
	struct req *wnext;
};

/* ---- responses ---- */

/* Every answer is made while a handler (or a worker) runs for r, and kept
 * in r until the request is whole: an answer queued before the body is
 * read would close the connection (libmicrohttpd 0.9.75 refuses to read
 * a body or a further request then), and a client still sending its body
 * would meet a closed connection instead of the answer. */
static __thread struct req *answering;

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status,
			     struct MHD_Response *r)
{
	(void)c;
	if (answering->resp)
		MHD_destroy_response(answering->resp);
	answering->resp = r;
	answering->status = status;
	return MHD_YES;
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

static enum MHD_Result send_error_h(struct MHD_Connection *c, int status, const char *code,
				    const char *field, const char *msg, const char *h,
				    const char *v)
{
	struct api_error e = { .status = status };

	snprintf(e.code, sizeof e.code, "%s", code);
	snprintf(e.field, sizeof e.field, "%s", field ? field : "");
	snprintf(e.message, sizeof e.message, "%s", msg);
	return send_json_h(c, (unsigned)status, api_error_json(&e), h, v);
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *code,
				  const char *field, const char *msg)
{
	return send_error_h(c, status, code, field, msg, status == 503 ? "Retry-After" : NULL,
			    "30");
}

/* NDJSON produced as the client reads it (chunked); for HEAD only the
 * head. */
static enum MHD_Result send_stream(struct MHD_Connection *c, MHD_ContentReaderCallback read,
				   void *cls, MHD_ContentReaderFreeCallback done)
{
	struct MHD_Response *r;

	if (answering->head) {
		done(cls);
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	} else {
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, read, cls, done);
	}
	MHD_add_response_header(r, "Content-Type", "application/x-ndjson");
	return queue(c, 200, r);
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

/* With a cluster, the key is claimed in Redis first: held by another
 * node, it is that node's job (its 202 answered again, or 409 while it is
 * being received there), and nothing is stored here. True when answered. */
#define IDEM_PENDING_MS (15 * 60 * 1000)
#define IDEM_WAIT_MS 1000
#define CLUSTER_WAIT_MS 1000       /* /v1/cluster: Redis answers within a second */
static bool idem_cluster(struct api *a, struct MHD_Connection *c, struct clu *cl,
			 const char *key, enum MHD_Result *res)
{
	char node[80] = "", msg[200], *answer = NULL;
	int rc = clu_idem_claim(cl, key, IDEM_PENDING_MS, IDEM_WAIT_MS, &answer, node,
				sizeof node);

	(void)a;
	if (rc != CLU_IDEM_OTHER)
		return false;      /* ours, or Redis cannot say: this node decides */
	json_t *acc = answer ? json_loads(answer, 0, NULL) : NULL;
	free(answer);
	if (!acc) {
		snprintf(msg, sizeof msg, "a submission with this Idempotency-Key is still "
			 "being received on node %s", node);
		*res = send_error(c, 409, "conflict", "Idempotency-Key", msg);
		return true;
	}
	json_object_set_new(acc, "node", json_string(node));
	*res = send_json_h(c, 202, acc, "Idempotent-Replayed", "true");
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
	struct clu *cl = sched_cluster(a->sc);
	if (cl) {
		enum MHD_Result res;
		if (idem_cluster(a, c, cl, key, &res))
			return res;
	}
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

/* With a cluster, the key's holder in Redis gets this job's 202 answer
 * (a small one: without failed_recipients past 64 KB), kept as long as
 * the spool keeps the job. */
static void idem_bind(struct api *a, const char *key, json_t *accept)
{
	struct clu *cl = sched_cluster(a->sc);

	if (!cl)
		return;
	char *s = json_dumps(accept, JSON_COMPACT);
	if (s && strlen(s) > 65536) {
		json_t *small = json_deep_copy(accept);
		json_object_set_new(small, "failed_recipients", json_array());
		free(s);
		s = json_dumps(small, JSON_COMPACT);
		json_decref(small);
	}
	if (s)
		clu_idem_bind(cl, key, s, a->cfg->spool.retain_ms > 3600000 ?
			      a->cfg->spool.retain_ms : 3600000);
	free(s);
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
		if (r->idem) {
			sched_idem_release(a->sc, r->idem);
			if (sched_cluster(a->sc))
				clu_idem_bind(sched_cluster(a->sc), r->idem, NULL, 0);
		}
		free(r->idem);
		r->idem = NULL;
		atomic_fetch_add(&a->rejected, 1);
		return send_json_h(c, (unsigned)e.status, api_error_json(&e),
				   e.status == 503 ? "Retry-After" : NULL, "60");
	}
	const char *id = api_intake_id(r->in);
	sched_job_add(a->sc, id, meta);
	json_decref(meta);
	if (r->idem)
		idem_bind(a, r->idem, accept);
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

/* ?limit=N&after=INDEX: a page (limit 1 to 10000; after: the last index
 * of the page before); without limit, every recipient. */
static enum MHD_Result job_recipients(struct api *a, struct MHD_Connection *c,
				      const char *id)
{
	const char *st = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
	const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	const char *af = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
	enum sched_state filter = SCHED_NSTATES;
	uint64_t limit = 0, after = 0;

	if (st && sched_state_parse(st, &filter) < 0)
		return send_error(c, 400, "invalid_field", "state", "state must be queued, "
				  "in_flight, delivered, deferred, bounced, expired, cancelled "
				  "or suppressed");
	if (l && (vl_parse_u64(l, &limit) < 0 || !limit || limit > 10000))
		return send_error(c, 400, "invalid_field", "limit", "limit must be 1 to 10000");
	if (af && (!l || vl_parse_u64(af, &after) < 0 || after >= UINT32_MAX))
		return send_error(c, 400, "invalid_field", "after", "after must be a recipient's "
				  "index, with limit");
	struct sched_cursor *cur = l ? sched_recipients_page(a->sc, id, filter,
							     af ? (size_t)after + 1 : 0, limit)
				     : sched_recipients_open(a->sc, id, filter);
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

/* /v1/jobs/{id}[/{sub}], with a method methods_of() allows */
static enum MHD_Result route_job(struct api *a, struct MHD_Connection *c, const char *rest)
{
	const char *slash = strchr(rest, '/');
	size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
	char id[SCHED_ID_LEN + 1];

	if (!sched_id_valid(rest, idlen))
		return not_found(c, "job");
	memcpy(id, rest, idlen);
	id[idlen] = '\0';
	if (!slash) {
		json_t *j = sched_job_json(a->sc, id);
		return j ? send_json(c, 200, j) : not_found(c, "job");
	}
	if (!strcmp(slash + 1, "recipients"))
		return job_recipients(a, c, id);
	if (!strcmp(slash + 1, "classes")) {
		json_t *j = sched_job_classes_json(a->sc, id);
		return j ? send_json(c, 200, j) : not_found(c, "job");
	}
	return job_control(a, c, id, slash + 1);
}

/* ---- operations ---- */

static json_t *stats_json(struct api *a)
{
	struct api_gate_stats g = { 0 };

	if (a->gate)
		api_gate_stats(a->gate, &g);
	return json_pack("{s:s, s:I, s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I}, s:o, "
			 "s:{s:I, s:I, s:I, s:I, s:I, s:I}}",
			 "version", VL_VERSION,
			 "uptime_s", (json_int_t)(vl_wall_time() - a->started),
			 "intake", "jobs", (json_int_t)atomic_load(&a->jobs_in),
			 "recipients", (json_int_t)atomic_load(&a->rcpts_in),
			 "bytes", (json_int_t)atomic_load(&a->bytes_in),
			 "rejected", (json_int_t)atomic_load(&a->rejected),
			 "spool", "used_bytes", (json_int_t)atomic_load(&a->spool_used),
			 "free_bytes", (json_int_t)sched_spool_free_bytes(a->spool),
			 "scheduler", sched_stats_json(a->sc),
			 "api", "connections", (json_int_t)g.open, "accepted", (json_int_t)g.accepted,
			 "refused", (json_int_t)g.refused, "timeouts", (json_int_t)g.timeouts,
			 "bad_requests", (json_int_t)g.bad_requests,
			 "unauthorized", (json_int_t)g.unauthorized);
}

/* ?seconds=N (1 to 3600, default 3600): results a second, oldest first. */
static enum MHD_Result stats_history(struct api *a, struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "seconds");
	uint64_t n = 3600;

	if (v && (vl_parse_u64(v, &n) < 0 || !n || n > 3600))
		return send_error(c, 400, "invalid_field", "seconds", "seconds must be 1 to 3600");
	return send_json(c, 200, sched_history_json(a->sc, (unsigned)n));
}

static double num(json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}


/* The operator's names in a label: no quote, backslash or newline. */
static void label_value(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%.80s", name);
	for (char *q = out; *q; q++)
		if (*q == '"' || *q == '\\' || *q == '\n')
			*q = '_';
}

/* Sources with a warm-up schedule: the day, today's cap, what went out. */
/* With a cluster (docs/cluster.md): its mode, N, Redis round trips and
 * leases; nothing without one. */
static void cluster_metrics(struct vl_buf *b, json_t *c)
{
	if (!json_is_object(c))
		return;
	vl_prom_metric(b, "volley_cluster_shared", "gauge", "1 in shared mode (limits held "
		       "in Redis), 0 in local mode (1/N of each limit).", NULL,
		       !strcmp(json_string_value(json_object_get(c, "mode")), "shared"));
	vl_prom_metric(b, "volley_cluster_nodes", "gauge", "Nodes seen at the last heartbeat "
		       "(N).", NULL, num(c, "nodes"));
	vl_prom_metric(b, "volley_cluster_redis_roundtrips_total", "counter", "Commands sent "
		       "to Redis.", NULL, num(c, "roundtrips"));
	vl_prom_metric(b, "volley_cluster_leases_total", "counter", "Rate leases granted.",
		       NULL, num(c, "leases"));
	vl_prom_metric(b, "volley_cluster_lease_tokens_total", "counter", "Tokens (messages) "
		       "granted in leases.", NULL, num(c, "lease_tokens"));
	vl_prom_metric(b, "volley_cluster_last_lease", "gauge", "Tokens of the last lease "
		       "granted.", NULL, num(c, "last_lease"));
	vl_prom_metric(b, "volley_cluster_mode_changes_total", "counter", "Changes between "
		       "shared and local mode.", NULL, num(c, "mode_changes"));
	vl_prom_metric(b, "volley_cluster_slow_downs_total", "counter", "Slow-down replies "
		       "this node shared with the cluster.", NULL, num(c, "slow_downs_shared"));
}

static void warmup_metrics(struct vl_buf *b, json_t *sources)
{
	const char *k, *p;
	json_t *v, *n;
	char src[96], prov[96], lab[256];
	bool first[3] = { true, true, true };

	json_object_foreach(sources, k, v) {
		json_t *w = json_object_get(v, "warmup");
		if (!json_is_object(w))
			continue;
		label_value(src, sizeof src, k);
		snprintf(lab, sizeof lab, "{source=\"%s\"}", src);
		vl_prom_metric(b, "volley_warmup_day", "gauge", first[0] ? "Day of the egress "
			       "source's warm-up schedule (1: its first)." : NULL, lab,
			       (double)json_integer_value(json_object_get(w, "day")));
		first[0] = false;
		if (json_is_integer(json_object_get(w, "cap"))) {
			vl_prom_metric(b, "volley_warmup_cap", "gauge", first[1] ? "Messages the "
				       "source may send to each provider today." : NULL, lab,
				       (double)json_integer_value(json_object_get(w, "cap")));
			first[1] = false;
		}
		json_object_foreach(json_object_get(w, "sent"), p, n) {
			label_value(prov, sizeof prov, p);
			snprintf(lab, sizeof lab, "{source=\"%s\",provider=\"%s\"}", src, prov);
			vl_prom_metric(b, "volley_warmup_sent", "gauge", first[2] ? "Messages the "
				       "source sent to the provider today (\"*\": no provider)." :
				       NULL, lab, (double)json_integer_value(n));
			first[2] = false;
		}
	}
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
		vl_prom_metric(b, "volley_outcomes_total", "counter", i ? NULL :
		       "Delivery outcomes since start.", lab, num(d, outcomes[i]));
	}
	bool first = true;
	json_object_foreach(classes, k, v) {
		for (int o = 0; o < 2; o++) {
			snprintf(lab, sizeof lab, "{outcome=\"%s\",class=\"%s\"}",
				 o ? "transient" : "bounced", k);
			vl_prom_metric(b, "volley_failures_total", "counter", first ?
			       "Failures since start by bounce class." : NULL, lab,
			       num(v, o ? "transient" : "bounced"));
			first = false;
		}
	}
	for (int o = 0; o < 3; o++) {
		static const char *const what[] = { "delivered", "bounced", "transient" };
		char name[64], src[96];
		first = true;
		snprintf(name, sizeof name, "volley_source_%s_total", what[o]);
		json_object_foreach(json_object_get(d, "sources"), k, v) {
			label_value(src, sizeof src, k);
			snprintf(lab, sizeof lab, "{source=\"%s\"}", src);
			vl_prom_metric(b, name, "counter", first ? "Outcomes per egress source "
				       "since start." : NULL, lab, num(v, what[o]));
			first = false;
		}
	}
	warmup_metrics(b, json_object_get(d, "sources"));
	cluster_metrics(b, json_object_get(d, "cluster"));
	vl_prom_metric(b, "volley_in_flight", "gauge", "Messages in the engine.", NULL, num(d, "in_flight"));
	vl_prom_metric(b, "volley_connections", "gauge", "Open SMTP connections.", NULL,
	       num(d, "connections"));
	vl_prom_metric(b, "volley_journal_blocked", "gauge", "1 while the journal cannot be written.",
	       NULL, json_is_true(json_object_get(d, "journal_blocked")));
	vl_prom_metric(b, "volley_journal_commits_total", "counter", "Group commits of the journal.",
	       NULL, num(j, "commits"));
	vl_prom_metric(b, "volley_journal_commit_avg_seconds", "gauge",
	       "Mean time to make a commit durable.", NULL, num(j, "avg_ms") / 1000);
	vl_prom_metric(b, "volley_journal_commit_max_seconds", "gauge",
	       "Longest time to make a commit durable.", NULL, num(j, "max_ms") / 1000);
	json_t *dns = json_object_get(d, "dns");
	vl_prom_metric(b, "volley_dns_queries_total", "counter", "DNS queries sent.", NULL,
	       num(dns, "queries"));
	vl_prom_metric(b, "volley_dns_cache_hits_total", "counter", "DNS lookups answered by the cache.",
	       NULL, num(dns, "cache_hits"));
	vl_prom_metric(b, "volley_dns_timeouts_total", "counter", "DNS queries that timed out.", NULL,
	       num(dns, "timeouts"));
}

static void api_metrics(struct vl_buf *b, json_t *g)
{
	vl_prom_metric(b, "volley_api_connections", "gauge", "Open API connections.", NULL,
	       num(g, "connections"));
	vl_prom_metric(b, "volley_api_connections_refused_total", "counter",
	       "API connections refused at api.max_connections or api.max_connections_per_ip.",
	       NULL, num(g, "refused"));
	vl_prom_metric(b, "volley_api_timeouts_total", "counter",
	       "API connections closed by api.header_timeout or api.idle_timeout.", NULL,
	       num(g, "timeouts"));
	vl_prom_metric(b, "volley_api_bad_requests_total", "counter",
	       "Requests refused as malformed HTTP.", NULL, num(g, "bad_requests"));
	vl_prom_metric(b, "volley_api_unauthorized_total", "counter",
	       "Requests refused for want of the bearer token.", NULL, num(g, "unauthorized"));
}

/* {site="..."} and, with egress sources (a site per source), source="...":
 * label values escaped as the text format asks, and no two series alike. */
static void site_label(json_t *site, char *lab, size_t len)
{
	struct vl_buf esc;
	const char *src = json_string_value(json_object_get(site, "source"));

	vl_buf_init(&esc);
	vl_buf_json_string(&esc, json_string_value(json_object_get(site, "site")));
	if (src) {
		vl_buf_appends(&esc, ",source=");
		vl_buf_json_string(&esc, src);
	}
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
			vl_prom_metric(b, name, "gauge", i ? NULL : gauges[g][1], lab,
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
	vl_prom_metric(&b, "volley_up", "gauge", "volleyd is running.", NULL, 1);
	vl_prom_metric(&b, "volley_uptime_seconds", "gauge", "Seconds since volleyd started.", NULL,
	       (double)json_integer_value(json_object_get(s, "uptime_s")));
	vl_prom_metric(&b, "volley_jobs", "gauge", "Jobs in the spool.", NULL,
	       (double)json_integer_value(json_object_get(sched, "jobs")));
	vl_prom_metric(&b, "volley_jobs_active", "gauge", "Jobs with recipients not yet final.",
	       NULL, (double)json_integer_value(json_object_get(sched, "jobs_active")));
	json_object_foreach(counts, k, v) {
		snprintf(lab, sizeof lab, "{state=\"%s\"}", k);
		vl_prom_metric(&b, "volley_recipients", "gauge", first ?
		       "Recipients of the spooled jobs by state." : NULL, lab,
		       (double)json_integer_value(v));
		first = false;
	}
	vl_prom_metric(&b, "volley_intake_jobs_total", "counter", "Jobs accepted since start.", NULL,
	       (double)atomic_load(&a->jobs_in));
	vl_prom_metric(&b, "volley_intake_recipients_total", "counter",
	       "Recipients accepted since start.", NULL, (double)atomic_load(&a->rcpts_in));
	vl_prom_metric(&b, "volley_intake_bytes_total", "counter", "Octets of accepted uploads.",
	       NULL, (double)atomic_load(&a->bytes_in));
	vl_prom_metric(&b, "volley_intake_rejected_total", "counter",
	       "Submissions refused as bad input or for lack of space.", NULL,
	       (double)atomic_load(&a->rejected));
	vl_prom_metric(&b, "volley_spool_used_bytes", "gauge", "Octets the spooled jobs take.", NULL,
	       (double)atomic_load(&a->spool_used));
	vl_prom_metric(&b, "volley_spool_free_bytes", "gauge", "Octets free on the spool's disk.",
	       NULL, (double)sched_spool_free_bytes(a->spool));
	delivery_metrics(&b, json_object_get(sched, "delivery"));
	api_metrics(&b, json_object_get(s, "api"));
	site_metrics(&b, a);
	sched_latency_metrics(a->sc, &b);
	for (size_t i = 0; i < a->nmore; i++)
		a->more[i].fn(a->more[i].arg, &b);
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

/* A reader of the event log. A follower with nothing to send suspends its
 * connection (no pool thread waits for events) and waits on a->waiting;
 * the follower thread reads for it every FOLLOW_TICK_MS, and resumes it
 * with what it found, a keep-alive line after KEEPALIVE_MS of silence, or
 * the end of the stream when volleyd stops. */
struct follower {
	struct api *a;
	struct MHD_Connection *c;
	struct sched_events_reader *r;
	bool follow, end;
	uint64_t last;             /* when something was last sent */
	struct follower *next;     /* in a->waiting */
	size_t pend_len, pend_off; /* read by the follower thread, to send */
	char pend[16384];
};

/* The event log, then (follow) new events as they are committed. */
static ssize_t read_events(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct follower *f = cls;
	struct api *a = f->a;
	long n;
	(void)pos;

	if (f->pend_len) {
		size_t k = f->pend_len - f->pend_off < max ? f->pend_len - f->pend_off : max;
		memcpy(buf, f->pend + f->pend_off, k);
		if ((f->pend_off += k) == f->pend_len)
			f->pend_len = f->pend_off = 0;
		f->last = vl_now_ms();
		return (ssize_t)k;
	}
	if (f->end || atomic_load(&a->draining))
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = sched_events_read(f->r, buf, max, 0);
	if (n > 0) {
		f->last = vl_now_ms();
		return n;
	}
	if (n < 0 || !f->follow)
		return MHD_CONTENT_READER_END_OF_STREAM;
	pthread_mutex_lock(&a->fmu);
	if (a->fstop) {
		pthread_mutex_unlock(&a->fmu);
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	MHD_suspend_connection(f->c);
	f->next = a->waiting;
	a->waiting = f;
	pthread_mutex_unlock(&a->fmu);
	return 0;
}

static void close_events(void *cls)
{
	struct follower *f = cls;

	sched_events_reader_close(f->r);
	free(f);
}

/* The follower thread. */
static void *followers_main(void *arg)
{
	struct api *a = arg;
	struct timespec ts;

	vl_thread_name("vl-follow");
	pthread_mutex_lock(&a->fmu);
	while (!a->fstop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += FOLLOW_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&a->fcv, &a->fmu, &ts);
		uint64_t now = vl_now_ms();
		bool drain = atomic_load(&a->draining);
		for (struct follower **p = &a->waiting, *f; (f = *p);) {
			long n = drain ? -1 : sched_events_read(f->r, f->pend, sizeof f->pend, 0);
			if (n == 0 && now - f->last < KEEPALIVE_MS && !a->fstop) {
				p = &f->next;
				continue;
			}
			if (n > 0) {
				f->pend_len = (size_t)n;
			} else if (n < 0 || a->fstop) {
				f->end = true;
			} else {
				f->pend[0] = '\n';
				f->pend_len = 1;
			}
			*p = f->next;
			MHD_resume_connection(f->c);
		}
	}
	for (struct follower *f; (f = a->waiting);) {   /* stopping: end every stream */
		a->waiting = f->next;
		f->end = true;
		MHD_resume_connection(f->c);
	}
	pthread_mutex_unlock(&a->fmu);
	return NULL;
}

static enum MHD_Result events(struct api *a, struct MHD_Connection *c)
{
	const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "follow");
	const char *job = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "job");
	const char *from = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "from");
	bool follow = f && strcmp(f, "0") && strcmp(f, "false");

	if (job && !sched_id_valid(job, strlen(job)))
		return send_error(c, 400, "invalid_field", "job", "job must be a job id");
	if (from && (strcmp(from, "end") || !follow))
		return send_error(c, 400, "invalid_field", "from", "from takes end (with follow=1): "
				  "only the events from now on");
	struct follower *fl = vl_calloc(1, sizeof *fl);
	fl->a = a;
	fl->c = c;
	fl->r = from ? sched_events_reader_open_end(a->ev, job)
		     : sched_events_reader_open(a->ev, job, follow);
	fl->follow = follow;
	fl->last = vl_now_ms();
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
	if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
		return sched_suppressed(a->sup, email, strlen(email)) ?
		       send_json(c, 200, json_pack("{s:s, s:b}", "email", email, "suppressed", 1)) :
		       not_found(c, "suppressed address");
	int rc = !strcmp(method, "DELETE") ? sched_suppress_remove(a->sup, email) :
		 sched_suppress_add(a->sup, email, "added by API", "");
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

/* ---- feedback (docs/feedback.md) ---- */

static enum MHD_Result feedback_reports(struct api *a, struct MHD_Connection *c)
{
	const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	const char *u = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "unmatched");
	uint64_t limit = 50;

	if (l && (vl_parse_u64(l, &limit) < 0 || !limit || limit > 10000))
		return send_error(c, 400, "invalid_field", "limit", "limit must be 1 to 10000");
	return send_json(c, 200, sched_feedback_reports_json(a->sc, limit,
							     u && strcmp(u, "0") != 0));
}

/* POST /v1/feedback/domains/{domain}/resume */
static enum MHD_Result feedback_resume(struct api *a, struct MHD_Connection *c, const char *rest)
{
	char dom[256], lower[254], why[300];
	size_t n = strcspn(rest, "/");

	if (n >= sizeof dom)
		return send_error(c, 400, "invalid_field", "domain", "not a domain name");
	memcpy(dom, rest, n);
	dom[n] = '\0';
	if (vl_domain_norm(dom, lower) < 0)
		return send_error(c, 400, "invalid_field", "domain", "not a domain name");
	if (sched_feedback_domain_resume(a->sc, lower, why, sizeof why) < 0)
		return send_error(c, 409, "not_blocked", "domain", why);
	return send_json(c, 200, json_pack("{s:s, s:b}", "domain", lower, "blocked", 0));
}

static enum MHD_Result slow_feedback_resume(struct api *a, struct MHD_Connection *c,
					    struct req *r)
{
	return feedback_resume(a, c, r->url + 21);
}

/* ---- TLS view ---- */

static enum MHD_Result tls_check(struct api *a, struct MHD_Connection *c)
{
	const char *dom = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "domain");
	char lower[254];

	if (!dom)
		return send_error(c, 400, "missing_field", "domain", "give ?domain=example.com");
	if (vl_domain_norm(dom, lower) < 0)
		return send_error(c, 400, "invalid_field", "domain", "not a domain name");
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

int api_add_metrics(struct api *a, api_metrics_fn fn, void *arg)
{
	if (a->nmore == API_METRICS_MAX)
		return -1;
	a->more[a->nmore].fn = fn;
	a->more[a->nmore++].arg = arg;
	return 0;
}

/* GET /v1/tls-report?domain=D[&date=YYYY-MM-DD], POST /v1/tls-report/send?... */
static enum MHD_Result tls_report(struct api *a, struct MHD_Connection *c, bool send)
{
	const char *domain = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "domain");
	const char *date = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "date");
	struct api_error e = { 0 };

	json_t *j = api_tlsrpt_answer(a->tlsrpt, domain, date, send, &e);
	return j ? send_json(c, 200, j) : send_json(c, (unsigned)e.status, api_error_json(&e));
}

/* ---- the cluster's nodes ---- */

/* GET /v1/jobs; in a cluster the answer names its node, so `volley
 * --cluster jobs` knows who answered at an address. */
static json_t *jobs_json(struct api *a, uint64_t limit)
{
	json_t *j = sched_jobs_json(a->sc, limit);

	if (sched_cluster(a->sc))
		json_object_set_new(j, "node", json_string(a->cfg->cluster.node));
	return j;
}

/* GET /v1/cluster: this node and what every live node registered in
 * Redis (its API socket and listener), for `volley --cluster`. A line
 * that is not a JSON object is skipped: Redis holds it, not this node. */
static enum MHD_Result cluster_nodes(struct api *a, struct MHD_Connection *c)
{
	struct clu *cl = sched_cluster(a->sc);
	json_t *nodes, *j;

	if (!cl)
		return send_error(c, 404, "no_cluster", NULL,
				  "this node is not in a cluster (no cluster group in its config)");
	char *lines = clu_nodes_list(cl, CLUSTER_WAIT_MS);
	if (!lines)
		return send_error(c, 503, "cluster_unreachable", NULL,
				  "Redis did not answer: the node is in local mode");
	nodes = json_array();
	for (char *p = lines, *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			break;
		j = json_loadb(p, (size_t)(nl - p), 0, NULL);
		if (json_is_object(j))
			json_array_append(nodes, j);
		json_decref(j);
	}
	free(lines);
	return send_json(c, 200, json_pack("{s:s, s:s, s:o}", "node", a->cfg->cluster.node,
					   "mode", "shared", "nodes", nodes));
}

static enum MHD_Result slow_cluster(struct api *a, struct MHD_Connection *c, struct req *r)
{
	(void)r;
	return cluster_nodes(a, c);
}

/* ---- the web console (docs/console.md) ---- */

/* The headers of every console answer: no inline code, nothing framed,
 * no referrer; revalidated each load (the assets change with volleyd). */
static void console_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "Content-Security-Policy", CON_CSP);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
}

static enum MHD_Result console_send(struct MHD_Connection *c, unsigned status,
				    const char *type, const char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body,
								 MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", type);
	console_headers(r);
	return queue(c, status, r);
}

/* What the page needs to know of the configuration: nothing secret. */
static enum MHD_Result console_config(struct api *a, struct MHD_Connection *c)
{
	json_t *j = json_pack("{s:b, s:s}", "actions", a->cfg->console.actions,
			      "version", VL_VERSION);
	char *text = json_dumps(j, JSON_COMPACT);
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text,
								 MHD_RESPMEM_MUST_FREE);
	json_decref(j);
	MHD_add_response_header(r, "Content-Type", "application/json");
	console_headers(r);
	return queue(c, 200, r);
}

/* GET / and /console: to /console/; /console/<asset>: the asset. */
static enum MHD_Result console_route(struct api *a, struct MHD_Connection *c,
				     const char *url, const char *method)
{
	size_t len;
	const char *type, *body;

	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return send_error_h(c, 405, "method_not_allowed", NULL, "the console takes GET, HEAD",
				    "Allow", "GET, HEAD");
	if (!strcmp(url, "/") || !strcmp(url, "/console")) {
		struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"",
									 MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, "Location", "/console/");
		console_headers(r);
		return queue(c, 302, r);
	}
	if (!strcmp(url, "/console/config.json"))
		return console_config(a, c);
	if (!(body = con_asset(url + 9, &len, &type)))
		return console_send(c, 404, "text/plain; charset=utf-8", "no such page\n", 13);
	return console_send(c, 200, type, body, len);
}

/* ---- dispatch ---- */

/* The methods a path takes ("GET, HEAD": the Allow header of a 405), NULL
 * when there is no such path. */
static const char *methods_of(const char *url)
{
	static const char *const reads[] = { "/v1/health", "/v1/queues", "/v1/tls-check",
					     "/v1/suppression", "/v1/events", "/v1/stats",
					     "/metrics", "/v1/tls-report", "/v1/feedback",
					     "/v1/feedback/domains", "/v1/cluster",
					     "/v1/stats/history" };

	if (!strcmp(url, "/v1/jobs"))
		return "GET, HEAD, POST";
	if (!strcmp(url, "/api/inject/v1") || !strcmp(url, "/v1/tls-report/send"))
		return "POST";
	for (size_t i = 0; i < VL_ARRAY_LEN(reads); i++)
		if (!strcmp(url, reads[i]))
			return "GET, HEAD";
	if (!strncmp(url, "/v1/suppression/", 16))
		return url[16] ? "GET, HEAD, PUT, DELETE" : NULL;
	if (!strncmp(url, "/v1/feedback/domains/", 21)) {
		const char *sub = strchr(url + 21, '/');
		return sub && sub > url + 21 && !strcmp(sub, "/resume") ? "POST" : NULL;
	}
	if (!strncmp(url, "/v1/jobs/", 9)) {
		const char *sub = strchr(url + 9, '/');
		if (!sub || !strcmp(sub, "/recipients") || !strcmp(sub, "/classes"))
			return "GET, HEAD";
		if (!strcmp(sub, "/pause") || !strcmp(sub, "/resume") || !strcmp(sub, "/cancel"))
			return "POST";
	}
	return NULL;
}

static bool method_in(const char *m, const char *allow)
{
	size_t n = strlen(m);

	for (const char *p = allow; (p = strstr(p, m)); p += n)
		if ((p == allow || p[-1] == ' ') && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

/* The slow ones, run by a worker (r->url and r->method are copies). */
static enum MHD_Result slow_submit(struct api *a, struct MHD_Connection *c, struct req *r)
{
	return submit_end(a, c, r);
}

static enum MHD_Result slow_job(struct api *a, struct MHD_Connection *c, struct req *r)
{
	return route_job(a, c, r->url + 9);
}

static enum MHD_Result slow_tls_check(struct api *a, struct MHD_Connection *c, struct req *r)
{
	(void)r;
	return tls_check(a, c);
}

static enum MHD_Result slow_tls_report(struct api *a, struct MHD_Connection *c, struct req *r)
{
	return tls_report(a, c, r->url[14] != '\0');
}

static void set_slow(struct req *r, enum MHD_Result (*fn)(struct api *, struct MHD_Connection *,
							   struct req *),
		     const char *url, const char *method)
{
	r->slow = fn;
	r->url = vl_strdup(url);
	r->method = vl_strdup(method);
}

static void route(struct api *a, struct MHD_Connection *c, struct req *r, const char *url,
		  const char *method)
{
	const char *allow = methods_of(url);
	char msg[80];

	r->head = !strcmp(method, "HEAD");
	if (a->cfg->console.enabled && api_console_path(url, strlen(url))) {
		console_route(a, c, url, method);
		return;
	}
	if (!allow) {
		not_found(c, "path");
		return;
	}
	if (!method_in(method, allow)) {
		snprintf(msg, sizeof msg, "%s takes %s", url, allow);
		send_error_h(c, 405, "method_not_allowed", NULL, msg, "Allow", allow);
		return;
	}
	if (!strcmp(method, "POST") && (!strcmp(url, "/v1/jobs") || !strcmp(url, "/api/inject/v1"))) {
		submit_begin(a, c, r);
		return;
	}
	if (!strncmp(url, "/v1/jobs/", 9)) {
		size_t n = strlen(url);
		/* a pass over the job's journal: not on a pool thread */
		if (!strcmp(method, "POST") || (n > 8 && !strcmp(url + n - 8, "/classes")))
			set_slow(r, slow_job, url, method);
		else
			route_job(a, c, url + 9);
	} else if (!strncmp(url, "/v1/suppression/", 16)) {
		suppression_one(a, c, method, url + 16);
	} else if (!strncmp(url, "/v1/feedback/domains/", 21)) {
		set_slow(r, slow_feedback_resume, url, method);
	} else if (!strcmp(url, "/v1/feedback")) {
		feedback_reports(a, c);
	} else if (!strcmp(url, "/v1/feedback/domains")) {
		send_json(c, 200, sched_feedback_domains_json(a->sc));
	} else if (!strcmp(url, "/v1/tls-check")) {
		set_slow(r, slow_tls_check, url, method);
	} else if (!strcmp(url, "/v1/cluster")) {
		set_slow(r, slow_cluster, url, method);
	} else if (!strncmp(url, "/v1/tls-report", 14)) {
		set_slow(r, slow_tls_report, url, method);
	} else if (!strcmp(url, "/v1/health")) {
		health(a, c);
	} else if (!strcmp(url, "/v1/jobs")) {
		const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
		uint64_t limit = 100;
		if (l && (vl_parse_u64(l, &limit) < 0 || !limit))
			send_error(c, 400, "invalid_field", "limit", "limit must be a positive integer");
		else
			send_json(c, 200, jobs_json(a, limit));
	} else if (!strcmp(url, "/v1/queues")) {
		send_json(c, 200, sched_queues_json(a->sc));
	} else if (!strcmp(url, "/v1/suppression")) {
		suppression_get(a, c);
	} else if (!strcmp(url, "/v1/events")) {
		events(a, c);
	} else if (!strcmp(url, "/v1/stats")) {
		send_json(c, 200, stats_json(a));
	} else if (!strcmp(url, "/v1/stats/history")) {
		stats_history(a, c);
	} else {
		metrics(a, c);
	}
}

/* ---- workers: slow requests ---- */

/* Run r on a worker, its connection suspended meanwhile; false once the
 * workers are stopping. */
static bool work_push(struct api *a, struct MHD_Connection *c, struct req *r)
{
	pthread_mutex_lock(&a->wmu);
	if (a->wstop) {
		pthread_mutex_unlock(&a->wmu);
		return false;
	}
	MHD_suspend_connection(c);
	r->wnext = NULL;
	if (a->wq_tail)
		a->wq_tail->wnext = r;
	else
		a->wq = r;
	a->wq_tail = r;
	pthread_cond_signal(&a->wcv);
	pthread_mutex_unlock(&a->wmu);
	return true;
}

static void *worker_main(void *arg)
{
	struct api *a = arg;

	vl_thread_name("vl-apiwork");
	for (;;) {
		pthread_mutex_lock(&a->wmu);
		while (!a->wq && !a->wstop)
			pthread_cond_wait(&a->wcv, &a->wmu);
		struct req *r = a->wq;
		if (!r) {
			pthread_mutex_unlock(&a->wmu);
			return NULL;
		}
		if (!(a->wq = r->wnext))
			a->wq_tail = NULL;
		pthread_mutex_unlock(&a->wmu);
		answering = r;
		if (atomic_load(&a->stopping))
			send_error(r->c, 503, "shutting_down", NULL, "volleyd is shutting down");
		else
			r->slow(a, r->c, r);
		if (!r->resp)
			send_error(r->c, 500, "internal", NULL, "no answer was made");
		answering = NULL;
		MHD_resume_connection(r->c);
	}
}

/* ---- libmicrohttpd's callbacks ---- */

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version,
			      const char *data, size_t *size, void **con_cls)
{
	struct api *a = cls;
	struct req *r = *con_cls;
	(void)version;

	if (!r) {                 /* the head: route; the answer waits for the body */
		r = *con_cls = vl_calloc(1, sizeof *r);
		r->c = c;
		answering = r;
		route(a, c, r, url, method);
		answering = NULL;
		return MHD_YES;
	}
	if (*size) {              /* the body: a submission's, or dropped */
		if (r->in && !r->resp)
			api_intake_feed(r->in, data, *size);
		*size = 0;
		return MHD_YES;
	}
	if (r->resp) {            /* the request is whole: answer */
		enum MHD_Result rc = MHD_queue_response(c, r->status, r->resp);
		MHD_destroy_response(r->resp);
		r->resp = NULL;
		r->done = true;
		return rc;
	}
	if (r->in && !r->slow)
		r->slow = slow_submit;
	if (r->slow && !r->queued) {
		r->queued = true;
		if (!work_push(a, c, r)) {
			answering = r;
			send_error(c, 503, "shutting_down", NULL, "volleyd is shutting down");
			answering = NULL;
			enum MHD_Result rc = MHD_queue_response(c, r->status, r->resp);
			MHD_destroy_response(r->resp);
			r->resp = NULL;
			return rc;
		}
	}
	return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct api *a = cls;
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
		sched_idem_release(a->sc, r->idem);
	free(r->idem);
	free(r->url);
	free(r->method);
	free(r);
	*con_cls = NULL;
}

/* libmicrohttpd's own messages: debug lines, never on stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char m[512];
	size_t n;
	(void)cls;

	vsnprintf(m, sizeof m, fmt, ap);
	n = strlen(m);
	while (n && (m[n - 1] == '\n' || m[n - 1] == '\r'))
		m[--n] = '\0';
	vl_log(VL_LOG_DEBUG, "api: libmicrohttpd: %s", m);
}

/* The gate hands a connection over. */
static int attach(void *cls, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct api *a = cls;

	return MHD_add_connection(a->d, fd, sa, salen) == MHD_YES ? 0 : -1;
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
	if (rc < 0 || chmod(path, 0660) < 0 || listen(fd, 1024) < 0) {
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
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Each connection takes three descriptors once it has made a request (its
 * socket and a socket pair): raise the soft limit when it is lower than
 * that needs, as far as the hard limit allows. */
static void raise_nofile(const struct cfg *c)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)c->api.max_connections * 3 + 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
		vl_log(VL_LOG_WARN, "api: the descriptor limit (%llu) is below what "
		       "api.max_connections = %lld may need (%llu)",
		       (unsigned long long)rl.rlim_cur, (long long)c->api.max_connections,
		       (unsigned long long)want);
}

static int start_server(struct api *a, char *err, size_t errlen)
{
	const struct cfg *c = a->cfg;
	unsigned threads = (unsigned)c->api.threads;

	a->d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_NO_LISTEN_SOCKET |
				MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
				0, NULL, NULL, handle, a,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
				MHD_OPTION_THREAD_POOL_SIZE, threads,
				MHD_OPTION_NOTIFY_COMPLETED, completed, a,
				/* the gate keeps the count; this is only a ceiling */
				MHD_OPTION_CONNECTION_LIMIT,
				(unsigned)c->api.max_connections + 64 * threads,
				MHD_OPTION_CONNECTION_TIMEOUT, 0u,
				/* bigger reads of big uploads: fewer handler calls */
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(512 * 1024),
				MHD_OPTION_END);
	if (!a->d) {
		snprintf(err, errlen, "cannot start the HTTP server");
		return -1;
	}
	/* A submission's end mostly waits for the disk, and the waiting ones
	 * share the intake log's fdatasync: four workers a thread, so that a
	 * burst of transactional jobs is not queued behind a few syncs. */
	unsigned nw = threads * API_WORKERS_PER_THREAD;
	a->workers = vl_calloc(nw, sizeof *a->workers);
	for (; a->nworkers < nw; a->nworkers++)
		if (pthread_create(&a->workers[a->nworkers], NULL, worker_main, a) != 0) {
			snprintf(err, errlen, "cannot start the API's workers");
			return -1;
		}
	if (pthread_create(&a->fthread, NULL, followers_main, a) != 0) {
		snprintf(err, errlen, "cannot start the API's follower thread");
		return -1;
	}
	a->fstarted = true;
	return 0;
}

struct api *api_start(const struct cfg *c, struct sched *sc,
		      struct sched_spool *spool, struct sched_suppress *sup,
		      struct sched_events *ev, char *err, size_t errlen)
{
	struct api *a = vl_calloc(1, sizeof *a);
	int ufd = -1, tfd = -1;

	a->cfg = c;
	a->sc = sc;
	a->spool = spool;
	a->sup = sup;
	a->ev = ev;
	a->started = vl_wall_time();
	pthread_mutex_init(&a->wmu, NULL);
	pthread_cond_init(&a->wcv, NULL);
	pthread_mutex_init(&a->fmu, NULL);
	pthread_cond_init(&a->fcv, NULL);
	atomic_store(&a->spool_used, sched_spool_used_bytes(spool));
	atomic_store(&a->used_at, vl_now_ms());
	if (*c->api.socket)
		a->sock_path = vl_strdup(c->api.socket);
	else if (asprintf(&a->sock_path, "%s/volley.sock", c->data_dir) < 0)
		abort();
	if (*c->api.listen && !*c->api.token) {
		snprintf(err, errlen, "api.listen needs api.token: the TCP listener "
			 "demands Authorization: Bearer <token>");
		goto fail;
	}
	raise_nofile(c);
	if (start_server(a, err, errlen) < 0 ||
	    (ufd = unix_listen(a->sock_path, err, errlen)) < 0 ||
	    !(a->sock_bound = true) ||
	    (*c->api.listen && (tfd = tcp_listen(c->api.listen, err, errlen)) < 0))
		goto fail;
	struct api_gate_cfg gc = {
		.unix_fd = ufd, .tcp_fd = tfd, .token = c->api.token,
		.console = c->console.enabled,
		.threads = ((unsigned)c->api.threads + 1) / 2,
		.max_conns = (unsigned)c->api.max_connections,
		.max_per_ip = (unsigned)c->api.max_connections_per_ip,
		.header_ms = c->api.header_timeout_ms, .idle_ms = c->api.idle_timeout_ms,
		.attach = attach, .cls = a,
	};
	ufd = tfd = -1;          /* the gate's now, even if it fails */
	if (!(a->gate = api_gate_start(&gc, err, errlen)))
		goto fail;
	return a;
fail:
	if (ufd >= 0)
		close(ufd);
	if (tfd >= 0)
		close(tfd);
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
	atomic_store(&a->stopping, true);
	api_gate_stop(a->gate);  /* no more requests; connections closed */
	pthread_mutex_lock(&a->fmu);
	a->fstop = true;         /* every suspended follower resumed, to end */
	pthread_cond_signal(&a->fcv);
	pthread_mutex_unlock(&a->fmu);
	if (a->fstarted)
		pthread_join(a->fthread, NULL);
	pthread_mutex_lock(&a->wmu);
	a->wstop = true;         /* what is queued is answered 503, then they end */
	pthread_cond_broadcast(&a->wcv);
	pthread_mutex_unlock(&a->wmu);
	for (unsigned i = 0; i < a->nworkers; i++)
		pthread_join(a->workers[i], NULL);
	if (a->d)                /* nothing is suspended any more */
		MHD_stop_daemon(a->d);
	if (a->sock_bound)
		unlink(a->sock_path);
	pthread_mutex_destroy(&a->wmu);
	pthread_cond_destroy(&a->wcv);
	pthread_mutex_destroy(&a->fmu);
	pthread_cond_destroy(&a->fcv);
	free(a->workers);
	free(a->sock_path);
	free(a);
}
