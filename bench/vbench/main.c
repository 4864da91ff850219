/*
 * volley-bench SCENARIO [--compare postfix|nodemailer]... : one workload,
 * volley first and then each peer, each against a fresh volley-sink, in
 * one run; a table, a JSON result and a PNG plot. docs/bench.md.
 */
#include "vbench.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* four peers, and dane's "no-dane" or target_shared's "one-rcpt", and
 * base_sessions' "base-sess"; mixed: every peer and volley twice
 * (PEER-alone), and volley-txonly; cluster: volley, cluster and no-redis
 * a round, at most four rounds, and the --compare peers */
#define MAX_PEERS 16

struct opts {
	const char *scen, *out, *bin_dir, *src_dir, *volley_conf;
	const char *peers[MAX_PEERS];
	char alone[5][32];        /* mixed: the "-alone" names */
	char round[12][32];       /* cluster: "volley-2", "cluster-2", ... */
	int npeers;
	long rounds;              /* cluster: volley, the cluster, no-redis; this often */
	long recipients, peer_max, per_conn, sessions, base_sessions;
	bool keep, no_plot, verbose;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: volley-bench SCENARIO [--compare postfix|nodemailer|haraka|blast]... [--recipients N]\n"
		"                    [--peer-max N] [--per-conn N] [--out PREFIX] [--keep] [--no-plot]\n"
		"  SCENARIO   a name in bench/scenarios/ (small, newsletter, latency,\n"
		"             latency-tls, sessions, faults, transactional, mixed, dkim,\n"
		"             dkim-100k, dane, submission, providers, providers-known, cluster)\n"
		"             or a scenario file\n"
		"  --compare  also run the workload through this peer (repeatable); haraka is\n"
		"             the Node.js MTA as an outbound relay; blast is volley-blast, a\n"
		"             pre-rendered ceiling (STARTTLS in TLS scenarios)\n"
		"  --recipients, --peer-max, --sessions  override the scenario's counts\n"
		"  --base-sessions N  volley again at N sessions (the peer base-sess): memory\n"
		"             per open session, from the two runs' peak PSS\n"
		"  --per-conn N  submission: messages per connection (1: a connection a message)\n"
		"  --rounds N cluster: one node, the cluster and the nodes without Redis, N times\n"
		"             in turn (1-4; the ratio's median and spread)\n"
		"  --out      write PREFIX.json and PREFIX.png (default bench/out/SCENARIO)\n"
		"  --keep     keep the run's temporary folder (logs, spools)\n"
		"  --volley-conf FILE  append FILE to volleyd's configuration (webhooks, ...)\n"
		"  --version  print the version and exit\n");
}

static int count_arg(const char *opt, const char *arg, long *v)
{
	char *end;
	errno = 0;
	long n = strtol(arg, &end, 10);
	if (errno || end == arg || *end || n < 1 || n > 100000000) {
		fprintf(stderr, "volley-bench: %s: a number from 1 to 100000000, not \"%s\"\n", opt,
			arg);
		return -1;
	}
	*v = n;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "compare", required_argument, 0, 'c' }, { "recipients", required_argument, 0, 'n' },
		{ "peer-max", required_argument, 0, 'p' }, { "out", required_argument, 0, 'o' },
		{ "per-conn", required_argument, 0, 'C' },
		{ "sessions", required_argument, 0, 'S' },
		{ "base-sessions", required_argument, 0, 'B' },
		{ "rounds", required_argument, 0, 'R' },
		{ "keep", no_argument, 0, 'k' },           { "no-plot", no_argument, 0, 'P' },
		{ "bin", required_argument, 0, 'b' },      { "src", required_argument, 0, 's' },
		{ "verbose", no_argument, 0, 'v' },        { "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, 'V' },        { "volley-conf", required_argument, 0, 'X' },
		{ 0, 0, 0, 0 }
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (strcmp(optarg, "postfix") && strcmp(optarg, "nodemailer") &&
			    strcmp(optarg, "haraka") && strcmp(optarg, "blast")) {
				fprintf(stderr, "volley-bench: --compare: postfix, nodemailer, haraka or "
					"blast, not %s\n", optarg);
				return -1;
			}
			for (int i = 0; i < o->npeers; i++)
				if (!strcmp(o->peers[i], optarg)) {
					fprintf(stderr, "volley-bench: --compare %s twice\n", optarg);
					return -1;
				}
			o->peers[o->npeers++] = optarg;  /* four names: never past MAX_PEERS */
			break;
		case 'n':
		case 'p':
			if (count_arg(c == 'n' ? "--recipients" : "--peer-max", optarg,
				      c == 'n' ? &o->recipients : &o->peer_max) < 0)
				return -1;
			break;
		case 'C':
			if (count_arg("--per-conn", optarg, &o->per_conn) < 0)
				return -1;
			break;
		case 'S':
			if (count_arg("--sessions", optarg, &o->sessions) < 0)
				return -1;
			break;
		case 'B':
			if (count_arg("--base-sessions", optarg, &o->base_sessions) < 0)
				return -1;
			break;
		case 'R':
			if (count_arg("--rounds", optarg, &o->rounds) < 0)
				return -1;
			break;
		case 'o': o->out = optarg; break;
		case 'X': o->volley_conf = optarg; break;
		case 'k': o->keep = true; break;
		case 'P': o->no_plot = true; break;
		case 'b': o->bin_dir = optarg; break;
		case 's': o->src_dir = optarg; break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("volley-bench %s\n", VL_VERSION); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return -1;
	}
	o->scen = argv[optind];
	return 0;
}

