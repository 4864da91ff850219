/*
 * The suppression list shared (cluster.h): one thread, vl-clsupp, with
 * two connections of its own to Redis: commands (the changes, catch-up,
 * pings) and one in SUBSCRIBE mode for the other nodes' changes, each a
 * link (link.c: TCP or TLS, the reader's bound). The thread drives them
 * with deadlines (link_step): nothing waits for it.
 *
 * On (re)connect: SUBSCRIBE first (nothing published after is missed),
 * then the epoch and counter (a Redis that lost its data, or a node that
 * never synced: from 0), this node's queued changes, then every address
 * changed since the counter last seen, CLU_SUPP_BATCH a round trip. The
 * counter is kept in state_file, so a restart loads only what it missed.
 */
#include "cluster_int.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 1000           /* a reply later than this: Redis is down */
#define CONNECT_MS 2000           /* TCP and the TLS handshake */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PING_MS 1000
#define SAVE_MS 1000
#define FLUSH_MAX 128             /* changes pipelined at once */
#define CHANNEL "volley:supp:ch"

/* KEYS hash, zset, counter, epoch; ARGV address, JSON, epoch if none,
 * channel: the change stored, numbered and published, atomically. */
static const char PUT[] =
	"redis.call('SET', KEYS[4], ARGV[3], 'NX')\n"
	"local s = redis.call('INCR', KEYS[3])\n"
	"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
	"redis.call('ZADD', KEYS[2], s, ARGV[1])\n"
	"redis.call('PUBLISH', ARGV[4], s .. '\\t' .. ARGV[1] .. '\\t' .. ARGV[2])\n"
	"return s\n";
/* KEYS epoch, counter; ARGV epoch if none: {epoch, counter}. */
static const char HEAD[] =
	"redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
	"return {redis.call('GET', KEYS[1]), tostring(redis.call('GET', KEYS[2]) or '0')}\n";
/* KEYS hash, zset; ARGV after, limit: {address, counter, JSON, ...}. */
static const char RANGE[] =
	"local m = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES',"
	" 'LIMIT', 0, tonumber(ARGV[2]))\n"
	"local out = {}\n"
	"for i = 1, #m, 2 do\n"
	"  out[#out + 1] = m[i]; out[#out + 1] = m[i + 1]\n"
	"  out[#out + 1] = redis.call('HGET', KEYS[1], m[i]) or ''\n"
	"end\n"
	"return out\n";

struct pend {
	char *email, *json;
};

struct clu_supp {
	struct clu_url url;
	char pass[256];
	char *node, *state_file;
	int (*apply)(void *, const struct clu_supp_entry *, size_t);
	void *arg;
	pthread_t tid;
	int efd;
	atomic_bool stop;
	/* local changes from any thread, under mu */
	pthread_mutex_t mu;
	struct pend *q;
	size_t qhead, qlen;
	/* what others read */
	_Atomic bool up;
	_Atomic uint64_t n_sent, n_recv, n_drop, n_bad, n_sync;
	/* the thread's own */
	struct clu_tls tls;              /* ctx NULL: plain TCP */
	struct clu_link cmd, sub;
	char epoch[40], cand[40];
	uint64_t seq, saved_seq, session_seq;
	uint64_t backoff, next_try, next_ping, next_save;
	bool tried;                      /* a connect was tried: log only changes after */
	struct clu_supp_entry *batch;
	size_t nbatch;
};

/* ---- the transport: link.c, driven with deadlines ---- */

/* One poll round on a link until deadline: 1 it came up, 0 went on (or
 * nothing yet), -1 failed (closed, why says). */
static int link_step(struct clu_link *l, uint64_t deadline, char *why, size_t n)
{
	uint64_t now = vl_now_ms();
	struct pollfd p = { .fd = l->fd, .events = clu_link_events(l) };
	int r = poll(&p, 1, now >= deadline ? 0 : (int)(deadline - now));

	if (r < 0 && errno != EINTR) {
		vl_fail(why, n, "%s: poll: %s", l->peer, strerror(errno));
		clu_link_close(l);
		return -1;
	}
	return r > 0 ? clu_link_io(l, p.revents, why, n) : 0;
}

