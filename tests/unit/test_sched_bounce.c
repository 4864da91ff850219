/* scheduler/: bounce classification -- real provider replies, the engine's
 * own failures, user rules first, and bad rule files named by file:line. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../scheduler/scheduler.h"

static struct sched_bounce_rules *builtin;

static void setup(void)
{
	char err[256] = "";
	builtin = sched_bounce_load(NULL, err, sizeof err);
	cr_assert_not_null(builtin, "%s", err);
}

static void teardown(void)
{
	sched_bounce_free(builtin);
}

TestSuite(sched_bounce, .init = setup, .fini = teardown);

struct want {
	int code;
	const char *enh, *text, *stage, *cls;
	bool hard;
};

static void check(const struct sched_bounce_rules *r, const struct want *w)
{
	struct sched_bounce_verdict v;
	sched_bounce_classify(r, w->code, w->enh, w->text, w->stage, &v);
	cr_expect_str_eq(sched_bounce_class_name(v.cls), w->cls, "%d %s %s: %s, want %s",
			 w->code, w->enh, w->text, sched_bounce_class_name(v.cls), w->cls);
	cr_expect_eq(v.hard, w->hard, "%d %s %s: hard %d, want %d", w->code, w->enh,
		     w->text, v.hard, w->hard);
}

/* Texts as the engine hands them: enhanced codes stripped, lines joined
 * by '\n'. */
