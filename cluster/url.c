/* The redis:// and rediss:// URL (cluster.h). Pure. */
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return -1;
}

/* A decimal number within [lo, hi], all of s..e. */
static bool number(const char *s, const char *e, unsigned lo, unsigned hi, unsigned *out)
{
	unsigned long v = 0;

	if (s == e || e - s > 5)
		return false;
	for (const char *p = s; p < e; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

static int userinfo(const char *s, const char *at, struct clu_url *u, char *err, size_t errlen)
{
	const char *colon = memchr(s, ':', (size_t)(at - s));

	if (!colon)
		return bad(err, errlen, "credentials must be user:password@ or :password@");
	if ((size_t)(colon - s) >= sizeof u->user || (size_t)(at - colon - 1) >= sizeof u->pass)
		return bad(err, errlen, "user or password too long");
	if (colon + 1 == at)
		return bad(err, errlen, "empty password before '@'");
	memcpy(u->user, s, (size_t)(colon - s));
	u->user[colon - s] = 0;
	memcpy(u->pass, colon + 1, (size_t)(at - colon - 1));
	u->pass[at - colon - 1] = 0;
	return 0;
}

static int hostport(const char *s, const char *e, struct clu_url *u, char *err, size_t errlen)
{
	const char *hend, *port = NULL;

	if (*s == '[') {
		const char *rb = memchr(s, ']', (size_t)(e - s));
		if (!rb)
			return bad(err, errlen, "'[' without ']' around an IPv6 address");
		hend = rb + 1;
		if (hend < e && *hend != ':')
			return bad(err, errlen, "expected ':' or '/' after ']'");
		s++;
		if (hend < e)
			port = hend + 1;
		hend = rb;
	} else {
		hend = memchr(s, ':', (size_t)(e - s));
		if (hend)
			port = hend + 1;
		else
			hend = e;
	}
	if (hend == s)
		return bad(err, errlen, "no host");
	if ((size_t)(hend - s) >= sizeof u->host)
		return bad(err, errlen, "host name too long");
	for (const char *p = s; p < hend; p++)
		if (*p <= ' ' || *p == '@' || *p == '/' || *p == '?' || *p == '#')
			return bad(err, errlen, "a character a host cannot have");
	memcpy(u->host, s, (size_t)(hend - s));
	u->host[hend - s] = 0;
	if (port && !number(port, e, 1, 65535, &u->port))
		return bad(err, errlen, "the port must be a number from 1 to 65535");
	return 0;
}

int clu_url_parse(const char *s, struct clu_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	u->port = 6379;
	if (strncmp(s, "rediss://", 9) == 0) {
		u->tls = true;
		s += 9;
	} else if (strncmp(s, "redis://", 8) == 0) {
		s += 8;
	} else {
		return bad(err, errlen, "expected redis[s]://[user:password@]host[:port][/db]");
	}
	const char *end = s + strcspn(s, "/?#");
	if (end[0] == '?' || end[0] == '#')
		return bad(err, errlen, "query or fragment after the host: not supported");
	const char *at = NULL;
	for (const char *p = s; p < end; p++)
		if (*p == '@')
			at = p;
	if (at && userinfo(s, at, u, err, errlen) < 0)
		return -1;
	if (hostport(at ? at + 1 : s, end, u, err, errlen) < 0)
		return -1;
	if (*end == '/' && end[1]) {
		if (!number(end + 1, end + 1 + strlen(end + 1), 0, 15, &u->db))
			return bad(err, errlen, "the database must be a number from 0 to 15 after '/'");
	}
	return 0;
}
