/* config/: the tls_rpt group (TLS reporting, RFC 8460): off unless set,
 * organization and contact needed, strict keys. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"
#include "unit_cfg.h"


Test(config_tlsrpt, off_unless_set)
{
	struct cfg c;
	char err[256];

	cr_assert_eq(unit_cfg_load(&c, "hostname = \"h.test\";\n", err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.tls_rpt.on, false);
	cfg_free(&c);
}

Test(config_tlsrpt, keys_and_checks)
{
	struct cfg c;
	char err[256] = "";
	struct vl_buf b;

	cr_assert_eq(unit_cfg_load(&c, "tls_rpt = { organization = \"Example\"; contact = \"tls@example.com\";"
			  " ca_file = \"/x/ca.pem\"; send = false; };\n", err, sizeof err), 0, "%s", err);
	cr_assert(c.tls_rpt.on);
	cr_assert_str_eq(c.tls_rpt.organization, "Example");
	cr_assert_str_eq(c.tls_rpt.contact, "tls@example.com");
	cr_assert_str_eq(c.tls_rpt.ca_file, "/x/ca.pem");
	cr_assert_str_eq(c.tls_rpt.from, "");
	cr_assert_eq(c.tls_rpt.send, false);
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "tls_rpt = {\n  organization = \"Example\";"), "%s", b.p);
	vl_buf_free(&b);
	cfg_free(&c);

	static const struct { const char *text, *want; } bad[] = {
		{ "tls_rpt = { contact = \"a@b\"; };", "tls_rpt.organization: needed" },
		{ "tls_rpt = { organization = \"o\"; };", "tls_rpt.contact: needed" },
		{ "tls_rpt = { organization = \"o\"; contact = \"nobody\"; };", "tls_rpt.contact" },
		{ "tls_rpt = { organization = \"o\"; contact = \"a@b\"; from = \"x\"; };",
		  "tls_rpt.from: expected an email address" },
		{ "tls_rpt = { organization = \"o\"; contact = \"a@b\"; organisation = \"o\"; };",
		  "tls_rpt.organisation: unknown key" },
		{ "tls_rpt = 1;", "tls_rpt: expected a group" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		cr_assert_eq(unit_cfg_load(&c, bad[i].text, err, sizeof err), -1, "accepted %s", bad[i].text);
		cr_assert(strstr(err, bad[i].want), "%s: got %s", bad[i].text, err);
		cfg_free(&c);
	}
}
