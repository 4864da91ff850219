/*
 * The SMTP server session of volley-sink: client bytes in, replies out.
 * No I/O here, so the protocol can be unit-tested byte by byte.
 */
#include "sink.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

enum { D_BOL, D_MID, D_DOT, D_DOTCR }; /* DATA scanner states */

#define MAX_PATH 256 /* RFC 5321 4.5.3.1.3, brackets included */

static void txn_reset(struct sink_sess *s)
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
	s->data_long_line = s->data_too_big = false;
}

void sink_sess_init(struct sink_sess *s, struct sink_ctx *ctx, struct vl_buf *out)
{
	memset(s, 0, sizeof *s);
	s->ctx = ctx;
	s->out = out;
	vl_buf_init(&s->rcpts);
	vl_buf_init(&s->msg);
}

void sink_sess_free(struct sink_sess *s)
{
	vl_buf_free(&s->rcpts);
	vl_buf_free(&s->msg);
}

/* ---- replies ---- */

static void count_reply(struct sink_sess *s, int code)
{
	if (code >= 400 && code < 500)
		SINK_STAT_ADD(s->ctx->stats, replies_4xx, 1);
	else if (code >= 500)
		SINK_STAT_ADD(s->ctx->stats, replies_5xx, 1);
	if (code == 421)
		s->action = SINK_CLOSE;
}

static void reply(struct sink_sess *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reply(struct sink_sess *s, int code, const char *fmt, ...)
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
static void client_error(struct sink_sess *s, int code, const char *text)
{
	reply(s, code, "%s", text);
	SINK_STAT_ADD(s->ctx->stats, errors, 1);
	if (++s->errors >= SINK_MAX_ERRORS && s->action == SINK_OK) {
		reply(s, 421, "4.7.0 %s Error: too many errors", s->ctx->conf->hostname);
	}
}

/* ---- rules and faults ---- */

static bool rcpt_matches(const struct sink_sess *s, const char *pattern)
{
	const char *r = s->rcpts.p;

	for (int i = 0; i < s->nrcpt; i++) {
		if (vl_glob_match(pattern, r))
			return true;
		r += strlen(r) + 1;
	}
	return false;
}

static const struct sink_rule *find_rule(const struct sink_sess *s,
					 enum sink_stage st, const char *arg)
{
	const struct sink_conf *c = s->ctx->conf;

	for (int i = 0; i < c->nrules; i++) {
		const struct sink_rule *r = &c->rules[i];
		if (r->stage != st)
			continue;
		if (!r->pattern)
			return r;
		if (st == SINK_ST_DATA || st == SINK_ST_DOT) {
			if (rcpt_matches(s, r->pattern))
				return r;
		} else if (arg && vl_glob_match(r->pattern, arg)) {
			return r;
		}
	}
	return NULL;
}

static const char *const temp_text[] = {
	[SINK_ST_CONNECT] = "421 4.3.2 Service temporarily unavailable (injected)",
	[SINK_ST_HELO] = "451 4.3.0 Temporary failure (injected)",
	[SINK_ST_MAIL] = "451 4.3.0 Temporary failure (injected)",
	[SINK_ST_RCPT] = "450 4.2.0 Mailbox temporarily unavailable (injected)",
	[SINK_ST_DATA] = "451 4.3.0 Temporary failure (injected)",
	[SINK_ST_DOT] = "451 4.3.0 Message not accepted, try again (injected)",
};

static const char *const perm_text[] = {
	[SINK_ST_CONNECT] = "554 5.3.2 No SMTP service here (injected)",
	[SINK_ST_HELO] = "550 5.7.1 Client rejected (injected)",
	[SINK_ST_MAIL] = "550 5.7.1 Sender rejected (injected)",
	[SINK_ST_RCPT] = "550 5.1.1 No such user (injected)",
	[SINK_ST_DATA] = "554 5.3.0 Transaction failed (injected)",
	[SINK_ST_DOT] = "554 5.6.0 Message rejected (injected)",
};

static void send_failure(struct sink_sess *s, enum sink_stage st, const char *wire,
			 int code)
{
	vl_buf_appends(s->out, wire);
	count_reply(s, code);
	if (st == SINK_ST_CONNECT && code >= 500)
		s->noservice = true;
	else if (st == SINK_ST_CONNECT)
		s->action = SINK_CLOSE;
}

static void drop(struct sink_sess *s)
{
	s->action = SINK_DROP;
	SINK_STAT_ADD(s->ctx->stats, drops, 1);
}

/* Scripted rules first, then the fault dice. Returns true when the command
 * was answered here; *custom gets a rule's text for a successful reply. */
static bool intercept(struct sink_sess *s, enum sink_stage st, const char *arg,
		      const char **custom)
{
	const struct sink_conf *c = s->ctx->conf;
	const struct sink_rule *r = find_rule(s, st, arg);
	char wire[600];

	*custom = NULL;
	if (r) {
		switch (r->kind) {
		case SINK_RULE_DROP: drop(s); return true;
		case SINK_RULE_STALL: s->state = SINK_S_STALL; return true;
		case SINK_RULE_RAW: vl_buf_appends(s->out, r->reply); return true;
		case SINK_RULE_REPLY:
			if (r->code < 400) {
				*custom = r->reply;
				return false;
			}
			send_failure(s, st, r->reply, r->code);
			return true;
		}
	}
	if (st > SINK_ST_DOT)
		return false;
	if (c->disconnect.stage == st && vl_chance(&s->ctx->rng, c->disconnect.pct)) {
		drop(s);
		return true;
	}
	const struct sink_fault *f[2] = {&c->permfail, &c->tempfail};
	const char *const *texts[2] = {perm_text, temp_text};
	for (int i = 0; i < 2; i++) {
		if (f[i]->stage == st && vl_chance(&s->ctx->rng, f[i]->pct)) {
			snprintf(wire, sizeof wire, "%s\r\n", texts[i][st]);
			send_failure(s, st, wire, atoi(wire));
			return true;
		}
	}
	return false;
}

/* ---- greeting, timeout, TLS ---- */

enum sink_action sink_sess_greet(struct sink_sess *s)
{
	const struct sink_conf *c = s->ctx->conf;
	const char *custom;

	s->greeted = true;
	if (c->max_conns && atomic_load_explicit(s->ctx->conns_open,
						 memory_order_relaxed) > c->max_conns) {
		SINK_STAT_ADD(s->ctx->stats, conns_refused, 1);
		reply(s, 421, "4.7.0 %s Error: too many connections", c->hostname);
		return s->action;
	}
	if (intercept(s, SINK_ST_CONNECT, NULL, &custom))
		return s->action;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 220, "%s ESMTP volley-sink", c->hostname);
	return s->action;
}

