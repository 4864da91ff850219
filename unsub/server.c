/*
 * The listener: one libmicrohttpd daemon per listen address, each with a
 * small pool of threads (epoll), bounded: connections in all and per
 * client address, an idle timeout, 16 KiB of memory per connection (the
 * request head must fit), bodies of at most UNS_BODY_MAX octets. Every
 * answer is queued once the request is whole (libmicrohttpd closes a
 * connection answered before its body was read).
 *
 * A POST with a good token suppresses the address (fsync'd by the
 * suppression list before the 200) and writes an Unsubscribe event the
 * first time; a repeated POST is 200 again and writes nothing. A GET never
 * changes anything: link scanners fetch URLs.
 */
#include "unsub.h"
#include "../message/message.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#define MAX_DAEMONS 16
#define DISCARD_MAX (64 * 1024)  /* body octets read past UNS_BODY_MAX before hanging up */

enum result { R_UNSUBSCRIBED, R_REPEAT, R_PAGE, R_MALFORMED, R_FORGED, R_BAD_BODY,
	      R_TOO_LARGE, R_METHOD, R_NOT_FOUND, R_ERROR, R_N };
static const char *const result_name[R_N] = {
	"unsubscribed", "repeat", "page", "malformed", "forged", "bad_body", "too_large",
	"method", "not_found", "error",
};

struct uns_server {
	const struct cfg_unsubscribe *cfg;
	struct sched_suppress *sup;
	struct sched_events *ev;
	struct msg_unsub_keys keys;
	char base[MSG_UNSUB_BASE_MAX + 1];     /* the path tokens go under */
	struct MHD_Daemon *d[MAX_DAEMONS];
	size_t nd;
	char *cert_pem, *key_pem;
	_Atomic uint64_t count[R_N];
};

/* A request's body, gathered until it is whole. */
struct req {
	size_t len, seen;
	bool too_large;
	char body[UNS_BODY_MAX];
};

/* ---- pages: short, the same for every address, nothing revealed ---- */

#define PAGE_HEAD "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">" \
	"<meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribe</title>" \
	"</head><body>\n"
#define PAGE_TAIL "</body></html>\n"

static const char CONFIRM[] = PAGE_HEAD
	"<p>Unsubscribe from these mailings?</p>\n"
	"<form method=\"post\" action=\"\">"
	"<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
	"<button type=\"submit\">Unsubscribe</button></form>\n" PAGE_TAIL;
static const char DONE[] = PAGE_HEAD "<p>You are unsubscribed: no more of these mailings "
	"will be sent to you.</p>\n" PAGE_TAIL;
static const char RETRY[] = PAGE_HEAD "<p>Sorry, this could not be done just now. "
	"Please try again later.</p>\n" PAGE_TAIL;

static enum MHD_Result answer(struct uns_server *s, struct MHD_Connection *c, unsigned status,
			      enum result r, const char *type, const char *body)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);

	atomic_fetch_add(&s->count[r], 1);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Content-Security-Policy",
				"default-src 'none'; form-action 'self'");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, "Allow", "GET, POST");
	enum MHD_Result rc = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result text(struct uns_server *s, struct MHD_Connection *c, unsigned status,
			    enum result r, const char *body)
{
	return answer(s, c, status, r, "text/plain; charset=utf-8", body);
}

/* The event (type, time, job, recipient, domain), written now: nothing
 * else may flush the events log for a while. */
static void event(struct uns_server *s, const struct msg_unsub_tok *t)
{
	const char *at = strrchr(t->email, '@');
	struct sched_event ev = { .type = "Unsubscribe", .time = vl_wall_time(), .job = t->job,
				  .recipient = t->email, .domain = at ? at + 1 : NULL };
	struct vl_buf b;

	if (!s->ev)
		return;
	vl_buf_init(&b);
	sched_event_format(&ev, &b);
	sched_events_append(s->ev, b.p, b.len);
	sched_events_flush(s->ev);
	vl_buf_free(&b);
}

