/* message/token.c and the built-in List-Unsubscribe: tokens round trip,
 * and every damaged, forged or foreign one is refused; rendering adds
 * volley's URL only when configured, to bulk jobs without their own. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "../../message/message_int.h"

static const unsigned char K1[] = "k1-0123456789abcdef0123456789abcdef";
static const unsigned char K2[] = "k2-0123456789abcdef0123456789abcdef";
#define KL (sizeof K1 - 1)

static int make(const unsigned char *k, const char *job, uint32_t idx, const char *email,
		char *out)
{
	return msg_unsub_token(k, KL, job, idx, email, out, MSG_UNSUB_TOKEN_MAX + 1);
}

static enum msg_unsub_verdict check(const char *tok, const unsigned char *k,
				    const unsigned char *prev, struct msg_unsub_tok *t)
{
	struct msg_unsub_keys keys = { .key = k, .keylen = KL, .prev = prev,
				       .prevlen = prev ? KL : 0 };
	return msg_unsub_verify(tok, strlen(tok), &keys, t);
}

Test(msg_unsub, round_trip)
{
	char tok[MSG_UNSUB_TOKEN_MAX + 1];
	struct msg_unsub_tok t;
	const uint32_t idx[] = { 0, 1, 127, 128, 16383, 16384, 4000000000u, UINT32_MAX };

	for (size_t i = 0; i < sizeof idx / sizeof *idx; i++) {
		int n = make(K1, "0194c1d2e3f4-5a6b7c8d", idx[i], "ann@example.net", tok);
		cr_assert_gt(n, 0);
		cr_assert_eq((size_t)n, strlen(tok));
		cr_assert_eq((size_t)n, msg_unsub_token_len(21, idx[i], 15));
		for (int k = 0; k < n; k++)
			cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					 "0123456789-_", tok[k]), "%s", tok);
		cr_assert_eq(check(tok, K1, NULL, &t), MSG_UNSUB_OK);
		cr_assert_str_eq(t.job, "0194c1d2e3f4-5a6b7c8d");
		cr_assert_eq(t.index, idx[i]);
		cr_assert_str_eq(t.email, "ann@example.net");
	}
	/* the longest address and job id still fit */
	char email[255], job[65];
	memset(email, 'a', 64);
	email[64] = '@';
	for (int k = 65; k < 254; k += 2) {
		email[k] = 'b';
		email[k + 1] = '.';
	}
	email[253] = 'c';
	email[254] = '\0';
	memset(job, 'J', 64);
	job[64] = '\0';
	cr_assert_gt(make(K1, job, UINT32_MAX, email, tok), 0);
	cr_assert_leq(strlen(tok), MSG_UNSUB_TOKEN_MAX);
	cr_assert_eq(check(tok, K1, NULL, &t), MSG_UNSUB_OK);
	cr_assert_str_eq(t.email, email);
	/* UTF-8 addresses too */
	cr_assert_gt(make(K1, "J", 3, "jörg@exämple.net", tok), 0);
	cr_assert_eq(check(tok, K1, NULL, &t), MSG_UNSUB_OK);
	cr_assert_str_eq(t.email, "jörg@exämple.net");
}

Test(msg_unsub, bad_arguments)
{
	char tok[MSG_UNSUB_TOKEN_MAX + 1];

	cr_assert_eq(msg_unsub_token(K1, 31, "J", 1, "a@b.c", tok, sizeof tok), -1);
	cr_assert_eq(make(K1, "", 1, "a@b.c", tok), -1);
	cr_assert_eq(make(K1, "bad id", 1, "a@b.c", tok), -1);
	cr_assert_eq(msg_unsub_token(K1, KL, "J", 1, "a@b.c", tok, 100), -1);
}

