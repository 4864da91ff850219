/*
 * The webhooks' thread: one curl multi handle, a request at most in flight
 * per webhook. Each webhook reads the events log on its own (a following
 * reader polled without waiting), fills a batch, POSTs it, and on a 2xx
 * moves its cursor (the file written, tmp, fdatasync, rename, at most
 * every CURSOR_MS and at stop) and reads on; anything else
 * retries the same events after a back-off. When idle it looks for new
 * events every POLL_MS, about a journal commit window.
 */
#include "webhook_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define POLL_MS 50
#define READ_MAX (1u << 20)     /* octets a read: longer lines come in pieces */
#define IDLE_CURSOR_MS 1000     /* cursor moved over unmatched events, at most this often */
#define CURSOR_MS 250           /* acknowledged batches: the cursor written at most this
				 * often (and at stop): its write and fdatasync per batch
				 * were a third of the thread's cost; a crash resends at
				 * most this window's batches */
#define HOOKS_NICE 10

/* requests[] by wh_result_class: error (no answer), then the status classes */
enum { R_ERROR, R_1XX, R_N = 6 };

struct hook {
	struct wh *w;
	char *name, *url, *secret, *ca_file, **types;
	size_t ntypes;
	unsigned batch_max;
	bool gzip;
	uint64_t timeout_ms;
	char path[4096];              /* the cursor file */
	struct sched_events_reader *rd;
	struct sched_events_pos acked;
	uint64_t acked_at;            /* when the cursor was last written (mono ms) */
	struct wh_batch b;
	struct vl_buf gz;             /* the body as sent when gzip */
	bool in_flight, closed;
	bool cursor_failing;          /* logged once an episode */
	bool cursor_dirty;            /* acked moved, not yet written */
	bool in_long;                 /* inside a line too long to send */
	unsigned failures;            /* in a row */
	uint64_t retry_at;            /* mono ms, 0: none */
	CURL *easy;
	struct curl_slist *hdrs;
	char errbuf[CURL_ERROR_SIZE];
	/* metrics, read by the API's threads */
	atomic_uint_fast64_t sent, requests[R_N], failed, skipped;
	atomic_uint_fast64_t oldest_ms;   /* wall ms of the oldest unsent event, 0: none */
};

struct wh {
	pthread_t th;
	CURLM *multi;
	atomic_bool stop;
	struct hook *hooks;
	size_t n;
	char *buf;
	uint64_t seed;
};

/* ---- cursor files ---- */

static int cursor_write(struct hook *h, const struct sched_events_pos *p)
{
	char tmp[4200];
	struct vl_buf b;
	int fd, rc = -1;

	snprintf(tmp, sizeof tmp, "%s.tmp", h->path);
	vl_buf_init(&b);
	wh_cursor_encode(p, &b);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd >= 0 && write(fd, b.p, b.len) == (ssize_t)b.len && fdatasync(fd) == 0)
		rc = 0;
	if (fd >= 0)
		close(fd);
	if (rc == 0 && rename(tmp, h->path) < 0)
		rc = -1;
	if (rc < 0 && !h->cursor_failing)
		vl_log(VL_LOG_ERROR, "webhook %s: writing %s: %s (events acknowledged since "
		       "may be sent again after a restart)", h->name, h->path, strerror(errno));
	else if (rc == 0 && h->cursor_failing)
		vl_log(VL_LOG_INFO, "webhook %s: writing %s again", h->name, h->path);
	h->cursor_failing = rc < 0;
	vl_buf_free(&b);
	return rc;
}

/* The cursor to start from: the file's; none yet: the log's end (written
 * at once, so that a crash before the first send loses nothing); damaged:
 * the oldest event kept (at least once), the bad file kept aside. */
static void cursor_read(struct hook *h, struct sched_events *ev, struct sched_events_pos *p)
{
	struct vl_buf b;
	char why[200], bad[4200];

	if (vl_read_file(h->path, &b) < 0) {
		int e = errno;
		vl_buf_free(&b);
		errno = e;
		if (errno != ENOENT)
			vl_log(VL_LOG_ERROR, "webhook %s: reading %s: %s; starting at the oldest "
			       "event kept", h->name, h->path, strerror(errno));
		*p = errno == ENOENT ? sched_events_end(ev) : sched_events_begin(ev);
		cursor_write(h, p);
		return;
	}
	if (wh_cursor_decode(b.p, b.len, p, why, sizeof why) < 0) {
		snprintf(bad, sizeof bad, "%s.bad", h->path);
		vl_log(VL_LOG_ERROR, "webhook %s: %s is damaged (%s); kept as %s, starting at "
		       "the oldest event kept", h->name, h->path, why, bad);
		if (rename(h->path, bad) < 0)
			vl_log(VL_LOG_WARN, "webhook %s: %s: %s", h->name, bad, strerror(errno));
		*p = sched_events_begin(ev);
		cursor_write(h, p);
	}
	vl_buf_free(&b);
}

