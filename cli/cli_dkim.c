/*
 * volley dkim keygen: a DKIM signing key (PEM, mode 0600) and the DNS TXT
 * record to publish for it. Runs without the daemon.
 *   volley dkim keygen --domain D --selector S [--algorithm rsa|ed25519]
 *                      [--bits 2048] [--out DIR]
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

struct keygen {
	const char *domain, *selector, *alg, *out;
	long bits;
};

static const char usage_line[] = "usage: volley dkim keygen --domain D --selector S "
	"[--algorithm rsa|ed25519] [--bits 1024-4096] [--out DIR]";

/* LDH labels joined by dots: what d= and s= may hold. */
static bool dns_name_ok(const char *s)
{
	size_t label = 0, n = strlen(s);

	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (; *s; s++) {
		bool ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
			  (*s >= '0' && *s <= '9') || *s == '-' || *s == '_';
		if (*s == '.' ? label == 0 : !ok)
			return false;
		label = *s == '.' ? 0 : label + 1;
		if (label > 63)
			return false;
	}
	return true;
}

static int parse(int argc, char **argv, struct keygen *k)
{
	const char **str[] = {&k->domain, &k->selector, &k->alg, &k->out};
	static const char *const names[] = {"--domain", "--selector", "--algorithm", "--out"};
	char *end;

	for (int i = 2; i < argc; i += 2) {
		size_t o = 0;
		while (o < 4 && strcmp(argv[i], names[o]))
			o++;
		if (i + 1 >= argc || (o == 4 && strcmp(argv[i], "--bits"))) {
			cli_err("dkim keygen: bad option %s; %s", argv[i], usage_line);
			return -1;
		}
		if (o < 4)
			*str[o] = argv[i + 1];
		else if ((k->bits = strtol(argv[i + 1], &end, 10)) < 1024 || k->bits > 4096 || *end) {
			cli_err("dkim keygen: --bits must be 1024-4096");
			return -1;
		}
	}
	if (!k->domain || !k->selector || !dns_name_ok(k->domain) || !dns_name_ok(k->selector) ||
	    (strcmp(k->alg, "rsa") && strcmp(k->alg, "ed25519"))) {
		cli_err("dkim keygen: %s", usage_line);
		return -1;
	}
	return 0;
}

static int write_key(EVP_PKEY *pk, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		cli_err("dkim keygen: %s: %s", path, strerror(errno));
		return -1;
	}
	FILE *f = fdopen(fd, "w");
	int ok = f && fchmod(fd, 0600) == 0 &&
		 PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1;
	if ((f ? fclose(f) : close(fd)) != 0 || !ok) {
		cli_err("dkim keygen: cannot write %s", path);
		unlink(path);
		return -1;
	}
	return 0;
}

/* p=: SubjectPublicKeyInfo for RSA, the raw 32 octets for Ed25519 (RFC 8463). */
static char *public_b64(EVP_PKEY *pk, bool ed)
{
	unsigned char raw[8192], *p = raw;
	size_t n = sizeof raw;

	if (ed ? EVP_PKEY_get_raw_public_key(pk, raw, &n) != 1 :
		 (int)(n = (size_t)i2d_PUBKEY(pk, NULL)) <= 0 || n > sizeof raw ||
		 i2d_PUBKEY(pk, &p) <= 0)
		return NULL;
	char *out = vl_malloc(n * 4 / 3 + 8);
	EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
	return out;
}

/* The record, its text in strings of at most 255 octets (RFC 1035). */
static void print_record(const struct keygen *k, const char *path, const char *p)
{
	char txt[8400];
	int n = snprintf(txt, sizeof txt, "v=DKIM1; k=%s; p=%s", k->alg, p);

	printf("; private key: %s (mode 0600)\n", path);
	printf("%s._domainkey.%s IN TXT", k->selector, k->domain);
	for (int i = 0; i < n; i += 255)
		printf(" \"%.*s\"", n - i < 255 ? n - i : 255, txt + i);
	putchar('\n');
}

static int keygen(int argc, char **argv)
{
	struct keygen k = {.alg = "rsa", .out = ".", .bits = 2048};
	char path[4096];

	if (parse(argc, argv, &k) < 0)
		return CLI_USAGE;
	bool ed = !strcmp(k.alg, "ed25519");
	EVP_PKEY *pk = ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") :
			    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)k.bits);
	snprintf(path, sizeof path, "%s/%s.%s.pem", k.out, k.domain, k.selector);
	char *p = pk ? public_b64(pk, ed) : NULL;
	int rc = 1;
	if (!p)
		cli_err("dkim keygen: key generation failed");
	else if (write_key(pk, path) == 0)
		print_record(&k, path, p), rc = CLI_OK;
	free(p);
	EVP_PKEY_free(pk);
	return rc;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
		    (i == 1 && !strcmp(argv[i], "help")))
			return true;
	return false;
}

int cli_dkim(int argc, char **argv)
{
	if (wants_help(argc, argv)) {
		printf("%s\n\nWrites a DKIM signing key to DIR/D.S.pem (mode 0600; default DIR: .)\n"
		       "and prints the DNS TXT record to publish for it. Needs no daemon.\n"
		       "More: volley(1), docs/dkim.md.\n", usage_line);
		return CLI_OK;
	}
	if (argc >= 2 && !strcmp(argv[1], "keygen"))
		return keygen(argc, argv);
	cli_err("dkim: %s", usage_line);
	return CLI_USAGE;
}
