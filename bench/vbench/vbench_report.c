/*
 * What a run prints and keeps: the table with volley's ratios over every
 * peer, a JSON result, and a PNG (gnuplot) of delivered per second.
 */
#include "vbench.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void vb_percentiles(double *ms, size_t n, double *p50, double *p99)
{
	if (!n) {
		*p50 = *p99 = -1;
		return;
	}
	qsort(ms, n, sizeof *ms, cmp_double);
	/* Nearest rank: the smallest sample with at least p of them at or below. */
	*p50 = ms[(size_t)ceil(0.50 * (double)n) - 1];
	*p99 = ms[(size_t)ceil(0.99 * (double)n) - 1];
}

void vb_progress(const struct vb_env *e, const char *peer, long done, long total, double el)
{
	if (!e->tty || total <= 0)
		return;
	int width = 30, fill = (int)((double)width * (double)done / (double)total);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	fprintf(stderr, "\r%-14s [%s] %ld/%ld  %.0f/s  %.1fs ", peer, bar, done, total,
		el > 0 ? (double)done / el : 0.0, el);
	fflush(stderr);
}

void vb_progress_end(const struct vb_env *e)
{
	if (e->tty)
		fprintf(stderr, "\r\033[K");
}

static double rate(const struct vb_result *r)
{
	return r->seconds > 0 ? (double)r->delivered / r->seconds : 0;
}

/* CPU-seconds per 1,000 delivered messages. */
static double cpu_k(const struct vb_result *r)
{
	return r->delivered > 0 ? r->cpu_s * 1000.0 / (double)r->delivered : 0;
}

static void ms_cell(char *out, size_t len, double ms)
{
	if (ms < 0)
		snprintf(out, len, "-");
	else
		snprintf(out, len, ms < 10 ? "%.1f" : "%.0f", ms);
}

static void row(const struct vb_result *r)
{
	char p50[16], p99[16];
	if (!r->ran) {
		printf("%-11s  did not run: %s\n", r->peer, r->note);
		return;
	}
	ms_cell(p50, sizeof p50, r->p50_ms);
	ms_cell(p99, sizeof p99, r->p99_ms);
	printf("%-11s %9ld %9ld %8.2f %9.0f %9.0f %9.3f %8.1f %8s %8s %7ld  %s\n", r->peer,
	       r->messages, r->delivered, r->seconds, rate(r), rate(r), cpu_k(r),
	       (double)r->peak_mem_kb / 1024.0, p50, p99, r->peak_conns,
	       r->ok ? "yes" : "NO");
}

static void target_line(const char *what, double got, double want)
{
	printf("target: %s at least %.2f: %s (%.2f", what, want, got >= want ? "met" : "MISSED",
	       got);
	if (got < want && got > 0)
		printf(", short by a factor of %.1f", want / got);
	printf(")\n");
}

/* openssl speed's signatures a second on one core, the mean of its runs
 * before and after volley's (either alone if the other failed); 0: none. */
static double ossl_rate(const struct vb_result *v)
{
	int n = (v->ossl_before > 0) + (v->ossl_after > 0);
	return n ? (v->ossl_before + v->ossl_after) / n : 0;
}

/* A DKIM scenario: volley's signed messages a second over one core's. */
static void ossl_lines(const struct vb_scen *sc, const struct vb_result *v)
{
	if (!sc->openssl_seconds || !v->ran)
		return;
	printf("openssl speed -seconds %ld %s, one core: %.0f sign/s before volley's run, "
	       "%.0f after (mean %.0f)\n", sc->openssl_seconds, vb_ossl_alg(sc), v->ossl_before,
	       v->ossl_after, ossl_rate(v));
	if (v->ok && ossl_rate(v) > 0)
		printf("volley / openssl speed %s (one core): %.2fx (signed msg/s over sign/s)\n",
		       vb_ossl_alg(sc), rate(v) / ossl_rate(v));
}

/* Memory per open session: volley's peak PSS less the base-sess run's
 * (the same job at base_sessions sessions), over the difference in the
 * sessions the sink saw open at once. false when there is no such pair. */
