/* message/: header fields -- folding, RFC 2047 encoded words, mailboxes,
 * RFC 2231 parameters, dates. Values are checked by decoding them back
 * with a small reference decoder. */
#include <time.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../message/message_int.h"

static int b64v(char c)
{
	const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = strchr(a, c);
	return p && c ? (int)(p - a) : -1;
}

/* Decode one encoded word's text into out; its length. */
static size_t ew_decode(char enc, const char *t, size_t n, char *out)
{
	size_t len = 0;
	if (enc == 'B') {
		unsigned v = 0, bits = 0;
		for (size_t i = 0; i < n && t[i] != '='; i++) {
			v = v << 6 | (unsigned)b64v(t[i]);
			bits += 6;
			if (bits >= 8) {
				out[len++] = (char)(v >> (bits - 8));
				bits -= 8;
			}
		}
		return len;
	}
	for (size_t i = 0; i < n; i++) {
		if (t[i] == '_') {
			out[len++] = ' ';
		} else if (t[i] == '=') {
			char hex[3] = {t[i + 1], t[i + 2], 0};
			out[len++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else {
			out[len++] = t[i];
		}
	}
	return len;
}

/* An unstructured field's value as a reader sees it: unfolded, encoded
 * words decoded, white space between two of them dropped (RFC 2047 6.2). */
static char *decode_text(const char *field)
{
	static char out[20000];
	char unf[20000];
	size_t n = 0, len = 0;
	const char *v = strchr(field, ':') + 1;

	for (; *v; v++)
		if (*v != '\r' && *v != '\n')
			unf[n++] = *v;
	unf[n] = '\0';
	size_t i = 0;
	while (i < n && unf[i] == ' ')
		i++;
	bool last_ew = false;
	while (i < n) {
		size_t ws = i;
		while (i < n && (unf[i] == ' ' || unf[i] == '\t'))
			i++;
		size_t w = i;
		while (i < n && unf[i] != ' ' && unf[i] != '\t')
			i++;
		bool ew = i - w > 12 && !strncmp(unf + w, "=?utf-8?", 8) && !strncmp(unf + i - 2, "?=", 2);
		if (!(ew && last_ew)) {
			memcpy(out + len, unf + ws, w - ws);
			len += w - ws;
		}
		if (ew) {
			cr_assert(i - w <= 75, "encoded word of %zu", i - w);
			len += ew_decode(unf[w + 8], unf + w + 10, i - w - 12, out + len);
		} else {
			memcpy(out + len, unf + w, i - w);
			len += i - w;
		}
		last_ew = ew;
	}
	out[len] = '\0';
	return out;
}

static void lines_ok(const struct vl_buf *b, size_t want)
{
	size_t start = 0;
	cr_assert(b->len >= 2 && !memcmp(b->p + b->len - 2, "\r\n", 2));
	for (size_t i = 0; i + 1 < b->len; i++) {
		if (b->p[i] != '\r')
			continue;
		cr_assert_eq(b->p[i + 1], '\n');
		cr_assert(i - start <= want, "line of %zu > %zu: %.*s", i - start, want,
			  (int)(i - start), b->p + start);
		if (i + 2 < b->len)
			cr_assert(b->p[i + 2] == ' ' || b->p[i + 2] == '\t', "fold without WSP");
		start = i + 2;
	}
	for (size_t i = 0; i < b->len; i++)
		cr_assert((unsigned char)b->p[i] < 128, "8-bit in a header");
}

static char *text_field(const char *name, const char *v, size_t want)
{
	static char s[20000];
	struct vl_buf b;
	bool raw8 = false;

	vl_buf_init(&b);
	msg_hdr_write(&b, name, v, strlen(v), MSG_HDR_TEXT, MSG_HDR_EQ, &raw8);
	lines_ok(&b, want);
	cr_assert_not(raw8);
	snprintf(s, sizeof s, "%.*s", (int)b.len, b.p);
	vl_buf_free(&b);
	return s;
}

Test(msg_header, plain_and_folded)
{
	cr_assert_str_eq(text_field("Subject", "Hello world", 78), "Subject: Hello world\r\n");
	cr_assert_str_eq(text_field("Subject", "  padded  ", 78), "Subject: padded\r\n");
	cr_assert_str_eq(text_field("Subject", "", 78), "Subject:\r\n");
	char v[400] = "";
	for (int i = 0; i < 40; i++)
		strcat(v, i ? " word" : "word");
	const char *f = text_field("Subject", v, 78);
	cr_assert_str_eq(decode_text(f), v);
	cr_assert_null(strstr(f, "=?"), "ASCII words are not encoded");
	cr_assert_str_eq(decode_text(text_field("X", "a  b\tc", 78)), "a  b\tc");
}

Test(msg_header, encoded_words)
{
	const char *cases[] = {
		"Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln", "\xe2\x9c\x93 done",
		"=?utf-8?q?looks_encoded?=", "ctl\x01x", "a ü b ü c",
		"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 mixed with ASCII words",
		"under_score and ?question= marks \xc3\xbc", NULL};
	for (int i = 0; cases[i]; i++) {
		const char *f = text_field("Subject", cases[i], 78);
		cr_assert_str_eq(decode_text(f), cases[i], "%s", f);
		cr_assert(strstr(f, "=?utf-8?"), "%s", f);
	}
	/* only what a reader would decode is encoded */
	cr_assert_str_eq(text_field("X-Url", "https://x.example/?a=?b&c=?d", 78),
			 "X-Url: https://x.example/?a=?b&c=?d\r\n");
	const char *enc = text_field("X", "x=?utf-8?q?a?=", 78);
	cr_assert(!strncmp(enc, "X: =?utf-8?", 11), "%s", enc);
	cr_assert_str_eq(decode_text(enc), "x=?utf-8?q?a?=");
	/* plain ASCII words around stay plain */
	const char *f = text_field("Subject", "Hello J\xc3\xb6rg, how are you", 78);
	cr_assert(!strncmp(f, "Subject: Hello =?utf-8?", 23), "%s", f);
	cr_assert(strstr(f, "?= how are you\r\n"), "%s", f);
}

Test(msg_header, long_values)
{
	char v[6000];
	/* long non-ASCII: many encoded words, whole characters each */
	v[0] = '\0';
	for (int i = 0; i < 300; i++)
		strcat(v, i % 7 ? "\xc3\xbc" : "\xe2\x9c\x93 x ");
	cr_assert_str_eq(decode_text(text_field("Subject", v, 78)), v);
	/* one ASCII word too long for a line: kept while it fits 998 */
	memset(v, 'w', 500);
	v[500] = '\0';
	const char *f = text_field("Subject", v, 998);
	cr_assert_null(strstr(f, "=?"));
	cr_assert_str_eq(decode_text(f), v);
	/* ... encoded when it would not */
	memset(v, 'w', 2000);
	v[2000] = '\0';
	f = text_field("Subject", v, 78);
	cr_assert_str_eq(decode_text(f), v);
	/* a long run of spaces goes into encoded words too */
	memset(v, ' ', 1500);
	v[0] = 'a';
	v[1499] = 'b';
	v[1500] = '\0';
	cr_assert_str_eq(decode_text(text_field("Subject", v, 78)), v);
	/* a long field name leaves little room: still within limits */
	char name[77];
	memset(name, 'N', 76);
	name[76] = '\0';
	text_field(name, "\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc", 998);
}

static char *addr_field(const char *v, bool *raw8)
{
	static char s[4000];
	struct vl_buf b;

	vl_buf_init(&b);
	*raw8 = false;
	msg_hdr_write(&b, "To", v, strlen(v), MSG_HDR_ADDR, MSG_HDR_EQ, raw8);
	snprintf(s, sizeof s, "%.*s", (int)b.len, b.p);
	vl_buf_free(&b);
	return s;
}

Test(msg_header, addresses)
{
	bool raw8;

	cr_assert_str_eq(addr_field("Ann <ann@example.net>", &raw8),
			 "To: Ann <ann@example.net>\r\n");
	cr_assert_str_eq(addr_field("\"J\xc3\xb6rg, M\" <j@example.net>, b@example.net", &raw8),
			 "To: =?utf-8?B?SsO2cmcsIE0=?= <j@example.net>, b@example.net\r\n");
	cr_assert_not(raw8);
	cr_assert_str_eq(addr_field("J\xc3\xb6rg <j\xc3\xb6rg@example.net>", &raw8),
			 "To: =?utf-8?B?SsO2cmc=?= <j\xc3\xb6rg@example.net>\r\n");
	cr_assert(raw8, "a UTF-8 address stays raw");
	cr_assert_str_eq(addr_field("\"a \\\"q\\\" b\" <x@y>", &raw8), "To: \"a \\\"q\\\" b\" <x@y>\r\n");
	const char *f;
	/* nothing makes a line over 998, not even a giant <address> */
	char giant[3000] = "<";
	memset(giant + 1, 'g', 2500);
	f = addr_field(giant, &raw8);
	struct vl_buf g = {(char *)f, strlen(f), 0};
	lines_ok(&g, 998);
	/* a long list folds after commas */
	char v[2000] = "";
	for (int i = 0; i < 30; i++)
		strcat(v, i ? ", Someone Else <someone@example.net>" : "A <a@example.net>");
	f = addr_field(v, &raw8);
	struct vl_buf b = {(char *)f, strlen(f), 0};
	lines_ok(&b, 78);
}

Test(msg_header, mailbox)
{
	struct vl_buf b;
	vl_buf_init(&b);
	const char *names[] = {NULL, "", "Ann", "Ann Lee", "Doe, John", "A. Smith", " x",
			       "a  b", "q\"uo\\te", NULL};
	const char *want[] = {"a@b", "a@b", "Ann <a@b>", "Ann Lee <a@b>", "\"Doe, John\" <a@b>",
			      "\"A. Smith\" <a@b>", "\" x\" <a@b>", "\"a  b\" <a@b>",
			      "\"q\\\"uo\\\\te\" <a@b>"};
	for (int i = 0; i < 9; i++) {
		b.len = 0;
		msg_hdr_mailbox(&b, names[i], "a@b");
		vl_buf_append(&b, "", 1);
		cr_assert_str_eq(b.p, want[i]);
	}
	vl_buf_free(&b);
}

Test(msg_header, params)
{
	struct vl_buf b;
	vl_buf_init(&b);
	msg_hdr_param(&b, "filename", "a \"b\".pdf", 9);
	vl_buf_append(&b, "", 1);
	cr_assert_str_eq(b.p, ";\r\n filename=\"a \\\"b\\\".pdf\"");
	b.len = 0;
	msg_hdr_param(&b, "filename", "h\xc3\xa4llo.txt", 10);
	vl_buf_append(&b, "", 1);
	cr_assert_str_eq(b.p, ";\r\n filename*=utf-8''h%C3%A4llo.txt");
	/* long: continued, pieces of whole characters, lines < 78 */
	char v[300] = "";
	for (int i = 0; i < 40; i++)
		strcat(v, "\xc3\xa4x");
	b.len = 0;
	msg_hdr_param(&b, "filename", v, strlen(v));
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, ";\r\n filename*0*=utf-8''%C3%A4x"), "%s", b.p);
	cr_assert(strstr(b.p, ";\r\n filename*1*="), "%s", b.p);
	for (char *l = strstr(b.p, "*="); l; l = strstr(l, "*=")) {
		l += 2;
		if (!strncmp(l, "utf-8''", 7))
			l += 7;
		cr_assert(!(l[0] == '%' && strchr("89AB", l[1])),
			  "a piece starts inside a character: %s", l);
	}
	char *s = b.p;
	for (char *nl; (nl = strstr(s, "\r\n")); s = nl + 2)
		cr_assert(nl - s < 78);
	vl_buf_free(&b);
}

