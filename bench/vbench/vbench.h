/*
 * volley-bench: end-to-end benchmark driver (docs/bench.md). Runs a
 * scenario (bench/scenarios/NAME.conf) through volleyd and, on request,
 * through Postfix and Nodemailer, each against a fresh volley-sink on
 * loopback, and reports the figures and the ratios of volley over each peer.
 * Private to bench/vbench/. Prefix: vb_.
 */
#ifndef VOLLEY_VBENCH_H
#define VOLLEY_VBENCH_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "../../common/common.h"

#define VB_MAX_ADDRS 32
#define VB_MAX_PROFILES 3
/* volley's egress sources are 127.0.0.(VB_EGRESS_BASE + i). */
#define VB_EGRESS_BASE 41
/* The sender's domain: From, envelope sender, DKIM key. */
#define VB_FROM_DOMAIN "bench.example"

/* ---- scenario (vbench_scen.c) ---- */
struct vb_scen {
	char name[64];
	char path[PATH_MAX];
	long recipients;       /* total recipients */
	long domains;          /* recipient domains, d0..d{n-1} */
	long msg_size;         /* approximate size of one message, octets */
	bool personalised;     /* per-recipient substitutions in subject and body */
	bool personalised_body; /* ... in the body too (default: personalised);
				   false: one body for all, one DKIM body hash */
	bool tls;              /* sink offers STARTTLS and volley demands it */
	char dkim[16];         /* "", "ed25519", "rsa" */
	long latency_ms;       /* sink reply latency */
	double tempfail, permfail, disconnect;  /* percent, at rcpt, rcpt, dot */
	long sessions;         /* concurrent sessions volley may open in all */
	int sink_addrs;        /* sink listen addresses, 127.0.0.21.. */
	int sink_threads;
	int egress;            /* volley's egress sources, 127.0.0.41.. in one
				  pool of equal weights (0: none) */
	bool transactional;    /* one single-recipient job per recipient */
	long submit_rate;      /* transactional: jobs per second, 0 = at once */
	long peer_max;         /* peers get at most this many messages */
	long peer_sessions;    /* concurrent connections of a peer */
	long timeout_s;        /* a peer's run is abandoned after this */
	bool dane;             /* MX through a DNSSEC world, TLSA-pinned sink;
				  volley again under encrypt: "no-dane" */
	/* The performance targets, checked and printed when set (0: none): volley's
	 * throughput over each peer's, and over sessions/latency. */
	double target_postfix, target_nodemailer, target_blast, target_latency;
	double target_dane;    /* volley / no-dane */
	/* DKIM scenarios: openssl speed for the key type (one core) before and
	 * after volley's run, openssl_seconds each (0: not run), and the target
	 * of volley's msg/s over its sign/s. */
	long openssl_seconds;
	double target_openssl;
	/* Shared transactions: volleyd's max_recipients_per_message (1-1000;
	 * a non-personalised job's recipients of a domain share messages), and
	 * with target_shared the "one-rcpt" peer: volley again at 1. */
	long rcpts_per_message;
	double target_shared;  /* volley / one-rcpt */
	/* Memory per open session: volley again at base_sessions (the peer
	 * "base-sess"), its peak PSS against this run's, per session more;
	 * target_session_kb: that less the message in flight, at most this. */
	long base_sessions;
	double target_session_kb;
	long msg_bytes;        /* the rendered message's size (set by main) */
	long peer_rcpts;       /* Postfix is injected messages of this many
				  recipients (not personalised only) */
	/* The submission scenario: recipients messages of one recipient each,
	 * submitted by volley-submit over SMTP (AUTH inside TLS) instead of
	 * the API, then delivered to the sink as usual. */
	bool submission;
	long submit_clients;   /* volley-submit's concurrent connections */
	long per_conn;         /* messages per connection before QUIT */
	char submit_tls[16];   /* "starttls" (port 587) or "implicit" (465) */
	char password_hash[16];  /* the users' crypt(3) hash: "yescrypt", "sha512crypt" */
	/* The providers scenario (vbench_prov.c): one volley-sink per profile,
	 * its recipients split by the profiles' allowed rates, volleyd's
	 * configuration from a file beside the scenario. */
	int nprofiles;
	char profiles[VB_MAX_PROFILES][16];   /* "gmail", "yahoo", "microsoft" */
	char profile_opts[256];   /* more volley-sink options for every profile */
	char volleyd_conf[PATH_MAX];  /* its template: @NAME@ is that sink's route */
	/* The mixed scenario (vbench_mixed.c): the bulk job of recipients
	 * while single-recipient transactional messages arrive at
	 * submit_rate (at most mixed_max of them), each peer also run with
	 * the bulk alone ("PEER-alone"). */
	bool mixed;
	long mixed_max;
	double target_p99_ms;  /* transactional p99 under this (volley) */
	double target_mixed;   /* bulk msg/s mixed / alone at least this */
	long haraka_max;       /* Haraka gets at most this many (it is slow) */
	/* The cluster scenario (vbench_cluster.c): volley on one node, then
	 * the same recipients split over cluster_nodes volleyd nodes sharing
	 * one redis-server (the peer "cluster"), every node with its own
	 * egress sources. site_rate: the sites' rate in both (0: none). */
	int cluster_nodes;
	double site_rate;
	double target_cluster;    /* cluster msg/s / one node's, at least */
	double target_redis_ops;  /* Redis commands a delivered message, under */
};

