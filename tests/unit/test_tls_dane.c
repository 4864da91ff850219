/* tls/: DANE (RFC 7672) over memory BIOs. A test CA issues the server's
 * certificate; TLSA records are computed here from the certificates, the
 * way a zone's owner would publish them. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../tls/tls.h"
#include "tls_pump.h"

#define HOST "mx.dane.test"

static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca, *leaf;
static char chain_pem[64];
static SSL_CTX *sctx;          /* the server's, one for every test's handshakes */

static void ext(X509 *crt, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, crt, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	cr_assert_not_null(e);
	X509_add_ext(crt, e, -1);
	X509_EXTENSION_free(e);
}

static X509 *cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, bool is_ca)
{
	X509 *c = X509_new();
	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), is_ca ? 1 : 2);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), 86400);
	X509_set_pubkey(c, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c, X509_get_subject_name(issuer ? issuer : c));
	if (is_ca) {
		ext(c, c, NID_basic_constraints, "critical,CA:TRUE");
		ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		char san[128];
		snprintf(san, sizeof san, "DNS:%s", cn);
		ext(c, issuer, NID_subject_alt_name, san);
		ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE");
	}
	cr_assert(X509_sign(c, ikey, EVP_sha256()));
	return c;
}

/* A CA and, issued by it, the server's certificate for HOST; the server
 * sends both (leaf and CA) as its chain. */
static void setup(void)
{
	ca_key = EVP_EC_gen("P-256");
	leaf_key = EVP_EC_gen("P-256");
	ca = cert("Volley Test CA", ca_key, NULL, ca_key, true);
	leaf = cert(HOST, leaf_key, ca, ca_key, false);
	strcpy(chain_pem, "/tmp/volley-dane-XXXXXX");
	int fd = mkstemp(chain_pem);
	FILE *f = fdopen(fd, "w");
	PEM_write_X509(f, leaf);
	PEM_write_X509(f, ca);
	PEM_write_PrivateKey(f, leaf_key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	char err[256];
	sctx = tls_server_ctx_new(chain_pem, NULL, NULL, err, sizeof err);
	cr_assert_not_null(sctx, "%s", err);
}

static void teardown(void)
{
	unlink(chain_pem);
	tls_ctx_free(sctx);
	X509_free(leaf);
	X509_free(ca);
	EVP_PKEY_free(leaf_key);
	EVP_PKEY_free(ca_key);
}

TestSuite(tls_dane, .init = setup, .fini = teardown);

/* The association data of (selector, mtype) for c, into buf. */
static size_t tlsa_data(X509 *c, int selector, int mtype, unsigned char *buf)
{
	unsigned char *der = NULL;
	int n = selector ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &der) : i2d_X509(c, &der);
	unsigned len = 0;

	cr_assert_gt(n, 0);
	if (mtype == 0) {
		memcpy(buf, der, (size_t)n);
		len = (unsigned)n;
	} else {
		EVP_Digest(der, (size_t)n, buf, &len, mtype == 1 ? EVP_sha256() : EVP_sha512(),
			   NULL);
	}
	OPENSSL_free(der);
	return len;
}

struct run {
	bool established, dane;
	size_t usable;
	struct tls_tlsa match;
	bool matched, resumed;
	char why[128];
	SSL_SESSION *ticket;
};

/* One handshake of a DANE client against the test server. */
static struct run handshake(const char *name, const struct tls_tlsa *rr, size_t n)
{
	char err[256];
	struct run r = { 0 };
	SSL_CTX *cctx = tls_client_ctx_new(NULL, err, sizeof err);
	cr_assert_not_null(cctx, "%s", err);
	struct tls_conn *s = tls_conn_new_server(sctx);
	struct tls_conn *c = tls_conn_new_dane(cctx, name, NULL, rr, n, &r.usable);
	cr_assert_not_null(c);
	cr_assert_eq(unit_tls_pump(c, s, NULL, NULL), 0, "the handshake itself never fails on DANE");
	r.established = tls_conn_established(c);
	r.dane = tls_conn_dane(c);
	r.matched = tls_conn_dane_match(c, &r.match);
	r.resumed = tls_conn_resumed(c);
	snprintf(r.why, sizeof r.why, "%s", tls_conn_verify_error(c));
	r.ticket = tls_conn_take_session(c);
	tls_conn_shutdown(c);
	unit_tls_pump(c, s, NULL, NULL);
	tls_conn_free(c);
	tls_conn_free(s);
	tls_ctx_free(cctx);
	return r;
}

