/*
 * The dane scenario's DNS: bench/dane-world.py (tests/e2e/dnssec.py's
 * DnssecWorld) signs bench.test. (an MX per recipient domain, an A and a
 * TLSA 3 1 1 per sink address), serves it with NSD and validates it with
 * unbound, all on loopback, and makes the sink's certificate. Stopped by
 * its PID; it stops NSD and unbound by theirs.
 */
#include "vbench.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_S 120   /* keys, signing, NSD and unbound: seconds at most */

static bool read_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool ok = fgets(out, (int)len, f) != NULL;
	fclose(f);
	out[strcspn(out, "\n")] = 0;
	return ok;
}

/* Until the helper writes dir/resolver, or dir/error, or dies. */
static int wait_world(struct vb_dane *d)
{
	char path[PATH_MAX + 16], why[512];
	double end = vb_now() + START_S;
	snprintf(path, sizeof path, "%s/resolver", d->dir);
	while (vb_now() < end) {
		if (read_line(path, d->resolver, sizeof d->resolver) && d->resolver[0])
			return 0;
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			d->pid = 0;   /* it ended: nothing to stop */
			break;
		}
		usleep(50000);
	}
	snprintf(path, sizeof path, "%s/error", d->dir);
	if (!read_line(path, why, sizeof why))
		snprintf(why, sizeof why, "%s (see %.300s/world.log)",
			 d->pid ? "no resolver in time" : "bench/dane-world.py ended", d->dir);
	fprintf(stderr, "volley-bench: the DNSSEC world did not start: %s\n", why);
	return -1;
}

int vb_dane_start(const struct vb_scen *sc, const char *run_dir, const char *src_dir,
		  struct vb_dane *d)
{
	char script[PATH_MAX], port[16], hosts[16], domains[24], log[PATH_MAX];
	memset(d, 0, sizeof *d);
	snprintf(d->dir, sizeof d->dir, "%s/dane", run_dir);
	snprintf(d->cert, sizeof d->cert, "%s/sink.pem", d->dir);
	snprintf(d->key, sizeof d->key, "%s/sink.key", d->dir);
	snprintf(log, sizeof log, "%s/world.log", d->dir);
	snprintf(script, sizeof script, "%.4000s/bench/dane-world.py", src_dir);
	d->port = vb_sink_port(sc);
	if (d->port < 0 || mkdir(d->dir, 0755) < 0) {
		perror("volley-bench: dane");
		return -1;
	}
	snprintf(port, sizeof port, "%d", d->port);
	snprintf(hosts, sizeof hosts, "%d", sc->sink_addrs);
	snprintf(domains, sizeof domains, "%ld", sc->domains);
	char *argv[] = { "/usr/bin/python3", script, "--dir", d->dir, "--port", port,
			 "--hosts", hosts, "--domains", domains, NULL };
	d->pid = vb_spawn(argv, log, log);
	if (d->pid < 0 || wait_world(d) < 0) {
		vb_dane_stop(d);
		return -1;
	}
	fprintf(stderr, "DNSSEC world: validating resolver %s, TLSA _%d._tcp.mx.sN.bench.test\n",
		d->resolver, d->port);
	return 0;
}

void vb_dane_stop(struct vb_dane *d)
{
	/* It stops NSD and unbound (each waited for up to 5 s) on SIGTERM. */
	if (d->pid > 0)
		vb_stop(d->pid, 20000);
	d->pid = 0;
}
