/* tls/: a client and a server tls_conn talk through memory only. */
#include <criterion/criterion.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../tls/tls.h"
#include "tls_pump.h"

static SSL_CTX *server(void)
{
	char err[256];
	SSL_CTX *ctx = tls_server_ctx_new(NULL, NULL, "mx.volley.test", err, sizeof err);
	cr_assert_not_null(ctx, "%s", err);
	return ctx;
}

Test(tls, policies)
{
	enum tls_policy p;
	const char *names[] = {"none", "may", "encrypt", "dane", "dane-only", "verify"};
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(tls_policy_parse(names[i], &p), 0);
		cr_assert_str_eq(tls_policy_name(p), names[i]);
	}
	cr_assert_eq(tls_policy_parse("yes", &p), -1);
	cr_assert_not(tls_policy_requires_tls(TLS_POLICY_MAY));
	cr_assert(tls_policy_requires_tls(TLS_POLICY_ENCRYPT));
}

Test(tls, handshake_data_and_resumption)
{
	char err[256], got[256];
	size_t n = 0;
	SSL_CTX *sctx = server(), *cctx = tls_client_ctx_new(NULL, err, sizeof err);
	cr_assert_not_null(cctx, "%s", err);

	struct tls_conn *s = tls_conn_new_server(sctx);
	struct tls_conn *c = tls_conn_new_client(cctx, "mx.volley.test", false, NULL, NULL);
	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert(tls_conn_established(c) && tls_conn_established(s));
	cr_assert_str_eq(tls_conn_version(c), "TLSv1.3");
	cr_assert_not(tls_conn_verified(c), "not asked to verify");
	cr_assert_eq(tls_conn_write(c, "EHLO x\r\n", 8), 0);
	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert_eq(n, 8);
	cr_assert_eq(memcmp(got, "EHLO x\r\n", 8), 0);
	SSL_SESSION *ticket = tls_conn_take_session(c);
	cr_assert_not_null(ticket, "a TLS 1.3 ticket for resumption");
	/* A clean close keeps the session resumable; an abrupt one does not. */
	tls_conn_shutdown(c);
	tls_conn_free(c);
	tls_conn_free(s);

	s = tls_conn_new_server(sctx);
	c = tls_conn_new_client(cctx, "mx.volley.test", false, NULL, ticket);
	n = 0;
	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert(tls_conn_resumed(c), "second connection resumes");
	SSL_SESSION_free(ticket);
	tls_conn_free(c);
	tls_conn_free(s);
	tls_ctx_free(sctx);
	tls_ctx_free(cctx);
}

/* The connection's byte buffers live only while bytes wait in them: at
 * rest (input read, output taken) it holds none. */
