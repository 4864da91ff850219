/* engine: the SMTP client session state machine, driven by scripted
 * replies; what it writes is checked byte for byte. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <string.h>

#include "../../engine/engine_int.h"

#define MAXR 8

struct t {
	struct eng_config cfg;
	struct eng_route route;
	struct eng_sess s;
	struct eng_msg m;
	const char *rcpts[MAXR];
	struct iovec body[2];
	struct eng_result res[MAXR];
	char text[MAXR][256], enh[MAXR][16];
	int nres;
	enum eng_act act;
	/* what the session put in its output, taken as the worker does:
	 * the bodies of the last call, and how many ever */
	char bodies[4][256];
	size_t nbodies, bodies_ever;
};

static void on_result(struct eng_msg *m, size_t i, const struct eng_result *r)
{
	struct t *t = m->arg;
	cr_assert_lt(i, m->nrcpt);
	t->res[i] = *r;
	snprintf(t->text[i], sizeof t->text[i], "%s", r->text);
	t->res[i].text = t->text[i];
	/* Result strings live only during the call: keep copies. */
	snprintf(t->enh[i], sizeof t->enh[i], "%s", r->enhanced);
	t->res[i].enhanced = t->enh[i];
	t->nres++;
}

/* implicit: TLS from the connect on (RFC 8314): the connect asks for the
 * handshake (t->act) instead of waiting for the banner. */
static struct t *t_new_tls(enum tls_policy p, int nrcpt, bool implicit)
{
	struct t *t = calloc(1, sizeof *t);
	char err[128];
	eng_config_defaults(&t->cfg);
	snprintf(t->cfg.helo, sizeof t->cfg.helo, "me.test");
	cr_assert_eq(eng_route_parse(&t->route, "127.0.0.1:25", err, sizeof err), 0);
	t->route.tls = p;
	t->route.implicit_tls = implicit;
	eng_sess_init(&t->s, &t->cfg, &t->route);
	static const char *names[] = {"a@x.test", "b@x.test", "c@x.test", "d@x.test"};
	for (int i = 0; i < nrcpt; i++)
		t->rcpts[i] = names[i];
	t->body[0] = (struct iovec){"Subject: t\r\n\r\n", 14};
	t->body[1] = (struct iovec){".hi\r\n", 5};
	t->m = (struct eng_msg){.mail_from = "s@y.test", .rcpts = t->rcpts,
		.nrcpt = (size_t)nrcpt, .body = t->body, .nbody = 2,
		.on_result = on_result, .arg = t, .size_ = 19, .pending_ = (size_t)nrcpt};
	t->act = eng_sess_connected(&t->s);
	return t;
}

static struct t *t_new(enum tls_policy p, int nrcpt)
{
	struct t *t = t_new_tls(p, nrcpt, false);
	cr_assert_eq(t->act, ENG_WAIT, "the banner first");
	return t;
}

/* Take the session's output as the worker does: the commands (returned,
 * bodies left out) and the bodies, kept in t. */
static const char *take(struct t *t)
{
	static char out[8192];
	size_t n = t->s.out.len < sizeof out - 1 ? t->s.out.len : sizeof out - 1;
	memcpy(out, t->s.out.p, n);
	out[n] = '\0';
	t->nbodies = t->s.nbodies;
	t->bodies_ever += t->s.nbodies;
	for (size_t b = 0; b < t->s.nbodies && b < 4; b++) {
		t->bodies[b][0] = '\0';
		for (size_t i = 0; i < t->s.bodies[b].n; i++)
			strncat(t->bodies[b], t->s.bodies[b].v[i].iov_base,
				t->s.bodies[b].v[i].iov_len);
	}
	eng_sess_output_taken(&t->s);
	return out;
}

static void t_free(struct t *t)
{
	eng_sess_free(&t->s);
	free(t);
}

/* Feed one reply (CRLF-separated lines); return what the session wrote. */
static const char *reply(struct t *t, const char *wire)
{
	static char out[4096];
	struct eng_reply_parser p;
	struct eng_reply r;
	size_t used;
	eng_reply_parser_init(&p);
	cr_assert_eq(eng_reply_feed(&p, wire, strlen(wire), &used, &r), 1, "%s", wire);
	eng_reply_parser_free(&p);
	t->act = eng_sess_reply(&t->s, &r);
	snprintf(out, sizeof out, "%s", take(t));
	return out;
}

static const char *start(struct t *t)
{
	t->act = eng_sess_start(&t->s, &t->m);
	return take(t);
}

static const char *EHLO_FULL = "250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	"250-8BITMIME\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n";

/* Banner and EHLO with the given capabilities; session ready. */
static void hello(struct t *t, const char *ehlo)
{
	cr_assert_str_eq(reply(t, "220 mx ESMTP\r\n"), "EHLO me.test\r\n");
	reply(t, ehlo);
	cr_assert_eq(t->act, ENG_IDLE);
}

Test(eng_session, pipelined_data_transaction)
{
	struct t *t = t_new(TLS_POLICY_NONE, 3);
	hello(t, EHLO_FULL);
	cr_assert(t->s.pipelining && t->s.size_ext && t->s.size_max == 1000);
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test> SIZE=19\r\nRCPT TO:<a@x.test>\r\n"
			 "RCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n");
	reply(t, "250 2.1.0 ok\r\n");
	reply(t, "250 2.1.5 ok\r\n");
	reply(t, "550 5.1.1 no such user\r\n");
	reply(t, "250 2.1.5 ok\r\n");
	cr_assert_eq(t->nres, 1, "the refused recipient has its result at once");
	cr_assert_eq(t->res[1].status, ENG_PERMANENT);
	cr_assert_str_eq(t->res[1].enhanced, "5.1.1");
	cr_assert_str_eq(t->res[1].stage, "rcpt");
	reply(t, "354 go\r\n");
	cr_assert_eq(t->act, ENG_WAIT);
	cr_assert_eq(t->nbodies, 1);
	/* The body is dot-stuffed and ends the message. */
	cr_assert_str_eq(t->bodies[0], "Subject: t\r\n\r\n..hi\r\n.\r\n");
	reply(t, "250 2.0.0 queued as X\r\n");
	cr_assert_eq(t->act, ENG_IDLE);
	cr_assert_eq(t->nres, 3);
	cr_assert_eq(t->res[0].status, ENG_DELIVERED);
	cr_assert_str_eq(t->res[0].text, "queued as X");
	cr_assert_eq(t->res[2].status, ENG_DELIVERED);
	cr_assert_eq(t->s.finished, &t->m);
	cr_assert_eq(t->m.pending_, 0);
	t_free(t);
}

Test(eng_session, unpipelined_one_command_at_a_time)
{
	struct t *t = t_new(TLS_POLICY_NONE, 2);
	hello(t, "250-mx\r\n250 8BITMIME\r\n");
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test>\r\n", "no SIZE= without SIZE");
	cr_assert_str_eq(reply(t, "250 ok\r\n"), "RCPT TO:<a@x.test>\r\n");
	cr_assert_str_eq(reply(t, "450 4.2.0 busy\r\n"), "RCPT TO:<b@x.test>\r\n");
	cr_assert_str_eq(reply(t, "250 ok\r\n"), "DATA\r\n");
	reply(t, "354 go\r\n");
	reply(t, "451 4.3.0 later\r\n");
	cr_assert_eq(t->res[0].status, ENG_TRANSIENT);
	cr_assert_str_eq(t->res[0].stage, "rcpt");
	cr_assert_eq(t->res[1].status, ENG_TRANSIENT);
	cr_assert_str_eq(t->res[1].stage, "dot");
	cr_assert_eq(t->act, ENG_IDLE);
	t_free(t);
}

