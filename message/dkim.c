/*
 * DKIM signing (RFC 6376; ed25519-sha256 per RFC 8463). The body hash is
 * streamed over the message's iovecs (so a job can hash a static body once);
 * the header block is parsed once per message and canonicalised per the h=
 * list; each key then hashes its own DKIM-Signature and signs the digest.
 */
#include "message_int.h"

#include <errno.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msg_dkim_key {
	EVP_PKEY *pkey;
	/* Set up once and duplicated per signature: a fresh init (provider
	 * fetches, parameter setting) costs a third of an Ed25519 signature. */
	EVP_MD_CTX *ed_tpl;
	EVP_PKEY_CTX *rsa_tpl;
	bool ed25519;
	char domain[256], selector[64];
};

/* Current practice (M3AAWG, Gmail/Yahoo bulk rules): what a reader sees
 * and what list handling relies on. Only those present are signed. */
static const char *const default_headers[] = {
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Id", "Feedback-ID", "Sender",
};


/* SHA-256 fetched once: EVP_sha256() makes OpenSSL 3 look the provider
 * up again on every digest, a tenth of an Ed25519 signature. */
static EVP_MD *sha_md;
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void sha_fetch(void)
{
	sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
	pthread_once(&sha_once, sha_fetch);
	return sha_md ? sha_md : EVP_sha256();
}

/* ---- keys ---- */

/* A DNS name for d= or s=: LDH labels joined by dots (no tag breakout). */
static bool dns_name_ok(const char *s, size_t max)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > max || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
			label++;
		} else if ((c >= '0' && c <= '9') || c == '-' || c == '_') {
			label++;
		} else {
			return false;
		}
		if (label > 63)
			return false;
	}
	return true;
}

/* Never prompt on a terminal for an encrypted key's passphrase. */
static int no_pass(char *buf, int size, int rw, void *u)
{
	(void)buf, (void)size, (void)rw, (void)u;
	return -1;
}

static EVP_PKEY *read_pem(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		vl_fail(err, errlen, "DKIM key %s: %s", path, strerror(errno));
		return NULL;
	}
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, no_pass, NULL);
	int bad = ferror(f);
	fclose(f);
	if (!k)
		vl_fail(err, errlen, "DKIM key %s: %s", path, bad ? "read error" :
		     "not a PEM private key (corrupt, encrypted or empty)");
	return k;
}

static int check_pkey(EVP_PKEY *k, const char *path, bool *ed, char *err, size_t errlen)
{
	int id = EVP_PKEY_get_base_id(k), bits = EVP_PKEY_get_bits(k);

	*ed = id == EVP_PKEY_ED25519;
	if (id == EVP_PKEY_RSA && (bits < 1024 || bits > 4096))
		return vl_fail(err, errlen, "DKIM key %s: RSA key of %d bits (1024-4096 "
			    "allowed)", path, bits);
	if (id != EVP_PKEY_RSA && !*ed)
		return vl_fail(err, errlen, "DKIM key %s: neither RSA nor Ed25519", path);
	return 0;
}

static int make_tpl(struct msg_dkim_key *k)
{
	if (k->ed25519)
		return (k->ed_tpl = EVP_MD_CTX_new()) &&
		       EVP_DigestSignInit(k->ed_tpl, NULL, NULL, NULL, k->pkey) == 1 ? 0 : -1;
	return (k->rsa_tpl = EVP_PKEY_CTX_new(k->pkey, NULL)) &&
	       EVP_PKEY_sign_init(k->rsa_tpl) == 1 &&
	       EVP_PKEY_CTX_set_rsa_padding(k->rsa_tpl, RSA_PKCS1_PADDING) == 1 &&
	       EVP_PKEY_CTX_set_signature_md(k->rsa_tpl, sha256()) == 1 ? 0 : -1;
}

