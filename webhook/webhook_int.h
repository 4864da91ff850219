/*
 * webhook's pure parts (pure.c), shared with its unit tests: batches,
 * signatures, cursor files, back-off. No I/O.
 */
#ifndef VOLLEY_WEBHOOK_INT_H
#define VOLLEY_WEBHOOK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "webhook.h"

/* A batch: the event lines as a JSON array, and where the log stands
 * after its last line. */
struct wh_batch {
	struct vl_buf body;          /* "[line,line" until finished, then "]" */
	size_t n;
	bool finished;
	double first_time;           /* the first event's time (epoch s), 0: unknown */
	struct sched_events_pos end;
};
void wh_batch_init(struct wh_batch *b);
void wh_batch_reset(struct wh_batch *b);
void wh_batch_free(struct wh_batch *b);
/* Whole '\n'-terminated lines of lines[0, len) into the array (an empty
 * line or a tail without '\n' is ignored). Returns the events added. */
size_t wh_batch_add(struct wh_batch *b, const char *lines, size_t len);
/* The whole lines of a read of n octets at *p (moved to the first). A
 * line longer than a read comes in pieces; such a line is dropped, never
 * sent cut: *in_long says a read ended inside one (set, then cleared by
 * the read that holds its end). */
size_t wh_whole_lines(bool *in_long, const char **p, size_t n);
/* Closes the array (idempotent): body is then the JSON to send. */
void wh_batch_finish(struct wh_batch *b);

/* An event line's "time" as epoch seconds; 0 when it has none. */
double wh_event_time(const char *line, size_t len);

/* "sha256=" and the hex HMAC-SHA256 under secret of
 * "<timestamp>.<body>". out: at least WH_SIG_LEN octets. */
#define WH_SIG_LEN 72
void wh_sign(const char *secret, long long timestamp, const void *body, size_t len,
	     char out[WH_SIG_LEN]);

/* gzip (RFC 1952) of in into out (reset first). -1 on a zlib error. */
int wh_gzip(const void *in, size_t len, struct vl_buf *out);

/* A cursor file: "volley-webhook-cursor 1 FILE OFFSET\n". decode: -1
 * with why when the text is not exactly that (a damaged file). */
void wh_cursor_encode(const struct sched_events_pos *p, struct vl_buf *out);
int wh_cursor_decode(const char *text, size_t len, struct sched_events_pos *p, char *why,
		     size_t whylen);

/* The wait before retry n (1: after the first failure): 1 s doubling to
 * 5 min, then 5 min; jitter takes it down by up to half (r: random). */
uint64_t wh_backoff_ms(unsigned n, uint64_t r);

/* The class of an outcome for the requests metric: "2xx", "3xx", "4xx",
 * "5xx" by status, "error" when no HTTP answer came (status 0). */
const char *wh_result_class(long status);

#endif
