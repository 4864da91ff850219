/* The feedback samples under tests/unit/data/feedback/, found from the
 * test program's own place (build/tests/unit or build/asan/tests/unit). */
#ifndef VOLLEY_TEST_FB_SAMPLES_H
#define VOLLEY_TEST_FB_SAMPLES_H

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The whole sample name (e.g. "postfix-dsn.eml"), malloc'd, its length in *len. */
static inline char *fb_sample(const char *name, size_t *len)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
	FILE *f = NULL;

	cr_assert_gt(n, 0);
	dir[n] = '\0';
	for (int up = 0; up < 5 && !f; up++) {
		char *slash = strrchr(dir, '/');
		if (!slash)
			break;
		*slash = '\0';
		snprintf(path, sizeof path, "%s/tests/unit/data/feedback/%s", dir, name);
		f = fopen(path, "rb");
	}
	if (!f) {       /* run from the repository's top */
		snprintf(path, sizeof path, "tests/unit/data/feedback/%s", name);
		f = fopen(path, "rb");
	}
	cr_assert_not_null(f, "sample %s not found", name);
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)sz + 1);
	cr_assert_eq(fread(buf, 1, (size_t)sz, f), (size_t)sz);
	fclose(f);
	buf[sz] = '\0';
	*len = (size_t)sz;
	return buf;
}

/* LF to CR LF, as a maildir written by an MTA that keeps CR LF holds it. */
static inline char *fb_crlf(const char *s, size_t n, size_t *out)
{
	char *b = malloc(2 * n + 1);
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			b[k++] = '\r';
		b[k++] = s[i];
	}
	b[k] = '\0';
	*out = k;
	return b;
}

#endif
