/* volley-submit's session machine (bench/submit/sess.c) and its messages
 * (msg.c): replies in, commands and events out. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../bench/submit/submit.h"

struct rec {
	long left;              /* messages next() still hands out */
	uint64_t next_id;
	int ev[64], code[64];
	uint64_t id[64];
	int nev;
};

static bool t_next(void *arg, uint64_t *id)
{
	struct rec *r = arg;
	if (r->left <= 0)
		return false;
	r->left--;
	*id = r->next_id++;
	return true;
}

static void t_body(void *arg, uint64_t id, struct vl_buf *out)
{
	(void)arg;
	vl_buf_printf(out, "Subject: %llu\r\n\r\n..dot\r\n.\r\n", (unsigned long long)id);
}

static void t_event(void *arg, enum vs_ev ev, uint64_t id, int code, const char *text)
{
	struct rec *r = arg;
	(void)text;
	cr_assert_lt(r->nev, 64);
	r->ev[r->nev] = (int)ev;
	r->code[r->nev] = code;
	r->id[r->nev++] = id;
}

static struct vs_sess_cfg cfg(enum vs_tls tls, enum vs_mech mech, int rcpts, long per_conn)
{
	return (struct vs_sess_cfg){ .ehlo = "c.test", .user = "u", .pass = "p", .from = "f@x.test",
				     .to_domain = "d.test", .tls = tls, .mech = mech,
				     .rcpts = rcpts, .per_conn = per_conn };
}

struct t {
	struct vs_sess_cfg c;
	struct rec r;
	struct vs_sess s;
	struct vl_buf out;
};

static void start(struct t *t, struct vs_sess_cfg c, long msgs)
{
	memset(t, 0, sizeof *t);
	t->c = c;
	t->r.left = msgs;
	struct vs_sess_ops ops = { t_next, t_body, t_event, &t->r };
	vs_sess_init(&t->s, &t->c, &ops);
	vl_buf_init(&t->out);
}

/* Feed server text; return what the session wrote since the last call. */
static const char *feed(struct t *t, const char *in, int want_rc)
{
	vl_buf_reset(&t->out);
	int rc = vs_sess_input(&t->s, in, strlen(in), &t->out);
	cr_assert_eq(rc, want_rc, "rc %d for \"%s\"", rc, in);
	vl_buf_append(&t->out, "", 1);
	t->out.len--;
	return t->out.p;
}

/* The session owns nothing on the heap; the output buffer is the test's. */
static void stop(struct t *t)
{
	vl_buf_free(&t->out);
}

static int last_ev(const struct t *t)
{
	return t->r.nev ? t->r.ev[t->r.nev - 1] : -1;
}

static const char *ehlo_tls = "250-s.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n";

/* Greeting to AUTH's 235 over STARTTLS with PLAIN. */
static void to_ready(struct t *t)
{
	cr_assert_str_eq(feed(t, "220 s.test ESMTP\r\n", 0), "EHLO c.test\r\n");
	cr_assert_str_eq(feed(t, "250-s.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n", 0),
			 "STARTTLS\r\n");
	cr_assert_str_eq(feed(t, "220 go ahead\r\n", 0), "");
	cr_assert_eq(last_ev(t), VS_EV_STARTTLS);
	vl_buf_reset(&t->out);
	vs_sess_tls_up(&t->s, &t->out);
	cr_assert_eq(t->out.len, strlen("EHLO c.test\r\n"));
	/* base64("\0u\0p") */
	cr_assert_str_eq(feed(t, ehlo_tls, 0), "AUTH PLAIN AHUAcA==\r\n");
}

