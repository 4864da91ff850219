/* message/verbatim.c: a message submitted whole is rendered as exactly its
 * octets for every recipient (8-bit, "{{", dots kept; nothing added), its
 * needs come from where the 8-bit octets are, its header is checked, the
 * From domain is found for the DKIM key; and a DKIM signature over it
 * verifies -- checked here by a verifier of simple/simple written in this
 * file on OpenSSL alone (dkimpy and opendkim check both canonicalisations
 * end to end: tests/e2e/test_dkim.py, test_submit_raw.py). */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../../message/message.h"

#define HEAD "From: \"Ann\" <Ann@Example.COM>\r\nTo: bob@example.net\r\n" \
	"Date: Mon, 23 Nov 2026 17:14:12 +0000\r\nMessage-ID: <1@example.com>\r\n" \
	"Subject: hi\r\n"

/* 8-bit octets that are not UTF-8, a template-looking body, dotted lines,
 * trailing white space and blank lines at the end. */
static const char body8[] = "Caf\xe9 {{ name }} \xff\xfe\r\n.\r\n..two dots\r\n"
			    "trailing  \t\r\n\r\n\r\n";

static struct vl_buf msg(const char *head, const char *body, size_t blen)
{
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_appends(&b, head);
	vl_buf_appends(&b, "\r\n");
	vl_buf_append(&b, body, blen);
	return b;
}

static void render(const struct msg_job *j, const char *email, struct msg_out *o)
{
	struct msg_rcpt r = {.email = email, .index = 7};
	struct msg_err e;
	cr_assert_eq(msg_render(j, &r, 1700000000, o, &e), 0, "%s", e.message);
}

static void flat(const struct msg_out *o, struct vl_buf *out)
{
	vl_buf_reset(out);
	for (size_t i = 0; i < o->niov; i++)
		vl_buf_append(out, o->iov[i].iov_base, o->iov[i].iov_len);
}

Test(message_verbatim, renders_the_octets_exactly)
{
	struct vl_buf m = msg(HEAD, body8, sizeof body8 - 1), got;
	struct msg_job_opts o = {.max_size = 1 << 20};
	struct msg_err e;
	struct msg_out out;
	struct msg_job *j = msg_job_compile_verbatim(m.p, m.len, &o, &e);

	cr_assert(j, "%s", e.message);
	msg_out_init(&out);
	vl_buf_init(&got);
	for (int k = 0; k < 2; k++) {   /* every recipient the same octets */
		render(j, k ? "zoe@example.org" : "ann@example.net", &out);
		flat(&out, &got);
		cr_assert_eq(out.size, m.len);
		cr_assert_eq(got.len, m.len);
		cr_assert(!memcmp(got.p, m.p, m.len), "octets changed");
		cr_expect(out.eightbit, "8-bit body: 8BITMIME");
		cr_expect_not(out.smtputf8, "ASCII header: no SMTPUTF8");
	}
	cr_expect(msg_job_body_static(j), "one DKIM body hash serves all");
	cr_expect_eq(msg_job_nvars(j), 0, "no template: {{ name }} is text");
	cr_expect(msg_job_needs_8bitmime(j));
	cr_expect_not(msg_job_needs_smtputf8(j));
	/* a UTF-8 recipient needs SMTPUTF8 on its own */
	render(j, "j\xc3\xb6rg@example.net", &out);
	cr_expect(out.smtputf8);
	msg_out_free(&out);
	msg_job_free(j);
	vl_buf_free(&got);
	vl_buf_free(&m);
}

Test(message_verbatim, needs_follow_the_octets)
{
	struct msg_err e;
	struct vl_buf a = msg(HEAD, "plain\r\n", 7);
	struct vl_buf b = msg(HEAD "X-Name: J\xc3\xb6rg\r\n", "plain\r\n", 7);
	struct msg_job *ja = msg_job_compile_verbatim(a.p, a.len, NULL, &e);
	struct msg_job *jb = msg_job_compile_verbatim(b.p, b.len, NULL, &e);

	cr_assert(ja && jb);
	cr_expect_not(msg_job_needs_8bitmime(ja));
	cr_expect_not(msg_job_needs_smtputf8(ja));
	cr_expect(msg_job_needs_smtputf8(jb), "8-bit header: SMTPUTF8");
	cr_expect_not(msg_job_needs_8bitmime(jb), "7-bit body");
	struct msg_out o;
	msg_out_init(&o);
	render(jb, "ann@example.net", &o);
	cr_expect(o.smtputf8 && o.eightbit, "SMTPUTF8 implies an 8-bit transport");
	msg_out_free(&o);
	msg_job_free(ja);
	msg_job_free(jb);
	vl_buf_free(&a);
	vl_buf_free(&b);
}

