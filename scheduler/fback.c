/*
 * Feedback effects: late bounces and complaints applied to the registry,
 * durably and at most once per recipient and kind (fback.h).
 *
 * Order: the record is appended to jobs/<id>/feedback and fdatasync'd,
 * then counters, the event and the suppression follow. A crash after the
 * record leaves the report in the inbox's new/; processed again, its
 * record is found (a duplicate) and only the suppression, which is
 * idempotent, is done again. Events may then be missing, as after any
 * crash (docs/events.md).
 *
 * Complaint windows per From domain: 24 hourly buckets of delivered and
 * complaints, kept in data_dir/feedback/domains.json (written when a
 * domain is blocked or resumed at once, otherwise every minute: a crash
 * loses at most a minute of delivered counts, which errs towards
 * blocking).
 */
#include "fback_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOURS 24
#define CACHE_FRESH_S 1.0        /* a non-final cached state is read again after */

struct sched_fbset {
	uint32_t *keys;              /* idx + 1; 0 empty */
	uint8_t *fl;
	size_t n, cap;
};

struct fb_dom {
	char name[256];
	uint64_t hour[HOURS];        /* which hour (since the epoch) bucket i holds */
	uint32_t delivered[HOURS], complaints[HOURS];
	bool blocked;
	double since;
	char reason[240];
};

/* ---- per-job recipient flags: a small open-addressing set ---- */

static uint8_t *fbset_slot(struct sched_fbset *s, uint32_t idx, bool add)
{
	if (add && (s->n + 1) * 2 > s->cap) {
		struct sched_fbset o = *s;
		s->cap = o.cap ? o.cap * 2 : 16;
		s->keys = vl_calloc(s->cap, sizeof *s->keys);
		s->fl = vl_calloc(s->cap, 1);
		s->n = 0;
		for (size_t i = 0; i < o.cap; i++)
			if (o.keys[i])
				*fbset_slot(s, o.keys[i] - 1, true) = o.fl[i];
		free(o.keys);
		free(o.fl);
	}
	if (!s->cap)
		return NULL;
	for (size_t i = (idx * 2654435761u) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (s->keys[i] == idx + 1)
			return &s->fl[i];
		if (!s->keys[i]) {
			if (!add)
				return NULL;
			s->keys[i] = idx + 1;
			s->n++;
			return &s->fl[i];
		}
	}
}

uint8_t sched_fb_flags(struct sched_job *j, uint32_t idx)
{
	uint8_t *p = j->fbset ? fbset_slot(j->fbset, idx, false) : NULL;
	return p ? *p : 0;
}

void sched_fb_mark(struct sched_job *j, uint32_t idx, uint8_t flag, bool on)
{
	if (!j->fbset)
		j->fbset = vl_calloc(1, sizeof *j->fbset);
	uint8_t *p = fbset_slot(j->fbset, idx, true);
	*p = on ? *p | flag : *p & (uint8_t)~flag;
}

/* Record r's flag for its recipient; true when it is new. */
static bool fbset_add(struct sched_job *j, const struct sched_jrec *r)
{
	uint8_t f = r->flags & (SCHED_FBR_OOB | SCHED_FBR_COMPLAINT);

	if (!j->fbset)
		j->fbset = vl_calloc(1, sizeof *j->fbset);
	uint8_t *p = fbset_slot(j->fbset, r->idx, true);
	if (!f || (*p & f))
		return false;
	*p |= f;
	if (f & SCHED_FBR_OOB)
		j->fb_oob++;
	if (f & SCHED_FBR_COMPLAINT)
		j->fb_complaints++;
	return true;
}

static void load_rec(void *arg, const struct sched_jrec *r)
{
	struct sched_job *j = arg;

	if (r->idx < j->recipients)
		fbset_add(j, r);
}

void sched_fb_load_job(struct sched *sc, struct sched_job *j)
{
	char path[PATH_MAX];

	if (sched_spool_path(sched_spool_of(sc), j->id, SCHED_SPOOL_FEEDBACK, path,
			     sizeof path) == 0 && sched_journal_replay(path, load_rec, j) < 0)
		vl_log(VL_LOG_ERROR, "job %s: cannot read %s: %s", j->id, path, strerror(errno));
}

