/*
 * The submission scenario's common parts: the listeners' certificate and
 * users (one user, a yescrypt hash from mkpasswd, as crypt(3) reads it),
 * a private Dovecot whose auth service Postfix's smtpd asks (SASL type
 * dovecot), and the measurement: volley-submit against a peer's listener,
 * then the peer's sink followed until it has every accepted message.
 *
 * Figures: accepted msg/s is volley-submit's (accepted over its own run:
 * connect, TLS, AUTH, every message's 250 after the peer made it durable);
 * delivered msg/s is the sink's count over the time from the start to the
 * last delivery; "delivered during the load" is the sink's count when
 * volley-submit ended, over its run.
 */
#include "vbench.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define VB_DOVECOT "/usr/sbin/dovecot"
#define VB_SUBMIT_USER "bench"

static int write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fputs(text, f) != EOF;
	if (f && fclose(f) != 0)
		ok = false;
	if (!ok || chmod(path, mode) < 0) {
		fprintf(stderr, "volley-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* mkpasswd (Debian's whois package) makes the hash: crypt(3)'s own
 * format, "$y$..." for yescrypt at its default cost. */
static int yescrypt(const struct vb_work *w, const char *src_dir, char *hash, size_t len)
{
	if (access("/usr/bin/mkpasswd", X_OK) != 0)
		vb_system("'%s/scripts/install-deps.sh' --bench", src_dir);
	char cmd[256];
	const char *m = strcmp(w->sc->password_hash, "sha512crypt") ? "yescrypt" : "sha-512";
	snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | mkpasswd -m %s --stdin", w->pass, m);
	FILE *f = popen(cmd, "r");
	hash[0] = '\0';
	if (f) {
		if (!fgets(hash, (int)len, f))
			hash[0] = '\0';
		pclose(f);
	}
	hash[strcspn(hash, "\r\n")] = '\0';
	if (hash[0] != '$') {
		fprintf(stderr, "volley-bench: mkpasswd -m %s gave no hash (is the whois "
			"package installed? scripts/install-deps.sh)\n", m);
		return -1;
	}
	return 0;
}

int vb_submit_material(struct vb_work *w, const char *src_dir)
{
	unsigned char rnd[12];
	char hash[256], line[320];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		return -1;
	snprintf(w->user, sizeof w->user, VB_SUBMIT_USER);
	int n = snprintf(w->pass, sizeof w->pass, "pw-");
	for (size_t i = 0; i < sizeof rnd; i++)
		n += snprintf(w->pass + n, sizeof w->pass - (size_t)n, "%02x", rnd[i]);
	snprintf(w->cert, sizeof w->cert, "%s/submit-cert.pem", w->dir);
	snprintf(w->key, sizeof w->key, "%s/submit-key.pem", w->dir);
	snprintf(w->users, sizeof w->users, "%s/users", w->dir);
	snprintf(w->dovecot_users, sizeof w->dovecot_users, "%s/dovecot-users", w->dir);
	/* A self-signed P-256 certificate, as a test deployment has; the
	 * clients do not verify it. Postfix wants the key root's, 0600. */
	if (vb_system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		      "-days 7 -subj /CN=submit.bench.example -addext "
		      "subjectAltName=DNS:submit.bench.example,IP:127.0.0.1 -keyout '%s' -out '%s' "
		      ">/dev/null 2>&1", w->key, w->cert) != 0 || chmod(w->key, 0600) < 0) {
		fprintf(stderr, "volley-bench: openssl req could not make the listeners' "
			"certificate\n");
		return -1;
	}
	if (yescrypt(w, src_dir, hash, sizeof hash) < 0)
		return -1;
	snprintf(line, sizeof line, "%s:%s\n", w->user, hash);
	if (write_file(w->users, line, 0600) < 0)
		return -1;
	snprintf(line, sizeof line, "%s:{CRYPT}%s\n", w->user, hash);
	return write_file(w->dovecot_users, line, 0644);
}

/* ---- Dovecot ---- */

static int dovecot_conf(const struct vb_env *e, struct vb_dovecot *d)
{
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_printf(&b,
		 "# volley-bench: a private Dovecot, its auth service only (no mail\n"
		 "# protocol, no listener on the network), for Postfix's SASL\n"
		 "instance_name = vbench\nbase_dir = %s/run\nstate_dir = %s/state\n"
		 "log_path = %s/dovecot.log\nprotocols =\nlisten = 127.0.0.1\nssl = no\n"
		 /* smtpd hands over only what came inside TLS (smtpd_tls_auth_only) */
		 "disable_plaintext_auth = no\nauth_mechanisms = plain login\n"

		 "passdb {\n  driver = passwd-file\n  args = scheme=CRYPT username_format=%%u %s\n}\n"
		 "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}\n"
		 "service auth {\n  unix_listener %s {\n    mode = 0666\n  }\n}\n",
		 d->dir, d->dir, d->dir, e->w->dovecot_users, d->sock);
	vl_buf_append(&b, "", 1);
	int rc = write_file(d->conf, b.p, 0644);
	vl_buf_free(&b);
	return rc;
}

static void first_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");
	out[0] = '\0';
	if (f) {
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = '\0';
		fclose(f);
	}
}

