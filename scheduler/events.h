/*
 * scheduler/events: every outcome is an event, a JSON line in
 * data_dir/events/ (files NNNNNNNN.jsonl, rotated by size, the oldest
 * removed past a count) and on /v1/events. docs/events.md describes the
 * format. Depends on common/ only (an event names its bounce class as
 * text). Prefix: sched_event_, sched_events_.
 */
#ifndef VOLLEY_SCHED_EVENTS_H
#define VOLLEY_SCHED_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

struct sched_event {
	const char *type;            /* Reception, Delivery, TransientFailure, Bounce,
				      * Expiration, AdminBounce, OOB, Feedback,
				      * Unsubscribe (unsub/) */
	double time;                 /* wall clock, seconds */
	const char *job, *recipient, *domain, *site, *mx;
	const char *peer_address, *source_address;   /* NULL: null */
	unsigned attempt;
	int code;                    /* 0: no response object; then text,
				      * if any, is the "reason" */
	const char *enhanced, *text;
	const char *bounce_class;    /* "invalid-recipient", ... (as
				      * sched_bounce_class_name); NULL: null */
	const char *tls_version;     /* NULL: "tls": null (clear text) */
	const char *tls_cipher;
	const char *tls_policy;      /* the effective policy: "dane", ... */
	const char *tls_mta_sts;     /* the domain's MTA-STS mode, NULL: none */
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
/* The same with b's lines, without a copy when nothing is pending (b
 * then gets the log's empty buffer); b is left empty. */
void sched_events_append_buf(struct sched_events *e, struct vl_buf *b);
/* -1 with errno on a write error: the lines are held (bounded) for the
 * next flush. Not fsync'd but once a file, at rotation and close. */
int sched_events_flush(struct sched_events *e);
/* Flushes; readers' reads return -1 from then on (close them after). */
void sched_events_close(struct sched_events *e);

/* A reader over every retained file, oldest first, then (follow) new
 * lines as they are flushed; without follow, up to where the log stood
 * at open. job: only that job's events (NULL: all). Never NULL. */
struct sched_events_reader;
struct sched_events_reader *sched_events_reader_open(struct sched_events *e,
						     const char *job, bool follow);
/* Whole lines into buf, up to max (a line longer than max is cut into
 * pieces). 0: nothing new within timeout_ms (follow only); -1: the end
 * (no follow), or the events log was closed. timeout_ms < 0: no limit. */
long sched_events_read(struct sched_events_reader *r, char *buf, size_t max,
		       int timeout_ms);
void sched_events_reader_close(struct sched_events_reader *r);

/* A place in the log: a file's number and an octet offset in it, always
 * at a line start. {0, 0}: none (a reader opened there starts at the
 * current end). */
struct sched_events_pos {
	uint64_t seq, off;
};
/* A following reader from at (NULL or seq 0: the current end of the log),
 * of the events whose type is one of types (NULL: all). A position whose
 * file retention removed goes on at the oldest file kept, *skipped (if
 * given) set to the files passed over (the first maybe partly read
 * before); one beyond the log (the folder replaced) starts at the oldest
 * file kept. Never NULL. */
/* A following reader from the current end of the log: only what is
 * flushed from now on (job: that job's events; NULL: all). Never NULL. */
struct sched_events_reader *sched_events_reader_open_end(struct sched_events *e,
							 const char *job);
struct sched_events_reader *sched_events_reader_open_at(struct sched_events *e,
							const struct sched_events_pos *at,
							const char *const *types, size_t ntypes,
							uint64_t *skipped);
/* As sched_events_read, at most max_lines lines (counted in *nlines). */
long sched_events_read_lines(struct sched_events_reader *r, char *buf, size_t max,
			     size_t max_lines, size_t *nlines, int timeout_ms);
/* The position just after what the reads so far returned: whole lines
 * (a line handed out in pieces counts from its start until its end). */
struct sched_events_pos sched_events_reader_pos(const struct sched_events_reader *r);
/* Where the oldest file kept begins (the whole log). */
struct sched_events_pos sched_events_begin(struct sched_events *e);
/* Where the log ends now (what a reader opened at NULL starts from). */
struct sched_events_pos sched_events_end(struct sched_events *e);

#endif
