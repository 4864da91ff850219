/*
 * message: job templates, addresses, MIME composition, per-recipient
 * rendering, DKIM signing. A template is compiled once per job into static
 * segments and slots; rendering a recipient copies slot values into the
 * gaps, escaped for where they go, with no re-parse. Prefix: msg_.
 */
#ifndef VOLLEY_MESSAGE_H
#define VOLLEY_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "../common/common.h"

#define MSG_VAR_MAX 64            /* octets in a substitution name */

struct msg_tpl;

/* Compile "Hi {{ name }}"-style text. Names are letters, digits, '_', '-'
 * and '.', spaces around them optional. An unterminated or malformed
 * "{{" is an error naming its offset; NULL with err filled. */
struct msg_tpl *msg_tpl_compile(const char *src, size_t len, char *err,
				size_t errlen);
void msg_tpl_free(struct msg_tpl *t);

/* Slots, in order of appearance; a name may appear several times. */
size_t msg_tpl_nslots(const struct msg_tpl *t);
const char *msg_tpl_slot(const struct msg_tpl *t, size_t i);
/* The template has no slots: render once for every recipient. */
bool msg_tpl_is_static(const struct msg_tpl *t);
/* Segments in order: static text (returns SIZE_MAX; *text, *len set) or
 * a slot (returns its index). For compilers built on templates. */
size_t msg_tpl_nsegs(const struct msg_tpl *t);
size_t msg_tpl_seg(const struct msg_tpl *t, size_t i, const char **text, size_t *len);

/* Where a value goes decides its escaping. */
enum msg_escape {
	MSG_ESC_NONE,    /* text: as is */
	MSG_ESC_HTML,    /* & < > " ' as entities */
	MSG_ESC_HEADER,  /* refused if it holds CR, LF or NUL (header injection) */
	MSG_ESC_URL,     /* percent-encoded but RFC 3986 unreserved characters */
};

/* The value of slot i (named name) for this recipient; NULL if it has
 * none, which is an error naming the variable. */
typedef const char *(*msg_value_fn)(void *arg, size_t slot, const char *name,
				    size_t *len);

/* Append the rendering to out. -1 with err filled (and out as it was). */
int msg_tpl_render(const struct msg_tpl *t, msg_value_fn value, void *arg,
		   enum msg_escape esc, struct vl_buf *out, char *err,
		   size_t errlen);


/* ---- errors: what the API turns into {"error": {code, message, field}} ----
 * Codes: "invalid_field" (unknown field, wrong type, bad value),
 * "invalid_address", "too_large" (over max_size), and per recipient
 * "missing_substitution" and "invalid_field" (CR or LF into a header). */
struct msg_err {
	char code[40];
	char field[160];     /* JSON path, e.g. "content.attachments[2].data" */
	char message[320];   /* one sentence naming what is wrong */
};

/* ---- addresses (addr.c) ----
 * RFC 5321 Mailbox: Local-part "@" ( Domain / address-literal ).
 * Dot-atom or quoted-string local part (<= 64 octets), domain of LDH labels
 * (<= 63 each, <= 255 in all) or [IPv4] / [IPv6:...] literal, <= 254 octets
 * in all. UTF-8 (RFC 6531) is allowed in local part and domain labels when
 * it is valid UTF-8; *utf8 tells whether the address needs SMTPUTF8.
 * CR, LF, NUL, controls, spaces outside quotes, '<' '>' are refused.
 * 0 if valid; -1 with why filled (a short phrase). */
int msg_addr_check(const char *a, size_t len, bool *utf8, char *why,
		   size_t whylen);
/* The domain part of a valid address (after the last '@'). */
const char *msg_addr_domain(const char *a);

/* ---- composition (job.c, compose.c, raw.c, verbatim.c, render.c; header.c, mime.c) ----
 * A job's content is composed once into a struct msg_job: the MIME
 * skeleton with every static part encoded once (attachments base64'd,
 * static text parts encoded), and templates for what varies per recipient.
 */
struct msg_job_opts {
	const char *job_id;      /* goes into Message-ID: 1-64 of [A-Za-z0-9_-] */
	const char *hostname;    /* Message-ID domain */
	size_t max_size;         /* max_message_size (0: none): the static part or
				    a rendered message over it is too_large */
	/* volley's own one-click unsubscribe (NULL: not configured). A bulk
	 * job without its own unsubscribe.url (and without "builtin": false)
	 * gets List-Unsubscribe <base_url/token> per recipient, and
	 * {{ unsubscribe_url }} renders that URL. Copied into the job. */
	const struct msg_unsub_conf *unsub;
	bool transactional;      /* no built-in List-Unsubscribe unless asked */
};