/* ---- requests ---- */

static void headers(struct hook *h, const void *body, size_t len)
{
	char line[160], sig[WH_SIG_LEN];
	long long ts = (long long)vl_wall_time();

	curl_slist_free_all(h->hdrs);
	h->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	h->hdrs = curl_slist_append(h->hdrs, "Expect:");
	if (h->gzip)
		h->hdrs = curl_slist_append(h->hdrs, "Content-Encoding: gzip");
	snprintf(line, sizeof line, "X-Volley-Timestamp: %lld", ts);
	h->hdrs = curl_slist_append(h->hdrs, line);
	wh_sign(h->secret, ts, body, len, sig);
	snprintf(line, sizeof line, "X-Volley-Signature: %s", sig);
	h->hdrs = curl_slist_append(h->hdrs, line);
	snprintf(line, sizeof line, "X-Volley-Webhook: %s", h->name);
	h->hdrs = curl_slist_append(h->hdrs, line);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p, (void)arg;
	return size * n;
}

/* The batch (finished) as one POST; a fresh timestamp and signature on
 * every attempt. */
static void send_batch(struct hook *h)
{
	const struct vl_buf *body = &h->b.body;

	wh_batch_finish(&h->b);
	if (h->gzip) {
		if (!h->gz.len && wh_gzip(h->b.body.p, h->b.body.len, &h->gz) < 0)
			vl_oom(0);
		body = &h->gz;
	}
	headers(h, body->p, body->len);
	curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->hdrs);
	curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, body->p);
	curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
	h->errbuf[0] = 0;
	if (curl_multi_add_handle(h->w->multi, h->easy) != CURLM_OK)
		vl_oom(0);
	h->in_flight = true;
}

static void acked(struct hook *h)
{
	uint64_t now = vl_now_ms();

	h->acked = h->b.end;
	h->cursor_dirty = true;
	if (now - h->acked_at >= CURSOR_MS) {
		cursor_write(h, &h->acked);
		h->acked_at = now;
		h->cursor_dirty = false;
	}
	atomic_fetch_add(&h->sent, h->b.n);
	if (h->failures)
		vl_log(VL_LOG_INFO, "webhook %s: delivering again after %u failed attempts",
		       h->name, h->failures);
	h->failures = 0;
	wh_batch_reset(&h->b);
	vl_buf_reset(&h->gz);
	atomic_store(&h->oldest_ms, 0);
}

