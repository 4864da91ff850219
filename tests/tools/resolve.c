/*
 * volley-resolve: the dns/ module on a vl_ring loop, for tests and the
 * benchmark. One JSON line per result on stdout.
 *
 *   volley-resolve [OPTIONS] NAME...      MX of each NAME (TLSA with --tlsa)
 *   volley-resolve [OPTIONS] --script     commands from stdin, one a line:
 *       mx NAME [COUNT]    COUNT lookups of NAME at once (coalescing)
 *       tlsa HOST [PORT]   TLSA of _PORT._tcp.HOST (default port 25)
 *       host NAME          addresses of NAME, no MX (any address kept)
 *       txt NAME           TXT records of NAME
 *       ptr ADDRESS        PTR names of an IPv4 or IPv6 address
 *       wait               until every lookup so far has its answer
 *       sleep MS           run the loop for MS milliseconds
 *       stats              a {"stats": ...} line
 *       shutdown           dns_shutdown(), then wait until quiescent
 *   volley-resolve [OPTIONS] --bench N [--bench-suffix S] [--lookups M]
 *       MX of N distinct names d0S..d(N-1)S, then M lookups over them;
 *       prints one {"bench": ...} line and a stats line.
 *
 * OPTIONS: --server IP:PORT (repeatable), --timeout-ms, --tries, --min-ttl,
 * --max-ttl, --neg-ttl-max, --fail-ttl, --cache-max, --max-inflight, --allow-private,
 * --prefer-ipv6, --family both|4|6, --no-dnssec, --seed, --port (TLSA),
 * --repeat N (each NAME N times), --stats, --inflight W (bench window),
 * --deadline-ms (whole run; default 120000: exit 3 past it).
 * Exit: 0 done, 2 usage, 3 deadline passed.
 */
#include "../../dns/dns.h"
#include "../../common/common.h"

#include <getopt.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_TAG 0
#define TOOL_TAG 1

struct tev {                     /* a timeout of the tool's own */
	bool fired;
} __attribute__((aligned(8)));

struct tool {
	struct vl_ring ring;
	struct dns_resolver *r;
	struct dns_config cfg;
	const char *servers[16];
	unsigned tlsa_port;
	unsigned long repeat, bench, lookups, inflight;
	const char *bench_suffix;
	uint64_t deadline_ms;
	bool tlsa, script, stats, quiet;
	uint64_t outstanding;
	struct tev watchdog, sleeper;
	struct __kernel_timespec wd_ts, sl_ts;
	uint64_t counts[16];         /* bench: results by status */
};

/* ---- output ---- */

static void print_buf(struct vl_buf *b)
{
	vl_buf_appends(b, "\n");
	fwrite(b->p, 1, b->len, stdout);
	fflush(stdout);
	vl_buf_free(b);
}

static void json_flags(struct vl_buf *b, unsigned f)
{
	static const struct { unsigned bit; const char *name; } names[] = {
		{ DNS_ADDR_LOOPBACK, "loopback" }, { DNS_ADDR_PRIVATE, "private" },
		{ DNS_ADDR_LINKLOCAL, "link-local" },
	};
	const char *sep = "";

	vl_buf_appends(b, "[");
	for (size_t i = 0; i < VL_ARRAY_LEN(names); i++)
		if (f & names[i].bit) {
			vl_buf_printf(b, "%s\"%s\"", sep, names[i].name);
			sep = ", ";
		}
	vl_buf_appends(b, "]");
}

static void json_host(struct vl_buf *b, const struct dns_host *h)
{
	char ip[64];

	vl_buf_appends(b, "{\"name\": ");
	vl_buf_json_string(b, h->name);
	vl_buf_appends(b, ", \"canon\": ");
	vl_buf_json_string(b, h->canon);
	vl_buf_printf(b, ", \"pref\": %u, \"ad\": %s, \"addrs\": [", h->pref,
		      h->ad ? "true" : "false");
	for (size_t i = 0; i < h->naddrs; i++) {
		dns_addr_str(&h->addrs[i], ip, sizeof ip);
		vl_buf_printf(b, "%s{\"ip\": \"%s\", \"family\": %d, \"flags\": ", i ? ", " : "",
			      ip, h->addrs[i].family == AF_INET6 ? 6 : 4);
		json_flags(b, h->addrs[i].flags);
		vl_buf_appends(b, "}");
	}
	vl_buf_appends(b, "]}");
}

