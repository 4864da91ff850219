/*
 * The cluster scenario's peer (docs/bench.md): the scenario's recipients
 * split evenly over cluster_nodes volleyd nodes that share one
 * redis-server on a loopback port (started here, nothing on disk), each
 * node with its own data_dir, API socket and egress addresses, all
 * submitted at once to the same sink as volley's single-node run; the
 * sites' rate and max_connections are configured (so the shared buckets
 * and connection leases are exercised) but do not bind. Beside the
 * table's figures: what Redis did meanwhile (commands from the nodes'
 * counters and from Redis's own, its CPU). With e->split (the peer
 * "no-redis") the same nodes run without Redis, each configured with its
 * share of the limits: what the nodes cost without the shared state.
 * Every process started here is stopped by PID, on failure too.
 */
#include "vbench.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REDIS_BIN "/usr/bin/redis-server"
#define REDIS_CLI "/usr/bin/redis-cli"
#define SHARED_WAIT_S 20.0   /* every node in shared mode, N counted */

struct cnode {
	int k;
	char dir[320], data[340], sock[360], list[360];
	pid_t pid;
	struct vb_api *api;
	struct vb_meter m;
	bool metered;
	long expect, total, final, delivered, bounced;
	long rt0, leases0, tok0;     /* cluster counters at the start */
	double done_s, intake_s;
	int rc;                      /* its submission's */
	pthread_t th;
};

struct crun {
	const struct vb_env *e;
	struct vb_sink *s;
	struct vb_result *r;
	struct vb_clures *cl;
	int n;
	struct cnode nd[8];
	pid_t redis;
	int port;
	char dir[300];
	long calls0, proc0;          /* Redis's counters at the start */
};

/* ---- Redis ---- */

static int redis_start(struct crun *c)
{
	char rdir[340], log[360], port[16];
	if (access(REDIS_BIN, X_OK) < 0) {
		snprintf(c->r->note, sizeof c->r->note, "redis-server is not installed "
			 "(scripts/install-deps.sh)");
		return -1;
	}
	snprintf(rdir, sizeof rdir, "%s/redis", c->dir);
	snprintf(log, sizeof log, "%s/redis.log", c->dir);
	mkdir(rdir, 0755);
	c->port = vb_free_port();
	snprintf(port, sizeof port, "%d", c->port);
	char *argv[] = { REDIS_BIN, "--port", port, "--bind", "127.0.0.1", "--save", "",
			 "--appendonly", "no", "--dir", rdir, "--daemonize", "no", NULL };
	c->redis = vb_spawn(argv, log, log);
	if (c->port < 0 || !vb_wait_port("127.0.0.1", c->port, 10000)) {
		snprintf(c->r->note, sizeof c->r->note, "redis-server did not listen (see %.200s)",
			 log);
		return -1;
	}
	return 0;
}

/* "cmdstat_evalsha:calls=12,..." lines: what the nodes send (the script's
 * own calls are counted under their names too, so only these). */
static long client_calls(const char *line)
{
	static const char *const mine[] = { "cmdstat_evalsha:", "cmdstat_script|load:",
					     "cmdstat_auth:", "cmdstat_select:" };
	for (size_t i = 0; i < sizeof mine / sizeof *mine; i++)
		if (!strncmp(line, mine[i], strlen(mine[i])))
			return strtol(line + strlen(mine[i]) + 6, NULL, 10);   /* "calls=" */
	return 0;
}

/* INFO all through redis-cli: client commands and every command
 * processed (the script's included), less this INFO itself. */
static int redis_counts(const struct crun *c, long *calls, long *processed)
{
	char cmd[128], line[512];
	snprintf(cmd, sizeof cmd, REDIS_CLI " -h 127.0.0.1 -p %d INFO all 2>/dev/null", c->port);
	FILE *p = popen(cmd, "r");
	*calls = *processed = -1;
	if (!p)
		return -1;
	long cl = 0;
	while (fgets(line, sizeof line, p)) {
		cl += client_calls(line);
		if (!strncmp(line, "total_commands_processed:", 25))
			*processed = strtol(line + 25, NULL, 10);
	}
	int st = pclose(p);
	if (st != 0 || *processed < 0)
		return -1;
	*calls = cl;
	return 0;
}

