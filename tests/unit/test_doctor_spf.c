/* doctor/spf.c: the SPF record parser, macros and check_host() over a
 * table of DNS answers (includes, redirects, a, mx, exists, the lookup
 * and void limits, loops, permerror and temperror). */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <string.h>

#include "../../doctor/doctor.h"

/* A DNS world: name -> TXT records, addresses, MX addresses. */
struct zrec {
	const char *name;
	enum doc_q q;
	enum doc_rc rc;
	const char *txt[4];
	const char *ips[4];
	size_t nmx;
};

struct world {
	const struct zrec *z;
	size_t n;
	unsigned asked;
	struct doc_ip ip[4];
	const char *txt[4];
};

static void lookup(void *arg, enum doc_q q, const char *name, struct doc_answer *a)
{
	struct world *w = arg;

	w->asked++;
	*a = (struct doc_answer){ .rc = DOC_RC_NXDOMAIN };
	/* ADDR() records answer A and AAAA queries, each its own family */
	int fam = q == DOC_Q_A ? AF_INET : q == DOC_Q_AAAA ? AF_INET6 : 0;
	enum doc_q zq = q == DOC_Q_AAAA ? DOC_Q_A : q;
	for (size_t i = 0; i < w->n; i++) {
		const struct zrec *z = &w->z[i];
		if (z->q != zq || strcmp(z->name, name))
			continue;
		a->rc = z->rc;
		size_t k = 0;
		bool names = q == DOC_Q_TXT || q == DOC_Q_PTR;
		for (size_t j = 0; j < 4 && (names ? z->txt[j] : z->ips[j]); j++) {
			if (names) {
				w->txt[k++] = z->txt[j];
				continue;
			}
			cr_assert_eq(doc_ip_parse(z->ips[j], &w->ip[k]), 0);
			k += !fam || w->ip[k].family == fam;
		}
		a->n = k;
		a->txt = w->txt;
		a->ip = w->ip;
		a->nmx = z->nmx;
		if (a->rc == DOC_RC_OK && !k)
			a->rc = DOC_RC_NODATA;
		return;
	}
}

static enum doc_spf_result run(const struct zrec *z, size_t n, const char *ip,
			       const char *domain, struct doc_spf_out *out)
{
	struct world w = { .z = z, .n = n };
	struct doc_spf_query q = { .domain = domain, .sender = "bounce@x.test", .helo = "mta.x.test" };

	cr_assert_eq(doc_ip_parse(ip, &q.ip), 0);
	doc_spf_check(&q, lookup, &w, out);
	return out->result;
}

#define TXT(n, ...) { .name = n, .q = DOC_Q_TXT, .rc = DOC_RC_OK, .txt = { __VA_ARGS__ } }
#define ADDR(n, ...) { .name = n, .q = DOC_Q_A, .rc = DOC_RC_OK, .ips = { __VA_ARGS__ } }
#define PTR(n, ...) { .name = n, .q = DOC_Q_PTR, .rc = DOC_RC_OK, .txt = { __VA_ARGS__ } }

Test(doctor_spf, include_chain_passes_and_counts_lookups)
{
	static const struct zrec z[] = {
		TXT("good.test", "v=spf1 include:_spf.good.test -all"),
		TXT("_spf.good.test", "v=spf1 include:_net.good.test ~all"),
		TXT("_net.good.test", "v=spf1 ip4:127.0.0.0/29 ip6:2001:db8::/32 -all"),
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 3, "127.0.0.5", "good.test", &o), DOC_SPF_PASS, "%s", o.why);
	cr_assert_eq(o.lookups, 2);
	cr_assert(strstr(o.why, "ip4:127.0.0.0/29"), "%s", o.why);
	cr_assert_eq(run(z, 3, "2001:db8::9", "good.test", &o), DOC_SPF_PASS);
	/* outside: the include's -all is no match; the top's -all fails */
	cr_assert_eq(run(z, 3, "127.0.0.9", "good.test", &o), DOC_SPF_FAIL);
	cr_assert(strstr(o.why, "-all"), "%s", o.why);
}

