/*
 * scheduler: the module's face. The job registry (sched.c) and the
 * delivery core: the delivery thread, destination sites and shaping,
 * retries, the journal and its group committer (deliver.c, djob.c,
 * site.c, shape.c, journal.c, commit.c). The parts that stand alone have
 * their own headers, included here: spool.h (jobs on disk, intake,
 * recipient tables), bounce.h (bounce classification), suppress.h (the
 * suppression list) and events.h (the events log). sched_int.h,
 * deliver_int.h and shape.h are internal. Prefix: sched_.
 */
#ifndef VOLLEY_SCHEDULER_H
#define VOLLEY_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../common/common.h"
#include "../config/config.h"
#include "../engine/engine.h"
#include "../tlsrpt/tlsrpt.h"
#include "bounce.h"
#include "events.h"
#include "fback.h"
#include "spool.h"
#include "suppress.h"

/* ---- job registry ---- */
struct sched;
/* Loads every job in the spool. NULL with err. */
struct sched *sched_new(const struct cfg *c, struct sched_spool *s,
			char *err, size_t errlen);
void sched_free(struct sched *sc);

/* Idempotency keys: reserve before intake, then bind to the job or release.
 * reserve: 0 reserved, 1 known (*id filled: replay that job), -1 in use by
 * a submission still being received. */
int sched_idem_reserve(struct sched *sc, const char *key, char id[SCHED_ID_LEN + 1]);
void sched_idem_release(struct sched *sc, const char *key);

/* The cluster's client once sched_start ran with `cluster` configured,
 * else NULL (cluster/cluster.h: shared idempotency keys). */
struct clu;
struct clu *sched_cluster(struct sched *sc);

/* A committed job joins the registry (meta is job.json's object). */
int sched_job_add(struct sched *sc, const char *id, json_t *meta);
/* JSON views (new references); NULL if there is no such job. */
json_t *sched_job_json(struct sched *sc, const char *id);
json_t *sched_jobs_json(struct sched *sc, size_t limit);
/* The intake report of a job (its 202 answer), for idempotent replays. */
json_t *sched_job_accept_json(struct sched *sc, const char *id);

enum sched_op { SCHED_PAUSE, SCHED_RESUME, SCHED_CANCEL };
/* 0 done (*job set), -1 no such job, -2 a transition that makes no sense
 * (why filled), -3 an I/O error writing the control file. */
int sched_job_control(struct sched *sc, const char *id, enum sched_op op,
		      json_t **job, char *why, size_t whylen);

/* Per-recipient states, as the API names them. */
enum sched_state {
	SCHED_QUEUED, SCHED_IN_FLIGHT, SCHED_DELIVERED, SCHED_DEFERRED,
	SCHED_BOUNCED, SCHED_EXPIRED, SCHED_CANCELLED, SCHED_SUPPRESSED,
	SCHED_NSTATES
};
const char *sched_state_name(enum sched_state st);
int sched_state_parse(const char *s, enum sched_state *st);

/* Every recipient of job id, in order (only those in state filter, or
 * all with SCHED_NSTATES), as JSON lines read in pieces: NULL if there
 * is no such job. */
struct sched_cursor;
struct sched_cursor *sched_recipients_open(struct sched *sc, const char *id,
					   enum sched_state filter);
/* Up to max octets of whole lines (or of one line longer than max) into
 * buf; 0 at the end. */
size_t sched_recipients_read(struct sched_cursor *c, char *buf, size_t max);
void sched_recipients_close(struct sched_cursor *c);
/* A page of them: those with an index of first or more, at most limit
 * (1 or more); the journal's window is the page, so a page of a large job
 * costs a pass over its journal, not its rows. */
/* The job's recipients by state and bounce class, from its journal:
 * {"bounced": {"invalid-recipient": 3}, "deferred": {...}, "expired":
 * {...}}; NULL if there is no such job. */
json_t *sched_job_classes_json(struct sched *sc, const char *id);
struct sched_cursor *sched_recipients_page(struct sched *sc, const char *id,
					   enum sched_state filter, size_t first,
					   size_t limit);

/* ---- delivery ---- */
/* Start the delivery thread and the journal committer over eng (the
 * caller's: it outlives sched_stop); every job in the registry resumes
 * where its journal left it. */
int sched_start(struct sched *sc, struct sched_suppress *sup, struct sched_events *ev,
		struct engine *eng, char *err, size_t errlen);
/* Stop dispatching, let transactions in flight end within grace_ms (the
 * rest is journaled as deferred), commit; the engine is stopped, not
 * freed. */
void sched_stop(struct sched *sc, uint64_t grace_ms);
/* The latency histograms' lines for /metrics (docs/metrics.md). */
void sched_latency_metrics(struct sched *sc, struct vl_buf *out);
/* {"queues": [...]} per destination site. */
json_t *sched_queues_json(struct sched *sc);
/* What volley would do with TLS for a domain now: MX hosts, their TLSA
 * records, the MTA-STS policy (docs/api.md, /v1/tls-check). Waits for DNS
 * and a policy fetch (bounded); NULL when delivery is not running. */
json_t *sched_tls_check(struct sched *sc, const char *domain);
/* SIGHUP: the delivery thread goes on by c (domain rules, rates, routes,
 * TLS policies, retries, DKIM keys, bounce rules): its DKIM keys and
 * bounce rules are loaded here first (-1 with err: nothing changes), the
 * switch happens between two rounds. Recipients placed from then on
 * follow the new rules; sites already built keep theirs. c must stay
 * until volleyd exits (routes point into its strings). */
int sched_reload(struct sched *sc, const struct cfg *c, char *err, size_t errlen);
/* False while the journal cannot be written (disk full). */
bool sched_accepting(struct sched *sc);

/* TLS-RPT (RFC 8460): every delivery attempt's TLS outcome is counted in
 * st from sched_start on (NULL, the default: none). Call before it. */
void sched_set_tlsrpt(struct sched *sc, struct rpt_store *st);
/* Jobs of this campaign (the reports volley mails itself) are not
 * counted: a report about reports would never end. */
#define SCHED_TLSRPT_CAMPAIGN "tls-rpt"

/* Counters over every job, for /v1/stats. */
json_t *sched_stats_json(struct sched *sc);
/* Results a second over the last seconds (1 to 3600), for
 * /v1/stats/history: {end, seconds, delivered, deferred, bounced}, each
 * an array, oldest first; end is the last second (Unix time). */
json_t *sched_history_json(struct sched *sc, unsigned seconds);

#endif