struct msg_dkim_key *msg_dkim_key_load(const char *pem_path, const char *domain,
				       const char *selector, char *err, size_t errlen)
{
	if (!dns_name_ok(domain, 253) || !dns_name_ok(selector, 63)) {
		vl_fail(err, errlen, "DKIM key %s: bad domain or selector", pem_path);
		return NULL;
	}
	EVP_PKEY *pk = read_pem(pem_path, err, errlen);
	bool ed;
	if (!pk || check_pkey(pk, pem_path, &ed, err, errlen) < 0) {
		EVP_PKEY_free(pk);
		return NULL;
	}
	struct msg_dkim_key *k = vl_calloc(1, sizeof *k);
	k->pkey = pk;
	k->ed25519 = ed;
	if (make_tpl(k) < 0) {
		vl_fail(err, errlen, "DKIM key %s: OpenSSL cannot sign with it", pem_path);
		msg_dkim_key_free(k);
		return NULL;
	}
	snprintf(k->domain, sizeof k->domain, "%s", domain);
	snprintf(k->selector, sizeof k->selector, "%s", selector);
	return k;
}

void msg_dkim_key_free(struct msg_dkim_key *k)
{
	if (!k)
		return;
	EVP_MD_CTX_free(k->ed_tpl);
	EVP_PKEY_CTX_free(k->rsa_tpl);
	EVP_PKEY_free(k->pkey);
	free(k);
}

const char *msg_dkim_key_alg(const struct msg_dkim_key *k)
{
	return k->ed25519 ? "ed25519-sha256" : "rsa-sha256";
}

int msg_dkim_key_public(const struct msg_dkim_key *k, unsigned char *out, size_t cap,
			size_t *len)
{
	if (k->ed25519) {
		*len = cap;
		return EVP_PKEY_get_raw_public_key(k->pkey, out, len) == 1 ? 0 : -1;
	}
	int n = i2d_PUBKEY(k->pkey, NULL);
	if (n <= 0 || (size_t)n > cap || i2d_PUBKEY(k->pkey, &out) != n)
		return -1;
	*len = (size_t)n;
	return 0;
}

/* ---- body canonicalisation: spans of the input straight into the hash ----
 * The canonical body differs from its input only at white space (relaxed),
 * empty lines and a missing last CRLF. Everything else goes to the hash
 * where it lies, in spans as long as the input allows: no staging copy of
 * the body, one EVP_DigestUpdate a span, and the octets that need no
 * thought (nearly all of them) found 16 at a time. */

struct bsink {
	EVP_MD_CTX *md;         /* hash into this ... */
	struct vl_buf *buf;     /* ... or append here (tests) */
	const char *sp, *se;    /* input octets kept and not yet out: [sp, se) */
	size_t blank;           /* empty lines held back: they may be trailing */
	bool relaxed, cr, ws, line, any;
};

static void bout(struct bsink *s, const char *p, size_t n)
{
	if (s->md)
		EVP_DigestUpdate(s->md, p, n);
	else
		vl_buf_append(s->buf, p, n);
}

static void bflush(struct bsink *s)
{
	if (s->se != s->sp)
		bout(s, s->sp, (size_t)(s->se - s->sp));
	s->sp = s->se = NULL;
}

/* Input octets [p, p+n) go out as they are: the span grows while the kept
 * octets are adjacent (a dropped octet breaks it). */
static void bkeep(struct bsink *s, const char *p, size_t n)
{
	if (s->se != p) {
		bflush(s);
		s->sp = p;
	}
	s->se = p + n;
}

/* Octets that are not the input's at this place, after the span. */
static void bput(struct bsink *s, const char *p, size_t n)
{
	bflush(s);
	bout(s, p, n);
}

static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";

/* Content follows: first release what was held back. */
static void bcontent(struct bsink *s)
{
	if (!s->line) {
		while (s->blank) {
			size_t k = s->blank < sizeof crlfs / 2 ? s->blank : sizeof crlfs / 2;
			bput(s, crlfs, 2 * k);
			s->blank -= k;
		}
		s->line = true;
	}
	if (s->ws)
		bput(s, " ", 1);
	s->ws = false;
	s->any = true;
}

