/* common/: parsing, glob, buffers, JSON strings. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../common/common.h"

Test(common, durations)
{
	uint64_t ms;
	cr_assert_eq(vl_parse_duration_ms("50ms", &ms), 0);
	cr_assert_eq(ms, 50);
	cr_assert_eq(vl_parse_duration_ms("1.5s", &ms), 0);
	cr_assert_eq(ms, 1500);
	cr_assert_eq(vl_parse_duration_ms("2", &ms), 0);
	cr_assert_eq(ms, 2000);
	cr_assert_eq(vl_parse_duration_ms("5m", &ms), 0);
	cr_assert_eq(ms, 300000);
	cr_assert_eq(vl_parse_duration_ms("3d", &ms), 0);
	cr_assert_eq(ms, 259200000);
	const char *bad[] = {"", "ms", "-1s", "5x", "1e400s", "nan", "inf", "5 s", NULL};
	for (int i = 0; bad[i]; i++)
		cr_assert_eq(vl_parse_duration_ms(bad[i], &ms), -1, "%s", bad[i]);
}

Test(common, percent_and_integers)
{
	double p;
	uint64_t v;
	cr_assert_eq(vl_parse_percent("5%", &p), 0);
	cr_assert_float_eq(p, 5.0, 1e-9);
	cr_assert_eq(vl_parse_percent("0.5", &p), 0);
	cr_assert_float_eq(p, 0.5, 1e-9);
	cr_assert_eq(vl_parse_percent("101%", &p), -1);
	cr_assert_eq(vl_parse_percent("5%%", &p), -1);
	cr_assert_eq(vl_parse_u64("18446744073709551615", &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(vl_parse_u64("18446744073709551616", &v), -1);
	cr_assert_eq(vl_parse_u64("+1", &v), -1);
	cr_assert_eq(vl_parse_u64("", &v), -1);
}

Test(common, hostport)
{
	char h[64];
	uint16_t port;
	cr_assert_eq(vl_parse_hostport("127.0.0.2:2525", h, sizeof h, &port), 0);
	cr_assert_str_eq(h, "127.0.0.2");
	cr_assert_eq(port, 2525);
	cr_assert_eq(vl_parse_hostport("[::1]:25", h, sizeof h, &port), 0);
	cr_assert_str_eq(h, "::1");
	cr_assert_eq(port, 25);
	cr_assert_eq(vl_parse_hostport("127.0.0.1", h, sizeof h, &port), -1);
	cr_assert_eq(vl_parse_hostport("127.0.0.1:0", h, sizeof h, &port), -1);
	cr_assert_eq(vl_parse_hostport("127.0.0.1:65536", h, sizeof h, &port), -1);
	cr_assert_eq(vl_parse_hostport(":25", h, sizeof h, &port), -1);
	cr_assert_eq(vl_parse_hostport("[::1]25", h, sizeof h, &port), -1);
}

Test(common, glob)
{
	cr_assert(vl_glob_match("*@bad.test", "user@BAD.test"));
	cr_assert(vl_glob_match("*", ""));
	cr_assert(vl_glob_match("a?c", "abc"));
	cr_assert(vl_glob_match("*a*b*c*", "xxaxxbxxcxx"));
	cr_assert_not(vl_glob_match("*@bad.test", "user@bad.test.org"));
	cr_assert_not(vl_glob_match("a?c", "ac"));
	/* A pathological pattern finishes quickly (no exponential backtracking). */
	char s[4001];
	memset(s, 'a', 4000);
	s[4000] = '\0';
	cr_assert_not(vl_glob_match("*a*a*a*a*a*a*a*a*a*b", s));
}

Test(common, buffers)
{
	struct vl_buf b;
	vl_buf_init(&b);
	for (int i = 0; i < 1000; i++)
		vl_buf_printf(&b, "%d,", i);
	cr_assert_eq(memcmp(b.p, "0,1,2,", 6), 0);
	size_t len = b.len;
	vl_buf_consume(&b, 2);
	cr_assert_eq(b.len, len - 2);
	cr_assert_eq(memcmp(b.p, "1,2,", 4), 0);
	/* Long formatted output goes beyond the small stack buffer. */
	vl_buf_reset(&b);
	vl_buf_printf(&b, "%0500d", 7);
	cr_assert_eq(b.len, 500);
	cr_assert_eq(b.p[499], '7');
	vl_buf_free(&b);
}

Test(common, json_string)
{
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_json_string(&b, "a\"b\\c\n\x01 \xc3\xa9 \xff \xed\xa0\x80");
	vl_buf_append(&b, "", 1);
	cr_assert_str_eq(b.p, "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd\\ufffd\"");
	vl_buf_reset(&b);
	vl_buf_json_string(&b, NULL);
	vl_buf_append(&b, "", 1);
	cr_assert_str_eq(b.p, "null");
	vl_buf_free(&b);
}

Test(common, rand_chance)
{
	uint64_t s = 42, hits = 0;
	for (int i = 0; i < 100000; i++)
		hits += vl_chance(&s, 5.0);
	cr_assert(hits > 4500 && hits < 5500, "hits=%lu", (unsigned long)hits);
	s = 1;
	for (int i = 0; i < 1000; i++)
		cr_assert_not(vl_chance(&s, 0));
	for (int i = 0; i < 1000; i++)
		cr_assert(vl_chance(&s, 100));
}