Test(submit_sess, starttls_auth_pipelined_then_quit)
{
	struct t t;
	start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 2, 2), 5);
	to_ready(&t);
	cr_assert_str_eq(feed(&t, "235 2.7.0 ok\r\n", 0),
			 "MAIL FROM:<f@x.test>\r\nRCPT TO:<u0000000000@d.test>\r\n"
			 "RCPT TO:<u0000000001@d.test>\r\nDATA\r\n");
	cr_assert_str_eq(feed(&t, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", 0),
			 "Subject: 0\r\n\r\n..dot\r\n.\r\n");
	cr_assert_eq(last_ev(&t), VS_EV_DOT);
	/* the next transaction goes out with the 250 of the first */
	cr_assert_str_eq(feed(&t, "250 2.0.0 queued\r\n", 0),
			 "MAIL FROM:<f@x.test>\r\nRCPT TO:<u0000000002@d.test>\r\n"
			 "RCPT TO:<u0000000003@d.test>\r\nDATA\r\n");
	cr_assert_eq(t.r.ev[t.r.nev - 1], VS_EV_ACCEPTED);
	cr_assert_eq(t.r.id[t.r.nev - 1], 0);
	feed(&t, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", 0);
	/* per_conn 2 reached: QUIT, though messages are left */
	cr_assert_str_eq(feed(&t, "250 queued\r\n", 0), "QUIT\r\n");
	cr_assert_eq(feed(&t, "221 bye\r\n", 1)[0], '\0');
	cr_assert_eq(last_ev(&t), VS_EV_CLOSE);
	cr_assert_eq(t.r.left, 3);
	stop(&t);
}

Test(submit_sess, unpipelined_one_command_at_a_time)
{
	struct t t;
	start(&t, cfg(VS_TLS_IMPLICIT, VS_MECH_LOGIN, 1, 10), 1);
	feed(&t, "220 s.test\r\n", 0);
	cr_assert_str_eq(feed(&t, "250-s.test\r\n250 AUTH LOGIN\r\n", 0), "AUTH LOGIN\r\n");
	cr_assert_str_eq(feed(&t, "334 VXNlcm5hbWU6\r\n", 0), "dQ==\r\n");
	cr_assert_str_eq(feed(&t, "334 UGFzc3dvcmQ6\r\n", 0), "cA==\r\n");
	cr_assert_str_eq(feed(&t, "235 ok\r\n", 0), "MAIL FROM:<f@x.test>\r\n");
	cr_assert_str_eq(feed(&t, "250 ok\r\n", 0), "RCPT TO:<u0000000000@d.test>\r\n");
	cr_assert_str_eq(feed(&t, "250 ok\r\n", 0), "DATA\r\n");
	feed(&t, "354 go\r\n", 0);
	cr_assert_str_eq(feed(&t, "250 ok\r\n", 0), "QUIT\r\n");
	cr_assert_eq(t.r.ev[t.r.nev - 1], VS_EV_ACCEPTED);
	stop(&t);
}

Test(submit_sess, refused_recipients_refuse_the_message_and_reset)
{
	struct t t;
	start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10), 2);
	to_ready(&t);
	feed(&t, "235 ok\r\n", 0);
	/* pipelined: MAIL ok, RCPT 550, DATA 554; then RSET before the next MAIL */
	cr_assert_str_eq(feed(&t, "250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n", 0),
			 "RSET\r\nMAIL FROM:<f@x.test>\r\nRCPT TO:<u0000000001@d.test>\r\nDATA\r\n");
	cr_assert_eq(t.r.ev[t.r.nev - 2], VS_EV_RCPT_REFUSED);
	cr_assert_eq(t.r.ev[t.r.nev - 1], VS_EV_REFUSED);
	cr_assert_eq(t.r.code[t.r.nev - 1], 550);
	/* MAIL refused with 451: the message is refused with it, no RSET */
	cr_assert_str_eq(feed(&t, "250 ok\r\n451 4.3.0 later\r\n503 no\r\n503 no\r\n", 0), "QUIT\r\n");
	cr_assert_eq(last_ev(&t), VS_EV_REFUSED);
	cr_assert_eq(t.r.code[t.r.nev - 1], 451);
	stop(&t);
}

