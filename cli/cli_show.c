/*
 * The read-only commands and job control: jobs, status, queues, stats,
 * health, cancel/pause/resume. Human tables, or the daemon's JSON with --json.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The array at key of the answer, or NULL after saying it is missing. */
static json_t *list_of(json_t *ans, const char *key)
{
	json_t *a = json_object_get(ans, key);

	if (!json_is_array(a))
		cli_err("volleyd's answer has no \"%s\" list", key);
	return json_is_array(a) ? a : NULL;
}

static void print_each(const json_t *a)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
		cli_print_json(v);
}

/* The jobs table; with_node: a NODE column first (volley --cluster jobs). */
static void jobs_table(const json_t *jobs, bool with_node)
{
	static const char *head[] = {"NODE", "ID", "STATE", "RECIPIENTS", "QUEUED", "DELIVERED",
				     "BOUNCED", "DEFERRED", "EXPIRED", "CREATED", "CAMPAIGN"};
	static const bool right[] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0};
	size_t skip = with_node ? 0 : 1, i;
	char n[6][32];
	struct cli_table t;
	json_t *j;

	cli_table_init(&t, 11 - skip, head + skip, right + skip);
	json_array_foreach(jobs, i, j) {
		const json_t *k = json_object_get(j, "counts");
		const char *row[] = {cli_jstr(j, "node"), cli_jstr(j, "id"), cli_jstr(j, "state"),
				     cli_jnum(j, "recipients", n[0], 32), cli_jnum(k, "queued", n[1], 32),
				     cli_jnum(k, "delivered", n[2], 32), cli_jnum(k, "bounced", n[3], 32),
				     cli_jnum(k, "deferred", n[4], 32), cli_jnum(k, "expired", n[5], 32),
				     cli_jstr(j, "created"), cli_jstr(j, "campaign")};
		cli_table_row(&t, row + skip);
	}
	cli_table_print(&t, stdout);
	cli_table_free(&t);
}

void cli_jobs_print(const struct cli *c, const json_t *jobs, bool with_node)
{
	if (c->json)
		print_each(jobs);
	else
		jobs_table(jobs, with_node);
}

int cli_jobs(const struct cli *c)
{
	char path[64] = "/v1/jobs";
	int rc;

	if (c->cluster)
		return cli_cluster_jobs(c);
	if (c->limit)
		snprintf(path, sizeof(path), "/v1/jobs?limit=%ld", c->limit);
	json_t *ans = cli_get_json(c, path, &rc), *jobs = ans ? list_of(ans, "jobs") : NULL;
	if (jobs)
		cli_jobs_print(c, jobs, false);
	json_decref(ans);
	return rc == CLI_OK && !jobs ? CLI_FAILED : rc;
}

/* Rows of "key  value", keys aligned. */
static void kv_print(const char **k, const char **v, size_t n)
{
	int w = 0;

	for (size_t i = 0; i < n; i++)
		w = (int)strlen(k[i]) > w ? (int)strlen(k[i]) : w;
	for (size_t i = 0; i < n; i++)
		printf("%-*s  %s\n", w, k[i], v[i]);
}

