/*
 * The Haraka peer (`--compare haraka`): Haraka, the Node.js MTA, as an
 * outbound relay, fed the same messages as Postfix by the same injector,
 * measured end to end. Haraka is installed from the npm registry into
 * bench/peers/node_modules on first use (the version bench/peers/package.json
 * pins).
 *
 * Instance: `haraka -i DIR/haraka` writes its skeleton; then:
 *  - smtp.ini: listen on 127.0.0.1:<free port>, nodes=cpus (a cluster
 *    worker per core, as Postfix and volley use every core);
 *  - plugins: bench/peers/haraka/bench_route.js only: every connection
 *    relays, and get_mx sends d<N>.s<A>.bench.test to sink address A;
 *  - outbound.ini: concurrency_max = the scenario's peer_sessions, TLS on
 *    for TLS scenarios (tls.ini [outbound] does not verify the sink's
 *    self-signed certificate, as Postfix's encrypt does not); retries 5 s
 *    apart (Haraka's minimum);
 *  - its queue in DIR/haraka/queue: Haraka writes each message there before
 *    its 250 (without fsync: less durable than Postfix and volley).
 * Haraka 3 has no outbound connection pool: a connection per message (and a
 * TLS handshake per message), as its outbound code is written.
 *
 * Measured as Postfix: the clock runs from the first injection until the
 * sink has every accepted message; CPU and peak memory are Haraka's process
 * tree's. delivered is the sink's count (Haraka logs no per-message line at
 * the warn level it runs at). volley-bench refuses it where it does not
 * apply: the faults scenario (nothing here counts its bounces) and
 * submission.
 */
#include "vbench.h"
#include "vbench_inject.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define VB_HK_INJECT_CONNS 8

struct vb_hk {
	char dir[PATH_MAX];        /* the run's folder + /haraka */
	char bin[PATH_MAX + 64], log[PATH_MAX + 16];
	int port;
	pid_t pid;
	char version[32];
};

static int hk_fail(struct vb_result *r, const char *what, const char *arg)
{
	snprintf(r->note, sizeof r->note, what, arg);
	return -1;
}

static int hk_write(const struct vb_hk *h, const char *name, const char *text)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/%s", h->dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -1;
}

/* Haraka in bench/peers/node_modules, from the npm registry if missing. */
static int hk_install(const struct vb_env *e, struct vb_hk *h, struct vb_result *r)
{
	char peers[PATH_MAX], pkg[PATH_MAX + 64], log[PATH_MAX];
	struct stat st;

	snprintf(peers, sizeof peers, "%s/bench/peers", e->src_dir);
	snprintf(pkg, sizeof pkg, "%s/node_modules/Haraka/package.json", peers);
	snprintf(h->bin, sizeof h->bin, "%s/node_modules/Haraka/bin/haraka", peers);
	snprintf(log, sizeof log, "%s/npm-haraka.log", e->w->dir);
	char node[PATH_MAX];
	if (vb_node_ensure(e, node, r) < 0)
		return -1;
	if (stat(pkg, &st) != 0) {
		fprintf(stderr, "volley-bench: installing Haraka into %s (npm)\n", peers);
		char *argv[] = { "npm", "install", "--prefix", peers, "--no-audit", "--no-fund", NULL };
		int status;
		pid_t pid = vb_spawn(argv, log, log);
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0 || stat(pkg, &st) != 0)
			return hk_fail(r, "npm install of Haraka failed (see %.400s)", log);
	}
	json_t *j = json_load_file(pkg, 0, NULL);
	snprintf(h->version, sizeof h->version, "%s",
		 j && json_string_value(json_object_get(j, "version")) ?
		 json_string_value(json_object_get(j, "version")) : "?");
	json_decref(j);
	return 0;
}

/* The skeleton (haraka -i), then our files over it. */
static int hk_setup(const struct vb_env *e, const struct vb_sink *s, struct vb_hk *h,
		    struct vb_result *r)
{
	char text[8192], src[PATH_MAX + 64];
	int status;