void sched_fb_job_free(struct sched_job *j)
{
	if (j->fbset) {
		free(j->fbset->keys);
		free(j->fbset->fl);
		free(j->fbset);
		j->fbset = NULL;
	}
}

/* ---- From domains' 24 h windows ---- */

static uint64_t hour_now(void)
{
	return (uint64_t)(vl_wall_time() / 3600);
}

static struct fb_dom *dom_get(struct sched_fbstate *fs, const char *name, bool create)
{
	for (size_t i = 0; i < fs->ndoms; i++)
		if (!strcasecmp(fs->doms[i].name, name))
			return &fs->doms[i];
	if (!create || !*name || strlen(name) >= sizeof fs->doms->name)
		return NULL;
	fs->doms = vl_realloc(fs->doms, (fs->ndoms + 1) * sizeof *fs->doms);
	struct fb_dom *d = &fs->doms[fs->ndoms++];
	memset(d, 0, sizeof *d);
	snprintf(d->name, sizeof d->name, "%s", name);
	return d;
}

static size_t bucket(struct fb_dom *d, uint64_t h)
{
	size_t b = h % HOURS;
	if (d->hour[b] != h) {
		d->hour[b] = h;
		d->delivered[b] = d->complaints[b] = 0;
	}
	return b;
}

static void dom_sums(const struct fb_dom *d, uint64_t now, uint64_t *del, uint64_t *comp)
{
	*del = *comp = 0;
	for (size_t b = 0; b < HOURS; b++)
		if (d->hour[b] + HOURS > now && d->hour[b] <= now) {
			*del += d->delivered[b];
			*comp += d->complaints[b];
		}
}

static void dom_save(struct sched_fbstate *fs)
{
	json_t *a = json_array();
	char tmp[PATH_MAX + 8];

	for (size_t i = 0; i < fs->ndoms; i++) {
		struct fb_dom *d = &fs->doms[i];
		json_t *bk = json_array();
		for (size_t b = 0; b < HOURS; b++)
			if (d->delivered[b] || d->complaints[b])
				json_array_append_new(bk, json_pack("[I,I,I]", (json_int_t)d->hour[b],
								    (json_int_t)d->delivered[b],
								    (json_int_t)d->complaints[b]));
		json_array_append_new(a, json_pack("{s:s, s:o, s:b, s:f, s:s}", "name", d->name,
						   "buckets", bk, "blocked", d->blocked,
						   "since", d->since, "reason", d->reason));
	}
	json_t *o = json_pack("{s:o}", "domains", a);
	snprintf(tmp, sizeof tmp, "%s.new", fs->dom_path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	char *text = json_dumps(o, JSON_COMPACT);
	size_t n = strlen(text);
	bool ok = fd >= 0 && write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (ok && rename(tmp, fs->dom_path) == 0)
		fs->dirty = false;
	else
		vl_log(VL_LOG_ERROR, "feedback: cannot write %s: %s", fs->dom_path, strerror(errno));
	free(text);
	json_decref(o);
}

static void dom_load(struct sched_fbstate *fs)
{
	json_error_t je;
	json_t *o = json_load_file(fs->dom_path, 0, &je), *v, *b;
	size_t i, k;

	if (!o) {
		if (access(fs->dom_path, F_OK) == 0)
			vl_log(VL_LOG_ERROR, "feedback: %s unreadable (%s): complaint windows "
			       "start empty", fs->dom_path, je.text);
		return;
	}
	json_array_foreach(json_object_get(o, "domains"), i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));
		struct fb_dom *d = name ? dom_get(fs, name, true) : NULL;
		if (!d)
			continue;
		json_array_foreach(json_object_get(v, "buckets"), k, b) {
			uint64_t h = (uint64_t)json_integer_value(json_array_get(b, 0));
			size_t x = bucket(d, h);
			d->delivered[x] = (uint32_t)json_integer_value(json_array_get(b, 1));
			d->complaints[x] = (uint32_t)json_integer_value(json_array_get(b, 2));
		}
		d->blocked = json_is_true(json_object_get(v, "blocked"));
		d->since = json_number_value(json_object_get(v, "since"));
		snprintf(d->reason, sizeof d->reason, "%s",
			 json_string_value(json_object_get(v, "reason")) ?: "");
		if (d->blocked)
			fs->any_blocked = true;
	}
	json_decref(o);
}

