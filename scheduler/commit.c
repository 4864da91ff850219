/*
 * The group committer. The delivery thread gathers journal records,
 * counter changes and events per job and hands them over in batches
 * (every journal_commit_ms); this thread appends the records to each job's
 * journal, makes them durable (fdatasync each file: when a batch touches
 * several, all at once through an io_uring, so that their flushes go to
 * the disk together), and only then applies the counters the API shows
 * and writes the events. So an outcome the API reports as final is on
 * disk, and the delivery thread never waits for a disk.
 *
 * When a write fails (disk full), the file is cut back to where the batch
 * began and the batch is retried; meanwhile sched_commit_blocked() is true and
 * the delivery thread sends nothing new. No outcome is lost.
 */
#include "deliver_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RING_ENTRIES 64          /* fdatasyncs at once */
#define RETRY_MS 500

struct cjob {
	struct sched_job *j;
	char id[SCHED_ID_LEN + 1];
	struct vl_buf recs;
	long long delta[SCHED_NSTATES];
};

struct batch {
	struct cjob *jobs;
	size_t n;
	struct vl_buf events;
	struct vl_buf suppress;      /* "email\0job\0" pairs */
	struct batch *next;
};

struct sched_commit {
	struct sched_deliver *d;
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	struct batch *head, *tail;
	uint64_t submitted, applied;
	/* durability latency of each batch (write + fsync), under mu */
	uint64_t commits, total_us, max_us, last_us;
	_Atomic bool stop;
	_Atomic bool blocked;
	/* the committer thread's: its fdatasyncs in parallel (a syncfs, as
	 * before, wrote out the whole file system's dirty pages every
	 * commit once a batch had nine jobs: a transactional load has
	 * dozens, and the events files, the API's intake, and every other
	 * process's writes went with it) */
	struct io_uring ring;
	bool ring_ok;
	/* an applied batch's events buffer (emptied), under mu: the delivery
	 * thread's next one, its pages already there (fresh pages for the
	 * lines of every batch were a fifth of that thread's time in a
	 * shared-transaction run) */
	struct vl_buf spare;
};

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		vl_buf_free(&b->jobs[i].recs);
	free(b->jobs);
	vl_buf_free(&b->events);
	vl_buf_free(&b->suppress);
	free(b);
}