	snprintf(h->dir, sizeof h->dir, "%s/haraka", e->dir);
	snprintf(h->log, sizeof h->log, "%s/haraka.log", e->dir);
	char *init[] = { "node", h->bin, "-i", h->dir, NULL };
	pid_t pid = vb_spawn(init, h->log, h->log);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		return hk_fail(r, "haraka -i failed (see %.400s)", h->log);
	if ((h->port = vb_free_port()) < 0)
		return hk_fail(r, "%s", "no free port for Haraka");
	size_t n = (size_t)snprintf(text, sizeof text, "{");
	for (int i = 0; i < s->naddrs && n < sizeof text; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "%s\"%d\": {\"host\": \"%s\", "
				      "\"port\": %d}", i ? ", " : "", i, s->addr[i], s->port);
	snprintf(text + n, sizeof text - n, "}\n");
	if (hk_write(h, "config/bench_routes.json", text) < 0)
		return hk_fail(r, "cannot write in %.400s", h->dir);
	snprintf(text, sizeof text, "listen=127.0.0.1:%d\nnodes=cpus\n", h->port);
	int rc = hk_write(h, "config/smtp.ini", text);
	snprintf(text, sizeof text, "enable_tls=%s\nconcurrency_max=%ld\n"
		 "temp_fail_intervals=5s,5s,10s,20s\n", e->sc->tls ? "true" : "false",
		 e->sc->peer_sessions);
	rc |= hk_write(h, "config/outbound.ini", text);
	rc |= hk_write(h, "config/tls.ini", "[outbound]\nrejectUnauthorized=false\n");
	rc |= hk_write(h, "config/log.ini", "[main]\nlevel=warn\ntimestamps=true\n");
	rc |= hk_write(h, "config/plugins", "bench_route\n");
	snprintf(src, sizeof src, "%s/bench/peers/haraka/bench_route.js", e->src_dir);
	if (rc || vb_system("cp '%s' '%s/plugins/bench_route.js'", src, h->dir) != 0)
		return hk_fail(r, "cannot write Haraka's configuration in %.400s", h->dir);
	return 0;
}

static int hk_start(struct vb_hk *h, struct vb_result *r)
{
	char *argv[] = { "node", h->bin, "-c", h->dir, NULL };

	if ((h->pid = vb_spawn(argv, h->log, h->log)) < 0)
		return hk_fail(r, "%s", "cannot start Haraka");
	if (!vb_wait_port("127.0.0.1", h->port, 30000))
		return hk_fail(r, "Haraka did not listen within 30 s (see %.400s)", h->log);
	return 0;
}

/* Until the sink has every accepted message, the timeout, or Haraka's end. */
static int hk_wait(const struct vb_env *e, struct vb_sink *s, struct vb_hk *h,
		   struct vb_inject *in, double t0, char *why, size_t len)
{
	double last = 0;

	for (;;) {
		long got = vb_sink_messages(s), n = in->n;
		bool injected = vb_inject_finished(in) == n;
		double now = vb_now();
		if (injected && got >= atomic_load(&in->accepted))
			return 0;
		if (e->tty && now - last >= 0.2) {
			vb_progress(e, "haraka", got, n, now - t0);
			last = now;
		}
		if (waitpid(h->pid, NULL, WNOHANG) == h->pid) {
			h->pid = 0;
			snprintf(why, len, "Haraka stopped during the run (see %.400s)", h->log);
			return -1;
		}
		if (now - t0 > (double)e->sc->timeout_s) {
			snprintf(why, len, "timed out after %ld s: the sink has %ld of %ld",
				 e->sc->timeout_s, got, n);
			return -1;
		}
		usleep(20000);
	}
}

static bool hk_dead(void *arg, char *why, size_t len)
{
	struct vb_hk *h = arg;
	if (waitpid(h->pid, NULL, WNOHANG) != h->pid)
		return false;
	h->pid = 0;
	snprintf(why, len, "Haraka stopped during the run (see %.400s)", h->log);
	return true;
}

/* mixed: the transactional stream's figures (tx NULL: the bulk alone). */
static bool hk_mixed(struct vb_sink *s, struct vb_inject *tx, struct vb_result *r)
{
	struct vb_mixres *m = r->mx;
	if (!tx) {
		m->bulk_s = r->seconds;
		return true;
	}
	m->tx_sent = atomic_load(&tx->accepted);
	m->tx_failed = atomic_load(&tx->refused);
	bool ok = vb_mix_latency(m, s->alog) && !m->tx_failed;
	r->p50_ms = m->p50;
	r->p99_ms = m->p99;
	r->messages += m->tx_sent;
	return ok;
}

/* The transactional scenario's latency: every injected message at the
 * sink's accept log, exactly once, or the run is not all counted. */
static void hk_latency(struct vb_sink *s, struct vb_inject *in, struct vb_mixres *lat,
		       struct vb_result *r)
{
	lat->tx_sent = atomic_load(&in->accepted);
	if (!vb_mix_latency(lat, s->alog)) {
		r->ok = false;
		snprintf(r->note, sizeof r->note, "%s", lat->why);
	}
	r->p50_ms = lat->p50;
	r->p99_ms = lat->p99;
}

static int hk_measure(const struct vb_env *e, struct vb_sink *s, struct vb_hk *h,
		      struct vb_inject *in, struct vb_inject *tx, struct vb_result *r)
{
	struct vb_meter m;

