/*
 * The mixed scenario (docs/bench.md): the bulk job, and beside it
 * single-recipient transactional messages at the scenario's submit_rate.
 * Each peer runs twice, mixed and with the bulk alone ("PEER-alone"), so
 * that its bulk throughput under the transactional stream has a reference
 * from the same run. Latency is taken at the receiving end for every peer
 * alike: transactional message i is t<i>@..., its submission time is
 * recorded here (before the API request, the SMTP injection or sendMail),
 * and volley-sink's accept log (--accept-log) says when its message was
 * taken, just before the 250.
 */
#include "vbench.h"
#include "vbench_inject.h"

#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct vb_mixres *vb_mix_new(const struct vb_scen *sc, bool alone, long bulk)
{
	struct vb_mixres *m = vl_calloc(1, sizeof *m);
	m->alone = alone;
	m->bulk = bulk;
	/* the transactional scenario's stream is its recipients */
	m->cap = alone ? 0 : sc->mixed ? sc->mixed_max : sc->recipients;
	m->sent = vl_calloc((size_t)m->cap + 1, sizeof *m->sent);
	m->acked = vl_calloc((size_t)m->cap + 1, sizeof *m->acked);
	m->p50 = m->p99 = m->p999 = m->max = m->ack_p50 = m->ack_p99 = -1;
	m->t0 = vl_wall_time();
	return m;
}

void vb_mix_free(struct vb_mixres *m)
{
	if (!m)
		return;
	free(m->sent);
	free(m->acked);
	free(m->lat_t);
	free(m->lat_ms);
	free(m);
}

/* ---- latency: the sink's accept log against the submissions ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank of the sorted v[n]. */
static double rank(const double *v, size_t n, double p)
{
	size_t k = (size_t)ceil(p * (double)n);
	return v[k ? k - 1 : 0];
}

static void percentiles(struct vb_mixres *m)
{
	size_t n = m->nlat, na = 0;
	double *v = vl_malloc((n + 1) * sizeof *v), *a = vl_malloc(((size_t)m->cap + 1) * sizeof *a);
	memcpy(v, m->lat_ms, n * sizeof *v);
	qsort(v, n, sizeof *v, cmp_double);
	if (n) {
		m->p50 = rank(v, n, 0.50);
		m->p99 = rank(v, n, 0.99);
		m->p999 = rank(v, n, 0.999);
		m->max = v[n - 1];
	}
	for (long i = 0; i < m->cap; i++)
		if (m->acked[i] > 0)
			a[na++] = (m->acked[i] - m->sent[i]) * 1000.0;
	qsort(a, na, sizeof *a, cmp_double);
	if (na) {
		m->ack_p50 = rank(a, na, 0.50);
		m->ack_p99 = rank(a, na, 0.99);
	}
	free(v);
	free(a);
}

/* "t<i>@..." (or u<i>@, the transactional scenario's) to i; -1 if not one
 * of ours. */
static long tx_index(const char *rcpt, long cap)
{
	char *end;
	if (rcpt[0] != 't' && rcpt[0] != 'u')
		return -1;
	long i = strtol(rcpt + 1, &end, 10);
	return end != rcpt + 1 && *end == '@' && i >= 0 && i < cap ? i : -1;
}

static void lat_add(struct vb_mixres *m, double t, double ms, size_t *cap)
{
	if (m->nlat == *cap) {
		*cap = *cap ? *cap * 2 : 4096;
		m->lat_t = vl_realloc(m->lat_t, *cap * sizeof *m->lat_t);
		m->lat_ms = vl_realloc(m->lat_ms, *cap * sizeof *m->lat_ms);
	}
	m->lat_t[m->nlat] = t - m->t0;
	m->lat_ms[m->nlat++] = ms;
}

