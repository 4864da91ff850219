/*
 * DATA payload without copying the body: the body's iovecs are split where
 * a line starts with '.', and a shared "." goes in between (RFC 5321
 * 4.5.2), then CRLF.CRLF ends it. Bodies are CRLF-canonical (message/
 * guarantees it); a dot after any LF is stuffed, so even a stray bare LF
 * can never let "\n.\r\n" end the message early at a lenient server.
 */
#include "engine_int.h"

#include <stdlib.h>
#include <string.h>

static const char dot[] = ".";
static const char crlf_dot_crlf[] = "\r\n.\r\n";

static void push(struct eng_iov *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->v = vl_realloc(b->v, b->cap * sizeof *b->v);
	}
	b->v[b->n++] = (struct iovec){.iov_base = (void *)p, .iov_len = n};
	b->bytes += n;
}

void eng_iov_free(struct eng_iov *b)
{
	free(b->v);
	memset(b, 0, sizeof *b);
}

void eng_dotstuff(const struct iovec *body, size_t nbody, struct eng_iov *out)
{
	bool bol = true; /* at the beginning of a line */
	char last = '\n';

	out->n = out->bytes = 0;
	for (size_t i = 0; i < nbody; i++) {
		const char *p = body[i].iov_base, *end = p + body[i].iov_len;
		const char *start = p;
		while (p < end) {
			if (bol && *p == '.') {
				push(out, start, (size_t)(p - start));
				push(out, dot, 1);
				start = p; /* the original dot follows the added one */
			}
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (!nl) {
				bol = false;
				break;
			}
			p = nl + 1;
			bol = true;
		}
		push(out, start, (size_t)(end - start));
		if (body[i].iov_len)
			last = end[-1];
	}
	/* End of data: after the body's own last CRLF, or one added for it. */
	if (out->bytes > 0 && last != '\n')
		push(out, crlf_dot_crlf, 5);
	else
		push(out, crlf_dot_crlf + 2, 3);
}