/* A line end: its CRLF at p in the input, or NULL (the CR ended the last
 * iovec). White space before it is gone; an empty line is held back. */
static void beol(struct bsink *s, const char *p)
{
	s->ws = false;
	if (!s->line) {
		s->blank++;
		return;
	}
	if (p)
		bkeep(s, p, 2);
	else
		bput(s, "\r\n", 2);
	s->line = false;
}

#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
typedef unsigned char bvec __attribute__((vector_size(16)));

/* Index of the first octet of p[0..16) that may need thought (relaxed):
 * CR, TAB, or SP before SP, TAB or CR (p[16] is read); 16 if none. */
static unsigned vec_stop(const char *p)
{
	bvec a, b;
	uint64_t lo, hi;

	memcpy(&a, p, 16);
	memcpy(&b, p + 1, 16);
	bvec bad = (bvec)((a == '\r') | (a == '\t') |
			  ((a == ' ') & ((b == ' ') | (b == '\t') | (b == '\r'))));
	memcpy(&lo, &bad, 8);
	memcpy(&hi, (char *)&bad + 8, 8);
	return lo ? (unsigned)__builtin_ctzll(lo) / 8
		  : hi ? 8 + (unsigned)__builtin_ctzll(hi) / 8 : 16;
}
#define VEC_STOP 1
#endif

/* Octets from p that go out as they are once content is under way: not
 * CR; relaxed, not TAB, nor a SP that the next octet (SP, TAB, CR, or the
 * end of p) may turn into something else. */
static size_t plain_run(const char *p, size_t n, bool relaxed)
{
	size_t i = 0;

	if (!relaxed) {
		const char *cr = memchr(p, '\r', n);
		return cr ? (size_t)(cr - p) : n;
	}
#ifdef VEC_STOP
	for (unsigned k; i + 17 <= n; i += 16)
		if ((k = vec_stop(p + i)) < 16)
			return i + k;
#endif
	for (; i < n; i++) {
		char c = p[i];
		if (c == '\r' || c == '\t')
			break;
		if (c == ' ' && (i + 1 == n || p[i + 1] == ' ' || p[i + 1] == '\t' ||
				 p[i + 1] == '\r'))
			break;
	}
	return i;
}

static void bfeed(struct bsink *s, const char *p, size_t n)
{
	size_t i = 0;

	if (n && s->cr) {           /* the last iovec ended in a CR */
		s->cr = false;
		if (p[0] == '\n') {
			beol(s, NULL);
			i = 1;
		} else {
			bcontent(s);
			bput(s, "\r", 1);   /* a bare CR is content */
		}
	}
	while (i < n) {
		if (!s->ws && (s->line || !s->blank)) {
			size_t r = plain_run(p + i, n - i, s->relaxed);
			if (r) {
				bcontent(s);
				bkeep(s, p + i, r);
				if ((i += r) == n)
					break;
			}
		}
		char c = p[i];
		if (c == '\r' && i + 1 == n) {
			s->cr = true;
			i++;
		} else if (c == '\r' && p[i + 1] == '\n') {
			beol(s, p + i);
			i += 2;
		} else if (s->relaxed && (c == ' ' || c == '\t')) {
			s->ws = true;       /* dropped: one SP goes out before content */
			i++;
		} else {                    /* content, a bare CR included */
			bcontent(s);
			bkeep(s, p + i, 1);
			i++;
		}
	}
}

static void bend(struct bsink *s)
{
	if (s->cr) {
		s->cr = false;
		bcontent(s);
		bput(s, "\r", 1);
	}
	if (s->line)
		bput(s, "\r\n", 2);
	if (!s->relaxed && !s->any)
		bput(s, "\r\n", 2);  /* simple: an empty body is one CRLF */
	bflush(s);
}

