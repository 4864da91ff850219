/* dns/mx.c: host order (RFC 5321 5.1: preference, random among equals),
 * site keys and copies of results. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <string.h>

#include "../../dns/dns_int.h"

static void hosts(struct dns_host *h, const unsigned *prefs, const char *const *names,
		  size_t n)
{
	for (size_t i = 0; i < n; i++)
		h[i] = (struct dns_host){ .name = (char *)names[i], .canon = (char *)names[i],
					  .pref = (uint16_t)prefs[i] };
}

Test(dns_mx, ordered_by_preference)
{
	static const unsigned prefs[] = { 30, 10, 20, 5 };
	static const char *const names[] = { "c", "a", "b", "first" };
	struct dns_host h[4];
	uint64_t seed = 1;

	hosts(h, prefs, names, 4);
	dns_order_hosts(h, 4, &seed);
	cr_assert_str_eq(h[0].name, "first");
	cr_assert_str_eq(h[1].name, "a");
	cr_assert_str_eq(h[2].name, "b");
	cr_assert_str_eq(h[3].name, "c");
}

Test(dns_mx, equal_preferences_shuffled_fairly)
{
	static const unsigned prefs[] = { 20, 10, 10, 10, 5 };
	static const char *const names[] = { "last", "x", "y", "z", "first" };
	struct dns_host h[5];
	unsigned firsts[3] = { 0 };
	uint64_t seed = 42;
	const int rounds = 3000;

	for (int r = 0; r < rounds; r++) {
		hosts(h, prefs, names, 5);
		dns_order_hosts(h, 5, &seed);
		cr_assert_str_eq(h[0].name, "first");
		cr_assert_str_eq(h[4].name, "last");
		for (int k = 1; k < 4; k++)
			cr_assert_eq(h[k].pref, 10);
		firsts[h[1].name[0] - 'x']++;
	}
	for (int k = 0; k < 3; k++)  /* each about 1000 of 3000 */
		cr_assert(firsts[k] > 800 && firsts[k] < 1200, "%u", firsts[k]);
}

Test(dns_mx, single_and_empty)
{
	struct dns_host h[1];
	static const unsigned prefs[] = { 0 };
	static const char *const names[] = { "only" };
	uint64_t seed = 0;

	dns_order_hosts(h, 0, &seed);
	hosts(h, prefs, names, 1);
	dns_order_hosts(h, 1, &seed);
	cr_assert_str_eq(h[0].name, "only");
}

Test(dns_mx, site_key_sorted_unique)
{
	static const unsigned prefs[] = { 10, 10, 20, 30 };
	static const char *const a_names[] = { "mx2.google.test", "mx1.google.test",
					       "alt.google.test", "mx1.google.test" };
	static const char *const b_names[] = { "alt.google.test", "mx1.google.test",
					       "mx2.google.test", "mx2.google.test" };
	struct dns_host ha[4], hb[4];
	struct dns_mx_result a = { .nhosts = 4, .hosts = ha }, b = { .nhosts = 4, .hosts = hb };
	char ka[256], kb[256];

	hosts(ha, prefs, a_names, 4);
	hosts(hb, prefs, b_names, 4);
	size_t n = dns_site_key(&a, ka, sizeof ka);
	cr_assert_str_eq(ka, "alt.google.test,mx1.google.test,mx2.google.test");
	cr_assert_eq(n, strlen(ka));
	dns_site_key(&b, kb, sizeof kb);
	cr_assert_str_eq(ka, kb);
}

Test(dns_mx, site_key_truncates_like_snprintf)
{
	static const unsigned prefs[] = { 10, 20 };
	static const char *const names[] = { "bbbb", "aaaa" };
	struct dns_host h[2];
	struct dns_mx_result m = { .nhosts = 2, .hosts = h };
	char small[6];

	hosts(h, prefs, names, 2);
	cr_assert_eq(dns_site_key(&m, small, sizeof small), 9);
	cr_assert_str_eq(small, "aaaa,");
	cr_assert_eq(dns_site_key(&m, NULL, 0), 9);
	struct dns_mx_result none = { .status = DNS_NXDOMAIN };
	cr_assert_eq(dns_site_key(&none, small, sizeof small), 0);
	cr_assert_str_eq(small, "");
}

Test(dns_mx, dup_is_deep)
{
	struct dns_addr addrs[2] = { { .family = AF_INET }, { .family = AF_INET6 } };
	char name[] = "mx.example", canon[] = "real.example";
	struct dns_host h = { .name = name, .canon = canon, .pref = 5, .naddrs = 2,
			      .addrs = addrs };
	struct dns_mx_result m = { .domain = "example", .status = DNS_OK, .why = "1 host",
				   .ttl = 300, .ad = true, .nhosts = 1, .hosts = &h };

	inet_pton(AF_INET, "192.0.2.9", addrs[0].ip);
	struct dns_mx_result *d = dns_mx_dup(&m);
	cr_assert_not_null(d);
	name[0] = 'X';
	addrs[0].ip[3] = 0;
	cr_assert_str_eq(d->domain, "example");
	cr_assert_str_eq(d->hosts[0].name, "mx.example");
	cr_assert_str_eq(d->hosts[0].canon, "real.example");
	cr_assert_eq(d->hosts[0].naddrs, 2);
	cr_assert_eq(d->hosts[0].addrs[0].ip[3], 9);
	cr_assert_eq(d->ttl, 300);
	cr_assert(d->ad);
	char ip[64];
	dns_addr_str(&d->hosts[0].addrs[0], ip, sizeof ip);
	cr_assert_str_eq(ip, "192.0.2.9");
	dns_mx_free(d);
}
