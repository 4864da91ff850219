/* libFuzzer: the _smtp._tls TXT record parser (tlsrpt/record.c) on whatever
 * a domain could publish, and a stored aggregate (tlsrpt/report.c) read
 * back from a file that could be damaged. */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "../../tlsrpt/tlsrpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rpt_record r;
	char err[200];

	if (rpt_record_parse((const char *)data, size, &r, err, sizeof err) == 0) {
		/* every kept URI is a bounded C string of a scheme we send to */
		if (!r.nrua || r.nrua > RPT_RUA_MAX)
			__builtin_trap();
		for (size_t i = 0; i < r.nrua; i++)
			if (strnlen(r.rua[i], RPT_URI_MAX) == RPT_URI_MAX ||
			    (strncasecmp(r.rua[i], "mailto:", 7) && strncasecmp(r.rua[i], "https://", 8)))
				__builtin_trap();
	}
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	if (j) {
		struct rpt_day *d = rpt_day_new(20000);
		if (rpt_day_load(d, j, err, sizeof err) == 0) {
			/* what loaded serializes, and is a report */
			for (size_t i = 0; i < rpt_day_ndomains(d); i++) {
				json_t *s = rpt_day_domain_json(d, rpt_day_domain(d, i, NULL));
				struct rpt_meta m = { "o", "c@d", "s" };
				json_t *rep = rpt_report_json(s, &m);
				if (!s || !rep)
					__builtin_trap();
				json_decref(rep);
				json_decref(s);
			}
		}
		rpt_day_free(d);
		json_decref(j);
	}
	return 0;
}
