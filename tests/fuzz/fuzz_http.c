/*
 * libFuzzer target: the HTTP/1.1 framing in front of libmicrohttpd
 * (api/http1.c), what the gate does with a client's octets before
 * libmicrohttpd may see any. The first octet cuts the rest into pieces;
 * nothing may crash or leak, and:
 *  - the head scanner says the same, fed in pieces or at once;
 *  - a head it accepts and the parser accepts is written out in a form
 *    that scans and parses again to the same request, and writing that
 *    out changes nothing (libmicrohttpd sees exactly what was checked);
 *  - a chunked body decodes to the same data in pieces or at once, and
 *    the gate's re-chunking of it decodes to that data again;
 *  - every answer the gate makes itself is framed whole by the answer
 *    framer, and the framer consumes the same in pieces or at once.
 */
#include <stdlib.h>
#include <string.h>

#include "../../api/api_int.h"

static size_t piece(const unsigned char *cut, size_t i, size_t left)
{
	size_t n = (size_t)(cut[i % 8] % 17) + 1;
	return n < left ? n : left;
}

/* Scan p whole: rc, the octets used, the error's status. */
static int scan_once(const char *p, size_t n, size_t *len, int *status)
{
	struct api_http_scan s;
	struct api_error e = { 0 };
	size_t used;

	api_http_scan_init(&s);
	int rc = api_http_scan(&s, p, n, &used, &e);
	*len = rc == 1 ? s.len : used;
	*status = rc < 0 ? e.status : 0;
	return rc;
}

static void same_req(const struct api_http_req *a, const struct api_http_req *b)
{
	if (strcmp(a->method, b->method) || a->minor != b->minor || a->has_length != b->has_length ||
	    a->length != b->length || a->chunked != b->chunked || a->head != b->head ||
	    a->close != b->close || a->target_len != b->target_len)
		abort();
}

static void collect(void *cls, const char *p, size_t n)
{
	vl_buf_append(cls, p, n);
}

static void rechunk(void *cls, const char *p, size_t n)
{
	vl_buf_printf(cls, "%zx\r\n", n);
	vl_buf_append(cls, p, n);
	vl_buf_appends(cls, "\r\n");
}

/* Decode body in pieces and at once: the same; then the gate's re-chunked
 * form decodes to the same data. */
static void body(const unsigned char *cut, const char *p, size_t n)
{
	struct api_http_chunks a, b;
	struct api_error e;
	struct vl_buf one, many, again, re;
	bool done1 = false, done2 = false;
	long used1, used2 = 0;

	vl_buf_init(&one);
	vl_buf_init(&many);
	vl_buf_init(&again);
	vl_buf_init(&re);
	api_http_chunks_init(&a);
	used1 = api_http_chunks(&a, p, n, collect, &one, &done1, &e);
	api_http_chunks_init(&b);
	for (size_t off = 0, i = 0; off < n && !done2; i++) {
		size_t k = piece(cut, i, n - off);
		long u = api_http_chunks(&b, p + off, k, collect, &many, &done2, &e);
		if (u < 0) {
			used2 = -1;
			break;
		}
		off += (size_t)u;
		used2 = (long)off;
		if ((size_t)u < k && !done2)
			abort();       /* stopped early without being done */
	}
	if ((used1 < 0) != (used2 < 0) || done1 != done2 || one.len != many.len ||
	    (one.len && memcmp(one.p, many.p, one.len)))
		abort();
	if (used1 >= 0 && used1 != used2)
		abort();
	if (done1) {
		bool d;
		api_http_chunks_init(&a);
		if (one.len)
			rechunk(&re, one.p, one.len);
		vl_buf_appends(&re, "0\r\n\r\n");
		if (api_http_chunks(&a, re.p, re.len, collect, &again, &d, &e) != (long)re.len || !d ||
		    again.len != one.len || (one.len && memcmp(again.p, one.p, one.len)))
			abort();
	}
	vl_buf_free(&one);
	vl_buf_free(&many);
	vl_buf_free(&again);
	vl_buf_free(&re);
}

