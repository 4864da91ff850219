/*
 * The feedback processor: one thread ("vl-feedback") that reads the
 * inbox's new/ (what the return-path receiver and the IMAP fetcher
 * stored), parses each message with feedback/, matches it to a job and a
 * recipient (the VERP return path, then the returned Message-ID, then the
 * address within that job), applies the outcome (fback.c) and moves the
 * file to cur/ once the effects are durable. One line per outcome goes to
 * reports.jsonl for `volley feedback` (not fsync'd: the effects are in
 * the jobs' feedback files, the log is for people).
 */
#include "sched_int.h"

#include "../feedback/feedback.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PASS_MS 250              /* new/ is looked at this often */
#define PASS_MAX 200             /* reports per pass (and per commit) */
#define TICK_S 60.0              /* complaint windows written */
#define PRUNE_S 3600.0           /* cur/ pruned by feedback.retain */
#define LOG_MAX (16u << 20)      /* reports.jsonl rotated to .1 past this */
#define TAIL_MAX (8u << 20)      /* read at most this much for a listing */

enum { K_DSN, K_ARF, K_HEUR, K_NOT, K_ERR, K_COUNT };
static const char *const kind_names[K_COUNT] = { "dsn", "arf", "heuristic", "not-report",
						 "error" };

struct sched_fbproc {
	struct sched *sc;
	char *dir;
	char newdir[PATH_MAX], curdir[PATH_MAX], log_path[PATH_MAX];
	uint64_t retain_ms;
	pthread_t tid;
	pthread_mutex_t mu;          /* stop, counters, the log file */
	pthread_cond_t cv;
	bool stop;
	int logfd;
	uint64_t kinds[K_COUNT], failed;
	double last_tick, last_prune;
	struct sched_fb_batch *batch;
};

/* ---- the reports log ---- */

static void log_open(struct sched_fbproc *p)
{
	p->logfd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (p->logfd < 0)
		vl_log(VL_LOG_ERROR, "feedback: cannot open %s: %s", p->log_path, strerror(errno));
}

static void log_line(struct sched_fbproc *p, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	size_t n = strlen(s);
	struct stat st;

	s = vl_realloc(s, n + 2);
	s[n++] = '\n';
	pthread_mutex_lock(&p->mu);
	if (p->logfd >= 0 && fstat(p->logfd, &st) == 0 && (uint64_t)st.st_size > LOG_MAX) {
		char old[PATH_MAX + 4];
		snprintf(old, sizeof old, "%s.1", p->log_path);
		close(p->logfd);
		rename(p->log_path, old);
		log_open(p);
	}
	if (p->logfd >= 0 && write(p->logfd, s, n) != (ssize_t)n)
		vl_log(VL_LOG_ERROR, "feedback: cannot write %s: %s", p->log_path, strerror(errno));
	pthread_mutex_unlock(&p->mu);
	free(s);
}

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

/* The log line of one outcome. */
static json_t *entry(const char *file, const char *kind, const struct fb_report *r,
		     const struct sched_fb *f, const struct sched_fb_result *res, const char *err)
{
	char when[32];

	vl_iso8601(vl_wall_time(), when);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "time", when, "file", file,
			      "source", strncmp(file, "imap-", 5) ? "smtp" : "imap", "kind", kind);
	json_object_set_new(o, "from", str_or_null(r ? r->from : NULL));
	json_object_set_new(o, "subject", str_or_null(r ? r->subject : NULL));
	json_object_set_new(o, "feedback_type", str_or_null(f ? f->feedback_type : NULL));
	json_object_set_new(o, "status", str_or_null(f ? f->status : NULL));
	json_object_set_new(o, "diagnostic", str_or_null(f ? f->diag : NULL));
	json_object_set_new(o, "recipient", str_or_null(res && *res->email ? res->email :
							f ? f->email : NULL));
	json_object_set_new(o, "job", str_or_null(res && *res->job ? res->job :
						  f ? f->job : NULL));
	json_object_set_new(o, "index", res && res->index >= 0 ? json_integer(res->index)
							      : json_null());
	json_object_set_new(o, "matched_by", str_or_null(f && res && res->index >= 0 ?
							 f->matched_by : NULL));
	json_object_set_new(o, "effect", json_string(res ? res->effect : "none"));
	json_object_set_new(o, "note", str_or_null(res && *res->note ? res->note : err));
	return o;
}

/* ---- from a parsed report to outcomes ---- */

struct match {
	char job[FB_JOB_ID_LEN + 1];
	size_t index;
	bool has_job, has_index;
	const char *by;
};

/* One stored message of a pass and its outcomes. */
struct item {
	struct sched_fb f;
	struct sched_fb_result res;
};

struct doc {
	char *name;
	int kind;
	char err[256];
	struct fb_report r;
	struct match m;
	struct item *items;
	size_t nitems;
};