/* ---- the nodes ---- */

static int write_node_config(struct crun *c, struct cnode *nd, const char *path)
{
	struct vb_env ne = *c->e;
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	ne.node = nd->k;
	fprintf(f, "data_dir = \"%s\";\nhostname = \"mta%d.bench.example\";\n", nd->data, nd->k);
	vb_volley_domains(&ne, c->s, f);
	if (!c->cl->redis)
		return fclose(f);
	fprintf(f, "cluster = { redis = \"redis://127.0.0.1:%d/0\"; node = \"bench-%d\"; };\n",
		c->port, nd->k);
	return fclose(f);
}

static int node_start(struct crun *c, struct cnode *nd)
{
	char bin[PATH_MAX], conf[400], log[400];
	snprintf(nd->dir, sizeof nd->dir, "%.290s/node-%d", c->dir, nd->k);
	snprintf(nd->data, sizeof nd->data, "%s/data", nd->dir);
	snprintf(nd->sock, sizeof nd->sock, "%s/volley.sock", nd->data);
	snprintf(conf, sizeof conf, "%s/volley.conf", nd->dir);
	snprintf(log, sizeof log, "%s/volleyd.log", nd->dir);
	snprintf(bin, sizeof bin, "%s/volleyd", c->e->bin_dir);
	if (mkdir(nd->dir, 0755) < 0 || write_node_config(c, nd, conf) < 0)
		return -1;
	char *argv[] = { bin, "--foreground", "--config", conf, NULL };
	nd->pid = vb_spawn(argv, log, log);
	for (int i = 0; i < 500 && access(nd->sock, F_OK) < 0; i++) {
		if (waitpid(nd->pid, NULL, WNOHANG) == nd->pid) {
			nd->pid = 0;
			break;
		}
		usleep(10000);
	}
	if (!nd->pid || access(nd->sock, F_OK) < 0 || !vb_wait_unix(nd->sock, 5000) ||
	    !(nd->api = vb_api_open(nd->sock))) {
		snprintf(c->r->note, sizeof c->r->note, "volleyd node %d did not start (see %.200s)",
			 nd->k, log);
		return -1;
	}
	return 0;
}

/* /v1/stats: the recipients' counts and the cluster's counters. */
static json_t *node_stats(struct cnode *nd)
{
	return vb_api_get(nd->api, "/v1/stats");
}

static json_t *cluster_of(json_t *st)
{
	return json_object_get(json_object_get(json_object_get(st, "scheduler"), "delivery"),
			       "cluster");
}

static long cnum(json_t *cl, const char *k)
{
	return (long)json_integer_value(json_object_get(cl, k));
}

/* Every node shared with N counted, bounded. */
static int wait_shared(struct crun *c)
{
	double end = vb_now() + SHARED_WAIT_S;
	for (int up = 0; up < c->n;) {
		up = 0;
		for (int k = 0; k < c->n; k++) {
			json_t *st = node_stats(&c->nd[k]), *cl = cluster_of(st);
			const char *mode = json_string_value(json_object_get(cl, "mode"));
			up += mode && !strcmp(mode, "shared") && cnum(cl, "nodes") == c->n;
			json_decref(st);
		}
		if (up < c->n && vb_now() > end) {
			snprintf(c->r->note, sizeof c->r->note, "%d of %d nodes in shared mode with "
				 "N = %d after %.0f s", up, c->n, c->n, SHARED_WAIT_S);
			return -1;
		}
		if (up < c->n)
			usleep(100000);
	}
	return 0;
}

