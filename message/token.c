/*
 * One-click unsubscribe tokens (message.h has the format): made per
 * recipient at render time, verified by volley's unsubscribe endpoint.
 * Pure: no I/O, no state; HMAC-SHA256 from OpenSSL.
 */
#include "message_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <strings.h>

#define TOKEN_V1 0x01

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static bool job_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* base64url without padding; out has room for 4 * ceil(n / 3) + 1. */
static size_t b64url_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		out[o++] = b64url[in[i] >> 2];
		out[o++] = b64url[(in[i] & 3) << 4];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];
		out[o++] = b64url[v >> 10];
		out[o++] = b64url[(v >> 4) & 63];
		out[o++] = b64url[(v & 15) << 2];
	}
	out[o] = '\0';
	return o;
}

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Strict: the alphabet only, no padding, a length that is not 1 mod 4,
 * unused trailing bits zero (one encoding per octet string). Octets
 * decoded, or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	size_t o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64url_val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return acc ? -1 : (long)o;
}

static void mac(const unsigned char *key, size_t keylen, const unsigned char *p, size_t n,
		unsigned char out[MSG_UNSUB_MAC_LEN])
{
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	HMAC(EVP_sha256(), key, (int)keylen, p, n, full, &len);
	memcpy(out, full, MSG_UNSUB_MAC_LEN);
	OPENSSL_cleanse(full, sizeof full);
}

/* HMAC (RFC 2104) with the key's inner and outer pads digested once:
 * OpenSSL 3's one-shot HMAC() sets itself up per call, 1.9 us against
 * 0.3 us for a copy of these two states (a render per recipient). */
struct msg_unsub_signer {
	EVP_MD_CTX *in, *out;
};

struct msg_unsub_signer *msg_unsub_signer_new(const unsigned char *key, size_t keylen)
{
	unsigned char k[64] = { 0 }, pad[64];
	unsigned int kl = 0;
	struct msg_unsub_signer *s;

