/* dns/parse.c: answers built octet by octet (TLSA, MX, CNAME chains,
 * negative answers and their SOA TTLs, lame and malformed ones), names,
 * queries and address classes. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <string.h>

#include "../../dns/dns_int.h"

struct msg {
	uint8_t b[2048];
	size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put8(struct msg *m, unsigned v) { m->b[m->n++] = (uint8_t)v; }

static void put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

static void name(struct msg *m, const char *s)
{
	while (*s) {
		size_t l = strcspn(s, ".");
		put8(m, (unsigned)l);
		put(m, s, l);
		s += l + (s[l] == '.');
	}
	put8(m, 0);
}

/* Header and one question; counts are patched by rr()/auth(). */
static void start(struct msg *m, unsigned flags, const char *q, unsigned qtype)
{
	m->n = 0;
	put16(m, 0x1234);
	put16(m, 0x8000 | flags);
	put16(m, 1);
	put16(m, 0);
	put16(m, 0);
	put16(m, 0);
	name(m, q);
	put16(m, qtype);
	put16(m, 1);
}

static void bump(struct msg *m, size_t at) { m->b[at + 1]++; }

/* An RR whose rdata is rd (len octets); section: 6 answer, 8 authority. */
static void rr(struct msg *m, size_t section, const char *owner, unsigned type,
	       uint32_t ttl, const void *rd, size_t len)
{
	name(m, owner);
	put16(m, type);
	put16(m, 1);
	put32(m, ttl);
	put16(m, (unsigned)len);
	put(m, rd, len);
	bump(m, section);
}

static void mx_rr(struct msg *m, const char *owner, uint32_t ttl, unsigned pref,
		  const char *target)
{
	struct msg rd = { .n = 0 };
	put16(&rd, pref);
	name(&rd, target);
	rr(m, 6, owner, DNS_T_MX, ttl, rd.b, rd.n);
}

static void soa_rr(struct msg *m, const char *zone, uint32_t ttl, uint32_t minimum)
{
	struct msg rd = { .n = 0 };
	name(&rd, "ns.example");
	name(&rd, "hostmaster.example");
	put32(&rd, 1);
	put32(&rd, 3600);
	put32(&rd, 600);
	put32(&rd, 86400);
	put32(&rd, minimum);
	rr(m, 8, zone, DNS_T_SOA, ttl, rd.b, rd.n);
}

#define RA 0x0080
#define AD 0x0020

Test(dns_parse, tlsa_records_and_ad)
{
	struct msg m;
	struct dns_ans a;
	uint8_t r1[35] = { 3, 1, 1 }, r2[] = { 2, 0, 0, 0xaa, 0xbb };

	for (int i = 0; i < 32; i++)
		r1[3 + i] = (uint8_t)i;
	start(&m, RA | AD, "_25._tcp.mx.example", DNS_T_TLSA);
	rr(&m, 6, "_25._tcp.mx.example", DNS_T_TLSA, 300, r1, sizeof r1);
	rr(&m, 6, "_25._tcp.mx.example", DNS_T_TLSA, 120, r2, sizeof r2);
	cr_assert_eq(dns_parse_answer(m.b, m.n, "_25._tcp.mx.example", DNS_T_TLSA, &a), 0);
	cr_assert_eq(a.status, DNS_OK);
	cr_assert(a.ad);
	cr_assert_eq(a.n, 2);
	cr_assert_eq(a.ttl, 120);
	cr_assert_eq(a.u.tlsa[0].usage, 3);
	cr_assert_eq(a.u.tlsa[0].selector, 1);
	cr_assert_eq(a.u.tlsa[0].mtype, 1);
	cr_assert_eq(a.u.tlsa[0].len, 32);
	cr_assert_eq(a.u.tlsa[0].data[31], 31);
	cr_assert_eq(a.u.tlsa[1].usage, 2);
	cr_assert_eq(a.u.tlsa[1].len, 2);
	cr_assert_eq(a.u.tlsa[1].data[1], 0xbb);
	dns_ans_free(&a);
}

