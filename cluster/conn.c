/*
 * The Redis client (cluster.h): one thread, vl-cluster, owns the socket.
 * hiredis only frames commands (redisFormatCommandArgv) and parses
 * replies (redisReader); the I/O is poll(2) on a non-blocking socket
 * (link.c).
 * Commands are pipelined; replies come back in order, so a FIFO of what
 * was sent tells each reply's meaning.
 */
#include "cluster_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define QMAX 4096                 /* requests waiting for the thread */
#define FLYMAX 4096               /* sent, not yet answered */
#define TIMEOUT_MS 1000           /* an answer later than this: Redis is down */
#define CONNECT_MS 1000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define NODES_MAX 1000            /* nodes a listing returns */

/* One script for every operation, loaded once (SCRIPT LOAD), called by
 * its SHA1 (EVALSHA). Times are Redis's own (TIME), so nodes' clocks do
 * not matter.
 *   rate KEYS[1] bucket; ARGV rate/s, burst, want: {got, wait_ms}: got
 *        (a quarter of want to want) usable after wait_ms; or 0, and ask
 *        again after wait_ms
 *   cut  KEYS[1] bucket; ARGV rate/s, cut rate/s, pause_ms, hold_ms: a node
 *        saw "slow down": the whole cluster pauses and then runs at the
 *        cut rate until hold_ms after the last cut (a lower cut under way
 *        is kept: one episode across nodes). 1: cut, 0: one under way
 *   hb   KEYS[1] node set, KEYS[2] node's key; ARGV node, ttl_ms, info: N
 *   conn KEYS[1] holders' expiry (zset), KEYS[2] holders' grant:want
 *        (hash), KEYS[3] node set; ARGV node, limit, want, ttl_ms: the
 *        grant (want 0: the node lets go)
 *   idem KEYS[1] the key's; ARGV node, ttl_ms: "" when this node now holds
 *        it (pending), else its value: "NODE\n" and the 202 answer, if any
 *   idemset KEYS[1]; ARGV node, ttl_ms, answer: the answer bound to a
 *        key this node holds ("": let go of it)
 *   quota KEYS[1] a day's count; ARGV cap, want, ttl_ms: {got, count}:
 *        got (want or what is left of the cap, maybe 0) added to count
 *   nodes KEYS[1] node set; ARGV the node keys' prefix: what the live
 *        nodes (at most NODES_MAX) registered, one string each. The node
 *        keys are named here, not in KEYS: one Redis, not Redis Cluster */
static const char SCRIPT[] =
	"local op = ARGV[1]\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"if op == 'rate' then\n"
	"  local rate, burst, want = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
	"  local s = redis.call('HMGET', KEYS[1], 'tok', 'at', 'cut', 'cutu')\n"
	"  local tok, at = tonumber(s[1]), tonumber(s[2])\n"
	"  local cut, cutu = tonumber(s[3]), tonumber(s[4])\n"
	"  if cut and cutu and now < cutu and cut < rate then\n"
	"    rate = cut; burst = math.max(1, math.min(burst, cut))\n"
	"  end\n"
	"  if not tok then tok = burst; at = now end\n"
	"  if now > at then\n"
	"    tok = math.min(burst, tok + (now - at) * rate / 1000); at = now\n"
	"  end\n"
	/* GCRA-like: a lease is granted, scheduled when its tokens will
	 * have accrued (wait), up to a quarter burst ahead of the refill
	 * (how far ahead the grants run is what a window of time can see
	 * above the rate). Less than asked when less is there, but at least
	 * a quarter of it (a node asking for more than the others must not
	 * starve behind their smaller asks); else nothing and when to come
	 * back. */
	"  local got, wait, ahead = 0, 0, burst / 4\n"
	"  local least = math.max(1, math.floor(want / 4))\n"
	"  local avail = math.floor(tok + ahead)\n"
	"  if avail >= least then\n"
	"    got = math.min(want, avail); tok = tok - got\n"
	"    if tok < 0 then wait = math.ceil(-tok * 1000 / rate) end\n"
	"  else\n"
	"    wait = math.ceil((least - ahead - tok) * 1000 / rate)\n"
	"  end\n"
	"  redis.call('HSET', KEYS[1], 'tok', tostring(tok), 'at', tostring(at))\n"
	"  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 60000)\n"
