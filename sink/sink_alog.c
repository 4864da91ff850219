/*
 * --accept-log: a line per accepted recipient that matches a glob, with the
 * moment its message was accepted (just before the 250), so that a
 * benchmark can measure latency at the receiving end the same way for
 * every sender. Meant for a few hundred lines a second (transactional
 * mail under a bulk load): each line is written and flushed under one
 * mutex the workers share.
 */
#include "sink.h"

#include <errno.h>
#include <string.h>

struct sink_alog *sink_alog_open(const char *path, const char *glob, char *err,
				 size_t errlen)
{
	FILE *f = fopen(path, "we");

	if (!f) {
		snprintf(err, errlen, "--accept-log %s: %s", path, strerror(errno));
		return NULL;
	}
	struct sink_alog *a = vl_calloc(1, sizeof *a);
	pthread_mutex_init(&a->mu, NULL);
	a->f = f;
	a->glob = glob;
	return a;
}

void sink_alog_put(struct sink_alog *a, const struct smtpd_envelope *env)
{
	const char *r = env->rcpts;
	double now = vl_wall_time();
	uint64_t n = 0;

	pthread_mutex_lock(&a->mu);
	for (int i = 0; i < env->nrcpt; i++, r += strlen(r) + 1)
		if (!a->glob || vl_glob_match(a->glob, r)) {
			fprintf(a->f, "%.6f %s\n", now, r);
			n++;
		}
	if (n) {
		fflush(a->f);
		atomic_fetch_add(&a->n, n);
	}
	pthread_mutex_unlock(&a->mu);
}

void sink_alog_close(struct sink_alog *a)
{
	if (!a)
		return;
	fclose(a->f);
	pthread_mutex_destroy(&a->mu);
	free(a);
}