Test(dns_parse, txt_strings_joined_and_bad_lengths_skipped)
{
	struct msg m;
	struct dns_ans a;
	uint8_t r1[] = { 6, 'v', '=', 'S', 'T', 'S', 'v', 3, '1', ';', ' ', 0 };
	uint8_t r2[] = { 4, 'a', 'b' };  /* claims 4 octets, has 2 */
	uint8_t r3[] = { 3, 'x', 0, 'y' };

	start(&m, RA | AD, "_mta-sts.example", DNS_T_TXT);
	rr(&m, 6, "_mta-sts.example", DNS_T_TXT, 300, r1, sizeof r1);
	rr(&m, 6, "_mta-sts.example", DNS_T_TXT, 300, r2, sizeof r2);
	rr(&m, 6, "_mta-sts.example", DNS_T_TXT, 300, r3, sizeof r3);
	cr_assert_eq(dns_parse_answer(m.b, m.n, "_mta-sts.example", DNS_T_TXT, &a), 0);
	cr_assert_eq(a.status, DNS_OK);
	cr_assert(a.ad);
	cr_assert_eq(a.n, 2);
	cr_assert_eq(a.u.txt[0].len, 9);
	cr_assert_str_eq(a.u.txt[0].data, "v=STSv1; ");
	cr_assert_eq(a.u.txt[1].len, 3);  /* a NUL inside is kept, and counted */
	cr_assert_eq(memcmp(a.u.txt[1].data, "x\0y", 4), 0);
	dns_ans_free(&a);
}

Test(dns_parse, tlsa_short_rdata_skipped_and_no_ad)
{
	struct msg m;
	struct dns_ans a;
	uint8_t bad[] = { 3, 1 }, ok[] = { 3, 1, 1, 9 };

	start(&m, RA, "_25._tcp.mx.example", DNS_T_TLSA);
	rr(&m, 6, "_25._tcp.mx.example", DNS_T_TLSA, 60, bad, sizeof bad);
	rr(&m, 6, "_25._tcp.mx.example", DNS_T_TLSA, 60, ok, sizeof ok);
	cr_assert_eq(dns_parse_answer(m.b, m.n, "_25._tcp.mx.example", DNS_T_TLSA, &a), 0);
	cr_assert_not(a.ad);
	cr_assert_eq(a.n, 1);
	cr_assert_eq(a.u.tlsa[0].data[0], 9);
	dns_ans_free(&a);
}

Test(dns_parse, mx_with_compression_and_case)
{
	struct msg m;
	struct dns_ans a;

	start(&m, RA, "Example.ORG", DNS_T_MX);
	/* owner: a pointer to the question name at offset 12 */
	uint8_t rd[] = { 0, 10, 2, 'M', 'X', 0xc0, 12 };
	put16(&m, 0xc00c);
	put16(&m, DNS_T_MX);
	put16(&m, 1);
	put32(&m, 900);
	put16(&m, sizeof rd);
	put(&m, rd, sizeof rd);
	bump(&m, 6);
	mx_rr(&m, "example.org", 600, 20, "backup.example.org");
	cr_assert_eq(dns_parse_answer(m.b, m.n, "example.org", DNS_T_MX, &a), 0);
	cr_assert_eq(a.status, DNS_OK);
	cr_assert_eq(a.n, 2);
	cr_assert_str_eq(a.u.mx[0].host, "mx.example.org");
	cr_assert_eq(a.u.mx[0].pref, 10);
	cr_assert_str_eq(a.u.mx[1].host, "backup.example.org");
	cr_assert_eq(a.ttl, 600);
	cr_assert_null(a.canon);
	dns_ans_free(&a);
}

Test(dns_parse, null_mx_is_the_root)
{
	struct msg m;
	struct dns_ans a;

	start(&m, RA, "nomail.example", DNS_T_MX);
	mx_rr(&m, "nomail.example", 3600, 0, "");
	cr_assert_eq(dns_parse_answer(m.b, m.n, "nomail.example", DNS_T_MX, &a), 0);
	cr_assert_eq(a.n, 1);
	cr_assert_str_eq(a.u.mx[0].host, "");
	dns_ans_free(&a);
}