"  return {got, wait}\n"
	"elseif op == 'cut' then\n"
	"  local rate, cut, pause, hold = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
	"  local s = redis.call('HMGET', KEYS[1], 'tok', 'at', 'cut', 'cutu')\n"
	"  local tok, at = tonumber(s[1]), tonumber(s[2])\n"
	"  local was, wasu = tonumber(s[3]), tonumber(s[4])\n"
	"  if was and wasu and now < wasu and was <= cut then\n"
	"    redis.call('HSET', KEYS[1], 'cutu', tostring(now + hold))\n"
	"    return 0\n"
	"  end\n"
	"  local eff = rate\n"
	"  if was and wasu and now < wasu and was < rate then eff = was end\n"
	"  if not tok then tok = math.max(1, rate); at = now end\n"
	"  if now > at then tok = math.min(math.max(1, eff), tok + (now - at) * eff / 1000); at = now end\n"
	"  tok = math.min(tok, 0) - pause * cut / 1000\n"
	"  redis.call('HSET', KEYS[1], 'tok', tostring(tok), 'at', tostring(at), 'cut', tostring(cut), 'cutu', tostring(now + hold))\n"
	"  redis.call('PEXPIRE', KEYS[1], hold + 60000)\n"
	"  return 1\n"
	"elseif op == 'hb' then\n"
	"  local ttl = tonumber(ARGV[3])\n"
	"  redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])\n"
	"  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
	"  redis.call('PEXPIRE', KEYS[1], ttl * 10)\n"
	"  redis.call('SET', KEYS[2], ARGV[4], 'PX', ttl)\n"
	"  return redis.call('ZCARD', KEYS[1])\n"
	"elseif op == 'conn' then\n"
	"  local node, limit, want, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
	"  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)\n"
	"  for _, n in ipairs(dead) do redis.call('HDEL', KEYS[2], n) end\n"
	"  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
	"  local n = math.max(1, redis.call('ZCOUNT', KEYS[3], now, '+inf'))\n"
	"  local fair = math.max(1, math.floor(limit / n))\n"
	"  local held = 0\n"
	"  local all = redis.call('HGETALL', KEYS[2])\n"
	"  for i = 1, #all, 2 do\n"
	"    if all[i] ~= node then\n"
	"      local h = string.match(all[i + 1], '^(%d+):%d+$')\n"
	"      held = held + tonumber(h or 0)\n"
	"    end\n"
	"  end\n"
	"  local grant = math.min(want, fair, limit - held)\n"
	"  if grant < 0 then grant = 0 end\n"
	"  if want == 0 then\n"
	"    redis.call('HDEL', KEYS[2], node); redis.call('ZREM', KEYS[1], node)\n"
	"  else\n"
	"    redis.call('HSET', KEYS[2], node, grant .. ':' .. want)\n"
	"    redis.call('ZADD', KEYS[1], now + ttl, node)\n"
	"    redis.call('PEXPIRE', KEYS[1], ttl * 10); redis.call('PEXPIRE', KEYS[2], ttl * 10)\n"
	"  end\n"
	"  return grant\n"
	"elseif op == 'idem' then\n"
	"  local v = redis.call('GET', KEYS[1])\n"
	"  if v then return v end\n"
	"  redis.call('SET', KEYS[1], ARGV[2] .. '\\n', 'PX', tonumber(ARGV[3]))\n"
	"  return ''\n"
	"elseif op == 'idemset' then\n"
	"  local v = redis.call('GET', KEYS[1])\n"
	"  if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. '\\n' then\n"
	"    if ARGV[4] == '' then redis.call('DEL', KEYS[1])\n"
	"    else redis.call('SET', KEYS[1], ARGV[2] .. '\\n' .. ARGV[4], 'PX', tonumber(ARGV[3])) end\n"
	"  end\n"
	"  return 1\n"
	"elseif op == 'quota' then\n"
	"  local cap, want = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
	"  local used = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
	"  local got = math.max(0, math.min(want, cap - used))\n"
	"  if got > 0 then used = redis.call('INCRBY', KEYS[1], got) end\n"
	"  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))\n"
	"  return {got, used}\n"
	"elseif op == 'nodes' then\n"
	"  local out = {}\n"
	"  local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'LIMIT', 0, tonumber(ARGV[3]))\n"
	"  for _, n in ipairs(live) do\n"
	"    local v = redis.call('GET', ARGV[2] .. n)\n"
	"    if v then out[#out + 1] = v end\n"
	"  end\n"
	"  return out\n"
	"end\n"
	"return redis.error_reply('volley: unknown op')\n";

enum rkind { R_AUTH, R_SELECT, R_LOAD, R_HB, R_RATE, R_CONN, R_IDEM, R_IDEMSET, R_CUT, R_NODES, R_QUOTA };
/* A caller waiting for an answer (idempotency claims), shared by it and
 * the thread: the last of the two to let go frees it. */
struct clu_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	bool done;
	int rc;                       /* CLU_IDEM_* */
	char *val;                    /* another node's value */
};

struct req {
	enum rkind kind;
	struct clu_lease *l;
	struct clu_conns *k;
	struct clu_quota *qu;         /* R_QUOTA: with want, limit (the cap) and day */
	int64_t day;
	struct clu_wait *w;
	char *key, *val;              /* R_IDEM, R_IDEMSET: owned */
	double cut;                   /* R_CUT: the new rate, and the pause */
	uint64_t pause_ms;
	unsigned want;
	double limit;
	uint64_t sent_ms;
};

struct clu {
	char *node, *info, *state_file;
	struct clu_url url;
	struct clu_tls tls;           /* ctx NULL: plain TCP */
	char pass[256];
	uint64_t ttl_ms;
	void (*on_mode)(void *, enum clu_mode, unsigned, const char *);
	void *arg;
	pthread_t tid;
	int efd;
	atomic_bool stop;
	/* from other threads, under mu */
	pthread_mutex_t mu;
	struct req q[QMAX];
	size_t qhead, qlen;
	struct clu_named *leases, *conns, *quotas;
	/* what others read */
	_Atomic int mode;
	_Atomic unsigned nodes;
	_Atomic uint64_t n_rt, n_leases, n_tokens, n_modes, n_reconn, n_full, n_cuts;
	_Atomic unsigned last_lease;
	/* the thread's own */
	struct clu_link link;
	uint64_t next_try, backoff, next_hb;
	struct req fly[FLYMAX];
	size_t fhead, flen;
	char sha[41];
	struct clu_fsm fsm;
	char why[400];                /* the last connection failure */
};

/* ---- N across restarts ---- */

static unsigned state_read(const char *path)
{
	struct vl_buf b;
	unsigned n = 1;

	if (!path)
		return 1;
	vl_buf_init(&b);
	if (vl_read_file(path, &b) == 0 && b.len) {
		vl_buf_append(&b, "", 1);
		long v = strtol(b.p, NULL, 10);
		if (v >= 1 && v <= 10000)
			n = (unsigned)v;
	}
	vl_buf_free(&b);
	return n;
}

static void state_write(const struct clu *c, unsigned n)
{
	char tmp[4200];
	FILE *f;

	if (!c->state_file || snprintf(tmp, sizeof tmp, "%s.tmp", c->state_file) >= (int)sizeof tmp)
		return;
	if (!(f = fopen(tmp, "w")))
		return;
	fprintf(f, "%u\n", n);
	if (fclose(f) == 0)
		rename(tmp, c->state_file);
}

/* ---- sending ---- */

