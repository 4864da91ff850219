/*
 * The users file, password checks and the auth cache. A sub_users is
 * read only once loaded but for its cache (a mutex), so any number of
 * threads may verify at once; a reload is a new sub_users, and with it an
 * empty cache.
 */
#include "submit.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_MAX_OCTETS 65536
#define MAC_LEN 32
#define WAYS 4                    /* cache entries a name-password pair may take */

/* A user: the public part first, so a struct entry * is a struct sub_user *. */
struct entry {
	struct sub_user u;
	char *hash;
	unsigned line;
};

struct cache_entry {
	unsigned char mac[MAC_LEN];
	const struct entry *e;
	uint64_t expires, used;       /* expires 0: free */
};

struct sub_users {
	struct entry *v;              /* sorted by name */
	size_t n;
	char dummy[SUB_HASH_MAX];     /* what an unknown name is checked against */
	unsigned char key[MAC_LEN];   /* the cache's HMAC key, drawn at load */
	uint64_t ttl_ms;              /* 0: no cache */
	pthread_mutex_t mu;           /* guards what follows */
	struct cache_entry *cache;    /* nsets * WAYS */
	size_t nsets;
	struct sub_users_stats st;
};

/* ---- hashes ---- */

/* crypt_rn of pass with setting (a full hash or a salt) into out. */
static int run_crypt(const char *pass, const char *setting, char *out, size_t outlen)
{
	struct crypt_data *d = vl_calloc(1, sizeof *d);
	const char *h = crypt_rn(pass, setting, d, sizeof *d);
	int rc = -1;

	if (h && h[0] != '*' && strlen(h) < outlen) {
		strcpy(out, h);
		rc = 0;
	}
	OPENSSL_cleanse(d, sizeof *d);
	free(d);
	return rc;
}

/* Does crypt compute hash, and is it whole? Computing it once (with any
 * password) gives a hash of the same setting: same length, same text up
 * to the last '$'. */
static int check_hash(const char *hash, char *why, size_t whylen)
{
	char out[SUB_HASH_MAX];

	if (hash[0] != '$')
		return vl_fail(why, whylen, "not a $id$ crypt hash (yescrypt $y$, bcrypt $2b$, "
			       "sha512crypt $6$...; DES crypt keeps only 8 characters of a "
			       "password)");
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_INVALID:
		return vl_fail(why, whylen, "a hash method crypt(3) does not know");
	case CRYPT_SALT_METHOD_DISABLED:
		return vl_fail(why, whylen, "a hash method this libcrypt has disabled");
	default:
		break;
	}
	if (run_crypt("volley-check", hash, out, sizeof out) < 0)
		return vl_fail(why, whylen, "a malformed hash (crypt(3) refuses its settings)");
	const char *last = strrchr(out, '$');
	size_t set = (size_t)(last - out) + 1;
	if (strlen(out) != strlen(hash) || strncmp(out, hash, set))
		return vl_fail(why, whylen, "a malformed hash (its setting is known, but it is "
			       "not a whole hash of it)");
	return 0;
}

int sub_hash_password(const char *pass, char out[SUB_HASH_MAX], char *err, size_t errlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	size_t n = strlen(pass);

	if (n == 0)
		return vl_fail(err, errlen, "the password is empty");
	if (n > SUB_PASS_MAX)
		return vl_fail(err, errlen, "the password is longer than %d octets", SUB_PASS_MAX);
	if (strpbrk(pass, "\r\n"))
		return vl_fail(err, errlen, "the password holds a line end");
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt))
		return vl_fail(err, errlen, "crypt_gensalt: %s", strerror(errno));
	if (run_crypt(pass, salt, out, SUB_HASH_MAX) < 0)
		return vl_fail(err, errlen, "crypt: %s", strerror(errno));
	return 0;
}

/* ---- the file ---- */

struct parse {
	const char *path;
	unsigned line;
	char *err;
	size_t errlen;
};

