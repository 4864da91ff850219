/* tls/ unit tests: a client and a server tls_conn talk through memory. */
#ifndef VOLLEY_TEST_TLS_PUMP_H
#define VOLLEY_TEST_TLS_PUMP_H

#include <string.h>

#include "../../tls/tls.h"

/* Move bytes both ways until neither side has anything to say. */
/* got_s (with *n_s) collects what the server reads; NULL: dropped. */
static inline int unit_tls_pump(struct tls_conn *c, struct tls_conn *s, char *got_s,
				size_t *n_s)
{
	struct vl_buf b;
	char buf[4096];
	int rc = 0;

	vl_buf_init(&b);
	for (int round = 0; round < 20; round++) {
		size_t moved = 0;
		vl_buf_reset(&b);
		moved += tls_conn_output(c, &b);
		tls_conn_input(s, b.p, b.len);
		ssize_t n;
		while ((n = tls_conn_read(s, buf, sizeof buf)) > 0) {
			if (got_s) {
				memcpy(got_s + *n_s, buf, (size_t)n);
				*n_s += (size_t)n;
			}
		}
		if (n < 0)
			rc = -1;
		vl_buf_reset(&b);
		moved += tls_conn_output(s, &b);
		tls_conn_input(c, b.p, b.len);
		while ((n = tls_conn_read(c, buf, sizeof buf)) > 0)
			;
		if (n < 0)
			rc = -1;
		if (moved == 0 || rc < 0)
			break;
	}
	vl_buf_free(&b);
	return rc;
}

#endif