Test(doctor_spf, qualifiers_and_none)
{
	static const struct zrec z[] = {
		TXT("soft.test", "v=spf1 ?ip4:10.0.0.1 ~all"),
		TXT("other.test", "google-site-verification=abc"),
		TXT("open.test", "v=spf1 ip4:10.0.0.1 +all"),
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 3, "10.0.0.1", "soft.test", &o), DOC_SPF_NEUTRAL);
	cr_assert_eq(run(z, 3, "10.0.0.2", "soft.test", &o), DOC_SPF_SOFTFAIL);
	cr_assert(!o.plus_all);
	cr_assert_eq(run(z, 3, "10.0.0.2", "other.test", &o), DOC_SPF_NONE);
	cr_assert_eq(run(z, 3, "10.0.0.2", "absent.test", &o), DOC_SPF_NONE);
	cr_assert_eq(run(z, 3, "10.0.0.2", "open.test", &o), DOC_SPF_PASS);
	cr_assert(o.plus_all);
	cr_assert_eq(run(z, 3, "10.0.0.1", "open.test", &o), DOC_SPF_PASS);
	cr_assert(!o.plus_all);
}

Test(doctor_spf, a_mx_exists_and_cidr)
{
	static const struct zrec z[] = {
		TXT("a.test", "v=spf1 a:host.a.test/24 -all"),
		ADDR("host.a.test", "192.0.2.1"),
		TXT("mx.test", "v=spf1 mx -all"),
		{ .name = "mx.test", .q = DOC_Q_MX, .rc = DOC_RC_OK, .ips = { "198.51.100.7" },
		  .nmx = 1 },
		TXT("ex.test", "v=spf1 exists:%{i}.allow.ex.test -all"),
		ADDR("203.0.113.5.allow.ex.test", "127.0.0.2"),
		TXT("dual.test", "v=spf1 a:h.dual.test/32//64 -all"),
		ADDR("h.dual.test", "192.0.2.1", "2001:db8::1"),
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 8, "192.0.2.200", "a.test", &o), DOC_SPF_PASS);
	cr_assert_eq(run(z, 8, "192.0.3.1", "a.test", &o), DOC_SPF_FAIL);
	cr_assert_eq(run(z, 8, "198.51.100.7", "mx.test", &o), DOC_SPF_PASS);
	cr_assert_eq(run(z, 8, "198.51.100.8", "mx.test", &o), DOC_SPF_FAIL);
	cr_assert_eq(run(z, 8, "203.0.113.5", "ex.test", &o), DOC_SPF_PASS, "%s", o.why);
	cr_assert_eq(run(z, 8, "203.0.113.6", "ex.test", &o), DOC_SPF_FAIL);
	cr_assert_eq(run(z, 8, "2001:db8::ffff", "dual.test", &o), DOC_SPF_PASS, "%s", o.why);
	cr_assert_eq(run(z, 8, "192.0.2.2", "dual.test", &o), DOC_SPF_FAIL);
}

Test(doctor_spf, redirect_and_redirect_loop)
{
	static const struct zrec z[] = {
		TXT("r.test", "v=spf1 redirect=_spf.r.test"),
		TXT("_spf.r.test", "v=spf1 ip4:10.1.1.1 -all"),
		TXT("loop1.test", "v=spf1 redirect=loop2.test"),
		TXT("loop2.test", "v=spf1 redirect=loop1.test"),
		TXT("nored.test", "v=spf1 redirect=nothing.test"),
		TXT("allfirst.test", "v=spf1 -all redirect=_spf.r.test"),
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 6, "10.1.1.1", "r.test", &o), DOC_SPF_PASS);
	cr_assert_eq(run(z, 6, "10.1.1.2", "r.test", &o), DOC_SPF_FAIL);
	cr_assert_eq(run(z, 6, "10.1.1.1", "loop1.test", &o), DOC_SPF_PERMERROR);
	cr_assert(strstr(o.why, "more than 10"), "%s", o.why);
	cr_assert_eq(o.lookups, 11);
	cr_assert_eq(run(z, 6, "10.1.1.1", "nored.test", &o), DOC_SPF_PERMERROR);
	cr_assert(strstr(o.why, "redirect=nothing.test"), "%s", o.why);
	/* a mechanism that matches wins over redirect */
	cr_assert_eq(run(z, 6, "10.1.1.1", "allfirst.test", &o), DOC_SPF_FAIL);
}

Test(doctor_spf, ten_lookup_limit)
{
	/* 11 includes of records that match nothing */
	static const struct zrec z[] = {
		TXT("many.test", "v=spf1 include:i.test include:i.test include:i.test include:i.test "
		    "include:i.test include:i.test include:i.test include:i.test include:i.test "
		    "include:i.test include:i.test ip4:10.9.9.9 -all"),
		TXT("ten.test", "v=spf1 include:i.test include:i.test include:i.test include:i.test "
		    "include:i.test include:i.test include:i.test include:i.test include:i.test "
		    "include:i.test ip4:10.9.9.9 -all"),
		TXT("i.test", "v=spf1 ip4:192.0.2.1 -all"),
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 3, "10.9.9.9", "many.test", &o), DOC_SPF_PERMERROR);
	cr_assert(strstr(o.why, "10 DNS-querying"), "%s", o.why);
	cr_assert_eq(run(z, 3, "10.9.9.9", "ten.test", &o), DOC_SPF_PASS, "%s", o.why);
	cr_assert_eq(o.lookups, 10);
	/* an early match stops before the limit is reached */
	cr_assert_eq(run(z, 3, "192.0.2.1", "many.test", &o), DOC_SPF_PASS);
	cr_assert_eq(o.lookups, 1);
}