static const struct want providers[] = {
	/* Gmail */
	{ 550, "5.1.1", "The email account that you tried to reach does not exist. Please try\n"
	  "double-checking the recipient's email address for typos or\nunnecessary spaces. "
	  "https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-b7a1 - gsmtp", "rcpt",
	  "invalid-recipient", true },
	{ 550, "5.2.1", "The email account that you tried to reach is disabled. - gsmtp", "rcpt",
	  "inactive-mailbox", true },
	{ 452, "4.2.2", "The recipient's inbox is out of storage space. Please direct the\n"
	  "recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp", "rcpt",
	  "mailbox-full", false },
	{ 552, "5.2.2", "The email account that you tried to reach is over quota. - gsmtp", "rcpt",
	  "mailbox-full", true },
	{ 421, "4.7.28", "[192.0.2.10 15] Our system has detected an unusual rate of\n"
	  "unsolicited mail originating from your IP address. To protect our\nusers from spam, "
	  "mail sent from your IP address has been temporarily\nrate limited. - gsmtp", "dot",
	  "rate-limited", false },
	{ 421, "4.7.0", "[192.0.2.10 15] Our system has detected an unusual rate of\n"
	  "unsolicited mail originating from your IP address. To protect our\nusers from spam, "
	  "mail sent from your IP address has been temporarily\nblocked. - gsmtp", "dot",
	  "rate-limited", false },
	{ 421, "4.7.28", "[192.0.2.10] Our system has detected that this message exceeded\n"
	  "the rate that the sending domain is allowed to send. Please slow down. gsmtp", "dot",
	  "rate-limited", false },
	{ 550, "5.7.1", "[192.0.2.10 1] Our system has detected an unusual rate of\n"
	  "unsolicited mail originating from your IP address. To protect our\nusers from spam, "
	  "mail sent from your IP address has been blocked. - gsmtp", "dot",
	  "spam-block", true },
	{ 550, "5.7.1", "[192.0.2.10 12] Our system has detected that this message is\n"
	  "likely unsolicited mail. To reduce the amount of spam sent to Gmail,\nthis message "
	  "has been blocked. - gsmtp", "dot", "spam-block", true },
	{ 421, "4.7.0", "[192.0.2.10] Our system has detected that this message is suspicious "
	  "due to the very low reputation of the sending domain. To best protect our users "
	  "from spam, the message has been blocked. - gsmtp", "dot", "spam-block", false },
	{ 550, "5.7.26", "This mail is unauthenticated, which poses a security risk to the\n"
	  "sender and Gmail users, and has been blocked. The sender must\nauthenticate with at "
	  "least one of SPF or DKIM. - gsmtp", "dot", "policy", true },
	{ 550, "5.7.26", "Unauthenticated email from example.com is not accepted due to\n"
	  "domain's DMARC policy. Please contact the administrator of example.com domain. - gsmtp",
	  "dot", "policy", true },
	{ 421, "4.7.26", "This mail has been rate limited because it is unauthenticated.\n"
	  "Gmail requires all senders to authenticate with either SPF or DKIM. - gsmtp", "dot",
	  "policy", false },
	{ 550, "5.7.1", "This message does not have authentication information or fails to\n"
	  "pass authentication checks. To best protect our users from spam, the\nmessage has "
	  "been blocked. - gsmtp", "dot", "policy", true },
	{ 552, "5.3.4", "Your message exceeded Google's message size limits. - gsmtp", "dot",
	  "message-too-large", true },
	{ 450, "4.2.1", "The user you are trying to contact is receiving mail too quickly. "
	  "Please resend your message at a later time. - gsmtp", "rcpt", "other", false },
	{ 421, "4.7.0", "TLS required for RCPT domain, closing connection. - gsmtp", "rcpt",
	  "tls", false },
	{ 421, "4.4.5", "Server busy, try again later. - gsmtp", "greeting", "rate-limited", false },
	/* Microsoft */
	{ 550, "5.5.0", "Requested action not taken: mailbox unavailable (S2017062302). "
	  "[AM4PEPF00027A5F.eurprd04.prod.outlook.com 2023-09-19T15:05:34.324Z 08DBB71928CA8F8E]",
	  "rcpt", "invalid-recipient", true },
	{ 550, "", "Requested action not taken: mailbox unavailable", "rcpt",
	  "invalid-recipient", true },
	{ 550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
	  "lookup", "rcpt", "invalid-recipient", true },
	{ 550, "5.4.1", "Recipient address rejected: Access denied. AS(201806281) "
	  "[DB5EUR03FT022.eop-EUR03.prod.protection.outlook.com]", "rcpt",
	  "invalid-recipient", true },
	{ 451, "4.7.650", "The mail server [192.0.2.10] has been temporarily rate limited due "
	  "to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster "
	  "(S775) [Name=Protocol Filter Agent][AGT=PFA]", "mail", "rate-limited", false },
	{ 451, "4.7.651", "The mail server [192.0.2.10] has been temporarily rate limited due "
	  "to IP reputation. (S3114)", "mail", "rate-limited", false },
	{ 451, "4.7.500", "Server busy. Please try again later from [192.0.2.10]. (S77714) "
	  "[Name=Protocol Filter Agent]", "mail", "rate-limited", false },
	{ 550, "5.7.1", "Unfortunately, messages from [192.0.2.10] weren't sent. Please contact\n"
	  "your Internet service provider since part of their network is on our block\n"
	  "list (S3150). You can also refer your provider to http://mail.live.com/mail/"
	  "troubleshooting.aspx#errors. [DB5EUR03FT022.eop-EUR03.prod.protection.outlook.com]",
	  "mail", "spam-block", true },
	{ 550, "5.7.1", "Service unavailable, Client host [192.0.2.10] blocked using Spamhaus. "
	  "To request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.10 "
	  "(AS3130). [BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]", "mail",
	  "spam-block", true },
	{ 550, "5.7.515", "Access denied, sending domain example.com does not meet the required "
	  "authentication level.", "dot", "policy", true },
	{ 554, "5.2.2", "mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
	  "MapiExceptionShutoffQuotaExceeded", "dot", "mailbox-full", true },
	/* Yahoo, AOL */
	{ 421, "4.7.0", "[TSS04] Messages from 192.0.2.10 temporarily deferred due to "
	  "unexpected volume or user complaints - 4.16.55.1; see "
	  "https://postmaster.yahooinc.com/error-codes", "mail", "rate-limited", false },
	{ 421, "4.7.1", "[TS03] All messages from 192.0.2.10 permanently deferred; Retrying "
	  "will NOT succeed. See https://postmaster.yahooinc.com/error-codes", "mail",
	  "spam-block", false },
	{ 553, "5.7.2", "[TSS09] All messages from 192.0.2.10 will be permanently deferred; "
	  "Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes", "mail",
	  "spam-block", true },
	{ 553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.10, because the "
	  "ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
	  "greeting", "spam-block", true },
	{ 554, "5.7.9", "Message not accepted for policy reasons.  See "
	  "https://postmaster.yahooinc.com/error-codes", "dot", "policy", true },
	{ 554, "", "delivery error: dd This user doesn't have a yahoo.com account "
	  "(nobody@yahoo.com) [0] - mta1021.mail.ir2.yahoo.com", "dot",
	  "invalid-recipient", true },
	{ 554, "", "delivery error: dd Sorry your message to x@yahoo.com cannot be delivered. "
	  "This account has been disabled or discontinued [#102]. - mta1.mail.yahoo.com", "dot",
	  "inactive-mailbox", true },
	{ 552, "", "1 Requested mail action aborted, mailbox full", "rcpt", "mailbox-full", true },
	{ 450, "", "User is receiving mail too quickly", "rcpt", "other", false },
	{ 421, "", "Max message per connection reached, closing transmission channel", "mail",
	  "rate-limited", false },
	/* others */
	{ 550, "5.1.1", "<nobody@example.org>: Recipient address rejected: User unknown in "
	  "virtual mailbox table", "rcpt", "invalid-recipient", true },
	{ 554, "5.7.1", "Service unavailable; Client host [192.0.2.10] blocked using "
	  "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10; from=<a@b.example> "
	  "to=<c@d.example> proto=ESMTP helo=<mta1.example.com>", "rcpt", "spam-block", true },
	{ 550, "5.7.1", "<c@d.example>: Recipient address rejected: Access denied", "rcpt",
	  "policy", true },
	{ 450, "4.2.0", "<c@d.example>: Recipient address rejected: Greylisted, see "
	  "http://postgrey.schweikert.ch/help/d.example.html", "rcpt", "other", false },
	{ 452, "4.5.3", "Too many recipients", "rcpt", "protocol", false },
	{ 554, "5.7.1", "<c@d.example>: Relay access denied", "rcpt", "routing", true },
	{ 550, "", "relay not permitted", "rcpt", "routing", true },
	{ 552, "", "Message size exceeds fixed maximum message size", "dot",
	  "message-too-large", true },
	{ 552, "5.3.4", "message size 40000000 exceeds size limit 10240000 of server", "size",
	  "message-too-large", true },
	{ 554, "5.6.3", "the peer does not offer 8BITMIME", "size", "protocol", true },
	{ 553, "5.6.7", "the peer does not offer SMTPUTF8", "size", "protocol", true },
	{ 500, "5.5.1", "Command unrecognized", "ehlo", "protocol", true },
	{ 530, "5.7.0", "Must issue a STARTTLS command first", "mail", "tls", true },
	{ 554, "", "No SMTP service here", "greeting", "policy", true },
	{ 451, "4.3.0", "Temporary local problem - please try later", "dot", "other", false },
	/* before RCPT: about our sender, never the recipient */
	{ 553, "5.1.8", "<bounces@news.example.com>: Sender address rejected: Domain not found",
	  "mail", "policy", true },
	{ 550, "5.1.0", "<bounces@news.example.com>: user unknown", "mail", "policy", true },
	{ 550, "", "Address does not exist", "mail", "policy", true },
	{ 552, "", "Message size exceeds fixed maximum message size", "mail",
	  "message-too-large", true },
	{ 550, "", "Address does not exist", "rcpt", "invalid-recipient", true },
	{ 550, "", "something nobody has a rule for", "dot", "other", true },
	{ 450, "", "something nobody has a rule for", "dot", "other", false },
};

