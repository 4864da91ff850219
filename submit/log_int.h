/*
 * log_int.h: the submission log's insides, shared by submit/log*.c and
 * the unit tests only.
 *
 * A segment, data_dir/submit/<16 hex digits>.seg, is "VLSUBLG1" then
 * records, each:
 *   u32 len     octets of the record after these 8
 *   u32 crc     CRC32C of those octets
 *   u8 version (1), u8 flags (SUB_F_*), u16 0, f64 created (wall clock),
 *   u64 expires_in_ms (resolved), 21 octets of job id,
 *   strings sender, campaign, rate_limit, user, client (absent: length 0),
 *   u32 nrcpt and nrcpt strings,
 *   u64 message length, the message's octets
 * A string is u32 length, its octets and a NUL. Little-endian, as the
 * host (the spool's tables are too). A record is whole and its checksum
 * right, or it and everything after it is a torn write: ignored.
 */
#ifndef VOLLEY_SUBMIT_LOG_INT_H
#define VOLLEY_SUBMIT_LOG_INT_H

#include "submit.h"

#define SUB_SEG_MAGIC "VLSUBLG1"
#define SUB_SEG_HDR 8
#define SUB_REC_HEAD 8
#define SUB_REC_VERSION 1

enum {
	SUB_F_TRANSACTIONAL = 1,
	SUB_F_NO_DKIM = 2,
	SUB_F_REQUIRE_TLS = 4,
	SUB_F_EXPIRES = 8,            /* expires_in was given (job.json shows it) */
};

/* A record, decoded (strings point into the buffer it was decoded from,
 * NUL-terminated; rcpts is allocated: sub_rec_free). */
struct sub_rec {
	char id[SCHED_ID_LEN + 1];
	unsigned flags;
	double created;
	uint64_t expires_in_ms;
	const char *sender;           /* "" for the null sender */
	const char *campaign, *rate_limit, *user, *client;  /* NULL: none */
	size_t nrcpt;
	const char **rcpts;
	const char *msg;
	size_t len;
};

/* The record but its message octets into out: head, fields, and the
 * message's length; the checksum covers r->msg too. */
void sub_rec_encode(const struct sub_rec *r, struct vl_buf *out);
/* The record at [p, p + n) (head included): 0 with r filled (free with
 * sub_rec_free), -1 if the checksum or the layout is wrong. */
int sub_rec_decode(const char *p, size_t n, struct sub_rec *r);
void sub_rec_free(struct sub_rec *r);

/* Read the record at *off of fd, before end, into buf and r: 1 (and *off
 * past it), 0 when none is whole there (end reached: *why NULL; or a torn
 * or damaged record: *why says which), -1 on a read error (try again). */
int sub_seg_read(int fd, uint64_t *off, uint64_t end, struct vl_buf *buf, struct sub_rec *r,
		 const char **why);

/* The record as a spool job: recipients, message, job.json, committed
 * without fsync (sched_intake_commit_nosync) and handed to sc (if not
 * NULL). recovering: a complete job of that id in jobs/ is kept (1) and
 * an incomplete one made anew. 0 made; -1 with errno. */
int sub_job_make(struct sched_spool *sp, struct sched *sc, const struct sub_rec *r,
		 bool recovering);
/* job.json's object for it (recipients: the stored count). */
json_t *sub_job_meta(const struct sub_rec *r, size_t stored, json_t *failed, json_t *errors);

/* Tests: the committer takes nothing while held (to fill the queue). */
void sub_log_hold(struct sub_log *l, bool hold);
/* Tests: the steps of the threads, run by hand on a log opened with
 * no threads (sub_log_open_bare): commit what is queued (one batch), and
 * materialise what is durable (without deleting segments: finish=false). */
struct sub_log *sub_log_open_bare(const struct cfg *c, struct sched_spool *sp,
				  struct sched *sc, const struct sub_log_opts *o,
				  char *err, size_t errlen);
void sub_log_commit_step(struct sub_log *l);
void sub_log_materialise_step(struct sub_log *l, bool finish);
/* Tests: forget everything without committing, materialising or deleting
 * (a crash, as far as the files are concerned). */
void sub_log_abandon(struct sub_log *l);

#endif
