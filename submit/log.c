/*
 * The submission log: group commit for SMTP submission (submit.h has the
 * contract, log_int.h the record layout, docs/submission-log.md the story).
 *
 * Threads. Sessions call sub_log_put: the record's fields are encoded and
 * checksummed on their thread, the message octets are not copied, and
 * the item joins the queue. The committer takes the whole queue as one
 * batch: one pwritev (per IOV_MAX iovecs) at the segment's end and one
 * fdatasync, then every item's done; a failed batch is cut off again
 * (ftruncate) so that no record the client was refused comes back at
 * recovery. The materialiser reads durable records back (page cache) and
 * makes each a spool job without fsync; a closed segment whose records
 * are all jobs is deleted after one syncfs of the spool. Both threads
 * share one mutex with the sessions; no file is touched under it.
 */
#include "log_int.h"

#include "../message/message.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MAX 10000
#define SEGMENT_BYTES (64ull << 20)
#define SEGMENT_MS 1000
#define RETRY_MS 1000             /* a job that could not be made, tried again */
#define SUB_JOBS_NICE 10          /* the job maker's nice value */
#define TEXT_MAX 256              /* campaign, user */

/* An item waiting for the committer. */
struct pend {
	struct pend *next;
	char *rec;                    /* the record but its message octets */
	size_t rlen;
	const char *msg;              /* the caller's, until done */
	size_t len;
	char id[SCHED_ID_LEN + 1];
	void (*done)(void *arg, int rc, const char *id);
	void *arg;
};

/* A segment the materialiser has not finished with. */
struct seg {
	struct seg *next;
	char *path;
	uint64_t durable;             /* octets written and synced (committer) */
	bool closed;                  /* no more appends (committer) */
	bool recovered;               /* from an earlier run: its tail may be torn */
	int fd;                       /* the materialiser's reading descriptor */
	uint64_t read;                /* records up to here are jobs */
};

struct counters {
	_Atomic uint64_t accepted, failed, refused, batches, syncs, bytes, jobs, recovered,
		segments;
};

struct sub_log {
	const struct cfg *cfg;
	struct sched_spool *sp;
	struct sched *sc;
	struct sub_log_opts o;
	char *dir;
	int dirfd;
	pthread_mutex_t mu;
	pthread_cond_t cq, cm;        /* the committer's and the materialiser's wake-ups */
	struct pend *head, **tail;    /* the queue (mu) */
	size_t nq;
	bool stop, committed_all, hold;
	int broken;                   /* errno of a failed write it could not undo */
	struct seg *segs, **segs_tail; /* for the materialiser (mu) */
	uint64_t retry_at;            /* materialiser: nothing before this (ms) */
	/* the committer's own */
	int fd;
	struct seg *cur;
	uint64_t off, seq, born_ms;
	struct iovec *iov;
	size_t iovcap;
	/* the materialiser's own */
	struct vl_buf rbuf;
	bool threads;
	pthread_t committer, materialiser;
	struct counters n;
};

static uint64_t now_ms(void)
{
	return vl_now_ms();
}

/* ---- checking and queueing (sessions' threads) ---- */

static bool utf8_text(const char *s, size_t max, bool ascii)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || (ascii && (unsigned char)s[i] > 0x7e))
			return false;
	json_t *j = json_stringn(s, n);  /* jansson's UTF-8 check */
	json_decref(j);
	return j != NULL;
}

