/* MTA-STS (RFC 8461): the _mta-sts TXT record, the policy file and MX
 * matching, as pure parsers (no I/O: the fetcher hands them bytes). A peer
 * writes both texts, so every length is bounded and every octet checked. */
#include "tls.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return -1;
}

/* sts-text-record = sts-version 1*(sts-sep sts-field) [sts-sep] (3.1) */
int tls_sts_txt_parse(const char *txt, size_t len, struct tls_sts_txt *out, char *err,
		      size_t errlen)
{
	size_t i = 0, nfield = 0;
	bool has_id = false;

	memset(out, 0, sizeof *out);
	while (i < len) {
		while (i < len && wsp(txt[i]))
			i++;
		if (i == len)
			break;
		size_t k = i;
		while (k < len && txt[k] != '=' && txt[k] != ';')
			k++;
		if (k == len || txt[k] != '=' || k == i || k - i > 32)
			return fail(err, errlen, "MTA-STS record: a field without a name and '='");
		size_t v = k + 1, e = v;
		while (e < len && txt[e] != ';')
			e++;
		size_t ve = e;
		while (ve > v && wsp(txt[ve - 1]))
			ve--;
		if (ve == v)
			return fail(err, errlen, "MTA-STS record: a field without a value");
		for (size_t c = v; c < ve; c++)
			if ((unsigned char)txt[c] < 0x21 || (unsigned char)txt[c] > 0x7e ||
			    txt[c] == ';' || txt[c] == '=')
				return fail(err, errlen, "MTA-STS record: a bad octet in a value");
		if (nfield == 0 && (k - i != 1 || txt[i] != 'v' || ve - v != 5 ||
				    memcmp(txt + v, "STSv1", 5) != 0))
			return fail(err, errlen, "not an MTA-STS record (v=STSv1 must come first)");
		if (k - i == 2 && memcmp(txt + i, "id", 2) == 0) {
			if (ve - v > 32)
				return fail(err, errlen, "MTA-STS record: id longer than 32");
			for (size_t c = v; c < ve; c++)
				if (!alnum(txt[c]))
					return fail(err, errlen, "MTA-STS record: id not alphanumeric");
			memcpy(out->id, txt + v, ve - v);
			has_id = true;
		}
		nfield++;
		i = e < len ? e + 1 : e;
	}
	if (!nfield)
		return fail(err, errlen, "not an MTA-STS record (empty)");
	if (!has_id)
		return fail(err, errlen, "MTA-STS record without an id");
	return 0;
}

/* A domain name as a policy's mx value: labels of letters, digits and
 * hyphens, optionally "*." first; stored lower case without a final dot. */
