/*
 * The spool's intake log (layout and rules in spool_int.h): group commit
 * for small jobs, a checkpointer thread, and recovery at start.
 */
#include "spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define CHECKPOINT_MS 1000       /* a new segment about this often, unless told */
#define SEG_MAX (64u << 20)      /* ... or once one is this long */
#define MAGIC_LEN 8
#define REST_FIXED (4 + SCHED_ID_LEN)
#define FILE_HEAD 8

struct sched_ilog {
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* a batch written, a job moved, stop */
	char *dir;
	int dir_fd, sync_fd;
	int fd;                      /* the open segment */
	uint64_t gen;                /* its number */
	uint64_t end;                /* its length */
	size_t nrec;                 /* records in it */
	struct sched_ilog_wait *qhead, *qtail;  /* waiting for the next write */
	bool writing;                /* a put is writing a batch */
	bool broken;                 /* a failed write could not be undone */
	size_t inflight[2];          /* durable, not in jobs/ yet: per segment
				      * parity (the open one and the old one) */
	double clean;
	uint64_t stale[8];           /* old segments a failed checkpoint kept */
	int nstale;
	uint64_t every_ms;           /* checkpoint interval */
	uint64_t last_rotate_ms;
	bool stop;
	pthread_t th;
	struct sched_ilog_stats st;
};

/* ---- records ---- */

static void put32(struct vl_buf *b, uint32_t v)
{
	vl_buf_append(b, &v, 4);
}

void sched_ilog_encode(struct vl_buf *out, const struct sched_ilog_rec *r)
{
	size_t start = out->len;
	unsigned char kind[4] = { (unsigned char)r->kind, (unsigned char)r->nfiles, 0, 0 };

	put32(out, 0);
	put32(out, 0);
	vl_buf_append(out, kind, 4);
	vl_buf_append(out, r->id, SCHED_ID_LEN);
	for (int i = 0; i < r->nfiles; i++) {
		unsigned char w[4] = { (unsigned char)r->f[i].which, 0, 0, 0 };
		vl_buf_append(out, w, 4);
		put32(out, r->f[i].n);
		vl_buf_append(out, r->f[i].p, r->f[i].n);
	}
	uint32_t len = (uint32_t)(out->len - start - SCHED_ILOG_HEAD);
	uint32_t crc = vl_crc32c(0, out->p + start + SCHED_ILOG_HEAD, len);
	memcpy(out->p + start, &len, 4);
	memcpy(out->p + start + 4, &crc, 4);
}

static bool file_ok(unsigned w)
{
	return w == SCHED_SPOOL_JOB || w == SCHED_SPOOL_RCPT || w == SCHED_SPOOL_MESSAGE;
}

/* The rest of a record whose CRC matched. */
static int decode_rest(const char *p, uint32_t len, struct sched_ilog_rec *r)
{
	if (len < REST_FIXED || (p[0] != SCHED_ILOG_JOB && p[0] != SCHED_ILOG_FORGET) ||
	    (unsigned char)p[1] > SCHED_ILOG_FILES || !sched_id_valid(p + 4, SCHED_ID_LEN))
		return -1;
	r->kind = (enum sched_ilog_kind)p[0];
	r->nfiles = (unsigned char)p[1];
	memcpy(r->id, p + 4, SCHED_ID_LEN);
	r->id[SCHED_ID_LEN] = '\0';
	size_t o = REST_FIXED;
	for (int i = 0; i < r->nfiles; i++) {
		uint32_t n;
		if (len - o < FILE_HEAD || !file_ok((unsigned char)p[o]))
			return -1;
		r->f[i].which = (enum sched_spool_file)(unsigned char)p[o];
		memcpy(&n, p + o + 4, 4);
		o += FILE_HEAD;
		if (n > len - o)
			return -1;
		r->f[i].p = p + o;
		r->f[i].n = n;
		o += n;
	}
	return o == len ? 0 : -1;
}

long sched_ilog_decode(const char *p, size_t n, struct sched_ilog_rec *r)
{
	uint32_t len, crc;

	if (n < SCHED_ILOG_HEAD)
		return 0;
	memcpy(&len, p, 4);
	memcpy(&crc, p + 4, 4);
	if (len > SCHED_ILOG_MAX + 4096)
		return -1;
	if (len > n - SCHED_ILOG_HEAD)
		return 0;
	if (vl_crc32c(0, p + SCHED_ILOG_HEAD, len) != crc ||
	    decode_rest(p + SCHED_ILOG_HEAD, len, r) < 0)
		return -1;
	return (long)(SCHED_ILOG_HEAD + len);
}

/* ---- segments ---- */

