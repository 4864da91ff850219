/*
 * cluster/: several volleyd nodes sharing their rate limits through Redis
 * (docs/cluster.md). Its parts:
 *   url.c    the redis[s]://[user:pass@]host:port/db URL (pure)
 *   lease.c  a node's side of a shared limit: leases of tokens sized to
 *            its recent rate, the local 1/N bucket of the fallback, and
 *            the shared <-> local state machine (pure: the caller passes
 *            the time)
 *   conn.c   the client: one thread (vl-cluster) that owns the connection
 *            to Redis, a bounded command queue, hiredis for the RESP
 *            framing only (redisFormatCommandArgv, redisReader); AUTH,
 *            SELECT, SCRIPT LOAD, EVALSHA, heartbeats, reconnects with
 *            back-off.
 *   link.c   a connection's transport: TCP, or TLS over it (OpenSSL,
 *            non-blocking, the certificate verified), driven by poll.
 *   supp.c   the suppression list shared: one thread (vl-clsupp) with
 *            two links (commands, SUBSCRIBE); supp_ent.c its entries
 *            (pure).
 * Nothing here blocks the caller on Redis: a lease asks, the answer lands
 * in atomics the delivery thread reads on its next look. Prefix: clu_.
 */
#ifndef VOLLEY_CLUSTER_H
#define VOLLEY_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the URL (url.c) ---- */
struct clu_url {
	char host[256];
	unsigned port;               /* default 6379 */
	unsigned db;                 /* default 0; 0 to 15 */
	char user[128], pass[256];   /* "": none */
	bool tls;                    /* rediss:// */
};
/* redis://[[user]:pass@]host[:port][/db], or rediss:// (the same over
 * TLS); host a name, an IPv4 literal or [IPv6]. -1 with err naming what
 * is wrong. */
int clu_url_parse(const char *s, struct clu_url *u, char *err, size_t errlen);

/* ---- the shared <-> local state machine (lease.c) ---- */
enum clu_mode { CLU_LOCAL = 0, CLU_SHARED = 1 };
enum clu_input {
	CLU_IN_UP,       /* connected, authenticated, script loaded, heartbeat answered */
	CLU_IN_REPLY,    /* a reply came */
	CLU_IN_DOWN,     /* the connection failed or was lost */
	CLU_IN_TICK,     /* time passes: a request unanswered past the timeout is down */
};
struct clu_fsm {
	enum clu_mode mode;
	unsigned nodes;              /* N: nodes seen at the last heartbeat (>= 1) */
	uint64_t last_reply_ms;      /* of the last reply */
	uint64_t waiting_since_ms;   /* oldest unanswered request, 0: none */
};
/* Start local with the N last known (0 counts as 1). */
void clu_fsm_init(struct clu_fsm *f, unsigned nodes);
/* Apply an input at now_ms (nodes: the heartbeat's count, 0: unknown);
 * timeout_ms: how long a request may wait for its answer. True when the
 * mode changed. */
bool clu_fsm_step(struct clu_fsm *f, enum clu_input in, unsigned nodes, uint64_t now_ms,
		  uint64_t timeout_ms);

/* ---- a node's side of one shared rate (lease.c) ----
 * The cluster-wide limit is a token bucket in Redis (limit a second,
 * burst one second's worth). A node takes a lease of `want` tokens at a
 * time: its recent rate (at least limit / N) times CLU_LEASE_PERIOD_MS,
 * at most the burst / N. Redis grants it (or what is there, at least a
 * quarter of it), usable once its tokens will have accrued (GCRA-like:
 * grants run at most a quarter burst ahead of the refill), so a round
 * trip brings a lease, not a crumb, and no node starves. A node
 * asks again when it holds less than half a lease, and tokens older than
 * CLU_LEASE_HOLD_MS past their start are dropped (a lease left unused
 * does not turn into a burst later). In local mode a bucket of
 * limit / N a second (burst one second's worth of it) decides. */
#define CLU_LEASE_PERIOD_MS 250u
#define CLU_LEASE_HOLD_MS 1000u
#define CLU_LEASE_POLL_MS 2u         /* an answer due: look again this soon */
struct clu_rate {
	double limit, burst;             /* per second, cluster-wide */
	int64_t tokens;                  /* leased and not spent */
	uint64_t got_ms;                 /* when they are usable from */
	uint64_t ask_after_ms;           /* Redis said: not before then */
	bool asked;                      /* a request is out */
	unsigned last_want;
	/* spent, per second, measured over windows of a second */
	double recent;
	uint64_t win_ms;
	unsigned win_n;
	/* the fallback's bucket */
	double ltok;
	uint64_t lat_ms;
	bool lfull;
};
void clu_rate_init(struct clu_rate *r, double limit);
/* The size of the next lease for N nodes. */
unsigned clu_rate_want(const struct clu_rate *r, unsigned nodes);
/* An answer: got tokens, usable after wait_ms; or none, and wait_ms
 * before asking again. */
