/* OpenSSL over memory BIOs; see tls.h. */
#include "tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* Bytes between OpenSSL and the caller. OpenSSL's memory BIO keeps the
 * largest buffer it ever held (and clears what it grows): for ten thousand
 * sessions, tens of megabytes at rest. These hold memory only while bytes
 * wait: a drained one is freed. */
struct tls_bytes {
	struct vl_buf b;
	size_t off;                /* read so far */
};

struct tls_conn {
	SSL *ssl;
	BIO *rbio; /* network -> SSL: reads in */
	BIO *wbio; /* SSL -> network: writes out */
	struct tls_bytes in, out;
	bool established;
	bool closed;
	bool verify;
	bool dane;                 /* DANE records were given to OpenSSL */
	SSL_SESSION *new_session;
};

static const char *const policy_names[] = {
	[TLS_POLICY_NONE] = "none", [TLS_POLICY_MAY] = "may",
	[TLS_POLICY_ENCRYPT] = "encrypt", [TLS_POLICY_DANE] = "dane",
	[TLS_POLICY_DANE_ONLY] = "dane-only", [TLS_POLICY_VERIFY] = "verify",
	[TLS_POLICY_MTA_STS] = "mta-sts",
};

int tls_policy_parse(const char *name, enum tls_policy *p)
{
	for (size_t i = 0; i < VL_ARRAY_LEN(policy_names); i++) {
		if (strcmp(name, policy_names[i]) == 0) {
			*p = (enum tls_policy)i;
			return 0;
		}
	}
	return -1;
}

const char *tls_policy_name(enum tls_policy p)
{
	return (size_t)p < VL_ARRAY_LEN(policy_names) ? policy_names[p] : "?";
}

bool tls_policy_requires_tls(enum tls_policy p)
{
	return p != TLS_POLICY_NONE && p != TLS_POLICY_MAY;
}

const char *tls_last_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (!e)
		snprintf(buf, len, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static int add_ext(X509 *crt, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, crt, crt, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -1;
	int ok = X509_add_ext(crt, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* A self-signed certificate valid for a year, CN and SAN = cn. P-256 because
 * generating it takes microseconds, so every sink start can have a new one. */
static int make_self_signed(SSL_CTX *ctx, const char *cn)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *crt = X509_new();
	char san[300];
	int rc = -1;

	if (!key || !crt)
		goto out;
	X509_set_version(crt, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(crt), (long)(vl_wall_time()));
	X509_gmtime_adj(X509_getm_notBefore(crt), -3600);
	X509_gmtime_adj(X509_getm_notAfter(crt), 365L * 86400);
	X509_set_pubkey(crt, key);
	X509_NAME *name = X509_get_subject_name(crt);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(crt, name);
	snprintf(san, sizeof san, "DNS:%s", cn);
	if (add_ext(crt, NID_subject_alt_name, san) < 0 ||
	    add_ext(crt, NID_basic_constraints, "critical,CA:FALSE") < 0)
		goto out;
	if (!X509_sign(crt, key, EVP_sha256()))
		goto out;
	if (SSL_CTX_use_certificate(ctx, crt) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1)
		goto out;
	rc = 0;
out:
	X509_free(crt);
	EVP_PKEY_free(key);
	return rc;
}

SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, const char *cn,
			    char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];

	if (!ctx) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_last_error(why, sizeof why));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Resumption: clients that pool connections to one host reconnect a lot. */
	static const unsigned char sid_ctx[] = "volley";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

	int ok;
	if (cert) {
		ok = SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 &&
		     SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert,
						 SSL_FILETYPE_PEM) == 1 &&
		     SSL_CTX_check_private_key(ctx) == 1;
	} else {
		ok = make_self_signed(ctx, cn) == 0;
	}
	if (!ok) {
		snprintf(err, errlen, "%s: %s", cert ? cert : "self-signed certificate",
			 tls_last_error(why, sizeof why));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

static int conn_index = -1; /* ex_data slot: SSL -> tls_conn */

/* New session tickets (TLS 1.3 sends them after the handshake): keep the
 * newest for the caller to cache per destination host. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *t = SSL_get_ex_data(ssl, conn_index);

	if (!t)
		return 0;
	SSL_SESSION_free(t->new_session);
	t->new_session = sess;
	return 1; /* we keep the reference */
}

