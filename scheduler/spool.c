/*
 * The spool: jobs received into tmp/, fsync'd, then renamed into jobs/.
 *
 * Recipient table ("rcpt"): a 24-octet header ("VLRCPT02", u64 count,
 * u64 offset of the index; written last so a torn table is recognisable),
 * then one record per recipient: u32 length of the rest, then email,
 * name, u32 nsubs and nsubs key/value pairs, each string as u32 length +
 * octets + NUL; then the index, 8-aligned: u64 offset of each record.
 * Little-endian, as the host. A reader maps the table, index included:
 * a ten-million-recipient job costs page cache, not heap. Tables of the
 * first format ("VLRCPT01", 16-octet header, no index) are still read,
 * their index built by a scan.
 *
 * While a job comes in, its duplicate set and record offsets live in the
 * heap up to FMAP_HEAP_MAX octets each (a transactional job's intake
 * creates, maps, unmaps and removes no file for them), and beyond in
 * files of tmp/<id>/ mapped shared (struct fmap): the kernel may write a
 * ten-million-recipient job's out and drop them under pressure.
 */
#include "spool_int.h"

#include "../common/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define TABLE_MAGIC "VLRCPT02"
#define TABLE_HEAP_MAX (64u << 10)   /* tables up to this are read, not mapped */
#define TABLE_MAGIC_V1 "VLRCPT01"
#define HDR_LEN 24
#define HDR_LEN_V1 16
#define WBUF (1u << 20)          /* write-behind buffer of the table */

struct sched_spool {
	char *dir, *jobs, *tmp, *ilog_dir;
	int jobs_fd;             /* for syncfs (sched_spool_sync) */
	struct sched_ilog *ilog; /* small jobs' group commit, once started */
};

/* The names in a job's directory (sched_spool_path; intake writes the
 * rcpt and job.json of tmp/<id>/ by the same names). */
static const char *const file_names[] = {
	[SCHED_SPOOL_JOB] = "job.json", [SCHED_SPOOL_RCPT] = "rcpt",
	[SCHED_SPOOL_JOURNAL] = "journal", [SCHED_SPOOL_CONTROL] = "control",
	[SCHED_SPOOL_DONE] = "done.json", [SCHED_SPOOL_MESSAGE] = "message",
	[SCHED_SPOOL_FEEDBACK] = "feedback",
};

static char *path_join(const char *a, const char *b)
{
	char *p;
	if (asprintf(&p, "%s/%s", a, b) < 0)
		abort();
	return p;
}

/* rm -r of one job directory (flat: files only). */
static void remove_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *p = path_join(path, e->d_name);
		unlink(p);
		free(p);
	}
	closedir(d);
	rmdir(path);
}

static int mkdir_p(const char *path)
{
	return mkdir(path, 0750) == 0 || errno == EEXIST ? 0 : -1;
}

