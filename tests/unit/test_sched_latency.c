/* scheduler: the latency histograms' sites (latency.c): bounded slots,
 * the rest as site="other", label values escaped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../scheduler/sched_int.h"

Test(sched_lat, sites_bounded_then_other)
{
	struct sched_lat *l = sched_lat_new();
	char name[32];

	for (int i = 0; i < SCHED_LAT_SITES + 6; i++) {
		snprintf(name, sizeof name, "mx%d.test", i);
		int slot = sched_lat_site(l, name);
		cr_assert_eq(slot, i < SCHED_LAT_SITES ? i : SCHED_LAT_SITES, "%s", name);
		sched_lat_reply(l, slot, 0.003);
	}
	cr_assert_eq(sched_lat_site(l, "mx3.test"), 3, "a known name keeps its slot");
	struct vl_buf b;
	vl_buf_init(&b);
	sched_lat_metrics(l, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "volley_site_response_seconds_count{site=\"mx63.test\",stage=\"dot\"} 1\n"));
	cr_assert(!strstr(b.p, "site=\"mx64.test\""));
	cr_assert(strstr(b.p, "volley_site_response_seconds_count{site=\"other\",stage=\"dot\"} 6\n"),
		  "%s", b.p);
	int types = 0;
	for (const char *p = b.p; (p = strstr(p, "# TYPE volley_site_response_seconds ")); p++)
		types++;
	cr_assert_eq(types, 1, "one TYPE line for the family");
	vl_buf_free(&b);
	sched_lat_free(l);
}

Test(sched_lat, label_escaped_and_kinds)
{
	struct sched_lat *l = sched_lat_new();
	struct vl_buf b;

	sched_lat_reply(l, sched_lat_site(l, "a\"b\\c"), 0.2);
	sched_lat_delivered(l, true, 1.5);
	sched_lat_delivered(l, false, 0.0001);
	sched_lat_tls(l, SCHED_TLS_DANE);
	vl_buf_init(&b);
	sched_lat_metrics(l, &b);
	vl_buf_append(&b, "", 1);
	cr_assert(strstr(b.p, "{site=\"a\\\"b\\\\c\",stage=\"dot\",le=\"0.25\"} 1\n"), "%s", b.p);
	cr_assert(strstr(b.p, "volley_delivery_latency_seconds_bucket{kind=\"transactional\",le=\"1\"} 0\n"));
	cr_assert(strstr(b.p, "volley_delivery_latency_seconds_bucket{kind=\"transactional\",le=\"2.5\"} 1\n"));
	cr_assert(strstr(b.p, "volley_delivery_latency_seconds_bucket{kind=\"bulk\",le=\"0.001\"} 1\n"));
	cr_assert(strstr(b.p, "volley_tls_messages_total{tls=\"dane\"} 1\n"));
	cr_assert(!strstr(b.p, "{site=\"other\""), "no other series while it is empty");
	vl_buf_free(&b);
	sched_lat_free(l);
}
