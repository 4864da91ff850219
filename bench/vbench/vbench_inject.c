/*
 * The SMTP injector of the Postfix peer. Each thread holds one connection
 * and takes the next recipient from a shared counter, renders its message
 * with volley's composer (msg_render, as volleyd does), and sends it:
 * MAIL, RCPT and DATA pipelined in one write, then the dot-stuffed message
 * and its final dot. A refused message is counted and the transaction reset
 * (RSET only then); a broken connection is opened again. Rendering costs a
 * few microseconds a message, so the injector's CPU is small next to the
 * server's; it is not the server's either way (it runs in volley-bench).
 */
#include "vbench_inject.h"

#include "vbench.h"

#include "../../message/message.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One recipient: what msg_render needs, in one allocation. */
struct vb_inject_rcpt {
	const char *email, *name;
	size_t nsubs;
	const char **keys, **vals;
};

/* One connection and its reply buffer. */
struct conn {
	int fd;
	char rb[8192];
	size_t rlen, rpos;
};

/* ---- recipients ---- */

static size_t rcpt_size(json_t *j, const char *email, const char *name)
{
	size_t sz = sizeof(struct vb_inject_rcpt) + strlen(email) + 1 + (name ? strlen(name) + 1 : 0);
	json_t *subs = json_object_get(j, "substitutions"), *v;
	const char *k;
	char tmp[MSG_SUB_TMP];
	size_t len;
	json_object_foreach(subs, k, v) {
		const char *s = msg_sub_string(v, tmp, &len);
		sz += 2 * sizeof(char *) + strlen(k) + 1 + (s ? len + 1 : 0);
	}
	return sz;
}

static char *put(char **p, const char *s, size_t len)
{
	char *d = *p;
	memcpy(d, s, len);
	d[len] = '\0';
	*p += len + 1;
	return d;
}

/* A recipient line to a struct vb_inject_rcpt; NULL if it is not one. */
static struct vb_inject_rcpt *rcpt_parse(const char *line)
{
	json_t *j = json_loads(line, 0, NULL), *subs, *v;
	const char *email = json_string_value(json_object_get(j, "email"));
	const char *name = json_string_value(json_object_get(j, "name")), *k;
	if (!email) {
		json_decref(j);
		return NULL;
	}
	subs = json_object_get(j, "substitutions");
	size_t n = json_object_size(subs), len;
	struct vb_inject_rcpt *r = vl_malloc(rcpt_size(j, email, name));
	r->keys = (const char **)(r + 1);
	r->vals = r->keys + n;
	char *p = (char *)(r->vals + n), tmp[MSG_SUB_TMP];
	r->email = put(&p, email, strlen(email));
	r->name = name ? put(&p, name, strlen(name)) : NULL;
	r->nsubs = 0;
	json_object_foreach(subs, k, v) {
		const char *s = msg_sub_string(v, tmp, &len);
		if (!s)
			continue;      /* null, arrays: volley refuses them at intake */
		r->keys[r->nsubs] = put(&p, k, strlen(k));
		r->vals[r->nsubs++] = put(&p, s, len);
	}
	json_decref(j);
	return r;
}

static int read_rcpts(struct vb_inject *in, char *err, size_t errlen)
{
	FILE *f = fopen(in->o.rcpts, "r");
	char *line = NULL;
	size_t cap = 0;
	if (!f) {
		snprintf(err, errlen, "%s: %s", in->o.rcpts, strerror(errno));
		return -1;
	}
	in->r = vl_calloc((size_t)in->o.n, sizeof *in->r);
	while (in->n < in->o.n && getline(&line, &cap, f) > 0) {
		if (!(in->r[in->n] = rcpt_parse(line))) {
			snprintf(err, errlen, "%s: line %ld is not a recipient", in->o.rcpts,
				 in->n + 1);
			break;
		}
		in->n++;
	}
	free(line);
	fclose(f);
	if (in->n < in->o.n && !err[0])
		snprintf(err, errlen, "%s: %ld recipients, %ld wanted", in->o.rcpts, in->n, in->o.n);
	return in->n == in->o.n ? 0 : -1;
}

/* ---- the job ---- */

