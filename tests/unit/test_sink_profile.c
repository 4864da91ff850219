/* volley-sink's provider profiles: the pure decisions and the per-IP table. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../sink/sink.h"

/* A profile with round numbers and no reputation age. */
static struct sink_profile plain(const char *name)
{
	struct sink_profile p = *sink_prof_find(name);

	p.new_defer_ms = 0;
	p.ramp_ms = 0;
	return p;
}

struct fix {
	struct sink_profile p;
	struct sink_prof_table t;
};

static void fix_init(struct fix *f, const char *name, uint32_t cap)
{
	f->p = plain(name);
	sink_prof_table_init(&f->t, cap);
}

/* A connection that gets through, with its EHLO. */
static void conn_ok(struct fix *f, const char *ip, uint64_t now, struct sink_prof_sess *ss)
{
	cr_assert_eq(sink_prof_connect(&f->p, &f->t, ip, now, ss), SINK_PR_OK, "%s", ip);
	cr_assert_eq(ss->pending, SINK_PR_OK);
	cr_assert_eq(sink_prof_command(&f->p, ss, SMTPD_ST_HELO, 0, now), SINK_PR_OK);
}

/* One message of one recipient: MAIL, RCPT, DATA, dot; the first refusal
 * (or OK) and the stage it came at. */
static enum sink_prof_reason message(struct fix *f, struct sink_prof_sess *ss, uint64_t now,
				     enum smtpd_stage *at)
{
	static const enum smtpd_stage st[] = {SMTPD_ST_MAIL, SMTPD_ST_RCPT, SMTPD_ST_DATA,
					      SMTPD_ST_DOT};
	for (size_t i = 0; i < 4; i++) {
		int nrcpt = st[i] > SMTPD_ST_RCPT ? 1 : 0;
		enum sink_prof_reason r = sink_prof_command(&f->p, ss, st[i], nrcpt, now);
		if (r != SINK_PR_OK) {
			*at = st[i];
			return r;
		}
	}
	sink_prof_accepted(ss, 1);
	*at = SMTPD_ST_DOT;
	return SINK_PR_OK;
}

Test(sink_profile, builtins_and_their_replies)
{
	char out[SMTPD_REPLY_MAX];
	const struct sink_profile *g = sink_prof_find("gmail"), *y = sink_prof_find("yahoo"),
				  *m = sink_prof_find("microsoft");

	cr_assert(g && y && m);
	cr_assert_null(sink_prof_find("hotmail"));
	cr_assert_eq(sink_prof_reply(g, SINK_PR_RATE, "127.0.0.2", out, sizeof out), 421);
	cr_assert(!strncmp(out, "421 4.7.28 [127.0.0.2] Our system has detected an unusual rate "
			   "of unsolicited mail originating from your IP address", 96), "%s", out);
	cr_assert(strstr(out, "\r\n") == out + strlen(out) - 2, "one line, CRLF-ended");
	cr_assert_eq(sink_prof_reply(g, SINK_PR_CONNS, "127.0.0.2", out, sizeof out), 421);
	cr_assert(!strncmp(out, "421 4.7.0 Try again later, closing connection.", 46), "%s", out);
	cr_assert_eq(sink_prof_reply(g, SINK_PR_RCPTS, "127.0.0.2", out, sizeof out), 452);
	cr_assert(!strncmp(out, "452 4.5.3 Your message has too many recipients.", 47), "%s", out);
	cr_assert_eq(sink_prof_reply(y, SINK_PR_RATE, "127.0.0.3", out, sizeof out), 421);
	cr_assert(!strncmp(out, "421 4.7.0 [TSS04] Messages from 127.0.0.3 temporarily deferred "
			   "due to unexpected volume or user complaints - 4.16.55.1; see "
			   "https://postmaster.yahooinc.com/error-codes\r\n", 148), "%s", out);
	cr_assert_eq(sink_prof_reply(m, SINK_PR_NEWIP, "::1", out, sizeof out), 451);
	cr_assert(!strncmp(out, "451 4.7.650 The mail server [::1] has been temporarily rate "
			   "limited due to IP reputation.", 89), "%s", out);
	cr_assert_eq(sink_prof_reply(m, SINK_PR_RATE, "127.0.0.2", out, sizeof out), 451);
	cr_assert(strstr(out, "451 4.7.500 Server busy. Please try again later"), "%s", out);
	/* every reply of every profile fits a hook's buffer and says a code */
	for (const struct sink_profile *p = g; p; p = p == g ? y : p == y ? m : NULL)
		for (int r = 1; r < SINK_PR_COUNT; r++) {
			int code = sink_prof_reply(p, r, "255.255.255.255", out, sizeof out);
			cr_assert(code >= 400 && code < 500, "%s %d", p->name, r);
			cr_assert_eq(atoi(out), code);
			cr_assert(strlen(out) < 512, "%s %d: %zu", p->name, r, strlen(out));
		}
	/* a short buffer is cut, still CRLF-terminated */
	char small[40];
	sink_prof_reply(g, SINK_PR_RATE, "127.0.0.2", small, sizeof small);
	cr_assert_eq(strlen(small), sizeof small - 1);
	cr_assert_str_eq(small + sizeof small - 3, "\r\n");
}

