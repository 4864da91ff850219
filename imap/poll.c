/*
 * The feedback mailboxes' poller: one thread ("vl-imap") for every
 * mailbox, each polled every `poll` (docs/feedback.md). libcurl connects,
 * negotiates TLS (implicit, or STARTTLS it must get: CURLUSESSL_ALL; TLS
 * 1.2 or newer, the certificate and host name verified) and logs in
 * (CURLOPT_CONNECT_ONLY); the session's commands are ours, sent and read
 * with curl_easy_send/recv and parse.c, so that messages are fetched with
 * BODY.PEEK[] (no \Seen) and literals are framed exactly.
 *
 * Per new UID, in order: the size; the message (when not over
 * feedback.max_message_size); fb_parse; a report is stored (a
 * deterministic name: a re-fetch after a crash is skipped by the store),
 * THEN the `processed` action, THEN the UID state advances (tmp, fsync,
 * rename, fsync of the folder). A non-report gets the `other` action.
 */
#include "imap.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../feedback/feedback.h"

#define SEARCH_BATCH  256          /* UIDs taken per SEARCH */
#define CMD_TIMEOUT_MS 60000       /* the server silent this long: an error */
#define CONNECT_TIMEOUT_S 30
#define BACKOFF_MAX_MS (15 * 60 * 1000)
#define WAIT_SLICE_MS 200          /* how often a wait looks at stop */

struct mbox {
	const struct cfg_mailbox *c;
	char base[512], folder[256];
	bool implicit;
	char state_path[4096];
	bool state_loaded;
	uint32_t validity, last;       /* the durable state */
	uint64_t next_ms, backoff_ms;
	bool failing;                  /* an error episode is on (logged once) */
	_Atomic uint64_t fetched, reports, other, errors;
	_Atomic int64_t last_success;  /* unix seconds, 0: never */
};

