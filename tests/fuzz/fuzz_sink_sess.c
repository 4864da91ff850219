/*
 * libFuzzer target: volley-sink's SMTP session fed arbitrary client bytes
 * in arbitrary chunks. The first input byte picks options and chunking; the
 * session must never crash, never read or write out of bounds, and never
 * grow its reply buffer past what the input can justify.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sink/sink.h"

static struct sink_conf confs[4];
static struct sink_prof_shared prof; /* confs[0]'s --profile table, kept across inputs */

static void setup(void)
{
	static const char *argv[4][16] = {
		{"s", "--seed", "1", "--profile", "gmail", "--profile-rate", "5/s",
		 "--profile-rcpts", "3", "--profile-msgs-per-conn", "2",
		 "--profile-max-ips", "4", NULL},
		{"s", "--seed", "1", "--tls", "--max-size", "64", "--max-rcpts", "3",
		 "--requiretls", NULL},
		{"s", "--seed", "1", "--reply", "rcpt:*@b*=550 5.1.1 no\\nmore",
		 "--reply", "dot:*x*=stall", "--tempfail", "mail:30%", NULL},
		{"s", "--seed", "1", "--reply", "greeting=554 no", "--permfail", "dot:50", NULL},
	};
	char err[256];
	for (int i = 0; i < 4; i++) {
		int argc = 0;
		while (argv[i][argc])
			argc++;
		if (sink_conf_parse(&confs[i], argc, (char **)argv[i], err, sizeof err) != 0)
			abort();
	}
	pthread_mutex_init(&prof.mu, NULL);
	sink_prof_table_init(&prof.t, confs[0].profile_ips);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	static int ready;
	if (!ready) {
		setup();
		ready = 1;
	}
	if (len < 1)
		return 0;
	unsigned sel = data[0];
	data++, len--;

	struct smtpd_stats stats;
	memset(&stats, 0, sizeof stats);
	_Atomic uint64_t open = 1;
	struct sink_ctx hooks;
	sink_ctx_init(&hooks, &confs[sel & 3], sel, NULL, (sel & 3) == 0 ? &prof : NULL, NULL);
	struct smtpd_ctx ctx = {.conf = &confs[sel & 3].smtpd, .hooks = &sink_hooks,
				.hook_arg = &hooks, .stats = &stats, .conns_open = &open};
	struct vl_buf out;
	struct smtpd_sess s;
	vl_buf_init(&out);
	smtpd_sess_init(&s, &ctx, &out);
	/* eight client IPs for a table of four: the profile forgets some */
	snprintf(s.peer, sizeof s.peer, "10.0.0.%u:2525", (sel >> 2) & 7);
	smtpd_sess_greet(&s);

	size_t chunk = (sel >> 2) ? (sel >> 2) : len; /* 1..63 or all at once */
	size_t i = 0;
	while (i < len) {
		size_t n = len - i < chunk ? len - i : chunk;
		size_t used = smtpd_sess_feed(&s, (const char *)data + i, n);
		if (used > n)
			abort();
		if (s.action == SMTPD_STARTTLS) {
			smtpd_sess_tls_started(&s, "TLSv1.3", "TEST");
			n = used; /* the rest of this read is discarded */
		} else if (s.action != SMTPD_OK) {
			break;
		}
		i += n;
		/* A reply is at most ~600 octets per input line or chunk. */
		if (out.len > 4096 + 64 * (i + 1))
			abort();
		vl_buf_reset(&out);
	}
	smtpd_sess_timeout(&s);
	smtpd_sess_free(&s);
	vl_buf_free(&out);
	return 0;
}
