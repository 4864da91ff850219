/*
 * The policy fetcher: one thread, libcurl's multi interface, any number of
 * fetches at once. The HTTPS rules are RFC 8461 3.3's: the server's
 * certificate must be valid for mta-sts.<domain>, a 200 answer only (no
 * redirects), text/plain, and the sender bounds time and size.
 */
#include "sts.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fetch {
	struct fetch *next;
	struct sts_fetcher *f;
	char domain[256];
	char url[320];
	char ca_file[1024];
	struct curl_slist *resolve;
	sts_fetch_fn fn;
	void *arg;
	CURL *easy;
	char *buf;
	size_t len;
	bool over;                   /* the body passed STS_FETCH_MAX */
	char errbuf[CURL_ERROR_SIZE];
};

struct sts_fetcher {
	unsigned port;
	CURLM *multi;
	pthread_t th;
	pthread_mutex_t mu;
	struct fetch *inbox;         /* under mu */
	bool stop;                   /* under mu */
	struct fetch *active;        /* the thread's own */
};

static void finish(struct fetch *q, bool ok, const char *why)
{
	struct sts_fetch_result r = { .domain = q->domain, .ok = ok, .body = q->buf,
				      .len = q->len };

	if (!ok)
		snprintf(r.why, sizeof r.why, "%s", why);
	q->fn(q->arg, &r);
	if (q->easy) {
		curl_multi_remove_handle(q->f->multi, q->easy);
		curl_easy_cleanup(q->easy);
	}
	curl_slist_free_all(q->resolve);
	free(q->buf);
	free(q);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct fetch *q = arg;
	size_t bytes = size * n;

	if (q->len + bytes > STS_FETCH_MAX) {
		q->over = true;
		return 0;            /* curl stops with a write error */
	}
	q->buf = vl_realloc(q->buf, q->len + bytes + 1);
	memcpy(q->buf + q->len, p, bytes);
	q->len += bytes;
	return bytes;
}

static bool start(struct fetch *q)
{
	CURL *e = curl_easy_init();

	if (!e)
		return false;
	q->easy = e;
	curl_easy_setopt(e, CURLOPT_URL, q->url);
	curl_easy_setopt(e, CURLOPT_RESOLVE, q->resolve);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (q->ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, q->ca_file);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)STS_FETCH_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "volley/" VL_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, q);
	return curl_multi_add_handle(q->f->multi, e) == CURLM_OK;
}

