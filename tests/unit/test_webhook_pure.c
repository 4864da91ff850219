/* webhook/pure.c: batches, event times, signatures, gzip, cursor files,
 * back-off, result classes; and the webhooks configuration. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "../../webhook/webhook_int.h"
#include "unit_cfg.h"

#define L1 "{\"type\":\"Delivery\",\"time\":\"2026-11-23T17:20:01.123Z\",\"job\":\"j1\"}\n"
#define L2 "{\"type\":\"Bounce\",\"time\":\"2026-11-23T17:20:02.000Z\",\"job\":\"j1\"}\n"

Test(webhook_batch, lines_become_a_json_array)
{
	struct wh_batch b;

	wh_batch_init(&b);
	cr_assert_eq(wh_batch_add(&b, L1 L2 "{\"torn", strlen(L1 L2 "{\"torn")), 2);
	cr_assert_eq(wh_batch_add(&b, "\n", 1), 0);       /* empty lines are nothing */
	cr_assert_eq(b.n, 2);
	cr_assert_float_eq(b.first_time, 1795454401.123, 1e-3);
	wh_batch_finish(&b);
	wh_batch_finish(&b);                               /* idempotent */
	vl_buf_append(&b.body, "", 1);
	cr_assert_str_eq(b.body.p, "[{\"type\":\"Delivery\",\"time\":\"2026-11-23T17:20:01.123Z\","
			 "\"job\":\"j1\"},{\"type\":\"Bounce\",\"time\":\"2026-11-23T17:20:02.000Z\","
			 "\"job\":\"j1\"}]");
	wh_batch_reset(&b);
	cr_assert_eq(b.n, 0);
	wh_batch_finish(&b);
	cr_assert_eq(b.body.len, 2);
	cr_assert_eq(memcmp(b.body.p, "[]", 2), 0);
	wh_batch_free(&b);
}

Test(webhook_batch, a_line_in_pieces_is_dropped_whole)
{
	bool in_long = false;
	const char *p;
	char r1[] = "{\"a\":1}\n{\"lo", r2[] = "ng\":2", r3[] = "}\n{\"b\":3}\n", r4[] = "{\"c\":4}\n";

	p = r1;     /* a whole line, then the start of a long one */
	cr_assert_eq(wh_whole_lines(&in_long, &p, strlen(r1)), 8);
	cr_assert_eq(p, r1);
	cr_assert(in_long);
	p = r2;     /* its middle */
	cr_assert_eq(wh_whole_lines(&in_long, &p, strlen(r2)), 0);
	cr_assert(in_long);
	p = r3;     /* its end and a whole line */
	cr_assert_eq(wh_whole_lines(&in_long, &p, strlen(r3)), 8);
	cr_assert_eq(memcmp(p, "{\"b\":3}\n", 8), 0);
	cr_assert_not(in_long);
	p = r4;
	cr_assert_eq(wh_whole_lines(&in_long, &p, strlen(r4)), 8);
	cr_assert_eq(p, r4);
}

Test(webhook_batch, event_time)
{
	cr_assert_float_eq(wh_event_time(L1, strlen(L1)), 1795454401.123, 1e-3);
	cr_assert_eq(wh_event_time("{\"type\":\"X\"}", 12), 0);
	const char *bad = "{\"type\":\"D\",\"time\":\"2026-11-23X17:20:01.123Z\"}";
	cr_assert_eq(wh_event_time(bad, strlen(bad)), 0);
	const char *shortl = "{\"type\":\"D\",\"time\":\"2026-11";
	cr_assert_eq(wh_event_time(shortl, strlen(shortl)), 0);
}

Test(webhook_sign, hmac_sha256_of_timestamp_dot_body)
{
	char sig[WH_SIG_LEN];
	const char *body = "[{\"a\":1}]";

	/* Python: hmac.new(b"key", b"1700000000." + body, hashlib.sha256) */
	wh_sign("key", 1700000000, body, strlen(body), sig);
	cr_assert_str_eq(sig, "sha256=3df7ca146306653c166f4820bec8f052eb597d49353968a70eb4584eb7059b39");
	wh_sign("key", 1700000001, body, strlen(body), sig);
	cr_assert_str_neq(sig, "sha256=3df7ca146306653c166f4820bec8f052eb597d49353968a70eb4584eb7059b39");
}