SSL_CTX *tls_client_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char why[256];

	if (!ctx) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_last_error(why, sizeof why));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
			 : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		snprintf(err, errlen, "CA file %s: %s", ca_file ? ca_file : "(system)",
			 tls_last_error(why, sizeof why));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_dane_enable(ctx) <= 0) {
		snprintf(err, errlen, "SSL_CTX_dane_enable: %s", tls_last_error(why, sizeof why));
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
					    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	if (conn_index < 0)
		conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return ctx;
}

/* ---- the BIOs over struct tls_bytes ---- */

static void bytes_drained(struct tls_bytes *x)
{
	vl_buf_free(&x->b);
	x->off = 0;
}

static int bytes_read(BIO *bio, char *buf, size_t len, size_t *got)
{
	struct tls_bytes *x = BIO_get_data(bio);
	size_t n = x->b.len - x->off;

	BIO_clear_retry_flags(bio);
	if (n == 0) {              /* no data yet, which is not EOF */
		BIO_set_retry_read(bio);
		*got = 0;
		return 0;
	}
	if (n > len)
		n = len;
	memcpy(buf, x->b.p + x->off, n);
	x->off += n;
	if (x->off == x->b.len)
		bytes_drained(x);
	*got = n;
	return 1;
}

static int bytes_write(BIO *bio, const char *data, size_t len, size_t *put)
{
	struct tls_bytes *x = BIO_get_data(bio);

	BIO_clear_retry_flags(bio);
	vl_buf_append(&x->b, data, len);
	*put = len;
	return 1;
}

static long bytes_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct tls_bytes *x = BIO_get_data(bio);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)(x->b.len - x->off);
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_RESET:
		bytes_drained(x);
		return 1;
	default:                   /* WPENDING, EOF, kTLS, ...: no */
		return 0;
	}
}

static int bytes_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static BIO_METHOD *bytes_method;
static void bytes_method_make(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "volley bytes");

	if (m && BIO_meth_set_read_ex(m, bytes_read) && BIO_meth_set_write_ex(m, bytes_write) &&
	    BIO_meth_set_ctrl(m, bytes_ctrl) && BIO_meth_set_create(m, bytes_create))
		bytes_method = m;
}

/* A BIO over x, which the tls_conn owns (the BIO does not free it). */
static BIO *bytes_bio(struct tls_bytes *x)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	BIO *b;

	pthread_once(&once, bytes_method_make);
	if (!bytes_method || !(b = BIO_new(bytes_method)))
		return NULL;
	BIO_set_data(b, x);
	return b;
}

static struct tls_conn *conn_new(SSL_CTX *ctx)
{
	struct tls_conn *t = vl_calloc(1, sizeof *t);

	t->ssl = SSL_new(ctx);
	t->rbio = bytes_bio(&t->in);
	t->wbio = bytes_bio(&t->out);
	if (!t->ssl || !t->rbio || !t->wbio) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		free(t);
		return NULL;
	}
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	return t;
}

struct tls_conn *tls_conn_new_server(SSL_CTX *ctx)
{
	struct tls_conn *t = conn_new(ctx);

	if (t)
		SSL_set_accept_state(t->ssl);
	return t;
}

/* SNI only for names, never for address literals (RFC 6066 3). */
static void set_sni(SSL *ssl, const char *name)
{
	if (name && *name && !vl_ip_literal(name))
		SSL_set_tlsext_host_name(ssl, name);
}