/* Parse a scenario: a path, or a name found in src_dir/bench/scenarios/.
 * 0 or -1 with the reason printed. */
int vb_scen_load(const char *name_or_path, const char *src_dir, struct vb_scen *sc);
/* How many messages a peer other than volley is given. */
static inline long vb_peer_messages(const struct vb_scen *sc)
{
	return sc->recipients < sc->peer_max ? sc->recipients : sc->peer_max;
}
/* Haraka's share: at most haraka_max too. */
static inline long vb_haraka_messages(const struct vb_scen *sc)
{
	long n = vb_peer_messages(sc);
	return n < sc->haraka_max ? n : sc->haraka_max;
}

/* ---- the workload, written once and shared by every peer (vbench_work.c) ---- */
struct vb_work {
	const struct vb_scen *sc;
	char dir[256];            /* the run's temporary folder */
	char job[PATH_MAX];       /* dir/job.json: the job without recipients */
	char rcpts[PATH_MAX];     /* dir/recipients.ndjson: one recipient a line,
				     {"email":..,"name":..,"substitutions":{..}} */
	char submit[PATH_MAX];    /* dir/submit.ndjson: job line + recipients */
	char dkim_key[PATH_MAX];  /* PEM key when the scenario signs */
	long msg_bytes;           /* one rendered message (the first recipient) */
	/* The submission scenario's material, shared by volley and Postfix. */
	char cert[PATH_MAX], key[PATH_MAX];   /* the listeners' certificate and key */
	char users[PATH_MAX];     /* volleyd's users file: "name:HASH" */
	char dovecot_users[PATH_MAX];  /* the same user for Dovecot: "name:{CRYPT}HASH" */
	char user[32], pass[48];  /* volley-submit's credentials */
	/* The mixed scenario's transactional stream: its job (the bulk job's
	 * content, priority transactional) and mixed_max recipients
	 * t<i>@<domain of i> (the sink logs "t*@*" acceptances). */
	char tx_job[PATH_MAX], tx_rcpts[PATH_MAX];
};

int vb_work_write(const struct vb_scen *sc, const char *dir, struct vb_work *w);
/* Recipient i's domain: d{i % domains}.s{(i % domains) % addrs}.bench.test,
 * so that a glob per sink address routes it. */
void vb_rcpt_domain(const struct vb_scen *sc, long i, char *out, size_t len);

/* ---- processes (vbench_proc.c) ---- */
/* fork+exec argv; stdout/stderr to these files (NULL: /dev/null). */
pid_t vb_spawn(char *const argv[], const char *out, const char *err);
/* SIGTERM to every process group vb_spawn started and vb_stop has not
 * stopped: for a signal handler (async-signal-safe). */
void vb_kill_all(void);
/* Have vb_kill_all also SIGTERM this process (add) or no longer (!add). */
void vb_kill_also(pid_t pid, bool add);
/* SIGTERM, wait up to grace_ms, then SIGKILL; reaps. */
void vb_stop(pid_t pid, int grace_ms);
/* CPU seconds (user+sys) of pid, its reaped children and its live
 * descendants. */
double vb_tree_cpu(pid_t root);
/* Memory of pid and its live descendants, KiB: their summed proportional
 * set size (shared pages counted once). */