static enum MHD_Result unsubscribe(struct uns_server *s, struct MHD_Connection *c,
				   const struct msg_unsub_tok *t)
{
	int rc = sched_suppress_add(s->sup, t->email, "unsubscribe", t->job);

	if (rc < 0 && errno == EINVAL) {     /* an address the list cannot hold */
		vl_log(VL_LOG_WARN, "unsubscribe: job %s recipient %u: the suppression list "
		       "refuses the address", t->job, t->index);
		return text(s, c, MHD_HTTP_BAD_REQUEST, R_MALFORMED, "This link is not valid.\n");
	}
	if (rc < 0) {
		vl_log(VL_LOG_ERROR, "unsubscribe: cannot add to the suppression list: %s",
		       strerror(errno));
		return answer(s, c, MHD_HTTP_SERVICE_UNAVAILABLE, R_ERROR,
			      "text/html; charset=utf-8", RETRY);
	}
	if (rc == 0) {
		vl_log(VL_LOG_INFO, "unsubscribe: job %s recipient %u unsubscribed", t->job,
		       t->index);
		event(s, t);
	}
	return answer(s, c, MHD_HTTP_OK, rc == 0 ? R_UNSUBSCRIBED : R_REPEAT,
		      "text/html; charset=utf-8", DONE);
}

/* The request is whole: decide. */
static enum MHD_Result respond(struct uns_server *s, struct MHD_Connection *c, const char *url,
			       const char *method, struct req *r)
{
	const char *tok;
	size_t len;
	struct msg_unsub_tok t;
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");

	if (uns_path_token(s->base, url, &tok, &len) < 0)
		return text(s, c, MHD_HTTP_NOT_FOUND, R_NOT_FOUND, "Not found.\n");
	if (!get && !post)
		return text(s, c, MHD_HTTP_METHOD_NOT_ALLOWED, R_METHOD,
			    "Only GET and POST are served here.\n");
	enum msg_unsub_verdict v = msg_unsub_verify(tok, len, &s->keys, &t);
	if (v == MSG_UNSUB_MALFORMED)
		return text(s, c, MHD_HTTP_BAD_REQUEST, R_MALFORMED, "This link is not valid.\n");
	if (v != MSG_UNSUB_OK)
		return text(s, c, MHD_HTTP_FORBIDDEN, R_FORGED, "This link is not valid.\n");
	if (get)
		return answer(s, c, MHD_HTTP_OK, R_PAGE, "text/html; charset=utf-8", CONFIRM);
	if (r->too_large)
		return text(s, c, MHD_HTTP_CONTENT_TOO_LARGE, R_TOO_LARGE, "Too large.\n");
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	if (!uns_form_one_click(ct, r->body, r->len))
		return text(s, c, MHD_HTTP_BAD_REQUEST, R_BAD_BODY,
			    "Expected List-Unsubscribe=One-Click (RFC 8058).\n");
	return unsubscribe(s, c, &t);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *size, void **con_cls)
{
	struct uns_server *s = cls;
	struct req *r = *con_cls;
	(void)version;

	if (!r) {
		*con_cls = vl_calloc(1, sizeof *r);
		return MHD_YES;
	}
	if (*size) {
		/* read on to answer 413 (a client sending its body reads no answer
		 * before it is done), but not forever */
		if ((r->seen += *size) > DISCARD_MAX)
			return MHD_NO;
		if (r->too_large || r->len + *size > sizeof r->body) {
			r->too_large = true;
		} else {
			memcpy(r->body + r->len, data, *size);
			r->len += *size;
		}
		*size = 0;
		return MHD_YES;
	}
	return respond(s, c, url, method, r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char m[512];
	size_t n;
	(void)cls;

	vsnprintf(m, sizeof m, fmt, ap);
	n = strlen(m);
	while (n && (m[n - 1] == '\n' || m[n - 1] == '\r'))
		m[--n] = '\0';
	vl_log(VL_LOG_DEBUG, "unsubscribe: libmicrohttpd: %s", m);
}

/* ---- start and stop ---- */

static char *read_pem(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct vl_buf b;
	char chunk[4096];
	size_t n;

	if (!f) {
		snprintf(err, errlen, "unsubscribe: %s: %s", path, strerror(errno));
		return NULL;
	}
	vl_buf_init(&b);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < 1024 * 1024)
		vl_buf_append(&b, chunk, n);
	fclose(f);
	vl_buf_append(&b, "", 1);
	return b.p;
}