static int link_fail(struct clu_link *l, char *why, size_t n, const char *what)
{
	vl_fail(why, n, "%s: %s", l->peer, what);
	clu_link_close(l);
	return -1;
}

/* Connected (and the TLS handshake done) within CONNECT_MS. */
static int link_connect(struct clu_supp *s, struct clu_link *l, char *why, size_t n)
{
	uint64_t deadline = vl_now_ms() + CONNECT_MS;

	if (clu_link_open(l, s->url.host, s->url.port, why, n) < 0)
		return -1;
	while (l->state != CLU_LINK_UP) {
		if (vl_now_ms() >= deadline)
			return link_fail(l, why, n, "connect: timed out");
		if (link_step(l, deadline, why, n) < 0)
			return -1;
	}
	return 0;
}

/* A command into the link's buffer, sent as far as the socket takes it
 * (the rest goes out while replies are awaited). */
static int send_cmd(struct clu_link *l, int argc, const char **argv, char *why, size_t n)
{
	size_t len[12];
	char *cmd = NULL;

	for (int i = 0; i < argc; i++)
		len[i] = strlen(argv[i]);
	int k = redisFormatCommandArgv(&cmd, argc, argv, len);
	if (k < 0)
		vl_oom(0);
	vl_buf_append(&l->out, cmd, (size_t)k);
	redisFreeCommand(cmd);
	return clu_link_flush(l, why, n);
}

/* The next reply, waiting until deadline. NULL with why: none (timed
 * out, closed, or bytes that do not parse). */
static redisReply *get_reply(struct clu_link *l, uint64_t deadline, char *why, size_t n)
{
	for (;;) {
		void *r = NULL;
		if (!l->rd || redisReaderGetReply(l->rd, &r) != REDIS_OK) {
			if (l->rd)
				link_fail(l, why, n, "a reply that does not parse");
			return NULL;
		}
		if (r)
			return r;
		if (vl_now_ms() >= deadline) {
			link_fail(l, why, n, "no answer in time");
			return NULL;
		}
		if (link_step(l, deadline, why, n) < 0)
			return NULL;
	}
}

static redisReply *call(struct clu_link *l, int argc, const char **argv, char *why, size_t n)
{
	return send_cmd(l, argc, argv, why, n) < 0 ? NULL :
	       get_reply(l, vl_now_ms() + TIMEOUT_MS, why, n);
}

/* A command whose reply must be no error. */
static int call_ok(struct clu_link *l, int argc, const char **argv, char *why, size_t n)
{
	redisReply *r = call(l, argc, argv, why, n);
	int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;
	if (r && rc < 0)
		vl_fail(why, n, "%s: %.150s", argv[0], r->str);
	if (r)
		freeReplyObject(r);
	return rc;
}

static int open_conn(struct clu_supp *s, struct clu_link *k, char *why, size_t n)
{
	char db[16];

	if (link_connect(s, k, why, n) < 0)
		return -1;
	if (s->pass[0]) {
		const char *a3[] = { "AUTH", s->url.user, s->pass }, *a2[] = { "AUTH", s->pass };
		if (call_ok(k, s->url.user[0] ? 3 : 2, s->url.user[0] ? a3 : a2, why, n) < 0)
			return -1;
	}
	snprintf(db, sizeof db, "%u", s->url.db);
	const char *sel[] = { "SELECT", db };
	return s->url.db ? call_ok(k, 2, sel, why, n) : 0;
}

/* ---- the epoch and counter, across restarts ---- */

static void state_read(struct clu_supp *s)
{
	struct vl_buf b;
	unsigned long long v;

	vl_buf_init(&b);
	if (s->state_file && vl_read_file(s->state_file, &b) == 0 && b.len < 200) {
		vl_buf_append(&b, "", 1);
		if (sscanf(b.p, "%39s %llu", s->epoch, &v) == 2 && v <= (1ull << 53))
			s->seq = s->saved_seq = v;
		else
			s->epoch[0] = 0;
	}
	vl_buf_free(&b);
}

