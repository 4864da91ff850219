/* tlsrpt/: TLS-RPT (RFC 8460) aggregation, bounds, the report JSON (checked
 * against RFC 8460 4.4 by tests/tools/tlsrpt_validate.py), the store on
 * disk and the _smtp._tls record parser. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../tlsrpt/tlsrpt.h"
#include "unit.h"

static const struct rpt_meta META = { "Volley Test", "tlsrpt@volley.test", "mta.volley.test" };

static struct rpt_session ok_session(const char *domain)
{
	return (struct rpt_session){ .domain = domain, .policy_type = "no-policy-found",
				     .success = true };
}

static struct rpt_session fail_session(const char *domain, const char *ip)
{
	return (struct rpt_session){
		.domain = domain, .policy_type = "no-policy-found", .success = false,
		.result_type = "starttls-not-supported", .receiving_mx = "mx.bad.test",
		.receiving_ip = ip, .reason = "STARTTLS not offered; TLS policy 'dane' requires it",
	};
}

/* The report of domain on d, validated by the schema checker. */
static json_t *report_of(struct rpt_day *d, const char *domain)
{
	json_t *stored = rpt_day_domain_json(d, domain);
	cr_assert_not_null(stored, "nothing stored for %s", domain);
	json_t *rep = rpt_report_json(stored, &META);
	json_decref(stored);
	cr_assert_not_null(rep);
	return rep;
}

/* RFC 8460's schema, by the Python checker (Debian's jsonschema). */
static int schema_check(const json_t *rep)
{
	char path[] = "/tmp/volley-tlsrpt-XXXXXX", cmd[300];
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(json_dump_file(rep, path, 0), 0);
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/tools/tlsrpt_validate.py %s", path);
	int rc = system(cmd);
	unlink(path);
	return rc;
}

static const json_t *policy_at(const json_t *rep, size_t i)
{
	return json_array_get(json_object_get(rep, "policies"), i);
}

static long long num(const json_t *o, const char *path)
{
	char buf[200], *save, *k;

	snprintf(buf, sizeof buf, "%s", path);
	for (k = strtok_r(buf, "/", &save); k && o; k = strtok_r(NULL, "/", &save))
		o = json_is_array(o) ? json_array_get(o, (size_t)atoi(k)) : json_object_get(o, k);
	cr_assert(json_is_integer(o), "%s is no integer", path);
	return json_integer_value(o);
}

Test(tlsrpt, days_and_domains)
{
	int64_t day;
	char s[11], dom[254];

	cr_assert_eq(rpt_day_parse("2026-11-23", &day), 0);
	rpt_day_format(day, s);
	cr_assert_str_eq(s, "2026-11-23");
	cr_assert_eq(rpt_day_of((double)day * 86400 + 86399.9), day);
	cr_assert_eq(rpt_day_of((double)day * 86400 + 86400), day + 1);
	static const char *const bad[] = { "2026-02-30", "2026-1-01", "2026-11-23x", "", "1969-12-31",
					   "2026/11/23", "2026-13-01", "2026-00-10", "+026-11-23" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(rpt_day_parse(bad[i], &day), -1, "accepted %s", bad[i]);
	cr_assert_eq(vl_domain_norm("Mail.Example.NET", dom), 0);
	cr_assert_str_eq(dom, "mail.example.net");
	static const char *const baddom[] = { "", ".a", "a.", "a..b", "a/b", "..", "a b", "é.fr" };
	for (size_t i = 0; i < sizeof baddom / sizeof *baddom; i++)
		cr_assert_eq(vl_domain_norm(baddom[i], dom), -1, "accepted %s", baddom[i]);
}

Test(tlsrpt, one_success_and_one_failure_match_the_schema)
{
	int64_t day;
	rpt_day_parse("2026-11-23", &day);
	struct rpt_day *d = rpt_day_new(day);
	struct rpt_session ok = ok_session("ok.test"), bad = fail_session("bad.test", "127.0.0.3");

	cr_assert_eq(rpt_day_add(d, &ok), 0);
	cr_assert_eq(rpt_day_add(d, &bad), 0);
	json_t *a = report_of(d, "ok.test"), *b = report_of(d, "bad.test");
	cr_assert_eq(schema_check(a), 0, "ok.test's report fails the schema");
	cr_assert_eq(schema_check(b), 0, "bad.test's report fails the schema");
	cr_assert_str_eq(json_string_value(json_object_get(a, "report-id")),
			 "2026-11-23.ok.test@mta.volley.test");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(a, "date-range"),
							   "start-datetime")), "2026-11-23T00:00:00Z");
	cr_assert_eq(num(a, "policies/0/summary/total-successful-session-count"), 1);
	cr_assert_eq(num(a, "policies/0/summary/total-failure-session-count"), 0);
	cr_assert_eq(num(b, "policies/0/summary/total-successful-session-count"), 0);
	cr_assert_eq(num(b, "policies/0/summary/total-failure-session-count"), 1);
	const json_t *fd = json_array_get(json_object_get(policy_at(b, 0), "failure-details"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(fd, "result-type")),
			 "starttls-not-supported");
	cr_assert_str_eq(json_string_value(json_object_get(fd, "receiving-ip")), "127.0.0.3");
	cr_assert_str_eq(json_string_value(json_object_get(fd, "receiving-mx-hostname")),
			 "mx.bad.test");
	cr_assert_null(json_object_get(fd, "sending-mta-ip"), "unknown: left out");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(policy_at(b, 0),
			 "policy"), "policy-type")), "no-policy-found");
	json_decref(a);
	json_decref(b);
	rpt_day_free(d);
}

