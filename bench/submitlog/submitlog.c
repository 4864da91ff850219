/*
 * volley-submitlog-bench: what SMTP submission's storage costs. THREADS
 * sessions each store ITEMS / THREADS messages of SIZE octets, one at a
 * time (a session waits for its message to be durable before the next,
 * as an SMTP session waits to answer 250), two ways in the same run:
 *
 *   log      sub_log_put: group commit into the submission log (one
 *            fdatasync per batch), jobs made afterwards without fsync
 *            and made durable by one syncfs per segment;
 *   per-job  the API's path: sched_intake_begin/add/message/commit, its
 *            fsyncs (table, message, job.json, tmp/<id>, jobs/, tmp/)
 *            before the answer.
 *
 * Prints messages per second until every message was acknowledged, the
 * fdatasyncs (log) or fsyncs (per job) per second, and the ratio.
 *   volley-submitlog-bench [--items N] [--threads T] [--size BYTES]
 *                          [--per-job-items N] [--dir DIR] | --version
 */
#include "../../submit/submit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RCPTS 2
#define PER_JOB_FSYNCS 6          /* table, message, job.json, tmp/<id>, jobs/, tmp/ */

struct run {
	size_t items, threads, size;
	const char *base;
	struct cfg cfg;
	struct sched_spool *sp;
	struct sched *sc;
	struct sub_log *log;
};

struct session {
	struct run *r;
	size_t n, no;
	char *msg;
	size_t len;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool answered;
	int rc;
};

static double now(void)
{
	return (double)vl_now_ns() / 1e9;
}

/* A finished message of about size octets, its own Message-ID. */
static char *message(size_t no, size_t size, size_t *len)
{
	struct vl_buf b;

	vl_buf_init(&b);
	vl_buf_printf(&b, "From: Shop <orders@shop.example>\r\nTo: customer@example.net\r\n"
		      "Subject: Your order %zu\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
		      "Message-ID: <%zu.bench@shop.example>\r\nMIME-Version: 1.0\r\n"
		      "Content-Type: text/plain; charset=utf-8\r\n\r\n", no, no);
	while (b.len + 2 < size) {
		size_t line = size - b.len - 2 < 76 ? size - b.len - 2 : 76;
		for (size_t i = 0; i < line; i++)
			vl_buf_append(&b, &"abcdefghijklmnopqrstuvwxyz "[(i + no) % 27], 1);
		vl_buf_appends(&b, "\r\n");
	}
	*len = b.len;
	return b.p;
}

static void rcpts(size_t no, char buf[RCPTS][64], const char *list[RCPTS])
{
	for (size_t i = 0; i < RCPTS; i++) {
		snprintf(buf[i], 64, "c%zu.%zu@d%zu.example", no, i, no % 100);
		list[i] = buf[i];
	}
}

/* ---- the log ---- */