void sink_sess_timeout(struct sink_sess *s)
{
	SINK_STAT_ADD(s->ctx->stats, timeouts, 1);
	reply(s, 421, "4.4.2 %s Error: timeout exceeded", s->ctx->conf->hostname);
}

void sink_sess_tls_started(struct sink_sess *s, const char *version,
			   const char *cipher)
{
	txn_reset(s);
	s->helo = s->ehlo = false;
	s->helo_name[0] = '\0';
	s->tls = true;
	s->tls_version = version;
	s->tls_cipher = cipher;
	s->action = SINK_OK;
	SINK_STAT_ADD(s->ctx->stats, tls_sessions, 1);
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

static void cmd_helo(struct sink_sess *s, const char *arg, bool extended)
{
	const struct sink_conf *c = s->ctx->conf;
	const char *custom;

	if (extended && (c->disabled & SINK_NO_EHLO)) {
		client_error(s, 502, "5.5.1 Error: command not implemented");
		return;
	}
	if (!arg || !*arg || strlen(arg) >= sizeof s->helo_name) {
		client_error(s, 501, extended ? "5.5.4 Syntax: EHLO hostname"
					      : "5.5.4 Syntax: HELO hostname");
		return;
	}
	txn_reset(s);
	if (intercept(s, SINK_ST_HELO, arg, &custom))
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
	if (!(c->disabled & SINK_NO_PIPELINING))
		vl_buf_appends(s->out, "250-PIPELINING\r\n");
	if (!(c->disabled & SINK_NO_SIZE))
		vl_buf_printf(s->out, "250-SIZE %llu\r\n", (unsigned long long)c->max_size);
	if (!(c->disabled & SINK_NO_8BITMIME))
		vl_buf_appends(s->out, "250-8BITMIME\r\n");
	if (!(c->disabled & SINK_NO_SMTPUTF8))
		vl_buf_appends(s->out, "250-SMTPUTF8\r\n");
	if (c->tls && !s->tls)
		vl_buf_appends(s->out, "250-STARTTLS\r\n");
	if (c->auth_user && s->tls)
		vl_buf_appends(s->out, "250-AUTH PLAIN LOGIN\r\n");
	if (c->requiretls && s->tls)
		vl_buf_appends(s->out, "250-REQUIRETLS\r\n");
	if (!(c->disabled & SINK_NO_CHUNKING))
		vl_buf_appends(s->out, "250-CHUNKING\r\n");
	vl_buf_appends(s->out, "250 ENHANCEDSTATUSCODES\r\n");
}

/* MAIL parameters (RFC 1870, 6152, 6531, 8689). Returns false after
 * replying. REQUIRETLS is known only where it is offered: with
 * --requiretls, inside TLS. */
static bool mail_params(struct sink_sess *s, const char *p)
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
		if ((off & SINK_NO_SIZE && !strncasecmp(param, "SIZE=", 5)) ||
		    (off & SINK_NO_8BITMIME && !strncasecmp(param, "BODY=", 5)) ||
		    (off & SINK_NO_SMTPUTF8 && !strcasecmp(param, "SMTPUTF8"))) {
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

static void cmd_mail(struct sink_sess *s, const char *arg)
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
	if (s->ctx->conf->auth_user && !s->auth_user[0]) {
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
	if (intercept(s, SINK_ST_MAIL, addr, &custom))
		return;
	s->in_mail = true;
	snprintf(s->mail_from, sizeof s->mail_from, "%s", addr);
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 250, "2.1.0 Ok");
}

static void cmd_rcpt(struct sink_sess *s, const char *arg)
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
	if (intercept(s, SINK_ST_RCPT, addr, &custom))
		return;
	vl_buf_append(&s->rcpts, addr, strlen(addr) + 1);
	s->nrcpt++;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 250, "2.1.5 Ok");
}

