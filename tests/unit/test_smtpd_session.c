/* The SMTP server session (smtpd/) as volley-sink drives it, fed bytes
 * directly: no sockets involved. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../sink/sink.h"

struct h {
	struct sink_conf conf;
	struct smtpd_stats stats;
	struct sink_ctx hooks;
	struct smtpd_ctx ctx;
	_Atomic uint64_t conns_open;
	struct vl_buf out;
	struct smtpd_sess s;
	char dir[64];
	char reply[8192];
};

/* A session on a sink started with the given options (NULL-terminated). */
static struct h *h_new(const char *first, ...)
{
	struct h *h = calloc(1, sizeof *h);
	char *argv[32] = {"volley-sink", "--seed", "7"};
	int argc = 3;
	char err[256];
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	cr_assert_eq(sink_conf_parse(&h->conf, argc, argv, err, sizeof err), 0, "%s", err);
	if (h->conf.maildir) {
		snprintf(h->dir, sizeof h->dir, "/tmp/volley-unit-XXXXXX");
		cr_assert_not_null(mkdtemp(h->dir));
		h->hooks.store = sink_store_open(h->dir, err, sizeof err);
		cr_assert_not_null(h->hooks.store, "%s", err);
	}
	sink_ctx_init(&h->hooks, &h->conf, 0, h->hooks.store, NULL, NULL);
	h->ctx.conf = &h->conf.smtpd;
	h->ctx.hooks = &sink_hooks;
	h->ctx.hook_arg = &h->hooks;
	h->ctx.stats = &h->stats;
	h->conns_open = 1;
	h->ctx.conns_open = &h->conns_open;
	vl_buf_init(&h->out);
	smtpd_sess_init(&h->s, &h->ctx, &h->out);
	return h;
}

static void h_free(struct h *h)
{
	if (h->hooks.store) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
		cr_assert_eq(system(cmd), 0);
		sink_store_close(h->hooks.store);
	}
	smtpd_sess_free(&h->s);
	vl_buf_free(&h->out);
	sink_conf_free(&h->conf);
	free(h);
}

static const char *take(struct h *h)
{
	size_t n = h->out.len < sizeof h->reply - 1 ? h->out.len : sizeof h->reply - 1;
	memcpy(h->reply, h->out.p, n);
	h->reply[n] = '\0';
	vl_buf_reset(&h->out);
	return h->reply;
}

static const char *feedn(struct h *h, const char *in, size_t len)
{
	smtpd_sess_feed(&h->s, in, len);
	return take(h);
}

static const char *feed(struct h *h, const char *in)
{
	return feedn(h, in, strlen(in));
}

/* Greeting and EHLO, replies discarded. */
static void hello(struct h *h)
{
	smtpd_sess_greet(&h->s);
	feed(h, "EHLO client.test\r\n");
}

/* The only file in the maildir's sub-folder (new, env), read whole. */
static char *only_file(struct h *h, const char *sub, size_t *len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", h->dir, sub);
	DIR *d = opendir(path);
	struct dirent *e;
	char *data = NULL;
	int n = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		snprintf(path, sizeof path, "%s/%s/%s", h->dir, sub, e->d_name);
		FILE *f = fopen(path, "rb");
		free(data);
		data = calloc(1, 1 << 20);
		*len = fread(data, 1, (1 << 20) - 1, f);
		fclose(f);
	}
	closedir(d);
	cr_assert_eq(n, 1, "one file in %s, found %d", sub, n);
	return data;
}

/* The only message in the maildir, read whole. */
static char *stored(struct h *h, size_t *len)
{
	return only_file(h, "new", len);
}