void msg_dkim_canon_body(enum msg_dkim_canon c, const char *p, size_t n,
			 struct vl_buf *out)
{
	struct bsink s = {.buf = out, .relaxed = c == MSG_DKIM_RELAXED};

	bfeed(&s, p, n);
	bend(&s);
}

/* Hash the body: iovecs from (iov index i, offset off) to the end. */
static int body_hash(enum msg_dkim_canon c, const struct iovec *iov, size_t niov,
		     size_t i, size_t off, unsigned char bh[MSG_DKIM_BH_LEN])
{
	struct bsink s = {.relaxed = c == MSG_DKIM_RELAXED};
	unsigned int len = 0;

	if (!(s.md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(s.md, sha256(), NULL)) {
		EVP_MD_CTX_free(s.md);
		return -1;
	}
	for (; i < niov; i++, off = 0)
		bfeed(&s, (const char *)iov[i].iov_base + off, iov[i].iov_len - off);
	bend(&s);
	int ok = EVP_DigestFinal_ex(s.md, bh, &len);
	EVP_MD_CTX_free(s.md);
	return ok && len == MSG_DKIM_BH_LEN ? 0 : -1;
}

int msg_dkim_body_hash(enum msg_dkim_canon c, const struct iovec *body, size_t niov,
		       unsigned char bh[MSG_DKIM_BH_LEN])
{
	return body_hash(c, body, niov, 0, 0, bh);
}

/* ---- the header block ---- */

/* Where the header ends: *hlen octets of header lines (each with its CRLF),
 * then the blank line, then the body at iovec *bi, offset *boff. A message
 * without a blank line that ends in CRLF is all header. -1: no CRLF end. */
static int split(const struct iovec *iov, size_t niov, size_t *hlen, size_t *bi,
		 size_t *boff)
{
	unsigned last = 0;
	size_t pos = 0;

	for (size_t i = 0; i < niov; i++) {
		const unsigned char *p = iov[i].iov_base;
		for (size_t k = 0; k < iov[i].iov_len; k++, pos++) {
			last = (last << 8 | p[k]) & 0xffffffffu;
			if ((last == 0x0d0a0d0a) || (pos == 1 && (last & 0xffff) == 0x0d0a)) {
				*hlen = pos - 1;
				*bi = i, *boff = k + 1;
				return 0;
			}
		}
	}
	*hlen = pos, *bi = niov, *boff = 0;
	return pos >= 2 && (last & 0xffff) == 0x0d0a ? 0 : -1;
}

int msg_dkim_msg_body_hash(enum msg_dkim_canon c, const struct iovec *msg, size_t niov,
			   unsigned char bh[MSG_DKIM_BH_LEN])
{
	size_t hlen, bi, boff;

	if (split(msg, niov, &hlen, &bi, &boff) < 0)
		return -1;
	return body_hash(c, msg, niov, bi, boff, bh);
}

struct field {
	const char *p;
	size_t len;        /* without the final CRLF */
	size_t namelen;    /* name without white space before the colon */
	bool used;
};

struct fields {
	struct field *f;
	size_t n, cap;
};

static bool ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* One header line [p, p+n) (CRLF excluded): a field start or continuation. */
static int add_line(struct fields *fs, const char *p, size_t n, char *err, size_t errlen)
{
	if (memchr(p, '\r', n) || memchr(p, '\n', n) || memchr(p, '\0', n))
		return vl_fail(err, errlen, "header holds a bare CR, bare LF or NUL");
	if (n && (p[0] == ' ' || p[0] == '\t')) {
		if (!fs->n)
			return vl_fail(err, errlen, "header starts with a continuation line");
		fs->f[fs->n - 1].len = (size_t)(p + n - fs->f[fs->n - 1].p);
		return 0;
	}
	size_t k = 0;
	while (k < n && ftext((unsigned char)p[k]))
		k++;
	size_t name = k;
	while (k < n && (p[k] == ' ' || p[k] == '\t'))
		k++;
	if (name == 0 || k == n || p[k] != ':')
		return vl_fail(err, errlen, "header line without a field name and colon: %.40s", p);
	if (fs->n == fs->cap) {
		fs->cap = fs->cap ? fs->cap * 2 : 32;
		fs->f = vl_realloc(fs->f, fs->cap * sizeof *fs->f);
	}
	fs->f[fs->n++] = (struct field){p, n, name, false};
	return 0;
}

static int parse_fields(const char *h, size_t n, struct fields *fs, char *err,
			size_t errlen)
{
	const char *end = h + n;

	while (h < end) {
		const char *lf = memchr(h, '\n', (size_t)(end - h));
		if (!lf || lf == h || lf[-1] != '\r')
			return vl_fail(err, errlen, "header line not ended by CRLF");
		if (add_line(fs, h, (size_t)(lf - 1 - h), err, errlen) < 0)
			return -1;
		h = lf + 1;
	}
	return 0;
}

/* ---- header canonicalisation ---- */

static void canon_relaxed(const char *p, size_t n, struct vl_buf *out)
{
	const char *colon = memchr(p, ':', n);
	size_t name = (size_t)(colon - p);

	while (name && (p[name - 1] == ' ' || p[name - 1] == '\t'))
		name--;
	char *d = vl_buf_reserve(out, n + 3);
	size_t o = 0;
	for (size_t i = 0; i < name; i++)
		d[o++] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] | 0x20 : p[i]);
	d[o++] = ':';
	bool ws = false, any = false;
	for (size_t i = (size_t)(colon - p) + 1; i < n; i++) {
		char c = p[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			ws = true;
			continue;
		}
		if (ws && any)
			d[o++] = ' ';
		ws = false, any = true;
		d[o++] = c;
	}
	out->len += o;
}