struct imap_poller {
	char *dir;
	uint64_t max_size;
	imap_store_fn store;
	void *arg;
	struct mbox *m;
	size_t n;
	pthread_t tid;
	bool started;
	atomic_bool stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* One connection to one mailbox. */
struct sess {
	struct imap_poller *p;
	struct mbox *m;
	CURL *h;
	curl_socket_t fd;
	struct vl_buf in;              /* received; [off, len) not yet read */
	size_t off;
	unsigned tagn, caps;
	char code[32];                 /* the last tagged response's code */
	char err[512];
	char curlerr[CURL_ERROR_SIZE];
};

static bool stopping(const struct sess *s)
{
	return atomic_load(&s->p->stop);
}

static int fail(struct sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct sess *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the state file ---- */

static int state_load(struct mbox *m, char *err, size_t errlen)
{
	struct vl_buf b;
	unsigned long long v, l;
	char tail;

	if (vl_read_file(m->state_path, &b) < 0) {
		if (errno != ENOENT)
			return vl_fail(err, errlen, "%s: %s", m->state_path, strerror(errno));
		m->validity = m->last = 0;
		m->state_loaded = true;
		return 0;
	}
	vl_buf_append(&b, "", 1);
	int k = sscanf(b.p, "volley-imap-state 1\nuidvalidity %llu\nlast_uid %llu\n%c", &v, &l,
		       &tail);
	vl_buf_free(&b);
	if (k != 2 || v > UINT32_MAX || l > UINT32_MAX)
		return vl_fail(err, errlen, "%s: not a state file (volley-imap-state 1); "
			       "move it away to read the mailbox from its start", m->state_path);
	m->validity = (uint32_t)v;
	m->last = (uint32_t)l;
	m->state_loaded = true;
	return 0;
}

static int state_save(struct mbox *m, uint32_t validity, uint32_t last, char *err,
		      size_t errlen)
{
	char tmp[4200], text[128];
	int n = snprintf(text, sizeof text, "volley-imap-state 1\nuidvalidity %" PRIu32
			 "\nlast_uid %" PRIu32 "\n", validity, last);

	snprintf(tmp, sizeof tmp, "%s.tmp", m->state_path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return vl_fail(err, errlen, "%s: %s", tmp, strerror(errno));
	bool ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
	int e = errno;
	close(fd);
	if (!ok || rename(tmp, m->state_path) < 0 || vl_fsync_parent(m->state_path) < 0) {
		e = ok ? errno : e;
		unlink(tmp);
		return vl_fail(err, errlen, "%s: %s", m->state_path, strerror(e));
	}
	m->validity = validity;
	m->last = last;
	return 0;
}

/* ---- I/O on the connection ---- */

static int wait_fd(struct sess *s, short ev, uint64_t deadline)
{
	struct pollfd pfd = { .fd = s->fd, .events = ev };

	if (stopping(s))
		return fail(s, "stopping");
	if (vl_now_ms() >= deadline)
		return fail(s, "the server said nothing for %ds", CMD_TIMEOUT_MS / 1000);
	if (poll(&pfd, 1, WAIT_SLICE_MS) < 0 && errno != EINTR)
		return fail(s, "poll: %s", strerror(errno));
	return 0;
}

static int send_all(struct sess *s, const char *d, size_t len)
{
	uint64_t deadline = vl_now_ms() + CMD_TIMEOUT_MS;

	while (len) {
		size_t n = 0;
		CURLcode rc = curl_easy_send(s->h, d, len, &n);
		if (rc == CURLE_AGAIN) {
			if (wait_fd(s, POLLOUT, deadline) < 0)
				return -1;
			continue;
		}
		if (rc != CURLE_OK)
			return fail(s, "send: %s", curl_easy_strerror(rc));
		d += n;
		len -= n;
	}
	return 0;
}

/* The next whole response: [*r, *r + *n) valid until the next call. */
static int read_resp(struct sess *s, const char **r, size_t *n)
{
	uint64_t deadline = vl_now_ms() + CMD_TIMEOUT_MS;
	size_t max_lit = s->p->max_size + 4096;
	char ferr[160];

	if (s->off > 0 && s->off >= s->in.len / 2) {
		memmove(s->in.p, s->in.p + s->off, s->in.len - s->off);
		s->in.len -= s->off;
		s->off = 0;
	}
	for (;;) {
		long k = s->in.len > s->off ? imap_frame(s->in.p + s->off, s->in.len - s->off,
							 max_lit, ferr, sizeof ferr) : 0;
		if (k < 0)
			return fail(s, "the server's answer: %s", ferr);
		if (k > 0) {
			*r = s->in.p + s->off;
			*n = (size_t)k;
			s->off += (size_t)k;
			return 0;
		}
		vl_buf_reserve(&s->in, 65536);
		size_t got = 0;
		CURLcode rc = curl_easy_recv(s->h, s->in.p + s->in.len, 65536, &got);
		if (rc == CURLE_AGAIN) {
			if (wait_fd(s, POLLIN, deadline) < 0)
				return -1;
			continue;
		}
		if (rc != CURLE_OK)
			return fail(s, "receive: %s", curl_easy_strerror(rc));
		if (got == 0)
			return fail(s, "the server closed the connection");
		s->in.len += got;
		deadline = vl_now_ms() + CMD_TIMEOUT_MS;   /* a silence, not a whole answer */
	}
}

typedef int (*untagged_fn)(struct sess *s, const char *r, size_t n,
			   const struct imap_resp *resp, void *arg);

/* One command; each untagged response to handler. 0 on OK, 1 on NO (the
 * text in s->err, its code in s->code), -1 on anything else. */
static int cmd(struct sess *s, untagged_fn handler, void *arg, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int cmd(struct sess *s, untagged_fn handler, void *arg, const char *fmt, ...)
{
	char line[1024], tag[16], verb[64];
	va_list ap;

	snprintf(tag, sizeof tag, "V%u", ++s->tagn);
	int k = snprintf(line, sizeof line, "%s ", tag);
	va_start(ap, fmt);
	int w = vsnprintf(line + k, sizeof line - (size_t)k - 2, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)(k + w) >= sizeof line - 2)
		return fail(s, "a command longer than %zu octets", sizeof line - 2);
	k += w;
	snprintf(verb, sizeof verb, "%.*s", (int)strcspn(line + strlen(tag) + 1, " "),
		 line + strlen(tag) + 1);
	memcpy(line + k, "\r\n", 2);
	if (send_all(s, line, (size_t)k + 2) < 0)
		return -1;
	for (;;) {
		const char *r = NULL;
		size_t n = 0;
		struct imap_resp resp;
		char perr[160];
		if (read_resp(s, &r, &n) < 0)
			return -1;
		if (imap_resp_parse(r, n, &resp, perr, sizeof perr) < 0)
			return fail(s, "%s: the server's answer: %s", verb, perr);
		if (resp.is_capability)
			s->caps = resp.caps;
		if (resp.kind == IMAP_R_UNTAGGED && resp.status == IMAP_S_BYE)
			return fail(s, "%s: the server said BYE: %.*s", verb, (int)resp.text_len,
				    resp.text);
		if (resp.kind == IMAP_R_UNTAGGED && handler && handler(s, r, n, &resp, arg) < 0)
			return -1;
		if (resp.kind != IMAP_R_TAGGED)
			continue;
		if (strcmp(resp.tag, tag))
			return fail(s, "%s: an answer to tag %s, not %s", verb, resp.tag, tag);
		snprintf(s->code, sizeof s->code, "%s", resp.code);
		if (resp.status == IMAP_S_OK)
			return 0;
		fail(s, "%s refused: %s %.*s", verb, resp.status == IMAP_S_NO ? "NO" : "BAD",
		     (int)(resp.text_len > 300 ? 300 : resp.text_len), resp.text);
		return resp.status == IMAP_S_NO ? 1 : -1;
	}
}

/* ---- the connection ---- */

static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)a, (void)b, (void)c, (void)d;
	return atomic_load(&((struct imap_poller *)arg)->stop) ? 1 : 0;
}

static int sess_open(struct sess *s)
{
	const struct cfg_mailbox *c = s->m->c;
	CURL *h = s->h = curl_easy_init();

	if (!h)
		return fail(s, "curl_easy_init failed");
	curl_easy_setopt(h, CURLOPT_URL, s->m->base);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "imap,imaps");
	curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
	curl_easy_setopt(h, CURLOPT_PASSWORD, c->password);
	curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (*c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)(CMD_TIMEOUT_MS / 1000));
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, s->p);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->curlerr);
	s->curlerr[0] = '\0';
	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK)
		return fail(s, "connecting to %s: %s%s%s", s->m->base, curl_easy_strerror(rc),
			    *s->curlerr ? ": " : "", s->curlerr);
	if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &s->fd) != CURLE_OK ||
	    s->fd == CURL_SOCKET_BAD)
		return fail(s, "connecting to %s: no socket", s->m->base);
	return 0;
}