void sched_fb_delivered(struct sched *sc, const char *domain, size_t n)
{
	struct sched_fbstate *fs = sched_fbstate(sc);

	pthread_mutex_lock(&fs->mu);
	struct fb_dom *d = dom_get(fs, domain, true);
	if (d) {
		d->delivered[bucket(d, hour_now())] += (uint32_t)n;
		fs->dirty = true;
	}
	pthread_mutex_unlock(&fs->mu);
}

bool sched_fb_any_blocked(struct sched *sc)
{
	return atomic_load(&sched_fbstate(sc)->any_blocked);
}

bool sched_fb_domain_blocked(struct sched *sc, const char *domain, char *why, size_t whylen)
{
	struct sched_fbstate *fs = sched_fbstate(sc);
	bool b = false;

	if (!atomic_load(&fs->any_blocked) || !*domain)
		return false;
	pthread_mutex_lock(&fs->mu);
	struct fb_dom *d = dom_get(fs, domain, false);
	if (d && d->blocked) {
		b = true;
		snprintf(why, whylen, "%s", d->reason);
	}
	pthread_mutex_unlock(&fs->mu);
	return b;
}

/* ---- state ---- */

struct sched_fbstate *sched_fbstate_new(const struct cfg *c)
{
	struct sched_fbstate *fs = vl_calloc(1, sizeof *fs);
	char dir[PATH_MAX], err[256];

	pthread_mutex_init(&fs->mu, NULL);
	fs->rate = c->feedback.complaint_rate > 0 ? c->feedback.complaint_rate : 0.003;
	fs->min_delivered = c->feedback.complaint_min_delivered > 0 ?
			    (size_t)c->feedback.complaint_min_delivered : 1000;
	snprintf(dir, sizeof dir, "%s/feedback", c->data_dir);
	mkdir(dir, 0750);
	if (asprintf(&fs->dom_path, "%s/domains.json", dir) < 0)
		abort();
	dom_load(fs);
	if (!(fs->rules = sched_bounce_load(c->bounce_rules, err, sizeof err)))
		fs->rules = sched_bounce_load(NULL, err, sizeof err);
	return fs;
}

void sched_fbstate_free(struct sched_fbstate *fs)
{
	if (!fs)
		return;
	if (fs->dirty)
		dom_save(fs);
	sched_bounce_free(fs->rules);
	free(fs->doms);
	free(fs->dom_path);
	free(fs->cache_st);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
}

void sched_feedback_config(struct sched *sc, double complaint_rate, size_t min_delivered)
{
	struct sched_fbstate *fs = sched_fbstate(sc);

	if (complaint_rate > 0)
		fs->rate = complaint_rate;
	if (min_delivered)
		fs->min_delivered = min_delivered;
}

/* The processor's tick: windows written when they changed. */
void sched_fb_tick(struct sched *sc)
{
	struct sched_fbstate *fs = sched_fbstate(sc);

	pthread_mutex_lock(&fs->mu);
	if (fs->dirty)
		dom_save(fs);
	pthread_mutex_unlock(&fs->mu);
}

struct sched_fbproc **sched_fb_proc_slot(struct sched *sc)
{
	return &sched_fbstate(sc)->proc;
}

/* ---- a recipient's committed state, from its job's journal ---- */

struct replay {
	uint8_t *st;
	size_t n;
};

static void state_rec(void *arg, const struct sched_jrec *r)
{
	struct replay *x = arg;

	if (r->idx < x->n) {
		x->st[r->idx] = r->state;
		return;
	}
	for (size_t i = 0; r->idx == SCHED_JREC_ALL && i < x->n; i++)
		if (!sched_rstate_final(x->st[i]))
			x->st[i] = r->state;
}

