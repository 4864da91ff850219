/*
 * volley-drive: drives the delivery engine through its C interface (the one
 * the scheduler will call) until the API and scheduler exist. Generates
 * messages, submits them all, waits for every result, prints a summary and
 * optionally every recipient's result as a JSON line. Used by the engine's
 * end-to-end tests and benchmark.
 *
 *   volley-drive --route 127.0.0.1:2525 [--route ...] [--messages N]
 *       [--rcpts N] [--size BYTES] [--tls POLICY] [--ca FILE]
 *       [--auth USER:PASS] [--implicit-tls] [--max-conns N] [--max-per-conn N]
 *       [--max-rcpts-per-txn N] [--workers N] [--helo NAME]
 *       [--timeout NAME=DUR]... [--8bit] [--smtputf8] [--submitters N]
 *       [--results]
 */
#include "../../engine/engine.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct drive {
	struct eng_route routes[32];
	int nroutes;
	uint64_t messages, rcpts, size;
	bool eightbit, smtputf8, results;
	pthread_mutex_t lock;          /* results print from several workers */
	atomic_ulong done, delivered, transient, permanent, maybe;
};

struct submitter {
	pthread_t tid;
	struct engine *e;
	struct msg *msgs;
	uint64_t from, to;
};

struct msg {
	struct eng_msg m;
	char **rcpts;
	struct iovec body[3];
	char head[256];
	struct drive *d;
	uint64_t n;
};

static const char *status_name[] = {"delivered", "transient", "permanent"};

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void on_result(struct eng_msg *em, size_t i, const struct eng_result *r)
{
	struct msg *m = (struct msg *)em;
	struct drive *d = m->d;
	atomic_ulong *c[] = {&d->delivered, &d->transient, &d->permanent};

	atomic_fetch_add(c[r->status], 1);
	if (r->maybe_delivered)
		atomic_fetch_add(&d->maybe, 1);
	if (!d->results)
		return;
	pthread_mutex_lock(&d->lock);
	printf("{\"msg\": %llu, \"rcpt\": ", (unsigned long long)m->n);
	json_str(stdout, em->rcpts[i]);
	printf(", \"status\": \"%s\", \"code\": %d, \"enhanced\": ", status_name[r->status], r->code);
	json_str(stdout, r->enhanced);
	printf(", \"text\": ");
	json_str(stdout, r->text);
	printf(", \"stage\": \"%s\", \"maybe_delivered\": %s, \"peer\": ", r->stage,
	       r->maybe_delivered ? "true" : "false");
	json_str(stdout, r->peer);
	printf(", \"tls\": ");
	if (r->tls_version) {
		printf("{\"version\": ");
		json_str(stdout, r->tls_version);
		printf(", \"cipher\": ");
		json_str(stdout, r->tls_cipher);
		printf(", \"verified\": %s}", r->tls_verified ? "true" : "false");
	} else {
		printf("null");
	}
	printf("}\n");
	pthread_mutex_unlock(&d->lock);
}

static void on_done(struct eng_msg *em)
{
	struct msg *m = (struct msg *)em;
	atomic_fetch_add(&m->d->done, 1);
}

/* One message: a small personalised head, then a shared body of `size`
 * octets (CRLF lines of 63 octets, some starting with a dot). */
static void make_msg(struct msg *m, struct drive *d, uint64_t n, const char *body,
		     size_t bodylen)
{
	m->d = d;
	m->n = n;
	m->rcpts = vl_calloc(d->rcpts, sizeof *m->rcpts);
	for (uint64_t i = 0; i < d->rcpts; i++) {
		m->rcpts[i] = vl_malloc(64);
		snprintf(m->rcpts[i], 64, "%s%llu.%llu@drive.test",
			 d->smtputf8 ? "m\xc3\xbcller" : "user",
			 (unsigned long long)n, (unsigned long long)i);
	}
	int hl = snprintf(m->head, sizeof m->head,
			  "From: <sender@drive.test>\r\nTo: <%s>\r\nSubject: message %llu\r\n"
			  "Message-ID: <%llu@drive.test>\r\n\r\n", m->rcpts[0],
			  (unsigned long long)n, (unsigned long long)n);
	m->body[0] = (struct iovec){m->head, (size_t)hl};
	m->body[1] = (struct iovec){(void *)body, bodylen};
	m->m = (struct eng_msg){
		.route = &d->routes[n % (uint64_t)d->nroutes], .mail_from = "bounce@drive.test",
		.rcpts = (const char *const *)m->rcpts, .nrcpt = d->rcpts, .body = m->body,
		.nbody = 2, .eightbit = d->eightbit, .smtputf8 = d->smtputf8,
		.on_result = on_result, .on_done = on_done,
	};
}

/* Exactly size octets of CRLF lines; the last one may be cut short (no
 * final CRLF), which the engine must complete for DATA. */
