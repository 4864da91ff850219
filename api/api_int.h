/*
 * api internals shared by intake.c and rcpt_json.c (not the module's face).
 */
#ifndef VOLLEY_API_INT_H
#define VOLLEY_API_INT_H

#include "api.h"

/* Parse a well-formed NDJSON recipient line into r, strings unescaped into
 * scratch (r points there). false: not handled here -- parse it with
 * jansson, which names the error if there is one. */
bool api_rcpt_fast(const char *p, size_t n, struct vl_buf *scratch,
		   struct sched_rcpt *r);
/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
bool api_utf8_valid(const char *s, size_t n);

#endif
