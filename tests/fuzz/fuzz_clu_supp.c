/* libFuzzer: the shared suppression list's entries as they come from
 * Redis (cluster/supp_ent.c): a published message, and an address with
 * its JSON value (split at the first newline). Whatever parses is bounded
 * and makes a clean entry. */
#include <stdint.h>
#include <string.h>

#include "../../cluster/cluster.h"

static void check(const struct clu_supp_entry *e)
{
	if (strnlen(e->email, sizeof e->email) == sizeof e->email || !e->email[0] ||
	    !strchr(e->email, '@') || !e->node[0] || e->at < 0 || !e->seq ||
	    strnlen(e->reason, sizeof e->reason) == sizeof e->reason ||
	    strnlen(e->job, sizeof e->job) == sizeof e->job)
		__builtin_trap();
	for (const char *p = e->email; *p; p++)
		if ((unsigned char)*p < 0x20)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct clu_supp_entry e;
	char err[200];
	const char *s = (const char *)data;

	if (clu_supp_parse_msg(s, size, &e, err, sizeof err) == 0)
		check(&e);
	const char *nl = memchr(s, '\n', size);
	if (nl && clu_supp_parse(s, (size_t)(nl - s), nl + 1, size - (size_t)(nl + 1 - s), 1, &e,
				 err, sizeof err) == 0)
		check(&e);
	return 0;
}
