/*
 * The job registry: what the API shows and controls. Each job keeps a few
 * fields in memory (never its content or recipients, which stay in the
 * spool). The API's threads call in concurrently, so one mutex guards it;
 * nothing here is on the delivery hot path.
 */
#include "scheduler.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum jstate { J_ACTIVE, J_PAUSED, J_CANCELLED };
static const char *const jstate_names[] = { "active", "paused", "cancelled" };

struct job {
	char id[SCHED_ID_LEN + 1];
	char *campaign;
	bool transactional;
	double created, expires, finished;
	size_t recipients;
	enum jstate state;
	size_t counts[SCHED_NSTATES];
};

struct sched {
	const struct vl_config *cfg;
	struct sched_spool *spool;
	char *jobs_dir;
	pthread_mutex_t mu;
	struct job **jobs;       /* in creation (id) order */
	size_t njobs, cap;
	json_t *index;           /* id -> position in jobs */
	json_t *idem;            /* key -> id, or null while being received */
};

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

static struct job *find(struct sched *sc, const char *id)
{
	json_t *v = json_object_get(sc->index, id);
	return v ? sc->jobs[json_integer_value(v)] : NULL;
}

static bool job_done(const struct job *j)
{
	return j->counts[SCHED_QUEUED] + j->counts[SCHED_IN_FLIGHT] +
	       j->counts[SCHED_DEFERRED] == 0;
}

/* Counters follow the job's control state until the journal (issue 5)
 * gives each recipient its own outcome. */
static void recount(struct job *j)
{
	memset(j->counts, 0, sizeof j->counts);
	j->counts[j->state == J_CANCELLED ? SCHED_CANCELLED : SCHED_QUEUED] = j->recipients;
}

static void read_control(struct sched *sc, struct job *j)
{
	char path[512], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof path, "%s/%s/control", sc->jobs_dir, j->id);
	if (!(f = fopen(path, "r")))
		return;
	if (fgets(buf, sizeof buf, f)) {
		double t = 0;
		char word[16] = "";
		sscanf(buf, "%15s %lf", word, &t);
		if (strcmp(word, "paused") == 0)
			j->state = J_PAUSED;
		else if (strcmp(word, "cancelled") == 0) {
			j->state = J_CANCELLED;
			j->finished = t;
		}
	}
	fclose(f);
}

static void add_job(struct sched *sc, struct job *j)
{
	if (sc->njobs == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 64;
		sc->jobs = realloc(sc->jobs, sc->cap * sizeof *sc->jobs);
		if (!sc->jobs)
			abort();
	}
	json_object_set_new(sc->index, j->id, json_integer((json_int_t)sc->njobs));
	sc->jobs[sc->njobs++] = j;
}

static struct job *job_from_meta(const char *id, json_t *meta)
{
	struct job *j = calloc(1, sizeof *j);
	json_t *job = json_object_get(meta, "job");
	const char *campaign = json_string_value(json_object_get(job, "campaign"));
	const char *prio = json_string_value(json_object_get(job, "priority"));