static void print_mx(const struct dns_mx_result *m)
{
	struct vl_buf b;
	char site[4096];

	vl_buf_init(&b);
	vl_buf_appends(&b, "{\"type\": \"mx\", \"name\": ");
	vl_buf_json_string(&b, m->domain);
	vl_buf_printf(&b, ", \"status\": \"%s\", \"permanent\": %s, \"why\": ",
		      dns_status_name(m->status), dns_status_permanent(m->status) ? "true" : "false");
	vl_buf_json_string(&b, m->why);
	vl_buf_printf(&b, ", \"ttl\": %u, \"ad\": %s, \"mx_ad\": %s, \"implicit\": %s, "
		      "\"partial\": %s, \"site\": ", m->ttl, m->ad ? "true" : "false",
		      m->mx_ad ? "true" : "false", m->implicit ? "true" : "false",
		      m->partial ? "true" : "false");
	dns_site_key(m, site, sizeof site);
	vl_buf_json_string(&b, site);
	vl_buf_appends(&b, ", \"hosts\": [");
	for (size_t i = 0; i < m->nhosts; i++) {
		if (i)
			vl_buf_appends(&b, ", ");
		json_host(&b, &m->hosts[i]);
	}
	vl_buf_appends(&b, "]}");
	print_buf(&b);
}

static void print_tlsa(const struct dns_tlsa_result *t)
{
	struct vl_buf b;

	vl_buf_init(&b);
	vl_buf_appends(&b, "{\"type\": \"tlsa\", \"name\": ");
	vl_buf_json_string(&b, t->qname);
	vl_buf_printf(&b, ", \"status\": \"%s\", \"permanent\": %s, \"why\": ",
		      dns_status_name(t->status), dns_status_permanent(t->status) ? "true" : "false");
	vl_buf_json_string(&b, t->why);
	vl_buf_printf(&b, ", \"ttl\": %u, \"ad\": %s, \"records\": [", t->ttl,
		      t->ad ? "true" : "false");
	for (size_t i = 0; i < t->n; i++) {
		const struct dns_tlsa_rr *rr = &t->rr[i];
		vl_buf_printf(&b, "%s{\"usage\": %u, \"selector\": %u, \"mtype\": %u, \"data\": \"",
			      i ? ", " : "", rr->usage, rr->selector, rr->mtype);
		for (size_t k = 0; k < rr->len; k++)
			vl_buf_printf(&b, "%02x", rr->data[k]);
		vl_buf_appends(&b, "\"}");
	}
	vl_buf_appends(&b, "]}");
	print_buf(&b);
}

static void print_txt(const struct dns_txt_result *t)
{
	struct vl_buf b;

	vl_buf_init(&b);
	vl_buf_appends(&b, "{\"type\": \"txt\", \"name\": ");
	vl_buf_json_string(&b, t->qname);
	vl_buf_printf(&b, ", \"status\": \"%s\", \"why\": ", dns_status_name(t->status));
	vl_buf_json_string(&b, t->why);
	vl_buf_printf(&b, ", \"ttl\": %u, \"ad\": %s, \"records\": [", t->ttl,
		      t->ad ? "true" : "false");
	for (size_t i = 0; i < t->n; i++) {
		vl_buf_appends(&b, i ? ", " : "");
		vl_buf_json_string(&b, memchr(t->rr[i].data, 0, t->rr[i].len) ? "(NUL inside)" :
				   t->rr[i].data);
	}
	vl_buf_appends(&b, "]}");
	print_buf(&b);
}

static void print_ptr(const struct dns_ptr_result *t)
{
	struct vl_buf b;

	vl_buf_init(&b);
	vl_buf_appends(&b, "{\"type\": \"ptr\", \"name\": ");
	vl_buf_json_string(&b, t->qname);
	vl_buf_printf(&b, ", \"status\": \"%s\", \"why\": ", dns_status_name(t->status));
	vl_buf_json_string(&b, t->why);
	vl_buf_printf(&b, ", \"ttl\": %u, \"names\": [", t->ttl);
	for (size_t i = 0; i < t->n; i++) {
		vl_buf_appends(&b, i ? ", " : "");
		vl_buf_json_string(&b, t->names[i]);
	}
	vl_buf_appends(&b, "]}");
	print_buf(&b);
}