/* Node k's part of the list: the job line, then every n-th recipient. */
static int split_lists(struct crun *c)
{
	FILE *in = fopen(c->e->w->submit, "r"), *out[8] = { 0 };
	char *line = NULL;   /* the job line holds the whole message */
	size_t cap = 0;
	long i = -1;
	int rc = in ? 0 : -1;
	for (int k = 0; k < c->n && rc == 0; k++) {
		snprintf(c->nd[k].list, sizeof c->nd[k].list, "%.290s/list-%d.ndjson", c->dir, k);
		rc = (out[k] = fopen(c->nd[k].list, "w")) ? 0 : -1;
	}
	while (rc == 0 && getline(&line, &cap, in) > 0) {
		for (int k = 0; k < c->n; k++)
			if (i < 0 || i % c->n == k) {
				fputs(line, out[k]);
				c->nd[k].expect += i >= 0;
			}
		i++;
	}
	for (int k = 0; k < c->n; k++)
		if (out[k] && fclose(out[k]))
			rc = -1;
	if (in)
		fclose(in);
	free(line);
	return rc;
}

static void *submit_one(void *arg)
{
	struct cnode *nd = arg;
	struct vb_api *a = vb_api_open(nd->sock);   /* its own handle: another thread */
	double t0 = vb_now();
	json_t *j = a ? vb_api_post_file(a, "/v1/jobs", nd->list) : NULL;
	nd->intake_s = vb_now() - t0;
	nd->rc = j ? 0 : -1;
	json_decref(j);
	vb_api_close(a);
	return NULL;
}

/* Every node's part at once, one thread each. */
static int submit_all(struct crun *c)
{
	int rc = 0;
	bool th[8];
	for (int k = 0; k < c->n; k++)   /* no thread: that part goes now, alone */
		if (!(th[k] = pthread_create(&c->nd[k].th, NULL, submit_one, &c->nd[k]) == 0))
			submit_one(&c->nd[k]);
	for (int k = 0; k < c->n; k++) {
		if (th[k])
			pthread_join(c->nd[k].th, NULL);
		rc |= c->nd[k].rc;
		if (c->nd[k].intake_s > c->r->intake_s)
			c->r->intake_s = c->nd[k].intake_s;
	}
	if (rc)
		snprintf(c->r->note, sizeof c->r->note, "a node refused its part of the list");
	return rc;
}

static int node_counts(struct cnode *nd)
{
	json_t *st = node_stats(nd), *n;
	json_t *rc = json_object_get(json_object_get(st, "scheduler"), "recipients");
	const char *k;
	if (!rc) {
		json_decref(st);
		return -1;
	}
	nd->total = nd->final = 0;
	json_object_foreach(rc, k, n) {
		long x = (long)json_integer_value(n);
		nd->total += x;
		if (!strcmp(k, "delivered"))
			nd->delivered = x;
		if (!strcmp(k, "bounced"))
			nd->bounced = x;
		if (!strcmp(k, "delivered") || !strcmp(k, "bounced") || !strcmp(k, "expired") ||
		    !strcmp(k, "cancelled") || !strcmp(k, "suppressed"))
			nd->final += x;
	}
	json_decref(st);
	return 0;
}

/* One look at every node not yet done; how many are done. */
static int look(struct crun *c, double t0)
{
	int done = 0;
	for (int k = 0; k < c->n; k++) {
		struct cnode *nd = &c->nd[k];
		if (nd->done_s > 0) {
			done++;
			continue;
		}
		if (node_counts(nd) < 0)
			return -1;
		if (nd->total == nd->expect && nd->final == nd->total) {
			nd->done_s = vb_now() - t0;
			done++;
		}
	}
	return done;
}

/* Until every node's recipients are final, or the scenario's timeout. */
static int follow(struct crun *c, double t0)
{
	double end = t0 + (double)c->e->sc->timeout_s;
	for (;;) {
		int done = look(c, t0);
		long fin = 0;
		for (int k = 0; k < c->n; k++)
			fin += c->nd[k].final;
		vb_progress(c->e, c->cl->redis ? "cluster" : "no-redis", fin, c->r->messages, vb_now() - t0);
		if (done < 0) {
			snprintf(c->r->note, sizeof c->r->note, "a node's /v1/stats did not answer");
			return -1;
		}
		if (done == c->n)
			return 0;
		if (vb_now() > end) {
			snprintf(c->r->note, sizeof c->r->note, "timed out: %ld of %ld final", fin,
				 c->r->messages);
			return -1;
		}
		usleep(20000);   /* as volley's own run polls */
	}
}

