/*
 * A job on the delivery thread: its composed message, its recipient table
 * and one state octet per recipient, rebuilt at load from the journal so a
 * restart resumes where the last commit left off.
 */
#include "deliver_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum sched_state sched_rstate_api(unsigned s)
{
	static const enum sched_state map[] = {
		[SCHED_R_QUEUED] = SCHED_QUEUED, [SCHED_R_INFLIGHT] = SCHED_IN_FLIGHT,
		[SCHED_R_DEFERRED] = SCHED_DEFERRED, [SCHED_R_DELIVERED] = SCHED_DELIVERED,
		[SCHED_R_BOUNCED] = SCHED_BOUNCED, [SCHED_R_EXPIRED] = SCHED_EXPIRED,
		[SCHED_R_CANCELLED] = SCHED_CANCELLED, [SCHED_R_SUPPRESSED] = SCHED_SUPPRESSED,
	};
	return s <= SCHED_R_SUPPRESSED ? map[s] : SCHED_QUEUED;
}

const char *sched_djob_email(struct sched_djob *dj, uint32_t idx, const char **domain)
{
	struct sched_rcpt r;

	if (sched_table_get(dj->table, idx, &r) < 0)
		return NULL;
	const char *at = strrchr(r.email, '@');
	*domain = at ? at + 1 : r.email;
	return r.email;
}

static void replay_one(void *arg, const struct sched_jrec *r)
{
	struct sched_djob *dj = arg;

	if (r->time > dj->last_time)
		dj->last_time = r->time;
	if (r->idx == SCHED_JREC_ALL) {
		for (size_t i = 0; i < dj->n; i++)
			if (!sched_rstate_final(dj->st[i]))
				dj->st[i] = r->state;
		return;
	}
	if (r->idx < dj->n) {
		dj->st[r->idx] = r->state;
		dj->att[r->idx] = r->attempts;
		dj->cls[r->idx] = r->cls;
	}
}

int sched_djob_replay(struct sched_djob *dj, const char *path)
{
	return sched_journal_replay(path, replay_one, dj);
}

