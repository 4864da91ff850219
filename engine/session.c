/*
 * The SMTP client session (RFC 5321, 2920, 3030, 3207, 4954, 1870, 6152,
 * 6531, 8689) as one state enum and one function per event. Protocol only: the
 * worker (worker.c) moves the bytes. Every recipient handed over gets
 * exactly one result, whatever the peer does.
 */
#include "engine_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

enum { RS_PENDING, RS_ACCEPTED, RS_DONE }; /* per-recipient progress */
#define BODY_WITH_CMDS_MAX 65536 /* BDAT body sent before RCPT replies */

/* ---- states ---- */

static const char *const state_names[ENG_S_COUNT] = {
	[ENG_S_CONNECTING] = "CONNECTING", [ENG_S_BANNER] = "BANNER",
	[ENG_S_EHLO] = "EHLO", [ENG_S_HELO] = "HELO",
	[ENG_S_STARTTLS] = "STARTTLS", [ENG_S_TLS] = "TLS", [ENG_S_AUTH] = "AUTH",
	[ENG_S_AUTH_USER] = "AUTH_USER", [ENG_S_AUTH_PASS] = "AUTH_PASS",
	[ENG_S_READY] = "READY", [ENG_S_TXN] = "TXN", [ENG_S_BODY] = "BODY",
	[ENG_S_RSET] = "RSET", [ENG_S_QUIT] = "QUIT", [ENG_S_CLOSED] = "CLOSED",
};

const char *eng_sess_state_name(enum eng_state st)
{
	return (unsigned)st < ENG_S_COUNT ? state_names[st] : "?";
}

/* The session's transitions: from each state, a bit per state it may go
 * to. Any state may fail to CLOSED. */
#define TO(st) (1u << ENG_S_##st)
static const unsigned transitions[ENG_S_COUNT] = {
	/* implicit TLS (RFC 8314): the handshake first, the banner inside it */
	[ENG_S_CONNECTING] = TO(BANNER) | TO(TLS),
	[ENG_S_BANNER] = TO(EHLO),
	/* after EHLO/HELO: STARTTLS, AUTH or READY (after_hello); a 5xx to
	 * EHLO tries HELO */
	[ENG_S_EHLO] = TO(HELO) | TO(STARTTLS) | TO(AUTH) | TO(AUTH_USER) | TO(READY),
	[ENG_S_HELO] = TO(STARTTLS) | TO(AUTH) | TO(AUTH_USER) | TO(READY),
	/* 220: the handshake; refused: on in clear text where the policy
	 * allows it */
	[ENG_S_STARTTLS] = TO(TLS) | TO(AUTH) | TO(AUTH_USER) | TO(READY),
	[ENG_S_TLS] = TO(EHLO) | TO(BANNER),
	[ENG_S_AUTH] = TO(READY),
	[ENG_S_AUTH_USER] = TO(AUTH_PASS),
	[ENG_S_AUTH_PASS] = TO(AUTH),
	[ENG_S_READY] = TO(TXN) | TO(QUIT),
	[ENG_S_TXN] = TO(BODY) | TO(RSET) | TO(READY),
	[ENG_S_BODY] = TO(RSET) | TO(READY),
	[ENG_S_RSET] = TO(READY),
	[ENG_S_QUIT] = 0,
	[ENG_S_CLOSED] = 0,
};
#undef TO

static bool transition_ok(enum eng_state from, enum eng_state to)
{
	return from == to || to == ENG_S_CLOSED || (transitions[from] >> to & 1u);
}

bool eng_sess_transition_ok(enum eng_state from, enum eng_state to)
{
	if ((unsigned)from >= ENG_S_COUNT || (unsigned)to >= ENG_S_COUNT)
		return false;
	return transition_ok(from, to);
}

__attribute__((cold, noinline))
static void illegal(const struct eng_sess *s, enum eng_state from, enum eng_state to)
{
	vl_log(VL_LOG_ERROR, "engine: conn %u.%llu %s: illegal session state "
	       "transition %s -> %s", s->id_worker, s->id_conn, s->peer,
	       state_names[from], state_names[to]);
	if (ENG_STRICT_STATES)
		abort();
}

/* Every state change goes through here. vl_log drops a debug line before
 * formatting it, so at the info level the log is a call and a compare
 * (the state is set first so that the call is the last thing done). */
