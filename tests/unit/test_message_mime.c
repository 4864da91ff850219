/* message/: body encodings -- UTF-8 checks, base64, quoted-printable,
 * line endings, HTML and URL escaping. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../message/message_int.h"

static char *str(const struct vl_buf *b)
{
	static char s[70000];
	snprintf(s, sizeof s, "%.*s", (int)b->len, b->p ? b->p : "");
	return s;
}

Test(msg_mime, utf8)
{
	cr_assert(msg_utf8_valid("", 0));
	cr_assert(msg_utf8_valid("plain", 5));
	cr_assert(msg_utf8_valid("\xc3\xbc \xe2\x9c\x93 \xf0\x9f\x98\x80", 11));
	cr_assert(msg_utf8_valid("\xf4\x8f\xbf\xbf", 4), "U+10FFFF");
	const char *bad[] = {"\x80", "\xc3", "\xc0\x80", "\xc1\xbf", "\xe0\x80\xaf",
			     "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff",
			     "\xe2\x9c", "a\xc3z", NULL};
	for (int i = 0; bad[i]; i++)
		cr_assert_not(msg_utf8_valid(bad[i], strlen(bad[i])), "case %d", i);
}

Test(msg_mime, base64_vectors)
{
	/* RFC 4648 section 10 */
	const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		struct vl_buf b, d;
		vl_buf_init(&b);
		vl_buf_init(&d);
		msg_b64_encode(in[i], strlen(in[i]), &b);
		cr_assert_str_eq(str(&b), out[i]);
		cr_assert_eq(msg_b64_decode(b.p ? b.p : "", b.len, &d), 0);
		cr_assert_eq(d.len, strlen(in[i]));
		cr_assert(d.len == 0 || !memcmp(d.p, in[i], d.len));
		vl_buf_free(&b);
		vl_buf_free(&d);
	}
}

Test(msg_mime, base64_lines_and_round_trip)
{
	unsigned char raw[5000];
	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (unsigned char)(i * 7919 >> 3);
	for (size_t n = 0; n < sizeof raw; n += 97) {
		struct vl_buf b, d;
		vl_buf_init(&b);
		vl_buf_init(&d);
		msg_b64_encode(raw, n, &b);
		/* lines of 76 but the last, CRLF between, none at the end */
		size_t line = 0;
		for (size_t i = 0; i < b.len; i++) {
			if (b.p[i] == '\r') {
				cr_assert_eq(b.p[i + 1], '\n');
				cr_assert_eq(line, 76);
				line = 0;
				i++;
			} else {
				line++;
			}
		}
		cr_assert(line <= 76);
		cr_assert(b.len < 2 || b.p[b.len - 1] != '\n');
		cr_assert_eq(msg_b64_decode(b.p ? b.p : "", b.len, &d), 0);
		cr_assert_eq(d.len, n);
		cr_assert(n == 0 || !memcmp(d.p, raw, n));
		vl_buf_free(&b);
		vl_buf_free(&d);
	}
}

Test(msg_mime, base64_decode_strict)
{
	const char *ok[] = {"Zm9v\r\nYmFy", " Zm9v YmE= ", "Zg==\n", NULL};
	const char *bad[] = {"Zg=", "Zg", "Z", "Zm9v!", "Zg==Zg==", "Zg=a", "=Zg=",
			     "Zm9vYmFy=", "Zm9\x00v", "Zg== x", NULL};
	for (int i = 0; ok[i]; i++) {
		struct vl_buf d;
		vl_buf_init(&d);
		cr_assert_eq(msg_b64_decode(ok[i], strlen(ok[i]), &d), 0, "%s", ok[i]);
		vl_buf_free(&d);
	}
	for (int i = 0; bad[i]; i++) {
		struct vl_buf d;
		vl_buf_init(&d);
		vl_buf_appends(&d, "keep");
		size_t n = i == 8 ? 6 : strlen(bad[i]);
		cr_assert_eq(msg_b64_decode(bad[i], n, &d), -1, "%s", bad[i]);
		cr_assert_eq(d.len, 4, "nothing half-decoded");
		vl_buf_free(&d);
	}
}