Test(dns_parse, cname_chain_followed)
{
	struct msg m;
	struct dns_ans a;
	struct msg t1 = { .n = 0 }, t2 = { .n = 0 };
	uint8_t ip[4] = { 192, 0, 2, 7 };

	name(&t1, "b.example");
	name(&t2, "c.example");
	start(&m, RA, "a.example", DNS_T_A);
	rr(&m, 6, "a.example", DNS_T_CNAME, 50, t1.b, t1.n);
	rr(&m, 6, "b.example", DNS_T_CNAME, 500, t2.b, t2.n);
	rr(&m, 6, "c.example", DNS_T_A, 400, ip, 4);
	rr(&m, 6, "other.example", DNS_T_A, 10, ip, 4);   /* not on the chain */
	cr_assert_eq(dns_parse_answer(m.b, m.n, "a.example", DNS_T_A, &a), 0);
	cr_assert_eq(a.status, DNS_OK);
	cr_assert_eq(a.n, 1);
	cr_assert_str_eq(a.canon, "c.example");
	cr_assert_eq(a.ttl, 50);
	cr_assert_eq(a.cname_ttl, 50);
	cr_assert_eq(a.u.addr[0].family, AF_INET);
	cr_assert_eq(a.u.addr[0].ip[3], 7);
	dns_ans_free(&a);
}

Test(dns_parse, cname_without_target_data_is_nodata_uncached)
{
	struct msg m;
	struct dns_ans a;
	struct msg t = { .n = 0 };

	name(&t, "target.example");
	start(&m, RA, "alias.example", DNS_T_A);
	rr(&m, 6, "alias.example", DNS_T_CNAME, 3600, t.b, t.n);
	cr_assert_eq(dns_parse_answer(m.b, m.n, "alias.example", DNS_T_A, &a), 0);
	cr_assert_eq(a.status, DNS_NODATA);
	cr_assert_str_eq(a.canon, "target.example");
	cr_assert_eq(a.ttl, 0);
	cr_assert_eq(a.cname_ttl, 3600);
	dns_ans_free(&a);
}

Test(dns_parse, nxdomain_ttl_from_soa)
{
	struct msg m;
	struct dns_ans a;

	start(&m, RA | 3, "nope.example", DNS_T_MX);
	soa_rr(&m, "example", 3600, 300);
	cr_assert_eq(dns_parse_answer(m.b, m.n, "nope.example", DNS_T_MX, &a), 0);
	cr_assert_eq(a.status, DNS_NXDOMAIN);
	cr_assert_eq(a.ttl, 300);          /* min(SOA TTL, MINIMUM) */
	dns_ans_free(&a);

	start(&m, RA | 3, "nope.example", DNS_T_MX);
	soa_rr(&m, "example", 60, 300);
	dns_parse_answer(m.b, m.n, "nope.example", DNS_T_MX, &a);
	cr_assert_eq(a.ttl, 60);
	dns_ans_free(&a);
}

Test(dns_parse, nodata_with_and_without_soa)
{
	struct msg m;
	struct dns_ans a;

	start(&m, RA, "a.example", DNS_T_AAAA);
	soa_rr(&m, "example", 900, 120);
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_AAAA, &a);
	cr_assert_eq(a.status, DNS_NODATA);
	cr_assert_eq(a.ttl, 120);
	dns_ans_free(&a);

	start(&m, RA, "a.example", DNS_T_AAAA);
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_AAAA, &a);
	cr_assert_eq(a.status, DNS_NODATA);
	cr_assert_eq(a.ttl, 0);
	dns_ans_free(&a);
}

Test(dns_parse, lame_answers)
{
	struct msg m, ns = { .n = 0 };
	struct dns_ans a;

	name(&ns, "ns1.elsewhere");
	start(&m, RA, "a.example", DNS_T_MX);          /* a referral */
	rr(&m, 8, "example", DNS_T_NS, 60, ns.b, ns.n);
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_MX, &a);
	cr_assert_eq(a.status, DNS_LAME);
	cr_assert_not(dns_status_permanent(a.status));
	dns_ans_free(&a);

	start(&m, 0, "a.example", DNS_T_MX);           /* no recursion */
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_MX, &a);
	cr_assert_eq(a.status, DNS_LAME);
	dns_ans_free(&a);
}

