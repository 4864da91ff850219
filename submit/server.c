/*
 * volleyd's SMTP listeners on smtpd/: the submission listener (RFC 6409 on
 * 587 with STARTTLS, RFC 8314 on 465; AUTH required, only inside TLS) and
 * the return-path receiver (mail for the configured bounce domains only).
 * This file is the hooks and the threads around them:
 *   - AUTH: the password check (crypt, slow by design) runs on a small
 *     pool; a failure's answer waits as the limiter says, on the same pool;
 *   - a submitted message is prepared (msg_submit_prepare), checked
 *     against its user's settings, and put to the submission log, which
 *     answers once it is durable; the 250 goes then;
 *   - a message to the return-path domains goes to the feedback inbox.
 */
#include "submit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../message/message.h"

#define AUTH_THREADS 2
#define AUTH_QUEUE_MAX 1024      /* checks waiting: more get 454 at once */

/* A password check, or a failure's answer waiting for its time. */
struct auth_job {
	struct smtpd_sess *s;
	char user[256];
	char pass[SUB_PASS_MAX + 1];
	struct sockaddr_storage sa;
	uint64_t due_ms;             /* answer (535) at; 0: check first */
	struct auth_job *next;
};

/* A user's acceptance rate (its rate_limit): a token bucket. */
struct user_rate {
	char *name;
	double tokens, per_s;
	uint64_t last_ms;
};

struct role {
	struct sub_server *srv;
	struct smtpd_conf conf;
	SSL_CTX *tls;
	struct smtpd_worker **w;
	pthread_t *tid;
	int nthreads, started;
};

struct sub_server {
	const struct cfg *cfg;
	struct sched_spool *spool;
	_Atomic uint64_t spool_used;   /* measured every few seconds (AUTH threads) */
	uint64_t spool_measured_ms;
	struct sub_log *log;
	struct sub_inbox *inbox;
	_Atomic(struct sub_users *) users; /* the newest; SIGHUP loads another */
	struct sub_users **old_users;  /* kept until stop: sessions may hold them */
	size_t nold_users;
	struct sub_authlimit *limit;
	struct role sub, fb;
	atomic_bool stop;
	_Atomic uint64_t conns_open;

	pthread_mutex_t mu;          /* the auth queues and the rate table */
	pthread_cond_t cv;
	struct auth_job *checks, *checks_tail, *delayed;
	size_t nchecks;
	bool auth_stop;
	pthread_t auth_tid[AUTH_THREADS];
	int nauth;
	struct user_rate *rates;
	size_t nrates;

	_Atomic uint64_t refused_from, refused_rate, refused_queue, auth_busy;
};

/* A message on its way to the log or the inbox. */
struct pending {
	struct smtpd_sess *s;
	struct msg_submit prep;
	struct vl_buf msg;           /* what is stored: prep's head and body */
	const char **rcpts;
};

static struct smtpd_verdict v_default(void)
{
	return (struct smtpd_verdict){ SMTPD_V_DEFAULT, 0, NULL };
}

static struct smtpd_verdict v_pending(void)
{
	return (struct smtpd_verdict){ SMTPD_V_PENDING, 0, NULL };
}

