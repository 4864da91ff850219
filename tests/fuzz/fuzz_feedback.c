/* libFuzzer: feedback/'s parser on whatever a mailbox could hold, and the
 * matching hints on its strings. Every report string is a bounded C
 * string; counts stay within the options' bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../feedback/feedback.h"

static void check_str(const char *s, size_t max)
{
	if (s && strnlen(s, max + 1) > max)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fb_opts o;
	struct fb_report r;
	char err[200], id[FB_JOB_ID_LEN + 1];
	size_t idx;
	bool has;

	fb_opts_default(&o);
	o.max_rcpts = 50;
	int rc = fb_parse((const char *)data, size, &o, &r, err, sizeof err);
	if (rc == 0) {
		if (r.nrcpts > o.max_rcpts || r.norig_rcpt_to > o.max_rcpts)
			__builtin_trap();
		if (r.kind == FB_NOT_REPORT && r.nrcpts)
			__builtin_trap();
		check_str(r.envelope_to, FB_FIELD_MAX);
		check_str(r.orig_msgid, FB_FIELD_MAX);
		for (size_t i = 0; i < r.nrcpts; i++) {
			check_str(r.rcpts[i].final_rcpt, FB_FIELD_MAX);
			check_str(r.rcpts[i].diag, FB_FIELD_MAX);
			if (strnlen(r.rcpts[i].status, FB_STATUS_MAX) == FB_STATUS_MAX)
				__builtin_trap();
		}
		if (fb_match_verp(r.envelope_to, id, &idx) && strlen(id) != FB_JOB_ID_LEN)
			__builtin_trap();
		if (fb_match_msgid(r.orig_msgid, id, &idx, &has) && strlen(id) != FB_JOB_ID_LEN)
			__builtin_trap();
	} else if (r.kind != FB_NOT_REPORT || r.nrcpts || r.envelope_to || !err[0]) {
		__builtin_trap();
	}
	fb_report_free(&r);
	return 0;
}
