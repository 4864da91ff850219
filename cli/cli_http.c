/*
 * HTTP to volleyd with libcurl: over the Unix socket, or over TCP with a
 * bearer token. One easy handle for the whole run, so polls reuse the
 * connection.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli.h"

#define DEFAULT_DIR "volley-data"
#define SYSTEM_SOCK "/var/lib/volley/volley.sock"  /* the Debian package's data_dir */

static CURL *curl;

struct xfer {
	const struct cli_req *rq;
	struct cli_resp *rs;
	char *part;              /* a streamed line not yet ended */
	size_t plen, pcap;
	bool aborted;            /* the read function gave up */
};

static void grow(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	char *q = vl_realloc(*p, n);
	*p = q;
	*cap = n;
}

static void append(struct cli_resp *rs, const char *p, size_t n)
{
	grow(&rs->body, &rs->cap, rs->len + n + 1);
	memcpy(rs->body + rs->len, p, n);
	rs->len += n;
	rs->body[rs->len] = 0;
}

static void emit_line(struct xfer *x, char *p, size_t n)
{
	if (n && p[n - 1] == '\r')
		n--;
	if (!n)
		return;
	p[n] = 0;
	x->rq->line(p, n, x->rq->line_arg);
}

/* Split a 2xx answer into lines for the caller; keep anything else whole. */
static size_t on_write(char *p, size_t sz, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = sz * nmemb;
	long code = 0;

	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	if (!x->rq->line || code < 200 || code > 299) {
		append(x->rs, p, n);
		return n;
	}
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t k = nl ? (size_t)(nl - (p + i)) : n - i;
		grow(&x->part, &x->pcap, x->plen + k + 1);
		memcpy(x->part + x->plen, p + i, k);
		x->plen += k;
		i += k + (nl != NULL);
		if (nl) {
			emit_line(x, x->part, x->plen);
			x->plen = 0;
		}
	}
	return n;
}

static size_t on_header(char *p, size_t sz, size_t nmemb, void *arg)
{
	struct cli_resp *rs = arg;
	size_t n = sz * nmemb, k;
	static const char replay[] = "Idempotent-Replayed:", retry[] = "Retry-After:";

	if (n > sizeof(replay) && !strncasecmp(p, replay, sizeof(replay) - 1))
		rs->replayed = memmem(p, n, "true", 4) != NULL;
	if (n > sizeof(retry) && !strncasecmp(p, retry, sizeof(retry) - 1)) {
		for (k = sizeof(retry) - 1; k < n && p[k] == ' '; k++)
			;
		snprintf(rs->retry_after, sizeof(rs->retry_after), "%.*s",
			 (int)strcspn(p + k, "\r\n"), p + k);
	}
	return n;
}

static size_t on_read(char *buf, size_t sz, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = x->rq->read(buf, sz * nmemb, x->rq->read_arg);

	if (n == CLI_READ_ABORT) {
		x->aborted = true;
		return CURL_READFUNC_ABORT;
	}
	return n;
}

/* Ctrl-C ends any transfer; curl calls this at least once a second. */
static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)arg, (void)a, (void)b, (void)c, (void)d;
	return cli_interrupted != 0;
}

/* The socket: --socket, else --data-dir's, else $VOLLEY_SOCKET, else the
 * default data dir's. */
const char *cli_socket_path(const struct cli *c)
{
	static char buf[4096];
	const char *env = getenv("VOLLEY_SOCKET");

	if (c->socket)
		return c->socket;
	if (!c->data_dir && env && *env)
		return env;
	snprintf(buf, sizeof(buf), "%s/volley.sock", c->data_dir ? c->data_dir : DEFAULT_DIR);
	/* No volley-data here: the packaged daemon's (debian/, volleyd(8)). */
	if (!c->data_dir && access(buf, F_OK) < 0 && access(SYSTEM_SOCK, F_OK) == 0)
		return SYSTEM_SOCK;
	return buf;
}

static struct curl_slist *set_target(const struct cli *c, const struct cli_req *rq,
				     struct curl_slist *h)
{
	char url[8192], auth[4096];
	const char *token = c->token ? c->token : getenv("VOLLEY_TOKEN");