static int read_job(struct vb_inject *in, char *err, size_t errlen)
{
	json_error_t je;
	json_t *job = json_load_file(in->o.job, 0, &je);
	struct msg_err me = { 0 };
	/* volleyd's job ids have this shape; the Message-ID has the same length. */
	struct msg_job_opts mo = { .job_id = "0194c1d2e3f4-5a6b7c8d", .hostname = in->o.hostname };
	const char *sender = json_string_value(json_object_get(job, "envelope_sender"));

	if (!job || !sender) {
		snprintf(err, errlen, "%s: %s", in->o.job, job ? "no envelope_sender" : je.text);
		json_decref(job);
		return -1;
	}
	snprintf(in->sender, sizeof in->sender, "%s", sender);
	in->verp = json_is_true(json_object_get(job, "verp"));
	in->job = msg_job_compile(json_object_get(job, "content"),
				  json_object_get(job, "substitutions"),
				  json_object_get(job, "unsubscribe"), &mo, &me);
	if (!in->job)
		snprintf(err, errlen, "%s: %s: %s", in->o.job, me.field, me.message);
	json_decref(job);
	return in->job ? 0 : -1;
}

int vb_inject_prepare(struct vb_inject *in, const struct vb_inject_opts *o, char *err,
		      size_t errlen)
{
	memset(in, 0, sizeof *in);
	in->o = *o;
	if (in->o.conns < 1)
		in->o.conns = 1;
	if (in->o.conns > VB_INJECT_MAXCONNS)
		in->o.conns = VB_INJECT_MAXCONNS;
	pthread_mutex_init(&in->mu, NULL);
	err[0] = '\0';
	return read_job(in, err, errlen) < 0 || read_rcpts(in, err, errlen) < 0 ? -1 : 0;
}

/* ---- SMTP ---- */

static void fail(struct vb_inject *in, const char *what, const char *text)
{
	pthread_mutex_lock(&in->mu);
	if (!in->first_err[0])
		snprintf(in->first_err, sizeof in->first_err, "%s: %.200s", what, text);
	pthread_mutex_unlock(&in->mu);
}

/* volley-bench ignores SIGPIPE: a plain write() to the socket is safe. */
static int send_all(struct conn *c, const char *p, size_t n)
{
	return vl_write_all(c->fd, p, n);
}

