/*
 * volley as a peer: volleyd in the run's folder, routed to the sink, the
 * job submitted through the real API (one NDJSON upload, or one JSON job
 * per recipient for the transactional scenario), followed until every
 * recipient has a final outcome. Latency is each Delivery event's time
 * less the moment its job was submitted, from volleyd's own events files.
 */
#include "vbench.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct vrun {
	const struct vb_env *e;
	struct vb_sink *s;
	struct vb_result *r;
	char dir[300], data[320];
	pid_t pid;
	struct vb_api *api;
	json_t *submitted;   /* job id -> submit time (UNIX seconds) */
	int sub_port;        /* the submission listener's, on 127.0.0.1 */
	long expect;         /* recipients submitted in all */
	char bulk_id[64];    /* the bulk job's id */
};

/* A route per sink address; or, in the DANE world, MX resolution through
 * its validating resolver (the MX hosts are the sink's addresses). */
void vb_volley_domains(const struct vb_env *e, const struct vb_sink *s, FILE *f)
{
	const struct vb_scen *sc = e->sc;
	const struct vb_dane *dn = e->dane;
	/* sessions in all: with egress sources each source's site has its share
	 * (with a cluster, the nodes' together: the limit is the cluster's) */
	long sessions = e->base_run ? sc->base_sessions : sc->sessions;
	long split = e->split > 1 ? e->split : 1;
	long per_site = sessions / s->naddrs / (sc->egress ? sc->egress : 1) / split;
	int src0 = VB_EGRESS_BASE + e->node * sc->egress;
	if (per_site < 1)
		per_site = 1;
	const char *tls = !sc->tls ? "none" : dn && !e->dane_off ? "dane" : "encrypt";
	char route[96] = "", rate[48] = "";
	if (dn)
		fprintf(f, "dns = { servers = [ \"%s\" ]; allow_private = true; };\n",
			dn->resolver);
	else  /* Nothing resolves: every bench domain has a route (port 9 is discard). */
		fprintf(f, "dns = { servers = [ \"127.0.0.1:9\" ]; };\n");
	fprintf(f, "defaults = { retry = [ \"1s\", \"2s\", \"5s\" ]; max_age = \"1h\"; "
		   "max_messages_per_connection = 100000; max_recipients_per_message = %ld; };\n"
		   "domains = (\n", e->one_rcpt ? 1 : sc->rcpts_per_message);
	if (sc->site_rate > 0)
		snprintf(rate, sizeof rate, "rate = \"%.0f/s\"; ", sc->site_rate / (double)split);
	for (int a = 0; a < s->naddrs; a++) {
		if (dn)
			snprintf(route, sizeof route, "port = %d; ", s->port);
		else
			snprintf(route, sizeof route, "route = \"%s:%d\"; ", s->addr[a], s->port);
		fprintf(f, "  { match = \"*.s%d.bench.test\"; %stls = \"%s\"; %s"
			   "max_connections = %ld; }%s\n", a, route, tls, rate, per_site,
			a + 1 < s->naddrs ? "," : "");
	}
	fprintf(f, ");\n");
	/* egress sources: the implicit pool "default" holds them all */
	if (sc->egress) {
		fprintf(f, "egress = (\n");
		for (int i = 0; i < sc->egress; i++)
			fprintf(f, "  { name = \"src%d\"; address = \"127.0.0.%d\"; "
				   "ehlo = \"mta%d.bench.example\"; }%s\n", i, src0 + i,
				src0 + i - VB_EGRESS_BASE,
				i + 1 < sc->egress ? "," : "");
		fprintf(f, ");\n");
	}
}