Test(message_verbatim, header_only_and_folded_fields)
{
	const char *m = "From: a@b.example\r\nSubject: folded\r\n\tover two lines\r\n";
	struct msg_err e;
	struct msg_job *j = msg_job_compile_verbatim(m, strlen(m), NULL, &e);
	char dom[64];

	cr_assert(j, "%s", e.message);
	msg_job_free(j);
	cr_expect_eq(msg_verbatim_from_domain(m, strlen(m), dom, sizeof dom), 0);
	cr_expect_str_eq(dom, "b.example");
}

Test(message_verbatim, refused)
{
	static const struct {
		const char *m, *why;
	} bad[] = {
		{"", "empty"},
		{"\r\nbody only\r\n", "does not end with CRLF"},
		{"From: a@b.c", "does not end with CRLF"},
		{"From: a@b.c\nSubject: x\r\n\r\nbody\r\n", "bare CR, a bare LF"},
		{"From: a@b.c\r\nSubject: a\rb\r\n\r\n", "bare CR, a bare LF"},
		{" From: a@b.c\r\n\r\n", "starts with white space"},
		{"From: a@b.c\r\nno colon\r\n\r\n", "line 2 is not a field"},
		{"From: a@b.c\r\n: no name\r\n\r\n", "line 2 is not a field"},
		{"Subject: x\r\n\r\nbody\r\n", "no From field"},
		{"From: a@b.c\r\nfrom : c@d.e\r\n\r\n", "more than one From"},
	};
	struct msg_err e;

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		cr_expect_null(msg_job_compile_verbatim(bad[i].m, strlen(bad[i].m), NULL, &e),
			       "%zu", i);
		cr_expect(strstr(e.message, bad[i].why), "%zu: %s", i, e.message);
		cr_expect_str_eq(e.field, "message");
	}
	/* NUL in the header: refused; in the body: kept */
	const char nul_head[] = "From: a@b.c\r\nX: a\0b\r\n\r\nbody\r\n";
	cr_expect_null(msg_job_compile_verbatim(nul_head, sizeof nul_head - 1, NULL, &e));
	const char nul_body[] = "From: a@b.c\r\n\r\nbo\0dy\r\n";
	struct msg_job *j = msg_job_compile_verbatim(nul_body, sizeof nul_body - 1, NULL, &e);
	cr_expect(j);
	msg_job_free(j);
	/* a header line over 998 octets */
	struct vl_buf m;
	vl_buf_init(&m);
	vl_buf_appends(&m, "From: a@b.c\r\nX-Long: ");
	for (int k = 0; k < 991; k++)   /* 999 octets */
		vl_buf_append(&m, "x", 1);
	vl_buf_appends(&m, "\r\n\r\n");
	cr_expect_null(msg_job_compile_verbatim(m.p, m.len, NULL, &e));
	cr_expect(strstr(e.message, "longer than 998"), "%s", e.message);
	/* over max_size */
	struct msg_job_opts o = {.max_size = m.len - 1};
	m.len = 0;
	vl_buf_appends(&m, "From: a@b.c\r\n\r\n0123456789\r\n");
	o.max_size = m.len - 1;
	cr_expect_null(msg_job_compile_verbatim(m.p, m.len, &o, &e));
	cr_expect_str_eq(e.code, "too_large");
	o.max_size = m.len;
	j = msg_job_compile_verbatim(m.p, m.len, &o, &e);
	cr_expect(j);
	msg_job_free(j);
	vl_buf_free(&m);
}