static void enter(struct eng_sess *s, enum eng_state to)
{
	enum eng_state from = s->state;

	if (from == to)
		return;
	if (!transition_ok(from, to))
		illegal(s, from, to);
	s->state = to;
	vl_log(VL_LOG_DEBUG, "engine: conn %u.%llu %s: state %s -> %s", s->id_worker,
	       s->id_conn, s->peer, state_names[from], state_names[to]);
}

/* ---- set-up ---- */

void eng_sess_init(struct eng_sess *s, const struct eng_config *cfg,
		   const struct eng_route *route)
{
	memset(s, 0, sizeof *s);
	s->cfg = cfg;
	s->route = route;
	s->state = ENG_S_CONNECTING; /* the initial state */
	vl_buf_init(&s->out);
}

void eng_sess_free(struct eng_sess *s)
{
	vl_buf_free(&s->out);
	eng_iov_free(&s->stuffed);
	for (unsigned i = 0; i < ENG_PIPE_MAX; i++)
		free(s->txn[i].rs);
	free(s->fail_text);
}

/* ---- the transactions outstanding (a ring, oldest first) ---- */

struct eng_txn *eng_sess_head(struct eng_sess *s)
{
	return s->ntxn ? &s->txn[s->head] : NULL;
}

static const struct eng_txn *head_c(const struct eng_sess *s)
{
	return s->ntxn ? &s->txn[s->head] : NULL;
}

/* The i-th outstanding transaction, 0 the oldest. */
static struct eng_txn *txn_at(struct eng_sess *s, unsigned i)
{
	return &s->txn[(s->head + i) % ENG_PIPE_MAX];
}

/* The transaction ended: hand its message back (after the others ended
 * before it) and drop it from the ring. */
static void finish_msg(struct eng_sess *s, struct eng_msg *m)
{
	struct eng_msg **at = &s->finished;

	while (*at)
		at = &(*at)->next_;
	m->next_ = NULL;
	*at = m;
}

static void txn_pop(struct eng_sess *s)
{
	struct eng_txn *t = &s->txn[s->head];

	finish_msg(s, t->msg);
	t->msg = NULL;
	s->head = (s->head + 1) % ENG_PIPE_MAX;
	s->ntxn--;
}

void eng_sess_output_taken(struct eng_sess *s)
{
	for (size_t b = 0; b < s->nbodies; b++)
		if (s->bodies[b].txn)
			s->bodies[b].txn->body_ns = s->now_ns;
	vl_buf_reset(&s->out);
	s->nbodies = 0;
}

enum eng_act eng_sess_connected(struct eng_sess *s)
{
	if (s->route->implicit_tls) {
		enter(s, ENG_S_TLS);
		return ENG_STARTTLS;
	}
	enter(s, ENG_S_BANNER);
	return ENG_WAIT;
}

const char *eng_sess_stage(const struct eng_sess *s)
{
	switch (s->state) {
	case ENG_S_CONNECTING: return "connect";
	case ENG_S_BANNER: return "greeting";
	case ENG_S_EHLO: case ENG_S_HELO: return "ehlo";
	case ENG_S_STARTTLS: return "starttls";
	case ENG_S_TLS: return "tls";
	case ENG_S_AUTH: case ENG_S_AUTH_USER: case ENG_S_AUTH_PASS: return "auth";
	case ENG_S_TXN: {
		const struct eng_txn *t = head_c(s);
		if (!t)
			return "session";
		if (t->rset_first || t->pos == 0) /* nothing of it answered */
			return "mail";
		if (t->pos <= t->msg->count_)
			return "rcpt";
		return t->use_bdat ? "dot" : "data";
	}
	case ENG_S_BODY: return "dot";
	case ENG_S_RSET: return "rset";
	case ENG_S_QUIT: return "quit";
	default: return "session";
	}
}

uint64_t eng_sess_timeout(const struct eng_sess *s)
{
	const struct eng_timeouts *t = &s->cfg->t;

	switch (s->state) {
	case ENG_S_CONNECTING: return t->connect;
	case ENG_S_BANNER: return t->greeting;
	case ENG_S_TLS: return t->tls;
	case ENG_S_READY: return t->idle;
	case ENG_S_QUIT: return t->quit;
	case ENG_S_BODY: return t->data_term;
	case ENG_S_TXN: {
		const struct eng_txn *x = head_c(s);
		if (!x || x->rset_first || x->pos == 0)
			return t->mail;
		if (x->pos <= x->msg->count_)
			return t->rcpt;
		return x->use_bdat ? t->data_term : t->data;
	}
	default: return t->helo;
	}
}

