/*
 * The messages volley-submit sends: RFC 5322, a header of its own per
 * message (Date, From, To, Subject, a Message-ID unique across runs) and
 * one body built once, dot-stuffed once (every tenth line starts with a
 * dot, so the server's unstuffing is exercised), padded so that a message
 * with one recipient has the size asked for.
 */
#include "submit.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static void header(struct vs_msg *m, uint64_t id, struct vl_buf *out)
{
	const struct vs_sess_cfg *c = m->cfg;
	char rcpt[512];
	time_t now = time(NULL);
	if ((long)now != m->date_sec) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(m->date, sizeof m->date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
		m->date_sec = (long)now;
	}
	vl_buf_printf(out, "Date: %s\r\nFrom: <%s>\r\nTo: ", m->date, c->from);
	for (int j = 0; j < c->rcpts; j++) {
		vs_rcpt(rcpt, sizeof rcpt, id, j, c->rcpts, c->to_domain);
		vl_buf_printf(out, "%s<%s>", j ? ",\r\n " : "", rcpt);
	}
	vl_buf_printf(out, "\r\nSubject: volley-submit message %llu\r\n"
		      "Message-ID: <%llu.%016llx@%s>\r\nMIME-Version: 1.0\r\n"
		      "Content-Type: text/plain; charset=us-ascii\r\n"
		      "Content-Transfer-Encoding: 7bit\r\n\r\n", (unsigned long long)id,
		      (unsigned long long)id, (unsigned long long)m->run, m->msgid_domain);
}

void vs_msg_init(struct vs_msg *m, const struct vs_sess_cfg *cfg, size_t size)
{
	struct vl_buf h;
	memset(m, 0, sizeof *m);
	m->cfg = cfg;
	m->size = size;
	const char *at = strrchr(cfg->from, '@');
	snprintf(m->msgid_domain, sizeof m->msgid_domain, "%s", at && at[1] ? at + 1 : "submit.test");
	if (getrandom(&m->run, sizeof m->run, 0) != (ssize_t)sizeof m->run)
		m->run = vl_now_ns() ^ ((uint64_t)getpid() << 32);
	vl_buf_init(&m->body);
	vl_buf_init(&h);
	struct vs_sess_cfg one = *cfg;
	one.rcpts = 1;
	m->cfg = &one;
	header(m, 0, &h);
	m->cfg = cfg;
	/* Unstuffed size of the body: what the message has less its header. */
	size_t want = size > h.len + 64 ? size - h.len : 64, plain = 0;
	for (int line = 0; plain < want; line++) {
		char text[96];
		int n = snprintf(text, sizeof text, "%sline %06d of volley-submit's message, "
				 "padding padding padding padding", line % 10 == 3 ? "." : "", line);
		size_t left = want - plain;
		if ((size_t)n + 2 > left)  /* the last line: cut to fit, at least one octet */
			n = left > 2 ? (int)left - 2 : 1;
		if (text[0] == '.')
			vl_buf_append(&m->body, ".", 1);
		vl_buf_append(&m->body, text, (size_t)n);
		vl_buf_append(&m->body, "\r\n", 2);
		plain += (size_t)n + 2;
	}
	vl_buf_append(&m->body, ".\r\n", 3);
	vl_buf_free(&h);
}

void vs_msg_free(struct vs_msg *m)
{
	vl_buf_free(&m->body);
}

void vs_msg_append(struct vs_msg *m, uint64_t id, struct vl_buf *out)
{
	header(m, id, out);
	vl_buf_append(out, m->body.p, m->body.len);
}