static int mx_pattern(const char *v, size_t n, char out[TLS_STS_NAME_MAX + 1])
{
	if (n && v[n - 1] == '.')
		n--;
	if (n == 0 || n > TLS_STS_NAME_MAX)
		return -1;
	size_t label = 0, i = 0;
	if (n > 2 && v[0] == '*' && v[1] == '.') {
		memcpy(out, "*.", 2);
		i = 2;
	}
	for (; i < n; i++) {
		char c = v[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (alnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return -1;
			if (c >= 'A' && c <= 'Z')
				c += 32;
		} else {
			return -1;
		}
		out[i] = c;
	}
	if (label == 0)
		return -1;
	out[n] = '\0';
	return 0;
}

static int policy_field(struct tls_sts_policy *p, const char *k, size_t kn, const char *v,
			size_t vn, unsigned *seen, char *err, size_t errlen)
{
	if (kn == 7 && memcmp(k, "version", 7) == 0) {
		if (vn != 5 || memcmp(v, "STSv1", 5) != 0)
			return fail(err, errlen, "MTA-STS policy: version is not STSv1");
		*seen |= 1;
	} else if (kn == 4 && memcmp(k, "mode", 4) == 0) {
		if (vn == 7 && memcmp(v, "enforce", 7) == 0)
			p->mode = TLS_STS_ENFORCE;
		else if (vn == 7 && memcmp(v, "testing", 7) == 0)
			p->mode = TLS_STS_TESTING;
		else if (vn == 4 && memcmp(v, "none", 4) == 0)
			p->mode = TLS_STS_NONE;
		else
			return fail(err, errlen, "MTA-STS policy: mode is not enforce, testing or none");
		*seen |= 2;
	} else if (kn == 7 && memcmp(k, "max_age", 7) == 0) {
		uint64_t age = 0;
		if (vn == 0 || vn > 10)
			return fail(err, errlen, "MTA-STS policy: max_age is not a number");
		for (size_t i = 0; i < vn; i++) {
			if (v[i] < '0' || v[i] > '9')
				return fail(err, errlen, "MTA-STS policy: max_age is not a number");
			age = age * 10 + (uint64_t)(v[i] - '0');
		}
		if (age > TLS_STS_MAX_AGE)
			return fail(err, errlen, "MTA-STS policy: max_age over 31557600");
		p->max_age = (uint32_t)age;
		*seen |= 4;
	} else if (kn == 2 && memcmp(k, "mx", 2) == 0) {
		if (p->nmx == TLS_STS_MX_MAX)
			return fail(err, errlen, "MTA-STS policy: too many mx lines");
		if (mx_pattern(v, vn, p->mx[p->nmx]) < 0)
			return fail(err, errlen, "MTA-STS policy: an mx value is not a host pattern");
		p->nmx++;
	}
	return 0;              /* other fields: extensions, ignored (3.2) */
}

int tls_sts_policy_parse(const char *text, size_t len, struct tls_sts_policy *p, char *err,
			 size_t errlen)
{
	unsigned seen = 0;
	size_t i = 0;

	memset(p, 0, sizeof *p);
	if (len > TLS_STS_POLICY_MAX)
		return fail(err, errlen, "MTA-STS policy: larger than 64 KB");
	while (i < len) {
		size_t e = i;
		while (e < len && text[e] != '\n')
			e++;
		size_t le = e;
		if (le > i && text[le - 1] == '\r')
			le--;
		size_t c = i;
		while (c < le && text[c] != ':')
			c++;
		if (le > i) {
			if (c == le || c == i)
				return fail(err, errlen, "MTA-STS policy: a line without a field name and ':'");
			size_t v = c + 1, ve = le;
			while (v < ve && wsp(text[v]))
				v++;
			while (ve > v && wsp(text[ve - 1]))
				ve--;
			for (size_t k = i; k < c; k++)
				if (!alnum(text[k]) && text[k] != '_' && text[k] != '-' && text[k] != '.')
					return fail(err, errlen, "MTA-STS policy: a bad field name");
			if (policy_field(p, text + i, c - i, text + v, ve - v, &seen, err, errlen) < 0)
				return -1;
		}
		i = e < len ? e + 1 : e;
	}
	if ((seen & 7) != 7)
		return fail(err, errlen, "MTA-STS policy: version, mode and max_age are required");
	if (p->mode != TLS_STS_NONE && !p->nmx)
		return fail(err, errlen, "MTA-STS policy: no mx line");
	return 0;
}

/* 4.1: equal, or "*.rest" and host is one label more than rest. */
static bool mx_matches(const char *pat, const char *host, size_t hn)
{
	if (pat[0] == '*') {
		const char *dot = memchr(host, '.', hn);
		if (!dot || dot == host)
			return false;
		size_t rest = hn - (size_t)(dot + 1 - host);
		return strlen(pat + 2) == rest && strncasecmp(pat + 2, dot + 1, rest) == 0;
	}
	return strlen(pat) == hn && strncasecmp(pat, host, hn) == 0;
}

bool tls_sts_mx_match(const struct tls_sts_policy *p, const char *host)
{
	size_t hn = strlen(host);

	if (hn && host[hn - 1] == '.')
		hn--;
	for (size_t i = 0; i < p->nmx; i++)
		if (mx_matches(p->mx[i], host, hn))
			return true;
	return false;
}

const char *tls_sts_mode_name(enum tls_sts_mode m)
{
	return m == TLS_STS_ENFORCE ? "enforce" : m == TLS_STS_TESTING ? "testing" : "none";
}
