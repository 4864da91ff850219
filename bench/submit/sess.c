/*
 * The submission client's SMTP session (RFC 5321, 3207 STARTTLS, 4954 AUTH,
 * 2920 PIPELINING) as a pure state machine: replies in, commands out.
 *
 * Commands wait in pend[] with the kind of reply each expects; head is the
 * oldest unanswered, sent how many are on the wire. With PIPELINING a
 * transaction (RSET if one is due, MAIL, every RCPT, DATA) goes out at
 * once; without it, one command at a time, and a refused MAIL or a
 * transaction without an accepted recipient stops before DATA. EHLO,
 * STARTTLS and AUTH are always waited for.
 */
#include "submit.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(struct vs_sess *s, int code, const char *why)
{
	s->failed = s->done = true;
	s->ops.event(s->ops.arg, VS_EV_FAIL, s->id, code, why);
	return -1;
}

static void push(struct vs_sess *s, enum vs_rk kind, int j)
{
	s->pend[s->npend] = (uint8_t)kind;
	s->pend_rcpt[s->npend++] = j;
}

static void append_base64(struct vl_buf *b, const char *data, size_t n)
{
	char *dst = vl_buf_reserve(b, 4 * ((n + 2) / 3) + 1);
	b->len += (size_t)EVP_EncodeBlock((unsigned char *)dst, (const unsigned char *)data,
					  (int)n);
}

static void auth_cmd(struct vs_sess *s, struct vl_buf *out)
{
	const struct vs_sess_cfg *c = s->cfg;
	if (c->mech == VS_MECH_LOGIN) {
		vl_buf_appends(out, "AUTH LOGIN\r\n");
		return;
	}
	size_t u = strlen(c->user), p = strlen(c->pass);
	char *creds = vl_malloc(u + p + 2);
	creds[0] = '\0';
	memcpy(creds + 1, c->user, u);
	creds[1 + u] = '\0';
	memcpy(creds + 2 + u, c->pass, p);
	vl_buf_appends(out, "AUTH PLAIN ");
	append_base64(out, creds, u + p + 2);
	vl_buf_appends(out, "\r\n");
	free(creds);
}

static void emit(struct vs_sess *s, struct vl_buf *out, int i)
{
	char rcpt[512];
	switch ((enum vs_rk)s->pend[i]) {
	case VS_R_EHLO: vl_buf_printf(out, "EHLO %s\r\n", s->cfg->ehlo); break;
	case VS_R_STARTTLS: vl_buf_appends(out, "STARTTLS\r\n"); break;
	case VS_R_AUTH: auth_cmd(s, out); break;
	case VS_R_RSET: vl_buf_appends(out, "RSET\r\n"); break;
	case VS_R_MAIL: vl_buf_printf(out, "MAIL FROM:<%s>\r\n", s->cfg->from); break;
	case VS_R_RCPT:
		vs_rcpt(rcpt, sizeof rcpt, s->id, s->pend_rcpt[i], s->cfg->rcpts, s->cfg->to_domain);
		vl_buf_printf(out, "RCPT TO:<%s>\r\n", rcpt);
		break;
	case VS_R_DATA: vl_buf_appends(out, "DATA\r\n"); break;
	case VS_R_QUIT: vl_buf_appends(out, "QUIT\r\n"); break;
	case VS_R_GREETING: case VS_R_DOT: break;  /* nothing to send */
	}
}

/* Send what may go now: everything with PIPELINING, else the next command
 * once every earlier one is answered. */
static void flush(struct vs_sess *s, struct vl_buf *out)
{
	while (s->sent < s->npend && (s->pipelining || s->sent == s->head))
		emit(s, out, s->sent++);
}

/* Drop the commands not sent yet (a transaction that cannot go on). */
static void drop_unsent(struct vs_sess *s)
{
	s->npend = s->sent;
}

static void start_txn(struct vs_sess *s, struct vl_buf *out)
{
	uint64_t id;
	if (s->msgs >= s->cfg->per_conn || !s->ops.next(s->ops.arg, &id)) {
		push(s, VS_R_QUIT, 0);
		flush(s, out);
		return;
	}
	s->id = id;
	s->in_txn = true;
	s->msgs++;
	s->mail_ok = false;
	s->rcpt_ok = s->refusal = 0;
	if (s->need_rset)
		push(s, VS_R_RSET, 0);
	s->need_rset = false;
	push(s, VS_R_MAIL, 0);
	for (int j = 0; j < s->cfg->rcpts; j++)
		push(s, VS_R_RCPT, j);
	push(s, VS_R_DATA, 0);
	flush(s, out);
}

static void end_txn(struct vs_sess *s, struct vl_buf *out, bool accepted, int code,
		    const char *text)
{
	s->in_txn = false;
	s->ops.event(s->ops.arg, accepted ? VS_EV_ACCEPTED : VS_EV_REFUSED, s->id, code, text);
	if (s->head == s->npend) {
		s->head = s->npend = s->sent = 0;
		start_txn(s, out);
	}
}

