/*
 * The events log: JSON lines in dir/NNNNNNNN.jsonl, numbered so that names
 * sort by age. append() only copies into `pending` under `mu`; flush()
 * (one at a time, under `flush_mu`) moves pending into `wbuf` and writes
 * it outside `mu`, so neither appenders nor readers wait on the disk.
 * Readers pread the files themselves and take `mu` only to learn how far
 * the current file is written; flush signals `cv` after each write.
 *
 * The log is shared by its owner and its readers (refs): close marks it
 * closed and wakes followers, the last one out frees it.
 */
#include "events.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAME_LEN 32
#define READ_CHUNK (64u * 1024)
/* Lines held while the disk refuses them: four files' worth, within
 * [256 KiB, 64 MiB]; past that the oldest go (counted, logged once). */
#define HOLD_MIN (256u * 1024)
#define HOLD_MAX (64u * 1024 * 1024)

struct sched_events {
	pthread_mutex_t mu;          /* pending, seqs, cur_*, gen, refs, drops */
	pthread_cond_t cv;           /* gen moved or closed */
	pthread_mutex_t flush_mu;    /* one flusher; owns fd, wbuf, mid_line */
	int dirfd;
	uint64_t rotate_bytes, hold;
	unsigned keep;
	struct vl_buf pending, wbuf;
	uint64_t *seqs;              /* files on disk, ascending */
	size_t nseqs;
	uint64_t cur_seq;            /* the file being written (maybe not yet created) */
	uint64_t cur_size;           /* octets of it readers may read */
	int fd;                      /* cur_seq's, -1 until its first write */
	bool mid_line;               /* the file ends inside wbuf's first line */
	bool failing;                /* inside a write-error episode */
	uint64_t gen;
	uint64_t drops;              /* lines dropped in this episode */
	unsigned refs;
	atomic_bool closed;
};

struct sched_events_reader {
	struct sched_events *e;
	char *needle;                /* "\"<job>\"" as the format writes it, or NULL */
	size_t needle_len;
	bool follow;
	uint64_t end_seq, end_off;   /* without follow: where the log stood at open */
	uint64_t seq, off, gen;
	int fd;
	struct vl_buf in;            /* read; handed out up to pos */
	size_t pos;
	size_t rest;                 /* octets of a cut line still to hand out */
	uint64_t cut_at;             /* file offset of the line being cut */
	char **types;                /* "{\"type\":\"<T>\"," needles, or NULL */
	size_t ntypes;
	size_t max_lines, lines;     /* of the read under way */
};

/* ---- format ---- */

/* An event a delivery, tens of thousands a second: the line is written
 * into one reservation of its largest possible size (every string escaped
 * at worst), without printf (whose parsing of the format was 6% of
 * volleyd's CPU in a bulk run) and without a reserve per piece. */
#define LIT(p, s) ((p) = (char *)memcpy((p), (s), sizeof(s) - 1) + sizeof(s) - 1)

static size_t slen(const char *s)
{
	return s ? VL_JSON_PUT_MAX(strlen(s)) : 4;
}

static char *str(char *p, const char *s)
{
	return p + vl_json_put(p, s);
}

/* n in decimal, at least width digits (zero-padded). */
static char *num(char *p, unsigned long long n, int width)
{
	char d[24];
	int i = sizeof d;
	do {
		d[--i] = (char)('0' + n % 10);
		n /= 10;
	} while (n || (int)sizeof d - i < width);
	memcpy(p, d + i, sizeof d - (size_t)i);
	return p + sizeof d - (size_t)i;
}

/* "2026-11-23T17:20:01.123Z", quoted: 26 octets. */
static char *iso_ms(char *p, double t)
{
	long long ms = t > 0 ? llround(t * 1000.0) : 0, s = ms / 1000;
	int y, mo, d;

	vl_civil(s / 86400, &y, &mo, &d);
	const int part[] = { y, mo, d, (int)(s % 86400 / 3600), (int)(s % 3600 / 60),
			     (int)(s % 60), (int)(ms % 1000) };
	const char sep[] = "\"--T::.";
	for (int i = 0; i < 7; i++) {
		*p++ = sep[i];
		p = num(p, (unsigned long long)part[i], i == 0 ? 4 : i == 6 ? 3 : 2);
	}
	return LIT(p, "Z\"");
}

