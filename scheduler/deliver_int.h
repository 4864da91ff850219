/*
 * The delivery thread's own structures (deliver.c, site.c, djob.c,
 * commit.c). Everything here is touched by the delivery thread only,
 * except what commit.c's batches carry to the committer thread.
 */
#ifndef VOLLEY_DELIVER_INT_H
#define VOLLEY_DELIVER_INT_H

#include "sched_int.h"

struct site;
struct deliver;

/* One job's recipients waiting at one site: a FIFO of indexes. */
struct sjq {
	struct djob *dj;
	struct site *site;
	uint32_t *idx;
	size_t head, len, cap;
	struct sjq *next;             /* in the site's transactional or bulk list */
};

struct bucket {                   /* token bucket; rate 0 = unlimited */
	double rate, tokens, burst;
	uint64_t at_ms;
};

/* A job being delivered. */
struct djob {
	struct job *j;
	struct deliver *d;
	struct msg_job *msg;
	struct sched_table *table;
	char *sender;
	bool verp, transactional;
	double expires;
	uint8_t *st, *att;            /* per recipient: enum rstate, attempts */
	size_t n, nonfinal, inflight;
	struct bucket rate;
	struct sjq **qs;
	size_t nqs;
	struct vl_buf jbuf;           /* journal records for the next commit */
	const struct msg_dkim_key *keys[4]; /* DKIM keys of its From domain */
	size_t nkeys;
	bool body_static;             /* one DKIM body hash for all */
	bool dkim_required;
	struct msg_dkim_opts dkim_opts;  /* canonicalisation, x= */
	_Atomic bool bh_claim, bh_ok; /* set by the worker that hashed it first */
	unsigned char bh[MSG_DKIM_BH_LEN];
	char from_domain[256];
	long long delta[SCHED_NSTATES];   /* counter changes for the next commit */
	long long now_delta[SCHED_NSTATES]; /* ... and for right away */
	bool in_batch;                /* has records in the open batch */
	size_t ntimers;               /* retry timers pending */
	size_t pending_dns;           /* recipients on a domain's pending list */
	double last_time;             /* of the newest journal record */
	bool paused, cancelled, expired;
	struct djob *next;
};

/* A message in the engine. */
struct dmsg {
	struct eng_msg m;
	struct msg_out out;
	struct vl_buf sig;            /* DKIM-Signature fields, sent first */
	struct iovec *iov;            /* sig + the rendered message */
	size_t iovcap;
	const char *rcpt;
	char from[512];
	struct djob *dj;
	struct sjq *q;
	uint32_t idx;
	unsigned host;                /* index in the site's routes */
	uint64_t sent_ms;
	/* the result, copied on the worker thread */
	enum eng_status status;
	int code;
	bool maybe;
	char enhanced[10], stage[16], peer[64], tls_version[16], tls_cipher[64];
	bool tls_verified;
	char text[JREC_TEXT_MAX + 1];
	struct dmsg *next;
};

/* Timers: retries at a site (q, idx), site wake-ups, retries of a
 * recipient whose domain did not resolve (djob, idx). */
enum tkind { T_RETRY, T_SITE, T_REQUEUE };
struct timer {
	struct vl_heap_node hn;       /* first: key is the due time, ms */
	enum tkind kind;
	uint32_t idx;
	void *p;                      /* struct sjq, site or djob */
};

#define SITE_HOSTS_MAX 16        /* MX addresses tried per message */
struct site {
	char *key;
	char *name;                   /* the key's first part: what the API shows */
	struct eng_route route;       /* the policy's route template (tls, auth,
				       * limits); the only host of a routed site */
	struct eng_route *routes;     /* hosts in MX order; &route when routed */
	size_t nroutes;
	uint64_t down_until[SITE_HOSTS_MAX]; /* refused us: skip until then */
	bool routable;
	char no_route[400];
	double rate;                  /* configured, per second; 0 = unlimited */
	struct bucket b;              /* current (adaptive) */
	unsigned window, inflight;
	struct sjq *trans, *bulk;
	size_t waiting, deferred;     /* in queues; in retry timers */
	bool ready;                   /* on the ready list */
	struct site *next_ready, *next;
	/* adaptive back-off */
	uint64_t backoff_until_ms;
	double backoff_since;
	unsigned backoff_level, ok_streak;
	char backoff_reason[480];
	/* observation */
	char last_response[320];
	double last_time;
	uint64_t delivered, bounced, transient;
};

/* A recipient domain that needs MX resolution (no route configured). */
enum dstate { D_NEW, D_RESOLVING, D_OK, D_FAILED };
struct pend {
	struct djob *dj;
	uint32_t idx;
};
struct dom {
	struct deliver *d;
	char *name;
	enum dstate st;
	struct site *site;            /* D_OK */
	uint64_t until_ms;            /* D_OK, D_FAILED: good until */
	char why[256];                /* D_FAILED */
	struct pend *pend;            /* waiting for the answer */
	size_t npend, cap;
};

