/*
 * Feedback outcomes, decided one by one and made durable in batches
 * (fback.h). Deciding marks the recipient's flag at once, so a second
 * report for the same recipient in the same batch is a duplicate; the
 * commit writes each job's records and fdatasyncs each file once, adds the
 * batch's suppressions with one fdatasync, and only then moves the
 * counters, writes the events and checks the complaint rates. A commit
 * that fails clears the flags it set: its reports are read again, and a
 * record already written twice is harmless (a job's flags are a set).
 */
#include "fback_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct fb_jobrecs {
	char id[SCHED_ID_LEN + 1];
	struct vl_buf recs;
};

/* A record's recipient: its counter moves at the commit. */
struct fb_pend {
	char id[SCHED_ID_LEN + 1];
	uint32_t idx;
	uint8_t flag;
	char domain[256];            /* a complaint's From domain ("" transactional) */
	struct sched_fb_result *out;
};

struct fb_supp {
	char *email, *job;
	const char *reason;          /* static */
};

struct sched_fb_batch {
	struct fb_jobrecs *jobs;
	size_t njobs;
	struct fb_pend *pend;
	size_t npend;
	struct fb_supp *sup;
	size_t nsup;
	struct vl_buf events;
};

struct sched_fb_batch *sched_feedback_batch(void)
{
	struct sched_fb_batch *b = vl_calloc(1, sizeof *b);

	vl_buf_init(&b->events);
	return b;
}

static void batch_clear(struct sched_fb_batch *b)
{
	for (size_t i = 0; i < b->njobs; i++)
		vl_buf_free(&b->jobs[i].recs);
	for (size_t i = 0; i < b->nsup; i++) {
		free(b->sup[i].email);
		free(b->sup[i].job);
	}
	free(b->jobs);
	free(b->pend);
	free(b->sup);
	b->jobs = NULL;
	b->pend = NULL;
	b->sup = NULL;
	b->njobs = b->npend = b->nsup = 0;
	b->events.len = 0;
}

void sched_feedback_batch_free(struct sched_fb_batch *b)
{
	if (!b)
		return;
	batch_clear(b);
	vl_buf_free(&b->events);
	free(b);
}

/* ---- what an outcome says ---- */

/* "550 5.1.1 text" -> 550, *rest "text" (the enhanced code is the
 * record's own field). 0 when the diagnostic carries no reply code. */
static int diag_code(const char *diag, const char **rest)
{
	*rest = diag ? diag : "";
	if (!diag || diag[0] < '2' || diag[0] > '5' || diag[1] < '0' || diag[1] > '9' ||
	    diag[2] < '0' || diag[2] > '9' || (diag[3] && diag[3] != ' ' && diag[3] != '-'))
		return 0;
	const char *p = diag + 3 + (diag[3] != '\0');
	if (p[0] >= '2' && p[0] <= '5' && p[1] == '.') {       /* x.y.z */
		size_t n = strspn(p, "0123456789.");
		if (p[n] == ' ' || !p[n])
			p += n + (p[n] == ' ');
	}
	*rest = p;
	return (diag[0] - '0') * 100 + (diag[1] - '0') * 10 + (diag[2] - '0');
}

static void event(struct sched_fb_batch *b, const char *type, const char *job,
		  const char *email, const struct sched_jrec *r, const char *reason,
		  const char *mx)
{
	const char *at = email ? strrchr(email, '@') : NULL;
	struct sched_event e = {
		.type = type, .time = vl_wall_time(), .job = job ? job : "",
		.recipient = email ? email : "", .domain = at ? at + 1 : "", .mx = mx,
	};

	if (r && r->code) {
		e.code = r->code;
		e.enhanced = r->enhanced;
		e.text = r->text;
	} else {
		e.text = reason;
	}
	if (r && r->cls)
		e.bounce_class = sched_bounce_class_name((enum sched_bounce_class)r->cls);
	sched_event_format(&e, &b->events);
}

/* The record of a late bounce or a complaint. */
static void make_record(struct sched_fbstate *fs, const struct sched_fb *f, uint32_t idx,
			struct sched_jrec *r)
{
	const char *rest;
	struct sched_bounce_verdict v = { SCHED_BC_OTHER, true };

