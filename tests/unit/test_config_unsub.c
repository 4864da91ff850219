/* config: unsubscribe = { listen; base_url; secret | secret_file; ... }. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "unit_cfg.h"

#define S32 "0123456789abcdef0123456789abcdef"

static void refused(const char *text, const char *what)
{
	struct cfg c = { 0 };
	char err[512];
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), -1, "%s", text);
	cr_assert_not_null(strstr(err, what), "%s: %s", text, err);
	cfg_free(&c);
}

Test(config_unsub, good)
{
	struct cfg c = { 0 };
	char err[512];
	int rc = unit_cfg_load(&c, "unsubscribe = { listen = [ \"127.0.0.1:8025\" ]; "
			       "base_url = \"https://news.example.com/unsubscribe\"; secret = \""
			       S32 "\"; previous_secret = \"" S32 "xx\"; };", err, sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert(c.unsubscribe.on);
	cr_assert_eq(c.unsubscribe.nlisten, 1);
	cr_assert_eq(c.unsubscribe.listen[0].port, 8025);
	cr_assert_eq(c.unsubscribe.secret_len, 32);
	cr_assert_eq(memcmp(c.unsubscribe.secret, S32, 32), 0);
	cr_assert_eq(c.unsubscribe.previous_len, 34);
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_not_null(strstr(b.p, "base_url = \"https://news.example.com/unsubscribe\""));
	cr_assert_null(strstr(b.p, S32), "the secret is never printed");
	vl_buf_free(&b);
	cfg_free(&c);
	/* off by default */
	cr_assert_eq(unit_cfg_load(&c, "", err, sizeof err), 0);
	cr_assert_not(c.unsubscribe.on);
	cfg_free(&c);
}

Test(config_unsub, secret_file)
{
	char path[] = "/tmp/volley-secret-XXXXXX", text[400];
	int fd = mkstemp(path);
	cr_assert_eq(write(fd, S32 "\n", 33), 33);
	close(fd);
	struct cfg c = { 0 };
	char err[512];
	snprintf(text, sizeof text, "unsubscribe = { base_url = \"https://e.example/u\"; "
		 "secret_file = \"%s\"; };", path);
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.unsubscribe.secret_len, 32, "the final line break is dropped");
	/* --check-config's output names the file and loads the same */
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_null(strstr(b.p, S32));
	const char *from = strstr(b.p, "unsubscribe = {");
	cr_assert_not_null(from);
	struct cfg again = { 0 };
	cr_assert_eq(unit_cfg_load(&again, from, err, sizeof err), 0, "%s\n%s", err, from);
	cr_assert_eq(again.unsubscribe.secret_len, 32);
	cr_assert_eq(memcmp(again.unsubscribe.secret, S32, 32), 0);
	cfg_free(&again);
	vl_buf_free(&b);
	cfg_free(&c);
	snprintf(text, sizeof text, "unsubscribe = { base_url = \"https://e.example/u\"; "
		 "secret_file = \"%s\"; secret = \"" S32 "\"; };", path);
	refused(text, "not both");
	unlink(path);
	refused("unsubscribe = { base_url = \"https://e.example/u\"; secret_file = "
		"\"/nonexistent/s\"; };", "unsubscribe.secret_file");
}

Test(config_unsub, refused)
{
	refused("unsubscribe = { base_url = \"http://e.example/u\"; secret = \"" S32 "\"; };",
		"https");
	refused("unsubscribe = { base_url = \"https://e.example/u/\"; secret = \"" S32 "\"; };",
		"unsubscribe.base_url");
	refused("unsubscribe = { base_url = \"https://e.example/u?a=b\"; secret = \"" S32 "\"; };",
		"unsubscribe.base_url");
	refused("unsubscribe = { base_url = \"https://e.example/u\"; secret = \"short\"; };",
		"32 to 1024 octets");
	refused("unsubscribe = { base_url = \"https://e.example/u\"; };", "unsubscribe.secret");
	refused("unsubscribe = { listen = [ \"127.0.0.1:8025\" ]; secret = \"" S32 "\"; };",
		"unsubscribe.base_url");
	refused("unsubscribe = { listen = [ \"localhost:8025\" ]; base_url = \"https://e.example/u\"; "
		"secret = \"" S32 "\"; };", "unsubscribe.listen");
	refused("unsubscribe = { base_url = \"https://e.example/u\"; secret = \"" S32 "\"; "
		"cert = \"/etc/hostname\"; };", "go together");
	refused("unsubscribe = { base_url = \"https://e.example/u\"; secret = \"" S32 "\"; bogus = 1; };",
		"unknown key");
}