int vb_dovecot_start(const struct vb_env *e, const char *dir, struct vb_dovecot *d, char *why,
		     size_t len)
{
	char out[PATH_MAX + 16], sub[PATH_MAX];
	memset(d, 0, sizeof *d);
	if (access(VB_DOVECOT, X_OK) != 0 &&
	    vb_system("'%s/scripts/install-deps.sh' --bench", e->src_dir) != 0) {
		snprintf(why, len, "Dovecot is not installed and scripts/install-deps.sh failed");
		return -1;
	}
	snprintf(d->dir, sizeof d->dir, "%s/dovecot", dir);
	snprintf(d->conf, sizeof d->conf, "%s/dovecot.conf", d->dir);
	snprintf(d->sock, sizeof d->sock, "%s/auth-client", d->dir);
	snprintf(out, sizeof out, "%s/dovecot.out", d->dir);
	mkdir(d->dir, 0755);
	snprintf(sub, sizeof sub, "%s/run", d->dir);
	mkdir(sub, 0755);
	snprintf(sub, sizeof sub, "%s/state", d->dir);
	mkdir(sub, 0755);
	if (dovecot_conf(e, d) < 0) {
		snprintf(why, len, "cannot write %.300s", d->conf);
		return -1;
	}
	char *argv[] = { VB_DOVECOT, "-F", "-c", d->conf, NULL };
	d->pid = vb_spawn(argv, out, out);
	for (int ms = 0; ms < 10000 && access(d->sock, F_OK) < 0; ms += 20) {
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			d->pid = 0;
			first_line(out, why, len);
			return -1;
		}
		usleep(20000);
	}
	/* The hash must be one Dovecot's crypt() takes, or every AUTH fails. */
	if (access(d->sock, F_OK) < 0 ||
	    vb_system("doveadm -c '%s' auth test '%s' '%s' >'%s/authtest.out' 2>&1", d->conf,
		      e->w->user, e->w->pass, d->dir) != 0) {
		snprintf(why, len, "Dovecot did not authenticate the benchmark's user (see %.300s)",
			 d->dir);
		vb_dovecot_stop(d);
		return -1;
	}
	return 0;
}

void vb_dovecot_stop(struct vb_dovecot *d)
{
	if (d->pid > 0) {
		vb_stop(d->pid, 5000);   /* the master stops its children */
		kill(-d->pid, SIGKILL);  /* and any that did not */
	}
	d->pid = 0;
}

/* ---- the measurement ---- */


/* Run volley-submit to its end (it stops by itself at --max-time; we
 * stop it 30 s later if it did not). */