Test(eng_session, mail_refused_then_rset)
{
	struct t *t = t_new(TLS_POLICY_NONE, 2);
	hello(t, "250-mx\r\n250 PIPELINING\r\n");
	start(t);
	reply(t, "550 5.7.1 sender blocked\r\n");
	cr_assert_eq(t->nres, 2);
	cr_assert_eq(t->res[0].status, ENG_PERMANENT);
	cr_assert_str_eq(t->res[1].stage, "mail");
	reply(t, "503 5.5.1 need MAIL\r\n");
	reply(t, "503 5.5.1 need MAIL\r\n");
	cr_assert_str_eq(reply(t, "503 5.5.1 no valid recipients\r\n"), "RSET\r\n");
	cr_assert_eq(t->s.finished, &t->m);
	reply(t, "250 ok\r\n");
	cr_assert_eq(t->act, ENG_IDLE);
	cr_assert_eq(t->nres, 2, "one result each, no more");
	t_free(t);
}

Test(eng_session, bdat_pipelined_with_body)
{
	struct t *t = t_new(TLS_POLICY_NONE, 1);
	hello(t, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nBDAT 19 LAST\r\n");
	cr_assert_eq(t->nbodies, 1);
	cr_assert_eq(t->s.txn[t->s.head].octets, 19 + 56, "commands and body counted");
	cr_assert_str_eq(t->bodies[0], "Subject: t\r\n\r\n.hi\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "250 2.0.0 ok\r\n");
	cr_assert_eq(t->res[0].status, ENG_DELIVERED);
	cr_assert_eq(t->act, ENG_IDLE);
	t_free(t);
}

Test(eng_session, starttls_policies)
{
	/* encrypt without STARTTLS offered: nothing is sent. */
	struct t *t = t_new(TLS_POLICY_ENCRYPT, 1);
	reply(t, "220 mx\r\n");
	reply(t, "250-mx\r\n250 PIPELINING\r\n");
	cr_assert_eq(t->act, ENG_CLOSE);
	cr_assert_str_eq(t->s.fail_stage, "starttls");
	cr_assert(strstr(t->s.fail_text, "STARTTLS not offered; TLS policy 'encrypt'"));
	t_free(t);
	/* may: STARTTLS when offered, EHLO again after the handshake. */
	t = t_new(TLS_POLICY_MAY, 1);
	reply(t, "220 mx\r\n");
	cr_assert_str_eq(reply(t, EHLO_FULL), "STARTTLS\r\n");
	reply(t, "220 2.0.0 go ahead\r\n");
	cr_assert_eq(t->act, ENG_STARTTLS);
	t->s.tls_on = true;
	t->act = eng_sess_tls_done(&t->s);
	cr_assert_eq(t->s.out.len, 14);
	vl_buf_reset(&t->s.out);
	reply(t, "250-mx\r\n250 PIPELINING\r\n");
	cr_assert_eq(t->act, ENG_IDLE, "no STARTTLS twice");
	t_free(t);
	/* may, STARTTLS refused: carries on in clear text. encrypt: fails. */
	t = t_new(TLS_POLICY_MAY, 1);
	reply(t, "220 mx\r\n");
	reply(t, EHLO_FULL);
	reply(t, "454 4.7.0 TLS not available\r\n");
	cr_assert_eq(t->act, ENG_IDLE);
	t_free(t);
	t = t_new(TLS_POLICY_VERIFY, 1);
	reply(t, "220 mx\r\n");
	reply(t, EHLO_FULL);
	reply(t, "454 4.7.0 TLS not available\r\n");
	cr_assert_eq(t->act, ENG_CLOSE);
	/* the refusal's reply is in the failure (the session keeps no copy) */
	cr_assert_eq(t->s.fail_code, 454);
	cr_assert_str_eq(t->s.fail_enhanced, "4.7.0");
	cr_assert(strstr(t->s.fail_text, "STARTTLS refused: TLS not available; TLS policy "
			 "'verify' requires TLS"), "%s", t->s.fail_text);
	t_free(t);
}

Test(eng_session, auth_only_inside_tls)
{
	struct t *t = t_new(TLS_POLICY_MAY, 1);
	snprintf(t->route.auth_user, sizeof t->route.auth_user, "user");
	snprintf(t->route.auth_pass, sizeof t->route.auth_pass, "pass");
	reply(t, "220 mx\r\n");
	reply(t, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
	cr_assert_eq(t->act, ENG_CLOSE, "no STARTTLS: credentials stay home");
	cr_assert(strstr(t->s.fail_text, "inside TLS"));
	t_free(t);
	t = t_new(TLS_POLICY_MAY, 1);
	snprintf(t->route.auth_user, sizeof t->route.auth_user, "user");
	snprintf(t->route.auth_pass, sizeof t->route.auth_pass, "pass");
	reply(t, "220 mx\r\n");
	reply(t, "250-mx\r\n250 STARTTLS\r\n");
	reply(t, "220 go\r\n");
	t->s.tls_on = true;
	eng_sess_tls_done(&t->s);
	vl_buf_reset(&t->s.out);
	/* base64("\0user\0pass") */
	cr_assert_str_eq(reply(t, "250-mx\r\n250 AUTH=LOGIN PLAIN\r\n"), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
	reply(t, "235 2.7.0 ok\r\n");
	cr_assert_eq(t->act, ENG_IDLE);
	t_free(t);
}

/* Implicit TLS (RFC 8314): the handshake before anything, the banner and
 * EHLO inside it, AUTH then, STARTTLS never, whatever the policy. */
Test(eng_session, implicit_tls_greeting_inside_tls)
{
	static const enum tls_policy pols[] = { TLS_POLICY_MAY, TLS_POLICY_ENCRYPT,
						TLS_POLICY_DANE, TLS_POLICY_VERIFY };
	for (size_t i = 0; i < sizeof pols / sizeof *pols; i++) {
		struct t *t = t_new_tls(pols[i], 1, true);
		snprintf(t->route.auth_user, sizeof t->route.auth_user, "user");
		snprintf(t->route.auth_pass, sizeof t->route.auth_pass, "pass");
		cr_assert_eq(t->act, ENG_STARTTLS, "the handshake comes first");
		cr_assert_eq(t->s.state, ENG_S_TLS);
		cr_assert_str_eq(eng_sess_stage(&t->s), "tls");
		cr_assert_eq(eng_sess_timeout(&t->s), t->cfg.t.tls);
		cr_assert_eq(t->s.out.len, 0, "not a byte in clear text");
		t->s.tls_on = true;
		t->s.tls_version = "TLSv1.3";
		t->act = eng_sess_tls_done(&t->s);
		cr_assert_eq(t->act, ENG_WAIT);
		cr_assert_eq(t->s.out.len, 0, "the server speaks first, inside TLS");
		cr_assert_eq(t->s.state, ENG_S_BANNER);
		cr_assert_eq(eng_sess_timeout(&t->s), t->cfg.t.greeting);
		cr_assert_str_eq(reply(t, "220 relay ESMTP\r\n"), "EHLO me.test\r\n");
		/* STARTTLS offered all the same: TLS is on, it is not sent */
		cr_assert_str_eq(reply(t, "250-relay\r\n250-STARTTLS\r\n250-PIPELINING\r\n"
				       "250 AUTH PLAIN LOGIN\r\n"), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
		cr_assert_eq(t->s.state, ENG_S_AUTH);
		reply(t, "235 2.7.0 ok\r\n");
		cr_assert_eq(t->act, ENG_IDLE);
		cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
		reply(t, "250 ok\r\n");
		reply(t, "250 ok\r\n");
		reply(t, "354 go\r\n");
		reply(t, "250 2.0.0 queued\r\n");
		cr_assert_eq(t->res[0].status, ENG_DELIVERED);
		cr_assert_str_eq(t->res[0].tls_version, "TLSv1.3");
		t_free(t);
	}
	/* a handshake that fails: stage tls, nothing sent */
	struct t *t = t_new_tls(TLS_POLICY_ENCRYPT, 1, true);
	cr_assert_eq(eng_sess_fail(&t->s, eng_sess_stage(&t->s), 0, "", "TLS: bad"), ENG_CLOSE);
	cr_assert_str_eq(t->s.fail_stage, "tls");
	cr_assert_eq(t->s.out.len, 0);
	t_free(t);
	/* a wrong password inside TLS: the session ends at stage auth */
	t = t_new_tls(TLS_POLICY_ENCRYPT, 1, true);
	snprintf(t->route.auth_user, sizeof t->route.auth_user, "user");
	t->s.tls_on = true;
	eng_sess_tls_done(&t->s);
	reply(t, "220 relay\r\n");
	reply(t, "250-relay\r\n250 AUTH PLAIN\r\n");
	reply(t, "535 5.7.8 bad credentials\r\n");
	cr_assert_eq(t->act, ENG_CLOSE);
	cr_assert_str_eq(t->s.fail_stage, "auth");
	cr_assert_eq(t->s.fail_code, 535);
	t_free(t);
}

Test(eng_session, auth_login)
{
	struct t *t = t_new(TLS_POLICY_MAY, 1);
	snprintf(t->route.auth_user, sizeof t->route.auth_user, "user");
	snprintf(t->route.auth_pass, sizeof t->route.auth_pass, "pass");
	t->s.tls_on = true; /* as after a handshake */
	reply(t, "220 mx\r\n");
	cr_assert_str_eq(reply(t, "250-mx\r\n250 AUTH LOGIN\r\n"), "AUTH LOGIN\r\n");
	cr_assert_str_eq(reply(t, "334 VXNlcm5hbWU6\r\n"), "dXNlcg==\r\n");
	cr_assert_str_eq(reply(t, "334 UGFzc3dvcmQ6\r\n"), "cGFzcw==\r\n");
	reply(t, "535 5.7.8 bad credentials\r\n");
	cr_assert_eq(t->act, ENG_CLOSE);
	t_free(t);
}

Test(eng_session, helo_fallback_and_limits)
{
	struct t *t = t_new(TLS_POLICY_NONE, 1);
	reply(t, "220 mx\r\n");
	cr_assert_str_eq(reply(t, "502 5.5.1 what\r\n"), "HELO me.test\r\n");
	reply(t, "250 mx\r\n");
	cr_assert_eq(t->act, ENG_IDLE);
	t->m.eightbit = true;
	cr_assert_str_eq(start(t), "", "nothing sent for an impossible message");
	cr_assert_eq(t->res[0].status, ENG_PERMANENT);
	cr_assert_str_eq(t->res[0].enhanced, "5.6.3");
	t_free(t);
	t = t_new(TLS_POLICY_NONE, 1);
	hello(t, "250-mx\r\n250 SIZE 10\r\n");
	cr_assert_str_eq(start(t), "");
	cr_assert_eq(t->res[0].code, 552);
	cr_assert_eq(t->act, ENG_IDLE);
	t_free(t);
}

/* An egress source's route carries its own EHLO name; "" is the engine's. */
Test(eng_session, route_helo_wins)
{
	struct t *t = t_new(TLS_POLICY_NONE, 1);
	snprintf(t->route.helo, sizeof t->route.helo, "mta2.example.test");
	cr_assert_str_eq(reply(t, "220 mx\r\n"), "EHLO mta2.example.test\r\n");
	cr_assert_str_eq(reply(t, "502 5.5.1 what\r\n"), "HELO mta2.example.test\r\n");
	t_free(t);
}

Test(eng_session, failures_are_transient)
{
	/* A 421 in the middle of a transaction. */
	struct t *t = t_new(TLS_POLICY_NONE, 2);
	hello(t, "250-mx\r\n250 PIPELINING\r\n");
	start(t);
	reply(t, "250 ok\r\n");
	reply(t, "421 4.7.0 closing\r\n");
	cr_assert_eq(t->act, ENG_CLOSE);
	cr_assert_eq(t->nres, 2);
	cr_assert_eq(t->res[0].status, ENG_TRANSIENT);
	cr_assert_eq(t->res[0].code, 421);
	cr_assert_not(t->res[0].maybe_delivered);
	t_free(t);
	/* Silence after the final dot: maybe delivered. */
	t = t_new(TLS_POLICY_NONE, 1);
	hello(t, "250-mx\r\n250 PIPELINING\r\n");
	start(t);
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "354 go\r\n");
	cr_assert_eq(eng_sess_timeout(&t->s), t->cfg.t.data_term);
	eng_sess_fail(&t->s, "dot", 0, "", "timeout after the final dot");
	cr_assert_eq(t->res[0].status, ENG_TRANSIENT);
	cr_assert(t->res[0].maybe_delivered);
	t_free(t);
}

Test(eng_session, recipients_split_over_transactions)
{
	struct t *t = t_new(TLS_POLICY_NONE, 3);
	t->cfg.max_rcpts_per_txn = 2;
	hello(t, "250-mx\r\n250 PIPELINING\r\n");
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\n"
			 "RCPT TO:<b@x.test>\r\nDATA\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "354 go\r\n");
	reply(t, "250 ok\r\n");
	cr_assert_eq(t->m.pending_, 1);
	t->m.first_ += t->m.count_;
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n");
	t_free(t);
}

/* ---- shared transactions: one message, several RCPTs ---- */

Test(eng_session, shared_rcpt_refusals_are_per_recipient)
{
	struct t *t = t_new(TLS_POLICY_NONE, 4);
	hello(t, EHLO_FULL);
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test> SIZE=19\r\nRCPT TO:<a@x.test>\r\n"
			 "RCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nRCPT TO:<d@x.test>\r\n"
			 "DATA\r\n", "MAIL, every RCPT and DATA pipelined");
	reply(t, "250 2.1.0 ok\r\n");
	reply(t, "250 2.1.5 ok\r\n");
	reply(t, "550 5.1.1 no such user\r\n");
	reply(t, "452 4.5.3 too many recipients\r\n");
	reply(t, "250 2.1.5 ok\r\n");
	cr_assert_eq(t->nres, 2, "refusals have their results at once");
	cr_assert_eq(t->res[1].status, ENG_PERMANENT);
	cr_assert_eq(t->res[1].code, 550);
	cr_assert_str_eq(t->res[1].stage, "rcpt");
	cr_assert_eq(t->res[2].status, ENG_TRANSIENT);
	cr_assert_eq(t->res[2].code, 452);
	cr_assert_str_eq(t->res[2].enhanced, "4.5.3");
	cr_assert_str_eq(t->res[2].text, "too many recipients");
	cr_assert_str_eq(reply(t, "354 go\r\n"), "");
	cr_assert_eq(t->nbodies, 1, "two were accepted: the body goes");
	cr_assert_str_eq(reply(t, "250 2.0.0 queued as Q\r\n"), "", "no RSET after a 250");
	cr_assert_eq(t->act, ENG_IDLE);
	cr_assert_eq(t->nres, 4);
	cr_assert_eq(t->res[0].status, ENG_DELIVERED);
	cr_assert_str_eq(t->res[0].stage, "dot");
	cr_assert_str_eq(t->res[0].text, "queued as Q");
	cr_assert_eq(t->res[3].status, ENG_DELIVERED);
	cr_assert_eq(t->m.pending_, 0);
	t_free(t);
}

Test(eng_session, shared_data_refused_for_the_accepted_only)
{
	struct t *t = t_new(TLS_POLICY_NONE, 3);
	hello(t, EHLO_FULL);
	start(t);
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "550 5.1.1 unknown\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "354 go\r\n");
	cr_assert_str_eq(reply(t, "554 5.7.1 content refused\r\n"), "");
	cr_assert_eq(t->nres, 3);
	cr_assert_eq(t->res[0].status, ENG_PERMANENT);
	cr_assert_str_eq(t->res[0].stage, "dot");
	cr_assert_str_eq(t->res[0].text, "content refused");
	cr_assert_str_eq(t->res[1].text, "unknown", "its own RCPT reply, not the dot's");
	cr_assert_eq(t->res[2].code, 554);
	cr_assert_eq(t->act, ENG_IDLE);
	t_free(t);
}

Test(eng_session, shared_all_refused_pipelined_no_body_then_rset)
{
	struct t *t = t_new(TLS_POLICY_NONE, 3);
	hello(t, EHLO_FULL);
	start(t);
	reply(t, "250 ok\r\n");
	reply(t, "550 5.1.1 unknown a\r\n");
	reply(t, "452 4.2.2 mailbox full\r\n");
	reply(t, "550 5.1.1 unknown c\r\n");
	cr_assert_eq(t->nres, 3);
	cr_assert_str_eq(reply(t, "554 5.5.1 no valid recipients\r\n"), "RSET\r\n");
	cr_assert_eq(t->bodies_ever, 0, "no body without an accepted recipient");
	cr_assert_eq(t->s.state, ENG_S_RSET);
	cr_assert_eq(t->res[0].status, ENG_PERMANENT);
	cr_assert_str_eq(t->res[0].text, "unknown a", "each keeps its own reply");
	cr_assert_eq(t->res[1].status, ENG_TRANSIENT);
	cr_assert_str_eq(t->res[1].enhanced, "4.2.2");
	cr_assert_eq(t->res[2].status, ENG_PERMANENT);
	reply(t, "250 2.0.0 reset\r\n");
	cr_assert_eq(t->act, ENG_IDLE);
	cr_assert_eq(t->nres, 3, "no second result");
	/* the session carries the next message */
	struct eng_msg m2 = t->m;
	m2.pending_ = 3;
	m2.first_ = 0;
	t->nres = 0;
	t->act = eng_sess_start(&t->s, &m2);
	cr_assert_eq(t->s.state, ENG_S_TXN);
	t_free(t);
}

Test(eng_session, shared_all_refused_unpipelined_no_data)
{
	struct t *t = t_new(TLS_POLICY_NONE, 2);
	hello(t, "250-mx\r\n250 8BITMIME\r\n");
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test>\r\n");
	cr_assert_str_eq(reply(t, "250 ok\r\n"), "RCPT TO:<a@x.test>\r\n");
	cr_assert_str_eq(reply(t, "550 5.1.1 no\r\n"), "RCPT TO:<b@x.test>\r\n");
	cr_assert_str_eq(reply(t, "452 4.5.3 too many recipients\r\n"), "RSET\r\n",
			 "no DATA when no RCPT was accepted");
	cr_assert_eq(t->nres, 2);
	cr_assert_eq(t->res[0].status, ENG_PERMANENT);
	cr_assert_eq(t->res[1].status, ENG_TRANSIENT);
	cr_assert_str_eq(t->res[1].stage, "rcpt");
	reply(t, "250 ok\r\n");
	cr_assert_eq(t->act, ENG_IDLE);
	t_free(t);
}

Test(eng_session, shared_limit_per_route)
{
	struct t *t = t_new(TLS_POLICY_NONE, 4);
	t->cfg.max_rcpts_per_txn = 3;
	struct eng_route r = t->route;
	r.max_rcpts_per_txn = 1;          /* the message's route (its policy's), over the engine's */
	t->m.route = &r;
	hello(t, "250-mx\r\n250 PIPELINING\r\n");
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
	cr_assert_eq(t->m.count_, 1);
	t_free(t);
}

/* ---- REQUIRETLS (RFC 8689) ---- */

/* Banner, EHLO, STARTTLS, the handshake (authenticated as said), EHLO
 * again answered with `after`; session ready. */
static void tls_hello(struct t *t, const char *after, bool dane, bool verified)
{
	snprintf(t->route.name, sizeof t->route.name, "mx.example.test");
	reply(t, "220 mx ESMTP\r\n");
	cr_assert_str_eq(reply(t, "250-mx\r\n250-REQUIRETLS\r\n250 STARTTLS\r\n"),
			 "STARTTLS\r\n");
	reply(t, "220 2.0.0 go ahead\r\n");
	cr_assert_eq(t->act, ENG_STARTTLS);
	t->s.tls_on = true;
	t->s.tls_dane = dane;
	t->s.tls_verified = verified;
	t->act = eng_sess_tls_done(&t->s);
	vl_buf_reset(&t->s.out);
	reply(t, after);
	cr_assert_eq(t->act, ENG_IDLE);
}

static const char *EHLO_RTLS = "250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	"250-REQUIRETLS\r\n250 ENHANCEDSTATUSCODES\r\n";

/* A require_tls message that may not go: every recipient transient, stage
 * requiretls, nothing written, the session READY for the next message. */
static void assert_refused(struct t *t, const char *why)
{
	t->m.require_tls = true;
	cr_assert_str_eq(start(t), "", "nothing is sent for it");
	cr_assert_eq(t->act, ENG_IDLE);
	cr_assert_eq(t->s.state, ENG_S_READY);
	cr_assert_eq(t->s.finished, &t->m);
	cr_assert_eq(t->nres, (int)t->m.nrcpt);
	for (size_t i = 0; i < t->m.nrcpt; i++) {
		cr_assert_eq(t->res[i].status, ENG_TRANSIENT);
		cr_assert_str_eq(t->res[i].stage, "requiretls");
		cr_assert_eq(t->res[i].code, 0);
		cr_assert(strstr(t->text[i], why), "'%s' not in '%s'", why, t->text[i]);
	}
	cr_assert_eq(t->m.pending_, 0);
}

Test(eng_session, requiretls_sent_over_dane_or_verified_tls)
{
	for (int verified = 0; verified < 2; verified++) {
		struct t *t = t_new(verified ? TLS_POLICY_VERIFY : TLS_POLICY_DANE, 2);
		tls_hello(t, EHLO_RTLS, !verified, verified);
		cr_assert(t->s.requiretls);
		t->m.require_tls = true;
		cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test> SIZE=19 REQUIRETLS\r\n"
				 "RCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n");
		reply(t, "250 2.1.0 ok\r\n");
		reply(t, "250 2.1.5 ok\r\n");
		reply(t, "250 2.1.5 ok\r\n");
		reply(t, "354 go\r\n");
		reply(t, "250 2.0.0 queued\r\n");
		cr_assert_eq(t->nres, 2);
		cr_assert_eq(t->res[0].status, ENG_DELIVERED);
		cr_assert_eq(t->res[1].tls_dane, !verified);
		t_free(t);
	}
}

Test(eng_session, requiretls_params_in_order_with_bdat)
{
	struct t *t = t_new(TLS_POLICY_DANE, 1);
	tls_hello(t, "250-mx\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"
		  "250-SMTPUTF8\r\n250-CHUNKING\r\n250 REQUIRETLS\r\n", true, false);
	t->m.require_tls = t->m.eightbit = t->m.smtputf8 = true;
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test> SIZE=19 BODY=8BITMIME SMTPUTF8 "
			 "REQUIRETLS\r\nRCPT TO:<a@x.test>\r\nBDAT 19 LAST\r\n");
	t_free(t);
}

Test(eng_session, requiretls_not_advertised_after_starttls)
{
	/* offered before STARTTLS only: what counts is the EHLO inside TLS */
	struct t *t = t_new(TLS_POLICY_DANE, 2);
	tls_hello(t, EHLO_FULL, true, false);
	cr_assert_not(t->s.requiretls, "forgotten with the rest at STARTTLS");
	assert_refused(t, "REQUIRETLS: mx.example.test does not advertise REQUIRETLS");
	/* the same session carries a message without the requirement, plainly */
	t->m.require_tls = false;
	t->m.pending_ = 2;
	t->nres = 0;
	cr_assert_str_eq(start(t), "MAIL FROM:<s@y.test> SIZE=19\r\nRCPT TO:<a@x.test>\r\n"
			 "RCPT TO:<b@x.test>\r\nDATA\r\n");
	t_free(t);
}

Test(eng_session, requiretls_needs_an_authenticated_peer)
{
	struct t *t = t_new(TLS_POLICY_DANE, 1);
	tls_hello(t, EHLO_RTLS, false, false); /* TLS, no TLSA records: not authenticated */
	assert_refused(t, "REQUIRETLS: the connection to mx.example.test is not "
		       "authenticated (DANE or a verified certificate is required)");
	t_free(t);
}

Test(eng_session, requiretls_never_in_clear_text)
{
	/* may, no STARTTLS offered; none: never STARTTLS. REQUIRETLS offered in
	 * clear text means nothing. */
	for (int p = 0; p < 2; p++) {
		struct t *t = t_new(p ? TLS_POLICY_NONE : TLS_POLICY_MAY, 1);
		snprintf(t->route.name, sizeof t->route.name, "mx.example.test");
		hello(t, p ? "250-mx\r\n250-STARTTLS\r\n250 REQUIRETLS\r\n"
			   : "250-mx\r\n250 REQUIRETLS\r\n");
		assert_refused(t, "REQUIRETLS: the connection to mx.example.test is not "
			       "encrypted");
		t_free(t);
	}
}

Test(eng_session, requiretls_refused_before_size)
{
	/* a host the message must not reach decides nothing about it */
	struct t *t = t_new(TLS_POLICY_NONE, 1);
	hello(t, "250-mx\r\n250 SIZE 10\r\n");
	assert_refused(t, "not encrypted");
	t_free(t);
}

Test(eng_session, state_names)
{
	for (int a = 0; a < ENG_S_COUNT; a++) {
		const char *n = eng_sess_state_name((enum eng_state)a);
		cr_assert(n && n[0] && strcmp(n, "?") != 0, "state %d has no name", a);
		for (int b = 0; b < a; b++)
			cr_assert_str_neq(n, eng_sess_state_name((enum eng_state)b));
	}
	cr_assert_str_eq(eng_sess_state_name(ENG_S_EHLO), "EHLO");
	cr_assert_str_eq(eng_sess_state_name(ENG_S_COUNT), "?");
	cr_assert_str_eq(eng_sess_state_name((enum eng_state)-1), "?");
}

Test(eng_session, transitions)
{
	/* the handshake, one transaction, QUIT */
	static const enum eng_state path[] = {
		ENG_S_CONNECTING, ENG_S_BANNER, ENG_S_EHLO, ENG_S_STARTTLS, ENG_S_TLS,
		ENG_S_EHLO, ENG_S_AUTH_USER, ENG_S_AUTH_PASS, ENG_S_AUTH, ENG_S_READY,
		ENG_S_TXN, ENG_S_BODY, ENG_S_READY, ENG_S_TXN, ENG_S_RSET, ENG_S_READY,
		ENG_S_QUIT, ENG_S_CLOSED,
	};
	for (size_t i = 1; i < sizeof path / sizeof *path; i++)
		cr_assert(eng_sess_transition_ok(path[i - 1], path[i]), "%s -> %s",
			  eng_sess_state_name(path[i - 1]), eng_sess_state_name(path[i]));
	for (int a = 0; a < ENG_S_COUNT; a++) {
		cr_assert(eng_sess_transition_ok((enum eng_state)a, ENG_S_CLOSED),
			  "every state may fail");
		cr_assert(eng_sess_transition_ok((enum eng_state)a, (enum eng_state)a));
	}
	/* implicit TLS: the handshake, then the banner inside it */
	cr_assert(eng_sess_transition_ok(ENG_S_CONNECTING, ENG_S_TLS));
	cr_assert(eng_sess_transition_ok(ENG_S_TLS, ENG_S_BANNER));
	cr_assert_not(eng_sess_transition_ok(ENG_S_CONNECTING, ENG_S_EHLO));
	cr_assert_not(eng_sess_transition_ok(ENG_S_BANNER, ENG_S_TXN));
	cr_assert_not(eng_sess_transition_ok(ENG_S_TLS, ENG_S_READY), "EHLO again first");
	cr_assert_not(eng_sess_transition_ok(ENG_S_EHLO, ENG_S_TXN));
	cr_assert_not(eng_sess_transition_ok(ENG_S_QUIT, ENG_S_READY));
	cr_assert_not(eng_sess_transition_ok(ENG_S_CLOSED, ENG_S_BANNER));
	cr_assert_not(eng_sess_transition_ok(ENG_S_READY, ENG_S_COUNT));
}

/* At debug level every state change is one line; at info level none. */
static char *session_log(enum vl_log_level lvl)
{
	static char log[8192];
	cr_redirect_stderr();
	vl_log_set_level(lvl);
	struct t *t = t_new(TLS_POLICY_NONE, 1);
	t->s.id_worker = 1;
	t->s.id_conn = 42;
	snprintf(t->s.peer, sizeof t->s.peer, "127.0.0.1:25");
	hello(t, "250-mx\r\n250 PIPELINING\r\n");
	start(t);
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "354 go\r\n");
	reply(t, "250 ok\r\n");
	eng_sess_quit(&t->s);
	reply(t, "221 bye\r\n");
	t_free(t);
	fflush(stderr);
	FILE *f = cr_get_redirected_stderr();
	fclose(stderr); /* the pipe's writing end: read to its end */
	size_t n = fread(log, 1, sizeof log - 1, f);
	log[n] = '\0';
	return log;
}

