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
/* Serialise r onto b (the committer writes b to the job's journal). */
void sched_journal_encode(const struct sched_jrec *r, struct vl_buf *b);

/* ---- the delivery thread (deliver.c) ---- */
struct sched_deliver;
struct sched_deliver *sched_deliver_start(struct sched *sc, const struct cfg *cfg,
					  struct sched_spool *spool, struct sched_suppress *sup,
					  struct sched_events *ev, struct engine *eng, char *err,
					  size_t errlen);
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

/* Registry hooks used by the delivery thread (sched.c). */
void sched_lock(struct sched *sc);
void sched_unlock(struct sched *sc);
struct sched_job *sched_job_at(struct sched *sc, size_t i); /* locked */
size_t sched_njobs(struct sched *sc);                    /* locked */

#endif
