/*
 * Warm-up of egress sources (docs/providers.md): what each source sent to
 * each provider today, against its schedule's cap for the day. Counted when
 * a message is handed to the engine; kept in data_dir/warmup.json (written
 * at most once a second and at stop, so a crash forgets at most a second),
 * and reset at midnight UTC. Domains of no provider count together as "*".
 * Only the delivery thread touches it.
 */
#include "deliver_int.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WARM_WRITE_MS 1000
#define WARM_SLOTS 64                /* providers counted apart per source; more
				      * count as "*" */

struct sched_wslot {
	char name[40];                /* provider, or "*" */
	uint64_t sent;                /* today, by this node */
	struct clu_quota *q;          /* with a cluster: the day's count of every node */
};

/* slot never moves (API threads read the counts for /v1/stats); n grows
 * after a slot's name is written. */
struct sched_wsrc {
	int64_t start;                /* day 1 (days since 1970); -1: not yet */
	struct sched_wslot *slot;     /* [WARM_SLOTS] */
	size_t n;
};

struct sched_warm {
	struct sched_wsrc *src;       /* [negress] */
	int64_t today;
	uint64_t day_ends_ms;         /* on vl_now_ms()'s clock */
	bool dirty;
	uint64_t written_ms;
	char path[PATH_MAX];
};

static void set_today(struct sched_warm *w)
{
	double now = vl_wall_time();

	w->today = (int64_t)floor(now / 86400);
	w->day_ends_ms = vl_now_ms() + (uint64_t)((double)(w->today + 1) * 86400000.0 - now * 1000);
}

static size_t slot_of(struct sched_wsrc *ws, const char *name)
{
	for (size_t i = 0; i < ws->n; i++)
		if (!strcmp(ws->slot[i].name, name))
			return i;
	if (ws->n == WARM_SLOTS)
		return strcmp(name, "*") ? slot_of(ws, "*") : 0;
	snprintf(ws->slot[ws->n].name, sizeof ws->slot[ws->n].name, "%s", name);
	__atomic_store_n(&ws->n, ws->n + 1, __ATOMIC_RELEASE);
	return ws->n - 1;
}

/* What warmup.json kept: each source's first day, and today's counts. */
static void load(struct sched_deliver *d, struct sched_warm *w)
{
	json_error_t je;
	json_t *root = json_load_file(w->path, 0, &je), *sources;

	if (!root) {
		if (access(w->path, F_OK) == 0)
			vl_log(VL_LOG_WARN, "warm-up: %s: %s: starting from zero", w->path, je.text);
		return;
	}
	bool same_day = json_integer_value(json_object_get(root, "today")) == w->today;
	sources = json_object_get(root, "sources");
	for (size_t i = 0; i < d->ecfg->negress; i++) {
		json_t *s = json_object_get(sources, d->ecfg->egress[i].name), *v;
		const char *k;
		if (!json_is_object(s))
			continue;
		json_t *st = json_object_get(s, "start");
		if (w->src[i].start < 0 && json_is_integer(st))
			w->src[i].start = json_integer_value(st);
		json_object_foreach(json_object_get(s, "sent"), k, v)
			if (same_day && json_is_integer(v) && json_integer_value(v) >= 0)
				w->src[i].slot[slot_of(&w->src[i], k)].sent =
					(uint64_t)json_integer_value(v);
	}
	json_decref(root);
}

static void save(struct sched_deliver *d, struct sched_warm *w)
{
	char tmp[PATH_MAX + 8];
	json_t *sources = json_object();

	for (size_t i = 0; i < d->ecfg->negress; i++) {
		if (!d->ecfg->egress[i].nsteps)
			continue;
		json_t *sent = json_object();
		for (size_t k = 0; k < w->src[i].n; k++)
			json_object_set_new(sent, w->src[i].slot[k].name,
					    json_integer((json_int_t)w->src[i].slot[k].sent));
		json_object_set_new(sources, d->ecfg->egress[i].name,
				    json_pack("{s:I, s:o}", "start", (json_int_t)w->src[i].start,
					      "sent", sent));
	}
	json_t *root = json_pack("{s:I, s:o}", "today", (json_int_t)w->today, "sources", sources);
	snprintf(tmp, sizeof tmp, "%s.tmp", w->path);
	if (json_dump_file(root, tmp, JSON_COMPACT) < 0 || rename(tmp, w->path) < 0)
		vl_log(VL_LOG_WARN, "warm-up: cannot write %s: %s", w->path, strerror(errno));
	json_decref(root);
	w->dirty = false;
	w->written_ms = vl_now_ms();
}

void sched_warm_open(struct sched_deliver *d)
{
	bool any = false;

	for (size_t i = 0; i < d->ecfg->negress; i++)
		any |= d->ecfg->egress[i].nsteps > 0;
	if (!any)
		return;
	struct sched_warm *w = vl_calloc(1, sizeof *w);
	w->src = vl_calloc(d->ecfg->negress, sizeof *w->src);
	for (size_t i = 0; i < d->ecfg->negress; i++) {
		w->src[i].start = d->ecfg->egress[i].warmup_start;
		w->src[i].slot = vl_calloc(WARM_SLOTS, sizeof *w->src[i].slot);
		slot_of(&w->src[i], "*");    /* "*" first: the overflow slot */
	}
	snprintf(w->path, sizeof w->path, "%s/warmup.json", d->cfg->data_dir);
	set_today(w);
	load(d, w);
	d->warm = w;
}