static int listen_on(const struct cfg_listen *l, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, fd = -1;

	if (vl_sockaddr_parse(l->host, l->port, &ss, &sl) == 0)
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 256) < 0) {
		snprintf(err, errlen, "unsubscribe: cannot listen on %s: %s", l->text,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static struct MHD_Daemon *daemon_on(struct uns_server *s, int fd)
{
	const struct cfg_unsubscribe *c = s->cfg;
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem tls[] = {
		{ MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem },
		{ MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem },
		{ MHD_OPTION_END, 0, NULL },
	};

	if (s->cert_pem)
		flags |= MHD_USE_TLS;
	return MHD_start_daemon(flags, 0, NULL, NULL, handle, s,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
				MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->threads,
				MHD_OPTION_NOTIFY_COMPLETED, completed, s,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				(unsigned)c->max_connections_per_ip,
				MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)((c->timeout_ms + 999) / 1000),
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
				MHD_OPTION_ARRAY, s->cert_pem ? tls : tls + 2,
				MHD_OPTION_END);
}

struct uns_server *uns_start(const struct cfg_unsubscribe *c, struct sched_suppress *sup,
			     struct sched_events *ev, char *err, size_t errlen)
{
	struct uns_server *s;

	if (!c->on || !c->nlisten)
		return NULL;
	s = vl_calloc(1, sizeof *s);
	s->cfg = c;
	s->sup = sup;
	s->ev = ev;
	s->keys = (struct msg_unsub_keys){ .key = c->secret, .keylen = c->secret_len,
					   .prev = c->previous, .prevlen = c->previous_len };
	if (uns_base_path(c->base_url, s->base, sizeof s->base) < 0) {
		snprintf(err, errlen, "unsubscribe.base_url: not an https URL");
		goto fail;
	}
	if (*c->cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		snprintf(err, errlen, "unsubscribe.cert: this libmicrohttpd has no TLS; "
			 "serve plain HTTP behind a TLS reverse proxy");
		goto fail;
	}
	if (*c->cert && (!(s->cert_pem = read_pem(c->cert, err, errlen)) ||
			 !(s->key_pem = read_pem(c->key, err, errlen))))
		goto fail;
	for (size_t i = 0; i < c->nlisten && i < MAX_DAEMONS; i++) {
		int fd = listen_on(&c->listen[i], err, errlen);
		if (fd < 0)
			goto fail;
		if (!(s->d[s->nd] = daemon_on(s, fd))) {
			close(fd);
			snprintf(err, errlen, "unsubscribe: cannot start the HTTP server on %s%s",
				 c->listen[i].text, s->cert_pem ? " (cert or key refused?)" : "");
			goto fail;
		}
		s->nd++;
	}
	vl_log(VL_LOG_INFO, "unsubscribe: listening on %zu address%s for %s/<token>", s->nd,
	       s->nd == 1 ? "" : "es", c->base_url);
	return s;
fail:
	uns_stop(s);
	return NULL;
}

void uns_stop(struct uns_server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nd; i++)
		MHD_stop_daemon(s->d[i]);      /* closes its listening socket too */
	if (s->key_pem)
		explicit_bzero(s->key_pem, strlen(s->key_pem));
	free(s->cert_pem);
	free(s->key_pem);
	free(s);
}

void uns_metrics(void *arg, struct vl_buf *out)
{
	struct uns_server *s = arg;
	char lab[48];

	for (int r = 0; r < R_N; r++) {
		snprintf(lab, sizeof lab, "{result=\"%s\"}", result_name[r]);
		vl_prom_metric(out, "volley_unsubscribe_requests_total", "counter", r ? NULL :
			       "Requests to the one-click unsubscribe endpoint by result.", lab,
			       (double)atomic_load(&s->count[r]));
	}
}