Test(sink_smtp, greeting_and_ehlo)
{
	struct h *h = h_new("--hostname", "mx.test", NULL);
	smtpd_sess_greet(&h->s);
	cr_assert_str_eq(take(h), "220 mx.test ESMTP volley-sink\r\n");
	cr_assert_str_eq(feed(h, "EHLO client.test\r\n"),
		"250-mx.test greets client.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
		"250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n");
	cr_assert_str_eq(feed(h, "HELO client.test\r\n"), "250 mx.test\r\n");
	cr_assert_str_eq(feed(h, "EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
	h_free(h);
}

Test(sink_smtp, starttls_advertised_and_injection_dropped)
{
	struct h *h = h_new("--tls", NULL);
	hello(h);
	smtpd_sess_feed(&h->s, "EHLO a\r\n", 8);
	cr_assert(strstr(take(h), "250-STARTTLS\r\n"));
	const char *in = "STARTTLS\r\nRSET\r\n";
	size_t used = smtpd_sess_feed(&h->s, in, strlen(in));
	cr_assert_eq(used, 10, "input after STARTTLS must not be consumed");
	cr_assert_eq(h->s.action, SMTPD_STARTTLS);
	cr_assert_str_eq(take(h), "220 2.0.0 Ready to start TLS\r\n");
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test>\r\n"),
			 "503 5.5.1 Error: send HELO/EHLO first\r\n", "EHLO again after TLS");
	const char *r = feed(h, "EHLO a\r\n");
	cr_assert_null(strstr(r, "STARTTLS"));
	cr_assert_str_eq(feed(h, "STARTTLS\r\n"), "503 5.5.1 Error: TLS already active\r\n");
	h_free(h);
}

/* RFC 8689: REQUIRETLS offered inside TLS only, with --requiretls; the
 * parameter is unknown (555) wherever it is not offered. */
Test(sink_smtp, requiretls_inside_tls_only)
{
	struct h *h = h_new("--tls", "--requiretls", "--maildir", "x", NULL);
	smtpd_sess_greet(&h->s);
	take(h);
	cr_assert_null(strstr(feed(h, "EHLO a\r\n"), "REQUIRETLS"), "not in clear text");
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test> REQUIRETLS\r\n"),
			 "555 5.5.4 Unsupported parameter\r\n");
	feed(h, "STARTTLS\r\n");
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	cr_assert(strstr(feed(h, "EHLO a\r\n"), "250-REQUIRETLS\r\n"));
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test> SIZE=40 requiretls\r\n"
			      "RCPT TO:<c@d.test>\r\nDATA\r\n"),
			 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	cr_assert(strstr(feed(h, "Subject: x\r\n\r\nhi\r\n.\r\n"), "250 2.0.0 Ok"));
	size_t len;
	char *env = only_file(h, "env", &len);
	cr_assert(strstr(env, "\"requiretls\": true"), "%s", env);
	free(env);
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test> REQUIRETLS=YES\r\n"),
			 "555 5.5.4 Unsupported parameter\r\n", "no value allowed");
	h_free(h);
}

Test(sink_smtp, requiretls_unknown_without_the_option)
{
	struct h *h = h_new("--tls", "--maildir", "x", NULL);
	hello(h);
	feed(h, "STARTTLS\r\n");
	smtpd_sess_tls_started(&h->s, "TLSv1.3", "X");
	cr_assert_null(strstr(feed(h, "EHLO a\r\n"), "REQUIRETLS"));
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test> REQUIRETLS\r\n"),
			 "555 5.5.4 Unsupported parameter\r\n");
	/* a message without it is stored saying so */
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
	feed(h, "Subject: x\r\n\r\nhi\r\n.\r\n");
	size_t len;
	char *env = only_file(h, "env", &len);
	cr_assert(strstr(env, "\"requiretls\": false"), "%s", env);
	free(env);
	h_free(h);
}

Test(sink_smtp, starttls_without_tls_not_implemented)
{
	struct h *h = h_new(NULL);
	hello(h);
	cr_assert_str_eq(feed(h, "STARTTLS\r\n"), "502 5.5.1 Error: command not implemented\r\n");
	h_free(h);
}

