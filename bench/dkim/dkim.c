/*
 * volley-dkim-bench: DKIM signatures per second on one core.
 *  1. per algorithm (rsa-2048, ed25519): msg_dkim_sign of a typical bulk
 *     header set (From, To, Subject, Date, Message-ID, MIME-Version,
 *     Content-Type, List-Unsubscribe, List-Unsubscribe-Post, Feedback-ID)
 *     with the body hash given, as the engine signs a static-body job;
 *  2. ed25519 on a 5 KB and a 100 KB body: body hash once per job against
 *     the body hashed for every message;
 *  3. the body hash of 100 KB of prose, relaxed and simple, in MB/s, beside
 *     OpenSSL's bare SHA-256 of the same octets (the ceiling).
 *   volley-dkim-bench [SECONDS per figure, default 3]
 * Output: "name value unit" lines; bench/dkim.sh compares with openssl speed.
 */
#include "../../message/message.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char header[] =
	"From: Example News <news@example.com>\r\n"
	"To: Ann Example <ann@example.net>\r\n"
	"Subject: =?utf-8?Q?Our_autumn_news,_Ann?=\r\n"
	"Date: Mon, 23 Nov 2026 17:14:12 +0000\r\n"
	"Message-ID: <job1.12345@mta1.example.com>\r\n"
	"MIME-Version: 1.0\r\n"
	"List-Unsubscribe: <mailto:unsub@example.com>,\r\n <https://example.com/u/abcdef0123456789>\r\n"
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	"Feedback-ID: c1:fall-2026:volley\r\n"
	"Content-Type: multipart/alternative;\r\n boundary=\"=_vl.6c14e15b3214052a74392373.a\"\r\n"
	"\r\n";

static struct msg_dkim_key *key(const char *alg)
{
	char path[] = "/tmp/volley-dkim-bench-XXXXXX", err[256];
	EVP_PKEY *k = !strcmp(alg, "RSA") ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
					  : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f = fdopen(mkstemp(path), "w");
	if (!k || !f || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))
		abort();
	fclose(f);
	EVP_PKEY_free(k);
	struct msg_dkim_key *dk = msg_dkim_key_load(path, "example.com", "s1", err, sizeof err);
	unlink(path);
	if (!dk) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return dk;
}

/* A body of n octets: prose in lines of at most 76 columns, words and
 * single spaces as a newsletter's text (what relaxed canonicalisation
 * must look at), CRLF line ends. */
static char *body(size_t n)
{
	static const char *const words[] = {"the", "winter", "schedule", "is", "out:",
					    "every", "branch", "opens", "an", "hour", "later",
					    "from", "Monday,", "and", "reading", "rooms"};
	char *b = vl_malloc(n);
	size_t col = 0, w = 0;
	for (size_t i = 0; i + 2 < n;) {
		const char *x = words[w++ % (sizeof words / sizeof *words)];
		size_t k = strlen(x);
		if (col + 1 + k > 76 || i + 3 + k > n) {
			b[i++] = '\r', b[i++] = '\n';
			col = 0;
			if (i + 3 + k > n)
				break;
		}
		if (col)
			b[i++] = ' ', col++;
		memcpy(b + i, x, k);
		i += k, col += k;
	}
	size_t end = n - 2;
	while (end > 0 && (b[end - 1] == '\r' || b[end - 1] == '\n'))
		end--;
	memset(b + end, 'x', n - 2 - end);   /* pad the last line to n */
	memcpy(b + n - 2, "\r\n", 2);
	return b;
}

/* Signs per second for secs seconds; bh NULL: the body hashed each time. */
static double rate(const struct msg_dkim_key *k, const struct iovec *iov, double secs,
		   const unsigned char *bh)
{
	struct vl_buf out;
	char err[256];
	size_t n = 0;
	vl_buf_init(&out);
	uint64_t t0 = vl_now_ns(), end = t0 + (uint64_t)(secs * 1e9), now;
	do {
		for (int i = 0; i < 16; i++, n++) {
			out.len = 0;
			if (msg_dkim_sign(&k, 1, NULL, iov, 2, bh, &out, err, sizeof err) < 0) {
				fprintf(stderr, "sign: %s\n", err);
				exit(1);
			}
		}
	} while ((now = vl_now_ns()) < end);
	vl_buf_free(&out);
	return (double)n / ((double)(now - t0) / 1e9);
}

/* Body hashes of a body per second for secs seconds, as MB/s; c < 0:
 * the bare SHA-256 of the same octets (OpenSSL's own speed, the ceiling). */
static double hash_rate(int c, const char *b, size_t n, double secs)
{
	struct iovec iov = {(void *)b, n};
	unsigned char bh[MSG_DKIM_BH_LEN];
	EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
	size_t k = 0;
	uint64_t t0 = vl_now_ns(), end = t0 + (uint64_t)(secs * 1e9), now;
	do {
		for (int i = 0; i < 16; i++, k++)
			if (c < 0 ? !EVP_Digest(b, n, bh, NULL, md, NULL)
				  : msg_dkim_body_hash((enum msg_dkim_canon)c, &iov, 1, bh) < 0)
				exit(1);
	} while ((now = vl_now_ns()) < end);
	EVP_MD_free(md);
	return (double)k * (double)n / ((double)(now - t0) / 1e3);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("volley-dkim-bench %s\n", VL_VERSION);
		return 0;
	}
	double secs = argc > 1 ? atof(argv[1]) : 3;
	struct msg_dkim_key *rsa = key("RSA"), *ed = key("ED25519");
	unsigned char bh[MSG_DKIM_BH_LEN];
	size_t sizes[] = {5000, 100000};

	char *b = body(sizes[0]);
	struct iovec iov[2] = {{(void *)header, sizeof header - 1}, {b, sizes[0]}};
	msg_dkim_body_hash(MSG_DKIM_RELAXED, iov + 1, 1, bh);
	printf("rsa2048_sign %.0f sign/s\n", rate(rsa, iov, secs, bh));
	printf("ed25519_sign %.0f sign/s\n", rate(ed, iov, secs, bh));
	free(b);
	for (size_t i = 0; i < 2; i++) {
		b = body(sizes[i]);
		iov[1] = (struct iovec){b, sizes[i]};
		msg_dkim_body_hash(MSG_DKIM_RELAXED, iov + 1, 1, bh);
		printf("ed25519_body%zuk_hash_once %.0f msg/s\n", sizes[i] / 1000,
		       rate(ed, iov, secs, bh));
		printf("ed25519_body%zuk_hash_each %.0f msg/s\n", sizes[i] / 1000,
		       rate(ed, iov, secs, NULL));
		free(b);
	}
	b = body(sizes[1]);
	printf("sha256_body100k %.0f MB/s\n", hash_rate(-1, b, sizes[1], secs));
	printf("relaxed_body100k %.0f MB/s\n", hash_rate(MSG_DKIM_RELAXED, b, sizes[1], secs));
	printf("simple_body100k %.0f MB/s\n", hash_rate(MSG_DKIM_SIMPLE, b, sizes[1], secs));
	free(b);
	msg_dkim_key_free(rsa);
	msg_dkim_key_free(ed);
	return 0;
}