/* An answer from an engine worker's resolver, copied for this thread. */
struct dns_done {
	struct dom *dom;
	struct dns_mx_result *r;
	struct dns_done *next;
};

struct deliver {
	struct sched *sc;
	const struct cfg *cfg;
	struct sched_spool *spool;
	struct sched_suppress *sup;
	struct sched_events *ev;
	struct sched_bounce_rules *rules;
	struct msg_dkim_key **dkim;    /* cfg->dkim's keys, loaded at start */
	size_t ndkim;
	struct engine *eng;
	pthread_t tid;
	/* inbox, from API threads and engine workers */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct dmsg *results;
	struct dns_done *dns_done, *take_dns;
	struct job **adds;
	size_t nadds, capadds;
	struct job **ctls;
	size_t nctls, capctls;
	bool stopping;
	_Atomic bool quiet;           /* stopping: nothing more goes to the engine */
	uint64_t sync_req, sync_done; /* deliver_sync() rounds */
	pthread_cond_t progress;
	bool want_snap, want_snap_now;
	json_t *snap;                 /* queues, built on request */
	/* the delivery thread's own */
	struct djob *jobs;
	struct site *sites, *ready;
	json_t *site_index;           /* key -> site (as an integer pointer) */
	json_t *domain_site;          /* domain -> site, a cache */
	json_t *doms;                 /* domain -> struct dom, for MX domains */
	struct eng_route **old_routes; /* replaced MX address lists (see site_refresh) */
	size_t nold;
	struct vl_heap timers;        /* of struct timer */
	struct dmsg *free_msgs;
	size_t inflight;
	uint64_t seed;
	struct commit *commit;
	struct sched_rcpt rcpt;       /* scratch of deliver_send */
	struct vl_buf events, suppress;   /* for the next batch */
	uint64_t next_commit_ms;
	/* stats */
	uint64_t dispatched, delivered, bounced, transient, expired, suppressed;
	uint64_t by_class[2][SCHED_BC_COUNT];   /* [bounced, transient][class] */
	_Atomic bool blocked;
	/* what the next round must look at, instead of scanning every job */
	bool now_dirty;               /* some job has now_delta */
	bool batch_dirty;             /* some job has records for a commit */
	bool reap_due;                /* some job may have nothing left to do */
};

/* site.c */
struct site *site_for(struct deliver *d, const char *domain);
/* Where recipient idx of dj waits: its site's queue, or its domain's
 * pending list while MX resolution runs (or a bounce when it failed). */
void dom_enqueue(struct deliver *d, struct djob *dj, uint32_t idx, const char *domain);
void dom_answer(struct deliver *d, struct dns_done *dd);
void doms_free(struct deliver *d);
/* The host to try first; then the next after a refusal (-1: none left). */
unsigned site_first_host(struct site *s, uint64_t now);
int site_next_host(struct site *s, unsigned after, uint64_t now);
void site_ready(struct deliver *d, struct site *s);
void site_dispatch_all(struct deliver *d);
void site_result(struct deliver *d, struct site *s, const struct dmsg *m,
		 const struct sched_bounce_verdict *v);
json_t *site_json(const struct site *s);
void sjq_push(struct sjq *q, uint32_t idx);
void sjq_unlink_all(struct djob *dj);
struct sjq *sjq_for(struct djob *dj, struct site *s);
void sites_free(struct deliver *d);

/* djob.c */
struct djob *djob_load(struct deliver *d, struct job *j);
void djob_free(struct djob *dj);
/* Give recipient idx a new state; journal it when final or deferred. */
void djob_set(struct djob *dj, uint32_t idx, enum rstate to, const struct jrec *why);
void djob_control(struct djob *dj);
void djob_expire(struct djob *dj);
void djob_flush_now(struct djob *dj);
const char *djob_email(struct djob *dj, uint32_t idx, const char **domain);

/* deliver.c */
void timer_add(struct deliver *d, uint64_t due_ms, enum tkind k, void *p, uint32_t idx);
void deliver_send(struct deliver *d, struct sjq *q, uint32_t idx);
void deliver_event(struct deliver *d, struct djob *dj, uint32_t idx, const char *type,
		   const struct dmsg *m, const struct jrec *r);
/* An outcome decided without the engine, for a recipient not in flight. */
void deliver_local(struct deliver *d, struct djob *dj, uint32_t idx, bool permanent,
		   const char *text);

/* commit.c: the group committer */
struct commit *commit_start(struct deliver *d, char *err, size_t errlen);
/* Hand over what the jobs gathered since the last call (journal records,
 * counter changes, events); fsync'd then applied on the committer thread. */
void commit_submit(struct commit *c, struct djob *jobs, struct vl_buf *events,
		   struct vl_buf *suppress);
/* Wait until everything submitted is durable and applied. */
void commit_drain(struct commit *c);
/* Batches submitted and not yet applied. */
uint64_t commit_backlog(struct commit *c);
void commit_stop(struct commit *c);
bool commit_blocked(struct commit *c);
json_t *commit_stats_json(struct commit *c);

#endif