	if (!key || keylen < MSG_UNSUB_SECRET_MIN || keylen > MSG_UNSUB_SECRET_MAX)
		return NULL;
	if (keylen > sizeof k)          /* a long key is its digest (RFC 2104 2) */
		EVP_Digest(key, keylen, k, &kl, EVP_sha256(), NULL);
	else
		memcpy(k, key, keylen);
	s = vl_calloc(1, sizeof *s);
	s->in = EVP_MD_CTX_new();
	s->out = EVP_MD_CTX_new();
	for (size_t i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x36;
	bool ok = s->in && s->out && EVP_DigestInit_ex(s->in, EVP_sha256(), NULL) &&
		  EVP_DigestUpdate(s->in, pad, 64);
	for (size_t i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x5c;
	ok = ok && EVP_DigestInit_ex(s->out, EVP_sha256(), NULL) && EVP_DigestUpdate(s->out, pad, 64);
	OPENSSL_cleanse(k, sizeof k);
	OPENSSL_cleanse(pad, sizeof pad);
	if (!ok) {
		msg_unsub_signer_free(s);
		return NULL;
	}
	return s;
}

void msg_unsub_signer_free(struct msg_unsub_signer *s)
{
	if (!s)
		return;
	EVP_MD_CTX_free(s->in);
	EVP_MD_CTX_free(s->out);
	free(s);
}

/* The two states are only read: signers may be shared by threads. */
static int sign(const struct msg_unsub_signer *s, const unsigned char *p, size_t n,
		unsigned char out[MSG_UNSUB_MAC_LEN])
{
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned int hl = 0;
	EVP_MD_CTX *t = EVP_MD_CTX_new();
	int ok = t && EVP_MD_CTX_copy_ex(t, s->in) && EVP_DigestUpdate(t, p, n) &&
		 EVP_DigestFinal_ex(t, h, &hl) && EVP_MD_CTX_copy_ex(t, s->out) &&
		 EVP_DigestUpdate(t, h, hl) && EVP_DigestFinal_ex(t, h, &hl);
	EVP_MD_CTX_free(t);
	if (ok)
		memcpy(out, h, MSG_UNSUB_MAC_LEN);
	return ok ? 0 : -1;
}

int msg_unsub_token_sign(const struct msg_unsub_signer *s, const char *job, uint32_t index,
			 const char *email, char *out, size_t outlen)
{
	unsigned char raw[MSG_UNSUB_RAW_MAX];
	size_t jl = strlen(job), el = strlen(email), n = 0;

	if (!s || jl < 1 || jl > 64 || el < 3 || el > 254 || outlen < MSG_UNSUB_TOKEN_MAX + 1)
		return -1;
	for (size_t i = 0; i < jl; i++)
		if (!job_char((unsigned char)job[i]))
			return -1;
	raw[n++] = TOKEN_V1;
	raw[n++] = (unsigned char)jl;
	memcpy(raw + n, job, jl);
	n += jl;
	do {
		raw[n++] = (unsigned char)((index & 0x7f) | (index > 0x7f ? 0x80 : 0));
		index >>= 7;
	} while (index);
	memcpy(raw + n, email, el);
	n += el;
	if (sign(s, raw, n, raw + n) < 0)
		return -1;
	n += MSG_UNSUB_MAC_LEN;
	return (int)b64url_encode(raw, n, out);
}

size_t msg_unsub_token_len(size_t job_len, uint32_t index, size_t email_len)
{
	size_t leb = 1;

	while (index >>= 7)
		leb++;
	return ((2 + job_len + leb + email_len + MSG_UNSUB_MAC_LEN) * 4 + 2) / 3;
}

int msg_unsub_token(const unsigned char *key, size_t keylen, const char *job,
		    uint32_t index, const char *email, char *out, size_t outlen)
{
	struct msg_unsub_signer *s = msg_unsub_signer_new(key, keylen);
	int n = msg_unsub_token_sign(s, job, index, email, out, outlen);

	msg_unsub_signer_free(s);
	return n;
}

/* LEB128, minimal, within 32 bits: octets read, or 0. */
static size_t leb128(const unsigned char *p, size_t n, uint32_t *v)
{
	uint64_t x = 0;

	for (size_t i = 0; i < n && i < 5; i++) {
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (p[i] & 0x80)
			continue;
		if ((i > 0 && p[i] == 0) || x > UINT32_MAX)
			return 0;       /* a zero high group: not minimal */
		*v = (uint32_t)x;
		return i + 1;
	}
	return 0;
}

static bool mac_ok(const unsigned char *key, size_t keylen, const unsigned char *p, size_t n,
		   const unsigned char *want)
{
	unsigned char m[MSG_UNSUB_MAC_LEN];

	if (!key || keylen < MSG_UNSUB_SECRET_MIN || keylen > MSG_UNSUB_SECRET_MAX)
		return false;
	mac(key, keylen, p, n, m);
	return CRYPTO_memcmp(m, want, sizeof m) == 0;
}

enum msg_unsub_verdict msg_unsub_verify(const char *tok, size_t len,
					const struct msg_unsub_keys *keys,
					struct msg_unsub_tok *out)
{
	unsigned char raw[MSG_UNSUB_RAW_MAX];
	long n = len <= MSG_UNSUB_TOKEN_MAX ? b64url_decode(tok, len, raw, sizeof raw) : -1;
	uint32_t index = 0;

	if (n < 2 + 1 + 1 + 3 + MSG_UNSUB_MAC_LEN || raw[0] != TOKEN_V1)
		return MSG_UNSUB_MALFORMED;
	size_t body = (size_t)n - MSG_UNSUB_MAC_LEN, jl = raw[1], off = 2 + jl;
	if (jl < 1 || jl > 64 || off >= body)
		return MSG_UNSUB_MALFORMED;
	for (size_t i = 0; i < jl; i++)
		if (!job_char(raw[2 + i]))
			return MSG_UNSUB_MALFORMED;
	size_t il = leb128(raw + off, body - off, &index);
	size_t el = il ? body - off - il : 0;
	const char *email = (const char *)raw + off + il;
	bool utf8;
	char why[120];
	if (!il || el < 3 || el > 254 || memchr(email, '\0', el) ||
	    msg_addr_check(email, el, &utf8, why, sizeof why) < 0)
		return MSG_UNSUB_MALFORMED;
	/* both compared, whichever matches, so timing tells nothing either */
	bool ok = mac_ok(keys->key, keys->keylen, raw, body, raw + body);
	ok |= mac_ok(keys->prev, keys->prevlen, raw, body, raw + body);
	if (!ok)
		return MSG_UNSUB_FORGED;
	memcpy(out->job, raw + 2, jl);
	out->job[jl] = '\0';
	out->index = index;
	memcpy(out->email, email, el);
	out->email[el] = '\0';
	return MSG_UNSUB_OK;
}

const char *msg_unsub_base_ok(const char *u)
{
	size_t n = strlen(u);

	if (n < 9 || strncasecmp(u, "https://", 8))
		return "must be an https:// URL (RFC 8058 one-click)";
	if (n > MSG_UNSUB_BASE_MAX)
		return "is longer than 256 octets";
	if (u[n - 1] == '/')
		return "must not end with '/' (tokens go after base_url \"/\")";
	for (size_t i = 0; i < n; i++)
		if (u[i] <= 32 || u[i] >= 127 || strchr("<>\"\\^`|{}?#", u[i]))
			return "holds a character a URL may not, or a query or fragment";
	const char *host = u + 8;
	if (!*host || *host == '/')
		return "has no host";
	return NULL;
}