static void fly_push(struct clu *c, struct req r)
{
	r.sent_ms = vl_now_ms();
	c->fly[(c->fhead + c->flen++) % FLYMAX] = r;
	if (!c->fsm.waiting_since_ms)
		c->fsm.waiting_since_ms = r.sent_ms;
}

static void send_argv(struct clu *c, struct req r, int argc, const char **argv)
{
	char *cmd = NULL;
	size_t len[16];

	if (argc > (int)VL_ARRAY_LEN(len))
		abort();          /* a programming error: the commands are ours */
	for (int i = 0; i < argc; i++)
		len[i] = strlen(argv[i]);
	int n = redisFormatCommandArgv(&cmd, argc, argv, len);
	if (n < 0)
		vl_oom(0);
	vl_buf_append(&c->link.out, cmd, (size_t)n);
	redisFreeCommand(cmd);
	fly_push(c, r);
	atomic_fetch_add(&c->n_rt, 1);
}

static void send_hb(struct clu *c)
{
	char nodes[] = "volley:nodes", key[300], ttl[32];

	snprintf(key, sizeof key, "volley:node:%s", c->node);
	snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->ttl_ms);
	const char *argv[] = { "EVALSHA", c->sha, "2", nodes, key, "hb", c->node, ttl, c->info };
	send_argv(c, (struct req){ .kind = R_HB }, 9, argv);
	c->next_hb = vl_now_ms() + c->ttl_ms / 3;
}

static void send_rate(struct clu *c, struct req r)
{
	char key[600], rate[64], burst[64], want[32];

	snprintf(key, sizeof key, "volley:rate:%s", r.l->name.key);
	snprintf(rate, sizeof rate, "%.6f", r.limit);
	snprintf(burst, sizeof burst, "%.6f", r.limit < 1 ? 1.0 : r.limit);
	snprintf(want, sizeof want, "%u", r.want);
	const char *argv[] = { "EVALSHA", c->sha, "1", key, "rate", rate, burst, want };
	send_argv(c, r, 8, argv);
}

static void send_conn(struct clu *c, struct clu_conns *k, uint64_t now)
{
	char zkey[600], hkey[600], nodes[] = "volley:nodes", limit[16], want[16], ttl[32];
	unsigned w = atomic_load(&k->want);

	snprintf(zkey, sizeof zkey, "volley:conn:%s:exp", k->name.key);
	snprintf(hkey, sizeof hkey, "volley:conn:%s:held", k->name.key);
	snprintf(limit, sizeof limit, "%u", k->limit);
	snprintf(want, sizeof want, "%u", w);
	snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->ttl_ms);
	const char *argv[] = { "EVALSHA", c->sha, "3", zkey, hkey, nodes, "conn", c->node, limit,
			       want, ttl };
	send_argv(c, (struct req){ .kind = R_CONN, .k = k, .want = w }, 11, argv);
	k->sent_want = w;
	k->asked = true;
	k->renew_ms = now + c->ttl_ms / 3;
}

/* Connection leases due: a changed want, a renewal, or less held than
 * Redis could grant (every CLU_CONNS_RETRY_MS; clu_conns_short: not
 * while the fair share is held, which only a change of N can raise). */
static void renew_conns(struct clu *c, uint64_t now)
{
	pthread_mutex_lock(&c->mu);
	struct clu_named *list = c->conns;
	pthread_mutex_unlock(&c->mu);
	for (struct clu_named *n = list; n && c->flen < FLYMAX - 8; n = n->next) {
		struct clu_conns *k = (struct clu_conns *)n;
		unsigned w = atomic_load(&k->want), g = atomic_load(&k->granted);
		if (k->asked || (!w && !k->sent_want))
			continue;
		if (w != k->sent_want || now >= k->renew_ms ||
		    (clu_conns_short(g, w, k->limit, c->fsm.nodes) &&
		     now >= k->renew_ms - c->ttl_ms / 3 + CLU_CONNS_RETRY_MS))
			send_conn(c, k, now);
	}
}

static void send_cut(struct clu *c, struct req r)
{
	char key[600], rate[64], cut[64], pause[32], hold[32];

	snprintf(key, sizeof key, "volley:rate:%s", r.l->name.key);
	snprintf(rate, sizeof rate, "%.6f", r.limit);
	snprintf(cut, sizeof cut, "%.6f", r.cut);
	snprintf(pause, sizeof pause, "%llu", (unsigned long long)r.pause_ms);
	snprintf(hold, sizeof hold, "%u", CLU_CUT_HOLD_MS);
	const char *argv[] = { "EVALSHA", c->sha, "1", key, "cut", rate, cut, pause, hold };
	send_argv(c, (struct req){ .kind = R_CUT }, 9, argv);
	atomic_fetch_add(&c->n_cuts, 1);
}

static void send_load(struct clu *c)
{
	const char *argv[] = { "SCRIPT", "LOAD", SCRIPT };
	send_argv(c, (struct req){ .kind = R_LOAD }, 3, argv);
}

/* An answer for a lease: from Redis, or none (got 0) when it cannot ask. */
static void answer(struct clu *c, struct clu_lease *l, unsigned got, uint64_t wait_ms)
{
	if (got) {
		atomic_fetch_add(&c->n_leases, 1);
		atomic_fetch_add(&c->n_tokens, got);
		atomic_store(&c->last_lease, got);
	}
	atomic_fetch_add(&l->in_got, (int64_t)got);
	atomic_store(&l->in_wait, wait_ms);
	atomic_fetch_add(&l->in_n, 1);
}

/* got of the day (0 and the cap reached: the day is full), to the taker. */
static void quota_answer(struct clu_quota *q, int64_t day, uint64_t got, bool full)
{
	atomic_store(&q->in_day, day);
	atomic_fetch_add(&q->in_got, got);
	if (full)
		atomic_store(&q->in_full_day, day);
	atomic_fetch_add(&q->in_n, 1);
}

/* ---- idempotency keys ---- */

static void send_load(struct clu *c);

