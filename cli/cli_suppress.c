/*
 * volley suppression list|add|remove|import: the daemon's suppression list
 * (GET /v1/suppression, PUT|DELETE /v1/suppression/{email}; docs/api.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define PAGE 1000             /* addresses asked for a request */
#define IMPORT_LINE_MAX 1024  /* an address is at most 254 octets */
#define IMPORT_FAIL_MAX 100   /* failures before an import gives up */

static void sup_row(struct cli_table *t, const json_t *e)
{
	const char *row[] = {cli_jstr(e, "email"), cli_jstr(e, "reason"),
			     cli_jstr(e, "job"), cli_jstr(e, "added")};

	cli_table_row(t, row);
}

/* Page through the list (in address order) until its end or --limit. */
static int sup_list(const struct cli *c)
{
	static const char *head[] = {"EMAIL", "REASON", "JOB", "ADDED"};
	static const bool right[] = {0, 0, 0, 0};
	struct cli_table t;
	char *after = NULL;
	long left = c->limit ? c->limit : -1;
	int rc = CLI_OK;

	cli_table_init(&t, 4, head, right);
	while (left != 0 && !cli_interrupted) {
		char *esc = after ? cli_escape(after) : NULL;
		size_t n = 64 + (esc ? strlen(esc) : 0);
		char *path = vl_malloc(n);
		long want = left > 0 && left < PAGE ? left : PAGE;
		snprintf(path, n, "/v1/suppression?limit=%ld%s%s", want, esc ? "&after=" : "",
			 esc ? esc : "");
		json_t *ans = cli_get_json(c, path, &rc), *list = json_object_get(ans, "suppressed");
		free(path);
		free(esc);
		if (ans && !json_is_array(list)) {
			cli_err("volleyd's answer has no \"suppressed\" list");
			rc = CLI_FAILED;
		}
		size_t i;
		json_t *e;
		json_array_foreach(rc == CLI_OK ? list : NULL, i, e) {
			if (c->json)
				cli_print_json(e);
			else
				sup_row(&t, e);
			left -= left > 0;
		}
		const char *next = json_string_value(json_object_get(ans, "next"));
		free(after);
		after = rc == CLI_OK && next ? vl_strdup(next) : NULL;
		json_decref(ans);
		if (!after)
			break;
	}
	free(after);
	if (rc == CLI_OK && !c->json)
		cli_table_print(&t, stdout);
	cli_table_free(&t);
	return rc == CLI_OK && cli_interrupted ? CLI_INTERRUPTED : rc;
}

/* PUT (add) or DELETE (remove) one address; the answer printed when
 * print is set (the daemon's JSON with --json). */
static int sup_one(const struct cli *c, const char *method, const char *email, bool print)
{
	char *esc = cli_escape(email);
	size_t n = strlen(esc) + 32;
	char *path = vl_malloc(n);
	int rc;

	snprintf(path, n, "/v1/suppression/%s", esc);
	json_t *ans = cli_call_json(c, method, path, &rc);
	if (ans && print && c->json)
		cli_print_json(ans);
	else if (ans && print)
		printf("%s %s\n", email, strcmp(method, "DELETE") ? "suppressed" : "removed");
	free(path);
	free(esc);
	json_decref(ans);
	return rc;
}

static char *trim(char *s)
{
	size_t n = strlen(s);

	while (n && strchr(" \t\r\n", s[n - 1]))
		s[--n] = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

struct import {
	unsigned long line, added, failed;
	bool long_line;
};

/* One line of the file: an address, blank, or a comment. CLI_UNREACHABLE
 * and CLI_INTERRUPTED end the import; other failures are counted. */
static int import_line(const struct cli *c, const char *path, char *buf, struct import *im)
{
	char *email = trim(buf);

	im->line++;
	if (im->long_line) {
		cli_err("%s: line %lu: longer than %d octets; skipped", path, im->line,
			IMPORT_LINE_MAX - 2);
		im->failed++;
		return CLI_OK;
	}
	if (!*email || *email == '#')
		return CLI_OK;
	int rc = sup_one(c, "PUT", email, false);
	if (rc == CLI_UNREACHABLE || rc == CLI_INTERRUPTED)
		return rc;
	if (rc == CLI_OK) {
		im->added++;
	} else {
		cli_err("%s: line %lu: %s not added", path, im->line, email);
		im->failed++;
	}
	return CLI_OK;
}

static int sup_import(const struct cli *c, const char *path)
{
	bool std = !strcmp(path, "-");
	FILE *f = std ? stdin : fopen(path, "r");
	char buf[IMPORT_LINE_MAX];
	struct import im = {0};
	int rc = CLI_OK;

	if (!f) {
		cli_err("suppression import: %s: %s", path, strerror(errno));
		return CLI_USAGE;
	}
	while (rc == CLI_OK && im.failed < IMPORT_FAIL_MAX && !cli_interrupted &&
	       fgets(buf, sizeof buf, f)) {
		size_t n = strlen(buf);
		bool cut = n == sizeof buf - 1 && buf[n - 1] != '\n';
		im.long_line = cut;
		/* The rest of an over-long line is dropped. */
		for (int ch = 0; cut && ch != '\n' && ch != EOF;)
			ch = fgetc(f);
		rc = import_line(c, path, buf, &im);
	}
	if (rc == CLI_OK && ferror(f)) {
		cli_err("suppression import: %s: read error", path);
		rc = CLI_USAGE;
	}
	if (!std)
		fclose(f);
	if (rc == CLI_OK && im.failed >= IMPORT_FAIL_MAX)
		cli_err("suppression import: stopped after %d failures", IMPORT_FAIL_MAX);
	printf("%lu added, %lu failed (%s, %lu lines read)\n", im.added, im.failed, path, im.line);
	if (rc == CLI_OK && cli_interrupted)
		rc = CLI_INTERRUPTED;
	return rc != CLI_OK ? rc : im.failed ? CLI_FAILED : CLI_OK;
}

int cli_suppression(const struct cli *c)
{
	const char *sub = c->args[0], *arg = c->nargs > 1 ? c->args[1] : NULL;
	bool list = !strcmp(sub, "list");

	if (!list && strcmp(sub, "add") && strcmp(sub, "remove") && strcmp(sub, "import")) {
		cli_err("suppression: unknown subcommand %s (list, add, remove or import)", sub);
		return CLI_USAGE;
	}
	if (list == (arg != NULL)) {
		cli_err("suppression %s: %s", sub, list ? "takes no argument" :
			!strcmp(sub, "import") ? "needs a FILE" : "needs an EMAIL");
		return CLI_USAGE;
	}
	if (!list && c->limit) {
		cli_err("suppression %s: no option --limit", sub);
		return CLI_USAGE;
	}
	if (list)
		return sup_list(c);
	if (!strcmp(sub, "import"))
		return sup_import(c, arg);
	return sup_one(c, strcmp(sub, "add") ? "DELETE" : "PUT", arg, true);
}
