/*
 * The Postfix peer (`--compare postfix`): a private Postfix instance in the
 * run's folder, configured as a durable bulk relay to the same sink, fed the
 * same messages over SMTP, measured end to end.
 *
 * Instance: its own config_directory, queue_directory and data_directory
 * under DIR/postfix/, so a system Postfix (if any) is untouched; its log in
 * DIR/postfix/maillog (maillog_file through the postlog service, not
 * syslog). Started with `postfix -c ETC start-fg` as our child, stopped with
 * `postfix -c ETC stop` on every path. Every service runs unchrooted.
 *
 * Configuration, as a bulk sender would tune it:
 *  - smtpd on 127.0.0.1:<free port>, mynetworks 127.0.0.0/8, no local
 *    delivery (mydestination empty, local_transport = error);
 *  - transport_maps (regexp): *.s{a}.bench.test to smtp:[sink addr a]:port;
 *    anything else (bounces to the envelope sender, notices to postmaster)
 *    is discarded, so nothing leaves the machine;
 *  - peer_sessions smtp processes in all, peer_sessions / sink addresses
 *    per destination (a destination is a sink address), starting at that
 *    concurrency (no slow start), qmgr active limits raised, in_flow_delay
 *    off (injection is never throttled), connection cache on for the sink
 *    destinations;
 *  - TLS scenarios: smtp_tls_security_level = encrypt (the sink's
 *    certificate is self-signed: encrypt does not verify it) with
 *    smtp_tls_connection_reuse (tlsproxy), without which Postfix cannot
 *    cache a TLS connection and makes one handshake per message (small:
 *    about 210 msg/s without, 330 with). But tlsproxy holds each message's
 *    end about 45 ms on loopback (delays= shows it in the transmission
 *    part; a delayed ACK), which at 10 sessions and 200 messages a second
 *    queues messages for most of a second: the transactional scenario
 *    goes without reuse (p50 about 15 ms instead of 850). A TLS session
 *    cache in both cases;
 *  - durable: Postfix fsyncs each queue file before its 250, as always;
 *  - retries (faults scenario) after 1 s, at most 4 s apart, as volley's.
 *
 * Measured: the messages are rendered by volley's own composer (the
 * injector, vbench_inject.c) and sent to smtpd over 8 connections (16 or
 * 32 are no faster: each waits for cleanup's fsync, and delivery shares the
 * same 2 cores), as fast as Postfix takes them, or at the scenario's
 * submit_rate for a transactional one. Time runs from the first injection
 * until the sink has accepted them all (with faults: until Postfix's log
 * accounts for every message as sent or bounced). CPU and peak RSS are the
 * Postfix master's process tree's (the injector runs in volley-bench and is
 * not counted). delivered and bounced are counted in Postfix's log
 * (status=sent / bounced to a bench.test recipient); p50/p99 are Postfix's
 * own arrival-to-delivery delays from the same lines (the sum of delays=,
 * millisecond resolution), so they include the time a message waited in
 * the queue, as volley's include a recipient's wait for its turn. Messages
 * are not DKIM-signed by Postfix.
 */
#include "vbench.h"
#include "vbench_inject.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define VB_PF_BIN "/usr/sbin/postfix"
#define VB_PF_INJECT_CONNS 8
/* mixed: the transactional lane's smtp processes */
#define VB_PF_TX_PROCS 10

struct vb_pf {
	char dir[PATH_MAX + 16];   /* the run's folder + /postfix */
	char etc[PATH_MAX + 32], queue[PATH_MAX + 32], log[PATH_MAX + 32], out[PATH_MAX + 32];
	int port;
	pid_t sh;              /* `postfix start-fg`: a shell that waits for master */
	pid_t master;
	long per_dest, procs;
	char version[32];
};

/* Postfix's log, read as it grows. */
struct vb_plog {
	int fd;
	char buf[16384];
	size_t len;
	long sent, bounced, deferred;
	double *ms;            /* delays of the sent, milliseconds */
	size_t nms, cap;
	char fatal[256];       /* the first fatal or panic line */
};

/* ---- configuration ---- */

static int vb_pf_write(const char *path, const char *what, const char *text)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fputs(text, f) != EOF;
	if (f && fclose(f) != 0)
		ok = false;
	if (!ok) {
		fprintf(stderr, "volley-bench: postfix %s %s: %s\n", what, path, strerror(errno));
		return -1;
	}
	return 0;
}

