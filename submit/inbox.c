/*
 * The return-path receiver's store: each message it accepts is written to
 * DIR/new/ (maildir: DIR/tmp/ID, fsync, rename) with trace fields in
 * front, Return-Path, one Delivered-To per recipient and Received, before
 * the 250. A thread does the writing so the SMTP worker never waits on the
 * disk; what arrives together is made durable together (one fsync of new/
 * per batch). The feedback parser reads DIR/new/.
 */
#include "submit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define INBOX_QUEUE_MAX 4096

struct item {
	char id[64];
	struct vl_buf head;        /* trace fields */
	const char *msg;           /* the caller's until done */
	size_t len;
	sub_done_fn done;
	void *arg;
	int rc;
};

struct sub_inbox {
	char *dir;
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item **q;
	size_t n, cap;
	bool stop;
	uint64_t seq;
	_Atomic uint64_t stored, failed;
};

static void trace(struct vl_buf *b, const char *hostname, const struct smtpd_envelope *e,
		  const char *id)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	vl_buf_printf(b, "Return-Path: <%s>\r\n", e->mail_from);
	const char *r = e->rcpts;
	for (int i = 0; i < e->nrcpt; i++, r += strlen(r) + 1)
		vl_buf_printf(b, "Delivered-To: %s\r\n", r);
	vl_buf_printf(b, "Received: from %s (%s)\r\n\tby %s with %s id %s;\r\n\t%s\r\n",
		      e->helo && *e->helo ? e->helo : "unknown", e->peer, hostname,
		      e->tls_version ? "ESMTPS" : "ESMTP", id, date);
}

static int write_one(struct sub_inbox *b, struct item *it)
{
	char tmp[4096], fin[4096];
	struct iovec iov[2] = { { it->head.p, it->head.len }, { (void *)it->msg, it->len } };

	snprintf(tmp, sizeof tmp, "%s/tmp/%s", b->dir, it->id);
	snprintf(fin, sizeof fin, "%s/new/%s", b->dir, it->id);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	size_t want = it->head.len + it->len;
	ssize_t n = writev(fd, iov, 2);
	int rc = (n >= 0 && (size_t)n == want) ? 0 : -1;
	if (rc == 0 && (size_t)n != want)
		errno = EIO;
	if (rc == 0 && fsync(fd) < 0)
		rc = -1;
	close(fd);
	if (rc == 0 && rename(tmp, fin) < 0)
		rc = -1;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static void *run(void *arg)
{
	struct sub_inbox *b = arg;
	char dir[4096];

	vl_thread_name("vl-fbstore");
	snprintf(dir, sizeof dir, "%s/new", b->dir);
	for (;;) {
		pthread_mutex_lock(&b->mu);
		while (!b->n && !b->stop)
			pthread_cond_wait(&b->cv, &b->mu);
		struct item **batch = b->q;
		size_t n = b->n;
		b->q = NULL;
		b->n = b->cap = 0;
		bool stop = b->stop;
		pthread_mutex_unlock(&b->mu);
		bool any = false;
		for (size_t i = 0; i < n; i++) {
			batch[i]->rc = write_one(b, batch[i]) < 0 ? -errno : 0;
			any |= batch[i]->rc == 0;
		}
		int drc = any && vl_fsync_dir(dir) < 0 ? -errno : 0;
		for (size_t i = 0; i < n; i++) {
			struct item *it = batch[i];
			int rc = it->rc ? it->rc : drc;
			if (rc)
				vl_log(VL_LOG_ERROR, "feedback: cannot store %s: %s", it->id,
				       strerror(-rc));
			atomic_fetch_add(rc ? &b->failed : &b->stored, 1);
			it->done(it->arg, rc ? -1 : 0, it->id);
			vl_buf_free(&it->head);
			free(it);
		}
		free(batch);
		if (stop && !n)
			return NULL;
	}
}

struct sub_inbox *sub_inbox_open(const char *dir, char *err, size_t errlen)
{
	static const char *const sub[] = { "", "/tmp", "/new" };
	char path[4096];

	for (size_t i = 0; i < VL_ARRAY_LEN(sub); i++) {
		snprintf(path, sizeof path, "%s%s", dir, sub[i]);
		if (mkdir(path, 0750) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return NULL;
		}
	}
	struct sub_inbox *b = vl_calloc(1, sizeof *b);
	b->dir = vl_strdup(dir);
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	if (pthread_create(&b->tid, NULL, run, b) != 0) {
		snprintf(err, errlen, "cannot start the feedback store's thread");
		free(b->dir);
		free(b);
		return NULL;
	}
	return b;
}

int sub_inbox_put(struct sub_inbox *b, const char *hostname, const struct smtpd_envelope *env,
		  const char *msg, size_t len, sub_done_fn done, void *arg)
{
	struct item *it = vl_calloc(1, sizeof *it);

	pthread_mutex_lock(&b->mu);
	if (b->n >= INBOX_QUEUE_MAX || b->stop) {
		pthread_mutex_unlock(&b->mu);
		free(it);
		errno = EAGAIN;
		return -1;
	}
	snprintf(it->id, sizeof it->id, "%llx.%llu", (unsigned long long)vl_now_ns(),
		 (unsigned long long)++b->seq);
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->q = vl_realloc(b->q, b->cap * sizeof *b->q);
	}
	b->q[b->n++] = it;
	vl_buf_init(&it->head);
	trace(&it->head, hostname, env, it->id);
	it->msg = msg;
	it->len = len;
	it->done = done;
	it->arg = arg;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	return 0;
}