static bool session_kb(const struct vb_result *r, int n, const struct vb_result **base,
		       double *kb)
{
	*base = NULL;
	for (int i = 1; i < n; i++)
		if (!strcmp(r[i].peer, "base-sess"))
			*base = &r[i];
	const struct vb_result *b = *base;
	if (!b || !r[0].ok || !b->ok || r[0].peak_conns <= b->peak_conns || !b->peak_mem_kb)
		return false;
	*kb = (double)(r[0].peak_mem_kb - b->peak_mem_kb) / (double)(r[0].peak_conns - b->peak_conns);
	return true;
}

static void session_memory(const struct vb_scen *sc, const struct vb_result *r, int n)
{
	const struct vb_result *b;
	double kb;
	if (!session_kb(r, n, &b, &kb)) {
		if (b)
			printf("volley: no memory per open session (a run did not account for every "
			       "message, or held no more sessions than base-sess)\n");
		return;
	}
	double beyond = kb - (double)sc->msg_bytes / 1024.0;
	printf("volley: memory per open session: (%.1f MB peak PSS at %ld sessions - %.1f MB at "
	       "%ld) / %ld = %.2f KB; beyond the message in flight (%ld octets): %.2f KB\n",
	       (double)r[0].peak_mem_kb / 1024.0, r[0].peak_conns, (double)b->peak_mem_kb / 1024.0,
	       b->peak_conns, r[0].peak_conns - b->peak_conns, kb, sc->msg_bytes, beyond);
	if (sc->target_session_kb <= 0)
		return;
	printf("target: memory per open session beyond the message in flight at most %.2f KB: %s "
	       "(%.2f KB", sc->target_session_kb, beyond <= sc->target_session_kb ? "met" : "MISSED",
	       beyond);
	if (beyond > sc->target_session_kb)
		printf(", over by a factor of %.1f", beyond / sc->target_session_kb);
	printf(")\n");
}

/* The scenario's targets against this run's ratios. */
static void targets(const struct vb_scen *sc, const struct vb_result *r, int n)
{
	if (sc->target_openssl > 0 && r[0].ok && ossl_rate(&r[0]) > 0) {
		char what[96];
		snprintf(what, sizeof what, "volley msg/s / openssl speed %s sign/s (one core)",
			 vb_ossl_alg(sc));
		target_line(what, rate(&r[0]) / ossl_rate(&r[0]), sc->target_openssl);
	}
	if (sc->target_latency > 0 && r[0].ok && r[0].peak_conns > 0 && sc->latency_ms)
		target_line("throughput over sessions/latency", rate(&r[0]) /
			    ((double)r[0].peak_conns * 1000.0 / (double)sc->latency_ms),
			    sc->target_latency);
	for (int i = 1; i < n; i++) {
		double want = !strcmp(r[i].peer, "postfix")      ? sc->target_postfix
			      : !strcmp(r[i].peer, "nodemailer") ? sc->target_nodemailer
			      : !strcmp(r[i].peer, "blast")      ? sc->target_blast
			      : !strcmp(r[i].peer, "no-dane")    ? sc->target_dane
			      : !strcmp(r[i].peer, "one-rcpt")   ? sc->target_shared : 0;
		char what[64];
		if (want <= 0 || !r[0].ok || !r[i].ok || rate(&r[i]) <= 0)
			continue;
		snprintf(what, sizeof what, "volley / %s throughput", r[i].peer);
		target_line(what, rate(&r[0]) / rate(&r[i]), want);
	}
}

static double accepted_rate(const struct vb_result *r)
{
	return r->accept_s > 0 ? (double)r->accepted / r->accept_s : 0;
}

/* The submission scenario: what the clients saw (accepted a second, each
 * durable before its 250) beside the deliveries of the table above. */
static void submission_table(const struct vb_result *r, int n)
{
	char p50[16], p99[16];
	printf("\n%-11s %9s %8s %7s %8s %12s %16s %8s %8s\n", "submission", "accepted", "refused",
	       "errors", "seconds", "accepted/s", "delivered/s", "p50 ms", "p99 ms");
	for (int i = 0; i < n; i++) {
		if (!r[i].ran)
			continue;
		ms_cell(p50, sizeof p50, r[i].p50_ms);
		ms_cell(p99, sizeof p99, r[i].p99_ms);
		printf("%-11s %9ld %8ld %7ld %8.2f %12.0f %16.0f %8s %8s\n", r[i].peer, r[i].accepted,
		       r[i].refused, r[i].submit_errors, r[i].accept_s, accepted_rate(&r[i]),
		       r[i].accept_s > 0 ? (double)r[i].delivered_in_load / r[i].accept_s : 0, p50,
		       p99);
	}
	printf("  accepted/s: volley-submit's accepted messages over its run (connect, TLS, AUTH, "
	       "each message durable before its 250); delivered/s: the sink's count when "
	       "volley-submit ended, over the same time; p50/p99: end of data to the 250\n");
	for (int i = 1; i < n; i++)
		if (r[0].ok && r[i].ok && accepted_rate(&r[i]) > 0)
			printf("volley / %s: accepted msg/s %.2fx, delivered msg/s %.2fx\n", r[i].peer,
			       accepted_rate(&r[0]) / accepted_rate(&r[i]),
			       rate(&r[i]) > 0 ? rate(&r[0]) / rate(&r[i]) : 0);
}