Test(eng_session, state_log_at_debug_level)
{
	const char *log = session_log(VL_LOG_DEBUG);
	static const char *const want[] = {
		"conn 1.42 127.0.0.1:25: state BANNER -> EHLO\n",
		"state EHLO -> READY\n", "state READY -> TXN\n", "state TXN -> BODY\n",
		"state BODY -> READY\n", "state READY -> QUIT\n", "state QUIT -> CLOSED\n",
	};
	const char *at = log;
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		const char *hit = strstr(at, want[i]);
		cr_assert(hit, "no '%s' in order in:\n%s", want[i], log);
		at = hit;
	}
	cr_assert_null(strstr(log, "illegal"), "%s", log);
}

Test(eng_session, no_state_log_at_info_level)
{
	cr_assert_str_eq(session_log(VL_LOG_INFO), "");
}

/* ---- pipelining across transactions (RFC 2920 with RFC 3030) ----
 * A small worker: messages in a queue, the session's output taken as the
 * worker takes it, replies fed in chunks as reads bring them (several in
 * one read, or one cut over several), and after each reply the queue's
 * next messages offered to the pipeline (eng_sess_pipe), as worker.c's
 * conn_pipe does. */

#define PM_MAX 8
struct pm {
	struct eng_msg m;
	const char *rcpts[4];
	int status[4], code[4], nres;
	bool maybe[4];
	char stage[4][16];
};

