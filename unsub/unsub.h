/*
 * unsub: volley's one-click unsubscribe endpoint (RFC 8058). An HTTP
 * listener (libmicrohttpd, its own threads) that takes POST <base
 * path>/<token>, verifies the token (message/token.c), adds the address
 * to the suppression list (reason "unsubscribe") and writes an
 * Unsubscribe event; GET answers a confirmation page whose form POSTs.
 * The request parsing is pure (form.c). Prefix: uns_.
 */
#ifndef VOLLEY_UNSUB_H
#define VOLLEY_UNSUB_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/common.h"
#include "../config/config.h"
#include "../scheduler/events.h"
#include "../scheduler/suppress.h"

#define UNS_BODY_MAX 4096         /* octets of a POST body; more is 413 */

/* ---- pure parts (form.c) ---- */
/* The body says List-Unsubscribe=One-Click: as
 * application/x-www-form-urlencoded (also when ctype is NULL or another
 * type) or as multipart/form-data (RFC 7578; RFC 8058 3.1 allows both). */
bool uns_form_one_click(const char *ctype, const char *body, size_t len);
/* The base path of an https base_url ("https://h/a/b" -> "/a/b", "https://h"
 * -> "") into out; -1 if it does not fit or is not https. */
int uns_base_path(const char *base_url, char *out, size_t outlen);
/* The token in path when path is base "/" token with a non-empty token
 * of base64url characters and nothing after it: 0 with *tok, *len; -1. */
int uns_path_token(const char *base, const char *path, const char **tok, size_t *len);

/* ---- the listener ---- */
struct uns_server;
/* Listens on every c->listen address (none: NULL and no error: nothing to
 * serve). NULL with err on failure. sup and ev outlive the server. */
struct uns_server *uns_start(const struct cfg_unsubscribe *c, struct sched_suppress *sup,
			     struct sched_events *ev, char *err, size_t errlen);
/* Stops taking connections and joins the threads. NULL is fine. */
void uns_stop(struct uns_server *s);
/* volley_unsubscribe_requests_total{result} lines (api_add_metrics). */
void uns_metrics(void *arg, struct vl_buf *out);

#endif