static int line_fail(const struct parse *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int line_fail(const struct parse *p, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return vl_fail(p->err, p->errlen, "%s:%u: %s", p->path, p->line, what);
}

/* key=value settings after the hash, colon-separated (s is modified). */
static int parse_settings(const struct parse *p, const char *name, char *s,
			  struct cfg_sub_settings *set)
{
	static const char *const keys[] = { "from_domains", "campaign", "priority",
					    "rate_limit", "dkim", "max_recipients" };
	char why[300];
	unsigned seen = 0;

	while (s) {
		char *next = strchr(s, ':'), *eq;
		if (next)
			*next++ = '\0';
		if (!(eq = strchr(s, '=')) || eq == s)
			return line_fail(p, "user %s: '%.60s': expected key=value", name, s);
		*eq = '\0';
		for (size_t k = 0; k < VL_ARRAY_LEN(keys); k++) {
			if (strcmp(s, keys[k]))
				continue;
			if (seen & (1u << k))
				return line_fail(p, "user %s: %s given twice", name, s);
			seen |= 1u << k;
		}
		if (cfg_sub_setting_parse(set, s, eq + 1, why, sizeof why) < 0)
			return line_fail(p, "user %s: %s", name, why);
		s = next;
	}
	return 0;
}

static char **copy_strings(char *const *v, size_t n)
{
	char **out = vl_calloc(n + 1, sizeof *out);

	for (size_t i = 0; i < n; i++)
		out[i] = vl_strdup(v[i]);
	return out;
}

/* The effective settings: the line's, per_user's, submission's, built-in. */
static void effective(struct sub_user *u, const struct cfg_sub_settings *const *layers,
		      size_t nl)
{
#define PICK(f, unset) for (size_t i = 0; i < nl; i++) if (layers[i] && layers[i]->f != (unset)) { pick = layers[i]; break; }
	const struct cfg_sub_settings *pick = NULL;

	PICK(from_domains, NULL);
	if (pick) {
		u->from_domains = copy_strings(pick->from_domains, pick->nfrom_domains);
		u->nfrom_domains = pick->nfrom_domains;
	} else {
		u->from_domains = vl_calloc(1, sizeof *u->from_domains);
	}
	pick = NULL;
	PICK(campaign, NULL);
	u->campaign = pick ? vl_strdup(pick->campaign) : NULL;
	pick = NULL;
	PICK(priority, NULL);
	u->transactional = !pick || strcmp(pick->priority, "bulk") != 0;
	pick = NULL;
	PICK(rate_limit, NULL);
	u->rate_limit = pick ? vl_strdup(pick->rate_limit) : NULL;
	if (!u->rate_limit || vl_parse_rate(u->rate_limit, &u->rate_per_s) < 0)
		u->rate_per_s = 0;
	pick = NULL;
	PICK(dkim, -1);
	u->dkim = pick ? pick->dkim != 0 : true;
	pick = NULL;
	PICK(max_recipients, -1);
	u->max_recipients = pick ? (uint64_t)pick->max_recipients : 100;
#undef PICK
}

static const struct cfg_sub_settings *per_user(const struct cfg_submission *d, const char *name)
{
	for (size_t i = 0; d && i < d->nper_user; i++)
		if (!strcmp(d->per_user[i].name, name))
			return &d->per_user[i].s;
	return NULL;
}

/* One line (trailing white space gone): a user into e, 1; a blank or a
 * comment, 0; -1 with the error. */
static int parse_line(const struct parse *p, char *line, const struct cfg_submission *d,
		      struct entry *e)
{
	char why[300];
	char *s = line + strspn(line, " \t");

	if (!*s || *s == '#')
		return 0;
	char *hash = strchr(line, ':');
	if (!hash)
		return line_fail(p, "expected name:hash[:key=value]...");
	*hash++ = '\0';
	if (!cfg_user_name_ok(line))
		return line_fail(p, "user name '%.64s': expected 1 to 64 of letters, digits, "
				 "'.', '_', '@', '+' and '-'", line);
	char *rest = strchr(hash, ':');
	if (rest)
		*rest++ = '\0';
	if (check_hash(hash, why, sizeof why) < 0)
		return line_fail(p, "user %s: %s", line, why);
	struct cfg_sub_settings own;
	cfg_sub_settings_init(&own);
	if (rest && parse_settings(p, line, rest, &own) < 0) {
		cfg_sub_settings_free(&own);
		return -1;
	}
	const struct cfg_sub_settings *layers[] = { &own, per_user(d, line),
						    d ? &d->defaults : NULL };
	memset(e, 0, sizeof *e);
	e->u.name = vl_strdup(line);
	e->hash = vl_strdup(hash);
	e->line = p->line;
	effective(&e->u, layers, VL_ARRAY_LEN(layers));
	cfg_sub_settings_free(&own);
	return 1;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->u.name, ((const struct entry *)b)->u.name);
}