long vb_tree_rss(pid_t root);
/* Monotonic seconds (UNIX time: vl_wall_time). */
static inline double vb_now(void)
{
	return (double)vl_now_ns() / 1e9;
}
int vb_free_port(void);
/* Connectable within timeout_ms? */
bool vb_wait_port(const char *ip, int port, int timeout_ms);
/* A Unix socket connectable within timeout_ms? (volleyd's API socket
 * exists from its bind(), a moment before its listen().) */
bool vb_wait_unix(const char *path, int timeout_ms);
/* The last line of path that starts with '{', as JSON (a tool's figures
 * come last; diagnostics may come first). NULL if none parses. */
struct json_t *vb_last_json_line(const char *path);
/* Run a shell command line; its exit status, -1 if it could not run. */
int vb_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Samples a process tree's CPU and RSS every 250 ms on its own thread, so
 * a peer made of many processes (Postfix) has a peak RSS too. */
struct vb_meter {
	pid_t root;
	double cpu0;
	long peak_kb;
	bool run;
	pthread_t th;
	pthread_mutex_t mu;
};
void vb_meter_start(struct vb_meter *m, pid_t root);
/* Stop sampling; CPU seconds since the start and peak RSS (KiB). */
void vb_meter_stop(struct vb_meter *m, double *cpu_s, long *peak_kb);

/* ---- the dane scenario's DNSSEC world (vbench_dane.c, bench/dane-world.py) ---- */
struct vb_dane {
	pid_t pid;
	int port;                  /* the sink's port, named by the TLSA records */
	char dir[PATH_MAX - 64];   /* run folder/dane */
	char resolver[64];         /* the validating unbound, "127.0.0.1:PORT" */
	char cert[PATH_MAX], key[PATH_MAX];  /* the sink's, pinned by TLSA 3 1 1 */
};

/* Sign the zone, start NSD and unbound; 0, or -1 with the reason printed. */
int vb_dane_start(const struct vb_scen *sc, const char *run_dir, const char *src_dir,
		  struct vb_dane *d);
void vb_dane_stop(struct vb_dane *d);

/* ---- one core's signing rate (vbench_ossl.c) ---- */
/* "rsa2048" or "ed25519": openssl speed's name for the scenario's key. */
const char *vb_ossl_alg(const struct vb_scen *sc);
/* `openssl speed -seconds N ALG`, one process; its output kept in dir.
 * Signatures a second, 0 if it failed (said on stderr). */
double vb_ossl_speed(const struct vb_scen *sc, const char *dir);

/* ---- volley-sink (vbench_sink.c) ---- */
#define VB_SERIES_MAX 8192
#define VB_MAX_IPS 8
#define VB_NREASONS 5   /* conns, rate, new_ip, rcpts, per_conn */
/* A profile sink's figures per client IP, from its stats lines. */
struct vb_ipstats {
	int n;
	char ip[VB_MAX_IPS][16];
	long accepted[VB_MAX_IPS], throttled[VB_MAX_IPS];
	long reason[VB_MAX_IPS][VB_NREASONS];
	double share[VB_MAX_IPS];     /* the part of the limits its age gives it */
	/* At each sample of the sink's series: the rate the profile allows
	 * (its rate times the IPs' shares) and the messages accepted per IP. */
	double allowed[VB_SERIES_MAX];
	long acc[VB_SERIES_MAX][VB_MAX_IPS];
};

struct vb_sink {
	pid_t pid;
	int port;
	int naddrs;
	char addr[VB_MAX_ADDRS][32];       /* "127.0.0.21" */
	int fd;                            /* its stats lines */
	pthread_t th;
	pthread_mutex_t mu;
	/* Latest counters, from the sink's JSON stats lines. */
	long messages, recipients, conns_peak;
	long logged;                       /* --accept-log lines (mixed) */
	char alog[PATH_MAX];               /* its file */
	/* recipients of messages accepted (one a message but for shared
	 * transactions), sampled every 100 ms: (time since start, count) */
	double t0;
	double cpu_mark;                   /* the sink's CPU seconds at the mark */
	int nseries;
	double st[VB_SERIES_MAX];
	long sv[VB_SERIES_MAX];
	long sl[VB_SERIES_MAX];            /* ... and of them logged (mixed) */
	double prof_rate;                  /* a profile's rate per IP (0: none) */
	int nsrc;                          /* with egress, only its IPs are counted
					      (not volley-bench's own probe) */
	struct vb_ipstats *ips;            /* with a profile, else NULL */
};

