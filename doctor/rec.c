/*
 * The DKIM key record (RFC 6376 3.6.1, RFC 8463) and the DMARC record
 * (RFC 7489 6.3): tag=value lists (RFC 6376 3.2), pure. Organizational
 * domains by the last two labels.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "doctor.h"

#define TAGS_MAX 32

struct tag {
	char name[16];
	char value[1200];
};

static bool wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Split txt into tags: names of letters, digits and '_', values trimmed;
 * a duplicate or malformed tag is an error. Returns the count or -1. */
static int tag_list(const char *txt, struct tag *t, char *err, size_t errlen)
{
	int n = 0;

	for (const char *p = txt; *p;) {
		while (wsp(*p))
			p++;
		if (!*p)
			break;
		const char *semi = strchr(p, ';');
		const char *end = semi ? semi : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (!eq) {
			snprintf(err, errlen, "a tag without '=' (\"%.*s\")", (int)(end - p > 40 ? 40 : end - p), p);
			return -1;
		}
		const char *ne = eq;
		while (ne > p && wsp(ne[-1]))
			ne--;
		size_t nl = (size_t)(ne - p);
		if (nl == 0 || nl >= sizeof t->name || !isalpha((unsigned char)*p)) {
			snprintf(err, errlen, "a bad tag name (\"%.*s\")", (int)(nl > 15 ? 15 : nl), p);
			return -1;
		}
		for (size_t i = 0; i < nl; i++)
			if (!isalnum((unsigned char)p[i]) && p[i] != '_') {
				snprintf(err, errlen, "a bad tag name (\"%.*s\")", (int)nl, p);
				return -1;
			}
		const char *v = eq + 1, *ve = end;
		while (v < ve && wsp(*v))
			v++;
		while (ve > v && wsp(ve[-1]))
			ve--;
		if (n == TAGS_MAX || (size_t)(ve - v) >= sizeof t->value) {
			snprintf(err, errlen, n == TAGS_MAX ? "too many tags" : "tag %.*s too long",
				 (int)nl, p);
			return -1;
		}
		memcpy(t[n].name, p, nl);
		t[n].name[nl] = '\0';
		memcpy(t[n].value, v, (size_t)(ve - v));
		t[n].value[ve - v] = '\0';
		for (int i = 0; i < n; i++)
			if (!strcmp(t[i].name, t[n].name)) {
				snprintf(err, errlen, "tag %s given twice", t[n].name);
				return -1;
			}
		n++;
		p = semi ? semi + 1 : end;
	}
	return n;
}

static const char *tag_get(const struct tag *t, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(t[i].name, name))
			return t[i].value;
	return NULL;
}

