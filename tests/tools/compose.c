/*
 * volley-compose: a job's messages as message/ composes them, for tests.
 *   volley-compose JOB.json OUTDIR [--job-id ID] [--hostname H] [--date EPOCH]
 *                  [--max-size N]
 * JOB.json holds content, substitutions, unsubscribe and recipients
 * [{email, name, substitutions}]. Each message goes to OUTDIR/<index>.eml
 * and a line {"index", "size", "iov", "smtputf8", "eightbit"} to stdout.
 * An error is {"code", "field", "message"} on stderr and exit 1 (2: usage).
 */
#include "../../message/message.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int fail(const struct msg_err *e, const char *prefix)
{
	struct vl_buf b;
	char field[240];

	snprintf(field, sizeof field, "%s%s", prefix, e->field);
	vl_buf_init(&b);
	vl_buf_appends(&b, "{\"code\": ");
	vl_buf_json_string(&b, e->code);
	vl_buf_appends(&b, ", \"field\": ");
	vl_buf_json_string(&b, field);
	vl_buf_appends(&b, ", \"message\": ");
	vl_buf_json_string(&b, e->message);
	fprintf(stderr, "%.*s}\n", (int)b.len, b.p);
	vl_buf_free(&b);
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: volley-compose JOB.json OUTDIR [--job-id ID] "
		"[--hostname H] [--date EPOCH] [--max-size N]\n");
	return 2;
}

static int write_out(const char *dir, size_t i, const struct msg_out *o)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/%zu.eml", dir, i);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(path);
		return -1;
	}
	size_t done = 0;
	for (size_t k = 0; k < o->niov; k++)
		done += (size_t)write(fd, o->iov[k].iov_base, o->iov[k].iov_len);
	close(fd);
	return done == o->size ? 0 : -1;
}

/* The recipient's substitutions as the arrays msg_rcpt wants. */
struct subs {
	const char *keys[256], *vals[256];
	size_t lens[256];
	char tmp[256][MSG_SUB_TMP];
};

static int rcpt_subs(const json_t *s, struct subs *out, struct msg_rcpt *r,
		     struct msg_err *e)
{
	const char *key;
	json_t *v;

	r->nsubs = 0;
	json_object_foreach((json_t *)s, key, v) {
		size_t n = r->nsubs;
		if (n == 256)
			break;
		out->keys[n] = key;
		out->vals[n] = msg_sub_string(v, out->tmp[n], &out->lens[n]);
		if (!out->vals[n]) {
			snprintf(e->code, sizeof e->code, "invalid_field");
			snprintf(e->field, sizeof e->field, "substitutions.%s", key);
			snprintf(e->message, sizeof e->message, "must be a string, number or boolean");
			return -1;
		}
		r->nsubs++;
	}
	r->keys = out->keys;
	r->vals = out->vals;
	r->lens = out->lens;
	return 0;
}

static int render_all(const struct msg_job *j, const json_t *rcpts, const char *dir,
		      time_t date)
{
	static struct subs subs;
	struct msg_out o;
	struct msg_err e;
	char prefix[64];
	int rc = 0;

	msg_out_init(&o);
	for (size_t i = 0; i < json_array_size(rcpts) && rc == 0; i++) {
		const json_t *r = json_array_get(rcpts, i);
		struct msg_rcpt mr = {.email = json_string_value(json_object_get(r, "email")),
				      .name = json_string_value(json_object_get(r, "name")),
				      .index = i};
		snprintf(prefix, sizeof prefix, "recipients[%zu].", i);
		if (rcpt_subs(json_object_get(r, "substitutions"), &subs, &mr, &e) < 0 ||
		    msg_render(j, &mr, date, &o, &e) < 0) {
			rc = fail(&e, prefix);
			break;
		}
		if (write_out(dir, i, &o) < 0)
			rc = 1;
		printf("{\"index\": %zu, \"size\": %zu, \"iov\": %zu, \"smtputf8\": %s, "
		       "\"eightbit\": %s}\n", i, o.size, o.niov, o.smtputf8 ? "true" : "false",
		       o.eightbit ? "true" : "false");
	}
	msg_out_free(&o);
	return rc;
}

int main(int argc, char **argv)
{
	struct msg_job_opts o = {"job1", "mta.example.com", 0};
	uint64_t date = 1795000000, max = 0;

	if (argc < 3)
		return usage();
	for (int i = 3; i < argc; i += 2) {
		if (i + 1 >= argc)
			return usage();
		if (!strcmp(argv[i], "--job-id"))
			o.job_id = argv[i + 1];
		else if (!strcmp(argv[i], "--hostname"))
			o.hostname = argv[i + 1];
		else if (!strcmp(argv[i], "--date") && vl_parse_u64(argv[i + 1], &date) == 0)
			continue;
		else if (!strcmp(argv[i], "--max-size") && vl_parse_u64(argv[i + 1], &max) == 0)
			o.max_size = max;
		else
			return usage();
	}
	json_error_t je;
	json_t *job = json_load_file(argv[1], 0, &je);
	if (!job) {
		fprintf(stderr, "volley-compose: %s: %s (line %d)\n", argv[1], je.text, je.line);
		return 2;
	}
	struct msg_err e;
	struct msg_job *j = msg_job_compile(json_object_get(job, "content"),
					    json_object_get(job, "substitutions"),
					    json_object_get(job, "unsubscribe"), &o, &e);
	int rc = j ? render_all(j, json_object_get(job, "recipients"), argv[2],
				(time_t)date) : fail(&e, "");
	msg_job_free(j);
	json_decref(job);
	return rc;
}
