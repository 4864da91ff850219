/*
 * scheduler internals: the registry (sched.c, shared with the API threads
 * under sched.mu), the delivery thread (deliver.c, site.c) and the
 * journal (journal.c). Not the module's face.
 */
#ifndef VOLLEY_SCHED_INT_H
#define VOLLEY_SCHED_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "../engine/engine.h"
#include "../message/message.h"
#include "scheduler.h"

/* Per-recipient states as stored (one octet each). */
enum sched_rstate {
	SCHED_R_QUEUED, SCHED_R_INFLIGHT, SCHED_R_DEFERRED, SCHED_R_DELIVERED,
	SCHED_R_BOUNCED, SCHED_R_EXPIRED, SCHED_R_CANCELLED, SCHED_R_SUPPRESSED,
};
static inline bool sched_rstate_final(unsigned s)
{
	return s >= SCHED_R_DELIVERED;
}
/* How a move between two states is accounted: a dispatch (to in flight)
 * and its undoing (in flight back to queued) are published at once and
 * not journaled; every other move is journaled and its counters applied
 * once the record is committed. */
static inline bool sched_rstate_journaled(unsigned from, unsigned to)
{
	return to != SCHED_R_INFLIGHT && !(from == SCHED_R_INFLIGHT && to == SCHED_R_QUEUED);
}
enum sched_state sched_rstate_api(unsigned s);

enum sched_jstate { SCHED_J_ACTIVE, SCHED_J_PAUSED, SCHED_J_CANCELLED };

/* A job as the registry knows it (sched.mu guards the mutable fields). */
struct sched_job {
	char id[SCHED_ID_LEN + 1];
	char *campaign;
	bool transactional;
	bool require_tls;          /* REQUIRETLS (RFC 8689) for every message */
	double created, expires, finished;
	size_t recipients;
	enum sched_jstate state;
	size_t counts[SCHED_NSTATES];
	double first_delivery, last_delivery;
	struct sched_djob *d;      /* the delivery thread's side, or NULL */
	/* feedback (fback.c): what came back after delivery */
	size_t fb_oob, fb_complaints;   /* recipients bounced late; complaints */
	struct sched_fbset *fbset;  /* per recipient: what was applied */
	char from_domain[256];     /* its From domain, "" until known */
	char pause_reason[240];    /* why it paused itself; "" paused by hand */
};

/* ---- journal (journal.c): per job, data_dir/jobs/<id>/journal ----
 * Fixed header + reply text per record; group-committed. */
#define SCHED_JREC_TEXT_MAX 512
#define SCHED_JREC_ALL UINT32_MAX  /* a record for every non-final recipient */
struct sched_jrec {
	uint32_t idx;
	uint8_t state;                 /* enum sched_rstate */
	uint8_t attempts;
	uint8_t cls;                   /* enum sched_bounce_class */
	uint8_t flags;
	uint32_t time;                 /* seconds since the epoch */
	int16_t code;
	char enhanced[10];
	uint16_t textlen;
	char text[SCHED_JREC_TEXT_MAX + 1];
};
/* Replay a job's journal: fn per record, in order. A torn tail is cut
 * off (the file truncated to its last whole record). -1 on an I/O error. */
int sched_journal_replay(const char *path, void (*fn)(void *arg, const struct sched_jrec *r),
			 void *arg);
/* One record at p (n octets there): its length, or 0 when there is no
 * whole valid record. */
size_t sched_journal_decode(const char *p, size_t n, struct sched_jrec *r);
/* The recipients cursor over a job's table (taken), journal and feedback
 * file (rcptcur.c; sched_recipients_read/close are its face); win: the
 * matching recipients per window (0: the default, a million). */
struct sched_cursor *sched_cursor_new(struct sched_table *t, const char *journal,
				      const char *feedback, bool cancelled,
				      enum sched_state filter, size_t win);
/* Only the recipients past index first - 1 (from first on), and at most
 * limit of them (0: no limit): a page. Before the first read. */
