/*
 * The providers scenario (docs/bench.md): a newsletter to one volley-sink
 * per provider profile (gmail, yahoo, microsoft: per client IP connection
 * limits, rate buckets, new-IP deferrals, with the providers' replies),
 * sent by volleyd from the scenario's egress sources, to see whether
 * volley's adaptive back-off converges to each profile's allowed rate
 * without bounces. volleyd's domains come from the scenario's
 * volleyd_conf (so provider rules can be added there); volley-bench adds
 * data_dir, hostname, dns and the egress sources. Followed through
 * /v1/stats and /v1/queues (volley's own rate and suspensions) until every
 * recipient is final or the scenario's timeout; the events tell how each
 * deferral was classed.
 */
#include "vbench_prov.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The sinks' defaults (sink/sink_profile.c): the rate per IP once ramped up. */
static const struct { const char *name; double rate; } profs[] = {
	{ "gmail", 20 }, { "yahoo", 10 }, { "microsoft", 15 },
};

bool vb_prof_known(const char *name)
{
	return vb_prof_rate(name) > 0;
}

double vb_prof_rate(const char *name)
{
	for (size_t i = 0; i < sizeof profs / sizeof *profs; i++)
		if (!strcmp(profs[i].name, name))
			return profs[i].rate;
	return 0;
}

/* The template with each @NAME@ replaced by that profile's sink route. */
static int copy_template(const struct vb_prov *p, FILE *out)
{
	FILE *in = fopen(p->e->sc->volleyd_conf, "r");
	char line[2048], tok[40];
	if (!in) {
		fprintf(stderr, "volley-bench: %s: %s\n", p->e->sc->volleyd_conf, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, in)) {
		char *s = line;
		for (char *at; (at = strchr(s, '@'));) {
			int k = -1;
			for (int i = 0; i < p->n && k < 0; i++) {
				snprintf(tok, sizeof tok, "@%s@", p->d[i].name);
				if (!strncmp(at, tok, strlen(tok)))
					k = i;
			}
			fwrite(s, 1, (size_t)(at - s), out);
			if (k < 0) {
				fputc('@', out);
				s = at + 1;
				continue;
			}
			fprintf(out, "%s:%d", p->d[k].sink.addr[0], p->d[k].sink.port);
			s = at + strlen(p->d[k].name) + 2;
		}
		fputs(s, out);
	}
	fclose(in);
	return 0;
}

static int write_config(struct vb_prov *p, const char *path, const char *data)
{
	const struct vb_scen *sc = p->e->sc;
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "# written by volley-bench for the %s scenario; the rest is %s\n"
		   "data_dir = \"%s\";\nhostname = \"mta1.bench.example\";\n"
		   "dns = { servers = [ \"127.0.0.1:9\" ]; };\n", sc->name, sc->volleyd_conf, data);
	if (p->nsrc > 0) {
		fprintf(f, "egress = (\n");
		for (int i = 0; i < p->nsrc; i++)
			fprintf(f, "  { name = \"%s\"; address = \"%s\"; ehlo = \"mta%d.bench.example\"; "
				   "}%s\n", p->src[i], p->src_addr[i], i, i + 1 < p->nsrc ? "," : "");
		fprintf(f, ");\n");
	}
	int rc = copy_template(p, f);
	if (rc == 0 && p->e->volley_conf)   /* --volley-conf: after the template */
		rc = vb_system("cat '%s' >> '%s'", p->e->volley_conf, path);
	return fclose(f) || rc ? -1 : 0;
}