static int vb_pf_main_cf(const struct vb_env *e, const struct vb_sink *s, struct vb_pf *p)
{
	const struct vb_scen *sc = e->sc;
	struct vl_buf b;
	char path[PATH_MAX + 64];
	vl_buf_init(&b);
	vl_buf_printf(&b,
		"# volley-bench: a private Postfix, a durable bulk relay to volley-sink\n"
		"compatibility_level = 3.6\n"
		"config_directory = %s\nqueue_directory = %s\ndata_directory = %s/data\n"
		"maillog_file = %s\nmaillog_file_prefixes = %s\n"
		"myhostname = mta1.bench.example\nmydomain = bench.example\n"
		"myorigin = $myhostname\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
		"mynetworks = 127.0.0.0/8\nmydestination =\n"
		"local_transport = error:local delivery is disabled\n"
		"alias_maps =\nalias_database =\nbiff = no\n"
		"relay_domains = bench.test\ntransport_maps = regexp:%s/transport\n"
		"smtpd_relay_restrictions = permit_mynetworks, reject\n"
		"smtpd_recipient_restrictions = permit_mynetworks, reject\n"
		"smtpd_peername_lookup = no\n",
		p->etc, p->queue, p->dir, p->log, e->w->dir, p->etc);
	/* Bulk sender tuning: see the comment at the top. */
	vl_buf_printf(&b,
		"in_flow_delay = 0\n"
		"default_process_limit = %ld\n"
		"default_destination_concurrency_limit = %ld\n"
		"smtp_destination_concurrency_limit = %ld\n"
		"initial_destination_concurrency = %ld\n"
		"qmgr_message_active_limit = 200000\nqmgr_message_recipient_limit = 200000\n"
		"smtp_connection_cache_on_demand = yes\n"
		"smtp_connection_cache_destinations =",
		p->procs + 100, p->per_dest, p->per_dest, p->per_dest);
	for (int a = 0; a < s->naddrs; a++)
		vl_buf_printf(&b, " [%s]:%d", s->addr[a], s->port);
	vl_buf_printf(&b,
		"\nqueue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 4s\n"
		"delay_logging_resolution_limit = 3\n"
		/* A busy scache answers late: past 5 s, smtp stops caching. */
		"connection_cache_protocol_timeout = 30s\n"
		"smtp_tls_security_level = %s\n", sc->tls ? "encrypt" : "none");
	/* Connection reuse runs TLS in tlsproxy, which stalls each message's
	 * end about 45 ms on loopback (a delayed ACK): more throughput for a
	 * bulk run, less latency for a transactional one without it. */
	if (sc->tls)
		vl_buf_printf(&b, "smtp_tls_connection_reuse = %s\n"
			      "smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache\n"
			      "tlsproxy_tls_security_level = none\n",
			      sc->transactional ? "no" : "yes");
	/* mixed: the transactional lane (transport smtptx, master.cf) at
	 * its own concurrency from the start. */
	if (sc->mixed)
		vl_buf_printf(&b, "smtptx_destination_concurrency_limit = %d\n"
			      "smtptx_initial_destination_concurrency = %d\n",
			      VB_PF_TX_PROCS, VB_PF_TX_PROCS);
	/* The MSA: TLS and SASL; master.cf's smtpd line demands both (-o). */
	if (sc->submission)
		vl_buf_printf(&b, "smtpd_tls_chain_files = %s, %s\n"
			      "smtpd_tls_session_cache_database = btree:${data_directory}/smtpd_scache\n"
			      "smtpd_sasl_type = dovecot\nsmtpd_sasl_path = %s/dovecot/auth-client\n",
			      e->w->key, e->w->cert, p->dir);
	snprintf(path, sizeof path, "%s/main.cf", p->etc);
	vl_buf_append(&b, "", 1);
	int rc = vb_pf_write(path, "main.cf", b.p);
	vl_buf_free(&b);
	return rc;
}

