/* message/: address syntax (RFC 5321 Mailbox, RFC 6531 UTF-8) and VERP. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../message/message.h"

static int check(const char *a, bool *utf8)
{
	char why[120] = "";
	bool u = false;
	int rc = msg_addr_check(a, strlen(a), &u, why, sizeof why);
	if (rc < 0)
		cr_assert(why[0], "%s: a reason", a);
	if (utf8)
		*utf8 = u;
	return rc;
}

Test(msg_addr, valid)
{
	const char *ok[] = {
		"a@b", "ann@example.net", "first.last@sub.example.co.uk", "x+tag@example.com",
		"!#$%&'*+-/=?^_`{|}~@example.com", "\"quoted local\"@example.com",
		"\"a\\\"b\\\\c\"@example.com", "\"@\"@example.com", "\"\"@example.com",
		"user@[192.0.2.1]", "user@[IPv6:2001:db8::1]", "user@localhost",
		"a@xn--bcher-kva.example", "a@1-2.example", "a@123.example", NULL};
	for (int i = 0; ok[i]; i++) {
		bool utf8 = true;
		cr_assert_eq(check(ok[i], &utf8), 0, "%s", ok[i]);
		cr_assert_not(utf8, "%s is ASCII", ok[i]);
	}
}

Test(msg_addr, utf8)
{
	const char *ok[] = {"jörg@example.net", "用户@例子.广告", "\"ü ü\"@example.com",
			    "a@bücher.example", NULL};
	for (int i = 0; ok[i]; i++) {
		bool utf8 = false;
		cr_assert_eq(check(ok[i], &utf8), 0, "%s", ok[i]);
		cr_assert(utf8, "%s needs SMTPUTF8", ok[i]);
	}
	cr_assert_eq(check("j\xc3@example.net", NULL), -1, "truncated UTF-8");
	cr_assert_eq(check("j\xc0\xafx@example.net", NULL), -1, "overlong UTF-8");
	cr_assert_eq(check("j\xed\xa0\x80@example.net", NULL), -1, "a surrogate");
	cr_assert_eq(check("a@b\xffz", NULL), -1);
}

Test(msg_addr, invalid)
{
	const char *bad[] = {
		"", "plain", "@example.com", "a@", "a@@b", "a@b@c", ".a@b", "a.@b", "a..b@c",
		"a b@c", "a@b c", "<a@b>", "a<@b", "a@b>", "a\r\n@b", "a@b\r\nRCPT TO:<x@y>",
		"a\t@b", "a@-b.example", "a@b-.example", "a@b..example", "a@.b", "a@b.",
		"a@b_c.example", "\"unterminated@b", "\"a\"b@c", "\"a\nb\"@c", "\"\\\x01\"@c",
		"a@[1.2.3]", "a@[1.2.3.4", "a@[IPv6:zz::1]", "a@[gen:x]", "a@[::1]",
		"a(comment)@b", "a,b@c", "a;b@c", "a:b@c", "a[b@c", NULL};
	for (int i = 0; bad[i]; i++)
		cr_assert_eq(check(bad[i], NULL), -1, "%s", bad[i]);
	char nul[] = "a\0b@c";
	char why[80];
	bool u;
	cr_assert_eq(msg_addr_check(nul, sizeof nul - 1, &u, why, sizeof why), -1);
}

Test(msg_addr, lengths)
{
	char a[400];

	/* local part: 64 octets, not 65 */
	memset(a, 'l', 64);
	strcpy(a + 64, "@example.com");
	cr_assert_eq(check(a, NULL), 0);
	memset(a, 'l', 65);
	strcpy(a + 65, "@example.com");
	cr_assert_eq(check(a, NULL), -1);
	/* a label: 63 octets, not 64 */
	strcpy(a, "a@");
	memset(a + 2, 'd', 63);
	strcpy(a + 65, ".example");
	cr_assert_eq(check(a, NULL), 0);
	strcpy(a, "a@");
	memset(a + 2, 'd', 64);
	strcpy(a + 66, ".example");
	cr_assert_eq(check(a, NULL), -1);
	/* the whole address: 254 octets, not 255 */
	strcpy(a, "a@");
	for (size_t n = 2; n < 254; n += 2)
		memcpy(a + n, "b.", 2);
	a[253] = 'c';
	a[254] = '\0';
	cr_assert_eq(strlen(a), 254);
	cr_assert_eq(check(a, NULL), 0);
	a[254] = 'c';
	a[255] = '\0';
	a[253] = '.';
	cr_assert_eq(check(a, NULL), -1);
}

Test(msg_addr, domain)
{
	cr_assert_str_eq(msg_addr_domain("ann@example.net"), "example.net");
	cr_assert_str_eq(msg_addr_domain("\"a@b\"@example.net"), "example.net");
	cr_assert_str_eq(msg_addr_domain("nodomain"), "");
}

Test(msg_addr, verp)
{
	char out[300];

	cr_assert_eq(msg_verp("bounces@news.example.com", "JOBID", 7, out, sizeof out), 0);
	cr_assert_str_eq(out, "bounces+JOBID.7@news.example.com");
	cr_assert_eq(msg_verp("\"b s\"@x.example", "J", 12, out, sizeof out), 0);
	cr_assert_str_eq(out, "\"b s+J.12\"@x.example");
	cr_assert_eq(msg_verp("nodomain", "J", 1, out, sizeof out), -1);
	cr_assert_eq(msg_verp("bounces@news.example.com", "JOBID", 7, out, 20), -1,
		     "does not fit");
	char longlocal[80];
	memset(longlocal, 'b', 60);
	strcpy(longlocal + 60, "@x.example");
	cr_assert_eq(msg_verp(longlocal, "JOBID", 7, out, sizeof out), -1,
		     "local part over 64 octets");
	bool utf8;
	char why[80];
	cr_assert_eq(msg_verp("bounces@news.example.com", "j-1_x", 123456, out, sizeof out), 0);
	cr_assert_eq(msg_addr_check(out, strlen(out), &utf8, why, sizeof why), 0, "%s", why);
}