/* build/volley-bench lives in the source tree's build/ folder. */
static void find_dirs(struct opts *o, char *bin, char *src)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = 0;
	snprintf(bin, PATH_MAX, "%s", o->bin_dir ? o->bin_dir : dirname(exe));
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", bin);
	snprintf(src, PATH_MAX, "%s", o->src_dir ? o->src_dir : dirname(tmp));
	o->bin_dir = bin;
	o->src_dir = src;
}

typedef int (*run_fn)(const struct vb_env *, struct vb_sink *, struct vb_result *);

/* A peer by name; "NAME-alone" (mixed) and "NAME-2" (rounds) are NAME. */
static run_fn peer_fn(const char *name)
{
	size_t n = strcspn(name, "-");
	if (!strncmp(name, "no-redis", 8))
		return vb_run_cluster;
	return !strncmp(name, "volley", n) ? vb_run_volley
	       : !strncmp(name, "postfix", n) ? vb_run_postfix
	       : !strncmp(name, "haraka", n) ? vb_run_haraka
	       : !strncmp(name, "blast", n) ? vb_run_blast
	       : !strncmp(name, "cluster", n) ? vb_run_cluster : vb_run_nodemailer;
}

/* mixed: each peer, volley too, once more with the bulk alone, right
 * after its mixed run. */
static void mixed_peers(struct opts *o)
{
	const char *p[MAX_PEERS];
	int n = 0;
	snprintf(o->alone[0], sizeof o->alone[0], "volley-alone");
	p[n++] = o->alone[0];
	p[n++] = "volley-txonly";
	for (int i = 0; i < o->npeers; i++) {
		snprintf(o->alone[i + 1], sizeof o->alone[i + 1], "%s-alone", o->peers[i]);
		p[n++] = o->peers[i];
		p[n++] = o->alone[i + 1];
	}
	memcpy(o->peers, p, (size_t)n * sizeof *p);
	o->npeers = n;
}

/* cluster: after volley on one node, the cluster and the nodes alone;
 * more rounds of the three in turn; then the --compare peers. */
static void cluster_peers(struct opts *o)
{
	static const char *const names[] = { "volley", "cluster", "no-redis" };
	const char *p[MAX_PEERS];
	int n = 0, k = 0;
	p[n++] = "cluster";
	p[n++] = "no-redis";
	for (long r = 2; r <= o->rounds; r++)
		for (int i = 0; i < 3; i++, k++) {
			snprintf(o->round[k], sizeof o->round[k], "%s-%ld", names[i], r);
			p[n++] = o->round[k];
		}
	for (int i = 0; i < o->npeers; i++)
		p[n++] = o->peers[i];
	memcpy(o->peers, p, (size_t)n * sizeof *p);
	o->npeers = n;
}

/* The run's files on disk before the next run: the writeback of the last
 * one's journal and events (hundreds of MB) would fall in its fsyncs. */
static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}

