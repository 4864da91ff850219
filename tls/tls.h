/*
 * tls: OpenSSL over memory BIOs. The event loop owns the socket and does all
 * I/O through io_uring; a tls_conn only transforms bytes:
 *
 *   ciphertext from the network -> tls_conn_input()  -> tls_conn_read() -> plaintext
 *   plaintext to send           -> tls_conn_write()  -> tls_conn_output() -> ciphertext
 *
 * Handshake bytes travel the same way: after every input, call
 * tls_conn_read() (which drives the handshake) and then tls_conn_output().
 * Prefix: tls_.
 */
#ifndef VOLLEY_TLS_H
#define VOLLEY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "../common/common.h"

struct tls_conn;

/* TLS policy of a destination (docs/engine.md, "TLS policies"). */
enum tls_policy {
	TLS_POLICY_NONE,      /* never STARTTLS */
	TLS_POLICY_MAY,       /* STARTTLS when offered, else clear text */
	TLS_POLICY_ENCRYPT,   /* TLS required, certificate not checked */
	TLS_POLICY_DANE,      /* DANE when TLSA records exist, else encrypt */
	TLS_POLICY_DANE_ONLY, /* DANE required */
	TLS_POLICY_VERIFY,    /* TLS with the chain and host name verified */
	TLS_POLICY_MTA_STS,   /* the domain's MTA-STS policy, else encrypt */
};
int tls_policy_parse(const char *name, enum tls_policy *p);
const char *tls_policy_name(enum tls_policy p);
/* Whether the policy refuses to send without TLS. */
bool tls_policy_requires_tls(enum tls_policy p);

/* Client context: CA file for `verify` (NULL: the system's store). */
SSL_CTX *tls_client_ctx_new(const char *ca_file, char *err, size_t errlen);
/* A CA store of its own (a domain's ca_file; NULL: the system's), for
 * tls_conn_new_client. Read-only once loaded, so threads share it. */
X509_STORE *tls_store_new(const char *ca_file, char *err, size_t errlen);
void tls_store_free(X509_STORE *st);
/* A client connection: SNI name; with verify, the chain is verified
 * against store (NULL: the context's) and the name checked; resuming
 * session when not NULL. Verification records its result and never stops
 * the handshake: ask tls_conn_verified() after it and decide (policy
 * verify and MTA-STS enforce send nothing, MTA-STS testing reports). */
struct tls_conn *tls_conn_new_client(SSL_CTX *ctx, const char *name, bool verify,
				     X509_STORE *store, SSL_SESSION *resume);
/* Chain and name verified (only ever true for a verifying connection). */
bool tls_conn_verified(const struct tls_conn *t);
/* Why verification failed, as an RFC 8460 result type:
 * certificate-expired, certificate-host-mismatch, certificate-not-trusted
 * or validation-failure. */
const char *tls_conn_verify_failure(const struct tls_conn *t);

/* ---- DANE (RFC 6698, RFC 7672) ----
 * One TLSA record as DNS gives it; data is only read during the call. */
struct tls_tlsa {
	uint8_t usage, selector, mtype;
	const unsigned char *data;
	size_t len;
};
/* Whether SMTP may use a record (RFC 7672 3.1): DANE-TA(2) or DANE-EE(3),
 * selector Cert(0) or SPKI(1), matching Full(0), SHA2-256(1), SHA2-512(2),
 * and a digest of its algorithm's length. PKIX-TA(0) and PKIX-EE(1) are
 * unusable for SMTP. */
bool tls_tlsa_usable(const struct tls_tlsa *r);
/* A client connection to be authenticated by the usable records among
 * rr[0..n) (OpenSSL's DANE: SSL_dane_enable and SSL_dane_tlsa_add).
 * name is the TLSA base domain: SNI, and the reference identifier that a
 * DANE-TA(2) match must carry (DANE-EE(3) matches need no name). *usable:
 * how many records were taken; 0 means the RRset is unusable and the
 * connection is plain TLS without authentication (RFC 7672 2.2). alt, if
 * not NULL, is a second reference identifier for DANE-TA: the MX name when
 * name is its CNAME target (RFC 7672 2.2.2, 3.2.3). The
 * handshake completes whatever the peer shows: ask tls_conn_dane() after
 * it, and send nothing unless it says so. Never resumes a session: a
 * resumed handshake proves nothing about the records (OpenSSL reports no
 * DANE authority for it), so each connection authenticates in full. */
