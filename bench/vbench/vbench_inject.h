/*
 * An SMTP injector: the benchmark's messages, rendered by volley's own
 * message module, sent to an SMTP server (a peer's smtpd) over a few
 * parallel connections, one recipient per message (or a few: rcpts_per_msg),
 * pipelined MAIL/RCPT/DATA
 * and many messages per connection. Private to bench/vbench/. Prefix:
 * vb_inject_.
 */
#ifndef VOLLEY_VBENCH_INJECT_H
#define VOLLEY_VBENCH_INJECT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define VB_INJECT_MAXCONNS 64

struct vb_inject_opts {
	const char *job;          /* job.json */
	const char *rcpts;        /* recipients.ndjson */
	long n;                   /* the first n recipients */
	const char *hostname;     /* Message-ID domain, EHLO name */
	const char *ip;           /* the server */
	int port;
	int conns;                /* parallel connections */
	double rate;              /* messages per second in all; 0: no pacing */
	int rcpts_per_msg;        /* recipients a message (0, 1: one each): the
				   * next ones of the list, the message rendered
				   * for the first (a job the same for all) */
	double *sent_at, *acked_at;  /* NULL, or n each: message i's start
				      * (before its connection if it opens
				      * one) and its 250, UNIX seconds */
};

struct vb_inject_rcpt;
struct msg_job;

struct vb_inject {
	struct vb_inject_opts o;
	struct msg_job *job;
	char sender[256];
	bool verp;
	struct vb_inject_rcpt **r;    /* n recipients */
	long n;
	double t0;                    /* vb_now() at start */
	atomic_long next;             /* next recipient to send */
	atomic_long accepted, refused;
	pthread_t th[VB_INJECT_MAXCONNS];
	int nth;
	pthread_mutex_t mu;
	char first_err[256];          /* the first refusal or failure */
};

/* Read the job and the first o->n recipients and compile the message
 * (before the clock starts). 0, or -1 with err filled. */
int vb_inject_prepare(struct vb_inject *in, const struct vb_inject_opts *o, char *err,
		      size_t errlen);
/* Start sending on o->conns threads. */
int vb_inject_start(struct vb_inject *in);
/* Recipients finished so far (accepted + refused); n when all are. */
long vb_inject_finished(struct vb_inject *in);
/* Take no more recipients (those not yet taken stay unsent). */
void vb_inject_abort(struct vb_inject *in);
/* Wait for the threads; then accepted + refused == n. */
void vb_inject_join(struct vb_inject *in);
void vb_inject_free(struct vb_inject *in);

#endif
