/*
 * The mixed scenario's report: per peer, the bulk's throughput mixed and
 * alone (same run) and their ratio, the transactional stream's
 * submit-to-250 latency at the sink (p50, p99, p999, max) and its
 * acknowledgement (the 202, or the injection's 250); the targets; the JSON
 * figures; and a PNG of both rates over time and the latency per second.
 */
#include "vbench.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double bulk_rate(const struct vb_result *r)
{
	const struct vb_mixres *m = r->mx;
	return m && m->bulk_s > 0 ? (double)m->bulk / m->bulk_s : 0;
}

/* The transactional stream's rate as submitted: the acknowledged ones
 * over the time from the first submission to the last. */
static double tx_rate(const struct vb_mixres *m)
{
	double a = 0, b = 0;
	for (long i = 0; i < m->cap; i++)
		if (m->acked[i] > 0) {
			a = a == 0 || m->sent[i] < a ? m->sent[i] : a;
			b = m->sent[i] > b ? m->sent[i] : b;
		}
	return b > a && m->tx_sent > 1 ? (double)(m->tx_sent - 1) / (b - a) : 0;
}

/* The "-alone" row of the peer of r, or NULL. */
static const struct vb_result *alone_of(const struct vb_result *r, const struct vb_result *all,
					int n)
{
	char want[48];
	snprintf(want, sizeof want, "%s-alone", r->peer);
	for (int i = 0; i < n; i++)
		if (!strcmp(all[i].peer, want) && all[i].ran && all[i].ok && all[i].mx)
			return &all[i];
	return NULL;
}

static void ms(char *out, size_t len, double v)
{
	if (v < 0)
		snprintf(out, len, "-");
	else
		snprintf(out, len, v < 10 ? "%.2f" : v < 1000 ? "%.1f" : "%.0f", v);
}

static void mix_row(const struct vb_result *r, const struct vb_result *all, int n)
{
	const struct vb_mixres *m = r->mx;
	const struct vb_result *a = alone_of(r, all, n);
	char c[6][16], ratio[16] = "-";
	ms(c[0], sizeof c[0], m->p50);
	ms(c[1], sizeof c[1], m->p99);
	ms(c[2], sizeof c[2], m->p999);
	ms(c[3], sizeof c[3], m->max);
	ms(c[4], sizeof c[4], m->ack_p50);
	ms(c[5], sizeof c[5], m->ack_p99);
	if (a && bulk_rate(a) > 0 && r->ok)
		snprintf(ratio, sizeof ratio, "%.3f", bulk_rate(r) / bulk_rate(a));
	printf("%-11s %8ld %8.2f %10.0f %10.0f %7s %8ld %6.0f %8ld %8s %8s %8s %8s %9s %9s\n",
	       r->peer, m->bulk, m->bulk_s, bulk_rate(r), a ? bulk_rate(a) : 0.0, ratio,
	       m->tx_sent, tx_rate(m), m->tx_delivered, c[0], c[1], c[2], c[3], c[4], c[5]);
}

static void under_line(const char *what, double got, double limit)
{
	printf("target: %s under %.1f ms: %s (%.2f ms", what, limit, got < limit ? "met" : "MISSED",
	       got);
	if (got >= limit)
		printf(", over by a factor of %.1f", got / limit);
	printf(")\n");
}

static void at_least_line(const char *what, double got, double want)
{
	printf("target: %s at least %.2f: %s (%.3f", what, want, got >= want ? "met" : "MISSED",
	       got);
	if (got < want && got > 0)
		printf(", short by a factor of %.2f", want / got);
	printf(")\n");
}

static void targets(const struct vb_scen *sc, const struct vb_result *r, int n)
{
	const struct vb_result *a = alone_of(&r[0], r, n);
	if (!r[0].ok || !r[0].mx) {
		printf("target: volley's mixed run did not account for every message: no figure\n");
		return;
	}
	if (sc->target_p99_ms > 0 && r[0].mx->tx_delivered > 0)
		under_line("volley transactional submit-to-250 p99", r[0].mx->p99, sc->target_p99_ms);
	if (sc->target_mixed > 0 && a)
		at_least_line("volley bulk throughput mixed / alone", bulk_rate(&r[0]) /
			      bulk_rate(a), sc->target_mixed);
}

