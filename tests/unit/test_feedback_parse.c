/* feedback/: the samples (tests/unit/data/feedback/) classified and read
 * field by field: Postfix DSNs, a Sendmail multi-recipient DSN, ARF
 * (RFC 5965's example, Yahoo, Microsoft JMRP) and the heuristic's bounces. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../feedback/feedback.h"
#include "fb_samples.h"

static char err[256];

static void parse_sample(const char *name, bool crlf, struct fb_report *r)
{
	size_t n;
	char *m = fb_sample(name, &n);
	if (crlf) {
		size_t k;
		char *c = fb_crlf(m, n, &k);
		free(m);
		m = c;
		n = k;
	}
	cr_assert_eq(fb_parse(m, n, NULL, r, err, sizeof err), 0, "%s: %s", name, err);
	free(m);
}

static void check_postfix_dsn(bool crlf)
{
	struct fb_report r;

	parse_sample("postfix-dsn.eml", crlf, &r);
	cr_assert_eq(r.kind, FB_DSN);
	cr_assert_str_eq(r.envelope_to, "bounces+0194c1d2e3f4-5a6b7c8d.42@news.example.com");
	cr_assert_str_eq(r.subject, "Undelivered Mail Returned to Sender");
	cr_assert_str_eq(r.reporting_mta, "mail.example.net");
	cr_assert_str_eq(r.arrival_date, "Mon,  7 Dec 2026 04:10:11 +0000 (UTC)");
	cr_assert_eq(r.nrcpts, 1);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "nobody@example.org");
	cr_assert_str_eq(r.rcpts[0].orig_rcpt, "nobody@example.org");
	cr_assert_eq(r.rcpts[0].action, FB_ACT_FAILED);
	cr_assert_str_eq(r.rcpts[0].status, "5.1.1");
	cr_assert_str_eq(r.rcpts[0].remote_mta, "mx1.example.org");
	cr_assert_str_eq(r.rcpts[0].diag_type, "smtp");
	cr_assert_str_eq(r.rcpts[0].diag, "550 5.1.1 <nobody@example.org>: Recipient address "
					  "rejected: User unknown in virtual mailbox table");
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.42@news.example.com>");
	cr_assert_str_eq(r.orig_from, "Example News <news@example.com>");
	cr_assert_str_eq(r.orig_to, "nobody@example.org");
	cr_assert_str_eq(r.orig_subject, "Our December news");
	cr_assert_not(r.truncated);

	char id[FB_JOB_ID_LEN + 1];
	size_t idx;
	bool has;
	cr_assert(fb_match_verp(r.envelope_to, id, &idx));
	cr_assert_str_eq(id, "0194c1d2e3f4-5a6b7c8d");
	cr_assert_eq(idx, 42);
	cr_assert(fb_match_msgid(r.orig_msgid, id, &idx, &has));
	cr_assert(has);
	cr_assert_eq(idx, 42);
	fb_report_free(&r);
}

Test(feedback_parse, postfix_dsn_lf) { check_postfix_dsn(false); }
Test(feedback_parse, postfix_dsn_crlf) { check_postfix_dsn(true); }

Test(feedback_parse, delayed_dsn)
{
	struct fb_report r;

	parse_sample("postfix-delayed.eml", false, &r);
	cr_assert_eq(r.kind, FB_DSN);
	cr_assert_eq(r.nrcpts, 1);
	cr_assert_eq(r.rcpts[0].action, FB_ACT_DELAYED);
	cr_assert_str_eq(r.rcpts[0].status, "4.4.1");
	cr_assert_str_eq(r.rcpts[0].diag_type, "X-Postfix");
	cr_assert_str_eq(r.rcpts[0].diag,
			 "connect to mx.example.org[192.0.2.30]:25: Connection timed out");
	cr_assert_null(r.rcpts[0].remote_mta);
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.17@news.example.com>");
	fb_report_free(&r);
}

Test(feedback_parse, multi_recipient_dsn)
{
	struct fb_report r;

	parse_sample("multi-rcpt-dsn.eml", false, &r);
	cr_assert_eq(r.kind, FB_DSN);
	cr_assert_str_eq(r.envelope_to, "bounces@news.example.com");
	cr_assert_eq(r.nrcpts, 3);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "alice@example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.1.1");
	cr_assert_str_eq(r.rcpts[0].diag_type, "SMTP");
	cr_assert_str_eq(r.rcpts[1].final_rcpt, "bob@example.org");
	cr_assert_str_eq(r.rcpts[1].status, "5.2.2");
	cr_assert_str_eq(r.rcpts[1].diag, "552 5.2.2 Mailbox full");
	cr_assert_str_eq(r.rcpts[2].final_rcpt, "carol@example.org");
	cr_assert_eq(r.rcpts[2].action, FB_ACT_RELAYED);
	cr_assert_str_eq(r.rcpts[2].status, "2.0.0");
	cr_assert_null(r.rcpts[2].diag);
	/* message/rfc822: the returned message's header */
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d@news.example.com>");
	char id[FB_JOB_ID_LEN + 1];
	size_t idx = 99;
	bool has = true;
	cr_assert(fb_match_msgid(r.orig_msgid, id, &idx, &has));
	cr_assert_not(has);
	cr_assert_str_eq(id, "0194c1d2e3f4-5a6b7c8d");
	fb_report_free(&r);
}

