/*
 * The shared suppression list's entries (cluster.h): the JSON kept in
 * Redis for a change and its parser. Pure: no I/O. What comes from Redis
 * is not trusted: every length is checked before anything is copied.
 */
#include "cluster.h"
#include "../common/common.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define SEQ_MAX (1ull << 53)
#define AT_MAX 100000000000ll     /* the year 5138: a bound, not a date */

/* Cut s to max octets on a UTF-8 boundary. */
static json_t *bounded(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n > max) {
		n = max;
		while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	json_t *j = json_stringn(s ? s : "", n);
	return j ? j : json_string("");   /* not UTF-8: dropped */
}

char *clu_supp_encode(bool add, const char *reason, const char *job, const char *node,
		      long long at)
{
	json_t *o = json_object();
	json_object_set_new(o, "op", json_string(add ? "add" : "del"));
	if (add) {
		json_object_set_new(o, "reason", bounded(reason, CLU_SUPP_REASON_MAX));
		json_object_set_new(o, "job", bounded(job, CLU_SUPP_JOB_MAX));
	}
	json_object_set_new(o, "node", bounded(node, CLU_SUPP_NODE_MAX));
	json_object_set_new(o, "at", json_integer(at));
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!s)
		vl_oom(0);
	return s;
}

static bool has_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

/* A string member into out (at most max octets); absent is "" when
 * optional. */
static int member(json_t *o, const char *name, char *out, size_t max, bool optional,
		  char *err, size_t errlen)
{
	json_t *v = json_object_get(o, name);
	if (!v && optional) {
		out[0] = 0;
		return 0;
	}
	if (!json_is_string(v))
		return vl_fail(err, errlen, "\"%s\": not a string", name);
	size_t n = json_string_length(v);
	if (n > max)
		return vl_fail(err, errlen, "\"%s\": longer than %zu octets", name, max);
	memcpy(out, json_string_value(v), n);
	out[n] = 0;
	if (strlen(out) != n)
		return vl_fail(err, errlen, "\"%s\": a NUL inside", name);
	return 0;
}

static int parse_email(const char *email, size_t elen, struct clu_supp_entry *e, char *err,
		       size_t errlen)
{
	if (!elen || elen > CLU_SUPP_EMAIL_MAX)
		return vl_fail(err, errlen, "address: empty or longer than %d octets",
			       CLU_SUPP_EMAIL_MAX);
	if (has_ctl(email, elen) || !memchr(email, '@', elen))
		return vl_fail(err, errlen, "address: control octets or no '@'");
	memcpy(e->email, email, elen);
	e->email[elen] = 0;
	return 0;
}

static int parse_fields(json_t *o, struct clu_supp_entry *e, char *err, size_t errlen)
{
	char op[8];
	if (member(o, "op", op, sizeof op - 1, false, err, errlen) < 0)
		return -1;
	if (strcmp(op, "add") && strcmp(op, "del"))
		return vl_fail(err, errlen, "\"op\": neither add nor del");
	e->add = op[0] == 'a';
	if (member(o, "node", e->node, CLU_SUPP_NODE_MAX, false, err, errlen) < 0 ||
	    member(o, "reason", e->reason, CLU_SUPP_REASON_MAX, true, err, errlen) < 0 ||
	    member(o, "job", e->job, CLU_SUPP_JOB_MAX, true, err, errlen) < 0)
		return -1;
	if (!e->node[0] || has_ctl(e->node, strlen(e->node)))
		return vl_fail(err, errlen, "\"node\": empty or control octets");
	json_t *at = json_object_get(o, "at");
	if (!json_is_integer(at) || json_integer_value(at) < 0 ||
	    json_integer_value(at) > AT_MAX)
		return vl_fail(err, errlen, "\"at\": not a time in Unix seconds");
	e->at = (long long)json_integer_value(at);
	return 0;
}

int clu_supp_parse(const char *email, size_t elen, const char *json, size_t jlen, uint64_t seq,
		   struct clu_supp_entry *e, char *err, size_t errlen)
{
	json_error_t je;

	memset(e, 0, sizeof *e);
	if (!seq || seq > SEQ_MAX)
		return vl_fail(err, errlen, "counter out of range");
	e->seq = seq;
	if (parse_email(email, elen, e, err, errlen) < 0)
		return -1;
	if (!jlen || jlen > CLU_SUPP_JSON_MAX)
		return vl_fail(err, errlen, "value: empty or longer than %d octets",
			       CLU_SUPP_JSON_MAX);
	json_t *o = json_loadb(json, jlen, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(o)) {
		json_decref(o);
		return vl_fail(err, errlen, "value: not a JSON object");
	}
	int rc = parse_fields(o, e, err, errlen);
	json_decref(o);
	return rc;
}

int clu_supp_seq(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (!len || len > 16)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > SEQ_MAX)
		return -1;
	*out = v;
	return 0;
}

int clu_supp_parse_msg(const char *m, size_t len, struct clu_supp_entry *e, char *err,
		       size_t errlen)
{
	uint64_t seq;

	memset(e, 0, sizeof *e);
	if (len > CLU_SUPP_MSG_MAX)
		return vl_fail(err, errlen, "message longer than %d octets", CLU_SUPP_MSG_MAX);
	const char *t1 = memchr(m, '\t', len);
	const char *t2 = t1 ? memchr(t1 + 1, '\t', len - (size_t)(t1 + 1 - m)) : NULL;
	if (!t2)
		return vl_fail(err, errlen, "message: not SEQ TAB ADDRESS TAB JSON");
	if (clu_supp_seq(m, (size_t)(t1 - m), &seq) < 0)
		return vl_fail(err, errlen, "message: a bad counter");
	return clu_supp_parse(t1 + 1, (size_t)(t2 - t1 - 1), t2 + 1, len - (size_t)(t2 + 1 - m),
			      seq, e, err, errlen);
}
