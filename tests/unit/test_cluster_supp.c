/* cluster/supp_ent.c: the shared suppression list's entries, encoded and
 * parsed back, and what from Redis is refused (every bound). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cluster/cluster.h"

static int parse(const char *email, const char *json, uint64_t seq, struct clu_supp_entry *e,
		 char *err)
{
	return clu_supp_parse(email, strlen(email), json, strlen(json), seq, e, err, 200);
}

Test(cluster_supp, encode_then_parse)
{
	struct clu_supp_entry e;
	char err[200];
	char *j = clu_supp_encode(true, "invalid-recipient", "0194-ab", "node-1", 1767225600);

	cr_assert_str_eq(j, "{\"at\":1767225600,\"job\":\"0194-ab\",\"node\":\"node-1\","
			 "\"op\":\"add\",\"reason\":\"invalid-recipient\"}");
	cr_assert_eq(parse("ann@example.net", j, 7, &e, err), 0, "%s", err);
	cr_assert(e.add);
	cr_assert_eq(e.seq, 7);
	cr_assert_eq(e.at, 1767225600);
	cr_assert_str_eq(e.email, "ann@example.net");
	cr_assert_str_eq(e.reason, "invalid-recipient");
	cr_assert_str_eq(e.job, "0194-ab");
	cr_assert_str_eq(e.node, "node-1");
	free(j);
	j = clu_supp_encode(false, "ignored", "ignored", "n", 5);
	cr_assert_str_eq(j, "{\"at\":5,\"node\":\"n\",\"op\":\"del\"}");
	cr_assert_eq(parse("ann@example.net", j, 8, &e, err), 0, "%s", err);
	cr_assert(!e.add);
	cr_assert_str_eq(e.reason, "");
	free(j);
}

Test(cluster_supp, encode_cuts_on_utf8_boundaries)
{
	char reason[CLU_SUPP_REASON_MAX + 8];
	struct clu_supp_entry e;
	char err[200];

	memset(reason, 'a', sizeof reason - 1);
	reason[sizeof reason - 1] = 0;
	/* a two-octet character across the bound */
	memcpy(reason + CLU_SUPP_REASON_MAX - 1, "\xc3\xa9", 2);
	char *j = clu_supp_encode(true, reason, NULL, "n", 1);
	cr_assert_eq(parse("a@b", j, 1, &e, err), 0, "%s", err);
	cr_assert_eq(strlen(e.reason), CLU_SUPP_REASON_MAX - 1);
	cr_assert_str_eq(e.job, "");
	free(j);
}

Test(cluster_supp, refused_with_a_reason)
{
	static const struct {
		const char *email, *json, *why;
		uint64_t seq;
	} bad[] = {
		{ "a@b", "{\"op\":\"add\",\"node\":\"n\",\"at\":1}", "counter", 0 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"n\",\"at\":1}", "counter",
		  (1ull << 53) + 1 },
		{ "", "{\"op\":\"add\",\"node\":\"n\",\"at\":1}", "address", 1 },
		{ "no-at", "{\"op\":\"add\",\"node\":\"n\",\"at\":1}", "address", 1 },
		{ "a\tb@c", "{\"op\":\"add\",\"node\":\"n\",\"at\":1}", "address", 1 },
		{ "a@b", "", "value", 1 },
		{ "a@b", "[1]", "not a JSON object", 1 },
		{ "a@b", "{\"op\":\"add\"", "not a JSON object", 1 },
		{ "a@b", "{\"op\":\"put\",\"node\":\"n\",\"at\":1}", "\"op\"", 1 },
		{ "a@b", "{\"node\":\"n\",\"at\":1}", "\"op\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"at\":1}", "\"node\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"\",\"at\":1}", "\"node\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"a\\nb\",\"at\":1}", "\"node\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"n\"}", "\"at\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"n\",\"at\":-1}", "\"at\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"n\",\"at\":\"1\"}", "\"at\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"n\",\"at\":1,\"job\":7}", "\"job\"", 1 },
		{ "a@b", "{\"op\":\"add\",\"node\":\"n\",\"at\":1,\"op\":\"del\"}",
		  "not a JSON object", 1 },
	};
	struct clu_supp_entry e;
	char err[200];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		cr_assert_eq(parse(bad[i].email, bad[i].json, bad[i].seq, &e, err), -1, "%zu", i);
		cr_assert(strstr(err, bad[i].why), "%zu: %s", i, err);
	}
}