Test(feedback_parse, dsn_base64_status_part)
{
	struct fb_report r;

	parse_sample("dsn-base64.eml", false, &r);
	cr_assert_eq(r.kind, FB_DSN);
	cr_assert_eq(r.nrcpts, 1);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "nobody@example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.1.1");
	cr_assert_str_eq(r.reporting_mta, "mail.example.net");
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.42@news.example.com>");
	fb_report_free(&r);
}

Test(feedback_parse, arf_rfc5965_example)
{
	struct fb_report r;

	parse_sample("arf-rfc5965.eml", true, &r);
	cr_assert_eq(r.kind, FB_ARF);
	cr_assert_str_eq(r.envelope_to, "abuse@example.net");
	cr_assert_str_eq(r.feedback_type, "abuse");
	cr_assert_str_eq(r.user_agent, "SomeGenerator/1.0");
	cr_assert_str_eq(r.version, "1");
	cr_assert_str_eq(r.orig_mail_from, "somespammer@example.net");
	cr_assert_eq(r.norig_rcpt_to, 1);
	cr_assert_str_eq(r.orig_rcpt_to[0], "user@example.com");
	cr_assert_str_eq(r.arrival_date, "Thu, 8 Mar 2005 14:00:00 EDT");
	cr_assert_str_eq(r.source_ip, "192.0.2.1");
	cr_assert_str_eq(r.reported_domain, "example.net");
	cr_assert_str_eq(r.orig_msgid, "8787KJKJ3K4J3K4J3K4J3.mail@example.net");
	cr_assert_str_eq(r.orig_subject, "Earn money");
	cr_assert_eq(r.nrcpts, 0);
	fb_report_free(&r);
}

Test(feedback_parse, arf_yahoo)
{
	struct fb_report r;
	char id[FB_JOB_ID_LEN + 1];
	size_t idx;
	bool has;

	parse_sample("arf-yahoo.eml", false, &r);
	cr_assert_eq(r.kind, FB_ARF);
	cr_assert_str_eq(r.feedback_type, "abuse");
	cr_assert_str_eq(r.user_agent, "Yahoo!-Mail-Feedback/2.0");
	cr_assert_str_eq(r.arrival_date, "Mon, 7 Dec 2026 04:12:33 +0000");
	cr_assert_str_eq(r.orig_rcpt_to[0], "reader@yahoo.com");
	cr_assert(fb_match_verp(r.orig_mail_from, id, &idx));
	cr_assert_eq(idx, 7);
	cr_assert(fb_match_msgid(r.orig_msgid, id, &idx, &has));
	cr_assert_eq(idx, 7);
	cr_assert_str_eq(r.orig_to, "redacted@yahoo.com");
	fb_report_free(&r);
}