void vb_report_table(const struct vb_scen *sc, const struct vb_result *r, int n)
{
	printf("\n%-11s %9s %9s %8s %9s %9s %9s %8s %8s %8s %7s  %s\n", "peer", "messages",
	       "delivered", "seconds", "msg/s", "rcpt/s", "cpu-s/1k", "pss MB", "p50 ms",
	       "p99 ms", "conns", "all counted");
	for (int i = 0; i < n; i++)
		row(&r[i]);
	for (int i = 0; i < n; i++) {
		if (r[i].ran && (r[i].bounced || r[i].other))
			printf("  %s: %ld bounced, %ld expired or otherwise final\n", r[i].peer,
			       r[i].bounced, r[i].other);
		if (r[i].ran && r[i].note[0])
			printf("  %s: %s\n", r[i].peer, r[i].note);
		if (r[i].ran && r[i].intake_s > 0)
			printf("  %s: the job of %ld recipients was durable (202) %.2f s after its "
			       "upload began\n", r[i].peer, r[i].messages, r[i].intake_s);
		if (r[i].ran && r[i].seconds > 0)
			printf("  %s: the sink used %.1f CPU-seconds (%.0f%% of a core), the peer "
			       "%.1f (%.0f%%)\n", r[i].peer, r[i].sink_cpu_s,
			       100 * r[i].sink_cpu_s / r[i].seconds, r[i].cpu_s,
			       100 * r[i].cpu_s / r[i].seconds);
	}
	ossl_lines(sc, &r[0]);
	if (sc->latency_ms && r[0].ran && r[0].peak_conns > 0) {
		double ideal = (double)r[0].peak_conns * 1000.0 / (double)sc->latency_ms;
		printf("volley: %ld sessions held; sessions/latency = %.0f msg/s; reached %.2f of it\n",
		       r[0].peak_conns, ideal, rate(&r[0]) / ideal);
	}
	if (sc->mixed) {  /* its own ratios: bulk mixed and alone, latency */
		vb_mix_report(sc, r, n);
		return;
	}
	if (sc->cluster_nodes) {  /* the nodes over one node, Redis's load */
		vb_cluster_report(sc, r, n);
		return;
	}
	for (int i = 1; i < n; i++) {
		if (!r[0].ok || !r[i].ok || rate(&r[i]) <= 0) {
			printf("volley / %s: no ratio (a run did not account for every message)\n",
			       r[i].peer);
			continue;
		}
		printf("volley / %s: throughput %.2fx, messages per CPU-second %.2fx", r[i].peer,
		       rate(&r[0]) / rate(&r[i]), cpu_k(&r[0]) > 0 ? cpu_k(&r[i]) / cpu_k(&r[0]) : 0);
		/* Memory grows with the list: compared only for the same one. */
		if (r[i].messages == r[0].messages && r[i].peak_mem_kb > 0)
			printf(", peak memory %.2fx",
			       (double)r[0].peak_mem_kb / (double)r[i].peak_mem_kb);
		printf("\n");
	}
	session_memory(sc, r, n);
	targets(sc, r, n);
	if (sc->submission)
		submission_table(r, n);
}

