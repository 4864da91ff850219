/*
 * volleyd: the daemon. Loads the configuration, opens the spool (which
 * recovers what an earlier run left), starts the API and waits for a
 * signal. Signals are taken synchronously in main (sigwait), so no handler
 * runs on a worker or API thread.
 *
 *   volleyd [--config FILE] [--data-dir DIR] [--foreground] [--verbose]
 *           [--check-config] [--version]
 *
 * Detached, the start tells the truth: what can be checked before the
 * fork is (configuration, keys, data dir, lock), and the daemon reports
 * the rest (log, spool, sockets, threads) through a pipe the parent waits
 * on; the parent exits 0 only once the daemon is ready.
 */
#include "volleyd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: volleyd [--config FILE] [--data-dir DIR] [--foreground] "
		"[--verbose] [--check-config] [--version]\n"
		"  --config FILE   configuration (libconfig syntax; docs/config.md)\n"
		"  --data-dir DIR  spool, socket, pid file and log (overrides data_dir)\n"
		"  --foreground    stay attached, log to stderr\n"
		"  --verbose       log at debug level (overrides log.level)\n"
		"  --check-config  run the start's checks, print the effective "
		"configuration, exit\n"
		"  --version       print the version and exit\n"
		"signals: TERM/INT stop (draining), HUP reloads the configuration, "
		"USR1 reopens the log file\n");
}

static int parse_args(int argc, char **argv, struct vd_opts *o)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "c:d:fkvVh", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'd': o->data_dir = optarg; break;
		case 'f': o->foreground = true; break;
		case 'k': o->check = true; break;
		case 'v': o->verbose = true; break;
		case 'V': printf("volleyd %s\n", VL_VERSION); exit(0);
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

/* ---- the checks a start runs (and --check-config) ---- */

static int check_keys(const struct cfg *c, char *err, size_t errlen)
{
	char why[400];

	for (size_t i = 0; i < c->ndkim; i++) {
		struct msg_dkim_key *k = msg_dkim_key_load(c->dkim[i].key, c->dkim[i].domain,
							   c->dkim[i].selector, why, sizeof why);
		if (!k)
			return vl_fail(err, errlen, "dkim[%zu] (%s, selector %s): %s", i,
				       c->dkim[i].domain, c->dkim[i].selector, why);
		msg_dkim_key_free(k);
	}
	if (c->dkim_required && !c->ndkim)
		return vl_fail(err, errlen, "dkim_required is set but no dkim key is configured");
	return 0;
}

/* The API socket: short enough for sun_path, in a directory that is one. */
static int check_socket(const struct cfg *c, char *err, size_t errlen)
{
	char path[4096], dir[4096];
	struct stat st;

	if (*c->api.socket)
		snprintf(path, sizeof path, "%s", c->api.socket);
	else
		snprintf(path, sizeof path, "%s/volley.sock", c->data_dir);
	if (strlen(path) >= sizeof ((struct sockaddr_un *)0)->sun_path)
		return vl_fail(err, errlen, "api.socket: path too long (max %zu): %s",
			       sizeof ((struct sockaddr_un *)0)->sun_path - 1, path);
	if (!*c->api.socket)
		return 0;            /* in data_dir, which the start creates */
	snprintf(dir, sizeof dir, "%s", path);
	const char *d = dirname(dir);
	if (stat(d, &st) < 0 || !S_ISDIR(st.st_mode))
		return vl_fail(err, errlen, "api.socket %s: %s is not a directory", path, d);
	return 0;
}

/* cluster.redis: the whole URL (the configuration checked its scheme);
 * the TLS files loaded as the client will load them. */
static int check_cluster(const struct cfg *c, char *err, size_t errlen)
{
	const struct cfg_cluster *k = &c->cluster;
	struct clu_tls_opts t = { .on = k->tls, .ca_file = k->tls_ca_file, .cert = k->tls_cert,
				  .key = k->tls_key, .server_name = k->tls_server_name };

	return k->on ? clu_check(k->redis, &t, err, errlen) : 0;
}