/* Base64 with folding whitespace (RFC 6376 3.6.1 allows it in p=). */
static int b64_decode(const char *s, uint8_t *out, size_t cap, size_t *outlen)
{
	unsigned acc = 0, bits = 0, pad = 0;
	size_t n = 0;

	for (; *s; s++) {
		const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		if (wsp(*s))
			continue;
		if (*s == '=') {
			pad++;
			continue;
		}
		const char *c = strchr(alpha, *s);
		if (!c || !*s || pad)
			return -1;
		acc = (acc << 6) | (unsigned)(c - alpha);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return -1;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (pad > 2 || bits >= 6 || (acc & ((1u << bits) - 1)))
		return -1;
	*outlen = n;
	return 0;
}

/* Whether the colon-separated list has item (case-insensitive). */
static bool list_has(const char *list, const char *item)
{
	size_t il = strlen(item);

	for (const char *p = list; *p;) {
		while (wsp(*p))
			p++;
		size_t l = strcspn(p, ":");
		size_t e = l;
		while (e && wsp(p[e - 1]))
			e--;
		if (e == il && !strncasecmp(p, item, il))
			return true;
		p += l + (p[l] == ':');
	}
	return false;
}

int doc_dkim_parse(const char *txt, struct doc_dkim_rec *out, char *err, size_t errlen)
{
	struct tag *t = calloc(TAGS_MAX, sizeof *t);
	int n = t ? tag_list(txt, t, err, errlen) : -1;
	int rc = -1;

	memset(out, 0, sizeof *out);
	if (n < 0)
		goto done;
	const char *v = tag_get(t, n, "v"), *k = tag_get(t, n, "k"), *p = tag_get(t, n, "p");
	const char *h = tag_get(t, n, "h"), *s = tag_get(t, n, "s"), *fl = tag_get(t, n, "t");
	if (v && (strcmp(t[0].name, "v") || strcmp(v, "DKIM1")))
		snprintf(err, errlen, "v= must come first and be DKIM1");
	else if (!p)
		snprintf(err, errlen, "no p= (public key) tag");
	else if (k && strcmp(k, "rsa") && strcmp(k, "ed25519"))
		snprintf(err, errlen, "unknown key type k=%s", k);
	else if (s && !list_has(s, "email") && !list_has(s, "*"))
		snprintf(err, errlen, "s=%s excludes email", s);
	else if (b64_decode(p, out->key, sizeof out->key, &out->keylen) < 0)
		snprintf(err, errlen, "p= is not valid base64 (or longer than %d octets)",
			 DOC_DKIM_KEY_MAX);
	else
		rc = 0;
	if (rc == 0) {
		snprintf(out->k, sizeof out->k, "%.15s", k ? k : "rsa");
		out->revoked = out->keylen == 0;
		out->sha256 = !h || list_has(h, "sha256");
		out->testing = fl && list_has(fl, "y");
	}
done:
	free(t);
	return rc;
}

/* ---- DMARC ---- */

static const char *const policies[] = {"none", "quarantine", "reject"};

const char *doc_dmarc_policy_name(enum doc_dmarc_policy p)
{
	return (unsigned)p <= DOC_P_REJECT ? policies[p] : "?";
}

bool doc_dmarc_is_record(const char *txt)
{
	while (wsp(*txt))
		txt++;
	if (strncmp(txt, "v", 1))
		return false;
	txt++;
	while (wsp(*txt))
		txt++;
	if (*txt++ != '=')
		return false;
	while (wsp(*txt))
		txt++;
	return !strncmp(txt, "DMARC1", 6) && (wsp(txt[6]) || txt[6] == ';' || !txt[6]);
}

static int policy_of(const char *s, enum doc_dmarc_policy *p)
{
	for (int i = 0; i <= DOC_P_REJECT; i++)
		if (!strcasecmp(s, policies[i])) {
			*p = (enum doc_dmarc_policy)i;
			return 0;
		}
	return -1;
}

/* rua: comma-separated URIs; volley can only say something of mailto:. */
static bool rua_ok(const char *s)
{
	for (const char *p = s; *p;) {
		while (wsp(*p))
			p++;
		size_t l = strcspn(p, ",");
		if (l < 8 || (strncasecmp(p, "mailto:", 7) && strncasecmp(p, "https:", 6)))
			return false;
		p += l + (p[l] == ',');
	}
	return *s != '\0';
}

int doc_dmarc_parse(const char *txt, struct doc_dmarc_rec *out, char *err, size_t errlen)
{
	struct tag *t = calloc(TAGS_MAX, sizeof *t);
	int n = t ? tag_list(txt, t, err, errlen) : -1;
	int rc = -1;
	char *end;

	memset(out, 0, sizeof *out);
	out->pct = 100;
	if (n < 0)
		goto done;
	const char *p = tag_get(t, n, "p"), *sp = tag_get(t, n, "sp");
	const char *ad = tag_get(t, n, "adkim"), *as = tag_get(t, n, "aspf");
	const char *pct = tag_get(t, n, "pct"), *rua = tag_get(t, n, "rua");
	long pv = pct ? strtol(pct, &end, 10) : 100;
	if (n == 0 || strcmp(t[0].name, "v") || strcmp(t[0].value, "DMARC1"))
		snprintf(err, errlen, "v=DMARC1 must come first");
	else if (!p)
		snprintf(err, errlen, "no p= (policy) tag");
	else if (policy_of(p, &out->p) < 0)
		snprintf(err, errlen, "unknown policy p=%s", p);
	else if (sp && policy_of(sp, &out->sp) < 0)
		snprintf(err, errlen, "unknown policy sp=%s", sp);
	else if ((ad && strcmp(ad, "r") && strcmp(ad, "s")) ||
		 (as && strcmp(as, "r") && strcmp(as, "s")))
		snprintf(err, errlen, "adkim= and aspf= take r or s");
	else if (pct && (!*pct || *end || pv < 0 || pv > 100))
		snprintf(err, errlen, "pct=%s is not 0-100", pct);
	else if (rua && !rua_ok(rua))
		snprintf(err, errlen, "rua=%s is not a list of mailto: URIs", rua);
	else
		rc = 0;
	if (rc == 0) {
		if (!sp)
			out->sp = out->p;
		out->strict_dkim = ad && !strcmp(ad, "s");
		out->strict_spf = as && !strcmp(as, "s");
		out->pct = (unsigned)pv;
		snprintf(out->rua, sizeof out->rua, "%.255s", rua ? rua : "");
	}
done:
	free(t);
	return rc;
}

/* ---- alignment ---- */

void doc_org_domain(const char *domain, char *out, size_t outlen)
{
	size_t n = strlen(domain);

	while (n && domain[n - 1] == '.')
		n--;
	size_t at = n, dots = 0;
	while (at > 0) {
		if (domain[at - 1] == '.' && ++dots == 2)
			break;
		at--;
	}
	size_t len = n - at;
	if (len >= outlen)
		len = outlen ? outlen - 1 : 0;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)domain[at + i]);
	if (outlen)
		out[len] = '\0';
}

bool doc_aligned(const char *a, const char *b, bool strict)
{
	char oa[256], ob[256];

	if (!strcasecmp(a, b))
		return true;
	if (strict)
		return false;
	doc_org_domain(a, oa, sizeof oa);
	doc_org_domain(b, ob, sizeof ob);
	return !strcmp(oa, ob);
}