static void state_write(struct clu_supp *s)
{
	char tmp[4200];
	FILE *f;

	if (!s->state_file || s->seq == s->saved_seq ||
	    snprintf(tmp, sizeof tmp, "%s.tmp", s->state_file) >= (int)sizeof tmp)
		return;
	if (!(f = fopen(tmp, "w")))
		return;
	fprintf(f, "%s %llu\n", s->epoch, (unsigned long long)s->seq);
	if (fclose(f) == 0 && rename(tmp, s->state_file) == 0)
		s->saved_seq = s->seq;
}

/* ---- applying other nodes' changes ---- */

static void apply_batch(struct clu_supp *s)
{
	if (!s->nbatch)
		return;
	if (s->apply(s->arg, s->batch, s->nbatch) < 0)
		vl_log(VL_LOG_ERROR, "cluster: suppression: %zu changes from the cluster not "
		       "stored: %s", s->nbatch, strerror(errno));
	atomic_fetch_add(&s->n_recv, s->nbatch);
	s->nbatch = 0;
}

/* Counted; logged the first 10 times, then every 1,000th (garbage on the
 * channel must not flood the log). */
static void bad_entry(struct clu_supp *s, const char *what, const char *err)
{
	uint64_t n = atomic_fetch_add(&s->n_bad, 1);
	if (n < 10 || n % 1000 == 0)
		vl_log(VL_LOG_WARN, "cluster: suppression: %s skipped (%llu so far): %s", what,
		       (unsigned long long)n + 1, err);
}

/* ---- catching up ---- */

/* The epoch and counter: a new epoch (Redis lost its data) or a counter
 * behind ours (the same) means every entry again. */
static int head(struct clu_supp *s, char *why, size_t n)
{
	const char *argv[] = { "EVAL", HEAD, "2", "volley:supp:epoch", "volley:supp:ctr",
			       s->cand };
	redisReply *r = call(&s->cmd, 6, argv, why, n);
	uint64_t ctr;
	int rc = -1;

	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof s->epoch ||
	    r->element[1]->type != REDIS_REPLY_STRING ||
	    clu_supp_seq(r->element[1]->str, r->element[1]->len, &ctr) < 0) {
		vl_fail(why, n, "suppression head: unexpected answer");
		goto out;
	}
	if (strcmp(s->epoch, r->element[0]->str) || ctr < s->seq) {
		if (s->epoch[0])
			vl_log(VL_LOG_INFO, "cluster: suppression: Redis has lost or changed "
			       "its list: loading all of it");
		snprintf(s->epoch, sizeof s->epoch, "%s", r->element[0]->str);
		s->seq = 0;
	}
	s->session_seq = ctr;
	rc = 0;
out:
	freeReplyObject(r);
	return rc;
}

/* One triple of a catch-up answer into the batch. */
static void take_triple(struct clu_supp *s, redisReply **t)
{
	char err[200];
	uint64_t seq;
	struct clu_supp_entry *e = &s->batch[s->nbatch];

	if (t[0]->type != REDIS_REPLY_STRING || t[1]->type != REDIS_REPLY_STRING ||
	    t[2]->type != REDIS_REPLY_STRING ||
	    clu_supp_seq(t[1]->str, t[1]->len, &seq) < 0) {
		bad_entry(s, "an entry", "not address, counter, value");
		return;
	}
	if (seq > s->seq)
		s->seq = seq;
	if (clu_supp_parse(t[0]->str, t[0]->len, t[2]->str, t[2]->len, seq, e, err,
			   sizeof err) < 0) {
		bad_entry(s, "an entry", err);
		return;
	}
	/* this node's changes of this session are its list's already */
	if (seq <= s->session_seq || strcmp(e->node, s->node))
		s->nbatch++;
}

