/*
 * volley feedback parse FILE...: runs the feedback parser (feedback/,
 * docs/feedback.md) on stored messages (maildir files) and prints what it
 * found and which job and recipient the report points at, by volley's own
 * marks: the VERP return path first, then the returned Message-ID. Needs
 * no daemon: it reads the files only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../feedback/feedback.h"
#include "cli.h"

static const char usage_line[] = "usage: volley feedback parse [--json] FILE...";

static const char help_text[] =
	"Parse stored messages (maildir files, '-': standard input) as feedback\n"
	"reports (RFC 3464 DSNs, RFC 5965 ARF, plain bounces) and show the job and\n"
	"recipient each one points at (by VERP return path, else by Message-ID).\n"
	"Needs no daemon.\n"
	"  --json  one JSON object a file, on one line each\n"
	"exit codes: 0 every file parsed, 1 a file unreadable, too large or broken,\n"
	"2 usage. More: volley(1), docs/cli.md.\n";

struct fbp_match {
	char job[FB_JOB_ID_LEN + 1];
	size_t index;
	bool has_index;
	const char *by;           /* "verp", "message-id" or "none" */
};

/* Reads f to its end, or to max + 1 octets (then *len > max: too long). */
static void slurp(FILE *f, size_t max, char **out, size_t *len)
{
	size_t cap = 65536, n = 0, got;
	char *buf = vl_malloc(cap);

	do {
		if (n == cap) {
			cap = cap > max / 2 ? max + 1 : cap * 2;
			buf = vl_realloc(buf, cap);
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got && n <= max);
	*out = buf;
	*len = n;
}

/* The whole file (or standard input) into a malloc'd buffer, at most max
 * octets; -1 with err when it cannot be read or is longer. */
static int read_all(const char *path, size_t max, char **out, size_t *len, char *err,
		    size_t errlen)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	struct stat st;

	*out = NULL;
	err[0] = '\0';
	if (!f) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "is a folder");
	} else {
		slurp(f, max, out, len);
		if (ferror(f))
			snprintf(err, errlen, "read error: %s", strerror(errno));
		else if (*len > max)
			snprintf(err, errlen, "longer than %zu octets (the parser's max_size)",
				 max);
	}
	if (f != stdin)
		fclose(f);
	if (!err[0])
		return 0;
	free(*out);
	*out = NULL;
	return -1;
}

/* The order docs/feedback.md gives: the VERP address (the report's
 * envelope recipient, or an ARF's Original-Mail-From), then the returned
 * Message-ID. */
static void fbp_match(const struct fb_report *r, struct fbp_match *m)
{
	const char *verp[] = {r->envelope_to, r->orig_mail_from};

	memset(m, 0, sizeof(*m));
	m->by = "none";
	if (r->kind == FB_NOT_REPORT)
		return;
	for (size_t i = 0; i < sizeof(verp) / sizeof(verp[0]); i++)
		if (verp[i] && fb_match_verp(verp[i], m->job, &m->index)) {
			m->has_index = true;
			m->by = "verp";
			return;
		}
	if (r->orig_msgid && fb_match_msgid(r->orig_msgid, m->job, &m->index, &m->has_index))
		m->by = "message-id";
	else
		m->job[0] = '\0';
}

/* Octets in a valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = p[0] < 0x80 ? 1 : p[0] >= 0xC2 && p[0] <= 0xDF ? 2
		 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;

	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] > 0x9F) ||
	    (p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] > 0x8F))
		return 0;
	return n;
}

/* A JSON string of s, or null; each octet that starts no valid UTF-8
 * sequence (the parser keeps raw values) becomes '?'. */
static json_t *jstr(const char *s)
{
	if (!s)
		return json_null();
	json_t *v = json_string(s);
	if (v)
		return v;
	char *c = vl_strdup(s);
	for (unsigned char *p = (unsigned char *)c; *p;) {
		size_t n = utf8_len(p);
		if (!n)
			*p = '?';
		p += n ? n : 1;
	}
	v = json_string(c);
	free(c);
	return v ? v : json_null();
}

static json_t *rcpt_json(const struct fb_rcpt *x)
{
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "final_rcpt", jstr(x->final_rcpt),
			 "orig_rcpt", jstr(x->orig_rcpt),
			 "action", x->action ? jstr(fb_action_name(x->action)) : json_null(),
			 "status", x->status[0] ? jstr(x->status) : json_null(),
			 "diag_type", jstr(x->diag_type), "diagnostic", jstr(x->diag),
			 "remote_mta", jstr(x->remote_mta));
}

static json_t *match_json(const struct fbp_match *m)
{
	return json_pack("{s:o,s:o,s:s}", "job", m->job[0] ? jstr(m->job) : json_null(),
			 "index", m->has_index ? json_integer((json_int_t)m->index) : json_null(),
			 "by", m->by);
}