struct vb_env;
/* Start a sink for this scenario (TLS, latency, faults) in dir, on the DANE
 * world's port and certificate if there is one; its stats are followed on
 * a thread. */
int vb_sink_start(const struct vb_env *e, const char *dir, struct vb_sink *s);
/* A sink with the scenario's profile k, alone on 127.0.0.(21+k). */
int vb_sink_start_profile(const struct vb_env *e, const char *dir, struct vb_sink *s, int k);
/* A port free on every sink address of the scenario; -1 if none found. */
int vb_sink_port(const struct vb_scen *sc);
long vb_sink_messages(struct vb_sink *s);
long vb_sink_recipients(struct vb_sink *s);
/* Mark now as time 0 of the series. */
void vb_sink_mark(struct vb_sink *s);
/* Wait until the sink has accepted messages for n recipients (n messages
 * of one recipient) or timeout_s passes; true if it got there. */
bool vb_sink_wait(struct vb_sink *s, long n, double timeout_s);
void vb_sink_stop(struct vb_sink *s);

/* ---- volleyd's API over its Unix socket (vbench_http.c) ---- */
struct json_t;
struct vb_api;
struct vb_api *vb_api_open(const char *sock);
void vb_api_close(struct vb_api *a);
/* The JSON answer of a 2xx, or NULL with the failure printed. */
struct json_t *vb_api_get(struct vb_api *a, const char *path);
struct json_t *vb_api_post_json(struct vb_api *a, const char *path, const char *body);
/* Streams a file as an application/x-ndjson body. */
struct json_t *vb_api_post_file(struct vb_api *a, const char *path, const char *file);

/* ---- one peer's figures ---- */
struct vb_result {
	char peer[32];            /* "volley", "postfix", "nodemailer" */
	bool ran;                 /* false: skipped or failed; see note */
	bool ok;                  /* every recipient accounted for */
	long messages;            /* sent to this peer */
	long delivered;           /* the peer's own count */
	long bounced, other;      /* permanent failures; expired, cancelled, ... */
	long sink_messages;       /* what the sink accepted */
	long sink_rcpts;          /* ... and the recipients of those messages */
	double seconds;           /* first submission to last acceptance */
	double cpu_s;             /* CPU seconds of the peer, all its processes */
	long peak_mem_kb;
	long peak_conns;          /* sink's most open connections */
	double sink_cpu_s;        /* CPU seconds the sink used meanwhile */
	double intake_s;          /* volley: upload to 202 (durable); 0: n/a */
	double p50_ms, p99_ms;    /* submit-to-250; < 0 when not measured */
	/* Submission: volley-submit's figures (p50/p99 above are its end of
	 * data to 250), and the sink's count when it ended. */
	long accepted, refused, submit_errors;
	double accept_s;          /* volley-submit's run */
	long delivered_in_load;
	long dane;                /* volley: Delivery events with tls.dane true */
	int nseries;              /* delivered per second, from the sink */
	double st[VB_SERIES_MAX];
	long sv[VB_SERIES_MAX];
	long sl[VB_SERIES_MAX];   /* of them transactional (mixed) */
	char note[512];           /* why it failed, or what the figures mean */
	/* volley's row in a DKIM scenario: openssl speed's signatures a second
	 * on one core before and after volley's run (0: not measured). */
	double ossl_before, ossl_after;
	struct vb_mixres *mx;     /* the mixed scenario's figures, or NULL */
	struct vb_clures *cl;     /* the cluster peer's Redis figures, or NULL */
};

/* Copy the sink's series into r. */
void vb_result_series(struct vb_result *r, struct vb_sink *s);

/* Latency percentiles of n samples (sorted in place), milliseconds. */
void vb_percentiles(double *ms, size_t n, double *p50, double *p99);

