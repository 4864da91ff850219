/*
 * An egress source's warm-up (docs/providers.md): `warmup = "standard"` or
 * a table `( [ DAY, MAX ], ... )` of daily caps per provider, and
 * `warmup_start = "YYYY-MM-DD"` (default: the day the source first sends).
 * A new address earns a reputation by volume that grows day by day; the
 * caps are what a source may send to each provider on each day.
 */
#include "config.h"

#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WARMUP_STEPS_MAX 366
#define WARMUP_MAX 100000000ull

/* "standard": roughly doubling for a week, then by half again a day, until
 * a million a day to each provider; no cap from day 18 on. */
static const struct cfg_warmup_step standard[] = {
	{ 1, 200 }, { 2, 400 }, { 3, 800 }, { 4, 1500 }, { 5, 3000 }, { 6, 6000 },
	{ 7, 10000 }, { 8, 20000 }, { 9, 35000 }, { 10, 50000 }, { 11, 75000 },
	{ 12, 100000 }, { 13, 150000 }, { 14, 250000 }, { 15, 400000 }, { 16, 600000 },
	{ 17, 1000000 }, { 18, 0 },
};

static int wfail(const config_setting_t *s, const char *file, const char *path,
		 const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s:%d: %s: %s", file, s ? config_setting_source_line(s) : 0,
		 path, what);
	return -1;
}

/* "YYYY-MM-DD" -> days since 1970-01-01; -1 when not a date. */
static int64_t parse_day(const char *s)
{
	struct tm tm = { 0 };
	char *end = strptime(s, "%Y-%m-%d", &tm);

	if (!end || *end || tm.tm_year < 100 || tm.tm_year > 300)
		return -1;
	return (int64_t)(timegm(&tm) / 86400);
}

static int get_table(const config_setting_t *w, const char *file, const char *path,
		     struct cfg_egress *e, char *err, size_t errlen)
{
	size_t n = (size_t)config_setting_length(w);

	if (!n || n > WARMUP_STEPS_MAX)
		return wfail(w, file, path, "expected \"standard\" or 1 to 366 steps "
			     "( [ DAY, MAX_PER_DAY ], ... )", err, errlen);
	e->steps = vl_calloc(n, sizeof *e->steps);
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *st = config_setting_get_elem(w, (unsigned)i);
		long long day = 0, max = -1;
		if (st && (config_setting_is_array(st) || config_setting_is_list(st)) &&
		    config_setting_length(st) == 2) {
			day = config_setting_get_int64_elem(st, 0);
			max = config_setting_get_int64_elem(st, 1);
		}
		if (day < 1 || day > 3650 || max < 0 || (uint64_t)max > WARMUP_MAX)
			return wfail(st ? st : w, file, path, "each step is [ DAY, MAX_PER_DAY ]: "
				     "DAY 1 to 3650, MAX 0 (no cap) to 100000000", err, errlen);
		if (i && (uint32_t)day <= e->steps[i - 1].day)
			return wfail(st, file, path, "steps must go by increasing day", err, errlen);
		e->steps[i] = (struct cfg_warmup_step){ (uint32_t)day, (uint64_t)max };
	}
	if (e->steps[0].day != 1)
		return wfail(w, file, path, "the first step is day 1", err, errlen);
	e->nsteps = n;
	e->warmup = vl_strdup("custom");
	return 0;
}

static int get_one(const config_setting_t *g, const char *file, size_t i, struct cfg_egress *e,
		   char *err, size_t errlen)
{
	const config_setting_t *w = config_setting_get_member(g, "warmup");
	const config_setting_t *st = config_setting_get_member(g, "warmup_start");
	char path[64];

	snprintf(path, sizeof path, "egress[%zu].warmup", i);
	if (w && config_setting_type(w) == CONFIG_TYPE_STRING) {
		if (strcmp(config_setting_get_string(w), "standard"))
			return wfail(w, file, path, "expected \"standard\" or a table "
				     "( [ DAY, MAX_PER_DAY ], ... )", err, errlen);
		e->steps = vl_malloc(sizeof standard);
		memcpy(e->steps, standard, sizeof standard);
		e->nsteps = VL_ARRAY_LEN(standard);
		e->warmup = vl_strdup("standard");
	} else if (w && (config_setting_is_list(w) || config_setting_is_array(w))) {
		if (get_table(w, file, path, e, err, errlen) < 0)
			return -1;
	} else if (w) {
		return wfail(w, file, path, "expected \"standard\" or a table "
			     "( [ DAY, MAX_PER_DAY ], ... )", err, errlen);
	}
	snprintf(path, sizeof path, "egress[%zu].warmup_start", i);
	if (!st)
		return 0;
	if (!w)
		return wfail(st, file, path, "only with a warmup", err, errlen);
	const char *v = config_setting_get_string(st);
	if (!v || (e->warmup_start = parse_day(v)) < 0)
		return wfail(st, file, path, "expected a date \"YYYY-MM-DD\"", err, errlen);
	return 0;
}

int cfg_warmup_load(const void *list, const char *file, struct cfg *c, char *err,
		    size_t errlen)
{
	const config_setting_t *l = list;

	for (size_t i = 0; i < c->negress; i++)
		if (get_one(config_setting_get_elem(l, (unsigned)i), file, i, &c->egress[i], err,
			    errlen) < 0)
			return -1;
	return 0;
}

uint64_t cfg_warmup_cap(const struct cfg_egress *e, int64_t day)
{
	const struct cfg_warmup_step *at = NULL;

	for (size_t i = 0; i < e->nsteps && (int64_t)e->steps[i].day <= (day < 1 ? 1 : day); i++)
		at = &e->steps[i];
	return !at || !at->max ? UINT64_MAX : at->max;
}

void cfg_warmup_free(struct cfg_egress *e)
{
	free(e->warmup);
	free(e->steps);
	e->warmup = NULL;
	e->steps = NULL;
	e->nsteps = 0;
}

void cfg_warmup_print(const struct cfg_egress *e, struct vl_buf *o)
{
	char day[16];

	if (!e->nsteps)
		return;
	if (!strcmp(e->warmup, "standard")) {
		vl_buf_appends(o, " warmup = \"standard\";");
	} else {
		vl_buf_appends(o, " warmup = (");
		for (size_t i = 0; i < e->nsteps; i++)
			vl_buf_printf(o, "%s [ %u, %llu ]", i ? "," : "", e->steps[i].day,
				      (unsigned long long)e->steps[i].max);
		vl_buf_appends(o, " );");
	}
	if (e->warmup_start >= 0) {
		time_t t = (time_t)(e->warmup_start * 86400);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(day, sizeof day, "%Y-%m-%d", &tm);
		vl_buf_printf(o, " warmup_start = \"%s\";", day);
	}
}
