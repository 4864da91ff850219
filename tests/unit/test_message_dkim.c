/* message/: DKIM -- canonicalisation (RFC 6376 3.4 and its 3.4.5 example),
 * the streamed body hash across iovec boundaries, key loading errors, the
 * h= list, folding, and messages that cannot be signed. Signatures
 * themselves are verified by python3-dkim and opendkim (e2e test_dkim). */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../message/message.h"

static char *canon_h(enum msg_dkim_canon c, const char *f)
{
	struct vl_buf b;
	vl_buf_init(&b);
	msg_dkim_canon_header(c, f, strlen(f), &b);
	vl_buf_append(&b, "", 1);
	return b.p;
}

static char *canon_b(enum msg_dkim_canon c, const char *s)
{
	struct vl_buf b;
	vl_buf_init(&b);
	msg_dkim_canon_body(c, s, strlen(s), &b);
	vl_buf_append(&b, "", 1);
	return b.p;
}

#define HEQ(c, in, want) do { char *g_ = canon_h(c, in); \
	cr_expect_str_eq(g_, want, "header %s", in); free(g_); } while (0)
#define BEQ(c, in, want) do { char *g_ = canon_b(c, in); \
	cr_expect_str_eq(g_, want, "body %s", in); free(g_); } while (0)

Test(message_dkim, rfc6376_example)
{
	/* RFC 6376 3.4.5 */
	HEQ(MSG_DKIM_RELAXED, "A: X", "a:X");
	HEQ(MSG_DKIM_RELAXED, "B : Y\t\r\n\tZ  ", "b:Y Z");
	HEQ(MSG_DKIM_SIMPLE, "B : Y\t\r\n\tZ  ", "B : Y\t\r\n\tZ  ");
	BEQ(MSG_DKIM_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
	BEQ(MSG_DKIM_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n");
}

Test(message_dkim, body_edges)
{
	BEQ(MSG_DKIM_RELAXED, "", "");
	BEQ(MSG_DKIM_SIMPLE, "", "\r\n");
	BEQ(MSG_DKIM_RELAXED, "\r\n\r\n", "");
	BEQ(MSG_DKIM_SIMPLE, "\r\n\r\n", "\r\n");
	BEQ(MSG_DKIM_RELAXED, "abc", "abc\r\n");
	BEQ(MSG_DKIM_SIMPLE, "abc", "abc\r\n");
	BEQ(MSG_DKIM_RELAXED, "a\r\n  \r\n\t\r\n", "a\r\n");
	BEQ(MSG_DKIM_SIMPLE, "a\r\n  \r\n\t\r\n", "a\r\n  \r\n\t\r\n");
	BEQ(MSG_DKIM_RELAXED, "a\r\n\r\n \r\nb \r\n\r\n", "a\r\n\r\n\r\nb\r\n");
	BEQ(MSG_DKIM_RELAXED, "Gr\xc3\xbc\xc3\x9f" "e \t \r\n", "Gr\xc3\xbc\xc3\x9f" "e\r\n");
	BEQ(MSG_DKIM_RELAXED, "a\rb\r\n", "a\rb\r\n");
	BEQ(MSG_DKIM_RELAXED, "  lead\r\n", " lead\r\n");
}

Test(message_dkim, header_edges)
{
	HEQ(MSG_DKIM_RELAXED, "SUBJECT:   many   words \t here  ", "subject:many words here");
	HEQ(MSG_DKIM_RELAXED, "Subject: a\r\n b\r\n\t c", "subject:a b c");
	HEQ(MSG_DKIM_RELAXED, "X-Empty:", "x-empty:");
	HEQ(MSG_DKIM_RELAXED, "X-Empty: \t ", "x-empty:");
	HEQ(MSG_DKIM_RELAXED, "Subject: Gr\xc3\xbc\xc3\x9f" "e  x", "subject:Gr\xc3\xbc\xc3\x9f" "e x");
	HEQ(MSG_DKIM_SIMPLE, "SUBJECT:  x ", "SUBJECT:  x ");
}

static void sha(const char *s, size_t n, unsigned char out[32])
{
	EVP_Digest(s, n, out, NULL, EVP_sha256(), NULL);
}

Test(message_dkim, body_hash_streams_across_iovecs)
{
	const char *body = "one  \r\n\r\ntwo\t \r\n \r\nthr\ree\r\n\r\n\r\n";
	size_t n = strlen(body);

	for (int c = 0; c < 2; c++) {
		struct vl_buf want;
		unsigned char w[32], got[32];
		vl_buf_init(&want);
		msg_dkim_canon_body((enum msg_dkim_canon)c, body, n, &want);
		sha(want.p, want.len, w);
		for (size_t a = 0; a <= n; a++)
			for (size_t b = a; b <= n; b += 3) {
				struct iovec iov[3] = {{(void *)body, a}, {(void *)(body + a), b - a},
						       {(void *)(body + b), n - b}};
				cr_assert_eq(msg_dkim_body_hash((enum msg_dkim_canon)c, iov, 3, got), 0);
				cr_assert(!memcmp(got, w, 32), "split at %zu, %zu", a, b);
			}
		vl_buf_free(&want);
	}
}

Test(message_dkim, msg_body_hash_skips_header)
{
	const char *m = "From: a@b.c\r\nSubject: x\r\n\r\nbody  \r\n\r\n";
	unsigned char got[32], w[32];
	struct iovec iov = {(void *)m, strlen(m)};

	cr_assert_eq(msg_dkim_msg_body_hash(MSG_DKIM_RELAXED, &iov, 1, got), 0);
	sha("body\r\n", 6, w);
	cr_expect(!memcmp(got, w, 32));
	iov.iov_len = 10;   /* "From: a@b." -- no CRLF end */
	cr_expect_eq(msg_dkim_msg_body_hash(MSG_DKIM_RELAXED, &iov, 1, got), -1);
}

/* RFC 6376 3.4.3 and 3.4.4 read literally, line by line: the reference the
 * span-based canonicaliser (its vector scan, its spans across iovecs) must
 * agree with on any input. */
static void ref_body(enum msg_dkim_canon c, const char *p, size_t n, struct vl_buf *out)
{
	struct vl_buf lines;        /* each canonical line, without its CRLF */
	size_t *ends = calloc(n + 2, sizeof *ends), nl = 0;

	vl_buf_init(&lines);
	for (size_t i = 0; i < n;) {
		size_t e = i;
		while (e < n && !(p[e] == '\r' && e + 1 < n && p[e + 1] == '\n'))
			e++;
		bool ws = false;
		for (size_t k = i; k < e; k++) {
			bool w = c == MSG_DKIM_RELAXED && (p[k] == ' ' || p[k] == '\t');
			if (!w && ws)
				vl_buf_append(&lines, " ", 1);
			if (!w)
				vl_buf_append(&lines, p + k, 1);
			ws = w;           /* trailing white space is never written */
		}
		ends[nl++] = lines.len;
		i = e < n ? e + 2 : n;
	}
	while (nl && ends[nl - 1] == (nl > 1 ? ends[nl - 2] : 0))
		nl--;                       /* empty lines at the end */
	for (size_t l = 0; l < nl; l++) {
		size_t a = l ? ends[l - 1] : 0;
		vl_buf_append(out, lines.p + a, ends[l] - a);
		vl_buf_append(out, "\r\n", 2);
	}
	if (c == MSG_DKIM_SIMPLE && nl == 0)
		vl_buf_append(out, "\r\n", 2);
	vl_buf_free(&lines);
	free(ends);
}

/* Random bodies of every length to 300 (long plain runs for the 16-octet
 * scan, and the octets that need thought at any place), hashed in one, two
 * and three iovecs split anywhere, against the reference. */
Test(message_dkim, body_canon_matches_reference)
{
	static const char alpha[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa         \t\r\n\r\n\r\r\n\n=\xc3";
	uint64_t seed = 19;
	char b[320];

	for (int t = 0; t < 6000; t++) {
		size_t n = t < 300 ? (size_t)t : vl_rand(&seed) % 300;
		bool plain = vl_rand(&seed) % 4 == 0;   /* prose: words, single spaces, CRLF */
		for (size_t i = 0; i < n; i++) {
			uint64_t r = vl_rand(&seed);
			b[i] = plain ? (char)(r % 7 == 0 ? ' ' : 'a' + (int)(r % 26)) : alpha[r % (sizeof alpha - 1)];
			if (plain && i % 40 == 39 && i + 1 < n)
				b[i] = '\r', b[++i] = '\n';
		}
		for (int c = 0; c < 2; c++) {
			struct vl_buf want, got;
			unsigned char w[32], h[32];
			vl_buf_init(&want);
			vl_buf_init(&got);
			ref_body((enum msg_dkim_canon)c, b, n, &want);
			msg_dkim_canon_body((enum msg_dkim_canon)c, b, n, &got);
			cr_assert(got.len == want.len && (!got.len || !memcmp(got.p, want.p, got.len)),
				  "case %d, %s: %zu octets canonicalised to %zu, want %zu", t,
				  c ? "simple" : "relaxed", n, got.len, want.len);
			sha(want.p, want.len, w);
			size_t x = n ? vl_rand(&seed) % (n + 1) : 0, y = x + (n > x ? vl_rand(&seed) % (n - x + 1) : 0);
			struct iovec iov[3] = {{b, x}, {b + x, y - x}, {b + y, n - y}};
			cr_assert_eq(msg_dkim_body_hash((enum msg_dkim_canon)c, iov, 3, h), 0);
			cr_assert(!memcmp(h, w, 32), "case %d, %s: split at %zu and %zu", t,
				  c ? "simple" : "relaxed", x, y);
			vl_buf_free(&want);
			vl_buf_free(&got);
		}
	}
}

/* ---- keys ---- */

static char *key_file(const char *alg, size_t bits)
{
	static char path[64];
	EVP_PKEY *k = !strcmp(alg, "RSA") ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits) :
		      !strcmp(alg, "EC") ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256") :
		      EVP_PKEY_Q_keygen(NULL, NULL, alg);
	cr_assert(k);
	snprintf(path, sizeof path, "/tmp/volley-dkim-XXXXXX");
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	cr_assert(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	EVP_PKEY_free(k);
	return path;
}

static struct msg_dkim_key *load(const char *path, char *err)
{
	return msg_dkim_key_load(path, "example.com", "sel", err, 200);
}

Test(message_dkim, key_errors)
{
	char err[200];
	char *p;

	cr_expect_null(load("/nonexistent/key.pem", err));
	cr_expect(strstr(err, "No such file"), "%s", err);
	p = key_file("RSA", 512);
	cr_expect_null(load(p, err));
	cr_expect(strstr(err, "512 bits"), "%s", err);
	unlink(p);
	p = key_file("EC", 0);
	cr_expect_null(load(p, err));
	cr_expect(strstr(err, "neither RSA nor Ed25519"), "%s", err);
	FILE *f = fopen(p, "w");
	fputs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", f);
	fclose(f);
	cr_expect_null(load(p, err));
	cr_expect(strstr(err, "not a PEM private key"), "%s", err);
	truncate(p, 0);
	cr_expect_null(load(p, err));
	unlink(p);
	p = key_file("ED25519", 0);
	cr_expect_null(msg_dkim_key_load(p, "exa mple.com", "s", err, sizeof err));
	cr_expect_null(msg_dkim_key_load(p, "example.com", "s;x=1", err, sizeof err));
	struct msg_dkim_key *k = load(p, err);
	cr_assert(k, "%s", err);
	cr_expect_str_eq(msg_dkim_key_alg(k), "ed25519-sha256");
	msg_dkim_key_free(k);
	unlink(p);
}

/* ---- signing ---- */

static struct msg_dkim_key *ed, *rsa;

static void keys_init(void)
{
	char err[200], *p = key_file("ED25519", 0);
	ed = load(p, err);
	unlink(p);
	p = key_file("RSA", 2048);
	rsa = load(p, err);
	unlink(p);
	cr_assert(ed && rsa);
	cr_assert_str_eq(msg_dkim_key_alg(rsa), "rsa-sha256");
}

static void keys_fini(void)
{
	msg_dkim_key_free(ed);
	msg_dkim_key_free(rsa);
}

static int sign(const char *m, const struct msg_dkim_opts *o, struct vl_buf *out,
		char *err)
{
	const struct msg_dkim_key *k[2] = {ed, rsa};
	struct iovec iov = {(void *)m, strlen(m)};
	vl_buf_reset(out);
	int rc = msg_dkim_sign(k, 2, o, &iov, 1, NULL, out, err, 200);
	vl_buf_append(out, "", 1);
	out->len--;
	return rc;
}

/* The h= value of the first signature, unfolded. */
static void hlist(const char *sig, char *out)
{
	const char *h = strstr(sig, " h=");
	size_t n = 0;
	cr_assert(h);
	for (h += 3; *h != ';'; h++)
		if (*h != '\r' && *h != '\n' && *h != ' ')
			out[n++] = *h;
	out[n] = 0;
}

#define MSG "Received: x\r\nTo: a@example.net\r\nfrom: n@example.com\r\n" \
	"X-Custom: y\r\nSubject: hi\r\nTo: b@example.net\r\nList-Unsubscribe: <u>\r\n" \
	"\r\nbody\r\n"

Test(message_dkim, header_list, .init = keys_init, .fini = keys_fini)
{
	struct vl_buf b;
	char err[200], h[400];
	vl_buf_init(&b);

	cr_assert_eq(sign(MSG, NULL, &b, err), 0, "%s", err);
	hlist(b.p, h);
	cr_expect_str_eq(h, "From:From:Subject:To:To:List-Unsubscribe");
	const char *mine[] = {"X-Custom", "from", "Missing"};
	struct msg_dkim_opts o = {.headers = mine, .nheaders = 3, .t = 1700000000,
				  .expire = 86400, .hcanon = MSG_DKIM_SIMPLE};
	cr_assert_eq(sign(MSG, &o, &b, err), 0, "%s", err);
	hlist(b.p, h);
	cr_expect_str_eq(h, "X-Custom:from:from");
	cr_expect(strstr(b.p, "c=simple/relaxed;"));
	cr_expect(strstr(b.p, "t=1700000000;"));
	cr_expect(strstr(b.p, "x=1700086400;"));
	cr_expect(strstr(b.p, "a=ed25519-sha256;"));
	cr_expect(strstr(strstr(b.p, "\r\nDKIM-Signature:"), "a=rsa-sha256;"));
	vl_buf_free(&b);
}

/* Every line CRLF-ended, <= 78 octets, continuations indented. */
static void check_folded(const char *s, size_t nsig)
{
	size_t sigs = 0;
	while (*s) {
		const char *e = strstr(s, "\r\n");
		cr_assert(e);
		cr_expect_leq(e - s, 78, "%.*s", (int)(e - s), s);
		if (!strncmp(s, "DKIM-Signature:", 15))
			sigs++;
		else
			cr_expect(*s == ' ');
		s = e + 2;
	}
	cr_expect_eq(sigs, nsig);
}

Test(message_dkim, folding, .init = keys_init, .fini = keys_fini)
{
	struct vl_buf b, m;
	char err[200];
	vl_buf_init(&b);
	vl_buf_init(&m);
	vl_buf_appends(&m, "From: n@example.com\r\nSubject: a\r\n");
	for (int i = 0; i < 40; i++)
		vl_buf_printf(&m, "References: <%d@example.com>\r\n", i);
	vl_buf_appends(&m, "\r\nbody\r\n");
	vl_buf_append(&m, "", 1);
	cr_assert_eq(sign(m.p, NULL, &b, err), 0, "%s", err);
	check_folded(b.p, 2);
	vl_buf_free(&b);
	vl_buf_free(&m);
}

Test(message_dkim, precomputed_body_hash_same_signature, .init = keys_init, .fini = keys_fini)
{
	const char *m = MSG;
	const struct msg_dkim_key *k[2] = {ed, rsa};
	struct msg_dkim_opts o = {.t = 1700000000};
	/* the message in three pieces, the header split too */
	struct iovec iov[3] = {{(void *)m, 20}, {(void *)(m + 20), 60},
			       {(void *)(m + 80), strlen(m) - 80}};
	unsigned char bh[MSG_DKIM_BH_LEN];
	struct vl_buf a, b;
	char err[200];
	vl_buf_init(&a);
	vl_buf_init(&b);

	cr_assert_eq(msg_dkim_msg_body_hash(MSG_DKIM_RELAXED, iov, 3, bh), 0);
	cr_assert_eq(msg_dkim_sign(k, 2, &o, iov, 3, NULL, &a, err, sizeof err), 0, "%s", err);
	cr_assert_eq(msg_dkim_sign(k, 2, &o, iov, 3, bh, &b, err, sizeof err), 0, "%s", err);
	/* Ed25519 and RSA PKCS#1 v1.5 are deterministic: the same bytes */
	cr_expect_eq(a.len, b.len);
	cr_expect(!memcmp(a.p, b.p, a.len));
	vl_buf_free(&a);
	vl_buf_free(&b);
}

Test(message_dkim, unsignable_messages, .init = keys_init, .fini = keys_fini)
{
	static const char *const bad[] = {
		"From: a@b.c\r\nno colon here\r\n\r\nbody\r\n",
		"From: a@b.c\r\nSubject: bare\rCR\r\n\r\nbody\r\n",
		"From: a@b.c\nSubject: bare LF\r\n\r\nbody\r\n",
		" continued: first\r\nFrom: a@b.c\r\n\r\nbody\r\n",
		"Subject: no from\r\n\r\nbody\r\n",
		": no name\r\nFrom: a@b.c\r\n\r\n",
		"From: a@b.c",
		"",
		"\r\nbody only\r\n",
	};
	struct vl_buf b;
	char err[200];
	vl_buf_init(&b);
	vl_buf_appends(&b, "kept");
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		const struct msg_dkim_key *k[1] = {rsa};
		struct iovec iov = {(void *)bad[i], strlen(bad[i])};
		err[0] = 0;
		cr_expect_eq(msg_dkim_sign(k, 1, NULL, &iov, 1, NULL, &b, err, sizeof err), -1,
			     "%zu", i);
		cr_expect(err[0], "%zu has a reason", i);
		cr_expect_eq(b.len, 4, "out untouched");
	}
	struct iovec iov = {(void *)MSG, strlen(MSG)};
	cr_expect_eq(msg_dkim_sign(NULL, 0, NULL, &iov, 1, NULL, &b, err, sizeof err), -1);
	/* header only, no body: signs (an empty body) */
	const struct msg_dkim_key *k[1] = {ed};
	iov = (struct iovec){(void *)"From: a@b.c\r\n", 13};
	cr_expect_eq(msg_dkim_sign(k, 1, NULL, &iov, 1, NULL, &b, err, sizeof err), 0, "%s", err);
	vl_buf_free(&b);
}
