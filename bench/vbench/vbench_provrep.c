/*
 * The providers scenario's report: per profile, volley's steady-state
 * accepted rate against the rate the profile allows (its rate per IP times
 * the shares its age gives each source's IP, from the sink's own stats),
 * bounces, deferrals by class and reply, back-off episodes; a table, the
 * JSON result and a PNG of rate over time per destination.
 */
#include "vbench_prov.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A converged profile: its steady rate is at least this part of the allowed. */
#define VB_CONVERGED 0.9

/* When the sink had accepted n; -1 if it never did. */
static double at_count(const struct vb_sink *s, long n)
{
	for (int i = 0; i < s->nseries; i++)
		if (s->sv[i] >= n)
			return s->st[i];
	return -1;
}

static int index_at(const struct vb_sink *s, double t)
{
	int i = 0;
	while (i + 1 < s->nseries && s->st[i] < t)
		i++;
	return i;
}

/* When the profile allows its full rate to every source (the ramp over). */
static double full_at(const struct vb_pdest *d, int nsrc)
{
	double full = d->sink.prof_rate * (nsrc > 0 ? nsrc : 1);
	for (int i = 0; i < d->sink.nseries; i++)
		if (d->sink.ips->allowed[i] >= 0.999 * full)
			return d->sink.st[i];
	return -1;
}

/* The steady state: from when the full rate is allowed (or half the
 * destination's recipients are in, if later: past the climb back from the
 * first back-off) to when nine tenths are (or the end of the run, if they
 * never were). */
static void figures(struct vb_pdest *d, int nsrc)
{
	const struct vb_sink *s = &d->sink;
	long susp = 0;
	for (int i = 0; i < d->nq; i++)
		susp += d->qsusp[i];
	if (d->nq)
		d->suspended = (double)susp / ((double)d->nq * (nsrc > 0 ? nsrc : 1));
	if (s->nseries < 2 || s->messages <= 0)
		return;
	d->t_first = at_count(s, 1);
	d->t_last = at_count(s, s->messages);
	double end = s->st[s->nseries - 1];
	double t50 = at_count(s, (d->recipients + 1) / 2);
	double t90 = at_count(s, d->recipients * 9 / 10);
	double tf = full_at(d, nsrc);
	d->win_a = tf > t50 ? tf : t50 >= 0 ? t50 : 0;
	d->win_b = t90 >= 0 ? t90 : end;
	if (d->win_b - d->win_a < 1)
		return;
	int a = index_at(s, d->win_a), b = index_at(s, d->win_b);
	double sum = 0;
	for (int i = a; i <= b; i++)
		sum += s->ips->allowed[i];
	d->steady = (double)(s->sv[b] - s->sv[a]) / (s->st[b] - s->st[a]);
	d->allowed = sum / (b - a + 1);
}

void vb_prov_figures(struct vb_prov *p)
{
	for (int k = 0; k < p->n; k++)
		figures(&p->d[k], p->nsrc);
}

static double ratio(const struct vb_pdest *d)
{
	return d->allowed > 0 ? d->steady / d->allowed : 0;
}

static void headline(const struct vb_prov *p)
{
	const struct vb_scen *sc = p->e->sc;
	printf("\nvolley-bench %s: %ld recipients, messages of %ld octets%s, to %d provider "
	       "sinks (volley-sink --profile, %s), from %d egress source%s%s; %.1f s%s\n",
	       sc->name, sc->recipients, sc->msg_size, sc->tls ? ", STARTTLS" : "", p->n,
	       sc->profile_opts[0] ? sc->profile_opts : "default limits", p->nsrc,
	       p->nsrc == 1 ? "" : "s", p->nsrc ? " (127.0.0.41 and up)" : "", p->seconds,
	       p->timed_out ? " (timed out)" : "");
	printf("volleyd's configuration: %s (volley-bench adds data_dir, dns, egress)\n",
	       sc->volleyd_conf);
}