/* ---- peers ---- */
struct vb_env {
	const struct vb_scen *sc;
	const struct vb_work *w;
	const char *bin_dir;      /* where volleyd, volley-sink are */
	const char *src_dir;      /* the source tree (bench/peers/) */
	bool tty;                 /* draw progress */
	bool verbose;
	const char *dir;          /* this peer's folder in the run's */
	const struct vb_dane *dane;  /* the DNSSEC world, or NULL */
	bool dane_off;            /* volley under encrypt in that world */
	bool one_rcpt;            /* volley at max_recipients_per_message = 1 */
	bool base_run;            /* volley at the scenario's base_sessions */
	bool bulk_only;           /* mixed: the bulk alone (a "-alone" row) */
	bool tx_only;             /* mixed: volley's transactional stream alone
				     for txonly_s ("volley-txonly") */
	double txonly_s;          /* the mixed run's bulk time, 1 to 30 s */
	const char *volley_conf;  /* a file appended to volleyd's configuration, or NULL */
	int node;                 /* cluster: this node's index (its egress sources
				     start at 127.0.0.(VB_EGRESS_BASE + node * egress)) */
	int split;                /* the peer "no-redis": the nodes without Redis,
				     each configured with 1/split of the limits */
};

/* volleyd's dns, defaults, domains (a route per sink address) and egress
 * sources for this scenario (vbench_volley.c). */
void vb_volley_domains(const struct vb_env *e, const struct vb_sink *s, FILE *f);

int vb_run_volley(const struct vb_env *e, struct vb_sink *s, struct vb_result *r);
int vb_run_postfix(const struct vb_env *e, struct vb_sink *s, struct vb_result *r);
int vb_run_nodemailer(const struct vb_env *e, struct vb_sink *s, struct vb_result *r);
/* Haraka as an outbound relay (vbench_haraka.c). */
int vb_run_haraka(const struct vb_env *e, struct vb_sink *s, struct vb_result *r);
/* node and npm on PATH (node's path into node, PATH_MAX), installed from
 * Debian's packages when missing; -1 with r's note (vbench_node.c). */
int vb_node_ensure(const struct vb_env *e, char *node, struct vb_result *r);
/* volley-blast, the clear-text pre-rendered ceiling (vbench_blast.c). */
int vb_run_blast(const struct vb_env *e, struct vb_sink *s, struct vb_result *r);

/* Progress line on stderr when on a terminal: "peer  done/total  rate". */
void vb_progress(const struct vb_env *e, const char *peer, long done, long total,
		 double elapsed);
void vb_progress_end(const struct vb_env *e);

/* ---- the submission scenario (vbench_submit.c) ---- */
/* The certificate, the key and the users files into w (the scenario's
 * users: one, with a yescrypt hash made by mkpasswd). */
int vb_submit_material(struct vb_work *w, const char *src_dir);
/* volley-submit against ip:port with the scenario's settings, then the
 * sink followed until it has every accepted message; root (and extra, if
 * not 0) is the peer's process tree, for CPU and memory. Fills r; 0 when
 * every message was accepted and delivered. */
int vb_submit_measure(const struct vb_env *e, struct vb_sink *s, const char *ip, int port,
		      pid_t root, pid_t extra, struct vb_result *r);
/* A private Dovecot, only its auth service: passwd-file with the {CRYPT}
 * hash, its client socket at sock (what Postfix's smtpd_sasl_path names). */
struct vb_dovecot {
	pid_t pid;
	char dir[PATH_MAX - 64], conf[PATH_MAX], sock[PATH_MAX];
};
int vb_dovecot_start(const struct vb_env *e, const char *dir, struct vb_dovecot *d, char *why,
		     size_t len);
void vb_dovecot_stop(struct vb_dovecot *d);

/* ---- the providers scenario (vbench_prov.c, vbench_provrep.c) ---- */
/* A profile volley-sink knows? */
bool vb_prof_known(const char *name);
/* Its allowed rate per client IP once ramped up (the sink's default),
 * messages a second. */
double vb_prof_rate(const char *name);
/* The whole scenario: the sinks, volleyd, the job, followed until every
 * recipient is final or the timeout; table, JSON (prefix.json) and plot
 * (prefix.png unless no_plot). 0 when every recipient was delivered. */
int vb_run_providers(const struct vb_env *e, const char *prefix, bool no_plot);

/* ---- the mixed scenario (vbench_mixed.c) ---- */
/* A row's mixed figures. Transactional message i was submitted at
 * sent[i] (UNIX seconds; 0: not submitted) and acknowledged (the API's
 * 202, the injection's 250) at acked[i]; the sink's accept log says when
 * it was accepted. */
