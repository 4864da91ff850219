/*
 * scheduler/fback: what comes back after the 250 (docs/feedback.md).
 * Asynchronous bounces and complaints, once matched to a job and a
 * recipient, change what the registry shows: each is appended to the
 * job's jobs/<id>/feedback file (the journal's record format) and made
 * durable before its counters, its event and its suppression apply, so a
 * report processed twice (a crash between the effect and the report
 * file's move) changes nothing the second time. A complaint counts
 * against the job's and its From domain's complaint rates and may pause
 * them. The processor (fbproc.c, one thread) reads the inbox maildir,
 * parses with feedback/ and calls sched_feedback_apply.
 * Prefix: sched_feedback_.
 */
#ifndef VOLLEY_SCHED_FBACK_H
#define VOLLEY_SCHED_FBACK_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "../common/common.h"

struct sched;

enum sched_fb_kind {
	SCHED_FB_OOB_HARD,       /* a permanent asynchronous bounce */
	SCHED_FB_OOB_SOFT,       /* a delay or temporary one: an event only */
	SCHED_FB_COMPLAINT,      /* an ARF abuse report */
	SCHED_FB_OTHER,          /* an ARF report of another type: recorded */
};

/* One recipient's outcome in a report. Strings may be NULL. */
struct sched_fb {
	enum sched_fb_kind kind;
	const char *job;         /* matched job id, or NULL */
	size_t index;            /* with has_index */
	bool has_index;
	const char *email;       /* the address the report names */
	const char *matched_by;  /* "verp", "message-id", "recipient", NULL */
	const char *status;      /* DSN status "5.1.1", or "" */
	const char *diag;        /* Diagnostic-Code text, or the bounce's line */
	const char *remote_mta;
	const char *feedback_type;   /* ARF: "abuse", ... */
	const char *reporter;    /* ARF User-Agent or the DSN's Reporting-MTA */
};

/* What sched_feedback_apply did, for the reports log. */
struct sched_fb_result {
	char effect[24];         /* "bounced", "recorded", "complaint",
				  * "duplicate", "suppressed", "unmatched" */
	char job[22];            /* the job it counted against, or "" */
	long long index;         /* -1: none */
	char email[320];         /* the recipient, or "" */
	char note[256];          /* why, in words (a pause, a mismatch) */
};

/* Settings: complaint rate over which a job (and, over 24 h, its From
 * domain) pauses, once at least min_delivered were delivered. Call before
 * sched_start. */
void sched_feedback_config(struct sched *sc, double complaint_rate, size_t min_delivered);

/* Outcomes are decided one by one and made durable together: a batch
 * (one fdatasync per job file and one for the suppression list, however
 * many reports). */
struct sched_fb_batch;
struct sched_fb_batch *sched_feedback_batch(void);
void sched_feedback_batch_free(struct sched_fb_batch *b);
/* Decide one recipient's outcome (on the processor's thread) into out;
 * what must be durable waits in b. out must live until the commit (a
 * pause it causes is noted in it then). */
void sched_feedback_apply(struct sched *sc, struct sched_fb_batch *b, const struct sched_fb *f,
			  struct sched_fb_result *out);
/* Make b durable, then apply it: counters, events, complaint-rate
 * checks. 0; or -1 with errno and nothing applied (its reports can be
 * given again). b is empty after either. */
int sched_feedback_commit(struct sched *sc, struct sched_fb_batch *b);

/* The processor: reads dir/new/ (the inbox, docs/feedback.md) every
 * interval, moves each file to dir/cur/ once its effects are durable,
 * logs one line per report in dir/reports.jsonl. After sched_start. */
int sched_feedback_start(struct sched *sc, const char *dir, char *err, size_t errlen);
/* Stops the processor (before sched_stop). */
void sched_feedback_stop(struct sched *sc);

/* The newest reports, newest first: {"reports": [...]}; only unmatched
 * ones with unmatched. */
json_t *sched_feedback_reports_json(struct sched *sc, size_t limit, bool unmatched);
/* The sending domains' 24 h windows: {"domains": [...]}. */
json_t *sched_feedback_domains_json(struct sched *sc);
/* Unblock a sending domain and resume the jobs its block paused. 0, -1
 * not blocked (why filled). */
int sched_feedback_domain_resume(struct sched *sc, const char *domain, char *why, size_t whylen);
/* Prometheus lines of the processor and the complaint windows. */
void sched_feedback_metrics(struct sched *sc, struct vl_buf *out);

#endif
