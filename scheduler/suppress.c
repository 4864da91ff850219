/*
 * The suppression list: data_dir/suppression, an append-only log,
 *   # a comment (the header)
 *   + TAB email TAB added (Unix seconds) TAB job TAB reason LF
 *   - TAB email TAB removed (Unix seconds) LF
 * replayed at open into a hash set and rewritten (compacted) when it holds
 * removed, duplicate or damaged lines. Addresses are kept with the domain
 * lower-cased (the local part is case-sensitive, RFC 5321 2.4).
 *
 * Memory: a few million addresses fit, so each is one record in an arena
 * (file offset of its '+' line, hash, the address) and a 4-octet slot in an
 * open-addressing table; reason, job and time stay on disk, read back with
 * pread when listed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "suppress.h"

#include "../common/common.h"

#define EMAIL_MAX 512
#define JOB_MAX 128
#define REASON_MAX 512
#define LINE_MAX_ (EMAIL_MAX + JOB_MAX + REASON_MAX + 64)
#define HEADER "# volley suppression list v1: \"+ email added job reason\" | " \
	"\"- email removed\", tab-separated, times in Unix seconds\n"

#define SLOT_EMPTY 0u
#define SLOT_TOMB 1u
#define DEAD UINT64_MAX          /* foff of a removed record */
#define REC_HDR 12               /* foff (8), hash (4), then the address */

struct sched_suppress {
	pthread_rwlock_t lock;
	char *path;
	int fd;
	uint64_t fsize;          /* appends land here; a failed one is cut back */
	char *arena;             /* records, 4-aligned; slot = offset / 4 */
	size_t alen, acap;
	uint32_t *slot;
	size_t nslot, used, n;   /* used counts tombstones too */
	pthread_mutex_t sort_lock;
	uint32_t *sorted;        /* slots in address order, built on demand */
	size_t nsorted;
	bool sorted_ok;
	sched_suppress_hook hook;        /* local changes, for a cluster */
	void *hook_arg;
};

/* ---- addresses ---- */

/* Validated copy with the domain lower-cased; -1 for what cannot be an
 * address (empty, no '@', control octets: tabs and newlines would break
 * the file). */
static int normalize(const char *e, size_t len, char out[EMAIL_MAX + 1])
{
	if (!e || len == 0 || len > EMAIL_MAX)
		return -1;
	const char *at = memrchr(e, '@', len);
	if (!at || at == e || at == e + len - 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)e[i];
		if (c < 0x20 || c == 0x7f)
			return -1;
		out[i] = e + i > at && c >= 'A' && c <= 'Z' ? (char)(c + 32) : (char)c;
	}
	out[len] = '\0';
	return (int)len;
}

static uint32_t hash(const char *s, size_t n)
{
	uint64_t h = vl_hash(s, n);
	h ^= h >> 29;
	return (uint32_t)(h ^ (h >> 32));
}

/* ---- records and the table ---- */

static char *rec(const struct sched_suppress *s, uint32_t slot)
{
	return s->arena + (size_t)slot * 4;
}

static uint64_t rec_foff(const char *r)
{
	uint64_t v;
	memcpy(&v, r, 8);
	return v;
}

static uint32_t rec_hash(const char *r)
{
	uint32_t v;
	memcpy(&v, r + 8, 4);
	return v;
}

static const char *rec_email(const char *r)
{
	return r + REC_HDR;
}

/* The slot holding key, or the index where it would go (*found false). */
static size_t probe(const struct sched_suppress *s, const char *key, uint32_t h,
		    bool *found)
{
	size_t mask = s->nslot - 1, i = h & mask, free_at = SIZE_MAX;
	for (;; i = (i + 1) & mask) {
		uint32_t v = s->slot[i];
		if (v == SLOT_EMPTY) {
			*found = false;
			return free_at != SIZE_MAX ? free_at : i;
		}
		if (v == SLOT_TOMB) {
			if (free_at == SIZE_MAX)
				free_at = i;
			continue;
		}
		const char *r = rec(s, v);
		if (rec_hash(r) == h && strcmp(rec_email(r), key) == 0) {
			*found = true;
			return i;
		}
	}
}

static void rehash(struct sched_suppress *s, size_t nslot)
{
	uint32_t *old = s->slot;
	size_t oldn = s->nslot;
	s->slot = vl_calloc(nslot, sizeof *s->slot);
	s->nslot = nslot;
	s->used = s->n;
	for (size_t i = 0; i < oldn; i++) {
		if (old[i] <= SLOT_TOMB)
			continue;
		size_t j = rec_hash(rec(s, old[i])) & (nslot - 1);
		while (s->slot[j] != SLOT_EMPTY)
			j = (j + 1) & (nslot - 1);
		s->slot[j] = old[i];
	}
	free(old);
}

