/*
 * libFuzzer target: volley-submit's SMTP session (bench/submit/sess.c)
 * against a hostile server. The first octet picks the settings, the
 * second how the rest is cut into reads; the rest is what the server
 * "says". The session must never crash, must end each message at most
 * once (accepted or refused), queue its data at most once, and stop
 * taking input once it said CLOSE or FAIL.
 */
#include <stdlib.h>
#include <string.h>

#include "../../bench/submit/submit.h"

#define MAX_MSGS 8

static int finals[MAX_MSGS], dots[MAX_MSGS];
static bool starttls, over;
static long handed;

static bool f_next(void *arg, uint64_t *id)
{
	(void)arg;
	if (handed >= MAX_MSGS)
		return false;
	*id = (uint64_t)handed++;
	return true;
}

static void f_body(void *arg, uint64_t id, struct vl_buf *out)
{
	(void)arg;
	(void)id;
	vl_buf_appends(out, "Subject: x\r\n\r\n..dot\r\n.\r\n");
}

static void f_event(void *arg, enum vs_ev ev, uint64_t id, int code, const char *text)
{
	(void)arg;
	if (over || !text)
		abort();
	switch (ev) {
	case VS_EV_ACCEPTED:
	case VS_EV_REFUSED:
		if (id >= (uint64_t)handed || finals[id]++)
			abort();
		if (ev == VS_EV_ACCEPTED && (code < 200 || code > 299 || !dots[id]))
			abort();
		break;
	case VS_EV_DOT:
		if (id >= (uint64_t)handed || dots[id]++)
			abort();
		break;
	case VS_EV_STARTTLS: starttls = true; break;
	case VS_EV_CLOSE: case VS_EV_FAIL: over = true; break;
	default: break;
	}
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	if (len < 2)
		return 0;
	struct vs_sess_cfg cfg = {
		.ehlo = "c.test", .from = "f@x.test", .to_domain = "d.test",
		.user = data[0] & 0x80 ? "u" : NULL, .pass = "p",
		.tls = (enum vs_tls)((data[0] >> 4) % 3), .mech = (enum vs_mech)((data[0] >> 3) & 1),
		.rcpts = 1 + (data[0] & 3), .per_conn = 1 + ((data[0] >> 2) & 1) * 4,
	};
	struct vs_sess_ops ops = { f_next, f_body, f_event, NULL };
	struct vs_sess s;
	struct vl_buf out;
	size_t cut = 1 + data[1] % 64;
	memset(finals, 0, sizeof finals);
	memset(dots, 0, sizeof dots);
	starttls = over = false;
	handed = 0;
	vl_buf_init(&out);
	vs_sess_init(&s, &cfg, &ops);
	data += 2;
	len -= 2;
	while (len > 0) {
		size_t n = len < cut ? len : cut;
		int rc = vs_sess_input(&s, (const char *)data, n, &out);
		if (rc != 0) {
			if (!over || (rc == 1) != (s.done && !s.failed))
				abort();
			break;
		}
		if (starttls) {
			starttls = false;
			vs_sess_tls_up(&s, &out);
		}
		if (out.len > 1 << 20)
			abort();
		vl_buf_reset(&out);
		data += n;
		len -= n;
	}
	vl_buf_free(&out);
	return 0;
}
