/* config/: egress sources (names default to the address, unique, IP
 * addresses), pools (sources that exist, weights, the implicit
 * "default" pool of every source), and the pool key of policies. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../config/config.h"
#include "unit_cfg.h"

#define EGRESS "egress = ( { name = \"ip1\"; address = \"192.0.2.10\"; ehlo = \"mta1.example.com\"; },\n" \
	       "           { address = \"192.0.2.11\"; ehlo = \"mta2.example.com\"; } );\n"

Test(config_egress, names_default_to_the_address_and_default_pool_has_all)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c, EGRESS, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.negress, 2);
	cr_assert_str_eq(c.egress[0].name, "ip1");
	cr_assert_str_eq(c.egress[1].name, "192.0.2.11");
	cr_assert_str_eq(c.egress[1].ehlo, "mta2.example.com");
	cr_assert_eq(c.npools, 1);
	int d = cfg_pool_find(&c, NULL);
	cr_assert_eq(d, 0);
	cr_assert_eq(cfg_pool_find(&c, "default"), 0);
	cr_assert_eq(c.pools[d].n, 2);
	cr_assert_eq(c.pools[d].src[1], 1);
	cr_assert_eq(c.pools[d].weight[0], 1);
	cr_assert_eq(c.pools[d].weight[1], 1);
	cr_assert_eq(cfg_pool_find(&c, "news"), -1);
	cfg_free(&c);
}

Test(config_egress, no_egress_has_an_empty_default_pool)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c, "hostname = \"h.test\";\n", err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.negress, 0);
	cr_assert_eq(cfg_pool_find(&c, NULL), 0);
	cr_assert_eq(c.pools[0].n, 0);
	cfg_free(&c);
}

Test(config_egress, pools_weights_and_the_pool_key)
{
	struct cfg c;
	char err[512] = "";
	struct cfg_policy p;

	cr_assert_eq(unit_cfg_load(&c, EGRESS
		"pools = ( { name = \"news\"; sources = [ \"192.0.2.11\", \"ip1\" ]; weights = [ 1, 3 ]; },\n"
		"          { name = \"tx\"; sources = [ \"ip1\" ]; } );\n"
		"defaults = { pool = \"tx\"; };\n"
		"domains = ( { match = \"*.news.test\"; pool = \"news\"; } );\n", err, sizeof err),
		0, "%s", err);
	cr_assert_eq(c.npools, 3);     /* and the implicit default */
	int n = cfg_pool_find(&c, "news");
	cr_assert_eq(n, 0);
	cr_assert_eq(c.pools[n].n, 2);
	cr_assert_eq(c.pools[n].src[0], 1);
	cr_assert_eq(c.pools[n].src[1], 0);
	cr_assert_eq(c.pools[n].weight[0], 1);
	cr_assert_eq(c.pools[n].weight[1], 3);
	cr_assert_eq(c.pools[cfg_pool_find(&c, "tx")].weight[0], 1);
	cr_assert_eq(cfg_pool_find(&c, "default"), 2);
	cfg_policy_for(&c, "a.news.test", &p);
	cr_assert_str_eq(p.pool, "news");
	cfg_policy_for(&c, "other.test", &p);
	cr_assert_str_eq(p.pool, "tx");
	cfg_free(&c);
}

Test(config_egress, a_pool_named_default_replaces_the_implicit_one)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c, EGRESS
		"pools = ( { name = \"default\"; sources = [ \"ip1\" ]; } );\n", err, sizeof err),
		0, "%s", err);
	cr_assert_eq(c.npools, 1);
	cr_assert_eq(c.pools[cfg_pool_find(&c, NULL)].n, 1);
	cfg_free(&c);
}

static void refused(const char *text, const char *want)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_neq(unit_cfg_load(&c, text, err, sizeof err), 0, "accepted: %s", text);
	cr_assert(strstr(err, want), "error \"%s\" does not say \"%s\"", err, want);
	cfg_free(&c);
}

Test(config_egress, errors_name_the_key)
{
	refused(EGRESS "pools = ( { name = \"n\"; sources = [ \"ip1\", \"ip9\" ]; } );",
		"pools[0].sources[1]: names no egress source");
	refused(EGRESS "pools = ( { name = \"n\"; sources = [ \"ip1\", \"ip1\" ]; } );",
		"pools[0].sources[1]: names a source twice");
	refused(EGRESS "pools = ( { name = \"n\"; sources = [ ]; } );", "pools[0].sources");
	refused(EGRESS "pools = ( { name = \"n\"; sources = [ \"ip1\" ]; weights = [ 1, 2 ]; } );",
		"pools[0].weights: expected one integer per source");
	refused(EGRESS "pools = ( { name = \"n\"; sources = [ \"ip1\" ]; weights = [ -1 ]; } );",
		"pools[0].weights: expected integers");
	refused(EGRESS "pools = ( { name = \"n\"; sources = [ \"ip1\" ]; size = 3; } );",
		"pools[0].size: unknown key");
	refused(EGRESS "pools = ( { sources = [ \"ip1\" ]; } );", "pools[0].name: missing");
	refused(EGRESS "pools = ( { name = \"n\"; sources = [ \"ip1\" ]; },"
		" { name = \"n\"; sources = [ \"ip1\" ]; } );", "pools[1]: names a pool twice");
	refused("egress = ( { address = \"192.0.2.1\"; ehlo = \"a.test\"; },"
		" { name = \"192.0.2.1\"; address = \"192.0.2.2\"; ehlo = \"b.test\"; } );",
		"egress[1].name: names a source twice");
	refused("egress = ( { address = \"mx.example.com\"; ehlo = \"a.test\"; } );",
		"egress[0].address: expected an IP address");
	refused("egress = ( { address = \"192.0.2.1\"; ehlo = \"a b\"; } );", "egress[0].ehlo");
	refused("egress = ( { address = \"192.0.2.1\"; } );", "egress[0].ehlo: missing");
	refused("egress = ( { address = \"192.0.2.1\"; ehlo = \"a.test\"; port = \"x\"; } );",
		"egress[0].port: unknown key");
	refused(EGRESS "domains = ( { match = \"*\"; pool = \"nope\"; } );",
		"domains[0].pool: names no pool");
	refused(EGRESS "defaults = { pool = \"nope\"; };", "defaults.pool: names no pool");
}

Test(config_egress, printed)
{
	struct cfg c;
	char err[512] = "";
	struct vl_buf b;

	cr_assert_eq(unit_cfg_load(&c, EGRESS
		"pools = ( { name = \"news\"; sources = [ \"ip1\", \"192.0.2.11\" ]; weights = [ 3, 1 ]; } );\n"
		"domains = ( { match = \"*.test\"; pool = \"news\"; } );\n", err, sizeof err),
		0, "%s", err);
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "{ name = \"ip1\"; address = \"192.0.2.10\"; ehlo = \"mta1.example.com\"; }"),
		  "%s", b.p);
	cr_assert(strstr(b.p, "{ name = \"news\"; sources = [ \"ip1\", \"192.0.2.11\" ]; "
			      "weights = [ 3, 1 ]; }"), "%s", b.p);
	cr_assert(strstr(b.p, "pool = \"news\";"), "%s", b.p);
	vl_buf_free(&b);
	cfg_free(&c);
}
