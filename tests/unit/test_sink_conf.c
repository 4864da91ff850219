/* volley-sink's command line and reply rules. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "../../sink/sink.h"

static int parse(struct sink_conf *c, char *err, size_t errlen, ...)
{
	char *argv[32] = {"volley-sink"};
	int argc = 1;
	va_list ap;
	va_start(ap, errlen);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	return sink_conf_parse(c, argc, argv, err, errlen);
}

Test(sink_rule, reply_forms)
{
	struct sink_rule r;
	char err[256];

	cr_assert_eq(sink_rule_parse(&r, "rcpt:*@bad.test=550 5.1.1 no such user", err, sizeof err), 0);
	cr_assert_eq(r.stage, SMTPD_ST_RCPT);
	cr_assert_str_eq(r.pattern, "*@bad.test");
	cr_assert_eq(r.kind, SINK_RULE_REPLY);
	cr_assert_eq(r.code, 550);
	cr_assert_str_eq(r.reply, "550 5.1.1 no such user\r\n");
	free(r.pattern);
	free(r.reply);

	cr_assert_eq(sink_rule_parse(&r, "greeting=554 no", err, sizeof err), 0);
	cr_assert_eq(r.stage, SMTPD_ST_CONNECT);
	cr_assert_null(r.pattern);
	cr_assert_str_eq(r.reply, "554 no\r\n");
	free(r.reply);

	cr_assert_eq(sink_rule_parse(&r, "mail:*=421 4.7.0 a\\nb\\nc", err, sizeof err), 0);
	cr_assert_null(r.pattern, "'*' is the same as no pattern");
	cr_assert_str_eq(r.reply, "421-4.7.0 a\r\n421-b\r\n421 c\r\n");
	free(r.reply);

	cr_assert_eq(sink_rule_parse(&r, "dot:*@slow.test=stall", err, sizeof err), 0);
	cr_assert_eq(r.kind, SINK_RULE_STALL);
	free(r.pattern);
	cr_assert_eq(sink_rule_parse(&r, "ehlo=drop", err, sizeof err), 0);
	cr_assert_eq(r.kind, SINK_RULE_DROP);
	cr_assert_eq(r.stage, SMTPD_ST_HELO);
	cr_assert_eq(sink_rule_parse(&r, "data=raw:garbage\\r\\n", err, sizeof err), 0);
	cr_assert_eq(r.kind, SINK_RULE_RAW);
	cr_assert_str_eq(r.reply, "garbage\r\n");
	free(r.reply);
}

Test(sink_rule, client_prefix)
{
	struct sink_rule r;
	char err[256];

	cr_assert_eq(sink_rule_parse(&r, "[127.0.0.3]mail=421 4.7.0 slow down", err, sizeof err), 0,
		     "%s", err);
	cr_assert_str_eq(r.client, "127.0.0.3");
	cr_assert_eq(r.stage, SMTPD_ST_MAIL);
	cr_assert_null(r.pattern);
	cr_assert_eq(r.code, 421);
	free(r.client);
	free(r.reply);
	cr_assert_eq(sink_rule_parse(&r, "[127.0.0.*]rcpt:*@a.test=drop", err, sizeof err), 0);
	cr_assert_str_eq(r.client, "127.0.0.*");
	cr_assert_str_eq(r.pattern, "*@a.test");
	cr_assert_eq(r.kind, SINK_RULE_DROP);
	free(r.client);
	free(r.pattern);
	cr_assert_eq(sink_rule_parse(&r, "rcpt=250 ok", err, sizeof err), 0);
	cr_assert_null(r.client);
	free(r.reply);
	cr_assert_neq(sink_rule_parse(&r, "[]rcpt=250 ok", err, sizeof err), 0);
	cr_assert_neq(sink_rule_parse(&r, "[127.0.0.1rcpt=250 ok", err, sizeof err), 0);
	cr_assert_neq(sink_rule_parse(&r, "[127.0.0.1]nope=250 ok", err, sizeof err), 0);
	cr_assert(strstr(err, "unknown stage"), "%s", err);
}

Test(sink_rule, rejects_bad_rules)
{
	struct sink_rule r;
	char err[256];
	const char *bad[] = {
		"rcpt:*", "bogus=550 x", "rcpt=650 x", "rcpt=55 x", "rcpt=550x",
		"rcpt=hello", "rcpt=", "rcpt=550 a\\rb", NULL,
	};
	for (int i = 0; bad[i]; i++) {
		err[0] = '\0';
		cr_assert_eq(sink_rule_parse(&r, bad[i], err, sizeof err), -1, "%s", bad[i]);
		cr_assert_neq(err[0], '\0', "an error message for %s", bad[i]);
	}
	sink_rule_parse(&r, "bogus=550 x", err, sizeof err);
	cr_assert(strstr(err, "unknown stage 'bogus'"), "%s", err);
}

Test(sink_conf, defaults_and_options)
{
	struct sink_conf c;
	char err[256];

	cr_assert_eq(parse(&c, err, sizeof err, NULL), 0);
	cr_assert_eq(c.nlisten, 1);
	cr_assert_str_eq(c.listen[0].host, "127.0.0.1");
	cr_assert_eq(c.listen[0].port, 2525);
	cr_assert_eq(c.max_size, 52428800);
	cr_assert_eq(c.tempfail.stage, SMTPD_ST_RCPT);
	cr_assert_eq(c.disconnect.stage, SMTPD_ST_DOT);
	sink_conf_free(&c);

	cr_assert_eq(parse(&c, err, sizeof err, "--listen", "127.0.0.2:2525",
			   "--listen", "127.0.0.3:2526", "--latency", "50ms",
			   "--tempfail", "mail:5%", "--permfail", "1", "--disconnect",
			   "0.5%", "--reply", "rcpt:*@x=550 no", "--max-conns", "10",
			   "--stats-every", "1s", NULL), 0, "%s", err);
	cr_assert_eq(c.nlisten, 2);
	cr_assert_eq(c.listen[1].port, 2526);
	cr_assert_eq(c.latency_ms, 50);
	cr_assert_eq(c.tempfail.stage, SMTPD_ST_MAIL);
	cr_assert_float_eq(c.tempfail.pct, 5.0, 1e-9);
	cr_assert_eq(c.permfail.stage, SMTPD_ST_RCPT);
	cr_assert_float_eq(c.disconnect.pct, 0.5, 1e-9);
	cr_assert_eq(c.nrules, 1);
	cr_assert_eq(c.max_conns, 10);
	cr_assert_eq(c.stats_every_ms, 1000);
	cr_assert_not(c.implicit_tls);
	sink_conf_free(&c);

	/* implicit TLS: TLS on every listener (a certificate is needed) */
	cr_assert_eq(parse(&c, err, sizeof err, "--implicit-tls", "--auth", "u:p", NULL), 0);
	cr_assert(c.implicit_tls && c.tls);
	sink_conf_free(&c);
}