Test(sink_profile, peer_addr)
{
	char a[48];

	sink_prof_peer_addr("127.0.0.2:40000", a, sizeof a);
	cr_assert_str_eq(a, "127.0.0.2");
	sink_prof_peer_addr("[::1]:2525", a, sizeof a);
	cr_assert_str_eq(a, "::1");
	sink_prof_peer_addr("weird", a, sizeof a);
	cr_assert_str_eq(a, "weird");
}

Test(sink_profile, connection_limit_per_ip)
{
	struct fix f;
	struct sink_prof_sess s[4], other, over;

	fix_init(&f, "yahoo", 16);
	f.p.max_conns = 3;
	for (int i = 0; i < 3; i++)
		conn_ok(&f, "127.0.0.2", 1000, &s[i]);
	/* yahoo refuses at the connect: the fourth is not counted */
	cr_assert_eq(sink_prof_connect(&f.p, &f.t, "127.0.0.2", 1000, &over), SINK_PR_CONNS);
	cr_assert_null(over.ip);
	cr_assert_eq(s[0].ip->conns, 3);
	cr_assert_eq(s[0].ip->throttled[SINK_PR_CONNS], 1);
	/* another IP has its own count */
	conn_ok(&f, "127.0.0.3", 1000, &other);
	/* one closes: room again */
	sink_prof_close(&s[1]);
	conn_ok(&f, "127.0.0.2", 1001, &s[1]);
	cr_assert_eq(s[0].ip->conns, 3);

	/* gmail answers at the first command (EHLO), not at the connect */
	f.p = plain("gmail");
	f.p.max_conns = 3;
	cr_assert_eq(sink_prof_connect(&f.p, &f.t, "127.0.0.2", 1002, &over), SINK_PR_OK);
	cr_assert_eq(over.pending, SINK_PR_CONNS);
	cr_assert_null(over.ip);
	cr_assert_eq(sink_prof_command(&f.p, &over, SMTPD_ST_QUIT, 0, 1002), SINK_PR_OK,
		     "QUIT still gets its 221");
	cr_assert_eq(sink_prof_command(&f.p, &over, SMTPD_ST_HELO, 0, 1002), SINK_PR_CONNS);
	sink_prof_close(&over);
	cr_assert_eq(s[0].ip->conns, 3, "a refused connection never counted");
	sink_prof_table_free(&f.t);
}

