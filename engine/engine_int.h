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

struct eng_reply_parser {
	char line[ENG_REPLY_LINE_MAX + 2];
	size_t len;
	struct eng_reply cur;
};

void eng_reply_parser_init(struct eng_reply_parser *p);
/* Parse from in; *used gets the bytes consumed. 1: a reply is complete in
 * *out (feed the rest again); 0: all used, need more; -1: malformed or too
 * long, the connection is unusable. */
int eng_reply_feed(struct eng_reply_parser *p, const char *in, size_t len,
		   size_t *used, struct eng_reply *out);
/* A reply is partly received. */
bool eng_reply_pending(const struct eng_reply_parser *p);

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

#endif