Test(sched_bounce, provider_replies)
{
	for (size_t i = 0; i < VL_ARRAY_LEN(providers); i++)
		check(builtin, &providers[i]);
}

/* code 0: no reply; the stage and the engine's words decide. */
static const struct want stages[] = {
	{ 0, "", "connect to 192.0.2.1:25: Connection refused", "connect", "routing", false },
	{ 0, "", "connect to 192.0.2.1:25: Network is unreachable", "connect", "routing", false },
	{ 0, "", "connect to 192.0.2.1:25: timed out", "connect", "timeout", false },
	{ 0, "", "timeout after 300 s waiting in rcpt", "rcpt", "timeout", false },
	{ 0, "", "timeout after 600 s waiting in dot", "dot", "timeout", false },
	{ 0, "", "TLS handshake: certificate verify failed", "tls", "tls", false },
	{ 0, "", "STARTTLS not offered; TLS policy 'encrypt' requires it", "starttls", "tls",
	  false },
	{ 454, "4.7.0", "STARTTLS refused: TLS not available due to local problem; TLS policy "
	  "'dane' requires TLS", "starttls", "tls", false },
	{ 502, "5.5.1", "STARTTLS refused: command not implemented; TLS policy 'encrypt' "
	  "requires TLS", "starttls", "tls", false },
	{ 0, "", "connection closed by the peer", "greeting", "routing", false },
	/* not SMTP: the peer's fault, transient, never policy (no reply named
	 * our sender) */
	{ 0, "", "malformed or over-long reply from the peer", "greeting", "protocol", false },
	{ 0, "", "malformed or over-long reply from the peer", "ehlo", "protocol", false },
	{ 0, "", "malformed or over-long reply from the peer", "rcpt", "protocol", false },
	{ 0, "", "reply pipelined into the TLS handshake", "tls", "protocol", false },
	{ 0, "", "something odd", "greeting", "other", false },
	{ 0, "", "something odd", "mail", "other", false },
	/* REQUIRETLS (RFC 8689): retried, never downgraded */
	{ 0, "", "REQUIRETLS: mx.example.com does not advertise REQUIRETLS", "requiretls",
	  "tls", false },
	{ 0, "", "REQUIRETLS: the connection to mx.example.com is not authenticated (DANE or a "
	  "verified certificate is required)", "requiretls", "tls", false },
	{ 0, "", "REQUIRETLS: the connection to mx.example.com is not encrypted (TLS is "
	  "required)", "requiretls", "tls", false },
	{ 0, "", "example.invalid: NXDOMAIN", "dns", "dns", true },
	{ 0, "", "example.com: null MX (RFC 7505): the domain accepts no mail", "dns", "dns",
	  true },
	{ 0, "", "example.com: SERVFAIL", "dns", "dns", false },
	{ 0, "", "something odd", "auth", "other", false },
	{ 0, "", NULL, NULL, "other", false },
};