static int why_fail(char *why, size_t whylen, int e, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int why_fail(char *why, size_t whylen, int e, const char *fmt, ...)
{
	va_list ap;

	if (whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	errno = e;
	return -1;
}

static int check_addrs(const struct sub_item *it, char *why, size_t whylen)
{
	char w[160];
	bool utf8;

	if (!it->sender || (*it->sender && msg_addr_check(it->sender, strlen(it->sender), &utf8,
							   w, sizeof w) < 0))
		return why_fail(why, whylen, EINVAL, "the sender: %s", it->sender ? w : "missing");
	if (it->nrcpt == 0 || it->nrcpt > SUB_RCPT_MAX || !it->rcpts)
		return why_fail(why, whylen, EINVAL, "1 to %d recipients, not %zu", SUB_RCPT_MAX,
				it->nrcpt);
	for (size_t i = 0; i < it->nrcpt; i++)
		if (!it->rcpts[i] || msg_addr_check(it->rcpts[i], strlen(it->rcpts[i]), &utf8, w,
						    sizeof w) < 0)
			return why_fail(why, whylen, EINVAL, "recipient %zu: %s", i + 1,
					it->rcpts[i] ? w : "missing");
	return 0;
}

static int check_opts(const struct sub_log *l, const struct sub_item *it, char *why,
		      size_t whylen)
{
	char path[PATH_MAX];
	double r;

	if (*it->id && !sched_id_valid(it->id, strnlen(it->id, sizeof it->id)))
		return why_fail(why, whylen, EINVAL, "the id is not a job id");
	if (*it->id && sched_spool_path(l->sp, it->id, SCHED_SPOOL_DIR, path, sizeof path) == 0 &&
	    access(path, F_OK) == 0)
		return why_fail(why, whylen, EEXIST, "job %s exists already", it->id);
	if (it->campaign && !utf8_text(it->campaign, TEXT_MAX, false))
		return why_fail(why, whylen, EINVAL, "the campaign must be 1 to %d octets of "
				"UTF-8 text", TEXT_MAX);
	if (it->rate_limit && vl_parse_rate(it->rate_limit, &r) < 0)
		return why_fail(why, whylen, EINVAL, "the rate limit must look like \"50/s\"");
	if (it->expires_in_ms && (it->expires_in_ms < 60000 || it->expires_in_ms > 30 * 86400000ull))
		return why_fail(why, whylen, EINVAL, "the expiry must be 1 minute to 30 days");
	if (it->user && !utf8_text(it->user, TEXT_MAX, false))
		return why_fail(why, whylen, EINVAL, "the user name must be 1 to %d octets of "
				"UTF-8 text", TEXT_MAX);
	if (it->client && !utf8_text(it->client, 64, true))
		return why_fail(why, whylen, EINVAL, "the client address must be printable ASCII");
	return 0;
}

int sub_log_check(const struct sub_log *l, const struct sub_item *it, char *why,
		  size_t whylen)
{
	struct msg_err e;
	uint64_t max = l->cfg->max_message_size;

	if (check_addrs(it, why, whylen) < 0 || check_opts(l, it, why, whylen) < 0)
		return -1;
	if (!it->done)
		return why_fail(why, whylen, EINVAL, "no done callback");
	if (!it->msg || it->len > UINT32_MAX - (64u << 20))
		return why_fail(why, whylen, EMSGSIZE, "the message is too large");
	if (msg_verbatim_check(it->msg, it->len, max, &e) < 0)
		return why_fail(why, whylen, strcmp(e.code, "too_large") ? EINVAL : EMSGSIZE, "%s",
				e.message);
	return 0;
}

static struct pend *encode(const struct sub_log *l, const struct sub_item *it)
{
	struct pend *p = vl_calloc(1, sizeof *p);
	struct sub_rec r = {
		.flags = (it->transactional ? SUB_F_TRANSACTIONAL : 0) |
			 (it->no_dkim ? SUB_F_NO_DKIM : 0) |
			 (it->require_tls ? SUB_F_REQUIRE_TLS : 0) |
			 (it->expires_in_ms ? SUB_F_EXPIRES : 0),
		.created = vl_wall_time(),
		.expires_in_ms = it->expires_in_ms ? it->expires_in_ms : l->cfg->max_age_ms,
		.sender = it->sender, .campaign = it->campaign, .rate_limit = it->rate_limit,
		.user = it->user, .client = it->client, .nrcpt = it->nrcpt,
		.rcpts = (const char **)it->rcpts, .msg = it->msg, .len = it->len,
	};
	struct vl_buf b;

	if (*it->id)
		memcpy(p->id, it->id, SCHED_ID_LEN);
	else
		sched_new_id(p->id);
	memcpy(r.id, p->id, sizeof r.id);
	vl_buf_init(&b);
	sub_rec_encode(&r, &b);
	p->rec = b.p;
	p->rlen = b.len;
	p->msg = it->msg;
	p->len = it->len;
	p->done = it->done;
	p->arg = it->arg;
	return p;
}

int sub_log_put(struct sub_log *l, const struct sub_item *it)
{
	if (sub_log_check(l, it, NULL, 0) < 0) {
		atomic_fetch_add(&l->n.refused, 1);
		return -1;
	}
	struct pend *p = encode(l, it);
	int e = 0;

	pthread_mutex_lock(&l->mu);
	if (l->stop)
		e = ESHUTDOWN;
	else if (l->broken)
		e = EIO;
	else if (l->nq >= l->o.queue_max)
		e = EAGAIN;
	if (!e) {
		*l->tail = p;
		l->tail = &p->next;
		if (l->nq++ == 0)
			pthread_cond_signal(&l->cq);
	}
	pthread_mutex_unlock(&l->mu);
	if (e) {
		free(p->rec);
		free(p);
		atomic_fetch_add(&l->n.refused, 1);
		errno = e;
		return -1;
	}
	return 0;
}

/* ---- the committer ---- */

static int sync_dir(struct sub_log *l)
{
	return fsync(l->dirfd);
}

static char *seg_path(const struct sub_log *l, uint64_t seq)
{
	char *p;

	if (asprintf(&p, "%s/%016llx.seg", l->dir, (unsigned long long)seq) < 0)
		vl_oom(0);
	return p;
}

static void seg_push(struct sub_log *l, struct seg *s)
{
	pthread_mutex_lock(&l->mu);
	*l->segs_tail = s;
	l->segs_tail = &s->next;
	pthread_mutex_unlock(&l->mu);
}

/* A new segment: created, its magic written, its name durable. */
static int seg_open(struct sub_log *l)
{
	struct seg *s = vl_calloc(1, sizeof *s);

	s->path = seg_path(l, l->seq++);
	s->fd = -1;
	l->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (l->fd < 0 || pwrite(l->fd, SUB_SEG_MAGIC, SUB_SEG_HDR, 0) != SUB_SEG_HDR ||
	    sync_dir(l) < 0) {
		int e = errno;
		vl_log(VL_LOG_ERROR, "submit: cannot create %s: %s", s->path, strerror(e));
		if (l->fd >= 0) {
			close(l->fd);
			unlink(s->path);
		}
		l->fd = -1;
		free(s->path);
		free(s);
		errno = e;
		return -1;
	}
	l->off = SUB_SEG_HDR;
	l->born_ms = now_ms();
	l->cur = s;
	seg_push(l, s);
	return 0;
}

/* No more appends to the current segment: the materialiser may finish it. */
static void seg_close(struct sub_log *l)
{
	if (!l->cur)
		return;
	close(l->fd);
	l->fd = -1;
	pthread_mutex_lock(&l->mu);
	l->cur->closed = true;
	pthread_cond_signal(&l->cm);
	pthread_mutex_unlock(&l->mu);
	l->cur = NULL;
}

static bool seg_due(const struct sub_log *l)
{
	return l->cur && (l->off >= l->o.segment_bytes ||
			  now_ms() - l->born_ms >= l->o.segment_ms);
}

/* pwritev until everything is written (a short write goes on). */
static int write_iov(int fd, struct iovec *iov, size_t n, uint64_t off)
{
	while (n) {
		int k = n > IOV_MAX ? IOV_MAX : (int)n;
		ssize_t w = pwritev(fd, iov, k, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		off += (uint64_t)w;
		while (n && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++, n--;
		}
		if (n) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* The batch appended and synced: 0, or -1 with errno and the segment cut
 * back to where it was (or the log broken when even that fails). */
static int append(struct sub_log *l, struct pend *b, uint64_t *bytes)
{
	size_t n = 0;

	*bytes = 0;
	for (struct pend *p = b; p; p = p->next) {
		if (n + 2 > l->iovcap) {
			l->iovcap = l->iovcap ? l->iovcap * 2 : 256;
			l->iov = vl_realloc(l->iov, l->iovcap * sizeof *l->iov);
		}
		l->iov[n++] = (struct iovec){ p->rec, p->rlen };
		l->iov[n++] = (struct iovec){ (void *)p->msg, p->len };
		*bytes += p->rlen + p->len;
	}
	if (write_iov(l->fd, l->iov, n, l->off) == 0) {
		atomic_fetch_add(&l->n.syncs, 1);
		if (fdatasync(l->fd) == 0)
			return 0;
	}
	int e = errno;
	vl_log(VL_LOG_ERROR, "submit: cannot append to %s: %s", l->cur->path, strerror(e));
	if (ftruncate(l->fd, (off_t)l->off) < 0 || fdatasync(l->fd) < 0) {
		vl_log(VL_LOG_ERROR, "submit: cannot cut %s back after a failed write (%s): "
		       "taking no more messages", l->cur->path, strerror(errno));
		pthread_mutex_lock(&l->mu);
		l->broken = EIO;
		pthread_mutex_unlock(&l->mu);
	}
	errno = e;
	return -1;
}

static void answer(struct sub_log *l, struct pend *b, int rc, int e)
{
	while (b) {
		struct pend *next = b->next;
		errno = e;
		b->done(b->arg, rc, b->id);
		atomic_fetch_add(rc == 0 ? &l->n.accepted : &l->n.failed, 1);
		free(b->rec);
		free(b);
		b = next;
	}
}

/* The spool's own rule (the API answers 503 then): under spool.min_free
 * free, or the journal cannot be written. Once a batch, not a message. */
static bool spool_full(const struct sub_log *l)
{
	return sched_spool_free_bytes(l->sp) < l->cfg->spool.min_free ||
	       (l->sc && !sched_accepting(l->sc));
}

static void commit_batch(struct sub_log *l, struct pend *b)
{
	uint64_t bytes = 0;
	int rc = -1, e = 0;

	pthread_mutex_lock(&l->mu);
	e = l->broken;
	pthread_mutex_unlock(&l->mu);
	if (!e && spool_full(l))
		e = ENOSPC;
	if (seg_due(l))
		seg_close(l);
	if (!e && !l->cur && seg_open(l) < 0)
		e = errno;
	if (!e && (rc = append(l, b, &bytes)) < 0)
		e = errno;
	atomic_fetch_add(&l->n.batches, 1);
	if (rc == 0) {
		l->off += bytes;
		atomic_fetch_add(&l->n.bytes, bytes);
	}
	answer(l, b, rc, e);
	if (rc == 0) {
		pthread_mutex_lock(&l->mu);
		l->cur->durable = l->off;
		pthread_cond_signal(&l->cm);
		pthread_mutex_unlock(&l->mu);
	}
}

/* The queue, taken whole (mu held). */
static struct pend *take_all(struct sub_log *l)
{
	struct pend *b = l->head;

	l->head = NULL;
	l->tail = &l->head;
	l->nq = 0;
	return b;
}

static void deadline(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

void sub_log_commit_step(struct sub_log *l)
{
	pthread_mutex_lock(&l->mu);
	struct pend *b = take_all(l);
	pthread_mutex_unlock(&l->mu);
	if (b)
		commit_batch(l, b);
}

static void *committer(void *arg)
{
	struct sub_log *l = arg;

	vl_thread_name("vl-sublog");
	pthread_mutex_lock(&l->mu);
	for (;;) {
		if (l->nq && !l->hold) {
			struct pend *b = take_all(l);
			pthread_mutex_unlock(&l->mu);
			commit_batch(l, b);
			pthread_mutex_lock(&l->mu);
			continue;
		}
		if (l->stop && !l->nq)
			break;
		if (!l->cur) {
			pthread_cond_wait(&l->cq, &l->mu);
			continue;
		}
		/* an idle segment is closed once old enough: its jobs can go */
		uint64_t age = now_ms() - l->born_ms;
		if (age >= l->o.segment_ms) {
			pthread_mutex_unlock(&l->mu);
			seg_close(l);
			pthread_mutex_lock(&l->mu);
			continue;
		}
		struct timespec ts;
		deadline(&ts, l->o.segment_ms - age);
		pthread_cond_timedwait(&l->cq, &l->mu, &ts);
	}
	pthread_mutex_unlock(&l->mu);
	seg_close(l);
	pthread_mutex_lock(&l->mu);
	l->committed_all = true;
	pthread_cond_signal(&l->cm);
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* ---- the materialiser ---- */

/* The segment's records up to end into jobs. 0 all done; -1 a job could
 * not be made (try again later); -2 the segment is damaged. */
static int materialise(struct sub_log *l, struct seg *s, uint64_t end)
{
	char magic[SUB_SEG_HDR];
	struct sub_rec r;
	const char *why;

	if (s->fd < 0 && (s->fd = open(s->path, O_RDONLY | O_CLOEXEC)) < 0) {
		vl_log(VL_LOG_ERROR, "submit: cannot open %s: %s", s->path, strerror(errno));
		return -1;
	}
	if (s->read == 0) {
		if (end < SUB_SEG_HDR && s->recovered) {  /* created, never written */
			s->read = s->durable = end;
			return 0;
		}
		if (pread(s->fd, magic, SUB_SEG_HDR, 0) != SUB_SEG_HDR ||
		    memcmp(magic, SUB_SEG_MAGIC, SUB_SEG_HDR))
			return -2;
		s->read = SUB_SEG_HDR;
	}
	while (s->read < end) {
		uint64_t off = s->read;
		int got = sub_seg_read(s->fd, &off, end, &l->rbuf, &r, &why);
		if (got < 0) {
			vl_log(VL_LOG_ERROR, "submit: cannot read %s: %s (tried again in %d ms)",
			       s->path, strerror(errno), RETRY_MS);
			return -1;
		}
		if (got == 0) {
			if (!s->recovered)
				return -2;
			vl_log(VL_LOG_INFO, "submit: %s: %llu octets after offset %llu ignored (%s: "
			       "a write the crash cut short, never acknowledged)", s->path,
			       (unsigned long long)(end - s->read), (unsigned long long)s->read, why);
			s->read = s->durable = end;
			return 0;
		}
		int rc = sub_job_make(l->sp, l->sc, &r, s->recovered);
		if (rc < 0)
			vl_log(VL_LOG_ERROR, "submit: cannot make job %s from %s: %s (tried again "
			       "in %d ms)", r.id, s->path, strerror(errno), RETRY_MS);
		sub_rec_free(&r);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			atomic_fetch_add(&l->n.jobs, 1);
			if (s->recovered)
				atomic_fetch_add(&l->n.recovered, 1);
		}
		s->read = off;
	}
	return 0;
}

/* A closed segment whose records are all jobs: the jobs made durable,
 * then the segment deleted. -1: try again later. */
static int finish(struct sub_log *l, struct seg *s)
{
	if (sched_spool_sync(l->sp) < 0) {
		vl_log(VL_LOG_ERROR, "submit: cannot sync the spool: %s", strerror(errno));
		return -1;
	}
	if (unlink(s->path) < 0 && errno != ENOENT) {
		vl_log(VL_LOG_ERROR, "submit: cannot remove %s: %s", s->path, strerror(errno));
		return -1;
	}
	sync_dir(l);
	atomic_fetch_add(&l->n.segments, 1);
	return 0;
}

/* A segment that cannot be read back is kept aside for the operator. */
static void set_aside(struct seg *s)
{
	char to[PATH_MAX];

	snprintf(to, sizeof to, "%s.damaged", s->path);
	vl_log(VL_LOG_ERROR, "submit: %s is damaged at offset %llu: kept as %s; the messages "
	       "after that offset are not delivered", s->path, (unsigned long long)s->read, to);
	rename(s->path, to);
}

static void seg_free(struct seg *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	free(s);
}

/* One pass over the head segment (mu held, released while working):
 * true if something was done or nothing can be done before a wake-up. */
static bool step(struct sub_log *l, bool finish_segs)
{
	struct seg *s = l->segs;

	if (!s || now_ms() < l->retry_at)
		return false;
	uint64_t end = s->durable;
	bool closed = s->closed;
	if (s->read >= end && !(closed && finish_segs))
		return false;
	pthread_mutex_unlock(&l->mu);
	int rc = s->read < end ? materialise(l, s, end) : 0;
	bool gone = false;
	if (rc == -2) {
		set_aside(s);
		gone = true;
	} else if (rc == 0 && closed && finish_segs && s->read >= end) {
		gone = finish(l, s) == 0;
		rc = gone ? 0 : -1;
	}
	pthread_mutex_lock(&l->mu);
	if (rc == -1)
		l->retry_at = now_ms() + RETRY_MS;
	if (gone) {
		l->segs = s->next;
		if (!l->segs)
			l->segs_tail = &l->segs;
		seg_free(s);
	}
	return rc != -1;
}

void sub_log_materialise_step(struct sub_log *l, bool finish_segs)
{
	pthread_mutex_lock(&l->mu);
	l->retry_at = 0;
	while (step(l, finish_segs))
		;
	pthread_mutex_unlock(&l->mu);
}

static void *materialiser(void *arg)
{
	struct sub_log *l = arg;

	vl_thread_name("vl-subjobs");
	/* Making jobs is the deferred half: the messages are durable in the
	 * log already. Under a burst the sessions' answers go first. */
	setpriority(PRIO_PROCESS, (id_t)gettid(), SUB_JOBS_NICE);
	pthread_mutex_lock(&l->mu);
	for (;;) {
		if (step(l, true))
			continue;
		uint64_t now = now_ms();
		bool failing = l->retry_at > now;
		if (l->committed_all && (!l->segs || failing))
			break;        /* closing: what failed stays for the next open */
		if (failing) {
			struct timespec ts;
			deadline(&ts, l->retry_at - now);
			pthread_cond_timedwait(&l->cm, &l->mu, &ts);
		} else {
			pthread_cond_wait(&l->cm, &l->mu);
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* ---- open, recovery, close ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool seg_name(const char *n, uint64_t *seq)
{
	char *end;

	if (strlen(n) != 20 || strcmp(n + 16, ".seg"))
		return false;
	*seq = strtoull(n, &end, 16);
	return end == n + 16;
}

/* Segments an earlier run left, oldest first, for the materialiser. */
static int scan(struct sub_log *l, char *err, size_t errlen)
{
	DIR *d = opendir(l->dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;

	if (!d)
		return vl_fail(err, errlen, "cannot read %s: %s", l->dir, strerror(errno));
	while ((e = readdir(d))) {
		uint64_t seq;
		if (!seg_name(e->d_name, &seq))
			continue;
		names = vl_realloc(names, (n + 1) * sizeof *names);
		names[n++] = vl_strdup(e->d_name);
		if (seq >= l->seq)
			l->seq = seq + 1;
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		struct seg *s = vl_calloc(1, sizeof *s);
		struct stat st;
		if (asprintf(&s->path, "%s/%s", l->dir, names[i]) < 0)
			vl_oom(0);
		s->fd = -1;
		s->closed = s->recovered = true;
		s->durable = stat(s->path, &st) == 0 ? (uint64_t)st.st_size : 0;
		seg_push(l, s);
		free(names[i]);
	}
	free(names);
	return 0;
}

static struct sub_log *open_log(const struct cfg *c, struct sched_spool *sp, struct sched *sc,
				const struct sub_log_opts *o, char *err, size_t errlen)
{
	struct sub_log *l = vl_calloc(1, sizeof *l);
	pthread_condattr_t ca;

	l->cfg = c;
	l->sp = sp;
	l->sc = sc;
	if (o)
		l->o = *o;
	l->o.queue_max = l->o.queue_max ? l->o.queue_max : QUEUE_MAX;
	l->o.segment_bytes = l->o.segment_bytes ? l->o.segment_bytes : SEGMENT_BYTES;
	l->o.segment_ms = l->o.segment_ms ? l->o.segment_ms : SEGMENT_MS;
	l->fd = l->dirfd = -1;
	l->tail = &l->head;
	l->segs_tail = &l->segs;
	vl_buf_init(&l->rbuf);
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cq, &ca);
	pthread_cond_init(&l->cm, &ca);
	pthread_condattr_destroy(&ca);
	if (asprintf(&l->dir, "%s/submit", c->data_dir) < 0)
		vl_oom(0);
	if ((mkdir(l->dir, 0750) < 0 && errno != EEXIST) || vl_fsync_dir(c->data_dir) < 0 ||
	    (l->dirfd = open(l->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		vl_fail(err, errlen, "cannot open the submission log %s: %s", l->dir,
			strerror(errno));
		sub_log_abandon(l);
		return NULL;
	}
	if (scan(l, err, errlen) < 0) {
		sub_log_abandon(l);
		return NULL;
	}
	return l;
}

struct sub_log *sub_log_open_bare(const struct cfg *c, struct sched_spool *sp,
				  struct sched *sc, const struct sub_log_opts *o,
				  char *err, size_t errlen)
{
	return open_log(c, sp, sc, o, err, errlen);
}

struct sub_log *sub_log_open_opts(const struct cfg *c, struct sched_spool *sp,
				  struct sched *sc, const struct sub_log_opts *o,
				  char *err, size_t errlen)
{
	struct sub_log *l = open_log(c, sp, sc, o, err, errlen);

	if (!l)
		return NULL;
	/* recovery here, before anyone delivers: what fails is retried by
	 * the materialiser thread */
	sub_log_materialise_step(l, true);
	if (l->segs)
		vl_log(VL_LOG_WARN, "submit: the submission log's earlier segments could not "
		       "all be made jobs yet: retrying in the background");
	if (pthread_create(&l->committer, NULL, committer, l) != 0) {
		vl_fail(err, errlen, "cannot start the submission log's committer");
		sub_log_abandon(l);
		return NULL;
	}
	if (pthread_create(&l->materialiser, NULL, materialiser, l) != 0) {
		pthread_mutex_lock(&l->mu);
		l->stop = true;
		pthread_cond_signal(&l->cq);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->committer, NULL);
		vl_fail(err, errlen, "cannot start the submission log's materialiser");
		sub_log_abandon(l);
		return NULL;
	}
	l->threads = true;
	return l;
}

struct sub_log *sub_log_open(const struct cfg *c, struct sched_spool *sp, struct sched *sc,
			     char *err, size_t errlen)
{
	return sub_log_open_opts(c, sp, sc, NULL, err, errlen);
}

void sub_log_hold(struct sub_log *l, bool hold)
{
	pthread_mutex_lock(&l->mu);
	l->hold = hold;
	pthread_cond_signal(&l->cq);
	pthread_mutex_unlock(&l->mu);
}

void sub_log_stats(struct sub_log *l, struct sub_log_stats *out)
{
	out->accepted = atomic_load(&l->n.accepted);
	out->failed = atomic_load(&l->n.failed);
	out->refused = atomic_load(&l->n.refused);
	out->batches = atomic_load(&l->n.batches);
	out->syncs = atomic_load(&l->n.syncs);
	out->bytes = atomic_load(&l->n.bytes);
	out->jobs = atomic_load(&l->n.jobs);
	out->recovered = atomic_load(&l->n.recovered);
	out->segments = atomic_load(&l->n.segments);
	pthread_mutex_lock(&l->mu);
	out->waiting = l->nq;
	pthread_mutex_unlock(&l->mu);
}

/* Frees without touching a file; items still queued are answered -1
 * ESHUTDOWN (a crash would have lost them: never acknowledged). */
void sub_log_abandon(struct sub_log *l)
{
	if (!l)
		return;
	answer(l, take_all(l), -1, ESHUTDOWN);
	if (l->fd >= 0)
		close(l->fd);
	while (l->segs) {
		struct seg *s = l->segs;
		l->segs = s->next;
		seg_free(s);
	}
	if (l->dirfd >= 0)
		close(l->dirfd);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cq);
	pthread_cond_destroy(&l->cm);
	vl_buf_free(&l->rbuf);
	free(l->iov);
	free(l->dir);
	free(l);
}

void sub_log_close(struct sub_log *l)
{
	if (!l)
		return;
	if (l->threads) {
		pthread_mutex_lock(&l->mu);
		l->stop = true;
		l->hold = false;
		pthread_cond_signal(&l->cq);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->committer, NULL);
		pthread_join(l->materialiser, NULL);
	} else {                  /* bare (tests): the same steps, here */
		sub_log_commit_step(l);
		seg_close(l);
		sub_log_materialise_step(l, true);
	}
	if (l->segs)
		vl_log(VL_LOG_WARN, "submit: closing with segments whose jobs could not be "
		       "made: recovered at the next start");
	sub_log_abandon(l);
}
