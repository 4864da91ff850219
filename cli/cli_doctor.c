/*
 * volley doctor: the preflight of a bulk sender (docs/doctor.md). Reads
 * volleyd's configuration, needs no daemon, asks DNS with volley's own
 * resolver (dns.servers of the configuration).
 *   volley doctor [DOMAIN] [--config FILE] [--return-path DOMAIN] [--json]
 * Exit: 0 nothing failed, 1 a check failed, 2 usage or a bad configuration,
 * 3 DNS does not answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../config/config.h"
#include "../doctor/doctor.h"
#include "cli.h"

#define DEFAULT_CONFIG "/etc/volley/volley.conf"

static const char usage_line[] =
	"usage: volley doctor [DOMAIN] [--config FILE] [--return-path DOMAIN] [--json]";

struct dargs {
	const char *config, *domain, *rp;
	bool json;
};

static int parse(int argc, char **argv, struct dargs *a)
{
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (!strcmp(s, "--json")) {
			a->json = true;
		} else if (!strcmp(s, "--config") || !strcmp(s, "--return-path")) {
			if (i + 1 >= argc || !argv[i + 1][0]) {
				cli_err("doctor: %s needs a value; %s", s, usage_line);
				return -1;
			}
			*(!strcmp(s, "--config") ? &a->config : &a->rp) = argv[++i];
		} else if (s[0] == '-' || a->domain) {
			cli_err("doctor: %s %s; %s", s[0] == '-' ? "unknown option" :
				"one domain at most, not", s, usage_line);
			return -1;
		} else {
			a->domain = s;
		}
	}
	return 0;
}

/* The From domains: the one given, or every domain with a DKIM key. */
static size_t domains_of(const struct cfg *c, const struct dargs *a, const char **out, size_t cap)
{
	size_t n = 0;

	if (a->domain) {
		out[0] = a->domain;
		return 1;
	}
	for (size_t i = 0; i < c->ndkim && n < cap; i++) {
		size_t k = 0;
		while (k < n && strcasecmp(out[k], c->dkim[i].domain))
			k++;
		if (k == n)
			out[n++] = c->dkim[i].domain;
	}
	return n;
}

static void print_json(const struct doc_report *r, const char *const *dom, size_t nd,
		       const char *rp, int code, const char *err)
{
	json_t *o = json_object(), *checks = json_array(), *ds = json_array();

	for (size_t i = 0; i < nd; i++)
		json_array_append_new(ds, json_string(dom[i]));
	for (size_t i = 0; i < r->n; i++) {
		const struct doc_row *w = &r->rows[i];
		json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:s, s:s}", "check", w->check,
			"subject", w->subject, "result", doc_verdict_name(w->verdict),
			"detail", w->detail, "fix", w->fix));
	}
	json_object_set_new(o, "domains", ds);
	json_object_set_new(o, "return_path", rp ? json_string(rp) : json_null());
	json_object_set_new(o, "checks", checks);
	json_object_set_new(o, "pass", json_integer(r->npass));
	json_object_set_new(o, "warn", json_integer(r->nwarn));
	json_object_set_new(o, "fail", json_integer(r->nfail));
	json_object_set_new(o, "dns_unreachable", json_boolean(r->dns_unreachable));
	json_object_set_new(o, "exit", json_integer(code));
	if (err[0])
		json_object_set_new(o, "error", json_string(err));
	json_dumpf(o, stdout, JSON_INDENT(2));
	putchar('\n');
	json_decref(o);
}

static void print_table(const struct doc_report *r, bool tty)
{
	int wc = 5, ws = 7;

	for (size_t i = 0; i < r->n; i++) {
		int a = (int)strlen(r->rows[i].check), b = (int)strlen(r->rows[i].subject);
		wc = a > wc ? a : wc;
		ws = b > ws ? b : ws;
	}
	printf("%-*s  %-*s  %-6s  %s\n", wc, "CHECK", ws, "SUBJECT", "RESULT", "DETAIL/FIX");
	for (size_t i = 0; i < r->n; i++) {
		const struct doc_row *w = &r->rows[i];
		const char *col = !tty ? "" : w->verdict == DOC_PASS ? "\033[32m" :
				  w->verdict == DOC_WARN ? "\033[33m" : "\033[31m";
		printf("%-*s  %-*s  %s%-6s%s  %s\n", wc, w->check, ws, w->subject, col,
		       doc_verdict_name(w->verdict), tty ? "\033[0m" : "", w->detail);
		if (w->fix[0])
			printf("%-*s  %-*s  %-6s  fix: %s\n", wc, "", ws, "", "", w->fix);
	}
	printf("\n%u pass, %u warn, %u fail\n", r->npass, r->nwarn, r->nfail);
}

static int run(const struct dargs *a)
{
	struct cfg c;
	char err[512];
	const char *path = a->config ? a->config : DEFAULT_CONFIG;
	const char *dom[64];

	if (cfg_load(&c, path, err, sizeof err) < 0) {
		cli_err("doctor: %s", err);
		return CLI_USAGE;
	}
	size_t nd = domains_of(&c, a, dom, 64);
	if (!nd) {
		cli_err("doctor: no DOMAIN given and no dkim keys in %s to take domains from", path);
		cfg_free(&c);
		return CLI_USAGE;
	}
	struct doc_opts o = { .cfg = &c, .config_path = path, .domains = dom, .ndomains = nd,
			      .return_path = a->rp };
	struct doc_report rep = {0};
	int code;
	if (doc_run(&o, &rep, err, sizeof err) < 0) {
		cli_err("doctor: %s", err);
		code = CLI_UNREACHABLE;
	} else {
		code = rep.dns_unreachable ? CLI_UNREACHABLE : rep.nfail ? CLI_FAILED : CLI_OK;
		if (rep.dns_unreachable)
			cli_err("doctor: %s", err);
	}
	if (a->json)
		print_json(&rep, dom, nd, a->rp, code, code == CLI_UNREACHABLE ? err : "");
	else if (!rep.dns_unreachable && code != CLI_UNREACHABLE)
		print_table(&rep, isatty(STDOUT_FILENO));
	doc_report_free(&rep);
	cfg_free(&c);
	return code;
}

int cli_doctor(int argc, char **argv)
{
	struct dargs a = {0};

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("%s\n\nChecks what a bulk sender must have in place before sending "
			       "(Gmail/Yahoo 2024,\nMicrosoft 2025): SPF of the return path and From "
			       "domains for every egress\naddress, DKIM records against the "
			       "configured keys, DMARC and alignment,\nPTR (forward-confirmed) of "
			       "every egress address, MX of the return path,\nMTA-STS and TLSA, "
			       "one-click unsubscribe. DOMAIN: the From domain (default:\nevery "
			       "domain with a DKIM key); the return path is --return-path or DOMAIN.\n"
			       "Reads volleyd's configuration (default %s), needs no daemon,\n"
			       "resolves with dns.servers.\n"
			       "Exit: 0 no check failed, 1 a check failed, 2 usage or configuration, "
			       "3 DNS does not answer.\nMore: volley(1), docs/doctor.md.\n",
			       usage_line, DEFAULT_CONFIG);
			return CLI_OK;
		}
	if (parse(argc, argv, &a) < 0)
		return CLI_USAGE;
	return run(&a);
}