void clu_rate_granted(struct clu_rate *r, unsigned got, uint64_t wait_ms, uint64_t now_ms);
/* May one message go at now_ms? 0: yes, a token is spent; else the ms to
 * wait. *ask: a lease should be asked for now (shared mode only; the
 * caller sends it and marks it asked). */
uint64_t clu_rate_take(struct clu_rate *r, enum clu_mode mode, unsigned nodes,
		       uint64_t now_ms, bool *ask);

/* ---- the client (conn.c) ---- */
/* TLS to Redis: on with tls or a rediss:// URL. The server's certificate
 * is always verified (chain and name), TLS 1.2 at least. */
struct clu_tls_opts {
	bool on;
	const char *ca_file;             /* NULL or "": the system's CAs */
	const char *cert, *key;          /* a client certificate (PEM), or NULL */
	const char *server_name;         /* NULL or "": the URL's host */
};
/* Check the URL and the TLS files (loaded as the client would load
 * them); -1 with err naming the key (cluster.redis, cluster.tls_*). */
int clu_check(const char *url, const struct clu_tls_opts *t, char *err, size_t errlen);
struct clu_opts {
	const char *redis;               /* the URL */
	const char *password;            /* from password_file, or NULL (the URL's) */
	struct clu_tls_opts tls;
	const char *node;                /* this node's name */
	const char *info;                /* what the registry keeps of it (JSON) */
	uint64_t lease_ttl_ms;           /* heartbeats and connection leases */
	const char *state_file;          /* N last seen, kept across restarts; NULL: none */
	/* Called on the vl-cluster thread at each change of mode. */
	void (*on_mode)(void *arg, enum clu_mode mode, unsigned nodes, const char *why);
	void *arg;
};
struct clu;
/* What the limits by name (rate leases, connection grants, quotas) have
 * first: one look-up and one free for their three lists. */
struct clu_named {
	char *key;
	struct clu_named *next;
};
/* A shared limit by name: the caller's (the delivery thread's) state and
 * the answer box the vl-cluster thread fills. Kept until clu_stop. */
struct clu_lease {
	struct clu_named name;      /* first */
	struct clu_rate st;              /* the delivery thread's */
	_Atomic int64_t in_got;          /* answers not yet taken: tokens ... */
	_Atomic uint64_t in_wait;        /* ... and the last wait asked */
	_Atomic unsigned in_n;           /* answers given (the taker compares) */
	unsigned seen_n;
};
/* Start the thread; it connects in the background (the mode is local
 * until the first heartbeat answer). NULL with err on bad options. */
struct clu *clu_start(const struct clu_opts *o, char *err, size_t errlen);
void clu_stop(struct clu *c);
enum clu_mode clu_mode(const struct clu *c);
unsigned clu_nodes(const struct clu *c);
/* The lease of a rate limit named key (the same key: the same lease). */
struct clu_lease *clu_lease_get(struct clu *c, const char *key, double limit);
/* May one message go under this lease now? As clu_rate_take; asks Redis
 * itself when it should. */
uint64_t clu_lease_take(struct clu *c, struct clu_lease *l, uint64_t now_ms);

/* A "slow down" seen by this node (the site's adaptive back-off cut its
 * rate to `rate` and paused it pause_ms): the cluster's bucket pauses as
 * long and refills at `rate` until CLU_CUT_HOLD_MS after the last cut, on
 * every node (a lower cut under way is kept). Async; shared mode only. */
#define CLU_CUT_HOLD_MS 30000u
void clu_lease_cut(struct clu *c, struct clu_lease *l, double rate, uint64_t pause_ms);

/* A connection limit by name: cluster-wide leases with expiry. Each node
 * holds a grant (connections it may have open to the site): at most its
 * fair share, limit / N (N the registered nodes, at least one each), and
 * never more than the others leave of the limit, so the sum holds even
 * while N changes. It renews every lease_ttl / 3 (every
 * CLU_CONNS_RETRY_MS while it holds less than Redis could grant it:
 * clu_conns_short); a grant not
 * renewed within lease_ttl (a node killed) is dropped and, once the node
 * has left the registry, its share is the others'. A node's unused share
 * is not lent to the others. In local mode a node may have limit / N.
 * The delivery thread says what it wants (0: nothing waits there); the
 * vl-cluster thread renews on its own. */