Test(tlsrpt, the_schema_check_can_fail)
{
	json_t *r = json_pack("{s:s}", "organization-name", "x");

	cr_assert_neq(schema_check(r), 0, "a report without its fields passed");
	json_decref(r);
}

Test(tlsrpt, failures_grouped_by_type_ips_mx_and_reason)
{
	struct rpt_day *d = rpt_day_new(20000);
	struct rpt_session a = fail_session("g.test", "127.0.0.3"), b = a;

	b.receiving_ip = "127.0.0.4";
	for (int i = 0; i < 3; i++)
		rpt_day_add(d, &a);
	rpt_day_add(d, &b);
	a.reason = "another reason";
	rpt_day_add(d, &a);
	struct rpt_session t = ok_session("g.test");
	t.policy_type = "tlsa";
	t.policy_strings = "3 1 1 aabb\n3 1 1 ccdd";
	t.mx_patterns = "mx.g.test";
	rpt_day_add(d, &t);
	json_t *r = report_of(d, "g.test");
	cr_assert_eq(json_array_size(json_object_get(r, "policies")), 2, "two policies");
	const json_t *fd = json_object_get(policy_at(r, 0), "failure-details");
	cr_assert_eq(json_array_size(fd), 3);
	cr_assert_eq(num(r, "policies/0/failure-details/0/failed-session-count"), 3);
	cr_assert_eq(num(r, "policies/0/failure-details/1/failed-session-count"), 1);
	cr_assert_eq(num(r, "policies/0/summary/total-failure-session-count"), 5);
	const json_t *pol = json_object_get(policy_at(r, 1), "policy");
	cr_assert_str_eq(json_string_value(json_object_get(pol, "policy-type")), "tlsa");
	cr_assert_eq(json_array_size(json_object_get(pol, "policy-string")), 2);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(pol, "policy-string"), 1)),
			 "3 1 1 ccdd");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(pol, "mx-host"), 0)),
			 "mx.g.test");
	cr_assert_eq(num(r, "policies/1/summary/total-successful-session-count"), 1);
	cr_assert_eq(schema_check(r), 0);
	json_decref(r);
	rpt_day_free(d);
}

