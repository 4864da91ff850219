/* config/providers.c: the shipped providers.conf parses, user entries come
 * first and replace a shipped one by name, matching by domain name and by
 * MX host, reply rules, and clear errors for bad entries. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../common/common.h"
#include "../../config/config.h"
#include "unit_cfg.h"

static const struct cfg_reply_rule *reply(const struct cfg *c, const char *prov, int code,
					  const char *enh, const char *text)
{
	return cfg_provider_reply(c, cfg_provider_find(c, prov), code, enh, text);
}

Test(config_providers, shipped_ones_match_by_name_and_by_mx)
{
	struct cfg c;
	char err[512] = "";
	const char *gmx[] = { "alt1.gmail-smtp-in.l.google.com" };
	const char *ws[] = { "aspmx.l.google.com", "alt1.aspmx.l.google.com" };
	const char *yh[] = { "mta5.am0.yahoodns.net" };
	const char *other[] = { "mx.example.net" };

	cr_assert_eq(unit_cfg_load(&c, "hostname = \"h.test\";\n", err, sizeof err), 0, "%s", err);
	cr_assert_geq(c.nproviders, 7);
	int g = cfg_provider_find(&c, "gmail");
	cr_assert_geq(g, 0);
	cr_assert(c.providers[g].builtin);
	cr_assert_eq(cfg_provider_for(&c, "gmail.com", NULL, 0), g);
	cr_assert_eq(cfg_provider_for(&c, "GoogleMail.com", NULL, 0), g);
	cr_assert_eq(cfg_provider_for(&c, "gmail.com", gmx, 1), g);
	/* a Google-hosted domain: by its MX hosts */
	cr_assert_eq(cfg_provider_for(&c, "example.org", ws, 2), g);
	cr_assert_eq(cfg_provider_for(&c, "example.org", NULL, 0), -1);
	cr_assert_eq(cfg_provider_for(&c, "aol.com", yh, 1), cfg_provider_find(&c, "yahoo"));
	cr_assert_eq(cfg_provider_for(&c, "example.org", other, 1), -1);

	/* its policy is the starting point, a domains rule still wins */
	struct cfg_policy p;
	cfg_policy_for_provider(&c, "example.org", g, &p);
	cr_assert_eq(p.max_connections, 20);
	cr_assert_eq(p.max_messages_per_connection, 100);
	cr_assert_eq(p.port, 25, "the defaults' port: a provider has none");
	cr_assert_eq(p.implicit_tls, -1);
	cfg_policy_for(&c, "gmail.com", &p);
	cr_assert_eq(p.max_connections, 20);
	cfg_policy_for(&c, "example.org", &p);
	cr_assert_eq(p.max_connections, 50);
	cfg_free(&c);
}

Test(config_providers, shipped_reply_rules)
{
	struct cfg c;
	char err[512] = "";
	const struct cfg_reply_rule *r;

	cr_assert_eq(unit_cfg_load(&c, "hostname = \"h.test\";\n", err, sizeof err), 0, "%s", err);
	r = reply(&c, "gmail", 421, "4.7.28", "[192.0.2.1] Our system has detected an unusual "
		  "rate of unsolicited mail originating from your IP address. - gsmtp");
	cr_assert_not_null(r);
	cr_assert_eq(r->action, CFG_RA_BACKOFF);
	r = reply(&c, "gmail", 421, "4.7.0", "Try again later, closing connection. - gsmtp");
	cr_assert_eq(r->action, CFG_RA_BACKOFF, "no longer a plain deferral");
	r = reply(&c, "gmail", 550, "5.7.1", "Our system has detected an unusual rate of "
		  "unsolicited mail originating from your IP address ... has been blocked");
	cr_assert_eq(r->action, CFG_RA_SUSPEND_SOURCE);
	cr_assert_eq(r->duration_ms, 4 * 3600000ull);
	cr_assert_null(reply(&c, "gmail", 550, "5.1.1", "The email account that you tried to "
			     "reach does not exist"));
	r = reply(&c, "yahoo", 421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily "
		  "deferred due to unexpected volume or user complaints");
	cr_assert_eq(r->action, CFG_RA_BACKOFF);
	r = reply(&c, "microsoft", 451, "4.7.650", "The mail server [192.0.2.1] has been "
		  "temporarily rate limited due to IP reputation.");
	cr_assert_eq(r->action, CFG_RA_BACKOFF);
	r = reply(&c, "microsoft", 550, "5.7.515", "Access denied, sending domain example.com "
		  "does not meet the required authentication level.");
	cr_assert_eq(r->action, CFG_RA_BOUNCE);
	r = reply(&c, "microsoft", 550, "5.7.1", "Unfortunately, messages from [192.0.2.1] "
		  "weren't sent. ... part of their network is on our block list (S3140).");
	cr_assert_eq(r->action, CFG_RA_SUSPEND_SOURCE);
	cr_assert_null(reply(&c, "nobody", 421, "4.7.0", "x"));
	cfg_free(&c);
}