/* One peer: its own folder and its own sink. */
static void run_peer(const struct vb_env *e, const char *name, run_fn fn, struct vb_result *r)
{
	char dir[300];
	struct vb_sink s;
	struct vb_env pe = *e;
	snprintf(dir, sizeof dir, "%s/%.32s", e->w->dir, name);
	mkdir(dir, 0755);
	pe.dir = dir;
	snprintf(r->peer, sizeof r->peer, "%s", name);
	fprintf(stderr, "== %s\n", name);
	if (vb_sink_start(&pe, dir, &s) < 0) {
		snprintf(r->note, sizeof r->note, "volley-sink did not start");
		return;
	}
	pe.bulk_only = strstr(name, "-alone") != NULL;
	pe.tx_only = strstr(name, "-txonly") != NULL;
	if (fn(&pe, &s, r) < 0 && !r->note[0])
		snprintf(r->note, sizeof r->note, "failed (see %s)", dir);
	snprintf(r->peer, sizeof r->peer, "%s", name);
	r->sink_cpu_s = vb_tree_cpu(s.pid) - s.cpu_mark;
	vb_sink_stop(&s);
	r->sink_messages = r->sink_messages ? r->sink_messages : s.messages;
	if (e->sc->mixed)
		sync_dir(dir);
}

/* volley, then the peers; under dane, the DNSSEC world first, and the
 * "no-dane" peer is volley again under encrypt in it. */
static void run_all(const struct opts *o, const struct vb_env *e, const char *dir,
		    struct vb_result *r)
{
	struct vb_dane dn;
	struct vb_env de = *e;
	if (e->sc->dane && vb_dane_start(e->sc, dir, o->src_dir, &dn) < 0) {
		for (int i = 0; i <= o->npeers; i++) {
			snprintf(r[i].peer, sizeof r[i].peer, "%s", i ? o->peers[i - 1] : "volley");
			snprintf(r[i].note, sizeof r[i].note, "the DNSSEC world did not start");
		}
		return;
	}
	de.dane = e->sc->dane ? &dn : NULL;
	/* One core's sign rate on either side of volley's run: the machine
	 * as volley found it (a mean of the two, docs/bench.md). */
	if (e->sc->openssl_seconds)
		r[0].ossl_before = vb_ossl_speed(e->sc, dir);
	run_peer(&de, "volley", vb_run_volley, &r[0]);
	if (e->sc->openssl_seconds)
		r[0].ossl_after = vb_ossl_speed(e->sc, dir);
	if (r[0].mx)   /* volley-txonly runs the stream as long as the mixed bulk */
		de.txonly_s = r[0].mx->bulk_s < 1 ? 1 : r[0].mx->bulk_s > 30 ? 30 : r[0].mx->bulk_s;
	for (int i = 0; i < o->npeers; i++) {
		bool nd = !strcmp(o->peers[i], "no-dane"), one = !strcmp(o->peers[i], "one-rcpt");
		bool base = !strcmp(o->peers[i], "base-sess");
		de.dane_off = nd;
		de.one_rcpt = one;
		de.base_run = base;
		de.split = !strncmp(o->peers[i], "no-redis", 8) ? e->sc->cluster_nodes : 0;
		run_peer(&de, o->peers[i], nd || one || base ? vb_run_volley : peer_fn(o->peers[i]),
			 &r[1 + i]);  /* "volley-alone" is volley too */
	}
	if (e->sc->dane)
		vb_dane_stop(&dn);
}

/* The outputs' PREFIX (--out, or bench/out/SCENARIO), its folder made. */
static void out_prefix(const struct opts *o, const struct vb_scen *sc, char *prefix)
{
	if (o->out)
		snprintf(prefix, PATH_MAX, "%s", o->out);
	else
		snprintf(prefix, PATH_MAX, "%.3900s/bench/out/%s", o->src_dir, sc->name);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", prefix);
	vb_system("mkdir -p '%s'", dirname(tmp));
}