int vd_check(const struct cfg *c, char *err, size_t errlen)
{
	struct sched_bounce_rules *r;

	if (check_keys(c, err, errlen) < 0 || check_socket(c, err, errlen) < 0 ||
	    imap_check_config(c, err, errlen) < 0 || check_cluster(c, err, errlen) < 0)
		return -1;
	if (!(r = sched_bounce_load(c->bounce_rules, err, errlen)))
		return -1;
	sched_bounce_free(r);
	return 0;
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

static int check_config(const struct cfg *c)
{
	char err[512];
	struct vl_buf b;

	if (vd_check(c, err, sizeof err) < 0) {
		fprintf(stderr, "volleyd: %s\n", err);
		return 1;
	}
	/* the users file too (each hash is computed once: not on every reload) */
	struct sub_users *u = NULL;
	if (c->submission.on &&
	    !(u = sub_users_load(c->submission.users, &c->submission, err, sizeof err))) {
		fprintf(stderr, "volleyd: submission.users: %s\n", err);
		return 1;
	}
	sub_users_free(u);
	vl_buf_init(&b);
	cfg_print(c, &b);
	note_dnssec_trust(c, &b);
	fwrite(b.p, 1, b.len, stdout);
	vl_buf_free(&b);
	return 0;
}

/* ---- the start ---- */

/* One volleyd per data dir: an exclusive lock on volleyd.pid, taken
 * before the fork (the daemon inherits it). */
static int lock_pidfile(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		vl_fail(err, errlen, "%s: %s", path, errno == EWOULDBLOCK ?
			"another volleyd runs on this data dir" : strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;              /* kept open: the lock lives as long as we do */
}

static int write_pid(int fd, const char *path, char *err, size_t errlen)
{
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		return vl_fail(err, errlen, "%s: %s", path, strerror(errno));
	return 0;
}

/* The parent's side of the start: what the daemon writes to the pipe
 * ("ok", or why it could not start) decides the exit code. */
static _Noreturn void parent_wait(int rd, const char *log)
{
	char msg[1024];
	size_t n = 0;
	ssize_t r;

	while (n < sizeof msg - 1 && (r = read(rd, msg + n, sizeof msg - 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		n += (size_t)r;
	}
	msg[n] = '\0';
	if (strcmp(msg, "ok") == 0)
		_exit(0);
	if (n)
		fprintf(stderr, "volleyd: %s\n", msg);
	else
		fprintf(stderr, "volleyd: the daemon ended during its start; see %s\n", log);
	_exit(1);
}

/* Detach: fork (the parent waits for the verdict), new session, fork
 * again, stdin from /dev/null. The returned fd takes the verdict. */
static int detach(const char *log, char *err, size_t errlen)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0)
		return vl_fail(err, errlen, "cannot detach: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		waitpid(pid, NULL, 0);   /* the middle one exits at once */
		parent_wait(p[0], log);
	}
	close(p[0]);
	setsid();
	if ((pid = fork()) < 0)
		_exit(1);            /* the parent reads EOF: "ended during its start" */
	if (pid > 0)
		_exit(0);
	int nul = open("/dev/null", O_RDONLY);
	if (nul >= 0) {
		dup2(nul, 0);
		close(nul);
	}
	return p[1];
}

/* Tell whoever waits for the start (the parent, systemd) how it went. */
static void verdict(int fd, const char *what)
{
	if (fd >= 0) {
		vl_write_all(fd, what, strlen(what));
		close(fd);
	}
}

const char *vd_log_file(const struct cfg *c, bool foreground, char *buf, size_t len)
{
	if (foreground)
		return NULL;
	if (*c->log.file)
		return c->log.file;
	snprintf(buf, len, "%s/volleyd.log", c->data_dir);
	return buf;
}

static void wait_for_signals(struct vd_daemon *v, struct vd_cfgs *cfgs, const struct vd_opts *o)
{
	sigset_t set;
	int sig = 0;
	char err[512];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			vd_reload(v, cfgs, o);
		} else if (sig == SIGUSR1) {
			if (vl_log_reopen(err, sizeof err) < 0)
				vl_log(VL_LOG_ERROR, "volleyd: SIGUSR1: %s", err);
			else
				vl_log(VL_LOG_INFO, "volleyd: log file reopened");
		} else {
			vl_log(VL_LOG_INFO, "volleyd: %s: draining (up to %llu ms)", strsignal(sig),
			       (unsigned long long)vd_current(cfgs)->shutdown_grace_ms);
			return;
		}
	}
}