/* After an EHLO's 250: STARTTLS, AUTH, or the first transaction. */
static int after_ehlo(struct vs_sess *s, struct vl_buf *out)
{
	const struct vs_sess_cfg *c = s->cfg;
	if (c->tls == VS_TLS_STARTTLS && !s->tls_up) {
		if (!s->starttls)
			return fail(s, 0, "the server does not offer STARTTLS");
		push(s, VS_R_STARTTLS, 0);
	} else if (c->user) {
		bool offered = c->mech == VS_MECH_PLAIN ? s->auth_plain : s->auth_login;
		if (!offered)
			return fail(s, 0, c->mech == VS_MECH_PLAIN ? "the server does not offer AUTH PLAIN"
				    : "the server does not offer AUTH LOGIN");
		push(s, VS_R_AUTH, 0);
	} else {
		s->ops.event(s->ops.arg, VS_EV_READY, 0, 0, "");
		start_txn(s, out);
		return 0;
	}
	flush(s, out);
	return 0;
}

static int on_auth(struct vs_sess *s, struct vl_buf *out, int code, const char *text)
{
	if (code == 334 && s->cfg->mech == VS_MECH_LOGIN && s->login_step < 2) {
		const char *v = s->login_step++ ? s->cfg->pass : s->cfg->user;
		append_base64(out, v, strlen(v));
		vl_buf_appends(out, "\r\n");
		return 1;  /* the same AUTH still waits for its end */
	}
	if (code == 235) {
		s->authed = true;
		s->ops.event(s->ops.arg, VS_EV_READY, 0, code, text);
		return 0;
	}
	/* 535 and the like: said once, then QUIT politely. */
	s->ops.event(s->ops.arg, VS_EV_AUTH_REFUSED, 0, code, text);
	return 2;
}

/* A transaction's reply (RSET, MAIL, RCPT, DATA, the final dot). */
static int on_txn(struct vs_sess *s, struct vl_buf *out, enum vs_rk kind, int code,
		  const char *text)
{
	bool ok = code >= 200 && code < 300;
	switch (kind) {
	case VS_R_RSET:
		return ok ? 0 : fail(s, code, "RSET refused");
	case VS_R_MAIL:
		s->mail_ok = ok;
		if (!ok && !s->refusal)
			s->refusal = code;
		if (!ok && !s->pipelining) {
			drop_unsent(s);
			end_txn(s, out, false, code, text);
		}
		return 0;
	case VS_R_RCPT:
		if (ok) {
			s->rcpt_ok++;
			return 0;
		}
		s->ops.event(s->ops.arg, VS_EV_RCPT_REFUSED, s->id, code, text);
		if (!s->refusal)
			s->refusal = code;
		/* Unpipelined, the last RCPT decides whether DATA goes out. */
		if (!s->pipelining && !s->rcpt_ok && s->sent < s->npend &&
		    s->pend[s->sent] == VS_R_DATA) {
			drop_unsent(s);
			s->need_rset = s->mail_ok;
			end_txn(s, out, false, code, text);
		}
		return 0;
	case VS_R_DATA:
		if (code == 354) {
			/* A server that says 354 with no recipient gets an empty message. */
			if (s->mail_ok && s->rcpt_ok) {
				s->ops.body(s->ops.arg, s->id, out);
				s->ops.event(s->ops.arg, VS_EV_DOT, s->id, 0, "");
			} else {
				vl_buf_appends(out, ".\r\n");
			}
			push(s, VS_R_DOT, 0);
			s->sent = s->npend;
			return 0;
		}
		s->need_rset = s->mail_ok;
		end_txn(s, out, false, s->refusal ? s->refusal : code, text);
		return 0;
	case VS_R_DOT:
		if (!s->mail_ok || !s->rcpt_ok)  /* the empty message above */
			end_txn(s, out, false, s->refusal ? s->refusal : 554, text);
		else
			end_txn(s, out, ok, code, text);
		return 0;
	default:
		return 0;
	}
}