bool vb_mix_latency(struct vb_mixres *m, const char *alog)
{
	FILE *f = fopen(alog, "r");
	char line[512], rcpt[400];
	unsigned char *seen = vl_calloc((size_t)m->cap + 1, 1);
	long stray = 0, dup = 0;
	size_t cap = 0;
	double t;

	m->nlat = 0;
	while (f && fgets(line, sizeof line, f)) {
		if (sscanf(line, "%lf %399s", &t, rcpt) != 2)
			continue;
		long i = tx_index(rcpt, m->cap);
		if (i < 0 || m->sent[i] <= 0) {
			stray++;
			continue;
		}
		if (seen[i]++) {
			dup++;
			continue;
		}
		lat_add(m, t, (t - m->sent[i]) * 1000.0, &cap);
	}
	if (f)
		fclose(f);
	free(seen);
	m->tx_delivered = (long)m->nlat;
	percentiles(m);
	long missing = m->tx_sent - m->tx_delivered;
	if (missing || stray || dup)
		snprintf(m->why, sizeof m->why, "transactional: %ld acknowledged, %ld at the sink, "
			 "%ld missing, %ld unknown, %ld twice", m->tx_sent, m->tx_delivered, missing,
			 stray, dup);
	return !missing && !stray && !dup && (m->alone || m->tx_sent > 0);
}

double vb_mix_bulk_time(const struct vb_result *r, long bulk)
{
	for (int i = 0; i < r->nseries; i++)
		if (r->sv[i] - r->sl[i] >= bulk)
			return r->st[i];
	return r->nseries ? r->st[r->nseries - 1] : 0;
}

/* ---- volley: transactional jobs through the API ---- */

/* Enough requests at once that the stream keeps its rate when answers
 * are slow: arrivals do not wait for earlier answers, as an application's
 * many request threads would not. */
#define VB_TX_THREADS 16

struct vb_txapi {
	char sock[PATH_MAX];
	double rate, t0;          /* t0: vb_now() at the start */
	struct vb_mixres *m;
	json_t *job;              /* the transactional job, recipients added per request */
	char **lines;             /* its recipients, one JSON object each */
	long nlines;
	atomic_long next, sent, failed;
	atomic_bool stop;
	pthread_t th[VB_TX_THREADS];
	int nth;
};

/* Sleep until due (vb_now() seconds), waking for a stop. */
static bool tx_wait(struct vb_txapi *t, double due)
{
	for (double now; (now = vb_now()) < due;) {
		if (atomic_load(&t->stop))
			return false;
		double s = due - now > 0.002 ? 0.002 : due - now;
		struct timespec ts = { 0, (long)(s * 1e9) };
		nanosleep(&ts, NULL);
	}
	return !atomic_load(&t->stop);
}

static void *tx_thread(void *arg)
{
	struct vb_txapi *t = arg;
	struct vb_api *api = vb_api_open(t->sock);
	json_t *job = json_deep_copy(t->job);
	long i;

	while (api && (i = atomic_fetch_add(&t->next, 1)) < t->nlines &&
	       tx_wait(t, t->t0 + (double)i / t->rate)) {
		json_object_set_new(job, "recipients", json_pack("[o]", json_loads(t->lines[i], 0,
										  NULL)));
		char *body = json_dumps(job, JSON_COMPACT);
		double sent = vl_wall_time();
		json_t *ans = body ? vb_api_post_json(api, "/v1/jobs", body) : NULL;
		double acked = vl_wall_time();
		free(body);
		if (!ans) {
			atomic_fetch_add(&t->failed, 1);
			continue;
		}
		json_decref(ans);
		t->m->sent[i] = sent;
		t->m->acked[i] = acked;
		atomic_fetch_add(&t->sent, 1);
	}
	json_decref(job);
	vb_api_close(api);
	return NULL;
}

static int tx_lines(struct vb_txapi *t, const char *path, long max)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (!f)
		return -1;
	t->lines = vl_calloc((size_t)max, sizeof *t->lines);
	while (t->nlines < max && (len = getline(&line, &cap, f)) > 0)
		t->lines[t->nlines++] = vl_strndup(line, (size_t)len);
	free(line);
	fclose(f);
	return t->nlines > 0 ? 0 : -1;
}