Test(config_providers, user_entries_first_and_replace_by_name)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c,
		"providers = ( { name = \"gmail\"; domains = [ \"gmail.test\" ]; max_connections = 3;\n"
		"                replies = ( { code = \"5*\"; text = \"BM0[0-9]\"; action = \"suspend-pool\";"
		" duration = \"10m\"; } ); },\n"
		"              { name = \"big\"; mx = [ \"*.bigmail.test\" ]; rate = \"10/s\"; } );\n",
		err, sizeof err), 0, "%s", err);
	int g = cfg_provider_find(&c, "gmail");
	cr_assert_eq(g, 0, "the user's first");
	cr_assert_not(c.providers[g].builtin);
	cr_assert_eq(cfg_provider_find(&c, "big"), 1);
	cr_assert_eq(cfg_provider_for(&c, "gmail.com", NULL, 0), -1, "replaced, not merged");
	cr_assert_eq(cfg_provider_for(&c, "gmail.test", NULL, 0), g);
	const char *mx[] = { "mx2.bigmail.test" };
	cr_assert_eq(cfg_provider_for(&c, "hosted.test", mx, 1), 1);
	const struct cfg_reply_rule *r = reply(&c, "gmail", 554, "5.7.0", "blocked: bm07");
	cr_assert_not_null(r);
	cr_assert_eq(r->action, CFG_RA_SUSPEND_POOL);
	cr_assert_eq(r->duration_ms, 600000);
	cr_assert_null(reply(&c, "gmail", 421, "4.7.0", "BM07"), "code 5* only");
	/* --check-config shows them, shipped ones marked */
	struct vl_buf o;
	vl_buf_init(&o);
	cfg_print(&c, &o);
	vl_buf_append(&o, "", 1);
	cr_assert_not_null(strstr(o.p, "name = \"big\""), "%s", o.p);
	cr_assert_not_null(strstr(o.p, "# shipped providers"));
	cr_assert_not_null(strstr(o.p, "#   { name = \"yahoo\";"), "%s", o.p);
	cr_assert_not_null(strstr(o.p, "action = \"suspend-pool\"; duration = \"600s\";"));
	vl_buf_free(&o);
	cfg_free(&c);
}

Test(config_providers, provider_defaults_false_drops_the_shipped)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c, "provider_defaults = false;\n"
		"providers = ( { name = \"big\"; mx = [ \"*.bigmail.test\" ]; } );\n",
		err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.nproviders, 1);
	cr_assert_eq(cfg_provider_for(&c, "gmail.com", NULL, 0), -1);
	cfg_free(&c);
}