void vb_mix_report(const struct vb_scen *sc, const struct vb_result *r, int n)
{
	printf("\nmixed: the bulk job with transactional messages at %ld/s beside it, until the "
	       "bulk is delivered (volley: jobs through the API from the bulk's 202 on; "
	       "peers: from their first message)\n", sc->submit_rate);
	printf("%-11s %8s %8s %10s %10s %7s %8s %6s %8s %8s %8s %8s %8s %9s %9s\n", "peer",
	       "bulk", "bulk s", "bulk msg/s", "alone", "ratio", "tx sent", "tx/s", "tx 250",
	       "p50 ms", "p99 ms", "p999 ms", "max ms", "ack p50", "ack p99");
	for (int i = 0; i < n; i++)
		if (r[i].ran && r[i].mx && !r[i].mx->alone)
			mix_row(&r[i], r, n);
	printf("  bulk msg/s: the bulk's messages over the time from the first submission to the "
	       "last bulk outcome; alone: the same peer with the bulk alone, same run; tx/s: the "
	       "transactional stream's rate as submitted (acknowledged ones); "
	       "p50-max: transactional, submitted to the sink's 250 (its accept log); ack: "
	       "submitted to the API's 202 (volley) or the injection's 250 (peers)\n");
	for (int i = 0; i < n; i++)
		if (r[i].ran && r[i].mx && r[i].mx->why[0])
			printf("  %s: %s\n", r[i].peer, r[i].mx->why);
	for (int i = 1; i < n; i++) {
		const struct vb_mixres *m = r[i].mx;
		if (!m || m->alone || !r[i].ok || !r[0].ok || bulk_rate(&r[i]) <= 0 || m->p99 <= 0)
			continue;
		printf("volley / %s: bulk throughput mixed %.2fx; transactional p99 %.3fx\n",
		       r[i].peer, bulk_rate(&r[0]) / bulk_rate(&r[i]), r[0].mx->p99 / m->p99);
	}
	targets(sc, r, n);
}

/* ---- JSON ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Transactional latency per second of acceptance: [t, n, p50, p99]. */
static json_t *per_second(const struct vb_mixres *m)
{
	json_t *a = json_array();
	double *v = vl_malloc((m->nlat + 1) * sizeof *v);
	double end = 0;
	for (size_t i = 0; i < m->nlat; i++)
		end = m->lat_t[i] > end ? m->lat_t[i] : end;
	for (long s = 0; s <= (long)end; s++) {
		size_t k = 0;
		for (size_t i = 0; i < m->nlat; i++)
			if (m->lat_t[i] >= (double)s && m->lat_t[i] < (double)s + 1)
				v[k++] = m->lat_ms[i];
		if (!k)
			continue;
		qsort(v, k, sizeof *v, cmp_double);
		json_array_append_new(a, json_pack("[i, I, f, f]", (int)s, (json_int_t)k,
						   v[(size_t)ceil(0.5 * (double)k) - 1],
						   v[(size_t)ceil(0.99 * (double)k) - 1]));
	}
	free(v);
	return a;
}

void vb_mix_json(json_t *o, const struct vb_result *r)
{
	const struct vb_mixres *m = r->mx;
	if (!m)
		return;
	json_object_set_new(o, "mixed", json_pack(
		"{s:b, s:I, s:f, s:f, s:I, s:I, s:f, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:o}",
		"alone", m->alone, "bulk", (json_int_t)m->bulk, "bulk_seconds", m->bulk_s,
		"bulk_messages_per_s", bulk_rate(r), "tx_submitted", (json_int_t)m->tx_sent,
		"tx_failed", (json_int_t)m->tx_failed, "tx_per_s", tx_rate(m), "tx_delivered", (json_int_t)m->tx_delivered,
		"tx_p50_ms", m->p50, "tx_p99_ms", m->p99, "tx_p999_ms", m->p999, "tx_max_ms", m->max,
		"tx_ack_p50_ms", m->ack_p50, "tx_ack_p99_ms", m->ack_p99, "note", m->why,
		"tx_latency_per_second", per_second(m)));
}

/* ---- the plot ---- */

/* Per second over windows of about a hundredth of the run (at least
 * 0.5 s): the bulk (sv - sl) and the transactional (sl) accepted. */
static int write_rates(const char *path, const struct vb_result *r)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	double end = r->nseries ? r->st[r->nseries - 1] : 0, w = end / 100 > 0.5 ? end / 100 : 0.5;
	for (int i = 0, j = 1; j < r->nseries; j++) {
		double dt = r->st[j] - r->st[i];
		if (dt < w && j + 1 < r->nseries)
			continue;
		long b = (r->sv[j] - r->sl[j]) - (r->sv[i] - r->sl[i]), t = r->sl[j] - r->sl[i];
		/* a log scale: a window without any is NaN, not 0 */
		fprintf(f, "%.2f ", r->st[j]);
		fprintf(f, b > 0 ? "%.1f " : "NaN ", (double)b / dt);
		fprintf(f, t > 0 ? "%.1f\n" : "NaN\n", (double)t / dt);
		i = j;
	}
	return fclose(f);
}

static int write_latency(const char *path, const struct vb_result *r)
{
	json_t *a = per_second(r->mx);
	FILE *f = fopen(path, "w");
	size_t i;
	json_t *v;
	if (!f) {
		json_decref(a);
		return -1;
	}
	json_array_foreach(a, i, v)
		fprintf(f, "%.1f %.3f %.3f\n", json_integer_value(json_array_get(v, 0)) + 0.5,
			json_real_value(json_array_get(v, 2)), json_real_value(json_array_get(v, 3)));
	json_decref(a);
	return fclose(f);
}

