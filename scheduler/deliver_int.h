/*
 * The delivery thread's own structures (deliver.c, site.c, djob.c,
 * commit.c). Everything here is touched by the delivery thread only,
 * except what commit.c's batches carry to the committer thread. The unit
 * tests include it to build a job or a site of their own.
 */
#ifndef VOLLEY_DELIVER_INT_H
#define VOLLEY_DELIVER_INT_H

#include "sched_int.h"
#include "shape.h"
#include "../sts/sts.h"
#include "../cluster/cluster.h"

struct sched_site;
struct sched_sgroup;
struct sched_deliver;

/* One job's recipients waiting at one site: a FIFO of indexes. */
struct sched_sjq {
	struct sched_djob *dj;
	struct sched_site *site;
	uint32_t *idx;
	size_t head, len, cap;
	struct sched_sjq *next;       /* in the site's transactional or bulk list */
};

/* A job being delivered. */
struct sched_djob {
	struct sched_job *j;
	struct sched_deliver *d;
	struct msg_job *msg;
	struct sched_table *table;
	char *sender;
	bool verp, transactional;
	int pool;                     /* the job's egress pool; -1: its domains' */
	bool require_tls;             /* every message with REQUIRETLS */
	double expires;
	uint8_t *st, *att;            /* per recipient: enum sched_rstate, attempts */
	uint8_t *cls;                 /* ... and the class of its last failure, for
				       * the Expiration event of a job's expiry */
	size_t n, nonfinal, inflight;
	uint32_t enq;                 /* recipients before this one are in their
				       * sites' queues (or final); a big job goes
				       * in over several rounds (sched_djob_enqueue) */
	struct sched_bucket rate;
	struct sched_sjq **qs;
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
	bool shared;                  /* recipients of a site share messages
				       * (msg_job_shareable, no VERP) */
	struct sched_djob *next;
};

#define SCHED_RCPTS_MAX 1000     /* recipients in one message, at most */

/* One recipient's result in a shared message, copied on the worker. */
struct sched_rres {
	enum eng_status status;
	int code;
	bool maybe;
	char enhanced[10], stage[16];
	char text[SCHED_JREC_TEXT_MAX + 1];
};

/* A message in the engine: one recipient, or several of one job at one
 * site (a shared job's; rcpts/idxs, results in res). idx and rcpt, and
 * the result fields, are the recipient being processed. */
struct sched_dmsg {
	struct eng_msg m;
	struct msg_out out;
	struct vl_buf sig;            /* DKIM-Signature fields, sent first */
	struct iovec *iov;            /* sig + the rendered message */
	size_t iovcap;
	bool body_common;             /* the job's common body: its DKIM body
				       * hash is the job's (dj->bh) */
	const char *rcpt;
	char from[512];
	struct sched_djob *dj;
	struct sched_sjq *q;
	uint32_t idx;
	const char **rcpts;           /* [nrcpt]: the envelope's recipients */
	uint32_t *idxs;               /* [nrcpt]: their indexes in the job */
	struct sched_rres *res;       /* [nrcpt] when nrcpt > 1 */
	size_t nrcpt, rcap, rescap;
	unsigned host;                /* index in the site's routes */
	uint64_t sent_ms;
	double reply_s;               /* the peer's reply time to the final dot
				       * (eng_result.reply_s); 0: none */
	/* the result, copied on the worker thread: r is the recipient's
	 * being processed (a shared message's from res), the rest the
	 * connection's */
	struct sched_rres r;
	char peer[64], tls_version[16], tls_cipher[64];
	bool tls_verified, tls_dane;
	char tls_failure[40];         /* TLS-RPT result type, or "" */
	char *tls_tlsa;               /* the TLSA RRset that applied, or NULL */
	struct sched_dmsg *next;
};

/* Timers: retries at a site (q, idx), site wake-ups, retries of a
 * recipient whose domain did not resolve (djob, idx). */
enum sched_tkind { SCHED_T_RETRY, SCHED_T_SITE, SCHED_T_REQUEUE };
struct sched_timer {
	struct vl_heap_node hn;       /* first: key is the due time, ms */
	enum sched_tkind kind;
	uint32_t idx;
	void *p;                      /* struct sched_sjq, site or djob */
};