	memset(r, 0, sizeof *r);
	r->idx = idx;
	r->time = (uint32_t)vl_wall_time();
	if (f->kind == SCHED_FB_COMPLAINT || f->kind == SCHED_FB_OTHER) {
		r->state = SCHED_R_DELIVERED;
		r->flags = f->kind == SCHED_FB_COMPLAINT ? SCHED_FBR_COMPLAINT : 0;
		r->textlen = (uint16_t)snprintf(r->text, sizeof r->text, "%s: %s%s%.200s",
						f->kind == SCHED_FB_COMPLAINT ? "complaint" :
						"feedback report",
						f->feedback_type ? f->feedback_type : "abuse",
						f->reporter ? ", reported by " : "",
						f->reporter ? f->reporter : "");
		return;
	}
	r->state = SCHED_R_BOUNCED;
	r->flags = f->kind == SCHED_FB_OOB_HARD ? SCHED_FBR_OOB : 0;
	r->code = (int16_t)diag_code(f->diag, &rest);
	snprintf(r->enhanced, sizeof r->enhanced, "%s", f->status ? f->status : "");
	int n = r->code ? snprintf(r->text, sizeof r->text, "%s", rest) :
		snprintf(r->text, sizeof r->text, "late bounce%s%s%s%s", *r->enhanced ? " " : "",
			 r->enhanced, f->diag ? ": " : "", f->diag ? f->diag : "");
	r->textlen = (uint16_t)(n > SCHED_JREC_TEXT_MAX ? SCHED_JREC_TEXT_MAX : n);
	int code = r->code ? r->code : f->kind == SCHED_FB_OOB_HARD ? 550 : 450;
	if (fs->rules)
		sched_bounce_classify(fs->rules, code, r->enhanced, f->diag ? f->diag : "", "dsn", &v);
	r->cls = (uint8_t)v.cls;
}

