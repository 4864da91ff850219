/* libFuzzer: what an SMTP client's message meets (message/verbatim.c: the
 * header check, the From domain, compiling and rendering: the octets come
 * back exactly), its body's DKIM canonicalisation and hash ('D'), and a
 * submission log record read back from a damaged segment ('R';
 * submit/log_rec.c; the checksum is made right here, so the fuzzer
 * reaches the layout). The first octet picks which. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../message/message.h"
#include "../../submit/log_int.h"

static void verbatim(const char *m, size_t n)
{
	struct msg_job_opts o = { .max_size = 4096 };
	struct msg_err e;
	char dom[64];
	struct msg_job *j = msg_job_compile_verbatim(m, n, &o, &e);

	if (msg_verbatim_from_domain(m, n, dom, sizeof dom) == 0 && strlen(dom) >= sizeof dom)
		__builtin_trap();
	if (!j)
		return;
	struct msg_rcpt r = { .email = "a@b.example" };
	struct msg_out out;
	msg_out_init(&out);
	if (msg_render(j, &r, 0, &out, &e) < 0 || out.size != n)
		__builtin_trap();
	for (size_t i = 0, off = 0; i < out.niov; off += out.iov[i++].iov_len)
		if (memcmp(out.iov[i].iov_base, m + off, out.iov[i].iov_len))
			__builtin_trap();
	msg_out_free(&out);
	msg_job_free(j);
}

static void record(const uint8_t *data, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);
	struct sub_rec r;

	memcpy(p, data, n);
	if (n >= SUB_REC_HEAD) {
		uint32_t len = (uint32_t)(n - SUB_REC_HEAD), crc = vl_crc32c(0, p + 8, len);
		memcpy(p, &len, 4);
		memcpy(p + 4, &crc, 4);
	}
	if (sub_rec_decode((const char *)p, n, &r) == 0) {
		if (!r.nrcpt || r.nrcpt > SUB_RCPT_MAX || !r.sender ||
		    (const uint8_t *)r.msg + r.len != p + n)
			__builtin_trap();
		for (size_t i = 0; i < r.nrcpt; i++)
			if (!r.rcpts[i] || strlen(r.rcpts[i]) > n)
				__builtin_trap();
		sub_rec_free(&r);
	}
	free(p);
}

/* A message's body under DKIM (message/dkim.c): hashed in three iovecs
 * split anywhere, it hashes as its canonical form does in one buffer; the
 * canonical form holds what RFC 6376 3.4.3/3.4.4 allow and no more. */
static void dkim_body(const char *b, size_t n, size_t x, size_t y)
{
	for (int c = 0; c < 2; c++) {
		struct vl_buf can;
		unsigned char want[32], got[32];
		vl_buf_init(&can);
		msg_dkim_canon_body((enum msg_dkim_canon)c, b, n, &can);
		if (can.len && (can.len < 2 || memcmp(can.p + can.len - 2, "\r\n", 2)))
			__builtin_trap();               /* a body ends in CRLF */
		if (can.len >= 4 && !memcmp(can.p + can.len - 4, "\r\n\r\n", 4))
			__builtin_trap();               /* no empty line at its end */
		for (size_t i = 0; c == MSG_DKIM_RELAXED && i < can.len; i++)
			if (can.p[i] == '\t' || (can.p[i] == ' ' && i + 1 < can.len &&
						 can.p[i + 1] == ' ') ||
			    (can.p[i] == ' ' && i + 2 < can.len && can.p[i + 1] == '\r' &&
			     can.p[i + 2] == '\n'))
				__builtin_trap();       /* white space reduced */
		EVP_Digest(can.p ? can.p : "", can.len, want, NULL, EVP_sha256(), NULL);
		struct iovec iov[3] = {{(void *)b, x}, {(void *)(b + x), y - x},
				       {(void *)(b + y), n - y}};
		if (msg_dkim_body_hash((enum msg_dkim_canon)c, iov, 3, got) < 0 ||
		    memcmp(want, got, 32))
			__builtin_trap();
		vl_buf_free(&can);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] == 'R') {
		record(data + 1, size - 1);
	} else if (data[0] == 'D' && size >= 3) {
		size_t n = size - 3, x = n ? data[1] % (n + 1) : 0;
		size_t y = x + (n - x ? data[2] % (n - x + 1) : 0);
		dkim_body((const char *)data + 3, n, x, y);
	} else {
		verbatim((const char *)data + 1, size - 1);
	}
	return 0;
}
