/*
 * libFuzzer target: what volley's unsubscribe endpoint reads from anyone
 * on the Internet. The input's first octet picks the part:
 *   0: msg_unsub_verify on the rest as a token, against two secrets; an
 *      accepted token must be one that msg_unsub_token makes again
 *      octet for octet (one encoding per token, the MAC the secret's);
 *   1: uns_form_one_click on the rest as a form body, urlencoded and as
 *      multipart with a boundary taken from its first line;
 *   2: uns_path_token on the rest as a request path.
 * Nothing may crash, read out of bounds or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../message/message.h"
#include "../../unsub/unsub.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static const unsigned char K1[] = "fuzz-secret-0123456789abcdef0123456789";
static const unsigned char K2[] = "fuzz-previous-0123456789abcdef012345678";

static void token(const char *p, size_t n)
{
	struct msg_unsub_keys keys = { .key = K1, .keylen = sizeof K1 - 1, .prev = K2,
				       .prevlen = sizeof K2 - 1 };
	struct msg_unsub_tok t;
	char again[MSG_UNSUB_TOKEN_MAX + 1], again2[MSG_UNSUB_TOKEN_MAX + 1];

	if (msg_unsub_verify(p, n, &keys, &t) != MSG_UNSUB_OK)
		return;
	int a = msg_unsub_token(K1, sizeof K1 - 1, t.job, t.index, t.email, again, sizeof again);
	int b = msg_unsub_token(K2, sizeof K2 - 1, t.job, t.index, t.email, again2, sizeof again2);
	CHECK((a == (int)n && !memcmp(again, p, n)) || (b == (int)n && !memcmp(again2, p, n)));
}

static void form(const char *p, size_t n)
{
	char ct[120];
	const char *nl = memchr(p, '\n', n < 70 ? n : 70);
	size_t bl = nl ? (size_t)(nl - p) : 0;

	uns_form_one_click(NULL, p, n);
	uns_form_one_click("application/x-www-form-urlencoded", p, n);
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=%.*s", (int)bl, p);
	uns_form_one_click(ct, p, n);
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%.*s\"", (int)bl, p);
	uns_form_one_click(ct, p, n);
}

static void path(const char *p, size_t n)
{
	char *s = malloc(n + 1);
	const char *tok;
	size_t len;

	memcpy(s, p, n);
	s[n] = '\0';
	if (uns_path_token("/unsubscribe", s, &tok, &len) == 0)
		CHECK(tok > s && tok + len == s + strlen(s) && len > 0);
	uns_path_token("", s, &tok, &len);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	switch (data[0] % 3) {
	case 0:
		token(p, n);
		break;
	case 1:
		form(p, n);
		break;
	default:
		path(p, n);
	}
	return 0;
}
