/*
 * TLS-RPT days on disk: data_dir/tls-rpt/YYYY-MM-DD/<domain>.json, one
 * file per policy domain holding that day's aggregates (report.c's stored
 * form), and <domain>.sent once its report went out. The day being
 * recorded lives in memory; rpt_store_flush writes its changed domains
 * (atomically: a temporary file, fsync, rename, fsync of the folder), so
 * a crash loses what came after the last flush. The delivery thread adds,
 * the sender flushes and reads, API threads read: one mutex, never held
 * across disk I/O.
 */
#include "tlsrpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_MAX_ 4400

struct rpt_store {
	pthread_mutex_t mu;
	char *dir;
	struct rpt_day *cur;         /* the day being recorded */
	struct rpt_day *old;         /* the one before, until flushed */
};

/* dir/YYYY-MM-DD[/name suffix]; -1 when it does not fit. */
static int path_of(const struct rpt_store *st, int64_t day, const char *name,
		   const char *suffix, char *out, size_t len)
{
	char date[11];
	int n;

	rpt_day_format(day, date);
	if (name)
		n = snprintf(out, len, "%s/%s/%s%s", st->dir, date, name, suffix);
	else
		n = snprintf(out, len, "%s/%s", st->dir, date);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Write text to path atomically (the folder is fsync'd by the caller). */
static int write_atomic(const char *path, const char *text, size_t n)
{
	char tmp[PATH_MAX_ + 8];
	int fd;

	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) < 0)
		return -1;
	if (vl_write_all(fd, text, n) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

static int mkdir_synced(const char *dir)
{
	if (mkdir(dir, 0750) == 0)
		return vl_fsync_parent(dir);
	return errno == EEXIST ? 0 : -1;
}

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a > b && !strcmp(s + a - b, suf);
}

/* The day's stored domains from disk into d (a restart the same day). */
static void load_day(struct rpt_store *st, struct rpt_day *d)
{
	char dir[PATH_MAX_], path[PATH_MAX_ + 300], err[200];
	struct dirent *e;
	DIR *dp;

	if (path_of(st, rpt_day_day(d), NULL, "", dir, sizeof dir) < 0 ||
	    !(dp = opendir(dir)))
		return;
	while ((e = readdir(dp))) {
		if (!ends_with(e->d_name, ".json"))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		json_error_t je;
		json_t *j = json_load_file(path, 0, &je);
		if (!j || rpt_day_load(d, j, err, sizeof err) < 0)
			vl_log(VL_LOG_WARN, "tls-rpt: %s: %s: skipped", path, j ? err : je.text);
		json_decref(j);
	}
	closedir(dp);
}

struct rpt_store *rpt_store_open(const char *dir, char *err, size_t errlen)
{
	if (strlen(dir) > PATH_MAX_ - 300) {
		snprintf(err, errlen, "tls-rpt: folder name too long: %s", dir);
		return NULL;
	}
	if (mkdir_synced(dir) < 0) {
		snprintf(err, errlen, "tls-rpt: cannot create %s: %s", dir, strerror(errno));
		return NULL;
	}
	struct rpt_store *st = vl_calloc(1, sizeof *st);
	pthread_mutex_init(&st->mu, NULL);
	st->dir = vl_strdup(dir);
	st->cur = rpt_day_new(rpt_day_of(vl_wall_time()));
	load_day(st, st->cur);
	return st;
}

void rpt_store_close(struct rpt_store *st)
{
	if (!st)
		return;
	rpt_day_free(st->cur);
	rpt_day_free(st->old);
	pthread_mutex_destroy(&st->mu);
	free(st->dir);
	free(st);
}

void rpt_store_add(struct rpt_store *st, const struct rpt_session *s)
{
	int64_t day = rpt_day_of(vl_wall_time());

	pthread_mutex_lock(&st->mu);
	if (day > rpt_day_day(st->cur)) {
		if (st->old)          /* never flushed since: the disk keeps what it had */
			vl_log(VL_LOG_WARN, "tls-rpt: a day's last changes were never written");
		rpt_day_free(st->old);
		st->old = st->cur;
		st->cur = rpt_day_new(day);
	}
	rpt_day_add(st->cur, s);  /* a clock gone back counts on the newer day */
	pthread_mutex_unlock(&st->mu);
}

/* A domain's aggregates to write. */
struct item {
	int64_t day;
	char name[254];
	char *text;
	bool ok;
};

static void collect(struct rpt_day *d, struct item **v, size_t *n, size_t *cap)
{
	for (size_t i = 0; d && i < rpt_day_ndomains(d); i++) {
		bool dirty;
		const char *name = rpt_day_domain(d, i, &dirty);
		if (!dirty)
			continue;
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*v = vl_realloc(*v, *cap * sizeof **v);
		}
		json_t *j = rpt_day_domain_json(d, name);
		struct item *it = &(*v)[(*n)++];
		it->day = rpt_day_day(d);
		snprintf(it->name, sizeof it->name, "%s", name);
		it->text = json_dumps(j, JSON_COMPACT);
		it->ok = false;
		json_decref(j);
		rpt_day_set_dirty(d, i, false);
	}
}