void sched_warm_close(struct sched_deliver *d)
{
	struct sched_warm *w = d->warm;

	if (!w)
		return;
	if (w->dirty)
		save(d, w);
	for (size_t i = 0; i < d->ecfg->negress; i++)
		free(w->src[i].slot);
	free(w->src);
	free(w);
	d->warm = NULL;
}

int sched_warm_slot(struct sched_deliver *d, int src, const char *provider)
{
	if (!d->warm || src < 0 || !d->ecfg->egress[src].nsteps)
		return -1;
	return (int)slot_of(&d->warm->src[src], provider ? provider : "*");
}

/* The day of the source's schedule (1: its first). */
static int64_t day_of(const struct sched_warm *w, int src)
{
	int64_t s = w->src[src].start;

	return s < 0 ? 1 : w->today - s + 1;
}

void sched_warm_tick(struct sched_deliver *d, uint64_t now)
{
	struct sched_warm *w = d->warm;

	if (!w)
		return;
	if (now >= w->day_ends_ms) {
		set_today(w);
		for (size_t i = 0; i < d->ecfg->negress; i++)
			for (size_t k = 0; k < w->src[i].n; k++)
				w->src[i].slot[k].sent = 0;
		for (struct sched_site *s = d->sites; s; s = s->next)
			if (s->warm_until_ms) {
				s->warm_until_ms = 0;
				sched_site_ready(d, s);
			}
		w->dirty = true;
	}
	if (w->dirty && now - w->written_ms >= WARM_WRITE_MS)
		save(d, w);
}

/* With a cluster, the source's count is every node's: a source of the
 * same name on several nodes (one public address behind them) is one
 * source for its warm-up. */
static uint64_t cluster_take(struct sched_deliver *d, struct sched_site *s,
			     struct sched_wslot *sl, uint64_t cap, uint64_t now)
{
	if (!sl->q) {
		char key[200];
		snprintf(key, sizeof key, "warm:%s:%s", d->ecfg->egress[s->src].name, sl->name);
		sl->q = clu_quota_get(d->clu, key);
	}
	return clu_quota_take(d->clu, sl->q, cap, sl->sent, d->warm->today, now);
}

uint64_t sched_warm_take(struct sched_deliver *d, struct sched_site *s, uint64_t now)
{
	struct sched_warm *w = d->warm;
	struct sched_wslot *sl = &w->src[s->src].slot[s->wslot];
	uint64_t wait = 0;

	if (w->src[s->src].start < 0) {   /* the source's first message: day 1 */
		w->src[s->src].start = w->today;
		w->dirty = true;
	}
	uint64_t cap = cfg_warmup_cap(&d->ecfg->egress[s->src], day_of(w, s->src));
	if (sl->sent >= cap)
		wait = UINT64_MAX;
	else if (d->clu && cap != UINT64_MAX)
		wait = cluster_take(d, s, sl, cap, now);
	if (wait == UINT64_MAX)
		s->warm_until_ms = w->day_ends_ms;
	if (wait)
		return wait;
	sl->sent++;
	w->dirty = true;
	return 0;
}

static json_t *cap_json(uint64_t cap)
{
	return cap == UINT64_MAX ? json_null() : json_integer((json_int_t)cap);
}

json_t *sched_warm_site_json(const struct sched_deliver *d, const struct sched_site *s)
{
	const struct sched_warm *w = d->warm;
	char until[32];

	if (!w || s->wslot < 0)
		return json_null();
	int64_t day = day_of(w, s->src);
	const struct sched_wslot *sl = &w->src[s->src].slot[s->wslot];
	if (s->warm_until_ms > vl_now_ms())
		vl_iso8601(vl_wall_time() + (double)(s->warm_until_ms - vl_now_ms()) / 1000, until);
	return json_pack("{s:s, s:I, s:s, s:o, s:I, s:o}", "schedule",
			 d->ecfg->egress[s->src].warmup, "day", (json_int_t)day,
			 "provider", sl->name,
			 "cap", cap_json(cfg_warmup_cap(&d->ecfg->egress[s->src], day)),
			 "sent", (json_int_t)sl->sent,
			 "capped_until", s->warm_until_ms > vl_now_ms() ? json_string(until) :
			 json_null());
}

json_t *sched_warm_stats_json(const struct sched_deliver *d, int src)
{
	const struct sched_warm *w = d->warm;

	if (!w || !d->ecfg->egress[src].nsteps)
		return json_null();
	int64_t day = day_of(w, src);
	json_t *per = json_object();
	size_t n = __atomic_load_n(&w->src[src].n, __ATOMIC_ACQUIRE);
	for (size_t k = 0; k < n; k++)
		json_object_set_new(per, w->src[src].slot[k].name,
				    json_integer((json_int_t)w->src[src].slot[k].sent));
	return json_pack("{s:s, s:I, s:o, s:o}", "schedule", d->ecfg->egress[src].warmup,
			 "day", (json_int_t)day,
			 "cap", cap_json(cfg_warmup_cap(&d->ecfg->egress[src], day)),
			 "sent", per);
}