/* Append one job's records; on failure cut the file back. */
static int write_job(struct sched_commit *c, struct cjob *cj, int *fd_out, off_t *start_out,
		     char *path)
{
	int fd;

	if (sched_spool_path(c->d->spool, cj->id, SCHED_SPOOL_JOURNAL, path, PATH_MAX) < 0)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	off_t start = lseek(fd, 0, SEEK_END);
	size_t done = 0;
	while (done < cj->recs.len) {
		ssize_t w = pwrite(fd, cj->recs.p + done, cj->recs.len - done, start + (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int e = errno;
			if (ftruncate(fd, start) < 0)
				vl_log(VL_LOG_ERROR, "journal %s: cannot cut back: %s", path,
				       strerror(errno));
			close(fd);
			errno = e;
			return -1;
		}
		done += (size_t)w;
	}
	*fd_out = fd;
	*start_out = start;
	return 0;
}

/* Up to RING_ENTRIES fdatasyncs submitted at once, all their results
 * taken; -1 with errno of the first that failed. */
static int sync_ring(struct sched_commit *c, const int *fds, size_t n)
{
	int rc = 0, e = 0;
	for (size_t i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
		io_uring_prep_fsync(sqe, fds[i], IORING_FSYNC_DATASYNC);
	}
	int s = io_uring_submit_and_wait(&c->ring, (unsigned)n);
	if (s < 0 && s != -EINTR) {
		errno = -s;
		return -1;
	}
	for (size_t got = 0; got < n;) {
		struct io_uring_cqe *cqe;
		int w = io_uring_wait_cqe(&c->ring, &cqe);
		if (w == -EINTR)
			continue;
		if (w < 0) {
			errno = -w;
			return -1;
		}
		if (cqe->res < 0 && !e)
			e = -cqe->res;
		io_uring_cqe_seen(&c->ring, cqe);
		got++;
	}
	if (e) {
		errno = e;
		rc = -1;
	}
	return rc;
}

static int sync_all(struct sched_commit *c, int *fds, size_t n)
{
	for (size_t i = 0; i < n && c->ring_ok && n > 1; i += RING_ENTRIES)
		if (sync_ring(c, fds + i, n - i < RING_ENTRIES ? n - i : RING_ENTRIES) < 0)
			return -1;
	for (size_t i = 0; i < n && !(c->ring_ok && n > 1); i++)
		if (fdatasync(fds[i]) < 0)
			return -1;
	return 0;
}

/* 0 when the whole batch is durable. On a failure every file written is
 * cut back to where the batch began, so a retry appends nothing twice;
 * path[PATH_MAX] names the journal that failed. */
static int make_durable(struct sched_commit *c, struct batch *b, char *path)
{
	int *fds = vl_calloc(b->n + 1, sizeof *fds);
	off_t *starts = vl_calloc(b->n + 1, sizeof *starts);
	size_t nfd = 0;
	int rc = 0;

	for (size_t i = 0; i < b->n && rc == 0; i++) {
		if (!b->jobs[i].recs.len)
			continue;
		rc = write_job(c, &b->jobs[i], &fds[nfd], &starts[nfd], path);
		nfd += rc == 0;
	}
	if (rc == 0 && nfd && (rc = sync_all(c, fds, nfd)) < 0) {
		int se = errno;
		size_t at = strnlen(path, PATH_MAX - 32);
		snprintf(path + at, PATH_MAX - at, " (fsync, with %zu others)", nfd - 1);
		errno = se;
	}
	int e = errno;
	for (size_t i = 0; i < nfd; i++) {
		if (rc < 0 && ftruncate(fds[i], starts[i]) < 0)
			vl_log(VL_LOG_ERROR, "journal: cannot cut back: %s", strerror(errno));
		close(fds[i]);
	}
	free(fds);
	free(starts);
	errno = e;
	return rc;
}

/* The batch's hard bounces of invalid recipients, with one fdatasync. */
static void suppress(struct sched_commit *c, const struct vl_buf *pairs)
{
	const char **emails = NULL, **jobs = NULL;
	size_t n = 0;

	for (size_t off = 0; c->d->sup && off < pairs->len; n++) {
		emails = vl_realloc(emails, (n + 1) * sizeof *emails);
		jobs = vl_realloc(jobs, (n + 1) * sizeof *jobs);
		emails[n] = pairs->p + off;
		jobs[n] = emails[n] + strlen(emails[n]) + 1;
		off = (size_t)(jobs[n] - pairs->p) + strlen(jobs[n]) + 1;
	}
	if (n && sched_suppress_add_many(c->d->sup, emails, jobs, n, "invalid-recipient") < 0)
		vl_log(VL_LOG_ERROR, "suppression: cannot add %zu addresses: %s", n, strerror(errno));
	free(emails);
	free(jobs);
}

static void apply(struct sched_commit *c, struct batch *b)
{
	struct sched *sc = c->d->sc;
	double now = vl_wall_time();

	struct sched_job **done = NULL;
	size_t ndone = 0;

	sched_lock(sc);
	for (size_t i = 0; i < b->n; i++) {
		struct sched_job *j = b->jobs[i].j;
		for (int s = 0; s < SCHED_NSTATES; s++)
			j->counts[s] = (size_t)((long long)j->counts[s] + b->jobs[i].delta[s]);
		if (b->jobs[i].delta[SCHED_DELIVERED] > 0) {
			if (!j->first_delivery)
				j->first_delivery = now;
			j->last_delivery = now;
			if (!j->transactional && j->from_domain[0])
				sched_fb_delivered(sc, j->from_domain,
						   (size_t)b->jobs[i].delta[SCHED_DELIVERED]);
		}
		if (!j->finished && j->counts[SCHED_QUEUED] + j->counts[SCHED_IN_FLIGHT] +
		    j->counts[SCHED_DEFERRED] == 0) {
			j->finished = now;
			done = vl_realloc(done, (ndone + 1) * sizeof *done);
			done[ndone++] = j;
		}
	}
	sched_unlock(sc);
	for (size_t i = 0; i < ndone; i++)
		sched_mark_done(sc, done[i]);
	free(done);
	if (c->d->ev && b->events.len) {
		sched_events_append_buf(c->d->ev, &b->events);
		sched_events_flush(c->d->ev);
	}
	suppress(c, &b->suppress);
}

static void note_latency(struct sched_commit *c, uint64_t us)
{
	pthread_mutex_lock(&c->mu);
	c->commits++;
	c->total_us += us;
	c->last_us = us;
	if (us > c->max_us)
		c->max_us = us;
	pthread_mutex_unlock(&c->mu);
}

json_t *sched_commit_stats_json(struct sched_commit *c)
{
	pthread_mutex_lock(&c->mu);
	json_t *j = json_pack("{s:I, s:f, s:f, s:f}", "commits", (json_int_t)c->commits,
			      "avg_ms", c->commits ? (double)c->total_us / c->commits / 1000 : 0.0,
			      "max_ms", (double)c->max_us / 1000, "last_ms", (double)c->last_us / 1000);
	pthread_mutex_unlock(&c->mu);
	return j;
}

static void commit_one(struct sched_commit *c, struct batch *b)
{
	bool told = false;
	uint64_t since = vl_now_ms(), t0 = vl_now_ns();
	char path[PATH_MAX] = "";

	while (make_durable(c, b, path) < 0) {
		if (c->stop && vl_now_ms() - since > 10000) {
			/* Shutting down and still no space: these recipients are
			 * delivered again after a restart (at least once). */
			vl_log(VL_LOG_ERROR, "journal: giving up a batch at shutdown; its "
			       "outcomes will be retried after a restart");
			atomic_store(&c->blocked, false);
			return;
		}
		if (!told)
			vl_log(VL_LOG_ERROR, "journal %s: cannot write (%s); deliveries pause "
			       "until it can", path, strerror(errno));
		told = true;
		atomic_store(&c->blocked, true);
		usleep(RETRY_MS * 1000);
	}
	if (told)
		vl_log(VL_LOG_INFO, "journal: writable again; deliveries resume");
	atomic_store(&c->blocked, false);
	note_latency(c, (vl_now_ns() - t0) / 1000);
	apply(c, b);
}

static void *run(void *arg)
{
	struct sched_commit *c = arg;

	vl_thread_name("vl-journal");
	c->ring_ok = io_uring_queue_init(RING_ENTRIES, &c->ring, 0) == 0;
	if (!c->ring_ok)
		vl_log(VL_LOG_WARN, "journal: no io_uring for parallel fdatasyncs; one at a time");
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->head && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (!c->head)
			break;
		struct batch *b = c->head;
		c->head = b->next;
		if (!c->head)
			c->tail = NULL;
		pthread_mutex_unlock(&c->mu);
		commit_one(c, b);
		pthread_mutex_lock(&c->mu);
		if (b->events.cap > c->spare.cap) {
			struct vl_buf t = c->spare;
			c->spare = b->events;
			b->events = t;
		}
		vl_buf_reset(&c->spare);
		pthread_mutex_unlock(&c->mu);
		batch_free(b);
		pthread_mutex_lock(&c->mu);
		c->applied++;
		pthread_cond_broadcast(&c->done_cv);
	}
	pthread_mutex_unlock(&c->mu);
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);
	return NULL;
}