/* The file opened and checked: a regular file nobody else may read. */
static FILE *open_users(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		vl_fail(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		vl_fail(err, errlen, "%s: not a regular file", path);
	} else if (st.st_mode & 006) {
		vl_fail(err, errlen, "%s: readable or writable by others (mode %04o): it holds "
			"password hashes; chmod o-rwx %s", path, (unsigned)(st.st_mode & 07777), path);
	} else {
		FILE *f = fdopen(fd, "r");
		if (f)
			return f;
		vl_fail(err, errlen, "%s: %s", path, strerror(errno));
	}
	close(fd);
	return NULL;
}

static void free_entry(struct entry *e)
{
	free(e->u.name);
	for (size_t i = 0; i < e->u.nfrom_domains; i++)
		free(e->u.from_domains[i]);
	free(e->u.from_domains);
	free(e->u.campaign);
	free(e->u.rate_limit);
	if (e->hash)
		OPENSSL_cleanse(e->hash, strlen(e->hash));
	free(e->hash);
}

static int read_users(struct sub_users *u, FILE *f, struct parse *p,
		      const struct cfg_submission *d)
{
	char *line = NULL;
	size_t cap = 0, vcap = 0;
	ssize_t n;
	int rc = 0;

	while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
		p->line++;
		if (n > LINE_MAX_OCTETS) {
			rc = line_fail(p, "longer than %d octets", LINE_MAX_OCTETS);
			break;
		}
		if ((size_t)n != strlen(line)) {
			rc = line_fail(p, "holds a NUL octet");
			break;
		}
		while (n > 0 && strchr(" \t\r\n", line[n - 1]))
			line[--n] = '\0';
		if (u->n == vcap) {
			vcap = vcap ? vcap * 2 : 16;
			u->v = vl_realloc(u->v, vcap * sizeof *u->v);
		}
		int r = parse_line(p, line, d, &u->v[u->n]);
		if (r < 0)
			rc = -1;
		else
			u->n += (size_t)r;
	}
	if (rc == 0 && ferror(f))
		rc = vl_fail(p->err, p->errlen, "%s: %s", p->path, strerror(errno));
	free(line);
	return rc;
}

static int check_unique(const struct sub_users *u, struct parse *p)
{
	for (size_t i = 1; i < u->n; i++) {
		const struct entry *a = &u->v[i - 1], *b = &u->v[i];
		if (strcmp(a->u.name, b->u.name) == 0) {
			unsigned first = a->line < b->line ? a->line : b->line;
			p->line = a->line > b->line ? a->line : b->line;
			return line_fail(p, "user %s again (first on line %u)", a->u.name, first);
		}
	}
	return 0;
}

/* The auth cache: nsets sets of WAYS entries. */
static int cache_init(struct sub_users *u, const struct cfg_submission *d, char *err,
		      size_t errlen)
{
	int64_t size = d ? d->auth_cache_size : 1024;

	u->ttl_ms = d ? d->auth_cache_ttl_ms : 300000;
	u->nsets = (size_t)(size > WAYS ? size : WAYS) / WAYS;
	u->cache = vl_calloc(u->nsets * WAYS, sizeof *u->cache);
	if (RAND_bytes(u->key, sizeof u->key) != 1)
		return vl_fail(err, errlen, "no random key for the auth cache (OpenSSL RAND_bytes)");
	return 0;
}

