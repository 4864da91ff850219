/*
 * smtpd: an SMTP server, shared by volley-sink (sink/) and volleyd's
 * submission and return-path listeners (submit/). Two parts:
 *   session.c  the server session as a pure state machine: client bytes
 *              in, replies out, no I/O (unit-tested and fuzzed)
 *   worker.c   the io_uring worker: accept, recv, send, timers, TLS over
 *              memory BIOs, and the mailbox that lets another thread answer
 *              a session that waits (a message being made durable, a
 *              password being checked)
 * What a server accepts is not decided here: each command can be put to
 * the owner's hooks, which answer at once or later (SMTPD_V_PENDING, then
 * smtpd_sess_resume from any thread). Prefix: smtpd_.
 */
#ifndef VOLLEY_SMTPD_H
#define VOLLEY_SMTPD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"
#include "../tls/tls.h"

#define SMTPD_LINE_MAX 1000        /* command line incl. CRLF (RFC 5321) */
#define SMTPD_MAX_LISTEN 32
#define SMTPD_MAX_ERRORS 20        /* protocol errors before 421 */
#define SMTPD_REPLY_MAX 600        /* a hook's reply text, wire form */

/* Where a hook is asked. */
enum smtpd_stage {
	SMTPD_ST_CONNECT,
	SMTPD_ST_HELO,
	SMTPD_ST_MAIL,
	SMTPD_ST_RCPT,
	SMTPD_ST_DATA,
	SMTPD_ST_DOT,
	SMTPD_ST_RSET,
	SMTPD_ST_NOOP,
	SMTPD_ST_QUIT,
	SMTPD_ST_STARTTLS,
	SMTPD_ST_VRFY,
	SMTPD_ST_COUNT
};

/* --disable: extensions not offered (and, for PIPELINING, enforced: a
 * client that pipelines anyway is refused). */
enum {
	SMTPD_NO_PIPELINING = 1 << 0,
	SMTPD_NO_CHUNKING = 1 << 1,
	SMTPD_NO_8BITMIME = 1 << 2,
	SMTPD_NO_SMTPUTF8 = 1 << 3,
	SMTPD_NO_SIZE = 1 << 4,
	SMTPD_NO_EHLO = 1 << 5,   /* EHLO gets 502: clients fall back to HELO */
};

struct smtpd_listen {
	char host[64];
	uint16_t port;
	bool implicit_tls;      /* TLS from the connect on (RFC 8314) */
};

struct smtpd_conf {
	struct smtpd_listen listen[SMTPD_MAX_LISTEN];
	int nlisten;
	char hostname[256];
	const char *banner;     /* after "220 hostname ESMTP " */
	bool starttls;          /* STARTTLS offered (needs the worker's SSL_CTX) */
	bool auth;              /* AUTH PLAIN/LOGIN offered inside TLS only, and
				 * required for MAIL (so MAIL before STARTTLS
				 * is refused too: 530 5.7.0) */
	bool requiretls;        /* REQUIRETLS (RFC 8689) offered inside TLS */
	bool strict_data;       /* refuse a message with a bare CR or LF or a NUL
				 * (554 5.6.0); otherwise kept as they are */
	bool keep_message;      /* collect the content for the message hook */
	unsigned disabled;      /* SMTPD_NO_* */
	uint64_t max_size;      /* message octets (SIZE) */
	uint64_t max_rcpts;
	uint64_t max_conns;     /* 0: no limit */
	uint64_t timeout_ms;    /* idle */
	uint64_t latency_ms;    /* hold every reply this long (tests) */
};

/* Counters, one set per worker. Relaxed atomics: one writer each, readers
 * want a recent view. */
struct smtpd_stats {
	_Atomic uint64_t conns_open, conns_total, conns_refused;
	_Atomic uint64_t messages, recipients, bytes;
	_Atomic uint64_t tls_sessions, replies_4xx, replies_5xx;
	_Atomic uint64_t drops, timeouts, errors;
	_Atomic uint64_t auth_ok, auth_failed;
};
#define SMTPD_STAT_ADD(s, f, n) atomic_fetch_add_explicit(&(s)->f, (n), memory_order_relaxed)
void smtpd_stats_sum(struct smtpd_stats *sum, struct smtpd_stats *const *each, int n);

