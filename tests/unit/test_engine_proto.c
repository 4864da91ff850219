/* engine: the reply parser and dot-stuffing. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../engine/engine_int.h"

/* Feed s in chunks of n; collect every complete reply into out[]. */
static int parse_all(const char *s, size_t chunk, struct eng_reply *out, int max)
{
	struct eng_reply_parser p;
	int got = 0;
	size_t len = strlen(s), i = 0;

	eng_reply_parser_init(&p);
	while (i < len) {
		size_t n = len - i < chunk ? len - i : chunk, off = 0;
		while (off < n) {
			size_t used;
			int rc = eng_reply_feed(&p, s + i + off, n - off, &used, &out[got]);
			if (rc < 0) {
				eng_reply_parser_free(&p);
				return -1;
			}
			off += used;
			if (rc == 1 && ++got == max) {
				eng_reply_parser_free(&p);
				return got;
			}
		}
		i += n;
	}
	eng_reply_parser_free(&p);
	return got;
}

/* The parser holds memory only while a reply is cut between inputs: a
 * session waiting for its next reply holds none. */
Test(eng_reply, memory_only_while_cut)
{
	struct eng_reply_parser p;
	struct eng_reply r;
	size_t used;
#define FEED(s) eng_reply_feed(&p, (s), strlen(s), &used, &r)

	eng_reply_parser_init(&p);
	cr_assert_eq(FEED("250 ok\r\n"), 1);
	cr_assert(!p.line && !p.cur, "a whole reply leaves nothing behind");
	/* a line cut in two */
	cr_assert_eq(FEED("250 2.1.0 sen"), 0);
	cr_assert_eq(used, 13);
	cr_assert(p.line && !p.cur);
	cr_assert_eq(FEED("der ok\r\n"), 1);
	cr_assert_str_eq(r.text, "sender ok");
	cr_assert_str_eq(r.enhanced, "2.1.0");
	cr_assert(!p.line && !p.cur);
	/* a reply cut between its lines, then within one */
	cr_assert_eq(FEED("250-mx\r\n250-PIPE"), 0);
	cr_assert(p.line && p.cur);
	cr_assert_eq(FEED("LINING\r\n"), 0);
	cr_assert(!p.line && p.cur);
	cr_assert_eq(FEED("250 SIZE 10\r\n354 go\r\n"), 1);
	cr_assert_eq(used, 13);
	cr_assert_eq(r.lines, 3);
	cr_assert_str_eq(r.text, "mx\nPIPELINING\nSIZE 10");
	cr_assert(!p.line && !p.cur);
	cr_assert_eq(FEED("354 go\r\n"), 1);
	cr_assert_eq(r.code, 354);
	cr_assert_eq(r.lines, 1, "the next reply starts clean");
	cr_assert_str_eq(r.text, "go");
	/* a cut line over the limit is refused, and nothing leaks (ASan) */
	static char big[ENG_REPLY_LINE_MAX];
	memset(big, 'x', sizeof big);
	memcpy(big, "250 ", 4);
	cr_assert_eq(eng_reply_feed(&p, big, sizeof big, &used, &r), 0);
	cr_assert_eq(FEED("xx\r\n"), -1);
	eng_reply_parser_free(&p);
	cr_assert(!p.line && !p.cur);
#undef FEED
}

Test(eng_reply, single_and_multiline)
{
	struct eng_reply r[4];
	const char *in = "220 mx.test ESMTP\r\n250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
			 "550 5.1.1 <a@b>: no such user\r\n";
	for (size_t chunk = 1; chunk <= strlen(in); chunk += 7) {
		cr_assert_eq(parse_all(in, chunk, r, 4), 3, "chunk %zu", chunk);
		cr_assert_eq(r[0].code, 220);
		cr_assert_str_eq(r[0].text, "mx.test ESMTP");
		cr_assert_eq(r[1].code, 250);
		cr_assert_eq(r[1].lines, 3);
		cr_assert_str_eq(r[1].text, "mx.test\nPIPELINING\nSIZE 100");
		cr_assert_eq(r[2].code, 550);
		cr_assert_str_eq(r[2].enhanced, "5.1.1");
		cr_assert_str_eq(r[2].text, "<a@b>: no such user");
	}
}

