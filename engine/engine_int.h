/*
 * engine internals shared by the engine's own files and its unit tests.
 * Other modules use engine.h only.
 */
#ifndef VOLLEY_ENGINE_INT_H
#define VOLLEY_ENGINE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "../common/common.h"
#include "engine.h"

/* ---- replies (reply.c) ---- */
#define ENG_REPLY_LINE_MAX 2048   /* octets per reply line, CRLF excluded */
#define ENG_REPLY_MAX_LINES 64
#define ENG_REPLY_TEXT_MAX 1024   /* text kept of a reply; longer is cut */

struct eng_reply {
	int code;
	char enhanced[16];           /* "5.1.1", or "" */
	char text[ENG_REPLY_TEXT_MAX]; /* lines' texts joined by '\n' */
	size_t text_len;
	int lines;
};

/* A parser holds memory only while a reply is cut between two inputs (a
 * line begun, or lines of a reply that has not ended): replies parse in
 * place, so ten thousand sessions waiting for theirs hold 24 octets each. */
struct eng_reply_parser {
	char *line;                  /* a line begun in an earlier input:
				      * ENG_REPLY_LINE_MAX + 2 octets, or NULL */
	size_t len;
	struct eng_reply *cur;       /* a reply whose lines began in an earlier
				      * input, or NULL */
};

void eng_reply_parser_init(struct eng_reply_parser *p);
void eng_reply_parser_free(struct eng_reply_parser *p);
/* Parse from in; *used gets the bytes consumed. 1: a reply is complete in
 * *out (feed the rest again); 0: all used, need more (*out was scratch);
 * -1: malformed or too long, the connection is unusable. */
int eng_reply_feed(struct eng_reply_parser *p, const char *in, size_t len,
		   size_t *used, struct eng_reply *out);

/* ---- iovec lists and dot-stuffing (dotstuff.c) ---- */
struct eng_iov {
	struct iovec *v;
	size_t n, cap;
	size_t bytes;
};
void eng_iov_free(struct eng_iov *b);
/* The DATA payload of body: dot-stuffed, ending with CRLF.CRLF, pointing
 * into body's memory (no copy). out is reset first. */
void eng_dotstuff(const struct iovec *body, size_t nbody, struct eng_iov *out);

/* ---- a pool's queue of messages waiting for a session (queue.c) ----
 * FIFO, but for urgent messages (eng_msg.urgent: transactional mail),
 * which go behind the urgent ones already waiting and ahead of the rest,
 * and for a message's next transaction (front), which goes first. */
struct eng_mq {
	struct eng_msg *head, *tail;
	struct eng_msg *urgent;      /* the last of the urgent ones at the
				      * head, NULL when none waits there */
	size_t len;
};
void eng_mq_push(struct eng_mq *q, struct eng_msg *m, bool front);
struct eng_msg *eng_mq_pop(struct eng_mq *q);

/* ---- state machines: checks and logs (session.c, worker.c) ----
 * Every change of a session's state (enum eng_state) and of a connection's
 * (worker.c's enum conn_state) goes through one enter function, which logs
 * it at debug level (volleyd --verbose) and checks that it is one the
 * machine has. An illegal one is a bug: sanitized builds (make asan, the
 * fuzz targets) abort on it, others log an error and go on. */
#if defined(__SANITIZE_ADDRESS__)
#define ENG_STRICT_STATES 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ENG_STRICT_STATES 1
#endif
#endif
#ifndef ENG_STRICT_STATES
#define ENG_STRICT_STATES 0
#endif

/* ---- the SMTP client session, protocol only (session.c) ----
 * Replies in, commands out; the worker does the I/O. Like OpenSMTPD's
 * mta_session: one state enum, one function per event. */

enum eng_state {
	ENG_S_CONNECTING,
	ENG_S_BANNER,
	ENG_S_EHLO,
	ENG_S_HELO,
	ENG_S_STARTTLS,
	ENG_S_TLS,
	ENG_S_AUTH,        /* AUTH PLAIN, or LOGIN's last step */
	ENG_S_AUTH_USER,   /* AUTH LOGIN: username prompt expected */
	ENG_S_AUTH_PASS,   /* AUTH LOGIN: password prompt expected */
	ENG_S_READY,
	ENG_S_TXN,         /* MAIL/RCPT/DATA|BDAT replies expected */
	ENG_S_BODY,        /* body sent, the final reply expected */
	ENG_S_RSET,
	ENG_S_QUIT,
	ENG_S_CLOSED,
	ENG_S_COUNT
};
/* "EHLO", "TXN", ...: the enum's names without ENG_S_; "?" out of range. */
const char *eng_sess_state_name(enum eng_state st);
/* Whether the session may go from one state to the other (a state to
 * itself is no change and always allowed). */