struct msg_job;

struct json_t;
/* A substitution value as text: strings as they are, numbers and booleans
 * as JSON writes them (into tmp); NULL for null, arrays and objects. */
#define MSG_SUB_TMP 64
const char *msg_sub_string(const struct json_t *v, char tmp[MSG_SUB_TMP], size_t *len);

/* content is the job's "content" (object or string), substitutions the
 * job-level "substitutions" object (or NULL), unsubscribe the job's
 * "unsubscribe" object (or NULL). Field names in errors are full paths
 * ("content.from.email", "unsubscribe.url"). Unknown fields and wrong types
 * are errors. NULL with err filled. docs/message.md has the choices. */
struct msg_job *msg_job_compile(const struct json_t *content,
				const struct json_t *substitutions,
				const struct json_t *unsubscribe,
				const struct msg_job_opts *o, struct msg_err *err);
void msg_job_free(struct msg_job *j);
/* Envelope needs of the static part: raw UTF-8 in a header (a UTF-8
 * address) needs SMTPUTF8; 8-bit octets in a content string's body need
 * 8BITMIME. Per recipient msg_out says it exactly. Static size. */
bool msg_job_needs_smtputf8(const struct msg_job *j);
bool msg_job_needs_8bitmime(const struct msg_job *j);
size_t msg_job_static_size(const struct msg_job *j);
/* Every template slot name the job uses, de-duplicated. */
size_t msg_job_nvars(const struct msg_job *j);
const char *msg_job_var(const struct msg_job *j, size_t i);
/* Is variable i used in a header (so its value must not hold CR/LF/NUL)? */
bool msg_job_var_in_header(const struct msg_job *j, size_t i);

/* One recipient as rendering sees it. Values are looked up by name: first
 * the recipient's own substitutions, then the job's. */
struct msg_rcpt {
	const char *email;
	const char *name;        /* display name for To, or NULL */
	size_t index;            /* position in the job: Message-ID, VERP */
	size_t nsubs;
	const char *const *keys; /* nsubs names */
	const char *const *vals; /* nsubs values (NUL-terminated) */
	const size_t *lens;      /* their lengths (NULL: strlen) */
};

/* Would this recipient render? Checks, without rendering, the email, that
 * every variable has a value, that values are UTF-8, that header-bound
 * values (and name) hold no CR, LF or NUL, that a content string's body
 * lines stay within 998 octets and the unsubscribe URL within its limit.
 * 0, or -1 with err (field "email", "name", "substitutions.<name>",
 * "unsubscribe.url"). msg_render runs the same checks. */
int msg_job_check_rcpt(const struct msg_job *j, const struct msg_rcpt *r,
		       struct msg_err *err);

/* A rendered message: bytes in buf plus static blobs of the job, in order,
 * as an iovec list. Valid until the next render into the same msg_out or
 * msg_job_free. CRLF line endings, no line over 998 octets. */
struct msg_out {
	struct vl_buf buf;
	struct iovec *iov;
	size_t niov, iovcap;
	size_t size;             /* total octets */
	bool smtputf8;           /* raw UTF-8 in the header: needs SMTPUTF8 */
	bool eightbit;           /* 8-bit octets anywhere: needs 8BITMIME */
	struct vl_buf tmp;       /* scratch of msg_render */
};
void msg_out_init(struct msg_out *o);
void msg_out_free(struct msg_out *o);
/* date is the Date header's time (seconds since the epoch). -1 with err. */
int msg_render(const struct msg_job *j, const struct msg_rcpt *r, time_t date,
	       struct msg_out *out, struct msg_err *err);

/* ---- one-click unsubscribe tokens (token.c; RFC 8058) ----
 * A token names a job, a recipient index and the recipient's address and
 * carries an HMAC-SHA256 of them under volleyd's unsubscribe secret,
 * truncated to 128 bits, so volley's own endpoint can act on it without
 * the spool (the job may be long gone). Version 1, as octets:
 *   0x01, job id length (1-64), job id ([A-Za-z0-9_-]), the index as
 *   LEB128 (minimal, at most 5 octets, <= UINT32_MAX), the address (the
 *   rest, 3-254 octets), 16 octets of MAC over everything before it;
 * base64url without padding (RFC 4648 5). The address is readable by
 * whoever has the URL (it is the recipient's own link); only the MAC is
 * secret-bound. Secrets are at least MSG_UNSUB_SECRET_MIN octets. */
