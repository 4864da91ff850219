/*
 * The Nodemailer peer: bench/peers/nodemailer.mjs sends the run's workload
 * with Nodemailer's pooled SMTP transport, as a Node application would.
 * Nodemailer is installed from the npm registry into bench/peers/node_modules
 * on first use (the version pinned by bench/peers/package.json). The clock
 * runs from spawning node (its start-up, ~50 ms, included) until the sink has
 * every message node saw accepted; CPU and memory are node's own.
 */
#include "vbench.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* What nodemailer.mjs printed. */
struct nm_out {
	long sent, failed, bounced;
	long tx_sent, tx_failed;  /* mixed */
	double p50, p99;
	char first_error[256];
};

static int fail(struct vb_result *r, const char *fmt, const char *arg)
{
	snprintf(r->note, sizeof r->note, fmt, arg);
	r->ran = false;
	return -1;
}

/* dir/name into out (PATH_MAX); false if it does not fit. */
static bool path_in(char *out, const char *dir, const char *name)
{
	return snprintf(out, PATH_MAX, "%s/%s", dir, name) < PATH_MAX;
}

/* An executable called name on PATH, into out (PATH_MAX). */
static bool on_path(const char *name, char *out)
{
	const char *path = getenv("PATH");
	char dirs[4096];

	snprintf(dirs, sizeof dirs, "%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (path_in(out, d, name) && access(out, X_OK) == 0)
			return true;
	}
	return false;
}

