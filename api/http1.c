/*
 * HTTP/1.1 framing for the gate in front of libmicrohttpd (gate.c): pure
 * functions, no I/O, fuzzed by tests/fuzz/fuzz_http.c.
 *
 * A request head is scanned as it arrives, each octet once, so garbage is
 * refused on its first octet and an oversized line or head on the first
 * octet past the limit (RFC 9112 sections 2 to 5). Once whole, it is parsed:
 * the framing (Content-Length, Transfer-Encoding), Host, Expect and
 * Connection are checked, and the head is written out again in a
 * canonical form, the only form libmicrohttpd ever sees. A chunked body is
 * decoded and chunked again; an answer from libmicrohttpd is framed so the
 * gate knows where it ends.
 */
#include "api_int.h"

#include <stdio.h>
#include <strings.h>
#include <time.h>

/* ---- errors ---- */

static int err(struct api_error *e, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int err(struct api_error *e, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	snprintf(e->code, sizeof e->code, "%s", code);
	e->field[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
	return -1;
}

static int bad(struct api_error *e, const char *what)
{
	return err(e, 400, "malformed_request", "malformed HTTP request: %s", what);
}

/* ---- characters (RFC 9110 5.6.2, 5.5) ---- */

static bool tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value's octets: visible, obs-text, space, tab. */
static bool vchar_ws(unsigned char c)
{
	return (c >= 0x20 && c != 0x7f) || c == '\t';
}

static bool hexval(unsigned char c, unsigned *v)
{
	if (c >= '0' && c <= '9')
		*v = c - '0';
	else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		*v = (c | 0x20) - 'a' + 10;
	else
		return false;
	return true;
}

/* ---- scanning a request head ---- */

enum {
	S_START, S_LEAD_CR, S_METHOD, S_TARGET0, S_TARGET, S_VERSION, S_RL_CR,
	S_FIELD, S_NAME, S_VALUE, S_FIELD_CR, S_END_CR, S_DONE
};

#define METHOD_MAX 32
#define BLANK_MAX 8   /* empty lines tolerated before the request line */

void api_http_scan_init(struct api_http_scan *s)
{
	memset(s, 0, sizeof *s);
}

int api_http_scan(struct api_http_scan *s, const char *p, size_t n, size_t *used,
		  struct api_error *e)
{
	static const char ver[] = "HTTP/d.d";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (s->st == S_DONE)
			break;
		if (++s->len > API_HTTP_HEAD_MAX) {
			*used = i;
			if (s->st <= S_TARGET && s->st >= S_TARGET0)
				return err(e, 414, "uri_too_long", "the request target is over "
					   "%d octets", API_HTTP_LINE_MAX);
			return err(e, 431, "headers_too_large", "the request head is over %d "
				   "octets", API_HTTP_HEAD_MAX);
		}
		s->line++;
		switch (s->st) {
		case S_START:
			s->line = 1;
			if (c == '\r' || c == '\n') {
				if (++s->blank > BLANK_MAX)
					goto garbage;
				s->st = c == '\r' ? S_LEAD_CR : S_START;
			} else if (tchar(c)) {
				s->st = S_METHOD;
			} else {
				goto garbage;
			}
			break;
		case S_LEAD_CR:
			if (c != '\n')
				goto garbage;
			s->st = S_START;
			break;
		case S_METHOD:
			if (c == ' ')
				s->st = S_TARGET0;
			else if (!tchar(c) || s->line > METHOD_MAX)
				goto garbage;
			break;
		case S_TARGET0:
			if (c != '/') {
				*used = i;
				return bad(e, c == ' ' || c == '\r' || c == '\n' ?
					   "no request target" : "the request target must be a "
					   "path that starts with /");
			}
			s->st = S_TARGET;
			break;
		case S_TARGET:
			if (c == ' ') {
				s->st = S_VERSION;
				s->vlen = 0;
			} else if (c < 0x21 || c > 0x7e) {
				*used = i;
				return bad(e, c == '\r' || c == '\n' ? "no HTTP version in the "
					   "request line" : "a control, space or non-ASCII octet "
					   "in the request target");
			} else if (s->line > API_HTTP_LINE_MAX) {
				*used = i;
				return err(e, 414, "uri_too_long", "the request target is over "
					   "%d octets", API_HTTP_LINE_MAX);
			}
			break;
		case S_VERSION:
			if (s->vlen == sizeof ver - 1 && (c == '\r' || c == '\n')) {
				/* HTTP/1.2 and later minor versions are
				 * taken as 1.1 (RFC 9110 2.5) */
				if (s->major != 1) {
					*used = i;
					return err(e, 505, "unsupported_version", "HTTP/%u.%u is not "
						   "supported: use HTTP/1.1 or HTTP/1.0",
						   s->major, s->minor);
				}
				s->st = c == '\r' ? S_RL_CR : S_FIELD;
				break;
			}
			if (s->vlen >= sizeof ver - 1)
				goto version;
			if (ver[s->vlen] == 'd') {
				if (c < '0' || c > '9')
					goto version;
				if (s->vlen == 5)
					s->major = c - '0';
				else
					s->minor = c - '0';
			} else if (c != (unsigned char)ver[s->vlen]) {
				goto version;
			}
			s->vlen++;
			break;
		case S_RL_CR:
		case S_FIELD_CR:
			if (c != '\n') {
				*used = i;
				return bad(e, "a CR not followed by LF");
			}
			s->st = S_FIELD;
			break;
		case S_FIELD:
			s->line = 1;
			if (c == '\r') {
				s->st = S_END_CR;
			} else if (c == '\n') {
				s->st = S_DONE;
			} else if (c == ' ' || c == '\t') {
				*used = i;
				return bad(e, "a header line that starts with white space "
					   "(obsolete line folding)");
			} else if (tchar(c)) {
				if (++s->fields > API_HTTP_FIELDS_MAX) {
					*used = i;
					return err(e, 431, "headers_too_large", "more than %d header "
						   "fields", API_HTTP_FIELDS_MAX);
				}
				s->st = S_NAME;
			} else {
				*used = i;
				return bad(e, "an invalid octet in a header name");
			}
			break;
		case S_NAME:
			if (c == ':') {
				s->st = S_VALUE;
			} else if (!tchar(c)) {
				*used = i;
				return bad(e, c == ' ' || c == '\t' ? "white space before ':' in a "
					   "header field" : c == '\r' || c == '\n' ?
					   "a header line without ':'" :
					   "an invalid octet in a header name");
			}
			break;
		case S_VALUE:
			if (c == '\r') {
				s->st = S_FIELD_CR;
			} else if (c == '\n') {
				s->st = S_FIELD;
			} else if (!vchar_ws(c)) {
				*used = i;
				return bad(e, "a control octet (NUL, CR, ...) in a header value");
			}
			break;
		case S_END_CR:
			if (c != '\n') {
				*used = i;
				return bad(e, "a CR not followed by LF");
			}
			s->st = S_DONE;
			break;
		}
	}
	*used = i;
	return s->st == S_DONE;
garbage:
	*used = i;
	return bad(e, "this is not an HTTP request line");
version:
	*used = i;
	return bad(e, "the request line does not end in HTTP/1.1 or HTTP/1.0");
}

/* ---- parsing a scanned head ---- */

/* The next line of [*p, end) without its CRLF or LF. */
static bool next_line(const char **p, const char *end, const char **l, size_t *n)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));

	if (!nl)
		return false;
	*l = *p;
	*n = (size_t)(nl - *p);
	if (*n && (*l)[*n - 1] == '\r')
		(*n)--;
	*p = nl + 1;
	return true;
}

