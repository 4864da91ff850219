/*
 * A durable record of the submission log made into an ordinary spool job:
 * the recipient table, the message file, job.json (the fields the API
 * would store, with "raw_message": true in place of content), moved into
 * jobs/ without fsync (the record stays in its segment until a syncfs has
 * made the job durable), then handed to the registry so delivery starts.
 * The same record always makes the same job.json, so recovery may make a
 * job again that a crash left incomplete.
 */
#include "log_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REPORT_MAX 100            /* duplicates listed in the intake report */

/* expires_in as job.json shows it: "3600s" or "1500ms". */
static json_t *duration(uint64_t ms)
{
	char s[32];

	if (ms % 1000)
		snprintf(s, sizeof s, "%llums", (unsigned long long)ms);
	else
		snprintf(s, sizeof s, "%llus", (unsigned long long)(ms / 1000));
	return json_string(s);
}

static json_t *job_object(const struct sub_rec *r)
{
	json_t *j = json_pack("{s:s, s:b, s:s}", "envelope_sender", r->sender,
			      "raw_message", 1, "priority",
			      r->flags & SUB_F_TRANSACTIONAL ? "transactional" : "bulk");

	if (r->campaign)
		json_object_set_new(j, "campaign", json_string(r->campaign));
	if (r->flags & SUB_F_EXPIRES)
		json_object_set_new(j, "expires_in", duration(r->expires_in_ms));
	if (r->rate_limit)
		json_object_set_new(j, "rate_limit", json_string(r->rate_limit));
	if (r->flags & SUB_F_NO_DKIM)
		json_object_set_new(j, "dkim", json_false());
	if (r->flags & SUB_F_REQUIRE_TLS)
		json_object_set_new(j, "require_tls", json_true());
	return j;
}

json_t *sub_job_meta(const struct sub_rec *r, size_t stored, json_t *failed, json_t *errors)
{
	json_t *sub = json_pack("{s:s, s:I}", "protocol", "smtp", "size", (json_int_t)r->len);
	json_t *acc = json_pack("{s:s, s:I, s:I, s:I, s:O, s:O}", "id", r->id,
				"recipients", (json_int_t)stored, "success_count",
				(json_int_t)stored, "fail_count", (json_int_t)(r->nrcpt - stored),
				"failed_recipients", failed, "errors", errors);

	json_object_set_new(sub, "user", r->user ? json_string(r->user) : json_null());
	json_object_set_new(sub, "client", r->client ? json_string(r->client) : json_null());
	return json_pack("{s:s, s:f, s:f, s:I, s:o, s:o, s:o}", "id", r->id,
			 "created", r->created,
			 "expires", r->created + (double)r->expires_in_ms / 1000.0,
			 "recipients", (json_int_t)stored, "job", job_object(r),
			 "accept", acc, "submission", sub);
}

/* Is jobs/<id> whole: job.json readable, its table whole with as many
 * recipients as job.json says, the message as long as the record's? A
 * crash before the syncfs may have kept the rename and lost a file. */
static bool complete(struct sched_spool *sp, const struct sub_rec *r)
{
	char path[PATH_MAX];
	struct stat st;
	json_t *meta = NULL;
	struct sched_table *t = NULL;
	bool ok = false;

	if (sched_spool_path(sp, r->id, SCHED_SPOOL_MESSAGE, path, sizeof path) < 0 ||
	    stat(path, &st) < 0 || (uint64_t)st.st_size != r->len)
		return false;
	if (sched_spool_path(sp, r->id, SCHED_SPOOL_JOB, path, sizeof path) == 0)
		meta = json_load_file(path, 0, NULL);
	if (meta && (t = sched_table_open(sp, r->id)))
		ok = sched_table_count(t) ==
		     (size_t)json_integer_value(json_object_get(meta, "recipients"));
	sched_table_close(t);
	json_decref(meta);
	return ok;
}

static bool known(struct sched *sc, const char *id)
{
	json_t *j = sc ? sched_job_json(sc, id) : NULL;

	json_decref(j);
	return j != NULL;
}

/* Recipients into the table; duplicates (the same address twice in one
 * envelope) are stored once and named in the report, as the API does. */
static int add_rcpts(struct sched_intake *in, const struct sub_rec *r, json_t *failed,
		     json_t *errors)
{
	for (size_t i = 0; i < r->nrcpt; i++) {
		struct sched_rcpt sr = { .email = r->rcpts[i], .email_len = strlen(r->rcpts[i]) };
		size_t first;
		int rc = sched_intake_add(in, &sr, &first);
		if (rc < 0)
			return -1;
		if (rc == 1 && json_array_size(errors) < REPORT_MAX) {
			char msg[400];
			snprintf(msg, sizeof msg, "recipients[%zu].email: %s is a duplicate of "
				 "recipients[%zu]", i, r->rcpts[i], first);
			json_array_append_new(failed, json_string(r->rcpts[i]));
			json_array_append_new(errors, json_string(msg));
		}
	}
	return 0;
}

static int make(struct sched_spool *sp, struct sched *sc, const struct sub_rec *r,
		bool tell)
{
	char err[300];
	struct sched_intake *in = sched_intake_begin(sp, r->id, err, sizeof err);
	json_t *failed = json_array(), *errors = json_array(), *meta = NULL;
	int rc = -1, e = 0;

	if (!in) {
		e = errno ? errno : EIO;
		goto out;
	}
	if (add_rcpts(in, r, failed, errors) < 0 || sched_intake_message(in, r->msg, r->len) < 0) {
		e = errno;
		sched_intake_abort(in);
		goto out;
	}
	meta = sub_job_meta(r, sched_intake_count(in), failed, errors);
	char *text = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
	if (!text) {             /* not UTF-8 where JSON needs it: put checks it */
		e = EINVAL;
		sched_intake_abort(in);
		goto out;
	}
	rc = sched_intake_commit_nosync(in, text, strlen(text));
	e = errno;
	free(text);
	if (rc == 0 && tell)
		sched_job_add(sc, r->id, meta);
out:
	json_decref(meta);
	json_decref(failed);
	json_decref(errors);
	errno = e;
	return rc;
}

int sub_job_make(struct sched_spool *sp, struct sched *sc, const struct sub_rec *r,
		 bool recovering)
{
	char path[PATH_MAX];
	struct stat st;

	if (!recovering)
		return make(sp, sc, r, sc != NULL);
	if (sched_spool_path(sp, r->id, SCHED_SPOOL_DIR, path, sizeof path) < 0)
		return -1;
	if (stat(path, &st) == 0) {
		if (complete(sp, r)) {
			if (sc && !known(sc, r->id)) {
				json_t *meta = NULL;
				if (sched_spool_path(sp, r->id, SCHED_SPOOL_JOB, path,
						     sizeof path) == 0)
					meta = json_load_file(path, 0, NULL);
				if (meta)
					sched_job_add(sc, r->id, meta);
				json_decref(meta);
			}
			return 1;
		}
		vl_log(VL_LOG_WARN, "submit: job %s was left incomplete by a crash: made "
		       "again from the submission log", r->id);
		if (sched_spool_remove(sp, r->id) < 0)
			return -1;
	}
	/* the registry may know it already (loaded incomplete): not twice */
	return make(sp, sc, r, sc != NULL && !known(sc, r->id));
}
