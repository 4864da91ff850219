/*
 * volley submit: the job as application/json, or, with --recipients, as a
 * chunked application/x-ndjson stream (job line, the job's own recipients,
 * then the list) produced while curl sends it, so a list of millions never
 * sits in memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum { ST_HEAD, ST_INLINE, ST_LIST, ST_END };

struct upload {
	json_t *job;             /* without recipients */
	json_t *inl;             /* the job's own recipients, or NULL */
	size_t next;
	int stage;
	FILE *list;
	const char *path;
	bool is_csv;
	struct cli_csv csv;
	char **cols;             /* CSV header names */
	size_t ncols;
	long email, name;        /* their columns; -1 for none */
	char *pend;              /* produced, not yet handed to curl */
	size_t plen, poff, pcap;
};

static void pend_add(struct upload *u, const char *p, size_t n)
{
	if (u->plen + n > u->pcap) {
		size_t cap = u->pcap ? u->pcap : 65536;
		while (cap < u->plen + n)
			cap *= 2;
		char *q = vl_realloc(u->pend, cap);
		u->pend = q;
		u->pcap = cap;
	}
	memcpy(u->pend + u->plen, p, n);
	u->plen += n;
}

static int dump_cb(const char *p, size_t n, void *arg)
{
	pend_add(arg, p, n);
	return 0;
}

static void pend_json(struct upload *u, const json_t *v)
{
	json_dump_callback(v, dump_cb, u, JSON_COMPACT);
	pend_add(u, "\n", 1);
}

static size_t field_len(const struct cli_csv *c, size_t i)
{
	size_t end = i + 1 < c->nf ? c->off[i + 1] : c->len;

	return end - c->off[i] - 1;
}

/* One CSV record as a recipient object; NULL after printing why. */
static json_t *csv_recipient(struct upload *u)
{
	json_t *o = json_object(), *subs = json_object();

	for (size_t i = 0; i < u->ncols; i++) {
		size_t n = field_len(&u->csv, i);
		json_t *s = json_stringn(cli_csv_field(&u->csv, i), n);
		if (!s) {
			cli_err("%s: line %lu: column %s: not valid UTF-8", u->path,
				u->csv.line, u->cols[i]);
			json_decref(o);
			json_decref(subs);
			return NULL;
		}
		/* Every column but email is a substitution key (the header row
		 * names them); name is also the recipient's display name. */
		if ((long)i == u->email) {
			json_object_set_new(o, "email", s);
			continue;
		}
		if ((long)i == u->name && n)
			json_object_set(o, "name", s);
		if (*u->cols[i])
			json_object_set(subs, u->cols[i], s);
		json_decref(s);
	}
	if (json_object_size(subs))
		json_object_set(o, "substitutions", subs);
	json_decref(subs);
	return o;
}

/* The next CSV record into pend: 1, 0 at the end, -1 on an error. */
static int next_csv(struct upload *u)
{
	char err[256];

	for (;;) {
		int r = cli_csv_read(&u->csv, err, sizeof(err));
		if (r < 0 || (r == 0 && ferror(u->list))) {
			cli_err("%s: %s", u->path, r < 0 ? err : strerror(errno));
			return -1;
		}
		if (r == 0)
			return 0;
		if (u->csv.nf == 1 && !field_len(&u->csv, 0))
			continue;        /* a blank line */
		if (u->csv.nf != u->ncols) {
			cli_err("%s: line %lu: %zu fields, the header has %zu", u->path,
				u->csv.line, u->csv.nf, u->ncols);
			return -1;
		}
		json_t *o = csv_recipient(u);
		if (!o)
			return -1;
		pend_json(u, o);
		json_decref(o);
		return 1;
	}
}

static int next_ndjson(struct upload *u)
{
	char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf), u->list);

	if (!n && ferror(u->list)) {
		cli_err("%s: %s", u->path, strerror(errno));
		return -1;
	}
	pend_add(u, buf, n);
	return n > 0;
}