/* VERP first (the path the report came back to, or an ARF's
 * Original-Mail-From), then the returned Message-ID. */
static void match_report(const struct fb_report *r, struct match *m)
{
	bool hi;

	memset(m, 0, sizeof *m);
	const char *verp = r->kind == FB_ARF ? r->orig_mail_from : r->envelope_to;
	if ((verp && fb_match_verp(verp, m->job, &m->index)) ||
	    (r->kind == FB_ARF && r->envelope_to && fb_match_verp(r->envelope_to, m->job,
								     &m->index))) {
		m->has_job = m->has_index = true;
		m->by = "verp";
	} else if (r->orig_msgid && fb_match_msgid(r->orig_msgid, m->job, &m->index, &hi)) {
		m->has_job = true;
		m->has_index = hi;
		m->by = hi ? "message-id" : "message-id+recipient";
	}
}

static enum sched_fb_kind dsn_kind(const struct fb_rcpt *rc, bool *skip)
{
	*skip = false;
	switch (rc->action) {
	case FB_ACT_FAILED:
		return SCHED_FB_OOB_HARD;
	case FB_ACT_DELAYED:
		return SCHED_FB_OOB_SOFT;
	case FB_ACT_NONE:    /* a heuristic bounce: its status decides */
		return rc->status[0] == '4' ? SCHED_FB_OOB_SOFT : SCHED_FB_OOB_HARD;
	case FB_ACT_OTHER:
		return rc->status[0] == '5' ? SCHED_FB_OOB_HARD : SCHED_FB_OOB_SOFT;
	default:             /* delivered, relayed, expanded: no failure */
		*skip = true;
		return SCHED_FB_OTHER;
	}
}

static struct item *new_item(struct doc *d)
{
	d->items = vl_realloc(d->items, (d->nitems + 1) * sizeof *d->items);
	struct item *it = &d->items[d->nitems++];
	memset(it, 0, sizeof *it);
	return it;
}

/* The outcomes a report holds: one per failed or delayed recipient of a
 * bounce, one per feedback report. */
static void outcomes(struct doc *d)
{
	const struct fb_report *r = &d->r;
	const struct match *m = &d->m;

	if (d->kind == K_ARF) {
		const char *ft = r->feedback_type;
		new_item(d)->f = (struct sched_fb){
			.kind = !ft || !strcasecmp(ft, "abuse") ? SCHED_FB_COMPLAINT : SCHED_FB_OTHER,
			.job = m->has_job ? m->job : NULL, .index = m->index,
			.has_index = m->has_index,
			.email = r->norig_rcpt_to ? r->orig_rcpt_to[0] : NULL, .matched_by = m->by,
			.feedback_type = ft ? ft : "abuse", .reporter = r->user_agent,
		};
		return;
	}
	for (size_t i = 0; (d->kind == K_DSN || d->kind == K_HEUR) && i < r->nrcpts; i++) {
		const struct fb_rcpt *rc = &r->rcpts[i];
		bool skip;
		enum sched_fb_kind k = dsn_kind(rc, &skip);
		if (skip)
			continue;
		new_item(d)->f = (struct sched_fb){
			.kind = k, .job = m->has_job ? m->job : NULL,
			.index = m->index, .has_index = m->has_index,
			.email = rc->final_rcpt ? rc->final_rcpt : rc->orig_rcpt,
			.matched_by = m->by, .status = rc->status, .diag = rc->diag,
			.remote_mta = rc->remote_mta, .reporter = r->reporting_mta,
		};
	}
	if ((d->kind == K_DSN || d->kind == K_HEUR) && !d->nitems)
		snprintf(d->err, sizeof d->err, "%s", r->nrcpts ? "no failed recipient in the report"
								 : "no recipient found");
}