static struct tls_conn *client_start(struct tls_conn *t, SSL_SESSION *resume)
{
	if (resume)
		SSL_set_session(t->ssl, resume);
	SSL_set_connect_state(t->ssl);
	SSL_do_handshake(t->ssl); /* queues the ClientHello */
	ERR_clear_error();
	return t;
}

X509_STORE *tls_store_new(const char *ca_file, char *err, size_t errlen)
{
	X509_STORE *st = X509_STORE_new();
	char why[256];

	if (!st || (ca_file ? X509_STORE_load_file(st, ca_file) :
		    X509_STORE_set_default_paths(st)) != 1) {
		snprintf(err, errlen, "CA file %s: %s", ca_file ? ca_file : "(system)",
			 tls_last_error(why, sizeof why));
		X509_STORE_free(st);
		return NULL;
	}
	return st;
}

void tls_store_free(X509_STORE *st)
{
	X509_STORE_free(st);
}

/* An empty CA store, for connections that verify nothing. The handshake
 * checks the peer's chain whatever SSL_VERIFY_NONE says; against the
 * system's default paths OpenSSL 3.0 lists /etc/ssl/certs for each
 * certificate it looks up (its "store" lookup), a tenth of the CPU of
 * ten thousand first handshakes. Against nothing it stops at once. */
static X509_STORE *empty_store;
static void empty_store_make(void)
{
	empty_store = X509_STORE_new();
}

struct tls_conn *tls_conn_new_client(SSL_CTX *ctx, const char *name, bool verify,
				     X509_STORE *store, SSL_SESSION *resume)
{
	struct tls_conn *t = conn_new(ctx);

	if (!t)
		return NULL;
	SSL_set_ex_data(t->ssl, conn_index, t);
	set_sni(t->ssl, name);
	t->verify = verify;
	if (verify) {
		SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (!name || SSL_set1_host(t->ssl, name) != 1 ||
		    (store && SSL_set1_verify_cert_store(t->ssl, store) != 1)) {
			tls_conn_free(t);
			return NULL;
		}
	} else {
		static pthread_once_t once = PTHREAD_ONCE_INIT;
		pthread_once(&once, empty_store_make);
		if (empty_store)
			SSL_set1_verify_cert_store(t->ssl, empty_store);
	}
	SSL_set_verify(t->ssl, SSL_VERIFY_NONE, NULL);
	return client_start(t, resume);
}

bool tls_tlsa_usable(const struct tls_tlsa *r)
{
	static const size_t digest_len[] = { 0, 32, 64 };

	if (r->usage != 2 && r->usage != 3)
		return false;
	if (r->selector > 1 || r->mtype > 2 || !r->data || !r->len)
		return false;
	return r->mtype == 0 || r->len == digest_len[r->mtype];
}

struct tls_conn *tls_conn_new_dane(SSL_CTX *ctx, const char *name, const char *alt,
				   const struct tls_tlsa *rr, size_t n, size_t *usable)
{
	struct tls_conn *t = conn_new(ctx);

	*usable = 0;
	if (!t)
		return NULL;
	SSL_set_ex_data(t->ssl, conn_index, t);
	set_sni(t->ssl, name);
	/* Verification runs and records its result, but never stops the
	 * handshake: the caller reads tls_conn_dane() and sends nothing to a
	 * peer that failed it, with the verifier's reason in its log. */
	SSL_set_verify(t->ssl, SSL_VERIFY_NONE, NULL);
	if (!name || SSL_dane_enable(t->ssl, name) <= 0 ||
	    (alt && *alt && SSL_add1_host(t->ssl, alt) != 1)) {
		tls_conn_free(t);
		return NULL;
	}
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	for (size_t i = 0; i < n; i++) {
		if (!tls_tlsa_usable(&rr[i]))
			continue;
		if (SSL_dane_tlsa_add(t->ssl, rr[i].usage, rr[i].selector, rr[i].mtype,
				      rr[i].data, rr[i].len) > 0)
			(*usable)++;
	}
	t->dane = *usable > 0;
	ERR_clear_error();
	return client_start(t, NULL);
}