static void insert(struct sched_suppress *s, const char *key, size_t len, uint32_t h,
		   uint64_t foff)
{
	if ((s->used + 1) * 10 > s->nslot * 7)
		rehash(s, s->n * 10 > s->nslot * 3 ? s->nslot * 2 : s->nslot);
	size_t need = (REC_HDR + len + 1 + 3) & ~(size_t)3;
	if (s->alen + need > s->acap) {
		s->acap = s->acap + s->acap / 2 + need;
		s->arena = vl_realloc(s->arena, s->acap);
	}
	char *r = s->arena + s->alen;
	memcpy(r, &foff, 8);
	memcpy(r + 8, &h, 4);
	memcpy(r + REC_HDR, key, len + 1);
	bool found;
	size_t i = probe(s, key, h, &found);
	s->used += s->slot[i] == SLOT_EMPTY;
	s->slot[i] = (uint32_t)(s->alen / 4);
	s->alen += need;
	s->n++;
	s->sorted_ok = false;
}

static void drop(struct sched_suppress *s, size_t i)
{
	uint64_t dead = DEAD;
	memcpy(rec(s, s->slot[i]), &dead, 8);
	s->slot[i] = SLOT_TOMB;
	s->n--;
	s->sorted_ok = false;
}

/* ---- the file ---- */

/* Append one line; on failure cut the file back so no torn line stays
 * for the next append to glue onto. */
static int append(struct sched_suppress *s, const char *line, size_t n)
{
	if (vl_write_all(s->fd, line, n) < 0) {
		int e = errno ? errno : EIO;
		if (ftruncate(s->fd, (off_t)s->fsize) < 0)
			vl_log(VL_LOG_ERROR, "suppression: %s: cannot cut back a failed "
			       "append: %s", s->path, strerror(errno));
		errno = e;
		return -1;
	}
	s->fsize += n;
	return 0;
}

/* Copy with tabs, line breaks and other control octets made spaces, cut
 * to max octets on a UTF-8 character boundary. */
static void clean(struct vl_buf *b, const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n > max) {
		n = max;
		while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char o = c < 0x20 || c == 0x7f ? ' ' : (char)c;
		vl_buf_append(b, &o, 1);
	}
}

/* ---- replay and compaction ---- */

struct line {                    /* fields of one line, not NUL-terminated */
	char op;
	const char *f[5];
	size_t len[5];
	size_t nf;
};

static void split(const char *p, size_t n, struct line *l)
{
	l->op = n ? p[0] : 0;
	l->nf = 0;
	while (l->nf < 5) {
		const char *tab = memchr(p, '\t', n);
		size_t len = tab ? (size_t)(tab - p) : n;
		l->f[l->nf] = p;
		l->len[l->nf++] = len;
		if (!tab)
			break;
		n -= len + 1;
		p = tab + 1;
	}
}

/* One line; false when it was removed, a duplicate or damaged: then the
 * file is worth compacting. */
static bool replay_line(struct sched_suppress *s, const char *p, size_t n, uint64_t off)
{
	struct line l;
	char key[EMAIL_MAX + 1];
	if (n && p[0] == '#')
		return true;
	split(p, n, &l);
	if (l.nf < 3 || l.len[0] != 1 || (l.op != '+' && l.op != '-'))
		return false;
	int len = normalize(l.f[1], l.len[1], key);
	if (len < 0)
		return false;
	uint32_t h = hash(key, (size_t)len);
	bool found;
	size_t i = probe(s, key, h, &found);
	if (l.op == '-') {
		if (found)
			drop(s, i);
		return false;
	}
	if (found || l.nf != 5)
		return false;
	insert(s, key, (size_t)len, h, off);
	return true;
}

/* Lines replayed; *bad counts those worth compacting away, *good_end is
 * where the last whole line ends (a torn tail is dropped). */
static void replay(struct sched_suppress *s, const char *map, size_t size, size_t *bad,
		   size_t *good_end)
{
	size_t off = 0;
	*bad = 0;
	while (off < size) {
		const char *nl = memchr(map + off, '\n', size - off);
		if (!nl) {
			(*bad)++;
			break;
		}
		size_t n = (size_t)(nl - map - off);
		*bad += !replay_line(s, map + off, n, off);
		off += n + 1;
	}
	*good_end = off;
}

