/* api/: the fast NDJSON recipient parser agrees with jansson, and hands
 * every line it is unsure of back to jansson. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../api/api_int.h"

static struct vl_buf scratch;
static struct sched_rcpt r;

static bool fast(const char *s)
{
	return api_rcpt_fast(s, strlen(s), &scratch, &r);
}

Test(api_rcpt, plain_line)
{
	cr_assert(fast("{\"email\":\"a@b.example\",\"name\":\"Ann\","
		       "\"substitutions\":{\"name\":\"Ann\",\"n\":-12,\"t\":true,\"f\":false}}"));
	cr_assert_str_eq(r.email, "a@b.example");
	cr_assert_eq(r.email_len, 11);
	cr_assert_str_eq(r.name, "Ann");
	cr_assert_eq(r.nsubs, 4);
	cr_assert_str_eq(r.keys[1], "n");
	cr_assert_str_eq(r.vals[1], "-12");
	cr_assert_str_eq(r.vals[2], "true");
	cr_assert_str_eq(r.vals[3], "false");
}

Test(api_rcpt, whitespace_and_order)
{
	cr_assert(fast("  { \"substitutions\" : { } ,\r\n \"email\" : \"x@y.example\" }  \r"));
	cr_assert_str_eq(r.email, "x@y.example");
	cr_assert_null(r.name);
	cr_assert_eq(r.nsubs, 0);
}

Test(api_rcpt, escapes_unescaped)
{
	cr_assert(fast("{\"email\":\"a\\u00e9@b.example\",\"name\":\"q\\\"\\\\\\/\\t\","
		       "\"substitutions\":{\"s\":\"\\ud83d\\ude00\"}}"));
	cr_assert_str_eq(r.email, "a\xc3\xa9@b.example");
	cr_assert_str_eq(r.name, "q\"\\/\t");
	cr_assert_str_eq(r.vals[0], "\xf0\x9f\x98\x80");
}

Test(api_rcpt, hands_back_what_jansson_must_judge)
{
	const char *lines[] = {
		"", "{}", "[]", "{\"email\":\"a@b\"", "{\"email\":\"a@b\"} x",
		"{\"name\":\"x\"}",                                  /* no email */
		"{\"email\":\"a@b\",\"email\":\"c@d\"}",             /* duplicate key */
		"{\"email\":\"a@b\",\"colour\":\"red\"}",            /* unknown field */
		"{\"email\":5}", "{\"email\":\"a@b\",\"name\":null}",
		"{\"email\":\"a@b\",\"substitutions\":{\"k\":null}}",
		"{\"email\":\"a@b\",\"substitutions\":{\"k\":[1]}}",
		"{\"email\":\"a@b\",\"substitutions\":{\"k\":1,\"k\":2}}",
		"{\"email\":\"a\\u0000@b\"}",                        /* NUL */
		"{\"email\":\"\\ud800@b\"}",                         /* lone surrogate */
		"{\"email\":\"\\x41@b\"}", "{\"email\":\"a\tb@c\"}",  /* bad escape, raw tab */
		"{\"email\":\"\xc3\x28@b\"}",                        /* invalid UTF-8 */
		"{\"email\":\"\xed\xa0\x80@b\"}",                    /* encoded surrogate */
		"{\"email\":\"a@b\",\"substitutions\":{\"n\":01}}",  /* leading zero */
		"{\"email\":\"a@b\",\"substitutions\":{\"n\":1.}}",
		"{\"email\":\"a@b\",\"substitutions\":{\"n\":tru}}",
		"{\"email\":\"a@b\",}",
		"{\"email\":\"a@b\",\"substitutions\":{\"n\":1.5e999}}",       /* overflow */
		"{\"email\":\"a@b\",\"substitutions\":{\"n\":1.5}}",  /* reals: jansson's text */
		"{\"email\":\"a@b\",\"substitutions\":{\"n\":99999999999999999999}}",
	};
	for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
		cr_assert(!fast(lines[i]), "fast path took: %s", lines[i]);
}

Test(api_rcpt, utf8_validator)
{
	cr_assert(api_utf8_valid("plain", 5));
	cr_assert(api_utf8_valid("\xe4\xbd\xa0\xf0\x9f\x98\x80", 7));
	cr_assert(!api_utf8_valid("\xc0\xaf", 2));           /* overlong */
	cr_assert(!api_utf8_valid("\xe0\x80\xaf", 3));       /* overlong */
	cr_assert(!api_utf8_valid("\xf4\x90\x80\x80", 4));   /* > U+10FFFF */
	cr_assert(!api_utf8_valid("\xe4\xbd", 2));           /* truncated */
}