/* The next line (without CRLF) into line; -1 on EOF, error or overlong. */
static int read_line(struct conn *c, char *line, size_t cap)
{
	for (;;) {
		char *nl = memchr(c->rb + c->rpos, '\n', c->rlen - c->rpos);
		if (nl) {
			size_t n = (size_t)(nl - (c->rb + c->rpos));
			if (n && nl[-1] == '\r')
				n--;
			snprintf(line, cap, "%.*s", (int)n, c->rb + c->rpos);
			c->rpos = (size_t)(nl - c->rb) + 1;
			return 0;
		}
		if (c->rpos) {
			memmove(c->rb, c->rb + c->rpos, c->rlen - c->rpos);
			c->rlen -= c->rpos;
			c->rpos = 0;
		}
		if (c->rlen == sizeof c->rb)
			return -1;
		ssize_t r = recv(c->fd, c->rb + c->rlen, sizeof c->rb - c->rlen, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->rlen += (size_t)r;
	}
}

/* A whole (multi-line) reply: its code, the last line in text; -1 if the
 * connection broke. seen_pipelining is set when a line names it (EHLO). */
static int read_reply(struct conn *c, char *text, size_t cap, bool *seen_pipelining)
{
	char line[1024];
	for (;;) {
		if (read_line(c, line, sizeof line) < 0)
			return -1;
		if (strlen(line) < 3 || line[0] < '1' || line[0] > '5')
			return -1;
		if (seen_pipelining && strlen(line) > 4 && !strncasecmp(line + 4, "PIPELINING", 10))
			*seen_pipelining = true;
		if (line[3] != '-') {
			/* Reply texts are short; a long one is cut (it is only shown). */
			snprintf(text, cap, "%.*s", (int)(cap - 1), line);
			return atoi(line);
		}
	}
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->rlen = c->rpos = 0;
}

static int tcp_connect(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 120 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || inet_pton(AF_INET, ip, &a.sin_addr) != 1)
		goto fail;
	/* A stuck server fails the injection instead of hanging the run. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
		return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Connect, greeting, EHLO (which must offer PIPELINING). */
static int conn_open(struct vb_inject *in, struct conn *c)
{
	char text[512], cmd[300];
	bool pipelining = false;
	c->rlen = c->rpos = 0;
	if ((c->fd = tcp_connect(in->o.ip, in->o.port)) < 0) {
		fail(in, "connect", strerror(errno));
		return -1;
	}
	int code = read_reply(c, text, sizeof text, NULL);
	if (code == 220) {
		snprintf(cmd, sizeof cmd, "EHLO %s\r\n", in->o.hostname);
		code = send_all(c, cmd, strlen(cmd)) < 0 ? -1
		       : read_reply(c, text, sizeof text, &pipelining);
	}
	if (code != 250 || !pipelining) {
		fail(in, code == 250 ? "EHLO" : "greeting",
		     code == 250 ? "no PIPELINING" : code < 0 ? "connection lost" : text);
		conn_close(c);
		return -1;
	}
	return 0;
}

/* The rendered message, dot-stuffed, with its final dot, into b. */
static void stuff(const struct msg_out *m, struct vl_buf *b)
{
	bool bol = true;
	vl_buf_reset(b);
	for (size_t i = 0; i < m->niov; i++) {
		const char *p = m->iov[i].iov_base, *end = p + m->iov[i].iov_len;
		while (p < end) {
			if (bol && *p == '.')
				vl_buf_append(b, ".", 1);
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *stop = nl ? nl + 1 : end;
			vl_buf_append(b, p, (size_t)(stop - p));
			bol = nl != NULL;
			p = stop;
		}
	}
	vl_buf_appends(b, bol ? ".\r\n" : "\r\n.\r\n");
}

enum { SENT, REFUSED, BROKEN };

/* After a refusal the transaction may be half open: RSET closes it. */
static int refuse(struct vb_inject *in, struct conn *c, const char *what, const char *text)
{
	char t[512];
	fail(in, what, text);
	if (send_all(c, "RSET\r\n", 6) < 0 || read_reply(c, t, sizeof t, NULL) != 250)
		return BROKEN;
	return REFUSED;
}

/* One message to the nto recipients at to on an open connection: SENT,
 * REFUSED (any of them), or BROKEN. */
static int send_msg(struct vb_inject *in, struct conn *c, const char *from,
		    struct vb_inject_rcpt *const *to, long nto, const struct vl_buf *body)
{
	char cmd[800], t1[512], t2[512], t3[512];
	struct vl_buf cmds;
	int n = snprintf(cmd, sizeof cmd, "MAIL FROM:<%s>\r\n", from);
	if (n < 0 || (size_t)n >= sizeof cmd)
		return REFUSED;
	vl_buf_init(&cmds);
	vl_buf_append(&cmds, cmd, (size_t)n);
	for (long k = 0; k < nto; k++)
		vl_buf_printf(&cmds, "RCPT TO:<%s>\r\n", to[k]->email);
	vl_buf_appends(&cmds, "DATA\r\n");
	int sent = send_all(c, cmds.p, cmds.len);
	vl_buf_free(&cmds);
	if (sent < 0)
		return BROKEN;
	int mail = read_reply(c, t1, sizeof t1, NULL), rcpt = mail < 0 ? -1 : 250;
	for (long k = 0; k < nto && rcpt >= 0; k++) {   /* the first refusal is kept */
		int r = read_reply(c, t3, sizeof t3, NULL);
		if (r < 0)
			rcpt = -1;
		else if (rcpt / 100 == 2) {
			rcpt = r;
			memcpy(t2, t3, sizeof t2);
		}
	}
	int data = rcpt < 0 ? -1 : read_reply(c, t3, sizeof t3, NULL);
	if (data < 0)
		return BROKEN;
	if (data == 354 && (mail / 100 != 2 || rcpt / 100 != 2)) {
		/* A server that took DATA without a recipient: end it empty. */
		if (send_all(c, ".\r\n", 3) < 0 || read_reply(c, t3, sizeof t3, NULL) < 0)
			return BROKEN;
	}
	if (mail / 100 != 2)
		return refuse(in, c, "MAIL", t1);
	if (rcpt / 100 != 2)
		return refuse(in, c, "RCPT", t2);
	if (data != 354)
		return refuse(in, c, "DATA", t3);
	if (send_all(c, body->p, body->len) < 0)
		return BROKEN;
	int dot = read_reply(c, t1, sizeof t1, NULL);
	if (dot < 0)
		return BROKEN;
	if (dot / 100 != 2) {
		fail(in, "end of data", t1);
		return REFUSED;
	}
	return SENT;
}

/* Transactional scenarios submit at a rate: message i not before t0 + i/rate. */
static void pace(const struct vb_inject *in, long i)
{
	if (in->o.rate <= 0)
		return;
	double wait = in->t0 + (double)i / in->o.rate - vb_now();
	if (wait > 0) {
		struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
		nanosleep(&ts, NULL);
	}
}

/* Render recipient i into body; the envelope sender into from. */
static int render(struct vb_inject *in, long i, struct msg_out *out, struct vl_buf *body,
		  char *from, size_t fromlen)
{
	const struct vb_inject_rcpt *r = in->r[i];
	struct msg_rcpt mr = { .email = r->email, .name = r->name, .index = (size_t)i,
			       .nsubs = r->nsubs, .keys = r->keys, .vals = r->vals };
	struct msg_err me;
	if (msg_render(in->job, &mr, time(NULL), out, &me) < 0) {
		fail(in, "render", me.message);
		return -1;
	}
	if (!in->verp || msg_verp(in->sender, "0194c1d2e3f4-5a6b7c8d", (size_t)i, from,
				  fromlen) < 0)
		snprintf(from, fromlen, "%s", in->sender);
	stuff(out, body);
	return 0;
}

static void *worker(void *arg)
{
	struct vb_inject *in = arg;
	struct conn c = { .fd = -1 };
	struct msg_out out;
	struct vl_buf body;
	char from[300];
	msg_out_init(&out);
	vl_buf_init(&body);
	long k = in->o.rcpts_per_msg > 1 ? in->o.rcpts_per_msg : 1;
	for (long i; (i = atomic_fetch_add(&in->next, k)) < in->n;) {
		long nto = in->n - i < k ? in->n - i : k;
		pace(in, i);
		int rc = REFUSED;
		double t = vl_wall_time();
		if (render(in, i, &out, &body, from, sizeof from) == 0 &&
		    (c.fd >= 0 || conn_open(in, &c) == 0)) {
			rc = send_msg(in, &c, from, in->r + i, nto, &body);
			if (rc == BROKEN) {
				fail(in, "connection", "lost in a transaction");
				conn_close(&c);
			}
		}
		if (in->o.sent_at) {
			in->o.sent_at[i] = t;
			in->o.acked_at[i] = rc == SENT ? vl_wall_time() : 0;
		}
		atomic_fetch_add(rc == SENT ? &in->accepted : &in->refused, nto);
	}
	if (c.fd >= 0) {
		char t[512];
		if (send_all(&c, "QUIT\r\n", 6) == 0)
			read_reply(&c, t, sizeof t, NULL);
		conn_close(&c);
	}
	vl_buf_free(&body);
	msg_out_free(&out);
	return NULL;
}

int vb_inject_start(struct vb_inject *in)
{
	in->t0 = vb_now();
	for (in->nth = 0; in->nth < in->o.conns; in->nth++)
		if (pthread_create(&in->th[in->nth], NULL, worker, in) != 0) {
			fail(in, "pthread_create", strerror(errno));
			break;
		}
	return in->nth > 0 ? 0 : -1;
}

long vb_inject_finished(struct vb_inject *in)
{
	return atomic_load(&in->accepted) + atomic_load(&in->refused);
}

void vb_inject_abort(struct vb_inject *in)
{
	atomic_store(&in->next, in->n);
}

void vb_inject_join(struct vb_inject *in)
{
	for (int i = 0; i < in->nth; i++)
		pthread_join(in->th[i], NULL);
	in->nth = 0;
}

void vb_inject_free(struct vb_inject *in)
{
	vb_inject_join(in);
	for (long i = 0; i < in->n; i++)
		free(in->r[i]);
	free(in->r);
	in->r = NULL;
	if (in->job)
		msg_job_free(in->job);
	in->job = NULL;
	pthread_mutex_destroy(&in->mu);
}