bool eng_sess_transition_ok(enum eng_state from, enum eng_state to);

enum eng_act {
	ENG_WAIT,      /* send the output (if any), then wait for a reply */
	ENG_STARTTLS,  /* start the TLS handshake now */
	ENG_IDLE,      /* ready: give it a message (check ->finished first) */
	ENG_CLOSE,     /* send the output (if any), then close */
};

/* Pipelining across transactions (RFC 2920 with RFC 3030): with PIPELINING
 * and CHUNKING, the next message's transaction goes right behind a BDAT
 * LAST whose replies are still outstanding. At most ENG_PIPE_MAX
 * transactions are outstanding on a session, their bodies and commands at
 * most ENG_PIPE_OCTETS. */
#define ENG_PIPE_MAX 4
#define ENG_PIPE_OCTETS 262144

/* One transaction whose replies the session expects. */
struct eng_txn {
	struct eng_msg *msg;              /* its recipients: msg->first_,
					   * msg->count_ (one transaction of a
					   * message at a time) */
	size_t pos;                       /* replies received */
	size_t sent;                      /* commands written */
	size_t accepted;                  /* recipients with 2xx */
	size_t octets;                    /* commands and body written */
	unsigned char *rs;                /* per recipient: RS_* (session.c) */
	size_t rs_cap;
	bool rset_first;                  /* a pipelined one: its RSET's reply
					   * comes first (the one before it may
					   * have left the server's transaction
					   * open) */
	bool use_bdat, body_with_cmds;
	bool body_queued;                 /* BDAT LAST or the final dot written */
	uint64_t body_ns;                 /* when the worker took it to send
					   * (eng_sess.now_ns); 0: not yet */
	bool dead;                        /* MAIL refused: no recipient left */
};

/* A body to send after the first `at` octets of the output's commands. */
struct eng_out_body {
	size_t at;
	const struct iovec *v;
	size_t n, bytes;
	struct eng_txn *txn;
};

struct eng_sess {
	const struct eng_config *cfg;
	const struct eng_route *route;
	enum eng_state state;             /* changed only by session.c's enter() */
	/* for logs, "conn 0.17": the worker's number and the connection's */
	unsigned id_worker;
	unsigned long long id_conn;
	/* what the peer offers */
	bool pipelining, chunking, eightbitmime, smtputf8, starttls;
	bool auth_plain, auth_login, size_ext;
	bool requiretls;                  /* REQUIRETLS (RFC 8689) */
	uint64_t size_max;                /* 0: no SIZE limit announced */
	/* TLS, filled by the worker */
	bool tls_on, tls_verified, tls_dane;
	const char *tls_version, *tls_cipher;
	const char *tls_failure;          /* RFC 8460 result type, or NULL */
	const char *tls_tlsa;             /* the host's TLSA records, when used */
	char peer[64];
	/* output for the worker: commands, with bodies between them (each
	 * after its BDAT or the 354: the message's own iovecs for BDAT,
	 * `stuffed` for DATA, no copy either way). The worker takes it all
	 * at once (eng_sess_output_taken). */
	struct vl_buf out;
	struct eng_out_body bodies[ENG_PIPE_MAX];
	size_t nbodies;
	struct eng_iov stuffed;           /* reused from message to message */
	/* the transactions outstanding, oldest (the one replies are for)
	 * first: a ring */
	struct eng_txn txn[ENG_PIPE_MAX];
	unsigned head, ntxn;
	struct eng_msg *finished;         /* transactions ended: hand back
					   * (a list on next_, oldest first) */
	bool starttls_refused;
	/* response times: now_ns is the worker's clock when it takes the
	 * output or hands in replies (0: unknown); reply_ns the final reply's
	 * time after the body, for the results being given */
	uint64_t now_ns, reply_ns;
	unsigned nmsgs;                   /* transactions on this connection */
	/* why the session failed, for the messages still queued */
	const char *fail_stage;
	int fail_code;
	char fail_enhanced[16];
	char *fail_text;                  /* NULL until it failed; at most
					   * ENG_FAIL_TEXT_MAX octets */
};
#define ENG_FAIL_TEXT_MAX 299

