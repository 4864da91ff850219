/*
 * volleyd: the daemon. Loads the configuration, opens the spool (which
 * recovers what an earlier run left), starts the API and waits for a
 * signal. Signals are taken synchronously in main (sigwait), so no handler
 * runs on a worker or API thread.
 *
 *   volleyd [--config FILE] [--data-dir DIR] [--foreground] [--check-config]
 */
#include "volleyd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: volleyd [--config FILE] [--data-dir DIR] [--foreground] "
		"[--check-config] [--verbose]\n"
		"  --config FILE   configuration (libconfig syntax; docs/config.md)\n"
		"  --data-dir DIR  spool, socket and logs (overrides data_dir)\n"
		"  --foreground    stay attached, log to stderr\n"
		"  --check-config  validate, print the effective configuration, exit\n");
}

/* Detach: fork, new session, stdio to data_dir/volleyd.log. */
static int daemonize(const char *data_dir)
{
	char path[4096];
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	setsid();
	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	snprintf(path, sizeof path, "%s/volleyd.log", data_dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	int nul = open("/dev/null", O_RDONLY);
	if (fd < 0 || nul < 0)
		return -1;
	dup2(nul, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	close(nul);
	close(fd);
	return 0;
}

/* One volleyd per data dir: an exclusive lock on volleyd.pid. */
static int lock_pidfile(const char *data_dir)
{
	char path[4096], pid[32];
	int fd;

	snprintf(path, sizeof path, "%s/volleyd.pid", data_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "volleyd: %s: %s\n", path, errno == EWOULDBLOCK ?
			"another volleyd runs on this data dir" : strerror(errno));
		return -1;
	}
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		return -1;
	return fd;              /* kept open: the lock lives as long as we do */
}

struct opts {
	const char *config, *data_dir;
	bool foreground, check, verbose;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "c:d:fkvh", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'd': o->data_dir = optarg; break;
		case 'f': o->foreground = true; break;
		case 'k': o->check = true; break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "volleyd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	return 0;
}

static int wait_for_signal(void)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	do {
		sigwait(&set, &sig);
		if (sig == SIGHUP)
			vl_log(VL_LOG_INFO, "volleyd: SIGHUP: reloading is not supported yet; "
			       "restart to apply a new configuration");
	} while (sig == SIGHUP);
	return sig;
}

static int run(struct cfg *cfg, bool foreground)
{
	struct vd_daemon v = { 0 };

	if (mkdir(cfg->data_dir, 0750) < 0 && errno != EEXIST) {
		fprintf(stderr, "volleyd: cannot create %s: %s\n", cfg->data_dir, strerror(errno));
		return 1;
	}
	if (!foreground && daemonize(cfg->data_dir) < 0) {
		fprintf(stderr, "volleyd: cannot detach: %s\n", strerror(errno));
		return 1;
	}
	if (lock_pidfile(cfg->data_dir) < 0)
		return 1;
	if (vd_open(&v, cfg) < 0) {
		vd_close(&v, cfg);
		return 1;
	}
	vl_log(VL_LOG_INFO, "volleyd: ready, data dir %s, pid %ld", cfg->data_dir,
	       (long)getpid());
	int sig = wait_for_signal();
	vl_log(VL_LOG_INFO, "volleyd: %s: draining (up to %llu ms)", strsignal(sig),
	       (unsigned long long)cfg->shutdown_grace_ms);
	vd_close(&v, cfg);
	vl_log(VL_LOG_INFO, "volleyd: stopped");
	return 0;
}

/* --check-config: every DKIM key must load (file there, readable, the
 * right kind and size); dkim_required without a key is a mistake. */
static int check_keys(const struct cfg *c)
{
	char err[512];
	int rc = 0;

	for (size_t i = 0; i < c->ndkim; i++) {
		struct msg_dkim_key *k = msg_dkim_key_load(c->dkim[i].key, c->dkim[i].domain,
							   c->dkim[i].selector, err, sizeof err);
		if (!k) {
			fprintf(stderr, "volleyd: dkim[%zu] (%s, selector %s): %s\n", i,
				c->dkim[i].domain, c->dkim[i].selector, err);
			rc = -1;
		}
		msg_dkim_key_free(k);
	}
	if (c->dkim_required && !c->ndkim) {
		fprintf(stderr, "volleyd: dkim_required is set but no dkim key is configured\n");
		rc = -1;
	}
	return rc;
}

/* DANE trusts the AD bit of dns.servers: say so when they are not on
 * this machine (a validating resolver one trusts, reached over a path no
 * one can tamper with, is the premise). Comment lines: the output stays
 * a valid configuration file. */
static void note_dnssec_trust(const struct cfg *c, struct vl_buf *out)
{
	if (!c->dns.nservers) {
		vl_buf_appends(out, "# note: dns.servers is unset: the system's resolvers are "
			       "used, and DANE trusts their DNSSEC validation (the AD bit);\n"
			       "# note: set it to a local validating resolver (unbound on "
			       "127.0.0.1) to be sure of it\n");
		return;
	}
	for (size_t i = 0; i < c->dns.nservers; i++) {
		const char *s = c->dns.servers[i];
		if (strncmp(s, "127.", 4) == 0 || strncmp(s, "[::1]", 5) == 0)
			continue;
		vl_buf_printf(out, "# note: dns.servers[%zu] = \"%s\" is not on loopback: DANE "
			      "trusts its DNSSEC validation (the AD bit) and the path to it\n",
			      i, s);
	}
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct cfg cfg;
	char err[512];
	sigset_t set;

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	if (cfg_load(&cfg, o.config, err, sizeof err) < 0) {
		fprintf(stderr, "volleyd: %s\n", err);
		return 1;
	}
	if (o.data_dir) {
		free(cfg.data_dir);
		cfg.data_dir = vl_strdup(o.data_dir);
	}
	if (o.check) {
		if (check_keys(&cfg) < 0) {
			cfg_free(&cfg);
			return 1;
		}
		struct vl_buf b;
		vl_buf_init(&b);
		cfg_print(&cfg, &b);
		note_dnssec_trust(&cfg, &b);
		fwrite(b.p, 1, b.len, stdout);
		vl_buf_free(&b);
		cfg_free(&cfg);
		return 0;
	}
	vl_log_set_level(o.verbose ? VL_LOG_DEBUG : VL_LOG_INFO);
	/* Every thread inherits this mask; main takes the signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	int rc = run(&cfg, o.foreground);
	cfg_free(&cfg);
	return rc;
}
