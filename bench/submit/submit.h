/*
 * volley-submit: an SMTP submission load client (docs/bench.md), the
 * benchmark's driver for a submission listener (587 STARTTLS, 465
 * implicit TLS, AUTH inside TLS). Private to bench/submit/. Prefix: vs_.
 *
 *   sess.c    the client's SMTP session as a pure state machine (no I/O):
 *             server replies in, commands out, events to the caller
 *   msg.c     the messages: RFC 5322, unique Message-ID, Date and To
 *   submit.c  the program: io_uring, TLS over memory BIOs, the figures
 */
#ifndef VOLLEY_SUBMIT_H
#define VOLLEY_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/common.h"

/* Reply lines longer than this are a protocol error (RFC 5321 4.5.3.1.5
 * says 512; some servers say more). */
#define VS_LINE_MAX 2048
#define VS_RCPTS_MAX 1000

enum vs_tls { VS_TLS_STARTTLS, VS_TLS_IMPLICIT, VS_TLS_NONE };
enum vs_mech { VS_MECH_PLAIN, VS_MECH_LOGIN };

/* What the session tells its caller. */
enum vs_ev {
	VS_EV_STARTTLS,      /* 220 to STARTTLS: start the TLS handshake now */
	VS_EV_READY,         /* authenticated: transactions begin */
	VS_EV_DOT,           /* message id's data is queued, final dot included */
	VS_EV_ACCEPTED,      /* message id accepted (2xx at the end of data) */
	VS_EV_REFUSED,       /* message id refused: code at MAIL, RCPT, DATA or dot */
	VS_EV_RCPT_REFUSED,  /* one recipient of message id refused (code) */
	VS_EV_AUTH_REFUSED,  /* AUTH failed: code and text */
	VS_EV_CLOSE,         /* QUIT answered: close the connection */
	VS_EV_FAIL,          /* protocol failure (code 0 when not a reply): close */
};

/* The session's settings; strings are borrowed and must outlive it. */
struct vs_sess_cfg {
	const char *ehlo;        /* our EHLO name */
	const char *user, *pass; /* NULL user: no AUTH */
	const char *from;        /* envelope sender */
	const char *to_domain;   /* recipients are vs_rcpt() at this domain */
	enum vs_tls tls;
	enum vs_mech mech;
	int rcpts;               /* recipients per message, 1..VS_RCPTS_MAX */
	long per_conn;           /* messages per connection before QUIT */
};

struct vs_sess_ops {
	/* The next message for this connection: its number into *id; false
	 * when no message is left (the session then says QUIT). */
	bool (*next)(void *arg, uint64_t *id);
	/* Append message id's data, dot-stuffed, ending with CRLF.CRLF. */
	void (*body)(void *arg, uint64_t id, struct vl_buf *out);
	void (*event)(void *arg, enum vs_ev ev, uint64_t id, int code, const char *text);
	void *arg;
};

/* Replies the session expects, in the order its commands went out. */
enum vs_rk { VS_R_GREETING, VS_R_EHLO, VS_R_STARTTLS, VS_R_AUTH, VS_R_RSET, VS_R_MAIL,
	     VS_R_RCPT, VS_R_DATA, VS_R_DOT, VS_R_QUIT };
#define VS_PEND_MAX (VS_RCPTS_MAX + 8)

struct vs_sess {
	const struct vs_sess_cfg *cfg;
	struct vs_sess_ops ops;
	bool tls_up;             /* inside TLS (implicit, or after STARTTLS) */
	bool pipelining, starttls, auth_plain, auth_login;  /* the EHLO's offers */
	bool tls_wait;           /* STARTTLS's 220 read, the handshake not done */
	bool authed, done, failed;
	int login_step;          /* AUTH LOGIN: 0 user, 1 password */
	/* The commands sent or due, and their replies' kinds; head is the
	 * oldest unanswered, sent counts those on the wire. */
	uint8_t pend[VS_PEND_MAX];
	int pend_rcpt[VS_PEND_MAX];
	int head, npend, sent;
	/* The current transaction. */
	uint64_t id;
	bool in_txn, mail_ok, need_rset;
	int rcpt_ok, refusal;    /* first refusal's code */
	long msgs;               /* transactions begun on this connection */
	/* The reply being read. */
	char line[VS_LINE_MAX + 1];
	size_t len;
	int code;                /* of the reply's first line; 0 before one */
	bool ehlo_reply;         /* the reply read is an EHLO's: take its keywords */
};

/* A session for a connection just made (implicit TLS: the handshake done
 * first, then the plaintext fed here). */
void vs_sess_init(struct vs_sess *s, const struct vs_sess_cfg *cfg,
		  const struct vs_sess_ops *ops);
/* Server plaintext in, commands appended to out. 0 to go on, 1 when the
 * session is over (CLOSE or FAIL was said), -1 after a FAIL. After
 * VS_EV_STARTTLS nothing else may have come in the same read: octets after
 * the 220 are a FAIL (a man in the middle's injection, CVE-2011-0411). */
int vs_sess_input(struct vs_sess *s, const char *data, size_t n, struct vl_buf *out);
/* STARTTLS's handshake is done: EHLO again, appended to out. */
void vs_sess_tls_up(struct vs_sess *s, struct vl_buf *out);
/* The message id in flight (its outcome lost when the connection is). */
bool vs_sess_busy(const struct vs_sess *s, uint64_t *id);

/* Recipient j of message id: "u<id*rcpts+j, 10 digits>@domain". */
int vs_rcpt(char *out, size_t len, uint64_t id, int j, int rcpts, const char *domain);

/* ---- messages (msg.c) ---- */
struct vs_msg {
	const struct vs_sess_cfg *cfg;
	struct vl_buf body;      /* the text after the header, dot-stuffed, with CRLF.CRLF */
	size_t size;             /* the whole message's size asked for */
	char msgid_domain[128];
	char date[40];           /* RFC 5322 date of the current second */
	long date_sec;
	uint64_t run;            /* this run's tag in every Message-ID */
};
/* Pre-build the body: size octets in all for a message with one recipient. */
void vs_msg_init(struct vs_msg *m, const struct vs_sess_cfg *cfg, size_t size);
void vs_msg_free(struct vs_msg *m);
/* Append message id, dot-stuffed and terminated, to out. */
void vs_msg_append(struct vs_msg *m, uint64_t id, struct vl_buf *out);

#endif
