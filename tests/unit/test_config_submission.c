/* config/: the submission and feedback groups (the SMTP listeners): off
 * unless they listen, TLS mandatory for submission, strict keys, the
 * settings shared with the users file. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"
#include "unit.h"
#include "unit_cfg.h"

static char dir[256], cert[300], key[300], users[300];
static char head[1200];     /* submission's listener, files and the common keys */

static void setup(void)
{
	unit_tmpdir(dir, sizeof dir, "cfgsub");
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	snprintf(users, sizeof users, "%s/users", dir);
	const char *files[] = { cert, key, users };
	for (size_t i = 0; i < 3; i++) {
		FILE *f = fopen(files[i], "w");
		cr_assert_not_null(f);
		fclose(f);
	}
	snprintf(head, sizeof head, "listen = [ \"127.0.0.1:5870\" ]; cert = \"%s\"; "
		 "key = \"%s\"; users = \"%s\";", cert, key, users);
}

static void teardown(void)
{
	unit_rmdir(dir);
}

TestSuite(config_submission, .init = setup, .fini = teardown);

Test(config_submission, off_unless_set)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c, "max_message_size = \"5MB\";", err, sizeof err), 0, "%s", err);
	cr_assert_not(c.submission.on);
	cr_assert_not(c.feedback.on);
	cr_assert_eq(c.submission.max_message_size, 5000000);
	cr_assert_eq(c.feedback.max_message_size, 5000000);
	cr_assert_eq(c.submission.auth_cache_ttl_ms, 300000);
	cr_assert_eq(c.submission.auth_cache_size, 1024);
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_null(strstr(b.p, "submission"));
	/* the feedback group is printed for its complaint settings, without
	 * a listener */
	cr_assert_not_null(strstr(b.p, "feedback = {\n  complaint_rate = \"0.3%\";"), "%s", b.p);
	cr_assert_null(strstr(b.p, "feedback = {\n  listen"));
	vl_buf_free(&b);
	cfg_free(&c);
	/* a group without a listener is off, and needs nothing */
	cr_assert_eq(unit_cfg_load(&c, "submission = { priority = \"bulk\"; };\n"
				   "feedback = { domains = [ \"b.example.com\" ]; };", err,
				   sizeof err), 0, "%s", err);
	cr_assert_not(c.submission.on);
	cr_assert_not(c.feedback.on);
	cfg_free(&c);
}