struct sub_users *sub_users_load(const char *path, const struct cfg_submission *d,
				 char *err, size_t errlen)
{
	struct sub_users *u = vl_calloc(1, sizeof *u);
	struct parse p = { path, 0, err, errlen };
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	FILE *f = open_users(path, err, errlen);

	pthread_mutex_init(&u->mu, NULL);
	if (!f) {
		sub_users_free(u);
		return NULL;
	}
	int rc = read_users(u, f, &p, d);
	fclose(f);
	if (rc == 0) {
		qsort(u->v, u->n, sizeof *u->v, by_name);
		rc = check_unique(u, &p);
	}
	if (rc == 0 && (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt) ||
			run_crypt("volley-dummy", salt, u->dummy, sizeof u->dummy) < 0))
		rc = vl_fail(err, errlen, "crypt: no yescrypt hash for unknown names: %s",
			     strerror(errno));
	if (rc == 0)
		rc = cache_init(u, d, err, errlen);
	if (rc < 0) {
		sub_users_free(u);
		return NULL;
	}
	return u;
}

void sub_users_free(struct sub_users *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n; i++)
		free_entry(&u->v[i]);
	free(u->v);
	if (u->cache)
		OPENSSL_cleanse(u->cache, u->nsets * WAYS * sizeof *u->cache);
	free(u->cache);
	OPENSSL_cleanse(u->key, sizeof u->key);
	pthread_mutex_destroy(&u->mu);
	free(u);
}

size_t sub_users_count(const struct sub_users *u)
{
	return u->n;
}

const struct sub_user *sub_users_at(const struct sub_users *u, size_t i)
{
	return i < u->n ? &u->v[i].u : NULL;
}

static const struct entry *find(const struct sub_users *u, const char *name)
{
	struct entry key = { .u.name = (char *)name };

	return u->n ? bsearch(&key, u->v, u->n, sizeof *u->v, by_name) : NULL;
}

const struct sub_user *sub_users_find(const struct sub_users *u, const char *name)
{
	const struct entry *e = find(u, name);

	return e ? &e->u : NULL;
}

bool sub_user_from_ok(const struct sub_user *u, const char *domain)
{
	if (u->nfrom_domains == 0)
		return true;
	for (size_t i = 0; i < u->nfrom_domains; i++)
		if (vl_glob_match(u->from_domains[i], domain))
			return true;
	return false;
}

/* ---- the auth cache ---- */

/* HMAC-SHA256(key, name NUL pass). */
static void cache_mac(const struct sub_users *u, const char *name, size_t nlen,
		      const char *pass, size_t plen, unsigned char mac[MAC_LEN])
{
	unsigned char buf[CFG_USER_NAME_MAX + 1 + SUB_PASS_MAX];
	unsigned len = MAC_LEN;

	memcpy(buf, name, nlen);
	buf[nlen] = '\0';
	memcpy(buf + nlen + 1, pass, plen);
	HMAC(EVP_sha256(), u->key, sizeof u->key, buf, nlen + 1 + plen, mac, &len);
	OPENSSL_cleanse(buf, nlen + 1 + plen);
}

static struct cache_entry *cache_set(const struct sub_users *u, const unsigned char *mac)
{
	uint64_t h;

	memcpy(&h, mac, sizeof h);
	return &u->cache[(h % u->nsets) * WAYS];
}

/* Under the lock: the live entry of mac, or NULL. */
static struct cache_entry *cache_find(const struct sub_users *u, const unsigned char *mac,
				      uint64_t now)
{
	struct cache_entry *s = cache_set(u, mac);

	for (size_t i = 0; i < WAYS; i++)
		if (s[i].expires > now && CRYPTO_memcmp(s[i].mac, mac, MAC_LEN) == 0)
			return &s[i];
	return NULL;
}