Test(sink_smtp, pipelined_transaction_in_order)
{
	struct h *h = h_new("--reply", "rcpt:*@bad.test=550 5.1.1 no such user", NULL);
	hello(h);
	cr_assert_str_eq(feed(h, "MAIL FROM:<s@x.test> SIZE=100 BODY=8BITMIME\r\n"
				 "RCPT TO:<a@good.test>\r\nRCPT TO:<b@bad.test>\r\n"
				 "RCPT TO:<c@good.test>\r\nDATA\r\n"),
		"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n"
		"250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	const char *r = feed(h, "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
	cr_assert(strncmp(r, "250 2.0.0 Ok: queued as ", 24) == 0, "%s", r);
	cr_assert(strstr(r, "\r\n221 2.0.0 Bye\r\n"));
	cr_assert_eq(h->s.action, SMTPD_CLOSE);
	cr_assert_eq(h->stats.messages, 1);
	cr_assert_eq(h->stats.recipients, 2);
	cr_assert_eq(h->stats.replies_5xx, 1);
	h_free(h);
}

/* Commands and the exact replies they must get; want NULL: not checked. */
struct exchange {
	const char *in, *want;
};

static void converse(struct h *h, const struct exchange *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *got = feed(h, x[i].in);
		if (x[i].want)
			cr_assert_str_eq(got, x[i].want, "after %s", x[i].in);
	}
}

Test(sink_smtp, order_is_enforced)
{
	static const struct exchange x[] = {
		{"MAIL FROM:<a@b.test>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n"},
		{"EHLO x\r\n", NULL},
		{"RCPT TO:<a@b.test>\r\n", "503 5.5.1 Error: need MAIL command\r\n"},
		{"DATA\r\n", "503 5.5.1 Error: need MAIL command\r\n"},
		{"MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n"},
		{"MAIL FROM:<a@b.test>\r\n", "503 5.5.1 Error: nested MAIL command\r\n"},
		{"DATA\r\n", "554 5.5.1 Error: no valid recipients\r\n"},
		{"RCPT TO:<>\r\n", "501 5.1.3 Bad recipient address syntax\r\n"},
		{"RCPT TO:<Postmaster>\r\n", "250 2.1.5 Ok\r\n"},
		{"RSET\r\n", "250 2.0.0 Ok\r\n"},
		{"RCPT TO:<a@b.test>\r\n", "503 5.5.1 Error: need MAIL command\r\n"},
	};
	struct h *h = h_new(NULL);
	smtpd_sess_greet(&h->s);
	take(h);
	converse(h, x, sizeof x / sizeof x[0]);
	h_free(h);
}

Test(sink_smtp, argument_errors)
{
	static const struct exchange x[] = {
		{"MAIL TO:<a@b.test>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"},
		{"MAIL FROM:a@b.test\r\n", "501 5.1.7 Bad sender address syntax\r\n"},
		{"MAIL FROM:<a b@c.test>\r\n", "501 5.1.7 Bad sender address syntax\r\n"},
		{"MAIL FROM:<a@b.test> FOO=1\r\n", "555 5.5.4 Unsupported parameter\r\n"},
		{"MAIL FROM:<a@b.test> BODY=9BIT\r\n", "501 5.5.4 Bad BODY parameter\r\n"},
		{"MAIL FROM:<a@b.test> SIZE=1001\r\n", "552 5.3.4 Message size exceeds fixed limit\r\n"},
		{"MAIL FROM:<j\xc3\xb6rg@b.test>\r\n", "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"},
		{"MAIL FROM:<j\xc3\xb6rg@b.test> SMTPUTF8\r\n", "250 2.1.0 Ok\r\n"},
		{"RCPT TO:<\"a b\\\"c\"@d.test>\r\n", "250 2.1.5 Ok\r\n"},
		{"RCPT TO:<@relay.test:x@d.test>\r\n", "250 2.1.5 Ok\r\n"},
		{"RCPT TO:<x@d.test> NOTIFY=NEVER\r\n", "555 5.5.4 Unsupported parameter\r\n"},
		{"DATA now\r\n", "501 5.5.4 Syntax: DATA\r\n"},
		{"VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n"},
		{"VRFY x\r\n", "252 2.0.0 Cannot VRFY user, but will accept message\r\n"},
		{"NOOP\r\n", "250 2.0.0 Ok\r\n"},
		{"EXPN x\r\n", "502 5.5.1 Error: command not implemented\r\n"},
	};
	struct h *h = h_new("--max-size", "1000", NULL);
	hello(h);
	converse(h, x, sizeof x / sizeof x[0]);
	h_free(h);
}