static void job_block(const json_t *j)
{
	static const char *counts[] = {"queued", "in_flight", "delivered", "deferred",
				       "bounced", "expired", "cancelled", "suppressed"};
	const char *k[24], *v[24];
	char num[11][32], rate[48];
	const json_t *cnt = json_object_get(j, "counts");
	const json_t *r = json_object_get(json_object_get(j, "rate"), "delivered_per_s");
	size_t n = 0;

	k[n] = "id", v[n++] = cli_jstr(j, "id");
	k[n] = "campaign", v[n++] = cli_jstr(j, "campaign");
	k[n] = "state", v[n++] = cli_jstr(j, "state");
	k[n] = "priority", v[n++] = cli_jstr(j, "priority");
	k[n] = "require_tls";
	v[n++] = json_is_true(json_object_get(j, "require_tls")) ? "yes" : "no";
	k[n] = "created", v[n++] = cli_jstr(j, "created");
	k[n] = "expires", v[n++] = cli_jstr(j, "expires");
	k[n] = "finished", v[n++] = cli_jstr(j, "finished");
	k[n] = "done", v[n++] = json_is_true(json_object_get(j, "done")) ? "yes" : "no";
	k[n] = "recipients", v[n++] = cli_jnum(j, "recipients", num[8], 32);
	for (size_t i = 0; i < 8; i++)
		k[n] = counts[i], v[n++] = cli_jnum(cnt, counts[i], num[i], 32);
	snprintf(rate, sizeof(rate), json_is_number(r) ? "%.1f/s" : "-",
		 json_number_value(r));
	k[n] = "rate", v[n++] = rate;
	const json_t *fb = json_object_get(j, "feedback");
	char crate[32];
	k[n] = "complaints", v[n++] = cli_jnum(fb, "complaints", num[9], 32);
	snprintf(crate, sizeof(crate), "%.2f%%",
		 100 * json_number_value(json_object_get(fb, "complaint_rate")));
	k[n] = "complaint_rate", v[n++] = crate;
	k[n] = "late_bounces", v[n++] = cli_jnum(fb, "async_bounces", num[10], 32);
	if (json_is_string(json_object_get(j, "paused_reason")))
		k[n] = "paused_reason", v[n++] = cli_jstr(j, "paused_reason");
	kv_print(k, v, n);
}

int cli_status(const struct cli *c)
{
	int rc;

	if (!c->nargs)
		return cli_jobs(c);
	if (c->watch)
		return cli_wait_job(c, c->args[0]);
	char *path = cli_job_path(c->args[0], "");
	json_t *j = cli_get_json(c, path, &rc);
	if (j && c->json)
		cli_print_json(j);
	else if (j)
		job_block(j);
	json_decref(j);
	free(path);
	return rc;
}

int cli_control(const struct cli *c)
{
	char suffix[16];
	int rc;

	snprintf(suffix, sizeof(suffix), "/%s", c->cmd);
	char *path = cli_job_path(c->args[0], suffix);
	json_t *j = cli_post_json(c, path, &rc);
	if (j && c->json)
		cli_print_json(j);
	else if (j)
		printf("%s %s\n", c->args[0], cli_jstr(j, "state"));
	json_decref(j);
	free(path);
	return rc;
}

/* The reason already says when the suspension ends. */
static const char *backoff_str(const json_t *b)
{
	return json_is_object(b) ? cli_jstr(b, "reason") : "-";
}

static const char *last_str(const json_t *r)
{
	return json_is_object(r) ? cli_jstr(r, "text") : "-";
}

/* "dane", "dane+mta-sts:enforce" */
static const char *tls_str(const json_t *q, char *buf, size_t len)
{
	const json_t *t = json_object_get(q, "tls");
	const json_t *sts = json_object_get(t, "mta_sts");

	if (!json_is_object(t))
		return "-";
	if (json_is_object(sts))
		snprintf(buf, len, "%s+mta-sts:%s", cli_jstr(t, "policy"), cli_jstr(sts, "mode"));
	else
		snprintf(buf, len, "%s", cli_jstr(t, "policy"));
	return buf;
}

/* "d3 812/1500", "d3 1500/1500 capped", "d20 9000" (no cap), "-" */
static const char *warm_str(const json_t *w, char *buf, size_t len)
{
	const json_t *cap = json_object_get(w, "cap");

	if (!json_is_object(w))
		return "-";
	int n = snprintf(buf, len, "d%lld %lld", (long long)json_integer_value(json_object_get(w, "day")),
			 (long long)json_integer_value(json_object_get(w, "sent")));
	if (json_is_integer(cap) && n > 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, "/%lld", (long long)json_integer_value(cap));
	if (json_is_string(json_object_get(w, "capped_until")) && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, " capped");
	return buf;
}