Test(webhook_gzip, round_trip)
{
	struct vl_buf z;
	char in[5000], out[6000];
	uLongf outlen = sizeof out;
	z_stream s = { 0 };

	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (char)('a' + i % 7);
	vl_buf_init(&z);
	cr_assert_eq(wh_gzip(in, sizeof in, &z), 0);
	cr_assert(z.len > 10 && z.len < sizeof in);
	cr_assert_eq((unsigned char)z.p[0], 0x1f);         /* gzip's magic */
	cr_assert_eq((unsigned char)z.p[1], 0x8b);
	cr_assert_eq(inflateInit2(&s, 31), Z_OK);
	s.next_in = (Bytef *)z.p, s.avail_in = (uInt)z.len;
	s.next_out = (Bytef *)out, s.avail_out = (uInt)outlen;
	cr_assert_eq(inflate(&s, Z_FINISH), Z_STREAM_END);
	cr_assert_eq(s.total_out, sizeof in);
	cr_assert_eq(memcmp(in, out, sizeof in), 0);
	inflateEnd(&s);
	vl_buf_free(&z);
}

Test(webhook_cursor, encode_decode)
{
	struct vl_buf b;
	struct sched_events_pos p = { 12, 345678 }, q;
	char why[200];

	vl_buf_init(&b);
	wh_cursor_encode(&p, &b);
	vl_buf_append(&b, "", 1);
	cr_assert_str_eq(b.p, "volley-webhook-cursor 1 12 345678\n");
	cr_assert_eq(wh_cursor_decode(b.p, b.len - 1, &q, why, sizeof why), 0);
	cr_assert_eq(q.seq, 12);
	cr_assert_eq(q.off, 345678);
	vl_buf_free(&b);
}

Test(webhook_cursor, damaged_files_are_refused)
{
	static const char *const bad[] = {
		"", "garbage\n", "volley-webhook-cursor 1 12\n", "volley-webhook-cursor 1 12 34",
		"volley-webhook-cursor 1 12 34\nmore", "volley-webhook-cursor 1 x 34\n",
		"volley-webhook-cursor 1 0 34\n", "volley-webhook-cursor 2 12 34\n",
		"volley-webhook-cursor 1 12  34\n", "volley-webhook-cursor 1 99999999999999999999 1\n",
		"volley-webhook-cursor 1 -1 1\n",
	};
	struct sched_events_pos q;
	char why[200];

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		why[0] = 0;
		cr_assert_eq(wh_cursor_decode(bad[i], strlen(bad[i]), &q, why, sizeof why), -1,
			     "%s", bad[i]);
		cr_assert(why[0], "%s", bad[i]);
	}
}

Test(webhook_backoff, doubles_to_five_minutes_with_jitter)
{
	uint64_t prev_max = 0;

	for (unsigned n = 1; n <= 20; n++) {
		uint64_t full = n <= 9 ? 1000ull << (n - 1) : 300000;
		if (full > 300000)
			full = 300000;
		uint64_t lo = UINT64_MAX, hi = 0, r = 42;
		for (int i = 0; i < 2000; i++) {
			uint64_t d = wh_backoff_ms(n, vl_rand(&r));
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		cr_assert_leq(hi, full, "n %u", n);
		cr_assert_geq(lo, full / 2, "n %u", n);
		cr_assert_lt(lo, hi, "n %u: no jitter", n);   /* jittered */
		cr_assert_geq(hi, prev_max / 2);
		prev_max = hi;
	}
	cr_assert_eq(wh_backoff_ms(1, 0), 1000);
	cr_assert_eq(wh_backoff_ms(30, 0), 300000);
}

Test(webhook_result, classes)
{
	cr_assert_str_eq(wh_result_class(0), "error");
	cr_assert_str_eq(wh_result_class(204), "2xx");
	cr_assert_str_eq(wh_result_class(301), "3xx");
	cr_assert_str_eq(wh_result_class(429), "4xx");
	cr_assert_str_eq(wh_result_class(503), "5xx");
	cr_assert_str_eq(wh_result_class(999), "error");
}

/* ---- configuration ---- */

static void refused(const char *text, const char *words)
{
	struct cfg c;
	char err[512];

	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), -1, "%s", text);
	cr_assert(strstr(err, words), "%s: %s", words, err);
}