static json_t *result_json(const struct vb_result *r)
{
	json_t *series = json_array();
	for (int i = 0; i < r->nseries; i++)
		json_array_append_new(series, json_pack("[f, I]", r->st[i], (json_int_t)r->sv[i]));
	return json_pack("{s:s, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:I, "
			 "s:f, s:f, s:I, s:f, s:f, s:I, s:s, s:o}",
			 "peer", r->peer, "ran", r->ran, "ok", r->ok, "messages",
			 (json_int_t)r->messages, "delivered", (json_int_t)r->delivered, "bounced",
			 (json_int_t)r->bounced, "other", (json_int_t)r->other, "sink_messages",
			 (json_int_t)r->sink_messages, "seconds", r->seconds, "messages_per_s",
			 rate(r), "cpu_s", r->cpu_s, "cpu_s_per_1000", cpu_k(r), "peak_pss_kb",
			 (json_int_t)r->peak_mem_kb, "p50_ms", r->p50_ms, "p99_ms", r->p99_ms,
			 "peak_conns", (json_int_t)r->peak_conns, "sink_cpu_s", r->sink_cpu_s, "intake_s",
			 r->intake_s, "dane_deliveries", (json_int_t)r->dane, "note", r->note,
			 "sink_messages_over_time", series);
}

/* The submission scenario's figures of one peer. */
static void submission_json(json_t *o, const struct vb_result *r)
{
	json_object_set_new(o, "accepted", json_integer(r->accepted));
	json_object_set_new(o, "refused", json_integer(r->refused));
	json_object_set_new(o, "submit_errors", json_integer(r->submit_errors));
	json_object_set_new(o, "accept_seconds", json_real(r->accept_s));
	json_object_set_new(o, "accepted_per_s", json_real(accepted_rate(r)));
	json_object_set_new(o, "delivered_in_load", json_integer(r->delivered_in_load));
}

int vb_report_json(const char *path, const struct vb_scen *sc, const struct vb_result *r,
		   int n)
{
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	json_t *res = json_array();
	for (int i = 0; i < n; i++) {
		json_t *o = result_json(&r[i]);
		json_object_set_new(o, "sink_recipients", json_integer(r[i].sink_rcpts));
		if (i == 0 && sc->openssl_seconds)
			json_object_set_new(o, "openssl_speed",
					    json_pack("{s:s, s:I, s:f, s:f, s:f, s:f}", "alg",
						      vb_ossl_alg(sc), "seconds",
						      (json_int_t)sc->openssl_seconds, "sign_per_s_before",
						      r[i].ossl_before, "sign_per_s_after",
						      r[i].ossl_after, "sign_per_s", ossl_rate(&r[i]),
						      "volley_over_openssl", ossl_rate(&r[i]) > 0 ?
						      rate(&r[i]) / ossl_rate(&r[i]) : 0.0));
		if (sc->submission)
			submission_json(o, &r[i]);
		vb_mix_json(o, &r[i]);
		vb_cluster_json(o, &r[i]);
		json_array_append_new(res, o);
	}
	json_t *j = json_pack(
		"{s:s, s:f, s:s, s:i, s:{s:I, s:I, s:I, s:b, s:b, s:s, s:I, s:f, s:f, s:f, s:I, "
		"s:i, s:i, s:b, s:I, s:I, s:b}, s:o}",
		"scenario", sc->name, "time", vl_wall_time(), "host", host, "cores",
		(int)sysconf(_SC_NPROCESSORS_ONLN), "settings", "recipients",
		(json_int_t)sc->recipients, "domains", (json_int_t)sc->domains, "message_size",
		(json_int_t)sc->msg_size, "personalised", sc->personalised, "tls", sc->tls, "dkim",
		sc->dkim, "latency_ms", (json_int_t)sc->latency_ms, "tempfail", sc->tempfail,
		"permfail", sc->permfail, "disconnect", sc->disconnect, "sessions",
		(json_int_t)sc->sessions, "sink_addresses", sc->sink_addrs, "egress_sources", sc->egress, "transactional",
		sc->transactional, "peer_max", (json_int_t)sc->peer_max, "peer_sessions",
		(json_int_t)sc->peer_sessions, "dane", sc->dane, "results", res);
	json_object_set_new(json_object_get(j, "settings"), "rcpts_per_message",
			    json_integer(sc->rcpts_per_message));
	json_object_set_new(json_object_get(j, "settings"), "personalised_body",
			    json_boolean(sc->personalised_body));
	if (sc->target_openssl > 0)
		json_object_set_new(json_object_get(j, "settings"), "target_openssl",
				    json_real(sc->target_openssl));
	const struct vb_result *base;
	double kb;
	if (session_kb(r, n, &base, &kb)) {
		json_object_set_new(json_object_get(j, "settings"), "base_sessions",
				    json_integer(sc->base_sessions));
		json_object_set_new(j, "memory_per_session_kb", json_real(kb));
		json_object_set_new(j, "memory_per_session_beyond_message_kb",
				    json_real(kb - (double)sc->msg_bytes / 1024.0));
	}
	if (sc->mixed) {
		json_t *mx = json_pack("{s:b, s:I, s:I, s:f, s:f}", "mixed", 1, "submit_rate",
				       (json_int_t)sc->submit_rate, "mixed_max",
				       (json_int_t)sc->mixed_max, "target_p99_ms", sc->target_p99_ms,
				       "target_mixed", sc->target_mixed);
		json_object_update(json_object_get(j, "settings"), mx);
		json_decref(mx);
	}
	if (sc->cluster_nodes) {
		json_t *cl = json_pack("{s:i, s:f, s:f, s:f}", "cluster_nodes", sc->cluster_nodes,
				       "site_rate", sc->site_rate, "target_cluster", sc->target_cluster,
				       "target_redis_ops", sc->target_redis_ops);
		json_object_update(json_object_get(j, "settings"), cl);
		json_decref(cl);
	}
	if (sc->submission) {
		json_t *sub = json_pack("{s:b, s:I, s:I, s:s, s:s}", "submission", 1, "submit_clients",
					(json_int_t)sc->submit_clients, "per_conn",
					(json_int_t)sc->per_conn, "submit_tls", sc->submit_tls,
					"password_hash", sc->password_hash);
		json_object_update(json_object_get(j, "settings"), sub);
		json_decref(sub);
	}
	int rc = json_dump_file(j, path, JSON_INDENT(2));
	json_decref(j);
	if (rc < 0)
		fprintf(stderr, "volley-bench: cannot write %s\n", path);
	return rc;
}