/* --volley-conf: the user's lines after volley-bench's own. */
static int append_file(FILE *f, const char *path)
{
	char buf[4096];
	size_t n;
	FILE *in = fopen(path, "r");

	if (!in) {
		fprintf(stderr, "volley-bench: --volley-conf %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, f);
	fclose(in);
	return 0;
}

static int write_config(struct vrun *v)
{
	const struct vb_scen *sc = v->e->sc;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/volley.conf", v->dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "data_dir = \"%s\";\nhostname = \"mta1.bench.example\";\n", v->data);
	vb_volley_domains(v->e, v->s, f);
	/* dkim_required: volleyd refuses the job rather than send it unsigned,
	 * so a DKIM scenario cannot measure unsigned mail by mistake. */
	if (sc->dkim[0])
		fprintf(f, "dkim_required = true;\n"
			   "dkim = ( { domain = \"%s\"; selector = \"bench\"; key = \"%s\"; } );\n",
			VB_FROM_DOMAIN, v->e->w->dkim_key);
	/* The submission listener (AUTH inside TLS; users: "name:crypt(3) hash"
	 * lines). implicit_tls: TLS from the connect on, as on port 465. */
	if (sc->submission)
		fprintf(f, "submission = { %s = [ \"127.0.0.1:%d\" ]; cert = \"%s\"; "
			   "key = \"%s\"; users = \"%s\"; };\n",
			strcmp(sc->submit_tls, "implicit") ? "listen" : "implicit_tls", v->sub_port,
			v->e->w->cert, v->e->w->key, v->e->w->users);
	if (v->e->volley_conf && append_file(f, v->e->volley_conf) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

/* volleyd ended at its start: it refused the configuration. For the
 * submission scenario that means a volleyd without the listener. */
static void refused(struct vrun *v, const char *log)
{
	char line[256] = "", buf[256];
	FILE *f = fopen(log, "r");
	while (f && fgets(buf, sizeof buf, f))
		if (!line[0] || strstr(buf, "submission")) {
			buf[strcspn(buf, "\n")] = '\0';
			snprintf(line, sizeof line, "%s", buf);
		}
	if (f)
		fclose(f);
	if (v->e->sc->submission)
		snprintf(v->r->note, sizeof v->r->note, "volleyd refused the configuration with a "
			 "submission listener (not in this build?): %s", line);
	else
		snprintf(v->r->note, sizeof v->r->note, "volleyd ended at its start: %s", line);
}

static int start(struct vrun *v)
{
	char bin[PATH_MAX], conf[PATH_MAX], log[400], sock[PATH_MAX];
	snprintf(v->dir, sizeof v->dir, "%s", v->e->dir);
	snprintf(v->data, sizeof v->data, "%s/data", v->dir);
	if (mkdir(v->dir, 0755) < 0 && errno != EEXIST)
		return -1;
	if (v->e->sc->submission && (v->sub_port = vb_free_port()) < 0)
		return -1;
	if (write_config(v) < 0)
		return -1;
	snprintf(bin, sizeof bin, "%s/volleyd", v->e->bin_dir);
	snprintf(conf, sizeof conf, "%s/volley.conf", v->dir);
	snprintf(log, sizeof log, "%s/volleyd.log", v->dir);
	snprintf(sock, sizeof sock, "%s/volley.sock", v->data);
	char *argv[] = { bin, "--foreground", "--config", conf, NULL };
	v->pid = vb_spawn(argv, log, log);
	for (int i = 0; i < 500 && access(sock, F_OK) < 0; i++) {
		if (waitpid(v->pid, NULL, WNOHANG) == v->pid) {
			v->pid = 0;
			refused(v, log);
			return -1;
		}
		usleep(10000);
	}
	if (access(sock, F_OK) < 0 || !vb_wait_unix(sock, 5000)) {
		snprintf(v->r->note, sizeof v->r->note, "volleyd did not start (see %s)", log);
		return -1;
	}
	v->api = vb_api_open(sock);
	if (v->api && v->e->sc->submission && !vb_wait_port("127.0.0.1", v->sub_port, 5000)) {
		snprintf(v->r->note, sizeof v->r->note, "volleyd runs but does not listen for "
			 "submission on 127.0.0.1:%d (see %.200s)", v->sub_port, log);
		return -1;
	}
	return v->api ? 0 : -1;
}

/* The counts over every job, from /v1/stats: one answer of a few hundred
 * octets whether there is one job or the transactional thousands (listing
 * them all every poll would load the daemon it measures). */
static int counts(struct vrun *v, long *total, long *final, long *delivered, long *bounced)
{
	json_t *j = vb_api_get(v->api, "/v1/stats"), *n;
	json_t *c = json_object_get(json_object_get(j, "scheduler"), "recipients");
	const char *k;

	if (!c) {
		json_decref(j);
		return -1;
	}
	*total = *final = *delivered = *bounced = 0;
	json_object_foreach(c, k, n) {
		long x = (long)json_integer_value(n);
		*total += x;
		if (!strcmp(k, "delivered"))
			*delivered = x;
		if (!strcmp(k, "bounced"))
			*bounced = x;
		if (!strcmp(k, "delivered") || !strcmp(k, "bounced") || !strcmp(k, "expired") ||
		    !strcmp(k, "cancelled") || !strcmp(k, "suppressed"))
			*final += x;
	}
	json_decref(j);
	return 0;
}

static int submit_bulk(struct vrun *v)
{
	double t = vl_wall_time(), t0 = vb_now();
	json_t *j = vb_api_post_file(v->api, "/v1/jobs", v->e->w->submit);
	if (!j)
		return -1;
	v->r->intake_s = vb_now() - t0;
	json_object_set_new(v->submitted, json_string_value(json_object_get(j, "id")),
			    json_real(t));
	snprintf(v->bulk_id, sizeof v->bulk_id, "%s",
		 json_string_value(json_object_get(j, "id")) ?: "");
	json_decref(j);
	return 0;
}

/* One single-recipient JSON job per line of the list, paced. */
static int submit_each(struct vrun *v)
{
	const struct vb_scen *sc = v->e->sc;
	json_t *job = json_load_file(v->e->w->job, 0, NULL);
	FILE *f = fopen(v->e->w->rcpts, "r");
	char line[1024];
	double t0 = vb_now();
	long i = 0;
	int rc = job && f ? 0 : -1;
	while (rc == 0 && fgets(line, sizeof line, f)) {
		if (sc->submit_rate > 0)
			while (vb_now() < t0 + (double)i / (double)sc->submit_rate)
				usleep(500);
		json_t *r = json_loads(line, 0, NULL);
		json_object_set_new(job, "recipients", json_pack("[o]", r));
		char *body = json_dumps(job, JSON_COMPACT);
		double t = vl_wall_time();
		json_t *ans = vb_api_post_json(v->api, "/v1/jobs", body);
		free(body);
		if (!ans) {
			rc = -1;
			break;
		}
		json_object_set_new(v->submitted, json_string_value(json_object_get(ans, "id")),
				    json_real(t));
		json_decref(ans);
		vb_progress(v->e, "volley submit", ++i, sc->recipients, vb_now() - t0);
	}
	if (f)
		fclose(f);
	json_decref(job);
	return rc;
}

static int follow(struct vrun *v, double t0)
{
	const struct vb_scen *sc = v->e->sc;
	long total, final, delivered, bounced;
	double end = vb_now() + (double)sc->timeout_s;
	for (;;) {
		if (counts(v, &total, &final, &delivered, &bounced) < 0)
			return -1;
		vb_progress(v->e, "volley", final, v->expect, vb_now() - t0);
		if (total == v->expect && final == total)
			break;
		/* Every job is in: a count that differs will not change. */
		if (total != v->expect) {
			snprintf(v->r->note, sizeof v->r->note, "volleyd holds %ld recipients, "
				 "%ld were submitted", total, v->expect);
			return -1;
		}
		if (vb_now() > end) {
			snprintf(v->r->note, sizeof v->r->note, "timed out: %ld of %ld final", final,
				 v->expect);
			return -1;
		}
		/* The end of the clock: at most 20 ms late. A transactional run's
		 * listing holds every job, so it is asked for less often, lest the
		 * polling itself become volleyd's work. */
		usleep(sc->transactional ? 250000 : 20000);
	}
	v->r->delivered = delivered;
	v->r->bounced = bounced;
	v->r->other = final - delivered - bounced;
	return 0;
}

/* "2026-11-23T17:20:01.123Z" to UNIX seconds. */
static double iso_time(const char *s)
{
	struct tm tm = { 0 };
	int ms = 0;
	if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			 &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (double)timegm(&tm) + ms / 1000.0;
}

static void latency_file(struct vrun *v, const char *path, double **ms, size_t *n, size_t *cap)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "{\"type\":\"Delivery\"", 18))
			continue;
		json_t *ev = json_loads(line, 0, NULL);
		json_t *sub = json_object_get(v->submitted,
					      json_string_value(json_object_get(ev, "job")) ?: "");
		v->r->dane += json_is_true(json_object_get(json_object_get(ev, "tls"), "dane"));
		double t = iso_time(json_string_value(json_object_get(ev, "time")));
		if (sub && t > 0) {
			if (*n == *cap) {
				*cap = *cap ? *cap * 2 : 65536;
				*ms = vl_realloc(*ms, *cap * sizeof **ms);
			}
			(*ms)[(*n)++] = (t - json_real_value(sub)) * 1000.0;
		}
		json_decref(ev);
	}
	fclose(f);
}