/* Read and parse one stored message: -1 when it cannot be read now. */
static int load(struct sched_fbproc *p, struct doc *d)
{
	char path[PATH_MAX];
	struct vl_buf b;
	struct stat st;

	if (snprintf(path, sizeof path, "%s/%s", p->newdir, d->name) >= (int)sizeof path ||
	    stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	if ((uint64_t)st.st_size > FB_MAX_SIZE) {
		snprintf(d->err, sizeof d->err, "larger than %u octets: not read", FB_MAX_SIZE);
		d->kind = K_ERR;
		return 0;
	}
	if (vl_read_file(path, &b) < 0) {
		vl_log(VL_LOG_ERROR, "feedback: cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fb_parse(b.p, b.len, NULL, &d->r, d->err, sizeof d->err) < 0)
		d->kind = K_ERR;
	else
		d->kind = d->r.kind == FB_DSN ? K_DSN : d->r.kind == FB_ARF ? K_ARF :
			  d->r.kind == FB_BOUNCE_HEURISTIC ? K_HEUR : K_NOT;
	vl_buf_free(&b);
	if (d->kind != K_ERR)
		match_report(&d->r, &d->m);
	outcomes(d);
	return 0;
}

static void doc_free(struct doc *d)
{
	fb_report_free(&d->r);
	free(d->items);
	free(d->name);
}

/* The log lines of a committed report, its count, its move to cur/. */
static void finish(struct sched_fbproc *p, struct doc *d)
{
	char from[PATH_MAX], to[PATH_MAX];
	const char *kind = kind_names[d->kind];

	for (size_t i = 0; i < d->nitems; i++) {
		json_t *o = entry(d->name, kind, &d->r, &d->items[i].f, &d->items[i].res, NULL);
		log_line(p, o);
		json_decref(o);
	}
	if (!d->nitems) {
		json_t *o = entry(d->name, kind, &d->r, NULL, NULL, *d->err ? d->err : NULL);
		log_line(p, o);
		json_decref(o);
	}
	pthread_mutex_lock(&p->mu);
	p->kinds[d->kind]++;
	pthread_mutex_unlock(&p->mu);
	if (snprintf(from, sizeof from, "%s/%s", p->newdir, d->name) < (int)sizeof from &&
	    snprintf(to, sizeof to, "%s/%s", p->curdir, d->name) < (int)sizeof to &&
	    rename(from, to) < 0)
		vl_log(VL_LOG_ERROR, "feedback: cannot move %s to cur/: %s", d->name,
		       strerror(errno));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in new/, oldest first (maildir names begin with the time). */
static size_t list_new(struct sched_fbproc *p, char ***out)
{
	DIR *d = opendir(p->newdir);
	struct dirent *e;
	char **v = NULL;
	size_t n = 0;

	while (d && (e = readdir(d)) && n < PASS_MAX) {
		if (e->d_name[0] == '.')
			continue;
		v = vl_realloc(v, (n + 1) * sizeof *v);
		v[n++] = vl_strdup(e->d_name);
	}
	if (d)
		closedir(d);
	if (n > 1)
		qsort(v, n, sizeof *v, cmp_str);
	*out = v;
	return n;
}

static void prune(struct sched_fbproc *p)
{
	DIR *d = opendir(p->curdir);
	struct dirent *e;
	double cut = vl_wall_time() - (double)p->retain_ms / 1000;
	char path[PATH_MAX];
	struct stat st;

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof path, "%s/%s", p->curdir, e->d_name) < (int)sizeof path &&
		    stat(path, &st) == 0 && (double)st.st_mtime < cut)
			unlink(path);
	}
	if (d)
		closedir(d);
}

/* Every report in new/ (up to PASS_MAX): decided, committed together,
 * then logged and moved. A failed commit leaves them all for the next. */
static size_t reports_pass(struct sched_fbproc *p)
{
	char **names;
	size_t n = list_new(p, &names), nd = 0;
	struct doc *docs = vl_calloc(n + 1, sizeof *docs);

	for (size_t i = 0; i < n; i++) {
		docs[nd].name = names[i];
		if (load(p, &docs[nd]) == 0)
			nd++;
		else
			doc_free(&docs[nd]);
	}
	free(names);
	for (size_t i = 0; i < nd; i++)
		for (size_t k = 0; k < docs[i].nitems; k++)
			sched_feedback_apply(p->sc, p->batch, &docs[i].items[k].f,
					     &docs[i].items[k].res);
	bool ok = sched_feedback_commit(p->sc, p->batch) == 0;
	if (!ok) {
		vl_log(VL_LOG_ERROR, "feedback: cannot record %zu reports' effects: %s (kept for "
		       "the next pass)", nd, strerror(errno));
		pthread_mutex_lock(&p->mu);
		p->failed += nd;
		pthread_mutex_unlock(&p->mu);
	}
	for (size_t i = 0; i < nd; i++) {
		if (ok)
			finish(p, &docs[i]);
		doc_free(&docs[i]);
	}
	free(docs);
	return ok ? n : 0;
}

/* true when new/ had more than one pass takes: go on at once */
static bool pass(struct sched_fbproc *p)
{
	bool more = reports_pass(p) == PASS_MAX;
	double now = vl_wall_time();
	if (now - p->last_tick >= TICK_S) {
		sched_fb_tick(p->sc);
		p->last_tick = now;
	}
	if (now - p->last_prune >= PRUNE_S) {
		prune(p);
		p->last_prune = now;
	}
	return more;
}

static void wait_ms(struct sched_fbproc *p, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ms * 1000000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

static void *run(void *arg)
{
	struct sched_fbproc *p = arg;

	vl_thread_name("vl-feedback");
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		pthread_mutex_unlock(&p->mu);
		bool more = pass(p);
		pthread_mutex_lock(&p->mu);
		if (!p->stop && !more)
			wait_ms(p, PASS_MS);
	}
	pthread_mutex_unlock(&p->mu);
	sched_fb_tick(p->sc);
	return NULL;
}

int sched_feedback_start(struct sched *sc, const char *dir, char *err, size_t errlen)
{
	struct sched_fbproc *p = vl_calloc(1, sizeof *p);

	p->sc = sc;
	p->dir = vl_strdup(dir);
	p->retain_ms = sched_cfg_of(sc)->feedback.retain_ms;
	snprintf(p->newdir, sizeof p->newdir, "%s/new", dir);
	snprintf(p->curdir, sizeof p->curdir, "%s/cur", dir);
	snprintf(p->log_path, sizeof p->log_path, "%s/reports.jsonl", dir);
	mkdir(dir, 0750);
	mkdir(p->newdir, 0750);
	if (mkdir(p->curdir, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "feedback: cannot create %s: %s", p->curdir, strerror(errno));
		free(p->dir);
		free(p);
		return -1;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->batch = sched_feedback_batch();
	log_open(p);
	p->last_tick = vl_wall_time();
	if (pthread_create(&p->tid, NULL, run, p) != 0) {
		snprintf(err, errlen, "feedback: cannot start its thread");
		if (p->logfd >= 0)
			close(p->logfd);
		sched_feedback_batch_free(p->batch);
		free(p->dir);
		free(p);
		return -1;
	}
	*sched_fb_proc_slot(sc) = p;
	return 0;
}

void sched_feedback_stop(struct sched *sc)
{
	struct sched_fbproc *p = *sched_fb_proc_slot(sc);

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->tid, NULL);
	*sched_fb_proc_slot(sc) = NULL;
	if (p->logfd >= 0)
		close(p->logfd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	sched_feedback_batch_free(p->batch);
	free(p->dir);
	free(p);
}

/* ---- views ---- */

/* The last whole lines of path (at most TAIL_MAX read), newest last. */
static void tail_lines(const char *path, json_t *into, bool unmatched)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return;
	}
	size_t n = (size_t)st.st_size > TAIL_MAX ? TAIL_MAX : (size_t)st.st_size;
	char *buf = vl_malloc(n + 1);
	ssize_t got = pread(fd, buf, n, st.st_size - (off_t)n);
	close(fd);
	size_t len = got > 0 ? (size_t)got : 0, i = 0;
	if (len < (size_t)st.st_size)    /* cut in the middle: skip the partial line */
		while (i < len && buf[i++] != '\n')
			;
	while (i < len) {
		char *nl = memchr(buf + i, '\n', len - i);
		if (!nl)
			break;
		json_t *o = json_loadb(buf + i, (size_t)(nl - buf - i), 0, NULL);
		if (o && (!unmatched || json_is_null(json_object_get(o, "index"))))
			json_array_append(into, o);
		json_decref(o);
		i = (size_t)(nl - buf) + 1;
	}
	free(buf);
}

