/*
 * Addresses: RFC 5321 4.1.2 Mailbox syntax with RFC 6531's UTF-8, the
 * length limits of 4.5.3.1, and VERP return paths.
 */
#include "message_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define LOCAL_MAX 64
#define DOMAIN_MAX 255
#define LABEL_MAX 63
#define ADDR_MAX 254      /* a path is at most 256 octets with its < > */

static int why_(char *why, size_t len, const char *s)
{
	snprintf(why, len, "%s", s);
	return -1;
}

static bool atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~", c);
}

/* Dot-atom: atoms of atext joined by single dots. */
static bool dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.' ? s[i + 1] == '.' : !atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Quoted string at s; its length (closing quote included), 0 if malformed.
 * qtextSMTP is printable ASCII but '"' '\', or UTF-8; quoted-pairSMTP is
 * '\' and printable ASCII or space. */
static size_t quoted(const char *s, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"')
			return i + 1;
		if (c == '\\') {
			if (++i == n || (unsigned char)s[i] < 32 || (unsigned char)s[i] > 126)
				return 0;
		} else if (c < 32 || c == 127) {
			return 0;
		}
	}
	return 0;
}

static bool ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c >= 0x80;
}

static int domain(const char *d, size_t n, char *why, size_t whylen)
{
	if (n == 0)
		return why_(why, whylen, "no domain after '@'");
	if (n > DOMAIN_MAX)
		return why_(why, whylen, "domain longer than 255 octets");
	for (size_t i = 0, start = 0; i <= n; i++) {
		if (i < n && d[i] != '.') {
			if (!ldh((unsigned char)d[i]))
				return why_(why, whylen, "domain holds a character other "
					    "than letters, digits, '-' and '.'");
			continue;
		}
		size_t len = i - start;
		if (len == 0)
			return why_(why, whylen, "empty domain label");
		if (len > LABEL_MAX)
			return why_(why, whylen, "domain label longer than 63 octets");
		if (d[start] == '-' || d[i - 1] == '-')
			return why_(why, whylen, "domain label starts or ends with '-'");
		start = i + 1;
	}
	return 0;
}

static int literal(const char *d, size_t n, char *why, size_t whylen)
{
	char ip[64];

	if (n < 3 || d[n - 1] != ']' || n - 2 >= sizeof ip)
		return why_(why, whylen, "malformed address literal");
	memcpy(ip, d + 1, n - 2);
	ip[n - 2] = '\0';
	unsigned char bin[16];
	if (!strncmp(ip, "IPv6:", 5) ? inet_pton(AF_INET6, ip + 5, bin) == 1
				     : inet_pton(AF_INET, ip, bin) == 1)
		return 0;
	return why_(why, whylen, "address literal is not [IPv4] or [IPv6:...]");
}

static int local_part(const char *a, size_t n, size_t *at, char *why, size_t whylen)
{
	if (n && a[0] == '"') {
		*at = quoted(a, n);
		if (*at == 0)
			return why_(why, whylen, "malformed quoted local part");
		if (*at == n || a[*at] != '@')
			return why_(why, whylen, "no '@' after the quoted local part");
	} else {
		const char *p = memchr(a, '@', n);
		while (p && memchr(p + 1, '@', n - (size_t)(p + 1 - a)))
			p = memchr(p + 1, '@', n - (size_t)(p + 1 - a));
		if (!p)
			return why_(why, whylen, "no '@'");
		*at = (size_t)(p - a);
		if (!dot_atom(a, *at))
			return why_(why, whylen, *at ? "local part is not a dot-atom or "
					"quoted string" : "empty local part");
	}
	if (*at > LOCAL_MAX)
		return why_(why, whylen, "local part longer than 64 octets");
	return 0;
}

int msg_addr_check(const char *a, size_t len, bool *utf8, char *why, size_t whylen)
{
	size_t at;

	*utf8 = msg_has_8bit(a, len);
	if (len == 0)
		return why_(why, whylen, "empty address");
	if (len > ADDR_MAX)
		return why_(why, whylen, "address longer than 254 octets");
	if (memchr(a, '\0', len))
		return why_(why, whylen, "address holds NUL");
	if (*utf8 && !msg_utf8_valid(a, len))
		return why_(why, whylen, "address is not valid UTF-8");
	if (local_part(a, len, &at, why, whylen) < 0)
		return -1;
	const char *d = a + at + 1;
	size_t dn = len - at - 1;
	if (dn && d[0] == '[')
		return literal(d, dn, why, whylen);
	return domain(d, dn, why, whylen);
}

const char *msg_addr_domain(const char *a)
{
	const char *p = strrchr(a, '@');
	return p ? p + 1 : a + strlen(a);
}

int msg_verp(const char *sender, const char *job_id, size_t index, char *out,
	     size_t outlen)
{
	const char *at = strrchr(sender, '@');

	if (!at)
		return -1;
	size_t local = (size_t)(at - sender);
	bool q = local >= 2 && sender[0] == '"' && sender[local - 1] == '"';
	if (q)
		local--;       /* the tag goes inside the quotes */
	int n = snprintf(out, outlen, "%.*s+%s.%zu%s%s", (int)local, sender, job_id,
			 index, q ? "\"" : "", at);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	return (size_t)(strrchr(out, '@') - out) > LOCAL_MAX ? -1 : 0;
}