Test(tlsrpt, bounded_details_policies_and_domains)
{
	struct rpt_day *d = rpt_day_new(20000);
	char ip[32], name[32], pol[32];

	for (int i = 0; i < RPT_DETAILS_MAX + 50; i++) {
		snprintf(ip, sizeof ip, "10.0.%d.%d", i / 256, i % 256);
		struct rpt_session s = fail_session("b.test", ip);
		cr_assert_eq(rpt_day_add(d, &s), i < RPT_DETAILS_MAX ? 0 : 1);
	}
	for (int i = 0; i < RPT_POLICIES_MAX + 3; i++) {
		snprintf(pol, sizeof pol, "3 1 1 %04x", i);
		struct rpt_session s = ok_session("b.test");
		s.policy_type = "tlsa";
		s.policy_strings = pol;
		rpt_day_add(d, &s);
	}
	json_t *st = rpt_day_domain_json(d, "b.test");
	cr_assert_eq(json_array_size(json_object_get(st, "policies")), RPT_POLICIES_MAX);
	cr_assert_eq(json_array_size(json_object_get(json_array_get(json_object_get(st, "policies"),
				     0), "failure-details")), RPT_DETAILS_MAX);
	cr_assert_eq(num(st, "policies/0/summary/total-failure-session-count"),
		     RPT_DETAILS_MAX + 50, "every failure counted, details or not");
	cr_assert_eq(num(st, "overflow/failure-details"), 50);
	cr_assert_eq(num(st, "overflow/policies"), 4, "the no-policy one takes a place");
	json_decref(st);
	for (int i = 1; i < RPT_DOMAINS_MAX; i++) {
		snprintf(name, sizeof name, "d%d.test", i);
		struct rpt_session s = ok_session(name);
		cr_assert_eq(rpt_day_add(d, &s), 0);
	}
	struct rpt_session s = ok_session("one-too-many.test");
	cr_assert_eq(rpt_day_add(d, &s), -1);
	cr_assert_eq(rpt_day_dropped(d), 1);
	cr_assert_eq(rpt_day_ndomains(d), RPT_DOMAINS_MAX);
	s.domain = "bad/../name";
	cr_assert_eq(rpt_day_add(d, &s), -1);
	rpt_day_free(d);
}

Test(tlsrpt, stored_form_loads_back_the_same)
{
	struct rpt_day *d = rpt_day_new(20000), *e = rpt_day_new(20000);
	struct rpt_session a = fail_session("r.test", "127.0.0.3"), b = ok_session("r.test");
	char err[200];

	for (int i = 0; i < RPT_DETAILS_MAX + 2; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "10.1.%d.%d", i / 256, i % 256);
		a.receiving_ip = ip;
		rpt_day_add(d, &a);
	}
	rpt_day_add(d, &b);
	json_t *x = rpt_day_domain_json(d, "r.test");
	cr_assert_eq(rpt_day_load(e, x, err, sizeof err), 0, "%s", err);
	json_t *y = rpt_day_domain_json(e, "r.test");
	cr_assert(json_equal(x, y), "%s\n%s", json_dumps(x, 0), json_dumps(y, 0));
	json_t *junk = json_pack("{s:s, s:[{s:{s:i}}]}", "policy-domain", "r.test", "policies",
				 "policy", "policy-type", 3);
	cr_assert_eq(rpt_day_load(e, junk, err, sizeof err), -1);
	json_decref(junk);
	json_decref(x);
	json_decref(y);
	rpt_day_free(d);
	rpt_day_free(e);
}

Test(tlsrpt, store_writes_reloads_marks_and_removes)
{
	char dir[64], path[256], date[11];
	unit_tmpdir(dir, sizeof dir, "tlsrpt");
	char err[200];
	struct rpt_store *st = rpt_store_open(dir, err, sizeof err);
	cr_assert_not_null(st, "%s", err);
	int64_t today = rpt_day_of(vl_wall_time());
	struct rpt_session a = ok_session("s.test"), b = fail_session("s.test", "127.0.0.3");

	rpt_store_add(st, &a);
	rpt_store_add(st, &b);
	cr_assert_eq(rpt_store_flush(st), 0);
	rpt_day_format(today, date);
	snprintf(path, sizeof path, "%s/%s/s.test.json", dir, date);
	cr_assert_eq(access(path, F_OK), 0, "%s not written", path);
	json_t *before = rpt_store_get(st, today, "S.test");
	cr_assert_not_null(before);
	rpt_store_add(st, &a);    /* not flushed: lost at a crash */
	rpt_store_close(st);
	st = rpt_store_open(dir, err, sizeof err);
	json_t *after = rpt_store_get(st, today, "s.test");
	cr_assert(json_equal(before, after), "reloaded differently");
	cr_assert_null(rpt_store_get(st, today, "other.test"));
	cr_assert_null(rpt_store_get(st, today - 1, "s.test"));
	cr_assert_eq(rpt_store_sent(st, today, "s.test"), false);
	cr_assert_eq(rpt_store_mark_sent(st, today, "s.test", "sent"), 0);
	cr_assert_eq(rpt_store_sent(st, today, "s.test"), true);
	int64_t days[4];
	cr_assert_eq(rpt_store_days(st, today + 1, days, 4), 1);
	cr_assert_eq(days[0], today);
	cr_assert_eq(rpt_store_days(st, today, days, 4), 0, "only days before");
	json_t *doms = rpt_store_domains(st, today);
	cr_assert_eq(json_array_size(doms), 1);
	cr_assert_str_eq(json_string_value(json_array_get(doms, 0)), "s.test");
	rpt_store_remove_day(st, today);
	cr_assert_neq(access(path, F_OK), 0);
	json_decref(before);
	json_decref(after);
	json_decref(doms);
	rpt_store_close(st);
	unit_rmdir(dir);
}