Test(doctor_spf, void_lookup_limit)
{
	static const struct zrec z[] = {
		TXT("void.test", "v=spf1 a:n1.test a:n2.test a:n3.test ip4:10.0.0.1 -all"),
		TXT("two.test", "v=spf1 a:n1.test a:n2.test ip4:10.0.0.1 -all"),
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 2, "10.0.0.1", "void.test", &o), DOC_SPF_PERMERROR);
	cr_assert(strstr(o.why, "void"), "%s", o.why);
	cr_assert_eq(o.voids, 3);
	cr_assert_eq(run(z, 2, "10.0.0.1", "two.test", &o), DOC_SPF_PASS);
}

Test(doctor_spf, temperror_and_permerrors)
{
	static const struct zrec z[] = {
		{ .name = "temp.test", .q = DOC_Q_TXT, .rc = DOC_RC_TEMP },
		TXT("inc.test", "v=spf1 include:temp.test -all"),
		TXT("two.test", "v=spf1 -all", "v=spf1 +all"),
		TXT("bad.test", "v=spf1 ip4:300.0.0.1 -all"),
		TXT("unk.test", "v=spf1 foo:bar -all"),
		TXT("incnone.test", "v=spf1 include:none.test -all"),
		TXT("mx11.test", "v=spf1 mx -all"),
		{ .name = "mx11.test", .q = DOC_Q_MX, .rc = DOC_RC_OK, .ips = { "10.0.0.1" },
		  .nmx = 11 },
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 8, "10.0.0.1", "temp.test", &o), DOC_SPF_TEMPERROR);
	cr_assert_eq(run(z, 8, "10.0.0.1", "inc.test", &o), DOC_SPF_TEMPERROR);
	cr_assert_eq(run(z, 8, "10.0.0.1", "two.test", &o), DOC_SPF_PERMERROR);
	cr_assert(strstr(o.why, "more than one"), "%s", o.why);
	cr_assert_eq(run(z, 8, "10.0.0.1", "bad.test", &o), DOC_SPF_PERMERROR);
	cr_assert_eq(run(z, 8, "10.0.0.1", "unk.test", &o), DOC_SPF_PERMERROR);
	cr_assert(strstr(o.why, "foo:bar"), "%s", o.why);
	cr_assert_eq(run(z, 8, "10.0.0.1", "incnone.test", &o), DOC_SPF_PERMERROR);
	cr_assert_eq(run(z, 8, "10.0.0.1", "mx11.test", &o), DOC_SPF_PERMERROR);
}

Test(doctor_spf, void_per_family_and_ptr)
{
	static const struct zrec z[] = {
		/* v4.test has only A records: for an IPv6 sender its a: is void */
		TXT("fam.test", "v=spf1 a:v4.test a:v4.test a:v4.test ip6:2001:db8::1 -all"),
		ADDR("v4.test", "192.0.2.1"),
		TXT("ptr.test", "v=spf1 ptr:ptr.test -all"),
		PTR("192.0.2.7", "other.example", "mta.ptr.test"),
		ADDR("mta.ptr.test", "192.0.2.7"),
		PTR("192.0.2.8", "fake.ptr.test"),
		ADDR("fake.ptr.test", "192.0.2.99"),
	};
	struct doc_spf_out o;

	cr_assert_eq(run(z, 7, "2001:db8::1", "fam.test", &o), DOC_SPF_PERMERROR, "%s", o.why);
	cr_assert_eq(o.voids, 3);
	cr_assert_eq(run(z, 7, "192.0.2.1", "fam.test", &o), DOC_SPF_PASS);
	cr_assert_eq(run(z, 7, "192.0.2.7", "ptr.test", &o), DOC_SPF_PASS, "%s", o.why);
	/* a PTR name that does not resolve back is no match */
	cr_assert_eq(run(z, 7, "192.0.2.8", "ptr.test", &o), DOC_SPF_FAIL);
	cr_assert_eq(run(z, 7, "192.0.2.9", "ptr.test", &o), DOC_SPF_FAIL);
}