static void trim(const char **v, size_t *n)
{
	while (*n && (**v == ' ' || **v == '\t')) {
		(*v)++;
		(*n)--;
	}
	while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
		(*n)--;
}

static bool is(const char *s, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(s, want, n) == 0;
}

/* The next element of a comma-separated list (RFC 9110 5.6.1), trimmed;
 * empty elements are skipped. false at the end. */
static bool next_elem(const char **p, const char *end, const char **el, size_t *n)
{
	for (;;) {
		if (*p >= end)
			return false;
		const char *c = memchr(*p, ',', (size_t)(end - *p));
		const char *stop = c ? c : end;
		*el = *p;
		*n = (size_t)(stop - *p);
		*p = c ? c + 1 : end;
		trim(el, n);
		if (*n)
			return true;
	}
}

/* Content-Length: 1*DIGIT, or a list of equal ones. */
static int content_length(struct api_http_req *r, const char *v, size_t n, struct api_error *e)
{
	const char *p = v, *end = v + n, *el;
	size_t len;
	bool any = false;

	while (next_elem(&p, end, &el, &len)) {
		uint64_t x = 0;
		any = true;
		for (size_t i = 0; i < len; i++) {
			if (el[i] < '0' || el[i] > '9')
				return bad(e, "Content-Length is not a decimal number");
			if (x > (UINT64_C(1) << 62) / 10)
				return err(e, 413, "too_large", "Content-Length is too large");
			x = x * 10 + (uint64_t)(el[i] - '0');
		}
		if (r->has_length && r->length != x)
			return bad(e, "two different Content-Length values");
		r->has_length = true;
		r->length = x;
	}
	return any ? 0 : bad(e, "an empty Content-Length");
}

