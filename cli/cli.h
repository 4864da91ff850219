/*
 * The volley CLI (build/volley): a libcurl client of volleyd's HTTP API
 * (docs/api.md). Private to cli/. Prefix: cli_.
 */
#ifndef VOLLEY_CLI_H
#define VOLLEY_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "../common/common.h"


enum {
	CLI_OK = 0,
	CLI_FAILED = 1,       /* the daemon answered 4xx/5xx */
	CLI_USAGE = 2,
	CLI_UNREACHABLE = 3,
	CLI_INTERRUPTED = 130 /* Ctrl-C, as a shell reports SIGINT */
};

#define CLI_MAX_ARGS 4

struct cli {
	const char *socket, *data_dir, *url, *token;
	const char *recipients, *idem_key, *job;
	const char *date;         /* tls-report --date */
	long limit;
	bool json, wait, watch, follow, dry_run;
	bool send;                /* tls-report --send */
	bool unmatched;           /* feedback --unmatched */
	bool cluster;             /* jobs --cluster: every node's */
	bool tty;                 /* stdout is a terminal */
	const char *cmd;
	const char *args[CLI_MAX_ARGS];
	int nargs;
};

extern volatile sig_atomic_t cli_interrupted;
/* A progress line is on screen without its line end (cli_err ends it). */
extern bool cli_bar_open;

/* ---- HTTP (cli_http.c) ---- */

/* Streamed request body: fill buf, return bytes (0 at the end) or
 * CLI_READ_ABORT after printing why. */
#define CLI_READ_ABORT ((size_t)-1)
typedef size_t (*cli_read_fn)(char *buf, size_t len, void *arg);
/* One line of a streamed 2xx answer, without its line end. */
typedef void (*cli_line_fn)(const char *line, size_t len, void *arg);

struct cli_req {
	const char *method, *path;
	const char *ctype;                /* with a body */
	const char *body;                 /* fixed body of body_len octets ... */
	size_t body_len;
	cli_read_fn read;                 /* ... or a chunked one */
	void *read_arg;
	cli_line_fn line;                 /* NDJSON answer, line by line */
	void *line_arg;
	const char *idem_key;
	bool endless;                     /* no stall limit (events -f) */
};

struct cli_resp {
	long status;
	char *body;                       /* NUL-terminated, unless streamed */
	size_t len, cap;
	bool replayed;                    /* Idempotent-Replayed: true */
	char retry_after[32];
};

/* One request. CLI_OK for a 2xx answer; otherwise the error is printed and
 * the exit code returned (FAILED, UNREACHABLE, INTERRUPTED, or USAGE when
 * the read function aborted). */
int cli_request(const struct cli *c, const struct cli_req *rq, struct cli_resp *rs);
void cli_resp_free(struct cli_resp *rs);
/* GET path and parse the JSON answer; NULL with *rc set on failure. */
json_t *cli_get_json(const struct cli *c, const char *path, int *rc);
/* POST without a body and parse the answer. */
json_t *cli_post_json(const struct cli *c, const char *path, int *rc);
/* Any method without a body (PUT, DELETE) and parse the answer. */
json_t *cli_call_json(const struct cli *c, const char *method, const char *path, int *rc);
/* s percent-encoded for a path or query, malloc'd. */
char *cli_escape(const char *s);
/* "/v1/jobs/<escaped id><suffix>" into a malloc'd string. */
char *cli_job_path(const char *id, const char *suffix);
/* The Unix socket this run talks to. */
const char *cli_socket_path(const struct cli *c);
void cli_http_cleanup(void);

/* ---- helpers (cli.c) ---- */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a JSON value on one line. */
void cli_print_json(const json_t *v);
/* Sleep ms unless interrupted; false when interrupted. */
bool cli_sleep_ms(long ms);

/* ---- CSV (cli_csv.c) ---- */
struct cli_csv {
	FILE *f;
	const char *path;
	unsigned long line;      /* line the current record started on */
	unsigned long next_line;
	char *buf;               /* fields, each NUL-terminated */
	size_t len, cap;
	size_t *off;             /* offset of each field in buf */
	size_t nf, fcap;
	bool started;
};
/* 1: a record; 0: end of file; -1: malformed (reason in err). */
int cli_csv_read(struct cli_csv *c, char *err, size_t errlen);
static inline const char *cli_csv_field(const struct cli_csv *c, size_t i)
{
	return c->buf + c->off[i];
}
void cli_csv_free(struct cli_csv *c);

/* ---- commands ---- */
int cli_submit(const struct cli *c);
int cli_jobs(const struct cli *c);
/* Jobs as a table (with_node: a NODE column first) or, with --json, one a line. */
void cli_jobs_print(const struct cli *c, const json_t *jobs, bool with_node);
int cli_cluster_jobs(const struct cli *c);  /* jobs --cluster (cli_cluster.c) */
int cli_status(const struct cli *c);
int cli_control(const struct cli *c);   /* cancel, pause, resume */
int cli_queues(const struct cli *c);
int cli_events(const struct cli *c);
int cli_stats(const struct cli *c);
int cli_bounces(const struct cli *c);
int cli_health(const struct cli *c);
int cli_tls_check(const struct cli *c);
int cli_tls_report(const struct cli *c);
int cli_suppression(const struct cli *c);   /* list, add, remove, import */
int cli_feedback(const struct cli *c);      /* list, domains, resume-domain */
int cli_dkim(int argc, char **argv);  /* "volley dkim ...": argv[0] is "dkim" */
int cli_user(int argc, char **argv);  /* "volley user ...": the users file, no daemon */
/* "volley feedback parse ...": argv[0] is "parse"; reads files, no daemon (cli_fbparse.c) */
int cli_fbparse(int argc, char **argv);
/* "volley doctor ...": argv[0] is "doctor"; DNS and the configuration, no daemon (cli_doctor.c) */
int cli_doctor(int argc, char **argv);
/* Poll the job until done (cli_wait.c). */
int cli_wait_job(const struct cli *c, const char *id);

/* ---- tables (cli_table.c) ---- */
struct cli_table {
	size_t ncols, nrows, cap;
	const char **head;
	const bool *right;       /* right-aligned columns */
	char **cells;            /* nrows * ncols, malloc'd */
};
void cli_table_init(struct cli_table *t, size_t ncols, const char **head, const bool *right);
/* Append a row of ncols strings (copied; NULL prints as "-"). */
void cli_table_row(struct cli_table *t, const char **cells);
void cli_table_print(struct cli_table *t, FILE *out);
void cli_table_free(struct cli_table *t);
/* The number at key (missing or null: "-") into buf. */
const char *cli_jnum(const json_t *obj, const char *key, char *buf, size_t len);
/* The string at key, or "-". */
const char *cli_jstr(const json_t *obj, const char *key);

#endif
