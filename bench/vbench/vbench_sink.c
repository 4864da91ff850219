/*
 * The sink every peer delivers to: a fresh volley-sink per peer, so its
 * counters are that peer's alone. Its JSON stats lines (every 100 ms) are
 * read on a thread: the latest counters, and the accepted-messages series
 * that the plot shows as delivered per second.
 */
#include "vbench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void sink_args(const struct vb_env *e, struct vb_sink *s, char **argv, int *argc,
		      char store[][48])
{
	const struct vb_scen *sc = e->sc;
	int n = *argc, k = 0;
	for (int i = 0; i < s->naddrs; i++) {
		argv[n++] = "--listen";
		snprintf(store[k], sizeof store[k], "%s:%d", s->addr[i], s->port);
		argv[n++] = store[k++];
	}
	argv[n++] = "--threads";
	snprintf(store[k], sizeof store[k], "%d", sc->sink_threads);
	argv[n++] = store[k++];
	if (sc->tls)
		argv[n++] = "--tls";
	if (sc->tls && e->dane) {
		argv[n++] = "--cert";
		argv[n++] = (char *)e->dane->cert;
		argv[n++] = "--key";
		argv[n++] = (char *)e->dane->key;
	}
	if (sc->latency_ms) {
		argv[n++] = "--latency";
		snprintf(store[k], sizeof store[k], "%ldms", sc->latency_ms);
		argv[n++] = store[k++];
	}
	struct { const char *opt, *stage; double pct; } f[] = {
		{ "--tempfail", "rcpt", sc->tempfail }, { "--permfail", "rcpt", sc->permfail },
		{ "--disconnect", "dot", sc->disconnect },
	};
	for (size_t i = 0; i < 3; i++)
		if (f[i].pct > 0) {
			argv[n++] = (char *)f[i].opt;
			snprintf(store[k], sizeof store[k], "%s:%g%%", f[i].stage, f[i].pct);
			argv[n++] = store[k++];
		}
	/* mixed: when each transactional recipient (t<i>@) was accepted;
	 * transactional: every one (200 a second: the latency of a peer that
	 * reports none, Haraka) */
	if (sc->mixed || sc->transactional) {
		argv[n++] = "--accept-log";
		argv[n++] = s->alog;
		argv[n++] = "--accept-log-rcpt";
		argv[n++] = sc->mixed ? "t*@*" : "*";
	}
	*argc = n;
}

/* --profile NAME --profile-rate R, then the scenario's profile_options
 * split at blanks (store: the copy they point into). */
static void profile_args(const struct vb_scen *sc, struct vb_sink *s, int k, char **argv,
			 int *argc, char *rate, size_t rlen, char *store, int max)
{
	int n = *argc;
	argv[n++] = "--profile";
	argv[n++] = (char *)sc->profiles[k];
	argv[n++] = "--profile-rate";
	snprintf(rate, rlen, "%g/s", s->prof_rate);
	argv[n++] = rate;
	snprintf(store, sizeof sc->profile_opts, "%s", sc->profile_opts);
	for (char *save, *t = strtok_r(store, " \t", &save); t && n < max;
	     t = strtok_r(NULL, " \t", &save))
		argv[n++] = t;
	*argc = n;
}

static int ip_index(const struct vb_sink *s, const char *ip)
{
	struct vb_ipstats *p = s->ips;
	int a, b, c, d;
	/* With egress sources, another address is volley-bench's own wait for
	 * the listener (from 127.0.0.1): not a source, its share not allowed. */
	if (s->nsrc > 0 && (sscanf(ip, "%d.%d.%d.%d", &a, &b, &c, &d) != 4 || a != 127 || b ||
			    c || d < VB_EGRESS_BASE || d >= VB_EGRESS_BASE + s->nsrc))
		return -1;
	for (int i = 0; i < p->n; i++)
		if (!strcmp(p->ip[i], ip))
			return i;
	if (p->n == VB_MAX_IPS || strlen(ip) >= sizeof p->ip[0])
		return -1;
	snprintf(p->ip[p->n], sizeof p->ip[0], "%s", ip);
	return p->n++;
}

/* The "ips" object of a profile sink's line; under s->mu. */
static void take_ips(struct vb_sink *s, json_t *ips)
{
	static const char *const why[VB_NREASONS] = { "conns", "rate", "new_ip", "rcpts",
						      "per_conn" };
	const char *ip;
	json_t *o;
	json_object_foreach(ips, ip, o) {
		int i = ip_index(s, ip);
		if (i < 0)
			continue;
		s->ips->accepted[i] = (long)json_integer_value(json_object_get(o, "accepted"));
		s->ips->throttled[i] = (long)json_integer_value(json_object_get(o, "throttled"));
		s->ips->share[i] = json_number_value(json_object_get(o, "share"));
		for (int r = 0; r < VB_NREASONS; r++)
			s->ips->reason[i][r] = (long)json_integer_value(
				json_object_get(json_object_get(o, "by_reason"), why[r]));
	}
}