/* Transfer-Encoding: exactly "chunked" (RFC 9112 6.1); other codings are
 * not implemented, and chunked must be the last, once. */
static int transfer_encoding(struct api_http_req *r, const char *v, size_t n,
			     struct api_error *e)
{
	const char *p = v, *end = v + n, *el;
	size_t len;

	while (next_elem(&p, end, &el, &len)) {
		if (r->chunked)
			return bad(e, "a transfer coding after chunked");
		if (is(el, len, "chunked"))
			r->chunked = true;
		else
			r->codings++;
	}
	return 0;
}

static void tokens(struct api_http_req *r, const char *v, size_t n)
{
	const char *p = v, *end = v + n, *el;
	size_t len;

	while (next_elem(&p, end, &el, &len)) {
		if (is(el, len, "close"))
			r->conn_close = true;
		else if (is(el, len, "keep-alive"))
			r->conn_keep = true;
	}
}

int api_http_parse(const char *head, size_t n, struct api_http_req *r, struct vl_buf *norm,
		   struct api_error *e)
{
	const char *p = head, *end = head + n, *l, *sp1, *sp2;
	size_t ln, hosts = 0, auths = 0, te = 0;

	memset(r, 0, sizeof *r);
	do {
		if (!next_line(&p, end, &l, &ln))
			return bad(e, "an incomplete head");
	} while (!ln);
	sp1 = memchr(l, ' ', ln);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', ln - (size_t)(sp1 + 1 - l)) : NULL;
	if (!sp1 || !sp2 || (size_t)(sp1 - l) > METHOD_MAX || l + ln - sp2 != 9)
		return bad(e, "this is not an HTTP request line");
	memcpy(r->method, l, (size_t)(sp1 - l));
	r->method[sp1 - l] = '\0';
	r->target = (size_t)(sp1 + 1 - head);
	r->target_len = (size_t)(sp2 - sp1 - 1);
	r->minor = sp2[8] > '0';    /* 1.1 and later minor versions as 1.1 */
	vl_buf_printf(norm, "%s %.*s HTTP/1.%d\r\n", r->method, (int)r->target_len,
		      head + r->target, r->minor);
	while (next_line(&p, end, &l, &ln) && ln) {
		const char *colon = memchr(l, ':', ln), *v;
		size_t nl, vn;

		if (!colon)
			return bad(e, "a header line without ':'");
		nl = (size_t)(colon - l);
		v = colon + 1;
		vn = ln - nl - 1;
		trim(&v, &vn);
		if (is(l, nl, "Content-Length")) {
			if (content_length(r, v, vn, e) < 0)
				return -1;
			continue;
		}
		if (is(l, nl, "Transfer-Encoding")) {
			te++;
			if (transfer_encoding(r, v, vn, e) < 0)
				return -1;
			continue;
		}
		if (is(l, nl, "Expect")) {
			if (!is(v, vn, "100-continue"))
				return err(e, 417, "expectation_failed", "Expect: only "
					   "100-continue is understood");
			r->expect_continue = r->minor == 1;
			continue;
		}
		if (is(l, nl, "Authorization")) {
			auths++;
			r->auth = (size_t)(v - head);
			r->auth_len = vn;
			continue;     /* the gate decides; the handlers never see it */
		}
		if (is(l, nl, "Upgrade") || is(l, nl, "Proxy-Connection"))
			continue;
		if (is(l, nl, "Host"))
			hosts++;
		else if (is(l, nl, "Connection"))
			tokens(r, v, vn);
		vl_buf_printf(norm, "%.*s: %.*s\r\n", (int)nl, l, (int)vn, v);
	}
	if (te && r->minor == 0)
		return bad(e, "Transfer-Encoding in an HTTP/1.0 request");
	if (te && !r->chunked)
		return bad(e, "Transfer-Encoding without chunked as its last coding");
	if (r->codings)
		return err(e, 501, "not_implemented", "Transfer-Encoding: only chunked is "
			   "implemented");
	if (r->chunked && r->has_length)
		return bad(e, "both Transfer-Encoding and Content-Length");
	if (r->minor == 1 && hosts != 1)
		return bad(e, hosts ? "more than one Host header" : "no Host header (HTTP/1.1 "
			   "requires one)");
	if (auths > 1)
		return bad(e, "more than one Authorization header");
	if (!r->chunked && !r->has_length)
		r->expect_continue = false;
	r->close = r->conn_close || (r->minor == 0 && !r->conn_keep);
	r->head = !strcmp(r->method, "HEAD");
	if (r->chunked)
		vl_buf_appends(norm, "Transfer-Encoding: chunked\r\n");
	else if (r->has_length)
		vl_buf_printf(norm, "Content-Length: %llu\r\n", (unsigned long long)r->length);
	vl_buf_appends(norm, "\r\n");
	return 0;
}

