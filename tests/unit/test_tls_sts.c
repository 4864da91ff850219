/* tls/sts.c: MTA-STS (RFC 8461) TXT records, policy files, MX matching. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../tls/tls.h"

static int txt(const char *s, struct tls_sts_txt *t, char *err)
{
	return tls_sts_txt_parse(s, strlen(s), t, err, 200);
}

Test(tls_sts, txt_records)
{
	struct tls_sts_txt t;
	char err[200];

	cr_assert_eq(txt("v=STSv1; id=20160831085700Z;", &t, err), 0, "%s", err);
	cr_assert_str_eq(t.id, "20160831085700Z");
	cr_assert_eq(txt("v=STSv1;id=abc", &t, err), 0, "no final ';', no spaces");
	cr_assert_str_eq(t.id, "abc");
	cr_assert_eq(txt("v=STSv1; ext=x-1; id=A1 ;", &t, err), 0, "extensions ignored");
	cr_assert_str_eq(t.id, "A1");

	static const char *const bad[] = {
		"", "v=STSv2; id=1;", "id=1; v=STSv1;", "v=STSv1;", "v=STSv1; id=;",
		"v=STSv1; id=a-b;", "v=STSv1; id=123456789012345678901234567890123;",
		"v=STSv1; id", "v=STSv1; =1;", "v=STSv1; id=1\x01;", "V=STSv1; id=1;",
		"spf1 include:x", "v=STSv1 id=1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(txt(bad[i], &t, err), -1, "accepted \"%s\"", bad[i]);
	cr_assert_eq(txt("v=STSv1; id=12345678901234567890123456789012;", &t, err), 0,
		     "32 is the longest id");
}

static int pol(const char *s, struct tls_sts_policy *p, char *err)
{
	return tls_sts_policy_parse(s, strlen(s), p, err, 200);
}

Test(tls_sts, policy_files)
{
	static struct tls_sts_policy p;
	char err[200];

	cr_assert_eq(pol("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
			 "mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			 &p, err), 0, "%s", err);
	cr_assert_eq(p.mode, TLS_STS_ENFORCE);
	cr_assert_eq(p.max_age, 604800);
	cr_assert_eq(p.nmx, 3);
	cr_assert_str_eq(p.mx[1], "*.example.net");
	cr_assert_str_eq(tls_sts_mode_name(p.mode), "enforce");

	cr_assert_eq(pol("version:STSv1\nmode:testing\nmx:MX.Example.COM.\nmax_age:86400\n"
			 "future_field: whatever\n", &p, err), 0, "LF, no spaces, an extension: %s",
		     err);
	cr_assert_eq(p.mode, TLS_STS_TESTING);
	cr_assert_str_eq(p.mx[0], "mx.example.com", "lower case, no final dot");
	cr_assert_eq(pol("version: STSv1\nmode: none\nmax_age: 0", &p, err), 0,
		     "mode none needs no mx: %s", err);

	static const char *const bad[] = {
		"mode: enforce\nmx: a.b\nmax_age: 1\n",                    /* no version */
		"version: STSv1\nmx: a.b\nmax_age: 1\n",                   /* no mode */
		"version: STSv1\nmode: enforce\nmx: a.b\n",                /* no max_age */
		"version: STSv1\nmode: enforce\nmax_age: 1\n",             /* no mx */
		"version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
		"version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n",
		"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n",
		"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 99999999999\n",
		"version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nno colon here\nmx: a.b\nmax_age: 1\n",
		"<html>404</html>",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		cr_assert_eq(pol(bad[i], &p, err), -1, "accepted #%zu", i);
		cr_assert(strstr(err, "MTA-STS"), "%s", err);
	}
}

Test(tls_sts, bounded)
{
	static struct tls_sts_policy p;
	char err[200];
	size_t n = 70000;
	char *big = malloc(n);

	memset(big, '\n', n);
	cr_assert_eq(tls_sts_policy_parse(big, n, &p, err, sizeof err), -1);
	cr_assert(strstr(err, "64 KB"), "%s", err);
	free(big);

	char many[4096] = "version: STSv1\nmode: enforce\nmax_age: 1\n";
	for (int i = 0; i <= TLS_STS_MX_MAX; i++)
		snprintf(many + strlen(many), sizeof many - strlen(many), "mx: m%d.example\n", i);
	cr_assert_eq(pol(many, &p, err), -1, "more mx lines than kept");
}

Test(tls_sts, mx_matching)
{
	static struct tls_sts_policy p;
	char err[200];

	cr_assert_eq(pol("version: STSv1\nmode: enforce\nmax_age: 1\nmx: mail.example.com\n"
			 "mx: *.example.net\n", &p, err), 0, "%s", err);
	cr_assert(tls_sts_mx_match(&p, "mail.example.com"));
	cr_assert(tls_sts_mx_match(&p, "MAIL.example.com."), "case and a final dot");
	cr_assert(tls_sts_mx_match(&p, "mx1.example.net"));
	cr_assert_not(tls_sts_mx_match(&p, "example.net"), "the wildcard needs a label");
	cr_assert_not(tls_sts_mx_match(&p, "a.b.example.net"), "exactly one label");
	cr_assert_not(tls_sts_mx_match(&p, "mail.example.com.evil.test"));
	cr_assert_not(tls_sts_mx_match(&p, "xmail.example.com"));
	cr_assert_not(tls_sts_mx_match(&p, ".example.net"));
	cr_assert_not(tls_sts_mx_match(&p, ""));
}
