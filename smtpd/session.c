/*
 * The SMTP server session: client bytes in, replies out. No I/O here, so
 * the protocol can be unit-tested byte by byte. What is accepted is the
 * hooks' call (smtpd.h); the protocol itself is decided here.
 */
#include "smtpd.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

enum { D_BOL, D_MID, D_DOT, D_DOTCR }; /* DATA scanner states */

#define MAX_PATH 256 /* RFC 5321 4.5.3.1.3, brackets included */

static void txn_reset(struct smtpd_sess *s)
{
	s->in_mail = false;
	s->mail_from[0] = '\0';
	s->body = NULL;
	s->smtputf8 = s->chunking = s->requiretls = false;
	vl_buf_reset(&s->rcpts);
	s->nrcpt = 0;
	vl_buf_reset(&s->msg);
	vl_buf_shrink(&s->msg, 1 << 16);
	s->msg_size = 0;
	s->data_long_line = s->data_too_big = s->data_bad_eol = s->data_nul = false;
	s->scan_cr = false;
}

void smtpd_sess_init(struct smtpd_sess *s, struct smtpd_ctx *ctx, struct vl_buf *out)
{
	memset(s, 0, sizeof *s);
	s->ctx = ctx;
	s->out = out;
	vl_buf_init(&s->rcpts);
	vl_buf_init(&s->msg);
}

void smtpd_sess_free(struct smtpd_sess *s)
{
	const struct smtpd_hooks *h = s->ctx ? s->ctx->hooks : NULL;

	if (h && h->closed)
		h->closed(s->ctx->hook_arg, s);
	vl_buf_free(&s->rcpts);
	vl_buf_free(&s->msg);
}

/* ---- replies ---- */

static void count_reply(struct smtpd_sess *s, int code)
{
	if (code >= 400 && code < 500)
		SMTPD_STAT_ADD(s->ctx->stats, replies_4xx, 1);
	else if (code >= 500)
		SMTPD_STAT_ADD(s->ctx->stats, replies_5xx, 1);
	if (code == 421)
		s->action = SMTPD_CLOSE;
}

static void reply(struct smtpd_sess *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reply(struct smtpd_sess *s, int code, const char *fmt, ...)
{
	va_list ap;

	/* Formatted once, straight into the reply buffer. */
	vl_buf_printf(s->out, "%d ", code);
	va_start(ap, fmt);
	vl_buf_vprintf(s->out, fmt, ap);
	va_end(ap);
	vl_buf_append(s->out, "\r\n", 2);
	count_reply(s, code);
}

/* A client's protocol error; too many and the session ends, as Postfix's
 * hard error limit does, so a confused client cannot spin forever. */
static void client_error(struct smtpd_sess *s, int code, const char *text)
{
	reply(s, code, "%s", text);
	SMTPD_STAT_ADD(s->ctx->stats, errors, 1);
	if (++s->errors >= SMTPD_MAX_ERRORS && s->action == SMTPD_OK) {
		reply(s, 421, "4.7.0 %s Error: too many errors", s->ctx->conf->hostname);
	}
}

/* ---- hooks ---- */

static void send_failure(struct smtpd_sess *s, enum smtpd_stage st, const char *wire,
			 int code)
{
	vl_buf_appends(s->out, wire);
	count_reply(s, code);
	if (st == SMTPD_ST_CONNECT && code >= 500)
		s->noservice = true;
	else if (st == SMTPD_ST_CONNECT)
		s->action = SMTPD_CLOSE;
}

static void drop(struct smtpd_sess *s)
{
	s->action = SMTPD_DROP;
	SMTPD_STAT_ADD(s->ctx->stats, drops, 1);
}

/* A verdict other than DEFAULT or a success text, carried out. Returns
 * true when the command was answered by it. */
static bool carry_out(struct smtpd_sess *s, enum smtpd_stage st, struct smtpd_verdict v,
		      const char **custom)
{
	switch (v.kind) {
	case SMTPD_V_DEFAULT:
	case SMTPD_V_PENDING: /* only the message and AUTH hooks may wait */
		return false;
	case SMTPD_V_DROP: drop(s); return true;
	case SMTPD_V_STALL: s->state = SMTPD_S_STALL; return true;
	case SMTPD_V_RAW: vl_buf_appends(s->out, v.text ? v.text : ""); return true;
	case SMTPD_V_REPLY:
		if (v.code < 400) {
			*custom = v.text;
			return false;
		}
		send_failure(s, st, v.text ? v.text : "554 5.3.0 Error\r\n", v.code);
		return true;
	}
	return false;
}

/* The check hook's say on a command. Returns true when the command was
 * answered here; *custom gets a hook's text for a successful reply. */
static bool intercept(struct smtpd_sess *s, enum smtpd_stage st, const char *arg,
		      const char **custom)
{
	const struct smtpd_hooks *h = s->ctx->hooks;

	*custom = NULL;
	if (!h || !h->check)
		return false;
	return carry_out(s, st, h->check(s->ctx->hook_arg, s, st, arg), custom);
}

/* ---- greeting, timeout, TLS ---- */

enum smtpd_action smtpd_sess_greet(struct smtpd_sess *s)
{
	const struct smtpd_conf *c = s->ctx->conf;
	const char *custom;

	s->greeted = true;
	if (c->max_conns && atomic_load_explicit(s->ctx->conns_open,
						 memory_order_relaxed) > c->max_conns) {
		SMTPD_STAT_ADD(s->ctx->stats, conns_refused, 1);
		reply(s, 421, "4.7.0 %s Error: too many connections", c->hostname);
		return s->action;
	}
	if (intercept(s, SMTPD_ST_CONNECT, NULL, &custom))
		return s->action;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 220, "%s ESMTP %s", c->hostname, c->banner ? c->banner : "");
	return s->action;
}