static void wait_unref(struct clu_wait *w)
{
	pthread_mutex_lock(&w->mu);
	bool last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w->val);
	free(w);
}

static void wait_done(struct clu_wait *w, int rc, const char *val, size_t len)
{
	pthread_mutex_lock(&w->mu);
	w->rc = rc;
	w->val = val ? vl_strndup(val, len) : NULL;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	wait_unref(w);
}

static void send_idem(struct clu *c, struct req r)
{
	char *key, ttl[32];

	if (asprintf(&key, "volley:idem:%s", r.key) < 0)
		vl_oom(0);
	snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)r.sent_ms);
	if (r.kind == R_IDEM) {
		const char *argv[] = { "EVALSHA", c->sha, "1", key, "idem", c->node, ttl };
		send_argv(c, (struct req){ .kind = R_IDEM, .w = r.w }, 7, argv);
	} else {
		const char *argv[] = { "EVALSHA", c->sha, "1", key, "idemset", c->node, ttl,
				       r.val ? r.val : "" };
		send_argv(c, (struct req){ .kind = R_IDEMSET }, 8, argv);
	}
	free(key);
	free(r.key);
	free(r.val);
}

/* A request that cannot go to Redis: answered (or dropped) here. */
static void unsent(struct clu *c, struct req *r)
{
	if (r->kind == R_RATE)
		answer(c, r->l, 0, BACKOFF_MIN_MS);
	else if (r->kind == R_QUOTA)
		quota_answer(r->qu, r->day, 0, false);
	else if ((r->kind == R_IDEM || r->kind == R_NODES) && r->w)
		wait_done(r->w, CLU_IDEM_LOCAL, NULL, 0);
	free(r->key);
	free(r->val);
	r->key = r->val = NULL;
}

static void on_idem(struct clu *c, struct req *q, const redisReply *r)
{
	if (r->type != REDIS_REPLY_STRING) {
		if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8)) {
			c->sha[0] = 0;
			send_load(c);
		}
		wait_done(q->w, CLU_IDEM_LOCAL, NULL, 0);
		return;
	}
	const char *nl = memchr(r->str, '\n', r->len);
	size_t nlen = nl ? (size_t)(nl - r->str) : r->len;
	if (!r->len || (nlen == strlen(c->node) && !memcmp(r->str, c->node, nlen))) {
		wait_done(q->w, CLU_IDEM_MINE, NULL, 0);
		return;
	}
	/* "NODE\n" then the answer (none while it is being received) */
	wait_done(q->w, CLU_IDEM_OTHER, r->str, r->len);
}

/* ---- daily quotas ---- */

#define QUOTA_TTL_MS (2 * 86400000ull)   /* a day's count outlives its day */

static void send_quota(struct clu *c, struct req r)
{
	char key[700], cap[32], want[32], ttl[32];

	snprintf(key, sizeof key, "volley:quota:%s:%lld", r.qu->name.key, (long long)r.day);
	snprintf(cap, sizeof cap, "%.0f", r.limit);
	snprintf(want, sizeof want, "%u", r.want);
	snprintf(ttl, sizeof ttl, "%llu", QUOTA_TTL_MS);
	const char *argv[] = { "EVALSHA", c->sha, "1", key, "quota", cap, want, ttl };
	send_argv(c, (struct req){ .kind = R_QUOTA, .qu = r.qu, .day = r.day }, 8, argv);
}

static void on_quota(struct clu *c, struct req *q, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer >= 0 &&
	    r->element[1]->type == REDIS_REPLY_INTEGER) {
		long long got = r->element[0]->integer;
		quota_answer(q->qu, q->day, (uint64_t)got, got == 0);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8)) {
		c->sha[0] = 0;
		send_load(c);
	} else {
		vl_log(VL_LOG_WARN, "cluster: unexpected answer to a quota lease of %s", q->qu->name.key);
	}
	quota_answer(q->qu, q->day, 0, false);
}

/* ---- the node listing ---- */

static void send_nodes(struct clu *c, struct req r)
{
	char max[16];

	snprintf(max, sizeof max, "%d", NODES_MAX);
	const char *argv[] = { "EVALSHA", c->sha, "1", "volley:nodes", "nodes", "volley:node:",
			       max };
	send_argv(c, (struct req){ .kind = R_NODES, .w = r.w }, 7, argv);
}

/* The live nodes' strings, one a line; one with a line end in it is not
 * a node's (each node writes its own as one-line JSON). */
static void on_nodes(struct clu *c, struct req *q, const redisReply *r)
{
	struct vl_buf b;

	if (r->type != REDIS_REPLY_ARRAY) {
		if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8)) {
			c->sha[0] = 0;
			send_load(c);
		}
		wait_done(q->w, CLU_IDEM_LOCAL, NULL, 0);
		return;
	}
	vl_buf_init(&b);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type == REDIS_REPLY_STRING && e->len && !memchr(e->str, '\n', e->len)) {
			vl_buf_append(&b, e->str, e->len);
			vl_buf_append(&b, "\n", 1);
		}
	}
	wait_done(q->w, CLU_IDEM_MINE, b.len ? b.p : "", b.len);
	vl_buf_free(&b);
}

/* ---- the state machine's effects ---- */

static void step(struct clu *c, enum clu_input in, unsigned nodes, const char *why)
{
	unsigned old_n = c->fsm.nodes;

	if (clu_fsm_step(&c->fsm, in, nodes, vl_now_ms(), TIMEOUT_MS)) {
		atomic_store(&c->mode, (int)c->fsm.mode);
		atomic_fetch_add(&c->n_modes, 1);
		vl_log(c->fsm.mode == CLU_SHARED ? VL_LOG_INFO : VL_LOG_WARN,
		       "cluster: %s mode (%u nodes): %s",
		       c->fsm.mode == CLU_SHARED ? "shared" : "local", c->fsm.nodes, why);
		if (c->on_mode)
			c->on_mode(c->arg, c->fsm.mode, c->fsm.nodes, why);
	}
	atomic_store(&c->nodes, c->fsm.nodes);
	if (c->fsm.nodes != old_n)
		state_write(c, c->fsm.nodes);
}