/* What went wrong in the failure's own words when no SMTP reply came
 * (connect, TLS, DNS, DANE, expiry): every failure carries a response or
 * a reason. */
static char *response(char *p, const struct sched_event *ev)
{
	if (!ev->code)
		LIT(p, ",\"response\":null");
	else {
		LIT(p, ",\"response\":{\"code\":");
		p = num(p, (unsigned long long)ev->code, 1);
		LIT(p, ",\"enhanced\":");
		p = str(p, ev->enhanced && *ev->enhanced ? ev->enhanced : NULL);
		LIT(p, ",\"text\":");
		p = str(p, ev->text);
		*p++ = '}';
	}
	LIT(p, ",\"reason\":");
	return str(p, !ev->code && ev->text && *ev->text ? ev->text : NULL);
}

static char *tls(char *p, const struct sched_event *ev)
{
	if (!ev->tls_version)
		return LIT(p, ",\"tls\":null");
	LIT(p, ",\"tls\":{\"version\":");
	p = str(p, ev->tls_version);
	LIT(p, ",\"cipher\":");
	p = str(p, ev->tls_cipher);
	if (ev->tls_verified)
		LIT(p, ",\"verified\":true");
	else
		LIT(p, ",\"verified\":false");
	if (ev->tls_dane)
		LIT(p, ",\"dane\":true");
	else
		LIT(p, ",\"dane\":false");
	LIT(p, ",\"mta_sts\":");
	p = str(p, ev->tls_mta_sts);
	LIT(p, ",\"policy\":");
	p = str(p, ev->tls_policy);
	*p++ = '}';
	return p;
}

/* type, time and job come first, in that order: readers find the job by
 * its key without parsing (see job_matches). */
void sched_event_format(const struct sched_event *ev, struct vl_buf *out)
{
	const char *strs[] = { ev->type, ev->job, ev->recipient, ev->domain, ev->site, ev->mx,
			       ev->peer_address, ev->source_address, ev->enhanced, ev->text,
			       ev->text, ev->bounce_class, ev->tls_version, ev->tls_cipher,
			       ev->tls_mta_sts, ev->tls_policy };
	size_t max = 512;      /* keys, numbers, the time, braces */

	for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
		max += slen(strs[i]);
	char *p0 = vl_buf_reserve(out, max), *p = p0;
	LIT(p, "{\"type\":");
	p = str(p, ev->type);
	LIT(p, ",\"time\":");
	p = iso_ms(p, ev->time);
	LIT(p, ",\"job\":");
	p = str(p, ev->job);
	LIT(p, ",\"recipient\":");
	p = str(p, ev->recipient);
	LIT(p, ",\"domain\":");
	p = str(p, ev->domain);
	LIT(p, ",\"site\":");
	p = str(p, ev->site);
	LIT(p, ",\"mx\":");
	p = str(p, ev->mx);
	LIT(p, ",\"peer_address\":");
	p = str(p, ev->peer_address);
	LIT(p, ",\"source_address\":");
	p = str(p, ev->source_address);
	LIT(p, ",\"attempt\":");
	p = num(p, ev->attempt, 1);
	p = response(p, ev);
	LIT(p, ",\"bounce_class\":");
	p = str(p, ev->bounce_class);
	p = tls(p, ev);
	LIT(p, ",\"size\":");
	p = num(p, ev->size, 1);
	LIT(p, "}\n");
	out->len += (size_t)(p - p0);
}

/* ---- files ---- */

static void file_name(uint64_t seq, char name[NAME_LEN])
{
	snprintf(name, NAME_LEN, "%08" PRIu64 ".jsonl", seq);
}

/* seq of "NNNNNNNN.jsonl", 0 for any other name. */
static uint64_t parse_name(const char *n)
{
	uint64_t seq = 0;
	size_t i = 0;

	for (; n[i] >= '0' && n[i] <= '9'; i++) {
		if (seq > UINT64_MAX / 10 - 1)
			return 0;
		seq = seq * 10 + (uint64_t)(n[i] - '0');
	}
	return i >= 8 && strcmp(n + i, ".jsonl") == 0 ? seq : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void push_seq(struct sched_events *e, uint64_t seq)
{
	e->seqs = vl_realloc(e->seqs, (e->nseqs + 1) * sizeof *e->seqs);
	e->seqs[e->nseqs++] = seq;
}

static int scan_dir(struct sched_events *e)
{
	int fd = dup(e->dirfd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(d))) {
		uint64_t seq = parse_name(de->d_name);
		if (seq)
			push_seq(e, seq);
	}
	closedir(d);
	if (e->nseqs)
		qsort(e->seqs, e->nseqs, sizeof *e->seqs, cmp_u64);
	return 0;
}

