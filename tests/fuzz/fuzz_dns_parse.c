/*
 * libFuzzer target: DNS answers. The first octet picks the question type
 * (A, AAAA, MX, TLSA); the rest is a whole DNS message from a hostile
 * server. The parser must not crash, leak or read out of bounds, and what
 * it returns must be consistent (records only with DNS_OK, names bounded).
 */
#include <stdlib.h>
#include <string.h>

#include "../../dns/dns_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TLSA };
	struct dns_ans a;

	if (size < 1)
		return 0;
	uint16_t qtype = types[data[0] % 4];
	dns_parse_answer(data + 1, size - 1, "example.org", qtype, &a);
	if (a.n && a.status != DNS_OK)
		abort();
	for (size_t i = 0; qtype == DNS_T_MX && i < a.n; i++)
		if (strlen(a.u.mx[i].host) >= DNS_NAME_MAX)
			abort();
	if (a.canon && strlen(a.canon) >= DNS_NAME_MAX)
		abort();
	dns_ans_free(&a);
	return 0;
}