static void profile_row(const struct vb_pdest *d)
{
	printf("%-10s %-15s %6ld %9ld %7ld %8ld %5ld %6ld %9.1f %8.1f %6.2f %5.0f-%-5.0f %7.1f %5ld "
	       "%5.0f%%  %s\n", d->name, d->domain, d->recipients, d->sink.messages, d->bounced,
	       d->deferred_all, d->by_class_rate, d->by_class_other, d->allowed, d->steady,
	       ratio(d), d->win_a, d->win_b, d->t_last, d->suspensions, 100 * d->suspended,
	       d->allowed <= 0 ? "no steady state"
	       : ratio(d) >= VB_CONVERGED && !d->bounced ? "converged" : "NOT converged");
}

static void details(const struct vb_prov *p, const struct vb_pdest *d)
{
	printf("  %s: %ld deferred, %ld bounced; the replies:\n", d->name, d->deferred_all,
	       d->bounced);
	for (int i = 0; i < d->nreplies; i++)
		printf("    %6ld  %-13s %s\n", d->replies[i].n, d->replies[i].cls, d->replies[i].text);
	const struct vb_ipstats *ip = d->sink.ips;
	for (int i = 0; i < ip->n; i++) {
		int s = -1;
		for (int j = 0; j < p->nsrc; j++)
			if (!strcmp(p->src_addr[j], ip->ip[i]))
				s = j;
		printf("    from %-10s accepted %5ld (volley: delivered %5ld, deferred %4ld); "
		       "refused %ld: conns %ld, rate %ld, new IP %ld, rcpts %ld, per conn %ld; "
		       "share %.2f\n", ip->ip[i], ip->accepted[i], s >= 0 ? d->delivered[s] : 0,
		       s >= 0 ? d->deferred[s] : 0, ip->throttled[i], ip->reason[i][0],
		       ip->reason[i][1], ip->reason[i][2], ip->reason[i][3], ip->reason[i][4],
		       ip->share[i]);
	}
}

void vb_prov_table(const struct vb_prov *p)
{
	headline(p);
	printf("\n%-10s %-15s %6s %9s %7s %8s %5s %6s %9s %8s %6s %11s %7s %5s %6s\n", "profile",
	       "domain", "rcpts", "delivered", "bounced", "deferred", "rate", "other",
	       "allowed/s", "steady/s", "ratio", "window s", "last s", "susp", "susp%");
	for (int k = 0; k < p->n; k++)
		profile_row(&p->d[k]);
	printf("  deferred: TransientFailure events (rate: classed rate-limited, so the site "
	       "backed off; other: any other class); allowed/s: the profile's rate per IP times "
	       "each source IP's share, averaged over the window; steady/s: the sink's accepted "
	       "over the window (from when the full rate is allowed, or half the "
	       "destination's recipients are in, to nine tenths or the end); susp: back-off episodes "
	       "begun, susp%%: the part of the run the sources were suspended (/v1/queues, "
	       "every 500 ms); converged: ratio at least %.1f and no bounce\n",
	       VB_CONVERGED);
	for (int k = 0; k < p->n; k++)
		details(p, &p->d[k]);
	bool counted = !p->timed_out && p->delivered == p->e->sc->recipients;
	for (int k = 0; k < p->n; k++)
		counted = counted && p->d[k].sink.messages == p->d[k].delivered_all;
	printf("all counted: %s (volley delivered %ld of %ld, bounced %ld; the sinks accepted "
	       "%ld)%s%s\n", counted ? "yes" : "NO", p->delivered, p->e->sc->recipients, p->bounced,
	       p->d[0].sink.messages + (p->n > 1 ? p->d[1].sink.messages : 0) +
		       (p->n > 2 ? p->d[2].sink.messages : 0),
	       p->note[0] ? "; " : "", p->note);
}

static json_t *series_json(const struct vb_pdest *d)
{
	json_t *a = json_array();
	const struct vb_sink *s = &d->sink;
	for (int i = 0; i < s->nseries; i++) {
		json_t *row = json_pack("[f, I, f]", s->st[i], (json_int_t)s->sv[i], s->ips->allowed[i]);
		for (int j = 0; j < s->ips->n; j++)
			json_array_append_new(row, json_integer(s->ips->acc[i][j]));
		json_array_append_new(a, row);
	}
	return a;
}

