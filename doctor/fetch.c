/*
 * The MTA-STS policy fetch of `volley doctor`: one blocking libcurl easy
 * transfer, made as volleyd's fetcher (sts/fetch.c) makes it: https only,
 * no redirects (RFC 8461 3.3), TLS 1.2 or later, the certificate verified
 * for mta-sts.DOMAIN, the address volley's resolver found, 10 s, at most
 * TLS_STS_POLICY_MAX octets, status 200 and text/plain.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../common/common.h"
#include "../tls/tls.h"
#include "doctor.h"

struct body {
	char *buf;
	size_t len, cap;
	bool over;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t bytes = size * n;

	if (b->len + bytes > b->cap) {
		b->over = true;
		return 0;                /* curl stops with a write error */
	}
	memcpy(b->buf + b->len, p, bytes);
	b->len += bytes;
	return bytes;
}

int doc_sts_fetch(const char *domain, const struct doc_ip *ip, const char *ca_file,
		  char *out, size_t cap, size_t *len, char *err, size_t errlen)
{
	char url[400], resolve[400], addr[64], cerr[CURL_ERROR_SIZE] = "";
	struct body b = { .buf = out, .cap = cap ? cap - 1 : 0 };
	long status = 0;
	const char *type = NULL;
	CURL *e = curl_easy_init();

	if (!e || !cap || !inet_ntop(ip->family, ip->ip, addr, sizeof addr)) {
		snprintf(err, errlen, "cannot start the fetch");
		curl_easy_cleanup(e);
		return -1;
	}
	snprintf(url, sizeof url, "https://mta-sts.%s/.well-known/mta-sts.txt", domain);
	snprintf(resolve, sizeof resolve, ip->family == AF_INET6 ? "mta-sts.%s:443:[%s]" :
		 "mta-sts.%s:443:%s", domain, addr);
	struct curl_slist *rl = curl_slist_append(NULL, resolve);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_RESOLVE, rl);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (ca_file && ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "volley-doctor/" VL_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
	CURLcode rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &type);
	int ret = -1;
	if (b.over)
		snprintf(err, errlen, "%s: the policy is over %zu octets", url, b.cap);
	else if (rc != CURLE_OK)
		snprintf(err, errlen, "%s: %s", url, cerr[0] ? cerr : curl_easy_strerror(rc));
	else if (status != 200)
		snprintf(err, errlen, "%s: HTTP status %ld (only 200 is a policy)", url, status);
	else if (!type || strncasecmp(type, "text/plain", 10))
		snprintf(err, errlen, "%s: served as %s, not text/plain", url, type ? type : "(no type)");
	else
		ret = 0;
	out[b.len] = '\0';
	*len = b.len;
	curl_slist_free_all(rl);
	curl_easy_cleanup(e);
	return ret;
}
