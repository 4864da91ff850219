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
	*argc = n;
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
	if (open > s->conns_peak)
		s->conns_peak = open;
	if (s->t0 > 0 && (*nlines)++ % (size_t)*stride == 0) {
		if (s->nseries == VB_SERIES_MAX) {
			/* Full: keep every other sample and sample half as often. */
			for (int i = 0; i < VB_SERIES_MAX / 2; i++) {
				s->st[i] = s->st[2 * i];
				s->sv[i] = s->sv[2 * i];
			}
			s->nseries = VB_SERIES_MAX / 2;
			*stride *= 2;
		}
		s->st[s->nseries] = now - s->t0;
		s->sv[s->nseries++] = s->recipients;
	}
	pthread_mutex_unlock(&s->mu);
	json_decref(j);
}

static void *follow(void *arg)
{
	struct vb_sink *s = arg;
	FILE *f = fdopen(s->fd, "r");
	char line[4096];
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

int vb_sink_start(const struct vb_env *e, const char *dir, struct vb_sink *s)
{
	char bin[PATH_MAX], log[PATH_MAX], store[VB_MAX_ADDRS + 8][48];
	char *argv[2 * VB_MAX_ADDRS + 28];
	int argc = 0, pfd[2];

	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	sink_addrs(e->sc, s);
	s->port = sink_port(e, s);
	snprintf(bin, sizeof bin, "%s/volley-sink", e->bin_dir);
	snprintf(log, sizeof log, "%s/sink.log", dir);
	argv[argc++] = bin;
	sink_args(e, s, argv, &argc, store);
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
	r->peak_conns = s->conns_peak;
	pthread_mutex_unlock(&s->mu);
}
