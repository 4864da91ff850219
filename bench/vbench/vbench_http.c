/*
 * volleyd's API over its Unix socket, with libcurl: a JSON request, or a
 * file streamed as the body (a million-recipient NDJSON job).
 */
#include "vbench.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct vb_api {
	CURL *c;
	char sock[PATH_MAX];
};

struct acc {
	char *p;
	size_t len, cap;
};

static size_t on_data(char *d, size_t sz, size_t n, void *arg)
{
	struct acc *a = arg;
	size_t len = sz * n;
	if (a->len + len + 1 > a->cap) {
		size_t cap = (a->cap ? a->cap * 2 : 4096) + len;
		char *p = vl_realloc(a->p, cap);
		a->p = p;
		a->cap = cap;
	}
	memcpy(a->p + a->len, d, len);
	a->len += len;
	a->p[a->len] = 0;
	return len;
}

struct vb_api *vb_api_open(const char *sock)
{
	struct vb_api *a = vl_calloc(1, sizeof *a);
	if (!(a->c = curl_easy_init())) {
		free(a);
		return NULL;
	}
	snprintf(a->sock, sizeof a->sock, "%s", sock);
	return a;
}

void vb_api_close(struct vb_api *a)
{
	if (a) {
		curl_easy_cleanup(a->c);
		free(a);
	}
}

/* One request; the parsed JSON answer of a 2xx, else NULL with the status
 * and the answer's text printed. body_file streams a file as the body. */
static json_t *request(struct vb_api *a, const char *method, const char *path,
		       const char *ctype, const char *body, const char *body_file, long *status)
{
	char url[512];
	struct acc acc = { 0 };
	struct curl_slist *h = NULL;
	FILE *f = NULL;
	CURL *c = a->c;

	curl_easy_reset(c);
	snprintf(url, sizeof url, "http://volleyd%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, a->sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &acc);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	/* A wedged daemon fails the run instead of hanging it: a minute without
	 * a byte either way ends the request (an upload moves all the time). */
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	if (ctype) {
		char hdr[128];
		snprintf(hdr, sizeof hdr, "Content-Type: %s", ctype);
		h = curl_slist_append(h, hdr);
		h = curl_slist_append(h, "Expect:");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	}
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	} else if (body_file) {
		struct stat st;
		if (!(f = fopen(body_file, "r")) || fstat(fileno(f), &st) < 0) {
			perror(body_file);
			goto fail;
		}
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READDATA, f);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
	}
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (rc != CURLE_OK) {
		fprintf(stderr, "volley-bench: %s %s: %s\n", method, path, curl_easy_strerror(rc));
		goto fail;
	}
	json_t *j = acc.p ? json_loads(acc.p, 0, NULL) : NULL;
	if (*status / 100 != 2 || !j) {
		fprintf(stderr, "volley-bench: %s %s: HTTP %ld: %s\n", method, path, *status,
			acc.p ? acc.p : "");
		json_decref(j);
		goto fail;
	}
	free(acc.p);
	curl_slist_free_all(h);
	if (f)
		fclose(f);
	return j;
fail:
	free(acc.p);
	curl_slist_free_all(h);
	if (f)
		fclose(f);
	return NULL;
}

json_t *vb_api_get(struct vb_api *a, const char *path)
{
	long st;
	return request(a, "GET", path, NULL, NULL, NULL, &st);
}

json_t *vb_api_post_json(struct vb_api *a, const char *path, const char *body)
{
	long st;
	return request(a, "POST", path, "application/json", body, NULL, &st);
}

json_t *vb_api_post_file(struct vb_api *a, const char *path, const char *file)
{
	long st;
	return request(a, "POST", path, "application/x-ndjson", NULL, file, &st);
}