void smtpd_sess_timeout(struct smtpd_sess *s)
{
	SMTPD_STAT_ADD(s->ctx->stats, timeouts, 1);
	reply(s, 421, "4.4.2 %s Error: timeout exceeded", s->ctx->conf->hostname);
}

void smtpd_sess_tls_started(struct smtpd_sess *s, const char *version,
			   const char *cipher)
{
	txn_reset(s);
	s->helo = s->ehlo = false;
	s->helo_name[0] = '\0';
	s->tls = true;
	s->tls_version = version;
	s->tls_cipher = cipher;
	s->action = SMTPD_OK;
	SMTPD_STAT_ADD(s->ctx->stats, tls_sessions, 1);
}

/* ---- address parsing ---- */

static bool has_8bit(const char *p)
{
	for (; *p; p++)
		if ((unsigned char)*p >= 0x80)
			return true;
	return false;
}

/* Parse "<path>" (RFC 5321 4.1.2) from *p into out, without brackets and
 * without a source route. Advances *p past '>'. */
static int parse_path(const char **p, char *out, size_t outlen)
{
	const char *q = *p;
	size_t n = 0;
	bool quoted = false;

	while (*q == ' ')
		q++; /* "MAIL FROM: <a@b>" is common enough to tolerate */
	if (*q++ != '<')
		return -1;
	if (*q == '@') { /* obsolete source route: accept and ignore */
		q = strchr(q, ':');
		if (!q)
			return -1;
		q++;
	}
	for (;; q++) {
		unsigned char ch = (unsigned char)*q;
		if (!quoted && ch == '>')
			break;
		if (ch == '\0' || ch < 0x20 || ch == 0x7f || (!quoted && ch == ' '))
			return -1;
		if (ch == '"')
			quoted = !quoted;
		/* A quoted-pair keeps its backslash; the next octet is taken
		 * literally, so an escaped quote does not end the string. */
		if (quoted && ch == '\\' && q[1] >= 0x20 && q[1] != 0x7f) {
			if (n + 1 >= outlen)
				return -1;
			out[n++] = (char)ch;
			ch = (unsigned char)*++q;
		}
		if (n + 1 >= outlen || n + 1 > MAX_PATH - 2)
			return -1;
		out[n++] = (char)ch;
	}
	out[n] = '\0';
	*p = q + 1;
	if (n == 0)
		return 0;
	const char *at = strrchr(out, '@');
	if (!at)
		return strcasecmp(out, "postmaster") == 0 ? 0 : -1;
	if (at == out || at[1] == '\0' || at[1] == '.')
		return -1;
	return 0;
}

/* Case-insensitive "FROM:" / "TO:" prefix. */
static const char *after_prefix(const char *arg, const char *prefix)
{
	size_t n = strlen(prefix);
	return arg && strncasecmp(arg, prefix, n) == 0 ? arg + n : NULL;
}

/* ---- commands ---- */

static void cmd_helo(struct smtpd_sess *s, const char *arg, bool extended)
{
	const struct smtpd_conf *c = s->ctx->conf;
	const char *custom;

	if (extended && (c->disabled & SMTPD_NO_EHLO)) {
		client_error(s, 502, "5.5.1 Error: command not implemented");
		return;
	}
	if (!arg || !*arg || strlen(arg) >= sizeof s->helo_name) {
		client_error(s, 501, extended ? "5.5.4 Syntax: EHLO hostname"
					      : "5.5.4 Syntax: HELO hostname");
		return;
	}
	txn_reset(s);
	if (intercept(s, SMTPD_ST_HELO, arg, &custom))
		return;
	s->helo = true;
	s->ehlo = extended;
	snprintf(s->helo_name, sizeof s->helo_name, "%s", arg);
	if (custom) {
		vl_buf_appends(s->out, custom);
		return;
	}
	if (!extended) {
		reply(s, 250, "%s", c->hostname);
		return;
	}
	vl_buf_printf(s->out, "250-%s greets %s\r\n", c->hostname, arg);
	if (!(c->disabled & SMTPD_NO_PIPELINING))
		vl_buf_appends(s->out, "250-PIPELINING\r\n");
	if (!(c->disabled & SMTPD_NO_SIZE))
		vl_buf_printf(s->out, "250-SIZE %llu\r\n", (unsigned long long)c->max_size);
	if (!(c->disabled & SMTPD_NO_8BITMIME))
		vl_buf_appends(s->out, "250-8BITMIME\r\n");
	if (!(c->disabled & SMTPD_NO_SMTPUTF8))
		vl_buf_appends(s->out, "250-SMTPUTF8\r\n");
	if (c->starttls && !s->tls)
		vl_buf_appends(s->out, "250-STARTTLS\r\n");
	if (c->auth && s->tls)
		vl_buf_appends(s->out, "250-AUTH PLAIN LOGIN\r\n");
	if (c->requiretls && s->tls)
		vl_buf_appends(s->out, "250-REQUIRETLS\r\n");
	if (!(c->disabled & SMTPD_NO_CHUNKING))
		vl_buf_appends(s->out, "250-CHUNKING\r\n");
	vl_buf_appends(s->out, "250 ENHANCEDSTATUSCODES\r\n");
}

