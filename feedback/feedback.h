/* feedback/: what comes back after the 250 (docs/feedback.md). A pure
 * parser: one whole stored message in, a classified report out. RFC 3464
 * delivery status notifications, RFC 5965 feedback reports (ARF), and the
 * common non-standard bounces by a documented heuristic. No I/O, no
 * lookups: matching a report to a job is the caller's, with the hints
 * fb_match_verp and fb_match_msgid give. */
#ifndef VOLLEY_FEEDBACK_H
#define VOLLEY_FEEDBACK_H

#include <stdbool.h>
#include <stddef.h>

/* volley's job id: 12 lowercase hex, '-', 8 lowercase hex. */
#define FB_JOB_ID_LEN 21
#define FB_STATUS_MAX 12        /* "5.123.123" and its NUL fit */

/* Defaults of struct fb_opts (fb_opts_default). */
#define FB_MAX_SIZE  (10u * 1024 * 1024)
#define FB_MAX_DEPTH 8
#define FB_MAX_PARTS 64
#define FB_MAX_RCPTS 1000

/* Fixed bounds. A header's physical line longer than FB_LINE_MAX is an
 * error; a field's unfolded value is kept up to FB_FIELD_MAX octets (the
 * rest is dropped); a header block of more than FB_FIELDS_MAX fields is an
 * error. The plain text of a heuristic bounce and a returned message's
 * header are read (decoded) up to FB_TEXT_MAX octets. */
#define FB_LINE_MAX   8192
#define FB_FIELD_MAX  4096
#define FB_FIELDS_MAX 2000
#define FB_TEXT_MAX   (64u * 1024)

enum fb_kind {
	FB_NOT_REPORT = 0,      /* anything else: leave it alone */
	FB_DSN,                 /* RFC 3464 multipart/report; report-type=delivery-status */
	FB_ARF,                 /* RFC 5965 multipart/report; report-type=feedback-report */
	FB_BOUNCE_HEURISTIC,    /* a non-standard bounce (docs/feedback.md) */
};

enum fb_action {
	FB_ACT_NONE = 0,        /* no Action field (heuristic bounces) */
	FB_ACT_FAILED,
	FB_ACT_DELAYED,
	FB_ACT_DELIVERED,
	FB_ACT_RELAYED,
	FB_ACT_EXPANDED,
	FB_ACT_OTHER,           /* an Action value RFC 3464 does not know */
};

/* A field left 0 takes its default. */
struct fb_opts {
	size_t max_size;        /* the whole message; larger is an error */
	unsigned max_depth;     /* MIME nesting; deeper is an error */
	unsigned max_parts;     /* MIME parts in the whole message (at most 64); more is an error */
	size_t max_rcpts;       /* recipients kept per report; the rest dropped (truncated) */
};

/* One recipient of a DSN (or found by the heuristic). Strings are NULL
 * when absent; status is "" when absent or not x.y.z. */
struct fb_rcpt {
	char *final_rcpt;       /* Final-Recipient's address (after "rfc822;") */
	char *orig_rcpt;        /* Original-Recipient's address */
	enum fb_action action;
	char status[FB_STATUS_MAX]; /* "5.1.1" */
	char *diag_type;        /* Diagnostic-Code's type ("smtp") */
	char *diag;             /* Diagnostic-Code's text, or the heuristic's line */
	char *remote_mta;       /* Remote-MTA's name (after "dns;") */
};

/* Every string is owned by the report (fb_report_free), NUL-terminated,
 * NULL when absent. */
struct fb_report {
	enum fb_kind kind;
	/* the report itself: its first Delivered-To, else its To (an
	 * address, the VERP return path when it came back to one) */
	char *envelope_to;
	char *from, *subject;   /* the report's own, raw (encoded words stay) */
	/* DSN per-message fields (Reporting-MTA's name after "dns;") */
	char *reporting_mta, *arrival_date;
	/* DSN recipients, or the heuristic's */
	struct fb_rcpt *rcpts;
	size_t nrcpts;
	bool truncated;         /* more recipients than max_rcpts: dropped */
	/* ARF (RFC 5965 3.1, 3.2); arrival_date above is shared */
	char *feedback_type, *user_agent, *version;
	char *orig_mail_from;
	char **orig_rcpt_to;    /* Original-Rcpt-To, each occurrence */
	size_t norig_rcpt_to;
	char *source_ip, *reported_domain;
	/* the returned message's header (message/rfc822 or
	 * text/rfc822-headers part, or embedded in a heuristic bounce) */
	char *orig_msgid, *orig_from, *orig_to, *orig_subject;
};

void fb_opts_default(struct fb_opts *o);

/* Classifies msg (len octets, CRLF or LF line ends, as a maildir stores
 * it). o NULL means the defaults. Fills out (zeroed first; free it with
 * fb_report_free whatever the result) and returns 0, out->kind saying
 * what it is (FB_NOT_REPORT included). -1 with err when the message breaks
 * a bound or is a multipart/report whose structure is broken; out is then
 * FB_NOT_REPORT with nothing in it. */
int fb_parse(const char *msg, size_t len, const struct fb_opts *o, struct fb_report *out,
	     char *err, size_t errlen);

void fb_report_free(struct fb_report *r);

const char *fb_kind_name(enum fb_kind k);
const char *fb_action_name(enum fb_action a);

/* volley's VERP return path "local+JOBID.INDEX@domain" (msg_verp): true
 * with the job id and recipient index, false if addr is not one. */
bool fb_match_verp(const char *addr, char job_id[FB_JOB_ID_LEN + 1], size_t *index);

/* volley's Message-IDs: "<JOBID.INDEX@host>" (one recipient, has_index
 * true) or "<JOBID@host>" (an SMTP submission's whole job). The angle
 * brackets are optional; surrounding blanks are skipped. */
bool fb_match_msgid(const char *msgid, char job_id[FB_JOB_ID_LEN + 1], size_t *index,
		    bool *has_index);

#endif