Test(sink_profile, rate_limit_at_the_profiles_stage)
{
	struct fix f;
	struct sink_prof_sess ss;
	enum smtpd_stage at;

	/* gmail: 4.7.28 after the message's data */
	fix_init(&f, "gmail", 16);
	f.p.rate = 5;          /* burst: one second's worth */
	conn_ok(&f, "127.0.0.2", 0, &ss);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_OK, "message %d", i);
	cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_RATE);
	cr_assert_eq(at, SMTPD_ST_DOT);
	cr_assert_eq(ss.ip->accepted, 5);
	cr_assert_eq(ss.ip->throttled[SINK_PR_RATE], 1);
	/* 200 ms later one token (5/s) is back, not two */
	cr_assert_eq(message(&f, &ss, 200, &at), SINK_PR_OK);
	cr_assert_eq(message(&f, &ss, 200, &at), SINK_PR_RATE);
	/* a long pause fills the bucket only to its size */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(message(&f, &ss, 100000, &at), SINK_PR_OK);
	cr_assert_eq(message(&f, &ss, 100000, &at), SINK_PR_RATE);
	sink_prof_table_free(&f.t);

	/* microsoft and yahoo: at MAIL */
	const char *names[] = {"microsoft", "yahoo"};
	for (int n = 0; n < 2; n++) {
		fix_init(&f, names[n], 16);
		f.p.rate = 2;
		f.p.burst = 3;
		conn_ok(&f, "127.0.0.2", 0, &ss);
		for (int i = 0; i < 3; i++)
			cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_OK);
		cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_RATE);
		cr_assert_eq(at, SMTPD_ST_MAIL, "%s", names[n]);
		/* the IP's limit, not the connection's: a second one shares it */
		struct sink_prof_sess s2;
		conn_ok(&f, "127.0.0.2", 0, &s2);
		cr_assert_eq(message(&f, &s2, 0, &at), SINK_PR_RATE);
		cr_assert_eq(message(&f, &s2, 500, &at), SINK_PR_OK);
		sink_prof_table_free(&f.t);
	}

	/* at RCPT: one token a message, whatever its recipients */
	fix_init(&f, "gmail", 16);
	f.p.rate = 1;
	f.p.rate_stage = SMTPD_ST_RCPT;
	conn_ok(&f, "127.0.0.2", 0, &ss);
	cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_MAIL, 0, 0), SINK_PR_OK);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_RCPT, i, 0), SINK_PR_OK);
	sink_prof_accepted(&ss, 5);
	cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_MAIL, 0, 0), SINK_PR_OK);
	cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_RCPT, 0, 0), SINK_PR_RATE);
	cr_assert_eq(ss.ip->rcpts, 5);
	sink_prof_table_free(&f.t);

	/* no rate: no limit */
	fix_init(&f, "gmail", 16);
	f.p.rate = 0;
	conn_ok(&f, "127.0.0.2", 0, &ss);
	f.p.msgs_per_conn = 0;
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_OK);
	sink_prof_table_free(&f.t);
}

Test(sink_profile, recipients_and_messages_per_connection)
{
	struct fix f;
	struct sink_prof_sess ss;
	enum smtpd_stage at;

	fix_init(&f, "gmail", 16);
	f.p.rate = 0;
	conn_ok(&f, "127.0.0.2", 0, &ss);
	cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_MAIL, 0, 0), SINK_PR_OK);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_RCPT, i, 0), SINK_PR_OK);
	cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_RCPT, 100, 0), SINK_PR_RCPTS);
	cr_assert_eq(sink_prof_command(&f.p, &ss, SMTPD_ST_RCPT, 100, 0), SINK_PR_RCPTS);
	cr_assert_eq(ss.ip->throttled[SINK_PR_RCPTS], 2);
	sink_prof_table_free(&f.t);

	fix_init(&f, "yahoo", 16);
	f.p.rate = 0;
	f.p.msgs_per_conn = 3;
	conn_ok(&f, "127.0.0.2", 0, &ss);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_OK);
	cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_PERCONN);
	cr_assert_eq(at, SMTPD_ST_MAIL);
	/* a new connection starts over */
	struct sink_prof_sess s2;
	conn_ok(&f, "127.0.0.2", 0, &s2);
	cr_assert_eq(message(&f, &s2, 0, &at), SINK_PR_OK);
	sink_prof_table_free(&f.t);
}

