/*
 * console: the web console's assets (console/www/), compiled into volleyd
 * at build time (the Makefile turns each file into a C string), and the
 * headers every answer of the console carries. Pure: no I/O.
 * Prefix: con_.
 */
#ifndef VOLLEY_CONSOLE_H
#define VOLLEY_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

/* The Content-Security-Policy of every console answer: the pages' own
 * scripts and styles only, no inline code, data only from the same origin. */
#define CON_CSP "default-src 'none'; script-src 'self'; style-src 'self'; " \
		"img-src 'self' data:; connect-src 'self'; base-uri 'none'; " \
		"form-action 'none'; frame-ancestors 'none'"

/* The asset at path, relative to /console/ ("" is index.html): its bytes,
 * *len and *ctype (a Content-Type); NULL when there is none. path may
 * carry a query ("app.js?v=1"): it is ignored. */
const char *con_asset(const char *path, size_t *len, const char **ctype);

/* The Content-Type for a file name by its extension. */
const char *con_ctype(const char *name);

/* An asset name is safe: [A-Za-z0-9._-], no leading dot, at most 64. */
bool con_name_ok(const char *name, size_t n);

#endif