static void disconnect(struct clu *c, const char *why)
{
	clu_link_close(&c->link);
	while (c->flen) {
		struct req *r = &c->fly[c->fhead];
		unsent(c, r);
		if (r->kind == R_CONN) {
			r->k->asked = false;
			r->k->sent_want = 0;   /* ask again once back */
		}
		c->fhead = (c->fhead + 1) % FLYMAX;
		c->flen--;
	}
	c->fsm.waiting_since_ms = 0;
	c->sha[0] = 0;
	/* a change of mode is logged by step; a failure in local mode once */
	if (c->fsm.mode == CLU_LOCAL && strcmp(c->why, why) != 0)
		vl_log(VL_LOG_WARN, "cluster: cannot use Redis (local mode): %s", why);
	snprintf(c->why, sizeof c->why, "%s", why);
	step(c, CLU_IN_DOWN, 0, why);
	c->backoff = c->backoff ? c->backoff * 2 : BACKOFF_MIN_MS;
	if (c->backoff > BACKOFF_MAX_MS)
		c->backoff = BACKOFF_MAX_MS;
	c->next_try = vl_now_ms() + c->backoff;
}

/* Start a non-blocking connect; the rest when the link is up. */
static void connect_start(struct clu *c)
{
	char why[400];

	if (c->backoff)
		atomic_fetch_add(&c->n_reconn, 1);
	if (clu_link_open(&c->link, c->url.host, c->url.port, why, sizeof why) < 0)
		disconnect(c, why);
}

/* Connected: AUTH, SELECT, the script, a heartbeat, all pipelined. */
static void hello(struct clu *c)
{
	if (c->pass[0]) {
		if (c->url.user[0]) {
			const char *a[] = { "AUTH", c->url.user, c->pass };
			send_argv(c, (struct req){ .kind = R_AUTH }, 3, a);
		} else {
			const char *a[] = { "AUTH", c->pass };
			send_argv(c, (struct req){ .kind = R_AUTH }, 2, a);
		}
	}
	if (c->url.db) {
		char db[16];
		snprintf(db, sizeof db, "%u", c->url.db);
		const char *a[] = { "SELECT", db };
		send_argv(c, (struct req){ .kind = R_SELECT }, 2, a);
	}
	send_load(c);
}

/* ---- replies ---- */

static bool is_err(const redisReply *r, char *why, size_t n, const char *what)
{
	if (r->type != REDIS_REPLY_ERROR)
		return false;
	snprintf(why, n, "%s: %.*s", what, (int)(r->len > 150 ? 150 : r->len), r->str);
	return true;
}

static void on_rate(struct clu *c, struct req *q, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8)) {
		/* Redis restarted or flushed its scripts: load again, ask again */
		c->sha[0] = 0;
		send_load(c);
		answer(c, q->l, 0, 1);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
		vl_log(VL_LOG_WARN, "cluster: unexpected answer to a lease of %s", q->l->name.key);
		answer(c, q->l, 0, BACKOFF_MIN_MS);
		return;
	}
	long long got = r->element[0]->integer, wait = r->element[1]->integer;
	if (got < 0 || got > (long long)q->want || wait < 0 || wait > 60000) {
		vl_log(VL_LOG_WARN, "cluster: a lease of %s out of bounds", q->l->name.key);
		got = 0;
		wait = BACKOFF_MIN_MS;
	}
	answer(c, q->l, (unsigned)got, (uint64_t)wait);
}

/* One reply, for the oldest request sent. False: the connection is done. */
static bool on_reply(struct clu *c, const redisReply *r)
{
	struct req q = c->fly[c->fhead];
	char why[240];

	c->fhead = (c->fhead + 1) % FLYMAX;
	c->flen--;
	c->fsm.waiting_since_ms = c->flen ? c->fly[c->fhead].sent_ms : 0;
	switch (q.kind) {
	case R_AUTH:
		if (is_err(r, why, sizeof why, "AUTH"))
			goto fail;
		break;
	case R_SELECT:
		if (is_err(r, why, sizeof why, "SELECT"))
			goto fail;
		break;
	case R_LOAD:
		if (is_err(r, why, sizeof why, "SCRIPT LOAD"))
			goto fail;
		if (r->type != REDIS_REPLY_STRING || r->len != 40) {
			snprintf(why, sizeof why, "SCRIPT LOAD: not a SHA1");
			goto fail;
		}
		memcpy(c->sha, r->str, 40);
		c->sha[40] = 0;
		if (c->fsm.mode != CLU_SHARED)
			send_hb(c);
		break;
	case R_HB:
		if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8)) {
			send_load(c);
			break;
		}
		if (is_err(r, why, sizeof why, "heartbeat"))
			goto fail;
		if (r->type != REDIS_REPLY_INTEGER || r->integer < 1) {
			snprintf(why, sizeof why, "heartbeat: unexpected answer");
			goto fail;
		}
		c->backoff = 0;
		step(c, CLU_IN_UP, (unsigned)(r->integer > 10000 ? 10000 : r->integer),
		     "Redis answers");
		return true;
	case R_RATE:
		on_rate(c, &q, r);
		break;
	case R_IDEM:
		on_idem(c, &q, r);
		break;
	case R_NODES:
		on_nodes(c, &q, r);
		break;
	case R_QUOTA:
		on_quota(c, &q, r);
		break;
	case R_IDEMSET:
	case R_CUT:
		break;
	case R_CONN:
		q.k->asked = false;
		if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8)) {
			c->sha[0] = 0;
			send_load(c);
			break;
		}
		if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0 && r->integer <= q.k->limit)
			atomic_store(&q.k->granted, (unsigned)r->integer);
		else
			vl_log(VL_LOG_WARN, "cluster: unexpected answer to a connection lease of %s",
			       q.k->name.key);
		break;
	}
	step(c, CLU_IN_REPLY, 0, "");
	return true;