static char *make_body(size_t size, bool eightbit, size_t *len)
{
	char *b = vl_malloc(size + 80);
	size_t n = 0;

	while (n < size) {
		int line = (int)(n / 78);
		n += (size_t)sprintf(b + n, "%s%s line %06d of the test body, padding padding padding pad\r\n",
				     line % 10 == 3 ? "." : "x", eightbit ? "\xc3\xa9" : "e", line);
	}
	*len = size;
	return b;
}

static int timeout_opt(struct eng_config *c, const char *arg)
{
	char name[32];
	const char *eq = strchr(arg, '=');
	uint64_t ms;

	if (!eq || (size_t)(eq - arg) >= sizeof name || vl_parse_duration_ms(eq + 1, &ms) < 0)
		return -1;
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	struct { const char *n; uint64_t *v; } t[] = {
		{"connect", &c->t.connect}, {"greeting", &c->t.greeting}, {"helo", &c->t.helo},
		{"tls", &c->t.tls}, {"mail", &c->t.mail}, {"rcpt", &c->t.rcpt},
		{"data", &c->t.data}, {"data_term", &c->t.data_term}, {"idle", &c->t.idle},
		{"quit", &c->t.quit},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(name, t[i].n) == 0) {
			*t[i].v = ms;
			return 0;
		}
	return -1;
}

/* Several threads hand messages over at once: the workers' inboxes are
 * multi-producer queues, and this exercises them. */
static void *submit_range(void *arg)
{
	struct submitter *s = arg;

	for (uint64_t i = s->from; i < s->to; i++)
		eng_submit(s->e, &s->msgs[i].m);
	return NULL;
}

