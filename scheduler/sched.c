/*
 * The job registry: what the API shows and controls. Each job keeps a few
 * fields in memory (never its content or recipients, which stay in the
 * spool). The API's threads call in concurrently, so one mutex guards it;
 * nothing here is on the delivery hot path.
 */
#include "sched_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const jstate_names[] = { "active", "paused", "cancelled" };

struct sched {
	const struct cfg *cfg;
	struct sched_hist *hist;  /* results a second, the last hour */
	struct sched_spool *spool;
	pthread_mutex_t mu;
	struct sched_job **jobs; /* in creation (id) order */
	size_t njobs, cap;
	json_t *index;           /* id -> position in jobs */
	json_t *idem;            /* key -> id, or null while being received */
	struct sched_deliver *d; /* the delivery thread, once started */
	struct rpt_store *rpt;   /* TLS-RPT: where sessions are counted, or NULL */
	struct sched_fbstate *fb;    /* feedback effects (fback.c) */
	struct sched_suppress *sup;  /* given by sched_start */
	struct sched_events *ev;
	struct sched_lat *lat;       /* latency histograms (latency.c) */
};

struct sched_lat *sched_lat_of(struct sched *sc)
{
	return sc->lat;
}

void sched_latency_metrics(struct sched *sc, struct vl_buf *out)
{
	sched_lat_metrics(sc->lat, out);
}

struct sched_fbstate *sched_fbstate(struct sched *sc)
{
	return sc->fb;
}

const struct cfg *sched_cfg_of(struct sched *sc)
{
	return sc->cfg;
}

struct sched_spool *sched_spool_of(struct sched *sc)
{
	return sc->spool;
}

struct sched_events *sched_events_of(struct sched *sc)
{
	return sc->ev;
}

struct sched_suppress *sched_suppress_of(struct sched *sc)
{
	return sc->sup;
}

void sched_lock(struct sched *sc)
{
	pthread_mutex_lock(&sc->mu);
}

void sched_unlock(struct sched *sc)
{
	pthread_mutex_unlock(&sc->mu);
}

struct sched_job *sched_job_at(struct sched *sc, size_t i)
{
	return sc->jobs[i];
}

size_t sched_njobs(struct sched *sc)
{
	return sc->njobs;
}

static const char *const state_names[SCHED_NSTATES] = {
	"queued", "in_flight", "delivered", "deferred", "bounced", "expired",
	"cancelled", "suppressed",
};

const char *sched_state_name(enum sched_state st)
{
	return st < SCHED_NSTATES ? state_names[st] : "?";
}

int sched_state_parse(const char *s, enum sched_state *st)
{
	for (int i = 0; i < SCHED_NSTATES; i++)
		if (strcmp(s, state_names[i]) == 0) {
			*st = (enum sched_state)i;
			return 0;
		}
	return -1;
}

static struct sched_job *find(struct sched *sc, const char *id)
{
	json_t *v = json_object_get(sc->index, id);
	return v ? sc->jobs[json_integer_value(v)] : NULL;
}

struct sched_job *sched_job_find(struct sched *sc, const char *id)
{
	return find(sc, id);
}

/* Late bounces were delivered first: the API shows them bounced. */
void sched_job_counts(const struct sched_job *j, size_t out[SCHED_NSTATES])
{
	memcpy(out, j->counts, sizeof j->counts);
	size_t late = j->fb_oob < out[SCHED_DELIVERED] ? j->fb_oob : out[SCHED_DELIVERED];
	out[SCHED_DELIVERED] -= late;
	out[SCHED_BOUNCED] += late;
}

static bool job_done(const struct sched_job *j)
{
	return j->counts[SCHED_QUEUED] + j->counts[SCHED_IN_FLIGHT] +
	       j->counts[SCHED_DEFERRED] == 0;
}

/* Until the delivery thread has read a job's journal, its recipients
 * count as queued (or cancelled). */
static void recount(struct sched_job *j)
{
	memset(j->counts, 0, sizeof j->counts);
	j->counts[j->state == SCHED_J_CANCELLED ? SCHED_CANCELLED : SCHED_QUEUED] = j->recipients;
}