static void sess_close(struct sess *s)
{
	if (s->h)
		curl_easy_cleanup(s->h);
	vl_buf_free(&s->in);
}

/* ---- the commands' answers ---- */

static int on_select(struct sess *s, const char *r, size_t n, const struct imap_resp *resp,
		     void *arg)
{
	(void)s, (void)r, (void)n;
	if (resp->status == IMAP_S_OK && !strcmp(resp->code, "UIDVALIDITY"))
		*(uint32_t *)arg = resp->code_num;
	return 0;
}

struct search {
	uint32_t after, uids[SEARCH_BATCH];
	size_t n;
};

static int on_search(struct sess *s, const char *r, size_t n, const struct imap_resp *resp,
		     void *arg)
{
	struct search *q = arg;
	uint32_t got[SEARCH_BATCH];
	size_t ng;
	char perr[160];

	if (!resp->is_search)
		return 0;
	if (imap_parse_search(r, n, q->after, got, SEARCH_BATCH, &ng, perr, sizeof perr) < 0)
		return fail(s, "UID SEARCH: %s", perr);
	for (size_t i = 0; i < ng; i++) {      /* merge: several SEARCH lines are allowed */
		size_t j = q->n;
		if (j == SEARCH_BATCH && got[i] >= q->uids[j - 1])
			continue;
		if (j == SEARCH_BATCH)
			j--;
		while (j > 0 && q->uids[j - 1] > got[i])
			j--;
		if (j > 0 && q->uids[j - 1] == got[i])
			continue;
		size_t last = q->n < SEARCH_BATCH ? q->n : SEARCH_BATCH - 1;
		memmove(q->uids + j + 1, q->uids + j, (last - j) * sizeof *q->uids);
		q->uids[j] = got[i];
		if (q->n < SEARCH_BATCH)
			q->n++;
	}
	return 0;
}

