/*
 * submit: volleyd's inbound SMTP around smtpd/'s protocol (layer 4,
 * beside api/): the users file and password checks with an auth cache
 * (users.c), the failed-login limiter (authlimit.c), the group-committed
 * submission log that turns accepted messages into jobs (log*.c), and the
 * listeners themselves (server.c, inbox.c). Prefix: sub_. Each part below
 * keeps its own section.
 */
#ifndef VOLLEY_SUBMIT_H
#define VOLLEY_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../common/common.h"
#include "../config/config.h"
#include "../scheduler/scheduler.h"
#include "../smtpd/smtpd.h"

/* ---- users (users.c) ----
 * The users file holds one user a line, the passwd-file shape of Dovecot
 * and htpasswd:
 *
 *     name:HASH[:key=value]...
 *
 * name: cfg_user_name_ok (1-64 of letters, digits, ".", "_", "@", "+",
 * "-"). HASH: a crypt(3) hash in $id$ form that libxcrypt computes
 * (yescrypt "$y$", bcrypt "$2b$", sha512crypt "$6$", ...); each is checked
 * at load by computing it once (about 0.1 s for a yescrypt hash of the
 * default cost). The settings after it: from_domains=a.example,b.example,
 * campaign=NAME, priority=bulk|transactional, rate_limit=100/m,
 * dkim=yes|no, max_recipients=N. Lines whose first non-blank character is
 * '#' and blank lines are skipped; trailing white space is ignored. The
 * file must not be readable or writable by others (mode & 006), as ssh
 * refuses such keys. */

/* A user and the effective settings of its mail: its line's, else the
 * configuration's per_user entry for it, else submission's own, else the
 * built-in default (named). Read only; valid while its sub_users is. */
struct sub_user {
	char *name;
	char **from_domains;     /* globs (vl_glob_match), NULL-terminated */
	size_t nfrom_domains;    /* 0 (default): any From domain */
	char *campaign;          /* NULL (default): none */
	bool transactional;      /* priority; default transactional */
	char *rate_limit;        /* as written, "100/m"; NULL (default): none */
	double rate_per_s;       /* the same per second; 0: none */
	bool dkim;               /* sign (default true) */
	uint64_t max_recipients; /* RCPT TO a message; default 100 */
};

struct sub_users;

/* Load and check the users file at path; defaults is the configuration's
 * submission group (NULL: built-in defaults, auth cache of 1024 entries
 * for 5 minutes). NULL with err "path:line: what is wrong" for an
 * unreadable file, one readable by others, a malformed line, a bad user
 * name, a hash crypt cannot compute or a malformed one, a non-$id$ hash
 * (DES crypt keeps 8 characters of a password), an unknown or repeated
 * setting, a bad value, or a user named twice. A reload is a new load:
 * the old sub_users and its auth cache go with sub_users_free. */
struct sub_users *sub_users_load(const char *path, const struct cfg_submission *defaults,
				 char *err, size_t errlen);
void sub_users_free(struct sub_users *u);
size_t sub_users_count(const struct sub_users *u);
/* The i-th user in name order (i < sub_users_count). */
const struct sub_user *sub_users_at(const struct sub_users *u, size_t i);
/* The user of that name (exact, case-sensitive), or NULL. */
const struct sub_user *sub_users_find(const struct sub_users *u, const char *name);

/* The password check of AUTH PLAIN and LOGIN: 0 with *out (may be NULL)
 * the user when pass is name's password, else -1. Slow by design (crypt_r,
 * each call with its own struct crypt_data on the heap): call it from a
 * pool of threads, never from an event loop. Thread-safe. An unknown name
 * costs the same crypt_r against a dummy yescrypt hash, so timing does not
 * tell which names exist; the comparison is constant-time
 * (CRYPTO_memcmp). A success is remembered in the auth cache for the
 * configured time (keyed by HMAC-SHA256 of name NUL password under a key
 * drawn at load), so the next check of the same pair skips crypt_r; a
 * failure never is. Passwords over SUB_PASS_MAX octets fail at once. */
#define SUB_PASS_MAX 1024
int sub_users_verify(const struct sub_users *u, const char *name, const char *pass,
		     const struct sub_user **out);
/* The same with the caller's clock (ms, monotonic) for the cache's expiry. */
int sub_users_verify_at(const struct sub_users *u, const char *name, const char *pass,
			uint64_t now_ms, const struct sub_user **out);

struct sub_users_stats {
	uint64_t verified;       /* successes, cache hits included */
	uint64_t failed;         /* failures, unknown names included */
	uint64_t cache_hits;
	size_t cache_entries;    /* live entries now */
};
void sub_users_stats(const struct sub_users *u, uint64_t now_ms, struct sub_users_stats *out);

/* May this user's mail carry a From address in domain (ASCII case
 * folded)? True when its from_domains is empty or a glob matches. */
bool sub_user_from_ok(const struct sub_user *u, const char *domain);

/* A new hash of pass for the users file: yescrypt with libxcrypt's default
 * cost and a random salt (crypt_gensalt_rn "$y$", crypt_rn). 0 with out
 * (NUL-terminated), or -1 with err (an empty password, one with a line
 * end, one over SUB_PASS_MAX, no randomness, a libcrypt failure). */