struct pw {
	struct t *t;
	struct pm msgs[PM_MAX];
	struct eng_msg *q[PM_MAX * 4];   /* the pool's queue: a FIFO */
	size_t qh, qt;
	struct eng_msg *done[PM_MAX * 4];
	size_t ndone;
	struct eng_reply_parser rp;
	char out[300000];                /* every byte written, bodies included */
	size_t outlen;
	bool take_output;                /* the worker takes the output at once */
};

static void pm_result(struct eng_msg *m, size_t i, const struct eng_result *r)
{
	struct pm *x = m->arg;
	cr_assert_lt(i, 4);
	cr_assert_eq(x->status[i], -1, "recipient %zu got two results", i);
	x->status[i] = (int)r->status;
	x->code[i] = r->code;
	x->maybe[i] = r->maybe_delivered;
	snprintf(x->stage[i], sizeof x->stage[i], "%s", r->stage);
	x->nres++;
}

static struct pw *pw_new(const char *ehlo, int nmsg, int nrcpt)
{
	struct pw *w = calloc(1, sizeof *w);
	w->t = t_new(TLS_POLICY_NONE, 1);
	w->take_output = true;
	eng_reply_parser_init(&w->rp);
	static const char *names[] = {"a@x.test", "b@x.test", "c@x.test", "d@x.test"};
	for (int k = 0; k < nmsg; k++) {
		struct pm *x = &w->msgs[k];
		for (int i = 0; i < nrcpt; i++)
			x->rcpts[i] = names[i];
		for (int i = 0; i < 4; i++)
			x->status[i] = -1;
		x->m = w->t->m;
		x->m.rcpts = x->rcpts;
		x->m.nrcpt = x->m.pending_ = (size_t)nrcpt;
		x->m.on_result = pm_result;
		x->m.arg = x;
		w->q[w->qt++] = &x->m;
	}
	hello(w->t, ehlo);
	return w;
}

