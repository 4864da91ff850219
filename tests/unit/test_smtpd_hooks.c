/* smtpd's hooks as volleyd's submission listener uses them: answers that
 * come later (AUTH, the message), strict content, AUTH only after
 * STARTTLS. The session is fed bytes directly. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../smtpd/smtpd.h"

struct hk {
	struct smtpd_conf conf;
	struct smtpd_stats stats;
	struct smtpd_ctx ctx;
	_Atomic uint64_t open;
	struct vl_buf out;
	struct smtpd_sess s;
	int pend;               /* 1: the message hook waits, 2: AUTH waits too */
	int messages;
	char last_msg[4096];
	char user[64], pass[64];
	char reply[4096];
};

static struct smtpd_verdict h_auth(void *arg, struct smtpd_sess *s, const char *u,
				   const char *p)
{
	struct hk *h = arg;
	(void)s;
	snprintf(h->user, sizeof h->user, "%s", u);
	snprintf(h->pass, sizeof h->pass, "%s", p);
	if (h->pend >= 2)
		return (struct smtpd_verdict){ SMTPD_V_PENDING, 0, NULL };
	return (struct smtpd_verdict){ SMTPD_V_REPLY, strcmp(p, "pw") ? 535 : 235, NULL };
}

static struct smtpd_verdict h_msg(void *arg, struct smtpd_sess *s,
				  const struct smtpd_envelope *e, const char *m, size_t n)
{
	struct hk *h = arg;
	(void)s;
	(void)e;
	h->messages++;
	snprintf(h->last_msg, sizeof h->last_msg, "%.*s", (int)n, m);
	if (h->pend)
		return (struct smtpd_verdict){ SMTPD_V_PENDING, 0, NULL };
	return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
}

static const struct smtpd_hooks hooks = { .auth = h_auth, .message = h_msg };

static struct hk *hk_new(int pend)
{
	struct hk *h = calloc(1, sizeof *h);
	snprintf(h->conf.hostname, sizeof h->conf.hostname, "msa.test");
	h->conf.banner = "volley";
	h->conf.starttls = h->conf.auth = h->conf.strict_data = h->conf.keep_message = true;
	h->conf.max_size = 1 << 20;
	h->conf.max_rcpts = 3;
	h->pend = pend;
	h->ctx = (struct smtpd_ctx){ .conf = &h->conf, .hooks = &hooks, .hook_arg = h,
				     .stats = &h->stats, .conns_open = &h->open };
	vl_buf_init(&h->out);
	smtpd_sess_init(&h->s, &h->ctx, &h->out);
	smtpd_sess_greet(&h->s);
	vl_buf_reset(&h->out);
	return h;
}

static void hk_free(struct hk *h)
{
	smtpd_sess_free(&h->s);
	vl_buf_free(&h->out);
	free(h);
}

static const char *take(struct hk *h)
{
	snprintf(h->reply, sizeof h->reply, "%.*s", (int)h->out.len, h->out.p ? h->out.p : "");
	vl_buf_reset(&h->out);
	return h->reply;
}

static const char *feed(struct hk *h, const char *in)
{
	smtpd_sess_feed(&h->s, in, strlen(in));
	return take(h);
}

/* EHLO, STARTTLS, EHLO again inside TLS, AUTH PLAIN u/pw. */
static void login(struct hk *h)
{
	feed(h, "EHLO c\r\n");
	smtpd_sess_feed(&h->s, "STARTTLS\r\n", 10);
	cr_assert_eq(h->s.action, SMTPD_STARTTLS);
	take(h);
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	cr_assert(strstr(feed(h, "EHLO c\r\n"), "250-AUTH PLAIN LOGIN\r\n"));
	/* \0u\0pw */
	cr_assert_str_eq(feed(h, "AUTH PLAIN AHUAcHc=\r\n"), "235 2.7.0 Authentication successful\r\n");
}

Test(smtpd_hooks, mail_needs_starttls_then_auth)
{
	struct hk *h = hk_new(0);
	const char *r = feed(h, "EHLO c\r\n");
	cr_assert_null(strstr(r, "AUTH"), "AUTH is never offered in cleartext: %s", r);
	cr_assert(strstr(r, "STARTTLS"));
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test>\r\n"),
			 "530 5.7.0 Must issue a STARTTLS command first\r\n");
	cr_assert(strncmp(feed(h, "AUTH PLAIN AHUAcHc=\r\n"), "538 5.7.11", 10) == 0);
	cr_assert_eq(h->stats.auth_ok, 0);
	smtpd_sess_feed(&h->s, "STARTTLS\r\n", 10);
	take(h);
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	feed(h, "EHLO c\r\n");
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test>\r\n"), "530 5.7.0 Authentication required\r\n");
	cr_assert(strncmp(feed(h, "AUTH PLAIN AHUAd3Jvbmc=\r\n"), "535 5.7.8", 9) == 0);
	cr_assert_eq(h->stats.auth_failed, 1);
	cr_assert_str_eq(h->pass, "wrong");
	hk_free(h);
}