/* Remove the oldest files past keep, one at a time (unlink outside mu:
 * a reader holding one open keeps reading it). */
static void retain(struct sched_events *e)
{
	for (;;) {
		char name[NAME_LEN];

		pthread_mutex_lock(&e->mu);
		if (e->nseqs <= e->keep) {
			pthread_mutex_unlock(&e->mu);
			return;
		}
		file_name(e->seqs[0], name);
		memmove(e->seqs, e->seqs + 1, --e->nseqs * sizeof *e->seqs);
		pthread_mutex_unlock(&e->mu);
		if (unlinkat(e->dirfd, name, 0) < 0 && errno != ENOENT)
			vl_log(VL_LOG_WARN, "events: cannot remove %s: %s", name, strerror(errno));
	}
}

static void init_sync(struct sched_events *e)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&e->mu, NULL);
	pthread_mutex_init(&e->flush_mu, NULL);
}

static uint64_t hold_bound(uint64_t rotate_bytes)
{
	uint64_t h = rotate_bytes > HOLD_MAX / 4 ? HOLD_MAX : rotate_bytes * 4;
	return h < HOLD_MIN ? HOLD_MIN : h;
}

struct sched_events *sched_events_open(const char *dir, uint64_t rotate_bytes,
				       unsigned keep_files, char *err, size_t errlen)
{
	struct sched_events *e = vl_calloc(1, sizeof *e);

	e->dirfd = -1;
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		goto fail;
	e->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (e->dirfd < 0 || scan_dir(e) < 0)
		goto fail;
	e->rotate_bytes = rotate_bytes ? rotate_bytes : UINT64_MAX;
	e->hold = hold_bound(e->rotate_bytes);
	e->keep = keep_files ? keep_files : 1;
	/* a fresh file each start: the last one may end in a torn line */
	e->cur_seq = e->nseqs ? e->seqs[e->nseqs - 1] + 1 : 1;
	e->fd = -1;
	e->refs = 1;
	init_sync(e);
	retain(e);
	return e;
fail:
	snprintf(err, errlen, "events: %s: %s", dir, strerror(errno));
	if (e->dirfd >= 0)
		close(e->dirfd);
	free(e->seqs);
	free(e);
	return NULL;
}

/* ---- writer ---- */

/* Drop whole lines from the front of b (not a line already begun in the
 * file) until it holds at most max octets. Returns the lines dropped. */
static uint64_t trim(struct vl_buf *b, uint64_t max, bool keep_first)
{
	size_t from = 0, cut;
	uint64_t n = 0;

	if (b->len <= max)
		return 0;
	if (keep_first) {
		const char *nl = memchr(b->p, '\n', b->len);
		from = nl ? (size_t)(nl - b->p) + 1 : b->len;
	}
	for (cut = from; cut < b->len && b->len - (cut - from) > max; n++) {
		const char *nl = memchr(b->p + cut, '\n', b->len - cut);
		cut = nl ? (size_t)(nl - b->p) + 1 : b->len;
	}
	memmove(b->p + from, b->p + cut, b->len - cut);
	b->len -= cut - from;
	return n;
}

/* Under mu. */
static void count_drops(struct sched_events *e, uint64_t n)
{
	if (!n)
		return;
	if (!e->drops)
		vl_log(VL_LOG_ERROR, "events: more than %" PRIu64 " octets unwritten: "
		       "dropping the oldest lines", e->hold);
	e->drops += n;
}

void sched_events_append(struct sched_events *e, const char *lines, size_t len)
{
	pthread_mutex_lock(&e->mu);
	vl_buf_append(&e->pending, lines, len);
	/* bounded only while the disk refuses: a healthy log is flushed at
	 * every journal commit, and a burst must not cost lines */
	if (e->failing && e->pending.len > e->hold)
		count_drops(e, trim(&e->pending, e->hold, false));
	pthread_mutex_unlock(&e->mu);
}