/* Produce the next piece of the body into pend: 1, 0 at the end, -1. */
static int refill(struct upload *u)
{
	switch (u->stage) {
	case ST_HEAD:
		pend_json(u, u->job);
		u->stage = ST_INLINE;
		return 1;
	case ST_INLINE:
		if (u->next < json_array_size(u->inl)) {
			pend_json(u, json_array_get(u->inl, u->next++));
			return 1;
		}
		u->stage = ST_LIST;
		/* fall through */
	case ST_LIST: {
		int r = u->is_csv ? next_csv(u) : next_ndjson(u);
		if (r == 0)
			u->stage = ST_END;
		return r;
	}
	default:
		return 0;
	}
}

/* curl's read function: copy out pend, refilling it as it empties. */
static size_t up_read(char *buf, size_t len, void *arg)
{
	struct upload *u = arg;
	size_t out = 0;

	while (out < len) {
		if (u->poff == u->plen) {
			u->poff = u->plen = 0;
			int r = refill(u);
			if (r < 0)
				return CLI_READ_ABORT;
			if (r == 0)
				break;
			continue;
		}
		size_t n = u->plen - u->poff < len - out ? u->plen - u->poff : len - out;
		memcpy(buf + out, u->pend + u->poff, n);
		u->poff += n;
		out += n;
	}
	return out;
}

static char *trim(char *s)
{
	size_t n = strlen(s);

	while (*s == ' ' || *s == '\t')
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = 0;
	return s;
}

/* The header row: names kept, email (required) and name columns found. */
static int csv_header(struct upload *u)
{
	char err[256];
	int r = cli_csv_read(&u->csv, err, sizeof(err));

	if (r <= 0) {
		cli_err("%s: %s", u->path, r < 0 ? err : "empty; a CSV list starts with a header row");
		return -1;
	}
	u->ncols = u->csv.nf;
	u->cols = vl_calloc(u->ncols, sizeof(*u->cols));
	u->email = u->name = -1;
	for (size_t i = 0; u->cols && i < u->ncols; i++) {
		u->cols[i] = vl_strdup(trim(u->csv.buf + u->csv.off[i]));
		if (!strcasecmp(u->cols[i], "email") && u->email < 0)
			u->email = (long)i;
		else if (!strcasecmp(u->cols[i], "name") && u->name < 0)
			u->name = (long)i;
	}
	if (u->email < 0) {
		cli_err("%s: no email column: the header row (line 1) must name one", u->path);
		return -1;
	}
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && !strcasecmp(s + n - k, suffix);
}

static int open_list(struct upload *u, const char *path)
{
	u->path = path;
	u->is_csv = ends_with(path, ".csv");
	if (!u->is_csv && !ends_with(path, ".ndjson") && !ends_with(path, ".jsonl")) {
		cli_err("%s: unknown list format: name it .csv or .ndjson", path);
		return -1;
	}
	u->list = fopen(path, "r");
	if (!u->list) {
		cli_err("%s: %s", path, strerror(errno));
		return -1;
	}
	u->csv.f = u->list;
	u->csv.path = path;
	return u->is_csv ? csv_header(u) : 0;
}

static void upload_free(struct upload *u)
{
	if (u->list)
		fclose(u->list);
	for (size_t i = 0; u->cols && i < u->ncols; i++)
		free(u->cols[i]);
	free(u->cols);
	cli_csv_free(&u->csv);
	free(u->pend);
	json_decref(u->inl);
}

/* --dry-run: the body to stdout instead of the daemon. */
static int dry_run(struct upload *u)
{
	char buf[65536];
	size_t n;

	while ((n = up_read(buf, sizeof(buf), u)) != 0) {
		if (n == CLI_READ_ABORT)
			return CLI_USAGE;
		fwrite(buf, 1, n, stdout);
	}
	return CLI_OK;
}

static int send_stream(const struct cli *c, json_t *job, struct cli_resp *rs)
{
	struct upload u = {.job = job};
	struct cli_req rq = {.method = "POST", .path = "/v1/jobs",
			     .ctype = "application/x-ndjson", .read = up_read,
			     .read_arg = &u, .idem_key = c->idem_key};
	int rc = CLI_USAGE;

	u.inl = json_incref(json_object_get(job, "recipients"));
	if (json_is_array(u.inl))
		json_object_del(job, "recipients");
	else
		u.inl = (json_decref(u.inl), NULL);
	if (open_list(&u, c->recipients) == 0)
		rc = c->dry_run ? dry_run(&u) : cli_request(c, &rq, rs);
	upload_free(&u);
	return rc;
}