/* ---- chunked bodies (RFC 9112 7.1) ---- */

enum { C_SIZE0, C_SIZE, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER0,
       C_TRAILER, C_TRAILER_LF, C_END_LF, C_DONE };

#define CHUNK_LINE_MAX 4096     /* a size line with its extensions */
#define TRAILER_MAX 16384

void api_http_chunks_init(struct api_http_chunks *c)
{
	memset(c, 0, sizeof *c);
}

long api_http_chunks(struct api_http_chunks *c, const char *p, size_t n,
		     void (*emit)(void *cls, const char *p, size_t n), void *cls,
		     bool *done, struct api_error *e)
{
	size_t i = 0;
	unsigned h;

	*done = c->st == C_DONE;
	while (i < n && c->st != C_DONE) {
		unsigned char ch = (unsigned char)p[i];

		if (c->st == C_DATA) {
			size_t take = n - i < c->left ? n - i : (size_t)c->left;
			if (emit)
				emit(cls, p + i, take);
			i += take;
			c->left -= take;
			if (!c->left)
				c->st = C_DATA_CR;
			continue;
		}
		i++;
		if (c->st <= C_SIZE_LF && ++c->line > CHUNK_LINE_MAX)
			return bad(e, "a chunk size line is too long");
		if (c->st >= C_TRAILER0 && c->st <= C_TRAILER_LF && ++c->trailer > TRAILER_MAX)
			return err(e, 431, "headers_too_large", "the chunked trailer is over %d "
				   "octets", TRAILER_MAX);
		switch (c->st) {
		case C_SIZE0:
		case C_SIZE:
			if (hexval(ch, &h)) {
				if (c->left >> 59)
					return err(e, 413, "too_large", "a chunk is too large");
				c->left = c->left * 16 + h;
				c->st = C_SIZE;
				break;
			}
			if (c->st == C_SIZE0)
				return bad(e, "a chunk without its size");
			if (ch == ';' || ch == ' ' || ch == '\t')
				c->st = C_EXT;
			else if (ch == '\r')
				c->st = C_SIZE_LF;
			else if (ch == '\n')
				goto size_done;
			else
				return bad(e, "an invalid chunk size");
			break;
		case C_EXT:
			if (ch == '\r')
				c->st = C_SIZE_LF;
			else if (ch == '\n')
				goto size_done;
			else if (!vchar_ws(ch))
				return bad(e, "a control octet in a chunk extension");
			break;
		case C_SIZE_LF:
			if (ch != '\n')
				return bad(e, "a CR not followed by LF in the chunked body");
size_done:
			c->line = 0;
			c->st = c->left ? C_DATA : C_TRAILER0;
			break;
		case C_DATA_CR:
			if (ch == '\r')
				c->st = C_DATA_LF;
			else if (ch == '\n')
				c->st = C_SIZE0;
			else
				return bad(e, "a chunk longer than its size");
			break;
		case C_DATA_LF:
			if (ch != '\n')
				return bad(e, "a CR not followed by LF in the chunked body");
			c->st = C_SIZE0;
			break;
		case C_TRAILER0:       /* start of a trailer line, or the end */
			if (ch == '\r')
				c->st = C_END_LF;
			else if (ch == '\n')
				c->st = C_DONE;
			else if (tchar(ch))
				c->st = C_TRAILER;
			else
				return bad(e, "an invalid trailer field");
			break;
		case C_TRAILER:
			if (ch == '\r')
				c->st = C_TRAILER_LF;
			else if (ch == '\n')
				c->st = C_TRAILER0;
			else if (!vchar_ws(ch))
				return bad(e, "a control octet in a trailer field");
			break;
		case C_TRAILER_LF:
		case C_END_LF:
			if (ch != '\n')
				return bad(e, "a CR not followed by LF in the chunked body");
			c->st = c->st == C_END_LF ? C_DONE : C_TRAILER0;
			break;
		}
	}
	*done = c->st == C_DONE;
	return (long)i;
}

