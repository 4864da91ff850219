/*
 * submit --wait and status --watch: poll the job every 500 ms until it is
 * done. A progress bar redrawn in place on a terminal; otherwise a plain
 * line every 2 s (a log file stays short) and a summary at the end.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define POLL_MS 500
#define PLAIN_EVERY_S 2.0

struct counts {
	long long total, delivered, bounced, deferred, expired, cancelled, suppressed;
	long long final;
	double rate;             /* delivered per second; <= 0 unknown */
};

struct watch {
	const struct cli *c;
	const char *id;
	double t0, last_line;
	long long d0;            /* delivered when we started */
	bool first;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long count(const json_t *k, const char *key)
{
	return json_integer_value(json_object_get(k, key));
}

/* The counters, and the rate: the daemon's, else measured since we began. */
static void read_counts(struct watch *w, const json_t *j, struct counts *n)
{
	const json_t *k = json_object_get(j, "counts");
	const json_t *r = json_object_get(json_object_get(j, "rate"), "delivered_per_s");
	double dt = now_s() - w->t0;

	n->total = json_integer_value(json_object_get(j, "recipients"));
	n->delivered = count(k, "delivered");
	n->bounced = count(k, "bounced");
	n->deferred = count(k, "deferred");
	n->expired = count(k, "expired");
	n->cancelled = count(k, "cancelled");
	n->suppressed = count(k, "suppressed");
	n->final = n->delivered + n->bounced + n->expired + n->cancelled + n->suppressed;
	if (w->first)
		w->d0 = n->delivered;
	n->rate = json_is_number(r) ? json_number_value(r)
	        : dt >= 1.0 ? (double)(n->delivered - w->d0) / dt : 0;
}

static void duration(double s, char *buf, size_t len)
{
	long t = (long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, len, "%lds", t);
}

static double percent(const struct counts *n)
{
	return n->total > 0 ? 100.0 * (double)n->final / (double)n->total : 100.0;
}

/* "4500 delivered  20 bounced  30 deferred  812/s  ETA 12s" */
static void summary(const struct counts *n, const char *sep, char *buf, size_t len)
{
	char eta[32] = "--";

	if (n->rate > 0 && n->total > n->final)
		duration((double)(n->total - n->final) / n->rate, eta, sizeof(eta));
	snprintf(buf, len, "%lld delivered%s%lld bounced%s%lld deferred%s%.0f/s%sETA %s",
		 n->delivered, sep, n->bounced, sep, n->deferred, sep,
		 n->rate > 0 ? n->rate : 0.0, sep, eta);
}

static int columns(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

static void draw_bar(const struct counts *n)
{
	char tail[256], bar[64];
	double pct = percent(n);

	summary(n, "  ", tail, sizeof(tail));
	int width = columns() - (int)strlen(tail) - 12;
	width = width < 10 ? 10 : width > 50 ? 50 : width;
	int fill = (int)(pct / 100.0 * width + 0.5);
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '-';
	bar[width] = 0;
	/* \r and clear-to-end: one line redrawn in place. */
	printf("\r[%s] %5.1f%%  %s\033[K", bar, pct, tail);
	fflush(stdout);
	cli_bar_open = true;
}

static void plain_line(struct watch *w, const struct counts *n)
{
	char tail[256];

	summary(n, ", ", tail, sizeof(tail));
	printf("job %s: %.1f%% final: %s\n", w->id, percent(n), tail);
	fflush(stdout);
}

static void final_line(struct watch *w, const json_t *j, const struct counts *n)
{
	char took[32];

	if (cli_bar_open)
		putchar('\n');
	cli_bar_open = false;
	duration(now_s() - w->t0, took, sizeof(took));
	const char *state = cli_jstr(j, "state");
	bool plain = !strcmp(state, "done");
	printf("job %s done%s%s%s: %lld recipients: %lld delivered, %lld bounced, "
	       "%lld expired, %lld cancelled, %lld suppressed; waited %s\n",
	       w->id, plain ? "" : " (", plain ? "" : state, plain ? "" : ")", n->total,
	       n->delivered, n->bounced, n->expired, n->cancelled, n->suppressed, took);
}

static void show(struct watch *w, const json_t *j, bool done)
{
	struct counts n;
	bool due = w->first || now_s() - w->last_line >= PLAIN_EVERY_S;

	read_counts(w, j, &n);
	w->first = false;
	if (w->c->json) {
		if (due || done)
			cli_print_json(j);
	} else if (w->c->tty) {
		draw_bar(&n);
	} else if (due && !done) {
		plain_line(w, &n);
	}
	if (due)
		w->last_line = now_s();
	if (done && !w->c->json)
		final_line(w, j, &n);
	fflush(stdout);
}

int cli_wait_job(const struct cli *c, const char *id)
{
	struct watch w = {.c = c, .id = id, .t0 = now_s(), .first = true};
	char *path = cli_job_path(id, "");
	int rc;

	for (;;) {
		json_t *j = cli_get_json(c, path, &rc);
		if (!j)
			break;
		bool done = json_is_true(json_object_get(j, "done"));
		show(&w, j, done);
		json_decref(j);
		if (done)
			break;
		if (!cli_sleep_ms(POLL_MS)) {
			rc = CLI_INTERRUPTED;
			break;
		}
	}
	if (rc == CLI_INTERRUPTED)
		cli_err("stopped waiting; job %s goes on (volley status %s)", id, id);
	free(path);
	return rc;
}
