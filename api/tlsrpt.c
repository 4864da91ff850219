/*
 * TLS-RPT (RFC 8460): the reports as the API shows them, and the sender,
 * a thread of its own. Every minute it writes the day's aggregates
 * (rpt_store_flush); once a UTC day is over, it sends each domain's
 * report to the rua URIs of the domain's "_smtp._tls" TXT record: an
 * https POST of the gzip'd JSON (libcurl, the host resolved by volley's
 * own resolver), or a message with the gzip'd JSON attached, submitted as
 * a transactional job through intake like any other (so it is spooled,
 * DKIM-signed and retried). What went out is marked on disk (rpt_store
 * marks), so a restart sends nothing twice.
 */
#include "api.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#define FLUSH_MS 60000            /* a restart loses at most this much */
#define DNS_WAIT_MS 15000
#define HTTP_TIMEOUT_S 10L
#define RETRY_S 3600              /* a failed send is tried again after */
#define KEEP_DAYS 7               /* unsent days go after this many */
#define MAX_DAYS 64               /* day folders looked at per round */

struct api_tlsrpt {
	const struct cfg *cfg;
	struct sched *sc;
	struct sched_spool *spool;
	struct engine *eng;
	struct rpt_store *st;
	pthread_t tid;
	pthread_mutex_t mu;           /* stop flag; one send at a time (send_mu) */
	pthread_cond_t cv;
	pthread_mutex_t send_mu;
	bool stop;
	json_t *retry_at;             /* "day/domain" -> when to try again (wall s) */
	char from[320];
};

/* why gets the text (cut to fit); returns rc. */
static int say(char *why, size_t whylen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int say(char *why, size_t whylen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- waiting for the engine's resolver ---- */

/* Shared by the caller and the worker's callback: whoever comes last frees. */
struct dns_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	bool done;
	enum dns_status status;
	json_t *answers;              /* TXT strings, or addresses as text */
};

static struct dns_wait *wait_new(void)
{
	struct dns_wait *w = vl_calloc(1, sizeof *w);

	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->refs = 2;
	w->answers = json_array();
	return w;
}

static void wait_put(struct dns_wait *w)
{
	pthread_mutex_lock(&w->mu);
	bool last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (!last)
		return;
	json_decref(w->answers);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

static void wait_done(struct dns_wait *w, enum dns_status st)
{
	pthread_mutex_lock(&w->mu);
	w->status = st;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	wait_put(w);
}

/* false on a timeout (the status is then DNS_TIMEOUT). */
static bool wait_for(struct dns_wait *w)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DNS_WAIT_MS / 1000;
	pthread_mutex_lock(&w->mu);
	while (!w->done && pthread_cond_timedwait(&w->cv, &w->mu, &ts) != ETIMEDOUT)
		;
	bool done = w->done;
	if (!done)
		w->status = DNS_TIMEOUT;
	pthread_mutex_unlock(&w->mu);
	return done;
}

static void on_txt(void *arg, const struct dns_txt_result *r)
{
	struct dns_wait *w = arg;

	for (size_t i = 0; r->status == DNS_OK && i < r->n && i < 16; i++)
		if (strlen(r->rr[i].data) == r->rr[i].len)   /* a NUL inside: not ours */
			json_array_append_new(w->answers, json_stringn(r->rr[i].data, r->rr[i].len));
	wait_done(w, r->status);
}

static void on_host(void *arg, const struct dns_mx_result *r)
{
	struct dns_wait *w = arg;
	char ip[INET6_ADDRSTRLEN];

	for (size_t i = 0; r->status == DNS_OK && i < r->nhosts; i++)
		for (size_t k = 0; k < r->hosts[i].naddrs; k++) {
			const struct dns_addr *a = &r->hosts[i].addrs[k];
			if (inet_ntop(a->family, a->ip, ip, sizeof ip))
				json_array_append_new(w->answers, json_string(ip));
		}
	wait_done(w, r->status);
}

/* TXT strings of name (new reference) and the status. */
static json_t *resolve(struct api_tlsrpt *t, const char *name, bool txt, enum dns_status *st)
{
	struct dns_wait *w = wait_new();

	if (txt)
		eng_resolve_txt(t->eng, name, on_txt, w);
	else
		eng_resolve_host(t->eng, name, false, on_host, w);
	wait_for(w);
	pthread_mutex_lock(&w->mu);
	*st = w->status;
	json_t *a = w->done ? json_deep_copy(w->answers) : json_array();
	pthread_mutex_unlock(&w->mu);
	wait_put(w);
	return a;
}

/* ---- the report, gzip'd ---- */

static int gzip(const char *in, size_t n, struct vl_buf *out)
{
	z_stream z = { 0 };

	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	size_t cap = deflateBound(&z, n) + 64;
	vl_buf_reset(out);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)vl_buf_reserve(out, cap);
	z.avail_out = (uInt)cap;
	int rc = deflate(&z, Z_FINISH);
	out->len = z.total_out;
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -1;
}