struct fetch {
	uint32_t uid;
	bool found, has_size, has_body;
	uint64_t size;
	struct vl_buf body;
};

static int on_fetch(struct sess *s, const char *r, size_t n, const struct imap_resp *resp,
		    void *arg)
{
	struct fetch *f = arg;
	struct imap_fetch x;
	char perr[160];

	if (!resp->is_fetch)
		return 0;
	if (imap_parse_fetch(r, n, &x, perr, sizeof perr) < 0) {
		char shown[81];
		size_t k = 0;
		for (; k < n && k < 80 && r[k] != '\r' && r[k] != '\n'; k++)
			shown[k] = r[k] >= 0x20 && r[k] < 0x7f ? r[k] : '?';
		shown[k] = '\0';
		return fail(s, "UID FETCH: %s: \"%s\"", perr, shown);
	}
	if (x.uid != f->uid)      /* an unsolicited FLAGS update of another message */
		return 0;
	f->found = true;
	if (x.has_size) {
		f->has_size = true;
		f->size = x.size;
	}
	if (x.has_body) {
		f->has_body = true;
		f->body.len = 0;
		vl_buf_append(&f->body, x.body, x.body_len);
	}
	return 0;
}

/* ---- the actions ---- */

static int expunge(struct sess *s, uint32_t uid)
{
	if (cmd(s, NULL, NULL, "UID STORE %" PRIu32 " +FLAGS.SILENT (\\Deleted)", uid))
		return -1;
	if (s->caps & IMAP_CAP_UIDPLUS)
		return cmd(s, NULL, NULL, "UID EXPUNGE %" PRIu32, uid) ? -1 : 0;
	return cmd(s, NULL, NULL, "EXPUNGE") ? -1 : 0;
}

/* UID MOVE (or COPY) to folder, creating it once when the server says
 * TRYCREATE. */
static int copy_or_move(struct sess *s, const char *verb, uint32_t uid, const char *folder)
{
	for (int round = 0; round < 2; round++) {
		int rc = cmd(s, NULL, NULL, "UID %s %" PRIu32 " \"%s\"", verb, uid, folder);
		if (rc <= 0)
			return rc;
		if (round || strcmp(s->code, "TRYCREATE"))
			return -1;
		if (cmd(s, NULL, NULL, "CREATE \"%s\"", folder) < 0)
			return -1;     /* NO: maybe made meanwhile; the retry tells */
	}
	return -1;
}

static int act(struct sess *s, uint32_t uid, const char *how)
{
	if (!strcmp(how, "leave"))
		return 0;
	if (!strcmp(how, "flag"))
		return cmd(s, NULL, NULL, "UID STORE %" PRIu32 " +FLAGS.SILENT "
			   "(\\Seen $VolleyProcessed)", uid) ? -1 : 0;
	if (!strcmp(how, "delete"))
		return expunge(s, uid);
	const char *folder = how + 5;     /* "move:" (checked by config/) */
	if (s->caps & IMAP_CAP_MOVE)
		return copy_or_move(s, "MOVE", uid, folder);
	if (copy_or_move(s, "COPY", uid, folder) < 0)
		return -1;
	return expunge(s, uid);
}