static void set_effect(struct sched_fb_result *out, const char *effect, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_effect(struct sched_fb_result *out, const char *effect, const char *fmt, ...)
{
	va_list ap;

	snprintf(out->effect, sizeof out->effect, "%s", effect);
	if (!fmt)
		return;
	va_start(ap, fmt);
	vsnprintf(out->note, sizeof out->note, fmt, ap);
	va_end(ap);
}

static void bump(struct sched_fbstate *fs, uint64_t *c)
{
	pthread_mutex_lock(&fs->mu);
	(*c)++;
	pthread_mutex_unlock(&fs->mu);
}

/* The recipient of a matched report: its index and address from the
 * job's table (by index, else by the address the report names). An index
 * from a Message-ID whose recipient is not the address the report names
 * is checked against that address: a shared message (several recipients,
 * one transaction) carries its first recipient's index in its Message-ID.
 * The address found wins; none found, the index stands (a forwarded
 * address). A VERP index is the recipient's own: trusted. */
static int find_rcpt(struct sched *sc, const struct sched_fb *f, const char *id,
		     struct sched_fb_result *out)
{
	struct sched_table *t = sched_table_open(sched_spool_of(sc), id);
	struct sched_rcpt r;
	int rc = -1;

	if (!t)
		return -1;
	size_t n = sched_table_count(t);
	bool verp = f->matched_by && !strcmp(f->matched_by, "verp");
	if (f->has_index && f->index < n && sched_table_get(t, f->index, &r) == 0) {
		out->index = (long long)f->index;
		rc = 0;
		if (verp || !f->email || !*f->email || !strcasecmp(r.email, f->email))
			goto found;
	}
	if (f->email)
		for (size_t i = 0; i < n; i++)
			if (sched_table_get(t, i, &r) == 0 && !strcasecmp(r.email, f->email)) {
				out->index = (long long)i;
				rc = 0;
				goto found;
			}
	if (rc == 0)          /* the index, after all */
		sched_table_get(t, (size_t)out->index, &r);
found:
	if (rc == 0)
		snprintf(out->email, sizeof out->email, "%s", r.email);
	sched_table_close(t);
	return rc;
}

/* ---- queued in the batch ---- */

static void add_supp(struct sched_fb_batch *b, const char *email, const char *job,
		     const char *reason)
{
	if (!email || !*email)
		return;
	b->sup = vl_realloc(b->sup, (b->nsup + 1) * sizeof *b->sup);
	b->sup[b->nsup++] = (struct fb_supp){ vl_strdup(email), vl_strdup(job ? job : ""), reason };
}

static void add_record(struct sched_fb_batch *b, const char *id, const struct sched_jrec *r,
		       const char *domain, struct sched_fb_result *out)
{
	struct fb_jobrecs *jr = NULL;

	for (size_t i = 0; i < b->njobs && !jr; i++)
		if (!strcmp(b->jobs[i].id, id))
			jr = &b->jobs[i];
	if (!jr) {
		b->jobs = vl_realloc(b->jobs, (b->njobs + 1) * sizeof *b->jobs);
		jr = &b->jobs[b->njobs++];
		snprintf(jr->id, sizeof jr->id, "%s", id);
		vl_buf_init(&jr->recs);
	}
	sched_journal_encode(r, &jr->recs);
	b->pend = vl_realloc(b->pend, (b->npend + 1) * sizeof *b->pend);
	struct fb_pend *p = &b->pend[b->npend++];
	snprintf(p->id, sizeof p->id, "%s", id);
	p->idx = r->idx;
	p->flag = r->flags;
	snprintf(p->domain, sizeof p->domain, "%s", domain);
	p->out = out;
}

/* Suppression reasons are static strings: the batch keeps the pointer. */
static const char *class_reason(uint8_t cls)
{
	return cls == SCHED_BC_INVALID_RECIPIENT ? "invalid-recipient" :
	       cls == SCHED_BC_INACTIVE_MAILBOX ? "inactive-mailbox" : NULL;
}

/* A report naming no job we know: a complaint still suppresses the
 * address it names. */
static void unmatched(struct sched_fbstate *fs, struct sched_fb_batch *b,
		      const struct sched_fb *f, bool known, struct sched_fb_result *out)
{
	const char *why = !f->job ? "matched no job" : known ? "the recipient is not in the job" :
			  "the job is no longer in the spool";

	if (f->kind == SCHED_FB_COMPLAINT && f->email && *f->email) {
		snprintf(out->email, sizeof out->email, "%s", f->email);
		add_supp(b, f->email, f->job, "complaint");
		event(b, "Feedback", f->job, f->email, NULL, "complaint: matched no recipient", NULL);
		set_effect(out, "suppressed", "%s", why);
		bump(fs, &fs->n_suppressed);
		return;
	}
	set_effect(out, "unmatched", "%s", why);
	bump(fs, &fs->n_unmatched);
}

/* A recorded outcome: an event, no state. */
static void recorded(struct sched_fbstate *fs, struct sched_fb_batch *b, const char *type,
		     const char *id, const struct sched_fb_result *o, const struct sched_jrec *r,
		     const char *mx)
{
	event(b, type, id, o->email, r, r->text, mx);
	bump(fs, &fs->n_recorded);
}

void sched_feedback_apply(struct sched *sc, struct sched_fb_batch *b, const struct sched_fb *f,
			  struct sched_fb_result *out)
{
	struct sched_fbstate *fs = sched_fbstate(sc);
	struct sched_jrec r;
	char id[SCHED_ID_LEN + 1] = "", domain[256] = "";
	size_t n = 0;

	memset(out, 0, sizeof *out);
	out->index = -1;
	if (f->job) {
		sched_lock(sc);
		struct sched_job *j = sched_job_find(sc, f->job);
		if (j) {
			memcpy(id, j->id, sizeof id);
			n = j->recipients;
			snprintf(domain, sizeof domain, "%s", j->transactional ? "" : j->from_domain);
		}
		sched_unlock(sc);
	}
	if (!*id || find_rcpt(sc, f, id, out) < 0) {
		snprintf(out->job, sizeof out->job, "%s", id);
		unmatched(fs, b, f, *id, out);
		return;
	}
	snprintf(out->job, sizeof out->job, "%s", id);
	uint32_t idx = (uint32_t)out->index;
	make_record(fs, f, idx, &r);
	const char *supp = f->kind == SCHED_FB_COMPLAINT ? "complaint" :
			   f->kind == SCHED_FB_OOB_HARD ? class_reason(r.cls) : NULL;
	if (f->kind == SCHED_FB_OTHER) {
		recorded(fs, b, "Feedback", id, out, &r, NULL);
		set_effect(out, "recorded", "feedback type %s: not a complaint",
			   f->feedback_type ? f->feedback_type : "(none)");
		return;
	}
	if (f->kind == SCHED_FB_OOB_SOFT) {
		recorded(fs, b, "OOB", id, out, &r, f->remote_mta);
		set_effect(out, "recorded", "a delay or temporary failure: an event only");
		return;
	}
	int st = f->kind == SCHED_FB_OOB_HARD ? sched_fb_rstate(sc, id, n, idx) : SCHED_R_DELIVERED;
	/* at most once per recipient and kind; marked now, so the batch's
	 * later reports see it */
	sched_lock(sc);
	struct sched_job *j = sched_job_find(sc, id);
	bool dup = j && (sched_fb_flags(j, idx) & r.flags);
	if (j && !dup && st == SCHED_R_DELIVERED)
		sched_fb_mark(j, idx, r.flags, true);
	sched_unlock(sc);
	if (!j) {                    /* retired meanwhile */
		unmatched(fs, b, f, false, out);
		return;
	}
	if (dup) {
		if (supp)                /* idempotent: done again in case it was lost */
			add_supp(b, out->email, id, supp);
		set_effect(out, "duplicate", "already applied to this recipient");
		bump(fs, &fs->n_dup);
		return;
	}
	if (st != SCHED_R_DELIVERED) {
		r.flags = 0;
		recorded(fs, b, "OOB", id, out, &r, f->remote_mta);
		set_effect(out, "recorded", "the recipient is %s, not delivered: an event only",
			   st < 0 ? "unknown" : sched_state_name(sched_rstate_api((unsigned)st)));
		return;
	}
	add_record(b, id, &r, f->kind == SCHED_FB_COMPLAINT ? domain : "", out);
	add_supp(b, out->email, id, supp);
	if (f->kind == SCHED_FB_OOB_HARD) {
		event(b, "OOB", id, out->email, &r, r.text, f->remote_mta);
		set_effect(out, "bounced", NULL);
		bump(fs, &fs->n_bounced);
	} else {
		event(b, "Feedback", id, out->email, NULL, r.text, NULL);
		set_effect(out, "complaint", NULL);
		bump(fs, &fs->n_complaints);
	}
}

/* ---- the commit ---- */

/* Append a job's records and make them durable; on failure cut the file
 * back (a torn tail would be cut at the next replay anyway). */
static int write_job(struct sched *sc, const struct fb_jobrecs *jr)
{
	char path[PATH_MAX];
	int rc = -1, e;

	if (sched_spool_path(sched_spool_of(sc), jr->id, SCHED_SPOOL_FEEDBACK, path,
			     sizeof path) < 0)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	off_t end = lseek(fd, 0, SEEK_END);
	if (end >= 0 && pwrite(fd, jr->recs.p, jr->recs.len, end) == (ssize_t)jr->recs.len &&
	    fdatasync(fd) == 0)
		rc = 0;
	else if (end >= 0 && ftruncate(fd, end) < 0)
		vl_log(VL_LOG_ERROR, "feedback: cannot cut %s back: %s", path, strerror(errno));
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* One add_many per reason (each one fdatasync). */
static int write_suppressions(struct sched *sc, struct sched_fb_batch *b)
{
	struct sched_suppress *sup = sched_suppress_of(sc);
	const char **emails = vl_calloc(b->nsup + 1, sizeof *emails);
	const char **jobs = vl_calloc(b->nsup + 1, sizeof *jobs);
	int rc = 0;

	for (size_t i = 0; sup && rc == 0 && i < b->nsup; i++) {
		const char *reason = b->sup[i].reason;
		size_t n = 0;
		if (!reason)
			continue;
		for (size_t k = i; k < b->nsup; k++)
			if (b->sup[k].reason && !strcmp(b->sup[k].reason, reason)) {
				emails[n] = b->sup[k].email;
				jobs[n++] = b->sup[k].job;
				if (k > i)
					b->sup[k].reason = NULL;    /* done with this one */
			}
		rc = sched_suppress_add_many(sup, emails, jobs, n, reason);
	}
	free(emails);
	free(jobs);
	return rc;
}

static void rollback(struct sched *sc, struct sched_fb_batch *b)
{
	sched_lock(sc);
	for (size_t i = 0; i < b->npend; i++) {
		struct sched_job *j = sched_job_find(sc, b->pend[i].id);
		if (j)
			sched_fb_mark(j, b->pend[i].idx, b->pend[i].flag, false);
	}
	sched_unlock(sc);
}

static void event_pause(struct sched *sc, const char *job, const char *reason)
{
	struct sched_events *ev = sched_events_of(sc);
	struct sched_event e = { .type = "JobPaused", .time = vl_wall_time(), .job = job,
				 .recipient = "", .domain = "", .text = reason };
	struct vl_buf b;

	if (!ev)
		return;
	vl_buf_init(&b);
	sched_event_format(&e, &b);
	sched_events_append(ev, b.p, b.len);
	sched_events_flush(ev);
	vl_buf_free(&b);
}

static bool active(const struct sched_job *j)
{
	return j->state == SCHED_J_ACTIVE &&
	       j->counts[SCHED_QUEUED] + j->counts[SCHED_IN_FLIGHT] + j->counts[SCHED_DEFERRED];
}

/* A job over its complaint rate pauses itself. */
static void check_job(struct sched *sc, struct sched_fbstate *fs, const char *id,
		      struct sched_fb_result *out)
{
	char why[240] = "";

	sched_lock(sc);
	struct sched_job *j = sched_job_find(sc, id);
	bool go = j && active(j) &&
		  sched_fb_over(fs->rate, fs->min_delivered, j->fb_complaints,
				j->counts[SCHED_DELIVERED], why, sizeof why);
	sched_unlock(sc);
	if (go && sched_job_pause_for(sc, id, why) == 0) {
		vl_log(VL_LOG_WARN, "job %s: paused: %s", id, why);
		snprintf(out->note, sizeof out->note, "job paused: %s", why);
		event_pause(sc, id, why);
		bump(fs, &fs->n_job_pauses);
	}
}

/* A blocked domain's bulk jobs still sending pause with its reason. */
static void pause_domain_jobs(struct sched *sc, const char *domain, const char *why)
{
	char (*ids)[SCHED_ID_LEN + 1] = NULL;
	size_t n = 0;

	sched_lock(sc);
	for (size_t i = 0; i < sched_njobs(sc); i++) {
		struct sched_job *j = sched_job_at(sc, i);
		if (!j->transactional && active(j) && !strcasecmp(j->from_domain, domain)) {
			ids = vl_realloc(ids, (n + 1) * sizeof *ids);
			memcpy(ids[n++], j->id, SCHED_ID_LEN + 1);
		}
	}
	sched_unlock(sc);
	for (size_t i = 0; i < n; i++)
		if (sched_job_pause_for(sc, ids[i], why) == 0)
			event_pause(sc, ids[i], why);
	free(ids);
}

/* Counters, then each complaint against its job's and domain's rates. */
static void apply(struct sched *sc, struct sched_fb_batch *b)
{
	struct sched_fbstate *fs = sched_fbstate(sc);
	char why[240];

	sched_lock(sc);
	for (size_t i = 0; i < b->npend; i++) {
		struct sched_job *j = sched_job_find(sc, b->pend[i].id);
		if (j && (b->pend[i].flag & SCHED_FBR_OOB))
			j->fb_oob++;
		if (j && (b->pend[i].flag & SCHED_FBR_COMPLAINT))
			j->fb_complaints++;
	}
	sched_unlock(sc);
	struct sched_events *ev = sched_events_of(sc);
	if (ev && b->events.len) {
		sched_events_append(ev, b->events.p, b->events.len);
		sched_events_flush(ev);
	}
	for (size_t i = 0; i < b->npend; i++) {
		struct fb_pend *p = &b->pend[i];
		if (!(p->flag & SCHED_FBR_COMPLAINT))
			continue;
		check_job(sc, fs, p->id, p->out);
		if (sched_fb_domain_complaint(sc, p->domain, why, sizeof why)) {
			vl_log(VL_LOG_WARN, "feedback: %s", why);
			snprintf(p->out->note, sizeof p->out->note, "%s", why);
			pause_domain_jobs(sc, p->domain, why);
		}
	}
}

int sched_feedback_commit(struct sched *sc, struct sched_fb_batch *b)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < b->njobs; i++)
		rc = write_job(sc, &b->jobs[i]);
	if (rc == 0)
		rc = write_suppressions(sc, b);
	if (rc < 0) {
		int e = errno;
		rollback(sc, b);
		batch_clear(b);
		errno = e;
		return -1;
	}
	apply(sc, b);
	batch_clear(b);
	return 0;
}