/* The answer framer: pieces or at once, the same. */
static void answer(const unsigned char *cut, const char *p, size_t n, bool head)
{
	struct api_http_resp a, b;
	bool d1 = false, d2 = false;
	long u1, u2 = 0;

	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	api_http_resp_init(&a, head);
	u1 = api_http_resp(&a, p, n, &d1);
	api_http_resp_init(&b, head);
	for (size_t off = 0, i = 0; off < n && !d2; i++) {
		size_t k = piece(cut, i, n - off);
		long u = api_http_resp(&b, p + off, k, &d2);
		if (u < 0) {
			u2 = -1;
			break;
		}
		off += (size_t)u;
		u2 = (long)off;
	}
	if ((u1 < 0) != (u2 < 0) || (u1 >= 0 && (u1 != u2 || d1 != d2)))
		abort();
	api_http_resp_free(&a);
	api_http_resp_free(&b);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	if (len < 9)
		return 0;
	const unsigned char *cut = data;
	const char *p = (const char *)data + 8;
	size_t n = len - 8;
	struct api_http_scan s;
	struct api_error e;
	size_t hlen, used;
	int status;

	/* the scanner: in pieces as at once */
	int rc = scan_once(p, n, &hlen, &status);
	api_http_scan_init(&s);
	int rc2 = 0;
	size_t off = 0;
	for (size_t i = 0; off < n; i++) {
		size_t k = piece(cut, i, n - off);
		rc2 = api_http_scan(&s, p + off, k, &used, &e);
		off += used;
		if (rc2 != 0)
			break;
	}
	if (rc != rc2 || (rc == 1 && s.len != hlen) || (rc < 0 && (e.status != status ||
								     off != hlen)))
		abort();

	if (rc == 1) {
		struct api_http_req r, r2;
		struct vl_buf norm, norm2;
		vl_buf_init(&norm);
		vl_buf_init(&norm2);
		if (api_http_parse(p, hlen, &r, &norm, &e) == 0) {
			/* what libmicrohttpd gets scans and parses to the same (it
			 * may have grown past the limit: CRLF for LF, a space
			 * after each ':') */
			size_t nl;
			if (norm.len <= API_HTTP_HEAD_MAX) {
				if (scan_once(norm.p, norm.len, &nl, &status) != 1 || nl != norm.len ||
				    api_http_parse(norm.p, norm.len, &r2, &norm2, &e) != 0)
					abort();
				same_req(&r, &r2);
				if (norm.len != norm2.len || memcmp(norm.p, norm2.p, norm.len))
					abort();
			}
			if (r.chunked)
				body(cut, p + hlen, n - hlen);
			/* the token-free console paths: only "/" or under /console */
			if (api_console_path(p + r.target, r.target_len) &&
			    !(r.target_len >= 1 && p[r.target] == '/' &&
			      (r.target_len == 1 || strchr("?#", p[r.target + 1]) ||
			       (r.target_len >= 8 && !memcmp(p + r.target, "/console", 8)))))
				abort();
		} else if (e.status < 400 || e.status > 505 || !e.code[0] || !e.message[0]) {
			abort();
		}
		vl_buf_free(&norm);
		vl_buf_free(&norm2);
	} else if (rc < 0 && (status < 400 || status > 505 || !e.code[0])) {
		abort();
	}

	/* the gate's own answers frame whole; arbitrary answers do not crash */
	if (rc < 0) {
		struct vl_buf out;
		struct api_http_resp r;
		bool done;
		vl_buf_init(&out);
		memset(&r, 0, sizeof r);
		api_http_error(&out, &e, cut[0] & 1 ? "Retry-After: 5\r\n" : NULL);
		api_http_resp_init(&r, false);
		if (api_http_resp(&r, out.p, out.len, &done) != (long)out.len || !done || !r.close)
			abort();
		api_http_resp_free(&r);
		vl_buf_free(&out);
	}
	answer(cut, p, n, cut[1] & 1);
	body(cut, p, n);
	return 0;
}
