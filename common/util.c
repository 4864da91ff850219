/* Time, value parsing, glob matching, logging. */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t vl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t vl_now_ms(void)
{
	return vl_now_ns() / 1000000ull;
}

double vl_wall_time(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A finite, non-negative decimal number followed by an optional suffix. */
static int parse_number(const char *s, double *v, const char **rest)
{
	char *end;

	if (!s || !*s || !(isdigit((unsigned char)*s) || *s == '.'))
		return -1;
	errno = 0;
	*v = strtod(s, &end);
	if (errno || end == s || !isfinite(*v) || *v < 0)
		return -1;
	*rest = end;
	return 0;
}

struct unit {
	const char *suffix;
	double mul;
};

/* A number with one of units' suffixes, scaled, at most max. */
static int parse_scaled(const char *s, const struct unit *units, size_t n, double max,
			uint64_t *out)
{
	double v;
	const char *rest;

	if (parse_number(s, &v, &rest) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rest, units[i].suffix) == 0) {
			double r = v * units[i].mul;
			if (r > max)
				return -1;
			*out = (uint64_t)llround(r);
			return 0;
		}
	}
	return -1;
}

int vl_parse_duration_ms(const char *s, uint64_t *ms)
{
	static const struct unit units[] = {
		{"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000},
		{"h", 3600000}, {"d", 86400000},
	};
	return parse_scaled(s, units, VL_ARRAY_LEN(units), 1e15, ms);
}

/* H. Hinnant's algorithm: no gmtime_r, which takes the time zone lock. */
void vl_civil(long long days, int *y, int *m, int *d)
{
	days += 719468;
	long long era = (days >= 0 ? days : days - 146096) / 146097;
	unsigned doe = (unsigned)(days - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

void vl_iso8601(double t, char out[32])
{
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int vl_parse_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
		{"", 1}, {"B", 1}, {"K", 1e3}, {"KB", 1e3}, {"KiB", 1024},
		{"M", 1e6}, {"MB", 1e6}, {"MiB", 1048576}, {"G", 1e9},
		{"GB", 1e9}, {"GiB", 1073741824.0}, {"T", 1e12}, {"TB", 1e12},
		{"TiB", 1099511627776.0},
	};
	return parse_scaled(s, units, VL_ARRAY_LEN(units), 1.8e19, bytes);
}

int vl_parse_rate(const char *s, double *per_s)
{
	static const struct { const char *unit; double s; } units[] = {
		{"s", 1}, {"sec", 1}, {"m", 60}, {"min", 60}, {"h", 3600},
		{"hour", 3600}, {"d", 86400}, {"day", 86400},
	};
	double v;
	const char *rest;

	if (parse_number(s, &v, &rest) < 0 || *rest != '/' || v <= 0)
		return -1;
	for (size_t i = 0; i < VL_ARRAY_LEN(units); i++) {
		if (strcmp(rest + 1, units[i].unit) == 0) {
			*per_s = v / units[i].s;
			return 0;
		}
	}
	return -1;
}

int vl_parse_percent(const char *s, double *pct)
{
	double v;
	const char *rest;

	if (parse_number(s, &v, &rest) < 0)
		return -1;
	if (*rest && strcmp(rest, "%") != 0)
		return -1;
	if (v > 100)
		return -1;
	*pct = v;
	return 0;
}

int vl_parse_u64(const char *s, uint64_t *v)
{
	uint64_t x = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		unsigned d = (unsigned)(*s - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

int vl_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t n;
	uint64_t p;

	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -1;
		h = s + 1;
		n = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -1;
		n = (size_t)(colon - s);
	}
	if (n == 0 || n >= hostlen || vl_parse_u64(colon + 1, &p) < 0 ||
	    p == 0 || p > 65535)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (uint16_t)p;
	return 0;
}

bool vl_glob_match(const char *pat, const char *s)
{
	const char *star = NULL, *resume = NULL;

	/* Iterative with one backtrack point: linear-ish, no recursion a
	 * hostile pattern could blow up. */
	while (*s) {
		if (*pat == '*') {
			star = pat++;
			resume = s;
		} else if (*pat == '?' ||
			   tolower((unsigned char)*pat) == tolower((unsigned char)*s)) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

int vl_domain_norm(const char *in, char out[254])
{
	size_t n = in ? strlen(in) : 0;

	if (!n || n > 253 || in[0] == '.' || in[n - 1] == '.')
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.') || (c == '.' && in[i + 1] == '.'))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

int vl_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int vl_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

void vl_oom(size_t n)
{
	/* no allocation here: stderr is unbuffered */
	fprintf(stderr, "volley: out of memory (allocating %zu octets); aborting\n", n);
	abort();
}

int vl_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

int vl_fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];

	if (!slash)
		return vl_fsync_dir(".");
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= sizeof dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, path, n);
	dir[n] = '\0';
	return vl_fsync_dir(dir);
}

void vl_thread_name(const char *name)
{
	pthread_setname_np(pthread_self(), name);
}

int vl_read_file(const char *path, struct vl_buf *out)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	vl_buf_init(out);
	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		vl_buf_append(out, buf, (size_t)n);
	int e = errno;
	close(fd);
	errno = e;
	return n < 0 ? -1 : 0;
}

void vl_prom_metric(struct vl_buf *b, const char *name, const char *type, const char *help,
		    const char *labels, double v)
{
	if (help)
		vl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	vl_buf_printf(b, "%s%s %.17g\n", name, labels ? labels : "", v);
}
