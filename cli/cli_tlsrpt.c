/*
 * volley tls-report DOMAIN [--date D] [--send]: a day's TLS-RPT report
 * (RFC 8460) as volleyd would send it, or (--send) send it now.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int cli_tls_report(const struct cli *c)
{
	char *dom = cli_escape(c->args[0]), *date = c->date ? cli_escape(c->date) : NULL;
	size_t n = strlen(dom) + (date ? strlen(date) : 0) + 64;
	char *path = vl_malloc(n);
	int rc;

	snprintf(path, n, "/v1/tls-report%s?domain=%s%s%s", c->send ? "/send" : "", dom,
		 date ? "&date=" : "", date ? date : "");
	json_t *j = c->send ? cli_post_json(c, path, &rc) : cli_get_json(c, path, &rc);
	if (j && c->json)
		cli_print_json(j);
	else if (j)
		json_dumpf(j, stdout, JSON_INDENT(2)), putchar('\n');
	if (j && c->send && !json_is_true(json_object_get(j, "sent"))) {
		const char *why = cli_jstr(j, "why");
		cli_err("not sent: %s", *why ? why : "no rua URI took it (see rua)");
		rc = CLI_FAILED;
	}
	json_decref(j);
	free(path);
	free(dom);
	free(date);
	return rc;
}