Test(cluster_supp, bounds)
{
	struct clu_supp_entry e;
	char err[200], *big = malloc(CLU_SUPP_JSON_MAX + 64), email[CLU_SUPP_EMAIL_MAX + 2];

	memset(email, 'a', sizeof email);
	email[CLU_SUPP_EMAIL_MAX - 2] = '@';
	email[CLU_SUPP_EMAIL_MAX] = 0;           /* exactly the bound: taken */
	cr_assert_eq(parse(email, "{\"op\":\"del\",\"node\":\"n\",\"at\":1}", 1, &e, err), 0,
		     "%s", err);
	email[CLU_SUPP_EMAIL_MAX] = 'a';
	email[CLU_SUPP_EMAIL_MAX + 1] = 0;       /* one more: refused */
	cr_assert_eq(parse(email, "{\"op\":\"del\",\"node\":\"n\",\"at\":1}", 1, &e, err), -1);
	/* a job one octet too long */
	int n = snprintf(big, CLU_SUPP_JSON_MAX, "{\"op\":\"add\",\"node\":\"n\",\"at\":1,\"job\":\"");
	memset(big + n, 'j', CLU_SUPP_JOB_MAX + 1);
	strcpy(big + n + CLU_SUPP_JOB_MAX + 1, "\"}");
	cr_assert_eq(parse("a@b", big, 1, &e, err), -1);
	cr_assert(strstr(err, "\"job\""), "%s", err);
	/* a value over the bound, whatever it holds */
	memset(big, ' ', CLU_SUPP_JSON_MAX + 1);
	big[0] = '{';
	big[CLU_SUPP_JSON_MAX] = '}';
	big[CLU_SUPP_JSON_MAX + 1] = 0;
	cr_assert_eq(parse("a@b", big, 1, &e, err), -1);
	cr_assert(strstr(err, "longer than"), "%s", err);
	free(big);
}

Test(cluster_supp, messages)
{
	struct clu_supp_entry e;
	char err[200];
	const char ok[] = "42\tann@example.net\t{\"op\":\"del\",\"node\":\"b\",\"at\":3}";

	cr_assert_eq(clu_supp_parse_msg(ok, strlen(ok), &e, err, sizeof err), 0, "%s", err);
	cr_assert_eq(e.seq, 42);
	cr_assert_str_eq(e.email, "ann@example.net");
	cr_assert_str_eq(e.node, "b");
	static const char *bad[] = { "", "42", "42\tann@example.net", "x\ta@b\t{}",
				     "-1\ta@b\t{}", "1.5\ta@b\t{}", "99999999999999999\ta@b\t{}",
				     "1\ta@b\t{}" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(clu_supp_parse_msg(bad[i], strlen(bad[i]), &e, err, sizeof err), -1,
			     "%s", bad[i]);
	/* NUL inside the JSON's length: refused, not read past */
	const char nul[] = "1\ta@b\t{\"op\":\"del\",\"node\":\"n\0x\",\"at\":3}";
	cr_assert_eq(clu_supp_parse_msg(nul, sizeof nul - 1, &e, err, sizeof err), -1);
}

Test(cluster_supp, counters)
{
	uint64_t v;

	cr_assert_eq(clu_supp_seq("9007199254740992", 16, &v), 0);
	cr_assert_eq(v, 1ull << 53);
	cr_assert_eq(clu_supp_seq("9007199254740993", 16, &v), -1);
	cr_assert_eq(clu_supp_seq("", 0, &v), -1);
	cr_assert_eq(clu_supp_seq("1e3", 3, &v), -1);
	cr_assert_eq(clu_supp_seq("0", 1, &v), 0);
	cr_assert_eq(v, 0);
}