Test(tls, buffers_only_while_bytes_wait)
{
	char err[256], got[8192], buf[256];
	size_t n = 0;
	SSL_CTX *sctx = server(), *cctx = tls_client_ctx_new(NULL, err, sizeof err);
	struct tls_conn *s = tls_conn_new_server(sctx);
	struct tls_conn *c = tls_conn_new_client(cctx, "mx.volley.test", false, NULL, NULL);

	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert_eq(tls_conn_held(c), 0, "handshake over: nothing held");
	cr_assert_eq(tls_conn_held(s), 0);

	/* Output: held until taken; an out without storage takes it whole. */
	static char msg[4096];
	memset(msg, 'm', sizeof msg);
	cr_assert_eq(tls_conn_write(c, msg, sizeof msg), 0);
	cr_assert_gt(tls_conn_held(c), sizeof msg);
	struct vl_buf out;
	vl_buf_init(&out);
	size_t wire = tls_conn_output(c, &out);
	cr_assert_gt(wire, sizeof msg);
	cr_assert_eq(out.len, wire);
	cr_assert_eq(tls_conn_held(c), 0, "moved out, not copied");
	/* ... and an out with bytes in it gets them appended. */
	cr_assert_eq(tls_conn_write(c, "QUIT\r\n", 6), 0);
	size_t before = out.len;
	size_t more = tls_conn_output(c, &out);
	cr_assert_gt(more, 6);
	cr_assert_eq(out.len, before + more);
	cr_assert_eq(tls_conn_held(c), 0);

	/* Input: two records in one input; a reader that stops after the
	 * first keeps the second until it reads again, then holds nothing. */
	tls_conn_input(s, out.p, out.len);
	ssize_t r = tls_conn_read(s, got, sizeof got);
	cr_assert_eq(r, (ssize_t)sizeof msg);
	cr_assert_gt(tls_conn_held(s), 0, "the second record waits");
	r = tls_conn_read(s, buf, sizeof buf);
	cr_assert_eq(r, 6);
	cr_assert_eq(memcmp(buf, "QUIT\r\n", 6), 0);
	cr_assert_eq(tls_conn_read(s, buf, sizeof buf), 0);
	cr_assert_eq(tls_conn_held(s), 0);
	/* a record cut in two: OpenSSL keeps the first half, not us */
	vl_buf_reset(&out);
	cr_assert_eq(tls_conn_write(s, "250 ok\r\n", 8), 0);
	tls_conn_output(s, &out);
	tls_conn_input(c, out.p, 5);
	cr_assert_eq(tls_conn_read(c, buf, sizeof buf), 0);
	cr_assert_eq(tls_conn_held(c), 0);
	tls_conn_input(c, out.p + 5, out.len - 5);
	cr_assert_eq(tls_conn_read(c, buf, sizeof buf), 8);
	cr_assert_eq(tls_conn_held(c), 0);

	vl_buf_free(&out);
	tls_conn_free(c);
	tls_conn_free(s);
	tls_ctx_free(sctx);
	tls_ctx_free(cctx);
}

Test(tls, verify_chain_and_name)
{
	char err[256], got[64], ca[] = "/tmp/volley-ca-XXXXXX";
	size_t n = 0;
	SSL_CTX *sctx = server();
	int fd = mkstemp(ca);
	FILE *f = fdopen(fd, "w");
	PEM_write_X509(f, SSL_CTX_get0_certificate(sctx));
	fclose(f);

	/* Unknown issuer: the handshake completes, unverified, and says why. */
	SSL_CTX *sys = tls_client_ctx_new(NULL, err, sizeof err);
	struct tls_conn *s = tls_conn_new_server(sctx);
	struct tls_conn *c = tls_conn_new_client(sys, "mx.volley.test", true, NULL, NULL);
	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert_not(tls_conn_verified(c));
	cr_assert_str_eq(tls_conn_verify_failure(c), "certificate-not-trusted");
	tls_conn_free(c);
	tls_conn_free(s);

	/* Trusted, right name: verified. Wrong name: not, and why. */
	SSL_CTX *trust = tls_client_ctx_new(ca, err, sizeof err);
	cr_assert_not_null(trust, "%s", err);
	s = tls_conn_new_server(sctx);
	c = tls_conn_new_client(trust, "mx.volley.test", true, NULL, NULL);
	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert(tls_conn_verified(c));
	tls_conn_free(c);
	tls_conn_free(s);
	s = tls_conn_new_server(sctx);
	c = tls_conn_new_client(trust, "other.test", true, NULL, NULL);
	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert_not(tls_conn_verified(c));
	cr_assert_str_eq(tls_conn_verify_failure(c), "certificate-host-mismatch");
	tls_conn_free(c);
	tls_conn_free(s);

	/* A store of its own overrides the context's (system) one. */
	X509_STORE *st = tls_store_new(ca, err, sizeof err);
	cr_assert_not_null(st, "%s", err);
	s = tls_conn_new_server(sctx);
	c = tls_conn_new_client(sys, "mx.volley.test", true, st, NULL);
	cr_assert_eq(unit_tls_pump(c, s, got, &n), 0);
	cr_assert(tls_conn_verified(c));
	tls_conn_free(c);
	tls_conn_free(s);
	tls_store_free(st);
	cr_assert_null(tls_store_new("/nonexistent/ca.pem", err, sizeof err));

	cr_assert_null(tls_client_ctx_new("/nonexistent/ca.pem", err, sizeof err));
	cr_assert(strstr(err, "/nonexistent/ca.pem"), "%s", err);
	unlink(ca);
	tls_ctx_free(sys);
	tls_ctx_free(trust);
	tls_ctx_free(sctx);
}