static void print_stats(const struct tool *t)
{
	struct dns_stats s;

	dns_get_stats(t->r, &s);
	printf("{\"stats\": {\"queries\": %lu, \"answers\": %lu, \"timeouts\": %lu, "
	       "\"failures\": %lu, \"cache_hits\": %lu, \"coalesced\": %lu, \"expired\": %lu, "
	       "\"evicted\": %lu, \"cache_entries\": %lu, \"mx_requests\": %lu, "
	       "\"tlsa_requests\": %lu, \"in_flight\": %lu, \"waiting\": %lu, "
	       "\"inflight_peak\": %lu}}\n",
	       s.queries, s.answers, s.timeouts, s.failures, s.cache_hits, s.coalesced,
	       s.expired, s.evicted, s.cache_entries, s.mx_requests, s.tlsa_requests,
	       s.in_flight, s.waiting, s.inflight_peak);
	fflush(stdout);
}

/* ---- the loop ---- */

static void on_mx(void *arg, const struct dns_mx_result *m)
{
	struct tool *t = arg;

	t->outstanding--;
	if (t->bench)
		t->counts[m->status < 16 ? m->status : 15]++;
	else if (!t->quiet)
		print_mx(m);
}

static void on_tlsa(void *arg, const struct dns_tlsa_result *res)
{
	struct tool *t = arg;

	t->outstanding--;
	print_tlsa(res);
}

static void on_txt(void *arg, const struct dns_txt_result *res)
{
	struct tool *t = arg;

	t->outstanding--;
	print_txt(res);
}

static void on_ptr(void *arg, const struct dns_ptr_result *res)
{
	struct tool *t = arg;

	t->outstanding--;
	print_ptr(res);
}

static void dispatch(void *arg, struct io_uring_cqe *cqe)
{
	struct tool *t = arg;
	uint64_t ud = io_uring_cqe_get_data64(cqe);

	if ((ud & 7) == DNS_TAG)
		dns_on_cqe(t->r, cqe);
	else if ((ud & 7) == TOOL_TAG)
		((struct tev *)(uintptr_t)(ud & ~(uint64_t)7))->fired = true;
}

static void arm(struct tool *t, struct tev *ev, struct __kernel_timespec *ts, uint64_t ms)
{
	struct io_uring_sqe *sqe = vl_ring_sqe(&t->ring);

	ev->fired = false;
	ts->tv_sec = (long long)(ms / 1000);
	ts->tv_nsec = (long long)(ms % 1000) * 1000000;
	io_uring_prep_timeout(sqe, ts, 0, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ev | TOOL_TAG);
}

static void turn(struct tool *t)
{
	if (vl_ring_wait(&t->ring, dispatch, t) < 0)
		exit(1);
	if (t->watchdog.fired) {
		printf("{\"error\": \"deadline of %lu ms passed\"}\n", (unsigned long)t->deadline_ms);
		fflush(stdout);
		exit(3);
	}
}

static void wait_all(struct tool *t)
{
	while (t->outstanding)
		turn(t);
}

static void sleep_ms(struct tool *t, uint64_t ms)
{
	arm(t, &t->sleeper, &t->sl_ts, ms);
	while (!t->sleeper.fired)
		turn(t);
}

static void ask(struct tool *t, const char *name, bool tlsa, unsigned port)
{
	t->outstanding++;
	if (tlsa)
		dns_resolve_tlsa(t->r, name, port, on_tlsa, t);
	else
		dns_resolve_mx(t->r, name, on_mx, t);
}

/* ---- script ---- */

static void shutdown_resolver(struct tool *t)
{
	dns_shutdown(t->r);
	while (!dns_quiescent(t->r))
		turn(t);
	printf("{\"shutdown\": true, \"outstanding\": %lu}\n", (unsigned long)t->outstanding);
	fflush(stdout);
}