static bool read_done(struct sched *sc, struct sched_job *j);
static int write_control(struct sched *sc, struct sched_job *j, const char *word, double t,
			 const char *reason);

static void read_control(struct sched *sc, struct sched_job *j)
{
	char path[PATH_MAX], buf[320] = "";
	FILE *f;

	if (sched_spool_path(sc->spool, j->id, SCHED_SPOOL_CONTROL, path, sizeof path) < 0 ||
	    !(f = fopen(path, "r")))
		return;
	if (fgets(buf, sizeof buf, f)) {
		double t = 0;
		char word[16] = "";
		int at = 0;
		buf[strcspn(buf, "\n")] = '\0';
		sscanf(buf, "%15s %lf %n", word, &t, &at);
		if (strcmp(word, "paused") == 0) {
			j->state = SCHED_J_PAUSED;
			if (at > 0)
				snprintf(j->pause_reason, sizeof j->pause_reason, "%s", buf + at);
		}
		else if (strcmp(word, "cancelled") == 0) {
			j->state = SCHED_J_CANCELLED;
			j->finished = t;
		}
	}
	fclose(f);
}

static void add_job(struct sched *sc, struct sched_job *j)
{
	if (sc->njobs == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 64;
		sc->jobs = vl_realloc(sc->jobs, sc->cap * sizeof *sc->jobs);
	}
	json_object_set_new(sc->index, j->id, json_integer((json_int_t)sc->njobs));
	sc->jobs[sc->njobs++] = j;
}

static struct sched_job *job_from_meta(const char *id, json_t *meta)
{
	struct sched_job *j = vl_calloc(1, sizeof *j);
	json_t *job = json_object_get(meta, "job");
	const char *campaign = json_string_value(json_object_get(job, "campaign"));
	const char *prio = json_string_value(json_object_get(job, "priority"));

	snprintf(j->id, sizeof j->id, "%s", id);
	j->campaign = campaign ? vl_strdup(campaign) : NULL;
	j->transactional = prio && strcmp(prio, "transactional") == 0;
	j->require_tls = json_is_true(json_object_get(job, "require_tls"));
	j->created = json_number_value(json_object_get(meta, "created"));
	j->expires = json_number_value(json_object_get(meta, "expires"));
	j->recipients = (size_t)json_integer_value(json_object_get(meta, "recipients"));
	if (msg_content_from_domain(json_object_get(job, "content"), j->from_domain,
				    sizeof j->from_domain) < 0)
		j->from_domain[0] = '\0';
	return j;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every job dir, in id (= time) order. */
static int load_all(struct sched *sc, char *err, size_t errlen)
{
	const char *dir = sched_spool_jobs_dir(sc->spool);
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = vl_realloc(names, cap * sizeof *names);
		}
		names[n++] = vl_strdup(e->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof *names, cmp_name);
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		json_error_t je;
		json_t *meta = NULL;
		if (sched_spool_path(sc->spool, names[i], SCHED_SPOOL_JOB, path, sizeof path) < 0) {
			vl_log(VL_LOG_ERROR, "spool: skipping %s/%s: %s", dir, names[i],
			       errno == EINVAL ? "not a job id" : strerror(errno));
		} else if (!(meta = json_load_file(path, 0, &je))) {
			vl_log(VL_LOG_ERROR, "spool: skipping job %s: %s: %s", names[i], path, je.text);
		} else {
			struct sched_job *j = job_from_meta(names[i], meta);
			read_control(sc, j);
			if (!read_done(sc, j))
				recount(j);
			sched_fb_load_job(sc, j);
			add_job(sc, j);
			json_decref(meta);
		}
		free(names[i]);
	}
	free(names);
	return 0;
}

/* Idempotency keys are remembered as long as their jobs are. */
static void load_idem(struct sched *sc)
{
	for (size_t i = 0; i < sc->njobs; i++) {
		char path[PATH_MAX];
		json_t *meta = sched_spool_path(sc->spool, sc->jobs[i]->id, SCHED_SPOOL_JOB, path,
						sizeof path) < 0 ? NULL : json_load_file(path, 0, NULL);
		const char *key = json_string_value(json_object_get(meta, "idempotency_key"));
		if (key)
			json_object_set_new(sc->idem, key, json_string(sc->jobs[i]->id));
		json_decref(meta);
	}
}