/* Everything before the daemon runs; the verdict fd (or -1 in the
 * foreground) in *report. -1 with err. */
static int start(struct cfg *cfg, const struct vd_opts *o, const char *pidpath, int *lock,
		 int *report, char *err, size_t errlen)
{
	char logbuf[4096];
	const char *log = vd_log_file(cfg, o->foreground, logbuf, sizeof logbuf);

	*report = -1;
	if (vd_check(cfg, err, errlen) < 0)
		return -1;
	if (mkdir(cfg->data_dir, 0750) < 0 && errno != EEXIST)
		return vl_fail(err, errlen, "cannot create %s: %s", cfg->data_dir, strerror(errno));
	if ((*lock = lock_pidfile(pidpath, err, errlen)) < 0)
		return -1;
	if (!o->foreground && (*report = detach(log, err, errlen)) < 0)
		return -1;
	if (write_pid(*lock, pidpath, err, errlen) < 0 ||
	    vl_log_open("volleyd", log, cfg->log.syslog, !o->foreground, err, errlen) < 0)
		return -1;
	return 0;
}

static int run(struct vd_cfgs *cfgs, const struct vd_opts *o)
{
	struct vd_daemon v = { 0 };
	struct cfg *cfg = vd_current(cfgs);
	char err[512], pidpath[4096], ready[64];
	int lock = -1, report = -1;

	snprintf(pidpath, sizeof pidpath, "%s/volleyd.pid", cfg->data_dir);
	if (start(cfg, o, pidpath, &lock, &report, err, sizeof err) < 0) {
		/* before the log is open: the parent or the terminal hears it */
		if (report >= 0)
			verdict(report, err);
		else
			fprintf(stderr, "volleyd: %s\n", err);
		if (lock >= 0)
			unlink(pidpath);
		return 1;
	}
	if (vd_open(&v, cfg, err, sizeof err) < 0) {
		vd_close(&v, cfg);
		unlink(pidpath);
		verdict(report, err);
		return 1;
	}
	vl_log(VL_LOG_INFO, "volleyd %s: ready, data dir %s, pid %ld", VL_VERSION, cfg->data_dir,
	       (long)getpid());
	verdict(report, "ok");
	snprintf(ready, sizeof ready, "READY=1\nMAINPID=%ld", (long)getpid());
	vd_notify(ready);
	wait_for_signals(&v, cfgs, o);
	vd_notify("STOPPING=1");
	vd_close(&v, vd_current(cfgs));
	unlink(pidpath);          /* still locked: no other volleyd took it */
	close(lock);
	vl_log(VL_LOG_INFO, "volleyd: stopped");
	return 0;
}

int main(int argc, char **argv)
{
	struct vd_opts o = { 0 };
	struct vd_cfgs cfgs = { NULL, 1 };
	char err[512];
	sigset_t set;
	int rc;

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	cfgs.v = vl_calloc(1, sizeof *cfgs.v);
	cfgs.v[0] = vl_calloc(1, sizeof **cfgs.v);
	if (cfg_load(cfgs.v[0], o.config, err, sizeof err) < 0) {
		fprintf(stderr, "volleyd: %s\n", err);
		free(cfgs.v[0]);
		free(cfgs.v);
		return 1;
	}
	if (o.data_dir) {
		free(cfgs.v[0]->data_dir);
		cfgs.v[0]->data_dir = vl_strdup(o.data_dir);
	}
	if (o.check) {
		rc = check_config(cfgs.v[0]);
	} else {
		vl_log_set_level(o.verbose ? VL_LOG_DEBUG : cfg_log_level(cfgs.v[0]));
		/* Every thread inherits this mask; main takes the signals. */
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGHUP);
		sigaddset(&set, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		signal(SIGPIPE, SIG_IGN);
		rc = run(&cfgs, &o);
	}
	for (size_t i = 0; i < cfgs.n; i++) {
		cfg_free(cfgs.v[i]);
		free(cfgs.v[i]);
	}
	free(cfgs.v);
	return rc;
}