/* ---- results ---- */

void eng_result_give(struct eng_msg *m, size_t rcpt, enum eng_status st,
		     int code, const char *enhanced, const char *text,
		     const char *stage, const struct eng_sess *s,
		     bool maybe_delivered)
{
	struct eng_result r = {
		.status = st, .code = code, .enhanced = enhanced ? enhanced : "",
		.text = text ? text : "", .stage = stage,
		.maybe_delivered = maybe_delivered,
		.peer = s ? s->peer : "",
		.tls_version = s && s->tls_on ? s->tls_version : NULL,
		.tls_cipher = s && s->tls_on ? s->tls_cipher : NULL,
		.tls_verified = s && s->tls_on && s->tls_verified,
		.tls_dane = s && s->tls_on && s->tls_dane,
		.tls_failure = s ? s->tls_failure : NULL,
		.tls_tlsa = s ? s->tls_tlsa : NULL,
		.reply_s = s && s->reply_ns ? (double)s->reply_ns / 1e9 : 0,
	};
	m->pending_--;
	m->on_result(m, rcpt, &r);
}

static enum eng_status status_of(int code)
{
	if (code >= 200 && code < 300)
		return ENG_DELIVERED;
	return code >= 500 && code < 600 ? ENG_PERMANENT : ENG_TRANSIENT;
}

/* Result for recipient i of transaction t (index within the chunk). */
static void give(struct eng_sess *s, struct eng_txn *t, size_t i, enum eng_status st,
		 int code, const char *enh, const char *text, const char *stage, bool maybe)
{
	if (t->rs[i] == RS_DONE)
		return;
	t->rs[i] = RS_DONE;
	eng_result_give(t->msg, t->msg->first_ + i, st, code, enh, text, stage, s, maybe);
}

static void give_reply(struct eng_sess *s, struct eng_txn *t, size_t i,
		       const struct eng_reply *r, const char *stage)
{
	give(s, t, i, status_of(r->code), r->code, r->enhanced, r->text, stage, false);
}

/* Every recipient of t still without a result (those in state `only`, or
 * all when only < 0) gets this one. */
static void give_rest(struct eng_sess *s, struct eng_txn *t, int only, enum eng_status st,
		      int code, const char *enh, const char *text, const char *stage,
		      bool maybe)
{
	for (size_t i = 0; t->msg && i < t->msg->count_; i++)
		if (t->rs[i] != RS_DONE && (only < 0 || t->rs[i] == only))
			give(s, t, i, st, code, enh, text, stage, maybe);
}

/* The oldest transaction is over; with rset the server may still hold
 * state. A transaction pipelined behind it begins with its own RSET, so
 * only the last one outstanding sends one here. */
static enum eng_act end_txn(struct eng_sess *s, bool rset)
{
	txn_pop(s);
	if (s->ntxn)
		return ENG_WAIT;
	if (rset) {
		vl_buf_appends(&s->out, "RSET\r\n");
		enter(s, ENG_S_RSET);
		return ENG_WAIT;
	}
	enter(s, ENG_S_READY);
	return ENG_IDLE;
}

/* Whether a transaction the session gives up on may have been delivered:
 * its BDAT LAST (or final dot) went out and no reply said what became of
 * it. silent: no reply ended the session (timeout, disconnect); else a
 * reply did, to the oldest transaction's command: a refusal of that one,
 * unless the command was the RSET before it; for one behind it (or after
 * such an RSET) a 421 means the server closed before reading it (replies
 * come in order), anything else (a refused RSET) that the server reads on
 * and may have taken it. */
static bool txn_maybe(const struct eng_sess *s, const struct eng_txn *t, bool oldest,
		      bool silent, int code)
{
	if (!t->body_queued)
		return false;
	if (oldest && !t->rset_first)
		return silent && (s->state == ENG_S_BODY || t->use_bdat);
	return silent || code != 421;
}

/* A body still in the output was never sent: nothing of it can be
 * delivered. The output is dropped: a failed session sends no more. */
static void drop_output(struct eng_sess *s)
{
	for (size_t i = 0; i < s->nbodies; i++)
		if (s->bodies[i].txn)
			s->bodies[i].txn->body_queued = false;
	eng_sess_output_taken(s);
}