Test(eng_reply, enhanced_codes)
{
	struct eng_reply r[6];
	cr_assert_eq(parse_all("451-4.7.0 slow\r\n451 4.7.0 down\r\n250 2.0.0\r\n"
			       "550 4.1.1 wrong class\r\n250 2.1.5.9 x\r\n421\r\n", 5, r, 6), 5);
	cr_assert_str_eq(r[0].enhanced, "4.7.0");
	cr_assert_str_eq(r[0].text, "slow\ndown", "repeated codes are stripped");
	cr_assert_str_eq(r[1].enhanced, "2.0.0");
	cr_assert_str_eq(r[1].text, "");
	cr_assert_str_eq(r[2].enhanced, "", "class must match the reply code");
	cr_assert_str_eq(r[3].enhanced, "");
	cr_assert_eq(r[4].code, 421);
	cr_assert_str_eq(r[4].text, "");
}

Test(eng_reply, bare_lf_tolerated)
{
	struct eng_reply r[2];
	cr_assert_eq(parse_all("220 hi\n250 ok\n", 3, r, 2), 2);
	cr_assert_str_eq(r[1].text, "ok");
}

Test(eng_reply, malformed_is_an_error)
{
	struct eng_reply r[2];
	const char *bad[] = {
		"hello\r\n", "2500 x\r\n", "25 x\r\n", "650 x\r\n", "150 x\r\n",
		"250-a\r\n251 b\r\n", "250x\r\n", "\r\n", "\x01\x02\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(parse_all(bad[i], 100, r, 2), -1, "%zu", i);
}

Test(eng_reply, bounded)
{
	struct eng_reply r[1];
	static char line[ENG_REPLY_LINE_MAX + 16];
	memset(line, 'x', sizeof line);
	memcpy(line, "250 ", 4);
	memcpy(line + ENG_REPLY_LINE_MAX, "\r\n", 3); /* exactly the limit: ok */
	cr_assert_eq(parse_all(line, 512, r, 1), 1);
	cr_assert_eq(r[0].text_len, ENG_REPLY_TEXT_MAX - 1, "text cut, not overflowed");
	line[ENG_REPLY_LINE_MAX] = 'x';
	memcpy(line + ENG_REPLY_LINE_MAX + 1, "\r\n", 3); /* one over */
	cr_assert_eq(parse_all(line, 512, r, 1), -1);
	/* Endless continuation lines are refused too. */
	static char many[(ENG_REPLY_MAX_LINES + 2) * 8 + 1];
	for (int i = 0; i < ENG_REPLY_MAX_LINES + 2; i++)
		memcpy(many + i * 8, "250-abc\n", 8);
	cr_assert_eq(parse_all(many, 64, r, 1), -1);
}

static void stuffed(const char *const *parts, const char *want)
{
	struct iovec v[8];
	size_t n = 0;
	for (; parts[n]; n++)
		v[n] = (struct iovec){(void *)parts[n], strlen(parts[n])};
	struct eng_iov out = {0};
	eng_dotstuff(v, n, &out);
	char buf[512];
	size_t len = 0;
	for (size_t i = 0; i < out.n; i++) {
		memcpy(buf + len, out.v[i].iov_base, out.v[i].iov_len);
		len += out.v[i].iov_len;
	}
	buf[len] = '\0';
	cr_assert_eq(len, out.bytes);
	cr_assert_str_eq(buf, want);
	/* No copy: every piece points into the input or at a constant. */
	eng_iov_free(&out);
}

Test(eng_dotstuff, stuffing_and_end)
{
	stuffed((const char *[]){"a\r\n.b\r\n..c\r\n", NULL}, "a\r\n..b\r\n...c\r\n.\r\n");
	stuffed((const char *[]){".x\r\n", NULL}, "..x\r\n.\r\n");
	stuffed((const char *[]){"a\r\n", ".", "\r\n", NULL}, "a\r\n..\r\n.\r\n");
	stuffed((const char *[]){"a\r", "\n", ".b", NULL}, "a\r\n..b\r\n.\r\n");
	stuffed((const char *[]){"no final crlf", NULL}, "no final crlf\r\n.\r\n");
	stuffed((const char *[]){"bare\n.lf\r\n", NULL}, "bare\n..lf\r\n.\r\n");
	stuffed((const char *[]){"", NULL}, ".\r\n");
	stuffed((const char *[]){"x.y\r\n", "", "z.\r\n", NULL}, "x.y\r\nz.\r\n.\r\n");
}