Test(sink_conf, errors_name_the_option)
{
	struct sink_conf c;
	char err[256];
	struct { const char *opt, *val, *needle; } cases[] = {
		{"--latency", "fast", "--latency 'fast'"},
		{"--listen", "localhost", "--listen 'localhost'"},
		{"--tempfail", "quit:5%", "--tempfail 'quit:5%'"},
		{"--permfail", "200%", "--permfail '200%'"},
		{"--max-conns", "-1", "--max-conns '-1'"},
		{"--reply", "rcpt", "--reply 'rcpt'"},
		{"--bogus", NULL, "unknown option: '--bogus'"},
		{"--requiretls", NULL, "--requiretls needs --tls"},
		{"--accept-log-rcpt", "t*@*", "--accept-log-rcpt needs --accept-log"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		err[0] = '\0';
		cr_assert_eq(parse(&c, err, sizeof err, cases[i].opt, cases[i].val, NULL), -1,
			     "%s", cases[i].opt);
		cr_assert(strstr(err, cases[i].needle), "'%s' lacks '%s'", err, cases[i].needle);
		sink_conf_free(&c);
	}
}

/* --accept-log: a line per matching recipient of an accepted message,
 * flushed, counted, and the count in the stats line. */
Test(sink_alog, lines_for_matching_recipients)
{
	struct sink_conf c;
	char err[256], path[] = "/tmp/volley-alog-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(parse(&c, err, sizeof err, "--accept-log", path, "--accept-log-rcpt",
			   "t*@*", NULL), 0, "%s", err);
	cr_assert_str_eq(c.accept_log, path);
	struct sink_alog *a = sink_alog_open(c.accept_log, c.accept_glob, err, sizeof err);
	cr_assert_not_null(a, "%s", err);
	static const char rcpts[] = "u1@d1.test\0t7@d2.test\0t8@d3.test";
	struct smtpd_envelope env = { .rcpts = rcpts, .nrcpt = 3 };
	double before = vl_wall_time();
	sink_alog_put(a, &env);
	struct smtpd_envelope none = { .rcpts = rcpts, .nrcpt = 1 };
	sink_alog_put(a, &none);
	cr_assert_eq(atomic_load(&a->n), 2);

	/* flushed: the file has both lines before the log is closed */
	FILE *f = fopen(path, "r");
	char line[2][128];
	double t[2];
	cr_assert_not_null(f);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(fscanf(f, "%lf %127s", &t[i], line[i]), 2);
	cr_assert_eq(fscanf(f, "%*s"), EOF, "only the matching recipients");
	fclose(f);
	cr_assert_str_eq(line[0], "t7@d2.test");
	cr_assert_str_eq(line[1], "t8@d3.test");
	cr_assert(t[0] >= before - 0.001 && t[0] <= vl_wall_time() + 0.001);

	struct smtpd_stats sum = { 0 };
	struct vl_buf b;
	vl_buf_init(&b);
	sink_stats_json(&sum, &c, NULL, a, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "\"accept_logged\": 2"), "%s", b.p);
	vl_buf_free(&b);
	sink_alog_close(a);
	sink_conf_free(&c);
	unlink(path);

	/* an unwritable path is refused with the option named */
	cr_assert_null(sink_alog_open("/nonexistent/dir/log", NULL, err, sizeof err));
	cr_assert(strstr(err, "--accept-log /nonexistent/dir/log"), "%s", err);
}