void sched_cursor_page(struct sched_cursor *c, size_t first, size_t limit);
/* {"bounced": {class: n}, "deferred": {...}, "expired": {...}}: the
 * recipients in each state by the class of their last outcome (a late
 * bounce's own class). One more pass over the journal; before reads. */
json_t *sched_cursor_classes(struct sched_cursor *c);
/* Serialise r onto b (the committer writes b to the job's journal). */
void sched_journal_encode(const struct sched_jrec *r, struct vl_buf *b);

/* ---- the delivery thread (deliver.c) ---- */
struct sched_deliver;
struct sched_deliver *sched_deliver_start(struct sched *sc, const struct cfg *cfg,
					  struct sched_spool *spool, struct sched_suppress *sup,
					  struct sched_events *ev, struct engine *eng, char *err,
					  size_t errlen);
/* Its cluster client, or NULL. */
struct clu *sched_deliver_clu(struct sched_deliver *d);
/* A job joined the registry (at startup or after intake). */
void sched_deliver_add_job(struct sched_deliver *d, struct sched_job *j);
/* Pause, resume or cancel: already recorded in the registry. Returns once
 * the delivery thread has acted on it and its outcomes are committed. */
void sched_deliver_control(struct sched_deliver *d, struct sched_job *j);
/* Stop dispatching, let transactions in flight end within grace_ms, commit
 * the journal, stop the engine. */
void sched_deliver_stop(struct sched_deliver *d, uint64_t grace_ms);
json_t *sched_deliver_queues_json(struct sched_deliver *d);
/* tlscheck.c: volley tls-check, on the asking thread (it waits) */
json_t *sched_deliver_tls_check(struct sched_deliver *d, const char *domain);
json_t *sched_deliver_stats_json(struct sched_deliver *d);
/* sched_reload's work (reload.c). */
int sched_deliver_reload(struct sched_deliver *d, const struct cfg *c, char *err, size_t errlen);
/* The journal cannot be written (disk full): intake should refuse. */
bool sched_deliver_blocked(struct sched_deliver *d);

/* A finished job's counters and times in jobs/<id>/done.json, so a
 * restart need not replay its journal (without the file, it does). */
void sched_mark_done(struct sched *sc, struct sched_job *j);

/* Jobs finished longer than spool.retain ago (and not in delivery) leave
 * the registry, with their idempotency keys, and the spool. */
void sched_retire(struct sched *sc);

/* The store sched_set_tlsrpt gave, or NULL (sched.c). */
struct rpt_store *sched_tlsrpt_store(struct sched *sc);

/* ---- feedback (fback.c) ----
 * jobs/<id>/feedback holds journal records too: a late bounce (state
 * bounced, flag SCHED_FBR_OOB) or a complaint (state delivered, flag
 * SCHED_FBR_COMPLAINT), at most one of each per recipient. */
#define SCHED_FBR_OOB 0x10
#define SCHED_FBR_COMPLAINT 0x20
struct sched_fbstate;
struct sched_fbstate *sched_fbstate_new(const struct cfg *c);
void sched_fbstate_free(struct sched_fbstate *fs);
struct sched_fbstate *sched_fbstate(struct sched *sc);        /* sched.c */
struct sched_spool *sched_spool_of(struct sched *sc);         /* sched.c */
struct sched_events *sched_events_of(struct sched *sc);       /* sched.c */
struct sched_suppress *sched_suppress_of(struct sched *sc);   /* sched.c */
/* A job joins the registry: its feedback file replayed into its
 * counters (not locked: before the job is shared). */
void sched_fb_load_job(struct sched *sc, struct sched_job *j);
void sched_fb_job_free(struct sched_job *j);
/* The committer: n more delivered for a From domain's 24 h window. */
void sched_fb_delivered(struct sched *sc, const char *domain, size_t n);
/* Whether any From domain is blocked now (cheap). */
bool sched_fb_any_blocked(struct sched *sc);
/* Whether a From domain is blocked for bulk jobs (why filled). */
bool sched_fb_domain_blocked(struct sched *sc, const char *domain, char *why, size_t whylen);
/* Pause job id with a reason (the registry's sched_job_control, with the
 * reason kept in the control file); 0, or -1. */