static long rss_kb(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void usage(void)
{
	fputs("usage: volley-drive --route ADDR:PORT [--route ...] [--messages N] [--rcpts N]\n"
	      "  [--size BYTES] [--tls none|may|encrypt|dane|dane-only|verify] [--ca FILE]\n"
	      "  [--auth USER:PASS] [--implicit-tls] [--max-conns N] [--max-per-conn N] [--max-rcpts-per-txn N]\n"
	      "  [--workers N] [--helo NAME] [--timeout NAME=DUR]... [--8bit] [--smtputf8]\n"
	      "  [--submitters N] [--results]\n", stderr);
}

int main(int argc, char **argv)
{
	static struct drive d = {.messages = 1, .rcpts = 1, .size = 4096};
	struct eng_config cfg;
	enum tls_policy tls = TLS_POLICY_MAY;
	uint64_t max_conns = 50, max_per_conn = 1000, v, submitters = 1;
	bool implicit_tls = false;
	char auth[512] = "", err[256];
	const char *routes[32];
	int nroutes = 0, opt;
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("volley-drive %s\n", VL_VERSION);
		return 0;
	}
	static const struct option opts[] = {
		{"route", 1, 0, 'r'}, {"messages", 1, 0, 'm'}, {"rcpts", 1, 0, 'n'},
		{"size", 1, 0, 's'}, {"tls", 1, 0, 't'}, {"ca", 1, 0, 'c'}, {"auth", 1, 0, 'a'},
		{"max-conns", 1, 0, 'C'}, {"max-per-conn", 1, 0, 'P'},
		{"max-rcpts-per-txn", 1, 0, 'R'}, {"workers", 1, 0, 'w'}, {"helo", 1, 0, 'h'},
		{"timeout", 1, 0, 'T'}, {"8bit", 0, 0, '8'}, {"smtputf8", 0, 0, 'u'},
		{"results", 0, 0, 'j'}, {"submitters", 1, 0, 'S'}, {"implicit-tls", 0, 0, 'I'},
		{0, 0, 0, 0},
	};

	eng_config_defaults(&cfg);
	snprintf(cfg.helo, sizeof cfg.helo, "drive.volley.test");
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool bad = false;
		switch (opt) {
		case 'r': if (nroutes < 32) routes[nroutes++] = optarg; else bad = true; break;
		case 'm': bad = vl_parse_u64(optarg, &d.messages) < 0; break;
		case 'n': bad = vl_parse_u64(optarg, &d.rcpts) < 0 || d.rcpts == 0; break;
		case 's': bad = vl_parse_u64(optarg, &d.size) < 0; break;
		case 't': bad = tls_policy_parse(optarg, &tls) < 0; break;
		case 'c': snprintf(cfg.ca_file, sizeof cfg.ca_file, "%s", optarg); break;
		case 'a': snprintf(auth, sizeof auth, "%s", optarg); bad = !strchr(auth, ':'); break;
		case 'C': bad = vl_parse_u64(optarg, &max_conns) < 0 || !max_conns; break;
		case 'P': bad = vl_parse_u64(optarg, &max_per_conn) < 0 || !max_per_conn; break;
		case 'R': bad = vl_parse_u64(optarg, &v) < 0 || !v; cfg.max_rcpts_per_txn = (unsigned)v; break;
		case 'w': bad = vl_parse_u64(optarg, &v) < 0; cfg.workers = (int)v; break;
		case 'h': snprintf(cfg.helo, sizeof cfg.helo, "%s", optarg); break;
		case 'T': bad = timeout_opt(&cfg, optarg) < 0; break;
		case '8': d.eightbit = true; break;
		case 'u': d.smtputf8 = true; break;
		case 'j': d.results = true; break;
		case 'I': implicit_tls = true; break;
		case 'S': bad = vl_parse_u64(optarg, &submitters) < 0 || !submitters ||
				submitters > 64; break;
		default: bad = true;
		}
		if (bad) {
			fprintf(stderr, "volley-drive: bad option %s %s\n", argv[optind - 1],
				optarg ? optarg : "");
			usage();
			return 2;
		}
	}
	if (nroutes == 0) {
		usage();
		return 2;
	}
	for (int i = 0; i < nroutes; i++) {
		struct eng_route *r = &d.routes[i];
		if (eng_route_parse(r, routes[i], err, sizeof err) < 0) {
			fprintf(stderr, "volley-drive: %s\n", err);
			return 2;
		}
		r->tls = tls;
		r->implicit_tls = implicit_tls;
		r->max_connections = (unsigned)max_conns;
		r->max_messages_per_connection = (unsigned)max_per_conn;
		if (auth[0]) {
			char *colon = strchr(auth, ':');
			snprintf(r->auth_user, sizeof r->auth_user, "%.*s", (int)(colon - auth), auth);
			snprintf(r->auth_pass, sizeof r->auth_pass, "%s", colon + 1);
		}
		d.nroutes++;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	pthread_mutex_init(&d.lock, NULL);
	size_t bodylen;
	char *body = make_body(d.size, d.eightbit, &bodylen);
	struct msg *msgs = vl_calloc(d.messages, sizeof *msgs);
	for (uint64_t i = 0; i < d.messages; i++)
		make_msg(&msgs[i], &d, i, body, bodylen);

	struct engine *e = eng_new(&cfg, err, sizeof err);
	if (!e) {
		fprintf(stderr, "volley-drive: %s\n", err);
		return 1;
	}
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	uint64_t t0 = vl_now_ns();
	struct submitter sub[64];
	for (uint64_t i = 0; i < submitters; i++) {
		sub[i] = (struct submitter){.e = e, .msgs = msgs,
			.from = d.messages * i / submitters,
			.to = d.messages * (i + 1) / submitters};
		pthread_create(&sub[i].tid, NULL, submit_range, &sub[i]);
	}
	for (uint64_t i = 0; i < submitters; i++)
		pthread_join(sub[i].tid, NULL);
	/* Sample connections and memory while it runs: memory per session is
	 * the RSS growth over the baseline at the peak of open sessions. */
	long base_rss = rss_kb(), peak_rss = base_rss;
	size_t peak_conns = 0, peak_on[64] = { 0 };
	unsigned nw = eng_workers(e) < 64 ? eng_workers(e) : 64;
	while (atomic_load(&d.done) < d.messages) {
		usleep(10000);
		size_t c = eng_open_connections(e);
		for (unsigned i = 0; i < nw; i++) {
			size_t ci = eng_worker_connections(e, i);
			if (ci > peak_on[i])
				peak_on[i] = ci;
		}
		long r = rss_kb();
		if (c > peak_conns)
			peak_conns = c;
		if (r > peak_rss)
			peak_rss = r;
	}
	uint64_t t1 = vl_now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	eng_stop(e, 5000);
	eng_free(e);

	double secs = (double)(t1 - t0) / 1e9;
	double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
			      ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
			      ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	fprintf(stderr, "{\"messages\": %llu, \"recipients\": %llu, \"delivered\": %lu, "
		"\"transient\": %lu, \"permanent\": %lu, \"maybe_delivered\": %lu, "
		"\"seconds\": %.3f, \"msgs_per_s\": %.0f, \"cpu_us_per_msg\": %.1f, "
		"\"peak_conns\": %zu, \"rss_base_kb\": %ld, \"rss_peak_kb\": %ld, "
		"\"kb_per_conn\": %.1f, \"peak_conns_by_worker\": [",
		(unsigned long long)d.messages, (unsigned long long)(d.messages * d.rcpts),
		atomic_load(&d.delivered), atomic_load(&d.transient), atomic_load(&d.permanent),
		atomic_load(&d.maybe), secs, (double)d.messages / secs,
		cpu * 1e6 / (double)d.messages, peak_conns, base_rss, peak_rss,
		peak_conns ? (double)(peak_rss - base_rss) / (double)peak_conns : 0.0);
	for (unsigned i = 0; i < nw; i++)
		fprintf(stderr, "%s%zu", i ? ", " : "", peak_on[i]);
	fprintf(stderr, "]}\n");
	for (uint64_t i = 0; i < d.messages; i++) {
		for (uint64_t j = 0; j < d.rcpts; j++)
			free(msgs[i].rcpts[j]);
		free(msgs[i].rcpts);
	}
	free(msgs);
	free(body);
	return atomic_load(&d.delivered) == d.messages * d.rcpts ? 0 : 1;
}