#define CLU_CONNS_RETRY_MS 500u
struct clu_conns {
	struct clu_named name;      /* first */
	unsigned limit;                  /* cluster-wide */
	_Atomic unsigned want;           /* the delivery thread's */
	_Atomic unsigned granted;        /* Redis's last answer */
	/* the vl-cluster thread's */
	unsigned sent_want;
	uint64_t renew_ms;
	bool asked;
};
/* The lease of the connection limit named key (the same key: the same). */
struct clu_conns *clu_conns_get(struct clu *c, const char *key, unsigned limit);
/* Say how many connections the site could use (0: none now); returns how
 * many it may have open now. */
unsigned clu_conns_use(struct clu *c, struct clu_conns *k, unsigned want);
/* The pure rule: what a node may have open in mode with N nodes and the
 * grant from Redis. */
unsigned clu_conns_allowed(enum clu_mode mode, unsigned nodes, unsigned limit, unsigned granted,
			   unsigned want);
/* Should a grant be asked for again early (every CLU_CONNS_RETRY_MS
 * instead of lease_ttl / 3)? Only while it is below what Redis could give
 * with N nodes: the wanted, at most the fair share limit / N (at least 1).
 * A node that wants the whole limit and holds its fair share waits for
 * the renewal (or for N to change). */
bool clu_conns_short(unsigned granted, unsigned want, unsigned limit, unsigned nodes);

/* A daily count with a cap, shared (an egress source's warm-up cap for a
 * provider): Redis keeps the day's count per key and day; a node leases
 * an allowance of clu_quota_want() sends at a time and spends it locally,
 * so the cluster never sends more than the cap (an allowance a node held
 * when it died is lost for the day, never sent twice). In local mode a
 * node sends while its own count of the day is below cap / N. */
#define CLU_QUOTA_LOCAL_MS 1000u     /* local mode, over cap / N: look again */
struct clu_quota {
	struct clu_named name;      /* first */
	/* the delivery thread's */
	int64_t day;                     /* the day its allowance is for */
	uint64_t tokens;
	bool asked, full;                /* a lease is out; Redis said: the day is full */
	uint64_t asked_ms;
	/* the answer box, filled by the vl-cluster thread */
	_Atomic uint64_t in_got;
	_Atomic int64_t in_day, in_full_day;
	_Atomic unsigned in_n;
	unsigned seen_n;
};
/* Sends a lease asks for: an eighth of the cap's share of N, 1 to 1,000. */
unsigned clu_quota_want(uint64_t cap, unsigned nodes);
/* Local mode: may a node that sent own today send one more? */
bool clu_quota_local_ok(uint64_t cap, unsigned nodes, uint64_t own);
/* The quota named key (the same key: the same). */
struct clu_quota *clu_quota_get(struct clu *c, const char *key);
/* May one more go today (day: days since 1970, UTC) under cap, this node
 * having sent own today? 0: yes (counted); else the ms to look again, or
 * UINT64_MAX when the day's cap is reached cluster-wide. */
uint64_t clu_quota_take(struct clu *c, struct clu_quota *q, uint64_t cap, uint64_t own,
			int64_t day, uint64_t now_ms);

/* Idempotency keys across nodes: a key is held by the first node that
 * claims it (SET NX in Redis, pending for ttl_ms), then bound to that
 * node's 202 answer (kept ttl_ms: the spool's retention). */
enum { CLU_IDEM_LOCAL = 0, CLU_IDEM_MINE = 1, CLU_IDEM_OTHER = 2 };
/* Waits at most timeout_ms (an API thread's call, never the delivery
 * thread's). LOCAL: no answer (local mode, Redis slow or gone): the node
 * decides alone; MINE: this node holds it (its registry decides); OTHER:
 * node (its name) holds it: *answer its 202 JSON (malloc'd), or NULL
 * while it is still being received there. */
int clu_idem_claim(struct clu *c, const char *key, uint64_t ttl_ms, uint64_t timeout_ms,
		   char **answer, char *node, size_t nodelen);
/* Bind a key this node holds to its answer (NULL: let go of it). Async. */
void clu_idem_bind(struct clu *c, const char *key, const char *answer, uint64_t ttl_ms);

