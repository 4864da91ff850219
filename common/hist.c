/*
 * Histograms for Prometheus (common.h): one writer or many add with
 * relaxed atomics (a few nanoseconds an observation); a scrape reads the
 * buckets and writes them cumulative, _count being their total so that
 * the +Inf bucket and _count always agree.
 */
#include <stdio.h>

#include "common.h"

void vl_hist_init(struct vl_hist *h, const double *bounds, size_t n)
{
	h->bounds = bounds;
	h->nb = n < VL_HIST_MAX ? n : VL_HIST_MAX;
	for (size_t i = 0; i <= VL_HIST_MAX; i++)
		atomic_init(&h->counts[i], 0);
	atomic_init(&h->sum_us, 0);
}

/* The first bucket whose upper bound is >= v (nb: +Inf). */
static size_t bucket_of(const struct vl_hist *h, double v)
{
	size_t lo = 0, hi = h->nb;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v <= h->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void vl_hist_observe(struct vl_hist *h, double seconds)
{
	if (!(seconds >= 0))        /* a clock step back, or NaN */
		seconds = 0;
	atomic_fetch_add_explicit(&h->counts[bucket_of(h, seconds)], 1, memory_order_relaxed);
	double us = seconds * 1e6;
	atomic_fetch_add_explicit(&h->sum_us, us < 1.8e19 ? (uint64_t)us : UINT64_MAX / 2,
				  memory_order_relaxed);
}

uint64_t vl_hist_count(const struct vl_hist *h)
{
	uint64_t n = 0;

	for (size_t i = 0; i <= h->nb; i++)
		n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
	return n;
}

/* "{a="x",le="0.5"}" from the inner labels ("" or `a="x"`) and le. */
static void le_labels(char *out, size_t len, const char *labels, const char *le)
{
	snprintf(out, len, "{%s%sle=\"%s\"}", labels, *labels ? "," : "", le);
}

void vl_hist_prom(struct vl_buf *b, const char *name, const char *help, const char *labels,
		  const struct vl_hist *h)
{
	char metric[160], lab[600], le[32];
	uint64_t cum = 0;

	if (!labels)
		labels = "";
	if (help)
		vl_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	snprintf(metric, sizeof metric, "%s_bucket", name);
	for (size_t i = 0; i <= h->nb; i++) {
		cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
		if (i < h->nb)
			snprintf(le, sizeof le, "%g", h->bounds[i]);
		else
			snprintf(le, sizeof le, "+Inf");
		le_labels(lab, sizeof lab, labels, le);
		vl_buf_printf(b, "%s%s %llu\n", metric, lab, (unsigned long long)cum);
	}
	snprintf(lab, sizeof lab, *labels ? "{%s}" : "%s", labels);
	vl_buf_printf(b, "%s_sum%s %.17g\n", name, lab,
		      (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
	vl_buf_printf(b, "%s_count%s %llu\n", name, lab, (unsigned long long)cum);
}