static enum eng_act sess_fail(struct eng_sess *s, const char *stage, int code,
			      const char *enhanced, const char *text, bool silent)
{
	s->fail_stage = stage;
	s->fail_code = code;
	snprintf(s->fail_enhanced, sizeof s->fail_enhanced, "%s", enhanced ? enhanced : "");
	free(s->fail_text);
	s->fail_text = vl_strndup(text, ENG_FAIL_TEXT_MAX);
	drop_output(s);
	for (unsigned k = 0; s->ntxn; k++) {
		struct eng_txn *t = &s->txn[s->head];
		bool maybe = txn_maybe(s, t, k == 0, silent, code);
		/* those behind the oldest get the session's stage, as the
		 * messages still queued do (pool_fail_queue) */
		give_rest(s, t, RS_ACCEPTED, ENG_TRANSIENT, code, enhanced, text, stage, maybe);
		give_rest(s, t, -1, ENG_TRANSIENT, code, enhanced, text, stage,
			  maybe && t->use_bdat && t->body_with_cmds);
		txn_pop(s);
	}
	enter(s, ENG_S_CLOSED);
	return ENG_CLOSE;
}

enum eng_act eng_sess_fail(struct eng_sess *s, const char *stage, int code,
			   const char *enhanced, const char *text)
{
	return sess_fail(s, stage, code, enhanced, text, true);
}

static enum eng_act fail_reply(struct eng_sess *s, const struct eng_reply *r)
{
	char text[ENG_REPLY_TEXT_MAX + 32];

	snprintf(text, sizeof text, "%s", r->text);
	return sess_fail(s, eng_sess_stage(s), r->code, r->enhanced, text, false);
}

/* ---- greeting, EHLO, STARTTLS, AUTH ---- */

static enum eng_act send_ehlo(struct eng_sess *s, bool extended)
{
	const char *name = s->route->helo[0] ? s->route->helo : s->cfg->helo;

	vl_buf_printf(&s->out, "%s %s\r\n", extended ? "EHLO" : "HELO", name);
	enter(s, extended ? ENG_S_EHLO : ENG_S_HELO);
	s->pipelining = s->chunking = s->eightbitmime = s->smtputf8 = false;
	s->starttls = s->auth_plain = s->auth_login = s->size_ext = false;
	s->requiretls = false;
	s->size_max = 0;
	return ENG_WAIT;
}

/* EHLO keywords (RFC 5321 4.1.1.1): one a line after the greeting line. */
static void parse_ehlo(struct eng_sess *s, const char *text)
{
	const char *line = strchr(text, '\n');

	while (line) {
		line++;
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		char kw[128];
		if (n >= sizeof kw)
			n = sizeof kw - 1;
		memcpy(kw, line, n);
		kw[n] = '\0';
		char *arg = kw + strcspn(kw, " =");
		if (*arg)
			*arg++ = '\0';
		if (!strcasecmp(kw, "PIPELINING")) s->pipelining = true;
		else if (!strcasecmp(kw, "CHUNKING")) s->chunking = true;
		else if (!strcasecmp(kw, "8BITMIME")) s->eightbitmime = true;
		else if (!strcasecmp(kw, "SMTPUTF8")) s->smtputf8 = true;
		else if (!strcasecmp(kw, "STARTTLS")) s->starttls = true;
		else if (!strcasecmp(kw, "REQUIRETLS")) s->requiretls = true;
		else if (!strcasecmp(kw, "SIZE")) {
			s->size_ext = true;
			s->size_max = strtoull(arg, NULL, 10);
		}
		else if (!strcasecmp(kw, "AUTH")) {
			char *save;
			for (char *m = strtok_r(arg, " ", &save); m;
			     m = strtok_r(NULL, " ", &save)) {
				if (!strcasecmp(m, "PLAIN")) s->auth_plain = true;
				if (!strcasecmp(m, "LOGIN")) s->auth_login = true;
			}
		}
		line = end;
	}
}

static void append_base64(struct vl_buf *b, const char *data, size_t n)
{
	char *dst = vl_buf_reserve(b, 4 * ((n + 2) / 3) + 1);
	b->len += (size_t)EVP_EncodeBlock((unsigned char *)dst,
					  (const unsigned char *)data, (int)n);
}

static enum eng_act start_auth(struct eng_sess *s)
{
	const struct eng_route *r = s->route;

