/*
 * What a one-click POST says and where its token is: pure functions over
 * bounded input, fuzzed (tests/fuzz/fuzz_unsub.c).
 */
#include "unsub.h"

#include <string.h>
#include <strings.h>

static const char KEY[] = "List-Unsubscribe", VAL[] = "One-Click";

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Does the form-urlencoded text p[0..n) decode to want exactly? */
static bool urlenc_eq(const char *p, size_t n, const char *want)
{
	size_t w = 0, wn = strlen(want);

	for (size_t i = 0; i < n; i++, w++) {
		char c = p[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= n)
				return false;
			int h = hexval(p[i + 1]), l = hexval(p[i + 2]);
			if (h < 0 || l < 0)
				return false;
			c = (char)(h << 4 | l);
			i += 2;
		}
		if (w >= wn || c != want[w])
			return false;
	}
	return w == wn;
}

static bool urlencoded(const char *b, size_t n)
{
	while (n && (b[n - 1] == '\n' || b[n - 1] == '\r'))
		n--;
	for (size_t i = 0; i < n;) {
		const char *amp = memchr(b + i, '&', n - i);
		size_t end = amp ? (size_t)(amp - b) : n;
		const char *eq = memchr(b + i, '=', end - i);
		if (eq && urlenc_eq(b + i, (size_t)(eq - b) - i, KEY) &&
		    urlenc_eq(eq + 1, end - (size_t)(eq + 1 - b), VAL))
			return true;
		i = end + 1;
	}
	return false;
}

/* boundary="..." or boundary=... of a multipart Content-Type, into out. */
static bool boundary(const char *ctype, char *out, size_t outlen)
{
	const char *p = strcasestr(ctype, "boundary=");
	size_t n = 0;

	if (!p)
		return false;
	p += 9;
	if (*p == '"') {
		const char *q = strchr(++p, '"');
		if (!q)
			return false;
		n = (size_t)(q - p);
	} else {
		n = strcspn(p, "; \t");
	}
	if (n == 0 || n > 70 || n + 1 > outlen)   /* RFC 2046 5.1.1: 1 to 70 */
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

/* A name="List-Unsubscribe" (or unquoted) parameter in a
 * Content-Disposition line: "name" itself, not the end of "filename". */
static bool named(const char *l, size_t n)
{
	for (size_t i = 1; i + 5 <= n; i++) {
		if (strncasecmp(l + i, "name=", 5) || (l[i - 1] != ';' && l[i - 1] != ' ' &&
						      l[i - 1] != '\t'))
			continue;
		const char *v = l + i + 5;
		size_t rest = n - i - 5, k = strlen(KEY);
		if (rest >= k + 2 && v[0] == '"' && !memcmp(v + 1, KEY, k) && v[k + 1] == '"')
			return true;
		if (rest >= k && !memcmp(v, KEY, k) && (rest == k || v[k] == ';' || v[k] == ' '))
			return true;
	}
	return false;
}

/* A part (headers, blank line, content) named List-Unsubscribe whose
 * content is One-Click. */
static bool part_ok(const char *p, size_t n)
{
	const char *blank = memmem(p, n, "\r\n\r\n", 4);

	if (!blank)
		return false;
	size_t hn = (size_t)(blank - p), cn = n - hn - 4;
	const char *content = blank + 4;
	bool is_it = false;
	for (size_t i = 0; i < hn;) {
		const char *nl = memmem(p + i, hn - i, "\r\n", 2);
		size_t ln = nl ? (size_t)(nl - p) - i : hn - i;
		if (ln > 20 && !strncasecmp(p + i, "Content-Disposition:", 20))
			is_it = named(p + i + 20, ln - 20);
		i += ln + 2;
	}
	return is_it && cn == strlen(VAL) && !memcmp(content, VAL, cn);
}

static bool multipart(const char *ctype, const char *b, size_t n)
{
	char bd[80], delim[84];

	if (!boundary(ctype, bd, sizeof bd))
		return false;
	size_t dl = (size_t)snprintf(delim, sizeof delim, "--%s", bd);
	const char *p = memmem(b, n, delim, dl), *end = b + n;
	while (p) {
		p += dl;
		if (end - p >= 2 && !memcmp(p, "--", 2))
			return false;              /* the close delimiter */
		if (end - p < 2 || memcmp(p, "\r\n", 2))
			return false;
		p += 2;
		char next[88];
		size_t nl = (size_t)snprintf(next, sizeof next, "\r\n%s", delim);
		const char *q = memmem(p, (size_t)(end - p), next, nl);
		if (!q)
			return false;
		if (part_ok(p, (size_t)(q - p)))
			return true;
		p = q + 2;
	}
	return false;
}

bool uns_form_one_click(const char *ctype, const char *body, size_t len)
{
	if (!body || len > UNS_BODY_MAX)
		return false;
	if (ctype && !strncasecmp(ctype, "multipart/form-data", 19))
		return multipart(ctype, body, len);
	return urlencoded(body, len);
}

int uns_base_path(const char *base_url, char *out, size_t outlen)
{
	if (strncasecmp(base_url, "https://", 8))
		return -1;
	const char *slash = strchr(base_url + 8, '/');
	const char *path = slash ? slash : "";
	if (strlen(path) + 1 > outlen)
		return -1;
	strcpy(out, path);
	return 0;
}

static bool b64url_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

int uns_path_token(const char *base, const char *path, const char **tok, size_t *len)
{
	size_t bl = strlen(base), n;

	if (strncmp(path, base, bl) || path[bl] != '/')
		return -1;
	path += bl + 1;
	for (n = 0; path[n]; n++)
		if (!b64url_char(path[n]))
			return -1;
	if (n == 0)
		return -1;
	*tok = path;
	*len = n;
	return 0;
}