/* After volleyd stopped (its events are on disk). */
static void latency(struct vrun *v)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	double *ms = NULL;
	size_t n = 0, cap = 0;
	snprintf(dir, sizeof dir, "%s/events", v->data);
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strstr(de->d_name, ".jsonl")) {
			snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
			latency_file(v, path, &ms, &n, &cap);
		}
	if (d)
		closedir(d);
	vb_percentiles(ms, n, &v->r->p50_ms, &v->r->p99_ms);
	free(ms);
}

/* Until the bulk job is done (every recipient final), polled as follow()
 * polls; its seconds from t0. */
static int bulk_done(struct vrun *v, double t0)
{
	char path[128];
	double end = vb_now() + (double)v->e->sc->timeout_s;
	snprintf(path, sizeof path, "/v1/jobs/%s", v->bulk_id);
	for (;;) {
		json_t *j = vb_api_get(v->api, path);
		bool done = json_is_true(json_object_get(j, "done"));
		json_decref(j);
		if (!j)
			return -1;
		if (done)
			break;
		if (vb_now() > end) {
			snprintf(v->r->note, sizeof v->r->note, "timed out before the bulk job was done");
			return -1;
		}
		usleep(20000);
	}
	v->r->mx->bulk_s = vb_now() - t0;
	return 0;
}