Test(sink_profile, new_ip_deferred_then_ramped)
{
	struct fix f;
	struct sink_prof_sess ss, s2;
	enum smtpd_stage at;

	fix_init(&f, "microsoft", 16);
	f.p.new_defer_ms = 2000;
	f.p.ramp_ms = 10000;
	f.p.ramp_start = 0.1;
	f.p.rate = 10;
	f.p.max_conns = 10;
	conn_ok(&f, "127.0.0.2", 0, &ss);
	cr_assert_float_eq(sink_prof_factor(&f.p, ss.ip, 0), 0, 1e-9);
	cr_assert_eq(message(&f, &ss, 0, &at), SINK_PR_NEWIP);
	cr_assert_eq(at, SMTPD_ST_MAIL);
	/* while new: one connection at most */
	cr_assert_eq(sink_prof_connect(&f.p, &f.t, "127.0.0.2", 1000, &s2), SINK_PR_CONNS);
	cr_assert_eq(message(&f, &ss, 1999, &at), SINK_PR_NEWIP);
	/* deferral over: a tenth of the limits (rate 1/s, bucket of 1) */
	cr_assert_float_eq(sink_prof_factor(&f.p, ss.ip, 2000), 0.1, 1e-9);
	cr_assert_eq(message(&f, &ss, 2000, &at), SINK_PR_OK);
	cr_assert_eq(message(&f, &ss, 2000, &at), SINK_PR_RATE);
	/* half-way: 0.55 of the limits: five connections */
	cr_assert_float_eq(sink_prof_factor(&f.p, ss.ip, 7000), 0.55, 1e-9);
	struct sink_prof_sess more[5];
	for (int i = 0; i < 4; i++)
		conn_ok(&f, "127.0.0.2", 7000, &more[i]);
	cr_assert_eq(sink_prof_connect(&f.p, &f.t, "127.0.0.2", 7000, &more[4]), SINK_PR_CONNS);
	cr_assert_eq(ss.ip->conns, 5);
	/* whole after the ramp */
	cr_assert_float_eq(sink_prof_factor(&f.p, ss.ip, 12000), 1, 1e-9);
	cr_assert_float_eq(sink_prof_factor(&f.p, ss.ip, 99000), 1, 1e-9);
	/* another IP is new on its own clock */
	struct sink_prof_sess s3;
	conn_ok(&f, "127.0.0.3", 12000, &s3);
	cr_assert_eq(message(&f, &s3, 12000, &at), SINK_PR_NEWIP);
	sink_prof_table_free(&f.t);

	/* yahoo defers a new IP at the connect */
	fix_init(&f, "yahoo", 16);
	f.p.new_defer_ms = 5000;
	cr_assert_eq(sink_prof_connect(&f.p, &f.t, "127.0.0.2", 0, &ss), SINK_PR_NEWIP);
	cr_assert_null(ss.ip);
	cr_assert_eq(sink_prof_connect(&f.p, &f.t, "127.0.0.2", 4999, &ss), SINK_PR_NEWIP);
	conn_ok(&f, "127.0.0.2", 5000, &ss);
	cr_assert_eq(ss.ip->throttled[SINK_PR_NEWIP], 2);
	sink_prof_table_free(&f.t);
}

Test(sink_profile, table_is_bounded_lru)
{
	struct fix f;
	struct sink_prof_sess held, ss;
	char ip[32];

	fix_init(&f, "gmail", 4);
	conn_ok(&f, "10.0.0.1", 0, &held);   /* stays open: never forgotten */
	for (int i = 2; i <= 4; i++) {
		snprintf(ip, sizeof ip, "10.0.0.%d", i);
		conn_ok(&f, ip, (uint64_t)i, &ss);
		sink_prof_close(&ss);
	}
	cr_assert_eq(f.t.n, 4);
	/* touch .2: .3 is now the least recently seen without connections */
	cr_assert_not_null(sink_prof_ip_get(&f.t, "10.0.0.2", 10));
	for (int i = 5; i <= 40; i++) {
		snprintf(ip, sizeof ip, "10.0.0.%d", i);
		conn_ok(&f, ip, (uint64_t)(10 + i), &ss);
		sink_prof_close(&ss);
		cr_assert_eq(f.t.n, 4, "never more than its size");
	}
	cr_assert_eq(f.t.forgotten, 36);
	cr_assert_eq(held.ip->conns, 1);
	cr_assert_str_eq(held.ip->addr, "10.0.0.1", "the held IP kept its slot");
	/* the newest are there, the old ones gone */
	uint64_t first = sink_prof_ip_get(&f.t, "10.0.0.40", 100)->first_ms;
	cr_assert_eq(first, 50);
	cr_assert_eq(sink_prof_ip_get(&f.t, "10.0.0.3", 101)->first_ms, 101, "comes back new");

	/* every slot holding an open connection: refused, counted */
	struct sink_prof_table t;
	struct sink_prof_sess a, b, c;
	sink_prof_table_init(&t, 2);
	cr_assert_eq(sink_prof_connect(&f.p, &t, "10.1.0.1", 0, &a), SINK_PR_OK);
	cr_assert_eq(sink_prof_connect(&f.p, &t, "10.1.0.2", 0, &b), SINK_PR_OK);
	cr_assert_eq(sink_prof_connect(&f.p, &t, "10.1.0.3", 0, &c), SINK_PR_OK);
	cr_assert_eq(c.pending, SINK_PR_CONNS, "gmail answers it at EHLO");
	cr_assert_eq(t.full, 1);
	sink_prof_close(&a);
	cr_assert_eq(sink_prof_connect(&f.p, &t, "10.1.0.3", 1, &c), SINK_PR_OK);
	cr_assert_eq(c.pending, SINK_PR_OK);
	cr_assert_eq(t.forgotten, 1);
	sink_prof_table_free(&t);
	sink_prof_table_free(&f.t);
}