static void seg_name(char *out, size_t n, uint64_t gen)
{
	snprintf(out, n, "%016" PRIx64 ".seg", gen);
}

/* A segment's number from its name; false for anything else. */
static bool seg_gen(const char *name, uint64_t *gen)
{
	char *end;
	if (strlen(name) != 20 || strcmp(name + 16, ".seg"))
		return false;
	*gen = strtoull(name, &end, 16);
	return end == name + 16;
}

/* The segments in dir, in order (allocated; *n of them). */
static uint64_t *list_segs(const char *dir, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t *v = NULL, g;
	size_t cap = 0;

	*n = 0;
	while (d && (e = readdir(d))) {
		if (!seg_gen(e->d_name, &g))
			continue;
		if (*n == cap)
			v = vl_realloc(v, (cap = cap ? cap * 2 : 8) * sizeof *v);
		size_t i = (*n)++;
		while (i && v[i - 1] > g) {      /* insertion: a handful */
			v[i] = v[i - 1];
			i--;
		}
		v[i] = g;
	}
	if (d)
		closedir(d);
	return v;
}

/* A new empty segment, durable with its directory entry. -1 with errno. */
static int seg_create(int dir_fd, uint64_t gen)
{
	char name[32];
	seg_name(name, sizeof name, gen);
	int fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (vl_write_all(fd, SCHED_ILOG_MAGIC, MAGIC_LEN) < 0 || fdatasync(fd) < 0 ||
	    fsync(dir_fd) < 0) {
		int e = errno;
		close(fd);
		unlinkat(dir_fd, name, 0);
		errno = e;
		return -1;
	}
	return fd;
}

static int seg_remove(int dir_fd, uint64_t gen)
{
	char name[32];
	seg_name(name, sizeof name, gen);
	if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
		return -1;
	return fsync(dir_fd);
}

/* ---- group commit ---- */