/* mixed: the bulk upload, then transactional jobs through the API beside
 * its delivery until it is done; tx_only: the stream alone for as long as
 * the mixed run's bulk took, the reference of what the machine gives it
 * without bulk. */
static int submit_mixed(struct vrun *v, double t0)
{
	char sock[PATH_MAX];
	struct vb_mixres *m = v->r->mx;
	if (!v->e->tx_only && submit_bulk(v) < 0)
		return -1;
	snprintf(sock, sizeof sock, "%s/volley.sock", v->data);
	struct vb_txapi *tx = vb_txapi_start(sock, v->e->w, (double)v->e->sc->submit_rate, m);
	int rc = 0;
	if (v->e->tx_only)
		nanosleep(&(struct timespec){ (time_t)v->e->txonly_s,
					      (long)((v->e->txonly_s - (double)(time_t)v->e->txonly_s) * 1e9) },
			  NULL);
	else
		rc = bulk_done(v, t0);
	if (vb_txapi_stop(tx) < 0 && rc == 0) {
		snprintf(v->r->note, sizeof v->r->note, "%ld transactional submissions failed",
			 m->tx_failed);
		rc = -1;
	}
	v->expect += m->tx_sent;
	return rc;
}

static int run(struct vrun *v)
{
	struct vb_meter m;
	struct vb_result *r = v->r;
	const struct vb_scen *sc = v->e->sc;
	if (start(v) < 0)
		return -1;
	if (sc->submission)
		return vb_submit_measure(v->e, v->s, "127.0.0.1", v->sub_port, v->pid, 0, r);
	vb_meter_start(&m, v->pid);
	vb_sink_mark(v->s);
	double t0 = vb_now();
	if (r->mx)
		r->mx->t0 = vl_wall_time();
	int rc = r->mx && !r->mx->alone ? submit_mixed(v, t0)
		 : sc->transactional ? submit_each(v) : submit_bulk(v);
	if (rc == 0)
		rc = follow(v, t0);
	vb_progress_end(v->e);
	/* The sink's count lags its replies by one stats period at most. */
	if (rc == 0 && !vb_sink_wait(v->s, r->delivered, 2.0))
		snprintf(r->note, sizeof r->note, "the sink counted fewer than volley delivered");
	r->seconds = vb_now() - t0;
	vb_meter_stop(&m, &r->cpu_s, &r->peak_mem_kb);
	r->sink_messages = vb_sink_messages(v->s);
	r->sink_rcpts = vb_sink_recipients(v->s);
	vb_result_series(r, v->s);
	return rc;
}