static struct tls_tlsa rec(uint8_t usage, uint8_t selector, uint8_t mtype, X509 *c,
			   unsigned char *buf)
{
	size_t len = tlsa_data(c, selector, mtype, buf);
	return (struct tls_tlsa){ usage, selector, mtype, buf, len };
}

Test(tls_dane, every_ee_selector_and_matching_type_authenticates)
{
	unsigned char buf[4096];

	for (uint8_t sel = 0; sel <= 1; sel++)
		for (uint8_t mt = 0; mt <= 2; mt++) {
			struct tls_tlsa r = rec(3, sel, mt, leaf, buf);
			struct run x = handshake(HOST, &r, 1);
			cr_assert_eq(x.usable, 1);
			cr_assert(x.established);
			cr_assert(x.dane, "3 %u %u: %s", sel, mt, x.why);
			cr_assert(x.matched);
			cr_assert_eq(x.match.usage, 3);
			cr_assert_eq(x.match.selector, sel);
			cr_assert_eq(x.match.mtype, mt);
			SSL_SESSION_free(x.ticket);
		}
}

Test(tls_dane, ee_needs_no_name)
{
	unsigned char buf[128];
	struct tls_tlsa r = rec(3, 1, 1, leaf, buf);
	struct run x = handshake("other-name.dane.test", &r, 1);
	cr_assert(x.dane, "DANE-EE(3) ignores names (RFC 7672 3.1.1): %s", x.why);
	SSL_SESSION_free(x.ticket);
}

Test(tls_dane, ta_on_the_issuing_ca_with_the_right_name)
{
	unsigned char buf[128];
	struct tls_tlsa r = rec(2, 1, 1, ca, buf);
	struct run x = handshake(HOST, &r, 1);
	cr_assert(x.dane, "%s", x.why);
	cr_assert_eq(x.match.usage, 2);
	SSL_SESSION_free(x.ticket);

	x = handshake("other-name.dane.test", &r, 1);
	cr_assert(x.established);
	cr_assert_not(x.dane, "DANE-TA(2) checks the name");
	cr_assert_not(x.matched);
	SSL_SESSION_free(x.ticket);
}

Test(tls_dane, a_mismatch_is_not_authenticated_and_says_why)
{
	unsigned char buf[128];
	struct tls_tlsa r = rec(3, 1, 1, leaf, buf);
	buf[0] ^= 0xff;
	struct run x = handshake(HOST, &r, 1);
	cr_assert_eq(x.usable, 1);
	cr_assert(x.established, "the handshake completes: the caller must refuse");
	cr_assert_not(x.dane);
	cr_assert(strstr(x.why, "DANE") || strstr(x.why, "TLSA"), "%s", x.why);
	SSL_SESSION_free(x.ticket);

	/* the CA's key published as if it were the server's own */
	r = rec(3, 1, 1, ca, buf);
	x = handshake(HOST, &r, 1);
	cr_assert_not(x.dane);
	SSL_SESSION_free(x.ticket);
}

Test(tls_dane, one_good_record_among_bad_ones_is_enough)
{
	unsigned char b1[128], b2[128], b3[128];
	struct tls_tlsa rr[3] = { rec(3, 1, 1, ca, b1), rec(2, 0, 2, leaf, b2),
				  rec(3, 0, 1, leaf, b3) };
	struct run x = handshake(HOST, rr, 3);
	cr_assert_eq(x.usable, 3);
	cr_assert(x.dane, "%s", x.why);
	cr_assert_eq(x.match.selector, 0);
	SSL_SESSION_free(x.ticket);
}

Test(tls_dane, unusable_records_are_not_taken)
{
	unsigned char b1[128], b2[128], b3[128], b4[128];
	struct tls_tlsa rr[4] = {
		rec(1, 1, 1, leaf, b1),              /* PKIX-EE: not for SMTP */
		rec(0, 1, 1, ca, b2),                /* PKIX-TA: not for SMTP */
		rec(3, 1, 1, leaf, b3), rec(3, 1, 3, leaf, b4),
	};
	rr[2].len = 31;                              /* a SHA2-256 a byte short */
	cr_assert_not(tls_tlsa_usable(&rr[0]));
	cr_assert_not(tls_tlsa_usable(&rr[1]));
	cr_assert_not(tls_tlsa_usable(&rr[2]));
	cr_assert_not(tls_tlsa_usable(&rr[3]), "matching type 3 is unknown");
	struct run x = handshake(HOST, rr, 4);
	cr_assert_eq(x.usable, 0, "an unusable RRset: TLS without authentication");
	cr_assert(x.established);
	cr_assert_not(x.dane);
	SSL_SESSION_free(x.ticket);
}