	if (!s->tls_on)
		return eng_sess_fail(s, "auth", 0, "",
				     "credentials are only ever sent inside TLS");
	if (s->auth_plain) {
		char creds[520];
		size_t u = strlen(r->auth_user), p = strlen(r->auth_pass);
		creds[0] = '\0';
		memcpy(creds + 1, r->auth_user, u);
		creds[1 + u] = '\0';
		memcpy(creds + 2 + u, r->auth_pass, p);
		vl_buf_appends(&s->out, "AUTH PLAIN ");
		append_base64(&s->out, creds, 2 + u + p);
		vl_buf_appends(&s->out, "\r\n");
		enter(s, ENG_S_AUTH);
		return ENG_WAIT;
	}
	if (s->auth_login) {
		vl_buf_appends(&s->out, "AUTH LOGIN\r\n");
		enter(s, ENG_S_AUTH_USER);
		return ENG_WAIT;
	}
	return eng_sess_fail(s, "auth", 0, "", "the peer offers no AUTH PLAIN or LOGIN");
}

/* EHLO/HELO done: STARTTLS as the policy says, then AUTH, then ready.
 * refused: the reply that refused STARTTLS just now, or NULL. */
static enum eng_act after_hello(struct eng_sess *s, const struct eng_reply *refused)
{
	enum tls_policy p = s->route->tls;

	if (!s->tls_on && p != TLS_POLICY_NONE) {
		if (s->starttls && !s->starttls_refused) {
			vl_buf_appends(&s->out, "STARTTLS\r\n");
			enter(s, ENG_S_STARTTLS);
			return ENG_WAIT;
		}
		if (tls_policy_requires_tls(p)) {
			char why[ENG_REPLY_TEXT_MAX + 96];
			if (refused)
				snprintf(why, sizeof why, "STARTTLS refused: %s; TLS policy "
					 "'%s' requires TLS", refused->text, tls_policy_name(p));
			else
				snprintf(why, sizeof why, "STARTTLS not offered; TLS policy "
					 "'%s' requires it", tls_policy_name(p));
			s->tls_failure = "starttls-not-supported";
			return sess_fail(s, "starttls", refused ? refused->code : 0,
					 refused ? refused->enhanced : "", why, false);
		}
	}
	if (s->route->auth_user[0])
		return start_auth(s);
	enter(s, ENG_S_READY);
	return ENG_IDLE;
}

static enum eng_act auth_login_step(struct eng_sess *s, const struct eng_reply *r)
{
	if (r->code != 334)
		return fail_reply(s, r);
	const char *v = s->state == ENG_S_AUTH_USER ? s->route->auth_user
						    : s->route->auth_pass;
	append_base64(&s->out, v, strlen(v));
	vl_buf_appends(&s->out, "\r\n");
	enter(s, s->state == ENG_S_AUTH_USER ? ENG_S_AUTH_PASS : ENG_S_AUTH);
	return ENG_WAIT;
}

enum eng_act eng_sess_tls_done(struct eng_sess *s)
{
	if (s->route->implicit_tls) { /* tls_on: the banner, and no STARTTLS */
		enter(s, ENG_S_BANNER);
		return ENG_WAIT;
	}
	return send_ehlo(s, true); /* RFC 3207 4.2: forget and ask again */
}

/* ---- the transaction ---- */

/* Per message, so without printf's format parsing. */
static void append_path(struct vl_buf *b, const char *verb, const char *addr)
{
	vl_buf_appends(b, verb);
	vl_buf_append(b, ":<", 2);
	vl_buf_appends(b, addr);
	vl_buf_append(b, ">", 1);
}

static void append_num(struct vl_buf *b, const char *before, size_t n, const char *after)
{
	char d[24], *p = d + sizeof d;

	do
		*--p = (char)('0' + n % 10);
	while ((n /= 10));
	vl_buf_appends(b, before);
	vl_buf_append(b, p, (size_t)(d + sizeof d - p));
	vl_buf_appends(b, after);
}

/* A body goes into the output after the commands written so far. */
static void queue_body(struct eng_sess *s, struct eng_txn *t, const struct iovec *v,
		       size_t n, size_t bytes)
{
	if (s->nbodies == ENG_PIPE_MAX) {  /* a bug: one per transaction */
		vl_log(VL_LOG_ERROR, "engine: conn %u.%llu: a body too many in the output",
		       s->id_worker, s->id_conn);
		abort();
	}
	s->bodies[s->nbodies++] = (struct eng_out_body){ s->out.len, v, n, bytes, t };
	t->body_queued = true;
	t->octets += bytes;
}

