/*
 * common: small pieces every program shares -- allocation, growable byte
 * buffers, time, parsing of durations/sizes/percentages, glob matching,
 * hashing, a timer heap, a fast PRNG, logging, the io_uring ring and the
 * version. Prefix: vl_.
 */
#ifndef VOLLEY_COMMON_H
#define VOLLEY_COMMON_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <liburing.h>

/* One version for every program (volleyd's /v1/health, volley --version). */
#define VL_VERSION "0.1.0"

/* ---- allocation ----
 * One out-of-memory policy for the whole tree: report and abort. A daemon
 * that cannot allocate a few octets cannot keep its promises either, and
 * an unchecked NULL would crash later, further from the cause. */
__attribute__((noreturn)) void vl_oom(size_t n);
static inline void *vl_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		vl_oom(n);
	return p;
}
static inline void *vl_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		vl_oom(n * size);
	return p;
}
static inline void *vl_realloc(void *old, size_t n)
{
	void *p = realloc(old, n ? n : 1);
	if (!p)
		vl_oom(n);
	return p;
}
/* Zeroed, on cache lines of its own (a worker's state: no false sharing
 * with another thread's). */
static inline void *vl_cacheline_alloc(size_t n)
{
	size_t size = (n + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, size ? size : 64);
	if (!p)
		vl_oom(size);
	return memset(p, 0, size);
}
static inline char *vl_strdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		vl_oom(strlen(s) + 1);
	return p;
}
static inline char *vl_strndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		vl_oom(n + 1);
	return p;
}

/* ---- hashing: FNV-1a, 64 bits ----
 * Not for anything a peer could use to flood one bucket on purpose unless
 * the table also bounds its chains. */
#define VL_HASH_INIT 0xcbf29ce484222325ull
static inline uint64_t vl_hash_add(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}
static inline uint64_t vl_hash(const void *p, size_t n)
{
	return vl_hash_add(VL_HASH_INIT, p, n);
}
/* The same over the ASCII lower-case of s (host and domain names). */
static inline uint64_t vl_hash_lower(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c += 32;
		h = (h ^ c) * 0x100000001b3ull;
	}
	return h;
}

/* CRC32C (crc.c) of n octets at p, continuing crc (0 to begin): the
 * check value of "123456789" is 0xe3069283. */
uint32_t vl_crc32c(uint32_t crc, const void *p, size_t n);

/* ---- files ---- */
/* fsync the directory dir itself (after creating, renaming or removing an
 * entry in it, so the change survives a crash). 0, or -1 with errno. */
int vl_fsync_dir(const char *dir);
/* The same for the directory that holds path. */
int vl_fsync_parent(const char *path);

/* ---- timer heap (heap.c): earliest key first ----
 * Intrusive: a node lives in its owner's struct and knows its position,
 * so re-arming and cancelling are O(log n) without searching. */
struct vl_heap_node {
	uint64_t key;     /* e.g. a deadline in ms */
	size_t idx;       /* position in the heap, or SIZE_MAX when not in it */
};
struct vl_heap {
	struct vl_heap_node **v;
	size_t n, cap;
};
static inline void vl_heap_node_init(struct vl_heap_node *t)
{
	t->idx = SIZE_MAX;
}
/* Insert t with key, or move it there when it is in the heap already. */
void vl_heap_set(struct vl_heap *h, struct vl_heap_node *t, uint64_t key);
/* Remove t; harmless when it is not in the heap. */
void vl_heap_del(struct vl_heap *h, struct vl_heap_node *t);
/* The node with the smallest key, NULL when empty. */
static inline struct vl_heap_node *vl_heap_top(const struct vl_heap *h)
{
	return h->n ? h->v[0] : NULL;
}
void vl_heap_free(struct vl_heap *h);

/* ---- byte buffer ----
 * A plain growable buffer. Growth doubles, so appending is amortised O(1);
 * callers that need a bound check vl_buf_len() themselves (a peer must never
 * be able to grow one without limit). */
struct vl_buf {
	char *p;
	size_t len;
	size_t cap;
};