static void queues_table(const json_t *qs)
{
	static const char *head[] = {"SITE", "SOURCE", "TLS", "QUEUED", "DEFERRED", "IN_FLIGHT",
				     "MAX_CONNS", "RATE/S", "WARMUP", "BACKOFF", "LAST_RESPONSE"};
	static const bool right[] = {0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0};
	char n[5][32], tls[64], warm[64];
	struct cli_table t;
	size_t i;
	json_t *q;

	cli_table_init(&t, 11, head, right);
	json_array_foreach(qs, i, q) {
		json_t *cur = json_object_get(q, "current_rate");
		const char *src = json_string_value(json_object_get(q, "source"));
		const char *row[] = {cli_jstr(q, "site"), src ? src : "-",
				     tls_str(q, tls, sizeof tls),
				     cli_jnum(q, "queued", n[0], 32),
				     cli_jnum(q, "deferred", n[1], 32),
				     cli_jnum(q, "in_flight", n[2], 32),
				     cli_jnum(q, "max_connections", n[3], 32),
				     json_number_value(cur) > 0 ? cli_jnum(q, "current_rate", n[4], 32) : "-",
				     warm_str(json_object_get(q, "warmup"), warm, sizeof warm),
				     backoff_str(json_object_get(q, "backoff")),
				     last_str(json_object_get(q, "last_response"))};
		cli_table_row(&t, row);
	}
	cli_table_print(&t, stdout);
	cli_table_free(&t);
}

int cli_queues(const struct cli *c)
{
	int rc;
	json_t *ans = cli_get_json(c, "/v1/queues", &rc);
	json_t *qs = ans ? list_of(ans, "queues") : NULL;

	if (qs && c->json)
		print_each(qs);
	else if (qs)
		queues_table(qs);
	json_decref(ans);
	return rc == CLI_OK && !qs ? CLI_FAILED : rc;
}

/* ---- tls-check ---- */

static void tls_check_sts(const json_t *s)
{
	const json_t *txt = json_object_get(s, "txt"), *kept = json_object_get(s, "kept");
	const json_t *now = json_object_get(s, "fetched_now");

	printf("MTA-STS: _mta-sts TXT %s%s%s\n", cli_jstr(txt, "status"),
	       json_object_get(txt, "id") ? ", id " : "",
	       json_object_get(txt, "id") ? cli_jstr(txt, "id") : "");
	if (json_is_object(kept))
		printf("  kept policy: id %s, mode %s, fetched %s, expires %s\n", cli_jstr(kept, "id"),
		       cli_jstr(kept, "mode"), cli_jstr(kept, "fetched"), cli_jstr(kept, "expires"));
	if (json_is_object(now) && json_object_get(now, "error"))
		printf("  fetched now: %s\n", cli_jstr(now, "error"));
	else if (json_is_object(now))
		printf("  fetched now:\n    %s\n", cli_jstr(now, "policy"));
	printf("  applies: %s\n", json_is_string(json_object_get(s, "applies")) ?
	       cli_jstr(s, "applies") : "no policy");
}

static void tls_check_host(const json_t *h)
{
	const json_t *tlsa = json_object_get(h, "tlsa"), *r;
	const json_t *listed = json_object_get(h, "mta_sts_listed");
	char pref[16], usable[16];
	size_t i;

	printf("MX %s %s (%s)  addresses:", cli_jnum(h, "pref", pref, sizeof pref), cli_jstr(h, "name"),
	       json_is_true(json_object_get(h, "dnssec")) ? "DNSSEC-validated" : "not validated");
	json_array_foreach(json_object_get(h, "addresses"), i, r)
		printf(" %s", json_string_value(r));
	printf("\n  TLSA: %s", cli_jstr(tlsa, "status"));
	if (json_object_get(tlsa, "dnssec"))
		printf(" (%s, %s usable)", json_is_true(json_object_get(tlsa, "dnssec")) ?
		       "DNSSEC-validated" : "not validated",
		       cli_jnum(tlsa, "usable", usable, sizeof usable));
	putchar('\n');
	json_array_foreach(json_object_get(tlsa, "records"), i, r)
		printf("    %s\n", json_string_value(r));
	if (json_is_boolean(listed))
		printf("  in the MTA-STS mx list: %s\n", json_is_true(listed) ? "yes" : "no");
	printf("  volley would: %s\n", cli_jstr(h, "volley_would"));
}

