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
enum rstate {
	R_QUEUED, R_INFLIGHT, R_DEFERRED, R_DELIVERED, R_BOUNCED, R_EXPIRED,
	R_CANCELLED, R_SUPPRESSED,
};
static inline bool rstate_final(unsigned s)
{
	return s >= R_DELIVERED;
}
enum sched_state rstate_api(unsigned s);

enum jstate { J_ACTIVE, J_PAUSED, J_CANCELLED };

/* A job as the registry knows it (sched.mu guards the mutable fields). */
struct job {
	char id[SCHED_ID_LEN + 1];
	char *campaign;
	bool transactional;
	double created, expires, finished;
	size_t recipients;
	enum jstate state;
	size_t counts[SCHED_NSTATES];
	double first_delivery, last_delivery;
	struct djob *d;            /* the delivery thread's side, or NULL */
};

/* ---- journal (journal.c): per job, data_dir/jobs/<id>/journal ----
 * Fixed header + reply text per record; group-committed. */
#define JREC_TEXT_MAX 512
#define JREC_ALL UINT32_MAX        /* a record for every non-final recipient */
struct jrec {
	uint32_t idx;
	uint8_t state;                 /* enum rstate */
	uint8_t attempts;
	uint8_t cls;                   /* enum sched_bounce_class */
	uint8_t flags;
	uint32_t time;                 /* seconds since the epoch */
	int16_t code;
	char enhanced[10];
	uint16_t textlen;
	char text[JREC_TEXT_MAX + 1];
};
/* Replay a job's journal: fn per record, in order. A torn tail is cut
 * off (the file truncated to its last whole record). -1 on an I/O error. */
int journal_replay(const char *path, void (*fn)(void *arg, const struct jrec *r),
		   void *arg);
/* One record at p (n octets there): its length, or 0 when there is no
 * whole valid record. */
size_t journal_decode(const char *p, size_t n, struct jrec *r);
/* Serialise r onto b (the committer writes b to the job's journal). */
void journal_encode(const struct jrec *r, struct vl_buf *b);

/* ---- the delivery thread (deliver.c) ---- */
struct deliver;
struct deliver *deliver_start(struct sched *sc, const struct cfg *cfg,
			      struct sched_spool *spool, struct sched_suppress *sup,
			      struct sched_events *ev, struct engine *eng, char *err,
			      size_t errlen);
/* A job joined the registry (at startup or after intake). */
void deliver_add_job(struct deliver *d, struct job *j);
/* Pause, resume or cancel: already recorded in the registry. Returns once
 * the delivery thread has acted on it and its outcomes are committed. */
void deliver_control(struct deliver *d, struct job *j);
/* Stop dispatching, let transactions in flight end within grace_ms, commit
 * the journal, stop the engine. */
void deliver_stop(struct deliver *d, uint64_t grace_ms);
json_t *deliver_queues_json(struct deliver *d);
json_t *deliver_stats_json(struct deliver *d);
/* The journal cannot be written (disk full): intake should refuse. */
bool deliver_blocked(struct deliver *d);

/* A finished job's counters and times in jobs/<id>/done.json, so a
 * restart need not replay its journal (without the file, it does). */
void sched_mark_done(struct sched *sc, struct job *j);

/* Jobs finished longer than spool.retain ago (and not in delivery) leave
 * the registry, with their idempotency keys, and the spool. */
void sched_retire(struct sched *sc);

/* Registry hooks used by the delivery thread (sched.c). */
void sched_lock(struct sched *sc);
void sched_unlock(struct sched *sc);
struct job *sched_job_at(struct sched *sc, size_t i);   /* locked */
size_t sched_njobs(struct sched *sc);                    /* locked */

#endif