struct vb_mixres {
	bool alone;               /* the bulk alone: no transactional stream */
	long bulk;                /* bulk messages */
	double bulk_s;            /* first submission to the last bulk outcome */
	long cap;                 /* sent/acked's size (mixed_max) */
	double *sent, *acked;
	double t0;                /* the run's start, UNIX seconds */
	long tx_sent, tx_failed;  /* submitted and acknowledged; refused */
	long tx_delivered;        /* at the sink, matched to a submission */
	double p50, p99, p999, max;       /* submit to the sink's 250, ms */
	double ack_p50, ack_p99;          /* submit to 202 (or 250 of injection) */
	size_t nlat;
	double *lat_t, *lat_ms;   /* each one's acceptance (s since t0), latency */
	char why[160];            /* what was not accounted for */
};
struct vb_mixres *vb_mix_new(const struct vb_scen *sc, bool alone, long bulk);
void vb_mix_free(struct vb_mixres *m);
/* After the run: read the sink's accept log, match it to the submissions,
 * the percentiles; false (why filled) unless every transactional message
 * acknowledged was accepted exactly once. */
bool vb_mix_latency(struct vb_mixres *m, const char *alog);
/* Bulk seconds from the sink's series (a peer's): the first sample with
 * bulk messages accepted, transactional ones (sl) not counted. */
double vb_mix_bulk_time(const struct vb_result *r, long bulk);
/* Transactional jobs through volleyd's API on threads of their own, paced
 * at rate, until stopped. */
struct vb_txapi;
struct vb_txapi *vb_txapi_start(const char *sock, const struct vb_work *w, double rate,
				struct vb_mixres *m);
/* Stop submitting, wait for the requests in flight; -1 if one failed. */
int vb_txapi_stop(struct vb_txapi *t);
/* The SMTP injectors' runs (Postfix, Haraka): bulk as fast as the server
 * takes it, transactional at the rate with times recorded, until the
 * sink has every bulk message, then the transactional stream stops and
 * the sink gets the rest. dead() says the server died (why filled). */
struct vb_inject;
/* The transactional stream's injector (n = mixed_max at submit_rate, its
 * times into m); the port is the caller's to set. NULL with why filled. */
struct vb_inject *vb_mix_injector(const struct vb_env *e, struct vb_mixres *m, char *why,
				  size_t len);
int vb_mix_inject_wait(const struct vb_env *e, struct vb_sink *s, struct vb_inject *bulk,
		       struct vb_inject *tx, struct vb_mixres *m, double t0,
		       bool (*dead)(void *arg, char *why, size_t len), void *arg,
		       const char *peer, char *why, size_t len);
void vb_mix_report(const struct vb_scen *sc, const struct vb_result *r, int n);
void vb_mix_json(struct json_t *o, const struct vb_result *r);
int vb_mix_plot(const char *path, const struct vb_scen *sc, const struct vb_result *r, int n,
		const char *dir);

/* ---- the cluster scenario (vbench_cluster.c) ---- */
/* The cluster peer's figures beyond the table's: what Redis did during
 * the delivery (from the first submission to the last final outcome). */
struct vb_clures {
	int nodes;
	bool redis;               /* false: the peer "no-redis" (no figures below) */
	long roundtrips;          /* the nodes' volley_cluster_redis_roundtrips_total */
	long leases, lease_tokens;
	long redis_calls;         /* client commands Redis counted (INFO commandstats,
				     INFO's own left out) */
	long redis_processed;     /* total_commands_processed, script calls included */
	double redis_cpu_s;       /* redis-server's CPU seconds */
	double node_s[8];         /* each node's last final outcome, s from the start */
	long node_n[8];           /* ... and its recipients */
	char why[160];
};
/* volley on cluster_nodes nodes and one Redis against the sink s; with
 * e->split, the same nodes alone (the peer "no-redis"). */
int vb_run_cluster(const struct vb_env *e, struct vb_sink *s, struct vb_result *r);
/* The ratio, Redis commands a message and the targets; JSON fields. */
void vb_cluster_report(const struct vb_scen *sc, const struct vb_result *r, int n);
void vb_cluster_json(struct json_t *o, const struct vb_result *r);

/* ---- report (vbench_report.c) ---- */
void vb_report_table(const struct vb_scen *sc, const struct vb_result *r, int n);
int vb_report_json(const char *path, const struct vb_scen *sc, const struct vb_result *r,
		   int n);
/* PNG of delivered per second over time, a line per peer; needs gnuplot. */
int vb_report_plot(const char *path, const struct vb_scen *sc, const struct vb_result *r,
		   int n, const char *dir);

#endif
