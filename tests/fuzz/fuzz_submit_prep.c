/*
 * libFuzzer target: msg_submit_prepare (message/submit.c) on whatever an
 * SMTP client could submit. Nothing may crash or leak; what it accepts
 * must hold: the stored header ends in its empty line, keeps no Bcc or
 * X-Volley-Campaign/-Priority/-Expires field and no line over 998
 * octets, the body is the input's tail, and the From domain is a lower
 * case name. And it is idempotent: the stored message prepared again
 * comes out the same, with nothing added.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../message/message_int.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static bool starts(const char *l, size_t n, const char *name)
{
	size_t k = strlen(name);
	return n > k && strncasecmp(l, name, k) == 0 && l[k] == ':';
}

static void check_head(const struct msg_submit *s)
{
	const char *p = s->head.p, *end = p + s->head.len;

	CHECK(s->head.len >= 4 && memcmp(end - 4, "\r\n\r\n", 4) == 0);
	while (p < end) {
		const char *nl = memmem(p, (size_t)(end - p), "\r\n", 2);
		CHECK(nl);
		size_t n = (size_t)(nl - p);
		CHECK(n <= MSG_LINE_MAX);
		CHECK(!starts(p, n, "bcc") && !starts(p, n, "x-volley-campaign") &&
		      !starts(p, n, "x-volley-priority") && !starts(p, n, "x-volley-expires"));
		p = nl + 2;
	}
	CHECK(s->from_domain[0] && s->nfrom >= 1);
	for (const char *d = s->from_domain; *d; d++)
		CHECK(!(*d >= 'A' && *d <= 'Z') && *d != '@' && *d != '[');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct msg_submit_opts o = { "fuzz", "fuzz.example", 1700000000 };
	struct msg_submit s, t;
	struct msg_err e;

	msg_submit_init(&s);
	msg_submit_init(&t);
	if (msg_submit_prepare((const char *)data, size, &o, &s, &e) == 0) {
		check_head(&s);
		CHECK(s.body + s.body_len == (const char *)data + size);
		size_t n = s.head.len + s.body_len;
		char *m = malloc(n ? n : 1);
		memcpy(m, s.head.p, s.head.len);
		memcpy(m + s.head.len, s.body, s.body_len);
		CHECK(msg_submit_prepare(m, n, &o, &t, &e) == 0);
		CHECK(t.head.len == s.head.len && memcmp(t.head.p, s.head.p, s.head.len) == 0);
		CHECK(!t.added_date && !t.added_msgid && t.body_len == s.body_len);
		CHECK(strcmp(t.from_domain, s.from_domain) == 0 && t.nfrom == s.nfrom);
		CHECK(t.smtputf8 == s.smtputf8 && t.eightbit == s.eightbit);
		free(m);
	} else {
		CHECK(e.code[0] && e.field[0] && e.message[0] && s.head.len == 0);
	}
	msg_submit_free(&s);
	msg_submit_free(&t);
	return 0;
}