/* The name is the writer's (deterministic): the same name in new/ or cur/
 * is the same message, so a second write is skipped. Only one thread
 * writes a given name (the IMAP poller), so check-then-write does not
 * race with itself; the processor only renames new/ to cur/. */
int sub_inbox_store(struct sub_inbox *b, const char *name, const char *head, size_t hlen,
		    const char *msg, size_t len, char *err, size_t errlen)
{
	char tmp[4096], fin[4096], cur[4096], dir[4096];
	struct stat st;
	struct iovec iov[2] = { { (void *)head, hlen }, { (void *)msg, len } };

	if (!*name || strlen(name) > 200 || name[0] == '.' || strchr(name, '/'))
		return vl_fail(err, errlen, "a bad file name \"%s\"", name);
	snprintf(fin, sizeof fin, "%s/new/%s", b->dir, name);
	snprintf(cur, sizeof cur, "%s/cur/%s", b->dir, name);
	if (stat(fin, &st) == 0 || stat(cur, &st) == 0)
		return 1;
	snprintf(tmp, sizeof tmp, "%s/tmp/%s", b->dir, name);
	unlink(tmp);                 /* a crash's leftover of the same write */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return vl_fail(err, errlen, "%s: %s", tmp, strerror(errno));
	ssize_t n = writev(fd, iov, 2);
	int e = n < 0 ? errno : EIO;
	bool ok = n >= 0 && (size_t)n == hlen + len;
	if (ok && fsync(fd) < 0) {
		ok = false;
		e = errno;
	}
	close(fd);
	snprintf(dir, sizeof dir, "%s/new", b->dir);
	if (ok && (rename(tmp, fin) < 0 || vl_fsync_dir(dir) < 0)) {
		ok = false;
		e = errno;
	}
	if (!ok) {
		unlink(tmp);
		atomic_fetch_add(&b->failed, 1);
		return vl_fail(err, errlen, "%s: %s", fin, strerror(e));
	}
	atomic_fetch_add(&b->stored, 1);
	return 0;
}

void sub_inbox_counts(struct sub_inbox *b, uint64_t *stored, uint64_t *failed)
{
	*stored = atomic_load(&b->stored);
	*failed = atomic_load(&b->failed);
}

void sub_inbox_close(struct sub_inbox *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->tid, NULL);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	free(b->dir);
	free(b);
}
