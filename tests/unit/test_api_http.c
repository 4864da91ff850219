/* api/http1.c: the HTTP/1.1 framing the gate applies before libmicrohttpd
 * sees a request: heads scanned and parsed (limits, framing, Host,
 * Expect), written out in canonical form; chunked bodies; answers framed. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../api/api_int.h"

/* Scan n octets of s whole: 1, 0 or -1 (e->status). */
static int scan_n(const char *s, size_t n, struct api_error *e, size_t *len)
{
	struct api_http_scan sc;
	size_t used;

	api_http_scan_init(&sc);
	int rc = api_http_scan(&sc, s, n, &used, e);
	*len = rc == 1 ? sc.len : used;
	return rc;
}

static int scan(const char *s, struct api_error *e, size_t *len)
{
	struct api_http_scan sc;
	size_t used;

	api_http_scan_init(&sc);
	int rc = api_http_scan(&sc, s, strlen(s), &used, e);
	*len = rc == 1 ? sc.len : used;
	return rc;
}

/* Scan and parse s: 0 with r and norm (a C string), or the error status. */
static int parse(const char *s, struct api_http_req *r, char *norm, size_t cap)
{
	struct api_error e = { 0 };
	struct vl_buf b;
	size_t len;

	if (scan(s, &e, &len) != 1)
		return e.status ? e.status : -1;
	vl_buf_init(&b);
	int rc = api_http_parse(s, len, r, &b, &e);
	snprintf(norm, cap, "%.*s", (int)b.len, b.p ? b.p : "");
	vl_buf_free(&b);
	return rc < 0 ? e.status : 0;
}

Test(api_http, canonical_head)
{
	struct api_http_req r;
	char n[512];

	cr_assert_eq(parse("\r\nPOST /v1/jobs?x=1 HTTP/1.1\r\nhost:  a \r\nExpect: 100-continue\r\n"
			   "Content-Length: 7, 7\r\nAuthorization: Bearer t\r\nX-A:b\r\n\r\n", &r, n,
			   sizeof n), 0);
	cr_assert_str_eq(r.method, "POST");
	cr_assert(r.has_length && r.length == 7 && !r.chunked && r.expect_continue && !r.close);
	cr_assert_eq(r.auth_len, 8);
	cr_assert_str_eq(n, "POST /v1/jobs?x=1 HTTP/1.1\r\nhost: a\r\nX-A: b\r\n"
			 "Content-Length: 7\r\n\r\n");
	cr_assert_eq(parse("GET / HTTP/1.0\nConnection: keep-alive\n\n", &r, n, sizeof n), 0);
	cr_assert(!r.close && r.minor == 0);
	cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n", &r, n, sizeof n), 0);
	cr_assert(r.close);
	cr_assert_eq(parse("HEAD / HTTP/1.3\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", &r, n,
			   sizeof n), 0);
	cr_assert(r.head && r.chunked && r.minor == 1);
	cr_assert_str_eq(n, "HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
}

Test(api_http, refusals)
{
	static const struct { const char *req; int status; } cases[] = {
		{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12345678901234567890123\r\n\r\n", 413 },
		{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		  400 },
		{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501 },
		{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400 },
		{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417 },
		{ "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
		{ "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400 },
		{ "GET x HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
		{ "GET /\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400 },
	};
	struct api_http_req r;
	char n[512];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_assert_eq(parse(cases[i].req, &r, n, sizeof n), cases[i].status, "case %zu", i);
}

Test(api_http, garbage_and_limits_at_the_first_bad_octet)
{
	struct api_error e;
	size_t at;
	char big[API_HTTP_HEAD_MAX + 100];

	cr_assert_eq(scan_n("\x00\x01\x02garbage\r\n\r\n", 14, &e, &at), -1);
	cr_assert_eq(e.status, 400);
	cr_assert_eq(at, 0);
	cr_assert_eq(scan("GET /v1/health HTTP/1.1\r\nHost", &e, &at), 0);   /* more, please */
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	memcpy(big, "GET /", 5);
	cr_assert_eq(scan(big, &e, &at), -1);
	cr_assert_eq(e.status, 414);
	cr_assert_eq(at, API_HTTP_LINE_MAX);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	cr_assert_eq(scan(big, &e, &at), -1);
	cr_assert_eq(e.status, 431);
	cr_assert_eq(at, API_HTTP_HEAD_MAX);
}

static void collect(void *cls, const char *p, size_t n)
{
	vl_buf_append(cls, p, n);
}

Test(api_http, chunked_bodies)
{
	static const char body[] = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
	struct api_http_chunks c;
	struct api_error e;
	struct vl_buf out;
	bool done = false;
	long used = 0;

	vl_buf_init(&out);
	api_http_chunks_init(&c);
	for (size_t i = 0; i < strlen(body) && !done; i++)   /* an octet at a time */
		used += api_http_chunks(&c, body + i, 1, collect, &out, &done, &e);
	cr_assert(done);
	cr_assert_eq((size_t)used, strlen(body) - 4);
	cr_assert_eq(out.len, 11);
	cr_assert(!memcmp(out.p, "hello world", 11));
	api_http_chunks_init(&c);
	cr_assert_eq(api_http_chunks(&c, "5\r\nhello!\r\n", 11, NULL, NULL, &done, &e), -1);
	cr_assert_eq(e.status, 400);
	api_http_chunks_init(&c);
	cr_assert_eq(api_http_chunks(&c, "zz\r\n", 4, NULL, NULL, &done, &e), -1);
	vl_buf_free(&out);
}

Test(api_http, answers_framed)
{
	static const char two[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
				  "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1";
	struct api_http_resp r = { 0 };
	struct api_error e = { .status = 408, .code = "request_timeout", .message = "slow" };
	struct vl_buf out;
	bool done;

	api_http_resp_init(&r, false);
	cr_assert_eq(api_http_resp(&r, two, strlen(two), &done), (long)strlen(two) - 8);
	cr_assert(done && !r.close);
	api_http_resp_init(&r, true);   /* HEAD: a length, but no body */
	cr_assert_eq(api_http_resp(&r, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 38, &done), 38);
	cr_assert(done);
	vl_buf_init(&out);
	api_http_error(&out, &e, NULL);
	api_http_resp_init(&r, false);
	cr_assert_eq(api_http_resp(&r, out.p, out.len, &done), (long)out.len);
	cr_assert(done && r.close);
	cr_assert_not_null(strstr(out.p, "\r\n\r\n{\"error\":{\"code\":\"request_timeout\",\"message\":"
				  "\"slow\",\"field\":null}}\n"));
	vl_buf_free(&out);
	api_http_resp_free(&r);
}