Test(sink_smtp, garbage_long_lines_and_error_limit)
{
	struct h *h = h_new(NULL);
	hello(h);
	cr_assert_str_eq(feedn(h, "\x01\x02\x00\xff\r\n", 6), "500 5.5.2 Error: bad character in command\r\n");
	cr_assert_str_eq(feed(h, "FOO\r\n"), "500 5.5.2 Error: command not recognized\r\n");
	char line[1100];
	memset(line, 'A', sizeof line);
	memcpy(line + 1098, "\r\n", 2);
	cr_assert_str_eq(feedn(h, line, 1100), "500 5.5.2 Error: line too long\r\n");
	/* 998 octets plus CRLF is the longest legal line. */
	memcpy(line, "NOOP ", 5);
	memcpy(line + 998, "\r\n", 2);
	cr_assert_str_eq(feedn(h, line, 1000), "250 2.0.0 Ok\r\n");
	memcpy(line + 998, "A\r\n", 3);
	cr_assert_str_eq(feedn(h, line, 1001), "500 5.5.2 Error: line too long\r\n");
	cr_assert_str_eq(feed(h, "NOOP\r\n"), "250 2.0.0 Ok\r\n", "still usable");
	for (int i = 0; i < 15; i++) /* 4 errors so far; the 20th closes */
		cr_assert(strncmp(feed(h, "BAD\r\n"), "500 ", 4) == 0);
	const char *r = feed(h, "BAD\r\nNOOP\r\n");
	cr_assert(strstr(r, "421 4.7.0"), "%s", r);
	cr_assert_null(strstr(r, "250"), "nothing after the 421");
	cr_assert_eq(h->s.action, SMTPD_CLOSE);
	h_free(h);
}

/* Send DATA content in chunks of the given size; the stored message must
 * be want, byte for byte. */
