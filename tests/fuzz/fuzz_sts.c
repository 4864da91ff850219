/* libFuzzer: the MTA-STS TXT record and policy parsers (tls/sts.c) on
 * whatever a peer could publish, and MX matching against what parsed. */
#include <stdint.h>
#include <string.h>

#include "../../tls/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tls_sts_policy p;
	struct tls_sts_txt t;
	char err[200];

	tls_sts_txt_parse((const char *)data, size, &t, err, sizeof err);
	if (tls_sts_policy_parse((const char *)data, size, &p, err, sizeof err) == 0) {
		/* every kept pattern is a C string that matches itself (but a
		 * wildcard one, which needs a label in front) */
		for (size_t i = 0; i < p.nmx; i++)
			if (p.mx[i][0] != '*' && !tls_sts_mx_match(&p, p.mx[i]))
				__builtin_trap();
		char host[300];
		size_t n = size < sizeof host - 1 ? size : sizeof host - 1;
		memcpy(host, data, n);
		host[n] = '\0';
		tls_sts_mx_match(&p, host);
	}
	return 0;
}
