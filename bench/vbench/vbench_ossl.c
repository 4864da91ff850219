/*
 * One core's signing rate, the yardstick of a DKIM scenario: `openssl
 * speed` for the scenario's key type (rsa2048 or ed25519), one process
 * (no -multi), run beside volley in the same run, so that volley's signed
 * messages a second can be put over it. Its machine-readable output
 * (-mr) gives the count of signatures and the seconds they took:
 * "+R1:COUNT:2048:SECONDS" for RSA, "+R8:COUNT:253:Ed25519:SECONDS" for
 * Ed25519.
 */
#include "vbench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vb_ossl_alg(const struct vb_scen *sc)
{
	return !strcmp(sc->dkim, "rsa") ? "rsa2048" : "ed25519";
}

/* The sign rate in one line of openssl speed -mr; 0 if it is not one. */
static double parse_line(const char *line, bool rsa)
{
	double count, secs;
	unsigned bits;
	char curve[32];

	if (rsa && sscanf(line, "+R1:%lf:%u:%lf", &count, &bits, &secs) == 3 && bits == 2048)
		return secs > 0 ? count / secs : 0;
	if (!rsa && sscanf(line, "+R8:%lf:%u:%31[^:]:%lf", &count, &bits, curve, &secs) == 4 &&
	    !strcmp(curve, "Ed25519"))
		return secs > 0 ? count / secs : 0;
	return 0;
}

double vb_ossl_speed(const struct vb_scen *sc, const char *dir)
{
	char out[PATH_MAX], line[256];
	bool rsa = !strcmp(sc->dkim, "rsa");
	double rate = 0;

	snprintf(out, sizeof out, "%.4000s/openssl-speed.txt", dir);
	fprintf(stderr, "== openssl speed -seconds %ld %s (one core)\n", sc->openssl_seconds,
		vb_ossl_alg(sc));
	if (vb_system("openssl speed -mr -seconds %ld %s >'%s' 2>&1", sc->openssl_seconds,
		      vb_ossl_alg(sc), out) != 0) {
		fprintf(stderr, "volley-bench: openssl speed failed (see %s)\n", out);
		return 0;
	}
	FILE *f = fopen(out, "r");
	while (f && rate == 0 && fgets(line, sizeof line, f))
		rate = parse_line(line, rsa);
	if (f)
		fclose(f);
	if (rate == 0)
		fprintf(stderr, "volley-bench: no sign rate in %s\n", out);
	return rate;
}