static void done(struct hook *h, CURLcode rc)
{
	long status = 0;

	curl_multi_remove_handle(h->w->multi, h->easy);
	h->in_flight = false;
	if (rc == CURLE_OK)
		curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
	else
		status = 0;
	atomic_fetch_add(&h->requests[status >= 100 && status < 600 ? status / 100 : R_ERROR], 1);
	if (status >= 200 && status < 300) {
		acked(h);
		return;
	}
	atomic_fetch_add(&h->failed, 1);
	uint64_t wait = wh_backoff_ms(++h->failures, vl_rand(&h->w->seed));
	h->retry_at = vl_now_ms() + wait;
	char what[CURL_ERROR_SIZE + 40];
	if (status)
		snprintf(what, sizeof what, "HTTP %ld", status);
	else
		snprintf(what, sizeof what, "%s", h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
	vl_log(h->failures == 1 || h->failures % 10 == 0 ? VL_LOG_WARN : VL_LOG_DEBUG,
	       "webhook %s: %zu events to %s: %s; attempt %u failed, again in %.1f s", h->name,
	       h->b.n, h->url, what, h->failures, (double)wait / 1000.0);
}

/* ---- reading ---- */

/* Whatever is there now, up to a full batch. true when the log closed. */
static bool fill(struct hook *h)
{
	while (h->b.n < h->batch_max) {
		size_t lines;
		long n = sched_events_read_lines(h->rd, h->w->buf, READ_MAX, h->batch_max - h->b.n,
						 &lines, 0);
		if (n < 0)
			return true;
		if (n == 0)
			break;
		const char *p = h->w->buf;
		bool was = h->in_long;
		size_t len = wh_whole_lines(&h->in_long, &p, (size_t)n);
		if (h->in_long && !was)
			vl_log(VL_LOG_WARN, "webhook %s: an event line over %u octets skipped",
			       h->name, READ_MAX);
		wh_batch_add(&h->b, p, len);
		h->b.end = sched_events_reader_pos(h->rd);
		if (h->b.n && !atomic_load(&h->oldest_ms))
			atomic_store(&h->oldest_ms, (uint64_t)(h->b.first_time * 1000.0));
	}
	return false;
}

/* Nothing matched for a while: move the cursor over what was passed. */
static void idle_cursor(struct hook *h, uint64_t now)
{
	struct sched_events_pos p = sched_events_reader_pos(h->rd);

	if ((p.seq != h->acked.seq || p.off != h->acked.off) && now - h->acked_at >= IDLE_CURSOR_MS) {
		h->acked = p;
		cursor_write(h, &p);
		h->acked_at = now;
	}
}

/* One step of a webhook; returns how long it may wait (ms). */
static long step(struct hook *h, uint64_t now)
{
	if (h->cursor_dirty && now - h->acked_at >= CURSOR_MS) {
		cursor_write(h, &h->acked);
		h->acked_at = now;
		h->cursor_dirty = false;
	}
	if (h->in_flight || h->closed)
		return POLL_MS;
	if (h->retry_at) {
		if (now < h->retry_at)
			return (long)(h->retry_at - now);
		h->retry_at = 0;
		send_batch(h);
		return POLL_MS;
	}
	if (fill(h))
		h->closed = true;
	if (h->b.n) {
		send_batch(h);
		return POLL_MS;
	}
	idle_cursor(h, now);
	return POLL_MS;
}

static void *run(void *arg)
{
	struct wh *w = arg;
	int running, left;
	CURLMsg *m;

	vl_thread_name("vl-hooks");
	/* background work: on a busy machine delivery's threads go first (a
	 * thread's own nice value, Linux); the webhook lags a little instead */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), HOOKS_NICE) < 0)
		vl_log(VL_LOG_DEBUG, "webhooks: setpriority: %s", strerror(errno));
	while (!atomic_load(&w->stop)) {
		uint64_t now = vl_now_ms();
		long wait = POLL_MS;
		for (size_t i = 0; i < w->n; i++) {
			long t = step(&w->hooks[i], now);
			if (t < wait)
				wait = t;
		}
		curl_multi_perform(w->multi, &running);
		while ((m = curl_multi_info_read(w->multi, &left))) {
			struct hook *h = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&h);
			done(h, m->data.result);
			wait = 0;   /* read on at once */
		}
		if (wait > 0)
			curl_multi_poll(w->multi, NULL, 0, (int)wait, NULL);
	}
	return NULL;
}

/* ---- set-up ---- */

