/* libFuzzer: doctor's record parsers (SPF, DKIM key, DMARC), macro
 * expansion, and check_host() over a world where every name's TXT record
 * is the input (includes and redirects recurse into it; the lookup and
 * void limits must end every evaluation). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../doctor/doctor.h"

static const char *rec;

static void lookup(void *arg, enum doc_q q, const char *name, struct doc_answer *a)
{
	static struct doc_ip ip;
	(void)arg;
	*a = (struct doc_answer){ .rc = DOC_RC_NXDOMAIN };
	if (q == DOC_Q_TXT || q == DOC_Q_PTR) {
		a->rc = DOC_RC_OK;
		a->n = 1;
		a->txt = &rec;
	} else if (name[0] && name[0] < 'm') {
		doc_ip_parse("10.0.0.1", &ip);
		a->rc = DOC_RC_OK;
		a->n = 1;
		a->ip = &ip;
		a->nmx = (size_t)name[0] % 13;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), err[300], out[300];
	struct doc_spf_rec *r = malloc(sizeof *r);
	struct doc_dkim_rec k;
	struct doc_dmarc_rec d;

	memcpy(s, data, size);
	s[size] = '\0';
	doc_spf_parse(s, r, err, sizeof err);
	doc_dkim_parse(s, &k, err, sizeof err);
	doc_dmarc_parse(s, &d, err, sizeof err);
	doc_org_domain(s, out, sizeof out);
	struct doc_spf_query q = { .domain = "x.test", .sender = s, .helo = s };
	doc_ip_parse("10.0.0.1", &q.ip);
	doc_spf_expand(s, &q, "x.test", out, sizeof out);
	rec = s;
	struct doc_spf_out o;
	doc_spf_check(&q, lookup, NULL, &o);
	free(r);
	free(s);
	return 0;
}