fail:
	vl_log(VL_LOG_WARN, "cluster: %s", why);
	disconnect(c, why);
	return false;
}

/* The replies the link has read, each for the oldest request sent. */
static void take_replies(struct clu *c)
{
	while (c->link.rd) {
		void *rep = NULL;
		if (redisReaderGetReply(c->link.rd, &rep) != REDIS_OK) {
			disconnect(c, "Redis: a reply that does not parse");
			return;
		}
		if (!rep)
			return;
		if (!c->flen) {
			freeReplyObject(rep);
			disconnect(c, "Redis: a reply to nothing asked");
			return;
		}
		bool ok = on_reply(c, rep);
		freeReplyObject(rep);
		if (!ok)
			return;
	}
}

/* Poll said revents: the link moves on; replies are taken, commands sent. */
static void on_io(struct clu *c, short revents)
{
	char why[400];
	int r = clu_link_io(&c->link, revents, why, sizeof why);

	if (r < 0) {
		disconnect(c, why);
		return;
	}
	if (r > 0)
		hello(c);
	take_replies(c);
	if (clu_link_flush(&c->link, why, sizeof why) < 0)
		disconnect(c, why);
}

static bool up(const struct clu *c)
{
	return c->link.state == CLU_LINK_UP;
}

/* Requests from other threads: sent when Redis can take them, else
 * answered with nothing at once (the lease's taker waits a moment). */
static void drain_queue(struct clu *c)
{
	struct req batch[256];
	size_t n = 0;

	pthread_mutex_lock(&c->mu);
	while (c->qlen && n < VL_ARRAY_LEN(batch)) {
		batch[n++] = c->q[c->qhead];
		c->qhead = (c->qhead + 1) % QMAX;
		c->qlen--;
	}
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; i < n; i++) {
		if (!up(c) || !c->sha[0] || c->flen >= FLYMAX - 8 ||
		    c->fsm.mode != CLU_SHARED)
			unsent(c, &batch[i]);
		else if (batch[i].kind == R_RATE)
			send_rate(c, batch[i]);
		else if (batch[i].kind == R_CUT)
			send_cut(c, batch[i]);
		else if (batch[i].kind == R_NODES)
			send_nodes(c, batch[i]);
		else if (batch[i].kind == R_QUOTA)
			send_quota(c, batch[i]);
		else
			send_idem(c, batch[i]);
	}
}

/* What is due before waiting: connects, timeouts, heartbeats, requests. */
static void tick(struct clu *c)
{
	uint64_t now = vl_now_ms();

	if (c->link.state == CLU_LINK_CLOSED && now >= c->next_try)
		connect_start(c);
	if (c->link.state != CLU_LINK_CLOSED && !up(c) && now > c->link.opened_ms + CONNECT_MS)
		disconnect(c, "connect: timed out");
	if (up(c) && c->sha[0] && now >= c->next_hb && c->flen < FLYMAX - 8)
		send_hb(c);
	drain_queue(c);
	if (up(c) && c->sha[0] && c->fsm.mode == CLU_SHARED)
		renew_conns(c, now);
	step(c, CLU_IN_TICK, 0, "Redis does not answer");
	now = vl_now_ms();   /* what was just sent is later than the loop's start */
	if (c->link.state != CLU_LINK_CLOSED && c->fsm.waiting_since_ms &&
	    now > c->fsm.waiting_since_ms && now - c->fsm.waiting_since_ms > TIMEOUT_MS)
		disconnect(c, "Redis does not answer");
}

static void *run(void *arg)
{
	struct clu *c = arg;
	char why[400];

	vl_thread_name("vl-cluster");
	while (!atomic_load(&c->stop)) {
		tick(c);
		if (clu_link_flush(&c->link, why, sizeof why) < 0)
			disconnect(c, why);
		struct pollfd p[2] = { { .fd = c->efd, .events = POLLIN },
				       { .fd = c->link.fd, .events = clu_link_events(&c->link) } };
		if (poll(p, c->link.fd >= 0 ? 2 : 1, 50) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			uint64_t v;
			if (read(c->efd, &v, sizeof v) < 0) { /* nothing: a wake-up only */ }
		}
		if (c->link.fd >= 0 && p[1].revents)
			on_io(c, p[1].revents);
	}
	clu_link_free(&c->link);
	return NULL;
}

/* ---- the face ---- */

static bool tls_on(const struct clu_url *u, const struct clu_tls_opts *t)
{
	return u->tls || (t && t->on);
}

int clu_check(const char *url, const struct clu_tls_opts *t, char *err, size_t errlen)
{
	struct clu_url u;
	struct clu_tls tls;
	char why[200];

	if (clu_url_parse(url, &u, why, sizeof why) < 0)
		return vl_fail(err, errlen, "cluster.redis: %s", why);
	if (!tls_on(&u, t))
		return 0;
	if (clu_tls_init(&tls, t, u.host, err, errlen) < 0)
		return -1;
	clu_tls_free(&tls);
	return 0;
}

static void clu_free(struct clu *c)
{
	if (c->efd >= 0)
		close(c->efd);
	clu_tls_free(&c->tls);
	free(c->node);
	free(c->info);
	free(c->state_file);
	explicit_bzero(c->pass, sizeof c->pass);
	free(c);
}

struct clu *clu_start(const struct clu_opts *o, char *err, size_t errlen)
{
	struct clu *c = vl_calloc(1, sizeof *c);
	char why[200];