/* One character changed anywhere: never OK. */
Test(msg_unsub, forged_and_damaged)
{
	char tok[MSG_UNSUB_TOKEN_MAX + 1], bad[MSG_UNSUB_TOKEN_MAX + 8];
	struct msg_unsub_tok t;
	int n = make(K1, "job-1", 42, "ann@example.net", tok);

	for (int i = 0; i < n; i++) {
		strcpy(bad, tok);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		enum msg_unsub_verdict v = check(bad, K1, NULL, &t);
		cr_assert_neq(v, MSG_UNSUB_OK, "position %d", i);
	}
	/* the MAC's last character: well formed, forged */
	strcpy(bad, tok);
	bad[n - 2] = bad[n - 2] == 'A' ? 'B' : 'A';
	cr_assert_eq(check(bad, K1, NULL, &t), MSG_UNSUB_FORGED);
	/* truncated: every shorter prefix */
	for (int i = 0; i < n; i++) {
		strcpy(bad, tok);
		bad[i] = '\0';
		cr_assert_neq(check(bad, K1, NULL, &t), MSG_UNSUB_OK, "length %d", i);
	}
	/* bad base64: other alphabets, padding, a character too many */
	strcpy(bad, tok);
	bad[3] = '+';
	cr_assert_eq(check(bad, K1, NULL, &t), MSG_UNSUB_MALFORMED);
	snprintf(bad, sizeof bad, "%s=", tok);
	cr_assert_eq(check(bad, K1, NULL, &t), MSG_UNSUB_MALFORMED);
	cr_assert_eq(check("", K1, NULL, &t), MSG_UNSUB_MALFORMED);
	cr_assert_eq(check("AAAA", K1, NULL, &t), MSG_UNSUB_MALFORMED);
	char longer[1000];
	memset(longer, 'A', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	cr_assert_eq(check(longer, K1, NULL, &t), MSG_UNSUB_MALFORMED);
}

Test(msg_unsub, other_secret_and_rotation)
{
	char tok[MSG_UNSUB_TOKEN_MAX + 1];
	struct msg_unsub_tok t;

	make(K2, "job-1", 7, "bob@example.org", tok);
	cr_assert_eq(check(tok, K1, NULL, &t), MSG_UNSUB_FORGED);
	cr_assert_eq(check(tok, K1, K2, &t), MSG_UNSUB_OK);      /* previous secret */
	cr_assert_eq(t.index, 7);
	cr_assert_eq(check(tok, K2, K1, &t), MSG_UNSUB_OK);
	/* a key longer than SHA-256's block is hashed (RFC 2104): both sides agree */
	unsigned char big[200];
	memset(big, 'x', sizeof big);
	struct msg_unsub_keys keys = { .key = big, .keylen = sizeof big };
	cr_assert_gt(msg_unsub_token(big, sizeof big, "J", 1, "a@b.example", tok, sizeof tok), 0);
	cr_assert_eq(msg_unsub_verify(tok, strlen(tok), &keys, &t), MSG_UNSUB_OK);
}

/* A token names its job, index and address: none can be swapped. */
Test(msg_unsub, bound_to_job_index_address)
{
	char a[MSG_UNSUB_TOKEN_MAX + 1], b[MSG_UNSUB_TOKEN_MAX + 1];
	struct msg_unsub_tok t;

	make(K1, "jobA", 1, "ann@example.net", a);
	make(K1, "jobB", 1, "ann@example.net", b);
	cr_assert_str_neq(a, b);
	make(K1, "jobA", 2, "ann@example.net", b);
	cr_assert_str_neq(a, b);
	make(K1, "jobA", 1, "bob@example.net", b);
	cr_assert_str_neq(a, b);
	/* splice: the head of one token with the MAC of another */
	make(K1, "jobA", 1, "ann@example.net", a);
	make(K1, "jobA", 2, "ann@example.net", b);
	size_t n = strlen(a);
	char s[MSG_UNSUB_TOKEN_MAX + 1];
	memcpy(s, b, n - 22);
	memcpy(s + n - 22, a + n - 22, 23);
	cr_assert_neq(check(s, K1, NULL, &t), MSG_UNSUB_OK);
}

Test(msg_unsub, base_url)
{
	cr_assert_null(msg_unsub_base_ok("https://news.example.com/unsubscribe"));
	cr_assert_null(msg_unsub_base_ok("https://news.example.com"));
	cr_assert_not_null(msg_unsub_base_ok("http://news.example.com/u"));
	cr_assert_not_null(msg_unsub_base_ok("https://news.example.com/u/"));
	cr_assert_not_null(msg_unsub_base_ok("https://news.example.com/u?x=1"));
	cr_assert_not_null(msg_unsub_base_ok("https://news.example.com/u#f"));
	cr_assert_not_null(msg_unsub_base_ok("https:///u"));
	cr_assert_not_null(msg_unsub_base_ok("https://a b/u"));
}

/* ---- rendering ---- */

static const unsigned char SECRET[] = "0123456789abcdef0123456789abcdef";
static const struct msg_unsub_conf UC = { .base_url = "https://news.example.com/unsubscribe",
					  .key = SECRET, .keylen = 32 };

static char *render(const char *content, const char *unsub, bool conf, bool transactional,
		    struct msg_err *e)
{
	json_error_t je;
	json_t *c = json_loads(content, JSON_DECODE_ANY, &je);
	json_t *u = unsub ? json_loads(unsub, 0, &je) : NULL;
	struct msg_job_opts o = { .job_id = "J1", .hostname = "mta.example.com",
				  .unsub = conf ? &UC : NULL, .transactional = transactional };
	cr_assert_not_null(c, "%s", je.text);
	struct msg_job *j = msg_job_compile(c, NULL, u, &o, e);
	json_decref(c);
	json_decref(u);
	if (!j)
		return NULL;
	struct msg_rcpt r = { .email = "ann@example.net", .index = 5 };
	struct msg_out out;
	msg_out_init(&out);
	char *s = NULL;
	if (msg_render(j, &r, 1795400000, &out, e) == 0) {
		s = calloc(1, out.size + 1);
		for (size_t i = 0, off = 0; i < out.niov; off += out.iov[i].iov_len, i++)
			memcpy(s + off, out.iov[i].iov_base, out.iov[i].iov_len);
	}
	msg_out_free(&out);
	msg_job_free(j);
	return s;
}

#define C "{\"from\": {\"email\": \"news@example.com\"}, \"subject\": \"Hi\", "
#define TEXT C "\"text_body\": \"Hello\\n\"}"

/* The token in "List-Unsubscribe: <...base/TOKEN>", checked. */
static void has_builtin(char *m, const char *before)
{
	for (char *p = strstr(m, "\r\n "); p; p = strstr(p, "\r\n "))   /* unfolded */
		memmove(p, p + 2, strlen(p + 2) + 1);
	const char *h = strstr(m, "List-Unsubscribe: ");
	cr_assert_not_null(h, "%s", m);
	cr_assert_not_null(strstr(m, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
	char want[200];
	snprintf(want, sizeof want, "List-Unsubscribe: %s<https://news.example.com/unsubscribe/",
		 before);
	cr_assert(!strncmp(h, want, strlen(want)), "%s", h);
	const char *tok = h + strlen(want), *end = strchr(tok, '>');
	struct msg_unsub_keys k = { .key = SECRET, .keylen = 32 };
	struct msg_unsub_tok t;
	cr_assert_eq(msg_unsub_verify(tok, (size_t)(end - tok), &k, &t), MSG_UNSUB_OK);
	cr_assert_str_eq(t.job, "J1");
	cr_assert_eq(t.index, 5);
	cr_assert_str_eq(t.email, "ann@example.net");
}

Test(msg_unsub, rendered_headers)
{
	struct msg_err e;
	char *m;

	/* not configured: nothing */
	m = render(TEXT, NULL, false, false, &e);
	cr_assert_null(strstr(m, "List-Unsubscribe"));
	free(m);
	/* configured, bulk: volley's URL */
	m = render(TEXT, NULL, true, false, &e);
	has_builtin(m, "");
	free(m);
	/* with the job's mailto */
	m = render(TEXT, "{\"mailto\": \"u@example.com\"}", true, false, &e);
	has_builtin(m, "<mailto:u@example.com>, ");
	free(m);
	/* transactional: none, unless asked */
	m = render(TEXT, NULL, true, true, &e);
	cr_assert_null(strstr(m, "List-Unsubscribe"));
	free(m);
	m = render(TEXT, "{\"builtin\": true}", true, true, &e);
	has_builtin(m, "");
	free(m);
	/* opted out */
	m = render(TEXT, "{\"builtin\": false}", true, false, &e);
	cr_assert_null(strstr(m, "List-Unsubscribe"));
	free(m);
	m = render(TEXT, "{\"builtin\": false, \"mailto\": \"u@example.com\"}", true, false, &e);
	cr_assert_not_null(strstr(m, "List-Unsubscribe: <mailto:u@example.com>\r\n"));
	cr_assert_null(strstr(m, "List-Unsubscribe-Post"));
	free(m);
	/* the job's own URL wins */
	m = render(TEXT, "{\"url\": \"https://example.com/u/{{ email }}\"}", true, false, &e);
	cr_assert_not_null(strstr(m, "List-Unsubscribe: <https://example.com/u/ann%40example.net>"));
	cr_assert_null(strstr(m, "news.example.com"));
	free(m);
	/* its own header in content.headers or a content string: left alone */
	m = render(C "\"text_body\": \"x\", \"headers\": {\"List-Unsubscribe\": \"<mailto:o@e.com>\"}}",
		   NULL, true, false, &e);
	cr_assert_not_null(strstr(m, "List-Unsubscribe: <mailto:o@e.com>"));
	cr_assert_null(strstr(m, "news.example.com"));
	free(m);
	m = render("\"From: a@example.com\\nList-Unsubscribe: <mailto:o@e.com>\\n\\nx\\n\"", NULL,
		   true, false, &e);
	cr_assert_null(strstr(m, "news.example.com"), "%s", m);
	free(m);
	m = render("\"From: a@example.com\\nSubject: s\\n\\nx\\n\"", NULL, true, false, &e);
	has_builtin(m, "");
	free(m);
}

/* A check alone (intake) makes no token, but sees the same lengths. */
Test(msg_unsub, check_rcpt)
{
	json_t *c = json_loads("\"From: a@example.com\\n\\n{{ unsubscribe_url }}\\n\"",
			       JSON_DECODE_ANY, NULL);
	struct msg_job_opts o = { .job_id = "J1", .hostname = "mta.example.com", .unsub = &UC };
	struct msg_err e;
	struct msg_job *j = msg_job_compile(c, NULL, NULL, &o, &e);
	cr_assert_not_null(j, "%s", e.message);
	struct msg_rcpt r = { .email = "ann@example.net", .index = 5 };
	cr_assert_eq(msg_job_check_rcpt(j, &r, &e), 0, "%s", e.message);
	r.index = (size_t)UINT32_MAX + 1;
	cr_assert_eq(msg_job_check_rcpt(j, &r, &e), -1);
	msg_job_free(j);
	json_decref(c);
}

Test(msg_unsub, refused)
{
	struct msg_err e;

	cr_assert_null(render(TEXT, "{\"builtin\": true}", false, false, &e));
	cr_assert_str_eq(e.field, "unsubscribe.builtin");
	cr_assert_null(render(TEXT, "{\"builtin\": true, \"url\": \"https://e.com/u\"}", true,
			      false, &e));
	cr_assert_str_eq(e.field, "unsubscribe.builtin");
	cr_assert_null(render(TEXT, "{\"builtin\": 1}", true, false, &e));
	cr_assert_null(render(TEXT, "{}", true, false, &e));
	cr_assert_str_eq(e.field, "unsubscribe");
}

Test(msg_unsub, substitution)
{
	struct msg_err e;
	char *m = render(C "\"html_body\": \"<a href=\\\"{{ unsubscribe_url }}\\\">u</a>\"}", NULL,
			 true, true, &e);
	cr_assert_not_null(m, "%s", e.message);
	cr_assert_not_null(strstr(m, "https://news.example.com/unsubscribe/"));
	free(m);
	/* not configured, no value: a clear error */
	m = render(C "\"text_body\": \"{{ unsubscribe_url }}\"}", NULL, false, false, &e);
	cr_assert_null(m);
	cr_assert_str_eq(e.code, "missing_substitution");
	cr_assert_str_eq(e.field, "substitutions.unsubscribe_url");
	cr_assert_not_null(strstr(e.message, "unsubscribe.base_url"), "%s", e.message);
}

/* The same URL in the header and the body. */
Test(msg_unsub, same_url)
{
	struct msg_err e;
	char *m = render(C "\"text_body\": \"U={{ unsubscribe_url }}=\"}", NULL, true, false, &e);
	cr_assert_not_null(m, "%s", e.message);
	const char *h = strstr(m, "<https://"), *hend = strchr(h, '>');
	char url[800];
	snprintf(url, sizeof url, "%.*s", (int)(hend - h - 1), h + 1);
	/* quoted-printable body: '=' is =3D, soft breaks undone here */
	for (char *p = strstr(m, "=\r\n"); p; p = strstr(p, "=\r\n"))
		memmove(p, p + 3, strlen(p + 3) + 1);
	char want[900];
	snprintf(want, sizeof want, "U=3D%s", url);
	cr_assert_not_null(strstr(m, want), "%s\n%s", want, m);
	free(m);
}