Test(message_verbatim, from_domain)
{
	static const struct {
		const char *head, *want;
	} cases[] = {
		{"From: Ann <ann@Example.COM>\r\n", "example.com"},
		{"FROM :ann@sub.example.org (Ann Smith)\r\n", "sub.example.org"},
		{"From: \"a@evil.example\" <ann@good.example>\r\n", "good.example"},
		{"Subject: x\r\nFrom:\r\n Ann\r\n <ann@folded.example>\r\n", "folded.example"},
		{"From: j\xc3\xb6rg@b\xc3\xbc" "cher.example\r\n", "b\xc3\xbc" "cher.example"},
		{"From: ann@trailing.example.\r\n", "trailing.example"},
		{"From-Not: a@x.example\r\nFrom: b@y.example\r\n", "y.example"},
	};
	char out[128];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct vl_buf m = msg(cases[i].head, "b\r\n", 3);
		cr_expect_eq(msg_verbatim_from_domain(m.p, m.len, out, sizeof out), 0, "%zu", i);
		cr_expect_str_eq(out, cases[i].want, "%zu", i);
		vl_buf_free(&m);
	}
	const char *none[] = {"Subject: x\r\n\r\nFrom: a@b.example\r\n", "From: nobody\r\n\r\n"};
	for (size_t i = 0; i < 2; i++)
		cr_expect_eq(msg_verbatim_from_domain(none[i], strlen(none[i]), out, sizeof out),
			     -1, "%zu", i);
	const char *m = "From: a@long-domain.example\r\n\r\n";
	cr_expect_eq(msg_verbatim_from_domain(m, strlen(m), out, 8), -1, "does not fit");
}

/* ---- DKIM over a verbatim message, verified independently ---- */

static EVP_PKEY *pk[2];
static struct msg_dkim_key *keys[2];

static void keys_init(void)
{
	const char *alg[2] = {"ED25519", "RSA"};
	char err[200];

	for (int i = 0; i < 2; i++) {
		char path[] = "/tmp/volley-vdkim-XXXXXX";
		pk[i] = i ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
			  : EVP_PKEY_Q_keygen(NULL, NULL, alg[i]);
		cr_assert(pk[i]);
		int fd = mkstemp(path);
		FILE *f = fdopen(fd, "w");
		cr_assert(PEM_write_PrivateKey(f, pk[i], NULL, NULL, 0, NULL, NULL));
		fclose(f);
		keys[i] = msg_dkim_key_load(path, "example.com", i ? "r" : "e", err, sizeof err);
		unlink(path);
		cr_assert(keys[i], "%s", err);
	}
}

static void keys_fini(void)
{
	for (int i = 0; i < 2; i++) {
		msg_dkim_key_free(keys[i]);
		EVP_PKEY_free(pk[i]);
	}
}

/* The value of tag t in a DKIM-Signature field, white space removed. */
static void tag(const char *sig, size_t n, const char *t, char *out, size_t outlen)
{
	size_t tl = strlen(t), o = 0;
	const char *p = sig;

	for (;;) {
		p = memmem(p, n - (size_t)(p - sig), t, tl);
		cr_assert(p, "no %s", t);
		char prev = p[-1];
		if ((prev == ' ' || prev == ';' || prev == '\t' || prev == '\n') && p[tl] == '=')
			break;
		p += tl;
	}
	for (p += tl + 1; p < sig + n && *p != ';'; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && o + 1 < outlen)
			out[o++] = *p;
	out[o] = 0;
}

static size_t unb64(const char *s, unsigned char *out)
{
	int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)strlen(s));
	size_t pad = strlen(s) >= 2 ? (s[strlen(s) - 1] == '=') + (s[strlen(s) - 2] == '=') : 0;
	cr_assert_geq(n, 0);
	return (size_t)n - pad;
}

/* RFC 6376 verification, simple/simple, of the signature field sig (its
 * CRLF excluded) in front of message m: body hash, then the header hash
 * over the h= fields taken bottom-up and the field with b= emptied. */