/* ---- framing libmicrohttpd's answers ---- */

enum { R_HEAD, R_LEN, R_CHUNKED, R_EOF, R_DONE };

void api_http_resp_init(struct api_http_resp *r, bool head_req)
{
	vl_buf_reset(&r->head);
	r->st = R_HEAD;
	r->head_req = head_req;
	r->close = false;
	r->left = 0;
}

void api_http_resp_free(struct api_http_resp *r)
{
	vl_buf_free(&r->head);
}

/* The whole head of an answer is in r->head: status and framing. */
static int resp_head(struct api_http_resp *r)
{
	const char *p = r->head.p, *end = p + r->head.len, *l;
	size_t ln;
	bool chunked = false, has_len = false;
	unsigned status;

	if (!next_line(&p, end, &l, &ln) || ln < 12 || strncmp(l, "HTTP/1.", 7))
		return -1;
	status = 0;
	for (int i = 9; i < 12; i++) {
		if (l[i] < '0' || l[i] > '9')
			return -1;
		status = status * 10 + (unsigned)(l[i] - '0');
	}
	while (next_line(&p, end, &l, &ln) && ln) {
		const char *colon = memchr(l, ':', ln), *v;
		size_t nl, vn;
		if (!colon)
			return -1;
		nl = (size_t)(colon - l);
		v = colon + 1;
		vn = ln - nl - 1;
		trim(&v, &vn);
		if (is(l, nl, "Content-Length")) {
			r->left = 0;
			for (size_t i = 0; i < vn; i++) {
				if (v[i] < '0' || v[i] > '9' || r->left > UINT64_MAX / 20)
					return -1;
				r->left = r->left * 10 + (uint64_t)(v[i] - '0');
			}
			has_len = true;
		} else if (is(l, nl, "Transfer-Encoding")) {
			chunked = vn >= 7 && !strncasecmp(v + vn - 7, "chunked", 7);
		} else if (is(l, nl, "Connection")) {
			struct api_http_req t = { 0 };
			tokens(&t, v, vn);
			r->close |= t.conn_close;
		}
	}
	vl_buf_reset(&r->head);
	if (status < 200) {              /* interim: the answer follows */
		r->st = R_HEAD;
		return 0;
	}
	if (r->head_req || status == 204 || status == 304 || (has_len && !r->left && !chunked))
		r->st = R_DONE;
	else if (chunked)
		r->st = R_CHUNKED;
	else if (has_len)
		r->st = R_LEN;
	else
		r->st = R_EOF;
	if (r->st == R_CHUNKED)
		api_http_chunks_init(&r->ch);
	return 0;
}