/* A verbatim job's message (jobs/<id>/message), whole, into buf. */
static int read_message(struct sched_djob *dj, struct vl_buf *buf)
{
	char path[PATH_MAX];
	int fd = -1;
	struct stat st;

	if (sched_spool_path(dj->d->spool, dj->j->id, SCHED_SPOOL_MESSAGE, path, sizeof path) < 0 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
		goto fail;
	size_t n = (size_t)st.st_size, done = 0;
	char *p = vl_buf_reserve(buf, n + 1);
	while (done < n) {
		ssize_t r = read(fd, p + done, n - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			errno = EIO;   /* shorter than its size: cut meanwhile */
		if (r <= 0)
			goto fail;
		done += (size_t)r;
	}
	buf->len = n;
	close(fd);
	return 0;
fail:
	vl_log(VL_LOG_ERROR, "job %s: cannot read its message %s: %s", dj->j->id, path,
	       strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* The job's message compiled, and the From domain its DKIM keys follow:
 * a content (object or string) or, with "raw_message", the octets of
 * jobs/<id>/message kept as they are. */
static int compose(struct sched_djob *dj, json_t *job)
{
	struct msg_job_opts o = { .job_id = dj->j->id, .hostname = dj->d->cfg->hostname,
				  .max_size = dj->d->cfg->max_message_size,
				  .unsub = dj->d->unsub_on ? &dj->d->unsub : NULL,
				  .transactional = dj->j->transactional };
	struct msg_err me = { 0 };
	json_t *content = json_object_get(job, "content");

	if (json_is_true(json_object_get(job, "raw_message"))) {
		struct vl_buf m;
		vl_buf_init(&m);
		if (read_message(dj, &m) == 0) {
			dj->msg = msg_job_compile_verbatim(m.p, m.len, &o, &me);
			if (msg_verbatim_from_domain(m.p, m.len, dj->from_domain,
						     sizeof dj->from_domain) < 0)
				dj->from_domain[0] = '\0';
		} else {
			snprintf(me.field, sizeof me.field, "message");
			snprintf(me.message, sizeof me.message, "unreadable");
		}
		vl_buf_free(&m);
	} else {
		dj->msg = msg_job_compile(content, json_object_get(job, "substitutions"),
					  json_object_get(job, "unsubscribe"), &o, &me);
		if (dj->msg && msg_content_from_domain(content, dj->from_domain,
						       sizeof dj->from_domain) < 0)
			dj->from_domain[0] = '\0';
	}
	if (dj->from_domain[0] && !dj->j->from_domain[0]) {  /* a verbatim job's */
		sched_lock(dj->d->sc);
		snprintf(dj->j->from_domain, sizeof dj->j->from_domain, "%s", dj->from_domain);
		sched_unlock(dj->d->sc);
	}
	if (!dj->msg)
		vl_log(VL_LOG_ERROR, "job %s: cannot compose its message: %s: %s", dj->j->id,
		       me.field, me.message);
	return dj->msg ? 0 : -1;
}

/* The keys of the From domain, or of its nearest parent domain with keys
 * (d= may be a parent of the From domain: relaxed alignment). */
static void pick_keys(struct sched_djob *dj)
{
	const struct sched_deliver *d = dj->d;
	const char *dom = dj->from_domain;

	dj->body_static = msg_job_body_static(dj->msg);
	dj->dkim_required = d->cfg->dkim_required;
	dj->dkim_opts.hcanon = strncmp(d->cfg->dkim_canon, "simple/", 7) ? MSG_DKIM_RELAXED
									 : MSG_DKIM_SIMPLE;
	dj->dkim_opts.bcanon = strstr(d->cfg->dkim_canon, "/simple") ? MSG_DKIM_SIMPLE
								   : MSG_DKIM_RELAXED;
	dj->dkim_opts.expire = (time_t)(d->cfg->dkim_expire_ms / 1000);
	if (!*dom)
		return;
	for (; dom && !dj->nkeys; dom = strchr(dom, '.') ? strchr(dom, '.') + 1 : NULL)
		for (size_t i = 0; i < d->ndkim && dj->nkeys < VL_ARRAY_LEN(dj->keys); i++)
			if (!strcasecmp(d->cfg->dkim[i].domain, dom))
				dj->keys[dj->nkeys++] = d->dkim[i];
}

static int read_job(struct sched_djob *dj)
{
	char path[PATH_MAX];
	json_error_t je = { .text = "" };
	json_t *meta = NULL, *job;

	if (sched_spool_path(dj->d->spool, dj->j->id, SCHED_SPOOL_JOB, path, sizeof path) < 0)
		snprintf(je.text, sizeof je.text, "%s", strerror(errno));
	else
		meta = json_load_file(path, 0, &je);
	if (!(job = json_object_get(meta, "job"))) {
		vl_log(VL_LOG_ERROR, "job %s: cannot read %s: %s", dj->j->id, path, je.text);
		json_decref(meta);
		return -1;
	}
	const char *rate = json_string_value(json_object_get(job, "rate_limit"));
	dj->sender = vl_strdup(json_string_value(json_object_get(job, "envelope_sender")));
	dj->verp = json_is_true(json_object_get(job, "verp"));
	dj->transactional = dj->j->transactional;
	dj->require_tls = dj->j->require_tls;
	const char *pool = json_string_value(json_object_get(job, "pool"));
	dj->pool = pool ? cfg_pool_find(dj->d->ecfg, pool) : -1;
	if (pool && dj->pool < 0)   /* configured when accepted, gone since */
		vl_log(VL_LOG_WARN, "job %s: pool %s is not configured; its domains' pools "
		       "are used", dj->j->id, pool);
	dj->expires = dj->j->expires;
	double r;
	if (rate && vl_parse_rate(rate, &r) == 0)
		sched_bucket_init(&dj->rate, r);
	int rc = compose(dj, job);
	/* the same octets for every recipient, and one return path: recipients
	 * of a destination share transactions (deliver.c). Not yet a message
	 * submitted over SMTP (raw_message): submission delivers it one
	 * recipient a message, as its tests and submission.md say. */
	dj->shared = rc == 0 && !dj->verp && !json_is_true(json_object_get(job, "raw_message")) &&
		     msg_job_shareable(dj->msg);
	if (dj->shared)
		vl_log(VL_LOG_DEBUG, "job %s: content the same for every recipient: shared "
		       "transactions", dj->j->id);
	if (rc == 0 && !json_is_false(json_object_get(job, "dkim")))
		pick_keys(dj);
	json_decref(meta);
	return rc;
}

/* Counters from the states, into the registry. */
static void publish_counts(struct sched_djob *dj)
{
	size_t c[SCHED_NSTATES] = { 0 };

	for (size_t i = 0; i < dj->n; i++)
		c[sched_rstate_api(dj->st[i])]++;
	sched_lock(dj->d->sc);
	memcpy(dj->j->counts, c, sizeof c);
	dj->j->d = dj;
	/* a job finished before a restart keeps its finishing time */
	if (!c[SCHED_QUEUED] && !c[SCHED_IN_FLIGHT] && !c[SCHED_DEFERRED] && !dj->j->finished)
		dj->j->finished = dj->last_time;
	sched_unlock(dj->d->sc);
}

/* The recipients without a final outcome. */
static void count_nonfinal(struct sched_djob *dj)
{
	for (uint32_t i = 0; i < dj->n; i++)
		dj->nonfinal += !sched_rstate_final(dj->st[i]);
}

bool sched_djob_enqueue(struct sched_djob *dj, uint32_t max)
{
	uint32_t end = dj->n - dj->enq > max ? dj->enq + max : (uint32_t)dj->n;

	for (; dj->enq < end; dj->enq++) {
		const char *domain;
		uint32_t i = dj->enq;
		/* final: done, or cancelled or expired before its turn came */
		if (sched_rstate_final(dj->st[i]))
			continue;
		if (!sched_djob_email(dj, i, &domain)) {
			vl_log(VL_LOG_ERROR, "job %s: recipient %u unreadable", dj->j->id, i);
			continue;
		}
		sched_dom_enqueue(dj->d, dj, i, domain);
	}
	return dj->enq < dj->n;
}

struct sched_djob *sched_djob_load(struct sched_deliver *d, struct sched_job *j)
{
	char path[PATH_MAX];
	struct sched_djob *dj = vl_calloc(1, sizeof *dj);

	dj->j = j;
	dj->d = d;
	vl_buf_init(&dj->jbuf);
	if (read_job(dj) < 0 || !(dj->table = sched_table_open(d->spool, j->id)))
		goto fail;
	dj->n = sched_table_count(dj->table);
	dj->st = vl_calloc(dj->n + 1, 1);
	dj->att = vl_calloc(dj->n + 1, 1);
	dj->cls = vl_calloc(dj->n + 1, 1);
	if (sched_spool_path(d->spool, j->id, SCHED_SPOOL_JOURNAL, path, sizeof path) < 0 ||
	    sched_djob_replay(dj, path) < 0) {
		vl_log(VL_LOG_ERROR, "job %s: cannot read its journal: %s", j->id, strerror(errno));
		goto fail;
	}
	publish_counts(dj);
	count_nonfinal(dj);
	sched_djob_enqueue(dj, SCHED_ENQ_ROUND);   /* the rest in later rounds */
	sched_djob_control(dj);
	return dj;
fail:
	sched_djob_free(dj);
	return NULL;
}

void sched_djob_free(struct sched_djob *dj)
{
	if (!dj)
		return;
	for (size_t i = 0; i < dj->nqs; i++) {
		free(dj->qs[i]->idx);
		free(dj->qs[i]);
	}
	free(dj->qs);
	msg_job_free(dj->msg);
	sched_table_close(dj->table);
	free(dj->st);
	free(dj->att);
	free(dj->cls);
	free(dj->sender);
	vl_buf_free(&dj->jbuf);
	free(dj);
}

static void journal(struct sched_djob *dj, uint32_t idx, enum sched_rstate to,
		    const struct sched_jrec *why)
{
	struct sched_jrec r = { 0 };

	if (why)
		r = *why;
	r.idx = idx;
	r.state = (uint8_t)to;
	r.attempts = idx == SCHED_JREC_ALL ? 0 : dj->att[idx];
	r.time = (uint32_t)vl_wall_time();
	sched_journal_encode(&r, &dj->jbuf);
	dj->in_batch = true;
	dj->d->batch_dirty = true;
}

void sched_djob_set(struct sched_djob *dj, uint32_t idx, enum sched_rstate to,
		    const struct sched_jrec *why)
{
	enum sched_rstate from = dj->st[idx];

	dj->st[idx] = (uint8_t)to;
	if (why)
		dj->cls[idx] = why->cls;
	if (!sched_rstate_journaled(from, to)) {
		dj->now_delta[sched_rstate_api(from)]--;
		dj->now_delta[sched_rstate_api(to)]++;
		dj->d->now_dirty = true;
		return;
	}
	dj->delta[sched_rstate_api(from)]--;
	dj->delta[sched_rstate_api(to)]++;
	if (sched_rstate_final(to))
		dj->nonfinal--;
	journal(dj, idx, to, why);
}

/* The event's why for recipient i when its job expires: the class of its
 * last failure (kept per recipient; its text stays in its journal record,
 * shown by GET /v1/jobs/ID/recipients) and a reason in words. */
static void expiry_why(const struct sched_djob *dj, uint32_t i, struct sched_jrec *why)
{
	const char *cls = sched_bounce_class_name((enum sched_bounce_class)dj->cls[i]);
	int n;

	why->cls = dj->cls[i];
	if (dj->att[i])
		n = snprintf(why->text, sizeof why->text, "expired: the job's expiry passed "
			     "after %u attempt%s; the last failed (%s)", dj->att[i],
			     dj->att[i] == 1 ? "" : "s", cls ? cls : "no class");
	else
		n = snprintf(why->text, sizeof why->text, "expired: the job's expiry passed "
			     "before any attempt");
	why->textlen = (uint16_t)(n < 0 ? 0 : n > SCHED_JREC_TEXT_MAX ? SCHED_JREC_TEXT_MAX : n);
}

/* Every waiting (not in flight, not final) recipient becomes `to`. */
static void finish_waiting(struct sched_djob *dj, enum sched_rstate to, const char *event)
{
	struct sched_jrec why = { .textlen = 0 };

	for (uint32_t i = 0; i < dj->n; i++) {
		if (sched_rstate_final(dj->st[i]) || dj->st[i] == SCHED_R_INFLIGHT)
			continue;
		dj->delta[sched_rstate_api(dj->st[i])]--;
		dj->delta[sched_rstate_api(to)]++;
		dj->st[i] = (uint8_t)to;
		dj->nonfinal--;
		struct sched_jrec ev = { .textlen = 0 };
		if (to == SCHED_R_EXPIRED)
			expiry_why(dj, i, &ev);
		sched_deliver_event(dj->d, dj, i, event, NULL, &ev);
	}
	journal(dj, SCHED_JREC_ALL, to, &why);
	for (size_t q = 0; q < dj->nqs; q++) {
		dj->qs[q]->site->waiting -= dj->qs[q]->len;
		dj->qs[q]->len = 0;
	}
}

void sched_djob_control(struct sched_djob *dj)
{
	sched_lock(dj->d->sc);
	enum sched_jstate st = dj->j->state;
	sched_unlock(dj->d->sc);
	dj->paused = st == SCHED_J_PAUSED;
	if (st == SCHED_J_CANCELLED && !dj->cancelled) {
		dj->cancelled = true;
		finish_waiting(dj, SCHED_R_CANCELLED, "AdminBounce");
	}
	for (size_t q = 0; q < dj->nqs && !dj->paused; q++)
		sched_site_ready(dj->d, dj->qs[q]->site);
}

void sched_djob_expire(struct sched_djob *dj)
{
	if (dj->expired || dj->cancelled)
		return;
	dj->expired = true;
	finish_waiting(dj, SCHED_R_EXPIRED, "Expiration");
}