/* Under fs->mu. Kept for one job: reports come in bursts per campaign. */
static int rstate(struct sched *sc, struct sched_fbstate *fs, const char *id, size_t n,
		  uint32_t idx)
{
	double now = vl_wall_time();
	bool same = !strcmp(fs->cache_id, id) && fs->cache_n == n;

	if (!same || (!sched_rstate_final(fs->cache_st[idx]) && now - fs->cache_at > CACHE_FRESH_S)) {
		char path[PATH_MAX];
		struct replay x = { vl_calloc(n + 1, 1), n };
		if (sched_spool_path(sched_spool_of(sc), id, SCHED_SPOOL_JOURNAL, path,
				     sizeof path) < 0 || sched_journal_replay(path, state_rec, &x) < 0) {
			free(x.st);
			return -1;
		}
		free(fs->cache_st);
		fs->cache_st = x.st;
		fs->cache_n = n;
		fs->cache_at = now;
		snprintf(fs->cache_id, sizeof fs->cache_id, "%s", id);
	}
	return fs->cache_st[idx];
}

int sched_fb_rstate(struct sched *sc, const char *id, size_t n, uint32_t idx)
{
	struct sched_fbstate *fs = sched_fbstate(sc);

	pthread_mutex_lock(&fs->mu);
	int st = rstate(sc, fs, id, n, idx);
	pthread_mutex_unlock(&fs->mu);
	return st;
}

bool sched_fb_over(double rate, size_t min, uint64_t comp, uint64_t del, char *why, size_t n)
{
	if (del < min || (double)comp <= rate * (double)del)
		return false;
	snprintf(why, n, "complaint rate %.2f%% (%llu of %llu delivered) is over %.2f%%",
		 100.0 * (double)comp / (double)del, (unsigned long long)comp,
		 (unsigned long long)del, 100 * rate);
	return true;
}

bool sched_fb_domain_complaint(struct sched *sc, const char *domain, char *why, size_t whylen)
{
	struct sched_fbstate *fs = sched_fbstate(sc);
	char rate[120];
	uint64_t del, comp;
	bool block = false;

	if (!*domain)
		return false;
	pthread_mutex_lock(&fs->mu);
	struct fb_dom *d = dom_get(fs, domain, true);
	if (d) {
		uint64_t h = hour_now();
		d->complaints[bucket(d, h)]++;
		fs->dirty = true;
		dom_sums(d, h, &del, &comp);
		if (!d->blocked && sched_fb_over(fs->rate, fs->min_delivered, comp, del, rate,
						 sizeof rate)) {
			if (snprintf(why, whylen, "sending domain %s: %s over 24 h; resume with "
				     "`volley feedback resume-domain %s`", domain, rate,
				     domain) >= (int)whylen)
				snprintf(why, whylen, "sending domain %.60s: %.120s", domain, rate);
			d->blocked = block = true;
			d->since = vl_wall_time();
			snprintf(d->reason, sizeof d->reason, "%s", why);
			fs->any_blocked = true;
			fs->n_dom_blocks++;
			dom_save(fs);
		}
	}
	pthread_mutex_unlock(&fs->mu);
	return block;
}

/* ---- views ---- */

json_t *sched_feedback_domains_json(struct sched *sc)
{
	struct sched_fbstate *fs = sched_fbstate(sc);
	json_t *a = json_array();
	uint64_t h = hour_now(), del, comp;
	char since[32];

	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->ndoms; i++) {
		struct fb_dom *d = &fs->doms[i];
		dom_sums(d, h, &del, &comp);
		if (d->blocked)
			vl_iso8601(d->since, since);
		json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:f, s:b, s:o, s:o}",
			"domain", d->name, "delivered_24h", (json_int_t)del,
			"complaints_24h", (json_int_t)comp,
			"complaint_rate", del ? (double)comp / (double)del : 0.0,
			"blocked", d->blocked,
			"blocked_since", d->blocked ? json_string(since) : json_null(),
			"reason", d->blocked ? json_string(d->reason) : json_null()));
	}
	json_t *o = json_pack("{s:o, s:f, s:I}", "domains", a, "threshold", fs->rate,
			      "min_delivered", (json_int_t)fs->min_delivered);
	pthread_mutex_unlock(&fs->mu);
	return o;
}