/* Under the lock: mac remembered, in its own way if it has one, else a
 * free or expired way of its set, else the least recently used. */
static void cache_put(const struct sub_users *u, const unsigned char *mac,
		      const struct entry *e, uint64_t now)
{
	struct cache_entry *s = cache_set(u, mac), *c = cache_find(u, mac, now);

	for (size_t i = 0; !c && i < WAYS; i++)
		if (s[i].expires <= now)
			c = &s[i];
	if (!c) {
		c = &s[0];
		for (size_t i = 1; i < WAYS; i++)
			if (s[i].used < c->used)
				c = &s[i];
	}
	memcpy(c->mac, mac, MAC_LEN);
	c->e = e;
	c->expires = now + u->ttl_ms;
	c->used = now;
}

/* The cached user of mac, or NULL (and counts a hit). */
static const struct entry *cache_get(struct sub_users *u, const unsigned char *mac,
				     uint64_t now)
{
	const struct entry *e = NULL;

	pthread_mutex_lock(&u->mu);
	struct cache_entry *c = cache_find(u, mac, now);
	if (c) {
		c->used = now;
		e = c->e;
		u->st.cache_hits++;
	}
	pthread_mutex_unlock(&u->mu);
	return e;
}

/* pass checked against want (a user's hash, or the dummy) in constant time. */
static bool crypt_matches(const char *pass, const char *want)
{
	char h[SUB_HASH_MAX];
	size_t n = strlen(want);
	bool ok = run_crypt(pass, want, h, sizeof h) == 0 && strlen(h) == n &&
		  CRYPTO_memcmp(h, want, n) == 0;

	OPENSSL_cleanse(h, sizeof h);
	return ok;
}

int sub_users_verify_at(const struct sub_users *cu, const char *name, const char *pass,
			uint64_t now, const struct sub_user **out)
{
	struct sub_users *u = (struct sub_users *)cu;  /* only what the lock guards changes */
	size_t nlen = name ? strlen(name) : SIZE_MAX, plen = pass ? strlen(pass) : SIZE_MAX;
	const struct entry *e = nlen <= CFG_USER_NAME_MAX ? find(u, name) : NULL;
	bool cached = u->ttl_ms && nlen <= CFG_USER_NAME_MAX && plen <= SUB_PASS_MAX;
	unsigned char mac[MAC_LEN];
	bool ok = false, hit = false;

	if (out)
		*out = NULL;
	if (plen <= SUB_PASS_MAX) {
		if (cached) {       /* unknown names too: the same work either way */
			cache_mac(u, name, nlen, pass, plen, mac);
			const struct entry *c = cache_get(u, mac, now);
			hit = ok = e && c == e;
		}
		/* an unknown name pays the same crypt against the dummy hash */
		if (!hit)
			ok = crypt_matches(pass, e ? e->hash : u->dummy) && e;
	}
	pthread_mutex_lock(&u->mu);
	if (ok && cached && !hit)
		cache_put(u, mac, e, now);
	u->st.verified += ok;
	u->st.failed += !ok;
	pthread_mutex_unlock(&u->mu);
	if (cached)
		OPENSSL_cleanse(mac, sizeof mac);
	if (ok && out)
		*out = &e->u;
	return ok ? 0 : -1;
}

int sub_users_verify(const struct sub_users *u, const char *name, const char *pass,
		     const struct sub_user **out)
{
	return sub_users_verify_at(u, name, pass, vl_now_ms(), out);
}

void sub_users_stats(const struct sub_users *u, uint64_t now, struct sub_users_stats *out)
{
	struct sub_users *m = (struct sub_users *)u;

	pthread_mutex_lock(&m->mu);
	*out = u->st;
	out->cache_entries = 0;
	for (size_t i = 0; u->cache && i < u->nsets * WAYS; i++)
		out->cache_entries += u->cache[i].expires > now;
	pthread_mutex_unlock(&m->mu);
}