#define SCHED_SITE_HOSTS_MAX 16  /* MX addresses tried per message */
/* A site is one destination (route or MX host set, under one policy) as
 * one egress source sees it: its own connections, pace and back-off. */
struct sched_site {
	char *key;                    /* the destination's, "|src=NAME" added */
	char *name;                   /* the key's first part: what the API shows */
	struct sched_sgroup *group;
	int src;                      /* index in cfg.egress; -1: no egress */
	char *src_name, *src_addr;    /* NULL: no egress */
	struct eng_route route;       /* the policy's route template (tls, auth,
				       * limits); the only host of a routed site */
	struct eng_route *routes;     /* hosts in MX order; &route when routed */
	size_t nroutes;
	uint64_t down_until[SCHED_SITE_HOSTS_MAX]; /* refused us: skip until then */
	bool routable;
	char no_route[400];
	/* the MTA-STS policy its hosts were judged by (NULL: none), kept for
	 * address refreshes and reports */
	enum eng_sts sts_mode;
	struct sts_entry *sts;
	double rate;                  /* configured, per second; 0 = unlimited */
	struct sched_bucket b;        /* current (adaptive) */
	struct clu_lease *lease;      /* with a cluster: the rate's share, by
				       * the destination's key (cluster.h) */
	struct clu_conns *conns;      /* and its connections' share */
	unsigned window, inflight;
	struct sched_sjq *trans, *bulk;
	size_t waiting, deferred;     /* in queues; in retry timers */
	unsigned rcpt_limit;          /* recipients a message the server took
				       * before "452 too many recipients";
				       * 0: none said */
	bool ready;                   /* on the ready list */
	struct sched_site *next_ready, *next;
	/* adaptive back-off (shape.h); since and reason are for the API */
	struct sched_backoff bo;
	/* warm-up (warm.c): its source x provider counter, -1: none */
	int wslot;
	uint64_t warm_until_ms;       /* over today's cap: nothing until then */
	double backoff_since;
	char backoff_reason[480];
	/* observation */
	struct {                      /* the last result, formatted when shown */
		int code;
		char enhanced[10], stage[16];
		char text[251];
	} last;
	double last_time;
	uint64_t delivered, bounced, transient;
	int lat_slot;                 /* its response-time histogram (latency.c);
				       * -1 until its first reply */
};

/* One destination and the sites of its egress sources, created as a
 * pool first picks each; recipients are placed by the pool's weights
 * (sched_swrr_pick). Without egress: one site, src -1. */
struct sched_sgroup {
	char *key;
	struct sched_site **site;     /* [nsrc], by egress index */
	size_t nsrc;
	int *cur;                     /* weighted round-robin state, [npools][nsrc] */
	size_t npools;
	int pool;                     /* the policy's pool */
	struct sched_site *any;       /* the first site made: the others copy it */
	char *provider;               /* its mailbox provider's name, or NULL */
	char *anchor;                 /* a provider's MX site: the domain whose MX
				       * answers give its hosts (the first) */
	uint64_t anchor_ms;           /* when its answer last came */
	struct sched_sgroup *next;
};

/* A recipient domain that needs resolution: its MX, or, routed to a
 * smarthost given by name, that name's addresses (host). */
enum sched_dstate { SCHED_D_NEW, SCHED_D_RESOLVING, SCHED_D_OK, SCHED_D_FAILED };
struct sched_pend {
	struct sched_djob *dj;
	uint32_t idx;
};
/* MTA-STS discovery of a domain (mtasts.c): TXT, then the policy host's
 * addresses and the fetch when the TXT names a policy not kept. */
enum sched_sts_step { SCHED_STS_IDLE, SCHED_STS_TXT, SCHED_STS_HOST, SCHED_STS_FETCH };
struct sched_dom {
	struct sched_deliver *d;
	char *name;
	char *host;                   /* the route's host name; NULL: MX */
	enum sched_dstate st;
	struct sched_sgroup *group;   /* SCHED_D_OK */
	uint64_t until_ms;            /* SCHED_D_OK, SCHED_D_FAILED: good until */
	char why[256];                /* SCHED_D_FAILED */
	struct sched_pend *pend;      /* waiting for the answer */
	size_t npend, cap;
	struct dns_mx_result *mx;     /* the last good MX answer: the site is
				       * chosen again when the policy changes */
	uint64_t mx_until_ms;
	bool placed;                  /* has had a site once */
	enum sched_sts_step sts_step;
	bool sts_blocking;            /* recipients wait for discovery: the
				       * first one, with no valid policy kept */
	uint64_t sts_until_ms;        /* the next TXT check */
	char sts_id[33];              /* the TXT record's id being fetched */
	const char *sts_failure;      /* RFC 8460 type of the last discovery
				       * failure (sts-policy-fetch-error, ...) */
};