/* A reference decoder: RFC 2045 6.7, CRLF line breaks. */
static size_t qp_decode(const char *s, size_t n, char *out)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=' && i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 2;
		} else if (s[i] == '=') {
			cr_assert(i + 2 < n + 0 || i + 2 == n, "truncated escape");
			char hex[3] = {s[i + 1], s[i + 2], 0};
			cr_assert(strchr("0123456789ABCDEF", hex[0]) && strchr("0123456789ABCDEF", hex[1]),
				  "bad escape =%s", hex);
			out[len++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else {
			out[len++] = s[i];
		}
	}
	return len;
}

static void qp_lines_ok(const struct vl_buf *b)
{
	size_t start = 0;
	for (size_t i = 0; i + 1 < b->len; i++) {
		if (b->p[i] != '\r')
			continue;
		cr_assert_eq(b->p[i + 1], '\n', "bare CR");
		cr_assert(i - start <= 76, "line of %zu", i - start);
		if (i > start)
			cr_assert(b->p[i - 1] != ' ' && b->p[i - 1] != '\t', "trailing white space");
		start = i + 2;
	}
	cr_assert(b->len - start <= 76);
	cr_assert_null(memmem(b->p ? b->p : "", b->len, "=_", 2));
	for (size_t i = 0; i < b->len; i++)
		cr_assert((unsigned char)b->p[i] < 127 && (b->p[i] >= 32 || b->p[i] == '\r' ||
							  b->p[i] == '\n' || b->p[i] == '\t'));
}

Test(msg_mime, qp)
{
	struct vl_buf b;
	size_t col = 0;

	vl_buf_init(&b);
	msg_qp_encode("Hi = there \r\nx\t\ny ", 18, &col, &b);
	cr_assert_str_eq(str(&b), "Hi =3D there=20\r\nx=09\r\ny=20");
	b.len = col = 0;
	msg_qp_encode("caf\xc3\xa9 =_", 8, &col, &b);
	cr_assert_str_eq(str(&b), "caf=C3=A9 =3D_");
	b.len = col = 0;
	msg_qp_encode("a\rb\nc\r\n", 7, &col, &b);
	cr_assert_str_eq(str(&b), "a\r\nb\r\nc\r\n", "every line break is CRLF");
	cr_assert_eq(col, 0);
	vl_buf_free(&b);
}

Test(msg_mime, qp_round_trip_and_lines)
{
	char src[3000], dec[3000];
	unsigned seed = 42;

	for (int round = 0; round < 200; round++) {
		size_t n = (size_t)(rand_r(&seed) % sizeof src);
		for (size_t i = 0; i < n; i++) {
			int r = rand_r(&seed) % 10;
			src[i] = r < 5 ? 'a' + (char)(rand_r(&seed) % 26) : r < 7 ? ' ' :
				 r == 7 ? '=' : r == 8 ? (char)(rand_r(&seed) % 256) : '\t';
			if (src[i] == '\r' || src[i] == '\n')
				src[i] = 'x';
		}
		/* encoded in chunks, as rendering does (values between statics) */
		struct vl_buf b;
		vl_buf_init(&b);
		size_t col = 0;
		for (size_t off = 0; off < n;) {
			size_t k = (size_t)(rand_r(&seed) % 200) + 1;
			k = k > n - off ? n - off : k;
			msg_qp_encode(src + off, k, &col, &b);
			off += k;
		}
		qp_lines_ok(&b);
		cr_assert_eq(qp_decode(b.p ? b.p : "", b.len, dec), n);
		cr_assert(n == 0 || !memcmp(dec, src, n), "round %d", round);
		vl_buf_free(&b);
	}
}

Test(msg_mime, crlf)
{
	struct vl_buf b;

	vl_buf_init(&b);
	msg_crlf("a\nb\r\nc\rd\n\re", 12, &b);
	cr_assert_str_eq(str(&b), "a\r\nb\r\nc\r\nd\r\n\r\ne");
	vl_buf_free(&b);
}

Test(msg_mime, escapes)
{
	struct vl_buf b;

	vl_buf_init(&b);
	msg_html_escape("<a href=\"x\">'&'</a>", 19, &b);
	cr_assert_str_eq(str(&b), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
	b.len = 0;
	msg_url_escape("a b/c?d=\xc3\xa9&x~-._", 16, &b);
	cr_assert_str_eq(str(&b), "a%20b%2Fc%3Fd%3D%C3%A9%26x~-._");
	vl_buf_free(&b);
}