Test(dns_parse, rcodes)
{
	struct msg m;
	struct dns_ans a;

	start(&m, RA | 2, "a.example", DNS_T_MX);
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_MX, &a);
	cr_assert_eq(a.status, DNS_SERVFAIL);
	start(&m, RA | 5, "a.example", DNS_T_MX);
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_MX, &a);
	cr_assert_eq(a.status, DNS_SERVFAIL);
	start(&m, RA | 4, "a.example", DNS_T_MX);
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_MX, &a);
	cr_assert_eq(a.status, DNS_ERROR);
}

Test(dns_parse, malformed)
{
	struct msg m;
	struct dns_ans a;
	uint8_t ip[4] = { 1, 2, 3, 4 };

	start(&m, RA, "a.example", DNS_T_A);
	rr(&m, 6, "a.example", DNS_T_A, 60, ip, 4);
	for (size_t cut = 0; cut < m.n; cut++) {   /* every truncation */
		int rc = dns_parse_answer(m.b, cut, "a.example", DNS_T_A, &a);
		cr_assert(rc == -1 || a.n == 0, "cut %zu", cut);
		if (rc == -1)
			cr_assert_eq(a.status, DNS_ERROR);
		dns_ans_free(&a);
	}
	start(&m, RA, "a.example", DNS_T_A);       /* a pointer to itself */
	put16(&m, 0xc000 | (unsigned)m.n);
	put16(&m, DNS_T_A);
	put16(&m, 1);
	put32(&m, 60);
	put16(&m, 4);
	put(&m, ip, 4);
	bump(&m, 6);
	cr_assert_eq(dns_parse_answer(m.b, m.n, "a.example", DNS_T_A, &a), -1);
	cr_assert_eq(a.status, DNS_ERROR);
	start(&m, RA, "a.example", DNS_T_A);       /* wrong A length */
	rr(&m, 6, "a.example", DNS_T_A, 60, ip, 3);
	dns_parse_answer(m.b, m.n, "a.example", DNS_T_A, &a);
	cr_assert_eq(a.n, 0);
	dns_ans_free(&a);
}

Test(dns_parse, mx_target_with_bad_octets_kept_for_the_caller)
{
	struct msg m;
	struct dns_ans a;

	start(&m, RA, "x.example", DNS_T_MX);
	mx_rr(&m, "x.example", 60, 10, "bad host.example");
	dns_parse_answer(m.b, m.n, "x.example", DNS_T_MX, &a);
	cr_assert_eq(a.n, 1);
	cr_assert_str_eq(a.u.mx[0].host, "bad?host.example");
	char out[DNS_NAME_MAX];
	cr_assert_eq(dns_normalize(a.u.mx[0].host, out), -1);
	dns_ans_free(&a);
}

Test(dns_parse, build_query_bits)
{
	uint8_t *q;
	size_t n;

	cr_assert_eq(dns_build_query("mx.example", DNS_T_TLSA, true, &q, &n), 0);
	cr_assert_eq(n, 12 + 12 + 4 + 11);
	cr_assert_eq(q[2], 0x01);                  /* RD */
	cr_assert_eq(q[3], 0x20);                  /* AD */
	cr_assert_eq(q[5], 1);
	cr_assert_eq(q[11], 1);
	cr_assert_eq(q[12], 2);
	cr_assert_eq(memcmp(q + 13, "mx", 2), 0);
	cr_assert_eq(q[24 + 1], DNS_T_TLSA);
	cr_assert_eq(q[n - 11 + 2], DNS_T_OPT);
	cr_assert_eq(q[n - 11 + 3] << 8 | q[n - 11 + 4], DNS_EDNS_SIZE);
	cr_assert_eq(q[n - 4], 0x80);              /* DO */
	free(q);
	cr_assert_eq(dns_build_query("mx.example", DNS_T_A, false, &q, &n), 0);
	cr_assert_eq(q[n - 4], 0);
	free(q);
	cr_assert_eq(dns_build_query("a..b", DNS_T_A, false, &q, &n), -1);
}

