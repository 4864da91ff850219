/*
 * volley-logput: messages into a data directory's submission log, as SMTP
 * submission will put them (for tests: volleyd then delivers the jobs).
 *   volley-logput --data-dir DIR --from SENDER --to RCPT [--to RCPT]...
 *                 [--config FILE] [--campaign C] [--transactional] [--no-dkim]
 *                 [--require-tls] [--user U] [--client ADDR] MESSAGE_FILE...
 * Each file is one message (its octets as they are) to the same envelope.
 * volleyd must not be running on DIR (its registry learns the jobs when
 * it starts). A line {"file", "id", "rc", "error"} per message on stdout;
 * exit 1 if one was not stored (2: usage).
 */
#include "../../submit/submit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RCPT_MAX 100

struct answer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc, err;
	char id[SCHED_ID_LEN + 1];
};

static void on_done(void *arg, int rc, const char *id)
{
	struct answer *a = arg;

	pthread_mutex_lock(&a->mu);
	a->err = rc ? errno : 0;
	a->rc = rc;
	snprintf(a->id, sizeof a->id, "%s", id);
	a->done = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

static int usage(void)
{
	fprintf(stderr, "usage: volley-logput --data-dir DIR --from SENDER --to RCPT [--to RCPT]... "
		"[--config FILE] [--campaign C] [--transactional] [--no-dkim] [--require-tls] "
		"[--user U] [--client ADDR] MESSAGE_FILE...\n");
	return 2;
}

static void line(const char *file, const char *id, int rc, const char *err)
{
	struct vl_buf b;

	vl_buf_init(&b);
	vl_buf_appends(&b, "{\"file\": ");
	vl_buf_json_string(&b, file);
	vl_buf_appends(&b, ", \"id\": ");
	vl_buf_json_string(&b, id);
	vl_buf_printf(&b, ", \"rc\": %d, \"error\": ", rc);
	vl_buf_json_string(&b, err);
	printf("%.*s}\n", (int)b.len, b.p);
	vl_buf_free(&b);
}

/* One message through the log, waiting for its answer. */
static int put_one(struct sub_log *l, struct sub_item *it, const char *file)
{
	struct answer a = { .done = false };
	struct vl_buf m;
	char why[300];
	int rc = -1;

	if (vl_read_file(file, &m) < 0) {
		line(file, NULL, -1, strerror(errno));
		return -1;
	}
	pthread_mutex_init(&a.mu, NULL);
	pthread_cond_init(&a.cv, NULL);
	it->msg = m.p ? m.p : "";
	it->len = m.len;
	it->done = on_done;
	it->arg = &a;
	if (sub_log_check(l, it, why, sizeof why) < 0 || sub_log_put(l, it) < 0) {
		line(file, NULL, -1, errno == EAGAIN ? "queue full" : why);
	} else {
		pthread_mutex_lock(&a.mu);
		while (!a.done)
			pthread_cond_wait(&a.cv, &a.mu);
		pthread_mutex_unlock(&a.mu);
		line(file, a.id, a.rc, a.rc ? strerror(a.err) : NULL);
		rc = a.rc;
	}
	pthread_mutex_destroy(&a.mu);
	pthread_cond_destroy(&a.cv);
	vl_buf_free(&m);
	return rc;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *conf = NULL, *rcpts[RCPT_MAX];
	struct sub_item it = { .sender = NULL };
	int i = 1, bad = 0;

	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("volley-logput %s\n", VL_VERSION);
		return 0;
	}
	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(o, "--transactional"))
			it.transactional = true;
		else if (!strcmp(o, "--no-dkim"))
			it.no_dkim = true;
		else if (!strcmp(o, "--require-tls"))
			it.require_tls = true;
		else if (!v)
			return usage();
		else if (!strcmp(o, "--data-dir"))
			dir = argv[++i];
		else if (!strcmp(o, "--config"))
			conf = argv[++i];
		else if (!strcmp(o, "--from"))
			it.sender = argv[++i];
		else if (!strcmp(o, "--to") && it.nrcpt < RCPT_MAX)
			rcpts[it.nrcpt++] = argv[++i];
		else if (!strcmp(o, "--campaign"))
			it.campaign = argv[++i];
		else if (!strcmp(o, "--user"))
			it.user = argv[++i];
		else if (!strcmp(o, "--client"))
			it.client = argv[++i];
		else
			return usage();
	}
	if (!dir || !it.sender || !it.nrcpt || i == argc)
		return usage();
	it.rcpts = rcpts;
	struct cfg c;
	char err[512];
	if (cfg_load(&c, conf, err, sizeof err) < 0) {
		fprintf(stderr, "volley-logput: %s\n", err);
		return 2;
	}
	free(c.data_dir);
	c.data_dir = vl_strdup(dir);
	struct sched_spool *sp = sched_spool_open(dir, err, sizeof err);
	struct sub_log *l = sp ? sub_log_open(&c, sp, NULL, err, sizeof err) : NULL;
	if (!l) {
		fprintf(stderr, "volley-logput: %s\n", err);
		return 1;
	}
	for (; i < argc; i++)
		bad |= put_one(l, &it, argv[i]) < 0;
	sub_log_close(l);
	sched_spool_close(sp);
	cfg_free(&c);
	return bad ? 1 : 0;
}