void vl_buf_init(struct vl_buf *b);
void vl_buf_free(struct vl_buf *b);
/* Make room for n more bytes; returns a pointer to the free space. */
char *vl_buf_reserve(struct vl_buf *b, size_t n);
void vl_buf_append(struct vl_buf *b, const void *data, size_t n);
void vl_buf_appends(struct vl_buf *b, const char *s);
void vl_buf_printf(struct vl_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void vl_buf_vprintf(struct vl_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Drop the first n bytes. */
void vl_buf_consume(struct vl_buf *b, size_t n);
static inline void vl_buf_reset(struct vl_buf *b) { b->len = 0; }
/* Give back memory of a buffer that grew past keep bytes. */
void vl_buf_shrink(struct vl_buf *b, size_t keep);
/* Append s as a quoted JSON string (NULL as null); invalid UTF-8 octets
 * become U+FFFD so the output is always valid JSON. */
void vl_buf_json_string(struct vl_buf *b, const char *s);
/* The same into dst, which has room for VL_JSON_PUT_MAX(strlen(s))
 * octets (4 for NULL: null); the octets written. Invalid UTF-8 is U+FFFD,
 * control characters \u00XX. */
#define VL_JSON_PUT_MAX(n) (6 * (n) + 2)
size_t vl_json_put(char *dst, const char *s);

/* ---- time ---- */
uint64_t vl_now_ms(void);   /* CLOCK_MONOTONIC */
uint64_t vl_now_ns(void);   /* CLOCK_MONOTONIC */
/* write() until all n octets are out, across short writes and EINTR;
 * 0, or -1 with errno. */
int vl_write_all(int fd, const void *p, size_t n);
double vl_wall_time(void);  /* CLOCK_REALTIME, seconds */
/* "2026-11-23T17:20:01Z" (UTC, whole seconds). */
void vl_iso8601(double t, char out[32]);
/* Days since 1970-01-01 to a proleptic Gregorian date (month and day from 1). */
void vl_civil(long long days, int *y, int *m, int *d);

/* ---- parsing: 0 on success, -1 on a malformed value ---- */
/* "50ms", "1.5s", "5m", "2h", "3d"; a bare number is seconds. */
int vl_parse_duration_ms(const char *s, uint64_t *ms);
/* "10MB", "512KiB", "4096": decimal (K, M, G, T with optional B) or
 * binary (KiB, MiB, GiB, TiB) multiples. */
int vl_parse_size(const char *s, uint64_t *bytes);
/* "50/s", "3000/min", "50000/h", "1e6/d" -> per second (> 0). */
int vl_parse_rate(const char *s, double *per_s);
/* "5%", "0.5", "100" -> 0..100 */
int vl_parse_percent(const char *s, double *pct);
/* Unsigned decimal integer, whole string, no sign, no overflow. */
int vl_parse_u64(const char *s, uint64_t *v);
/* "host:port", "[v6]:port" -> host (without brackets) and port. */
int vl_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* ---- matching ---- */
/* Case-insensitive glob with '*' and '?' (ASCII case folding). */
bool vl_glob_match(const char *pat, const char *s);

/* ---- PRNG (xorshift64*): fast, seedable, not for secrets ---- */
static inline uint64_t vl_rand(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}
/* True with probability pct/100. */
static inline bool vl_chance(uint64_t *s, double pct)
{
	if (pct <= 0)
		return false;
	return (double)(vl_rand(s) >> 11) * (1.0 / 9007199254740992.0) * 100.0 < pct;
}

/* The whole file at path appended to out (initialised here). -1 with
 * errno when it cannot be opened or read. */
int vl_read_file(const char *path, struct vl_buf *out);

/* One sample in Prometheus' text format: "name{labels} value", after its
 * "# HELP" and "# TYPE" lines when help is given (a family's first sample). */
void vl_prom_metric(struct vl_buf *b, const char *name, const char *type, const char *help,
		    const char *labels, double v);

/* ---- histograms for Prometheus (hist.c) ----
 * Upper bounds ascending (seconds), at most VL_HIST_MAX, plus +Inf.
 * Observations from any thread (relaxed atomics); a scrape writes the
 * family's _bucket (cumulative), _sum and _count lines. */
#define VL_HIST_MAX 24
struct vl_hist {
	const double *bounds;                 /* must outlive the histogram */
	size_t nb;
	_Atomic uint64_t counts[VL_HIST_MAX + 1]; /* per bucket, not cumulative */
	_Atomic uint64_t sum_us;              /* microseconds */
};
void vl_hist_init(struct vl_hist *h, const double *bounds, size_t n);
void vl_hist_observe(struct vl_hist *h, double seconds);
uint64_t vl_hist_count(const struct vl_hist *h);
/* labels: "" or NULL, or inner label pairs `site="x",stage="dot"`; help
 * given: the HELP and TYPE lines first (a family's first series). */
void vl_hist_prom(struct vl_buf *b, const char *name, const char *help, const char *labels,
		  const struct vl_hist *h);

/* The calling thread's name as ps, top and perf show it (at most 15
 * characters: "vl-deliver"). */
void vl_thread_name(const char *name);

/* ---- logging (log.c) ----
 * One process-wide sink (the one global state in the tree): stderr with a
 * timestamp until vl_log_open says otherwise. */
enum vl_log_level { VL_LOG_ERROR, VL_LOG_WARN, VL_LOG_INFO, VL_LOG_DEBUG };
/* A domain name fit for a file name and a report: letters, digits, '-',
 * '_' and '.', 1 to 253 octets, no empty label; out gets it in lower case.
 * -1 for anything else (so nothing a peer sends picks a path). */
int vl_domain_norm(const char *in, char out[254]);

/* Format an error into err (errlen octets) and return -1: the parsers'
 * "return vl_fail(err, errlen, ...)". */
int vl_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void vl_log_set_level(enum vl_log_level lvl);
void vl_log(enum vl_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The same with a va_list (for a library's logger callback). */
void vl_log_v(enum vl_log_level lvl, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Where lines go from now on. file NULL or "": stderr, plain "level:
 * message" lines (a terminal, or journald: JOURNAL_STREAM set adds the
 * "<N>" priority prefix it reads); else appended to file with an ISO 8601
 * timestamp, and stdout and stderr are pointed at it too when
 * take_stdio (a detached daemon: stray library output lands there).
 * to_syslog: every line also to syslog(3) as ident, facility mail.
 * -1 with err (the previous sink stays). */
int vl_log_open(const char *ident, const char *file, bool to_syslog, bool take_stdio,
		char *err, size_t errlen);
/* Reopen the file at its path (after logrotate renamed it); 0 when
 * there is none. -1 with err (lines keep going to the old one). */
int vl_log_reopen(char *err, size_t errlen);

#define VL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- io_uring (ring.c) ---- */
/* An SQE's user_data: a pointer with the operation in its low 3 bits
 * (every pointer tagged so is at least 8-aligned; op < 8). */
static inline uint64_t vl_ud(const void *p, unsigned op)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)op;
}
static inline void *vl_ud_ptr(uint64_t ud)
{
	return (void *)(uintptr_t)(ud & ~(uint64_t)7);
}
static inline unsigned vl_ud_op(uint64_t ud)
{
	return (unsigned)(ud & 7);
}

struct vl_ring {
	struct io_uring ring;
	struct io_uring_buf_ring *br;  /* provided buffers for recv, group 0 */
	char *bufs;
	unsigned nbufs, bufsz;
};
/* A ring created disabled, with nbufs provided buffers of bufsz octets. */
int vl_ring_init(struct vl_ring *r, unsigned entries, unsigned cq_entries,
		 unsigned nbufs, unsigned bufsz, char *err, size_t errlen);
/* In the thread that will use the ring: it becomes its single issuer. */
int vl_ring_enable(struct vl_ring *r);
/* Never NULL: submits to make room when the SQ is full. */
struct io_uring_sqe *vl_ring_sqe(struct vl_ring *r);
/* Submit, wait for at least one completion, hand every completion to fn.
 * -1 on an error the loop cannot go on from (logged). */
int vl_ring_wait(struct vl_ring *r, void (*fn)(void *arg, struct io_uring_cqe *cqe),
		 void *arg);
/* Multishot recv of fd into the provided buffers. */
void vl_ring_recv(struct vl_ring *r, int fd, uint64_t user_data);
const char *vl_ring_buf(const struct vl_ring *r, unsigned bid);
void vl_ring_buf_return(struct vl_ring *r, unsigned bid);
void vl_ring_exit(struct vl_ring *r);
/* "1.2.3.4:25" or "[::1]:25". */
void vl_sockaddr_str(const struct sockaddr_storage *ss, char *out, size_t len);
/* Its port, host order. */
uint16_t vl_sockaddr_port(const struct sockaddr_storage *ss);
/* True for "192.0.2.1", "2001:db8::1" and "[...]" forms: an address
 * literal, not a host name (no SNI, no TLSA, no MX lookup for it). */
bool vl_ip_literal(const char *s);
/* An IPv4 or IPv6 address (no brackets) and a port into ss; -1 if ip is
 * not an IP address. */
int vl_sockaddr_parse(const char *ip, uint16_t port, struct sockaddr_storage *ss,
		      socklen_t *len);

#endif
