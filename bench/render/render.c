/*
 * volley-render-bench: renders per second, for N recipients, of
 *  1. a compiled template: a 4 KB HTML body with five substitutions,
 *     HTML-escaped;
 *  2. a whole composed message (msg_render): From, To, Subject with a
 *     value, Date, Message-ID, List-Unsubscribe with a per-recipient URL,
 *     multipart/alternative of a text and that 4 KB HTML part, both
 *     quoted-printable with their values;
 *  3. the same message with volley's own one-click unsubscribe instead
 *     of the job's URL template: List-Unsubscribe <base_url/token>, an
 *     HMAC-SHA256 token per recipient (message/token.c).
 *   volley-render-bench [N]
 */
#include "../../message/message.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rcpt {
	char name[32], token[32];
};

static const char *value(void *arg, size_t slot, const char *name, size_t *len)
{
	const struct rcpt *r = arg;
	const char *v = !strcmp(name, "name") ? r->name : !strcmp(name, "token") ? r->token
									   : "fall-2026";
	(void)slot;
	*len = strlen(v);
	return v;
}

static int bench_message(const char *html, uint64_t n, bool builtin)
{
	static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
	const struct msg_unsub_conf uc = { .base_url = "https://news.example.com/unsubscribe",
					   .key = secret, .keylen = 32 };
	json_t *content = json_pack("{s:{s:s, s:s}, s:s, s:s, s:s}",
				    "from", "email", "news@example.com", "name", "Example News",
				    "subject", "Hello {{ name }}, the {{ campaign }} issue",
				    "text_body", "Hi {{ name }},\n\nthe {{ campaign }} issue is out.\n",
				    "html_body", html);
	json_t *subs = json_pack("{s:s}", "campaign", "fall-2026");
	json_t *unsub = builtin ? NULL : json_pack("{s:s}", "url",
						   "https://example.com/u/{{ token }}");
	struct msg_job_opts o = { .job_id = "0194c1d2e3f4-5a6b7c8d", .hostname = "mta1.example.com",
				  .unsub = builtin ? &uc : NULL };
	struct msg_err me;
	struct msg_job *j = msg_job_compile(content, subs, unsub, &o, &me);
	struct msg_out out;
	char name[32], token[32], email[64];
	const char *keys[] = { "name", "token" }, *vals[] = { name, token };
	size_t lens[2];
	uint64_t bytes = 0;

	if (!j) {
		fprintf(stderr, "volley-render-bench: %s: %s\n", me.field, me.message);
		return 1;
	}
	msg_out_init(&out);
	uint64_t t0 = vl_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		lens[0] = (size_t)snprintf(name, sizeof name, "Ann %llu", (unsigned long long)i);
		lens[1] = (size_t)snprintf(token, sizeof token, "%016llx",
					   (unsigned long long)i * 2654435761u);
		snprintf(email, sizeof email, "ann%llu@example.net", (unsigned long long)i);
		struct msg_rcpt r = { .email = email, .name = name, .index = i, .nsubs = 2,
				      .keys = keys, .vals = vals, .lens = lens };
		if (msg_render(j, &r, 1795400000, &out, &me) < 0) {
			fprintf(stderr, "volley-render-bench: %s\n", me.message);
			return 1;
		}
		bytes += out.size;
	}
	double s = (double)(vl_now_ns() - t0) / 1e9;
	printf("{\"unsubscribe\": \"%s\", \"messages\": %llu, \"message_bytes\": %llu, "
	       "\"seconds\": %.3f, \"messages_per_s\": %.0f, \"mb_per_s\": %.0f}\n",
	       builtin ? "builtin" : "job-url", (unsigned long long)n,
	       (unsigned long long)(bytes / (n ? n : 1)), s, (double)n / s, (double)bytes / s / 1e6);
	msg_out_free(&out);
	msg_job_free(j);
	json_decref(content);
	json_decref(subs);
	json_decref(unsub);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t n = 1000000;
	char err[256];
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("volley-render-bench %s\n", VL_VERSION);
		return 0;
	}

	if (argc > 1 && vl_parse_u64(argv[1], &n) < 0) {
		fprintf(stderr, "usage: volley-render-bench [RECIPIENTS]\n");
		return 2;
	}
	struct vl_buf src, out;
	vl_buf_init(&src);
	vl_buf_init(&out);
	vl_buf_appends(&src, "<html><body><p>Hi {{ name }},</p>\n");
	while (src.len < 4000)
		vl_buf_appends(&src, "<p>Our {{ campaign }} newsletter, a paragraph of text that "
			       "goes on for a while to make the body realistic.</p>\n");
	vl_buf_appends(&src, "<a href=\"https://example.com/u/{{ token }}\">unsubscribe</a> "
		       "{{ name }} {{ campaign }}</body></html>\n");
	struct msg_tpl *t = msg_tpl_compile(src.p, src.len, err, sizeof err);
	if (!t) {
		fprintf(stderr, "volley-render-bench: %s\n", err);
		return 1;
	}
	struct rcpt r;
	uint64_t bytes = 0, t0 = vl_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		snprintf(r.name, sizeof r.name, "Ann <%llu>", (unsigned long long)i);
		snprintf(r.token, sizeof r.token, "%016llx", (unsigned long long)i * 2654435761u);
		vl_buf_reset(&out);
		if (msg_tpl_render(t, value, &r, MSG_ESC_HTML, &out, err, sizeof err) < 0) {
			fprintf(stderr, "volley-render-bench: %s\n", err);
			return 1;
		}
		bytes += out.len;
	}
	double s = (double)(vl_now_ns() - t0) / 1e9;
	printf("{\"recipients\": %llu, \"template_bytes\": %zu, \"slots\": %zu, \"seconds\": %.3f, "
	       "\"renders_per_s\": %.0f, \"mb_per_s\": %.0f}\n", (unsigned long long)n, src.len,
	       msg_tpl_nslots(t), s, (double)n / s, (double)bytes / s / 1e6);
	msg_tpl_free(t);
	int rc = bench_message(src.p, n, false);
	if (rc == 0)
		rc = bench_message(src.p, n, true);
	vl_buf_free(&src);
	vl_buf_free(&out);
	return rc;
}