#define MSG_UNSUB_SECRET_MIN 32
#define MSG_UNSUB_SECRET_MAX 1024
#define MSG_UNSUB_MAC_LEN 16
#define MSG_UNSUB_RAW_MAX (2 + 64 + 5 + 254 + MSG_UNSUB_MAC_LEN)
#define MSG_UNSUB_TOKEN_MAX ((MSG_UNSUB_RAW_MAX * 4 + 2) / 3)   /* 455 characters */

/* The secrets a verifier accepts: the current one, and optionally the one
 * before a rotation (prev NULL: none). Tokens are made with key only. */
struct msg_unsub_keys {
	const unsigned char *key, *prev;
	size_t keylen, prevlen;
};

/* The token for (job, index, email) into out (NUL-terminated): its
 * length, or -1 when an argument is out of range (job id, address length)
 * or out is smaller than MSG_UNSUB_TOKEN_MAX + 1. */
int msg_unsub_token(const unsigned char *key, size_t keylen, const char *job,
		    uint32_t index, const char *email, char *out, size_t outlen);

/* The same with the key set up once (its HMAC pads digested): what a job
 * keeps to make a token per recipient. Read-only once made, so threads
 * may share one. NULL for a key outside 32-1024 octets. */
struct msg_unsub_signer;
struct msg_unsub_signer *msg_unsub_signer_new(const unsigned char *key, size_t keylen);
void msg_unsub_signer_free(struct msg_unsub_signer *s);
int msg_unsub_token_sign(const struct msg_unsub_signer *s, const char *job, uint32_t index,
			 const char *email, char *out, size_t outlen);

enum msg_unsub_verdict {
	MSG_UNSUB_OK = 0,
	MSG_UNSUB_MALFORMED = -1,   /* not a token: alphabet, length, version, fields */
	MSG_UNSUB_FORGED = -2,      /* well formed, but no secret's MAC matches */
};
struct msg_unsub_tok {
	char job[65];
	uint32_t index;
	char email[255];
};
/* Decode and verify len characters of tok (the MAC compared in constant
 * time, against each secret of keys). out is filled only with OK. Pure. */
enum msg_unsub_verdict msg_unsub_verify(const char *tok, size_t len,
					const struct msg_unsub_keys *keys,
					struct msg_unsub_tok *out);

/* volley's own unsubscribe endpoint as a job compile sees it
 * (msg_job_opts.unsub): URLs are base_url "/" token. base_url: https,
 * URL characters only, no query or fragment, no trailing '/', at most
 * MSG_UNSUB_BASE_MAX octets (msg_unsub_base_ok). */
#define MSG_UNSUB_BASE_MAX 256
struct msg_unsub_conf {
	const char *base_url;
	const unsigned char *key;
	size_t keylen;
};
/* NULL if fine, else what is wrong with base_url. */
const char *msg_unsub_base_ok(const char *base_url);

/* VERP return path: "bounces+<job>.<index>@domain" from "bounces@domain"
 * (inside the quotes of a quoted local part). Written to out
 * (NUL-terminated); -1 if it would not fit, or the local part would grow
 * past 64 octets. */
int msg_verp(const char *sender, const char *job_id, size_t index, char *out,
	     size_t outlen);

/* The domain of a job's From address (content.from.email, or the From
 * field of a content string), written to out; -1 when there is none or it
 * varies per recipient. DKIM keys are chosen by it. */
int msg_content_from_domain(const struct json_t *content, char *out, size_t outlen);
/* No part of the body varies per recipient: one DKIM body hash serves all. */
bool msg_job_body_static(const struct msg_job *j);
/* Recipient r gets the job's common body: every slot in the body takes a
 * job-level value (none of email, name, to_header, volley's unsubscribe
 * URL) and r gives none of those variables a value of its own. Every
 * such recipient's body is the same octets (one DKIM body hash serves
 * them all, whatever their headers); true for all when msg_job_body_static
 * (shared.c). */
bool msg_rcpt_body_static(const struct msg_job *j, const struct msg_rcpt *r);

/* Shared transactions (shared.c). A job is shareable when every recipient
 * renders the same octets but for the Message-ID (which names an index):
 * no generated To (it names the recipient: a job sets its own To, without
 * slots, to share), no volley unsubscribe token, and every variable used
 * has a job-level value that no predefined one (email, name, to_header)
 * replaces. A recipient then joins a shared message unless its own
 * substitutions name a variable the job uses (msg_rcpt_shareable).
 * VERP is the scheduler's to check: the envelope, not the content. */
bool msg_job_shareable(const struct msg_job *j);
bool msg_rcpt_shareable(const struct msg_job *j, const struct msg_rcpt *r);