/* An answer for the delivery thread from another one: an engine worker's
 * resolver (MX, TXT, one host's addresses) or the MTA-STS fetcher. */
enum sched_dd_kind { SCHED_DD_MX, SCHED_DD_TXT, SCHED_DD_HOST, SCHED_DD_FETCH };
struct sched_dns_done {
	enum sched_dd_kind kind;
	struct sched_dom *dom;
	struct dns_mx_result *r;      /* MX, HOST */
	enum dns_status status;       /* TXT */
	char **txt;                   /* TXT: the records, joined */
	size_t *txtlen, ntxt;
	bool ok;                      /* FETCH */
	char *body, *why;
	size_t len;
	struct sched_dns_done *next;
};
void sched_dd_post(struct sched_deliver *d, struct sched_dns_done *dd);
/* An MX or host answer for m, copied and posted (on a worker thread). */
void sched_dd_post_mx(struct sched_dom *m, enum sched_dd_kind kind, const struct dns_mx_result *r);
void sched_dd_free(struct sched_dns_done *dd);

struct sched_deliver {
	struct sched *sc;
	/* swapped by a reload on the delivery thread; read by tls-check on
	 * API threads too (old ones are never freed while volleyd runs) */
	const struct cfg *_Atomic cfg;
	const struct cfg *ecfg;       /* the first one: egress and pools (a
				       * restart changes them) */
	struct sched_spool *spool;
	struct sched_suppress *sup;
	struct sched_events *ev;
	struct sched_bounce_rules *rules;
	struct msg_dkim_key **dkim;    /* cfg->dkim's keys, loaded at start */
	size_t ndkim;
	/* volley's one-click unsubscribe, from the configuration at start (a
	 * reload cannot change it: the listener verifies with that secret) */
	struct msg_unsub_conf unsub;
	bool unsub_on;
	struct engine *eng;
	pthread_t tid;
	/* inbox, from API threads and engine workers */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* finished messages, pushed lock-free by the engine workers; only a
	 * thread waiting idle is woken for them (a busy one, or one gathering
	 * them for a moment, takes them on its next round) */
	_Atomic(struct sched_dmsg *) results;
	atomic_bool idle;
	struct sched_dns_done *dns_done, *take_dns;
	struct sched_job **adds;
	size_t nadds, capadds;
	struct sched_job **ctls;
	size_t nctls, capctls;
	bool stopping;
	struct sched_reload *reload_in; /* a configuration to switch to */
	struct sched_reload *retired;  /* what earlier ones replaced (reload.c) */
	_Atomic bool quiet;           /* stopping: nothing more goes to the engine */
	uint64_t sync_req, sync_done; /* sched_deliver_sync() rounds */
	pthread_cond_t progress;
	bool want_snap, want_snap_now;
	json_t *snap;                 /* queues, built on request */
	/* the delivery thread's own */
	struct sched_djob *jobs;
	struct sched_site *sites, *ready;
	struct sched_sgroup *groups;
	json_t *site_index;           /* key -> group (as an integer pointer) */
	json_t *domain_site;          /* domain -> group, a cache */
	json_t *doms;                 /* domain -> struct sched_dom, for MX domains */
	struct sts_store *sts;        /* MTA-STS policies kept (NULL: none) */
	struct sts_fetcher *fetcher;
	struct eng_route **old_routes; /* replaced MX address lists (see site_refresh) */
	size_t nold;
	struct vl_heap timers;        /* of struct sched_timer */
	struct sched_timer *free_timers; /* fired ones, for reuse: no malloc
				       * per deferral or site wake-up */
	struct sched_dmsg *free_msgs;
	size_t inflight;
	uint64_t seed;
	struct sched_commit *commit;
	struct rpt_store *rpt;        /* TLS-RPT counting, or NULL */
	struct sched_warm *warm;      /* warm-up counts, or NULL */
	struct clu *clu;              /* the cluster's client, or NULL */
	struct sched_rcpt rcpt;       /* scratch of sched_deliver_send */
	struct vl_buf events, suppress;   /* for the next batch */
	uint64_t next_commit_ms;
	/* stats */
	uint64_t dispatched, delivered, bounced, transient, expired, suppressed;
	struct sched_hist *hist;      /* the same results a second (the registry's) */
	uint64_t by_class[2][SCHED_BC_COUNT];   /* [bounced, transient][class] */
	uint64_t (*by_source)[3];     /* per egress source: delivered, bounced,
				       * transient */
	_Atomic bool blocked;
	/* what the next round must look at, instead of scanning every job */
	bool now_dirty;               /* some job has now_delta */
	bool enqueuing;               /* some job's recipients are not all in
				       * their sites' queues yet */
	bool batch_dirty;             /* some job has records for a commit */
	bool reap_due;                /* some job may have nothing left to do */
};