bool tls_conn_dane(const struct tls_conn *t)
{
	return t->dane && t->established && SSL_get_verify_result(t->ssl) == X509_V_OK &&
	       SSL_get0_dane_authority(t->ssl, NULL, NULL) >= 0;
}

bool tls_conn_dane_match(const struct tls_conn *t, struct tls_tlsa *match)
{
	uint8_t usage, selector, mtype;
	const unsigned char *data;
	size_t len;

	if (!tls_conn_dane(t) ||
	    SSL_get0_dane_tlsa(t->ssl, &usage, &selector, &mtype, &data, &len) < 0)
		return false;
	*match = (struct tls_tlsa){ usage, selector, mtype, data, len };
	return true;
}

const char *tls_conn_verify_error(const struct tls_conn *t)
{
	return X509_verify_cert_error_string(SSL_get_verify_result(t->ssl));
}

bool tls_conn_verified(const struct tls_conn *t)
{
	return t->verify && t->established &&
	       SSL_get_verify_result(t->ssl) == X509_V_OK;
}

const char *tls_conn_verify_failure(const struct tls_conn *t)
{
	switch (SSL_get_verify_result(t->ssl)) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "certificate-expired";
	case X509_V_ERR_HOSTNAME_MISMATCH:
		return "certificate-host-mismatch";
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return "certificate-not-trusted";
	default:
		return "validation-failure";
	}
}

bool tls_conn_resumed(const struct tls_conn *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

SSL_SESSION *tls_conn_take_session(struct tls_conn *t)
{
	SSL_SESSION *s = t->new_session;
	t->new_session = NULL;
	return s;
}

void tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return;
	SSL_SESSION_free(t->new_session);
	SSL_free(t->ssl); /* frees both BIOs */
	bytes_drained(&t->in);
	bytes_drained(&t->out);
	free(t);
}

void tls_conn_input(struct tls_conn *t, const void *data, size_t len)
{
	vl_buf_append(&t->in.b, data, len);
}

ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t len)
{
	if (t->closed)
		return 0;
	int n = SSL_read(t->ssl, buf, (int)(len > 1 << 30 ? 1 << 30 : len));
	if (n > 0) {
		t->established = true;
		return n;
	}
	switch (SSL_get_error(t->ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		if (SSL_is_init_finished(t->ssl))
			t->established = true;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		t->closed = true;
		return 0;
	default:
		return -1;
	}
}

int tls_conn_write(struct tls_conn *t, const void *data, size_t len)
{
	/* Memory BIOs never block, so one call writes everything. */
	if (len == 0)
		return 0;
	int n = SSL_write(t->ssl, data, (int)len);
	return n == (int)len ? 0 : -1;
}

void tls_conn_shutdown(struct tls_conn *t)
{
	if (SSL_is_init_finished(t->ssl))
		SSL_shutdown(t->ssl);
	ERR_clear_error();
}

size_t tls_conn_output(struct tls_conn *t, struct vl_buf *out)
{
	size_t n = t->out.b.len;

	if (n && !out->cap) {      /* no storage yet: take the ciphertext's */
		*out = t->out.b;
		vl_buf_init(&t->out.b);
		return n;
	}
	vl_buf_append(out, t->out.b.p, n);
	bytes_drained(&t->out);
	return n;
}

size_t tls_conn_held(const struct tls_conn *t)
{
	return t->in.b.cap + t->out.b.cap;
}

bool tls_conn_established(const struct tls_conn *t)
{
	return t->established;
}

bool tls_conn_closed(const struct tls_conn *t)
{
	return t->closed;
}

const char *tls_conn_version(const struct tls_conn *t)
{
	return SSL_get_version(t->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *t)
{
	return SSL_get_cipher_name(t->ssl);
}