Test(dns_parse, normalize_and_literals)
{
	char out[DNS_NAME_MAX];

	cr_assert_eq(dns_normalize("Mail.Example.COM.", out), 0);
	cr_assert_str_eq(out, "mail.example.com");
	cr_assert_eq(dns_normalize("_25._tcp.x", out), 0);
	cr_assert_eq(dns_normalize("", out), -1);
	cr_assert_eq(dns_normalize(".", out), -1);
	cr_assert_eq(dns_normalize("a..b", out), -1);
	cr_assert_eq(dns_normalize("a b.example", out), -1);
	char long_label[80];
	memset(long_label, 'a', 64);
	long_label[64] = '\0';
	cr_assert_eq(dns_normalize(long_label, out), -1);
	cr_assert(vl_ip_literal("192.0.2.1"));
	cr_assert(vl_ip_literal("[192.0.2.1]"));
	cr_assert(vl_ip_literal("2001:db8::1"));
	cr_assert_not(vl_ip_literal("mx1.example"));
	cr_assert_not(vl_ip_literal("1.2.3.4.example"));
}

static unsigned cls(const char *s)
{
	struct dns_addr a = { 0 };

	a.family = strchr(s, ':') ? AF_INET6 : AF_INET;
	cr_assert_eq(inet_pton(a.family, s, a.ip), 1);
	return dns_addr_classify(&a);
}

Test(dns_parse, address_classes)
{
	cr_assert_eq(cls("192.0.2.1"), 0);
	cr_assert_eq(cls("8.8.8.8"), 0);
	cr_assert_eq(cls("127.0.0.11"), DNS_ADDR_LOOPBACK);
	cr_assert_eq(cls("10.1.2.3"), DNS_ADDR_PRIVATE);
	cr_assert_eq(cls("172.16.0.1"), DNS_ADDR_PRIVATE);
	cr_assert_eq(cls("172.32.0.1"), 0);
	cr_assert_eq(cls("192.168.1.1"), DNS_ADDR_PRIVATE);
	cr_assert_eq(cls("100.64.0.1"), DNS_ADDR_PRIVATE);
	cr_assert_eq(cls("169.254.1.1"), DNS_ADDR_LINKLOCAL);
	cr_assert_eq(cls("0.0.0.0"), DNS_ADDR_UNUSABLE);
	cr_assert_eq(cls("224.0.0.1"), DNS_ADDR_UNUSABLE);
	cr_assert_eq(cls("255.255.255.255"), DNS_ADDR_UNUSABLE);
	cr_assert_eq(cls("::1"), DNS_ADDR_LOOPBACK);
	cr_assert_eq(cls("::"), DNS_ADDR_UNUSABLE);
	cr_assert_eq(cls("fe80::1"), DNS_ADDR_LINKLOCAL);
	cr_assert_eq(cls("fd00::1"), DNS_ADDR_PRIVATE);
	cr_assert_eq(cls("ff02::1"), DNS_ADDR_UNUSABLE);
	cr_assert_eq(cls("::ffff:127.0.0.1"), DNS_ADDR_LOOPBACK);
	cr_assert_eq(cls("2001:db8::1"), 0);
}

Test(dns_parse, ptr_targets_kept_and_bad_ones_skipped)
{
	struct msg m, rd1 = { .n = 0 }, rd2 = { .n = 0 };
	struct dns_ans a;
	uint8_t bad[] = { 3, 'a', '!', 'b', 0 };   /* not a host name: skipped */

	name(&rd1, "MTA1.Example.com");
	name(&rd2, "mta2.example.com");
	start(&m, RA, "1.2.0.192.in-addr.arpa", DNS_T_PTR);
	rr(&m, 6, "1.2.0.192.in-addr.arpa", DNS_T_PTR, 300, rd1.b, rd1.n);
	rr(&m, 6, "1.2.0.192.in-addr.arpa", DNS_T_PTR, 300, bad, sizeof bad);
	rr(&m, 6, "1.2.0.192.in-addr.arpa", DNS_T_PTR, 200, rd2.b, rd2.n);
	cr_assert_eq(dns_parse_answer(m.b, m.n, "1.2.0.192.in-addr.arpa", DNS_T_PTR, &a), 0);
	cr_assert_eq(a.status, DNS_OK);
	cr_assert_eq(a.n, 2);
	cr_assert_str_eq(a.u.ptr[0], "mta1.example.com");
	cr_assert_str_eq(a.u.ptr[1], "mta2.example.com");
	dns_ans_free(&a);
}
