/*
 * cluster/'s inside (not its face): the transport of one connection to
 * Redis (link.c). A link is owned by one thread and driven by its poll
 * loop; several links (a command connection, a subscriber) may live in
 * one thread side by side, sharing one TLS context.
 */
#ifndef VOLLEY_CLUSTER_INT_H
#define VOLLEY_CLUSTER_INT_H

#include "cluster.h"
#include "../common/common.h"

#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/ssl.h>

/* TLS for links (link.c): the context (CAs, client certificate,
 * verification on, TLS 1.2 at least) and the name the server's
 * certificate must carry (also the SNI, unless an IP literal). Made once,
 * read-only while links use it. */
struct clu_tls {
	SSL_CTX *ctx;
	char name[256];
};
/* From the options; host: the URL's (the name unless server_name says
 * otherwise). -1 with err naming the key. */
int clu_tls_init(struct clu_tls *t, const struct clu_tls_opts *o, const char *host, char *err,
		 size_t errlen);
void clu_tls_free(struct clu_tls *t);

enum clu_link_state {
	CLU_LINK_CLOSED,
	CLU_LINK_CONNECTING,     /* TCP connect under way */
	CLU_LINK_HANDSHAKE,      /* TLS handshake under way */
	CLU_LINK_UP,             /* ready: out is sent, replies land in rd */
};

struct clu_link {
	enum clu_link_state state;
	int fd;                  /* -1 when closed */
	uint64_t opened_ms;      /* when the connect started */
	redisReader *rd;         /* replies read, not yet taken (NULL: closed) */
	struct vl_buf out;       /* commands to send */
	char peer[300];          /* "host:port", for messages */
	struct addrinfo *ais;    /* the name's addresses, tried in turn */
	const struct addrinfo *next_ai;
	const struct clu_tls *tls;   /* NULL: plain TCP */
	SSL *ssl;
	short want;              /* what SSL last waited for (POLLIN, POLLOUT) */
	bool read_wants_write, write_wants_read;
};

/* A closed link; tls (kept by the caller while the link lives), or NULL
 * for plain TCP. */
void clu_link_init(struct clu_link *l, const struct clu_tls *tls);
/* Start a non-blocking connect to host (a name or a literal; a name's
 * addresses in turn, each until it refuses) and port. -1 with why:
 * failed at once (the link stays closed). */
int clu_link_open(struct clu_link *l, const char *host, unsigned port, char *why, size_t n);
/* The events to poll for (0 when closed). */
short clu_link_events(const struct clu_link *l);
/* After poll said revents: finish the connect (and the TLS handshake,
 * the certificate verified: a failure says why), send what out holds, read
 * what came into rd. 1: the link just came up (send the first commands
 * into out, then clu_link_flush); 0: go on (take the replies in rd);
 * -1 with why: failed, the link is closed. */
int clu_link_io(struct clu_link *l, short revents, char *why, size_t n);
/* Send what out holds, as far as the socket takes it. -1 with why:
 * failed, the link is closed. */
int clu_link_flush(struct clu_link *l, char *why, size_t n);
/* Close (and drop what was not sent or not taken); open again later. */
void clu_link_close(struct clu_link *l);
/* Close and free the buffer: the link is done. */
void clu_link_free(struct clu_link *l);

#endif