/* master.cf: Debian's services, none chrooted (no copies of /etc needed). */
static int vb_pf_master_cf(const struct vb_scen *sc, struct vb_pf *p)
{
	char text[4096], path[PATH_MAX + 64], opts[600] = "", tx[160] = "";
	/* mixed: transactional mail in a lane of its own (qmgr serves the
	 * transports in turn, so it does not queue behind the bulk), without
	 * tlsproxy's connection reuse, which holds each message ~45 ms */
	if (sc->mixed)
		snprintf(tx, sizeof tx, "smtptx unix - - n - %d smtp "
			 "-o smtp_tls_connection_reuse=no\n", VB_PF_TX_PROCS);
	/* The submission service as Debian's master.cf has it (port 587, or
	 * 465 in wrapper mode): TLS required, AUTH only inside it, relaying
	 * only for the authenticated. */
	if (sc->submission)
		snprintf(opts, sizeof opts, " -o syslog_name=postfix/submission"
			 " -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes"
			 " -o smtpd_tls_auth_only=yes -o mynetworks="
			 " -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
			 " -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject%s",
			 strcmp(sc->submit_tls, "implicit") ? "" : " -o smtpd_tls_wrappermode=yes");
	snprintf(text, sizeof text,
		 "127.0.0.1:%d inet n - n - - smtpd%s\n"
		 "pickup unix n - n 60 1 pickup\n"
		 "cleanup unix n - n - 0 cleanup\n"
		 "qmgr unix n - n 300 1 qmgr\n"
		 "tlsmgr unix - - n 1000? 1 tlsmgr\n"
		 "rewrite unix - - n - - trivial-rewrite\n"
		 "bounce unix - - n - 0 bounce\n"
		 "defer unix - - n - 0 bounce\n"
		 "trace unix - - n - 0 bounce\n"
		 "verify unix - - n - 1 verify\n"
		 "flush unix n - n 1000? 0 flush\n"
		 "proxymap unix - - n - - proxymap\n"
		 "proxywrite unix - - n - 1 proxymap\n"
		 "smtp unix - - n - %ld smtp\n"
		 "relay unix - - n - - smtp\n"
		 "showq unix n - n - - showq\n"
		 "error unix - - n - - error\n"
		 "retry unix - - n - - error\n"
		 "discard unix - - n - - discard\n"
		 "local unix - n n - - local\n"
		 "anvil unix - - n - 1 anvil\n"
		 "scache unix - - n - 1 scache\n"
		 "postlog unix-dgram n - n - 1 postlogd\n"
		 "tlsproxy unix - - n - 0 tlsproxy\n%s",
		 p->port, opts, p->procs, tx);
	snprintf(path, sizeof path, "%s/master.cf", p->etc);
	return vb_pf_write(path, "master.cf", text);
}

/* Sink address a takes the domains *.s{a}.bench.test (vb_rcpt_domain). */
static int vb_pf_transport(const struct vb_scen *sc, const struct vb_sink *s, struct vb_pf *p)
{
	struct vl_buf b;
	char path[PATH_MAX + 64];
	vl_buf_init(&b);
	for (int a = 0; a < s->naddrs && sc->mixed; a++)   /* t<i>@: transactional */
		vl_buf_printf(&b, "/^t[0-9]+@.*\\.s%d\\.bench\\.test$/ smtptx:[%s]:%d\n", a,
			      s->addr[a], s->port);
	for (int a = 0; a < s->naddrs; a++)
		vl_buf_printf(&b, "/\\.s%d\\.bench\\.test$/ smtp:[%s]:%d\n", a, s->addr[a], s->port);
	vl_buf_appends(&b, "/./ discard:not a bench recipient\n");
	vl_buf_append(&b, "", 1);
	snprintf(path, sizeof path, "%s/transport", p->etc);
	int rc = vb_pf_write(path, "transport", b.p);
	vl_buf_free(&b);
	return rc;
}

static void vb_pf_version(struct vb_pf *p)
{
	FILE *f = popen("postconf -d -h mail_version 2>/dev/null", "r");
	snprintf(p->version, sizeof p->version, "?");
	if (f) {
		if (fgets(p->version, sizeof p->version, f))
			p->version[strcspn(p->version, "\n")] = '\0';
		pclose(f);
	}
}