static void pw_free(struct pw *w)
{
	eng_reply_parser_free(&w->rp);
	t_free(w->t);
	free(w);
}

/* The worker's send: commands with the bodies where they go. */
static void pw_take(struct pw *w)
{
	struct eng_sess *s = &w->t->s;
	size_t at = 0;
	char *o = w->out;
	if (!w->take_output)
		return;
	for (size_t b = 0; b <= s->nbodies; b++) {
		size_t to = b < s->nbodies ? s->bodies[b].at : s->out.len;
		cr_assert_lt(w->outlen + to - at, sizeof w->out);
		memcpy(o + w->outlen, s->out.p + at, to - at);
		w->outlen += to - at;
		for (size_t i = 0; b < s->nbodies && i < s->bodies[b].n; i++) {
			cr_assert_lt(w->outlen + s->bodies[b].v[i].iov_len, sizeof w->out);
			memcpy(o + w->outlen, s->bodies[b].v[i].iov_base, s->bodies[b].v[i].iov_len);
			w->outlen += s->bodies[b].v[i].iov_len;
		}
		at = to;
	}
	o[w->outlen] = '\0';
	eng_sess_output_taken(s);
}

/* What was written since the last call. */
static const char *pw_sent(struct pw *w)
{
	static char buf[sizeof ((struct pw *)0)->out];
	pw_take(w);
	memcpy(buf, w->out, w->outlen + 1);
	w->outlen = 0;
	w->out[0] = '\0';
	return buf;
}

