/*
 * The submission log's records (layout in log_int.h): encoding on the
 * sessions' threads, decoding at materialisation and recovery, and the
 * CRC32C that tells a whole record from a torn write.
 */
#include "log_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- encoding ---- */

static void put32(struct vl_buf *b, uint32_t v)
{
	vl_buf_append(b, &v, 4);
}

static void put64(struct vl_buf *b, uint64_t v)
{
	vl_buf_append(b, &v, 8);
}

static void put_str(struct vl_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	put32(b, (uint32_t)n);
	vl_buf_append(b, s ? s : "", n);
	vl_buf_append(b, "", 1);
}

void sub_rec_encode(const struct sub_rec *r, struct vl_buf *out)
{
	size_t start = out->len;
	unsigned char ver[4] = { SUB_REC_VERSION, (unsigned char)r->flags, 0, 0 };

	put64(out, 0);                 /* the head, filled in below */
	vl_buf_append(out, ver, 4);
	vl_buf_append(out, &r->created, 8);
	put64(out, r->expires_in_ms);
	vl_buf_append(out, r->id, SCHED_ID_LEN);
	put_str(out, r->sender);
	put_str(out, r->campaign);
	put_str(out, r->rate_limit);
	put_str(out, r->user);
	put_str(out, r->client);
	put32(out, (uint32_t)r->nrcpt);
	for (size_t i = 0; i < r->nrcpt; i++)
		put_str(out, r->rcpts[i]);
	put64(out, r->len);
	size_t body = out->len - start - SUB_REC_HEAD;
	uint32_t len = (uint32_t)(body + r->len);
	uint32_t crc = vl_crc32c(vl_crc32c(0, out->p + start + SUB_REC_HEAD, body),
				  r->msg, r->len);
	memcpy(out->p + start, &len, 4);
	memcpy(out->p + start + 4, &crc, 4);
}

/* ---- decoding ---- */

struct rd {
	const char *p, *end;
	bool bad;
};

static const char *take(struct rd *d, size_t n)
{
	if (d->bad || (size_t)(d->end - d->p) < n) {
		d->bad = true;
		return NULL;
	}
	const char *p = d->p;
	d->p += n;
	return p;
}

static uint64_t get(struct rd *d, size_t n)
{
	const char *p = take(d, n);
	uint64_t v = 0;

	if (p)
		memcpy(&v, p, n);   /* little-endian */
	return v;
}

/* A string; NULL when absent (length 0) unless keep_empty. */
static const char *get_str(struct rd *d, bool keep_empty)
{
	uint32_t n = (uint32_t)get(d, 4);
	const char *s = take(d, (size_t)n + 1);

	if (!s || s[n] != '\0' || memchr(s, '\0', n)) {
		d->bad = true;
		return NULL;
	}
	return n || keep_empty ? s : NULL;
}

int sub_rec_decode(const char *p, size_t n, struct sub_rec *r)
{
	struct rd d = { p, p + n, false };
	uint32_t len = (uint32_t)get(&d, 4), crc = (uint32_t)get(&d, 4);

	memset(r, 0, sizeof *r);
	if (d.bad || len != n - SUB_REC_HEAD || vl_crc32c(0, d.p, len) != crc)
		return -1;
	const unsigned char *v = (const unsigned char *)take(&d, 4);
	const char *created = take(&d, 8);
	r->expires_in_ms = get(&d, 8);
	const char *id = take(&d, SCHED_ID_LEN);
	if (d.bad || v[0] != SUB_REC_VERSION || !sched_id_valid(id, SCHED_ID_LEN))
		return -1;
	r->flags = v[1];
	memcpy(&r->created, created, 8);
	memcpy(r->id, id, SCHED_ID_LEN);
	r->sender = get_str(&d, true);
	r->campaign = get_str(&d, false);
	r->rate_limit = get_str(&d, false);
	r->user = get_str(&d, false);
	r->client = get_str(&d, false);
	r->nrcpt = (size_t)get(&d, 4);
	if (d.bad || r->nrcpt == 0 || r->nrcpt > SUB_RCPT_MAX)
		return -1;
	r->rcpts = vl_calloc(r->nrcpt, sizeof *r->rcpts);
	for (size_t i = 0; i < r->nrcpt && !d.bad; i++)
		if (!(r->rcpts[i] = get_str(&d, false)))
			d.bad = true;     /* an empty address: never written */
	r->len = (size_t)get(&d, 8);
	r->msg = d.bad ? NULL : take(&d, r->len);
	if (d.bad || d.p != d.end) {
		sub_rec_free(r);
		return -1;
	}
	return 0;
}

void sub_rec_free(struct sub_rec *r)
{
	free(r->rcpts);
	r->rcpts = NULL;
}

/* ---- reading a segment ---- */

static int pread_all(int fd, void *p, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = pread(fd, (char *)p + done, n - done, (off_t)(off + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k == 0)
			errno = EIO;     /* shorter than it was: cut meanwhile */
		if (k <= 0)
			return -1;
		done += (size_t)k;
	}
	return 0;
}

int sub_seg_read(int fd, uint64_t *off, uint64_t end, struct vl_buf *buf, struct sub_rec *r,
		 const char **why)
{
	uint32_t len;

	*why = NULL;
	if (*off >= end)
		return 0;
	if (end - *off < SUB_REC_HEAD) {
		*why = "a torn record head";
		return 0;
	}
	vl_buf_reset(buf);
	char *p = vl_buf_reserve(buf, SUB_REC_HEAD);
	if (pread_all(fd, p, SUB_REC_HEAD, *off) < 0) {
		*why = "unreadable";
		return -1;
	}
	memcpy(&len, p, 4);
	if (len == 0 || len > end - *off - SUB_REC_HEAD) {
		*why = len ? "a torn record" : "zeroes where a record should be";
		return 0;
	}
	p = vl_buf_reserve(buf, (size_t)len + SUB_REC_HEAD);
	if (pread_all(fd, p, (size_t)len + SUB_REC_HEAD, *off) < 0) {
		*why = "unreadable";
		return -1;
	}
	buf->len = (size_t)len + SUB_REC_HEAD;
	if (sub_rec_decode(buf->p, buf->len, r) < 0) {
		*why = "a record whose checksum or layout is wrong";
		return 0;
	}
	*off += buf->len;
	return 1;
}