	if (c->url) {
		size_t n = strlen(c->url);
		while (n && c->url[n - 1] == '/')
			n--;
		snprintf(url, sizeof(url), "%.*s%s", (int)n, c->url, rq->path);
		if (token && *token) {
			snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
			h = curl_slist_append(h, auth);
		}
	} else {
		curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, cli_socket_path(c));
		snprintf(url, sizeof(url), "http://localhost%s", rq->path);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	return h;
}

static struct curl_slist *set_body(const struct cli_req *rq, struct xfer *x,
				   struct curl_slist *h)
{
	char ct[128];

	if (!strcmp(rq->method, "POST"))
		curl_easy_setopt(curl, CURLOPT_POST, 1L);
	else if (strcmp(rq->method, "GET"))
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, rq->method);
	if (rq->read) {
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, x);
		h = curl_slist_append(h, "Transfer-Encoding: chunked");
	} else if (!strcmp(rq->method, "POST")) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
	}
	/* No body, no type (curl would claim a form). */
	snprintf(ct, sizeof(ct), "Content-Type:%s%s", rq->ctype ? " " : "",
		 rq->ctype ? rq->ctype : "");
	h = curl_slist_append(h, ct);
	/* The daemon reads the body at once; do not wait for 100-continue. */
	return curl_slist_append(h, "Expect:");
}

static void set_options(const struct cli_req *rq, struct xfer *x)
{
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "volley/" VL_VERSION);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	if (!rq->endless) {
		/* A daemon that stops talking for a minute is gone. */
		curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
	}
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, x->rs);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
}

/* What was tried, why it failed, and where the daemon's log is. */
static int unreachable(const struct cli *c, CURLcode rc, const char *errbuf)
{
	if (c->url) {
		cli_err("cannot reach volleyd at %s: %s", c->url,
			*errbuf ? errbuf : curl_easy_strerror(rc));
		cli_err("is it running with api.listen set? Its log: data_dir/volleyd.log, "
			"or under systemd: journalctl -u volleyd");
		return CLI_UNREACHABLE;
	}
	const char *sock = cli_socket_path(c), *slash = strrchr(sock, '/');
	bool there = access(sock, F_OK) == 0;
	if (there && access(sock, R_OK | W_OK) < 0) {
		cli_err("cannot reach volleyd at %s: permission denied", sock);
		cli_err("the socket is for its owner and group: join the group "
			"(the Debian package's is volley) or use sudo");
		return CLI_UNREACHABLE;
	}
	/* The data dir is the socket's folder unless api.socket moved it. */
	const char *dir = c->data_dir ? c->data_dir : slash ? sock : ".";
	int dlen = c->data_dir || !slash ? (int)strlen(dir) : slash == sock ? 1 : (int)(slash - sock);
	cli_err("cannot reach volleyd at %s: %s", sock, there ? "connection refused (a socket "
		"left by a volleyd that stopped?)" : "no such socket");
	cli_err("is it running? start it with: volleyd --data-dir %.*s; its log: "
		"%.*s/volleyd.log (with --foreground: its stderr; under systemd: "
		"journalctl -u volleyd)", dlen, dir, dlen, dir);
	return CLI_UNREACHABLE;
}

/* Print the daemon's error as "volley: <field>: <message>"; the field only
 * once when the message names it already. */