int sched_feedback_domain_resume(struct sched *sc, const char *domain, char *why, size_t whylen)
{
	struct sched_fbstate *fs = sched_fbstate(sc);
	char (*ids)[SCHED_ID_LEN + 1] = NULL;
	size_t n = 0;

	pthread_mutex_lock(&fs->mu);
	struct fb_dom *d = dom_get(fs, domain, false);
	bool was = d && d->blocked;
	if (was) {
		/* a fresh window: the old complaints would block it again at once */
		d->blocked = false;
		d->reason[0] = '\0';
		memset(d->delivered, 0, sizeof d->delivered);
		memset(d->complaints, 0, sizeof d->complaints);
		bool any = false;
		for (size_t i = 0; i < fs->ndoms; i++)
			any |= fs->doms[i].blocked;
		fs->any_blocked = any;
		dom_save(fs);
	}
	pthread_mutex_unlock(&fs->mu);
	if (!was) {
		snprintf(why, whylen, "sending domain %s is not blocked", domain);
		return -1;
	}
	sched_lock(sc);
	for (size_t i = 0; i < sched_njobs(sc); i++) {
		struct sched_job *j = sched_job_at(sc, i);
		if (j->state == SCHED_J_PAUSED && !strcasecmp(j->from_domain, domain) &&
		    !strncmp(j->pause_reason, "sending domain ", 15)) {
			ids = vl_realloc(ids, (n + 1) * sizeof *ids);
			memcpy(ids[n++], j->id, SCHED_ID_LEN + 1);
		}
	}
	sched_unlock(sc);
	for (size_t i = 0; i < n; i++) {
		json_t *o = NULL;
		char w[200];
		if (sched_job_control(sc, ids[i], SCHED_RESUME, &o, w, sizeof w) == 0)
			vl_log(VL_LOG_INFO, "job %s: resumed with sending domain %s", ids[i], domain);
		json_decref(o);
	}
	free(ids);
	vl_log(VL_LOG_WARN, "feedback: sending domain %s resumed (%zu jobs)", domain, n);
	return 0;
}

void sched_fb_metrics_effects(struct sched *sc, struct vl_buf *out)
{
	struct sched_fbstate *fs = sched_fbstate(sc);
	static const char *const names[] = { "bounced", "recorded", "complaint", "duplicate",
					     "suppressed", "unmatched" };
	uint64_t v[6];
	size_t blocked = 0;

	pthread_mutex_lock(&fs->mu);
	v[0] = fs->n_bounced; v[1] = fs->n_recorded; v[2] = fs->n_complaints;
	v[3] = fs->n_dup; v[4] = fs->n_suppressed; v[5] = fs->n_unmatched;
	uint64_t jp = fs->n_job_pauses, db = fs->n_dom_blocks;
	for (size_t i = 0; i < fs->ndoms; i++)
		blocked += fs->doms[i].blocked;
	pthread_mutex_unlock(&fs->mu);
	for (size_t i = 0; i < 6; i++) {
		char l[64];
		snprintf(l, sizeof l, "{effect=\"%s\"}", names[i]);
		vl_prom_metric(out, "volley_feedback_effects_total", "counter",
			       i ? NULL : "Report outcomes applied, by effect.", l, (double)v[i]);
	}
	vl_prom_metric(out, "volley_feedback_job_pauses_total", "counter",
		       "Jobs paused for their complaint rate.", NULL, (double)jp);
	vl_prom_metric(out, "volley_feedback_domain_blocks_total", "counter",
		       "Sending domains blocked for their complaint rate.", NULL, (double)db);
	vl_prom_metric(out, "volley_feedback_domains_blocked", "gauge",
		       "Sending domains blocked now.", NULL, (double)blocked);
}