/* MAIL parameters (RFC 1870, 6152, 6531, 8689). Returns false after
 * replying. REQUIRETLS is known only where it is offered: with
 * --requiretls, inside TLS. */
static bool mail_params(struct smtpd_sess *s, const char *p)
{
	char param[128];

	while (*p) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");
		if (n == 0)
			break;
		if (n >= sizeof param || !s->ehlo) {
			client_error(s, 555, "5.5.4 Unsupported parameter");
			return false;
		}
		memcpy(param, p, n);
		param[n] = '\0';
		p += n;
		uint64_t size;
		unsigned off = s->ctx->conf->disabled;
		if ((off & SMTPD_NO_SIZE && !strncasecmp(param, "SIZE=", 5)) ||
		    (off & SMTPD_NO_8BITMIME && !strncasecmp(param, "BODY=", 5)) ||
		    (off & SMTPD_NO_SMTPUTF8 && !strcasecmp(param, "SMTPUTF8"))) {
			client_error(s, 555, "5.5.4 Unsupported parameter");
			return false;
		}
		if (strncasecmp(param, "SIZE=", 5) == 0) {
			if (vl_parse_u64(param + 5, &size) < 0) {
				client_error(s, 501, "5.5.4 Bad SIZE parameter");
				return false;
			}
			if (size > s->ctx->conf->max_size) {
				reply(s, 552, "5.3.4 Message size exceeds fixed limit");
				return false;
			}
		} else if (strcasecmp(param, "BODY=8BITMIME") == 0) {
			s->body = "8BITMIME";
		} else if (strcasecmp(param, "BODY=7BIT") == 0) {
			s->body = "7BIT";
		} else if (strncasecmp(param, "BODY=", 5) == 0) {
			client_error(s, 501, "5.5.4 Bad BODY parameter");
			return false;
		} else if (strcasecmp(param, "SMTPUTF8") == 0) {
			s->smtputf8 = true;
		} else if (!strcasecmp(param, "REQUIRETLS") && s->ctx->conf->requiretls &&
			   s->tls) {
			s->requiretls = true;
		} else {
			client_error(s, 555, "5.5.4 Unsupported parameter");
			return false;
		}
	}
	return true;
}