/* A hook's answer. */
enum smtpd_verdict_kind {
	SMTPD_V_DEFAULT,  /* the server's own reply */
	SMTPD_V_REPLY,    /* text (wire form, CRLF-terminated lines): a 2xx or
			   * 3xx one lets the command succeed with it, 4xx and
			   * 5xx refuse it */
	SMTPD_V_DROP,     /* reset the connection (after the replies before it) */
	SMTPD_V_STALL,    /* never answer */
	SMTPD_V_RAW,      /* send text verbatim; the command does nothing */
	SMTPD_V_PENDING,  /* answered later: smtpd_sess_resume */
};
struct smtpd_verdict {
	enum smtpd_verdict_kind kind;
	int code;               /* SMTPD_V_REPLY */
	const char *text;       /* SMTPD_V_REPLY, SMTPD_V_RAW */
};

/* A received message as the message hook sees it. */
struct smtpd_envelope {
	const char *id;         /* the server's id for this transaction */
	const char *mail_from;  /* "" for the null reverse-path */
	const char *rcpts;      /* NUL-separated */
	int nrcpt;
	const char *helo;
	const char *body;       /* NULL, "7BIT", "8BITMIME" */
	bool smtputf8, chunking;
	bool requiretls;        /* MAIL had the REQUIRETLS parameter */
	const char *tls_version, *tls_cipher; /* NULL: cleartext */
	bool tls_resumed;
	const char *auth;       /* NULL: not authenticated */
	const char *peer, *local;
};

struct smtpd_sess;
/* Every hook may be NULL (the server's default). arg is smtpd_ctx's. */
struct smtpd_hooks {
	/* A command about to run; argument: HELO name, MAIL/RCPT address,
	 * VRFY argument, NULL otherwise. */
	struct smtpd_verdict (*check)(void *arg, struct smtpd_sess *s, enum smtpd_stage st,
				      const char *argument);
	/* AUTH credentials (NUL-terminated; copy them to go on later). DEFAULT
	 * refuses: an AUTH without this hook never succeeds. */
	struct smtpd_verdict (*auth)(void *arg, struct smtpd_sess *s, const char *user,
				     const char *pass);
	/* A whole message (with keep_message, msg holds it, dot-unstuffed;
	 * it stays unchanged until the session is resumed). DEFAULT: 250. */
	struct smtpd_verdict (*message)(void *arg, struct smtpd_sess *s,
					const struct smtpd_envelope *env, const char *msg,
					size_t len);
	/* The session ends (smtpd_sess_free): the place to let go of what
	 * the other hooks kept in s->user. */
	void (*closed)(void *arg, struct smtpd_sess *s);
};

/* What a worker shares with its sessions. */
struct smtpd_ctx {
	const struct smtpd_conf *conf;
	const struct smtpd_hooks *hooks;
	void *hook_arg;
	struct smtpd_stats *stats;
	_Atomic uint64_t *conns_open; /* every worker's, for max_conns */
	unsigned worker;
	uint64_t next_id;
};

enum smtpd_action {
	SMTPD_OK,        /* keep going */
	SMTPD_STARTTLS,  /* flush replies, then start TLS; drop buffered input */
	SMTPD_CLOSE,     /* flush replies, then close */
	SMTPD_DROP,      /* reset the connection (after the replies before it) */
	SMTPD_WAIT,      /* a hook answers later: feed nothing until resumed */
};

enum smtpd_state {
	SMTPD_S_CMD,
	SMTPD_S_DATA,
	SMTPD_S_BDAT,
	SMTPD_S_STALL,
	SMTPD_S_WAIT,
	SMTPD_S_CLOSED,
};

struct smtpd_mbox;

struct smtpd_sess {
	struct smtpd_ctx *ctx;
	enum smtpd_state state;
	enum smtpd_action action;
	struct vl_buf *out;         /* replies go here (plaintext) */
	void *user;                 /* the hooks' own, per session */
	char hook_reply[SMTPD_REPLY_MAX]; /* a hook may build its reply here */

