/*
 * scheduler/spool: jobs on disk. Intake writes a job's recipient table
 * and job.json into tmp/<id>/ and moves the directory whole into jobs/;
 * the delivery thread and the API read the table back. Depends on
 * common/ only. Prefix: sched_ (sched_spool_, sched_intake_, sched_table_).
 *
 * Layout, under data_dir:
 *   tmp/<id>/           a job being received; moved whole into jobs/
 *   jobs/<id>/job.json  the validated job (content, options, intake report)
 *   jobs/<id>/rcpt      the recipient table (spool.c)
 *   jobs/<id>/message   a verbatim job's message octets (sched_intake_message)
 *   jobs/<id>/journal   outcomes, appended by the scheduler (journal.c)
 *   jobs/<id>/control   "paused" or "cancelled", when not active
 *   jobs/<id>/done.json a finished job's counters
 *   jobs/<id>/feedback  asynchronous bounces and complaints (fback.h)
 * A job directory appears in jobs/ only after its files and tmp/ are
 * fsync'd; the rename and jobs/ are fsync'd before the API answers 202;
 * or, for a small job once the intake log runs, after its files are in
 * data_dir/ilog/ (durable: replayed at the next open).
 * sched_intake_commit_nosync skips every fsync: its caller keeps the job
 * elsewhere (submit/'s log) until sched_spool_sync has made it durable.
 */
#ifndef VOLLEY_SCHED_SPOOL_H
#define VOLLEY_SCHED_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* The same in two steps: detach takes the job out of jobs/ at once (one
 * rename into tmp/, cheap enough under a lock); purge then removes its
 * files and makes the rename durable. A crash in between leaves tmp/<id>,
 * which the next sched_spool_open clears. */
int sched_spool_detach(struct sched_spool *s, const char *id);
int sched_spool_purge(struct sched_spool *s, const char *id);
/* Octets one job takes. */
uint64_t sched_spool_job_bytes(const struct sched_spool *s, const char *id);
/* A fresh job id: time-ordered, unique. */
void sched_new_id(char id[SCHED_ID_LEN + 1]);
/* Whether the n octets at s are a job id as sched_new_id makes them: 12
 * and 8 lower-case hex digits joined by '-'. */
bool sched_id_valid(const char *s, size_t n);

/* A job's files in the spool (the layout above). */
enum sched_spool_file {
	SCHED_SPOOL_DIR,             /* jobs/<id> */
	SCHED_SPOOL_JOB,             /* jobs/<id>/job.json */
	SCHED_SPOOL_RCPT,            /* jobs/<id>/rcpt */
	SCHED_SPOOL_JOURNAL,         /* jobs/<id>/journal */
	SCHED_SPOOL_CONTROL,         /* jobs/<id>/control */
	SCHED_SPOOL_DONE,            /* jobs/<id>/done.json */
	SCHED_SPOOL_TMP,             /* tmp/<id>: a job being received */
	SCHED_SPOOL_MESSAGE,         /* jobs/<id>/message: a verbatim job's octets */
	SCHED_SPOOL_FEEDBACK,        /* jobs/<id>/feedback: asynchronous bounces and
				      * complaints (fback.h) */
};
/* The path of job id's file f into out (outlen octets). 0; or -1 with
 * out "" and errno EINVAL when id is not a job id (sched_id_valid) or f
 * not a file, ENAMETOOLONG when the path does not fit. */
int sched_spool_path(const struct sched_spool *s, const char *id, enum sched_spool_file f,
		     char *out, size_t outlen);
/* data_dir/jobs, where every job's directory is. */
const char *sched_spool_jobs_dir(const struct sched_spool *s);

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
/* A verbatim job's message: the n octets at p written to tmp/<id>/message
 * now, fsync'd by the commit with the rest. Once per intake: -1 with errno
 * (EEXIST a second time; ENOSPC: disk full). */
int sched_intake_message(struct sched_intake *in, const void *p, size_t n);
/* Write job.json, fsync everything, move into jobs/. -1 with errno. The
 * intake is freed either way. */
int sched_intake_commit(struct sched_intake *in, const char *job_json, size_t len);
/* The same without any fsync: the job is in jobs/ but may not survive a
 * crash until sched_spool_sync returns 0. For a caller that holds the job
 * durably elsewhere meanwhile (submit/'s log); -1 with errno, freed. */
int sched_intake_commit_nosync(struct sched_intake *in, const char *job_json, size_t len);
/* Everything written to the spool's file system so far made durable (one
 * syncfs(2)): what sched_intake_commit_nosync left, above all. -1 errno. */
int sched_spool_sync(struct sched_spool *s);
/* The intake log (ilog.c, spool_int.h): from now on sched_intake_commit
 * makes a job of at most 1 MB of files durable by one append to
 * data_dir/ilog/, shared with the other commits of the moment, instead of
 * fsyncs of its own; a thread checkpoints it every checkpoint_ms (0: a
 * second).
 * sched_spool_open replays what a crash left there, started or not. 0, or
 * -1 with err. */
int sched_spool_ilog_start(struct sched_spool *s, uint64_t checkpoint_ms, char *err,
			   size_t errlen);
/* Every job logged before this wall-clock time is checkpointed (durable in
 * jobs/, its record gone): one that finished before it may be removed
 * without a replay bringing it back. INFINITY without the log. */
double sched_spool_ilog_clean(const struct sched_spool *s);
/* Remove what was written. */
void sched_intake_abort(struct sched_intake *in);

/* A job's recipient table, mapped read-only. */
struct sched_table;
struct sched_table *sched_table_open(struct sched_spool *s, const char *id);
void sched_table_close(struct sched_table *t);
size_t sched_table_count(const struct sched_table *t);
/* Recipient i; -1 if the table is damaged there. */
int sched_table_get(const struct sched_table *t, size_t i, struct sched_rcpt *r);

#endif