void sched_events_append_buf(struct sched_events *e, struct vl_buf *b)
{
	pthread_mutex_lock(&e->mu);
	if (!e->pending.len && !e->failing) {
		struct vl_buf t = e->pending;
		e->pending = *b;
		*b = t;
		pthread_mutex_unlock(&e->mu);
		return;
	}
	pthread_mutex_unlock(&e->mu);
	sched_events_append(e, b->p, b->len);
	vl_buf_reset(b);
}

/* Octets of wbuf from off to write into the current file: whole lines,
 * stopping at the first line end past the rotation size. */
static size_t chunk_len(const struct sched_events *e, size_t off)
{
	size_t avail = e->wbuf.len - off;
	uint64_t room = e->rotate_bytes > e->cur_size ? e->rotate_bytes - e->cur_size : 1;

	if (room >= avail)
		return avail;
	const char *nl = memchr(e->wbuf.p + off + room - 1, '\n', avail - (room - 1));
	return nl ? (size_t)(nl - (e->wbuf.p + off)) + 1 : avail;
}

static int open_current(struct sched_events *e)
{
	char name[NAME_LEN];

	file_name(e->cur_seq, name);
	e->fd = openat(e->dirfd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (e->fd < 0)
		return -1;
	pthread_mutex_lock(&e->mu);
	push_seq(e, e->cur_seq);
	pthread_mutex_unlock(&e->mu);
	retain(e);
	return 0;
}

/* The current file is complete: sync it once (cheap: once a file) and
 * start the next. */
static void rotate(struct sched_events *e)
{
	if (fdatasync(e->fd) < 0)
		vl_log(VL_LOG_WARN, "events: fdatasync: %s", strerror(errno));
	close(e->fd);
	e->fd = -1;
	pthread_mutex_lock(&e->mu);
	e->cur_seq++;
	e->cur_size = 0;
	e->gen++;
	pthread_mutex_unlock(&e->mu);
}

/* Publish n more octets to readers. */
static void written(struct sched_events *e, size_t n, bool line_end)
{
	e->mid_line = !line_end;
	pthread_mutex_lock(&e->mu);
	e->cur_size += n;
	e->gen++;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

/* Write wbuf from *off; -1 with errno, *off past what was written. */
static int write_out(struct sched_events *e, size_t *off)
{
	while (*off < e->wbuf.len) {
		if (e->fd < 0 && open_current(e) < 0)
			return -1;
		size_t len = chunk_len(e, *off);
		ssize_t n = write(e->fd, e->wbuf.p + *off, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		*off += (size_t)n;
		written(e, (size_t)n, e->wbuf.p[*off - 1] == '\n');
		if (!e->mid_line && e->cur_size >= e->rotate_bytes)
			rotate(e);
	}
	return 0;
}

/* Keep what was not written for the next flush, within the bound. */
static void keep_unwritten(struct sched_events *e, size_t off, int error)
{
	vl_buf_consume(&e->wbuf, off);
	pthread_mutex_lock(&e->mu);
	if (!e->failing)
		vl_log(VL_LOG_ERROR, "events: writing the log: %s; holding %zu octets to retry",
		       strerror(error), e->wbuf.len + e->pending.len);
	e->failing = true;
	count_drops(e, trim(&e->wbuf, e->hold, e->mid_line));
	pthread_mutex_unlock(&e->mu);
}

static void recovered(struct sched_events *e)
{
	pthread_mutex_lock(&e->mu);
	if (e->failing)
		vl_log(VL_LOG_INFO, "events: writing the log again; %" PRIu64 " lines were "
		       "dropped meanwhile", e->drops);
	e->failing = false;
	e->drops = 0;
	pthread_mutex_unlock(&e->mu);
}

/* Take pending into wbuf: a swap, unless lines of a failed flush wait. */
static void take_pending(struct sched_events *e)
{
	pthread_mutex_lock(&e->mu);
	if (!e->wbuf.len) {
		struct vl_buf t = e->wbuf;
		e->wbuf = e->pending;
		e->pending = t;
	} else {
		vl_buf_append(&e->wbuf, e->pending.p, e->pending.len);
		vl_buf_reset(&e->pending);
		count_drops(e, trim(&e->wbuf, e->hold, e->mid_line));
	}
	pthread_mutex_unlock(&e->mu);
}

int sched_events_flush(struct sched_events *e)
{
	size_t off = 0;
	int rc;

	pthread_mutex_lock(&e->flush_mu);
	take_pending(e);
	rc = write_out(e, &off);
	if (rc < 0) {
		int error = errno;
		keep_unwritten(e, off, error);
		errno = error;
	} else {
		vl_buf_reset(&e->wbuf);
		/* kept up to a busy commit's lines: the buffers go round */
		vl_buf_shrink(&e->wbuf, 8u << 20);
		recovered(e);
	}
	pthread_mutex_unlock(&e->flush_mu);
	return rc;
}

static void unref(struct sched_events *e)
{
	pthread_mutex_lock(&e->mu);
	bool last = --e->refs == 0;
	pthread_mutex_unlock(&e->mu);
	if (!last)
		return;
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	pthread_mutex_destroy(&e->flush_mu);
	close(e->dirfd);   /* here: readers open files by it until the last goes */
	free(e->seqs);
	free(e);
}

void sched_events_close(struct sched_events *e)
{
	if (!e)
		return;
	if (sched_events_flush(e) < 0)
		vl_log(VL_LOG_ERROR, "events: closing with %zu octets unwritten: %s",
		       e->wbuf.len, strerror(errno));
	pthread_mutex_lock(&e->mu);
	atomic_store(&e->closed, true);
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	if (e->fd >= 0) {
		fdatasync(e->fd);
		close(e->fd);
	}
	vl_buf_free(&e->pending);
	vl_buf_free(&e->wbuf);
	unref(e);
}

/* ---- readers ---- */

struct sched_events_reader *sched_events_reader_open(struct sched_events *e,
						     const char *job, bool follow)
{
	struct sched_events_reader *r = vl_calloc(1, sizeof *r);
	struct vl_buf b;

	if (job) {
		vl_buf_init(&b);
		vl_buf_json_string(&b, job);
		vl_buf_append(&b, "", 1);
		r->needle = b.p;
		r->needle_len = b.len - 1;
	}
	r->e = e;
	r->follow = follow;
	r->fd = -1;
	r->max_lines = SIZE_MAX;
	vl_buf_init(&r->in);
	pthread_mutex_lock(&e->mu);
	e->refs++;
	r->seq = e->nseqs ? e->seqs[0] : e->cur_seq;
	r->end_seq = e->cur_seq;
	r->end_off = e->cur_size;
	pthread_mutex_unlock(&e->mu);
	return r;
}

void sched_events_reader_close(struct sched_events_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	vl_buf_free(&r->in);
	free(r->needle);
	for (size_t i = 0; i < r->ntypes; i++)
		free(r->types[i]);
	free(r->types);
	unref(r->e);
	free(r);
}

/* The job is the third key and string values escape every '"', so the
 * first ,"job": is the key itself. */
static bool job_matches(const struct sched_events_reader *r, const char *line, size_t len)
{
	static const char k[] = ",\"job\":";
	const char *p = memmem(line, len, k, sizeof k - 1);

	if (!p)
		return false;
	p += sizeof k - 1;
	size_t left = len - (size_t)(p - line);
	return left > r->needle_len && memcmp(p, r->needle, r->needle_len) == 0 &&
	       (p[r->needle_len] == ',' || p[r->needle_len] == '}');
}

/* Not an event line (a torn tail after a crash): skipped. */
static bool wanted(const struct sched_events_reader *r, const char *line, size_t len)
{
	if (line[0] != '{')
		return false;
	if (r->types) {
		size_t i = 0;
		while (i < r->ntypes && (len < strlen(r->types[i]) ||
					 memcmp(line, r->types[i], strlen(r->types[i]))))
			i++;
		if (i == r->ntypes)
			return false;
	}
	return !r->needle || job_matches(r, line, len);
}

/* Whole wanted lines from r->in into buf; a line longer than max goes out
 * in pieces (r->rest). */
static size_t emit(struct sched_events_reader *r, char *buf, size_t max)
{
	size_t pos = r->pos, n = 0;

	while (n < max && pos < r->in.len) {
		if (!r->rest && r->lines >= r->max_lines)
			break;
		if (r->rest) {
			size_t k = r->rest < max - n ? r->rest : max - n;
			memcpy(buf + n, r->in.p + pos, k);
			n += k, pos += k, r->rest -= k;
			continue;
		}
		const char *nl = memchr(r->in.p + pos, '\n', r->in.len - pos);
		if (!nl)
			break;
		size_t len = (size_t)(nl - (r->in.p + pos)) + 1;
		if (!wanted(r, r->in.p + pos, len))
			pos += len;
		else if (len > max - n && n)
			break;
		else {
			r->rest = len;
			r->cut_at = r->off - r->in.len + pos;
			r->lines++;
		}
	}
	r->pos = pos;
	return n;
}

/* Under mu: the oldest file after seq still there, or the current one. */
static uint64_t next_seq(const struct sched_events *e, uint64_t seq)
{
	for (size_t i = 0; i < e->nseqs; i++)
		if (e->seqs[i] > seq)
			return e->seqs[i];
	return e->cur_seq > seq ? e->cur_seq : seq;
}

struct view {
	uint64_t cur_seq, cur_size, next;
};

static void look(struct sched_events_reader *r, struct view *v)
{
	struct sched_events *e = r->e;

	pthread_mutex_lock(&e->mu);
	v->cur_seq = e->cur_seq;
	v->cur_size = e->cur_size;
	v->next = next_seq(e, r->seq);
	r->gen = e->gen;
	pthread_mutex_unlock(&e->mu);
}

/* How far r may read its file: the current one as far as flushed, an
 * older one to its end; without follow, no further than at open. */
static uint64_t limit(const struct sched_events_reader *r, const struct view *v)
{
	uint64_t lim = r->seq == v->cur_seq ? v->cur_size : UINT64_MAX;

	if (!r->follow && r->seq == r->end_seq && r->end_off < lim)
		lim = r->end_off;
	return lim;
}

/* Move on to the next file; a torn line at the end of the last is lost. */
static void next_file(struct sched_events_reader *r, uint64_t next)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->seq = next;
	r->off = 0;
	r->pos = 0;
	vl_buf_reset(&r->in);
}

static int open_file(struct sched_events_reader *r, const struct view *v)
{
	char name[NAME_LEN];

	file_name(r->seq, name);
	r->fd = openat(r->e->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (r->fd >= 0)
		return 1;
	if (errno != ENOENT || r->seq == v->cur_seq)
		return 0;   /* the current one, not written yet (or unreadable) */
	next_file(r, v->next);   /* removed by retention: go on */
	return 1;
}

/* Read more into r->in: > 0 octets read, 0 nothing more for now, -1 the
 * end (no follow). */
static long fill(struct sched_events_reader *r)
{
	struct view v;

	vl_buf_consume(&r->in, r->pos);   /* once a fill, not once a line */
	r->pos = 0;
	for (;;) {
		look(r, &v);
		if (!r->follow && r->seq > r->end_seq)
			return -1;
		if (r->fd < 0) {
			if (!open_file(r, &v))
				return r->follow ? 0 : -1;
			continue;
		}
		uint64_t lim = limit(r, &v);
		if (r->off < lim) {
			uint64_t want = lim - r->off < READ_CHUNK ? lim - r->off : READ_CHUNK;
			ssize_t n = pread(r->fd, vl_buf_reserve(&r->in, want), want, (off_t)r->off);
			if (n > 0) {
				r->in.len += (size_t)n, r->off += (uint64_t)n;
				return n;
			}
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (r->seq == v.cur_seq || (!r->follow && r->seq == r->end_seq))
			return r->follow ? 0 : -1;
		next_file(r, v.next);
	}
}

/* Wait until something is flushed, the log closes or deadline (monotonic
 * ms; UINT64_MAX: none). false on timeout. */
static bool wait_new(struct sched_events_reader *r, uint64_t deadline)
{
	struct sched_events *e = r->e;
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000),
			       .tv_nsec = (long)(deadline % 1000) * 1000000 };
	int rc = 0;

	pthread_mutex_lock(&e->mu);
	while (e->gen == r->gen && !atomic_load(&e->closed) && rc != ETIMEDOUT)
		rc = deadline == UINT64_MAX ? pthread_cond_wait(&e->cv, &e->mu)
					    : pthread_cond_timedwait(&e->cv, &e->mu, &ts);
	bool news = e->gen != r->gen || atomic_load(&e->closed);
	pthread_mutex_unlock(&e->mu);
	return news;
}

long sched_events_read(struct sched_events_reader *r, char *buf, size_t max,
		       int timeout_ms)
{
	size_t nlines;

	return sched_events_read_lines(r, buf, max, SIZE_MAX, &nlines, timeout_ms);
}

long sched_events_read_lines(struct sched_events_reader *r, char *buf, size_t max,
			     size_t max_lines, size_t *nlines, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : vl_now_ms() + (uint64_t)timeout_ms;

	r->max_lines = max_lines;
	r->lines = 0;
	*nlines = 0;
	if (!max || !max_lines)
		return 0;
	for (;;) {
		if (atomic_load(&r->e->closed))
			return -1;
		size_t n = emit(r, buf, max);
		if (n) {
			*nlines = r->lines;
			return (long)n;
		}
		long f = fill(r);
		if (f < 0)
			return -1;
		if (f == 0 && !wait_new(r, deadline))
			return 0;
	}
}

/* ---- positions ---- */

struct sched_events_pos sched_events_begin(struct sched_events *e)
{
	struct sched_events_pos p = { 0, 0 };

	pthread_mutex_lock(&e->mu);
	p.seq = e->nseqs ? e->seqs[0] : e->cur_seq;
	pthread_mutex_unlock(&e->mu);
	return p;
}

struct sched_events_pos sched_events_end(struct sched_events *e)
{
	struct sched_events_pos p;

	pthread_mutex_lock(&e->mu);
	p.seq = e->cur_seq;
	p.off = e->cur_size;
	pthread_mutex_unlock(&e->mu);
	return p;
}

/* "{\"type\":\"Delivery\"," as the format writes a line's start. */
static void set_types(struct sched_events_reader *r, const char *const *types, size_t n)
{
	r->types = vl_calloc(n ? n : 1, sizeof *r->types);
	r->ntypes = n;
	for (size_t i = 0; i < n; i++) {
		struct vl_buf b;
		vl_buf_init(&b);
		vl_buf_appends(&b, "{\"type\":");
		vl_buf_json_string(&b, types[i]);
		vl_buf_append(&b, ",", 2);
		r->types[i] = b.p;
	}
}

/* Under mu: where a reader asked for at starts, and the files it skips. */
static void place(struct sched_events *e, const struct sched_events_pos *at,
		  struct sched_events_reader *r, uint64_t *skipped)
{
	uint64_t oldest = e->nseqs ? e->seqs[0] : e->cur_seq;

	*skipped = 0;
	if (!at || !at->seq) {
		r->seq = e->cur_seq;
		r->off = e->cur_size;
	} else if (at->seq > e->cur_seq) {
		r->seq = oldest;   /* beyond the log: the folder was replaced */
	} else if (at->seq < oldest) {
		r->seq = oldest;   /* removed by retention */
		*skipped = oldest - at->seq;
	} else {
		r->seq = at->seq;
		r->off = at->off;
	}
}

struct sched_events_reader *sched_events_reader_open_at(struct sched_events *e,
							const struct sched_events_pos *at,
							const char *const *types, size_t ntypes,
							uint64_t *skipped)
{
	struct sched_events_reader *r = sched_events_reader_open(e, NULL, true);
	uint64_t sk;

	if (types)
		set_types(r, types, ntypes);
	pthread_mutex_lock(&e->mu);
	place(e, at, r, &sk);
	pthread_mutex_unlock(&e->mu);
	if (skipped)
		*skipped = sk;
	return r;
}

struct sched_events_reader *sched_events_reader_open_end(struct sched_events *e,
							 const char *job)
{
	struct sched_events_reader *r = sched_events_reader_open(e, job, true);
	uint64_t sk;

	pthread_mutex_lock(&e->mu);
	place(e, NULL, r, &sk);
	pthread_mutex_unlock(&e->mu);
	return r;
}

struct sched_events_pos sched_events_reader_pos(const struct sched_events_reader *r)
{
	struct sched_events_pos p = { r->seq, r->off - r->in.len + r->pos };

	if (r->rest)
		p.off = r->cut_at;
	return p;
}