static json_t *queue_json(const struct vb_pdest *d)
{
	json_t *a = json_array();
	for (int i = 0; i < d->nq; i++)
		json_array_append_new(a, json_pack("[f, f, i]", d->qt[i], d->qcap[i], d->qsusp[i]));
	return a;
}

static json_t *profile_json(const struct vb_prov *p, const struct vb_pdest *d)
{
	json_t *reps = json_array(), *ips = json_array(), *src = json_object();
	for (int i = 0; i < d->nreplies; i++)
		json_array_append_new(reps, json_pack("{s:s, s:s, s:I}", "class", d->replies[i].cls,
						      "reply", d->replies[i].text, "count",
						      (json_int_t)d->replies[i].n));
	for (int i = 0; i < d->sink.ips->n; i++)
		json_array_append_new(ips, json_pack("{s:s, s:I, s:I, s:f}", "ip", d->sink.ips->ip[i],
						     "accepted", (json_int_t)d->sink.ips->accepted[i],
						     "refused", (json_int_t)d->sink.ips->throttled[i],
						     "share", d->sink.ips->share[i]));
	for (int s = 0; s < p->nsrc; s++)
		json_object_set_new(src, p->src_addr[s], json_pack("{s:I, s:I}", "delivered",
			(json_int_t)d->delivered[s], "deferred", (json_int_t)d->deferred[s]));
	return json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, "
			 "s:f, s:f, s:f, s:I, s:f, s:o, s:o, s:o, s:o, s:o}",
			 "profile", d->name, "domain", d->domain, "rate_per_ip", d->sink.prof_rate,
			 "recipients", (json_int_t)d->recipients, "sink_accepted",
			 (json_int_t)d->sink.messages, "delivered", (json_int_t)d->delivered_all,
			 "bounced", (json_int_t)d->bounced, "deferred", (json_int_t)d->deferred_all,
			 "deferred_rate_limited", (json_int_t)d->by_class_rate, "deferred_other",
			 (json_int_t)d->by_class_other, "allowed_per_s", d->allowed, "steady_per_s",
			 d->steady, "ratio", ratio(d), "window_from_s", d->win_a, "window_to_s",
			 d->win_b, "first_delivery_s", d->t_first, "last_delivery_s", d->t_last,
			 "backoff_episodes", (json_int_t)d->suspensions, "suspended_part", d->suspended,
			 "replies", reps, "ips", ips,
			 "sources", src, "series_t_accepted_allowed_per_ip", series_json(d),
			 "queues_t_cap_suspended", queue_json(d));
}

int vb_prov_json(const struct vb_prov *p, const char *path)
{
	const struct vb_scen *sc = p->e->sc;
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	json_t *res = json_array();
	for (int k = 0; k < p->n; k++)
		json_array_append_new(res, profile_json(p, &p->d[k]));
	json_t *j = json_pack("{s:s, s:f, s:s, s:i, s:{s:I, s:I, s:b, s:i, s:I, s:s, s:s, s:I}, "
			      "s:f, s:b, s:I, s:I, s:s, s:o}",
			      "scenario", sc->name, "time", vl_wall_time(), "host", host, "cores",
			      (int)sysconf(_SC_NPROCESSORS_ONLN), "settings", "recipients",
			      (json_int_t)sc->recipients, "message_size", (json_int_t)sc->msg_size,
			      "tls", sc->tls, "egress_sources", sc->egress, "sessions",
			      (json_int_t)sc->sessions, "profile_options", sc->profile_opts,
			      "volleyd_conf", sc->volleyd_conf, "timeout_s", (json_int_t)sc->timeout_s,
			      "seconds", p->seconds, "timed_out", p->timed_out, "delivered",
			      (json_int_t)p->delivered, "bounced", (json_int_t)p->bounced, "note",
			      p->note, "profiles", res);
	int rc = json_dump_file(j, path, JSON_INDENT(1));
	json_decref(j);
	if (rc < 0)
		fprintf(stderr, "volley-bench: cannot write %s\n", path);
	return rc;
}

/* Accepted per second over 1 s windows, total and per source IP, with
 * the allowed rate at each window's end. */