/* Command k of t: 0 MAIL, 1..count RCPT, count+1 DATA or BDAT (with body). */
static void write_cmd(struct eng_sess *s, struct eng_txn *t, size_t k)
{
	struct eng_msg *m = t->msg;
	size_t before = s->out.len;

	if (k == 0) {
		append_path(&s->out, "MAIL FROM", m->mail_from);
		if (s->size_ext)
			append_num(&s->out, " SIZE=", m->size_, "");
		if (m->eightbit)
			vl_buf_appends(&s->out, " BODY=8BITMIME");
		if (m->smtputf8)
			vl_buf_appends(&s->out, " SMTPUTF8");
		if (m->require_tls)
			vl_buf_appends(&s->out, " REQUIRETLS");
		vl_buf_appends(&s->out, "\r\n");
	} else if (k <= m->count_) {
		append_path(&s->out, "RCPT TO", m->rcpts[m->first_ + k - 1]);
		vl_buf_appends(&s->out, "\r\n");
	} else if (!t->use_bdat) {
		vl_buf_appends(&s->out, "DATA\r\n");
	} else {
		append_num(&s->out, "BDAT ", m->size_, " LAST\r\n");
		queue_body(s, t, m->body, m->nbody, m->size_);
	}
	t->octets += s->out.len - before;
	t->sent = k + 1;
}

/* Refuse without sending: the peer cannot take this message (stage
 * size: permanently), or this connection must not carry it (requiretls:
 * transient). The session stays READY for the next message. */
static bool refuse(struct eng_sess *s, struct eng_msg *m, enum eng_status st,
		   const char *stage, int code, const char *enh, const char *text)
{
	for (size_t i = 0; i < m->count_; i++)
		eng_result_give(m, m->first_ + i, st, code, enh, text, stage, s, false);
	finish_msg(s, m);
	return true;
}

/* RFC 8689 4.2.1: a REQUIRETLS message goes only over TLS whose peer is
 * authenticated (DANE, or a verified chain and name) and that offers
 * REQUIRETLS in its EHLO after STARTTLS. Checked per message: a pooled
 * session carries messages with and without the requirement. NULL: it
 * may go; otherwise why not, in buf. */
static const char *requiretls_refusal(const struct eng_sess *s, char *buf, size_t len)
{
	const char *host = s->route->name[0] ? s->route->name : s->peer;

	if (!s->tls_on)
		snprintf(buf, len, "REQUIRETLS: the connection to %s is not encrypted "
			 "(TLS is required)", host);
	else if (!s->tls_dane && !s->tls_verified)
		snprintf(buf, len, "REQUIRETLS: the connection to %s is not authenticated "
			 "(DANE or a verified certificate is required)", host);
	else if (!s->requiretls)
		snprintf(buf, len, "REQUIRETLS: %s does not advertise REQUIRETLS", host);
	else
		return NULL;
	return buf;
}

/* What the peer or this connection cannot take is refused before any
 * command is sent: true when m got its results so. */
static bool refused_here(struct eng_sess *s, struct eng_msg *m)
{
	char why[400];

	/* first: a host this message must not reach decides nothing about it */
	if (m->require_tls && requiretls_refusal(s, why, sizeof why))
		return refuse(s, m, ENG_TRANSIENT, "requiretls", 0, "", why);
	if (s->size_max && m->size_ > s->size_max) {
		snprintf(why, sizeof why, "message of %zu octets exceeds the "
			 "peer's SIZE limit of %llu", m->size_,
			 (unsigned long long)s->size_max);
		return refuse(s, m, ENG_PERMANENT, "size", 552, "5.3.4", why);
	}
	if (m->eightbit && !s->eightbitmime)
		return refuse(s, m, ENG_PERMANENT, "size", 554, "5.6.3",
			      "8-bit message and the peer offers no 8BITMIME");
	if (m->smtputf8 && !s->smtputf8)
		return refuse(s, m, ENG_PERMANENT, "size", 553, "5.6.7",
			      "internationalised message and the peer offers no SMTPUTF8");
	return false;
}

/* m's next recipients, as many as a transaction takes: the message's
 * route's cap, not the pool's (sites of different limits may share a
 * pool, the same host). */
