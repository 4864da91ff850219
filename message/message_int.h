/*
 * message_int.h: shared by message/'s files and its unit tests only.
 * Encoders (mime.c), the header writer (header.c) and the compiled job
 * (compose.c builds it, render.c walks it).
 */
#ifndef VOLLEY_MESSAGE_INT_H
#define VOLLEY_MESSAGE_INT_H

#include "message.h"

#include <jansson.h>

#define MSG_LINE_MAX 998      /* RFC 5322 2.1.1: octets a line, CRLF excluded */
#define MSG_LINE_WANT 78      /* ... and what it should stay under */
#define MSG_WORD_MAX 900      /* longer header words are encoded so lines fit */
#define MSG_JOB_VARS_MAX 256  /* distinct variables in a job */
#define MSG_COPY_MAX 256      /* static runs shorter than this are copied, not iovecs */

/* ---- mime.c ---- */
bool msg_utf8_valid(const char *s, size_t n);
/* Octets in the UTF-8 sequence that starts with lead byte c (1 if invalid). */
size_t msg_utf8_len(unsigned char c);
bool msg_has_8bit(const char *s, size_t n);
/* Base64 in lines of 76, CRLF between lines, none after the last. */
void msg_b64_encode(const void *src, size_t n, struct vl_buf *out);
/* Strict base64 (whitespace between groups allowed); -1 if malformed. */
int msg_b64_decode(const char *src, size_t n, struct vl_buf *out);
/* Quoted-printable (RFC 2045 6.7) of s, continuing a line at *col (updated).
 * CRLF, LF and CR are line breaks; lines stay <= 76 octets; trailing
 * white space is always encoded, so chunks may be joined at any line
 * position. It never produces "=_" (multipart boundaries start with it). */
void msg_qp_encode(const char *s, size_t n, size_t *col, struct vl_buf *out);
/* Bare LF and bare CR become CRLF. */
void msg_crlf(const char *s, size_t n, struct vl_buf *out);
/* "&<>\"'" as entities. */
void msg_html_escape(const char *v, size_t n, struct vl_buf *out);
/* template.c: all but RFC 3986 unreserved characters as %XX. */
void msg_url_escape(const char *v, size_t n, struct vl_buf *out);

/* ---- header.c ---- */
enum msg_hdr_kind {
	MSG_HDR_TEXT,  /* unstructured: words, encoded where not ASCII */
	MSG_HDR_ADDR,  /* address list: phrases encoded, addresses kept */
};
#define MSG_HDR_EQ 1u  /* also encode words that look like encoded words
			  (text not meant to be pre-encoded: the JSON content) */
/* "Name: value\r\n", folded at white space to stay within 78 octets where
 * the words allow, never over 998; non-ASCII, control characters and
 * overlong words as RFC 2047 encoded words (UTF-8, B or Q, <= 75 each).
 * Leading and trailing white space of the value is dropped. The value must
 * hold no CR, LF or NUL. *raw8 is set if raw UTF-8 remains (an address). */
void msg_hdr_write(struct vl_buf *out, const char *name, const char *v, size_t n,
		   enum msg_hdr_kind k, unsigned flags, bool *raw8);
/* Append "name" <email> as a header value ready for MSG_HDR_ADDR: the
 * name quoted when it needs quoting, bare email without one. */
void msg_hdr_mailbox(struct vl_buf *out, const char *name, const char *email);
/* "; name=value" parameter on its own folded line: a quoted string when
 * short printable ASCII, else RFC 2231 (UTF-8, percent-encoded, continued). */
void msg_hdr_param(struct vl_buf *out, const char *name, const char *v, size_t n);
/* RFC 5322 date-time of t in UTC: "Mon, 23 Nov 2026 17:14:12 +0000". */
void msg_hdr_date(struct vl_buf *out, time_t t);
/* An RFC 5322 field name: printable ASCII but ':', 1..76 octets. */
bool msg_hdr_name_ok(const char *s, size_t n);
bool msg_hdr_is_addr(const char *name);

/* ---- the compiled job ---- */
/* Static octets in job->stat. head: octets before the first CRLF (all
 * when none); tail: octets after the last; nl: holds a CRLF. */
struct span {
	size_t off, len, head, tail;
	bool nl;
};

/* A template segment: static span, or variable var of the job. */
struct tseg {
	size_t var;          /* SIZE_MAX: static */
	struct span s;
};

