/* config/: feedback.mailboxes (imap/): TLS required, names, actions,
 * password or password_file, and the printed form hides the password. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"
#include "../../imap/imap.h"
#include "unit.h"
#include "unit_cfg.h"

static int load(struct cfg *c, const char *mbox, char *err, size_t errlen)
{
	char text[2048];
	snprintf(text, sizeof text, "feedback = { mailboxes = ( %s ); };", mbox);
	return unit_cfg_load(c, text, err, errlen);
}

Test(imap_config, defaults_and_print)
{
	struct cfg c;
	char err[512] = "";

	cr_assert_eq(load(&c, "{ url = \"imaps://imap.example.com/INBOX\"; user = \"fbl\"; "
			  "password = \"pw-secret\"; }, { url = \"imap://h/FBL\"; user = \"u\"; "
			  "password = \"x\"; name = \"second\"; poll = \"5s\"; "
			  "processed = \"move:Done Reports\"; other = \"move:NotReports\"; }",
			  err, sizeof err), 0, "%s", err);
	const struct cfg_feedback *f = &c.feedback;
	cr_assert_not(f->on, "mailboxes alone do not listen");
	cr_assert_eq(f->nmailboxes, 2);
	cr_assert_str_eq(f->mailboxes[0].name, "mbox1");
	cr_assert_eq(f->mailboxes[0].poll_ms, 60000);
	cr_assert_str_eq(f->mailboxes[0].processed, "flag");
	cr_assert_str_eq(f->mailboxes[0].other, "leave");
	cr_assert_str_eq(f->mailboxes[1].name, "second");
	cr_assert_eq(f->mailboxes[1].poll_ms, 5000);
	cr_assert_eq(imap_check_config(&c, err, sizeof err), 0, "%s", err);
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "mailboxes = ( { name = \"mbox1\""), "%s", b.p);
	cr_assert_null(strstr(b.p, "pw-secret"), "the password is printed: %s", b.p);
	vl_buf_free(&b);
	cfg_free(&c);
}

Test(imap_config, password_file)
{
	struct cfg c;
	char err[512] = "", path[] = "/tmp/volley-pw-XXXXXX", text[512];
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "from-file\n", 10), 10);
	close(fd);
	snprintf(text, sizeof text, "{ url = \"imaps://h/INBOX\"; user = \"u\"; "
		 "password_file = \"%s\"; }", path);
	cr_assert_eq(load(&c, text, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.feedback.mailboxes[0].password, "from-file");
	cfg_free(&c);
	unlink(path);
	cr_assert_eq(load(&c, text, err, sizeof err), -1);
	cr_assert(strstr(err, "feedback.mailboxes[0].password_file"), "%s", err);
}

Test(imap_config, refused)
{
	static const struct { const char *mbox, *key; } t[] = {
		{ "{ url = \"imap+plain://h/\"; user = \"u\"; password = \"p\"; }",
		  "feedback.mailboxes[0].url: TLS is required" },
		{ "{ url = \"http://h/\"; user = \"u\"; password = \"p\"; }",
		  "feedback.mailboxes[0].url" },
		{ "{ url = \"imaps://h/\"; password = \"p\"; }", "feedback.mailboxes[0].user" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; }", "feedback.mailboxes[0].password" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; password_file = \"/x\"; }",
		  "feedback.mailboxes[0].password" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; name = \"a b\"; }",
		  "feedback.mailboxes[0].name" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; name = \"x\"; }, "
		  "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; name = \"x\"; }",
		  "feedback.mailboxes[1]: a second mailbox" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; poll = \"500ms\"; }",
		  "feedback.mailboxes[0].poll" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; processed = \"leave\"; }",
		  "feedback.mailboxes[0].processed" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; other = \"delete\"; }",
		  "feedback.mailboxes[0].other" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; other = \"move:a\\\"b\"; }",
		  "feedback.mailboxes[0].other" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; ca_file = \"/nonexistent\"; }",
		  "feedback.mailboxes[0].ca_file" },
		{ "{ url = \"imaps://h/\"; user = \"u\"; password = \"p\"; colour = \"red\"; }",
		  "feedback.mailboxes[0].colour: unknown key" },
	};
	for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
		struct cfg c;
		char err[512] = "";
		cr_assert_eq(load(&c, t[i].mbox, err, sizeof err), -1, "accepted %s", t[i].mbox);
		cr_assert(strstr(err, t[i].key), "%s: error \"%s\" does not name %s", t[i].mbox,
			  err, t[i].key);
	}
	struct cfg c;
	char err[512] = "";
	cr_assert_eq(load(&c, "{ url = \"imaps://u@h/\"; user = \"u\"; password = \"p\"; }", err,
			  sizeof err), 0, "%s", err);
	cr_assert_eq(imap_check_config(&c, err, sizeof err), -1);
	cr_assert(strstr(err, "feedback.mailboxes[0].url"), "%s", err);
	cfg_free(&c);
}
