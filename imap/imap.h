/* imap/: feedback mailboxes over IMAP (docs/feedback.md, "Mailboxes over
 * IMAP"). Two parts:
 *   - parse.c: a pure parser of the server's responses (framing with
 *     literals, tagged status, CAPABILITY, UIDVALIDITY, SEARCH, FETCH),
 *     bounded; no I/O.
 *   - poll.c: one thread ("vl-imap") that polls every configured mailbox
 *     over TLS (libcurl connects, negotiates TLS and logs in; the session's
 *     commands are ours), hands each report to a store callback under a
 *     deterministic name, then marks it processed and advances a durable
 *     UID state (data_dir/feedback/imap/<name>.state).
 * Prefix: imap_. Layer 3 (uses feedback/, config/, common/). */
#ifndef VOLLEY_IMAP_H
#define VOLLEY_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"
#include "../config/config.h"

/* ==== the parser (parse.c): pure ==== */

/* Bounds: a response's lines (without its literals) at most
 * IMAP_LINE_MAX octets in all; at most IMAP_LITERALS_MAX literals in one
 * response; a literal at most the caller's max_literal. */
#define IMAP_LINE_MAX     65536
#define IMAP_LITERALS_MAX 16

enum imap_kind { IMAP_R_UNTAGGED, IMAP_R_TAGGED, IMAP_R_CONT };
enum imap_status { IMAP_S_NONE, IMAP_S_OK, IMAP_S_NO, IMAP_S_BAD, IMAP_S_BYE,
		   IMAP_S_PREAUTH };

/* Capabilities that change what the poller sends. */
#define IMAP_CAP_MOVE    1u
#define IMAP_CAP_UIDPLUS 2u

/* One response, classified (pointers into the caller's bytes). */
struct imap_resp {
	enum imap_kind kind;
	char tag[32];             /* tagged: the tag */
	enum imap_status status;  /* OK/NO/BAD/BYE/PREAUTH, or NONE (data) */
	char code[32];            /* the response code's atom, upper case: "UIDVALIDITY" */
	uint32_t code_num;        /* its number (UIDVALIDITY, UIDNEXT), 0 if none */
	bool is_capability;       /* "* CAPABILITY ..." or an OK [CAPABILITY ...] */
	unsigned caps;            /* IMAP_CAP_* seen there */
	bool is_search;           /* "* SEARCH ..." */
	bool is_fetch;            /* "* N FETCH (...)" */
	const char *text;         /* a status response's human text */
	size_t text_len;
};

/* The next whole response at the start of buf: its length (> 0), 0 when
 * more bytes are needed, -1 with err when it breaks a bound or its framing
 * ({N} literals followed by N octets, lines ending CR LF). */
long imap_frame(const char *buf, size_t len, size_t max_literal, char *err, size_t errlen);
/* Classifies one framed response r (imap_frame's length n). -1 with err
 * when it is malformed. */
int imap_resp_parse(const char *r, size_t n, struct imap_resp *out, char *err, size_t errlen);

/* "* SEARCH 4 7 9": the UIDs greater than after, ascending, the smallest
 * max of them in out (*nout); the rest are left for the next round. -1
 * with err on a malformed list or a UID outside 1..2^32-1. */
int imap_parse_search(const char *r, size_t n, uint32_t after, uint32_t *out, size_t max,
		      size_t *nout, char *err, size_t errlen);

/* "* N FETCH (UID u RFC822.SIZE s FLAGS (...) BODY[] {len}...)". */
struct imap_fetch {
	uint32_t seq, uid;        /* uid 0: not in the response */
	bool has_size, has_body, seen;
	uint64_t size;
	const char *body;         /* BODY[]'s literal or quoted string (NIL: has_body false) */
	size_t body_len;
};
int imap_parse_fetch(const char *r, size_t n, struct imap_fetch *out, char *err,
		     size_t errlen);

/* The URL of a mailbox (imaps://host[:port]/FOLDER or imap://...): the
 * server part (scheme://host[:port]/, into base) and the folder,
 * percent-decoded ("INBOX" when the path is empty). The folder is 1-255
 * printable ASCII octets (spaces too) without '"', '\\', '*', '%'. -1 with err. */
int imap_url_split(const char *url, char *base, size_t baselen, char *folder,
		   size_t folderlen, bool *implicit_tls, char *err, size_t errlen);

/* Every feedback.mailboxes[i].url splits (imap_url_split); -1 with err
 * naming the key. volleyd's start and --check-config run it. */
int imap_check_config(const struct cfg *c, char *err, size_t errlen);

/* ==== the poller (poll.c) ==== */

/* Stores one report under name (imap-<mailbox>-<uidvalidity>-<uid>) with
 * head (trace fields) in front of msg, durably before it returns: 0
 * stored, 1 already there (new/ or cur/), -1 with err. */
typedef int (*imap_store_fn)(void *arg, const char *name, const char *head, size_t hlen,
			     const char *msg, size_t len, char *err, size_t errlen);

struct imap_poller;
/* Starts the thread for c->feedback.mailboxes (none: NULL, no error);
 * state under dir (data_dir/feedback/imap). NULL with err. */
struct imap_poller *imap_start(const struct cfg *c, const char *dir, imap_store_fn store,
			       void *arg, char *err, size_t errlen);
/* Interrupts a poll in progress (within about a second) and joins. */
void imap_stop(struct imap_poller *p);
/* Prometheus lines: volley_feedback_imap_* per mailbox. */
void imap_metrics(struct imap_poller *p, struct vl_buf *out);

#endif
