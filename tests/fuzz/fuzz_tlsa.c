/*
 * libFuzzer target: a TLSA answer from a hostile server, end to end
 * without the network. The input is a whole DNS message answering
 * _25._tcp.mx.example.test/TLSA; its records become struct tls_tlsa as
 * the engine makes them (engine/worker.c, dane_keep) and set up a DANE
 * client connection (tls_conn_new_dane), which then gets the first
 * data[size - 1] % 64 octets of the input as the server's bytes. Nothing
 * may crash, leak or read out of bounds; tls_conn_new_dane must take no
 * record that tls_tlsa_usable refuses, and every usable digest record.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "../../dns/dns_int.h"
#include "../../tls/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SSL_CTX *client_ctx(void)
{
	static SSL_CTX *ctx;
	char err[256];

	if (!ctx && !(ctx = tls_client_ctx_new(NULL, err, sizeof err)))
		abort();
	return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_ans a;

	dns_parse_answer(data, size, "_25._tcp.mx.example.test", DNS_T_TLSA, &a);
	if (a.n && a.status != DNS_OK)
		abort();
	if (!a.n) {
		dns_ans_free(&a);
		return 0;
	}

	/* As dane_keep does: one block, the records then their data. */
	size_t bytes = 0;
	for (size_t i = 0; i < a.n; i++)
		bytes += a.u.tlsa[i].len;
	struct tls_tlsa *rr = vl_malloc(a.n * sizeof *rr + bytes + 1);
	unsigned char *at = (unsigned char *)(rr + a.n);
	size_t usable = 0, digests = 0;
	for (size_t i = 0; i < a.n; i++) {
		const struct dns_tlsa_rr *x = &a.u.tlsa[i];
		memcpy(at, x->data, x->len);
		rr[i] = (struct tls_tlsa){ x->usage, x->selector, x->mtype, at, x->len };
		if (tls_tlsa_usable(&rr[i])) {
			usable++;
			digests += x->mtype != 0;   /* Full(0) must also parse */
		}
		at += x->len;
	}
	size_t n = a.n;
	dns_ans_free(&a);

	size_t taken;
	struct tls_conn *t = tls_conn_new_dane(client_ctx(), "mx.example.test", NULL, rr, n, &taken);
	free(rr);                           /* data is only read during the call */
	if (!t)
		abort();
	if (taken > usable || taken < digests)
		abort();

	struct vl_buf out;
	char plain[256];
	vl_buf_init(&out);
	tls_conn_output(t, &out);           /* the ClientHello */
	if (!out.len)
		abort();
	size_t feed = data[size - 1] % 64;
	tls_conn_input(t, data, feed < size ? feed : size);
	tls_conn_read(t, plain, sizeof plain);
	tls_conn_output(t, &out);           /* an alert, or nothing */
	if (tls_conn_dane(t))               /* no certificate was ever shown */
		abort();
	vl_buf_free(&out);
	tls_conn_free(t);
	ERR_clear_error();
	return 0;
}
