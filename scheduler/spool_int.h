/*
 * The spool's internals shared by spool.c, ilog.c and their unit tests.
 * Other modules use spool.h only.
 *
 * The intake log (ilog.c): a small job (a transactional one, typically)
 * is made durable by one append to data_dir/ilog/<gen>.seg and one
 * fdatasync shared with the jobs of every other API thread waiting at the
 * moment (group commit), instead of five fsyncs of its own (recipient
 * table, job.json, its directory, jobs/ and tmp/). Its files are then
 * moved into jobs/ without any fsync. A checkpointer thread, about every
 * second, starts a new segment, waits until the jobs of the old one are
 * all in jobs/, makes the spool durable with one syncfs, and removes the
 * old segment. At start, what segments are left are replayed: each job's
 * files rewritten from its record (they may be torn or missing), then one
 * syncfs, then the segments go.
 *
 * Segment: "VLILOG01", then records: u32 length of the rest, u32 CRC32C of
 * the rest, then u8 kind (1 job, 2 forget), u8 number of files (0-3),
 * u16 0, the 21-octet job id, and per file u8 which (enum
 * sched_spool_file: job.json, rcpt, message), 3 octets 0, u32 size, the
 * octets. A torn or damaged record ends a segment's replay: its job never
 * had a 202 (and was never moved into jobs/, which happens after the
 * append is durable). "forget" undoes a job whose move failed after its
 * record was written (the client was told it failed).
 */
#ifndef VOLLEY_SCHED_SPOOL_INT_H
#define VOLLEY_SCHED_SPOOL_INT_H

#include "spool.h"

#include "../common/common.h"

#define SCHED_ILOG_MAGIC "VLILOG01"
#define SCHED_ILOG_HEAD 8            /* length and CRC before a record's rest */
#define SCHED_ILOG_MAX (1u << 20)    /* a job's files, at most, to be logged */
#define SCHED_ILOG_FILES 3

enum sched_ilog_kind { SCHED_ILOG_JOB = 1, SCHED_ILOG_FORGET = 2 };

/* One of a job's files in a record. */
struct sched_ilog_file {
	enum sched_spool_file which;
	const char *p;
	uint32_t n;
};

/* A record, decoded: pointers into the segment's octets. */
struct sched_ilog_rec {
	enum sched_ilog_kind kind;
	char id[SCHED_ID_LEN + 1];
	int nfiles;
	struct sched_ilog_file f[SCHED_ILOG_FILES];
};

/* Encode a record into out (appended). */
void sched_ilog_encode(struct vl_buf *out, const struct sched_ilog_rec *r);
/* The record at p (n octets available): its whole length, 0 when the
 * octets end in the middle of one (a torn tail), -1 when it is damaged. */
long sched_ilog_decode(const char *p, size_t n, struct sched_ilog_rec *r);

/* A put waiting for its batch, on the caller's stack. */
struct sched_ilog_wait {
	struct sched_ilog_wait *next;
	const void *rec;
	size_t len;
	bool done;
	int rc, err;
	uint64_t gen;                    /* the segment it went into */
};

struct sched_ilog;
/* Start a fresh segment in dir (created if need be) after the highest
 * there, and the checkpointer, whose syncfs goes through sync_fd (the
 * spool's file system), every checkpoint_ms (0: a second). NULL with err. */
struct sched_ilog *sched_ilog_open(const char *dir, int sync_fd, uint64_t checkpoint_ms,
				   char *err, size_t errlen);
/* A last checkpoint, then the thread stops. */
void sched_ilog_close(struct sched_ilog *l);
/* Append rec[len] durably, in one write and one fdatasync with whatever
 * other threads put meanwhile. 0, or -1 with errno (the record is then
 * not in the log). After 0 the caller moves the job into jobs/ and calls
 * sched_ilog_done with the same w. */
int sched_ilog_put(struct sched_ilog *l, const void *rec, size_t len,
		   struct sched_ilog_wait *w);
void sched_ilog_done(struct sched_ilog *l, const struct sched_ilog_wait *w);
/* Wall-clock time before which every record written is checkpointed: its
 * job durable in jobs/ and its segment removed (durably). */
double sched_ilog_clean(struct sched_ilog *l);
/* Checkpoint now (tests): 0, or -1 with errno. */
int sched_ilog_checkpoint(struct sched_ilog *l);

struct sched_ilog_stats {
	uint64_t records, batches, checkpoints, segments_open;
};
void sched_ilog_stats(struct sched_ilog *l, struct sched_ilog_stats *out);

/* Replay every segment in dir through apply (in order), then syncfs
 * through sync_fd and remove them. The number of records applied, or -1
 * with err (a segment unreadable, apply failed, syncfs failed: the
 * segments are kept). */
long sched_ilog_recover(const char *dir, int sync_fd,
			int (*apply)(void *arg, const struct sched_ilog_rec *r), void *arg,
			char *err, size_t errlen);

#endif