static int start_volleyd(struct vb_prov *p)
{
	char bin[PATH_MAX], conf[PATH_MAX], log[PATH_MAX], data[PATH_MAX], sock[PATH_MAX + 16];
	snprintf(data, sizeof data, "%s/data", p->dir);
	snprintf(conf, sizeof conf, "%s/volley.conf", p->dir);
	snprintf(log, sizeof log, "%s/volleyd.log", p->dir);
	snprintf(sock, sizeof sock, "%s/volley.sock", data);
	snprintf(bin, sizeof bin, "%s/volleyd", p->e->bin_dir);
	if (write_config(p, conf, data) < 0) {
		snprintf(p->note, sizeof p->note, "could not write %.200s", conf);
		return -1;
	}
	char *argv[] = { bin, "--foreground", "--config", conf, NULL };
	p->pid = vb_spawn(argv, log, log);
	for (int i = 0; i < 500 && access(sock, F_OK) < 0; i++) {
		if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
			p->pid = 0;
			snprintf(p->note, sizeof p->note, "volleyd ended at its start (see %.200s)", log);
			return -1;
		}
		usleep(10000);
	}
	if (access(sock, F_OK) < 0 || !vb_wait_unix(sock, 5000) || !(p->api = vb_api_open(sock))) {
		snprintf(p->note, sizeof p->note, "volleyd did not start (see %.200s)", log);
		return -1;
	}
	return 0;
}

static int profile_of_site(const struct vb_prov *p, const char *site)
{
	char want[64];
	for (int k = 0; k < p->n && site; k++) {
		snprintf(want, sizeof want, "%s:%d", p->d[k].sink.addr[0], p->d[k].sink.port);
		if (!strcmp(site, want))
			return k;
	}
	return -1;
}

static int source_index(const struct vb_prov *p, const char *name, const char *addr)
{
	for (int i = 0; i < p->nsrc; i++)
		if ((name && !strcmp(name, p->src[i])) || (addr && !strcmp(addr, p->src_addr[i])))
			return i;
	return p->nsrc ? -1 : 0;  /* without egress: one "source", the system's */
}

/* One queue row: volley's cap for that source, its back-off episodes. */
static void queue_row(struct vb_prov *p, json_t *q, double *cap, int *susp, bool *unlimited)
{
	int k = profile_of_site(p, json_string_value(json_object_get(q, "site")));
	int s = source_index(p, json_string_value(json_object_get(q, "source")), NULL);
	if (k < 0 || s < 0)
		return;
	struct vb_pdest *d = &p->d[k];
	json_t *bo = json_object_get(q, "backoff");
	bool suspended = json_is_true(json_object_get(bo, "suspended"));
	int level = (int)json_integer_value(json_object_get(bo, "level"));
	double cur = json_number_value(json_object_get(q, "current_rate"));
	double conf = json_number_value(json_object_get(q, "rate"));
	if ((suspended && !d->last_susp[s]) || level > d->last_level[s])
		d->suspensions++;
	d->last_susp[s] = suspended;
	d->last_level[s] = level;
	if (suspended)
		susp[k]++;
	else if (cur > 0 || conf > 0)
		cap[k] += cur > 0 ? cur : conf;
	else
		unlimited[k] = true;
}

static void sample_queues(struct vb_prov *p, double t)
{
	json_t *j = vb_api_get(p->api, "/v1/queues"), *q;
	double cap[VB_MAX_PROFILES] = { 0 };
	int susp[VB_MAX_PROFILES] = { 0 };
	bool unl[VB_MAX_PROFILES] = { 0 };
	size_t i;
	if (!j)
		return;
	json_array_foreach(json_object_get(j, "queues"), i, q)
		queue_row(p, q, cap, susp, unl);
	json_decref(j);
	for (int k = 0; k < p->n; k++) {
		struct vb_pdest *d = &p->d[k];
		if (d->nq == VB_QSAMPLES)
			continue;
		d->qt[d->nq] = t;
		d->qcap[d->nq] = unl[k] ? -1 : cap[k];
		d->qsusp[d->nq++] = susp[k];
	}
}

static int stats(struct vb_prov *p)
{
	json_t *j = vb_api_get(p->api, "/v1/stats"), *n;
	json_t *c = json_object_get(json_object_get(j, "scheduler"), "recipients");
	const char *k;
	if (!c) {
		json_decref(j);
		return -1;
	}
	p->total = p->final = p->delivered = p->bounced = 0;
	json_object_foreach(c, k, n) {
		long x = (long)json_integer_value(n);
		p->total += x;
		if (!strcmp(k, "delivered"))
			p->delivered = x;
		if (!strcmp(k, "bounced"))
			p->bounced = x;
		if (!strcmp(k, "delivered") || !strcmp(k, "bounced") || !strcmp(k, "expired") ||
		    !strcmp(k, "cancelled") || !strcmp(k, "suppressed"))
			p->final += x;
	}
	json_decref(j);
	return 0;
}

