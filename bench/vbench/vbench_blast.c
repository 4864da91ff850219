/*
 * The ceiling as a peer (--compare blast): volley-blast sends one
 * pre-rendered transaction of the scenario's size, again and again, over
 * the scenario's sessions, to the first sink address, and does no other
 * work: the ceiling volley end to end is measured against. In TLS
 * scenarios it does STARTTLS on each connection (sessions resumed) and
 * sends each transaction as one SSL_write, so the ceiling is like for like.
 * It sends as many messages as volley does (not the peers' share): a
 * ceiling measured over half a second is mostly start-up.
 */
#include "vbench.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int wait_blast(const struct vb_env *e, struct vb_sink *s, pid_t pid, long n,
		      double t0, int *status, long *maxrss_kb)
{
	double end = t0 + (double)e->sc->timeout_s;
	struct rusage ru = { 0 };
	while (wait4(pid, status, WNOHANG, &ru) == 0) {
		vb_progress(e, "blast", vb_sink_messages(s), n, vb_now() - t0);
		if (vb_now() > end) {
			vb_stop(pid, 1000);
			return -1;
		}
		usleep(20000);
	}
	*maxrss_kb = ru.ru_maxrss;
	return 0;
}


int vb_run_blast(const struct vb_env *e, struct vb_sink *s, struct vb_result *r)
{
	const struct vb_scen *sc = e->sc;
	long n = sc->recipients;
	char bin[PATH_MAX], route[64], conns[32], msgs[32], size[32], out[300];
	snprintf(bin, sizeof bin, "%s/volley-blast", e->bin_dir);
	snprintf(route, sizeof route, "%s:%d", s->addr[0], s->port);
	snprintf(conns, sizeof conns, "%ld", sc->sessions < n ? sc->sessions : n);
	snprintf(msgs, sizeof msgs, "%ld", n);
	snprintf(size, sizeof size, "%ld", e->w->msg_bytes > 0 ? e->w->msg_bytes : sc->msg_size);
	snprintf(out, sizeof out, "%s/blast/blast.json", e->w->dir);
	char *argv[] = { bin, "--route", route, "--conns", conns, "--messages", msgs,
			 "--size", size, sc->tls ? "--tls" : NULL, NULL };
	struct vb_meter m;
	int status = 0;

	snprintf(r->peer, sizeof r->peer, "blast");
	r->messages = n;
	r->p50_ms = r->p99_ms = -1;
	vb_sink_mark(s);
	double t0 = vb_now();
	pid_t pid = vb_spawn(argv, NULL, out);
	if (pid < 0) {
		snprintf(r->note, sizeof r->note, "cannot start %.400s", bin);
		return -1;
	}
	vb_meter_start(&m, pid);
	long maxrss = 0;
	int rc = wait_blast(e, s, pid, n, t0, &status, &maxrss);
	/* It has been reaped, so /proc no longer has its figures: the CPU comes
	 * from the line it printed (getrusage), the peak RSS from wait4. */
	vb_meter_stop(&m, &r->cpu_s, &r->peak_mem_kb);
	if (maxrss > r->peak_mem_kb)
		r->peak_mem_kb = maxrss;
	if (rc == 0 && !vb_sink_wait(s, n, 5.0))
		rc = -1;
	vb_progress_end(e);
	r->seconds = vb_now() - t0;
	r->sink_messages = vb_sink_messages(s);
	json_t *j = vb_last_json_line(out);
	r->delivered = (long)json_integer_value(json_object_get(j, "messages"));
	double cpu_us = json_number_value(json_object_get(j, "cpu_us_per_msg"));
	r->cpu_s = cpu_us * (double)r->delivered / 1e6;
	json_decref(j);
	vb_result_series(r, s);
	r->ran = true;
	r->ok = rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
		r->delivered == n && r->sink_messages == n;
	snprintf(r->note, sizeof r->note, "%s", !r->ok ? "did not deliver every message" :
		 sc->tls ? "STARTTLS (sessions resumed), one pre-rendered message, the ceiling" :
		 "clear text, one pre-rendered message, the ceiling");
	return r->ok ? 0 : -1;
}