static void start_message(struct sink_sess *s)
{
	vl_buf_reset(&s->msg);
	s->msg_size = 0;
	s->data_line = 0;
	s->data_cr = false;
	s->data_long_line = s->data_too_big = false;
	s->dstate = D_BOL;
}

static bool txn_ready(struct sink_sess *s)
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

static void cmd_data(struct sink_sess *s, const char *arg)
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
	if (intercept(s, SINK_ST_DATA, NULL, &custom))
		return;
	start_message(s);
	s->state = SINK_S_DATA;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 354, "End data with <CR><LF>.<CR><LF>");
}

static void bdat_chunk_done(struct sink_sess *s);

static void cmd_bdat(struct sink_sess *s, const char *arg)
{
	char num[32];
	uint64_t n;
	size_t len = arg ? strcspn(arg, " ") : 0;
	const char *rest = arg ? arg + len : NULL;

	if (s->ctx->conf->disabled & SINK_NO_CHUNKING) {
		client_error(s, 502, "5.5.1 Error: command not implemented");
		s->action = SINK_CLOSE; /* a chunk may follow: cannot go on */
		return;
	}
	/* Without a size we cannot find the next command in the stream. */
	if (!arg || len == 0 || len >= sizeof num) {
		client_error(s, 501, "5.5.4 Syntax: BDAT size [LAST]");
		s->action = SINK_CLOSE;
		return;
	}
	memcpy(num, arg, len);
	num[len] = '\0';
	while (rest && *rest == ' ')
		rest++;
	if (vl_parse_u64(num, &n) < 0 || (*rest && strcasecmp(rest, "LAST") != 0)) {
		client_error(s, 501, "5.5.4 Syntax: BDAT size [LAST]");
		s->action = SINK_CLOSE;
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
	s->state = SINK_S_BDAT;
	if (n == 0)
		bdat_chunk_done(s);
}

static void cmd_starttls(struct sink_sess *s, const char *arg)
{
	const char *custom;

	if (arg) {
		client_error(s, 501, "5.5.4 Syntax: STARTTLS");
		return;
	}
	if (!s->ctx->conf->tls) {
		client_error(s, 502, "5.5.1 Error: command not implemented");
		return;
	}
	if (s->tls) {
		client_error(s, 503, "5.5.1 Error: TLS already active");
		return;
	}
	if (intercept(s, SINK_ST_STARTTLS, NULL, &custom))
		return;
	if (custom)
		vl_buf_appends(s->out, custom);
	else
		reply(s, 220, "2.0.0 Ready to start TLS");
	s->action = SINK_STARTTLS;
}

/* RSET, NOOP, QUIT, VRFY: the simple ones. */
static void cmd_simple(struct sink_sess *s, enum sink_stage st, const char *arg)
{
	const char *custom;

	if ((st == SINK_ST_RSET || st == SINK_ST_QUIT) && arg) {
		client_error(s, 501, "5.5.4 Syntax: no parameters allowed");
		return;
	}
	if (st == SINK_ST_VRFY && !arg) {
		client_error(s, 501, "5.5.4 Syntax: VRFY address");
		return;
	}
	if (intercept(s, st, arg, &custom))
		return;
	if (st == SINK_ST_RSET)
		txn_reset(s);
	if (custom)
		vl_buf_appends(s->out, custom);
	else if (st == SINK_ST_QUIT)
		reply(s, 221, "2.0.0 Bye");
	else if (st == SINK_ST_VRFY)
		reply(s, 252, "2.0.0 Cannot VRFY user, but will accept message");
	else
		reply(s, 250, "2.0.0 Ok");
	if (st == SINK_ST_QUIT)
		s->action = SINK_CLOSE;
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

static void auth_result(struct sink_sess *s, const char *user, const char *pass)
{
	const struct sink_conf *c = s->ctx->conf;

	s->auth_step = AUTH_NONE;
	if (strcmp(user, c->auth_user) == 0 && strcmp(pass, c->auth_pass) == 0) {
		snprintf(s->auth_user, sizeof s->auth_user, "%s", user);
		reply(s, 235, "2.7.0 Authentication successful");
	} else {
		reply(s, 535, "5.7.8 Error: authentication failed");
	}
}

static void auth_plain(struct sink_sess *s, const char *b64)
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
static void auth_line(struct sink_sess *s, const char *line)
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

static void cmd_auth(struct sink_sess *s, const char *arg)
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
	} else if (strcasecmp(mech, "LOGIN") == 0 && !resp) {
		s->auth_step = AUTH_USER;
		reply(s, 334, "VXNlcm5hbWU6");
	} else {
		client_error(s, 504, "5.5.4 Error: unsupported authentication mechanism");
	}
}