static void on_done(void *arg, int rc, const char *id)
{
	struct session *s = arg;

	(void)id;
	pthread_mutex_lock(&s->mu);
	s->answered = true;
	s->rc = rc;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void *log_session(void *arg)
{
	struct session *s = arg;
	char rb[RCPTS][64];
	const char *rl[RCPTS];

	for (size_t k = 0; k < s->n; k++) {
		rcpts(s->no + k, rb, rl);
		struct sub_item it = { .sender = "bounces@shop.example", .rcpts = rl,
				       .nrcpt = RCPTS, .msg = s->msg, .len = s->len,
				       .transactional = true, .user = "shop", .client = "127.0.0.1",
				       .done = on_done, .arg = s };
		s->answered = false;
		while (sub_log_put(s->r->log, &it) < 0) {
			if (errno != EAGAIN) {
				fprintf(stderr, "put: %s\n", strerror(errno));
				exit(1);
			}
			usleep(200);
		}
		pthread_mutex_lock(&s->mu);
		while (!s->answered)
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
		if (s->rc) {
			fprintf(stderr, "a message was not stored\n");
			exit(1);
		}
	}
	return NULL;
}

/* ---- the per-job path ---- */

static void *job_session(void *arg)
{
	struct session *s = arg;
	char rb[RCPTS][64], err[256], id[SCHED_ID_LEN + 1];
	const char *rl[RCPTS];
	size_t first;

	for (size_t k = 0; k < s->n; k++) {
		sched_new_id(id);
		rcpts(s->no + k, rb, rl);
		struct sched_intake *in = sched_intake_begin(s->r->sp, id, err, sizeof err);
		if (!in) {
			fprintf(stderr, "%s\n", err);
			exit(1);
		}
		for (size_t i = 0; i < RCPTS; i++) {
			struct sched_rcpt r = { .email = rl[i], .email_len = strlen(rl[i]) };
			sched_intake_add(in, &r, &first);
		}
		json_t *meta = json_pack("{s:s, s:f, s:f, s:i, s:{s:s, s:b, s:s}, s:{s:s, s:s}}",
					 "id", id, "created", vl_wall_time(),
					 "expires", vl_wall_time() + 86400, "recipients", RCPTS,
					 "job", "envelope_sender", "bounces@shop.example",
					 "raw_message", 1, "priority", "transactional",
					 "submission", "user", "shop", "client", "127.0.0.1");
		char *text = json_dumps(meta, JSON_COMPACT);
		if (sched_intake_message(in, s->msg, s->len) < 0 ||
		    sched_intake_commit(in, text, strlen(text)) < 0) {
			fprintf(stderr, "commit: %s\n", strerror(errno));
			exit(1);
		}
		sched_job_add(s->r->sc, id, meta);
		free(text);
		json_decref(meta);
	}
	return NULL;
}

/* ---- the runs ---- */

static void open_spool(struct run *r, const char *name)
{
	char err[256], *d;

	if (asprintf(&d, "%s/%s", r->base, name) < 0)
		exit(1);
	r->cfg.data_dir = d;
	r->cfg.max_message_size = 64 << 20;
	r->cfg.max_age_ms = 86400000;
	if (!(r->sp = sched_spool_open(d, err, sizeof err)) ||
	    !(r->sc = sched_new(&r->cfg, r->sp, err, sizeof err))) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
}

static void close_spool(struct run *r)
{
	sched_free(r->sc);
	sched_spool_close(r->sp);
	free(r->cfg.data_dir);
}

static double sessions(struct run *r, size_t items, void *(*fn)(void *))
{
	struct session *s = vl_calloc(r->threads, sizeof *s);
	pthread_t *t = vl_calloc(r->threads, sizeof *t);
	double t0 = now();

	for (size_t i = 0; i < r->threads; i++) {
		s[i].r = r;
		s[i].n = items / r->threads + (i < items % r->threads);
		s[i].no = i * (items / r->threads + 1);
		s[i].msg = message(i, r->size, &s[i].len);
		pthread_mutex_init(&s[i].mu, NULL);
		pthread_cond_init(&s[i].cv, NULL);
	}
	for (size_t i = 0; i < r->threads; i++)
		if (pthread_create(&t[i], NULL, fn, &s[i]) != 0)
			exit(1);
	for (size_t i = 0; i < r->threads; i++)
		pthread_join(t[i], NULL);
	double secs = now() - t0;
	for (size_t i = 0; i < r->threads; i++) {
		free(s[i].msg);
		pthread_mutex_destroy(&s[i].mu);
		pthread_cond_destroy(&s[i].cv);
	}
	free(s);
	free(t);
	return secs;
}

static double run_log(struct run *r)
{
	char err[256];
	struct sub_log_stats st;

	open_spool(r, "log");
	if (!(r->log = sub_log_open(&r->cfg, r->sp, r->sc, err, sizeof err))) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	double t0 = now(), acked = sessions(r, r->items, log_session);
	sub_log_stats(r->log, &st);
	sub_log_close(r->log);        /* every job made, synced, segments gone */
	double all = now() - t0;
	double rate = (double)r->items / acked;
	printf("log      %8zu msgs  %7.2f s  %9.0f msg/s acknowledged  %7.0f fdatasync/s "
	       "(%llu syncs, %.1f msgs a batch)\n", r->items, acked, rate,
	       (double)st.syncs / acked, (unsigned long long)st.syncs,
	       st.batches ? (double)st.accepted / (double)st.batches : 0.0);
	printf("         jobs made and synced, segments deleted: %.2f s after the start "
	       "(%.0f msg/s)\n", all, (double)r->items / all);
	close_spool(r);
	return rate;
}

static double run_jobs(struct run *r, size_t items)
{
	open_spool(r, "jobs");
	double secs = sessions(r, items, job_session);
	double rate = (double)items / secs;
	printf("per-job  %8zu msgs  %7.2f s  %9.0f msg/s acknowledged  %7.0f fsync/s "
	       "(%d a job)\n", items, secs, rate, rate * PER_JOB_FSYNCS, PER_JOB_FSYNCS);
	close_spool(r);
	return rate;
}

static int usage(void)
{
	fprintf(stderr, "usage: volley-submitlog-bench [--items N] [--threads T] [--size BYTES] "
		"[--per-job-items N] [--dir DIR]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct run r = { .items = 50000, .threads = 50, .size = 4096 };
	size_t per_job = 0;
	const char *dir = NULL;

	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("volley-submitlog-bench %s\n", VL_VERSION);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		uint64_t v;
		if (i + 1 >= argc)
			return usage();
		if (!strcmp(argv[i], "--dir")) {
			dir = argv[++i];
			continue;
		}
		if (vl_parse_u64(argv[i + 1], &v) < 0 || v == 0)
			return usage();
		if (!strcmp(argv[i], "--items"))
			r.items = v;
		else if (!strcmp(argv[i], "--threads"))
			r.threads = v;
		else if (!strcmp(argv[i], "--size"))
			r.size = v;
		else if (!strcmp(argv[i], "--per-job-items"))
			per_job = v;
		else
			return usage();
		i++;
	}
	if (r.threads > r.items)
		r.threads = r.items;
	per_job = per_job ? per_job : r.items;
	char tmpl[] = "/tmp/volley-submitlog-XXXXXX", *base;
	if (dir) {
		if (asprintf(&base, "%s/volley-submitlog-XXXXXX", dir) < 0)
			return 1;
	} else {
		base = vl_strdup(tmpl);
	}
	if (!mkdtemp(base)) {
		perror(base);
		return 1;
	}
	r.base = base;
	vl_log_set_level(VL_LOG_WARN);
	printf("== SMTP submission storage: %zu messages of %zu octets, %d recipients each, "
	       "%zu sessions, %ld cores, in %s\n", r.items, r.size, RCPTS, r.threads,
	       sysconf(_SC_NPROCESSORS_ONLN), base);
	double a = run_log(&r), b = run_jobs(&r, per_job);
	printf("ratio    log / per-job: %.1fx the messages per second\n", a / b);
	char *cmd;
	if (asprintf(&cmd, "rm -rf '%s'", base) >= 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	free(cmd);
	free(base);
	return 0;
}