/* hand_back, then msg_finished: done, or the next chunk first in the queue */
static void pw_hand_back(struct pw *w)
{
	struct eng_msg *m = w->t->s.finished;
	w->t->s.finished = NULL;
	while (m) {
		struct eng_msg *next = m->next_;
		if (m->pending_ == 0) {
			w->done[w->ndone++] = m;
		} else {
			m->first_ += m->count_;
			m->count_ = 0;
			cr_assert_gt(w->qh, 0);
			w->q[--w->qh] = m;   /* first in the queue */
		}
		m = next;
	}
}

static void pw_act(struct pw *w, enum eng_act act);

static void pw_ready(struct pw *w)
{
	pw_hand_back(w);
	while (w->qh < w->qt) {
		struct eng_msg *m = w->q[w->qh++];
		enum eng_act act = eng_sess_start(&w->t->s, m);
		if (act != ENG_IDLE) {
			pw_act(w, act);
			return;
		}
		pw_hand_back(w);
	}
}

static void pw_act(struct pw *w, enum eng_act act)
{
	w->t->act = act;
	pw_hand_back(w);
	if (act == ENG_WAIT && w->t->s.state == ENG_S_TXN) {
		while (eng_sess_pipe_open(&w->t->s) && w->qh < w->qt) {
			if (!eng_sess_pipe(&w->t->s, w->q[w->qh]))
				break;
			w->qh++;
			pw_hand_back(w);
		}
	}
	if (act == ENG_IDLE)
		pw_ready(w);
	pw_take(w);
}

/* Replies as one read brings them. */
static void pw_feed(struct pw *w, const char *wire)
{
	size_t off = 0, len = strlen(wire);
	while (off < len) {
		struct eng_reply r;
		size_t used;
		int rc = eng_reply_feed(&w->rp, wire + off, len - off, &used, &r);
		off += used;
		cr_assert_geq(rc, 0);
		if (rc == 0)
			break;
		pw_act(w, eng_sess_reply(&w->t->s, &r));
	}
}

#define PIPE_EHLO "250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"
#define TXN1(r) "MAIL FROM:<s@y.test>\r\nRCPT TO:<" r ">\r\nBDAT 19 LAST\r\n" \
	"Subject: t\r\n\r\n.hi\r\n"
#define OK3 "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n"

static void pm_all(struct pm *x, int nrcpt, enum eng_status st, int code, const char *stage,
		   bool maybe)
{
	cr_assert_eq(x->nres, nrcpt);
	for (int i = 0; i < nrcpt; i++) {
		cr_assert_eq(x->status[i], (int)st, "rcpt %d: %d", i, x->status[i]);
		cr_assert_eq(x->code[i], code, "rcpt %d: %d", i, x->code[i]);
		cr_assert_str_eq(x->stage[i], stage);
		cr_assert_eq(x->maybe[i], maybe, "rcpt %d maybe_delivered", i);
	}
}

Test(eng_pipe, three_messages_one_write_replies_in_one_read)
{
	struct pw *w = pw_new(PIPE_EHLO, 3, 1);
	pw_ready(w);
	cr_assert_str_eq(pw_sent(w), TXN1("a@x.test") "RSET\r\n" TXN1("a@x.test")
			 "RSET\r\n" TXN1("a@x.test"), "all three in one write");
	cr_assert_eq(w->t->s.ntxn, 3);
	cr_assert_eq(w->t->s.nmsgs, 3);
	pw_feed(w, OK3 "250 2.0.0 reset\r\n" OK3 "250 2.0.0 reset\r\n" OK3);
	for (int k = 0; k < 3; k++) {
		pm_all(&w->msgs[k], 1, ENG_DELIVERED, 250, "dot", false);
		cr_assert_eq(w->done[k], &w->msgs[k].m, "handed back in order");
	}
	cr_assert_eq(w->ndone, 3);
	cr_assert_str_eq(pw_sent(w), "", "no RSET after the last one's 250");
	cr_assert_eq(w->t->s.state, ENG_S_READY);
	cr_assert_eq(w->t->act, ENG_IDLE);
	pw_free(w);
}

Test(eng_pipe, replies_cut_across_reads)
{
	struct pw *w = pw_new(PIPE_EHLO, 2, 2);
	pw_ready(w);
	const char *want = "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
		"BDAT 19 LAST\r\nSubject: t\r\n\r\n.hi\r\n";
	char both[1024];
	snprintf(both, sizeof both, "%sRSET\r\n%s", want, want);
	cr_assert_str_eq(pw_sent(w), both);
	const char *replies = "250 ok\r\n250 ok\r\n550 5.1.1 no b\r\n250 2.0.0 X\r\n"
		"250 reset\r\n250 ok\r\n250-ok\r\n250 ok\r\n250 ok\r\n451 4.3.0 later\r\n";
	/* one octet a read, then three at a time */
	char one[4] = "";
	for (size_t i = 0; i < 40; i++) {
		one[0] = replies[i];
		pw_feed(w, one);
	}
	for (size_t i = 40; i < strlen(replies); i += 3) {
		snprintf(one, sizeof one, "%.3s", replies + i);
		pw_feed(w, one);
	}
	struct pm *a = &w->msgs[0], *b = &w->msgs[1];
	cr_assert_eq(a->status[0], ENG_DELIVERED);
	cr_assert_eq(a->status[1], ENG_PERMANENT);
	cr_assert_str_eq(a->stage[1], "rcpt");
	cr_assert_eq(b->status[0], ENG_TRANSIENT);
	cr_assert_eq(b->code[0], 451);
	cr_assert_str_eq(b->stage[0], "dot");
	cr_assert_eq(b->nres, 2);
	cr_assert_eq(w->ndone, 2);
	cr_assert_str_eq(pw_sent(w), "RSET\r\n", "the last one refused: RSET as before");
	cr_assert_eq(w->t->s.state, ENG_S_RSET);
	pw_feed(w, "250 ok\r\n");
	cr_assert_eq(w->t->s.state, ENG_S_READY);
	pw_free(w);
}