/* ---- one message ---- */

static bool is_report(struct sess *s, uint32_t uid, const struct vl_buf *body)
{
	struct fb_opts o;
	struct fb_report r;
	char perr[256];

	fb_opts_default(&o);
	o.max_size = s->p->max_size;
	int rc = fb_parse(body->p, body->len, &o, &r, perr, sizeof perr);
	bool yes = rc == 0 && r.kind != FB_NOT_REPORT;
	if (rc < 0)
		vl_log(VL_LOG_INFO, "imap: %s: uid %" PRIu32 ": not a report (%s)", s->m->c->name,
		       uid, perr);
	fb_report_free(&r);
	return yes;
}

static int store(struct sess *s, uint32_t uid, const struct vl_buf *body)
{
	char name[128], head[256], serr[256];
	struct mbox *m = s->m;

	snprintf(name, sizeof name, "imap-%s-%" PRIu32 "-%" PRIu32, m->c->name, m->validity, uid);
	int hl = snprintf(head, sizeof head, "X-Volley-Source: imap; mailbox=%s; uidvalidity=%"
			  PRIu32 "; uid=%" PRIu32 "\r\n", m->c->name, m->validity, uid);
	int rc = s->p->store(s->p->arg, name, head, (size_t)hl, body->p, body->len, serr,
			     sizeof serr);
	if (rc < 0)
		return fail(s, "storing %s: %s", name, serr);
	if (rc == 1)
		vl_log(VL_LOG_INFO, "imap: %s: %s was stored before", m->c->name, name);
	return 0;
}

static int one(struct sess *s, uint32_t uid)
{
	struct mbox *m = s->m;
	struct fetch f = { .uid = uid };
	char serr[512];
	int rc = -1;

	vl_buf_init(&f.body);
	if (cmd(s, on_fetch, &f, "UID FETCH %" PRIu32 " (UID RFC822.SIZE)", uid))
		goto out;
	if (f.found && !f.has_size) {
		fail(s, "UID FETCH %" PRIu32 ": no RFC822.SIZE in the answer", uid);
		goto out;
	}
	bool report = false;
	if (f.found) {
		atomic_fetch_add(&m->fetched, 1);
		if (f.size > s->p->max_size) {
			vl_log(VL_LOG_WARN, "imap: %s: uid %" PRIu32 ": %" PRIu64 " octets, over "
			       "feedback.max_message_size: not a report", m->c->name, uid, f.size);
		} else {
			if (cmd(s, on_fetch, &f, "UID FETCH %" PRIu32 " (UID BODY.PEEK[])", uid))
				goto out;
			if (!f.has_body) {
				fail(s, "UID FETCH %" PRIu32 ": no BODY[] in the answer", uid);
				goto out;
			}
			report = is_report(s, uid, &f.body);
		}
		if (report && store(s, uid, &f.body) < 0)
			goto out;
		if (act(s, uid, report ? m->c->processed : m->c->other) < 0) {
			char e[sizeof s->err];
			snprintf(e, sizeof e, "%s", s->err);
			fail(s, "uid %" PRIu32 ": %s: %s", uid, report ? m->c->processed :
			     m->c->other, e);
			goto out;
		}
		atomic_fetch_add(report ? &m->reports : &m->other, 1);
	}
	/* gone meanwhile (expunged by someone else): nothing to do but move on */
	if (state_save(m, m->validity, uid, serr, sizeof serr) < 0) {
		fail(s, "%s", serr);
		goto out;
	}
	rc = 0;
out:
	vl_buf_free(&f.body);
	return rc;
}

/* ---- one poll of one mailbox ---- */