/* The live records' lines, in arena order; their new offsets into *offs. */
static void live_lines(const struct sched_suppress *s, const char *map, size_t size,
		       struct vl_buf *b, uint64_t **offs)
{
	size_t k = 0;
	*offs = vl_malloc((s->n ? s->n : 1) * sizeof **offs);
	vl_buf_appends(b, HEADER);
	for (size_t a = 8; a < s->alen;) {
		const char *r = s->arena + a;
		a += (REC_HDR + strlen(rec_email(r)) + 1 + 3) & ~(size_t)3;
		uint64_t foff = rec_foff(r);
		if (foff == DEAD)
			continue;
		const char *nl = memchr(map + foff, '\n', size - foff);
		(*offs)[k++] = b->len;
		vl_buf_append(b, map + foff, (size_t)(nl - map - foff) + 1);
	}
}

/* The new file, written, fsync'd and renamed over path: its descriptor
 * (opened for appending before the rename, so nothing can fail after it
 * but the directory fsync, which is only logged), or -1. */
static int write_new(const char *path, const char *tmp, const struct vl_buf *b)
{
	int fd = open(tmp, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (vl_write_all(fd, b->p, b->len) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	if (vl_fsync_parent(path) < 0)
		vl_log(VL_LOG_WARN, "suppression: %s: fsync of its directory: %s", path,
		       strerror(errno));
	return fd;
}

/* Rewrite the file with the live records only; records then point into
 * the new file. */
static int compact(struct sched_suppress *s, const char *map, size_t size)
{
	char tmp[4096];
	struct vl_buf b;
	uint64_t *offs;
	snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
	vl_buf_init(&b);
	live_lines(s, map, size, &b, &offs);
	int fd = write_new(s->path, tmp, &b);
	if (fd >= 0) {
		size_t k = 0;
		for (size_t a = 8; a < s->alen;) {
			char *r = s->arena + a;
			a += (REC_HDR + strlen(rec_email(r)) + 1 + 3) & ~(size_t)3;
			if (rec_foff(r) != DEAD)
				memcpy(r, &offs[k++], 8);
		}
		close(s->fd);
		s->fd = fd;
		s->fsize = b.len;
	}
	free(offs);
	vl_buf_free(&b);
	return fd >= 0 ? 0 : -1;
}

static int init_file(struct sched_suppress *s)
{
	s->fsize = strlen(HEADER);
	return vl_write_all(s->fd, HEADER, s->fsize) < 0 || fsync(s->fd) < 0 ||
	       vl_fsync_parent(s->path) < 0 ? -1 : 0;
}

/* Compaction failing (disk full at start) is not fatal: the old file
 * still says the same, less a torn tail, which is cut off. */
static void compact_or_trim(struct sched_suppress *s, const char *map, size_t size,
			    size_t good_end)
{
	if (compact(s, map, size) == 0)
		return;
	vl_log(VL_LOG_WARN, "suppression: %s: compaction failed (%s); keeping the "
	       "file as it is", s->path, strerror(errno));
	if (good_end < size && ftruncate(s->fd, (off_t)good_end) == 0)
		s->fsize = good_end;
}

/* Replay the file into memory; compact it when that drops lines. */
static int load(struct sched_suppress *s, char *err, size_t errlen)
{
	struct stat st;
	if (fstat(s->fd, &st) < 0)
		goto fail;
	if (st.st_size == 0) {
		if (init_file(s) < 0)
			goto fail;
		return 0;
	}
	size_t size = (size_t)st.st_size, bad, good_end;
	char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, s->fd, 0);
	if (map == MAP_FAILED)
		goto fail;
	s->fsize = size;
	replay(s, map, size, &bad, &good_end);
	if (bad) {
		vl_log(VL_LOG_INFO, "suppression: %s: %zu removed, duplicate or damaged "
		       "lines; compacting", s->path, bad);
		compact_or_trim(s, map, size, good_end);
	}
	munmap(map, size);
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
	return -1;
}

struct sched_suppress *sched_suppress_open(const char *path, char *err, size_t errlen)
{
	struct sched_suppress *s = vl_calloc(1, sizeof *s);
	pthread_rwlock_init(&s->lock, NULL);
	pthread_mutex_init(&s->sort_lock, NULL);
	s->path = vl_strdup(path);
	s->nslot = 1024;
	s->slot = vl_calloc(s->nslot, sizeof *s->slot);
	s->alen = 8;                     /* offsets 0 and 4 are EMPTY and TOMB */
	s->acap = 65536;
	s->arena = vl_calloc(1, s->acap);
	s->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (s->fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		sched_suppress_close(s);
		return NULL;
	}
	if (load(s, err, errlen) < 0) {
		sched_suppress_close(s);
		return NULL;
	}
	return s;
}

void sched_suppress_close(struct sched_suppress *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	pthread_rwlock_destroy(&s->lock);
	pthread_mutex_destroy(&s->sort_lock);
	free(s->path);
	free(s->arena);
	free(s->slot);
	free(s->sorted);
	free(s);
}

/* ---- the calls ---- */

bool sched_suppressed(struct sched_suppress *s, const char *email, size_t len)
{
	char key[EMAIL_MAX + 1];
	int n = normalize(email, len, key);
	if (n < 0)
		return false;
	uint32_t h = hash(key, (size_t)n);
	bool found;
	pthread_rwlock_rdlock(&s->lock);
	probe(s, key, h, &found);
	pthread_rwlock_unlock(&s->lock);
	return found;
}

/* Under the write lock the line goes to the file and the set; the
 * fdatasync comes after it, so concurrent callers share the flushes. */
static int change(struct sched_suppress *s, const char *key, size_t len,
		  struct vl_buf *line, bool add, bool sync)
{
	uint32_t h = hash(key, len);
	bool found;
	pthread_rwlock_wrlock(&s->lock);
	size_t i = probe(s, key, h, &found);
	if (found == add) {
		pthread_rwlock_unlock(&s->lock);
		return 1;
	}
	uint64_t off = s->fsize;
	if (append(s, line->p, line->len) < 0) {
		pthread_rwlock_unlock(&s->lock);
		return -1;
	}
	if (add)
		insert(s, key, len, h, off);
	else
		drop(s, i);
	pthread_rwlock_unlock(&s->lock);
	return sync && fdatasync(s->fd) < 0 ? -1 : 0;
}

/* One '+' line for key, the change applied (not synced). */
static int add_line(struct sched_suppress *s, const char *key, size_t len, const char *reason,
		    const char *job, long long at, bool sync)
{
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_printf(&b, "+\t%s\t%lld\t", key, at);
	clean(&b, job, JOB_MAX);
	vl_buf_appends(&b, "\t");
	clean(&b, reason, REASON_MAX);
	vl_buf_appends(&b, "\n");
	int rc = change(s, key, len, &b, true, sync);
	vl_buf_free(&b);
	return rc;
}

static int remove_line(struct sched_suppress *s, const char *key, size_t len, long long at,
		       bool sync)
{
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_printf(&b, "-\t%s\t%lld\n", key, at);
	int rc = change(s, key, len, &b, false, sync);
	vl_buf_free(&b);
	return rc;
}

static void tell(struct sched_suppress *s, bool add, const char *key, const char *reason,
		 const char *job, long long at)
{
	if (!s->hook)
		return;
	struct sched_suppress_change ch = { .add = add, .email = key, .reason = reason ? reason : "",
					    .job = job ? job : "", .at = at };
	s->hook(s->hook_arg, &ch);
}

static int add_one(struct sched_suppress *s, const char *email, const char *reason,
		   const char *job, bool sync)
{
	char key[EMAIL_MAX + 1];
	int len = normalize(email, email ? strlen(email) : 0, key);
	if (len < 0) {
		errno = EINVAL;
		return -1;
	}
	long long at = (long long)vl_wall_time();
	int rc = add_line(s, key, (size_t)len, reason, job, at, sync);
	if (rc == 0)
		tell(s, true, key, reason, job, at);
	return rc;
}

int sched_suppress_add(struct sched_suppress *s, const char *email, const char *reason,
		       const char *job)
{
	return add_one(s, email, reason, job, true);
}

int sched_suppress_add_many(struct sched_suppress *s, const char *const *emails,
			    const char *const *jobs, size_t n, const char *reason)
{
	int rc = 0, added = 0;

	for (size_t i = 0; i < n; i++) {
		int r = add_one(s, emails[i], reason, jobs[i], false);
		if (r < 0 && errno != EINVAL)
			rc = -1;
		added += r == 0;
	}
	if (added && fdatasync(s->fd) < 0)
		rc = -1;
	return rc;
}

int sched_suppress_remove(struct sched_suppress *s, const char *email)
{
	char key[EMAIL_MAX + 1];
	int len = normalize(email, email ? strlen(email) : 0, key);
	if (len < 0)
		return 1;        /* cannot be in the list */
	long long at = (long long)vl_wall_time();
	int rc = remove_line(s, key, (size_t)len, at, true);
	if (rc == 0)
		tell(s, false, key, NULL, NULL, at);
	return rc;
}

void sched_suppress_set_hook(struct sched_suppress *s, sched_suppress_hook fn, void *arg)
{
	s->hook = fn;
	s->hook_arg = arg;
}

int sched_suppress_apply(struct sched_suppress *s, const struct sched_suppress_change *ch,
			 size_t n)
{
	int changed = 0, rc = 0;

	for (size_t i = 0; i < n; i++) {
		char key[EMAIL_MAX + 1];
		const char *e = ch[i].email;
		int len = normalize(e, e ? strlen(e) : 0, key);
		if (len < 0)
			continue;
		int r = ch[i].add ? add_line(s, key, (size_t)len, ch[i].reason, ch[i].job,
					     ch[i].at, false)
				  : remove_line(s, key, (size_t)len, ch[i].at, false);
		if (r < 0)
			rc = -1;
		changed += r == 0;
	}
	if (changed && fdatasync(s->fd) < 0)
		rc = -1;
	return rc < 0 ? -1 : changed;
}

size_t sched_suppress_count(struct sched_suppress *s)
{
	pthread_rwlock_rdlock(&s->lock);
	size_t n = s->n;
	pthread_rwlock_unlock(&s->lock);
	return n;
}

/* ---- listing ---- */

static int by_email(const void *a, const void *b, void *arena)
{
	const char *ar = arena;
	return strcmp(rec_email(ar + (size_t)*(const uint32_t *)a * 4),
		      rec_email(ar + (size_t)*(const uint32_t *)b * 4));
}

/* Called under the read lock: writers, who make the order stale, are out;
 * readers take turns on the mutex. */
static void ensure_sorted(struct sched_suppress *s)
{
	pthread_mutex_lock(&s->sort_lock);
	if (!s->sorted_ok) {
		free(s->sorted);
		s->sorted = vl_malloc((s->n ? s->n : 1) * sizeof *s->sorted);
		s->nsorted = 0;
		for (size_t i = 0; i < s->nslot; i++)
			if (s->slot[i] > SLOT_TOMB)
				s->sorted[s->nsorted++] = s->slot[i];
		qsort_r(s->sorted, s->nsorted, sizeof *s->sorted, by_email, s->arena);
		s->sorted_ok = true;
	}
	pthread_mutex_unlock(&s->sort_lock);
}

/* First position whose address sorts after `after`. */
static size_t after_pos(const struct sched_suppress *s, const char *after)
{
	size_t lo = 0, hi = s->nsorted;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(rec_email(rec(s, s->sorted[mid])), after) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The '+' line of a record, read back from the file. */
static json_t *entry_json(const struct sched_suppress *s, const char *r)
{
	char buf[LINE_MAX_];
	json_t *o = json_pack("{s:s}", "email", rec_email(r));
	ssize_t n = pread(s->fd, buf, sizeof buf - 1, (off_t)rec_foff(r));
	char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
	struct line l = { 0 };
	if (nl)
		split(buf, (size_t)(nl - buf), &l);
	if (l.nf == 5) {
		char when[32], num[24];
		snprintf(num, sizeof num, "%.*s", (int)l.len[2], l.f[2]);
		vl_iso8601((double)strtoll(num, NULL, 10), when);
		json_object_set_new(o, "added", json_string(when));
		json_object_set_new(o, "job", l.len[3] ? json_stringn(l.f[3], l.len[3])
					    : json_null());
		json_object_set_new(o, "reason", json_stringn(l.f[4], l.len[4]));
	} else {
		json_object_set_new(o, "added", json_null());
		json_object_set_new(o, "job", json_null());
		json_object_set_new(o, "reason", json_null());
	}
	return o;
}

json_t *sched_suppress_list(struct sched_suppress *s, const char *after, size_t limit)
{
	char key[EMAIL_MAX + 1];
	if (after && normalize(after, strlen(after), key) < 0)
		snprintf(key, sizeof key, "%s", after);
	json_t *arr = json_array(), *next = json_null();
	pthread_rwlock_rdlock(&s->lock);
	ensure_sorted(s);
	size_t i = after ? after_pos(s, key) : 0, end = i;
	for (; end < s->nsorted && end - i < limit; end++)
		json_array_append_new(arr, entry_json(s, rec(s, s->sorted[end])));
	if (end < s->nsorted && end > i) {
		json_decref(next);
		next = json_string(rec_email(rec(s, s->sorted[end - 1])));
	}
	pthread_rwlock_unlock(&s->lock);
	return json_pack("{s:o, s:o}", "suppressed", arr, "next", next);
}