/* Every address changed after our counter, a batch a round trip. */
static int catch_up(struct clu_supp *s, char *why, size_t n)
{
	char after[32], lim[16];
	size_t got;

	snprintf(lim, sizeof lim, "%d", CLU_SUPP_BATCH);
	do {
		snprintf(after, sizeof after, "%llu", (unsigned long long)s->seq);
		const char *argv[] = { "EVAL", RANGE, "2", "volley:supp", "volley:supp:seq", after,
				       lim };
		redisReply *r = call(&s->cmd, 7, argv, why, n);
		if (!r)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements % 3 ||
		    r->elements > 3 * CLU_SUPP_BATCH) {
			freeReplyObject(r);
			return vl_fail(why, n, "suppression catch-up: unexpected answer");
		}
		got = r->elements / 3;
		for (size_t i = 0; i < got; i++)
			take_triple(s, r->element + 3 * i);
		freeReplyObject(r);
		apply_batch(s);
	} while (got == CLU_SUPP_BATCH);
	atomic_fetch_add(&s->n_sync, 1);
	state_write(s);
	return 0;
}

/* ---- this node's changes out ---- */

/* Up to FLUSH_MAX queued changes, pipelined; taken off the queue only
 * once Redis has them (a connection lost meanwhile sends them again). */
static int flush(struct clu_supp *s, char *why, size_t n)
{
	struct pend p[FLUSH_MAX];
	size_t k = 0;

	pthread_mutex_lock(&s->mu);
	for (; k < s->qlen && k < FLUSH_MAX; k++)
		p[k] = s->q[(s->qhead + k) % CLU_SUPP_QMAX];
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < k; i++) {
		const char *argv[] = { "EVAL", PUT, "4", "volley:supp", "volley:supp:seq",
				       "volley:supp:ctr", "volley:supp:epoch", p[i].email, p[i].json,
				       s->cand, CHANNEL };
		if (send_cmd(&s->cmd, 11, argv, why, n) < 0)
			return -1;
	}
	for (size_t i = 0; i < k; i++) {
		redisReply *r = get_reply(&s->cmd, vl_now_ms() + TIMEOUT_MS, why, n);
		if (!r)
			return -1;
		bool ok = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
		freeReplyObject(r);
		if (!ok)
			return vl_fail(why, n, "suppression: a change not taken by Redis");
	}
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < k; i++) {
		free(s->q[s->qhead].email);
		free(s->q[s->qhead].json);
		s->qhead = (s->qhead + 1) % CLU_SUPP_QMAX;
		s->qlen--;
	}
	pthread_mutex_unlock(&s->mu);
	atomic_fetch_add(&s->n_sent, k);
	return 0;
}

static size_t pending(struct clu_supp *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = s->qlen;
	pthread_mutex_unlock(&s->mu);
	return n;
}

static int flush_all(struct clu_supp *s, char *why, size_t n)
{
	while (pending(s))
		if (flush(s, why, n) < 0)
			return -1;
	return 0;
}

/* ---- the subscriber ---- */

static int subscribe(struct clu_supp *s, char *why, size_t n)
{
	const char *argv[] = { "SUBSCRIBE", CHANNEL };
	redisReply *r = call(&s->sub, 2, argv, why, n);
	if (!r)
		return -1;
	bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
		  r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, "subscribe");
	freeReplyObject(r);
	return ok ? 0 : vl_fail(why, n, "SUBSCRIBE %s: unexpected answer", CHANNEL);
}

/* One push on the subscriber: ["message", channel, payload]. */
static void on_push(struct clu_supp *s, const redisReply *r)
{
	char err[200];
	struct clu_supp_entry *e = &s->batch[s->nbatch];

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;                  /* pong, (un)subscribe confirmations */
	if (clu_supp_parse_msg(r->element[2]->str, r->element[2]->len, e, err, sizeof err) < 0) {
		bad_entry(s, "a published change", err);
		return;
	}
	if (e->seq <= s->seq)
		return;                  /* the catch-up had it, or a newer one */
	s->seq = e->seq;
	if (strcmp(e->node, s->node))
		s->nbatch++;
	if (s->nbatch == CLU_SUPP_BATCH)
		apply_batch(s);
}

/* What the subscriber has after poll said revents: -1 (why) when it is
 * closed or broken. */