/* One sample of the per-IP series at index k. */
static void ips_sample(struct vb_sink *s, int k)
{
	double share = 0;
	for (int i = 0; i < s->ips->n; i++) {
		share += s->ips->share[i];
		s->ips->acc[k][i] = s->ips->accepted[i];
	}
	s->ips->allowed[k] = s->prof_rate * share;
}

static void take_line(struct vb_sink *s, const char *line, size_t *nlines, int *stride)
{
	json_t *j = json_loads(line, 0, NULL);
	if (!j)
		return;
	double now = vb_now();
	pthread_mutex_lock(&s->mu);
	long open = (long)json_integer_value(json_object_get(j, "conns_open"));
	s->messages = (long)json_integer_value(json_object_get(j, "messages"));
	s->recipients = (long)json_integer_value(json_object_get(j, "recipients"));
	s->logged = (long)json_integer_value(json_object_get(j, "accept_logged"));
	if (open > s->conns_peak)
		s->conns_peak = open;
	if (s->ips && json_is_object(json_object_get(j, "ips")))
		take_ips(s, json_object_get(j, "ips"));
	if (s->t0 > 0 && (*nlines)++ % (size_t)*stride == 0) {
		if (s->nseries == VB_SERIES_MAX) {
			/* Full: keep every other sample and sample half as often. */
			for (int i = 0; i < VB_SERIES_MAX / 2; i++) {
				s->st[i] = s->st[2 * i];
				s->sv[i] = s->sv[2 * i];
				s->sl[i] = s->sl[2 * i];
				if (s->ips) {
					s->ips->allowed[i] = s->ips->allowed[2 * i];
					memcpy(s->ips->acc[i], s->ips->acc[2 * i], sizeof s->ips->acc[i]);
				}
			}
			s->nseries = VB_SERIES_MAX / 2;
			*stride *= 2;
		}
		s->st[s->nseries] = now - s->t0;
		if (s->ips)
			ips_sample(s, s->nseries);
		s->sl[s->nseries] = s->logged;
		s->sv[s->nseries++] = s->recipients;
	}
	pthread_mutex_unlock(&s->mu);
	json_decref(j);
}

static void *follow(void *arg)
{
	struct vb_sink *s = arg;
	FILE *f = fdopen(s->fd, "r");
	char line[16384];   /* a profile sink's line lists its IPs */
	size_t nlines = 0;
	int stride = 1;
	if (!f)
		return NULL;
	while (fgets(line, sizeof line, f))
		take_line(s, line, &nlines, &stride);
	fclose(f);
	return NULL;
}

/* Free on every sink address: probed without SO_REUSEPORT, so a sink of
 * another run (which listens with it) makes the bind fail instead of
 * silently sharing its connections with ours. SO_REUSEADDR lets a port
 * whose connections are in TIME_WAIT pass (the dane scenario's sinks
 * reuse one port). */
static bool port_free(const struct vb_sink *s, int port)
{
	for (int i = 0; i < s->naddrs; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
		bool ok = fd >= 0 && inet_pton(AF_INET, s->addr[i], &a.sin_addr) == 1 &&
			  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
			  bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
		if (fd >= 0)
			close(fd);
		if (!ok)
			return false;
	}
	return true;
}

static int pick_port(const struct vb_sink *s)
{
	for (int i = 0; i < 50; i++) {
		int port = vb_free_port();
		if (port > 0 && port_free(s, port))
			return port;
	}
	return -1;
}

static void sink_addrs(const struct vb_scen *sc, struct vb_sink *s)
{
	s->naddrs = sc->sink_addrs;
	for (int i = 0; i < s->naddrs; i++)
		snprintf(s->addr[i], sizeof s->addr[i], "127.0.0.%d", 21 + i);
}

int vb_sink_port(const struct vb_scen *sc)
{
	struct vb_sink s = { 0 };
	sink_addrs(sc, &s);
	return pick_port(&s);
}

/* The DANE world's port (named by its TLSA records), still free; or any. */
static int sink_port(const struct vb_env *e, const struct vb_sink *s)
{
	if (!e->dane)
		return pick_port(s);
	if (port_free(s, e->dane->port))
		return e->dane->port;
	fprintf(stderr, "volley-bench: the sink's port %d is taken\n", e->dane->port);
	return -1;
}

