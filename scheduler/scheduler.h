/*
 * scheduler: the spool (jobs on disk) and the job registry; destination
 * queues, shaping, retries and the journal come with them (issue 5).
 * Prefix: sched_.
 *
 * Spool layout, under data_dir:
 *   tmp/<id>/           a job being received; moved whole into jobs/
 *   jobs/<id>/job.json  the validated job (content, options, intake report)
 *   jobs/<id>/rcpt      the recipient table (below)
 *   jobs/<id>/control   "paused" or "cancelled", when not active
 * A job directory appears in jobs/ only after its files and tmp/ are
 * fsync'd; the rename and jobs/ are fsync'd before the API answers 202.
 */
#ifndef VOLLEY_SCHEDULER_H
#define VOLLEY_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../common/common.h"

#define SCHED_ID_LEN 21          /* "0194c1d2e3f4-5a6b7c8d" */

/* One recipient as stored. Strings are NUL-terminated in the table too,
 * so a reader hands them on without copying. */
#define SCHED_MAX_SUBS 256
struct sched_rcpt {
	const char *email;
	size_t email_len;
	const char *name;        /* NULL when none */
	size_t name_len;
	size_t nsubs;
	const char *keys[SCHED_MAX_SUBS];
	size_t klens[SCHED_MAX_SUBS];
	const char *vals[SCHED_MAX_SUBS];
	size_t vlens[SCHED_MAX_SUBS];
};

/* ---- spool ---- */
struct sched_spool;
/* Creates data_dir/{jobs,tmp}; removes what an interrupted intake left in
 * tmp/. NULL with err. */
struct sched_spool *sched_spool_open(const char *data_dir, char *err, size_t errlen);
void sched_spool_close(struct sched_spool *s);
/* Octets free on the spool's file system for an unprivileged writer. */
uint64_t sched_spool_free_bytes(const struct sched_spool *s);
/* Octets the jobs in the spool take. */
uint64_t sched_spool_used_bytes(const struct sched_spool *s);
/* Octets one job takes. */
uint64_t sched_spool_job_bytes(const struct sched_spool *s, const char *id);
/* A fresh job id: time-ordered, unique. */
void sched_new_id(char id[SCHED_ID_LEN + 1]);

/* Receiving a job: recipients are appended as they are parsed (nothing
 * held in memory but a hash per recipient for duplicate detection). */
struct sched_intake;
struct sched_intake *sched_intake_begin(struct sched_spool *s, const char *id,
					char *err, size_t errlen);
/* 0 stored; 1 a duplicate of recipient *first (not stored); -1 an I/O
 * error, errno kept (ENOSPC: disk full). */
int sched_intake_add(struct sched_intake *in, const struct sched_rcpt *r,
		     size_t *first);
size_t sched_intake_count(const struct sched_intake *in);
/* Write job.json, fsync everything, move into jobs/. -1 with errno. The
 * intake is freed either way. */
int sched_intake_commit(struct sched_intake *in, const char *job_json, size_t len);
/* Remove what was written. */
void sched_intake_abort(struct sched_intake *in);

/* A job's recipient table, mapped read-only. */
struct sched_table;
struct sched_table *sched_table_open(struct sched_spool *s, const char *id);
void sched_table_close(struct sched_table *t);
size_t sched_table_count(const struct sched_table *t);
/* Recipient i; -1 if the table is damaged there. */
int sched_table_get(const struct sched_table *t, size_t i, struct sched_rcpt *r);

/* ---- job registry ---- */
struct sched;
/* Loads every job in the spool. NULL with err. */
struct sched *sched_new(const struct vl_config *c, struct sched_spool *s,
			char *err, size_t errlen);
void sched_free(struct sched *sc);

/* Idempotency keys: reserve before intake, then bind to the job or release.
 * reserve: 0 reserved, 1 known (*id filled: replay that job), -1 in use by
 * a submission still being received. */
int sched_idem_reserve(struct sched *sc, const char *key, char id[SCHED_ID_LEN + 1]);
void sched_idem_release(struct sched *sc, const char *key);

/* A committed job joins the registry (meta is job.json's object). */
int sched_job_add(struct sched *sc, const char *id, json_t *meta);
/* JSON views (new references); NULL if there is no such job. */
json_t *sched_job_json(struct sched *sc, const char *id);
json_t *sched_jobs_json(struct sched *sc, size_t limit);
/* The intake report of a job (its 202 answer), for idempotent replays. */
json_t *sched_job_accept_json(struct sched *sc, const char *id);

enum sched_op { SCHED_PAUSE, SCHED_RESUME, SCHED_CANCEL };
/* 0 done (*job set), -1 no such job, -2 a transition that makes no sense
 * (why filled), -3 an I/O error writing the control file. */
int sched_job_control(struct sched *sc, const char *id, enum sched_op op,
		      json_t **job, char *why, size_t whylen);

/* Per-recipient states, as the API names them. */
enum sched_state {
	SCHED_QUEUED, SCHED_IN_FLIGHT, SCHED_DELIVERED, SCHED_DEFERRED,
	SCHED_BOUNCED, SCHED_EXPIRED, SCHED_CANCELLED, SCHED_SUPPRESSED,
	SCHED_NSTATES
};
const char *sched_state_name(enum sched_state st);
int sched_state_parse(const char *s, enum sched_state *st);

/* Every recipient of job id, in order (only those in state filter, or
 * all with SCHED_NSTATES), as JSON lines read in pieces: NULL if there
 * is no such job. */
struct sched_cursor;
struct sched_cursor *sched_recipients_open(struct sched *sc, const char *id,
					   enum sched_state filter);
/* Up to max octets of whole lines (or of one line longer than max) into
 * buf; 0 at the end. */
size_t sched_recipients_read(struct sched_cursor *c, char *buf, size_t max);
void sched_recipients_close(struct sched_cursor *c);

/* Counters over every job, for /v1/stats. */
json_t *sched_stats_json(struct sched *sc);

#endif