/* JSON and PNG; -1 if the JSON could not be written. */
static int outputs(const struct opts *o, const struct vb_scen *sc, struct vb_result *r,
		   int n, const char *dir)
{
	char prefix[PATH_MAX], path[PATH_MAX + 8];
	out_prefix(o, sc, prefix);
	snprintf(path, sizeof path, "%s.json", prefix);
	if (vb_report_json(path, sc, r, n) < 0)
		return -1;
	printf("result: %s\n", path);
	snprintf(path, sizeof path, "%s.png", prefix);
	if (!o->no_plot && access("/usr/bin/gnuplot", X_OK) < 0)
		vb_system("'%s/scripts/install-deps.sh' --bench", o->src_dir);
	if (!o->no_plot && (sc->mixed ? vb_mix_plot(path, sc, r, n, dir)
				      : vb_report_plot(path, sc, r, n, dir)) == 0)
		printf("plot:   %s\n", path);
	return 0;
}

/* What was run, above the table. */
static void headline(const struct vb_scen *sc, const struct vb_work *w)
{
	int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (sc->submission) {
		printf("\nvolley-bench %s: %ld messages of %ld octets submitted by volley-submit: %ld "
		       "clients, %ld messages a connection, %s, AUTH PLAIN (yescrypt); delivered "
		       "to the sink%s with %ld sessions; %d cores\n", sc->name, sc->recipients,
		       sc->msg_size, sc->submit_clients, sc->per_conn,
		       !strcmp(sc->submit_tls, "implicit") ? "implicit TLS" : "STARTTLS",
		       sc->tls ? " over STARTTLS" : "", sc->sessions, cores);
		return;
	}
	printf("\nvolley-bench %s: %ld recipients over %ld domains, messages of %ld octets%s%s%s%s, "
	       "%ld sessions, %d cores\n", sc->name, sc->recipients, sc->domains, w->msg_bytes,
	       sc->personalised && !sc->personalised_body ? " (headers per recipient, one body)"
							   : "",
	       sc->tls ? ", STARTTLS" : "", sc->dkim[0] ? (sc->dkim[0] == 'r' ? ", DKIM rsa" :
							     ", DKIM ed25519") : "",
	       sc->dane ? ", MX via a validating unbound, TLSA 3 1 1 on every MX (no-dane: "
			 "policy encrypt)" : "",
	       sc->sessions, cores);
}

/* The providers scenario: volley alone, its own report. */
static int providers(const struct opts *o, const struct vb_env *e, const char *dir)
{
	char prefix[PATH_MAX];
	out_prefix(o, e->sc, prefix);
	bool ok = vb_run_providers(e, prefix, o->no_plot) == 0;
	if (ok && !o->keep)
		vb_system("rm -rf '%s'", dir);
	else
		printf("run folder kept: %s\n", dir);
	curl_global_cleanup();
	return ok ? 0 : 1;
}