	if (clu_url_parse(o->redis, &c->url, why, sizeof why) < 0) {
		snprintf(err, errlen, "cluster.redis: %s", why);
		free(c);
		return NULL;
	}
	if (tls_on(&c->url, &o->tls) && clu_tls_init(&c->tls, &o->tls, c->url.host, err, errlen) < 0) {
		free(c);
		return NULL;
	}
	snprintf(c->pass, sizeof c->pass, "%s", o->password ? o->password : c->url.pass);
	c->node = vl_strdup(o->node);
	c->info = vl_strdup(o->info ? o->info : "{}");
	c->state_file = o->state_file ? vl_strdup(o->state_file) : NULL;
	c->ttl_ms = o->lease_ttl_ms ? o->lease_ttl_ms : 10000;
	c->on_mode = o->on_mode;
	c->arg = o->arg;
	clu_link_init(&c->link, c->tls.ctx ? &c->tls : NULL);
	clu_fsm_init(&c->fsm, state_read(c->state_file));
	atomic_store(&c->nodes, c->fsm.nodes);
	pthread_mutex_init(&c->mu, NULL);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0 || pthread_create(&c->tid, NULL, run, c) != 0) {
		snprintf(err, errlen, "cluster: cannot start its thread: %s", strerror(errno));
		pthread_mutex_destroy(&c->mu);
		clu_free(c);
		return NULL;
	}
	return c;
}

static void named_free(struct clu_named *n)
{
	while (n) {
		struct clu_named *next = n->next;
		free(n->key);
		free(n);
		n = next;
	}
}

void clu_stop(struct clu *c)
{
	uint64_t one = 1;

	if (!c)
		return;
	atomic_store(&c->stop, true);
	if (write(c->efd, &one, sizeof one) < 0) { /* it wakes within 50 ms anyway */ }
	pthread_join(c->tid, NULL);
	while (c->qlen) {            /* what came after the thread's last look */
		unsent(c, &c->q[c->qhead]);
		c->qhead = (c->qhead + 1) % QMAX;
		c->qlen--;
	}
	named_free(c->leases);
	named_free(c->conns);
	named_free(c->quotas);
	pthread_mutex_destroy(&c->mu);
	clu_free(c);
}

enum clu_mode clu_mode(const struct clu *c)
{
	return (enum clu_mode)atomic_load(&c->mode);
}

unsigned clu_nodes(const struct clu *c)
{
	return atomic_load(&c->nodes);
}

/* The entry named key of *list; a new one (size octets, zeroed, then
 * init(entry, arg) under the lock) when there is none. */
static void *named_get(struct clu *c, struct clu_named **list, const char *key, size_t size,
		       void (*init)(void *, const void *), const void *arg)
{
	struct clu_named *n;

	pthread_mutex_lock(&c->mu);
	for (n = *list; n; n = n->next)
		if (!strcmp(n->key, key))
			break;
	if (!n) {
		n = vl_calloc(1, size);
		n->key = vl_strdup(key);
		init(n, arg);
		n->next = *list;
		*list = n;
	}
	pthread_mutex_unlock(&c->mu);
	return n;
}

static void lease_init(void *e, const void *limit)
{
	clu_rate_init(&((struct clu_lease *)e)->st, *(const double *)limit);
}

struct clu_lease *clu_lease_get(struct clu *c, const char *key, double limit)
{
	struct clu_lease *l = named_get(c, &c->leases, key, sizeof *l, lease_init, &limit);

	if (l->st.limit != limit)   /* a reload changed it */
		clu_rate_init(&l->st, limit);
	return l;
}

static bool enqueue(struct clu *c, struct req r);

static void conns_init(void *e, const void *limit)
{
	((struct clu_conns *)e)->limit = *(const unsigned *)limit;
}

struct clu_conns *clu_conns_get(struct clu *c, const char *key, unsigned limit)
{
	return named_get(c, &c->conns, key, sizeof(struct clu_conns), conns_init, &limit);
}

unsigned clu_conns_use(struct clu *c, struct clu_conns *k, unsigned want)
{
	uint64_t one = 1;

	if (want > k->limit)
		want = k->limit;
	if (atomic_exchange(&k->want, want) != want &&
	    write(c->efd, &one, sizeof one) < 0) { /* the thread looks every 50 ms */ }
	return clu_conns_allowed(clu_mode(c), clu_nodes(c), k->limit, atomic_load(&k->granted),
				 want);
}

static void quota_init(void *e, const void *arg)
{
	struct clu_quota *q = e;

	(void)arg;
	q->day = -1;
	atomic_store(&q->in_day, -1);
	atomic_store(&q->in_full_day, -1);
}

struct clu_quota *clu_quota_get(struct clu *c, const char *key)
{
	return named_get(c, &c->quotas, key, sizeof(struct clu_quota), quota_init, NULL);
}

/* Answers that came: an allowance of another day is dropped. */
static void quota_absorb(struct clu_quota *q)
{
	unsigned n = atomic_load(&q->in_n);

	if (n == q->seen_n)
		return;
	q->seen_n = n;
	q->asked = false;
	uint64_t got = atomic_exchange(&q->in_got, 0);
	if (atomic_load(&q->in_day) == q->day)
		q->tokens += got;
	if (atomic_load(&q->in_full_day) == q->day)
		q->full = true;
}

uint64_t clu_quota_take(struct clu *c, struct clu_quota *q, uint64_t cap, uint64_t own,
			int64_t day, uint64_t now_ms)
{
	unsigned nodes = clu_nodes(c);

	if (q->day != day) {            /* a new day: a new count */
		q->day = day;
		q->tokens = 0;
		q->full = false;
	}
	quota_absorb(q);
	if (q->tokens) {
		q->tokens--;
		return 0;
	}
	if (clu_mode(c) != CLU_SHARED)
		return clu_quota_local_ok(cap, nodes, own) ? 0 : CLU_QUOTA_LOCAL_MS;
	if (q->full)
		return UINT64_MAX;
	if (q->asked && now_ms - q->asked_ms < TIMEOUT_MS)
		return CLU_LEASE_POLL_MS;
	struct req r = { .kind = R_QUOTA, .qu = q, .day = day, .limit = (double)cap,
			 .want = clu_quota_want(cap, nodes) };
	if (!enqueue(c, r))
		return CLU_QUOTA_LOCAL_MS;
	q->asked = true;
	q->asked_ms = now_ms;
	return CLU_LEASE_POLL_MS;
}

