/*
 * scheduler/suppress: the suppression list, addresses that later jobs
 * skip. Kept in data_dir/suppression, an append-only log compacted at
 * open. Addresses compare with the domain case-insensitive. Every call is
 * thread-safe. Depends on common/ only. Prefix: sched_suppress_ (and
 * sched_suppressed).
 */
#ifndef VOLLEY_SCHED_SUPPRESS_H
#define VOLLEY_SCHED_SUPPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct sched_suppress;
struct sched_suppress *sched_suppress_open(const char *path, char *err, size_t errlen);
void sched_suppress_close(struct sched_suppress *s);
bool sched_suppressed(struct sched_suppress *s, const char *email, size_t len);
/* 0 added (durably: fsync'd), 1 already there, -1 I/O error (errno). */
int sched_suppress_add(struct sched_suppress *s, const char *email, const char *reason,
		       const char *job);
/* Several at once, durable with one fdatasync (the committer's hard
 * bounces). Addresses refused as invalid are skipped. 0, or -1 (errno). */
int sched_suppress_add_many(struct sched_suppress *s, const char *const *emails,
			    const char *const *jobs, size_t n, const char *reason);
/* 0 removed, 1 not there, -1 I/O error. */
int sched_suppress_remove(struct sched_suppress *s, const char *email);
size_t sched_suppress_count(struct sched_suppress *s);

/* One change of the list, as a node of a cluster shares it. */
struct sched_suppress_change {
	bool add;                        /* false: removed */
	const char *email, *reason, *job; /* reason and job: add only ("" none) */
	long long at;                    /* Unix seconds */
};
/* Called after each change made through add, add_many or remove (never
 * for apply), on the caller's thread, outside the list's lock; it must not
 * block. Set before the first writer starts, cleared after the last. */
typedef void (*sched_suppress_hook)(void *arg, const struct sched_suppress_change *ch);
void sched_suppress_set_hook(struct sched_suppress *s, sched_suppress_hook fn, void *arg);
/* Changes that come from elsewhere (another node): applied and durable
 * with one fdatasync, the hook not called. Invalid addresses skipped.
 * Returns how many changed the list, or -1 on an I/O error (errno). */
int sched_suppress_apply(struct sched_suppress *s, const struct sched_suppress_change *ch,
			 size_t n);
/* {"suppressed": [{"email", "reason", "job", "added"}...], "next": email|null}
 * in address order, starting after `after` (NULL: the start), at most limit. */
json_t *sched_suppress_list(struct sched_suppress *s, const char *after, size_t limit);

#endif
