/* unsub/form.c: what a one-click POST says, where its token is. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../unsub/unsub.h"

static bool ok(const char *ct, const char *body)
{
	return uns_form_one_click(ct, body, strlen(body));
}

Test(uns_form, urlencoded)
{
	const char *ct = "application/x-www-form-urlencoded";
	cr_assert(ok(ct, "List-Unsubscribe=One-Click"));
	cr_assert(ok(ct, "List-Unsubscribe=One-Click\r\n"));
	cr_assert(ok(NULL, "List-Unsubscribe=One-Click"));
	cr_assert(ok(ct, "a=b&List-Unsubscribe=One-Click&c"));
	cr_assert(ok(ct, "List%2DUnsubscribe=One%2dClick"));
	cr_assert_not(ok(ct, ""));
	cr_assert_not(ok(ct, "List-Unsubscribe=One-Clickx"));
	cr_assert_not(ok(ct, "List-Unsubscribe=One-Clic"));
	cr_assert_not(ok(ct, "List-Unsubscribe="));
	cr_assert_not(ok(ct, "List-Unsubscribe"));
	cr_assert_not(ok(ct, "list-unsubscribe=one-click"));
	cr_assert_not(ok(ct, "List-Unsubscribe=One-Click%"));
	cr_assert_not(ok(ct, "List-Unsubscribe=One-Click%4"));
	cr_assert_not(ok(ct, "List-Unsubscribe=One%zzClick"));
	char big[UNS_BODY_MAX + 40];
	memset(big, 'a', sizeof big);
	memcpy(big, "List-Unsubscribe=One-Click&", 27);
	cr_assert_not(uns_form_one_click(ct, big, sizeof big));
}

Test(uns_form, multipart)
{
	const char *ct = "multipart/form-data; boundary=XyZ";
	cr_assert(ok(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
		      "\r\nOne-Click\r\n--XyZ--\r\n"));
	cr_assert(ok("multipart/form-data; boundary=\"XyZ\"",
		     "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n"
		     "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
		     "\r\nOne-Click\r\n--XyZ--\r\n"));
	cr_assert_not(ok(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
			  "\r\nOne-Clack\r\n--XyZ--\r\n"));
	cr_assert_not(ok(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"Other\"\r\n"
			  "\r\nOne-Click\r\n--XyZ--\r\n"));
	cr_assert_not(ok(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
			  "\r\nOne-Click"));   /* never closed */
	cr_assert_not(ok("multipart/form-data", "--XyZ\r\n\r\nOne-Click\r\n--XyZ--\r\n"));
	cr_assert_not(ok(ct, "List-Unsubscribe=One-Click"));
	cr_assert(ok(ct, "--XyZ\r\nContent-Disposition: form-data; name=List-Unsubscribe\r\n"
		      "\r\nOne-Click\r\n--XyZ--\r\n"));
	cr_assert_not(ok(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; "
			  "filename=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n"));
	cr_assert_not(ok(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe-X\"\r\n"
			  "\r\nOne-Click\r\n--XyZ--\r\n"));
}

Test(uns_form, paths)
{
	char base[64];
	const char *tok;
	size_t n;

	cr_assert_eq(uns_base_path("https://news.example.com/unsubscribe", base, sizeof base), 0);
	cr_assert_str_eq(base, "/unsubscribe");
	cr_assert_eq(uns_base_path("https://news.example.com", base, sizeof base), 0);
	cr_assert_str_eq(base, "");
	cr_assert_eq(uns_base_path("http://x/y", base, sizeof base), -1);
	cr_assert_eq(uns_path_token("/unsubscribe", "/unsubscribe/AbC-_9", &tok, &n), 0);
	cr_assert_eq(n, 9 - 3);
	cr_assert_eq(strncmp(tok, "AbC-_9", n), 0);
	cr_assert_eq(uns_path_token("", "/AbC", &tok, &n), 0);
	cr_assert_eq(uns_path_token("/unsubscribe", "/unsubscribe/", &tok, &n), -1);
	cr_assert_eq(uns_path_token("/unsubscribe", "/unsubscribe", &tok, &n), -1);
	cr_assert_eq(uns_path_token("/unsubscribe", "/unsubscribex/Ab", &tok, &n), -1);
	cr_assert_eq(uns_path_token("/unsubscribe", "/unsubscribe/Ab/c", &tok, &n), -1);
	cr_assert_eq(uns_path_token("/unsubscribe", "/unsubscribe/A+b", &tok, &n), -1);
	cr_assert_eq(uns_path_token("/unsubscribe", "/other/Ab", &tok, &n), -1);
}