static bool ask(struct clu *c, struct clu_lease *l, unsigned want)
{
	uint64_t one = 1;
	bool ok;

	pthread_mutex_lock(&c->mu);
	ok = c->qlen < QMAX;
	if (ok)
		c->q[(c->qhead + c->qlen++) % QMAX] =
			(struct req){ .kind = R_RATE, .l = l, .want = want, .limit = l->st.limit };
	pthread_mutex_unlock(&c->mu);
	if (!ok) {
		atomic_fetch_add(&c->n_full, 1);
		return false;
	}
	if (write(c->efd, &one, sizeof one) < 0) { /* the thread looks every 50 ms */ }
	return true;
}

void clu_lease_cut(struct clu *c, struct clu_lease *l, double rate, uint64_t pause_ms)
{
	if (clu_mode(c) != CLU_SHARED)
		return;
	if (!enqueue(c, (struct req){ .kind = R_CUT, .l = l, .limit = l->st.limit, .cut = rate,
				      .pause_ms = pause_ms }))
		vl_log(VL_LOG_WARN, "cluster: a slow-down of %s not shared (queue full)", l->name.key);
	/* what this node holds of the old rate it gives up */
	l->st.tokens = 0;
}

uint64_t clu_lease_take(struct clu *c, struct clu_lease *l, uint64_t now_ms)
{
	unsigned n = atomic_load(&l->in_n);
	bool want_more;

	if (n != l->seen_n) {
		l->seen_n = n;
		int64_t got = atomic_exchange(&l->in_got, 0);
		clu_rate_granted(&l->st, (unsigned)got, atomic_load(&l->in_wait), now_ms);
	}
	uint64_t w = clu_rate_take(&l->st, clu_mode(c), clu_nodes(c), now_ms, &want_more);
	if (want_more && ask(c, l, l->st.last_want))
		l->st.asked = true;
	return w;
}

static bool enqueue(struct clu *c, struct req r)
{
	uint64_t one = 1;
	bool ok;

	pthread_mutex_lock(&c->mu);
	ok = c->qlen < QMAX && !atomic_load(&c->stop);
	if (ok)
		c->q[(c->qhead + c->qlen++) % QMAX] = r;
	pthread_mutex_unlock(&c->mu);
	if (!ok) {
		atomic_fetch_add(&c->n_full, 1);
		return false;
	}
	if (write(c->efd, &one, sizeof one) < 0) { /* the thread looks every 50 ms */ }
	return true;
}

/* A new wait, held by the caller and the thread. */
static struct clu_wait *wait_new(void)
{
	struct clu_wait *w = vl_calloc(1, sizeof *w);

	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->refs = 2;
	return w;
}

/* Queue r (its wait w) and wait at most timeout_ms for the answer; w is
 * locked on return (done or not): the caller reads it, then wait_release. */
static bool wait_ask(struct clu *c, struct clu_wait *w, struct req r, uint64_t timeout_ms)
{
	struct timespec ts;

	if (!enqueue(c, r)) {
		free(r.key);
		w->refs = 1;
		pthread_mutex_lock(&w->mu);
		return false;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(timeout_ms / 1000);
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
		;
	return w->done;
}

static void wait_release(struct clu_wait *w)
{
	pthread_mutex_unlock(&w->mu);
	wait_unref(w);
}

int clu_idem_claim(struct clu *c, const char *key, uint64_t ttl_ms, uint64_t timeout_ms,
		   char **answer, char *node, size_t nodelen)
{
	int rc = CLU_IDEM_LOCAL;

	*answer = NULL;
	if (clu_mode(c) != CLU_SHARED)
		return CLU_IDEM_LOCAL;
	struct clu_wait *w = wait_new();
	/* sent_ms carries the TTL to the thread */
	struct req r = { .kind = R_IDEM, .w = w, .key = vl_strdup(key), .sent_ms = ttl_ms };
	if (wait_ask(c, w, r, timeout_ms)) {
		rc = w->rc;
		if (rc == CLU_IDEM_OTHER && w->val) {
			const char *nl = strchr(w->val, '\n');
			size_t n = nl ? (size_t)(nl - w->val) : strlen(w->val);
			snprintf(node, nodelen, "%.*s", (int)n, w->val);
			if (nl && nl[1])
				*answer = vl_strdup(nl + 1);
		}
	}
	wait_release(w);
	return rc;
}

char *clu_nodes_list(struct clu *c, uint64_t timeout_ms)
{
	char *lines = NULL;

	if (clu_mode(c) != CLU_SHARED)
		return NULL;
	struct clu_wait *w = wait_new();
	if (wait_ask(c, w, (struct req){ .kind = R_NODES, .w = w }, timeout_ms) &&
	    w->rc == CLU_IDEM_MINE && w->val)
		lines = vl_strdup(w->val);
	wait_release(w);
	return lines;
}

void clu_idem_bind(struct clu *c, const char *key, const char *answer, uint64_t ttl_ms)
{
	if (clu_mode(c) != CLU_SHARED)
		return;
	struct req r = { .kind = R_IDEMSET, .key = vl_strdup(key),
			 .val = answer ? vl_strdup(answer) : NULL, .sent_ms = ttl_ms };
	if (!enqueue(c, r)) {
		free(r.key);
		free(r.val);
	}
}

void clu_stats(const struct clu *c, struct clu_stats *s)
{
	s->mode = clu_mode(c);
	s->nodes = clu_nodes(c);
	s->roundtrips = atomic_load(&c->n_rt);
	s->leases = atomic_load(&c->n_leases);
	s->tokens = atomic_load(&c->n_tokens);
	s->mode_changes = atomic_load(&c->n_modes);
	s->reconnects = atomic_load(&c->n_reconn);
	s->queue_full = atomic_load(&c->n_full);
	s->cuts = atomic_load(&c->n_cuts);
	s->last_lease = atomic_load(&c->last_lease);
}