/* The cluster counters now, less those at the start (mark: take them). */
static void counters(struct crun *c, bool mark)
{
	if (!c->cl->redis)
		return;
	for (int k = 0; k < c->n; k++) {
		struct cnode *nd = &c->nd[k];
		json_t *st = node_stats(nd), *cl = cluster_of(st);
		long rt = cnum(cl, "roundtrips"), le = cnum(cl, "leases"), tk = cnum(cl, "lease_tokens");
		if (mark) {
			nd->rt0 = rt;
			nd->leases0 = le;
			nd->tok0 = tk;
		} else {
			c->cl->roundtrips += rt - nd->rt0;
			c->cl->leases += le - nd->leases0;
			c->cl->lease_tokens += tk - nd->tok0;
		}
		json_decref(st);
	}
	long calls, proc;
	if (redis_counts(c, &calls, &proc) < 0) {
		snprintf(c->cl->why, sizeof c->cl->why, "redis-cli INFO failed");
		return;
	}
	if (mark) {
		c->calls0 = calls;
		c->proc0 = proc;
	} else {
		c->cl->redis_calls = calls - c->calls0;
		c->cl->redis_processed = proc - c->proc0 - 1;   /* the first INFO */
	}
}

static int start_all(struct crun *c)
{
	if ((c->cl->redis && redis_start(c) < 0) || split_lists(c) < 0)
		return -1;
	for (int k = 0; k < c->n; k++)
		if (node_start(c, &c->nd[k]) < 0)
			return -1;
	return c->cl->redis ? wait_shared(c) : 0;
}

static int run(struct crun *c)
{
	struct vb_result *r = c->r;
	if (start_all(c) < 0)
		return -1;
	for (int k = 0; k < c->n; k++) {
		vb_meter_start(&c->nd[k].m, c->nd[k].pid);
		c->nd[k].metered = true;
	}
	counters(c, true);
	double rcpu0 = c->redis > 0 ? vb_tree_cpu(c->redis) : 0;
	vb_sink_mark(c->s);
	double t0 = vb_now();
	int rc = submit_all(c);
	if (rc == 0)
		rc = follow(c, t0);
	vb_progress_end(c->e);
	for (int k = 0; k < c->n; k++)
		r->delivered += c->nd[k].delivered;
	if (rc == 0 && !vb_sink_wait(c->s, r->delivered, 2.0))
		snprintf(r->note, sizeof r->note, "the sink counted fewer than volley delivered");
	r->seconds = vb_now() - t0;
	if (c->redis > 0)
		c->cl->redis_cpu_s = vb_tree_cpu(c->redis) - rcpu0;
	counters(c, false);
	r->sink_messages = vb_sink_messages(c->s);
	r->sink_rcpts = vb_sink_recipients(c->s);
	vb_result_series(r, c->s);
	return rc;
}

/* Stop every process started here, by PID; CPU and memory of the nodes. */
static void stop_all(struct crun *c)
{
	for (int k = 0; k < c->n; k++) {
		struct cnode *nd = &c->nd[k];
		double cpu = 0;
		long kb = 0;
		if (nd->metered)
			vb_meter_stop(&nd->m, &cpu, &kb);
		c->r->cpu_s += cpu;
		c->r->peak_mem_kb += kb;
		vb_api_close(nd->api);
		nd->api = NULL;
		if (nd->pid > 0)
			vb_stop(nd->pid, 30000);
		nd->pid = 0;
		c->cl->node_s[k] = nd->done_s;
		c->cl->node_n[k] = nd->delivered;
		c->r->bounced += nd->bounced;
	}
	if (c->redis > 0)
		vb_stop(c->redis, 5000);
	c->redis = 0;
}

