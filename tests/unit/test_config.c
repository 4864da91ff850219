/* common/: the configuration file. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"
#include "unit_cfg.h"


Test(config, defaults)
{
	struct cfg c;
	char err[256];
	cr_assert_eq(cfg_load(&c, NULL, err, sizeof err), 0);
	cr_assert_str_eq(c.data_dir, "volley-data");
	cr_assert_str_eq(c.defaults.tls, "dane");
	cr_assert_eq(c.defaults.max_connections, 50);
	cr_assert_eq(c.nretry, 6);
	cr_assert_eq(c.retry_ms[0], 300000);
	cr_assert_eq(c.spool.journal_commit_ms, 50);
	cfg_free(&c);
}

Test(config, full_file_and_policy_overlay)
{
	struct cfg c;
	char err[256] = "";
	int rc = unit_cfg_load(&c,
		      "data_dir = \"/var/spool/volley\";\nhostname = \"mta1.example.com\";\n"
		      "max_message_size = \"10MB\";\n"
		      "dns = { servers = [ \"127.0.0.1:5353\" ]; timeout_ms = 500; };\n"
		      "defaults = { tls = \"encrypt\"; max_connections = 10; retry = [ \"1m\", \"2m\" ];"
		      " max_age = \"1d\"; };\n"
		      "domains = ( { match = \"gmail.com\"; max_connections = 20; rate = \"3000/min\"; },\n"
		      "  { match = \"*.test\"; route = \"127.0.0.1:2525\"; tls = \"none\";"
		      " auth = { user = \"u\"; password = \"p\"; }; } );\n"
		      "egress = ( { address = \"192.0.2.10\"; ehlo = \"mta1.example.com\"; } );\n"
		      "dkim = ( { domain = \"example.com\"; selector = \"s1\"; key = \"/k.pem\"; } );\n",
		      err, sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(c.max_message_size, 10000000);
	cr_assert_eq(c.dns.nservers, 1);
	cr_assert_eq(c.max_age_ms, 86400000);
	cr_assert_eq(c.nretry, 2);
	struct cfg_policy p;
	cfg_policy_for(&c, "gmail.com", &p);
	cr_assert_eq(p.max_connections, 20);
	cr_assert_str_eq(p.rate, "3000/min");
	cr_assert_str_eq(p.tls, "encrypt");
	cfg_policy_for(&c, "a.test", &p);
	cr_assert_str_eq(p.route, "127.0.0.1:2525");
	cr_assert_str_eq(p.tls, "none");
	cr_assert_str_eq(p.auth_user, "u");
	cr_assert_eq(p.max_connections, 10);
	cr_assert_str_eq(c.dkim[0].selector, "s1");
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "password = \"(hidden)\""));
	cr_assert_null(strstr(b.p, "\"p\""));
	vl_buf_free(&b);
	cfg_free(&c);
}

Test(config, errors_name_line_and_key)
{
	struct { const char *text, *want; } cases[] = {
		{ "a = 1;", ":1: a: unknown key" },
		{ "\ndefaults = { tls = \"maybe\"; };", ":2: defaults.tls:" },
		{ "defaults = { port = 70000; };", "defaults.port" },
		{ "defaults = { max_connections = 0; };", "defaults.max_connections: expected 1" },
		{ "domains = ( { match = \"x\"; max_connections = -5; } );",
		  "domains[0].max_connections" },
		{ "defaults = { rate = \"fast\"; };", "defaults.rate" },
		{ "defaults = { retry = [ ]; };", "defaults.retry" },
		{ "domains = ( { route = \"x:1\"; } );", "domains[0]: each entry needs match" },
		{ "domains = ( { match = \"x\"; route = \"nope\"; } );", "domains[0].route" },
		{ "dkim = ( { domain = \"x\"; } );", "dkim[0].selector: missing" },
		{ "max_message_size = \"huge\";", "max_message_size" },
		{ "api = { max_body = -1; };", "api.max_body" },
		{ "api = { max_connections = 0; };", "api.max_connections" },
		{ "api = { max_connections_per_ip = -1; };", "api.max_connections_per_ip" },
		{ "api = { threads = 0; };", "api.threads" },
		{ "api = { header_timeout = \"0s\"; };", "api.header_timeout" },
		{ "api = { idle_timeout = \"soon\"; };", "api.idle_timeout" },
		{ "workers = \"two\";", "workers: expected an integer" },
		{ "hostname = ", "syntax error" },
		{ "api = { listen = \"127.0.0.1:8025\"; };", ":1: api.listen: needs api.token" },
		{ "api = { listen = \"any:8025\"; token = \"t\"; };", "must be an IP address" },
		{ "api = { listen = \"127.0.0.1\"; token = \"t\"; };", "expected \"host:port\"" },
		{ "log = { level = \"loud\"; };", ":1: log.level: expected error, warn" },
		{ "log = { colour = true; };", "log.colour: unknown key" },
		{ "console = { actions = 1; };", ":1: console.actions: expected true or false" },
		{ "console = { enabled = \"yes\"; };", "console.enabled: expected true or false" },
		{ "console = { theme = \"dark\"; };", "console.theme: unknown key" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct cfg c;
		char err[256] = "";
		cr_assert_eq(unit_cfg_load(&c, cases[i].text, err, sizeof err), -1, "%s", cases[i].text);
		cr_assert(strstr(err, cases[i].want), "%s: got \"%s\"", cases[i].text, err);
		cfg_free(&c);
	}
}

/* The log group: defaults, and what a file sets. */
Test(config, log_group)
{
	struct cfg c;
	char err[256] = "";

	cr_assert_eq(unit_cfg_load(&c, "", err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.log.file, "");
	cr_assert_not(c.log.syslog);
	cr_assert_eq(cfg_log_level(&c), VL_LOG_INFO);
	cfg_free(&c);
	cr_assert_eq(unit_cfg_load(&c, "log = { file = \"/tmp/v.log\"; syslog = true; "
				   "level = \"warn\"; };", err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.log.file, "/tmp/v.log");
	cr_assert(c.log.syslog);
	cr_assert_eq(cfg_log_level(&c), VL_LOG_WARN);
	cfg_free(&c);
}

/* The console group: on and read-only by default; printed and loaded back. */
Test(config, console_group)
{
	struct cfg c;
	char err[256] = "";
	struct vl_buf b;

	cr_assert_eq(unit_cfg_load(&c, "", err, sizeof err), 0, "%s", err);
	cr_assert(c.console.enabled);
	cr_assert_not(c.console.actions);
	cfg_free(&c);
	cr_assert_eq(unit_cfg_load(&c, "console = { enabled = false; actions = true; };", err,
				   sizeof err), 0, "%s", err);
	cr_assert_not(c.console.enabled);
	cr_assert(c.console.actions);
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_not_null(strstr(b.p, "console = {\n  enabled = false;\n  actions = true;\n};"),
			   "%s", b.p);
	vl_buf_free(&b);
	cfg_free(&c);
}

/* Smarthosts by name, and implicit TLS: on by default for port 465. */
Test(config, named_routes_and_implicit_tls)
{
	struct cfg c;
	char err[256] = "";
	int rc = unit_cfg_load(&c,
		      "defaults = { tls = \"encrypt\"; };\n"
		      "domains = ( { match = \"a.test\"; route = \"relay.example.com:465\";"
		      " auth = { user = \"u\"; password = \"p\"; }; },\n"
		      "  { match = \"b.test\"; route = \"relay.example.com:587\"; },\n"
		      "  { match = \"c.test\"; route = \"[::1]:2465\"; implicit_tls = true; },\n"
		      "  { match = \"d.test\"; route = \"192.0.2.1:465\"; implicit_tls = false;"
		      " tls = \"none\"; },\n"
		      "  { match = \"e.test\"; port = 465; tls = \"dane\"; } );\n",
		      err, sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	struct cfg_policy p;
	struct { const char *dom; unsigned port; bool implicit; } want[] = {
		{ "a.test", 465, true }, { "b.test", 587, false }, { "c.test", 2465, true },
		{ "d.test", 465, false }, { "e.test", 465, true }, { "other.test", 25, false },
	};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		cfg_policy_for(&c, want[i].dom, &p);
		cr_assert_eq(cfg_policy_port(&p), want[i].port, "%s", want[i].dom);
		cr_assert_eq(cfg_policy_implicit_tls(&p), want[i].implicit, "%s", want[i].dom);
	}
	cfg_policy_for(&c, "a.test", &p);
	cr_assert_str_eq(p.route, "relay.example.com:465");
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "route = \"relay.example.com:465\";"), "%s", b.p);
	cr_assert(strstr(b.p, "implicit_tls = true;"), "%s", b.p);
	cr_assert(strstr(b.p, "implicit_tls = false;"), "%s", b.p);
	vl_buf_free(&b);
	cfg_free(&c);
}