json_t *sched_feedback_reports_json(struct sched *sc, size_t limit, bool unmatched)
{
	char path[PATH_MAX], old[PATH_MAX + 4];
	json_t *all = json_array(), *out = json_array();

	snprintf(path, sizeof path, "%s/feedback/reports.jsonl", sched_cfg_of(sc)->data_dir);
	snprintf(old, sizeof old, "%s.1", path);
	tail_lines(old, all, unmatched);
	tail_lines(path, all, unmatched);
	for (size_t i = json_array_size(all); i > 0 && json_array_size(out) < limit; i--)
		json_array_append(out, json_array_get(all, i - 1));
	json_decref(all);
	return json_pack("{s:o}", "reports", out);
}

void sched_feedback_metrics(struct sched *sc, struct vl_buf *out)
{
	struct sched_fbproc *p = *sched_fb_proc_slot(sc);
	uint64_t k[K_COUNT] = { 0 }, failed = 0;

	if (p) {
		pthread_mutex_lock(&p->mu);
		memcpy(k, p->kinds, sizeof k);
		failed = p->failed;
		pthread_mutex_unlock(&p->mu);
	}
	for (int i = 0; i < K_COUNT; i++) {
		char l[64];
		snprintf(l, sizeof l, "{kind=\"%s\"}", kind_names[i]);
		vl_prom_metric(out, "volley_feedback_reports_total", "counter",
			       i ? NULL : "Messages the feedback processor read, by kind.", l,
			       (double)k[i]);
	}
	vl_prom_metric(out, "volley_feedback_retries_total", "counter",
		       "Reports left for the next pass (an effect could not be recorded).", NULL,
		       (double)failed);
	sched_fb_metrics_effects(sc, out);
}