Test(config_submission, everything_and_the_printed_form_loads_again)
{
	struct cfg c, again;
	char text[4096], err[512] = "";

	snprintf(text, sizeof text,
		 "max_message_size = \"30MB\";\n"
		 "submission = {\n"
		 "  listen = [ \"0.0.0.0:587\", \"[::1]:5587\" ];\n"
		 "  implicit_tls = [ \"127.0.0.1:465\" ];\n"
		 "  cert = \"%s\"; key = \"%s\"; users = \"%s\";\n"
		 "  max_message_size = \"25M\"; max_recipients = 100;\n"
		 "  from_domains = [ \"example.com\", \"*.example.org\" ];\n"
		 "  campaign = \"submitted\"; priority = \"transactional\"; rate_limit = \"100/m\";\n"
		 "  dkim = true; auth_cache_ttl = \"10m\"; auth_cache_size = 64;\n"
		 "  per_user = ( { name = \"app\"; from_domains = [ \"app.example.com\" ];\n"
		 "                campaign = \"app\"; priority = \"bulk\"; rate_limit = \"5/s\";\n"
		 "                dkim = false; max_recipients = 10; },\n"
		 "              { name = \"other@example.com\"; } );\n"
		 "};\n"
		 "feedback = { listen = [ \"127.0.0.1:2525\" ]; domains = [ \"bounces.example.com\" ];\n"
		 "  max_message_size = \"10M\"; };\n", cert, key, users);
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), 0, "%s", err);
	const struct cfg_submission *s = &c.submission;
	cr_assert(s->on);
	cr_assert_eq(s->nlisten, 2);
	cr_assert_str_eq(s->listen[0].host, "0.0.0.0");
	cr_assert_eq(s->listen[0].port, 587);
	cr_assert_str_eq(s->listen[1].host, "::1");
	cr_assert_str_eq(s->listen[1].text, "[::1]:5587");
	cr_assert_eq(s->listen[1].port, 5587);
	cr_assert_eq(s->nimplicit_tls, 1);
	cr_assert_eq(s->implicit_tls[0].port, 465);
	cr_assert_str_eq(s->users, users);
	cr_assert_eq(s->max_message_size, 25000000);
	cr_assert_eq(s->auth_cache_ttl_ms, 600000);
	cr_assert_eq(s->auth_cache_size, 64);
	cr_assert_eq(s->defaults.nfrom_domains, 2);
	cr_assert_str_eq(s->defaults.from_domains[1], "*.example.org");
	cr_assert_str_eq(s->defaults.priority, "transactional");
	cr_assert_str_eq(s->defaults.rate_limit, "100/m");
	cr_assert_eq(s->defaults.dkim, 1);
	cr_assert_eq(s->defaults.max_recipients, 100);
	cr_assert_eq(s->nper_user, 2);
	cr_assert_str_eq(s->per_user[0].name, "app");
	cr_assert_str_eq(s->per_user[0].s.from_domains[0], "app.example.com");
	cr_assert_eq(s->per_user[0].s.dkim, 0);
	cr_assert_eq(s->per_user[0].s.max_recipients, 10);
	cr_assert_str_eq(s->per_user[0].s.priority, "bulk");
	cr_assert_str_eq(s->per_user[1].name, "other@example.com");
	cr_assert_null(s->per_user[1].s.from_domains);
	cr_assert_null(s->per_user[1].s.priority);
	cr_assert_eq(s->per_user[1].s.dkim, -1);
	cr_assert_eq(s->per_user[1].s.max_recipients, -1);
	const struct cfg_feedback *f = &c.feedback;
	cr_assert(f->on);
	cr_assert_eq(f->listen[0].port, 2525);
	cr_assert_eq(f->ndomains, 1);
	cr_assert_str_eq(f->domains[0], "bounces.example.com");
	cr_assert_str_eq(f->cert, cert, "feedback takes submission's certificate");
	cr_assert_str_eq(f->key, key);
	cr_assert_eq(f->max_message_size, 10000000);

	/* --check-config's output is a configuration that loads the same */
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "per_user = ( { name = \"app\"; from_domains = [ "
			 "\"app.example.com\" ]; campaign = \"app\";"), "%s", b.p);
	cr_assert_eq(unit_cfg_load(&again, b.p, err, sizeof err), 0, "%s\n%s", err, b.p);
	struct vl_buf b2;
	vl_buf_init(&b2);
	cfg_print(&again, &b2);
	vl_buf_append(&b2, "", 1);
	/* (the rest of the printed form does not round-trip: the provider
	 * defaults are printed as domains) */
	const char *from1 = strstr(b.p, "submission = {"), *to1 = strstr(b.p, "log = {");
	const char *from2 = strstr(b2.p, "submission = {"), *to2 = strstr(b2.p, "log = {");
	cr_assert(from1 && to1 && from2 && to2);
	cr_assert_eq(to1 - from1, to2 - from2);
	cr_assert_eq(memcmp(from1, from2, (size_t)(to1 - from1)), 0, "%s\n%s", b.p, b2.p);
	vl_buf_free(&b);
	vl_buf_free(&b2);
	cfg_free(&again);
	cfg_free(&c);
}

