/* volley-sink: threads, signals and counters. See docs/sink.md. */
#include "sink.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct thread {
	pthread_t tid;
	struct smtpd_worker *w;
	struct sink_ctx hooks;
	atomic_bool *stop;
	int rc;
};

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	t->rc = smtpd_worker_run(t->w, t->stop);
	return NULL;
}

/* Thousands of sessions need thousands of descriptors: take the hard
 * limit, and, where allowed (root), more than that. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	struct rlimit want = {.rlim_cur = 1 << 18, .rlim_max = 1 << 18};
	if (rl.rlim_max >= want.rlim_max || setrlimit(RLIMIT_NOFILE, &want) < 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void print_stats(const struct sink_conf *c, struct thread *t, int n,
			struct smtpd_stats **each, struct sink_prof_shared *prof,
			struct sink_alog *alog)
{
	struct smtpd_stats sum;
	struct vl_buf line;

	for (int i = 0; i < n; i++)
		each[i] = smtpd_worker_stats(t[i].w);
	smtpd_stats_sum(&sum, each, n);
	vl_buf_init(&line);
	sink_stats_json(&sum, c, prof, alog, &line);
	fwrite(line.p, 1, line.len, stdout);
	fflush(stdout);
	vl_buf_free(&line);
}

/* Wait for SIGINT/SIGTERM, printing counters every stats_every_ms. */
static void wait_for_signal(const struct sink_conf *c, struct thread *t,
			    struct smtpd_stats **each, struct sink_prof_shared *prof,
			    struct sink_alog *alog)
{
	sigset_t set;
	uint64_t next = vl_now_ms() + c->stats_every_ms;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	for (;;) {
		uint64_t wait = c->stats_every_ms ? 0 : 3600000;
		if (c->stats_every_ms) {
			uint64_t now = vl_now_ms();
			if (now >= next) {
				print_stats(c, t, c->threads, each, prof, alog);
				next += c->stats_every_ms;
				if (next <= now)
					next = now + c->stats_every_ms;
			}
			/* Late already (a busy machine): do not let the subtraction wrap
			 * into a wait of 500 million years. */
			now = vl_now_ms();
			wait = next > now ? next - now + 1 : 1;
		}
		struct timespec ts = {.tv_sec = (time_t)(wait / 1000),
				      .tv_nsec = (long)(wait % 1000) * 1000000};
		int sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM)
			return;
	}
}

int main(int argc, char **argv)
{
	struct sink_conf conf;
	char err[512];
	int rc = sink_conf_parse(&conf, argc, argv, err, sizeof err);

	if (rc > 0)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "volley-sink: %s\n", err);
		sink_usage(stderr);
		return 2;
	}
	vl_log_set_level(conf.quiet ? VL_LOG_ERROR : VL_LOG_INFO);
	raise_nofile();

	/* Signals go to the main thread's sigtimedwait, never to a worker. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct sink_store *store = NULL;
	if (conf.maildir && !(store = sink_store_open(conf.maildir, err, sizeof err))) {
		fprintf(stderr, "volley-sink: %s\n", err);
		return 1;
	}
	SSL_CTX *tls = NULL;
	if (conf.tls && !(tls = tls_server_ctx_new(conf.cert, conf.key, conf.hostname,
						   err, sizeof err))) {
		fprintf(stderr, "volley-sink: %s\n", err);
		return 1;
	}
	struct sink_alog *alog = NULL;
	if (conf.accept_log &&
	    !(alog = sink_alog_open(conf.accept_log, conf.accept_glob, err, sizeof err))) {
		fprintf(stderr, "volley-sink: %s\n", err);
		return 1;
	}
	struct sink_prof_shared *prof = NULL;
	if (conf.has_profile) {
		prof = vl_calloc(1, sizeof *prof);
		pthread_mutex_init(&prof->mu, NULL);
		sink_prof_table_init(&prof->t, conf.profile_ips);
	}
	atomic_bool stop = false;
	_Atomic uint64_t conns_open = 0;
	struct thread *t = vl_calloc((size_t)conf.threads, sizeof *t);
	struct smtpd_stats **each = vl_calloc((size_t)conf.threads, sizeof *each);
	for (int i = 0; i < conf.threads; i++) {
		sink_ctx_init(&t[i].hooks, &conf, (unsigned)i, store, prof, alog);
		t[i].w = smtpd_worker_new(&conf.smtpd, &sink_hooks, &t[i].hooks, (unsigned)i, tls,
					  &conns_open, err, sizeof err);
		if (!t[i].w) {
			fprintf(stderr, "volley-sink: %s\n", err);
			return 1;
		}
		t[i].stop = &stop;
	}
	for (int i = 0; i < conf.threads; i++)
		pthread_create(&t[i].tid, NULL, thread_main, &t[i]);
	for (int i = 0; i < conf.nlisten; i++)
		vl_log(VL_LOG_INFO, "volley-sink listening on %s:%u%s", conf.listen[i].host,
		       conf.listen[i].port, conf.implicit_tls ? " (implicit TLS)" :
		       conf.tls ? " (STARTTLS)" : "");
	if (conf.has_profile)
		vl_log(VL_LOG_INFO, "volley-sink profile %s: %u connections, %.2f messages/s, "
		       "%u messages a connection, %u recipients a message per client IP; "
		       "new IPs deferred %.1fs, then ramped from %.0f%% over %.1fs",
		       conf.profile.name, conf.profile.max_conns, conf.profile.rate,
		       conf.profile.msgs_per_conn, conf.profile.rcpts_per_msg,
		       (double)conf.profile.new_defer_ms / 1000, conf.profile.ramp_start * 100,
		       (double)conf.profile.ramp_ms / 1000);

	wait_for_signal(&conf, t, each, prof, alog);
	atomic_store(&stop, true);
	rc = 0;
	for (int i = 0; i < conf.threads; i++) {
		pthread_join(t[i].tid, NULL);
		if (t[i].rc)
			rc = 1;
	}
	print_stats(&conf, t, conf.threads, each, prof, alog);
	for (int i = 0; i < conf.threads; i++)
		smtpd_worker_free(t[i].w);
	sink_store_close(store);
	sink_alog_close(alog);
	if (prof) {
		sink_prof_table_free(&prof->t);
		pthread_mutex_destroy(&prof->mu);
		free(prof);
	}
	tls_ctx_free(tls);
	free(t);
	free(each);
	sink_conf_free(&conf);
	return rc;
}