void msg_dkim_canon_header(enum msg_dkim_canon c, const char *field, size_t n,
			   struct vl_buf *out)
{
	if (c == MSG_DKIM_SIMPLE)
		vl_buf_append(out, field, n);
	else
		canon_relaxed(field, n, out);
}

/* ---- the h= list ---- */

static bool name_is(const struct field *f, const char *name)
{
	return strlen(name) == f->namelen && !strncasecmp(f->p, name, f->namelen);
}

/* Each listed name as often as it is present, From once more (over-signed:
 * a From added later cannot pass). 0 with *n names in names; -1 no From. */
static int hlist(const struct fields *fs, const char *const *want, size_t nwant,
		 const char **names, size_t max, size_t *n)
{
	size_t k = 0, from = 0;

	for (size_t w = 0; w < nwant; w++) {
		bool is_from = !strcasecmp(want[w], "From");
		for (size_t i = 0; i < fs->n; i++)
			if (name_is(&fs->f[i], want[w]) && k < max)
				names[k++] = want[w], from += is_from;
		if (is_from && from && k < max)
			names[k++] = want[w];
	}
	*n = k;
	return from ? 0 : -1;
}

/* Canonicalised fields in h= order: the next unused instance from the
 * bottom for each name (RFC 6376 5.4.2); none left: nothing. */
static void canon_fields(struct fields *fs, const char *const *names, size_t n,
			 enum msg_dkim_canon c, struct vl_buf *out)
{
	for (size_t k = 0; k < n; k++) {
		for (size_t i = fs->n; i-- > 0;) {
			struct field *f = &fs->f[i];
			if (!f->used && name_is(f, names[k])) {
				f->used = true;
				msg_dkim_canon_header(c, f->p, f->len, out);
				vl_buf_append(out, "\r\n", 2);
				break;
			}
		}
	}
}

/* ---- the DKIM-Signature field, folded ---- */

struct fold {
	struct vl_buf *b;
	size_t col;
};