static void on_signal(int sig)
{
	(void)sig;
	/* The children lead their own process groups (a Ctrl-C reaches only
	 * us): stop them all, then leave. */
	vb_kill_all();
	_exit(130);
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct vb_scen sc;
	struct vb_work w;
	struct vb_result *r;
	char bin[PATH_MAX], src[PATH_MAX], dir[] = "/tmp/volley-bench.XXXXXX";

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	find_dirs(&o, bin, src);
	if (vb_scen_load(o.scen, o.src_dir, &sc) < 0)
		return 2;
	if (o.recipients > 0)
		sc.recipients = o.recipients;
	if (o.peer_max > 0)
		sc.peer_max = o.peer_max;
	if (o.per_conn > 0)
		sc.per_conn = o.per_conn;
	if (o.sessions > 0)
		sc.sessions = o.sessions;
	if (o.base_sessions > 0)
		sc.base_sessions = o.base_sessions;
	if (sc.base_sessions && (sc.base_sessions >= sc.sessions || sc.base_sessions < sc.sink_addrs ||
				 sc.submission || sc.nprofiles)) {
		fprintf(stderr, "volley-bench: %s: base_sessions: fewer than the scenario's %ld "
			"sessions, at least one per sink address, not with submission or profiles\n",
			sc.name, sc.sessions);
		return 2;
	}
	if (o.rounds && (!sc.cluster_nodes || o.rounds > 4)) {
		fprintf(stderr, "volley-bench: --rounds: 1 to 4, for a cluster scenario\n");
		return 2;
	}
	if (sc.nprofiles && o.npeers) {
		fprintf(stderr, "volley-bench: %s: a providers scenario runs volley alone\n",
			sc.name);
		return 2;
	}
	for (int i = 0; i < o.npeers; i++)
		if (sc.submission && strcmp(o.peers[i], "postfix")) {
			fprintf(stderr, "volley-bench: %s: a submission scenario compares with "
				"Postfix (a submission server) only\n", sc.name);
			return 2;
		}
	for (int i = 0; i < o.npeers; i++)
		if ((sc.transactional || sc.mixed) && !strcmp(o.peers[i], "blast")) {
			fprintf(stderr, "volley-bench: %s: blast sends as fast as it can; a "
				"transactional scenario is paced\n", sc.name);
			return 2;
		}
	for (int i = 0; i < o.npeers; i++)
		if ((sc.tempfail > 0 || sc.permfail > 0 || sc.disconnect > 0) &&
		    !strcmp(o.peers[i], "haraka")) {
			fprintf(stderr, "volley-bench: %s: Haraka is compared where every message is "
				"delivered (nothing counts its bounces)\n", sc.name);
			return 2;
		}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!mkdtemp(dir)) {
		perror("volley-bench: mkdtemp");
		return 1;
	}
	fprintf(stderr, "volley-bench %s: %ld recipients, %ld domains, %ld B, %s, run in %s\n",
		sc.name, sc.recipients, sc.domains, sc.msg_size, sc.tls ? "STARTTLS" : "clear text",
		dir);
	if (vb_work_write(&sc, dir, &w) < 0 || (sc.submission && vb_submit_material(&w, o.src_dir) < 0)) {
		fprintf(stderr, "volley-bench: the workload could not be written; %s kept\n", dir);
		return 1;
	}
	/* Its files on disk now: else their writeback (the newsletter's list
	 * and upload are 250 MB) falls in the first peer's run, whose journal
	 * fsyncs then wait for it. */
	sync_dir(dir);
	sc.msg_bytes = w.msg_bytes;
	if (sc.dane) {  /* right after volley: the ratio that counts */
		memmove(o.peers + 1, o.peers, (size_t)o.npeers++ * sizeof *o.peers);
		o.peers[0] = "no-dane";
	}
	if (sc.base_sessions) {  /* volley again at base_sessions, right after */
		memmove(o.peers + 1, o.peers, (size_t)o.npeers++ * sizeof *o.peers);
		o.peers[0] = "base-sess";
	}
	if (sc.target_shared > 0) {  /* volley at one recipient a message */
		memmove(o.peers + 1, o.peers, (size_t)o.npeers++ * sizeof *o.peers);
		o.peers[0] = "one-rcpt";
	}
	if (sc.cluster_nodes)
		cluster_peers(&o);
	if (sc.mixed)
		mixed_peers(&o);
	struct vb_env e = { .sc = &sc, .w = &w, .bin_dir = o.bin_dir, .src_dir = o.src_dir,
			    .tty = isatty(2), .verbose = o.verbose, .volley_conf = o.volley_conf };
	if (sc.nprofiles)
		return providers(&o, &e, dir);
	r = vl_calloc(1 + (size_t)o.npeers, sizeof *r);
	run_all(&o, &e, dir, r);

	headline(&sc, &w);
	bool others = false;    /* a peer that is not volley run again */
	for (int i = 0; i < o.npeers; i++)
		others |= strncmp(o.peers[i], "volley", 6) && strcmp(o.peers[i], "no-dane") &&
			  strcmp(o.peers[i], "one-rcpt") && strncmp(o.peers[i], "cluster", 7) &&
			  strncmp(o.peers[i], "no-redis", 8);
	if (others && !sc.submission)
		printf("peers send the first %ld recipients (Haraka %ld) with %ld connections\n",
		       vb_peer_messages(&sc), vb_haraka_messages(&sc), sc.peer_sessions);
	vb_report_table(&sc, r, 1 + o.npeers);
	bool ok = outputs(&o, &sc, r, 1 + o.npeers, dir) == 0;
	for (int i = 0; i <= o.npeers; i++)
		ok = ok && r[i].ran && r[i].ok;
	if (ok && !o.keep)
		vb_system("rm -rf '%s'", dir);
	else
		printf("run folder kept: %s\n", dir);
	for (int i = 0; i <= o.npeers; i++) {
		vb_mix_free(r[i].mx);
		free(r[i].cl);
	}
	free(r);
	curl_global_cleanup();
	return ok ? 0 : 1;
}