struct sched *sched_new(const struct cfg *c, struct sched_spool *s,
			char *err, size_t errlen)
{
	struct sched *sc = vl_calloc(1, sizeof *sc);

	sc->hist = vl_calloc(1, sizeof *sc->hist);
	sc->cfg = c;
	sc->spool = s;
	sc->fb = sched_fbstate_new(c);
	sc->lat = sched_lat_new();
	pthread_mutex_init(&sc->mu, NULL);
	sc->index = json_object();
	sc->idem = json_object();
	if (load_all(sc, err, errlen) < 0) {
		sched_free(sc);
		return NULL;
	}
	load_idem(sc);
	return sc;
}

void sched_free(struct sched *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; i < sc->njobs; i++) {
		free(sc->jobs[i]->campaign);
		sched_fb_job_free(sc->jobs[i]);
		free(sc->jobs[i]);
	}
	free(sc->jobs);
	sched_fbstate_free(sc->fb);
	sched_lat_free(sc->lat);
	json_decref(sc->index);
	json_decref(sc->idem);
	pthread_mutex_destroy(&sc->mu);
	free(sc->hist);
	free(sc);
}

struct clu *sched_cluster(struct sched *sc)
{
	return sc->d ? sched_deliver_clu(sc->d) : NULL;
}

int sched_idem_reserve(struct sched *sc, const char *key, char id[SCHED_ID_LEN + 1])
{
	int rc = 0;

	pthread_mutex_lock(&sc->mu);
	json_t *v = json_object_get(sc->idem, key);
	if (v && json_is_string(v)) {
		snprintf(id, SCHED_ID_LEN + 1, "%s", json_string_value(v));
		rc = 1;
	} else if (v) {
		rc = -1;
	} else {
		json_object_set_new(sc->idem, key, json_null());
	}
	pthread_mutex_unlock(&sc->mu);
	return rc;
}

void sched_idem_release(struct sched *sc, const char *key)
{
	pthread_mutex_lock(&sc->mu);
	if (json_is_null(json_object_get(sc->idem, key)))
		json_object_del(sc->idem, key);
	pthread_mutex_unlock(&sc->mu);
}

/* A verbatim job's From domain, from its message's header (read only
 * while some domain is blocked: the delivery thread finds it otherwise). */
static void raw_from_domain(struct sched *sc, struct sched_job *j)
{
	char path[PATH_MAX], head[65536];
	FILE *f;

	if (sched_spool_path(sc->spool, j->id, SCHED_SPOOL_MESSAGE, path, sizeof path) < 0 ||
	    !(f = fopen(path, "r")))
		return;
	size_t n = fread(head, 1, sizeof head, f);
	fclose(f);
	if (msg_verbatim_from_domain(head, n, j->from_domain, sizeof j->from_domain) < 0)
		j->from_domain[0] = '\0';
}

int sched_job_add(struct sched *sc, const char *id, json_t *meta)
{
	struct sched_job *j = job_from_meta(id, meta);
	const char *key = json_string_value(json_object_get(meta, "idempotency_key"));
	char why[240];

	recount(j);
	if (!j->transactional && !*j->from_domain && sched_fb_any_blocked(sc) &&
	    json_is_true(json_object_get(json_object_get(meta, "job"), "raw_message")))
		raw_from_domain(sc, j);
	if (!j->transactional && sched_fb_domain_blocked(sc, j->from_domain, why, sizeof why)) {
		/* starts paused: its From domain is over its complaint rate */
		if (write_control(sc, j, "paused", vl_wall_time(), why) == 0) {
			j->state = SCHED_J_PAUSED;
			snprintf(j->pause_reason, sizeof j->pause_reason, "%s", why);
			vl_log(VL_LOG_WARN, "job %s: paused at intake: %s", id, why);
		}
	}
	pthread_mutex_lock(&sc->mu);
	add_job(sc, j);
	if (key)
		json_object_set_new(sc->idem, key, json_string(id));
	struct sched_deliver *d = sc->d;
	pthread_mutex_unlock(&sc->mu);
	if (d)
		sched_deliver_add_job(d, j);
	return 0;
}