/* site.c */
struct sched_sgroup *sched_group_for(struct sched_deliver *d, const char *domain);
/* The site of the group that the pool's next recipient goes to. */
struct sched_site *sched_group_pick(struct sched_deliver *d, struct sched_sgroup *g, int pool);
/* Where recipient idx of dj waits: its site's queue, or its domain's
 * pending list while MX resolution runs (or a bounce when it failed). */
void sched_dom_enqueue(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
		       const char *domain);
void sched_dom_answer(struct sched_deliver *d, struct sched_dns_done *dd);
/* The domain's answers are in (MX, and MTA-STS unless it need not wait):
 * choose its site and send what waited there. */
void sched_dom_place(struct sched_deliver *d, struct sched_dom *m);
void sched_doms_free(struct sched_deliver *d);
/* The host to try first; then the next after a refusal (-1: none left). */
unsigned sched_site_first_host(struct sched_site *s, uint64_t now);
int sched_site_next_host(struct sched_site *s, unsigned after, uint64_t now);
void sched_site_ready(struct sched_deliver *d, struct sched_site *s);
void sched_site_dispatch_all(struct sched_deliver *d);
/* The provider's reply rule for a failed delivery at s (NULL: none). */
const struct cfg_reply_rule *sched_site_reply_rule(const struct sched_deliver *d,
						   const struct sched_site *s,
						   const struct sched_dmsg *m);
/* One recipient's result at the site (counters, back-off, the provider's
 * rule rr's action; NULL: the bounce verdict decides); the message's place
 * in the window is the caller's (s->inflight). */
/* The last result as a line: "550 5.1.1 text", or "connect: why". */
void sched_site_last_response(const struct sched_site *s, char *out, size_t n);
void sched_site_result(struct sched_deliver *d, struct sched_site *s, const struct sched_dmsg *m,
		       const struct sched_bounce_verdict *v, const struct cfg_reply_rule *rr);
json_t *sched_site_json(const struct sched_deliver *d, const struct sched_site *s);

/* warm.c: egress sources' warm-up counts (d->warm; NULL: no source has a
 * schedule). */
struct sched_warm;
void sched_warm_open(struct sched_deliver *d);
void sched_warm_close(struct sched_deliver *d);
/* The counter of source src for a provider's sites (NULL: "*"); -1: none. */
int sched_warm_slot(struct sched_deliver *d, int src, const char *provider);
/* Day change and the periodic write. */
void sched_warm_tick(struct sched_deliver *d, uint64_t now);
/* One message from s (wslot >= 0): 0 when counted; UINT64_MAX when
 * today's cap is reached (then s->warm_until_ms is the day's end); else
 * the ms to wait for the cluster's answer. */
uint64_t sched_warm_take(struct sched_deliver *d, struct sched_site *s, uint64_t now);
json_t *sched_warm_site_json(const struct sched_deliver *d, const struct sched_site *s);
json_t *sched_warm_stats_json(const struct sched_deliver *d, int src);
void sched_sjq_push(struct sched_sjq *q, uint32_t idx);
uint32_t sched_sjq_pop(struct sched_sjq *q);
void sched_sjq_unlink_all(struct sched_djob *dj);
struct sched_sjq *sched_sjq_for(struct sched_djob *dj, struct sched_site *s);
void sched_sites_free(struct sched_deliver *d);

/* Forget what each domain's rules decided (sched_site_for's cache, the
 * domains not waiting for an answer): after a reload, the next recipient
 * of a domain is placed by the new rules. */
