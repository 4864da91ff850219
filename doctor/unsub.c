/*
 * One-click unsubscribe (RFC 8058; Gmail and Yahoo require it of bulk
 * mail): whether volley's own endpoint is configured (`unsubscribe`, with
 * its https base_url and, to answer the POSTs, a listener). A sender who
 * serves one-click URLs of their own gives them per job instead
 * (docs/unsubscribe.md): that cannot be seen here, hence a warning.
 */
#include <stdio.h>

#include "../config/config.h"
#include "doctor.h"

void doc_check_unsubscribe(const struct cfg *c, struct doc_report *rep)
{
	const struct cfg_unsubscribe *u = &c->unsubscribe;
	const char *fix = "add unsubscribe = { base_url = \"https://...\"; listen = [ ... ]; "
			  "secret_file = \"...\"; }; so bulk jobs carry List-Unsubscribe-Post "
			  "(RFC 8058), or give every bulk job its own one-click unsubscribe.url";

	if (!u->on) {
		doc_add(rep, "unsubscribe", "(configuration)", DOC_WARN, fix,
			"volley's one-click unsubscribe is not configured");
		return;
	}
	if (!u->nlisten) {
		doc_add(rep, "unsubscribe", u->base_url, DOC_WARN, "add unsubscribe.listen, or "
			"make sure something else answers POSTs to base_url with volley's tokens",
			"base_url set but volleyd does not listen for the one-click POSTs");
		return;
	}
	doc_add(rep, "unsubscribe", u->base_url, DOC_PASS, "", "one-click unsubscribe: "
		"bulk jobs get List-Unsubscribe <%s/TOKEN>", u->base_url);
}