static CURL *easy_for(struct hook *h)
{
	CURL *e = curl_easy_init();

	if (!e)
		vl_oom(0);
	curl_easy_setopt(e, CURLOPT_URL, h->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (*h->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "volley/" VL_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, h);
	return e;
}

static void hook_init(struct wh *w, struct hook *h, const struct cfg_webhook *c,
		      const char *dir, struct sched_events *ev)
{
	struct sched_events_pos at;
	uint64_t skipped = 0;

	h->w = w;
	h->name = vl_strdup(c->name);
	h->url = vl_strdup(c->url);
	h->secret = vl_strdup(c->secret);
	h->ca_file = vl_strdup(c->ca_file);
	h->ntypes = c->nevents;
	h->types = vl_calloc(c->nevents + 1, sizeof *h->types);
	for (size_t i = 0; i < c->nevents; i++)
		h->types[i] = vl_strdup(c->events[i]);
	h->batch_max = c->batch;
	h->gzip = c->gzip;
	h->timeout_ms = c->timeout_ms;
	snprintf(h->path, sizeof h->path, "%s/%s.cursor", dir, c->name);
	wh_batch_init(&h->b);
	vl_buf_init(&h->gz);
	cursor_read(h, ev, &at);
	h->rd = sched_events_reader_open_at(ev, &at, h->ntypes ? (const char *const *)h->types
							       : NULL, h->ntypes, &skipped);
	h->acked = sched_events_reader_pos(h->rd);
	h->acked_at = vl_now_ms();
	if (skipped) {
		vl_log(VL_LOG_ERROR, "webhook %s: its cursor (file %" PRIu64 ", offset %" PRIu64
		       ") was removed by retention: %" PRIu64 " file(s) of events skipped (the "
		       "first maybe partly sent); going on at file %" PRIu64, c->name, at.seq,
		       at.off, skipped, h->acked.seq);
		atomic_store(&h->skipped, skipped);
		cursor_write(h, &h->acked);
	}
	h->easy = easy_for(h);
}

static void hook_free(struct hook *h)
{
	if (h->cursor_dirty)          /* what was acknowledged is not sent again */
		cursor_write(h, &h->acked);
	if (h->in_flight)
		curl_multi_remove_handle(h->w->multi, h->easy);
	curl_easy_cleanup(h->easy);
	curl_slist_free_all(h->hdrs);
	sched_events_reader_close(h->rd);
	wh_batch_free(&h->b);
	vl_buf_free(&h->gz);
	for (size_t i = 0; i < h->ntypes; i++)
		free(h->types[i]);
	free(h->types);
	free(h->name);
	free(h->url);
	free(h->secret);
	free(h->ca_file);
}

struct wh *wh_start(const struct cfg *c, struct sched_events *ev, char *err, size_t errlen)
{
	char dir[4000];
	struct wh *w;

	err[0] = 0;
	if (!c->nwebhooks)
		return NULL;
	snprintf(dir, sizeof dir, "%s/webhooks", c->data_dir);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "webhooks: %s: %s", dir, strerror(errno));
		return NULL;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	w = vl_calloc(1, sizeof *w);
	w->seed = vl_now_ns() ^ (uint64_t)getpid();
	w->buf = vl_malloc(READ_MAX);
	w->multi = curl_multi_init();
	w->n = c->nwebhooks;
	w->hooks = vl_calloc(w->n, sizeof *w->hooks);
	for (size_t i = 0; i < w->n; i++)
		hook_init(w, &w->hooks[i], &c->webhooks[i], dir, ev);
	if (!w->multi || pthread_create(&w->th, NULL, run, w) != 0) {
		snprintf(err, errlen, "webhooks: cannot start the thread");
		for (size_t i = 0; i < w->n; i++)
			hook_free(&w->hooks[i]);
		if (w->multi)
			curl_multi_cleanup(w->multi);
		free(w->hooks);
		free(w->buf);
		free(w);
		return NULL;
	}
	return w;
}

void wh_stop(struct wh *w)
{
	if (!w)
		return;
	atomic_store(&w->stop, true);
	curl_multi_wakeup(w->multi);
	pthread_join(w->th, NULL);
	for (size_t i = 0; i < w->n; i++)
		hook_free(&w->hooks[i]);
	curl_multi_cleanup(w->multi);
	free(w->hooks);
	free(w->buf);
	free(w);
}

/* ---- metrics ---- */

static void family(struct vl_buf *out, const struct wh *w, const char *name, const char *type,
		   const char *help, size_t field)
{
	for (size_t i = 0; i < w->n; i++) {
		const struct hook *h = &w->hooks[i];
		char labels[128];
		double v;
		snprintf(labels, sizeof labels, "{webhook=\"%s\"}", h->name);
		if (field == 0) {
			v = (double)atomic_load(&h->sent);
		} else if (field == 1) {
			v = (double)atomic_load(&h->failed);
		} else if (field == 2) {
			v = (double)atomic_load(&h->skipped);
		} else {
			uint64_t t = atomic_load(&h->oldest_ms);
			double now = vl_wall_time();
			v = t && now > t / 1000.0 ? now - t / 1000.0 : 0;
		}
		vl_prom_metric(out, name, type, i ? NULL : help, labels, v);
	}
}

void wh_metrics(void *arg, struct vl_buf *out)
{
	const struct wh *w = arg;
	bool first = true;

	family(out, w, "volley_webhook_events_sent_total", "counter",
	       "Events a webhook delivered (acknowledged with a 2xx).", 0);
	for (size_t i = 0; i < w->n; i++)
		for (int r = 0; r < R_N; r++) {
			char labels[160];
			const struct hook *h = &w->hooks[i];
			if (r == R_1XX)
				continue;
			snprintf(labels, sizeof labels, "{webhook=\"%s\",result=\"%s\"}", h->name,
				 wh_result_class(r * 100L));
			vl_prom_metric(out, "volley_webhook_requests_total", "counter",
				       first ? "POSTs by outcome: the status class, or error when "
				       "no answer came." : NULL, labels,
				       (double)atomic_load(&h->requests[r]));
			first = false;
		}
	family(out, w, "volley_webhook_failures_total", "counter",
	       "POSTs that did not get a 2xx (each is retried).", 1);
	family(out, w, "volley_webhook_lag_seconds", "gauge",
	       "Age of the oldest matching event not yet acknowledged; 0 when caught up.", 3);
	family(out, w, "volley_webhook_skipped_total", "counter",
	       "Events files a webhook's cursor lost to retention.", 2);
}