Test(webhook_config, defaults_and_values)
{
	struct cfg c;
	char err[512];

	cr_assert_eq(unit_cfg_load(&c, "webhooks = ( { url = \"https://hooks.example.com/v\"; "
				   "secret = \"k\"; }, { name = \"crm\"; url = \"http://127.0.0.5:81/\"; "
				   "events = [ \"Bounce\", \"OOB\", \"Feedback\", \"Unsubscribe\" ]; "
				   "secret = \"k2\"; batch = 1000; gzip = true; timeout = \"3s\"; "
				   "ca_file = \"/x.pem\"; }, { url = \"http://[::1]:8080/\"; "
				   "secret = \"k\"; } );", err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.nwebhooks, 3);
	cr_assert_str_eq(c.webhooks[0].name, "hook1");
	cr_assert_eq(c.webhooks[0].batch, 100);
	cr_assert_eq(c.webhooks[0].timeout_ms, 10000);
	cr_assert_eq(c.webhooks[0].nevents, 0);
	cr_assert_not(c.webhooks[0].gzip);
	cr_assert_str_eq(c.webhooks[1].name, "crm");
	cr_assert_eq(c.webhooks[1].nevents, 4);
	cr_assert_str_eq(c.webhooks[1].events[3], "Unsubscribe");
	cr_assert_eq(c.webhooks[1].batch, 1000);
	cr_assert(c.webhooks[1].gzip);
	cr_assert_eq(c.webhooks[1].timeout_ms, 3000);
	cr_assert_str_eq(c.webhooks[1].ca_file, "/x.pem");
	cr_assert_str_eq(c.webhooks[2].name, "hook3");
	struct vl_buf b;
	vl_buf_init(&b);
	cfg_print(&c, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "name = \"crm\"; url = \"http://127.0.0.5:81/\""), "%s", b.p);
	cr_assert(strstr(b.p, "secret = \"(hidden)\""));
	cr_assert_null(strstr(b.p, "\"k2\""));
	vl_buf_free(&b);
	cfg_free(&c);
}

Test(webhook_config, secret_file)
{
	struct cfg c;
	char err[512], text[300], path[] = "/tmp/volley-secret-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_eq(write(fd, "topsecret\n", 10), 10);
	close(fd);
	snprintf(text, sizeof text, "webhooks = ( { url = \"https://h.example/\"; "
		 "secret_file = \"%s\"; } );", path);
	cr_assert_eq(unit_cfg_load(&c, text, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.webhooks[0].secret, "topsecret");
	cfg_free(&c);
	unlink(path);
	refused(text, "webhooks[0].secret_file");
}

Test(webhook_config, errors_name_the_key)
{
	refused("webhooks = ( { url = \"http://192.0.2.1/\"; secret = \"k\"; } );",
		"webhooks[0].url: plain http goes only to a loopback address");
	refused("webhooks = ( { url = \"http://localhost/\"; secret = \"k\"; } );",
		"webhooks[0].url");
	refused("webhooks = ( { url = \"http://[::2]/\"; secret = \"k\"; } );", "webhooks[0].url");
	refused("webhooks = ( { url = \"ftp://h.example/\"; secret = \"k\"; } );",
		"webhooks[0].url: expected an https:// URL");
	refused("webhooks = ( { url = \"https://u:p@h.example/\"; secret = \"k\"; } );",
		"webhooks[0].url");
	refused("webhooks = ( { secret = \"k\"; } );", "webhooks[0].url: needed");
	refused("webhooks = ( { url = \"https://h.example/\"; } );", "webhooks[0].secret");
	refused("webhooks = ( { url = \"https://h.example/\"; secret = \"k\"; "
		"events = [ \"Delivery\", \"Deliveries\" ]; } );",
		"webhooks[0].events: unknown event type \"Deliveries\"");
	refused("webhooks = ( { url = \"https://h.example/\"; secret = \"k\"; batch = 0; } );",
		"webhooks[0].batch");
	refused("webhooks = ( { url = \"https://h.example/\"; secret = \"k\"; colour = 1; } );",
		"webhooks[0].colour: unknown key");
	refused("webhooks = ( { name = \"a b\"; url = \"https://h.example/\"; secret = \"k\"; } );",
		"webhooks[0].name");
	refused("webhooks = ( { name = \"x\"; url = \"https://h.example/\"; secret = \"k\"; }, "
		"{ name = \"x\"; url = \"https://h.example/\"; secret = \"k\"; } );",
		"webhooks[1].name: a second webhook of this name");
	refused("webhooks = ( { url = \"https://h.example/\"; secret = \"k\"; "
		"secret_file = \"/nonexistent\"; } );", "one or the other");
}
