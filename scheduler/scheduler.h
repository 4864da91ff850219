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
#include "../config/config.h"
#include "../engine/engine.h"

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
/* Remove a job's files (it is over and its retention has passed). */
int sched_spool_remove(struct sched_spool *s, const char *id);
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
struct sched *sched_new(const struct cfg *c, struct sched_spool *s,
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

/* ---- bounce classification (bounce.c) ----
 * Rules map a reply (code, enhanced code, text) or a failure stage to a
 * class and to hard/soft. The built-in rules are scheduler/bounce.rules,
 * compiled in; a user's file is consulted first. */
enum sched_bounce_class {
	SCHED_BC_NONE,               /* delivered: no class */
	SCHED_BC_INVALID_RECIPIENT, SCHED_BC_MAILBOX_FULL, SCHED_BC_INACTIVE_MAILBOX,
	SCHED_BC_POLICY, SCHED_BC_SPAM_BLOCK, SCHED_BC_RATE_LIMITED, SCHED_BC_DNS,
	SCHED_BC_TLS, SCHED_BC_ROUTING, SCHED_BC_PROTOCOL, SCHED_BC_TIMEOUT,
	SCHED_BC_MESSAGE_TOO_LARGE, SCHED_BC_OTHER,
	SCHED_BC_COUNT
};
/* "invalid-recipient", ...; NULL for SCHED_BC_NONE. */
const char *sched_bounce_class_name(enum sched_bounce_class c);
int sched_bounce_class_parse(const char *s, enum sched_bounce_class *c);

struct sched_bounce_verdict {
	enum sched_bounce_class cls;
	bool hard;                   /* permanent: retrying cannot help */
};
struct sched_bounce_rules;
/* user_file NULL or "": the built-in rules only. NULL with err naming the
 * file and line of a bad rule. */
struct sched_bounce_rules *sched_bounce_load(const char *user_file, char *err,
					     size_t errlen);
void sched_bounce_free(struct sched_bounce_rules *r);
/* code 0 when no reply came (stage says where it failed: connect, tls,
 * greeting, ...); enhanced "" when none. Always gives a verdict: a 5xx
 * nothing matches is other/hard, a 4xx or no reply other/soft. */
void sched_bounce_classify(const struct sched_bounce_rules *r, int code,
			   const char *enhanced, const char *text, const char *stage,
			   struct sched_bounce_verdict *v);

/* ---- suppression list (suppress.c) ----
 * Addresses that later jobs skip. Kept in data_dir/suppression, an
 * append-only log compacted at open. Addresses compare with the domain
 * case-insensitive. Every call is thread-safe. */
struct sched_suppress;
struct sched_suppress *sched_suppress_open(const char *path, char *err, size_t errlen);
void sched_suppress_close(struct sched_suppress *s);
bool sched_suppressed(struct sched_suppress *s, const char *email, size_t len);
/* 0 added (durably: fsync'd), 1 already there, -1 I/O error (errno). */
int sched_suppress_add(struct sched_suppress *s, const char *email, const char *reason,
		       const char *job);
/* Several at once, durable with one fdatasync (the committer's hard
 * bounces). Addresses refused as invalid are skipped. 0, or -1 (errno). */
int sched_suppress_add_many(struct sched_suppress *s, const char *const *emails,
			    const char *const *jobs, size_t n, const char *reason);
/* 0 removed, 1 not there, -1 I/O error. */
int sched_suppress_remove(struct sched_suppress *s, const char *email);
size_t sched_suppress_count(struct sched_suppress *s);
/* {"suppressed": [{"email", "reason", "job", "added"}...], "next": email|null}
 * in address order, starting after `after` (NULL: the start), at most limit. */
json_t *sched_suppress_list(struct sched_suppress *s, const char *after, size_t limit);

/* ---- events (events.c) ----
 * Every outcome is an event: a JSON line in data_dir/events/
 * (files NNNNNNNN.jsonl, rotated by size, the oldest removed past a count)
 * and on /v1/events. docs/events.md describes the format. */
struct sched_event {
	const char *type;            /* Reception, Delivery, TransientFailure, Bounce,
				      * Expiration, AdminBounce, OOB, Feedback */
	double time;                 /* wall clock, seconds */
	const char *job, *recipient, *domain, *site, *mx;
	const char *peer_address, *source_address;   /* NULL: null */
	unsigned attempt;
	int code;                    /* 0: no response object */
	const char *enhanced, *text;
	enum sched_bounce_class bounce_class;  /* SCHED_BC_NONE: null */
	const char *tls_version;     /* NULL: "tls": null (clear text) */
	const char *tls_cipher;
	bool tls_verified, tls_dane;
	size_t size;
};
/* One line, '\n'-terminated, appended to out. Every key is always there
 * (null when unset), type, time and job first. */
void sched_event_format(const struct sched_event *ev, struct vl_buf *out);

/* rotate_bytes 0: no rotation by size; keep_files 0 counts as 1. NULL
 * with err. */
struct sched_events;
struct sched_events *sched_events_open(const char *dir, uint64_t rotate_bytes,
				       unsigned keep_files, char *err, size_t errlen);
/* Append formatted lines (buffered; written by sched_events_flush, which
 * the scheduler calls at each journal commit). Thread-safe. */
void sched_events_append(struct sched_events *e, const char *lines, size_t len);
/* -1 with errno on a write error: the lines are held (bounded) for the
 * next flush. Not fsync'd but once a file, at rotation and close. */
int sched_events_flush(struct sched_events *e);
/* Flushes; readers' reads return -1 from then on (close them after). */
void sched_events_close(struct sched_events *e);

/* A reader over every retained file, oldest first, then (follow) new
 * lines as they are flushed; without follow, up to where the log stood
 * at open. job: only that job's events (NULL: all). */
struct sched_events_reader;
struct sched_events_reader *sched_events_reader_open(struct sched_events *e,
						     const char *job, bool follow);
/* Whole lines into buf, up to max (a line longer than max is cut into
 * pieces). 0: nothing new within timeout_ms (follow only); -1: the end
 * (no follow), or the events log was closed. timeout_ms < 0: no limit. */
long sched_events_read(struct sched_events_reader *r, char *buf, size_t max,
		       int timeout_ms);
void sched_events_reader_close(struct sched_events_reader *r);

/* ---- delivery ---- */
/* Start the delivery thread and the journal committer over eng (the
 * caller's: it outlives sched_stop); every job in the registry resumes
 * where its journal left it. */
int sched_start(struct sched *sc, struct sched_suppress *sup, struct sched_events *ev,
		struct engine *eng, char *err, size_t errlen);
/* Stop dispatching, let transactions in flight end within grace_ms (the
 * rest is journaled as deferred), commit; the engine is stopped, not
 * freed. */
void sched_stop(struct sched *sc, uint64_t grace_ms);
/* {"queues": [...]} per destination site. */
json_t *sched_queues_json(struct sched *sc);
/* False while the journal cannot be written (disk full). */
bool sched_accepting(struct sched *sc);

/* Counters over every job, for /v1/stats. */
json_t *sched_stats_json(struct sched *sc);

#endif
