/*
 * The feedback loop's insides, shared by fback.c (per-job flags, From
 * domains' windows, state), fbapply.c (outcomes in batches) and fbproc.c
 * (the processor thread). Not a face.
 */
#ifndef VOLLEY_SCHED_FBACK_INT_H
#define VOLLEY_SCHED_FBACK_INT_H

#include "sched_int.h"

struct fb_dom;

struct sched_fbstate {
	pthread_mutex_t mu;          /* domains, the state cache, counters */
	double rate;                 /* complaint_rate */
	size_t min_delivered;
	char *dom_path;              /* data_dir/feedback/domains.json */
	struct fb_dom *doms;
	size_t ndoms;
	bool dirty;
	_Atomic bool any_blocked;
	struct sched_bounce_rules *rules;
	/* recipients' states of one job, from its journal */
	char cache_id[SCHED_ID_LEN + 1];
	uint8_t *cache_st;
	size_t cache_n;
	double cache_at;
	/* what was done, for /metrics (under mu) */
	uint64_t n_bounced, n_recorded, n_complaints, n_dup, n_suppressed, n_unmatched,
		 n_job_pauses, n_dom_blocks;
	struct sched_fbproc *proc;   /* fbproc.c */
};

/* A recipient's SCHED_FBR_* flags; set or clear one (registry locked). */
uint8_t sched_fb_flags(struct sched_job *j, uint32_t idx);
void sched_fb_mark(struct sched_job *j, uint32_t idx, uint8_t flag, bool on);
/* Recipient idx's committed state in job id (n recipients), -1 when its
 * journal cannot be read. Takes fs->mu. */
int sched_fb_rstate(struct sched *sc, const char *id, size_t n, uint32_t idx);
/* One complaint for a From domain's window: true when that blocked the
 * domain (why says so). Takes fs->mu. */
bool sched_fb_domain_complaint(struct sched *sc, const char *domain, char *why, size_t whylen);
/* Over the rate with at least min delivered: the share in words in why. */
bool sched_fb_over(double rate, size_t min, uint64_t comp, uint64_t del, char *why, size_t n);

#endif
