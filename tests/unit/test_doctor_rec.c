/* doctor/rec.c: DKIM key records, DMARC records, organizational domains
 * and alignment. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../doctor/doctor.h"
#include "unit_cfg.h"

Test(doctor_rec, dkim_key_record)
{
	struct doc_dkim_rec r;
	char err[200];

	cr_assert_eq(doc_dkim_parse("v=DKIM1; k=rsa; p=AQID BA==", &r, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(r.k, "rsa");
	cr_assert_eq(r.keylen, 4);
	cr_assert_eq(memcmp(r.key, "\1\2\3\4", 4), 0);
	cr_assert(!r.revoked && r.sha256 && !r.testing);
	cr_assert_eq(doc_dkim_parse("p=AQID", &r, err, sizeof err), 0);   /* v= and k= optional */
	cr_assert_str_eq(r.k, "rsa");
	cr_assert_eq(doc_dkim_parse("v=DKIM1; k=ed25519; t=y:s; h=sha1:sha256; p=", &r, err,
				    sizeof err), 0);
	cr_assert(r.revoked && r.testing && r.sha256);
	cr_assert_str_eq(r.k, "ed25519");
	cr_assert_eq(doc_dkim_parse("p=AQID; h=sha1", &r, err, sizeof err), 0);
	cr_assert(!r.sha256);
	const char *bad[] = {
		"k=rsa; v=DKIM1; p=AQID",       /* v= not first */
		"v=DKIM2; p=AQID",
		"v=DKIM1; k=rsa",               /* no p= */
		"v=DKIM1; k=dsa; p=AQID",
		"v=DKIM1; p=AQ!D",
		"v=DKIM1; p=AQID; p=AQID",      /* duplicate */
		"v=DKIM1; s=tlsrpt; p=AQID",
		"v=DKIM1; junk; p=AQID",
		"v=DKIM1; p=AQIDB",             /* trailing bits */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(doc_dkim_parse(bad[i], &r, err, sizeof err), -1, "%s", bad[i]);
}

Test(doctor_rec, dmarc_record)
{
	struct doc_dmarc_rec d;
	char err[200];

	cr_assert(doc_dmarc_is_record("v=DMARC1; p=none"));
	cr_assert(doc_dmarc_is_record(" v = DMARC1 ;p=none"));
	cr_assert(!doc_dmarc_is_record("v=spf1 -all"));
	cr_assert_eq(doc_dmarc_parse("v=DMARC1; p=reject; rua=mailto:d@x.test; adkim=s; pct=50",
				     &d, err, sizeof err), 0, "%s", err);
	cr_assert_eq(d.p, DOC_P_REJECT);
	cr_assert_eq(d.sp, DOC_P_REJECT);
	cr_assert(d.strict_dkim && !d.strict_spf);
	cr_assert_eq(d.pct, 50);
	cr_assert_str_eq(d.rua, "mailto:d@x.test");
	cr_assert_eq(doc_dmarc_parse("v=DMARC1; p=none; sp=quarantine", &d, err, sizeof err), 0);
	cr_assert_eq(d.p, DOC_P_NONE);
	cr_assert_eq(d.sp, DOC_P_QUARANTINE);
	cr_assert_str_eq(d.rua, "");
	cr_assert_eq(d.pct, 100);
	const char *bad[] = {
		"p=reject; v=DMARC1", "v=DMARC1", "v=DMARC1; p=block", "v=DMARC1; p=none; pct=101",
		"v=DMARC1; p=none; adkim=x", "v=DMARC1; p=none; rua=d@x.test", "v=DMARC1; p=none; p=none",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(doc_dmarc_parse(bad[i], &d, err, sizeof err), -1, "%s", bad[i]);
	cr_assert_str_eq(doc_dmarc_policy_name(DOC_P_QUARANTINE), "quarantine");
}

Test(doctor_rec, org_domain_and_alignment)
{
	char o[64];

	doc_org_domain("News.Mail.Example.COM.", o, sizeof o);
	cr_assert_str_eq(o, "example.com");
	doc_org_domain("example.com", o, sizeof o);
	cr_assert_str_eq(o, "example.com");
	doc_org_domain("localhost", o, sizeof o);
	cr_assert_str_eq(o, "localhost");
	doc_org_domain("shop.example.co.uk", o, sizeof o);
	cr_assert_str_eq(o, "co.uk");    /* the documented approximation */
	cr_assert(doc_aligned("bounces.example.com", "example.com", false));
	cr_assert(!doc_aligned("bounces.example.com", "example.com", true));
	cr_assert(doc_aligned("EXAMPLE.com", "example.com", true));
	cr_assert(!doc_aligned("example.net", "example.com", false));
}

Test(doctor_rec, unsubscribe_from_the_configuration)
{
	static const char *const confs[] = {
		"unsubscribe = { base_url = \"https://u.example.com/u\"; listen = [ \"127.0.0.1:8026\" ];"
		" secret = \"0123456789abcdef0123456789abcdef\"; };",
		"unsubscribe = { base_url = \"https://u.example.com/u\";"
		" secret = \"0123456789abcdef0123456789abcdef\"; };",
		"data_dir = \"/tmp\";",
	};
	struct doc_report rep = {0};
	char err[512];

	for (size_t i = 0; i < 3; i++) {
		struct cfg c;
		cr_assert_eq(unit_cfg_load(&c, confs[i], err, sizeof err), 0, "%s", err);
		doc_check_unsubscribe(&c, &rep);
		cfg_free(&c);
	}
	cr_assert_eq(rep.n, 3);
	cr_assert_eq(rep.rows[0].verdict, DOC_PASS);
	cr_assert(strstr(rep.rows[0].detail, "https://u.example.com/u/TOKEN"));
	cr_assert_eq(rep.rows[1].verdict, DOC_WARN);
	cr_assert(strstr(rep.rows[1].detail, "does not listen"));
	cr_assert_eq(rep.rows[2].verdict, DOC_WARN);
	cr_assert(strstr(rep.rows[2].detail, "not configured"));
	cr_assert_eq(rep.nwarn, 2);
	doc_report_free(&rep);
}
