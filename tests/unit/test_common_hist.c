/* common: histograms (hist.c): bucket placement and Prometheus output. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../common/common.h"

static const double bounds[] = { 0.001, 0.01, 0.1, 1 };

static uint64_t bucket_value(const char *text, const char *series)
{
	const char *p = strstr(text, series);
	unsigned long long v = 0;

	cr_assert(p, "no %s in:\n%s", series, text);
	cr_assert_eq(sscanf(p + strlen(series), " %llu", &v), 1);
	return v;
}

Test(vl_hist, placement_on_the_bounds)
{
	struct vl_hist h;

	vl_hist_init(&h, bounds, 4);
	vl_hist_observe(&h, 0.001);   /* le is inclusive */
	vl_hist_observe(&h, 0.0010001);
	vl_hist_observe(&h, 0);
	vl_hist_observe(&h, -3);      /* clock stepped back: counted as 0 */
	vl_hist_observe(&h, 0.5);
	vl_hist_observe(&h, 1);
	vl_hist_observe(&h, 7200);
	cr_assert_eq(atomic_load(&h.counts[0]), 3);
	cr_assert_eq(atomic_load(&h.counts[1]), 1);
	cr_assert_eq(atomic_load(&h.counts[2]), 0);
	cr_assert_eq(atomic_load(&h.counts[3]), 2);
	cr_assert_eq(atomic_load(&h.counts[4]), 1);
	cr_assert_eq(vl_hist_count(&h), 7);
}

Test(vl_hist, cumulative_output_with_labels)
{
	struct vl_hist h;
	struct vl_buf b;

	vl_hist_init(&h, bounds, 4);
	vl_hist_observe(&h, 0.0005);
	vl_hist_observe(&h, 0.05);
	vl_hist_observe(&h, 0.05);
	vl_hist_observe(&h, 30);
	vl_buf_init(&b);
	vl_hist_prom(&b, "x_seconds", "Help.", "site=\"a\"", &h);
	vl_buf_append(&b, "", 1);
	const char *t = b.p;
	cr_assert(!strncmp(t, "# HELP x_seconds Help.\n# TYPE x_seconds histogram\n", 50), "%s", t);
	cr_assert_eq(bucket_value(t, "x_seconds_bucket{site=\"a\",le=\"0.001\"}"), 1);
	cr_assert_eq(bucket_value(t, "x_seconds_bucket{site=\"a\",le=\"0.01\"}"), 1);
	cr_assert_eq(bucket_value(t, "x_seconds_bucket{site=\"a\",le=\"0.1\"}"), 3);
	cr_assert_eq(bucket_value(t, "x_seconds_bucket{site=\"a\",le=\"1\"}"), 3);
	cr_assert_eq(bucket_value(t, "x_seconds_bucket{site=\"a\",le=\"+Inf\"}"), 4);
	cr_assert_eq(bucket_value(t, "x_seconds_count{site=\"a\"}"), 4);
	double sum = 0;
	cr_assert_eq(sscanf(strstr(t, "x_seconds_sum{site=\"a\"} ") + 24, "%lf", &sum), 1);
	cr_assert_float_eq(sum, 30.1005, 1e-6);
	vl_buf_free(&b);
}

Test(vl_hist, no_labels_no_help)
{
	struct vl_hist h;
	struct vl_buf b;

	vl_hist_init(&h, bounds, 4);
	vl_buf_init(&b);
	vl_hist_prom(&b, "y", NULL, NULL, &h);
	vl_buf_append(&b, "", 1);
	cr_assert(!strstr(b.p, "# "));
	cr_assert(strstr(b.p, "y_bucket{le=\"0.001\"} 0\n"), "%s", b.p);
	cr_assert(strstr(b.p, "y_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n"), "%s", b.p);
	vl_buf_free(&b);
}
