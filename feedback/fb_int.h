/* feedback/'s inside: header fields, MIME entities and decoding, shared by
 * its files, its unit tests and its fuzzer. */
#ifndef VOLLEY_FB_INT_H
#define VOLLEY_FB_INT_H

#include "feedback.h"

#include <stdint.h>

struct fb_slice {
	const char *p;
	size_t n;
};

/* One header field: its name (in the message) and unfolded value. */
struct fb_field {
	const char *name;
	size_t nlen;
	char val[FB_FIELD_MAX + 1];
	size_t vlen;
};

/* Walks the fields of a header block; at the end, p is the body's start. */
struct fb_hdr_it {
	const char *p, *end;
	unsigned nfields;
};

void fb_hdr_init(struct fb_hdr_it *it, const char *p, size_t n);
/* 1: a field in f; 0: the block's end (blank line or end of input); -1
 * with err: a line over FB_LINE_MAX or more than FB_FIELDS_MAX fields. */
int fb_hdr_next(struct fb_hdr_it *it, struct fb_field *f, char *err, size_t errlen);
bool fb_field_is(const struct fb_field *f, const char *name);

/* A Content-Type value: type/subtype lowercased; the parameters volley needs. */
struct fb_ctype {
	char type[80];
	char boundary[72];
	char report_type[40];
	bool has_boundary, boundary_ok;
};
void fb_ctype_parse(const char *v, struct fb_ctype *ct);

enum fb_cte { FB_CTE_IDENTITY, FB_CTE_BASE64, FB_CTE_QP };

/* A MIME entity: its header's Content-Type and -Transfer-Encoding and body. */
struct fb_entity {
	struct fb_ctype ct;
	enum fb_cte cte;
	struct fb_slice body;
};

/* What the top-level header gives besides the entity. */
struct fb_top {
	char *delivered_to, *to, *from, *subject;
};

/* Parses the header of p (n octets); top, when not NULL, gets the report's
 * own fields. No Content-Type means text/plain. -1 with err. */
int fb_entity_parse(const char *p, size_t n, struct fb_entity *e, struct fb_top *top,
		    char *err, size_t errlen);

/* The body parts of a multipart body by its boundary (RFC 2046 5.1.1):
 * up to max into parts; *budget (parts left in the message) counts down;
 * -1 with err when it runs out or no delimiter is found. A missing close
 * delimiter ends the last part at the end of the body. */
int fb_multipart(struct fb_slice body, const char *boundary, struct fb_slice *parts,
		 size_t max, size_t *nparts, unsigned *budget, char *err, size_t errlen);

/* The entity's body decoded (its Content-Transfer-Encoding), at most cap
 * octets of input read; the output is never longer than that input. A
 * malloc'd NUL-terminated buffer, its length in *len. */
char *fb_decode(const struct fb_entity *e, size_t cap, size_t *len);

/* An address out of a field value: inside <> if there are, else the
 * value trimmed; after "type;" when has_type. NULL when empty. */
char *fb_addr_of(const char *v, bool has_type);
/* The value trimmed, NULL when empty. */
char *fb_trimdup(const char *v, size_t n);
/* A status x.y.z (class 2, 4 or 5; 1-3 digits each) at s: its length, or 0. */
size_t fb_status_at(const char *s, size_t n);

/* The returned message's Message-ID, From, To, Subject out of a header block. */
int fb_orig_headers(const char *p, size_t n, struct fb_report *r, char *err, size_t errlen);

/* A recipient slot at the end of r->rcpts, NULL when max is reached. */
struct fb_rcpt *fb_rcpt_add(struct fb_report *r, size_t max);

/* The non-standard bounces (heur.c). 0: classified or not, -1 with err. */
int fb_heuristic(const struct fb_entity *top, const struct fb_top *th, const struct fb_opts *o,
		 unsigned *budget, struct fb_report *r, char *err, size_t errlen);

void fb_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