static int rec(const char *s, struct rpt_record *r, char *err)
{
	return rpt_record_parse(s, strlen(s), r, err, 200);
}

Test(tlsrpt, txt_records)
{
	struct rpt_record r;
	char err[200];

	cr_assert_eq(rec("v=TLSRPTv1; rua=mailto:reports@example.com", &r, err), 0, "%s", err);
	cr_assert_eq(r.nrua, 1);
	cr_assert_str_eq(r.rua[0], "mailto:reports@example.com");
	cr_assert_eq(rec("v=TLSRPTv1;rua=https://r.example/x , mailto:a@b.example;", &r, err), 0,
		     "%s", err);
	cr_assert_eq(r.nrua, 2);
	cr_assert_str_eq(r.rua[0], "https://r.example/x");
	cr_assert_str_eq(r.rua[1], "mailto:a@b.example");
	cr_assert_eq(rec("v=TLSRPTv1; ext.x=1; rua=ftp://x/y,https://ok.example/; later=2", &r,
			 err), 0, "extensions ignored, other schemes skipped: %s", err);
	cr_assert_eq(r.nrua, 1);
	cr_assert_str_eq(r.rua[0], "https://ok.example/");
	cr_assert_eq(rec("v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example", &r, err), 0);
	cr_assert_eq(r.nrua, 1, "the first rua counts");

	static const char *const bad[] = {
		"", "v=TLSRPTv2; rua=mailto:a@b", "rua=mailto:a@b; v=TLSRPTv1", "v=TLSRPTv1;",
		"v=TLSRPTv1 rua=mailto:a@b", "v=TLSRPTv1; rua=", "v=TLSRPTv1; rua=ftp://x",
		"v=TLSRPTv1; rua=mailto:", "v=TLSRPTv1; rua=mailto:@b", "v=TLSRPTv1; rua=https://",
		"v=TLSRPTv1; =x; rua=mailto:a@b", "v=TLSRPTv1; ext; rua=mailto:a@b",
		"v=TLSRPTv1; rua=mailto:a@b\x01", "v=tlsrptv1; rua=mailto:a@b",
		"v=TLSRPTv1; ext=; rua=mailto:a@b", "v=TLSRPTv1; rua=mailto:a@b,",
		"v=TLSRPTv1; abcdefghijklmnopqrstuvwxyz0123456789=1; rua=mailto:a@b",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(rec(bad[i], &r, err), -1, "accepted \"%s\"", bad[i]);
	cr_assert_eq(rpt_record_parse("v=TLSRPTv1; rua=mailto:a@b\0x", 27, &r, err, 200), -1,
		     "a NUL inside");
}

Test(tlsrpt, txt_record_bounds)
{
	struct vl_buf b;
	struct rpt_record r;
	char err[200];

	vl_buf_init(&b);
	vl_buf_appends(&b, "v=TLSRPTv1; rua=https://");
	for (int i = 0; i < RPT_URI_MAX; i++)
		vl_buf_appends(&b, "x");
	vl_buf_appends(&b, ",mailto:a@b.example");
	for (int i = 0; i < 20; i++)
		vl_buf_printf(&b, ",mailto:n%d@b.example", i);
	cr_assert_eq(rpt_record_parse(b.p, b.len, &r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r.nrua, RPT_RUA_MAX, "at most RPT_RUA_MAX kept");
	cr_assert_str_eq(r.rua[0], "mailto:a@b.example", "the over-long URI skipped");
	vl_buf_free(&b);
}