struct sched_commit *sched_commit_start(struct sched_deliver *d, char *err, size_t errlen)
{
	struct sched_commit *c = vl_calloc(1, sizeof *c);

	c->d = d;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pthread_cond_init(&c->done_cv, NULL);
	if (pthread_create(&c->tid, NULL, run, c) != 0) {
		snprintf(err, errlen, "cannot start the journal committer");
		free(c);
		return NULL;
	}
	return c;
}

static void take_job(struct cjob *cj, struct sched_djob *dj)
{
	cj->j = dj->j;
	memcpy(cj->id, dj->j->id, sizeof cj->id);
	cj->recs = dj->jbuf;          /* the batch takes the buffer */
	vl_buf_init(&dj->jbuf);
	memcpy(cj->delta, dj->delta, sizeof cj->delta);
	memset(dj->delta, 0, sizeof dj->delta);
	dj->in_batch = false;
}

void sched_commit_submit(struct sched_commit *c, struct sched_djob *jobs, struct vl_buf *events,
			 struct vl_buf *suppress)
{
	struct batch *b = vl_calloc(1, sizeof *b);
	size_t n = 0;

	for (struct sched_djob *dj = jobs; dj; dj = dj->next)
		n += dj->in_batch;
	b->jobs = vl_calloc(n + 1, sizeof *b->jobs);
	for (struct sched_djob *dj = jobs; dj; dj = dj->next)
		if (dj->in_batch)
			take_job(&b->jobs[b->n++], dj);
	b->events = *events;
	b->suppress = *suppress;
	vl_buf_init(suppress);
	pthread_mutex_lock(&c->mu);
	*events = c->spare;           /* empty, or no buffer yet */
	vl_buf_init(&c->spare);
	if (c->tail)
		c->tail->next = b;
	else
		c->head = b;
	c->tail = b;
	c->submitted++;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* Until everything submitted so far is applied (not what comes later). */
void sched_commit_drain(struct sched_commit *c)
{
	pthread_mutex_lock(&c->mu);
	uint64_t target = c->submitted;
	while (c->applied < target)
		pthread_cond_wait(&c->done_cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

uint64_t sched_commit_backlog(struct sched_commit *c)
{
	pthread_mutex_lock(&c->mu);
	uint64_t n = c->submitted - c->applied;
	pthread_mutex_unlock(&c->mu);
	return n;
}

bool sched_commit_blocked(struct sched_commit *c)
{
	return atomic_load(&c->blocked);
}

/* Batches still queued are written before the thread ends. */
void sched_commit_stop(struct sched_commit *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->tid, NULL);
	vl_buf_free(&c->spare);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->done_cv);
	free(c);
}