static struct rpt_meta meta_of(const struct api_tlsrpt *t)
{
	return (struct rpt_meta){ t->cfg->tls_rpt.organization, t->cfg->tls_rpt.contact,
				  t->cfg->hostname };
}

/* ---- https ---- */

static size_t discard(char *p, size_t sz, size_t n, void *arg)
{
	(void)p, (void)arg;
	return sz * n;
}

/* host and port of an https URI; false when it has none we can use. */
static bool uri_host(const char *uri, char *host, size_t len, unsigned *port)
{
	const char *a = uri + 8, *e = a + strcspn(a, "/?#");
	const char *colon = memchr(a, ':', (size_t)(e - a));

	*port = 443;
	if (memchr(a, '@', (size_t)(e - a)) || *a == '[')
		return false;         /* no user info; IPv6 literals go unresolved */
	if (colon) {
		*port = (unsigned)strtoul(colon + 1, NULL, 10);
		e = colon;
	}
	if (e == a || (size_t)(e - a) >= len || !*port || *port > 65535)
		return false;
	snprintf(host, len, "%.*s", (int)(e - a), a);
	return true;
}

static int post(struct api_tlsrpt *t, const char *uri, const struct vl_buf *gz, char *why,
		size_t whylen)
{
	char host[256], resolve_line[400], errbuf[CURL_ERROR_SIZE] = "";
	unsigned port;
	enum dns_status st;

	if (!uri_host(uri, host, sizeof host, &port))
		return say(why, whylen, -1, "no host in %s", uri);
	json_t *addrs = resolve(t, host, false, &st);
	if (!json_array_size(addrs)) {
		json_decref(addrs);
		return say(why, whylen, -1, "%s: no address (%s)", host, dns_status_name(st));
	}
	const char *ip = json_string_value(json_array_get(addrs, 0));
	snprintf(resolve_line, sizeof resolve_line, strchr(ip, ':') ? "%s:%u:[%s]" : "%s:%u:%s",
		 host, port, ip);
	json_decref(addrs);
	struct curl_slist *res = curl_slist_append(NULL, resolve_line);
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/tlsrpt+gzip");
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, uri);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_RESOLVE, res);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, gz->p);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)gz->len);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, HTTP_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	if (*t->cfg->tls_rpt.ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, t->cfg->tls_rpt.ca_file);
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	curl_slist_free_all(res);
	curl_slist_free_all(hdr);
	if (rc != CURLE_OK)
		return say(why, whylen, -1, "%s", *errbuf ? errbuf : curl_easy_strerror(rc));
	if (status < 200 || status > 299)
		return say(why, whylen, -1, "HTTP %ld", status);
	say(why, whylen, 0, "HTTP %ld", status);
	return 0;
}

/* ---- mailto: a job through intake ---- */

