/*
 * What makes smtpd a sink: scripted reply rules and fault dice for every
 * command, --auth's one account, and the maildir store (or nothing) for
 * messages.
 */
#include "sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sink_ctx_init(struct sink_ctx *x, const struct sink_conf *conf, unsigned worker,
		   struct sink_store *store, struct sink_prof_shared *prof,
		   struct sink_alog *alog)
{
	*x = (struct sink_ctx){ .conf = conf, .store = store, .prof = prof, .alog = alog,
				.rng = conf->seed + worker * 0x9e3779b97f4a7c15ull };
}

/* ---- --profile: the pure decisions (sink_profile.c) under the shared
 * table's lock; the session's share lives in s->user ---- */

static struct smtpd_verdict prof_verdict(struct sink_ctx *x, struct smtpd_sess *s,
					 enum sink_prof_reason r)
{
	char ip[48];

	sink_prof_peer_addr(s->peer, ip, sizeof ip);
	int code = sink_prof_reply(&x->conf->profile, r, ip, s->hook_reply,
				   sizeof s->hook_reply);
	return (struct smtpd_verdict){ SMTPD_V_REPLY, code, s->hook_reply };
}

static enum sink_prof_reason prof_check(struct sink_ctx *x, struct smtpd_sess *s,
					enum smtpd_stage st)
{
	const struct sink_profile *p = &x->conf->profile;
	enum sink_prof_reason r;
	uint64_t now = vl_now_ms();
	char ip[48];

	if (st == SMTPD_ST_CONNECT) { /* once a session */
		sink_prof_peer_addr(s->peer, ip, sizeof ip);
		s->user = vl_calloc(1, sizeof(struct sink_prof_sess));
	}
	pthread_mutex_lock(&x->prof->mu);
	if (st == SMTPD_ST_CONNECT) {
		r = sink_prof_connect(p, &x->prof->t, ip, now, s->user);
	} else {
		r = s->user ? sink_prof_command(p, s->user, st, s->nrcpt, now) : SINK_PR_OK;
	}
	pthread_mutex_unlock(&x->prof->mu);
	return r;
}

static void prof_accepted(struct sink_ctx *x, struct smtpd_sess *s)
{
	if (!x->prof || !s->user)
		return;
	pthread_mutex_lock(&x->prof->mu);
	sink_prof_accepted(s->user, s->nrcpt);
	pthread_mutex_unlock(&x->prof->mu);
}

static void closed(void *arg, struct smtpd_sess *s)
{
	struct sink_ctx *x = arg;

	if (!s->user)
		return;
	if (x->prof) {
		pthread_mutex_lock(&x->prof->mu);
		sink_prof_close(s->user);
		pthread_mutex_unlock(&x->prof->mu);
	}
	free(s->user);
	s->user = NULL;
}

static bool rcpt_matches(const struct smtpd_sess *s, const char *pattern)
{
	const char *r = s->rcpts.p;

	for (int i = 0; i < s->nrcpt; i++) {
		if (vl_glob_match(pattern, r))
			return true;
		r += strlen(r) + 1;
	}
	return false;
}

/* The client's IP address (peer without its port or brackets). */
static bool client_matches(const struct smtpd_sess *s, const char *glob)
{
	char ip[64];
	const char *p = s->peer;
	size_t n;

	if (*p == '[') {
		p++;
		n = strcspn(p, "]");
	} else {
		const char *colon = strrchr(p, ':');
		n = colon && strchr(p, ':') == colon ? (size_t)(colon - p) : strlen(p);
	}
	snprintf(ip, sizeof ip, "%.*s", (int)n, p);
	return vl_glob_match(glob, ip);
}

static const struct sink_rule *find_rule(const struct sink_conf *c,
					 const struct smtpd_sess *s,
					 enum smtpd_stage st, const char *arg)
{
	for (int i = 0; i < c->nrules; i++) {
		const struct sink_rule *r = &c->rules[i];
		if (r->stage != st || (r->client && !client_matches(s, r->client)))
			continue;
		if (!r->pattern)
			return r;
		if (st == SMTPD_ST_DATA || st == SMTPD_ST_DOT) {
			if (rcpt_matches(s, r->pattern))
				return r;
		} else if (arg && vl_glob_match(r->pattern, arg)) {
			return r;
		}
	}
	return NULL;
}