static int script_line(struct tool *t, char *line)
{
	char cmd[16], arg[300];
	unsigned long n = 1;
	int k = sscanf(line, "%15s %299s %lu", cmd, arg, &n);

	if (k < 1 || cmd[0] == '#')
		return 0;
	if (strcmp(cmd, "mx") == 0 && k >= 2) {
		for (unsigned long i = 0; i < n; i++)
			ask(t, arg, false, 0);
	} else if (strcmp(cmd, "tlsa") == 0 && k >= 2) {
		ask(t, arg, true, k >= 3 ? (unsigned)n : 25);
	} else if (strcmp(cmd, "host") == 0 && k >= 2) {
		t->outstanding++;
		dns_resolve_host(t->r, arg, true, on_mx, t);
	} else if (strcmp(cmd, "txt") == 0 && k >= 2) {
		t->outstanding++;
		dns_resolve_txt(t->r, arg, on_txt, t);
	} else if (strcmp(cmd, "ptr") == 0 && k >= 2) {
		struct dns_addr a = { .family = strchr(arg, ':') ? AF_INET6 : AF_INET };
		if (inet_pton(a.family, arg, a.ip) != 1)
			return -1;
		t->outstanding++;
		dns_resolve_ptr(t->r, &a, on_ptr, t);
	} else if (strcmp(cmd, "wait") == 0) {
		wait_all(t);
	} else if (strcmp(cmd, "sleep") == 0 && k >= 2) {
		sleep_ms(t, strtoull(arg, NULL, 10));
	} else if (strcmp(cmd, "stats") == 0) {
		print_stats(t);
	} else if (strcmp(cmd, "shutdown") == 0) {
		shutdown_resolver(t);
	} else {
		fprintf(stderr, "volley-resolve: bad script line: %s", line);
		return -1;
	}
	return 0;
}

static int run_script(struct tool *t)
{
	char line[512];

	while (fgets(line, sizeof line, stdin))
		if (script_line(t, line) < 0)
			return 2;
	wait_all(t);
	return 0;
}

/* ---- benchmark ---- */

static void bench_phase(struct tool *t, unsigned long total, unsigned long names)
{
	char name[300];

	for (unsigned long i = 0; i < total;) {
		while (i < total && t->outstanding < t->inflight) {
			snprintf(name, sizeof name, "d%lu%s", i % names, t->bench_suffix);
			ask(t, name, false, 0);
			i++;
		}
		if (t->outstanding >= t->inflight)
			turn(t);
	}
	wait_all(t);
}

static int run_bench(struct tool *t)
{
	struct dns_stats s0, s1, s2;
	uint64_t t0 = vl_now_ns(), t1, t2;

	dns_get_stats(t->r, &s0);
	bench_phase(t, t->bench, t->bench);
	t1 = vl_now_ns();
	dns_get_stats(t->r, &s1);
	bench_phase(t, t->lookups, t->bench);
	t2 = vl_now_ns();
	dns_get_stats(t->r, &s2);
	double d1 = (double)(t1 - t0) / 1e9, d2 = (double)(t2 - t1) / 1e9;
	printf("{\"bench\": {\"domains\": %lu, \"phase1_s\": %.3f, \"queries\": %lu, "
	       "\"queries_per_s\": %.0f, \"domains_per_s\": %.0f, \"lookups\": %lu, "
	       "\"phase2_s\": %.3f, \"lookups_per_s\": %.0f, \"phase2_queries\": %lu, "
	       "\"ok\": %lu, \"failed\": %lu}}\n",
	       t->bench, d1, s1.queries - s0.queries, (double)(s1.queries - s0.queries) / d1,
	       (double)t->bench / d1, t->lookups, d2, d2 > 0 ? (double)t->lookups / d2 : 0,
	       s2.queries - s1.queries, t->counts[DNS_OK],
	       t->bench + t->lookups - t->counts[DNS_OK]);
	print_stats(t);
	return 0;
}

/* ---- options ---- */

static int usage(void)
{
	fprintf(stderr, "usage: volley-resolve [--server IP:PORT]... [--tlsa [--port N]] "
		"[--script | --bench N [--lookups M] | NAME...] (see tests/tools/resolve.c)\n");
	return 2;
}

static int parse_family(const char *s, enum dns_family *f)
{
	if (!strcmp(s, "both"))
		*f = DNS_FAM_BOTH;
	else if (!strcmp(s, "4"))
		*f = DNS_FAM_V4;
	else if (!strcmp(s, "6"))
		*f = DNS_FAM_V6;
	else
		return -1;
	return 0;
}