static int on_reply(struct vs_sess *s, struct vl_buf *out, int code, const char *text)
{
	if (s->head == s->sent)
		return fail(s, code, code == 421 ? text : "a reply to no command");
	enum vs_rk kind = (enum vs_rk)s->pend[s->head];
	int rc = 0;
	if (code == 421 && kind != VS_R_QUIT)
		return fail(s, code, text);
	if (kind == VS_R_AUTH && (rc = on_auth(s, out, code, text)) == 1)
		return 0;
	s->head++;
	switch (kind) {
	case VS_R_GREETING:
		if (code != 220)
			return fail(s, code, text);
		push(s, VS_R_EHLO, 0);
		break;
	case VS_R_EHLO:
		if (code != 250)
			return fail(s, code, text);
		if (after_ehlo(s, out) < 0)
			return -1;
		break;
	case VS_R_STARTTLS:
		if (code != 220)
			return fail(s, code, text);
		s->head = s->npend = s->sent = 0;
		s->tls_wait = true;
		s->ops.event(s->ops.arg, VS_EV_STARTTLS, 0, code, text);
		return 0;
	case VS_R_AUTH:
		if (rc == 2)
			push(s, VS_R_QUIT, 0);
		else
			start_txn(s, out);
		break;
	case VS_R_QUIT:
		s->done = true;
		s->ops.event(s->ops.arg, VS_EV_CLOSE, 0, code, text);
		return 0;
	default:
		if (on_txn(s, out, kind, code, text) < 0)
			return -1;
	}
	if (s->head == s->npend)
		s->head = s->npend = s->sent = 0;
	flush(s, out);
	return 0;
}

static bool word_is(const char *p, const char *w)
{
	size_t n = strlen(w);
	return strncasecmp(p, w, n) == 0 && (p[n] == '\0' || p[n] == ' ' || p[n] == '=');
}

/* An EHLO reply's keyword line (not its first line, the server's name). */
static void ehlo_keyword(struct vs_sess *s, const char *kw)
{
	if (word_is(kw, "PIPELINING"))
		s->pipelining = true;
	else if (word_is(kw, "STARTTLS"))
		s->starttls = true;
	else if (word_is(kw, "AUTH"))  /* "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN" */
		for (const char *p = kw + 4; *p; p += strcspn(p, " ")) {
			p += strspn(p, " =");
			s->auth_plain |= word_is(p, "PLAIN");
			s->auth_login |= word_is(p, "LOGIN");
		}
}

/* One reply line, CRLF stripped: "NNN-text" or "NNN text" (or "NNN"). */
static int on_line(struct vs_sess *s, struct vl_buf *out)
{
	char *l = s->line;
	if (s->len && l[s->len - 1] == '\r')
		s->len--;
	l[s->len] = '\0';
	if (s->len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' || l[2] < '0' ||
	    l[2] > '9' || (s->len > 3 && l[3] != ' ' && l[3] != '-'))
		return fail(s, 0, "a malformed reply line");
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	bool last = s->len == 3 || l[3] == ' ';
	const char *text = s->len > 4 ? l + 4 : "";
	if (!s->code) {
		s->code = code;
		s->ehlo_reply = s->head < s->sent && s->pend[s->head] == VS_R_EHLO && code == 250;
		if (s->ehlo_reply)  /* a new EHLO forgets the old offers (RFC 3207 4.2) */
			s->pipelining = s->starttls = s->auth_plain = s->auth_login = false;
	} else if (code != s->code) {
		return fail(s, 0, "a multiline reply whose codes differ");
	} else if (s->ehlo_reply) {
		ehlo_keyword(s, text);
	}
	if (!last)
		return 0;
	s->code = 0;
	return on_reply(s, out, code, text);
}

void vs_sess_init(struct vs_sess *s, const struct vs_sess_cfg *cfg,
		  const struct vs_sess_ops *ops)
{
	memset(s, 0, sizeof *s);
	s->cfg = cfg;
	s->ops = *ops;
	s->tls_up = cfg->tls == VS_TLS_IMPLICIT;
	push(s, VS_R_GREETING, 0);
	s->sent = 1;
}

int vs_sess_input(struct vs_sess *s, const char *data, size_t n, struct vl_buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (s->done)  /* after the 221 or a failure: the rest is not read */
			return s->failed ? -1 : 1;
		if (s->tls_wait)  /* between STARTTLS's 220 and the handshake */
			return fail(s, 0, "octets after STARTTLS's 220 (an injection?)");
		if (data[i] != '\n') {
			if (s->len >= VS_LINE_MAX)
				return fail(s, 0, "a reply line over 2048 octets");
			s->line[s->len++] = data[i];
			continue;
		}
		int rc = on_line(s, out);
		s->len = 0;
		if (rc < 0)
			return -1;
	}
	return s->done ? (s->failed ? -1 : 1) : 0;
}

void vs_sess_tls_up(struct vs_sess *s, struct vl_buf *out)
{
	s->tls_up = true;
	s->tls_wait = s->starttls = false;
	push(s, VS_R_EHLO, 0);
	flush(s, out);
}

bool vs_sess_busy(const struct vs_sess *s, uint64_t *id)
{
	if (s->in_txn)
		*id = s->id;
	return s->in_txn;
}

int vs_rcpt(char *out, size_t len, uint64_t id, int j, int rcpts, const char *domain)
{
	return snprintf(out, len, "u%010llu@%s",
			(unsigned long long)(id * (uint64_t)rcpts + (uint64_t)j), domain);
}