struct vb_txapi *vb_txapi_start(const char *sock, const struct vb_work *w, double rate,
				struct vb_mixres *m)
{
	struct vb_txapi *t = vl_calloc(1, sizeof *t);
	snprintf(t->sock, sizeof t->sock, "%s", sock);
	t->rate = rate;
	t->m = m;
	t->job = json_load_file(w->tx_job, 0, NULL);
	if (!t->job || tx_lines(t, w->tx_rcpts, m->cap) < 0) {
		fprintf(stderr, "volley-bench: cannot read %s or %s\n", w->tx_job, w->tx_rcpts);
		t->nlines = 0;
	}
	t->t0 = vb_now();
	for (; t->nlines && t->nth < VB_TX_THREADS; t->nth++)
		pthread_create(&t->th[t->nth], NULL, tx_thread, t);
	return t;
}

int vb_txapi_stop(struct vb_txapi *t)
{
	atomic_store(&t->stop, true);
	for (int i = 0; i < t->nth; i++)
		pthread_join(t->th[i], NULL);
	t->m->tx_sent = atomic_load(&t->sent);
	t->m->tx_failed = atomic_load(&t->failed);
	int rc = t->nth && !t->m->tx_failed ? 0 : -1;
	for (long i = 0; i < t->nlines; i++)
		free(t->lines[i]);
	free(t->lines);
	json_decref(t->job);
	free(t);
	return rc;
}

/* ---- Postfix and Haraka: two injectors ---- */

/* The transactional injector's connections: paced, but as many as keep
 * the rate when the server is slow to answer (each waits for its 250). */
#define VB_TX_INJECT_CONNS 32

struct vb_inject *vb_mix_injector(const struct vb_env *e, struct vb_mixres *m, char *why,
				  size_t len)
{
	struct vb_inject *tx = vl_calloc(1, sizeof *tx);
	struct vb_inject_opts o = {
		.job = e->w->tx_job, .rcpts = e->w->tx_rcpts, .n = m->cap,
		.hostname = "mta1.bench.example", .ip = "127.0.0.1", .conns = VB_TX_INJECT_CONNS,
		.rate = (double)e->sc->submit_rate, .sent_at = m->sent, .acked_at = m->acked,
	};
	if (vb_inject_prepare(tx, &o, why, len) < 0) {
		vb_inject_free(tx);
		free(tx);
		return NULL;
	}
	return tx;
}

/* The sink's recipients and accept-log lines of one stats line. */
static void sink_counts(struct vb_sink *s, long *rcpts, long *logged)
{
	pthread_mutex_lock(&s->mu);
	*rcpts = s->recipients;
	*logged = s->logged;
	pthread_mutex_unlock(&s->mu);
}

int vb_mix_inject_wait(const struct vb_env *e, struct vb_sink *s, struct vb_inject *bulk,
		       struct vb_inject *tx, struct vb_mixres *m, double t0,
		       bool (*dead)(void *arg, char *why, size_t len), void *arg,
		       const char *peer, char *why, size_t len)
{
	bool tx_on = true;
	double last = 0;

	for (;;) {
		long got, logged;
		sink_counts(s, &got, &logged);
		double now = vb_now();
		bool injected = vb_inject_finished(bulk) == bulk->n;
		if (tx_on && injected && got - logged >= atomic_load(&bulk->accepted)) {
			/* The bulk is in: the transactional stream stops, the
			 * sink gets what was acknowledged of it. */
			m->bulk_s = now - t0;
			vb_inject_abort(tx);
			vb_inject_join(tx);
			tx_on = false;
		}
		if (!tx_on && logged >= atomic_load(&tx->accepted))
			return 0;
		if (e->tty && now - last >= 0.2) {
			vb_progress(e, peer, got, bulk->n, now - t0);
			last = now;
		}
		if (dead(arg, why, len))
			return -1;
		if (now - t0 > (double)e->sc->timeout_s) {
			snprintf(why, len, "timed out after %ld s: the sink has %ld bulk of %ld, %ld "
				 "transactional", e->sc->timeout_s, got - logged, bulk->n, logged);
			return -1;
		}
		usleep(20000);
	}
}
