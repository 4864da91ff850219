/*
 * volley feedback [list] | domains | resume-domain DOMAIN: what came back
 * after delivery (GET /v1/feedback, /v1/feedback/domains, POST
 * /v1/feedback/domains/{domain}/resume; docs/feedback.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *dash(const json_t *o, const char *k)
{
	const char *s = cli_jstr(o, k);
	return s && *s ? s : "-";
}

static int reports(const struct cli *c)
{
	static const char *head[] = {"TIME", "KIND", "EFFECT", "JOB", "INDEX", "RECIPIENT",
				     "STATUS", "NOTE"};
	static const bool right[] = {0, 0, 0, 0, 1, 0, 0, 0};
	char path[96], idx[32];
	int rc;

	snprintf(path, sizeof(path), "/v1/feedback?limit=%ld%s", c->limit ? c->limit : 50,
		 c->unmatched ? "&unmatched=1" : "");
	json_t *j = cli_get_json(c, path, &rc);
	if (!j || c->json) {
		if (j)
			cli_print_json(j);
		json_decref(j);
		return rc;
	}
	struct cli_table t;
	size_t i;
	json_t *r;
	cli_table_init(&t, 8, head, right);
	json_array_foreach(json_object_get(j, "reports"), i, r) {
		const char *st = cli_jstr(r, "status");
		const char *cells[] = {dash(r, "time"), dash(r, "kind"), dash(r, "effect"),
				       dash(r, "job"), cli_jnum(r, "index", idx, sizeof(idx)),
				       dash(r, "recipient"),
				       st && *st ? st : dash(r, "feedback_type"), dash(r, "note")};
		cli_table_row(&t, cells);
	}
	cli_table_print(&t, stdout);
	cli_table_free(&t);
	json_decref(j);
	return rc;
}

static int domains(const struct cli *c)
{
	static const char *head[] = {"DOMAIN", "DELIVERED_24H", "COMPLAINTS_24H", "RATE",
				     "BLOCKED", "REASON"};
	static const bool right[] = {0, 1, 1, 1, 0, 0};
	char del[32], comp[32], rate[32];
	int rc;
	json_t *j = cli_get_json(c, "/v1/feedback/domains", &rc);

	if (!j || c->json) {
		if (j)
			cli_print_json(j);
		json_decref(j);
		return rc;
	}
	struct cli_table t;
	size_t i;
	json_t *d;
	cli_table_init(&t, 6, head, right);
	json_array_foreach(json_object_get(j, "domains"), i, d) {
		snprintf(rate, sizeof(rate), "%.2f%%",
			 100 * json_number_value(json_object_get(d, "complaint_rate")));
		const char *cells[] = {dash(d, "domain"),
				       cli_jnum(d, "delivered_24h", del, sizeof(del)),
				       cli_jnum(d, "complaints_24h", comp, sizeof(comp)), rate,
				       json_is_true(json_object_get(d, "blocked")) ? "yes" : "no",
				       dash(d, "reason")};
		cli_table_row(&t, cells);
	}
	cli_table_print(&t, stdout);
	cli_table_free(&t);
	json_decref(j);
	return rc;
}

static int resume_domain(const struct cli *c, const char *domain)
{
	char *esc = cli_escape(domain);
	size_t n = strlen(esc) + 48;
	char *path = vl_malloc(n);
	int rc;

	snprintf(path, n, "/v1/feedback/domains/%s/resume", esc);
	json_t *j = cli_post_json(c, path, &rc);
	if (j && c->json)
		cli_print_json(j);
	else if (j)
		printf("%s resumed\n", domain);
	json_decref(j);
	free(path);
	free(esc);
	return rc;
}

int cli_feedback(const struct cli *c)
{
	const char *sub = c->nargs ? c->args[0] : "list";

	if (!strcmp(sub, "list") && c->nargs <= 1)
		return reports(c);
	if (!strcmp(sub, "domains") && c->nargs == 1)
		return domains(c);
	if (!strcmp(sub, "resume-domain") && c->nargs == 2)
		return resume_domain(c, c->args[1]);
	cli_err("feedback: expected list, domains or resume-domain DOMAIN");
	return CLI_USAGE;
}