/* The hand-made date against strftime over gmtime_r: leap days, centuries,
 * times before 1970. */
Test(msg_header, date_matches_gmtime)
{
	struct vl_buf b;
	vl_buf_init(&b);
	for (long long t = -2208988800LL; t < 4102444800LL; t += 86400LL * 37 + 3671) {
		char want[64];
		struct tm tm;
		time_t tt = (time_t)t;
		gmtime_r(&tt, &tm);
		strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S +0000", &tm);
		b.len = 0;
		msg_hdr_date(&b, tt);
		vl_buf_append(&b, "", 1);
		cr_assert_str_eq(b.p, want, "t=%lld", t);
	}
	vl_buf_free(&b);
}

Test(msg_header, date_and_names)
{
	struct vl_buf b;
	vl_buf_init(&b);
	msg_hdr_date(&b, 0);
	vl_buf_append(&b, "", 1);
	cr_assert_str_eq(b.p, "Thu, 01 Jan 1970 00:00:00 +0000");
	b.len = 0;
	msg_hdr_date(&b, 1795000000);
	vl_buf_append(&b, "", 1);
	cr_assert_str_eq(b.p, "Wed, 18 Nov 2026 11:06:40 +0000");
	vl_buf_free(&b);
	cr_assert(msg_hdr_name_ok("X-Campaign", 10));
	cr_assert_not(msg_hdr_name_ok("X Campaign", 10));
	cr_assert_not(msg_hdr_name_ok("X:C", 3));
	cr_assert_not(msg_hdr_name_ok("", 0));
	cr_assert_not(msg_hdr_name_ok("X-\xc3\xbc", 4));
	cr_assert(msg_hdr_is_addr("reply-to"));
	cr_assert_not(msg_hdr_is_addr("Subject"));
}