Test(doctor_spf, parser_terms)
{
	struct doc_spf_rec *r = malloc(sizeof *r);
	char err[200];

	cr_assert_eq(doc_spf_parse("v=spf1 +a mx/24 ~ip4:10.0.0.0/8 ip6:::1 exists:%{ir}.x "
				   "redirect=y.test unknown-mod=z exp=e.%{d}", r, err, sizeof err),
		     0, "%s", err);
	cr_assert_eq(r->n, 7);
	cr_assert_eq(r->t[1].mech, DOC_M_MX);
	cr_assert_eq(r->t[1].cidr4, 24);
	cr_assert_eq(r->t[2].qual, '~');
	cr_assert_eq(r->t[2].cidr4, 8);
	cr_assert_str_eq(r->t[4].spec, "%{ir}.x");
	cr_assert_str_eq(r->redirect->spec, "y.test");
	cr_assert_str_eq(r->exp->spec, "e.%{d}");
	cr_assert(!doc_spf_is_record("v=spf10 -all"));
	cr_assert(doc_spf_is_record("V=SPF1"));
	const char *bad[] = {
		"v=spf1 all:x", "v=spf1 include", "v=spf1 ip4:10.0.0.0/33", "v=spf1 ip6:::1/129",
		"v=spf1 a/33", "v=spf1 redirect=a redirect=b", "v=spf1 exists:%{z}",
		"v=spf1 include:%", "v=spf1 ptr/24", "v=spf1 ip4:::1", "v=spf1 a:x/08",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(doc_spf_parse(bad[i], r, err, sizeof err), -1, "%s", bad[i]);
	/* bounds: 128 terms fit, 129 do not; a record over 4096 octets does not */
	char big[5000] = "v=spf1";
	for (int i = 0; i < 128; i++)
		strcat(big, " a");
	cr_assert_eq(doc_spf_parse(big, r, err, sizeof err), 0, "%s", err);
	cr_assert_eq(r->n, 128);
	strcat(big, " a");
	cr_assert_eq(doc_spf_parse(big, r, err, sizeof err), -1);
	cr_assert(strstr(err, "128"), "%s", err);
	memset(big + 6, ' ', 4094);
	strcpy(big + 4100, "-all");
	cr_assert_eq(doc_spf_parse(big, r, err, sizeof err), -1);
	cr_assert(strstr(err, "octets"), "%s", err);
	free(r);
}

Test(doctor_spf, macros)
{
	struct doc_spf_query q = { .domain = "email.example.com", .sender = "strong-bad@email.example.com",
				   .helo = "mx.example.org" };
	char out[300];

	/* RFC 7208 7.4's examples */
	cr_assert_eq(doc_ip_parse("192.0.2.3", &q.ip), 0);
	cr_assert_eq(doc_spf_expand("%{s}", &q, q.domain, out, sizeof out), 0);
	cr_assert_str_eq(out, "strong-bad@email.example.com");
	doc_spf_expand("%{d4}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "email.example.com");
	doc_spf_expand("%{d2}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "example.com");
	doc_spf_expand("%{dr}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "com.example.email");
	doc_spf_expand("%{d2r}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "example.email");
	doc_spf_expand("%{l-}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "strong.bad");
	doc_spf_expand("%{lr-}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "bad.strong");
	doc_spf_expand("%{l1r-}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "strong");
	doc_spf_expand("%{ir}.%{v}._spf.%{d2}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "3.2.0.192.in-addr._spf.example.com");
	doc_spf_expand("%{lr-}.lp._spf.%{d2}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "bad.strong.lp._spf.example.com");
	cr_assert_eq(doc_ip_parse("2001:db8::cb01", &q.ip), 0);
	doc_spf_expand("%{ir}.%{v}._spf.%{d2}", &q, q.domain, out, sizeof out);
	cr_assert_str_eq(out, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
			      ".ip6._spf.example.com");
	cr_assert_eq(doc_spf_expand("%{d0}", &q, q.domain, out, sizeof out), -1);
	cr_assert_eq(doc_spf_expand("%{q}", &q, q.domain, out, sizeof out), -1);
}

Test(doctor_spf, ip_prefixes)
{
	struct doc_ip a, n;

	doc_ip_parse("10.1.2.3", &a);
	doc_ip_parse("10.1.0.0", &n);
	cr_assert(doc_ip_in(&a, &n, 16));
	cr_assert(!doc_ip_in(&a, &n, 24));
	cr_assert(doc_ip_in(&a, &n, 0));
	cr_assert(!doc_ip_in(&a, &n, 33));
	doc_ip_parse("2001:db8::", &n);
	cr_assert(!doc_ip_in(&a, &n, 0), "families differ");
	cr_assert_eq(doc_ip_parse("nope", &a), -1);
}