static void cmd_mail(struct smtpd_sess *s, const char *arg)
{
	const char *p = after_prefix(arg, "FROM:");
	char addr[MAX_PATH];
	const char *custom;

	if (!s->helo) {
		client_error(s, 503, "5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->in_mail) {
		client_error(s, 503, "5.5.1 Error: nested MAIL command");
		return;
	}
	if (s->ctx->conf->auth && !s->tls) {
		reply(s, 530, "5.7.0 Must issue a STARTTLS command first");
		return;
	}
	if (s->ctx->conf->auth && !s->auth_user[0]) {
		reply(s, 530, "5.7.0 Authentication required");
		return;
	}
	if (!p) {
		client_error(s, 501, "5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (parse_path(&p, addr, sizeof addr) < 0 || (*p && *p != ' ')) {
		client_error(s, 501, "5.1.7 Bad sender address syntax");
		return;
	}
	s->body = NULL;
	s->smtputf8 = s->requiretls = false;
	if (!mail_params(s, p))
		return;
	if (has_8bit(addr) && !s->smtputf8) {
		reply(s, 553, "5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	}
	if (intercept(s, SMTPD_ST_MAIL, addr, &custom))
		return;
	s->in_mail = true;
	snprintf(s->mail_from, sizeof s->mail_from, "%s", addr);
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 250, "2.1.0 Ok");
}

static void cmd_rcpt(struct smtpd_sess *s, const char *arg)
{
	const char *p = after_prefix(arg, "TO:");
	char addr[MAX_PATH];
	const char *custom;

	if (!s->in_mail) {
		client_error(s, 503, "5.5.1 Error: need MAIL command");
		return;
	}
	if (!p) {
		client_error(s, 501, "5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (parse_path(&p, addr, sizeof addr) < 0 || !addr[0]) {
		client_error(s, 501, "5.1.3 Bad recipient address syntax");
		return;
	}
	if (*p) {
		client_error(s, 555, "5.5.4 Unsupported parameter");
		return;
	}
	if (has_8bit(addr) && !s->smtputf8) {
		reply(s, 553, "5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	}
	if ((uint64_t)s->nrcpt >= s->ctx->conf->max_rcpts) {
		reply(s, 452, "4.5.3 Error: too many recipients");
		return;
	}
	if (intercept(s, SMTPD_ST_RCPT, addr, &custom))
		return;
	vl_buf_append(&s->rcpts, addr, strlen(addr) + 1);
	s->nrcpt++;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 250, "2.1.5 Ok");
}

static void start_message(struct smtpd_sess *s)
{
	vl_buf_reset(&s->msg);
	s->msg_size = 0;
	s->data_line = 0;
	s->data_cr = false;
	s->data_long_line = s->data_too_big = false;
	s->dstate = D_BOL;
}

static bool txn_ready(struct smtpd_sess *s)
{
	if (!s->in_mail) {
		client_error(s, 503, "5.5.1 Error: need MAIL command");
		return false;
	}
	if (s->nrcpt == 0) {
		client_error(s, 554, "5.5.1 Error: no valid recipients");
		return false;
	}
	return true;
}

static void cmd_data(struct smtpd_sess *s, const char *arg)
{
	const char *custom;

	if (arg) {
		client_error(s, 501, "5.5.4 Syntax: DATA");
		return;
	}
	if (s->chunking) {
		client_error(s, 503, "5.5.1 Error: DATA after BDAT");
		return;
	}
	if (!txn_ready(s))
		return;
	if (intercept(s, SMTPD_ST_DATA, NULL, &custom))
		return;
	start_message(s);
	s->state = SMTPD_S_DATA;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 354, "End data with <CR><LF>.<CR><LF>");
}

static void bdat_chunk_done(struct smtpd_sess *s);

static void cmd_bdat(struct smtpd_sess *s, const char *arg)
{
	char num[32];
	uint64_t n;
	size_t len = arg ? strcspn(arg, " ") : 0;
	const char *rest = arg ? arg + len : NULL;

	if (s->ctx->conf->disabled & SMTPD_NO_CHUNKING) {
		client_error(s, 502, "5.5.1 Error: command not implemented");
		s->action = SMTPD_CLOSE; /* a chunk may follow: cannot go on */
		return;
	}
	/* Without a size we cannot find the next command in the stream. */
	if (!arg || len == 0 || len >= sizeof num) {
		client_error(s, 501, "5.5.4 Syntax: BDAT size [LAST]");
		s->action = SMTPD_CLOSE;
		return;
	}
	memcpy(num, arg, len);
	num[len] = '\0';
	while (rest && *rest == ' ')
		rest++;
	if (vl_parse_u64(num, &n) < 0 || (*rest && strcasecmp(rest, "LAST") != 0)) {
		client_error(s, 501, "5.5.4 Syntax: BDAT size [LAST]");
		s->action = SMTPD_CLOSE;
		return;
	}
	/* RFC 3030: a chunk is always read, even when it will be refused. */
	s->bdat_discard = !s->in_mail || s->nrcpt == 0;
	if (!s->bdat_discard && !s->chunking) {
		start_message(s);
		s->chunking = true;
	}
	s->bdat_left = n;
	s->bdat_last = *rest != '\0';
	s->state = SMTPD_S_BDAT;
	if (n == 0)
		bdat_chunk_done(s);
}

static void cmd_starttls(struct smtpd_sess *s, const char *arg)
{
	const char *custom;

	if (arg) {
		client_error(s, 501, "5.5.4 Syntax: STARTTLS");
		return;
	}
	if (!s->ctx->conf->starttls) {
		client_error(s, 502, "5.5.1 Error: command not implemented");
		return;
	}
	if (s->tls) {
		client_error(s, 503, "5.5.1 Error: TLS already active");
		return;
	}
	if (intercept(s, SMTPD_ST_STARTTLS, NULL, &custom))
		return;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 220, "2.0.0 Ready to start TLS");
	s->action = SMTPD_STARTTLS;
}

/* RSET, NOOP, QUIT, VRFY: the simple ones. */
static void cmd_simple(struct smtpd_sess *s, enum smtpd_stage st, const char *arg)
{
	const char *custom;

	if ((st == SMTPD_ST_RSET || st == SMTPD_ST_QUIT) && arg) {
		client_error(s, 501, "5.5.4 Syntax: no parameters allowed");
		return;
	}
	if (st == SMTPD_ST_VRFY && !arg) {
		client_error(s, 501, "5.5.4 Syntax: VRFY address");
		return;
	}
	if (intercept(s, st, arg, &custom))
		return;
	if (st == SMTPD_ST_RSET)
		txn_reset(s);
	if (custom)
		vl_buf_appends(s->out, custom);
	else if (st == SMTPD_ST_QUIT)
		reply(s, 221, "2.0.0 Bye");
	else if (st == SMTPD_ST_VRFY)
		reply(s, 252, "2.0.0 Cannot VRFY user, but will accept message");
	else
		reply(s, 250, "2.0.0 Ok");
	if (st == SMTPD_ST_QUIT)
		s->action = SMTPD_CLOSE;
}

/* ---- AUTH PLAIN and LOGIN (RFC 4954), only inside TLS ---- */

enum { AUTH_NONE, AUTH_PLAIN, AUTH_USER, AUTH_PASS };

/* Base64 to bytes; -1 if malformed. */
static int b64_decode(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);

	if (n % 4 || (n / 4) * 3 >= outlen)
		return -1;
	int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
	if (len < 0)
		return -1;
	if (n && in[n - 1] == '=')
		len--;
	if (n > 1 && in[n - 2] == '=')
		len--;
	out[len] = '\0';
	return len;
}

static void auth_refused(struct smtpd_sess *s, const char *text)
{
	SMTPD_STAT_ADD(s->ctx->stats, auth_failed, 1);
	if (text)
		vl_buf_appends(s->out, text), count_reply(s, 535);
	else
		reply(s, 535, "5.7.8 Error: authentication failed");
}

static void auth_granted(struct smtpd_sess *s, const char *user, const char *text)
{
	SMTPD_STAT_ADD(s->ctx->stats, auth_ok, 1);
	snprintf(s->auth_user, sizeof s->auth_user, "%s", user);
	if (text)
		vl_buf_appends(s->out, text);
	else
		reply(s, 235, "2.7.0 Authentication successful");
}

/* The credentials go to the auth hook, which may answer later. */
static void auth_result(struct smtpd_sess *s, const char *user, const char *pass)
{
	const struct smtpd_hooks *h = s->ctx->hooks;
	struct smtpd_verdict v = { SMTPD_V_DEFAULT, 0, NULL };

	s->auth_step = AUTH_NONE;
	if (h && h->auth && *user)
		v = h->auth(s->ctx->hook_arg, s, user, pass);
	if (v.kind == SMTPD_V_PENDING) {
		snprintf(s->wait_user, sizeof s->wait_user, "%s", user);
		s->wait_stage = SMTPD_ST_COUNT;
		s->state = SMTPD_S_WAIT;
		s->action = SMTPD_WAIT;
	} else if (v.kind == SMTPD_V_REPLY && v.code >= 200 && v.code < 300) {
		auth_granted(s, user, v.text);
	} else if (v.kind == SMTPD_V_DROP) {
		drop(s);
	} else {
		auth_refused(s, v.kind == SMTPD_V_REPLY ? v.text : NULL);
	}
}

static void auth_plain(struct smtpd_sess *s, const char *b64)
{
	char buf[768];
	int n = b64_decode(b64, buf, sizeof buf);
	/* authzid NUL authcid NUL passwd */
	char *user = n > 0 ? memchr(buf, '\0', (size_t)n) : NULL;
	char *pass = user ? memchr(user + 1, '\0', (size_t)(buf + n - user - 1)) : NULL;

	if (!pass) {
		s->auth_step = AUTH_NONE;
		client_error(s, 501, "5.5.2 Error: malformed AUTH PLAIN response");
		return;
	}
	auth_result(s, user + 1, pass + 1);
}

/* A line of an AUTH exchange in progress. */
static void auth_line(struct smtpd_sess *s, const char *line)
{
	char user[256], buf[256];

	if (strcmp(line, "*") == 0) {
		s->auth_step = AUTH_NONE;
		client_error(s, 501, "5.7.0 Error: authentication cancelled");
		return;
	}
	if (s->auth_step == AUTH_PLAIN) {
		auth_plain(s, line);
		return;
	}
	if (b64_decode(line, buf, sizeof buf) < 0) {
		s->auth_step = AUTH_NONE;
		client_error(s, 501, "5.5.2 Error: malformed base64");
		return;
	}
	if (s->auth_step == AUTH_USER) {
		snprintf(s->auth_user, sizeof s->auth_user, "%s", buf);
		s->auth_step = AUTH_PASS;
		reply(s, 334, "UGFzc3dvcmQ6");
		return;
	}
	snprintf(user, sizeof user, "%s", s->auth_user);
	s->auth_user[0] = '\0';
	auth_result(s, user, buf);
}

static void cmd_auth(struct smtpd_sess *s, const char *arg)
{
	char mech[32] = "";
	const char *resp = NULL;

	if (!s->tls) {
		client_error(s, 538, "5.7.11 Error: encryption required for authentication");
		return;
	}
	if (!s->ehlo || s->in_mail || s->auth_user[0]) {
		client_error(s, 503, "5.5.1 Error: AUTH not allowed now");
		return;
	}
	if (arg) {
		size_t n = strcspn(arg, " ");
		snprintf(mech, sizeof mech, "%.*s", (int)(n < 31 ? n : 31), arg);
		resp = arg[n] ? arg + n + 1 : NULL;
	}
	if (strcasecmp(mech, "PLAIN") == 0) {
		s->auth_step = AUTH_PLAIN;
		if (resp)
			auth_plain(s, resp);
		else
			reply(s, 334, "%s", "");
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		/* the user name may come at once, as many clients send it */
		s->auth_step = AUTH_USER;
		if (resp)
			auth_line(s, resp);
		else
			reply(s, 334, "VXNlcm5hbWU6");
	} else {
		client_error(s, 504, "5.5.4 Error: unsupported authentication mechanism");
	}
}

static void command(struct smtpd_sess *s, char *line)
{
	char *arg;

	if (s->auth_step != AUTH_NONE) {
		auth_line(s, line);
		return;
	}
	arg = strchr(line, ' ');

	if (arg) {
		*arg++ = '\0';
		if (!*arg)
			arg = NULL;
	}
	if (s->noservice) {
		if (strcasecmp(line, "QUIT") == 0)
			cmd_simple(s, SMTPD_ST_QUIT, NULL);
		else if (strcasecmp(line, "BDAT") == 0)
			cmd_bdat(s, arg); /* its chunk is read and refused, never run */
		else
			client_error(s, 503, "5.5.1 Error: no SMTP service here");
		return;
	}
	if (strcasecmp(line, "EHLO") == 0)
		cmd_helo(s, arg, true);
	else if (strcasecmp(line, "HELO") == 0)
		cmd_helo(s, arg, false);
	else if (strcasecmp(line, "MAIL") == 0)
		cmd_mail(s, arg);
	else if (strcasecmp(line, "RCPT") == 0)
		cmd_rcpt(s, arg);
	else if (strcasecmp(line, "DATA") == 0)
		cmd_data(s, arg);
	else if (strcasecmp(line, "BDAT") == 0)
		cmd_bdat(s, arg);
	else if (strcasecmp(line, "RSET") == 0)
		cmd_simple(s, SMTPD_ST_RSET, arg);
	else if (strcasecmp(line, "NOOP") == 0)
		cmd_simple(s, SMTPD_ST_NOOP, arg);
	else if (strcasecmp(line, "QUIT") == 0)
		cmd_simple(s, SMTPD_ST_QUIT, arg);
	else if (strcasecmp(line, "VRFY") == 0)
		cmd_simple(s, SMTPD_ST_VRFY, arg);
	else if (strcasecmp(line, "STARTTLS") == 0)
		cmd_starttls(s, arg);
	else if (strcasecmp(line, "HELP") == 0)
		reply(s, 214, "2.0.0 %s", s->ctx->conf->banner ? s->ctx->conf->banner : "SMTP");
	else if (strcasecmp(line, "AUTH") == 0 && s->ctx->conf->auth)
		cmd_auth(s, arg);
	else if (strcasecmp(line, "EXPN") == 0 || strcasecmp(line, "AUTH") == 0 ||
		 strcasecmp(line, "ETRN") == 0 || strcasecmp(line, "TURN") == 0)
		client_error(s, 502, "5.5.1 Error: command not implemented");
	else
		client_error(s, 500, "5.5.2 Error: command not recognized");
}

/* One command line; returns the bytes used. */
static size_t feed_line(struct smtpd_sess *s, const char *in, size_t len)
{
	const char *nl = memchr(in, '\n', len);
	size_t n = nl ? (size_t)(nl - in) : len;

	if (s->line_overflow || s->line_len + n + (nl ? 1 : 0) > SMTPD_LINE_MAX) {
		s->line_overflow = true;
		s->line_len = 0;
	} else {
		memcpy(s->line + s->line_len, in, n);
		s->line_len += n;
	}
	if (!nl)
		return len;
	if (s->line_overflow) {
		s->line_overflow = false;
		client_error(s, 500, "5.5.2 Error: line too long");
		return n + 1;
	}
	size_t l = s->line_len;
	s->line_len = 0;
	if (l && s->line[l - 1] == '\r')
		l--;
	if (memchr(s->line, '\0', l) || memchr(s->line, '\r', l)) {
		client_error(s, 500, "5.5.2 Error: bad character in command");
		return n + 1;
	}
	s->line[l] = '\0';
	command(s, s->line);
	return n + 1;
}

/* ---- message content ---- */

/* strict_data: a CR or LF outside a CRLF pair, or a NUL, spoils the
 * message (refused at its end: what a bare LF means differs from one
 * server to the next, the root of SMTP smuggling). */
static void data_scan(struct smtpd_sess *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if ((s->scan_cr && ch != '\n') || (ch == '\n' && !s->scan_cr))
			s->data_bad_eol = true;
		s->data_nul |= ch == '\0';
		s->scan_cr = ch == '\r';
	}
}

static void data_emit(struct smtpd_sess *s, const char *p, size_t n)
{
	s->msg_size += n;
	if (s->msg_size > s->ctx->conf->max_size)
		s->data_too_big = true;
	if (s->ctx->conf->strict_data)
		data_scan(s, p, n);
	if (s->ctx->conf->keep_message && !s->data_too_big)
		vl_buf_append(&s->msg, p, n);
}

static void make_id(struct smtpd_sess *s)
{
	snprintf(s->msg_id, sizeof s->msg_id, "%llx.w%u.%llu", (unsigned long long)vl_now_ns(),
		 s->ctx->worker, (unsigned long long)++s->ctx->next_id);
}

/* The message is taken: counted, answered with text or the default. */
static void accepted(struct smtpd_sess *s, const char *text)
{
	SMTPD_STAT_ADD(s->ctx->stats, messages, 1);
	SMTPD_STAT_ADD(s->ctx->stats, recipients, (uint64_t)s->nrcpt);
	SMTPD_STAT_ADD(s->ctx->stats, bytes, s->msg_size);
	if (text)
		vl_buf_appends(s->out, text);
	else
		reply(s, 250, "2.0.0 Ok: queued as %s", s->msg_id);
}

static const char *content_fault(const struct smtpd_sess *s)
{
	if (s->data_long_line)
		return "554 5.6.0 Error: message has a line over 998 octets\r\n";
	if (s->data_too_big)
		return "552 5.3.4 Error: message size exceeds fixed limit\r\n";
	if (s->data_nul)
		return "554 5.6.0 Error: message contains a NUL octet\r\n";
	if (s->data_bad_eol || s->scan_cr)
		return "554 5.6.11 Error: message contains a bare CR or LF\r\n";
	return NULL;
}

static void finish_message(struct smtpd_sess *s)
{
	const struct smtpd_hooks *h = s->ctx->hooks;
	struct smtpd_verdict v = { SMTPD_V_DEFAULT, 0, NULL };
	const char *fault = content_fault(s), *custom = NULL;

	if (fault) {
		vl_buf_appends(s->out, fault);
		count_reply(s, atoi(fault));
		txn_reset(s);
		return;
	}
	make_id(s);
	struct smtpd_envelope env = {
		.id = s->msg_id, .mail_from = s->mail_from, .rcpts = s->rcpts.p,
		.nrcpt = s->nrcpt, .helo = s->helo_name, .body = s->body,
		.smtputf8 = s->smtputf8, .chunking = s->chunking,
		.requiretls = s->requiretls,
		.tls_version = s->tls_version, .tls_cipher = s->tls_cipher,
		.tls_resumed = s->tls_resumed,
		.peer = s->peer, .local = s->local,
		.auth = s->auth_user[0] ? s->auth_user : NULL,
	};
	if (h && h->message)
		v = h->message(s->ctx->hook_arg, s, &env, s->msg.p ? s->msg.p : "", s->msg.len);
	if (v.kind == SMTPD_V_PENDING) {
		s->wait_stage = SMTPD_ST_DOT;
		s->state = SMTPD_S_WAIT;
		s->action = SMTPD_WAIT;
		return;     /* the transaction stays until the answer */
	}
	if (!carry_out(s, SMTPD_ST_DOT, v, &custom) && s->state != SMTPD_S_STALL)
		accepted(s, custom);
	txn_reset(s);
}

/* DATA content up to CRLF.CRLF, unstuffing leading dots (RFC 5321 4.5.2).
 * Only CRLF ends a line here: a bare LF never starts the end marker, so
 * "\n.\n" tricks (SMTP smuggling) do not end the message early. */
static size_t feed_data(struct smtpd_sess *s, const char *in, size_t len)
{
	size_t i = 0;

	while (i < len) {
		switch (s->dstate) {
		case D_BOL:
			s->data_line = 0;
			if (in[i] == '.') {
				s->dstate = D_DOT;
				s->data_line = 1;
				i++;
			} else {
				s->dstate = D_MID;
			}
			break;
		case D_DOT:
			if (in[i] == '\r') {
				s->dstate = D_DOTCR;
				i++;
			} else {
				s->dstate = D_MID; /* the stuffed dot is dropped */
			}
			break;
		case D_DOTCR:
			if (in[i] == '\n') {
				s->state = SMTPD_S_CMD;
				finish_message(s);
				return i + 1;
			}
			data_emit(s, "\r", 1);
			s->data_line++;
			s->data_cr = true;
			s->dstate = D_MID;
			break;
		case D_MID: {
			const char *nl = memchr(in + i, '\n', len - i);
			size_t n = nl ? (size_t)(nl - (in + i)) + 1 : len - i;
			bool crlf = nl && (n >= 2 ? in[i + n - 2] == '\r' : s->data_cr);
			data_emit(s, in + i, n);
			s->data_line += n;
			if (s->data_line > SMTPD_LINE_MAX)
				s->data_long_line = true;
			s->data_cr = in[i + n - 1] == '\r';
			if (nl) {
				s->data_line = 0;
				if (crlf)
					s->dstate = D_BOL;
			}
			i += n;
			break;
		}
		}
	}
	return len;
}

static void bdat_chunk_done(struct smtpd_sess *s)
{
	s->state = SMTPD_S_CMD;
	if (s->bdat_discard) {
		client_error(s, 503, "5.5.1 Error: no valid transaction for BDAT");
	} else if (s->data_too_big) {
		reply(s, 552, "5.3.4 Error: message size exceeds fixed limit");
		txn_reset(s);
	} else if (s->bdat_last) {
		finish_message(s);
	} else {
		reply(s, 250, "2.0.0 %llu octets received",
		      (unsigned long long)s->msg_size);
	}
}

static size_t feed_bdat(struct smtpd_sess *s, const char *in, size_t len)
{
	size_t n = len < s->bdat_left ? len : (size_t)s->bdat_left;

	if (!s->bdat_discard)
		data_emit(s, in, n);
	s->bdat_left -= n;
	if (s->bdat_left == 0)
		bdat_chunk_done(s);
	return n;
}

/* Without PIPELINING offered, a client must wait for each reply: more
 * input behind a complete command is refused, as Postfix's
 * reject_unauth_pipelining does, so tests catch a client that pipelines
 * anyway. */
static bool improper_pipelining(struct smtpd_sess *s, bool more)
{
	if (!more || !(s->ctx->conf->disabled & SMTPD_NO_PIPELINING) ||
	    s->line_len || s->action != SMTPD_OK ||
	    !(s->state == SMTPD_S_CMD || s->state == SMTPD_S_DATA))
		return false;
	reply(s, 554, "5.5.0 Error: improper use of SMTP command pipelining");
	SMTPD_STAT_ADD(s->ctx->stats, errors, 1);
	s->action = SMTPD_CLOSE;
	return true;
}

size_t smtpd_sess_feed(struct smtpd_sess *s, const char *in, size_t len)
{
	size_t i = 0;

	while (i < len && s->action == SMTPD_OK) {
		switch (s->state) {
		case SMTPD_S_CMD:
			i += feed_line(s, in + i, len - i);
			if (improper_pipelining(s, i < len))
				return len;
			break;
		case SMTPD_S_DATA: i += feed_data(s, in + i, len - i); break;
		case SMTPD_S_BDAT: i += feed_bdat(s, in + i, len - i); break;
		case SMTPD_S_WAIT: return i;
		case SMTPD_S_STALL:
		case SMTPD_S_CLOSED: return len;
		}
	}
	return i;
}

/* ---- answers that came later ---- */

void smtpd_sess_apply(struct smtpd_sess *s, int code, const char *text)
{
	if (s->state != SMTPD_S_WAIT)
		return;
	s->state = SMTPD_S_CMD;
	s->action = SMTPD_OK;
	if (s->wait_stage == SMTPD_ST_DOT) {
		if (code >= 200 && code < 300) {
			accepted(s, text);
		} else if (text) {
			vl_buf_appends(s->out, text);
			count_reply(s, code);
		} else {
			reply(s, code, "%s", code >= 500 ? "5.3.0 Error: message refused"
						 : "4.3.0 Error: message not stored, try again");
		}
		txn_reset(s);
	} else if (code >= 200 && code < 300) {
		auth_granted(s, s->wait_user, text);
	} else if (code == 421) {
		reply(s, 421, "4.7.0 %s Error: too many failed authentications",
		      s->ctx->conf->hostname);
	} else {
		auth_refused(s, text);
	}
	s->wait_user[0] = '\0';
}

void smtpd_sess_resume(struct smtpd_sess *s, int code, const char *text)
{
	if (s->mbox)
		smtpd_mbox_post(s->mbox, s, code, text);
	else
		smtpd_sess_apply(s, code, text);
}

const char *smtpd_reply_fmt(char *out, size_t outlen, int code, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(out, outlen, "%d ", code);

	va_start(ap, fmt);
	if (n > 0 && (size_t)n < outlen)
		n += vsnprintf(out + n, outlen - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n + 3 > outlen)
		n = outlen >= 3 ? (int)outlen - 3 : 0;
	/* a value put into the text must not end the reply early */
	for (int i = 0; i < n; i++)
		if (out[i] == '\r' || out[i] == '\n')
			out[i] = ' ';
	memcpy(out + n, "\r\n", 3);
	return out;
}

void smtpd_stats_sum(struct smtpd_stats *sum, struct smtpd_stats *const *each, int n)
{
	_Atomic uint64_t *d = (_Atomic uint64_t *)sum;
	size_t fields = sizeof *sum / sizeof(_Atomic uint64_t);

	memset(sum, 0, sizeof *sum);
	for (int i = 0; i < n; i++) {
		const _Atomic uint64_t *src = (const _Atomic uint64_t *)each[i];
		for (size_t f = 0; f < fields; f++)
			atomic_fetch_add_explicit(&d[f], atomic_load_explicit(&src[f],
					memory_order_relaxed), memory_order_relaxed);
	}
}