Test(config_providers, bad_entries_are_named)
{
	static const struct { const char *conf, *want; } bad[] = {
		{ "providers = ( { name = \"a b\"; domains = [ \"x\" ]; } );",
		  "providers[0].name: needed" },
		{ "providers = ( { name = \"a\"; } );", "providers[0]: matches nothing" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; colour = 1; } );",
		  "providers[0].colour: unknown key" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; rate = \"fast\"; } );",
		  "providers[0].rate: not a rate" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; max_connections = 0; } );",
		  "providers[0].max_connections: expected an integer" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; replies = ( { action = \"pause\"; } ); } );",
		  "providers[0].replies[0].action: expected backoff" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; replies = ( { text = \"x\"; } ); } );",
		  "providers[0].replies[0].action: needed" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; replies = ( { text = \"(\"; "
		  "action = \"defer\"; } ); } );", "providers[0].replies[0].text: " },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; replies = ( { action = \"defer\"; "
		  "duration = \"1h\"; } ); } );", "only suspend-source and suspend-pool" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; replies = ( { action = "
		  "\"suspend-pool\"; duration = \"30d\"; } ); } );", "from 1s to 7d" },
		{ "providers = ( { name = \"a\"; mx = [ \"x\" ]; }, { name = \"a\"; mx = [ \"y\" ]; } );",
		  "providers[1]: a provider of that name is there already" },
		{ "providers = { name = \"a\"; };", "providers: expected a list" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct cfg c;
		char err[512] = "";
		cr_assert_eq(unit_cfg_load(&c, bad[i].conf, err, sizeof err), -1, "%s", bad[i].conf);
		cr_assert_not_null(strstr(err, bad[i].want), "%s: got %s", bad[i].conf, err);
	}
}

Test(config_warmup, standard_and_tables_give_the_day_cap)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c,
		"egress = ( { name = \"a\"; address = \"192.0.2.1\"; ehlo = \"a.test\"; warmup = \"standard\"; },\n"
		"           { name = \"b\"; address = \"192.0.2.2\"; ehlo = \"b.test\";\n"
		"             warmup = ( [ 1, 500 ], [ 3, 2000 ], [ 8, 0 ] ); warmup_start = \"2026-12-01\"; },\n"
		"           { name = \"c\"; address = \"192.0.2.3\"; ehlo = \"c.test\";\n"
		"             warmup = ( [ 1, 50 ], [ 2, 70 ] ); },\n"
		"           { name = \"d\"; address = \"192.0.2.4\"; ehlo = \"d.test\"; } );\n"
		"pools = ( { name = \"p\"; sources = [ \"a\", \"b\" ]; overflow = \"wait\"; } );\n",
		err, sizeof err), 0, "%s", err);
	const struct cfg_egress *a = &c.egress[0], *b = &c.egress[1], *e = &c.egress[2];
	cr_assert_str_eq(a->warmup, "standard");
	cr_assert_eq(a->warmup_start, -1);
	cr_assert_eq(cfg_warmup_cap(a, 0), 200, "before day 1 counts as day 1");
	cr_assert_eq(cfg_warmup_cap(a, 1), 200);
	cr_assert_eq(cfg_warmup_cap(a, 17), 1000000);
	cr_assert_eq(cfg_warmup_cap(a, 18), UINT64_MAX);
	cr_assert_str_eq(b->warmup, "custom");
	cr_assert_eq(b->warmup_start, 20788, "2026-12-01 in days since 1970");
	cr_assert_eq(cfg_warmup_cap(b, 2), 500);
	cr_assert_eq(cfg_warmup_cap(b, 3), 2000);
	cr_assert_eq(cfg_warmup_cap(b, 7), 2000);
	cr_assert_eq(cfg_warmup_cap(b, 8), UINT64_MAX);
	cr_assert_eq(cfg_warmup_cap(e, 400), 70, "the last cap holds");
	cr_assert_eq(c.egress[3].nsteps, 0);
	cr_assert_eq(cfg_warmup_cap(&c.egress[3], 1), UINT64_MAX);
	int p = cfg_pool_find(&c, "p");
	cr_assert(c.pools[p].overflow_wait);
	cr_assert_not(c.pools[cfg_pool_find(&c, NULL)].overflow_wait);
	struct vl_buf o;
	vl_buf_init(&o);
	cfg_print(&c, &o);
	vl_buf_append(&o, "", 1);
	cr_assert_not_null(strstr(o.p, "warmup = ( [ 1, 500 ], [ 3, 2000 ], [ 8, 0 ] ); "
				  "warmup_start = \"2026-12-01\";"), "%s", o.p);
	cr_assert_not_null(strstr(o.p, "overflow = \"wait\";"));
	vl_buf_free(&o);
	cfg_free(&c);
}

Test(config_warmup, bad_ones_are_named)
{
	static const struct { const char *warm, *want; } bad[] = {
		{ "warmup = 5;", "egress[0].warmup: expected \"standard\" or a table" },
		{ "warmup = ( );", "1 to 366 steps" },
		{ "warmup = ( [ 1 ] );", "each step is [ DAY, MAX_PER_DAY ]" },
		{ "warmup = ( [ 1, -5 ] );", "each step is" },
		{ "warmup_start = \"2026-12-01\";", "warmup_start: only with a warmup" },
		{ "warmup = \"standard\"; warmup_start = \"2026-13-01\";", "expected a date" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct cfg c;
		char err[512] = "", conf[512];
		snprintf(conf, sizeof conf, "egress = ( { name = \"a\"; address = \"192.0.2.1\"; "
			 "ehlo = \"a.test\"; %s } );\n", bad[i].warm);
		cr_assert_eq(unit_cfg_load(&c, conf, err, sizeof err), -1, "%s", conf);
		cr_assert_not_null(strstr(err, bad[i].want), "%s: got %s", conf, err);
	}
	struct cfg c;
	char err[512] = "";
	cr_assert_eq(unit_cfg_load(&c, "egress = ( { address = \"192.0.2.1\"; ehlo = \"a.test\"; } );\n"
		     "pools = ( { name = \"p\"; sources = [ \"192.0.2.1\" ]; overflow = \"later\"; } );\n",
		     err, sizeof err), -1);
	cr_assert_not_null(strstr(err, "pools[0].overflow: expected \"spill\""), "%s", err);
}

Test(config_providers, extend_adds_to_a_shipped_one)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c,
		"providers = ( { name = \"gmail\"; extend = true; domains = [ \"*gmail.test\" ];\n"
		"                max_connections = 4;\n"
		"                replies = ( { code = \"421\"; text = \"mine\"; action = \"defer\"; } ); } );\n",
		err, sizeof err), 0, "%s", err);
	int g = cfg_provider_find(&c, "gmail");
	cr_assert_eq(g, 0, "now the user's");
	cr_assert_not(c.providers[g].builtin);
	cr_assert_eq(cfg_provider_for(&c, "gmail.com", NULL, 0), g, "its own domains kept");
	cr_assert_eq(cfg_provider_for(&c, "news.gmail.test", NULL, 0), g);
	cr_assert_eq(c.providers[g].p.max_connections, 4);
	cr_assert_eq(c.providers[g].p.max_messages_per_connection, 100, "the shipped one's");
	cr_assert_eq(reply(&c, "gmail", 421, "4.7.0", "mine")->action, CFG_RA_DEFER, "first");
	cr_assert_eq(reply(&c, "gmail", 421, "4.7.28", "x")->action, CFG_RA_BACKOFF, "kept");
	/* the printed form loads the same */
	struct vl_buf o;
	struct cfg again;
	vl_buf_init(&o);
	cfg_providers_print(&c, &o);
	vl_buf_append(&o, "", 1);
	cr_assert_eq(unit_cfg_load(&again, o.p, err, sizeof err), 0, "%s\n%s", err, o.p);
	int h = cfg_provider_find(&again, "gmail");
	cr_assert_eq(cfg_provider_for(&again, "x.gmail.test", NULL, 0), h);
	cr_assert_eq(again.providers[h].nreplies, c.providers[g].nreplies);
	cfg_free(&again);
	vl_buf_free(&o);
	cfg_free(&c);
	cr_assert_eq(unit_cfg_load(&c, "providers = ( { name = \"nobody\"; extend = true; } );\n",
				   err, sizeof err), -1);
	cr_assert_not_null(strstr(err, "providers[0]: extends no provider of that name"), "%s", err);
}