static void take_chunk(const struct eng_sess *s, struct eng_msg *m)
{
	size_t left = m->nrcpt - m->first_;
	unsigned rmax = m->route ? m->route->max_rcpts_per_txn : 0;
	size_t max = rmax ? rmax : s->cfg->max_rcpts_per_txn ? s->cfg->max_rcpts_per_txn : 100;

	m->count_ = left < max ? left : max;
}

/* A new transaction at the ring's end. */
static struct eng_txn *txn_push(struct eng_sess *s, struct eng_msg *m, bool chunking)
{
	struct eng_txn *t = txn_at(s, s->ntxn++);
	unsigned char *rs = t->rs;
	size_t cap = t->rs_cap;

	if (cap < m->count_) {
		free(rs);
		rs = vl_malloc(m->count_);
		cap = m->count_;
	}
	*t = (struct eng_txn){ .msg = m, .rs = rs, .rs_cap = cap };
	memset(t->rs, RS_PENDING, m->count_);
	t->use_bdat = chunking;
	t->body_with_cmds = chunking && s->pipelining && m->size_ <= BODY_WITH_CMDS_MAX;
	s->nmsgs++;
	return t;
}

enum eng_act eng_sess_start(struct eng_sess *s, struct eng_msg *m)
{
	take_chunk(s, m);
	if (refused_here(s, m))
		return ENG_IDLE;
	struct eng_txn *t = txn_push(s, m, s->chunking);
	if (!t->use_bdat) /* DATA: the body dot-stuffed, sent after the 354 */
		eng_dotstuff(m->body, m->nbody, &s->stuffed);
	enter(s, ENG_S_TXN);
	size_t ncmd = s->pipelining ? m->count_ + 1 + (t->use_bdat ? t->body_with_cmds : 1) : 1;
	for (size_t k = 0; k < ncmd; k++)
		write_cmd(s, t, k);
	return ENG_WAIT;
}

/* Octets outstanding: what the transactions wrote (commands, bodies). */
static size_t pipe_octets(struct eng_sess *s)
{
	size_t n = 0;

	for (unsigned i = 0; i < s->ntxn; i++)
		n += txn_at(s, i)->octets;
	return n;
}

bool eng_sess_pipe_open(const struct eng_sess *s)
{
	if (s->state != ENG_S_TXN || !s->pipelining || !s->chunking || !s->ntxn ||
	    s->ntxn >= ENG_PIPE_MAX)
		return false;
	/* the last one all written (MAIL, RCPTs, BDAT LAST and body): its
	 * replies will all come before the next one's */
	const struct eng_txn *last = &s->txn[(s->head + s->ntxn - 1) % ENG_PIPE_MAX];
	return last->use_bdat && last->body_queued && last->sent == last->msg->count_ + 2;
}

bool eng_sess_pipe(struct eng_sess *s, struct eng_msg *m)
{
	if (!eng_sess_pipe_open(s) || m->size_ > BODY_WITH_CMDS_MAX ||
	    pipe_octets(s) + m->size_ > ENG_PIPE_OCTETS)
		return false;
	take_chunk(s, m);
	if (refused_here(s, m))
		return true;
	struct eng_txn *t = txn_push(s, m, true);
	/* RFC 2920 3.1 lets RSET go anywhere in a group. The transaction
	 * before may end refused with the server's still open (a BDAT
	 * refused for want of recipients): this one's MAIL would be a
	 * nested MAIL, and its RCPTs would join the other sender's. */
	vl_buf_appends(&s->out, "RSET\r\n");
	t->rset_first = true;
	t->octets = 6;
	for (size_t k = 0; k < m->count_ + 2; k++)
		write_cmd(s, t, k);
	return true;
}

/* The final reply: after DATA's dot, or to BDAT LAST. */
static enum eng_act final_reply(struct eng_sess *s, struct eng_txn *t,
				const struct eng_reply *r)
{
	if (t->body_ns && s->now_ns >= t->body_ns)
		s->reply_ns = s->now_ns - t->body_ns + 1; /* never 0: measured */
	if (!t->dead)
		for (size_t i = 0; i < t->msg->count_; i++)
			if (t->rs[i] == RS_ACCEPTED)
				give_reply(s, t, i, r, "dot");
	s->reply_ns = 0;
	give_rest(s, t, -1, ENG_TRANSIENT, r->code, r->enhanced,
		  "no recipient accepted", "rcpt", false);
	/* A refused BDAT LAST may leave the transaction open: reset it. */
	return end_txn(s, t->use_bdat && !(r->code >= 200 && r->code < 300));
}