Test(sched_bounce, stages_without_reply)
{
	for (size_t i = 0; i < VL_ARRAY_LEN(stages); i++)
		check(builtin, &stages[i]);
}

Test(sched_bounce, class_names_round_trip)
{
	enum sched_bounce_class c;
	cr_assert_null(sched_bounce_class_name(SCHED_BC_NONE));
	for (int i = SCHED_BC_NONE + 1; i < SCHED_BC_COUNT; i++) {
		const char *n = sched_bounce_class_name((enum sched_bounce_class)i);
		cr_assert_not_null(n);
		cr_assert_eq(sched_bounce_class_parse(n, &c), 0);
		cr_assert_eq((int)c, i);
	}
	cr_assert_eq(sched_bounce_class_parse("none", &c), -1);
	cr_assert_eq(sched_bounce_class_parse("bogus", &c), -1);
}

Test(sched_bounce, no_rules_still_gives_a_verdict)
{
	struct want w[] = {
		{ 550, "5.1.1", "x", "rcpt", "other", true },
		{ 451, "", "x", "rcpt", "other", false },
		{ 0, "", "x", "connect", "other", false },
	};
	for (size_t i = 0; i < VL_ARRAY_LEN(w); i++)
		check(NULL, &w[i]);
}

static char *write_tmp(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/volley-rules-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

Test(sched_bounce, user_rules_come_first)
{
	char err[256] = "";
	char *path = write_tmp(
		"# ours: a mailbox-full 5xx is worth retrying; a local policy text\n"
		"mailbox-full  soft  *  5*  *  /over quota/\n"
		"\n"
		"policy  hard  rcpt  550,551  5.1.1  /gone\\/away/   # '/' escaped\n"
		"spam-block auto * * * /our-filter-said-no/\r\n");
	struct sched_bounce_rules *r = sched_bounce_load(path, err, sizeof err);
	unlink(path);
	cr_assert_not_null(r, "%s", err);
	struct want w[] = {
		{ 552, "5.2.2", "The email account that you tried to reach is over quota.", "rcpt",
		  "mailbox-full", false },
		{ 550, "5.1.1", "user gone/away", "rcpt", "policy", true },
		{ 550, "5.1.1", "user gone/away", "dot", "invalid-recipient", true },
		{ 550, "5.1.1", "user unknown", "rcpt", "invalid-recipient", true },
		{ 451, "", "OUR-FILTER-SAID-NO", "dot", "spam-block", false },
		{ 554, "", "our-filter-said-no", "dot", "spam-block", true },
	};
	for (size_t i = 0; i < VL_ARRAY_LEN(w); i++)
		check(r, &w[i]);
	sched_bounce_free(r);
}

Test(sched_bounce, bad_files_name_file_and_line)
{
	struct { const char *text, *want; } cases[] = {
		{ "# fine\nbogus-class hard * 5* * *\n", ":2: unknown class 'bogus-class'" },
		{ "policy maybe * 5* * *\n", ":1: verdict 'maybe'" },
		{ "\n\npolicy hard * * * /x/\n", ":3: a hard rule matches the 4xx code 400" },
		{ "policy hard * 45? * *\n", ":1: a hard rule matches the 4xx code 450" },
		{ "rate-limited hard * 5* * *\n", ":1: rate-limited must be soft" },
		{ "rate-limited auto * * * *\n", ":1: rate-limited must be soft" },
		{ "policy auto * 5x * *\n", ":1: code '5x'" },
		{ "policy auto * 5* *\n", ":1: want: class verdict stage code enhanced text" },
		{ "policy auto * 5* * /unclosed\n", ":1: text: no closing '/'" },
		{ "policy auto * 5* * /a(b/\n", ":1: text /a(b/:" },
		{ "policy auto * 5* * regex\n", ":1: text: /regex/ or *" },
		{ "policy auto * 5* * /x/ trailing\n", ":1: unexpected 'trailing'" },
	};
	char err[256];
	for (size_t i = 0; i < VL_ARRAY_LEN(cases); i++) {
		char *path = write_tmp(cases[i].text);
		err[0] = '\0';
		struct sched_bounce_rules *r = sched_bounce_load(path, err, sizeof err);
		cr_expect_null(r, "%s loaded", cases[i].text);
		sched_bounce_free(r);
		cr_expect(strncmp(err, path, strlen(path)) == 0, "%s: %s", cases[i].text, err);
		cr_expect_not_null(strstr(err, cases[i].want), "%s: got '%s', want '%s'",
				   cases[i].text, err, cases[i].want);
		unlink(path);
	}
	cr_assert_null(sched_bounce_load("/nonexistent/rules", err, sizeof err));
	cr_assert_not_null(strstr(err, "/nonexistent/rules: No such file"), "%s", err);
}

Test(sched_bounce, a_4xx_is_never_hard)
{
	for (size_t i = 0; i < VL_ARRAY_LEN(providers); i++) {
		struct sched_bounce_verdict v;
		sched_bounce_classify(builtin, providers[i].code / 100 == 5 ?
				      providers[i].code - 100 : providers[i].code,
				      providers[i].enh, providers[i].text, providers[i].stage, &v);
		if (providers[i].code / 100 == 5)
			cr_expect(!v.hard, "%d as 4xx: %s", providers[i].code, providers[i].text);
	}
}

static void *classify_many(void *arg)
{
	(void)arg;
	for (int n = 0; n < 200; n++)
		for (size_t i = 0; i < VL_ARRAY_LEN(providers); i++) {
			struct sched_bounce_verdict v;
			const struct want *w = &providers[i];
			sched_bounce_classify(builtin, w->code, w->enh, w->text, w->stage, &v);
			if (strcmp(sched_bounce_class_name(v.cls), w->cls) || v.hard != w->hard)
				return (void *)1;
		}
	return NULL;
}

Test(sched_bounce, threads_share_the_rules)
{
	pthread_t t[4];
	uint64_t t0 = vl_now_ns();
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, classify_many, NULL);
	for (int i = 0; i < 4; i++) {
		void *rc;
		pthread_join(t[i], &rc);
		cr_expect_null(rc);
	}
	double per = (double)(vl_now_ns() - t0) / (4.0 * 200 * VL_ARRAY_LEN(providers));
	cr_log_info("bounce: %.1f us per classification over 4 threads", per / 1000);
}