static void check_data(const char *in, size_t chunk, const char *want)
{
	struct h *h = h_new("--maildir", "x", NULL);
	hello(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
	for (size_t i = 0; i < strlen(in); i += chunk)
		feedn(h, in + i, strlen(in) - i < chunk ? strlen(in) - i : chunk);
	cr_assert_eq(h->stats.messages, 1);
	size_t len;
	char *m = stored(h, &len);
	cr_assert_eq(len, strlen(want));
	cr_assert_eq(memcmp(m, want, len), 0);
	free(m);
	h_free(h);
}

/* Only CRLF.CRLF ends the message; leading dots are unstuffed exactly. */
Test(sink_smtp, data_ends_at_crlf_dot_crlf_only)
{
	check_data("Subject: dots\r\n\r\n..leading dot\r\n...two\r\nbare\nLF.\n.\n"
		   "\xe2\x82\xac 8bit\r\n.x\r\n.\rno\r\nlast\r\n.\r\n", 4096,
		   "Subject: dots\r\n\r\n.leading dot\r\n..two\r\nbare\nLF.\n.\n"
		   "\xe2\x82\xac 8bit\r\nx\r\n\rno\r\nlast\r\n");
}

/* The scanner fed one byte at a time: state kept across every boundary. */
Test(sink_smtp, data_byte_by_byte)
{
	check_data("A\r\n..B\r\n.\rC\r\nbare\n.\nD\r\n.\r\n", 1,
		   "A\r\n.B\r\n\rC\r\nbare\n.\nD\r\n");
}

Test(sink_smtp, data_limits)
{
	struct h *h = h_new("--max-size", "100", NULL);
	hello(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
	char body[300];
	memset(body, 'x', sizeof body);
	memcpy(body + 295, "\r\n.\r\n", 5);
	cr_assert_str_eq(feedn(h, body, sizeof body), "552 5.3.4 Error: message size exceeds fixed limit\r\n");
	sink_conf_free(&h->conf);
	h_free(h);
	h = h_new(NULL);
	hello(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
	char line[1010];
	memset(line, 'y', sizeof line);
	memcpy(line + 999, "\r\n", 2); /* 999 octets + CRLF: one too many */
	feedn(h, line, 1001);
	cr_assert_str_eq(feed(h, ".\r\n"), "554 5.6.0 Error: message has a line over 998 octets\r\n");
	cr_assert_eq(h->stats.messages, 0);
	h_free(h);
}

Test(sink_smtp, bdat_chunks)
{
	struct h *h = h_new("--maildir", "x", NULL);
	hello(h);
	const char *r = feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
				"BDAT 7\r\nab\r\n.\r\nBDAT 3\r\nxyzBDAT 0 LAST\r\nNOOP\r\n");
	cr_assert(strncmp(r, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 7 octets received\r\n"
			  "250 2.0.0 10 octets received\r\n250 2.0.0 Ok: queued as ", 100) == 0, "%s", r);
	cr_assert(strstr(r, "\r\n250 2.0.0 Ok\r\n"), "NOOP after LAST is a command");
	size_t len;
	char *m = stored(h, &len);
	cr_assert_eq(len, 10);
	cr_assert_eq(memcmp(m, "ab\r\n.\r\nxyz", 10), 0);
	free(m);
	h_free(h);
}

Test(sink_smtp, bdat_errors)
{
	struct h *h = h_new(NULL);
	hello(h);
	/* No transaction: the chunk is still read, then refused. */
	cr_assert_str_eq(feed(h, "BDAT 4 LAST\r\nNOOPNOOP\r\n"),
			 "503 5.5.1 Error: no valid transaction for BDAT\r\n250 2.0.0 Ok\r\n");
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 1\r\nx");
	cr_assert_str_eq(feed(h, "DATA\r\n"), "503 5.5.1 Error: DATA after BDAT\r\n");
	cr_assert_str_eq(feed(h, "BDAT x\r\nNOOP\r\n"), "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
	cr_assert_eq(h->s.action, SMTPD_CLOSE);
	h_free(h);
}

Test(sink_smtp, rules_by_stage)
{
	struct h *h = h_new("--reply", "mail:*@block.test=421 4.7.0 try later",
			    "--reply", "dot:*@spam.test=554 5.7.1 spam\\nreally",
			    "--reply", "rcpt:ok@*=250 2.1.5 custom ok", NULL);
	hello(h);
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<ok@x.test>\r\n"
				 "RCPT TO:<z@spam.test>\r\nDATA\r\n"),
		"250 2.1.0 Ok\r\n250 2.1.5 custom ok\r\n250 2.1.5 Ok\r\n"
		"354 End data with <CR><LF>.<CR><LF>\r\n");
	cr_assert_str_eq(feed(h, "hi\r\n.\r\n"), "554-5.7.1 spam\r\n554 really\r\n");
	cr_assert_eq(h->stats.messages, 0);
	cr_assert_str_eq(feed(h, "MAIL FROM:<x@block.test>\r\nNOOP\r\n"), "421 4.7.0 try later\r\n");
	cr_assert_eq(h->s.action, SMTPD_CLOSE);
	h_free(h);
}

Test(sink_smtp, greeting_554_then_503)
{
	struct h *h = h_new("--reply", "greeting=554 5.3.2 go away", NULL);
	smtpd_sess_greet(&h->s);
	cr_assert_str_eq(take(h), "554 5.3.2 go away\r\n");
	cr_assert_str_eq(feed(h, "EHLO x\r\n"), "503 5.5.1 Error: no SMTP service here\r\n");
	cr_assert_str_eq(feed(h, "QUIT\r\n"), "221 2.0.0 Bye\r\n");
	h_free(h);
}

Test(sink_smtp, stall_drop_raw)
{
	struct h *h = h_new("--reply", "rcpt:stall@*=stall", "--reply", "rcpt:drop@*=drop",
			    "--reply", "rcpt:raw@*=raw:2x0 junk\\r\\n", NULL);
	hello(h);
	feed(h, "MAIL FROM:<a@b.test>\r\n");
	cr_assert_str_eq(feed(h, "RCPT TO:<raw@x.test>\r\n"), "2x0 junk\r\n");
	cr_assert_str_eq(feed(h, "RCPT TO:<stall@x.test>\r\nNOOP\r\n"), "");
	cr_assert_eq(h->s.state, SMTPD_S_STALL);
	smtpd_sess_timeout(&h->s);
	cr_assert(strncmp(take(h), "421 4.4.2 ", 10) == 0);
	h_free(h);
	h = h_new("--reply", "rcpt:drop@*=drop", NULL);
	hello(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<drop@x.test>\r\n");
	cr_assert_eq(h->s.action, SMTPD_DROP);
	cr_assert_eq(h->stats.drops, 1);
	h_free(h);
}

Test(sink_smtp, faults_at_full_rate)
{
	struct h *h = h_new("--tempfail", "100%", NULL);
	hello(h);
	feed(h, "MAIL FROM:<a@b.test>\r\n");
	cr_assert_str_eq(feed(h, "RCPT TO:<c@d.test>\r\n"),
			 "450 4.2.0 Mailbox temporarily unavailable (injected)\r\n");
	h_free(h);
	h = h_new("--permfail", "mail:100", NULL);
	hello(h);
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test>\r\n"), "550 5.7.1 Sender rejected (injected)\r\n");
	h_free(h);
	h = h_new("--disconnect", "100%", NULL);
	hello(h);
	feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
	cr_assert_str_eq(feed(h, "x\r\n.\r\n"), "");
	cr_assert_eq(h->s.action, SMTPD_DROP);
	h_free(h);
}

Test(sink_smtp, faults_partial_rate_is_seeded)
{
	int counts[2];
	for (int run = 0; run < 2; run++) {
		struct h *h = h_new("--permfail", "20%", NULL);
		hello(h);
		feed(h, "MAIL FROM:<a@b.test>\r\n");
		for (int i = 0; i < 500; i++)
			feed(h, "RCPT TO:<c@d.test>\r\n");
		counts[run] = (int)h->stats.replies_5xx;
		h_free(h);
	}
	cr_assert_eq(counts[0], counts[1], "the same seed, the same dice");
	cr_assert(counts[0] > 60 && counts[0] < 140, "%d of 500 at 20%%", counts[0]);
}

Test(sink_smtp, max_conns_and_max_rcpts)
{
	struct h *h = h_new("--max-conns", "1", "--max-rcpts", "2", NULL);
	h->conns_open = 2;
	smtpd_sess_greet(&h->s);
	cr_assert(strncmp(take(h), "421 4.7.0 ", 10) == 0);
	cr_assert_eq(h->s.action, SMTPD_CLOSE);
	h_free(h);
	h = h_new("--max-rcpts", "2", NULL);
	hello(h);
	cr_assert_str_eq(feed(h, "MAIL FROM:<a@b.test>\r\nRCPT TO:<1@d.test>\r\n"
				 "RCPT TO:<2@d.test>\r\nRCPT TO:<3@d.test>\r\n"),
		"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n");
	h_free(h);
}