long api_http_resp(struct api_http_resp *r, const char *p, size_t n, bool *done)
{
	size_t i = 0;
	struct api_error e;

	while (i < n && r->st != R_DONE && r->st != R_EOF) {
		if (r->st == R_HEAD) {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t take = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
			if (r->head.len + take > 65536)
				return -1;
			vl_buf_append(&r->head, p + i, take);
			i += take;
			size_t hl = r->head.len;
			if (nl && ((hl >= 2 && r->head.p[hl - 2] == '\n') ||
				   (hl >= 3 && !memcmp(r->head.p + hl - 3, "\n\r\n", 3))) &&
			    resp_head(r) < 0)
				return -1;
		} else if (r->st == R_LEN) {
			size_t take = n - i < r->left ? n - i : (size_t)r->left;
			i += take;
			r->left -= take;
			if (!r->left)
				r->st = R_DONE;
		} else {
			bool fin;
			long used = api_http_chunks(&r->ch, p + i, n - i, NULL, NULL, &fin, &e);
			if (used < 0)
				return -1;
			i += (size_t)used;
			if (fin)
				r->st = R_DONE;
		}
	}
	if (r->st == R_EOF)
		i = n;                   /* to the end of the stream */
	*done = r->st == R_DONE;
	return (long)i;
}

bool api_http_resp_until_eof(const struct api_http_resp *r)
{
	return r->st == R_EOF;
}

bool api_http_resp_started(const struct api_http_resp *r)
{
	return r->st != R_HEAD || r->head.len;
}

/* ---- the gate's own answers ---- */

static const char *reason(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

void api_http_error(struct vl_buf *out, const struct api_error *e, const char *extra)
{
	struct vl_buf body;
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	vl_buf_init(&body);
	vl_buf_appends(&body, "{\"error\":{\"code\":");
	vl_buf_json_string(&body, e->code);
	vl_buf_appends(&body, ",\"message\":");
	vl_buf_json_string(&body, e->message);
	vl_buf_appends(&body, ",\"field\":");
	vl_buf_json_string(&body, *e->field ? e->field : NULL);
	vl_buf_appends(&body, "}}\n");
	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	vl_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
		      "Content-Length: %zu\r\nConnection: close\r\n%s\r\n", e->status,
		      reason(e->status), date, body.len, extra ? extra : "");
	vl_buf_append(out, body.p, body.len);
	vl_buf_free(&body);
}

bool api_console_path(const char *t, size_t n)
{
	size_t p = 0;

	while (p < n && t[p] != '?' && t[p] != '#')
		p++;
	if (p == 1 && t[0] == '/')
		return true;
	if (p < 8 || memcmp(t, "/console", 8))
		return false;
	return p == 8 || t[8] == '/';
}