static json_t *report_json(const char *path, const struct fb_report *r,
			   const struct fbp_match *m, const char *err)
{
	json_t *o = json_pack("{s:o,s:o,s:o}", "file", jstr(path),
			      "kind", err ? json_null() : jstr(fb_kind_name(r->kind)),
			      "error", err ? jstr(err) : json_null());
	if (err)
		return o;
	json_t *rc = json_array(), *ort = json_array();
	for (size_t i = 0; i < r->nrcpts; i++)
		json_array_append_new(rc, rcpt_json(&r->rcpts[i]));
	for (size_t i = 0; i < r->norig_rcpt_to; i++)
		json_array_append_new(ort, jstr(r->orig_rcpt_to[i]));
	json_object_update_new(o, json_pack(
		"{s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
		"envelope_to", jstr(r->envelope_to), "from", jstr(r->from),
		"subject", jstr(r->subject), "reporting_mta", jstr(r->reporting_mta),
		"arrival_date", jstr(r->arrival_date), "recipients", rc,
		"truncated", r->truncated, "feedback_type", jstr(r->feedback_type),
		"user_agent", jstr(r->user_agent), "orig_mail_from", jstr(r->orig_mail_from),
		"orig_rcpt_to", ort, "source_ip", jstr(r->source_ip),
		"reported_domain", jstr(r->reported_domain), "orig_msgid", jstr(r->orig_msgid)));
	json_object_update_new(o, json_pack("{s:o,s:o,s:o,s:o,s:o}", "version", jstr(r->version),
					    "orig_from", jstr(r->orig_from),
					    "orig_to", jstr(r->orig_to),
					    "orig_subject", jstr(r->orig_subject),
					    "match", match_json(m)));
	return o;
}

/* The table's rows of one file: one a recipient (a DSN's or the
 * heuristic's, an ARF's Original-Rcpt-To), at least one. */
static void table_rows(struct cli_table *t, const char *path, const struct fb_report *r,
		       const struct fbp_match *m, const char *err)
{
	char idx[24] = "-";
	const char *kind = err ? "error" : fb_kind_name(r->kind);
	const char *job = m && m->job[0] ? m->job : "-", *by = m ? m->by : "-";
	size_t n = err ? 0 : r->kind == FB_ARF ? r->norig_rcpt_to : r->nrcpts;

	if (m && m->has_index)
		snprintf(idx, sizeof(idx), "%zu", m->index);
	for (size_t i = 0; i == 0 || i < n; i++) {
		const char *rcpt = NULL, *what = err, *status = NULL;
		if (!err && r->kind == FB_ARF) {
			rcpt = n ? r->orig_rcpt_to[i] : NULL;
			what = r->feedback_type;
		} else if (n) {
			rcpt = r->rcpts[i].final_rcpt ? r->rcpts[i].final_rcpt
						      : r->rcpts[i].orig_rcpt;
			what = r->rcpts[i].action ? fb_action_name(r->rcpts[i].action) : NULL;
			status = r->rcpts[i].status[0] ? r->rcpts[i].status : NULL;
		}
		const char *row[] = {path, kind, rcpt, what, status, job, idx, by};
		cli_table_row(t, row);
	}
}

/* One file: parsed, printed (JSON) or added to the table. */
static int parse_file(const char *path, bool json, struct cli_table *t)
{
	struct fb_opts o;
	struct fb_report r = {0};
	struct fbp_match m = {.by = "none"};
	char err[256] = "", *msg = NULL;
	size_t len = 0;
	int rc;

	fb_opts_default(&o);
	rc = read_all(path, o.max_size, &msg, &len, err, sizeof(err));
	if (rc == 0)
		rc = fb_parse(msg, len, &o, &r, err, sizeof(err));
	free(msg);
	if (rc == 0)
		fbp_match(&r, &m);
	else
		cli_err("%s: %s", path, err);
	if (json) {
		json_t *v = report_json(path, &r, &m, rc ? err : NULL);
		cli_print_json(v);
		json_decref(v);
	} else {
		table_rows(t, path, &r, rc ? NULL : &m, rc ? err : NULL);
	}
	fb_report_free(&r);
	return rc ? CLI_FAILED : CLI_OK;
}

int cli_fbparse(int argc, char **argv)
{
	static const char *head[] = {"FILE", "KIND", "RECIPIENT", "ACTION", "STATUS",
				     "JOB", "INDEX", "BY"};
	static const bool right[] = {0, 0, 0, 0, 0, 0, 1, 0};
	const char **files = vl_calloc(argc > 0 ? (size_t)argc : 1, sizeof(*files));
	int nfiles = 0, rc = CLI_OK;
	bool json = false, rest = false;

	for (int i = 1; i < argc; i++) {
		if (!rest && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
			printf("%s\n\n%s", usage_line, help_text);
			free(files);
			return CLI_OK;
		} else if (!rest && !strcmp(argv[i], "--json")) {
			json = true;
		} else if (!rest && !strcmp(argv[i], "--")) {
			rest = true;
		} else if (!rest && argv[i][0] == '-' && argv[i][1]) {
			cli_err("feedback parse: unknown option %s; %s", argv[i], usage_line);
			free(files);
			return CLI_USAGE;
		} else {
			files[nfiles++] = argv[i];
		}
	}
	if (!nfiles) {
		cli_err("feedback parse: no FILE; %s", usage_line);
		free(files);
		return CLI_USAGE;
	}
	struct cli_table t;
	cli_table_init(&t, 8, head, right);
	for (int i = 0; i < nfiles && !cli_interrupted; i++)
		if (parse_file(files[i], json, &t) != CLI_OK)
			rc = CLI_FAILED;
	if (!json)
		cli_table_print(&t, stdout);
	cli_table_free(&t);
	free(files);
	return cli_interrupted ? CLI_INTERRUPTED : rc;
}
