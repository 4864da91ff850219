/* dns/cache.c: entries, the LRU bound (pinned and pending entries stay),
 * TTL clamps and negative caching limits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../dns/dns_int.h"

static struct dns_entry *add_done(struct dns_cache *c, const char *name,
				  uint16_t qtype, uint64_t expires)
{
	struct dns_entry *e = dns_cache_add(c, name, qtype);

	cr_assert_not_null(e);
	dns_cache_done(c, e, expires);
	return e;
}

Test(dns_cache, find_by_name_and_type)
{
	struct dns_cache c;

	dns_cache_init(&c, 100);
	struct dns_entry *mx = add_done(&c, "example.org", DNS_T_MX, 1000);
	struct dns_entry *a = dns_cache_add(&c, "example.org", DNS_T_A);
	cr_assert(a->pending);
	cr_assert_eq(dns_cache_find(&c, "example.org", DNS_T_MX), mx);
	cr_assert_eq(dns_cache_find(&c, "example.org", DNS_T_A), a);
	cr_assert_null(dns_cache_find(&c, "example.org", DNS_T_AAAA));
	cr_assert_null(dns_cache_find(&c, "example.net", DNS_T_MX));
	cr_assert_eq(c.n, 2);
	dns_cache_remove(&c, mx);
	cr_assert_null(dns_cache_find(&c, "example.org", DNS_T_MX));
	cr_assert_eq(c.n, 1);
	dns_cache_free(&c);
}

Test(dns_cache, grows_past_initial_table)
{
	struct dns_cache c;
	char name[64];

	dns_cache_init(&c, 100000);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "d%d.example", i);
		add_done(&c, name, DNS_T_MX, 1);
	}
	cr_assert_gt(c.cap, 5000);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "d%d.example", i);
		cr_assert_not_null(dns_cache_find(&c, name, DNS_T_MX));
	}
	dns_cache_free(&c);
}

Test(dns_cache, lru_evicts_oldest_untouched)
{
	struct dns_cache c;
	char name[64];

	dns_cache_init(&c, 3);
	add_done(&c, "a", DNS_T_MX, 1);
	struct dns_entry *b = add_done(&c, "b", DNS_T_MX, 1);
	add_done(&c, "c", DNS_T_MX, 1);
	dns_cache_touch(&c, dns_cache_find(&c, "a", DNS_T_MX));
	add_done(&c, "d", DNS_T_MX, 1);          /* b is the oldest now */
	(void)b;
	cr_assert_null(dns_cache_find(&c, "b", DNS_T_MX));
	cr_assert_not_null(dns_cache_find(&c, "a", DNS_T_MX));
	cr_assert_eq(c.n, 3);
	cr_assert_eq(c.evicted, 1);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof name, "n%d", i);
		add_done(&c, name, DNS_T_A, 1);
		cr_assert_leq(c.n, 3);
	}
	dns_cache_free(&c);
}

Test(dns_cache, pinned_and_pending_entries_survive_eviction)
{
	struct dns_cache c;

	dns_cache_init(&c, 2);
	struct dns_entry *p = dns_cache_add(&c, "pending", DNS_T_MX);
	struct dns_entry *k = add_done(&c, "kept", DNS_T_MX, 1);
	k->pins++;
	add_done(&c, "x", DNS_T_MX, 1);
	add_done(&c, "y", DNS_T_MX, 1);
	cr_assert_eq(dns_cache_find(&c, "pending", DNS_T_MX), p);
	cr_assert_eq(dns_cache_find(&c, "kept", DNS_T_MX), k);
	/* removed while pinned: out of the table, freed by the last unpin */
	dns_cache_remove(&c, k);
	cr_assert_null(dns_cache_find(&c, "kept", DNS_T_MX));
	cr_assert_eq(k->pins, 1);
	dns_entry_unpin(k);
	dns_cache_free(&c);
}

Test(dns_cache, keep_ttl_clamps)
{
	struct dns_config cfg;
	struct dns_ans a = { .status = DNS_OK };

	dns_config_default(&cfg);
	cfg.min_ttl = 60;
	cfg.max_ttl = 3600;
	cfg.neg_ttl_max = 600;
	cfg.fail_ttl = 7;
	a.ttl = 5;
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 60);
	a.ttl = 86400;
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 3600);
	a.ttl = 300;
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 300);
	a.status = DNS_NXDOMAIN;
	a.ttl = 900;
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 600);
	a.ttl = 30;                              /* no floor for negatives */
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 30);
	a.status = DNS_NODATA;
	a.ttl = 0;                               /* no SOA: not cached */
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 0);
	a.status = DNS_TIMEOUT;
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 7);
	cfg.fail_ttl = 10000;                    /* RFC 2308 7: 5 minutes */
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 300);
	a.status = DNS_SHUTDOWN;
	cr_assert_eq(dns_keep_ttl(&a, &cfg), 0);
}

Test(dns_cache, statuses)
{
	cr_assert_str_eq(dns_status_name(DNS_OK), "ok");
	cr_assert_str_eq(dns_status_name(DNS_NULLMX), "null-mx");
	cr_assert_str_eq(dns_status_name(DNS_SHUTDOWN), "shutdown");
	cr_assert(dns_status_permanent(DNS_NXDOMAIN));
	cr_assert(dns_status_permanent(DNS_NULLMX));
	cr_assert(dns_status_permanent(DNS_NOADDR));
	cr_assert(dns_status_permanent(DNS_BADMX));
	cr_assert_not(dns_status_permanent(DNS_OK));
	cr_assert_not(dns_status_permanent(DNS_SERVFAIL));
	cr_assert_not(dns_status_permanent(DNS_TIMEOUT));
	cr_assert_not(dns_status_permanent(DNS_LAME));
	cr_assert_not(dns_status_permanent(DNS_SHUTDOWN));
}