static int write_rates(const char *path, const struct vb_pdest *d)
{
	const struct vb_sink *s = &d->sink;
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	for (int i = 0, j = 1; j < s->nseries; j++) {
		double dt = s->st[j] - s->st[i];
		if (dt < 1.0 && j + 1 < s->nseries)
			continue;
		fprintf(f, "%.2f %.2f %.2f", s->st[j], (double)(s->sv[j] - s->sv[i]) / dt,
			s->ips->allowed[j]);
		for (int k = 0; k < s->ips->n; k++)
			fprintf(f, " %.2f", (double)(s->ips->acc[j][k] - s->ips->acc[i][k]) / dt);
		fprintf(f, "\n");
		i = j;
	}
	return fclose(f);
}

static int write_caps(const char *path, const struct vb_pdest *d)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	for (int i = 0; i < d->nq; i++)
		if (d->qcap[i] < 0)  /* some source unlimited: no cap to draw */
			fprintf(f, "%.2f NaN %d\n", d->qt[i], d->qsusp[i]);
		else
			fprintf(f, "%.2f %.2f %d\n", d->qt[i], d->qcap[i], d->qsusp[i]);
	return fclose(f);
}

static void plot_one(FILE *f, const struct vb_prov *p, const struct vb_pdest *d,
		     const char *rates, const char *caps)
{
	fprintf(f, "set title \"%s (%s): %g/s allowed per IP, %ld recipients\\nsteady %.1f/s "
		   "of %.1f/s allowed (%.2f); %ld deferred, %ld bounced; suspended %.0f%% of the "
		   "time\"\n", d->name, d->domain, d->sink.prof_rate, d->recipients, d->steady,
		d->allowed, ratio(d), d->deferred_all, d->bounced, 100 * d->suspended);
	fprintf(f, "plot '%s' using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'accepted/s', "
		   "'%s' using 1:3 with lines lw 2 dt 2 lc rgb 'black' title 'allowed/s'", rates,
		rates);
	for (int k = 0; k < d->sink.ips->n && p->nsrc > 1; k++)
		fprintf(f, ", '%s' using 1:%d with lines lw 1 title 'from %s'", rates, 4 + k,
			d->sink.ips->ip[k]);
	fprintf(f, ", '%s' using 1:($2) with steps lw 1 dt 3 lc rgb '#d62728' "
		   "title \"volley's rate cap\"\n", caps);
}

int vb_prov_plot(const struct vb_prov *p, const char *path)
{
	char script[PATH_MAX], rates[PATH_MAX], caps[PATH_MAX];
	if (access("/usr/bin/gnuplot", X_OK) < 0)
		vb_system("'%s/scripts/install-deps.sh' --bench", p->e->src_dir);
	snprintf(script, sizeof script, "%s/plot.gp", p->dir);
	FILE *f = fopen(script, "w");
	if (!f)
		return -1;
	fprintf(f, "set terminal pngcairo size 1100,%d noenhanced\nset output '%s'\n"
		   "set multiplot layout %d,1\nset grid\nset key outside right\n"
		   "set title font ',10'\n"
		   "set xlabel 'seconds since the submission'\nset ylabel 'messages/s'\n"
		   "set yrange [0:*]\n", 300 * p->n + 40, path, p->n);
	for (int k = 0; k < p->n; k++) {
		const struct vb_pdest *d = &p->d[k];
		snprintf(rates, sizeof rates, "%s/rate-%s.dat", p->dir, d->name);
		snprintf(caps, sizeof caps, "%s/cap-%s.dat", p->dir, d->name);
		if (write_rates(rates, d) < 0 || write_caps(caps, d) < 0) {
			fclose(f);
			return -1;
		}
		plot_one(f, p, d, rates, caps);
	}
	fprintf(f, "unset multiplot\n");
	fclose(f);
	if (vb_system("gnuplot '%s' 2>'%s/gnuplot.log'", script, p->dir) != 0) {
		fprintf(stderr, "volley-bench: gnuplot failed (see %s/gnuplot.log)\n", p->dir);
		return -1;
	}
	return 0;
}