static int submit_run(const struct vb_env *e, struct vb_sink *s, const char *ip, int port,
		      const char *out, const char *err, double t0)
{
	const struct vb_scen *sc = e->sc;
	char bin[PATH_MAX], conn[64], clients[24], msgs[24], per[24], size[24], maxt[24], maxe[24];
	snprintf(bin, sizeof bin, "%s/volley-submit", e->bin_dir);
	snprintf(conn, sizeof conn, "%s:%d", ip, port);
	snprintf(clients, sizeof clients, "%ld", sc->submit_clients);
	snprintf(msgs, sizeof msgs, "%ld", sc->recipients);
	snprintf(per, sizeof per, "%ld", sc->per_conn);
	snprintf(size, sizeof size, "%ld", sc->msg_size);
	snprintf(maxt, sizeof maxt, "%ld", sc->timeout_s);
	/* Connections that fail or get AUTH's 454 are tried again: up to a
	 * tenth of the messages' worth before the run gives up. */
	snprintf(maxe, sizeof maxe, "%ld", sc->recipients / 10 > 100 ? sc->recipients / 10 : 100);
	char *argv[] = { bin, "--connect", conn, "--clients", clients, "--messages", msgs,
			 "--per-conn", per, "--size", size, "--user", (char *)e->w->user,
			 "--pass", (char *)e->w->pass, "--from", "sender@" VB_FROM_DOMAIN,
			 "--to-domain", "d0.s0.bench.test", "--ehlo", "client.bench.example",
			 "--tls", (char *)sc->submit_tls, "--max-time", maxt, "--max-errors", maxe,
			 "--json", NULL };
	int status = 0;
	pid_t pid = vb_spawn(argv, out, err);
	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		vb_progress(e, "submit", vb_sink_messages(s), sc->recipients, vb_now() - t0);
		if (vb_now() - t0 > (double)sc->timeout_s + 30) {
			vb_stop(pid, 2000);
			return -1;
		}
		usleep(20000);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* volley-submit's JSON line into r; 0, or -1 with the note said. */
static int submit_figures(const char *out, const char *err, struct vb_result *r)
{
	json_t *j = vb_last_json_line(out);
	if (!j) {
		char line[300];
		first_line(err, line, sizeof line);
		snprintf(r->note, sizeof r->note, "volley-submit gave no result: %s", line);
		return -1;
	}
	json_t *ref = json_object_get(j, "refused");
	r->accepted = (long)json_integer_value(json_object_get(j, "accepted"));
	r->refused = (long)(json_integer_value(json_object_get(ref, "4xx")) +
			    json_integer_value(json_object_get(ref, "5xx")));
	r->submit_errors = (long)json_integer_value(json_object_get(j, "errors"));
	r->accept_s = json_number_value(json_object_get(j, "elapsed_s"));
	r->p50_ms = json_number_value(json_object_get(j, "p50_ms"));
	r->p99_ms = json_number_value(json_object_get(j, "p99_ms"));
	const char *fe = json_string_value(json_object_get(j, "first_error"));
	if (fe)
		snprintf(r->note, sizeof r->note, "volley-submit's first error: %s", fe);
	json_decref(j);
	return 0;
}

int vb_submit_measure(const struct vb_env *e, struct vb_sink *s, const char *ip, int port,
		      pid_t root, pid_t extra, struct vb_result *r)
{
	const struct vb_scen *sc = e->sc;
	char out[PATH_MAX], err[PATH_MAX];
	struct vb_meter m;
	snprintf(out, sizeof out, "%s/submit.json", e->dir);
	snprintf(err, sizeof err, "%s/submit.err", e->dir);
	r->messages = sc->recipients;
	double extra0 = extra > 0 ? vb_tree_cpu(extra) : 0;
	vb_meter_start(&m, root);
	vb_sink_mark(s);
	double t0 = vb_now();
	int rc = submit_run(e, s, ip, port, out, err, t0);
	double t_load = vb_now();
	r->delivered_in_load = vb_sink_messages(s);
	if (submit_figures(out, err, r) < 0)
		rc = -1;
	/* Every accepted message must reach the sink. */
	double left = (double)sc->timeout_s - (t_load - t0);
	bool all = r->accepted > 0 && vb_sink_wait(s, r->accepted, left > 5 ? left : 5);
	r->seconds = vb_now() - t0;
	if (all) {  /* the sink's count lags its replies by a stats period */
		pthread_mutex_lock(&s->mu);
		if (s->nseries > 0) {
			for (int i = 0; i < s->nseries; i++)
				if (s->sv[i] >= r->accepted) {
					r->seconds = s->st[i];
					break;
				}
		}
		pthread_mutex_unlock(&s->mu);
	}
	vb_progress_end(e);
	vb_meter_stop(&m, &r->cpu_s, &r->peak_mem_kb);
	if (extra > 0)
		r->cpu_s += vb_tree_cpu(extra) - extra0;
	r->sink_messages = r->delivered = vb_sink_messages(s);
	vb_result_series(r, s);
	r->ran = true;
	r->ok = rc == 0 && r->accepted == sc->recipients && all && r->sink_messages == r->accepted;
	if (!r->ok && !r->note[0])
		snprintf(r->note, sizeof r->note, "accepted %ld of %ld, the sink has %ld", r->accepted,
			 sc->recipients, r->sink_messages);
	return r->ok ? 0 : -1;
}