#define SUB_HASH_MAX 384          /* libxcrypt's CRYPT_OUTPUT_SIZE */
int sub_hash_password(const char *pass, char out[SUB_HASH_MAX], char *err, size_t errlen);

/* ---- the failed-login limiter (authlimit.c) ----
 * Failures counted per client address (IPv4 /32; IPv6 /64, an IPv4-mapped
 * IPv6 address as its IPv4 one) in a bounded table; past free_failures,
 * the answer to a failure waits first_delay_ms, doubling with each further
 * failure up to max_delay_ms. Each quiet_ms without a failure halves an
 * address's count. A full table takes a new address in place of the one
 * whose last failure is oldest. Deterministic given the time arguments
 * (monotonic ms); thread-safe (one mutex). */
struct sub_authlimit_opts {
	size_t max_addrs;         /* addresses tracked (4096) */
	unsigned free_failures;   /* failures answered at once (3) */
	uint32_t first_delay_ms;  /* (1000) */
	uint32_t max_delay_ms;    /* (30000) */
	uint64_t quiet_ms;        /* (300000) */
};
/* The values in parentheses above. */
void sub_authlimit_defaults(struct sub_authlimit_opts *o);

struct sub_authlimit;
/* o NULL: the defaults. */
struct sub_authlimit *sub_authlimit_new(const struct sub_authlimit_opts *o);
void sub_authlimit_free(struct sub_authlimit *l);
/* A failed AUTH from sa (AF_INET or AF_INET6; another family is not
 * counted, 0): counted; returns the ms to wait before answering it. */
uint32_t sub_authlimit_fail(struct sub_authlimit *l, const struct sockaddr *sa, uint64_t now_ms);
/* The ms a failure's answer would wait now, without counting one (for a
 * listener that delays every AUTH answer from a suspect address alike). */
uint32_t sub_authlimit_delay(struct sub_authlimit *l, const struct sockaddr *sa,
			     uint64_t now_ms);
struct sub_authlimit_stats {
	uint64_t failures;        /* failures counted, all addresses */
	uint64_t delayed;         /* of them, answered with a delay */
	size_t tracked;           /* addresses in the table now */
};
void sub_authlimit_stats(struct sub_authlimit *l, struct sub_authlimit_stats *out);

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


/* ==== the listeners (server.c, inbox.c) ====
 * The submission listener (submission.listen: STARTTLS; .implicit_tls:
 * RFC 8314) and the return-path receiver (feedback.listen) on smtpd/'s
 * io_uring workers. Submission: AUTH PLAIN/LOGIN inside TLS only and
 * required; each message prepared (msg_submit_prepare), checked against
 * its user's settings and answered 250 once the submission log has made
 * it durable. Return path: mail for feedback.domains only, each message
 * stored in the inbox (data_dir/feedback/new/) before the 250.
 * docs/submission.md. */
struct sub_log;
typedef void (*sub_done_fn)(void *arg, int rc, const char *id);

struct sub_server;
struct sub_inbox;
/* Starts what the configuration turns on (c->submission.on,
 * c->feedback.on); log is where submitted messages go (NULL when
 * submission is off); inbox where the return path's go (the caller's,
 * opened before and closed after; needed with c->feedback.on); sp is
 * measured against spool.max_bytes and spool.min_free (MAIL gets 452
 * 4.3.1 past them). NULL with err. */
struct sub_server *sub_server_start(const struct cfg *c, struct sched_spool *sp,
				    struct sub_log *log, struct sub_inbox *inbox, char *err,
				    size_t errlen);
/* Stops listening, answers every session that waits, stops the threads.
 * The log must still be open. */
void sub_server_stop(struct sub_server *v);
/* SIGHUP: the users file (and its settings from c) read again; sessions
 * already logged in keep going, new logins check the new file. -1 with
 * err: the running users stay. */
int sub_server_reload_users(struct sub_server *v, const struct cfg *c, char *err,
			    size_t errlen);
/* The listeners' Prometheus lines (docs/api.md's /metrics). */
void sub_server_metrics(struct sub_server *v, struct vl_buf *out);

/* The return-path receiver's store: DIR/{tmp,new}, a maildir whose files
 * start with Return-Path, a Delivered-To per recipient and Received. put
 * from any thread: done (on the store's thread) once the file and new/
 * are fsync'd (rc 0) or not (-1). msg is the caller's until then. */
struct sub_inbox;
struct sub_inbox *sub_inbox_open(const char *dir, char *err, size_t errlen);
int sub_inbox_put(struct sub_inbox *b, const char *hostname, const struct smtpd_envelope *env,
		  const char *msg, size_t len, sub_done_fn done, void *arg);
/* A message stored under a name of the writer's (the IMAP poller's
 * imap-<mailbox>-<uidvalidity>-<uid>), head in front of msg, durable
 * (file and new/ fsync'd) before it returns, on the caller's thread: 0;
 * 1 when new/NAME or cur/NAME exists already (nothing written); -1 with
 * err. */
int sub_inbox_store(struct sub_inbox *b, const char *name, const char *head, size_t hlen,
		    const char *msg, size_t len, char *err, size_t errlen);
void sub_inbox_counts(struct sub_inbox *b, uint64_t *stored, uint64_t *failed);
void sub_inbox_close(struct sub_inbox *b);

/* ==== end of the listeners ==== */

#endif