Test(config_submission, errors_name_line_and_key)
{
	static const struct { const char *text, *want; } cases[] = {
		{ "submission = { listen = [ \"localhost:587\" ]; };",
		  ":1: submission.listen: expected \"IP:PORT\"" },
		{ "submission = { listen = [ \"::1:587\" ]; };", "submission.listen: expected" },
		{ "submission = { listen = [ \"127.0.0.1\" ]; };", "submission.listen: expected" },
		{ "submission = { listen = [ \"127.0.0.1:0\" ]; };", "submission.listen: expected" },
		{ "submission = { implicit_tls = [ \"127.0.0.1:70000\" ]; };",
		  "submission.implicit_tls: expected" },
		{ "submission = { listen = \"127.0.0.1:587\"; };", "submission.listen: expected a list" },
		{ "submission = { listen = [ 587 ]; };", "submission.listen: expected strings" },
		{ "submission = {\n listen = [ \"127.0.0.1:587\" ]; };",
		  ":1: submission.cert: needed with a listener: submission is TLS only" },
		{ "submission = { implicit_tls = [ \"127.0.0.1:465\" ]; cert = \"/c\"; };",
		  "submission.key: needed with a listener" },
		{ "submission = { listen = [ \"127.0.0.1:587\" ]; cert = \"/c\"; key = \"/k\"; };",
		  "submission.users: needed with a listener" },
		{ "submission = { listen = [ \"127.0.0.1:587\" ]; cert = \"/nonexistent/c.pem\"; "
		  "key = \"/k\"; users = \"/u\"; };",
		  "submission.cert: /nonexistent/c.pem: No such file" },
		{ "submission = { colour = \"red\"; };", "submission.colour: unknown key" },
		{ "submission = {\n\n priority = \"urgent\"; };",
		  ":3: submission.priority: expected bulk or transactional" },
		{ "submission = { rate_limit = \"fast\"; };", "submission.rate_limit: not a rate" },
		{ "submission = { max_recipients = 0; };", "submission.max_recipients: expected 1" },
		{ "submission = { max_recipients = -1; };", "submission.max_recipients: must not be" },
		{ "submission = { dkim = \"yes\"; };", "submission.dkim: expected true or false" },
		{ "submission = { campaign = \"\"; };", "submission.campaign: expected 1 to 256" },
		{ "submission = { from_domains = [ \"a b\" ]; };", "submission.from_domains: expected" },
		{ "submission = { from_domains = \"a.example\"; };", "submission.from_domains: expected a list" },
		{ "submission = { max_message_size = \"big\"; };", "submission.max_message_size: not a size" },
		{ "submission = { auth_cache_size = 0; };", "submission.auth_cache_size: expected 1" },
		{ "submission = { auth_cache_ttl = \"soon\"; };", "submission.auth_cache_ttl: not a duration" },
		{ "submission = { per_user = ( { priority = \"bulk\"; } ); };",
		  "submission.per_user[0]: each entry needs name" },
		{ "submission = { per_user = { name = \"a\"; }; };",
		  "submission.per_user: expected a list" },
		{ "submission = { per_user = ( { name = \"a b\"; } ); };",
		  "submission.per_user[0]: name: expected 1 to 64" },
		{ "submission = { per_user = ( { name = \"a\"; }, { name = \"a\"; } ); };",
		  "submission.per_user[1]: name: a second entry" },
		{ "submission = { per_user = ( { name = \"a\"; colour = 1; } ); };",
		  "submission.per_user[0].colour: unknown key" },
		{ "submission = { per_user = ( { name = \"a\";\n rate_limit = \"x\"; } ); };",
		  ":2: submission.per_user[0].rate_limit: not a rate" },
		{ "feedback = { listen = [ \"127.0.0.1:25\" ]; };",
		  "feedback.domains: needed with a listener" },
		{ "feedback = { mailboxes = ( { url = \"imap://h/\"; } ); };",
		  "feedback.mailboxes[0].user: missing" },
		{ "feedback = { domains = [ \"not a domain\" ]; };", "feedback.domains: expected domain" },
		{ "feedback = { domains = [ \"localhost\" ]; };", "feedback.domains: expected domain" },
		{ "feedback = { cert = \"/c\"; };", "feedback.key: cert and key go together" },
		{ "feedback = { listen = [ \"any:25\" ]; domains = [ \"b.example\" ]; };",
		  "feedback.listen: expected \"IP:PORT\"" },
		{ "feedback = { listen = [ \"127.0.0.1:25\" ]; domains = [ \"b.example\" ];"
		  " cert = \"/nonexistent/c\"; key = \"/nonexistent/k\"; };",
		  "feedback.cert: /nonexistent/c: No such file" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct cfg c;
		char err[512] = "";
		cr_assert_eq(unit_cfg_load(&c, cases[i].text, err, sizeof err), -1, "%s", cases[i].text);
		cr_assert(strstr(err, cases[i].want), "%s: got \"%s\"", cases[i].text, err);
		cfg_free(&c);
	}
}

Test(config_submission, feedback_own_certificate_and_no_tls)
{
	struct cfg c;
	char text[2048], err[512] = "";

	/* its own pair wins over submission's */
	snprintf(text, sizeof text, "submission = { %s };\nfeedback = { listen = [ \"[::1]:25\" ];"
		 " domains = [ \"B.Example.com\" ]; cert = \"%s\"; key = \"%s\"; };", head, users, users);
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.feedback.cert, users);
	cr_assert_str_eq(c.feedback.listen[0].host, "::1");
	cfg_free(&c);
	/* neither has one: feedback listens without STARTTLS */
	cr_assert_eq(unit_cfg_load(&c, "feedback = { listen = [ \"127.0.0.1:25\" ]; "
				   "domains = [ \"b.example\" ]; };", err, sizeof err), 0, "%s", err);
	cr_assert(c.feedback.on);
	cr_assert_str_eq(c.feedback.cert, "");
	cfg_free(&c);
}

