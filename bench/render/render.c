/*
 * volley-render-bench: renders per second of a compiled template: a 4 KB
 * HTML body with five substitutions, HTML-escaped, for N recipients.
 *   volley-render-bench [N]
 */
#include "../../message/message.h"

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

int main(int argc, char **argv)
{
	uint64_t n = 1000000;
	char err[256];

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
	vl_buf_free(&src);
	vl_buf_free(&out);
	return 0;
}
