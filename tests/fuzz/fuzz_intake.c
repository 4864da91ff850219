/*
 * libFuzzer target: job intake. The input (first octet picks JSON or
 * NDJSON and how it is cut into feeds) goes through api_intake without a
 * spool, so validation, composition and the NDJSON line splitter see
 * hostile bytes; nothing may crash or leak. Every line the fast recipient
 * parser accepts must also parse with jansson to the same values: the two
 * parsers may not disagree on what a recipient is. A refusal's list of
 * invalid recipients must be JSON; on_invalid "skip" is in the seeds.
 */
#include <stdlib.h>
#include <string.h>

#include "../../api/api_int.h"
#include "../../message/message.h"

static void same(const char *a, size_t an, const char *b, size_t bn)
{
	if (an != bn || memcmp(a, b, an) != 0)
		abort();
}

/* A fast-path success must be a valid recipient object to jansson with
 * the same strings (numbers and booleans compared as their text). */
static void differential(const char *p, size_t n)
{
	static struct vl_buf scratch;
	static struct sched_rcpt r;

	if (!api_rcpt_fast(p, n, &scratch, &r))
		return;
	json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
	if (!j || !json_is_object(j))
		abort();
	json_t *e = json_object_get(j, "email"), *nm = json_object_get(j, "name");
	same(r.email, r.email_len, json_string_value(e), json_string_length(e));
	if (nm)
		same(r.name, r.name_len, json_string_value(nm), json_string_length(nm));
	json_t *subs = json_object_get(j, "substitutions");
	if (json_object_size(subs) != r.nsubs)
		abort();
	for (size_t i = 0; i < r.nsubs; i++) {
		json_t *v = json_object_get(subs, r.keys[i]);
		if (!v)
			abort();
		char tmp[MSG_SUB_TMP];
		size_t len;
		const char *want = msg_sub_string(v, tmp, &len);
		if (!want)
			abort();
		same(r.vals[i], r.vlens[i], want, len);
	}
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	static struct cfg cfg;
	static int init;
	char err[128];

	if (!init) {
		cfg_load(&cfg, NULL, err, sizeof err);
		cfg.max_message_size = 100000;
		cfg.api.max_body = 1 << 20;
		/* volley's own unsubscribe URL, on for inputs whose first octet has
		 * its top bit set: the built-in List-Unsubscribe and
		 * {{ unsubscribe_url }} paths */
		free(cfg.unsubscribe.base_url);
		cfg.unsubscribe.base_url = strdup("https://news.example.com/unsubscribe");
		cfg.unsubscribe.secret = (unsigned char *)strdup("fuzz-0123456789abcdef0123456789abcdef");
		cfg.unsubscribe.secret_len = strlen((char *)cfg.unsubscribe.secret);
		vl_log_set_level(VL_LOG_ERROR);
		init = 1;
	}
	if (len < 1)
		return 0;
	bool ndjson = data[0] & 1;
	cfg.unsubscribe.on = data[0] & 0x80;
	size_t cut = 1 + (data[0] >> 1);
	const char *p = (const char *)data + 1;
	size_t n = len - 1;

	for (const char *l = p, *e; l < p + n; l = e + 1) {
		e = memchr(l, '\n', (size_t)(p + n - l));
		if (!e)
			e = p + n;
		differential(l, (size_t)(e - l));
	}
	struct api_intake *in = api_intake_new(&cfg, NULL, ndjson, NULL);
	for (size_t off = 0; off < n; off += cut)
		api_intake_feed(in, p + off, n - off < cut ? n - off : cut);
	json_t *acc, *meta;
	if (api_intake_finish(in, &acc, &meta) == 0) {
		json_decref(acc);
		json_decref(meta);
	} else {
		const struct api_error *e = api_intake_error(in);
		if (!e || !*e->message)
			abort();
		/* the list of invalid recipients must come out as JSON */
		json_t *j = api_error_json(e);
		if (!j || (e->ninvalid &&
			   !json_object_get(json_object_get(j, "error"), "invalid_recipients")))
			abort();
		json_decref(j);
	}
	api_intake_free(in);
	return 0;
}
