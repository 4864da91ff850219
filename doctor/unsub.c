/*
 * One-click unsubscribe (RFC 8058; Gmail and Yahoo require it of bulk
 * mail): whether the configuration has an `unsubscribe` group with a
 * base_url. Read from the file with libconfig directly, so that this check
 * does not depend on config/ knowing the group; kept apart on purpose.
 */
#include <libconfig.h>
#include <stdio.h>

#include "doctor.h"

void doc_check_unsubscribe(const char *path, struct doc_report *rep)
{
	const char *fix = "add unsubscribe = { base_url = \"https://...\"; }; to the "
			  "configuration, so bulk jobs carry List-Unsubscribe-Post (RFC 8058)";
	config_t c;
	const char *url = NULL;

	if (!path) {
		doc_add(rep, "unsubscribe", "(configuration)", DOC_WARN, fix,
			"no configuration file: not configured");
		return;
	}
	config_init(&c);
	if (config_read_file(&c, path) != CONFIG_TRUE) {
		doc_add(rep, "unsubscribe", path, DOC_WARN, fix, "cannot read %s", path);
		config_destroy(&c);
		return;
	}
	config_setting_t *g = config_lookup(&c, "unsubscribe");
	if (g && config_setting_is_group(g) &&
	    config_setting_lookup_string(g, "base_url", &url) == CONFIG_TRUE && url[0])
		doc_add(rep, "unsubscribe", path, DOC_PASS, "", "one-click unsubscribe: base_url %s",
			url);
	else
		doc_add(rep, "unsubscribe", path, DOC_WARN, fix, "not configured (no unsubscribe "
			"group with a base_url)");
	config_destroy(&c);
}