enum piece_kind {
	PC_STATIC,   /* s */
	PC_TO,       /* To: from the recipient */
	PC_DATE,
	PC_MSGID,
	PC_HEADER,   /* name: segs rendered, then msg_hdr_write */
	PC_UNSUB,    /* List-Unsubscribe: mailto (static) and the URL segs */
	PC_QP,       /* a text part with slots: static segs already QP */
	PC_RAW,      /* the body of a content string with slots */
};

struct piece {
	enum piece_kind kind;
	struct span s;
	struct tseg *segs;
	size_t nsegs;
	char *name;                /* PC_HEADER; PC_UNSUB: "<mailto:...>" or NULL */
	enum msg_hdr_kind hk;      /* PC_HEADER */
	unsigned hflags;           /* PC_HEADER */
	enum msg_escape esc;       /* PC_QP: MSG_ESC_NONE or MSG_ESC_HTML */
	bool soft_end;             /* PC_QP: end on a soft line break (last in message) */
	bool builtin;              /* PC_UNSUB: volley's own URL (j->ubase/token), no segs */
};

struct var {
	char *name;
	bool in_header;            /* used in a header: no CR, LF, NUL */
	bool in_raw;               /* in a content string's body */
	char *job_val;             /* the job's substitution, or NULL */
	size_t job_len;
};

struct msg_job {
	struct vl_buf stat;        /* every static octet; spans point into it */
	struct piece *p;
	size_t np, pcap;
	struct var *vars;
	size_t nvars;
	char *job_id, *hostname;
	size_t max_size;
	size_t url_max;            /* longest rendered unsubscribe URL allowed */
	bool smtputf8, eightbit;
	char *ubase;               /* volley's unsubscribe base_url, or NULL */
	struct msg_unsub_signer *usign;  /* its secret, set up for HMAC */
	bool transactional;
	char boundary[40];         /* prefix; a one-letter suffix per level */
};

/* ---- job.c: building blocks ---- */
int msg_fail(struct msg_err *e, const char *code, const char *field,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Append static octets (to the last piece when it is static). */
void msg_job_static(struct msg_job *j, const char *s, size_t n);
struct piece *msg_job_piece(struct msg_job *j, enum piece_kind k);
void msg_span_measure(const struct msg_job *j, struct span *s);
/* Compile src as a template into p's segs: static text into j->stat as
 * how writes it (NULL: as is), slots mapped to job variables (esc tells
 * where they go). */
typedef void (*msg_static_fn)(struct msg_job *j, const char *s, size_t n);
int msg_job_tpl(struct msg_job *j, const char *src, size_t n, enum msg_escape esc,
		msg_static_fn how, const char *field, struct piece *p, struct msg_err *e);
/* Has the template any slot? 1, 0, or -1 if malformed (e filled). */
int msg_job_slots(const char *src, size_t n, const char *field, struct msg_err *e);
/* A header whose value is a template: static octets now, or a piece. */
int msg_job_header(struct msg_job *j, const char *name, const char *v, size_t n,
		   enum msg_hdr_kind k, unsigned flags, const char *field,
		   struct msg_err *e);
/* JSON: no member but names; a string member (absent or null: *s NULL),
 * valid UTF-8 without NUL. Errors name path.key. */
int msg_json_fields(const json_t *o, const char *path, const char *const *names,
		    struct msg_err *e);
int msg_json_str(const json_t *o, const char *key, const char *path, bool required,
		 const char **s, size_t *n, struct msg_err *e);
bool msg_has_crlf(const char *s, size_t n);
/* The unsubscribe headers at this point of the message. u: the job's
 * "unsubscribe" (or NULL); own: the content has List-Unsubscribe fields
 * of its own (then the built-in ones are not added). */
int msg_unsub_compile(struct msg_job *j, const json_t *u, bool own, struct msg_err *e);
/* volley's URL for a recipient: base_url "/" token into out
 * (NUL-terminated; outlen >= MSG_UNSUB_BASE_MAX + 2 + MSG_UNSUB_TOKEN_MAX):
 * its length, or -1 when the job has no base_url or the index or address
 * does not fit a token. */
int msg_unsub_url(const struct msg_job *j, const char *email, size_t index, char *out,
		  size_t outlen);
/* token.c: the length of a token for these lengths (without making it). */
size_t msg_unsub_token_len(size_t job_len, uint32_t index, size_t email_len);

/* compose.c: a content object; raw.c: a content string */
int msg_compose_object(struct msg_job *j, const json_t *o, const json_t *unsub,
		       struct msg_err *e);
int msg_raw_compile(struct msg_job *j, const char *s, size_t n, const json_t *unsub,
		    struct msg_err *e);

#endif