static int vb_pf_setup(const struct vb_env *e, const struct vb_sink *s, struct vb_pf *p)
{
	const struct vb_scen *sc = e->sc;
	snprintf(p->dir, sizeof p->dir, "%s/postfix", e->w->dir);
	snprintf(p->etc, sizeof p->etc, "%s/etc", p->dir);
	snprintf(p->queue, sizeof p->queue, "%s/queue", p->dir);
	snprintf(p->log, sizeof p->log, "%s/maillog", p->dir);
	snprintf(p->out, sizeof p->out, "%s/postfix.out", p->dir);
	p->procs = sc->peer_sessions > 0 ? sc->peer_sessions : 50;
	p->per_dest = (p->procs + s->naddrs - 1) / s->naddrs;
	/* The queue directory and its parents must be root's and not writable
	 * by others; `postfix check` creates the rest with their owners. The
	 * run's folder (mkdtemp: 0700) must let the postfix user through to
	 * data_directory: search permission only, no listing. */
	struct stat st;
	if (stat(e->w->dir, &st) == 0 && !(st.st_mode & S_IXOTH))
		chmod(e->w->dir, (st.st_mode & 07777) | S_IXGRP | S_IXOTH);
	if ((mkdir(p->dir, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(p->etc, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(p->queue, 0755) < 0 && errno != EEXIST)) {
		fprintf(stderr, "volley-bench: %s: %s\n", p->dir, strerror(errno));
		return -1;
	}
	if ((p->port = vb_free_port()) < 0)
		return -1;
	vb_pf_version(p);
	return vb_pf_main_cf(e, s, p) < 0 || vb_pf_master_cf(sc, p) < 0 || vb_pf_transport(sc, s, p) < 0
		       ? -1 : 0;
}

/* ---- start and stop ---- */

/* The first line of a file, for a note. */
static void vb_pf_first_line(const char *path, const char *grep, char *out, size_t len)
{
	FILE *f = fopen(path, "r");
	char line[512];
	out[0] = '\0';
	while (f && fgets(line, sizeof line, f))
		if (!grep || strstr(line, grep)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, len, "%.*s", (int)len - 1, line);
			break;
		}
	if (f)
		fclose(f);
}

static pid_t vb_pf_read_pid(const struct vb_pf *p)
{
	char path[PATH_MAX + 64], comm[64] = "";
	long pid = 0;
	snprintf(path, sizeof path, "%s/pid/master.pid", p->queue);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	snprintf(path, sizeof path, "/proc/%ld/comm", pid);
	if (pid <= 0 || !(f = fopen(path, "r")))
		return 0;
	if (!fgets(comm, sizeof comm, f))
		comm[0] = '\0';
	fclose(f);
	return strncmp(comm, "master", 6) ? 0 : (pid_t)pid;
}

/* Running: the master's pid file names a live master and smtpd listens. */
static int vb_pf_wait_ready(struct vb_pf *p, char *why, size_t len)
{
	for (int ms = 0; ms < 30000; ms += 50) {
		if (waitpid(p->sh, NULL, WNOHANG) == p->sh) {
			p->sh = 0;
			vb_pf_first_line(p->log, "fatal", why, len);
			if (!why[0])
				vb_pf_first_line(p->out, NULL, why, len);
			if (!why[0])
				snprintf(why, len, "`postfix -c %.300s start-fg` ended", p->etc);
			return -1;
		}
		if (!p->master && (p->master = vb_pf_read_pid(p)))
			vb_kill_also(p->master, true);   /* a Ctrl-C stops it too */
		if (p->master && vb_wait_port("127.0.0.1", p->port, 50))
			return 0;
		usleep(50000);
	}
	snprintf(why, len, "did not start within 30 s (see %.300s)", p->log);
	return -1;
}

static int vb_pf_start(struct vb_pf *p, char *why, size_t len)
{
	char check[PATH_MAX + 64];
	snprintf(check, sizeof check, "%s/check.out", p->dir);
	/* check creates the queue's directories with their owners. */
	if (vb_system(VB_PF_BIN " -c '%s' check >'%s' 2>&1", p->etc, check) != 0) {
		vb_pf_first_line(check, NULL, why, len);
		if (!why[0])
			vb_pf_first_line(p->log, "fatal", why, len);
		/* Errors found before main.cf is read go to syslog only. */
		if (!why[0])
			snprintf(why, len, "`postfix -c %.300s check` failed", p->etc);
		return -1;
	}
	/* scache and tlsproxy hold a descriptor per cached connection: the
	 * soft limit up to the hard one. */
	char *argv[] = { "/bin/sh", "-c",
			 "ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec " VB_PF_BIN " -c \"$0\" start-fg",
			 p->etc, NULL };
	p->sh = vb_spawn(argv, p->out, p->out);
	if (p->sh < 0) {
		p->sh = 0;
		snprintf(why, len, "cannot run %s", VB_PF_BIN);
		return -1;
	}
	return vb_pf_wait_ready(p, why, len);
}

static void vb_pf_stop(struct vb_pf *p)
{
	/* Also when the shell is gone already: the master may not be. */
	if (p->sh || vb_pf_read_pid(p))
		vb_system(VB_PF_BIN " -c '%s' stop >/dev/null 2>&1", p->etc);
	/* The shell ends when the master does. */
	if (p->sh)
		vb_stop(p->sh, 10000);
	p->sh = 0;
	pid_t master = vb_pf_read_pid(p);
	if (master) {
		/* It did not stop: it and its group (its children) go now. */
		kill(-master, SIGKILL);
		kill(master, SIGKILL);
	}
	if (p->master)
		vb_kill_also(p->master, false);
	p->master = 0;
}

/* ---- the log ---- */

static void vb_plog_delay(struct vb_plog *l, const char *s)
{
	const char *d = strstr(s, " delays=");
	double a = 0, b = 0, c = 0, e = 0, ms = -1;
	if (d && sscanf(d + 8, "%lf/%lf/%lf/%lf", &a, &b, &c, &e) == 4)
		ms = (a + b + c + e) * 1000;
	else if ((d = strstr(s, " delay=")))
		ms = atof(d + 7) * 1000;
	if (ms < 0)
		return;
	if (l->nms == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4096;
		double *m = vl_realloc(l->ms, cap * sizeof *m);
		l->ms = m;
		l->cap = cap;
	}
	l->ms[l->nms++] = ms;
}

/* Only deliveries to bench recipients count: bounces to the envelope
 * sender are discarded and logged as sent too. */
static void vb_plog_line(struct vb_plog *l, const char *line)
{
	static const char dom[] = ".bench.test>";
	const char *to = strstr(line, " to=<"), *end;
	if (!to) {
		if (!l->fatal[0] && (strstr(line, " fatal: ") || strstr(line, " panic: ")))
			snprintf(l->fatal, sizeof l->fatal, "%.200s", line);
		return;
	}
	if (!(end = strchr(to, '>')) || end - to < (long)sizeof dom ||
	    strncmp(end + 1 - (sizeof dom - 1), dom, sizeof dom - 1))
		return;
	if (strstr(end, ", status=sent ")) {
		l->sent++;
		vb_plog_delay(l, end);
	} else if (strstr(end, ", status=bounced ")) {
		l->bounced++;
	} else if (strstr(end, ", status=deferred ")) {
		l->deferred++;
	}
}

static void vb_plog_poll(struct vb_plog *l, const char *path)
{
	if (l->fd < 0 && (l->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	for (;;) {
		ssize_t r = read(l->fd, l->buf + l->len, sizeof l->buf - 1 - l->len);
		if (r <= 0)
			return;
		l->len += (size_t)r;
		l->buf[l->len] = '\0';
		char *p = l->buf, *nl;
		while ((nl = strchr(p, '\n'))) {
			*nl = '\0';
			vb_plog_line(l, p);
			p = nl + 1;
		}
		l->len -= (size_t)(p - l->buf);
		memmove(l->buf, p, l->len);
		if (l->len == sizeof l->buf - 1)
			l->len = 0;    /* an overlong line: not one of ours */
	}
}

/* ---- the run ---- */

static bool vb_pf_faults(const struct vb_scen *sc)
{
	return sc->tempfail > 0 || sc->permfail > 0 || sc->disconnect > 0;
}

/* Until every message is at the sink (with faults: sent or bounced in the
 * log), the timeout, or Postfix's end. 0 when complete. */
static int vb_pf_wait(const struct vb_env *e, struct vb_sink *s, struct vb_pf *p,
		      struct vb_inject *in, struct vb_plog *l, double t0, char *why, size_t len)
{
	const struct vb_scen *sc = e->sc;
	double last = 0;
	for (;;) {
		vb_plog_poll(l, p->log);
		long got = vb_sink_recipients(s), n = in->n;
		bool injected = vb_inject_finished(in) == n;
		long want = injected ? atomic_load(&in->accepted) : n;
		long done = vb_pf_faults(sc) ? l->sent + l->bounced : got;
		double now = vb_now();
		if (injected && done >= want)
			return 0;
		if (e->tty && now - last >= 0.2) {
			vb_progress(e, "postfix", done, n, now - t0);
			last = now;
		}
		if (waitpid(p->sh, NULL, WNOHANG) == p->sh) {
			p->sh = 0;
			snprintf(why, len, "Postfix stopped during the run: %s",
				 l->fatal[0] ? l->fatal : "see its maillog");
			return -1;
		}
		/* A daemon that cannot run is restarted in vain until the timeout. */
		if (l->fatal[0]) {
			snprintf(why, len, "Postfix: %s", l->fatal);
			return -1;
		}
		if (now - t0 > (double)sc->timeout_s) {
			snprintf(why, len, "timed out after %ld s: sink %ld, sent %ld, bounced %ld, "
				 "deferred %ld of %ld", sc->timeout_s, got, l->sent, l->bounced,
				 l->deferred, n);
			return -1;
		}
		usleep(20000);
	}
}

/* The log is written by postlogd a moment after the sink's 250. */
static void vb_pf_flush_log(struct vb_plog *l, const char *path, long want)
{
	for (int ms = 0; ms < 5000 && l->sent + l->bounced < want; ms += 50) {
		usleep(50000);
		vb_plog_poll(l, path);
	}
}

/* The figures; the note too when the run completed (else it says why not). */
static void vb_pf_result(const struct vb_env *e, struct vb_sink *s, const struct vb_pf *p,
			 struct vb_inject *in, struct vb_plog *l, struct vb_result *r,
			 bool complete)
{
	long n = in->n, refused = atomic_load(&in->refused);
	r->messages = n;
	r->sink_messages = vb_sink_messages(s);
	r->sink_rcpts = vb_sink_recipients(s);
	r->delivered = l->sent;
	r->bounced = l->bounced;
	/* Refused at injection: never in Postfix's hands. On a timeout the
	 * rest is still queued, which is no outcome. */
	r->other = complete && refused ? refused : 0;
	r->ok = !refused && r->sink_rcpts == l->sent &&
		(vb_pf_faults(e->sc) ? l->sent + l->bounced == n : l->sent == n);
	if (l->nms)
		vb_percentiles(l->ms, l->nms, &r->p50_ms, &r->p99_ms);
	if (!complete)
		return;
	if (refused)
		snprintf(r->note, sizeof r->note, "%ld of %ld injections refused (first: %s)",
			 refused, n, in->first_err);
	else
		snprintf(r->note, sizeof r->note,
			 "Postfix %s, durable queue, %ld smtp processes (%ld per sink address), "
			 "connection cache%s; injected over %d SMTP connections%s; latency: its "
			 "log's arrival-to-delivery delays%s; the sink took %ld messages for %ld "
			 "recipients", p->version, p->procs, p->per_dest,
			 !e->sc->tls ? "" : e->sc->transactional ? ", TLS (one handshake a message)"
			 : ", TLS reuse via tlsproxy", in->o.conns,
			 in->o.rcpts_per_msg > 1 ? ", messages of several recipients" : "",
			 e->sc->dkim[0] ? "; not DKIM-signed" : "", r->sink_messages, r->sink_rcpts);
}

/* Inject, wait, measure; Postfix is running. */
static int vb_pf_measure(const struct vb_env *e, struct vb_sink *s, struct vb_pf *p,
			 struct vb_inject *in, struct vb_result *r)
{
	struct vb_plog l = { .fd = -1 };
	struct vb_meter m;
	vb_plog_poll(&l, p->log);   /* skip the start-up lines */
	l.sent = l.bounced = l.deferred = 0;
	vb_meter_start(&m, p->master);
	vb_sink_mark(s);
	double t0 = vb_now();
	int rc = vb_inject_start(in);
	if (rc < 0)
		snprintf(r->note, sizeof r->note, "injector: %s", in->first_err);
	else
		rc = vb_pf_wait(e, s, p, in, &l, t0, r->note, sizeof r->note);
	r->seconds = vb_now() - t0;
	vb_meter_stop(&m, &r->cpu_s, &r->peak_mem_kb);
	if (e->tty)
		vb_progress_end(e);
	vb_inject_abort(in);
	vb_inject_join(in);
	if (rc == 0)
		vb_pf_flush_log(&l, p->log, atomic_load(&in->accepted));
	else
		vb_plog_poll(&l, p->log);
	vb_pf_result(e, s, p, in, &l, r, rc == 0);
	vb_result_series(r, s);
	if (l.fd >= 0)
		close(l.fd);
	free(l.ms);
	return rc;
}

/* ---- mixed: the bulk and the transactional stream at once ---- */

struct vb_pf_watch {
	struct vb_pf *p;
	struct vb_plog *l;
};

static bool vb_pf_dead(void *arg, char *why, size_t len)
{
	struct vb_pf_watch *d = arg;
	vb_plog_poll(d->l, d->p->log);
	if (waitpid(d->p->sh, NULL, WNOHANG) == d->p->sh) {
		d->p->sh = 0;
		snprintf(why, len, "Postfix stopped during the run: %s",
			 d->l->fatal[0] ? d->l->fatal : "see its maillog");
		return true;
	}
	if (d->l->fatal[0])
		snprintf(why, len, "Postfix: %s", d->l->fatal);
	return d->l->fatal[0] != '\0';
}

static void vb_pf_mixed_result(struct vb_sink *s, const struct vb_pf *p,
			       struct vb_inject *in, struct vb_inject *tx, struct vb_plog *l,
			       struct vb_result *r, int rc)
{
	struct vb_mixres *m = r->mx;
	long refused = atomic_load(&in->refused) + atomic_load(&tx->refused);
	m->tx_sent = atomic_load(&tx->accepted);
	m->tx_failed = atomic_load(&tx->refused);
	r->messages = in->n + m->tx_sent;
	r->sink_messages = vb_sink_messages(s);
	r->sink_rcpts = vb_sink_recipients(s);
	r->delivered = l->sent;
	bool lat = vb_mix_latency(m, s->alog);
	r->p50_ms = m->p50;
	r->p99_ms = m->p99;
	r->ok = rc == 0 && !refused && lat && r->sink_rcpts == l->sent && l->sent == r->messages;
	if (rc == 0 && refused)
		snprintf(r->note, sizeof r->note, "%ld injections refused (first: %.150s%.150s)",
			 refused, in->first_err, tx->first_err);
	else if (rc == 0)
		snprintf(r->note, sizeof r->note,
			 "Postfix %s, durable queue, %ld smtp processes for the bulk (TLS reuse via "
			 "tlsproxy), the transactional mail in a transport of its own (%d processes, "
			 "no reuse); injected over %d + %d SMTP connections", p->version, p->procs,
			 VB_PF_TX_PROCS, in->o.conns, tx->o.conns);
}

static int vb_pf_measure_mixed(const struct vb_env *e, struct vb_sink *s, struct vb_pf *p,
			       struct vb_inject *in, struct vb_inject *tx, struct vb_result *r)
{
	struct vb_plog l = { .fd = -1 };
	struct vb_pf_watch w = { p, &l };
	struct vb_meter m;
	vb_plog_poll(&l, p->log);   /* skip the start-up lines */
	l.sent = l.bounced = l.deferred = 0;
	vb_meter_start(&m, p->master);
	vb_sink_mark(s);
	double t0 = vb_now();
	r->mx->t0 = vl_wall_time();
	int rc = vb_inject_start(in) < 0 || vb_inject_start(tx) < 0 ? -1 : 0;
	if (rc < 0)
		snprintf(r->note, sizeof r->note, "injector: %.200s%.200s", in->first_err,
			 tx->first_err);
	else
		rc = vb_mix_inject_wait(e, s, in, tx, r->mx, t0, vb_pf_dead, &w, "postfix",
					r->note, sizeof r->note);
	r->seconds = vb_now() - t0;
	vb_meter_stop(&m, &r->cpu_s, &r->peak_mem_kb);
	if (e->tty)
		vb_progress_end(e);
	vb_inject_abort(in);
	vb_inject_abort(tx);
	vb_inject_join(in);
	vb_inject_join(tx);
	if (rc == 0)
		vb_pf_flush_log(&l, p->log, atomic_load(&in->accepted) + atomic_load(&tx->accepted));
	vb_pf_mixed_result(s, p, in, tx, &l, r, rc);
	vb_result_series(r, s);
	if (l.fd >= 0)
		close(l.fd);
	free(l.ms);
	return rc;
}

/* The submission scenario: Postfix as the MSA (smtpd with STARTTLS and
 * SASL from a private Dovecot), relaying to the sink as in the others. */
static int vb_pf_msa(const struct vb_env *e, struct vb_sink *s, struct vb_result *r)
{
	struct vb_pf p = { 0 };
	struct vb_dovecot dc = { 0 };
	char why[400] = "";
	int rc = -1;
	if (vb_pf_setup(e, s, &p) < 0) {
		snprintf(r->note, sizeof r->note, "cannot write Postfix's configuration in %.400s",
			 p.dir);
	} else if (vb_dovecot_start(e, p.dir, &dc, why, sizeof why) < 0) {
		snprintf(r->note, sizeof r->note, "Dovecot did not start: %s", why);
	} else if (vb_pf_start(&p, why, sizeof why) < 0) {
		snprintf(r->note, sizeof r->note, "Postfix did not start: %s", why);
	} else {
		rc = vb_submit_measure(e, s, "127.0.0.1", p.port, p.master, dc.pid, r);
		char first[sizeof r->note];
		snprintf(first, sizeof first, "%s", r->note);
		if (rc == 0)
			snprintf(r->note, sizeof r->note,
				 "Postfix %s as the MSA: smtpd with %s, SASL from a private Dovecot "
				 "(passwd-file, %s), durable queue; relaying over %ld smtp processes, "
				 "TLS reuse via tlsproxy; CPU includes Dovecot's%s%.200s", p.version,
				 strcmp(e->sc->submit_tls, "implicit") ? "STARTTLS" : "implicit TLS",
				 e->sc->password_hash, p.procs, first[0] ? "; " : "", first);
	}
	vb_pf_stop(&p);
	vb_dovecot_stop(&dc);
	if (e->verbose)
		fprintf(stderr, "volley-bench: postfix: config and log in %s\n", p.dir);
	return rc;
}

int vb_run_postfix(const struct vb_env *e, struct vb_sink *s, struct vb_result *r)
{
	const struct vb_scen *sc = e->sc;
	struct vb_pf p = { 0 };
	struct vb_inject *in = vl_calloc(1, sizeof *in);
	long n = vb_peer_messages(sc);
	char why[400] = "";
	int rc = -1;

	snprintf(r->peer, sizeof r->peer, "postfix");
	r->p50_ms = r->p99_ms = -1;
	r->messages = n;
	if (access(VB_PF_BIN, X_OK) != 0 && vb_system("'%s/scripts/install-deps.sh' --bench",
						      e->src_dir) != 0) {
		snprintf(r->note, sizeof r->note, "Postfix is not installed and "
			 "scripts/install-deps.sh --bench failed");
		free(in);
		return -1;
	}
	if (sc->submission) {
		free(in);
		return vb_pf_msa(e, s, r);
	}
	struct vb_inject_opts io = {
		.job = e->w->job, .rcpts = e->w->rcpts, .n = n, .hostname = "mta1.bench.example",
		.ip = "127.0.0.1", .conns = VB_PF_INJECT_CONNS, .rcpts_per_msg = (int)sc->peer_rcpts,
		.rate = sc->transactional ? (double)sc->submit_rate : 0,
	};
	struct vb_inject *tx = NULL;
	if (sc->mixed)
		r->mx = vb_mix_new(sc, e->bulk_only, n);
	if (vb_inject_prepare(in, &io, why, sizeof why) < 0) {
		snprintf(r->note, sizeof r->note, "injector: %s", why);
	} else if (r->mx && !r->mx->alone && !(tx = vb_mix_injector(e, r->mx, why, sizeof why))) {
		snprintf(r->note, sizeof r->note, "injector: %s", why);
	} else if (vb_pf_setup(e, s, &p) < 0) {
		snprintf(r->note, sizeof r->note, "cannot write Postfix's configuration in %.400s",
			 p.dir);
	} else if (vb_pf_start(&p, why, sizeof why) < 0) {
		snprintf(r->note, sizeof r->note, "Postfix did not start: %s", why);
	} else {
		in->o.port = p.port;
		r->ran = true;
		if (tx) {
			tx->o.port = p.port;
			rc = vb_pf_measure_mixed(e, s, &p, in, tx, r);
		} else {
			rc = vb_pf_measure(e, s, &p, in, r);
		}
		if (r->mx && r->mx->alone)
			r->mx->bulk_s = r->seconds;
	}
	vb_pf_stop(&p);
	vb_inject_free(in);
	free(in);
	if (tx) {
		vb_inject_free(tx);
		free(tx);
	}
	if (e->verbose)
		fprintf(stderr, "volley-bench: postfix: config and log in %s\n", p.dir);
	return rc;
}