Test(feedback_parse, arf_microsoft_jmrp)
{
	struct fb_report r;

	parse_sample("arf-microsoft.eml", true, &r);
	cr_assert_eq(r.kind, FB_ARF);
	cr_assert_str_eq(r.user_agent, "Hotmail FBL");
	cr_assert_str_eq(r.source_ip, "198.51.100.7");
	cr_assert_eq(r.norig_rcpt_to, 0);
	cr_assert_str_eq(r.orig_mail_from, "bounces+0194c1d2e3f4-5a6b7c8d.9@news.example.com");
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.9@news.example.com>");
	cr_assert_str_eq(r.orig_to, "reader@outlook.com");
	fb_report_free(&r);
}

static void check_qsbmf(bool crlf)
{
	struct fb_report r;

	parse_sample("qsbmf.eml", crlf, &r);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	cr_assert_eq(r.nrcpts, 3);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "ghost@example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.1.1");
	cr_assert_str_eq(r.rcpts[0].diag, "192.0.2.40 does not like recipient. Remote host said: "
					  "550 5.1.1 ghost@example.org... User unknown Giving up on "
					  "192.0.2.40.");
	cr_assert_str_eq(r.rcpts[1].final_rcpt, "late@example.org");
	cr_assert_str_eq(r.rcpts[1].status, "5.0.0", "not going to try again: permanent");
	cr_assert_str_eq(r.rcpts[2].final_rcpt, "full@example.net");
	cr_assert_str_eq(r.rcpts[2].status, "4.0.0", "try again later: temporary");
	cr_assert_eq(r.rcpts[0].action, FB_ACT_NONE);
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.3@news.example.com>");
	cr_assert_str_eq(r.orig_to, "ghost@example.org");
	fb_report_free(&r);
}

Test(feedback_parse, qsbmf_lf) { check_qsbmf(false); }
Test(feedback_parse, qsbmf_crlf) { check_qsbmf(true); }

Test(feedback_parse, exchange_ndr)
{
	struct fb_report r;

	parse_sample("exchange-ndr.eml", true, &r);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	cr_assert_eq(r.nrcpts, 1, "%zu recipients", r.nrcpts);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "jane.doe@corp.example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.1.1");
	cr_assert_str_eq(r.rcpts[0].diag, "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##");
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.11@news.example.com>");
	cr_assert_str_eq(r.envelope_to, "bounces+0194c1d2e3f4-5a6b7c8d.11@news.example.com");
	fb_report_free(&r);
}

Test(feedback_parse, exchange_remote_server_returned)
{
	static const char m[] =
		"From: postmaster@corp.example.org\n"
		"To: bounces+0194c1d2e3f4-5a6b7c8d.8@news.example.com\n"
		"Subject: Undeliverable: Our December news\n"
		"Content-Type: text/plain\n\n"
		"Delivery has failed to these recipients or groups:\n\n"
		"bill@corp.example.org\n"
		"The recipient's mailbox is full and can't accept messages now.\n\n"
		"Diagnostic information for administrators:\n\n"
		"Generating server: EXCH02.corp.example.org\n"
		"bill@corp.example.org\n"
		"mx.corp.example.org #<mx.corp.example.org #5.2.2 smtp;552 5.2.2 full> #SMTP#\n"
		"Remote Server returned '552 5.2.2 Mailbox full'\n";
	struct fb_report r;

	cr_assert_eq(fb_parse(m, sizeof m - 1, NULL, &r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	cr_assert_eq(r.nrcpts, 1);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "bill@corp.example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.2.2");
	cr_assert_null(r.orig_msgid);
	fb_report_free(&r);
}

Test(feedback_parse, gmail_plain_bounce)
{
	struct fb_report r;

	parse_sample("gmail-plain.eml", false, &r);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	cr_assert_eq(r.nrcpts, 1, "%zu recipients", r.nrcpts);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "nosuchuser@example.com");
	cr_assert_str_eq(r.rcpts[0].status, "5.1.1");
	cr_assert_str_eq(r.rcpts[0].diag, "550 5.1.1 <nosuchuser@example.com>: Recipient address "
					  "rejected: User unknown in local recipient table");
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.5@news.example.com>");
	fb_report_free(&r);
}