/* Run argv to completion, its output to log; its exit status or -1. */
static int run(char *const argv[], const char *log)
{
	int st;
	pid_t pid = vb_spawn(argv, log, log);

	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* node and npm, from Debian's packages when the machine has none. */
int vb_node_ensure(const struct vb_env *e, char *node, struct vb_result *r)
{
	char npm[PATH_MAX], log[PATH_MAX];

	if (on_path("node", node) && on_path("npm", npm))
		return 0;
	if (!path_in(log, e->w->dir, "apt.log"))
		return fail(r, "%s", "the run's folder's path is too long");
	fprintf(stderr, "volley-bench: installing nodejs and npm (apt-get)\n");
	/* sudo -n: a password prompt would stop us in the background. */
	char *sudo = geteuid() ? "sudo" : NULL;
	char *update[] = { sudo, "-n", "apt-get", "update", "-qq", NULL };
	char *install[] = { sudo, "-n", "apt-get", "install", "-y", "-qq", "--no-install-recommends",
			    "nodejs", "npm", NULL };
	/* Without sudo, the argument lists start two further on. */
	int rc = run(update + 2 * !sudo, log);
	if (rc == 0)
		rc = run(install + 2 * !sudo, log);
	if (rc != 0 || !on_path("node", node))
		return fail(r, "node and npm are missing and apt-get could not install them "
			    "(see %.400s)", log);
	return 0;
}

/* Nodemailer in bench/peers/node_modules, from the npm registry if missing. */
static int ensure_nodemailer(const struct vb_env *e, struct vb_result *r)
{
	char peers[PATH_MAX], mod[PATH_MAX], log[PATH_MAX];
	struct stat st;

	if (!path_in(peers, e->src_dir, "bench/peers") ||
	    !path_in(mod, peers, "node_modules/nodemailer/package.json") ||
	    !path_in(log, e->w->dir, "npm.log"))
		return fail(r, "%s", "the source tree's or the run's path is too long");
	if (stat(mod, &st) == 0)
		return 0;
	fprintf(stderr, "volley-bench: installing Nodemailer into %s (npm)\n", peers);
	char *argv[] = { "npm", "install", "--prefix", peers, "--no-audit", "--no-fund", NULL };
	if (run(argv, log) != 0 || stat(mod, &st) != 0)
		return fail(r, "npm install of Nodemailer failed (see %.400s)", log);
	return 0;
}

/* Its transactional connections per address in the mixed scenario (as
 * Postfix's lane of its own). */
#define VB_NM_TX_SESSIONS 10

/* nodemailer.mjs's one JSON argument (json_dumps: the caller frees it);
 * times: the mixed scenario's file of transactional times, or NULL. */
static char *node_args(const struct vb_env *e, const struct vb_sink *s, long n,
		       const char *times)
{
	json_t *addrs = json_array();

	for (int i = 0; i < s->naddrs; i++)
		json_array_append_new(addrs, json_string(s->addr[i]));
	json_t *a = json_pack("{s:s, s:s, s:I, s:o, s:i, s:b, s:I, s:I}", "job", e->w->job,
			      "rcpts", e->w->rcpts, "count", (json_int_t)n, "addrs", addrs,
			      "port", s->port, "tls", e->sc->tls, "sessions",
			      (json_int_t)e->sc->peer_sessions, "rate",
			      (json_int_t)(e->sc->transactional ? e->sc->submit_rate : 0));
	if (a && times)
		json_object_set_new(a, "tx", json_pack("{s:s, s:s, s:I, s:I, s:i, s:s}", "job",
						       e->w->tx_job, "rcpts", e->w->tx_rcpts,
						       "rate", (json_int_t)e->sc->submit_rate, "max",
						       (json_int_t)e->sc->mixed_max, "sessions",
						       VB_NM_TX_SESSIONS, "times", times));
	char *j = a ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return j;
}

/* The transactional times nodemailer.mjs wrote ("index sent_ms
 * answered_ms"), into the mixed figures; -1 if there are none. */
static int read_times(const char *path, struct vb_mixres *m)
{
	FILE *f = fopen(path, "r");
	long i;
	double s, a;
	if (!f)
		return -1;
	while (fscanf(f, "%ld %lf %lf", &i, &s, &a) == 3)
		if (i >= 0 && i < m->cap) {
			m->sent[i] = s / 1000.0;
			m->acked[i] = a / 1000.0;
		}
	fclose(f);
	return 0;
}

static int read_out(const char *path, struct nm_out *o)
{
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	json_t *sent = json_object_get(j, "sent");
	const char *fe = json_string_value(json_object_get(j, "first_error"));

	if (!json_is_integer(sent)) {
		json_decref(j);
		return -1;
	}
	o->sent = (long)json_integer_value(sent);
	o->failed = (long)json_integer_value(json_object_get(j, "failed"));
	o->bounced = (long)json_integer_value(json_object_get(j, "bounced"));
	o->tx_sent = (long)json_integer_value(json_object_get(j, "tx_sent"));
	o->tx_failed = (long)json_integer_value(json_object_get(j, "tx_failed"));
	o->p50 = json_number_value(json_object_get(j, "p50_ms"));
	o->p99 = json_number_value(json_object_get(j, "p99_ms"));
	snprintf(o->first_error, sizeof o->first_error, "%s", fe ? fe : "");
	json_decref(j);
	return 0;
}

/* Exited, but not reaped yet (WNOWAIT): its /proc entry still answers. */
static bool exited(pid_t pid)
{
	siginfo_t si = { 0 };

	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       si.si_pid == pid;
}

/* Seconds from the mark until the sink first counted n messages (its
 * 100 ms series); the last sample's time if it never did. */
static double sink_time(const struct vb_result *r, long n)
{
	for (int i = 0; i < r->nseries; i++)
		if (r->sv[i] >= n)
			return r->st[i];
	return r->nseries ? r->st[r->nseries - 1] : 0;
}

/* Stop metering, reap node; its exit status. Its own CPU time is exact;
 * memory stays the meter's (PSS, the measure of every peer). */
static int reap(pid_t pid, struct vb_meter *m, struct vb_result *r)
{
	struct rusage ru = { 0 };
	int st = 0;

	vb_meter_stop(m, &r->cpu_s, &r->peak_mem_kb);
	if (wait4(pid, &st, 0, &ru) != pid)
		return -1;
	double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	if (cpu > r->cpu_s)
		r->cpu_s = cpu;
	return st;
}

/* Wait for node to exit and the sink to have what node sent, drawing
 * progress; false on timeout (node then killed). Node's exit status in *st. */
static bool follow(const struct vb_env *e, struct vb_sink *s, pid_t pid, long n,
		   struct vb_meter *m, struct vb_result *r, int *st, double t0)
{
	for (;;) {
		/* The 100 ms tick, cut short once the sink has them all (node
		 * then closes its connections and exits). */
		if (vb_sink_wait(s, n, 0.1))
			usleep(10000);
		vb_progress(e, "nodemailer", vb_sink_messages(s), n, vb_now() - t0);
		if (exited(pid)) {
			*st = reap(pid, m, r);
			return true;
		}
		if (vb_now() - t0 > (double)e->sc->timeout_s) {
			vb_meter_stop(m, &r->cpu_s, &r->peak_mem_kb);
			vb_stop(pid, 2000);
			return false;
		}
	}
}

/* mixed: the transactional figures, the bulk's time; false unless every
 * transactional message node saw accepted is at the sink. */
static bool finish_mixed(struct vb_sink *s, struct vb_result *r, const struct nm_out *o,
			 const char *times)
{
	struct vb_mixres *m = r->mx;
	if (m->alone) {
		m->bulk_s = r->seconds;
		return true;
	}
	m->tx_sent = o->tx_sent;
	m->tx_failed = o->tx_failed;
	bool ok = read_times(times, m) == 0 && vb_mix_latency(m, s->alog) && !o->tx_failed;
	m->bulk_s = vb_mix_bulk_time(r, r->messages);
	r->p50_ms = m->p50;
	r->p99_ms = m->p99;
	return ok;
}

/* After node exited: the sink catches up with what node saw accepted (a
 * stats line every 100 ms), then the figures. */
static int finish(struct vb_sink *s, struct vb_result *r, int st, const char *out,
		  const char *times)
{
	struct nm_out o = { 0 };

	if (read_out(out, &o) < 0) {
		snprintf(r->note, sizeof r->note, "node exited with status %d and no figures "
			 "(see %.400s and nodemailer.err)", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			 out);
		return -1;
	}
	/* Accepted means counted: the sink's next stats line has them. */
	vb_sink_wait(s, o.sent + o.tx_sent, 10);
	vb_result_series(r, s);
	r->sink_messages = vb_sink_messages(s);
	r->delivered = o.sent + o.tx_sent;
	r->bounced = o.bounced;
	r->other = o.failed - o.bounced;
	r->p50_ms = o.p50;
	r->p99_ms = o.p99;
	r->seconds = sink_time(r, o.sent + o.tx_sent > 0 ? o.sent + o.tx_sent : 1);
	r->ok = o.sent == r->messages && r->sink_messages == r->messages + o.tx_sent;
	if (r->mx && !finish_mixed(s, r, &o, times))
		r->ok = false;
	if (r->mx)
		r->messages += o.tx_sent;
	r->ran = o.sent > 0;
	if (!r->ok)
		snprintf(r->note, sizeof r->note, "%ld of %ld sent, %ld failed (Nodemailer does not "
			 "retry), the sink has %ld%s%s", o.sent, r->messages, o.failed,
			 r->sink_messages, *o.first_error ? "; first error: " : "", o.first_error);
	return r->ran ? 0 : -1;
}

int vb_run_nodemailer(const struct vb_env *e, struct vb_sink *s, struct vb_result *r)
{
	const struct vb_scen *sc = e->sc;
	long n = vb_peer_messages(sc);
	char node[PATH_MAX], script[PATH_MAX], out[PATH_MAX], err[PATH_MAX], times[PATH_MAX];

	memset(r, 0, sizeof *r);
	snprintf(r->peer, sizeof r->peer, "nodemailer");
	r->messages = n;
	r->p50_ms = r->p99_ms = -1;
	if (sc->mixed)
		r->mx = vb_mix_new(sc, e->bulk_only, n);
	if (vb_node_ensure(e, node, r) < 0 || ensure_nodemailer(e, r) < 0)
		return -1;
	if (!path_in(script, e->src_dir, "bench/peers/nodemailer.mjs") ||
	    !path_in(out, e->dir, "nodemailer.out") || !path_in(err, e->dir, "nodemailer.err") ||
	    !path_in(times, e->dir, "tx-times"))
		return fail(r, "%s", "the source tree's or the run's path is too long");
	char *args = node_args(e, s, n, r->mx && !r->mx->alone ? times : NULL);
	if (!args)
		return fail(r, "%s", "cannot build nodemailer.mjs's arguments");
	if (e->verbose)
		fprintf(stderr, "volley-bench: %s %s '%s'\n", node, script, args);
	char *argv[] = { node, script, args, NULL };
	struct vb_meter m;
	int st = 0;
	unlink(out);    /* vb_spawn appends: no stale figures */
	vb_sink_mark(s);
	double t0 = vb_now();
	if (r->mx)
		r->mx->t0 = vl_wall_time();
	pid_t pid = vb_spawn(argv, out, err);
	free(args);
	if (pid < 0)
		return fail(r, "cannot start node: %s", strerror(errno));
	vb_meter_start(&m, pid);
	bool done = follow(e, s, pid, n, &m, r, &st, t0);
	vb_progress_end(e);
	if (!done) {
		vb_result_series(r, s);
		r->sink_messages = vb_sink_messages(s);
		r->seconds = vb_now() - t0;
		snprintf(r->note, sizeof r->note, "timed out after %ld s with %ld of %ld messages "
			 "at the sink; node killed", sc->timeout_s, r->sink_messages, n);
		return -1;
	}
	return finish(s, r, st, out, times);
}