/* Write the queue as one batch (called with mu held, returns with it). */
static void lead(struct sched_ilog *l)
{
	struct sched_ilog_wait *b = l->qhead;
	int fd = l->fd;
	uint64_t start = l->end, gen = l->gen, total = 0;
	size_t n = 0;

	l->qhead = l->qtail = NULL;
	l->writing = true;
	pthread_mutex_unlock(&l->mu);
	for (struct sched_ilog_wait *w = b; w; w = w->next)
		n++;
	struct iovec *iov = vl_malloc(n * sizeof *iov);
	n = 0;
	for (struct sched_ilog_wait *w = b; w; w = w->next) {
		iov[n++] = (struct iovec){ (void *)w->rec, w->len };
		total += w->len;
	}
	int rc = 0;
	size_t at = 0;
	for (uint64_t off = start; rc == 0 && at < n;) {
		ssize_t k = pwritev(fd, iov + at, (int)(n - at > IOV_MAX ? IOV_MAX : n - at),
				    (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = -1;
			break;
		}
		off += (uint64_t)k;
		while (at < n && (size_t)k >= iov[at].iov_len)
			k -= (ssize_t)iov[at++].iov_len;
		if (at < n) {
			iov[at].iov_base = (char *)iov[at].iov_base + k;
			iov[at].iov_len -= (size_t)k;
		}
	}
	if (rc == 0)
		rc = fdatasync(fd);
	int e = errno;
	free(iov);
	/* a failed batch is cut off again, so that no later batch follows
	 * octets that replay would stop at */
	bool undone = rc == 0 || ftruncate(fd, (off_t)start) == 0;
	pthread_mutex_lock(&l->mu);
	if (rc == 0) {
		l->end += total;
		l->nrec += n;
		l->inflight[gen & 1] += n;
		l->st.records += n;
		l->st.batches++;
	} else if (!undone) {
		l->broken = true;
		vl_log(VL_LOG_ERROR, "intake log: a failed write could not be undone (%s); "
		       "small jobs are stored without it until restart", strerror(e));
	}
	for (struct sched_ilog_wait *w = b; w; w = w->next) {
		w->done = true;
		w->rc = rc;
		w->err = e;
		w->gen = gen;
	}
	l->writing = false;
	pthread_cond_broadcast(&l->cv);
}

int sched_ilog_put(struct sched_ilog *l, const void *rec, size_t len,
		   struct sched_ilog_wait *w)
{
	*w = (struct sched_ilog_wait){ .rec = rec, .len = len };
	pthread_mutex_lock(&l->mu);
	if (l->broken || l->stop) {
		pthread_mutex_unlock(&l->mu);
		errno = l->broken ? EIO : ESHUTDOWN;
		return -1;
	}
	if (l->qtail)
		l->qtail->next = w;
	else
		l->qhead = w;
	l->qtail = w;
	while (!w->done) {
		if (!l->writing)
			lead(l);      /* writes w with the others queued */
		else
			pthread_cond_wait(&l->cv, &l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	errno = w->err;
	return w->rc;
}

void sched_ilog_done(struct sched_ilog *l, const struct sched_ilog_wait *w)
{
	pthread_mutex_lock(&l->mu);
	if (!--l->inflight[w->gen & 1])
		pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

double sched_ilog_clean(struct sched_ilog *l)
{
	if (!l)
		return INFINITY;
	pthread_mutex_lock(&l->mu);
	double t = l->clean;
	pthread_mutex_unlock(&l->mu);
	return t;
}

void sched_ilog_stats(struct sched_ilog *l, struct sched_ilog_stats *out)
{
	pthread_mutex_lock(&l->mu);
	*out = l->st;
	pthread_mutex_unlock(&l->mu);
}

/* ---- checkpoints ---- */

/* Switch to a new segment (prepared before, off the lock); the old
 * one's number, or 0 when the open one is empty (nothing to do: every
 * record so far is checkpointed). Called and returns with mu held. */
static uint64_t rotate(struct sched_ilog *l, double *at)
{
	*at = vl_wall_time();
	if (!l->nrec)
		return 0;
	uint64_t next = l->gen + 1;
	pthread_mutex_unlock(&l->mu);
	int fd = seg_create(l->dir_fd, next);
	int e = errno;
	pthread_mutex_lock(&l->mu);
	if (fd < 0) {
		vl_log(VL_LOG_ERROR, "intake log: cannot start segment %" PRIu64 " in %s: %s",
		       next, l->dir, strerror(e));
		errno = e;
		return 0;
	}
	while (l->writing)
		pthread_cond_wait(&l->cv, &l->mu);
	*at = vl_wall_time();      /* every record after this goes to next */
	uint64_t old = l->gen;
	close(l->fd);
	l->fd = fd;
	l->gen = next;
	l->end = MAGIC_LEN;
	l->nrec = 0;
	l->st.segments_open++;
	return old;
}

/* The old segments (a failed checkpoint's, then old), each removed once
 * the file system is synced; -1 when one is still there. */
static int remove_old(struct sched_ilog *l, uint64_t old)
{
	if (old && l->nstale < (int)VL_ARRAY_LEN(l->stale))
		l->stale[l->nstale++] = old;
	if (!l->nstale)
		return 0;
	if (syncfs(l->sync_fd) < 0)
		return -1;
	while (l->nstale && seg_remove(l->dir_fd, l->stale[l->nstale - 1]) == 0)
		l->nstale--;
	return l->nstale ? -1 : 0;
}

int sched_ilog_checkpoint(struct sched_ilog *l)
{
	double at;
	pthread_mutex_lock(&l->mu);
	l->last_rotate_ms = vl_now_ms();
	/* as many kept as can be counted: no new segment until they go */
	bool full = l->nstale == (int)VL_ARRAY_LEN(l->stale);
	uint64_t old = full ? 0 : rotate(l, &at);
	if (full) {
		pthread_mutex_unlock(&l->mu);
		return remove_old(l, 0) < 0 ? -1 : sched_ilog_checkpoint(l);
	}
	if (!old && l->nrec) {      /* could not start a new segment */
		pthread_mutex_unlock(&l->mu);
		return -1;
	}
	/* its jobs are all in jobs/ (each put is followed by its move) */
	while (old && l->inflight[old & 1])
		pthread_cond_wait(&l->cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
	/* with a segment kept by a failed checkpoint, the clean time stays
	 * where it was: its records are not checkpointed */
	if (remove_old(l, old) < 0) {
		vl_log(VL_LOG_ERROR, "intake log: checkpoint: %s; %d segments kept, replayed at "
		       "the next start if not removed before", strerror(errno), l->nstale);
		return -1;
	}
	pthread_mutex_lock(&l->mu);
	l->clean = at;
	l->st.checkpoints += old != 0;
	pthread_mutex_unlock(&l->mu);
	return 0;
}

static void *run(void *arg)
{
	struct sched_ilog *l = arg;

	vl_thread_name("vl-ilog");
	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		uint64_t due = l->last_rotate_ms + l->every_ms, now = vl_now_ms();
		if (now < due && l->end < SEG_MAX) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t ns = (uint64_t)ts.tv_nsec + (due - now) * 1000000;
			ts.tv_sec += (time_t)(ns / 1000000000);
			ts.tv_nsec = (long)(ns % 1000000000);
			pthread_cond_timedwait(&l->cv, &l->mu, &ts);
			continue;
		}
		pthread_mutex_unlock(&l->mu);
		sched_ilog_checkpoint(l);
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

struct sched_ilog *sched_ilog_open(const char *dir, int sync_fd, uint64_t checkpoint_ms,
				   char *err, size_t errlen)
{
	struct sched_ilog *l = vl_calloc(1, sizeof *l);
	size_t n;

	l->every_ms = checkpoint_ms ? checkpoint_ms : CHECKPOINT_MS;
	l->fd = l->dir_fd = -1;
	l->sync_fd = sync_fd;
	l->dir = vl_strdup(dir);
	if ((mkdir(dir, 0750) < 0 && errno != EEXIST) ||
	    (l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "intake log %s: %s", dir, strerror(errno));
		goto fail;
	}
	uint64_t *segs = list_segs(dir, &n);
	l->gen = (n ? segs[n - 1] : 0) + 1;
	free(segs);
	if ((l->fd = seg_create(l->dir_fd, l->gen)) < 0) {
		snprintf(err, errlen, "intake log %s: cannot create a segment: %s", dir,
			 strerror(errno));
		goto fail;
	}
	l->end = MAGIC_LEN;
	l->clean = vl_wall_time();
	l->last_rotate_ms = vl_now_ms();
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (pthread_create(&l->th, NULL, run, l) != 0) {
		snprintf(err, errlen, "intake log: cannot start its thread");
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		goto fail;
	}
	return l;
fail:
	if (l->fd >= 0)
		close(l->fd);
	if (l->dir_fd >= 0)
		close(l->dir_fd);
	free(l->dir);
	free(l);
	return NULL;
}

void sched_ilog_close(struct sched_ilog *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->th, NULL);
	sched_ilog_checkpoint(l);     /* the open segment's records: durable */
	pthread_mutex_lock(&l->mu);
	bool empty = !l->nrec;
	pthread_mutex_unlock(&l->mu);
	close(l->fd);
	if (empty)   /* an empty segment: nothing to replay */
		seg_remove(l->dir_fd, l->gen);
	close(l->dir_fd);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l->dir);
	free(l);
}

/* ---- recovery ---- */

/* One segment's records through apply; -1 with err when it cannot be
 * read or apply fails (a torn or damaged tail only ends it). */
static long replay(const char *dir, uint64_t gen,
		   int (*apply)(void *arg, const struct sched_ilog_rec *r), void *arg,
		   char *err, size_t errlen)
{
	char name[32], path[PATH_MAX];
	struct stat st;
	long applied = 0;

	seg_name(name, sizeof name, gen);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "intake log %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	size_t n = (size_t)st.st_size;
	char *buf = vl_malloc(n + 1);
	ssize_t got = n ? pread(fd, buf, n, 0) : 0;
	close(fd);
	if (got != (ssize_t)n) {
		snprintf(err, errlen, "intake log %s: short read", path);
		free(buf);
		return -1;
	}
	size_t o = n >= MAGIC_LEN && !memcmp(buf, SCHED_ILOG_MAGIC, MAGIC_LEN) ? MAGIC_LEN : n;
	while (o < n) {
		struct sched_ilog_rec r;
		long k = sched_ilog_decode(buf + o, n - o, &r);
		if (k <= 0) {
			vl_log(VL_LOG_WARN, "intake log %s: %s at octet %zu; the rest ignored (a job "
			       "never acknowledged)", path, k ? "a damaged record" : "a torn record",
			       o);
			break;
		}
		if (apply(arg, &r) < 0) {
			snprintf(err, errlen, "intake log %s: job %s cannot be restored: %s", path,
				 r.id, strerror(errno));
			free(buf);
			return -1;
		}
		applied++;
		o += (size_t)k;
	}
	free(buf);
	return applied;
}

long sched_ilog_recover(const char *dir, int sync_fd,
			int (*apply)(void *arg, const struct sched_ilog_rec *r), void *arg,
			char *err, size_t errlen)
{
	size_t n;
	long total = 0;
	uint64_t *segs = list_segs(dir, &n);

	for (size_t i = 0; i < n && total >= 0; i++) {
		long k = replay(dir, segs[i], apply, arg, err, errlen);
		total = k < 0 ? -1 : total + k;
	}
	if (total >= 0 && n && syncfs(sync_fd) < 0) {
		snprintf(err, errlen, "intake log: syncfs: %s", strerror(errno));
		total = -1;
	}
	int dfd = total >= 0 && n ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	for (size_t i = 0; dfd >= 0 && i < n; i++)
		seg_remove(dfd, segs[i]);
	if (dfd >= 0)
		close(dfd);
	if (total > 0)
		vl_log(VL_LOG_INFO, "intake log: %ld jobs restored from %zu segments", total, n);
	free(segs);
	return total;
}