static void base64_lines(const struct vl_buf *in, struct vl_buf *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = (const unsigned char *)in->p;
	size_t col = 0;

	for (size_t i = 0; i < in->len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t k = in->len - i;
		if (k > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (k > 2)
			v |= p[i + 2];
		char q[4] = { tab[v >> 18], tab[(v >> 12) & 63], k > 1 ? tab[(v >> 6) & 63] : '=',
			      k > 2 ? tab[v & 63] : '=' };
		vl_buf_append(out, q, 4);
		if ((col += 4) == 76) {
			vl_buf_appends(out, "\n");
			col = 0;
		}
	}
	if (col)
		vl_buf_appends(out, "\n");
}

/* The message of RFC 8460 5.3, as intake's content string. */
static void compose(struct api_tlsrpt *t, const char *to, const char *date, int64_t day,
		    const char *domain, const struct vl_buf *gz, struct vl_buf *m)
{
	const char *sub = t->cfg->hostname;
	char id[600], bnd[64];

	rpt_report_id(date, domain, sub, id, sizeof id);
	snprintf(bnd, sizeof bnd, "=_tlsrpt.%llx", (unsigned long long)vl_now_ns());
	vl_buf_printf(m, "From: %s\nTo: %s\nSubject: Report Domain: %s Submitter: %s "
		      "Report-ID: <%s>\nTLS-Report-Domain: %s\nTLS-Report-Submitter: %s\n"
		      "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=\"tlsrpt\";"
		      " boundary=\"%s\"\n\nThis is a TLS report (RFC 8460).\n\n--%s\n"
		      "Content-Type: text/plain; charset=us-ascii\n\nThe attachment is the TLS "
		      "report of %s for %s (UTC), from %s.\n\n--%s\nContent-Type: "
		      "application/tlsrpt+gzip\nContent-Transfer-Encoding: base64\n"
		      "Content-Disposition: attachment;\n filename=\"%s!%s!%lld!%lld.json.gz\"\n\n",
		      t->from, to, domain, sub, id, domain, sub, bnd, bnd, domain, date, sub, bnd,
		      sub, domain, (long long)(day * 86400), (long long)(day * 86400 + 86399));
	base64_lines(gz, m);
	vl_buf_printf(m, "--%s--\n", bnd);
}

static int mail(struct api_tlsrpt *t, const char *uri, const char *date, int64_t day,
		const char *domain, const struct vl_buf *gz, char *why, size_t whylen)
{
	char to[RPT_URI_MAX];
	struct vl_buf m;
	json_t *accept, *meta;

	snprintf(to, sizeof to, "%.*s", (int)strcspn(uri + 7, "?"), uri + 7);
	vl_buf_init(&m);
	compose(t, to, date, day, domain, gz, &m);
	vl_buf_append(&m, "", 1);
	json_t *job = json_pack("{s:s, s:s, s:[{s:s}], s:s, s:s}", "envelope_sender", t->from,
				"content", m.p, "recipients", "email", to,
				"campaign", SCHED_TLSRPT_CAMPAIGN, "priority", "transactional");
	vl_buf_free(&m);
	char *body = json_dumps(job, JSON_COMPACT);
	json_decref(job);
	struct api_intake *in = api_intake_new(t->cfg, t->spool, false, NULL);
	api_intake_feed(in, body, strlen(body));
	free(body);
	int rc = api_intake_finish(in, &accept, &meta);
	if (rc < 0) {
		say(why, whylen, 0, "%s", api_intake_error(in)->message);
	} else {
		say(why, whylen, 0, "job %s", api_intake_id(in));
		sched_job_add(t->sc, api_intake_id(in), meta);
		json_decref(meta);
		json_decref(accept);
	}
	api_intake_free(in);
	return rc;
}

/* ---- one report ---- */

/* The rua URIs of domain's record into r: 1 found, 0 none (permanent:
 * no record, not exactly one TLSRPTv1 record, or a bad one), -1 try later. */
static int lookup(struct api_tlsrpt *t, const char *domain, struct rpt_record *r, char *why,
		  size_t whylen)
{
	char name[300], err[200] = "";
	enum dns_status st;
	size_t i, found = 0;
	json_t *v;

	snprintf(name, sizeof name, "_smtp._tls.%s", domain);
	json_t *txt = resolve(t, name, true, &st);
	json_array_foreach(txt, i, v) {
		const char *s = json_string_value(v);
		if (strncmp(s, "v=TLSRPTv1", 10))
			continue;     /* RFC 8460 3: records of other kinds are discarded */
		found++;
		if (rpt_record_parse(s, strlen(s), r, err, sizeof err) < 0)
			r->nrua = 0;
	}
	json_decref(txt);
	if (st != DNS_OK && !dns_status_permanent(st))
		return say(why, whylen, -1, "%s: %s", name, dns_status_name(st));
	if (found != 1 || !r->nrua)
		return say(why, whylen, 0, "%s: %s", name, found > 1 ? "more than one TLSRPTv1 record"
				: *err ? err : "no TLSRPTv1 record");
	return 1;
}

/* Send (day, domain)'s report to every rua: {"domain", "date", "sent",
 * "done", "rua": [{"uri", "ok", "detail"}], "why"}; sent: one rua took
 * it; done: nothing is left to try (sent, or no record to send to);
 * *later: try again. */
static json_t *send_one(struct api_tlsrpt *t, int64_t day, const char *domain, bool *later)
{
	char date[11], why[400] = "";
	struct rpt_record r;
	struct rpt_meta mt = meta_of(t);
	json_t *stored = rpt_store_get(t->st, day, domain), *list = json_array();
	bool any = false;

	rpt_day_format(day, date);
	*later = false;
	int found = stored ? lookup(t, domain, &r, why, sizeof why) : 0;
	if (!stored)
		snprintf(why, sizeof why, "nothing recorded");
	*later = found < 0;
	if (found > 0) {
		json_t *rep = rpt_report_json(stored, &mt);
		char *text = json_dumps(rep, JSON_COMPACT);
		struct vl_buf gz;
		vl_buf_init(&gz);
		bool zipped = gzip(text, strlen(text), &gz) == 0;
		for (size_t i = 0; i < r.nrua && zipped; i++) {
			char d[400];
			bool https = !strncasecmp(r.rua[i], "https:", 6);
			int rc = https ? post(t, r.rua[i], &gz, d, sizeof d)
				       : mail(t, r.rua[i], date, day, domain, &gz, d, sizeof d);
			any |= rc == 0;
			json_array_append_new(list, json_pack("{s:s, s:b, s:s}", "uri", r.rua[i],
							      "ok", rc == 0, "detail", d));
		}
		*later = !any;
		vl_buf_free(&gz);
		free(text);
		json_decref(rep);
	}
	json_decref(stored);
	return json_pack("{s:s, s:s, s:b, s:b, s:o, s:s}", "domain", domain, "date", date, "sent",
			 any, "done", any || (found == 0 && stored), "rua", list, "why", why);
}

/* Send and mark it on disk, unless it must be tried again. */
static json_t *send_mark(struct api_tlsrpt *t, int64_t day, const char *domain, bool *later)
{
	pthread_mutex_lock(&t->send_mu);
	json_t *res = send_one(t, day, domain, later);
	if (!*later && json_is_true(json_object_get(res, "done"))) {
		char *what = json_dumps(res, JSON_COMPACT);
		rpt_store_mark_sent(t->st, day, domain, what);
		free(what);
	}
	pthread_mutex_unlock(&t->send_mu);
	vl_log(*later ? VL_LOG_WARN : VL_LOG_INFO, "tls-rpt: %s %s: %s%s",
	       json_string_value(json_object_get(res, "date")), domain,
	       *later ? "will try again: " : "", json_string_value(json_object_get(res, "why")));
	return res;
}

/* ---- the thread ---- */

/* Every domain of a finished day, then the day goes once all are sent. */
static void send_day(struct api_tlsrpt *t, int64_t day)
{
	json_t *doms = rpt_store_domains(t->st, day), *v;
	double now = vl_wall_time();
	bool pending = false;
	size_t i;

	json_array_foreach(doms, i, v) {
		const char *dom = json_string_value(v);
		char key[300];
		snprintf(key, sizeof key, "%lld/%s", (long long)day, dom);
		if (rpt_store_sent(t->st, day, dom))
			continue;
		json_t *at = json_object_get(t->retry_at, key);
		if (at && json_real_value(at) > now) {
			pending = true;
			continue;
		}
		bool later;
		json_decref(send_mark(t, day, dom, &later));
		if (later)
			json_object_set_new(t->retry_at, key, json_real(now + RETRY_S));
		pending |= later;
	}
	json_decref(doms);
	if (!pending)
		rpt_store_remove_day(t->st, day);
}

static void round_(struct api_tlsrpt *t)
{
	int64_t days[MAX_DAYS], today = rpt_day_of(vl_wall_time());
	size_t n = rpt_store_days(t->st, today, days, MAX_DAYS);

	for (size_t i = 0; i < n; i++) {
		if (days[i] < today - KEEP_DAYS || !t->cfg->tls_rpt.send)
			rpt_store_remove_day(t->st, days[i]);   /* not sent in a week */
		else
			send_day(t, days[i]);
	}
}

static bool stopping(struct api_tlsrpt *t, uint64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	pthread_mutex_lock(&t->mu);
	while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &ts) != ETIMEDOUT)
		;
	bool stop = t->stop;
	pthread_mutex_unlock(&t->mu);
	return stop;
}

