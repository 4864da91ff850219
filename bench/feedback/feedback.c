/*
 * volley-feedback-bench: reports parsed per second on one core. Parses a
 * mix of the samples (DSNs, ARF reports, heuristic bounces, a non-report),
 * read from tests/unit/data/feedback/, round robin, and matches each as
 * the caller will (VERP, then the returned Message-ID).
 *   volley-feedback-bench [COUNT, default 100000] [SAMPLES DIR]
 * Output: "name value unit" lines.
 */
#include "../../feedback/feedback.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const names[] = {
	"postfix-dsn.eml", "postfix-delayed.eml", "multi-rcpt-dsn.eml", "dsn-base64.eml",
	"arf-rfc5965.eml", "arf-yahoo.eml",       "arf-microsoft.eml",  "qsbmf.eml",
	"exchange-ndr.eml", "gmail-plain.eml",    "not-report.eml",
};
#define NSAMPLES (sizeof names / sizeof names[0])

static char *load(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *b = malloc((size_t)n + 1);
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "%s: read failed\n", path);
		exit(1);
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long count = argc > 1 ? atol(argv[1]) : 100000;
	const char *dir = argc > 2 ? argv[2] : "tests/unit/data/feedback";
	char *msg[NSAMPLES];
	size_t len[NSAMPLES], bytes = 0, matched = 0, kinds[4] = { 0 };
	char err[256], id[FB_JOB_ID_LEN + 1];

	if (count <= 0)
		count = 100000;
	for (size_t i = 0; i < NSAMPLES; i++)
		msg[i] = load(dir, names[i], &len[i]);
	double t0 = now();
	for (long i = 0; i < count; i++) {
		size_t k = (size_t)i % NSAMPLES, idx;
		struct fb_report r;
		bool has;
		if (fb_parse(msg[k], len[k], NULL, &r, err, sizeof err)) {
			fprintf(stderr, "%s: %s\n", names[k], err);
			return 1;
		}
		kinds[r.kind]++;
		bytes += len[k];
		if ((r.envelope_to && fb_match_verp(r.envelope_to, id, &idx)) ||
		    (r.orig_msgid && fb_match_msgid(r.orig_msgid, id, &idx, &has)))
			matched++;
		fb_report_free(&r);
	}
	double s = now() - t0;
	printf("feedback_reports %ld count\n", count);
	printf("feedback_mix dsn=%zu arf=%zu heuristic=%zu not_report=%zu matched=%zu\n",
	       kinds[FB_DSN], kinds[FB_ARF], kinds[FB_BOUNCE_HEURISTIC], kinds[FB_NOT_REPORT], matched);
	printf("feedback_parse_rate %.0f reports/s\n", (double)count / s);
	printf("feedback_parse_bytes %.1f MB/s\n", (double)bytes / s / 1e6);
	for (size_t i = 0; i < NSAMPLES; i++)
		free(msg[i]);
	return 0;
}