static int write_file(const char *path, const char *data, size_t len, bool sync)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);

	if (fd < 0)
		return -1;
	if (vl_write_all(fd, data, len) < 0 || (sync && fsync(fd) < 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/* ---- the intake log's replay (ilog.c reads, this writes) ---- */

static int write_files(const char *dir, const struct sched_ilog_rec *r)
{
	for (int i = 0; i < r->nfiles; i++) {
		char *p = path_join(dir, file_names[r->f[i].which]);
		int rc = write_file(p, r->f[i].p, r->f[i].n, false);
		free(p);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* A logged job: its files rewritten from the record (they may be torn:
 * none was fsync'd), beside its journal and the rest if it is in jobs/,
 * else made in tmp/ and moved there. A forgotten one removed. */
static int replay_one(void *arg, const struct sched_ilog_rec *r)
{
	struct sched_spool *s = arg;
	char dst[PATH_MAX], tmp[PATH_MAX];
	struct stat st;

	if (sched_spool_path(s, r->id, SCHED_SPOOL_DIR, dst, sizeof dst) < 0 ||
	    sched_spool_path(s, r->id, SCHED_SPOOL_TMP, tmp, sizeof tmp) < 0)
		return -1;
	bool there = stat(dst, &st) == 0;
	if (r->kind == SCHED_ILOG_FORGET) {
		if (there && rename(dst, tmp) == 0)
			remove_dir(tmp);
		return 0;
	}
	if (there)
		return write_files(dst, r);
	remove_dir(tmp);
	if (mkdir(tmp, 0750) < 0 || write_files(tmp, r) < 0 || rename(tmp, dst) < 0)
		return -1;
	return 0;
}

int sched_spool_ilog_start(struct sched_spool *s, uint64_t checkpoint_ms, char *err,
			   size_t errlen)
{
	if (s->ilog)
		return 0;
	s->ilog = sched_ilog_open(s->ilog_dir, s->jobs_fd, checkpoint_ms, err, errlen);
	return s->ilog ? 0 : -1;
}

double sched_spool_ilog_clean(const struct sched_spool *s)
{
	return s->ilog ? sched_ilog_clean(s->ilog) : INFINITY;
}

struct sched_spool *sched_spool_open(const char *data_dir, char *err, size_t errlen)
{
	struct sched_spool *s = vl_calloc(1, sizeof *s);

	s->jobs_fd = -1;
	s->dir = vl_strdup(data_dir);
	s->jobs = path_join(data_dir, "jobs");
	s->tmp = path_join(data_dir, "tmp");
	s->ilog_dir = path_join(data_dir, "ilog");
	if (mkdir_p(s->dir) < 0 || mkdir_p(s->jobs) < 0 || mkdir_p(s->tmp) < 0) {
		snprintf(err, errlen, "cannot create the spool in %s: %s", data_dir,
			 strerror(errno));
		sched_spool_close(s);
		return NULL;
	}
	vl_fsync_dir(s->dir);      /* jobs/ and tmp/ themselves must survive */
	s->jobs_fd = open(s->jobs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = opendir(s->tmp);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *p = path_join(s->tmp, e->d_name);
		vl_log(VL_LOG_INFO, "spool: removing %s, left by an interrupted intake", p);
		remove_dir(p);
		free(p);
	}
	if (d)
		closedir(d);
	/* after tmp/ is clear: a logged job is remade through it */
	if (sched_ilog_recover(s->ilog_dir, s->jobs_fd, replay_one, s, err, errlen) < 0) {
		sched_spool_close(s);
		return NULL;
	}
	return s;
}

void sched_spool_close(struct sched_spool *s)
{
	if (!s)
		return;
	sched_ilog_close(s->ilog);
	if (s->jobs_fd >= 0)
		close(s->jobs_fd);
	free(s->dir);
	free(s->jobs);
	free(s->tmp);
	free(s->ilog_dir);
	free(s);
}

uint64_t sched_spool_free_bytes(const struct sched_spool *s)
{
	struct statvfs v;

	if (statvfs(s->dir, &v) < 0)
		return 0;
	return (uint64_t)v.f_bavail * v.f_frsize;
}

static uint64_t dir_bytes(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	uint64_t n = 0;
	struct stat st;

	while (d && (e = readdir(d))) {
		if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0)
			n += (uint64_t)st.st_blocks * 512;
	}
	if (d)
		closedir(d);
	return n;
}

uint64_t sched_spool_used_bytes(const struct sched_spool *s)
{
	DIR *d = opendir(s->jobs);
	struct dirent *e;
	uint64_t n = 0;

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *p = path_join(s->jobs, e->d_name);
		n += dir_bytes(p);
		free(p);
	}
	if (d)
		closedir(d);
	return n;
}

int sched_spool_detach(struct sched_spool *s, const char *id)
{
	char from[PATH_MAX], to[PATH_MAX];

	if (sched_spool_path(s, id, SCHED_SPOOL_DIR, from, sizeof from) < 0 ||
	    sched_spool_path(s, id, SCHED_SPOOL_TMP, to, sizeof to) < 0)
		return -1;
	remove_dir(to);          /* nothing is there: ids are never reused */
	return rename(from, to);
}

int sched_spool_purge(struct sched_spool *s, const char *id)
{
	char p[PATH_MAX];

	if (sched_spool_path(s, id, SCHED_SPOOL_TMP, p, sizeof p) < 0)
		return -1;
	remove_dir(p);
	return vl_fsync_dir(s->jobs);  /* the detaching rename, durable */
}

int sched_spool_remove(struct sched_spool *s, const char *id)
{
	return sched_spool_detach(s, id) < 0 ? -1 : sched_spool_purge(s, id);
}

uint64_t sched_spool_job_bytes(const struct sched_spool *s, const char *id)
{
	char p[PATH_MAX];

	return sched_spool_path(s, id, SCHED_SPOOL_DIR, p, sizeof p) < 0 ? 0 : dir_bytes(p);
}

bool sched_id_valid(const char *s, size_t n)
{
	if (n != SCHED_ID_LEN || s[12] != '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (i != 12 && !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int sched_spool_path(const struct sched_spool *s, const char *id, enum sched_spool_file f,
		     char *out, size_t outlen)
{
	int n = -1;

	if (outlen)
		out[0] = '\0';
	if (!id || !sched_id_valid(id, strnlen(id, SCHED_ID_LEN + 1)) ||
	    (unsigned)f > SCHED_SPOOL_FEEDBACK) {
		errno = EINVAL;
		return -1;
	}
	if (f == SCHED_SPOOL_DIR || f == SCHED_SPOOL_TMP)
		n = snprintf(out, outlen, "%s/%s", f == SCHED_SPOOL_TMP ? s->tmp : s->jobs, id);
	else
		n = snprintf(out, outlen, "%s/%s/%s", s->jobs, id, file_names[f]);
	if (n < 0 || (size_t)n >= outlen) {
		if (outlen)
			out[0] = '\0';
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

const char *sched_spool_jobs_dir(const struct sched_spool *s)
{
	return s->jobs;
}

int sched_spool_sync(struct sched_spool *s)
{
	if (s->jobs_fd < 0) {
		errno = EBADF;
		return -1;
	}
	return syncfs(s->jobs_fd);
}

void sched_new_id(char id[SCHED_ID_LEN + 1])
{
	static _Atomic uint32_t seq;
	uint64_t ms = (uint64_t)(vl_wall_time() * 1000);
	uint32_t r;

	/* 48 bits of milliseconds sort the ids by time; the low bits mix a
	 * process-wide sequence with urandom so ids never collide. */
	if (getentropy(&r, sizeof r) < 0)
		r = (uint32_t)vl_now_ns();
	r = (r & 0xffff0000u) | (++seq & 0xffffu);
	snprintf(id, SCHED_ID_LEN + 1, "%012llx-%08x",
		 (unsigned long long)(ms & 0xffffffffffffull), r);
}

/* ---- intake ---- */

/* 8 octets a slot keep the duplicate check of a million recipients to
 * 16 MB; a tag match is confirmed against the stored address, found
 * through index. */
struct slot {
	uint32_t tag;            /* 0 = empty */
	uint32_t index;          /* recipient number, 0-based */
};

/* A growable array: in the heap while small, then in a file mapped shared
 * (intake's scratch). */
#define FMAP_HEAP_MAX (256u << 10)

struct fmap {
	int fd;                  /* -1: in the heap (or nothing yet) */
	char *p;
	size_t cap;              /* octets mapped (allocated) */
	const char *dir;         /* where its file goes, once it needs one */
	char name[24];
};

/* The file's octets up to cap allocated, not only its size set: a page
 * written through the mapping past what the file system can hold would
 * be a SIGBUS; a full disk is ENOSPC here instead. */
static int reserve(int fd, size_t cap)
{
	if (fallocate(fd, 0, 0, (off_t)cap) == 0)
		return 0;
	return errno == EOPNOTSUPP ? ftruncate(fd, (off_t)cap) : -1;
}

/* The file dir/name, cap octets of it mapped, the first copy of them
 * from old (NULL: zeroes). */
static int fmap_file(struct fmap *m, size_t cap, const void *old, size_t copy)
{
	char *path = path_join(m->dir, m->name);

	m->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	free(path);
	if (m->fd < 0 || reserve(m->fd, cap) < 0)
		return -1;
	void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (p == MAP_FAILED)
		return -1;
	if (copy)
		memcpy(p, old, copy);
	m->p = p;
	m->cap = cap;
	return 0;
}

static int fmap_open(struct fmap *m, const char *dir, const char *name, size_t cap)
{
	m->p = NULL;
	m->cap = 0;
	m->fd = -1;
	m->dir = dir;
	snprintf(m->name, sizeof m->name, "%s", name);
	if (cap > FMAP_HEAP_MAX)
		return fmap_file(m, cap, NULL, 0);
	m->p = vl_calloc(1, cap);
	m->cap = cap;
	return 0;
}

/* Grown to cap octets (new ones zero); -1 with errno (ENOSPC...). */
static int fmap_grow(struct fmap *m, size_t cap)
{
	if (m->fd < 0 && cap <= FMAP_HEAP_MAX) {
		m->p = vl_realloc(m->p, cap);
		memset(m->p + m->cap, 0, cap - m->cap);
		m->cap = cap;
		return 0;
	}
	if (m->fd < 0) {         /* out of the heap into its file */
		char *heap = m->p;
		size_t n = m->cap;
		int rc = fmap_file(m, cap, heap, n);
		free(heap);
		if (rc < 0)
			m->p = NULL;
		return rc;
	}
	if (reserve(m->fd, cap) < 0)
		return -1;
	void *p = mremap(m->p, m->cap, cap, MREMAP_MAYMOVE);
	if (p == MAP_FAILED)
		return -1;
	m->p = p;
	m->cap = cap;
	return 0;
}

static void fmap_close(struct fmap *m)
{
	if (m->fd < 0)
		free(m->p);
	else if (m->p)
		munmap(m->p, m->cap);
	if (m->fd >= 0)
		close(m->fd);
	m->p = NULL;
	m->fd = -1;
}

/* Its file removed, if it has one. */
static void fmap_unlink(struct fmap *m)
{
	bool file = m->fd >= 0;

	fmap_close(m);
	if (file && m->dir) {
		char *p = path_join(m->dir, m->name);
		unlink(p);
		free(p);
	}
}

struct sched_intake {
	struct sched_spool *s;
	char id[SCHED_ID_LEN + 1];
	char *dir;
	int fd;
	int msg_fd;              /* tmp/<id>/message, or -1 */
	uint64_t flushed;        /* octets already written to fd */
	struct vl_buf wbuf;
	struct vl_buf scratch;
	size_t count;
	struct fmap setm, offm;  /* files "dedup" and "index" in dir */
	struct slot *set;        /* open addressing on the address hash */
	size_t setcap;
	uint64_t *off;           /* record offset of each recipient */
	size_t offcap;
	unsigned setgen;         /* the dedup file's generation (growing) */
};

/* A storage failure the API answers 503: logged here with the path and
 * the reason, since the client's answer is no operator's log. Returns
 * errno, kept. */
static int spool_err(const char *what, const char *path)
{
	int e = errno;

	vl_log(VL_LOG_ERROR, "spool: %s %s: %s", what, path, strerror(e));
	return e ? e : EIO;
}

struct sched_intake *sched_intake_begin(struct sched_spool *s, const char *id,
					char *err, size_t errlen)
{
	struct sched_intake *in = vl_calloc(1, sizeof *in);
	char dir[PATH_MAX];

	in->fd = in->msg_fd = in->setm.fd = in->offm.fd = -1;
	if (sched_spool_path(s, id, SCHED_SPOOL_TMP, dir, sizeof dir) < 0) {
		snprintf(err, errlen, "cannot receive job %.40s: %s", id, strerror(errno));
		goto fail;
	}
	in->s = s;
	snprintf(in->id, sizeof in->id, "%s", id);
	in->dir = vl_strdup(dir);
	if (mkdir(in->dir, 0750) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", in->dir, strerror(errno));
		goto fail;
	}
	char *p = path_join(in->dir, file_names[SCHED_SPOOL_RCPT]);
	in->fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	free(p);
	if (in->fd < 0) {
		snprintf(err, errlen, "cannot create the recipient table: %s", strerror(errno));
		goto fail;
	}
	vl_buf_init(&in->wbuf);
	vl_buf_init(&in->scratch);
	vl_buf_append(&in->wbuf, (char[HDR_LEN]){ 0 }, HDR_LEN);  /* the header: written last */
	in->setcap = 1024;
	in->offcap = 512;
	if (fmap_open(&in->setm, in->dir, "dedup.0", in->setcap * sizeof *in->set) < 0 ||
	    fmap_open(&in->offm, in->dir, "index", in->offcap * sizeof *in->off) < 0) {
		snprintf(err, errlen, "cannot map the intake's index in %s: %s", in->dir,
			 strerror(errno));
		goto fail;
	}
	in->set = (struct slot *)in->setm.p;
	in->off = (uint64_t *)in->offm.p;
	return in;
fail:
	vl_log(VL_LOG_ERROR, "spool: %s", err);
	sched_intake_abort(in);
	return NULL;
}

/* The duplicate key: the address with its domain lower-cased (local parts
 * are case-sensitive by the letter of RFC 5321). */
static uint64_t addr_hash(const char *a, size_t n)
{
	const char *at = memrchr(a, '@', n);
	size_t local = at ? (size_t)(at - a) + 1 : n;
	uint64_t h = vl_hash_lower(vl_hash(a, local), a + local, n - local);

	h ^= h >> 29;
	return h ? h : 1;
}

static bool addr_equal(const char *a, size_t an, const char *b, size_t bn)
{
	const char *at = memrchr(a, '@', an);
	size_t dom = at ? (size_t)(at - a) : an;

	if (an != bn || memcmp(a, b, dom) != 0)
		return false;
	return strncasecmp(a + dom, b + dom, an - dom) == 0;
}

static void put32(struct vl_buf *b, uint32_t v)
{
	vl_buf_append(b, &v, 4);
}

static void put_str(struct vl_buf *b, const char *s, size_t n)
{
	put32(b, (uint32_t)n);
	vl_buf_append(b, s, n);
	vl_buf_append(b, "", 1);
}

static int flush(struct sched_intake *in)
{
	size_t done = 0;

	while (done < in->wbuf.len) {
		ssize_t w = pwrite(in->fd, in->wbuf.p + done, in->wbuf.len - done,
				   (off_t)(in->flushed + done));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)w;
	}
	in->flushed += done;
	in->wbuf.len = 0;
	return 0;
}

/* The email of the record at off, wherever it is (file or buffer). */
static int email_at(struct sched_intake *in, uint64_t off, const char **e, size_t *n)
{
	if (off >= in->flushed) {
		const char *p = in->wbuf.p + (off - in->flushed) + 4;
		uint32_t len;
		memcpy(&len, p, 4);
		*e = p + 4;
		*n = len;
		return 0;
	}
	uint32_t hdr[2];
	if (pread(in->fd, hdr, sizeof hdr, (off_t)off) != sizeof hdr)
		return -1;
	vl_buf_reset(&in->scratch);
	char *dst = vl_buf_reserve(&in->scratch, hdr[1]);
	if (pread(in->fd, dst, hdr[1], (off_t)off + 8) != (ssize_t)hdr[1])
		return -1;
	*e = dst;
	*n = hdr[1];
	return 0;
}

static uint32_t tag_of(uint64_t h)
{
	uint32_t t = (uint32_t)(h >> 32);
	return t ? t : 1;
}

/* The tag also picks the slot, so growing needs no address re-read. The
 * bigger set is a new file: both are mapped while it fills. */
static int set_grow(struct sched_intake *in)
{
	size_t cap = in->setcap * 2;
	struct fmap nm;
	char name[32];

	snprintf(name, sizeof name, "dedup.%u", in->setgen + 1);
	if (fmap_open(&nm, in->dir, name, cap * sizeof *in->set) < 0) {
		fmap_close(&nm);
		return -1;
	}
	struct slot *n = (struct slot *)nm.p;
	for (size_t i = 0; i < in->setcap; i++) {
		if (!in->set[i].tag)
			continue;
		size_t j = in->set[i].tag & (cap - 1);
		while (n[j].tag)
			j = (j + 1) & (cap - 1);
		n[j] = in->set[i];
	}
	fmap_unlink(&in->setm);
	in->setgen++;
	in->setm = nm;
	in->set = n;
	in->setcap = cap;
	return 0;
}

/* 1 and *first if r's address is there already; else claims its slot. */
static int dedup(struct sched_intake *in, const struct sched_rcpt *r, size_t *first)
{
	uint64_t h = addr_hash(r->email, r->email_len);
	uint32_t tag = tag_of(h);
	size_t j = tag & (in->setcap - 1);

	for (; in->set[j].tag; j = (j + 1) & (in->setcap - 1)) {
		const char *e;
		size_t n;
		if (in->set[j].tag != tag)
			continue;
		if (email_at(in, in->off[in->set[j].index], &e, &n) < 0)
			return -1;
		if (addr_equal(r->email, r->email_len, e, n)) {
			*first = in->set[j].index;
			return 1;
		}
	}
	in->set[j] = (struct slot){ tag, (uint32_t)in->count };
	return 0;
}

int sched_intake_add(struct sched_intake *in, const struct sched_rcpt *r, size_t *first)
{
	int d;

	if (in->count >= UINT32_MAX - 1) {
		errno = EFBIG;
		return -1;
	}
	if ((in->count + 1) * 2 > in->setcap && set_grow(in) < 0) {
		errno = spool_err("cannot grow the duplicate set in", in->dir);
		return -1;
	}
	if ((d = dedup(in, r, first)) != 0)
		return d;
	if (in->count == in->offcap) {
		if (fmap_grow(&in->offm, in->offcap * 2 * sizeof *in->off) < 0) {
			errno = spool_err("cannot grow the index in", in->dir);
			return -1;
		}
		in->offcap *= 2;
		in->off = (uint64_t *)in->offm.p;
	}
	in->off[in->count] = in->flushed + in->wbuf.len;
	size_t start = in->wbuf.len;
	put32(&in->wbuf, 0);
	put_str(&in->wbuf, r->email, r->email_len);
	put_str(&in->wbuf, r->name ? r->name : "", r->name ? r->name_len : 0);
	put32(&in->wbuf, (uint32_t)r->nsubs);
	for (size_t i = 0; i < r->nsubs; i++) {
		put_str(&in->wbuf, r->keys[i], r->klens[i]);
		put_str(&in->wbuf, r->vals[i], r->vlens[i]);
	}
	uint32_t len = (uint32_t)(in->wbuf.len - start - 4);
	memcpy(in->wbuf.p + start, &len, 4);
	in->count++;
	if (in->wbuf.len >= WBUF && flush(in) < 0) {
		errno = spool_err("cannot write the recipient table in", in->dir);
		return -1;
	}
	return 0;
}

size_t sched_intake_count(const struct sched_intake *in)
{
	return in->count;
}


/* The intake's scratch files: not part of the job. */
static void drop_scratch(struct sched_intake *in)
{
	fmap_unlink(&in->setm);
	fmap_unlink(&in->offm);
}

/* The records, then the index (8-aligned), then the header; the scratch
 * files go. */
static int finish_table(struct sched_intake *in, bool sync)
{
	char hdr[HDR_LEN];
	uint64_t n = in->count, at;

	if (flush(in) < 0)
		return -1;
	at = (in->flushed + 7) & ~(uint64_t)7;
	if (at > in->flushed && pwrite(in->fd, "\0\0\0\0\0\0\0", at - in->flushed,
					(off_t)in->flushed) != (ssize_t)(at - in->flushed))
		return -1;
	for (size_t done = 0; done < n * 8;) {
		ssize_t w = pwrite(in->fd, (const char *)in->off + done, n * 8 - done,
				   (off_t)(at + done));
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	memcpy(hdr, TABLE_MAGIC, 8);
	memcpy(hdr + 8, &n, 8);
	memcpy(hdr + 16, &at, 8);
	if (pwrite(in->fd, hdr, HDR_LEN, 0) != HDR_LEN || (sync && fsync(in->fd) < 0))
		return -1;
	drop_scratch(in);
	return 0;
}

int sched_intake_message(struct sched_intake *in, const void *p, size_t n)
{
	if (in->msg_fd >= 0) {
		errno = EEXIST;
		return -1;
	}
	char *path = path_join(in->dir, file_names[SCHED_SPOOL_MESSAGE]);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0 || vl_write_all(fd, p, n) < 0) {
		errno = spool_err("cannot write", path);
		if (fd >= 0)
			close(fd);
		free(path);
		return -1;
	}
	free(path);
	in->msg_fd = fd;
	return 0;
}

/* The size of the file behind fd; -1 when unknown. */
static long long fd_size(int fd)
{
	struct stat st;
	return fstat(fd, &st) < 0 ? -1 : (long long)st.st_size;
}

/* Small enough for the intake log: its record holds the job's files. */
static bool loggable(struct sched_intake *in, size_t json_len)
{
	long long r = fd_size(in->fd), m = in->msg_fd >= 0 ? fd_size(in->msg_fd) : 0;
	return in->s->ilog && r >= 0 && m >= 0 &&
	       (unsigned long long)r + (unsigned long long)m + json_len <= SCHED_ILOG_MAX;
}

/* The file behind fd, whole, read back into b (the page cache's). */
static int read_back(int fd, struct vl_buf *b)
{
	long long n = fd_size(fd);
	if (n < 0)
		return -1;
	vl_buf_reset(b);
	char *p = vl_buf_reserve(b, (size_t)n);
	if (pread(fd, p, (size_t)n, 0) != (ssize_t)n) {
		errno = errno ? errno : EIO;
		return -1;
	}
	b->len = (size_t)n;
	return 0;
}

/* The job's record (its files) durable in the intake log. */
static int log_put(struct sched_intake *in, const char *json, size_t len,
		   struct sched_ilog_wait *w, struct vl_buf *rec)
{
	struct vl_buf rcpt, msg;
	struct sched_ilog_rec r = { .kind = SCHED_ILOG_JOB };
	int rc = -1;

	vl_buf_init(&rcpt);
	vl_buf_init(&msg);
	snprintf(r.id, sizeof r.id, "%s", in->id);
	if (read_back(in->fd, &rcpt) == 0 && (in->msg_fd < 0 || read_back(in->msg_fd, &msg) == 0)) {
		r.f[r.nfiles++] = (struct sched_ilog_file){ SCHED_SPOOL_JOB, json, (uint32_t)len };
		r.f[r.nfiles++] = (struct sched_ilog_file){ SCHED_SPOOL_RCPT, rcpt.p, (uint32_t)rcpt.len };
		if (in->msg_fd >= 0)
			r.f[r.nfiles++] = (struct sched_ilog_file){ SCHED_SPOOL_MESSAGE, msg.p,
							     (uint32_t)msg.len };
		sched_ilog_encode(rec, &r);
		rc = sched_ilog_put(in->s->ilog, rec->p, rec->len, w);
	}
	int e = errno;
	vl_buf_free(&rcpt);
	vl_buf_free(&msg);
	errno = e;
	return rc;
}

/* Its move into jobs/ failed after its record was logged: the client is
 * told the job failed, so a replay must not bring it back. */
static void log_forget(struct sched_intake *in)
{
	struct sched_ilog_rec r = { .kind = SCHED_ILOG_FORGET };
	struct sched_ilog_wait w;
	struct vl_buf b;

	vl_buf_init(&b);
	snprintf(r.id, sizeof r.id, "%s", in->id);
	sched_ilog_encode(&b, &r);
	if (sched_ilog_put(in->s->ilog, b.p, b.len, &w) == 0)
		sched_ilog_done(in->s->ilog, &w);
	else
		vl_log(VL_LOG_ERROR, "spool: job %s: cannot log that it is void: %s; a restart "
		       "before the next checkpoint would restore it", in->id, strerror(errno));
	vl_buf_free(&b);
}

/* The files complete before the move, each fsync'd when fs. 0, or errno. */
static int files_ready(struct sched_intake *in, const char *meta, const char *json, size_t len,
		       bool fs)
{
	if (fs && fsync(in->fd) < 0)
		return spool_err("cannot sync the recipient table in", in->dir);
	if (fs && in->msg_fd >= 0 && fsync(in->msg_fd) < 0)
		return spool_err("cannot sync the message in", in->dir);
	if (write_file(meta, json, len, fs) < 0)
		return spool_err("cannot write", meta);
	if (fs && vl_fsync_dir(in->dir) < 0)
		return spool_err("cannot sync", in->dir);
	return 0;
}

/* Both commits: files complete (and fsync'd when sync), job.json last,
 * the directory renamed into jobs/ (and the rename made durable). A small
 * job (sync, the intake log started) is made durable by its record in the
 * log instead, before the rename: no fsync of its own. */
static int commit(struct sched_intake *in, const char *job_json, size_t len, bool sync)
{
	char *meta = path_join(in->dir, file_names[SCHED_SPOOL_JOB]), dst[PATH_MAX];
	int rc = -1, e = 0;
	struct sched_ilog_wait w;
	struct vl_buf rec;
	bool logged = false, fs = sync;

	vl_buf_init(&rec);
	if (sched_spool_path(in->s, in->id, SCHED_SPOOL_DIR, dst, sizeof dst) < 0) {
		e = spool_err("cannot name the directory of job", in->id);
	} else if (finish_table(in, false) < 0) {
		e = spool_err("cannot write the recipient table in", in->dir);
	} else {
		logged = sync && loggable(in, len);
		fs = sync && !logged;
		e = files_ready(in, meta, job_json, len, fs);
	}
	if (!e && logged && log_put(in, job_json, len, &w, &rec) < 0) {
		logged = false;     /* not in the log: nothing to undo there */
		e = spool_err("cannot log the job in", in->s->ilog_dir);
	} else if (!e && rename(in->dir, dst) < 0) {
		e = spool_err("cannot move the job to", dst);
		if (logged)
			log_forget(in);
	} else if (!e && fs && (vl_fsync_dir(in->s->jobs) < 0 || vl_fsync_dir(in->s->tmp) < 0)) {
		e = spool_err("cannot sync", in->s->jobs);
		rename(dst, in->dir);
	} else if (!e) {
		rc = 0;
	}
	if (logged)
		sched_ilog_done(in->s->ilog, &w);
	vl_buf_free(&rec);
	free(meta);
	sched_intake_abort(in);   /* frees; removes tmp/<id> if it is still there */
	errno = e;
	return rc;
}

int sched_intake_commit(struct sched_intake *in, const char *job_json, size_t len)
{
	return commit(in, job_json, len, true);
}

int sched_intake_commit_nosync(struct sched_intake *in, const char *job_json, size_t len)
{
	return commit(in, job_json, len, false);
}

void sched_intake_abort(struct sched_intake *in)
{
	if (!in)
		return;
	if (in->fd >= 0)
		close(in->fd);
	if (in->msg_fd >= 0)
		close(in->msg_fd);
	if (in->dir)
		remove_dir(in->dir);
	free(in->dir);
	vl_buf_free(&in->wbuf);
	vl_buf_free(&in->scratch);
	fmap_close(&in->setm);
	fmap_close(&in->offm);
	free(in);
}

/* ---- reading a table ---- */

struct sched_table {
	const char *map;
	bool heap;               /* map is a copy in the heap (a small table) */
	size_t len;
	size_t count;
	size_t end;              /* where the records end */
	const uint64_t *off;     /* record offsets: the mapped index */
	uint64_t *scanned;       /* ... or, first format, found by one scan */
};

/* A first-format table: its offsets by a scan. */
static int scan_v1(struct sched_table *t)
{
	uint64_t o = HDR_LEN_V1;

	t->scanned = vl_malloc((t->count + 1) * sizeof *t->scanned);
	for (size_t i = 0; i < t->count; i++) {
		uint32_t n;
		if (o + 4 > t->len)
			return -1;
		memcpy(&n, t->map + o, 4);
		t->scanned[i] = o;
		o += 4 + (uint64_t)n;
	}
	t->off = t->scanned;
	t->end = t->len;
	return o > t->len ? -1 : 0;
}

static int index_v2(struct sched_table *t)
{
	uint64_t at;

	if (t->len < HDR_LEN)
		return -1;
	memcpy(&at, t->map + 16, 8);
	if (at < HDR_LEN || (at & 7) || at > t->len || (t->len - at) / 8 < t->count)
		return -1;
	t->off = (const uint64_t *)(t->map + at);
	t->end = at;
	return 0;
}

struct sched_table *sched_table_open(struct sched_spool *s, const char *id)
{
	char path[PATH_MAX];
	struct stat st;
	struct sched_table *t = NULL;

	if (sched_spool_path(s, id, SCHED_SPOOL_RCPT, path, sizeof path) < 0)
		return NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < HDR_LEN_V1)
		goto out;
	t = vl_calloc(1, sizeof *t);
	t->len = (size_t)st.st_size;
	/* A small table (a transactional job's) is read: a mapping's munmap
	 * when the job goes is a TLB shootdown on every core (an IPI each, a
	 * VM exit each on a virtual machine), one per job */
	if (t->len <= TABLE_HEAP_MAX) {
		char *p = vl_malloc(t->len);
		t->heap = true;
		t->map = p;
		if (pread(fd, p, t->len, 0) != (ssize_t)t->len)
			goto bad;
	} else {
		t->map = mmap(NULL, t->len, PROT_READ, MAP_PRIVATE, fd, 0);
	}
	if (t->map == MAP_FAILED)
		goto bad;
	memcpy(&t->count, t->map + 8, 8);
	if (!memcmp(t->map, TABLE_MAGIC, 8) ? index_v2(t) < 0 :
	    !memcmp(t->map, TABLE_MAGIC_V1, 8) ? scan_v1(t) < 0 : true)
		goto bad;
	goto out;
bad:
	vl_log(VL_LOG_ERROR, "spool: the recipient table of job %s is damaged", id);
	if (t->map != MAP_FAILED)
		sched_table_close(t);
	else
		free(t);
	t = NULL;
out:
	close(fd);
	return t;
}

void sched_table_close(struct sched_table *t)
{
	if (!t)
		return;
	if (t->heap)
		free((void *)t->map);
	else if (t->map && t->map != MAP_FAILED)
		munmap((void *)t->map, t->len);
	free(t->scanned);
	free(t);
}

size_t sched_table_count(const struct sched_table *t)
{
	return t->count;
}

/* A string field at *p within [*p, end): length, octets, NUL. */
static int get_str(const char **p, const char *end, const char **s, size_t *n)
{
	uint32_t len;

	if (end - *p < 4)
		return -1;
	memcpy(&len, *p, 4);
	if ((size_t)(end - *p - 4) < (size_t)len + 1 || (*p)[4 + len] != '\0')
		return -1;
	*s = *p + 4;
	*n = len;
	*p += 4 + len + 1;
	return 0;
}

int sched_table_get(const struct sched_table *t, size_t i, struct sched_rcpt *r)
{
	uint32_t len, ns;

	if (i >= t->count || t->off[i] < HDR_LEN_V1 || t->off[i] + 4 > t->end)
		return -1;
	const char *p = t->map + t->off[i];
	memcpy(&len, p, 4);
	if (len > t->end - t->off[i] - 4)
		return -1;
	const char *end = p + 4 + len;
	p += 4;
	if (get_str(&p, end, &r->email, &r->email_len) < 0 ||
	    get_str(&p, end, &r->name, &r->name_len) < 0 || end - p < 4)
		return -1;
	if (!r->name_len)
		r->name = NULL;
	memcpy(&ns, p, 4);
	p += 4;
	if (ns > SCHED_MAX_SUBS)
		return -1;
	r->nsubs = ns;
	for (size_t k = 0; k < ns; k++)
		if (get_str(&p, end, &r->keys[k], &r->klens[k]) < 0 ||
		    get_str(&p, end, &r->vals[k], &r->vlens[k]) < 0)
			return -1;
	return 0;
}