int vb_run_cluster(const struct vb_env *e, struct vb_sink *s, struct vb_result *r)
{
	struct crun *c = vl_calloc(1, sizeof *c);
	c->e = e;
	c->s = s;
	c->r = r;
	c->n = e->sc->cluster_nodes;
	c->cl = r->cl = vl_calloc(1, sizeof *r->cl);
	c->cl->nodes = c->n;
	c->cl->redis = e->split < 2;
	snprintf(c->dir, sizeof c->dir, "%s", e->dir);
	for (int k = 0; k < c->n; k++)
		c->nd[k].k = k;
	r->messages = e->sc->recipients;
	r->p50_ms = r->p99_ms = -1;
	int rc = run(c);
	stop_all(c);
	long fin = 0;
	for (int k = 0; k < c->n; k++)
		fin += c->nd[k].final;
	r->other = fin - r->delivered - r->bounced;
	r->ran = rc == 0;
	r->ok = rc == 0 && fin == r->messages && r->sink_rcpts == r->delivered;
	if (rc == 0 && !r->ok && !r->note[0])
		snprintf(r->note, sizeof r->note, "sink accepted %ld recipients, the nodes "
			 "delivered %ld", r->sink_rcpts, r->delivered);
	free(c);
	return rc;
}

/* ---- the report ---- */

static double msg_rate(const struct vb_result *r)
{
	return r->seconds > 0 ? (double)r->delivered / r->seconds : 0;
}

static double per_msg(const struct vb_result *r, long n)
{
	return r->delivered > 0 ? (double)n / (double)r->delivered : 0;
}

/* The row named base + the suffix of a cluster row's name ("-2"). */
static const struct vb_result *row_of(const struct vb_result *r, int n, const char *base,
				      const char *sfx)
{
	char name[32];
	snprintf(name, sizeof name, "%s%s", base, sfx);
	for (int i = 0; i < n; i++)
		if (!strcmp(r[i].peer, name))
			return &r[i];
	return NULL;
}