static void *run(void *arg)
{
	struct api_tlsrpt *t = arg;

	vl_thread_name("vl-tlsrpt");
	do {
		rpt_store_flush(t->st);
		round_(t);
	} while (!stopping(t, FLUSH_MS));
	return NULL;
}

struct api_tlsrpt *api_tlsrpt_start(const struct cfg *c, struct sched *sc,
				    struct sched_spool *spool, struct engine *eng,
				    struct rpt_store *st, char *err, size_t errlen)
{
	struct api_tlsrpt *t = vl_calloc(1, sizeof *t);

	*t = (struct api_tlsrpt){ .cfg = c, .sc = sc, .spool = spool, .eng = eng, .st = st };
	if (*c->tls_rpt.from)
		snprintf(t->from, sizeof t->from, "%s", c->tls_rpt.from);
	else
		snprintf(t->from, sizeof t->from, "tlsrpt-noreply@%s", c->hostname);
	t->retry_at = json_object();
	pthread_mutex_init(&t->mu, NULL);
	pthread_mutex_init(&t->send_mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (pthread_create(&t->tid, NULL, run, t) != 0) {
		snprintf(err, errlen, "tls-rpt: cannot start the report thread");
		json_decref(t->retry_at);
		free(t);
		return NULL;
	}
	return t;
}

void api_tlsrpt_stop(struct api_tlsrpt *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->tid, NULL);
	json_decref(t->retry_at);
	pthread_mutex_destroy(&t->mu);
	pthread_mutex_destroy(&t->send_mu);
	pthread_cond_destroy(&t->cv);
	free(t);
}