static int poll_session(struct sess *s)
{
	struct mbox *m = s->m;
	uint32_t validity = 0;
	char serr[512];

	if (sess_open(s) < 0 || cmd(s, NULL, NULL, "CAPABILITY"))
		return -1;
	vl_log(VL_LOG_DEBUG, "imap: %s: logged in (MOVE %s, UIDPLUS %s)", m->c->name,
	       s->caps & IMAP_CAP_MOVE ? "yes" : "no", s->caps & IMAP_CAP_UIDPLUS ? "yes" : "no");
	if (cmd(s, on_select, &validity, "SELECT \"%s\"", m->folder))
		return -1;
	if (!validity)
		return fail(s, "SELECT \"%s\": no UIDVALIDITY in the answer", m->folder);
	if (!m->state_loaded && state_load(m, serr, sizeof serr) < 0)
		return fail(s, "%s", serr);
	if (m->validity != validity) {
		if (m->validity)
			vl_log(VL_LOG_WARN, "imap: %s: UIDVALIDITY changed from %" PRIu32 " to %"
			       PRIu32 ": the folder is read again from its start (the effects "
			       "are once per recipient)", m->c->name, m->validity, validity);
		if (state_save(m, validity, 0, serr, sizeof serr) < 0)
			return fail(s, "%s", serr);
	}
	for (;;) {
		struct search q = { .after = m->last };
		if (m->last == UINT32_MAX)
			break;
		if (cmd(s, on_search, &q, "UID SEARCH UID %" PRIu32 ":*", m->last + 1))
			return -1;
		for (size_t i = 0; i < q.n; i++) {
			if (stopping(s))
				return fail(s, "stopping");
			if (one(s, q.uids[i]) < 0)
				return -1;
		}
		if (q.n < SEARCH_BATCH)
			break;
	}
	cmd(s, NULL, NULL, "LOGOUT");
	return 0;
}

static void poll_mbox(struct imap_poller *p, struct mbox *m)
{
	struct sess s = { .p = p, .m = m, .fd = CURL_SOCKET_BAD };

	vl_buf_init(&s.in);
	int rc = poll_session(&s);
	sess_close(&s);
	uint64_t now = vl_now_ms();
	if (rc == 0) {
		if (m->failing)
			vl_log(VL_LOG_INFO, "imap: %s: working again", m->c->name);
		m->failing = false;
		m->backoff_ms = 0;
		m->next_ms = now + m->c->poll_ms;
		atomic_store(&m->last_success, (int64_t)time(NULL));
		return;
	}
	if (stopping(&s))
		return;
	atomic_fetch_add(&m->errors, 1);
	m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : m->c->poll_ms;
	if (m->backoff_ms > BACKOFF_MAX_MS)
		m->backoff_ms = m->c->poll_ms > BACKOFF_MAX_MS ? m->c->poll_ms : BACKOFF_MAX_MS;
	m->next_ms = now + m->backoff_ms;
	vl_log(m->failing ? VL_LOG_DEBUG : VL_LOG_ERROR, "imap: %s: %s (retrying from %llus "
	       "on, backing off)", m->c->name, s.err, (unsigned long long)m->backoff_ms / 1000);
	m->failing = true;
}

/* ---- the thread ---- */