static bool verify_simple(const char *sig, size_t siglen, const char *m, size_t mlen,
			  EVP_PKEY *key)
{
	char h[512], bh[128], b[1024];
	unsigned char want[64], got[32], bsig[600], d[32];
	const char *blank = memmem(m, mlen, "\r\n\r\n", 4), *body = blank + 4;
	size_t blen = mlen - (size_t)(body - m), hlen = (size_t)(blank - m) + 2;

	tag(sig, siglen, "h", h, sizeof h);
	tag(sig, siglen, "bh", bh, sizeof bh);
	tag(sig, siglen, "b", b, sizeof b);
	cr_assert(strstr(sig, "c=simple/simple;"));
	while (blen >= 4 && !memcmp(body + blen - 4, "\r\n\r\n", 4))
		blen -= 2;       /* simple: trailing empty lines go */
	if (unb64(bh, want) != 32)
		return false;
	EVP_Digest(body, blen, got, NULL, EVP_sha256(), NULL);
	if (memcmp(got, want, 32))
		return false;
	/* header fields bottom-up, each instance used once */
	struct vl_buf in;
	bool used[64] = {0};
	const char *f[64];
	size_t fl[64], nf = 0;
	vl_buf_init(&in);
	for (const char *p = m; p < m + hlen;) {
		const char *e = p;
		do
			e = memmem(e, (size_t)(m + hlen - e), "\r\n", 2) + 2;
		while (e < m + hlen && (*e == ' ' || *e == '\t'));
		f[nf] = p;
		fl[nf++] = (size_t)(e - p);
		p = e;
	}
	for (char *name = strtok(h, ":"); name; name = strtok(NULL, ":"))
		for (size_t i = nf; i-- > 0;)
			if (!used[i] && !strncasecmp(f[i], name, strlen(name)) &&
			    f[i][strlen(name)] == ':') {
				used[i] = true;
				vl_buf_append(&in, f[i], fl[i]);
				break;
			}
	const char *bv = strstr(sig, " b=");
	cr_assert(bv);
	vl_buf_append(&in, sig, (size_t)(bv + 3 - sig));
	EVP_Digest(in.p, in.len, d, NULL, EVP_sha256(), NULL);
	vl_buf_free(&in);
	size_t slen = unb64(b, bsig);
	int ok;
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		ok = EVP_DigestVerifyInit(c, NULL, NULL, NULL, key) == 1 &&
		     EVP_DigestVerify(c, bsig, slen, d, 32) == 1;
		EVP_MD_CTX_free(c);
	} else {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
		ok = EVP_PKEY_verify_init(c) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
		     EVP_PKEY_verify(c, bsig, slen, d, 32) == 1;
		EVP_PKEY_CTX_free(c);
	}
	return ok;
}

/* Sign the rendered verbatim message with both keys; the two fields. */
static void sign_rendered(const struct msg_job *j, struct vl_buf *sig, struct vl_buf *flatm)
{
	const struct msg_dkim_key *k[2] = {keys[0], keys[1]};
	struct msg_dkim_opts o = {.hcanon = MSG_DKIM_SIMPLE, .bcanon = MSG_DKIM_SIMPLE};
	struct msg_out out;
	char err[200];

	msg_out_init(&out);
	render(j, "ann@example.net", &out);
	cr_assert_eq(msg_dkim_sign(k, 2, &o, out.iov, out.niov, NULL, sig, err, sizeof err), 0,
		     "%s", err);
	vl_buf_append(sig, "", 1);   /* a C string for strstr */
	sig->len--;
	flat(&out, flatm);
	msg_out_free(&out);
}

Test(message_verbatim, dkim_signature_verifies, .init = keys_init, .fini = keys_fini)
{
	struct vl_buf m = msg(HEAD "X-8bit: J\xf6rg\r\n", body8, sizeof body8 - 1), sig, fm;
	struct msg_err e;
	struct msg_job *j = msg_job_compile_verbatim(m.p, m.len, NULL, &e);

	cr_assert(j, "%s", e.message);
	vl_buf_init(&sig);
	vl_buf_init(&fm);
	sign_rendered(j, &sig, &fm);
	cr_assert_eq(fm.len, m.len);
	cr_assert(!memcmp(fm.p, m.p, m.len), "signing changed nothing of the message");
	/* the two fields: Ed25519 first, then RSA */
	const char *second = strstr(sig.p + 1, "\r\nDKIM-Signature:");
	cr_assert(second);
	size_t l0 = (size_t)(second - sig.p), l1 = sig.len - l0 - 4;
	cr_assert(strstr(sig.p, "d=example.com;"));
	cr_expect(verify_simple(sig.p, l0, m.p, m.len, pk[0]), "ed25519 signature");
	cr_expect(verify_simple(second + 2, l1, m.p, m.len, pk[1]), "rsa signature");
	/* a changed octet in the 8-bit body or in the header fails */
	m.p[m.len - 12] ^= 1;
	cr_expect_not(verify_simple(sig.p, l0, m.p, m.len, pk[0]));
	m.p[m.len - 12] ^= 1;
	char *x = memmem(m.p, m.len, "Subject: hi", 11);
	x[10] = 'o';
	cr_expect_not(verify_simple(second + 2, l1, m.p, m.len, pk[1]));
	x[10] = 'i';
	cr_expect(verify_simple(second + 2, l1, m.p, m.len, pk[1]), "and back again");
	msg_job_free(j);
	vl_buf_free(&sig);
	vl_buf_free(&fm);
	vl_buf_free(&m);
}