	vb_meter_start(&m, h->pid);
	vb_sink_mark(s);
	double t0 = vb_now();
	if (r->mx)
		r->mx->t0 = vl_wall_time();
	int rc = vb_inject_start(in) < 0 || (tx && vb_inject_start(tx) < 0) ? -1 : 0;
	if (rc < 0)
		snprintf(r->note, sizeof r->note, "injector: %.200s%.200s", in->first_err,
			 tx ? tx->first_err : "");
	else if (tx)
		rc = vb_mix_inject_wait(e, s, in, tx, r->mx, t0, hk_dead, h, "haraka", r->note,
					sizeof r->note);
	else
		rc = hk_wait(e, s, h, in, t0, r->note, sizeof r->note);
	r->seconds = vb_now() - t0;
	vb_meter_stop(&m, &r->cpu_s, &r->peak_mem_kb);
	if (e->tty)
		vb_progress_end(e);
	vb_inject_abort(in);
	vb_inject_join(in);
	if (tx) {
		vb_inject_abort(tx);
		vb_inject_join(tx);
	}
	long refused = atomic_load(&in->refused);
	r->sink_messages = r->delivered = vb_sink_messages(s);
	r->other = rc == 0 ? refused : 0;
	vb_result_series(r, s);
	bool mx_ok = !r->mx || hk_mixed(s, tx, r);
	r->ok = rc == 0 && !refused && mx_ok && r->delivered == r->messages;
	if (rc == 0 && refused)
		snprintf(r->note, sizeof r->note, "%ld of %ld injections refused (first: %s)",
			 refused, in->n, in->first_err);
	else if (rc == 0)
		snprintf(r->note, sizeof r->note,
			 "Haraka %s, %ld outbound deliveries at once, a connection%s per message "
			 "(Haraka 3 has no outbound pool), its queue on disk without fsync; "
			 "injected over %d SMTP connections%s; delivered counted at the sink%s",
			 h->version, e->sc->peer_sessions, e->sc->tls ? " and a TLS handshake" : "",
			 in->o.conns, tx ? " (and 32 for the transactional stream: Haraka has no "
			 "priority or lane of its own for it)" : "",
			 e->sc->dkim[0] ? "; not DKIM-signed" : "");
	return rc;
}

int vb_run_haraka(const struct vb_env *e, struct vb_sink *s, struct vb_result *r)
{
	const struct vb_scen *sc = e->sc;
	struct vb_hk h = { 0 };
	struct vb_inject *in, *tx = NULL;
	long n = vb_haraka_messages(sc);
	char why[400] = "";
	int rc = -1;

	snprintf(r->peer, sizeof r->peer, "haraka");
	r->p50_ms = r->p99_ms = -1;
	r->messages = n;
	if (hk_install(e, &h, r) < 0 || hk_setup(e, s, &h, r) < 0)
		return -1;
	in = vl_calloc(1, sizeof *in);
	struct vb_inject_opts io = {
		.job = e->w->job, .rcpts = e->w->rcpts, .n = n, .hostname = "mta1.bench.example",
		.ip = "127.0.0.1", .port = h.port, .conns = VB_HK_INJECT_CONNS,
		.rate = sc->transactional ? (double)sc->submit_rate : 0,
	};
	if (sc->mixed)
		r->mx = vb_mix_new(sc, e->bulk_only, n);
	/* transactional: Haraka logs no latency; the injection's start to the
	 * sink's accept log, as the mixed scenario takes it */
	struct vb_mixres *lat = sc->transactional ? vb_mix_new(sc, false, n) : NULL;
	if (lat) {
		io.sent_at = lat->sent;
		io.acked_at = lat->acked;
	}
	if (vb_inject_prepare(in, &io, why, sizeof why) < 0) {
		snprintf(r->note, sizeof r->note, "injector: %s", why);
	} else if (r->mx && !r->mx->alone && !(tx = vb_mix_injector(e, r->mx, why, sizeof why))) {
		snprintf(r->note, sizeof r->note, "injector: %s", why);
	} else if (hk_start(&h, r) == 0) {
		r->ran = true;
		if (tx)
			tx->o.port = h.port;
		rc = hk_measure(e, s, &h, in, tx, r);
		if (lat)
			hk_latency(s, in, lat, r);
	}
	vb_mix_free(lat);
	if (h.pid > 0)
		vb_stop(h.pid, 5000);
	vb_inject_free(in);
	free(in);
	if (tx) {
		vb_inject_free(tx);
		free(tx);
	}
	if (e->verbose)
		fprintf(stderr, "volley-bench: haraka: config, queue and log in %s\n", h.dir);
	return rc;
}