Test(feedback_parse, exim_plain_bounce_without_status)
{
	static const char m[] =
		"From: Mail Delivery System <Mailer-Daemon@exim.example.org>\n"
		"To: bounces+0194c1d2e3f4-5a6b7c8d.2@news.example.com\n"
		"Subject: Mail delivery failed: returning message to sender\n\n"
		"This message was created automatically by mail delivery software.\n\n"
		"A message that you sent could not be delivered to one or more of its\n"
		"recipients. This is a permanent error. The following address(es) failed:\n\n"
		"  gone@example.org\n"
		"    host mx.example.org [192.0.2.80]\n"
		"    SMTP error from remote mail server after RCPT TO:<gone@example.org>:\n"
		"    550 No such user here\n\n"
		"------ This is a copy of the message, including all the headers. ------\n\n"
		"From: Example News <news@example.com>\n"
		"Message-ID: <0194c1d2e3f4-5a6b7c8d.2@news.example.com>\n\nHi\n";
	struct fb_report r;

	cr_assert_eq(fb_parse(m, sizeof m - 1, NULL, &r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	cr_assert_eq(r.nrcpts, 1);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "gone@example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.0.0");
	cr_assert_str_eq(r.rcpts[0].diag, "550 No such user here");
	cr_assert_str_eq(r.orig_msgid, "<0194c1d2e3f4-5a6b7c8d.2@news.example.com>");
	fb_report_free(&r);
}

Test(feedback_parse, temporary_wording_is_4_0_0)
{
	static const char m[] =
		"From: MAILER-DAEMON@old.example.org\n"
		"Subject: Warning: could not send message for past 4 hours\n\n"
		"Your message is delayed; the server will retry.\n\n"
		"<later@example.org>:\n"
		"Connection refused, this is a temporary failure\n";
	struct fb_report r;

	cr_assert_eq(fb_parse(m, sizeof m - 1, NULL, &r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.kind, FB_BOUNCE_HEURISTIC);
	cr_assert_str_eq(r.rcpts[0].status, "4.0.0");
	fb_report_free(&r);
}

Test(feedback_parse, not_a_report)
{
	struct fb_report r;

	parse_sample("not-report.eml", false, &r);
	cr_assert_eq(r.kind, FB_NOT_REPORT);
	cr_assert_eq(r.nrcpts, 0);
	cr_assert_str_eq(r.envelope_to, "news@example.com");
	fb_report_free(&r);
}

Test(feedback_parse, other_report_type_is_not_a_report)
{
	static const char m[] = "From: a@example.org\n"
				"Content-Type: multipart/report; report-type=disposition-notification;"
				" boundary=b1\n\n--b1\nContent-Type: text/plain\n\nread\n--b1--\n";
	struct fb_report r;

	cr_assert_eq(fb_parse(m, sizeof m - 1, NULL, &r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.kind, FB_NOT_REPORT);
	fb_report_free(&r);
}

Test(feedback_parse, human_subject_alone_is_not_a_bounce)
{
	static const char m[] = "From: Jane <jane@example.org>\n"
				"Subject: my letter was undeliverable, why?\n\n"
				"Hello, can you tell me why?\n";
	struct fb_report r;

	cr_assert_eq(fb_parse(m, sizeof m - 1, NULL, &r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.kind, FB_NOT_REPORT);
	fb_report_free(&r);
}

Test(feedback_parse, report_nested_in_mixed)
{
	static const char m[] =
		"Delivered-To: bounces+0194c1d2e3f4-5a6b7c8d.1@news.example.com\n"
		"Content-Type: multipart/mixed; boundary=outer\n\n"
		"--outer\nContent-Type: multipart/report; report-type=delivery-status; boundary=inner\n\n"
		"--inner\nContent-Type: message/delivery-status\n\n"
		"Reporting-MTA: dns; x.example.org\n\n"
		"Final-Recipient: rfc822; <z@example.org>\nAction: failed\nStatus: 5.7.1 (policy)\n\n"
		"--inner--\n--outer--\n";
	struct fb_report r;

	cr_assert_eq(fb_parse(m, sizeof m - 1, NULL, &r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.kind, FB_DSN);
	cr_assert_str_eq(r.rcpts[0].final_rcpt, "z@example.org");
	cr_assert_str_eq(r.rcpts[0].status, "5.7.1");
	fb_report_free(&r);
}