static json_t *time_or_null(double t)
{
	char buf[32];

	if (t <= 0)
		return json_null();
	vl_iso8601(t, buf);
	return json_string(buf);
}

static json_t *job_feedback_json(const struct sched_job *j)
{
	size_t dl = j->counts[SCHED_DELIVERED];

	return json_pack("{s:I, s:I, s:f}", "complaints", (json_int_t)j->fb_complaints,
			 "async_bounces", (json_int_t)j->fb_oob,
			 "complaint_rate", dl ? (double)j->fb_complaints / (double)dl : 0.0);
}

static json_t *job_json(const struct sched_job *j)
{
	json_t *counts = json_object();
	bool done = job_done(j);
	double span = j->last_delivery - j->first_delivery;
	double rate = span > 0.5 ? (double)j->counts[SCHED_DELIVERED] / span : 0;
	size_t c[SCHED_NSTATES];

	/* a count can dip below zero for a moment (a dispatch is published at
	 * once, the deferral before it only at its commit): show 0 then */
	sched_job_counts(j, c);
	for (int i = 0; i < SCHED_NSTATES; i++)
		json_object_set_new(counts, state_names[i], json_integer(
			c[i] > j->recipients ? 0 : (json_int_t)c[i]));
	return json_pack("{s:s, s:o, s:s, s:b, s:s, s:o, s:o, s:I, s:o, s:{s:f}, s:b, s:o, "
			 "s:o, s:o}",
			 "id", j->id,
			 "campaign", j->campaign ? json_string(j->campaign) : json_null(),
			 "priority", j->transactional ? "transactional" : "bulk",
			 "require_tls", j->require_tls,
			 "state", done && j->state != SCHED_J_CANCELLED ? "done"
								       : jstate_names[j->state],
			 "created", time_or_null(j->created),
			 "expires", time_or_null(j->expires),
			 "recipients", (json_int_t)j->recipients,
			 "counts", counts,
			 "rate", "delivered_per_s", rate,
			 "done", done,
			 "finished", time_or_null(done ? j->finished : 0),
			 "paused_reason", j->state == SCHED_J_PAUSED && *j->pause_reason ?
					  json_string(j->pause_reason) : json_null(),
			 "feedback", job_feedback_json(j));
}

json_t *sched_job_json(struct sched *sc, const char *id)
{
	pthread_mutex_lock(&sc->mu);
	struct sched_job *j = find(sc, id);
	json_t *r = j ? job_json(j) : NULL;
	pthread_mutex_unlock(&sc->mu);
	return r;
}

json_t *sched_jobs_json(struct sched *sc, size_t limit)
{
	json_t *a = json_array();

	pthread_mutex_lock(&sc->mu);
	for (size_t i = sc->njobs; i > 0 && json_array_size(a) < limit; i--)
		json_array_append_new(a, job_json(sc->jobs[i - 1]));
	pthread_mutex_unlock(&sc->mu);
	return json_pack("{s:o}", "jobs", a);
}

json_t *sched_job_accept_json(struct sched *sc, const char *id)
{
	char path[PATH_MAX];

	if (sched_spool_path(sc->spool, id, SCHED_SPOOL_JOB, path, sizeof path) < 0)
		return NULL;
	json_t *meta = json_load_file(path, 0, NULL);
	json_t *acc = json_incref(json_object_get(meta, "accept"));
	json_decref(meta);
	return acc;
}

/* control: written to a temporary name, fsync'd and renamed, so a crash
 * leaves the old state or the new one. */
static int write_control(struct sched *sc, struct sched_job *j, const char *word, double t,
			 const char *reason)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8], line[320];
	int n = snprintf(line, sizeof line, "%s %.3f%s%.240s\n", word, t, reason ? " " : "",
			 reason ? reason : "");

	if (sched_spool_path(sc->spool, j->id, SCHED_SPOOL_CONTROL, path, sizeof path) < 0)
		return -1;
	snprintf(tmp, sizeof tmp, "%s.new", path);
	if (!*word)
		return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (write(fd, line, (size_t)n) != n || fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	return rename(tmp, path);
}