/* One colour per peer, its rows (mixed, alone, txonly) told apart by the
 * dash. */
static const char *colour(const char *peer)
{
	static const struct { const char *name, *rgb; } c[] = {
		{ "volley", "#1f77b4" }, { "postfix", "#d62728" }, { "nodemailer", "#2ca02c" },
		{ "haraka", "#9467bd" },
	};
	size_t n = strcspn(peer, "-");
	for (size_t i = 0; i < VL_ARRAY_LEN(c); i++)
		if (strlen(c[i].name) == n && !strncmp(peer, c[i].name, n))
			return c[i].rgb;
	return "#7f7f7f";
}

static void plot_rates(FILE *f, const struct vb_result *r, int n, const char *dir)
{
	char dat[PATH_MAX];
	int lines = 0;
	fprintf(f, "set title 'bulk and transactional messages accepted per second'\n"
		   "set ylabel 'messages/s (log scale)'\nset logscale y\nplot ");
	for (int i = 0; i < n; i++) {
		if (!r[i].ran || !r[i].mx || !r[i].nseries)
			continue;
		snprintf(dat, sizeof dat, "%s/mixed-rate-%d.dat", dir, i);
		if (write_rates(dat, &r[i]) < 0)
			continue;
		const char *c = colour(r[i].peer);
		if (r[i].mx->alone)
			fprintf(f, "%s'%s' using 1:2 with lines lw 1 dt 3 lc rgb '%s' "
				   "title '%s (bulk alone)'", lines++ ? ", " : "", dat, c, r[i].peer);
		else if (!r[i].mx->bulk)   /* volley-txonly: the stream alone */
			fprintf(f, "%s'%s' using 1:3 with lines lw 1 dt 4 lc rgb '%s' "
				   "title '%s (transactional alone)'", lines++ ? ", " : "", dat, c,
				r[i].peer);
		else
			fprintf(f, "%s'%s' using 1:2 with lines lw 2 lc rgb '%s' title '%s bulk', "
				   "'%s' using 1:3 with lines lw 2 dt 2 lc rgb '%s' "
				   "title '%s transactional'", lines++ ? ", " : "", dat, c, r[i].peer,
				dat, c, r[i].peer);
	}
	fprintf(f, lines ? "\n" : "NaN notitle\n");
}

static void plot_latency(FILE *f, const struct vb_result *r, int n, const char *dir)
{
	char dat[PATH_MAX];
	int lines = 0;
	fprintf(f, "set title 'transactional submit-to-250 latency per second of acceptance'\n"
		   "set ylabel 'ms (log scale)'\nplot ");
	for (int i = 0; i < n; i++) {
		if (!r[i].ran || !r[i].mx || r[i].mx->alone || !r[i].mx->nlat)
			continue;
		snprintf(dat, sizeof dat, "%s/mixed-lat-%d.dat", dir, i);
		if (write_latency(dat, &r[i]) < 0)
			continue;
		const char *c = colour(r[i].peer);
		bool txonly = !r[i].mx->bulk;
		fprintf(f, "%s'%s' using 1:3 with lines lw %d dt %d lc rgb '%s' title '%s p99', "
			   "'%s' using 1:2 with lines lw 1 dt %d lc rgb '%s' title '%s p50'",
			lines++ ? ", " : "", dat, txonly ? 1 : 2, txonly ? 4 : 1, c, r[i].peer, dat,
			txonly ? 3 : 2, c, r[i].peer);
	}
	fprintf(f, lines ? "\n" : "NaN notitle\n");
}

int vb_mix_plot(const char *path, const struct vb_scen *sc, const struct vb_result *r, int n,
		const char *dir)
{
	char script[PATH_MAX];
	snprintf(script, sizeof script, "%s/plot-mixed.gp", dir);
	FILE *f = fopen(script, "w");
	if (!f)
		return -1;
	fprintf(f, "set terminal pngcairo size 1100,820 noenhanced\nset output '%s'\n"
		   "set multiplot layout 2,1 title 'volley-bench %s: %ld bulk recipients, "
		   "transactional at %ld/s'\nset grid\nset key outside right\n"
		   "set xlabel 'seconds since the first submission'\n", path, sc->name,
		sc->recipients, sc->submit_rate);
	plot_rates(f, r, n, dir);
	plot_latency(f, r, n, dir);
	fprintf(f, "unset multiplot\n");
	fclose(f);
	if (vb_system("gnuplot '%s' 2>'%s/gnuplot.log'", script, dir) != 0) {
		fprintf(stderr, "volley-bench: gnuplot failed (see %s/gnuplot.log)\n", dir);
		return -1;
	}
	return 0;
}