static int on_sub(struct clu_supp *s, short revents, char *why, size_t n)
{
	int rc = clu_link_io(&s->sub, revents, why, n) < 0 ? -1 : 0;

	for (void *r = NULL; rc == 0 && s->sub.rd; r = NULL) {
		if (redisReaderGetReply(s->sub.rd, &r) != REDIS_OK)
			rc = link_fail(&s->sub, why, n, "a reply that does not parse");
		if (!r)
			break;
		on_push(s, r);
		freeReplyObject(r);
	}
	apply_batch(s);
	return rc;
}

/* ---- the thread ---- */

static void down(struct clu_supp *s, const char *why)
{
	clu_link_close(&s->cmd);
	clu_link_close(&s->sub);
	s->nbatch = 0;
	if (atomic_load(&s->up) || !s->tried)
		vl_log(VL_LOG_WARN, "cluster: suppression list not shared until Redis "
		       "answers: %s", why);
	s->tried = true;
	atomic_store(&s->up, false);
	s->backoff = s->backoff ? s->backoff * 2 : BACKOFF_MIN_MS;
	if (s->backoff > BACKOFF_MAX_MS)
		s->backoff = BACKOFF_MAX_MS;
	s->next_try = vl_now_ms() + s->backoff;
}

static void go_up(struct clu_supp *s)
{
	char why[300];

	if (open_conn(s, &s->cmd, why, sizeof why) < 0 ||
	    open_conn(s, &s->sub, why, sizeof why) < 0 || subscribe(s, why, sizeof why) < 0 ||
	    head(s, why, sizeof why) < 0 || flush_all(s, why, sizeof why) < 0 ||
	    catch_up(s, why, sizeof why) < 0) {
		down(s, why);
		return;
	}
	vl_log(VL_LOG_INFO, "cluster: suppression list shared (change %llu)",
	       (unsigned long long)s->seq);
	atomic_store(&s->up, true);
	s->tried = true;
	s->backoff = 0;
	s->next_ping = vl_now_ms() + PING_MS;
}

static int ping(struct clu_supp *s, char *why, size_t n)
{
	const char *argv[] = { "PING" };
	s->next_ping = vl_now_ms() + PING_MS;
	return call_ok(&s->cmd, 1, argv, why, n);
}

/* Wait for a local change or a push (at most 100 ms). */
static void wait_io(struct clu_supp *s)
{
	bool up = atomic_load(&s->up);
	struct pollfd p[2] = { { .fd = s->efd, .events = POLLIN },
			       { .fd = s->sub.fd, .events = up ? clu_link_events(&s->sub) : 0 } };
	char why[300];
	uint64_t v;

	if (poll(p, up ? 2 : 1, 100) <= 0)
		return;
	if ((p[0].revents & POLLIN) && read(s->efd, &v, sizeof v) < 0) { /* a wake-up only */ }
	if (up && p[1].revents && on_sub(s, p[1].revents, why, sizeof why) < 0)
		down(s, why);
}

static void *run(void *arg)
{
	struct clu_supp *s = arg;
	char why[300];

	vl_thread_name("vl-clsupp");
	while (!atomic_load(&s->stop)) {
		uint64_t now = vl_now_ms();
		if (!atomic_load(&s->up) && now >= s->next_try)
			go_up(s);
		if (atomic_load(&s->up) && (flush_all(s, why, sizeof why) < 0 ||
					    (now >= s->next_ping && ping(s, why, sizeof why) < 0)))
			down(s, why);
		wait_io(s);
		if (now >= s->next_save) {
			state_write(s);
			s->next_save = now + SAVE_MS;
		}
	}
	state_write(s);
	clu_link_close(&s->cmd);
	clu_link_close(&s->sub);
	return NULL;
}

/* ---- the face ---- */