static void *run(void *arg)
{
	struct imap_poller *p = arg;

	vl_thread_name("vl-imap");
	while (!atomic_load(&p->stop)) {
		uint64_t now = vl_now_ms(), next = UINT64_MAX;
		for (size_t i = 0; i < p->n && !atomic_load(&p->stop); i++) {
			if (p->m[i].next_ms <= now) {
				poll_mbox(p, &p->m[i]);
				now = vl_now_ms();
			}
		}
		for (size_t i = 0; i < p->n; i++)
			if (p->m[i].next_ms < next)
				next = p->m[i].next_ms;
		now = vl_now_ms();
		if (next <= now)
			continue;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t wait = next - now;
		ts.tv_sec += (time_t)(wait / 1000);
		ts.tv_nsec += (long)(wait % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&p->mu);
		if (!atomic_load(&p->stop))
			pthread_cond_timedwait(&p->cv, &p->mu, &ts);
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

static void poller_free(struct imap_poller *p)
{
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->m);
	free(p->dir);
	free(p);
}

static int mbox_init(struct imap_poller *p, struct mbox *m, const struct cfg_mailbox *c,
		     size_t i, char *err, size_t errlen)
{
	char e[256];

	m->c = c;
	if (imap_url_split(c->url, m->base, sizeof m->base, m->folder, sizeof m->folder,
			   &m->implicit, e, sizeof e) < 0)
		return vl_fail(err, errlen, "feedback.mailboxes[%zu].url: %s", i, e);
	snprintf(m->state_path, sizeof m->state_path, "%s/%s.state", p->dir, c->name);
	return 0;
}

struct imap_poller *imap_start(const struct cfg *c, const char *dir, imap_store_fn store,
			       void *arg, char *err, size_t errlen)
{
	const struct cfg_feedback *f = &c->feedback;

	if (!f->nmailboxes)
		return NULL;
	char parent[4096];
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	if ((mkdir(parent, 0750) < 0 && errno != EEXIST) ||
	    (mkdir(dir, 0750) < 0 && errno != EEXIST)) {
		vl_fail(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);   /* counted; before the thread */
	struct imap_poller *p = vl_calloc(1, sizeof *p);
	p->dir = vl_strdup(dir);
	p->max_size = f->max_message_size ? f->max_message_size : c->max_message_size;
	p->store = store;
	p->arg = arg;
	p->n = f->nmailboxes;
	p->m = vl_calloc(p->n, sizeof *p->m);
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	for (size_t i = 0; i < p->n; i++)
		if (mbox_init(p, &p->m[i], &f->mailboxes[i], i, err, errlen) < 0) {
			poller_free(p);
			return NULL;
		}
	if (pthread_create(&p->tid, NULL, run, p) != 0) {
		vl_fail(err, errlen, "cannot start the IMAP thread");
		poller_free(p);
		return NULL;
	}
	p->started = true;
	return p;
}

void imap_stop(struct imap_poller *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->stop, true);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (p->started)
		pthread_join(p->tid, NULL);
	poller_free(p);
}

void imap_metrics(struct imap_poller *p, struct vl_buf *out)
{
	static const struct { const char *name, *type, *help; } fam[] = {
		{ "volley_feedback_imap_fetched_total", "counter",
		  "Messages looked at in the feedback mailboxes." },
		{ "volley_feedback_imap_reports_total", "counter",
		  "Reports stored from the feedback mailboxes." },
		{ "volley_feedback_imap_other_total", "counter",
		  "Messages in the feedback mailboxes that were no report." },
		{ "volley_feedback_imap_errors_total", "counter",
		  "Polls of a feedback mailbox that failed." },
		{ "volley_feedback_imap_last_success_timestamp_seconds", "gauge",
		  "When a poll of the feedback mailbox last succeeded (0: never)." },
	};
	char lab[96];

	if (!p)
		return;
	for (size_t k = 0; k < VL_ARRAY_LEN(fam); k++)
		for (size_t i = 0; i < p->n; i++) {
			struct mbox *m = &p->m[i];
			double v = k == 0 ? (double)atomic_load(&m->fetched) :
				k == 1 ? (double)atomic_load(&m->reports) :
				k == 2 ? (double)atomic_load(&m->other) :
				k == 3 ? (double)atomic_load(&m->errors) :
				(double)atomic_load(&m->last_success);
			snprintf(lab, sizeof lab, "{mailbox=\"%s\"}", m->c->name);
			vl_prom_metric(out, fam[k].name, fam[k].type, i ? NULL : fam[k].help, lab, v);
		}
}
