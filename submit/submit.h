/*
 * submit: SMTP submission's storage and accounts (layer 4, beside api/).
 * Prefix: sub_. Each part below keeps its own section.
 */
#ifndef VOLLEY_SUBMIT_H
#define VOLLEY_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"
#include "../scheduler/scheduler.h"

/* ==== the submission log (submit/log.c, log_rec.c, log_job.c) ====
 *
 * Every message an SMTP session accepts becomes a verbatim job
 * (docs/scheduler.md, "Verbatim jobs"), durable before the 250. Sessions
 * hand their messages to one committer thread, which appends a batch of
 * records to data_dir/submit/<seq>.seg with one write and one fdatasync,
 * then answers each message's callback; a second thread turns each
 * durable record into an ordinary spool job (no fsync per job) and hands
 * it to the registry, and deletes a segment once one syncfs has made its
 * jobs durable. A crash at any point leaves each message in jobs/ or in a
 * segment, and sub_log_open recovers the segments (docs/submission-log.md).
 */
struct sub_log;

/* One accepted message. Strings are NUL-terminated; the item and its
 * strings are read (and copied) by sub_log_put before it returns, except
 * msg, which stays the caller's until done is called. */
struct sub_item {
	char id[SCHED_ID_LEN + 1];   /* "": made by sub_log_put (sched_new_id) */
	const char *sender;          /* the envelope sender; "": null (<>) */
	const char *const *rcpts;    /* nrcpt addresses, 1..SUB_RCPT_MAX */
	size_t nrcpt;
	const char *msg;             /* the message: CRLF, dot-unstuffed, finished */
	size_t len;                  /* 1..max_message_size octets */
	const char *campaign;        /* NULL: none */
	bool transactional;          /* priority "transactional" (else "bulk") */
	uint64_t expires_in_ms;      /* 0: the configuration's max_age */
	const char *rate_limit;      /* "50/s"...; NULL: none */
	bool no_dkim;                /* "dkim": false */
	bool require_tls;            /* REQUIRETLS (RFC 8689) */
	const char *user;            /* the authenticated user; NULL: none */
	const char *client;          /* the client's address; NULL: none */
	/* Called once, on the committer thread, when the message is durable
	 * (rc 0) or cannot be (rc -1 and errno: ENOSPC, also when the spool
	 * has less than spool.min_free free or its journal cannot be written;
	 * EIO, EFBIG...; the record is then not recovered either). id: the
	 * job's id. Must be cheap: post the reply to the session and return. */
	void (*done)(void *arg, int rc, const char *id);
	void *arg;
};

#define SUB_RCPT_MAX 10000        /* recipients of one message */

/* Tuning; zeroes take the defaults. */
struct sub_log_opts {
	size_t queue_max;            /* items waiting for the committer (10000) */
	uint64_t segment_bytes;      /* a segment is closed past this (64 MB) ... */
	uint64_t segment_ms;         /* ... or once this old (1000 ms) */
};

/* Opens data_dir/submit/ (c->data_dir), recovers what a crash left there
 * (every record whose job is not complete in jobs/ becomes one; then the
 * segments go), and starts the two threads. sc may be NULL (jobs are made
 * but nobody is told: the registry finds them at its next start). Call it
 * after sched_new and before sched_start, so recovery has mended a job
 * before delivery reads it. NULL with err. */
struct sub_log *sub_log_open(const struct cfg *c, struct sched_spool *sp, struct sched *sc,
			     char *err, size_t errlen);
struct sub_log *sub_log_open_opts(const struct cfg *c, struct sched_spool *sp,
				  struct sched *sc, const struct sub_log_opts *o,
				  char *err, size_t errlen);
/* Would sub_log_put take it? 0, or -1 with errno and why (a sentence for
 * the SMTP reply): EINVAL (an address, the message's header, an option),
 * EMSGSIZE (over max_message_size), EEXIST (the caller's id is a job's). */
int sub_log_check(const struct sub_log *l, const struct sub_item *it, char *why,
		  size_t whylen);
/* From any thread. 0: queued, done will be called. -1 (done will not be)
 * with errno: as sub_log_check, or EAGAIN (queue_max items wait: answer
 * 451 4.3.0 and let the client retry), ESHUTDOWN (closing), EIO (the log
 * could not undo a failed write: it takes nothing until restarted). */
int sub_log_put(struct sub_log *l, const struct sub_item *it);
/* Drains the queue, commits, materialises every record it can, stops the
 * threads, frees. A segment whose jobs could not be made stays for the
 * next open. */
void sub_log_close(struct sub_log *l);

struct sub_log_stats {
	uint64_t accepted;           /* items made durable (done rc 0) */
	uint64_t failed;             /* items whose write failed (done rc -1) */
	uint64_t refused;            /* puts refused (-1) */
	uint64_t batches, syncs;     /* committer batches; fdatasync calls */
	uint64_t bytes;              /* octets appended to segments */
	uint64_t jobs;               /* jobs materialised */
	uint64_t recovered;          /* ... of them from an earlier run's segments */
	uint64_t segments;           /* segments deleted after their syncfs */
	size_t waiting;              /* items in the queue now */
};
void sub_log_stats(struct sub_log *l, struct sub_log_stats *out);

/* ==== end of the submission log ==== */

#endif
