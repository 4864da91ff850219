/*
 * The outcome journal of a job: append-only records, written in batches by
 * the group committer and fdatasync'd before any outcome in them is
 * reported. Each record carries a checksum, so a tail torn by a crash (or
 * zeros a file system left after the last size update) is recognised and
 * cut off at replay instead of being misread.
 *
 * Record: u32 idx, u8 state, u8 attempts, u8 class, u8 flags, u32 time,
 * i16 code, char enhanced[10], u16 textlen, two zero octets, text (at
 * most SCHED_JREC_TEXT_MAX), u32 checksum (FNV-1a, 32 bits) of all before
 * it. Host byte order. A record whose checksum or state is wrong ends the
 * replay there.
 */
#include "sched_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR 28

static uint32_t checksum(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint32_t h = 0x811c9dc5u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x01000193u;
	return h;
}

void sched_journal_encode(const struct sched_jrec *r, struct vl_buf *b)
{
	size_t start = b->len;
	uint16_t tl = r->textlen > SCHED_JREC_TEXT_MAX ? SCHED_JREC_TEXT_MAX : r->textlen;
	char *p = vl_buf_reserve(b, HDR + tl + 4);

	memcpy(p, &r->idx, 4);
	p[4] = (char)r->state;
	p[5] = (char)r->attempts;
	p[6] = (char)r->cls;
	p[7] = (char)r->flags;
	memcpy(p + 8, &r->time, 4);
	memcpy(p + 12, &r->code, 2);
	memcpy(p + 14, r->enhanced, 10);
	memcpy(p + 24, &tl, 2);
	memset(p + 26, 0, 2);
	memcpy(p + HDR, r->text, tl);
	uint32_t c = checksum(p, HDR + tl);
	memcpy(p + HDR + tl, &c, 4);
	b->len = start + HDR + tl + 4;
}

/* One record at p (n octets available): its length, or 0 if it is not a
 * whole, valid record. */
size_t sched_journal_decode(const char *p, size_t n, struct sched_jrec *r)
{
	uint16_t tl;
	uint32_t c;

	if (n < HDR + 4)
		return 0;
	memcpy(&tl, p + 24, 2);
	if (tl > SCHED_JREC_TEXT_MAX || n < (size_t)HDR + tl + 4)
		return 0;
	memcpy(&c, p + HDR + tl, 4);
	if (c != checksum(p, HDR + tl) || (unsigned char)p[4] > SCHED_R_SUPPRESSED)
		return 0;
	memcpy(&r->idx, p, 4);
	r->state = (uint8_t)p[4];
	r->attempts = (uint8_t)p[5];
	r->cls = (uint8_t)p[6];
	r->flags = (uint8_t)p[7];
	memcpy(&r->time, p + 8, 4);
	memcpy(&r->code, p + 12, 2);
	memcpy(r->enhanced, p + 14, 10);
	r->enhanced[9] = '\0';
	r->textlen = tl;
	memcpy(r->text, p + HDR, tl);
	r->text[tl] = '\0';
	return HDR + (size_t)tl + 4;
}

int sched_journal_replay(const char *path, void (*fn)(void *arg, const struct sched_jrec *r),
			 void *arg)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct stat st;
	struct sched_jrec r;

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	/* mapped, not read: a big job's journal stays in the page cache
	 * instead of the daemon's heap while it replays */
	size_t n = (size_t)st.st_size, off = 0;
	char *buf = NULL;
	if (n) {
		void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			close(fd);
			return -1;
		}
		madvise(p, n, MADV_SEQUENTIAL);
		buf = p;
	}
	for (size_t len; off < n && (len = sched_journal_decode(buf + off, n - off, &r));
	     off += len)
		fn(arg, &r);
	if (off < n) {
		vl_log(VL_LOG_WARN, "journal %s: cutting a torn tail of %zu octets", path, n - off);
		if (ftruncate(fd, (off_t)off) < 0 || fdatasync(fd) < 0)
			vl_log(VL_LOG_ERROR, "journal %s: cannot truncate: %s", path, strerror(errno));
	}
	if (buf)
		munmap(buf, n);
	close(fd);
	return 0;
}
