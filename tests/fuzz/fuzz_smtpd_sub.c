/*
 * libFuzzer target: the SMTP server session as a submission listener runs
 * it: AUTH offered inside TLS and required, strict content, the message
 * kept, and hooks that answer now or later (PENDING, resumed with a code
 * the input picks). Arbitrary client bytes in arbitrary chunks; the session
 * must never crash, never consume bytes while it waits, and never answer
 * without limit.
 */
#include <stdlib.h>
#include <string.h>

#include "../../smtpd/smtpd.h"

struct fz {
	unsigned sel;
	int pending;            /* a hook said PENDING */
};

static struct smtpd_verdict fz_auth(void *arg, struct smtpd_sess *s, const char *u,
				    const char *p)
{
	struct fz *f = arg;
	(void)s;
	if (f->sel & 1) {
		f->pending = 1;
		return (struct smtpd_verdict){ SMTPD_V_PENDING, 0, NULL };
	}
	return (struct smtpd_verdict){ SMTPD_V_REPLY, !strcmp(u, p) ? 235 : 535, NULL };
}

static struct smtpd_verdict fz_msg(void *arg, struct smtpd_sess *s,
				   const struct smtpd_envelope *e, const char *m, size_t n)
{
	struct fz *f = arg;
	(void)s;
	if (!e->auth || (n && !m))
		abort();        /* only an authenticated session gets here */
	if (f->sel & 2) {
		f->pending = 1;
		return (struct smtpd_verdict){ SMTPD_V_PENDING, 0, NULL };
	}
	if (n > 3 && m[0] == 'X')
		return (struct smtpd_verdict){ SMTPD_V_REPLY, 550, "550 5.7.1 refused\r\n" };
	return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
}

static struct smtpd_verdict fz_check(void *arg, struct smtpd_sess *s, enum smtpd_stage st,
				     const char *a)
{
	(void)arg;
	(void)s;
	if (st == SMTPD_ST_RCPT && a && strstr(a, "@relay"))
		return (struct smtpd_verdict){ SMTPD_V_REPLY, 550, "550 5.7.1 relay denied\r\n" };
	return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
}

static const struct smtpd_hooks hooks = { .check = fz_check, .auth = fz_auth,
					   .message = fz_msg };

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	static const int codes[4] = { 250, 451, 550, 421 };
	if (len < 1)
		return 0;
	struct fz f = { .sel = data[0] };
	data++, len--;

	struct smtpd_conf conf = { .starttls = true, .auth = true, .strict_data = true,
				   .keep_message = true, .max_size = 2048, .max_rcpts = 4,
				   .banner = "fuzz" };
	strcpy(conf.hostname, "msa.test");
	struct smtpd_stats stats;
	memset(&stats, 0, sizeof stats);
	_Atomic uint64_t open = 1;
	struct smtpd_ctx ctx = { .conf = &conf, .hooks = &hooks, .hook_arg = &f,
				 .stats = &stats, .conns_open = &open };
	struct vl_buf out;
	struct smtpd_sess s;
	vl_buf_init(&out);
	smtpd_sess_init(&s, &ctx, &out);
	smtpd_sess_greet(&s);
	/* start inside TLS half of the time, so AUTH and mail are reachable */
	if (f.sel & 4)
		smtpd_sess_tls_started(&s, "TLSv1.3", "TEST");

	size_t chunk = (f.sel >> 3) ? (f.sel >> 3) : len;
	size_t i = 0;
	while (i < len) {
		size_t n = len - i < chunk ? len - i : chunk;
		size_t used = smtpd_sess_feed(&s, (const char *)data + i, n);
		if (used > n)
			abort();
		if (s.action == SMTPD_WAIT) {
			if (!f.pending)
				abort();
			f.pending = 0;
			size_t more = smtpd_sess_feed(&s, (const char *)data + i + used, n - used);
			if (more != 0)
				abort(); /* nothing is consumed while waiting */
			smtpd_sess_resume(&s, codes[(i + f.sel) & 3], NULL);
			if (s.action == SMTPD_WAIT)
				abort();
			n = used; /* the rest of this chunk is fed next round */
		} else if (s.action == SMTPD_STARTTLS) {
			smtpd_sess_tls_started(&s, "TLSv1.3", "TEST");
			n = used;
		} else if (s.action != SMTPD_OK) {
			break;
		}
		i += n;
		if (out.len > 4096 + 64 * (i + 1))
			abort();
		vl_buf_reset(&out);
		if (n == 0 && s.action == SMTPD_OK && used == 0)
			break;      /* a state that takes nothing: stop, not spin */
	}
	smtpd_sess_timeout(&s);
	smtpd_sess_free(&s);
	vl_buf_free(&out);
	return 0;
}