static void random_id(char out[40])
{
	unsigned char r[16];

	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		uint64_t t = vl_now_ms() ^ (uint64_t)getpid() << 32;
		memcpy(r, &t, 8);
		memcpy(r + 8, &t, 8);
	}
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static void supp_free(struct clu_supp *s)
{
	while (s->qlen) {
		free(s->q[s->qhead].email);
		free(s->q[s->qhead].json);
		s->qhead = (s->qhead + 1) % CLU_SUPP_QMAX;
		s->qlen--;
	}
	if (s->efd >= 0)
		close(s->efd);
	clu_link_free(&s->cmd);
	clu_link_free(&s->sub);
	clu_tls_free(&s->tls);
	pthread_mutex_destroy(&s->mu);
	free(s->q);
	free(s->batch);
	free(s->node);
	free(s->state_file);
	free(s);
}

struct clu_supp *clu_supp_start(const struct clu_supp_opts *o, char *err, size_t errlen)
{
	struct clu_supp *s = vl_calloc(1, sizeof *s);
	char why[200];

	pthread_mutex_init(&s->mu, NULL);
	clu_link_init(&s->cmd, NULL);
	clu_link_init(&s->sub, NULL);
	s->node = vl_strdup(o->node);
	s->state_file = o->state_file ? vl_strdup(o->state_file) : NULL;
	s->apply = o->apply;
	s->arg = o->arg;
	s->q = vl_calloc(CLU_SUPP_QMAX, sizeof *s->q);
	s->batch = vl_calloc(CLU_SUPP_BATCH, sizeof *s->batch);
	random_id(s->cand);
	state_read(s);
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (clu_url_parse(o->redis, &s->url, why, sizeof why) < 0) {
		snprintf(err, errlen, "cluster.redis: %s", why);
		supp_free(s);
		return NULL;
	}
	snprintf(s->pass, sizeof s->pass, "%s", o->password ? o->password : s->url.pass);
	if ((s->url.tls || o->tls.on) &&
	    clu_tls_init(&s->tls, &o->tls, s->url.host, err, errlen) < 0) {
		supp_free(s);
		return NULL;
	}
	clu_link_init(&s->cmd, s->tls.ctx ? &s->tls : NULL);
	clu_link_init(&s->sub, s->tls.ctx ? &s->tls : NULL);
	if (s->efd < 0 || pthread_create(&s->tid, NULL, run, s) != 0) {
		snprintf(err, errlen, "cluster: cannot start the suppression thread: %s",
			 strerror(errno));
		supp_free(s);
		return NULL;
	}
	return s;
}

void clu_supp_stop(struct clu_supp *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	atomic_store(&s->stop, true);
	if (write(s->efd, &one, sizeof one) < 0) { /* it wakes within 100 ms anyway */ }
	pthread_join(s->tid, NULL);
	if (s->qlen)
		vl_log(VL_LOG_WARN, "cluster: suppression: %zu changes never reached Redis "
		       "(this node's list has them)", s->qlen);
	supp_free(s);
}

void clu_supp_push(struct clu_supp *s, bool add, const char *email, const char *reason,
		   const char *job, long long at)
{
	struct pend p = { .email = vl_strdup(email),
			  .json = clu_supp_encode(add, reason, job, s->node, at) };
	uint64_t one = 1;
	bool ok;

	pthread_mutex_lock(&s->mu);
	ok = s->qlen < CLU_SUPP_QMAX;
	if (ok)
		s->q[(s->qhead + s->qlen++) % CLU_SUPP_QMAX] = p;
	pthread_mutex_unlock(&s->mu);
	if (!ok) {
		if (atomic_fetch_add(&s->n_drop, 1) % 10000 == 0)
			vl_log(VL_LOG_WARN, "cluster: suppression: %d changes wait for Redis "
			       "already: %s not shared", CLU_SUPP_QMAX, email);
		free(p.email);
		free(p.json);
		return;
	}
	if (write(s->efd, &one, sizeof one) < 0) { /* it looks every 100 ms */ }
}

void clu_supp_stats(struct clu_supp *s, struct clu_supp_stats *st)
{
	st->up = atomic_load(&s->up);
	st->sent = atomic_load(&s->n_sent);
	st->received = atomic_load(&s->n_recv);
	st->dropped = atomic_load(&s->n_drop);
	st->bad = atomic_load(&s->n_bad);
	st->syncs = atomic_load(&s->n_sync);
	st->pending = (unsigned)pending(s);
}