static int send_json(const struct cli *c, json_t *job, struct cli_resp *rs)
{
	char *body = json_dumps(job, JSON_COMPACT);
	struct cli_req rq = {.method = "POST", .path = "/v1/jobs",
			     .ctype = "application/json", .body = body,
			     .body_len = body ? strlen(body) : 0, .idem_key = c->idem_key};

	if (!body) {
		cli_err("out of memory");
		return CLI_FAILED;
	}
	int rc = CLI_OK;
	if (c->dry_run)
		printf("%s\n", body);
	else
		rc = cli_request(c, &rq, rs);
	free(body);
	return rc;
}

static json_t *load_job(const char *path)
{
	json_error_t e;
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;

	if (!f) {
		cli_err("%s: %s", path, strerror(errno));
		return NULL;
	}
	json_t *job = json_loadf(f, 0, &e);
	if (f != stdin)
		fclose(f);
	if (!job)
		cli_err("%s: line %d column %d: %s", path, e.line, e.column, e.text);
	else if (!json_is_object(job))
		cli_err("%s: a job is a JSON object", path);
	if (job && !json_is_object(job))
		job = (json_decref(job), NULL);
	return job;
}

static void print_dropped(const json_t *ans)
{
	json_int_t fail = json_integer_value(json_object_get(ans, "fail_count"));
	const json_t *errs = json_object_get(ans, "errors"), *v;
	size_t i;

	if (fail > 0)
		cli_err("%lld recipient%s dropped (duplicates):", (long long)fail,
			fail == 1 ? "" : "s");
	json_array_foreach(errs, i, v)
		fprintf(stderr, "  %s\n", json_string_value(v) ? json_string_value(v) : "?");
	if (fail > (json_int_t)json_array_size(errs) && json_array_size(errs))
		fprintf(stderr, "  ... and %lld more\n",
			(long long)(fail - (json_int_t)json_array_size(errs)));
}

/* Print the 202 answer; the job id into *id (malloc'd). */
static int report(const struct cli *c, const struct cli_resp *rs, char **id)
{
	json_t *ans = json_loadb(rs->body ? rs->body : "", rs->len, 0, NULL);
	const char *jid = json_string_value(json_object_get(ans, "id"));

	if (!jid) {
		cli_err("volleyd accepted the job but its answer has no id: %.200s",
			rs->body ? rs->body : "");
		json_decref(ans);
		return CLI_FAILED;
	}
	if (c->json)
		printf("%.*s%s", (int)rs->len, rs->body, rs->body[rs->len - 1] == '\n' ? "" : "\n");
	else
		printf("%s\n", jid);
	fflush(stdout);
	if (rs->replayed)
		cli_err("idempotency key seen before: job %s was accepted earlier; nothing new stored",
			jid);
	print_dropped(ans);
	*id = vl_strdup(jid);
	json_decref(ans);
	return *id ? CLI_OK : CLI_FAILED;
}

static int check_key(const char *k)
{
	size_t n = strlen(k);

	for (const char *p = k; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			n = 0;
	if (n == 0 || n > 128) {
		cli_err("--idempotency-key: 1 to 128 printable ASCII characters");
		return -1;
	}
	return 0;
}

int cli_submit(const struct cli *c)
{
	struct cli_resp rs = {0};
	char *id = NULL;
	int rc;

	if (c->idem_key && check_key(c->idem_key) < 0)
		return CLI_USAGE;
	json_t *job = load_job(c->args[0]);
	if (!job)
		return CLI_USAGE;
	rc = c->recipients ? send_stream(c, job, &rs) : send_json(c, job, &rs);
	json_decref(job);
	if (rc == CLI_OK && !c->dry_run)
		rc = report(c, &rs, &id);
	cli_resp_free(&rs);
	if (rc == CLI_OK && c->wait)
		rc = cli_wait_job(c, id);
	free(id);
	return rc;
}