int cli_tls_check(const struct cli *c)
{
	int rc;
	char *esc = cli_escape(c->args[0]), path[600];
	size_t i;
	json_t *h;

	snprintf(path, sizeof path, "/v1/tls-check?domain=%s", esc);
	free(esc);
	json_t *j = cli_get_json(c, path, &rc);
	if (j && c->json) {
		cli_print_json(j);
	} else if (j && rc == CLI_OK) {
		const json_t *mx = json_object_get(j, "mx");
		printf("%s: policy %s%s%s\n", cli_jstr(j, "domain"), cli_jstr(j, "policy"),
		       json_object_get(j, "route") ? ", route " : "",
		       json_object_get(j, "route") ? cli_jstr(j, "route") : "");
		if (json_object_get(j, "mta_sts"))
			tls_check_sts(json_object_get(j, "mta_sts"));
		if (mx)
			printf("MX: %s (%s)%s\n", cli_jstr(mx, "status"), cli_jstr(mx, "why"),
			       json_is_true(json_object_get(mx, "dnssec")) ? ", DNSSEC-validated" : "");
		json_array_foreach(json_object_get(j, "hosts"), i, h)
			tls_check_host(h);
	}
	json_decref(j);
	return rc;
}

/* Nested counters as "a.b.c  value" rows. */
static void flatten(const json_t *v, char *key, size_t klen, size_t cap, struct cli_table *t)
{
	const char *k;
	json_t *x;
	size_t i;

	if (json_is_object(v) || json_is_array(v)) {
		if (json_is_object(v)) {
			json_object_foreach((json_t *)v, k, x) {
				snprintf(key + klen, cap - klen, "%s%s", klen ? "." : "", k);
				flatten(x, key, strlen(key), cap, t);
			}
		} else {
			json_array_foreach(v, i, x) {
				snprintf(key + klen, cap - klen, "[%zu]", i);
				flatten(x, key, strlen(key), cap, t);
			}
		}
		key[klen] = 0;
		return;
	}
	char *s = json_is_string(v) ? vl_strdup(json_string_value(v))
				    : json_dumps(v, JSON_ENCODE_ANY);
	const char *row[] = {key, s};
	cli_table_row(t, row);
	free(s);
}

int cli_stats(const struct cli *c)
{
	static const char *head[] = {"COUNTER", "VALUE"};
	static const bool right[] = {0, 1};
	char key[1024] = "";
	struct cli_table t;
	int rc;
	json_t *j = cli_get_json(c, "/v1/stats", &rc);

	if (j && c->json) {
		cli_print_json(j);
	} else if (j) {
		cli_table_init(&t, 2, head, right);
		flatten(j, key, 0, sizeof(key), &t);
		cli_table_print(&t, stdout);
		cli_table_free(&t);
	}
	json_decref(j);
	return rc;
}

int cli_health(const struct cli *c)
{
	char up[32];
	int rc;
	json_t *j = cli_get_json(c, "/v1/health", &rc);

	if (j && c->json)
		cli_print_json(j);
	else if (j)
		printf("%s  version %s  uptime %ss  accepting %s\n", cli_jstr(j, "status"),
		       cli_jstr(j, "version"), cli_jnum(j, "uptime_s", up, sizeof(up)),
		       json_is_true(json_object_get(j, "accepting")) ? "yes" : "no");
	if (j && rc == CLI_OK && strcmp(cli_jstr(j, "status"), "ok"))
		rc = CLI_FAILED;
	json_decref(j);
	return rc;
}
