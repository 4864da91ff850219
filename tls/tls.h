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
#include <sys/types.h>

#include <openssl/ssl.h>

#include "../common/common.h"

struct tls_conn;

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

/* Queue a close_notify alert (fetch it with tls_conn_output). */
void tls_conn_shutdown(struct tls_conn *t);

/* Append pending ciphertext (handshake or records) to out; returns bytes. */
size_t tls_conn_output(struct tls_conn *t, struct vl_buf *out);

bool tls_conn_established(const struct tls_conn *t);
bool tls_conn_closed(const struct tls_conn *t);
const char *tls_conn_version(const struct tls_conn *t);
const char *tls_conn_cipher(const struct tls_conn *t);
/* Last OpenSSL error as text, for logs. */
const char *tls_last_error(char *buf, size_t len);

#endif