static void command(struct sink_sess *s, char *line)
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
			cmd_simple(s, SINK_ST_QUIT, NULL);
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
		cmd_simple(s, SINK_ST_RSET, arg);
	else if (strcasecmp(line, "NOOP") == 0)
		cmd_simple(s, SINK_ST_NOOP, arg);
	else if (strcasecmp(line, "QUIT") == 0)
		cmd_simple(s, SINK_ST_QUIT, arg);
	else if (strcasecmp(line, "VRFY") == 0)
		cmd_simple(s, SINK_ST_VRFY, arg);
	else if (strcasecmp(line, "STARTTLS") == 0)
		cmd_starttls(s, arg);
	else if (strcasecmp(line, "HELP") == 0)
		reply(s, 214, "2.0.0 volley-sink, see docs/sink.md");
	else if (strcasecmp(line, "AUTH") == 0 && s->ctx->conf->auth_user)
		cmd_auth(s, arg);
	else if (strcasecmp(line, "EXPN") == 0 || strcasecmp(line, "AUTH") == 0 ||
		 strcasecmp(line, "ETRN") == 0 || strcasecmp(line, "TURN") == 0)
		client_error(s, 502, "5.5.1 Error: command not implemented");
	else
		client_error(s, 500, "5.5.2 Error: command not recognized");
}