/* Delivered per second over windows of about a hundredth of the run (at
 * least 0.2 s): short runs still draw a curve, long ones stay smooth. */
static int write_rates(const char *path, const struct vb_result *r)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	double end = r->nseries ? r->st[r->nseries - 1] : 0, w = end / 100 > 0.2 ? end / 100 : 0.2;
	double pt = 0;
	long pv = 0;
	for (int i = 0; i < r->nseries; i++) {
		if (r->st[i] - pt < w && i + 1 < r->nseries)
			continue;
		/* The y axis is logarithmic: a window without deliveries is left out. */
		if (r->st[i] > pt && r->sv[i] > pv)
			fprintf(f, "%.2f %.0f\n", r->st[i], (double)(r->sv[i] - pv) / (r->st[i] - pt));
		pt = r->st[i];
		pv = r->sv[i];
	}
	return fclose(f);
}

int vb_report_plot(const char *path, const struct vb_scen *sc, const struct vb_result *r,
		   int n, const char *dir)
{
	char script[PATH_MAX], dat[8][PATH_MAX];
	snprintf(script, sizeof script, "%s/plot.gp", dir);
	FILE *f = fopen(script, "w");
	if (!f)
		return -1;
	fprintf(f, "set terminal pngcairo size 1000,520 noenhanced\nset output '%s'\n"
		   "set title 'volley-bench %s: delivered per second (%ld recipients, %ld B%s%s)'\n"
		   "set xlabel 'seconds since the first submission'\n"
		   "set ylabel 'messages/s (log scale)'\nset logscale y\n"
		   "set grid\nset key outside right\nplot ", path, sc->name, sc->recipients,
		sc->msg_size, sc->tls ? ", STARTTLS" : "", sc->latency_ms ? ", slow sink" : "");
	int lines = 0;
	for (int i = 0; i < n && i < 8; i++) {
		if (!r[i].ran || r[i].nseries == 0)
			continue;
		snprintf(dat[i], sizeof dat[i], "%s/rate-%s.dat", dir, r[i].peer);
		if (write_rates(dat[i], &r[i]) < 0)
			continue;
		fprintf(f, "%s'%s' using 1:2 with linespoints lw 2 pt 7 ps 0.4 title '%s'", lines++ ? ", " : "",
			dat[i], r[i].peer);
	}
	fprintf(f, "\n");
	fclose(f);
	if (!lines)
		return -1;
	if (vb_system("gnuplot '%s' 2>'%s/gnuplot.log'", script, dir) != 0) {
		fprintf(stderr, "volley-bench: gnuplot failed (see %s/gnuplot.log)\n", dir);
		return -1;
	}
	return 0;
}