void sched_doms_forget(struct sched_deliver *d);

/* reload.c: the new configuration's keys and rules, loaded on the
 * caller's thread, applied by the delivery thread between rounds. */
struct sched_reload {
	const struct cfg *cfg;
	struct msg_dkim_key **dkim;
	size_t ndkim;
	struct sched_bounce_rules *rules;
	struct sched_reload *next;
};
void sched_reload_apply(struct sched_deliver *d, struct sched_reload *r);
/* At stop: what reloads replaced, and one never applied. */
void sched_reload_free_all(struct sched_deliver *d);

/* mtasts.c */
bool sched_sts_wanted(const struct cfg_policy *p);
/* Start the domain's discovery when due (a TXT check every
 * SCHED_STS_RECHECK_MS); blocking the first time when no valid policy is
 * kept. */
void sched_sts_check(struct sched_deliver *d, struct sched_dom *m, const struct cfg_policy *p);
void sched_sts_answer(struct sched_deliver *d, struct sched_dns_done *dd);
/* The valid policy kept for a domain, NULL when none (or mode none). */
const struct sts_entry *sched_sts_policy(struct sched_deliver *d, const char *domain);

/* djob.c */
struct sched_djob *sched_djob_load(struct sched_deliver *d, struct sched_job *j);
void sched_djob_free(struct sched_djob *dj);
/* The states, attempts and last_time of dj's n recipients (st and att
 * zeroed: all queued) from the journal at path, as sched_journal_replay. */
int sched_djob_replay(struct sched_djob *dj, const char *path);
/* Give recipient idx a new state. Counters move (published at once, or
 * at the commit of the record) and the move is journaled as
 * sched_rstate_journaled says. */
void sched_djob_set(struct sched_djob *dj, uint32_t idx, enum sched_rstate to,
		    const struct sched_jrec *why);
void sched_djob_control(struct sched_djob *dj);
void sched_djob_expire(struct sched_djob *dj);
/* Up to max more of dj's waiting recipients into their sites' queues;
 * true while some are left for a later round. */
bool sched_djob_enqueue(struct sched_djob *dj, uint32_t max);
#define SCHED_ENQ_ROUND 4096     /* recipients a round: a million-recipient
				  * job's loading is no pause of ~1 s for the
				  * delivery thread (transactional mail waits
				  * for it), and its first messages leave at once */
const char *sched_djob_email(struct sched_djob *dj, uint32_t idx, const char **domain);

/* deliver.c */
void sched_timer_add(struct sched_deliver *d, uint64_t due_ms, enum sched_tkind k, void *p,
		     uint32_t idx);
void sched_deliver_send(struct sched_deliver *d, struct sched_sjq *q, uint32_t idx);
void sched_deliver_event(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
			 const char *type, const struct sched_dmsg *m,
			 const struct sched_jrec *r);
/* An outcome decided without the engine, for a recipient not in flight. */
void sched_deliver_local(struct sched_deliver *d, struct sched_djob *dj, uint32_t idx,
			 bool permanent, const char *text);

/* tlsrpt.c: TLS-RPT counting. Copy what a result says of TLS (on the
 * worker), forget it (before a message is sent again), count it (on the
 * delivery thread: one session per result from the engine). */
void sched_tlsrpt_copy(struct sched_dmsg *m, const struct eng_result *r);
void sched_tlsrpt_reset(struct sched_dmsg *m);
void sched_tlsrpt_record(struct sched_deliver *d, const struct sched_dmsg *m);

/* commit.c: the group committer */
struct sched_commit *sched_commit_start(struct sched_deliver *d, char *err, size_t errlen);
/* Hand over what the jobs gathered since the last call (journal records,
 * counter changes, events); fsync'd then applied on the committer thread. */
void sched_commit_submit(struct sched_commit *c, struct sched_djob *jobs, struct vl_buf *events,
			 struct vl_buf *suppress);
/* Wait until everything submitted is durable and applied. */
void sched_commit_drain(struct sched_commit *c);
/* Batches submitted and not yet applied. */
uint64_t sched_commit_backlog(struct sched_commit *c);
void sched_commit_stop(struct sched_commit *c);
bool sched_commit_blocked(struct sched_commit *c);
json_t *sched_commit_stats_json(struct sched_commit *c);

#endif
