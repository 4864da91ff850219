/*
 * Latency histograms (docs/metrics.md): submit to 250 per recipient, by
 * transactional or bulk, and each site's response time to the final dot
 * or BDAT LAST. The delivery thread observes (relaxed atomic adds); a
 * scrape reads. Sites get a slot each on their first reply, up to
 * SCHED_LAT_SITES; later ones share site="other", so the series stay
 * bounded.
 */
#include "sched_int.h"

#include <stdio.h>
#include <string.h>

/* Submit to 250: a millisecond to a day of retries. */
static const double delivery_bounds[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
	30, 60, 120, 300, 600, 1800, 3600, 21600, 86400,
};
/* A peer's reply to the end of data: half a millisecond to its 10 min
 * timeout (RFC 5321 4.5.3.2.6). */
static const double reply_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
	5, 10, 30, 60, 120, 300, 600,
};

struct sched_lat *sched_lat_new(void)
{
	struct sched_lat *l = vl_calloc(1, sizeof *l);

	for (int t = 0; t < 2; t++)
		vl_hist_init(&l->delivery[t], delivery_bounds, VL_ARRAY_LEN(delivery_bounds));
	for (size_t i = 0; i <= SCHED_LAT_SITES; i++)
		vl_hist_init(&l->reply[i], reply_bounds, VL_ARRAY_LEN(reply_bounds));
	atomic_init(&l->nsites, 0);
	return l;
}

void sched_lat_free(struct sched_lat *l)
{
	free(l);
}

int sched_lat_site(struct sched_lat *l, const char *name)
{
	size_t n = atomic_load_explicit(&l->nsites, memory_order_relaxed);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(l->site[i], name))
			return (int)i;
	if (n == SCHED_LAT_SITES || strlen(name) >= sizeof l->site[0])
		return SCHED_LAT_SITES;
	snprintf(l->site[n], sizeof l->site[n], "%s", name);
	/* the name before the count: a scrape sees whole names only */
	atomic_store_explicit(&l->nsites, n + 1, memory_order_release);
	return (int)n;
}

void sched_lat_delivered(struct sched_lat *l, bool transactional, double seconds)
{
	vl_hist_observe(&l->delivery[transactional], seconds);
}

void sched_lat_reply(struct sched_lat *l, int slot, double seconds)
{
	if (slot >= 0 && slot <= SCHED_LAT_SITES)
		vl_hist_observe(&l->reply[slot], seconds);
}

void sched_lat_tls(struct sched_lat *l, enum sched_tls kind)
{
	atomic_fetch_add_explicit(&l->tls[kind], 1, memory_order_relaxed);
}

static void tls_metrics(const struct sched_lat *l, struct vl_buf *out)
{
	static const char *const names[SCHED_TLS_KINDS] = {
		"dane", "mta-sts", "verified", "encrypted", "none", "failed" };
	char lab[64];

	for (int k = 0; k < SCHED_TLS_KINDS; k++) {
		snprintf(lab, sizeof lab, "{tls=\"%s\"}", names[k]);
		vl_prom_metric(out, "volley_tls_messages_total", "counter", k ? NULL :
			       "Messages sent by their connection's TLS: DANE, an MTA-STS "
			       "policy, a verified certificate, encrypted only, clear text, "
			       "or failed (TLS or its authentication).", lab,
			       (double)atomic_load_explicit(&l->tls[k], memory_order_relaxed));
	}
}

/* site="..." as the text format escapes it. */
static void site_label(char *out, size_t len, const char *name)
{
	size_t o = 0;

	o += (size_t)snprintf(out, len, "site=\"");
	for (const char *p = name; *p && o + 4 < len; p++) {
		if (*p == '"' || *p == '\\')
			out[o++] = '\\', out[o++] = *p;
		else if (*p == '\n')
			out[o++] = '\\', out[o++] = 'n';
		else
			out[o++] = *p;
	}
	snprintf(out + o, len - o, "\",stage=\"dot\"");
}

void sched_lat_metrics(const struct sched_lat *l, struct vl_buf *out)
{
	char lab[400];

	vl_hist_prom(out, "volley_delivery_latency_seconds", "From a job's submission to a "
		     "recipient's 250, by kind (a retried recipient counts its wait).",
		     "kind=\"bulk\"", &l->delivery[0]);
	vl_hist_prom(out, "volley_delivery_latency_seconds", NULL, "kind=\"transactional\"",
		     &l->delivery[1]);
	tls_metrics(l, out);
	size_t n = atomic_load_explicit(&l->nsites, memory_order_acquire);
	for (size_t i = 0; i < n; i++) {
		site_label(lab, sizeof lab, l->site[i]);
		vl_hist_prom(out, "volley_site_response_seconds", i ? NULL : "A site's reply "
			     "time to the final dot or BDAT LAST, per site (the first "
			     "64 sites; then site=\"other\").", lab, &l->reply[i]);
	}
	if (vl_hist_count(&l->reply[SCHED_LAT_SITES]) || !n)
		vl_hist_prom(out, "volley_site_response_seconds", n ? NULL : "A site's reply "
			     "time to the final dot or BDAT LAST, per site (the first 64 "
			     "sites; then site=\"other\").", "site=\"other\",stage=\"dot\"",
			     &l->reply[SCHED_LAT_SITES]);
}
