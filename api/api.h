/*
 * api: the HTTP/JSON API on the Unix socket (http.c) and job intake
 * (intake.c): validation, composition and durable storage of submitted
 * jobs. The volley CLI lives here too (cli*.c) but is its own program.
 * Prefix: api_.
 */
#ifndef VOLLEY_API_H
#define VOLLEY_API_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "../common/common.h"
#include "../scheduler/scheduler.h"

/* An error as the API answers it. */
struct api_error {
	int status;              /* 400, 404, 409, 413, 415, 503, ... */
	char code[40];
	char field[160];         /* "" when no field is to blame */
	char message[400];
	/* Invalid recipients of a refused job: a JSON array of {index, line,
	 * email, code, field, message} as text ("" when none), so the error
	 * stays a plain value to copy. */
	char invalid[16384];
	size_t ninvalid;         /* how many there were (the array may list fewer) */
};
/* {"error": {code, message, field[, invalid_count, invalid_recipients]}} */
json_t *api_error_json(const struct api_error *e);

/* ---- intake: one submitted job, fed as it arrives ----
 * spool NULL validates without storing (the fuzzer does that). */
struct api_intake;
struct api_intake *api_intake_new(const struct cfg *c, struct sched_spool *spool,
				  bool ndjson, const char *idempotency_key);
/* 0, or -1 once the job has failed (the error is kept; later data is
 * discarded, so the caller may simply go on feeding). */
int api_intake_feed(struct api_intake *in, const char *data, size_t len);
/* End of the body: validate what is left, then store durably. 0 with
 * *accept (the 202 answer) and *meta (job.json) set; -1 on error. */
int api_intake_finish(struct api_intake *in, json_t **accept, json_t **meta);
const struct api_error *api_intake_error(const struct api_intake *in);
const char *api_intake_id(const struct api_intake *in);
size_t api_intake_bytes(const struct api_intake *in);
/* Frees; removes whatever was written unless the job was committed. */
void api_intake_free(struct api_intake *in);

/* ---- the server ---- */
struct api;
struct api *api_start(const struct cfg *c, struct sched *sc,
		      struct sched_spool *spool, struct sched_suppress *sup,
		      struct sched_events *ev, char *err, size_t errlen);
/* TLS-RPT's reports for GET /v1/tls-report and POST /v1/tls-report/send
 * (NULL: reporting is off, they answer 404). */
struct api_tlsrpt;
void api_set_tlsrpt(struct api *a, struct api_tlsrpt *t);

/* Lines that other parts of volleyd add to GET /metrics (Prometheus text
 * format, appended to out), in the order added. Add before requests
 * arrive; -1 when API_METRICS_MAX are there. */
#define API_METRICS_MAX 8
typedef void (*api_metrics_fn)(void *arg, struct vl_buf *out);
int api_add_metrics(struct api *a, api_metrics_fn fn, void *arg);

/* New submissions get 503 shutting_down from now on. */
void api_drain(struct api *a);
void api_stop(struct api *a);

/* ---- TLS-RPT (tlsrpt.c): reports and their daily sender ----
 * A thread that writes st's aggregates every minute and, once a UTC day is
 * over, sends each domain's report to its _smtp._tls rua (https through
 * libcurl, resolved by eng's resolver; mailto as a job through intake). */
struct api_tlsrpt *api_tlsrpt_start(const struct cfg *c, struct sched *sc,
				    struct sched_spool *spool, struct engine *eng,
				    struct rpt_store *st, char *err, size_t errlen);
/* Joins the thread (a send under way ends first: 10 s at most per URI). */
void api_tlsrpt_stop(struct api_tlsrpt *t);
/* The report of domain on date ("YYYY-MM-DD"; NULL: today, UTC), or with
 * send, what sending it now did. NULL with e filled (400, 404). */
json_t *api_tlsrpt_answer(struct api_tlsrpt *t, const char *domain, const char *date,
			  bool send, struct api_error *e);

#endif