/* mixed: the latency from the sink's accept log; the table's p50/p99
 * are the transactional ones (the bulk alone: its own, from the events). */
static int mixed_figures(struct vrun *v)
{
	struct vb_mixres *m = v->r->mx;
	if (m->alone) {
		m->bulk_s = v->r->seconds;
		latency(v);
		return 0;
	}
	bool ok = vb_mix_latency(m, v->s->alog);
	v->r->p50_ms = m->p50;
	v->r->p99_ms = m->p99;
	if (!ok && !v->r->note[0])
		snprintf(v->r->note, sizeof v->r->note, "%s", m->why);
	return ok ? 0 : -1;
}

/* In the DANE world every delivery must say tls.dane (none under
 * encrypt), or the run measured something else: then it is not ok. */
static void check_dane(const struct vb_env *e, struct vb_result *r)
{
	long want = e->dane_off ? 0 : r->delivered;
	char *n = r->note + strlen(r->note);
	size_t left = sizeof r->note - (size_t)(n - r->note);
	if (r->dane != want)
		r->ok = false;
	snprintf(n, left, "%s%s%ld of %ld deliveries authenticated by DANE (tls.dane)%s",
		 r->note[0] ? "; " : "", r->dane != want ? "WRONG: " : "", r->dane, r->delivered,
		 e->dane_off ? ", policy encrypt" : ", policy dane");
}

int vb_run_volley(const struct vb_env *e, struct vb_sink *s, struct vb_result *r)
{
	struct vrun v = { .e = e, .s = s, .r = r, .submitted = json_object(),
			  .expect = e->tx_only ? 0 : e->sc->recipients };
	snprintf(r->peer, sizeof r->peer, "volley");
	r->p50_ms = r->p99_ms = -1;
	if (e->sc->mixed)
		r->mx = vb_mix_new(e->sc, e->bulk_only, v.expect);
	int rc = run(&v);
	r->messages = v.expect;
	vb_api_close(v.api);
	vb_stop(v.pid, 30000);
	if (e->sc->submission) {  /* vb_submit_measure said it all */
		json_decref(v.submitted);
		return rc;
	}
	int frc = 0;
	if (rc == 0 && r->mx)
		frc = mixed_figures(&v);
	else if (rc == 0)
		latency(&v);
	json_decref(v.submitted);
	r->ran = rc == 0;
	r->ok = rc == 0 && frc == 0 && r->delivered + r->bounced + r->other == r->messages &&
		r->sink_rcpts == r->delivered;
	if (rc == 0 && !r->ok && !r->note[0])
		snprintf(r->note, sizeof r->note, "sink accepted %ld recipients, volley "
			 "delivered %ld", r->sink_rcpts, r->delivered);
	else if (rc == 0 && r->sink_messages && r->sink_messages != r->sink_rcpts)
		snprintf(r->note + strlen(r->note), sizeof r->note - strlen(r->note),
			 "%sshared transactions: %ld messages at the sink for %ld recipients "
			 "(%.1f a message; max_recipients_per_message %ld)", r->note[0] ? "; " : "",
			 r->sink_messages, r->sink_rcpts,
			 (double)r->sink_rcpts / (double)r->sink_messages,
			 e->one_rcpt ? 1 : e->sc->rcpts_per_message);
	if (rc == 0 && e->dane)
		check_dane(e, r);
	return rc;
}