static void done(struct fetch *q, CURLcode rc)
{
	char why[700];
	long status = 0;
	const char *type = NULL;

	curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(q->easy, CURLINFO_CONTENT_TYPE, &type);
	if (q->over)
		snprintf(why, sizeof why, "%s: the policy is over %d octets", q->url,
			 STS_FETCH_MAX);
	else if (rc != CURLE_OK)
		snprintf(why, sizeof why, "%s: %s", q->url,
			 q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
	else if (status != 200)
		snprintf(why, sizeof why, "%s: HTTP status %ld (only 200 is a policy)", q->url,
			 status);
	else if (!type || strncasecmp(type, "text/plain", 10) != 0)
		snprintf(why, sizeof why, "%s: served as %s, not text/plain", q->url,
			 type ? type : "(no type)");
	else {
		finish(q, true, NULL);
		return;
	}
	finish(q, false, why);
}

static void unlink_active(struct sts_fetcher *f, struct fetch *q)
{
	struct fetch **pp = &f->active;

	while (*pp && *pp != q)
		pp = &(*pp)->next;
	if (*pp)
		*pp = q->next;
}

/* Take new requests from the inbox; true when stopping. */
static bool take(struct sts_fetcher *f)
{
	pthread_mutex_lock(&f->mu);
	struct fetch *q = f->inbox;
	bool stop = f->stop;
	f->inbox = NULL;
	pthread_mutex_unlock(&f->mu);
	while (q) {
		struct fetch *next = q->next;
		if (stop || !start(q)) {
			finish(q, false, stop ? "shutting down" : "cannot start a transfer");
		} else {
			q->next = f->active;
			f->active = q;
		}
		q = next;
	}
	return stop;
}

static void *run(void *arg)
{
	struct sts_fetcher *f = arg;
	int running, left;
	CURLMsg *m;

	vl_thread_name("vl-mtasts");
	while (!take(f)) {
		curl_multi_perform(f->multi, &running);
		while ((m = curl_multi_info_read(f->multi, &left))) {
			struct fetch *q = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
			CURLcode rc = m->data.result;
			unlink_active(f, q);
			done(q, rc);
		}
		curl_multi_poll(f->multi, NULL, 0, 1000, NULL);
	}
	while (f->active) {
		struct fetch *q = f->active;
		f->active = q->next;
		finish(q, false, "shutting down");
	}
	return NULL;
}

struct sts_fetcher *sts_fetcher_new(unsigned port, char *err, size_t errlen)
{
	struct sts_fetcher *f = vl_calloc(1, sizeof *f);

	curl_global_init(CURL_GLOBAL_DEFAULT);
	f->port = port ? port : 443;
	f->multi = curl_multi_init();
	pthread_mutex_init(&f->mu, NULL);
	if (!f->multi || pthread_create(&f->th, NULL, run, f) != 0) {
		snprintf(err, errlen, "MTA-STS fetcher: cannot start");
		if (f->multi)
			curl_multi_cleanup(f->multi);
		pthread_mutex_destroy(&f->mu);
		free(f);
		return NULL;
	}
	return f;
}

/* "mta-sts.example.com:443:192.0.2.1,[2001:db8::1]" */
static struct curl_slist *resolve_list(const char *host, unsigned port,
				       const char *const *addrs, size_t n)
{
	struct vl_buf b;
	struct curl_slist *l;

	vl_buf_init(&b);
	vl_buf_printf(&b, "%s:%u:", host, port);
	for (size_t i = 0; i < n; i++)
		vl_buf_printf(&b, strchr(addrs[i], ':') ? "%s[%s]" : "%s%s", i ? "," : "",
			      addrs[i]);
	vl_buf_append(&b, "", 1);
	l = curl_slist_append(NULL, b.p);
	vl_buf_free(&b);
	return l;
}

void sts_fetch(struct sts_fetcher *f, const char *domain, const char *const *addrs,
	       size_t naddrs, const char *ca_file, sts_fetch_fn fn, void *arg)
{
	struct fetch *q = vl_calloc(1, sizeof *q);
	char host[280];

	q->f = f;
	q->fn = fn;
	q->arg = arg;
	snprintf(q->domain, sizeof q->domain, "%s", domain);
	snprintf(q->ca_file, sizeof q->ca_file, "%s", ca_file ? ca_file : "");
	if (!naddrs || strlen(domain) > 245 || strpbrk(domain, "/:@?#[] ")) {
		finish(q, false, naddrs ? "not a domain name" : "no address for the policy host");
		return;
	}
	snprintf(host, sizeof host, "mta-sts.%s", domain);
	if (f->port == 443)
		snprintf(q->url, sizeof q->url, "https://%s/.well-known/mta-sts.txt", host);
	else
		snprintf(q->url, sizeof q->url, "https://%s:%u/.well-known/mta-sts.txt", host,
			 f->port);
	q->resolve = resolve_list(host, f->port, addrs, naddrs);
	pthread_mutex_lock(&f->mu);
	q->next = f->inbox;
	f->inbox = q;
	pthread_mutex_unlock(&f->mu);
	curl_multi_wakeup(f->multi);
}

void sts_fetcher_free(struct sts_fetcher *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	f->stop = true;
	pthread_mutex_unlock(&f->mu);
	curl_multi_wakeup(f->multi);
	pthread_join(f->th, NULL);
	curl_multi_cleanup(f->multi);
	pthread_mutex_destroy(&f->mu);
	free(f);
	curl_global_cleanup();
}
