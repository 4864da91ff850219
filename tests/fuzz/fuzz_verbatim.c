/* libFuzzer: what an SMTP client's message meets (message/verbatim.c: the
 * header check, the From domain, compiling and rendering: the octets come
 * back exactly) and a submission log record read back from a damaged
 * segment (submit/log_rec.c; the checksum is made right here, so the
 * fuzzer reaches the layout). The first octet picks which. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] == 'R')
		record(data + 1, size - 1);
	else
		verbatim((const char *)data + 1, size - 1);
	return 0;
}