static int transition(struct sched_job *j, enum sched_op op, enum sched_jstate *to,
		      char *why, size_t whylen)
{
	static const char *const verbs[] = { "pause", "resume", "cancel" };
	bool done = job_done(j);

	if (j->state == SCHED_J_CANCELLED || done) {
		snprintf(why, whylen, "cannot %s job %s: it is %s", verbs[op], j->id,
			 j->state == SCHED_J_CANCELLED ? "cancelled" : "done");
		return -2;
	}
	*to = op == SCHED_PAUSE ? SCHED_J_PAUSED :
	      op == SCHED_RESUME ? SCHED_J_ACTIVE : SCHED_J_CANCELLED;
	return 0;
}

/* reason: why a pause happened by itself (NULL: by hand). */
static int control(struct sched *sc, const char *id, enum sched_op op, const char *reason,
		   json_t **out, char *why, size_t whylen)
{
	static const char *const words[] = { "", "paused", "cancelled" };
	enum sched_jstate to;
	int rc;

	pthread_mutex_lock(&sc->mu);
	struct sched_job *j = find(sc, id);
	bool changed = false;
	if (!j) {
		rc = -1;
	} else if ((rc = transition(j, op, &to, why, whylen)) == 0 && to != j->state) {
		double now = vl_wall_time();
		if (write_control(sc, j, words[to], now, to == SCHED_J_PAUSED ? reason : NULL) < 0) {
			snprintf(why, whylen, "cannot record the job's state: %s", strerror(errno));
			rc = -3;
		} else {
			j->state = to;
			snprintf(j->pause_reason, sizeof j->pause_reason, "%s",
				 to == SCHED_J_PAUSED && reason ? reason : "");
			changed = true;
			if (to == SCHED_J_CANCELLED && !sc->d) {
				j->finished = now;
				recount(j);
			}
		}
	}
	struct sched_deliver *d = sc->d;
	pthread_mutex_unlock(&sc->mu);
	if (changed && d)
		sched_deliver_control(d, j); /* returns with its outcomes committed */
	if (rc == 0) {
		pthread_mutex_lock(&sc->mu);
		j = find(sc, id);        /* it may have been retired meanwhile */
		if (out)
			*out = j ? job_json(j) : NULL;
		pthread_mutex_unlock(&sc->mu);
		rc = j ? 0 : -1;
	}
	return rc;
}

int sched_job_control(struct sched *sc, const char *id, enum sched_op op,
		      json_t **out, char *why, size_t whylen)
{
	return control(sc, id, op, NULL, out, why, whylen);
}

int sched_job_pause_for(struct sched *sc, const char *id, const char *reason)
{
	char why[200];

	return control(sc, id, SCHED_PAUSE, reason, NULL, why, sizeof why) == 0 ? 0 : -1;
}

/* ---- recipients: their committed outcomes (rcptcur.c) ---- */

struct sched_cursor *sched_recipients_open(struct sched *sc, const char *id,
					   enum sched_state filter)
{
	char path[PATH_MAX], fbpath[PATH_MAX];

	pthread_mutex_lock(&sc->mu);
	struct sched_job *j = find(sc, id);
	bool cancelled = j && j->state == SCHED_J_CANCELLED;
	pthread_mutex_unlock(&sc->mu);
	if (!j)
		return NULL;
	struct sched_table *t = sched_table_open(sc->spool, id);
	if (!t || sched_spool_path(sc->spool, id, SCHED_SPOOL_JOURNAL, path, sizeof path) < 0 ||
	    sched_spool_path(sc->spool, id, SCHED_SPOOL_FEEDBACK, fbpath, sizeof fbpath) < 0) {
		sched_table_close(t);
		return NULL;
	}
	return sched_cursor_new(t, path, fbpath, cancelled, filter, 0);
}

json_t *sched_job_classes_json(struct sched *sc, const char *id)
{
	struct sched_cursor *c = sched_recipients_open(sc, id, SCHED_NSTATES);
	json_t *r = c ? sched_cursor_classes(c) : NULL;

	sched_recipients_close(c);
	return r;
}

struct sched_cursor *sched_recipients_page(struct sched *sc, const char *id,
					   enum sched_state filter, size_t first,
					   size_t limit)
{
	struct sched_cursor *c = sched_recipients_open(sc, id, filter);

	if (c)
		sched_cursor_page(c, first, limit);
	return c;
}

/* ---- finished jobs ---- */