Test(smtpd_hooks, message_answered_later_holds_pipelined_commands)
{
	struct hk *h = hk_new(1);
	login(h);
	const char *in = "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\n"
			 "DATA\r\n";
	cr_assert_str_eq(feed(h, in), "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
			 "354 End data with <CR><LF>.<CR><LF>\r\n");
	const char *data = "Subject: t\r\n\r\n..dot\r\n.\r\nNOOP\r\n";
	size_t used = smtpd_sess_feed(&h->s, data, strlen(data));
	cr_assert_eq(used, strlen(data) - 6, "stops right after the end of data");
	cr_assert_eq(h->s.action, SMTPD_WAIT);
	cr_assert_str_eq(take(h), "", "no answer until the hook's");
	cr_assert_str_eq(h->last_msg, "Subject: t\r\n\r\n.dot\r\n");
	cr_assert_eq(h->s.nrcpt, 2, "the transaction stays while it waits");
	smtpd_sess_resume(&h->s, 250, "250 2.0.0 Ok: queued as J1\r\n");
	cr_assert_eq(h->s.action, SMTPD_OK);
	cr_assert_str_eq(take(h), "250 2.0.0 Ok: queued as J1\r\n");
	cr_assert_eq(h->stats.messages, 1);
	cr_assert_eq(h->stats.recipients, 2);
	cr_assert_str_eq(feed(h, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
	cr_assert_eq(h->s.nrcpt, 0);
	hk_free(h);
}

Test(smtpd_hooks, message_refused_later_is_not_counted)
{
	struct hk *h = hk_new(1);
	login(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
	feed(h, "From: a@evil.test\r\n\r\nhi\r\n.\r\n");
	smtpd_sess_resume(&h->s, 550, "550 5.7.1 From domain evil.test is not allowed\r\n");
	cr_assert_str_eq(take(h), "550 5.7.1 From domain evil.test is not allowed\r\n");
	cr_assert_eq(h->stats.messages, 0);
	smtpd_sess_resume(&h->s, 250, NULL); /* a stray second answer does nothing */
	cr_assert_str_eq(take(h), "");
	smtpd_sess_apply(&h->s, 451, NULL);
	cr_assert_str_eq(take(h), "");
	hk_free(h);
}

Test(smtpd_hooks, auth_answered_later)
{
	struct hk *h = hk_new(2);
	feed(h, "EHLO c\r\n");
	smtpd_sess_feed(&h->s, "STARTTLS\r\n", 10);
	take(h);
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	feed(h, "EHLO c\r\n");
	/* LOGIN: user "u", password "pw" */
	cr_assert_str_eq(feed(h, "AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
	cr_assert_str_eq(feed(h, "dQ==\r\n"), "334 UGFzc3dvcmQ6\r\n");
	cr_assert_str_eq(feed(h, "cHc=\r\nMAIL FROM:<a@b.test>\r\n"), "");
	cr_assert_eq(h->s.action, SMTPD_WAIT);
	cr_assert_str_eq(h->user, "u");
	smtpd_sess_resume(&h->s, 235, NULL);
	cr_assert_str_eq(take(h), "235 2.7.0 Authentication successful\r\n");
	cr_assert_str_eq(h->s.auth_user, "u");
	hk_free(h);
}

Test(smtpd_hooks, auth_refused_later_with_421_closes)
{
	struct hk *h = hk_new(2);
	feed(h, "EHLO c\r\n");
	smtpd_sess_feed(&h->s, "STARTTLS\r\n", 10);
	take(h);
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	feed(h, "EHLO c\r\nAUTH PLAIN AHUAcHc=\r\n");
	smtpd_sess_resume(&h->s, 421, NULL);
	cr_assert(strncmp(take(h), "421 4.7.0", 9) == 0);
	cr_assert_eq(h->s.action, SMTPD_CLOSE);
	cr_assert_str_eq(h->s.auth_user, "");
	hk_free(h);
}

static void refused_n(const char *body, size_t len, const char *want)
{
	struct hk *h = hk_new(0);
	login(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
	smtpd_sess_feed(&h->s, body, len);
	cr_assert_str_eq(take(h), want, "for %s", body);
	cr_assert_eq(h->messages, 0, "the hook never sees it");
	cr_assert_eq(h->s.in_mail, false);
	hk_free(h);
}

#define refused(lit, want) refused_n(lit, sizeof lit - 1, want)

Test(smtpd_hooks, strict_content)
{
	const char *eol = "554 5.6.11 Error: message contains a bare CR or LF\r\n";
	refused("a\nb\r\n.\r\n", eol);
	refused("a\rb\r\n.\r\n", eol);
	refused("a\r\n.\n.\r\n.\r\n", eol); /* smuggling: ".\\n" ends nothing, and is refused */
	refused("a\0b\r\n.\r\n", "554 5.6.0 Error: message contains a NUL octet\r\n");
	char big[1200];
	memset(big, 'x', sizeof big);
	memcpy(big + sizeof big - 6, "\r\n.\r\n", 6);
	refused_n(big, sizeof big, "554 5.6.0 Error: message has a line over 998 octets\r\n");
}

Test(smtpd_hooks, strict_content_via_bdat)
{
	struct hk *h = hk_new(0);
	login(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
	cr_assert_str_eq(feed(h, "BDAT 5 LAST\r\nab\ncd"),
			 "554 5.6.11 Error: message contains a bare CR or LF\r\n");
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
	cr_assert(strncmp(feed(h, "BDAT 6 LAST\r\nab\r\nc\r"), "554 5.6.11", 10) == 0,
		  "a CR at the very end is bare too");
	hk_free(h);
}

Test(smtpd_hooks, too_many_recipients_and_size)
{
	struct hk *h = hk_new(0);
	login(h);
	feed(h, "MAIL FROM:<a@b.test>\r\n");
	for (int i = 0; i < 3; i++)
		cr_assert_str_eq(feed(h, "RCPT TO:<x@y.test>\r\n"), "250 2.1.5 Ok\r\n");
	cr_assert_str_eq(feed(h, "RCPT TO:<x@y.test>\r\n"), "452 4.5.3 Error: too many recipients\r\n");
	feed(h, "RSET\r\n");
	cr_assert(strncmp(feed(h, "MAIL FROM:<a@b.test> SIZE=9999999\r\n"), "552 5.3.4", 9) == 0);
	hk_free(h);
}

Test(smtpd_hooks, reply_fmt_keeps_one_line)
{
	char buf[64];
	cr_assert_str_eq(smtpd_reply_fmt(buf, sizeof buf, 550, "5.7.1 %s", "a\r\nb"),
			 "550 5.7.1 a  b\r\n");
	char small[16];
	const char *r = smtpd_reply_fmt(small, sizeof small, 550, "5.7.1 %s", "a long text here");
	cr_assert_eq(strlen(r), sizeof small - 1);
	cr_assert_str_eq(r + strlen(r) - 2, "\r\n");
}

Test(smtpd_hooks, listen_parse)
{
	struct smtpd_listen l = { .implicit_tls = true };
	cr_assert_eq(smtpd_listen_parse("127.0.0.1:587", &l), 0);
	cr_assert_str_eq(l.host, "127.0.0.1");
	cr_assert_eq(l.port, 587);
	cr_assert(l.implicit_tls);
	cr_assert_eq(smtpd_listen_parse("[::1]:465", &l), 0);
	cr_assert_str_eq(l.host, "::1");
	cr_assert_eq(smtpd_listen_parse("mail.example.com:25", &l), -1);
	cr_assert_eq(smtpd_listen_parse("127.0.0.1", &l), -1);
	cr_assert_eq(smtpd_listen_parse("127.0.0.1:0", &l), -1);
	cr_assert_eq(smtpd_listen_parse("127.0.0.1:70000", &l), -1);
}

Test(smtpd_hooks, auth_login_with_initial_response)
{
	struct hk *h = hk_new(0);
	feed(h, "EHLO c\r\n");
	smtpd_sess_feed(&h->s, "STARTTLS\r\n", 10);
	take(h);
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	feed(h, "EHLO c\r\n");
	/* smtplib and others send the user name with the command */
	cr_assert_str_eq(feed(h, "AUTH LOGIN dQ==\r\n"), "334 UGFzc3dvcmQ6\r\n");
	cr_assert_str_eq(feed(h, "cHc=\r\n"), "235 2.7.0 Authentication successful\r\n");
	cr_assert_str_eq(h->user, "u");
	hk_free(h);
}

/* The closed hook: once, when the session is freed, with what the other
 * hooks left in s->user. */
static int closed_calls;
static void *closed_user;

static struct smtpd_verdict h_check_keep(void *arg, struct smtpd_sess *s, enum smtpd_stage st,
					 const char *a)
{
	(void)arg;
	(void)a;
	if (st == SMTPD_ST_CONNECT)
		s->user = &closed_calls;
	return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
}

static void h_closed(void *arg, struct smtpd_sess *s)
{
	(void)arg;
	closed_calls++;
	closed_user = s->user;
}

Test(smtpd_hooks, closed_hook_sees_the_session_once)
{
	static const struct smtpd_hooks ch = { .check = h_check_keep, .closed = h_closed };
	struct hk *h = hk_new(0);

	smtpd_sess_free(&h->s);          /* the default hooks: no closed hook */
	h->ctx.hooks = &ch;
	smtpd_sess_init(&h->s, &h->ctx, &h->out);
	smtpd_sess_greet(&h->s);
	cr_assert_str_eq(take(h), "220 msa.test ESMTP volley\r\n");
	cr_assert_str_eq(feed(h, "QUIT\r\n"), "221 2.0.0 Bye\r\n");
	cr_assert_eq(closed_calls, 0);
	hk_free(h);
	cr_assert_eq(closed_calls, 1);
	cr_assert_eq(closed_user, &closed_calls);
}