Test(eng_pipe, the_middle_transaction_fails)
{
	/* MAIL refused for the second: its RCPT and BDAT get 503, the third
	 * goes on behind its own RSET */
	struct pw *w = pw_new(PIPE_EHLO, 3, 1);
	pw_ready(w);
	pw_sent(w);
	pw_feed(w, OK3 "250 reset\r\n550 5.7.1 sender blocked\r\n503 5.5.1 need MAIL\r\n");
	pm_all(&w->msgs[1], 1, ENG_PERMANENT, 550, "mail", false);
	pw_feed(w, "503 5.5.1 no valid recipients\r\n");
	cr_assert_str_eq(pw_sent(w), "", "no RSET of its own: the next one has its RSET");
	cr_assert_eq(w->ndone, 2);
	pw_feed(w, "250 reset\r\n" OK3);
	pm_all(&w->msgs[0], 1, ENG_DELIVERED, 250, "dot", false);
	pm_all(&w->msgs[1], 1, ENG_PERMANENT, 550, "mail", false);
	pm_all(&w->msgs[2], 1, ENG_DELIVERED, 250, "dot", false);
	cr_assert_eq(w->t->s.state, ENG_S_READY);
	pw_free(w);
	/* every RCPT of the second refused: its BDAT gets 554 (the server may
	 * keep its transaction open: the third's RSET closes it) */
	w = pw_new(PIPE_EHLO, 3, 2);
	pw_ready(w);
	pw_sent(w);
	pw_feed(w, "250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 A\r\n"
		"250 reset\r\n250 ok\r\n550 5.1.1 no a\r\n452 4.2.2 full b\r\n"
		"554 5.5.1 no valid recipients\r\n"
		"250 reset\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 C\r\n");
	pm_all(&w->msgs[0], 2, ENG_DELIVERED, 250, "dot", false);
	cr_assert_eq(w->msgs[1].status[0], ENG_PERMANENT);
	cr_assert_eq(w->msgs[1].code[0], 550);
	cr_assert_eq(w->msgs[1].status[1], ENG_TRANSIENT);
	cr_assert_eq(w->msgs[1].code[1], 452);
	cr_assert_eq(w->msgs[1].nres, 2, "one result each");
	pm_all(&w->msgs[2], 2, ENG_DELIVERED, 250, "dot", false);
	cr_assert_str_eq(pw_sent(w), "");
	pw_free(w);
}

Test(eng_pipe, a_421_with_three_outstanding)
{
	struct pw *w = pw_new(PIPE_EHLO, 3, 1);
	pw_ready(w);
	pw_sent(w);
	pw_feed(w, "250 2.1.0 ok\r\n421 4.3.2 shutting down\r\n");
	cr_assert_eq(w->t->act, ENG_CLOSE);
	/* the server closed before it read the others: none maybe delivered */
	for (int k = 0; k < 3; k++)
		cr_assert_eq(w->msgs[k].nres, 1);
	pm_all(&w->msgs[0], 1, ENG_TRANSIENT, 421, "rcpt", false);
	pm_all(&w->msgs[1], 1, ENG_TRANSIENT, 421, "rcpt", false);
	pm_all(&w->msgs[2], 1, ENG_TRANSIENT, 421, "rcpt", false);
	cr_assert_eq(w->ndone, 3);
	cr_assert_eq(w->t->s.ntxn, 0);
	cr_assert_eq(w->t->s.state, ENG_S_CLOSED);
	pw_free(w);
	/* ... after the first's final 250: the second and third fail */
	w = pw_new(PIPE_EHLO, 3, 1);
	pw_ready(w);
	pw_sent(w);
	pw_feed(w, OK3 "421 4.3.2 bye\r\n");
	pm_all(&w->msgs[0], 1, ENG_DELIVERED, 250, "dot", false);
	pm_all(&w->msgs[1], 1, ENG_TRANSIENT, 421, "mail", false);
	pm_all(&w->msgs[2], 1, ENG_TRANSIENT, 421, "mail", false);
	pw_free(w);
}

Test(eng_pipe, silence_with_three_outstanding)
{
	/* the connection drops after the first MAIL's reply: every BDAT LAST
	 * went out unanswered, so each may have been delivered */
	struct pw *w = pw_new(PIPE_EHLO, 3, 1);
	pw_ready(w);
	pw_sent(w);
	pw_feed(w, "250 2.1.0 ok\r\n");
	eng_sess_fail(&w->t->s, eng_sess_stage(&w->t->s), 0, "", "connection lost");
	pw_hand_back(w);
	pm_all(&w->msgs[0], 1, ENG_TRANSIENT, 0, "rcpt", true);
	pm_all(&w->msgs[1], 1, ENG_TRANSIENT, 0, "rcpt", true);
	pm_all(&w->msgs[2], 1, ENG_TRANSIENT, 0, "rcpt", true);
	cr_assert_eq(w->ndone, 3);
	pw_free(w);
	/* one pipelined while a send was in flight and never sent: not that one */
	w = pw_new(PIPE_EHLO, 2, 1);
	w->qt = 1;                    /* the second comes later */
	pw_ready(w);
	pw_sent(w);
	w->take_output = false;       /* a send in flight */
	pw_feed(w, "250 2.1.0 ok\r\n");
	w->qt = 2;
	pw_act(w, ENG_WAIT);          /* the worker offers it after a reply */
	cr_assert_eq(w->t->s.ntxn, 2);
	cr_assert_eq(w->t->s.nbodies, 1, "its BDAT body still in the output");
	eng_sess_fail(&w->t->s, "rcpt", 0, "", "connection lost");
	pw_hand_back(w);
	cr_assert_eq(w->t->s.nbodies, 0, "a failed session's output is dropped");
	cr_assert_eq(w->t->s.out.len, 0);
	pm_all(&w->msgs[0], 1, ENG_TRANSIENT, 0, "rcpt", true);
	pm_all(&w->msgs[1], 1, ENG_TRANSIENT, 0, "rcpt", false);
	pw_free(w);
}

Test(eng_pipe, a_refused_rset_ends_the_session)
{
	struct pw *w = pw_new(PIPE_EHLO, 2, 1);
	pw_ready(w);
	pw_sent(w);
	pw_feed(w, OK3 "502 5.5.2 what\r\n");
	cr_assert_eq(w->t->act, ENG_CLOSE);
	/* its BDAT went out and the server still reads: maybe */
	pm_all(&w->msgs[1], 1, ENG_TRANSIENT, 502, "mail", true);
	pw_free(w);
}

