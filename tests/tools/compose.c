/*
 * volley-compose: a job's messages as message/ composes them, for tests.
 *   volley-compose JOB.json OUTDIR [--job-id ID] [--hostname H] [--date EPOCH]
 *                  [--max-size N] [--dkim-key PEM --dkim-domain D --dkim-selector S
 *                  [--dkim-key2 PEM --dkim-selector2 S2 [--dkim-domain2 D2]]
 *                  [--dkim-canon relaxed|simple] [--dkim-expire SECONDS]]
 * JOB.json holds content, substitutions, unsubscribe and recipients
 * [{email, name, substitutions}]; or, for a verbatim job (SMTP submission's
 * kind), "verbatim_file" (a file of message octets, compiled by
 * msg_job_compile_verbatim) and recipients. Each message goes to OUTDIR/<index>.eml
 * and a line {"index", "size", "iov", "smtputf8", "eightbit"} to stdout.
 * With a DKIM key each message is signed (t= is --date) and its
 * DKIM-Signature fields written before it.
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
		"[--hostname H] [--date EPOCH] [--max-size N] [--dkim-key PEM "
		"--dkim-domain D --dkim-selector S [--dkim-key2 PEM --dkim-selector2 S2 "
		"[--dkim-domain2 D2]] [--dkim-canon relaxed|simple] [--dkim-expire N]]\n");
	return 2;
}

/* DKIM signing as asked on the command line. */
struct dkim {
	const char *key[2], *domain[2], *selector[2], *canon;
	uint64_t expire;
	struct msg_dkim_key *k[2];
	size_t nk;
	struct vl_buf sig;
};
static struct dkim dk;

static int dkim_fail(const char *code, const char *why)
{
	struct msg_err e = {.field = "dkim"};

	snprintf(e.code, sizeof e.code, "%s", code);
	snprintf(e.message, sizeof e.message, "%s", why);
	return fail(&e, "");
}

static int dkim_arg(const char *opt, const char *val)
{
	static const char *const names[] = {"--dkim-key", "--dkim-domain", "--dkim-selector",
					    "--dkim-key2", "--dkim-domain2",
					    "--dkim-selector2"};
	const char **slots[] = {&dk.key[0], &dk.domain[0], &dk.selector[0], &dk.key[1],
				&dk.domain[1], &dk.selector[1]};
	for (size_t i = 0; i < VL_ARRAY_LEN(names); i++)
		if (!strcmp(opt, names[i]))
			return *slots[i] = val, 0;
	if (!strcmp(opt, "--dkim-canon") && (!strcmp(val, "relaxed") || !strcmp(val, "simple")))
		return dk.canon = val, 0;
	if (!strcmp(opt, "--dkim-expire"))
		return vl_parse_u64(val, &dk.expire);
	return -1;
}

static int dkim_load(void)
{
	char err[256];

	if (!dk.domain[1])
		dk.domain[1] = dk.domain[0];
	for (int i = 0; i < 2 && dk.key[i]; i++) {
		if (!dk.domain[i] || !dk.selector[i]) {
			fprintf(stderr, "volley-compose: --dkim-key%s needs a domain and a "
				"selector\n", i ? "2" : "");
			return 2;
		}
		if (!(dk.k[dk.nk++] = msg_dkim_key_load(dk.key[i], dk.domain[i],
							 dk.selector[i], err, sizeof err))) {
			return dkim_fail("dkim_key", err);
		}
	}
	vl_buf_init(&dk.sig);
	return 0;
}

static int dkim_sign(const struct msg_out *o, time_t date)
{
	struct msg_dkim_opts opts = {.t = date, .expire = (time_t)dk.expire};
	char err[256];

	if (dk.canon && !strcmp(dk.canon, "simple"))
		opts.hcanon = opts.bcanon = MSG_DKIM_SIMPLE;
	dk.sig.len = 0;
	if (msg_dkim_sign((const struct msg_dkim_key *const *)dk.k, dk.nk, &opts, o->iov,
			  o->niov, NULL, &dk.sig, err, sizeof err) < 0) {
		return -dkim_fail("dkim", err);
	}
	return 0;
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
	bool bad = dk.nk && write(fd, dk.sig.p, dk.sig.len) != (ssize_t)dk.sig.len;
	for (size_t k = 0; k < o->niov; k++)
		done += (size_t)write(fd, o->iov[k].iov_base, o->iov[k].iov_len);
	close(fd);
	return !bad && done == o->size ? 0 : -1;
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
		if ((dk.nk && dkim_sign(&o, date) < 0) || write_out(dir, i, &o) < 0)
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
	struct msg_job_opts o = {.job_id = "job1", .hostname = "mta.example.com", .max_size = 0};
	uint64_t date = 1795000000, max = 0;
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("volley-compose %s\n", VL_VERSION);
		return 0;
	}

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
		else if (dkim_arg(argv[i], argv[i + 1]) == 0)
			continue;
		else
			return usage();
	}
	int rc = dk.key[0] ? dkim_load() : 0;
	if (rc)
		return rc;
	json_error_t je;
	json_t *job = json_load_file(argv[1], 0, &je);
	if (!job) {
		fprintf(stderr, "volley-compose: %s: %s (line %d)\n", argv[1], je.text, je.line);
		return 2;
	}
	struct msg_err e;
	const char *vfile = json_string_value(json_object_get(job, "verbatim_file"));
	struct msg_job *j;
	if (vfile) {
		struct vl_buf m;
		if (vl_read_file(vfile, &m) < 0) {
			perror(vfile);
			json_decref(job);
			return 2;
		}
		j = msg_job_compile_verbatim(m.p, m.len, &o, &e);
		vl_buf_free(&m);
	} else {
		j = msg_job_compile(json_object_get(job, "content"),
				    json_object_get(job, "substitutions"),
				    json_object_get(job, "unsubscribe"), &o, &e);
	}
	rc = j ? render_all(j, json_object_get(job, "recipients"), argv[2],
				(time_t)date) : fail(&e, "");
	msg_job_free(j);
	json_decref(job);
	for (size_t i = 0; i < dk.nk; i++)
		msg_dkim_key_free(dk.k[i]);
	vl_buf_free(&dk.sig);
	return rc;
}
