/*
 * The spool: jobs received into tmp/, fsync'd, then renamed into jobs/.
 *
 * Recipient table ("rcpt"): a 16-octet header ("VLRCPT01", u64 count,
 * written last so a torn table is recognisable), then one record per
 * recipient: u32 length of the rest, then email, name, u32 nsubs and
 * nsubs key/value pairs, each string as u32 length + octets + NUL.
 * Little-endian, as the host.
 */
#include "spool.h"

#include "../common/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define TABLE_MAGIC "VLRCPT01"
#define HDR_LEN 16
#define WBUF (1u << 20)          /* write-behind buffer of the table */

struct sched_spool {
	char *dir, *jobs, *tmp;
	int jobs_fd;             /* for syncfs (sched_spool_sync) */
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

struct sched_spool *sched_spool_open(const char *data_dir, char *err, size_t errlen)
{
	struct sched_spool *s = vl_calloc(1, sizeof *s);

	s->jobs_fd = -1;
	s->dir = vl_strdup(data_dir);
	s->jobs = path_join(data_dir, "jobs");
	s->tmp = path_join(data_dir, "tmp");
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
	return s;
}

void sched_spool_close(struct sched_spool *s)
{
	if (!s)
		return;
	if (s->jobs_fd >= 0)
		close(s->jobs_fd);
	free(s->dir);
	free(s->jobs);
	free(s->tmp);
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
	struct slot *set;        /* open addressing on the address hash */
	size_t setcap;
	uint64_t *off;           /* record offset of each recipient */
	size_t offcap;
};

/* A storage failure the API answers 503: logged here with the path and
 * the reason, since the client's answer is no operator's log. Returns
 * errno, kept. */
static int spool_err(const char *what, const char *path)
{
	int e = errno;

	vl_log(VL_LOG_ERROR, "spool: %s %s: %s", what, path, strerror(e));
	return e;
}

struct sched_intake *sched_intake_begin(struct sched_spool *s, const char *id,
					char *err, size_t errlen)
{
	struct sched_intake *in = vl_calloc(1, sizeof *in);
	char dir[PATH_MAX];

	in->fd = in->msg_fd = -1;
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
	vl_buf_append(&in->wbuf, TABLE_MAGIC "\0\0\0\0\0\0\0\0", HDR_LEN);
	in->setcap = 1024;
	in->set = vl_calloc(in->setcap, sizeof *in->set);
	in->offcap = 512;
	in->off = vl_malloc(in->offcap * sizeof *in->off);
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

/* The tag also picks the slot, so growing needs no address re-read. */
static void set_grow(struct sched_intake *in)
{
	size_t cap = in->setcap * 2;
	struct slot *n = vl_calloc(cap, sizeof *n);

	for (size_t i = 0; i < in->setcap; i++) {
		if (!in->set[i].tag)
			continue;
		size_t j = in->set[i].tag & (cap - 1);
		while (n[j].tag)
			j = (j + 1) & (cap - 1);
		n[j] = in->set[i];
	}
	free(in->set);
	in->set = n;
	in->setcap = cap;
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
	if ((in->count + 1) * 2 > in->setcap)
		set_grow(in);
	if ((d = dedup(in, r, first)) != 0)
		return d;
	if (in->count == in->offcap) {
		in->offcap *= 2;
		in->off = vl_realloc(in->off, in->offcap * sizeof *in->off);
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

static int finish_table(struct sched_intake *in, bool sync)
{
	char hdr[HDR_LEN];
	uint64_t n = in->count;

	if (flush(in) < 0)
		return -1;
	memcpy(hdr, TABLE_MAGIC, 8);
	memcpy(hdr + 8, &n, 8);
	if (pwrite(in->fd, hdr, HDR_LEN, 0) != HDR_LEN || (sync && fsync(in->fd) < 0))
		return -1;
	return 0;
}

int sched_intake_message(struct sched_intake *in, const void *p, size_t n)
{
	if (in->msg_fd >= 0) {
		errno = EEXIST;
		return -1;
	}
	char *path = path_join(in->dir, file_names[SCHED_SPOOL_MESSAGE]);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
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

/* Both commits: files complete (and fsync'd when sync), job.json last,
 * the directory renamed into jobs/ (and the rename made durable). */
static int commit(struct sched_intake *in, const char *job_json, size_t len, bool sync)
{
	char *meta = path_join(in->dir, file_names[SCHED_SPOOL_JOB]), dst[PATH_MAX];
	int rc = -1, e = 0;

	if (sched_spool_path(in->s, in->id, SCHED_SPOOL_DIR, dst, sizeof dst) < 0) {
		e = spool_err("cannot name the directory of job", in->id);
	} else if (finish_table(in, sync) < 0) {
		e = spool_err("cannot write the recipient table in", in->dir);
	} else if (sync && in->msg_fd >= 0 && fsync(in->msg_fd) < 0) {
		e = spool_err("cannot sync the message in", in->dir);
	} else if (write_file(meta, job_json, len, sync) < 0) {
		e = spool_err("cannot write", meta);
	} else if (sync && vl_fsync_dir(in->dir) < 0) {
		e = spool_err("cannot sync", in->dir);
	} else if (rename(in->dir, dst) < 0) {
		e = spool_err("cannot move the job to", dst);
	} else if (sync && (vl_fsync_dir(in->s->jobs) < 0 || vl_fsync_dir(in->s->tmp) < 0)) {
		e = spool_err("cannot sync", in->s->jobs);
		rename(dst, in->dir);
	} else {
		rc = 0;
	}
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
	free(in->set);
	free(in->off);
	free(in);
}

/* ---- reading a table ---- */

struct sched_table {
	const char *map;
	size_t len;
	size_t count;
	uint64_t *off;           /* record offsets, found by one scan */
};

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
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < HDR_LEN)
		goto out;
	t = vl_calloc(1, sizeof *t);
	t->len = (size_t)st.st_size;
	t->map = mmap(NULL, t->len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (t->map == MAP_FAILED || memcmp(t->map, TABLE_MAGIC, 8) != 0)
		goto bad;
	memcpy(&t->count, t->map + 8, 8);
	t->off = vl_malloc((t->count + 1) * sizeof *t->off);
	uint64_t o = HDR_LEN;
	for (size_t i = 0; i < t->count; i++) {
		uint32_t n;
		if (o + 4 > t->len)
			goto bad;
		memcpy(&n, t->map + o, 4);
		t->off[i] = o;
		o += 4 + (uint64_t)n;
	}
	if (o > t->len)
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
	if (t->map && t->map != MAP_FAILED)
		munmap((void *)t->map, t->len);
	free(t->off);
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

	if (i >= t->count)
		return -1;
	const char *p = t->map + t->off[i];
	memcpy(&len, p, 4);
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