/* ---- a message submitted over SMTP (submit.c; RFC 6409) ----
 * The input is the whole message as the SMTP server took it: CRLF line
 * ends, dot-unstuffing undone, 8-bit allowed (not necessarily UTF-8).
 * The header fields are kept octet for octet and in order, except:
 *   - every Bcc field (with its continuation lines) is removed;
 *   - X-Volley-Campaign (1-256 octets of UTF-8 without control
 *     characters, taken as written: no RFC 2047 decoding),
 *     X-Volley-Priority (bulk or transactional, any case) and
 *     X-Volley-Expires (a duration, "1m" to "30d") are read into the
 *     result and removed; names in any case; a bad value or a second
 *     field of one is an error naming it;
 *   - Date (now, or opts.date) and Message-ID (<id@hostname>) are added
 *     at the end of the header section when missing.
 * From: exactly one field. One mailbox, or several and a Sender field
 * (RFC 5322 3.6.2); from_domain is the first mailbox's domain in either
 * case (what DKIM signs for and the user's from_domains allow). Display
 * names, quoted strings, comments, angle brackets, obsolete routes and
 * groups (RFC 6854) are understood; an address literal domain is refused.
 * A message without an empty line is a header section only (RFC 5322
 * 2.1: the body is optional); it is stored with an empty body.
 * Limits: the header section at most MSG_SUBMIT_HEADER_MAX octets, a line
 * at most 998 (RFC 5322 2.1.1: a folded field may be longer); a bare CR
 * or LF, or a NUL, in the header is an error. The body is not read but for
 * 8-bit octets. */
#define MSG_SUBMIT_HEADER_MAX (1024 * 1024)

struct msg_submit_opts {
	const char *msg_id;      /* Message-ID's id, when one is added (the job's id):
				    1-64 of letters, digits, '.', '_', '-' */
	const char *hostname;    /* its right part: 1-253 of the same */
	time_t date;             /* Date, when one is added; 0: now */
};

enum msg_priority { MSG_PRIO_NONE, MSG_PRIO_BULK, MSG_PRIO_TRANSACTIONAL };

/* What to store is head followed by body_len octets at body. */
struct msg_submit {
	struct vl_buf head;      /* the header section, its empty line included */
	const char *body;        /* into the input: not a copy */
	size_t body_len;
	char from_domain[256];   /* the (first) From mailbox's domain, lower case */
	size_t nfrom;            /* mailboxes in From */
	char campaign[257];      /* X-Volley-Campaign; "" when none */
	enum msg_priority priority;  /* X-Volley-Priority; NONE when none */
	uint64_t expires_ms;     /* X-Volley-Expires; 0 when none */
	bool smtputf8;           /* 8-bit octets in head: needs SMTPUTF8 */
	bool eightbit;           /* 8-bit octets in body: needs 8BITMIME */
	bool added_date, added_msgid;
};
void msg_submit_init(struct msg_submit *s);
void msg_submit_free(struct msg_submit *s);
/* 0 with out filled (its previous content replaced), or -1 with err:
 * code "invalid_field" (field: the header's name, or "header" for the
 * section's shape), "invalid_address" (field "From"), "too_large" (the
 * header section), and "invalid_field" with field "opts" for a bad id
 * or hostname. Thread-safe (no shared state). */
int msg_submit_prepare(const char *msg, size_t len, const struct msg_submit_opts *o,
		       struct msg_submit *out, struct msg_err *err);

/* ---- verbatim messages (verbatim.c) ----
 * A message submitted whole (SMTP submission): len octets, CRLF lines,
 * possibly 8-bit and not UTF-8, already finished by its submitter (Date,
 * Message-ID, no Bcc). Compiled into a job that renders exactly these
 * octets for every recipient: no template, no field added or rewritten;
 * DKIM fields go in front as for any job. Its needs come from the octets:
 * an 8-bit octet in the header needs SMTPUTF8, one in the body 8BITMIME.
 * Only the header is checked (0, or -1 with e, field "message"): not
 * empty, within max_size ("too_large"), lines ended by CRLF that are
 * fields or continuations, without NUL, at most 998 octets, exactly one
 * From field. The body may hold any octets ("{{" included). */
int msg_verbatim_check(const char *msg, size_t len, size_t max_size, struct msg_err *e);
/* o: max_size is used; job_id and hostname may be NULL (nothing is
 * generated). The octets are copied. NULL with e. */
struct msg_job *msg_job_compile_verbatim(const char *msg, size_t len,
					 const struct msg_job_opts *o, struct msg_err *e);