Test(eng_pipe, none_without_pipelining_or_chunking)
{
	/* CHUNKING without PIPELINING: one command at a time, one message */
	struct pw *w = pw_new("250-mx\r\n250 CHUNKING\r\n", 2, 1);
	pw_ready(w);
	cr_assert_str_eq(pw_sent(w), "MAIL FROM:<s@y.test>\r\n");
	cr_assert_not(eng_sess_pipe_open(&w->t->s));
	cr_assert_not(eng_sess_pipe(&w->t->s, &w->msgs[1].m));
	cr_assert_eq(w->msgs[1].m.count_, 0, "m untouched");
	pw_feed(w, "250 ok\r\n");
	cr_assert_str_eq(pw_sent(w), "RCPT TO:<a@x.test>\r\n");
	pw_feed(w, "250 ok\r\n");
	cr_assert_str_eq(pw_sent(w), "BDAT 19 LAST\r\nSubject: t\r\n\r\n.hi\r\n");
	pw_feed(w, "250 ok\r\n");
	cr_assert_str_eq(pw_sent(w), "MAIL FROM:<s@y.test>\r\n", "the next after the last reply");
	pw_free(w);
	/* PIPELINING without CHUNKING: DATA ends a group */
	w = pw_new("250-mx\r\n250 PIPELINING\r\n", 2, 1);
	pw_ready(w);
	cr_assert_str_eq(pw_sent(w), "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
	cr_assert_not(eng_sess_pipe_open(&w->t->s));
	pw_feed(w, "250 ok\r\n250 ok\r\n354 go\r\n");
	cr_assert_not(eng_sess_pipe_open(&w->t->s));
	cr_assert_str_eq(pw_sent(w), "Subject: t\r\n\r\n..hi\r\n.\r\n");
	pw_feed(w, "250 ok\r\n");
	cr_assert_str_eq(pw_sent(w), "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
	pw_free(w);
}

Test(eng_pipe, bounded_in_transactions_and_octets)
{
	struct pw *w = pw_new(PIPE_EHLO, 6, 1);
	pw_ready(w);
	pw_sent(w);
	cr_assert_eq(w->t->s.ntxn, ENG_PIPE_MAX);
	cr_assert_eq(w->qt - w->qh, 2, "the rest wait in the queue");
	pw_feed(w, OK3);
	cr_assert_eq(w->t->s.ntxn, ENG_PIPE_MAX, "one ended, the next went behind");
	cr_assert_str_eq(pw_sent(w), "RSET\r\n" TXN1("a@x.test"));
	pw_free(w);
	/* a body over 64 KB is not pipelined behind another: it waits */
	w = pw_new(PIPE_EHLO, 2, 1);
	static char big[70000];
	memset(big, 'x', sizeof big);
	struct iovec bigv = { big, sizeof big };
	w->msgs[1].m.body = &bigv;
	w->msgs[1].m.nbody = 1;
	w->msgs[1].m.size_ = sizeof big;
	pw_ready(w);
	cr_assert_eq(w->t->s.ntxn, 1);
	cr_assert_eq(w->qt - w->qh, 1);
	pw_sent(w);
	pw_feed(w, OK3);
	cr_assert_str_eq(pw_sent(w), "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\n",
			 "started alone when the session is ready: its BDAT after the replies");
	pw_free(w);
	/* the octets outstanding: ENG_PIPE_OCTETS at most */
	w = pw_new(PIPE_EHLO, 4, 1);
	static char mid[60000];
	memset(mid, 'y', sizeof mid);
	struct iovec midv = { mid, sizeof mid };
	for (int k = 0; k < 4; k++) {
		w->msgs[k].m.body = &midv;
		w->msgs[k].m.nbody = 1;
		w->msgs[k].m.size_ = sizeof mid;
	}
	pw_ready(w);
	cr_assert_eq(w->t->s.ntxn, 4, "4 x 60 KB fit in 256 KB");
	pw_free(w);
	w = pw_new(PIPE_EHLO, 4, 1);
	static char mid2[65536];
	struct iovec mid2v = { mid2, sizeof mid2 };
	for (int k = 0; k < 4; k++) {
		w->msgs[k].m.body = &mid2v;
		w->msgs[k].m.nbody = 1;
		w->msgs[k].m.size_ = sizeof mid2;
	}
	pw_ready(w);
	cr_assert_eq(w->t->s.ntxn, 3, "4 x 64 KB and their commands do not");
	pw_free(w);
}

Test(eng_pipe, split_message_transactions_in_order)
{
	/* 3 recipients, 2 a transaction: the first message's second
	 * transaction goes when its first has ended, ahead of the next message */
	struct pw *w = pw_new(PIPE_EHLO, 2, 3);
	w->t->cfg.max_rcpts_per_txn = 2;
	pw_ready(w);
	const char *two = "MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
		"BDAT 19 LAST\r\nSubject: t\r\n\r\n.hi\r\n";
	const char *one = "MAIL FROM:<s@y.test>\r\nRCPT TO:<c@x.test>\r\n"
		"BDAT 19 LAST\r\nSubject: t\r\n\r\n.hi\r\n";
	char want[2048];
	snprintf(want, sizeof want, "%sRSET\r\n%s", two, two);
	cr_assert_str_eq(pw_sent(w), want, "message 0 (a, b), then message 1 (a, b)");
	pw_feed(w, "250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 A\r\n");
	snprintf(want, sizeof want, "RSET\r\n%s", one);
	cr_assert_str_eq(pw_sent(w), want, "message 0's c behind message 1");
	pw_feed(w, "250 reset\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 B\r\n");
	cr_assert_str_eq(pw_sent(w), "RSET\r\n" TXN1("c@x.test"), "message 1's c");
	pw_feed(w, "250 reset\r\n" OK3 "250 reset\r\n" OK3);
	pm_all(&w->msgs[0], 3, ENG_DELIVERED, 250, "dot", false);
	pm_all(&w->msgs[1], 3, ENG_DELIVERED, 250, "dot", false);
	cr_assert_eq(w->ndone, 2);
	cr_assert_eq(w->t->s.nmsgs, 4, "four transactions");
	pw_free(w);
}

Test(eng_pipe, requiretls_and_size_refused_without_a_command)
{
	struct pw *w = pw_new("250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 100\r\n", 4, 1);
	w->msgs[1].m.require_tls = true;   /* clear text: not here */
	w->msgs[2].m.size_ = 200;          /* over the SIZE limit */
	pw_ready(w);
	cr_assert_str_eq(pw_sent(w), "MAIL FROM:<s@y.test> SIZE=19\r\nRCPT TO:<a@x.test>\r\n"
			 "BDAT 19 LAST\r\nSubject: t\r\n\r\n.hi\r\nRSET\r\n"
			 "MAIL FROM:<s@y.test> SIZE=19\r\nRCPT TO:<a@x.test>\r\n"
			 "BDAT 19 LAST\r\nSubject: t\r\n\r\n.hi\r\n");
	pm_all(&w->msgs[1], 1, ENG_TRANSIENT, 0, "requiretls", false);
	pm_all(&w->msgs[2], 1, ENG_PERMANENT, 552, "size", false);
	cr_assert_eq(w->t->s.ntxn, 2);
	cr_assert_eq(w->t->s.nmsgs, 2, "refused ones are no transaction");
	pw_feed(w, OK3 "250 reset\r\n" OK3);
	pm_all(&w->msgs[0], 1, ENG_DELIVERED, 250, "dot", false);
	pm_all(&w->msgs[3], 1, ENG_DELIVERED, 250, "dot", false);
	pw_free(w);
}

/* The final reply's response time (eng_result.reply_s): from the output
 * holding the body being taken to the reply, on the worker's clock in
 * now_ns; other results carry none. */
Test(eng_session, reply_time_of_the_final_dot)
{
	struct t *t = t_new(TLS_POLICY_NONE, 2);
	hello(t, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
	t->s.now_ns = 1000000000;
	start(t);                              /* BDAT LAST with the body */
	t->s.now_ns = 1001000000;
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "550 5.1.1 no\r\n");
	cr_assert_eq(t->nres, 1);
	cr_assert_eq(t->res[1].reply_s, 0, "a RCPT refusal has none");
	t->s.now_ns = 1002500000;
	reply(t, "250 2.0.0 ok\r\n");
	cr_assert_float_eq(t->res[0].reply_s, 0.0025, 1e-8);
	t_free(t);
	/* DATA: the body goes after the 354, its time from then */
	t = t_new(TLS_POLICY_NONE, 1);
	hello(t, "250-mx\r\n250 PIPELINING\r\n");
	start(t);
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	t->s.now_ns = 7000000000;
	reply(t, "354 go\r\n");
	cr_assert_eq(t->nbodies, 1);
	t->s.now_ns = 7040000000;
	reply(t, "451 4.3.0 later\r\n");
	cr_assert_str_eq(t->res[0].stage, "dot");
	cr_assert_float_eq(t->res[0].reply_s, 0.04, 1e-8, "a refusal is a response too");
	t_free(t);
	/* no clock (now_ns 0): not measured */
	t = t_new(TLS_POLICY_NONE, 1);
	hello(t, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
	start(t);
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	reply(t, "250 ok\r\n");
	cr_assert_eq(t->res[0].status, ENG_DELIVERED);
	cr_assert_eq(t->res[0].reply_s, 0);
	t_free(t);
}