static int write_item(struct rpt_store *st, struct item *it)
{
	char dir[PATH_MAX_], path[PATH_MAX_];

	if (path_of(st, it->day, NULL, "", dir, sizeof dir) < 0 ||
	    path_of(st, it->day, it->name, ".json", path, sizeof path) < 0)
		return -1;
	if (mkdir_synced(dir) < 0 || write_atomic(path, it->text, strlen(it->text)) < 0) {
		vl_log(VL_LOG_ERROR, "tls-rpt: cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	it->ok = true;
	return 0;
}

/* A domain whose file could not be written is dirty again. */
static void redirty(struct rpt_day *d, const char *name)
{
	for (size_t i = 0; d && i < rpt_day_ndomains(d); i++)
		if (!strcmp(rpt_day_domain(d, i, NULL), name))
			rpt_day_set_dirty(d, i, true);
}

int rpt_store_flush(struct rpt_store *st)
{
	struct item *v = NULL;
	size_t n = 0, cap = 0, bad = 0;
	int64_t old_day = -1;

	pthread_mutex_lock(&st->mu);
	collect(st->old, &v, &n, &cap);
	collect(st->cur, &v, &n, &cap);
	if (st->old)
		old_day = rpt_day_day(st->old);
	pthread_mutex_unlock(&st->mu);
	for (size_t i = 0; i < n; i++)
		bad += write_item(st, &v[i]) < 0;
	/* each day folder once: the renames in it become durable */
	for (size_t i = 0; i < n; i++) {
		char dir[PATH_MAX_];
		if (v[i].ok && (i == 0 || v[i].day != v[i - 1].day) &&
		    path_of(st, v[i].day, NULL, "", dir, sizeof dir) == 0 && vl_fsync_dir(dir) < 0)
			bad++;
	}
	pthread_mutex_lock(&st->mu);
	for (size_t i = 0; i < n; i++)
		if (!v[i].ok)
			redirty(v[i].day == rpt_day_day(st->cur) ? st->cur : st->old, v[i].name);
	if (st->old && rpt_day_day(st->old) == old_day && !bad) {
		rpt_day_free(st->old);     /* all of it is on disk now */
		st->old = NULL;
	}
	pthread_mutex_unlock(&st->mu);
	for (size_t i = 0; i < n; i++)
		free(v[i].text);
	free(v);
	return bad ? -1 : 0;
}

json_t *rpt_store_get(struct rpt_store *st, int64_t day, const char *domain)
{
	char name[254], path[PATH_MAX_];
	json_t *j = NULL;

	if (vl_domain_norm(domain, name) < 0)
		return NULL;
	pthread_mutex_lock(&st->mu);
	bool mem = day == rpt_day_day(st->cur) || (st->old && day == rpt_day_day(st->old));
	if (mem)
		j = rpt_day_domain_json(day == rpt_day_day(st->cur) ? st->cur : st->old, name);
	pthread_mutex_unlock(&st->mu);
	if (mem || path_of(st, day, name, ".json", path, sizeof path) < 0)
		return j;
	return json_load_file(path, 0, NULL);
}

static int cmp_day(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

size_t rpt_store_days(struct rpt_store *st, int64_t before, int64_t *days, size_t max)
{
	DIR *dp = opendir(st->dir);
	struct dirent *e;
	size_t n = 0;
	int64_t day, unwritten = -1;

	if (!dp)
		return 0;
	pthread_mutex_lock(&st->mu);
	if (st->old)              /* ended, but its last changes are not on disk */
		unwritten = rpt_day_day(st->old);
	pthread_mutex_unlock(&st->mu);
	while ((e = readdir(dp)) && n < max)
		if (rpt_day_parse(e->d_name, &day) == 0 && day < before && day != unwritten)
			days[n++] = day;
	closedir(dp);
	qsort(days, n, sizeof *days, cmp_day);
	return n;
}

json_t *rpt_store_domains(struct rpt_store *st, int64_t day)
{
	char dir[PATH_MAX_], name[300];
	json_t *a = json_array();
	struct dirent *e;
	DIR *dp;

	if (path_of(st, day, NULL, "", dir, sizeof dir) < 0 || !(dp = opendir(dir)))
		return a;
	while ((e = readdir(dp))) {
		size_t n = strlen(e->d_name);
		if (!ends_with(e->d_name, ".json") || n - 5 >= sizeof name)
			continue;
		memcpy(name, e->d_name, n - 5);
		name[n - 5] = '\0';
		json_array_append_new(a, json_string(name));
	}
	closedir(dp);
	return a;
}

int rpt_store_mark_sent(struct rpt_store *st, int64_t day, const char *domain,
			const char *what)
{
	char dir[PATH_MAX_], path[PATH_MAX_], name[254], line[600];

	if (vl_domain_norm(domain, name) < 0 || path_of(st, day, NULL, "", dir, sizeof dir) < 0 ||
	    path_of(st, day, name, ".sent", path, sizeof path) < 0)
		return -1;
	int n = snprintf(line, sizeof line, "%s\n", what);
	if (mkdir_synced(dir) < 0 ||
	    write_atomic(path, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0 ||
	    vl_fsync_dir(dir) < 0) {
		vl_log(VL_LOG_ERROR, "tls-rpt: cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

bool rpt_store_sent(struct rpt_store *st, int64_t day, const char *domain)
{
	char path[PATH_MAX_], name[254];

	return vl_domain_norm(domain, name) == 0 &&
	       path_of(st, day, name, ".sent", path, sizeof path) == 0 && access(path, F_OK) == 0;
}

void rpt_store_remove_day(struct rpt_store *st, int64_t day)
{
	char dir[PATH_MAX_], path[PATH_MAX_ + 300];
	struct dirent *e;
	DIR *dp;

	if (path_of(st, day, NULL, "", dir, sizeof dir) < 0 || !(dp = opendir(dir)))
		return;
	while ((e = readdir(dp)))
		if (e->d_name[0] != '.') {
			snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
			unlink(path);
		}
	closedir(dp);
	if (rmdir(dir) == 0)
		vl_fsync_dir(st->dir);
}