/* Every 500 ms until every recipient is final or the timeout. */
static int follow(struct vb_prov *p, double t0)
{
	const struct vb_scen *sc = p->e->sc;
	double end = t0 + (double)sc->timeout_s;
	for (;;) {
		double now = vb_now();
		if (stats(p) < 0) {
			snprintf(p->note, sizeof p->note, "volleyd's /v1/stats did not answer");
			return -1;
		}
		sample_queues(p, now - t0);
		vb_progress(p->e, "volley", p->final, sc->recipients, now - t0);
		if (p->total == sc->recipients && p->final == p->total)
			return 0;
		if (now > end) {
			p->timed_out = true;
			snprintf(p->note, sizeof p->note, "timed out after %lds: %ld of %ld final",
				 sc->timeout_s, p->final, sc->recipients);
			return -1;
		}
		usleep(500000);
	}
}

static void add_reply(struct vb_pdest *d, const char *cls, const char *text)
{
	for (int i = 0; i < d->nreplies; i++)
		if (!strcmp(d->replies[i].cls, cls) && !strcmp(d->replies[i].text, text)) {
			d->replies[i].n++;
			return;
		}
	if (d->nreplies == VB_MAX_REPLIES)
		return;
	struct vb_reply *r = &d->replies[d->nreplies++];
	snprintf(r->cls, sizeof r->cls, "%s", cls);
	snprintf(r->text, sizeof r->text, "%s", text);
	r->n = 1;
}

/* "421 4.7.28 text" or the reason, cut at its first 90 characters. */
static void reply_text(json_t *ev, char *out, size_t len)
{
	json_t *r = json_object_get(ev, "response");
	const char *enh = json_string_value(json_object_get(r, "enhanced"));
	const char *txt = json_string_value(json_object_get(r, "text"));
	if (r && json_is_object(r))
		snprintf(out, len, "%d %s%s%.90s", (int)json_integer_value(json_object_get(r, "code")),
			 enh ? enh : "", enh ? " " : "", txt ? txt : "");
	else
		snprintf(out, len, "%.100s", json_string_value(json_object_get(ev, "reason")) ?: "?");
}

static int profile_of_domain(const struct vb_prov *p, const char *dom)
{
	char suf[40];
	size_t dl = dom ? strlen(dom) : 0;
	for (int k = 0; k < p->n; k++) {
		size_t sl = (size_t)snprintf(suf, sizeof suf, "%s.test", p->d[k].name);
		if (dl >= sl && !strcmp(dom + dl - sl, suf) && (dl == sl || dom[dl - sl - 1] == '.'))
			return k;
	}
	return -1;
}

/* Recipients per profile, as the workload assigned them. */
static void count_recipients(struct vb_prov *p)
{
	char dom[96];
	for (long i = 0; i < p->e->sc->recipients; i++) {
		vb_rcpt_domain(p->e->sc, i, dom, sizeof dom);
		int k = profile_of_domain(p, dom);
		if (k < 0)
			continue;
		p->d[k].recipients++;
		if (!p->d[k].domain[0])
			snprintf(p->d[k].domain, sizeof p->d[k].domain, "%s", dom);
	}
}

static void take_event(struct vb_prov *p, json_t *ev)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	int k = profile_of_domain(p, json_string_value(json_object_get(ev, "domain")));
	int s = source_index(p, NULL, json_string_value(json_object_get(ev, "source_address")));
	if (!type || k < 0)
		return;
	struct vb_pdest *d = &p->d[k];
	const char *cls = json_string_value(json_object_get(ev, "bounce_class")) ?: "none";
	char text[128];
	if (!strcmp(type, "Delivery")) {
		d->delivered_all++;
		if (s >= 0)
			d->delivered[s]++;
	} else if (!strcmp(type, "TransientFailure")) {
		d->deferred_all++;
		if (s >= 0)
			d->deferred[s]++;
		*(strcmp(cls, "rate-limited") ? &d->by_class_other : &d->by_class_rate) += 1;
		reply_text(ev, text, sizeof text);
		add_reply(d, cls, text);
	} else if (!strcmp(type, "Bounce")) {
		d->bounced++;
		reply_text(ev, text, sizeof text);
		add_reply(d, cls, text);
	} else if (!strcmp(type, "Expiration")) {
		d->expired++;
	}
}