void sched_mark_done(struct sched *sc, struct sched_job *j)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	json_t *counts = json_object();

	pthread_mutex_lock(&sc->mu);
	for (int i = 0; i < SCHED_NSTATES; i++)
		json_object_set_new(counts, state_names[i], json_integer((json_int_t)j->counts[i]));
	json_t *d = json_pack("{s:f, s:f, s:f, s:o}", "finished", j->finished,
			      "first_delivery", j->first_delivery,
			      "last_delivery", j->last_delivery, "counts", counts);
	pthread_mutex_unlock(&sc->mu);
	if (sched_spool_path(sc->spool, j->id, SCHED_SPOOL_DONE, path, sizeof path) < 0) {
		json_decref(d);
		return;
	}
	snprintf(tmp, sizeof tmp, "%s.new", path);
	if (json_dump_file(d, tmp, JSON_COMPACT) == 0 && rename(tmp, path) == 0)
		vl_log(VL_LOG_DEBUG, "job %s: done", j->id);
	json_decref(d);
}

/* A finished job's state from done.json: true when it is there and whole. */
static bool read_done(struct sched *sc, struct sched_job *j)
{
	char path[PATH_MAX];
	json_t *d = sched_spool_path(sc->spool, j->id, SCHED_SPOOL_DONE, path, sizeof path) < 0 ?
		    NULL : json_load_file(path, 0, NULL);
	json_t *counts = json_object_get(d, "counts");
	size_t sum = 0, c[SCHED_NSTATES];
	for (int i = 0; counts && i < SCHED_NSTATES; i++) {
		c[i] = (size_t)json_integer_value(json_object_get(counts, state_names[i]));
		sum += c[i];
	}
	bool ok = counts && sum == j->recipients && !c[SCHED_QUEUED] &&
		  !c[SCHED_IN_FLIGHT] && !c[SCHED_DEFERRED];
	if (ok) {
		memcpy(j->counts, c, sizeof c);
		j->finished = json_number_value(json_object_get(d, "finished"));
		j->first_delivery = json_number_value(json_object_get(d, "first_delivery"));
		j->last_delivery = json_number_value(json_object_get(d, "last_delivery"));
	}
	json_decref(d);
	return ok && j->finished > 0;
}

/* ---- retention ---- */

/* A few seconds past the last commit, so no batch for the job is left. */
#define RETIRE_MIN_S 3.0

/* clean: the intake log's (sched_spool_ilog_clean): a job logged there
 * finished after its record was written, so finished before clean means
 * its record is gone for good and cannot bring it back after a crash. */
static bool retirable(const struct sched *sc, const struct sched_job *j, double now,
		      double clean)
{
	double retain = (double)sc->cfg->spool.retain_ms / 1000;

	return j->finished > 0 && !j->d && job_done(j) && j->finished < clean &&
	       now - j->finished >= (retain > RETIRE_MIN_S ? retain : RETIRE_MIN_S);
}

static void forget_keys(struct sched *sc, const char *id)
{
	const char *k;
	json_t *v, *tmp;

	json_object_foreach_safe(sc->idem, tmp, k, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), id))
			json_object_del(sc->idem, k);
}

void sched_retire(struct sched *sc)
{
	double now = vl_wall_time(), clean = sched_spool_ilog_clean(sc->spool);
	struct sched_job **gone = NULL;
	size_t ngone = 0, keep = 0;

	pthread_mutex_lock(&sc->mu);
	for (size_t i = 0; i < sc->njobs; i++) {
		struct sched_job *j = sc->jobs[i];
		if (!retirable(sc, j, now, clean)) {
			sc->jobs[keep++] = j;
			continue;
		}
		gone = vl_realloc(gone, (ngone + 1) * sizeof *gone);
		gone[ngone++] = j;
		/* out of jobs/ under the lock (one rename), so that once the
		 * API answers 404 for a job it is gone from the spool too; its
		 * files go after the lock */
		vl_log(VL_LOG_INFO, "job %s: retention over; its files are removed", j->id);
		sched_spool_detach(sc->spool, j->id);
		json_object_del(sc->index, j->id);
		forget_keys(sc, j->id);
	}
	sc->njobs = keep;
	for (size_t i = 0; ngone && i < sc->njobs; i++)
		json_object_set_new(sc->index, sc->jobs[i]->id, json_integer((json_int_t)i));
	pthread_mutex_unlock(&sc->mu);
	for (size_t i = 0; i < ngone; i++) {
		sched_spool_purge(sc->spool, gone[i]->id);
		free(gone[i]->campaign);
		sched_fb_job_free(gone[i]);
		free(gone[i]);
	}
	free(gone);
}