Test(config_submission, settings_as_text)
{
	struct cfg_sub_settings s;
	char err[200];
	const char *bad;

	cfg_sub_settings_init(&s);
	cr_assert_eq(cfg_sub_setting_parse(&s, "from_domains", "a.example,*.b.example", err,
					   sizeof err), 0, "%s", err);
	cr_assert_eq(s.nfrom_domains, 2);
	cr_assert_str_eq(s.from_domains[1], "*.b.example");
	cr_assert_null(s.from_domains[2]);
	cr_assert_eq(cfg_sub_setting_parse(&s, "from_domains", "c.example", err, sizeof err), 0);
	cr_assert_eq(s.nfrom_domains, 1);
	cr_assert_eq(cfg_sub_setting_parse(&s, "dkim", "no", err, sizeof err), 0);
	cr_assert_eq(s.dkim, 0);
	cr_assert_eq(cfg_sub_setting_parse(&s, "dkim", "true", err, sizeof err), -1);
	cr_assert_str_eq(err, "dkim: expected yes or no");
	cr_assert_eq(cfg_sub_setting_parse(&s, "max_recipients", "12", err, sizeof err), 0);
	cr_assert_eq(s.max_recipients, 12);
	cr_assert_eq(cfg_sub_setting_parse(&s, "max_recipients", "-1", err, sizeof err), -1);
	cr_assert_eq(cfg_sub_setting_parse(&s, "max_recipients", "100001", err, sizeof err), -1);
	cr_assert_eq(cfg_sub_setting_parse(&s, "rate_limit", "100/m", err, sizeof err), 0);
	cr_assert_eq(cfg_sub_setting_parse(&s, "campaign", "spring sale", err, sizeof err), 0);
	cr_assert_eq(cfg_sub_setting_parse(&s, "priority", "Bulk", err, sizeof err), -1);
	cr_assert(strstr(err, "priority: expected bulk or transactional"), "%s", err);
	cr_assert_eq(cfg_sub_setting_parse(&s, "size", "1", err, sizeof err), -1);
	cr_assert(strstr(err, "size: unknown key"), "%s", err);
	cr_assert_eq(cfg_sub_settings_check(&s, &bad, err, sizeof err), -1, "the bad priority stays");
	cr_assert_str_eq(bad, "priority");
	cfg_sub_settings_free(&s);
	cr_assert_null(s.from_domains);
	cr_assert_eq(s.dkim, -1);
	cr_assert(cfg_user_name_ok("app-1.mail+x@example.com"));
	cr_assert_not(cfg_user_name_ok(""));
	cr_assert_not(cfg_user_name_ok("a:b"));
	cr_assert_not(cfg_user_name_ok("a b"));
	cr_assert_not(cfg_user_name_ok("j\xc3\xb6rg"));
	char long_name[70];
	memset(long_name, 'a', 65);
	long_name[65] = '\0';
	cr_assert_not(cfg_user_name_ok(long_name));
	long_name[64] = '\0';
	cr_assert(cfg_user_name_ok(long_name));
}

Test(config_submission, complaint_rate)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(unit_cfg_load(&c, "", err, sizeof err), 0, "%s", err);
	cr_assert_float_eq(c.feedback.complaint_rate, 0.003, 1e-12);
	cr_assert_eq(c.feedback.complaint_min_delivered, 1000);
	cr_assert_eq(c.feedback.retain_ms, 30ull * 86400 * 1000);
	cfg_free(&c);
	cr_assert_eq(unit_cfg_load(&c, "feedback = { complaint_rate = \"0.5%\"; "
				   "complaint_min_delivered = 10; retain = \"1d\"; };", err,
				   sizeof err), 0, "%s", err);
	cr_assert_float_eq(c.feedback.complaint_rate, 0.005, 1e-12);
	cr_assert_eq(c.feedback.complaint_min_delivered, 10);
	cr_assert_not(c.feedback.on);
	cfg_free(&c);
	cr_assert_eq(unit_cfg_load(&c, "feedback = { complaint_rate = 0.01; };", err, sizeof err),
		     0, "%s", err);
	cr_assert_float_eq(c.feedback.complaint_rate, 0.01, 1e-12);
	cfg_free(&c);
	static const char *const bad[] = {
		"feedback = { complaint_rate = \"abc\"; };",
		"feedback = { complaint_rate = \"0.3%%\"; };",
		"feedback = { complaint_rate = \"0%\"; };",
		"feedback = { complaint_rate = \"150%\"; };",
		"feedback = { complaint_rate = 0.0; };",
		"feedback = { complaint_min_delivered = 0; };",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		cr_assert_eq(unit_cfg_load(&c, bad[i], err, sizeof err), -1, "%s", bad[i]);
		cr_assert_not_null(strstr(err, "feedback.complaint_"), "%s: %s", bad[i], err);
	}
}
