/* sts/: the policy store (memory and disk), the TXT classification and
 * the decision table of RFC 8461 5.1. The fetcher is tested end to end
 * (tests/e2e/test_mta_sts.py: a real HTTPS server). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../../sts/sts.h"
#include "unit.h"

#define POLICY "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 600\r\n"

Test(sts, store_keeps_policies_across_a_reopen)
{
	char dir[256], err[256], path[512];
	struct sts_store *s;
	const struct sts_entry *e;

	unit_tmpdir(dir, sizeof dir, "sts");
	s = sts_store_open(dir, err, sizeof err);
	cr_assert_not_null(s, "%s", err);
	cr_assert_eq(sts_store_put(s, "example.com", "id1", POLICY, strlen(POLICY), 1000, err,
				   sizeof err), 0, "%s", err);
	e = sts_store_get(s, "example.com");
	cr_assert_not_null(e);
	cr_assert_str_eq(e->id, "id1");
	cr_assert_eq(e->expires, 1600);
	cr_assert_eq(e->policy.mode, TLS_STS_ENFORCE);
	cr_assert_str_eq(e->text, POLICY);
	sts_store_free(s);

	s = sts_store_open(dir, err, sizeof err);
	cr_assert_not_null(s, "%s", err);
	cr_assert_eq(sts_store_count(s), 1);
	e = sts_store_get(s, "example.com");
	cr_assert_not_null(e, "reloaded from disk");
	cr_assert_eq(e->fetched, 1000);
	cr_assert_eq(e->expires, 1600);
	cr_assert(tls_sts_mx_match(&e->policy, "mx.example.com"));
	sts_store_drop(s, "example.com");
	cr_assert_null(sts_store_get(s, "example.com"));
	snprintf(path, sizeof path, "%s/example.com", dir);
	struct stat st;
	cr_assert_lt(stat(path, &st), 0, "dropped from disk too");
	sts_store_free(s);
	unit_rmdir(dir);
}

Test(sts, store_refuses_bad_policies_and_names_and_skips_damage)
{
	char dir[256], err[256], path[512];
	struct sts_store *s;

	unit_tmpdir(dir, sizeof dir, "sts");
	s = sts_store_open(dir, err, sizeof err);
	cr_assert_not_null(s, "%s", err);
	cr_assert_lt(sts_store_put(s, "example.com", "x", "mode: enforce\r\n", 15, 1, err,
				   sizeof err), 0);
	cr_assert_null(sts_store_get(s, "example.com"), "an invalid policy keeps nothing");
	cr_assert_lt(sts_store_put(s, "../etc", "x", POLICY, strlen(POLICY), 1, err, sizeof err),
		     0);
	cr_assert(strstr(err, "not a domain name"), "%s", err);
	cr_assert_lt(sts_store_put(s, "a.example", "x", "version: STSv1\0", 15, 1, err,
				   sizeof err), 0);
	sts_store_free(s);

	snprintf(path, sizeof path, "%s/damaged.example", dir);
	FILE *f = fopen(path, "w");
	fputs("{\"id\": 5}", f);
	fclose(f);
	s = sts_store_open(dir, err, sizeof err);
	cr_assert_not_null(s, "a damaged file is skipped, not fatal: %s", err);
	cr_assert_eq(sts_store_count(s), 0);
	sts_store_free(s);
	unit_rmdir(dir);
}

static enum sts_txt_state classify(const char *a, const char *b, char id[33])
{
	const char *recs[2] = { a, b };
	size_t lens[2] = { a ? strlen(a) : 0, b ? strlen(b) : 0 };

	return sts_txt_classify(recs, lens, b ? 2 : a ? 1 : 0, id);
}

Test(sts, txt_classification)
{
	char id[33];

	cr_assert_eq(classify(NULL, NULL, id), STS_TXT_NONE);
	cr_assert_eq(classify("v=spf1 -all", NULL, id), STS_TXT_NONE, "someone else's record");
	cr_assert_eq(classify("v=STSv1; id=abc;", "v=spf1 -all", id), STS_TXT_RECORD);
	cr_assert_str_eq(id, "abc");
	cr_assert_eq(classify("v=STSv1; id=a;", "v=STSv1; id=b;", id), STS_TXT_INVALID,
		     "two records (3.1)");
	cr_assert_eq(classify("v=STSv1; id=a-b;", NULL, id), STS_TXT_INVALID);
	cr_assert_eq(classify("v=STSv10; id=a;", NULL, id), STS_TXT_NONE);
}

Test(sts, decisions_follow_rfc_8461_5_1)
{
	struct sts_entry e = { .id = "abc", .expires = 100 };

	/* nothing kept */
	cr_assert_eq(sts_decide(NULL, 50, STS_TXT_RECORD, "abc"), STS_FETCH);
	cr_assert_eq(sts_decide(NULL, 50, STS_TXT_NONE, ""), STS_USE_NONE);
	cr_assert_eq(sts_decide(NULL, 50, STS_TXT_FAILED, ""), STS_USE_NONE);
	/* a valid policy kept: the same id, or no answer, keeps it */
	cr_assert_eq(sts_decide(&e, 50, STS_TXT_RECORD, "abc"), STS_USE_CACHED);
	cr_assert_eq(sts_decide(&e, 50, STS_TXT_RECORD, "abd"), STS_FETCH);
	cr_assert_eq(sts_decide(&e, 50, STS_TXT_NONE, ""), STS_USE_CACHED);
	cr_assert_eq(sts_decide(&e, 50, STS_TXT_FAILED, ""), STS_USE_CACHED);
	cr_assert_eq(sts_decide(&e, 50, STS_TXT_INVALID, ""), STS_USE_CACHED);
	/* expired: as if none */
	cr_assert_eq(sts_decide(&e, 100, STS_TXT_RECORD, "abc"), STS_FETCH);
	cr_assert_eq(sts_decide(&e, 100, STS_TXT_NONE, ""), STS_USE_NONE);
}