static int option(struct tool *t, int opt, const char *v)
{
	struct dns_config *c = &t->cfg;
	unsigned long n = v ? strtoul(v, NULL, 10) : 0;

	switch (opt) {
	case 's':
		if (c->nservers == VL_ARRAY_LEN(t->servers))
			return -1;
		t->servers[c->nservers++] = v;
		break;
	case 'T': c->timeout_ms = (unsigned)n; break;
	case 'R': c->tries = (unsigned)n; break;
	case 'm': c->min_ttl = (uint32_t)n; break;
	case 'M': c->max_ttl = (uint32_t)n; break;
	case 'N': c->neg_ttl_max = (uint32_t)n; break;
	case 'F': c->fail_ttl = (uint32_t)n; break;
	case 'C': c->cache_max = n; break;
	case 'Q': c->max_inflight = (unsigned)n; break;
	case 'P': c->allow_private = true; break;
	case '6': c->prefer_ipv6 = true; break;
	case 'f': return parse_family(v, &c->family);
	case 'D': c->dnssec = false; break;
	case 'S': c->seed = strtoull(v, NULL, 10); break;
	case 't': t->tlsa = true; break;
	case 'p': t->tlsa_port = (unsigned)n; break;
	case 'r': t->repeat = n; break;
	case 'x': t->script = true; break;
	case 'z': t->stats = true; break;
	case 'q': t->quiet = true; break;
	case 'b': t->bench = n; break;
	case 'B': t->bench_suffix = v; break;
	case 'L': t->lookups = n; break;
	case 'I': t->inflight = n ? n : 1; break;
	case 'W': t->deadline_ms = n; break;
	default: return -1;
	}
	return 0;
}

static const struct option opts[] = {
	{ "server", 1, 0, 's' }, { "timeout-ms", 1, 0, 'T' }, { "tries", 1, 0, 'R' },
	{ "min-ttl", 1, 0, 'm' }, { "max-ttl", 1, 0, 'M' }, { "neg-ttl-max", 1, 0, 'N' },
	{ "fail-ttl", 1, 0, 'F' }, { "cache-max", 1, 0, 'C' }, { "max-inflight", 1, 0, 'Q' },
	{ "allow-private", 0, 0, 'P' }, { "prefer-ipv6", 0, 0, '6' },
	{ "family", 1, 0, 'f' }, { "no-dnssec", 0, 0, 'D' }, { "seed", 1, 0, 'S' },
	{ "tlsa", 0, 0, 't' }, { "port", 1, 0, 'p' }, { "repeat", 1, 0, 'r' },
	{ "script", 0, 0, 'x' }, { "stats", 0, 0, 'z' }, { "quiet", 0, 0, 'q' },
	{ "bench", 1, 0, 'b' }, { "bench-suffix", 1, 0, 'B' }, { "lookups", 1, 0, 'L' },
	{ "inflight", 1, 0, 'I' }, { "deadline-ms", 1, 0, 'W' }, { 0, 0, 0, 0 },
};

static int setup(struct tool *t)
{
	char err[256];

	if (vl_ring_init(&t->ring, 256, 4096, 4, 64, err, sizeof err) < 0 ||
	    vl_ring_enable(&t->ring) < 0) {
		fprintf(stderr, "volley-resolve: %s\n", err);
		return -1;
	}
	t->cfg.servers = t->servers;
	if (!(t->r = dns_new(&t->ring, DNS_TAG, &t->cfg, err, sizeof err))) {
		fprintf(stderr, "volley-resolve: %s\n", err);
		return -1;
	}
	arm(t, &t->watchdog, &t->wd_ts, t->deadline_ms);
	return 0;
}

static int run(struct tool *t, int argc, char **argv)
{
	if (t->script)
		return run_script(t);
	if (t->bench)
		return run_bench(t);
	for (unsigned long k = 0; k < t->repeat; k++)
		for (int i = 0; i < argc; i++)
			ask(t, argv[i], t->tlsa, t->tlsa_port);
	wait_all(t);
	return 0;
}

static void teardown(struct tool *t)
{
	if (!dns_quiescent(t->r)) {
		dns_shutdown(t->r);
		while (!dns_quiescent(t->r))
			turn(t);
	}
	dns_free(t->r);
	vl_ring_exit(&t->ring);
}

int main(int argc, char **argv)
{
	static struct tool t;
	int opt, rc;
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("volley-resolve %s\n", VL_VERSION);
		return 0;
	}

	dns_config_default(&t.cfg);
	t.tlsa_port = 25;
	t.repeat = 1;
	t.inflight = 500;
	t.bench_suffix = ".bench.test";
	t.deadline_ms = 120000;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (option(&t, opt, optarg) < 0)
			return usage();
	if (!t.script && !t.bench && optind == argc)
		return usage();
	if (setup(&t) < 0)
		return 1;
	rc = run(&t, argc - optind, argv + optind);
	if (t.stats && !t.bench)
		print_stats(&t);
	teardown(&t);
	return rc;
}