void eng_sess_init(struct eng_sess *s, const struct eng_config *cfg,
		   const struct eng_route *route);
void eng_sess_free(struct eng_sess *s);
/* TCP connected: the banner is next (ENG_WAIT), or with implicit TLS the
 * handshake (ENG_STARTTLS), then the banner inside TLS. */
enum eng_act eng_sess_connected(struct eng_sess *s);
enum eng_act eng_sess_reply(struct eng_sess *s, const struct eng_reply *r);
/* The TLS handshake finished (worker set tls_* fields). */
enum eng_act eng_sess_tls_done(struct eng_sess *s);
/* Start a transaction for m (state READY). */
enum eng_act eng_sess_start(struct eng_sess *s, struct eng_msg *m);
/* Pipeline a transaction for m behind those outstanding (state TXN). false:
 * not now (no PIPELINING and CHUNKING, the pipeline is full, the last
 * transaction is not all written, m too large); m is untouched. true: m
 * was written, or refused here (its results given, in ->finished). */
bool eng_sess_pipe(struct eng_sess *s, struct eng_msg *m);
/* Whether eng_sess_pipe could take a message now (any message's size). */
bool eng_sess_pipe_open(const struct eng_sess *s);
/* The transaction replies are expected for, NULL when none. */
struct eng_txn *eng_sess_head(struct eng_sess *s);
/* The worker took the output (commands and bodies) for a send. */
void eng_sess_output_taken(struct eng_sess *s);
/* Pooled session no longer needed: QUIT. */
enum eng_act eng_sess_quit(struct eng_sess *s);
/* The connection failed (refused, reset, timeout, malformed reply, TLS
 * error): every recipient of the transaction in progress gets a transient
 * result. Returns ENG_CLOSE. */
enum eng_act eng_sess_fail(struct eng_sess *s, const char *stage, int code,
			   const char *enhanced, const char *text);
/* How long the current wait may take, in ms (from cfg->t). */
uint64_t eng_sess_timeout(const struct eng_sess *s);
const char *eng_sess_stage(const struct eng_sess *s);
/* Give one result (used for queued messages failed by the pool too). */
void eng_result_give(struct eng_msg *m, size_t rcpt, enum eng_status st,
		     int code, const char *enhanced, const char *text,
		     const char *stage, const struct eng_sess *s,
		     bool maybe_delivered);

/* ---- workers (worker.c) ---- */
struct eng_worker;
struct engine;
struct eng_worker *eng_worker_new(struct engine *e, const struct eng_config *cfg,
				  unsigned id, char *err, size_t errlen);
int eng_worker_run(struct eng_worker *w);
void eng_worker_submit(struct eng_worker *w, struct eng_msg *m);
void eng_worker_stop(struct eng_worker *w, uint64_t grace_ms);
void eng_worker_drain(struct eng_worker *w);
/* What to resolve: one callback set (txt, else mx with host or not). */
struct eng_dns_ask {
	eng_mx_fn mx;
	eng_txt_fn txt;
	eng_tlsa_fn tlsa;
	unsigned port;           /* tlsa */
	bool host;               /* dns_resolve_host, not MX */
	bool any_address;        /* ... keeping private addresses */
};
void eng_worker_resolve(struct eng_worker *w, const struct eng_dns_ask *ask, const char *domain,
			void *arg);
void eng_worker_dns_stats(struct eng_worker *w, struct dns_stats *s);
void eng_worker_free(struct eng_worker *w);
uint64_t eng_route_hash(const struct eng_route *r);
size_t eng_worker_conns(struct eng_worker *w);

/* ---- spreading a route over workers (engine.c) ---- */
/* How many of a route's max_connections worker id (of n) may open: a
 * route is spread over min(n, cap) workers from its home (hash % n) on,
 * its cap shared out between them, the larger shares first. */
unsigned eng_share(uint64_t route_hash, unsigned cap, unsigned id, unsigned n);
/* Connections of a route open or opening on a worker, +1 or -1. */
void eng_route_conns(struct engine *e, uint64_t route_hash, unsigned worker, int delta);
/* Worker `from` could not connect for m's route, which is spread: m goes
 * to another of the route's workers with a connection open or opening (a
 * host that takes one connection and refuses the rest). Once a message at most; false:
 * none has one, m was moved already, or m is part-sent; it stays. */
bool eng_send_elsewhere(struct engine *e, struct eng_msg *m, unsigned from);

#endif