/* Append s; a space before it when sp. A line that would pass 78 octets
 * is folded first (FWS is allowed between tags, after ':' in h= and
 * anywhere in base64). */
static void fput(struct fold *f, const char *s, size_t n, bool sp)
{
	if (f->col + sp + n > MSG_LINE_WANT && f->col > 1) {
		vl_buf_append(f->b, "\r\n ", 3);
		f->col = 1;
	} else if (sp) {
		vl_buf_append(f->b, " ", 1);
		f->col++;
	}
	vl_buf_append(f->b, s, n);
	f->col += n;
}

static void fputf(struct fold *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fputf(struct fold *f, const char *fmt, ...)
{
	char tmp[320];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	fput(f, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1, true);
}

static void b64(const unsigned char *p, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

/* Everything up to and including "b=": the signed part. */
static void sig_head(const struct msg_dkim_key *k, const struct msg_dkim_opts *o,
		     const char *const *names, size_t nn, const unsigned char *bh,
		     time_t t, struct fold *f)
{
	static const char *const canon[] = {"relaxed", "simple"};
	char bhs[64];

	fput(f, "DKIM-Signature:", 15, false);
	fputf(f, "v=1; a=%s; c=%s/%s;", msg_dkim_key_alg(k), canon[o->hcanon],
	      canon[o->bcanon]);
	fputf(f, "d=%s;", k->domain);
	fputf(f, "s=%s;", k->selector);
	fputf(f, "t=%lld;", (long long)t);
	if (o->expire)
		fputf(f, "x=%lld;", (long long)t + (long long)o->expire);
	for (size_t i = 0; i < nn; i++) {
		char tmp[128];
		int n = snprintf(tmp, sizeof tmp, "%s%s%c", i ? "" : "h=", names[i],
				 i + 1 < nn ? ':' : ';');
		fput(f, tmp, (size_t)n, i == 0);
	}
	b64(bh, MSG_DKIM_BH_LEN, bhs);
	fputf(f, "bh=%s;", bhs);
	fput(f, "b=", 2, true);
}

/* The signature value, in lines of at most 78 octets. */
static void sig_value(struct fold *f, const char *s, size_t n)
{
	while (n) {
		if (f->col >= MSG_LINE_WANT) {
			vl_buf_append(f->b, "\r\n ", 3);
			f->col = 1;
		}
		size_t k = MSG_LINE_WANT - f->col < n ? MSG_LINE_WANT - f->col : n;
		vl_buf_append(f->b, s, k);
		f->col += k, s += k, n -= k;
	}
	vl_buf_append(f->b, "\r\n", 2);
}

/* ---- signing ---- */

static int sign_digest(const struct msg_dkim_key *k, const unsigned char *d,
		       unsigned char *sig, size_t *siglen)
{
	int ok;

	if (k->ed25519) {
		/* RFC 8463: Ed25519 (pure) over the SHA-256 of the header data. */
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		ok = m && EVP_MD_CTX_copy_ex(m, k->ed_tpl) == 1 &&
		     EVP_DigestSign(m, sig, siglen, d, 32) == 1;
		EVP_MD_CTX_free(m);
		return ok ? 0 : -1;
	}
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_dup(k->rsa_tpl);
	ok = c && EVP_PKEY_sign(c, sig, siglen, d, 32) == 1;
	EVP_PKEY_CTX_free(c);
	return ok ? 0 : -1;
}

/* One DKIM-Signature onto out; hdata holds the canonicalised fields. */
static int sign_one(const struct msg_dkim_key *k, const struct msg_dkim_opts *o,
		    const char *const *names, size_t nn, const unsigned char *bh,
		    time_t t, struct vl_buf *hdata, struct vl_buf *out)
{
	size_t start = out->len, keep = hdata->len;
	struct fold f = {out, 0};
	unsigned char d[32], sig[512];
	char sigs[700];
	size_t siglen = sizeof sig;

	sig_head(k, o, names, nn, bh, t, &f);
	msg_dkim_canon_header(o->hcanon, out->p + start, out->len - start, hdata);
	int ok = EVP_Digest(hdata->p, hdata->len, d, NULL, sha256(), NULL) &&
		 sign_digest(k, d, sig, &siglen) == 0;
	hdata->len = keep;
	if (!ok)
		return -1;
	b64(sig, siglen, sigs);
	sig_value(&f, sigs, strlen(sigs));
	return 0;
}

/* The header block as one run of octets: in the first iovec (as rendered)
 * or gathered into tmp. */
static const char *header_bytes(const struct iovec *msg, size_t niov, size_t hlen,
				struct vl_buf *tmp)
{
	if (niov && msg[0].iov_len >= hlen)
		return msg[0].iov_base;
	for (size_t i = 0, left = hlen; i < niov && left; i++) {
		size_t k = msg[i].iov_len < left ? msg[i].iov_len : left;
		vl_buf_append(tmp, msg[i].iov_base, k);
		left -= k;
	}
	return tmp->p;
}

struct signer {
	const struct msg_dkim_opts *o;
	struct fields fs;
	const char *names[128];
	size_t nn;
	unsigned char bh[MSG_DKIM_BH_LEN];
	struct vl_buf tmp, hdata;
};

static int prepare(struct signer *s, const struct iovec *msg, size_t niov,
		   const unsigned char *bh, char *err, size_t errlen)
{
	const struct msg_dkim_opts *o = s->o;
	size_t hlen, bi, boff;

	if (split(msg, niov, &hlen, &bi, &boff) < 0)
		return vl_fail(err, errlen, "message header not ended by CRLF");
	const char *h = header_bytes(msg, niov, hlen, &s->tmp);
	if (parse_fields(h, hlen, &s->fs, err, errlen) < 0)
		return -1;
	const char *const *want = o->headers ? o->headers : default_headers;
	size_t nwant = o->headers ? o->nheaders : VL_ARRAY_LEN(default_headers);
	if (hlist(&s->fs, want, nwant, s->names, VL_ARRAY_LEN(s->names), &s->nn) < 0)
		return vl_fail(err, errlen, "message has no From field to sign");
	if (bh)
		memcpy(s->bh, bh, MSG_DKIM_BH_LEN);
	else if (body_hash(o->bcanon, msg, niov, bi, boff, s->bh) < 0)
		return vl_fail(err, errlen, "body hash failed");
	canon_fields(&s->fs, s->names, s->nn, o->hcanon, &s->hdata);
	return 0;
}

int msg_dkim_sign(const struct msg_dkim_key *const *keys, size_t nkeys,
		  const struct msg_dkim_opts *o, const struct iovec *msg, size_t niov,
		  const unsigned char *body_hash_or_null, struct vl_buf *out,
		  char *err, size_t errlen)
{
	static const struct msg_dkim_opts defaults;
	struct signer s = {.o = o ? o : &defaults};
	size_t start = out->len;
	time_t t = s.o->t ? s.o->t : time(NULL);
	int rc = 0;

	vl_buf_init(&s.tmp);
	vl_buf_init(&s.hdata);
	if (nkeys == 0)
		rc = vl_fail(err, errlen, "no DKIM key to sign with");
	else
		rc = prepare(&s, msg, niov, body_hash_or_null, err, errlen);
	for (size_t i = 0; i < nkeys && rc == 0; i++)
		if (sign_one(keys[i], s.o, s.names, s.nn, s.bh, t, &s.hdata, out) < 0)
			rc = vl_fail(err, errlen, "signing with %s failed",
				  msg_dkim_key_alg(keys[i]));
	if (rc < 0)
		out->len = start;
	free(s.fs.f);
	vl_buf_free(&s.tmp);
	vl_buf_free(&s.hdata);
	return rc;
}