/* prof: the scenario's profile index, -1 for none. */
static int start(const struct vb_env *e, const char *dir, struct vb_sink *s, int prof)
{
	char bin[PATH_MAX], log[PATH_MAX], store[VB_MAX_ADDRS + 8][48];
	char popts[sizeof e->sc->profile_opts], rate[32];
	char *argv[2 * VB_MAX_ADDRS + 32 + sizeof popts / 2];
	int argc = 0, pfd[2];

	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	sink_addrs(e->sc, s);
	if (prof >= 0) {
		s->naddrs = 1;
		snprintf(s->addr[0], sizeof s->addr[0], "127.0.0.%d", 21 + prof);
		s->prof_rate = vb_prof_rate(e->sc->profiles[prof]);
		s->nsrc = e->sc->egress;
		s->ips = vl_calloc(1, sizeof *s->ips);
	}
	s->port = sink_port(e, s);
	snprintf(s->alog, sizeof s->alog, "%s/accepted.log", dir);
	snprintf(bin, sizeof bin, "%s/volley-sink", e->bin_dir);
	snprintf(log, sizeof log, "%s/sink%s%s.log", dir, prof >= 0 ? "-" : "",
		 prof >= 0 ? e->sc->profiles[prof] : "");
	argv[argc++] = bin;
	sink_args(e, s, argv, &argc, store);
	if (prof >= 0)
		profile_args(e->sc, s, prof, argv, &argc, rate, sizeof rate, popts,
			     (int)(sizeof argv / sizeof *argv) - 5);
	argv[argc++] = "--stats-every";
	argv[argc++] = "100ms";
	argv[argc++] = "--quiet";
	argv[argc] = NULL;
	if (s->port < 0 || pipe2(pfd, O_CLOEXEC) < 0) {
		perror("volley-bench: sink");
		return -1;
	}
	/* The sink writes its stats to the pipe: its stdout is the write end. */
	char out[32];
	snprintf(out, sizeof out, "/dev/fd/%d", pfd[1]);
	fcntl(pfd[1], F_SETFD, 0);
	s->pid = vb_spawn(argv, out, log);
	close(pfd[1]);
	s->fd = pfd[0];
	pthread_create(&s->th, NULL, follow, s);
	for (int i = 0; i < s->naddrs; i++)
		if (!vb_wait_port(s->addr[i], s->port, 5000)) {
			fprintf(stderr, "volley-bench: volley-sink did not listen on %s:%d (see %s)\n",
				s->addr[i], s->port, log);
			vb_sink_stop(s);
			return -1;
		}
	return 0;
}

int vb_sink_start(const struct vb_env *e, const char *dir, struct vb_sink *s)
{
	return start(e, dir, s, -1);
}

int vb_sink_start_profile(const struct vb_env *e, const char *dir, struct vb_sink *s, int k)
{
	return start(e, dir, s, k);
}

long vb_sink_messages(struct vb_sink *s)
{
	pthread_mutex_lock(&s->mu);
	long n = s->messages;
	pthread_mutex_unlock(&s->mu);
	return n;
}

long vb_sink_recipients(struct vb_sink *s)
{
	pthread_mutex_lock(&s->mu);
	long n = s->recipients;
	pthread_mutex_unlock(&s->mu);
	return n;
}

void vb_sink_mark(struct vb_sink *s)
{
	double cpu = vb_tree_cpu(s->pid);
	pthread_mutex_lock(&s->mu);
	s->cpu_mark = cpu;
	s->t0 = vb_now();
	s->nseries = 0;
	pthread_mutex_unlock(&s->mu);
}

bool vb_sink_wait(struct vb_sink *s, long n, double timeout_s)
{
	double end = vb_now() + timeout_s;
	while (vb_sink_recipients(s) < n) {
		if (vb_now() > end)
			return false;
		usleep(20000);
	}
	return true;
}

void vb_sink_stop(struct vb_sink *s)
{
	if (s->pid > 0) {
		vb_stop(s->pid, 3000);
		s->pid = 0;
		pthread_join(s->th, NULL);  /* the pipe closes with the sink */
	}
}

void vb_result_series(struct vb_result *r, struct vb_sink *s)
{
	pthread_mutex_lock(&s->mu);
	r->nseries = s->nseries;
	memcpy(r->st, s->st, sizeof r->st[0] * (size_t)s->nseries);
	memcpy(r->sv, s->sv, sizeof r->sv[0] * (size_t)s->nseries);
	memcpy(r->sl, s->sl, sizeof r->sl[0] * (size_t)s->nseries);
	r->peak_conns = s->conns_peak;
	pthread_mutex_unlock(&s->mu);
}