struct tls_conn *tls_conn_new_dane(SSL_CTX *ctx, const char *name, const char *alt,
				   const struct tls_tlsa *rr, size_t n, size_t *usable);
/* Established and authenticated by one of its TLSA records. */
bool tls_conn_dane(const struct tls_conn *t);
/* The record that matched (false when none did). */
bool tls_conn_dane_match(const struct tls_conn *t, struct tls_tlsa *match);
/* Why the peer's chain was not authenticated ("ok" when it was): the
 * verifier's reason, e.g. "no matching DANE TLSA records". */
const char *tls_conn_verify_error(const struct tls_conn *t);
bool tls_conn_resumed(const struct tls_conn *t);
/* A session ticket for resumption, if one arrived since the last call;
 * the caller owns the reference (SSL_SESSION_free). */
SSL_SESSION *tls_conn_take_session(struct tls_conn *t);

/* Server context from PEM files, or, with cert == NULL, a freshly generated
 * self-signed P-256 certificate for cn. NULL on failure with err filled. */
SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, const char *cn,
			    char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

struct tls_conn *tls_conn_new_server(SSL_CTX *ctx);
void tls_conn_free(struct tls_conn *t);

/* Feed ciphertext received from the peer. */
void tls_conn_input(struct tls_conn *t, const void *data, size_t len);

/* Plaintext out: > 0 bytes read; 0 when more input is needed (or the peer
 * closed cleanly: check tls_conn_closed()); -1 on a protocol error. */
ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t len);

/* Encrypt plaintext; 0 on success, -1 on error. */
int tls_conn_write(struct tls_conn *t, const void *data, size_t len);

/* Queue a close_notify alert (fetch it with tls_conn_output). Only a
 * connection closed this way leaves its session resumable. */
void tls_conn_shutdown(struct tls_conn *t);

/* Append pending ciphertext (handshake or records) to out; returns bytes.
 * An out without storage (cap 0) takes the ciphertext's buffer itself (no
 * copy). The connection keeps no buffer once its bytes are out or read. */
size_t tls_conn_output(struct tls_conn *t, struct vl_buf *out);

/* Octets of buffer the connection holds outside OpenSSL: input not yet
 * read, output not yet taken; 0 at rest. */
size_t tls_conn_held(const struct tls_conn *t);

bool tls_conn_established(const struct tls_conn *t);
bool tls_conn_closed(const struct tls_conn *t);
const char *tls_conn_version(const struct tls_conn *t);
const char *tls_conn_cipher(const struct tls_conn *t);
/* ---- MTA-STS (RFC 8461), sts.c: pure parsers, no I/O ----
 * The TXT record at _mta-sts.<domain> ("v=STSv1; id=...;") and the policy
 * file from https://mta-sts.<domain>/.well-known/mta-sts.txt, both written
 * by the peer: bounded, every octet checked, unknown fields ignored (3.1,
 * 3.2). -1 with err naming what is wrong. */
#define TLS_STS_MX_MAX 32            /* mx lines kept; more is an error */
#define TLS_STS_NAME_MAX 253
#define TLS_STS_MAX_AGE 31557600u    /* a year, the RFC's upper bound */
#define TLS_STS_POLICY_MAX 65536     /* octets: the fetch's limit too */
struct tls_sts_txt {
	char id[33];                 /* 1-32 alphanumerics */
};
int tls_sts_txt_parse(const char *txt, size_t len, struct tls_sts_txt *out, char *err,
		      size_t errlen);
enum tls_sts_mode { TLS_STS_NONE, TLS_STS_TESTING, TLS_STS_ENFORCE };
struct tls_sts_policy {
	enum tls_sts_mode mode;
	uint32_t max_age;            /* seconds */
	size_t nmx;
	char mx[TLS_STS_MX_MAX][TLS_STS_NAME_MAX + 1];  /* lower case, "*." allowed */
};
int tls_sts_policy_parse(const char *text, size_t len, struct tls_sts_policy *p, char *err,
			 size_t errlen);
/* Whether an MX host name is one the policy allows (4.1): equal to an mx
 * pattern, or one label under a "*." pattern; case-insensitive. */
bool tls_sts_mx_match(const struct tls_sts_policy *p, const char *host);
const char *tls_sts_mode_name(enum tls_sts_mode m);

/* Last OpenSSL error as text, for logs. */
const char *tls_last_error(char *buf, size_t len);

#endif
