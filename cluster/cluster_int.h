/*
 * cluster/'s inside (not its face): the transport of one connection to
 * Redis (link.c). A link is owned by one thread and driven by its poll
 * loop; several links (a command connection, a subscriber) may live in
 * one thread side by side. Plain TCP for now.
 */
#ifndef VOLLEY_CLUSTER_INT_H
#define VOLLEY_CLUSTER_INT_H

#include "cluster.h"
#include "../common/common.h"

#include <hiredis/hiredis.h>

enum clu_link_state {
	CLU_LINK_CLOSED,
	CLU_LINK_CONNECTING,     /* TCP connect under way */
	CLU_LINK_UP,             /* ready: out is sent, replies land in rd */
};

struct clu_link {
	enum clu_link_state state;
	int fd;                  /* -1 when closed */
	uint64_t opened_ms;      /* when the connect started */
	redisReader *rd;         /* replies read, not yet taken (NULL: closed) */
	struct vl_buf out;       /* commands to send */
	char peer[300];          /* "host:port", for messages */
};

void clu_link_init(struct clu_link *l);
/* Start a non-blocking connect to host (a name or a literal) and port.
 * -1 with why: failed at once (the link stays closed). */
int clu_link_open(struct clu_link *l, const char *host, unsigned port, char *why, size_t n);
/* The events to poll for (0 when closed). */
short clu_link_events(const struct clu_link *l);
/* After poll said revents: finish the connect, send what out holds, read
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