static enum eng_act txn_reply(struct eng_sess *s, const struct eng_reply *r)
{
	struct eng_txn *t = eng_sess_head(s);
	struct eng_msg *m = t->msg;
	bool ok = r->code >= 200 && r->code < 300;

	if (t->rset_first) { /* the RSET before a pipelined transaction */
		if (!ok)
			return fail_reply(s, r);
		t->rset_first = false;
		return ENG_WAIT;
	}
	size_t k = t->pos++;
	if (k == 0 && !ok) { /* MAIL refused: every recipient gets its reply */
		for (size_t i = 0; i < m->count_; i++)
			give_reply(s, t, i, r, "mail");
		t->dead = true;
	} else if (k >= 1 && k <= m->count_) {
		if (t->dead)
			;
		else if (ok)
			t->rs[k - 1] = RS_ACCEPTED, t->accepted++;
		else
			give_reply(s, t, k - 1, r, "rcpt");
	} else if (k == m->count_ + 1) {
		if (t->use_bdat)
			return final_reply(s, t, r);
		if (r->code == 354 && t->accepted && !t->dead) {
			queue_body(s, t, s->stuffed.v, s->stuffed.n, s->stuffed.bytes);
			enter(s, ENG_S_BODY);
			return ENG_WAIT;
		}
		if (r->code == 354) { /* no recipient, yet 354: end it empty */
			vl_buf_appends(&s->out, ".\r\n");
			t->dead = true;
			enter(s, ENG_S_BODY);
			return ENG_WAIT;
		}
		give_rest(s, t, RS_ACCEPTED, status_of(r->code), r->code, r->enhanced,
			  r->text, "data", false);
		return end_txn(s, true);
	}
	if (t->pos < t->sent)
		return ENG_WAIT; /* more pipelined replies to come */
	/* All replies to what was sent are in: send the next step. */
	if (t->dead || (k == m->count_ && t->accepted == 0)) {
		give_rest(s, t, -1, ENG_TRANSIENT, r->code, r->enhanced, r->text, "rcpt", false);
		return end_txn(s, true);
	}
	write_cmd(s, t, t->sent);
	return ENG_WAIT;
}

enum eng_act eng_sess_reply(struct eng_sess *s, const struct eng_reply *r)
{
	bool ok = r->code >= 200 && r->code < 300;

	if (r->code == 421 && s->state != ENG_S_QUIT)
		return fail_reply(s, r); /* the server is closing (RFC 5321 3.8) */
	switch (s->state) {
	case ENG_S_BANNER:
		return ok ? send_ehlo(s, true) : fail_reply(s, r);
	case ENG_S_EHLO:
		if (ok) {
			parse_ehlo(s, r->text);
			return after_hello(s, NULL);
		}
		return r->code >= 500 ? send_ehlo(s, false) : fail_reply(s, r);
	case ENG_S_HELO:
		return ok ? after_hello(s, NULL) : fail_reply(s, r);
	case ENG_S_STARTTLS:
		if (r->code == 220) {
			enter(s, ENG_S_TLS);
			return ENG_STARTTLS;
		}
		s->starttls_refused = true;
		return after_hello(s, r);
	case ENG_S_AUTH:
		if (r->code == 235) {
			enter(s, ENG_S_READY);
			return ENG_IDLE;
		}
		return fail_reply(s, r);
	case ENG_S_AUTH_USER:
	case ENG_S_AUTH_PASS:
		return auth_login_step(s, r);
	case ENG_S_TXN:
		return txn_reply(s, r);
	case ENG_S_BODY:
		return final_reply(s, eng_sess_head(s), r);
	case ENG_S_RSET:
		if (!ok)
			return fail_reply(s, r);
		enter(s, ENG_S_READY);
		return ENG_IDLE;
	case ENG_S_QUIT:
		enter(s, ENG_S_CLOSED);
		return ENG_CLOSE;
	default:
		return eng_sess_fail(s, eng_sess_stage(s), r->code, r->enhanced,
				     "unexpected reply");
	}
}

enum eng_act eng_sess_quit(struct eng_sess *s)
{
	vl_buf_appends(&s->out, "QUIT\r\n");
	enter(s, ENG_S_QUIT);
	return ENG_WAIT;
}