	bool greeted, noservice;    /* noservice: after a 554 greeting */
	bool helo, ehlo, tls, in_mail;
	int auth_step;              /* AUTH exchange in progress */
	char auth_user[256];        /* authenticated as, or "" */
	bool line_overflow;
	int errors;
	char line[SMTPD_LINE_MAX];
	size_t line_len;
	char helo_name[256];

	/* transaction */
	char mail_from[520];
	const char *body;           /* BODY= value or NULL */
	bool smtputf8, chunking, requiretls;
	struct vl_buf rcpts;        /* accepted recipients, NUL-separated */
	int nrcpt;

	/* message data */
	int dstate;                 /* DATA end-of-message scanner */
	bool data_cr;               /* previous data byte was CR */
	size_t data_line;           /* octets in the current data line */
	bool data_long_line, data_too_big, data_bad_eol, data_nul, scan_cr;
	uint64_t msg_size;
	uint64_t bdat_left;
	bool bdat_last, bdat_discard;
	struct vl_buf msg;          /* kept only with keep_message */
	char msg_id[64];            /* the transaction's id (envelope id) */

	/* what waits for smtpd_sess_resume */
	enum smtpd_stage wait_stage; /* SMTPD_ST_DOT or, for AUTH, SMTPD_ST_COUNT */
	char wait_user[256];

	/* set by the worker */
	struct smtpd_mbox *mbox;    /* NULL: resume applies at once */
	void *conn;
	const char *tls_version, *tls_cipher;
	bool tls_resumed;
	char peer[64], local[64];
};

void smtpd_sess_init(struct smtpd_sess *s, struct smtpd_ctx *ctx, struct vl_buf *out);
void smtpd_sess_free(struct smtpd_sess *s);
/* Send the greeting (or what the CONNECT hook says instead). */
enum smtpd_action smtpd_sess_greet(struct smtpd_sess *s);
/* Consume client bytes (plaintext). Returns the number of bytes used:
 * fewer than len only when s->action != SMTPD_OK, and the rest must not be
 * fed (with SMTPD_WAIT: not yet). */
size_t smtpd_sess_feed(struct smtpd_sess *s, const char *in, size_t len);
/* The TLS handshake finished: new session state, as RFC 3207 requires. */
void smtpd_sess_tls_started(struct smtpd_sess *s, const char *version, const char *cipher);
/* The idle timer fired. */
void smtpd_sess_timeout(struct smtpd_sess *s);
/* The answer to a PENDING hook: code and text ("250 2.0.0 Ok: queued as
 * X\r\n"; NULL for the server's default reply of that code's class). Any
 * thread; in a worker the session goes on in the worker's thread. */
void smtpd_sess_resume(struct smtpd_sess *s, int code, const char *text);
/* The same, applied now (the worker's thread, or no worker at all). */
void smtpd_sess_apply(struct smtpd_sess *s, int code, const char *text);

/* worker.c: queue an answer for the session's worker (thread-safe). */
void smtpd_mbox_post(struct smtpd_mbox *m, struct smtpd_sess *s, int code, const char *text);

/* Format "CODE text\r\n" into out (outlen octets), for hooks' replies. */
const char *smtpd_reply_fmt(char *out, size_t outlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "HOST:PORT" or "[V6]:PORT" into l (implicit_tls left alone). -1 if bad. */
int smtpd_listen_parse(const char *spec, struct smtpd_listen *l);

/* ---- worker ---- */
struct smtpd_worker;
/* tls: the server context (NULL: no TLS at all), shared by workers so one
 * server shows one certificate and resumes sessions across workers. */
struct smtpd_worker *smtpd_worker_new(const struct smtpd_conf *conf,
				      const struct smtpd_hooks *hooks, void *hook_arg,
				      unsigned id, SSL_CTX *tls, _Atomic uint64_t *conns_open,
				      char *err, size_t errlen);
/* Runs until *stop is set and every session has ended (sessions waiting
 * for a hook's answer are waited for). 0 on a clean stop. */
int smtpd_worker_run(struct smtpd_worker *w, atomic_bool *stop);
struct smtpd_stats *smtpd_worker_stats(struct smtpd_worker *w);
void smtpd_worker_free(struct smtpd_worker *w);

#endif