static const char *const temp_text[] = {
	[SMTPD_ST_CONNECT] = "421 4.3.2 Service temporarily unavailable (injected)\r\n",
	[SMTPD_ST_HELO] = "451 4.3.0 Temporary failure (injected)\r\n",
	[SMTPD_ST_MAIL] = "451 4.3.0 Temporary failure (injected)\r\n",
	[SMTPD_ST_RCPT] = "450 4.2.0 Mailbox temporarily unavailable (injected)\r\n",
	[SMTPD_ST_DATA] = "451 4.3.0 Temporary failure (injected)\r\n",
	[SMTPD_ST_DOT] = "451 4.3.0 Message not accepted, try again (injected)\r\n",
};

static const char *const perm_text[] = {
	[SMTPD_ST_CONNECT] = "554 5.3.2 No SMTP service here (injected)\r\n",
	[SMTPD_ST_HELO] = "550 5.7.1 Client rejected (injected)\r\n",
	[SMTPD_ST_MAIL] = "550 5.7.1 Sender rejected (injected)\r\n",
	[SMTPD_ST_RCPT] = "550 5.1.1 No such user (injected)\r\n",
	[SMTPD_ST_DATA] = "554 5.3.0 Transaction failed (injected)\r\n",
	[SMTPD_ST_DOT] = "554 5.6.0 Message rejected (injected)\r\n",
};

/* Scripted rules first, then the fault dice. */
static struct smtpd_verdict check(void *arg, struct smtpd_sess *s, enum smtpd_stage st,
				  const char *argument)
{
	struct sink_ctx *x = arg;
	const struct sink_conf *c = x->conf;
	const struct sink_rule *r = find_rule(c, s, st, argument);

	if (r) {
		switch (r->kind) {
		case SINK_RULE_DROP: return (struct smtpd_verdict){ SMTPD_V_DROP, 0, NULL };
		case SINK_RULE_STALL: return (struct smtpd_verdict){ SMTPD_V_STALL, 0, NULL };
		case SINK_RULE_RAW: return (struct smtpd_verdict){ SMTPD_V_RAW, 0, r->reply };
		case SINK_RULE_REPLY:
			return (struct smtpd_verdict){ SMTPD_V_REPLY, r->code, r->reply };
		}
	}
	if (x->prof) {
		enum sink_prof_reason pr = prof_check(x, s, st);
		if (pr != SINK_PR_OK)
			return prof_verdict(x, s, pr);
	}
	if (st > SMTPD_ST_DOT)
		return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
	if (c->disconnect.stage == st && vl_chance(&x->rng, c->disconnect.pct))
		return (struct smtpd_verdict){ SMTPD_V_DROP, 0, NULL };
	const struct sink_fault *f[2] = {&c->permfail, &c->tempfail};
	const char *const *texts[2] = {perm_text, temp_text};
	for (int i = 0; i < 2; i++)
		if (f[i]->stage == st && vl_chance(&x->rng, f[i]->pct))
			return (struct smtpd_verdict){ SMTPD_V_REPLY, atoi(texts[i][st]),
						       texts[i][st] };
	return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
}

static struct smtpd_verdict auth(void *arg, struct smtpd_sess *s, const char *user,
				 const char *pass)
{
	const struct sink_conf *c = ((struct sink_ctx *)arg)->conf;

	(void)s;
	if (c->auth_user && !strcmp(user, c->auth_user) && !strcmp(pass, c->auth_pass))
		return (struct smtpd_verdict){ SMTPD_V_REPLY, 235, NULL };
	return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
}

/* The end of data: a dot rule or fault, else stored (or discarded). */
static struct smtpd_verdict message(void *arg, struct smtpd_sess *s,
				    const struct smtpd_envelope *env, const char *msg,
				    size_t len)
{
	struct sink_ctx *x = arg;
	struct smtpd_verdict v = check(arg, s, SMTPD_ST_DOT, NULL);

	if (v.kind != SMTPD_V_DEFAULT && !(v.kind == SMTPD_V_REPLY && v.code < 400))
		return v;
	if (x->store && sink_store_put(x->store, env, msg, len) < 0)
		return (struct smtpd_verdict){ SMTPD_V_REPLY, 451,
					       "451 4.3.0 Error: cannot store message\r\n" };
	prof_accepted(x, s);
	if (x->alog)
		sink_alog_put(x->alog, env);
	return v;
}

const struct smtpd_hooks sink_hooks = { .check = check, .auth = auth, .message = message,
					.closed = closed };
