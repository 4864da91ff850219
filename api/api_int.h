/*
 * api internals shared by its files, the unit tests and the fuzzers (not
 * the module's face).
 */
#ifndef VOLLEY_API_INT_H
#define VOLLEY_API_INT_H

#include "api.h"

/* Parse a well-formed NDJSON recipient line into r, strings unescaped into
 * scratch (r points there). false: not handled here -- parse it with
 * jansson, which names the error if there is one. */
bool api_rcpt_fast(const char *p, size_t n, struct vl_buf *scratch,
		   struct sched_rcpt *r);
/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
bool api_utf8_valid(const char *s, size_t n);

/* ---- HTTP/1.1 framing in front of libmicrohttpd (http1.c): pure ---- */
#define API_HTTP_LINE_MAX 8192     /* the request line (414 past it) */
#define API_HTTP_HEAD_MAX 32768    /* the whole head (431 past it) */
#define API_HTTP_FIELDS_MAX 100    /* header fields (431 past them) */

/* A request head scanned as it arrives, each octet once. */
struct api_http_scan {
	unsigned st, blank, fields, vlen, major, minor;
	size_t len, line;
};
void api_http_scan_init(struct api_http_scan *s);
/* Scan n more octets. 1: the head is whole, s->len octets from its start
 * (*used of these n belong to it); 0: more needed (all used); -1: not a
 * valid head (e: 400, 414, 431 or 505), known at the first bad octet. */
int api_http_scan(struct api_http_scan *s, const char *p, size_t n, size_t *used,
		  struct api_error *e);

/* A request head, parsed. */
struct api_http_req {
	char method[33];
	int minor;                  /* HTTP/1.minor: 0 or 1 */
	size_t target, target_len;  /* offsets in the head */
	size_t auth, auth_len;      /* Authorization's value (auth_len 0: none) */
	bool has_length, chunked, expect_continue, head;
	bool conn_close, conn_keep, close;  /* close: no request after this one */
	unsigned codings;           /* transfer codings other than chunked */
	uint64_t length;            /* Content-Length */
};
/* The whole head [head, head + n) as api_http_scan accepted it: framing
 * (Content-Length, Transfer-Encoding), Host, Expect checked (400, 413, 417,
 * 501), and the head libmicrohttpd gets appended to norm: the request
 * line, the fields but Content-Length, Transfer-Encoding, Expect,
 * Authorization, Upgrade, then the framing in one canonical field.
 * 0, or -1 with e. */
int api_http_parse(const char *head, size_t n, struct api_http_req *r, struct vl_buf *norm,
		   struct api_error *e);

/* A chunked body, decoded as it arrives. */
struct api_http_chunks {
	unsigned st;
	uint64_t left;
	size_t line, trailer;
};
void api_http_chunks_init(struct api_http_chunks *c);
/* Decode up to n octets: the data goes to emit (NULL: dropped). Returns
 * the octets used (the rest follows the body), *done once the last chunk
 * and its trailer are in; -1 with e on a framing error. */
long api_http_chunks(struct api_http_chunks *c, const char *p, size_t n,
		     void (*emit)(void *cls, const char *p, size_t n), void *cls,
		     bool *done, struct api_error *e);

/* One answer of libmicrohttpd, framed to know where it ends. */
struct api_http_resp {
	unsigned st;
	bool head_req, close;       /* close: the answer says Connection: close */
	uint64_t left;
	struct vl_buf head;
	struct api_http_chunks ch;
};
void api_http_resp_init(struct api_http_resp *r, bool head_req);
void api_http_resp_free(struct api_http_resp *r);
/* Octets of p that belong to the answer (the rest is past its end); *done
 * once it is whole; -1 when it cannot be framed. */
long api_http_resp(struct api_http_resp *r, const char *p, size_t n, bool *done);
/* The answer has no length: it ends when the stream does. */
bool api_http_resp_until_eof(const struct api_http_resp *r);
/* Some of the answer (or of an interim one) has come. */
bool api_http_resp_started(const struct api_http_resp *r);

/* A whole answer of the gate's own: e as JSON, Connection: close; extra:
 * more header lines, each ending in CRLF (NULL: none). */
void api_http_error(struct vl_buf *out, const struct api_error *e, const char *extra);

/* The console's own paths ("/", "/console", "/console/..."; a query
 * ignored): static pages that hold no data, served without the token. */
bool api_console_path(const char *target, size_t n);

/* ---- the gate (gate.c): sockets in front of libmicrohttpd ----
 * Accepts on the listeners, holds each connection until a request head is
 * whole and valid (header timeout, limits per address and in all, the
 * bearer token on TCP), answers everything else itself in JSON, and
 * passes valid requests, one at a time, to libmicrohttpd over a socket
 * pair. */
struct api_gate_cfg {
	int unix_fd, tcp_fd;        /* listening sockets (-1: none); the gate owns them */
	const char *token;          /* bearer token of the TCP listener */
	bool console;               /* the console's pages need no token */
	unsigned threads;
	unsigned max_conns, max_per_ip;
	uint64_t header_ms, idle_ms;
	/* Hands libmicrohttpd its end of a connection's socket pair (sa: the
	 * client's address); 0, or -1 (fd closed either way). */
	int (*attach)(void *cls, int fd, const struct sockaddr *sa, socklen_t salen);
	void *cls;
};
struct api_gate_stats {
	uint64_t open, accepted, refused, timeouts, bad_requests, unauthorized;
};
struct api_gate;
struct api_gate *api_gate_start(const struct api_gate_cfg *c, char *err, size_t errlen);
void api_gate_stats(struct api_gate *g, struct api_gate_stats *s);
/* Closes the listeners and every connection; joins the threads. */
void api_gate_stop(struct api_gate *g);

#endif