/* The domain of the From field's address (the last one, lower-cased),
 * for DKIM key choice; -1 when there is no From field or no domain. */
int msg_verbatim_from_domain(const char *msg, size_t len, char *out, size_t outlen);

/* ---- DKIM signing (dkim.c; RFC 6376, ed25519-sha256 per RFC 8463) ----
 * Keys are loaded once (config time) and shared read-only by every worker.
 * Signing a rendered message yields the DKIM-Signature field(s) to put in
 * front of it. docs/dkim.md has the choices. */
struct msg_dkim_key;

/* An OpenSSL PEM private key (PKCS#8 or traditional): RSA of 1024-4096 bits
 * or Ed25519, for d=domain, s=selector (DNS names). NULL with err filled
 * for a missing, unreadable, encrypted or corrupt file, another key type,
 * an RSA size outside 1024-4096, or a bad domain or selector. */
struct msg_dkim_key *msg_dkim_key_load(const char *pem_path, const char *domain,
				       const char *selector, char *err, size_t errlen);
void msg_dkim_key_free(struct msg_dkim_key *k);
/* "rsa-sha256" or "ed25519-sha256" (the a= tag). */
const char *msg_dkim_key_alg(const struct msg_dkim_key *k);
/* The public key as a DKIM record's p= holds it, decoded: the
 * SubjectPublicKeyInfo (DER) for RSA, the raw 32 octets for Ed25519
 * (RFC 8463). -1 when it does not fit cap. */
int msg_dkim_key_public(const struct msg_dkim_key *k, unsigned char *out, size_t cap,
			size_t *len);

enum msg_dkim_canon { MSG_DKIM_RELAXED = 0, MSG_DKIM_SIMPLE = 1 };

/* Zeroed (or NULL) options: relaxed/relaxed, t= now, no x=, the default
 * header list: From (over-signed), Reply-To, Subject, Date, To, Cc,
 * Message-ID, In-Reply-To, References, MIME-Version, Content-Type,
 * Content-Transfer-Encoding, List-Unsubscribe, List-Unsubscribe-Post,
 * List-Id, Feedback-ID, Sender -- each only when present, as many times
 * as present; From once more than present. */
struct msg_dkim_opts {
	enum msg_dkim_canon hcanon, bcanon;  /* c=header/body */
	time_t t;                 /* t= (0: now) */
	time_t expire;            /* x= t + expire (0: no x=) */
	const char *const *headers; /* NULL: the default list above */
	size_t nheaders;
};

#define MSG_DKIM_BH_LEN 32        /* SHA-256: both algorithms share bh= */

/* The body hash (bh=) of a body given alone as iovecs. It depends only on
 * the body canonicalisation, not on the key: a job whose body has no
 * per-recipient content computes it once and passes it to every sign. */
int msg_dkim_body_hash(enum msg_dkim_canon c, const struct iovec *body, size_t niov,
		       unsigned char bh[MSG_DKIM_BH_LEN]);
/* The same over a whole message (header, blank line, body): the header is
 * skipped. -1 if the header is not ended by CRLF. */
int msg_dkim_msg_body_hash(enum msg_dkim_canon c, const struct iovec *msg,
			   size_t niov, unsigned char bh[MSG_DKIM_BH_LEN]);

/* Sign msg (header, blank line, body, CRLF line ends; e.g. msg_out's
 * iovecs) with each of nkeys keys (dual signing: one Ed25519 and one RSA):
 * one DKIM-Signature field per key, in key order, folded (lines <= 78
 * octets where the values allow, never over 998), CRLF-ended, appended to
 * out, to be sent before the message. body_hash_or_null: a precomputed bh
 * for o->bcanon, or NULL to hash the body here. -1 with err (out as it
 * was): a header line that is neither a field nor a continuation, a bare
 * CR or LF or NUL in the header, no From field, no key, an OpenSSL error.
 * Thread-safe: keys are only read. */
int msg_dkim_sign(const struct msg_dkim_key *const *keys, size_t nkeys,
		  const struct msg_dkim_opts *o, const struct iovec *msg, size_t niov,
		  const unsigned char *body_hash_or_null, struct vl_buf *out,
		  char *err, size_t errlen);

/* Canonicalisations alone (tests, tools): one field (without its CRLF;
 * relaxed adds none either) or a whole body, appended to out. */
void msg_dkim_canon_header(enum msg_dkim_canon c, const char *field, size_t n,
			   struct vl_buf *out);
void msg_dkim_canon_body(enum msg_dkim_canon c, const char *p, size_t n,
			 struct vl_buf *out);

#endif