static void print_error(const struct cli_resp *rs)
{
	json_t *j = json_loadb(rs->body ? rs->body : "", rs->len, 0, NULL);
	json_t *e = json_object_get(j, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *field = json_string_value(json_object_get(e, "field"));

	if (!msg) {
		int n = rs->body ? (int)strcspn(rs->body, "\r\n") : 0;
		cli_err("HTTP %ld%s%.*s", rs->status, n ? ": " : "", n, rs->body);
	} else if (field && *field && !strstr(msg, field)) {
		cli_err("%s: %s", field, msg);
	} else {
		cli_err("%s", msg);
	}
	if (rs->status == 503 && rs->retry_after[0])
		cli_err("retry after %s s", rs->retry_after);
	json_decref(j);
}

static int outcome(const struct cli *c, CURLcode rc, struct xfer *x, const char *errbuf)
{
	struct cli_resp *rs = x->rs;

	if (x->plen)
		emit_line(x, x->part, x->plen);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &rs->status);
	if (x->aborted)
		return CLI_USAGE;
	if (rc == CURLE_ABORTED_BY_CALLBACK && cli_interrupted)
		return CLI_INTERRUPTED;
	/* An early answer to an upload is still the daemon's word. */
	if (rs->status >= 300) {
		print_error(rs);
		return CLI_FAILED;
	}
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
	    (rc == CURLE_OPERATION_TIMEDOUT && !rs->status))
		return unreachable(c, rc, errbuf);
	if (rc != CURLE_OK) {
		cli_err("connection to volleyd failed: %s", *errbuf ? errbuf : curl_easy_strerror(rc));
		return CLI_UNREACHABLE;
	}
	return CLI_OK;
}

int cli_request(const struct cli *c, const struct cli_req *rq, struct cli_resp *rs)
{
	struct xfer x = {.rq = rq, .rs = rs};
	struct curl_slist *h = NULL;
	char errbuf[CURL_ERROR_SIZE] = "", idem[256];

	memset(rs, 0, sizeof(*rs));
	if (!curl && (curl_global_init(CURL_GLOBAL_DEFAULT) || !(curl = curl_easy_init()))) {
		cli_err("cannot initialise libcurl");
		return CLI_FAILED;
	}
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	set_options(rq, &x);
	h = set_target(c, rq, h);
	h = set_body(rq, &x, h);
	if (rq->idem_key) {
		snprintf(idem, sizeof(idem), "Idempotency-Key: %s", rq->idem_key);
		h = curl_slist_append(h, idem);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	CURLcode rc = curl_easy_perform(curl);
	int r = outcome(c, rc, &x, errbuf);
	curl_slist_free_all(h);
	free(x.part);
	return r;
}

void cli_resp_free(struct cli_resp *rs)
{
	free(rs->body);
	rs->body = NULL;
	rs->len = rs->cap = 0;
}

static json_t *call_json(const struct cli *c, const struct cli_req *rq, int *rc)
{
	struct cli_resp rs;
	json_error_t e;
	json_t *j = NULL;

	*rc = cli_request(c, rq, &rs);
	if (*rc == CLI_OK) {
		j = json_loadb(rs.body ? rs.body : "", rs.len, 0, &e);
		if (!j) {
			cli_err("volleyd answered %s %s with malformed JSON: %s",
				rq->method, rq->path, e.text);
			*rc = CLI_FAILED;
		}
	}
	cli_resp_free(&rs);
	return j;
}

json_t *cli_get_json(const struct cli *c, const char *path, int *rc)
{
	struct cli_req rq = {.method = "GET", .path = path};

	return call_json(c, &rq, rc);
}

json_t *cli_post_json(const struct cli *c, const char *path, int *rc)
{
	struct cli_req rq = {.method = "POST", .path = path};

	return call_json(c, &rq, rc);
}

json_t *cli_call_json(const struct cli *c, const char *method, const char *path, int *rc)
{
	struct cli_req rq = {.method = method, .path = path};

	return call_json(c, &rq, rc);
}

/* Percent-encodes all but RFC 3986's unreserved characters, so a value
 * cannot reach another path or query parameter. */
char *cli_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *p = vl_malloc(3 * strlen(s) + 1), *q = p;

	for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
		if (isalnum(*u) || strchr("-._~", *u)) {
			*q++ = (char)*u;
		} else {
			*q++ = '%';
			*q++ = hex[*u >> 4];
			*q++ = hex[*u & 15];
		}
	}
	*q = 0;
	return p;
}

char *cli_job_path(const char *id, const char *suffix)
{
	char *esc = cli_escape(id);
	size_t n = strlen(esc) + strlen(suffix) + 16;
	char *p = vl_malloc(n);

	snprintf(p, n, "/v1/jobs/%s%s", esc, suffix);
	free(esc);
	return p;
}

void cli_http_cleanup(void)
{
	if (curl) {
		curl_easy_cleanup(curl);
		curl_global_cleanup();
		curl = NULL;
	}
}