/* What the live nodes registered (clu_opts.info), one line each, from
 * Redis (an API thread's call: waits at most timeout_ms). NULL in local
 * mode or without an answer in time; else malloc'd ("" for none). */
char *clu_nodes_list(struct clu *c, uint64_t timeout_ms);

struct clu_stats {
	enum clu_mode mode;
	unsigned nodes;
	uint64_t roundtrips, leases, tokens, mode_changes, reconnects, queue_full, cuts;
	unsigned last_lease;             /* tokens of the last lease granted */
};
void clu_stats(const struct clu *c, struct clu_stats *s);

/* ---- the suppression list shared (supp_ent.c pure, supp.c the thread) ----
 * In Redis: volley:supp (hash: address -> JSON of its last change,
 * {"op":"add"|"del","reason","job","node","at"}), volley:supp:seq (zset:
 * address -> the change counter when it last changed), volley:supp:ctr
 * (the counter), volley:supp:epoch (an id set once: a Redis that lost its
 * data has a new one); each change is published on volley:supp:ch as
 * "SEQ TAB ADDRESS TAB JSON". Every field is bounded; an entry out of
 * bounds is skipped with a log line, never applied. */
#define CLU_SUPP_EMAIL_MAX 512
#define CLU_SUPP_REASON_MAX 512
#define CLU_SUPP_JOB_MAX 128
#define CLU_SUPP_NODE_MAX 128
#define CLU_SUPP_JSON_MAX 4096
#define CLU_SUPP_MSG_MAX (CLU_SUPP_EMAIL_MAX + CLU_SUPP_JSON_MAX + 32)
struct clu_supp_entry {
	bool add;                        /* false: removed */
	uint64_t seq;                    /* the cluster's change counter */
	long long at;                    /* Unix seconds */
	char email[CLU_SUPP_EMAIL_MAX + 1];
	char reason[CLU_SUPP_REASON_MAX + 1];
	char job[CLU_SUPP_JOB_MAX + 1];
	char node[CLU_SUPP_NODE_MAX + 1];
};
/* The JSON kept for a change (reason and job cut to their bounds on a
 * UTF-8 boundary; NULL: ""). malloc'd. */
char *clu_supp_encode(bool add, const char *reason, const char *job, const char *node,
		      long long at);
/* An entry from its address, its JSON and its counter. -1 with err
 * naming what is wrong. */
int clu_supp_parse(const char *email, size_t elen, const char *json, size_t jlen, uint64_t seq,
		   struct clu_supp_entry *e, char *err, size_t errlen);
/* A published message, "SEQ TAB ADDRESS TAB JSON". */
int clu_supp_parse_msg(const char *m, size_t len, struct clu_supp_entry *e, char *err,
		       size_t errlen);
/* A change counter as Redis writes it: digits only, at most 2^53 (a
 * score is a double). -1 if not. */
int clu_supp_seq(const char *s, size_t len, uint64_t *out);

struct clu_supp_opts {
	const char *redis;               /* the URL */
	const char *password;            /* or NULL: the URL's */
	struct clu_tls_opts tls;         /* as the client's (conn.c) */
	const char *node;                /* this node's name */
	const char *state_file;          /* the epoch and counter seen; NULL: none */
	/* On the vl-clsupp thread: other nodes' changes, in order (n <=
	 * CLU_SUPP_BATCH). -1: an I/O error (logged; the counter moves on). */
	int (*apply)(void *arg, const struct clu_supp_entry *e, size_t n);
	void *arg;
};
#define CLU_SUPP_BATCH 128               /* entries a catch-up round trip (< 1 MB) */
#define CLU_SUPP_QMAX 50000              /* local changes waiting for Redis */
struct clu_supp;
/* Start the thread (vl-clsupp): two links of its own (commands, and one
 * in SUBSCRIBE mode; TLS as the client's), reconnecting with back-off. */
struct clu_supp *clu_supp_start(const struct clu_supp_opts *o, char *err, size_t errlen);
/* Stops the thread; what is still queued is lost for the cluster (the
 * node's own list has it). */
void clu_supp_stop(struct clu_supp *s);
/* A change made on this node: queued for Redis (never blocks; past
 * CLU_SUPP_QMAX waiting it is dropped and counted). */
void clu_supp_push(struct clu_supp *s, bool add, const char *email, const char *reason,
		   const char *job, long long at);
struct clu_supp_stats {
	bool up;                         /* both connections up, caught up */
	uint64_t sent, received, dropped, bad, syncs;
	unsigned pending;
};
void clu_supp_stats(struct clu_supp *s, struct clu_supp_stats *st);

#endif