Test(sink_profile, stats_json)
{
	struct fix f;
	struct sink_prof_sess ss;
	struct vl_buf b;
	enum smtpd_stage at;

	fix_init(&f, "gmail", 8);
	f.p.rate = 1;
	conn_ok(&f, "127.0.0.2", 0, &ss);
	message(&f, &ss, 0, &at);
	message(&f, &ss, 0, &at);
	vl_buf_init(&b);
	vl_buf_appends(&b, "{");
	sink_prof_json(&f.p, &f.t, 1500, &b);
	vl_buf_appends(&b, "}");
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "\"profile\": \"gmail\""), "%s", b.p);
	cr_assert(strstr(b.p, "\"127.0.0.2\": {\"conns\": 1, \"age_s\": 1.5, \"share\": 1.000, "
			 "\"accepted\": 1, \"recipients\": 1, \"throttled\": 1, \"by_reason\": "
			 "{\"conns\": 0, \"rate\": 1, \"new_ip\": 0, \"rcpts\": 0, "
			 "\"per_conn\": 0}}"), "%s", b.p);
	vl_buf_free(&b);
	sink_prof_table_free(&f.t);
}

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

Test(sink_profile, command_line)
{
	struct sink_conf c;
	char err[256];

	cr_assert_eq(parse(&c, err, sizeof err, NULL), 0);
	cr_assert_not(c.has_profile);
	sink_conf_free(&c);

	/* overrides before or after --profile */
	cr_assert_eq(parse(&c, err, sizeof err, "--profile-rate", "50/s", "--profile", "gmail",
			   "--profile-conns", "5", "--profile-time-scale", "60",
			   "--profile-rcpts", "10", "--profile-max-ips", "100", NULL), 0, "%s", err);
	cr_assert(c.has_profile);
	cr_assert_str_eq(c.profile.name, "gmail");
	cr_assert_float_eq(c.profile.rate, 50, 1e-9);
	cr_assert_eq(c.profile.max_conns, 5);
	cr_assert_eq(c.profile.rcpts_per_msg, 10);
	cr_assert_eq(c.profile.new_defer_ms, 1000, "60 s / 60");
	cr_assert_eq(c.profile.ramp_ms, 60000, "1 h / 60");
	cr_assert_eq(c.profile_ips, 100);
	cr_assert_eq(c.profile.reply[SINK_PR_RCPTS].code, 452);
	sink_conf_free(&c);

	cr_assert_eq(parse(&c, err, sizeof err, "--profile", "yahoo", "--profile-new-defer", "0",
			   "--profile-ramp", "3s", "--profile-ramp-start", "50%",
			   "--profile-burst", "7", "--profile-msgs-per-conn", "0",
			   "--profile-rate", "120/min", "--profile-rate-stage", "rcpt", NULL), 0,
		     "%s", err);
	cr_assert_eq(c.profile.rate_stage, SMTPD_ST_RCPT);
	cr_assert_eq(c.profile.new_defer_ms, 0);
	cr_assert_eq(c.profile.ramp_ms, 3000);
	cr_assert_float_eq(c.profile.ramp_start, 0.5, 1e-9);
	cr_assert_float_eq(c.profile.burst, 7, 1e-9);
	cr_assert_float_eq(c.profile.rate, 2, 1e-9);
	cr_assert_eq(c.profile.msgs_per_conn, 0);
	cr_assert_eq(c.profile_ips, SINK_PROF_IPS_DEFAULT);
	sink_conf_free(&c);

	struct { const char *a, *b, *c, *d, *needle; } bad[] = {
		{"--profile", "aol", NULL, NULL, "--profile 'aol'"},
		{"--profile-rate", "5/s", NULL, NULL, "need --profile"},
		{"--profile", "gmail", "--profile-rate", "fast", "--profile-rate 'fast'"},
		{"--profile", "gmail", "--profile-conns", "-2", "--profile-conns '-2'"},
		{"--profile", "gmail", "--profile-ramp", "soon", "--profile-ramp 'soon'"},
		{"--profile", "gmail", "--profile-time-scale", "0", "--profile-time-scale '0'"},
		{"--profile", "gmail", "--profile-ramp-start", "0", "--profile-ramp-start '0'"},
		{"--profile", "gmail", "--profile-max-ips", "0", "--profile-max-ips '0'"},
		{"--profile", "gmail", "--profile-burst", "0", "--profile-burst '0'"},
		{"--profile", "gmail", "--profile-rate-stage", "helo", "--profile-rate-stage 'helo'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		cr_assert_eq(parse(&c, err, sizeof err, bad[i].a, bad[i].b, bad[i].c, bad[i].d,
				   NULL), -1, "%s", bad[i].needle);
		cr_assert(strstr(err, bad[i].needle), "'%s' lacks '%s'", err, bad[i].needle);
		sink_conf_free(&c);
	}
}

