/* submit/authlimit.c: failed logins per client address, with fake times. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "../../submit/submit.h"

static struct sockaddr_storage addr(const char *ip)
{
	struct sockaddr_storage ss;
	socklen_t len;

	cr_assert_eq(vl_sockaddr_parse(ip, 587, &ss, &len), 0, "%s", ip);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

Test(submit_authlimit, free_then_doubling_to_the_cap)
{
	struct sub_authlimit *l = sub_authlimit_new(NULL);
	struct sockaddr_storage a = addr("192.0.2.7");
	static const uint32_t want[] = { 0, 0, 0, 1000, 2000, 4000, 8000, 16000, 30000, 30000 };
	struct sub_authlimit_stats st;

	cr_assert_eq(sub_authlimit_delay(l, SA(a), 0), 0);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		uint32_t next = sub_authlimit_delay(l, SA(a), 1000 + i);
		cr_assert_eq(sub_authlimit_fail(l, SA(a), 1000 + i), want[i], "failure %zu", i + 1);
		cr_assert_eq(next, want[i], "delay() before failure %zu", i + 1);
	}
	sub_authlimit_stats(l, &st);
	cr_assert_eq(st.failures, 10);
	cr_assert_eq(st.delayed, 7);
	cr_assert_eq(st.tracked, 1);
	/* another address is not affected */
	struct sockaddr_storage b = addr("192.0.2.8");
	cr_assert_eq(sub_authlimit_fail(l, SA(b), 2000), 0);
	sub_authlimit_free(l);
}

Test(submit_authlimit, quiet_periods_halve_the_count)
{
	struct sub_authlimit *l = sub_authlimit_new(NULL);
	struct sockaddr_storage a = addr("198.51.100.1");

	for (int i = 0; i < 8; i++)
		sub_authlimit_fail(l, SA(a), 0);
	cr_assert_eq(sub_authlimit_delay(l, SA(a), 0), 30000);        /* a 9th */
	cr_assert_eq(sub_authlimit_delay(l, SA(a), 299999), 30000);
	cr_assert_eq(sub_authlimit_delay(l, SA(a), 300000), 2000);    /* 4, a 5th */
	cr_assert_eq(sub_authlimit_delay(l, SA(a), 600000), 0);       /* 2, a 3rd */
	cr_assert_eq(sub_authlimit_delay(l, SA(a), 3000000), 0);
	/* the count decays when a failure comes too */
	cr_assert_eq(sub_authlimit_fail(l, SA(a), 300000), 2000);
	cr_assert_eq(sub_authlimit_fail(l, SA(a), 300001), 4000);
	sub_authlimit_free(l);
}

Test(submit_authlimit, ipv6_by_64_and_mapped_ipv4)
{
	struct sub_authlimit_opts o;
	sub_authlimit_defaults(&o);
	o.free_failures = 0;
	struct sub_authlimit *l = sub_authlimit_new(&o);
	struct sockaddr_storage a = addr("2001:db8:1:2::1"), b = addr("2001:db8:1:2:ffff::9"),
				c = addr("2001:db8:1:3::1"), v4 = addr("203.0.113.5"),
				mapped = addr("::ffff:203.0.113.5");

	cr_assert_eq(sub_authlimit_fail(l, SA(a), 0), 1000);
	cr_assert_eq(sub_authlimit_fail(l, SA(b), 0), 2000, "the same /64");
	cr_assert_eq(sub_authlimit_fail(l, SA(c), 0), 1000, "another /64");
	cr_assert_eq(sub_authlimit_fail(l, SA(v4), 0), 1000);
	cr_assert_eq(sub_authlimit_fail(l, SA(mapped), 0), 2000, "IPv4-mapped is IPv4");
	/* a Unix socket's peer is not counted */
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	cr_assert_eq(sub_authlimit_fail(l, (const struct sockaddr *)&un, 0), 0);
	cr_assert_eq(sub_authlimit_fail(l, NULL, 0), 0);
	struct sub_authlimit_stats st;
	sub_authlimit_stats(l, &st);
	cr_assert_eq(st.failures, 5);
	cr_assert_eq(st.tracked, 3);
	sub_authlimit_free(l);
}

Test(submit_authlimit, table_is_bounded)
{
	struct sub_authlimit_opts o;
	char ip[32];
	struct sub_authlimit_stats st;

	sub_authlimit_defaults(&o);
	o.max_addrs = 4;
	o.free_failures = 0;
	struct sub_authlimit *l = sub_authlimit_new(&o);
	for (int i = 0; i < 4; i++) {
		snprintf(ip, sizeof ip, "10.0.0.%d", i);
		struct sockaddr_storage a = addr(ip);
		sub_authlimit_fail(l, SA(a), (uint64_t)i);
		sub_authlimit_fail(l, SA(a), (uint64_t)i);
	}
	struct sockaddr_storage a0 = addr("10.0.0.0"), a1 = addr("10.0.0.1"), n = addr("10.9.9.9");
	cr_assert_eq(sub_authlimit_delay(l, SA(a0), 10), 4000);
	/* a fifth address takes the slot of the oldest last failure (10.0.0.0) */
	cr_assert_eq(sub_authlimit_fail(l, SA(n), 10), 1000);
	sub_authlimit_stats(l, &st);
	cr_assert_eq(st.tracked, 4);
	cr_assert_eq(sub_authlimit_delay(l, SA(a0), 10), 1000, "forgotten");
	cr_assert_eq(sub_authlimit_delay(l, SA(a1), 10), 4000, "kept");
	/* a slot decayed to nothing is taken before an older live one */
	o.quiet_ms = 100;
	struct sub_authlimit *m = sub_authlimit_new(&o);
	for (int i = 0; i < 4; i++) {
		snprintf(ip, sizeof ip, "10.0.1.%d", i);
		struct sockaddr_storage a = addr(ip);
		sub_authlimit_fail(m, SA(a), i == 2 ? 0 : 1000);
	}
	cr_assert_eq(sub_authlimit_fail(m, SA(n), 1050), 1000);
	struct sockaddr_storage k0 = addr("10.0.1.0");
	cr_assert_eq(sub_authlimit_delay(m, SA(k0), 1050), 2000, "10.0.1.0 kept");
	sub_authlimit_free(m);
	sub_authlimit_free(l);
}

Test(submit_authlimit, many_failures_do_not_overflow)
{
	struct sub_authlimit_opts o;
	sub_authlimit_defaults(&o);
	o.max_delay_ms = 4000000000u;
	struct sub_authlimit *l = sub_authlimit_new(&o);
	struct sockaddr_storage a = addr("192.0.2.1");
	uint32_t d = 0, prev = 0;

	for (int i = 0; i < 100; i++) {
		d = sub_authlimit_fail(l, SA(a), 5);
		cr_assert_geq(d, prev, "failure %d", i);
		prev = d;
	}
	cr_assert_eq(d, 4000000000u);
	sub_authlimit_free(l);
}
