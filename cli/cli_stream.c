/*
 * The NDJSON streams: events (optionally followed) and a job's bounces as
 * CSV. Lines are printed as they arrive, never collected.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void event_line(const char *line, size_t len, void *arg)
{
	const struct cli *c = arg;
	json_t *e = c->json ? NULL : json_loadb(line, len, 0, NULL);

	if (!e) {
		/* --json, or a line this client cannot read: as is. */
		fwrite(line, 1, len, stdout);
		putchar('\n');
	} else {
		const json_t *r = json_object_get(e, "response");
		const char *cls = json_string_value(json_object_get(e, "bounce_class"));
		const char *why = json_string_value(json_object_get(e, "reason"));
		const char *enh = json_string_value(json_object_get(r, "enhanced"));
		char code[32];
		printf("%s  %-16s  %s  %s", cli_jstr(e, "time"), cli_jstr(e, "type"), cli_jstr(e, "job"),
		       cli_jstr(e, "recipient"));
		if (cls)
			printf("  %s", cls);
		if (json_is_object(r))
			printf("  %s%s%s %s", cli_jnum(r, "code", code, sizeof(code)),
			       enh ? " " : "", enh ? enh : "", cli_jstr(r, "text"));
		if (why)        /* no reply came: what went wrong, in volley's words */
			printf("  %s", why);
		putchar('\n');
		json_decref(e);
	}
	fflush(stdout);
}

int cli_events(const struct cli *c)
{
	char *job = c->job ? cli_escape(c->job) : NULL;
	size_t n = 64 + (job ? strlen(job) : 0);
	char *path = vl_malloc(n);
	struct cli_resp rs;

	snprintf(path, n, "/v1/events%s%s%s", c->follow ? "?follow=1" : "",
		 job ? (c->follow ? "&job=" : "?job=") : "", job ? job : "");
	struct cli_req rq = {.method = "GET", .path = path, .line = event_line,
			     .line_arg = (void *)c, .endless = c->follow};
	int rc = cli_request(c, &rq, &rs);
	cli_resp_free(&rs);
	free(path);
	free(job);
	return rc;
}

/* One CSV field, quoted when it holds a comma, a quote or a line break. */
static void csv_field_out(const char *s, bool last)
{
	if (!s[strcspn(s, ",\"\r\n")]) {
		fputs(s, stdout);
	} else {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	}
	putchar(last ? '\n' : ',');
}

struct bounces {
	const struct cli *c;
	bool header;
};

static void bounce_header(struct bounces *b)
{
	if (!b->header && !b->c->json)
		fputs("email,code,enhanced,bounce_class,text,reason\n", stdout);
	b->header = true;
}

static void bounce_line(const char *line, size_t len, void *arg)
{
	struct bounces *b = arg;
	json_t *e = b->c->json ? NULL : json_loadb(line, len, 0, NULL);

	bounce_header(b);
	if (b->c->json) {
		fwrite(line, 1, len, stdout);
		putchar('\n');
		return;
	}
	if (!e) {
		cli_err("skipped a line volleyd sent that is not JSON: %.80s", line);
		return;
	}
	const json_t *r = json_object_get(e, "response");
	const char *enh = json_string_value(json_object_get(r, "enhanced"));
	const char *text = json_string_value(json_object_get(r, "text"));
	const char *cls = json_string_value(json_object_get(e, "bounce_class"));
	const char *why = json_string_value(json_object_get(e, "reason"));
	char code[32] = "";
	if (json_is_integer(json_object_get(r, "code")))
		cli_jnum(r, "code", code, sizeof(code));
	csv_field_out(cli_jstr(e, "email"), false);
	csv_field_out(code, false);
	csv_field_out(enh ? enh : "", false);
	csv_field_out(cls ? cls : "", false);
	csv_field_out(text ? text : "", false);
	csv_field_out(why ? why : "", true);
	json_decref(e);
}

int cli_bounces(const struct cli *c)
{
	struct bounces b = {.c = c};
	char *path = cli_job_path(c->args[0], "/recipients?state=bounced");
	struct cli_req rq = {.method = "GET", .path = path, .line = bounce_line,
			     .line_arg = &b};
	struct cli_resp rs;
	int rc = cli_request(c, &rq, &rs);

	if (rc == CLI_OK)
		bounce_header(&b);
	cli_resp_free(&rs);
	free(path);
	return rc;
}
