/*
 * volley jobs --cluster: every node's jobs. The node the CLI talks to
 * lists the live nodes from Redis (GET /v1/cluster); each is asked for
 * its jobs where it said it listens: its TCP listener (api.listen, with
 * the same --token) when it has one, else its Unix socket (a node on
 * this machine). Each answer names its node, so a socket path that is
 * another node's here is caught, not listed twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Where to ask node n: its listener, else its socket. False (said why)
 * when it registered neither. */
static bool node_target(const struct cli *c, const json_t *n, struct cli *t, char *url,
			size_t ulen)
{
	const char *listen = json_string_value(json_object_get(n, "listen"));
	const char *sock = json_string_value(json_object_get(n, "socket"));

	*t = *c;
	t->url = NULL;
	t->socket = NULL;
	t->data_dir = NULL;
	if (listen && *listen) {
		snprintf(url, ulen, "http://%s", listen);
		t->url = url;
	} else if (sock && *sock) {
		t->socket = sock;
	} else {
		cli_err("node %s registered no API address", cli_jstr(n, "node"));
		return false;
	}
	return true;
}

/* Node name's jobs appended to all, each with "node"; CLI_OK or why not. */
static int node_jobs(const struct cli *t, const char *name, const char *path, json_t *all)
{
	int rc;
	json_t *ans = cli_get_json(t, path, &rc);
	json_t *jobs = json_object_get(ans, "jobs"), *j;
	const char *said = json_string_value(json_object_get(ans, "node"));
	size_t i;

	if (rc == CLI_OK && !json_is_array(jobs)) {
		cli_err("node %s: its answer has no \"jobs\" list", name);
		rc = CLI_FAILED;
	} else if (rc == CLI_OK && (!said || strcmp(said, name))) {
		cli_err("node %s: %s answered as %s: give node %s an api.listen address", name,
			t->url ? t->url : t->socket, said ? said : "a node outside the cluster", name);
		rc = CLI_FAILED;
	}
	if (rc == CLI_OK)
		json_array_foreach(jobs, i, j) {
			json_object_set_new(j, "node", json_string(name));
			json_array_append(all, j);
		}
	json_decref(ans);
	return rc;
}

int cli_cluster_jobs(const struct cli *c)
{
	char path[64] = "/v1/jobs", url[4200];
	int rc, worst = CLI_OK;
	size_t i;
	json_t *n;

	if (c->limit)
		snprintf(path, sizeof(path), "/v1/jobs?limit=%ld", c->limit);
	json_t *ans = cli_get_json(c, "/v1/cluster", &rc);
	json_t *nodes = json_object_get(ans, "nodes");
	if (rc != CLI_OK || !json_is_array(nodes)) {
		if (rc == CLI_OK)
			cli_err("volleyd's answer has no \"nodes\" list");
		json_decref(ans);
		return rc == CLI_OK ? CLI_FAILED : rc;
	}
	json_t *all = json_array();
	json_array_foreach(nodes, i, n) {
		const char *name = json_string_value(json_object_get(n, "node"));
		struct cli t;
		if (!name || !*name)
			continue;
		if (!node_target(c, n, &t, url, sizeof url))
			rc = CLI_FAILED;
		else
			rc = node_jobs(&t, name, path, all);
		if (rc != CLI_OK) {
			cli_err("node %s: its jobs are not listed", name);
			worst = worst == CLI_OK ? rc : worst;
		}
	}
	cli_jobs_print(c, all, true);
	json_decref(all);
	json_decref(ans);
	return worst;
}
