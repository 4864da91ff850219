/*
 * The webhook's pure parts: the JSON array of a batch, the event's time,
 * the signature, gzip, the cursor file's text, back-off.
 */
#include "webhook_int.h"

#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

void wh_batch_init(struct wh_batch *b)
{
	memset(b, 0, sizeof *b);
	vl_buf_init(&b->body);
}

void wh_batch_reset(struct wh_batch *b)
{
	vl_buf_reset(&b->body);
	b->n = 0;
	b->finished = false;
	b->first_time = 0;
}

void wh_batch_free(struct wh_batch *b)
{
	vl_buf_free(&b->body);
}

size_t wh_batch_add(struct wh_batch *b, const char *lines, size_t len)
{
	size_t added = 0, pos = 0;

	while (pos < len) {
		const char *nl = memchr(lines + pos, '\n', len - pos);
		if (!nl)
			break;
		size_t l = (size_t)(nl - (lines + pos));
		if (l) {
			if (!b->n)
				b->first_time = wh_event_time(lines + pos, l);
			vl_buf_append(&b->body, b->n ? "," : "[", 1);
			vl_buf_append(&b->body, lines + pos, l);
			b->n++;
			added++;
		}
		pos += l + 1;
	}
	return added;
}

void wh_batch_finish(struct wh_batch *b)
{
	if (b->finished)
		return;
	if (!b->n)
		vl_buf_append(&b->body, "[", 1);
	vl_buf_append(&b->body, "]", 1);
	b->finished = true;
}

size_t wh_whole_lines(bool *in_long, const char **p, size_t n)
{
	const char *buf = *p;
	size_t from = 0, to = n;

	if (*in_long) {
		const char *nl = memchr(buf, '\n', n);
		if (!nl)
			return 0;
		from = (size_t)(nl - buf) + 1;
		*in_long = false;
	}
	if (from < n && buf[n - 1] != '\n') {
		const char *last = memrchr(buf + from, '\n', n - from);
		to = last ? (size_t)(last - buf) + 1 : from;
		*in_long = true;
	}
	*p = buf + from;
	return to - from;
}

/* n digits at p, or -1. */
static int digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/* ,"time":"2026-11-23T17:20:01.123Z" (the second key of every line) */
double wh_event_time(const char *line, size_t len)
{
	static const char k[] = ",\"time\":\"";
	const char *p = memmem(line, len < 64 ? len : 64, k, sizeof k - 1);
	struct tm tm = { 0 };

	if (!p || (size_t)(p - line) + sizeof k - 1 + 24 > len)
		return 0;
	p += sizeof k - 1;
	int v[7] = { digits(p, 4), digits(p + 5, 2), digits(p + 8, 2), digits(p + 11, 2),
		     digits(p + 14, 2), digits(p + 17, 2), digits(p + 20, 3) };
	for (int i = 0; i < 7; i++)
		if (v[i] < 0)
			return 0;
	if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':' ||
	    p[19] != '.' || p[23] != 'Z')
		return 0;
	tm.tm_year = v[0] - 1900, tm.tm_mon = v[1] - 1, tm.tm_mday = v[2];
	tm.tm_hour = v[3], tm.tm_min = v[4], tm.tm_sec = v[5];
	return (double)timegm(&tm) + v[6] / 1000.0;
}

void wh_sign(const char *secret, long long timestamp, const void *body, size_t len,
	     char out[WH_SIG_LEN])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	char ts[24];
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};

	snprintf(ts, sizeof ts, "%lld.", timestamp);
	if (!c || !EVP_MAC_init(c, (const unsigned char *)secret, strlen(secret), params) ||
	    !EVP_MAC_update(c, (const unsigned char *)ts, strlen(ts)) ||
	    !EVP_MAC_update(c, body, len) || !EVP_MAC_final(c, mac, &maclen, sizeof mac) ||
	    maclen != 32)
		vl_oom(0);   /* only when OpenSSL itself is broken */
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(m);
	memcpy(out, "sha256=", 7);
	for (size_t i = 0; i < 32; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", mac[i]);
}

int wh_gzip(const void *in, size_t len, struct vl_buf *out)
{
	z_stream z = { 0 };
	int rc;

	vl_buf_reset(out);
	if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	size_t cap = deflateBound(&z, (uLong)len);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)vl_buf_reserve(out, cap);
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	if (rc == Z_STREAM_END)
		out->len = cap - z.avail_out;
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -1;
}

#define CURSOR_MAGIC "volley-webhook-cursor 1 "

void wh_cursor_encode(const struct sched_events_pos *p, struct vl_buf *out)
{
	vl_buf_printf(out, CURSOR_MAGIC "%" PRIu64 " %" PRIu64 "\n", p->seq, p->off);
}

/* A decimal number of 1 to 19 digits at *s, moved past it. */
static int number(const char **s, const char *end, uint64_t *v)
{
	const char *p = *s;

	*v = 0;
	while (p < end && *p >= '0' && *p <= '9' && p - *s < 19)
		*v = *v * 10 + (uint64_t)(*p++ - '0');
	if (p == *s || (p < end && *p >= '0' && *p <= '9'))
		return -1;
	*s = p;
	return 0;
}

int wh_cursor_decode(const char *text, size_t len, struct sched_events_pos *p, char *why,
		     size_t whylen)
{
	const char *s = text, *end = text + len;
	size_t ml = sizeof CURSOR_MAGIC - 1;

	if (len < ml || memcmp(text, CURSOR_MAGIC, ml)) {
		snprintf(why, whylen, "does not begin with \"%s\"", CURSOR_MAGIC "FILE OFFSET");
		return -1;
	}
	s += ml;
	if (number(&s, end, &p->seq) < 0 || s == end || *s++ != ' ' ||
	    number(&s, end, &p->off) < 0 || s == end || *s++ != '\n' || s != end) {
		snprintf(why, whylen, "expected a file number and an offset, then a line end");
		return -1;
	}
	if (!p->seq) {
		snprintf(why, whylen, "file number 0");
		return -1;
	}
	return 0;
}

uint64_t wh_backoff_ms(unsigned n, uint64_t r)
{
	uint64_t d = 300000;

	if (n < 1)
		n = 1;
	if (n <= 9)
		d = 1000ull << (n - 1);
	if (d > 300000)
		d = 300000;
	return d - (r % (d / 2 + 1));
}

const char *wh_result_class(long status)
{
	static const char *const c[] = { "error", "1xx", "2xx", "3xx", "4xx", "5xx" };

	return status >= 100 && status < 600 ? c[status / 100] : "error";
}