/* What volley's built-in bounce rules make of each profile reply: which
 * ones back a site off (rate-limited) and which merely defer. */
#include "../../scheduler/scheduler.h"

Test(sink_profile, volley_classes_the_replies)
{
	static const struct { const char *profile; enum sink_prof_reason r; const char *stage, *cls; } want[] = {
		{"gmail", SINK_PR_CONNS, "ehlo", "policy"},
		{"gmail", SINK_PR_RATE, "dot", "rate-limited"},
		{"gmail", SINK_PR_NEWIP, "mail", "spam-block"},
		{"gmail", SINK_PR_RCPTS, "rcpt", "protocol"},
		{"gmail", SINK_PR_PERCONN, "mail", "policy"},
		{"yahoo", SINK_PR_CONNS, "greeting", "rate-limited"},
		{"yahoo", SINK_PR_RATE, "mail", "rate-limited"},
		{"yahoo", SINK_PR_NEWIP, "greeting", "rate-limited"},
		{"yahoo", SINK_PR_RCPTS, "rcpt", "protocol"},
		{"yahoo", SINK_PR_PERCONN, "mail", "rate-limited"},
		{"microsoft", SINK_PR_CONNS, "greeting", "rate-limited"},
		{"microsoft", SINK_PR_RATE, "mail", "rate-limited"},
		{"microsoft", SINK_PR_NEWIP, "mail", "rate-limited"},
		{"microsoft", SINK_PR_RCPTS, "rcpt", "protocol"},
		{"microsoft", SINK_PR_PERCONN, "mail", "rate-limited"},
	};
	char err[256] = "", out[SMTPD_REPLY_MAX], enh[16];
	struct sched_bounce_rules *rules = sched_bounce_load(NULL, err, sizeof err);

	cr_assert_not_null(rules, "%s", err);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		int code = sink_prof_reply(sink_prof_find(want[i].profile), want[i].r, "127.0.0.2",
					   out, sizeof out);
		const char *text = out + 4;
		enh[0] = '\0';
		if (text[0] >= '2' && text[0] <= '5' && text[1] == '.') {
			size_t n = strcspn(text, " ");
			snprintf(enh, sizeof enh, "%.*s", (int)n, text);
			text += n + 1;
		}
		out[strlen(out) - 2] = '\0';
		struct sched_bounce_verdict v;
		sched_bounce_classify(rules, code, enh, text, want[i].stage, &v);
		cr_expect_str_eq(sched_bounce_class_name(v.cls), want[i].cls, "%s %s: %s",
				 want[i].profile, sink_prof_reason_names[want[i].r], out);
		cr_expect_not(v.hard, "%s", out);
	}
	sched_bounce_free(rules);
}