/* One command line; returns the bytes used. */
static size_t feed_line(struct sink_sess *s, const char *in, size_t len)
{
	const char *nl = memchr(in, '\n', len);
	size_t n = nl ? (size_t)(nl - in) : len;

	if (s->line_overflow || s->line_len + n + (nl ? 1 : 0) > SINK_LINE_MAX) {
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

static void data_emit(struct sink_sess *s, const char *p, size_t n)
{
	s->msg_size += n;
	if (s->msg_size > s->ctx->conf->max_size)
		s->data_too_big = true;
	if (s->ctx->store && !s->data_too_big)
		vl_buf_append(&s->msg, p, n);
}

static void make_id(struct sink_sess *s, char *id, size_t len)
{
	snprintf(id, len, "%llx.w%u.%llu", (unsigned long long)vl_now_ns(),
		 s->ctx->worker, (unsigned long long)++s->ctx->next_id);
}

static void finish_message(struct sink_sess *s)
{
	const char *custom;
	char id[64];

	if (s->data_long_line) {
		reply(s, 554, "5.6.0 Error: message has a line over 998 octets");
	} else if (s->data_too_big) {
		reply(s, 552, "5.3.4 Error: message size exceeds fixed limit");
	} else if (!intercept(s, SINK_ST_DOT, NULL, &custom)) {
		make_id(s, id, sizeof id);
		struct sink_envelope env = {
			.id = id, .mail_from = s->mail_from, .rcpts = s->rcpts.p,
			.nrcpt = s->nrcpt, .helo = s->helo_name, .body = s->body,
			.smtputf8 = s->smtputf8, .chunking = s->chunking,
			.requiretls = s->requiretls,
			.tls_version = s->tls_version, .tls_cipher = s->tls_cipher,
			.tls_resumed = s->tls_resumed,
			.peer = s->peer, .local = s->local,
			.auth = s->auth_user[0] ? s->auth_user : NULL,
		};
		if (s->ctx->store &&
		    sink_store_put(s->ctx->store, &env, s->msg.p, s->msg.len) < 0) {
			reply(s, 451, "4.3.0 Error: cannot store message");
		} else {
			SINK_STAT_ADD(s->ctx->stats, messages, 1);
			SINK_STAT_ADD(s->ctx->stats, recipients, (uint64_t)s->nrcpt);
			SINK_STAT_ADD(s->ctx->stats, bytes, s->msg_size);
			if (custom)
				vl_buf_appends(s->out, custom);
			else
				reply(s, 250, "2.0.0 Ok: queued as %s", id);
		}
	}
	txn_reset(s);
}

/* DATA content up to CRLF.CRLF, unstuffing leading dots (RFC 5321 4.5.2).
 * Only CRLF ends a line here: a bare LF never starts the end marker, so
 * "\n.\n" tricks (SMTP smuggling) do not end the message early. */
static size_t feed_data(struct sink_sess *s, const char *in, size_t len)
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
				s->state = SINK_S_CMD;
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
			if (s->data_line > SINK_LINE_MAX)
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

static void bdat_chunk_done(struct sink_sess *s)
{
	s->state = SINK_S_CMD;
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

static size_t feed_bdat(struct sink_sess *s, const char *in, size_t len)
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
static bool improper_pipelining(struct sink_sess *s, bool more)
{
	if (!more || !(s->ctx->conf->disabled & SINK_NO_PIPELINING) ||
	    s->line_len || s->action != SINK_OK ||
	    !(s->state == SINK_S_CMD || s->state == SINK_S_DATA))
		return false;
	reply(s, 554, "5.5.0 Error: improper use of SMTP command pipelining");
	SINK_STAT_ADD(s->ctx->stats, errors, 1);
	s->action = SINK_CLOSE;
	return true;
}

size_t sink_sess_feed(struct sink_sess *s, const char *in, size_t len)
{
	size_t i = 0;

	while (i < len && s->action == SINK_OK) {
		switch (s->state) {
		case SINK_S_CMD:
			i += feed_line(s, in + i, len - i);
			if (improper_pipelining(s, i < len))
				return len;
			break;
		case SINK_S_DATA: i += feed_data(s, in + i, len - i); break;
		case SINK_S_BDAT: i += feed_bdat(s, in + i, len - i); break;
		case SINK_S_STALL:
		case SINK_S_CLOSED: return len;
		}
	}
	return i;
}