Test(config, route_and_implicit_tls_errors)
{
	struct { const char *text, *want; } cases[] = {
		/* implicit TLS is TLS: policy none cannot have it */
		{ "domains = ( { match = \"x\"; route = \"relay.test:465\"; tls = \"none\"; } );",
		  "domains[0]: implicit TLS" },
		{ "domains = ( { match = \"x\"; route = \"relay.test:25\"; implicit_tls = true; } );"
		  "\ndefaults = { tls = \"none\"; };", "domains[0]: implicit TLS" },
		{ "defaults = { port = 465; tls = \"none\"; };", "defaults: implicit TLS" },
		{ "defaults = { implicit_tls = \"yes\"; };", "defaults.implicit_tls: expected true" },
		/* a route's host: an address or a host name */
		{ "domains = ( { match = \"x\"; route = \"relay test:25\"; } );", "domains[0].route" },
		{ "domains = ( { match = \"x\"; route = \"relay..test:25\"; } );", "domains[0].route" },
		{ "domains = ( { match = \"x\"; route = \"a:b:25\"; } );", "domains[0].route" },
		{ "domains = ( { match = \"x\"; route = \"relay.test\"; } );", "domains[0].route" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct cfg c;
		char err[512] = "";
		cr_assert_eq(unit_cfg_load(&c, cases[i].text, err, sizeof err), -1, "%s", cases[i].text);
		cr_assert(strstr(err, cases[i].want), "%s: got \"%s\"", cases[i].text, err);
		cfg_free(&c);
	}
	struct cfg c;
	char err[512] = "";
	cr_assert_eq(unit_cfg_load(&c, "domains = ( { match = \"x\"; route = \"relay.test:465\"; "
			  "tls = \"may\"; } );", err, sizeof err), 0, "%s", err);
	cfg_free(&c);
}

Test(config, sizes_and_rates)
{
	uint64_t v;
	double r;
	cr_assert_eq(vl_parse_size("25MB", &v), 0);
	cr_assert_eq(v, 25000000);
	cr_assert_eq(vl_parse_size("1KiB", &v), 0);
	cr_assert_eq(v, 1024);
	cr_assert_eq(vl_parse_size("12", &v), 0);
	cr_assert_eq(v, 12);
	cr_assert_eq(vl_parse_size("3 MB", &v), -1);
	cr_assert_eq(vl_parse_rate("3000/min", &r), 0);
	cr_assert_float_eq(r, 50.0, 1e-9);
	cr_assert_eq(vl_parse_rate("36000/h", &r), 0);
	cr_assert_float_eq(r, 10.0, 1e-9);
	cr_assert_eq(vl_parse_rate("0/s", &r), -1);
	cr_assert_eq(vl_parse_rate("5", &r), -1);
	cr_assert_eq(vl_parse_rate("5/week", &r), -1);
}

/* The cluster block as printed loads back as it was (TLS keys included). */
Test(config, cluster_tls_printed_loads_back)
{
	struct cfg c = { 0 }, again = { 0 };
	char err[512];

	cr_assert_eq(unit_cfg_load(&c, "cluster = { redis = \"redis://10.0.0.5:6380/1\"; "
				   "node = \"mta-1\"; tls = true; tls_ca_file = \"/etc/hostname\"; "
				   "tls_server_name = \"redis.internal\"; };", err, sizeof err), 0,
		     "%s", err);
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	const char *blk = strstr(b.p, "cluster = {");
	cr_assert_not_null(blk, "%s", b.p);
	char text[2048];
	snprintf(text, sizeof text, "%.*s", (int)(strstr(blk, "};") + 2 - blk), blk);
	cr_assert_eq(unit_cfg_load(&again, text, err, sizeof err), 0, "%s\n%s", err, text);
	cr_assert(again.cluster.tls);
	cr_assert_str_eq(again.cluster.redis, "redis://10.0.0.5:6380/1");
	cr_assert_str_eq(again.cluster.tls_ca_file, "/etc/hostname");
	cr_assert_str_eq(again.cluster.tls_server_name, "redis.internal");
	cr_assert_str_eq(again.cluster.tls_cert, "");
	vl_buf_free(&b);
	cfg_free(&c);
	cfg_free(&again);
}