/* After volleyd stopped: its events, every file. */
static void read_events(struct vb_prov *p)
{
	char dir[PATH_MAX], path[PATH_MAX + 300], line[8192];
	snprintf(dir, sizeof dir, "%s/data/events", p->dir);
	DIR *dp = opendir(dir);
	struct dirent *de;
	while (dp && (de = readdir(dp))) {
		if (!strstr(de->d_name, ".jsonl"))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		FILE *f = fopen(path, "r");
		while (f && fgets(line, sizeof line, f)) {
			json_t *ev = json_loads(line, 0, NULL);
			if (ev)
				take_event(p, ev);
			json_decref(ev);
		}
		if (f)
			fclose(f);
	}
	if (dp)
		closedir(dp);
}

static int start_sinks(struct vb_prov *p)
{
	const struct vb_scen *sc = p->e->sc;
	p->n = sc->nprofiles;
	for (int k = 0; k < p->n; k++) {
		p->d[k].name = sc->profiles[k];
		if (vb_sink_start_profile(p->e, p->dir, &p->d[k].sink, k) < 0) {
			snprintf(p->note, sizeof p->note, "volley-sink --profile %s did not start",
				 p->d[k].name);
			return -1;
		}
	}
	return 0;
}

static void stop_all(struct vb_prov *p)
{
	vb_api_close(p->api);
	p->api = NULL;
	if (p->pid > 0)
		vb_stop(p->pid, 30000);
	p->pid = 0;
	for (int k = 0; k < p->n; k++)
		vb_sink_stop(&p->d[k].sink);
}

static int run(struct vb_prov *p)
{
	if (start_sinks(p) < 0 || start_volleyd(p) < 0)
		return -1;
	for (int k = 0; k < p->n; k++)
		vb_sink_mark(&p->d[k].sink);
	double t0 = vb_now();
	json_t *j = vb_api_post_file(p->api, "/v1/jobs", p->e->w->submit);
	if (!j) {
		snprintf(p->note, sizeof p->note, "the job was not accepted");
		return -1;
	}
	json_decref(j);
	int rc = follow(p, t0);
	vb_progress_end(p->e);
	p->seconds = vb_now() - t0;
	/* The sinks' counts lag their replies by one stats period at most. */
	for (int k = 0; k < p->n && rc == 0; k++)
		vb_sink_wait(&p->d[k].sink, 1, 0.3);
	usleep(300000);
	return rc;
}

static void sources(struct vb_prov *p)
{
	p->nsrc = p->e->sc->egress;
	for (int i = 0; i < p->nsrc; i++) {
		snprintf(p->src[i], sizeof p->src[i], "src%d", i);
		snprintf(p->src_addr[i], sizeof p->src_addr[i], "127.0.0.%d", VB_EGRESS_BASE + i);
	}
}

int vb_run_providers(const struct vb_env *e, const char *prefix, bool no_plot)
{
	struct vb_prov *p = vl_calloc(1, sizeof *p);
	char path[PATH_MAX + 8];
	p->e = e;
	snprintf(p->dir, sizeof p->dir, "%s/volley", e->w->dir);
	mkdir(p->dir, 0755);
	sources(p);
	int rc = run(p);
	stop_all(p);
	count_recipients(p);
	read_events(p);
	vb_prov_figures(p);
	vb_prov_table(p);
	snprintf(path, sizeof path, "%s.json", prefix);
	if (vb_prov_json(p, path) == 0)
		printf("result: %s\n", path);
	snprintf(path, sizeof path, "%s.png", prefix);
	if (!no_plot && vb_prov_plot(p, path) == 0)
		printf("plot:   %s\n", path);
	bool ok = rc == 0 && p->delivered == e->sc->recipients;
	for (int k = 0; k < p->n; k++) {
		ok = ok && p->d[k].sink.messages == p->d[k].delivered_all;
		free(p->d[k].sink.ips);
	}
	free(p);
	return ok ? 0 : -1;
}