	snprintf(j->id, sizeof j->id, "%s", id);
	j->campaign = campaign ? strdup(campaign) : NULL;
	j->transactional = prio && strcmp(prio, "transactional") == 0;
	j->created = json_number_value(json_object_get(meta, "created"));
	j->expires = json_number_value(json_object_get(meta, "expires"));
	j->recipients = (size_t)json_integer_value(json_object_get(meta, "recipients"));
	return j;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every job dir, in id (= time) order. */
static int load_all(struct sched *sc, char *err, size_t errlen)
{
	DIR *d = opendir(sc->jobs_dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		snprintf(err, errlen, "cannot read %s: %s", sc->jobs_dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof *names);
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof *names, cmp_name);
	for (size_t i = 0; i < n; i++) {
		char path[512];
		json_error_t je;
		snprintf(path, sizeof path, "%s/%s/job.json", sc->jobs_dir, names[i]);
		json_t *meta = json_load_file(path, 0, &je);
		if (!meta) {
			vl_log(VL_LOG_ERROR, "spool: skipping job %s: %s: %s", names[i], path, je.text);
		} else {
			struct job *j = job_from_meta(names[i], meta);
			read_control(sc, j);
			recount(j);
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
		char path[512];
		snprintf(path, sizeof path, "%s/%s/job.json", sc->jobs_dir, sc->jobs[i]->id);
		json_t *meta = json_load_file(path, 0, NULL);
		const char *key = json_string_value(json_object_get(meta, "idempotency_key"));
		if (key)
			json_object_set_new(sc->idem, key, json_string(sc->jobs[i]->id));
		json_decref(meta);
	}
}

struct sched *sched_new(const struct vl_config *c, struct sched_spool *s,
			char *err, size_t errlen)
{
	struct sched *sc = calloc(1, sizeof *sc);

	sc->cfg = c;
	sc->spool = s;
	if (asprintf(&sc->jobs_dir, "%s/jobs", c->data_dir) < 0)
		abort();
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
		free(sc->jobs[i]);
	}
	free(sc->jobs);
	json_decref(sc->index);
	json_decref(sc->idem);
	free(sc->jobs_dir);
	pthread_mutex_destroy(&sc->mu);
	free(sc);
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

int sched_job_add(struct sched *sc, const char *id, json_t *meta)
{
	struct job *j = job_from_meta(id, meta);
	const char *key = json_string_value(json_object_get(meta, "idempotency_key"));

	recount(j);
	pthread_mutex_lock(&sc->mu);
	add_job(sc, j);
	if (key)
		json_object_set_new(sc->idem, key, json_string(id));
	pthread_mutex_unlock(&sc->mu);
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

static json_t *job_json(const struct job *j)
{
	json_t *counts = json_object();
	bool done = job_done(j);

	for (int i = 0; i < SCHED_NSTATES; i++)
		json_object_set_new(counts, state_names[i], json_integer((json_int_t)j->counts[i]));
	return json_pack("{s:s, s:o, s:s, s:s, s:o, s:o, s:I, s:o, s:{s:f}, s:b, s:o}",
			 "id", j->id,
			 "campaign", j->campaign ? json_string(j->campaign) : json_null(),
			 "priority", j->transactional ? "transactional" : "bulk",
			 "state", done && j->state != J_CANCELLED ? "done" : jstate_names[j->state],
			 "created", time_or_null(j->created),
			 "expires", time_or_null(j->expires),
			 "recipients", (json_int_t)j->recipients,
			 "counts", counts,
			 "rate", "delivered_per_s", 0.0,
			 "done", done,
			 "finished", time_or_null(done ? j->finished : 0));
}

json_t *sched_job_json(struct sched *sc, const char *id)
{
	pthread_mutex_lock(&sc->mu);
	struct job *j = find(sc, id);
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
	char path[512];

	snprintf(path, sizeof path, "%s/%s/job.json", sc->jobs_dir, id);
	json_t *meta = json_load_file(path, 0, NULL);
	json_t *acc = json_incref(json_object_get(meta, "accept"));
	json_decref(meta);
	return acc;
}

/* control: written to a temporary name, fsync'd and renamed, so a crash
 * leaves the old state or the new one. */
static int write_control(struct sched *sc, struct job *j, const char *word, double t)
{
	char path[512], tmp[520], line[64];
	int n = snprintf(line, sizeof line, "%s %.3f\n", word, t);

	snprintf(path, sizeof path, "%s/%s/control", sc->jobs_dir, j->id);
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

static int transition(struct job *j, enum sched_op op, enum jstate *to,
		      char *why, size_t whylen)
{
	static const char *const verbs[] = { "pause", "resume", "cancel" };
	bool done = job_done(j);

	if (j->state == J_CANCELLED || done) {
		snprintf(why, whylen, "cannot %s job %s: it is %s", verbs[op], j->id,
			 j->state == J_CANCELLED ? "cancelled" : "done");
		return -2;
	}
	*to = op == SCHED_PAUSE ? J_PAUSED : op == SCHED_RESUME ? J_ACTIVE : J_CANCELLED;
	return 0;
}

int sched_job_control(struct sched *sc, const char *id, enum sched_op op,
		      json_t **out, char *why, size_t whylen)
{
	static const char *const words[] = { "", "paused", "cancelled" };
	enum jstate to;
	int rc;

	pthread_mutex_lock(&sc->mu);
	struct job *j = find(sc, id);
	if (!j) {
		rc = -1;
	} else if ((rc = transition(j, op, &to, why, whylen)) == 0 && to != j->state) {
		double now = vl_wall_time();
		if (write_control(sc, j, words[to], now) < 0) {
			snprintf(why, whylen, "cannot record the job's state: %s", strerror(errno));
			rc = -3;
		} else {
			j->state = to;
			if (to == J_CANCELLED)
				j->finished = now;
			recount(j);
		}
	}
	if (rc == 0)
		*out = job_json(j);
	pthread_mutex_unlock(&sc->mu);
	return rc;
}

static void rcpt_line(struct vl_buf *b, size_t i, const struct sched_rcpt *r,
		      enum sched_state st)
{
	vl_buf_printf(b, "{\"index\":%zu,\"email\":", i);
	vl_buf_json_string(b, r->email);
	vl_buf_printf(b, ",\"state\":\"%s\",\"attempts\":0,\"updated\":null,"
		      "\"bounce_class\":null,\"response\":null}\n", state_names[st]);
}

struct sched_cursor {
	struct sched_table *t;
	enum sched_state st, filter;
	size_t next;
	struct vl_buf pending;   /* formatted, not yet read */
	struct sched_rcpt r;
};

struct sched_cursor *sched_recipients_open(struct sched *sc, const char *id,
					   enum sched_state filter)
{
	pthread_mutex_lock(&sc->mu);
	struct job *j = find(sc, id);
	enum sched_state st = j && j->state == J_CANCELLED ? SCHED_CANCELLED : SCHED_QUEUED;
	pthread_mutex_unlock(&sc->mu);
	if (!j)
		return NULL;
	struct sched_table *t = sched_table_open(sc->spool, id);
	if (!t)
		return NULL;
	struct sched_cursor *c = calloc(1, sizeof *c);
	c->t = t;
	c->st = st;
	c->filter = filter;
	vl_buf_init(&c->pending);
	return c;
}

size_t sched_recipients_read(struct sched_cursor *c, char *buf, size_t max)
{
	bool match = c->filter == SCHED_NSTATES || c->filter == c->st;

	while (match && c->pending.len < max && c->next < sched_table_count(c->t)) {
		if (sched_table_get(c->t, c->next, &c->r) < 0) {
			c->next = sched_table_count(c->t);
			break;
		}
		rcpt_line(&c->pending, c->next++, &c->r, c->st);
	}
	size_t n = c->pending.len < max ? c->pending.len : max;
	memcpy(buf, c->pending.p, n);
	vl_buf_consume(&c->pending, n);
	return n;
}

void sched_recipients_close(struct sched_cursor *c)
{
	if (!c)
		return;
	sched_table_close(c->t);
	vl_buf_free(&c->pending);
	free(c);
}

json_t *sched_stats_json(struct sched *sc)
{
	size_t totals[SCHED_NSTATES] = { 0 }, active = 0;
	json_t *counts = json_object();

	pthread_mutex_lock(&sc->mu);
	for (size_t i = 0; i < sc->njobs; i++) {
		for (int s = 0; s < SCHED_NSTATES; s++)
			totals[s] += sc->jobs[i]->counts[s];
		active += !job_done(sc->jobs[i]);
	}
	size_t njobs = sc->njobs;
	pthread_mutex_unlock(&sc->mu);
	for (int s = 0; s < SCHED_NSTATES; s++)
		json_object_set_new(counts, state_names[s], json_integer((json_int_t)totals[s]));
	return json_pack("{s:I, s:I, s:o}", "jobs", (json_int_t)njobs,
			 "jobs_active", (json_int_t)active, "recipients", counts);
}