static json_t *refuse(struct api_error *e, int status, const char *code, const char *field,
		      const char *msg)
{
	e->status = status;
	snprintf(e->code, sizeof e->code, "%s", code);
	snprintf(e->field, sizeof e->field, "%s", field ? field : "");
	snprintf(e->message, sizeof e->message, "%s", msg);
	return NULL;
}

json_t *api_tlsrpt_answer(struct api_tlsrpt *t, const char *domain, const char *date,
			  bool send, struct api_error *e)
{
	char name[254];
	int64_t day = rpt_day_of(vl_wall_time());

	if (!t)
		return refuse(e, 404, "not_found", NULL, "TLS reporting is off: the configuration "
			      "has no tls_rpt = { organization; contact; }");
	if (!domain || vl_domain_norm(domain, name) < 0)
		return refuse(e, 400, domain ? "invalid_field" : "missing_field", "domain",
			      "domain: expected a domain name (letters, digits, '-', '_', '.')");
	if (date && rpt_day_parse(date, &day) < 0)
		return refuse(e, 400, "invalid_field", "date", "date: expected YYYY-MM-DD, a real date");
	if (send) {
		bool later;
		rpt_store_flush(t->st);
		json_t *res = send_mark(t, day, name, &later);
		if (!strcmp(json_string_value(json_object_get(res, "why")), "nothing recorded")) {
			json_decref(res);
			return refuse(e, 404, "not_found", NULL, "nothing was recorded for this "
				      "domain on this day");
		}
		return res;
	}
	json_t *stored = rpt_store_get(t->st, day, name);
	if (!stored)
		return refuse(e, 404, "not_found", NULL, "nothing was recorded for this domain on "
			      "this day");
	struct rpt_meta mt = meta_of(t);
	json_t *rep = rpt_report_json(stored, &mt);
	json_decref(stored);
	return rep ? rep : refuse(e, 500, "internal", NULL, "the stored aggregate is malformed");
}
