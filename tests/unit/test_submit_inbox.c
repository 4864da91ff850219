/* submit/inbox.c: sub_inbox_store, the IMAP poller's synchronous write
 * under a given name: durable in new/, skipped when new/NAME or cur/NAME
 * exists, bad names refused, a crash's leftover in tmp/ replaced. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../submit/submit.h"
#include "unit.h"

static char dir[256];

static void setup(void)
{
	unit_tmpdir(dir, sizeof dir, "inbox");
}

static void teardown(void)
{
	unit_rmdir(dir);
}

TestSuite(submit_inbox, .init = setup, .fini = teardown);

static void expect_file(const char *sub, const char *name, const char *want)
{
	char path[512];
	struct vl_buf b;

	snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
	cr_assert_eq(vl_read_file(path, &b), 0, "%s", path);
	cr_assert_eq(b.len, strlen(want));
	cr_assert(!memcmp(b.p, want, b.len));
	vl_buf_free(&b);
}

Test(submit_inbox, store_once)
{
	char err[256] = "", path[512];
	struct sub_inbox *b = sub_inbox_open(dir, err, sizeof err);
	const char *head = "X-Volley-Source: imap; mailbox=m; uidvalidity=7; uid=3\r\n";
	const char *msg = "Subject: r\r\n\r\nbody\r\n";

	cr_assert_not_null(b, "%s", err);
	/* a leftover of a crashed write of the same name */
	snprintf(path, sizeof path, "%s/tmp/imap-m-7-3", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("half", f);
	fclose(f);
	cr_assert_eq(sub_inbox_store(b, "imap-m-7-3", head, strlen(head), msg, strlen(msg), err,
				     sizeof err), 0, "%s", err);
	expect_file("new", "imap-m-7-3", "X-Volley-Source: imap; mailbox=m; uidvalidity=7; uid=3\r\n"
		    "Subject: r\r\n\r\nbody\r\n");
	cr_assert_neq(access(path, F_OK), 0, "tmp/ keeps the file");
	cr_assert_eq(sub_inbox_store(b, "imap-m-7-3", "x", 1, "y", 1, err, sizeof err), 1);
	expect_file("new", "imap-m-7-3", "X-Volley-Source: imap; mailbox=m; uidvalidity=7; uid=3\r\n"
		    "Subject: r\r\n\r\nbody\r\n");
	/* the processor moved it to cur/: still the same report */
	char from[512], to[512];
	snprintf(from, sizeof from, "%s/new/imap-m-7-3", dir);
	snprintf(to, sizeof to, "%s/cur", dir);
	mkdir(to, 0750);
	snprintf(to, sizeof to, "%s/cur/imap-m-7-3", dir);
	cr_assert_eq(rename(from, to), 0);
	cr_assert_eq(sub_inbox_store(b, "imap-m-7-3", "x", 1, "y", 1, err, sizeof err), 1);
	cr_assert_neq(access(from, F_OK), 0);
	uint64_t stored, failed;
	sub_inbox_counts(b, &stored, &failed);
	cr_assert_eq(stored, 1);
	cr_assert_eq(failed, 0);
	const char *bad[] = { "", "../x", "a/b", ".hidden" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(sub_inbox_store(b, bad[i], "x", 1, "y", 1, err, sizeof err), -1, "%s",
			     bad[i]);
	sub_inbox_close(b);
}