static void redis_lines(const struct vb_result *c)
{
	const struct vb_clures *cl = c->cl;
	printf("  %s: Redis commands a delivered message %.5f (the nodes' %ld round trips: %ld "
	       "leases of %ld tokens in all, heartbeats, connection leases); Redis counted %ld "
	       "from clients (%.5f a message), %ld with its script's own calls (%.5f); "
	       "redis-server %.2f CPU-s (%.1f%% of a core)\n", c->peer,
	       per_msg(c, cl->roundtrips), cl->roundtrips, cl->leases, cl->lease_tokens,
	       cl->redis_calls, per_msg(c, cl->redis_calls), cl->redis_processed,
	       per_msg(c, cl->redis_processed), cl->redis_cpu_s,
	       c->seconds > 0 ? 100 * cl->redis_cpu_s / c->seconds : 0);
	printf("  %s: each node's last final outcome:", c->peer);
	for (int k = 0; k < cl->nodes; k++)
		printf(" %.2f s (%ld)", cl->node_s[k], cl->node_n[k]);
	printf("\n");
	if (cl->why[0])
		printf("  %s: %s\n", c->peer, cl->why);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One round's ratios; false when a run did not account for everything. */
static bool round_line(const struct vb_result *c, const struct vb_result *v,
		       const struct vb_result *nr, double *ratio)
{
	redis_lines(c);
	if (!v || !v->ok || !c->ok || msg_rate(v) <= 0) {
		printf("  %s / volley: no ratio (a run did not account for every message)\n", c->peer);
		return false;
	}
	*ratio = msg_rate(c) / msg_rate(v);
	printf("  %s / %s: throughput %.2fx, messages per CPU-second %.2fx", c->peer, v->peer,
	       *ratio, c->cpu_s > 0 && v->cpu_s > 0 ? ((double)c->delivered / c->cpu_s) /
						    ((double)v->delivered / v->cpu_s) : 0);
	if (nr && nr->ok && msg_rate(nr) > 0)
		printf("; %s / %s (the same nodes without Redis): %.2fx", c->peer, nr->peer,
		       msg_rate(c) / msg_rate(nr));
	printf("\n");
	return true;
}

static void targets(const struct vb_scen *sc, double *ratio, int nr, double ops, bool all)
{
	qsort(ratio, (size_t)nr, sizeof *ratio, cmp_d);
	double med = nr % 2 ? ratio[nr / 2] : (ratio[nr / 2 - 1] + ratio[nr / 2]) / 2;
	printf("cluster / volley (one node): throughput %.2fx%s", med, nr > 1 ? " (median" : "\n");
	if (nr > 1)
		printf(" of %d rounds, %.2f to %.2f)\n", nr, ratio[0], ratio[nr - 1]);
	/* a round that failed settles nothing */
	const char *none = "not settled: a run did not account for every message";
	if (sc->target_cluster > 0)
		printf("target: cluster / one node throughput at least %.2f: %s (%.2f)\n",
		       sc->target_cluster, !all ? none : med >= sc->target_cluster ? "met" : "MISSED",
		       med);
	if (sc->target_redis_ops > 0)
		printf("target: Redis commands a delivered message under %g: %s (%.5f, the most of "
		       "any round)\n", sc->target_redis_ops,
		       !all ? none : ops < sc->target_redis_ops ? "met" : "MISSED", ops);
}

void vb_cluster_report(const struct vb_scen *sc, const struct vb_result *r, int n)
{
	double ratio[16], ops = 0;
	int nr = 0;
	bool all = true;
	printf("cluster: %d nodes sharing one redis-server; the site's rate %.0f/s and "
	       "max_connections %ld for the cluster (volley: the same, one node; no-redis: the "
	       "nodes alone, each with 1/%d of them)\n", sc->cluster_nodes, sc->site_rate,
	       sc->sessions / sc->sink_addrs / sc->egress, sc->cluster_nodes);
	for (int i = 0; i < n && nr < 16; i++) {
		if (strncmp(r[i].peer, "cluster", 7) || !r[i].cl)
			continue;
		const char *sfx = r[i].peer + 7;
		if (!r[i].ran) {
			all = false;
			continue;
		}
		if (per_msg(&r[i], r[i].cl->roundtrips) > ops)
			ops = per_msg(&r[i], r[i].cl->roundtrips);
		if (round_line(&r[i], row_of(r, n, "volley", sfx), row_of(r, n, "no-redis", sfx),
			       &ratio[nr]))
			nr++;
		else
			all = false;
	}
	if (nr)
		targets(sc, ratio, nr, ops, all);
}

void vb_cluster_json(json_t *o, const struct vb_result *r)
{
	const struct vb_clures *cl = r->cl;
	json_t *nodes = json_array();
	if (!cl) {
		json_decref(nodes);
		return;
	}
	for (int k = 0; k < cl->nodes; k++)
		json_array_append_new(nodes, json_pack("{s:I, s:f}", "delivered",
						       (json_int_t)cl->node_n[k], "last_s",
						       cl->node_s[k]));
	json_object_set_new(o, "cluster", json_pack(
		"{s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:o}", "nodes", cl->nodes,
		"redis", cl->redis, "roundtrips", (json_int_t)cl->roundtrips, "leases",
		(json_int_t)cl->leases, "lease_tokens", (json_int_t)cl->lease_tokens,
		"redis_client_commands", (json_int_t)cl->redis_calls, "redis_commands_processed",
		(json_int_t)cl->redis_processed, "roundtrips_per_message",
		per_msg(r, cl->roundtrips), "redis_client_commands_per_message",
		per_msg(r, cl->redis_calls), "redis_processed_per_message",
		per_msg(r, cl->redis_processed), "redis_cpu_s", cl->redis_cpu_s, "per_node", nodes));
}