/* ---- delivery ---- */

int sched_start(struct sched *sc, struct sched_suppress *sup, struct sched_events *ev,
		struct engine *eng, char *err, size_t errlen)
{
	struct sched_deliver *d = sched_deliver_start(sc, sc->cfg, sc->spool, sup, ev, eng, err,
						      errlen);

	if (!d)
		return -1;
	pthread_mutex_lock(&sc->mu);
	sc->d = d;
	sc->sup = sup;
	sc->ev = ev;
	pthread_mutex_unlock(&sc->mu);
	return 0;
}

void sched_stop(struct sched *sc, uint64_t grace_ms)
{
	pthread_mutex_lock(&sc->mu);
	struct sched_deliver *d = sc->d;
	sc->d = NULL;             /* nobody finds it any more */
	pthread_mutex_unlock(&sc->mu);
	sched_deliver_stop(d, grace_ms);
	pthread_mutex_lock(&sc->mu);
	for (size_t i = 0; i < sc->njobs; i++)
		sc->jobs[i]->d = NULL;
	pthread_mutex_unlock(&sc->mu);
}

json_t *sched_queues_json(struct sched *sc)
{
	pthread_mutex_lock(&sc->mu);
	struct sched_deliver *d = sc->d;
	pthread_mutex_unlock(&sc->mu);
	return d ? sched_deliver_queues_json(d) : json_pack("{s:[]}", "queues");
}

json_t *sched_tls_check(struct sched *sc, const char *domain)
{
	pthread_mutex_lock(&sc->mu);
	struct sched_deliver *d = sc->d;
	pthread_mutex_unlock(&sc->mu);
	return d ? sched_deliver_tls_check(d, domain) : NULL;
}

int sched_reload(struct sched *sc, const struct cfg *c, char *err, size_t errlen)
{
	pthread_mutex_lock(&sc->mu);
	struct sched_deliver *d = sc->d;
	pthread_mutex_unlock(&sc->mu);
	if (!d)
		return vl_fail(err, errlen, "delivery is not running");
	return sched_deliver_reload(d, c, err, errlen);
}

bool sched_accepting(struct sched *sc)
{
	return !sched_deliver_blocked(sc->d);
}

struct sched_hist *sched_hist_of(struct sched *sc)
{
	return sc->hist;
}

json_t *sched_history_json(struct sched *sc, unsigned seconds)
{
	return sched_hist_json(sc->hist, sched_hist_now(), seconds);
}

json_t *sched_stats_json(struct sched *sc)
{
	size_t totals[SCHED_NSTATES] = { 0 }, active = 0;
	json_t *counts = json_object();

	pthread_mutex_lock(&sc->mu);
	for (size_t i = 0; i < sc->njobs; i++) {
		size_t c[SCHED_NSTATES];
		sched_job_counts(sc->jobs[i], c);
		for (int s = 0; s < SCHED_NSTATES; s++)
			totals[s] += c[s];
		active += !job_done(sc->jobs[i]);
	}
	size_t njobs = sc->njobs;
	pthread_mutex_unlock(&sc->mu);
	for (int s = 0; s < SCHED_NSTATES; s++)
		json_object_set_new(counts, state_names[s], json_integer((json_int_t)totals[s]));
	json_t *r = json_pack("{s:I, s:I, s:o}", "jobs", (json_int_t)njobs,
			      "jobs_active", (json_int_t)active, "recipients", counts);
	if (sc->d)
		json_object_set_new(r, "delivery", sched_deliver_stats_json(sc->d));
	return r;
}

void sched_set_tlsrpt(struct sched *sc, struct rpt_store *st)
{
	sc->rpt = st;
}

struct rpt_store *sched_tlsrpt_store(struct sched *sc)
{
	return sc->rpt;
}