Test(submit_sess, auth_refused_quits)
{
	struct t t;
	start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10), 2);
	to_ready(&t);
	cr_assert_str_eq(feed(&t, "535 5.7.8 bad\r\n", 0), "QUIT\r\n");
	cr_assert_eq(last_ev(&t), VS_EV_AUTH_REFUSED);
	cr_assert_eq(t.r.code[t.r.nev - 1], 535);
	feed(&t, "221 bye\r\n", 1);
	cr_assert_eq(t.r.left, 2);
	stop(&t);
}

Test(submit_sess, octets_after_starttls_220_fail)
{
	struct t t;
	start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10), 1);
	feed(&t, "220 s.test\r\n", 0);
	feed(&t, "250-s.test\r\n250 STARTTLS\r\n", 0);
	feed(&t, "220 go\r\n250 injected\r\n", -1);
	cr_assert_eq(last_ev(&t), VS_EV_FAIL);
	stop(&t);
}

Test(submit_sess, no_starttls_offered_fails)
{
	struct t t;
	start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10), 1);
	feed(&t, "220 s.test\r\n", 0);
	feed(&t, "250-s.test\r\n250 PIPELINING\r\n", -1);
	cr_assert_eq(last_ev(&t), VS_EV_FAIL);
	stop(&t);
}

Test(submit_sess, bad_replies_fail)
{
	static const char *bad[] = { "hello\r\n", "220-a\r\n250 b\r\n", "2x0 a\r\n",
				     "220_space\r\n" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct t t;
		start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10), 1);
		feed(&t, bad[i], -1);
		cr_assert_eq(last_ev(&t), VS_EV_FAIL, "%s", bad[i]);
		stop(&t);
	}
	struct t t;
	start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10), 1);
	char line[VS_LINE_MAX + 8];
	memset(line, 'a', sizeof line - 1);
	memcpy(line, "220 ", 4);
	line[sizeof line - 1] = '\0';
	feed(&t, line, -1);
	stop(&t);
	/* a 421 at any time ends the session */
	start(&t, cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10), 1);
	feed(&t, "220 s.test\r\n", 0);
	feed(&t, "421 4.3.2 shutting down\r\n", -1);
	cr_assert_eq(t.r.code[t.r.nev - 1], 421);
	stop(&t);
}

Test(submit_msg, size_headers_and_stuffing)
{
	struct vs_sess_cfg c = cfg(VS_TLS_STARTTLS, VS_MECH_PLAIN, 1, 10);
	struct vs_msg m;
	struct vl_buf a, b;
	vl_buf_init(&a);
	vl_buf_init(&b);
	vs_msg_init(&m, &c, 4096);
	vs_msg_append(&m, 7, &a);
	vs_msg_append(&m, 8, &b);
	vl_buf_append(&a, "", 1);
	cr_assert(strstr(a.p, "\r\nTo: <u0000000007@d.test>\r\n"));
	cr_assert(strstr(a.p, "\r\nMessage-ID: <7."));
	cr_assert(strstr(a.p, "Date: "));
	cr_assert(strstr(a.p, "\r\n..line 000003"));    /* stuffed */
	cr_assert(!strstr(a.p, "\r\n.line"));
	/* unstuffed, without the final ".\r\n": the size asked for */
	size_t dots = 0;
	for (size_t i = 2; i + 1 < a.len; i++)
		dots += a.p[i - 2] == '\r' && a.p[i - 1] == '\n' && a.p[i] == '.' && a.p[i + 1] == '.';
	cr_assert_eq(a.len - 1 - 3 - dots, 4096);
	cr_assert_str_eq(a.p + a.len - 6, "\r\n.\r\n");
	cr_assert_eq(a.len - 1, b.len);   /* same width for every id */
	vl_buf_free(&a);
	vl_buf_free(&b);
	vs_msg_free(&m);
}