/* A refusal, its text in the session's hook_reply. */
static struct smtpd_verdict v_reply(struct smtpd_sess *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static struct smtpd_verdict v_reply(struct smtpd_sess *s, int code, const char *fmt, ...)
{
	char text[SMTPD_REPLY_MAX - 8];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	smtpd_reply_fmt(s->hook_reply, sizeof s->hook_reply, code, "%s", text);
	return (struct smtpd_verdict){ SMTPD_V_REPLY, code, s->hook_reply };
}

static bool peer_sockaddr(const char *peer, struct sockaddr_storage *ss)
{
	char host[64];
	uint16_t port;

	memset(ss, 0, sizeof *ss);
	if (vl_parse_hostport(peer, host, sizeof host, &port) < 0)
		return false;
	struct sockaddr_in *a4 = (void *)ss;
	struct sockaddr_in6 *a6 = (void *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

static const char *addr_domain(const char *a)
{
	const char *at = strrchr(a, '@');
	return at ? at + 1 : "";
}

/* ---- AUTH ---- */

static void auth_answer(struct sub_server *v, struct auth_job *j)
{
	const struct sub_user *u = NULL;
	uint64_t now = vl_now_ms();

	if (sub_users_verify_at(atomic_load(&v->users), j->user, j->pass, now, &u) == 0) {
		explicit_bzero(j->pass, sizeof j->pass);
		smtpd_sess_resume(j->s, 235, NULL);
		free(j);
		return;
	}
	explicit_bzero(j->pass, sizeof j->pass);
	uint32_t wait = sub_authlimit_fail(v->limit, (struct sockaddr *)&j->sa, now);
	vl_log(VL_LOG_WARN, "submission: AUTH failed for '%s' from %s%s", j->user, j->s->peer,
	       wait ? " (answer delayed)" : "");
	if (!wait) {
		smtpd_sess_resume(j->s, 535, NULL);
		free(j);
		return;
	}
	j->due_ms = now + wait;
	pthread_mutex_lock(&v->mu);
	j->next = v->delayed;
	v->delayed = j;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
}

/* Delayed answers that are due, taken off the list (under mu). */
static struct auth_job *take_due(struct sub_server *v, uint64_t now, uint64_t *next)
{
	struct auth_job *due = NULL, **p = &v->delayed;

	*next = UINT64_MAX;
	while (*p) {
		struct auth_job *j = *p;
		if (j->due_ms <= now || v->auth_stop) {
			*p = j->next;
			j->next = due;
			due = j;
		} else {
			*next = j->due_ms < *next ? j->due_ms : *next;
			p = &j->next;
		}
	}
	return due;
}

/* spool.max_bytes: the spool's size, measured on these threads every few
 * seconds (a walk of jobs/: never on an SMTP worker). Under mu. */
#define SPOOL_MEASURE_MS 5000
static bool spool_measure_due(struct sub_server *v)
{
	uint64_t now = vl_now_ms();

	if (!v->cfg->spool.max_bytes || !v->spool || v->auth_stop ||
	    now < v->spool_measured_ms + SPOOL_MEASURE_MS)
		return false;
	v->spool_measured_ms = now;
	return true;
}

static void *auth_main(void *arg)
{
	struct sub_server *v = arg;

	vl_thread_name("vl-auth");
	pthread_mutex_lock(&v->mu);
	for (;;) {
		uint64_t next;
		struct auth_job *due = take_due(v, vl_now_ms(), &next);
		if (due) {
			pthread_mutex_unlock(&v->mu);
			for (struct auth_job *j = due, *n; j; j = n) {
				n = j->next;
				smtpd_sess_resume(j->s, 535, NULL);
				free(j);
			}
			pthread_mutex_lock(&v->mu);
			continue;
		}
		if (v->checks) {
			struct auth_job *j = v->checks;
			v->checks = j->next;
			if (!v->checks)
				v->checks_tail = NULL;
			v->nchecks--;
			pthread_mutex_unlock(&v->mu);
			auth_answer(v, j);
			pthread_mutex_lock(&v->mu);
			continue;
		}
		if (v->auth_stop && !v->delayed)
			break;
		if (spool_measure_due(v)) {
			pthread_mutex_unlock(&v->mu);
			atomic_store(&v->spool_used, sched_spool_used_bytes(v->spool));
			pthread_mutex_lock(&v->mu);
			continue;
		}
		if (v->cfg->spool.max_bytes && v->spool)
			next = next < v->spool_measured_ms + SPOOL_MEASURE_MS ? next :
			       v->spool_measured_ms + SPOOL_MEASURE_MS;
		if (next == UINT64_MAX) {
			pthread_cond_wait(&v->cv, &v->mu);
		} else {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t wait = next - vl_now_ms();
			ts.tv_sec += (time_t)(wait / 1000);
			ts.tv_nsec += (long)(wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&v->cv, &v->mu, &ts);
		}
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

static struct smtpd_verdict hook_auth(void *arg, struct smtpd_sess *s, const char *user,
				      const char *pass)
{
	struct sub_server *v = arg;

	if (strlen(pass) > SUB_PASS_MAX || strlen(user) >= sizeof ((struct auth_job *)0)->user)
		return v_default();          /* 535 */
	struct auth_job *j = vl_calloc(1, sizeof *j);
	j->s = s;
	snprintf(j->user, sizeof j->user, "%s", user);
	snprintf(j->pass, sizeof j->pass, "%s", pass);
	peer_sockaddr(s->peer, &j->sa);
	pthread_mutex_lock(&v->mu);
	if (v->nchecks >= AUTH_QUEUE_MAX || v->auth_stop) {
		pthread_mutex_unlock(&v->mu);
		explicit_bzero(j->pass, sizeof j->pass);
		free(j);
		atomic_fetch_add(&v->auth_busy, 1);
		return v_reply(s, 454, "4.7.0 Temporary authentication failure, try again later");
	}
	if (v->checks_tail)
		v->checks_tail->next = j;
	else
		v->checks = j;
	v->checks_tail = j;
	v->nchecks++;
	pthread_cond_signal(&v->cv);
	pthread_mutex_unlock(&v->mu);
	return v_pending();
}

/* ---- submission: envelope ---- */

static const struct sub_user *session_user(struct sub_server *v, const struct smtpd_sess *s)
{
	return s->auth_user[0] ? sub_users_find(atomic_load(&v->users), s->auth_user) : NULL;
}

static struct smtpd_verdict sub_check(void *arg, struct smtpd_sess *s, enum smtpd_stage st,
				      const char *a)
{
	struct sub_server *v = arg;
	const struct sub_user *u = session_user(v, s);
	char why[128];
	bool utf8;

	if (st == SMTPD_ST_MAIL && ((v->cfg->spool.max_bytes &&
				     atomic_load(&v->spool_used) >= v->cfg->spool.max_bytes) ||
				    sched_spool_free_bytes(v->spool) < v->cfg->spool.min_free))
		return v_reply(s, 452, "4.3.1 Insufficient system storage, try again later");
	if (st == SMTPD_ST_MAIL && u && *a && !sub_user_from_ok(u, addr_domain(a))) {
		atomic_fetch_add(&v->refused_from, 1);
		return v_reply(s, 550, "5.7.1 Sender address domain %s is not allowed for user %s",
			       addr_domain(a), u->name);
	}
	if (st == SMTPD_ST_MAIL && *a && msg_addr_check(a, strlen(a), &utf8, why, sizeof why) < 0)
		return v_reply(s, 553, "5.1.7 Bad sender address: %s", why);
	if (st == SMTPD_ST_RCPT) {
		if (msg_addr_check(a, strlen(a), &utf8, why, sizeof why) < 0)
			return v_reply(s, 553, "5.1.3 Bad recipient address: %s", why);
		if (u && (uint64_t)s->nrcpt >= u->max_recipients)
			return v_reply(s, 452, "4.5.3 Too many recipients (at most %llu a message)",
				       (unsigned long long)u->max_recipients);
	}
	return v_default();
}

/* ---- submission: the message ---- */

/* May u submit one more message now? Its rate_limit as a token bucket
 * with a burst of one second's worth (at least one message). */
static bool rate_ok(struct sub_server *v, const struct sub_user *u)
{
	if (u->rate_per_s <= 0)
		return true;
	uint64_t now = vl_now_ms();
	bool ok = false;
	pthread_mutex_lock(&v->mu);
	struct user_rate *r = NULL;
	for (size_t i = 0; i < v->nrates && !r; i++)
		if (!strcmp(v->rates[i].name, u->name))
			r = &v->rates[i];
	if (!r) {
		v->rates = vl_realloc(v->rates, (v->nrates + 1) * sizeof *v->rates);
		r = &v->rates[v->nrates++];
		double burst = u->rate_per_s > 1 ? u->rate_per_s : 1;
		*r = (struct user_rate){ vl_strdup(u->name), burst, u->rate_per_s, now };
	}
	double burst = r->per_s > 1 ? r->per_s : 1;
	r->tokens += (double)(now - r->last_ms) / 1000.0 * r->per_s;
	r->tokens = r->tokens > burst ? burst : r->tokens;
	r->last_ms = now;
	if (r->tokens >= 1) {
		r->tokens -= 1;
		ok = true;
	}
	pthread_mutex_unlock(&v->mu);
	return ok;
}

static void pending_free(struct pending *p)
{
	msg_submit_free(&p->prep);
	vl_buf_free(&p->msg);
	free(p->rcpts);
	free(p);
}

static void logged(void *arg, int rc, const char *id)
{
	struct pending *p = arg;
	char text[160];

	if (rc == 0) {
		snprintf(text, sizeof text, "250 2.0.0 Ok: queued as %s\r\n", id);
		smtpd_sess_resume(p->s, 250, text);
	} else if (errno == ENOSPC) {
		smtpd_sess_resume(p->s, 452, "452 4.3.1 Insufficient system storage\r\n");
	} else {
		smtpd_sess_resume(p->s, 451, "451 4.3.0 Error: the message could not be stored, "
				  "try again\r\n");
	}
	pending_free(p);
}

static struct smtpd_verdict put_refused(struct sub_server *v, struct smtpd_sess *s,
					const char *why)
{
	switch (errno) {
	case EAGAIN:
		atomic_fetch_add(&v->refused_queue, 1);
		return v_reply(s, 451, "4.3.0 Too busy to take the message now, try again");
	case EMSGSIZE:
		return v_reply(s, 552, "5.3.4 Message size exceeds fixed limit");
	case EINVAL:
		return v_reply(s, 554, "5.6.0 %s", why);
	default:
		return v_reply(s, 451, "4.3.0 The message cannot be stored now, try again");
	}
}

static struct smtpd_verdict sub_message(void *arg, struct smtpd_sess *s,
					const struct smtpd_envelope *e, const char *msg,
					size_t len)
{
	struct sub_server *v = arg;
	const struct sub_user *u = session_user(v, s);
	struct msg_err me = { 0 };
	char why[256] = "", jid[SCHED_ID_LEN + 1];

	if (!u)
		return v_reply(s, 451, "4.7.0 The user is no longer known, try again");
	/* the job's id is the Message-ID's, when one is added */
	sched_new_id(jid);
	struct msg_submit_opts o = { .msg_id = jid, .hostname = v->cfg->hostname };
	struct pending *p = vl_calloc(1, sizeof *p);
	p->s = s;
	msg_submit_init(&p->prep);
	vl_buf_init(&p->msg);
	if (msg_submit_prepare(msg, len, &o, &p->prep, &me) < 0) {
		pending_free(p);
		return v_reply(s, 554, "5.6.0 %s", me.message);
	}
	if (!sub_user_from_ok(u, p->prep.from_domain)) {
		atomic_fetch_add(&v->refused_from, 1);
		struct smtpd_verdict r = v_reply(s, 550, "5.7.1 From domain %s is not allowed for "
						 "user %s", p->prep.from_domain, u->name);
		pending_free(p);
		return r;
	}
	if (!rate_ok(v, u)) {
		atomic_fetch_add(&v->refused_rate, 1);
		pending_free(p);
		return v_reply(s, 451, "4.7.1 User %s is over its rate limit (%s), try later",
			       u->name, u->rate_limit);
	}
	vl_buf_append(&p->msg, p->prep.head.p, p->prep.head.len);
	vl_buf_append(&p->msg, p->prep.body, p->prep.body_len);
	p->rcpts = vl_calloc((size_t)e->nrcpt, sizeof *p->rcpts);
	const char *r = e->rcpts;
	for (int i = 0; i < e->nrcpt; i++, r += strlen(r) + 1)
		p->rcpts[i] = r;
	struct sub_item it = {
		.id = "",
		.sender = e->mail_from, .rcpts = p->rcpts, .nrcpt = (size_t)e->nrcpt,
		.msg = p->msg.p, .len = p->msg.len,
		.campaign = p->prep.campaign[0] ? p->prep.campaign : u->campaign,
		.transactional = p->prep.priority == MSG_PRIO_NONE ? u->transactional
				 : p->prep.priority == MSG_PRIO_TRANSACTIONAL,
		.expires_in_ms = p->prep.expires_ms, .no_dkim = !u->dkim,
		.require_tls = e->requiretls, .user = u->name, .client = e->peer,
		.done = logged, .arg = p,
	};
	memcpy(it.id, jid, sizeof jid);
	if (sub_log_check(v->log, &it, why, sizeof why) < 0 || sub_log_put(v->log, &it) < 0) {
		struct smtpd_verdict rv = put_refused(v, s, why);
		pending_free(p);
		return rv;
	}
	return v_pending();
}

/* ---- the return-path receiver ---- */

static struct smtpd_verdict fb_check(void *arg, struct smtpd_sess *s, enum smtpd_stage st,
				     const char *a)
{
	struct sub_server *v = arg;
	const struct cfg_feedback *f = &v->cfg->feedback;

	if (st != SMTPD_ST_RCPT)
		return v_default();
	const char *dom = addr_domain(a);
	for (size_t i = 0; i < f->ndomains; i++)
		if (!strcasecmp(dom, f->domains[i]))
			return v_default();
	return v_reply(s, 550, "5.7.1 <%s>: Relay access denied", a);
}

static void stored(void *arg, int rc, const char *id)
{
	struct smtpd_sess *s = arg;
	char text[160];

	if (rc == 0) {
		snprintf(text, sizeof text, "250 2.0.0 Ok: queued as %s\r\n", id);
		smtpd_sess_resume(s, 250, text);
	} else {
		smtpd_sess_resume(s, 451, "451 4.3.0 Error: the message could not be stored, "
				  "try again\r\n");
	}
}

static struct smtpd_verdict fb_message(void *arg, struct smtpd_sess *s,
				       const struct smtpd_envelope *e, const char *msg,
				       size_t len)
{
	struct sub_server *v = arg;

	if (sub_inbox_put(v->inbox, v->cfg->hostname, e, msg, len, stored, s) < 0)
		return v_reply(s, 451, "4.3.0 Too busy to take the message now, try again");
	return v_pending();
}

static const struct smtpd_hooks sub_hooks = { .check = sub_check, .auth = hook_auth,
					      .message = sub_message };
static const struct smtpd_hooks fb_hooks = { .check = fb_check, .message = fb_message };

/* ---- threads ---- */

struct run_arg {
	struct smtpd_worker *w;
	atomic_bool *stop;
};

static void *worker_main(void *arg)
{
	struct run_arg *a = arg;

	vl_thread_name("vl-smtpd");
	smtpd_worker_run(a->w, a->stop);
	free(a);
	return NULL;
}

static void role_conf(struct smtpd_conf *d, const struct cfg *c, uint64_t max_size)
{
	memset(d, 0, sizeof *d);
	snprintf(d->hostname, sizeof d->hostname, "%s", c->hostname);
	d->banner = "volley";
	d->strict_data = d->keep_message = true;
	d->max_size = max_size ? max_size : c->max_message_size;
	d->max_rcpts = SUB_RCPT_MAX;
	d->timeout_ms = 300000;      /* RFC 5321 4.5.3.2.7 */
}

static int add_listen(struct smtpd_conf *d, const struct cfg_listen *l, bool implicit,
		      char *err, size_t errlen)
{
	if (d->nlisten >= SMTPD_MAX_LISTEN) {
		snprintf(err, errlen, "%s: too many listen addresses", l->text);
		return -1;
	}
	struct smtpd_listen *o = &d->listen[d->nlisten++];
	snprintf(o->host, sizeof o->host, "%s", l->host);
	o->port = l->port;
	o->implicit_tls = implicit;
	return 0;
}

static int role_start(struct role *r, const struct smtpd_hooks *h, int threads, char *err,
		      size_t errlen)
{
	struct sub_server *v = r->srv;

	r->nthreads = threads;
	r->w = vl_calloc((size_t)threads, sizeof *r->w);
	r->tid = vl_calloc((size_t)threads, sizeof *r->tid);
	for (int i = 0; i < threads; i++)
		if (!(r->w[i] = smtpd_worker_new(&r->conf, h, v, (unsigned)i, r->tls,
						 &v->conns_open, err, errlen)))
			return -1;
	for (; r->started < threads; r->started++) {
		struct run_arg *a = vl_malloc(sizeof *a);
		*a = (struct run_arg){ r->w[r->started], &v->stop };
		if (pthread_create(&r->tid[r->started], NULL, worker_main, a) != 0) {
			free(a);
			snprintf(err, errlen, "cannot start an SMTP worker thread");
			return -1;
		}
	}
	return 0;
}

static void role_join(struct role *r)
{
	for (int i = 0; i < r->started; i++)
		pthread_join(r->tid[i], NULL);
	r->started = 0;
}

static void role_free(struct role *r)
{
	for (int i = 0; i < r->nthreads; i++)
		smtpd_worker_free(r->w[i]);
	free(r->w);
	free(r->tid);
	tls_ctx_free(r->tls);
	r->w = NULL;
	r->tid = NULL;
	r->tls = NULL;
}

static int start_submission(struct sub_server *v, char *err, size_t errlen)
{
	const struct cfg_submission *c = &v->cfg->submission;
	struct role *r = &v->sub;

	role_conf(&r->conf, v->cfg, c->max_message_size);
	r->conf.starttls = c->nlisten > 0;
	r->conf.auth = r->conf.requiretls = true;
	for (size_t i = 0; i < c->nlisten; i++)
		if (add_listen(&r->conf, &c->listen[i], false, err, errlen) < 0)
			return -1;
	for (size_t i = 0; i < c->nimplicit_tls; i++)
		if (add_listen(&r->conf, &c->implicit_tls[i], true, err, errlen) < 0)
			return -1;
	struct sub_users *u = sub_users_load(c->users, c, err, errlen);
	atomic_store(&v->users, u);
	if (!u ||
	    !(r->tls = tls_server_ctx_new(c->cert, c->key, v->cfg->hostname, err, errlen)))
		return -1;
	v->limit = sub_authlimit_new(NULL);
	for (; v->nauth < AUTH_THREADS; v->nauth++)
		if (pthread_create(&v->auth_tid[v->nauth], NULL, auth_main, v) != 0) {
			snprintf(err, errlen, "cannot start the AUTH threads");
			return -1;
		}
	return role_start(r, &sub_hooks, c->threads > 0 ? (int)c->threads : 1, err, errlen);
}

static int start_feedback(struct sub_server *v, char *err, size_t errlen)
{
	const struct cfg_feedback *f = &v->cfg->feedback;
	const struct cfg_submission *c = &v->cfg->submission;
	struct role *r = &v->fb;

	role_conf(&r->conf, v->cfg, f->max_message_size);
	for (size_t i = 0; i < f->nlisten; i++)
		if (add_listen(&r->conf, &f->listen[i], false, err, errlen) < 0)
			return -1;
	const char *cert = f->cert && *f->cert ? f->cert : c->cert;
	const char *key = f->key && *f->key ? f->key : c->key;
	if (cert && *cert && !(r->tls = tls_server_ctx_new(cert, key, v->cfg->hostname, err,
							   errlen)))
		return -1;
	r->conf.starttls = r->tls != NULL;
	if (!v->inbox) {
		snprintf(err, errlen, "feedback: no inbox to store into");
		return -1;
	}
	return role_start(r, &fb_hooks, 1, err, errlen);
}

struct sub_server *sub_server_start(const struct cfg *c, struct sched_spool *sp,
				    struct sub_log *log, struct sub_inbox *inbox, char *err,
				    size_t errlen)
{
	struct sub_server *v = vl_calloc(1, sizeof *v);

	v->inbox = inbox;
	v->cfg = c;
	v->spool = sp;
	if (c->spool.max_bytes && sp)
		atomic_store(&v->spool_used, sched_spool_used_bytes(sp));
	v->spool_measured_ms = vl_now_ms();
	v->log = log;
	v->sub.srv = v->fb.srv = v;
	pthread_mutex_init(&v->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&v->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((c->submission.on && start_submission(v, err, errlen) < 0) ||
	    (c->feedback.on && start_feedback(v, err, errlen) < 0)) {
		sub_server_stop(v);
		return NULL;
	}
	return v;
}

void sub_server_stop(struct sub_server *v)
{
	if (!v)
		return;
	/* AUTH takes no new checks and answers the delayed failures now; the
	 * workers end once every session waiting for an answer has it from
	 * the AUTH threads, the log or the inbox (its owner's: closed after
	 * this), which all go after them. */
	pthread_mutex_lock(&v->mu);
	v->auth_stop = true;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	atomic_store(&v->stop, true);
	role_join(&v->sub);
	role_join(&v->fb);
	for (int i = 0; i < v->nauth; i++)
		pthread_join(v->auth_tid[i], NULL);
	role_free(&v->sub);
	role_free(&v->fb);
	for (struct auth_job *j = v->checks, *n; j; j = n) {
		n = j->next;
		free(j);
	}
	for (size_t i = 0; i < v->nrates; i++)
		free(v->rates[i].name);
	free(v->rates);
	sub_users_free(atomic_load(&v->users));
	for (size_t i = 0; i < v->nold_users; i++)
		sub_users_free(v->old_users[i]);
	free(v->old_users);
	sub_authlimit_free(v->limit);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->cv);
	free(v);
}

/* ---- metrics ---- */

static void role_stats(const struct role *r, struct smtpd_stats *sum)
{
	struct smtpd_stats *each[64];
	int n = r->nthreads < 64 ? r->nthreads : 64;

	for (int i = 0; i < n; i++)
		each[i] = smtpd_worker_stats(r->w[i]);
	smtpd_stats_sum(sum, each, n);
}

/* Each family's samples together, one per listener (the text format
 * wants a family in one block). */
static void listener_metrics(struct vl_buf *b, struct sub_server *v)
{
	static const struct { const char *name, *type, *help; size_t off; } fam[] = {
#define F(n, t, h, f) { "volley_smtpd_" n, t, h, offsetof(struct smtpd_stats, f) }
		F("connections", "gauge", "Open inbound SMTP connections.", conns_open),
		F("connections_total", "counter", "Inbound SMTP connections accepted.",
		  conns_total),
		F("messages_total", "counter", "Messages accepted (answered 250) by an SMTP "
		  "listener.", messages),
		F("recipients_total", "counter", "Recipients of the accepted messages.",
		  recipients),
		F("bytes_total", "counter", "Octets of the accepted messages.", bytes),
		F("replies_4xx_total", "counter", "Transient refusals sent.", replies_4xx),
		F("replies_5xx_total", "counter", "Permanent refusals sent.", replies_5xx),
		F("tls_sessions_total", "counter", "TLS sessions started.", tls_sessions),
#undef F
	};
	const struct role *roles[2] = { &v->sub, &v->fb };
	const char *names[2] = { "submission", "feedback" };
	struct smtpd_stats st[2];
	char lab[64];

	for (int r = 0; r < 2; r++)
		role_stats(roles[r], &st[r]);
	for (size_t f = 0; f < VL_ARRAY_LEN(fam); f++) {
		bool first = true;
		for (int r = 0; r < 2; r++) {
			if (!roles[r]->nthreads)
				continue;
			snprintf(lab, sizeof lab, "{listener=\"%s\"}", names[r]);
			const _Atomic uint64_t *x = (const void *)((const char *)&st[r] + fam[f].off);
			vl_prom_metric(b, fam[f].name, fam[f].type, first ? fam[f].help : NULL, lab,
			       (double)atomic_load(x));
			first = false;
		}
	}
	if (v->sub.nthreads) {
		vl_prom_metric(b, "volley_submission_auth_total", "counter", "AUTH attempts by result.",
		       "{result=\"ok\"}", (double)st[0].auth_ok);
		vl_prom_metric(b, "volley_submission_auth_total", "counter", NULL,
		       "{result=\"failed\"}", (double)st[0].auth_failed);
	}
}

void sub_server_metrics(struct sub_server *v, struct vl_buf *b)
{
	if (!v)
		return;
	listener_metrics(b, v);
	if (v->limit) {
		struct sub_authlimit_stats ls;
		sub_authlimit_stats(v->limit, &ls);
		vl_prom_metric(b, "volley_submission_auth_delayed_total", "counter", "Failed AUTH "
		       "answers delayed by the per-address limiter.", NULL, (double)ls.delayed);
		vl_prom_metric(b, "volley_submission_auth_tracked_addresses", "gauge", "Client "
		       "addresses with recent AUTH failures.", NULL, (double)ls.tracked);
	}
	if (v->sub.nthreads) {
		vl_prom_metric(b, "volley_submission_refused_total", "counter", "Submissions refused "
		       "by policy.", "{reason=\"from_domain\"}", (double)v->refused_from);
		vl_prom_metric(b, "volley_submission_refused_total", "counter", NULL,
		       "{reason=\"rate_limit\"}", (double)v->refused_rate);
		vl_prom_metric(b, "volley_submission_refused_total", "counter", NULL,
		       "{reason=\"busy\"}", (double)(v->refused_queue + v->auth_busy));
	}
	if (v->log) {
		struct sub_log_stats ls;
		sub_log_stats(v->log, &ls);
		vl_prom_metric(b, "volley_submission_log_syncs_total", "counter", "fdatasync calls of the "
		       "submission log (one per group commit).", NULL, (double)ls.syncs);
		vl_prom_metric(b, "volley_submission_log_jobs_total", "counter", "Jobs made from the "
		       "submission log.", NULL, (double)ls.jobs);
		vl_prom_metric(b, "volley_submission_log_waiting", "gauge", "Messages waiting for the "
		       "submission log's committer.", NULL, (double)ls.waiting);
	}
}

int sub_server_reload_users(struct sub_server *v, const struct cfg *c, char *err, size_t errlen)
{
	if (!v || !atomic_load(&v->users))
		return 0;
	if (!c->submission.on) {
		snprintf(err, errlen, "submission is off in the new configuration: needs a restart");
		return -1;
	}
	struct sub_users *u = sub_users_load(c->submission.users, &c->submission, err, errlen);
	if (!u)
		return -1;
	pthread_mutex_lock(&v->mu);
	v->old_users = vl_realloc(v->old_users, (v->nold_users + 1) * sizeof *v->old_users);
	v->old_users[v->nold_users++] = atomic_exchange(&v->users, u);
	pthread_mutex_unlock(&v->mu);
	return 0;
}
