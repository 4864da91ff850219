/*
 * A new configuration for the delivery thread (SIGHUP). What can fail
 * (DKIM keys, bounce rules) is loaded on the caller's thread, so a bad
 * file changes nothing; the switch is a few pointer stores between two
 * rounds. What the old configuration gave is kept until stop: jobs hold
 * its DKIM keys, sites and messages in flight point into its strings.
 */
#include "deliver_int.h"

#include <stdio.h>
#include <stdlib.h>

static void reload_free(struct sched_reload *r)
{
	for (size_t i = 0; i < r->ndkim; i++)
		msg_dkim_key_free(r->dkim[i]);
	free(r->dkim);
	sched_bounce_free(r->rules);
	free(r);
}

int sched_deliver_reload(struct sched_deliver *d, const struct cfg *c, char *err, size_t errlen)
{
	struct sched_reload *r = vl_calloc(1, sizeof *r);
	char why[400];

	r->cfg = c;
	r->dkim = vl_calloc(c->ndkim + 1, sizeof *r->dkim);
	for (; r->ndkim < c->ndkim; r->ndkim++) {
		r->dkim[r->ndkim] = msg_dkim_key_load(c->dkim[r->ndkim].key, c->dkim[r->ndkim].domain,
						      c->dkim[r->ndkim].selector, why, sizeof why);
		if (!r->dkim[r->ndkim]) {
			vl_fail(err, errlen, "dkim[%zu] (%s, selector %s): %s", r->ndkim,
				c->dkim[r->ndkim].domain, c->dkim[r->ndkim].selector, why);
			reload_free(r);
			return -1;
		}
	}
	if (!(r->rules = sched_bounce_load(c->bounce_rules, err, errlen))) {
		reload_free(r);
		return -1;
	}
	pthread_mutex_lock(&d->mu);
	struct sched_reload *unused = d->reload_in;   /* a reload not applied yet */
	d->reload_in = r;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	if (unused)
		reload_free(unused);
	return 0;
}

void sched_reload_apply(struct sched_deliver *d, struct sched_reload *r)
{
	struct sched_reload *old = vl_calloc(1, sizeof *old);

	*old = (struct sched_reload){ .cfg = d->cfg, .dkim = d->dkim, .ndkim = d->ndkim,
				      .rules = d->rules, .next = d->retired };
	d->retired = old;
	d->cfg = r->cfg;
	d->dkim = r->dkim;
	d->ndkim = r->ndkim;
	d->rules = r->rules;
	free(r);
	sched_doms_forget(d);
	vl_log(VL_LOG_INFO, "delivery: new configuration: %zu domain rules, %zu DKIM keys",
	       d->cfg->ndomains, d->ndkim);
}

void sched_reload_free_all(struct sched_deliver *d)
{
	while (d->retired) {
		struct sched_reload *n = d->retired->next;
		reload_free(d->retired);
		d->retired = n;
	}
	if (d->reload_in)
		reload_free(d->reload_in);
	d->reload_in = NULL;
}