int sched_job_pause_for(struct sched *sc, const char *id, const char *reason);
/* A job's counts as the API shows them (late bounces moved from
 * delivered to bounced). Locked. */
void sched_job_counts(const struct sched_job *j, size_t out[SCHED_NSTATES]);
/* The registry's job of this id (locked), or NULL. */
struct sched_job *sched_job_find(struct sched *sc, const char *id);

/* fback.c for fbproc.c: the windows written when changed; where the
 * processor is kept; the effects' metrics. */
void sched_fb_tick(struct sched *sc);
struct sched_fbproc;
struct sched_fbproc **sched_fb_proc_slot(struct sched *sc);
void sched_fb_metrics_effects(struct sched *sc, struct vl_buf *out);
const struct cfg *sched_cfg_of(struct sched *sc);             /* sched.c */

/* ---- the last hour of results, a second a slot (history.c) ---- */
#define SCHED_HIST_SECONDS 3600
enum sched_hist_kind { SCHED_HIST_DELIVERED, SCHED_HIST_DEFERRED, SCHED_HIST_BOUNCED,
		       SCHED_HIST_KINDS };
struct sched_hist_slot {
	_Atomic int64_t sec;                     /* the second it counts */
	_Atomic uint32_t n[SCHED_HIST_KINDS];
};
struct sched_hist {
	struct sched_hist_slot s[SCHED_HIST_SECONDS];
};
/* One result in second sec (one writer: the delivery thread). */
void sched_hist_add(struct sched_hist *h, int64_t sec, enum sched_hist_kind k);
/* The secs seconds up to now, oldest first, into out (0 where none). */
void sched_hist_read(const struct sched_hist *h, int64_t now, unsigned secs,
		     uint32_t (*out)[SCHED_HIST_KINDS]);
/* {end, seconds, delivered: [...], deferred: [...], bounced: [...]};
 * secs at most SCHED_HIST_SECONDS; h NULL: zeros. */
json_t *sched_hist_json(const struct sched_hist *h, int64_t now, unsigned secs);
int64_t sched_hist_now(void);   /* wall-clock seconds, coarse */
struct sched_hist *sched_hist_of(struct sched *sc);          /* sched.c */
/* Latency histograms (latency.c): the delivery thread observes, a scrape
 * reads (sched_latency_metrics). A site's slot is its name's, the first
 * SCHED_LAT_SITES names; the rest share slot SCHED_LAT_SITES ("other"). */
#define SCHED_LAT_SITES 64
/* How a message's connection was protected (volley_tls_messages_total). */
enum sched_tls { SCHED_TLS_DANE, SCHED_TLS_STS, SCHED_TLS_VERIFIED, SCHED_TLS_ENCRYPTED,
		 SCHED_TLS_NONE, SCHED_TLS_FAILED, SCHED_TLS_KINDS };
struct sched_lat {
	struct vl_hist delivery[2];                /* bulk, transactional */
	struct vl_hist reply[SCHED_LAT_SITES + 1];
	char site[SCHED_LAT_SITES][128];
	_Atomic size_t nsites;
	_Atomic uint64_t tls[SCHED_TLS_KINDS];     /* messages by enum sched_tls */
};
struct sched_lat *sched_lat_new(void);
void sched_lat_free(struct sched_lat *l);
int sched_lat_site(struct sched_lat *l, const char *name); /* one writer */
void sched_lat_delivered(struct sched_lat *l, bool transactional, double seconds);
void sched_lat_reply(struct sched_lat *l, int slot, double seconds);
void sched_lat_tls(struct sched_lat *l, enum sched_tls kind);
void sched_lat_metrics(const struct sched_lat *l, struct vl_buf *out);
struct sched_lat *sched_lat_of(struct sched *sc);             /* sched.c */

/* Registry hooks used by the delivery thread (sched.c). */
void sched_lock(struct sched *sc);
void sched_unlock(struct sched *sc);
struct sched_job *sched_job_at(struct sched *sc, size_t i); /* locked */
size_t sched_njobs(struct sched *sc);                    /* locked */

#endif
